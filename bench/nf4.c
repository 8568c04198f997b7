// bench/nf4: how close the CPU backend's NF4 decode matmul comes to this
// machine's memory bandwidth, and what LoRA adapters cost a batch of
// decoding sequences, on a model of Qwen2.5-0.5B's shape.
//
//   build/bench/nf4 [--threads N] [--reps 7] [--steps 6] [--dir DIR] [--no-decode] [--modes]
//
// On a shared machine the load changes from one second to the next, so
// each comparison is measured interleaved, rep by rep, and reported as best,
// median and worst, with the median of the per-rep ratios.
//
// 1. copy    memcpy of 256 MiB split over N threads (default: every CPU,
//            the same threads the matmul uses). GB/s counts the bytes copied
//            once (the memory traffic is twice that: a read and a write).
// 2. matvec  one token (bk matmul, T = 1: the fused decode kernels) through
//            the decoder linear weights of all 24 layers of the shape below
//            (q, k, v, o, gate, up, down: 168 matrices, 185 MB, far beyond
//            any cache), random codes, double-quantized absmax as
//            bitsandbytes stores it. GB/s = (packed bytes + absmax bytes)
//            read per second, for each kernel set the CPU has (portable
//            reference, avx2+fma, avx512vl), each rep right after a copy.
//            "in cache" repeats layer 0's q projection (0.4 MB): the
//            kernel's compute ceiling.
// 3. decode  the whole model: Qwen2ForCausalLM, hidden 896, 24 layers, 14
//            heads, 2 KV heads, intermediate 4864, vocab 151936, tied
//            embeddings (bf16), decoder linears NF4 (a bnb-4bit checkpoint
//            with random codes, written once to DIR, default
//            /tmp/tessera_bench_qwen05b, and reused). 16 sequences after an
//            8-token prompt decode --steps tokens each, one token per
//            sequence per forward, with 0, 1, 4 and 16 adapters (rank 16,
//            alpha 32, all seven projections of every layer; sequence i uses
//            adapter i mod n, the batch sorted by adapter as the server
//            sorts it), and one sequence alone; tokens/s counts every
//            sequence's tokens, ratio to 0 adapters. Then the portable
//            kernels without adapters, for comparison. The adapters are one
//            random adapter file loaded into n slots: n separate copies in
//            memory, as n different adapters would be.
// 4. modes   (--modes: this section alone) the same model in the CPU
//            matmul modes (bk_cpu_set_matmul): exact, q8, and q8 with a
//            Q8 lm_head (a second model loaded with lm_head_q8), every
//            case once per rep in turn: decode tokens/s of one sequence and
//            of 16 (one token each per forward, no adapter), and a
//            512-token prefill of one sequence (prompt tokens/s, the last
//            token's logits); medians of the reps and of the per-rep
//            ratios to exact. Last, q8 + Q8 lm_head again with the pool's
//            workers pinned to CPUs ($TESSERA_PIN=1), to see what the
//            pinning does.
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "adapter.h"
#include "backend.h"
#include "config.h"
#include "kv.h"
#include "model.h"
#include "nf4.h"
#include "safetensors.h"
#include "util.h"

#define COPY_BYTES ((size_t)256 << 20)
#define MAX_REPS 32

// Qwen2.5-0.5B
enum { HIDDEN = 896, LAYERS = 24, HEADS = 14, KV_HEADS = 2, INTER = 4864, VOCAB = 151936, HEAD_DIM = 64 };
enum { BATCH = 16, PROMPT = 8, RANK = 16 };

typedef struct opts {
    int threads, reps, steps, decode, modes;
    const char *dir;
} opts;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// ---- 1. memory copy ------------------------------------------------------------------

typedef struct copy_arg {
    char *dst;
    const char *src;
    size_t n;
} copy_arg;

static void *copy_main(void *p) {
    copy_arg *a = p;
    memcpy(a->dst, a->src, a->n);
    return NULL;
}

typedef struct copier {
    char *src, *dst;
    int threads;
} copier;

static int copier_init(copier *c, int threads) {
    c->src = aligned_alloc(64, COPY_BYTES);
    c->dst = aligned_alloc(64, COPY_BYTES);
    c->threads = threads;
    if (!c->src || !c->dst) return -1;
    memset(c->src, 1, COPY_BYTES); // fault the pages in before timing
    memset(c->dst, 2, COPY_BYTES);
    return 0;
}

