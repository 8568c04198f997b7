// backward: the CUDA backend's training ops, the same names and shapes as
// kernels/cpu/backward.c (the reference every op here is tested against in
// tests/cuda/test_cuda_train.c). The forward variants keep what backward
// needs (attention's log-sum-exp, LoRA's shrunk input); the backward ops give
// gradients wrt activations and LoRA weights only; then the loss and the
// optimizer step.
//
// Every op is queued on the backend's stream. Results are deterministic: no
// float atomics, every sum runs in a fixed order that depends only on the
// shapes (attention's dk/dv over a GQA group is owned by one warp per key
// row; sumsq is a fixed two-stage tree), so a run repeats bit for bit on the
// same GPU and cuBLAS version. They are not the CPU's bits (other summation
// orders, fused multiply-adds): the tests bound the difference.
//
// The matrix products go through cuBLAS sgemm in f32 with the handle's math
// mode (default: full f32; a TF32 mode would show in the tests' bounds).
// Row-major matrices are handed to cuBLAS as their column-major transposes:
// a row-major (R, C) matrix with leading dimension C is the column-major
// (C, R) matrix M^T, so row-major Y = X W^T is column-major Y^T = W X^T.
//
// Scratch (cu_scratch): 0 holds LoRA's dropped-out input and then u A
// (lora_train, lora_backward), 1 matmul_backward's converted weight rows,
// 3 sumsq's partial sums. Each is used within one op, in stream order.
//
// Not yet timed on a GPU: the attention kernels use FFMA from shared memory
// (no tensor cores), the first thing to measure and replace if attention
// dominates a training step.
#include <math.h>
#include <stdint.h>

#include "cu_internal.h"

#define ATT_WARPS 4         // query (or key) rows per attention block, one warp each
#define ATT_TILE 32         // keys (or queries) per shared-memory tile: one per lane
#define ROW_WARPS 8         // rows per block of the row-wise ops, one warp each
#define EW_THREADS 256      // threads per block of the element-wise ops
#define CE_THREADS 512      // threads per cross-entropy row
#define SUMSQ_PARTS 1024    // first-stage blocks of sumsq (at most)
#define SUMSQ_THREADS 256
#define MMB_SCRATCH_FLOATS ((int64_t)1 << 24) // matmul_backward's converted weight rows (64 MiB)

static inline int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

static void launch_check(void) { CU_CHECK(cudaGetLastError()); }

static void cublas_check(cublasStatus_t s, const char *what) {
    if (s != CUBLAS_STATUS_SUCCESS) cu_fatal(__FILE__, __LINE__, what);
}

// Column-major C (m, n) = alpha op(A) op(B) + beta C on the backend's stream.
static void sgemm(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha, const float *A,
                  int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    cublas_check(cublasSgemm(cu_cublas(), ta, tb, m, n, k, &alpha, A, lda, B, ldb, &beta, C, ldc), "cublasSgemm");
}

