// ftjob_life: a fine-tuning job's life, and the store's open and stop.
// See ftjobs.h for the behaviour, ftjob_life.h for the entry points.
#include "ftjob_life.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ftjob_run.h"
#include "ftjob_state.h"
#include "log.h"
#include "util.h"

#define FT_DEFAULT_BASE_LR 2e-4
#define FT_BAD_LISTED 20       // bad lines named in a job's error message

static int terminal(int status) { return status >= ST_SUCCEEDED; }

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

static char *adapter_path(const ftjob *j) { return util_path_join(j->st->adapters_dir, j->name); }

// ---- the job's life -------------------------------------------------------------------------

static void finish(ftjob *j, int status) {
    j->status = status;
    j->finished_at = (int64_t)time(NULL);
}

static void fail(ftjob *j, const char *code, const char *param, const char *msg) {
    ftstate_set_error(j, code, param, "%s", msg);
    finish(j, ST_FAILED);
    ftstate_event(j, "error", NULL, "%s", msg);
    log_line("warn", "ftjobs", "job failed job=%s tenant=%s code=%s error=%s", j->id, j->tenant, code, msg);
    ftstate_persist(j);
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
        log_line("info", "ftjobs", "removed adapter=%s job=%s", j->name, j->id);
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
        ftstate_event(j, "info", d, "Step %lld/%lld: training loss=%.4f", s, t, loss);
        ftstate_persist_progress(j);
    } else {
        cJSON *d = cJSON_CreateObject();
        cJSON_AddNumberToObject(d, "step", (double)s);
        cJSON_AddNumberToObject(d, "valid_loss", loss);
        cJSON_AddNumberToObject(d, "total_steps", (double)j->total_steps);
        cJSON_AddNumberToObject(d, "epoch", epoch);
        ftstate_event(j, "info", d, "Step %lld/%lld: validation loss=%.4f", s, (long long)j->total_steps, loss);
        ftstate_persist(j);
    }
}

// What `train --dry-run` said about one data file.
typedef struct file_report {
    int seen;
    long long ok, bad, tokens;
    long long tool_examples, tool_calls; // from "  tools: N examples with tools, D tool definitions, C calls"
    util_buf bad_lines; // "line N: reason; ..." (the first FT_BAD_LISTED)
    int listed;
    char first_lines[256]; // "3, 7, 9"
} file_report;

// Reads the dry run's report: a section per file ("data: PATH", then
// "  examples: N ok, B bad", "  tokens: T total, ...", "  tools: ...",
// "    line N: why"), the training file's first, then the validation
// file's (train reads them in that order; sections are told apart by order
// because the report may shorten long paths).
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
        } else if (cur && sscanf(line, "  tools: %lld", &a) == 1) {
            const char *defs = strstr(line, " tool definitions, ");
            cur->tool_examples = a;
            if (defs && sscanf(defs + strlen(" tool definitions, "), "%lld calls", &b) == 1) cur->tool_calls = b;
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

static void validate_done(ftjob *j, ftrun *c) {
    const files_rec *tf = files_get(j->st->files, j->training_file, j->tenant);
    const files_rec *vf = j->validation_file[0] ? files_get(j->st->files, j->validation_file, j->tenant) : NULL;
    file_report tr = {0}, va = {0};
    parse_report(c->report.p ? c->report.p : "", &tr, &va);
    char why[512];
    ftrun_error_line(c, why, sizeof why);
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
        char tools[96] = "";
        if (tr.tool_examples > 0)
            snprintf(tools, sizeof tools, " (%lld with tools, %lld tool calls)", tr.tool_examples, tr.tool_calls);
        ftstate_event(j, "info", NULL,
                      "Files validated: %lld training examples%s, %lld tokens; moving job to queued state", tr.ok,
                      tools, tr.tokens);
        ftstate_persist(j);
    }
    free(tr.bad_lines.p);
    free(va.bad_lines.p);
}

static void validation_exited(ftjob *j, ftrun *c);
static void training_exited(ftjob *j, ftrun *c);

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
    ftrun_spec spec = {.training = 0, .argv = argv, .on_done = validation_exited};
    if (!ftrun_spawn(j, &spec, why, sizeof why)) {
        fail(j, "internal_error", NULL, why);
        return;
    }
    st->validating = 1;
    ftstate_event(j, "info", NULL, "Validating training file: %s%s%s", j->training_file,
                  vf ? " and validation file: " : "", vf ? j->validation_file : "");
    ftstate_persist(j);
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
    ftrun_spec spec = {.training = 1, .argv = argv, .on_metrics = metrics_line, .on_done = training_exited};
    ftrun *c = out && mkdir(j->work_dir, 0755) == 0 ? ftrun_spawn(j, &spec, why, sizeof why) : NULL;
    free(out);
    if (!c) {
        util_rm_rf(j->work_dir);
        fail(j, "internal_error", NULL, why);
        return;
    }
    j->status = ST_RUNNING;
    j->pid = (long)c->proc.pid;
    j->step = 0;
    ftstate_event(j, "info", NULL, "Fine-tuning job started: %d epochs, batch size %d, learning rate %g, %lld steps",
                  j->n_epochs, j->batch_size, st->cfg.base_lr * j->lr_mult, (long long)j->total_steps);
    log_line("info", "ftjobs", "job started job=%s tenant=%s pid=%ld model=%s", j->id, j->tenant, j->pid, j->name);
    ftstate_persist(j);
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
        ftstate_event(j, "info", NULL, "New fine-tuned model created: %s", j->name);
        ftstate_event(j, "info", NULL, "The job has successfully completed");
        log_line("info", "ftjobs", "job succeeded job=%s tenant=%s model=%s", j->id, j->tenant, j->name);
        ftstate_persist(j);
    }
    ftlife_pump(st);
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
        ftlife_pump(st);
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

