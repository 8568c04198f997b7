// api: OpenAI request validation and error bodies. See api.h. The response
// objects are built in api_response.c, the tool-calling fields read in
// api_tools.c (api_int.h holds what they share).
//
// Error messages follow OpenAI's wording where it has one ("Invalid type
// for 'n': expected an integer, but got a string instead.") so that clients
// that show them to people read the same as against OpenAI.
#include "api.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_int.h"
#include "utf8.h"

// ---- errors -------------------------------------------------------------------

static int err_vset(api_error *e, int status, const char *type, const char *param, const char *code,
                    const char *fmt, va_list ap) {
    if (!e) return -1;
    e->status = status;
    snprintf(e->type, sizeof e->type, "%s", type ? type : "invalid_request_error");
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    snprintf(e->code, sizeof e->code, "%s", code ? code : "");
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    e->retry_after = 0;
    return -1;
}

int api_err_invalid(api_error *e, const char *param, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    err_vset(e, 400, "invalid_request_error", param, NULL, fmt, ap);
    va_end(ap);
    return -1;
}

int api_err_set(api_error *e, int status, const char *type, const char *param, const char *code, const char *fmt,
                ...) {
    va_list ap;
    va_start(ap, fmt);
    err_vset(e, status, type, param, code, fmt, ap);
    va_end(ap);
    return -1;
}

static cJSON *str_or_null(const char *s) { return s && *s ? cJSON_CreateString(s) : cJSON_CreateNull(); }

char *api_error_json(const api_error *e) {
    cJSON *root = cJSON_CreateObject(), *o = cJSON_CreateObject();
    cJSON_AddItemToObject(root, "error", o);
    cJSON_AddStringToObject(o, "message", e->message);
    cJSON_AddStringToObject(o, "type", e->type[0] ? e->type : "invalid_request_error");
    cJSON_AddItemToObject(o, "param", str_or_null(e->param));
    cJSON_AddItemToObject(o, "code", str_or_null(e->code));
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return s;
}

// ---- UTF-8 --------------------------------------------------------------------

// Walks every key and string of the body; the first ill-formed one is a 400
// naming its path.
static int check_utf8_tree(const cJSON *v, char *path, size_t cap, api_error *e) {
    size_t base = strlen(path);
    if (v->string && !utf8_valid(v->string, strlen(v->string)))
        return api_err_invalid(e, path, "Invalid '%s': a key is not valid UTF-8.", path[0] ? path : "body");
    if (cJSON_IsString(v)) {
        size_t n = strlen(v->valuestring);
        size_t bad = utf8_bad_at(v->valuestring, n);
        if (bad < n)
            return api_err_invalid(e, path,
                                   "Invalid '%s': string is not valid UTF-8 (byte 0x%02x at offset %zu).", path,
                                   (unsigned char)v->valuestring[bad], bad);
        return 0;
    }
    int i = 0;
    for (const cJSON *c = v->child; c; c = c->next, i++) {
        if (cJSON_IsArray(v))
            snprintf(path + base, cap - base, "[%d]", i);
        else if (c->string && utf8_valid(c->string, strlen(c->string)))
            snprintf(path + base, cap - base, "%s%s", base ? "." : "", c->string);
        if (check_utf8_tree(c, path, cap, e) != 0) return -1;
        path[base] = '\0';
    }
    return 0;
}

// ---- field readers ----------------------------------------------------------------

// A number in [lo, hi]; *has set to 1 when given.
static int read_num(const cJSON *o, const char *name, double lo, double hi, float *out, int *has, api_error *e) {
    const cJSON *v = field(o, name);
    if (!v) return 0;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) return wrong_type(e, name, "a decimal", v);
    double d = v->valuedouble;
    if (d < lo)
        return api_err_invalid(e, name, "Invalid '%s': decimal below minimum value. Expected a value >= %g, but got %g instead.",
                               name, lo, d);
    if (d > hi)
        return api_err_invalid(e, name, "Invalid '%s': decimal above maximum value. Expected a value <= %g, but got %g instead.",
                               name, hi, d);
    *out = (float)d;
    if (has) *has = 1;
    return 0;
}

static int is_integer(const cJSON *v) {
    return cJSON_IsNumber(v) && isfinite(v->valuedouble) && v->valuedouble == floor(v->valuedouble);
}

