// sched: continuous batching over model_forward. See sched.h for the step
// loop, sched_int.h for the threads and who touches what, and
// sched_adapters.c for the adapter loads and slots.
#include "sched_int.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "registry.h"
#include "util.h"

#define SCHED_DEFAULT_SEQS 16
#define SCHED_DEFAULT_BATCH 512
#define SCHED_DEFAULT_QUEUE 256
#define SCHED_DEFAULT_MODEL_LEN 8192
#define SCHED_DEFAULT_BLOCK 16
#define SCHED_KV_BUDGET_BYTES (1LL << 30)

// ---- logging ------------------------------------------------------------------

static const char *reason_name(srv_finish r) {
    static const char *n[] = {"stop", "length", "cancel", "error"};
    return n[r];
}

// ---- the outbox (any thread posts; the loop thread delivers) ------------------

static void post_locked(sched *e, event *ev) {
    ev->next = NULL;
    if (e->out_tail) e->out_tail->next = ev;
    else e->out_head = ev;
    e->out_tail = ev;
}

static void deliver(sched *e) {
    pthread_mutex_lock(&e->mu);
    event *ev = e->out_head;
    e->out_head = e->out_tail = NULL;
    pthread_mutex_unlock(&e->mu);
    while (ev) {
        event *next = ev->next;
        sreq *q = ev->q;
        srv_sink *k = &ev->r->sink;
        if (ev->finish) {
            k->on_finish(k->ctx, ev->index, ev->reason, ev->count); // r may be gone after this
            if (++q->delivered == q->n) free(q);
        } else if (ev->vec) {
            if (k->on_embedding) k->on_embedding(k->ctx, ev->vec, ev->dim);
            free(ev->vec);
        } else {
            k->on_token(k->ctx, ev->index, &ev->res);
        }
        free(ev);
        ev = next;
    }
}

static void on_async(uv_async_t *a) { deliver(a->data); }

void sched_post_locked(sched *e, event *ev) { post_locked(e, ev); }

// ---- sequences ------------------------------------------------------------------

static int64_t seq_total(const seq *s) { return (int64_t)s->q->r->n_prompt + s->n_gen; }

static void run_remove(sched *e, seq *s) {
    for (int i = 0; i < e->n_run; i++)
        if (e->run[i] == s) {
            memmove(&e->run[i], &e->run[i + 1], (size_t)(e->n_run - i - 1) * sizeof *e->run);
            e->n_run--;
            return;
        }
}

static void wait_remove(sched *e, seq *s) {
    for (seq **pp = &e->wait_head; *pp; pp = &(*pp)->next)
        if (*pp == s) {
            *pp = s->next;
            s->next = NULL;
            return;
        }
}

// Gives back what a running sequence holds in the KV and its slot.
static void seq_release(sched *e, seq *s) {
    if (s->kvs >= 0) kv_seq_close(e->kv, s->kvs);
    s->kvs = -1;
    s->n_past = 0;
    if (s->slot >= 0) e->slots[s->slot].refs--;
    s->slot = -1;
}

// Ends a sequence (engine thread, or the loop thread after the join):
// frees its state and posts its one finish. Must not hold mu.
static void seq_finish(sched *e, seq *s, srv_finish reason) {
    if (s->state == SEQ_RUN) run_remove(e, s);
    else if (s->state == SEQ_WAIT) wait_remove(e, s);
    int was_waiting = s->state == SEQ_WAIT;
    seq_release(e, s);
    s->state = SEQ_DONE;
    sampler_state_free(s->ss);
    s->ss = NULL;
    free(s->gen);
    s->gen = NULL;
    free(s->pool);
    s->pool = NULL;
    sched_grammar_seq_close(s);
    event *ev = calloc(1, sizeof *ev);
    pthread_mutex_lock(&e->mu);
    if (was_waiting) e->n_queued--;
    if (reason == SRV_FINISH_CANCEL) e->st.cancelled++;
    if (ev) {
        *ev = (event){.q = s->q, .r = s->q->r, .index = s->index, .finish = 1, .reason = reason, .count = s->n_gen};
        post_locked(e, ev);
    }
    pthread_mutex_unlock(&e->mu);
    if (!ev) log_line("error", "sched", "out of memory posting a finish request=%llu", (unsigned long long)s->q->r->id);
    if (reason == SRV_FINISH_CANCEL || reason == SRV_FINISH_ERROR)
        log_line(reason == SRV_FINISH_ERROR ? "warn" : "info", "sched", "finished request=%llu choice=%d reason=%s generated=%d",
              (unsigned long long)s->q->r->id, s->index, reason_name(reason), s->n_gen);
}