__device__ static inline float warp_sum(float x) {
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

__device__ static inline float warp_max(float x) {
    for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
    return x;
}

// ---- attention ------------------------------------------------------------------
//
// Flash-style: a block is ATT_WARPS warps, each one (token, head) row of the
// same head and consecutive tokens; keys stream through shared memory
// ATT_TILE at a time, lane j scoring key j of the tile against the row's
// query, then every lane updating its share of head_dim (lane + 32 i) with
// the tile's probabilities. No (T, T) matrix exists; backward recomputes the
// probabilities from the saved log-sum-exp.

__device__ static inline int first_key(const int32_t *start, int window, int t) {
    int first = start[t];
    if (window > 0 && t - window + 1 > first) first = t - window + 1;
    return first;
}

// Shared memory of one attention block: two tiles of ATT_TILE rows of D
// floats (padded by one float so lane j's row starts in bank j) and
// `per_warp` vectors of D floats for each warp.
static size_t att_smem(int D, int per_warp) {
    return ((size_t)2 * ATT_TILE * (D + 1) + (size_t)per_warp * ATT_WARPS * D) * sizeof(float);
}

// Loads rows [r0, r0 + ATT_TILE) of src (row r at src + r * stride) into
// the padded tile dst; rows at or past `end` are zero.
__device__ static void load_tile(float *dst, const float *src, int64_t stride, int r0, int end, int D) {
    for (int i = threadIdx.x; i < ATT_TILE * D; i += blockDim.x) {
        int r = i / D, d = i % D;
        dst[r * (D + 1) + d] = r0 + r < end ? src[(int64_t)(r0 + r) * stride + d] : 0.0f;
    }
}

// dot(x (D, shared), tile row r)
__device__ static inline float tile_dot(const float *x, const float *tile, int r, int D) {
    const float *row = tile + r * (D + 1);
    float s = 0.0f;
    for (int d = 0; d < D; d++) s += x[d] * row[d];
    return s;
}

// acc (lane's head_dim elements) += sum over tile rows j of w_j * row j,
// w_j being lane j's w: one broadcast weight per row, rows of weight 0
// skipped (the same float operations in the same order as written out).
template <int NR>
__device__ static inline void tile_accumulate(float (&acc)[NR], float w, const float *tile, int lane, int D) {
    for (int j = 0; j < ATT_TILE; j++) {
        float wj = __shfl_sync(0xffffffffu, w, j);
        if (wj == 0.0f) continue;
        const float *row = tile + j * (D + 1);
#pragma unroll
        for (int i = 0; i < NR; i++)
            if (lane + 32 * i < D) acc[i] += wj * row[lane + 32 * i];
    }
}

// Each attention kernel is a template over NR, the head_dim elements a
// lane holds in registers (lane + 32 i for i < NR, so NR = ceil(D / 32)):
// the register arrays are indexed by unrolled constants only, and a D of
// 128 runs 4 of them, not BK_MAX_HEAD_DIM / 32.
//
// grid (ceil(T / ATT_WARPS), H), block 32 * ATT_WARPS.
template <int NR>
__global__ static void attn_fwd_kernel(float *out, float *lse, const float *q, const float *k, const float *v, int T,
                                       bk_train_attn a) {
    extern __shared__ float sm[];
    int D = a.head_dim, H = a.n_heads, KV = a.n_kv_heads * D;
    int h = blockIdx.y, kvh = h / (H / a.n_kv_heads);
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    int t0 = blockIdx.x * ATT_WARPS, t = t0 + warp;
    int t_last = min(t0 + ATT_WARPS, T) - 1;
    float *ks = sm, *vs = ks + ATT_TILE * (D + 1), *qs = vs + ATT_TILE * (D + 1) + warp * D;
    int valid = t < T;
    int lo = valid ? first_key(a.start, a.window, t) : 0;
    if (valid)
        for (int d = lane; d < D; d += 32) qs[d] = q[((int64_t)t * H + h) * D + d];
    float acc[NR];
#pragma unroll
    for (int i = 0; i < NR; i++) acc[i] = 0.0f;
    float m = -INFINITY, l = 0.0f;
    // Every warp walks the block's key range so that the barriers match.
    for (int p0 = first_key(a.start, a.window, t0); p0 <= t_last; p0 += ATT_TILE) {
        __syncthreads();
        load_tile(ks, k + kvh * D, KV, p0, t_last + 1, D);
        load_tile(vs, v + kvh * D, KV, p0, t_last + 1, D);
        __syncthreads();
        int p = p0 + lane;
        float s = valid && p >= lo && p <= t ? tile_dot(qs, ks, lane, D) * a.scale : -INFINITY;
        float mt = fmaxf(m, warp_max(s));
        if (mt == -INFINITY) continue; // nothing of this row's in the tile yet
        float e = s == -INFINITY ? 0.0f : expf(s - mt), corr = expf(m - mt);
        l = l * corr + warp_sum(e);
        m = mt;
#pragma unroll
        for (int i = 0; i < NR; i++) acc[i] *= corr;
        tile_accumulate<NR>(acc, e, vs, lane, D);
    }
    if (!valid) return;
    float inv = 1.0f / l;
    float *o = out + ((int64_t)t * H + h) * D;
#pragma unroll
    for (int i = 0; i < NR; i++)
        if (lane + 32 * i < D) o[lane + 32 * i] = acc[i] * inv;
    if (lane == 0) lse[(int64_t)t * H + h] = m + logf(l);
}

// A kernel needing more than 48 KiB of shared memory must say so first.
template <typename K> static void allow_smem(K kernel, size_t bytes) {
    if (bytes > 48 * 1024) CU_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
}

template <int NR>
static void attn_fwd_launch(float *out, float *lse, const float *q, const float *k, const float *v, int T,
                            const bk_train_attn *a) {
    size_t smem = att_smem(a->head_dim, 1);
    allow_smem(attn_fwd_kernel<NR>, smem);
    dim3 grid((unsigned)cdiv(T, ATT_WARPS), (unsigned)a->n_heads);
    attn_fwd_kernel<NR><<<grid, 32 * ATT_WARPS, smem, cu_stream()>>>(out, lse, q, k, v, T, *a);
    launch_check();
}

// q (T, H, D), k, v (T, KVH, D) -> out (T, H, D), lse (T, H)
static void cu_attention_train(float *out, float *lse, const float *q, const float *k, const float *v, int T,
                               const bk_train_attn *a) {
    if (T <= 0) return;
    int D = a->head_dim;
    if (D <= 64) attn_fwd_launch<2>(out, lse, q, k, v, T, a);
    else if (D <= 128) attn_fwd_launch<4>(out, lse, q, k, v, T, a);
    else if (D <= 256) attn_fwd_launch<8>(out, lse, q, k, v, T, a);
    else attn_fwd_launch<BK_MAX_HEAD_DIM / 32>(out, lse, q, k, v, T, a);
}

// Pass 1 of the backward (kernels/cpu/backward.c has the formulas): per
// query row, delta = dO . O and dq = scale * sum_j P_ij (dO . v_j - delta) k_j.
template <int NR>
__global__ static void attn_dq_kernel(float *dq, float *delta, const float *dout, const float *q, const float *k,
                                      const float *v, const float *o, const float *lse, int T, bk_train_attn a) {
    extern __shared__ float sm[];
    int D = a.head_dim, H = a.n_heads, KV = a.n_kv_heads * D;
    int h = blockIdx.y, kvh = h / (H / a.n_kv_heads);
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    int t0 = blockIdx.x * ATT_WARPS, t = t0 + warp;
    int t_last = min(t0 + ATT_WARPS, T) - 1;
    float *ks = sm, *vs = ks + ATT_TILE * (D + 1);
    float *qs = vs + ATT_TILE * (D + 1) + 2 * warp * D, *dos = qs + D;
    int valid = t < T;
    int64_t row = (int64_t)t * H + h;
    int lo = valid ? first_key(a.start, a.window, t) : 0;
    float dl = 0.0f, lrow = 0.0f;
    if (valid) {
        for (int d = lane; d < D; d += 32) {
            qs[d] = q[row * D + d];
            dos[d] = dout[row * D + d];
            dl += dos[d] * o[row * D + d];
        }
        dl = warp_sum(dl);
        lrow = lse[row];
        if (lane == 0) delta[row] = dl;
    }
    __syncwarp();
    float acc[NR];
#pragma unroll
    for (int i = 0; i < NR; i++) acc[i] = 0.0f;
    for (int p0 = first_key(a.start, a.window, t0); p0 <= t_last; p0 += ATT_TILE) {
        __syncthreads();
        load_tile(ks, k + kvh * D, KV, p0, t_last + 1, D);
        load_tile(vs, v + kvh * D, KV, p0, t_last + 1, D);
        __syncthreads();
        int p = p0 + lane;
        float ds = 0.0f;
        if (valid && p >= lo && p <= t) {
            float pr = expf(tile_dot(qs, ks, lane, D) * a.scale - lrow);
            ds = pr * (tile_dot(dos, vs, lane, D) - dl);
        }
        tile_accumulate<NR>(acc, ds, ks, lane, D);
    }
    if (!valid) return;
#pragma unroll
    for (int i = 0; i < NR; i++)
        if (lane + 32 * i < D) dq[row * D + lane + 32 * i] = acc[i] * a.scale;
}

// The last query that sees key p: the end of p's sequence (start[] is
// constant over a sequence and increases after it), cut by the window.
__device__ static int last_query(const int32_t *start, int window, int p, int T) {
    int lo = p, hi = T - 1; // start[lo] == start[p]; find the last such index
    while (lo < hi) {
        int mid = lo + (hi - lo + 1) / 2;
        if (start[mid] == start[p]) lo = mid;
        else hi = mid - 1;
    }
    if (window > 0 && p + window - 1 < lo) lo = p + window - 1;
    return lo;
}

// Pass 2: per key row p and KV head, over the (query token, head of the
// group) pairs that see it, in token-then-head order (the CPU's order):
// dv = sum P dO, dk = scale * sum P (dO . v - delta) q. The pairs stream
// through shared memory ATT_TILE at a time, lane j taking pair j. One warp
// owns each output row: no atomics, a fixed order.
// grid (ceil(T / ATT_WARPS), KVH), block 32 * ATT_WARPS.
template <int NR>
__global__ static void attn_dkv_kernel(float *dk, float *dv, const float *dout, const float *q, const float *k,
                                       const float *v, const float *lse, const float *delta, int T, bk_train_attn a) {
    extern __shared__ float sm[];
    __shared__ int q_end[ATT_WARPS];
    __shared__ float lse_s[ATT_TILE], delta_s[ATT_TILE];
    int D = a.head_dim, H = a.n_heads, KVH = a.n_kv_heads, G = H / KVH;
    int kvh = blockIdx.y;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    int p0 = blockIdx.x * ATT_WARPS, p = p0 + warp;
    float *qt = sm, *dot_ = qt + ATT_TILE * (D + 1);
    float *kr = dot_ + ATT_TILE * (D + 1) + 2 * warp * D, *vr = kr + D;
    int valid = p < T;
    int hi = valid ? last_query(a.start, a.window, p, T) : -1;
    if (lane == 0) q_end[warp] = hi;
    if (valid)
        for (int d = lane; d < D; d += 32) {
            kr[d] = k[((int64_t)p * KVH + kvh) * D + d];
            vr[d] = v[((int64_t)p * KVH + kvh) * D + d];
        }
    __syncthreads();
    int block_end = q_end[0];
    for (int w = 1; w < ATT_WARPS; w++) block_end = max(block_end, q_end[w]);
    float adk[NR], adv[NR];
#pragma unroll
    for (int i = 0; i < NR; i++) adk[i] = adv[i] = 0.0f;
    // Pairs (t, g) flattened as (t - p0) * G + g over t in [p0, block_end].
    int n_pairs = (block_end - p0 + 1) * G;
    for (int j0 = 0; j0 < n_pairs; j0 += ATT_TILE) {
        __syncthreads();
        for (int i = threadIdx.x; i < ATT_TILE * D; i += blockDim.x) {
            int r = i / D, d = i % D, jj = j0 + r;
            int64_t row = (int64_t)(p0 + jj / G) * H + kvh * G + jj % G;
            int in = jj < n_pairs;
            qt[r * (D + 1) + d] = in ? q[row * D + d] : 0.0f;
            dot_[r * (D + 1) + d] = in ? dout[row * D + d] : 0.0f;
        }
        for (int r = threadIdx.x; r < ATT_TILE; r += blockDim.x) {
            int jj = j0 + r;
            int64_t row = (int64_t)(p0 + jj / G) * H + kvh * G + jj % G;
            lse_s[r] = jj < n_pairs ? lse[row] : 0.0f;
            delta_s[r] = jj < n_pairs ? delta[row] : 0.0f;
        }
        __syncthreads();
        int tq = p0 + (j0 + lane) / G;
        float pr = 0.0f, ds = 0.0f;
        if (valid && j0 + lane < n_pairs && tq >= p && tq <= hi) {
            pr = expf(tile_dot(kr, qt, lane, D) * a.scale - lse_s[lane]);
            ds = pr * (tile_dot(vr, dot_, lane, D) - delta_s[lane]);
        }
        for (int j = 0; j < ATT_TILE; j++) {
            float pj = __shfl_sync(0xffffffffu, pr, j), dj = __shfl_sync(0xffffffffu, ds, j);
            if (pj == 0.0f && dj == 0.0f) continue;
            const float *qrow = qt + j * (D + 1), *drow = dot_ + j * (D + 1);
#pragma unroll
            for (int i = 0; i < NR; i++)
                if (lane + 32 * i < D) {
                    adv[i] += pj * drow[lane + 32 * i];
                    adk[i] += dj * qrow[lane + 32 * i];
                }
        }
    }
    if (!valid) return;
    int64_t orow = ((int64_t)p * KVH + kvh) * D;
#pragma unroll
    for (int i = 0; i < NR; i++)
        if (lane + 32 * i < D) {
            dk[orow + lane + 32 * i] = adk[i] * a.scale;
            dv[orow + lane + 32 * i] = adv[i];
        }
}

// Pass 1 (dq, delta) then pass 2 (dk, dv), which reads pass 1's delta.
template <int NR>
static void attn_bwd_launch(float *dq, float *dk, float *dv, float *delta, const float *dout, const float *q,
                            const float *k, const float *v, const float *out, const float *lse, int T,
                            const bk_train_attn *a) {
    size_t smem = att_smem(a->head_dim, 2);
    allow_smem(attn_dq_kernel<NR>, smem);
    allow_smem(attn_dkv_kernel<NR>, smem);
    dim3 g1((unsigned)cdiv(T, ATT_WARPS), (unsigned)a->n_heads);
    attn_dq_kernel<NR><<<g1, 32 * ATT_WARPS, smem, cu_stream()>>>(dq, delta, dout, q, k, v, out, lse, T, *a);
    launch_check();
    dim3 g2((unsigned)cdiv(T, ATT_WARPS), (unsigned)a->n_kv_heads);
    attn_dkv_kernel<NR><<<g2, 32 * ATT_WARPS, smem, cu_stream()>>>(dk, dv, dout, q, k, v, lse, delta, T, *a);
    launch_check();
}

static void cu_attention_backward(float *dq, float *dk, float *dv, float *delta, const float *dout, const float *q,
                                  const float *k, const float *v, const float *out, const float *lse, int T,
                                  const bk_train_attn *a) {
    if (T <= 0) return;
    int D = a->head_dim;
    if (D <= 64) attn_bwd_launch<2>(dq, dk, dv, delta, dout, q, k, v, out, lse, T, a);
    else if (D <= 128) attn_bwd_launch<4>(dq, dk, dv, delta, dout, q, k, v, out, lse, T, a);
    else if (D <= 256) attn_bwd_launch<8>(dq, dk, dv, delta, dout, q, k, v, out, lse, T, a);
    else attn_bwd_launch<BK_MAX_HEAD_DIM / 32>(dq, dk, dv, delta, dout, q, k, v, out, lse, T, a);
}

// ---- LoRA ---------------------------------------------------------------------------

static int dropping(const bk_dropout *d) { return d && d->p > 0.0f; }

// xd (n) = x with dropout applied, element i being flat index i.
__global__ static void dropout_kernel(float *xd, const float *x, int64_t n, bk_dropout d) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float inv = 1.0f / (1.0f - d.p);
    xd[i] = bk_dropout_keep(&d, (uint64_t)i) ? x[i] * inv : 0.0f;
}

