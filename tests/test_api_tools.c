// test_api_tools: the tool-calling side of the OpenAI API. Requests:
// tools, tool_choice, parallel_tool_calls, the history's tool_calls and
// tool_call_id, parsed into api_request or refused with the exact status
// and param. Responses: message.tool_calls, null content,
// reasoning_content, and the streamed deltas, parsed back with cJSON.
#include "../serve/api.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

// ---- helpers -----------------------------------------------------------------------

static int parse(const char *body, api_request *r, api_error *e) {
    memset(e, 0, sizeof *e);
    return api_parse_chat(body, strlen(body), r, e);
}

// Expects a 400 naming param; part (may be NULL) must appear in the message.
static void bad(const char *body, const char *param, const char *part) {
    api_request r;
    api_error e;
    int rc = parse(body, &r, &e);
    CHECK(rc == -1, "accepted: %s", body);
    CHECK(e.status == 400, "status %d for %s", e.status, body);
    CHECK(strcmp(e.param, param) == 0, "param '%s', want '%s' for %s (%s)", e.param, param, body, e.message);
    CHECK(strcmp(e.type, "invalid_request_error") == 0, "type %s", e.type);
    if (part) CHECK(strstr(e.message, part) != NULL, "message '%s' lacks '%s'", e.message, part);
    api_request_free(&r);
}

#define USER "{\"role\":\"user\",\"content\":\"hi\"}"
#define CHAT(extra) "{\"model\":\"m\",\"messages\":[" USER "]" extra "}"
#define MSGS(list) "{\"model\":\"m\",\"messages\":[" list "]}"
#define FN(name) "{\"type\":\"function\",\"function\":{\"name\":\"" name "\"}}"
#define TOOLS(list) ",\"tools\":[" list "]"
// An assistant message calling one function, and the tool message answering it.
#define CALL(id, name, args)                                                                                  \
    "{\"id\":\"" id "\",\"type\":\"function\",\"function\":{\"name\":\"" name "\",\"arguments\":\"" args "\"}}"
#define ASSIST(calls) "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[" calls "]}"
#define ANSWER(id) "{\"role\":\"tool\",\"content\":\"r\",\"tool_call_id\":\"" id "\"}"

static const char *WEATHER =
    "{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"Weather in a city\","
    "\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"},"
    "\"unit\":{\"enum\":[\"c\",\"f\"]}},\"required\":[\"city\"]},\"strict\":true,\"x_extra\":1}}";

// ---- requests: valid ----------------------------------------------------------------

static void test_no_tools(void) {
    const char *bodies[] = {CHAT(""), CHAT(",\"tools\":null"), CHAT(",\"tools\":[]"),
                            CHAT(",\"tools\":[],\"tool_choice\":\"none\""), CHAT(",\"tool_choice\":\"auto\""),
                            CHAT(",\"tool_choice\":null,\"parallel_tool_calls\":null"),
                            CHAT(",\"functions\":[]")};
    for (size_t k = 0; k < sizeof bodies / sizeof *bodies; k++) {
        api_request r;
        api_error e;
        CHECK(parse(bodies[k], &r, &e) == 0, "%s: %s", bodies[k], e.message);
        CHECK(r.n_tools == 0 && r.tools == NULL && r.tools_json == NULL, "%s", bodies[k]);
        CHECK(r.tool_choice == API_TOOLS_NONE, "no tools: choice none (%s)", bodies[k]);
        CHECK(r.parallel_tool_calls == 1, "%s", bodies[k]);
        CHECK(r.messages[0].n_tool_calls == 0 && r.messages[0].tool_calls == NULL && r.messages[0].tool_call_id == NULL);
        CHECK(!r.messages[0].null_content);
        api_request_free(&r);
    }
}

