// toolcall: generated text -> tool-call events, for Qwen (Hermes tags,
// <think>) and Llama 3.1 (JSON) replies. Every case is fed whole, byte by
// byte and in random chunks, and the event streams must agree once
// adjacent deltas are joined; every delta is checked to be whole UTF-8
// and to end outside a JSON escape; every call's arguments are parsed
// with cJSON and compared with the object the model wrote.
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "../core/toolcall.h"
#include "../core/utf8.h"
#include "check.h"

enum { MAX_EV = 64 };

typedef struct {
    tc_kind kind;
    int index;
    char id[TC_ID_LEN + 1];
    char name[64];
    char *text; // joined deltas
    size_t len;
} ev;

typedef struct {
    ev evs[MAX_EV];
    int n, rc;
    char err[320];
    int in_str, esc; // the arguments scanner across deltas
    int bad_delta;   // a delta split a character or an escape
} outcome;

// Whether an arguments delta ends inside an escape, carrying the string
// state across deltas as a client concatenating them would.
static void scan_delta(outcome *o, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (o->esc == -1) o->esc = c == 'u' ? 4 : 0;
        else if (o->esc > 0) o->esc--;
        else if (o->in_str && c == '\\') o->esc = -1;
        else if (c == '"') o->in_str = !o->in_str;
    }
    if (o->esc) o->bad_delta = 1;
}

static void on_event(void *ud, const tc_event *e) {
    outcome *o = ud;
    bool text = e->kind == TC_CONTENT || e->kind == TC_REASONING || e->kind == TC_CALL_ARGS;
    if (text) {
        if (e->len == 0 || !utf8_valid(e->text, e->len)) o->bad_delta = 1;
        if (e->kind == TC_CALL_ARGS) scan_delta(o, e->text, e->len);
    }
    ev *last = o->n ? &o->evs[o->n - 1] : NULL;
    if (!(text && last && last->kind == e->kind && last->index == e->index)) {
        if (o->n == MAX_EV) return;
        last = &o->evs[o->n++];
        memset(last, 0, sizeof *last);
        last->kind = e->kind;
        last->index = e->index;
        if (e->kind == TC_CALL_BEGIN) {
            snprintf(last->id, sizeof last->id, "%s", e->id);
            snprintf(last->name, sizeof last->name, "%s", e->name);
            o->in_str = o->esc = 0;
        }
    }
    if (text) {
        last->text = realloc(last->text, last->len + e->len + 1);
        memcpy(last->text + last->len, e->text, e->len);
        last->len += e->len;
        last->text[last->len] = '\0';
    }
}

static const char *const TOOLS[] = {"get_weather", "get_order_status", "echo"};

// Feeds text in chunks of sizes from chunk (0: whole; 1: bytes; else a
// random stream seeded by it) to a fresh parser.
static void parse(outcome *o, tc_format fmt, int in_think, const char *text, unsigned chunk) {
    memset(o, 0, sizeof *o);
    tc_opts opts = {.format = fmt, .tool_names = TOOLS, .n_tools = 3, .id_seed = 42,
                    .in_think = in_think, .emit = on_event, .ud = o};
    tc_parser *p = tc_new(&opts);
    size_t n = strlen(text), at = 0;
    unsigned r = chunk;
    o->rc = 0;
    while (at < n && o->rc == 0) {
        size_t k = n - at;
        if (chunk == 1) k = 1;
        else if (chunk > 1) {
            r = r * 1103515245u + 12345u;
            k = 1 + (r >> 16) % 7;
            if (k > n - at) k = n - at;
        }
        o->rc = tc_feed(p, text + at, k);
        at += k;
    }
    if (o->rc == 0) o->rc = tc_finish(p);
    snprintf(o->err, sizeof o->err, "%s", tc_error(p));
    tc_free(p);
}

static void drop(outcome *o) {
    for (int i = 0; i < o->n; i++) free(o->evs[i].text);
}

