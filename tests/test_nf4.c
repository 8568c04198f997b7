// nf4: codes, absmax and dequantized values equal the torch oracle's for
// every decoder linear weight of the four fixture models; the nibble order
// and tie rule are bitsandbytes'; double quantization stays within its
// stated bound; matvec equals dequantize-then-dense; the bnb checkpoint
// layout round-trips through our writer and loader, and each kind of broken
// layout is refused with an error naming the tensor.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/nf4.h"
#include "../core/safetensors.h"
#include "../core/util.h"
#include "check.h"

#define ORACLE "tests/fixtures/oracle"

static char tmpdir[] = "/tmp/tessera-nf4-XXXXXX";

static const char *ARCHS[] = {"llama3", "qwen2", "qwen3", "mistral"};

// ---- oracle ------------------------------------------------------------------

// Per-model tallies of the oracle comparison.
typedef struct oracle_tally {
    int64_t weights, code_diff, near_tie, absmax_diff, dequant_diff;
} oracle_tally;

// Compares one weight's codes/absmax/dequant with the oracle's. A code may
// differ only where the oracle's argmin over |x - code| (float32, division
// by absmax) and bnb's midpoint rule (multiplication by 1/absmax) can
// disagree: x within a few float ulps of a midpoint.
static void compare_one(const sft *model, const sft *ora, const char *base, oracle_tally *tl) {
    char name[300];
    err_t err = {0};
    snprintf(name, sizeof name, "%s.weight", base);
    const sft_tensor *w = sft_find(model, name);
    snprintf(name, sizeof name, "%s.codes", base);
    const sft_tensor *codes = sft_find(ora, name);
    snprintf(name, sizeof name, "%s.absmax", base);
    const sft_tensor *am = sft_find(ora, name);
    snprintf(name, sizeof name, "%s.dequant", base);
    const sft_tensor *dq = sft_find(ora, name);
    CHECK(w && codes && am && dq && w->ndim == 2 && codes->numel == w->numel, "%s", base);
    if (!(w && codes && am && dq && w->ndim == 2 && codes->numel == w->numel)) return;
    float *x = malloc(sizeof(float) * (size_t)w->numel), *oam = malloc(sizeof(float) * (size_t)am->numel);
    float *odq = malloc(sizeof(float) * (size_t)w->numel), *mine = malloc(sizeof(float) * (size_t)w->numel);
    CHECK(sft_to_f32(w, x, &err) == 0 && sft_to_f32(am, oam, &err) == 0 && sft_to_f32(dq, odq, &err) == 0, "%s",
          err.msg);
    nf4_tensor t;
    CHECK(nf4_quantize(x, w->shape[0], w->shape[1], 0, &t, &err) == 0, "%s", err.msg);
    CHECK(t.nblocks == am->numel);
    nf4_dequantize(&t, mine);
    const uint8_t *oc = codes->data;
    for (int64_t b = 0; b < t.nblocks; b++) tl->absmax_diff += t.absmax[b] != oam[b];
    for (int64_t i = 0; i < t.numel; i++) {
        int c = nf4_code_at(&t, i);
        tl->weights++;
        if (c != oc[i]) {
            tl->code_diff++;
            float s = x[i] / t.absmax[i / 64];
            float d_ours = fabsf(s - nf4_codebook[c]), d_theirs = fabsf(s - nf4_codebook[oc[i]]);
            int near = abs(c - oc[i]) == 1 && fabsf(d_ours - d_theirs) <= 4 * 1.2e-7f;
            tl->near_tie += near;
            if (!near) fprintf(stderr, "%s[%lld]: code %d, oracle %d, x/absmax %.9g\n", base, (long long)i, c, oc[i], s);
        } else {
            tl->dequant_diff += mine[i] != odq[i];
        }
    }
    nf4_free(&t);
    free(x);
    free(oam);
    free(odq);
    free(mine);
}

