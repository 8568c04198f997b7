// test_kernels: each CPU backend op against a plain double-precision
// reference written here, on awkward shapes (rows whose NF4 blocks span two
// rows, row counts not a multiple of the tiles, more tokens than a task's
// chunk, non-contiguous KV blocks, GQA, a sliding window), plus batch
// invariance (a row's result does not depend on the batch around it) and
// thread invariance (1 thread vs several: bit-identical), for each matmul
// kernel set the CPU has (portable, AVX2 + FMA, AVX-512VL lookups), and the
// sets against each other within a stated bound; then q8 mode (int8 dot
// products) against the same reference within its own stated bound,
// batch-invariant too, its kernel sets the same bits as its portable one.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "check.h"
#include "nf4.h"
#include "util.h"

static util_rng rng;

static float *randn(int64_t n, float scale) {
    float *p = malloc((size_t)n * sizeof *p);
    for (int64_t i = 0; i < n; i++) p[i] = scale * (float)util_rng_normal(&rng);
    return p;
}

static double rel_err(const float *got, const double *want, int64_t n) {
    double num = 0, den = 1e-30;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        if (!(d <= num)) num = d;
        if (fabs(want[i]) > den) den = fabs(want[i]);
    }
    return num / den;
}

// ---- matmul -------------------------------------------------------------------

static void ref_matmul(double *out, const float *x, const float *w, const float *bias, int T, int C, int OC) {
    for (int t = 0; t < T; t++)
        for (int o = 0; o < OC; o++) {
            double s = bias ? bias[o] : 0;
            for (int c = 0; c < C; c++) s += (double)x[t * C + c] * w[(int64_t)o * C + c];
            out[(int64_t)t * OC + o] = s;
        }
}

static const char *const SIMD_NAMES[] = {"portable", "avx2+fma", "avx512vl"};

// Selects kernel set `level` (bk_cpu_set_simd); 0 if this CPU lacks it.
static int use_simd(int level) { return strcmp(bk_cpu_set_simd(level), SIMD_NAMES[level]) == 0; }

// out = x W^T + bias under the current kernel set: relative error vs the
// double reference, batch invariance (each row alone gives the same bits:
// the one-token fused kernels equal the tile kernels) and thread
// invariance (1 vs 3 threads: the same bits). Returns the relative error.
static double check_matmul_set(const char *kind, const bk_weight *W, const float *x, const float *bias,
                               const double *want, int T, float *out) {
    const bk_ops *bk = bk_cpu();
    int C = (int)W->cols, OC = (int)W->rows;
    float *one = malloc((size_t)OC * sizeof *one), *serial = malloc((size_t)T * OC * sizeof *serial);
    bk->matmul(out, x, W, bias, T);
    double e = rel_err(out, want, (int64_t)T * OC);
    CHECK(e < 1e-5, "matmul %s (%s): relative error %.3g", kind, bk_cpu_simd(), e);
    int same = 1;
    for (int t = 0; t < T; t++) {
        bk->matmul(one, x + (int64_t)t * C, W, bias, 1);
        same &= memcmp(one, out + (int64_t)t * OC, (size_t)OC * sizeof *one) == 0;
    }
    CHECK(same, "matmul %s (%s): a row computed alone differs from the batch", kind, bk_cpu_simd());
    int threads = bk_cpu_threads();
    bk_cpu_set_threads(1);
    bk->matmul(serial, x, W, bias, T);
    bk_cpu_set_threads(3);
    bk->matmul(one, x, W, bias, 1); // and a one-token call on 3 threads
    CHECK(memcmp(one, out, (size_t)OC * sizeof *one) == 0, "matmul %s (%s): T=1 on 3 threads differs", kind,
          bk_cpu_simd());
    bk->matmul(out, x, W, bias, T);
    CHECK(memcmp(serial, out, (size_t)T * OC * sizeof *out) == 0, "matmul %s (%s): 1 vs 3 threads differ", kind,
          bk_cpu_simd());
    bk_cpu_set_threads(threads);
    printf("matmul %-7s %-9s T %d, %d x %d: rel err %.2g, batch- and thread-invariant\n", kind, bk_cpu_simd(), T, OC,
           C, e);
    free(one), free(serial);
    return e;
}

// Every kernel set the CPU has, then the sets against each other. The
// SIMD kernels round differently from the portable ones (fma, another
// summation order), so they are held to the worst-case bound of any f32
// evaluation of the same sum: each of the two results is within
// gamma(C + 1) * sum_c |x_c w_c| + |bias| of the exact value (Higham,
// gamma(n) = n u / (1 - n u), u = 2^-24), so they differ by at most twice
// that. AVX-512VL only changes how NF4 codes are looked up: the same bits
// as AVX2.
static void check_matmul_kind(const char *kind, const bk_weight *W, const float *wf, int T) {
    int C = (int)W->cols, OC = (int)W->rows;
    float *x = randn((int64_t)T * C, 1.0f), *bias = randn(OC, 0.1f);
    double *want = malloc((size_t)T * OC * sizeof *want), *bound = malloc((size_t)T * OC * sizeof *bound);
    ref_matmul(want, x, wf, bias, T, C, OC);
    double u = ldexp(1.0, -24), gamma = (C + 1) * u / (1 - (C + 1) * u);
    for (int t = 0; t < T; t++)
        for (int o = 0; o < OC; o++) {
            double s = fabs((double)bias[o]);
            for (int c = 0; c < C; c++) s += fabs((double)x[t * C + c] * wf[(int64_t)o * C + c]);
            bound[(int64_t)t * OC + o] = 2 * gamma * s;
        }
    const char *orig = bk_cpu_simd();
    float *out[3] = {NULL, NULL, NULL};
    for (int level = 0; level < 3; level++) {
        if (!use_simd(level)) continue;
        out[level] = malloc((size_t)T * OC * sizeof(float));
        check_matmul_set(kind, W, x, bias, want, T, out[level]);
    }
    for (int level = 1; level < 3; level++) {
        if (!out[level]) continue;
        double worst = 0, top = 0, diff = 0;
        for (int64_t i = 0; i < (int64_t)T * OC; i++) {
            double d = fabs((double)out[level][i] - out[0][i]);
            if (!(d / bound[i] <= worst)) worst = d / bound[i];
            diff = fmax(diff, d);
            top = fmax(top, fabs(want[i]));
        }
        CHECK(worst <= 1, "matmul %s: %s vs portable at %.3g of the bound", kind, SIMD_NAMES[level], worst);
        printf("matmul %-7s %-9s vs portable: max |diff| %.2g of max |y|, %.2g of the worst-case bound\n", kind,
               SIMD_NAMES[level], diff / top, worst);
    }
    if (out[1] && out[2])
        CHECK(memcmp(out[1], out[2], (size_t)T * OC * sizeof(float)) == 0, "matmul %s: avx512vl differs from avx2",
              kind);
    for (int i = 0; i < 3; i++) {
        if (strcmp(orig, SIMD_NAMES[i]) == 0) use_simd(i);
        free(out[i]);
    }
    free(x), free(bias), free(want), free(bound);
}

