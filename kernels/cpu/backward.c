// backward: the CPU backend's training ops. The forward variants keep what
// the backward pass needs (attention's log-sum-exp, LoRA's shrunk input);
// the backward ops give gradients wrt activations and LoRA weights only
// (base weights are frozen); then the loss and the optimizer step.
//
// Every output element is computed by one task with a fixed sequence of
// float operations (sums run in index order, never split across threads),
// so results are the same for any thread count: a training run is
// reproducible bit for bit from its seed.
#include <math.h>

#include "cpu_backward.h"
#include "cpu_ops.h"
#include "pool.h"
#include "numeric.h"

#define ROWS_PER_TASK 16
#define ELEMS_PER_TASK 16384
#define MMB_COLS 256 // dx columns per matmul_backward task
#define MMB_ROWS 32  // weight rows converted at a time
#define LORA_COLS 64 // dA columns per task
#define LORA_ROWS 16 // dB rows per task

static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

// y (n) += a * x (n)
static inline void axpy(float *y, float a, const float *x, int64_t n) {
    cpu_v4 av = {a, a, a, a};
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) cpu_v4_store(y + i, cpu_v4_load(y + i) + av * cpu_v4_load(x + i));
    for (; i < n; i++) y[i] += a * x[i];
}

// x (n) with dropout applied, element i of the row being flat index base + i.
static void drop_row(float *out, const float *x, int64_t n, uint64_t base, const bk_dropout *d) {
    float inv = 1.0f / (1.0f - d->p);
    for (int64_t i = 0; i < n; i++) out[i] = bk_dropout_keep(d, base + (uint64_t)i) ? x[i] * inv : 0.0f;
}

static int dropping(const bk_dropout *d) { return d && d->p > 0.0f; }

// ---- attention ------------------------------------------------------------------

typedef struct attn_job {
    float *out, *lse;
    float *dq, *dk, *dv, *delta;
    const float *dout, *q, *k, *v, *o;
    const float *lse_in;
    int T;
    const bk_train_attn *a;
} attn_job;

static int first_key(const bk_train_attn *a, int64_t t) {
    int first = a->start[t];
    if (a->window > 0 && t - a->window + 1 > first) first = (int)(t - a->window + 1);
    return first;
}

// One (token, head): a per-key online softmax (cpu_softmax_step) over the
// packed batch, plus the row's log-sum-exp.
static void attn_fwd_task(void *ctx, int64_t task, int thread) {
    const attn_job *j = ctx;
    const bk_train_attn *a = j->a;
    int H = a->n_heads, D = a->head_dim, KV = a->n_kv_heads * D;
    int64_t t = task / H;
    int h = (int)(task % H), kvh = h / (H / a->n_kv_heads);
    const float *q = j->q + (t * H + h) * D;
    float acc[BK_MAX_HEAD_DIM];
    for (int d = 0; d < D; d++) acc[d] = 0.0f;
    float m = -INFINITY, l = 0.0f;
    for (int64_t p = first_key(a, t); p <= t; p++) {
        const float *k = j->k + p * KV + kvh * D, *v = j->v + p * KV + kvh * D;
        cpu_softmax_step(cpu_dot(q, k, D) * a->scale, v, D, &m, &l, acc);
    }
    float *o = j->out + (t * H + h) * D;
    float inv = 1.0f / l;
    for (int d = 0; d < D; d++) o[d] = acc[d] * inv;
    j->lse[t * H + h] = m + logf(l);
}

// q (T, H, D), k, v (T, KVH, D) -> out (T, H, D), lse (T, H)
void cpu_attention_train(float *out, float *lse, const float *q, const float *k, const float *v, int T,
                         const bk_train_attn *a) {
    attn_job j = {.out = out, .lse = lse, .q = q, .k = k, .v = v, .T = T, .a = a};
    cpu_pool_run((int64_t)T * a->n_heads, attn_fwd_task, &j);
}

