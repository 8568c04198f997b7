// echo: the test engine behind `serve --echo-engine MS` (echo.h).
//
// A thread that "generates" each request's prompt tokens back, one token
// per choice every delay_ms, and hands them to the loop with uv_async_send:
// the shape a real engine has, without a model. Its sampler results carry
// made-up log probabilities (-0.5 for the token, then alternatives).
#include "echo.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.h"
#include "log.h"

static void noop_close(uv_handle_t *h) { (void)h; }

typedef struct echo_seq {
    srv_request *r;
    int pos[API_MAX_N];
    int done[API_MAX_N];
    int cancel[API_MAX_N];
    struct echo_seq *next;
} echo_seq;

typedef struct echo_event {
    srv_request *r;
    int index;
    int finish;          // 0 = token
    srv_finish reason;
    int count;
    sampler_result res;
    struct echo_event *next;
} echo_event;

struct echo {
    uv_async_t async;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    echo_seq *seqs;
    echo_event *head, *tail;
    int quit;
    int delay_ms;
    int started;
};

static void echo_post(echo *e, echo_event *ev) {
    ev->next = NULL;
    if (e->tail) e->tail->next = ev;
    else e->head = ev;
    e->tail = ev;
}

// Delivers queued events on the loop thread.
static void echo_deliver(echo *e) {
    pthread_mutex_lock(&e->mu);
    echo_event *ev = e->head;
    e->head = e->tail = NULL;
    pthread_mutex_unlock(&e->mu);
    while (ev) {
        echo_event *next = ev->next;
        srv_sink *k = &ev->r->sink;
        if (ev->finish) k->on_finish(k->ctx, ev->index, ev->reason, ev->count);
        else k->on_token(k->ctx, ev->index, &ev->res);
        free(ev);
        ev = next;
    }
}

static void echo_on_async(uv_async_t *a) { echo_deliver(a->data); }

// One step: a token (or a finish) for every live choice. Called with mu held.
static int echo_step(echo *e) {
    int any = 0;
    for (echo_seq **pp = &e->seqs; *pp;) {
        echo_seq *q = *pp;
        srv_request *r = q->r;
        int live = 0;
        for (int i = 0; i < r->n; i++) {
            if (q->done[i]) continue;
            echo_event *ev = calloc(1, sizeof *ev);
            if (!ev) continue;
            ev->r = r;
            ev->index = i;
            int limit = r->max_tokens < r->n_prompt ? r->max_tokens : r->n_prompt;
            if (q->cancel[i] || q->pos[i] >= limit) {
                ev->finish = 1;
                ev->reason = q->cancel[i] ? SRV_FINISH_CANCEL
                                          : (r->max_tokens < r->n_prompt ? SRV_FINISH_LENGTH : SRV_FINISH_STOP);
                ev->count = q->pos[i];
                q->done[i] = 1;
            } else {
                ev->res.token = r->prompt[q->pos[i]++];
                ev->res.logprob = -0.5f;
                ev->res.n_top = r->sampling.top_logprobs;
                for (int k = 0; k < ev->res.n_top; k++) {
                    ev->res.top[k].token = k == 0 ? ev->res.token : (int32_t)((ev->res.token + k) % 1000);
                    ev->res.top[k].logprob = -0.5f - (float)k;
                }
                live = 1;
            }
            echo_post(e, ev);
            any = 1;
        }
        if (!live) {
            int all = 1;
            for (int i = 0; i < r->n; i++) all &= q->done[i];
            if (all) {
                *pp = q->next;
                free(q);
                continue;
            }
        }
        pp = &q->next;
    }
    return any;
}

static void *echo_main(void *arg) {
    echo *e = arg;
    pthread_mutex_lock(&e->mu);
    while (!e->quit) {
        if (!e->seqs) {
            pthread_cond_wait(&e->cv, &e->mu);
            continue;
        }
        int any = echo_step(e);
        pthread_mutex_unlock(&e->mu);
        if (any) uv_async_send(&e->async);
        struct timespec ts = {.tv_sec = e->delay_ms / 1000, .tv_nsec = (long)(e->delay_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        pthread_mutex_lock(&e->mu);
    }
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

static int echo_submit(void *ctx, srv_request *r, err_t *err) {
    echo *e = ctx;
    echo_seq *q = calloc(1, sizeof *q);
    if (!q) return err_set(err, "echo engine: out of memory");
    q->r = r;
    pthread_mutex_lock(&e->mu);
    q->next = e->seqs;
    e->seqs = q;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    return SRV_SUBMIT_OK;
}

static void echo_cancel(void *ctx, srv_request *r, int index) {
    echo *e = ctx;
    pthread_mutex_lock(&e->mu);
    for (echo_seq *q = e->seqs; q; q = q->next)
        if (q->r == r)
            for (int i = 0; i < r->n; i++)
                if (index < 0 || index == i) q->cancel[i] = 1;
    pthread_mutex_unlock(&e->mu);
}

static void echo_stop(void *ctx) {
    echo *e = ctx;
    pthread_mutex_lock(&e->mu);
    e->quit = 1;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    pthread_join(e->thread, NULL);
    e->started = 0;
    // Whatever the thread posted, then a cancel for every choice still out.
    pthread_mutex_lock(&e->mu);
    for (echo_seq *q = e->seqs; q; q = q->next)
        for (int i = 0; i < q->r->n; i++) q->cancel[i] = 1;
    echo_step(e);
    pthread_mutex_unlock(&e->mu);
    echo_deliver(e);
    uv_close((uv_handle_t *)&e->async, noop_close);
}

void echo_free(echo *e) {
    if (!e) return;
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
    free(e);
}

echo *echo_new(srv *s, int delay_ms, err_t *err) {
    echo *e = calloc(1, sizeof *e);
    if (!e) {
        err_set(err, "out of memory");
        return NULL;
    }
    e->delay_ms = delay_ms > 0 ? delay_ms : 1;
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    if (uv_async_init(srv_loop(s), &e->async, echo_on_async) != 0) {
        echo_free(e);
        err_set(err, "echo engine: cannot create its async handle");
        return NULL;
    }
    e->async.data = e;
    if (pthread_create(&e->thread, NULL, echo_main, e) != 0) {
        uv_close((uv_handle_t *)&e->async, noop_close);
        uv_run(srv_loop(s), UV_RUN_NOWAIT);
        echo_free(e);
        err_set(err, "echo engine: cannot start its thread");
        return NULL;
    }
    e->started = 1;
    srv_engine eng = {.ctx = e, .submit = echo_submit, .cancel = echo_cancel, .stop = echo_stop};
    srv_set_engine(s, &eng);
    log_line("info", "server", "engine=echo delay_ms=%d (test engine: repeats the prompt)", e->delay_ms);
    return e;
}