// Dense kinds on (OC, C): f32, and bf16 on the rounded values.
static void check_dense(int OC, int C, int T) {
    float *w = randn((int64_t)OC * C, 0.05f);
    bk_weight W = {.type = BK_W_F32, .rows = OC, .cols = C, .data = w};
    check_matmul_kind("f32", &W, w, T);
    uint16_t *h = malloc((size_t)OC * C * sizeof *h);
    float *wr = malloc((size_t)OC * C * sizeof *wr);
    for (int64_t i = 0; i < (int64_t)OC * C; i++) h[i] = util_f32_to_bf16(w[i]), wr[i] = util_bf16_to_f32(h[i]);
    W = (bk_weight){.type = BK_W_BF16, .rows = OC, .cols = C, .data = h};
    check_matmul_kind("bf16", &W, wr, T);
    free(w), free(h), free(wr);
}

// NF4 on (rows, C), single and double quantized: reference on nf4_dequantize.
static void check_nf4(int64_t rows, int C, int T) {
    err_t err = {{0}};
    for (int dq = 0; dq <= 1; dq++) {
        nf4_tensor q;
        float *w = randn(rows * C, 0.05f);
        CHECK(nf4_quantize(w, rows, C, dq, &q, &err) == 0, "%s", err.msg);
        float *deq = malloc((size_t)rows * C * sizeof *deq);
        nf4_dequantize(&q, deq);
        bk_weight W = {.type = BK_W_NF4, .rows = rows, .cols = C, .nf4 = q};
        check_matmul_kind(dq ? "nf4 dq" : "nf4", &W, deq, T);
        // a decode-sized call against nf4_matvec, the nf4 module's reference
        float *x = randn(C, 1.0f), *y = malloc((size_t)rows * sizeof *y), *yr = malloc((size_t)rows * sizeof *yr);
        bk_cpu()->matmul(y, x, &W, NULL, 1);
        nf4_matvec(&q, x, yr);
        double d = 0;
        for (int64_t i = 0; i < rows; i++) d = fmax(d, fabs(y[i] - yr[i]));
        CHECK(d < 1e-5, "nf4 matmul vs nf4_matvec: %.3g", d);
        nf4_free(&q);
        free(deq), free(w), free(x), free(y), free(yr);
    }
}

// 176 columns: NF4 blocks span rows (tile path only); 128 and 896: whole
// blocks per row (the fused one-token path too); 173: a bf16 tail after the
// 8-lane loop; 37 and 21 rows: ragged tiles, rows left over after groups of
// 4; T 70 > one token chunk (its last chunk of 6 tokens).
static void check_matmul(void) {
    check_dense(37, 176, 70);
    check_dense(21, 173, 9);
    check_nf4(64, 176, 70);
    check_nf4(21, 128, 5);
    check_nf4(70, 896, 3);
}

// ---- q8 mode -----------------------------------------------------------------------

// q8 mode's worst case for one output, from the rounding of its operands:
// x_c is within s_x / 2 of its int8 value times s_x (s_x = its 64-block's
// absmax / 127), w_c within s_w / 2 likewise (NF4: code * 127 rounded,
// s_w = absmax / 127), so |x w - x~ w~| <= |x| s_w / 2 + |w| s_x / 2 +
// s_x s_w / 4 per term; plus 1e-5 of sum |x_c w_c| for the f32 arithmetic.
// wscale holds each weight block's s_w.
static void q8_bound(double *bound, double *absdot, const float *x, const float *wf, const float *wscale, int T,
                     int C, int OC) {
    for (int t = 0; t < T; t++)
        for (int o = 0; o < OC; o++) {
            double e = 0, a = 0;
            for (int c = 0; c < C; c++) {
                const float *xb = x + (int64_t)t * C + c / 64 * 64;
                double amax = 0;
                for (int i = 0; i < 64; i++) amax = fmax(amax, fabs(xb[i]));
                double sx = amax / 127, sw = wscale[((int64_t)o * C + c) / 64];
                double xv = x[(int64_t)t * C + c], wv = wf[(int64_t)o * C + c];
                e += fabs(xv) * sw / 2 + fabs(wv) * sx / 2 + sx * sw / 4;
                a += fabs(xv * wv);
            }
            bound[(int64_t)t * OC + o] = 1.001 * e + 1e-5 * a;
            absdot[(int64_t)t * OC + o] = a;
        }
}