// GB/s of one copy of COPY_BYTES split over the threads (started per copy:
// a few microseconds of a ~20 ms copy).
static double copy_once(const copier *c) {
    pthread_t th[256];
    copy_arg args[256];
    size_t per = COPY_BYTES / (size_t)c->threads / 64 * 64;
    double t0 = now_s();
    for (int i = 0; i < c->threads; i++) {
        size_t off = (size_t)i * per;
        args[i] = (copy_arg){c->dst + off, c->src + off, i == c->threads - 1 ? COPY_BYTES - off : per};
        if (i > 0) pthread_create(&th[i], NULL, copy_main, &args[i]);
    }
    copy_main(&args[0]);
    for (int i = 1; i < c->threads; i++) pthread_join(th[i], NULL);
    return (double)COPY_BYTES / (now_s() - t0) / 1e9;
}

// ---- 2. NF4 matvec ----------------------------------------------------------------------

// A random (rows x cols) NF4 weight laid out as nf4_quantize lays out a
// double-quantized one: uniform codes, absmax decoding to about 0.03..0.05.
static int random_nf4(util_rng *rng, int64_t rows, int64_t cols, nf4_tensor *t, err_t *err) {
    memset(t, 0, sizeof *t);
    t->rows = rows, t->cols = cols, t->numel = rows * cols;
    t->nblocks = t->numel / NF4_BLOCK;
    t->nnested = (t->nblocks + NF4_NESTED_BLOCK - 1) / NF4_NESTED_BLOCK;
    t->dtype = SFT_BF16;
    t->nested = 1;
    memcpy(t->code, nf4_codebook, sizeof t->code);
    nf4_dynamic_map(t->dyn);
    t->offset = 0.04f;
    size_t bytes = (size_t)t->nnested * sizeof(float) + (size_t)t->numel / 2 + (size_t)t->nblocks;
    float *nested = t->owned = malloc(bytes);
    if (!nested) return err_set(err, "out of memory for a %lld x %lld NF4 weight", (long long)rows, (long long)cols);
    uint8_t *packed = (uint8_t *)(nested + t->nnested), *codes = packed + t->numel / 2;
    for (int64_t i = 0; i < t->nnested; i++) nested[i] = 0.01f;
    int64_t nrand = t->numel / 2 + t->nblocks;
    for (int64_t i = 0; i < nrand; i += 8) {
        uint64_t r = util_rng_next(rng);
        memcpy(packed + i, &r, (size_t)(nrand - i < 8 ? nrand - i : 8));
    }
    t->packed = packed, t->absmax_q = codes, t->nested_absmax = nested;
    return 0;
}

// Bytes a decode reads of t: packed codes and the (double-quantized) absmax.
static int64_t nf4_bytes(const nf4_tensor *t) {
    return t->numel / 2 + (t->nested ? t->nblocks + t->nnested * 4 : t->nblocks * 4);
}

static void linear_shape(model_linear l, int64_t *rows, int64_t *cols) {
    static const int64_t shape[MODEL_LIN_COUNT][2] = {
        {HEADS * HEAD_DIM, HIDDEN}, {KV_HEADS * HEAD_DIM, HIDDEN}, {KV_HEADS * HEAD_DIM, HIDDEN},
        {HIDDEN, HEADS * HEAD_DIM}, {INTER, HIDDEN}, {INTER, HIDDEN}, {HIDDEN, INTER}};
    *rows = shape[l][0], *cols = shape[l][1];
}

// GB/s of one token through every matrix of W (n of them).
static double sweep(const bk_weight *W, int n, int64_t bytes, const float *x, float *y) {
    double t0 = now_s();
    for (int i = 0; i < n; i++) bk_cpu()->matmul(y, x, &W[i], NULL, 1);
    return (double)bytes / (now_s() - t0) / 1e9;
}

// GB/s of W[0] alone, repeated (~200 MB of reads from cache).
static double in_cache(const bk_weight *W, const float *x, float *y) {
    int64_t one = nf4_bytes(&W[0].nf4);
    int k = (int)(2e8 / (double)one) + 1;
    double t0 = now_s();
    for (int i = 0; i < k; i++) bk_cpu()->matmul(y, x, &W[0], NULL, 1);
    return (double)one * k / (now_s() - t0) / 1e9;
}

static int level_of(const char *name) {
    return strcmp(name, "avx512vl") == 0 ? 2 : strcmp(name, "avx2+fma") == 0 ? 1 : 0;
}

typedef struct stats {
    double best, median, worst;
} stats;

static stats stats_of(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return (stats){v[n - 1], v[n / 2], v[0]};
}

