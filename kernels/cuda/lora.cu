// lora: the LoRA pair over adapter segments (SGMV) on the GPU, two launches
// for the whole batch whatever the number of adapters and their ranks:
//   shrink  v[t] = A_s x[t]              (rank_s dots of length C per token)
//   expand  y[t] += scale_s * B_s v[t]   (OC dots of length rank_s per token)
// for t in segment s. The host cuts every segment into items of up to
// LORA_TOK tokens; the segment array and the item list are staged to the
// device (cu_stage) and each block of a launch takes one item, reading its
// segment's rank, scale and A / B pointers: heterogeneous ranks in one
// launch. A and B are f32 or bf16 per segment (bk_lora_seg.dtype), widened
// to f32 as they are read; accumulation is f32. The expand waits for the
// shrink by stream order.
#include <stdlib.h>
#include <string.h>

#include "cu_internal.h"

#define LORA_TOK 8      // tokens per item: a block reuses each A / B load for them
#define LORA_KROWS 4    // rank rows per warp pass in the shrink
#define SHRINK_WARPS 4
#define EXPAND_THREADS 256

typedef struct lora_item {
    int seg, t0; // tokens [seg.start + t0, seg.start + min(t0 + LORA_TOK, seg.count))
} lora_item;

// Element i of a segment's A or B as f32 (bf16 widened exactly).
__device__ __forceinline__ float lora_w(const bk_lora_seg &s, const void *p, int64_t i) {
    if (s.dtype == BK_DT_BF16) return cu_bf16_f32(__ldg((const unsigned short *)p + i));
    return __ldg((const float *)p + i);
}

// Block = one item; warp w takes rank rows w*4 .. w*4+3, then + 16, ...,
// each lane a stride of C, every row dotted with every token of the item.
__global__ void __launch_bounds__(SHRINK_WARPS * 32) lora_shrink_kernel(float *v, const float *x, int C, int vstride,
                                                                      const bk_lora_seg *segs,
                                                                      const lora_item *items) {
    const lora_item it = items[blockIdx.x];
    const bk_lora_seg s = segs[it.seg];
    const int nt = s.count - it.t0 < LORA_TOK ? s.count - it.t0 : LORA_TOK;
    const int64_t tok0 = (int64_t)s.start + it.t0;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    for (int k0 = warp * LORA_KROWS; k0 < s.rank; k0 += SHRINK_WARPS * LORA_KROWS) {
        float acc[LORA_KROWS][LORA_TOK];
#pragma unroll
        for (int i = 0; i < LORA_KROWS; i++)
#pragma unroll
            for (int t = 0; t < LORA_TOK; t++) acc[i][t] = 0.0f;
        for (int c = lane; c < C; c += 32) {
            float a[LORA_KROWS];
#pragma unroll
            for (int i = 0; i < LORA_KROWS; i++) a[i] = k0 + i < s.rank ? lora_w(s, s.A, (int64_t)(k0 + i) * C + c) : 0.0f;
#pragma unroll
            for (int t = 0; t < LORA_TOK; t++) {
                if (t >= nt) break;
                float xv = __ldg(x + (tok0 + t) * C + c);
#pragma unroll
                for (int i = 0; i < LORA_KROWS; i++) acc[i][t] = fmaf(a[i], xv, acc[i][t]);
            }
        }
#pragma unroll
        for (int i = 0; i < LORA_KROWS; i++)
#pragma unroll
            for (int t = 0; t < LORA_TOK; t++) {
                float d = cu_warp_sum(acc[i][t]);
                if (lane == 0 && t < nt && k0 + i < s.rank) v[(tok0 + t) * vstride + k0 + i] = d;
            }
    }
}

