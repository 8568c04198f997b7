// attention: causal GQA attention of a flat batch of tokens over a paged
// KV cache (layout in backend.h). One task per (token, query head); one
// pass over the keys with an online softmax (running max and sum, the
// accumulator rescaled when the max grows), so no scratch the size of the
// context is needed. A bf16 cache is read a row at a time into f32 (exact),
// so the math after the load is the f32 path's.
#include <math.h>

#include "cpu_ops.h"
#include "pool.h"

// One cache row of n values in dtype dt at element offset i, as f32: a
// pointer into an f32 cache, or the bf16 row converted into buf.
static const float *cache_row(const void *cache, bk_dtype dt, int64_t i, int n, float *buf) {
    if (dt == BK_DT_F32) return (const float *)cache + i;
    cpu_bf16_row(buf, (const uint16_t *)cache + i, n);
    return buf;
}

// k, v (T, KV) -> cache rows slot[t], f32 copied or rounded to bf16
void cpu_kv_store(void *k_cache, void *v_cache, const float *k, const float *v, const int32_t *slot, int T, int KV,
                  bk_dtype dtype) {
    for (int t = 0; t < T; t++) {
        int64_t dst = (int64_t)slot[t] * KV, src = (int64_t)t * KV;
        if (dtype == BK_DT_F32) {
            memcpy((float *)k_cache + dst, k + src, (size_t)KV * sizeof(float));
            memcpy((float *)v_cache + dst, v + src, (size_t)KV * sizeof(float));
            continue;
        }
        uint16_t *kc = (uint16_t *)k_cache + dst, *vc = (uint16_t *)v_cache + dst;
        for (int i = 0; i < KV; i++) {
            kc[i] = num_f32_to_bf16(k[src + i]);
            vc[i] = num_f32_to_bf16(v[src + i]);
        }
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

    float acc[BK_MAX_HEAD_DIM], vbuf[BK_MAX_HEAD_DIM];
    for (int d = 0; d < D; d++) acc[d] = 0.0f;
    float m = -INFINITY, l = 0.0f;
    for (int p = first; p <= pos; p++) {
        int64_t slot = (int64_t)table[p / a->block_size] * a->block_size + p % a->block_size;
        int64_t off = slot * KV + kvh * D;
        float s = a->kv_dtype == BK_DT_BF16 ? cpu_dot_bf16(q, (const uint16_t *)a->k_cache + off, D)
                                            : cpu_dot(q, (const float *)a->k_cache + off, D);
        cpu_softmax_step(s * a->scale, cache_row(a->v_cache, a->kv_dtype, off, D, vbuf), D, &m, &l, acc);
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
