// matmul: x (T, C) times a weight W (OC, C) -> out (T, OC), for dense f32,
// bf16 and NF4 weights. Work is cut into (row tile, token chunk) tasks; a
// bf16 or NF4 tile is converted to f32 in the thread's scratch first
// (never the whole weight), then every token of the chunk is dotted with
// it, so the conversion is paid once per TOK_CHUNK tokens. A chunk of one
// token (decode) converts in registers instead (the fused kernels below),
// with bit-identical results. On x86-64 CPUs with AVX2 and FMA the same
// structure runs matmul_avx2.c's kernels instead (see cpu_ops.h). In q8
// mode (bk_cpu_set_matmul) NF4 weights with cols % 64 == 0, and BK_W_Q8
// weights in any mode, go to matmul_q8.c's int8 kernels instead.
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "cpu_ops.h"
#include "pool.h"
#include "numeric.h"

#define ROW_TILE 16   // weight rows per task
#define TOK_CHUNK 64  // tokens per task
#define DECODE_ROW_TILE_MAX 4096 // weight rows per task at most when T = 1

// Flat elements [i, end) of an NF4 weight -> out, each value code[c] * absmax
// exactly as nf4_dequantize forms it. Whole 64-value blocks look up both
// codes of a byte at once in a 256-entry pair table, then scale the block
// with vector multiplies; a block cut by a row edge goes value by value.
static void nf4_range(const nf4_tensor *t, int64_t i, int64_t end, float *out) {
    const float *code = t->code;
    float pair[256][2];
    for (int b = 0; b < 256; b++) pair[b][0] = code[b >> 4], pair[b][1] = code[b & 15];
    while (i < end) {
        int64_t b = i / NF4_BLOCK;
        int64_t stop = (b + 1) * NF4_BLOCK < end ? (b + 1) * NF4_BLOCK : end;
        float a = nf4_absmax(t, b);
        if (i == b * NF4_BLOCK && stop == i + NF4_BLOCK) {
            const uint8_t *p = t->packed + i / 2;
            for (int k = 0; k < NF4_BLOCK / 2; k++) memcpy(out + 2 * k, pair[p[k]], sizeof pair[0]);
            cpu_v4 av = {a, a, a, a};
            for (int k = 0; k < NF4_BLOCK; k += 4) cpu_v4_store(out + k, cpu_v4_load(out + k) * av);
            out += NF4_BLOCK;
            i = stop;
            continue;
        }
        for (; i < stop; i++) *out++ = code[nf4_code_at(t, i)] * a;
    }
}

// bf16 -> f32 is a 16-bit shift; four at a time with vector extensions.
static void bf16_range(const uint16_t *h, int64_t n, float *out) {
    typedef uint16_t u16x4 __attribute__((vector_size(8)));
    typedef uint32_t u32x4 __attribute__((vector_size(16)));
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        u16x4 v;
        memcpy(&v, h + i, sizeof v);
        u32x4 w = __builtin_convertvector(v, u32x4) << 16;
        memcpy(out + i, &w, sizeof w);
    }
    for (; i < n; i++) out[i] = num_bf16_to_f32(h[i]);
}

void cpu_q8w_values(const bk_weight *W, int64_t i, int64_t end, float *out) {
    const uint8_t *w = W->data;
    for (; i < end; i++) {
        int64_t b = i / 64, j = i % 64;
        *out++ = (float)(w[b * 64 + (j & 1) * 32 + j / 2] - 128) * W->q8_scale[b];
    }
}

void cpu_weight_rows(const bk_weight *W, int64_t r0, int64_t n, float *out) {
    int64_t begin = r0 * W->cols, end = (r0 + n) * W->cols;
    if (W->type == BK_W_Q8)
        cpu_q8w_values(W, begin, end, out);
    else if (W->type == BK_W_NF4)
        nf4_range(&W->nf4, begin, end, out);
    else if (W->type == BK_W_BF16)
        bf16_range((const uint16_t *)W->data + begin, end - begin, out);
    else
        memcpy(out, (const float *)W->data + begin, (size_t)(end - begin) * sizeof(float));
}

