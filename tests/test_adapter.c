// test_adapter: PEFT adapter loading. The oracle adapters (written by peft
// 0.21) load with the right ranks, scales, modules and values; config
// options parse and match as PEFT does; every malformed adapter is refused
// with a message naming the folder, tensor or field; and the adapters and
// models written by tests/tools/mk{model,adapter} load and check clean.
#include <libgen.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "adapter.h"
#include "check.h"
#include "config.h"
#include "safetensors.h"
#include "util.h"

#define ORACLE "tests/fixtures/oracle"

static const char *archs[] = {"llama3", "qwen2", "qwen3", "mistral"};

static int load_cfg(const char *dir, model_config *c) {
    err_t e = {{0}};
    int rc = model_config_load(dir, c, &e);
    CHECK(rc == 0, "%s: %s", dir, e.msg);
    return rc;
}

// Every module's A and B equal the file's values (converted to f32).
static void check_values(const lora_adapter *a, const char *dir) {
    err_t e = {{0}};
    char *path = util_path_join(dir, "adapter_model.safetensors");
    sft *s = sft_open(path, &e);
    free(path);
    CHECK(s != NULL, "%s", e.msg);
    if (!s) return;
    for (int l = 0; l < a->n_layers; l++)
        for (int m = 0; m < MODEL_LIN_COUNT; m++) {
            const lora_module *mod = lora_at(a, l, (model_linear)m);
            if (!mod->rank) continue;
            char key[160];
            snprintf(key, sizeof key, "base_model.model.model.layers.%d.%s.lora_B.weight", l,
                     model_linear_path((model_linear)m));
            const sft_tensor *t = sft_find(s, key);
            CHECK(t && t->numel == (int64_t)mod->out * mod->rank, "%s", key);
            if (!t) continue;
            const float *want = t->data;
            int same = 1;
            for (int64_t i = 0; i < t->numel; i++) same &= want[i] == mod->B[i];
            CHECK(same, "%s values", key);
            key[strlen(key) - strlen("B.weight")] = 'A';
            t = sft_find(s, key);
            CHECK(t && t->numel == (int64_t)mod->in * mod->rank && t->dtype == SFT_F32, "%s", key);
            if (t) CHECK(((const float *)t->data)[t->numel - 1] == mod->A[t->numel - 1], "%s", key);
        }
    sft_close(s);
}

// The three oracle adapters of every architecture.
static void test_oracle(void) {
    for (int i = 0; i < 4; i++) {
        char dir[160];
        model_config cfg;
        snprintf(dir, sizeof dir, ORACLE "/%s/model", archs[i]);
        if (load_cfg(dir, &cfg) < 0) continue;
        static const char *names[] = {"a_qv_r8", "b_all_r16", "c_rslora_r4"};
        static const int ranks[] = {8, 16, 4};
        static const float scales[] = {2.0f, 2.0f, 4.0f}; // 16/8, 32/16, 8/sqrt(4)
        static const unsigned masks[] = {
            1u << MODEL_LIN_Q | 1u << MODEL_LIN_V, 0x7f,
            1u << MODEL_LIN_K | 1u << MODEL_LIN_O | 1u << MODEL_LIN_GATE | 1u << MODEL_LIN_DOWN};
        for (int k = 0; k < 3; k++) {
            err_t e = {{0}};
            snprintf(dir, sizeof dir, ORACLE "/%s/adapters/%s", archs[i], names[k]);
            lora_adapter *a = lora_load(dir, &cfg, &e);
            CHECK(a != NULL, "%s: %s", dir, e.msg);
            if (!a) continue;
            CHECK(a->config.r == ranks[k] && a->max_rank == ranks[k], "%s", dir);
            CHECK(a->config.use_rslora == (k == 2), "%s", dir);
            CHECK(strcmp(a->config.task_type, "CAUSAL_LM") == 0);
            CHECK(a->n_layers == 2 && a->n_adapted == 2 * __builtin_popcount(masks[k]), "%s %d", dir,
                  a->n_adapted);
            int64_t params = 0;
            for (int l = 0; l < 2; l++)
                for (int m = 0; m < MODEL_LIN_COUNT; m++) {
                    const lora_module *mod = lora_at(a, l, (model_linear)m);
                    int want = (masks[k] >> m) & 1;
                    CHECK((mod->rank > 0) == want, "%s layer %d %s", dir, l,
                          model_linear_name((model_linear)m));
                    if (!want) continue;
                    int out, in;
                    model_linear_dims(&cfg, (model_linear)m, &out, &in);
                    CHECK(mod->rank == ranks[k] && mod->in == in && mod->out == out);
                    CHECK(fabsf(mod->scale - scales[k]) < 1e-6f, "%s scale %g", dir, mod->scale);
                    params += (int64_t)mod->rank * (in + out);
                }
            CHECK(a->n_params == params);
            check_values(a, dir);
            if (k == 2 && i == 0) {
                char *text = NULL;
                size_t tlen = 0;
                FILE *f = open_memstream(&text, &tlen);
                lora_describe(a, f);
                fclose(f);
                printf("%s", text);
                CHECK(strstr(text, "r 4, lora_alpha 8, scale 4 (rsLoRA: alpha/sqrt(r))") != NULL, "%s", text);
                CHECK(strstr(text, "adapted: 8 modules in 2 of 2 layers: k_proj o_proj gate_proj down_proj") != NULL, "%s", text);
                free(text);
            }
            lora_free(a);
        }
    }
}