void sched_seq_finish(sched *e, seq *s, srv_finish reason) { seq_finish(e, s, reason); }

// Back to the front of the waiting list; its KV is recomputed on readmission
// (the sampler state and generated tokens are kept, so results are the same).
static void seq_preempt(sched *e, seq *s) {
    run_remove(e, s);
    seq_release(e, s);
    s->state = SEQ_WAIT;
    s->planned = 0;
    s->next = e->wait_head;
    e->wait_head = s;
    pthread_mutex_lock(&e->mu);
    e->n_queued++;
    e->st.preempted++;
    pthread_mutex_unlock(&e->mu);
    log_line("info", "sched", "preempted request=%llu choice=%d (KV blocks exhausted; recomputed later)",
          (unsigned long long)s->q->r->id, s->index);
}

// ---- admission ------------------------------------------------------------------

static void admit(sched *e) {
    seq *s = e->wait_head;
    while (s && e->n_run < e->o.max_num_seqs) {
        seq *next = s->next;
        int slot = sched_adapter_slot(e, s);
        if (slot == SCHED_SLOT_WAIT) {
            s = next;
            continue;
        }
        if (slot == SCHED_SLOT_FAILED) {
            aload *l = sched_load_find(e, s->q->r);
            log_line("error", "sched", "adapter failed request=%llu adapter=%s error=%s", (unsigned long long)s->q->r->id,
                  s->q->r->adapter ? s->q->r->adapter : "?", l ? l->err.msg : "?");
            seq_finish(e, s, SRV_FINISH_ERROR);
            s = next;
            continue;
        }
        err_t err = {{0}};
        int kvs = kv_seq_open(e->kv, &err);
        if (kvs < 0) break;
        if (kv_seq_reserve(e->kv, kvs, seq_total(s), &err) < 0) {
            kv_seq_close(e->kv, kvs);
            if (e->n_run == 0) { // nothing will free blocks: it can never fit
                log_line("error", "sched", "request=%llu does not fit in the KV pool: %s", (unsigned long long)s->q->r->id,
                      err.msg);
                seq_finish(e, s, SRV_FINISH_ERROR);
                s = next;
                continue;
            }
            break; // first come, first served: wait for blocks
        }
        wait_remove(e, s);
        s->state = SEQ_RUN;
        s->kvs = kvs;
        s->n_past = 0;
        s->slot = slot;
        s->admitted = ++e->admit_tick;
        if (slot >= 0) {
            e->slots[slot].refs++;
            e->slots[slot].last = ++e->tick;
        }
        e->run[e->n_run++] = s;
        pthread_mutex_lock(&e->mu);
        e->n_queued--;
        pthread_mutex_unlock(&e->mu);
        s = next;
    }
    sched_loads_prune(e);
}

// ---- one step ---------------------------------------------------------------------

// Running sequences in batch priority: decoders (one token left to feed)
// first, then prefills, each in admission order.
static int plan_cmp(const void *a, const void *b) {
    const seq *x = *(seq *const *)a, *y = *(seq *const *)b;
    int dx = seq_total(x) - x->n_past > 1, dy = seq_total(y) - y->n_past > 1;
    if (dx != dy) return dx - dy;
    return x->admitted < y->admitted ? -1 : x->admitted > y->admitted;
}

static int slot_cmp(const void *a, const void *b) {
    const seq *x = *(seq *const *)a, *y = *(seq *const *)b;
    if (x->slot != y->slot) return x->slot < y->slot ? -1 : 1;
    return x->admitted < y->admitted ? -1 : x->admitted > y->admitted;
}

