// attention: causal GQA attention of a flat batch of tokens over the paged
// KV cache (layout in backend.h), flash-style: K and V pass through shared
// memory 32 positions at a time, each query row keeps a running max, sum
// and output (online softmax, rescaled when the max grows), so no score
// matrix is ever stored.
//
// A block owns up to 16 query rows that share one KV head: the group's
// query heads of one token (decode: a token's K/V rows are loaded once for
// all the heads that read them), or of several consecutive tokens when the
// batch is large (prefill: a K/V tile serves 16 / group tokens at once).
// Tokens of a block may belong to different sequences (mixed batches): the
// block walks each run of same-sequence tokens over the run's key range,
// the other rows masked. When blocks are too few to fill the GPU (decode,
// short batches), each row's key range is split across gridDim.y blocks
// (flash-decoding) and a second kernel merges the partial (max, sum, out).
//
// f32 math throughout, accurate expf: the CPU's results up to summation
// order. A bf16 cache is widened to f32 (exactly) as its tiles are loaded
// into shared memory, so the rest of the kernel does not know the dtype. Warp w holds rows w, w + 4, w + 8, w + 12; in a K/V tile
// lane j scores key j, then the lanes share the probabilities by shuffle
// and each accumulates the output dims lane, lane + 32, ...
#include <math.h>

#include "cu_internal.h"

#define ATT_ROWS 16      // query rows per block
#define ATT_WARPS 4      // each warp ATT_ROWS / ATT_WARPS rows
#define ATT_RW (ATT_ROWS / ATT_WARPS)
#define ATT_KEYS 32      // positions per K/V tile (one per lane)
#define ATT_DECODE_T 16  // batches up to this many tokens: one token per block

// How the launch cut the work: rows of a block are (token, head) pairs,
// ntok tokens x nh heads, row r = token r / nh, head r % nh.
typedef struct att_plan {
    int nt;      // tokens per block (tile)
    int hpc;     // query heads per block
    int hchunks; // blocks per KV head's group of query heads
    int nsplit;  // blocks per row's key range (gridDim.y)
} att_plan;

__device__ __forceinline__ int64_t att_slot(const bk_attn_args &a, int seq, int p) {
    return (int64_t)__ldg(a.block_table + (int64_t)seq * a.table_stride + p / a.block_size) * a.block_size +
           p % a.block_size;
}

// 4 consecutive cache elements at element offset off, as f32 (bf16 widened
// exactly). off is a multiple of 4: 16-byte (f32) or 8-byte (bf16) aligned.
__device__ __forceinline__ float4 att_load4(const void *cache, bk_dtype dt, int64_t off) {
    if (dt == BK_DT_F32) return __ldg((const float4 *)((const float *)cache + off));
    uint2 h = __ldg((const uint2 *)((const unsigned short *)cache + off));
    return make_float4(__uint_as_float(h.x << 16), __uint_as_float(h.x & 0xffff0000u), __uint_as_float(h.y << 16),
                       __uint_as_float(h.y & 0xffff0000u));
}

__device__ __forceinline__ float att_load1(const void *cache, bk_dtype dt, int64_t off) {
    if (dt == BK_DT_F32) return __ldg((const float *)cache + off);
    return cu_bf16_f32(__ldg((const unsigned short *)cache + off));
}

// K and V rows of positions kt .. kt + 31 of seq (those <= khi; zeros
// beyond, so masked keys never bring NaN in) for KV head g -> shared memory,
// as f32 whatever the cache's dtype.
__device__ void att_load_tile(float *ks, float *vs, const bk_attn_args &a, int seq, int kt, int khi, int g) {
    const int D = a.head_dim;
    const int64_t KV = (int64_t)a.n_kv_heads * D;
    if (D % 4 == 0) {
        const int D4 = D / 4;
        for (int i = threadIdx.x; i < ATT_KEYS * D4; i += blockDim.x) {
            int j = i / D4, d = (i % D4) * 4, p = kt + j;
            float4 k4 = make_float4(0.f, 0.f, 0.f, 0.f), v4 = k4;
            if (p <= khi) {
                int64_t off = att_slot(a, seq, p) * KV + (int64_t)g * D + d;
                k4 = att_load4(a.k_cache, a.kv_dtype, off);
                v4 = att_load4(a.v_cache, a.kv_dtype, off);
            }
            float *kr = ks + j * (D + 1) + d;
            kr[0] = k4.x, kr[1] = k4.y, kr[2] = k4.z, kr[3] = k4.w;
            *(float4 *)(vs + j * D + d) = v4;
        }
    } else {
        for (int i = threadIdx.x; i < ATT_KEYS * D; i += blockDim.x) {
            int j = i / D, d = i % D, p = kt + j;
            float kv = 0.0f, vv = 0.0f;
            if (p <= khi) {
                int64_t off = att_slot(a, seq, p) * KV + (int64_t)g * D + d;
                kv = att_load1(a.k_cache, a.kv_dtype, off);
                vv = att_load1(a.v_cache, a.kv_dtype, off);
            }
            ks[j * (D + 1) + d] = kv;
            vs[j * D + d] = vv;
        }
    }
}

