// test_adapter_slots: bad adapters are refused with a message naming the
// adapter and what is wrong, and nothing else moves: the adapters already in
// slots give the same logits bit for bit, a failed model_adapter_set leaves
// its target slot as it was (an occupied slot keeps its adapter, an empty
// one stays empty).
//
// On the qwen2 oracle model with max_lora_rank 8, slot 0 = a_qv_r8 (rank 8),
// slot 1 = c_rslora_r4 (rank 4), then:
//   - b_all_r16 (rank 16 > 8): model_adapter_set refuses it, naming the
//     adapter, its rank and the limit;
//   - adapters for another base (written here: hidden 96 instead of 64; 3
//     layers instead of 2): lora_load accepts them against their own config,
//     model_adapter_set refuses them;
//   - an unknown target module (mlp.fc1), a module list matching nothing,
//     a lora_A of the wrong width: lora_load refuses them;
//   - a slot out of range.
// After each refusal, into occupied slot 1 and into empty slot 2, the three
// prompts are run with slot 0, slot 1 and no adapter, and slot 2 is checked
// still empty. Finally a good adapter replaces slot 1.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "adapter.h"
#include "check.h"
#include "model.h"
#include "safetensors.h"
#include "util.h"

#define ORACLE "tests/fixtures/oracle/qwen2"
#define MAXLEN 32

static const int32_t PROMPTS[3][6] = {{1, 17, 250, 3, 99, 7}, {5, 5, 400, 12, 8, 301}, {2, 511, 0, 64, 128, 9}};
static const int SLOTS[3] = {0, 1, -1}; // the runs compared after every refusal

// Logits of the three prompts with slot 0, slot 1 and no adapter:
// out (3 runs x 3 prompts x 6 positions x vocab).
static int run_all(model *m, float *out) {
    int V = model_get_config(m)->vocab_size;
    err_t err = {{0}};
    kv_cache *kv = model_kv_new(m, 4, 32, 4, MAXLEN, &err);
    CHECK(kv != NULL, "%s", err.msg);
    if (!kv) return -1;
    int rc = 0;
    for (int s = 0; s < 3 && rc == 0; s++)
        for (int p = 0; p < 3 && rc == 0; p++) {
            int seq = kv_seq_open(kv, &err);
            int32_t pos[6], sq[6], ad[6];
            for (int i = 0; i < 6; i++) pos[i] = i, sq[i] = seq, ad[i] = SLOTS[s];
            model_batch b = {6, PROMPTS[p], pos, sq, ad, NULL};
            float *o = out + (int64_t)(s * 3 + p) * 6 * V;
            rc = kv_seq_reserve(kv, seq, 6, &err) < 0 ? -1 : model_forward(m, kv, &b, o, &err);
            CHECK(rc == 0, "%s", err.msg);
            kv_seq_close(kv, seq);
        }
    kv_free(kv);
    return rc;
}

// The slots still compute what they did: same bits as `want`; slot 2 empty.
static void check_undisturbed(model *m, const float *want, const char *after) {
    int V = model_get_config(m)->vocab_size;
    size_t n = (size_t)9 * 6 * V;
    float *got = malloc(n * sizeof *got);
    int same = run_all(m, got) == 0 && memcmp(got, want, n * sizeof *got) == 0;
    CHECK(same, "after %s: logits with slot 0, slot 1 or no adapter changed", after);
    CHECK(model_adapter_used(m, 0) && model_adapter_used(m, 1) && !model_adapter_used(m, 2),
          "after %s: slots used %d %d %d, expected 1 1 0", after, model_adapter_used(m, 0), model_adapter_used(m, 1),
          model_adapter_used(m, 2));
    printf("  %-44s slots 0, 1 and the base: same bits; slot 2 empty\n", after);
    free(got);
}

