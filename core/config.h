// config: a model folder's config.json (+ generation_config.json) as a typed
// struct, the Hugging Face tensor names and shapes that config implies, and
// a check that a safetensors set holds every one of them.
//
// Supported: LlamaForCausalLM (Llama 3), Qwen2ForCausalLM, Qwen3ForCausalLM,
// MistralForCausalLM: one decoder (RMSNorm, GQA attention with RoPE, SwiGLU
// MLP) parameterised by the fields below. Both RoPE spellings are read: the
// top-level `rope_theta` + `rope_scaling` of older transformers (most
// published checkpoints) and transformers 5's `rope_parameters`.
//
// Defaults follow transformers: num_key_value_heads = num_attention_heads,
// head_dim = hidden_size / num_attention_heads (Qwen3: 128, as Qwen3Config),
// tie_word_embeddings false. Qwen2 always has q/k/v bias; Llama and Qwen3
// have q/k/v/o bias when attention_bias is true; Mistral never has bias.
#ifndef TESSERA_CONFIG_H
#define TESSERA_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "safetensors.h"

typedef enum model_arch {
    MODEL_ARCH_LLAMA,
    MODEL_ARCH_QWEN2,
    MODEL_ARCH_QWEN3,
    MODEL_ARCH_MISTRAL,
    MODEL_ARCH_COUNT
} model_arch;

typedef enum model_rope_type {
    MODEL_ROPE_DEFAULT,
    MODEL_ROPE_LINEAR, // positions divided by factor
    MODEL_ROPE_LLAMA3, // Llama 3.1 frequency-dependent scaling
} model_rope_type;

typedef struct model_rope {
    model_rope_type type;
    double theta;
    double factor;           // linear, llama3 (1 for default)
    double low_freq_factor;  // llama3
    double high_freq_factor; // llama3
    int64_t original_max_position_embeddings; // llama3
} model_rope;

// bitsandbytes 4-bit checkpoints (quantization_config.quant_method
// "bitsandbytes", load_in_4bit) store decoder linear weights packed in U8.
typedef enum model_quant {
    MODEL_QUANT_NONE,
    MODEL_QUANT_BNB_NF4,
} model_quant;

#define MODEL_MAX_EOS 16

typedef struct model_config {
    model_arch arch;
    int hidden_size;
    int num_hidden_layers;
    int num_attention_heads;
    int num_key_value_heads;
    int head_dim;
    int intermediate_size;
    int vocab_size;
    int64_t max_position_embeddings;
    double rms_norm_eps;
    model_rope rope;
    int tie_word_embeddings; // no lm_head.weight: logits use embed_tokens
    int qkv_bias;            // q_proj/k_proj/v_proj have .bias
    int o_bias;              // o_proj has .bias (Llama/Qwen3 attention_bias)
    int qk_norm;             // Qwen3: per-head RMSNorm of q and k before RoPE
    int sliding_window;      // Mistral; 0 = full attention
    int bos_token_id;        // -1 = none
    int n_eos;
    int eos_token_ids[MODEL_MAX_EOS]; // config.json's, then generation_config.json's extra ones
    int pad_token_id;        // -1 = none
    char dtype[16];          // torch_dtype / dtype as written ("bfloat16"), "" if absent
    model_quant quant;
    int quant_double;        // bnb_4bit_use_double_quant
} model_config;

// "LlamaForCausalLM" etc.
const char *model_arch_name(model_arch a);

// Reads dir/config.json and, if present, dir/generation_config.json.
// 0, or -1 + err naming the file and field.
int model_config_load(const char *dir, model_config *cfg, err_t *err);

// Parses config.json text; name (a path) is used in error messages.
int model_config_parse(const char *json, size_t len, const char *name, model_config *cfg,
                       err_t *err);

// Applies generation_config.json text to a parsed config: its bos_token_id
// fills a missing one, its eos_token_id (int or list) adds to the eos set.
int model_config_apply_generation(const char *json, size_t len, const char *name,
                                  model_config *cfg, err_t *err);

