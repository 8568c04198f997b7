// test_api: OpenAI request bodies -> typed requests or the exact error
// (status, param); response builders -> JSON that parses back to the
// shapes the SDKs read.
#include "../serve/api.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

// ---- helpers -----------------------------------------------------------------------

static int parse(api_kind kind, const char *body, api_request *r, api_error *e) {
    memset(e, 0, sizeof *e);
    return kind == API_CHAT ? api_parse_chat(body, strlen(body), r, e) : api_parse_completion(body, strlen(body), r, e);
}

// Expects a 400 naming param ("" = null); message_part (may be NULL) must
// appear in the message.
static void bad(api_kind kind, const char *body, const char *param, const char *message_part) {
    api_request r;
    api_error e;
    int rc = parse(kind, body, &r, &e);
    CHECK(rc == -1, "accepted: %s", body);
    CHECK(e.status == 400, "status %d for %s", e.status, body);
    CHECK(strcmp(e.param, param) == 0, "param '%s', want '%s' for %s (%s)", e.param, param, body, e.message);
    CHECK(strcmp(e.type, "invalid_request_error") == 0, "type %s", e.type);
    if (message_part) CHECK(strstr(e.message, message_part) != NULL, "message '%s' lacks '%s'", e.message, message_part);
    api_request_free(&r);
}

static void bad_chat(const char *body, const char *param, const char *part) { bad(API_CHAT, body, param, part); }
static void bad_cmpl(const char *body, const char *param, const char *part) { bad(API_COMPLETION, body, param, part); }

#define CHAT(extra) "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]" extra "}"
#define CMPL(extra) "{\"model\":\"m\",\"prompt\":\"hi\"" extra "}"

// ---- chat: valid ------------------------------------------------------------------

static void test_chat_minimal(void) {
    api_request r;
    api_error e;
    CHECK(parse(API_CHAT, CHAT(""), &r, &e) == 0, "%s", e.message);
    CHECK(r.kind == API_CHAT && strcmp(r.model, "m") == 0);
    CHECK(r.n_messages == 1 && r.messages[0].role == API_ROLE_USER && strcmp(r.messages[0].content, "hi") == 0);
    CHECK(r.stream == 0 && r.include_usage == 0 && r.max_tokens == -1 && r.n == 1);
    CHECK(r.temperature == 1 && r.top_p == 1 && !r.has_seed && r.n_stop == 0 && r.n_logit_bias == 0);
    CHECK(r.logprobs == 0 && r.top_logprobs == 0 && r.user == NULL && r.top_k == -1 && r.repetition_penalty == 1);
    CHECK(r.enable_thinking == -1);
    sampler_params p = api_sampler_params(&r);
    err_t err = {{0}};
    CHECK(sampler_params_check(&p, 1000, &err) == 0, "%s", err.msg);
    api_request_free(&r);
}