// The copy and each kernel set's sweep, interleaved rep by rep so that
// both see the same moments of a shared machine; per-rep ratios too.
static int bench_bandwidth(const opts *o, int threads) {
    err_t err = {{0}};
    util_rng rng;
    util_rng_seed(&rng, 3);
    int n = LAYERS * MODEL_LIN_COUNT;
    nf4_tensor *t = calloc((size_t)n, sizeof *t);
    bk_weight *W = calloc((size_t)n, sizeof *W);
    float *x = malloc(INTER * sizeof *x), *y = malloc(INTER * sizeof *y);
    int64_t bytes = 0, weights = 0;
    int rc = 0;
    copier cp;
    if (copier_init(&cp, threads) < 0) rc = err_set(&err, "out of memory for the copy buffers");
    for (int i = 0; i < INTER; i++) x[i] = (float)util_rng_normal(&rng);
    for (int i = 0; rc == 0 && i < n; i++) {
        int64_t rows, cols;
        linear_shape((model_linear)(i % MODEL_LIN_COUNT), &rows, &cols);
        rc = random_nf4(&rng, rows, cols, &t[i], &err);
        W[i] = (bk_weight){.type = BK_W_NF4, .rows = rows, .cols = cols, .nf4 = t[i]};
        bytes += nf4_bytes(&t[i]);
        weights += rows * cols;
    }
    const char *orig = bk_cpu_simd();
    int levels[3], nl = 0;
    for (int level = 0; level <= 2; level++)
        if (level_of(bk_cpu_set_simd(level)) == level) levels[nl++] = level;
    double copy[MAX_REPS], mv[3][MAX_REPS], ratio[3][MAX_REPS], cache[3];
    for (int k = 0; rc == 0 && k < nl; k++) {
        bk_cpu_set_simd(levels[k]);
        sweep(W, n, bytes, x, y); // warm-up: page faults, pool start
        cache[k] = in_cache(W, x, y);
    }
    for (int r = 0; rc == 0 && r < o->reps; r++) {
        copy[r] = copy_once(&cp);
        for (int k = 0; k < nl; k++) {
            bk_cpu_set_simd(levels[k]);
            mv[k][r] = sweep(W, n, bytes, x, y);
            ratio[k][r] = mv[k][r] / copy[r];
        }
    }
    if (rc == 0) {
        stats c = stats_of(copy, o->reps);
        printf("copy: memcpy of 256 MiB over %d threads, GB/s copied (read + write traffic is twice that): best %.2f, "
               "median %.2f, worst %.2f of %d\n",
               threads, c.best, c.median, c.worst, o->reps);
        printf("RESULT copy threads=%d best_gbs=%.2f median_gbs=%.2f worst_gbs=%.2f\n", threads, c.best, c.median,
               c.worst);
        printf("matvec: one token through %d NF4 matrices (24 layers x q,k,v,o,gate,up,down; %lld weights): %.1f MB of "
               "packed codes + absmax per token\n",
               n, (long long)weights, (double)bytes / 1e6);
        printf("  %-10s %22s %16s %18s %12s\n", "kernels", "GB/s best/med/worst", "best/best copy",
               "median of ratios", "in cache");
        for (int k = 0; k < nl; k++) {
            const char *name = bk_cpu_set_simd(levels[k]);
            stats m = stats_of(mv[k], o->reps), q = stats_of(ratio[k], o->reps);
            printf("  %-10s %7.2f %6.2f %6.2f %15.0f%% %17.0f%% %7.2f GB/s\n", name, m.best, m.median, m.worst,
                   100 * m.best / c.best, 100 * q.median, cache[k]);
            printf("RESULT matvec kernels=%s best_gbs=%.2f median_gbs=%.2f worst_gbs=%.2f ratio_best=%.2f "
                   "ratio_median=%.2f cache_gbs=%.2f\n",
                   name, m.best, m.median, m.worst, m.best / c.best, q.median, cache[k]);
        }
    } else {
        fprintf(stderr, "error bench/nf4: %s\n", err.msg);
    }
    bk_cpu_set_simd(level_of(orig));
    for (int i = 0; i < n; i++) nf4_free(&t[i]);
    free(t), free(W), free(x), free(y), free(cp.src), free(cp.dst);
    return rc;
}

// ---- 3. decode with adapters ------------------------------------------------------------------

