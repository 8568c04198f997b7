// bench/train: training tokens/s of train/lora_train.c (forward, loss,
// backward, AdamW) on a random Qwen2-0.5B-shaped model: hidden 896, 24
// layers, 14 heads, 2 KV heads, intermediate 4864, vocab 151936, tied
// embeddings, q/k/v bias; LoRA rank 16 on all 7 projections.
//
//   build/bench/train [--batch 1] [--seq 256] [--steps 3] [--quant nf4|none]
//                     [--recompute] [--threads N] [--layers 24] [--dir DIR]
//
// Writes the model (config.json + bf16 model.safetensors, weights
// N(0, 0.02)) to DIR (default /tmp/tessera_bench_train_model, reused when its
// config matches; about 1 GB), loads it (NF4 by default: QLoRA), then runs
// one warm-up step and --steps timed steps on --batch random sequences of
// --seq tokens, every position a target. tokens/s counts the batch's tokens.
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "backend.h"
#include "config.h"
#include "../train/lora_train.h"
#include "model.h"
#include "safetensors.h"
#include "util.h"

typedef struct opts {
    int batch, seq, steps, threads, layers, recompute;
    model_load_quant quant;
    const char *dir;
} opts;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int add(sft_writer *wr, const model_config *cfg, util_rng *rng, model_weight w, int layer, uint16_t **buf,
               err_t *err) {
    char name[128];
    int64_t shape[2];
    int nd = model_weight_shape(cfg, w, shape);
    int64_t n = nd == 2 ? shape[0] * shape[1] : shape[0];
    int norm = w == MODEL_W_NORM || w == MODEL_W_ATTN_NORM || w == MODEL_W_MLP_NORM;
    model_weight_name(w, layer, name, sizeof name);
    uint16_t *d = *buf = malloc((size_t)n * sizeof *d);
    if (!d) return err_set(err, "%s: out of memory", name);
    for (int64_t i = 0; i < n; i++)
        d[i] = norm ? 0x3f80 : util_f32_to_bf16((float)(0.02 * util_rng_normal(rng)));
    return sft_writer_add(wr, name, SFT_BF16, nd, shape, d, err);
}

static int config_text(const opts *o, char *buf, size_t cap) {
    return snprintf(buf, cap,
                    "{\"architectures\": [\"Qwen2ForCausalLM\"], \"hidden_size\": 896, \"num_hidden_layers\": %d,\n"
                    " \"num_attention_heads\": 14, \"num_key_value_heads\": 2, \"intermediate_size\": 4864,\n"
                    " \"vocab_size\": 151936, \"max_position_embeddings\": 32768, \"rms_norm_eps\": 1e-06,\n"
                    " \"rope_theta\": 1000000.0, \"bos_token_id\": 151643, \"eos_token_id\": 151643,\n"
                    " \"tie_word_embeddings\": true, \"torch_dtype\": \"bfloat16\"}\n",
                    o->layers);
}

static int write_model(const opts *o, err_t *err) {
    char text[1024], path[512];
    int len = config_text(o, text, sizeof text);
    snprintf(path, sizeof path, "%s/config.json", o->dir);
    size_t have_len = 0;
    err_t ignore;
    char *have = util_read_file(path, &have_len, &ignore);
    snprintf(path, sizeof path, "%s/model.safetensors", o->dir);
    int same = have && have_len == (size_t)len && memcmp(have, text, (size_t)len) == 0 && util_is_file(path);
    free(have);
    if (same) return 0;
    if (mkdir(o->dir, 0755) < 0 && errno != EEXIST) return err_set(err, "%s: %s", o->dir, strerror(errno));
    model_config cfg;
    if (model_config_parse(text, (size_t)len, "bench config", &cfg, err) < 0) return -1;
    printf("writing %s (random weights)...\n", o->dir);
    fflush(stdout);
    util_rng rng;
    util_rng_seed(&rng, 1);
    sft_writer *wr = sft_writer_new();
    int max = (cfg.num_hidden_layers + 1) * MODEL_W_COUNT, n = 0, rc = 0;
    uint16_t **bufs = calloc((size_t)max, sizeof *bufs);
    rc = add(wr, &cfg, &rng, MODEL_W_EMBED, 0, &bufs[n++], err);
    for (int l = 0; rc == 0 && l < cfg.num_hidden_layers; l++)
        for (int w = 0; rc == 0 && w < MODEL_W_COUNT; w++)
            if (model_weight_per_layer((model_weight)w) && model_weight_required(&cfg, (model_weight)w))
                rc = add(wr, &cfg, &rng, (model_weight)w, l, &bufs[n++], err);
    if (rc == 0) rc = add(wr, &cfg, &rng, MODEL_W_NORM, 0, &bufs[n++], err);
    if (rc == 0) rc = sft_writer_write(wr, path, err);
    sft_writer_free(wr);
    for (int i = 0; i < n; i++) free(bufs[i]);
    free(bufs);
    snprintf(path, sizeof path, "%s/config.json", o->dir);
    if (rc == 0) rc = util_write_file_atomic(path, text, (size_t)len, err);
    return rc;
}

