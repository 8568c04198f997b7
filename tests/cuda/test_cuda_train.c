// test_cuda_train: the CUDA backend's training ops (kernels/cuda/backward.cu)
// against the CPU backend, the reference (kernels/cpu/backward.c).
//
// 1. Each op on fresh random inputs of several shapes (T = 1, 17, 300;
//    GQA; a sliding window; packed sequences; dropout 0 and 0.1; F32, BF16
//    and NF4 weights; accumulate on and off). Every device output is
//    poisoned with NaN before the run, so an element the kernel does not
//    write fails. Error: max |gpu - cpu| / max |cpu| per tensor (NaN
//    fails), printed, and checked against the bound stated per op:
//      TOL_GEMM 1e-4  ops summing long rows (attention, LoRA and matmul
//                     products through cuBLAS, rmsnorm over 4096)
//      TOL_EW   1e-5  element-wise and row-wise ops (rope, swiglu,
//                     cross-entropy, AdamW)
//      TOL_SUM  1e-10 sumsq (double; another order of the same positive
//                     terms), which must also repeat bit for bit.
//    f32 in another summation order lands near 1e-6; a TF32 cuBLAS mode
//    (~1e-3) or a wrong index (~1) fails.
// 2. The whole LoRA backward (train/lora_train.c) on the tiny oracle models
//    (tests/fixtures/oracle, as tests/test_grad.c uses them; bf16 and NF4
//    bases; dropout 0 and 0.1; recompute): the CUDA backend vs the CPU
//    backend, loss within TOL_LOSS and every module's A and B gradient
//    within TOL_GRAD of the module's max |grad|; a second identical run on
//    the GPU gives the same bits; then 3 AdamW steps with clipping on both,
//    losses and parameters within TOL_GRAD.
//
// Needs a GPU: bk_cuda() returning NULL fails the test with its reason.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "../check.h"
#include "cuda/cu_backend.h"
#include "../../train/lora_train.h"
#include "model.h"
#include "nf4.h"
#include "util.h"

#define TOL_GEMM 1e-4
#define TOL_EW 1e-5
#define TOL_SUM 1e-10
#define TOL_LOSS 1e-5
#define TOL_GRAD 1e-3
#define ORACLE "tests/fixtures/oracle"

static const bk_ops *cpu, *gpu;
static util_rng rng;

// ---- helpers ---------------------------------------------------------------------

static float *randn(int64_t n, double sd) {
    float *x = malloc((size_t)n * sizeof *x);
    for (int64_t i = 0; i < n; i++) x[i] = (float)(sd * util_rng_normal(&rng));
    return x;
}

static void *dalloc(size_t bytes) {
    err_t err = {{0}};
    void *p = gpu->alloc(bytes ? bytes : 4, &err);
    if (!p) {
        fprintf(stderr, "test_cuda_train: %s\n", err.msg);
        exit(1);
    }
    return p;
}

// A device copy of `bytes` bytes of host memory.
static void *to_gpu(const void *host, size_t bytes) {
    void *d = dalloc(bytes);
    gpu->upload(d, host, bytes);
    return d;
}
static float *dupf(const float *host, int64_t n) { return to_gpu(host, (size_t)n * sizeof(float)); }

// Fills n device floats with NaN (all bits set).
static void poison(float *d, int64_t n) {
    void *h = malloc((size_t)n * sizeof(float));
    memset(h, 0xff, (size_t)n * sizeof(float));
    gpu->upload(d, h, (size_t)n * sizeof(float));
    free(h);
}

static float *fetch(const float *d, int64_t n) {
    float *h = malloc((size_t)n * sizeof *h);
    gpu->download(h, d, (size_t)n * sizeof(float));
    return h;
}

// Downloads the device tensor d and checks it against the CPU's ref,
// relative to max |ref| or `floor`, the size its entries have when they are
// not cancellations (see check_attention).
static double expect_floor(const char *what, const float *d, const float *ref, int64_t n, double tol, double floor) {
    float *g = fetch(d, n);
    double e = check_rel_err_floor(g, ref, n, floor);
    printf("  %-58s rel err %.2e (bound %.0e)\n", what, e, tol);
    CHECK(e <= tol, "%s: relative error %.3g over %.1g", what, e, tol);
    free(g);
    return e;
}

static double expect(const char *what, const float *d, const float *ref, int64_t n, double tol) {
    return expect_floor(what, d, ref, n, tol, 0);
}