// ---- fused convert-and-dot for one token (decode) ------------------------------
//
// For a single token, converting a tile to scratch costs as much as the dot
// itself; these kernels convert 8 weights of a row in registers and dot
// them with x at once. Every weight is formed exactly as cpu_weight_rows
// forms it and the dot accumulates in cpu_dot's lanes and order, so the
// result is bit-identical to the tile path (batch invariance holds).

// w (n bf16) . x (n)
static float fuse_bf16(const float *x, const uint16_t *w, int64_t n) {
    typedef uint16_t u16x4 __attribute__((vector_size(8)));
    typedef uint32_t u32x4 __attribute__((vector_size(16)));
    cpu_v4 lo = {0}, hi = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        u16x4 a, b;
        memcpy(&a, w + i, sizeof a);
        memcpy(&b, w + i + 4, sizeof b);
        cpu_v4 wl = (cpu_v4)(__builtin_convertvector(a, u32x4) << 16);
        cpu_v4 wh = (cpu_v4)(__builtin_convertvector(b, u32x4) << 16);
        lo += cpu_v4_load(x + i) * wl;
        hi += cpu_v4_load(x + i + 4) * wh;
    }
    float s = cpu_v8_sum(lo, hi);
    for (; i < n; i++) s += x[i] * num_bf16_to_f32(w[i]);
    return s;
}

// Row r of an NF4 weight whose rows hold whole blocks (n % 64 == 0) . x (n).
// pair[b] holds the two code values of byte b as one 64-bit lane.
static float fuse_nf4(const float *x, const nf4_tensor *q, int64_t r, int64_t n, const uint64_t *pair) {
    typedef uint64_t u64x2 __attribute__((vector_size(16)));
    cpu_v4 lo = {0}, hi = {0};
    int64_t b0 = r * n / NF4_BLOCK;
    const uint8_t *p = q->packed + r * n / 2;
    for (int64_t i = 0; i < n; i += NF4_BLOCK) {
        float a = nf4_absmax(q, b0 + i / NF4_BLOCK);
        cpu_v4 av = {a, a, a, a};
        for (int k = 0; k < NF4_BLOCK; k += 8) {
            const uint8_t *pb = p + (i + k) / 2;
            u64x2 l = {pair[pb[0]], pair[pb[1]]}, h = {pair[pb[2]], pair[pb[3]]};
            lo += cpu_v4_load(x + i + k) * ((cpu_v4)l * av);
            hi += cpu_v4_load(x + i + k + 4) * ((cpu_v4)h * av);
        }
    }
    return cpu_v8_sum(lo, hi);
}

static int fusable(const bk_weight *W, int64_t nt) {
    return nt == 1 && (W->type == BK_W_BF16 || (W->type == BK_W_NF4 && W->cols % NF4_BLOCK == 0));
}

// out[r0..r1) for one token x through the fused kernels.
static void fuse_rows(const bk_weight *W, const float *x, float *out, int64_t r0, int64_t r1) {
    if (W->type == BK_W_BF16) {
        for (int64_t r = r0; r < r1; r++) out[r] = fuse_bf16(x, (const uint16_t *)W->data + r * W->cols, W->cols);
        return;
    }
    uint64_t pair[256];
    for (int b = 0; b < 256; b++) {
        float v[2] = {W->nf4.code[b >> 4], W->nf4.code[b & 15]};
        memcpy(&pair[b], v, sizeof v);
    }
    for (int64_t r = r0; r < r1; r++) out[r] = fuse_nf4(x, &W->nf4, r, W->cols, pair);
}

// ---- the kernel set ------------------------------------------------------------

// -1 until first asked; then a CPU_SIMD_* level. Read once per matmul call
// by the calling thread, so a change never lands mid-call.
static atomic_int simd_level = -1;

static int cpu_best_simd(void) {
#if CPU_HAVE_AVX2
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return CPU_SIMD_PORTABLE;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")) return CPU_SIMD_AVX512VL;
    return CPU_SIMD_AVX2;
#else
    return CPU_SIMD_PORTABLE;
#endif
}

int cpu_simd_set(int level) {
    int best = cpu_best_simd();
    int v = level < 0 ? 0 : level < best ? level : best;
    atomic_store_explicit(&simd_level, v, memory_order_relaxed);
    return v;
}