static int parse(const char *json, lora_config *c, err_t *e) {
    return lora_config_parse(json, strlen(json), c, e);
}

static void expect_config_error(const char *json, const char *want) {
    lora_config c;
    err_t e = {{0}};
    CHECK(parse(json, &c, &e) == -1, "should fail: %s", json);
    CHECK(strstr(e.msg, want) != NULL, "error \"%s\" lacks \"%s\"", e.msg, want);
    lora_config_free(&c);
}

static void test_config_parse(void) {
    lora_config c;
    err_t e = {{0}};
    // all-linear, rank/alpha patterns, layers_to_transform
    CHECK(parse("{\"r\":8,\"lora_alpha\":16,\"target_modules\":\"all-linear\","
                "\"rank_pattern\":{\"q_proj\":4,\"model.layers.1.mlp.down_proj\":2},"
                "\"alpha_pattern\":{\"self_attn.q_proj\":32.0},"
                "\"layers_to_transform\":[1],\"base_model_name_or_path\":\"Qwen/Qwen3-8B\","
                "\"lora_dropout\":0.05,\"peft_type\":\"LORA\",\"task_type\":\"CAUSAL_LM\"}",
                &c, &e) == 0,
          "%s", e.msg);
    CHECK(c.n_targets == 7 && !c.target_regex && c.n_layers == 1 && c.layers[0] == 1);
    CHECK(c.base_model && strcmp(c.base_model, "Qwen/Qwen3-8B") == 0 && c.dropout == 0.05);
    CHECK(lora_config_targets(&c, "model.layers.1.self_attn.k_proj", 1));
    CHECK(!lora_config_targets(&c, "model.layers.0.self_attn.k_proj", 0), "layers_to_transform");
    CHECK(!lora_config_targets(&c, "lm_head", 0), "all-linear leaves lm_head out");
    CHECK(lora_config_rank(&c, "model.layers.0.self_attn.q_proj") == 4);
    CHECK(lora_config_rank(&c, "model.layers.0.self_attn.k_proj") == 8);
    CHECK(lora_config_rank(&c, "model.layers.1.mlp.down_proj") == 2);
    CHECK(lora_config_rank(&c, "model.layers.0.mlp.down_proj") == 8);
    CHECK(lora_config_rank(&c, "model.layers.0.self_attn.xq_proj") == 8, "suffix after a dot only");
    CHECK(lora_config_alpha(&c, "model.layers.0.self_attn.q_proj") == 32.0);
    CHECK(fabs(lora_config_scale(&c, "model.layers.0.self_attn.q_proj") - 8.0) < 1e-12);
    CHECK(fabs(lora_config_scale(&c, "model.layers.0.mlp.up_proj") - 2.0) < 1e-12);
    lora_config_free(&c);

    // regex target_modules (fullmatch), exclude_modules, rsLoRA
    CHECK(parse("{\"r\":16,\"lora_alpha\":8,\"use_rslora\":true,"
                "\"target_modules\":\".*\\\\.(q_proj|v_proj)\","
                "\"exclude_modules\":[\"model.layers.0.self_attn.v_proj\"]}",
                &c, &e) == 0,
          "%s", e.msg);
    CHECK(c.target_regex && c.n_excludes == 1);
    CHECK(lora_config_targets(&c, "model.layers.0.self_attn.q_proj", 0));
    CHECK(!lora_config_targets(&c, "model.layers.0.self_attn.v_proj", 0), "excluded");
    CHECK(lora_config_targets(&c, "model.layers.1.self_attn.v_proj", 1));
    CHECK(!lora_config_targets(&c, "model.layers.1.self_attn.q_proj.x", 1), "full match");
    CHECK(fabs(lora_config_scale(&c, "model.layers.1.self_attn.v_proj") - 2.0) < 1e-12);
    lora_config_free(&c);

    // full names match exactly and are not narrowed by layers_to_transform
    CHECK(parse("{\"target_modules\":[\"model.layers.0.self_attn.q_proj\",\"mlp.up_proj\"],"
                "\"layers_to_transform\":1}",
                &c, &e) == 0,
          "%s", e.msg);
    CHECK(c.r == 8 && c.alpha == 8, "PEFT defaults");
    CHECK(lora_config_targets(&c, "model.layers.0.self_attn.q_proj", 0));
    CHECK(!lora_config_targets(&c, "model.layers.1.self_attn.q_proj", 1));
    CHECK(lora_config_targets(&c, "model.layers.1.mlp.up_proj", 1));
    CHECK(!lora_config_targets(&c, "model.layers.0.mlp.up_proj", 0));
    lora_config_free(&c);

    // null target_modules: PEFT's default for these model types
    CHECK(parse("{\"target_modules\":null}", &c, &e) == 0, "%s", e.msg);
    CHECK(c.n_targets == 2 && lora_config_targets(&c, "model.layers.0.self_attn.v_proj", 0));
    lora_config_free(&c);

    expect_config_error("{\"use_dora\":true}", "field use_dora: DoRA adapters are not supported");
    expect_config_error("{\"bias\":\"all\"}", "field bias: \"all\" is not supported");
    expect_config_error("{\"fan_in_fan_out\":true}", "fan_in_fan_out");
    expect_config_error("{\"peft_type\":\"IA3\"}", "field peft_type: \"IA3\" is not supported");
    expect_config_error("{\"modules_to_save\":[\"lm_head\"]}", "field modules_to_save");
    expect_config_error("{\"lora_bias\":true}", "lora_bias");
    expect_config_error("{\"task_type\":\"SEQ_CLS\"}", "task_type");
    expect_config_error("{\"r\":0}", "field r: 0 is out of range");
    expect_config_error("{\"r\":\"8\"}", "field r: expected an integer, got string");
    expect_config_error("{\"r\":8.5}", "field r: expected an integer");
    expect_config_error("{\"lora_alpha\":\"x\"}", "field lora_alpha: expected a number");
    expect_config_error("{\"target_modules\":[\"q_proj\",3]}", "field target_modules[1]");
    expect_config_error("{\"target_modules\":[]}", "field target_modules: empty list");
    expect_config_error("{\"target_modules\":\"(q_proj\"}", "invalid regex");
    expect_config_error("{\"target_modules\":7}", "field target_modules: expected a list");
    expect_config_error("{\"rank_pattern\":{\"q_proj\":0}}", "rank_pattern[\"q_proj\"]");
    expect_config_error("{\"rank_pattern\":[1]}", "field rank_pattern: expected an object");
    expect_config_error("{\"alpha_pattern\":{\"q\":\"x\"}}", "alpha_pattern[\"q\"]");
    expect_config_error("{\"layers_to_transform\":[0,-1]}", "layers_to_transform");
    expect_config_error("{\"lora_dropout\":1.5}", "lora_dropout");
    expect_config_error("{\"use_rslora\":\"yes\"}", "use_rslora");
    expect_config_error("[]", "JSON object");
    expect_config_error("{\"r\":", "invalid JSON");
}