// With P = softmax(S), S = q k^T * scale, O = P v (per head), and dO:
//   delta_i = dO_i . O_i,  dS_ij = P_ij (dO_i . v_j - delta_i),
//   dq_i = scale * sum_j dS_ij k_j,  dk_j = scale * sum_i dS_ij q_i,
//   dv_j = sum_i P_ij dO_i,
// P recomputed from the saved log-sum-exp. Pass 1 (a task per query row)
// gives delta and dq; pass 2 (a task per key row and KV head) gives dk and
// dv, summing over the queries of every head of its group, so no two tasks
// write the same element.
static void attn_dq_task(void *ctx, int64_t task, int thread) {
    const attn_job *j = ctx;
    const bk_train_attn *a = j->a;
    int H = a->n_heads, D = a->head_dim, KV = a->n_kv_heads * D;
    int64_t t = task / H;
    int h = (int)(task % H), kvh = h / (H / a->n_kv_heads);
    int64_t row = t * H + h;
    const float *q = j->q + row * D, *dout = j->dout + row * D;
    float delta = cpu_dot(dout, j->o + row * D, D), lse = j->lse_in[row];
    j->delta[row] = delta;
    float acc[BK_MAX_HEAD_DIM];
    for (int d = 0; d < D; d++) acc[d] = 0.0f;
    for (int64_t p = first_key(a, t); p <= t; p++) {
        const float *k = j->k + p * KV + kvh * D, *v = j->v + p * KV + kvh * D;
        float pr = expf(cpu_dot(q, k, D) * a->scale - lse);
        float ds = pr * (cpu_dot(dout, v, D) - delta);
        axpy(acc, ds, k, D);
    }
    float *dq = j->dq + row * D;
    for (int d = 0; d < D; d++) dq[d] = acc[d] * a->scale;
}

static void attn_dkv_task(void *ctx, int64_t task, int thread) {
    const attn_job *j = ctx;
    const bk_train_attn *a = j->a;
    int H = a->n_heads, KVH = a->n_kv_heads, D = a->head_dim, G = H / KVH;
    int64_t p = task / KVH;
    int kvh = (int)(task % KVH);
    const float *k = j->k + (p * KVH + kvh) * D, *v = j->v + (p * KVH + kvh) * D;
    float dk[BK_MAX_HEAD_DIM], dv[BK_MAX_HEAD_DIM];
    for (int d = 0; d < D; d++) dk[d] = dv[d] = 0.0f;
    for (int64_t t = p; t < j->T && a->start[t] == a->start[p]; t++) {
        if (a->window > 0 && t - a->window + 1 > p) break;
        for (int h = kvh * G; h < (kvh + 1) * G; h++) {
            int64_t row = t * H + h;
            const float *q = j->q + row * D, *dout = j->dout + row * D;
            float pr = expf(cpu_dot(q, k, D) * a->scale - j->lse_in[row]);
            float ds = pr * (cpu_dot(dout, v, D) - j->delta[row]);
            axpy(dv, pr, dout, D);
            axpy(dk, ds, q, D);
        }
    }
    float *odk = j->dk + (p * KVH + kvh) * D, *odv = j->dv + (p * KVH + kvh) * D;
    for (int d = 0; d < D; d++) odk[d] = dk[d] * a->scale, odv[d] = dv[d];
}

void cpu_attention_backward(float *dq, float *dk, float *dv, float *delta, const float *dout, const float *q,
                            const float *k, const float *v, const float *out, const float *lse, int T,
                            const bk_train_attn *a) {
    attn_job j = {.dq = dq, .dk = dk, .dv = dv, .delta = delta, .dout = dout, .q = q, .k = k, .v = v,
                  .o = out, .lse_in = lse, .T = T, .a = a};
    cpu_pool_run((int64_t)T * a->n_heads, attn_dq_task, &j);
    cpu_pool_run((int64_t)T * a->n_kv_heads, attn_dkv_task, &j);
}

// ---- LoRA ---------------------------------------------------------------------------

typedef struct lora_job {
    float *y, *v, *dx, *dA, *dB, *u;
    const float *x, *dy, *vin, *A, *B;
    int T, C, OC, rank;
    float scale;
    const bk_dropout *drop;
} lora_job;

