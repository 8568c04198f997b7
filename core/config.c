#include "config.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "utf8.h"
#include "util.h"

static const char *arch_names[MODEL_ARCH_COUNT] = {
    "LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM", "MistralForCausalLM"};
// model_type values, used only when "architectures" is absent.
static const char *arch_types[MODEL_ARCH_COUNT] = {"llama", "qwen2", "qwen3", "mistral"};

const char *model_arch_name(model_arch a) {
    return (unsigned)a < MODEL_ARCH_COUNT ? arch_names[a] : "unknown";
}

// ---- architecture -------------------------------------------------------

static int parse_arch(const json_ctx *c, const cJSON *root, model_config *cfg) {
    const cJSON *archs = json_field(root, "architectures");
    const char *name = NULL;
    if (archs) {
        if (!cJSON_IsArray(archs) || cJSON_GetArraySize(archs) < 1 ||
            !cJSON_IsString(cJSON_GetArrayItem(archs, 0)))
            return err_set(c->err, "%s: field architectures: expected a non-empty list of strings",
                           c->file);
        name = cJSON_GetArrayItem(archs, 0)->valuestring;
        for (int a = 0; a < MODEL_ARCH_COUNT; a++)
            if (strcmp(name, arch_names[a]) == 0) {
                cfg->arch = (model_arch)a;
                return 0;
            }
    } else {
        const char *type = NULL;
        if (json_opt_str(c, root, "model_type", &type) < 0) return -1;
        if (!type)
            return err_set(c->err, "%s: missing field architectures (and model_type)", c->file);
        for (int a = 0; a < MODEL_ARCH_COUNT; a++)
            if (strcmp(type, arch_types[a]) == 0) {
                cfg->arch = (model_arch)a;
                return 0;
            }
        name = type;
    }
    return err_set(c->err,
                   "%s: unsupported architecture %.100s (supported: LlamaForCausalLM, "
                   "Qwen2ForCausalLM, Qwen3ForCausalLM, MistralForCausalLM)",
                   c->file, name);
}

// ---- sizes --------------------------------------------------------------

// Upper bounds keep every product (heads * head_dim * hidden, vocab * hidden)
// far inside int64 and every single dimension inside int.
#define MAX_DIM (1 << 20)
#define MAX_VOCAB (1 << 24)
#define MAX_LAYERS 4096

static int parse_sizes(const json_ctx *c, const cJSON *root, model_config *cfg) {
    int64_t v = 0;
    if (json_req_int(c, root, "hidden_size", 1, MAX_DIM, &v) < 0) return -1;
    cfg->hidden_size = (int)v;
    if (json_req_int(c, root, "num_hidden_layers", 1, MAX_LAYERS, &v) < 0) return -1;
    cfg->num_hidden_layers = (int)v;
    if (json_req_int(c, root, "num_attention_heads", 1, MAX_DIM, &v) < 0) return -1;
    cfg->num_attention_heads = (int)v;
    if (json_req_int(c, root, "intermediate_size", 1, MAX_DIM, &v) < 0) return -1;
    cfg->intermediate_size = (int)v;
    if (json_req_int(c, root, "vocab_size", 1, MAX_VOCAB, &v) < 0) return -1;
    cfg->vocab_size = (int)v;

    v = cfg->num_attention_heads;
    if (json_opt_int(c, root, "num_key_value_heads", 1, MAX_DIM, &v) < 0) return -1;
    cfg->num_key_value_heads = (int)v;
    if (cfg->num_attention_heads % cfg->num_key_value_heads != 0)
        return err_set(c->err,
                       "%s: field num_key_value_heads: %d does not divide num_attention_heads %d",
                       c->file, cfg->num_key_value_heads, cfg->num_attention_heads);

    int r = json_opt_int(c, root, "head_dim", 1, 4096, &v);
    if (r < 0) return -1;
    if (r == 1) {
        cfg->head_dim = (int)v;
    } else if (cfg->arch == MODEL_ARCH_QWEN3) {
        cfg->head_dim = 128; // Qwen3Config's default; real Qwen3 configs write it
    } else {
        if (cfg->hidden_size % cfg->num_attention_heads != 0)
            return err_set(c->err,
                           "%s: field num_attention_heads: %d does not divide hidden_size %d "
                           "(and head_dim is not given)",
                           c->file, cfg->num_attention_heads, cfg->hidden_size);
        cfg->head_dim = cfg->hidden_size / cfg->num_attention_heads;
    }
    if (cfg->head_dim % 2 != 0)
        return err_set(c->err, "%s: field head_dim: %d must be even (RoPE rotates pairs)", c->file,
                       cfg->head_dim);
    if ((int64_t)cfg->num_attention_heads * cfg->head_dim > MAX_DIM)
        return err_set(c->err, "%s: num_attention_heads %d x head_dim %d is too large", c->file,
                       cfg->num_attention_heads, cfg->head_dim);

    // transformers' per-class defaults for the two fields configs may omit
    static const int64_t max_pos_default[MODEL_ARCH_COUNT] = {2048, 32768, 32768, 131072};
    cfg->max_position_embeddings = max_pos_default[cfg->arch];
    if (json_opt_int(c, root, "max_position_embeddings", 1, (int64_t)1 << 40,
                &cfg->max_position_embeddings) < 0)
        return -1;
    cfg->rms_norm_eps = 1e-6;
    if (json_opt_num(c, root, "rms_norm_eps", &cfg->rms_norm_eps) < 0) return -1;
    if (!(cfg->rms_norm_eps > 0 && cfg->rms_norm_eps < 1))
        return err_set(c->err, "%s: field rms_norm_eps: %g must be in (0, 1)", c->file,
                       cfg->rms_norm_eps);
    return 0;
}