static void test_chat_full(void) {
    const char *body =
        "{\"model\":\"acme-bot\",\"messages\":["
        "{\"role\":\"system\",\"content\":\"be brief\"},"
        "{\"role\":\"developer\",\"content\":\"dev\"},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"text\",\"text\":\"b\"}],\"name\":\"bob\"},"
        "{\"role\":\"assistant\",\"content\":null},"
        "{\"role\":\"assistant\",\"content\":\"ok\",\"tool_calls\":[{\"id\":\"x\",\"type\":\"function\","
        "\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]},"
        "{\"role\":\"tool\",\"content\":\"42\",\"tool_call_id\":\"x\"}],"
        "\"stream\":true,\"stream_options\":{\"include_usage\":true},\"max_tokens\":5,\"max_completion_tokens\":7,"
        "\"temperature\":0,\"top_p\":0.5,\"seed\":-3,\"stop\":[\"a\",\"bc\"],\"presence_penalty\":-2,"
        "\"frequency_penalty\":2,\"logit_bias\":{\"12\":-100,\"7\":100,\"0\":1.5},\"logprobs\":true,"
        "\"top_logprobs\":20,\"n\":8,\"user\":\"u1\",\"unknown_field\":{\"x\":[1,2]},\"tools\":[],"
        "\"response_format\":{\"type\":\"text\"},\"top_k\":40,\"min_p\":0.1,\"repetition_penalty\":1.1,"
        "\"chat_template_kwargs\":{\"enable_thinking\":false,\"other\":1}}";
    api_request r;
    api_error e;
    CHECK(parse(API_CHAT, body, &r, &e) == 0, "%s (param %s)", e.message, e.param);
    CHECK(r.n_messages == 6);
    CHECK(r.messages[0].role == API_ROLE_SYSTEM && r.messages[1].role == API_ROLE_SYSTEM);
    CHECK(strcmp(r.messages[2].content, "a\nb") == 0 && strcmp(r.messages[2].name, "bob") == 0);
    CHECK(r.messages[3].role == API_ROLE_ASSISTANT && strcmp(r.messages[3].content, "") == 0 && r.messages[3].null_content);
    CHECK(r.messages[4].n_tool_calls == 1 && !r.messages[4].null_content && strcmp(r.messages[5].tool_call_id, "x") == 0);
    CHECK(r.messages[5].role == API_ROLE_TOOL && strcmp(r.messages[5].content, "42") == 0);
    CHECK(r.stream && r.include_usage);
    CHECK(r.max_tokens == 7, "max_completion_tokens wins: %lld", (long long)r.max_tokens);
    CHECK(r.has_temperature && r.temperature == 0 && r.has_top_p && r.top_p == 0.5f);
    CHECK(r.has_seed && (int64_t)r.seed == -3);
    CHECK(r.n_stop == 2 && strcmp(r.stop[0], "a") == 0 && strcmp(r.stop[1], "bc") == 0);
    CHECK(r.presence_penalty == -2 && r.frequency_penalty == 2);
    CHECK(r.n_logit_bias == 3 && r.logit_bias[0].token == 12 && r.logit_bias[0].bias == -100);
    CHECK(r.logit_bias[2].token == 0 && r.logit_bias[2].bias == 1.5f);
    CHECK(r.logprobs == 1 && r.top_logprobs == 20 && r.n == 8 && strcmp(r.user, "u1") == 0);
    CHECK(r.top_k == 40 && fabsf(r.min_p - 0.1f) < 1e-6f && fabsf(r.repetition_penalty - 1.1f) < 1e-6f);
    CHECK(r.enable_thinking == 0);
    sampler_params p = api_sampler_params(&r);
    CHECK(p.temperature == 0 && p.top_logprobs == 20 && p.n_logit_bias == 3 && p.logit_bias == r.logit_bias);
    CHECK(p.top_k == 40 && p.seed == r.seed);
    err_t err = {{0}};
    CHECK(sampler_params_check(&p, 1000, &err) == 0, "%s", err.msg);
    CHECK(sampler_params_check(&p, 10, &err) != 0, "token 12 is outside a 10-token vocabulary");
    api_request_free(&r);
}

static void test_chat_nulls_are_defaults(void) {
    api_request r;
    api_error e;
    CHECK(parse(API_CHAT, CHAT(",\"temperature\":null,\"stop\":null,\"n\":null,\"stream\":null,\"max_tokens\":null,"
                               "\"logit_bias\":null,\"user\":null,\"seed\":null"),
                &r, &e) == 0,
          "%s", e.message);
    CHECK(r.temperature == 1 && r.n == 1 && r.n_stop == 0 && !r.stream && r.max_tokens == -1 && !r.has_seed);
    api_request_free(&r);
    CHECK(parse(API_CHAT, CHAT(",\"stop\":\"END\",\"max_tokens\":1, \"top_p\":1"), &r, &e) == 0, "%s", e.message);
    CHECK(r.n_stop == 1 && strcmp(r.stop[0], "END") == 0 && r.max_tokens == 1);
    api_request_free(&r);
    // Whitespace around the body is fine; UTF-8 content passes through.
    CHECK(parse(API_CHAT, " \n{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"h\\u00e9 \xe4\xb8\x96\xf0\x9f\x98\x80\"}]}\r\n",
                &r, &e) == 0,
          "%s", e.message);
    CHECK(r.n_messages == 1 && strcmp(r.messages[0].content, "h\xc3\xa9 \xe4\xb8\x96\xf0\x9f\x98\x80") == 0);
    api_request_free(&r);
}

// ---- chat: invalid ---------------------------------------------------------------------