// One token: v = A drop(x), y += scale * B v (cpu_lora's float operations).
static void lora_fwd_task(void *ctx, int64_t t, int thread) {
    const lora_job *j = ctx;
    const float *x = j->x + t * j->C;
    if (dropping(j->drop)) {
        float *xd = cpu_pool_scratch(thread, (size_t)j->C * sizeof(float));
        drop_row(xd, x, j->C, (uint64_t)t * (uint64_t)j->C, j->drop);
        x = xd;
    }
    float *v = j->v + t * j->rank, *y = j->y + t * j->OC;
    for (int k = 0; k < j->rank; k++) v[k] = cpu_dot(j->A + (int64_t)k * j->C, x, j->C);
    for (int o = 0; o < j->OC; o++) y[o] += cpu_dot(j->B + (int64_t)o * j->rank, v, j->rank) * j->scale;
}

void cpu_lora_train(float *y, float *v, const float *x, const float *A, const float *B, int T, int C, int OC,
                    int rank, float scale, const bk_dropout *drop) {
    lora_job j = {.y = y, .v = v, .x = x, .A = A, .B = B, .T = T, .C = C, .OC = OC, .rank = rank,
                  .scale = scale, .drop = drop};
    cpu_pool_run(T, lora_fwd_task, &j);
}

// u[t] (rank) = scale * dy[t] B
static void lora_u_task(void *ctx, int64_t t, int thread) {
    const lora_job *j = ctx;
    float *u = j->u + t * j->rank;
    const float *dy = j->dy + t * j->OC;
    for (int k = 0; k < j->rank; k++) u[k] = 0.0f;
    for (int o = 0; o < j->OC; o++) axpy(u, dy[o], j->B + (int64_t)o * j->rank, j->rank);
    for (int k = 0; k < j->rank; k++) u[k] *= j->scale;
}

// dB rows [o0, o1) += scale * sum_t dy[t, o] v[t]
static void lora_db_task(void *ctx, int64_t task, int thread) {
    const lora_job *j = ctx;
    int64_t o0 = task * LORA_ROWS, o1 = min64(o0 + LORA_ROWS, j->OC);
    for (int64_t t = 0; t < j->T; t++) {
        const float *dy = j->dy + t * j->OC, *v = j->vin + t * j->rank;
        for (int64_t o = o0; o < o1; o++) axpy(j->dB + o * j->rank, dy[o] * j->scale, v, j->rank);
    }
}

// dA columns [c0, c1) += sum_t u[t]^T drop(x[t])
static void lora_da_task(void *ctx, int64_t task, int thread) {
    const lora_job *j = ctx;
    int64_t c0 = task * LORA_COLS, n = min64(c0 + LORA_COLS, j->C) - c0;
    float xd[LORA_COLS];
    for (int64_t t = 0; t < j->T; t++) {
        const float *x = j->x + t * j->C + c0, *u = j->u + t * j->rank;
        if (dropping(j->drop)) {
            drop_row(xd, x, n, (uint64_t)t * (uint64_t)j->C + (uint64_t)c0, j->drop);
            x = xd;
        }
        for (int k = 0; k < j->rank; k++) axpy(j->dA + (int64_t)k * j->C + c0, u[k], x, n);
    }
}

// dx[t] += drop'(u[t] A)
static void lora_dx_task(void *ctx, int64_t t, int thread) {
    const lora_job *j = ctx;
    float *g = cpu_pool_scratch(thread, (size_t)j->C * sizeof(float));
    const float *u = j->u + t * j->rank;
    for (int c = 0; c < j->C; c++) g[c] = 0.0f;
    for (int k = 0; k < j->rank; k++) axpy(g, u[k], j->A + (int64_t)k * j->C, j->C);
    float *dx = j->dx + t * j->C;
    if (dropping(j->drop)) {
        float inv = 1.0f / (1.0f - j->drop->p);
        for (int c = 0; c < j->C; c++)
            if (bk_dropout_keep(j->drop, (uint64_t)t * (uint64_t)j->C + (uint64_t)c)) dx[c] += g[c] * inv;
    } else {
        for (int c = 0; c < j->C; c++) dx[c] += g[c];
    }
}

