// cu_internal: what the CUDA backend's translation units share (C++ only).
// backend_cuda.cu owns the stream, the cuBLAS handle, the scratch and the op
// table; backward.cu fills in the training ops (kernels/cpu/ has the same file names).
#ifndef TESSERA_CU_INTERNAL_H
#define TESSERA_CU_INTERNAL_H

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

extern "C" {
#include "backend.h" // the C headers below it, with C linkage (err_set, nf4_tensor)
}

// The backend's stream and cuBLAS handle (bound to that stream).
cudaStream_t cu_stream(void);
cublasHandle_t cu_cublas(void);
// The device's multiprocessor count (grid sizing).
int cu_sm_count(void);

// A device scratch buffer of at least `bytes`, grown as needed and reused
// by the next call: one user at a time, on the backend's stream. `which`
// picks one of a few independent buffers (0..CU_SCRATCH_N-1) so an op can
// hold two at once. NULL on out of memory.
// Forward ops use: 0 the bf16 weight of a prefill matmul, 1 the bf16 x of
// a prefill matmul, 2 the split partials of attention.
#define CU_SCRATCH_N 4
void *cu_scratch(int which, size_t bytes);

// Copies `bytes` of host memory (a few KB: segment lists) to device memory
// that the kernels queued next on the backend's stream may read; the host
// buffer may be reused on return. The copy stays valid until CU_STAGE_RING
// more cu_stage calls have been made (a ring of pinned buffers; a slot is
// rewritten only after its previous copy has completed). NULL on out of
// memory.
#define CU_STAGE_RING 8
const void *cu_stage(const void *host, size_t bytes);

// Rows [row0, row0 + nrows) of W converted to f32 into dst (nrows, W->cols),
// device memory, on the backend's stream (the NF4 / bf16 decode the matmul
// kernels use, bit for bit the values the CPU backend's tiles hold).
void cu_weight_rows_f32(float *dst, const bk_weight *W, int64_t row0, int64_t nrows);

// Fills the training fields of ops (attention_train ... sumsq), defined in
// backward.cu.
void cu_train_fill(bk_ops *ops);

// The forward ops, one file each as kernels/cpu/ (ops.cu, matmul.cu,
// lora.cu, attention.cu); shapes as in backend.h.
void cu_embed(float *x, const int32_t *tok, int T, const bk_weight *embed);
void cu_rmsnorm(float *out, const float *x, const float *w, int64_t N, int C, float eps);
void cu_matmul(float *out, const float *x, const bk_weight *W, const float *bias, int T);
void cu_lora(float *y, const float *x, float *v, int C, int OC, const bk_lora_seg *seg, int nseg);
void cu_rope(float *x, const int32_t *pos, int T, int H, int D, const float *inv_freq);
void cu_kv_store(void *k_cache, void *v_cache, const float *k, const float *v, const int32_t *slot, int T, int KV,
                 bk_dtype dtype);
void cu_attention(float *out, const float *q, int T, const bk_attn_args *a);
void cu_swiglu(float *out, const float *gate, const float *up, int64_t N);
void cu_residual(float *x, const float *y, int64_t N);
void cu_gather_rows(float *out, const float *x, const int32_t *rows, int N, int C);
// bk_ops.sample (sample.cu): greedy rows on the device, sampled rows on the host.
void cu_sample(float *logits, int N, int V, const bk_sample_row *rows, bk_sample_out *out);

// The token count from which matmul takes the tensor-core path (matmul.cu;
// see bk_cuda_set_tc_min_tokens).
int cu_tc_min_tokens(void);

// ---- weight decoding shared by the kernels --------------------------------------
//
// Kernels take the bk_weight by value (a launch parameter, ~1.2 KB with the
// NF4 tables); a kernel that decodes NF4 copies the code and dyn tables to
// shared memory first, where lanes look codes up with per-lane indices
// without bank conflicts (16 or 256 distinct words).
#ifdef __CUDACC__
// The decoded absmax of block b, as nf4_absmax forms it: two roundings
// (explicit _rn intrinsics so the compiler cannot fuse them into an FMA).
// dyn points at the 256-entry map (shared memory).
__device__ __forceinline__ float cu_nf4_absmax(const nf4_tensor &t, const float *dyn, int64_t b) {
    if (!t.nested) return __ldg(t.absmax + b);
    float scaled = __fmul_rn(dyn[__ldg(t.absmax_q + b)], __ldg(t.nested_absmax + b / NF4_NESTED_BLOCK));
    return __fadd_rn(scaled, t.offset);
}

__device__ __forceinline__ float cu_bf16_f32(uint16_t h) { return __uint_as_float((uint32_t)h << 16); }
// f32 -> bf16 bits, rounded to nearest even (num_f32_to_bf16's result for
// every number; NaN payloads may differ).
__device__ __forceinline__ unsigned short cu_f32_bf16(float x) { return __bfloat16_as_ushort(__float2bfloat16_rn(x)); }

// Element i (flat, row-major) of W as f32, exactly as the CPU forms it.
// Slow (one absmax decode per element): for odd shapes and gathers only.
__device__ __forceinline__ float cu_weight_at(const bk_weight &W, const float *code, const float *dyn, int64_t i) {
    if (W.type == BK_W_F32) return __ldg((const float *)W.data + i);
    if (W.type == BK_W_BF16) return cu_bf16_f32(__ldg((const unsigned short *)W.data + i));
    uint8_t byte = __ldg(W.nf4.packed + (i >> 1));
    int c = (i & 1) ? (byte & 15) : (byte >> 4);
    return __fmul_rn(code[c], cu_nf4_absmax(W.nf4, dyn, i / NF4_BLOCK));
}

// Copies the tables to shared memory (every thread of the block takes part;
// a barrier follows).
__device__ __forceinline__ void cu_nf4_tables_load(const nf4_tensor &t, float *code, float *dyn) {
    for (int i = threadIdx.x; i < 16; i += blockDim.x) code[i] = t.code[i];
    if (t.nested)
        for (int i = threadIdx.x; i < 256; i += blockDim.x) dyn[i] = t.dyn[i];
    __syncthreads();
}

__device__ __forceinline__ float cu_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float cu_warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
#endif

// Aborts with file:line and the CUDA error string: for launch errors, which
// mean a bug in the backend, not bad input.
#define CU_CHECK(call)                                                                                      \
    do {                                                                                                     \
        cudaError_t e_ = (call);                                                                             \
        if (e_ != cudaSuccess) cu_fatal(__FILE__, __LINE__, cudaGetErrorString(e_));                         \
    } while (0)
// After a kernel launch: the launch's own error (bad configuration).
#define CU_LAUNCHED() CU_CHECK(cudaGetLastError())
[[noreturn]] void cu_fatal(const char *file, int line, const char *what);

// Grid size for n items in blocks of `per`.
static inline unsigned cu_blocks(int64_t n, int per) { return (unsigned)((n + per - 1) / per); }

#endif