static void train_done(ftjob *j, ftrun *c) {
    ftjob_store *st = j->st;
    j->pid = 0;
    if (j->status == ST_RUNNING && !st->stopping) ftrun_tail_metrics(c); // the last lines
    if (j->status != ST_RUNNING) { // cancelled: nothing of it may remain
        util_rm_rf(j->work_dir);
        ftstate_persist(j);
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
        ftrun_error_line(c, why, sizeof why);
        if (c->term_signal) snprintf(msg, sizeof msg, "Training failed: train was killed by signal %d", c->term_signal);
        else snprintf(msg, sizeof msg, "Training failed (train exited with status %lld): %s", (long long)c->exit_status,
                      why[0] ? why : "no message");
        util_rm_rf(j->work_dir);
        fail(j, "training_failed", NULL, msg);
        return;
    }
    ftstate_event(j, "info", NULL, "Training finished at step %lld; publishing the model", (long long)j->step);
    ftstate_persist(j);
    publish(j);
}

// The dry run is done (ftjob_run.h): judge it unless the server stops (the
// job then validates again at the next start).
static void validation_exited(ftjob *j, ftrun *c) {
    ftjob_store *st = j->st;
    st->validating = 0;
    if (!st->stopping) validate_done(j, c);
    ftlife_pump(st);
}

static void training_exited(ftjob *j, ftrun *c) {
    train_done(j, c);
    ftlife_pump(j->st);
}

static int running_count(const ftjob_store *st) {
    int n = 0;
    for (int i = 0; i < ftstate_count(st); i++) n += ftstate_at(st, i)->status == ST_RUNNING;
    return n;
}

void ftlife_pump(ftjob_store *st) {
    if (st->stopping) return;
    for (int i = 0; i < ftstate_count(st) && !st->validating; i++) {
        ftjob *j = ftstate_at(st, i);
        if (j->status == ST_VALIDATING && !j->child) start_validation(j);
    }
    for (int i = 0; i < ftstate_count(st) && running_count(st) < st->cfg.workers; i++)
        if (ftstate_at(st, i)->status == ST_QUEUED) start_training(ftstate_at(st, i));
}

int ftlife_cancel(ftjob *j) {
    if (terminal(j->status)) return -1;
    finish(j, ST_CANCELLED);
    ftstate_event(j, "info", NULL, "Fine-tuning job cancelled");
    log_line("info", "ftjobs", "job cancelled job=%s tenant=%s", j->id, j->tenant);
    if (j->child) ftrun_kill(j->child); // the work folder goes when it has exited
    ftstate_persist(j);
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
        log_line("warn", "ftjobs", "killed the train process a previous server left running job=%s pid=%ld", j->id,
                 j->pid);
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
            log_line("warn", "ftjobs", "the model of job=%s is gone from the adapters folder model=%s", j->id, j->name);
        free(p);
    }
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
            log_line("warn", "ftjobs", "removed leftover folder=%s", p ? p : de->d_name);
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
    st->opening = 1; // the loop does not run yet: settling writes states at once
    if (ftstate_load(st, err) != 0) goto fail;
    clean_adapters_dir(st);
    for (int i = 0; i < ftstate_count(st); i++) settle(ftstate_at(st, i));
    st->opening = 0;
    log_line("info", "ftjobs", "jobs dir=%s jobs=%d train=%s workers=%d", st->jobs_dir, ftstate_count(st),
             st->train_bin, st->cfg.workers);
    ftlife_pump(st);
    return st;
fail:
    ftjob_free(st);
    return NULL;
}

void ftjob_stop(ftjob_store *st) {
    if (!st || st->stopping) return;
    st->stopping = 1;
    // Kill and stop listening: pipes are closed now (a grandchild such as
    // gnuplot may hold them open); the exits arrive while the loop drains,
    // and the states they record are written before it ends (statefile.h).
    for (int i = 0; i < ftstate_count(st); i++)
        if (ftstate_at(st, i)->child) ftrun_stop(ftstate_at(st, i)->child);
}

void ftjob_free(ftjob_store *st) {
    if (!st) return;
    for (int i = 0; i < ftstate_count(st); i++) ftstate_job_free(ftstate_at(st, i));
    store_free(&st->jobs);
    free(st->data_dir);
    free(st->adapters_dir);
    free(st->model_dir);
    free(st->base_id);
    free(st->train_bin);
    free(st->jobs_dir);
    free(st);
}

