// bench/engine: tokens/s of the CPU engine on a random Llama-shaped model,
// one thread vs every thread, NF4 vs dense bf16 weights.
//
//   build/bench/engine [--hidden 768] [--layers 6] [--heads 12] [--kv-heads 4]
//                      [--intermediate 2048] [--vocab 32000] [--prompt 128]
//                      [--gen 32] [--batch 8] [--threads N] [--dir DIR]
//
// Writes the model (config.json + bf16 model.safetensors, weights N(0, 0.02))
// to DIR (default /tmp/tessera_bench_model, reused when its config matches),
// then for each weight format and thread count measures:
//   prefill  one prompt of --prompt tokens in one forward (logits of the last);
//   decode 1 one sequence, one token per forward, --gen steps;
//   decode B --batch sequences, one token each per forward (the server's
//            steady state), --gen steps; tokens/s counts every sequence.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "backend.h"
#include "config.h"
#include "kv.h"
#include "model.h"
#include "safetensors.h"
#include "util.h"

typedef struct opts {
    int hidden, layers, heads, kv_heads, inter, vocab, prompt, gen, batch, threads;
    const char *dir;
} opts;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int is_norm(model_weight w) {
    return w == MODEL_W_NORM || w == MODEL_W_ATTN_NORM || w == MODEL_W_MLP_NORM;
}

static int add(sft_writer *wr, const model_config *cfg, util_rng *rng, model_weight w, int layer, uint16_t **buf,
               err_t *err) {
    char name[128];
    int64_t shape[2];
    int nd = model_weight_shape(cfg, w, shape);
    int64_t n = nd == 2 ? shape[0] * shape[1] : shape[0];
    model_weight_name(w, layer, name, sizeof name);
    uint16_t *d = *buf = malloc((size_t)n * sizeof *d);
    if (!d) return err_set(err, "%s: out of memory", name);
    for (int64_t i = 0; i < n; i++)
        d[i] = is_norm(w) ? 0x3f80 : util_f32_to_bf16((float)(0.02 * util_rng_normal(rng)));
    return sft_writer_add(wr, name, SFT_BF16, nd, shape, d, err);
}

// config.json text for the options (a Llama 3 shape, untied).
static int config_text(const opts *o, char *buf, size_t cap) {
    return snprintf(buf, cap,
                    "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": %d, \"num_hidden_layers\": %d,\n"
                    " \"num_attention_heads\": %d, \"num_key_value_heads\": %d, \"intermediate_size\": %d,\n"
                    " \"vocab_size\": %d, \"max_position_embeddings\": 8192, \"rms_norm_eps\": 1e-05,\n"
                    " \"rope_theta\": 500000.0, \"bos_token_id\": 1, \"eos_token_id\": 2,\n"
                    " \"tie_word_embeddings\": false, \"torch_dtype\": \"bfloat16\"}\n",
                    o->hidden, o->layers, o->heads, o->kv_heads, o->inter, o->vocab);
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
    if (rc == 0) rc = add(wr, &cfg, &rng, MODEL_W_LM_HEAD, 0, &bufs[n++], err);
    if (rc == 0) rc = sft_writer_write(wr, path, err);
    sft_writer_free(wr);
    for (int i = 0; i < n; i++) free(bufs[i]);
    free(bufs);
    snprintf(path, sizeof path, "%s/config.json", o->dir);
    if (rc == 0) rc = util_write_file_atomic(path, text, (size_t)len, err);
    return rc;
}

typedef struct result {
    double prefill, decode1, decodeB; // tokens/s
} result;

// Runs `steps` forwards of one token for each of nseq sequences whose
// prompts are already in the cache at positions 0..start-1.
static int decode(model *m, kv_cache *kv, const int *seqs, int nseq, int start, int steps, float *logits,
                  err_t *err) {
    int32_t tok[256], pos[256], sq[256];
    for (int s = 0; s < steps; s++) {
        for (int i = 0; i < nseq; i++) tok[i] = (7 * s + 3 * i) % 1000 + 3, pos[i] = start + s, sq[i] = seqs[i];
        model_batch b = {nseq, tok, pos, sq, NULL, NULL};
        if (model_forward(m, kv, &b, logits, err) < 0) return -1;
    }
    return 0;
}

