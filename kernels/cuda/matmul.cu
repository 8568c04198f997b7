// matmul: x (T, C) times a weight W (OC, C) -> out (T, OC) (+ bias), for
// NF4, bf16 and f32 weights, on two paths chosen by T (cu_tc_min_tokens,
// default CU_TC_MIN_TOKENS = 48, cu_backend.h):
//
// Decode (T small): memory-bound. A fused kernel streams the weight once
// per call with 16-byte loads (uint4: 32 NF4 codes, or 8 bf16, or half of
// 8 f32), decodes it in registers (NF4: code table in shared memory, the
// double-quantized absmax formed on the fly as dyn[q] * nested + offset)
// and applies each decoded weight to all T rows of x, so every weight byte
// is read once whatever T is. f32 accumulation; results differ from the CPU
// only by summation order (~1e-6 relative).
//
// Prefill (T >= the threshold): compute-bound. NF4 is dequantized to a bf16
// scratch (cu_scratch 0), x converted to bf16 (scratch 1), and cuBLAS
// multiplies them on the tensor cores with f32 accumulation and f32 output
// (cublasGemmEx, CUBLAS_COMPUTE_32F); bf16 weights go in as they are. The
// bf16 rounding of x (and of NF4 values, which bf16 cannot hold exactly)
// makes this path ~1e-2 relative to the f32 CPU reference (tests/cuda
// states the bound). f32 weights take cublasSgemm (f32 throughout).
//
// Why 48: at T tokens the fused kernel does T FMAs per weight on the f32
// pipes and passes the weight once per 16 tokens (NT_MAX), while the
// tensor-core path pays a fixed ~9 bytes of traffic per weight (read NF4,
// write and read bf16) and little else; for an 8B model on an H100 that
// is ~11 ms per forward vs ~0.24 ms per token of f32 FMAs on the fused
// path, crossing near 48 tokens. An estimate, to be measured
// (bk_cuda_set_tc_min_tokens lets a benchmark sweep it).
//
// Shapes the fused kernels cannot take (C not a multiple of 32 for NF4 or
// 8 for bf16 / f32, misaligned pointers) run a plain warp-per-dot kernel.
#include <stdio.h>

#include "cu_internal.h"

#define MM_WARPS 4  // warps per block; they split C and add up in shared memory
#define MM_ROWS 4   // weight rows per block
#define MM_NT_MAX 16 // tokens per pass of the fused kernel

// ---- the fused decode kernel ---------------------------------------------------------

// One 16-byte chunk of a row -> its weights, 8 at a time (group g).
// NF4: 32 codes per chunk, 4 groups; element 2i is the high nibble of byte
// i, and a little-endian word holds bytes 0..3 in bits 0..31.
template <int WT>
struct mm_chunk;

template <>
struct mm_chunk<BK_W_NF4> {
    static constexpr int WEIGHTS = 32, U4 = 1, GROUPS = 4;
    static __device__ __forceinline__ void decode(const uint4 *q, int g, float am, const float *code, float w[8]) {
        uint32_t word = g == 0 ? q[0].x : g == 1 ? q[0].y : g == 2 ? q[0].z : q[0].w;
#pragma unroll
        for (int b = 0; b < 4; b++) {
            w[2 * b] = code[(word >> (8 * b + 4)) & 15] * am;
            w[2 * b + 1] = code[(word >> (8 * b)) & 15] * am;
        }
    }
};

template <>
struct mm_chunk<BK_W_BF16> {
    static constexpr int WEIGHTS = 8, U4 = 1, GROUPS = 1;
    static __device__ __forceinline__ void decode(const uint4 *q, int g, float am, const float *code, float w[8]) {
        uint32_t u[4] = {q[0].x, q[0].y, q[0].z, q[0].w};
#pragma unroll
        for (int i = 0; i < 4; i++) {
            w[2 * i] = __uint_as_float(u[i] << 16); // element 2i: the low half (little-endian)
            w[2 * i + 1] = __uint_as_float(u[i] & 0xffff0000u);
        }
    }
};

template <>
struct mm_chunk<BK_W_F32> {
    static constexpr int WEIGHTS = 8, U4 = 2, GROUPS = 1;
    static __device__ __forceinline__ void decode(const uint4 *q, int g, float am, const float *code, float w[8]) {
        uint32_t u[8] = {q[0].x, q[0].y, q[0].z, q[0].w, q[1].x, q[1].y, q[1].z, q[1].w};
#pragma unroll
        for (int i = 0; i < 8; i++) w[i] = __uint_as_float(u[i]);
    }
};