static void test_chat_invalid(void) {
    // The body itself.
    bad_chat("", "", "could not parse the JSON body");
    bad_chat("{", "", "could not parse the JSON body");
    bad_chat("{\"model\":\"m\",}", "", "could not parse the JSON body");
    bad_chat(CHAT("") " trailing", "", "could not parse the JSON body");
    bad_chat("[1,2]", "", "must be a JSON object");
    bad_chat("\"str\"", "", "must be a JSON object");
    // Required fields.
    bad_chat("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", "model", "model");
    bad_chat("{\"model\":7,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", "model", "expected a string");
    bad_chat("{\"model\":\"m\"}", "messages", "Missing required parameter");
    bad_chat("{\"model\":\"m\",\"messages\":{}}", "messages", "expected an array");
    bad_chat("{\"model\":\"m\",\"messages\":[]}", "messages", "empty array");
    // Messages.
    bad_chat("{\"model\":\"m\",\"messages\":[\"hi\"]}", "messages[0]", "expected an object");
    bad_chat("{\"model\":\"m\",\"messages\":[{\"content\":\"hi\"}]}", "messages[0].role", "Missing");
    bad_chat("{\"model\":\"m\",\"messages\":[{\"role\":\"robot\",\"content\":\"hi\"}]}", "messages[0].role", "robot");
    bad_chat("{\"model\":\"m\",\"messages\":[{\"role\":\"function\",\"content\":\"hi\"}]}", "messages[0].role", NULL);
    bad_chat("{\"model\":\"m\",\"messages\":[{\"role\":5,\"content\":\"hi\"}]}", "messages[0].role", "expected a string");
    bad_chat("{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}]}", "messages[0].content", "Missing");
    bad_chat("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":null}]}", "messages[0].content", "Missing");
    bad_chat("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":3}]}", "messages[0].content", NULL);
    bad_chat("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"user\",\"content\":"
             "[{\"type\":\"text\",\"text\":\"x\"},{\"type\":\"image_url\",\"image_url\":{\"url\":\"u\"}}]}]}",
             "messages[1].content[1].type", "image_url");
    bad_chat("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":\"x\"}]}]}",
             "messages[0].content[0].type", "Missing");
    bad_chat("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":1}]}]}",
             "messages[0].content[0].text", "expected a string");
    bad_chat("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[\"x\"]}]}", "messages[0].content[0]",
             "expected an object");
    bad_chat("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"a\",\"name\":1}]}", "messages[0].name", NULL);
    bad_chat("{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"1\"}]}]}",
             "messages[0].tool_calls[0].function", "Missing"); // more in test_api_tools
    // Types and ranges, each naming its param.
    bad_chat(CHAT(",\"temperature\":\"hot\""), "temperature", "expected a decimal, but got a string");
    bad_chat(CHAT(",\"temperature\":2.5"), "temperature", "above maximum");
    bad_chat(CHAT(",\"temperature\":-0.1"), "temperature", "below minimum");
    bad_chat(CHAT(",\"top_p\":0"), "top_p", "greater than 0");
    bad_chat(CHAT(",\"top_p\":1.01"), "top_p", NULL);
    bad_chat(CHAT(",\"top_p\":true"), "top_p", "got a boolean");
    bad_chat(CHAT(",\"n\":0"), "n", "below minimum");
    bad_chat(CHAT(",\"n\":9"), "n", "above maximum");
    bad_chat(CHAT(",\"n\":1.5"), "n", "expected an integer, but got a decimal");
    bad_chat(CHAT(",\"n\":\"2\""), "n", "got a string");
    bad_chat(CHAT(",\"max_tokens\":0"), "max_tokens", NULL);
    bad_chat(CHAT(",\"max_tokens\":-5"), "max_tokens", NULL);
    bad_chat(CHAT(",\"max_tokens\":\"10\""), "max_tokens", NULL);
    bad_chat(CHAT(",\"max_completion_tokens\":1e12"), "max_completion_tokens", "above maximum");
    bad_chat(CHAT(",\"seed\":1.5"), "seed", NULL);
    bad_chat(CHAT(",\"seed\":1e30"), "seed", "above maximum");
    bad_chat(CHAT(",\"presence_penalty\":3"), "presence_penalty", NULL);
    bad_chat(CHAT(",\"frequency_penalty\":-2.01"), "frequency_penalty", NULL);
    bad_chat(CHAT(",\"frequency_penalty\":[]"), "frequency_penalty", "got an array");
    bad_chat(CHAT(",\"stream\":\"yes\""), "stream", "expected a boolean");
    bad_chat(CHAT(",\"stream_options\":{\"include_usage\":true}"), "stream_options", "only allowed when 'stream'");
    bad_chat(CHAT(",\"stream\":true,\"stream_options\":{\"include_usage\":1}"), "stream_options.include_usage", NULL);
    bad_chat(CHAT(",\"stream\":true,\"stream_options\":true"), "stream_options", NULL);
    bad_chat(CHAT(",\"stop\":5"), "stop", NULL);
    bad_chat(CHAT(",\"stop\":\"\""), "stop", "empty string");
    bad_chat(CHAT(",\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]"), "stop", "maximum length 4");
    bad_chat(CHAT(",\"stop\":[\"a\",3]"), "stop[1]", "expected a string");
    bad_chat(CHAT(",\"stop\":[\"a\",\"\"]"), "stop[1]", "empty string");
    bad_chat(CHAT(",\"logit_bias\":[1]"), "logit_bias", "expected an object");
    bad_chat(CHAT(",\"logit_bias\":{\"abc\":1}"), "logit_bias", "not a token id");
    bad_chat(CHAT(",\"logit_bias\":{\"-1\":1}"), "logit_bias", "not a token id");
    // Keys are canonical decimal ids: strtol's leading space and sign are not.
    bad_chat(CHAT(",\"logit_bias\":{\" 1\":1}"), "logit_bias", "not a token id");
    bad_chat(CHAT(",\"logit_bias\":{\"+5\":1}"), "logit_bias", "not a token id");
    bad_chat(CHAT(",\"logit_bias\":{\"5 \":1}"), "logit_bias", "not a token id");
    // 1e309 overflows to infinity: neither "an integer" nor accepted.
    bad_chat(CHAT(",\"temperature\":1e309"), "temperature", "got a number out of range");
    bad_chat(CHAT(",\"max_tokens\":-1e309"), "max_tokens", "got a number out of range");
    bad_chat(CHAT(",\"logit_bias\":{\"5\":101}"), "logit_bias", "[-100, 100]");
    bad_chat(CHAT(",\"logit_bias\":{\"5\":\"x\"}"), "logit_bias", "must be a number");
    bad_chat(CHAT(",\"logprobs\":1"), "logprobs", "expected a boolean");
    bad_chat(CHAT(",\"top_logprobs\":2"), "top_logprobs", "'logprobs' must be set to true");
    bad_chat(CHAT(",\"logprobs\":true,\"top_logprobs\":21"), "top_logprobs", "above maximum");
    bad_chat(CHAT(",\"logprobs\":true,\"top_logprobs\":-1"), "top_logprobs", NULL);
    bad_chat(CHAT(",\"user\":5"), "user", NULL);
    bad_chat(CHAT(",\"top_k\":-2"), "top_k", NULL);
    bad_chat(CHAT(",\"min_p\":2"), "min_p", NULL);
    bad_chat(CHAT(",\"repetition_penalty\":0"), "repetition_penalty", NULL);
    bad_chat(CHAT(",\"chat_template_kwargs\":[]"), "chat_template_kwargs", NULL);
    bad_chat(CHAT(",\"chat_template_kwargs\":{\"enable_thinking\":\"no\"}"), "chat_template_kwargs.enable_thinking", NULL);
    // Features we refuse rather than ignore.
    bad_chat(CHAT(",\"functions\":[{\"name\":\"f\"}]"), "functions", "not supported");
    bad_chat(CHAT(",\"modalities\":[\"text\",\"audio\"]"), "modalities", NULL);
}

