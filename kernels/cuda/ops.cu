// ops: the element-wise and row-wise ops of the forward pass on the GPU:
// embedding gather, RMSNorm, RoPE, KV store, SwiGLU, residual add, row
// gather. Each is memory-bound and simple: one thread per element (or a
// warp per row for RMSNorm), the same float formulas as kernels/cpu/ops.c.
#include "cu_internal.h"

#define EW_THREADS 256
// Element-wise grids are capped and loop (grid-stride): enough blocks to
// fill any GPU, no overflow of gridDim for huge N.
#define EW_MAX_BLOCKS 65535

static unsigned ew_blocks(int64_t n) {
    unsigned b = cu_blocks(n, EW_THREADS);
    return b < 1 ? 1 : b > EW_MAX_BLOCKS ? EW_MAX_BLOCKS : b;
}

// ---- embed: tok (T), embed (V, C) -> x (T, C) ---------------------------------------

__global__ void embed_kernel(float *x, const int32_t *tok, int T, bk_weight W) {
    __shared__ float code[16], dyn[256];
    if (W.type == BK_W_NF4) cu_nf4_tables_load(W.nf4, code, dyn);
    int64_t C = W.cols, n = (int64_t)T * C;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t t = i / C, c = i % C;
        x[i] = cu_weight_at(W, code, dyn, (int64_t)__ldg(tok + t) * C + c);
    }
}

void cu_embed(float *x, const int32_t *tok, int T, const bk_weight *embed) {
    if ((int64_t)T * embed->cols <= 0) return;
    embed_kernel<<<ew_blocks((int64_t)T * embed->cols), EW_THREADS, 0, cu_stream()>>>(x, tok, T, *embed);
    CU_LAUNCHED();
}

// ---- rmsnorm: x (N, C), w (C) -> out (N, C); out may equal x -------------------------

// One warp per row: sum of squares, then out = w * (x * s) with
// s = 1 / sqrt(mean + eps), as the CPU (transformers' LlamaRMSNorm in f32).
__global__ void rmsnorm_kernel(float *out, const float *x, const float *w, int64_t N, int C, float eps) {
    int64_t row = blockIdx.x * (int64_t)(blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    if (row >= N) return;
    const float *xr = x + row * C;
    float ss = 0.0f;
    for (int i = lane; i < C; i += 32) ss += xr[i] * xr[i];
    ss = cu_warp_sum(ss);
    float s = 1.0f / sqrtf(ss / (float)C + eps);
    float *o = out + row * C;
    for (int i = lane; i < C; i += 32) o[i] = w[i] * (xr[i] * s);
}

void cu_rmsnorm(float *out, const float *x, const float *w, int64_t N, int C, float eps) {
    if (N <= 0) return;
    rmsnorm_kernel<<<cu_blocks(N, EW_THREADS / 32), EW_THREADS, 0, cu_stream()>>>(out, x, w, N, C, eps);
    CU_LAUNCHED();
}

// ---- rope: x (T, H, D) in place -----------------------------------------------------

// One thread per pair (i, i + D/2) of one head: the angle pos * inv_freq[i]
// with the accurate cosf / sinf (large angles are range-reduced exactly).
__global__ void rope_kernel(float *x, const int32_t *pos, int T, int H, int D, const float *inv_freq) {
    int half = D / 2;
    int64_t n = (int64_t)T * H * half;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        int k = (int)(i % half);
        int64_t th = i / half; // t * H + h
        int64_t t = th / H;
        float f = (float)__ldg(pos + t) * __ldg(inv_freq + k);
        float c = cosf(f), s = sinf(f);
        float *v = x + th * D;
        float a = v[k], b = v[k + half];
        v[k] = a * c - b * s;
        v[k + half] = b * c + a * s;
    }
}

void cu_rope(float *x, const int32_t *pos, int T, int H, int D, const float *inv_freq) {
    int64_t n = (int64_t)T * H * (D / 2);
    if (n <= 0) return;
    rope_kernel<<<ew_blocks(n), EW_THREADS, 0, cu_stream()>>>(x, pos, T, H, D, inv_freq);
    CU_LAUNCHED();
}

// ---- kv_store: k, v (T, KV) -> cache rows slot[t] (f32 or bf16) ---------------------

// E: float (copied) or unsigned short (bf16 bits, rounded to nearest even
// as num_f32_to_bf16 rounds every number).
__device__ __forceinline__ void kv_put(float *c, int64_t i, float x) { c[i] = x; }
__device__ __forceinline__ void kv_put(unsigned short *c, int64_t i, float x) { c[i] = cu_f32_bf16(x); }

template <typename E>
__global__ void kv_store_kernel(E *k_cache, E *v_cache, const float *k, const float *v, const int32_t *slot, int T,
                                int KV) {
    int64_t n = (int64_t)T * KV;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t t = i / KV, e = i % KV;
        int64_t dst = (int64_t)__ldg(slot + t) * KV + e;
        kv_put(k_cache, dst, k[i]);
        kv_put(v_cache, dst, v[i]);
    }
}

void cu_kv_store(void *k_cache, void *v_cache, const float *k, const float *v, const int32_t *slot, int T, int KV,
                 bk_dtype dtype) {
    if ((int64_t)T * KV <= 0) return;
    unsigned blocks = ew_blocks((int64_t)T * KV);
    if (dtype == BK_DT_BF16)
        kv_store_kernel<<<blocks, EW_THREADS, 0, cu_stream()>>>((unsigned short *)k_cache, (unsigned short *)v_cache,
                                                                k, v, slot, T, KV);
    else
        kv_store_kernel<<<blocks, EW_THREADS, 0, cu_stream()>>>((float *)k_cache, (float *)v_cache, k, v, slot, T, KV);
    CU_LAUNCHED();
}

// ---- swiglu, residual, gather_rows ----------------------------------------------------

__global__ void swiglu_kernel(float *out, const float *gate, const float *up, int64_t N) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < N; i += (int64_t)gridDim.x * blockDim.x) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

void cu_swiglu(float *out, const float *gate, const float *up, int64_t N) {
    if (N <= 0) return;
    swiglu_kernel<<<ew_blocks(N), EW_THREADS, 0, cu_stream()>>>(out, gate, up, N);
    CU_LAUNCHED();
}

__global__ void residual_kernel(float *x, const float *y, int64_t N) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < N; i += (int64_t)gridDim.x * blockDim.x)
        x[i] += y[i];
}

void cu_residual(float *x, const float *y, int64_t N) {
    if (N <= 0) return;
    residual_kernel<<<ew_blocks(N), EW_THREADS, 0, cu_stream()>>>(x, y, N);
    CU_LAUNCHED();
}

__global__ void gather_rows_kernel(float *out, const float *x, const int32_t *rows, int N, int C) {
    int64_t n = (int64_t)N * C;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i / C, c = i % C;
        out[i] = x[(int64_t)__ldg(rows + r) * C + c];
    }
}

void cu_gather_rows(float *out, const float *x, const int32_t *rows, int N, int C) {
    if ((int64_t)N * C <= 0) return;
    gather_rows_kernel<<<ew_blocks((int64_t)N * C), EW_THREADS, 0, cu_stream()>>>(out, x, rows, N, C);
    CU_LAUNCHED();
}
