// dumplogits: our logits for one prompt, as a safetensors file, so a
// script with transformers + peft (tests/oracle/peft_check.py) can compare.
//
//   dumplogits --model DIR [--adapter DIR] [--quant none|nf4] --ids 1,2,3 --out FILE
//
// Writes "ids" (I64 [n]) and "logits" (F32 [n, vocab]): the logits at every
// position of the prompt, fed whole.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/adapter.h"
#include "../../core/model.h"
#include "../../core/safetensors.h"

static int parse_ids(const char *s, int32_t **ids, int *n) {
    *n = 0;
    *ids = malloc(sizeof(int32_t) * (strlen(s) / 2 + 2));
    for (const char *p = s; *p;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v > 0x7fffffff) return -1;
        (*ids)[(*n)++] = (int32_t)v;
        p = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return -1;
    }
    return *n > 0 ? 0 : -1;
}

int main(int argc, char **argv) {
    const char *model_dir = NULL, *adapter_dir = NULL, *ids_arg = NULL, *out = NULL, *quant = "none";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--model") == 0) model_dir = argv[i + 1];
        else if (strcmp(argv[i], "--adapter") == 0) adapter_dir = argv[i + 1];
        else if (strcmp(argv[i], "--ids") == 0) ids_arg = argv[i + 1];
        else if (strcmp(argv[i], "--out") == 0) out = argv[i + 1];
        else if (strcmp(argv[i], "--quant") == 0) quant = argv[i + 1];
        else {
            fprintf(stderr, "dumplogits: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    int32_t *ids = NULL;
    int n = 0;
    if (!model_dir || !out || !ids_arg || parse_ids(ids_arg, &ids, &n) != 0) {
        fprintf(stderr, "usage: dumplogits --model DIR [--adapter DIR] [--quant none|nf4] --ids 1,2,3 --out FILE\n");
        free(ids);
        return 2;
    }
    err_t err = {{0}};
    model_opts mo = model_opts_default();
    mo.quant = strcmp(quant, "nf4") == 0 ? MODEL_LOAD_NF4 : MODEL_LOAD_NONE;
    mo.nf4_double_quant = 0; // the single-level absmax transformers' fixtures use
    model *m = model_load(model_dir, &mo, &err);
    lora_adapter *a = NULL;
    kv_cache *kv = NULL;
    float *logits = NULL;
    int32_t *pos = malloc(sizeof(int32_t) * (size_t)n), *seq = malloc(sizeof(int32_t) * (size_t)n);
    int32_t *slot = malloc(sizeof(int32_t) * (size_t)n);
    int64_t *ids64 = malloc(sizeof(int64_t) * (size_t)n);
    int rc = 1;
    if (!m) goto out;
    const model_config *c = model_get_config(m);
    if (adapter_dir && (!(a = lora_load(adapter_dir, c, &err)) || model_adapter_set(m, 0, a, &err) != 0)) goto out;
    if (!(kv = model_kv_new(m, 16, (n + 15) / 16 + 1, 1, n + 16, &err))) goto out;
    int s = kv_seq_open(kv, &err);
    if (s < 0 || kv_seq_reserve(kv, s, n, &err) != 0) goto out;
    for (int i = 0; i < n; i++) pos[i] = i, seq[i] = s, slot[i] = a ? 0 : -1, ids64[i] = ids[i];
    logits = malloc(sizeof(float) * (size_t)n * (size_t)c->vocab_size);
    model_batch b = {.n = n, .token = ids, .pos = pos, .seq = seq, .adapter = slot, .want = NULL};
    if (model_forward(m, kv, &b, logits, &err) != 0) goto out;
    sft_writer *w = sft_writer_new();
    int64_t s1[1] = {n}, s2[2] = {n, c->vocab_size};
    rc = sft_writer_add(w, "ids", SFT_I64, 1, s1, ids64, &err) || sft_writer_add(w, "logits", SFT_F32, 2, s2, logits, &err) ||
         sft_writer_write(w, out, &err);
    sft_writer_free(w);
out:
    if (rc) fprintf(stderr, "dumplogits: %s\n", err.msg);
    free(logits), free(pos), free(seq), free(slot), free(ids64), free(ids);
    if (kv) kv_free(kv);
    lora_free(a);
    model_free(m);
    return rc ? 1 : 0;
}