static seq *latest_running(sched *e) {
    seq *v = NULL;
    for (int i = 0; i < e->n_run; i++)
        if (!v || e->run[i]->admitted > v->admitted) v = e->run[i];
    return v;
}

// Chooses each running sequence's tokens for this step within the token
// budget and makes room for them in the KV, preempting when blocks run out.
// Returns the number of sequences in e->order with planned > 0.
static int plan(sched *e) {
    int n = e->n_run;
    memcpy(e->order, e->run, (size_t)n * sizeof *e->order);
    qsort(e->order, (size_t)n, sizeof *e->order, plan_cmp);
    int left = e->o.max_batched_tokens;
    for (int i = 0; i < n; i++) {
        seq *s = e->order[i];
        s->planned = 0;
        if (s->state != SEQ_RUN || left == 0) continue;
        int64_t todo = seq_total(s) - s->n_past;
        int count = todo < left ? (int)todo : left;
        err_t err = {{0}};
        while (s->state == SEQ_RUN && kv_seq_reserve(e->kv, s->kvs, s->n_past + count, &err) < 0) {
            seq *v = latest_running(e);
            if (v == s && e->n_run == 1) {
                log_line("warn", "sched", "request=%llu outgrew the KV pool: %s", (unsigned long long)s->q->r->id, err.msg);
                seq_finish(e, s, SRV_FINISH_LENGTH);
                break;
            }
            left += v->planned;
            seq_preempt(e, v);
        }
        if (s->state != SEQ_RUN) continue;
        s->planned = count;
        left -= count;
    }
    int k = 0;
    for (int i = 0; i < n; i++)
        if (e->order[i]->state == SEQ_RUN && e->order[i]->planned > 0) e->order[k++] = e->order[i];
    return k;
}

static void emit_token(sched *e, seq *s, const sampler_result *res) {
    event *ev = calloc(1, sizeof *ev);
    pthread_mutex_lock(&e->mu);
    e->st.generation_tokens++;
    if (ev) {
        *ev = (event){.q = s->q, .r = s->q->r, .index = s->index, .res = *res};
        post_locked(e, ev);
    }
    pthread_mutex_unlock(&e->mu);
}

// Takes the token sampled for s and decides whether s goes on.
static void took_token(sched *e, seq *s, const sampler_result *res) {
    const srv_request *r = s->q->r;
    int id = res->token;
    if (id < 0) {
        if (sched_grammar_allowed(s) && s->n_allowed == 0) sched_grammar_log_dead_end(e, s);
        else
            log_line("error", "sched", "sampling failed request=%llu choice=%d: no finite logit%s",
                     (unsigned long long)r->id, s->index, sched_grammar_allowed(s) ? " among the allowed tokens" : "");
        seq_finish(e, s, SRV_FINISH_ERROR);
        return;
    }
    if (sched_grammar_took(e, s, res) < 0) {
        seq_finish(e, s, SRV_FINISH_ERROR);
        return;
    }
    s->gen[s->n_gen++] = id;
    emit_token(e, s, res);
    if (res->finish == SAMPLER_FINISH_STOP) seq_finish(e, s, SRV_FINISH_STOP);
    else if (s->n_gen >= r->max_tokens || seq_total(s) > e->o.max_model_len) seq_finish(e, s, SRV_FINISH_LENGTH);
}

// Samples every wanted sequence's next token in one backend call on the
// logits the forward left in backend memory: only the tokens (and any
// logprobs asked for) come back.
static void sample_wanted(sched *e, int W) {
    for (int w = 0; w < W; w++) {
        seq *s = e->wanted[w];
        e->jobs[w] = (sampler_job){s->ss, &s->q->r->sampling, sched_grammar_allowed(s)};
    }
    model_view v;
    model_get_view(e->m, &v);
    sampler_sample_batch(v.bk, model_logits(e->m), W, e->V, e->jobs, e->results);
    for (int w = 0; w < W; w++) took_token(e, e->wanted[w], &e->results[w]);
}

