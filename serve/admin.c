// admin: POST /v1/load_lora_adapter and /v1/unload_lora_adapter. See admin.h.
#include "admin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <errno.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "api.h"
#include "ftjobs.h"
#include "log.h"
#include "reply.h"

typedef struct lora_req {
    const admin_env *env;
    const http_req *q;
    http_res *res;
    char tenant[64];
    char *name, *path;
    reg_entry *entry; // the validated adapter (worker's result)
    int finetuned;    // lora_path is fine-tuning's (worker's result): 1 an ft: folder, 2 in the data folder
    int outside;      // lora_path does not resolve inside an allowed root (worker's result)
    err_t err;
    uv_work_t work;
} lora_req;

// 1 if name is one a load may register (admin.h: ADMIN_NAME_MAX).
static int name_ok(const char *name) {
    size_t n = strlen(name);
    if (n == 0 || n > ADMIN_NAME_MAX || strcmp(name, ".") == 0 || strcmp(name, "..") == 0) return 0;
    for (const char *c = name; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || strchr("._:-", *c)))
            return 0;
    return 1;
}

// Reads {"lora_name": ..., "lora_path": ...} (path only when want_path).
static int parse_lora_body(const http_req *q, int want_path, char **name, char **path, api_error *e) {
    *name = *path = NULL;
    cJSON *o = cJSON_ParseWithLength(q->body ? q->body : "", q->body_len);
    const cJSON *n = o ? cJSON_GetObjectItemCaseSensitive(o, "lora_name") : NULL;
    const cJSON *p = o ? cJSON_GetObjectItemCaseSensitive(o, "lora_path") : NULL;
    int rc = 0;
    if (!o || !cJSON_IsObject(o))
        rc = api_err_set(e, 400, "invalid_request_error", NULL, NULL, "The body must be a JSON object.");
    else if (!cJSON_IsString(n) || !n->valuestring[0] || strchr(n->valuestring, '/'))
        rc = api_err_set(e, 400, "invalid_request_error", "lora_name", NULL,
                         "'lora_name' must be a non-empty string without '/'.");
    else if (want_path && !name_ok(n->valuestring))
        rc = api_err_set(e, 400, "invalid_request_error", "lora_name", NULL,
                         "'lora_name' must be 1 to %d characters of A-Z, a-z, 0-9, '.', '_', ':', '-' "
                         "(not '.' or '..').", ADMIN_NAME_MAX);
    else if (want_path && ftjob_is_ft_name(n->valuestring))
        rc = api_err_set(e, 400, "invalid_request_error", "lora_name", NULL,
                         "'lora_name': names starting with 'ft:' are reserved for fine-tuned models.");
    else if (want_path && (!cJSON_IsString(p) || !p->valuestring[0]))
        rc = api_err_set(e, 400, "invalid_request_error", "lora_path", NULL,
                         "'lora_path' must be the path of an adapter folder on the server.");
    if (rc == 0) {
        *name = strdup(n->valuestring);
        if (want_path) *path = strdup(p->valuestring);
        if (!*name || (want_path && !*path))
            rc = api_err_set(e, 500, "server_error", NULL, NULL, "out of memory");
    }
    cJSON_Delete(o);
    return rc;
}

static void lora_reply(lora_req *l, int status, const char *msg) {
    reply_access(l->env->requests, l->q, status, l->tenant, l->name);
    http_res_send(l->res, status, "text/plain; charset=utf-8", msg, strlen(msg));
}

static void lora_req_free(lora_req *l) {
    if (l->entry) reg_entry_unref(l->entry);
    free(l->name);
    free(l->path);
    free(l);
}

// 1 if the name is taken: the base's or an adapter's, which is what
// access.h lets an admin see (every name but other tenants' "ft:" ones,
// which no load may take anyway: parse_lora_body). The key was checked to
// be an admin's when the request came; the table may have been reloaded
// since, so it is not looked at again.
static int name_taken(lora_req *l) {
    tn_tenant admin = {.name = l->tenant, .admin = 1};
    const reg_entry *e;
    return access_model(l->env->access, &admin, l->name, &e);
}

// ---- fine-tuned folders ------------------------------------------------------------

// 1 if a component of the absolute path real starts with "ft:" (a
// fine-tuned model's folder, or inside one).
static int in_ft_folder(const char *real) {
    for (const char *p = real; (p = strchr(p, '/')) != NULL;)
        if (ftjob_is_ft_name(++p)) return 1;
    return 0;
}

// 1 if the absolute path real is dir (resolved) or inside it.
static int inside(const char *real, const char *dir) {
    char *d = dir ? realpath(dir, NULL) : NULL;
    size_t n = d ? strlen(d) : 0;
    int in = d && strncmp(real, d, n) == 0 && (real[n] == '\0' || real[n] == '/' || (n == 1 && d[0] == '/'));
    free(d);
    return in;
}

