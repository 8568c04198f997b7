// test_cuda_ops: every forward op of the CUDA backend against the CPU
// backend (the reference) on fresh random inputs of several shapes. Each
// CUDA output is poisoned (NaN) before the op runs, so an element the op
// fails to write shows as NaN, which fails every bound.
//
// Error measure per output tensor: max |cuda - cpu| / max |cpu|. Bounds:
//   - exact (0): gathers and copies (embed of f32 / bf16 / NF4 rows, which
//     also checks the NF4 decode bit for bit, kv_store into f32 and bf16
//     caches (bf16: rounded to nearest even as the CPU does), gather_rows,
//     residual);
//   - TOL_F32 = 1e-4: f32 math that differs from the CPU only in summation
//     order, FMA contraction and libm ulps (rmsnorm, rope, swiglu, lora
//     with f32 or bf16 A / B, attention over an f32 or a bf16 cache (both
//     sides read the same bf16 values, widened exactly), the fused decode
//     matmul and the plain matmul, the f32 SGEMM path). Observed errors are
//     ~1e-6; a wrong index is O(1);
//   - TOL_BF16 = 2e-2: the tensor-core matmul path for bf16 / NF4 weights,
//     whose inputs are rounded to bf16 (8 significant bits: 2^-9 relative
//     per product, partly cancelling over a dot: ~1e-2 worst case).
// The largest error seen per class is printed and checked at the end.
//
// bk_ops.sample is checked by its own measure (test_sample: the same tokens,
// logprobs within 2e-5).
//
// Needs a CUDA device: without one it fails (exit 1) saying why; `make
// test-cuda` runs it on the GPU machine.
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include "backend.h"
#include "cuda/cu_backend.h"
#include "nf4.h"
#include "util.h"

#define TOL_F32 1e-4
#define TOL_BF16 2e-2

static const bk_ops *cpu, *gpu;
static util_rng rng;

enum { CLS_EXACT, CLS_F32, CLS_BF16, CLS_N };
static const char *CLS_NAME[] = {"exact", "f32", "bf16 tensor cores"};
static const double CLS_TOL[] = {0.0, TOL_F32, TOL_BF16};
static double cls_worst[CLS_N];

// ---- helpers -------------------------------------------------------------------------

static float *rand_f32(int64_t n, float scale) {
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    for (int64_t i = 0; i < n; i++) p[i] = (float)((util_rng_uniform(&rng) * 2 - 1) * scale);
    return p;
}

// A device copy of host data (n bytes).
static void *dev_copy(const void *host, size_t n) {
    err_t err = {{0}};
    void *d = gpu->alloc(n ? n : 1, &err);
    CHECK(d != NULL, "%s", err.msg);
    if (!d) exit(1);
    if (n) gpu->upload(d, host, n);
    return d;
}

// A device buffer of n floats filled with NaN (an output to be written).
static float *dev_poisoned(int64_t n) {
    float *h = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    for (int64_t i = 0; i < n; i++) h[i] = NAN;
    float *d = dev_copy(h, (size_t)n * sizeof(float));
    free(h);
    return d;
}

static float *download(const float *d, int64_t n) {
    float *h = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    gpu->download(h, d, (size_t)n * sizeof(float));
    return h;
}

// Host bf16 copy of n floats (rounded to nearest even), a new array.
static uint16_t *to_bf16(const float *f, int64_t n) {
    uint16_t *h = malloc((size_t)(n > 0 ? n : 1) * sizeof *h);
    for (int64_t i = 0; i < n; i++) h[i] = num_f32_to_bf16(f[i]);
    return h;
}

// The device's n bytes at d equal the host's ref, bit for bit (class exact).
static void expect_bits(const char *what, const void *d, const void *ref, size_t n) {
    void *h = malloc(n ? n : 1);
    gpu->download(h, d, n);
    int same = memcmp(h, ref, n) == 0;
    free(h);
    printf("  %-58s %-18s %s\n", what, CLS_NAME[CLS_EXACT], same ? "same bits" : "DIFFERENT");
    if (!same) cls_worst[CLS_EXACT] = INFINITY;
    CHECK(same, "%s: not the CPU's bits", what);
}

