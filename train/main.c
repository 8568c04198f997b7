// train: QLoRA / LoRA fine-tuning that writes a PEFT adapter folder.
//
//   train --model DIR --data FILE.jsonl --out adapters/NAME [options]
//
// Every option is parsed and checked; the model's config and tokenizer are
// loaded, the training (and validation) data read and reported, and the
// planned run printed. --dry-run stops there. Otherwise the model is loaded
// (NF4 or dense, --quant) and train/trainer.c trains the LoRA and publishes
// the adapter folder atomically (see trainer.h for the files it writes).
//
// Exit status: 0 ok; 1 the model or the data could not be used (or, with
// --strict, the data has bad lines), or training failed; 2 a bad command line.
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chat.h"
#include "config.h"
#include "data.h"
#include "model.h"
#include "tokenizer.h"
#include "trainer.h"
#include "util.h"

#define BAD_LINES_LISTED 50

typedef struct train_opts {
    const char *model, *data, *out, *val, *resume, *chat_template, *schedule, *quant;
    const char *device; // "cpu" or "cuda"
    int rank;
    double alpha, dropout;
    unsigned targets;  // bit l set: model_linear l is adapted
    int rslora;
    int epochs;
    double lr, warmup_ratio, weight_decay, max_grad_norm, val_split;
    int warmup_steps;  // -1: from --warmup-ratio
    int batch_size, grad_accum;
    int max_seq_len;   // 0: min(2048, the model's max_position_embeddings)
    uint64_t seed;
    int eval_steps;    // 0: at the end of each epoch
    int eval_on_start; // also evaluate before the first step (the base's loss)
    int patience;      // 0: no early stopping
    int save_steps;    // 0: only at the end
    int strict, dry_run;
    int recompute;     // recompute activations in backward (less memory)
    int logging_steps; // log a line every N steps
    int stop_after;    // testing: stop after N steps, write no adapter (a killed run)
    int threads;       // 0: every online CPU
    chat_family family;
    int warmup_ratio_set;
} train_opts;

static void usage(FILE *f) {
    fprintf(f,
            "usage: train --model DIR --data FILE.jsonl --out adapters/NAME [options]\n"
            "\n"
            "data:    --val FILE | --val-split FRACTION (0.1)   --max-seq-len N (2048)\n"
            "         --chat-template NAME (from the model)     --strict (any bad line fails)\n"
            "LoRA:    --rank 16 --alpha 32 --dropout 0.05 --rslora\n"
            "         --targets q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj | all-linear\n"
            "         --quant nf4|none (nf4: QLoRA on a 4-bit base)\n"
            "optim:   --epochs 3 --lr 2e-4 --schedule cosine|linear|constant\n"
            "         --warmup-ratio 0 | --warmup-steps N  --batch-size 4 --grad-accum 1\n"
            "         --weight-decay 0 --max-grad-norm 1.0 --seed 42\n"
            "eval:    --eval-steps N (each epoch) --early-stopping-patience N\n"
            "         --eval-on-start (also before the first step: the untrained loss)\n"
            "saving:  --save-steps N (at the end) --resume CHECKPOINT_DIR\n"
            "run:     --device cpu|cuda (cpu)  --logging-steps 10 --threads N (all CPUs)\n"
            "         --recompute (less memory, ~1.3x time)\n"
            "         --stop-after N (testing: stop after N steps, write no adapter)\n"
            "         --dry-run: check the model and data, print the plan, train nothing\n");
}

// A bad command line: the message names the option; exit 2.
__attribute__((format(printf, 1, 2), noreturn)) static void bad_usage(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("train: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\n(train --help lists the options)\n", stderr);
    exit(2);
}

static int parse_int(const char *flag, const char *v, long lo, long hi) {
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || end == v || *end || n < lo || n > hi)
        bad_usage("%s: expected an integer from %ld to %ld, got \"%s\"", flag, lo, hi, v);
    return (int)n;
}

// A finite number in [lo, hi] (or [lo, hi) when hi_open).
static double parse_num(const char *flag, const char *v, double lo, double hi, int hi_open, const char *what) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !isfinite(x) || x < lo || x > hi || (hi_open && x == hi))
        bad_usage("%s: expected %s, got \"%s\"", flag, what, v);
    return x;
}

