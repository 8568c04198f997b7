// backend: the table of ops the forward pass is written over. The CPU
// backend (kernels/cpu/) is the reference; a CUDA backend fills the same
// table with kernels of the same names and shapes, and is tested against it.
//
// Every pointer an op takes lives in the backend's memory (bk_ops.alloc;
// plain host memory on the CPU) unless the comment says "host". Activations
// are f32 and row-major; the KV cache and serving LoRA weights are f32 or
// bf16 (bk_dtype); every op accumulates in f32. Shapes are written as
// in llm.c: `x (T, C)` is T rows of C floats.
//
// Ops are synchronous from the caller's point of view on the CPU. A device
// backend may queue them; `download` is the point where results are ready.
//
// Batch invariance: every CPU op computes each output element with the same
// sequence of float operations whatever T is and whatever other rows share
// the call, so a token's logits do not depend on what else is in its batch
// (tests/test_model.c checks this bit for bit).
#ifndef TESSERA_BACKEND_H
#define TESSERA_BACKEND_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "err.h"
#include "nf4_tensor.h"
#include "numeric.h"

// The largest head_dim the attention ops accept (every model in use has
// 64..256).
#define BK_MAX_HEAD_DIM 512

typedef enum bk_wtype {
    BK_W_F32,  // dense float
    BK_W_BF16, // dense bf16 (uint16_t), converted to f32 a row tile at a time
    BK_W_NF4,  // bitsandbytes NF4 (nf4_tensor.h), dequantized a row tile at a time
    BK_W_Q8,   // int8 rows, one f32 scale per 64 values (bk_weight_q8); CPU backend only
} bk_wtype;

// The element type of a buffer that is not always f32: the KV cache and
// the A / B of serving LoRA slots. bf16 is stored as uint16_t, rounded to
// nearest even from f32 (num_f32_to_bf16) and read back exactly
// (num_bf16_to_f32); the ops that read it convert a row at a time and
// accumulate in f32, so an op over a bf16 buffer computes what it computes
// over an f32 buffer holding the same (rounded) values, bit for bit.
typedef enum bk_dtype {
    BK_DT_F32 = 0, // float (the default: a zeroed struct means f32)
    BK_DT_BF16,    // uint16_t
} bk_dtype;

// Bytes per element of dt.
static inline int bk_dtype_bytes(bk_dtype dt) { return dt == BK_DT_BF16 ? 2 : 4; }
// "f32" or "bf16".
static inline const char *bk_dtype_name(bk_dtype dt) { return dt == BK_DT_BF16 ? "bf16" : "f32"; }
// The dtype bk_dtype_name gives `name`: 0, or -1 for any other name.
static inline int bk_dtype_parse(const char *name, bk_dtype *dt) {
    if (strcmp(name, "f32") == 0) return *dt = BK_DT_F32, 0;
    if (strcmp(name, "bf16") == 0) return *dt = BK_DT_BF16, 0;
    return -1;
}

// A weight matrix W (rows = OC, cols = C), row-major, in backend memory.
// For NF4, `nf4` is the tensor description with its pointers (packed,
// absmax or absmax_q + nested_absmax) in backend memory; nf4.owned is NULL.
// `mem` is the one allocation holding the data (the owner of the weight
// frees it with bk_ops.free; NULL when the data is borrowed).
//
// Q8 (cols % 64 == 0): `data` is uint8_t[rows*cols], each value
// round(w / scale) + 128 with scale = the block's absmax / 127, and each
// 64-value block stored de-interleaved (its 32 even elements, then its 32
// odd ones: the order q8 mode's int8 dot reads, kernels/cpu/q8.h);
// q8_scale is float[rows*cols/64]. Its matmul is always q8 mode's int8
// dot, whatever bk_cpu_set_matmul says. The CUDA backend has no Q8
// kernels: model_load refuses a Q8 lm_head on it.
typedef struct bk_weight {
    bk_wtype type;
    int64_t rows, cols;
    const void *data; // F32: float[rows*cols]; BF16: uint16_t[rows*cols]; Q8: see above
    nf4_tensor nf4;   // NF4 only
    const float *q8_scale; // Q8 only
    void *mem;
} bk_weight;

// One contiguous run of tokens [start, start + count) of a batch that share
// an adapter, for one adapted projection: y[t] += scale * B (A x[t]).
// The array of segments is host memory; A and B are backend memory, both
// of element type `dtype` (f32 or bf16: serving slots; training's own
// lora_train / lora_backward stay f32).
typedef struct bk_lora_seg {
    int start, count;
    int rank;
    float scale;
    const void *A;  // (rank, C)
    const void *B;  // (OC, rank)
    bk_dtype dtype; // of A and B
} bk_lora_seg;

