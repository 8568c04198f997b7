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

int main(void) {
    test_no_tools();
    test_tools_parsed();
    test_tool_choice_parsed();
    test_history_parsed();
    test_tools_invalid();
    test_tool_choice_invalid();
    test_legacy_refused();
    test_history_invalid();
    return check_finish("test_api_tools");
}
