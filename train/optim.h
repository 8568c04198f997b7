// optim: AdamW over a flat array of parameters, gradient clipping by global
// norm, and the learning-rate schedules, each as PyTorch / transformers
// compute them:
//   - torch.optim.AdamW (betas 0.9, 0.999, eps 1e-8; decoupled weight decay
//     p *= 1 - lr * wd before the Adam update; bias-corrected moments);
//   - torch.nn.utils.clip_grad_norm_: scale by max_norm / (norm + 1e-6)
//     when that is below 1;
//   - transformers' get_{constant,linear,cosine}_schedule_with_warmup: the
//     lr of optimizer step k (0-based) is base_lr * lambda(k), lambda rising
//     linearly over the warmup steps from 0, then 1 (constant), falling
//     linearly to 0 at total (linear), or following half a cosine to 0 at
//     total (cosine).
#ifndef TESSERA_OPTIM_H
#define TESSERA_OPTIM_H

#include <stdint.h>

#include "backend.h"
#include "err.h"

typedef enum optim_schedule {
    OPTIM_COSINE,
    OPTIM_LINEAR,
    OPTIM_CONSTANT,
} optim_schedule;

// "cosine", "linear", "constant" -> 0, or -1 if unknown.
int optim_schedule_parse(const char *name, optim_schedule *out);

// The learning rate of optimizer step `step` (0-based).
double optim_lr(optim_schedule s, double base_lr, int64_t step, int64_t warmup, int64_t total);

typedef struct optim_adamw {
    const bk_ops *bk;
    int64_t n;
    double beta1, beta2, eps, weight_decay;
    int64_t step;  // updates done so far
    float *m, *v;  // first and second moments (n each), backend memory
    void *mem;
} optim_adamw;

// Zeroed moments for n parameters with torch's default betas and eps.
// 0, or -1 + err on out of memory. Free with optim_adamw_free.
int optim_adamw_init(optim_adamw *o, const bk_ops *bk, int64_t n, double weight_decay, err_t *err);
void optim_adamw_free(optim_adamw *o);

// The global L2 norm of g (n floats), the same for any thread count.
double optim_grad_norm(const bk_ops *bk, const float *g, int64_t n);

// The factor clip_grad_norm_ multiplies the gradients by: 1, or
// max_norm / (norm + 1e-6) when that is smaller; max_norm 0 = no clipping.
double optim_clip_factor(double norm, double max_norm);

// One AdamW update of p (n floats) with gradients g * grad_scale at
// learning rate lr; counts the step.
void optim_adamw_step(optim_adamw *o, float *p, const float *g, double lr, double grad_scale);

#endif
