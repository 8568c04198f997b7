// model: a loaded decoder (Llama 3, Qwen2/2.5, Qwen3, Mistral) with its
// adapter slots, and the batched forward pass over kernels/backend.h.
//
// The forward is written once for the four architectures, parameterised by
// model_config: q/k/v and o bias, Qwen3's per-head q/k RMSNorm, the RoPE
// kind (default, linear, llama3), tied embeddings, Mistral's sliding window.
//
// A batch is one flat list of T tokens from many sequences: each token has
// its id, its position in its sequence, its sequence id (a kv_cache
// sequence) and an adapter slot (-1: base model). Prefill chunks and single
// decode tokens mix freely in one batch. Within a batch, a token attends to
// the positions of its own sequence up to its own, including those stored
// by earlier tokens of the same batch; positions before the batch must have
// been written by earlier forwards. LoRA is applied per run of consecutive
// tokens that share a slot (sort the batch by slot to make runs long).
//
// Weights: decoder linear weights are NF4 (quantized at load, or loaded as
// they are from a bitsandbytes 4-bit checkpoint) or dense (bf16 kept as
// bf16, f16 converted to f32, f32). Embeddings and lm_head stay dense in
// their file dtype; norms and biases become f32.
#ifndef TESSERA_MODEL_H
#define TESSERA_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "adapter.h"
#include "backend.h"
#include "config.h"
#include "err.h"
#include "kv.h"

typedef enum model_load_quant {
    MODEL_LOAD_NF4,  // quantize decoder linear weights to NF4 (bitsandbytes layout)
    MODEL_LOAD_NONE, // keep them dense as stored
} model_load_quant;

typedef struct model_opts {
    model_load_quant quant;  // default NF4; a bnb-4bit checkpoint is NF4 either way
    int nf4_double_quant;    // default 1 (bnb's compress_statistics); 0: f32 absmax
    int max_tokens;          // tokens per forward the activations hold (default 512)
    int max_slots;           // adapter slots (default 8)
    // The largest LoRA rank an adapter slot accepts (default 64; 0 means the
    // default). model_adapter_set refuses an adapter with any module of a
    // higher rank. vLLM's --max-lora-rank defaults to 16; 64 covers the
    // ranks QLoRA recipes use (8..64) without a flag. The LoRA scratch is
    // sized for it once, with the activations (max_tokens x max_lora_rank
    // floats), so setting an adapter never resizes it.
    int max_lora_rank;
    const bk_ops *bk;        // NULL: the CPU backend
    // Element types through the backend (kernels/backend.h bk_dtype). The
    // defaults are f32, the reference the oracle tests hold to 1e-4; serve
    // and serve --generate choose bf16 (--kv-dtype, --lora-dtype), which
    // halves the KV cache and the slots' LoRA weights for a logits error
    // tests/test_model.c states.
    bk_dtype kv_dtype;       // the caches model_kv_new makes
    bk_dtype lora_dtype;     // A and B as model_adapter_set stores them (rounded to nearest even)
    // 1: logits through a Q8 copy of lm_head (bk_weight_q8: int8, one
    // scale per 64 values; its matmul is q8 mode's int8 dot); the embedding
    // keeps its rows. CPU backend only (model_load refuses it on cuda).
    // Default 0: lm_head as stored.
    int lm_head_q8;
} model_opts;

#define MODEL_DEFAULT_MAX_LORA_RANK 64

model_opts model_opts_default(void);

typedef struct model model;

// Loads dir (config.json, generation_config.json, safetensors) onto the
// backend. o NULL means the defaults. Returns a new model (free with
// model_free) or NULL + err naming the file / tensor and what was expected.
model *model_load(const char *dir, const model_opts *o, err_t *err);
void model_free(model *m);

const model_config *model_get_config(const model *m);
// Bytes of backend memory the weights take (adapters and activations not
// counted).
int64_t model_weight_bytes(const model *m);

// Resizes the activations for up to max_tokens tokens per forward. Call
// between forwards (it allocates); model_forward never does.
int model_reserve(model *m, int max_tokens, err_t *err);
int model_max_tokens(const model *m);