static void step(sched *e) {
    int n = plan(e);
    if (n == 0) return;
    double t0 = util_now_s();
    qsort(e->order, (size_t)n, sizeof *e->order, slot_cmp); // one LoRA segment per slot
    // Embedding sequences go apart (sched_embed.c); order keeps the rest.
    int n_emb = 0, n_gen = 0;
    for (int i = 0; i < n; i++) {
        if (e->order[i]->q->r->embed) e->emb[n_emb++] = e->order[i];
        else e->order[n_gen++] = e->order[i];
    }
    n = n_gen;
    int T = 0, W = 0, prompt_tokens = n_emb > 0 ? sched_embed_step(e, e->emb, n_emb) : 0;
    if (n == 0) goto stats;
    for (int i = 0; i < n; i++) {
        seq *s = e->order[i];
        const srv_request *r = s->q->r;
        int64_t total = seq_total(s);
        for (int k = 0; k < s->planned; k++, T++) {
            int64_t p = s->n_past + k;
            e->b_tok[T] = p < r->n_prompt ? r->prompt[p] : s->gen[p - r->n_prompt];
            e->b_pos[T] = (int32_t)p;
            e->b_seq[T] = s->kvs;
            e->b_ad[T] = s->slot;
            e->b_want[T] = p == total - 1;
            if (p < r->n_prompt) prompt_tokens++;
        }
        if (s->n_past + s->planned == total) e->wanted[W++] = s;
    }
    model_batch b = {T, e->b_tok, e->b_pos, e->b_seq, e->b_ad, e->b_want};
    err_t err = {{0}};
    sched_masks_begin(e, e->wanted, W); // computed on the mask threads while the forward runs
    int rc = model_forward(e->m, e->kv, &b, NULL, &err);
    sched_masks_end(e);
    if (rc < 0) {
        log_line("error", "sched", "forward failed tokens=%d sequences=%d: %s", T, n, err.msg);
        for (int i = 0; i < n; i++) seq_finish(e, e->order[i], SRV_FINISH_ERROR);
        return;
    }
    for (int i = 0; i < n; i++) e->order[i]->n_past += e->order[i]->planned;
    sample_wanted(e, W);
stats:;
    double dt = util_now_s() - t0;
    pthread_mutex_lock(&e->mu);
    e->st.steps++;
    e->st.prompt_tokens += prompt_tokens;
    metrics_observe_step(&e->st, dt, T);
    pthread_mutex_unlock(&e->mu);
}

// ---- the engine thread ----------------------------------------------------------

// Takes the inbox and the cancel flags (under mu), then finishes the
// cancelled sequences (outside it).
static void take_inputs(sched *e) {
    pthread_mutex_lock(&e->mu);
    e->kick = 0;
    seq **tail = &e->wait_head;
    while (*tail) tail = &(*tail)->next;
    *tail = e->in_head;
    e->in_head = e->in_tail = NULL;
    for (aload *l = e->loads; l; l = l->next) l->ready = l->state == LOAD_DONE;
    // Seen cancels become 2: finished below, outside the lock.
    for (seq *s = e->wait_head; s; s = s->next)
        if (s->cancel == 1) s->cancel = 2;
    for (int i = 0; i < e->n_run; i++)
        if (e->run[i]->cancel == 1) e->run[i]->cancel = 2;
    pthread_mutex_unlock(&e->mu);
    for (int i = e->n_run - 1; i >= 0; i--)
        if (e->run[i]->cancel == 2) seq_finish(e, e->run[i], SRV_FINISH_CANCEL);
    for (seq *s = e->wait_head, *next; s; s = next) {
        next = s->next;
        if (s->cancel == 2) seq_finish(e, s, SRV_FINISH_CANCEL);
    }
}

static void *engine_main(void *arg) {
    sched *e = arg;
    for (;;) {
        pthread_mutex_lock(&e->mu);
        int quit = e->quit;
        pthread_mutex_unlock(&e->mu);
        if (quit) break;
        take_inputs(e);
        admit(e);
        if (e->n_run > 0) {
            step(e);
            uv_async_send(&e->async);
            continue;
        }
        uv_async_send(&e->async); // cancels and errors of this pass
        // Nothing runs, so nothing waiting is held back by KV blocks or
        // slots: only new input or a finished adapter load can change that.
        pthread_mutex_lock(&e->mu);
        while (!e->quit && !e->kick) pthread_cond_wait(&e->cv, &e->mu);
        pthread_mutex_unlock(&e->mu);
    }
    return NULL;
}