void cpu_lora_backward(float *dx, float *dA, float *dB, float *u, const float *dy, const float *x, const float *v,
                       const float *A, const float *B, int T, int C, int OC, int rank, float scale,
                       const bk_dropout *drop) {
    lora_job j = {.dx = dx, .dA = dA, .dB = dB, .u = u, .x = x, .dy = dy, .vin = v, .A = A, .B = B, .T = T,
                  .C = C, .OC = OC, .rank = rank, .scale = scale, .drop = drop};
    cpu_pool_run(T, lora_u_task, &j);
    cpu_pool_run((OC + LORA_ROWS - 1) / LORA_ROWS, lora_db_task, &j);
    cpu_pool_run((C + LORA_COLS - 1) / LORA_COLS, lora_da_task, &j);
    cpu_pool_run(T, lora_dx_task, &j);
}

// ---- matmul -----------------------------------------------------------------------

// Row r, columns [c0, c0 + n) of W as f32, each value as cpu_weight_rows
// forms it (code value * absmax for NF4); F32 weights are returned in
// place, others converted into out. pair[b] holds the two NF4 code values
// of byte b, for whole blocks.
static const float *w_segment(const bk_weight *W, int64_t r, int64_t c0, int64_t n, float *out,
                              const float (*pair)[2]) {
    int64_t i = r * W->cols + c0;
    if (W->type == BK_W_F32) return (const float *)W->data + i;
    if (W->type == BK_W_Q8) {
        cpu_q8w_values(W, i, i + n, out);
        return out;
    }
    if (W->type == BK_W_BF16) { // a 16-bit shift, four at a time
        typedef uint16_t u16x4 __attribute__((vector_size(8)));
        typedef uint32_t u32x4 __attribute__((vector_size(16)));
        const uint16_t *h = (const uint16_t *)W->data + i;
        int64_t k = 0;
        for (; k + 4 <= n; k += 4) {
            u16x4 v;
            memcpy(&v, h + k, sizeof v);
            u32x4 u = __builtin_convertvector(v, u32x4) << 16;
            memcpy(out + k, &u, sizeof u);
        }
        for (; k < n; k++) out[k] = num_bf16_to_f32(h[k]);
        return out;
    }
    const nf4_tensor *t = &W->nf4;
    int64_t end = i + n;
    float *o = out;
    while (i < end) {
        int64_t b = i / NF4_BLOCK, stop = min64((b + 1) * NF4_BLOCK, end);
        float a = nf4_absmax(t, b);
        if (i == b * NF4_BLOCK && stop == i + NF4_BLOCK) {
            const uint8_t *p = t->packed + i / 2;
            cpu_v4 av = {a, a, a, a};
            for (int k = 0; k < NF4_BLOCK; k += 4) {
                cpu_v4 v = {pair[p[k / 2]][0], pair[p[k / 2]][1], pair[p[k / 2 + 1]][0], pair[p[k / 2 + 1]][1]};
                cpu_v4_store(o + k, v * av);
            }
            o += NF4_BLOCK;
            i = stop;
            continue;
        }
        for (; i < stop; i++) *o++ = t->code[nf4_code_at(t, i)] * a;
    }
    return out;
}

typedef struct mmb_job {
    float *dx;
    const float *dy;
    const bk_weight *W;
    int T, accumulate;
    int64_t tok_chunk, n_col;
    int simd; // cpu_simd() at the call
} mmb_job;

