// chat_tools: tool definitions and tool calls in the Qwen2.5 / Qwen3 chat
// templates (see chat.h). The JSON the templates print with `| tojson` is
// written here, as Python's json.dumps(ensure_ascii=False) writes it.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "chat_int.h"

static void put_str(render *r, chat_seg_kind kind, const char *s) { chat_put(r, kind, (view){s, strlen(s)}); }

// A JSON string: quotes, \" \\ \n \r \t \b \f, \u00XX below 0x20, the rest
// as is (ensure_ascii=False).
static void json_str(util_buf *b, const char *s) {
    util_buf_put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        const char *e = c == '"' ? "\\\"" : c == '\\' ? "\\\\" : c == '\n' ? "\\n" : c == '\r' ? "\\r"
                      : c == '\t' ? "\\t" : c == '\b' ? "\\b" : c == '\f' ? "\\f" : NULL;
        if (!e && c < 0x20) snprintf(esc, sizeof esc, "\\u%04x", c), e = esc;
        if (e) util_buf_puts(b, e);
        else util_buf_put(b, s, 1);
    }
    util_buf_put(b, "\"", 1);
}

// An integral number within 2^53 prints as an int (json.dumps of a Python
// int); any other as Python's float repr.
static void json_num(util_buf *b, double v) {
    char num[40];
    if (isfinite(v) && v == floor(v) && fabs(v) <= 9007199254740992.0) snprintf(num, sizeof num, "%.0f", v);
    else util_py_float(v, num, sizeof num);
    util_buf_puts(b, num);
}

// A newline and the indent of depth levels (tojson(indent=N)).
static void json_newline(util_buf *b, int indent, int depth) {
    util_buf_puts(b, "\n");
    for (int k = 0; k < indent * depth; k++) util_buf_puts(b, " ");
}

// tojson: with no indent ", " between items and ": " after keys; with an
// indent, "," and a newline between items, each on its own indented line,
// an empty array or object as [] or {}. Keys in order.
static void json_value(util_buf *b, const cJSON *v, int indent, int depth) {
    if (cJSON_IsString(v)) json_str(b, v->valuestring);
    else if (cJSON_IsNumber(v)) json_num(b, v->valuedouble);
    else if (cJSON_IsTrue(v)) util_buf_puts(b, "true");
    else if (cJSON_IsFalse(v)) util_buf_puts(b, "false");
    else if (cJSON_IsArray(v) || cJSON_IsObject(v)) {
        int obj = cJSON_IsObject(v);
        util_buf_puts(b, obj ? "{" : "[");
        for (const cJSON *it = v->child; it; it = it->next) {
            if (it != v->child) util_buf_puts(b, indent ? "," : ", ");
            if (indent) json_newline(b, indent, depth + 1);
            if (obj) json_str(b, it->string), util_buf_puts(b, ": ");
            json_value(b, it, indent, depth + 1);
        }
        if (indent && v->child) json_newline(b, indent, depth);
        util_buf_puts(b, obj ? "}" : "]");
    } else util_buf_puts(b, "null");
}

// `v | tojson(indent=indent)`, as content: its strings are the client's (chat.h).
static void tojson(render *r, const cJSON *v, int indent) {
    util_buf b = {0};
    json_value(&b, v, indent, 0);
    if (b.oom) r->oom = 1;
    else chat_put(r, CHAT_CONTENT, (view){b.p, b.len});
    free(b.p);
}

