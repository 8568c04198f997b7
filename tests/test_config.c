// test_config: config.json parsing (both RoPE spellings, every supported
// architecture, real published configs and the oracle's transformers 5
// ones), validation errors, tensor names/shapes and the weight check against
// the oracle checkpoints.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "check.h"
#include "config.h"
#include "safetensors.h"
#include "util.h"

#define ORACLE "tests/fixtures/oracle"
#define CONFIGS "tests/fixtures/configs"

static int load(const char *dir, model_config *c) {
    err_t e = {{0}};
    int rc = model_config_load(dir, c, &e);
    CHECK(rc == 0, "%s: %s", dir, e.msg);
    return rc;
}

// Parses text and expects failure with an error containing want.
static void expect_error(const char *json, const char *want) {
    model_config c;
    err_t e = {{0}};
    int rc = model_config_parse(json, strlen(json), "x/config.json", &c, &e);
    CHECK(rc == -1, "parse should fail for: %s", json);
    CHECK(strstr(e.msg, want) != NULL, "error \"%s\" lacks \"%s\"", e.msg, want);
    CHECK(strstr(e.msg, "x/config.json") != NULL, "error \"%s\" does not name the file", e.msg);
}

static void test_oracle_configs(void) {
    static const char *archs[] = {"llama3", "qwen2", "qwen3", "mistral"};
    static const model_arch want_arch[] = {MODEL_ARCH_LLAMA, MODEL_ARCH_QWEN2, MODEL_ARCH_QWEN3,
                                           MODEL_ARCH_MISTRAL};
    static const double theta[] = {500000.0, 1000000.0, 1000000.0, 10000.0};
    for (int i = 0; i < 4; i++) {
        char dir[128];
        snprintf(dir, sizeof dir, ORACLE "/%s/model", archs[i]);
        model_config c;
        if (load(dir, &c) < 0) continue;
        CHECK(c.arch == want_arch[i], "%s", archs[i]);
        CHECK(c.hidden_size == 64 && c.num_hidden_layers == 2 && c.num_attention_heads == 4);
        CHECK(c.num_key_value_heads == 2 && c.head_dim == 16 && c.intermediate_size == 176);
        CHECK(c.vocab_size == 512 && c.max_position_embeddings == 256);
        CHECK(fabs(c.rms_norm_eps - 1e-6) < 1e-12);
        CHECK(c.rope.theta == theta[i], "%s theta %g", archs[i], c.rope.theta);
        CHECK(c.bos_token_id == 1 && c.n_eos == 1 && c.eos_token_ids[0] == 2);
        CHECK(c.pad_token_id == -1);
        CHECK(strcmp(c.dtype, "bfloat16") == 0);
        CHECK(c.tie_word_embeddings == (i == 1 || i == 2), "%s tie", archs[i]);
        CHECK(c.qkv_bias == (i == 1), "%s qkv_bias", archs[i]);
        CHECK(c.o_bias == 0 && c.qk_norm == (i == 2) && c.sliding_window == 0);
        CHECK(c.quant == MODEL_QUANT_NONE);
        if (i == 0) {
            CHECK(c.rope.type == MODEL_ROPE_LLAMA3);
            CHECK(c.rope.factor == 8.0 && c.rope.low_freq_factor == 1.0);
            CHECK(c.rope.high_freq_factor == 4.0);
            CHECK(c.rope.original_max_position_embeddings == 64);
        } else {
            CHECK(c.rope.type == MODEL_ROPE_DEFAULT && c.rope.factor == 1.0);
        }
    }
}

