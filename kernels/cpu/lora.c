// lora: the LoRA pair over adapter segments (SGMV). One call covers every
// segment of the batch; each token is one task: shrink v = A x[t] (rank
// dots of length C), then expand y[t] += scale * B v (OC dots of length
// rank), in PEFT's order (lora_B(lora_A(x)) * scaling added to the base).
// A segment's A and B may be bf16 (serving slots): widened to f32 exactly,
// a row once per chunk of LORA_CHUNK tokens (a task), then the f32 math.
#include "cpu_ops.h"
#include "pool.h"

#define LORA_CHUNK 8 // tokens of a bf16 segment per task: each widened row serves them all

typedef struct lora_job {
    float *y;
    const float *x;
    float *v;
    int C, OC;
    int max_rank;
    const bk_lora_seg *seg;
    int nseg;
} lora_job;

// Tasks segment s takes: one per token (f32 A / B), one per LORA_CHUNK
// tokens (bf16: the rows are widened once per chunk, not per token).
static int64_t seg_tasks(const bk_lora_seg *s) {
    return s->dtype == BK_DT_BF16 ? (s->count + LORA_CHUNK - 1) / LORA_CHUNK : s->count;
}

// Tokens [t0, t0 + n) of a segment whose A and B are bf16. Four rows of A,
// then of B, are widened to f32 in the thread's scratch at a time (exact)
// and dotted with each token by the f32 path's cpu_dot4 / cpu_dot: every
// token gets the bits of the f32 path over an f32 copy of the rounded
// weights, whatever the chunk (batch invariance holds).
static void lora_chunk_bf16(const lora_job *j, const bk_lora_seg *s, int64_t t0, int n, int thread) {
    int C = j->C, OC = j->OC, R = s->rank;
    const uint16_t *A = s->A, *B = s->B;
    float *w = cpu_pool_scratch(thread, 4 * (size_t)(C > R ? C : R) * sizeof(float));
    int k = 0, o = 0;
    for (; k + 4 <= R; k += 4) {
        cpu_bf16_row(w, A + (int64_t)k * C, 4 * (int64_t)C);
        for (int64_t t = t0; t < t0 + n; t++) cpu_dot4(j->x + t * C, w, C, j->v + t * j->max_rank + k);
    }
    for (; k < R; k++) {
        cpu_bf16_row(w, A + (int64_t)k * C, C);
        for (int64_t t = t0; t < t0 + n; t++) j->v[t * j->max_rank + k] = cpu_dot(w, j->x + t * C, C);
    }
    for (; o + 4 <= OC; o += 4) {
        cpu_bf16_row(w, B + (int64_t)o * R, 4 * (int64_t)R);
        for (int64_t t = t0; t < t0 + n; t++) {
            float d[4], *y = j->y + t * OC + o;
            cpu_dot4(j->v + t * j->max_rank, w, R, d);
            for (int i = 0; i < 4; i++) y[i] += d[i] * s->scale;
        }
    }
    for (; o < OC; o++) {
        cpu_bf16_row(w, B + (int64_t)o * R, R);
        for (int64_t t = t0; t < t0 + n; t++) j->y[t * OC + o] += cpu_dot(w, j->v + t * j->max_rank, R) * s->scale;
    }
}

static void lora_task(void *ctx, int64_t task, int thread) {
    const lora_job *j = ctx;
    // task-th task over the concatenated segments
    const bk_lora_seg *s = j->seg;
    while (task >= seg_tasks(s)) task -= seg_tasks(s), s++;
    if (s->dtype == BK_DT_BF16) {
        int64_t first = task * LORA_CHUNK;
        int n = s->count - first < LORA_CHUNK ? (int)(s->count - first) : LORA_CHUNK;
        lora_chunk_bf16(j, s, s->start + first, n, thread);
        return;
    }
    int64_t t = s->start + task;
    const float *x = j->x + t * j->C;
    float *v = j->v + t * j->max_rank;
    float *y = j->y + t * j->OC;
    const float *A = s->A, *B = s->B;
    // cpu_dot4 gives cpu_dot's bits for four rows at once, x loaded once.
    int k = 0, o = 0;
    for (; k + 4 <= s->rank; k += 4) cpu_dot4(x, A + (int64_t)k * j->C, j->C, v + k);
    for (; k < s->rank; k++) v[k] = cpu_dot(A + (int64_t)k * j->C, x, j->C);
    for (; o + 4 <= j->OC; o += 4) {
        float d[4];
        cpu_dot4(v, B + (int64_t)o * s->rank, s->rank, d);
        for (int i = 0; i < 4; i++) y[o + i] += d[i] * s->scale;
    }
    for (; o < j->OC; o++) y[o] += cpu_dot(B + (int64_t)o * s->rank, v, s->rank) * s->scale;
}

// x (T, C) -> y (T, OC) += scale_s * B_s A_s x[t] per segment; v (T, max rank)
void cpu_lora(float *y, const float *x, float *v, int C, int OC, const bk_lora_seg *seg, int nseg) {
    lora_job j = {y, x, v, C, OC, 0, seg, nseg};
    int64_t n_tasks = 0;
    for (int i = 0; i < nseg; i++) {
        if (seg[i].rank > j.max_rank) j.max_rank = seg[i].rank;
        n_tasks += seg_tasks(&seg[i]);
    }
    cpu_pool_run(n_tasks, lora_task, &j);
}