static void test_tools_parsed(void) {
    char body[2048];
    snprintf(body, sizeof body,
             CHAT(",\"tools\":[%s," FN("f-2") ",{\"type\":\"function\",\"function\":{\"name\":\"g\","
                  "\"parameters\":{},\"strict\":null,\"description\":null}}],\"parallel_tool_calls\":false"),
             WEATHER);
    api_request r;
    api_error e;
    CHECK(parse(body, &r, &e) == 0, "%s (param %s)", e.message, e.param);
    CHECK(r.n_tools == 3 && r.tool_choice == API_TOOLS_AUTO && r.parallel_tool_calls == 0);
    CHECK(strcmp(r.tools[0].name, "get_weather") == 0 && r.tools[0].strict == 1);
    CHECK(r.tools[0].parameters && strcmp(r.tools[0].parameters,
                                          "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"},"
                                          "\"unit\":{\"enum\":[\"c\",\"f\"]}},\"required\":[\"city\"]}") == 0,
          "%s", r.tools[0].parameters);
    CHECK(strcmp(r.tools[1].name, "f-2") == 0 && r.tools[1].parameters == NULL && r.tools[1].strict == 0);
    CHECK(strcmp(r.tools[2].name, "g") == 0 && strcmp(r.tools[2].parameters, "{}") == 0 && r.tools[2].strict == 0);
    // tools_json: the array as sent, unknown keys and nulls included.
    cJSON *sent = cJSON_Parse(strstr(body, "\"tools\":") + 8);
    CHECK(r.tools_json != NULL);
    cJSON *kept = cJSON_Parse(r.tools_json);
    CHECK(sent && kept && cJSON_Compare(sent, kept, 1), "%s", r.tools_json);
    CHECK(strstr(r.tools_json, "\"x_extra\":1") && strstr(r.tools_json, "\"strict\":null"), "%s", r.tools_json);
    CHECK(strchr(r.tools_json, '\n') == NULL && strstr(r.tools_json, ": ") == NULL, "unformatted: %s", r.tools_json);
    cJSON_Delete(sent);
    cJSON_Delete(kept);
    api_request_free(&r);
}

static void test_tool_choice_parsed(void) {
    static const struct {
        const char *extra;
        api_tool_choice choice;
        int index;
    } cases[] = {
        {TOOLS(FN("a") "," FN("b")), API_TOOLS_AUTO, 0},
        {TOOLS(FN("a") "," FN("b")) ",\"tool_choice\":\"auto\"", API_TOOLS_AUTO, 0},
        {TOOLS(FN("a") "," FN("b")) ",\"tool_choice\":\"none\"", API_TOOLS_NONE, 0},
        {TOOLS(FN("a") "," FN("b")) ",\"tool_choice\":\"required\"", API_TOOLS_REQUIRED, 0},
        {TOOLS(FN("a") "," FN("b")) ",\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"b\"}}",
         API_TOOLS_NAMED, 1},
        {TOOLS(FN("a")) ",\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"a\"}}", API_TOOLS_NAMED, 0},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        char body[1024];
        snprintf(body, sizeof body, "{\"model\":\"m\",\"messages\":[" USER "]%s}", cases[k].extra);
        api_request r;
        api_error e;
        CHECK(parse(body, &r, &e) == 0, "%s: %s", body, e.message);
        CHECK(r.tool_choice == cases[k].choice, "%s: choice %d", body, (int)r.tool_choice);
        if (cases[k].choice == API_TOOLS_NAMED) CHECK(r.tool_choice_index == cases[k].index, "%s", body);
        api_request_free(&r);
    }
    // tool_choice "none" lets a JSON response_format stand beside tools.
    api_request r;
    api_error e;
    CHECK(parse(CHAT(TOOLS(FN("a")) ",\"tool_choice\":\"none\",\"response_format\":{\"type\":\"json_object\"}"), &r,
                &e) == 0,
          "%s", e.message);
    CHECK(r.tool_choice == API_TOOLS_NONE && r.format == API_FORMAT_JSON_OBJECT && r.n_tools == 1);
    api_request_free(&r);
    CHECK(parse(CHAT(TOOLS(FN("a")) ",\"response_format\":{\"type\":\"text\"}"), &r, &e) == 0, "%s", e.message);
    CHECK(r.tool_choice == API_TOOLS_AUTO && r.format == API_FORMAT_TEXT);
    api_request_free(&r);
}