// Parsing PEFT's own adapter_config.json and writing it back gives the same
// bytes: what train writes is what PEFT would.
static void test_config_roundtrip(void) {
    static const char *names[] = {"a_qv_r8", "b_all_r16", "c_rslora_r4"};
    for (int i = 0; i < 4; i++)
        for (int k = 0; k < 3; k++) {
            char path[200];
            err_t e = {{0}};
            size_t len;
            snprintf(path, sizeof path, ORACLE "/%s/adapters/%s/adapter_config.json", archs[i],
                     names[k]);
            char *text = util_read_file(path, &len, &e);
            CHECK(text != NULL, "%s", e.msg);
            lora_config c;
            if (text && lora_config_parse(text, len, &c, &e) == 0) {
                char *out = lora_config_to_json(&c);
                CHECK(out && strcmp(out, text) == 0, "%s: written back differs:\n%s", path, out ? out : "");
                free(out);
                lora_config_free(&c);
            } else {
                CHECK(0, "%s: %s", path, e.msg);
            }
            free(text);
        }
    // options beyond the oracle's: patterns, layers, regex target, base model
    const char *j = "{\"r\":8,\"lora_alpha\":16.5,\"target_modules\":\".*\\\\.q_proj\",\"rank_pattern\":"
                    "{\"v_proj\":4},\"alpha_pattern\":{\"q_proj\":2.5},\"layers_to_transform\":[0,3],"
                    "\"base_model_name_or_path\":\"Qwen/Qwen3-8B\",\"lora_dropout\":0.05}";
    lora_config c, c2;
    err_t e = {{0}};
    CHECK(parse(j, &c, &e) == 0, "%s", e.msg);
    char *out = lora_config_to_json(&c);
    CHECK(out && strstr(out, "\"lora_alpha\": 16.5,\n") && strstr(out, "\"lora_dropout\": 0.05,"), "%s", out ? out : "");
    CHECK(out && strstr(out, "\"target_modules\": \".*\\\\.q_proj\",") != NULL, "%s", out ? out : "");
    CHECK(out && strstr(out, "\"layers_to_transform\": [\n    0,\n    3\n  ],") != NULL, "%s", out ? out : "");
    CHECK(out && parse(out, &c2, &e) == 0, "%s", e.msg);
    if (out) {
        CHECK(c2.r == 8 && c2.alpha == 16.5 && c2.n_layers == 2 && c2.layers[1] == 3);
        CHECK(c2.n_rank_pattern == 1 && c2.rank_pattern[0].value == 4 && c2.target_regex);
        CHECK(c2.alpha_pattern[0].value == 2.5 && strcmp(c2.base_model, "Qwen/Qwen3-8B") == 0);
        lora_config_free(&c2);
    }
    free(out);
    lora_config_free(&c);
}

