// mkadapter: writes a random PEFT LoRA adapter for a model folder, for tests
// and demos of adapter serving without a training run.
//
//   mkadapter --model DIR --out DIR --rank R --alpha A
//             --targets q_proj,v_proj|all-linear [--rslora] [--seed N]
//             [--dtype f32|bf16]
//
// adapter_config.json has every field PEFT 0.21 writes (lora_config_to_json);
// all-linear is written as PEFT 0.21 saves it, the full module names.
// adapter_model.safetensors has PEFT's keys
// base_model.model.model.layers.N.<path>.lora_{A,B}.weight. A is drawn as
// PEFT initialises it (kaiming-uniform, bound 1/sqrt(in)); B, which PEFT
// starts at zero, is N(0, 0.05) so the adapter visibly changes the output
// (about as much as the base weight at rank 8, scale 2). The adapter is
// checked with lora_load before the folder appears (temp folder + rename).
#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "adapter.h"
#include "config.h"
#include "safetensors.h"
#include "util.h"

typedef struct opts {
    const char *model, *out, *targets, *dtype;
    long rank, seed;
    double alpha;
    int rslora;
} opts;

static void usage(void) {
    fprintf(stderr, "usage: mkadapter --model DIR --out DIR --rank R --alpha A\n"
                    "                 --targets q_proj,v_proj|all-linear [--rslora] [--seed N]\n"
                    "                 [--dtype f32|bf16]\n");
    exit(2);
}

static double num_arg(const char *flag, const char *v) {
    char *end;
    double d = strtod(v, &end);
    if (*end || end == v || !isfinite(d)) {
        fprintf(stderr, "mkadapter: %s: expected a number, got \"%s\"\n", flag, v);
        exit(2);
    }
    return d;
}

static opts parse_args(int argc, char **argv) {
    opts o = {.rank = 0, .seed = 1, .alpha = NAN, .dtype = "f32"};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--rslora") == 0) {
            o.rslora = 1;
            continue;
        }
        if (i + 1 >= argc) usage();
        const char *a = argv[i], *v = argv[++i];
        if (strcmp(a, "--model") == 0) o.model = v;
        else if (strcmp(a, "--out") == 0) o.out = v;
        else if (strcmp(a, "--targets") == 0) o.targets = v;
        else if (strcmp(a, "--dtype") == 0) o.dtype = v;
        else if (strcmp(a, "--rank") == 0) o.rank = (long)num_arg(a, v);
        else if (strcmp(a, "--seed") == 0) o.seed = (long)num_arg(a, v);
        else if (strcmp(a, "--alpha") == 0) o.alpha = num_arg(a, v);
        else usage();
    }
    if (!o.model || !o.out || !o.targets || o.rank <= 0 || isnan(o.alpha)) usage();
    if (o.rank > LORA_MAX_RANK) {
        fprintf(stderr, "mkadapter: --rank %ld: at most %d\n", o.rank, LORA_MAX_RANK);
        exit(2);
    }
    if (strcmp(o.dtype, "f32") && strcmp(o.dtype, "bf16")) {
        fprintf(stderr, "mkadapter: --dtype %s: expected f32 or bf16\n", o.dtype);
        exit(2);
    }
    return o;
}

// --targets as a bit per projection; -1 names the bad entry.
static int parse_targets(const char *s, unsigned *mask) {
    *mask = 0;
    if (strcmp(s, "all-linear") == 0) {
        *mask = (1u << MODEL_LIN_COUNT) - 1;
        return 0;
    }
    char buf[256];
    snprintf(buf, sizeof buf, "%s", s);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        int l = model_linear_parse(t);
        if (l < 0) {
            fprintf(stderr,
                    "mkadapter: --targets: \"%s\" is not one of q_proj, k_proj, v_proj, o_proj, "
                    "gate_proj, up_proj, down_proj (or all-linear)\n",
                    t);
            return -1;
        }
        *mask |= 1u << l;
    }
    return *mask ? 0 : -1;
}

static char *xstrdup(const char *s) {
    char *d = strdup(s);
    if (!d) {
        fprintf(stderr, "mkadapter: out of memory\n");
        exit(1);
    }
    return d;
}

// The lora_config PEFT would save: all-linear as full module names (what
// PEFT 0.21 writes), a list as the names given.
static void make_config(const opts *o, const model_config *cfg, unsigned mask, lora_config *lc) {
    memset(lc, 0, sizeof *lc);
    lc->r = (int)o->rank;
    lc->alpha = o->alpha;
    lc->use_rslora = o->rslora;
    snprintf(lc->task_type, sizeof lc->task_type, "CAUSAL_LM");
    lc->base_model = xstrdup(o->model);
    int all = strcmp(o->targets, "all-linear") == 0;
    int n = all ? cfg->num_hidden_layers * MODEL_LIN_COUNT : __builtin_popcount(mask);
    lc->targets = calloc((size_t)n, sizeof(char *));
    if (!lc->targets) exit(1);
    for (int l = 0; l < (all ? cfg->num_hidden_layers : 1); l++)
        for (int m = 0; m < MODEL_LIN_COUNT; m++) {
            if (!(mask >> m & 1)) continue;
            char name[128];
            if (all) snprintf(name, sizeof name, "model.layers.%d.%s", l, model_linear_path((model_linear)m));
            else snprintf(name, sizeof name, "%s", model_linear_name((model_linear)m));
            lc->targets[lc->n_targets++] = xstrdup(name);
        }
}