static int read_int(const cJSON *o, const char *name, int64_t lo, int64_t hi, int64_t *out, int *has,
                    api_error *e) {
    const cJSON *v = field(o, name);
    if (!v) return 0;
    if (!is_integer(v)) return wrong_type(e, name, "an integer", v);
    double d = v->valuedouble;
    if (d < (double)lo)
        return api_err_invalid(e, name, "Invalid '%s': integer below minimum value. Expected a value >= %lld, but got %.0f instead.",
                               name, (long long)lo, d);
    if (d > (double)hi || d >= 9223372036854775808.0)
        return api_err_invalid(e, name, "Invalid '%s': integer above maximum value. Expected a value <= %lld, but got %.0f instead.",
                               name, (long long)hi, d);
    *out = (int64_t)d;
    if (has) *has = 1;
    return 0;
}

static int read_string(const cJSON *o, const char *name, char **out, api_error *e) {
    const cJSON *v = field(o, name);
    if (!v) return 0;
    if (!cJSON_IsString(v)) return wrong_type(e, name, "a string", v);
    *out = strdup(v->valuestring);
    return *out ? 0 : api_err_set(e, 500, "server_error", NULL, NULL, "out of memory");
}

// ---- the shared sampling fields ------------------------------------------------------

static int read_stop(const cJSON *o, api_request *r, api_error *e) {
    const cJSON *v = field(o, "stop");
    if (!v) return 0;
    if (cJSON_IsString(v)) {
        if (!v->valuestring[0]) return api_err_invalid(e, "stop", "Invalid 'stop': empty string.");
        if (!(r->stop[0] = strdup(v->valuestring))) return oom(e);
        r->n_stop = 1;
        return 0;
    }
    if (!cJSON_IsArray(v)) return wrong_type(e, "stop", "a string or an array of strings", v);
    int n = cJSON_GetArraySize(v);
    if (n > API_MAX_STOP)
        return api_err_invalid(e, "stop", "Invalid 'stop': array too long. Expected an array with maximum length %d, but got an array with length %d instead.",
                               API_MAX_STOP, n);
    int i = 0;
    char param[32];
    for (const cJSON *s = v->child; s; s = s->next, i++) {
        snprintf(param, sizeof param, "stop[%d]", i);
        if (!cJSON_IsString(s)) return wrong_type(e, param, "a string", s);
        if (!s->valuestring[0]) return api_err_invalid(e, param, "Invalid '%s': empty string.", param);
        if (!(r->stop[r->n_stop] = strdup(s->valuestring))) return oom(e);
        r->n_stop++;
    }
    return 0;
}

static int read_logit_bias(const cJSON *o, api_request *r, api_error *e) {
    const cJSON *v = field(o, "logit_bias");
    if (!v) return 0;
    if (!cJSON_IsObject(v)) return wrong_type(e, "logit_bias", "an object", v);
    int n = cJSON_GetArraySize(v);
    if (n > API_MAX_LOGIT_BIAS)
        return api_err_invalid(e, "logit_bias", "Invalid 'logit_bias': at most %d entries, got %d.", API_MAX_LOGIT_BIAS, n);
    if (n == 0) return 0;
    if (!(r->logit_bias = calloc((size_t)n, sizeof *r->logit_bias))) return oom(e);
    for (const cJSON *b = v->child; b; b = b->next) {
        // Keys are canonical token ids: decimal digits only. strtol alone
        // would take " 1" and "+5", which OpenAI refuses.
        size_t digits = strspn(b->string, "0123456789");
        char *end;
        errno = 0;
        long id = strtol(b->string, &end, 10);
        if (!b->string[0] || b->string[digits] || *end || errno || id < 0 || id > INT32_MAX)
            return api_err_invalid(e, "logit_bias", "Invalid 'logit_bias': key '%s' is not a token id (a non-negative integer).",
                                   b->string);
        if (!cJSON_IsNumber(b) || !isfinite(b->valuedouble))
            return api_err_invalid(e, "logit_bias", "Invalid 'logit_bias': the value for token %ld must be a number, got %s.",
                                   id, type_name(b));
        if (b->valuedouble < -100 || b->valuedouble > 100)
            return api_err_invalid(e, "logit_bias", "Invalid 'logit_bias': the value for token %ld must be in [-100, 100], got %g.",
                                   id, b->valuedouble);
        r->logit_bias[r->n_logit_bias].token = (int32_t)id;
        r->logit_bias[r->n_logit_bias].bias = (float)b->valuedouble;
        r->n_logit_bias++;
    }
    return 0;
}