static const char CONFIG[] =
    "{\"architectures\": [\"Qwen2ForCausalLM\"], \"model_type\": \"qwen2\", \"hidden_size\": 896,\n"
    " \"num_hidden_layers\": 24, \"num_attention_heads\": 14, \"num_key_value_heads\": 2,\n"
    " \"intermediate_size\": 4864, \"vocab_size\": 151936, \"max_position_embeddings\": 32768,\n"
    " \"rms_norm_eps\": 1e-06, \"rope_theta\": 1000000.0, \"tie_word_embeddings\": true,\n"
    " \"use_sliding_window\": false, \"bos_token_id\": 151643, \"eos_token_id\": 151643,\n"
    " \"torch_dtype\": \"bfloat16\",\n"
    " \"quantization_config\": {\"quant_method\": \"bitsandbytes\", \"load_in_4bit\": true,\n"
    "   \"bnb_4bit_quant_type\": \"nf4\", \"bnb_4bit_use_double_quant\": true}}\n";

static const char ADAPTER_CONFIG[] =
    "{\"peft_type\": \"LORA\", \"task_type\": \"CAUSAL_LM\", \"r\": 16, \"lora_alpha\": 32,\n"
    " \"target_modules\": [\"q_proj\", \"k_proj\", \"v_proj\", \"o_proj\", \"gate_proj\", \"up_proj\", \"down_proj\"],\n"
    " \"bias\": \"none\", \"lora_dropout\": 0.0, \"base_model_name_or_path\": \"bench-qwen2.5-0.5b-shape\"}\n";

// bf16 tensor of the given shape: N(0, std), or all `fill` when std is 0.
static int add_bf16(sft_writer *w, util_rng *rng, const char *name, int nd, const int64_t *shape, double std,
                    float fill, void **keep, err_t *err) {
    int64_t n = nd == 2 ? shape[0] * shape[1] : shape[0];
    uint16_t *d = *keep = malloc((size_t)n * sizeof *d);
    if (!d) return err_set(err, "%s: out of memory", name);
    for (int64_t i = 0; i < n; i++) d[i] = util_f32_to_bf16(std > 0 ? (float)(std * util_rng_normal(rng)) : fill);
    return sft_writer_add(w, name, SFT_BF16, nd, shape, d, err);
}

// DIR/config.json + model.safetensors (bnb-4bit decoder linears), unless a
// previous run left the same config and a model file there.
static int write_model(const char *dir, err_t *err) {
    char path[512];
    snprintf(path, sizeof path, "%s/config.json", dir);
    size_t have_len = 0;
    err_t ignore;
    char *have = util_read_file(path, &have_len, &ignore);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    int same = have && have_len == strlen(CONFIG) && memcmp(have, CONFIG, have_len) == 0 && util_is_file(path);
    free(have);
    if (same) return 0;
    if (mkdir(dir, 0755) < 0 && errno != EEXIST) return err_set(err, "%s: %s", dir, strerror(errno));
    printf("writing the model to %s (once)\n", dir);
    fflush(stdout);
    model_config cfg;
    if (model_config_parse(CONFIG, strlen(CONFIG), "bench config", &cfg, err) < 0) return -1;
    util_rng rng;
    util_rng_seed(&rng, 1);
    sft_writer *w = sft_writer_new();
    int cap = LAYERS * MODEL_W_COUNT + 4, nk = 0, rc = 0;
    void **keep = calloc((size_t)cap, sizeof *keep);
    nf4_tensor *q = calloc((size_t)LAYERS * MODEL_LIN_COUNT, sizeof *q);
    nf4_bnb_meta *meta = calloc((size_t)LAYERS * MODEL_LIN_COUNT, sizeof *meta);
    for (int k = 0; rc == 0 && k < MODEL_W_COUNT; k++) {
        model_weight wk = (model_weight)k;
        if (!model_weight_required(&cfg, wk)) continue;
        int layers = model_weight_per_layer(wk) ? LAYERS : 1;
        for (int l = 0; rc == 0 && l < layers; l++) {
            char name[160];
            int64_t shape[2];
            int nd = model_weight_shape(&cfg, wk, shape);
            model_weight_name(wk, l, name, sizeof name);
            int lin = -1;
            for (int i = 0; i < MODEL_LIN_COUNT; i++)
                if (model_weight_of_linear((model_linear)i) == wk) lin = i;
            if (lin >= 0) {
                nf4_tensor *t = &q[l * MODEL_LIN_COUNT + lin];
                rc = random_nf4(&rng, shape[0], shape[1], t, err);
                if (rc == 0) rc = nf4_bnb_add(w, name, t, &meta[l * MODEL_LIN_COUNT + lin], err);
                continue;
            }
            int norm = wk == MODEL_W_NORM || wk == MODEL_W_ATTN_NORM || wk == MODEL_W_MLP_NORM;
            int bias = wk == MODEL_W_Q_BIAS || wk == MODEL_W_K_BIAS || wk == MODEL_W_V_BIAS;
            rc = add_bf16(w, &rng, name, nd, shape, norm || bias ? 0 : 0.02, norm ? 1.0f : 0.0f, &keep[nk++], err);
        }
    }
    if (rc == 0) rc = sft_writer_write(w, path, err);
    sft_writer_free(w);
    for (int i = 0; i < nk; i++) free(keep[i]);
    for (int i = 0; i < LAYERS * MODEL_LIN_COUNT; i++) nf4_free(&q[i]);
    free(keep), free(q), free(meta);
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (rc == 0) rc = util_write_file_atomic(path, CONFIG, strlen(CONFIG), err);
    return rc;
}