static int measure(const opts *o, model *m, result *r, err_t *err) {
    const model_config *cfg = model_get_config(m);
    int len = o->prompt + o->gen;
    kv_cache *kv = model_kv_new(m, 16, (o->batch + 1) * ((len + 15) / 16), o->batch + 1, len, err);
    float *logits = malloc((size_t)o->batch * (size_t)cfg->vocab_size * sizeof *logits);
    int32_t *ids = malloc((size_t)o->prompt * sizeof *ids), *pos = malloc((size_t)o->prompt * sizeof *pos);
    int32_t *sq = malloc((size_t)o->prompt * sizeof *sq);
    uint8_t *want = calloc((size_t)o->prompt, 1);
    int seqs[256], rc = -1;
    if (!kv || !logits || !ids || !pos || !sq || !want) {
        if (kv) err_set(err, "out of memory");
        goto done;
    }
    for (int i = 0; i < o->prompt; i++) ids[i] = (i * 37) % 1000 + 3, pos[i] = i;
    want[o->prompt - 1] = 1;
    // prefill every sequence's prompt; the first one is timed
    for (int s = 0; s < o->batch; s++) {
        if ((seqs[s] = kv_seq_open(kv, err)) < 0 || kv_seq_reserve(kv, seqs[s], len, err) < 0) goto done;
        for (int i = 0; i < o->prompt; i++) sq[i] = seqs[s];
        model_batch b = {o->prompt, ids, pos, sq, NULL, want};
        double t0 = now_s();
        if (model_forward(m, kv, &b, logits, err) < 0) goto done;
        if (s == 0) r->prefill = o->prompt / (now_s() - t0);
    }
    double t0 = now_s();
    if (decode(m, kv, seqs, 1, o->prompt, o->gen, logits, err) < 0) goto done;
    r->decode1 = o->gen / (now_s() - t0);
    // the batch continues from the same prompt positions (sequence 0 overwrites its own decode steps)
    t0 = now_s();
    if (decode(m, kv, seqs, o->batch, o->prompt, o->gen, logits, err) < 0) goto done;
    r->decodeB = (double)o->gen * o->batch / (now_s() - t0);
    rc = 0;
done:
    kv_free(kv);
    free(logits), free(ids), free(pos), free(sq), free(want);
    return rc;
}

static int arg_int(int argc, char **argv, int *i, int *out) {
    if (*i + 1 >= argc) return -1;
    char *end;
    long v = strtol(argv[++*i], &end, 10);
    if (*end || v < 1 || v > (1 << 28)) return -1;
    *out = (int)v;
    return 0;
}

int main(int argc, char **argv) {
    opts o = {768, 6, 12, 4, 2048, 32000, 128, 32, 8, 0, "/tmp/tessera_bench_model"};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int bad = 0;
        if (strcmp(a, "--hidden") == 0) bad = arg_int(argc, argv, &i, &o.hidden);
        else if (strcmp(a, "--layers") == 0) bad = arg_int(argc, argv, &i, &o.layers);
        else if (strcmp(a, "--heads") == 0) bad = arg_int(argc, argv, &i, &o.heads);
        else if (strcmp(a, "--kv-heads") == 0) bad = arg_int(argc, argv, &i, &o.kv_heads);
        else if (strcmp(a, "--intermediate") == 0) bad = arg_int(argc, argv, &i, &o.inter);
        else if (strcmp(a, "--vocab") == 0) bad = arg_int(argc, argv, &i, &o.vocab);
        else if (strcmp(a, "--prompt") == 0) bad = arg_int(argc, argv, &i, &o.prompt);
        else if (strcmp(a, "--gen") == 0) bad = arg_int(argc, argv, &i, &o.gen);
        else if (strcmp(a, "--batch") == 0) bad = arg_int(argc, argv, &i, &o.batch);
        else if (strcmp(a, "--threads") == 0) bad = arg_int(argc, argv, &i, &o.threads);
        else if (strcmp(a, "--dir") == 0 && i + 1 < argc) o.dir = argv[++i];
        else bad = 1;
        if (bad || o.batch > 255) {
            fprintf(stderr, "bench/engine: bad option %s (see the comment atop bench/engine.c)\n", a);
            return 2;
        }
    }
    err_t err = {{0}};
    if (write_model(&o, &err) < 0) {
        fprintf(stderr, "error bench/engine: %s\n", err.msg);
        return 1;
    }
    int all = o.threads ? o.threads : (bk_cpu_set_threads(0), bk_cpu_threads());
    printf("model: llama, hidden %d, %d layers, %d/%d heads, intermediate %d, vocab %d; prompt %d, gen %d, batch %d\n",
           o.hidden, o.layers, o.heads, o.kv_heads, o.inter, o.vocab, o.prompt, o.gen, o.batch);
    printf("%-6s %-8s %12s %12s %14s %10s\n", "quant", "threads", "prefill t/s", "decode1 t/s", "decode B t/s",
           "weights MB");
    for (int q = 0; q < 2; q++) {
        model_opts mo = model_opts_default();
        mo.quant = q == 0 ? MODEL_LOAD_NF4 : MODEL_LOAD_NONE;
        mo.max_tokens = o.prompt > o.batch ? o.prompt : o.batch;
        model *m = model_load(o.dir, &mo, &err);
        if (!m) {
            fprintf(stderr, "error bench/engine: %s\n", err.msg);
            return 1;
        }
        int counts[2] = {1, all};
        for (int k = 0; k < (all > 1 ? 2 : 1); k++) {
            bk_cpu_set_threads(counts[k]);
            result r = {0, 0, 0};
            if (measure(&o, m, &r, &err) < 0) {
                fprintf(stderr, "error bench/engine: %s\n", err.msg);
                model_free(m);
                return 1;
            }
            printf("%-6s %-8d %12.1f %12.1f %14.1f %10.1f\n", q == 0 ? "nf4" : "bf16", counts[k], r.prefill,
                   r.decode1, r.decodeB, (double)model_weight_bytes(m) / 1e6);
            fflush(stdout);
        }
        model_free(m);
    }
    bk_cpu_shutdown();
    return 0;
}