// dx (n) += g scaled by the dropout mask.
__global__ static void dropout_add_kernel(float *dx, const float *g, int64_t n, bk_dropout d) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float inv = 1.0f / (1.0f - d.p);
    if (bk_dropout_keep(&d, (uint64_t)i)) dx[i] += g[i] * inv;
}

// x (T, C) with dropout into scratch 0, or x itself without.
static const float *dropped_input(const float *x, int64_t n, const bk_dropout *drop) {
    if (!dropping(drop)) return x;
    float *xd = (float *)cu_scratch(0, (size_t)n * sizeof(float));
    if (!xd) cu_fatal(__FILE__, __LINE__, "out of device memory for the LoRA dropout scratch");
    dropout_kernel<<<(unsigned)cdiv(n, EW_THREADS), EW_THREADS, 0, cu_stream()>>>(xd, x, n, *drop);
    launch_check();
    return xd;
}

// x (T, C), A (rank, C), B (OC, rank) -> v (T, rank) = A drop(x),
// y (T, OC) += scale * B v.
static void cu_lora_train(float *y, float *v, const float *x, const float *A, const float *B, int T, int C, int OC,
                          int rank, float scale, const bk_dropout *drop) {
    if (T <= 0) return;
    const float *xd = dropped_input(x, (int64_t)T * C, drop);
    sgemm(CUBLAS_OP_T, CUBLAS_OP_N, rank, T, C, 1.0f, A, C, xd, C, 0.0f, v, rank);   // v^T = A xd^T
    sgemm(CUBLAS_OP_T, CUBLAS_OP_N, OC, T, rank, scale, B, rank, v, rank, 1.0f, y, OC); // y^T += s B v^T
}