static void test_chat_bad_utf8(void) {
    bad_chat("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"ab\xff\"}]}", "messages[0].content",
             "not valid UTF-8 (byte 0xff at offset 2)");
    bad_chat("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\xed\xa0\x80\"}]}", "messages[0].content",
             "not valid UTF-8"); // an encoded surrogate
    bad_chat("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\xc0\xaf\"}]}", "messages[0].content",
             "not valid UTF-8"); // overlong
    bad_chat("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"\xe4\xb8\"}]}]}",
             "messages[0].content[0].text", "not valid UTF-8"); // truncated
    bad_chat("{\"model\":\"m\xfe\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", "model", "not valid UTF-8");
    bad_chat(CHAT(",\"extra\":{\"deep\":[\"ok\",\"\xf5\"]}"), "extra.deep[1]", "not valid UTF-8");
    // A lone surrogate escape is refused by the JSON parser itself.
    bad_chat("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\\ud800\"}]}", "", "could not parse");
}

// ---- completions ---------------------------------------------------------------------------

// ---- response_format ---------------------------------------------------------------

#define RF(x) ",\"response_format\":" x
#define JS(x) RF("{\"type\":\"json_schema\",\"json_schema\":" x "}")

static void test_response_format_valid(void) {
    api_request r;
    api_error e;
    CHECK(parse(API_CHAT, CHAT(RF("{\"type\":\"text\"}")), &r, &e) == 0, "%s", e.message);
    CHECK(r.format == API_FORMAT_TEXT && r.schema == NULL && r.schema_name == NULL && r.strict == -1);
    api_request_free(&r);
    CHECK(parse(API_CHAT, CHAT(RF("{\"type\":\"json_object\"}")), &r, &e) == 0, "%s", e.message);
    CHECK(r.format == API_FORMAT_JSON_OBJECT && r.schema && strcmp(r.schema, "{\"type\":\"object\"}") == 0);
    api_request_free(&r);
    // The schema comes back as one compact text: equal schemas, equal texts.
    CHECK(parse(API_CHAT, CHAT(JS("{\"name\":\"My_schema-1\",\"description\":\"d\",\"strict\":true,"
                                  "\"schema\":{ \"type\" : \"object\", \"properties\": {\"a\": {\"type\":\"integer\"}}}}")),
                &r, &e) == 0, "%s", e.message);
    CHECK(r.format == API_FORMAT_JSON_SCHEMA && strcmp(r.schema_name, "My_schema-1") == 0 && r.strict == 1);
    CHECK(strcmp(r.schema, "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"}}}") == 0, "%s", r.schema);
    api_request_free(&r);
    // No schema: any JSON value. strict null = not given.
    CHECK(parse(API_CHAT, CHAT(JS("{\"name\":\"x\",\"strict\":null}")), &r, &e) == 0, "%s", e.message);
    CHECK(r.format == API_FORMAT_JSON_SCHEMA && strcmp(r.schema, "true") == 0 && r.strict == -1);
    api_request_free(&r);
    // Completions take it too (as vLLM does).
    CHECK(parse(API_COMPLETION, CMPL(JS("{\"name\":\"x\",\"schema\":{\"enum\":[1,2]}}")), &r, &e) == 0, "%s", e.message);
    CHECK(r.format == API_FORMAT_JSON_SCHEMA && strcmp(r.schema, "{\"enum\":[1,2]}") == 0);
    api_request_free(&r);
}