// Under the current kernel set in q8 mode: out = x W^T + bias within the
// bound, each token alone (the fused one-token kernels, or one-token tiles)
// the same bits as in the batch, 1 vs 3 threads the same bits.
static void check_q8_set(const char *kind, const bk_weight *W, const float *x, const float *bias, const double *want,
                         const double *bound, const double *absdot, int T, float *out) {
    const bk_ops *bk = bk_cpu();
    int C = (int)W->cols, OC = (int)W->rows;
    float *one = malloc((size_t)OC * sizeof *one), *serial = malloc((size_t)T * OC * sizeof *serial);
    bk->matmul(out, x, W, bias, T);
    double worst = 0, rel = 0;
    for (int64_t i = 0; i < (int64_t)T * OC; i++) {
        double d = fabs(out[i] - want[i]);
        if (!(d / bound[i] <= worst)) worst = d / bound[i];
        rel = fmax(rel, d / absdot[i]);
    }
    CHECK(worst <= 1, "q8 matmul %s (%s): error at %.3g of the bound", kind, bk_cpu_simd(), worst);
    int same = 1;
    for (int t = 0; t < T; t++) {
        bk->matmul(one, x + (int64_t)t * C, W, bias, 1);
        same &= memcmp(one, out + (int64_t)t * OC, (size_t)OC * sizeof *one) == 0;
    }
    CHECK(same, "q8 matmul %s (%s): a token computed alone differs from the batch", kind, bk_cpu_simd());
    int threads = bk_cpu_threads();
    bk_cpu_set_threads(1);
    bk->matmul(serial, x, W, bias, T);
    bk_cpu_set_threads(3);
    bk->matmul(out, x, W, bias, T);
    CHECK(memcmp(serial, out, (size_t)T * OC * sizeof *out) == 0, "q8 matmul %s (%s): 1 vs 3 threads differ", kind,
          bk_cpu_simd());
    bk_cpu_set_threads(threads);
    printf("q8 matmul %-7s %-9s T %d, %d x %d: max |err| %.2g of sum|x w|, %.2g of the bound; batch- and "
           "thread-invariant\n", kind, bk_cpu_simd(), T, OC, C, rel, worst);
    free(one), free(serial);
}

// Every kernel set in q8 mode against the exact reference, then the sets
// against the portable one: integer dots are exact and the float part
// follows one order, so they must be the same bits.
static void check_q8_kind(const char *kind, const bk_weight *W, const float *wf, const float *wscale, int T) {
    int C = (int)W->cols, OC = (int)W->rows;
    float *x = randn((int64_t)T * C, 1.0f), *bias = randn(OC, 0.1f);
    x[5] = 40.0f; // one outlier: its block's other values lose precision, still within the bound
    size_t n = (size_t)T * OC;
    double *want = malloc(n * sizeof *want), *bound = malloc(n * sizeof *bound), *absdot = malloc(n * sizeof *absdot);
    ref_matmul(want, x, wf, bias, T, C, OC);
    q8_bound(bound, absdot, x, wf, wscale, T, C, OC);
    const char *orig = bk_cpu_simd();
    bk_cpu_set_matmul(BK_MATMUL_Q8);
    float *out[3] = {NULL, NULL, NULL};
    for (int level = 0; level < 3; level++) {
        if (!use_simd(level)) continue;
        out[level] = malloc(n * sizeof(float));
        check_q8_set(kind, W, x, bias, want, bound, absdot, T, out[level]);
    }
    for (int level = 1; level < 3; level++)
        if (out[level])
            CHECK(memcmp(out[level], out[0], n * sizeof(float)) == 0, "q8 matmul %s: %s differs from portable", kind,
                  SIMD_NAMES[level]);
    bk_cpu_set_matmul(BK_MATMUL_EXACT);
    for (int i = 0; i < 3; i++) {
        if (strcmp(orig, SIMD_NAMES[i]) == 0) use_simd(i);
        free(out[i]);
    }
    free(x), free(bias), free(want), free(bound), free(absdot);
}

// Activation blocks at the edges of q8 quantizing (exact .5 ties, a zero
// block, a denormal absmax whose reciprocal overflows, an infinity, a NaN)
// give every kernel set the portable bits: the SIMD quantizers round,
// clamp and take maxima as the scalar compares do. NaN outputs compare as
// NaN, whatever their payload.
static void check_q8_quantize_edges(void) {
    enum { T = 6, C = 128, OC = 8 };
    err_t err = {{0}};
    nf4_tensor q;
    float *w = randn(OC * C, 0.05f), *x = randn(T * C, 1.0f), out[3][T * OC];
    CHECK(nf4_quantize(w, OC, C, 0, &q, &err) == 0, "%s", err.msg);
    bk_weight W = {.type = BK_W_NF4, .rows = OC, .cols = C, .nf4 = q};
    for (int i = 0; i < 64; i++) x[i] = (float)(i % 8) - 3.5f + (i == 7 ? 123.5f : 0); // amax 127: id 1, ties
    for (int i = 64; i < 128; i++) x[i] = 0;
    for (int i = 0; i < C; i++) x[C + i] = i < 64 && i % 3 ? 1e-37f * (float)(i % 5) / 4 : 0; // id = 127 / 1e-37 = inf
    x[2 * C + 9] = INFINITY, x[3 * C + 70] = -INFINITY, x[4 * C + 3] = NAN, x[4 * C + 64] = -NAN;
    const char *orig = bk_cpu_simd();
    bk_cpu_set_matmul(BK_MATMUL_Q8);
    int ran[3] = {0, 0, 0};
    for (int level = 0; level < 3; level++)
        if ((ran[level] = use_simd(level))) bk_cpu()->matmul(out[level], x, &W, NULL, T);
    bk_cpu_set_matmul(BK_MATMUL_EXACT);
    for (int level = 1; level < 3; level++) {
        int same = 1;
        for (int i = 0; ran[level] && i < T * OC; i++)
            same &= isnan(out[0][i]) ? isnan(out[level][i]) : memcmp(&out[0][i], &out[level][i], sizeof(float)) == 0;
        CHECK(same, "q8 quantizing edge blocks: %s differs from portable", SIMD_NAMES[level]);
    }
    CHECK(!isnan(out[0][0]) && out[0][OC] != 0 && fabsf(out[0][OC]) < 1e-30f && isnan(out[0][2 * OC]) && isnan(out[0][4 * OC]),
          "q8 quantizing edge blocks: finite / NaN outputs where expected");
    for (int i = 0; i < 3; i++)
        if (strcmp(orig, SIMD_NAMES[i]) == 0) use_simd(i);
    nf4_free(&q);
    free(w), free(x);
}