// Compares the device result d with the CPU's ref and records the error.
static void expect(const char *what, int cls, const float *d, const float *ref, int64_t n) {
    float *h = download(d, n);
    double e = check_rel_err(h, ref, n);
    free(h);
    if (e > cls_worst[cls]) cls_worst[cls] = e;
    printf("  %-58s %-18s rel err %.3g\n", what, CLS_NAME[cls], e);
    CHECK(e <= CLS_TOL[cls], "%s: relative error %.3g above the %s bound %.0e", what, e, CLS_NAME[cls], CLS_TOL[cls]);
}

// ---- weights -------------------------------------------------------------------------

typedef enum { W_F32, W_BF16, W_NF4, W_NF4_NESTED, W_KINDS } wkind;
static const char *WNAME[] = {"f32", "bf16", "nf4", "nf4 double-quant"};

// One weight on both backends.
typedef struct tw {
    bk_weight cpu, gpu;
    void *host;     // host data (f32 or bf16)
    nf4_tensor q;   // NF4: the host quantization (owns its arrays)
    void *dev;      // device allocation
} tw;

static void tw_make(tw *w, wkind k, int64_t rows, int64_t cols) {
    memset(w, 0, sizeof *w);
    float *f = rand_f32(rows * cols, 0.5f);
    bk_weight b = {.rows = rows, .cols = cols};
    if (k == W_F32) {
        b.type = BK_W_F32;
        w->host = f;
        b.data = f;
        w->cpu = b;
        w->dev = dev_copy(f, (size_t)(rows * cols) * sizeof(float));
        b.data = w->dev;
        w->gpu = b;
        return;
    }
    if (k == W_BF16) {
        uint16_t *h = malloc((size_t)(rows * cols) * sizeof *h);
        for (int64_t i = 0; i < rows * cols; i++) h[i] = util_f32_to_bf16(f[i]);
        free(f);
        b.type = BK_W_BF16;
        w->host = h;
        b.data = h;
        w->cpu = b;
        w->dev = dev_copy(h, (size_t)(rows * cols) * sizeof *h);
        b.data = w->dev;
        w->gpu = b;
        return;
    }
    err_t err = {{0}};
    CHECK(nf4_quantize(f, rows, cols, k == W_NF4_NESTED, &w->q, &err) == 0, "%s", err.msg);
    free(f);
    b.type = BK_W_NF4;
    b.nf4 = w->q;
    w->cpu = b;
    // device: packed | absmax (f32) or absmax_q (u8) | nested_absmax, each
    // 256-byte aligned, as model.c lays them out
    size_t packed = (size_t)(w->q.numel / 2), off_abs = (packed + 255) / 256 * 256;
    size_t abs_bytes = w->q.nested ? (size_t)w->q.nblocks : (size_t)w->q.nblocks * sizeof(float);
    size_t off_n = (off_abs + abs_bytes + 255) / 256 * 256;
    size_t total = off_n + (w->q.nested ? (size_t)w->q.nnested * sizeof(float) : 0);
    uint8_t *d = gpu->alloc(total, &err);
    CHECK(d != NULL, "%s", err.msg);
    if (!d) exit(1);
    w->dev = d;
    gpu->upload(d, w->q.packed, packed);
    b.nf4.owned = NULL;
    b.nf4.packed = d;
    if (w->q.nested) {
        gpu->upload(d + off_abs, w->q.absmax_q, abs_bytes);
        gpu->upload(d + off_n, w->q.nested_absmax, (size_t)w->q.nnested * sizeof(float));
        b.nf4.absmax_q = d + off_abs;
        b.nf4.nested_absmax = (const float *)(d + off_n);
    } else {
        gpu->upload(d + off_abs, w->q.absmax, abs_bytes);
        b.nf4.absmax = (const float *)(d + off_abs);
    }
    w->gpu = b;
}

static void tw_free(tw *w) {
    free(w->host);
    nf4_free(&w->q);
    gpu->free(w->dev);
}

// ---- matmul ----------------------------------------------------------------------------

// Which path cu_matmul takes for these T and threshold (matmul.cu), for the bound.
static int mm_class(wkind k, int T, int tc_min) { return T >= tc_min && k != W_F32 ? CLS_BF16 : CLS_F32; }

