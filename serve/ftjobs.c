// ftjobs: fine-tuning jobs: the API, the persisted state, and the train
// children. See ftjobs.h for the behaviour; this file is in four parts:
// the job record and its JSON (API object and state file), the train
// children (spawn, output lines, exit), the job life (validate, queue,
// run, publish, cancel, restart), and the routes.
#include "ftjobs.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "log.h"
#include "reply.h"
#include "util.h"

#define FT_DEFAULT_BASE_LR 2e-4
#define FT_MAX_EVENTS 1000     // kept per job (the oldest metrics go first)
#define FT_REPORT_MAX (256u << 10)
#define FT_ERRTAIL_MAX 2048
#define FT_BAD_LISTED 20       // bad lines named in a job's error message
#define FT_TAIL_MS 200         // how often a training's metrics file is read

enum { ST_VALIDATING, ST_QUEUED, ST_RUNNING, ST_SUCCEEDED, ST_FAILED, ST_CANCELLED, ST_COUNT };
static const char *const status_names[ST_COUNT] = {"validating_files", "queued", "running",
                                                   "succeeded", "failed", "cancelled"};

typedef struct child child;
typedef struct ftjob ftjob;

struct ftjob {
    ftjob_store *st;
    char id[40];
    char tenant[64];
    char model[256];
    char training_file[64], validation_file[64]; // "" = none
    char suffix[48];
    int has_suffix;
    int64_t seed;
    int64_t created_at, finished_at;             // finished_at 0 = null
    int64_t created_us;                          // creation order (files_now_us)
    int status;
    char name[512];                              // ft:... (the adapter folder and model id)
    int has_model;                               // fine_tuned_model set (succeeded)
    char err_code[48], err_param[32];
    char *err_msg;                               // NULL = no error
    int req_epochs, req_batch;                   // < 0: "auto"
    double req_lr;
    int resolved, n_epochs, batch_size;          // after validation
    double lr_mult;
    int64_t n_train, tokens, trained_tokens;
    int64_t step, total_steps;
    double last_loss;
    long pid;                                    // the train child's, while running
    cJSON *metadata;                             // object or NULL
    cJSON *events;                               // array, oldest first
    char *state_path, *work_dir;
    child *child;
    int publishing;                              // adapter moved, waiting for the registry
    int64_t persisted_us, persisted_step;        // when the state file was last written, at what step
};

struct ftjob_store {
    ftjob_config cfg;
    char *data_dir, *adapters_dir, *model_dir, *base_id, *train_bin, *jobs_dir;
    ftjob_host host;
    files_store *files;
    ftjob **jobs; // creation order
    int n, cap;
    int validating; // a validation child is running
    int stopping;
};

// ---- small helpers ----------------------------------------------------------------------