static void test_codes_match_oracle(void) {
    oracle_tally all = {0};
    for (size_t a = 0; a < sizeof ARCHS / sizeof *ARCHS; a++) {
        char path[256];
        err_t err = {0};
        snprintf(path, sizeof path, ORACLE "/%s/model/model.safetensors", ARCHS[a]);
        sft *model = sft_open(path, &err);
        CHECK(model, "%s", err.msg);
        snprintf(path, sizeof path, ORACLE "/%s/nf4_weights.safetensors", ARCHS[a]);
        sft *ora = model ? sft_open(path, &err) : NULL;
        CHECK(ora, "%s", err.msg);
        oracle_tally tl = {0};
        int nweights = 0;
        for (int i = 0; ora && i < sft_count(ora); i++) {
            const char *n = sft_at(ora, i)->name;
            size_t len = strlen(n);
            if (len < 7 || strcmp(n + len - 6, ".codes") != 0) continue;
            char base[256];
            snprintf(base, sizeof base, "%.*s", (int)(len - 6), n);
            compare_one(model, ora, base, &tl);
            nweights++;
        }
        // 2 layers x 7 projections.
        CHECK(nweights == 14, "%s: %d NF4 weights in the oracle", ARCHS[a], nweights);
        printf("oracle %s: %d tensors, %lld weights, %lld codes differ (%lld exact-tie ulps), %lld absmax differ, "
               "%lld dequant differ\n",
               ARCHS[a], nweights, (long long)tl.weights, (long long)tl.code_diff, (long long)tl.near_tie,
               (long long)tl.absmax_diff, (long long)tl.dequant_diff);
        all.weights += tl.weights;
        all.code_diff += tl.code_diff;
        all.near_tie += tl.near_tie;
        all.absmax_diff += tl.absmax_diff;
        all.dequant_diff += tl.dequant_diff;
        sft_close(ora);
        sft_close(model);
    }
    CHECK(all.weights > 300000, "%lld weights", (long long)all.weights);
    CHECK(all.code_diff == all.near_tie, "%lld codes differ, only %lld at a float tie", (long long)all.code_diff,
          (long long)all.near_tie);
    CHECK(all.absmax_diff == 0 && all.dequant_diff == 0);
}

// ---- format details ------------------------------------------------------------

static void test_nibble_order_and_ties(void) {
    err_t err = {0};
    float w[128];
    // Block 0: every code in order, four times (absmax 2: w[15] = 2 * 1.0).
    for (int j = 0; j < 64; j++) w[j] = 2.0f * nf4_codebook[j % 16];
    // Block 1: all zero.
    for (int j = 64; j < 128; j++) w[j] = 0.0f;
    nf4_tensor t;
    CHECK(nf4_quantize(w, 2, 64, 0, &t, &err) == 0, "%s", err.msg);
    CHECK(t.packed[0] == 0x01 && t.packed[1] == 0x23 && t.packed[7] == 0xEF, "bytes %02x %02x %02x", t.packed[0],
          t.packed[1], t.packed[7]);
    for (int j = 0; j < 64; j++) CHECK(nf4_code_at(&t, j) == j % 16);
    CHECK(t.absmax[0] == 2.0f && t.absmax[1] == 0.0f);
    for (int j = 64; j < 128; j++) CHECK(nf4_code_at(&t, j) == 7, "zero block encodes as the 0.0 code");
    float back[128];
    nf4_dequantize(&t, back);
    CHECK(memcmp(back, w, sizeof w) == 0, "codebook values round-trip exactly");
    nf4_free(&t);

    // A value exactly on a midpoint takes the lower code; one ulp above, the upper.
    for (int i = 0; i < 15; i++) {
        float mid = (float)(((double)nf4_codebook[i] + nf4_codebook[i + 1]) / 2);
        float v[64] = {1.0f, mid, nextafterf(mid, 2.0f), nextafterf(mid, -2.0f)};
        CHECK(nf4_quantize(v, 1, 64, 0, &t, &err) == 0);
        CHECK(nf4_code_at(&t, 1) == i && nf4_code_at(&t, 2) == i + 1 && nf4_code_at(&t, 3) == i, "midpoint %d", i);
        nf4_free(&t);
    }
}