static void test_matmul_case(wkind k, int OC, int C, int T, int bias, int tc_min, const char *path) {
    tw w;
    tw_make(&w, k, OC, C);
    float *x = rand_f32((int64_t)T * C, 1.0f), *b = bias ? rand_f32(OC, 0.5f) : NULL;
    float *ref = malloc((size_t)T * OC * sizeof(float));
    cpu->matmul(ref, x, &w.cpu, b, T);
    float *dx = dev_copy(x, (size_t)T * C * sizeof(float)), *db = b ? dev_copy(b, (size_t)OC * sizeof(float)) : NULL;
    float *dout = dev_poisoned((int64_t)T * OC);
    bk_cuda_set_tc_min_tokens(tc_min);
    gpu->matmul(dout, dx, &w.gpu, db, T);
    char what[128];
    snprintf(what, sizeof what, "matmul %s W (%d, %d) T=%d%s [%s]", WNAME[k], OC, C, T, bias ? " +bias" : "", path);
    expect(what, mm_class(k, T, tc_min), dout, ref, (int64_t)T * OC);
    gpu->free(dx);
    gpu->free(db);
    gpu->free(dout);
    free(x);
    free(b);
    free(ref);
    tw_free(&w);
}

static void test_matmul(void) {
    printf("matmul (decode: fused kernel below %d tokens; prefill: tensor cores)\n", CU_TC_MIN_TOKENS);
    // (OC, C): block-aligned; rows of odd length (C % 32 != 0: the plain
    // kernel, NF4 blocks spanning rows); a larger one with several chunks
    // per lane and a partial last row group (OC % 4 != 0).
    const int shapes[][2] = {{96, 256}, {48, 40}, {258, 1024}};
    const int Ts[] = {1, 3, 64, 300};
    for (int k = 0; k < W_KINDS; k++)
        for (int s = 0; s < 3; s++)
            for (int i = 0; i < 4; i++)
                test_matmul_case((wkind)k, shapes[s][0], shapes[s][1], Ts[i], (i + s) % 2, CU_TC_MIN_TOKENS, "default");
    // Each path forced at sizes the default would not give it: the fused
    // kernel over several 16-token passes (T=64, 300), tensor cores for T=1, 3.
    for (int k = 0; k < W_KINDS; k++) {
        test_matmul_case((wkind)k, 258, 1024, 64, 1, INT_MAX, "fused forced");
        test_matmul_case((wkind)k, 96, 256, 300, 0, INT_MAX, "fused forced");
        test_matmul_case((wkind)k, 258, 1024, 1, 1, 1, "tensor cores forced");
        test_matmul_case((wkind)k, 96, 256, 3, 0, 1, "tensor cores forced");
    }
    bk_cuda_set_tc_min_tokens(CU_TC_MIN_TOKENS);
}

// ---- embed, gather, copies -----------------------------------------------------------

static void test_embed(void) {
    printf("embed (rows decoded exactly as the CPU: bit for bit)\n");
    const int V = 300, C = 128, Ts[] = {1, 3, 64, 300};
    for (int k = 0; k < W_KINDS; k++) {
        tw w;
        tw_make(&w, (wkind)k, V, C);
        for (int i = 0; i < 4; i++) {
            int T = Ts[i];
            int32_t *tok = malloc((size_t)T * sizeof *tok);
            for (int t = 0; t < T; t++) tok[t] = (int32_t)(util_rng_next(&rng) % V);
            float *ref = malloc((size_t)T * C * sizeof(float));
            cpu->embed(ref, tok, T, &w.cpu);
            int32_t *dtok = dev_copy(tok, (size_t)T * sizeof *tok);
            float *dx = dev_poisoned((int64_t)T * C);
            gpu->embed(dx, dtok, T, &w.gpu);
            char what[96];
            snprintf(what, sizeof what, "embed %s (%d, %d) T=%d", WNAME[k], V, C, T);
            expect(what, CLS_EXACT, dx, ref, (int64_t)T * C);
            gpu->free(dtok);
            gpu->free(dx);
            free(tok);
            free(ref);
        }
        tw_free(&w);
    }
}