// Copies adapter a (loaded against this model's config) into slot
// (0 <= slot < max_slots), replacing what was there; a may be freed
// afterwards. -1 + err naming the adapter when it does not fit: a slot out
// of range, a rank above max_lora_rank, another layer count or projection
// shapes than the model's (an adapter for another base); or on out of
// memory. On error the slot and every other slot are left as they were.
int model_adapter_set(model *m, int slot, const lora_adapter *a, err_t *err);
void model_adapter_clear(model *m, int slot);
int model_max_slots(const model *m);
int model_max_lora_rank(const model *m);
// 1 if slot holds an adapter.
int model_adapter_used(const model *m, int slot);

// A KV cache shaped for this model (layers, KV heads, head_dim) on its
// backend, of model_opts.kv_dtype; free with kv_free.
kv_cache *model_kv_new(const model *m, int block_size, int n_blocks, int max_seqs, int max_seq_len,
                       err_t *err);
// The bytes one position takes in such a cache (kv_bytes_per_token).
int64_t model_kv_bytes_per_token(const model *m);

// One forward step's tokens. Arrays are host memory, n entries each.
typedef struct model_batch {
    int n;
    const int32_t *token;
    const int32_t *pos;     // position of the token in its sequence
    const int32_t *seq;     // kv_cache sequence id (open, capacity > pos)
    const int32_t *adapter; // slot, -1 = none; NULL: no adapter for any token
    const uint8_t *want;    // 1: return this token's logits; NULL: every token's
} model_batch;

// Runs the batch: stores each token's K/V in kv at (seq, pos) and writes
// the logits of the wanted tokens, in batch order, to logits (n_wanted x
// vocab_size floats, host memory). With logits NULL they stay in backend
// memory instead, at model_logits (for bk->sample: nothing is downloaded),
// which needs model_reserve_logits(m, >= n_wanted) first. Validates the
// batch first (ids, slots, sequences, capacities, logits rows) and returns
// -1 + err naming the token index and field; 0 on success. Allocates
// nothing. A (seq, pos) pair may appear once per batch. Not reentrant: one
// thread runs a model's forwards (the activations are the model's).
int model_forward(model *m, kv_cache *kv, const model_batch *b, float *logits, err_t *err);

// The same forward, for embeddings: instead of logits it writes the wanted
// tokens' final hidden states, after the final norm (what lm_head would
// read), in batch order, to hidden (n_wanted x hidden_size floats, host
// memory). The K/V are stored as model_forward stores them. Same
// validation, errors and threading rules.
int model_forward_hidden(model *m, kv_cache *kv, const model_batch *b, float *hidden, err_t *err);

// Room in backend memory for `rows` rows of logits of forwards called with
// logits NULL (on the CPU a buffer of rows x vocab_size floats; a device
// backend keeps them in its activations, max_tokens rows). Call between
// forwards (it allocates); -1 + err on out of memory.
int model_reserve_logits(model *m, int rows, err_t *err);

// The logits the last model_forward with logits NULL left: (n_wanted,
// vocab_size) in backend memory, borrowed; valid until the next forward or
// model_reserve / model_reserve_logits. NULL on the CPU before
// model_reserve_logits.
float *model_logits(model *m);

// Read-only views of the weights, for the training forward and backward
// (train/lora_train.c), which runs the same layers over its own
// activations. Borrowed from m: valid until model_free.
typedef struct model_view {
    const bk_ops *bk;
    const bk_weight *embed, *lm_head; // (V, C)
    const float *norm;                // (C) the final norm
    const float *inv_freq;            // (head_dim / 2) RoPE frequencies, scaling applied
} model_view;

typedef struct model_layer_view {
    const float *attn_norm, *mlp_norm;     // (C)
    const float *q_norm, *k_norm;          // (head_dim), Qwen3 only; else NULL
    const bk_weight *lin[MODEL_LIN_COUNT]; // q, k, v, o, gate, up, down: (out, in)
    const float *bias[MODEL_LIN_COUNT];    // (out) or NULL
} model_layer_view;

void model_get_view(const model *m, model_view *v);
void model_get_layer_view(const model *m, int layer, model_layer_view *v);

#endif