// ---- hand-made adapters on disk -------------------------------------------

typedef struct spec {
    const char *name;
    sft_dtype dt;
    int64_t rows, cols;
} spec;

// Writes dir/adapter_config.json and an adapter_model.safetensors holding
// the given tensors (values small and deterministic).
static void write_adapter(const char *dir, const char *config, const spec *specs, int n,
                          float poison) {
    err_t e = {{0}};
    char *cp = util_path_join(dir, "adapter_config.json");
    char *wp = util_path_join(dir, "adapter_model.safetensors");
    CHECK(util_write_file_atomic(cp, config, strlen(config), &e) == 0, "%s", e.msg);
    sft_writer *w = sft_writer_new();
    void *bufs[32];
    for (int i = 0; i < n; i++) {
        int64_t numel = specs[i].rows * specs[i].cols;
        bufs[i] = calloc((size_t)numel, 4);
        for (int64_t j = 0; j < numel; j++) {
            float v = (float)((j % 13) - 6) * 0.01f;
            if (j == 1 && poison != 0) v = poison;
            if (specs[i].dt == SFT_F32) ((float *)bufs[i])[j] = v;
            else if (specs[i].dt == SFT_BF16) ((uint16_t *)bufs[i])[j] = util_f32_to_bf16(v);
            else if (specs[i].dt == SFT_F16) ((uint16_t *)bufs[i])[j] = util_f32_to_f16(v);
        }
        int64_t shape[2] = {specs[i].rows, specs[i].cols};
        CHECK(sft_writer_add(w, specs[i].name, specs[i].dt, 2, shape, bufs[i], &e) == 0, "%s",
              e.msg);
    }
    CHECK(sft_writer_write(w, wp, &e) == 0, "%s", e.msg);
    sft_writer_free(w);
    for (int i = 0; i < n; i++) free(bufs[i]);
    free(cp);
    free(wp);
}