// u = scale * dy B (T, rank); dB += scale * dy^T v; dA += u^T drop(x);
// dx += mask * (u A).
static void cu_lora_backward(float *dx, float *dA, float *dB, float *u, const float *dy, const float *x, const float *v,
                             const float *A, const float *B, int T, int C, int OC, int rank, float scale,
                             const bk_dropout *drop) {
    if (T <= 0) return;
    int64_t n = (int64_t)T * C;
    sgemm(CUBLAS_OP_N, CUBLAS_OP_N, rank, T, OC, scale, B, rank, dy, OC, 0.0f, u, rank);   // u^T = s B^T dy^T
    sgemm(CUBLAS_OP_N, CUBLAS_OP_T, rank, OC, T, scale, v, rank, dy, OC, 1.0f, dB, rank);  // dB^T += s v^T dy
    const float *xd = dropped_input(x, n, drop);
    sgemm(CUBLAS_OP_N, CUBLAS_OP_T, C, rank, T, 1.0f, xd, C, u, rank, 1.0f, dA, C);        // dA^T += xd^T u
    if (!dropping(drop)) {
        sgemm(CUBLAS_OP_N, CUBLAS_OP_N, C, T, rank, 1.0f, A, C, u, rank, 1.0f, dx, C);     // dx^T += A^T u^T
        return;
    }
    // u A into the dropout scratch (stream order: the dA product above has read it).
    float *g = (float *)cu_scratch(0, (size_t)n * sizeof(float));
    if (!g) cu_fatal(__FILE__, __LINE__, "out of device memory for the LoRA dropout scratch");
    sgemm(CUBLAS_OP_N, CUBLAS_OP_N, C, T, rank, 1.0f, A, C, u, rank, 0.0f, g, C);
    dropout_add_kernel<<<(unsigned)cdiv(n, EW_THREADS), EW_THREADS, 0, cu_stream()>>>(dx, g, n, *drop);
    launch_check();
}

