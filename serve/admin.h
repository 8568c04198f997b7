// admin: vLLM's runtime adapter endpoints, for admin keys only (any
// request in open mode; 403 permission_error otherwise). Both answer as
// vLLM does: 200 with a plain-text line.
//
//   POST /v1/load_lora_adapter   {"lora_name","lora_path"}: validates the
//        adapter folder at lora_path (any server path) on the thread pool
//        and registers it in the server's current set (registry.h) under
//        lora_name, where it shadows a folder entry of the same name. 400
//        when the folder is not a usable adapter or the name is taken (the
//        base's, or an adapter's); names starting with "ft:" are reserved.
//        403 when lora_path, resolved (realpath: symlinks do not get
//        around it), is a fine-tuned model's folder (a path component
//        starting with "ft:") or lies inside the fine-tuning data folder:
//        a fine-tuned model is served only to its own tenant, as "ft:...",
//        and another name would hand it to whoever's globs match.
//   POST /v1/unload_lora_adapter {"lora_name"}: drops a runtime-loaded
//        adapter (404 otherwise); requests in flight hold their own
//        reference and finish on it.
//
// Which names exist for the key is access.h's answer, as everywhere. Owns
// nothing between requests (each load owns its request state until it is
// answered). Threading: the loop thread; the folder is read on the libuv
// thread pool.
#ifndef TESSERA_ADMIN_H
#define TESSERA_ADMIN_H

#include <uv.h>

#include "access.h"
#include "config.h"
#include "http.h"
#include "metrics.h"
#include "registry.h"
#include "tenants.h"

// What the routes need from the server; all borrowed, alive as long as the
// loop runs.
typedef struct admin_env {
    uv_loop_t *loop;
    metrics_requests *requests; // answers are counted and logged here (reply.h)
    const model_config *model;  // loaded adapters are validated against it
    reg_set *adapters;          // where a load registers, from where an unload removes
    const access_ctx *access;
    const char *data_dir;       // --data-dir; NULL = no fine-tuning
    // Where lora_path may point (admin.c): the adapters folder and the
    // comma-separated --lora-roots; a path whose real path is in none of
    // them is refused. Both NULL = every load is refused.
    const char *adapters_dir, *lora_roots;
    // Open mode (no --tenants) has no keys, so the routes are off there
    // unless admin_key (--admin-key) is set: then its Bearer key may call them.
    int open_mode;
    const char *admin_key;
} admin_env;

// Names a load may register: 1 to ADMIN_NAME_MAX characters of
// [A-Za-z0-9._:-], not "." nor "..", not starting with "ft:" (reserved for
// fine-tuned models).
#define ADMIN_NAME_MAX 128

// Answers POST /v1/load_lora_adapter (load 1) or /v1/unload_lora_adapter
// (load 0) for tenant tn (authenticated by the caller; borrowed for this
// call only).
void admin_lora(const admin_env *env, const http_req *q, http_res *res, const tn_tenant *tn, int load);

#endif