// d (n) += sum over the rows o of the tile of g[o] * w[o] (n), for one
// token (d1 NULL) or two (d1, g1): each element sums the rows in order,
// 16 columns at a time in registers, the weights loaded once for both.
static void mmb_rows(float *d0, float *d1, const float *g0, const float *g1, const float *const *w, int rows,
                     int64_t n) {
    int64_t c = 0;
    for (; c + 16 <= n; c += 16) {
        cpu_v4 a0 = cpu_v4_load(d0 + c), a1 = cpu_v4_load(d0 + c + 4), a2 = cpu_v4_load(d0 + c + 8),
               a3 = cpu_v4_load(d0 + c + 12);
        cpu_v4 b0 = {0}, b1 = {0}, b2 = {0}, b3 = {0};
        if (d1) b0 = cpu_v4_load(d1 + c), b1 = cpu_v4_load(d1 + c + 4), b2 = cpu_v4_load(d1 + c + 8),
                b3 = cpu_v4_load(d1 + c + 12);
        for (int o = 0; o < rows; o++) {
            const float *wr = w[o] + c;
            cpu_v4 w0 = cpu_v4_load(wr), w1 = cpu_v4_load(wr + 4), w2 = cpu_v4_load(wr + 8), w3 = cpu_v4_load(wr + 12);
            float x = g0[o];
            cpu_v4 gv = {x, x, x, x};
            a0 += gv * w0, a1 += gv * w1, a2 += gv * w2, a3 += gv * w3;
            if (d1) {
                float y = g1[o];
                cpu_v4 hv = {y, y, y, y};
                b0 += hv * w0, b1 += hv * w1, b2 += hv * w2, b3 += hv * w3;
            }
        }
        cpu_v4_store(d0 + c, a0), cpu_v4_store(d0 + c + 4, a1), cpu_v4_store(d0 + c + 8, a2),
            cpu_v4_store(d0 + c + 12, a3);
        if (d1) cpu_v4_store(d1 + c, b0), cpu_v4_store(d1 + c + 4, b1), cpu_v4_store(d1 + c + 8, b2),
                cpu_v4_store(d1 + c + 12, b3);
    }
    for (; c < n; c++) {
        float a = d0[c], b = d1 ? d1[c] : 0.0f;
        for (int o = 0; o < rows; o++) {
            a += g0[o] * w[o][c];
            if (d1) b += g1[o] * w[o][c];
        }
        d0[c] = a;
        if (d1) d1[c] = b;
    }
}

// dx rows of a token chunk, columns [c0, c1): sum over every weight row o
// in order of dy[t, o] * W[o, c0:c1], MMB_ROWS weight rows converted at a
// time and applied to each token of the chunk.
static void mmb_task(void *ctx, int64_t task, int thread) {
    const mmb_job *j = ctx;
    const bk_weight *W = j->W;
    int64_t C = W->cols, OC = W->rows;
    int64_t c0 = task % j->n_col * MMB_COLS, n = min64(c0 + MMB_COLS, C) - c0;
    int64_t t0 = task / j->n_col * j->tok_chunk, t1 = min64(t0 + j->tok_chunk, j->T);
    if (!j->accumulate)
        for (int64_t t = t0; t < t1; t++) memset(j->dx + t * C + c0, 0, (size_t)n * sizeof(float));
    float *s = W->type == BK_W_F32 ? NULL : cpu_pool_scratch(thread, (size_t)(MMB_ROWS * n) * sizeof(float));
    float pair[256][2];
    if (W->type == BK_W_NF4)
        for (int b = 0; b < 256; b++) pair[b][0] = W->nf4.code[b >> 4], pair[b][1] = W->nf4.code[b & 15];
    const float *w[MMB_ROWS];
    for (int64_t o0 = 0; o0 < OC; o0 += MMB_ROWS) {
        int rows = (int)(min64(o0 + MMB_ROWS, OC) - o0);
        for (int o = 0; o < rows; o++)
            w[o] = w_segment(W, o0 + o, c0, n, s ? s + o * n : NULL, (const float(*)[2])pair);
        for (int64_t t = t0; t < t1; t += 2) {
            float *d0 = j->dx + t * C + c0, *d1 = t + 1 < t1 ? d0 + C : NULL;
            const float *g0 = j->dy + t * OC + o0;
#if CPU_HAVE_AVX2
            if (j->simd >= CPU_SIMD_AVX2) {
                cpu_avx2_mmb_rows(d0, d1, g0, d1 ? g0 + OC : NULL, w, rows, n);
                continue;
            }
#endif
            mmb_rows(d0, d1, g0, d1 ? g0 + OC : NULL, w, rows, n);
        }
    }
}