// ---- RoPE ---------------------------------------------------------------

// Reads the scaling part of a RoPE description: transformers 5's
// rope_parameters or the older rope_scaling (either "rope_type" or the even
// older "type" names the kind).
static int parse_rope_kind(const json_ctx *c, const cJSON *o, model_rope *rope) {
    const char *type = NULL;
    const char *key = "rope_type";
    if (json_opt_str(c, o, "rope_type", &type) < 0) return -1;
    if (!type) {
        key = "type";
        if (json_opt_str(c, o, "type", &type) < 0) return -1;
    }
    if (!type || strcmp(type, "default") == 0) {
        rope->type = MODEL_ROPE_DEFAULT;
        return 0;
    }
    if (strcmp(type, "linear") == 0) {
        rope->type = MODEL_ROPE_LINEAR;
        if (json_opt_num(c, o, "factor", &rope->factor) != 1 || !(rope->factor > 0))
            return err_set(c->err, "%s: field %sfactor: linear RoPE scaling needs a factor > 0",
                           c->file, c->prefix);
        return 0;
    }
    if (strcmp(type, "llama3") == 0) {
        rope->type = MODEL_ROPE_LLAMA3;
        if (json_opt_num(c, o, "factor", &rope->factor) != 1 || !(rope->factor > 0))
            return err_set(c->err, "%s: field %sfactor: llama3 RoPE scaling needs a factor > 0",
                           c->file, c->prefix);
        if (json_opt_num(c, o, "low_freq_factor", &rope->low_freq_factor) != 1 ||
            json_opt_num(c, o, "high_freq_factor", &rope->high_freq_factor) != 1 ||
            !(rope->low_freq_factor > 0) || !(rope->high_freq_factor > rope->low_freq_factor))
            return err_set(c->err,
                           "%s: fields %slow_freq_factor/high_freq_factor: llama3 RoPE scaling "
                           "needs 0 < low_freq_factor < high_freq_factor",
                           c->file, c->prefix);
        if (json_opt_int(c, o, "original_max_position_embeddings", 1, (int64_t)1 << 40,
                    &rope->original_max_position_embeddings) != 1)
            return err_set(c->err,
                           "%s: field %soriginal_max_position_embeddings: llama3 RoPE scaling "
                           "needs a positive integer",
                           c->file, c->prefix);
        return 0;
    }
    return err_set(c->err,
                   "%s: field %s%s: RoPE type \"%.60s\" is not supported (supported: default, "
                   "linear, llama3)",
                   c->file, c->prefix, key, type);
}

