// api_response: the OpenAI response objects, built from plain values. See
// api.h ("responses") for the shapes.
//
// Owns nothing past a call: each builder returns a new JSON text (free()).
// Pure functions; callable from any thread.
#include "api.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"

// ---- UTF-8 --------------------------------------------------------------------

// A copy of s[0..n) with every ill-formed byte replaced by U+FFFD, for the
// "token" strings of logprobs (a token may hold part of a character).
static char *utf8_lossy(const char *s, size_t n) {
    char *out = malloc(n * 3 + 1);
    if (!out) return NULL;
    size_t k = 0;
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        size_t len;
        int32_t cp = utf8_decode(p + i, n - i, &len);
        if (cp > 0) {
            memcpy(out + k, p + i, len);
            k += len;
            i += len;
        } else if (cp == 0) { // NUL: keep JSON strings C-safe
            i++;
        } else { // one U+FFFD per byte, not per maximal subpart
            memcpy(out + k, "\xEF\xBF\xBD", 3);
            k += 3;
            i++;
        }
    }
    out[k] = '\0';
    return out;
}

// ---- responses --------------------------------------------------------------------------

// A string item from n bytes (a NUL inside is dropped by cJSON's C strings;
// the engine never produces one).
static cJSON *str_n(const char *s, size_t n) {
    char *t = malloc(n + 1);
    if (!t) return cJSON_CreateNull();
    if (n) memcpy(t, s, n);
    t[n] = '\0';
    cJSON *v = cJSON_CreateString(t);
    free(t);
    return v;
}

// A float as its shortest decimal, so -0.1f prints as -0.1, not -0.10000000149011612.
static cJSON *num_f(float f) {
    if (!isfinite(f)) return cJSON_CreateNumber(f < 0 ? -9999.0 : 9999.0);
    char buf[32];
    snprintf(buf, sizeof buf, "%.7g", (double)f);
    return cJSON_CreateNumber(strtod(buf, NULL));
}

static cJSON *bytes_array(const char *s, size_t n) {
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber((unsigned char)s[i]));
    return a;
}

static cJSON *token_string(const char *s, size_t n) {
    char *t = utf8_lossy(s, n);
    cJSON *v = t ? cJSON_CreateString(t) : cJSON_CreateNull();
    free(t);
    return v;
}

// Chat logprobs: {"content":[{"token","logprob","bytes","top_logprobs"}],"refusal":null}
static cJSON *chat_logprobs(const api_token_logprob *lp, int n) {
    if (!lp) return cJSON_CreateNull();
    cJSON *o = cJSON_CreateObject(), *content = cJSON_CreateArray();
    cJSON_AddItemToObject(o, "content", content);
    for (int i = 0; i < n; i++) {
        cJSON *t = cJSON_CreateObject();
        cJSON_AddItemToObject(t, "token", token_string(lp[i].token, lp[i].len));
        cJSON_AddItemToObject(t, "logprob", num_f(lp[i].logprob));
        cJSON_AddItemToObject(t, "bytes", bytes_array(lp[i].token, lp[i].len));
        cJSON *top = cJSON_CreateArray();
        for (int k = 0; k < lp[i].n_top; k++) {
            cJSON *x = cJSON_CreateObject();
            cJSON_AddItemToObject(x, "token", token_string(lp[i].top[k].token, lp[i].top[k].len));
            cJSON_AddItemToObject(x, "logprob", num_f(lp[i].top[k].logprob));
            cJSON_AddItemToObject(x, "bytes", bytes_array(lp[i].top[k].token, lp[i].top[k].len));
            cJSON_AddItemToArray(top, x);
        }
        cJSON_AddItemToObject(t, "top_logprobs", top);
        cJSON_AddItemToArray(content, t);
    }
    cJSON_AddNullToObject(o, "refusal");
    return o;
}

// Completion logprobs: {"tokens","token_logprobs","top_logprobs","text_offset"}.
// text_offset counts bytes from the start of the choice's text.
static cJSON *completion_logprobs(const api_token_logprob *lp, int n, int64_t offset0) {
    if (!lp) return cJSON_CreateNull();
    cJSON *o = cJSON_CreateObject(), *tokens = cJSON_CreateArray(), *lps = cJSON_CreateArray(),
          *tops = cJSON_CreateArray(), *offs = cJSON_CreateArray();
    int64_t off = offset0;
    for (int i = 0; i < n; i++) {
        cJSON_AddItemToArray(tokens, token_string(lp[i].token, lp[i].len));
        cJSON_AddItemToArray(lps, num_f(lp[i].logprob));
        cJSON *top = cJSON_CreateObject();
        for (int k = 0; k < lp[i].n_top; k++) {
            char *t = utf8_lossy(lp[i].top[k].token, lp[i].top[k].len);
            if (t && !cJSON_GetObjectItemCaseSensitive(top, t)) cJSON_AddItemToObject(top, t, num_f(lp[i].top[k].logprob));
            free(t);
        }
        cJSON_AddItemToArray(tops, top);
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
        off += (int64_t)lp[i].len;
    }
    cJSON_AddItemToObject(o, "tokens", tokens);
    cJSON_AddItemToObject(o, "token_logprobs", lps);
    cJSON_AddItemToObject(o, "top_logprobs", tops);
    cJSON_AddItemToObject(o, "text_offset", offs);
    return o;
}