// NF4 (single and double quantized) and a Q8 copy of a bf16 weight. 176
// columns (not a multiple of 64): q8 mode leaves it to the exact kernels.
static void check_q8(void) {
    err_t err = {{0}};
    int shapes[3][3] = {{37, 128, 37}, {70, 896, 70}, {21, 4864, 3}};
    for (int k = 0; k < 3; k++) {
        int64_t rows = shapes[k][0];
        int C = shapes[k][1], T = shapes[k][2];
        for (int dq = 0; dq <= 1; dq++) {
            nf4_tensor q;
            float *w = randn(rows * C, 0.05f);
            CHECK(nf4_quantize(w, rows, C, dq, &q, &err) == 0, "%s", err.msg);
            float *deq = malloc((size_t)rows * C * sizeof *deq), *ws = malloc((size_t)q.nblocks * sizeof *ws);
            nf4_dequantize(&q, deq);
            for (int64_t b = 0; b < q.nblocks; b++) ws[b] = nf4_absmax(&q, b) / 127;
            bk_weight W = {.type = BK_W_NF4, .rows = rows, .cols = C, .nf4 = q};
            check_q8_kind(dq ? "nf4 dq" : "nf4", &W, deq, ws, T);
            nf4_free(&q);
            free(w), free(deq), free(ws);
        }
        float *w = randn(rows * C, 0.05f), *wr = malloc((size_t)rows * C * sizeof *wr);
        float *ws = malloc((size_t)rows * C / 64 * sizeof *ws);
        uint16_t *h = malloc((size_t)rows * C * sizeof *h);
        for (int64_t i = 0; i < rows * C; i++) h[i] = util_f32_to_bf16(w[i]), wr[i] = util_bf16_to_f32(h[i]);
        for (int64_t b = 0; b < rows * C / 64; b++) {
            float amax = 0;
            for (int i = 0; i < 64; i++) amax = fmaxf(amax, fabsf(wr[b * 64 + i]));
            ws[b] = amax / 127;
        }
        bk_weight B = {.type = BK_W_BF16, .rows = rows, .cols = C, .data = h}, Q;
        void *qmem = bk_cpu()->alloc(bk_weight_q8_bytes(rows, C), &err);
        CHECK(qmem && bk_weight_q8(bk_cpu(), &B, "test.q8", qmem, &Q, &err) == 0, "%s", err.msg);
        check_q8_kind("q8", &Q, wr, ws, T);
        // the exact kernels' view of a Q8 weight (matmul_backward): (w - 128) * scale
        float *dy = calloc((size_t)rows, sizeof *dy), *row = malloc((size_t)C * sizeof *row);
        dy[rows - 1] = 1;
        bk_cpu()->matmul_backward(row, dy, &Q, 1, 0);
        double d = 0; // in units of half the block's scale
        for (int c = 0; c < C; c++)
            d = fmax(d, fabs(row[c] - wr[(rows - 1) * C + c]) / (ws[((rows - 1) * C + c) / 64] / 2));
        CHECK(d <= 1.001, "q8 weight dequantized: off by %.3g half-scales", d);
        bk_cpu()->free(qmem);
        free(w), free(wr), free(ws), free(h), free(dy), free(row);
    }
    CHECK(bk_weight_q8(bk_cpu(), &(bk_weight){.type = BK_W_BF16, .rows = 2, .cols = 96}, "lm_head", NULL,
                       &(bk_weight){0}, &err) == -1 && strstr(err.msg, "lm_head"),
          "bk_weight_q8 accepted 96 columns");
    // a width q8 mode does not apply to: the exact kernels' bits
    nf4_tensor q;
    float *w = randn(8 * 176, 0.05f), *x = randn(3 * 176, 1.0f), *a = malloc(3 * 8 * sizeof *a), *b = malloc(3 * 8 * sizeof *b);
    CHECK(nf4_quantize(w, 8, 176, 0, &q, &err) == 0, "%s", err.msg);
    bk_weight W = {.type = BK_W_NF4, .rows = 8, .cols = 176, .nf4 = q};
    bk_cpu()->matmul(a, x, &W, NULL, 3);
    bk_cpu_set_matmul(BK_MATMUL_Q8);
    bk_cpu()->matmul(b, x, &W, NULL, 3);
    bk_cpu_set_matmul(BK_MATMUL_EXACT);
    CHECK(memcmp(a, b, 3 * 8 * sizeof *a) == 0, "q8 mode changed an NF4 matmul of 176 columns");
    nf4_free(&q);
    free(w), free(x), free(a), free(b);
}

// ---- LoRA ------------------------------------------------------------------------

