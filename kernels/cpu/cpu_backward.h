// cpu_backward: the CPU backend's training ops (kernels/cpu/backward.c):
// forward variants that keep what backward needs, the backward ops, the
// loss and the optimizer step. Shapes and contracts are in backend.h.
#ifndef TESSERA_CPU_BACKWARD_H
#define TESSERA_CPU_BACKWARD_H

#include <stdint.h>

#include "backend.h"

void cpu_attention_train(float *out, float *lse, const float *q, const float *k, const float *v, int T,
                         const bk_train_attn *a);
void cpu_attention_backward(float *dq, float *dk, float *dv, float *delta, const float *dout, const float *q,
                            const float *k, const float *v, const float *out, const float *lse, int T,
                            const bk_train_attn *a);
void cpu_lora_train(float *y, float *v, const float *x, const float *A, const float *B, int T, int C, int OC,
                    int rank, float scale, const bk_dropout *drop);
void cpu_lora_backward(float *dx, float *dA, float *dB, float *u, const float *dy, const float *x, const float *v,
                       const float *A, const float *B, int T, int C, int OC, int rank, float scale,
                       const bk_dropout *drop);
void cpu_matmul_backward(float *dx, const float *dy, const bk_weight *W, int T, int accumulate);
void cpu_rmsnorm_backward(float *dx, const float *dy, const float *x, const float *w, int64_t N, int C, float eps,
                          int accumulate);
void cpu_rope_backward(float *dx, const int32_t *pos, int T, int H, int D, const float *inv_freq);
void cpu_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                         int64_t N);
void cpu_cross_entropy(float *logits, float *loss, const int32_t *target, int N, int V, float grad_scale);
void cpu_adamw(float *p, const float *g, float *m, float *v, int64_t n, const bk_adamw *h);
double cpu_sumsq(const float *x, int64_t n);

// matmul_backward's inner kernel in AVX2 + FMA (backward_avx2.c; only
// called when cpu_simd() >= CPU_SIMD_AVX2): d0 (n) += sum over the rows o
// of g0[o] * w[o] (n), and the same for d1, g1 unless d1 is NULL.
void cpu_avx2_mmb_rows(float *d0, float *d1, const float *g0, const float *g1, const float *const *w, int rows,
                       int64_t n);

#endif