// Block = (item, a range of EXPAND_THREADS outputs); thread o dots row o of
// B with v[t] (the same v for the whole warp: broadcast loads).
__global__ void lora_expand_kernel(float *y, const float *v, int OC, int vstride, const bk_lora_seg *segs,
                                   const lora_item *items) {
    const lora_item it = items[blockIdx.x];
    const bk_lora_seg s = segs[it.seg];
    const int o = blockIdx.y * EXPAND_THREADS + threadIdx.x;
    if (o >= OC) return;
    const int nt = s.count - it.t0 < LORA_TOK ? s.count - it.t0 : LORA_TOK;
    const int64_t tok0 = (int64_t)s.start + it.t0;
    float acc[LORA_TOK];
#pragma unroll
    for (int t = 0; t < LORA_TOK; t++) acc[t] = 0.0f;
    const int64_t b = (int64_t)o * s.rank;
    for (int k = 0; k < s.rank; k++) {
        float bk = lora_w(s, s.B, b + k);
#pragma unroll
        for (int t = 0; t < LORA_TOK; t++) {
            if (t >= nt) break;
            acc[t] = fmaf(bk, v[(tok0 + t) * vstride + k], acc[t]);
        }
    }
#pragma unroll
    for (int t = 0; t < LORA_TOK; t++) {
        if (t >= nt) break;
        y[(tok0 + t) * OC + o] += acc[t] * s.scale;
    }
}

// The host side's per-call list (segments, then items), kept between calls:
// the one engine thread runs the ops, and the step loop should not malloc.
static struct {
    unsigned char *buf;
    size_t cap;
} lora_host;

// x (T, C) -> y (T, OC) += scale_s * B_s A_s x[t] per segment; v (T, max rank)
void cu_lora(float *y, const float *x, float *v, int C, int OC, const bk_lora_seg *seg, int nseg) {
    int max_rank = 0, nitems = 0;
    for (int i = 0; i < nseg; i++) {
        if (seg[i].count <= 0 || seg[i].rank <= 0) continue;
        if (seg[i].rank > max_rank) max_rank = seg[i].rank;
        nitems += (seg[i].count + LORA_TOK - 1) / LORA_TOK;
    }
    if (nitems == 0 || OC <= 0) return;
    size_t seg_bytes = ((size_t)nseg * sizeof(bk_lora_seg) + 15) / 16 * 16;
    size_t bytes = seg_bytes + (size_t)nitems * sizeof(lora_item);
    if (bytes > lora_host.cap) {
        unsigned char *p = (unsigned char *)realloc(lora_host.buf, bytes * 2);
        if (!p) cu_fatal(__FILE__, __LINE__, "lora: out of host memory for the segment list");
        lora_host.buf = p;
        lora_host.cap = bytes * 2;
    }
    memcpy(lora_host.buf, seg, (size_t)nseg * sizeof(bk_lora_seg));
    lora_item *items = (lora_item *)(lora_host.buf + seg_bytes);
    int n = 0;
    for (int i = 0; i < nseg; i++) {
        if (seg[i].count <= 0 || seg[i].rank <= 0) continue;
        for (int t0 = 0; t0 < seg[i].count; t0 += LORA_TOK) items[n++] = (lora_item){i, t0};
    }
    const unsigned char *d = (const unsigned char *)cu_stage(lora_host.buf, bytes);
    if (!d) cu_fatal(__FILE__, __LINE__, "lora: out of memory staging the segment list");
    const bk_lora_seg *dsegs = (const bk_lora_seg *)d;
    const lora_item *ditems = (const lora_item *)(d + seg_bytes);
    lora_shrink_kernel<<<nitems, SHRINK_WARPS * 32, 0, cu_stream()>>>(v, x, C, max_rank, dsegs, ditems);
    CU_LAUNCHED();
    dim3 grid(nitems, cu_blocks(OC, EXPAND_THREADS));
    lora_expand_kernel<<<grid, EXPAND_THREADS, 0, cu_stream()>>>(y, v, OC, max_rank, dsegs, ditems);
    CU_LAUNCHED();
}