static bool same(const outcome *a, const outcome *b) {
    if (a->n != b->n || a->rc != b->rc || strcmp(a->err, b->err) != 0) return false;
    for (int i = 0; i < a->n; i++) {
        const ev *x = &a->evs[i], *y = &b->evs[i];
        if (x->kind != y->kind || x->index != y->index || strcmp(x->id, y->id) || strcmp(x->name, y->name) ||
            x->len != y->len || (x->len && memcmp(x->text, y->text, x->len)))
            return false;
    }
    return true;
}

// Parses text every way and checks they agree; o gets the whole-text result.
static void parse_all(outcome *o, tc_format fmt, int in_think, const char *text) {
    parse(o, fmt, in_think, text, 0);
    CHECK(!o->bad_delta, "a delta split a character or escape: %s", text);
    for (unsigned chunk = 1; chunk < 40; chunk++) {
        outcome x;
        parse(&x, fmt, in_think, text, chunk);
        CHECK(same(o, &x), "chunking %u changes the events of: %s", chunk, text);
        CHECK(!x.bad_delta, "chunking %u: a delta split a character or escape: %s", chunk, text);
        drop(&x);
    }
}

// The joined text of kind (call index for arguments), "" if none.
static const char *text_of(const outcome *o, tc_kind kind, int index) {
    for (int i = 0; i < o->n; i++)
        if (o->evs[i].kind == kind && (kind != TC_CALL_ARGS || o->evs[i].index == index))
            return o->evs[i].text ? o->evs[i].text : "";
    return "";
}

static int count(const outcome *o, tc_kind kind) {
    int n = 0;
    for (int i = 0; i < o->n; i++) n += o->evs[i].kind == kind;
    return n;
}

// Call index: begun with name and id shape, ended, and its arguments
// parse to the same JSON as want.
static bool call_is(const outcome *o, int index, const char *name, const char *want) {
    const ev *b = NULL;
    bool ended = false;
    for (int i = 0; i < o->n; i++) {
        if (o->evs[i].index != index) continue;
        if (o->evs[i].kind == TC_CALL_BEGIN) b = &o->evs[i];
        if (o->evs[i].kind == TC_CALL_END) ended = true;
    }
    if (!b || !ended || strcmp(b->name, name) != 0 || strlen(b->id) != TC_ID_LEN || strncmp(b->id, "call_", 5))
        return false;
    for (int i = 5; i < TC_ID_LEN; i++)
        if (!((b->id[i] >= 'a' && b->id[i] <= 'z') || (b->id[i] >= 'A' && b->id[i] <= 'Z') ||
              (b->id[i] >= '0' && b->id[i] <= '9')))
            return false;
    cJSON *got = cJSON_Parse(text_of(o, TC_CALL_ARGS, index)), *exp = cJSON_Parse(want);
    bool eq = got && exp && cJSON_IsObject(got) && cJSON_Compare(got, exp, true);
    cJSON_Delete(got);
    cJSON_Delete(exp);
    return eq;
}

#define WEATHER "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": \"celsius\"}}"
#define WEATHER_ARGS "{\"city\": \"Paris\", \"unit\": \"celsius\"}"

static void test_single_call(void) {
    outcome o;
    parse_all(&o, TC_HERMES, 0, "<tool_call>\n" WEATHER "\n</tool_call>");
    CHECK(o.rc == 0 && count(&o, TC_CONTENT) == 0 && count(&o, TC_CALL_BEGIN) == 1);
    CHECK(call_is(&o, 0, "get_weather", WEATHER_ARGS));
    CHECK(strcmp(text_of(&o, TC_CALL_ARGS, 0), WEATHER_ARGS) == 0, "passed through as generated");
    drop(&o);
}

