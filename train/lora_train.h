// lora_train: a frozen base model with one trainable LoRA adapter: the
// training forward, the loss, and the backward pass that gives the
// gradients of every LoRA A and B (llm.c style: no autograd; each layer's
// backward mirrors its forward in reverse order).
//
// A micro-batch is a list of whole sequences, packed one after another into
// a flat batch of N tokens (no padding, no KV cache); token t attends to
// the earlier tokens of its own sequence. The loss is the cross-entropy of
// the logits at position i predicting the token at i + 1, over the
// positions whose next token is a target (mask[i + 1] = 1) — transformers'
// shifted causal-LM loss. Logits are computed only at those positions, a
// chunk of rows at a time, so the (N, vocab) logits never exist whole.
//
// The per-layer forward calls the same backend ops as core/model.c's
// serving forward (matmul, rmsnorm, rope, swiglu; attention_train and
// lora_train compute what attention and lora do and keep what backward
// needs), so a trained adapter behaves in serving as it did in training.
//
// Memory: one backend allocation for the activations of max_tokens
// tokens (every layer's saved tensors; with recompute only each layer's
// input, the rest recomputed layer by layer in backward), one for the LoRA
// parameters and their gradients. Nothing is allocated per step.
// Any backend with the training ops works: the batch (token ids,
// positions, target rows) is built in host memory and uploaded, the loss
// downloaded a chunk of rows at a time; on a device backend lt_params and
// lt_grads are device memory (read them with lt_get_params / download).
#ifndef TESSERA_LORA_TRAIN_H
#define TESSERA_LORA_TRAIN_H

#include <stdint.h>

#include "adapter.h"
#include "err.h"
#include "model.h"

typedef struct lt_opts {
    int rank;
    double alpha;
    int rslora;        // scale alpha / sqrt(rank) instead of alpha / rank
    unsigned targets;  // bit l set: model_linear l is adapted in every layer
    float dropout;     // LoRA dropout on the input of A (PEFT's lora_dropout)
    int max_tokens;    // tokens per micro-batch (sum of sequence lengths)
    int recompute;     // keep each layer's input only; recompute the layer in backward
} lt_opts;

// One adapted projection: A (rank, in) and B (out, rank) at these offsets
// of the parameter (and gradient) array. rank 0: not adapted.
typedef struct lt_module {
    int rank, in, out;
    float scale;
    int64_t a_off, b_off;
} lt_module;

// One sequence of a micro-batch: mask[i] = 1 makes ids[i] a target
// (data_example's convention; mask[0] is ignored, nothing predicts it).
typedef struct lt_seq {
    const int32_t *ids;
    const uint8_t *mask;
    int n;
} lt_seq;

typedef struct lt_model lt_model;

// A trainable LoRA (rank, alpha, targets of o) over m, parameters zero
// (lt_init_peft fills them). Borrows m (keep it until lt_free). Returns a
// new lt_model or NULL + err.
lt_model *lt_new(model *m, const lt_opts *o, err_t *err);
// The same with a's shapes, scales and values (dropout, max_tokens,
// recompute from o; its rank/alpha/targets are ignored).
lt_model *lt_from_adapter(model *m, const lora_adapter *a, const lt_opts *o, err_t *err);
void lt_free(lt_model *t);

// PEFT's initialisation: A ~ U(-1/sqrt(in), 1/sqrt(in)) (kaiming_uniform_
// with a = sqrt(5)), B = 0, drawn in module order (layer, then q k v o
// gate up down), A row-major, from util_rng seeded with seed.
void lt_init_peft(lt_model *t, uint64_t seed);

int64_t lt_n_params(const lt_model *t);
// Bytes of backend memory the activations and scratch take.
int64_t lt_activation_bytes(const lt_model *t);
float *lt_params(lt_model *t); // backend memory, n_params floats
float *lt_grads(lt_model *t);  // same layout
// Copies the parameters to / from host memory (n_params floats).
void lt_get_params(lt_model *t, float *host);
void lt_set_params(lt_model *t, const float *host);
const lt_module *lt_module_at(const lt_model *t, int layer, model_linear l);
void lt_zero_grads(lt_model *t);

// Targets in a micro-batch: positions 1.. with mask 1.
int64_t lt_count_targets(const lt_seq *seqs, int n);

// Forward, loss and backward of one micro-batch: adds the gradient of
// grad_scale * (sum of the target losses) to the gradients (call
// lt_zero_grads first for a fresh step). *loss_sum gets the sum of the
// target losses (double). dropout_key seeds this micro-batch's dropout
// masks (each layer and projection derives its own). Returns 0, or -1 +
// err for a bad batch (empty, too many tokens, an id out of range).
int lt_forward_backward(lt_model *t, const lt_seq *seqs, int n, float grad_scale, uint64_t dropout_key,
                        double *loss_sum, err_t *err);
// The loss alone (no dropout, no gradients), for validation.
int lt_forward_loss(lt_model *t, const lt_seq *seqs, int n, double *loss_sum, err_t *err);

// The PEFT key of module (layer, l)'s A or B:
// base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight.
void lt_peft_key(int layer, model_linear l, int is_b, char *buf, size_t n);

// Writes dir/adapter_config.json (lora_config_to_json of lc) and
// dir/adapter_model.safetensors (every A and B as F32 under its PEFT key,
// metadata format=pt). dir must exist. 0, or -1 + err naming the file.
int lt_write_peft(lt_model *t, const lora_config *lc, const char *dir, err_t *err);

#endif