static int run(const opts *o, model *m, err_t *err) {
    const bk_ops *bk = bk_cpu();
    int N = o->batch * o->seq;
    lt_opts lo = {.rank = 16, .alpha = 32, .targets = (1u << MODEL_LIN_COUNT) - 1, .dropout = 0.05f,
                  .max_tokens = N, .recompute = o->recompute};
    lt_model *t = lt_new(m, &lo, err);
    if (!t) return -1;
    lt_init_peft(t, 1);
    int64_t n = lt_n_params(t);
    float *mom = bk->alloc((size_t)n * 2 * sizeof(float), err);
    int32_t *ids = malloc((size_t)N * sizeof *ids);
    uint8_t *mask = malloc((size_t)N);
    lt_seq *seqs = malloc((size_t)o->batch * sizeof *seqs);
    int rc = -1;
    if (!mom || !ids || !mask || !seqs) {
        if (mom) err_set(err, "out of memory");
        goto done;
    }
    memset(mom, 0, (size_t)n * 2 * sizeof(float));
    util_rng rng;
    util_rng_seed(&rng, 2);
    for (int i = 0; i < N; i++) ids[i] = (int32_t)(util_rng_next(&rng) % 151000), mask[i] = 1;
    for (int b = 0; b < o->batch; b++) seqs[b] = (lt_seq){ids + b * o->seq, mask + b * o->seq, o->seq};
    int64_t targets = lt_count_targets(seqs, o->batch);
    printf("LoRA rank 16 on 7 projections: %lld parameters; batch %d x seq %d = %d tokens, %s%s, %d threads; "
           "activations %.0f MiB\n",
           (long long)n, o->batch, o->seq, N, o->quant == MODEL_LOAD_NF4 ? "NF4 base" : "dense bf16 base",
           o->recompute ? ", recompute" : "", bk_cpu_threads(), (double)lt_activation_bytes(t) / (1 << 20));
    double total = 0;
    for (int s = 0; s <= o->steps; s++) {
        double t0 = now_s(), loss;
        lt_zero_grads(t);
        if (lt_forward_backward(t, seqs, o->batch, 1.0f / (float)targets, (uint64_t)s, &loss, err) < 0) goto done;
        double norm = bk->sumsq(lt_grads(t), n);
        bk_adamw h = {.beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .decay = 1.0f, .step_size = 1e-4f,
                      .bc2_sqrt = 1.0f, .grad_scale = 1.0f};
        bk->adamw(lt_params(t), lt_grads(t), mom, mom + n, n, &h);
        double dt = now_s() - t0;
        if (s > 0) total += dt;
        printf("step %d%s: %.2f s, %.1f tokens/s, loss %.4f, grad norm %.4f\n", s, s ? "" : " (warm-up)", dt, N / dt,
               loss / (double)targets, norm > 0 ? sqrt(norm) : 0.0);
        fflush(stdout);
    }
    if (o->steps > 0)
        printf("train: %.1f tokens/s (mean of %d steps, %.2f s/step)\n", N * o->steps / total, o->steps,
               total / o->steps);
    rc = 0;
done:
    bk->free(mom);
    free(ids), free(mask), free(seqs);
    lt_free(t);
    return rc;
}

static int arg_int(int argc, char **argv, int *i, int *out) {
    if (*i + 1 >= argc) return -1;
    char *end;
    long v = strtol(argv[++*i], &end, 10);
    if (*end || v < 0 || v > (1 << 24)) return -1;
    *out = (int)v;
    return 0;
}

int main(int argc, char **argv) {
    opts o = {1, 256, 3, 0, 24, 0, MODEL_LOAD_NF4, "/tmp/tessera_bench_train_model"};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int bad = 0;
        if (strcmp(a, "--batch") == 0) bad = arg_int(argc, argv, &i, &o.batch) || o.batch < 1;
        else if (strcmp(a, "--seq") == 0) bad = arg_int(argc, argv, &i, &o.seq) || o.seq < 2;
        else if (strcmp(a, "--steps") == 0) bad = arg_int(argc, argv, &i, &o.steps);
        else if (strcmp(a, "--threads") == 0) bad = arg_int(argc, argv, &i, &o.threads);
        else if (strcmp(a, "--layers") == 0) bad = arg_int(argc, argv, &i, &o.layers) || o.layers < 1;
        else if (strcmp(a, "--recompute") == 0) o.recompute = 1;
        else if (strcmp(a, "--quant") == 0 && i + 1 < argc) {
            const char *v = argv[++i];
            if (strcmp(v, "nf4") == 0) o.quant = MODEL_LOAD_NF4;
            else if (strcmp(v, "none") == 0) o.quant = MODEL_LOAD_NONE;
            else bad = 1;
        } else if (strcmp(a, "--dir") == 0 && i + 1 < argc) o.dir = argv[++i];
        else bad = 1;
        if (bad) {
            fprintf(stderr, "bench/train: bad option %s (see the comment atop bench/train.c)\n", a);
            return 2;
        }
    }
    err_t err = {{0}};
    if (write_model(&o, &err) < 0) {
        fprintf(stderr, "error bench/train: %s\n", err.msg);
        return 1;
    }
    if (o.threads) bk_cpu_set_threads(o.threads);
    model_opts mo = model_opts_default();
    mo.quant = o.quant;
    mo.max_tokens = 16;
    mo.max_slots = 1;
    double t0 = now_s();
    model *m = model_load(o.dir, &mo, &err);
    if (!m) {
        fprintf(stderr, "error bench/train: %s\n", err.msg);
        return 1;
    }
    printf("model: Qwen2-0.5B shape (hidden 896, %d layers, 14/2 heads, intermediate 4864, vocab 151936), "
           "weights %.0f MB, loaded in %.1f s\n",
           o.layers, (double)model_weight_bytes(m) / 1e6, now_s() - t0);
    int rc = run(&o, m, &err);
    if (rc < 0) fprintf(stderr, "error bench/train: %s\n", err.msg);
    model_free(m);
    bk_cpu_shutdown();
    return rc < 0 ? 1 : 0;
}
