// sample: bk_ops.sample on the device (kernels/cpu/sample.c is the
// reference; core/sampler.h states the semantics).
//
// What runs where:
//   - every row's sparse edits (the allowed bitset, penalties, bias) run on
//     the device (edit_rows), from one staged upload of the host lists;
//   - greedy rows (temperature < 1e-5) then run wholly on the device
//     (greedy_rows): the cleaning of NaN / +inf, the argmax with the lowest
//     index, the log-sum-exp and up to 20 alternatives when asked; only a
//     bk_sample_out per row comes back, in one download;
//   - rows with temperature sampling (top_k / top_p / min_p and the draw)
//     are downloaded after their edits, one row at a time, and sampled by
//     the CPU implementation (bk_cpu()->sample, the edits left out since
//     they are done). A device top-p is left for the CUDA step-graph issue.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cu_internal.h"

// One row's edits in the staged buffer (offsets in entries of each array).
typedef struct edit_hdr {
    int seen_off, n_seen, bias_off, n_bias;
    long long mask_off; // in words; -1: no mask
    float rep, presence, frequency;
} edit_hdr;

// A greedy row: where it is and what it wants.
typedef struct greedy_job {
    int row;
    int want_logprob;
    int n_top;
} greedy_job;

// Host staging and the downloaded row for the CPU path: grown on demand,
// owned by the backend (one engine thread runs the ops).
static struct {
    void *host; // the packed edits
    size_t cap;
    float *row; // one downloaded row
    size_t row_cap;
    bk_sample_out *outs; // the greedy rows' results
    size_t outs_cap;
} cs;

static void *grow(void *p, size_t *cap, size_t bytes) {
    if (bytes <= *cap) return p;
    void *q = realloc(p, bytes);
    if (!q) cu_fatal(__FILE__, __LINE__, "sample: out of host memory for the staging buffer");
    *cap = bytes;
    return q;
}

__device__ __forceinline__ float clean_logit(float l) {
    return isnan(l) ? -INFINITY : l == INFINITY ? 3.402823466e38f : l;
}

// logits (N, V) in place: mask, then penalties over the seen tokens
// (distinct: one thread each), then bias in order (thread 0: entries may
// repeat a token).
__global__ void edit_rows(float *logits, int V, const edit_hdr *h, const bk_sample_seen *seen,
                          const bk_logit_bias *bias, const uint32_t *mask) {
    const edit_hdr e = h[blockIdx.x];
    float *l = logits + (size_t)blockIdx.x * V;
    if (e.mask_off >= 0) {
        const uint32_t *m = mask + e.mask_off;
        for (int w = threadIdx.x; w * 32 < V; w += blockDim.x) {
            uint32_t bits = m[w];
            if (bits == 0xffffffffu) continue;
            for (int t = w * 32; t < w * 32 + 32 && t < V; t++)
                if (!(bits >> (t & 31) & 1)) l[t] = -INFINITY;
        }
        __syncthreads();
    }
    for (int i = threadIdx.x; i < e.n_seen; i += blockDim.x) {
        bk_sample_seen s = seen[e.seen_off + i];
        float v = clean_logit(l[s.token]);
        if (e.rep != 1.0f) v = v < 0 ? v * e.rep : v / e.rep;
        if (s.count > 0) v -= e.presence + e.frequency * (float)s.count;
        l[s.token] = v;
    }
    __syncthreads();
    if (threadIdx.x == 0)
        for (int i = 0; i < e.n_bias; i++) {
            bk_logit_bias b = bias[e.bias_off + i];
            l[b.token] = clean_logit(l[b.token]) + b.bias;
        }
}

#define GREEDY_THREADS 1024

// (v, i) ranks above (w, j): the larger logit, the lower id on ties.
__device__ __forceinline__ bool ranks_above(float v, int i, float w, int j) {
    return j < 0 || (i >= 0 && (v > w || (v == w && i < j)));
}

// The block's best (value, index) pair into (*v, *i) for every thread.
__device__ void block_best(float *v, int *i, float *sv, int *si) {
    sv[threadIdx.x] = *v;
    si[threadIdx.x] = *i;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s /= 2) {
        if (threadIdx.x < s && ranks_above(sv[threadIdx.x + s], si[threadIdx.x + s], sv[threadIdx.x], si[threadIdx.x])) {
            sv[threadIdx.x] = sv[threadIdx.x + s];
            si[threadIdx.x] = si[threadIdx.x + s];
        }
        __syncthreads();
    }
    *v = sv[0];
    *i = si[0];
    __syncthreads();
}