static const char *parse_choice(const char *flag, const char *v, const char *const *choices) {
    for (int i = 0; choices[i]; i++)
        if (strcmp(v, choices[i]) == 0) return choices[i];
    char list[128] = "";
    for (int i = 0; choices[i]; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", choices[i]);
    bad_usage("%s: expected one of %s, got \"%s\"", flag, list, v);
}

static unsigned parse_targets(const char *flag, const char *v) {
    if (strcmp(v, "all-linear") == 0) return (1u << MODEL_LIN_COUNT) - 1;
    unsigned set = 0;
    const char *p = v;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        char name[32];
        if (n == 0 || n >= sizeof name)
            bad_usage("%s: expected a comma-separated list of q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, "
                      "down_proj, or all-linear, got \"%s\"", flag, v);
        memcpy(name, p, n);
        name[n] = '\0';
        int l = model_linear_parse(name);
        if (l < 0)
            bad_usage("%s: unknown module \"%s\" (expected q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, "
                      "down_proj or all-linear)", flag, name);
        if (set & (1u << l)) bad_usage("%s: \"%s\" is listed twice", flag, name);
        set |= 1u << l;
        if (!comma) break;
        p = comma + 1;
    }
    return set;
}

static uint64_t parse_seed(const char *flag, const char *v) {
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (errno || end == v || *end || v[0] == '-' || v[0] == '+')
        bad_usage("%s: expected a non-negative integer, got \"%s\"", flag, v);
    return (uint64_t)n;
}

