// toolcall: a model's generated text -> OpenAI tool calls, incrementally,
// for streaming. Bytes go in as the sampler produces them (any split, even
// mid-character); events come out as soon as they are decided.
//
// Formats:
//   TC_HERMES  Qwen2.5 / Qwen3: content text, then zero or more
//              <tool_call>\n{"name": N, "arguments": {...}}\n</tool_call>
//              blocks; a leading <think>...</think> (Qwen3) is reasoning,
//              reported apart as vLLM's reasoning_content is, less the
//              newlines at its two ends (the template strips them when
//              it renders reasoning back: an empty block is no reasoning).
//   TC_LLAMA3  Llama 3.1 JSON calls, as vLLM's llama3_json parser reads
//              them when streaming: the reply is a call only when it
//              starts with '{' (after an optional <|python_tag|>; leading
//              blanks are allowed too); one or more {"name": N,
//              "parameters"|"arguments": {...}} objects separated by ';'.
//              Any other reply is content (vLLM's non-streaming path also
//              finds JSON mid-text; we keep the one streaming rule).
//
// Decisions (the caller can rely on them):
//   - Text that may still become a tag (`<tool`, `<thi`, leading blanks in
//     Llama) is held back until decided, then released as content if not.
//   - A call naming a tool not in tool_names, or whose object is not
//     {"name": string, "arguments": object}, comes back as content, tag and
//     all (byte for byte what the model wrote).
//   - Arguments are streamed as generated (whitespace included), never
//     splitting a UTF-8 character or a JSON escape; the concatenation of a
//     call's TC_CALL_ARGS texts is its function.arguments and is checked to
//     parse as JSON before TC_CALL_END. When the name is not first or the
//     arguments are not an object, the call is held whole instead and its
//     arguments come in one delta, re-serialized compactly by cJSON.
//   - Once a call has begun (TC_CALL_BEGIN sent) nothing can be taken back:
//     if its arguments then prove malformed or end unterminated, feed or
//     finish returns -1 with tc_error naming the call; the caller reports
//     it (the reply cannot be a well-formed tool call). A call that ends
//     before its begin was decided comes back as content.
//   - Blanks right after </think> and </tool_call> are dropped (the
//     template's separators, not content).
//   - Event streams depend on chunking only in how text deltas are cut:
//     after joining adjacent deltas of one kind (and call), feeding the
//     text whole, byte by byte or in any chunks gives the same events.
#ifndef TESSERA_TOOLCALL_H
#define TESSERA_TOOLCALL_H

#include <stddef.h>
#include <stdint.h>

typedef enum { TC_HERMES, TC_LLAMA3 } tc_format;

typedef enum {
    TC_CONTENT,    // text: a content delta
    TC_REASONING,  // text: a reasoning_content delta
    TC_CALL_BEGIN, // index, id, name: a new call (arguments "" so far)
    TC_CALL_ARGS,  // index, text: an arguments fragment
    TC_CALL_END,   // index: the call is complete, its arguments parse
} tc_kind;

enum { TC_ID_LEN = 29 }; // "call_" + 24 alnum

typedef struct {
    tc_kind kind;
    int index;        // the call's position in the reply (0, 1, ...)
    const char *id;   // BEGIN: "call_" + 24 alnum, NUL-terminated
    const char *name; // BEGIN: the tool's name, NUL-terminated
    const char *text; // CONTENT/REASONING/ARGS: len bytes, not terminated
    size_t len;
} tc_event;

// Receives each event; every pointer in ev is borrowed for the call only.
typedef void (*tc_emit_fn)(void *ud, const tc_event *ev);

typedef struct {
    tc_format format;
    const char *const *tool_names; // borrowed; copied by tc_new
    int n_tools;                   // 0: no call is ever accepted
    uint64_t id_seed;  // call ids come from a splitmix64 stream on this seed
                       // (pass a random seed; a fixed one makes ids fixed)
    int in_think;      // HERMES: the prompt already opened <think>, so the
                       // reply starts as reasoning until </think>
    tc_emit_fn emit;
    void *ud;
} tc_opts;

typedef struct tc_parser tc_parser;

// Returns a new parser (copies what it needs from opts); free with
// tc_free. NULL only when out of memory.
tc_parser *tc_new(const tc_opts *opts);
void tc_free(tc_parser *p);

// Feeds the next n bytes of generated text. Returns 0, or -1 with
// tc_error set (a begun call went bad); after -1 the parser stays failed.
int tc_feed(tc_parser *p, const char *s, size_t n);

// The text ended: releases what was held back (as content, or reasoning
// inside an unclosed <think>). Returns 0, or -1 when a begun call is
// unterminated (tc_error names it).
int tc_finish(tc_parser *p);

// How many calls completed so far (TC_CALL_END events).
int tc_n_calls(const tc_parser *p);

// The last error message (borrowed, "" when none).
const char *tc_error(const tc_parser *p);

#endif