static void remove_adapter(const char *dir) {
    char *cp = util_path_join(dir, "adapter_config.json");
    char *wp = util_path_join(dir, "adapter_model.safetensors");
    unlink(cp);
    unlink(wp);
    free(cp);
    free(wp);
}

#define P "base_model.model.model.layers."
#define QV_CONFIG "{\"r\":4,\"lora_alpha\":8,\"target_modules\":[\"q_proj\",\"v_proj\"]}"

// q and v LoRA for both layers of the llama3 oracle model (hidden 64, kv 32).
static const spec qv_specs[] = {
    {P "0.self_attn.q_proj.lora_A.weight", SFT_F32, 4, 64},
    {P "0.self_attn.q_proj.lora_B.weight", SFT_F32, 64, 4},
    {P "0.self_attn.v_proj.lora_A.weight", SFT_F32, 4, 64},
    {P "0.self_attn.v_proj.lora_B.weight", SFT_F32, 32, 4},
    {P "1.self_attn.q_proj.lora_A.weight", SFT_F32, 4, 64},
    {P "1.self_attn.q_proj.lora_B.weight", SFT_F32, 64, 4},
    {P "1.self_attn.v_proj.lora_A.weight", SFT_F32, 4, 64},
    {P "1.self_attn.v_proj.lora_B.weight", SFT_F32, 32, 4},
};

// Loads the adapter and expects an error containing each of want[] (and the folder).
static void expect_load_error(const char *dir, const model_config *cfg, const char *want1,
                              const char *want2) {
    err_t e = {{0}};
    lora_adapter *a = lora_load(dir, cfg, &e);
    CHECK(a == NULL, "load should fail (%s)", want1);
    lora_free(a);
    printf("refused: %s\n", e.msg);
    CHECK(strstr(e.msg, dir) != NULL, "error \"%s\" does not name the folder", e.msg);
    CHECK(strstr(e.msg, want1) != NULL, "error \"%s\" lacks \"%s\"", e.msg, want1);
    if (want2) CHECK(strstr(e.msg, want2) != NULL, "error \"%s\" lacks \"%s\"", e.msg, want2);
}

// Writes the q/v adapter with spec i replaced by repl (or dropped if repl is
// NULL) plus an optional extra tensor, then expects the given error.
static void variant(const char *dir, const model_config *cfg, const char *config, int i,
                    const spec *repl, const spec *extra, const char *want1, const char *want2) {
    spec s[10];
    int n = 0;
    for (int k = 0; k < 8; k++) {
        if (k == i && !repl) continue;
        s[n++] = k == i ? *repl : qv_specs[k];
    }
    if (extra) s[n++] = *extra;
    write_adapter(dir, config, s, n, 0);
    expect_load_error(dir, cfg, want1, want2);
}

