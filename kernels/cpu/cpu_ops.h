// cpu_ops: the CPU backend's ops (the reference implementation of
// kernels/backend.h) and the small vector helpers they share.
//
// Dot products use GCC/Clang vector extensions: 8 float lanes accumulated
// independently, summed in a fixed order, then the tail. Every op computes
// an output element the same way whatever the batch size or thread count,
// which makes the backend batch-invariant (see backend.h).
#ifndef TESSERA_CPU_OPS_H
#define TESSERA_CPU_OPS_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "backend.h"

// 4-lane vectors (SSE everywhere on x86-64; NEON on arm64). 32-byte
// vectors would change the calling convention of these helpers without AVX.
typedef float cpu_v4 __attribute__((vector_size(16)));

static inline cpu_v4 cpu_v4_load(const float *p) {
    cpu_v4 v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void cpu_v4_store(float *p, cpu_v4 v) { memcpy(p, &v, sizeof v); }

// The 8 lanes (lo, hi) summed in a fixed order.
static inline float cpu_v8_sum(cpu_v4 lo, cpu_v4 hi) {
    cpu_v4 s = lo + hi;
    return (s[0] + s[1]) + (s[2] + s[3]);
}

// a (n) . b (n): 8 lanes, then the tail.
static inline float cpu_dot(const float *a, const float *b, int64_t n) {
    cpu_v4 lo = {0}, hi = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        lo += cpu_v4_load(a + i) * cpu_v4_load(b + i);
        hi += cpu_v4_load(a + i + 4) * cpu_v4_load(b + i + 4);
    }
    float s = cpu_v8_sum(lo, hi);
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

// x (n) . w[r] (n) for four consecutive rows of w (row stride n) -> out[4].
// Each result is bit-identical to cpu_dot(x, w + r * n, n); x is loaded once
// for the four rows.
// One key of online (streaming) softmax attention: folds score s and its
// value row v (D floats) into the running max *m, normaliser *l and
// unnormalised output acc, rescaling what came before when s is a new max.
// Forward and backward attention share it so they round identically.
static inline void cpu_softmax_step(float s, const float *v, int64_t D, float *m, float *l, float *acc) {
    if (s > *m) {
        float corr = expf(*m - s);
        *l *= corr;
        for (int64_t d = 0; d < D; d++) acc[d] *= corr;
        *m = s;
    }
    float e = expf(s - *m);
    *l += e;
    for (int64_t d = 0; d < D; d++) acc[d] += e * v[d];
}

static inline void cpu_dot4(const float *x, const float *w, int64_t n, float out[4]) {
    cpu_v4 l0 = {0}, h0 = {0}, l1 = {0}, h1 = {0}, l2 = {0}, h2 = {0}, l3 = {0}, h3 = {0};
    const float *w0 = w, *w1 = w + n, *w2 = w + 2 * n, *w3 = w + 3 * n;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        cpu_v4 xl = cpu_v4_load(x + i), xh = cpu_v4_load(x + i + 4);
        l0 += xl * cpu_v4_load(w0 + i), h0 += xh * cpu_v4_load(w0 + i + 4);
        l1 += xl * cpu_v4_load(w1 + i), h1 += xh * cpu_v4_load(w1 + i + 4);
        l2 += xl * cpu_v4_load(w2 + i), h2 += xh * cpu_v4_load(w2 + i + 4);
        l3 += xl * cpu_v4_load(w3 + i), h3 += xh * cpu_v4_load(w3 + i + 4);
    }
    float s0 = cpu_v8_sum(l0, h0), s1 = cpu_v8_sum(l1, h1), s2 = cpu_v8_sum(l2, h2), s3 = cpu_v8_sum(l3, h3);
    for (; i < n; i++) {
        s0 += x[i] * w0[i];
        s1 += x[i] * w1[i];
        s2 += x[i] * w2[i];
        s3 += x[i] * w3[i];
    }
    out[0] = s0, out[1] = s1, out[2] = s2, out[3] = s3;
}

// 4 bf16 values -> f32 lanes (exact: bf16 is the high half of an f32),
// widened and shifted as one vector.
typedef uint16_t cpu_h4 __attribute__((vector_size(8)));
typedef uint32_t cpu_u4 __attribute__((vector_size(16)));

static inline cpu_v4 cpu_v4_load_bf16(const uint16_t *p) {
    cpu_h4 h;
    memcpy(&h, p, sizeof h);
    cpu_u4 u = __builtin_convertvector(h, cpu_u4) << 16;
    cpu_v4 v;
    memcpy(&v, &u, sizeof v);
    return v;
}

// n bf16 values -> out (n) f32, exactly.
static inline void cpu_bf16_row(float *out, const uint16_t *h, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) cpu_v4_store(out + i, cpu_v4_load_bf16(h + i));
    for (; i < n; i++) out[i] = num_bf16_to_f32(h[i]);
}