static void test_parallel_calls(void) {
    outcome o;
    parse_all(&o, TC_HERMES, 0,
              "<tool_call>\n" WEATHER "\n</tool_call>\n<tool_call>\n"
              "{\"name\": \"get_order_status\", \"arguments\": {\"order_id\": \"A-17\"}}\n</tool_call>");
    CHECK(o.rc == 0 && count(&o, TC_CALL_BEGIN) == 2 && count(&o, TC_CALL_END) == 2 && count(&o, TC_CONTENT) == 0);
    CHECK(call_is(&o, 0, "get_weather", WEATHER_ARGS));
    CHECK(call_is(&o, 1, "get_order_status", "{\"order_id\": \"A-17\"}"));
    CHECK(strcmp(o.evs[0].id, o.evs[3].id) != 0, "ids differ: %s %s", o.evs[0].id, o.evs[3].id);
    drop(&o);
    // The blanks after </tool_call> are separators; text after them is content.
    parse_all(&o, TC_HERMES, 0, "<tool_call>\n" WEATHER "\n</tool_call>\n\nDone.\n<tool_call>" WEATHER "</tool_call>");
    CHECK(o.rc == 0 && o.n == 7 && o.evs[3].kind == TC_CONTENT && strcmp(o.evs[3].text, "Done.\n") == 0);
    CHECK(call_is(&o, 0, "get_weather", WEATHER_ARGS) && call_is(&o, 1, "get_weather", WEATHER_ARGS));
    drop(&o);
}

// A failed parser stays failed; the calls counted are the ended ones.
static void test_after_error(void) {
    outcome o;
    memset(&o, 0, sizeof o);
    tc_opts opts = {.format = TC_HERMES, .tool_names = TOOLS, .n_tools = 3, .emit = on_event, .ud = &o};
    tc_parser *p = tc_new(&opts);
    const char *ok = "<tool_call>" WEATHER "</tool_call>", *bad = "<tool_call>{\"name\": \"echo\", \"arguments\": {]}";
    CHECK(tc_feed(p, ok, strlen(ok)) == 0 && tc_n_calls(p) == 1 && strcmp(tc_error(p), "") == 0);
    CHECK(tc_feed(p, bad, strlen(bad)) == -1 && strstr(tc_error(p), "tool call 1 (echo)"), "%s", tc_error(p));
    CHECK(tc_feed(p, "x", 1) == -1 && tc_finish(p) == -1 && tc_n_calls(p) == 1);
    tc_free(p);
    drop(&o);
}

// An empty reply (max_tokens 1 on a token that decodes to nothing, a
// stop string at once) finishes with no event: the parser was never fed.
static void test_empty_reply(void) {
    for (int f = 0; f < 2; f++) {
        outcome o;
        memset(&o, 0, sizeof o);
        tc_opts opts = {.format = f ? TC_LLAMA3 : TC_HERMES, .tool_names = TOOLS, .n_tools = 3, .emit = on_event,
                        .ud = &o};
        tc_parser *p = tc_new(&opts);
        CHECK(tc_finish(p) == 0 && o.n == 0 && tc_n_calls(p) == 0, "format %d", f);
        tc_free(p);
        drop(&o);
    }
}

static void test_text_before_call(void) {
    outcome o;
    parse_all(&o, TC_HERMES, 0, "Let me check the weather <tag>.\n<tool_call>\n" WEATHER "\n</tool_call>");
    CHECK(o.rc == 0 && strcmp(text_of(&o, TC_CONTENT, 0), "Let me check the weather <tag>.\n") == 0);
    CHECK(o.evs[0].kind == TC_CONTENT && call_is(&o, 0, "get_weather", WEATHER_ARGS));
    drop(&o);
}

