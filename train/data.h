// data: training files (JSONL) read into token ids and a loss mask.
//
// One JSON object per line, in one of three formats, detected from the
// first good line of the file (a later line in another format is bad):
//
//   openai-chat  {"messages": [{"role": "system"|"user"|"assistant"|"tool",
//                 "content": "..." | [{"type": "text", "text": "..."}, ...],
//                 "weight": 0|1 (assistant only; 0 = no loss on it)}, ...],
//                 "tools"?, "functions"?, "parallel_tool_calls"?}
//                Text parts are joined with "\n" (as vLLM does).
//   alpaca       {"instruction", "input"?, "output", "system"?,
//                 "history"?: [[instruction, output], ...]}: earlier turns
//                from history, then user = instruction + "\n\n" + input (when
//                input is not empty), assistant = output.
//   sharegpt     {"conversations": [{"from": "system"|"human"|"gpt"|"user"|
//                 "assistant"|"function_call"|"observation", "value": "..."},
//                 ...], "system"?: "...", "tools"?}
//
// Tool calling (OpenAI's function-calling fine-tuning format, and ShareGPT
// as LLaMA-Factory writes it), read by data_tools.c:
//   tools        openai-chat: [{"type": "function", "function": {"name",
//                "description"?, "parameters"?}}], rendered as given; legacy
//                "functions": [{"name", "description"?, "parameters"?}], each
//                rendered as {"type": "function", "function": F} (give one of
//                the two). sharegpt: "tools" is a JSON string or an array of
//                such function definitions (or of OpenAI tools). Names follow
//                OpenAI's rule (1-64 of a-z A-Z 0-9 _ -), each declared once;
//                parameters, when given, is an object.
//   calls        an assistant message's "tool_calls": [{"id"?, "type":
//                "function", "function": {"name", "arguments"}}] or legacy
//                "function_call": {"name", "arguments"}; its content may then
//                be null, absent or "". arguments is a JSON string holding
//                an object (the object itself is taken too). sharegpt:
//                "function_call" entries whose value is JSON {"name",
//                "arguments"} or an array of them; consecutive ones are the
//                parallel calls of one assistant message (content null).
//                "parallel_tool_calls": false allows one call per message.
//   results      a "tool" message with "tool_call_id" answers the earliest
//                unanswered call with that id; legacy role "function" with
//                "name" answers the latest unanswered call of that name;
//                sharegpt's "observation" answers the earliest unanswered
//                call. A result must answer a call made before it.
// Only the qwen2.5, qwen3 and llama3.1 templates have a tool format (see
// chat.h: llama3.1 takes one call per message, and its tools ride in the
// first user message); on another template a line that uses tools is bad.
//
// Each example is rendered with the model's chat template into segments
// (core/chat.h chat_render_tools, with the line's tools and calls) and
// tokenized by chat_encode; the mask is 1 on the tokens of the trained
// segments of every assistant message with weight != 0 — its content, its
// tool calls with their markup (<tool_call>...</tool_call>, llama3.1's JSON)
// and its end-of-turn marker, what chat_span covers (for Qwen3 that
// includes the think block) — and 0 elsewhere (tool results included).
//
// Special tokens: only in the template's markup (<|im_start|>, <|im_end|>,
// Qwen3's <think> and </think> of its think block, <tool_call> and
// <tool_response> tags, Llama 3's bos, <|start_header_id|>,
// <|end_header_id|>, <|eot_id|>) do added tokens become their ids; message
// content, tool definitions and call arguments are always plain text, so a
// line whose user content says "<|im_end|>" cannot forge a turn. The text
// between two such markers is tokenized as one piece, so the ids are exactly
// those of tok_encode(rendered, parse_special=1) whenever no content
// contains added-token text (tests check this).
//
// A token is in the loss if any of its bytes lies in a trained segment (a
// token that straddles the span start, e.g. "\n\n" when ChatML content
// starts with a newline, is in).
//
// Lines: numbered from 1 as an editor shows them (blank lines included).
// Blank lines (empty or only JSON whitespace) are skipped and counted, not
// treated as bad: they lose no data and editors leave them. Every other line
// that cannot be used is a bad line with a reason naming the field: too
// long, invalid UTF-8, invalid JSON (Python's json.loads rules for control
// characters; "\u0000" is refused; the same for JSON inside strings: tool
// arguments, sharegpt's tools and function_call values), not an object,
// unknown format, a field missing or of the wrong type, unknown role, empty
// content, bad weight, a bad tool definition, a call to a tool the line
// does not declare, arguments that are not a JSON object, a tool result
// that answers no earlier call, more calls in a message than
// parallel_tool_calls allows, tools on a template without a tool format, a
// conversation the template cannot render, no (weighted) assistant
// message, or no trained token left within max_seq_len (the example is
// dropped: all its assistant tokens lie past the cut). Bad lines are
// skipped and counted; with strict, any bad line fails the load. Content
// that is "" is refused for every role (but an assistant message's with
// tool calls).
#ifndef TESSERA_DATA_H
#define TESSERA_DATA_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "chat.h"
#include "err.h"
#include "tokenizer.h"

