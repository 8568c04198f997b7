// bench/gpu_train: QLoRA training tokens/s and peak device memory of
// train/lora_train.c + train/optim.c on the CUDA backend, on a big random
// bnb-4bit model (bench/gen_model): the same forward, loss, backward and
// AdamW step `train --device cuda` runs, without the data pipeline.
//
//   build/bench/gpu_train --model DIR [--name NAME] [--batch 4] [--seq 1024]
//                         [--steps 3] [--recompute] [--cpu]
//
// LoRA rank 16, alpha 32, dropout 0.05 on all seven projections (as
// bench/peft_train.py configures PEFT); --batch random sequences of --seq
// tokens, every position a target; one warm-up step, then --steps timed
// steps (zero grads, forward + backward, grad norm, AdamW). tokens/s counts
// the batch's tokens. --recompute keeps only each layer's input and
// recomputes the layer in backward (what gradient checkpointing does for
// PEFT). Peak memory: a thread samples cudaMemGetInfo every 2 ms from before
// the model loads to the end; the peak of used bytes minus the bytes in use
// before the model (the CUDA context) is reported. --cpu runs on the CPU
// backend (no CUDA calls, no memory figure): a check of the bench itself.
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"
#include "cuda/cu_backend.h"
#include "gpu_util.h"
#include "lora_train.h"
#include "model.h"
#include "optim.h"
#include "util.h"

typedef struct opts {
    const char *model, *name;
    int batch, seq, steps, recompute, cpu;
} opts;

// A thread that keeps the highest device memory in use.
typedef struct sampler {
    pthread_t th;
    atomic_int stop;
    _Atomic int64_t peak;
} sampler;

static void *sampler_main(void *p) {
    sampler *s = p;
    struct timespec ts = {0, 2000000};
    while (!atomic_load(&s->stop)) {
        err_t ignore;
        int64_t used = gpu_mem_used(&ignore);
        if (used > atomic_load(&s->peak)) atomic_store(&s->peak, used);
        nanosleep(&ts, NULL);
    }
    return NULL;
}

static int train(const opts *o, model *m, err_t *err) {
    model_view mv;
    model_get_view(m, &mv);
    const bk_ops *bk = mv.bk;
    int N = o->batch * o->seq, V = model_get_config(m)->vocab_size;
    lt_opts lo = {.rank = 16, .alpha = 32, .targets = (1u << MODEL_LIN_COUNT) - 1, .dropout = 0.05f,
                  .max_tokens = N, .recompute = o->recompute};
    lt_model *t = lt_new(m, &lo, err);
    if (!t) return -1;
    lt_init_peft(t, 1);
    int64_t n = lt_n_params(t);
    optim_adamw opt;
    int rc = -1, have_opt = optim_adamw_init(&opt, bk, n, 0.0, err) == 0;
    int32_t *ids = malloc((size_t)N * sizeof *ids);
    uint8_t *mask = malloc((size_t)N);
    lt_seq *seqs = malloc((size_t)o->batch * sizeof *seqs);
    if (!have_opt || !ids || !mask || !seqs) {
        if (have_opt) err_set(err, "out of memory");
        goto done;
    }
    util_rng rng;
    util_rng_seed(&rng, 2);
    for (int i = 0; i < N; i++) ids[i] = (int32_t)(util_rng_next(&rng) % (uint64_t)V), mask[i] = 1;
    for (int b = 0; b < o->batch; b++) seqs[b] = (lt_seq){ids + b * o->seq, mask + b * o->seq, o->seq};
    int64_t targets = lt_count_targets(seqs, o->batch);
    printf("LoRA rank 16 on 7 projections: %lld parameters; batch %d x seq %d = %d tokens%s; activations %.2f GiB\n",
           (long long)n, o->batch, o->seq, N, o->recompute ? ", recompute" : "",
           (double)lt_activation_bytes(t) / (1 << 30));
    double total = 0;
    for (int s = 0; s <= o->steps; s++) {
        double t0 = gpu_now_s(), loss;
        lt_zero_grads(t);
        if (lt_forward_backward(t, seqs, o->batch, 1.0f / (float)targets, (uint64_t)s, &loss, err) < 0) goto done;
        double norm = optim_grad_norm(bk, lt_grads(t), n);
        optim_adamw_step(&opt, lt_params(t), lt_grads(t), 1e-4, optim_clip_factor(norm, 1.0));
        if (!o->cpu && bk_cuda_sync(err) < 0) goto done;
        double dt = gpu_now_s() - t0;
        if (s > 0) total += dt;
        printf("step %d%s: %.3f s, %.1f tokens/s, loss %.4f, grad norm %.4f\n", s, s ? "" : " (warm-up)", dt, N / dt,
               loss / (double)targets, norm);
        fflush(stdout);
        if (!isfinite(loss)) {
            err_set(err, "step %d: loss is not finite", s);
            goto done;
        }
    }
    if (o->steps > 0) printf("train: %.1f tokens/s (mean of %d steps)\n", N * o->steps / total, o->steps);
    printf("RESULT train model=%s recompute=%d batch=%d seq=%d tok_s=%.2f step_s=%.4f", o->name, o->recompute,
           o->batch, o->seq, o->steps > 0 ? N * o->steps / total : 0, o->steps > 0 ? total / o->steps : 0);
    rc = 0;
done:
    if (have_opt) optim_adamw_free(&opt);
    free(ids), free(mask), free(seqs);
    lt_free(t);
    return rc;
}

