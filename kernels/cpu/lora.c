// lora: the LoRA pair over adapter segments (SGMV). One call covers every
// segment of the batch; each token is one task: shrink v = A x[t] (rank
// dots of length C), then expand y[t] += scale * B v (OC dots of length
// rank), in PEFT's order (lora_B(lora_A(x)) * scaling added to the base).
// A segment's A and B may be bf16 (serving slots): read as f32, exactly.
#include "cpu_ops.h"
#include "pool.h"

typedef struct lora_job {
    float *y;
    const float *x;
    float *v;
    int C, OC;
    int max_rank;
    const bk_lora_seg *seg;
    int nseg;
    int64_t n_tokens; // sum of segment counts
} lora_job;

// One token of a segment whose A and B are bf16: the f32 path's float
// operations on the converted values (cpu_dot_bf16 is cpu_dot on them), so
// the result is the f32 path's over an f32 copy of the rounded weights.
static void lora_token_bf16(const bk_lora_seg *s, const float *x, float *v, float *y, int C, int OC) {
    const uint16_t *A = s->A, *B = s->B;
    int k = 0, o = 0;
    for (; k + 4 <= s->rank; k += 4) cpu_dot4_bf16(x, A + (int64_t)k * C, C, v + k);
    for (; k < s->rank; k++) v[k] = cpu_dot_bf16(x, A + (int64_t)k * C, C);
    for (; o + 4 <= OC; o += 4) {
        float d[4];
        cpu_dot4_bf16(v, B + (int64_t)o * s->rank, s->rank, d);
        for (int i = 0; i < 4; i++) y[o + i] += d[i] * s->scale;
    }
    for (; o < OC; o++) y[o] += cpu_dot_bf16(v, B + (int64_t)o * s->rank, s->rank) * s->scale;
}

static void lora_task(void *ctx, int64_t task, int thread) {
    const lora_job *j = ctx;
    // task-th token over the concatenated segments
    const bk_lora_seg *s = j->seg;
    while (task >= s->count) task -= s->count, s++;
    int64_t t = s->start + task;
    const float *x = j->x + t * j->C;
    float *v = j->v + t * j->max_rank;
    float *y = j->y + t * j->OC;
    if (s->dtype == BK_DT_BF16) {
        lora_token_bf16(s, x, v, y, j->C, j->OC);
        return;
    }
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
    lora_job j = {y, x, v, C, OC, 0, seg, nseg, 0};
    for (int i = 0; i < nseg; i++) {
        if (seg[i].rank > j.max_rank) j.max_rank = seg[i].rank;
        j.n_tokens += seg[i].count;
    }
    cpu_pool_run(j.n_tokens, lora_task, &j);
}
