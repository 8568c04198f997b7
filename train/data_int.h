// data_int: private to train/data.c, data_tools.c and data_report.c. The
// helpers that read a line's JSON (shared by the first two), the
// conversation a line becomes (td_conv), the tool-calling side of it that
// data_tools.c reads and checks (tool definitions, assistant calls, tool
// results), and the bad-line list data_report.c keeps.
//
// Every td_ reader returns 0, TD_BAD with a reason in why that names the
// field ("messages[2].tool_calls[0].function.name: ..."), or TD_OOM.
// Strings in a td_conv are borrowed from the line's cJSON tree (which must
// outlive it until td_conv_reset) or owned by the td_conv; cJSON values it
// builds itself (tool definitions wrapped from legacy forms, parsed
// arguments) are owned by its tools.owned array.
#ifndef TESSERA_DATA_INT_H
#define TESSERA_DATA_INT_H

#include <stddef.h>

#include "chat.h"
#include "data.h"
#include "err.h"

struct cJSON;

// What a step that reads one line returns besides 0 (the line is good).
enum { TD_BLANK = 1, TD_BAD = -1, TD_OOM = -2 };

// A bad line's reason: sets why, returns TD_BAD.
int td_bad(err_t *why, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
// Grows *p (an array of *cap elements of size elem) to hold need; -1 on OOM.
int td_grow(void **p, int *cap, int need, size_t elem);
// Python's json.loads rules that cJSON does not apply (control characters
// in strings, \u0000) over s[0..n): 0, or TD_BAD naming the column.
int td_json_prescan(const char *s, size_t n, err_t *why);
// A string from the data quoted and cut to ~32 bytes for a message (in buf).
const char *td_clip(const char *s, char *buf, size_t n);
// A JSON value described for a message: its type, or the number or string.
const char *td_desc(const struct cJSON *v, char *buf, size_t n);
const struct cJSON *td_get(const struct cJSON *obj, const char *key);
// A field that is there and not null, false or [].
int td_present(const struct cJSON *v);
// data_report.c: counts a bad line in rep, keeping the first DATA_BAD_KEPT.
void td_note_bad(data_report *rep, int64_t line, const char *reason);

// One call of an assistant message: name and id borrowed from the line,
// arguments owned by td_tools.owned.
typedef struct td_call {
    chat_tool_call call;
    int msg;       // the message making it
    int answered;  // a tool message answered it
} td_call;

// The tool side of one line.
typedef struct td_tools {
    struct cJSON *owned;         // an array holding what the line's tools own; NULL until needed
    const struct cJSON **defs;   // tool definitions, as chat_tools.defs wants them
    int n_defs, cap_defs;
    td_call *calls;              // in message order
    int n_calls, cap_calls;
    int n_results;               // tool messages
    int parallel;                // parallel_tool_calls (default 1): 0 = one call per message at most
    char first[64];              // the first tool-related field of the line ("" for none)
} td_tools;

// The messages of one line. Strings are borrowed from the cJSON tree or
// owned (those built here: joined parts, Alpaca's user turn).
typedef struct td_conv {
    chat_msg *msgs;
    int *weights;
    int n, cap_msgs, cap_weights;
    char **owned;
    int n_owned, cap_owned;
    td_tools tools;
} td_conv;

int td_conv_add(td_conv *c, const char *role, const char *content, int weight);
// A message's text: a non-empty string or an array of text parts (joined).
int td_read_content(td_conv *c, const struct cJSON *v, const char *path, const char **out, err_t *why);

// data_tools.c. Line-level fields, read before the messages: OpenAI's
// `tools`, legacy `functions` and `parallel_tool_calls`; ShareGPT's `tools`
// (a JSON string or an array of function definitions).
int td_tools_openai(td_conv *c, const struct cJSON *root, err_t *why);
int td_tools_sharegpt(td_conv *c, const struct cJSON *root, err_t *why);
// OpenAI message i, an assistant one: reads `tool_calls` or legacy
// `function_call` as the calls of the message the caller adds next (index
// c->n); *n_calls gets how many (0: none).
int td_openai_calls(td_conv *c, const struct cJSON *m, int i, int *n_calls, err_t *why);
// OpenAI message i of role `tool` (answers the call its tool_call_id names)
// or legacy `function` (answers the latest unanswered call of its name):
// adds it as a tool message.
int td_openai_result(td_conv *c, const struct cJSON *m, int i, int legacy, err_t *why);
// ShareGPT conversations[i] from `function_call`: value is JSON, one
// {"name", "arguments"} or an array of them. join: the entry before was a
// function_call too, so these are more parallel calls of its message.
int td_sharegpt_call(td_conv *c, const char *value, int i, int join, err_t *why);
// ShareGPT conversations[i] from `observation`: a tool message answering
// the earliest unanswered call.
int td_sharegpt_result(td_conv *c, const char *value, int i, err_t *why);
// The line's tools and calls on family f: TD_BAD when the template has no
// tool format and the line uses one.
int td_tools_check(const td_conv *c, chat_family f, err_t *why);
// The chat_tools view of the line for chat_render_tools: NULL (nothing
// tool-related) or *out filled, with *calls a new array to free().
// TD_OOM when out of memory, else 0.
int td_tools_view(const td_conv *c, chat_tools *out, chat_calls **calls, chat_tool_call **flat);
void td_tools_reset(td_tools *t);

#endif