// One LoRA matrix, f32 or bf16, in a buffer the writer borrows.
static void *make_matrix(util_rng *rng, int64_t numel, int is_b, int in, int bf16) {
    void *d = malloc((size_t)numel * (bf16 ? 2 : 4));
    double bound = 1.0 / sqrt((double)in);
    for (int64_t i = 0; d && i < numel; i++) {
        float v = is_b ? (float)(0.05 * util_rng_normal(rng))
                       : (float)((2 * util_rng_uniform(rng) - 1) * bound);
        if (bf16) ((uint16_t *)d)[i] = util_f32_to_bf16(v);
        else ((float *)d)[i] = v;
    }
    return d;
}

static int write_weights(const opts *o, const model_config *cfg, unsigned mask, const char *dir,
                         err_t *err) {
    util_rng rng;
    util_rng_seed(&rng, (uint64_t)o->seed);
    int bf16 = strcmp(o->dtype, "bf16") == 0;
    int max = cfg->num_hidden_layers * MODEL_LIN_COUNT * 2, n = 0, rc = -1;
    void **bufs = calloc((size_t)max, sizeof *bufs);
    sft_writer *w = sft_writer_new();
    if (!bufs || !w) {
        err_set(err, "out of memory");
        goto done;
    }
    for (int l = 0; l < cfg->num_hidden_layers; l++)
        for (int m = 0; m < MODEL_LIN_COUNT; m++) {
            if (!(mask >> m & 1)) continue;
            int out, in;
            model_linear_dims(cfg, (model_linear)m, &out, &in);
            for (int is_b = 0; is_b < 2; is_b++) {
                char key[160];
                snprintf(key, sizeof key, "base_model.model.model.layers.%d.%s.lora_%c.weight", l,
                         model_linear_path((model_linear)m), is_b ? 'B' : 'A');
                int64_t shape[2] = {is_b ? out : o->rank, is_b ? o->rank : in};
                void *d = make_matrix(&rng, shape[0] * shape[1], is_b, in, bf16);
                if (!d) {
                    err_set(err, "%s: out of memory", key);
                    goto done;
                }
                bufs[n++] = d;
                if (sft_writer_add(w, key, bf16 ? SFT_BF16 : SFT_F32, 2, shape, d, err) < 0)
                    goto done;
            }
        }
    if (sft_writer_metadata(w, "format", "pt", err) < 0) goto done;
    char *path = util_path_join(dir, "adapter_model.safetensors");
    rc = sft_writer_write(w, path, err);
    free(path);
done:
    sft_writer_free(w);
    for (int i = 0; i < n; i++) free(bufs[i]);
    free(bufs);
    return rc;
}

static int build(const opts *o, const char *tmp, err_t *err) {
    model_config cfg;
    unsigned mask;
    if (model_config_load(o->model, &cfg, err) < 0) return -1;
    if (parse_targets(o->targets, &mask) < 0) return err_set(err, "bad --targets %s", o->targets);
    lora_config lc;
    make_config(o, &cfg, mask, &lc);
    char *json = lora_config_to_json(&lc);
    lora_config_free(&lc);
    char *path = util_path_join(tmp, "adapter_config.json");
    int rc = json && path ? util_write_file_atomic(path, json, strlen(json), err)
                          : err_set(err, "out of memory");
    free(json);
    free(path);
    if (rc < 0 || write_weights(o, &cfg, mask, tmp, err) < 0) return -1;
    lora_adapter *a = lora_load(tmp, &cfg, err);
    if (!a) return -1;
    lora_free(a);
    return 0;
}

int main(int argc, char **argv) {
    opts o = parse_args(argc, argv);
    err_t err = {{0}};
    char *tmp = util_dir_tmp_beside(o.out, &err);
    if (!tmp) {
        fprintf(stderr, "mkadapter: %s\n", err.msg);
        return 1;
    }
    if (build(&o, tmp, &err) < 0 || util_dir_publish(tmp, o.out, &err) < 0) {
        fprintf(stderr, "mkadapter: %s\n", err.msg);
        util_rm_rf(tmp);
        free(tmp);
        return 1;
    }
    free(tmp);
    printf("mkadapter: wrote %s (rank %ld, alpha %g, targets %s%s)\n", o.out, o.rank, o.alpha,
           o.targets, o.rslora ? ", rsLoRA" : "");
    return 0;
}
