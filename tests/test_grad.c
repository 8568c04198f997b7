// test_grad: the training backward pass (train/lora_train.c) against
// finite differences and against the transformers + peft oracle.
//
// 1. Oracle: for each of the 4 tiny models x 3 PEFT adapters, the batch of
//    <adapter>_grads.safetensors (2 sequences of 11 tokens, the first 4
//    labels masked) on dense weights: our loss vs the oracle's, and every
//    LoRA A and B gradient: max |ours - ref| / max |ref| < 1e-4 per tensor.
// 2. Finite differences: each model with a random adapter on all 7
//    projections (rank 4, B non-zero so every A has a gradient), a packed
//    batch of two sequences of different lengths; for a sample of A and B
//    entries of every module, the central difference (L(p+h) - L(p-h)) / 2h
//    of the f32 loss vs the analytic gradient. Stated tolerance:
//    |fd - analytic| <= FD_REL * max|analytic gradient of the module| + FD_ABS
//    (f32 loss noise / 2h plus the O(h^2) truncation). Once with LoRA
//    dropout 0.1 (the masks are a pure function of the key, so the loss is
//    still a deterministic function of the parameters) and with recompute.
// 3. Recompute and thread count change no bit of the gradients.
// 4. matmul_backward on F32, BF16 and NF4 weights, and cross_entropy,
//    against double references.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapter.h"
#include "backend.h"
#include "check.h"
#include "../train/lora_train.h"
#include "model.h"
#include "nf4.h"
#include "safetensors.h"
#include "util.h"

#define ORACLE "tests/fixtures/oracle"
#define TOL_ORACLE 1e-4
#define FD_H 1e-2
#define FD_REL 5e-3
#define FD_ABS 1e-5
#define FD_SAMPLES 3 // entries of A and of B per module

static const char *ARCHS[] = {"llama3", "qwen2", "qwen3", "mistral"};
static const char *ADAPTERS[] = {"a_qv_r8", "b_all_r16", "c_rslora_r4"};

static model *load_model(const char *arch) {
    char dir[256];
    snprintf(dir, sizeof dir, "%s/%s/model", ORACLE, arch);
    model_opts mo = model_opts_default();
    mo.quant = MODEL_LOAD_NONE;
    mo.max_tokens = 32;
    err_t err = {{0}};
    model *m = model_load(dir, &mo, &err);
    CHECK(m != NULL, "%s", err.msg);
    return m;
}

// ---- 1. oracle -------------------------------------------------------------------

typedef struct batch {
    int32_t ids[2][11];
    uint8_t mask[2][11];
    lt_seq seqs[2];
} batch;

static int load_batch(const sft *s, batch *b, float *loss) {
    const sft_tensor *ids = sft_find(s, "input_ids"), *lab = sft_find(s, "labels"), *l = sft_find(s, "loss");
    if (!ids || !lab || !l || ids->numel != 22 || lab->numel != 22 || ids->dtype != SFT_I64 || lab->dtype != SFT_I64)
        return -1;
    for (int i = 0; i < 22; i++) {
        int64_t v, w;
        memcpy(&v, (const char *)ids->data + 8 * i, 8);
        memcpy(&w, (const char *)lab->data + 8 * i, 8);
        b->ids[i / 11][i % 11] = (int32_t)v;
        b->mask[i / 11][i % 11] = w != -100;
    }
    for (int k = 0; k < 2; k++) b->seqs[k] = (lt_seq){b->ids[k], b->mask[k], 11};
    err_t err;
    return sft_to_f32(l, loss, &err);
}

static double max_abs(const float *x, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++)
        if (fabs((double)x[i]) > m) m = fabs((double)x[i]);
    return m;
}

// max |a - b| / max |b|; NaN fails.
static double rel_diff(const float *a, const float *b, int64_t n) {
    double d = 0;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - (double)b[i]);
        if (!(e <= d)) d = e;
    }
    double s = max_abs(b, n);
    return d / (s > 0 ? s : 1);
}