__device__ double block_sum(float x, double *sd) {
    sd[threadIdx.x] = x;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s /= 2) {
        if (threadIdx.x < s) sd[threadIdx.x] += sd[threadIdx.x + s];
        __syncthreads();
    }
    double r = sd[0];
    __syncthreads();
    return r;
}

// One block per greedy row: clean, argmax (lowest id), then when asked the
// log-sum-exp and the n_top best, each found by one more pass below the
// previous one in (logit, id) order.
__global__ void greedy_rows(float *logits, int V, const greedy_job *jobs, bk_sample_out *out) {
    __shared__ float sv[GREEDY_THREADS];
    __shared__ int si[GREEDY_THREADS];
    __shared__ double sd[GREEDY_THREADS];
    greedy_job g = jobs[blockIdx.x];
    float *l = logits + (size_t)g.row * V;
    float bv = -INFINITY;
    int bi = -1;
    for (int t = threadIdx.x; t < V; t += blockDim.x) {
        float v = l[t], c = clean_logit(v);
        if (!(c == v)) l[t] = c; // NaN or +inf
        if (c > -INFINITY && ranks_above(c, t, bv, bi)) bv = c, bi = t;
    }
    block_best(&bv, &bi, sv, si);
    bk_sample_out *o = &out[blockIdx.x];
    int k = g.n_top < V ? g.n_top : V;
    if (threadIdx.x == 0) {
        o->token = bi;
        o->logprob = __int_as_float(0x7fc00000); // NaN: not asked
        o->n_top = bi < 0 ? 0 : k;
    }
    if (bi < 0 || (!g.want_logprob && k == 0)) return;
    float s = 0;
    for (int t = threadIdx.x; t < V; t += blockDim.x) s += expf(l[t] - bv);
    double lse = bv + log(block_sum(s, sd));
    if (threadIdx.x == 0) o->logprob = (float)(l[bi] - lse);
    float pv = INFINITY;
    int pi = -1;
    for (int j = 0; j < k; j++) {
        float cv = -INFINITY;
        int ci = -1;
        for (int t = threadIdx.x; t < V; t += blockDim.x) {
            float v = l[t];
            bool below = pi < 0 || v < pv || (v == pv && t > pi);
            if (below && ranks_above(v, t, cv, ci)) cv = v, ci = t;
        }
        block_best(&cv, &ci, sv, si);
        if (threadIdx.x == 0) o->top[j] = bk_logprob{ci, (float)(cv - lse)};
        pv = cv;
        pi = ci;
    }
}

// Packs every row's edits into cs.host; returns the bytes used and the
// offsets of the three arrays after the headers.
static size_t pack_edits(int N, int V, const bk_sample_row *rows, size_t *seen_at, size_t *bias_at, size_t *mask_at) {
    size_t n_seen = 0, n_bias = 0, n_words = 0, words = (size_t)(V + 31) / 32;
    for (int i = 0; i < N; i++) {
        n_seen += rows[i].n_seen;
        n_bias += rows[i].n_bias;
        n_words += rows[i].allowed ? words : 0;
    }
    *seen_at = ((size_t)N * sizeof(edit_hdr) + 15) / 16 * 16;
    *bias_at = *seen_at + (n_seen * sizeof(bk_sample_seen) + 15) / 16 * 16;
    *mask_at = *bias_at + (n_bias * sizeof(bk_logit_bias) + 15) / 16 * 16;
    size_t bytes = *mask_at + n_words * sizeof(uint32_t);
    cs.host = grow(cs.host, &cs.cap, bytes);
    char *b = (char *)cs.host;
    int so = 0, bo = 0;
    long long mo = 0;
    for (int i = 0; i < N; i++) {
        const bk_sample_row *r = &rows[i];
        edit_hdr h = {so, r->n_seen, bo, r->n_bias, r->allowed ? mo : -1, r->repetition_penalty, r->presence_penalty,
                      r->frequency_penalty};
        memcpy(b + (size_t)i * sizeof h, &h, sizeof h);
        if (r->n_seen) memcpy(b + *seen_at + (size_t)so * sizeof(bk_sample_seen), r->seen, (size_t)r->n_seen * sizeof(bk_sample_seen));
        if (r->n_bias) memcpy(b + *bias_at + (size_t)bo * sizeof(bk_logit_bias), r->bias, (size_t)r->n_bias * sizeof(bk_logit_bias));
        if (r->allowed) memcpy(b + *mask_at + (size_t)mo * sizeof(uint32_t), r->allowed, words * sizeof(uint32_t));
        so += r->n_seen;
        bo += r->n_bias;
        mo += r->allowed ? (long long)words : 0;
    }
    return bytes;
}