static int parse_rope(const json_ctx *c, const cJSON *root, model_config *cfg) {
    model_rope *rope = &cfg->rope;
    memset(rope, 0, sizeof *rope);
    rope->theta = 10000.0; // every supported class's default
    rope->factor = 1.0;
    if (json_opt_num(c, root, "rope_theta", &rope->theta) < 0) return -1;

    const cJSON *params = json_field(root, "rope_parameters");
    const cJSON *scaling = json_field(root, "rope_scaling");
    const char *name = params ? "rope_parameters." : "rope_scaling.";
    const cJSON *o = params ? params : scaling;
    if (o) {
        if (!cJSON_IsObject(o)) return json_bad_type(c, params ? "rope_parameters" : "rope_scaling",
                                                "an object", o);
        json_ctx sub = {c->file, name, c->err};
        if (json_opt_num(&sub, o, "rope_theta", &rope->theta) < 0) return -1;
        if (parse_rope_kind(&sub, o, rope) < 0) return -1;
    }
    if (!(rope->theta > 0))
        return err_set(c->err, "%s: field rope_theta: %g must be > 0", c->file, rope->theta);
    return 0;
}

// ---- attention variants, ids, dtype, quantization -----------------------

static int parse_attention(const json_ctx *c, const cJSON *root, model_config *cfg) {
    int bias = 0;
    if (json_opt_bool(c, root, "attention_bias", &bias) < 0) return -1;
    cfg->qkv_bias = cfg->o_bias = 0;
    if (cfg->arch == MODEL_ARCH_QWEN2) cfg->qkv_bias = 1; // Qwen2Attention: always, o_proj none
    if (cfg->arch == MODEL_ARCH_LLAMA || cfg->arch == MODEL_ARCH_QWEN3) cfg->qkv_bias = cfg->o_bias = bias;
    cfg->qk_norm = cfg->arch == MODEL_ARCH_QWEN3;

    int mlp_bias = 0;
    if (json_opt_bool(c, root, "mlp_bias", &mlp_bias) < 0) return -1;
    if (mlp_bias)
        return err_set(c->err, "%s: field mlp_bias: true is not supported", c->file);
    const char *act = NULL;
    if (json_opt_str(c, root, "hidden_act", &act) < 0) return -1;
    if (act && strcmp(act, "silu") != 0)
        return err_set(c->err, "%s: field hidden_act: \"%.40s\" is not supported (expected silu)",
                       c->file, act);

    int64_t win = 0;
    if (cfg->arch == MODEL_ARCH_MISTRAL) {
        if (json_opt_int(c, root, "sliding_window", 1, INT32_MAX, &win) < 0) return -1;
    } else {
        // Qwen2/3 apply a window only with use_sliding_window, and then only
        // to layers past max_window_layers; no published checkpoint does.
        int use = 0;
        if (json_opt_bool(c, root, "use_sliding_window", &use) < 0) return -1;
        if (use)
            return err_set(c->err, "%s: field use_sliding_window: true is not supported", c->file);
    }
    cfg->sliding_window = win >= cfg->max_position_embeddings ? 0 : (int)win;
    return 0;
}

// Adds eos ids from an int or a list of ints, skipping ones already known.
static int add_eos(const json_ctx *c, const cJSON *o, model_config *cfg) {
    const cJSON *v = json_field(o, "eos_token_id");
    if (!v) return 0;
    int n = cJSON_IsArray(v) ? cJSON_GetArraySize(v) : 1;
    for (int i = 0; i < n; i++) {
        const cJSON *e = cJSON_IsArray(v) ? cJSON_GetArrayItem(v, i) : v;
        int64_t id = 0;
        if (json_as_int(c, "eos_token_id", e, 0, cfg->vocab_size - 1, &id) < 0) return -1;
        if (model_config_is_eos(cfg, (int)id)) continue;
        if (cfg->n_eos == MODEL_MAX_EOS)
            return err_set(c->err, "%s: field eos_token_id: more than %d ids", c->file,
                           MODEL_MAX_EOS);
        cfg->eos_token_ids[cfg->n_eos++] = (int)id;
    }
    return 0;
}

static int parse_ids(const json_ctx *c, const cJSON *root, model_config *cfg) {
    int64_t v = -1;
    if (json_opt_int(c, root, "bos_token_id", 0, cfg->vocab_size - 1, &v) < 0) return -1;
    cfg->bos_token_id = (int)v;
    v = -1;
    if (json_opt_int(c, root, "pad_token_id", 0, cfg->vocab_size - 1, &v) < 0) return -1;
    cfg->pad_token_id = (int)v;
    cfg->n_eos = 0;
    return add_eos(c, root, cfg);
}