static void oracle_case(model *m, const char *arch, const char *name) {
    char path[256];
    err_t err = {{0}};
    snprintf(path, sizeof path, "%s/%s/adapters/%s", ORACLE, arch, name);
    lora_adapter *a = lora_load(path, model_get_config(m), &err);
    CHECK(a != NULL, "%s", err.msg);
    snprintf(path, sizeof path, "%s/%s/%s_grads.safetensors", ORACLE, arch, name);
    sft *s = sft_open(path, &err);
    CHECK(s != NULL, "%s", err.msg);
    batch b;
    float ref_loss = 0;
    if (!a || !s || load_batch(s, &b, &ref_loss) < 0) {
        CHECK(0, "%s: bad oracle batch", path);
        lora_free(a);
        sft_close(s);
        return;
    }
    lt_opts o = {.max_tokens = 22};
    lt_model *t = lt_from_adapter(m, a, &o, &err);
    CHECK(t != NULL, "%s", err.msg);
    if (!t) {
        lora_free(a);
        sft_close(s);
        return;
    }
    int64_t count = lt_count_targets(b.seqs, 2);
    double sum = 0;
    lt_zero_grads(t);
    CHECK(lt_forward_backward(t, b.seqs, 2, 1.0f / (float)count, 0, &sum, &err) == 0, "%s", err.msg);
    double loss = sum / (double)count;
    double worst = 0;
    int n_grads = 0, n_file = 0;
    for (int i = 0; i < sft_count(s); i++) {
        const char *nm = sft_at(s, i)->name;
        size_t len = strlen(nm);
        n_file += len > 5 && strcmp(nm + len - 5, ".grad") == 0;
    }
    const float *g = lt_grads(t);
    for (int l = 0; l < model_get_config(m)->num_hidden_layers; l++)
        for (int k = 0; k < MODEL_LIN_COUNT; k++) {
            const lt_module *md = lt_module_at(t, l, (model_linear)k);
            if (!md->rank) continue;
            for (int is_b = 0; is_b < 2; is_b++) {
                char key[200];
                lt_peft_key(l, (model_linear)k, is_b, key, sizeof key - 8);
                strcat(key, ".grad");
                const sft_tensor *rt = sft_find(s, key);
                int64_t n = (int64_t)md->rank * (is_b ? md->out : md->in);
                CHECK(rt && rt->numel == n && rt->dtype == SFT_F32, "%s: %s missing or misshapen", path, key);
                if (!rt || rt->numel != n || rt->dtype != SFT_F32) continue;
                float *ref = malloc((size_t)n * sizeof *ref);
                sft_to_f32(rt, ref, &err);
                double d = rel_diff(g + (is_b ? md->b_off : md->a_off), ref, n);
                CHECK(d < TOL_ORACLE, "%s %s: gradient relative difference %.3g", arch, key, d);
                if (!(d <= worst)) worst = d;
                n_grads++;
                free(ref);
            }
        }
    CHECK(n_grads == n_file, "%s: compared %d gradients, the file has %d", path, n_grads, n_file);
    // The same with recompute: the same bits.
    lt_opts ro = {.max_tokens = 22, .recompute = 1};
    lt_model *tr = lt_from_adapter(m, a, &ro, &err);
    double sum2 = 0;
    CHECK(tr != NULL, "%s", err.msg);
    if (tr) {
        lt_zero_grads(tr);
        CHECK(lt_forward_backward(tr, b.seqs, 2, 1.0f / (float)count, 0, &sum2, &err) == 0, "%s", err.msg);
        CHECK(sum2 == sum && memcmp(lt_grads(tr), g, (size_t)lt_n_params(t) * sizeof(float)) == 0,
              "%s %s: recompute changed the gradients", arch, name);
        lt_free(tr);
    }
    double dl = fabs(loss - ref_loss);
    CHECK(dl < 1e-5 * fabs(ref_loss) + 1e-6, "%s %s: loss %.7f vs oracle %.7f", arch, name, loss, ref_loss);
    printf("oracle %-7s %-11s loss %.7f (oracle %.7f, |diff| %.2e)  %2d grads, worst max|diff|/max|ref| %.2e\n",
           arch, name, loss, ref_loss, dl, n_grads, worst);
    lt_free(t);
    lora_free(a);
    sft_close(s);
}

// ---- 2. finite differences -----------------------------------------------------------

// Two sequences of different lengths (packing), random ids, targets from
// position 3 on.
#define FD_LEN0 9
#define FD_LEN1 14
typedef struct fd_batch {
    int32_t ids[FD_LEN0 + FD_LEN1];
    uint8_t mask[FD_LEN0 + FD_LEN1];
    lt_seq seqs[2];
    int64_t count;
} fd_batch;