static int arg_int(int argc, char **argv, int *i, int lo, int *out) {
    if (*i + 1 >= argc) return -1;
    char *end;
    long v = strtol(argv[++*i], &end, 10);
    if (*end || v < lo || v > (1 << 24)) return -1;
    *out = (int)v;
    return 0;
}

int main(int argc, char **argv) {
    opts o = {NULL, "model", 4, 1024, 3, 0, 0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int bad = 0;
        if (strcmp(a, "--batch") == 0) bad = arg_int(argc, argv, &i, 1, &o.batch);
        else if (strcmp(a, "--seq") == 0) bad = arg_int(argc, argv, &i, 2, &o.seq);
        else if (strcmp(a, "--steps") == 0) bad = arg_int(argc, argv, &i, 0, &o.steps);
        else if (strcmp(a, "--recompute") == 0) o.recompute = 1;
        else if (strcmp(a, "--cpu") == 0) o.cpu = 1;
        else if (strcmp(a, "--model") == 0 && i + 1 < argc) o.model = argv[++i];
        else if (strcmp(a, "--name") == 0 && i + 1 < argc) o.name = argv[++i];
        else bad = 1;
        if (bad) {
            fprintf(stderr, "gpu_train: bad option %s (see the comment atop bench/gpu_train.c)\n", a);
            return 2;
        }
    }
    if (!o.model) {
        fprintf(stderr, "gpu_train: --model DIR is required\n");
        return 2;
    }
    err_t err = {{0}};
    sampler smp = {0};
    int64_t base = 0;
    if (!o.cpu) {
        cudaError_t e = cudaFree(0);
        if (e != cudaSuccess || (base = gpu_mem_used(&err)) < 0) {
            fprintf(stderr, "error gpu_train: CUDA context: %s\n", e != cudaSuccess ? cudaGetErrorString(e) : err.msg);
            return 1;
        }
        atomic_store(&smp.peak, base);
        if (pthread_create(&smp.th, NULL, sampler_main, &smp) != 0) {
            fprintf(stderr, "error gpu_train: cannot start the memory sampler\n");
            return 1;
        }
    }
    const bk_ops *bk = bk_open(o.cpu ? "cpu" : "cuda", NULL, &err);
    model *m = NULL;
    int rc = -1;
    if (bk) {
        model_opts mo = model_opts_default();
        mo.bk = bk;
        mo.max_tokens = 16;
        mo.max_slots = 1;
        double t0 = gpu_now_s();
        if ((m = model_load(o.model, &mo, &err)))
            printf("model %s: weights %.2f GB, loaded in %.1f s\n", o.name, (double)model_weight_bytes(m) / 1e9,
                   gpu_now_s() - t0);
    }
    if (m) rc = train(&o, m, &err);
    if (!o.cpu) {
        atomic_store(&smp.stop, 1);
        pthread_join(smp.th, NULL);
    }
    if (rc == 0) {
        double peak = o.cpu ? 0 : (double)(atomic_load(&smp.peak) - base) / (1 << 30);
        printf(" peak_gib=%.3f\n", peak);
        printf("peak device memory: %.2f GiB (cudaMemGetInfo sampled every 2 ms, CUDA context excluded)\n", peak);
    } else {
        fprintf(stderr, "error gpu_train: %s\n", err.msg);
    }
    model_free(m);
    if (o.cpu) bk_cpu_shutdown();
    return rc < 0 ? 1 : 0;
}