// Real published configs, older transformers spelling (top-level rope_theta,
// rope_scaling).
static void test_published_configs(void) {
    model_config c;
    if (load(CONFIGS "/llama3.1-8b-instruct", &c) == 0) {
        CHECK(c.arch == MODEL_ARCH_LLAMA && c.hidden_size == 4096 && c.num_hidden_layers == 32);
        CHECK(c.num_attention_heads == 32 && c.num_key_value_heads == 8 && c.head_dim == 128);
        CHECK(c.intermediate_size == 14336 && c.vocab_size == 128256);
        CHECK(c.max_position_embeddings == 131072 && fabs(c.rms_norm_eps - 1e-5) < 1e-12);
        CHECK(c.rope.type == MODEL_ROPE_LLAMA3 && c.rope.theta == 500000.0);
        CHECK(c.rope.factor == 8.0 && c.rope.low_freq_factor == 1.0);
        CHECK(c.rope.high_freq_factor == 4.0 && c.rope.original_max_position_embeddings == 8192);
        CHECK(c.bos_token_id == 128000 && c.n_eos == 3);
        CHECK(c.eos_token_ids[0] == 128001 && c.eos_token_ids[1] == 128008);
        CHECK(c.eos_token_ids[2] == 128009 && model_config_is_eos(&c, 128009));
        CHECK(!c.tie_word_embeddings && !c.qkv_bias && !c.o_bias && !c.qk_norm);
    }
    if (load(CONFIGS "/qwen2.5-7b-instruct", &c) == 0) {
        CHECK(c.arch == MODEL_ARCH_QWEN2 && c.hidden_size == 3584 && c.num_hidden_layers == 28);
        CHECK(c.num_attention_heads == 28 && c.num_key_value_heads == 4 && c.head_dim == 128);
        CHECK(c.intermediate_size == 18944 && c.vocab_size == 152064);
        CHECK(c.rope.type == MODEL_ROPE_DEFAULT && c.rope.theta == 1000000.0);
        CHECK(c.qkv_bias && !c.o_bias && !c.qk_norm && !c.tie_word_embeddings);
        CHECK(c.sliding_window == 0, "use_sliding_window false");
        // config.json says 151645; generation_config.json adds 151643
        CHECK(c.n_eos == 2 && c.eos_token_ids[0] == 151645 && c.eos_token_ids[1] == 151643);
        CHECK(c.bos_token_id == 151643);
    }
    if (load(CONFIGS "/qwen3-0.6b", &c) == 0) {
        CHECK(c.arch == MODEL_ARCH_QWEN3 && c.hidden_size == 1024 && c.head_dim == 128);
        CHECK(c.num_attention_heads == 16 && c.num_key_value_heads == 8);
        CHECK(c.qk_norm && !c.qkv_bias && c.tie_word_embeddings);
        CHECK(c.rope.type == MODEL_ROPE_DEFAULT && c.rope.theta == 1000000.0);
        CHECK(c.n_eos == 2 && c.max_position_embeddings == 40960);
        int out, in;
        model_linear_dims(&c, MODEL_LIN_Q, &out, &in);
        CHECK(out == 2048 && in == 1024, "q_proj is [heads*head_dim, hidden]");
        model_linear_dims(&c, MODEL_LIN_O, &out, &in);
        CHECK(out == 1024 && in == 2048, "o_proj is [hidden, heads*head_dim]");
    }
    if (load(CONFIGS "/mistral-7b-v0.1", &c) == 0) {
        CHECK(c.arch == MODEL_ARCH_MISTRAL && c.sliding_window == 4096);
        CHECK(c.rope.theta == 10000.0 && c.vocab_size == 32000 && c.head_dim == 128);
        CHECK(c.bos_token_id == 1 && c.n_eos == 1 && c.eos_token_ids[0] == 2);
    }
    if (load(CONFIGS "/mistral-7b-instruct-v0.3", &c) == 0) {
        CHECK(c.arch == MODEL_ARCH_MISTRAL && c.sliding_window == 0, "sliding_window null");
        CHECK(c.rope.theta == 1000000.0 && c.vocab_size == 32768);
    }
    if (load(CONFIGS "/llama3-8b-bnb-4bit", &c) == 0) {
        CHECK(c.quant == MODEL_QUANT_BNB_NF4 && c.quant_double == 1);
        CHECK(c.rope.type == MODEL_ROPE_DEFAULT, "rope_scaling null");
    }
}

#define BASE "\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":64,\"num_hidden_layers\":2," \
             "\"num_attention_heads\":4,\"intermediate_size\":176,\"vocab_size\":512"

