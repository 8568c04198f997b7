// ftjob_run: a train child process. See ftjob_run.h.
#include "ftjob_run.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define FT_REPORT_MAX (256u << 10)
#define FT_ERRTAIL_MAX 2048

static void child_free(ftrun *c) {
    free(c->part_out.p);
    free(c->part_err.p);
    free(c->report.p);
    free(c->errtail.p);
    free(c->metrics_part.p);
    free(c->metrics_path);
    free(c);
}

// Every handle is closed: every line is in, the exit status too.
static void child_closed(uv_handle_t *h) {
    ftrun *c = h->data;
    if (--c->open > 0) return;
    if (c->job) {
        c->job->child = NULL;
        c->spec.on_done(c->job, c);
    }
    child_free(c);
}

static void close_once(uv_handle_t *h) {
    if (!uv_is_closing(h)) uv_close(h, child_closed);
}

static void child_line(ftrun *c, int is_err, const char *line) {
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
        log_line("info", "ftjobs", "train job=%s stderr: %s", j->id, line);
    } else if (!c->spec.training) {
        if (c->report.len < FT_REPORT_MAX) {
            util_buf_puts(&c->report, line);
            util_buf_puts(&c->report, "\n");
        }
    } else if (strncmp(line, "info train: step=", 17) != 0 && strncmp(line, "info train: eval", 16) != 0) {
        log_line("info", "ftjobs", "train job=%s: %s", j->id, line); // progress comes from the metrics file
    }
}

static void split_lines(ftrun *c, int is_err, const char *p, size_t n) {
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
    ftrun *c = s->data;
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
    ftrun *c = p->data;
    c->exit_status = status;
    c->term_signal = sig;
    close_once((uv_handle_t *)p);
    if (c->spec.training) close_once((uv_handle_t *)&c->tick);
}

void ftrun_tail_metrics(ftrun *c) {
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
                if (c->metrics_part.len) c->spec.on_metrics(c->job, c->metrics_part.p);
                c->metrics_part.len = 0;
                if (c->metrics_part.p) c->metrics_part.p[0] = '\0';
            }
        }
    }
    fclose(f);
}

static void on_tick(uv_timer_t *t) { ftrun_tail_metrics(t->data); }

ftrun *ftrun_spawn(ftjob *j, const ftrun_spec *spec, char *why, size_t n) {
    ftjob_store *st = j->st;
    ftrun *c = calloc(1, sizeof *c);
    if (!c) return snprintf(why, n, "out of memory"), NULL;
    c->job = j;
    c->spec = *spec;
    int training = spec->training;
    char **argv = spec->argv;
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
    c->spec.argv = NULL; // the caller's; uv_spawn has copied it
    c->open = training ? 4 : 3;
    if (rc != 0) {
        snprintf(why, n, "cannot start %s: %s", argv[0], uv_strerror(rc));
        c->job = NULL; // no job is judged for it
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

void ftrun_kill(ftrun *c) {
    if (c->killed) return;
    c->killed = 1;
    if (!uv_is_closing((uv_handle_t *)&c->proc)) uv_process_kill(&c->proc, SIGKILL);
}

void ftrun_stop(ftrun *c) {
    ftrun_kill(c);
    close_once((uv_handle_t *)&c->out);
    close_once((uv_handle_t *)&c->err);
    if (c->spec.training) close_once((uv_handle_t *)&c->tick);
}

void ftrun_error_line(const ftrun *c, char *out, size_t n) {
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
