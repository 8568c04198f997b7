// matmul_q8_avx: matmul_q8.c's kernels for x86-64, chosen at run time
// (cpu_q8_level), each function with its own target attribute so the build
// stays portable. The math is q8.h's; only how the int32 lanes are formed
// differs, and integer sums are exact, so every set gives the same bits.
//
// AVX2 (vpmaddubsw): u8 x s8 pairs summed to int16, which saturates past
// 32767. With w + 128 as the unsigned side a pair reaches 2 * 255 * 127,
// so the sign trick is used instead: |x| (u8, <= 127) times w with x's
// sign (vpsignb): a pair is at most 2 * 127 * 127 = 32258, never
// saturated. vpmaddwd by ones then sums the pairs to int32 lanes of 4 bytes.
//
// AVX-512 VNNI (vpdpbusd): u8 (w + 128) x s8 (x) summed 4 to a lane into an
// int32 accumulator that starts at the activation's correction lane
// (-128 * the lane's x sum), which takes the +128 back out exactly. One
// 512-bit instruction does a whole 64-value block.
//
// The tile (prefill, batches): 4 rows x 4 tokens per step, 16 zmm
// accumulators; the per-block scale products are formed 16 at a time into
// a small table and broadcast from it by the FMAs, and the 16 sums are
// reduced together. Activations are quantized with AVX-512 too (same bits
// as cpu_q8_quantize).
//
// NF4 decoding: the 32 packed bytes of a block; their high nibbles are the
// even elements, the low ones the odd, i.e. the de-interleaved order, so
// one vpshufb per half looks the int8 codes up in the 16-byte table.
#include "cpu_ops.h"
#include "q8.h"

#if CPU_HAVE_AVX2

#include <immintrin.h>

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#define AVX2 __attribute__((target("avx2,fma")))
#define VNNI __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni")))

// Four rows' packed bytes this far ahead are prefetched, as the exact
// fused kernels do.
#define PREFETCH 2048

// 16 lanes (lo = 0..7, hi = 8..15) summed in q8_hsum16's order.
static inline AVX2 float hsum16_avx2(__m256 lo, __m256 hi) {
    __m256 t = _mm256_add_ps(lo, hi);
    __m128 u = _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
    u = _mm_add_ps(u, _mm_movehl_ps(u, u));
    u = _mm_add_ss(u, _mm_movehdup_ps(u));
    return _mm_cvtss_f32(u);
}

// The code table (int8 + 128 when `offset`, else int8) in both 128-bit lanes.
static inline AVX2 __m256i table_avx2(const nf4_tensor *q, int offset) {
    uint8_t tab[16];
    for (int c = 0; c < 16; c++) tab[c] = (uint8_t)(q8_code(q->code[c]) + (offset ? 128 : 0));
    return _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)tab));
}

// ---- AVX2 -------------------------------------------------------------------------

void AVX2 cpu_q8_avx2_nf4_decode(const nf4_tensor *q, int64_t r0, int64_t n, uint8_t *w, float *s) {
    __m256i tab = table_avx2(q, 1), m = _mm256_set1_epi8(0x0f);
    int64_t nb = q->cols / Q8_BLOCK;
    for (int64_t b = r0 * nb; b < (r0 + n) * nb; b++) {
        __m256i p = _mm256_loadu_si256((const __m256i *)(q->packed + b * (Q8_BLOCK / 2)));
        __m256i hi = _mm256_and_si256(_mm256_srli_epi16(p, 4), m), lo = _mm256_and_si256(p, m);
        _mm256_storeu_si256((__m256i *)w, _mm256_shuffle_epi8(tab, hi));
        _mm256_storeu_si256((__m256i *)(w + 32), _mm256_shuffle_epi8(tab, lo));
        *s++ = q8_nf4_scale(q, b);
        w += Q8_BLOCK;
    }
}