// LoRA over the slots' bf16 A / B (what model_adapter_set stores when
// lora_dtype is bf16): bit for bit the f32 op over f32 copies of the
// rounded weights (the conversion is exact; the float operations are the
// same), and its LoRA term within TOL_LORA_BF16 of the op's over the
// unrounded f32 weights (y32; bf16 keeps 8 significant bits: 2^-9 relative per weight, partly
// cancelling over the dots).
#define TOL_LORA_BF16 1e-2

static void check_lora_bf16(const float *x, const float *y0, const float *y32, const bk_lora_seg *seg32, int nseg,
                            int T, int C, int OC) {
    bk_lora_seg h[3], r[3];
    void *mem[12];
    int nm = 0;
    for (int s = 0; s < nseg; s++) {
        int64_t na = (int64_t)seg32[s].rank * C, nb = (int64_t)OC * seg32[s].rank;
        uint16_t *ha = malloc((size_t)na * 2), *hb = malloc((size_t)nb * 2);
        float *ra = malloc((size_t)na * 4), *rb = malloc((size_t)nb * 4);
        const float *A = seg32[s].A, *B = seg32[s].B;
        for (int64_t i = 0; i < na; i++) ra[i] = num_bf16_to_f32(ha[i] = num_f32_to_bf16(A[i]));
        for (int64_t i = 0; i < nb; i++) rb[i] = num_bf16_to_f32(hb[i] = num_f32_to_bf16(B[i]));
        mem[nm++] = ha, mem[nm++] = hb, mem[nm++] = ra, mem[nm++] = rb;
        h[s] = seg32[s], h[s].A = ha, h[s].B = hb, h[s].dtype = BK_DT_BF16;
        r[s] = seg32[s], r[s].A = ra, r[s].B = rb;
    }
    size_t ny = (size_t)T * OC * sizeof(float);
    float *yh = malloc(ny), *yr = malloc(ny), *v = malloc((size_t)T * 8 * sizeof *v);
    memcpy(yh, y0, ny);
    memcpy(yr, y0, ny);
    bk_cpu()->lora(yh, x, v, C, OC, h, nseg);
    bk_cpu()->lora(yr, x, v, C, OC, r, nseg);
    CHECK(memcmp(yh, yr, ny) == 0, "lora bf16: differs from f32 over the same rounded weights");
    // compared on the LoRA term alone (y - y0), not drowned by y0
    double *w = malloc((size_t)T * OC * sizeof *w);
    for (int64_t i = 0; i < (int64_t)T * OC; i++) w[i] = (double)y32[i] - y0[i], yr[i] = yh[i] - y0[i];
    double e = rel_err(yr, w, (int64_t)T * OC);
    CHECK(e < TOL_LORA_BF16, "lora bf16 vs f32 weights: relative error %.3g > %.0e", e, TOL_LORA_BF16);
    printf("lora bf16 A/B: == f32 over the rounded weights (bits); vs f32 weights rel err %.2g (limit %.0e)\n", e,
           TOL_LORA_BF16);
    for (int i = 0; i < nm; i++) free(mem[i]);
    free(yh), free(yr), free(v), free(w);
}

static void check_lora(void) {
    int T = 40, C = 48, OC = 24;
    float *x = randn((int64_t)T * C, 1.0f), *y0 = randn((int64_t)T * OC, 1.0f);
    float *A1 = randn(8 * C, 0.2f), *B1 = randn(OC * 8, 0.2f), *A2 = randn(3 * C, 0.2f), *B2 = randn(OC * 3, 0.2f);
    // tokens 0-4 none, 5-14 adapter 1, 15-19 adapter 2, 20-24 none, 25-39 adapter 1 again
    bk_lora_seg seg[] = {{5, 10, 8, 2.0f, A1, B1, BK_DT_F32}, {15, 5, 3, 0.5f, A2, B2, BK_DT_F32},
                         {25, 15, 8, 2.0f, A1, B1, BK_DT_F32}};
    const float *Af[] = {A1, A2, A1}, *Bf[] = {B1, B2, B1};
    double *want = malloc((size_t)T * OC * sizeof *want);
    for (int64_t i = 0; i < (int64_t)T * OC; i++) want[i] = y0[i];
    for (int s = 0; s < 3; s++)
        for (int t = seg[s].start; t < seg[s].start + seg[s].count; t++) {
            double v[8];
            for (int k = 0; k < seg[s].rank; k++) {
                v[k] = 0;
                for (int c = 0; c < C; c++) v[k] += (double)Af[s][k * C + c] * x[t * C + c];
            }
            for (int o = 0; o < OC; o++) {
                double acc = 0;
                for (int k = 0; k < seg[s].rank; k++) acc += (double)Bf[s][o * seg[s].rank + k] * v[k];
                want[t * OC + o] += seg[s].scale * acc;
            }
        }
    float *y = malloc((size_t)T * OC * sizeof *y), *v = malloc((size_t)T * 8 * sizeof *v);
    memcpy(y, y0, (size_t)T * OC * sizeof *y);
    bk_cpu()->lora(y, x, v, C, OC, seg, 3);
    double e = rel_err(y, want, (int64_t)T * OC);
    CHECK(e < 1e-5, "lora: relative error %.3g", e);
    int untouched = memcmp(y, y0, 5 * OC * sizeof *y) == 0 && memcmp(y + 20 * OC, y0 + 20 * OC, 5 * OC * sizeof *y) == 0;
    CHECK(untouched, "lora: tokens outside every segment changed");
    printf("lora: 3 segments, ranks 8 and 3, gaps: rel err %.2g\n", e);
    check_lora_bf16(x, y0, y, seg, 3, T, C, OC);
    free(x), free(y0), free(A1), free(B1), free(A2), free(B2), free(want), free(y), free(v);
}

// ---- attention over paged KV ---------------------------------------------------