int chat_tools_validate(chat_family f, const chat_msg *msgs, int n, const chat_tools *tools, err_t *err) {
    if (!tools) return 0;
    int ok = f == CHAT_QWEN25 || f == CHAT_QWEN3 || f == CHAT_LLAMA31;
    if (tools->n_defs > 0 && !ok)
        return err_set(err, "chat: tools: the %s chat template is not rendered with tools here (qwen2.5, "
                            "qwen3 and llama3.1 are)", chat_family_name(f));
    // Llama 3.1 puts the tools into the first message after the system one,
    // as a user turn whatever its role; we take only a user message there.
    int first = strcmp(msgs[0].role, "system") == 0 ? 1 : 0;
    if (tools->n_defs > 0 && f == CHAT_LLAMA31 && (first >= n || strcmp(msgs[first].role, "user") != 0))
        return err_set(err, "chat: tools: the llama3.1 chat template puts them in the first user message, and "
                            "message %d is %s", first, first >= n ? "missing" : msgs[first].role);
    for (int t = 0; t < tools->n_defs; t++)
        if (!tools->defs || !cJSON_IsObject(tools->defs[t]))
            return err_set(err, "chat: tools[%d]: expected a JSON object", t);
    for (int i = 0; tools->calls && i < n; i++) {
        const chat_calls *cs = &tools->calls[i];
        if (cs->n <= 0) continue;
        if (strcmp(msgs[i].role, "assistant") != 0)
            return err_set(err, "chat: message %d (%s): only an assistant message has tool_calls", i, msgs[i].role);
        if (!ok)
            return err_set(err, "chat: message %d (assistant): tool_calls are not rendered for the %s chat "
                                "template here (qwen2.5, qwen3 and llama3.1 are)", i, chat_family_name(f));
        if (f == CHAT_LLAMA31 && cs->n != 1)
            return err_set(err, "chat: message %d (assistant): %d tool_calls, and the llama3.1 chat template "
                                "takes exactly one per message", i, cs->n);
        for (int k = 0; k < cs->n; k++) {
            const chat_tool_call *c = &cs->calls[k];
            if (!c->name) return err_set(err, "chat: message %d tool_calls[%d]: name is missing", i, k);
            if (!cJSON_IsObject(c->arguments))
                return err_set(err, "chat: message %d tool_calls[%d] (%s): arguments: expected a JSON object",
                               i, k, c->name);
        }
    }
    return 0;
}

void chat_qwen_tools_turn(render *r, chat_family f, const chat_msg *msgs) {
    int sys = strcmp(msgs[0].role, "system") == 0;
    r->msg = sys ? 0 : -1;
    put_str(r, CHAT_MARKUP, "<|im_start|>system\n");
    if (sys) {
        put_str(r, CHAT_CONTENT, msgs[0].content);
        if (f == CHAT_QWEN3) put_str(r, CHAT_MARKUP, "\n\n");
    } else if (f == CHAT_QWEN25) {
        put_str(r, CHAT_MARKUP, "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.");
    }
    put_str(r, CHAT_MARKUP, f == CHAT_QWEN25 ? "\n\n# Tools\n\n" : "# Tools\n\n");
    put_str(r, CHAT_MARKUP, "You may call one or more functions to assist with the user query.\n\n"
                            "You are provided with function signatures within <tools></tools> XML tags:\n<tools>");
    for (int t = 0; t < r->tools->n_defs; t++) {
        put_str(r, CHAT_MARKUP, "\n");
        tojson(r, r->tools->defs[t], 0);
    }
    put_str(r, CHAT_MARKUP, "\n</tools>\n\nFor each function call, return a json object with function name and "
                            "arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": "
                            "<function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n");
}

void chat_qwen_tool_calls(render *r, int i, int newline_first) {
    for (int k = 0; k < chat_n_calls(r, i); k++) {
        const chat_tool_call *c = &r->tools->calls[i].calls[k];
        put_str(r, CHAT_MARKUP, k > 0 || newline_first ? "\n<tool_call>\n{\"name\": \"" : "<tool_call>\n{\"name\": \"");
        put_str(r, CHAT_CONTENT, c->name);
        put_str(r, CHAT_MARKUP, "\", \"arguments\": ");
        tojson(r, c->arguments, 0);
        put_str(r, CHAT_MARKUP, "}\n</tool_call>");
    }
}

void chat_llama31_tools_text(render *r) {
    put_str(r, CHAT_MARKUP, "Given the following functions, please respond with a JSON for a function call "
                            "with its proper arguments that best answers the given prompt.\n\n"
                            "Respond in the format {\"name\": function name, \"parameters\": dictionary of "
                            "argument name and its value}.Do not use variables.\n\n");
    for (int t = 0; t < r->tools->n_defs; t++) {
        tojson(r, r->tools->defs[t], 4);
        put_str(r, CHAT_MARKUP, "\n\n");
    }
}

void chat_llama31_call(render *r, int i) {
    const chat_tool_call *c = &r->tools->calls[i].calls[0];
    put_str(r, CHAT_MARKUP, "{\"name\": \"");
    put_str(r, CHAT_CONTENT, c->name);
    put_str(r, CHAT_MARKUP, "\", \"parameters\": ");
    tojson(r, c->arguments, 0);
    put_str(r, CHAT_MARKUP, "}");
}
