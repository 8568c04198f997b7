// matmul_q8: the CPU backend's int8 matmul mode (q8.h states the math).
// cpu_matmul hands it the calls it applies to (an NF4 weight with
// cols % 64 == 0, or a BK_W_Q8 weight) when the mode is BK_MATMUL_Q8.
//
// One call: x (T, C) is quantized once into the module's buffer (a pool
// job over tokens), then cut into (row tile, token chunk) tasks as the
// exact matmul does. A one-token call decodes NF4 in registers and streams
// each weight byte once (the fused kernels); a longer chunk decodes a row
// tile to int8 in the thread's scratch first, then dots every token of the
// chunk with it. The portable kernels here are the reference; the AVX2 and
// AVX-512 VNNI ones (matmul_q8_avx.c) give the same bits.
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "cpu_ops.h"
#include "pool.h"
#include "q8.h"
#include "numeric.h"

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#define ROW_TILE 16   // weight rows per task (64 bytes of out per token: no line shared between tasks)
#define TOK_CHUNK 64  // tokens per task
#define DECODE_ROW_TILE_MAX 4096

// ---- the mode ----------------------------------------------------------------

static atomic_int matmul_mode = CPU_MATMUL_EXACT;

int cpu_matmul_mode(void) { return atomic_load_explicit(&matmul_mode, memory_order_relaxed); }

int cpu_matmul_mode_set(int mode) {
    int m = mode == CPU_MATMUL_Q8 ? CPU_MATMUL_Q8 : CPU_MATMUL_EXACT;
    atomic_store_explicit(&matmul_mode, m, memory_order_relaxed);
    return m;
}

int cpu_q8_applies(const bk_weight *W) {
    return W->type == BK_W_Q8 || (W->type == BK_W_NF4 && W->cols % Q8_BLOCK == 0);
}

