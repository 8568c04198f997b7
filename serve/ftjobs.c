// ftjobs: the fine-tuning jobs API's routes. See ftjobs.h for the
// behaviour and ftjob_int.h for the modules behind them: the job's record
// and state file (ftjob_state.c), its train child (ftjob_run.c) and its
// life (ftjob_life.c).
#include "ftjobs.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "ftjob_int.h"
#include "ftjob_life.h"
#include "ftjob_state.h"
#include "log.h"
#include "reply.h"

int ftjob_is_ft_name(const char *name) { return strncmp(name, "ft:", 3) == 0; }

// Copies s into out keeping [A-Za-z0-9._-]; other bytes become '-'.
static void sanitize(const char *s, char *out, size_t n) {
    size_t k = 0;
    for (; *s && k + 1 < n; s++) out[k++] = isalnum((unsigned char)*s) || strchr("._-", *s) ? *s : '-';
    out[k] = '\0';
}

// ---- POST /v1/fine_tuning/jobs ------------------------------------------------------------------

// Reads one hyperparameter: absent/null/"auto" -> -1, else a number in
// [lo, hi] (an integer when integral). Returns 0 or -1 + e.
static int read_hp(const cJSON *h, const char *k, double lo, double hi, int integral, double *out, api_error *e) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(h, k);
    *out = -1;
    if (!v || cJSON_IsNull(v) || (cJSON_IsString(v) && strcmp(v->valuestring, "auto") == 0)) return 0;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < lo || v->valuedouble > hi ||
        (integral && v->valuedouble != floor(v->valuedouble)))
        return api_err_invalid(e, k, "Invalid '%s': expected \"auto\" or %s from %g to %g.", k,
                               integral ? "an integer" : "a number", lo, hi);
    *out = v->valuedouble;
    return 0;
}

// The hyperparameters object, from hyperparameters or method.supervised.
static int read_method(const cJSON *o, const cJSON **hp, api_error *e) {
    const cJSON *top = cJSON_GetObjectItemCaseSensitive(o, "hyperparameters");
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(o, "method");
    *hp = cJSON_IsObject(top) ? top : NULL;
    if (top && !cJSON_IsNull(top) && !cJSON_IsObject(top))
        return api_err_invalid(e, "hyperparameters", "Invalid 'hyperparameters': expected an object.");
    if (!m || cJSON_IsNull(m)) return 0;
    const char *type = ftstate_str_field(m, "type");
    if (!cJSON_IsObject(m) || !type)
        return api_err_invalid(e, "method", "Invalid 'method': expected an object with a 'type'.");
    if (strcmp(type, "supervised") != 0)
        return api_err_invalid(e, "method.type", "Invalid 'method.type': '%s'. This server supports 'supervised' "
                               "fine-tuning only.", type);
    const cJSON *sup = cJSON_GetObjectItemCaseSensitive(m, "supervised");
    const cJSON *mh = cJSON_IsObject(sup) ? cJSON_GetObjectItemCaseSensitive(sup, "hyperparameters") : NULL;
    if (cJSON_IsObject(mh)) {
        if (*hp) return api_err_invalid(e, "hyperparameters", "Give 'hyperparameters' or "
                                        "'method.supervised.hyperparameters', not both.");
        *hp = mh;
    }
    return 0;
}

// A file id field naming one of the tenant's fine-tune files.
static int read_file_id(ftjob_store *st, const cJSON *o, const char *k, const char *tenant, int required, char *out,
                        size_t n, api_error *e) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!v || cJSON_IsNull(v)) {
        out[0] = '\0';
        return required ? api_err_invalid(e, k, "Missing required parameter: '%s'.", k) : 0;
    }
    if (!cJSON_IsString(v)) return api_err_invalid(e, k, "Invalid '%s': expected a file id.", k);
    const files_rec *r = files_get(st->files, v->valuestring, tenant);
    if (!r || strlen(v->valuestring) >= n) return api_err_invalid(e, k, "invalid %s: %.80s", k, v->valuestring);
    if (strcmp(r->purpose, "fine-tune") != 0)
        return api_err_invalid(e, k, "invalid %s: %s was not uploaded with purpose 'fine-tune'", k, r->id);
    snprintf(out, n, "%s", r->id);
    return 0;
}

