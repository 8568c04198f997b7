// sched_embed: embedding requests in the step loop (srv_request.embed).
// Such a sequence is admitted, given KV blocks, planned and preempted like
// any other (its total is its prompt), so it shares the token budget with
// generation; but nothing is sampled for it. Each step, the embedding
// sequences' chunks run in one forward of their own after the generation
// batch (model_forward_hidden: the final-norm hidden states of the rows
// the pooling needs: every row for mean pooling, the last for last
// pooling). The rows are folded into seq.pool as chunks come; after the
// last chunk the vector is normalized, posted as an event and the
// sequence finishes with SRV_FINISH_STOP.
#include "sched_int.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"

int sched_embed_open(sched *e, seq *s, err_t *err) {
    if (s->q->r->n != 1) return err_set(err, "an embedding request has n = 1, got %d", s->q->r->n);
    if (!(s->pool = calloc((size_t)e->cfg->hidden_size, sizeof *s->pool))) return err_set(err, "out of memory");
    return 0;
}

static void post_vector(sched *e, seq *s) {
    int C = e->cfg->hidden_size;
    event *ev = calloc(1, sizeof *ev);
    float *v = malloc((size_t)C * sizeof *v);
    if (!ev || !v) {
        free(ev), free(v);
        log_line("error", "sched", "out of memory posting an embedding request=%llu", (unsigned long long)s->q->r->id);
        sched_seq_finish(e, s, SRV_FINISH_ERROR);
        return;
    }
    memcpy(v, s->pool, (size_t)C * sizeof *v);
    if (e->o.pooling == EMB_POOL_MEAN)
        for (int c = 0; c < C; c++) v[c] /= (float)s->q->r->n_prompt;
    emb_normalize(v, C);
    *ev = (event){.q = s->q, .r = s->q->r, .index = 0, .vec = v, .dim = C};
    pthread_mutex_lock(&e->mu);
    sched_post_locked(e, ev);
    pthread_mutex_unlock(&e->mu);
    sched_seq_finish(e, s, SRV_FINISH_STOP);
}

int sched_embed_step(sched *e, seq **emb, int n) {
    int C = e->cfg->hidden_size, mean = e->o.pooling == EMB_POOL_MEAN;
    int T = 0, prompt_tokens = 0;
    for (int i = 0; i < n; i++) {
        seq *s = emb[i];
        const srv_request *r = s->q->r;
        for (int k = 0; k < s->planned; k++, T++) {
            int64_t p = s->n_past + k;
            e->b_tok[T] = r->prompt[p];
            e->b_pos[T] = (int32_t)p;
            e->b_seq[T] = s->kvs;
            e->b_ad[T] = s->slot;
            e->b_want[T] = mean || p == r->n_prompt - 1;
        }
        prompt_tokens += s->planned;
    }
    model_batch b = {.n = T, .token = e->b_tok, .pos = e->b_pos, .seq = e->b_seq, .adapter = e->b_ad,
                     .want = e->b_want};
    err_t err = {{0}};
    if (model_forward_hidden(e->m, e->kv, &b, e->hid, &err) < 0) {
        log_line("error", "sched", "embedding forward failed tokens=%d sequences=%d: %s", T, n, err.msg);
        for (int i = 0; i < n; i++) sched_seq_finish(e, emb[i], SRV_FINISH_ERROR);
        return prompt_tokens;
    }
    const float *row = e->hid; // the wanted rows, in batch order
    for (int i = 0; i < n; i++) {
        seq *s = emb[i];
        int64_t end = s->n_past + s->planned, total = s->q->r->n_prompt;
        // A preempted sequence starts again from position 0: so does its sum.
        if (s->n_past == 0) memset(s->pool, 0, (size_t)C * sizeof *s->pool);
        if (mean) {
            for (int k = 0; k < s->planned; k++, row += C)
                for (int c = 0; c < C; c++) s->pool[c] += row[c];
        } else if (end == total) {
            memcpy(s->pool, row, (size_t)C * sizeof *s->pool);
            row += C;
        }
        s->n_past = end;
        if (end == total) post_vector(e, s);
    }
    return prompt_tokens;
}