// model_adapter_set of a into slot 1 (occupied) and slot 2 (empty) must
// fail with a message holding every string of `want` (NULL-terminated).
static void expect_set_refused(model *m, const lora_adapter *a, const char *const *want, const float *before,
                               const char *what) {
    for (int slot = 1; slot <= 2; slot++) {
        err_t err = {{0}};
        int rc = model_adapter_set(m, slot, a, &err);
        CHECK(rc < 0, "%s into slot %d: accepted", what, slot);
        for (int i = 0; want[i]; i++)
            CHECK(strstr(err.msg, want[i]) != NULL, "%s: message \"%s\" lacks \"%s\"", what, err.msg, want[i]);
        if (slot == 1) printf("  refused: %s\n", err.msg);
    }
    check_undisturbed(m, before, what);
}

// ---- adapters written here ----------------------------------------------------------

typedef struct spec {
    int rank;
    const char *targets;   // target_modules JSON list
    const char *lins;      // projections given tensors, e.g. "q_proj,v_proj"
    const char *extra;     // a module outside the seven given tensors too, or NULL
    int a_width_delta;     // added to q_proj lora_A's width (a wrong shape)
} spec;

// dir/adapter_config.json and dir/adapter_model.safetensors for cfg.
static int write_adapter(const char *dir, const model_config *cfg, const spec *sp, err_t *err) {
    if (mkdir(dir, 0755) < 0) return err_set(err, "mkdir %s", dir);
    char json[512], path[600];
    int len = snprintf(json, sizeof json,
                       "{\"peft_type\": \"LORA\", \"task_type\": \"CAUSAL_LM\", \"r\": %d, \"lora_alpha\": %d,\n"
                       " \"target_modules\": %s, \"bias\": \"none\"}\n",
                       sp->rank, 2 * sp->rank, sp->targets);
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    if (util_write_file_atomic(path, json, (size_t)len, err) < 0) return -1;

    util_rng rng;
    util_rng_seed(&rng, 11);
    sft_writer *w = sft_writer_new();
    enum { MAXT = 64 };
    float *data[MAXT];
    char names[MAXT][160];
    int nt = 0, rc = 0;
    for (int l = 0; l < cfg->num_hidden_layers && rc == 0; l++)
        for (int i = 0; i <= MODEL_LIN_COUNT && rc == 0; i++) {
            const char *module = i < MODEL_LIN_COUNT ? model_linear_path((model_linear)i) : sp->extra;
            if (i < MODEL_LIN_COUNT && !strstr(sp->lins, model_linear_name((model_linear)i))) continue;
            if (i == MODEL_LIN_COUNT && (!sp->extra || l > 0)) continue;
            int out = cfg->hidden_size, in = cfg->hidden_size;
            if (i < MODEL_LIN_COUNT) model_linear_dims(cfg, (model_linear)i, &out, &in);
            if (i == MODEL_LIN_Q) in += sp->a_width_delta;
            for (int b = 0; b < 2 && rc == 0 && nt < MAXT; b++, nt++) {
                int64_t shape[2] = {b ? out : sp->rank, b ? sp->rank : in};
                data[nt] = malloc((size_t)(shape[0] * shape[1]) * sizeof(float));
                for (int64_t k = 0; k < shape[0] * shape[1]; k++) data[nt][k] = (float)(0.05 * util_rng_normal(&rng));
                snprintf(names[nt], sizeof names[nt], "base_model.model.model.layers.%d.%s.lora_%c.weight", l, module,
                         b ? 'B' : 'A');
                rc = sft_writer_add(w, names[nt], SFT_F32, 2, shape, data[nt], err);
            }
        }
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    if (rc == 0) rc = sft_writer_write(w, path, err);
    sft_writer_free(w);
    for (int i = 0; i < nt; i++) free(data[i]);
    return rc;
}