// ---- srv_engine -----------------------------------------------------------------

static void sched_engine_stats(void *ctx, metrics_engine *out);

static void sreq_free(sreq *q) {
    for (int i = 0; i < q->n; i++) {
        sampler_state_free(q->seqs[i].ss);
        free(q->seqs[i].gen);
        free(q->seqs[i].pool);
        sched_grammar_seq_close(&q->seqs[i]);
    }
    free(q);
}

static int sched_submit(void *ctx, srv_request *r, err_t *err) {
    sched *e = ctx;
    if (r->n_prompt >= e->o.max_model_len)
        return err_set(err, "the prompt has %d tokens; this server's --max-model-len is %d", r->n_prompt,
                       e->o.max_model_len);
    pthread_mutex_lock(&e->mu);
    int busy = e->n_queued + r->n > e->o.max_queue;
    pthread_mutex_unlock(&e->mu);
    if (busy) return SRV_SUBMIT_BUSY;
    sreq *q = calloc(1, sizeof *q + (size_t)r->n * sizeof(seq));
    if (!q) return err_set(err, "out of memory");
    q->r = r;
    q->n = r->n;
    int64_t cap = r->max_tokens;
    if (cap > e->o.max_model_len) cap = e->o.max_model_len;
    for (int i = 0; i < r->n; i++) {
        seq *s = &q->seqs[i];
        *s = (seq){.q = q, .index = i, .state = SEQ_WAIT, .kvs = -1, .slot = -1};
        if (r->embed) { // prefill only: no sampler, no grammar
            s->gen = malloc(1);
            if (!s->gen || sched_embed_open(e, s, err) < 0) {
                if (!s->gen) err_set(err, "out of memory");
                sreq_free(q);
                return -1;
            }
            continue;
        }
        s->ss = sampler_state_new(e->V, r->sampling.seed + (uint64_t)i, err);
        s->gen = malloc((size_t)cap * sizeof *s->gen + 1);
        if (!s->ss || !s->gen || sampler_state_prompt(s->ss, r->prompt, r->n_prompt, err) < 0 ||
            sched_grammar_seq_open(e, s, err) < 0) {
            if (!s->gen) err_set(err, "out of memory");
            sreq_free(q);
            return -1;
        }
        s->next = i + 1 < r->n ? &q->seqs[i + 1] : NULL;
    }
    r->engine_data = q;
    pthread_mutex_lock(&e->mu);
    if (e->in_tail) e->in_tail->next = &q->seqs[0];
    else e->in_head = &q->seqs[0];
    e->in_tail = &q->seqs[r->n - 1];
    e->n_queued += r->n;
    e->kick = 1;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    return SRV_SUBMIT_OK;
}

