// attention: causal GQA attention of a flat batch of tokens over a paged
// KV cache (layout in backend.h).
//
// A task is one KV head of a tile of consecutive batch tokens; within it,
// each run of tokens of one sequence is one unit: its rows are (token,
// query head of the group), and it walks its keys in blocks of KB absolute
// positions ([b * KB, b * KB + KB)). Each block's K (transposed) and V are
// widened to f32 once into the thread's scratch (exact for a bf16 cache,
// so the math after the load is the f32 path's) and used by every row of
// the run: the row's scores for the block (KB lanes, q[d] broadcast over
// the keys), one max and at most one rescale of the accumulator per block,
// a vectorized exp (vexp.h), then P.V with the keys in order.
//
// Batch invariance (backend.h): a row's float operations depend only on
// its query, its position and window, and its sequence's keys. Block
// boundaries are absolute positions, the keys outside the row's range are
// masked out of the max and the sum and skipped in P.V, and decode (a run
// of one token) takes the same path as prefill. The tile size (chosen from
// T and the thread count, for balance) only decides which rows share a
// load. The kernel set (cpu_simd: portable 4-lane or AVX2 + FMA) changes
// the rounding, within test_kernels' attention bound.
#include <math.h>

#include "cpu_ops.h"
#include "pool.h"
#include "vexp.h"

#define KB 32     // keys per block (row_block_avx2 holds 4 x 8 lanes)
#define MAX_QT 16 // query tokens per tile

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
    int T, qt, avx2;
} attn_job;

// The thread's scratch for one run: a key block k (KB, D), transposed
// into kt (D, KB), and v (KB, D); per row its running max m, normaliser l
// and accumulator acc (D).
typedef struct attn_scratch {
    float *k, *kt, *v, *m, *l, *acc;
} attn_scratch;

// The block's key positions b0 + [0, KB) of head kvh: those in [lo, hi]
// widened from the cache into k and v (KB, D), the rest zero.
static void load_block(const bk_attn_args *a, const int32_t *table, int kvh, int b0, int lo, int hi, float *k,
                       float *v) {
    int D = a->head_dim;
    int64_t KV = (int64_t)a->n_kv_heads * D;
    for (int j = 0; j < KB; j++) {
        int p = b0 + j;
        float *kr = k + (int64_t)j * D, *vr = v + (int64_t)j * D;
        if (p < lo || p > hi) {
            memset(kr, 0, (size_t)D * sizeof *kr);
            memset(vr, 0, (size_t)D * sizeof *vr);
            continue;
        }
        int64_t off = ((int64_t)table[p / a->block_size] * a->block_size + p % a->block_size) * KV + kvh * D;
        if (a->kv_dtype == BK_DT_F32) {
            memcpy(kr, (const float *)a->k_cache + off, (size_t)D * sizeof *kr);
            memcpy(vr, (const float *)a->v_cache + off, (size_t)D * sizeof *vr);
        } else {
            cpu_bf16_row(kr, (const uint16_t *)a->k_cache + off, D);
            cpu_bf16_row(vr, (const uint16_t *)a->v_cache + off, D);
        }
    }
}

// k (KB, D) -> kt (D, KB).
static void transpose_v4(const float *k, int D, float *kt) {
    for (int j = 0; j < KB; j++)
        for (int d = 0; d < D; d++) kt[d * KB + j] = k[(int64_t)j * D + d];
}

// One row's step over a loaded block, portable: keys [jlo, jhi] of the
// block are the row's.
static void row_block_v4(const float *q, const float *kt, const float *v, int D, float scale, int jlo, int jhi,
                         float *m, float *l, float *acc) {
    cpu_v4 s[KB / 4] = {0};
    for (int d = 0; d < D; d++) {
        cpu_v4 qd = cpu_splat_v4(q[d]);
        for (int c = 0; c < KB / 4; c++) s[c] += qd * cpu_v4_load(kt + d * KB + 4 * c);
    }
    float sc[KB], p[KB], bm = -INFINITY;
    for (int c = 0; c < KB / 4; c++) cpu_v4_store(sc + 4 * c, s[c] * cpu_splat_v4(scale));
    for (int j = 0; j < KB; j++) {
        if (j < jlo || j > jhi) sc[j] = -INFINITY;
        bm = sc[j] > bm ? sc[j] : bm;
    }
    if (bm > *m) {
        if (*m > -INFINITY) {
            float corr = cpu_exp_v4(cpu_splat_v4(*m - bm))[0];
            *l *= corr;
            for (int d = 0; d < D; d++) acc[d] *= corr;
        }
        *m = bm;
    }
    cpu_v4 sum = {0};
    for (int c = 0; c < KB / 4; c++) {
        cpu_v4 e = cpu_exp_v4(cpu_v4_load(sc + 4 * c) - cpu_splat_v4(*m));
        cpu_v4_store(p + 4 * c, e);
        sum += e;
    }
    *l += (sum[0] + sum[1]) + (sum[2] + sum[3]);
    for (int j = jlo; j <= jhi; j++) {
        const float *vr = v + (int64_t)j * D;
        cpu_v4 pj = cpu_splat_v4(p[j]);
        int d = 0;
        for (; d + 4 <= D; d += 4) cpu_v4_store(acc + d, cpu_v4_load(acc + d) + pj * cpu_v4_load(vr + d));
        for (; d < D; d++) acc[d] += p[j] * vr[d];
    }
}

