// api_int: what serve's api*.c share (private; api.h is the public side and
// says what the API accepts and answers).
//
//   api.c        errors, the body, the common fields, messages, response_format,
//                completions, api_request_free
//   api_embed.c  /v1/embeddings' body
//   api_tools.c  tool calling: tools, tool_choice, parallel_tool_calls, the
//                history's tool_calls and tool_call_id
//
// The small cJSON readers live here, static inline, so both files read
// fields and word their errors the same way.
#ifndef TESSERA_API_INT_H
#define TESSERA_API_INT_H

#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>

#include "api.h"

// The body as one JSON object with valid UTF-8 strings (a new tree,
// cJSON_Delete), or NULL + a 400 in e.
cJSON *api_parse_body(const char *body, size_t len, api_error *e);

// ---- field readers ----------------------------------------------------------------

static inline const char *type_name(const cJSON *v) {
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsBool(v)) return "a boolean";
    // A literal past double's range (1e309) parses as infinity: it is
    // neither an integer nor a usable decimal, so say what it is.
    if (cJSON_IsNumber(v) && !isfinite(v->valuedouble)) return "a number out of range";
    if (cJSON_IsNumber(v)) return v->valuedouble == floor(v->valuedouble) ? "an integer" : "a decimal";
    if (cJSON_IsArray(v)) return "an array";
    if (cJSON_IsObject(v)) return "an object";
    if (cJSON_IsNull(v)) return "null";
    return "an unknown value";
}

// The field, or NULL when absent or null.
static inline const cJSON *field(const cJSON *o, const char *name) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

static inline int wrong_type(api_error *e, const char *param, const char *expected, const cJSON *v) {
    return api_err_invalid(e, param, "Invalid type for '%s': expected %s, but got %s instead.", param, expected,
                           type_name(v));
}

static inline int read_bool(const cJSON *o, const char *name, int *out, api_error *e) {
    const cJSON *v = field(o, name);
    if (!v) return 0;
    if (!cJSON_IsBool(v)) return wrong_type(e, name, "a boolean", v);
    *out = cJSON_IsTrue(v);
    return 0;
}

static inline int oom(api_error *e) { return api_err_set(e, 500, "server_error", NULL, NULL, "out of memory"); }

// OpenAI's rule for the names it lets clients choose (json_schema.name,
// function names): a-z, A-Z, 0-9, '_' and '-', 1 to 64 of them.
static inline int name_ok(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 64) return 0;
    return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == n;
}

// ---- tool calling (api_tools.c) -----------------------------------------------------

// tools, tool_choice and parallel_tool_calls of a chat body into r, and the
// refusal of a non-text response_format beside them (so r->format must be
// read first). Returns 0 or -1 with e filled.
int api_read_tools(const cJSON *o, api_request *r, api_error *e);

// Message i's tool fields: an assistant's tool_calls, a tool message's
// tool_call_id (required). Other roles may not carry tool_calls.
int api_read_message_tools(const cJSON *m, int i, api_message *out, api_error *e);

// Every tool message answers a call of an earlier assistant message that no
// earlier tool message answered (ids may repeat across turns: each call is
// answered once). Returns 0 or -1 with e naming messages[i].tool_call_id.
int api_check_tool_answers(const api_request *r, api_error *e);

// Frees what the two readers above allocated (r's tools and tools_json,
// each message's tool_calls and tool_call_id).
void api_tools_free(api_request *r);

#endif