static int read_suffix_seed_meta(const cJSON *o, ftjob *j, api_error *e) {
    const cJSON *sx = cJSON_GetObjectItemCaseSensitive(o, "suffix");
    if (sx && !cJSON_IsNull(sx)) {
        const char *s = cJSON_IsString(sx) ? sx->valuestring : NULL;
        size_t n = s ? strlen(s) : 0;
        int ok = s && n >= 1 && n <= 40;
        for (size_t i = 0; ok && i < n; i++) ok = isalnum((unsigned char)s[i]) || strchr("._-", s[i]);
        if (!ok) return api_err_invalid(e, "suffix", "Invalid 'suffix': expected 1 to 40 characters of A-Z a-z 0-9 . _ -.");
        snprintf(j->suffix, sizeof j->suffix, "%s", s);
        j->has_suffix = 1;
    }
    const cJSON *sd = cJSON_GetObjectItemCaseSensitive(o, "seed");
    if (sd && !cJSON_IsNull(sd)) {
        if (!cJSON_IsNumber(sd) || sd->valuedouble != floor(sd->valuedouble) || sd->valuedouble < 0 ||
            sd->valuedouble > 2147483647.0)
            return api_err_invalid(e, "seed", "Invalid 'seed': expected an integer from 0 to 2147483647.");
        j->seed = (int64_t)sd->valuedouble;
    } else {
        char id[40];
        files_new_id("", id, sizeof id);
        j->seed = (int64_t)(strtoull(id + 16, NULL, 16) & 0x7fffffff);
    }
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(o, "metadata");
    if (md && !cJSON_IsNull(md)) {
        int n = 0, ok = cJSON_IsObject(md);
        for (const cJSON *it = ok ? md->child : NULL; it; it = it->next, n++)
            ok = ok && cJSON_IsString(it) && strlen(it->string) <= 64 && strlen(it->valuestring) <= 512;
        if (!ok || n > 16)
            return api_err_invalid(e, "metadata", "Invalid 'metadata': expected at most 16 string values (keys up to "
                                   "64 characters, values up to 512).");
        j->metadata = cJSON_Duplicate(md, 1);
    }
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(o, "integrations");
    if (in && !cJSON_IsNull(in) && (!cJSON_IsArray(in) || cJSON_GetArraySize(in) > 0))
        return api_err_invalid(e, "integrations", "This server does not support integrations.");
    return 0;
}

// Fills j from a create request (ftjob_int.h). Returns 0 or -1 + e.
int ftjob_parse_create(ftjob_store *st, const http_req *q, const char *tenant, int base_allowed, ftjob *j,
                       api_error *e) {
    cJSON *o = cJSON_ParseWithLength(q->body ? q->body : "", q->body_len);
    int rc = 0;
    const cJSON *hp = NULL;
    const char *model = ftstate_str_field(o, "model");
    double ep = -1, bs = -1, lr = -1;
    if (!cJSON_IsObject(o)) rc = api_err_invalid(e, NULL, "The body must be a JSON object.");
    else if (!model) rc = api_err_invalid(e, "model", "Missing required parameter: 'model'.");
    else if (strcmp(model, st->base_id) != 0 || !base_allowed)
        rc = api_err_set(e, 400, "invalid_request_error", "model", "model_not_available",
                         "Model %.200s is not available for fine-tuning or does not exist. This server fine-tunes "
                         "'%s'.", model, base_allowed ? st->base_id : "no model for this key");
    if (rc == 0) rc = read_file_id(st, o, "training_file", tenant, 1, j->training_file, sizeof j->training_file, e);
    if (rc == 0)
        rc = read_file_id(st, o, "validation_file", tenant, 0, j->validation_file, sizeof j->validation_file, e);
    if (rc == 0) rc = read_method(o, &hp, e);
    if (rc == 0) rc = read_hp(hp, "n_epochs", 1, 100, 1, &ep, e);
    if (rc == 0) rc = read_hp(hp, "batch_size", 1, 256, 1, &bs, e);
    if (rc == 0) rc = read_hp(hp, "learning_rate_multiplier", 1e-6, 1000, 0, &lr, e);
    if (rc == 0) rc = read_suffix_seed_meta(o, j, e);
    if (rc == 0) {
        snprintf(j->model, sizeof j->model, "%s", model);
        j->req_epochs = (int)ep;
        j->req_batch = (int)bs;
        j->req_lr = lr;
    }
    cJSON_Delete(o);
    return rc;
}

static void reply_job(ftjob_store *st, const http_req *q, http_res *res, const ftjob *j, const char *tenant) {
    cJSON *o = ftstate_job_object(j);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    reply_json_logged(st->host.env.requests, q, res, 200, s, tenant, NULL);
}