typedef enum data_format {
    DATA_FMT_NONE,  // no good line yet
    DATA_FMT_OPENAI,
    DATA_FMT_ALPACA,
    DATA_FMT_SHAREGPT,
} data_format;

// "openai-chat", "alpaca", "sharegpt", "none" (static strings).
const char *data_format_name(data_format f);

#define DATA_MAX_LINE_DEFAULT ((size_t)8 << 20)  // bytes per line
#define DATA_BAD_KEPT 1000                       // bad lines a report remembers

typedef struct data_opts {
    const tok *tok;          // borrowed; must outlive the call
    chat_family family;      // the template to render with
    const char *bos_token;   // llama templates: NULL = "<|begin_of_text|>", "" = none
    int max_seq_len;         // tokens kept per example, > 0: longer ones keep their first max_seq_len
    int strict;              // any bad line fails data_load
    size_t max_line_bytes;   // 0 = DATA_MAX_LINE_DEFAULT
} data_opts;

// One tokenized example. mask[i] = 1: ids[i] is a target (the loss is on
// predicting ids[i] from ids[0..i)).
typedef struct data_example {
    int32_t *ids;
    uint8_t *mask;
    int n;           // tokens (after truncation)
    int n_trained;   // tokens with mask 1
    int n_messages;  // messages in the source line
    int line;        // 1-based line in the file (0 when not from a file)
    int truncated;   // 1 if it was longer than max_seq_len and cut
    int n_tools;     // tool definitions on its line
    int n_calls;     // tool calls its assistant messages make
    int n_results;   // tool messages (results of calls)
} data_example;

typedef struct data_bad {
    int64_t line;
    char reason[240];
} data_bad;

// What data_load saw. The caller allocates it; data_load fills it (also when
// it fails part way, as far as it got) and data_report_free frees its list.
typedef struct data_report {
    char path[256];
    data_format format;
    int64_t format_line;  // the line the format was detected from (0: none)
    int max_seq_len;
    int64_t lines;      // physical lines read
    int64_t blank;      // blank lines skipped
    int64_t ok, bad;    // examples kept, lines refused
    int64_t tokens;     // ids over the kept examples (after truncation)
    int64_t trained;    // of which mask 1
    int64_t truncated;  // kept examples cut at max_seq_len
    int len_min, len_max, len_p50, len_p90, len_p99;
    double len_mean;
    int msg_min, msg_max;
    double msg_mean;
    int64_t tool_examples;  // kept examples whose line declares tools
    int64_t tool_defs;      // tool definitions over the kept examples
    int64_t tool_calls;     // calls over the kept examples
    int64_t tool_results;   // tool messages over the kept examples
    data_bad *bad_lines;  // the first DATA_BAD_KEPT bad lines, in order
    int n_bad_lines;
} data_report;

typedef struct data_set data_set;

// Reads, checks and tokenizes a JSONL file. Returns a new set (free with
// data_free), or NULL with err set when the file cannot be read, on out of
// memory or a tokenizer failure, when no line is usable, and with
// opts->strict when any line is bad. rep may be NULL.
data_set *data_load(const char *path, const data_opts *opts, data_report *rep, err_t *err);
void data_free(data_set *ds);

int data_count(const data_set *ds);
// The i-th example (0 <= i < data_count), borrowed from ds.
const data_example *data_get(const data_set *ds, int i);
data_format data_set_format(const data_set *ds);

// Renders and tokenizes one conversation without tools (the step data_load
// runs per line). msgs: roles system/user/assistant (others are refused);
// weights (NULL = all 1) per message.
// Fills *ex with new ids/mask (free with data_example_free), truncated at
// opts->max_seq_len (ex->line = 0). Returns 0, or -1 with err naming the
// problem (no weighted assistant message, nothing trained within
// max_seq_len, a template the tokenizer cannot mark, out of memory).
int data_encode_chat(const data_opts *opts, const chat_msg *msgs, const int *weights, int n,
                     data_example *ex, err_t *err);
void data_example_free(data_example *ex);

// Moves a deterministic pseudo-random fraction frac (0 < frac < 1) of ds's
// examples into a new set *val (free with data_free): round(frac * n), at
// least 1, and at least 1 left in ds. Both keep file order. The same seed and
// data give the same split. Returns 0, or -1 with err (too few examples).
int data_split(data_set *ds, double frac, uint64_t seed, data_set **val, err_t *err);

// Recomputes rep's example statistics (ok, tokens, trained, truncated,
// lengths, messages) from ds, e.g. after a split; the line counts stay.
void data_report_stats(data_report *rep, const data_set *ds);

// Writes the report as lines of text to f (with a "tools:" line counting
// examples with tools, tool definitions, calls and tool results), listing
// at most max_listed bad lines ("line N: reason") and then "... and K more".
void data_report_print(FILE *f, const data_report *rep, int max_listed);
void data_report_free(data_report *rep);

#endif