// Why the folder at path belongs to fine-tuning: 0 not at all, 1 an ft:
// folder, 2 inside the data folder. *id gets the resolved folder's
// identity (dev 0 when path does not resolve: reg_open then says why).
static int finetuned_folder(const char *path, const char *data_dir, reg_stamp *id) {
    memset(id, 0, sizeof *id);
    char *real = realpath(path, NULL);
    if (!real) return 0;
    struct stat sb;
    if (stat(real, &sb) == 0) *id = (reg_stamp){.dev = sb.st_dev, .ino = sb.st_ino};
    int why = in_ft_folder(real) ? 1 : inside(real, data_dir) ? 2 : 0;
    free(real);
    return why;
}

// ---- allowed roots ------------------------------------------------------------

// 1 if the absolute path real lies inside the adapters folder or one of
// the comma-separated roots (each resolved).
static int in_roots(const char *real, const char *adapters_dir, const char *roots) {
    if (adapters_dir && inside(real, adapters_dir)) return 1;
    for (const char *p = roots; p && *p;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        char *dir = n ? strndup(p, n) : NULL;
        int in = dir && inside(real, dir);
        free(dir);
        if (in) return 1;
        p = comma ? comma + 1 : p + n;
    }
    return 0;
}

// 1 if path (a folder) and its two files resolve inside the roots.
static int confined(const lora_req *l) {
    const char *parts[] = {"", "/adapter_config.json", "/adapter_model.safetensors"};
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(l->path) + strlen(parts[i]) + 1;
        char *p = malloc(n);
        if (!p) return 0;
        snprintf(p, n, "%s%s", l->path, parts[i]);
        char *real = realpath(p, NULL);
        int missing = !real && errno == ENOENT;
        free(p);
        int in = real && in_roots(real, l->env->adapters_dir, l->env->lora_roots);
        free(real);
        // A missing file inside a confined folder: reg_open names it.
        if (!in && !(i > 0 && missing)) return 0;
    }
    return 1;
}

// 1 if both files the entry read (their real paths, from the open
// descriptors: no gap between this check and the read) lie inside the
// roots and belong to no fine-tuned model or job.
static int source_confined(const lora_req *l, const reg_entry *e) {
    if (!e->src) return 0;
    for (int i = 0; i < 2; i++) {
        const char *real = lora_source_real_path(e->src, i);
        if (!real || !in_roots(real, l->env->adapters_dir, l->env->lora_roots) || in_ft_folder(real) ||
            inside(real, l->env->data_dir))
            return 0;
    }
    return 1;
}

// ---- load and unload ------------------------------------------------------------------

// On a worker: the path is checked where it resolves, then opened as the
// client wrote it (so errors and logs show only that); the folder opened
// must be the one checked (a symlink switched in between is refused).
static void lora_load_work(uv_work_t *w) {
    lora_req *l = w->data;
    reg_stamp id;
    if (!confined(l)) {
        l->outside = 1;
        return;
    }
    if ((l->finetuned = finetuned_folder(l->path, l->env->data_dir, &id)) != 0) return;
    l->entry = reg_open(l->name, l->path, l->env->model, &l->err);
    // Checked again once read, on where the bytes really came from: a
    // symlink switched in meanwhile is refused.
    if (l->entry && !source_confined(l, l->entry)) {
        err_set(&l->err, "%s: the folder changed while it was loading", l->path);
        reg_entry_unref(l->entry);
        l->entry = NULL;
    } else if (l->entry && (l->entry->dir.dev != id.dev || l->entry->dir.ino != id.ino)) {
        err_set(&l->err, "%s: the folder changed while it was loading", l->path);
        reg_entry_unref(l->entry);
        l->entry = NULL;
    }
}

static void lora_load_done(uv_work_t *w, int status) {
    lora_req *l = w->data;
    const admin_env *env = l->env;
    api_error e;
    char msg[320];
    if (status == 0 && l->outside) {
        // The same answer whether the path exists or not: it says nothing
        // about the disk outside the roots.
        api_err_set(&e, 403, "permission_error", "lora_path", NULL,
                    "Cannot load adapter '%s': '%s' is not an adapter folder inside the allowed roots "
                    "(--adapters, --lora-roots).", l->name, l->path);
        reply_error_logged(env->requests, l->q, l->res, &e, l->tenant, NULL);
    } else if (status == 0 && l->finetuned) {
        api_err_set(&e, 403, "permission_error", "lora_path", NULL,
                    "'lora_path' %s; fine-tuned models are served only to their own tenant, as 'ft:...'.",
                    l->finetuned == 1 ? "is a fine-tuned model's folder" : "lies in the fine-tuning data folder");
        reply_error_logged(env->requests, l->q, l->res, &e, l->tenant, NULL);
    } else if (status != 0 || !l->entry) {
        api_err_set(&e, 400, "invalid_request_error", "lora_path", NULL, "Cannot load adapter '%s': %s", l->name,
                    status != 0 ? "cancelled" : l->err.msg);
        reply_error_logged(env->requests, l->q, l->res, &e, l->tenant, NULL);
    } else if (name_taken(l)) { // taken while loading
        api_err_set(&e, 400, "invalid_request_error", "lora_name", NULL,
                    "The lora adapter '%s' has already been loaded.", l->name);
        reply_error_logged(env->requests, l->q, l->res, &e, l->tenant, NULL);
    } else if (reg_set_add_runtime(env->adapters, l->entry) != 0) {
        reply_json(l->res, 500, NULL);
    } else {
        log_line("info", "registry", "loaded adapter=%s rank=%d alpha=%g modules=%d path=%s tenant=%s",
              l->entry->name, l->entry->rank, l->entry->alpha, l->entry->n_adapted, l->entry->path, l->tenant);
        l->entry = NULL;
        snprintf(msg, sizeof msg, "Success: LoRA adapter '%s' added successfully.", l->name);
        lora_reply(l, 200, msg);
    }
    lora_req_free(l);
}