static cJSON *usage_json(const api_usage *u) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "prompt_tokens", (double)u->prompt_tokens);
    cJSON_AddNumberToObject(o, "completion_tokens", (double)u->completion_tokens);
    cJSON_AddNumberToObject(o, "total_tokens", (double)(u->prompt_tokens + u->completion_tokens));
    return o;
}

static cJSON *envelope(const char *id, const char *object, int64_t created, const char *model) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "object", object);
    cJSON_AddNumberToObject(o, "created", (double)created);
    cJSON_AddStringToObject(o, "model", model);
    cJSON_AddNullToObject(o, "system_fingerprint");
    return o;
}

static char *print_free(cJSON *o) {
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

static cJSON *reason_json(const char *r) { return r ? cJSON_CreateString(r) : cJSON_CreateNull(); }

// {"id","type":"function","function":{"name","arguments"}}: one call, as
// the SDKs read it in message.tool_calls.
static cJSON *call_json(const api_out_call *c) {
    cJSON *o = cJSON_CreateObject(), *fn = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", c->id);
    cJSON_AddStringToObject(o, "type", "function");
    cJSON_AddStringToObject(fn, "name", c->name);
    cJSON_AddItemToObject(fn, "arguments", str_n(c->arguments ? c->arguments : "", c->arguments ? c->len : 0));
    cJSON_AddItemToObject(o, "function", fn);
    return o;
}

// The message of a finished chat choice: content (null for a reply of
// calls only), reasoning_content and tool_calls when there are any.
static cJSON *chat_message(const api_choice *c) {
    cJSON *msg = cJSON_CreateObject();
    cJSON_AddStringToObject(msg, "role", "assistant");
    if (c->null_text)
        cJSON_AddNullToObject(msg, "content");
    else
        cJSON_AddItemToObject(msg, "content", str_n(c->text ? c->text : "", c->text ? c->len : 0));
    if (c->reasoning) cJSON_AddItemToObject(msg, "reasoning_content", str_n(c->reasoning, c->reasoning_len));
    if (c->calls && c->n_calls > 0) {
        cJSON *calls = cJSON_AddArrayToObject(msg, "tool_calls");
        for (int k = 0; k < c->n_calls; k++) cJSON_AddItemToArray(calls, call_json(&c->calls[k]));
    }
    cJSON_AddNullToObject(msg, "refusal");
    return msg;
}

char *api_chat_completion_json(const char *id, int64_t created, const char *model, const api_choice *choices,
                               int n_choices, const api_usage *usage) {
    cJSON *o = envelope(id, "chat.completion", created, model);
    cJSON *arr = cJSON_AddArrayToObject(o, "choices");
    for (int i = 0; i < n_choices; i++) {
        const api_choice *c = &choices[i];
        cJSON *ch = cJSON_CreateObject();
        cJSON_AddNumberToObject(ch, "index", c->index);
        cJSON_AddItemToObject(ch, "message", chat_message(c));
        cJSON_AddItemToObject(ch, "logprobs", chat_logprobs(c->logprobs, c->n_logprobs));
        cJSON_AddItemToObject(ch, "finish_reason", reason_json(c->finish_reason));
        cJSON_AddItemToArray(arr, ch);
    }
    if (usage) cJSON_AddItemToObject(o, "usage", usage_json(usage));
    return print_free(o);
}

char *api_text_completion_json(const char *id, int64_t created, const char *model, const api_choice *choices,
                               int n_choices, const api_usage *usage) {
    cJSON *o = envelope(id, "text_completion", created, model);
    cJSON *arr = cJSON_AddArrayToObject(o, "choices");
    for (int i = 0; i < n_choices; i++) {
        const api_choice *c = &choices[i];
        cJSON *ch = cJSON_CreateObject();
        cJSON_AddItemToObject(ch, "text", str_n(c->text ? c->text : "", c->text ? c->len : 0));
        cJSON_AddNumberToObject(ch, "index", c->index);
        cJSON_AddItemToObject(ch, "logprobs", completion_logprobs(c->logprobs, c->n_logprobs, 0));
        cJSON_AddItemToObject(ch, "finish_reason", reason_json(c->finish_reason));
        cJSON_AddItemToArray(arr, ch);
    }
    if (usage) cJSON_AddItemToObject(o, "usage", usage_json(usage));
    return print_free(o);
}

// One entry of a delta's tool_calls: the index always; id, type and name on
// the call's first delta; arguments whenever given (the first sends "").
static cJSON *call_delta_json(const api_delta *d) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "index", d->call_index);
    if (d->call_id) {
        cJSON_AddStringToObject(o, "id", d->call_id);
        cJSON_AddStringToObject(o, "type", "function");
    }
    if (d->call_name || d->args) {
        cJSON *fn = cJSON_AddObjectToObject(o, "function");
        if (d->call_name) cJSON_AddStringToObject(fn, "name", d->call_name);
        if (d->args) cJSON_AddItemToObject(fn, "arguments", str_n(d->args, d->args_len));
    }
    return o;
}