// ---- matmul ---------------------------------------------------------------------------

// dy (T, OC), W (OC, C) -> dx (T, C) = dy W (or +=). Bf16 / NF4 weights are
// converted a tile of rows at a time into scratch 1 (at most
// MMB_SCRATCH_FLOATS floats), each tile's product added to dx in tile order.
static void cu_matmul_backward(float *dx, const float *dy, const bk_weight *W, int T, int accumulate) {
    if (T <= 0) return;
    int64_t OC = W->rows, C = W->cols;
    if (W->type == BK_W_F32) { // dx^T (C, T) = W^T (C, OC) dy^T (OC, T)
        sgemm(CUBLAS_OP_N, CUBLAS_OP_N, (int)C, T, (int)OC, 1.0f, (const float *)W->data, (int)C, dy, (int)OC,
              accumulate ? 1.0f : 0.0f, dx, (int)C);
        return;
    }
    int64_t tile = MMB_SCRATCH_FLOATS / C;
    if (tile < 1) tile = 1;
    if (tile > OC) tile = OC;
    float *w = (float *)cu_scratch(1, (size_t)(tile * C) * sizeof(float));
    if (!w) cu_fatal(__FILE__, __LINE__, "out of device memory for matmul_backward's weight tile");
    for (int64_t o0 = 0; o0 < OC; o0 += tile) {
        int64_t rows = OC - o0 < tile ? OC - o0 : tile;
        cu_weight_rows_f32(w, W, o0, rows);
        float beta = accumulate || o0 > 0 ? 1.0f : 0.0f;
        sgemm(CUBLAS_OP_N, CUBLAS_OP_N, (int)C, T, (int)rows, 1.0f, w, (int)C, dy + o0, (int)OC, beta, dx, (int)C);
    }
}