// Attention over a paged KV cache. The cache of one layer holds n_blocks
// blocks of block_size token slots, each slot n_kv_heads * head_dim
// elements of kv_dtype (f32 or bf16):
// k_cache (n_blocks * block_size, n_kv_heads * head_dim), same for v_cache.
// Position j of sequence s lives in slot
//   block_table[s * table_stride + j / block_size] * block_size + j % block_size.
// Token t (a query at position pos[t] of sequence seq[t]) attends to
// positions max(0, pos[t] - window + 1) .. pos[t] of its own sequence
// (window 0 = no window), which must all have been stored (kv_store) before.
typedef struct bk_attn_args {
    const void *k_cache, *v_cache; // elements of kv_dtype
    const int32_t *block_table; // (max_seqs, table_stride)
    int table_stride;
    int block_size;
    const int32_t *seq, *pos;   // (T)
    int n_heads, n_kv_heads, head_dim;
    int window;
    float scale;                // 1/sqrt(head_dim) for every supported model
    bk_dtype kv_dtype;          // of k_cache and v_cache
} bk_attn_args;

// ---- a forward step's metadata ------------------------------------------------
//
// model_forward hands a step's int32 metadata to the backend in ONE upload:
// a host staging buffer laid out exactly as its backend copy, S int32s per
// array with S = bk_step_stride(T) (T rounded up to 16: every array starts
// on a 64-byte boundary), N the wanted rows:
//
//   [0, T)        tok   token ids                 (embed)
//   [S, S+T)      pos   positions                 (rope, attention)
//   [2S, 2S+T)    seq   kv_cache sequence ids     (attention)
//   [3S, 3S+T)    slot  KV cache slot per token   (kv_store)
//   [4S, 4S+N)    rows  wanted rows, batch order  (gather_rows)
//
// so the upload is (4S + N) * 4 bytes from the start of the buffer. The
// block tables are not in it: they change rarely (a sequence growing into
// a new block, or opening), and core/kv.c uploads only the rows that
// changed (kv_sync_table). Nothing else a step needs is uploaded: adapter
// segments are host memory (bk_lora_seg) and weights are resident. A
// device backend that runs a whole step as one graph can capture it from
// this one copy.
static inline int bk_step_stride(int T) { return (T + 15) / 16 * 16; }

// ---- sampling (bk_ops.sample) ---------------------------------------------------
//
// The sampler's per-row arguments, all host memory (core/sampler.h fills
// them from a sequence's state and its request; it documents the order of
// operations the op follows). Sparse throughout: the op reads O(tokens
// seen + biased) entries besides the row itself, never an O(V) host array,
// except the optional grammar bitset.
#define BK_SAMPLE_MAX_TOP 20

// A token that appeared in the prompt or the output so far.
typedef struct bk_sample_seen {
    int32_t token;
    uint32_t count;     // times generated (0: seen in the prompt only)
    uint32_t in_prompt; // 1 if it appears in the prompt
} bk_sample_seen;

typedef struct bk_logit_bias {
    int32_t token;
    float bias; // [-100, 100]
} bk_logit_bias;

typedef struct bk_logprob {
    int32_t token;
    float logprob;
} bk_logprob;

typedef struct bk_sample_row {
    float temperature;              // below 1e-5: greedy
    int top_k;                      // <= 0: off
    float top_p, min_p;             // 1, 0: off
    float repetition_penalty;       // 1: off (applies to every seen token)
    float presence_penalty, frequency_penalty; // over tokens with count > 0
    const bk_sample_seen *seen;     // (n_seen), distinct tokens
    int n_seen;
    const bk_logit_bias *bias;      // (n_bias)
    int n_bias;
    const uint32_t *allowed;        // (ceil(V / 32)) bit t%32 of word t/32 set = token t allowed; NULL: all
    double u;                       // the draw in [0, 1), taken by the caller (greedy ignores it)
    int top_logprobs;               // [0, BK_SAMPLE_MAX_TOP] alternatives wanted
    int want_logprob;               // 1: the chosen token's logprob wanted
} bk_sample_row;

typedef struct bk_sample_out {
    int32_t token;                  // -1: no finite logit left (the row is skipped)
    float logprob;                  // when want_logprob or top_logprobs > 0; else NAN
    int n_top;                      // min(top_logprobs, V); 0 when token is -1
    bk_logprob top[BK_SAMPLE_MAX_TOP]; // most likely first, ties: lower id
} bk_sample_out;

