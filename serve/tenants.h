// tenants: API keys, the tenant each belongs to, and which adapters that
// tenant may see and use.
//
// The file (serve --tenants FILE) is JSON:
//
//   {
//     "keys": {
//       "sk-acme-1":   {"tenant": "acme", "adapters": ["acme-*", "shared-bot"]},
//       "sk-acme-ci":  {"tenant": "acme", "adapters": ["acme-*"], "base": false},
//       "sk-ops":      {"tenant": "ops", "admin": true}
//     }
//   }
//
// Each key (sent as "Authorization: Bearer KEY") maps to:
//   tenant    string, required: the tenant's name (logs, metrics). Several
//             keys may share a tenant (key rotation: add the new key, move
//             clients, remove the old one, reload).
//   adapters  list of shell globs (fnmatch: * ? [...]) over adapter names
//             (the adapter folder names); default [] (no adapter).
//   base      boolean, default true: may use the base model itself.
//   admin     boolean, default false: sees and uses every adapter and the
//             base, whatever `adapters` says (and future admin endpoints).
// Unknown fields are errors (a misspelt "adapter" must not silently grant
// nothing). Keys must be non-empty and hold no whitespace or control
// characters.
//
// A tenant sees only what its globs match: /v1/models lists those adapters
// (and the base if allowed), and any other model name answers 404
// model_not_found exactly as a name that does not exist, so tenants cannot
// probe each other's adapter names.
//
// Without a file the server runs in open mode: no key is needed (any is
// accepted) and every adapter is visible; tn_auth on a NULL table says so.
//
// Reloading (SIGHUP): parse the file into a new table with tn_load (off the
// loop thread if you like: it only reads the file), then swap the pointer the
// loop thread uses and free the old table; a table is immutable, and a bad
// file leaves the old one in force. Lookups copy what they keep (tenant
// name), so no request holds a pointer into a table across the swap.
#ifndef TESSERA_TENANTS_H
#define TESSERA_TENANTS_H

#include <stddef.h>

#include "err.h"

typedef struct tn_tenant {
    char *name;
    char **globs;
    int n_globs;
    int base;  // may use the base model
    int admin; // sees everything
} tn_tenant;

typedef struct tn_table tn_table;

// Reads and validates the file. Returns a new table (free with tn_free) or
// NULL + err naming the file and the key/field at fault.
tn_table *tn_load(const char *path, err_t *err);
// The same from text; name is used in error messages.
tn_table *tn_parse(const char *json, size_t len, const char *name, err_t *err);
void tn_free(tn_table *t);

// Number of keys.
int tn_count(const tn_table *t);

typedef enum tn_auth_result {
    TN_AUTH_OK,
    TN_AUTH_MISSING, // no Authorization header, or not "Bearer KEY"
    TN_AUTH_INVALID, // a key that is not in the table
} tn_auth_result;

// Resolves an Authorization header value (NULL if absent). With a NULL
// table (open mode) every request gets the open tenant (admin). *out is
// borrowed from the table (or static) and valid until the table is freed.
// Keys are compared in constant time per key.
tn_auth_result tn_auth(const tn_table *t, const char *authorization, const tn_tenant **out);

// 1 if the tenant may see and use the adapter named name.
int tn_allows(const tn_tenant *tn, const char *adapter);
// 1 if it may use the base model.
int tn_allows_base(const tn_tenant *tn);

// The bearer token of an Authorization value masked for an error message,
// as OpenAI shows it: "sk-ab***wxyz" (short keys: "***"). Writes into out.
void tn_mask_key(const char *authorization, char *out, size_t n);

#endif