static void make_fd_batch(fd_batch *b, util_rng *rng, int vocab) {
    for (int i = 0; i < FD_LEN0 + FD_LEN1; i++) {
        b->ids[i] = (int32_t)(util_rng_next(rng) % (uint64_t)vocab);
        int local = i < FD_LEN0 ? i : i - FD_LEN0;
        b->mask[i] = local >= 3;
    }
    b->seqs[0] = (lt_seq){b->ids, b->mask, FD_LEN0};
    b->seqs[1] = (lt_seq){b->ids + FD_LEN0, b->mask + FD_LEN0, FD_LEN1};
    b->count = lt_count_targets(b->seqs, 2);
}

static double loss_of(lt_model *t, fd_batch *b, uint64_t key) {
    // lt_forward_backward with the same key gives the same dropout masks;
    // its gradients are discarded here.
    err_t err;
    double sum = 0;
    lt_zero_grads(t);
    if (lt_forward_backward(t, b->seqs, 2, 0.0f, key, &sum, &err) < 0) return NAN;
    return sum / (double)b->count;
}

static lt_model *random_lora(model *m, float dropout, int recompute, uint64_t seed) {
    lt_opts o = {.rank = 4, .alpha = 8, .targets = (1u << MODEL_LIN_COUNT) - 1, .dropout = dropout,
                 .max_tokens = FD_LEN0 + FD_LEN1, .recompute = recompute};
    err_t err = {{0}};
    lt_model *t = lt_new(m, &o, &err);
    CHECK(t != NULL, "%s", err.msg);
    if (!t) return NULL;
    lt_init_peft(t, seed);
    util_rng rng;
    util_rng_seed(&rng, seed + 1);
    const model_config *c = model_get_config(m);
    float *p = lt_params(t);
    for (int l = 0; l < c->num_hidden_layers; l++)
        for (int k = 0; k < MODEL_LIN_COUNT; k++) {
            const lt_module *md = lt_module_at(t, l, (model_linear)k);
            for (int64_t i = 0; i < (int64_t)md->out * md->rank; i++)
                p[md->b_off + i] = (float)(0.1 * util_rng_normal(&rng));
        }
    return t;
}

static void fd_case(model *m, const char *arch, float dropout, int recompute) {
    const model_config *c = model_get_config(m);
    lt_model *t = random_lora(m, dropout, recompute, 7);
    if (!t) return;
    util_rng rng;
    util_rng_seed(&rng, 99);
    fd_batch b;
    make_fd_batch(&b, &rng, c->vocab_size);
    const uint64_t key = 12345;
    err_t err = {{0}};
    double sum;
    int64_t n = lt_n_params(t);
    float *grad = malloc((size_t)n * sizeof *grad);
    lt_zero_grads(t);
    CHECK(lt_forward_backward(t, b.seqs, 2, 1.0f / (float)b.count, key, &sum, &err) == 0, "%s", err.msg);
    memcpy(grad, lt_grads(t), (size_t)n * sizeof *grad);
    float *p = lt_params(t);
    double worst = 0, worst_rel = 0;
    int checked = 0, bad = 0;
    for (int l = 0; l < c->num_hidden_layers; l++)
        for (int k = 0; k < MODEL_LIN_COUNT; k++) {
            const lt_module *md = lt_module_at(t, l, (model_linear)k);
            for (int is_b = 0; is_b < 2; is_b++) {
                int64_t off = is_b ? md->b_off : md->a_off, cnt = (int64_t)md->rank * (is_b ? md->out : md->in);
                double gmax = max_abs(grad + off, cnt);
                for (int s = 0; s < FD_SAMPLES; s++) {
                    int64_t i = off + (int64_t)(util_rng_next(&rng) % (uint64_t)cnt);
                    float saved = p[i];
                    p[i] = saved + (float)FD_H;
                    double lp = loss_of(t, &b, key);
                    p[i] = saved - (float)FD_H;
                    double lm = loss_of(t, &b, key);
                    p[i] = saved;
                    double h2 = (double)(saved + (float)FD_H) - (double)(saved - (float)FD_H);
                    double fd = (lp - lm) / h2, an = grad[i];
                    double e = fabs(fd - an), tol = FD_REL * gmax + FD_ABS;
                    checked++;
                    if (!(e <= tol)) {
                        bad++;
                        fprintf(stderr, "fd %s layer %d %s %c[%lld]: fd %.6g analytic %.6g (tol %.3g)\n", arch, l,
                                model_linear_name((model_linear)k), is_b ? 'B' : 'A', (long long)(i - off), fd, an,
                                tol);
                    }
                    if (e > worst) worst = e;
                    if (gmax > 0 && e / gmax > worst_rel) worst_rel = e / gmax;
                }
            }
        }
    CHECK(bad == 0, "%s: %d of %d finite differences out of tolerance", arch, bad, checked);
    printf("fd     %-7s dropout %.1f recompute %d: %d entries, worst |fd - analytic| %.2e = %.2e of the module's "
           "max |grad|\n",
           arch, dropout, recompute, checked, worst, worst_rel);
    free(grad);
    lt_free(t);
}