// ---- row-wise and element-wise ops -----------------------------------------------------------

// One warp per row: dx = s w dy - x s^3 / C * sum(w dy x),
// s = 1 / sqrt(mean(x^2) + eps). Each lane reads dy[i] before writing dx[i]
// of the same i, so dx may be dy.
__global__ static void rmsnorm_bwd_kernel(float *dx, const float *dy, const float *x, const float *w, int64_t N, int C,
                                          float eps, int accumulate) {
    int64_t r = (int64_t)blockIdx.x * ROW_WARPS + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    if (r >= N) return;
    const float *xr = x + r * C, *dyr = dy + r * C;
    float *dxr = dx + r * C;
    float ss = 0.0f, dot = 0.0f;
    for (int i = lane; i < C; i += 32) {
        ss += xr[i] * xr[i];
        dot += w[i] * dyr[i] * xr[i];
    }
    ss = warp_sum(ss);
    dot = warp_sum(dot);
    float s = 1.0f / sqrtf(ss / (float)C + eps);
    float k = s * s * s * dot / (float)C;
    for (int i = lane; i < C; i += 32) {
        float g = s * w[i] * dyr[i] - xr[i] * k;
        dxr[i] = accumulate ? dxr[i] + g : g;
    }
}

static void cu_rmsnorm_backward(float *dx, const float *dy, const float *x, const float *w, int64_t N, int C,
                                float eps, int accumulate) {
    if (N <= 0) return;
    rmsnorm_bwd_kernel<<<(unsigned)cdiv(N, ROW_WARPS), 32 * ROW_WARPS, 0, cu_stream()>>>(dx, dy, x, w, N, C, eps,
                                                                                      accumulate);
    launch_check();
}