#if CPU_HAVE_AVX2
#define AVX2 __attribute__((target("avx2,fma")))

// acc (D) += p[j] * v row j for j in [jlo, jhi], 32 columns at a time.
static inline AVX2 void pv_avx2(const float *p, const float *v, int D, int jlo, int jhi, float *acc) {
    int d0 = 0;
    for (; d0 + 32 <= D; d0 += 32) { // four named accumulators: an array would live in memory
        __m256 r0 = _mm256_loadu_ps(acc + d0), r1 = _mm256_loadu_ps(acc + d0 + 8);
        __m256 r2 = _mm256_loadu_ps(acc + d0 + 16), r3 = _mm256_loadu_ps(acc + d0 + 24);
        for (int j = jlo; j <= jhi; j++) {
            __m256 pj = _mm256_set1_ps(p[j]);
            const float *vr = v + (int64_t)j * D + d0;
            r0 = _mm256_fmadd_ps(pj, _mm256_loadu_ps(vr), r0);
            r1 = _mm256_fmadd_ps(pj, _mm256_loadu_ps(vr + 8), r1);
            r2 = _mm256_fmadd_ps(pj, _mm256_loadu_ps(vr + 16), r2);
            r3 = _mm256_fmadd_ps(pj, _mm256_loadu_ps(vr + 24), r3);
        }
        _mm256_storeu_ps(acc + d0, r0), _mm256_storeu_ps(acc + d0 + 8, r1);
        _mm256_storeu_ps(acc + d0 + 16, r2), _mm256_storeu_ps(acc + d0 + 24, r3);
    }
    for (; d0 < D; d0 += 8) {
        __m256 r = _mm256_loadu_ps(acc + d0);
        for (int j = jlo; j <= jhi; j++)
            r = _mm256_fmadd_ps(_mm256_set1_ps(p[j]), _mm256_loadu_ps(v + (int64_t)j * D + d0), r);
        _mm256_storeu_ps(acc + d0, r);
    }
}

// transpose_v4 8 x 8 at a time (D % 8 == 0): the same values, moved.
static AVX2 void transpose_avx2(const float *k, int D, float *kt) {
    for (int j = 0; j < KB; j += 8)
        for (int d = 0; d < D; d += 8) {
            const float *r = k + (int64_t)j * D + d;
            __m256 t0 = _mm256_unpacklo_ps(_mm256_loadu_ps(r), _mm256_loadu_ps(r + D));
            __m256 t1 = _mm256_unpackhi_ps(_mm256_loadu_ps(r), _mm256_loadu_ps(r + D));
            __m256 t2 = _mm256_unpacklo_ps(_mm256_loadu_ps(r + 2 * D), _mm256_loadu_ps(r + 3 * D));
            __m256 t3 = _mm256_unpackhi_ps(_mm256_loadu_ps(r + 2 * D), _mm256_loadu_ps(r + 3 * D));
            __m256 t4 = _mm256_unpacklo_ps(_mm256_loadu_ps(r + 4 * D), _mm256_loadu_ps(r + 5 * D));
            __m256 t5 = _mm256_unpackhi_ps(_mm256_loadu_ps(r + 4 * D), _mm256_loadu_ps(r + 5 * D));
            __m256 t6 = _mm256_unpacklo_ps(_mm256_loadu_ps(r + 6 * D), _mm256_loadu_ps(r + 7 * D));
            __m256 t7 = _mm256_unpackhi_ps(_mm256_loadu_ps(r + 6 * D), _mm256_loadu_ps(r + 7 * D));
            __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
            __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
            __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
            __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
            float *o = kt + d * KB + j;
            _mm256_storeu_ps(o, _mm256_permute2f128_ps(u0, u4, 0x20));
            _mm256_storeu_ps(o + KB, _mm256_permute2f128_ps(u1, u5, 0x20));
            _mm256_storeu_ps(o + 2 * KB, _mm256_permute2f128_ps(u2, u6, 0x20));
            _mm256_storeu_ps(o + 3 * KB, _mm256_permute2f128_ps(u3, u7, 0x20));
            _mm256_storeu_ps(o + 4 * KB, _mm256_permute2f128_ps(u0, u4, 0x31));
            _mm256_storeu_ps(o + 5 * KB, _mm256_permute2f128_ps(u1, u5, 0x31));
            _mm256_storeu_ps(o + 6 * KB, _mm256_permute2f128_ps(u2, u6, 0x31));
            _mm256_storeu_ps(o + 7 * KB, _mm256_permute2f128_ps(u3, u7, 0x31));
        }
}