template <int DI>
__global__ void __launch_bounds__(ATT_WARPS * 32) attn_kernel(float *out, float *part, const float *q, int T,
                                                              bk_attn_args a, att_plan pl) {
    extern __shared__ float sm[];
    __shared__ int tseq[ATT_ROWS], tfirst[ATT_ROWS], tpos[ATT_ROWS];
    const int D = a.head_dim, H = a.n_heads, KVH = a.n_kv_heads, gs = H / KVH;
    float *qs = sm;                          // (ATT_ROWS, D)
    float *ks = qs + ATT_ROWS * D;           // (ATT_KEYS, D + 1): the pad spreads lanes' rows over banks
    float *vs = ks + ATT_KEYS * (D + 1);     // (ATT_KEYS, D)

    int bid = blockIdx.x;
    const int hc = bid % pl.hchunks;
    bid /= pl.hchunks;
    const int g = bid % KVH, t0 = bid / KVH * pl.nt, split = blockIdx.y;
    const int ntok = T - t0 < pl.nt ? T - t0 : pl.nt;
    const int h0 = g * gs + hc * pl.hpc;
    const int nh = gs - hc * pl.hpc < pl.hpc ? gs - hc * pl.hpc : pl.hpc;
    const int R = ntok * nh;

    for (int i = threadIdx.x; i < ntok; i += blockDim.x) {
        int p = a.pos[t0 + i];
        tseq[i] = a.seq[t0 + i];
        tpos[i] = p;
        tfirst[i] = a.window > 0 && p - a.window + 1 > 0 ? p - a.window + 1 : 0;
    }
    for (int i = threadIdx.x; i < R * D; i += blockDim.x) {
        int r = i / D, d = i % D;
        qs[i] = q[((int64_t)(t0 + r / nh) * H + h0 + r % nh) * D + d];
    }
    __syncthreads();

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    float m[ATT_RW], l[ATT_RW], acc[ATT_RW][DI];
#pragma unroll
    for (int i = 0; i < ATT_RW; i++) {
        m[i] = -INFINITY, l[i] = 0.0f;
#pragma unroll
        for (int e = 0; e < DI; e++) acc[i][e] = 0.0f;
    }

    for (int ti0 = 0; ti0 < ntok;) { // each run of tokens of one sequence
        const int s = tseq[ti0];
        int ti1 = ti0 + 1, lo = tfirst[ti0], hi = tpos[ti0];
        for (; ti1 < ntok && tseq[ti1] == s; ti1++) lo = min(lo, tfirst[ti1]), hi = max(hi, tpos[ti1]);
        // this block's share of [lo, hi], whole tiles
        int per = (hi - lo + 1 + pl.nsplit - 1) / pl.nsplit;
        per = (per + ATT_KEYS - 1) / ATT_KEYS * ATT_KEYS;
        const int klo = lo + split * per, khi = min(hi, klo + per - 1);
        int active[ATT_RW], first[ATT_RW], last[ATT_RW];
#pragma unroll
        for (int i = 0; i < ATT_RW; i++) {
            int r = warp + ATT_WARPS * i, ti = r / nh;
            active[i] = r < R && ti >= ti0 && ti < ti1;
            first[i] = active[i] ? tfirst[ti] : 0;
            last[i] = active[i] ? tpos[ti] : -1;
        }
        for (int kt = klo; kt <= khi; kt += ATT_KEYS) {
            __syncthreads(); // the previous tile's readers are done
            att_load_tile(ks, vs, a, s, kt, khi, g);
            __syncthreads();
            const int p = kt + lane;
            float sc[ATT_RW];
#pragma unroll
            for (int i = 0; i < ATT_RW; i++) sc[i] = 0.0f;
            const float *kr = ks + lane * (D + 1);
            for (int d = 0; d < D; d++) {
                float kd = kr[d];
#pragma unroll
                for (int i = 0; i < ATT_RW; i++)
                    if (active[i]) sc[i] = fmaf(qs[(warp + ATT_WARPS * i) * D + d], kd, sc[i]);
            }
#pragma unroll
            for (int i = 0; i < ATT_RW; i++) {
                if (!active[i]) continue; // warp-uniform
                bool ok = p <= khi && p >= first[i] && p <= last[i];
                float si = ok ? sc[i] * a.scale : -INFINITY;
                float mn = fmaxf(m[i], cu_warp_max(si));
                if (mn == -INFINITY) continue; // no key of this tile for the row
                float corr = expf(m[i] - mn);  // 0 when m was -inf (acc and l are 0 then)
                float pj = ok ? expf(si - mn) : 0.0f;
                l[i] = l[i] * corr + cu_warp_sum(pj);
                m[i] = mn;
#pragma unroll
                for (int e = 0; e < DI; e++) acc[i][e] *= corr;
                for (int j = 0; j < ATT_KEYS; j++) {
                    float pb = __shfl_sync(0xffffffffu, pj, j);
                    const float *vr = vs + j * D;
#pragma unroll
                    for (int e = 0; e < DI; e++)
                        if (lane + 32 * e < D) acc[i][e] = fmaf(pb, vr[lane + 32 * e], acc[i][e]);
                }
            }
        }
        ti0 = ti1;
    }

#pragma unroll
    for (int i = 0; i < ATT_RW; i++) {
        int r = warp + ATT_WARPS * i;
        if (r >= R) continue;
        int64_t row = (int64_t)(t0 + r / nh) * H + h0 + r % nh; // (t, h)
        if (pl.nsplit == 1) {
            float inv = 1.0f / l[i];
#pragma unroll
            for (int e = 0; e < DI; e++)
                if (lane + 32 * e < D) out[row * D + lane + 32 * e] = acc[i][e] * inv;
        } else {
            float *pp = part + ((int64_t)split * T * H + row) * (D + 2);
#pragma unroll
            for (int e = 0; e < DI; e++)
                if (lane + 32 * e < D) pp[lane + 32 * e] = acc[i][e];
            if (lane == 0) pp[D] = m[i], pp[D + 1] = l[i];
        }
    }
}

