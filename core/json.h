// json: typed access to fields of untrusted JSON (config.json,
// adapter_config.json, request bodies), with errors that name the field.
//
// Absent and null are the same thing, as transformers and PEFT treat them.
// Every reader takes a context naming the file (or NULL when the caller
// adds it) and the enclosing object, so a message reads
// "FILE: field rope_scaling.factor: expected a number, got string".
#ifndef TESSERA_JSON_H
#define TESSERA_JSON_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "err.h"

typedef struct json_ctx {
    const char *file;   // NULL: no "FILE: " prefix
    const char *prefix; // "" or e.g. "rope_parameters."
    err_t *err;
} json_ctx;

// "number", "string", "bool", "array", "object", "null".
const char *json_type_name(const cJSON *v);
// The member key of o, or NULL when absent or null.
const cJSON *json_field(const cJSON *o, const char *key);

// Each returns -1 with the error set.
int json_bad_type(const json_ctx *c, const char *key, const char *want, const cJSON *v);
// v must be an integer in [lo, hi].
int json_as_int(const json_ctx *c, const char *key, const cJSON *v, int64_t lo, int64_t hi, int64_t *out);

// Optional fields: 1 found (and *out set), 0 absent or null (*out
// untouched), -1 wrong type or range.
int json_opt_int(const json_ctx *c, const cJSON *o, const char *key, int64_t lo, int64_t hi, int64_t *out);
int json_opt_num(const json_ctx *c, const cJSON *o, const char *key, double *out); // finite
int json_opt_bool(const json_ctx *c, const cJSON *o, const char *key, int *out);
int json_opt_str(const json_ctx *c, const cJSON *o, const char *key, const char **out); // borrowed
// Required integer: 0, or -1 when absent, of the wrong type or range.
int json_req_int(const json_ctx *c, const cJSON *o, const char *key, int64_t lo, int64_t hi, int64_t *out);

#endif