// The int32 lanes 0..7 of s8 weights w times s8 activations x (32 bytes),
// x's absolute value given: sum of 4 byte products per lane.
static inline AVX2 __m256i dot32_avx2(__m256i w, __m256i x, __m256i ax) {
    __m256i p = _mm256_maddubs_epi16(ax, _mm256_sign_epi8(w, x));
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

// One block of a row: lanes (lo, hi) += int dot * sc.
static inline AVX2 void block_avx2(__m256i we, __m256i wo, __m256i xe, __m256i xo, __m256i ae, __m256i ao, float sc,
                                   __m256 *lo, __m256 *hi) {
    __m256 v = _mm256_set1_ps(sc);
    *lo = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot32_avx2(we, xe, ae)), v, *lo);
    *hi = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot32_avx2(wo, xo, ao)), v, *hi);
}

// Rows r .. r+3 of an NF4 weight (cols % 64 == 0) . token t -> out[r .. r+3].
static inline AVX2 void nf4_rows4_avx2(const nf4_tensor *q, const q8_act *x, int64_t t, int64_t r, __m256i tab,
                                       float *out) {
    int64_t nb = x->nb, half = Q8_BLOCK / 2;
    const int8_t *xq = x->q + t * x->C;
    const float *xs = x->s + t * nb;
    const uint8_t *p[4];
    __m256 lo[4], hi[4];
    for (int i = 0; i < 4; i++) {
        p[i] = q->packed + (r + i) * x->C / 2;
        lo[i] = hi[i] = _mm256_setzero_ps();
    }
    __m256i m = _mm256_set1_epi8(0x0f);
    for (int64_t b = 0; b < nb; b++) {
        __m256i xe = _mm256_loadu_si256((const __m256i *)(xq + b * Q8_BLOCK));
        __m256i xo = _mm256_loadu_si256((const __m256i *)(xq + b * Q8_BLOCK + half));
        __m256i ae = _mm256_abs_epi8(xe), ao = _mm256_abs_epi8(xo);
        for (int i = 0; i < 4; i++) {
            const uint8_t *pb = p[i] + b * half;
            if (!(b & 1)) __builtin_prefetch(pb + PREFETCH);
            __m256i pk = _mm256_loadu_si256((const __m256i *)pb);
            __m256i we = _mm256_shuffle_epi8(tab, _mm256_and_si256(_mm256_srli_epi16(pk, 4), m));
            __m256i wo = _mm256_shuffle_epi8(tab, _mm256_and_si256(pk, m));
            block_avx2(we, wo, xe, xo, ae, ao, xs[b] * q8_nf4_scale(q, (r + i) * nb + b), &lo[i], &hi[i]);
        }
    }
    for (int i = 0; i < 4; i++) out[r + i] = hsum16_avx2(lo[i], hi[i]);
}

// One row of an NF4 weight . token t.
static inline AVX2 float nf4_row1_avx2(const nf4_tensor *q, const q8_act *x, int64_t t, int64_t r, __m256i tab) {
    int64_t nb = x->nb, half = Q8_BLOCK / 2;
    const int8_t *xq = x->q + t * x->C;
    const uint8_t *p = q->packed + r * x->C / 2;
    __m256 lo = _mm256_setzero_ps(), hi = lo;
    __m256i m = _mm256_set1_epi8(0x0f);
    for (int64_t b = 0; b < nb; b++) {
        __m256i xe = _mm256_loadu_si256((const __m256i *)(xq + b * Q8_BLOCK));
        __m256i xo = _mm256_loadu_si256((const __m256i *)(xq + b * Q8_BLOCK + half));
        __m256i pk = _mm256_loadu_si256((const __m256i *)(p + b * half));
        __m256i we = _mm256_shuffle_epi8(tab, _mm256_and_si256(_mm256_srli_epi16(pk, 4), m));
        __m256i wo = _mm256_shuffle_epi8(tab, _mm256_and_si256(pk, m));
        float sc = x->s[t * nb + b] * q8_nf4_scale(q, r * nb + b);
        block_avx2(we, wo, xe, xo, _mm256_abs_epi8(xe), _mm256_abs_epi8(xo), sc, &lo, &hi);
    }
    return hsum16_avx2(lo, hi);
}

