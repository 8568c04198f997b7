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

#include "backend.h"
#include "err.h"

#ifdef __cplusplus
extern "C" {
#endif

// The CUDA backend on the current device (device 0 unless
// $CUDA_VISIBLE_DEVICES says otherwise), set up on the first call. NULL +
// err naming the CUDA runtime's reason when there is no usable device.
const bk_ops *bk_cuda(err_t *err);

// Waits for every queued op; -1 + err with the CUDA error if one failed.
int bk_cuda_sync(err_t *err);

#ifdef __cplusplus
}
#endif

#endif