static void test_think(void) {
    outcome o;
    parse_all(&o, TC_HERMES, 0, "<think>\nThe user wants <b>weather</b>.\n</think>\n\n<tool_call>\n" WEATHER "\n</tool_call>");
    CHECK(o.rc == 0 && strcmp(text_of(&o, TC_REASONING, 0), "The user wants <b>weather</b>.") == 0);
    CHECK(count(&o, TC_CONTENT) == 0 && call_is(&o, 0, "get_weather", WEATHER_ARGS));
    drop(&o);
    // The template opened <think> in the prompt: the reply starts inside it.
    parse_all(&o, TC_HERMES, 1, "just say hi</think>\n\nHello 世界!");
    CHECK(o.rc == 0 && strcmp(text_of(&o, TC_REASONING, 0), "just say hi") == 0);
    CHECK(strcmp(text_of(&o, TC_CONTENT, 0), "Hello 世界!") == 0);
    drop(&o);
    // The newlines at the block's ends are the template's; those inside are the model's.
    parse_all(&o, TC_HERMES, 0, "<think>\n\n</think>\n\nHi");
    CHECK(o.rc == 0 && count(&o, TC_REASONING) == 0 && strcmp(text_of(&o, TC_CONTENT, 0), "Hi") == 0);
    drop(&o);
    parse_all(&o, TC_HERMES, 0, "<think>\n\na\n\nb <c\n\n\n</think>x");
    CHECK(o.rc == 0 && strcmp(text_of(&o, TC_REASONING, 0), "a\n\nb <c") == 0 && strcmp(text_of(&o, TC_CONTENT, 0), "x") == 0);
    drop(&o);
    parse_all(&o, TC_HERMES, 1, "\nplan\n</think>\n\nok");
    CHECK(o.rc == 0 && strcmp(text_of(&o, TC_REASONING, 0), "plan") == 0);
    drop(&o);
    // An unclosed think block stays reasoning.
    parse_all(&o, TC_HERMES, 0, "<think>still thinking </thi");
    CHECK(o.rc == 0 && strcmp(text_of(&o, TC_REASONING, 0), "still thinking </thi") == 0 && count(&o, TC_CONTENT) == 0);
    drop(&o);
}

static void test_nested_arguments(void) {
    const char *args = "{\"order\": {\"id\": \"A1\", \"items\": [{\"sku\": \"x}\", \"qty\": 2}, {\"sku\": \"y]\"}]},"
                       " \"flags\": [true, null, -1.5e3, {}], \"empty\": {}}";
    char text[512];
    snprintf(text, sizeof text, "<tool_call>\n{\"name\": \"get_order_status\", \"arguments\": %s}\n</tool_call>", args);
    outcome o;
    parse_all(&o, TC_HERMES, 0, text);
    CHECK(o.rc == 0 && call_is(&o, 0, "get_order_status", args));
    CHECK(strcmp(text_of(&o, TC_CALL_ARGS, 0), args) == 0);
    drop(&o);
}

static void test_escapes_and_utf8(void) {
    const char *args = "{\"text\": \"say \\\"hi\\\"\\n\\t\\u00e9 \\ud83d\\ude00 北京 😀 é\", \"path\": \"C:\\\\tmp\\\\\"}";
    char text[512];
    snprintf(text, sizeof text, "前言 😀\n<tool_call>\n{\"name\": \"echo\", \"arguments\": %s}\n</tool_call>", args);
    outcome o;
    parse_all(&o, TC_HERMES, 0, text);
    CHECK(o.rc == 0 && call_is(&o, 0, "echo", args) && strcmp(text_of(&o, TC_CONTENT, 0), "前言 😀\n") == 0);
    drop(&o);
}

static void test_tag_inside_string(void) {
    const char *args = "{\"text\": \"<tool_call>{\\\"name\\\": \\\"x\\\"}</tool_call> and }\"}";
    char text[512];
    snprintf(text, sizeof text, "<tool_call>\n{\"name\": \"echo\", \"arguments\": %s}\n</tool_call>after", args);
    outcome o;
    parse_all(&o, TC_HERMES, 0, text);
    CHECK(o.rc == 0 && count(&o, TC_CALL_BEGIN) == 1 && call_is(&o, 0, "echo", args));
    CHECK(strcmp(text_of(&o, TC_CONTENT, 0), "after") == 0);
    drop(&o);
}