// row_block_v4 with AVX2 + FMA (D % 8 == 0).
static AVX2 void row_block_avx2(const float *q, const float *kt, const float *v, int D, float scale, int jlo,
                                int jhi, float *m, float *l, float *acc) {
    __m256 s[KB / 8], s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0; // KB == 32
    for (int d = 0; d < D; d++) {
        __m256 qd = _mm256_set1_ps(q[d]);
        const float *k = kt + d * KB;
        s0 = _mm256_fmadd_ps(qd, _mm256_loadu_ps(k), s0);
        s1 = _mm256_fmadd_ps(qd, _mm256_loadu_ps(k + 8), s1);
        s2 = _mm256_fmadd_ps(qd, _mm256_loadu_ps(k + 16), s2);
        s3 = _mm256_fmadd_ps(qd, _mm256_loadu_ps(k + 24), s3);
    }
    s[0] = s0, s[1] = s1, s[2] = s2, s[3] = s3;
    __m256i lo = _mm256_set1_epi32(jlo - 1), hi = _mm256_set1_epi32(jhi + 1);
    __m256 ninf = _mm256_set1_ps(-INFINITY), mx = ninf;
    for (int c = 0; c < KB / 8; c++) {
        __m256i idx = _mm256_add_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(8 * c));
        __m256i in = _mm256_and_si256(_mm256_cmpgt_epi32(idx, lo), _mm256_cmpgt_epi32(hi, idx));
        s[c] = _mm256_blendv_ps(ninf, _mm256_mul_ps(s[c], _mm256_set1_ps(scale)), _mm256_castsi256_ps(in));
        mx = _mm256_max_ps(mx, s[c]);
    }
    float mm[8], p[KB], bm = -INFINITY;
    _mm256_storeu_ps(mm, mx);
    for (int k = 0; k < 8; k++) bm = mm[k] > bm ? mm[k] : bm;
    if (bm > *m) {
        if (*m > -INFINITY) {
            float corr = _mm256_cvtss_f32(cpu_exp8(_mm256_set1_ps(*m - bm)));
            __m256 cv = _mm256_set1_ps(corr);
            *l *= corr;
            for (int d = 0; d < D; d += 8) _mm256_storeu_ps(acc + d, _mm256_mul_ps(_mm256_loadu_ps(acc + d), cv));
        }
        *m = bm;
    }
    __m256 mv = _mm256_set1_ps(*m), sum = _mm256_setzero_ps();
    for (int c = 0; c < KB / 8; c++) {
        __m256 e = cpu_exp8(_mm256_sub_ps(s[c], mv));
        _mm256_storeu_ps(p + 8 * c, e);
        sum = _mm256_add_ps(sum, e);
    }
    float f[8];
    _mm256_storeu_ps(f, sum);
    *l += ((f[0] + f[4]) + (f[1] + f[5])) + ((f[2] + f[6]) + (f[3] + f[7]));
    pv_avx2(p, v, D, jlo, jhi, acc);
}
#endif

static int first_key(const bk_attn_args *a, int pos) {
    return a->window > 0 && pos - a->window + 1 > 0 ? pos - a->window + 1 : 0;
}