static void test_rows_and_elementwise(void) {
    printf("rmsnorm, rope, kv_store, swiglu, residual, gather_rows\n");
    const int Ts[] = {1, 3, 64, 300};
    for (int i = 0; i < 4; i++) {
        int T = Ts[i];
        char what[96];
        // rmsnorm: hidden rows, and Qwen3's per-head norm (N = T * heads, C = 128), in place too
        const int Cs[] = {1000, 128};
        for (int c = 0; c < 2; c++) {
            int64_t N = c == 0 ? T : (int64_t)T * 6;
            int C = Cs[c];
            float *x = rand_f32(N * C, 2.0f), *w = rand_f32(C, 1.0f), *ref = malloc((size_t)(N * C) * sizeof(float));
            cpu->rmsnorm(ref, x, w, N, C, 1e-6f);
            float *dx = dev_copy(x, (size_t)(N * C) * sizeof(float)), *dw = dev_copy(w, (size_t)C * sizeof(float));
            float *dout = dev_poisoned(N * C);
            gpu->rmsnorm(dout, dx, dw, N, C, 1e-6f);
            snprintf(what, sizeof what, "rmsnorm N=%lld C=%d", (long long)N, C);
            expect(what, CLS_F32, dout, ref, N * C);
            gpu->rmsnorm(dx, dx, dw, N, C, 1e-6f);
            snprintf(what, sizeof what, "rmsnorm N=%lld C=%d in place", (long long)N, C);
            expect(what, CLS_F32, dx, ref, N * C);
            gpu->free(dx), gpu->free(dw), gpu->free(dout);
            free(x), free(w), free(ref);
        }
        // rope: positions up to 30000 (large angles), two head dims and bases
        const int Ds[] = {64, 128};
        for (int dd = 0; dd < 2; dd++) {
            int H = 5, D = Ds[dd];
            float inv[BK_MAX_HEAD_DIM / 2];
            for (int j = 0; j < D / 2; j++) inv[j] = powf(dd ? 500000.0f : 10000.0f, -2.0f * j / D);
            int32_t *pos = malloc((size_t)T * sizeof *pos);
            for (int t = 0; t < T; t++) pos[t] = (int32_t)(util_rng_next(&rng) % 30000);
            float *x = rand_f32((int64_t)T * H * D, 1.0f);
            float *dx = dev_copy(x, (size_t)T * H * D * sizeof(float));
            int32_t *dpos = dev_copy(pos, (size_t)T * sizeof *pos);
            float *dinv = dev_copy(inv, (size_t)(D / 2) * sizeof(float));
            cpu->rope(x, pos, T, H, D, inv);
            gpu->rope(dx, dpos, T, H, D, dinv);
            snprintf(what, sizeof what, "rope T=%d H=%d D=%d", T, H, D);
            expect(what, CLS_F32, dx, x, (int64_t)T * H * D);
            gpu->free(dx), gpu->free(dpos), gpu->free(dinv);
            free(pos), free(x);
        }
        // kv_store: T rows into a shuffled set of slots of a larger cache, f32 and bf16
        for (int dt = BK_DT_F32; dt <= BK_DT_BF16; dt++) {
            int KV = 96, nslots = 2 * T + 7;
            int32_t *slot = malloc((size_t)nslots * sizeof *slot);
            for (int s = 0; s < nslots; s++) slot[s] = s;
            for (int s = nslots - 1; s > 0; s--) {
                int j = (int)(util_rng_next(&rng) % (uint64_t)(s + 1));
                int32_t tmp = slot[s];
                slot[s] = slot[j], slot[j] = tmp;
            }
            // caches of random bytes (a bf16 cache: pairs of them), the same on both sides
            size_t cbytes = (size_t)nslots * KV * (size_t)bk_dtype_bytes((bk_dtype)dt);
            float *kc = rand_f32((int64_t)nslots * KV, 1.0f), *vc = rand_f32((int64_t)nslots * KV, 1.0f);
            float *k = rand_f32((int64_t)T * KV, 1.0f), *v = rand_f32((int64_t)T * KV, 1.0f);
            void *dkc = dev_copy(kc, cbytes), *dvc = dev_copy(vc, cbytes);
            float *dk = dev_copy(k, (size_t)T * KV * sizeof(float)), *dv = dev_copy(v, (size_t)T * KV * sizeof(float));
            int32_t *dslot = dev_copy(slot, (size_t)T * sizeof *slot);
            cpu->kv_store(kc, vc, k, v, slot, T, KV, (bk_dtype)dt);
            gpu->kv_store(dkc, dvc, dk, dv, dslot, T, KV, (bk_dtype)dt);
            snprintf(what, sizeof what, "kv_store %s T=%d KV=%d (k and v caches)", bk_dtype_name((bk_dtype)dt), T, KV);
            expect_bits(what, dkc, kc, cbytes);
            expect_bits(what, dvc, vc, cbytes);
            gpu->free(dkc), gpu->free(dvc), gpu->free(dk), gpu->free(dv), gpu->free(dslot);
            free(slot), free(kc), free(vc), free(k), free(v);
        }
        // swiglu (out of place and in place), residual, gather_rows
        {
            int64_t N = (int64_t)T * 700;
            float *g = rand_f32(N, 6.0f), *u = rand_f32(N, 2.0f), *ref = malloc((size_t)N * sizeof(float));
            cpu->swiglu(ref, g, u, N);
            float *dg = dev_copy(g, (size_t)N * sizeof(float)), *du = dev_copy(u, (size_t)N * sizeof(float));
            float *dout = dev_poisoned(N);
            gpu->swiglu(dout, dg, du, N);
            snprintf(what, sizeof what, "swiglu N=%lld", (long long)N);
            expect(what, CLS_F32, dout, ref, N);
            gpu->swiglu(dg, dg, du, N);
            snprintf(what, sizeof what, "swiglu N=%lld in place", (long long)N);
            expect(what, CLS_F32, dg, ref, N);
            float *dx = dev_copy(g, (size_t)N * sizeof(float));
            cpu->residual(g, u, N);
            gpu->residual(dx, du, N);
            snprintf(what, sizeof what, "residual N=%lld", (long long)N);
            expect(what, CLS_EXACT, dx, g, N);
            gpu->free(dg), gpu->free(du), gpu->free(dout), gpu->free(dx);
            free(g), free(u), free(ref);
        }
        {
            int C = 200, N = T < 5 ? T : T / 3;
            float *x = rand_f32((int64_t)T * C, 1.0f), *ref = malloc((size_t)N * C * sizeof(float));
            int32_t *rows = malloc((size_t)N * sizeof *rows);
            for (int r = 0; r < N; r++) rows[r] = (int32_t)(util_rng_next(&rng) % (uint64_t)T);
            cpu->gather_rows(ref, x, rows, N, C);
            float *dx = dev_copy(x, (size_t)T * C * sizeof(float)), *dout = dev_poisoned((int64_t)N * C);
            int32_t *drows = dev_copy(rows, (size_t)N * sizeof *rows);
            gpu->gather_rows(dout, dx, drows, N, C);
            snprintf(what, sizeof what, "gather_rows %d of T=%d, C=%d", N, T, C);
            expect(what, CLS_EXACT, dout, ref, (int64_t)N * C);
            gpu->free(dx), gpu->free(dout), gpu->free(drows);
            free(x), free(ref), free(rows);
        }
    }
}