static train_opts parse_args(int argc, char **argv) {
    static const char *const schedules[] = {"cosine", "linear", "constant", NULL};
    static const char *const quants[] = {"nf4", "none", NULL};
    static const char *const devices[] = {"cpu", "cuda", NULL};
    train_opts o = {.rank = 16, .alpha = 32, .dropout = 0.05, .targets = (1u << MODEL_LIN_COUNT) - 1,
                    .epochs = 3, .lr = 2e-4, .schedule = "cosine", .warmup_steps = -1, .batch_size = 4,
                    .grad_accum = 1, .max_grad_norm = 1.0, .seed = 42, .quant = "nf4", .family = CHAT_NFAMILIES,
                    .logging_steps = 10, .device = "cpu"};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            exit(0);
        }
        if (strcmp(a, "--rslora") == 0) { o.rslora = 1; continue; }
        if (strcmp(a, "--strict") == 0) { o.strict = 1; continue; }
        if (strcmp(a, "--dry-run") == 0) { o.dry_run = 1; continue; }
        if (strcmp(a, "--recompute") == 0) { o.recompute = 1; continue; }
        if (strcmp(a, "--eval-on-start") == 0) { o.eval_on_start = 1; continue; }
        if (strncmp(a, "--", 2) != 0) bad_usage("unexpected argument \"%s\"", a);
        if (strncmp(a, "--rslora=", 9) == 0 || strncmp(a, "--strict=", 9) == 0 || strncmp(a, "--dry-run=", 10) == 0 ||
            strncmp(a, "--recompute=", 12) == 0 || strncmp(a, "--eval-on-start=", 16) == 0)
            bad_usage("%.*s: takes no value", (int)(strchr(a, '=') - a), a);
        // --name value, or --name=value.
        char flag[64];
        const char *v, *eq = strchr(a, '=');
        if (eq) {
            snprintf(flag, sizeof flag, "%.*s", (int)(eq - a), a);
            v = eq + 1;
        } else {
            snprintf(flag, sizeof flag, "%s", a);
            if (i + 1 >= argc) bad_usage("%s: missing value", flag);
            v = argv[++i];
        }
        const char *f = flag;
        if (strcmp(f, "--model") == 0) o.model = v;
        else if (strcmp(f, "--data") == 0) o.data = v;
        else if (strcmp(f, "--out") == 0) o.out = v;
        else if (strcmp(f, "--val") == 0) o.val = v;
        else if (strcmp(f, "--resume") == 0) o.resume = v;
        else if (strcmp(f, "--chat-template") == 0) {
            err_t e;
            if (chat_family_parse(v, &o.family, &e) != 0) bad_usage("%s: %s", f, e.msg);
            o.chat_template = v;
        }
        else if (strcmp(f, "--rank") == 0) o.rank = parse_int(f, v, 1, 4096);
        else if (strcmp(f, "--alpha") == 0) o.alpha = parse_num(f, v, 1e-9, 1e6, 0, "a positive number");
        else if (strcmp(f, "--dropout") == 0) o.dropout = parse_num(f, v, 0, 1, 1, "a number in [0, 1)");
        else if (strcmp(f, "--targets") == 0) o.targets = parse_targets(f, v);
        else if (strcmp(f, "--epochs") == 0) o.epochs = parse_int(f, v, 1, 1000);
        else if (strcmp(f, "--lr") == 0) o.lr = parse_num(f, v, 1e-12, 1, 0, "a positive learning rate up to 1");
        else if (strcmp(f, "--schedule") == 0) o.schedule = parse_choice(f, v, schedules);
        else if (strcmp(f, "--warmup-ratio") == 0)
            o.warmup_ratio = parse_num(f, v, 0, 1, 1, "a number in [0, 1)"), o.warmup_ratio_set = 1;
        else if (strcmp(f, "--warmup-steps") == 0) o.warmup_steps = parse_int(f, v, 0, 100000000);
        else if (strcmp(f, "--batch-size") == 0) o.batch_size = parse_int(f, v, 1, 65536);
        else if (strcmp(f, "--grad-accum") == 0) o.grad_accum = parse_int(f, v, 1, 65536);
        else if (strcmp(f, "--max-seq-len") == 0) o.max_seq_len = parse_int(f, v, 16, 1 << 24);
        else if (strcmp(f, "--weight-decay") == 0) o.weight_decay = parse_num(f, v, 0, 10, 0, "a number from 0 to 10");
        else if (strcmp(f, "--max-grad-norm") == 0)
            o.max_grad_norm = parse_num(f, v, 0, 1e6, 0, "a non-negative number (0: no clipping)");
        else if (strcmp(f, "--seed") == 0) o.seed = parse_seed(f, v);
        else if (strcmp(f, "--val-split") == 0) o.val_split = parse_num(f, v, 0, 1, 1, "a fraction in (0, 1)");
        else if (strcmp(f, "--eval-steps") == 0) o.eval_steps = parse_int(f, v, 1, 100000000);
        else if (strcmp(f, "--early-stopping-patience") == 0) o.patience = parse_int(f, v, 1, 1000000);
        else if (strcmp(f, "--save-steps") == 0) o.save_steps = parse_int(f, v, 1, 100000000);
        else if (strcmp(f, "--quant") == 0) o.quant = parse_choice(f, v, quants);
        else if (strcmp(f, "--device") == 0) o.device = parse_choice(f, v, devices);
        else if (strcmp(f, "--logging-steps") == 0) o.logging_steps = parse_int(f, v, 1, 100000000);
        else if (strcmp(f, "--stop-after") == 0) o.stop_after = parse_int(f, v, 1, 100000000);
        else if (strcmp(f, "--threads") == 0) o.threads = parse_int(f, v, 1, 256);
        else bad_usage("unknown option %s", f);
        if ((strcmp(f, "--model") == 0 || strcmp(f, "--data") == 0 || strcmp(f, "--out") == 0 ||
             strcmp(f, "--val") == 0 || strcmp(f, "--resume") == 0) && !*v)
            bad_usage("%s: empty value", f);
        if (strcmp(f, "--val-split") == 0 && o.val_split == 0)
            bad_usage("%s: expected a fraction in (0, 1), got \"%s\"", f, v);
    }
    return o;
}

