// chat_int: what chat.c and chat_tools.c share (private to core/chat*).
// The rendering state and the one way to append to it.
#ifndef TESSERA_CHAT_INT_H
#define TESSERA_CHAT_INT_H

#include <stddef.h>

#include "chat.h"
#include "util.h"

// A view [p, p+n) of a borrowed string.
typedef struct view {
    const char *p;
    size_t n;
} view;

// Rendering state: the prompt so far, its segments, and who is writing.
typedef struct render {
    util_buf out;
    chat_seg *segs;
    int n_segs, cap_segs;
    int msg;      // the message whose turn is being written, -1 for none
    int trained;  // inside an assistant message's span
    int oom;
    const chat_tools *tools;  // NULL: none
} render;

// How many tool calls message i makes.
static inline int chat_n_calls(const render *r, int i) {
    return r->tools && r->tools->calls && i >= 0 ? r->tools->calls[i].n : 0;
}

// Whether the request has tool definitions.
static inline int chat_has_tools(const render *r) { return r->tools && r->tools->n_defs > 0; }

// Appends v as kind, extending the last segment when nothing but the bytes
// differ, so that segments stay maximal (chat.c).
void chat_put(render *r, chat_seg_kind kind, view v);

// Validates tools (may be NULL) for family f and msgs[0..n): a family that
// renders them, calls on assistant messages only, each with a name and an
// object for arguments. Returns 0 or -1 with err naming the message and
// call (chat_tools.c).
int chat_tools_validate(chat_family f, const chat_msg *msgs, int n, const chat_tools *tools, err_t *err);

// Qwen2.5 / Qwen3: the "# Tools" system turn that replaces the system turn
// when tools are given (msgs[0]'s content inside it when it is a system one).
void chat_qwen_tools_turn(render *r, chat_family f, const chat_msg *msgs);

// Qwen2.5 / Qwen3: message i's <tool_call> blocks; newline_first says
// whether the first one starts with "\n".
void chat_qwen_tool_calls(render *r, int i, int newline_first);

// Llama 3.1: the tools text of the first user turn (instructions, then each
// tool as tojson(indent=4) and a blank line), before that message's content.
void chat_llama31_tools_text(render *r);

// Llama 3.1: message i's one call as {"name": NAME, "parameters": ARGS}.
void chat_llama31_call(render *r, int i);

#endif
