// bench/gen_model: writes a random model of a real model's shape as a
// bitsandbytes 4-bit (NF4, double-quantized) checkpoint, directly: the
// decoder linear weights are random 4-bit codes and random 8-bit absmax
// codes, so no bf16 weights are ever made or quantized. An 8B model takes
// seconds (about 5.7 GB written), where bf16 weights + quantization would
// take minutes. Used by bench/gpu.sh on the GPU machine (no downloads).
//
//   build/bench/gen_model --preset llama3-8b|qwen2.5-7b --out DIR [--seed N]
//                         [--layers N] [--hidden N] [--heads N] [--kv-heads N]
//                         [--intermediate N] [--vocab N]
//
// Presets: Llama-3-8B (LlamaForCausalLM: hidden 4096, 32 layers, 32 heads,
// 8 KV heads, intermediate 14336, vocab 128256, rope_theta 500000) and
// Qwen2.5-7B (Qwen2ForCausalLM: hidden 3584, 28 layers, 28 heads, 4 KV
// heads, intermediate 18944, vocab 152064, q/k/v bias, rope_theta 1e6),
// both with untied bf16 embeddings and lm_head as the real checkpoints.
// The overrides shrink a preset for tests on a CPU.
//
// Values: NF4 codes uniform over the 16 codes; absmax = offset 0.04 plus the
// signed dynamic map times 0.01 (so 0.03..0.05, weights within +-0.05, std
// about 0.027); embeddings and lm_head uniform with std 0.02 (bf16);
// norms 1; biases uniform with std 0.02. config.json carries transformers'
// quantization_config for bnb nf4 with double quantization, so tessera's
// model_load takes the packed weights as they are (bench/peft_*.py read
// the same config.json, without quantization_config, for the bf16 side).
// The folder appears whole (built beside DIR, then renamed).
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "nf4.h"
#include "safetensors.h"
#include "util.h"

typedef struct shape {
    const char *preset, *arch;
    long hidden, layers, heads, kv_heads, inter, vocab, max_pos, bos, eos;
    double rope_theta, eps;
} shape;

static const shape presets[] = {
    {"llama3-8b", "LlamaForCausalLM", 4096, 32, 32, 8, 14336, 128256, 8192, 128000, 128001, 500000.0, 1e-5},
    {"qwen2.5-7b", "Qwen2ForCausalLM", 3584, 28, 28, 4, 18944, 152064, 32768, 151643, 151643, 1000000.0, 1e-6},
};

static void usage(void) {
    fprintf(stderr, "usage: gen_model --preset llama3-8b|qwen2.5-7b --out DIR [--seed N] [--layers N]\n"
                    "                 [--hidden N] [--heads N] [--kv-heads N] [--intermediate N] [--vocab N]\n");
    exit(2);
}

static long num_arg(const char *flag, const char *v) {
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || *end || end == v || n < 1) {
        fprintf(stderr, "gen_model: %s: expected a positive integer, got \"%s\"\n", flag, v);
        exit(2);
    }
    return n;
}

static char *config_text(const shape *s) {
    const char *type = strcmp(s->arch, "LlamaForCausalLM") == 0 ? "llama" : "qwen2";
    char *buf = malloc(4096);
    if (!buf) return NULL;
    snprintf(buf, 4096,
             "{\n  \"architectures\": [\"%s\"],\n  \"attention_dropout\": 0.0,\n  \"bos_token_id\": %ld,\n"
             "  \"eos_token_id\": %ld,\n  \"hidden_act\": \"silu\",\n  \"hidden_size\": %ld,\n"
             "  \"initializer_range\": 0.02,\n  \"intermediate_size\": %ld,\n  \"max_position_embeddings\": %ld,\n"
             "  \"model_type\": \"%s\",\n  \"num_attention_heads\": %ld,\n  \"num_hidden_layers\": %ld,\n"
             "  \"num_key_value_heads\": %ld,\n"
             "  \"quantization_config\": {\n    \"_load_in_4bit\": true,\n    \"_load_in_8bit\": false,\n"
             "    \"bnb_4bit_compute_dtype\": \"bfloat16\",\n    \"bnb_4bit_quant_storage\": \"uint8\",\n"
             "    \"bnb_4bit_quant_type\": \"nf4\",\n    \"bnb_4bit_use_double_quant\": true,\n"
             "    \"llm_int8_enable_fp32_cpu_offload\": false,\n    \"llm_int8_has_fp16_weight\": false,\n"
             "    \"llm_int8_skip_modules\": null,\n    \"llm_int8_threshold\": 6.0,\n    \"load_in_4bit\": true,\n"
             "    \"load_in_8bit\": false,\n    \"quant_method\": \"bitsandbytes\"\n  },\n"
             "  \"rms_norm_eps\": %g,\n  \"rope_scaling\": null,\n  \"rope_theta\": %.1f,\n"
             "  \"tie_word_embeddings\": false,\n  \"torch_dtype\": \"bfloat16\",\n  \"use_cache\": true,\n"
             "  \"vocab_size\": %ld\n}\n",
             s->arch, s->bos, s->eos, s->hidden, s->inter, s->max_pos, type, s->heads, s->layers, s->kv_heads,
             s->eps, s->rope_theta, s->vocab);
    return buf;
}