// ---- LoRA (SGMV) ----------------------------------------------------------------------

// T tokens cut into segments of heterogeneous ranks with gaps (tokens in
// no segment must stay as they were), one call; A and B of dtype dt on
// both sides (bf16: the same rounded weights).
static void test_lora_case(int T, int C, int OC, bk_dtype dt) {
    const int ranks[] = {8, 16, 4, 64, 1, 32, 12};
    bk_lora_seg hs[16], ds[16];
    void *dmem[32];
    int nseg = 0, nd = 0, t = 0, max_rank = 0;
    float *Ahost[16], *Bhost[16];
    while (t < T && nseg < 7) {
        int gap = (int)(util_rng_next(&rng) % 3);
        int remaining = T - t - gap;
        if (remaining <= 0) break;
        int count = nseg == 6 ? remaining : 1 + (int)(util_rng_next(&rng) % (uint64_t)(T / 3 + 1));
        if (count > remaining) count = remaining;
        int r = ranks[nseg];
        Ahost[nseg] = rand_f32((int64_t)r * C, 0.1f);
        Bhost[nseg] = rand_f32((int64_t)OC * r, 0.1f);
        float scale = 0.5f + (float)nseg;
        if (dt == BK_DT_BF16) { // the host arrays become their bf16 roundings
            uint16_t *a = to_bf16(Ahost[nseg], (int64_t)r * C), *b = to_bf16(Bhost[nseg], (int64_t)OC * r);
            free(Ahost[nseg]), free(Bhost[nseg]);
            Ahost[nseg] = (float *)a, Bhost[nseg] = (float *)b;
        }
        size_t es = (size_t)bk_dtype_bytes(dt);
        hs[nseg] = (bk_lora_seg){t + gap, count, r, scale, Ahost[nseg], Bhost[nseg], dt};
        void *dA = dev_copy(Ahost[nseg], (size_t)r * C * es);
        void *dB = dev_copy(Bhost[nseg], (size_t)OC * r * es);
        dmem[nd++] = dA, dmem[nd++] = dB;
        ds[nseg] = (bk_lora_seg){t + gap, count, r, scale, dA, dB, dt};
        if (r > max_rank) max_rank = r;
        t += gap + count;
        nseg++;
    }
    float *x = rand_f32((int64_t)T * C, 1.0f), *y = rand_f32((int64_t)T * OC, 1.0f);
    float *dx = dev_copy(x, (size_t)T * C * sizeof(float)), *dy = dev_copy(y, (size_t)T * OC * sizeof(float));
    float *v = malloc((size_t)T * max_rank * sizeof(float)), *dv = dev_poisoned((int64_t)T * max_rank);
    cpu->lora(y, x, v, C, OC, hs, nseg);
    gpu->lora(dy, dx, dv, C, OC, ds, nseg);
    char what[128];
    snprintf(what, sizeof what, "lora %s T=%d C=%d OC=%d, %d segments, ranks 8..64", bk_dtype_name(dt), T, C, OC,
             nseg);
    expect(what, CLS_F32, dy, y, (int64_t)T * OC);
    for (int i = 0; i < nseg; i++) free(Ahost[i]), free(Bhost[i]);
    for (int i = 0; i < nd; i++) gpu->free(dmem[i]);
    gpu->free(dx), gpu->free(dy), gpu->free(dv);
    free(x), free(y), free(v);
}