static void lora_unload(lora_req *l, const tn_tenant *tn) {
    const admin_env *env = l->env;
    const reg_entry *found;
    if (!access_model(env->access, tn, l->name, &found) || !reg_set_is_runtime(env->adapters, l->name)) {
        api_error e;
        api_err_set(&e, 404, "invalid_request_error", "lora_name", "model_not_found",
                    "The lora adapter '%s' was not loaded with /v1/load_lora_adapter.", l->name);
        reply_error_logged(env->requests, l->q, l->res, &e, tn->name, NULL);
        return;
    }
    // Requests in flight hold their own reference and finish on it.
    reg_set_remove_runtime(env->adapters, l->name);
    log_line("info", "registry", "unloaded adapter=%s tenant=%s", l->name, tn->name);
    char msg[320];
    snprintf(msg, sizeof msg, "Success: LoRA adapter '%s' removed successfully.", l->name);
    lora_reply(l, 200, msg);
}

// 1 if the Authorization header is "Bearer key"; compared in time that
// does not depend on where the first difference is.
static int admin_key_ok(const char *auth, const char *key) {
    if (!auth || strncasecmp(auth, "Bearer ", 7) != 0) return 0;
    const char *got = auth + 7;
    size_t n = strlen(key), m = strlen(got);
    unsigned diff = n != m;
    for (size_t i = 0; i < n; i++) diff |= (unsigned char)key[i] ^ (unsigned char)(i < m ? got[i] : 0);
    return diff == 0;
}

void admin_lora(const admin_env *env, const http_req *q, http_res *res, const tn_tenant *tn, int load) {
    api_error e;
    if (env->open_mode && !env->admin_key) {
        api_err_set(&e, 403, "permission_error", NULL, NULL,
                    "Loading and unloading adapters is off in open mode (no --tenants); start the server with "
                    "--admin-key KEY to allow it for that key.");
        reply_error_logged(env->requests, q, res, &e, tn->name, NULL);
        return;
    }
    if (env->open_mode && !admin_key_ok(http_req_header(q, "authorization"), env->admin_key)) {
        api_err_set(&e, 403, "permission_error", NULL, NULL,
                    "Loading and unloading adapters needs the --admin-key key (Authorization: Bearer KEY).");
        reply_error_logged(env->requests, q, res, &e, tn->name, NULL);
        return;
    }
    if (!tn->admin) {
        api_err_set(&e, 403, "permission_error", NULL, NULL,
                    "Loading and unloading adapters needs an admin key (\"admin\": true in the tenants file).");
        reply_error_logged(env->requests, q, res, &e, tn->name, NULL);
        return;
    }
    lora_req *l = calloc(1, sizeof *l);
    if (!l) {
        reply_json(res, 500, NULL);
        return;
    }
    *l = (lora_req){.env = env, .q = q, .res = res};
    snprintf(l->tenant, sizeof l->tenant, "%s", tn->name);
    if (parse_lora_body(q, load, &l->name, &l->path, &e) != 0) {
        reply_error_logged(env->requests, q, res, &e, tn->name, NULL);
        lora_req_free(l);
        return;
    }
    if (!load) {
        lora_unload(l, tn);
        lora_req_free(l);
        return;
    }
    if (name_taken(l)) {
        api_err_set(&e, 400, "invalid_request_error", "lora_name", NULL,
                    "The lora adapter '%s' has already been loaded.", l->name);
        reply_error_logged(env->requests, q, res, &e, tn->name, NULL);
        lora_req_free(l);
        return;
    }
    l->work.data = l;
    if (uv_queue_work(env->loop, &l->work, lora_load_work, lora_load_done) != 0) {
        reply_json(res, 500, NULL);
        lora_req_free(l);
    }
}