// ---- kernel sets -------------------------------------------------------------
//
// matmul has two sets of kernels: the portable ones above (the reference)
// and AVX2 + FMA ones (matmul_avx2.c), compiled on x86-64 with target
// attributes and used when the CPU has both. Where the CPU also has
// AVX-512VL, the AVX2 set's fused NF4 kernel looks codes up with one
// AVX-512VL permute instead of three AVX2 instructions: the same results,
// faster. The choice is process-wide, like the thread count: the best the
// CPU has, capped by $TESSERA_SIMD (0, 1, 2) when set; cpu_simd_set
// changes it between forwards.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CPU_HAVE_AVX2 1
#else
#define CPU_HAVE_AVX2 0
#endif

enum {
    CPU_SIMD_PORTABLE = 0, // the reference kernels
    CPU_SIMD_AVX2 = 1,     // AVX2 + FMA
    CPU_SIMD_AVX512VL = 2, // AVX2 + FMA, NF4 codes looked up with AVX-512VL
};

// The kernel set matmul uses (CPU_SIMD_*).
int cpu_simd(void);
// Uses the best set up to `level` that the CPU has; returns it.
int cpu_simd_set(int level);

// The AVX2 kernels (only called when cpu_simd() >= CPU_SIMD_AVX2):
// cpu_weight_rows' values, 8 at a time;
void cpu_avx2_weight_rows(const bk_weight *W, int64_t r0, int64_t n, float *out);
// x (T, C) times f32 rows w (R, C) -> out[t * ldo + r];
void cpu_avx2_tile(const float *x, int64_t T, const float *w, int64_t R, int64_t C, float *out, int64_t ldo);
// one token x (C) times rows [r0, r1) of a bf16 weight, or of an NF4 weight
// with C % 64 == 0, decoded in registers -> out[r0 .. r1); vl: AVX-512VL
// lookups (cpu_simd() == CPU_SIMD_AVX512VL).
void cpu_avx2_fused_rows(const bk_weight *W, const float *x, float *out, int64_t r0, int64_t r1, int vl);

// Rows [r0, r0 + n) of an NF4 or BF16 weight -> out (n, cols) f32; each
// value exactly as nf4_dequantize / num_bf16_to_f32 forms it.
void cpu_weight_rows(const bk_weight *W, int64_t r0, int64_t n, float *out);
// Flat elements [i, end) of a BK_W_Q8 weight -> out: (w - 128) * scale, in
// the natural element order.
void cpu_q8w_values(const bk_weight *W, int64_t i, int64_t end, float *out);

// ---- matmul modes ------------------------------------------------------------
//
// BK_MATMUL_EXACT (the kernels above) or BK_MATMUL_Q8 (q8.h: activations
// and NF4 / BK_W_Q8 weights as int8, integer dot products), process-wide
// like the kernel set; read once per matmul call.
enum { CPU_MATMUL_EXACT = 0, CPU_MATMUL_Q8 = 1 };
enum { CPU_Q8_PORTABLE = 0, CPU_Q8_AVX2 = 1, CPU_Q8_VNNI = 2 };
int cpu_matmul_mode(void);
int cpu_matmul_mode_set(int mode);
// 1 when q8 mode computes W: NF4 with cols % 64 == 0, or BK_W_Q8.
int cpu_q8_applies(const bk_weight *W);
// The q8 kernel set (CPU_Q8_*) that matmul kernel set `simd` uses: VNNI
// needs CPU_SIMD_AVX512VL and a CPU with AVX-512 VNNI and BW.
int cpu_q8_level(int simd);
// x (T, C), W (OC, C) with cpu_q8_applies(W), bias or NULL -> out (T, OC).
void cpu_q8_matmul(float *out, const float *x, const bk_weight *W, const float *bias, int T, int simd);
// n values (n % 64 == 0) -> int8 q (each 64-block de-interleaved: even
// elements, then odd) and n / 64 scales, as q8 mode quantizes activations.
void cpu_q8_quantize(const float *v, int64_t n, int8_t *q, float *s);
// Frees the q8 activation buffer (bk_cpu_shutdown).
void cpu_q8_shutdown(void);

void cpu_embed(float *x, const int32_t *tok, int T, const bk_weight *embed);
void cpu_rmsnorm(float *out, const float *x, const float *w, int64_t N, int C, float eps);
void cpu_matmul(float *out, const float *x, const bk_weight *W, const float *bias, int T);
void cpu_lora(float *y, const float *x, float *v, int C, int OC, const bk_lora_seg *seg, int nseg);
void cpu_rope(float *x, const int32_t *pos, int T, int H, int D, const float *inv_freq);
// cpu_rope with the sine's sign given: -1 rotates back (RoPE's backward).
void cpu_rope_rotate(float *x, const int32_t *pos, int T, int H, int D, const float *inv_freq, float sin_sign);
void cpu_kv_store(void *k_cache, void *v_cache, const float *k, const float *v, const int32_t *slot, int T, int KV,
                  bk_dtype dtype);
void cpu_attention(float *out, const float *q, int T, const bk_attn_args *a);
void cpu_swiglu(float *out, const float *gate, const float *up, int64_t N);
void cpu_residual(float *x, const float *y, int64_t N);
void cpu_gather_rows(float *out, const float *x, const int32_t *rows, int N, int C);
// bk_ops.sample (kernels/cpu/sample.c): one pool task per row.
void cpu_sample(float *logits, int N, int V, const bk_sample_row *rows, bk_sample_out *out);

#endif