static cJSON *delta_json(const api_delta *d) {
    cJSON *delta = cJSON_CreateObject();
    if (!d) return delta;
    if (d->role) cJSON_AddStringToObject(delta, "role", "assistant");
    if (d->content) cJSON_AddItemToObject(delta, "content", str_n(d->content, d->content_len));
    if (d->reasoning) cJSON_AddItemToObject(delta, "reasoning_content", str_n(d->reasoning, d->reasoning_len));
    // A call part with nothing in it is left out too, so a zeroed
    // api_delta (call_index 0) carries no call.
    if (d->call_index >= 0 && (d->call_id || d->call_name || d->args)) {
        cJSON *calls = cJSON_AddArrayToObject(delta, "tool_calls");
        cJSON_AddItemToArray(calls, call_delta_json(d));
    }
    return delta;
}

char *api_chat_delta_json(const char *id, int64_t created, const char *model, int index, const api_delta *d,
                          const char *finish_reason, const api_token_logprob *logprobs, int n_logprobs,
                          int with_usage_null) {
    cJSON *o = envelope(id, "chat.completion.chunk", created, model);
    cJSON *arr = cJSON_AddArrayToObject(o, "choices");
    cJSON *ch = cJSON_CreateObject();
    cJSON_AddNumberToObject(ch, "index", index);
    cJSON_AddItemToObject(ch, "delta", delta_json(d));
    cJSON_AddItemToObject(ch, "logprobs", chat_logprobs(logprobs, n_logprobs));
    cJSON_AddItemToObject(ch, "finish_reason", reason_json(finish_reason));
    cJSON_AddItemToArray(arr, ch);
    if (with_usage_null) cJSON_AddNullToObject(o, "usage");
    return print_free(o);
}

char *api_chat_chunk_json(const char *id, int64_t created, const char *model, int index, int role_delta,
                          const char *text, size_t len, const char *finish_reason,
                          const api_token_logprob *logprobs, int n_logprobs, int with_usage_null) {
    api_delta d = {.role = role_delta, .content = role_delta ? "" : text, .content_len = role_delta ? 0 : len,
                   .call_index = -1};
    return api_chat_delta_json(id, created, model, index, &d, finish_reason, logprobs, n_logprobs, with_usage_null);
}

char *api_chat_usage_chunk_json(const char *id, int64_t created, const char *model, const api_usage *usage) {
    cJSON *o = envelope(id, "chat.completion.chunk", created, model);
    cJSON_AddArrayToObject(o, "choices");
    cJSON_AddItemToObject(o, "usage", usage_json(usage));
    return print_free(o);
}

char *api_completion_chunk_json(const char *id, int64_t created, const char *model, int index, const char *text,
                                size_t len, const char *finish_reason, const api_token_logprob *logprobs,
                                int n_logprobs, int with_usage_null) {
    cJSON *o = envelope(id, "text_completion", created, model);
    cJSON *arr = cJSON_AddArrayToObject(o, "choices");
    cJSON *ch = cJSON_CreateObject();
    cJSON_AddItemToObject(ch, "text", str_n(text ? text : "", text ? len : 0));
    cJSON_AddNumberToObject(ch, "index", index);
    cJSON_AddItemToObject(ch, "logprobs", completion_logprobs(logprobs, n_logprobs, 0));
    cJSON_AddItemToObject(ch, "finish_reason", reason_json(finish_reason));
    cJSON_AddItemToArray(arr, ch);
    if (with_usage_null) cJSON_AddNullToObject(o, "usage");
    return print_free(o);
}

char *api_completion_usage_chunk_json(const char *id, int64_t created, const char *model, const api_usage *usage) {
    cJSON *o = envelope(id, "text_completion", created, model);
    cJSON_AddArrayToObject(o, "choices");
    cJSON_AddItemToObject(o, "usage", usage_json(usage));
    return print_free(o);
}

static cJSON *model_obj(const api_model *m) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", m->id);
    cJSON_AddStringToObject(o, "object", "model");
    cJSON_AddNumberToObject(o, "created", (double)m->created);
    cJSON_AddStringToObject(o, "owned_by", m->owned_by ? m->owned_by : "tessera");
    if (m->parent) cJSON_AddStringToObject(o, "parent", m->parent);
    return o;
}

char *api_model_json(const api_model *m) { return print_free(model_obj(m)); }

char *api_models_json(const api_model *models, int n) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "list");
    cJSON *data = cJSON_AddArrayToObject(o, "data");
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(data, model_obj(&models[i]));
    return print_free(o);
}
