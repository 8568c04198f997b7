// test_embed: the embeddings' numbers (core/embed.h over
// model_forward_hidden) on the oracle's tiny qwen3 and llama3 models:
//   - model_forward_hidden's rows are what lm_head reads: lm_head applied
//     to them (the backend's matmul on the model's own lm_head) gives
//     model_forward's logits of the same tokens, row for row;
//   - last-token pooling is the last row normalized, mean pooling the
//     column mean normalized, both unit-norm, computed here by hand;
//   - two sequences in one batch (mixed with an adapter's) give the
//     vectors each gives alone, bit for bit; an adapter changes them;
//   - emb_truncate keeps the first dims at unit norm; emb_base64 encodes
//     known bytes as Python's base64 of struct.pack('<f') does.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapter.h"
#include "check.h"
#include "embed.h"
#include "kv.h"
#include "model.h"

#define ORACLE "tests/fixtures/oracle"
#define MAXLEN 32

// Opens a sequence with room for n positions; its id.
static int open_seq(kv_cache *kv, int n) {
    err_t err = {{0}};
    int s = kv_seq_open(kv, &err);
    CHECK(s >= 0, "%s", err.msg);
    CHECK(kv_seq_reserve(kv, s, n, &err) == 0, "%s", err.msg);
    return s;
}

static double norm2(const float *v, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) s += (double)v[i] * v[i];
    return sqrt(s);
}

// Runs one prompt alone in sequence 0 of kv; every row wanted; hidden (n, C).
static int hidden_alone(model *m, kv_cache *kv, const int32_t *ids, int n, int slot, float *hidden) {
    int32_t pos[MAXLEN], seq[MAXLEN], ad[MAXLEN];
    int s = open_seq(kv, n);
    for (int i = 0; i < n; i++) pos[i] = i, seq[i] = s, ad[i] = slot;
    err_t err = {{0}};
    model_batch b = {.n = n, .token = ids, .pos = pos, .seq = seq, .adapter = ad};
    int rc = model_forward_hidden(m, kv, &b, hidden, &err);
    CHECK(rc == 0, "%s", err.msg);
    kv_seq_close(kv, s);
    return rc;
}