static float *copyf(const float *x, int64_t n) {
    float *y = malloc((size_t)n * sizeof *y);
    memcpy(y, x, (size_t)n * sizeof *y);
    return y;
}

// ---- attention -----------------------------------------------------------------------

typedef struct attn_case {
    int T, H, KVH, D, window;
    int nseq; // sequences packed into the batch, of near-equal length
} attn_case;

static void check_attention(attn_case c) {
    int64_t QN = (int64_t)c.T * c.H * c.D, KN = (int64_t)c.T * c.KVH * c.D, LN = (int64_t)c.T * c.H;
    int32_t *start = malloc((size_t)c.T * sizeof *start);
    for (int s = 0, t = 0; s < c.nseq; s++) {
        int end = (int)((int64_t)c.T * (s + 1) / c.nseq);
        for (int b = t; t < end; t++) start[t] = b;
    }
    float *q = randn(QN, 1), *k = randn(KN, 1), *v = randn(KN, 1), *dout = randn(QN, 1);
    bk_train_attn a = {start, c.H, c.KVH, c.D, c.window, 1.0f / sqrtf((float)c.D)};
    float *out = malloc(QN * 4), *lse = malloc(LN * 4), *dq = malloc(QN * 4), *dk = malloc(KN * 4),
          *dv = malloc(KN * 4), *delta = malloc(LN * 4);
    cpu->attention_train(out, lse, q, k, v, c.T, &a);
    cpu->attention_backward(dq, dk, dv, delta, dout, q, k, v, out, lse, c.T, &a);

    float *gq = dupf(q, QN), *gk = dupf(k, KN), *gv = dupf(v, KN), *gdo = dupf(dout, QN);
    float *gout = dalloc(QN * 4), *glse = dalloc(LN * 4), *gdq = dalloc(QN * 4), *gdk = dalloc(KN * 4),
          *gdv = dalloc(KN * 4), *gdelta = dalloc(LN * 4);
    bk_train_attn ga = a;
    void *gstart = to_gpu(start, (size_t)c.T * sizeof *start);
    ga.start = gstart;
    float *bufs[] = {gout, glse, gdq, gdk, gdv, gdelta};
    int64_t ns[] = {QN, LN, QN, KN, KN, LN};
    for (int i = 0; i < 6; i++) poison(bufs[i], ns[i]);
    gpu->attention_train(gout, glse, gq, gk, gv, c.T, &ga);
    // Backward reads the CPU's forward outputs, so its error is its own.
    float *rout = dupf(out, QN), *rlse = dupf(lse, LN);
    gpu->attention_backward(gdq, gdk, gdv, gdelta, gdo, gq, gk, gv, rout, rlse, c.T, &ga);

    // A query that sees one key has dq = 0 and adds 0 to that key's dk
    // (dO . v - delta cancels): both backends give rounding noise there,
    // so dq, dk are measured against 1, the size of the gradients of these
    // N(0, 1) inputs, when their own max is below it (T = 1: all noise).
    char name[160];
    const char *outs[] = {"out", "lse", "dq", "dk", "dv", "delta"};
    float *refs[] = {out, lse, dq, dk, dv, delta};
    for (int i = 0; i < 6; i++) {
        snprintf(name, sizeof name, "attention T %d H %d KVH %d D %d window %d seqs %d: %s", c.T, c.H, c.KVH, c.D,
                 c.window, c.nseq, outs[i]);
        expect_floor(name, bufs[i], refs[i], ns[i], TOL_GEMM, i == 2 || i == 3 ? 1.0 : 0.0);
    }
    for (int i = 0; i < 6; i++) gpu->free(bufs[i]);
    gpu->free(gq), gpu->free(gk), gpu->free(gv), gpu->free(gdo), gpu->free(rout), gpu->free(rlse);
    gpu->free(gstart);
    free(start), free(q), free(k), free(v), free(dout);
    free(out), free(lse), free(dq), free(dk), free(dv), free(delta);
}

// ---- LoRA ---------------------------------------------------------------------------------

