// ftjob_state: a fine-tuning job's record: its JSON, its events, the job
// list and the state file. See ftjob_state.h.
#include "ftjob_state.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "util.h"

const char *const ftjob_status_names[ST_COUNT] = {"validating_files", "queued", "running",
                                                  "succeeded", "failed", "cancelled"};

void ftstate_set_error(ftjob *j, const char *code, const char *param, const char *fmt, ...) {
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    free(j->err_msg);
    j->err_msg = strdup(msg);
    snprintf(j->err_code, sizeof j->err_code, "%s", code);
    snprintf(j->err_param, sizeof j->err_param, "%s", param ? param : "");
}

// ---- events ---------------------------------------------------------------------------

void ftstate_event(ftjob *j, const char *level, cJSON *data, const char *fmt, ...) {
    char msg[1024], id[40];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    files_new_id("ftevent-", id, sizeof id);
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "object", "fine_tuning.job.event");
    cJSON_AddStringToObject(e, "id", id);
    cJSON_AddNumberToObject(e, "created_at", (double)time(NULL));
    cJSON_AddStringToObject(e, "level", level);
    cJSON_AddStringToObject(e, "message", msg);
    cJSON_AddStringToObject(e, "type", data ? "metrics" : "message");
    cJSON_AddItemToObject(e, "data", data ? data : cJSON_CreateObject());
    cJSON_AddItemToArray(j->events, e);
    if (cJSON_GetArraySize(j->events) > FT_MAX_EVENTS) cJSON_DeleteItemFromArray(j->events, 1); // keep the first
}

// ---- JSON: the API object and the state file ------------------------------------------------

static cJSON *hp_object(const ftjob *j) {
    cJSON *h = cJSON_CreateObject();
    if (j->resolved) {
        cJSON_AddNumberToObject(h, "n_epochs", j->n_epochs);
        cJSON_AddNumberToObject(h, "batch_size", j->batch_size);
        cJSON_AddNumberToObject(h, "learning_rate_multiplier", j->lr_mult);
        return h;
    }
    if (j->req_epochs < 0) cJSON_AddStringToObject(h, "n_epochs", "auto");
    else cJSON_AddNumberToObject(h, "n_epochs", j->req_epochs);
    if (j->req_batch < 0) cJSON_AddStringToObject(h, "batch_size", "auto");
    else cJSON_AddNumberToObject(h, "batch_size", j->req_batch);
    if (j->req_lr < 0) cJSON_AddStringToObject(h, "learning_rate_multiplier", "auto");
    else cJSON_AddNumberToObject(h, "learning_rate_multiplier", j->req_lr);
    return h;
}

static void add_str_or_null(cJSON *o, const char *k, const char *v) {
    if (v && *v) cJSON_AddStringToObject(o, k, v);
    else cJSON_AddNullToObject(o, k);
}

cJSON *ftstate_job_object(const ftjob *j) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "fine_tuning.job");
    cJSON_AddStringToObject(o, "id", j->id);
    cJSON_AddStringToObject(o, "model", j->model);
    cJSON_AddNumberToObject(o, "created_at", (double)j->created_at);
    if (j->finished_at) cJSON_AddNumberToObject(o, "finished_at", (double)j->finished_at);
    else cJSON_AddNullToObject(o, "finished_at");
    add_str_or_null(o, "fine_tuned_model", j->has_model ? j->name : NULL);
    cJSON_AddStringToObject(o, "organization_id", j->tenant);
    cJSON_AddItemToObject(o, "result_files", cJSON_CreateArray());
    cJSON_AddStringToObject(o, "status", ftjob_status_names[j->status]);
    add_str_or_null(o, "validation_file", j->validation_file);
    cJSON_AddStringToObject(o, "training_file", j->training_file);
    cJSON_AddItemToObject(o, "hyperparameters", hp_object(j));
    if (j->status == ST_SUCCEEDED) cJSON_AddNumberToObject(o, "trained_tokens", (double)j->trained_tokens);
    else cJSON_AddNullToObject(o, "trained_tokens");
    if (j->err_msg) {
        cJSON *e = cJSON_AddObjectToObject(o, "error");
        cJSON_AddStringToObject(e, "code", j->err_code);
        cJSON_AddStringToObject(e, "message", j->err_msg);
        add_str_or_null(e, "param", j->err_param);
    } else {
        cJSON_AddNullToObject(o, "error");
    }
    add_str_or_null(o, "user_provided_suffix", j->has_suffix ? j->suffix : NULL);
    cJSON_AddNumberToObject(o, "seed", (double)j->seed);
    cJSON_AddNullToObject(o, "estimated_finish");
    cJSON_AddItemToObject(o, "integrations", cJSON_CreateArray());
    if (j->metadata) cJSON_AddItemToObject(o, "metadata", cJSON_Duplicate(j->metadata, 1));
    else cJSON_AddNullToObject(o, "metadata");
    cJSON *m = cJSON_AddObjectToObject(o, "method");
    cJSON_AddStringToObject(m, "type", "supervised");
    cJSON_AddItemToObject(cJSON_AddObjectToObject(m, "supervised"), "hyperparameters", hp_object(j));
    return o;
}

