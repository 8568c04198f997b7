#include "json.h"

#include <math.h>

const char *json_type_name(const cJSON *v) {
    if (cJSON_IsNumber(v)) return "number";
    if (cJSON_IsString(v)) return "string";
    if (cJSON_IsBool(v)) return "bool";
    if (cJSON_IsArray(v)) return "array";
    if (cJSON_IsObject(v)) return "object";
    if (cJSON_IsNull(v)) return "null";
    return "invalid";
}

const cJSON *json_field(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

// The "FILE: " that starts every message, or nothing.
#define FILE_FMT "%s%s"
#define FILE_ARGS(c) (c)->file ? (c)->file : "", (c)->file ? ": " : ""

int json_bad_type(const json_ctx *c, const char *key, const char *want, const cJSON *v) {
    return err_set(c->err, FILE_FMT "field %s%s: expected %s, got %s", FILE_ARGS(c), c->prefix, key, want,
                   json_type_name(v));
}

int json_as_int(const json_ctx *c, const char *key, const cJSON *v, int64_t lo, int64_t hi, int64_t *out) {
    if (!cJSON_IsNumber(v)) return json_bad_type(c, key, "an integer", v);
    double d = v->valuedouble;
    if (!isfinite(d) || d != floor(d))
        return err_set(c->err, FILE_FMT "field %s%s: expected an integer, got %.17g", FILE_ARGS(c), c->prefix, key,
                       d);
    if (d < (double)lo || d > (double)hi)
        return err_set(c->err, FILE_FMT "field %s%s: %.17g is out of range [%lld, %lld]", FILE_ARGS(c), c->prefix,
                       key, d, (long long)lo, (long long)hi);
    *out = (int64_t)d;
    return 0;
}

int json_opt_int(const json_ctx *c, const cJSON *o, const char *key, int64_t lo, int64_t hi, int64_t *out) {
    const cJSON *v = json_field(o, key);
    if (!v) return 0;
    return json_as_int(c, key, v, lo, hi, out) < 0 ? -1 : 1;
}

int json_req_int(const json_ctx *c, const cJSON *o, const char *key, int64_t lo, int64_t hi, int64_t *out) {
    int r = json_opt_int(c, o, key, lo, hi, out);
    if (r == 0)
        return err_set(c->err, FILE_FMT "missing required field %s%s (an integer)", FILE_ARGS(c), c->prefix, key);
    return r < 0 ? -1 : 0;
}

int json_opt_num(const json_ctx *c, const cJSON *o, const char *key, double *out) {
    const cJSON *v = json_field(o, key);
    if (!v) return 0;
    if (!cJSON_IsNumber(v)) return json_bad_type(c, key, "a number", v);
    if (!isfinite(v->valuedouble))
        return err_set(c->err, FILE_FMT "field %s%s: number is not finite", FILE_ARGS(c), c->prefix, key);
    *out = v->valuedouble;
    return 1;
}

int json_opt_bool(const json_ctx *c, const cJSON *o, const char *key, int *out) {
    const cJSON *v = json_field(o, key);
    if (!v) return 0;
    if (!cJSON_IsBool(v)) return json_bad_type(c, key, "true or false", v);
    *out = cJSON_IsTrue(v) ? 1 : 0;
    return 1;
}

int json_opt_str(const json_ctx *c, const cJSON *o, const char *key, const char **out) {
    const cJSON *v = json_field(o, key);
    if (!v) return 0;
    if (!cJSON_IsString(v)) return json_bad_type(c, key, "a string", v);
    *out = v->valuestring;
    return 1;
}