void AVX2 cpu_q8_avx2_nf4_rows(const nf4_tensor *q, const q8_act *x, int64_t t, int64_t r0, int64_t r1, float *out) {
    __m256i tab = table_avx2(q, 0);
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4) nf4_rows4_avx2(q, x, t, r, tab, out);
    for (; r < r1; r++) out[r] = nf4_row1_avx2(q, x, t, r, tab);
}

// Row w (u8, +128) . token t.
static inline AVX2 float row_avx2(const uint8_t *w, const float *ws, const q8_act *x, int64_t t) {
    int64_t nb = x->nb, half = Q8_BLOCK / 2;
    const int8_t *xq = x->q + t * x->C;
    const float *xs = x->s + t * nb;
    __m256 lo = _mm256_setzero_ps(), hi = lo;
    __m256i flip = _mm256_set1_epi8((char)0x80);
    for (int64_t b = 0; b < nb; b++) {
        __m256i xe = _mm256_loadu_si256((const __m256i *)(xq + b * Q8_BLOCK));
        __m256i xo = _mm256_loadu_si256((const __m256i *)(xq + b * Q8_BLOCK + half));
        __m256i we = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(w + b * Q8_BLOCK)), flip);
        __m256i wo = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(w + b * Q8_BLOCK + half)), flip);
        block_avx2(we, wo, xe, xo, _mm256_abs_epi8(xe), _mm256_abs_epi8(xo), xs[b] * ws[b], &lo, &hi);
    }
    return hsum16_avx2(lo, hi);
}

void AVX2 cpu_q8_avx2_tile(const q8_rows *W, int64_t R, const q8_act *x, int64_t t0, int64_t t1, float *out,
                           int64_t ldo) {
    for (int64_t t = t0; t < t1; t++)
        for (int64_t r = 0; r < R; r++) out[(t - t0) * ldo + r] = row_avx2(W->w + r * x->C, W->s + r * x->nb, x, t);
}


// ---- quantizing activations (AVX-512) ------------------------------------------------

// q8_round(v * id) of 16 values: round to nearest even, then clamp as its
// compares do (min(127, NaN) keeps the NaN, max(NaN, -127) is -127).
static inline VNNI __m128i round_int8_vnni(__m512 v, __m512 id) {
    __m512 r = _mm512_roundscale_ps(_mm512_mul_ps(v, id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    r = _mm512_max_ps(_mm512_min_ps(_mm512_set1_ps(127.0f), r), _mm512_set1_ps(-127.0f));
    return _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(r));
}

// One block: cpu_q8_quantize's math 16 values at a time, bit for bit: the same absmax
// (NaN lanes never win a max, as in the scalar compare), the same scale
// and reciprocal (scalar), the same product, rounding to nearest even and
// clamp order (min then max, so a NaN or an overflowed product lands on
// -127 / +127 as q8_round's compares put it), then the correction lanes
// -128 * (sum of 4 bytes) with one vpdpbusd.
static inline VNNI void quantize_block_vnni(const float *v, int8_t *q, float *s, int32_t *corr) {
    __m512 x0 = _mm512_loadu_ps(v), x1 = _mm512_loadu_ps(v + 16);
    __m512 x2 = _mm512_loadu_ps(v + 32), x3 = _mm512_loadu_ps(v + 48);
    // max(a, m) gives m when a is NaN (vmaxps returns its second operand)
    __m512 m = _mm512_max_ps(_mm512_abs_ps(x0), _mm512_setzero_ps());
    m = _mm512_max_ps(_mm512_abs_ps(x1), m);
    m = _mm512_max_ps(_mm512_abs_ps(x2), m);
    m = _mm512_max_ps(_mm512_abs_ps(x3), m);
    __mmask16 nan = _mm512_cmp_ps_mask(x0, x0, _CMP_UNORD_Q) | _mm512_cmp_ps_mask(x1, x1, _CMP_UNORD_Q) |
                    _mm512_cmp_ps_mask(x2, x2, _CMP_UNORD_Q) | _mm512_cmp_ps_mask(x3, x3, _CMP_UNORD_Q);
    float amax = _mm512_reduce_max_ps(m); // of values >= 0 and not NaN: any order gives the same
    float id = amax > 0 ? 127.0f / amax : 0.0f;
    if (amax == INFINITY) id = 0;
    *s = nan ? NAN : amax * Q8_INV127;
    // de-interleave: evens of (x0, x1) and (x2, x3), then odds
    __m512i ev = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    __m512i od = _mm512_add_epi32(ev, _mm512_set1_epi32(1));
    __m512 vid = _mm512_set1_ps(id);
    __m128i e0 = round_int8_vnni(_mm512_permutex2var_ps(x0, ev, x1), vid);
    __m128i e1 = round_int8_vnni(_mm512_permutex2var_ps(x2, ev, x3), vid);
    __m128i o0 = round_int8_vnni(_mm512_permutex2var_ps(x0, od, x1), vid);
    __m128i o1 = round_int8_vnni(_mm512_permutex2var_ps(x2, od, x3), vid);
    __m512i all = _mm512_inserti32x4(_mm512_castsi128_si512(e0), e1, 1);
    all = _mm512_inserti32x4(_mm512_inserti32x4(all, o0, 2), o1, 3);
    _mm512_storeu_si512(q, all);
    __m512i sum = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8((char)0x80), all);
    _mm512_storeu_si512(corr, _mm512_sub_epi32(_mm512_setzero_si512(), sum));
}