// The qwen2 oracle config with one field's value replaced ("hidden_size": 64 -> 96).
static int edited_config(const char *field, int value, model_config *cfg, err_t *err) {
    size_t len;
    char *text = util_read_file(ORACLE "/model/config.json", &len, err);
    if (!text) return -1;
    char key[64];
    snprintf(key, sizeof key, "\"%s\": ", field);
    char *p = strstr(text, key);
    util_buf b = {0};
    if (p) {
        char *end = p + strlen(key);
        while (*end >= '0' && *end <= '9') end++;
        char num[32];
        snprintf(num, sizeof num, "%d", value);
        util_buf_put(&b, text, (size_t)(p - text) + strlen(key));
        util_buf_puts(&b, num);
        util_buf_puts(&b, end);
    }
    free(text);
    int rc = p && !b.oom ? model_config_parse(b.p, b.len, "edited config.json", cfg, err)
                         : err_set(err, "no field %s", field);
    free(b.p);
    return rc;
}

// lora_load of a written adapter against cfg must fail naming dir and want.
static void expect_load_refused(const char *tmp, const char *name, const model_config *cfg, const spec *sp,
                                const char *want) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", tmp, name);
    err_t err = {{0}};
    CHECK(write_adapter(dir, cfg, sp, &err) == 0, "%s", err.msg);
    lora_adapter *a = lora_load(dir, cfg, &err);
    CHECK(a == NULL, "%s: lora_load accepted it", name);
    CHECK(strstr(err.msg, dir) && strstr(err.msg, want), "%s: message \"%s\" lacks the folder or \"%s\"", name, err.msg,
          want);
    printf("  refused by lora_load: %s\n", err.msg);
    lora_free(a);
}

