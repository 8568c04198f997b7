// matmul_avx2: matmul.c's kernels for x86-64 CPUs with AVX2 and FMA, chosen
// at run time (cpu_simd in matmul.c) so the build stays portable: each
// function carries target("avx2,fma") instead of the Makefile's -march.
//
// The arithmetic, the same in every kernel here so that the backend stays
// batch-invariant (backend.h): a weight is formed exactly as the reference
// forms it (NF4: code value * absmax in f32; bf16: the 16-bit shift), then
// out = hsum8(acc) + the tail, where acc is ONE 8-lane accumulator,
// acc = fma(x[i..i+8], w[i..i+8], acc) over the row in order, hsum8 sums the
// lanes in a fixed order, and the n % 8 tail is added with scalar fmas. The
// fused one-token kernels (NF4, bf16 rows decoded in registers) and the
// tile kernels (rows converted to f32 scratch, then dotted with up to 64
// tokens) follow it alike, so a token's result does not depend on which
// path its batch took. Against the portable kernels (4-lane vectors, mul
// then add) the results differ by rounding only: the fma skips one
// rounding per term and the lanes sum in another order (tests/test_kernels.c
// bounds the difference).
//
// NF4 decoding: 4 packed bytes (8 weights) are broadcast to the 8 lanes; a
// per-lane left shift puts each weight's nibble at bits 28..31, so bit 31 is
// the nibble's bit 3 and a right shift by 28 gives its index. Two 8-entry
// permutes (vpermps) look the index up in code[0..7] and code[8..15], and a
// blend on bit 31 picks the half. Where the CPU has AVX-512VL, the fused
// kernel does the lookup with one 16-entry permute instead (same values).
#include "cpu_ops.h"
#include "numeric.h"

#if CPU_HAVE_AVX2

#include <immintrin.h>

// No contraction of a * b + c into an fma behind our back: the absmax is
// formed as nf4.c forms it, one mul and one add. (GCC does not contract
// under -std=c11 and does not know the pragma; clang contracts by default.)
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#define AVX2 __attribute__((target("avx2,fma")))

// The 8 lanes summed in a fixed order: (0+4, 1+5, 2+6, 3+7), then pairs.
static inline AVX2 float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline AVX2 float fma1(float a, float b, float c) {
    return _mm_cvtss_f32(_mm_fmadd_ss(_mm_set_ss(a), _mm_set_ss(b), _mm_set_ss(c)));
}

// The NF4 lookup state: the code table in two halves and the lane shifts.
typedef struct nf4_lut {
    __m256 lo, hi;
    __m256i shl;
} nf4_lut;

static inline AVX2 nf4_lut lut_make(const float code[16]) {
    nf4_lut l;
    l.lo = _mm256_loadu_ps(code);
    l.hi = _mm256_loadu_ps(code + 8);
    // weight 2k is the high nibble of byte k (bits 8k+4..8k+7), 2k+1 the low one
    l.shl = _mm256_setr_epi32(24, 28, 16, 20, 8, 12, 0, 4);
    return l;
}

// Code values of the 8 weights in packed bytes p[0..3].
static inline AVX2 __m256 nf4_decode8(const uint8_t *p, const nf4_lut *l) {
    uint32_t u;
    memcpy(&u, p, sizeof u);
    __m256i top = _mm256_sllv_epi32(_mm256_set1_epi32((int)u), l->shl);
    __m256i idx = _mm256_srli_epi32(top, 28);
    __m256 a = _mm256_permutevar8x32_ps(l->lo, idx), b = _mm256_permutevar8x32_ps(l->hi, idx);
    return _mm256_blendv_ps(a, b, _mm256_castsi256_ps(top));
}

// Block b's absmax, formed exactly as nf4_absmax forms it.
static inline float absmax_of(const nf4_tensor *t, int64_t b) {
    if (!t->nested) return t->absmax[b];
    float scaled = t->dyn[t->absmax_q[b]] * t->nested_absmax[b / NF4_NESTED_BLOCK];
    return scaled + t->offset;
}

// 8 bf16 weights -> f32.
static inline AVX2 __m256 bf16_load8(const uint16_t *h) {
    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)h));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

// ---- conversion to f32 (the tile path's scratch) ---------------------------------

static AVX2 void nf4_range(const nf4_tensor *t, int64_t i, int64_t end, float *out) {
    nf4_lut l = lut_make(t->code);
    while (i < end) {
        int64_t b = i / NF4_BLOCK;
        int64_t stop = (b + 1) * NF4_BLOCK < end ? (b + 1) * NF4_BLOCK : end;
        float a = absmax_of(t, b);
        if (i == b * NF4_BLOCK && stop == i + NF4_BLOCK) {
            const uint8_t *p = t->packed + i / 2;
            __m256 av = _mm256_set1_ps(a);
            for (int k = 0; k < NF4_BLOCK; k += 8)
                _mm256_storeu_ps(out + k, _mm256_mul_ps(nf4_decode8(p + k / 2, &l), av));
            out += NF4_BLOCK;
            i = stop;
            continue;
        }
        for (; i < stop; i++) *out++ = t->code[nf4_code_at(t, i)] * a;
    }
}

