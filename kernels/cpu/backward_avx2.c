// backward_avx2: backward.c's matmul_backward inner kernel for x86-64 CPUs
// with AVX2 and FMA, used when matmul uses its AVX2 set (cpu_simd() >=
// CPU_SIMD_AVX2; see cpu_ops.h), compiled with target attributes so the
// build stays portable.
//
// The arithmetic: each element of dx is d = fma(g[o], w[o][c], d) over the
// weight rows o in order, whatever the token chunk or thread, so results
// stay the same for any thread count. Against the portable kernel (4
// lanes, mul then add) they differ by the rounding the fma skips.
#include "cpu_backward.h"
#include "cpu_ops.h"

#if CPU_HAVE_AVX2

#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma")))

static inline AVX2 float fma1(float a, float b, float c) {
    return _mm_cvtss_f32(_mm_fmadd_ss(_mm_set_ss(a), _mm_set_ss(b), _mm_set_ss(c)));
}

// Two tokens: d0 += sum_o g0[o] w[o], d1 += sum_o g1[o] w[o], 32 columns
// at a time in registers, each weight vector loaded once for both.
static AVX2 void rows2(float *d0, float *d1, const float *g0, const float *g1, const float *const *w, int rows,
                       int64_t n) {
    int64_t c = 0;
    for (; c + 32 <= n; c += 32) {
        __m256 a0 = _mm256_loadu_ps(d0 + c), a1 = _mm256_loadu_ps(d0 + c + 8), a2 = _mm256_loadu_ps(d0 + c + 16),
               a3 = _mm256_loadu_ps(d0 + c + 24);
        __m256 b0 = _mm256_loadu_ps(d1 + c), b1 = _mm256_loadu_ps(d1 + c + 8), b2 = _mm256_loadu_ps(d1 + c + 16),
               b3 = _mm256_loadu_ps(d1 + c + 24);
        for (int o = 0; o < rows; o++) {
            const float *wr = w[o] + c;
            __m256 w0 = _mm256_loadu_ps(wr), w1 = _mm256_loadu_ps(wr + 8), w2 = _mm256_loadu_ps(wr + 16),
                   w3 = _mm256_loadu_ps(wr + 24);
            __m256 x = _mm256_set1_ps(g0[o]), y = _mm256_set1_ps(g1[o]);
            a0 = _mm256_fmadd_ps(x, w0, a0), a1 = _mm256_fmadd_ps(x, w1, a1);
            a2 = _mm256_fmadd_ps(x, w2, a2), a3 = _mm256_fmadd_ps(x, w3, a3);
            b0 = _mm256_fmadd_ps(y, w0, b0), b1 = _mm256_fmadd_ps(y, w1, b1);
            b2 = _mm256_fmadd_ps(y, w2, b2), b3 = _mm256_fmadd_ps(y, w3, b3);
        }
        _mm256_storeu_ps(d0 + c, a0), _mm256_storeu_ps(d0 + c + 8, a1);
        _mm256_storeu_ps(d0 + c + 16, a2), _mm256_storeu_ps(d0 + c + 24, a3);
        _mm256_storeu_ps(d1 + c, b0), _mm256_storeu_ps(d1 + c + 8, b1);
        _mm256_storeu_ps(d1 + c + 16, b2), _mm256_storeu_ps(d1 + c + 24, b3);
    }
    for (; c + 8 <= n; c += 8) {
        __m256 a = _mm256_loadu_ps(d0 + c), b = _mm256_loadu_ps(d1 + c);
        for (int o = 0; o < rows; o++) {
            __m256 wv = _mm256_loadu_ps(w[o] + c);
            a = _mm256_fmadd_ps(_mm256_set1_ps(g0[o]), wv, a);
            b = _mm256_fmadd_ps(_mm256_set1_ps(g1[o]), wv, b);
        }
        _mm256_storeu_ps(d0 + c, a), _mm256_storeu_ps(d1 + c, b);
    }
    for (; c < n; c++) {
        float a = d0[c], b = d1[c];
        for (int o = 0; o < rows; o++) a = fma1(g0[o], w[o][c], a), b = fma1(g1[o], w[o][c], b);
        d0[c] = a, d1[c] = b;
    }
}

// One token: the same with d1 absent.
static AVX2 void rows1(float *d0, const float *g0, const float *const *w, int rows, int64_t n) {
    int64_t c = 0;
    for (; c + 32 <= n; c += 32) {
        __m256 a0 = _mm256_loadu_ps(d0 + c), a1 = _mm256_loadu_ps(d0 + c + 8), a2 = _mm256_loadu_ps(d0 + c + 16),
               a3 = _mm256_loadu_ps(d0 + c + 24);
        for (int o = 0; o < rows; o++) {
            const float *wr = w[o] + c;
            __m256 x = _mm256_set1_ps(g0[o]);
            a0 = _mm256_fmadd_ps(x, _mm256_loadu_ps(wr), a0), a1 = _mm256_fmadd_ps(x, _mm256_loadu_ps(wr + 8), a1);
            a2 = _mm256_fmadd_ps(x, _mm256_loadu_ps(wr + 16), a2);
            a3 = _mm256_fmadd_ps(x, _mm256_loadu_ps(wr + 24), a3);
        }
        _mm256_storeu_ps(d0 + c, a0), _mm256_storeu_ps(d0 + c + 8, a1);
        _mm256_storeu_ps(d0 + c + 16, a2), _mm256_storeu_ps(d0 + c + 24, a3);
    }
    for (; c + 8 <= n; c += 8) {
        __m256 a = _mm256_loadu_ps(d0 + c);
        for (int o = 0; o < rows; o++) a = _mm256_fmadd_ps(_mm256_set1_ps(g0[o]), _mm256_loadu_ps(w[o] + c), a);
        _mm256_storeu_ps(d0 + c, a);
    }
    for (; c < n; c++) {
        float a = d0[c];
        for (int o = 0; o < rows; o++) a = fma1(g0[o], w[o][c], a);
        d0[c] = a;
    }
}

AVX2 void cpu_avx2_mmb_rows(float *d0, float *d1, const float *g0, const float *g1, const float *const *w, int rows,
                            int64_t n) {
    if (d1) rows2(d0, d1, g0, g1, w, rows, n);
    else rows1(d0, g0, w, rows, n);
}

#endif
