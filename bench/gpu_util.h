// bench/gpu_util: what the GPU benches (bench/gpu_*.c) share: the device's
// copy bandwidth measured in the same process, device memory in use, and
// the bytes a decode step must read (the floor the targets divide
// by). Header-only (static inline functions): each bench is one program.
//
// Bandwidth convention: a device-to-device copy of N bytes moves 2N bytes
// through device memory (read + write); the copy rate quoted is 2N / time,
// the rate the memory system sustains, and a step's floor is the bytes it
// must read over that rate.
#ifndef TESSERA_BENCH_GPU_UTIL_H
#define TESSERA_BENCH_GPU_UTIL_H

#include <cuda_runtime_api.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "adapter.h"
#include "backend.h"
#include "config.h"
#include "err.h"
#include "model.h"

static inline double gpu_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static inline int gpu_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// Median of v[0..n) (sorts v).
static inline double gpu_median(double *v, int n) {
    if (n <= 0) return 0;
    qsort(v, (size_t)n, sizeof *v, gpu_cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Bytes of device memory in use on the current device (every process's,
// the CUDA context included), or -1 + err.
static inline int64_t gpu_mem_used(err_t *err) {
    size_t free_b = 0, total_b = 0;
    cudaError_t e = cudaMemGetInfo(&free_b, &total_b);
    if (e != cudaSuccess) return err_set(err, "cudaMemGetInfo: %s", cudaGetErrorString(e));
    return (int64_t)(total_b - free_b);
}

// Device copy rate in bytes/s (read + write, see above): the median of
// `reps` cudaMemcpy device-to-device copies of `bytes`, timed with events
// after two warm-up copies. Fresh random-ish contents (not zeros), so no
// compression or zero-page shortcut can flatter it. -1 + err on failure.
static inline double gpu_copy_rate(size_t bytes, int reps, err_t *err) {
    void *src = NULL, *dst = NULL;
    double rate = -1, t[64];
    cudaEvent_t e0 = NULL, e1 = NULL;
    if (reps > 64) reps = 64;
    uint32_t *host = malloc(bytes);
    cudaError_t e = host ? cudaSuccess : cudaErrorMemoryAllocation;
    if (e == cudaSuccess) {
        uint32_t x = 2463534242u;
        for (size_t i = 0; i < bytes / 4; i++) x ^= x << 13, x ^= x >> 17, x ^= x << 5, host[i] = x;
        e = cudaMalloc(&src, bytes);
    }
    if (e == cudaSuccess) e = cudaMalloc(&dst, bytes);
    if (e == cudaSuccess) e = cudaMemcpy(src, host, bytes, cudaMemcpyHostToDevice);
    if (e == cudaSuccess) e = cudaEventCreate(&e0);
    if (e == cudaSuccess) e = cudaEventCreate(&e1);
    for (int r = -2; e == cudaSuccess && r < reps; r++) {
        e = cudaEventRecord(e0, 0);
        if (e == cudaSuccess) e = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, 0);
        if (e == cudaSuccess) e = cudaEventRecord(e1, 0);
        if (e == cudaSuccess) e = cudaEventSynchronize(e1);
        float ms = 0;
        if (e == cudaSuccess) e = cudaEventElapsedTime(&ms, e0, e1);
        if (r >= 0) t[r] = ms * 1e-3;
    }
    if (e == cudaSuccess) rate = 2.0 * (double)bytes / gpu_median(t, reps);
    else err_set(err, "device copy of %zu bytes: %s", bytes, cudaGetErrorString(e));
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    cudaFree(src);
    cudaFree(dst);
    free(host);
    return rate;
}

// Bytes one pass over W reads: packed codes and (double-quantized) absmax
// for NF4, every element for dense weights.
static inline int64_t gpu_weight_bytes(const bk_weight *w) {
    int64_t n = w->rows * w->cols;
    switch (w->type) {
    case BK_W_NF4:
        return n / 2 + (w->nf4.nested ? w->nf4.nblocks + w->nf4.nnested * 4 : w->nf4.nblocks * 4);
    case BK_W_BF16:
        return n * 2;
    case BK_W_F32:
        return n * 4;
    case BK_W_Q8:
        return n + n / 64 * 4;
    }
    return 0;
}

// Bytes of weights one decode step reads whatever its batch: every decoder
// linear weight, norm and bias, the final norm and lm_head, and one
// embedding row per token (t_tokens of them).
static inline int64_t gpu_step_weight_bytes(const model *m, int t_tokens) {
    const model_config *c = model_get_config(m);
    model_view v;
    model_get_view(m, &v);
    int64_t b = gpu_weight_bytes(v.lm_head) + (int64_t)c->hidden_size * 4;
    b += (int64_t)t_tokens * gpu_weight_bytes(v.embed) / (v.embed->rows > 0 ? v.embed->rows : 1);
    for (int l = 0; l < c->num_hidden_layers; l++) {
        model_layer_view lv;
        model_get_layer_view(m, l, &lv);
        b += 2 * (int64_t)c->hidden_size * 4; // the two RMSNorm weights
        for (int i = 0; i < MODEL_LIN_COUNT; i++) {
            b += gpu_weight_bytes(lv.lin[i]);
            if (lv.bias[i]) b += lv.lin[i]->rows * 4;
        }
    }
    return b;
}

// Bytes of K and V a token at position pos reads (positions 0..pos of its
// sequence, every layer; the cache is f32 as backend.h defines it).
static inline int64_t gpu_kv_read_bytes(const model_config *c, int64_t pos) {
    return (pos + 1) * (int64_t)c->num_hidden_layers * 2 * c->num_key_value_heads * c->head_dim * 4;
}

// Bytes of an adapter in a model slot: every A and B as f32 (bk_lora_seg).
static inline int64_t gpu_adapter_bytes(const lora_adapter *a) { return a->n_params * 4; }

#endif