// One thread per (token, head, pair i): the rotation of `rope` by the
// opposite angle (kernels/cpu/ops.c, cpu_rope_rotate with sin negated).
__global__ static void rope_bwd_kernel(float *x, const int32_t *pos, int T, int H, int D, const float *inv_freq) {
    int half = D / 2;
    int64_t n = (int64_t)T * H * half, idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= n) return;
    int i = (int)(idx % half);
    int64_t th = idx / half, t = th / H;
    float f = (float)pos[t] * inv_freq[i];
    float c = cosf(f), s = -sinf(f);
    float *vr = x + th * D;
    float a = vr[i], b = vr[i + half];
    vr[i] = a * c - b * s;
    vr[i + half] = b * c + a * s;
}

static void cu_rope_backward(float *dx, const int32_t *pos, int T, int H, int D, const float *inv_freq) {
    int64_t n = (int64_t)T * H * (D / 2);
    if (n <= 0) return;
    rope_bwd_kernel<<<(unsigned)cdiv(n, EW_THREADS), EW_THREADS, 0, cu_stream()>>>(dx, pos, T, H, D, inv_freq);
    launch_check();
}

// out = silu(g) u: du = dout silu(g), dg = dout u sig(g) (1 + g (1 - sig(g))).
__global__ static void swiglu_bwd_kernel(float *dgate, float *dup, const float *dout, const float *gate,
                                         const float *up, int64_t N) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= N) return;
    float d = dout[i], g = gate[i], u = up[i];
    float sg = 1.0f / (1.0f + expf(-g));
    dup[i] = d * (g * sg);
    dgate[i] = d * u * sg * (1.0f + g * (1.0f - sg));
}

static void cu_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                               int64_t N) {
    if (N <= 0) return;
    swiglu_bwd_kernel<<<(unsigned)cdiv(N, EW_THREADS), EW_THREADS, 0, cu_stream()>>>(dgate, dup, dout, gate, up, N);
    launch_check();
}

// ---- loss and optimizer ------------------------------------------------------------------

// Block-wide reductions over CE_THREADS threads (a fixed tree: the same
// order for any input).
template <typename T, typename F> __device__ static T block_reduce(T x, T *sh, F op) {
    sh[threadIdx.x] = x;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) sh[threadIdx.x] = op(sh[threadIdx.x], sh[threadIdx.x + s]);
        __syncthreads();
    }
    T r = sh[0];
    __syncthreads();
    return r;
}

struct op_max { __device__ float operator()(float a, float b) const { return fmaxf(a, b); } };
struct op_add { __device__ double operator()(double a, double b) const { return a + b; } };

// One block per row: the max-shifted exponentials (summed in double), the
// loss logsumexp - logit[target], then the row overwritten with
// softmax * scale - onehot * scale (kernels/cpu/backward.c, ce_task).
__global__ static void ce_kernel(float *logits, float *loss, const int32_t *target, int V, float scale) {
    __shared__ float fsh[CE_THREADS];
    __shared__ double dsh[CE_THREADS];
    float *l = logits + (int64_t)blockIdx.x * V;
    int tg = target[blockIdx.x];
    float lt = l[tg]; // read by every thread before any write below
    float mx = -INFINITY;
    for (int v = threadIdx.x; v < V; v += blockDim.x) mx = fmaxf(mx, l[v]);
    mx = block_reduce(mx, fsh, op_max());
    double sum = 0.0;
    for (int v = threadIdx.x; v < V; v += blockDim.x) {
        float e = expf(l[v] - mx);
        l[v] = e;
        sum += e;
    }
    sum = block_reduce(sum, dsh, op_add());
    float k = (float)(scale / sum);
    for (int v = threadIdx.x; v < V; v += blockDim.x) l[v] *= k;
    __syncthreads();
    if (threadIdx.x == 0) {
        l[tg] -= scale;
        loss[blockIdx.x] = mx + (float)log(sum) - lt;
    }
}