// DIR/adapter: rank 16 on all seven projections; A kaiming-uniform as PEFT
// initialises it, B N(0, 0.01).
static int write_adapter(const char *dir, const model_config *cfg, err_t *err) {
    char path[512];
    snprintf(path, sizeof path, "%s/adapter/adapter_model.safetensors", dir);
    if (util_is_file(path)) return 0;
    snprintf(path, sizeof path, "%s/adapter", dir);
    if (mkdir(path, 0755) < 0 && errno != EEXIST) return err_set(err, "%s: %s", path, strerror(errno));
    util_rng rng;
    util_rng_seed(&rng, 2);
    sft_writer *w = sft_writer_new();
    float **keep = calloc((size_t)LAYERS * MODEL_LIN_COUNT * 2, sizeof *keep);
    char (*names)[160] = calloc((size_t)LAYERS * MODEL_LIN_COUNT * 2, sizeof *names);
    int rc = 0, nk = 0;
    for (int l = 0; rc == 0 && l < LAYERS; l++)
        for (int i = 0; rc == 0 && i < MODEL_LIN_COUNT; i++) {
            int out, in;
            model_linear_dims(cfg, (model_linear)i, &out, &in);
            for (int b = 0; rc == 0 && b < 2; b++) {
                int64_t shape[2] = {b ? out : RANK, b ? RANK : in};
                float *d = keep[nk] = malloc((size_t)(shape[0] * shape[1]) * sizeof *d);
                if (!d) {
                    rc = err_set(err, "out of memory");
                    break;
                }
                for (int64_t k = 0; k < shape[0] * shape[1]; k++)
                    d[k] = b ? (float)(0.01 * util_rng_normal(&rng))
                             : (float)((2 * util_rng_uniform(&rng) - 1) / sqrt((double)in));
                snprintf(names[nk], sizeof names[nk], "base_model.model.model.layers.%d.%s.lora_%c.weight", l,
                         model_linear_path((model_linear)i), b ? 'B' : 'A');
                rc = sft_writer_add(w, names[nk], SFT_F32, 2, shape, d, err);
                nk++;
            }
        }
    snprintf(path, sizeof path, "%s/adapter/adapter_model.safetensors", dir);
    if (rc == 0) rc = sft_writer_write(w, path, err);
    sft_writer_free(w);
    for (int i = 0; i < nk; i++) free(keep[i]);
    free(keep), free(names);
    snprintf(path, sizeof path, "%s/adapter/adapter_config.json", dir);
    if (rc == 0) rc = util_write_file_atomic(path, ADAPTER_CONFIG, strlen(ADAPTER_CONFIG), err);
    return rc;
}

// BATCH sequences with their PROMPT-token prompts in the cache (prefilled
// once, without adapters: the decode steps below overwrite the positions
// after the prompt in every run, and what the cache holds does not change
// the time).
typedef struct decode_setup {
    kv_cache *kv;
    int seq[BATCH];
} decode_setup;

static int decode_setup_init(model *m, decode_setup *d, int steps, float *logits, err_t *err) {
    int len = PROMPT + steps;
    d->kv = model_kv_new(m, 16, BATCH * ((len + 15) / 16), BATCH, len, err);
    if (!d->kv) return -1;
    int32_t tok[BATCH * PROMPT], pos[BATCH * PROMPT], seq[BATCH * PROMPT];
    uint8_t want[BATCH * PROMPT] = {0};
    int n = 0;
    for (int i = 0; i < BATCH; i++) {
        if ((d->seq[i] = kv_seq_open(d->kv, err)) < 0 || kv_seq_reserve(d->kv, d->seq[i], len, err) < 0) return -1;
        for (int p = 0; p < PROMPT; p++, n++) tok[n] = (37 * p + 11 * i) % 5000 + 100, pos[n] = p, seq[n] = d->seq[i];
    }
    model_batch b = {n, tok, pos, seq, NULL, want};
    return model_forward(m, d->kv, &b, logits, err);
}

