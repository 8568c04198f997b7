// watcher: the adapters folder, scanned into the server's current set. See
// watcher.h.
#include "watcher.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define WATCHER_DEFAULT_RESCAN_MS 2000
#define WATCHER_DEBOUNCE_MS 100

typedef struct scan_waiter {
    uint64_t after; // done once a scan numbered above this has finished
    void (*done)(void *arg);
    void *arg;
    struct scan_waiter *next;
} scan_waiter;

struct watcher {
    watcher_config cfg;
    uv_loop_t *loop;
    reg_set *set;
    uv_timer_t rescan_timer, debounce_timer;
    uv_fs_event_t watch;
    int watching;
    int stopping;
    // one scan at a time on the thread pool
    uv_work_t scan_work;
    int scanning, scan_again;
    const reg_snapshot *scan_prev;
    reg_snapshot *scan_result;
    reg_changes scan_changes;
    err_t scan_err;
    uint64_t scan_seq; // scans started
    scan_waiter *waiters;
};

static void log_changes(const reg_changes *c, metrics_requests *m) {
    for (int i = 0; i < c->n_added; i++)
        log_line("info", "registry", "added adapter=%s rank=%d alpha=%g modules=%d path=%s", c->added[i]->name,
              c->added[i]->rank, c->added[i]->alpha, c->added[i]->n_adapted, c->added[i]->path);
    for (int i = 0; i < c->n_replaced; i++)
        log_line("info", "registry", "replaced adapter=%s rank=%d alpha=%g modules=%d path=%s", c->replaced[i]->name,
              c->replaced[i]->rank, c->replaced[i]->alpha, c->replaced[i]->n_adapted, c->replaced[i]->path);
    for (int i = 0; i < c->n_removed; i++) log_line("info", "registry", "removed adapter=%s", c->removed[i]->name);
    for (int i = 0; i < c->n_failed; i++) {
        const reg_entry *f = c->failed[i];
        if (f->last_good)
            log_line("warn", "registry", "kept previous version adapter=%s path=%s error=%s", f->name, f->path,
                     f->error ? f->error : "?");
        else
            log_line("warn", "registry", "skipped adapter=%s path=%s error=%s", f->name, f->path,
                     f->error ? f->error : "?");
        if (m) metrics_count_adapter_failure(m, f->name);
    }
}

static void scan_work(uv_work_t *req) {
    watcher *w = req->data;
    memset(&w->scan_err, 0, sizeof w->scan_err);
    w->scan_result = reg_scan(w->cfg.dir, w->cfg.model, w->scan_prev, w->cfg.reserved, &w->scan_changes, &w->scan_err);
}

// Calls the waiters whose scan has finished (all of them when stopping).
static void wake_waiters(watcher *w, uint64_t finished) {
    scan_waiter **pp = &w->waiters;
    while (*pp) {
        scan_waiter *sw = *pp;
        if (sw->after < finished || w->stopping) {
            *pp = sw->next;
            sw->done(sw->arg);
            free(sw);
        } else {
            pp = &sw->next;
        }
    }
}

static void scan_done(uv_work_t *req, int status) {
    watcher *w = req->data;
    w->scanning = 0;
    if (w->scan_result && !w->stopping) {
        log_changes(&w->scan_changes, w->cfg.metrics);
        reg_set_replace_folder(w->set, w->scan_result);
    } else if (w->scan_result) {
        reg_snapshot_free(w->scan_result);
    } else if (!w->stopping) {
        log_line("warn", "registry", "scan failed: %s", w->scan_err.msg);
    }
    reg_changes_free(&w->scan_changes);
    w->scan_result = NULL;
    if (w->scan_again && !w->stopping) {
        w->scan_again = 0;
        watcher_scan(w);
    }
    wake_waiters(w, w->scanning ? w->scan_seq - 1 : w->scan_seq);
}

void watcher_scan(watcher *w) {
    if (!w || w->stopping) return;
    if (w->scanning) {
        w->scan_again = 1;
        return;
    }
    w->scanning = 1;
    w->scan_seq++;
    w->scan_prev = reg_set_folder(w->set); // read-only on the worker; only scan_done replaces it
    w->scan_work.data = w;
    if (uv_queue_work(w->loop, &w->scan_work, scan_work, scan_done) != 0) w->scanning = 0;
}

void watcher_rescan(watcher *w, void (*done)(void *arg), void *arg) {
    scan_waiter *sw = w && !w->stopping ? calloc(1, sizeof *sw) : NULL;
    if (!sw) {
        done(arg);
        return;
    }
    *sw = (scan_waiter){.after = w->scan_seq, .done = done, .arg = arg, .next = w->waiters};
    w->waiters = sw;
    watcher_scan(w);
}

int watcher_adapter_ready(const watcher *w, const char *name, char *why, size_t n) {
    const reg_snapshot *s = w ? reg_set_folder(w->set) : NULL;
    if (reg_find(s, name)) return 1;
    for (int i = 0; s && i < s->n; i++)
        if (strcmp(s->entries[i]->name, name) == 0 && s->entries[i]->error) {
            snprintf(why, n, "%s", s->entries[i]->error);
            return 0;
        }
    snprintf(why, n, "%s: not found in the adapters folder", name);
    return 0;
}

static void on_rescan_timer(uv_timer_t *t) { watcher_scan(t->data); }

static void on_watch(uv_fs_event_t *h, const char *name, int events, int status) {
    watcher *w = h->data;
    // A burst of events (a trainer's rename, a cp -r) becomes one scan.
    uv_timer_start(&w->debounce_timer, on_rescan_timer, WATCHER_DEBOUNCE_MS, 0);
}

watcher *watcher_open(uv_loop_t *loop, const watcher_config *cfg, reg_set *set, err_t *err) {
    watcher *w = calloc(1, sizeof *w);
    if (!w) {
        err_set(err, "out of memory");
        return NULL;
    }
    *w = (watcher){.cfg = *cfg, .loop = loop, .set = set};
    reg_changes ch;
    reg_snapshot *first = reg_scan(cfg->dir, cfg->model, NULL, cfg->reserved, &ch, err);
    if (!first) {
        free(w);
        return NULL;
    }
    log_changes(&ch, cfg->metrics);
    reg_changes_free(&ch);
    reg_set_replace_folder(set, first);
    log_line("info", "registry", "watching dir=%s adapters=%d", cfg->dir, reg_count(first));
    uint64_t every = cfg->rescan_ms ? cfg->rescan_ms : WATCHER_DEFAULT_RESCAN_MS;
    uv_timer_init(loop, &w->rescan_timer);
    uv_timer_init(loop, &w->debounce_timer);
    w->rescan_timer.data = w->debounce_timer.data = w;
    uv_timer_start(&w->rescan_timer, on_rescan_timer, every, every);
    if (uv_fs_event_init(loop, &w->watch) == 0) {
        w->watch.data = w;
        w->watching = 1;
        if (uv_fs_event_start(&w->watch, on_watch, cfg->dir, 0) != 0)
            log_line("warn", "registry", "no file watch on dir=%s: rescanning every %llu ms only", cfg->dir,
                  (unsigned long long)every);
    }
    return w;
}

static void noop_close(uv_handle_t *h) { (void)h; }

void watcher_stop(watcher *w) {
    if (!w || w->stopping) return;
    w->stopping = 1;
    wake_waiters(w, 0);
    uv_close((uv_handle_t *)&w->rescan_timer, noop_close);
    uv_close((uv_handle_t *)&w->debounce_timer, noop_close);
    if (w->watching) uv_close((uv_handle_t *)&w->watch, noop_close);
}

void watcher_free(watcher *w) { free(w); }