static void route_create(ftjob_store *st, const http_req *q, http_res *res, const char *tenant, int base_allowed) {
    char id[40];
    api_error e;
    files_new_id("ftjob-", id, sizeof id);
    ftjob *j = ftstate_job_new(st, id);
    if (!j) {
        reply_json_logged(st->host.env.requests, q, res, 500, NULL, tenant, NULL);
        return;
    }
    snprintf(j->tenant, sizeof j->tenant, "%s", tenant);
    if (ftjob_parse_create(st, q, tenant, base_allowed, j, &e) != 0) {
        ftstate_job_free(j);
        reply_error_logged(st->host.env.requests, q, res, &e, tenant, NULL);
        return;
    }
    char base[80], tn[80];
    sanitize(st->base_id, base, sizeof base);
    sanitize(tenant, tn, sizeof tn);
    snprintf(j->name, sizeof j->name, "ft:%s:%s:%s:%s", base, tn, j->has_suffix ? j->suffix : "", j->id);
    j->created_us = files_now_us();
    j->created_at = j->created_us / 1000000;
    j->status = ST_VALIDATING;
    if (ftstate_insert(st, j) != 0) {
        ftstate_job_free(j);
        reply_json_logged(st->host.env.requests, q, res, 500, NULL, tenant, NULL);
        return;
    }
    ftstate_event(j, "info", NULL, "Created fine-tuning job: %s", j->id);
    ftstate_persist(j);
    log_line("info", "ftjobs", "job created job=%s tenant=%s training_file=%s model=%s", j->id, tenant,
             j->training_file, j->name);
    reply_job(st, q, res, j, tenant);
    ftlife_pump(st);
}

// ---- GET routes, cancel ------------------------------------------------------------------------

// {"object":"list","data":data,"has_more":more}, taking data.
static char *list_json(cJSON *data, int more) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "list");
    cJSON_AddItemToObject(o, "data", data);
    cJSON_AddBoolToObject(o, "has_more", more);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

// A list page of items (newest first is the caller's order), starting
// after the item whose "id" is after (unknown: an empty page).
static char *page_json(cJSON **items, int n, const char *after, int limit) {
    cJSON *data = cJSON_CreateArray();
    int start = 0, more = 0, k = 0;
    if (after[0]) {
        start = n; // an unknown cursor: an empty page
        for (int i = 0; i < n; i++)
            if (strcmp(ftstate_str_field(items[i], "id"), after) == 0) start = i + 1;
    }
    for (int i = start; i < n; i++) {
        if (k == limit) {
            more = 1;
            break;
        }
        cJSON_AddItemReferenceToArray(data, items[i]);
        k++;
    }
    return list_json(data, more);
}

// The jobs a list shows: the tenant's.
typedef struct list_page {
    const char *tenant;
    cJSON *data;
} list_page;

static int list_keep(const void *rec, void *arg) {
    return strcmp(((const ftjob *)rec)->tenant, ((list_page *)arg)->tenant) == 0;
}

static void list_emit(void *rec, void *arg) {
    cJSON_AddItemToArray(((list_page *)arg)->data, ftstate_job_object(rec));
}

static void route_list(ftjob_store *st, const http_req *q, http_res *res, const char *tenant) {
    api_error e;
    int limit;
    char after[64];
    if (files_query_page(q->query, 20, 100, &limit, after, sizeof after, &e) != 0) {
        reply_error_logged(st->host.env.requests, q, res, &e, tenant, NULL);
        return;
    }
    cJSON *data = cJSON_CreateArray();
    list_page pg = {.tenant = tenant, .data = data};
    int more = store_page(&st->jobs, 1, after, limit, list_keep, list_emit, &pg);
    reply_json_logged(st->host.env.requests, q, res, 200, list_json(data, more), tenant, NULL);
}

static void route_events(ftjob_store *st, const http_req *q, http_res *res, const ftjob *j, const char *tenant) {
    api_error e;
    int limit;
    char after[64];
    if (files_query_page(q->query, 20, 1000, &limit, after, sizeof after, &e) != 0) {
        reply_error_logged(st->host.env.requests, q, res, &e, tenant, NULL);
        return;
    }
    int n = cJSON_GetArraySize(j->events);
    cJSON **items = calloc((size_t)n + 1, sizeof *items);
    int k = 0;
    for (cJSON *ev = j->events->child; items && ev; ev = ev->next) items[n - 1 - k++] = ev; // newest first
    reply_json_logged(st->host.env.requests, q, res, 200, items ? page_json(items, n, after, limit) : NULL, tenant, NULL);
    free(items);
}