// Attention over a bf16 cache written by kv_store from the f32 cache of a
// (nslot slots): kv_store rounds as num_f32_to_bf16; attention gives the
// bits of the f32 op over an f32 cache of the rounded values (rows are
// widened exactly, then the same math), and is within TOL_ATT_BF16 of the
// f32 cache's result out32 (K and V each carry 2^-9 relative rounding).
#define TOL_ATT_BF16 1e-2

static void check_attention_bf16(const bk_attn_args *a, const float *q, int T, int nslot, const float *out32) {
    const bk_ops *bk = bk_cpu();
    int KV = a->n_kv_heads * a->head_dim;
    int64_t n = (int64_t)nslot * KV, no = (int64_t)T * a->n_heads * a->head_dim;
    uint16_t *kh = malloc((size_t)n * 2), *vh = malloc((size_t)n * 2);
    float *kr = malloc((size_t)n * 4), *vr = malloc((size_t)n * 4);
    int32_t *all = malloc((size_t)nslot * sizeof *all);
    for (int i = 0; i < nslot; i++) all[i] = i;
    bk->kv_store(kh, vh, a->k_cache, a->v_cache, all, nslot, KV, BK_DT_BF16);
    const float *kc = a->k_cache, *vc = a->v_cache;
    int stored_ok = 1;
    for (int64_t i = 0; i < n; i++) {
        stored_ok &= kh[i] == num_f32_to_bf16(kc[i]) && vh[i] == num_f32_to_bf16(vc[i]);
        kr[i] = num_bf16_to_f32(kh[i]), vr[i] = num_bf16_to_f32(vh[i]);
    }
    CHECK(stored_ok, "kv_store bf16: a value not rounded to nearest even");
    bk_attn_args h = *a, r = *a;
    h.k_cache = kh, h.v_cache = vh, h.kv_dtype = BK_DT_BF16;
    r.k_cache = kr, r.v_cache = vr;
    float *oh = malloc((size_t)no * 4), *orr = malloc((size_t)no * 4);
    double *w = malloc((size_t)no * sizeof *w);
    bk->attention(oh, q, T, &h);
    bk->attention(orr, q, T, &r);
    CHECK(memcmp(oh, orr, (size_t)no * 4) == 0, "attention bf16 cache: differs from f32 over the rounded cache");
    for (int64_t i = 0; i < no; i++) w[i] = out32[i];
    double e = rel_err(oh, w, no);
    CHECK(e < TOL_ATT_BF16, "attention bf16 cache vs f32 cache: relative error %.3g > %.0e", e, TOL_ATT_BF16);
    printf("attention bf16 cache (window %d): == f32 over the rounded cache (bits); vs f32 cache rel err %.2g "
           "(limit %.0e)\n", a->window, e, TOL_ATT_BF16);
    free(kh), free(vh), free(kr), free(vr), free(all), free(oh), free(orr), free(w);
}

static void check_attention(void) {
    const bk_ops *bk = bk_cpu();
    int H = 4, KVH = 2, D = 16, BS = 4, NB = 16, STRIDE = 6;
    int KV = KVH * D;
    float *kc = randn((int64_t)NB * BS * KV, 1.0f), *vc = randn((int64_t)NB * BS * KV, 1.0f);
    // two sequences with scattered blocks
    int32_t table[2 * 6] = {7, 2, 11, 0, -1, -1, 5, 9, 1, 14, 3, -1};
    int32_t seq[] = {0, 0, 1, 1, 1, 0}, pos[] = {0, 13, 4, 17, 19, 9};
    int T = 6;
    float *q = randn((int64_t)T * H * D, 1.0f);
    float *out = malloc((size_t)T * H * D * sizeof *out);
    for (int window = 0; window <= 5; window += 5) {
        bk_attn_args a = {kc, vc, table, STRIDE, BS, seq, pos, H, KVH, D, window, 1.0f / sqrtf((float)D), BK_DT_F32};
        bk->attention(out, q, T, &a);
        double want[6 * 4 * 16];
        for (int t = 0; t < T; t++)
            for (int h = 0; h < H; h++) {
                int kvh = h / (H / KVH), first = window && pos[t] - window + 1 > 0 ? pos[t] - window + 1 : 0;
                double s[32], mx = -1e300, sum = 0;
                for (int p = first; p <= pos[t]; p++) {
                    int64_t slot = (int64_t)table[seq[t] * STRIDE + p / BS] * BS + p % BS;
                    double d = 0;
                    for (int i = 0; i < D; i++) d += (double)q[(t * H + h) * D + i] * kc[slot * KV + kvh * D + i];
                    s[p] = d / sqrt((double)D);
                    mx = fmax(mx, s[p]);
                }
                for (int p = first; p <= pos[t]; p++) sum += s[p] = exp(s[p] - mx);
                for (int i = 0; i < D; i++) {
                    double acc = 0;
                    for (int p = first; p <= pos[t]; p++) {
                        int64_t slot = (int64_t)table[seq[t] * STRIDE + p / BS] * BS + p % BS;
                        acc += s[p] / sum * vc[slot * KV + kvh * D + i];
                    }
                    want[(t * H + h) * D + i] = acc;
                }
            }
        double e = rel_err(out, want, (int64_t)T * H * D);
        CHECK(e < 1e-5, "attention (window %d): relative error %.3g", window, e);
        printf("attention: GQA 4/2, scattered blocks of 4, window %d: rel err %.2g\n", window, e);
        check_attention_bf16(&a, q, T, NB * BS, out);
    }
    // kv_store puts rows where the slots say
    float *k = randn(2 * KV, 1.0f), *v = randn(2 * KV, 1.0f);
    int32_t slots[] = {37, 5};
    bk->kv_store(kc, vc, k, v, slots, 2, KV, BK_DT_F32);
    CHECK(memcmp(kc + 37 * KV, k, KV * sizeof *k) == 0 && memcmp(vc + 5 * KV, v + KV, KV * sizeof *v) == 0,
          "kv_store");
    free(kc), free(vc), free(q), free(out), free(k), free(v);
}

