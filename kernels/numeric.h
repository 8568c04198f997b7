// numeric: the scalar conversions and the hash every floor shares: bf16 and
// f16 <-> f32 as checkpoints store them, and splitmix64. They live at the
// bottom (kernels/) because the kernels read bf16 weights and draw dropout
// masks; core/util.h gives the conversions their util_ names for the rest.
//
// Header only, plain C that also compiles as C++ (the CUDA units include it
// through backend.h); num_splitmix64 is compiled for the device too.
#ifndef TESSERA_NUMERIC_H
#define TESSERA_NUMERIC_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#ifdef __CUDACC__
#define NUM_HOST_DEVICE __host__ __device__
#else
#define NUM_HOST_DEVICE
#endif

static inline uint32_t num_f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float num_bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

// bf16 is the high half of an f32: exact.
static inline float num_bf16_to_f32(uint16_t h) { return num_bits_f32((uint32_t)h << 16); }

// f32 -> bf16 rounded to nearest even, as torch does; a NaN stays a (quiet) NaN.
static inline uint16_t num_f32_to_bf16(float f) {
    uint32_t u = num_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); // quiet NaN
    uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)((u + rounding) >> 16);
}

// IEEE half -> f32: exact, subnormals included.
static inline float num_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    if (exp == 0) {
        // zero or subnormal: value = man * 2^-24
        float m = (float)man * 5.9604644775390625e-8f;
        return sign ? -m : m;
    }
    if (exp == 31) return num_bits_f32(sign | 0x7f800000u | (man << 13));
    return num_bits_f32(sign | ((exp + 112u) << 23) | (man << 13));
}

// f32 -> IEEE half, rounded to nearest even; overflow becomes infinity.
static inline uint16_t num_f32_to_f16(float f) {
    uint32_t u = num_f32_bits(f);
    uint32_t sign = (u >> 16) & 0x8000u;
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);          // NaN
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);         // overflow -> inf
    if (a < 0x38800000u) {                                           // subnormal or zero
        float m = fabsf(f) * 16777216.0f;                            // in units of 2^-24
        return (uint16_t)(sign | (uint32_t)nearbyintf(m));
    }
    uint32_t rounding = 0xfffu + ((a >> 13) & 1u);
    a += rounding;
    return (uint16_t)(sign | ((a - 0x38000000u) >> 13));
}

// splitmix64 (Steele, Lea, Flood 2014) as a pure function: the generator's
// output for state x, i.e. the finalizer of x + the golden-ratio increment.
// A generator is x += 0x9E3779B97F4A7C15 and num_splitmix64 of the old x;
// as a hash, num_splitmix64(key + i * 0x9E3779B97F4A7C15) is the i-th output
// of a generator seeded with key.
static inline NUM_HOST_DEVICE uint64_t num_splitmix64(uint64_t x) {
    uint64_t z = x + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

#endif