static void test_bad_adapters(void) {
    model_config cfg;
    if (load_cfg(ORACLE "/llama3/model", &cfg) < 0) return;
    char dir[] = "/tmp/tessera_adapter_XXXXXX";
    if (!mkdtemp(dir)) {
        CHECK(0, "mkdtemp");
        return;
    }
    err_t e = {{0}};

    // the good one first, in F32, then BF16 and F16 and the .default. spelling
    write_adapter(dir, QV_CONFIG, qv_specs, 8, 0);
    lora_adapter *a = lora_load(dir, &cfg, &e);
    CHECK(a && a->n_adapted == 4 && a->max_rank == 4, "%s", e.msg);
    if (a) CHECK(lora_at(a, 1, MODEL_LIN_V)->A[2] == -0.04f && lora_at(a, 0, MODEL_LIN_Q)->scale == 2.0f);
    lora_free(a);
    spec s[8];
    for (int k = 0; k < 8; k++) {
        s[k] = qv_specs[k];
        s[k].dt = k % 2 ? SFT_BF16 : SFT_F16;
    }
    static const spec dflt[2] = {{P "0.self_attn.q_proj.lora_A.default.weight", SFT_F32, 4, 64},
                                 {P "0.self_attn.q_proj.lora_B.default.weight", SFT_BF16, 64, 4}};
    s[0] = dflt[0], s[1] = dflt[1];
    write_adapter(dir, QV_CONFIG, s, 8, 0);
    a = lora_load(dir, &cfg, &e);
    CHECK(a != NULL, "%s", e.msg);
    if (a) {
        const lora_module *m = lora_at(a, 1, MODEL_LIN_V);
        CHECK(fabsf(m->A[2] + 0.04f) < 1e-4f && fabsf(m->B[3] + 0.03f) < 1e-3f);
        CHECK(fabsf(lora_at(a, 0, MODEL_LIN_Q)->B[0] + 0.06f) < 1e-3f);
    }
    lora_free(a);

    // rank_pattern: q_proj of layer 0 has rank 2, the rest 4
    static const spec r2[2] = {{P "0.self_attn.q_proj.lora_A.weight", SFT_F32, 2, 64},
                               {P "0.self_attn.q_proj.lora_B.weight", SFT_F32, 64, 2}};
    for (int k = 0; k < 8; k++) s[k] = qv_specs[k];
    s[0] = r2[0], s[1] = r2[1];
    const char *rp = "{\"r\":4,\"lora_alpha\":8,\"target_modules\":[\"q_proj\",\"v_proj\"],"
                     "\"rank_pattern\":{\"model.layers.0.self_attn.q_proj\":2}}";
    write_adapter(dir, rp, s, 8, 0);
    a = lora_load(dir, &cfg, &e);
    CHECK(a != NULL, "%s", e.msg);
    if (a) {
        CHECK(lora_at(a, 0, MODEL_LIN_Q)->rank == 2 && lora_at(a, 0, MODEL_LIN_Q)->scale == 4.0f);
        CHECK(lora_at(a, 1, MODEL_LIN_Q)->rank == 4 && lora_at(a, 1, MODEL_LIN_Q)->scale == 2.0f);
    }
    lora_free(a);
    // ... and without the rank_pattern the same tensors are a shape error
    write_adapter(dir, QV_CONFIG, s, 8, 0);
    expect_load_error(dir, &cfg, P "0.self_attn.q_proj.lora_A.weight: expected shape [4, 64]",
                      "got [2, 64]");

    static const spec embed = {"base_model.model.model.embed_tokens.lora_embedding_A", SFT_F32, 4, 512};
    variant(dir, &cfg, QV_CONFIG, -1, NULL, &embed, "LoRA on embeddings is not supported", NULL);
    static const spec head = {"base_model.model.lm_head.lora_A.weight", SFT_F32, 4, 64};
    variant(dir, &cfg, QV_CONFIG, -1, NULL, &head, "base_model.model.lm_head.lora_A.weight",
            "LoRA on lm_head is not supported");
    static const spec k_extra = {P "0.self_attn.k_proj.lora_A.weight", SFT_F32, 4, 64};
    variant(dir, &cfg, QV_CONFIG, -1, NULL, &k_extra, P "0.self_attn.k_proj.lora_A.weight",
            "module model.layers.0.self_attn.k_proj is not in target_modules");
    static const spec layer5 = {P "5.self_attn.q_proj.lora_A.weight", SFT_F32, 4, 64};
    variant(dir, &cfg, QV_CONFIG, -1, NULL, &layer5, "layer 5 is out of range",
            "the base model has 2 layers");
    static const spec dora = {P "0.self_attn.q_proj.lora_magnitude_vector", SFT_F32, 1, 64};
    variant(dir, &cfg, QV_CONFIG, -1, NULL, &dora, "DoRA", NULL);
    static const spec odd = {"model.layers.0.self_attn.q_proj.lora_A.weight", SFT_F32, 4, 64};
    variant(dir, &cfg, QV_CONFIG, -1, NULL, &odd, "expected a PEFT key", NULL);
    static const spec norm = {P "0.input_layernorm.lora_A.weight", SFT_F32, 4, 64};
    variant(dir, &cfg, QV_CONFIG, -1, NULL, &norm, "module model.layers.0.input_layernorm is not a LoRA target", NULL);
    // A without B
    variant(dir, &cfg, QV_CONFIG, 3, NULL, NULL, P "0.self_attn.v_proj.lora_A.weight has no matching lora_B",
            P "0.self_attn.v_proj.lora_B.weight");
    // a targeted module with no tensors at all
    spec six[6];
    for (int k = 0; k < 6; k++) six[k] = qv_specs[k < 4 ? k : k + 2];
    write_adapter(dir, QV_CONFIG, six, 6, 0);
    expect_load_error(dir, &cfg, "module model.layers.1.self_attn.q_proj is in target_modules but has no tensors", NULL);
    // B of the wrong out size
    static const spec wide = {P "1.self_attn.v_proj.lora_B.weight", SFT_F32, 64, 4};
    variant(dir, &cfg, QV_CONFIG, 7, &wide, NULL, "expected shape [32, 4] (out_features of model.layers.1.self_attn.v_proj", "got [64, 4]");
    static const spec ints = {P "1.self_attn.v_proj.lora_B.weight", SFT_I32, 32, 4};
    variant(dir, &cfg, QV_CONFIG, 7, &ints, NULL, "expected dtype F32, F16 or BF16, got I32", NULL);
    // a NaN weight
    write_adapter(dir, QV_CONFIG, qv_specs, 8, NAN);
    expect_load_error(dir, &cfg, "is not finite", NULL);
    // config errors name adapter_config.json
    write_adapter(dir, "{\"r\":4,\"use_dora\":true}", qv_specs, 8, 0);
    expect_load_error(dir, &cfg, "adapter_config.json: field use_dora", NULL);
    write_adapter(dir, "{\"r\":4,\"lora_alpha\":8,\"target_modules\":[\"q_proj\",\"v_proj\"],"
                       "\"layers_to_transform\":[7]}",
                  qv_specs, 8, 0);
    expect_load_error(dir, &cfg, "layers_to_transform: layer 7 is out of range", NULL);

    remove_adapter(dir);
    expect_load_error(dir, &cfg, "adapter_config.json", NULL);
    char *bin = util_path_join(dir, "adapter_model.bin");
    char *cp = util_path_join(dir, "adapter_config.json");
    util_write_file_atomic(cp, QV_CONFIG, strlen(QV_CONFIG), &e);
    util_write_file_atomic(bin, "x", 1, &e);
    expect_load_error(dir, &cfg, "missing adapter_model.safetensors", "adapter_model.bin");
    unlink(bin);
    unlink(cp);
    free(bin);
    free(cp);
    rmdir(dir);
}