static void test_bad_input_refused(void) {
    err_t err = {0};
    float w[64] = {0};
    nf4_tensor t;
    CHECK(nf4_quantize(w, 3, 5, 0, &t, &err) != 0 && strstr(err.msg, "15 values") && strstr(err.msg, "multiple of"),
          "%s", err.msg);
    w[10] = NAN;
    CHECK(nf4_quantize(w, 2, 32, 0, &t, &err) != 0 && strstr(err.msg, "row 0, col 10") && strstr(err.msg, "finite"),
          "%s", err.msg);
    CHECK(nf4_quantize(w, 0, 64, 0, &t, &err) != 0, "empty shape");
}

static void test_dynamic_map(void) {
    float map[256];
    nf4_dynamic_map(map);
    for (int i = 1; i < 256; i++) CHECK(map[i] > map[i - 1], "map sorted strictly at %d", i);
    CHECK(map[127] == 0.0f && map[255] == 1.0f);
    for (int i = 0; i < 127; i++) CHECK(map[i] == -map[254 - i], "symmetric at %d", i);
    // Smallest magnitude: 1e-6 * (0.1 + 1) / 2; largest below 1: (0.9859375 + 1) / 2.
    CHECK(fabsf(map[128] - 5.5e-7f) < 1e-12f && fabsf(map[254] - 0.99296875f) < 1e-6f, "%g %g", map[128], map[254]);
}

// ---- double quantization -------------------------------------------------------

// rows x cols normal weights whose scale varies by row (so absmax spreads).
static float *make_weights(int64_t rows, int64_t cols, uint64_t seed) {
    util_rng rng;
    util_rng_seed(&rng, seed);
    float *w = malloc(sizeof(float) * (size_t)(rows * cols));
    for (int64_t r = 0; r < rows; r++) {
        double scale = 0.01 + 0.05 * util_rng_uniform(&rng);
        for (int64_t c = 0; c < cols; c++) w[r * cols + c] = (float)(scale * util_rng_normal(&rng));
    }
    return w;
}

// The bound: a decoded absmax is off by at most half the widest gap of the
// dynamic map within [-1, 1] (0.0140625 / 2, between neighbours at the top
// of the 10^0 decade) times its nested absmax, plus the float rounding of
// the two products (a few ulps of absmax).
static void test_double_quant_bound(void) {
    err_t err = {0};
    int64_t rows = 300, cols = 256;  // 1200 blocks: 5 nested blocks, the last one partial
    float *w = make_weights(rows, cols, 7);
    nf4_tensor t1, t2;
    CHECK(nf4_quantize(w, rows, cols, 0, &t1, &err) == 0, "%s", err.msg);
    CHECK(nf4_quantize(w, rows, cols, 1, &t2, &err) == 0, "%s", err.msg);
    CHECK(t2.nested && t2.nnested == 5 && t2.absmax == NULL && t2.absmax_q && t2.nested_absmax);
    double gap = 0;
    for (int i = 1; i < 256; i++) gap = fmax(gap, (double)t2.dyn[i] - t2.dyn[i - 1]);
    CHECK(fabs(gap - 0.0140625) < 1e-6, "widest gap %g", gap);
    double mean = 0;
    for (int64_t b = 0; b < t1.nblocks; b++) mean += t1.absmax[b];
    mean /= (double)t1.nblocks;
    CHECK(fabs(t2.offset - mean) <= 1e-7 * mean, "offset %g mean %g", t2.offset, mean);
    double worst = 0;  // error / bound
    for (int64_t b = 0; b < t1.nblocks; b++) {
        double bound = gap / 2 * t2.nested_absmax[b / 256] + 4 * 1.2e-7 * t1.absmax[b];
        worst = fmax(worst, fabs((double)nf4_absmax(&t2, b) - t1.absmax[b]) / bound);
    }
    CHECK(worst <= 1.0, "absmax error %.3f x the bound", worst);
    printf("double quant: worst absmax error %.3f of the bound (gap/2 x nested_absmax)\n", worst);
    // Codes are the same (the packing does not depend on the absmax storage)
    // and each dequantized weight moves by at most |code| x the absmax error.
    CHECK(memcmp(t1.packed, t2.packed, (size_t)t1.numel / 2) == 0);
    float *d1 = malloc(sizeof(float) * (size_t)t1.numel), *d2 = malloc(sizeof(float) * (size_t)t1.numel);
    nf4_dequantize(&t1, d1);
    nf4_dequantize(&t2, d2);
    int bad = 0;
    for (int64_t i = 0; i < t1.numel; i++) {
        double bound = gap / 2 * t2.nested_absmax[i / 64 / 256] + 1e-6 * t1.absmax[i / 64];
        bad += fabs((double)d1[i] - d2[i]) > bound;
    }
    CHECK(bad == 0, "%d weights moved beyond the bound", bad);
    free(d1);
    free(d2);
    nf4_free(&t1);
    nf4_free(&t2);
    free(w);
}