// tokens/s of `steps` forwards of one token for each of nseq sequences;
// sequence i uses slot i % n_adapters (-1 when n_adapters is 0), the batch
// ordered by slot so that each adapter's tokens are one run.
static double decode_rate(model *m, const decode_setup *d, int nseq, int n_adapters, int steps, float *logits,
                          err_t *err) {
    int32_t tok[BATCH], pos[BATCH], seq[BATCH], ad[BATCH];
    int order[BATCH], n = 0;
    for (int a = n_adapters ? 0 : -1; a < (n_adapters ? n_adapters : 0); a++)
        for (int i = 0; i < nseq; i++)
            if ((n_adapters ? i % n_adapters : -1) == a) order[n++] = i;
    double t0 = now_s();
    for (int s = 0; s < steps; s++) {
        for (int k = 0; k < nseq; k++) {
            int i = order[k];
            tok[k] = (13 * s + 7 * i) % 5000 + 100, pos[k] = PROMPT + s, seq[k] = d->seq[i];
            ad[k] = n_adapters ? i % n_adapters : -1;
        }
        model_batch b = {nseq, tok, pos, seq, ad, NULL};
        if (model_forward(m, d->kv, &b, logits, err) < 0) return -1;
    }
    return (double)steps * nseq / (now_s() - t0);
}

#define NCASES 5 // 0, 1, 4, 16 adapters in a batch of 16; one sequence alone

// Every case once per rep, in turn, so that each rep's ratios to no
// adapter compare moments of the same load.
static int decode_cases(model *m, const opts *o, const char *name, int ncases, float *logits, err_t *err) {
    static const int adapters[NCASES] = {0, 1, 4, 16, 0}, nseq[NCASES] = {BATCH, BATCH, BATCH, BATCH, 1};
    decode_setup d = {0};
    double v[NCASES][MAX_REPS], ratio[NCASES][MAX_REPS];
    int reps = o->reps < 3 ? o->reps : 3, rc = decode_setup_init(m, &d, o->steps, logits, err);
    for (int r = 0; rc == 0 && r < reps; r++)
        for (int c = 0; rc == 0 && c < ncases; c++) {
            int cs = ncases == NCASES ? c : c == 0 ? 0 : NCASES - 1; // the short list: 0 adapters, one sequence
            v[c][r] = decode_rate(m, &d, nseq[cs], adapters[cs], o->steps, logits, err);
            if (v[c][r] < 0) rc = -1;
            ratio[c][r] = v[c][r] / v[0][r];
        }
    kv_free(d.kv);
    if (rc < 0) return -1;
    printf("  kernels %s: %d decode steps per run, %d runs of every case in turn\n", name, o->steps, reps);
    printf("    %-28s %18s %20s\n", "case", "tokens/s best/med", "vs 0 adapters (med)");
    for (int c = 0; c < ncases; c++) {
        int cs = ncases == NCASES ? c : c == 0 ? 0 : NCASES - 1;
        stats t = stats_of(v[c], reps), q = stats_of(ratio[c], reps);
        char label[64];
        if (nseq[cs] == 1)
            snprintf(label, sizeof label, "1 sequence, no adapter");
        else
            snprintf(label, sizeof label, "%d sequences, %d adapters", BATCH, adapters[cs]);
        if (nseq[cs] == 1)
            printf("    %-28s %8.2f %8.2f\n", label, t.best, t.median);
        else
            printf("    %-28s %8.2f %8.2f %19.2fx\n", label, t.best, t.median, q.median);
        printf("RESULT decode kernels=%s adapters=%d batch=%d tok_s_best=%.2f tok_s_median=%.2f", name, adapters[cs],
               nseq[cs], t.best, t.median);
        if (nseq[cs] > 1) printf(" ratio_median=%.2f", q.median);
        printf("\n");
    }
    fflush(stdout);
    return 0;
}