// 1 if id is one of cfg's eos ids.
int model_config_is_eos(const model_config *cfg, int id);

// The seven linear projections of a decoder layer (what LoRA adapts).
typedef enum model_linear {
    MODEL_LIN_Q,
    MODEL_LIN_K,
    MODEL_LIN_V,
    MODEL_LIN_O,
    MODEL_LIN_GATE,
    MODEL_LIN_UP,
    MODEL_LIN_DOWN,
    MODEL_LIN_COUNT
} model_linear;

// "q_proj", ...
const char *model_linear_name(model_linear l);
// "self_attn.q_proj", "mlp.gate_proj", ... (the path inside model.layers.N)
const char *model_linear_path(model_linear l);
// Parses "q_proj" etc.; -1 if not one of the seven.
int model_linear_parse(const char *name);
// out_features, in_features of a projection's weight [out, in].
void model_linear_dims(const model_config *cfg, model_linear l, int *out, int *in);

// Every tensor of a checkpoint, by kind. Per-layer kinds take a layer index.
typedef enum model_weight {
    MODEL_W_EMBED,    // model.embed_tokens.weight   [vocab, hidden]
    MODEL_W_NORM,     // model.norm.weight           [hidden]
    MODEL_W_LM_HEAD,  // lm_head.weight              [vocab, hidden] (absent when tied)
    MODEL_W_ATTN_NORM,// model.layers.N.input_layernorm.weight [hidden]
    MODEL_W_Q, MODEL_W_K, MODEL_W_V, MODEL_W_O,          // self_attn.*_proj.weight
    MODEL_W_GATE, MODEL_W_UP, MODEL_W_DOWN,              // mlp.*_proj.weight
    MODEL_W_Q_BIAS, MODEL_W_K_BIAS, MODEL_W_V_BIAS, MODEL_W_O_BIAS,
    MODEL_W_Q_NORM, MODEL_W_K_NORM, // self_attn.q_norm.weight [head_dim] (Qwen3)
    MODEL_W_MLP_NORM, // model.layers.N.post_attention_layernorm.weight [hidden]
    MODEL_W_COUNT
} model_weight;

// 1 for the kinds that exist once per layer.
int model_weight_per_layer(model_weight w);
// The weight kind of a linear projection (MODEL_LIN_Q -> MODEL_W_Q).
model_weight model_weight_of_linear(model_linear l);
// Writes the tensor's HF name into buf (layer ignored for global kinds).
// Returns snprintf's result.
int model_weight_name(model_weight w, int layer, char *buf, size_t n);
// Writes the expected shape; returns ndim (1 or 2).
int model_weight_shape(const model_config *cfg, model_weight w, int64_t shape[2]);
// 1 if a checkpoint for cfg must hold this kind (biases, q/k norms and
// lm_head depend on the config).
int model_weight_required(const model_config *cfg, model_weight w);

// Verifies that every required tensor exists with the expected shape and a
// float dtype (F32/F16/BF16; bnb-4bit linear weights: U8 holding out*in/2
// bytes). The error names the tensor and expected vs actual shape.
int model_config_check_weights(const model_config *cfg, const sft *s, err_t *err);

// ---- writing config files ------------------------------------------------

struct cJSON;

// Prints JSON as Python's json.dumps(obj, indent=2, sort_keys=True) does,
// which is how transformers and PEFT write config.json and
// adapter_config.json: two-space indent, keys sorted, non-ASCII as \uXXXX,
// integral numbers without a fraction. Raw items (cfg_json_float) are
// printed verbatim. Returns a new string (free()) or NULL on out of memory.
char *cfg_json_print(const struct cJSON *v);
// A raw cJSON item holding v as Python's repr(float) spells it: "0.0",
// "1e-06", "500000.0". NULL on out of memory.
struct cJSON *cfg_json_float(double v);

#endif
