// access: the one rule deciding which model names an API key may see and
// use. Every path that takes a model name asks here: chat and completions,
// GET /v1/models (the listing is the names this allows) and
// /v1/models/{id}, the admin load/unload routes, and fine-tuning (a job
// needs the base).
//
// The rule, for a tenant (tenants.h) and a model id:
//   - the base model's id: if the tenant may use the base (tn_allows_base);
//   - a fine-tuned model ("ft:..."): only by the tenant of the succeeded job
//     that made it (ftjob_model_owner), whatever its globs say, admin or
//     not; an "ft:" folder no job of this server made is nobody's;
//   - any other adapter of the server's current set (registry.h: the
//     folder's or a runtime-loaded one, the latter shadowing the former):
//     if the tenant's globs match its name (an admin matches everything);
//   - anything else: no.
// A name refused and a name that does not exist look the same to the
// client (404 model_not_found), so tenants cannot probe each other's names.
//
// Threading: the loop thread (the set and the jobs store live there).
#ifndef TESSERA_ACCESS_H
#define TESSERA_ACCESS_H

#include "api.h"
#include "ftjobs.h"
#include "registry.h"
#include "tenants.h"

// What the rule reads; all borrowed from the server, which fills it as it
// opens (a field may be NULL until then: no adapters, no fine-tuning).
typedef struct access_ctx {
    const char *base_id;      // the base model's id
    const reg_set *adapters;  // the server's current set; NULL = none
    const ftjob_store *ftjobs; // NULL = fine-tuning off (no "ft:" model is anyone's)
} access_ctx;

// 1 if tenant tn may see and use model id; *entry then gets its adapter
// (NULL for the base), borrowed from the set (take a reference to keep it).
// 0 otherwise, with *entry NULL.
int access_model(const access_ctx *a, const tn_tenant *tn, const char *id, const reg_entry **entry);

// Fills e with the answer to a refused or unknown model id (404
// model_not_found, the same for both); param names the field that held it.
// Returns -1.
int access_not_found(api_error *e, const char *id, const char *param);

#endif