// Calls that never began come back as content, byte for byte.
static void test_not_a_call_is_content(void) {
    const char *texts[] = {
        "<tool_call>\n{\"name\": get_weather}\n</tool_call>",                           // malformed head
        "<tool_call>\n{\"name\": \"launch_missiles\", \"arguments\": {}}\n</tool_call>", // unknown tool
        "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Par",     // unknown tool? no: see below
        "<tool_call>\n{\"na",                                                          // unterminated head
        "<tool_call>\nplain words\n</tool_call> tail",                                 // no object
        "a <b> <tool c <tool_cal",                                                     // looks like a tag
        "x < y and <tool_call",                                                        // a tag cut by the end
    };
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
        if (i == 2) continue; // begun, so an error: test_unterminated_call
        outcome o;
        parse_all(&o, TC_HERMES, 0, texts[i]);
        CHECK(o.rc == 0 && o.n == 1 && o.evs[0].kind == TC_CONTENT && strcmp(o.evs[0].text, texts[i]) == 0,
              "content: %s", texts[i]);
        drop(&o);
    }
}

static void test_malformed_arguments(void) {
    outcome o;
    parse_all(&o, TC_HERMES, 0,
              "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": Paris}}\n</tool_call>");
    CHECK(o.rc == -1 && strstr(o.err, "tool call 0 (get_weather)") && strstr(o.err, "not a JSON object"), "%s", o.err);
    CHECK(count(&o, TC_CALL_BEGIN) == 1 && count(&o, TC_CALL_END) == 0);
    drop(&o);
    parse_all(&o, TC_HERMES, 0, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {}, \"x\": 1}\n</tool_call>");
    CHECK(o.rc == -1 && strstr(o.err, "expected '}'"), "%s", o.err);
    drop(&o);
}