// ---- training (train/) -------------------------------------------------------
//
// LoRA dropout as PEFT applies it (nn.Dropout on the input of lora_A):
// element i = t * C + c of the input x (T, C) is kept with probability
// 1 - p and then scaled by 1 / (1 - p). Whether it is kept is a pure
// function of (key, i) (bk_dropout_keep), so the backward pass and a
// recomputed forward see the same mask without storing it, on any backend:
// the one function is compiled for the host and, under nvcc, the device.
typedef struct bk_dropout {
    float p;      // 0: no dropout
    uint64_t key;
} bk_dropout;

static inline
#ifdef __CUDACC__
__host__ __device__
#endif
int bk_dropout_keep(const bk_dropout *d, uint64_t i) {
    uint64_t z = num_splitmix64(d->key + i * 0x9E3779B97F4A7C15ull); // output i of splitmix64 seeded with key
    return (float)(z >> 40) * 0x1p-24f >= d->p;
}

// Causal attention for training: a batch of whole sequences packed one after
// another (no KV cache, no padding). Token t attends to the tokens
// max(start[t], t - window + 1) .. t of the batch (window 0 = no window),
// start[t] being the index of the first token of t's sequence.
typedef struct bk_train_attn {
    const int32_t *start; // (T)
    int n_heads, n_kv_heads, head_dim;
    int window;
    float scale;
} bk_train_attn;

// One AdamW step as torch.optim.AdamW takes it (decoupled weight decay),
// its scalars formed on the host in double and rounded, as torch forms them
// in Python: g = g * grad_scale; p = p * decay; m = lerp(m, g, 1 - beta1);
// v = v * beta2 + (1 - beta2) g^2; p -= step_size * m / (sqrt(v) / bc2_sqrt + eps).
typedef struct bk_adamw {
    float beta1, beta2, eps;
    float decay;          // 1 - lr * weight_decay
    float step_size;      // lr / (1 - beta1^step)
    float bc2_sqrt;       // sqrt(1 - beta2^step)
    float grad_scale;     // gradients are multiplied by this first (clipping)
} bk_adamw;