// ---- matvec and rows ------------------------------------------------------------

static void check_matvec(int64_t rows, int64_t cols, int nested) {
    err_t err = {0};
    float *w = make_weights(rows, cols, (uint64_t)(rows * 1000 + cols));
    nf4_tensor t;
    CHECK(nf4_quantize(w, rows, cols, nested, &t, &err) == 0, "%s", err.msg);
    float *dense = malloc(sizeof(float) * (size_t)(rows * cols)), *row = malloc(sizeof(float) * (size_t)cols);
    float *x = malloc(sizeof(float) * (size_t)cols), *y = malloc(sizeof(float) * (size_t)rows);
    nf4_dequantize(&t, dense);
    for (int64_t c = 0; c < cols; c++) x[c] = (float)sin((double)c * 0.37) + 0.1f;
    nf4_matvec(&t, x, y);
    int row_bad = 0;
    float maxdiff = 0;
    for (int64_t r = 0; r < rows; r++) {
        nf4_dequantize_row(&t, r, row);
        row_bad += memcmp(row, dense + r * cols, sizeof(float) * (size_t)cols) != 0;
        float acc = 0;
        for (int64_t c = 0; c < cols; c++) acc += dense[r * cols + c] * x[c];
        maxdiff = fmaxf(maxdiff, fabsf(acc - y[r]));
    }
    CHECK(row_bad == 0, "%lld x %lld: %d rows differ from the full dequantization", (long long)rows, (long long)cols,
          row_bad);
    CHECK(maxdiff == 0.0f, "%lld x %lld nested %d: matvec off by %g", (long long)rows, (long long)cols, nested, maxdiff);
    free(w);
    free(dense);
    free(row);
    free(x);
    free(y);
    nf4_free(&t);
}

static void test_matvec_equals_dense(void) {
    check_matvec(64, 176, 0);   // down_proj shape: blocks straddle rows
    check_matvec(176, 64, 1);
    check_matvec(64, 3, 0);     // odd rows: rows start mid-byte
    check_matvec(320, 320, 1);  // 1600 blocks, partial nested block
}

// ---- bitsandbytes layout ---------------------------------------------------------

static char *tmp_path(const char *name) { return util_path_join(tmpdir, name); }

static int same_tensor(const nf4_tensor *a, const nf4_tensor *b) {
    if (a->rows != b->rows || a->cols != b->cols || a->nested != b->nested || a->dtype != b->dtype) return 0;
    if (memcmp(a->packed, b->packed, (size_t)a->numel / 2) || memcmp(a->code, b->code, sizeof a->code)) return 0;
    if (!a->nested) return memcmp(a->absmax, b->absmax, sizeof(float) * (size_t)a->nblocks) == 0;
    return a->offset == b->offset && memcmp(a->dyn, b->dyn, sizeof a->dyn) == 0 &&
           memcmp(a->absmax_q, b->absmax_q, (size_t)a->nblocks) == 0 &&
           memcmp(a->nested_absmax, b->nested_absmax, sizeof(float) * (size_t)a->nnested) == 0;
}