// Rows [r0, r0 + MM_ROWS) of out for tokens [0, T), T <= NT. Lane l of warp
// w takes chunks w * 32 + l, + MM_WARPS * 32, ... of each of the block's
// rows (consecutive lanes, consecutive 16-byte chunks: coalesced), decodes
// each chunk once and applies it to every token. Partial sums meet in
// shared memory; warp 0 writes.
template <int WT, int NT>
__global__ void __launch_bounds__(MM_WARPS * 32) mm_fused_kernel(float *out, const float *x, int T, bk_weight W,
                                                               const float *bias) {
    typedef mm_chunk<WT> CH;
    __shared__ float code[16], dyn[256];
    __shared__ float part[MM_WARPS][MM_ROWS][NT];
    if (WT == BK_W_NF4) cu_nf4_tables_load(W.nf4, code, dyn);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int64_t C = W.cols, OC = W.rows, nchunk = C / CH::WEIGHTS;
    const int64_t r0 = (int64_t)blockIdx.x * MM_ROWS;
    const uint4 *base = WT == BK_W_NF4 ? (const uint4 *)W.nf4.packed : (const uint4 *)W.data;
    int64_t row[MM_ROWS];
#pragma unroll
    for (int r = 0; r < MM_ROWS; r++) row[r] = r0 + r < OC ? r0 + r : OC - 1; // past the end: recomputed, not written

    float acc[MM_ROWS][NT];
#pragma unroll
    for (int r = 0; r < MM_ROWS; r++)
#pragma unroll
        for (int t = 0; t < NT; t++) acc[r][t] = 0.0f;

#pragma unroll 2
    for (int64_t k = warp * 32 + lane; k < nchunk; k += MM_WARPS * 32) {
        uint4 q[MM_ROWS][CH::U4];
        float am[MM_ROWS];
#pragma unroll
        for (int r = 0; r < MM_ROWS; r++) {
#pragma unroll
            for (int u = 0; u < CH::U4; u++) q[r][u] = __ldg(base + (row[r] * nchunk + k) * CH::U4 + u);
            // 32 codes at a multiple of 32 lie in one 64-block
            am[r] = WT == BK_W_NF4 ? cu_nf4_absmax(W.nf4, dyn, (row[r] * C + k * CH::WEIGHTS) / NF4_BLOCK) : 1.0f;
        }
#pragma unroll
        for (int g = 0; g < CH::GROUPS; g++) {
            float w[MM_ROWS][8];
#pragma unroll
            for (int r = 0; r < MM_ROWS; r++) CH::decode(q[r], g, am[r], code, w[r]);
            const float *xc = x + k * CH::WEIGHTS + 8 * g;
#pragma unroll
            for (int t = 0; t < NT; t++) {
                if (t >= T) break;
                float4 a = __ldg((const float4 *)(xc + t * C)), b = __ldg((const float4 *)(xc + t * C + 4));
                float xv[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
#pragma unroll
                for (int r = 0; r < MM_ROWS; r++)
#pragma unroll
                    for (int e = 0; e < 8; e++) acc[r][t] = fmaf(w[r][e], xv[e], acc[r][t]);
            }
        }
    }
#pragma unroll
    for (int r = 0; r < MM_ROWS; r++)
#pragma unroll
        for (int t = 0; t < NT; t++) {
            float s = cu_warp_sum(acc[r][t]);
            if (lane == 0) part[warp][r][t] = s;
        }
    __syncthreads();
    for (int i = threadIdx.x; i < MM_ROWS * NT; i += blockDim.x) {
        int r = i / NT, t = i % NT;
        if (t >= T || r0 + r >= OC) continue;
        float s = 0.0f;
        for (int w = 0; w < MM_WARPS; w++) s += part[w][r][t];
        if (bias) s += bias[r0 + r];
        out[(int64_t)t * OC + r0 + r] = s;
    }
}

template <int WT>
static void mm_fused_launch(float *out, const float *x, int T, const bk_weight *W, const float *bias) {
    unsigned grid = cu_blocks(W->rows, MM_ROWS);
    cudaStream_t s = cu_stream();
    for (int t0 = 0; t0 < T; t0 += MM_NT_MAX) {
        int n = T - t0 < MM_NT_MAX ? T - t0 : MM_NT_MAX;
        const float *xt = x + (int64_t)t0 * W->cols;
        float *ot = out + (int64_t)t0 * W->rows;
        if (n == 1)
            mm_fused_kernel<WT, 1><<<grid, MM_WARPS * 32, 0, s>>>(ot, xt, n, *W, bias);
        else if (n <= 2)
            mm_fused_kernel<WT, 2><<<grid, MM_WARPS * 32, 0, s>>>(ot, xt, n, *W, bias);
        else if (n <= 4)
            mm_fused_kernel<WT, 4><<<grid, MM_WARPS * 32, 0, s>>>(ot, xt, n, *W, bias);
        else if (n <= 8)
            mm_fused_kernel<WT, 8><<<grid, MM_WARPS * 32, 0, s>>>(ot, xt, n, *W, bias);
        else
            mm_fused_kernel<WT, MM_NT_MAX><<<grid, MM_WARPS * 32, 0, s>>>(ot, xt, n, *W, bias);
        CU_LAUNCHED();
    }
}

// Whether the fused kernel's 16-byte loads fit W and x.
static int fusable(const bk_weight *W, const float *x) {
    int64_t per = W->type == BK_W_NF4 ? 32 : 8;
    const void *p = W->type == BK_W_NF4 ? (const void *)W->nf4.packed : W->data;
    return W->cols % per == 0 && (uintptr_t)p % 16 == 0 && (uintptr_t)x % 16 == 0;
}

// ---- the plain kernel (odd shapes) ------------------------------------------------------

// One warp per output (t, o): a dot of length C, each weight decoded alone.
__global__ void mm_plain_kernel(float *out, const float *x, int T, bk_weight W, const float *bias) {
    __shared__ float code[16], dyn[256];
    if (W.type == BK_W_NF4) cu_nf4_tables_load(W.nf4, code, dyn);
    int64_t i = blockIdx.x * (int64_t)(blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    int64_t C = W.cols, OC = W.rows;
    if (i >= (int64_t)T * OC) return;
    int64_t t = i / OC, o = i % OC;
    float s = 0.0f;
    for (int64_t c = lane; c < C; c += 32) s += cu_weight_at(W, code, dyn, o * C + c) * x[t * C + c];
    s = cu_warp_sum(s);
    if (lane == 0) out[t * OC + o] = s + (bias ? bias[o] : 0.0f);
}

// ---- the tensor-core path -----------------------------------------------------------------

// Flat weights [8i, 8i + 8) of W -> bf16 (16-byte stores). NF4 values are
// formed in f32 exactly as the CPU forms them, then rounded to bf16.
__global__ void to_bf16_kernel(__nv_bfloat16 *dst, bk_weight W, int64_t ngroups) {
    __shared__ float code[16], dyn[256];
    cu_nf4_tables_load(W.nf4, code, dyn);
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < ngroups; i += (int64_t)gridDim.x * blockDim.x) {
        float am = cu_nf4_absmax(W.nf4, dyn, i * 8 / NF4_BLOCK);
        __align__(16) __nv_bfloat16 h[8];
#pragma unroll
        for (int b = 0; b < 4; b++) {
            uint8_t byte = __ldg(W.nf4.packed + i * 4 + b);
            h[2 * b] = __float2bfloat16_rn(__fmul_rn(code[byte >> 4], am));
            h[2 * b + 1] = __float2bfloat16_rn(__fmul_rn(code[byte & 15], am));
        }
        *(uint4 *)(dst + i * 8) = *(const uint4 *)h;
    }
}

__global__ void f32_to_bf16_kernel(__nv_bfloat16 *dst, const float *src, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        dst[i] = __float2bfloat16_rn(src[i]);
}

__global__ void add_bias_kernel(float *out, const float *bias, int64_t T, int64_t OC) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < T * OC; i += (int64_t)gridDim.x * blockDim.x)
        out[i] += bias[i % OC];
}