// dy (T, OC), W (OC, C) -> dx (T, C) = dy W. Token chunks shrink (to 8)
// when there are few tokens, so small batches still give every thread two
// tasks; the chunking does not change any result. The inner kernel is the
// AVX2 + FMA one when matmul's kernel set is (cpu_simd()), so forward and
// backward round alike on a given machine.
void cpu_matmul_backward(float *dx, const float *dy, const bk_weight *W, int T, int accumulate) {
    mmb_job j = {dx, dy, W, T, accumulate, 64, (W->cols + MMB_COLS - 1) / MMB_COLS, cpu_simd()};
    int64_t want = 2 * (int64_t)cpu_pool_threads();
    j.tok_chunk = ((int64_t)T * j.n_col + want - 1) / want;
    if (j.tok_chunk < 8) j.tok_chunk = 8;
    if (j.tok_chunk > 64) j.tok_chunk = 64;
    cpu_pool_run((T + j.tok_chunk - 1) / j.tok_chunk * j.n_col, mmb_task, &j);
}

// ---- element-wise and row-wise ops ------------------------------------------------------

typedef struct norm_job {
    float *dx;
    const float *dy, *x, *w;
    int64_t N;
    int C;
    float eps;
    int accumulate;
} norm_job;

// y = w * x * s, s = 1 / sqrt(mean(x^2) + eps):
// dx = s * w * dy - x * s^3 / C * sum(w * dy * x).
static void norm_bwd_task(void *ctx, int64_t task, int thread) {
    const norm_job *j = ctx;
    int64_t r1 = min64((task + 1) * ROWS_PER_TASK, j->N);
    for (int64_t r = task * ROWS_PER_TASK; r < r1; r++) {
        const float *x = j->x + r * j->C, *dy = j->dy + r * j->C;
        float *dx = j->dx + r * j->C;
        float ms = cpu_dot(x, x, j->C) / (float)j->C;
        float s = 1.0f / sqrtf(ms + j->eps);
        float dot = 0.0f;
        for (int i = 0; i < j->C; i++) dot += j->w[i] * dy[i] * x[i];
        float k = s * s * s * dot / (float)j->C;
        if (j->accumulate)
            for (int i = 0; i < j->C; i++) dx[i] += s * j->w[i] * dy[i] - x[i] * k;
        else
            for (int i = 0; i < j->C; i++) dx[i] = s * j->w[i] * dy[i] - x[i] * k;
    }
}

void cpu_rmsnorm_backward(float *dx, const float *dy, const float *x, const float *w, int64_t N, int C, float eps,
                          int accumulate) {
    norm_job j = {dx, dy, x, w, N, C, eps, accumulate};
    cpu_pool_run((N + ROWS_PER_TASK - 1) / ROWS_PER_TASK, norm_bwd_task, &j);
}

// The transpose of cpu_rope's rotation: a = a' cos + b' sin,
// b = b' cos - a' sin, i.e. the rotation by the opposite angle.
void cpu_rope_backward(float *dx, const int32_t *pos, int T, int H, int D, const float *inv_freq) {
    cpu_rope_rotate(dx, pos, T, H, D, inv_freq, -1.0f);
}

typedef struct ew_job {
    float *o1, *o2;
    const float *a, *b, *c;
    int64_t N;
} ew_job;

// out = silu(g) * u: du = dout * silu(g),
// dg = dout * u * sigmoid(g) * (1 + g * (1 - sigmoid(g))).
static void swiglu_bwd_task(void *ctx, int64_t task, int thread) {
    const ew_job *j = ctx;
    int64_t i1 = min64((task + 1) * ELEMS_PER_TASK, j->N);
    for (int64_t i = task * ELEMS_PER_TASK; i < i1; i++) {
        float d = j->a[i], g = j->b[i], u = j->c[i];
        float sg = 1.0f / (1.0f + expf(-g));
        j->o2[i] = d * (g * sg);
        j->o1[i] = d * u * sg * (1.0f + g * (1.0f - sg));
    }
}