void VNNI cpu_q8_vnni_quantize(const float *v, int64_t n, int8_t *q, float *s, int32_t *corr) {
    for (int64_t b = 0; b < n / Q8_BLOCK; b++)
        quantize_block_vnni(v + b * Q8_BLOCK, q + b * Q8_BLOCK, s + b, corr + b * Q8_LANES);
}

// ---- AVX-512 VNNI -------------------------------------------------------------------

// 16 lanes summed in q8_hsum16's order.
static inline VNNI float hsum16_vnni(__m512 a) {
    return hsum16_avx2(_mm512_castps512_ps256(a), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)));
}

// The block at packed bytes p -> 64 weights + 128, de-interleaved.
static inline VNNI __m512i nf4_block_vnni(const uint8_t *p, __m512i tab) {
    __m256i pk = _mm256_loadu_si256((const __m256i *)p);
    __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_srli_epi16(pk, 4)), pk, 1);
    return _mm512_shuffle_epi8(tab, _mm512_and_si512(v, _mm512_set1_epi8(0x0f)));
}

static inline VNNI __m512i table_vnni(const nf4_tensor *q) {
    return _mm512_broadcast_i32x4(_mm256_castsi256_si128(table_avx2(q, 1)));
}

// Rows r .. r+3 of an NF4 weight . token t -> out[r .. r+3].
static inline VNNI void nf4_rows4_vnni(const nf4_tensor *q, const q8_act *x, int64_t t, int64_t r, __m512i tab,
                                       float *out) {
    int64_t nb = x->nb, half = Q8_BLOCK / 2;
    const int8_t *xq = x->q + t * x->C;
    const int32_t *xc = x->corr + t * nb * Q8_LANES;
    const float *xs = x->s + t * nb;
    const uint8_t *p0 = q->packed + r * x->C / 2, *p1 = p0 + x->C / 2, *p2 = p1 + x->C / 2, *p3 = p2 + x->C / 2;
    int64_t b0 = r * nb;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t b = 0; b < nb; b++) {
        __m512i xv = _mm512_loadu_si512(xq + b * Q8_BLOCK), c = _mm512_loadu_si512(xc + b * Q8_LANES);
        int64_t pb = b * half;
        if (!(b & 1)) {
            __builtin_prefetch(p0 + pb + PREFETCH), __builtin_prefetch(p1 + pb + PREFETCH);
            __builtin_prefetch(p2 + pb + PREFETCH), __builtin_prefetch(p3 + pb + PREFETCH);
        }
        __m512i d0 = _mm512_dpbusd_epi32(c, nf4_block_vnni(p0 + pb, tab), xv);
        __m512i d1 = _mm512_dpbusd_epi32(c, nf4_block_vnni(p1 + pb, tab), xv);
        __m512i d2 = _mm512_dpbusd_epi32(c, nf4_block_vnni(p2 + pb, tab), xv);
        __m512i d3 = _mm512_dpbusd_epi32(c, nf4_block_vnni(p3 + pb, tab), xv);
        a0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d0), _mm512_set1_ps(xs[b] * q8_nf4_scale(q, b0 + b)), a0);
        a1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d1), _mm512_set1_ps(xs[b] * q8_nf4_scale(q, b0 + nb + b)), a1);
        a2 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d2), _mm512_set1_ps(xs[b] * q8_nf4_scale(q, b0 + 2 * nb + b)), a2);
        a3 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d3), _mm512_set1_ps(xs[b] * q8_nf4_scale(q, b0 + 3 * nb + b)), a3);
    }
    out[r] = hsum16_vnni(a0), out[r + 1] = hsum16_vnni(a1), out[r + 2] = hsum16_vnni(a2), out[r + 3] = hsum16_vnni(a3);
}