static unsigned grid_for(int64_t n) {
    unsigned b = cu_blocks(n, 256);
    return b < 1 ? 1 : b > 65535 ? 65535 : b;
}

static void cublas_check(cublasStatus_t s, const char *what) {
    if (s != CUBLAS_STATUS_SUCCESS) {
        char msg[128];
        snprintf(msg, sizeof msg, "%s failed: cuBLAS status %d", what, (int)s);
        cu_fatal(__FILE__, __LINE__, msg);
    }
}

// out (T, OC) row-major is, to column-major cuBLAS, out^T (OC x T) =
// W (C x OC col-major, transposed) times x^T (C x T col-major).
static void mm_tensor_cores(float *out, const float *x, const bk_weight *W, const float *bias, int T) {
    int64_t C = W->cols, OC = W->rows;
    cudaStream_t s = cu_stream();
    const float one = 1.0f, zero = 0.0f;
    if (W->type == BK_W_F32) {
        cublas_check(cublasSgemm(cu_cublas(), CUBLAS_OP_T, CUBLAS_OP_N, (int)OC, T, (int)C, &one,
                                 (const float *)W->data, (int)C, x, (int)C, &zero, out, (int)OC),
                     "cublasSgemm");
    } else {
        const void *wb = W->data;
        if (W->type == BK_W_NF4) {
            __nv_bfloat16 *d = (__nv_bfloat16 *)cu_scratch(0, (size_t)(OC * C) * sizeof(__nv_bfloat16));
            if (!d) cu_fatal(__FILE__, __LINE__, "matmul: out of device memory for the bf16 weight scratch");
            to_bf16_kernel<<<grid_for(OC * C / 8), 256, 0, s>>>(d, *W, OC * C / 8);
            CU_LAUNCHED();
            wb = d;
        }
        __nv_bfloat16 *xb = (__nv_bfloat16 *)cu_scratch(1, (size_t)((int64_t)T * C) * sizeof(__nv_bfloat16));
        if (!xb) cu_fatal(__FILE__, __LINE__, "matmul: out of device memory for the bf16 input scratch");
        f32_to_bf16_kernel<<<grid_for((int64_t)T * C), 256, 0, s>>>(xb, x, (int64_t)T * C);
        CU_LAUNCHED();
        cublas_check(cublasGemmEx(cu_cublas(), CUBLAS_OP_T, CUBLAS_OP_N, (int)OC, T, (int)C, &one, wb, CUDA_R_16BF,
                                  (int)C, xb, CUDA_R_16BF, (int)C, &zero, out, CUDA_R_32F, (int)OC, CUBLAS_COMPUTE_32F,
                                  CUBLAS_GEMM_DEFAULT),
                     "cublasGemmEx (bf16 x bf16 -> f32)");
    }
    if (bias) {
        add_bias_kernel<<<grid_for((int64_t)T * OC), 256, 0, s>>>(out, bias, T, OC);
        CU_LAUNCHED();
    }
}