static int bench_decode(const opts *o) {
    err_t err = {{0}};
    if (write_model(o->dir, &err) < 0) {
        fprintf(stderr, "error bench/nf4: %s\n", err.msg);
        return -1;
    }
    model_opts mo = model_opts_default();
    mo.max_tokens = BATCH * PROMPT;
    mo.max_slots = BATCH;
    double t0 = now_s();
    model *m = model_load(o->dir, &mo, &err);
    if (!m) {
        fprintf(stderr, "error bench/nf4: %s\n", err.msg);
        return -1;
    }
    double load_s = now_s() - t0;
    const model_config *cfg = model_get_config(m);
    lora_adapter *a = NULL;
    char adir[512];
    snprintf(adir, sizeof adir, "%s/adapter", o->dir);
    if (write_adapter(o->dir, cfg, &err) < 0 || !(a = lora_load(adir, cfg, &err))) {
        fprintf(stderr, "error bench/nf4: %s\n", err.msg);
        model_free(m);
        return -1;
    }
    for (int s = 0; s < BATCH; s++)
        if (model_adapter_set(m, s, a, &err) < 0) {
            fprintf(stderr, "error bench/nf4: %s\n", err.msg);
            lora_free(a);
            model_free(m);
            return -1;
        }
    printf("decode: Qwen2.5-0.5B shape, NF4 decoder (bnb double quant) + bf16 tied embeddings: %.0f MB of weights "
           "(loaded in %.1f s); adapters rank %d on all 7 projections, %.1f MB f32 each\n",
           (double)model_weight_bytes(m) / 1e6, load_s, RANK, (double)a->n_params * 4 / 1e6);
    lora_free(a);
    float *logits = malloc((size_t)BATCH * PROMPT * VOCAB * sizeof *logits);
    // The best kernels with every case; then the portable ones without
    // adapters, for comparison.
    const char *best = bk_cpu_simd();
    int rc = decode_cases(m, o, best, NCASES, logits, &err);
    if (rc == 0 && strcmp(best, "portable") != 0) {
        rc = decode_cases(m, o, bk_cpu_set_simd(0), 2, logits, &err);
        bk_cpu_set_simd(level_of(best));
    }
    if (rc < 0) fprintf(stderr, "error bench/nf4: %s\n", err.msg);
    free(logits);
    model_free(m);
    return rc;
}

// ---- 4. matmul modes ------------------------------------------------------------------------

#define PREFILL 512

// Prompt tokens/s of one PREFILL-token forward of a fresh sequence.
static double prefill_rate(model *m, kv_cache *kv, float *logits, err_t *err) {
    static int32_t tok[PREFILL], pos[PREFILL], seq[PREFILL];
    static uint8_t want[PREFILL];
    int s = kv_seq_open(kv, err);
    if (s < 0 || kv_seq_reserve(kv, s, PREFILL, err) < 0) return -1;
    for (int i = 0; i < PREFILL; i++) tok[i] = (31 * i) % 5000 + 100, pos[i] = i, seq[i] = s, want[i] = i == PREFILL - 1;
    model_batch b = {PREFILL, tok, pos, seq, NULL, want};
    double t0 = now_s();
    int rc = model_forward(m, kv, &b, logits, err);
    double t = now_s() - t0;
    kv_seq_close(kv, s);
    return rc < 0 ? -1 : PREFILL / t;
}

enum { MODE_CASES = 4, MODE_KINDS = 3 };

// The pool restarted with its workers pinned ($TESSERA_PIN=1, read when
// the pool starts) or not (the default).
static void pool_pinned(int on, int threads) {
    if (on)
        setenv("TESSERA_PIN", "1", 1);
    else
        unsetenv("TESSERA_PIN");
    bk_cpu_set_threads(threads);
}