static void test_bnb_round_trip(void) {
    err_t err = {0};
    for (int nested = 0; nested <= 1; nested++) {
        float *w = make_weights(176, 64, 11);
        nf4_tensor t, back;
        CHECK(nf4_quantize(w, 176, 64, nested, &t, &err) == 0, "%s", err.msg);
        sft_writer *wr = sft_writer_new();
        nf4_bnb_meta meta;
        const char *wn = "model.layers.0.mlp.gate_proj.weight";
        CHECK(nf4_bnb_add(wr, wn, &t, &meta, &err) == 0, "%s", err.msg);
        char *path = tmp_path(nested ? "nested.safetensors" : "plain.safetensors");
        CHECK(sft_writer_write(wr, path, &err) == 0, "%s", err.msg);
        sft_writer_free(wr);
        sft *s = sft_open(path, &err);
        CHECK(s, "%s", err.msg);
        if (!s) {
            free(path);
            free(w);
            nf4_free(&t);
            continue;
        }
        CHECK(nf4_is_bnb(s, wn) && !nf4_is_bnb(s, "model.layers.0.mlp.up_proj.weight"));
        CHECK(sft_count(s) == (nested ? 6 : 4), "%d tensors", sft_count(s));
        const sft_tensor *pk = sft_find(s, wn);
        CHECK(pk && pk->dtype == SFT_U8 && pk->ndim == 2 && pk->shape[0] == 176 * 32 && pk->shape[1] == 1);
        const sft_tensor *qs = sft_find(s, "model.layers.0.mlp.gate_proj.weight.quant_state.bitsandbytes__nf4");
        CHECK(qs && qs->dtype == SFT_U8 && qs->ndim == 1);
        if (qs && !nested) {
            const char *want = "{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"bfloat16\", \"shape\": [176, 64]}";
            CHECK(qs->nbytes == strlen(want) && memcmp(qs->data, want, qs->nbytes) == 0, "%.*s", (int)qs->nbytes,
                  (const char *)qs->data);
        }
        if (qs && nested) {
            // Python's repr of the offset: shortest digits that read back exactly.
            const char *p = memmem(qs->data, qs->nbytes, "\"nested_offset\": ", 17);
            CHECK(p && memmem(qs->data, qs->nbytes, "\"nested_blocksize\": 256, \"nested_dtype\": \"float32\"", 50));
            if (p) CHECK((float)strtod(p + 17, NULL) == t.offset, "offset %.9g in %.*s", t.offset, (int)qs->nbytes,
                         (const char *)qs->data);
        }
        CHECK(nf4_from_bnb(s, wn, &back, &err) == 0, "%s", err.msg);
        CHECK(same_tensor(&t, &back), "nested %d: loaded tensor differs", nested);
        CHECK(back.packed == pk->data, "packed bytes are borrowed, not copied");
        nf4_free(&back);
        sft_close(s);
        unlink(path);
        free(path);
        free(w);
        nf4_free(&t);
    }
}

// One tensor of a hand-built bnb layout, so that tests can break each part.
typedef struct part {
    const char *suffix;
    sft_dtype dt;
    int ndim;
    int64_t shape[2];
    const void *data;
} part;

enum { P_WEIGHT, P_QMAP, P_QS, P_ABSMAX, P_NABSMAX, P_NQMAP, NPARTS };

static void default_parts(const nf4_tensor *t, const char *json, part *p) {
    p[P_WEIGHT] = (part){"", SFT_U8, 2, {t->numel / 2, 1}, t->packed};
    p[P_QMAP] = (part){".quant_map", SFT_F32, 1, {16}, t->code};
    p[P_QS] = (part){".quant_state.bitsandbytes__nf4", SFT_U8, 1, {(int64_t)strlen(json)}, json};
    p[P_ABSMAX] = (part){".absmax", SFT_U8, 1, {t->nblocks}, t->absmax_q};
    p[P_NABSMAX] = (part){".nested_absmax", SFT_F32, 1, {t->nnested}, t->nested_absmax};
    p[P_NQMAP] = (part){".nested_quant_map", SFT_F32, 1, {256}, t->dyn};
}

// Writes the parts (suffix NULL = left out), loads "W.weight" and returns
// nf4_from_bnb's result with its message in err.
static int load_parts(const part *p, int n, err_t *err) {
    sft_writer *wr = sft_writer_new();
    char name[128];
    for (int i = 0; i < n; i++) {
        if (!p[i].suffix) continue;
        snprintf(name, sizeof name, "W.weight%s", p[i].suffix);
        CHECK(sft_writer_add(wr, name, p[i].dt, p[i].ndim, p[i].shape, p[i].data, err) == 0, "%s", err->msg);
    }
    char *path = tmp_path("broken.safetensors");
    CHECK(sft_writer_write(wr, path, err) == 0, "%s", err->msg);
    sft_writer_free(wr);
    sft *s = sft_open(path, err);
    CHECK(s, "%s", err->msg);
    nf4_tensor t;
    int rc = s ? nf4_from_bnb(s, "W.weight", &t, err) : -1;
    if (rc == 0) nf4_free(&t);
    sft_close(s);
    unlink(path);
    free(path);
    return rc;
}