// A whole agent turn: calls (parallel, an id reused in a later turn),
// answers, a call of a tool no longer declared.
static void test_history_parsed(void) {
    const char *body = MSGS(
        "{\"role\":\"system\",\"content\":\"s\"}," USER ","
        "{\"role\":\"assistant\",\"content\":\"Let me check.\",\"tool_calls\":[" CALL("c0", "get_weather", "{\\\"city\\\":\\\"Paris\\\"}") ","
        CALL("c1", "get_time", " { } ") "]},"
        ANSWER("c1") "," ANSWER("c0") ","
        "{\"role\":\"assistant\",\"content\":\"done\"}," USER ","
        "{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"c0\",\"function\":{\"name\":\"old_tool\",\"arguments\":\"{}\"}}]},"
        ANSWER("c0") ","
        "{\"role\":\"assistant\",\"content\":null}");
    api_request r;
    api_error e;
    CHECK(parse(body, &r, &e) == 0, "%s (param %s)", e.message, e.param);
    CHECK(r.n_messages == 10 && r.n_tools == 0);
    const api_message *a = &r.messages[2];
    CHECK(a->role == API_ROLE_ASSISTANT && strcmp(a->content, "Let me check.") == 0 && !a->null_content);
    CHECK(a->n_tool_calls == 2);
    CHECK(strcmp(a->tool_calls[0].id, "c0") == 0 && strcmp(a->tool_calls[0].name, "get_weather") == 0);
    CHECK(strcmp(a->tool_calls[0].arguments, "{\"city\":\"Paris\"}") == 0, "%s", a->tool_calls[0].arguments);
    CHECK(strcmp(a->tool_calls[1].arguments, " { } ") == 0, "arguments kept as sent");
    CHECK(r.messages[3].role == API_ROLE_TOOL && strcmp(r.messages[3].tool_call_id, "c1") == 0);
    CHECK(strcmp(r.messages[3].content, "r") == 0 && r.messages[3].n_tool_calls == 0);
    CHECK(strcmp(r.messages[4].tool_call_id, "c0") == 0);
    CHECK(r.messages[5].n_tool_calls == 0 && r.messages[5].tool_call_id == NULL);
    const api_message *b = &r.messages[7];
    CHECK(b->null_content && strcmp(b->content, "") == 0, "absent content with calls is null content");
    CHECK(b->n_tool_calls == 1 && strcmp(b->tool_calls[0].name, "old_tool") == 0, "a call's name need not be declared");
    CHECK(strcmp(r.messages[8].tool_call_id, "c0") == 0);
    CHECK(r.messages[9].null_content && r.messages[9].n_tool_calls == 0);
    api_request_free(&r);
}

// ---- requests: invalid ----------------------------------------------------------------

static void test_tools_invalid(void) {
    bad(CHAT(",\"tools\":{}"), "tools", "expected an array, but got an object");
    bad(CHAT(",\"tools\":\"f\""), "tools", "expected an array");
    bad(CHAT(TOOLS("1")), "tools[0]", "expected an object, but got an integer");
    bad(CHAT(TOOLS(FN("a") ",null")), "tools[1]", "expected an object, but got null");
    bad(CHAT(TOOLS("{\"function\":{\"name\":\"a\"}}")), "tools[0].type", "Missing required parameter");
    bad(CHAT(TOOLS("{\"type\":\"custom\",\"function\":{\"name\":\"a\"}}")), "tools[0].type",
        "Invalid value: 'custom'. Supported values are: 'function'.");
    bad(CHAT(TOOLS("{\"type\":1,\"function\":{\"name\":\"a\"}}")), "tools[0].type", "expected a string");
    bad(CHAT(TOOLS("{\"type\":\"function\"}")), "tools[0].function", "Missing required parameter: 'tools[0].function'");
    bad(CHAT(TOOLS("{\"type\":\"function\",\"function\":[]}")), "tools[0].function", "expected an object");
    bad(CHAT(TOOLS(FN("a") ",{\"type\":\"function\",\"function\":{}}")), "tools[1].function.name", "Missing");
    bad(CHAT(TOOLS("{\"type\":\"function\",\"function\":{\"name\":3}}")), "tools[0].function.name", "expected a string");
    bad(CHAT(TOOLS(FN(""))), "tools[0].function.name", "string too short");
    bad(CHAT(TOOLS(FN("a") "," FN("b") "," FN("get weather"))), "tools[2].function.name", "does not match pattern");
    bad(CHAT(TOOLS(FN("a.b"))), "tools[0].function.name", "'^[a-zA-Z0-9_-]+$'");
    bad(CHAT(TOOLS(FN("caf\xc3\xa9"))), "tools[0].function.name", "does not match pattern");
    bad(CHAT(TOOLS(FN("a234567890123456789012345678901234567890123456789012345678901234X"))),
        "tools[0].function.name", "string too long. Expected a string with maximum length 64, but got a string with length 65");
    {
        api_request r;
        api_error e;
        CHECK(parse(CHAT(TOOLS(FN("a234567890123456789012345678901234567890123456789012345678901234"))), &r, &e) == 0,
              "64 characters are allowed: %s", e.message);
        api_request_free(&r);
    }
    bad(CHAT(TOOLS(FN("a") "," FN("b") "," FN("a"))), "tools[2].function.name", "already declared by tools[0]");
    bad(CHAT(TOOLS("{\"type\":\"function\",\"function\":{\"name\":\"a\",\"description\":5}}")),
        "tools[0].function.description", "expected a string");
    bad(CHAT(TOOLS("{\"type\":\"function\",\"function\":{\"name\":\"a\",\"parameters\":\"{}\"}}")),
        "tools[0].function.parameters", "expected an object, but got a string");
    bad(CHAT(TOOLS("{\"type\":\"function\",\"function\":{\"name\":\"a\",\"parameters\":[]}}")),
        "tools[0].function.parameters", "expected an object, but got an array");
    bad(CHAT(TOOLS("{\"type\":\"function\",\"function\":{\"name\":\"a\",\"strict\":\"yes\"}}")),
        "tools[0].function.strict", "expected a boolean");
    // 128 tools are fine, 129 are not.
    char *body = malloc(129 * 64 + 256);
    for (int n = 128; n <= 129; n++) {
        int k = sprintf(body, "{\"model\":\"m\",\"messages\":[" USER "],\"tools\":[");
        for (int i = 0; i < n; i++) k += sprintf(body + k, "%s{\"type\":\"function\",\"function\":{\"name\":\"t%d\"}}", i ? "," : "", i);
        sprintf(body + k, "]}");
        if (n == 128) {
            api_request r;
            api_error e;
            CHECK(parse(body, &r, &e) == 0 && r.n_tools == 128, "%s", e.message);
            api_request_free(&r);
        } else {
            bad(body, "tools", "maximum length 128, but got an array with length 129");
        }
    }
    free(body);
}