// The state file: the API object plus what only the runner needs.
static char *state_json(const ftjob *j) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "job", ftstate_job_object(j));
    cJSON_AddStringToObject(o, "tenant", j->tenant);
    cJSON_AddStringToObject(o, "name", j->name);
    cJSON_AddNumberToObject(o, "req_epochs", j->req_epochs);
    cJSON_AddNumberToObject(o, "req_batch", j->req_batch);
    cJSON_AddNumberToObject(o, "req_lr", j->req_lr);
    cJSON_AddBoolToObject(o, "resolved", j->resolved);
    cJSON_AddNumberToObject(o, "n_train", (double)j->n_train);
    cJSON_AddNumberToObject(o, "tokens", (double)j->tokens);
    cJSON_AddNumberToObject(o, "step", (double)j->step);
    cJSON_AddNumberToObject(o, "total_steps", (double)j->total_steps);
    cJSON_AddNumberToObject(o, "pid", (double)j->pid);
    cJSON_AddNumberToObject(o, "created_us", (double)j->created_us);
    cJSON_AddItemToObject(o, "events", cJSON_Duplicate(j->events, 1));
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

// The JSON is made on the loop thread (it reads the job); the statefile
// writes it on the thread pool. Before the loop runs (opening) nothing
// would carry a queued write to its end, so it is written at once.
void ftstate_persist(ftjob *j) {
    char *s = state_json(j);
    if (j->st->opening) statefile_put_sync(j->state, s);
    else statefile_put(j->state, s);
    j->persisted_us = files_now_us();
    j->persisted_step = j->step;
}

// Training progress is recorded at most every FTJOB_PROGRESS_PERSIST_US
// (and at the first step): each record is the whole state with its events,
// and a small model logs many steps a second. After a crash a running job
// is failed anyway; the events of its last seconds are all that the
// throttle can lose.
#define FTJOB_PROGRESS_PERSIST_US 2000000
void ftstate_persist_progress(ftjob *j) {
    if (j->persisted_step < 1 || files_now_us() - j->persisted_us >= FTJOB_PROGRESS_PERSIST_US) ftstate_persist(j);
}

static double num_field(const cJSON *o, const char *k, double def) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : def;
}

static const char *str_field(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

const char *ftstate_str_field(const cJSON *o, const char *k) { return str_field(o, k); }

static void copy_field(const cJSON *o, const char *k, char *out, size_t n) {
    const char *v = str_field(o, k);
    snprintf(out, n, "%s", v ? v : "");
}

// Fills j from a state file's text. Returns 0 or -1 (not a job state).
static int state_parse(ftjob *j, const char *text) {
    cJSON *o = cJSON_Parse(text);
    const cJSON *jo = cJSON_GetObjectItemCaseSensitive(o, "job");
    const char *id = str_field(jo, "id"), *status = str_field(jo, "status"), *tenant = str_field(o, "tenant");
    int st = -1;
    for (int i = 0; status && i < ST_COUNT; i++)
        if (strcmp(status, ftjob_status_names[i]) == 0) st = i;
    if (!cJSON_IsObject(jo) || !id || st < 0 || !tenant || strcmp(id, j->id) != 0) {
        cJSON_Delete(o);
        return -1;
    }
    j->status = st;
    snprintf(j->tenant, sizeof j->tenant, "%s", tenant);
    copy_field(o, "name", j->name, sizeof j->name);
    copy_field(jo, "model", j->model, sizeof j->model);
    copy_field(jo, "training_file", j->training_file, sizeof j->training_file);
    copy_field(jo, "validation_file", j->validation_file, sizeof j->validation_file);
    j->has_suffix = str_field(jo, "user_provided_suffix") != NULL;
    copy_field(jo, "user_provided_suffix", j->suffix, sizeof j->suffix);
    j->has_model = str_field(jo, "fine_tuned_model") != NULL;
    j->created_at = (int64_t)num_field(jo, "created_at", 0);
    j->finished_at = (int64_t)num_field(jo, "finished_at", 0);
    j->seed = (int64_t)num_field(jo, "seed", 0);
    j->trained_tokens = (int64_t)num_field(jo, "trained_tokens", 0);
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(jo, "error");
    if (cJSON_IsObject(err) && str_field(err, "message"))
        ftstate_set_error(j, str_field(err, "code") ? str_field(err, "code") : "error", str_field(err, "param"), "%s",
                  str_field(err, "message"));
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(jo, "metadata");
    if (cJSON_IsObject(md)) j->metadata = cJSON_Duplicate(md, 1);
    j->req_epochs = (int)num_field(o, "req_epochs", -1);
    j->req_batch = (int)num_field(o, "req_batch", -1);
    j->req_lr = num_field(o, "req_lr", -1);
    j->resolved = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "resolved"));
    const cJSON *hp = cJSON_GetObjectItemCaseSensitive(jo, "hyperparameters");
    j->n_epochs = (int)num_field(hp, "n_epochs", 1);
    j->batch_size = (int)num_field(hp, "batch_size", 1);
    j->lr_mult = num_field(hp, "learning_rate_multiplier", 1);
    j->n_train = (int64_t)num_field(o, "n_train", 0);
    j->tokens = (int64_t)num_field(o, "tokens", 0);
    j->step = (int64_t)num_field(o, "step", 0);
    j->total_steps = (int64_t)num_field(o, "total_steps", 0);
    j->pid = (long)num_field(o, "pid", 0);
    j->created_us = (int64_t)num_field(o, "created_us", (double)j->created_at * 1e6);
    cJSON *ev = cJSON_GetObjectItemCaseSensitive(o, "events");
    if (cJSON_IsArray(ev)) {
        cJSON_Delete(j->events);
        j->events = cJSON_DetachItemViaPointer(o, ev);
    }
    cJSON_Delete(o);
    return 0;
}

