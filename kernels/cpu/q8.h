// q8: the CPU backend's int8 matmul mode (bk_cpu_set_matmul(BK_MATMUL_Q8)),
// shared by its portable reference (matmul_q8.c) and its AVX2 / AVX-512
// VNNI kernels (matmul_q8_avx.c).
//
// The math, the same in every kernel set so that a token's outputs are the
// same bits whatever T, the thread count, the path (fused one-token or tile)
// or the kernel set:
//   - Activations are quantized per 64-value block (NF4's block, aligned
//     with it because the weight has cols % 64 == 0): s = absmax / 127,
//     q = round_to_nearest_even(x * (127 / absmax)) in [-127, 127].
//   - Weights are int8 too: NF4 code c -> round(code[c] * 127), scale
//     nf4_absmax / 127; a BK_W_Q8 weight holds them already.
//   - Both are stored per block DE-INTERLEAVED: bytes 0..31 the even
//     elements 0, 2, .., 62, bytes 32..63 the odd ones. That is the order
//     the NF4 nibbles come out in (high nibbles: even, low: odd), so a
//     packed block is dotted without a byte shuffle. Weights are kept
//     offset by +128 (unsigned), the operand order vpdpbusd wants.
//   - Per block, 16 int32 lanes: lane l = sum over bytes 4l .. 4l+3 of
//     w * x (exact integer arithmetic, whatever instructions form it).
//     Then acc[l] = fmaf((float)lane[l], s_x * s_w, acc[l]) over the
//     blocks in order (16 f32 lanes; the products are < 2^24, converted
//     exactly), and out = q8_hsum16(acc): lanes l and l + 8, then l and
//     l + 4, then l and l + 2, then the two left.
#ifndef TESSERA_CPU_Q8_H
#define TESSERA_CPU_Q8_H

#include <math.h>
#include <stdint.h>

#include "backend.h"

#define Q8_BLOCK 64
#define Q8_LANES 16
#define Q8_INV127 (1.0f / 127.0f)

// Quantized activations x (T, C), C = nb * 64, in memory the q8 module owns.
typedef struct q8_act {
    int8_t *q;     // (T, C), blocks de-interleaved
    int32_t *corr; // (T, nb, 16): -128 * the sum of lane l's four q bytes
    float *s;      // (T, nb): each block's scale
    int64_t C, nb;
} q8_act;

// Rows of int8 weights (+128, blocks de-interleaved) and their block
// scales: row r at w + r * C, s + r * nb. A tile decoded from NF4 into
// scratch or a BK_W_Q8 weight.
typedef struct q8_rows {
    const uint8_t *w;
    const float *s;
} q8_rows;

// The 16 lanes summed in the fixed order above.
static inline float q8_hsum16(const float a[16]) {
    float t[8], u[4];
    for (int l = 0; l < 8; l++) t[l] = a[l] + a[l + 8];
    for (int l = 0; l < 4; l++) u[l] = t[l] + t[l + 4];
    return (u[0] + u[2]) + (u[1] + u[3]);
}

// The int8 value of NF4 code value c (in [-1, 1]).
static inline int q8_code(float c) { return (int)nearbyintf(c * 127.0f); }

// NF4 block b's weight scale.
static inline float q8_nf4_scale(const nf4_tensor *t, int64_t b) { return nf4_absmax(t, b) * Q8_INV127; }

// The kernels of one set (matmul_q8.c: portable; matmul_q8_avx.c: avx2,
// vnni). Every one computes exactly the math above.
//   nf4_decode: rows [r0, r0 + n) of an NF4 weight (cols % 64 == 0) -> n
//     rows of w (n * cols bytes) and s (n * nb floats);
//   nf4_rows: one token t of x times NF4 rows [r0, r1), decoded in
//     registers -> out[r] (the fused decode path);
//   tile: tokens [t0, t1) of x times R rows -> out[(t - t0) * ldo + r].
void cpu_q8_ref_nf4_decode(const nf4_tensor *q, int64_t r0, int64_t n, uint8_t *w, float *s);
void cpu_q8_ref_tile(const q8_rows *W, int64_t R, const q8_act *x, int64_t t0, int64_t t1, float *out, int64_t ldo);

void cpu_q8_avx2_nf4_decode(const nf4_tensor *q, int64_t r0, int64_t n, uint8_t *w, float *s);
void cpu_q8_avx2_nf4_rows(const nf4_tensor *q, const q8_act *x, int64_t t, int64_t r0, int64_t r1, float *out);
void cpu_q8_avx2_tile(const q8_rows *W, int64_t R, const q8_act *x, int64_t t0, int64_t t1, float *out,
                      int64_t ldo);
// n values of v (n % 64 == 0) -> q, s as cpu_q8_quantize gives them, and
// corr (n / 4 lanes) as q8_act holds it.
void cpu_q8_vnni_quantize(const float *v, int64_t n, int8_t *q, float *s, int32_t *corr);
void cpu_q8_vnni_nf4_rows(const nf4_tensor *q, const q8_act *x, int64_t t, int64_t r0, int64_t r1, float *out);
void cpu_q8_vnni_tile(const q8_rows *W, int64_t R, const q8_act *x, int64_t t0, int64_t t1, float *out,
                      int64_t ldo);

#endif