static void test_tool_choice_invalid(void) {
    bad(CHAT(",\"tool_choice\":\"required\""), "tool_choice", "only allowed when 'tools' are specified");
    bad(CHAT(",\"tools\":[],\"tool_choice\":\"required\""), "tool_choice", "only allowed when 'tools' are specified");
    bad(CHAT(",\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"a\"}}"), "tool_choice",
        "only allowed when 'tools' are specified");
    bad(CHAT(TOOLS(FN("a")) ",\"tool_choice\":\"any\""), "tool_choice", "Invalid value: 'any'");
    bad(CHAT(TOOLS(FN("a")) ",\"tool_choice\":1"), "tool_choice", "expected a string or an object");
    bad(CHAT(TOOLS(FN("a")) ",\"tool_choice\":[]"), "tool_choice", "expected a string or an object, but got an array");
    bad(CHAT(TOOLS(FN("a")) ",\"tool_choice\":{\"function\":{\"name\":\"a\"}}"), "tool_choice.type", "Missing");
    bad(CHAT(TOOLS(FN("a")) ",\"tool_choice\":{\"type\":\"tool\",\"function\":{\"name\":\"a\"}}"), "tool_choice.type",
        "Invalid value: 'tool'");
    bad(CHAT(TOOLS(FN("a")) ",\"tool_choice\":{\"type\":\"function\"}"), "tool_choice.function", "Missing");
    bad(CHAT(TOOLS(FN("a")) ",\"tool_choice\":{\"type\":\"function\",\"function\":\"a\"}"), "tool_choice.function",
        "expected an object");
    bad(CHAT(TOOLS(FN("a")) ",\"tool_choice\":{\"type\":\"function\",\"function\":{}}"), "tool_choice.function.name",
        "Missing");
    bad(CHAT(TOOLS(FN("a")) ",\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"b\"}}"),
        "tool_choice.function.name", "no function named 'b' is declared in 'tools'");
    bad(CHAT(TOOLS(FN("a")) ",\"parallel_tool_calls\":1"), "parallel_tool_calls", "expected a boolean");
    bad(CHAT(TOOLS(FN("a")) ",\"parallel_tool_calls\":\"false\""), "parallel_tool_calls", "expected a boolean");
    // One grammar per reply: the calls' or the response format's.
    bad(CHAT(TOOLS(FN("a")) ",\"response_format\":{\"type\":\"json_object\"}"), "response_format", "one grammar");
    bad(CHAT(TOOLS(FN("a")) ",\"tool_choice\":\"required\",\"response_format\":{\"type\":\"json_schema\","
             "\"json_schema\":{\"name\":\"x\"}}"),
        "response_format", "unless 'tool_choice' is 'none'");
}

static void test_legacy_refused(void) {
    bad(CHAT(",\"functions\":[{\"name\":\"f\"}]"), "functions", "use");
    bad(CHAT(",\"functions\":[{\"name\":\"f\"}]"), "functions", "'tools'");
    bad(CHAT(",\"function_call\":\"auto\""), "function_call", "'tool_choice'");
    bad(CHAT(",\"function_call\":{\"name\":\"f\"}"), "function_call", "'tool_choice'");
    bad(MSGS(USER ",{\"role\":\"function\",\"name\":\"f\",\"content\":\"1\"}"), "messages[1].role", "role 'tool'");
}