// Tokens [t0, t1) of one sequence, KV head kvh: every row (token, query
// head of the group) over the run's key blocks, then out = acc / l.
static void attn_run(const attn_job *j, int t0, int t1, int kvh, const attn_scratch *sc) {
    const bk_attn_args *a = j->a;
    int H = a->n_heads, D = a->head_dim, G = H / a->n_kv_heads, rows = (t1 - t0) * G;
    int lo = INT32_MAX, hi = -1;
    for (int t = t0; t < t1; t++) {
        lo = first_key(a, a->pos[t]) < lo ? first_key(a, a->pos[t]) : lo;
        hi = a->pos[t] > hi ? a->pos[t] : hi;
    }
    for (int r = 0; r < rows; r++) sc->m[r] = -INFINITY, sc->l[r] = 0.0f;
    memset(sc->acc, 0, (size_t)rows * D * sizeof *sc->acc);
    const int32_t *table = a->block_table + (int64_t)a->seq[t0] * a->table_stride;
    for (int b0 = lo / KB * KB; b0 <= hi; b0 += KB) {
        load_block(a, table, kvh, b0, lo, hi, sc->k, sc->v);
#if CPU_HAVE_AVX2
        if (j->avx2)
            transpose_avx2(sc->k, D, sc->kt);
        else
#endif
            transpose_v4(sc->k, D, sc->kt);
        for (int t = t0; t < t1; t++) {
            int f = first_key(a, a->pos[t]), jlo = (f > b0 ? f : b0) - b0;
            int jhi = (a->pos[t] < b0 + KB - 1 ? a->pos[t] : b0 + KB - 1) - b0;
            if (jlo > jhi) continue;
            for (int g = 0; g < G; g++) {
                int r = (t - t0) * G + g;
                const float *q = j->q + ((int64_t)t * H + kvh * G + g) * D;
#if CPU_HAVE_AVX2
                if (j->avx2) {
                    row_block_avx2(q, sc->kt, sc->v, D, a->scale, jlo, jhi, &sc->m[r], &sc->l[r], sc->acc + r * D);
                    continue;
                }
#endif
                row_block_v4(q, sc->kt, sc->v, D, a->scale, jlo, jhi, &sc->m[r], &sc->l[r], sc->acc + r * D);
            }
        }
    }
    for (int t = t0; t < t1; t++)
        for (int g = 0; g < G; g++) {
            int r = (t - t0) * G + g;
            float *o = j->out + ((int64_t)t * H + kvh * G + g) * D, inv = 1.0f / sc->l[r];
            for (int d = 0; d < D; d++) o[d] = sc->acc[(int64_t)r * D + d] * inv;
        }
}

// Task: tile task / n_kv_heads (batch tokens [t0, t0 + qt)), KV head
// task % n_kv_heads; each run of one sequence in the tile is one attn_run.
static void attn_task(void *ctx, int64_t task, int thread) {
    const attn_job *j = ctx;
    const bk_attn_args *a = j->a;
    int D = a->head_dim, G = a->n_heads / a->n_kv_heads, kvh = (int)(task % a->n_kv_heads);
    int t0 = (int)(task / a->n_kv_heads) * j->qt, t1 = t0 + j->qt < j->T ? t0 + j->qt : j->T;
    int64_t rows = (int64_t)j->qt * G;
    float *s = cpu_pool_scratch(thread, (size_t)(3 * KB * D + rows * (D + 2)) * sizeof(float));
    float *m = s + 3 * KB * D;
    attn_scratch sc = {s, s + KB * D, s + 2 * KB * D, m, m + rows, m + 2 * rows};
    for (int t = t0; t < t1;) {
        int e = t + 1;
        while (e < t1 && a->seq[e] == a->seq[t]) e++;
        attn_run(j, t, e, kvh, &sc);
        t = e;
    }
}

// q (T, H, D) -> out (T, H, D)
void cpu_attention(float *out, const float *q, int T, const bk_attn_args *a) {
    // about four tasks per thread, tiles of 1 .. MAX_QT tokens
    int64_t want = 4 * (int64_t)cpu_pool_threads();
    int64_t qt = (int64_t)T * a->n_kv_heads / want;
    qt = qt < 1 ? 1 : qt > MAX_QT ? MAX_QT : qt;
    int avx2 = CPU_HAVE_AVX2 && cpu_simd() >= CPU_SIMD_AVX2 && a->head_dim % 8 == 0;
    attn_job j = {out, q, a, T, (int)qt, avx2};
    int64_t tiles = (T + qt - 1) / qt;
    cpu_pool_run(tiles * a->n_kv_heads, attn_task, &j);
}
