// cu_internal: what the CUDA backend's translation units share (C++ only).
// backend_cuda.cu owns the stream, the cuBLAS handle, the scratch and the op
// table; backward.cu fills in the training ops (kernels/cpu/ has the same file names).
#ifndef TESSERA_CU_INTERNAL_H
#define TESSERA_CU_INTERNAL_H

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "backend.h"

// The backend's stream and cuBLAS handle (bound to that stream).
cudaStream_t cu_stream(void);
cublasHandle_t cu_cublas(void);

// A device scratch buffer of at least `bytes`, grown as needed and reused
// by the next call: one user at a time, on the backend's stream. `which`
// picks one of a few independent buffers (0..CU_SCRATCH_N-1) so an op can
// hold two at once. NULL on out of memory.
#define CU_SCRATCH_N 4
void *cu_scratch(int which, size_t bytes);

// Rows [row0, row0 + nrows) of W converted to f32 into dst (nrows, W->cols),
// device memory, on the backend's stream (the NF4 / bf16 decode the matmul
// kernels use, bit for bit the values the CPU backend's tiles hold).
void cu_weight_rows_f32(float *dst, const bk_weight *W, int64_t row0, int64_t nrows);

// Fills the training fields of ops (attention_train ... sumsq), defined in
// backward.cu.
void cu_train_fill(bk_ops *ops);

// Aborts with file:line and the CUDA error string: for launch errors, which
// mean a bug in the backend, not bad input.
#define CU_CHECK(call)                                                                                      \
    do {                                                                                                     \
        cudaError_t e_ = (call);                                                                             \
        if (e_ != cudaSuccess) cu_fatal(__FILE__, __LINE__, cudaGetErrorString(e_));                         \
    } while (0)
[[noreturn]] void cu_fatal(const char *file, int line, const char *what);

#endif