static void test_history_invalid(void) {
    bad(MSGS("{\"role\":\"assistant\",\"tool_calls\":{}}"), "messages[0].tool_calls", "expected an array");
    bad(MSGS(USER ",{\"role\":\"user\",\"content\":\"x\",\"tool_calls\":[" CALL("c", "f", "{}") "]}"),
        "messages[1].tool_calls", "only messages with role 'assistant'");
    bad(MSGS(ASSIST("3")), "messages[0].tool_calls[0]", "expected an object");
    bad(MSGS(ASSIST(CALL("c", "f", "{}") ",{\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}")),
        "messages[0].tool_calls[1].id", "Missing required parameter");
    bad(MSGS(ASSIST("{\"id\":7,\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}")), "messages[0].tool_calls[0].id",
        "expected a string, but got an integer");
    bad(MSGS(ASSIST(CALL("", "f", "{}"))), "messages[0].tool_calls[0].id", "empty string");
    bad(MSGS(ASSIST("{\"id\":\"c\",\"type\":\"custom\",\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}")),
        "messages[0].tool_calls[0].type", "Invalid value: 'custom'");
    bad(MSGS(ASSIST("{\"id\":\"c\",\"type\":\"function\"}")), "messages[0].tool_calls[0].function", "Missing");
    bad(MSGS(ASSIST("{\"id\":\"c\",\"function\":\"f\"}")), "messages[0].tool_calls[0].function", "expected an object");
    bad(MSGS(ASSIST("{\"id\":\"c\",\"function\":{\"arguments\":\"{}\"}}")), "messages[0].tool_calls[0].function.name",
        "Missing");
    bad(MSGS(ASSIST(CALL("c", "", "{}"))), "messages[0].tool_calls[0].function.name", "empty string");
    bad(MSGS(ASSIST("{\"id\":\"c\",\"function\":{\"name\":\"f\"}}")), "messages[0].tool_calls[0].function.arguments",
        "Missing");
    bad(MSGS(ASSIST("{\"id\":\"c\",\"function\":{\"name\":\"f\",\"arguments\":{}}}")),
        "messages[0].tool_calls[0].function.arguments", "expected a string, but got an object");
    bad(MSGS(ASSIST(CALL("c", "f", "{\\\"a\\\":"))), "messages[0].tool_calls[0].function.arguments",
        "is not valid JSON");
    bad(MSGS(ASSIST(CALL("c", "f", "[1]"))), "messages[0].tool_calls[0].function.arguments", "a JSON object");
    bad(MSGS(ASSIST(CALL("c", "f", "{} {}"))), "messages[0].tool_calls[0].function.arguments", "not valid JSON");
    bad(MSGS(ASSIST(CALL("c", "f", ""))), "messages[0].tool_calls[0].function.arguments", "not valid JSON");
    bad(MSGS(USER "," ASSIST(CALL("c", "f", "{}") "," CALL("d", "f", "\\\"x\\\""))),
        "messages[1].tool_calls[1].function.arguments", "holds another JSON value");
    // tool messages: tool_call_id required, answering an earlier open call.
    bad(MSGS(USER "," ASSIST(CALL("c", "f", "{}")) ",{\"role\":\"tool\",\"content\":\"r\"}"),
        "messages[2].tool_call_id", "Missing required parameter: 'messages[2].tool_call_id'.");
    bad(MSGS(USER "," ASSIST(CALL("c", "f", "{}")) ",{\"role\":\"tool\",\"content\":\"r\",\"tool_call_id\":1}"),
        "messages[2].tool_call_id", "expected a string");
    bad(MSGS(USER "," ASSIST(CALL("c", "f", "{}")) ",{\"role\":\"tool\",\"tool_call_id\":\"c\"}"),
        "messages[2].content", "Missing");
    bad(MSGS(USER "," ANSWER("c")), "messages[1].tool_call_id",
        "Invalid 'messages[1].tool_call_id': 'c' answers no earlier tool call.");
    bad(MSGS(USER "," ASSIST(CALL("c", "f", "{}")) "," ANSWER("call_x")), "messages[2].tool_call_id",
        "'call_x' answers no earlier tool call");
    bad(MSGS(USER "," ASSIST(CALL("c", "f", "{}")) "," ANSWER("c") "," ANSWER("c")), "messages[3].tool_call_id",
        "must be a response to a preceding message with 'tool_calls'");
    // The call must come before its answer, not after.
    bad(MSGS(USER ",{\"role\":\"assistant\",\"content\":\"x\"}," ANSWER("c") "," ASSIST(CALL("c", "f", "{}"))),
        "messages[2].tool_call_id", "answers no earlier tool call");
    // Two turns reusing an id: each call is answered once.
    bad(MSGS(USER "," ASSIST(CALL("c", "f", "{}")) "," ANSWER("c") "," ASSIST(CALL("c", "f", "{}")) "," ANSWER("c") ","
             ANSWER("c")),
        "messages[5].tool_call_id", "answers no earlier tool call");
    // A partly read history is freed (ASan): a bad second call after a good one.
    bad(MSGS(USER "," ASSIST(CALL("c", "f", "{}") "," CALL("d", "f", "{}") ",{\"id\":\"e\"}")),
        "messages[1].tool_calls[2].function", "Missing");
}