static void test_response_format_invalid(void) {
    bad_chat(CHAT(RF("\"json\"")), "response_format", "expected an object");
    bad_chat(CHAT(RF("{}")), "response_format.type", "Missing required parameter");
    bad_chat(CHAT(RF("{\"type\":1}")), "response_format.type", "expected a string");
    bad_chat(CHAT(RF("{\"type\":\"xml\"}")), "response_format.type", "'text', 'json_object', and 'json_schema'");
    bad_chat(CHAT(RF("{\"type\":\"json_schema\"}")), "response_format.json_schema", "Missing required parameter");
    bad_chat(CHAT(JS("[]")), "response_format.json_schema", "expected an object");
    bad_chat(CHAT(JS("{\"schema\":{}}")), "response_format.json_schema.name", "Missing required parameter");
    bad_chat(CHAT(JS("{\"name\":\"a b\"}")), "response_format.json_schema.name", "does not match pattern");
    bad_chat(CHAT(JS("{\"name\":\"\"}")), "response_format.json_schema.name", "does not match pattern");
    bad_chat(CHAT(JS("{\"name\":\"a123456789a123456789a123456789a123456789a123456789a123456789abcde\"}")),
             "response_format.json_schema.name", "1 to 64");
    bad_chat(CHAT(JS("{\"name\":\"a\",\"description\":5}")), "response_format.json_schema.description", NULL);
    bad_chat(CHAT(JS("{\"name\":\"a\",\"strict\":\"yes\"}")), "response_format.json_schema.strict", "a boolean");
    bad_chat(CHAT(JS("{\"name\":\"a\",\"schema\":[1]}")), "response_format.json_schema.schema", "expected an object");
    bad_cmpl(CMPL(RF("{\"type\":\"xml\"}")), "response_format.type", NULL);
}

static void test_completion_valid(void) {
    api_request r;
    api_error e;
    CHECK(parse(API_COMPLETION, CMPL(""), &r, &e) == 0, "%s", e.message);
    CHECK(r.kind == API_COMPLETION && r.n_prompts == 1 && strcmp(r.prompts[0].text, "hi") == 0);
    CHECK(r.max_tokens == 16, "completions default max_tokens 16, got %lld", (long long)r.max_tokens);
    CHECK(r.logprobs == 0);
    api_request_free(&r);

    CHECK(parse(API_COMPLETION, "{\"model\":\"m\",\"prompt\":[\"a\",\"b\",[1,2,3]],\"logprobs\":3,\"echo\":false,"
                                "\"best_of\":2,\"n\":2,\"suffix\":null,\"max_tokens\":4}",
                &r, &e) == 0,
          "%s (%s)", e.message, e.param);
    CHECK(r.n_prompts == 3 && strcmp(r.prompts[1].text, "b") == 0 && r.prompts[2].n_ids == 3 && r.prompts[2].ids[2] == 3);
    CHECK(r.logprobs == 1 && r.top_logprobs == 3 && r.n == 2 && r.max_tokens == 4);
    sampler_params p = api_sampler_params(&r);
    CHECK(p.top_logprobs == 3);
    api_request_free(&r);

    CHECK(parse(API_COMPLETION, "{\"model\":\"m\",\"prompt\":[5,6],\"logprobs\":0}", &r, &e) == 0, "%s", e.message);
    CHECK(r.n_prompts == 1 && r.prompts[0].text == NULL && r.prompts[0].n_ids == 2 && r.prompts[0].ids[1] == 6);
    CHECK(r.logprobs == 1 && r.top_logprobs == 0, "logprobs 0: the chosen token's only");
    api_request_free(&r);
}

