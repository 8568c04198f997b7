// api_embed: the body of POST /v1/embeddings into api_embed_request (api.h).
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_int.h"

// One input of token ids: a non-empty array of integers in [0, INT32_MAX]
// (the vocabulary bound is the caller's).
static int read_ids(const cJSON *v, const char *param, api_prompt *out, api_error *e) {
    int n = cJSON_GetArraySize(v);
    if (n == 0) return api_err_invalid(e, param, "Invalid '%s': empty array of token ids.", param);
    if (!(out->ids = calloc((size_t)n, sizeof *out->ids))) return oom(e);
    int i = 0;
    char p[64];
    for (const cJSON *x = v->child; x; x = x->next, i++) {
        if (!cJSON_IsNumber(x) || x->valuedouble != floor(x->valuedouble) || x->valuedouble < 0 ||
            x->valuedouble > INT32_MAX) {
            snprintf(p, sizeof p, "%s[%d]", param, i);
            return api_err_invalid(e, p, "Invalid '%s': expected a token id (a non-negative integer), got %s.", p,
                                   type_name(x));
        }
        out->ids[i] = (int32_t)x->valuedouble;
    }
    out->n_ids = n;
    return 0;
}

static int read_text(const cJSON *v, const char *param, api_prompt *out, api_error *e) {
    if (!v->valuestring[0]) return api_err_invalid(e, param, "Invalid '%s': empty string.", param);
    return (out->text = strdup(v->valuestring)) ? 0 : oom(e);
}

static int read_input(const cJSON *o, api_embed_request *r, api_error *e) {
    const cJSON *v = field(o, "input");
    if (!v) return api_err_invalid(e, "input", "Missing required parameter: 'input'.");
    if (cJSON_IsString(v) || (cJSON_IsArray(v) && cJSON_IsNumber(v->child))) {
        if (!(r->inputs = calloc(1, sizeof *r->inputs))) return oom(e);
        r->n_inputs = 1;
        return cJSON_IsString(v) ? read_text(v, "input", r->inputs, e) : read_ids(v, "input", r->inputs, e);
    }
    if (!cJSON_IsArray(v)) return wrong_type(e, "input", "a string or an array", v);
    int n = cJSON_GetArraySize(v);
    if (n == 0) return api_err_invalid(e, "input", "Invalid 'input': empty array.");
    if (n > API_MAX_PROMPTS)
        return api_err_invalid(e, "input", "Invalid 'input': at most %d inputs in one request, got %d.",
                               API_MAX_PROMPTS, n);
    if (!(r->inputs = calloc((size_t)n, sizeof *r->inputs))) return oom(e);
    int i = 0;
    char p[32];
    for (const cJSON *x = v->child; x; x = x->next, i++) {
        r->n_inputs = i + 1;
        snprintf(p, sizeof p, "input[%d]", i);
        if (cJSON_IsString(x)) {
            if (read_text(x, p, &r->inputs[i], e) != 0) return -1;
        } else if (cJSON_IsArray(x)) {
            if (read_ids(x, p, &r->inputs[i], e) != 0) return -1;
        } else {
            return wrong_type(e, p, "a string or an array of token ids", x);
        }
    }
    return 0;
}

static int read_rest(const cJSON *o, api_embed_request *r, api_error *e) {
    const cJSON *m = field(o, "model");
    if (!m) return api_err_invalid(e, "model", "you must provide a model parameter");
    if (!cJSON_IsString(m)) return wrong_type(e, "model", "a string", m);
    if (!(r->model = strdup(m->valuestring))) return oom(e);
    const cJSON *f = field(o, "encoding_format");
    if (f) {
        if (!cJSON_IsString(f)) return wrong_type(e, "encoding_format", "a string", f);
        if (!strcmp(f->valuestring, "base64")) r->base64 = 1;
        else if (strcmp(f->valuestring, "float") != 0)
            return api_err_invalid(e, "encoding_format",
                                   "Invalid 'encoding_format': expected 'float' or 'base64', got '%s'.",
                                   f->valuestring);
    }
    const cJSON *d = field(o, "dimensions");
    if (d) {
        if (!cJSON_IsNumber(d) || d->valuedouble != floor(d->valuedouble))
            return wrong_type(e, "dimensions", "an integer", d);
        if (d->valuedouble < 1 || d->valuedouble > INT_MAX)
            return api_err_invalid(e, "dimensions", "Invalid 'dimensions': must be at least 1, got %g.",
                                   d->valuedouble);
        r->dimensions = (int)d->valuedouble;
    }
    return 0;
}

int api_parse_embeddings(const char *body, size_t len, api_embed_request *r, api_error *e) {
    memset(r, 0, sizeof *r);
    cJSON *o = api_parse_body(body, len, e);
    if (!o) return -1;
    int rc = read_input(o, r, e) != 0 || read_rest(o, r, e) != 0 ? -1 : 0;
    cJSON_Delete(o);
    if (rc != 0) api_embed_request_free(r);
    return rc;
}

void api_embed_request_free(api_embed_request *r) {
    for (int i = 0; i < r->n_inputs; i++) free(r->inputs[i].text), free(r->inputs[i].ids);
    free(r->inputs);
    free(r->model);
    memset(r, 0, sizeof *r);
}