// A long agent history (20000 calls sharing one id, each answered once)
// checks quickly, and one answer too many is named by its index.
static void test_history_large(void) {
    enum { N = 20000 };
    char *body = malloc((size_t)N * 120 + 256);
    for (int extra = 0; extra <= 1; extra++) {
        int k = sprintf(body, "{\"model\":\"m\",\"messages\":[" USER ",{\"role\":\"assistant\",\"tool_calls\":[");
        for (int i = 0; i < N; i++) k += sprintf(body + k, "%s" CALL("c", "f", "{}"), i ? "," : "");
        k += sprintf(body + k, "]}");
        for (int i = 0; i < N + extra; i++) k += sprintf(body + k, "," ANSWER("c"));
        sprintf(body + k, "]}");
        if (!extra) {
            api_request r;
            api_error e;
            CHECK(parse(body, &r, &e) == 0, "%s", e.message);
            CHECK(r.n_messages == N + 2 && r.messages[1].n_tool_calls == N);
            api_request_free(&r);
        } else {
            char param[64];
            snprintf(param, sizeof param, "messages[%d].tool_call_id", N + 2);
            bad(body, param, "answers no earlier tool call");
        }
    }
    free(body);
}

// ---- responses ---------------------------------------------------------------------

static const cJSON *get(const cJSON *o, const char *k) { return cJSON_GetObjectItemCaseSensitive(o, k); }

static int str_is(const cJSON *v, const char *want) { return cJSON_IsString(v) && strcmp(v->valuestring, want) == 0; }

static const cJSON *message_of(const cJSON *root, int i) { return get(cJSON_GetArrayItem(get(root, "choices"), i), "message"); }

static void test_completion_calls_json(void) {
    // Arguments are taken by length: the bytes after len are not part of it.
    const char *args0 = "{\"city\": \"Paris\\n\", \"q\": \"\xe4\xb8\x96\"}XX";
    api_out_call calls[2] = {{.id = "call_a1", .name = "get_weather", .arguments = args0, .len = strlen(args0) - 2},
                             {.id = "call_b2", .name = "get_time", .arguments = "{}", .len = 2}};
    api_choice ch[3] = {
        {.index = 0, .text = "", .len = 0, .finish_reason = "tool_calls", .null_text = 1, .calls = calls, .n_calls = 2},
        {.index = 1, .text = "Checking.", .len = 9, .finish_reason = "tool_calls", .reasoning = "think\nhard!", .reasoning_len = 10,
         .calls = calls + 1, .n_calls = 1},
        {.index = 2, .text = "plain", .len = 5, .finish_reason = "stop", .reasoning = "", .reasoning_len = 0},
    };
    api_usage u = {7, 3};
    char *s = api_chat_completion_json("chatcmpl-9", 5, "m", ch, 3, &u);
    cJSON *o = cJSON_Parse(s);
    CHECK(o != NULL, "%s", s);
    const cJSON *m0 = message_of(o, 0), *m1 = message_of(o, 1), *m2 = message_of(o, 2);
    // Choice 0: calls only: content null, no reasoning_content.
    CHECK(str_is(get(m0, "role"), "assistant"));
    CHECK(cJSON_IsNull(get(m0, "content")), "content null: %s", s);
    CHECK(get(m0, "reasoning_content") == NULL);
    CHECK(str_is(get(cJSON_GetArrayItem(get(o, "choices"), 0), "finish_reason"), "tool_calls"));
    const cJSON *tc = get(m0, "tool_calls");
    CHECK(cJSON_IsArray(tc) && cJSON_GetArraySize(tc) == 2);
    const cJSON *c0 = cJSON_GetArrayItem(tc, 0), *c1 = cJSON_GetArrayItem(tc, 1);
    CHECK(str_is(get(c0, "id"), "call_a1") && str_is(get(c0, "type"), "function"));
    CHECK(str_is(get(get(c0, "function"), "name"), "get_weather"));
    CHECK(str_is(get(get(c0, "function"), "arguments"), "{\"city\": \"Paris\\n\", \"q\": \"\xe4\xb8\x96\"}"),
          "arguments: the exact text, a string: %s", s);
    CHECK(cJSON_GetArraySize(c0) == 3 && cJSON_GetArraySize(get(c0, "function")) == 2, "no other keys");
    // What a client does: parse the arguments string.
    cJSON *args = cJSON_Parse(get(get(c0, "function"), "arguments")->valuestring);
    CHECK(args && str_is(get(args, "city"), "Paris\n"));
    cJSON_Delete(args);
    CHECK(str_is(get(c1, "id"), "call_b2") && str_is(get(get(c1, "function"), "arguments"), "{}"));
    // Choice 1: text before a call, and reasoning.
    CHECK(str_is(get(m1, "content"), "Checking."));
    CHECK(str_is(get(m1, "reasoning_content"), "think\nhard"), "reasoning by length");
    CHECK(cJSON_GetArraySize(get(m1, "tool_calls")) == 1 && str_is(get(cJSON_GetArrayItem(get(m1, "tool_calls"), 0), "id"), "call_b2"));
    // Choice 2: no calls: no tool_calls key; an empty reasoning is still there.
    CHECK(str_is(get(m2, "content"), "plain") && get(m2, "tool_calls") == NULL);
    CHECK(str_is(get(m2, "reasoning_content"), ""));
    CHECK(cJSON_IsNull(get(m2, "refusal")));
    cJSON_Delete(o);
    free(s);
    // A plain choice has exactly the keys it had before tools.
    api_choice plain = {.index = 0, .text = "x", .len = 1, .finish_reason = "stop"};
    s = api_chat_completion_json("c", 1, "m", &plain, 1, NULL);
    o = cJSON_Parse(s);
    const cJSON *m = message_of(o, 0);
    CHECK(cJSON_GetArraySize(m) == 3 && str_is(get(m, "content"), "x") && cJSON_IsNull(get(m, "refusal")), "%s", s);
    CHECK(get(o, "usage") == NULL);
    cJSON_Delete(o);
    free(s);
}