static void check_lora(int T, int C, int OC, int rank, float p) {
    float scale = 2.0f;
    bk_dropout drop = {p, util_rng_next(&rng)};
    float *x = randn((int64_t)T * C, 1), *A = randn((int64_t)rank * C, 0.1), *B = randn((int64_t)OC * rank, 0.1);
    float *y = randn((int64_t)T * OC, 1), *dy = randn((int64_t)T * OC, 1), *dx = randn((int64_t)T * C, 1);
    float *dA = randn((int64_t)rank * C, 0.1), *dB = randn((int64_t)OC * rank, 0.1);
    float *v = malloc((size_t)T * rank * 4), *u = malloc((size_t)T * rank * 4);
    float *gx = dupf(x, (int64_t)T * C), *gA = dupf(A, (int64_t)rank * C), *gB = dupf(B, (int64_t)OC * rank);
    float *gy = dupf(y, (int64_t)T * OC), *gdy = dupf(dy, (int64_t)T * OC), *gdx = dupf(dx, (int64_t)T * C);
    float *gdA = dupf(dA, (int64_t)rank * C), *gdB = dupf(dB, (int64_t)OC * rank);
    float *gv = dalloc((size_t)T * rank * 4), *gu = dalloc((size_t)T * rank * 4);
    poison(gv, (int64_t)T * rank);
    poison(gu, (int64_t)T * rank);

    cpu->lora_train(y, v, x, A, B, T, C, OC, rank, scale, &drop);
    cpu->lora_backward(dx, dA, dB, u, dy, x, v, A, B, T, C, OC, rank, scale, &drop);
    gpu->lora_train(gy, gv, gx, gA, gB, T, C, OC, rank, scale, &drop);
    float *gvr = dupf(v, (int64_t)T * rank); // backward from the CPU's v: its own error only
    gpu->lora_backward(gdx, gdA, gdB, gu, gdy, gx, gvr, gA, gB, T, C, OC, rank, scale, &drop);

    char name[160];
    const char *what[] = {"y", "v", "dx", "dA", "dB", "u"};
    float *g[] = {gy, gv, gdx, gdA, gdB, gu}, *r[] = {y, v, dx, dA, dB, u};
    int64_t n[] = {(int64_t)T * OC, (int64_t)T * rank, (int64_t)T * C, (int64_t)rank * C, (int64_t)OC * rank,
                   (int64_t)T * rank};
    for (int i = 0; i < 6; i++) {
        snprintf(name, sizeof name, "lora T %d C %d OC %d rank %d dropout %.1f: %s", T, C, OC, rank, p, what[i]);
        expect(name, g[i], r[i], n[i], TOL_GEMM);
    }
    for (int i = 0; i < 6; i++) gpu->free(g[i]);
    gpu->free(gx), gpu->free(gA), gpu->free(gB), gpu->free(gdy), gpu->free(gvr);
    free(x), free(A), free(B), free(y), free(dy), free(dx), free(dA), free(dB), free(v), free(u);
}

// ---- matmul_backward -------------------------------------------------------------------------

// W on the device: its arrays in one allocation (as core/model.c lays them).
static bk_weight weight_on_gpu(const bk_weight *w) {
    bk_weight d = *w;
    int64_t n = w->rows * w->cols;
    if (w->type == BK_W_F32) d.mem = to_gpu(w->data, (size_t)n * 4);
    if (w->type == BK_W_BF16) d.mem = to_gpu(w->data, (size_t)n * 2);
    d.data = d.mem;
    if (w->type != BK_W_NF4) return d;
    const nf4_tensor *t = &w->nf4;
    size_t packed = (size_t)(t->numel / 2), off_abs = (packed + 63) / 64 * 64;
    size_t abs_bytes = t->nested ? (size_t)t->nblocks : (size_t)t->nblocks * sizeof(float);
    size_t off_nested = (off_abs + abs_bytes + 63) / 64 * 64;
    size_t total = off_nested + (t->nested ? (size_t)t->nnested * sizeof(float) : 0);
    uint8_t *mem = dalloc(total);
    gpu->upload(mem, t->packed, packed);
    d.nf4.packed = mem;
    d.nf4.owned = NULL;
    if (t->nested) {
        gpu->upload(mem + off_abs, t->absmax_q, abs_bytes);
        gpu->upload(mem + off_nested, t->nested_absmax, (size_t)t->nnested * sizeof(float));
        d.nf4.absmax_q = mem + off_abs;
        d.nf4.nested_absmax = (const float *)(mem + off_nested);
    } else {
        gpu->upload(mem + off_abs, t->absmax, abs_bytes);
        d.nf4.absmax = (const float *)(mem + off_abs);
    }
    d.mem = mem;
    d.data = NULL;
    return d;
}

