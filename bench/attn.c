// bench/attn: the CPU attention op (kernels/cpu/attention.c) against the
// kernel it replaced (kept here only: one task per (token, query head), a
// per-key online softmax with libm expf, K/V rows widened per head), in
// the same run, alternated round by round; medians.
//
//   build/bench/attn [--rounds 15]
//
// Shape: Qwen2.5-0.5B (14 query heads, 2 KV heads, head_dim 64), paged
// cache of 16-slot blocks, bf16 and f32 caches. Cases: a 512-token prefill
// of one sequence (positions 0..511), decode of one sequence at context
// 512, decode of 16 sequences at context 512. Threads: the pool's default
// ($TESSERA_THREADS). Prints each case's old and new median in ms and
// old / new, and the largest |old - new| (both are f32 softmaxes of the
// same scores: a few ulp apart).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../core/util.h"
#include "cpu/cpu_ops.h"
#include "cpu/pool.h"

enum { H = 14, KVH = 2, D = 64, BS = 16, CTX = 512, NSEQ = 16, KV = KVH * D };

// ---- the previous kernel -----------------------------------------------------------

static const float *old_cache_row(const void *cache, bk_dtype dt, int64_t i, int n, float *buf) {
    if (dt == BK_DT_F32) return (const float *)cache + i;
    cpu_bf16_row(buf, (const uint16_t *)cache + i, n);
    return buf;
}

typedef struct old_job {
    float *out;
    const float *q;
    const bk_attn_args *a;
} old_job;

// The old kernel's bf16 key dot (the library's before the key-block
// attention): cpu_dot(a, widened b), the same bits, without a copy of b.
static float old_dot_bf16(const float *a, const uint16_t *b, int64_t n) {
    cpu_v4 lo = {0}, hi = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        lo += cpu_v4_load(a + i) * cpu_v4_load_bf16(b + i);
        hi += cpu_v4_load(a + i + 4) * cpu_v4_load_bf16(b + i + 4);
    }
    float s = cpu_v8_sum(lo, hi);
    for (; i < n; i++) s += a[i] * num_bf16_to_f32(b[i]);
    return s;
}

static void old_task(void *ctx, int64_t task, int thread) {
    const old_job *j = ctx;
    const bk_attn_args *a = j->a;
    int nh = a->n_heads, hd = a->head_dim, kv = a->n_kv_heads * hd;
    int64_t t = task / nh;
    int h = (int)(task % nh), kvh = h / (nh / a->n_kv_heads);
    const float *q = j->q + (t * nh + h) * hd;
    const int32_t *table = a->block_table + (int64_t)a->seq[t] * a->table_stride;
    int pos = a->pos[t], first = a->window > 0 && pos - a->window + 1 > 0 ? pos - a->window + 1 : 0;
    float acc[BK_MAX_HEAD_DIM], vbuf[BK_MAX_HEAD_DIM], m = -INFINITY, l = 0.0f;
    for (int d = 0; d < hd; d++) acc[d] = 0.0f;
    for (int p = first; p <= pos; p++) {
        int64_t slot = (int64_t)table[p / a->block_size] * a->block_size + p % a->block_size;
        int64_t off = slot * kv + kvh * hd;
        float s = a->kv_dtype == BK_DT_BF16 ? old_dot_bf16(q, (const uint16_t *)a->k_cache + off, hd)
                                            : cpu_dot(q, (const float *)a->k_cache + off, hd);
        cpu_softmax_step(s * a->scale, old_cache_row(a->v_cache, a->kv_dtype, off, hd, vbuf), hd, &m, &l, acc);
    }
    float *o = j->out + (t * nh + h) * hd, inv = 1.0f / l;
    for (int d = 0; d < hd; d++) o[d] = acc[d] * inv;
}

static void old_attention(float *out, const float *q, int T, const bk_attn_args *a) {
    old_job j = {out, q, a};
    cpu_pool_run((int64_t)T * a->n_heads, old_task, &j);
}