static void test_defaults_and_spellings(void) {
    model_config c;
    err_t e = {{0}};
    const char *min = "{" BASE "}";
    CHECK(model_config_parse(min, strlen(min), "min", &c, &e) == 0, "%s", e.msg);
    CHECK(c.num_key_value_heads == 4 && c.head_dim == 16 && c.rope.theta == 10000.0);
    CHECK(c.bos_token_id == -1 && c.n_eos == 0 && !c.tie_word_embeddings);
    CHECK(c.max_position_embeddings == 2048 && c.rms_norm_eps == 1e-6);

    // the oldest spelling: rope_scaling with "type"
    const char *lin = "{" BASE ",\"rope_scaling\":{\"type\":\"linear\",\"factor\":2.0}}";
    CHECK(model_config_parse(lin, strlen(lin), "lin", &c, &e) == 0, "%s", e.msg);
    CHECK(c.rope.type == MODEL_ROPE_LINEAR && c.rope.factor == 2.0);

    // rope_parameters wins over a top-level rope_theta
    const char *both = "{" BASE ",\"rope_theta\":1.0,\"rope_parameters\":{\"rope_theta\":7.0,"
                       "\"rope_type\":\"default\"}}";
    CHECK(model_config_parse(both, strlen(both), "both", &c, &e) == 0, "%s", e.msg);
    CHECK(c.rope.theta == 7.0);

    // model_type stands in for a missing architectures list
    const char *mt = "{\"model_type\":\"qwen2\",\"hidden_size\":64,\"num_hidden_layers\":1,"
                     "\"num_attention_heads\":4,\"intermediate_size\":8,\"vocab_size\":10}";
    CHECK(model_config_parse(mt, strlen(mt), "mt", &c, &e) == 0, "%s", e.msg);
    CHECK(c.arch == MODEL_ARCH_QWEN2 && c.qkv_bias);

    // Llama attention_bias puts bias on q/k/v and o
    const char *ab = "{" BASE ",\"attention_bias\":true,\"tie_word_embeddings\":true}";
    CHECK(model_config_parse(ab, strlen(ab), "ab", &c, &e) == 0, "%s", e.msg);
    CHECK(c.qkv_bias && c.o_bias && c.tie_word_embeddings);

    // Qwen3 without head_dim takes Qwen3Config's default 128
    const char *q3 = "{\"architectures\":[\"Qwen3ForCausalLM\"],\"hidden_size\":64,"
                     "\"num_hidden_layers\":1,\"num_attention_heads\":4,\"intermediate_size\":8,"
                     "\"vocab_size\":10}";
    CHECK(model_config_parse(q3, strlen(q3), "q3", &c, &e) == 0, "%s", e.msg);
    CHECK(c.head_dim == 128 && c.qk_norm);

    // generation_config.json: fills bos, extends eos without duplicates
    const char *g = "{" BASE ",\"eos_token_id\":2}";
    CHECK(model_config_parse(g, strlen(g), "g", &c, &e) == 0, "%s", e.msg);
    const char *gen = "{\"bos_token_id\":1,\"eos_token_id\":[2,3]}";
    CHECK(model_config_apply_generation(gen, strlen(gen), "gen", &c, &e) == 0, "%s", e.msg);
    CHECK(c.bos_token_id == 1 && c.n_eos == 2 && c.eos_token_ids[1] == 3);
    const char *badgen = "{\"eos_token_id\":[2,\"x\"]}";
    CHECK(model_config_apply_generation(badgen, strlen(badgen), "gen.json", &c, &e) == -1);
    CHECK(strstr(e.msg, "gen.json") && strstr(e.msg, "eos_token_id"), "%s", e.msg);
}

