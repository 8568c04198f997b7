// embedref: an embedding computed apart from the server, for
// tests/test_serve_embeddings.sh: one forward of the given token ids in a
// sequence of their own (model_forward_hidden, every row wanted), pooled
// and normalized by emb_pool, printed as a JSON array. The model loads
// dense with the f32 KV cache and adapter slots and the exact CPU matmul
// (the server under test runs with --quant none --kv-dtype f32
// --lora-dtype f32 --matmul exact).
//
//   embedref --model DIR [--adapter DIR] [--pooling last|mean] ID,ID,...
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapter.h"
#include "embed.h"
#include "kv.h"
#include "model.h"

static int run(const char *mdir, const char *adir, emb_pooling pool, const char *ids_arg, err_t *err) {
    int n = 1;
    for (const char *p = ids_arg; *p; p++) n += *p == ',';
    int32_t *ids = calloc((size_t)n, sizeof *ids), *pos = calloc((size_t)n, sizeof *pos);
    int32_t *seq = calloc((size_t)n, sizeof *seq), *ad = calloc((size_t)n, sizeof *ad);
    char *end = NULL;
    const char *p = ids_arg;
    for (int i = 0; i < n; i++, p = end + 1) ids[i] = (int32_t)strtol(p, &end, 10);
    model_opts o = model_opts_default();
    o.quant = MODEL_LOAD_NONE;
    o.max_tokens = n;
    o.max_slots = 1;
    model *m = model_load(mdir, &o, err);
    float *h = NULL, *v = NULL;
    kv_cache *kv = NULL;
    int rc = -1;
    if (!m) goto done;
    const model_config *cfg = model_get_config(m);
    if (adir) {
        lora_adapter *a = lora_load(adir, cfg, err);
        if (!a || model_adapter_set(m, 0, a, err) < 0) {
            lora_free(a);
            goto done;
        }
        lora_free(a);
    }
    int C = (int)cfg->hidden_size;
    if (!(kv = model_kv_new(m, 16, (n + 15) / 16, 1, n, err))) goto done;
    int s = kv_seq_open(kv, err);
    if (s < 0 || kv_seq_reserve(kv, s, n, err) < 0) goto done;
    for (int i = 0; i < n; i++) pos[i] = i, seq[i] = s, ad[i] = adir ? 0 : -1;
    model_batch b = {.n = n, .token = ids, .pos = pos, .seq = seq, .adapter = ad};
    h = malloc((size_t)n * C * sizeof *h);
    v = malloc((size_t)C * sizeof *v);
    if (!h || !v || model_forward_hidden(m, kv, &b, h, err) < 0) goto done;
    emb_pool(pool, h, n, C, v);
    for (int c = 0; c < C; c++) printf("%s%.9g", c ? "," : "[", v[c]);
    printf("]\n");
    rc = 0;
done:
    free(h), free(v), free(ids), free(pos), free(seq), free(ad);
    kv_free(kv);
    model_free(m);
    return rc;
}

int main(int argc, char **argv) {
    const char *mdir = NULL, *adir = NULL, *ids = NULL;
    emb_pooling pool = EMB_POOL_LAST;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--model") && i + 1 < argc) mdir = argv[++i];
        else if (!strcmp(argv[i], "--adapter") && i + 1 < argc) adir = argv[++i];
        else if (!strcmp(argv[i], "--pooling") && i + 1 < argc) {
            if (emb_pooling_parse(argv[++i], &pool) < 0) {
                fprintf(stderr, "embedref: --pooling must be last or mean, got '%s'\n", argv[i]);
                return 2;
            }
        } else ids = argv[i];
    }
    if (!mdir || !ids) {
        fprintf(stderr, "usage: embedref --model DIR [--adapter DIR] [--pooling last|mean] ID,ID,...\n");
        return 2;
    }
    err_t err = {{0}};
    if (run(mdir, adir, pool, ids, &err) < 0) {
        fprintf(stderr, "embedref: %s\n", err.msg);
        return 1;
    }
    return 0;
}