// Fields both endpoints share: model, stream, limits, sampling.
static int read_common(const cJSON *o, api_request *r, api_error *e) {
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(o, "model");
    if (!m || cJSON_IsNull(m))
        return api_err_invalid(e, "model", "you must provide a model parameter");
    if (!cJSON_IsString(m)) return wrong_type(e, "model", "a string", m);
    if (!(r->model = strdup(m->valuestring))) return oom(e);

    if (read_bool(o, "stream", &r->stream, e)) return -1;
    const cJSON *so = field(o, "stream_options");
    if (so) {
        if (!r->stream)
            return api_err_invalid(e, "stream_options", "The 'stream_options' parameter is only allowed when 'stream' is enabled.");
        if (!cJSON_IsObject(so)) return wrong_type(e, "stream_options", "an object", so);
        const cJSON *iu = field(so, "include_usage");
        if (iu && !cJSON_IsBool(iu)) return wrong_type(e, "stream_options.include_usage", "a boolean", iu);
        r->include_usage = iu && cJSON_IsTrue(iu);
    }

    int64_t mt = -1, mct = -1, n = 1, seed = 0, top_k = -1;
    if (read_int(o, "max_tokens", 1, INT32_MAX, &mt, NULL, e)) return -1;
    if (read_int(o, "max_completion_tokens", 1, INT32_MAX, &mct, NULL, e)) return -1;
    r->max_tokens = mct >= 0 ? mct : mt;
    if (read_num(o, "temperature", 0, 2, &r->temperature, &r->has_temperature, e)) return -1;
    if (read_num(o, "top_p", 0, 1, &r->top_p, &r->has_top_p, e)) return -1;
    if (r->has_top_p && r->top_p <= 0)
        return api_err_invalid(e, "top_p", "Invalid 'top_p': must be greater than 0 (use temperature 0 for greedy decoding), got 0.");
    if (read_int(o, "seed", INT64_MIN, INT64_MAX, &seed, &r->has_seed, e)) return -1;
    r->seed = (uint64_t)seed;
    if (read_num(o, "presence_penalty", -2, 2, &r->presence_penalty, NULL, e)) return -1;
    if (read_num(o, "frequency_penalty", -2, 2, &r->frequency_penalty, NULL, e)) return -1;
    if (read_int(o, "n", 1, API_MAX_N, &n, NULL, e)) return -1;
    r->n = (int)n;
    if (read_stop(o, r, e) || read_logit_bias(o, r, e)) return -1;
    if (read_string(o, "user", &r->user, e)) return -1;
    if (read_int(o, "top_k", -1, INT32_MAX, &top_k, NULL, e)) return -1;
    r->top_k = (int)top_k;
    if (read_num(o, "min_p", 0, 1, &r->min_p, NULL, e)) return -1;
    int has_rp = 0;
    if (read_num(o, "repetition_penalty", 0, 2, &r->repetition_penalty, &has_rp, e)) return -1;
    if (has_rp && r->repetition_penalty <= 0)
        return api_err_invalid(e, "repetition_penalty", "Invalid 'repetition_penalty': must be greater than 0, got 0.");
    return 0;
}

// ---- response_format ------------------------------------------------------------

// The json_schema object: name, description, schema, strict.
static int read_json_schema(const cJSON *js, api_request *r, api_error *e) {
    const char *p = "response_format.json_schema";
    if (!js) return api_err_invalid(e, p, "Missing required parameter: '%s'.", p);
    if (!cJSON_IsObject(js)) return wrong_type(e, p, "an object", js);
    const cJSON *name = field(js, "name");
    p = "response_format.json_schema.name";
    if (!name) return api_err_invalid(e, p, "Missing required parameter: '%s'.", p);
    if (!cJSON_IsString(name)) return wrong_type(e, p, "a string", name);
    if (!name_ok(name->valuestring))
        return api_err_invalid(e, p, "Invalid '%s': string does not match pattern. Expected a string of 1 to 64 "
                                     "characters that matches the pattern '^[a-zA-Z0-9_-]+$'.", p);
    if (!(r->schema_name = strdup(name->valuestring))) return oom(e);
    const cJSON *desc = field(js, "description");
    if (desc && !cJSON_IsString(desc)) return wrong_type(e, "response_format.json_schema.description", "a string", desc);
    const cJSON *strict = field(js, "strict");
    if (strict && !cJSON_IsBool(strict)) return wrong_type(e, "response_format.json_schema.strict", "a boolean", strict);
    r->strict = strict ? cJSON_IsTrue(strict) : -1;
    const cJSON *schema = field(js, "schema");
    if (schema && !cJSON_IsObject(schema))
        return wrong_type(e, "response_format.json_schema.schema", "an object", schema);
    // No schema: OpenAI's type makes it optional and says nothing more, so
    // it means what an absent schema means in JSON Schema: any value.
    r->schema = schema ? cJSON_PrintUnformatted(schema) : strdup("true");
    return r->schema ? 0 : oom(e);
}

