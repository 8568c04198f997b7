#include "optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int optim_schedule_parse(const char *name, optim_schedule *out) {
    static const char *names[] = {"cosine", "linear", "constant"};
    for (int i = 0; i < 3; i++)
        if (strcmp(name, names[i]) == 0) {
            *out = (optim_schedule)i;
            return 0;
        }
    return -1;
}

// As transformers' lr_lambda functions (float division in Python).
double optim_lr(optim_schedule s, double base_lr, int64_t step, int64_t warmup, int64_t total) {
    if (step < warmup) return base_lr * (double)step / (double)(warmup > 1 ? warmup : 1);
    if (s == OPTIM_CONSTANT) return base_lr;
    int64_t span = total - warmup > 1 ? total - warmup : 1;
    if (s == OPTIM_LINEAR) {
        double f = (double)(total - step) / (double)span;
        return base_lr * (f > 0 ? f : 0);
    }
    double progress = (double)(step - warmup) / (double)span;
    double f = 0.5 * (1.0 + cos(M_PI * 0.5 * 2.0 * progress)); // num_cycles 0.5
    return base_lr * (f > 0 ? f : 0);
}

int optim_adamw_init(optim_adamw *o, const bk_ops *bk, int64_t n, double weight_decay, err_t *err) {
    memset(o, 0, sizeof *o);
    o->bk = bk;
    o->n = n;
    o->beta1 = 0.9;
    o->beta2 = 0.999;
    o->eps = 1e-8;
    o->weight_decay = weight_decay;
    size_t bytes = ((size_t)n * sizeof(float) + 63) / 64 * 64;
    if (!(o->mem = bk->alloc(2 * bytes, err))) return err_wrap(err, "AdamW state for %lld parameters", (long long)n);
    if (bk->host_memory) {
        memset(o->mem, 0, 2 * bytes);
    } else { // device memory: upload zeros (once per run)
        void *z = calloc(1, 2 * bytes);
        if (!z) {
            bk->free(o->mem);
            o->mem = NULL;
            return err_set(err, "AdamW state for %lld parameters: out of memory", (long long)n);
        }
        bk->upload(o->mem, z, 2 * bytes);
        free(z);
    }
    o->m = o->mem;
    o->v = (float *)((char *)o->mem + bytes);
    return 0;
}

void optim_adamw_free(optim_adamw *o) {
    if (o->mem) o->bk->free(o->mem);
    memset(o, 0, sizeof *o);
}

double optim_grad_norm(const bk_ops *bk, const float *g, int64_t n) { return sqrt(bk->sumsq(g, n)); }

double optim_clip_factor(double norm, double max_norm) {
    if (max_norm <= 0) return 1.0;
    double c = max_norm / (norm + 1e-6);
    return c < 1.0 ? c : 1.0;
}

// The scalars as torch's _single_tensor_adamw forms them in Python.
void optim_adamw_step(optim_adamw *o, float *p, const float *g, double lr, double grad_scale) {
    o->step++;
    double bc1 = 1.0 - pow(o->beta1, (double)o->step), bc2 = 1.0 - pow(o->beta2, (double)o->step);
    bk_adamw h = {
        .beta1 = (float)o->beta1,
        .beta2 = (float)o->beta2,
        .eps = (float)o->eps,
        .decay = (float)(1.0 - lr * o->weight_decay),
        .step_size = (float)(lr / bc1),
        .bc2_sqrt = (float)sqrt(bc2),
        .grad_scale = (float)grad_scale,
    };
    o->bk->adamw(p, g, o->m, o->v, o->n, &h);
}