// The chunk's delta, parsed; *root to free.
static const cJSON *delta_of(const api_delta *d, const char *finish, int usage_null, cJSON **root) {
    char *s = api_chat_delta_json("chatcmpl-1", 9, "m", 1, d, finish, NULL, 0, usage_null);
    CHECK(s && strchr(s, '\n') == NULL, "one line for SSE: %s", s);
    *root = cJSON_Parse(s);
    CHECK(*root != NULL, "%s", s);
    free(s);
    CHECK(str_is(get(*root, "object"), "chat.completion.chunk") && str_is(get(*root, "id"), "chatcmpl-1"));
    const cJSON *c = cJSON_GetArrayItem(get(*root, "choices"), 0);
    CHECK(cJSON_GetObjectItem(c, "index")->valueint == 1);
    return get(c, "delta");
}

static void test_delta_json(void) {
    cJSON *o;
    // The first delta of a call: index, id, type, name, arguments "".
    api_delta first = {.call_index = 0, .call_id = "call_x", .call_name = "get_weather", .args = "", .args_len = 0};
    const cJSON *d = delta_of(&first, NULL, 0, &o);
    CHECK(cJSON_GetArraySize(d) == 1 && get(d, "content") == NULL && get(d, "role") == NULL);
    const cJSON *tc = get(d, "tool_calls");
    CHECK(cJSON_GetArraySize(tc) == 1);
    const cJSON *c = cJSON_GetArrayItem(tc, 0);
    CHECK(cJSON_IsNumber(get(c, "index")) && get(c, "index")->valueint == 0);
    CHECK(str_is(get(c, "id"), "call_x") && str_is(get(c, "type"), "function"));
    CHECK(str_is(get(get(c, "function"), "name"), "get_weather") && str_is(get(get(c, "function"), "arguments"), ""));
    CHECK(cJSON_GetArraySize(c) == 4 && cJSON_GetArraySize(get(c, "function")) == 2);
    CHECK(get(o, "usage") == NULL && cJSON_IsNull(get(cJSON_GetArrayItem(get(o, "choices"), 0), "finish_reason")));
    cJSON_Delete(o);
    // Later deltas: the index and an arguments fragment only (by length).
    api_delta more = {.call_index = 2, .args = "{\"city\": \"Pa\"junk", .args_len = 12};
    d = delta_of(&more, NULL, 1, &o);
    c = cJSON_GetArrayItem(get(d, "tool_calls"), 0);
    CHECK(get(c, "index")->valueint == 2 && get(c, "id") == NULL && get(c, "type") == NULL);
    CHECK(cJSON_GetArraySize(c) == 2 && cJSON_GetArraySize(get(c, "function")) == 1);
    CHECK(str_is(get(get(c, "function"), "arguments"), "{\"city\": \"Pa"), "a fragment, by length");
    CHECK(cJSON_IsNull(get(o, "usage")));
    cJSON_Delete(o);
    // Content and reasoning deltas, by length; no call part.
    api_delta text = {.content = "Hello\"x", .content_len = 6, .call_index = -1};
    d = delta_of(&text, NULL, 0, &o);
    CHECK(cJSON_GetArraySize(d) == 1 && str_is(get(d, "content"), "Hello\""));
    cJSON_Delete(o);
    api_delta think = {.reasoning = "hmm\n", .reasoning_len = 4, .call_index = -1};
    d = delta_of(&think, NULL, 0, &o);
    CHECK(cJSON_GetArraySize(d) == 1 && str_is(get(d, "reasoning_content"), "hmm\n") && get(d, "content") == NULL);
    cJSON_Delete(o);
    // The role delta; a zeroed delta (call_index 0, nothing else) is {}.
    api_delta role = {.role = 1, .call_index = -1};
    d = delta_of(&role, NULL, 0, &o);
    CHECK(cJSON_GetArraySize(d) == 1 && str_is(get(d, "role"), "assistant"));
    cJSON_Delete(o);
    api_delta zero = {0};
    d = delta_of(&zero, "tool_calls", 0, &o);
    CHECK(cJSON_IsObject(d) && cJSON_GetArraySize(d) == 0, "empty delta");
    CHECK(str_is(get(cJSON_GetArrayItem(get(o, "choices"), 0), "finish_reason"), "tool_calls"));
    cJSON_Delete(o);
    d = delta_of(NULL, "stop", 0, &o);
    CHECK(cJSON_IsObject(d) && cJSON_GetArraySize(d) == 0, "NULL delta is {}");
    cJSON_Delete(o);
    // Everything at once, in one delta.
    api_delta all = {.role = 1, .content = "", .reasoning = "r", .reasoning_len = 1, .call_index = 1, .call_id = "call_y",
                     .call_name = "f", .args = "{}", .args_len = 2};
    d = delta_of(&all, NULL, 0, &o);
    CHECK(str_is(get(d, "role"), "assistant") && str_is(get(d, "content"), "") && str_is(get(d, "reasoning_content"), "r"));
    c = cJSON_GetArrayItem(get(d, "tool_calls"), 0);
    CHECK(get(c, "index")->valueint == 1 && str_is(get(c, "id"), "call_y") && str_is(get(get(c, "function"), "arguments"), "{}"));
    cJSON_Delete(o);
}