// The q8 kernel set for matmul kernel set `simd` (CPU_SIMD_*).
int cpu_q8_level(int simd) {
#if CPU_HAVE_AVX2
    if (simd >= CPU_SIMD_AVX512VL && __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw"))
        return CPU_Q8_VNNI;
    if (simd >= CPU_SIMD_AVX2) return CPU_Q8_AVX2;
#endif
    (void)simd;
    return CPU_Q8_PORTABLE;
}

// ---- quantizing --------------------------------------------------------------

// round(v) to nearest even, clamped to [-127, 127] (NaN -> -127: the
// block's scale carries the NaN).
static inline int8_t q8_round(float v) {
    float r = nearbyintf(v);
    r = r > 127.0f ? 127.0f : r;
    r = r >= -127.0f ? r : -127.0f;
    return (int8_t)r;
}

// n values of v (n % 64 == 0) -> int8 q (blocks de-interleaved) and one
// scale per block; a block holding a NaN gets a NaN scale.
void cpu_q8_quantize(const float *v, int64_t n, int8_t *q, float *s) {
    for (int64_t b = 0; b < n / Q8_BLOCK; b++) {
        const float *vb = v + b * Q8_BLOCK;
        float amax = 0;
        int nan = 0;
        for (int i = 0; i < Q8_BLOCK; i++) {
            float a = fabsf(vb[i]);
            nan |= a != a;
            amax = a > amax ? a : amax;
        }
        float id = amax > 0 ? 127.0f / amax : 0.0f;
        if (amax == INFINITY) id = 0;
        s[b] = nan ? NAN : amax * Q8_INV127;
        int8_t *qb = q + b * Q8_BLOCK;
        for (int k = 0; k < Q8_BLOCK / 2; k++) {
            qb[k] = q8_round(vb[2 * k] * id);
            qb[Q8_BLOCK / 2 + k] = q8_round(vb[2 * k + 1] * id);
        }
    }
}

// Token rows [t0, t1) of x -> the q8 buffer (kernel set `level`).
static void quantize_rows(const float *x, const q8_act *a, int64_t t0, int64_t t1, int level) {
    for (int64_t t = t0; t < t1; t++) {
#if CPU_HAVE_AVX2
        if (level == CPU_Q8_VNNI) {
            cpu_q8_vnni_quantize(x + t * a->C, a->C, a->q + t * a->C, a->s + t * a->nb, a->corr + t * a->nb * Q8_LANES);
            continue;
        }
#endif
        int8_t *q = a->q + t * a->C;
        int32_t *corr = a->corr + t * a->nb * Q8_LANES;
        cpu_q8_quantize(x + t * a->C, a->C, q, a->s + t * a->nb);
        for (int64_t l = 0; l < a->nb * Q8_LANES; l++)
            corr[l] = -128 * (q[4 * l] + q[4 * l + 1] + q[4 * l + 2] + q[4 * l + 3]);
    }
}

// ---- the portable kernels ----------------------------------------------------------

// The 16-byte table of NF4 codes as int8 + 128.
static void code_table(const nf4_tensor *q, uint8_t tab[16]) {
    for (int c = 0; c < 16; c++) tab[c] = (uint8_t)(q8_code(q->code[c]) + 128);
}

void cpu_q8_ref_nf4_decode(const nf4_tensor *q, int64_t r0, int64_t n, uint8_t *w, float *s) {
    uint8_t tab[16];
    code_table(q, tab);
    int64_t nb = q->cols / Q8_BLOCK;
    for (int64_t b = r0 * nb; b < (r0 + n) * nb; b++) {
        const uint8_t *p = q->packed + b * (Q8_BLOCK / 2);
        for (int k = 0; k < Q8_BLOCK / 2; k++) {
            w[k] = tab[p[k] >> 4];
            w[Q8_BLOCK / 2 + k] = tab[p[k] & 15];
        }
        *s++ = q8_nf4_scale(q, b);
        w += Q8_BLOCK;
    }
}

// Row w (nb blocks, scales ws) . token t of x.
static float ref_dot(const uint8_t *w, const float *ws, const q8_act *x, int64_t t) {
    const int8_t *q = x->q + t * x->C;
    const float *xs = x->s + t * x->nb;
    float acc[Q8_LANES] = {0};
    for (int64_t b = 0; b < x->nb; b++) {
        float sc = xs[b] * ws[b];
        for (int l = 0; l < Q8_LANES; l++) {
            int32_t d = 0;
            for (int k = 4 * l; k < 4 * l + 4; k++) d += (w[k] - 128) * q[k];
            acc[l] = fmaf((float)d, sc, acc[l]);
        }
        w += Q8_BLOCK, q += Q8_BLOCK;
    }
    return q8_hsum16(acc);
}

void cpu_q8_ref_tile(const q8_rows *W, int64_t R, const q8_act *x, int64_t t0, int64_t t1, float *out, int64_t ldo) {
    for (int64_t t = t0; t < t1; t++)
        for (int64_t r = 0; r < R; r++)
            out[(t - t0) * ldo + r] = ref_dot(W->w + r * x->C, W->s + r * x->nb, x, t);
}

// ---- the tasks ---------------------------------------------------------------------

typedef struct q8_job {
    float *out;
    const float *x;
    const bk_weight *W;
    const float *bias;
    q8_act a;
    int T;
    int level;        // CPU_Q8_*
    int64_t n_chunks; // token chunks per row tile
    int64_t row_tile;
} q8_job;

static void quantize_task(void *ctx, int64_t task, int thread) {
    const q8_job *j = ctx;
    int64_t t1 = (task + 1) * 8 < j->T ? (task + 1) * 8 : j->T;
    quantize_rows(j->x, &j->a, task * 8, t1, j->level);
}

static void tile_decode(const q8_job *j, int64_t r0, int64_t n, uint8_t *w, float *s) {
    if (j->level >= CPU_Q8_AVX2)
        cpu_q8_avx2_nf4_decode(&j->W->nf4, r0, n, w, s);
    else
        cpu_q8_ref_nf4_decode(&j->W->nf4, r0, n, w, s);
}

static void tile_dot(const q8_job *j, const q8_rows *w, int64_t R, int64_t t0, int64_t t1, float *out) {
    int64_t OC = j->W->rows;
    if (j->level == CPU_Q8_VNNI)
        cpu_q8_vnni_tile(w, R, &j->a, t0, t1, out, OC);
    else if (j->level == CPU_Q8_AVX2)
        cpu_q8_avx2_tile(w, R, &j->a, t0, t1, out, OC);
    else
        cpu_q8_ref_tile(w, R, &j->a, t0, t1, out, OC);
}

static void q8_task(void *ctx, int64_t task, int thread) {
    const q8_job *j = ctx;
    const bk_weight *W = j->W;
    int64_t C = W->cols, OC = W->rows, nb = C / Q8_BLOCK;
    int64_t r0 = task / j->n_chunks * j->row_tile;
    int64_t r1 = r0 + j->row_tile < OC ? r0 + j->row_tile : OC;
    int64_t t0 = task % j->n_chunks * TOK_CHUNK;
    int64_t t1 = t0 + TOK_CHUNK < j->T ? t0 + TOK_CHUNK : j->T;
    float *out = j->out + t0 * OC;

    if (W->type == BK_W_NF4 && t1 - t0 == 1 && j->level >= CPU_Q8_AVX2) {
        if (j->level == CPU_Q8_VNNI)
            cpu_q8_vnni_nf4_rows(&W->nf4, &j->a, t0, r0, r1, out);
        else
            cpu_q8_avx2_nf4_rows(&W->nf4, &j->a, t0, r0, r1, out);
    } else {
        q8_rows w;
        if (W->type == BK_W_Q8) {
            w = (q8_rows){(const uint8_t *)W->data + r0 * C, W->q8_scale + r0 * nb};
        } else {
            uint8_t *s = cpu_pool_scratch(thread, (size_t)((r1 - r0) * (C + nb * (int64_t)sizeof(float))));
            float *sc = (float *)(s + (r1 - r0) * C);
            tile_decode(j, r0, r1 - r0, s, sc);
            w = (q8_rows){s, sc};
        }
        tile_dot(j, &w, r1 - r0, t0, t1, out + r0);
    }
    if (j->bias)
        for (int64_t t = t0; t < t1; t++)
            for (int64_t r = r0; r < r1; r++) j->out[t * OC + r] += j->bias[r];
}

// ---- the call ----------------------------------------------------------------------

// The quantized activations' buffer: one per process, grown on demand and
// held (with `mu`) for a whole call, so calls from several threads take
// turns instead of sharing it.
static struct {
    pthread_mutex_t mu;
    void *p;
    size_t cap;
} qbuf = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void *qbuf_get(size_t bytes) {
    if (qbuf.cap >= bytes) return qbuf.p;
    size_t cap = (bytes + 63) / 64 * 64;
    void *p = aligned_alloc(64, cap);
    if (!p) {
        // Ops cannot fail, like the pool's scratch.
        fprintf(stderr, "fatal cpu_q8: out of memory for %zu bytes of activations\n", cap);
        abort();
    }
    free(qbuf.p);
    qbuf.p = p, qbuf.cap = cap;
    return p;
}

// x (T, C), W (OC, C) with cpu_q8_applies(W), bias (OC) or NULL -> out (T, OC)
void cpu_q8_matmul(float *out, const float *x, const bk_weight *W, const float *bias, int T, int simd) {
    int64_t C = W->cols, nb = C / Q8_BLOCK;
    pthread_mutex_lock(&qbuf.mu);
    // q (T * C), corr (T * nb * 16 int32), s (T * nb): every part a multiple of 64 bytes
    size_t qb = (size_t)(T * C), cb = (size_t)(T * nb) * Q8_LANES * 4, sb = ((size_t)(T * nb) * 4 + 63) / 64 * 64;
    char *buf = qbuf_get(qb + cb + sb);
    q8_job j = {out, x, W, bias, {(int8_t *)buf, (int32_t *)(buf + qb), (float *)(buf + qb + cb), C, nb},
                T, cpu_q8_level(simd), (T + TOK_CHUNK - 1) / TOK_CHUNK, ROW_TILE};
    if (T == 1) {
        quantize_rows(x, &j.a, 0, 1, j.level);
        // As the exact decode: long runs of rows per task, 8 tasks per thread.
        int64_t per = (W->rows + 8 * cpu_pool_threads() - 1) / (8 * cpu_pool_threads());
        per = (per + ROW_TILE - 1) / ROW_TILE * ROW_TILE;
        j.row_tile = per > DECODE_ROW_TILE_MAX ? DECODE_ROW_TILE_MAX : per;
    } else {
        cpu_pool_run((T + 7) / 8, quantize_task, &j);
    }
    int64_t tiles = (W->rows + j.row_tile - 1) / j.row_tile;
    cpu_pool_run(tiles * j.n_chunks, q8_task, &j);
    pthread_mutex_unlock(&qbuf.mu);
}

// ---- Q8 weights ----------------------------------------------------------------------

typedef struct q8w_job {
    const bk_weight *W;
    uint8_t *w;
    float *s;
} q8w_job;

#define Q8W_ROWS 256 // rows per task of bk_weight_q8

static void q8w_task(void *ctx, int64_t task, int thread) {
    const q8w_job *j = ctx;
    int64_t C = j->W->cols, r1 = (task + 1) * Q8W_ROWS < j->W->rows ? (task + 1) * Q8W_ROWS : j->W->rows;
    float v[Q8_BLOCK];
    int8_t q[Q8_BLOCK];
    for (int64_t b = task * Q8W_ROWS * C / Q8_BLOCK; b < r1 * C / Q8_BLOCK; b++) {
        if (j->W->type == BK_W_BF16)
            for (int i = 0; i < Q8_BLOCK; i++) v[i] = num_bf16_to_f32(((const uint16_t *)j->W->data)[b * Q8_BLOCK + i]);
        else
            memcpy(v, (const float *)j->W->data + b * Q8_BLOCK, sizeof v);
        cpu_q8_quantize(v, Q8_BLOCK, q, j->s + b);
        for (int i = 0; i < Q8_BLOCK; i++) j->w[b * Q8_BLOCK + i] = (uint8_t)(q[i] + 128);
    }
}

size_t bk_weight_q8_bytes(int64_t rows, int64_t cols) {
    size_t n = (size_t)(rows * cols);
    return n + n / Q8_BLOCK * sizeof(float);
}

int bk_weight_q8(const bk_ops *bk, const bk_weight *W, const char *name, void *mem, bk_weight *out, err_t *err) {
    if (!bk->host_memory)
        return err_set(err, "%s: a q8 weight needs the cpu backend, not %s", name, bk->name), -1;
    if (W->type != BK_W_F32 && W->type != BK_W_BF16)
        return err_set(err, "%s: a q8 copy is made of an f32 or bf16 weight only", name), -1;
    if (W->cols % Q8_BLOCK)
        return err_set(err, "%s: %lld columns, a q8 weight needs a multiple of %d", name, (long long)W->cols,
                       Q8_BLOCK), -1;
    q8w_job j = {W, mem, (float *)((uint8_t *)mem + W->rows * W->cols)};
    cpu_pool_run((W->rows + Q8W_ROWS - 1) / Q8W_ROWS, q8w_task, &j);
    *out = (bk_weight){.type = BK_W_Q8, .rows = W->rows, .cols = W->cols, .data = j.w, .q8_scale = j.s};
    return 0;
}

void cpu_q8_shutdown(void) {
    pthread_mutex_lock(&qbuf.mu);
    free(qbuf.p);
    qbuf.p = NULL, qbuf.cap = 0;
    pthread_mutex_unlock(&qbuf.mu);
}