// x (T, C), W (OC, C), bias (OC) or NULL -> out (T, OC)
void cu_matmul(float *out, const float *x, const bk_weight *W, const float *bias, int T) {
    if (T <= 0 || W->rows <= 0) return;
    if (T >= cu_tc_min_tokens()) {
        mm_tensor_cores(out, x, W, bias, T);
    } else if (fusable(W, x)) {
        if (W->type == BK_W_NF4)
            mm_fused_launch<BK_W_NF4>(out, x, T, W, bias);
        else if (W->type == BK_W_BF16)
            mm_fused_launch<BK_W_BF16>(out, x, T, W, bias);
        else
            mm_fused_launch<BK_W_F32>(out, x, T, W, bias);
    } else {
        mm_plain_kernel<<<cu_blocks((int64_t)T * W->rows, 4), 128, 0, cu_stream()>>>(out, x, T, *W, bias);
        CU_LAUNCHED();
    }
}

// ---- rows as f32 (for the training ops) -------------------------------------------------

__global__ void weight_rows_kernel(float *dst, bk_weight W, int64_t begin, int64_t n) {
    __shared__ float code[16], dyn[256];
    if (W.type == BK_W_NF4) cu_nf4_tables_load(W.nf4, code, dyn);
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        dst[i] = cu_weight_at(W, code, dyn, begin + i);
}

void cu_weight_rows_f32(float *dst, const bk_weight *W, int64_t row0, int64_t nrows) {
    int64_t n = nrows * W->cols;
    if (n <= 0) return;
    weight_rows_kernel<<<grid_for(n), 256, 0, cu_stream()>>>(dst, *W, row0 * W->cols, n);
    CU_LAUNCHED();
}