static void check_matmul_backward(int OC, int C, int T) {
    int64_t nw = (int64_t)OC * C;
    float *w = randn(nw, 0.05), *dy = randn((int64_t)T * OC, 1), *dx0 = randn((int64_t)T * C, 1);
    uint16_t *wb = malloc((size_t)nw * sizeof *wb);
    for (int64_t i = 0; i < nw; i++) wb[i] = util_f32_to_bf16(w[i]);
    nf4_tensor q;
    err_t err = {{0}};
    memset(&q, 0, sizeof q);
    CHECK(nf4_quantize(w, OC, C, 1, &q, &err) == 0, "%s", err.msg);
    float *gdy = dupf(dy, (int64_t)T * OC), *gdx = dalloc((size_t)T * C * 4);
    static const char *kinds[] = {"f32", "bf16", "nf4"};
    for (int kind = 0; kind < 3; kind++) {
        bk_weight W = {.rows = OC, .cols = C};
        if (kind == 0) W.type = BK_W_F32, W.data = w;
        if (kind == 1) W.type = BK_W_BF16, W.data = wb;
        if (kind == 2) W.type = BK_W_NF4, W.nf4 = q;
        bk_weight GW = weight_on_gpu(&W);
        for (int acc = 0; acc < 2; acc++) {
            float *ref = copyf(dx0, (int64_t)T * C);
            cpu->matmul_backward(ref, dy, &W, T, acc);
            if (acc) gpu->upload(gdx, dx0, (size_t)T * C * 4);
            else poison(gdx, (int64_t)T * C);
            gpu->matmul_backward(gdx, gdy, &GW, T, acc);
            char name[160];
            snprintf(name, sizeof name, "matmul_backward %s [%d x %d] T %d accumulate %d", kinds[kind], OC, C, T, acc);
            expect(name, gdx, ref, (int64_t)T * C, TOL_GEMM);
            free(ref);
        }
        gpu->free(GW.mem);
    }
    gpu->free(gdy), gpu->free(gdx);
    nf4_free(&q);
    free(w), free(wb), free(dy), free(dx0);
}

// ---- row-wise and element-wise ops --------------------------------------------------------------

static void check_rmsnorm_backward(int64_t N, int C) {
    int64_t n = N * C;
    float *x = randn(n, 1), *dy = randn(n, 1), *w = randn(C, 1), *dx0 = randn(n, 1);
    float *gx = dupf(x, n), *gdy = dupf(dy, n), *gw = dupf(w, C), *gdx = dalloc((size_t)n * 4);
    char name[160];
    for (int mode = 0; mode < 3; mode++) { // overwrite, accumulate, in place (dx = dy)
        float *ref = copyf(mode == 1 ? dx0 : dy, n);
        cpu->rmsnorm_backward(ref, mode == 2 ? ref : dy, x, w, N, C, 1e-6f, mode == 1);
        float *out = gdx;
        if (mode == 0) poison(gdx, n);
        if (mode == 1) gpu->upload(gdx, dx0, (size_t)n * 4);
        if (mode == 2) gpu->upload(gdx, dy, (size_t)n * 4);
        gpu->rmsnorm_backward(out, mode == 2 ? out : gdy, gx, gw, N, C, 1e-6f, mode == 1);
        snprintf(name, sizeof name, "rmsnorm_backward N %lld C %d %s", (long long)N, C,
                 mode == 0 ? "overwrite" : mode == 1 ? "accumulate" : "in place");
        expect(name, out, ref, n, TOL_GEMM);
        free(ref);
    }
    gpu->free(gx), gpu->free(gdy), gpu->free(gw), gpu->free(gdx);
    free(x), free(dy), free(w), free(dx0);
}

static void check_rope_backward(int T, int H, int D) {
    int64_t n = (int64_t)T * H * D;
    int32_t *pos = malloc((size_t)T * sizeof *pos);
    for (int t = 0; t < T; t++) pos[t] = (int32_t)(util_rng_next(&rng) % 4096);
    float *inv = malloc((size_t)(D / 2) * sizeof *inv);
    for (int i = 0; i < D / 2; i++) inv[i] = (float)pow(10000.0, -2.0 * i / D);
    float *x = randn(n, 1), *gx = dupf(x, n), *ginv = dupf(inv, D / 2);
    int32_t *gpos = to_gpu(pos, (size_t)T * sizeof *pos);
    cpu->rope_backward(x, pos, T, H, D, inv);
    gpu->rope_backward(gx, gpos, T, H, D, ginv);
    char name[160];
    snprintf(name, sizeof name, "rope_backward T %d H %d D %d", T, H, D);
    expect(name, gx, x, n, TOL_EW);
    gpu->free(gx), gpu->free(ginv), gpu->free(gpos);
    free(pos), free(inv), free(x);
}