#define JSON_NESTED(qt, bs, shape, extra)                                                                             \
    "{\"quant_type\": \"" qt "\", \"blocksize\": " bs ", \"dtype\": \"bfloat16\", \"shape\": " shape                \
    ", \"nested_blocksize\": 256, \"nested_dtype\": \"float32\", \"nested_offset\": 0.01" extra "}"

// Each case: which part to change, how, and words the error must contain.
static void expect_refused(const nf4_tensor *t, const char *json, int which, int how, const char *w1, const char *w2) {
    part p[NPARTS];
    default_parts(t, json, p);
    static const float nan_map[256] = {NAN};
    switch (how) {
    case 0: p[which].suffix = NULL; break;             // missing
    case 1: p[which].shape[0] -= 1; break;             // one short
    case 2: p[which].dt = SFT_I8; break;               // wrong dtype
    case 3: p[which].data = nan_map; break;            // non-finite
    case 4: p[which].shape[1] = 2; p[which].shape[0] /= 2; break;  // [n/2, 2]
    default: break;                                    // the JSON alone is broken
    }
    err_t err = {0};
    int rc = load_parts(p, NPARTS, &err);
    CHECK(rc != 0 && strstr(err.msg, w1) && (!w2 || strstr(err.msg, w2)), "case %d/%d: rc %d: %s", which, how, rc,
          err.msg);
}