static void test_errors(void) {
    expect_error("{\"architectures\":[\"GPT2LMHeadModel\"]}",
                 "unsupported architecture GPT2LMHeadModel (supported: LlamaForCausalLM");
    expect_error("{\"architectures\":[\"GemmaForCausalLM\"]," BASE "}", "unsupported architecture");
    expect_error("[1,2]", "JSON object");
    expect_error("{\"architectures\":", "invalid JSON");
    expect_error("{\"architectures\":[\"LlamaForCausalLM\"]}", "missing required field hidden_size");
    expect_error("{" BASE ",\"num_key_value_heads\":3}",
                 "num_key_value_heads: 3 does not divide num_attention_heads 4");
    expect_error("{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":66,"
                 "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"intermediate_size\":8,"
                 "\"vocab_size\":10}",
                 "num_attention_heads: 4 does not divide hidden_size 66");
    expect_error("{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":\"64\"}",
                 "hidden_size: expected an integer, got string");
    expect_error("{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":64.5}",
                 "hidden_size: expected an integer");
    expect_error("{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":0}",
                 "hidden_size: 0 is out of range");
    expect_error("{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":1e300}",
                 "hidden_size");
    expect_error("{" BASE ",\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":4.0}}",
                 "rope_scaling.rope_type: RoPE type \"yarn\" is not supported");
    expect_error("{" BASE ",\"rope_parameters\":{\"rope_type\":\"dynamic\",\"factor\":4.0}}",
                 "rope_parameters.rope_type");
    expect_error("{" BASE ",\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8.0}}",
                 "low_freq_factor");
    expect_error("{" BASE ",\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8.0,"
                 "\"low_freq_factor\":1.0,\"high_freq_factor\":4.0}}",
                 "original_max_position_embeddings");
    expect_error("{" BASE ",\"rope_theta\":-1}", "rope_theta");
    expect_error("{" BASE ",\"rms_norm_eps\":0}", "rms_norm_eps");
    expect_error("{" BASE ",\"eos_token_id\":512}", "eos_token_id: 512 is out of range");
    expect_error("{" BASE ",\"eos_token_id\":[1,\"a\"]}", "eos_token_id: expected an integer");
    expect_error("{" BASE ",\"bos_token_id\":-1}", "bos_token_id");
    expect_error("{" BASE ",\"tie_word_embeddings\":1}", "tie_word_embeddings: expected true or false");
    expect_error("{" BASE ",\"hidden_act\":\"gelu\"}", "hidden_act");
    expect_error("{" BASE ",\"mlp_bias\":true}", "mlp_bias");
    expect_error("{" BASE ",\"head_dim\":15}", "head_dim: 15 must be even");
    expect_error("{" BASE ",\"quantization_config\":{\"quant_method\":\"gptq\"}}", "gptq");
    expect_error("{" BASE ",\"quantization_config\":{\"quant_method\":\"bitsandbytes\","
                 "\"load_in_8bit\":true}}",
                 "nf4");
    expect_error("{\"architectures\":[\"Qwen2ForCausalLM\"],\"hidden_size\":64,"
                 "\"num_hidden_layers\":1,\"num_attention_heads\":4,\"intermediate_size\":8,"
                 "\"vocab_size\":10,\"use_sliding_window\":true}",
                 "use_sliding_window");
}

static void test_names(void) {
    model_config c;
    if (load(ORACLE "/qwen3/model", &c) < 0) return;
    char buf[128];
    model_weight_name(MODEL_W_Q, 1, buf, sizeof buf);
    CHECK(strcmp(buf, "model.layers.1.self_attn.q_proj.weight") == 0, "%s", buf);
    model_weight_name(MODEL_W_DOWN, 0, buf, sizeof buf);
    CHECK(strcmp(buf, "model.layers.0.mlp.down_proj.weight") == 0, "%s", buf);
    model_weight_name(MODEL_W_K_NORM, 0, buf, sizeof buf);
    CHECK(strcmp(buf, "model.layers.0.self_attn.k_norm.weight") == 0, "%s", buf);
    model_weight_name(MODEL_W_MLP_NORM, 3, buf, sizeof buf);
    CHECK(strcmp(buf, "model.layers.3.post_attention_layernorm.weight") == 0, "%s", buf);
    model_weight_name(MODEL_W_EMBED, 9, buf, sizeof buf);
    CHECK(strcmp(buf, "model.embed_tokens.weight") == 0, "%s", buf);
    model_weight_name(MODEL_W_LM_HEAD, 0, buf, sizeof buf);
    CHECK(strcmp(buf, "lm_head.weight") == 0, "%s", buf);
    int64_t s[2];
    CHECK(model_weight_shape(&c, MODEL_W_K, s) == 2 && s[0] == 32 && s[1] == 64);
    CHECK(model_weight_shape(&c, MODEL_W_DOWN, s) == 2 && s[0] == 64 && s[1] == 176);
    CHECK(model_weight_shape(&c, MODEL_W_Q_NORM, s) == 1 && s[0] == 16);
    CHECK(model_weight_shape(&c, MODEL_W_EMBED, s) == 2 && s[0] == 512 && s[1] == 64);
    CHECK(model_weight_required(&c, MODEL_W_Q_NORM) && !model_weight_required(&c, MODEL_W_LM_HEAD));
    CHECK(!model_weight_required(&c, MODEL_W_Q_BIAS));
    CHECK(model_linear_parse("gate_proj") == MODEL_LIN_GATE && model_linear_parse("lm_head") == -1);
    CHECK(strcmp(model_linear_path(MODEL_LIN_UP), "mlp.up_proj") == 0);
    CHECK(model_weight_of_linear(MODEL_LIN_DOWN) == MODEL_W_DOWN);
    CHECK(strcmp(model_arch_name(MODEL_ARCH_MISTRAL), "MistralForCausalLM") == 0);
}