static void test_unterminated_call(void) {
    outcome o;
    parse_all(&o, TC_HERMES, 0, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Par");
    CHECK(o.rc == -1 && strstr(o.err, "tool call 0 (get_weather)") && strstr(o.err, "ended inside"), "%s", o.err);
    CHECK(count(&o, TC_CALL_BEGIN) == 1 && strcmp(text_of(&o, TC_CALL_ARGS, 0), "{\"city\": \"Par") == 0);
    drop(&o);
    // Missing only the closing tag is a complete call.
    parse_all(&o, TC_HERMES, 0, "<tool_call>\n" WEATHER "\n");
    CHECK(o.rc == 0 && call_is(&o, 0, "get_weather", WEATHER_ARGS) && count(&o, TC_CONTENT) == 0);
    drop(&o);
}

// Not name-first, or arguments as a JSON string: read whole, re-serialized.
static void test_held_whole(void) {
    outcome o;
    parse_all(&o, TC_HERMES, 0,
              "<tool_call>\n{\"arguments\": {\"city\": \"Oslo\", \"n\": [1, 2]}, \"name\": \"get_weather\"}\n</tool_call>");
    CHECK(o.rc == 0 && call_is(&o, 0, "get_weather", "{\"city\":\"Oslo\",\"n\":[1,2]}"));
    CHECK(strcmp(text_of(&o, TC_CALL_ARGS, 0), "{\"city\":\"Oslo\",\"n\":[1,2]}") == 0);
    drop(&o);
    parse_all(&o, TC_HERMES, 0, "<tool_call>{\"name\": \"echo\", \"arguments\": \"{\\\"text\\\": \\\"é\\\"}\"}</tool_call>");
    CHECK(o.rc == 0 && call_is(&o, 0, "echo", "{\"text\": \"é\"}"));
    drop(&o);
    parse_all(&o, TC_HERMES, 0, "<tool_call>{\"name\": \"echo\"}</tool_call>");
    CHECK(o.rc == 0 && call_is(&o, 0, "echo", "{}"));
    drop(&o);
}

static void test_llama3(void) {
    outcome o;
    parse_all(&o, TC_LLAMA3, 0, "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\", \"unit\": \"celsius\"}}");
    CHECK(o.rc == 0 && count(&o, TC_CONTENT) == 0 && call_is(&o, 0, "get_weather", WEATHER_ARGS));
    drop(&o);
    parse_all(&o, TC_LLAMA3, 0, "<|python_tag|>" WEATHER);
    CHECK(o.rc == 0 && count(&o, TC_CONTENT) == 0 && call_is(&o, 0, "get_weather", WEATHER_ARGS));
    drop(&o);
    parse_all(&o, TC_LLAMA3, 0,
              " " WEATHER "; {\"name\": \"get_order_status\", \"parameters\": {\"order_id\": \"订单7\"}}");
    CHECK(o.rc == 0 && count(&o, TC_CONTENT) == 0 && count(&o, TC_CALL_END) == 2);
    CHECK(call_is(&o, 0, "get_weather", WEATHER_ARGS) && call_is(&o, 1, "get_order_status", "{\"order_id\": \"订单7\"}"));
    drop(&o);
    const char *content[] = {
        "Hello there, {\"name\": \"get_weather\"} is a tool.", // not at the start
        "  {\"answer\": 42}",                                  // JSON, not a call
        "{\"name\": \"nope\", \"parameters\": {}}",            // unknown tool
        "<|python_tag|>print(1)",                              // code, not JSON
        "   ",
        "<|python_ta",
    };
    for (size_t i = 0; i < sizeof content / sizeof *content; i++) {
        parse_all(&o, TC_LLAMA3, 0, content[i]);
        CHECK(o.rc == 0 && o.n == 1 && o.evs[0].kind == TC_CONTENT && strcmp(o.evs[0].text, content[i]) == 0,
              "content: %s", content[i]);
        drop(&o);
    }
    // Llama has no tags: <tool_call> is just text.
    parse_all(&o, TC_LLAMA3, 0, "<tool_call>\n" WEATHER "\n</tool_call>");
    CHECK(o.rc == 0 && count(&o, TC_CALL_BEGIN) == 0 && count(&o, TC_CONTENT) == 1);
    drop(&o);
}

// Random replies spliced from tag and JSON fragments: whatever they parse
// to, every chunking must agree and no delta may split a character or an
// escape.
static void test_random_replies(void) {
    static const char *const frags[] = {
        "<tool_call>", "</tool_call>", "<think>", "</think>", "<tool", "<", "\n", " ", "é", "😀", "\\", "\"",
        "{", "}", "[", "]", ";", "<|python_tag|>", "text", WEATHER, "{\"name\": \"echo\", \"arguments\": {",
        "\"a\": \"x\\\"y\\u00e9\"", "{\"name\": \"echo\"", ", \"parameters\": ", "\"k\": [1, {\"z\": null}]",
    };
    unsigned r = 7;
    int calls = 0, errors = 0, reasoning = 0;
    for (int t = 0; t < 2000; t++) {
        char text[1024] = "";
        r = r * 1103515245u + 12345u;
        int parts = 1 + (int)((r >> 16) % 12);
        for (int i = 0; i < parts; i++) {
            r = r * 1103515245u + 12345u;
            strcat(text, frags[(r >> 16) % (sizeof frags / sizeof *frags)]);
        }
        outcome o;
        parse_all(&o, t % 2 ? TC_LLAMA3 : TC_HERMES, t % 5 == 0, text);
        calls += count(&o, TC_CALL_END);
        errors += o.rc != 0;
        reasoning += count(&o, TC_REASONING);
        drop(&o);
    }
    printf("random replies: %d calls, %d errors, %d with reasoning\n", calls, errors, reasoning);
    CHECK(calls > 0 && errors > 0 && reasoning > 0, "the fragments reach calls, errors and reasoning");
}

int main(void) {
    test_single_call();
    test_parallel_calls();
    test_text_before_call();
    test_think();
    test_nested_arguments();
    test_escapes_and_utf8();
    test_tag_inside_string();
    test_not_a_call_is_content();
    test_malformed_arguments();
    test_unterminated_call();
    test_held_whole();
    test_llama3();
    test_after_error();
    test_empty_reply();
    test_random_replies();
    return check_finish("test_toolcall");
}