static int bench_modes(const opts *o) {
    static const char *const names[MODE_CASES] = {"exact", "q8", "q8+q8head", "q8+q8head pinned"};
    static const char *const kinds[MODE_KINDS] = {"decode batch=1", "decode batch=16", "prefill 512"};
    err_t err = {{0}};
    if (write_model(o->dir, &err) < 0) return fprintf(stderr, "error bench/nf4: %s\n", err.msg), -1;
    model_opts mo = model_opts_default();
    mo.max_tokens = PREFILL;
    mo.max_slots = 1;
    model *m[2] = {model_load(o->dir, &mo, &err), NULL};
    mo.lm_head_q8 = 1;
    if (m[0]) m[1] = model_load(o->dir, &mo, &err);
    decode_setup d[2] = {{0}};
    kv_cache *pkv[2] = {NULL, NULL};
    float *logits = malloc((size_t)BATCH * PROMPT * VOCAB * sizeof *logits);
    int rc = m[0] && m[1] ? 0 : -1, reps = o->reps < 5 ? o->reps : 5;
    for (int k = 0; rc == 0 && k < 2; k++) {
        rc = decode_setup_init(m[k], &d[k], o->steps, logits, &err);
        if (rc == 0 && !(pkv[k] = model_kv_new(m[k], 16, PREFILL / 16, 1, PREFILL, &err))) rc = -1;
    }
    double v[MODE_KINDS][MODE_CASES][MAX_REPS], ratio[MODE_KINDS][MODE_CASES][MAX_REPS];
    for (int r = 0; rc == 0 && r < reps; r++)
        for (int c = 0; rc == 0 && c < MODE_CASES; c++) {
            bk_cpu_set_matmul(c ? BK_MATMUL_Q8 : BK_MATMUL_EXACT);
            int h = c >= 2; // the model with the Q8 lm_head
            if (c == 3) pool_pinned(1, bk_cpu_threads());
            v[0][c][r] = decode_rate(m[h], &d[h], 1, 0, o->steps, logits, &err);
            v[1][c][r] = decode_rate(m[h], &d[h], BATCH, 0, o->steps, logits, &err);
            v[2][c][r] = prefill_rate(m[h], pkv[h], logits, &err);
            if (c == 3) pool_pinned(0, bk_cpu_threads());
            for (int k = 0; k < MODE_KINDS; k++) {
                if (v[k][c][r] < 0) rc = -1;
                ratio[k][c][r] = v[k][c][r] / v[k][0][r];
            }
        }
    bk_cpu_set_matmul(BK_MATMUL_EXACT);
    if (rc == 0) {
        printf("modes: Qwen2.5-0.5B shape, NF4 decoder; %d reps of every case in turn (%d decode steps each)\n", reps,
               o->steps);
        printf("  %-16s %-18s %18s %16s\n", "case", "mode", "tokens/s best/med", "vs exact (med)");
        for (int k = 0; k < MODE_KINDS; k++)
            for (int c = 0; c < MODE_CASES; c++) {
                stats t = stats_of(v[k][c], reps), q = stats_of(ratio[k][c], reps);
                printf("  %-16s %-18s %8.2f %8.2f %15.2fx\n", kinds[k], names[c], t.best, t.median, q.median);
                printf("RESULT modes kind=%s mode=%s tok_s_best=%.2f tok_s_median=%.2f ratio_median=%.2f\n",
                       k == 0 ? "decode1" : k == 1 ? "decode16" : "prefill512", c == 3 ? "q8+q8head,pinned" : names[c], t.best, t.median, q.median);
            }
    } else {
        fprintf(stderr, "error bench/nf4: %s\n", err.msg);
    }
    for (int k = 0; k < 2; k++) {
        kv_free(d[k].kv);
        kv_free(pkv[k]);
        model_free(m[k]);
    }
    free(logits);
    return rc;
}

static int arg_int(int argc, char **argv, int *i, int lo, int hi, int *out) {
    if (*i + 1 >= argc) return -1;
    char *end;
    long v = strtol(argv[++*i], &end, 10);
    if (*end || v < lo || v > hi) return -1;
    *out = (int)v;
    return 0;
}

int main(int argc, char **argv) {
    opts o = {0, 7, 6, 1, 0, "/tmp/tessera_bench_qwen05b"};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int bad = 0;
        if (strcmp(a, "--threads") == 0) bad = arg_int(argc, argv, &i, 1, 256, &o.threads);
        else if (strcmp(a, "--reps") == 0) bad = arg_int(argc, argv, &i, 1, MAX_REPS, &o.reps);
        else if (strcmp(a, "--steps") == 0) bad = arg_int(argc, argv, &i, 1, 1000, &o.steps);
        else if (strcmp(a, "--dir") == 0 && i + 1 < argc) o.dir = argv[++i];
        else if (strcmp(a, "--no-decode") == 0) o.decode = 0;
        else if (strcmp(a, "--modes") == 0) o.modes = 1;
        else bad = 1;
        if (bad) {
            fprintf(stderr, "bench/nf4: bad option %s (see the comment atop bench/nf4.c)\n", a);
            return 2;
        }
    }
    bk_cpu_set_threads(o.threads);
    int threads = bk_cpu_threads();
    printf("threads %d; kernels available: %s\n", threads, bk_cpu_simd());
    if (o.modes) {
        int mrc = bench_modes(&o);
        bk_cpu_shutdown();
        return mrc < 0 ? 1 : 0;
    }
    int rc = bench_bandwidth(&o, threads);
    if (rc == 0 && o.decode) rc = bench_decode(&o);
    bk_cpu_shutdown();
    return rc < 0 ? 1 : 0;
}
