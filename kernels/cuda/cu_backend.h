// cu_backend: the CUDA backend, the whole kernels/backend.h op table on one
// GPU. Built only when CUDA is on (TESSERA_CUDA); plain C interface.
//
// Backend memory is device memory; every op is queued on the backend's one
// stream and `download` synchronises it. Activations and the KV cache are
// f32 as backend.h defines them; weights stay in their file form (bf16 or
// NF4) and are converted inside the kernels, accumulation in f32. The CPU
// backend is the oracle: tests/cuda/ checks every op against it.
#ifndef TESSERA_CU_BACKEND_H
#define TESSERA_CU_BACKEND_H

#ifdef __cplusplus
extern "C" {
#endif

#include "backend.h" // C headers: declared with C linkage from C++ too
#include "err.h"

// The CUDA backend on the current device (device 0 unless
// $CUDA_VISIBLE_DEVICES says otherwise), set up on the first call. NULL +
// err naming the CUDA runtime's reason when there is no usable device.
const bk_ops *bk_cuda(err_t *err);

// Waits for every queued op; -1 + err with the CUDA error if one failed.
int bk_cuda_sync(err_t *err);

// matmul's two paths (kernels/cuda/matmul.cu): for T below this many tokens
// a fused kernel decodes NF4 / bf16 in registers and reads each weight byte
// once (memory-bound decode, f32 math); from it on, the weight is
// dequantized to a bf16 scratch and multiplied on the tensor cores by
// cuBLAS (bf16 inputs, f32 accumulation: ~1e-2 relative error vs the f32
// CPU reference; f32 weights take cuBLAS's f32 SGEMM instead). Default
// CU_TC_MIN_TOKENS, or $TESSERA_CUDA_TC_MIN_T when set at bk_cuda's first
// call; tests and benchmarks set it to force a path (1: always tensor
// cores, INT_MAX: never). Between forward passes.
#define CU_TC_MIN_TOKENS 48
void bk_cuda_set_tc_min_tokens(int t);

#ifdef __cplusplus
}
#endif

#endif
