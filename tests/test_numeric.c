// test_numeric: kernels/numeric.h. num_splitmix64 against the reference
// generator's first outputs (Vigna's splitmix64.c seeded with 0 and with
// 1234567), bk_dropout_keep as the i-th output of a generator seeded with
// its key, and the conversions at their rounding edges.
#include <stdint.h>
#include <stdio.h>

#include "backend.h"
#include "check.h"

// The reference generator: state += golden ratio, then the finalizer.
static uint64_t ref_next(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void splitmix(void) {
    static const uint64_t seed0[] = {0xE220A8397B1DCDAFull, 0x6E789E6AA1B965F4ull, 0x06C45D188009454Full};
    uint64_t x = 0;
    for (int i = 0; i < 3; i++) {
        CHECK(num_splitmix64(x) == seed0[i], "output %d of seed 0: %016llx", i,
              (unsigned long long)num_splitmix64(x));
        x += 0x9E3779B97F4A7C15ull;
    }
    uint64_t s = 1234567, y = 1234567;
    for (int i = 0; i < 100; i++) {
        uint64_t want = ref_next(&s);
        CHECK(num_splitmix64(y) == want, "output %d of seed 1234567", i);
        y += 0x9E3779B97F4A7C15ull;
    }
}

// Dropout keeps element i when output i of splitmix64(key), top 24 bits as
// a fraction of 1, is at least p.
static void dropout(void) {
    bk_dropout d = {0.25f, 0xC0FFEEull};
    uint64_t x = d.key;
    int kept = 0;
    for (uint64_t i = 0; i < 4096; i++) {
        uint64_t z = ref_next(&x);
        int want = (float)(z >> 40) * 0x1p-24f >= d.p;
        CHECK(bk_dropout_keep(&d, i) == want, "element %llu", (unsigned long long)i);
        kept += want;
    }
    CHECK(kept > 2800 && kept < 3350, "kept %d of 4096 at p 0.25", kept);
}

// Round to nearest even at the ties, and the f16 edges (smallest
// subnormal, overflow to infinity); tests/test_util.c checks the rest.
static void conversions(void) {
    CHECK(num_f32_to_bf16(1.00390625f) == 0x3F80, "1 + 2^-8 ties to even 0x3F80");
    CHECK(num_f32_to_bf16(1.01171875f) == 0x3F82, "1 + 3 * 2^-8 ties to even 0x3F82");
    CHECK(num_bf16_to_f32(0x3F82) == 1.015625f);
    CHECK(num_f32_to_f16(0x1p-24f) == 0x0001 && num_f16_to_f32(0x0001) == 0x1p-24f);
    CHECK(num_f32_to_f16(65520.0f) == 0x7C00, "65520 rounds to infinity");
    CHECK(num_f32_to_f16(-65504.0f) == 0xFBFF && num_f16_to_f32(0xFBFF) == -65504.0f);
}

int main(void) {
    splitmix();
    dropout();
    conversions();
    return check_finish("test_numeric");
}