static void sched_cancel(void *ctx, srv_request *r, int index) {
    sched *e = ctx;
    sreq *q = r->engine_data;
    if (!q) return;
    pthread_mutex_lock(&e->mu);
    for (int i = 0; i < q->n; i++)
        if ((index < 0 || index == i) && !q->seqs[i].cancel) q->seqs[i].cancel = 1;
    e->kick = 1;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

static void noop_close(uv_handle_t *h) { (void)h; }

static void sched_stop(void *ctx) {
    sched *e = ctx;
    pthread_mutex_lock(&e->mu);
    e->quit = 1;
    pthread_cond_broadcast(&e->cv);
    pthread_cond_broadcast(&e->lcv);
    pthread_mutex_unlock(&e->mu);
    if (e->started) pthread_join(e->thread, NULL);
    if (e->loader_started) pthread_join(e->loader, NULL);
    e->started = e->loader_started = 0;
    // The threads are gone: this thread owns everything now.
    seq **tail = &e->wait_head;
    while (*tail) tail = &(*tail)->next;
    *tail = e->in_head;
    e->in_head = e->in_tail = NULL;
    while (e->n_run > 0) seq_finish(e, e->run[e->n_run - 1], SRV_FINISH_CANCEL);
    while (e->wait_head) seq_finish(e, e->wait_head, SRV_FINISH_CANCEL);
    while (e->loads) sched_load_remove(e, e->loads);
    deliver(e);
    uv_close((uv_handle_t *)&e->async, noop_close);
}

// ---- create / free ----------------------------------------------------------------

sched_opts sched_opts_default(void) {
    return (sched_opts){.max_num_seqs = SCHED_DEFAULT_SEQS, .max_batched_tokens = SCHED_DEFAULT_BATCH,
                        .max_queue = SCHED_DEFAULT_QUEUE, .kv_block_size = SCHED_DEFAULT_BLOCK};
}

// Fills the 0 fields of o from the defaults and the model.
static int resolve_opts(sched *e, const sched_opts *in, err_t *err) {
    sched_opts o = in ? *in : sched_opts_default(), d = sched_opts_default();
    if (o.max_num_seqs <= 0) o.max_num_seqs = d.max_num_seqs;
    if (o.max_batched_tokens <= 0) o.max_batched_tokens = d.max_batched_tokens;
    if (o.max_queue <= 0) o.max_queue = d.max_queue;
    if (o.kv_block_size <= 0) o.kv_block_size = d.kv_block_size;
    int64_t mpe = e->cfg->max_position_embeddings;
    if (o.max_model_len <= 0) o.max_model_len = (int)(mpe < SCHED_DEFAULT_MODEL_LEN ? mpe : SCHED_DEFAULT_MODEL_LEN);
    if (o.max_model_len > mpe) o.max_model_len = (int)mpe;
    if (o.max_batched_tokens < o.max_num_seqs)
        return err_set(err, "--max-num-batched-tokens %d must be at least --max-num-seqs %d", o.max_batched_tokens,
                       o.max_num_seqs);
    int per_seq = (o.max_model_len + o.kv_block_size - 1) / o.kv_block_size;
    if (o.kv_blocks <= 0) {
        // bytes per token of the model's KV dtype: a bf16 cache fits twice the blocks of an f32 one
        int64_t block_bytes = model_kv_bytes_per_token(e->m) * o.kv_block_size;
        int64_t want = (int64_t)per_seq * o.max_num_seqs, cap = SCHED_KV_BUDGET_BYTES / block_bytes;
        o.kv_blocks = (int)(want < cap ? want : cap);
        if (o.kv_blocks < per_seq) o.kv_blocks = per_seq;
    }
    if (o.kv_blocks < per_seq)
        return err_set(err, "--kv-blocks %d holds fewer than one sequence of --max-model-len %d (%d blocks of %d)",
                       o.kv_blocks, o.max_model_len, per_seq, o.kv_block_size);
    e->o = o;
    return 0;
}

sched *sched_new(srv *s, model *m, const sched_opts *o, err_t *err) {
    sched *e = calloc(1, sizeof *e);
    if (!e) {
        err_set(err, "out of memory");
        return NULL;
    }
    e->s = s;
    e->m = m;
    e->cfg = model_get_config(m);
    e->V = e->cfg->vocab_size;
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    pthread_cond_init(&e->lcv, NULL);
    if (resolve_opts(e, o, err) < 0) goto fail;
    if (model_max_tokens(m) < e->o.max_batched_tokens && model_reserve(m, e->o.max_batched_tokens, err) < 0)
        goto fail;
    e->kv = model_kv_new(m, e->o.kv_block_size, e->o.kv_blocks, e->o.max_num_seqs, e->o.max_model_len, err);
    if (!e->kv || model_reserve_logits(m, e->o.max_num_seqs, err) < 0) goto fail;
    size_t T = (size_t)e->o.max_batched_tokens, S = (size_t)e->o.max_num_seqs;
    e->n_slots = model_max_slots(m);
    e->slots = calloc((size_t)e->n_slots, sizeof *e->slots);
    e->run = calloc(S, sizeof *e->run);
    e->order = calloc(S, sizeof *e->order);
    e->wanted = calloc(S, sizeof *e->wanted);
    e->b_tok = malloc(T * sizeof *e->b_tok);
    e->b_pos = malloc(T * sizeof *e->b_pos);
    e->b_seq = malloc(T * sizeof *e->b_seq);
    e->b_ad = malloc(T * sizeof *e->b_ad);
    e->b_want = malloc(T);
    e->jobs = malloc(S * sizeof *e->jobs);
    e->results = malloc(S * sizeof *e->results);
    e->emb = calloc(S, sizeof *e->emb);
    e->hid = malloc(T * (size_t)e->cfg->hidden_size * sizeof *e->hid);
    if (!e->emb || !e->hid ||!e->slots || !e->run || !e->order || !e->wanted || !e->b_tok || !e->b_pos || !e->b_seq || !e->b_ad ||
        !e->b_want || !e->jobs || !e->results) {
        err_set(err, "out of memory");
        goto fail;
    }
    if (sched_grammar_init(e, srv_tokenizer(s), err) < 0) goto fail;
    if (uv_async_init(srv_loop(s), &e->async, on_async) != 0) {
        err_set(err, "cannot create the engine's async handle");
        goto fail;
    }
    e->async.data = e;
    if (pthread_create(&e->loader, NULL, sched_loader_main, e) != 0) {
        err_set(err, "cannot start the adapter loader thread");
        uv_close((uv_handle_t *)&e->async, noop_close);
        goto fail_async;
    }
    e->loader_started = 1;
    if (pthread_create(&e->thread, NULL, engine_main, e) != 0) {
        err_set(err, "cannot start the engine thread");
        sched_stop(e);
        goto fail_async;
    }
    e->started = 1;
    srv_engine eng = {.ctx = e, .submit = sched_submit, .cancel = sched_cancel, .stop = sched_stop,
                      .stats = sched_engine_stats, .max_lora_rank = model_max_lora_rank(e->m),
                      .embeddings = 1};
    srv_set_engine(s, &eng);
    log_line("info", "sched",
          "engine=model max_num_seqs=%d max_num_batched_tokens=%d max_model_len=%d kv_blocks=%d kv_block_size=%d "
          "kv_bytes_per_token=%lld max_loras=%d max_lora_rank=%d max_queue=%d",
          e->o.max_num_seqs, e->o.max_batched_tokens, e->o.max_model_len, e->o.kv_blocks, e->o.kv_block_size,
          (long long)model_kv_bytes_per_token(m), e->n_slots, model_max_lora_rank(m), e->o.max_queue);
    return e;
fail_async:
    uv_run(srv_loop(s), UV_RUN_NOWAIT); // lets the async handle close
fail:
    sched_free(e);
    return NULL;
}

void sched_free(sched *e) {
    if (!e) return;
    sched_grammar_free(e);
    for (int i = 0; e->slots && i < e->n_slots; i++) reg_entry_unref(e->slots[i].entry);
    free(e->slots);
    kv_free(e->kv);
    free(e->run);
    free(e->order);
    free(e->wanted);
    free(e->b_tok);
    free(e->b_pos);
    free(e->b_seq);
    free(e->b_ad);
    free(e->b_want);
    free(e->jobs);
    free(e->results);
    free(e->emb);
    free(e->hid);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
    pthread_cond_destroy(&e->lcv);
    free(e);
}

static void sched_engine_stats(void *ctx, metrics_engine *out) { sched_get_stats(ctx, out); }

void sched_get_stats(sched *e, sched_stats *st) {
    pthread_mutex_lock(&e->mu);
    *st = e->st;
    st->waiting = e->n_queued;
    pthread_mutex_unlock(&e->mu);
    // Read without the engine's lock: a snapshot for monitoring only.
    st->running = __atomic_load_n(&e->n_run, __ATOMIC_RELAXED);
    int used = 0;
    for (int i = 0; i < e->n_slots; i++) used += __atomic_load_n(&e->slots[i].entry, __ATOMIC_RELAXED) != NULL;
    st->adapters_resident = used;
    st->kv_bytes_per_token = model_kv_bytes_per_token(e->m);
}