// Checks that need several options together, or the file system.
static void check_args(const train_opts *o) {
    if (!o->model) bad_usage("--model DIR is required");
    if (!o->data) bad_usage("--data FILE is required");
    if (!o->out && !o->dry_run) bad_usage("--out adapters/NAME is required");
    if (!util_is_dir(o->model)) bad_usage("--model %s: not a folder", o->model);
    if (!util_is_file(o->data)) bad_usage("--data %s: not a file", o->data);
    if (o->val && !util_is_file(o->val)) bad_usage("--val %s: not a file", o->val);
    if (o->val && o->val_split > 0) bad_usage("--val and --val-split: give one of them, not both");
    if (o->warmup_ratio_set && o->warmup_steps >= 0)
        bad_usage("--warmup-ratio and --warmup-steps: give one of them, not both");
    if (o->eval_steps && !o->val && o->val_split == 0)
        bad_usage("--eval-steps: there is no validation data (give --val FILE or --val-split FRACTION)");
    if (o->eval_on_start && !o->val && o->val_split == 0)
        bad_usage("--eval-on-start: there is no validation data (give --val FILE or --val-split FRACTION)");
    if (o->patience && !o->val && o->val_split == 0)
        bad_usage("--early-stopping-patience: there is no validation data (give --val FILE or --val-split FRACTION)");
    if (o->resume && !util_is_dir(o->resume)) bad_usage("--resume %s: not a folder", o->resume);
    if (strcmp(o->device, "cuda") == 0 && !bk_has_cuda())
        bad_usage("--device cuda: this train was built without CUDA (build it where nvcc is installed, make CUDA=1)");
    if (o->out) {
        const char *slash = strrchr(o->out, '/');
        const char *name = slash ? slash + 1 : o->out;
        if (!*name || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
            bad_usage("--out %s: expected a folder path ending in the adapter's name, e.g. adapters/my-lora", o->out);
        if (util_is_file(o->out)) bad_usage("--out %s: is a file", o->out);
    }
}

// ---------------------------------------------------------------------------
// The plan

typedef struct plan {
    int64_t steps_per_epoch, total_steps, warmup_steps;
    int64_t lora_params, base_params;
} plan;

static plan make_plan(const train_opts *o, const model_config *cfg, int n_train) {
    plan p = {0};
    int64_t micro = (n_train + (int64_t)o->batch_size - 1) / o->batch_size;
    p.steps_per_epoch = (micro + o->grad_accum - 1) / o->grad_accum;
    p.total_steps = p.steps_per_epoch * o->epochs;
    p.warmup_steps = o->warmup_steps >= 0 ? o->warmup_steps : (int64_t)ceil(o->warmup_ratio * (double)p.total_steps);
    if (p.warmup_steps > p.total_steps) p.warmup_steps = p.total_steps;
    for (int l = 0; l < MODEL_LIN_COUNT; l++) {
        int out, in;
        model_linear_dims(cfg, (model_linear)l, &out, &in);
        if (o->targets & (1u << l)) p.lora_params += (int64_t)cfg->num_hidden_layers * o->rank * (in + out);
    }
    for (int w = 0; w < MODEL_W_COUNT; w++) {
        if (!model_weight_required(cfg, (model_weight)w)) continue;
        int64_t shape[2] = {1, 1};
        int nd = model_weight_shape(cfg, (model_weight)w, shape);
        int64_t n = nd == 2 ? shape[0] * shape[1] : shape[0];
        p.base_params += model_weight_per_layer((model_weight)w) ? n * cfg->num_hidden_layers : n;
    }
    return p;
}

static void print_targets(FILE *f, unsigned targets) {
    for (int l = 0, first = 1; l < MODEL_LIN_COUNT; l++)
        if (targets & (1u << l)) fprintf(f, "%s%s", first ? "" : ",", model_linear_name((model_linear)l)), first = 0;
}

static void print_plan(const train_opts *o, const model_config *cfg, chat_family fam, const plan *p, int n_train,
                       int n_val) {
    double scale = o->rslora ? o->alpha / sqrt(o->rank) : o->alpha / o->rank;
    printf("plan:\n");
    printf("  model: %s (%s, %d layers, hidden %d, vocab %d)\n", o->model, model_arch_name(cfg->arch),
           cfg->num_hidden_layers, cfg->hidden_size, cfg->vocab_size);
    printf("  chat template: %s%s\n", chat_family_name(fam), o->chat_template ? " (--chat-template)" : "");
    printf("  base: %s\n",
           strcmp(o->quant, "nf4") == 0 ? "nf4 (QLoRA: frozen 4-bit base)" : "none (LoRA on a bf16 base)");
    printf("  LoRA: rank %d, alpha %g, scale %g%s, dropout %g, targets ", o->rank, o->alpha, scale,
           o->rslora ? " (rsLoRA: alpha/sqrt(rank))" : " (alpha/rank)", o->dropout);
    print_targets(stdout, o->targets);
    printf("\n");
    printf("  LoRA parameters: %" PRId64 " (%.4f%% of the base's %" PRId64 ")\n", p->lora_params,
           p->base_params ? 100.0 * (double)p->lora_params / (double)p->base_params : 0.0, p->base_params);
    printf("  examples: %d train, %d validation\n", n_train, n_val);
    printf("  batch: %d x grad-accum %d = %d examples per step\n", o->batch_size, o->grad_accum,
           o->batch_size * o->grad_accum);
    printf("  steps per epoch: %" PRId64 "\n", p->steps_per_epoch);
    printf("  epochs: %d\n", o->epochs);
    printf("  total steps: %" PRId64 "\n", p->total_steps);
    printf("  warmup steps: %" PRId64 "\n", p->warmup_steps);
    printf("  optimizer: AdamW, lr %g, schedule %s, weight decay %g, max grad norm %g, seed %" PRIu64 "\n", o->lr,
           o->schedule, o->weight_decay, o->max_grad_norm, o->seed);
    printf("  max-seq-len: %d\n", o->max_seq_len);
    if (n_val == 0) printf("  eval: none (no validation data)\n");
    else if (o->eval_steps) printf("  eval: every %d steps\n", o->eval_steps);
    else printf("  eval: at the end of each epoch\n");
    if (n_val && o->eval_on_start) printf("  eval: also before the first step\n");
    if (o->patience) printf("  early stopping: after %d evals without improvement\n", o->patience);
    if (o->save_steps) printf("  save: every %d steps and at the end\n", o->save_steps);
    else printf("  save: at the end\n");
    if (o->resume) printf("  resume: %s\n", o->resume);
    printf("  device: %s\n", o->device);
    printf("  output: %s\n", o->out ? o->out : "(none: --out not given)");
}

// ---------------------------------------------------------------------------

// Loads one data file and prints its report; NULL (after printing why) if
// it cannot be used.
static data_set *load_data(const char *path, const data_opts *dopts) {
    data_report rep;
    err_t e;
    data_set *ds = data_load(path, dopts, &rep, &e);
    data_report_print(stdout, &rep, BAD_LINES_LISTED);
    data_report_free(&rep);
    fflush(stdout);
    if (!ds) fprintf(stderr, "train: %s\n", e.msg);
    return ds;
}

// The chat template: --chat-template, else the model's tokenizer_config.json.
static int pick_template(const train_opts *o, chat_family *fam, char **bos, err_t *e) {
    char *cfg_path = util_path_join(o->model, "tokenizer_config.json");
    if (!cfg_path) return err_set(e, "out of memory");
    int rc = chat_from_config(cfg_path, fam, bos, e);
    if (o->chat_template) {
        // The named family wins; bos_token stays the file's when its template
        // was readable, else the family's default.
        *fam = o->family;
        rc = 0;
    } else if (rc != 0) {
        err_wrap(e, "chat template (name one with --chat-template)");
    }
    free(cfg_path);
    return rc;
}

// The backend --device names, with --threads for the CPU pool (NULL after
// printing why, e.g. no usable GPU).
static const bk_ops *pick_backend(const train_opts *o) {
    err_t e;
    bk_open_opts bo = {.threads = o->threads};
    const bk_ops *bk = bk_open(o->device, &bo, &e);
    if (!bk) fprintf(stderr, "train: %s\n", e.msg);
    else if (strcmp(o->device, "cpu") == 0) printf("info train: training on the CPU, %d threads\n", bk_cpu_threads());
    else printf("info train: training on CUDA (%s)\n", bk->name);
    return bk;
}

// Loads the model as --quant says onto --device and trains (trainer.h).
static int train_run(const train_opts *o, const plan *p, data_set *train_set, data_set *val) {
    model_opts mo = model_opts_default();
    mo.quant = strcmp(o->quant, "none") == 0 ? MODEL_LOAD_NONE : MODEL_LOAD_NF4;
    mo.max_tokens = 16; // the serving activations; training has its own
    mo.max_slots = 1;
    if (!(mo.bk = pick_backend(o))) return 1;
    fflush(stdout);
    err_t e;
    model *m = model_load(o->model, &mo, &e);
    if (!m) {
        fprintf(stderr, "train: %s\n", e.msg);
        return 1;
    }
    optim_schedule sched = OPTIM_COSINE;
    optim_schedule_parse(o->schedule, &sched);
    trainer_config c = {
        .model_dir = o->model, .out = o->out, .resume = o->resume,
        .rank = o->rank, .alpha = o->alpha, .rslora = o->rslora, .targets = o->targets, .dropout = o->dropout,
        .epochs = o->epochs, .lr = o->lr, .schedule = sched, .warmup_steps = p->warmup_steps,
        .weight_decay = o->weight_decay, .max_grad_norm = o->max_grad_norm,
        .batch_size = o->batch_size, .grad_accum = o->grad_accum, .seed = o->seed,
        .eval_steps = o->eval_steps, .eval_on_start = o->eval_on_start, .patience = o->patience,
        .save_steps = o->save_steps,
        .logging_steps = o->logging_steps, .recompute = o->recompute, .stop_after = o->stop_after,
        .progress = isatty(STDOUT_FILENO), .plot = 1, .log = stdout,
    };
    trainer_result r;
    int rc = trainer_run(m, &c, train_set, val, &r, &e);
    model_free(m);
    bk_cpu_shutdown();
    if (rc != 0) {
        fprintf(stderr, "train: %s\n", e.msg);
        return 1;
    }
    printf("info train: done steps=%" PRId64 "/%" PRId64 " first_loss=%.4f last_loss=%.4f", r.steps, r.total_steps,
           r.first_loss, r.last_loss);
    if (!isnan(r.best_eval)) printf(" best_eval_loss=%.4f last_eval_loss=%.4f", r.best_eval, r.last_eval);
    printf(" time=%.1fs tok/s=%.0f%s\n", r.seconds, r.tokens_per_s, r.stopped_early ? " (early stop)" : "");
    if (o->stop_after && r.steps < r.total_steps && !r.stopped_early)
        printf("info train: stopped after %" PRId64 " steps (--stop-after); no adapter written\n", r.steps);
    else
        printf("info train: wrote %s\n", o->out);
    return 0;
}

static int run(train_opts *o) {
    model_config cfg;
    err_t e;
    if (model_config_load(o->model, &cfg, &e) != 0) {
        fprintf(stderr, "train: %s\n", e.msg);
        return 1;
    }
    if (strcmp(o->quant, "none") == 0 && cfg.quant == MODEL_QUANT_BNB_NF4)
        bad_usage("--quant none: %s is a bitsandbytes 4-bit checkpoint; it trains only as --quant nf4", o->model);
    if (o->max_seq_len == 0)
        o->max_seq_len = cfg.max_position_embeddings < 2048 ? (int)cfg.max_position_embeddings : 2048;
    else if (o->max_seq_len > cfg.max_position_embeddings)
        bad_usage("--max-seq-len %d: over the model's max_position_embeddings %" PRId64, o->max_seq_len,
                  cfg.max_position_embeddings);
    tok *t = tok_open(o->model, &e);
    if (!t) {
        fprintf(stderr, "train: %s\n", e.msg);
        return 1;
    }
    chat_family fam;
    char *bos = NULL;
    if (pick_template(o, &fam, &bos, &e) != 0) {
        fprintf(stderr, "train: %s\n", e.msg);
        tok_free(t);
        return 1;
    }
    data_opts dopts = {.tok = t, .family = fam, .bos_token = bos, .max_seq_len = o->max_seq_len, .strict = o->strict};
    int rc = 1;
    data_set *train = load_data(o->data, &dopts), *val = NULL;
    if (!train) goto done;
    if (o->val && !(val = load_data(o->val, &dopts))) goto done;
    if (o->val_split > 0) {
        int before = data_count(train);
        if (data_split(train, o->val_split, o->seed, &val, &e) != 0) {
            fprintf(stderr, "train: --val-split %g: %s\n", o->val_split, e.msg);
            goto done;
        }
        printf("validation split: %d of %d examples held out (--val-split %g, seed %" PRIu64 ")\n", data_count(val),
               before, o->val_split, o->seed);
    }
    plan p = make_plan(o, &cfg, data_count(train));
    print_plan(o, &cfg, fam, &p, data_count(train), data_count(val));
    if (o->dry_run) {
        printf("dry run: nothing trained, nothing written\n");
        rc = 0;
    } else {
        fflush(stdout);
        rc = train_run(o, &p, train, val);
    }
done:
    data_free(train);
    data_free(val);
    free(bos);
    tok_free(t);
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    train_opts o = parse_args(argc, argv);
    check_args(&o);
    return run(&o);
}