int main(void) {
    err_t err = {{0}};
    model_opts o = model_opts_default();
    o.max_slots = 4;
    o.max_lora_rank = 8;
    o.max_tokens = 32;
    model *m = model_load(ORACLE "/model", &o, &err);
    CHECK(m != NULL, "%s", err.msg);
    if (!m) return check_finish("test_adapter_slots");
    const model_config *cfg = model_get_config(m);
    CHECK(model_max_lora_rank(m) == 8, "max_lora_rank %d", model_max_lora_rank(m));
    model_opts d = model_opts_default();
    CHECK(d.max_lora_rank == MODEL_DEFAULT_MAX_LORA_RANK && MODEL_DEFAULT_MAX_LORA_RANK == 64, "default %d",
          d.max_lora_rank);

    lora_adapter *a = lora_load(ORACLE "/adapters/a_qv_r8", cfg, &err);
    lora_adapter *b = lora_load(ORACLE "/adapters/b_all_r16", cfg, &err);
    lora_adapter *c = lora_load(ORACLE "/adapters/c_rslora_r4", cfg, &err);
    CHECK(a && b && c, "%s", err.msg);
    if (!a || !b || !c) return check_finish("test_adapter_slots");
    CHECK(model_adapter_set(m, 0, a, &err) == 0 && model_adapter_set(m, 1, c, &err) == 0, "%s", err.msg);

    int V = cfg->vocab_size;
    float *before = malloc((size_t)9 * 6 * V * sizeof *before);
    CHECK(run_all(m, before) == 0, "reference run");
    printf("qwen2, max_lora_rank 8; slot 0 a_qv_r8, slot 1 c_rslora_r4, slot 2 empty\n");

    // rank above the limit
    const char *rank_msg[] = {"b_all_r16", "rank 16", "max_lora_rank 8", NULL};
    expect_set_refused(m, b, rank_msg, before, "b_all_r16 (rank 16)");

    char tmp[] = "/tmp/tessera_slots_XXXXXX";
    CHECK(mkdtemp(tmp) != NULL, "mkdtemp");
    char dir[512];

    // adapters for another base: they load against their own config
    spec all_r4 = {4, "[\"q_proj\", \"k_proj\", \"v_proj\", \"o_proj\", \"gate_proj\", \"up_proj\", \"down_proj\"]",
                   "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj", NULL, 0};
    model_config wide, deep;
    CHECK(edited_config("hidden_size", 96, &wide, &err) == 0 && edited_config("num_hidden_layers", 3, &deep, &err) == 0,
          "%s", err.msg);
    snprintf(dir, sizeof dir, "%s/hidden96", tmp);
    CHECK(write_adapter(dir, &wide, &all_r4, &err) == 0, "%s", err.msg);
    lora_adapter *other = lora_load(dir, &wide, &err);
    CHECK(other != NULL, "%s", err.msg);
    const char *wide_msg[] = {"hidden96", "layer 0 q_proj", "[96, 96]", "the model's [64, 64]", "another base", NULL};
    if (other) expect_set_refused(m, other, wide_msg, before, "an adapter for hidden 96");
    lora_free(other);
    snprintf(dir, sizeof dir, "%s/layers3", tmp);
    CHECK(write_adapter(dir, &deep, &all_r4, &err) == 0, "%s", err.msg);
    other = lora_load(dir, &deep, &err);
    CHECK(other != NULL, "%s", err.msg);
    const char *deep_msg[] = {"layers3", "has 3 layers, the model 2", NULL};
    if (other) expect_set_refused(m, other, deep_msg, before, "an adapter for 3 layers");
    lora_free(other);

    // refused at load: unknown module, nothing known targeted, wrong width
    spec fc1 = {4, "[\"q_proj\", \"fc1\"]", "q_proj", "mlp.fc1", 0};
    expect_load_refused(tmp, "fc1", cfg, &fc1, "model.layers.0.mlp.fc1 is not a LoRA target tessera supports");
    spec none = {4, "[\"c_attn\"]", "", "self_attn.c_attn", 0};
    expect_load_refused(tmp, "c_attn", cfg, &none, "self_attn.c_attn is not a LoRA target tessera supports");
    spec width = {4, "[\"q_proj\"]", "q_proj", NULL, 1};
    expect_load_refused(tmp, "width", cfg, &width, "expected shape [4, 64]");
    check_undisturbed(m, before, "the three refused loads");

    // slot out of range
    CHECK(model_adapter_set(m, 4, a, &err) < 0 && strstr(err.msg, "slot 4 out of range [0, 4)"), "%s", err.msg);
    CHECK(model_adapter_set(m, -1, a, &err) < 0 && strstr(err.msg, "slot -1"), "%s", err.msg);
    check_undisturbed(m, before, "slots 4 and -1 (out of range)");

    // a good adapter replaces slot 1: slot 1 now computes what slot 0 does
    CHECK(model_adapter_set(m, 1, a, &err) == 0, "%s", err.msg);
    float *after = malloc((size_t)9 * 6 * V * sizeof *after);
    int64_t run = (int64_t)3 * 6 * V;
    CHECK(run_all(m, after) == 0 && memcmp(after + run, before, (size_t)run * sizeof *after) == 0 &&
              memcmp(after, before, (size_t)run * sizeof *after) == 0 &&
              memcmp(after + 2 * run, before + 2 * run, (size_t)run * sizeof *after) == 0,
          "replacing slot 1 with a_qv_r8");
    printf("  %-44s slot 1 now gives slot 0's bits\n", "a_qv_r8 into slot 1");

    // the limit is the option: the default (64) takes b_all_r16
    model_opts o2 = o;
    o2.max_lora_rank = 0; // the default
    model *m2 = model_load(ORACLE "/model", &o2, &err);
    CHECK(m2 && model_max_lora_rank(m2) == 64 && model_adapter_set(m2, 0, b, &err) == 0, "%s", err.msg);
    model_free(m2);

    util_rm_rf(tmp);
    free(before), free(after);
    lora_free(a), lora_free(b), lora_free(c);
    model_free(m);
    bk_cpu_shutdown();
    return check_finish("test_adapter_slots");
}