static AVX2 void bf16_range(const uint16_t *h, int64_t n, float *out) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, bf16_load8(h + i));
    for (; i < n; i++) out[i] = num_bf16_to_f32(h[i]);
}

void cpu_avx2_weight_rows(const bk_weight *W, int64_t r0, int64_t n, float *out) {
    int64_t begin = r0 * W->cols, end = (r0 + n) * W->cols;
    if (W->type == BK_W_Q8)
        cpu_weight_rows(W, r0, n, out);
    else if (W->type == BK_W_NF4)
        nf4_range(&W->nf4, begin, end, out);
    else if (W->type == BK_W_BF16)
        bf16_range((const uint16_t *)W->data + begin, end - begin, out);
    else
        memcpy(out, (const float *)W->data + begin, (size_t)(end - begin) * sizeof(float));
}

// ---- the tile path: f32 rows times a chunk of tokens -------------------------------

// x[t] (n) . w[r] (n) for 2 tokens and 4 rows (row stride n): out[t][r].
static inline AVX2 void dot_4x2(const float *x0, const float *x1, const float *w, int64_t n, float *o0, float *o1) {
    __m256 a00 = _mm256_setzero_ps(), a01 = a00, a02 = a00, a03 = a00;
    __m256 a10 = a00, a11 = a00, a12 = a00, a13 = a00;
    const float *w0 = w, *w1 = w + n, *w2 = w + 2 * n, *w3 = w + 3 * n;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v0 = _mm256_loadu_ps(w0 + i), v1 = _mm256_loadu_ps(w1 + i);
        __m256 v2 = _mm256_loadu_ps(w2 + i), v3 = _mm256_loadu_ps(w3 + i);
        __m256 x = _mm256_loadu_ps(x0 + i);
        a00 = _mm256_fmadd_ps(x, v0, a00), a01 = _mm256_fmadd_ps(x, v1, a01);
        a02 = _mm256_fmadd_ps(x, v2, a02), a03 = _mm256_fmadd_ps(x, v3, a03);
        x = _mm256_loadu_ps(x1 + i);
        a10 = _mm256_fmadd_ps(x, v0, a10), a11 = _mm256_fmadd_ps(x, v1, a11);
        a12 = _mm256_fmadd_ps(x, v2, a12), a13 = _mm256_fmadd_ps(x, v3, a13);
    }
    float s[8] = {hsum8(a00), hsum8(a01), hsum8(a02), hsum8(a03), hsum8(a10), hsum8(a11), hsum8(a12), hsum8(a13)};
    for (; i < n; i++)
        for (int r = 0; r < 4; r++) {
            s[r] = fma1(x0[i], w[r * n + i], s[r]);
            s[4 + r] = fma1(x1[i], w[r * n + i], s[4 + r]);
        }
    memcpy(o0, s, 4 * sizeof(float));
    memcpy(o1, s + 4, 4 * sizeof(float));
}

// x (n) . w[r] (n) for 4 rows -> out[4]
static inline AVX2 void dot_4x1(const float *x, const float *w, int64_t n, float *out) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    const float *w0 = w, *w1 = w + n, *w2 = w + 2 * n, *w3 = w + 3 * n;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 xv = _mm256_loadu_ps(x + i);
        a0 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w0 + i), a0);
        a1 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w1 + i), a1);
        a2 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w2 + i), a2);
        a3 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w3 + i), a3);
    }
    float s[4] = {hsum8(a0), hsum8(a1), hsum8(a2), hsum8(a3)};
    for (; i < n; i++)
        for (int r = 0; r < 4; r++) s[r] = fma1(x[i], w[r * n + i], s[r]);
    memcpy(out, s, sizeof s);
}

static inline AVX2 float dot_1x1(const float *x, const float *w, int64_t n) {
    __m256 a = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) a = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(w + i), a);
    float s = hsum8(a);
    for (; i < n; i++) s = fma1(x[i], w[i], s);
    return s;
}