static void test_bnb_corrupt_refused(void) {
    err_t err = {0};
    float *w = make_weights(64, 64, 3);  // 64 blocks, one nested block
    nf4_tensor t;
    CHECK(nf4_quantize(w, 64, 64, 1, &t, &err) == 0, "%s", err.msg);
    const char *good = JSON_NESTED("nf4", "64", "[64, 64]", "");
    part p[NPARTS];
    default_parts(&t, good, p);
    CHECK(load_parts(p, NPARTS, &err) == 0, "the unbroken layout loads: %s", err.msg);

    expect_refused(&t, good, P_ABSMAX, 0, "'W.weight.absmax': missing", NULL);
    expect_refused(&t, good, P_NABSMAX, 0, "'W.weight.nested_absmax': missing", NULL);
    expect_refused(&t, good, P_NQMAP, 0, "'W.weight.nested_quant_map': missing", NULL);
    expect_refused(&t, good, P_QMAP, 0, "'W.weight.quant_map': missing", NULL);
    expect_refused(&t, good, P_WEIGHT, 0, "'W.weight': missing", NULL);
    expect_refused(&t, good, P_QS, 0, "W.weight.quant_state.bitsandbytes__nf4", "missing");
    expect_refused(&t, good, P_ABSMAX, 1, "'W.weight.absmax': shape [63]", "expected [64]");
    expect_refused(&t, good, P_NQMAP, 1, "'W.weight.nested_quant_map': shape [255]", "expected [256]");
    expect_refused(&t, good, P_QMAP, 1, "'W.weight.quant_map'", "expected [16]");
    expect_refused(&t, good, P_WEIGHT, 1, "'W.weight': shape [2047, 1]", "expected [2048, 1]");
    expect_refused(&t, good, P_WEIGHT, 4, "'W.weight': shape [1024, 2]", NULL);
    expect_refused(&t, good, P_ABSMAX, 2, "'W.weight.absmax': dtype I8", "expected U8");
    expect_refused(&t, good, P_NABSMAX, 3, "'W.weight.nested_absmax'", "not finite");
    expect_refused(&t, good, P_QMAP, 3, "'W.weight.quant_map'", "not finite");
    // The JSON: syntax, type, block sizes, shape, nested fields.
    expect_refused(&t, "{\"quant_type\": \"nf4\", \"blocksize\": 64,", P_QS, -1, "quant_state", "not a JSON object");
    expect_refused(&t, "[1, 2]", P_QS, -1, "W.weight.quant_state.bitsandbytes__nf4", "not a JSON object");
    expect_refused(&t, JSON_NESTED("fp4", "64", "[64, 64]", ""), P_QS, -1, "quant_type 'fp4'", "only nf4");
    expect_refused(&t, JSON_NESTED("nf4", "128", "[64, 64]", ""), P_QS, -1, "blocksize is 128", "expected 64");
    expect_refused(&t, JSON_NESTED("nf4", "64", "[64, 32]", ""), P_QS, -1, "'W.weight': shape [2048, 1]",
                   "expected [1024, 1]");
    expect_refused(&t, JSON_NESTED("nf4", "64", "[3, 5]", ""), P_QS, -1, "W.weight.quant_state", "multiple of");
    expect_refused(&t, JSON_NESTED("nf4", "64", "[4096]", ""), P_QS, -1, "shape must be [rows, cols]", NULL);
    expect_refused(&t, "{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"bfloat16\", \"shape\": [64, 64]}",
                   P_QS, -1, "'W.weight.nested_absmax' present", "no nested_offset");
    expect_refused(&t, "{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"int8\", \"shape\": [64, 64]}", P_QS,
                   -1, "dtype is 'int8'", NULL);
    expect_refused(&t,
                   "{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"bfloat16\", \"shape\": [64, 64], "
                   "\"nested_blocksize\": 128, \"nested_offset\": 0.01}",
                   P_QS, -1, "nested_blocksize is 128", "expected 256");

    // A quant_state for fp4 instead of nf4: named as unsupported.
    default_parts(&t, JSON_NESTED("fp4", "64", "[64, 64]", ""), p);
    p[P_QS].suffix = ".quant_state.bitsandbytes__fp4";
    CHECK(load_parts(p, NPARTS, &err) != 0 && strstr(err.msg, "bitsandbytes__fp4") && strstr(err.msg, "fp4 is not"),
          "%s", err.msg);

    // The stored quant_map is used, not ours: doubled values decode doubled.
    nf4_tensor plain;
    CHECK(nf4_quantize(w, 64, 64, 0, &plain, &err) == 0);
    float doubled[16];
    for (int i = 0; i < 16; i++) doubled[i] = 2 * nf4_codebook[i];
    const char *pj = "{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"float16\", \"shape\": [64, 64]}";
    part q[4] = {{"", SFT_U8, 2, {2048, 1}, plain.packed},
                 {".quant_map", SFT_F32, 1, {16}, doubled},
                 {".quant_state.bitsandbytes__nf4", SFT_U8, 1, {(int64_t)strlen(pj)}, pj},
                 {".absmax", SFT_F32, 1, {64}, plain.absmax}};
    sft_writer *wr = sft_writer_new();
    for (int i = 0; i < 4; i++) {
        char name[128];
        snprintf(name, sizeof name, "W.weight%s", q[i].suffix);
        sft_writer_add(wr, name, q[i].dt, q[i].ndim, q[i].shape, q[i].data, &err);
    }
    char *path = tmp_path("doubled.safetensors");
    CHECK(sft_writer_write(wr, path, &err) == 0, "%s", err.msg);
    sft_writer_free(wr);
    sft *s = sft_open(path, &err);
    nf4_tensor t2;
    CHECK(s && nf4_from_bnb(s, "W.weight", &t2, &err) == 0, "%s", err.msg);
    if (s && t2.owned) {
        CHECK(t2.dtype == SFT_F16 && !t2.nested);
        float a[64], b[64];
        nf4_dequantize_row(&plain, 5, a);
        nf4_dequantize_row(&t2, 5, b);
        int bad = 0;
        for (int i = 0; i < 64; i++) bad += b[i] != 2 * a[i];
        CHECK(bad == 0, "stored quant_map used");
        nf4_free(&t2);
    }
    sft_close(s);
    unlink(path);
    free(path);
    nf4_free(&plain);
    nf4_free(&t);
    free(w);
}

int main(void) {
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_codes_match_oracle();
    test_nibble_order_and_ties();
    test_bad_input_refused();
    test_dynamic_map();
    test_double_quant_bound();
    test_matvec_equals_dense();
    test_bnb_round_trip();
    test_bnb_corrupt_refused();
    rmdir(tmpdir);
    return check_finish("test_nf4");
}