// out (T, H, D) in double for f32 caches kc, vc under a's table, window,
// GQA and scale: the softmax of all of a row's scores at once.
static void ref_attention(double *want, const float *q, const float *kc, const float *vc, int T, const bk_attn_args *a) {
    int H = a->n_heads, D = a->head_dim, KV = a->n_kv_heads * D, G = H / a->n_kv_heads;
    double *s = malloc((size_t)(a->pos[0] + 1) * sizeof *s);
    for (int t = 0; t < T; t++) {
        int pos = a->pos[t], first = a->window && pos - a->window + 1 > 0 ? pos - a->window + 1 : 0;
        s = realloc(s, (size_t)(pos + 1) * sizeof *s);
        for (int h = 0; h < H; h++) {
            const float *qr = q + ((int64_t)t * H + h) * D;
            double mx = -1e300, sum = 0;
            for (int p = first; p <= pos; p++) {
                int64_t slot = (int64_t)a->block_table[a->seq[t] * a->table_stride + p / a->block_size] * a->block_size;
                const float *k = kc + (slot + p % a->block_size) * KV + h / G * D;
                double d = 0;
                for (int i = 0; i < D; i++) d += (double)qr[i] * k[i];
                s[p] = d * a->scale;
                mx = fmax(mx, s[p]);
            }
            for (int p = first; p <= pos; p++) sum += s[p] = exp(s[p] - mx);
            for (int i = 0; i < D; i++) {
                double acc = 0;
                for (int p = first; p <= pos; p++) {
                    int64_t slot = (int64_t)a->block_table[a->seq[t] * a->table_stride + p / a->block_size] * a->block_size;
                    acc += s[p] / sum * vc[(slot + p % a->block_size) * KV + h / G * D + i];
                }
                want[((int64_t)t * H + h) * D + i] = acc;
            }
        }
    }
    free(s);
}

// The op under the current kernel set on a batch of 37 tokens of three
// sequences (runs of one sequence split and interleaved, a decode token
// among them), the Qwen2.5-0.5B head shape (GQA 14/2, D 64), contexts of
// several key blocks: within 1e-5 of the double reference; every token
// alone, a contiguous chunk of one sequence, and 1 vs 3 threads give the
// same bits as the batch.
static void check_attention_batch(const bk_attn_args *a0, const float *q, const float *kr, const float *vr) {
    enum { T = 37, H = 14, D = 64 };
    const bk_ops *bk = bk_cpu();
    bk_attn_args a = *a0;
    float *out = malloc(T * H * D * sizeof *out), *one = malloc(T * H * D * sizeof *one);
    double *want = malloc(T * H * D * sizeof *want);
    bk->attention(out, q, T, &a);
    ref_attention(want, q, kr, vr, T, &a);
    double e = rel_err(out, want, T * H * D);
    CHECK(e < 1e-5, "attention batch (%s, %s cache, window %d): relative error %.3g", bk_cpu_simd(),
          bk_dtype_name(a.kv_dtype), a.window, e);
    int same = 1;
    for (int t = 0; t < T; t++) {
        bk_attn_args s = a;
        s.seq = a0->seq + t, s.pos = a0->pos + t;
        bk->attention(one, q + t * H * D, 1, &s);
        same &= memcmp(one, out + t * H * D, H * D * sizeof *one) == 0;
    }
    CHECK(same, "attention batch (%s, %s cache, window %d): a token alone differs from the batch", bk_cpu_simd(),
          bk_dtype_name(a.kv_dtype), a.window);
    bk_attn_args c = a; // tokens 19 .. 28: seq 0 positions 110 .. 119, one chunk
    c.seq = a0->seq + 19, c.pos = a0->pos + 19;
    bk->attention(one, q + 19 * H * D, 10, &c);
    CHECK(memcmp(one, out + 19 * H * D, 10 * H * D * sizeof *one) == 0,
          "attention batch (%s): a prefill chunk differs from the batch", bk_cpu_simd());
    int threads = bk_cpu_threads();
    bk_cpu_set_threads(1);
    bk->attention(one, q, T, &a);
    bk_cpu_set_threads(threads);
    CHECK(memcmp(one, out, T * H * D * sizeof *one) == 0, "attention batch (%s): 1 thread differs", bk_cpu_simd());
    bk_cpu_set_threads(3);
    bk->attention(one, q, T, &a);
    bk_cpu_set_threads(threads);
    CHECK(memcmp(one, out, T * H * D * sizeof *one) == 0, "attention batch (%s): 3 threads differ", bk_cpu_simd());
    printf("attention %-9s %s cache, window %2d, 37 tokens of 3 sequences: rel err %.2g, batch-, chunk- and "
           "thread-invariant\n", bk_cpu_simd(), bk_dtype_name(a.kv_dtype), a.window, e);
    free(out), free(one), free(want);
}

