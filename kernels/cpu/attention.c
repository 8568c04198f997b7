// attention: causal GQA attention of a flat batch of tokens over a paged
// KV cache (layout in backend.h). One task per (token, query head); one
// pass over the keys with an online softmax (running max and sum, the
// accumulator rescaled when the max grows), so no scratch the size of the
// context is needed.
#include <math.h>

#include "cpu_ops.h"
#include "pool.h"

// k, v (T, KV) -> cache rows slot[t]
void cpu_kv_store(float *k_cache, float *v_cache, const float *k, const float *v, const int32_t *slot,
                  int T, int KV) {
    for (int t = 0; t < T; t++) {
        memcpy(k_cache + (int64_t)slot[t] * KV, k + (int64_t)t * KV, (size_t)KV * sizeof(float));
        memcpy(v_cache + (int64_t)slot[t] * KV, v + (int64_t)t * KV, (size_t)KV * sizeof(float));
    }
}

typedef struct attn_job {
    float *out;
    const float *q;
    const bk_attn_args *a;
} attn_job;

static void attn_task(void *ctx, int64_t task, int thread) {
    const attn_job *j = ctx;
    const bk_attn_args *a = j->a;
    int H = a->n_heads, D = a->head_dim, KV = a->n_kv_heads * D;
    int64_t t = task / H;
    int h = (int)(task % H);
    int kvh = h / (H / a->n_kv_heads);
    const float *q = j->q + (t * H + h) * D;
    const int32_t *table = a->block_table + (int64_t)a->seq[t] * a->table_stride;
    int pos = a->pos[t];
    int first = a->window > 0 && pos - a->window + 1 > 0 ? pos - a->window + 1 : 0;

    float acc[BK_MAX_HEAD_DIM];
    for (int d = 0; d < D; d++) acc[d] = 0.0f;
    float m = -INFINITY, l = 0.0f;
    for (int p = first; p <= pos; p++) {
        int64_t slot = (int64_t)table[p / a->block_size] * a->block_size + p % a->block_size;
        const float *k = a->k_cache + slot * KV + kvh * D;
        const float *v = a->v_cache + slot * KV + kvh * D;
        cpu_softmax_step(cpu_dot(q, k, D) * a->scale, v, D, &m, &l, acc);
    }
    float *o = j->out + (t * H + h) * D;
    float inv = 1.0f / l;
    for (int d = 0; d < D; d++) o[d] = acc[d] * inv;
}

// q (T, H, D) -> out (T, H, D)
void cpu_attention(float *out, const float *q, int T, const bk_attn_args *a) {
    attn_job j = {out, q, a};
    cpu_pool_run((int64_t)T * a->n_heads, attn_task, &j);
}