static int parse_misc(const json_ctx *c, const cJSON *root, model_config *cfg) {
    int tie = 0; // false for all four classes in transformers
    if (json_opt_bool(c, root, "tie_word_embeddings", &tie) < 0) return -1;
    cfg->tie_word_embeddings = tie;

    const char *dt = NULL;
    if (json_opt_str(c, root, "dtype", &dt) < 0) return -1;
    if (!dt && json_opt_str(c, root, "torch_dtype", &dt) < 0) return -1;
    cfg->dtype[0] = '\0';
    if (dt) snprintf(cfg->dtype, sizeof cfg->dtype, "%s", dt);
    return 0;
}

static int parse_quant(const json_ctx *c, const cJSON *root, model_config *cfg) {
    cfg->quant = MODEL_QUANT_NONE;
    cfg->quant_double = 0;
    const cJSON *q = json_field(root, "quantization_config");
    if (!q) return 0;
    if (!cJSON_IsObject(q)) return json_bad_type(c, "quantization_config", "an object", q);
    json_ctx sub = {c->file, "quantization_config.", c->err};
    const char *method = NULL, *qtype = NULL;
    int in4 = 0;
    if (json_opt_str(&sub, q, "quant_method", &method) < 0) return -1;
    if (!method || strcmp(method, "bitsandbytes") != 0)
        return err_set(c->err,
                       "%s: field quantization_config.quant_method: \"%.40s\" is not supported "
                       "(only bitsandbytes nf4)",
                       c->file, method ? method : "(missing)");
    if (json_opt_bool(&sub, q, "load_in_4bit", &in4) < 0) return -1;
    if (json_opt_str(&sub, q, "bnb_4bit_quant_type", &qtype) < 0) return -1;
    if (!in4 || !qtype || strcmp(qtype, "nf4") != 0)
        return err_set(c->err,
                       "%s: field quantization_config: only load_in_4bit with bnb_4bit_quant_type "
                       "nf4 is supported",
                       c->file);
    if (json_opt_bool(&sub, q, "bnb_4bit_use_double_quant", &cfg->quant_double) < 0) return -1;
    cfg->quant = MODEL_QUANT_BNB_NF4;
    return 0;
}

int model_config_parse(const char *json, size_t len, const char *name, model_config *cfg,
                       err_t *err) {
    memset(cfg, 0, sizeof *cfg);
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root) return err_set(err, "%s: invalid JSON", name);
    json_ctx c = {name, "", err};
    int rc = -1;
    if (!cJSON_IsObject(root)) {
        err_set(err, "%s: expected a JSON object at the top level", name);
        goto done;
    }
    if (parse_arch(&c, root, cfg) < 0 || parse_sizes(&c, root, cfg) < 0 ||
        parse_rope(&c, root, cfg) < 0 || parse_attention(&c, root, cfg) < 0 ||
        parse_ids(&c, root, cfg) < 0 || parse_misc(&c, root, cfg) < 0 ||
        parse_quant(&c, root, cfg) < 0)
        goto done;
    rc = 0;
done:
    cJSON_Delete(root);
    return rc;
}

int model_config_apply_generation(const char *json, size_t len, const char *name,
                                  model_config *cfg, err_t *err) {
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root) return err_set(err, "%s: invalid JSON", name);
    json_ctx c = {name, "", err};
    int rc = -1;
    int64_t bos = -1;
    if (!cJSON_IsObject(root)) {
        err_set(err, "%s: expected a JSON object at the top level", name);
        goto done;
    }
    if (json_opt_int(&c, root, "bos_token_id", 0, cfg->vocab_size - 1, &bos) < 0) goto done;
    if (cfg->bos_token_id < 0) cfg->bos_token_id = (int)bos;
    if (add_eos(&c, root, cfg) < 0) goto done;
    rc = 0;
done:
    cJSON_Delete(root);
    return rc;
}

// Reads and applies one JSON file of the folder; missing optional files are fine.
static int load_json(const char *dir, const char *file, int optional, model_config *cfg,
                     err_t *err) {
    char *path = util_path_join(dir, file);
    if (!path) return err_set(err, "%s: out of memory", dir);
    int rc = 0;
    if (optional && !util_is_file(path)) goto done;
    size_t len;
    char *text = util_read_file(path, &len, err);
    if (!text) {
        rc = -1;
        goto done;
    }
    rc = optional ? model_config_apply_generation(text, len, path, cfg, err)
                  : model_config_parse(text, len, path, cfg, err);
    free(text);
done:
    free(path);
    return rc;
}

