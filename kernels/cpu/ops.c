// ops: the element-wise and row-wise ops of the forward pass: embedding
// gather, RMSNorm, RoPE, SwiGLU, residual add, row gather.
#include <math.h>

#include "cpu_ops.h"
#include "pool.h"

#define ROWS_PER_TASK 16
#define ELEMS_PER_TASK 16384

// tok (T), embed (V, C) -> x (T, C)
void cpu_embed(float *x, const int32_t *tok, int T, const bk_weight *embed) {
    for (int t = 0; t < T; t++) cpu_weight_rows(embed, tok[t], 1, x + (int64_t)t * embed->cols);
}

typedef struct norm_job {
    float *out;
    const float *x, *w;
    int64_t N;
    int C;
    float eps;
} norm_job;

// As transformers' LlamaRMSNorm in float32: x * rsqrt(mean(x^2) + eps),
// then weight * that.
static void norm_task(void *ctx, int64_t task, int thread) {
    const norm_job *j = ctx;
    int64_t r1 = (task + 1) * ROWS_PER_TASK < j->N ? (task + 1) * ROWS_PER_TASK : j->N;
    for (int64_t r = task * ROWS_PER_TASK; r < r1; r++) {
        const float *x = j->x + r * j->C;
        float *o = j->out + r * j->C;
        float ms = cpu_dot(x, x, j->C) / (float)j->C;
        float s = 1.0f / sqrtf(ms + j->eps);
        for (int i = 0; i < j->C; i++) o[i] = j->w[i] * (x[i] * s);
    }
}

// x (N, C), w (C) -> out (N, C)
void cpu_rmsnorm(float *out, const float *x, const float *w, int64_t N, int C, float eps) {
    norm_job j = {out, x, w, N, C, eps};
    cpu_pool_run((N + ROWS_PER_TASK - 1) / ROWS_PER_TASK, norm_task, &j);
}

// x (T, H, D) in place. out[i] = x[i] cos - x[i + D/2] sin,
// out[i + D/2] = x[i + D/2] cos + x[i] sin, angle pos * inv_freq[i], as
// transformers' apply_rotary_pos_emb with rotate_half. sin_sign -1 turns
// the angle around: the transpose of the rotation, which is RoPE's backward.
void cpu_rope_rotate(float *x, const int32_t *pos, int T, int H, int D, const float *inv_freq, float sin_sign) {
    int half = D / 2;
    float c[BK_MAX_HEAD_DIM / 2], s[BK_MAX_HEAD_DIM / 2];
    for (int t = 0; t < T; t++) {
        for (int i = 0; i < half; i++) {
            float f = (float)pos[t] * inv_freq[i];
            c[i] = cosf(f);
            s[i] = sin_sign * sinf(f);
        }
        for (int h = 0; h < H; h++) {
            float *v = x + ((int64_t)t * H + h) * D;
            for (int i = 0; i < half; i++) {
                float a = v[i], b = v[i + half];
                v[i] = a * c[i] - b * s[i];
                v[i + half] = b * c[i] + a * s[i];
            }
        }
    }
}

void cpu_rope(float *x, const int32_t *pos, int T, int H, int D, const float *inv_freq) {
    cpu_rope_rotate(x, pos, T, H, D, inv_freq, 1.0f);
}

typedef struct ew_job {
    float *out;
    const float *a, *b;
    int64_t N;
} ew_job;

static void swiglu_task(void *ctx, int64_t task, int thread) {
    const ew_job *j = ctx;
    int64_t i1 = (task + 1) * ELEMS_PER_TASK < j->N ? (task + 1) * ELEMS_PER_TASK : j->N;
    for (int64_t i = task * ELEMS_PER_TASK; i < i1; i++) {
        float g = j->a[i];
        j->out[i] = g / (1.0f + expf(-g)) * j->b[i];
    }
}

// gate, up (N) -> out (N) = silu(gate) * up
void cpu_swiglu(float *out, const float *gate, const float *up, int64_t N) {
    ew_job j = {out, gate, up, N};
    cpu_pool_run((N + ELEMS_PER_TASK - 1) / ELEMS_PER_TASK, swiglu_task, &j);
}

// x (N) += y (N); memory-bound, one thread is as fast as several.
void cpu_residual(float *x, const float *y, int64_t N) {
    int64_t i = 0;
    for (; i + 4 <= N; i += 4) cpu_v4_store(x + i, cpu_v4_load(x + i) + cpu_v4_load(y + i));
    for (; i < N; i++) x[i] += y[i];
}

// x (T, C), rows (N) -> out (N, C)
void cpu_gather_rows(float *out, const float *x, const int32_t *rows, int N, int C) {
    for (int i = 0; i < N; i++)
        memcpy(out + (int64_t)i * C, x + (int64_t)rows[i] * C, (size_t)C * sizeof(float));
}