static int read_response_format(const cJSON *o, api_request *r, api_error *e) {
    const cJSON *rf = field(o, "response_format");
    if (!rf) return 0;
    if (!cJSON_IsObject(rf)) return wrong_type(e, "response_format", "an object", rf);
    const cJSON *t = field(rf, "type");
    if (!t) return api_err_invalid(e, "response_format.type", "Missing required parameter: 'response_format.type'.");
    if (!cJSON_IsString(t)) return wrong_type(e, "response_format.type", "a string", t);
    if (strcmp(t->valuestring, "text") == 0) return 0;
    if (strcmp(t->valuestring, "json_object") == 0) {
        r->format = API_FORMAT_JSON_OBJECT;
        return (r->schema = strdup("{\"type\":\"object\"}")) ? 0 : oom(e);
    }
    if (strcmp(t->valuestring, "json_schema") == 0) {
        r->format = API_FORMAT_JSON_SCHEMA;
        return read_json_schema(field(rf, "json_schema"), r, e);
    }
    return api_err_invalid(e, "response_format.type",
                           "Invalid value: '%s'. Supported values are: 'text', 'json_object', and 'json_schema'.",
                           t->valuestring);
}

static void request_init(api_request *r, api_kind kind) {
    memset(r, 0, sizeof *r);
    r->kind = kind;
    r->max_tokens = -1;
    r->temperature = 1;
    r->top_p = 1;
    r->n = 1;
    r->top_k = -1;
    r->repetition_penalty = 1;
    r->enable_thinking = -1;
    r->strict = -1;
    r->parallel_tool_calls = 1;
}