AVX2 void cpu_avx2_tile(const float *x, int64_t T, const float *w, int64_t R, int64_t C, float *out, int64_t ldo) {
    int64_t t = 0;
    for (; t + 2 <= T; t += 2) {
        const float *x0 = x + t * C, *x1 = x0 + C;
        float *o0 = out + t * ldo, *o1 = o0 + ldo;
        int64_t r = 0;
        for (; r + 4 <= R; r += 4) dot_4x2(x0, x1, w + r * C, C, o0 + r, o1 + r);
        for (; r < R; r++) o0[r] = dot_1x1(x0, w + r * C, C), o1[r] = dot_1x1(x1, w + r * C, C);
    }
    for (; t < T; t++) {
        const float *xt = x + t * C;
        float *o = out + t * ldo;
        int64_t r = 0;
        for (; r + 4 <= R; r += 4) dot_4x1(xt, w + r * C, C, o + r);
        for (; r < R; r++) o[r] = dot_1x1(xt, w + r * C, C);
    }
}

// ---- the fused one-token path ---------------------------------------------------------

// Four rows' packed bytes PREFETCH ahead of p0..p3 (one line per two
// blocks). The hardware prefetchers alone leave the decode about a third
// short of its in-cache rate on the 0.5B model's matrices (bench/nf4.c).
#define PREFETCH 2048
static inline void prefetch4(const uint8_t *p0, const uint8_t *p1, const uint8_t *p2, const uint8_t *p3) {
    __builtin_prefetch(p0 + PREFETCH);
    __builtin_prefetch(p1 + PREFETCH);
    __builtin_prefetch(p2 + PREFETCH);
    __builtin_prefetch(p3 + PREFETCH);
}

// Rows r .. r+3 of an NF4 weight whose rows hold whole blocks (n % 64 == 0)
// dotted with x (n) -> out[4].
static inline AVX2 void nf4_rows4(const float *x, const nf4_tensor *q, int64_t r, int64_t n, const nf4_lut *l,
                                  float *out) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    const uint8_t *p0 = q->packed + r * n / 2, *p1 = p0 + n / 2, *p2 = p1 + n / 2, *p3 = p2 + n / 2;
    int64_t nb = n / NF4_BLOCK, b0 = r * nb;
    for (int64_t j = 0; j < nb; j++) {
        __m256 s0 = _mm256_set1_ps(absmax_of(q, b0 + j)), s1 = _mm256_set1_ps(absmax_of(q, b0 + nb + j));
        __m256 s2 = _mm256_set1_ps(absmax_of(q, b0 + 2 * nb + j)), s3 = _mm256_set1_ps(absmax_of(q, b0 + 3 * nb + j));
        const float *xb = x + j * NF4_BLOCK;
        int64_t pb = j * (NF4_BLOCK / 2);
        if (!(j & 1)) prefetch4(p0 + pb, p1 + pb, p2 + pb, p3 + pb);
        for (int k = 0; k < NF4_BLOCK; k += 8) {
            __m256 xv = _mm256_loadu_ps(xb + k);
            a0 = _mm256_fmadd_ps(xv, _mm256_mul_ps(nf4_decode8(p0 + pb + k / 2, l), s0), a0);
            a1 = _mm256_fmadd_ps(xv, _mm256_mul_ps(nf4_decode8(p1 + pb + k / 2, l), s1), a1);
            a2 = _mm256_fmadd_ps(xv, _mm256_mul_ps(nf4_decode8(p2 + pb + k / 2, l), s2), a2);
            a3 = _mm256_fmadd_ps(xv, _mm256_mul_ps(nf4_decode8(p3 + pb + k / 2, l), s3), a3);
        }
    }
    out[0] = hsum8(a0), out[1] = hsum8(a1), out[2] = hsum8(a2), out[3] = hsum8(a3);
}

// With AVX-512VL, one two-table permute (vpermt2ps on 8 lanes) looks up
// all 16 codes: the same values as nf4_decode8 in 4 instructions instead
// of 7, the rest of the kernel unchanged (so the results are the same bits).
#define AVX512VL __attribute__((target("avx2,fma,avx512f,avx512vl")))

static inline AVX512VL __m256 nf4_decode8_vl(const uint8_t *p, const nf4_lut *l) {
    uint32_t u;
    memcpy(&u, p, sizeof u);
    // the nibble of weight i at bits 0..3 of lane i; vpermt2ps reads only those
    __m256i idx = _mm256_srlv_epi32(_mm256_set1_epi32((int)u), _mm256_setr_epi32(4, 0, 12, 8, 20, 16, 28, 24));
    return _mm256_permutex2var_ps(l->lo, idx, l->hi);
}