static inline VNNI float nf4_row1_vnni(const nf4_tensor *q, const q8_act *x, int64_t t, int64_t r, __m512i tab) {
    int64_t nb = x->nb;
    const uint8_t *p = q->packed + r * x->C / 2;
    __m512 a = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        __m512i xv = _mm512_loadu_si512(x->q + t * x->C + b * Q8_BLOCK);
        __m512i c = _mm512_loadu_si512(x->corr + (t * nb + b) * Q8_LANES);
        __m512i d = _mm512_dpbusd_epi32(c, nf4_block_vnni(p + b * (Q8_BLOCK / 2), tab), xv);
        a = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), _mm512_set1_ps(x->s[t * nb + b] * q8_nf4_scale(q, r * nb + b)), a);
    }
    return hsum16_vnni(a);
}

void VNNI cpu_q8_vnni_nf4_rows(const nf4_tensor *q, const q8_act *x, int64_t t, int64_t r0, int64_t r1, float *out) {
    __m512i tab = table_vnni(q);
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4) nf4_rows4_vnni(q, x, t, r, tab, out);
    for (; r < r1; r++) out[r] = nf4_row1_vnni(q, x, t, r, tab);
}

// One block of one (row, token): acc += float(dot) * (x scale * w scale).
static inline VNNI __m512 block_vnni(__m512 acc, __m512i w, __m512i xv, __m512i corr, float sc) {
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_dpbusd_epi32(corr, w, xv)), _mm512_set1_ps(sc), acc);
}

// Rows r .. r+3 of W (u8 + 128) . tokens t and t+1 -> o0[0..4), o1[0..4).
// Each row block is loaded once for both tokens, each token block once for
// the four rows.
static inline VNNI void rows4x2_vnni(const q8_rows *W, int64_t r, const q8_act *x, int64_t t, float *o0, float *o1) {
    int64_t nb = x->nb, C = x->C;
    const int8_t *x0 = x->q + t * C, *x1 = x0 + C;
    const int32_t *c0 = x->corr + t * nb * Q8_LANES, *c1 = c0 + nb * Q8_LANES;
    const float *s0 = x->s + t * nb, *s1 = s0 + nb, *ws = W->s + r * nb;
    const uint8_t *w = W->w + r * C;
    __m512 a00 = _mm512_setzero_ps(), a01 = a00, a02 = a00, a03 = a00, a10 = a00, a11 = a00, a12 = a00, a13 = a00;
    for (int64_t b = 0; b < nb; b++) {
        int64_t o = b * Q8_BLOCK;
        __m512i w0 = _mm512_loadu_si512(w + o), w1 = _mm512_loadu_si512(w + C + o);
        __m512i w2 = _mm512_loadu_si512(w + 2 * C + o), w3 = _mm512_loadu_si512(w + 3 * C + o);
        __m512i xv = _mm512_loadu_si512(x0 + o), c = _mm512_loadu_si512(c0 + b * Q8_LANES);
        a00 = block_vnni(a00, w0, xv, c, s0[b] * ws[b]);
        a01 = block_vnni(a01, w1, xv, c, s0[b] * ws[nb + b]);
        a02 = block_vnni(a02, w2, xv, c, s0[b] * ws[2 * nb + b]);
        a03 = block_vnni(a03, w3, xv, c, s0[b] * ws[3 * nb + b]);
        xv = _mm512_loadu_si512(x1 + o), c = _mm512_loadu_si512(c1 + b * Q8_LANES);
        a10 = block_vnni(a10, w0, xv, c, s1[b] * ws[b]);
        a11 = block_vnni(a11, w1, xv, c, s1[b] * ws[nb + b]);
        a12 = block_vnni(a12, w2, xv, c, s1[b] * ws[2 * nb + b]);
        a13 = block_vnni(a13, w3, xv, c, s1[b] * ws[3 * nb + b]);
    }
    o0[0] = hsum16_vnni(a00), o0[1] = hsum16_vnni(a01), o0[2] = hsum16_vnni(a02), o0[3] = hsum16_vnni(a03);
    o1[0] = hsum16_vnni(a10), o1[1] = hsum16_vnni(a11), o1[2] = hsum16_vnni(a12), o1[3] = hsum16_vnni(a13);
}