static void check_swiglu_backward(int64_t N) {
    float *dout = randn(N, 1), *gate = randn(N, 2), *up = randn(N, 1);
    float *dg = malloc((size_t)N * 4), *du = malloc((size_t)N * 4);
    cpu->swiglu_backward(dg, du, dout, gate, up, N);
    float *gdo = dupf(dout, N), *gg = dupf(gate, N), *gu = dupf(up, N), *gdu = dalloc((size_t)N * 4);
    poison(gdu, N);
    gpu->swiglu_backward(gdo, gdu, gdo, gg, gu, N); // dgate written over dout, as lora_train calls it
    char name[160];
    snprintf(name, sizeof name, "swiglu_backward N %lld: dgate (over dout)", (long long)N);
    expect(name, gdo, dg, N, TOL_EW);
    snprintf(name, sizeof name, "swiglu_backward N %lld: dup", (long long)N);
    expect(name, gdu, du, N, TOL_EW);
    gpu->free(gdo), gpu->free(gg), gpu->free(gu), gpu->free(gdu);
    free(dout), free(gate), free(up), free(dg), free(du);
}

static void check_cross_entropy(int N, int V) {
    int64_t n = (int64_t)N * V;
    float *l = randn(n, 3);
    float loss_scale = 0.25f;
    int32_t *tg = malloc((size_t)N * sizeof *tg);
    for (int r = 0; r < N; r++) tg[r] = (int32_t)(util_rng_next(&rng) % (uint64_t)V);
    float *gl = dupf(l, n), *gloss = dalloc((size_t)N * 4), *loss = malloc((size_t)N * 4);
    int32_t *gtg = to_gpu(tg, (size_t)N * sizeof *tg);
    poison(gloss, N);
    cpu->cross_entropy(l, loss, tg, N, V, loss_scale);
    gpu->cross_entropy(gl, gloss, gtg, N, V, loss_scale);
    char name[160];
    snprintf(name, sizeof name, "cross_entropy N %d V %d: gradient", N, V);
    expect(name, gl, l, n, TOL_EW);
    snprintf(name, sizeof name, "cross_entropy N %d V %d: loss", N, V);
    expect(name, gloss, loss, N, TOL_EW);
    gpu->free(gl), gpu->free(gloss), gpu->free(gtg);
    free(l), free(tg), free(loss);
}

static void check_adamw(int64_t n) {
    float *p = randn(n, 1), *g = randn(n, 1), *m = randn(n, 0.1), *v = randn(n, 0.1);
    for (int64_t i = 0; i < n; i++) v[i] = v[i] * v[i];
    bk_adamw h = {.beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .decay = 1.0f - 1e-3f * 0.01f,
                  .step_size = (float)(1e-3 / (1.0 - pow(0.9, 3))), .bc2_sqrt = (float)sqrt(1.0 - pow(0.999, 3)),
                  .grad_scale = 0.5f};
    float *gp = dupf(p, n), *gg = dupf(g, n), *gm = dupf(m, n), *gv = dupf(v, n);
    cpu->adamw(p, g, m, v, n, &h);
    gpu->adamw(gp, gg, gm, gv, n, &h);
    char name[160];
    const char *what[] = {"p", "m", "v"};
    float *gs[] = {gp, gm, gv}, *rs[] = {p, m, v};
    for (int i = 0; i < 3; i++) {
        snprintf(name, sizeof name, "adamw n %lld: %s", (long long)n, what[i]);
        expect(name, gs[i], rs[i], n, TOL_EW);
    }
    gpu->free(gp), gpu->free(gg), gpu->free(gm), gpu->free(gv);
    free(p), free(g), free(m), free(v);
}

static void check_sumsq(int64_t n) {
    float *x = randn(n, 1), *gx = dupf(x, n);
    double ref = cpu->sumsq(x, n), a = gpu->sumsq(gx, n), b = gpu->sumsq(gx, n);
    double e = fabs(a - ref) / ref;
    printf("  %-58s rel err %.2e (bound %.0e)\n", "sumsq", e, TOL_SUM);
    CHECK(e <= TOL_SUM, "sumsq n %lld: %.17g vs the CPU's %.17g", (long long)n, a, ref);
    CHECK(memcmp(&a, &b, sizeof a) == 0, "sumsq n %lld: two calls differ (%.17g, %.17g)", (long long)n, a, b);
    gpu->free(gx);
    free(x);
}