// Random NF4 weight (rows x cols) in bitsandbytes' double-quantized layout;
// one allocation owned by t.
static int random_nf4(util_rng *rng, int64_t rows, int64_t cols, nf4_tensor *t, err_t *err) {
    memset(t, 0, sizeof *t);
    t->rows = rows, t->cols = cols, t->numel = rows * cols;
    if (t->numel % NF4_BLOCK) return err_set(err, "%lld x %lld weight: not a multiple of 64", (long long)rows, (long long)cols);
    t->nblocks = t->numel / NF4_BLOCK;
    t->nnested = (t->nblocks + NF4_NESTED_BLOCK - 1) / NF4_NESTED_BLOCK;
    t->dtype = SFT_BF16;
    t->nested = 1;
    memcpy(t->code, nf4_codebook, sizeof t->code);
    nf4_dynamic_map(t->dyn);
    t->offset = 0.04f;
    int64_t nrand = t->numel / 2 + t->nblocks;
    float *nested = t->owned = malloc((size_t)t->nnested * sizeof(float) + (size_t)nrand + 8);
    if (!nested) return err_set(err, "out of memory for a %lld x %lld NF4 weight", (long long)rows, (long long)cols);
    uint8_t *bytes = (uint8_t *)(nested + t->nnested);
    for (int64_t i = 0; i < t->nnested; i++) nested[i] = 0.01f;
    for (int64_t i = 0; i < nrand; i += 8) {
        uint64_t r = util_rng_next(rng);
        memcpy(bytes + i, &r, 8); // the allocation has 8 bytes of slack
    }
    t->packed = bytes, t->absmax_q = bytes + t->numel / 2, t->nested_absmax = nested;
    return 0;
}

// bf16 values uniform with standard deviation std (or all `fill` when std
// is 0); four values per random draw.
static uint16_t *random_bf16(util_rng *rng, int64_t n, double std, float fill) {
    uint16_t *d = malloc((size_t)n * sizeof *d);
    float a = (float)(std * 1.7320508075688772); // uniform on [-a, a] has std a / sqrt(3)
    for (int64_t i = 0; d && i < n; i += 4) {
        uint64_t r = util_rng_next(rng);
        for (int k = 0; k < 4 && i + k < n; k++, r >>= 16)
            d[i + k] = util_f32_to_bf16(std > 0 ? a * ((float)(r & 0xffff) * (2.0f / 65535.0f) - 1.0f) : fill);
    }
    return d;
}

static int linear_of(model_weight w) {
    for (int i = 0; i < MODEL_LIN_COUNT; i++)
        if (model_weight_of_linear((model_linear)i) == w) return i;
    return -1;
}

// Adds every tensor cfg requires to wr; the buffers go to keep / q (freed
// by the caller after the write).
static int add_all(sft_writer *wr, const model_config *cfg, util_rng *rng, void **keep, int *nk, nf4_tensor *q,
                   nf4_bnb_meta *meta, err_t *err) {
    for (int k = 0; k < MODEL_W_COUNT; k++) {
        model_weight wk = (model_weight)k;
        if (!model_weight_required(cfg, wk)) continue;
        int layers = model_weight_per_layer(wk) ? cfg->num_hidden_layers : 1;
        for (int l = 0; l < layers; l++) {
            char name[160];
            int64_t dims[2];
            int nd = model_weight_shape(cfg, wk, dims);
            model_weight_name(wk, l, name, sizeof name);
            int lin = linear_of(wk);
            if (lin >= 0) {
                int i = l * MODEL_LIN_COUNT + lin;
                if (random_nf4(rng, dims[0], dims[1], &q[i], err) < 0 ||
                    nf4_bnb_add(wr, name, &q[i], &meta[i], err) < 0)
                    return err_wrap(err, "tensor %s", name);
                continue;
            }
            int norm = wk == MODEL_W_NORM || wk == MODEL_W_ATTN_NORM || wk == MODEL_W_MLP_NORM ||
                       wk == MODEL_W_Q_NORM || wk == MODEL_W_K_NORM;
            int64_t n = nd == 2 ? dims[0] * dims[1] : dims[0];
            uint16_t *d = random_bf16(rng, n, norm ? 0 : 0.02, 1.0f);
            if (!d) return err_set(err, "tensor %s: out of memory", name);
            keep[(*nk)++] = d;
            if (sft_writer_add(wr, name, SFT_BF16, nd, dims, d, err) < 0) return -1;
        }
    }
    return sft_writer_metadata(wr, "format", "pt", err);
}