static void test_completion_invalid(void) {
    bad_cmpl("{\"model\":\"m\"}", "prompt", "Missing");
    bad_cmpl("{\"model\":\"m\",\"prompt\":5}", "prompt", NULL);
    bad_cmpl("{\"model\":\"m\",\"prompt\":[]}", "prompt", "empty");
    bad_cmpl("{\"model\":\"m\",\"prompt\":[\"a\",5]}", "prompt[1]", NULL);
    bad_cmpl("{\"model\":\"m\",\"prompt\":[1,-2]}", "prompt[1]", "token id");
    bad_cmpl("{\"model\":\"m\",\"prompt\":[[1,2],[3,\"x\"]]}", "prompt[1][1]", "token id");
    bad_cmpl("{\"prompt\":\"a\"}", "model", NULL);
    bad_cmpl(CMPL(",\"echo\":true"), "echo", "not supported");
    bad_cmpl(CMPL(",\"echo\":\"yes\""), "echo", NULL);
    bad_cmpl(CMPL(",\"suffix\":\"tail\""), "suffix", "not supported");
    bad_cmpl(CMPL(",\"best_of\":3"), "best_of", "equal to n");
    bad_cmpl(CMPL(",\"logprobs\":6"), "logprobs", "above maximum");
    bad_cmpl(CMPL(",\"logprobs\":true"), "logprobs", "expected an integer");
    bad_cmpl(CMPL(",\"temperature\":9"), "temperature", NULL);
    bad_cmpl(CMPL(",\"max_tokens\":0"), "max_tokens", NULL);
    bad_cmpl("{\"model\":\"m\",\"prompt\":\"\xff\"}", "prompt", "not valid UTF-8");
    bad_cmpl("{\"model\":\"m\",\"prompt\":[\"ok\",\"\xc3\"]}", "prompt[1]", "not valid UTF-8");
}

// ---- errors -------------------------------------------------------------------------------

static void test_error_json(void) {
    api_error e;
    CHECK(api_err_invalid(&e, "temperature", "bad %s", "value") == -1);
    char *s = api_error_json(&e);
    CHECK(s && strcmp(s, "{\"error\":{\"message\":\"bad value\",\"type\":\"invalid_request_error\",\"param\":"
                         "\"temperature\",\"code\":null}}") == 0,
          "%s", s);
    free(s);
    api_err_set(&e, 404, NULL, "model", "model_not_found", "The model '%s' does not exist", "x\"y");
    s = api_error_json(&e);
    cJSON *o = cJSON_Parse(s);
    cJSON *err = cJSON_GetObjectItem(o, "error");
    CHECK(e.status == 404);
    CHECK(strcmp(cJSON_GetObjectItem(err, "message")->valuestring, "The model 'x\"y' does not exist") == 0);
    CHECK(strcmp(cJSON_GetObjectItem(err, "code")->valuestring, "model_not_found") == 0);
    cJSON_Delete(o);
    free(s);
    api_err_set(&e, 503, "server_error", NULL, NULL, "generation engine not available in this build");
    s = api_error_json(&e);
    o = cJSON_Parse(s);
    err = cJSON_GetObjectItem(o, "error");
    CHECK(cJSON_IsNull(cJSON_GetObjectItem(err, "param")) && cJSON_IsNull(cJSON_GetObjectItem(err, "code")));
    CHECK(strcmp(cJSON_GetObjectItem(err, "type")->valuestring, "server_error") == 0);
    cJSON_Delete(o);
    free(s);
}

// ---- response builders ----------------------------------------------------------------------