static void test_check_weights(void) {
    static const char *archs[] = {"llama3", "qwen2", "qwen3", "mistral"};
    for (int i = 0; i < 4; i++) {
        char dir[128];
        snprintf(dir, sizeof dir, ORACLE "/%s/model", archs[i]);
        model_config c;
        err_t e = {{0}};
        if (load(dir, &c) < 0) continue;
        sft *s = sft_open(dir, &e);
        CHECK(s != NULL, "%s", e.msg);
        if (!s) continue;
        CHECK(model_config_check_weights(&c, s, &e) == 0, "%s: %s", archs[i], e.msg);

        // A config that disagrees with the weights: each error names the
        // tensor and both shapes.
        model_config bad = c;
        bad.intermediate_size = 128;
        CHECK(model_config_check_weights(&bad, s, &e) == -1);
        CHECK(strstr(e.msg, "model.layers.0.mlp.gate_proj.weight: expected shape [128, 64], got "
                            "[176, 64]") != NULL,
              "%s", e.msg);
        bad = c;
        bad.num_hidden_layers = 3;
        CHECK(model_config_check_weights(&bad, s, &e) == -1);
        CHECK(strstr(e.msg, "missing tensor model.layers.2.input_layernorm.weight"), "%s", e.msg);
        bad = c;
        bad.num_hidden_layers = 1;
        CHECK(model_config_check_weights(&bad, s, &e) == -1);
        CHECK(strstr(e.msg, "layer 1 is past num_hidden_layers 1"), "%s", e.msg);
        bad = c;
        bad.tie_word_embeddings = 0;
        int rc = model_config_check_weights(&bad, s, &e);
        if (c.tie_word_embeddings) CHECK(rc == -1 && strstr(e.msg, "missing tensor lm_head.weight"), "%s", e.msg);
        else CHECK(rc == 0, "%s", e.msg);
        bad = c;
        bad.qk_norm = 1;
        rc = model_config_check_weights(&bad, s, &e);
        CHECK(c.qk_norm ? rc == 0 : (rc == -1 && strstr(e.msg, "self_attn.q_norm.weight")), "%s", e.msg);
        bad = c;
        bad.qkv_bias = 1;
        rc = model_config_check_weights(&bad, s, &e);
        CHECK(c.qkv_bias ? rc == 0 : (rc == -1 && strstr(e.msg, "self_attn.q_proj.bias")), "%s", e.msg);
        sft_close(s);
    }
}

// Writes a checkpoint for a tiny config: F32 everywhere except, for
// mode 1, an I32 embedding, and for mode 2, decoder linear weights packed
// as bitsandbytes stores them (U8 [out*in/2, 1]).
static sft *write_tiny(const model_config *c, const char *path, int mode) {
    err_t e = {{0}};
    sft_writer *w = sft_writer_new();
    static float zeros[64];
    for (int k = 0; k < MODEL_W_COUNT; k++) {
        if (!model_weight_required(c, (model_weight)k)) continue;
        char name[128];
        int64_t shape[2];
        int nd = model_weight_shape(c, (model_weight)k, shape);
        model_weight_name((model_weight)k, 0, name, sizeof name);
        sft_dtype dt = SFT_F32;
        if (mode == 1 && k == MODEL_W_EMBED) dt = SFT_I32;
        if (mode == 2 && k >= MODEL_W_Q && k <= MODEL_W_DOWN) {
            dt = SFT_U8;
            shape[0] = shape[0] * shape[1] / 2, shape[1] = 1;
        }
        CHECK(sft_writer_add(w, name, dt, nd, shape, zeros, &e) == 0, "%s", e.msg);
    }
    CHECK(sft_writer_write(w, path, &e) == 0, "%s", e.msg);
    sft_writer_free(w);
    sft *s = sft_open(path, &e);
    CHECK(s != NULL, "%s", e.msg);
    return s;
}