static void test_lora(void) {
    printf("lora (SGMV, heterogeneous ranks, one launch each for shrink and expand)\n");
    const int Ts[] = {1, 3, 64, 300};
    for (int i = 0; i < 4; i++) {
        for (int dt = BK_DT_F32; dt <= BK_DT_BF16; dt++) {
            test_lora_case(Ts[i], 256, 384, (bk_dtype)dt);
            test_lora_case(Ts[i], 100, 70, (bk_dtype)dt); // odd sizes
        }
    }
}

// ---- attention -------------------------------------------------------------------------

typedef struct att_case {
    int H, KVH, D, window, block_size;
} att_case;

// A paged cache with shuffled blocks, random K/V everywhere (of dtype dt,
// the same values on both sides), and a batch of T tokens: prefill runs of
// several sequences plus decode tokens at long positions, in shuffled order.
static void test_attention_case(const att_case *c, int T, bk_dtype dt) {
    const int max_seqs = 6, max_len = 1200;
    int stride = (max_len + c->block_size - 1) / c->block_size, n_blocks = max_seqs * stride;
    int KV = c->KVH * c->D;
    int32_t *table = malloc((size_t)n_blocks * sizeof *table);
    for (int b = 0; b < n_blocks; b++) table[b] = b;
    for (int b = n_blocks - 1; b > 0; b--) {
        int j = (int)(util_rng_next(&rng) % (uint64_t)(b + 1));
        int32_t tmp = table[b];
        table[b] = table[j], table[j] = tmp;
    }
    int64_t nslot = (int64_t)n_blocks * c->block_size;
    void *kc = rand_f32(nslot * KV, 1.0f), *vc = rand_f32(nslot * KV, 1.0f);
    if (dt == BK_DT_BF16) {
        void *kh = to_bf16(kc, nslot * KV), *vh = to_bf16(vc, nslot * KV);
        free(kc), free(vc);
        kc = kh, vc = vh;
    }
    size_t cbytes = (size_t)(nslot * KV) * (size_t)bk_dtype_bytes(dt);
    int32_t *seq = malloc((size_t)T * sizeof *seq), *pos = malloc((size_t)T * sizeof *pos);
    // tokens: sequence 0 decodes at a long position; the rest are prefill
    // runs (consecutive positions from a random start) of sequences 1..5
    int t = 0;
    seq[t] = 0, pos[t] = 1000 + (int)(util_rng_next(&rng) % 150), t++;
    while (t < T) {
        int s = 1 + (int)(util_rng_next(&rng) % (uint64_t)(max_seqs - 1));
        int start = (int)(util_rng_next(&rng) % 600), n = 1 + (int)(util_rng_next(&rng) % 80);
        for (int i = 0; i < n && t < T; i++, t++) seq[t] = s, pos[t] = start + i;
    }
    // (seq, pos) pairs may repeat across runs here: harmless, attention only reads.
    if (T > 3)
        for (int i = T - 1; i > 0; i--) {
            int j = (int)(util_rng_next(&rng) % (uint64_t)(i + 1));
            int32_t a = seq[i], b = pos[i];
            seq[i] = seq[j], pos[i] = pos[j], seq[j] = a, pos[j] = b;
        }
    float *q = rand_f32((int64_t)T * c->H * c->D, 1.0f), *ref = malloc((size_t)T * c->H * c->D * sizeof(float));
    bk_attn_args a = {kc, vc, table, stride, c->block_size, seq, pos, c->H, c->KVH, c->D, c->window,
                      1.0f / sqrtf((float)c->D), dt};
    cpu->attention(ref, q, T, &a);
    bk_attn_args d = a;
    void *dk = dev_copy(kc, cbytes);
    void *dv = dev_copy(vc, cbytes);
    void *dtable = dev_copy(table, (size_t)n_blocks * sizeof *table);
    void *dseq = dev_copy(seq, (size_t)T * sizeof *seq);
    void *dpos = dev_copy(pos, (size_t)T * sizeof *pos);
    d.k_cache = dk, d.v_cache = dv, d.block_table = dtable, d.seq = dseq, d.pos = dpos;
    float *dq = dev_copy(q, (size_t)T * c->H * c->D * sizeof(float)), *dout = dev_poisoned((int64_t)T * c->H * c->D);
    gpu->attention(dout, dq, T, &d);
    char what[128];
    snprintf(what, sizeof what, "attention %s T=%d H=%d KVH=%d D=%d window=%d block=%d", bk_dtype_name(dt), T, c->H,
             c->KVH, c->D, c->window, c->block_size);
    expect(what, CLS_F32, dout, ref, (int64_t)T * c->H * c->D);
    gpu->free(dk), gpu->free(dv), gpu->free(dtable);
    gpu->free(dseq), gpu->free(dpos), gpu->free(dq), gpu->free(dout);
    free(table), free(kc), free(vc), free(seq), free(pos), free(q), free(ref);
}