static const char *str_at(const cJSON *o, const char *path0, const char *path1) {
    const cJSON *v = cJSON_GetObjectItem(o, path0);
    if (path1) v = cJSON_GetObjectItem(v, path1);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void test_chat_completion_json(void) {
    api_top_logprob top[2] = {{"Hi", 2, -0.25f}, {"\xe4\xb8", 2, -1.5f}};
    api_token_logprob lps[2] = {{"Hi", 2, -0.25f, top, 2}, {"!", 1, -INFINITY, NULL, 0}};
    api_choice ch[2] = {{.index = 0, .text = "Hi!", .len = 3, .finish_reason = "stop", .logprobs = lps, .n_logprobs = 2},
                        {.index = 1, .text = "Yo", .len = 2, .finish_reason = "length"}};
    api_usage u = {10, 5};
    char *s = api_chat_completion_json("chatcmpl-1", 1700000000, "acme-bot", ch, 2, &u);
    cJSON *o = cJSON_Parse(s);
    CHECK(o != NULL, "%s", s);
    CHECK(strcmp(str_at(o, "object", NULL), "chat.completion") == 0 && strcmp(str_at(o, "id", NULL), "chatcmpl-1") == 0);
    CHECK(strcmp(str_at(o, "model", NULL), "acme-bot") == 0);
    CHECK(cJSON_GetObjectItem(o, "created")->valuedouble == 1700000000);
    const cJSON *choices = cJSON_GetObjectItem(o, "choices");
    CHECK(cJSON_GetArraySize(choices) == 2);
    const cJSON *c0 = cJSON_GetArrayItem(choices, 0), *c1 = cJSON_GetArrayItem(choices, 1);
    CHECK(cJSON_GetObjectItem(c0, "index")->valueint == 0 && cJSON_GetObjectItem(c1, "index")->valueint == 1);
    CHECK(strcmp(str_at(c0, "message", "role"), "assistant") == 0 && strcmp(str_at(c0, "message", "content"), "Hi!") == 0);
    CHECK(strcmp(str_at(c0, "finish_reason", NULL), "stop") == 0 && strcmp(str_at(c1, "finish_reason", NULL), "length") == 0);
    CHECK(cJSON_IsNull(cJSON_GetObjectItem(c1, "logprobs")));
    const cJSON *content = cJSON_GetObjectItem(cJSON_GetObjectItem(c0, "logprobs"), "content");
    CHECK(cJSON_GetArraySize(content) == 2);
    const cJSON *t0 = cJSON_GetArrayItem(content, 0);
    CHECK(strcmp(str_at(t0, "token", NULL), "Hi") == 0 && cJSON_GetObjectItem(t0, "logprob")->valuedouble == -0.25);
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(t0, "bytes")) == 2 &&
          cJSON_GetArrayItem(cJSON_GetObjectItem(t0, "bytes"), 0)->valueint == 'H');
    const cJSON *tops = cJSON_GetObjectItem(t0, "top_logprobs");
    CHECK(cJSON_GetArraySize(tops) == 2);
    // A partial character is shown as U+FFFD in "token"; "bytes" keeps the truth.
    const cJSON *t1top = cJSON_GetArrayItem(tops, 1);
    CHECK(strcmp(str_at(t1top, "token", NULL), "\xef\xbf\xbd\xef\xbf\xbd") == 0, "%s", str_at(t1top, "token", NULL));
    CHECK(cJSON_GetArrayItem(cJSON_GetObjectItem(t1top, "bytes"), 0)->valueint == 0xe4);
    CHECK(cJSON_GetObjectItem(cJSON_GetArrayItem(content, 1), "logprob")->valuedouble == -9999.0, "-inf is -9999");
    const cJSON *usage = cJSON_GetObjectItem(o, "usage");
    CHECK(cJSON_GetObjectItem(usage, "prompt_tokens")->valueint == 10 &&
          cJSON_GetObjectItem(usage, "completion_tokens")->valueint == 5 &&
          cJSON_GetObjectItem(usage, "total_tokens")->valueint == 15);
    cJSON_Delete(o);
    free(s);
}

static void test_chunks_json(void) {
    char *s = api_chat_chunk_json("c1", 1, "m", 0, 1, NULL, 0, NULL, NULL, 0, 0);
    cJSON *o = cJSON_Parse(s);
    CHECK(strcmp(str_at(o, "object", NULL), "chat.completion.chunk") == 0);
    const cJSON *c = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "choices"), 0);
    CHECK(strcmp(str_at(c, "delta", "role"), "assistant") == 0 && strcmp(str_at(c, "delta", "content"), "") == 0);
    CHECK(cJSON_IsNull(cJSON_GetObjectItem(c, "finish_reason")));
    CHECK(cJSON_GetObjectItem(o, "usage") == NULL);
    CHECK(strchr(s, '\n') == NULL, "one line, for SSE");
    cJSON_Delete(o);
    free(s);

    s = api_chat_chunk_json("c1", 1, "m", 2, 0, "a\nb\"c", 5, NULL, NULL, 0, 1);
    o = cJSON_Parse(s);
    c = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "choices"), 0);
    CHECK(cJSON_GetObjectItem(c, "index")->valueint == 2);
    CHECK(strcmp(str_at(c, "delta", "content"), "a\nb\"c") == 0);
    CHECK(cJSON_GetObjectItem(cJSON_GetObjectItem(c, "delta"), "role") == NULL);
    CHECK(cJSON_IsNull(cJSON_GetObjectItem(o, "usage")), "include_usage streams carry usage: null");
    CHECK(strchr(s, '\n') == NULL, "newlines in content are escaped");
    cJSON_Delete(o);
    free(s);

    s = api_chat_chunk_json("c1", 1, "m", 0, 0, NULL, 0, "length", NULL, 0, 0);
    o = cJSON_Parse(s);
    c = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "choices"), 0);
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(c, "delta")) == 0, "the final chunk's delta is {}");
    CHECK(strcmp(str_at(c, "finish_reason", NULL), "length") == 0);
    cJSON_Delete(o);
    free(s);

    api_usage u = {3, 4};
    s = api_chat_usage_chunk_json("c1", 1, "m", &u);
    o = cJSON_Parse(s);
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(o, "choices")) == 0);
    CHECK(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "usage"), "total_tokens")->valueint == 7);
    cJSON_Delete(o);
    free(s);

    api_token_logprob lp = {"x", 1, -0.5f, NULL, 0};
    s = api_completion_chunk_json("k", 1, "m", 1, "x", 1, NULL, &lp, 1, 0);
    o = cJSON_Parse(s);
    CHECK(strcmp(str_at(o, "object", NULL), "text_completion") == 0);
    c = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "choices"), 0);
    CHECK(strcmp(str_at(c, "text", NULL), "x") == 0 && cJSON_GetObjectItem(c, "index")->valueint == 1);
    CHECK(cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetObjectItem(c, "logprobs"), "token_logprobs"), 0)->valuedouble == -0.5);
    cJSON_Delete(o);
    free(s);
    s = api_completion_usage_chunk_json("k", 1, "m", &u);
    o = cJSON_Parse(s);
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(o, "choices")) == 0 && cJSON_GetObjectItem(o, "usage"));
    cJSON_Delete(o);
    free(s);
}