// The final checkpoint of a succeeded job (the published adapter).
static void route_checkpoints(ftjob_store *st, const http_req *q, http_res *res, const ftjob *j, const char *tenant) {
    api_error e;
    int limit;
    char after[64];
    if (files_query_page(q->query, 10, 100, &limit, after, sizeof after, &e) != 0) {
        reply_error_logged(st->host.env.requests, q, res, &e, tenant, NULL);
        return;
    }
    cJSON *c = NULL;
    if (j->status == ST_SUCCEEDED) {
        c = cJSON_CreateObject();
        char id[64];
        snprintf(id, sizeof id, "ftckpt-%s", j->id + 6);
        cJSON_AddStringToObject(c, "object", "fine_tuning.job.checkpoint");
        cJSON_AddStringToObject(c, "id", id);
        cJSON_AddNumberToObject(c, "created_at", (double)j->finished_at);
        cJSON_AddStringToObject(c, "fine_tuned_model_checkpoint", j->name);
        cJSON_AddNumberToObject(c, "step_number", (double)j->step);
        cJSON_AddStringToObject(c, "fine_tuning_job_id", j->id);
        cJSON *m = cJSON_AddObjectToObject(c, "metrics");
        cJSON_AddNumberToObject(m, "step", (double)j->step);
        cJSON_AddNumberToObject(m, "train_loss", j->last_loss);
    }
    cJSON *items[1] = {c};
    reply_json_logged(st->host.env.requests, q, res, 200, page_json(items, c ? 1 : 0, after, limit), tenant, NULL);
    cJSON_Delete(c);
}

static void not_found(ftjob_store *st, const http_req *q, http_res *res, const char *tenant, const char *id) {
    api_error e;
    if (id)
        api_err_set(&e, 404, "invalid_request_error", "fine_tuning_job_id", "fine_tuning_job_not_found",
                    "No fine-tuning job found with id '%.64s'.", id);
    else
        api_err_set(&e, 404, "invalid_request_error", NULL, NULL, "Invalid URL (%s %s)", q->method, q->path);
    reply_error_logged(st->host.env.requests, q, res, &e, tenant, NULL);
}

static void method_not_allowed(ftjob_store *st, const http_req *q, http_res *res, const char *tenant, const char *allow) {
    api_error e;
    http_res_header(res, "Allow", allow);
    api_err_set(&e, 405, "invalid_request_error", NULL, NULL, "Method %s is not allowed for %s; use %s.", q->method,
                q->path, allow);
    reply_error_logged(st->host.env.requests, q, res, &e, tenant, NULL);
}

void ftjob_handle(ftjob_store *st, const http_req *q, http_res *res, const char *tenant, int base_allowed) {
    static const char prefix[] = "/v1/fine_tuning/jobs";
    int get = strcmp(q->method, "GET") == 0, post = strcmp(q->method, "POST") == 0;
    if (strncmp(q->path, prefix, sizeof prefix - 1) != 0) {
        not_found(st, q, res, tenant, NULL);
        return;
    }
    const char *p = q->path + sizeof prefix - 1;
    if (*p == '\0' || strcmp(p, "/") == 0) {
        if (post) route_create(st, q, res, tenant, base_allowed);
        else if (get) route_list(st, q, res, tenant);
        else method_not_allowed(st, q, res, tenant, "GET, POST");
        return;
    }
    char id[64];
    const char *slash = *p == '/' ? strchr(p + 1, '/') : NULL;
    size_t n = slash ? (size_t)(slash - p - 1) : strlen(p + 1);
    const char *sub = slash ? slash + 1 : "";
    int known = !*sub || strcmp(sub, "cancel") == 0 || strcmp(sub, "events") == 0 || strcmp(sub, "checkpoints") == 0;
    if (*p != '/' || n == 0 || n >= sizeof id || !known) {
        not_found(st, q, res, tenant, NULL);
        return;
    }
    memcpy(id, p + 1, n);
    id[n] = '\0';
    http_url_decode(id);
    int want_post = strcmp(sub, "cancel") == 0;
    if (want_post ? !post : !get) {
        method_not_allowed(st, q, res, tenant, want_post ? "POST" : "GET");
        return;
    }
    ftjob *j = ftstate_find(st, id, tenant);
    if (!j) {
        not_found(st, q, res, tenant, id);
    } else if (!*sub) {
        reply_job(st, q, res, j, tenant);
    } else if (strcmp(sub, "events") == 0) {
        route_events(st, q, res, j, tenant);
    } else if (strcmp(sub, "checkpoints") == 0) {
        route_checkpoints(st, q, res, j, tenant);
    } else if (ftlife_cancel(j) != 0) {
        api_error e;
        api_err_invalid(&e, NULL, "Job %s has already finished with status '%s'; it cannot be cancelled.", j->id,
                        ftjob_status_names[j->status]);
        reply_error_logged(st->host.env.requests, q, res, &e, tenant, NULL);
    } else {
        reply_job(st, q, res, j, tenant);
        ftlife_pump(st);
    }
}