static void test_attention(void) {
    printf("attention (paged, GQA, sliding window; decode split-K and prefill tiles)\n");
    const att_case cases[] = {
        {8, 2, 64, 0, 16},    // GQA 4
        {14, 2, 128, 0, 16},  // GQA 7 (Qwen2.5-7B's 28 / 4)
        {4, 4, 80, 0, 4},     // MHA, head_dim not a multiple of 32, small blocks
        {32, 2, 128, 37, 16}, // GQA 16, a sliding window
        {40, 2, 64, 0, 16},   // GQA 20: two blocks per KV group
        {8, 1, 256, 300, 16}, // one KV head, head_dim 256 (shared memory above 48 KB), window
    };
    const int Ts[] = {1, 3, 64, 300};
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++)
        for (int i = 0; i < 4; i++)
            for (int dt = BK_DT_F32; dt <= BK_DT_BF16; dt++) test_attention_case(&cases[k], Ts[i], (bk_dtype)dt);
}


// ---- sample ----------------------------------------------------------------------------

// bk_ops.sample: the same rows (random logits with NaN, +inf, -inf, ties;
// penalties, bias, an allowed bitset) through both backends. Greedy rows
// run on the device: the same tokens and alternatives, logprobs within
// 2e-5 (expf and a double block sum against the CPU's polynomial exp and
// f32 chunks). Sampled rows take the CPU path after the device's edits:
// the same tokens.
static void test_sample_case(int V, int N) {
    float *l = rand_f32((int64_t)N * V, 6);
    bk_sample_row rows[8];
    bk_sample_seen seen[8][5];
    bk_logit_bias bias[8][2];
    int words = (V + 31) / 32;
    uint32_t *allowed = malloc((size_t)words * sizeof *allowed);
    for (int w = 0; w < words; w++) allowed[w] = (uint32_t)util_rng_next(&rng) | 0x1u;
    for (int i = 0; i < N; i++) {
        float *r = l + (size_t)i * V;
        r[util_rng_next(&rng) % (uint64_t)V] = NAN;
        r[util_rng_next(&rng) % (uint64_t)V] = -INFINITY;
        if (i % 3 == 2) r[util_rng_next(&rng) % (uint64_t)V] = INFINITY;
        if (i % 4 == 1) r[1] = r[0] = 7; // a tie
        for (int k = 0; k < 5; k++)
            seen[i][k] = (bk_sample_seen){(int32_t)((uint64_t)k * 7919 % (uint64_t)V), (uint32_t)(k % 3), k < 2};
        bias[i][0] = (bk_logit_bias){(int32_t)(util_rng_next(&rng) % (uint64_t)V), 3};
        bias[i][1] = (bk_logit_bias){(int32_t)(util_rng_next(&rng) % (uint64_t)V), -100};
        rows[i] = (bk_sample_row){.temperature = i % 2 ? 0.8f : 0, .top_k = i % 4 == 3 ? 40 : 0,
                                  .top_p = i % 4 == 1 ? 0.9f : 1, .min_p = 0, .repetition_penalty = 1.3f,
                                  .presence_penalty = 0.5f, .frequency_penalty = 0.25f, .seen = seen[i], .n_seen = 5,
                                  .bias = bias[i], .n_bias = 2, .allowed = i % 3 == 0 ? allowed : NULL,
                                  .u = util_rng_uniform(&rng), .top_logprobs = (i * 7) % 21,
                                  .want_logprob = i % 5 != 4};
    }
    float *d = dev_copy(l, (size_t)N * V * sizeof(float));
    bk_sample_out oc[8], og[8];
    cpu->sample(l, N, V, rows, oc);
    gpu->sample(d, N, V, rows, og);
    double worst = 0;
    for (int i = 0; i < N; i++) {
        CHECK(og[i].token == oc[i].token, "V %d row %d: token %d, cpu %d", V, i, og[i].token, oc[i].token);
        CHECK(og[i].n_top == oc[i].n_top, "row %d: n_top %d, cpu %d", i, og[i].n_top, oc[i].n_top);
        CHECK(isnan(og[i].logprob) == isnan(oc[i].logprob), "row %d: logprob %g, cpu %g", i, og[i].logprob,
              oc[i].logprob);
        if (!isnan(oc[i].logprob)) worst = fmax(worst, fabs(og[i].logprob - oc[i].logprob));
        for (int k = 0; k < oc[i].n_top && k < og[i].n_top; k++) {
            CHECK(og[i].top[k].token == oc[i].top[k].token, "row %d alternative %d: token %d, cpu %d", i, k,
                  og[i].top[k].token, oc[i].top[k].token);
            if (isfinite(oc[i].top[k].logprob)) worst = fmax(worst, fabs(og[i].top[k].logprob - oc[i].top[k].logprob));
        }
    }
    printf("sample V %d, %d rows: largest logprob difference %.3g (bound 2e-5)\n", V, N, worst);
    CHECK(worst <= 2e-5, "V %d: logprob difference %g", V, worst);
    gpu->free(d);
    free(allowed);
    free(l);
}

static void test_sample(void) {
    test_sample_case(37, 4);
    test_sample_case(1000, 8);
    test_sample_case(151669, 8);
}

int main(void) {
    err_t err = {{0}};
    gpu = bk_cuda(&err);
    if (!gpu) {
        fprintf(stderr, "FAIL test_cuda_ops: %s (make test-cuda needs a CUDA GPU)\n", err.msg);
        return 1;
    }
    cpu = bk_cpu();
    util_rng_seed(&rng, 20261123);
    test_embed();
    test_rows_and_elementwise();
    test_matmul();
    test_lora();
    test_attention();
    test_sample();
    CHECK(bk_cuda_sync(&err) == 0, "%s", err.msg);
    printf("largest relative error per class (bound):\n");
    for (int c = 0; c < CLS_N; c++) printf("  %-18s %.3g (%.0e)\n", CLS_NAME[c], cls_worst[c], CLS_TOL[c]);
    bk_cpu_shutdown();
    return check_finish("test_cuda_ops");
}