static void test_text_completion_json(void) {
    api_top_logprob top[2] = {{" a", 2, -0.1f}, {" b", 2, -2.5f}};
    api_token_logprob lps[2] = {{" a", 2, -0.1f, top, 2}, {"c", 1, -1.0f, NULL, 0}};
    api_choice ch[1] = {{.index = 0, .text = " ac", .len = 3, .finish_reason = "length", .logprobs = lps, .n_logprobs = 2}};
    api_usage u = {2, 2};
    char *s = api_text_completion_json("cmpl-1", 5, "base", ch, 1, &u);
    cJSON *o = cJSON_Parse(s);
    CHECK(strcmp(str_at(o, "object", NULL), "text_completion") == 0);
    const cJSON *c = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "choices"), 0);
    CHECK(strcmp(str_at(c, "text", NULL), " ac") == 0);
    const cJSON *lp = cJSON_GetObjectItem(c, "logprobs");
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(lp, "tokens")) == 2);
    CHECK(fabs(cJSON_GetArrayItem(cJSON_GetObjectItem(lp, "token_logprobs"), 0)->valuedouble + 0.1) < 1e-12,
          "shortest decimal: -0.1, not -0.10000000149");
    const cJSON *top0 = cJSON_GetArrayItem(cJSON_GetObjectItem(lp, "top_logprobs"), 0);
    CHECK(cJSON_GetObjectItem(top0, " b") && cJSON_GetObjectItem(top0, " b")->valuedouble == -2.5);
    const cJSON *off = cJSON_GetObjectItem(lp, "text_offset");
    CHECK(cJSON_GetArrayItem(off, 0)->valueint == 0 && cJSON_GetArrayItem(off, 1)->valueint == 2);
    CHECK(strstr(s, "-0.10000000149") == NULL, "%s", s);
    cJSON_Delete(o);
    free(s);
}

static void test_models_json(void) {
    api_model m[2] = {{"Qwen3-0.6B", 100, "tessera", NULL}, {"acme-bot", 200, "tessera", "Qwen3-0.6B"}};
    char *s = api_models_json(m, 2);
    cJSON *o = cJSON_Parse(s);
    CHECK(strcmp(str_at(o, "object", NULL), "list") == 0);
    const cJSON *data = cJSON_GetObjectItem(o, "data");
    CHECK(cJSON_GetArraySize(data) == 2);
    const cJSON *a = cJSON_GetArrayItem(data, 1);
    CHECK(strcmp(str_at(a, "id", NULL), "acme-bot") == 0 && strcmp(str_at(a, "object", NULL), "model") == 0);
    CHECK(cJSON_GetObjectItem(a, "created")->valueint == 200 && strcmp(str_at(a, "owned_by", NULL), "tessera") == 0);
    CHECK(strcmp(str_at(a, "parent", NULL), "Qwen3-0.6B") == 0);
    CHECK(cJSON_GetObjectItem(cJSON_GetArrayItem(data, 0), "parent") == NULL);
    cJSON_Delete(o);
    free(s);
    s = api_models_json(NULL, 0);
    CHECK(strcmp(s, "{\"object\":\"list\",\"data\":[]}") == 0, "%s", s);
    free(s);
    s = api_model_json(&m[0]);
    o = cJSON_Parse(s);
    CHECK(strcmp(str_at(o, "id", NULL), "Qwen3-0.6B") == 0);
    cJSON_Delete(o);
    free(s);
}

int main(void) {
    test_chat_minimal();
    test_chat_full();
    test_chat_nulls_are_defaults();
    test_chat_invalid();
    test_chat_bad_utf8();
    test_response_format_valid();
    test_response_format_invalid();
    test_completion_valid();
    test_completion_invalid();
    test_error_json();
    test_chat_completion_json();
    test_chunks_json();
    test_text_completion_json();
    test_models_json();
    return check_finish("test_api");
}