int model_config_load(const char *dir, model_config *cfg, err_t *err) {
    if (load_json(dir, "config.json", 0, cfg, err) < 0) return -1;
    return load_json(dir, "generation_config.json", 1, cfg, err);
}

int model_config_is_eos(const model_config *cfg, int id) {
    for (int i = 0; i < cfg->n_eos; i++)
        if (cfg->eos_token_ids[i] == id) return 1;
    return 0;
}

// ---- tensor names and shapes --------------------------------------------

static const char *linear_names[MODEL_LIN_COUNT] = {"q_proj", "k_proj", "v_proj", "o_proj",
                                                    "gate_proj", "up_proj", "down_proj"};
static const char *linear_paths[MODEL_LIN_COUNT] = {
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};

const char *model_linear_name(model_linear l) { return linear_names[l]; }
const char *model_linear_path(model_linear l) { return linear_paths[l]; }

int model_linear_parse(const char *name) {
    for (int l = 0; l < MODEL_LIN_COUNT; l++)
        if (strcmp(name, linear_names[l]) == 0) return l;
    return -1;
}

void model_linear_dims(const model_config *cfg, model_linear l, int *out, int *in) {
    int q = cfg->num_attention_heads * cfg->head_dim;
    int kv = cfg->num_key_value_heads * cfg->head_dim;
    int h = cfg->hidden_size, f = cfg->intermediate_size;
    switch (l) {
    case MODEL_LIN_Q: *out = q, *in = h; break;
    case MODEL_LIN_K:
    case MODEL_LIN_V: *out = kv, *in = h; break;
    case MODEL_LIN_O: *out = h, *in = q; break;
    case MODEL_LIN_GATE:
    case MODEL_LIN_UP: *out = f, *in = h; break;
    default: *out = h, *in = f; break; // down
    }
}

// Name suffixes (after "model.layers.N.") of the per-layer kinds.
static const char *weight_suffix[MODEL_W_COUNT] = {
    [MODEL_W_EMBED] = "model.embed_tokens.weight",
    [MODEL_W_NORM] = "model.norm.weight",
    [MODEL_W_LM_HEAD] = "lm_head.weight",
    [MODEL_W_ATTN_NORM] = "input_layernorm.weight",
    [MODEL_W_Q] = "self_attn.q_proj.weight",
    [MODEL_W_K] = "self_attn.k_proj.weight",
    [MODEL_W_V] = "self_attn.v_proj.weight",
    [MODEL_W_O] = "self_attn.o_proj.weight",
    [MODEL_W_GATE] = "mlp.gate_proj.weight",
    [MODEL_W_UP] = "mlp.up_proj.weight",
    [MODEL_W_DOWN] = "mlp.down_proj.weight",
    [MODEL_W_Q_BIAS] = "self_attn.q_proj.bias",
    [MODEL_W_K_BIAS] = "self_attn.k_proj.bias",
    [MODEL_W_V_BIAS] = "self_attn.v_proj.bias",
    [MODEL_W_O_BIAS] = "self_attn.o_proj.bias",
    [MODEL_W_Q_NORM] = "self_attn.q_norm.weight",
    [MODEL_W_K_NORM] = "self_attn.k_norm.weight",
    [MODEL_W_MLP_NORM] = "post_attention_layernorm.weight",
};

int model_weight_per_layer(model_weight w) {
    return w != MODEL_W_EMBED && w != MODEL_W_NORM && w != MODEL_W_LM_HEAD;
}

model_weight model_weight_of_linear(model_linear l) { return (model_weight)(MODEL_W_Q + l); }

int model_weight_name(model_weight w, int layer, char *buf, size_t n) {
    if (!model_weight_per_layer(w)) return snprintf(buf, n, "%s", weight_suffix[w]);
    return snprintf(buf, n, "model.layers.%d.%s", layer, weight_suffix[w]);
}

int model_weight_shape(const model_config *cfg, model_weight w, int64_t shape[2]) {
    int64_t q = (int64_t)cfg->num_attention_heads * cfg->head_dim;
    int64_t kv = (int64_t)cfg->num_key_value_heads * cfg->head_dim;
    int out, in;
    switch (w) {
    case MODEL_W_EMBED:
    case MODEL_W_LM_HEAD:
        shape[0] = cfg->vocab_size, shape[1] = cfg->hidden_size;
        return 2;
    case MODEL_W_NORM:
    case MODEL_W_ATTN_NORM:
    case MODEL_W_MLP_NORM:
    case MODEL_W_O_BIAS: shape[0] = cfg->hidden_size; return 1;
    case MODEL_W_Q_BIAS: shape[0] = q; return 1;
    case MODEL_W_K_BIAS:
    case MODEL_W_V_BIAS: shape[0] = kv; return 1;
    case MODEL_W_Q_NORM:
    case MODEL_W_K_NORM: shape[0] = cfg->head_dim; return 1;
    default:
        model_linear_dims(cfg, (model_linear)(w - MODEL_W_Q), &out, &in);
        shape[0] = out, shape[1] = in;
        return 2;
    }
}