// Rows r .. r+3 of W . token t -> o[0..4). Streams W once (decode through a
// Q8 lm_head), so it prefetches ahead like the NF4 kernels.
static inline VNNI void rows4x1_vnni(const q8_rows *W, int64_t r, const q8_act *x, int64_t t, float *o) {
    int64_t nb = x->nb, C = x->C;
    const int8_t *xq = x->q + t * C;
    const int32_t *xc = x->corr + t * nb * Q8_LANES;
    const float *xs = x->s + t * nb, *ws = W->s + r * nb;
    const uint8_t *w = W->w + r * C;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t b = 0; b < nb; b++) {
        int64_t o4 = b * Q8_BLOCK;
        __builtin_prefetch(w + o4 + PREFETCH), __builtin_prefetch(w + C + o4 + PREFETCH);
        __builtin_prefetch(w + 2 * C + o4 + PREFETCH), __builtin_prefetch(w + 3 * C + o4 + PREFETCH);
        __m512i xv = _mm512_loadu_si512(xq + o4), c = _mm512_loadu_si512(xc + b * Q8_LANES);
        a0 = block_vnni(a0, _mm512_loadu_si512(w + o4), xv, c, xs[b] * ws[b]);
        a1 = block_vnni(a1, _mm512_loadu_si512(w + C + o4), xv, c, xs[b] * ws[nb + b]);
        a2 = block_vnni(a2, _mm512_loadu_si512(w + 2 * C + o4), xv, c, xs[b] * ws[2 * nb + b]);
        a3 = block_vnni(a3, _mm512_loadu_si512(w + 3 * C + o4), xv, c, xs[b] * ws[3 * nb + b]);
    }
    o[0] = hsum16_vnni(a0), o[1] = hsum16_vnni(a1), o[2] = hsum16_vnni(a2), o[3] = hsum16_vnni(a3);
}

static inline VNNI float row1_vnni(const q8_rows *W, int64_t r, const q8_act *x, int64_t t) {
    int64_t nb = x->nb, C = x->C;
    __m512 a = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        __m512i xv = _mm512_loadu_si512(x->q + t * C + b * Q8_BLOCK);
        __m512i c = _mm512_loadu_si512(x->corr + (t * nb + b) * Q8_LANES);
        a = block_vnni(a, _mm512_loadu_si512(W->w + r * C + b * Q8_BLOCK), xv, c, x->s[t * nb + b] * W->s[r * nb + b]);
    }
    return hsum16_vnni(a);
}

// Blocks per scale table of rows4x4_vnni: 16 * 32 floats, 2 KiB of stack.
#define SC_CHUNK 32