void cpu_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                         int64_t N) {
    ew_job j = {dgate, dup, dout, gate, up, N};
    cpu_pool_run((N + ELEMS_PER_TASK - 1) / ELEMS_PER_TASK, swiglu_bwd_task, &j);
}

// ---- loss and optimizer ------------------------------------------------------------------

typedef struct ce_job {
    float *logits, *loss;
    const int32_t *target;
    int V;
    float scale;
} ce_job;

// One row: the max-shifted exponentials (the sum in double), the loss
// logsumexp - logit[target], then the row overwritten with its gradient
// softmax * scale - onehot * scale.
static void ce_task(void *ctx, int64_t r, int thread) {
    const ce_job *j = ctx;
    float *l = j->logits + r * j->V;
    float mx = l[0];
    for (int v = 1; v < j->V; v++)
        if (l[v] > mx) mx = l[v];
    int tg = j->target[r];
    float lt = l[tg];
    double sum = 0.0;
    for (int v = 0; v < j->V; v++) {
        l[v] = expf(l[v] - mx);
        sum += l[v];
    }
    j->loss[r] = mx + (float)log(sum) - lt;
    float k = (float)(j->scale / sum);
    for (int v = 0; v < j->V; v++) l[v] *= k;
    l[tg] -= j->scale;
}

void cpu_cross_entropy(float *logits, float *loss, const int32_t *target, int N, int V, float grad_scale) {
    ce_job j = {logits, loss, target, V, grad_scale};
    cpu_pool_run(N, ce_task, &j);
}

typedef struct adam_job {
    float *p, *m, *v;
    const float *g;
    int64_t n;
    const bk_adamw *h;
} adam_job;

static void adam_task(void *ctx, int64_t task, int thread) {
    const adam_job *j = ctx;
    const bk_adamw *h = j->h;
    int64_t i1 = min64((task + 1) * ELEMS_PER_TASK, j->n);
    for (int64_t i = task * ELEMS_PER_TASK; i < i1; i++) {
        float g = j->g[i] * h->grad_scale;
        float p = j->p[i] * h->decay;
        float m = j->m[i] + (1.0f - h->beta1) * (g - j->m[i]);
        float v = j->v[i] * h->beta2 + (1.0f - h->beta2) * (g * g);
        float denom = sqrtf(v) / h->bc2_sqrt + h->eps;
        j->p[i] = p + -h->step_size * (m / denom);
        j->m[i] = m;
        j->v[i] = v;
    }
}

void cpu_adamw(float *p, const float *g, float *m, float *v, int64_t n, const bk_adamw *h) {
    adam_job j = {p, m, v, g, n, h};
    cpu_pool_run((n + ELEMS_PER_TASK - 1) / ELEMS_PER_TASK, adam_task, &j);
}

#define SUMSQ_PARTS 256

typedef struct sumsq_job {
    const float *x;
    int64_t n, per;
    double part[SUMSQ_PARTS];
} sumsq_job;

static void sumsq_task(void *ctx, int64_t task, int thread) {
    sumsq_job *j = ctx;
    int64_t i1 = min64((task + 1) * j->per, j->n);
    double s = 0.0;
    for (int64_t i = task * j->per; i < i1; i++) s += (double)j->x[i] * j->x[i];
    j->part[task] = s;
}

// The parts depend on n only, and are added in order.
double cpu_sumsq(const float *x, int64_t n) {
    if (n <= 0) return 0.0;
    sumsq_job j = {.x = x, .n = n};
    j.per = (n + SUMSQ_PARTS - 1) / SUMSQ_PARTS;
    if (j.per < 4096) j.per = 4096;
    int64_t parts = (n + j.per - 1) / j.per;
    cpu_pool_run(parts, sumsq_task, &j);
    double s = 0.0;
    for (int64_t i = 0; i < parts; i++) s += j.part[i];
    return s;
}