// ---- the whole LoRA backward -------------------------------------------------------------------

typedef struct pair {
    model *m[2];    // 0 CPU, 1 GPU
    lt_model *t[2];
} pair;

static model *load(const char *arch, const bk_ops *bk, model_load_quant quant) {
    char dir[256];
    snprintf(dir, sizeof dir, "%s/%s/model", ORACLE, arch);
    model_opts mo = model_opts_default();
    mo.quant = quant;
    mo.max_tokens = 32;
    mo.bk = bk;
    err_t err = {{0}};
    model *m = model_load(dir, &mo, &err);
    CHECK(m != NULL, "%s on %s: %s", dir, bk->name, err.msg);
    return m;
}

// A rank-4 LoRA on all 7 projections with the same parameters on both
// backends: PEFT's init, then B random (so every A has a gradient).
static int make_pair(pair *p, const char *arch, model_load_quant quant, float dropout, int recompute) {
    memset(p, 0, sizeof *p);
    const bk_ops *bks[2] = {cpu, gpu};
    lt_opts o = {.rank = 4, .alpha = 8, .targets = (1u << MODEL_LIN_COUNT) - 1, .dropout = dropout,
                 .max_tokens = 32, .recompute = recompute};
    for (int i = 0; i < 2; i++) {
        if (!(p->m[i] = load(arch, bks[i], quant))) return -1;
        err_t err = {{0}};
        p->t[i] = lt_new(p->m[i], &o, &err);
        CHECK(p->t[i] != NULL, "lt_new on %s: %s", bks[i]->name, err.msg);
        if (!p->t[i]) return -1;
        lt_init_peft(p->t[i], 5);
    }
    int64_t n = lt_n_params(p->t[0]);
    float *h = malloc((size_t)n * sizeof *h);
    lt_get_params(p->t[0], h);
    const model_config *c = model_get_config(p->m[0]);
    for (int l = 0; l < c->num_hidden_layers; l++)
        for (int k = 0; k < MODEL_LIN_COUNT; k++) {
            const lt_module *md = lt_module_at(p->t[0], l, (model_linear)k);
            for (int64_t i = 0; i < (int64_t)md->out * md->rank; i++)
                h[md->b_off + i] = (float)(0.1 * util_rng_normal(&rng));
        }
    for (int i = 0; i < 2; i++) lt_set_params(p->t[i], h);
    free(h);
    return 0;
}

static void free_pair(pair *p) {
    for (int i = 0; i < 2; i++) {
        lt_free(p->t[i]);
        model_free(p->m[i]);
    }
}

// Two packed sequences of 13 and 19 tokens, the first 3 of each unmasked.
typedef struct batch {
    int32_t ids[32];
    uint8_t mask[32];
    lt_seq seqs[2];
    int64_t count;
} batch;

static void make_batch(batch *b, int vocab) {
    for (int i = 0; i < 32; i++) b->ids[i] = (int32_t)(util_rng_next(&rng) % (uint64_t)vocab);
    for (int i = 0; i < 32; i++) b->mask[i] = (i < 13 ? i : i - 13) >= 3;
    b->seqs[0] = (lt_seq){b->ids, b->mask, 13};
    b->seqs[1] = (lt_seq){b->ids + 13, b->mask + 13, 19};
    b->count = lt_count_targets(b->seqs, 2);
}

// Worst per-module max |gpu - cpu| / max |cpu| of the gradients.
static double grad_err(pair *p, const float *gc, const float *gg) {
    const model_config *c = model_get_config(p->m[0]);
    double worst = 0;
    for (int l = 0; l < c->num_hidden_layers; l++)
        for (int k = 0; k < MODEL_LIN_COUNT; k++) {
            const lt_module *md = lt_module_at(p->t[0], l, (model_linear)k);
            double ea = check_rel_err(gg + md->a_off, gc + md->a_off, (int64_t)md->rank * md->in);
            double eb = check_rel_err(gg + md->b_off, gc + md->b_off, (int64_t)md->out * md->rank);
            worst = fmax(worst, fmax(ea, eb));
            if (isnan(ea) || isnan(eb)) worst = INFINITY;
        }
    return worst;
}

