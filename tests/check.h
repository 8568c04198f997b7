// check: the tiny assertion kit the C tests share. A failed CHECK prints
// the file, line and expression (plus an optional message) and counts; a
// test's main returns check_finish(), non-zero if anything failed.
#ifndef TESSERA_CHECK_H
#define TESSERA_CHECK_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "safetensors.h"

static int check_failures = 0;
static int check_count = 0;

#define CHECK(cond, ...)                                                          \
    do {                                                                          \
        check_count++;                                                            \
        if (!(cond)) {                                                            \
            check_failures++;                                                     \
            fprintf(stderr, "%s:%d: CHECK failed: %s", __FILE__, __LINE__, #cond);  \
            fprintf(stderr, " " __VA_ARGS__);                                     \
            fputc('\n', stderr);                                                  \
        }                                                                         \
    } while (0)

static inline int check_finish(const char *name) {
    printf("%s: %d checks, %d failed\n", name, check_count, check_failures);
    return check_failures == 0 && check_count > 0 ? 0 : 1;
}

// max |got - ref| / max(max |ref|, floor), with 1 in the denominator when
// that is 0; a NaN on either side gives INFINITY. The error measure the
// tests that compare two backends (or us and an oracle) state bounds in.
static inline double check_rel_err_floor(const float *got, const float *ref, int64_t n, double floor) {
    double e = 0, m = floor;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)ref[i]);
        if (isnan(d)) return INFINITY;
        if (d > e) e = d;
        if (fabs((double)ref[i]) > m) m = fabs((double)ref[i]);
    }
    return e / (m > 0 ? m : 1);
}

static inline double check_rel_err(const float *got, const float *ref, int64_t n) {
    return check_rel_err_floor(got, ref, n, 0);
}

// The int64 tensor `name` of an oracle fixture file (token ids) as int32
// into out; its length, or -1 if it is missing, not I64 or longer than max.
static inline int check_load_i64(const sft *s, const char *name, int32_t *out, int max) {
    const sft_tensor *t = sft_find(s, name);
    if (!t || t->dtype != SFT_I64 || t->numel > max) return -1;
    for (int64_t i = 0; i < t->numel; i++) {
        int64_t v;
        memcpy(&v, (const char *)t->data + 8 * i, 8);
        out[i] = (int32_t)v;
    }
    return (int)t->numel;
}

#endif