// ---- the bench --------------------------------------------------------------------

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_d(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return v[n / 2];
}

static void run_case(const char *name, int T, const bk_attn_args *a, const float *q, int rounds) {
    float *o_old = malloc((size_t)T * H * D * 4), *o_new = malloc((size_t)T * H * D * 4);
    double *t_old = malloc((size_t)rounds * sizeof(double)), *t_new = malloc((size_t)rounds * sizeof(double));
    int reps = T == 1 ? 200 : T < 64 ? 20 : 1;
    for (int r = 0; r < rounds; r++) {
        double t0 = now_ms();
        for (int k = 0; k < reps; k++) old_attention(o_old, q, T, a);
        double t1 = now_ms();
        for (int k = 0; k < reps; k++) cpu_attention(o_new, q, T, a);
        double t2 = now_ms();
        t_old[r] = (t1 - t0) / reps, t_new[r] = (t2 - t1) / reps;
    }
    double diff = 0;
    for (int64_t i = 0; i < (int64_t)T * H * D; i++) diff = fmax(diff, fabs((double)o_old[i] - o_new[i]));
    double mo = median(t_old, rounds), mn = median(t_new, rounds);
    printf("%-26s %-4s old %8.3f ms  new %8.3f ms  old/new %5.2fx  max|diff| %.1g\n", name,
           bk_dtype_name(a->kv_dtype), mo, mn, mo / mn, diff);
    free(o_old), free(o_new), free(t_old), free(t_new);
}

int main(int argc, char **argv) {
    int rounds = argc > 2 && strcmp(argv[1], "--rounds") == 0 ? atoi(argv[2]) : 15;
    util_rng rng;
    util_rng_seed(&rng, 1);
    int nblk = NSEQ * CTX / BS, stride = CTX / BS;
    int64_t n = (int64_t)nblk * BS * KV;
    float *kc = malloc((size_t)n * 4), *vc = malloc((size_t)n * 4), *q = malloc((size_t)CTX * H * D * 4);
    uint16_t *kh = malloc((size_t)n * 2), *vh = malloc((size_t)n * 2);
    for (int64_t i = 0; i < n; i++) {
        kc[i] = (float)util_rng_normal(&rng), vc[i] = (float)util_rng_normal(&rng);
        kh[i] = num_f32_to_bf16(kc[i]), vh[i] = num_f32_to_bf16(vc[i]);
    }
    for (int64_t i = 0; i < (int64_t)CTX * H * D; i++) q[i] = (float)util_rng_normal(&rng);
    int32_t *table = malloc((size_t)nblk * 4), seq[CTX], pos[CTX], dseq[NSEQ], dpos[NSEQ];
    for (int i = 0; i < nblk; i++) table[i] = (i * 37) % nblk; // scattered (37 is coprime with nblk)
    for (int t = 0; t < CTX; t++) seq[t] = 0, pos[t] = t;
    for (int s = 0; s < NSEQ; s++) dseq[s] = s, dpos[s] = CTX - 1;
    printf("attention, Qwen2.5-0.5B shape (H %d, KV heads %d, D %d), %d threads, %d rounds, medians\n", H, KVH, D,
           cpu_pool_threads(), rounds);
    for (int dt = 0; dt < 2; dt++) {
        bk_attn_args a = {dt ? (void *)kh : (void *)kc, dt ? (void *)vh : (void *)vc, table, stride, BS, seq, pos,
                          H, KVH, D, 0, 0.125f, dt ? BK_DT_BF16 : BK_DT_F32};
        run_case("prefill 512, 1 sequence", CTX, &a, q, rounds);
        a.seq = dseq, a.pos = dpos;
        run_case("decode ctx 512, 1 sequence", 1, &a, q, rounds);
        run_case("decode ctx 512, 16 seqs", NSEQ, &a, q, rounds);
    }
    cpu_pool_shutdown();
    free(kc), free(vc), free(q), free(kh), free(vh), free(table);
    return 0;
}