// ---- the job list -------------------------------------------------------------------------

ftjob *ftstate_job_new(ftjob_store *st, const char *id) {
    ftjob *j = calloc(1, sizeof *j);
    char name[96], what[64];
    if (!j) return NULL;
    j->st = st;
    snprintf(j->id, sizeof j->id, "%s", id);
    snprintf(name, sizeof name, "%s.json", id);
    snprintf(what, sizeof what, "job=%s", id);
    char *state_path = util_path_join(st->jobs_dir, name);
    j->state = state_path ? statefile_new(st->host.env.loop, state_path, "ftjobs", what) : NULL;
    free(state_path);
    snprintf(name, sizeof name, "%s.work", id);
    j->work_dir = util_path_join(st->jobs_dir, name);
    j->events = cJSON_CreateArray();
    j->req_epochs = j->req_batch = -1;
    j->req_lr = -1;
    if (!j->state || !j->work_dir || !j->events) {
        ftstate_job_free(j);
        return NULL;
    }
    return j;
}

void ftstate_job_free(ftjob *j) {
    free(j->err_msg);
    statefile_free(j->state);
    free(j->work_dir);
    cJSON_Delete(j->metadata);
    cJSON_Delete(j->events);
    free(j);
}

int ftstate_insert(ftjob_store *st, ftjob *j) { return store_insert(&st->jobs, j, j->id, j->created_us); }

ftjob *ftstate_find(const ftjob_store *st, const char *id, const char *tenant) {
    int i = store_index(&st->jobs, id);
    ftjob *j = i >= 0 ? ftstate_at(st, i) : NULL;
    return j && strcmp(j->tenant, tenant) == 0 ? j : NULL;
}

const char *ftjob_model_owner(const ftjob_store *st, const char *name) {
    for (int i = 0; st && i < ftstate_count(st); i++) {
        const ftjob *j = ftstate_at(st, i);
        if (j->status == ST_SUCCEEDED && strcmp(j->name, name) == 0) return j->tenant;
    }
    return NULL;
}

// ---- loading -------------------------------------------------------------------------------

int ftstate_load(ftjob_store *st, err_t *err) {
    DIR *d = opendir(st->jobs_dir);
    if (!d) return err_set(err, "%s: %s", st->jobs_dir, strerror(errno));
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *nm = de->d_name;
        size_t len = strlen(nm);
        char *path = util_path_join(st->jobs_dir, nm);
        if (!path) break;
        if (strncmp(nm, "ftjob-", 6) == 0 && len > 11 && strcmp(nm + len - 5, ".json") == 0 && len - 5 < 40) {
            char id[40];
            snprintf(id, sizeof id, "%.*s", (int)(len - 5), nm);
            ftjob *j = ftstate_job_new(st, id);
            char *text = j ? util_read_file(path, NULL, err) : NULL;
            if (!j || !text || state_parse(j, text) != 0 || ftstate_insert(st, j) != 0) {
                log_line("warn", "ftjobs", "ignored a job state that cannot be read path=%s", path);
                if (j) ftstate_job_free(j);
            }
            free(text);
        } else if (strstr(nm, ".tmp.") || (len > 5 && strcmp(nm + len - 5, ".work") == 0)) {
            util_rm_rf(path); // a crash's temp file or a work folder (no job runs yet)
        }
        free(path);
    }
    closedir(d);
    return 0;
}