typedef struct bk_ops {
    const char *name;
    int host_memory; // 1 if backend memory is ordinary host memory (CPU)

    // Memory. alloc returns NULL + err on failure; free(NULL) is a no-op.
    void *(*alloc)(size_t bytes, err_t *err);
    void (*free)(void *p);
    void (*upload)(void *dst, const void *host_src, size_t bytes);
    void (*download)(void *host_dst, const void *src, size_t bytes);

    // tok (T) token ids, embed (V, C) -> x (T, C): row gather (bf16 rows converted)
    void (*embed)(float *x, const int32_t *tok, int T, const bk_weight *embed);

    // x (N, C), w (C) -> out (N, C): out = x / sqrt(mean(x^2) + eps) * w.
    // out may equal x. Qwen3's per-head q/k norm is this op with N = T * heads,
    // C = head_dim.
    void (*rmsnorm)(float *out, const float *x, const float *w, int64_t N, int C, float eps);

    // x (T, C), W (OC, C), bias (OC) or NULL -> out (T, OC) = x W^T + bias.
    // out must not alias x.
    void (*matmul)(float *out, const float *x, const bk_weight *W, const float *bias, int T);

    // LoRA over adapter segments (SGMV), one call for the whole batch:
    // x (T, C) -> y (T, OC) += seg.scale * B_s (A_s x[t]) for t in each segment.
    // Tokens outside every segment are untouched; ranks and A / B dtypes
    // may differ per segment (bf16 rows converted, f32 accumulation). v is
    // scratch of (T, max rank) floats.
    void (*lora)(float *y, const float *x, float *v, int C, int OC, const bk_lora_seg *seg, int nseg);

    // x (T, H, D) in place: rotate each head's pairs (i, i + D/2) by
    // pos[t] * inv_freq[i] (the "rotate_half" layout of Llama/Qwen/Mistral).
    // inv_freq (D/2) already holds any linear / llama3 scaling.
    void (*rope)(float *x, const int32_t *pos, int T, int H, int D, const float *inv_freq);

    // k, v (T, KV) -> cache slots slot[t] of k_cache, v_cache (rows of KV
    // elements of dtype: f32 copied, bf16 rounded to nearest even).
    void (*kv_store)(void *k_cache, void *v_cache, const float *k, const float *v, const int32_t *slot, int T,
                     int KV, bk_dtype dtype);

    // q (T, H, D) -> out (T, H, D): softmax(q k^T * scale) v per head over the
    // positions described above; query head h reads KV head h / (H / KVH).
    void (*attention)(float *out, const float *q, int T, const bk_attn_args *a);

    // gate, up (N) -> out (N) = silu(gate) * up; out may equal gate.
    void (*swiglu)(float *out, const float *gate, const float *up, int64_t N);

    // x (N) += y (N)
    void (*residual)(float *x, const float *y, int64_t N);

    // x (T, C), rows (N) -> out (N, C) = x[rows[i]]; out must not alias x.
    void (*gather_rows)(float *out, const float *x, const int32_t *rows, int N, int C);

    // logits (N, V) -> out (N, host): one token per row, as core/sampler.h
    // specifies (allowed mask, penalties, bias, logprobs, temperature,
    // top_k / top_p / min_p, the draw u), rows[i] (host) for row i. The op
    // may overwrite the logits. Returns when out is filled.
    void (*sample)(float *logits, int N, int V, const bk_sample_row *rows, bk_sample_out *out);

    // ---- training: forward variants that keep what backward needs, and the
    // backward ops. Base weights are frozen: gradients flow to activations
    // and LoRA weights only. Gradient outputs named "accumulate" add (1) or
    // overwrite (0); dA, dB always add.

    // q (T, H, D), k, v (T, KVH, D) -> out (T, H, D): the softmax attention
    // `attention` computes (the same math; the two round differently: the
    // serving op works in key blocks), over the packed sequences of
    // bk_train_attn; lse (T, H) gets each
    // row's log-sum-exp of the scaled scores (what backward needs).
    void (*attention_train)(float *out, float *lse, const float *q, const float *k, const float *v, int T,
                            const bk_train_attn *a);
    // dout (T, H, D) and the forward's q, k, v, out, lse -> dq (T, H, D),
    // dk, dv (T, KVH, D) (overwritten); delta (T, H) scratch.
    void (*attention_backward)(float *dq, float *dk, float *dv, float *delta, const float *dout, const float *q,
                               const float *k, const float *v, const float *out, const float *lse, int T,
                               const bk_train_attn *a);

    // One LoRA over every token, with dropout on its input:
    // x (T, C), A (rank, C), B (OC, rank) -> v (T, rank) = A drop(x) (kept
    // for backward), y (T, OC) += scale * B v. Without dropout the same
    // float operations as `lora`.
    void (*lora_train)(float *y, float *v, const float *x, const float *A, const float *B, int T, int C, int OC,
                       int rank, float scale, const bk_dropout *drop);
    // dy (T, OC), x, v, A, B as lora_train had them, u = scale * dy B
    // (T, rank, scratch) -> dA (rank, C) += u^T drop(x), dB (OC, rank) +=
    // scale * dy^T v, dx (T, C) += the dropout mask (scaled) * (u A).
    void (*lora_backward)(float *dx, float *dA, float *dB, float *u, const float *dy, const float *x, const float *v,
                          const float *A, const float *B, int T, int C, int OC, int rank, float scale,
                          const bk_dropout *drop);

    // dy (T, OC), W (OC, C) -> dx (T, C) = dy W (the input gradient of
    // matmul; bf16 / NF4 tiles converted as matmul does).
    void (*matmul_backward)(float *dx, const float *dy, const bk_weight *W, int T, int accumulate);

    // dy (N, C), the forward's input x (N, C) and w (C) -> dx (N, C).
    // dx may equal dy when not accumulating.
    void (*rmsnorm_backward)(float *dx, const float *dy, const float *x, const float *w, int64_t N, int C, float eps,
                             int accumulate);

    // dx (T, H, D) in place: the inverse rotation of `rope`.
    void (*rope_backward)(float *dx, const int32_t *pos, int T, int H, int D, const float *inv_freq);

    // dout, gate, up (N) -> dgate, dup (N) of out = silu(gate) * up.
    // dgate may equal dout.
    void (*swiglu_backward)(float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                            int64_t N);

    // logits (N, V) in place -> (softmax(logits) - onehot(target)) * grad_scale;
    // loss (N) = logsumexp(logits) - logits[target] per row.
    void (*cross_entropy)(float *logits, float *loss, const int32_t *target, int N, int V, float grad_scale);

    // One AdamW step on n parameters p with gradients g and moments m, v.
    void (*adamw)(float *p, const float *g, float *m, float *v, int64_t n, const bk_adamw *h);

    // sum(x^2) in double, the same value for any thread count (host result).
    double (*sumsq)(const float *x, int64_t n);
} bk_ops;

// ---- choosing a backend ------------------------------------------------------