int model_weight_required(const model_config *cfg, model_weight w) {
    switch (w) {
    case MODEL_W_LM_HEAD: return !cfg->tie_word_embeddings;
    case MODEL_W_Q_BIAS:
    case MODEL_W_K_BIAS:
    case MODEL_W_V_BIAS: return cfg->qkv_bias;
    case MODEL_W_O_BIAS: return cfg->o_bias;
    case MODEL_W_Q_NORM:
    case MODEL_W_K_NORM: return cfg->qk_norm;
    default: return 1;
    }
}

static int is_float(sft_dtype dt) {
    return dt == SFT_F32 || dt == SFT_F16 || dt == SFT_BF16;
}

// A bnb-4bit checkpoint packs two NF4 codes per byte of a decoder linear weight.
static int is_packed_linear(const model_config *cfg, model_weight w) {
    return cfg->quant == MODEL_QUANT_BNB_NF4 && w >= MODEL_W_Q && w <= MODEL_W_DOWN;
}

static int check_one(const model_config *cfg, const sft *s, model_weight w, int layer,
                     err_t *err) {
    char name[128], want[64], got[160];
    int64_t shape[2];
    model_weight_name(w, layer, name, sizeof name);
    int nd = model_weight_shape(cfg, w, shape);
    util_shape_str(want, sizeof want, nd, shape);
    const sft_tensor *t = sft_find(s, name);
    if (!t)
        return err_set(err, "%s: missing tensor %s (expected shape %s)",
                       sft_count(s) > 0 ? sft_at(s, 0)->file : "model weights", name, want);
    util_shape_str(got, sizeof got, t->ndim, t->shape);
    if (is_packed_linear(cfg, w)) {
        if (t->dtype != SFT_U8 || t->numel * 2 != shape[0] * shape[1])
            return err_set(err,
                           "%s: tensor %s: expected U8 packing a 4-bit %s weight (%lld bytes), "
                           "got %s %s",
                           t->file, name, want, (long long)(shape[0] * shape[1] / 2),
                           sft_dtype_name(t->dtype), got);
        return 0;
    }
    int ok = t->ndim == nd;
    for (int i = 0; ok && i < nd; i++) ok = t->shape[i] == shape[i];
    if (!ok)
        return err_set(err, "%s: tensor %s: expected shape %s, got %s", t->file, name, want, got);
    if (!is_float(t->dtype))
        return err_set(err, "%s: tensor %s: expected a float dtype (F32, F16, BF16), got %s",
                       t->file, name, sft_dtype_name(t->dtype));
    return 0;
}

// A "model.layers.N." tensor with N past num_hidden_layers means the
// weights belong to a different (deeper) model than the config describes.
static int check_layer_range(const model_config *cfg, const sft *s, err_t *err) {
    for (int i = 0; i < sft_count(s); i++) {
        const sft_tensor *t = sft_at(s, i);
        long layer;
        char *end;
        if (strncmp(t->name, "model.layers.", 13) != 0) continue;
        layer = strtol(t->name + 13, &end, 10);
        if (end != t->name + 13 && layer >= cfg->num_hidden_layers)
            return err_set(err, "%s: tensor %s: layer %ld is past num_hidden_layers %d", t->file,
                           t->name, layer, cfg->num_hidden_layers);
    }
    return 0;
}

int model_config_check_weights(const model_config *cfg, const sft *s, err_t *err) {
    for (int w = 0; w < MODEL_W_COUNT; w++) {
        if (!model_weight_required(cfg, (model_weight)w)) continue;
        int layers = model_weight_per_layer((model_weight)w) ? cfg->num_hidden_layers : 1;
        for (int l = 0; l < layers; l++)
            if (check_one(cfg, s, (model_weight)w, l, err) < 0) return -1;
    }
    return check_layer_range(cfg, s, err);
}