// Parses the body as one JSON object; a 400 when it is not one.
cJSON *api_parse_body(const char *body, size_t len, api_error *e) {
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(body, len, &end, 0);
    if (root && end) {
        while (end < body + len && (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n')) end++;
        if (end != body + len) {
            cJSON_Delete(root);
            root = NULL;
        }
    }
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        size_t off = at && at >= body && at <= body + len ? (size_t)(at - body) : len;
        if (end && end > body && end < body + len) off = (size_t)(end - body);
        api_err_invalid(e, NULL,
                        "We could not parse the JSON body of your request: invalid JSON near byte %zu. (The API "
                        "expects a JSON object as the body, with Content-Type: application/json.)",
                        off);
        return NULL;
    }
    if (!cJSON_IsObject(root)) {
        api_err_invalid(e, NULL, "The request body must be a JSON object, got %s.", type_name(root));
        cJSON_Delete(root);
        return NULL;
    }
    char path[96] = "";
    if (check_utf8_tree(root, path, sizeof path, e) != 0) {
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

// ---- chat -----------------------------------------------------------------------------

static int parse_role(const char *s, api_role *out) {
    if (strcmp(s, "system") == 0 || strcmp(s, "developer") == 0) *out = API_ROLE_SYSTEM;
    else if (strcmp(s, "user") == 0) *out = API_ROLE_USER;
    else if (strcmp(s, "assistant") == 0) *out = API_ROLE_ASSISTANT;
    else if (strcmp(s, "tool") == 0) *out = API_ROLE_TOOL;
    else return -1;
    return 0;
}

const char *api_role_name(api_role r) {
    static const char *names[] = {"system", "user", "assistant", "tool"};
    return names[r];
}

// content: a string, or a list of text parts joined with "\n".
static int read_content(const cJSON *v, const char *param, char **out, api_error *e) {
    if (cJSON_IsString(v)) {
        *out = strdup(v->valuestring);
        return *out ? 0 : oom(e);
    }
    if (!cJSON_IsArray(v)) return wrong_type(e, param, "a string or an array of content parts", v);
    size_t len = 0;
    char *s = calloc(1, 1);
    if (!s) return oom(e);
    int i = 0;
    char p[96];
    for (const cJSON *part = v->child; part; part = part->next, i++) {
        snprintf(p, sizeof p, "%s[%d]", param, i);
        if (!cJSON_IsObject(part)) {
            free(s);
            return wrong_type(e, p, "an object", part);
        }
        const cJSON *type = field(part, "type");
        snprintf(p, sizeof p, "%s[%d].type", param, i);
        if (!type || !cJSON_IsString(type)) {
            free(s);
            return type ? wrong_type(e, p, "a string", type)
                        : api_err_invalid(e, p, "Missing required parameter: '%s'.", p);
        }
        if (strcmp(type->valuestring, "text") != 0) {
            api_err_invalid(e, p, "Invalid value: '%s'. This server supports only content parts of type 'text'.",
                            type->valuestring);
            free(s);
            return -1;
        }
        const cJSON *text = field(part, "text");
        snprintf(p, sizeof p, "%s[%d].text", param, i);
        if (!text || !cJSON_IsString(text)) {
            free(s);
            return text ? wrong_type(e, p, "a string", text)
                        : api_err_invalid(e, p, "Missing required parameter: '%s'.", p);
        }
        size_t tn = strlen(text->valuestring);
        char *t = realloc(s, len + (i > 0) + tn + 1);
        if (!t) {
            free(s);
            return oom(e);
        }
        s = t;
        if (i > 0) s[len++] = '\n';
        memcpy(s + len, text->valuestring, tn + 1);
        len += tn;
    }
    *out = s;
    return 0;
}

static int read_message(const cJSON *m, int i, api_message *out, api_error *e) {
    char p[64];
    snprintf(p, sizeof p, "messages[%d]", i);
    if (!cJSON_IsObject(m)) return wrong_type(e, p, "an object", m);
    const cJSON *role = field(m, "role");
    snprintf(p, sizeof p, "messages[%d].role", i);
    if (!role) return api_err_invalid(e, p, "Missing required parameter: '%s'.", p);
    if (!cJSON_IsString(role)) return wrong_type(e, p, "a string", role);
    if (strcmp(role->valuestring, "function") == 0)
        return api_err_invalid(e, p, "Invalid value: 'function'. The legacy role 'function' is not supported: send "
                                     "a function's result as a message with role 'tool' and the 'tool_call_id' of the call.");
    if (parse_role(role->valuestring, &out->role) != 0)
        return api_err_invalid(e, p, "Invalid value: '%s'. Supported values are: 'system', 'developer', 'user', 'assistant', and 'tool'.",
                               role->valuestring);
    if (api_read_message_tools(m, i, out, e) != 0) return -1;
    const cJSON *content = field(m, "content");
    snprintf(p, sizeof p, "messages[%d].content", i);
    if (!content) {
        if (out->role != API_ROLE_ASSISTANT) return api_err_invalid(e, p, "Missing required parameter: '%s'.", p);
        out->null_content = 1;
        out->content = strdup("");
        if (!out->content) return oom(e);
    } else if (read_content(content, p, &out->content, e) != 0) {
        return -1;
    }
    snprintf(p, sizeof p, "messages[%d].name", i);
    const cJSON *name = field(m, "name");
    if (name && !cJSON_IsString(name)) return wrong_type(e, p, "a string", name);
    if (name && !(out->name = strdup(name->valuestring))) return oom(e);
    return 0;
}

// Features we cannot honour and that would silently change the answer.
static int refuse_unsupported_chat(const cJSON *o, api_error *e) {
    const cJSON *fns = field(o, "functions");
    if (fns && !(cJSON_IsArray(fns) && cJSON_GetArraySize(fns) == 0))
        return api_err_invalid(e, "functions", "Invalid 'functions': the legacy 'functions' parameter is not "
                                               "supported by this server; use 'tools' instead.");
    if (field(o, "function_call"))
        return api_err_invalid(e, "function_call", "Invalid 'function_call': the legacy 'function_call' parameter "
                                                   "is not supported by this server; use 'tool_choice' instead.");
    const cJSON *mod = field(o, "modalities");
    if (mod && cJSON_IsArray(mod)) {
        for (const cJSON *x = mod->child; x; x = x->next)
            if (!cJSON_IsString(x) || strcmp(x->valuestring, "text") != 0)
                return api_err_invalid(e, "modalities", "Invalid 'modalities': only 'text' is supported by this server.");
    }
    return 0;
}

int api_parse_chat(const char *body, size_t len, api_request *r, api_error *e) {
    request_init(r, API_CHAT);
    cJSON *o = api_parse_body(body, len, e);
    if (!o) return -1;
    int rc = -1;
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(o, "messages");
    if (!msgs || cJSON_IsNull(msgs)) {
        api_err_invalid(e, "messages", "Missing required parameter: 'messages'.");
        goto done;
    }
    if (!cJSON_IsArray(msgs)) {
        wrong_type(e, "messages", "an array", msgs);
        goto done;
    }
    int n = cJSON_GetArraySize(msgs);
    if (n == 0) {
        api_err_invalid(e, "messages", "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.");
        goto done;
    }
    if (read_common(o, r, e) != 0 || refuse_unsupported_chat(o, e) != 0 || read_response_format(o, r, e) != 0 ||
        api_read_tools(o, r, e) != 0)
        goto done;
    if (!(r->messages = calloc((size_t)n, sizeof *r->messages))) {
        oom(e);
        goto done;
    }
    int i = 0;
    for (const cJSON *m = msgs->child; m; m = m->next, i++) {
        r->n_messages = i + 1;
        if (read_message(m, i, &r->messages[i], e) != 0) goto done;
    }
    if (api_check_tool_answers(r, e) != 0) goto done;
    if (read_bool(o, "logprobs", &r->logprobs, e)) goto done;
    int64_t top = 0;
    int has_top = 0;
    if (read_int(o, "top_logprobs", 0, SAMPLER_MAX_TOP_LOGPROBS, &top, &has_top, e)) goto done;
    if (has_top && !r->logprobs) {
        api_err_invalid(e, "top_logprobs", "Invalid 'top_logprobs': 'logprobs' must be set to true when 'top_logprobs' is used.");
        goto done;
    }
    r->top_logprobs = (int)top;
    const cJSON *kw = field(o, "chat_template_kwargs");
    if (kw && !cJSON_IsObject(kw)) {
        wrong_type(e, "chat_template_kwargs", "an object", kw);
        goto done;
    }
    const cJSON *think = kw ? field(kw, "enable_thinking") : NULL;
    if (think && !cJSON_IsBool(think)) {
        wrong_type(e, "chat_template_kwargs.enable_thinking", "a boolean", think);
        goto done;
    }
    if (think) r->enable_thinking = cJSON_IsTrue(think);
    rc = 0;
done:
    cJSON_Delete(o);
    return rc;
}

// ---- completions --------------------------------------------------------------------

static int read_ids(const cJSON *v, const char *param, api_prompt *out, api_error *e) {
    int n = cJSON_GetArraySize(v);
    if (!(out->ids = calloc((size_t)(n ? n : 1), sizeof *out->ids))) return oom(e);
    int i = 0;
    char p[64];
    for (const cJSON *x = v->child; x; x = x->next, i++) {
        if (!is_integer(x) || x->valuedouble < 0 || x->valuedouble > INT32_MAX) {
            snprintf(p, sizeof p, "%s[%d]", param, i);
            return api_err_invalid(e, p, "Invalid '%s': expected a token id (a non-negative integer), got %s.", p,
                                   type_name(x));
        }
        out->ids[i] = (int32_t)x->valuedouble;
    }
    out->n_ids = n;
    return 0;
}

static int read_prompt(const cJSON *o, api_request *r, api_error *e) {
    const cJSON *v = field(o, "prompt");
    if (!v) return api_err_invalid(e, "prompt", "Missing required parameter: 'prompt'.");
    if (cJSON_IsString(v)) {
        if (!(r->prompts = calloc(1, sizeof *r->prompts))) return oom(e);
        r->n_prompts = 1;
        return (r->prompts[0].text = strdup(v->valuestring)) ? 0 : oom(e);
    }
    if (!cJSON_IsArray(v)) return wrong_type(e, "prompt", "a string or an array", v);
    int n = cJSON_GetArraySize(v);
    if (n == 0) return api_err_invalid(e, "prompt", "Invalid 'prompt': empty array.");
    if (cJSON_IsNumber(v->child)) { // one prompt of token ids
        if (!(r->prompts = calloc(1, sizeof *r->prompts))) return oom(e);
        r->n_prompts = 1;
        return read_ids(v, "prompt", &r->prompts[0], e);
    }
    if (n > API_MAX_PROMPTS)
        return api_err_invalid(e, "prompt", "Invalid 'prompt': at most %d prompts in one request, got %d.",
                               API_MAX_PROMPTS, n);
    if (!(r->prompts = calloc((size_t)n, sizeof *r->prompts))) return oom(e);
    int i = 0;
    char p[32];
    for (const cJSON *x = v->child; x; x = x->next, i++) {
        r->n_prompts = i + 1;
        snprintf(p, sizeof p, "prompt[%d]", i);
        if (cJSON_IsString(x)) {
            if (!(r->prompts[i].text = strdup(x->valuestring))) return oom(e);
        } else if (cJSON_IsArray(x)) {
            if (read_ids(x, p, &r->prompts[i], e) != 0) return -1;
        } else {
            return wrong_type(e, p, "a string or an array of token ids", x);
        }
    }
    return 0;
}

int api_parse_completion(const char *body, size_t len, api_request *r, api_error *e) {
    request_init(r, API_COMPLETION);
    cJSON *o = api_parse_body(body, len, e);
    if (!o) return -1;
    int rc = -1;
    if (read_prompt(o, r, e) != 0 || read_common(o, r, e) != 0 || read_response_format(o, r, e) != 0) goto done;
    if (r->max_tokens < 0) r->max_tokens = 16;
    int echo = 0;
    if (read_bool(o, "echo", &echo, e)) goto done;
    if (echo) {
        api_err_invalid(e, "echo", "Invalid 'echo': echoing the prompt is not supported by this server.");
        goto done;
    }
    const cJSON *suffix = field(o, "suffix");
    if (suffix && !(cJSON_IsString(suffix) && !suffix->valuestring[0])) {
        api_err_invalid(e, "suffix", "Invalid 'suffix': insertion (suffix) is not supported by this server.");
        goto done;
    }
    int64_t best_of = r->n;
    if (read_int(o, "best_of", 1, API_MAX_N, &best_of, NULL, e)) goto done;
    if (best_of != r->n) {
        api_err_invalid(e, "best_of", "Invalid 'best_of': only best_of equal to n is supported, got %lld with n %d.",
                        (long long)best_of, r->n);
        goto done;
    }
    int64_t lp = 0;
    int has_lp = 0;
    if (read_int(o, "logprobs", 0, API_MAX_COMPLETION_LOGPROBS, &lp, &has_lp, e)) goto done;
    r->logprobs = has_lp;
    r->top_logprobs = (int)lp;
    rc = 0;
done:
    cJSON_Delete(o);
    return rc;
}

void api_request_free(api_request *r) {
    if (!r) return;
    free(r->model);
    for (int i = 0; i < r->n_messages; i++) {
        free(r->messages[i].content);
        free(r->messages[i].name);
    }
    api_tools_free(r); // before the messages: it frees their tool parts
    free(r->messages);
    for (int i = 0; i < r->n_prompts; i++) {
        free(r->prompts[i].text);
        free(r->prompts[i].ids);
    }
    free(r->prompts);
    for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
    free(r->logit_bias);
    free(r->user);
    free(r->schema);
    free(r->schema_name);
    memset(r, 0, sizeof *r);
}

sampler_params api_sampler_params(const api_request *r) {
    sampler_params p = sampler_params_default();
    p.temperature = r->temperature;
    p.top_p = r->top_p;
    p.top_k = r->top_k;
    p.min_p = r->min_p;
    p.seed = r->seed;
    p.presence_penalty = r->presence_penalty;
    p.frequency_penalty = r->frequency_penalty;
    p.repetition_penalty = r->repetition_penalty;
    p.logit_bias = r->logit_bias;
    p.n_logit_bias = r->n_logit_bias;
    p.top_logprobs = r->logprobs ? r->top_logprobs : 0;
    p.want_logprob = r->logprobs; // only then is the chosen token's logprob shown
    return p;
}