// api_chat_chunk_json is api_chat_delta_json with a content-only delta.
static void test_chunk_is_delta(void) {
    api_token_logprob lp = {"a", 1, -0.5f, NULL, 0};
    api_delta d1 = {.role = 1, .content = "", .call_index = -1}, d2 = {.content = "ab\n", .content_len = 3, .call_index = -1},
              d3 = {.call_index = -1};
    char *a = api_chat_chunk_json("i", 3, "m", 0, 1, NULL, 0, NULL, NULL, 0, 0);
    char *b = api_chat_delta_json("i", 3, "m", 0, &d1, NULL, NULL, 0, 0);
    CHECK(strcmp(a, b) == 0, "%s vs %s", a, b);
    CHECK(strcmp(a, "{\"id\":\"i\",\"object\":\"chat.completion.chunk\",\"created\":3,\"model\":\"m\","
                    "\"system_fingerprint\":null,\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\","
                    "\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}]}") == 0, "%s", a);
    free(a);
    free(b);
    a = api_chat_chunk_json("i", 3, "m", 1, 0, "ab\nc", 3, "stop", &lp, 1, 1);
    b = api_chat_delta_json("i", 3, "m", 1, &d2, "stop", &lp, 1, 1);
    CHECK(strcmp(a, b) == 0, "%s vs %s", a, b);
    free(a);
    free(b);
    a = api_chat_chunk_json("i", 3, "m", 0, 0, NULL, 0, "length", NULL, 0, 0);
    b = api_chat_delta_json("i", 3, "m", 0, &d3, "length", NULL, 0, 0);
    CHECK(strcmp(a, b) == 0 && strstr(a, "\"delta\":{}"), "%s vs %s", a, b);
    free(a);
    free(b);
}

int main(void) {
    test_no_tools();
    test_tools_parsed();
    test_tool_choice_parsed();
    test_history_parsed();
    test_tools_invalid();
    test_tool_choice_invalid();
    test_legacy_refused();
    test_history_invalid();
    test_history_large();
    test_completion_calls_json();
    test_delta_json();
    test_chunk_is_delta();
    return check_finish("test_api_tools");
}
