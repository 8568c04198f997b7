// statefile: whole-file rewrites off the loop thread. See statefile.h.
#include "statefile.h"

#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "log.h"
#include "util.h"

struct statefile {
    uv_loop_t *loop;
    char *path, *comp, *what;
    struct sf_write *inflight; // NULL when idle
    char *waiting;             // the newest text put while a write was in flight
    int freed;                 // statefile_free was called: free after the last write
    long writes, failures;
};

// One write: owns its text; reads f->path, which never changes.
typedef struct sf_write {
    uv_work_t work;
    statefile *f;
    char *text;
    err_t err;
    int rc;
} sf_write;

statefile *statefile_new(uv_loop_t *loop, const char *path, const char *comp, const char *what) {
    statefile *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    f->loop = loop;
    f->path = strdup(path);
    f->comp = strdup(comp);
    f->what = strdup(what);
    if (!f->path || !f->comp || !f->what) {
        statefile_free(f);
        return NULL;
    }
    return f;
}

static void destroy(statefile *f) {
    free(f->waiting);
    free(f->path);
    free(f->comp);
    free(f->what);
    free(f);
}

static void report(statefile *f, int rc, const char *why) {
    f->writes++;
    if (rc == 0) return;
    f->failures++;
    log_line("error", f->comp, "cannot record %s error=%s", f->what, why);
}

static void write_work(uv_work_t *w) {
    sf_write *op = w->data;
    op->rc = util_write_file_atomic(op->f->path, op->text, strlen(op->text), &op->err);
}

static void start(statefile *f, char *text);

static void write_done(uv_work_t *w, int status) {
    sf_write *op = w->data;
    statefile *f = op->f;
    report(f, status ? -1 : op->rc, status ? "cancelled" : op->err.msg);
    free(op->text);
    free(op);
    f->inflight = NULL;
    char *next = f->waiting;
    f->waiting = NULL;
    if (next) start(f, next);
    else if (f->freed) destroy(f);
}

// Queues a write of text (owned); nothing is in flight.
static void start(statefile *f, char *text) {
    sf_write *op = calloc(1, sizeof *op);
    if (op) {
        op->f = f;
        op->text = text;
        op->work.data = op;
    }
    if (!op || uv_queue_work(f->loop, &op->work, write_work, write_done) != 0) {
        free(op);
        free(text);
        report(f, -1, "cannot queue the write");
        if (f->freed) destroy(f);
        return;
    }
    f->inflight = op;
}

void statefile_put(statefile *f, char *text) {
    if (!text) {
        report(f, -1, "out of memory");
        return;
    }
    if (f->inflight) {
        free(f->waiting);
        f->waiting = text;
        return;
    }
    start(f, text);
}

int statefile_put_sync(statefile *f, char *text) {
    err_t e = {{0}};
    int rc = text ? util_write_file_atomic(f->path, text, strlen(text), &e) : -1;
    report(f, rc, text ? e.msg : "out of memory");
    free(text);
    return rc;
}

long statefile_writes(const statefile *f) { return f->writes; }
long statefile_failures(const statefile *f) { return f->failures; }

void statefile_free(statefile *f) {
    if (!f) return;
    if (f->inflight) f->freed = 1;
    else destroy(f);
}