// What bk_open is asked for besides the device.
typedef struct bk_open_opts {
    int threads; // CPU threads (bk_cpu_set_threads) when > 0; 0 leaves the pool as it is
} bk_open_opts;

// The backend `device` names: "cpu" (or NULL) the CPU backend, "cuda" the
// CUDA backend on the current GPU (kernels/cuda/cu_backend.h). The CPU pool
// is sized first whatever the device (o may be NULL). Returns the backend's
// process-wide table (not freed; the CPU pool ends with bk_cpu_shutdown), or
// NULL + err naming the device: not cpu or cuda, "cuda" in a build without
// the CUDA backend (CUDA=0, or no nvcc), or no usable GPU.
// Defined in kernels/backend.c, linked with the CUDA objects (Makefile DEV_OBJ).
const bk_ops *bk_open(const char *device, const bk_open_opts *o, err_t *err);

// 1 when this build has the CUDA backend, so a command line can reject
// --device cuda before loading anything; 0 otherwise.
int bk_has_cuda(void);

// The CPU backend (kernels/cpu). Threaded with a process-wide pool; see
// kernels/cpu/pool.h for sizing it (bk_cpu_set_threads).
const bk_ops *bk_cpu(void);

// Threads the CPU ops use: n >= 1, or 0 for the number of online CPUs (or
// $TESSERA_THREADS when set). Call between forward passes, not during one.
void bk_cpu_set_threads(int n);
int bk_cpu_threads(void);
// The CPU matmul kernels, process-wide: level 0 the portable reference
// kernels, 1 AVX2 + FMA, 2 AVX2 + FMA with AVX-512VL NF4 lookups (the same
// results as 1, faster); the best the CPU has up to `level` is used. The
// default is the best available, capped by $TESSERA_SIMD when set. Each set
// is batch-invariant; 1 and 2 differ from 0 by f32 rounding (fused
// multiply-add, another summation order) within the bound
// tests/test_kernels.c states. Returns the set now in use: "portable",
// "avx2+fma" or "avx512vl". Between forward passes, like bk_cpu_set_threads.
const char *bk_cpu_set_simd(int level);
const char *bk_cpu_simd(void);
// The CPU matmul mode, process-wide (between forward passes, like
// bk_cpu_set_simd):
//   BK_MATMUL_EXACT (the default): the f32 kernels above, within 1e-5 of a
//     double reference; training and the oracle tests use it.
//   BK_MATMUL_Q8: NF4 weights with cols % 64 == 0 as int8 codes
//     (round(code * 127)), each token's activations quantized per 64-value
//     block to int8 (absmax / 127, round to nearest), integer dot products
//     (AVX-512 VNNI vpdpbusd, AVX2 vpmaddubsw, or the portable reference:
//     the same bits), f32 per-block scaling (kernels/cpu/q8.h). Other
//     weights (f32, bf16, NF4 with other widths) stay exact. Still
//     batch-invariant: a token's outputs are the same bits whatever T, the
//     thread count or the kernel set. Error per output: at most the sum
//     over its terms of |x| s_w / 2 + |w| s_x / 2 + s_x s_w / 4 (s = a
//     block's absmax / 127: each operand's rounding) plus f32 rounding;
//     measured on random weights 0.05% (4864 columns) to 2% (128 columns,
//     an outlier in x) of sum_c |x_c w_c| (tests/test_kernels.c), and up
//     to 4.3e-2 of the largest logit on the tiny oracle models
//     (tests/test_model.c, TOL_Q8 5e-2).
//   A BK_W_Q8 weight (bk_weight_q8) always takes the int8 dot.
// Returns the mode now in use, "exact" or "q8".
enum { BK_MATMUL_EXACT = 0, BK_MATMUL_Q8 = 1 };
const char *bk_cpu_set_matmul(int mode);
const char *bk_cpu_matmul(void);
// A Q8 copy of W (F32 or BF16, cols % 64 == 0), for a quantized lm_head:
// written into mem (bk_weight_q8_bytes of backend memory, 64-byte aligned
// as bk->alloc gives it; the caller owns it), *out describes it (out->mem
// NULL). Host-memory backends only; returns 0, or -1 + err naming the
// weight `name` (not F32/BF16, cols not a multiple of 64, a device backend).
size_t bk_weight_q8_bytes(int64_t rows, int64_t cols);
int bk_weight_q8(const bk_ops *bk, const bk_weight *W, const char *name, void *mem, bk_weight *out, err_t *err);
// Joins the pool's threads and frees their scratch (a later op restarts
// them): for a clean exit under LeakSanitizer.
void bk_cpu_shutdown(void);

#endif