static int write_model(const shape *s, const char *tmp, uint64_t seed, err_t *err) {
    char *text = config_text(s);
    if (!text) return err_set(err, "out of memory");
    model_config cfg;
    int rc = model_config_parse(text, strlen(text), "generated config.json", &cfg, err);
    char *path = util_path_join(tmp, "config.json");
    if (rc == 0) rc = util_write_file_atomic(path, text, strlen(text), err);
    free(path);
    free(text);
    if (rc < 0) return -1;
    static const char gen[] = "{\n  \"do_sample\": false,\n  \"transformers_version\": \"4.46.0\"\n}\n";
    path = util_path_join(tmp, "generation_config.json");
    rc = util_write_file_atomic(path, gen, strlen(gen), err);
    free(path);
    if (rc < 0) return -1;

    int n_lin = cfg.num_hidden_layers * MODEL_LIN_COUNT, nk = 0;
    void **keep = calloc((size_t)(cfg.num_hidden_layers + 1) * MODEL_W_COUNT, sizeof *keep);
    nf4_tensor *q = calloc((size_t)n_lin, sizeof *q);
    nf4_bnb_meta *meta = calloc((size_t)n_lin, sizeof *meta);
    sft_writer *wr = sft_writer_new();
    util_rng rng;
    util_rng_seed(&rng, seed);
    rc = keep && q && meta && wr ? add_all(wr, &cfg, &rng, keep, &nk, q, meta, err) : err_set(err, "out of memory");
    path = util_path_join(tmp, "model.safetensors");
    if (rc == 0) rc = sft_writer_write(wr, path, err);
    free(path);
    sft_writer_free(wr);
    for (int i = 0; i < nk; i++) free(keep[i]);
    for (int i = 0; q && i < n_lin; i++) nf4_free(&q[i]);
    free(keep), free(q), free(meta);
    return rc;
}

int main(int argc, char **argv) {
    shape s = {0};
    const char *out = NULL;
    long seed = 1;
    long *over[6] = {NULL};
    long vals[6];
    static const char *flags[6] = {"--layers", "--hidden", "--heads", "--kv-heads", "--intermediate", "--vocab"};
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc) usage();
        const char *a = argv[i], *v = argv[++i];
        int f = -1;
        for (int k = 0; k < 6; k++)
            if (strcmp(a, flags[k]) == 0) f = k;
        if (f >= 0) vals[f] = num_arg(a, v), over[f] = &vals[f];
        else if (strcmp(a, "--out") == 0) out = v;
        else if (strcmp(a, "--seed") == 0) seed = num_arg(a, v);
        else if (strcmp(a, "--preset") == 0) {
            for (size_t k = 0; k < sizeof presets / sizeof *presets; k++)
                if (strcmp(v, presets[k].preset) == 0) s = presets[k];
            if (!s.preset) {
                fprintf(stderr, "gen_model: --preset %s: expected llama3-8b or qwen2.5-7b\n", v);
                return 2;
            }
        } else usage();
    }
    if (!s.preset || !out) usage();
    long *fields[6] = {&s.layers, &s.hidden, &s.heads, &s.kv_heads, &s.inter, &s.vocab};
    for (int k = 0; k < 6; k++)
        if (over[k]) *fields[k] = *over[k];
    if (s.bos >= s.vocab || s.eos >= s.vocab) s.bos = 1, s.eos = 2; // a shrunk vocabulary
    err_t err = {{0}};
    char *tmp = util_dir_tmp_beside(out, &err);
    double t0 = (double)clock();
    int rc = tmp ? write_model(&s, tmp, (uint64_t)seed, &err) : -1;
    if (rc == 0) rc = util_dir_publish(tmp, out, &err);
    else if (tmp) util_rm_rf(tmp);
    free(tmp);
    if (rc < 0) {
        fprintf(stderr, "error gen_model: %s\n", err.msg);
        return 1;
    }
    printf("gen_model: %s (%s shape: hidden %ld, %ld layers, %ld/%ld heads, intermediate %ld, vocab %ld) in %.1f s "
           "of CPU\n",
           out, s.preset, s.hidden, s.layers, s.heads, s.kv_heads, s.inter, s.vocab,
           ((double)clock() - t0) / CLOCKS_PER_SEC);
    return 0;
}