// nf4_rows4 with nf4_decode8_vl.
static inline AVX512VL void nf4_rows4_vl(const float *x, const nf4_tensor *q, int64_t r, int64_t n, const nf4_lut *l,
                                         float *out) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    const uint8_t *p0 = q->packed + r * n / 2, *p1 = p0 + n / 2, *p2 = p1 + n / 2, *p3 = p2 + n / 2;
    int64_t nb = n / NF4_BLOCK, b0 = r * nb;
    for (int64_t j = 0; j < nb; j++) {
        __m256 s0 = _mm256_set1_ps(absmax_of(q, b0 + j)), s1 = _mm256_set1_ps(absmax_of(q, b0 + nb + j));
        __m256 s2 = _mm256_set1_ps(absmax_of(q, b0 + 2 * nb + j)), s3 = _mm256_set1_ps(absmax_of(q, b0 + 3 * nb + j));
        const float *xb = x + j * NF4_BLOCK;
        int64_t pb = j * (NF4_BLOCK / 2);
        if (!(j & 1)) prefetch4(p0 + pb, p1 + pb, p2 + pb, p3 + pb);
        for (int k = 0; k < NF4_BLOCK; k += 8) {
            __m256 xv = _mm256_loadu_ps(xb + k);
            a0 = _mm256_fmadd_ps(xv, _mm256_mul_ps(nf4_decode8_vl(p0 + pb + k / 2, l), s0), a0);
            a1 = _mm256_fmadd_ps(xv, _mm256_mul_ps(nf4_decode8_vl(p1 + pb + k / 2, l), s1), a1);
            a2 = _mm256_fmadd_ps(xv, _mm256_mul_ps(nf4_decode8_vl(p2 + pb + k / 2, l), s2), a2);
            a3 = _mm256_fmadd_ps(xv, _mm256_mul_ps(nf4_decode8_vl(p3 + pb + k / 2, l), s3), a3);
        }
    }
    out[0] = hsum8(a0), out[1] = hsum8(a1), out[2] = hsum8(a2), out[3] = hsum8(a3);
}

static AVX512VL void nf4_rows_vl(const float *x, const nf4_tensor *q, int64_t r, int64_t r1, const nf4_lut *l,
                                 float *out) {
    for (; r + 4 <= r1; r += 4) nf4_rows4_vl(x, q, r, q->cols, l, out + r);
}

static inline AVX2 float nf4_row1(const float *x, const nf4_tensor *q, int64_t r, int64_t n, const nf4_lut *l) {
    __m256 a = _mm256_setzero_ps();
    const uint8_t *p = q->packed + r * n / 2;
    int64_t nb = n / NF4_BLOCK;
    for (int64_t j = 0; j < nb; j++) {
        __m256 s = _mm256_set1_ps(absmax_of(q, r * nb + j));
        for (int k = 0; k < NF4_BLOCK; k += 8) {
            __m256 w = _mm256_mul_ps(nf4_decode8(p + j * (NF4_BLOCK / 2) + k / 2, l), s);
            a = _mm256_fmadd_ps(_mm256_loadu_ps(x + j * NF4_BLOCK + k), w, a);
        }
    }
    return hsum8(a);
}

static inline AVX2 void bf16_rows4(const float *x, const uint16_t *w, int64_t n, float *out) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    const uint16_t *w0 = w, *w1 = w + n, *w2 = w + 2 * n, *w3 = w + 3 * n;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 xv = _mm256_loadu_ps(x + i);
        a0 = _mm256_fmadd_ps(xv, bf16_load8(w0 + i), a0);
        a1 = _mm256_fmadd_ps(xv, bf16_load8(w1 + i), a1);
        a2 = _mm256_fmadd_ps(xv, bf16_load8(w2 + i), a2);
        a3 = _mm256_fmadd_ps(xv, bf16_load8(w3 + i), a3);
    }
    float s[4] = {hsum8(a0), hsum8(a1), hsum8(a2), hsum8(a3)};
    for (; i < n; i++)
        for (int r = 0; r < 4; r++) s[r] = fma1(x[i], num_bf16_to_f32(w[r * n + i]), s[r]);
    memcpy(out, s, sizeof s);
}

static inline AVX2 float bf16_row1(const float *x, const uint16_t *w, int64_t n) {
    __m256 a = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) a = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), bf16_load8(w + i), a);
    float s = hsum8(a);
    for (; i < n; i++) s = fma1(x[i], num_bf16_to_f32(w[i]), s);
    return s;
}

AVX2 void cpu_avx2_fused_rows(const bk_weight *W, const float *x, float *out, int64_t r0, int64_t r1, int vl) {
    int64_t n = W->cols, r = r0;
    if (W->type == BK_W_BF16) {
        const uint16_t *w = W->data;
        for (; r + 4 <= r1; r += 4) bf16_rows4(x, w + r * n, n, out + r);
        for (; r < r1; r++) out[r] = bf16_row1(x, w + r * n, n);
        return;
    }
    nf4_lut l = lut_make(W->nf4.code);
    if (vl) {
        nf4_rows_vl(x, &W->nf4, r, r1, &l, out);
        r += (r1 - r) / 4 * 4;
    }
    for (; r + 4 <= r1; r += 4) nf4_rows4(x, &W->nf4, r, n, &l, out + r);
    for (; r < r1; r++) out[r] = nf4_row1(x, &W->nf4, r, n, &l);
}

#endif