int cpu_simd(void) {
    int v = atomic_load_explicit(&simd_level, memory_order_relaxed);
    if (v >= 0) return v;
    const char *env = getenv("TESSERA_SIMD");
    return cpu_simd_set(env && *env ? atoi(env) : CPU_SIMD_AVX512VL);
}

// ---- the tasks -----------------------------------------------------------------

typedef struct mm_job {
    float *out;
    const float *x;
    const bk_weight *W;
    const float *bias;
    int T;
    int64_t n_chunks; // token chunks per row tile
    int simd;         // the kernel set for this call (CPU_SIMD_*)
    int64_t row_tile; // weight rows per task
} mm_job;

static void add_bias(const mm_job *j, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
    if (!j->bias) return;
    for (int64_t t = t0; t < t1; t++)
        for (int64_t r = r0; r < r1; r++) j->out[t * j->W->rows + r] += j->bias[r];
}

static void mm_task(void *ctx, int64_t task, int thread) {
    const mm_job *j = ctx;
    const bk_weight *W = j->W;
    int64_t C = W->cols, OC = W->rows;
    int64_t r0 = task / j->n_chunks * j->row_tile;
    int64_t r1 = r0 + j->row_tile < OC ? r0 + j->row_tile : OC;
    int64_t t0 = task % j->n_chunks * TOK_CHUNK;
    int64_t t1 = t0 + TOK_CHUNK < j->T ? t0 + TOK_CHUNK : j->T;

    if (fusable(W, t1 - t0)) {
        if (j->simd)
            cpu_avx2_fused_rows(W, j->x + t0 * C, j->out + t0 * OC, r0, r1, j->simd == CPU_SIMD_AVX512VL);
        else
            fuse_rows(W, j->x + t0 * C, j->out + t0 * OC, r0, r1);
        add_bias(j, r0, r1, t0, t1);
        return;
    }
    const float *w;
    if (W->type == BK_W_F32) {
        w = (const float *)W->data + r0 * C;
    } else {
        float *s = cpu_pool_scratch(thread, (size_t)((r1 - r0) * C) * sizeof(float));
        if (j->simd)
            cpu_avx2_weight_rows(W, r0, r1 - r0, s);
        else
            cpu_weight_rows(W, r0, r1 - r0, s);
        w = s;
    }
    if (j->simd) {
        cpu_avx2_tile(j->x + t0 * C, t1 - t0, w, r1 - r0, C, j->out + t0 * OC + r0, OC);
        add_bias(j, r0, r1, t0, t1);
        return;
    }
    for (int64_t t = t0; t < t1; t++) {
        const float *xt = j->x + t * C;
        float *o = j->out + t * OC;
        int64_t r = r0;
        for (; r + 4 <= r1; r += 4) cpu_dot4(xt, w + (r - r0) * C, C, o + r);
        for (; r < r1; r++) o[r] = cpu_dot(xt, w + (r - r0) * C, C);
    }
    add_bias(j, r0, r1, t0, t1);
}

// x (T, C), W (OC, C), bias (OC) or NULL -> out (T, OC)
void cpu_matmul(float *out, const float *x, const bk_weight *W, const float *bias, int T) {
    if (cpu_q8_applies(W) && (cpu_matmul_mode() == CPU_MATMUL_Q8 || W->type == BK_W_Q8)) {
        cpu_q8_matmul(out, x, W, bias, T, cpu_simd());
        return;
    }
    mm_job j = {out, x, W, bias, T, (T + TOK_CHUNK - 1) / TOK_CHUNK, cpu_simd(), ROW_TILE};
    if (T == 1 && (fusable(W, 1) || W->type == BK_W_F32)) {
        // Decode streams the weight once: longer runs of rows per task read
        // memory faster; 8 tasks per thread keep the threads balanced.
        int64_t per = (W->rows + 8 * cpu_pool_threads() - 1) / (8 * cpu_pool_threads());
        per = (per + ROW_TILE - 1) / ROW_TILE * ROW_TILE;
        j.row_tile = per > DECODE_ROW_TILE_MAX ? DECODE_ROW_TILE_MAX : per;
    }
    int64_t tiles = (W->rows + j.row_tile - 1) / j.row_tile;
    cpu_pool_run(tiles * j.n_chunks, mm_task, &j);
}