// ---- 3. invariance ------------------------------------------------------------------------

static float *grads_of(model *m, float dropout, int recompute, int threads) {
    bk_cpu_set_threads(threads);
    lt_model *t = random_lora(m, dropout, recompute, 3);
    if (!t) return NULL;
    util_rng rng;
    util_rng_seed(&rng, 5);
    fd_batch b;
    make_fd_batch(&b, &rng, model_get_config(m)->vocab_size);
    err_t err = {{0}};
    double sum;
    lt_zero_grads(t);
    CHECK(lt_forward_backward(t, b.seqs, 2, 1.0f / (float)b.count, 77, &sum, &err) == 0, "%s", err.msg);
    int64_t n = lt_n_params(t);
    float *g = malloc((size_t)(n + 1) * sizeof *g);
    memcpy(g, lt_grads(t), (size_t)n * sizeof *g);
    g[n] = (float)sum;
    lt_free(t);
    return g;
}

static void invariance(model *m, const char *arch) {
    lt_model *t = random_lora(m, 0, 0, 3);
    int64_t n = t ? lt_n_params(t) : 0;
    lt_free(t);
    float *ref = grads_of(m, 0.1f, 0, 2);
    float *rec = grads_of(m, 0.1f, 1, 2);
    float *one = grads_of(m, 0.1f, 0, 1);
    float *four = grads_of(m, 0.1f, 1, 4);
    bk_cpu_set_threads(0);
    if (ref && rec && one && four) {
        size_t bytes = (size_t)(n + 1) * sizeof(float);
        CHECK(memcmp(ref, rec, bytes) == 0, "%s: recompute changed the gradients", arch);
        CHECK(memcmp(ref, one, bytes) == 0, "%s: 1 thread vs 2 changed the gradients", arch);
        CHECK(memcmp(ref, four, bytes) == 0, "%s: 4 threads + recompute changed the gradients", arch);
    }
    free(ref);
    free(rec);
    free(one);
    free(four);
}

// ---- 4. ops on every weight type ------------------------------------------------------