static void jlog(const ftjob_store *st, const char *level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void jlog(const ftjob_store *st, const char *level, const char *fmt, ...) {
    (void)st;
    va_list ap;
    va_start(ap, fmt);
    log_vline(level, "ftjobs", fmt, ap);
    va_end(ap);
}

int ftjob_is_ft_name(const char *name) { return strncmp(name, "ft:", 3) == 0; }

static int terminal(int status) { return status >= ST_SUCCEEDED; }

// Copies s into out keeping [A-Za-z0-9._-]; other bytes become '-'.
static void sanitize(const char *s, char *out, size_t n) {
    size_t k = 0;
    for (; *s && k + 1 < n; s++) out[k++] = isalnum((unsigned char)*s) || strchr("._-", *s) ? *s : '-';
    out[k] = '\0';
}

void ftjob_resolve_auto(int n_train, int *n_epochs, int *batch_size, double *lr_mult) {
    if (n_train < 1) n_train = 1;
    if (*n_epochs < 0) {
        int want = (300 + n_train - 1) / n_train;
        *n_epochs = want < 3 ? 3 : want > 25 ? 25 : want;
    }
    if (*batch_size < 0) {
        int b = n_train / 100;
        *batch_size = b < 1 ? 1 : b > 8 ? 8 : b;
    }
    if (*lr_mult < 0) *lr_mult = 1;
}

static void set_error(ftjob *j, const char *code, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void set_error(ftjob *j, const char *code, const char *param, const char *fmt, ...) {
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

// Appends an event (data: an object, owned by the event; NULL = {}).
static void add_event(ftjob *j, const char *level, cJSON *data, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void add_event(ftjob *j, const char *level, cJSON *data, const char *fmt, ...) {
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

// OpenAI's fine_tuning.job object.
static cJSON *job_object(const ftjob *j) {
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
    cJSON_AddStringToObject(o, "status", status_names[j->status]);
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
    cJSON_AddItemToObject(o, "job", job_object(j));
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

static void persist(ftjob *j) {
    char *s = state_json(j);
    err_t e = {{0}};
    if (!s || util_write_file_atomic(j->state_path, s, strlen(s), &e) != 0)
        jlog(j->st, "error", "cannot record job=%s error=%s", j->id, s ? e.msg : "out of memory");
    free(s);
    j->persisted_us = files_now_us();
    j->persisted_step = j->step;
}

// Training progress is written at most every FTJOB_PROGRESS_PERSIST_US (and
// at the first step): persist() rewrites the whole state with its events
// and fsyncs, on the loop thread, and a small model logs many steps a
// second. After a crash a running job is failed anyway; the events of its
// last seconds are all that the throttle can lose.
#define FTJOB_PROGRESS_PERSIST_US 2000000
static void persist_progress(ftjob *j) {
    if (j->persisted_step < 1 || files_now_us() - j->persisted_us >= FTJOB_PROGRESS_PERSIST_US) persist(j);
}

static double num_field(const cJSON *o, const char *k, double def) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : def;
}

static const char *str_field(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

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
        if (strcmp(status, status_names[i]) == 0) st = i;
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
        set_error(j, str_field(err, "code") ? str_field(err, "code") : "error", str_field(err, "param"), "%s",
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

static ftjob *job_new(ftjob_store *st, const char *id) {
    ftjob *j = calloc(1, sizeof *j);
    char name[96];
    if (!j) return NULL;
    j->st = st;
    snprintf(j->id, sizeof j->id, "%s", id);
    snprintf(name, sizeof name, "%s.json", id);
    j->state_path = util_path_join(st->jobs_dir, name);
    snprintf(name, sizeof name, "%s.work", id);
    j->work_dir = util_path_join(st->jobs_dir, name);
    j->events = cJSON_CreateArray();
    j->req_epochs = j->req_batch = -1;
    j->req_lr = -1;
    if (!j->state_path || !j->work_dir || !j->events) {
        free(j->state_path);
        free(j->work_dir);
        cJSON_Delete(j->events);
        free(j);
        return NULL;
    }
    return j;
}

static void job_free(ftjob *j) {
    free(j->err_msg);
    free(j->state_path);
    free(j->work_dir);
    cJSON_Delete(j->metadata);
    cJSON_Delete(j->events);
    free(j);
}

static int job_before(const ftjob *a, const ftjob *b) {
    return a->created_us != b->created_us ? a->created_us < b->created_us : strcmp(a->id, b->id) < 0;
}

static int job_insert(ftjob_store *st, ftjob *j) {
    if (st->n == st->cap) {
        int cap = st->cap ? st->cap * 2 : 16;
        ftjob **t = realloc(st->jobs, (size_t)cap * sizeof *t);
        if (!t) return -1;
        st->jobs = t;
        st->cap = cap;
    }
    int i = st->n;
    while (i > 0 && job_before(j, st->jobs[i - 1])) {
        st->jobs[i] = st->jobs[i - 1];
        i--;
    }
    st->jobs[i] = j;
    st->n++;
    return 0;
}

static ftjob *job_find(const ftjob_store *st, const char *id, const char *tenant) {
    for (int i = 0; i < st->n; i++)
        if (strcmp(st->jobs[i]->id, id) == 0) return strcmp(st->jobs[i]->tenant, tenant) == 0 ? st->jobs[i] : NULL;
    return NULL;
}

const char *ftjob_model_owner(const ftjob_store *st, const char *name) {
    for (int i = 0; st && i < st->n; i++)
        if (st->jobs[i]->status == ST_SUCCEEDED && strcmp(st->jobs[i]->name, name) == 0) return st->jobs[i]->tenant;
    return NULL;
}

static char *adapter_path(const ftjob *j) { return util_path_join(j->st->adapters_dir, j->name); }

// ---- train children ---------------------------------------------------------------------
//
// One child per job at a time: `train --dry-run` (validation) or `train`
// (training). Its stdout and stderr come through two pipes, split into
// lines; the child is done when the process has exited and both pipes are
// closed (so every line has been read before the exit is judged).
//
// Progress comes from the metrics file train writes beside its output
// (NAME.metrics.jsonl, flushed at every logged step and evaluation), read
// from where we left off every FT_TAIL_MS: train's stdout is a pipe, so its
// log lines arrive in 4 KiB blocks, not as they are written.

struct child {
    ftjob *job;
    int training;          // 0: validation (--dry-run)
    uv_process_t proc;
    uv_pipe_t out, err;
    int open;              // handles not closed yet
    int64_t exit_status;
    int term_signal;
    int killed;            // we sent SIGKILL (cancel, shutdown)
    util_buf part_out, part_err; // a line not finished yet
    util_buf report;       // validation: stdout
    util_buf errtail;      // stderr (the last FT_ERRTAIL_MAX bytes)
    uv_timer_t tick;       // training: reads the metrics file
    char *metrics_path;
    int64_t metrics_off;   // bytes of it consumed
    util_buf metrics_part; // a line not finished yet
};

static void child_line(child *c, int is_err, const char *line);
static void child_done(child *c);

static void child_closed(uv_handle_t *h) {
    child *c = h->data;
    if (--c->open == 0) child_done(c);
}

static void close_once(uv_handle_t *h) {
    if (!uv_is_closing(h)) uv_close(h, child_closed);
}

static void split_lines(child *c, int is_err, const char *p, size_t n) {
    util_buf *b = is_err ? &c->part_err : &c->part_out;
    for (size_t i = 0; i < n; i++) {
        if (p[i] != '\n' && p[i] != '\r') {
            if (b->len < 8192) util_buf_put(b, p + i, 1);
            continue;
        }
        if (b->len) child_line(c, is_err, b->p);
        b->len = 0;
        if (b->p) b->p[0] = '\0';
    }
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
    static char slab[65536]; // loop thread only; consumed before the next read
    (void)h;
    (void)hint;
    *buf = uv_buf_init(slab, sizeof slab);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
    child *c = s->data;
    int is_err = s == (uv_stream_t *)&c->err;
    if (n > 0) {
        split_lines(c, is_err, buf->base, (size_t)n);
        return;
    }
    if (n < 0) { // EOF or error: the last partial line, then close
        util_buf *b = is_err ? &c->part_err : &c->part_out;
        if (b->len) child_line(c, is_err, b->p);
        b->len = 0;
        close_once((uv_handle_t *)s);
    }
}

static void on_exit_cb(uv_process_t *p, int64_t status, int sig) {
    child *c = p->data;
    c->exit_status = status;
    c->term_signal = sig;
    close_once((uv_handle_t *)p);
    if (c->training) close_once((uv_handle_t *)&c->tick);
}

static void metrics_line(ftjob *j, const char *line);

// Reads what train has appended to its metrics file since the last call.
static void tail_metrics(child *c) {
    if (!c->job || !c->metrics_path) return;
    FILE *f = fopen(c->metrics_path, "rb");
    if (!f) return; // not written yet
    char buf[4096];
    size_t n;
    if (fseek(f, (long)c->metrics_off, SEEK_SET) == 0) {
        while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
            c->metrics_off += (int64_t)n;
            for (size_t i = 0; i < n; i++) {
                if (buf[i] != '\n') {
                    if (c->metrics_part.len < 8192) util_buf_put(&c->metrics_part, buf + i, 1);
                    continue;
                }
                if (c->metrics_part.len) metrics_line(c->job, c->metrics_part.p);
                c->metrics_part.len = 0;
                if (c->metrics_part.p) c->metrics_part.p[0] = '\0';
            }
        }
    }
    fclose(f);
}

static void on_tick(uv_timer_t *t) { tail_metrics(t->data); }

// Starts argv[0] with argv. Returns the child or NULL + why.
static child *child_spawn(ftjob *j, int training, char **argv, char *why, size_t n) {
    ftjob_store *st = j->st;
    child *c = calloc(1, sizeof *c);
    if (!c) return snprintf(why, n, "out of memory"), NULL;
    c->job = j;
    c->training = training;
    uv_pipe_init(st->host.env.loop, &c->out, 0);
    uv_pipe_init(st->host.env.loop, &c->err, 0);
    c->out.data = c->err.data = c->proc.data = c;
    uv_stdio_container_t io[3];
    io[0].flags = UV_IGNORE;
    io[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    io[1].data.stream = (uv_stream_t *)&c->out;
    io[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    io[2].data.stream = (uv_stream_t *)&c->err;
    uv_process_options_t o = {.exit_cb = on_exit_cb, .file = argv[0], .args = argv, .stdio = io, .stdio_count = 3};
    if (training) {
        uv_timer_init(st->host.env.loop, &c->tick);
        c->tick.data = c;
        c->metrics_path = malloc(strlen(j->work_dir) + 32);
        if (c->metrics_path) sprintf(c->metrics_path, "%s/adapter.metrics.jsonl", j->work_dir);
    }
    int rc = uv_spawn(st->host.env.loop, &c->proc, &o);
    c->open = training ? 4 : 3;
    if (rc != 0) {
        snprintf(why, n, "cannot start %s: %s", argv[0], uv_strerror(rc));
        c->job = NULL; // child_done must not judge a job for it
        uv_close((uv_handle_t *)&c->proc, child_closed);
        uv_close((uv_handle_t *)&c->out, child_closed);
        uv_close((uv_handle_t *)&c->err, child_closed);
        if (training) uv_close((uv_handle_t *)&c->tick, child_closed);
        return NULL;
    }
    uv_read_start((uv_stream_t *)&c->out, on_alloc, on_read);
    uv_read_start((uv_stream_t *)&c->err, on_alloc, on_read);
    if (training) uv_timer_start(&c->tick, on_tick, FT_TAIL_MS, FT_TAIL_MS);
    j->child = c;
    return c;
}

static void child_kill(child *c) {
    if (c->killed) return;
    c->killed = 1;
    if (!uv_is_closing((uv_handle_t *)&c->proc)) uv_process_kill(&c->proc, SIGKILL);
}

static void child_free(child *c) {
    free(c->part_out.p);
    free(c->part_err.p);
    free(c->report.p);
    free(c->errtail.p);
    free(c->metrics_part.p);
    free(c->metrics_path);
    free(c);
}

// The last line of stderr that says "train: ...", else its last line.
static void child_error_line(const child *c, char *out, size_t n) {
    const char *t = c->errtail.p ? c->errtail.p : "", *best = NULL;
    for (const char *p = t; (p = strstr(p, "train: ")) != NULL; p++)
        if (p == t || p[-1] == '\n') best = p + 7;
    if (!best) {
        size_t len = strlen(t);
        while (len > 0 && t[len - 1] == '\n') len--;
        const char *nl = len ? memrchr(t, '\n', len) : NULL;
        best = nl ? nl + 1 : t;
    }
    size_t k = strcspn(best, "\n");
    snprintf(out, n, "%.*s", (int)k, best);
}

// ---- the job's life -------------------------------------------------------------------------

static void pump(ftjob_store *st);

static void finish(ftjob *j, int status) {
    j->status = status;
    j->finished_at = (int64_t)time(NULL);
}

static void fail(ftjob *j, const char *code, const char *param, const char *msg) {
    set_error(j, code, param, "%s", msg);
    finish(j, ST_FAILED);
    add_event(j, "error", NULL, "%s", msg);
    jlog(j->st, "warn", "job failed job=%s tenant=%s code=%s error=%s", j->id, j->tenant, code, msg);
    persist(j);
}

// Moves a published adapter folder aside (a dot name the registry skips)
// and removes it: the registry never sees it half deleted.
static void unpublish(ftjob *j) {
    char *path = adapter_path(j);
    char aside[64];
    snprintf(aside, sizeof aside, ".%s.removed", j->id);
    char *tmp = util_path_join(j->st->adapters_dir, aside);
    if (path && tmp && util_is_dir(path)) {
        if (rename(path, tmp) == 0) util_rm_rf(tmp);
        else util_rm_rf(path);
        jlog(j->st, "info", "removed adapter=%s job=%s", j->name, j->id);
    }
    free(path);
    free(tmp);
}

// A line of train's metrics file: {"step", "epoch", "loss", ...} for a
// logged step, {"step", "epoch", "eval_loss"} for an evaluation; each
// becomes a metrics event.
static void metrics_line(ftjob *j, const char *line) {
    cJSON *o = cJSON_Parse(line);
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(o, "step"), *ep = cJSON_GetObjectItemCaseSensitive(o, "epoch");
    const cJSON *tl = cJSON_GetObjectItemCaseSensitive(o, "loss"), *vl = cJSON_GetObjectItemCaseSensitive(o, "eval_loss");
    long long s = cJSON_IsNumber(st) ? (long long)st->valuedouble : -1, t = (long long)j->total_steps;
    double epoch = cJSON_IsNumber(ep) ? ep->valuedouble : 0;
    double loss = cJSON_IsNumber(tl) ? tl->valuedouble : cJSON_IsNumber(vl) ? vl->valuedouble : NAN;
    int is_eval = cJSON_IsNumber(vl);
    cJSON_Delete(o);
    if (s < 0 || isnan(loss)) return;
    if (!is_eval) {
        j->step = s;
        j->last_loss = loss;
        cJSON *d = cJSON_CreateObject();
        cJSON_AddNumberToObject(d, "step", (double)s);
        cJSON_AddNumberToObject(d, "train_loss", loss);
        cJSON_AddNumberToObject(d, "total_steps", (double)t);
        cJSON_AddNumberToObject(d, "epoch", epoch);
        add_event(j, "info", d, "Step %lld/%lld: training loss=%.4f", s, t, loss);
        persist_progress(j);
    } else {
        cJSON *d = cJSON_CreateObject();
        cJSON_AddNumberToObject(d, "step", (double)s);
        cJSON_AddNumberToObject(d, "valid_loss", loss);
        cJSON_AddNumberToObject(d, "total_steps", (double)j->total_steps);
        cJSON_AddNumberToObject(d, "epoch", epoch);
        add_event(j, "info", d, "Step %lld/%lld: validation loss=%.4f", s, (long long)j->total_steps, loss);
        persist(j);
    }
}

static void child_line(child *c, int is_err, const char *line) {
    ftjob *j = c->job;
    if (!j) return;
    if (is_err) {
        util_buf_puts(&c->errtail, line);
        util_buf_puts(&c->errtail, "\n");
        if (c->errtail.len > FT_ERRTAIL_MAX) { // keep the tail
            size_t cut = c->errtail.len - FT_ERRTAIL_MAX / 2;
            memmove(c->errtail.p, c->errtail.p + cut, c->errtail.len - cut + 1);
            c->errtail.len -= cut;
        }
        jlog(j->st, "info", "train job=%s stderr: %s", j->id, line);
    } else if (!c->training) {
        if (c->report.len < FT_REPORT_MAX) {
            util_buf_puts(&c->report, line);
            util_buf_puts(&c->report, "\n");
        }
    } else if (strncmp(line, "info train: step=", 17) != 0 && strncmp(line, "info train: eval", 16) != 0) {
        jlog(j->st, "info", "train job=%s: %s", j->id, line); // progress comes from the metrics file
    }
}

// What `train --dry-run` said about one data file.
typedef struct file_report {
    int seen;
    long long ok, bad, tokens;
    util_buf bad_lines; // "line N: reason; ..." (the first FT_BAD_LISTED)
    int listed;
    char first_lines[256]; // "3, 7, 9"
} file_report;

// Reads the dry run's report: a section per file ("data: PATH", then
// "  examples: N ok, B bad", "  tokens: T total, ...", "    line N: why"),
// the training file's first, then the validation file's (train reads them
// in that order; sections are told apart by order because the report may
// shorten long paths).
static void parse_report(const char *text, file_report *tr, file_report *va) {
    file_report *cur = NULL;
    int sections = 0;
    for (const char *p = text; p && *p;) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        char line[1024];
        snprintf(line, sizeof line, "%.*s", (int)(n < sizeof line ? n : sizeof line - 1), p);
        long long a, b;
        if (strncmp(line, "data: ", 6) == 0) {
            cur = sections == 0 ? tr : sections == 1 ? va : NULL;
            sections++;
            if (cur) cur->seen = 1;
        } else if (cur && sscanf(line, "  examples: %lld ok, %lld bad", &a, &b) == 2) {
            cur->ok = a;
            cur->bad = b;
        } else if (cur && sscanf(line, "  tokens: %lld total", &a) == 1) {
            cur->tokens = a;
        } else if (cur && sscanf(line, "    line %lld:", &a) == 1 && cur->listed < FT_BAD_LISTED) {
            const char *why = strchr(line, ':') + 1;
            char num[24];
            snprintf(num, sizeof num, "%s%lld", cur->listed ? ", " : "", a);
            if (strlen(cur->first_lines) + strlen(num) + 1 < sizeof cur->first_lines)
                strcat(cur->first_lines, num);
            char item[400];
            snprintf(item, sizeof item, "%sline %lld:%.300s", cur->listed ? "; " : "", a, why);
            util_buf_puts(&cur->bad_lines, item);
            cur->listed++;
        }
        p = nl ? nl + 1 : NULL;
    }
}

// The job's error for a file with bad lines (or none usable).
static void fail_file(ftjob *j, const file_report *r, int is_val, const char *fallback) {
    const char *what = is_val ? "validation" : "training";
    char msg[2048];
    if (r->bad > 0)
        snprintf(msg, sizeof msg,
                 "The job failed due to an invalid %s file (%s): %lld of %lld examples are invalid, at line%s %s%s. "
                 "%s. Fix these lines and upload the file again.",
                 what, is_val ? j->validation_file : j->training_file, r->bad, r->ok + r->bad, r->bad > 1 ? "s" : "",
                 r->first_lines, r->bad > r->listed ? " and more" : "", r->bad_lines.p ? r->bad_lines.p : "");
    else
        snprintf(msg, sizeof msg, "The job failed due to an invalid %s file (%s): %s", what,
                 is_val ? j->validation_file : j->training_file, fallback);
    fail(j, is_val ? "invalid_validation_file" : "invalid_training_file", is_val ? "validation_file" : "training_file",
         msg);
}

static void validate_done(ftjob *j, child *c) {
    const files_rec *tf = files_get(j->st->files, j->training_file, j->tenant);
    const files_rec *vf = j->validation_file[0] ? files_get(j->st->files, j->validation_file, j->tenant) : NULL;
    file_report tr = {0}, va = {0};
    parse_report(c->report.p ? c->report.p : "", &tr, &va);
    char why[512];
    child_error_line(c, why, sizeof why);
    int ok = c->exit_status == 0 && c->term_signal == 0;
    if (j->status != ST_VALIDATING) {
        // cancelled meanwhile: nothing to judge
    } else if (!tf) {
        fail(j, "invalid_training_file", "training_file", "The training file was deleted before it was validated.");
    } else if (tr.bad > 0 || (!ok && (!tr.seen || tr.ok == 0))) {
        fail_file(j, &tr, 0, why[0] ? why : "the file could not be read");
    } else if (vf && (va.bad > 0 || (!ok && va.ok == 0))) {
        fail_file(j, &va, 1, why[0] ? why : "the file could not be read");
    } else if (!ok || !tr.seen || (vf && !va.seen)) {
        char msg[768];
        snprintf(msg, sizeof msg, "The files could not be validated: %s",
                 why[0] ? why : ok ? "train --dry-run printed no data report" : "train --dry-run failed");
        fail(j, "validation_failed", NULL, msg);
    } else {
        j->n_train = tr.ok;
        j->tokens = tr.tokens;
        j->n_epochs = j->req_epochs;
        j->batch_size = j->req_batch;
        j->lr_mult = j->req_lr;
        ftjob_resolve_auto((int)tr.ok, &j->n_epochs, &j->batch_size, &j->lr_mult);
        j->resolved = 1;
        j->total_steps = (j->n_train + j->batch_size - 1) / j->batch_size * j->n_epochs;
        j->status = ST_QUEUED;
        add_event(j, "info", NULL, "Files validated: %lld training examples, %lld tokens; moving job to queued state",
                  tr.ok, tr.tokens);
        persist(j);
    }
    free(tr.bad_lines.p);
    free(va.bad_lines.p);
}

static void start_validation(ftjob *j) {
    ftjob_store *st = j->st;
    const files_rec *tf = files_get(st->files, j->training_file, j->tenant);
    const files_rec *vf = j->validation_file[0] ? files_get(st->files, j->validation_file, j->tenant) : NULL;
    if (!tf || (j->validation_file[0] && !vf)) {
        fail(j, tf ? "invalid_validation_file" : "invalid_training_file", tf ? "validation_file" : "training_file",
             "The file was deleted before the job could validate it.");
        return;
    }
    char *argv[12];
    int k = 0;
    argv[k++] = st->train_bin;
    argv[k++] = "--model";
    argv[k++] = st->model_dir;
    argv[k++] = "--data";
    argv[k++] = tf->data_path;
    if (vf) {
        argv[k++] = "--val";
        argv[k++] = vf->data_path;
    }
    argv[k++] = "--dry-run";
    argv[k] = NULL;
    char why[512];
    if (!child_spawn(j, 0, argv, why, sizeof why)) {
        fail(j, "internal_error", NULL, why);
        return;
    }
    st->validating = 1;
    add_event(j, "info", NULL, "Validating training file: %s%s%s", j->training_file, vf ? " and validation file: " : "",
              vf ? j->validation_file : "");
    persist(j);
}

static void start_training(ftjob *j) {
    ftjob_store *st = j->st;
    const files_rec *tf = files_get(st->files, j->training_file, j->tenant);
    const files_rec *vf = j->validation_file[0] ? files_get(st->files, j->validation_file, j->tenant) : NULL;
    if (!tf || (j->validation_file[0] && !vf)) {
        fail(j, tf ? "invalid_validation_file" : "invalid_training_file", tf ? "validation_file" : "training_file",
             "The file was deleted before the job started.");
        return;
    }
    util_rm_rf(j->work_dir);
    char *out = util_path_join(j->work_dir, "adapter");
    char epochs[16], batch[16], lr[32], seed[32], logsteps[32];
    snprintf(epochs, sizeof epochs, "%d", j->n_epochs);
    snprintf(batch, sizeof batch, "%d", j->batch_size);
    snprintf(lr, sizeof lr, "%.9g", st->cfg.base_lr * j->lr_mult);
    snprintf(seed, sizeof seed, "%lld", (long long)j->seed);
    int64_t every = j->total_steps / 100;
    snprintf(logsteps, sizeof logsteps, "%lld", (long long)(every < 1 ? 1 : every));
    char *argv[] = {st->train_bin, "--model", st->model_dir, "--data", tf->data_path, "--out", out,
                    "--epochs", epochs, "--batch-size", batch, "--lr", lr, "--seed", seed,
                    "--logging-steps", logsteps, "--strict", vf ? "--val" : NULL, vf ? vf->data_path : NULL, NULL};
    char why[512] = "out of memory";
    child *c = out && mkdir(j->work_dir, 0755) == 0 ? child_spawn(j, 1, argv, why, sizeof why) : NULL;
    free(out);
    if (!c) {
        util_rm_rf(j->work_dir);
        fail(j, "internal_error", NULL, why);
        return;
    }
    j->status = ST_RUNNING;
    j->pid = (long)c->proc.pid;
    j->step = 0;
    add_event(j, "info", NULL, "Fine-tuning job started: %d epochs, batch size %d, learning rate %g, %lld steps",
              j->n_epochs, j->batch_size, st->cfg.base_lr * j->lr_mult, (long long)j->total_steps);
    jlog(st, "info", "job started job=%s tenant=%s pid=%ld model=%s", j->id, j->tenant, j->pid, j->name);
    persist(j);
}

// ---- publishing: work folder -> adapters folder -> registry -> succeeded ----------------------

typedef struct publish_op {
    ftjob *job;
    char *src, *dst, *tmp;
    err_t err;
    int rc;
    uv_work_t work;
} publish_op;

// Copies every regular file of folder src into folder dst (created).
static int copy_dir(const char *src, const char *dst, err_t *err) {
    if (mkdir(dst, 0755) != 0) return err_set(err, "%s: %s", dst, strerror(errno));
    DIR *d = opendir(src);
    if (!d) return err_set(err, "%s: %s", src, strerror(errno));
    struct dirent *de;
    int rc = 0;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        char *from = util_path_join(src, de->d_name), *to = util_path_join(dst, de->d_name);
        size_t len = 0;
        char *data = from && util_is_file(from) ? util_read_file(from, &len, err) : NULL;
        if (from && to && util_is_file(from))
            rc = data ? util_write_file_atomic(to, data, len, err) : -1;
        free(data);
        free(from);
        free(to);
    }
    closedir(d);
    return rc;
}

// On the thread pool: one rename when the folders share a file system,
// else a copy into a dot-named temp folder beside dst, then a rename.
static void publish_work(uv_work_t *w) {
    publish_op *p = w->data;
    if (util_is_dir(p->dst)) {
        p->rc = err_set(&p->err, "%s already exists", p->dst);
    } else if (rename(p->src, p->dst) == 0) {
        p->rc = 0;
    } else if (errno == EXDEV) {
        util_rm_rf(p->tmp);
        p->rc = copy_dir(p->src, p->tmp, &p->err);
        if (p->rc == 0 && rename(p->tmp, p->dst) != 0) p->rc = err_set(&p->err, "%s: %s", p->dst, strerror(errno));
        if (p->rc != 0) util_rm_rf(p->tmp);
    } else {
        p->rc = err_set(&p->err, "cannot move %s to %s: %s", p->src, p->dst, strerror(errno));
    }
}

static void on_rescanned(void *arg) {
    ftjob *j = arg;
    ftjob_store *st = j->st;
    char why[512] = "";
    j->publishing = 0;
    util_rm_rf(j->work_dir);
    if (j->status != ST_RUNNING) { // cancelled while publishing
        unpublish(j);
    } else if (st->stopping) {
        unpublish(j);
        fail(j, "server_shutdown", NULL, "The server was shut down while this job was finishing; no model was "
             "published. Create a new job to train again.");
    } else if (!st->host.adapter_ready(st->host.env.ud, j->name, why, sizeof why)) {
        unpublish(j);
        char msg[768];
        snprintf(msg, sizeof msg, "The trained adapter could not be loaded by the server: %s", why);
        fail(j, "internal_error", NULL, msg);
    } else {
        j->has_model = 1;
        j->trained_tokens = j->tokens * j->n_epochs;
        finish(j, ST_SUCCEEDED);
        add_event(j, "info", NULL, "New fine-tuned model created: %s", j->name);
        add_event(j, "info", NULL, "The job has successfully completed");
        jlog(st, "info", "job succeeded job=%s tenant=%s model=%s", j->id, j->tenant, j->name);
        persist(j);
    }
    pump(st);
}

static void publish_done(uv_work_t *w, int status) {
    publish_op *p = w->data;
    ftjob *j = p->job;
    ftjob_store *st = j->st;
    if (status != 0 || p->rc != 0) {
        j->publishing = 0;
        util_rm_rf(j->work_dir);
        if (j->status == ST_RUNNING) {
            char msg[768];
            snprintf(msg, sizeof msg, "The trained adapter could not be published: %s",
                     status ? "cancelled" : p->err.msg);
            fail(j, "internal_error", NULL, msg);
        }
        pump(st);
    } else {
        // The registry must offer the adapter before anyone reads "succeeded".
        st->host.rescan(st->host.env.ud, on_rescanned, j);
    }
    free(p->src);
    free(p->dst);
    free(p->tmp);
    free(p);
}

static void publish(ftjob *j) {
    ftjob_store *st = j->st;
    publish_op *p = calloc(1, sizeof *p);
    char tmpname[96];
    snprintf(tmpname, sizeof tmpname, ".%s.publish", j->id);
    if (p) {
        p->job = j;
        p->src = util_path_join(j->work_dir, "adapter");
        p->dst = adapter_path(j);
        p->tmp = util_path_join(st->adapters_dir, tmpname);
        p->work.data = p;
    }
    if (!p || !p->src || !p->dst || !p->tmp || uv_queue_work(st->host.env.loop, &p->work, publish_work, publish_done)) {
        if (p) free(p->src), free(p->dst), free(p->tmp);
        free(p);
        util_rm_rf(j->work_dir);
        fail(j, "internal_error", NULL, "The trained adapter could not be published: out of memory");
        return;
    }
    j->publishing = 1;
}

static void train_done(ftjob *j, child *c) {
    ftjob_store *st = j->st;
    j->pid = 0;
    if (j->status == ST_RUNNING && !st->stopping) tail_metrics(c); // the last lines
    if (j->status != ST_RUNNING) { // cancelled: nothing of it may remain
        util_rm_rf(j->work_dir);
        persist(j);
        return;
    }
    if (st->stopping) {
        util_rm_rf(j->work_dir);
        char msg[512];
        snprintf(msg, sizeof msg, "The server was shut down while this job was running (at step %lld of %lld); "
                 "no model was published. Create a new job to train again.", (long long)j->step,
                 (long long)j->total_steps);
        fail(j, "server_shutdown", NULL, msg);
        return;
    }
    if (c->exit_status != 0 || c->term_signal != 0) {
        char why[512], msg[768];
        child_error_line(c, why, sizeof why);
        if (c->term_signal) snprintf(msg, sizeof msg, "Training failed: train was killed by signal %d", c->term_signal);
        else snprintf(msg, sizeof msg, "Training failed (train exited with status %lld): %s", (long long)c->exit_status,
                      why[0] ? why : "no message");
        util_rm_rf(j->work_dir);
        fail(j, "training_failed", NULL, msg);
        return;
    }
    add_event(j, "info", NULL, "Training finished at step %lld; publishing the model", (long long)j->step);
    persist(j);
    publish(j);
}

static void child_done(child *c) {
    ftjob *j = c->job;
    if (j) {
        ftjob_store *st = j->st;
        j->child = NULL;
        if (c->training) train_done(j, c);
        else {
            st->validating = 0;
            if (!st->stopping) validate_done(j, c);
        }
        pump(st);
    }
    child_free(c);
}

static int running_count(const ftjob_store *st) {
    int n = 0;
    for (int i = 0; i < st->n; i++) n += st->jobs[i]->status == ST_RUNNING;
    return n;
}

// Starts what can start: one validation at a time, trainings up to workers.
static void pump(ftjob_store *st) {
    if (st->stopping) return;
    for (int i = 0; i < st->n && !st->validating; i++)
        if (st->jobs[i]->status == ST_VALIDATING && !st->jobs[i]->child) start_validation(st->jobs[i]);
    for (int i = 0; i < st->n && running_count(st) < st->cfg.workers; i++)
        if (st->jobs[i]->status == ST_QUEUED) start_training(st->jobs[i]);
}

// Cancels j (not finished). Returns 0, or -1 when it has already finished.
static int cancel(ftjob *j) {
    if (terminal(j->status)) return -1;
    finish(j, ST_CANCELLED);
    add_event(j, "info", NULL, "Fine-tuning job cancelled");
    jlog(j->st, "info", "job cancelled job=%s tenant=%s", j->id, j->tenant);
    if (j->child) child_kill(j->child); // the work folder goes when it has exited
    persist(j);
    return 0;
}

// ---- open, restart, stop ------------------------------------------------------------------------

// Kills the train process a killed server left behind for j, if pid still
// names it (its command line holds the job's work folder).
static void kill_orphan(ftjob *j) {
    if (j->pid <= 0) return;
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/cmdline", j->pid);
    // /proc files report size 0: read until EOF. Arguments are NUL-separated.
    char cmd[8192];
    size_t len = 0;
    FILE *f = fopen(path, "rb");
    if (f) {
        len = fread(cmd, 1, sizeof cmd - 1, f);
        fclose(f);
    }
    cmd[len] = '\0';
    int ours = 0;
    for (size_t i = 0; i < len; i += strlen(cmd + i) + 1)
        if (strncmp(cmd + i, j->work_dir, strlen(j->work_dir)) == 0) ours = 1;
    if (ours && kill((pid_t)j->pid, SIGKILL) == 0)
        jlog(j->st, "warn", "killed the train process a previous server left running job=%s pid=%ld", j->id, j->pid);
    j->pid = 0;
}

// A job found in a state that needs settling after a restart.
static void settle(ftjob *j) {
    int was_running = j->status == ST_RUNNING;
    kill_orphan(j);
    util_rm_rf(j->work_dir);
    if (was_running) {
        unpublish(j); // a publish cut short: not offered, not kept
        char msg[512];
        snprintf(msg, sizeof msg, "The server stopped while this job was running (at step %lld of %lld); no model "
                 "was published. Create a new job to train again.", (long long)j->step, (long long)j->total_steps);
        fail(j, "server_restarted", NULL, msg);
    } else if (j->status == ST_SUCCEEDED) {
        char *p = adapter_path(j);
        if (p && !util_is_dir(p))
            jlog(j->st, "warn", "the model of job=%s is gone from the adapters folder model=%s", j->id, j->name);
        free(p);
    }
}

static int load_jobs(ftjob_store *st, err_t *err) {
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
            ftjob *j = job_new(st, id);
            char *text = j ? util_read_file(path, NULL, err) : NULL;
            if (!j || !text || state_parse(j, text) != 0 || job_insert(st, j) != 0) {
                jlog(st, "warn", "ignored a job state that cannot be read path=%s", path);
                if (j) job_free(j);
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

// Removes dot-named temp folders of ours from the adapters folder.
static void clean_adapters_dir(ftjob_store *st) {
    DIR *d = opendir(st->adapters_dir);
    if (!d) return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        if (strncmp(de->d_name, ".ftjob-", 7) != 0) continue;
        if ((len > 8 && strcmp(de->d_name + len - 8, ".publish") == 0) ||
            (len > 8 && strcmp(de->d_name + len - 8, ".removed") == 0)) {
            char *p = util_path_join(st->adapters_dir, de->d_name);
            if (p) util_rm_rf(p);
            jlog(st, "warn", "removed leftover folder=%s", p ? p : de->d_name);
            free(p);
        }
    }
    closedir(d);
}

ftjob_store *ftjob_open(const ftjob_config *cfg, const ftjob_host *host, files_store *files, err_t *err) {
    ftjob_store *st = calloc(1, sizeof *st);
    if (!st) {
        err_set(err, "out of memory");
        return NULL;
    }
    st->cfg = *cfg;
    if (st->cfg.workers < 1) st->cfg.workers = 1;
    if (st->cfg.base_lr <= 0) st->cfg.base_lr = FT_DEFAULT_BASE_LR;
    st->host = *host;
    st->files = files;
    st->data_dir = strdup(cfg->data_dir);
    st->adapters_dir = strdup(cfg->adapters_dir);
    st->model_dir = strdup(cfg->model_dir);
    st->base_id = strdup(cfg->base_id);
    st->train_bin = strdup(cfg->train_bin);
    st->jobs_dir = util_path_join(cfg->data_dir, "jobs");
    if (!st->data_dir || !st->adapters_dir || !st->model_dir || !st->base_id || !st->train_bin || !st->jobs_dir) {
        err_set(err, "out of memory");
        goto fail;
    }
    if (access(st->train_bin, X_OK) != 0) {
        err_set(err, "--train-bin %s: not an executable file (%s)", st->train_bin, strerror(errno));
        goto fail;
    }
    if (mkdir(st->jobs_dir, 0755) != 0 && errno != EEXIST) {
        err_set(err, "--data-dir %s: cannot create %s: %s", cfg->data_dir, st->jobs_dir, strerror(errno));
        goto fail;
    }
    if (load_jobs(st, err) != 0) goto fail;
    clean_adapters_dir(st);
    for (int i = 0; i < st->n; i++) settle(st->jobs[i]);
    jlog(st, "info", "jobs dir=%s jobs=%d train=%s workers=%d", st->jobs_dir, st->n, st->train_bin, st->cfg.workers);
    pump(st);
    return st;
fail:
    ftjob_free(st);
    return NULL;
}

void ftjob_stop(ftjob_store *st) {
    if (!st || st->stopping) return;
    st->stopping = 1;
    // Kill and stop listening: pipes are closed now (a grandchild such as
    // gnuplot may hold them open); the exits arrive while the loop drains.
    for (int i = 0; i < st->n; i++) {
        child *c = st->jobs[i]->child;
        if (!c) continue;
        child_kill(c);
        close_once((uv_handle_t *)&c->out);
        close_once((uv_handle_t *)&c->err);
        if (c->training) close_once((uv_handle_t *)&c->tick);
    }
}

void ftjob_free(ftjob_store *st) {
    if (!st) return;
    for (int i = 0; i < st->n; i++) job_free(st->jobs[i]);
    free(st->jobs);
    free(st->data_dir);
    free(st->adapters_dir);
    free(st->model_dir);
    free(st->base_id);
    free(st->train_bin);
    free(st->jobs_dir);
    free(st);
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
    const char *type = str_field(m, "type");
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

// Fills j from a create request. Returns 0 or -1 + e.
static int parse_create(ftjob_store *st, const http_req *q, const char *tenant, int base_allowed, ftjob *j,
                        api_error *e) {
    cJSON *o = cJSON_ParseWithLength(q->body ? q->body : "", q->body_len);
    int rc = 0;
    const cJSON *hp = NULL;
    const char *model = str_field(o, "model");
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
    cJSON *o = job_object(j);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    reply_json_logged(st->host.env.requests, q, res, 200, s, tenant, NULL);
}

static void route_create(ftjob_store *st, const http_req *q, http_res *res, const char *tenant, int base_allowed) {
    char id[40];
    api_error e;
    files_new_id("ftjob-", id, sizeof id);
    ftjob *j = job_new(st, id);
    if (!j) {
        reply_json_logged(st->host.env.requests, q, res, 500, NULL, tenant, NULL);
        return;
    }
    snprintf(j->tenant, sizeof j->tenant, "%s", tenant);
    if (parse_create(st, q, tenant, base_allowed, j, &e) != 0) {
        job_free(j);
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
    if (job_insert(st, j) != 0) {
        job_free(j);
        reply_json_logged(st->host.env.requests, q, res, 500, NULL, tenant, NULL);
        return;
    }
    add_event(j, "info", NULL, "Created fine-tuning job: %s", j->id);
    persist(j);
    jlog(st, "info", "job created job=%s tenant=%s training_file=%s model=%s", j->id, tenant, j->training_file, j->name);
    reply_job(st, q, res, j, tenant);
    pump(st);
}

// ---- GET routes, cancel ------------------------------------------------------------------------

// {"object":"list","data":[...],"has_more"} from items (newest first is the
// caller's order), starting after the item whose "id" is after.
static char *page_json(cJSON **items, int n, const char *after, int limit) {
    cJSON *o = cJSON_CreateObject(), *data = cJSON_CreateArray();
    int start = 0, more = 0, k = 0;
    if (after[0]) {
        start = n; // an unknown cursor: an empty page
        for (int i = 0; i < n; i++)
            if (strcmp(str_field(items[i], "id"), after) == 0) start = i + 1;
    }
    for (int i = start; i < n; i++) {
        if (k == limit) {
            more = 1;
            break;
        }
        cJSON_AddItemReferenceToArray(data, items[i]);
        k++;
    }
    cJSON_AddStringToObject(o, "object", "list");
    cJSON_AddItemToObject(o, "data", data);
    cJSON_AddBoolToObject(o, "has_more", more);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

static void route_list(ftjob_store *st, const http_req *q, http_res *res, const char *tenant) {
    api_error e;
    int limit;
    char after[64];
    if (files_query_page(q->query, 20, 100, &limit, after, sizeof after, &e) != 0) {
        reply_error_logged(st->host.env.requests, q, res, &e, tenant, NULL);
        return;
    }
    cJSON **items = calloc((size_t)st->n + 1, sizeof *items);
    int n = 0;
    for (int i = st->n - 1; items && i >= 0; i--)
        if (strcmp(st->jobs[i]->tenant, tenant) == 0) items[n++] = job_object(st->jobs[i]);
    char *s = items ? page_json(items, n, after, limit) : NULL;
    for (int i = 0; i < n; i++) cJSON_Delete(items[i]);
    free(items);
    reply_json_logged(st->host.env.requests, q, res, 200, s, tenant, NULL);
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
    ftjob *j = job_find(st, id, tenant);
    if (!j) {
        not_found(st, q, res, tenant, id);
    } else if (!*sub) {
        reply_job(st, q, res, j, tenant);
    } else if (strcmp(sub, "events") == 0) {
        route_events(st, q, res, j, tenant);
    } else if (strcmp(sub, "checkpoints") == 0) {
        route_checkpoints(st, q, res, j, tenant);
    } else if (cancel(j) != 0) {
        api_error e;
        api_err_invalid(&e, NULL, "Job %s has already finished with status '%s'; it cannot be cancelled.", j->id,
                        status_names[j->status]);
        reply_error_logged(st->host.env.requests, q, res, &e, tenant, NULL);
    } else {
        reply_job(st, q, res, j, tenant);
        pump(st);
    }
}