// ---- Python-style JSON printer ---------------------------------------------


static void sb_indent(util_buf *b, int depth) {
    util_buf_put(b, "\n", 1);
    for (int i = 0; i < depth; i++) util_buf_put(b, "  ", 2);
}

// ensure_ascii: everything outside printable ASCII is \uXXXX (with UTF-16
// surrogate pairs above the BMP), as Python does.
static void sb_json_string(util_buf *b, const char *s) {
    char tmp[16];
    util_buf_put(b, "\"", 1);
    // Lax decoding, and a byte that starts no sequence is itself (as
    // Latin-1): nothing is lost and the output stays valid JSON.
    const unsigned char *p = (const unsigned char *)s, *end = p + strlen(s);
    while (p < end) {
        size_t adv;
        int32_t d = utf8_decode_lax(p, (size_t)(end - p), &adv);
        uint32_t c = d >= 0 ? (uint32_t)d : p[0];
        p += adv;
        const char *esc = c == '"' ? "\\\"" : c == '\\' ? "\\\\" : c == '\n' ? "\\n"
                        : c == '\r' ? "\\r" : c == '\t' ? "\\t" : c == '\b' ? "\\b"
                        : c == '\f' ? "\\f" : NULL;
        if (esc) {
            util_buf_puts(b, esc);
        } else if (c >= 0x20 && c < 0x7f) {
            char ch = (char)c;
            util_buf_put(b, &ch, 1);
        } else if (c >= 0x10000) {
            c -= 0x10000;
            snprintf(tmp, sizeof tmp, "\\u%04x\\u%04x", 0xd800 + (c >> 10), 0xdc00 + (c & 0x3ff));
            util_buf_puts(b, tmp);
        } else {
            snprintf(tmp, sizeof tmp, "\\u%04x", c);
            util_buf_puts(b, tmp);
        }
    }
    util_buf_put(b, "\"", 1);
}

cJSON *cfg_json_float(double v) {
    char buf[40];
    util_py_float(v, buf, sizeof buf);
    return cJSON_CreateRaw(buf);
}

static int key_cmp(const void *a, const void *b) {
    return strcmp((*(const cJSON *const *)a)->string, (*(const cJSON *const *)b)->string);
}

static void print_value(util_buf *b, const cJSON *v, int depth);

static void print_container(util_buf *b, const cJSON *v, int depth) {
    int is_obj = cJSON_IsObject(v);
    int n = cJSON_GetArraySize(v);
    if (n == 0) {
        util_buf_puts(b, is_obj ? "{}" : "[]");
        return;
    }
    const cJSON **items = malloc((size_t)n * sizeof *items);
    if (!items) {
        b->oom = 1;
        return;
    }
    int k = 0;
    for (const cJSON *c = v->child; c && k < n; c = c->next) items[k++] = c;
    if (is_obj) qsort(items, (size_t)k, sizeof *items, key_cmp);
    util_buf_puts(b, is_obj ? "{" : "[");
    for (int i = 0; i < k; i++) {
        sb_indent(b, depth + 1);
        if (is_obj) {
            sb_json_string(b, items[i]->string);
            util_buf_puts(b, ": ");
        }
        print_value(b, items[i], depth + 1);
        if (i + 1 < k) util_buf_puts(b, ",");
    }
    sb_indent(b, depth);
    util_buf_puts(b, is_obj ? "}" : "]");
    free(items);
}

static void print_value(util_buf *b, const cJSON *v, int depth) {
    char num[48];
    if (cJSON_IsRaw(v)) {
        util_buf_puts(b, v->valuestring);
    } else if (cJSON_IsNull(v)) {
        util_buf_puts(b, "null");
    } else if (cJSON_IsBool(v)) {
        util_buf_puts(b, cJSON_IsTrue(v) ? "true" : "false");
    } else if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        if (d == floor(d) && fabs(d) < 1e16) snprintf(num, sizeof num, "%.0f", d);
        else util_py_float(d, num, sizeof num);
        util_buf_puts(b, num);
    } else if (cJSON_IsString(v)) {
        sb_json_string(b, v->valuestring);
    } else if (cJSON_IsArray(v) || cJSON_IsObject(v)) {
        print_container(b, v, depth);
    } else {
        util_buf_puts(b, "null");
    }
}

char *cfg_json_print(const cJSON *v) {
    util_buf b = {0};
    print_value(&b, v, 0);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}