// The scale products of token j (xs + j * nb) and row i (ws + i * nb) for
// blocks [b, b + n), n <= SC_CHUNK: sc[(4 * j + i) * SC_CHUNK + k] =
// xs_j[b + k] * ws_i[b + k], the very product block_vnni is given, formed
// 16 at a time so the block loop only broadcasts it from L1.
static inline VNNI void scales4x4_vnni(const float *xs, const float *ws, int64_t nb, int64_t b, int64_t n, float *sc) {
    for (int j = 0; j < 4; j++)
        for (int i = 0; i < 4; i++)
            for (int64_t k = 0; k < n; k += 16) {
                __mmask16 m = n - k >= 16 ? 0xffff : (__mmask16)((1u << (n - k)) - 1);
                __m512 x = _mm512_maskz_loadu_ps(m, xs + j * nb + b + k);
                __m512 w = _mm512_maskz_loadu_ps(m, ws + i * nb + b + k);
                _mm512_storeu_ps(sc + (4 * j + i) * SC_CHUNK + k, _mm512_mul_ps(x, w)); // whole: forwards to the loads
            }
}

// One token's block against four rows: a_i += dot(w_i, xv) * s[i * SC_CHUNK].
static inline VNNI void tok_rows4_vnni(__m512 *a0, __m512 *a1, __m512 *a2, __m512 *a3, __m512i w0, __m512i w1,
                                       __m512i w2, __m512i w3, __m512i xv, __m512i c, const float *s) {
    *a0 = block_vnni(*a0, w0, xv, c, s[0]);
    *a1 = block_vnni(*a1, w1, xv, c, s[SC_CHUNK]);
    *a2 = block_vnni(*a2, w2, xv, c, s[2 * SC_CHUNK]);
    *a3 = block_vnni(*a3, w3, xv, c, s[3 * SC_CHUNK]);
}