static void cu_cross_entropy(float *logits, float *loss, const int32_t *target, int N, int V, float grad_scale) {
    if (N <= 0) return;
    ce_kernel<<<(unsigned)N, CE_THREADS, 0, cu_stream()>>>(logits, loss, target, V, grad_scale);
    launch_check();
}

// backend.h's AdamW formula, one element per thread.
__global__ static void adamw_kernel(float *p, const float *g, float *m, float *v, int64_t n, bk_adamw h) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float gi = g[i] * h.grad_scale;
    float pi = p[i] * h.decay;
    float mi = m[i] + (1.0f - h.beta1) * (gi - m[i]);
    float vi = v[i] * h.beta2 + (1.0f - h.beta2) * (gi * gi);
    float denom = sqrtf(vi) / h.bc2_sqrt + h.eps;
    p[i] = pi + -h.step_size * (mi / denom);
    m[i] = mi;
    v[i] = vi;
}

static void cu_adamw(float *p, const float *g, float *m, float *v, int64_t n, const bk_adamw *h) {
    if (n <= 0) return;
    adamw_kernel<<<(unsigned)cdiv(n, EW_THREADS), EW_THREADS, 0, cu_stream()>>>(p, g, m, v, n, *h);
    launch_check();
}

// Stage 1: block b sums x[b * per, (b + 1) * per) in double, thread i taking
// every blockDim-th element from i, then a fixed tree -> part[b].
__global__ static void sumsq_part_kernel(double *part, const float *x, int64_t n, int64_t per) {
    __shared__ double sh[SUMSQ_THREADS];
    int64_t i0 = (int64_t)blockIdx.x * per, i1 = i0 + per < n ? i0 + per : n;
    double s = 0.0;
    for (int64_t i = i0 + threadIdx.x; i < i1; i += blockDim.x) s += (double)x[i] * (double)x[i];
    s = block_reduce(s, sh, op_add());
    if (threadIdx.x == 0) part[blockIdx.x] = s;
}

// Stage 2: one block adds the parts, the same tree.
__global__ static void sumsq_total_kernel(double *out, const double *part, int n_parts) {
    __shared__ double sh[SUMSQ_THREADS];
    double s = 0.0;
    for (int i = threadIdx.x; i < n_parts; i += blockDim.x) s += part[i];
    s = block_reduce(s, sh, op_add());
    if (threadIdx.x == 0) *out = s;
}

// sum(x^2) in double; the parts depend on n only, so the value does too.
static double cu_sumsq(const float *x, int64_t n) {
    if (n <= 0) return 0.0;
    int64_t per = cdiv(n, SUMSQ_PARTS);
    if (per < 4096) per = 4096;
    int parts = (int)cdiv(n, per);
    double *buf = (double *)cu_scratch(3, (size_t)(parts + 1) * sizeof(double));
    if (!buf) cu_fatal(__FILE__, __LINE__, "out of device memory for sumsq's partial sums");
    sumsq_part_kernel<<<(unsigned)parts, SUMSQ_THREADS, 0, cu_stream()>>>(buf + 1, x, n, per);
    launch_check();
    sumsq_total_kernel<<<1, SUMSQ_THREADS, 0, cu_stream()>>>(buf, buf + 1, parts);
    launch_check();
    double s = 0.0;
    CU_CHECK(cudaMemcpyAsync(&s, buf, sizeof s, cudaMemcpyDeviceToHost, cu_stream()));
    CU_CHECK(cudaStreamSynchronize(cu_stream()));
    return s;
}

void cu_train_fill(bk_ops *ops) {
    ops->attention_train = cu_attention_train;
    ops->attention_backward = cu_attention_backward;
    ops->lora_train = cu_lora_train;
    ops->lora_backward = cu_lora_backward;
    ops->matmul_backward = cu_matmul_backward;
    ops->rmsnorm_backward = cu_rmsnorm_backward;
    ops->rope_backward = cu_rope_backward;
    ops->swiglu_backward = cu_swiglu_backward;
    ops->cross_entropy = cu_cross_entropy;
    ops->adamw = cu_adamw;
    ops->sumsq = cu_sumsq;
}