// Dtypes: an integer tensor is refused; a bnb-4bit config wants its packed
// U8 linear weights and refuses float ones.
static void test_check_weights_dtype(void) {
    model_config c, q;
    err_t e = {{0}};
    const char *j = "{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":4,"
                    "\"num_hidden_layers\":1,\"num_attention_heads\":2,\"intermediate_size\":4,"
                    "\"vocab_size\":8,\"tie_word_embeddings\":true";
    char text[512];
    snprintf(text, sizeof text, "%s}", j);
    CHECK(model_config_parse(text, strlen(text), "tiny", &c, &e) == 0, "%s", e.msg);
    snprintf(text, sizeof text,
             "%s,\"quantization_config\":{\"quant_method\":\"bitsandbytes\",\"load_in_4bit\":true,"
             "\"bnb_4bit_quant_type\":\"nf4\",\"bnb_4bit_use_double_quant\":false}}",
             j);
    CHECK(model_config_parse(text, strlen(text), "tiny-bnb", &q, &e) == 0, "%s", e.msg);
    CHECK(q.quant == MODEL_QUANT_BNB_NF4 && q.quant_double == 0);
    char path[256];
    snprintf(path, sizeof path, "/tmp/tessera_test_config_%ld.safetensors", (long)getpid());

    sft *s = write_tiny(&c, path, 1);
    if (s) {
        CHECK(model_config_check_weights(&c, s, &e) == -1);
        CHECK(strstr(e.msg, "model.embed_tokens.weight: expected a float dtype") &&
                  strstr(e.msg, "got I32"),
              "%s", e.msg);
        sft_close(s);
    }
    s = write_tiny(&c, path, 2);
    if (s) {
        CHECK(model_config_check_weights(&q, s, &e) == 0, "%s", e.msg);
        CHECK(model_config_check_weights(&c, s, &e) == -1, "packed weights need the bnb config");
        sft_close(s);
    }
    s = write_tiny(&c, path, 0);
    if (s) {
        CHECK(model_config_check_weights(&c, s, &e) == 0, "%s", e.msg);
        CHECK(model_config_check_weights(&q, s, &e) == -1);
        CHECK(strstr(e.msg, "model.layers.0.self_attn.q_proj.weight: expected U8 packing a 4-bit"),
              "%s", e.msg);
        sft_close(s);
    }
    remove(path);
}

// Floats and layout exactly as Python's json.dumps(indent=2, sort_keys=True).
static void test_json_print(void) {
    static const struct {
        double v;
        const char *want;
    } f[] = {{0.0, "0.0"},          {1e-6, "1e-06"},    {500000.0, "500000.0"}, {0.02, "0.02"},
             {1e16, "1e+16"},        {1.5e-5, "1.5e-05"}, {0.1, "0.1"},          {123.456, "123.456"},
             {-2.5, "-2.5"},         {1e-4, "0.0001"},   {1e15, "1000000000000000.0"},
             {1.0 / 3, "0.3333333333333333"}, {2.5e20, "2.5e+20"}};
    for (size_t i = 0; i < sizeof f / sizeof *f; i++) {
        cJSON *r = cfg_json_float(f[i].v);
        CHECK(r && strcmp(r->valuestring, f[i].want) == 0, "%.17g -> %s, want %s", f[i].v,
              r ? r->valuestring : "(null)", f[i].want);
        cJSON_Delete(r);
    }
    const char *in = "{\"b\":[1,2.5,\"x\\u00e9\\ud83d\\ude00\\n\"],\"a\":{},\"c\":[],\"d\":{\"z\":null,"
                     "\"y\":true}}";
    cJSON *j = cJSON_Parse(in);
    char *out = cfg_json_print(j);
    const char *want = "{\n  \"a\": {},\n  \"b\": [\n    1,\n    2.5,\n    \"x\\u00e9\\ud83d\\ude00\\n\"\n"
                       "  ],\n  \"c\": [],\n  \"d\": {\n    \"y\": true,\n    \"z\": null\n  }\n}";
    CHECK(out && strcmp(out, want) == 0, "got:\n%s", out);
    free(out);
    cJSON_Delete(j);
}

int main(void) {
    test_oracle_configs();
    test_published_configs();
    test_defaults_and_spellings();
    test_errors();
    test_names();
    test_check_weights();
    test_check_weights_dtype();
    test_json_print();
    return check_finish("test_config");
}
