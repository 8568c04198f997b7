// completion_tools: tool calling inside a generation job (completion.c),
// private to it. Four steps, in the job's order:
//
//   ct_check     (loop thread) the chat template can render tools: only
//                qwen2.5, qwen3 and llama3.1 have a tool format; tools on
//                another family are a 400 with param "tools" naming it.
//   ct_render    (thread pool) the prompt through chat_render_tools: the
//                tools as sent, each history call with its arguments
//                parsed, a null assistant content with calls as null.
//   ct_compile   (thread pool) the grammar of one call, a JSON Schema text
//                compiled through the grammar cache: {"name": {"const":
//                N}, "arguments": P} ("parameters" for Llama 3.1), both
//                required, nothing else, anyOf over the tools the reply
//                may call (the named one, or all). P is the tool's
//                parameters ({} -> an object without properties). A P the
//                engine refuses is a 400 "tools[i].function.parameters" for
//                a strict tool; a non-strict one falls back to any object
//                (logged at info, once per request).
//   ct_constrain (loop thread) the engine's tool fields of srv_request
//                (server.h): mode, grammar, call tags, max_calls.
//
// Then per choice a ct_reply runs the reply text (after the stop strings)
// through a tc_parser (core/toolcall.h) into content, reasoning_content
// and tool calls: Hermes for qwen2.5/qwen3, Llama 3.1's JSON for
// llama3.1. It runs when the request has tools the reply may call, and
// for every qwen3 chat reply, so that reasoning always lands in
// reasoning_content (as vLLM's qwen3 reasoning parser does). Without a
// sender it collects the answer for api_chat_completion_json; with one it
// turns each event into an api_delta as it comes (a call's first delta:
// index, id, name, arguments ""; then argument fragments, each a whole
// piece of the JSON text: never half an escape or a character).
//
// Logprobs with a parser: one entry per sampled token, in order, whatever
// part of the reply the token's text fed (reasoning, content or a call),
// as vLLM reports them. Non-streamed they are all of
// choices[].logprobs.content; streamed, a token's entry rides on the
// first chunk its text produced, or on a chunk with an empty delta when
// its text produced none (held back by the parser, or a tag).
#ifndef TESSERA_COMPLETION_TOOLS_H
#define TESSERA_COMPLETION_TOOLS_H

#include <stddef.h>
#include <stdint.h>

#include "api.h"
#include "chat.h"
#include "gcache.h"
#include "server.h"

// 0, or -1 with e filled (400 "tools") when the request declares tools
// and f has no tool format, or f's call tags are not tokens of t.
int ct_check(const api_request *q, chat_family f, const tok *t, api_error *e);

// The chat prompt of q (a new one: chat_prompt_free), or NULL with e
// filled: 400 "messages" for a conversation the template cannot render,
// 500 when out of memory.
chat_prompt *ct_render(const api_request *q, chat_family f, const chat_opts *opts, api_error *e);

// The call grammar of q into *out (a new reference: gm_grammar_unref), or
// *out = NULL when the reply may not call (no tools, tool_choice "none").
// ws_max as gm_opts.ws_max; a Hermes call's grammar also takes up to
// SRV_CALL_WS blanks after the object (gm_opts.ws_after: the template's
// "\n" before </tool_call> fuses with the object's last bytes). Returns 0,
// or -1 with e filled. request_id names the request in the log.
int ct_compile(gc_cache *gc, const api_request *q, chat_family f, int ws_max, const char *request_id,
               gm_grammar **out, api_error *e);

// Fills r's tools_mode, call_grammar (borrowed: the caller keeps its
// reference until every choice has finished), call_open, call_close and
// max_calls for q. r's other fields are left alone.
void ct_constrain(srv_request *r, const api_request *q, chat_family f, const tok *t, gm_grammar *call_grammar);

// Whether q's chat replies go through a ct_reply.
int ct_parses(const api_request *q, chat_family f);

// ---- one choice's reply ---------------------------------------------------------

typedef struct ct_reply ct_reply;

// Receives one streamed delta (borrowed for the call only).
typedef void (*ct_send_fn)(void *ud, const api_delta *d);

// A new reply parser for q on family f (ct_parses true), or NULL when out
// of memory. id_seed makes its call ids (pass a random one). send NULL:
// collect the answer for ct_reply_choice; else stream through send(ud, ...).
ct_reply *ct_reply_new(const api_request *q, chat_family f, uint64_t id_seed, ct_send_fn send, void *ud);
void ct_reply_free(ct_reply *r);

// The next n bytes of the reply text; ct_reply_finish: the text ended.
// Return 0, or -1 when a begun call went bad (or out of memory):
// ct_reply_error says which. After -1 the reply stays failed.
int ct_reply_feed(ct_reply *r, const char *p, size_t n);
int ct_reply_finish(ct_reply *r);
const char *ct_reply_error(const ct_reply *r);

// How many calls completed.
int ct_reply_calls(const ct_reply *r);

// Fills ch's text, len, null_text, reasoning and calls from a collected,
// finished reply (pointers borrowed from r, valid until ct_reply_free).
// Only completed calls are listed: one cut short by max_tokens or a stop
// string is left out. Returns 0, or -1 when out of memory.
int ct_reply_choice(ct_reply *r, api_choice *ch);

#endif