// q8_hsum16 of 16 accumulators at once, transposed: each step adds the
// same pairs of lanes as q8_hsum16 (l and l + 8, then l and l + 4, then
// (0 + 2) + (1 + 3)) for several accumulators per instruction, so each sum
// has q8_hsum16's bits. Lane 4 * q + s of the result is the sum of a[4 * s + q].
static inline VNNI __m512 hsum4x4_vnni(const __m512 a[16]) {
    __m512 t[8], u[4], v[2];
    for (int m = 0; m < 8; m++) // [a(2m) l + a(2m) l+8, a(2m+1) likewise], l < 8
        t[m] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * m], a[2 * m + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm512_shuffle_f32x4(a[2 * m], a[2 * m + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    for (int n = 0; n < 4; n++) // quarter k: accumulator 4n + k's t l + t l+4, l < 4
        u[n] = _mm512_add_ps(_mm512_shuffle_f32x4(t[2 * n], t[2 * n + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                             _mm512_shuffle_f32x4(t[2 * n], t[2 * n + 1], _MM_SHUFFLE(3, 1, 3, 1)));
    for (int n = 0; n < 2; n++) // per quarter: u0 + u2, u1 + u3 of two accumulators
        v[n] = _mm512_add_ps(_mm512_shuffle_ps(u[2 * n], u[2 * n + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm512_shuffle_ps(u[2 * n], u[2 * n + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    return _mm512_add_ps(_mm512_shuffle_ps(v[0], v[1], _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_ps(v[0], v[1], _MM_SHUFFLE(3, 1, 3, 1)));
}

// Rows r .. r+3 of W (u8 + 128) . tokens t .. t+3 -> o[j * ldo + i]. 16
// accumulators in registers: each row block is loaded once for the four
// tokens, each token block (and its correction) once for the four rows.
static inline VNNI void rows4x4_vnni(const q8_rows *W, int64_t r, const q8_act *x, int64_t t, float *o, int64_t ldo) {
    int64_t nb = x->nb, C = x->C;
    const int8_t *x0 = x->q + t * C, *x1 = x0 + C, *x2 = x1 + C, *x3 = x2 + C;
    const int32_t *c0 = x->corr + t * nb * Q8_LANES, *c1 = c0 + nb * Q8_LANES, *c2 = c1 + nb * Q8_LANES,
                  *c3 = c2 + nb * Q8_LANES;
    const uint8_t *w = W->w + r * C;
    float sc[16 * SC_CHUNK];
    __m512 z = _mm512_setzero_ps();
    __m512 a00 = z, a01 = z, a02 = z, a03 = z, a10 = z, a11 = z, a12 = z, a13 = z;
    __m512 a20 = z, a21 = z, a22 = z, a23 = z, a30 = z, a31 = z, a32 = z, a33 = z;
    for (int64_t b0 = 0; b0 < nb; b0 += SC_CHUNK) {
        int64_t b1 = b0 + SC_CHUNK < nb ? b0 + SC_CHUNK : nb;
        scales4x4_vnni(x->s + t * nb, W->s + r * nb, nb, b0, b1 - b0, sc);
        for (int64_t b = b0; b < b1; b++) {
            int64_t o4 = b * Q8_BLOCK, ob = b * Q8_LANES;
            const float *s = sc + (b - b0);
            __m512i w0 = _mm512_loadu_si512(w + o4), w1 = _mm512_loadu_si512(w + C + o4);
            __m512i w2 = _mm512_loadu_si512(w + 2 * C + o4), w3 = _mm512_loadu_si512(w + 3 * C + o4);
            tok_rows4_vnni(&a00, &a01, &a02, &a03, w0, w1, w2, w3, _mm512_loadu_si512(x0 + o4),
                           _mm512_loadu_si512(c0 + ob), s);
            tok_rows4_vnni(&a10, &a11, &a12, &a13, w0, w1, w2, w3, _mm512_loadu_si512(x1 + o4),
                           _mm512_loadu_si512(c1 + ob), s + 4 * SC_CHUNK);
            tok_rows4_vnni(&a20, &a21, &a22, &a23, w0, w1, w2, w3, _mm512_loadu_si512(x2 + o4),
                           _mm512_loadu_si512(c2 + ob), s + 8 * SC_CHUNK);
            tok_rows4_vnni(&a30, &a31, &a32, &a33, w0, w1, w2, w3, _mm512_loadu_si512(x3 + o4),
                           _mm512_loadu_si512(c3 + ob), s + 12 * SC_CHUNK);
        }
    }
    // a{token}{row}, by row then token: hsum4x4_vnni's quarter j is token j
    __m512 acc[16] = {a00, a10, a20, a30, a01, a11, a21, a31, a02, a12, a22, a32, a03, a13, a23, a33};
    __m512 sums = hsum4x4_vnni(acc);
    _mm_storeu_ps(o, _mm512_castps512_ps128(sums));
    _mm_storeu_ps(o + ldo, _mm512_extractf32x4_ps(sums, 1));
    _mm_storeu_ps(o + 2 * ldo, _mm512_extractf32x4_ps(sums, 2));
    _mm_storeu_ps(o + 3 * ldo, _mm512_extractf32x4_ps(sums, 3));
}

// Rows outer, tokens inner: four rows (a few KiB to tens of KiB) stay in
// L1 while the chunk's tokens go past them four at a time (the 4 x 4
// register tile: 16 vpdpbusd per 12 vector loads), then two, then one.
void VNNI cpu_q8_vnni_tile(const q8_rows *W, int64_t R, const q8_act *x, int64_t t0, int64_t t1, float *out,
                           int64_t ldo) {
    int64_t r = 0;
    for (; r + 4 <= R; r += 4) {
        int64_t t = t0;
        for (; t + 4 <= t1; t += 4) rows4x4_vnni(W, r, x, t, out + (t - t0) * ldo + r, ldo);
        for (; t + 2 <= t1; t += 2) {
            float *o = out + (t - t0) * ldo + r;
            rows4x2_vnni(W, r, x, t, o, o + ldo);
        }
        if (t < t1) rows4x1_vnni(W, r, x, t, out + (t - t0) * ldo + r);
    }
    for (; r < R; r++)
        for (int64_t t = t0; t < t1; t++) out[(t - t0) * ldo + r] = row1_vnni(W, r, x, t);
}

#endif