// dx = dy W for F32, BF16 and NF4 weights against a double reference on the
// weight as the forward sees it (NF4 dequantized), with accumulate on and
// off; shapes whose NF4 blocks straddle rows, several column blocks and
// token chunks.
static void check_matmul_backward(int OC, int C, int T) {
    const bk_ops *bk = bk_cpu();
    util_rng rng;
    util_rng_seed(&rng, (uint64_t)(OC * 1000 + C));
    int64_t nw = (int64_t)OC * C;
    float *w = malloc((size_t)nw * sizeof *w), *wq = malloc((size_t)nw * sizeof *wq);
    uint16_t *wb = malloc((size_t)nw * sizeof *wb);
    float *dy = malloc((size_t)T * OC * sizeof *dy), *dx = malloc((size_t)T * C * sizeof *dx);
    double *ref = malloc((size_t)T * C * sizeof *ref);
    for (int64_t i = 0; i < nw; i++) w[i] = (float)(0.05 * util_rng_normal(&rng)), wb[i] = util_f32_to_bf16(w[i]);
    for (int64_t i = 0; i < (int64_t)T * OC; i++) dy[i] = (float)util_rng_normal(&rng);
    nf4_tensor q;
    err_t err = {{0}};
    memset(&q, 0, sizeof q);
    CHECK(nf4_quantize(w, OC, C, 1, &q, &err) == 0, "%s", err.msg);
    for (int kind = 0; kind < 3; kind++) {
        bk_weight W = {.rows = OC, .cols = C};
        if (kind == 0) W.type = BK_W_F32, W.data = w, memcpy(wq, w, (size_t)nw * sizeof *wq);
        if (kind == 1) {
            W.type = BK_W_BF16, W.data = wb;
            for (int64_t i = 0; i < nw; i++) wq[i] = util_bf16_to_f32(wb[i]);
        }
        if (kind == 2) W.type = BK_W_NF4, W.nf4 = q, nf4_dequantize(&q, wq);
        for (int t = 0; t < T; t++)
            for (int c = 0; c < C; c++) {
                double a = 0;
                for (int o = 0; o < OC; o++) a += (double)dy[(int64_t)t * OC + o] * wq[(int64_t)o * C + c];
                ref[(int64_t)t * C + c] = a;
            }
        for (int acc = 0; acc < 2; acc++) {
            for (int64_t i = 0; i < (int64_t)T * C; i++) dx[i] = acc ? 1.0f : NAN;
            bk->matmul_backward(dx, dy, &W, T, acc);
            double e = 0, m = 0;
            for (int64_t i = 0; i < (int64_t)T * C; i++) {
                double d = fabs(dx[i] - (ref[i] + acc)), r = fabs(ref[i]);
                if (!(d <= e)) e = d;
                if (r > m) m = r;
            }
            CHECK(e / m < 1e-5, "matmul_backward %s [%d x %d], T %d, accumulate %d: relative error %.3g",
                  kind == 0 ? "f32" : kind == 1 ? "bf16" : "nf4", OC, C, T, acc, e / m);
        }
    }
    nf4_free(&q);
    free(w), free(wq), free(wb), free(dy), free(dx), free(ref);
}

// Loss and gradient of one row against double arithmetic.
static void check_cross_entropy(void) {
    enum { N = 3, V = 1000 };
    util_rng rng;
    util_rng_seed(&rng, 11);
    float *l = malloc(N * V * sizeof *l), loss[N];
    double *ref = malloc(N * V * sizeof *ref), rloss[N];
    int32_t tg[N] = {0, 517, 999};
    for (int i = 0; i < N * V; i++) l[i] = (float)(3.0 * util_rng_normal(&rng));
    for (int r = 0; r < N; r++) {
        double mx = -INFINITY, sum = 0;
        for (int v = 0; v < V; v++) mx = fmax(mx, l[r * V + v]);
        for (int v = 0; v < V; v++) sum += exp(l[r * V + v] - mx);
        rloss[r] = mx + log(sum) - l[r * V + tg[r]];
        for (int v = 0; v < V; v++) ref[r * V + v] = 0.25 * (exp(l[r * V + v] - mx) / sum - (v == tg[r]));
    }
    bk_cpu()->cross_entropy(l, loss, tg, N, V, 0.25f);
    double e = 0, el = 0;
    for (int i = 0; i < N * V; i++) e = fmax(e, fabs(l[i] - ref[i]));
    for (int r = 0; r < N; r++) el = fmax(el, fabs(loss[r] - rloss[r]));
    CHECK(e < 1e-7 && el < 1e-5, "cross_entropy: gradient error %.3g, loss error %.3g", e, el);
    free(l), free(ref);
}

int main(void) {
    check_matmul_backward(40, 96, 70);
    check_matmul_backward(37, 320, 3);
    check_matmul_backward(64, 64, 129);
    check_cross_entropy();

    for (size_t i = 0; i < sizeof ARCHS / sizeof *ARCHS; i++) {
        model *m = load_model(ARCHS[i]);
        if (!m) continue;
        for (size_t k = 0; k < sizeof ADAPTERS / sizeof *ADAPTERS; k++) oracle_case(m, ARCHS[i], ADAPTERS[k]);
        fd_case(m, ARCHS[i], 0.0f, 0);
        if (i == 2) fd_case(m, ARCHS[i], 0.1f, 1);
        invariance(m, ARCHS[i]);
        model_free(m);
    }
    bk_cpu_shutdown();
    return check_finish("test_grad");
}