static void check_model(const char *arch) {
    char dir[256];
    snprintf(dir, sizeof dir, ORACLE "/%s/model", arch);
    err_t err = {{0}};
    model_opts o = model_opts_default();
    o.quant = MODEL_LOAD_NONE;
    o.max_tokens = 2 * MAXLEN;
    o.max_slots = 2;
    model *m = model_load(dir, &o, &err);
    CHECK(m != NULL, "%s", err.msg);
    if (!m) return;
    const model_config *cfg = model_get_config(m);
    int C = cfg->hidden_size, V = cfg->vocab_size;
    kv_cache *kv = model_kv_new(m, 4, 64, 4, MAXLEN, &err);
    CHECK(kv != NULL, "%s", err.msg);
    int32_t p1[] = {5, 17, 3, 99, 42, 7, 1, 64}, p2[] = {11, 2, 250, 8, 31};
    int n1 = 8, n2 = 5;

    // Hidden rows through lm_head equal the logits.
    float *h1 = malloc((size_t)MAXLEN * C * sizeof(float)), *lg = malloc((size_t)MAXLEN * V * sizeof(float));
    float *lg2 = malloc((size_t)MAXLEN * V * sizeof(float));
    hidden_alone(m, kv, p1, n1, -1, h1);
    int32_t pos[MAXLEN], seq[MAXLEN];
    int s0 = open_seq(kv, n1);
    for (int i = 0; i < n1; i++) pos[i] = i, seq[i] = s0;
    model_batch b = {.n = n1, .token = p1, .pos = pos, .seq = seq};
    CHECK(model_forward(m, kv, &b, lg, &err) == 0, "%s", err.msg);
    kv_seq_close(kv, s0);
    model_view mv;
    model_get_view(m, &mv);
    mv.bk->matmul(lg2, h1, mv.lm_head, NULL, n1);
    double e = check_rel_err_floor(lg2, lg, (int64_t)n1 * V, 0);
    printf("%s: lm_head(hidden) vs logits rel err %.3g\n", arch, e);
    CHECK(e <= 1e-5, "%s: %g", arch, e);

    // Pooling by hand.
    float v[4096] = {0}, want[4096] = {0};
    CHECK(C <= 4096);
    emb_pool(EMB_POOL_LAST, h1, n1, C, v);
    double nh = norm2(h1 + (size_t)(n1 - 1) * C, C), maxd = 0;
    for (int c = 0; c < C; c++) maxd = fmax(maxd, fabs(v[c] - h1[(size_t)(n1 - 1) * C + c] / nh));
    CHECK(maxd < 1e-6, "%s last pooling off by %g", arch, maxd);
    CHECK(fabs(norm2(v, C) - 1) < 1e-5);
    emb_pool(EMB_POOL_MEAN, h1, n1, C, v);
    for (int c = 0; c < C; c++) {
        double s = 0;
        for (int t = 0; t < n1; t++) s += h1[(size_t)t * C + c];
        want[c] = (float)(s / n1);
    }
    double nm = norm2(want, C);
    maxd = 0;
    for (int c = 0; c < C; c++) maxd = fmax(maxd, fabs(v[c] - want[c] / nm));
    CHECK(maxd < 1e-6, "%s mean pooling off by %g", arch, maxd);
    CHECK(fabs(norm2(v, C) - 1) < 1e-5);

    // An adapter in slot 0 changes the vector; a mixed batch equals alone.
    char adir[256];
    snprintf(adir, sizeof adir, ORACLE "/%s/adapters/b_all_r16", arch);
    lora_adapter *ad = lora_load(adir, cfg, &err);
    CHECK(ad != NULL, "%s", err.msg);
    if (ad) {
        CHECK(model_adapter_set(m, 0, ad, &err) == 0, "%s", err.msg);
        lora_free(ad);
    }
    float *h2 = malloc((size_t)MAXLEN * C * sizeof(float)), *hb = malloc((size_t)2 * MAXLEN * C * sizeof(float));
    hidden_alone(m, kv, p2, n2, 0, h2);
    float va[4096], vb[4096];
    emb_pool(EMB_POOL_LAST, h1, n1, C, va);
    hidden_alone(m, kv, p1, n1, 0, hb);
    emb_pool(EMB_POOL_LAST, hb, n1, C, vb);
    CHECK(memcmp(va, vb, (size_t)C * sizeof(float)) != 0, "%s: the adapter left the vector unchanged", arch);

    int32_t ids[2 * MAXLEN], ps[2 * MAXLEN], sq[2 * MAXLEN], sl[2 * MAXLEN];
    int n = 0, sa = open_seq(kv, n1), sb = open_seq(kv, n2);
    for (int i = 0; i < n1; i++) ids[n] = p1[i], ps[n] = i, sq[n] = sa, sl[n++] = -1;
    for (int i = 0; i < n2; i++) ids[n] = p2[i], ps[n] = i, sq[n] = sb, sl[n++] = 0;
    model_batch bb = {.n = n, .token = ids, .pos = ps, .seq = sq, .adapter = sl};
    CHECK(model_forward_hidden(m, kv, &bb, hb, &err) == 0, "%s", err.msg);
    kv_seq_close(kv, sa);
    kv_seq_close(kv, sb);
    CHECK(memcmp(hb, h1, (size_t)n1 * C * sizeof(float)) == 0, "%s: batched base rows differ from alone", arch);
    CHECK(memcmp(hb + (size_t)n1 * C, h2, (size_t)n2 * C * sizeof(float)) == 0,
          "%s: batched adapter rows differ from alone", arch);

    // Only the wanted rows come back, in batch order.
    uint8_t wantv[2 * MAXLEN] = {0};
    wantv[n1 - 1] = 1, wantv[n - 1] = 1;
    bb.want = wantv;
    sa = open_seq(kv, n1), sb = open_seq(kv, n2);
    for (int i = 0; i < n; i++) sq[i] = i < n1 ? sa : sb;
    CHECK(model_forward_hidden(m, kv, &bb, hb, &err) == 0, "%s", err.msg);
    CHECK(model_forward_hidden(m, kv, &bb, NULL, &err) == -1);
    kv_seq_close(kv, sa);
    kv_seq_close(kv, sb);
    CHECK(memcmp(hb, h1 + (size_t)(n1 - 1) * C, (size_t)C * sizeof(float)) == 0);
    CHECK(memcmp(hb + C, h2 + (size_t)(n2 - 1) * C, (size_t)C * sizeof(float)) == 0);

    free(h1), free(h2), free(hb), free(lg), free(lg2);
    kv_free(kv);
    model_free(m);
}

static void check_truncate_base64(void) {
    float v[4] = {3, 4, 12, 0};
    emb_normalize(v, 4);
    CHECK(fabsf(v[0] - 3.f / 13) < 1e-7 && fabsf(v[2] - 12.f / 13) < 1e-7);
    CHECK(emb_truncate(v, 4, 2) == 2);
    CHECK(fabsf(v[0] - 0.6f) < 1e-7 && fabsf(v[1] - 0.8f) < 1e-7, "%g %g", v[0], v[1]);
    float z[3] = {0, 0, 0};
    emb_normalize(z, 3);
    CHECK(z[0] == 0 && z[1] == 0 && z[2] == 0);
    emb_pooling p;
    CHECK(emb_pooling_parse("mean", &p) == 0 && p == EMB_POOL_MEAN);
    CHECK(emb_pooling_parse("cls", &p) == -1);
    // base64.b64encode(struct.pack('<3f', 1.0, -2.5, 0.1)) (1, 2 and 3
    // floats: no padding, then '==' and '=' cases).
    float f[3] = {1.0f, -2.5f, 0.1f};
    char out[32];
    CHECK(emb_base64_len(3) == 17);
    CHECK(!strcmp(emb_base64(f, 3, out), "AACAPwAAIMDNzMw9"), "%s", out);
    CHECK(!strcmp(emb_base64(f, 1, out), "AACAPw=="), "%s", out);
    CHECK(!strcmp(emb_base64(f, 2, out), "AACAPwAAIMA="), "%s", out);
}

int main(void) {
    check_truncate_base64();
    check_model("qwen3");
    check_model("llama3");
    return check_finish("test_embed");
}