static void lora_case(const char *arch, model_load_quant quant, float dropout, int recompute) {
    pair p;
    const char *qn = quant == MODEL_LOAD_NF4 ? "nf4" : "bf16";
    if (make_pair(&p, arch, quant, dropout, recompute) < 0) {
        free_pair(&p);
        return;
    }
    batch b;
    make_batch(&b, model_get_config(p.m[0])->vocab_size);
    int64_t n = lt_n_params(p.t[0]);
    float *g[3];
    double loss[3];
    uint64_t key = util_rng_next(&rng);
    for (int r = 0; r < 3; r++) { // CPU, GPU, GPU again
        lt_model *t = p.t[r ? 1 : 0];
        const bk_ops *bk = r ? gpu : cpu;
        err_t err = {{0}};
        lt_zero_grads(t);
        CHECK(lt_forward_backward(t, b.seqs, 2, 1.0f / (float)b.count, key, &loss[r], &err) == 0, "%s", err.msg);
        g[r] = malloc((size_t)n * sizeof(float));
        bk->download(g[r], lt_grads(t), (size_t)n * sizeof(float));
    }
    double el = fabs(loss[1] - loss[0]) / fabs(loss[0]), eg = grad_err(&p, g[0], g[1]);
    printf("  lora_train %-7s %-4s dropout %.1f recompute %d: loss %.7f vs %.7f (rel %.1e), grads rel %.2e\n", arch,
           qn, dropout, recompute, loss[1] / b.count, loss[0] / b.count, el, eg);
    CHECK(el <= TOL_LOSS, "%s %s dropout %.1f: loss %.9g vs the CPU's %.9g", arch, qn, dropout, loss[1], loss[0]);
    CHECK(eg <= TOL_GRAD, "%s %s dropout %.1f: gradients off by %.3g of a module's max", arch, qn, dropout, eg);
    CHECK(memcmp(g[1], g[2], (size_t)n * sizeof(float)) == 0 && loss[1] == loss[2],
          "%s %s: two identical GPU runs gave different gradients", arch, qn);
    for (int r = 0; r < 3; r++) free(g[r]);
    free_pair(&p);
}

// 3 optimizer steps as train/trainer.c takes them (zero, forward-backward,
// clip by the global norm from sumsq, AdamW) on both backends. AdamW's eps
// is 1e-4 here, not torch's 1e-8: with eps far below |g|, an update is
// lr * sign(g) and a gradient entry within rounding of zero could take
// either sign on the two backends (a 2 lr difference in one parameter);
// with eps 1e-4 an update moves at most lr / eps per unit of gradient error.
// The AdamW op itself is checked with eps 1e-8 above.
static void optimizer_case(const char *arch) {
    pair p;
    if (make_pair(&p, arch, MODEL_LOAD_NF4, 0.1f, 0) < 0) {
        free_pair(&p);
        return;
    }
    int64_t n = lt_n_params(p.t[0]);
    const bk_ops *bks[2] = {cpu, gpu};
    float *mv[2];
    float *zeros = calloc((size_t)n * 2, sizeof(float));
    for (int i = 0; i < 2; i++) {
        err_t err = {{0}};
        mv[i] = bks[i]->alloc((size_t)n * 2 * sizeof(float), &err);
        CHECK(mv[i] != NULL, "%s", err.msg);
        bks[i]->upload(mv[i], zeros, (size_t)n * 2 * sizeof(float));
    }
    double worst_loss = 0, worst_norm = 0;
    for (int step = 1; step <= 3; step++) {
        batch b;
        make_batch(&b, model_get_config(p.m[0])->vocab_size);
        uint64_t key = util_rng_next(&rng);
        double loss[2], norm[2];
        for (int i = 0; i < 2; i++) {
            err_t err = {{0}};
            lt_zero_grads(p.t[i]);
            CHECK(lt_forward_backward(p.t[i], b.seqs, 2, 1.0f / (float)b.count, key, &loss[i], &err) == 0, "%s",
                  err.msg);
            norm[i] = sqrt(bks[i]->sumsq(lt_grads(p.t[i]), n));
            double clip = 0.5 / (norm[i] + 1e-6) < 1 ? 0.5 / (norm[i] + 1e-6) : 1.0;
            double lr = 1e-2, bc1 = 1 - pow(0.9, step), bc2 = 1 - pow(0.999, step);
            bk_adamw h = {.beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-4f, .decay = (float)(1 - lr * 0.01),
                          .step_size = (float)(lr / bc1), .bc2_sqrt = (float)sqrt(bc2), .grad_scale = (float)clip};
            bks[i]->adamw(lt_params(p.t[i]), lt_grads(p.t[i]), mv[i], mv[i] + n, n, &h);
        }
        worst_loss = fmax(worst_loss, fabs(loss[1] - loss[0]) / fabs(loss[0]));
        worst_norm = fmax(worst_norm, fabs(norm[1] - norm[0]) / norm[0]);
    }
    float *pc = malloc((size_t)n * 4), *pg = malloc((size_t)n * 4);
    lt_get_params(p.t[0], pc);
    lt_get_params(p.t[1], pg);
    double ep = check_rel_err(pg, pc, n);
    printf("  3 AdamW steps %-7s nf4: loss rel %.1e, grad norm rel %.1e, parameters rel %.2e\n", arch, worst_loss,
           worst_norm, ep);
    CHECK(worst_loss <= TOL_LOSS, "%s: optimizer steps' losses differ by %.3g", arch, worst_loss);
    CHECK(worst_norm <= TOL_GRAD, "%s: gradient norms differ by %.3g", arch, worst_norm);
    CHECK(ep <= TOL_GRAD, "%s: parameters after 3 steps differ by %.3g", arch, ep);
    for (int i = 0; i < 2; i++) bks[i]->free(mv[i]);
    free(zeros), free(pc), free(pg);
    free_pair(&p);
}

