// test_optim: train/optim against the formulas of torch.optim.AdamW,
// clip_grad_norm_ and transformers' get_*_schedule_with_warmup, evaluated
// here in double: the schedules at chosen steps, the clip factor, and three
// AdamW steps (weight decay on) on a few parameters.
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../train/optim.h"
#include "check.h"

static int near(double a, double b, double tol) { return fabs(a - b) <= tol; }

static void schedules(void) {
    // warmup 2, total 10: step 0 -> 0, step 1 -> 0.5, then the decay.
    double lr = 1e-3;
    CHECK(optim_lr(OPTIM_COSINE, lr, 0, 2, 10) == 0);
    CHECK(near(optim_lr(OPTIM_COSINE, lr, 1, 2, 10), 5e-4, 1e-18));
    CHECK(near(optim_lr(OPTIM_COSINE, lr, 2, 2, 10), 1e-3, 1e-18));
    CHECK(near(optim_lr(OPTIM_COSINE, lr, 6, 2, 10), lr * 0.5 * (1 + cos(M_PI * 0.5)), 1e-18));
    CHECK(near(optim_lr(OPTIM_COSINE, lr, 9, 2, 10), lr * 0.5 * (1 + cos(M_PI * 7.0 / 8.0)), 1e-18));
    CHECK(near(optim_lr(OPTIM_LINEAR, lr, 1, 2, 10), 5e-4, 1e-18));
    CHECK(near(optim_lr(OPTIM_LINEAR, lr, 2, 2, 10), 1e-3, 1e-18));
    CHECK(near(optim_lr(OPTIM_LINEAR, lr, 6, 2, 10), 5e-4, 1e-18));
    CHECK(near(optim_lr(OPTIM_LINEAR, lr, 9, 2, 10), 1.25e-4, 1e-18));
    CHECK(optim_lr(OPTIM_LINEAR, lr, 10, 2, 10) == 0);
    CHECK(optim_lr(OPTIM_CONSTANT, lr, 0, 2, 10) == 0);
    CHECK(optim_lr(OPTIM_CONSTANT, lr, 9, 2, 10) == lr);
    // no warmup: the first step runs at the full rate
    CHECK(optim_lr(OPTIM_COSINE, lr, 0, 0, 10) == lr);
    optim_schedule s;
    CHECK(optim_schedule_parse("linear", &s) == 0 && s == OPTIM_LINEAR);
    CHECK(optim_schedule_parse("step", &s) < 0);
}

static void clipping(void) {
    float g[3] = {3, 4, 12};
    double n = optim_grad_norm(bk_cpu(), g, 3);
    CHECK(near(n, 13, 1e-12), "norm %g", n);
    CHECK(near(optim_clip_factor(n, 1.0), 1.0 / (13 + 1e-6), 1e-15));
    CHECK(optim_clip_factor(n, 100) == 1.0);
    CHECK(optim_clip_factor(n, 0) == 1.0);
}

// torch's _single_tensor_adamw in double.
static void adamw_ref(double *p, const double *g, double *m, double *v, int n, int step, double lr, double wd) {
    double b1 = 0.9, b2 = 0.999, eps = 1e-8;
    for (int i = 0; i < n; i++) {
        p[i] *= 1 - lr * wd;
        m[i] += (1 - b1) * (g[i] - m[i]);
        v[i] = v[i] * b2 + (1 - b2) * g[i] * g[i];
        double bc1 = 1 - pow(b1, step), bc2 = 1 - pow(b2, step);
        p[i] -= lr / bc1 * m[i] / (sqrt(v[i]) / sqrt(bc2) + eps);
    }
}

static void adamw(void) {
    enum { N = 5 };
    optim_adamw o;
    err_t err = {{0}};
    CHECK(optim_adamw_init(&o, bk_cpu(), N, 0.01, &err) == 0, "%s", err.msg);
    float p[N] = {0.5f, -1.0f, 0.25f, 2.0f, 0.0f}, g[N];
    double rp[N], rg[N], rm[N] = {0}, rv[N] = {0};
    for (int i = 0; i < N; i++) rp[i] = p[i];
    for (int step = 1; step <= 3; step++) {
        for (int i = 0; i < N; i++) g[i] = (float)(0.1 * (i - 2) * step + 0.01), rg[i] = (double)g[i] * 0.5;
        optim_adamw_step(&o, p, g, 1e-2, 0.5); // gradients scaled by 0.5 (a clip factor)
        adamw_ref(rp, rg, rm, rv, N, step, 1e-2, 0.01);
    }
    double e = 0;
    for (int i = 0; i < N; i++) e = fmax(e, fabs(p[i] - rp[i]));
    CHECK(e < 1e-6, "AdamW after 3 steps: max error %.3g", e);
    CHECK(o.step == 3);
    optim_adamw_free(&o);
}

int main(void) {
    schedules();
    clipping();
    adamw();
    bk_cpu_shutdown();
    return check_finish("test_optim");
}
