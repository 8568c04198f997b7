// vexp: the CPU kernels' vectorized exp for x <= 0 (the softmax's range),
// shared by the sampler (sample.c) and attention (attention.c).
//
// exp(x) = 2^n * e^r with n = round(x / ln 2), |r| <= ln2 / 2, e^r by its
// degree-6 Taylor polynomial (truncation below 1.3e-7 relative): within
// 2 ulp of expf on [-87.3, 0]; x < -87.3 (where expf is denormal or 0),
// -inf included, gives 0. cpu_exp_v4 is the portable 4-lane form;
// cpu_exp8 (x86-64, callers with target avx2,fma) the same polynomial with
// fused multiply-adds, so its values differ from cpu_exp_v4's by an ulp at
// most.
#ifndef TESSERA_CPU_VEXP_H
#define TESSERA_CPU_VEXP_H

#include "cpu_ops.h"

typedef int32_t cpu_i4 __attribute__((vector_size(16)));

static inline cpu_i4 cpu_as_i4(cpu_v4 v) {
    cpu_i4 r;
    memcpy(&r, &v, sizeof r);
    return r;
}

static inline cpu_v4 cpu_as_v4(cpu_i4 v) {
    cpu_v4 r;
    memcpy(&r, &v, sizeof r);
    return r;
}

// mask lanes (all ones / zero) ? a : b
static inline cpu_v4 cpu_select_v4(cpu_i4 mask, cpu_v4 a, cpu_v4 b) {
    return cpu_as_v4((mask & cpu_as_i4(a)) | (~mask & cpu_as_i4(b)));
}

static inline cpu_v4 cpu_splat_v4(float x) { return (cpu_v4){x, x, x, x}; }

static inline cpu_v4 cpu_exp_v4(cpu_v4 x) {
    cpu_i4 under = x < cpu_splat_v4(-87.3f);
    x = cpu_select_v4(under, cpu_splat_v4(-87.3f), x);
    cpu_v4 shift = cpu_splat_v4(0x1.8p23f); // adding it rounds to an integer
    cpu_v4 n = (x * cpu_splat_v4(1.44269504f) + shift) - shift;
    cpu_v4 r = x - n * cpu_splat_v4(0.693359375f); // ln 2 in two parts: n * 355/512 is exact
    r = r + n * cpu_splat_v4(2.12194440e-4f);
    cpu_v4 p = cpu_splat_v4(1.0f / 720);
    p = p * r + cpu_splat_v4(1.0f / 120);
    p = p * r + cpu_splat_v4(1.0f / 24);
    p = p * r + cpu_splat_v4(1.0f / 6);
    p = p * r + cpu_splat_v4(0.5f);
    p = p * r + cpu_splat_v4(1.0f);
    p = p * r + cpu_splat_v4(1.0f);
    cpu_i4 e = (__builtin_convertvector(n, cpu_i4) + 127) << 23;
    return cpu_select_v4(under, (cpu_v4){0}, p * cpu_as_v4(e));
}

#if CPU_HAVE_AVX2
#include <immintrin.h>

static inline __attribute__((target("avx2,fma"))) __m256 cpu_exp8(__m256 x) {
    __m256 lo = _mm256_set1_ps(-87.3f);
    __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    x = _mm256_max_ps(x, lo);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fmadd_ps(n, _mm256_set1_ps(2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.0f / 720);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_andnot_ps(under, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
}
#endif

#endif