int main(void) {
    err_t err = {{0}};
    cpu = bk_cpu();
    gpu = bk_cuda(&err);
    CHECK(gpu != NULL, "no CUDA backend: %s", err.msg);
    if (!gpu) return check_finish("test_cuda_train");
    util_rng_seed(&rng, 20261123);

    printf("attention_train / attention_backward\n");
    attn_case ac[] = {
        {1, 4, 4, 64, 0, 1},     {17, 8, 2, 128, 0, 2},  {300, 4, 1, 64, 0, 3},
        {300, 6, 2, 80, 37, 2},  {40, 2, 1, 256, 0, 1},  {33, 2, 2, 512, 5, 2},
        {300, 32, 8, 128, 0, 1}, {17, 4, 2, 16, 0, 2},  {64, 4, 4, 96, 0, 3},
    };
    for (size_t i = 0; i < sizeof ac / sizeof *ac; i++) check_attention(ac[i]);

    printf("lora_train / lora_backward\n");
    int lc[][4] = {{1, 64, 96, 4}, {17, 128, 64, 8}, {300, 256, 384, 16}};
    for (int i = 0; i < 3; i++)
        for (int d = 0; d < 2; d++) check_lora(lc[i][0], lc[i][1], lc[i][2], lc[i][3], d ? 0.1f : 0.0f);

    printf("matmul_backward\n");
    check_matmul_backward(96, 128, 1);
    check_matmul_backward(300, 192, 17);
    check_matmul_backward(1000, 256, 300);
    check_matmul_backward(20000, 1024, 5); // more than one converted tile of rows

    printf("rmsnorm_backward, rope_backward, swiglu_backward\n");
    check_rmsnorm_backward(1, 64);
    check_rmsnorm_backward(17, 128);
    check_rmsnorm_backward(300 * 8, 128);
    check_rmsnorm_backward(300, 4096);
    check_rope_backward(1, 4, 64);
    check_rope_backward(17, 8, 128);
    check_rope_backward(300, 2, 80);
    check_swiglu_backward(1);
    check_swiglu_backward(17 * 176);
    check_swiglu_backward(300 * 1000);

    printf("cross_entropy, adamw, sumsq\n");
    check_cross_entropy(1, 512);
    check_cross_entropy(17, 32000);
    check_cross_entropy(3, 151936);
    check_adamw(1);
    check_adamw(1000);
    check_adamw(1000003);
    check_sumsq(1);
    check_sumsq(4095);
    check_sumsq(1000003);
    check_sumsq(30000001);

    printf("train/lora_train on the CUDA backend vs the CPU backend\n");
    static const char *archs[] = {"llama3", "qwen2", "qwen3", "mistral"};
    for (int a = 0; a < 4; a++) {
        lora_case(archs[a], MODEL_LOAD_NONE, 0.0f, 0);
        lora_case(archs[a], MODEL_LOAD_NF4, 0.1f, 0);
    }
    lora_case("qwen3", MODEL_LOAD_NF4, 0.1f, 1);
    optimizer_case("llama3");
    optimizer_case("qwen3");

    CHECK(bk_cuda_sync(&err) == 0, "%s", err.msg);
    bk_cpu_shutdown();
    return check_finish("test_cuda_train");
}