// One block per (t, h): out = sum_c acc_c e^(m_c - M) / sum_c l_c e^(m_c - M).
// Some split holds position pos itself, so M is finite.
__global__ void attn_merge_kernel(float *out, const float *part, int64_t rows, int D, int nsplit) {
    const int64_t row = blockIdx.x;
    float M = -INFINITY;
    for (int c = 0; c < nsplit; c++) M = fmaxf(M, part[((int64_t)c * rows + row) * (D + 2) + D]);
    float L = 0.0f;
    for (int c = 0; c < nsplit; c++) {
        const float *pp = part + ((int64_t)c * rows + row) * (D + 2);
        if (pp[D] != -INFINITY) L += pp[D + 1] * expf(pp[D] - M);
    }
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        float s = 0.0f;
        for (int c = 0; c < nsplit; c++) {
            const float *pp = part + ((int64_t)c * rows + row) * (D + 2);
            if (pp[D] != -INFINITY) s += pp[d] * expf(pp[D] - M);
        }
        out[row * D + d] = s / L;
    }
}

static att_plan att_plan_for(int T, const bk_attn_args *a) {
    att_plan pl;
    int gs = a->n_heads / a->n_kv_heads;
    pl.hpc = gs < ATT_ROWS ? gs : ATT_ROWS;
    pl.hchunks = (gs + pl.hpc - 1) / pl.hpc;
    pl.nt = T <= ATT_DECODE_T ? 1 : ATT_ROWS / pl.hpc;
    int64_t blocks = (int64_t)(T + pl.nt - 1) / pl.nt * a->n_kv_heads * pl.hchunks;
    // Fill the GPU twice over, but keep >= 64 keys per split of the longest
    // context a table can describe.
    int64_t want = 2 * (int64_t)cu_sm_count();
    int64_t max_split = ((int64_t)a->table_stride * a->block_size + 63) / 64;
    pl.nsplit = 1;
    if (blocks < want) {
        int64_t n = (want + blocks - 1) / blocks;
        if (n > max_split) n = max_split;
        if (n > 64) n = 64;
        pl.nsplit = n < 1 ? 1 : (int)n;
    }
    return pl;
}

template <int DI>
static void attn_launch(float *out, const float *q, int T, const bk_attn_args *a, const att_plan &pl) {
    const int D = a->head_dim;
    size_t smem = (size_t)(ATT_ROWS * D + ATT_KEYS * (D + 1) + ATT_KEYS * D) * sizeof(float);
    static size_t smem_set = 48 * 1024; // the default limit without opting in
    if (smem > smem_set) {
        CU_CHECK(cudaFuncSetAttribute(attn_kernel<DI>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        smem_set = smem;
    }
    float *part = NULL;
    if (pl.nsplit > 1) {
        part = (float *)cu_scratch(2, (size_t)pl.nsplit * T * a->n_heads * (D + 2) * sizeof(float));
        if (!part) cu_fatal(__FILE__, __LINE__, "attention: out of device memory for the split partials");
    }
    unsigned blocks = (unsigned)((T + pl.nt - 1) / pl.nt * a->n_kv_heads * pl.hchunks);
    dim3 grid(blocks, pl.nsplit);
    attn_kernel<DI><<<grid, ATT_WARPS * 32, smem, cu_stream()>>>(out, part, q, T, *a, pl);
    CU_LAUNCHED();
    if (pl.nsplit > 1) {
        attn_merge_kernel<<<(unsigned)((int64_t)T * a->n_heads), 128, 0, cu_stream()>>>(out, part,
                                                                                         (int64_t)T * a->n_heads, D,
                                                                                         pl.nsplit);
        CU_LAUNCHED();
    }
}

// q (T, H, D) -> out (T, H, D)
void cu_attention(float *out, const float *q, int T, const bk_attn_args *a) {
    if (T <= 0) return;
    att_plan pl = att_plan_for(T, a);
    int D = a->head_dim;
    if (D <= 64)
        attn_launch<2>(out, q, T, a, pl);
    else if (D <= 128)
        attn_launch<4>(out, q, T, a, pl);
    else if (D <= 256)
        attn_launch<8>(out, q, T, a, pl);
    else
        attn_launch<16>(out, q, T, a, pl);
}