static void run_edits(float *logits, int N, int V, const bk_sample_row *rows) {
    size_t seen_at, bias_at, mask_at, bytes = pack_edits(N, V, rows, &seen_at, &bias_at, &mask_at);
    const char *d = (const char *)cu_stage(cs.host, bytes);
    if (!d) cu_fatal(__FILE__, __LINE__, "sample: out of memory staging the edits");
    edit_rows<<<N, 256, 0, cu_stream()>>>(logits, V, (const edit_hdr *)d, (const bk_sample_seen *)(d + seen_at),
                                          (const bk_logit_bias *)(d + bias_at), (const uint32_t *)(d + mask_at));
    CU_CHECK(cudaGetLastError());
}

// The greedy rows on the device, their results into out.
static void run_greedy(float *logits, int N, int V, const bk_sample_row *rows, bk_sample_out *out) {
    greedy_job jobs[256];
    for (int i0 = 0; i0 < N; i0 += 256) { // greedy_job lists of up to 256 rows per launch
        int n = 0;
        for (int i = i0; i < N && i < i0 + 256; i++)
            if (rows[i].temperature < 1e-5f) jobs[n++] = greedy_job{i, rows[i].want_logprob, rows[i].top_logprobs};
        if (!n) continue;
        const void *dj = cu_stage(jobs, (size_t)n * sizeof *jobs);
        bk_sample_out *dout = (bk_sample_out *)cu_scratch(0, (size_t)n * sizeof(bk_sample_out));
        if (!dj || !dout) cu_fatal(__FILE__, __LINE__, "sample: out of device memory for the greedy rows");
        greedy_rows<<<n, GREEDY_THREADS, 0, cu_stream()>>>(logits, V, (const greedy_job *)dj, dout);
        CU_CHECK(cudaGetLastError());
        size_t obytes = (size_t)n * sizeof(bk_sample_out);
        cs.outs = (bk_sample_out *)grow(cs.outs, &cs.outs_cap, obytes);
        CU_CHECK(cudaMemcpyAsync(cs.outs, dout, obytes, cudaMemcpyDeviceToHost, cu_stream()));
        CU_CHECK(cudaStreamSynchronize(cu_stream()));
        for (int j = 0; j < n; j++) out[jobs[j].row] = cs.outs[j];
    }
}

// The sampled rows: downloaded after their edits, sampled on the host.
static void run_host(const float *logits, int N, int V, const bk_sample_row *rows, bk_sample_out *out) {
    for (int i = 0; i < N; i++) {
        if (rows[i].temperature < 1e-5f) continue;
        cs.row = (float *)grow(cs.row, &cs.row_cap, (size_t)V * sizeof(float));
        CU_CHECK(cudaMemcpyAsync(cs.row, logits + (size_t)i * V, (size_t)V * sizeof(float), cudaMemcpyDeviceToHost,
                                 cu_stream()));
        CU_CHECK(cudaStreamSynchronize(cu_stream()));
        bk_sample_row r = rows[i];
        r.n_seen = r.n_bias = 0; // applied on the device
        r.allowed = NULL;
        r.repetition_penalty = 1;
        bk_cpu()->sample(cs.row, 1, V, &r, &out[i]);
    }
}

void cu_sample(float *logits, int N, int V, const bk_sample_row *rows, bk_sample_out *out) {
    if (N <= 0) return;
    run_edits(logits, N, V, rows);
    run_greedy(logits, N, V, rows, out);
    run_host(logits, N, V, rows, out);
}