// ---- the writer tools -------------------------------------------------------

static char tools_dir[512];

static int run(const char *cmd) {
    int rc = system(cmd);
    CHECK(rc == 0, "command failed (%d): %s", rc, cmd);
    return rc;
}

// mkmodel writes a folder that parses, passes the weight check and
// holds the real tokenizer; mkadapter writes adapters lora_load accepts.
static void test_tools(void) {
    char mk[600];
    snprintf(mk, sizeof mk, "%s/mkmodel", tools_dir);
    if (access(mk, X_OK) != 0) {
        printf("skip test_tools: %s not built\n", mk);
        return;
    }
    char tmp[] = "/tmp/tessera_tools_XXXXXX";
    if (!mkdtemp(tmp)) return;
    static const char *targets[] = {"all-linear", "q_proj,v_proj", "k_proj,o_proj,up_proj", "all-linear"};
    for (int i = 0; i < 4; i++) {
        char cmd[2048], mdir[600], adir[600];
        snprintf(mdir, sizeof mdir, "%s/%s", tmp, archs[i]);
        snprintf(adir, sizeof adir, "%s/%s-lora", tmp, archs[i]);
        snprintf(cmd, sizeof cmd, "%s/mkmodel --arch %s --out %s --seed %d%s", tools_dir, archs[i],
                 mdir, i + 1, i == 3 ? " --old-rope" : "");
        if (run(cmd) != 0) continue;
        snprintf(cmd, sizeof cmd,
                 "%s/mkadapter --model %s --out %s --rank %d --alpha 16 --targets %s%s --dtype %s",
                 tools_dir, mdir, adir, 4 + 4 * i, targets[i], i == 2 ? " --rslora" : "",
                 i % 2 ? "bf16" : "f32");
        if (run(cmd) != 0) continue;

        model_config cfg;
        err_t e = {{0}};
        if (load_cfg(mdir, &cfg) < 0) continue;
        CHECK(cfg.hidden_size == 64 && cfg.num_hidden_layers == 2 && cfg.head_dim == 16);
        CHECK(cfg.vocab_size == (i == 1 || i == 2 ? 151669 : 128256), "%s vocab %d", archs[i],
              cfg.vocab_size);
        CHECK(cfg.bos_token_id >= 0 && cfg.n_eos >= 1);
        if (i == 0) CHECK(cfg.rope.type == MODEL_ROPE_LLAMA3 && cfg.rope.theta == 500000.0);
        sft *s = sft_open(mdir, &e);
        CHECK(s != NULL, "%s", e.msg);
        if (s) {
            CHECK(model_config_check_weights(&cfg, s, &e) == 0, "%s: %s", archs[i], e.msg);
            const sft_tensor *t = sft_find(s, "model.norm.weight");
            CHECK(t && t->dtype == SFT_BF16 && ((const uint16_t *)t->data)[0] == 0x3f80, "norm = 1");
            sft_close(s);
        }
        char tj[700];
        snprintf(tj, sizeof tj, "%s/tokenizer.json", mdir);
        CHECK(util_is_file(tj), "%s", tj);
        snprintf(tj, sizeof tj, "%s/tokenizer_config.json", mdir);
        CHECK(util_is_file(tj), "%s", tj);

        lora_adapter *a = lora_load(adir, &cfg, &e);
        CHECK(a != NULL, "%s: %s", adir, e.msg);
        if (a) {
            int want = i == 0 || i == 3 ? 14 : i == 1 ? 4 : 6;
            CHECK(a->n_adapted == want && a->max_rank == 4 + 4 * i, "%s: %d", adir, a->n_adapted);
            double scale = i == 2 ? 16.0 / sqrt(12.0) : 16.0 / (4 + 4 * i);
            const lora_module *m = lora_at(a, 1, i == 2 ? MODEL_LIN_UP : MODEL_LIN_V);
            CHECK(m->rank && fabs(m->scale - scale) < 1e-6, "%s scale %g", adir, m->scale);
            float bmax = 0;
            for (int k = 0; m->rank && k < m->out * m->rank; k++) bmax = fmaxf(bmax, fabsf(m->B[k]));
            CHECK(bmax > 0, "B is non-zero");
            lora_free(a);
        }
    }
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    run(cmd);
}

int main(int argc, char **argv) {
    // The tools sit beside the tests: BUILD/tests/test_adapter -> BUILD/tools.
    const char *b = getenv("TESSERA_BUILD");
    if (b) {
        snprintf(tools_dir, sizeof tools_dir, "%s/tools", b);
    } else {
        char self[512];
        snprintf(self, sizeof self, "%s", argv[0]);
        snprintf(tools_dir, sizeof tools_dir, "%s/../tools", dirname(self));
    }
    test_oracle();
    test_config_parse();
    test_config_roundtrip();
    test_bad_adapters();
    test_tools();
    return check_finish("test_adapter");
}