// check_attention_batch for every kernel set, windows 0 and 40, f32 and
// bf16 caches (bf16 against the reference over the rounded values).
static void check_attention_batches(void) {
    enum { H = 14, KVH = 2, D = 64, BS = 16, NB = 24, STRIDE = 10, T = 37, KV = KVH * D };
    const bk_ops *bk = bk_cpu();
    float *kc = randn((int64_t)NB * BS * KV, 1.0f), *vc = randn((int64_t)NB * BS * KV, 1.0f);
    float *q = randn(T * H * D, 1.0f), *kr = malloc(NB * BS * KV * 4), *vr = malloc(NB * BS * KV * 4);
    uint16_t *kh = malloc(NB * BS * KV * 2), *vh = malloc(NB * BS * KV * 2);
    int32_t *all = malloc(NB * BS * sizeof *all);
    for (int i = 0; i < NB * BS; i++) all[i] = i;
    bk->kv_store(kh, vh, kc, vc, all, NB * BS, KV, BK_DT_BF16);
    for (int i = 0; i < NB * BS * KV; i++) kr[i] = num_bf16_to_f32(kh[i]), vr[i] = num_bf16_to_f32(vh[i]);
    // seq 0: 120 keys (8 blocks), seq 1: 97 keys (7), seq 2: 40 keys (3), blocks scattered
    int32_t table[3 * STRIDE] = {17, 3, 22, 8, 0, 12, 19, 5, -1, -1, 9, 1, 14, 23, 6, 20, 11, -1, -1, -1,
                                 2, 16, 7, -1, -1, -1, -1, -1, -1, -1};
    int32_t seq[T], pos[T], n = 0;
    for (int p = 100; p < 110; p++) seq[n] = 0, pos[n++] = p;
    for (int p = 24; p < 32; p++) seq[n] = 2, pos[n++] = p;
    seq[n] = 1, pos[n++] = 96;
    for (int p = 110; p < 120; p++) seq[n] = 0, pos[n++] = p;
    for (int p = 32; p < 40; p++) seq[n] = 2, pos[n++] = p;
    const char *orig = bk_cpu_simd();
    for (int level = 0; level < 3; level++) {
        if (!use_simd(level)) continue;
        for (int window = 0; window <= 40; window += 40) {
            bk_attn_args a = {kc, vc, table, STRIDE, BS, seq, pos, H, KVH, D, window, 0.125f, BK_DT_F32};
            check_attention_batch(&a, q, kc, vc);
            a.k_cache = kh, a.v_cache = vh, a.kv_dtype = BK_DT_BF16;
            check_attention_batch(&a, q, kr, vr);
        }
    }
    for (int level = 0; level < 3; level++)
        if (strcmp(orig, SIMD_NAMES[level]) == 0) bk_cpu_set_simd(level);
    free(kc), free(vc), free(q), free(kr), free(vr), free(kh), free(vh), free(all);
}

// ---- the small ops ------------------------------------------------------------------

static void check_small_ops(void) {
    const bk_ops *bk = bk_cpu();
    int N = 5, C = 40;
    float *x = randn(N * C, 2.0f), *w = randn(C, 1.0f), *out = malloc((size_t)N * C * sizeof *out);
    double want[5 * 40];
    bk->rmsnorm(out, x, w, N, C, 1e-6f);
    for (int r = 0; r < N; r++) {
        double ms = 0;
        for (int i = 0; i < C; i++) ms += (double)x[r * C + i] * x[r * C + i];
        double s = 1 / sqrt(ms / C + 1e-6);
        for (int i = 0; i < C; i++) want[r * C + i] = w[i] * x[r * C + i] * s;
    }
    double e = rel_err(out, want, N * C);
    CHECK(e < 1e-6, "rmsnorm: %.3g", e);

    // rope: (T=2, H=3, D=8)
    float inv[4] = {1.0f, 0.1f, 0.01f, 0.001f};
    int32_t pos[2] = {0, 77};
    float *r = randn(2 * 3 * 8, 1.0f), *r0 = malloc(48 * sizeof *r0);
    memcpy(r0, r, 48 * sizeof *r);
    bk->rope(r, pos, 2, 3, 8, inv);
    for (int t = 0; t < 2; t++)
        for (int h = 0; h < 3; h++)
            for (int i = 0; i < 4; i++) {
                double a = pos[t] * (double)inv[i], x0 = r0[(t * 3 + h) * 8 + i], x1 = r0[(t * 3 + h) * 8 + i + 4];
                want[(t * 3 + h) * 8 + i] = x0 * cos(a) - x1 * sin(a);
                want[(t * 3 + h) * 8 + i + 4] = x1 * cos(a) + x0 * sin(a);
            }
    double er = rel_err(r, want, 48);
    CHECK(er < 1e-5, "rope: %.3g", er);

    float *g = randn(100, 3.0f), *u = randn(100, 1.0f), sw[100];
    bk->swiglu(sw, g, u, 100);
    for (int i = 0; i < 100; i++) want[i] = g[i] / (1 + exp(-(double)g[i])) * u[i];
    double es = rel_err(sw, want, 100);
    CHECK(es < 1e-6, "swiglu: %.3g", es);

    // embed (bf16 table) and gather
    uint16_t emb[6 * 4];
    for (int i = 0; i < 24; i++) emb[i] = util_f32_to_bf16((float)i);
    bk_weight E = {.type = BK_W_BF16, .rows = 6, .cols = 4, .data = emb};
    int32_t ids[2] = {5, 2}, rows[1] = {1};
    float ex[8], gx[4];
    bk->embed(ex, ids, 2, &E);
    bk->gather_rows(gx, ex, rows, 1, 4);
    CHECK(ex[0] == 20 && ex[3] == 23 && ex[4] == 8 && gx[0] == 8 && gx[3] == 11, "embed / gather");
    printf("rmsnorm %.2g, rope %.2g, swiglu %.2g (rel err); embed, gather exact\n", e, er, es);
    free(x), free(w), free(out), free(r), free(r0), free(g), free(u);
}

int main(void) {
    util_rng_seed(&rng, 7);
    check_matmul();
    check_q8();
    check_q8_quantize_edges();
    check_lora();
    check_attention();
    check_attention_batches();
    check_small_ops();
    bk_cpu_shutdown();
    return check_finish("test_kernels");
}
