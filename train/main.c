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
#include "opts.h"
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

#define TARGETS_LIST "q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj"

// --targets: a comma-separated list of model_linear names, or all-linear.
static int parse_targets(const opts_opt *opt, const char *v, void *field, err_t *err) {
    unsigned *targets = field, set = 0;
    if (strcmp(v, "all-linear") == 0) {
        *targets = (1u << MODEL_LIN_COUNT) - 1;
        return 0;
    }
    for (const char *p = v;;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        char name[32];
        if (n == 0 || n >= sizeof name)
            return err_set(err, "expected a comma-separated list of " TARGETS_LIST ", or all-linear, got \"%s\"", v);
        memcpy(name, p, n);
        name[n] = '\0';
        int l = model_linear_parse(name);
        if (l < 0) return err_set(err, "unknown module \"%s\" (expected " TARGETS_LIST " or all-linear)", name);
        if (set & (1u << l)) return err_set(err, "\"%s\" is listed twice", name);
        set |= 1u << l;
        if (!comma) break;
        p = comma + 1;
    }
    *targets = set;
    return 0;
}

// --chat-template: a family name chat_family_parse knows; field is the train_opts.
static int parse_template(const opts_opt *opt, const char *v, void *field, err_t *err) {
    train_opts *o = field;
    if (chat_family_parse(v, &o->family, err) != 0) return -1;
    o->chat_template = v;
    return 0;
}

static const char *const schedules[] = {"cosine", "linear", "constant", NULL};
static const char *const quants[] = {"nf4", "none", NULL};
static const char *const devices[] = {"cpu", "cuda", NULL};

#define USAGE "usage: train --model DIR --data FILE.jsonl --out adapters/NAME [options]\n"

// Parses the command line into o (which holds the defaults); exits 0 after
// --help, 2 on a bad option.
static void parse_args(int argc, char **argv, train_opts *o) {
    const opts_opt table[] = {
        {.help = "data:"},
        {.name = "--model", .type = OPTS_STRING, .field = &o->model, .arg = "DIR", .help = "Hugging Face model folder",
         .flags = OPTS_NONEMPTY},
        {.name = "--data", .type = OPTS_STRING, .field = &o->data, .arg = "FILE",
         .help = "training data: OpenAI chat, Alpaca or ShareGPT JSONL", .flags = OPTS_NONEMPTY},
        {.name = "--out", .type = OPTS_STRING, .field = &o->out, .arg = "DIR",
         .help = "the adapter folder written, e.g. adapters/NAME", .flags = OPTS_NONEMPTY},
        {.name = "--val", .type = OPTS_STRING, .field = &o->val, .arg = "FILE",
         .help = "validation data (or --val-split)", .flags = OPTS_NONEMPTY},
        {.name = "--val-split", .type = OPTS_DOUBLE, .field = &o->val_split, .arg = "FRACTION",
         .help = "hold out this fraction of --data for validation", .min = 0, .max = 1,
         .flags = OPTS_MIN_OPEN | OPTS_MAX_OPEN, .def = "none", .what = "a fraction in (0, 1)"},
        {.name = "--max-seq-len", .type = OPTS_INT, .field = &o->max_seq_len, .arg = "N",
         .help = "longer examples are truncated", .min = 16, .max = 1 << 24, .def = "the model's, at most 2048"},
        {.name = "--chat-template", .type = OPTS_CUSTOM, .field = o, .arg = "NAME",
         .help = "chatml, qwen2, qwen2.5, qwen3, llama3, ...", .def = "from the model", .parse = parse_template},
        {.name = "--strict", .type = OPTS_FLAG, .field = &o->strict, .help = "any bad line fails the run"},
        {.help = "LoRA:"},
        {.name = "--rank", .type = OPTS_INT, .field = &o->rank, .arg = "N", .help = "LoRA rank r", .min = 1,
         .max = 4096},
        {.name = "--alpha", .type = OPTS_DOUBLE, .field = &o->alpha, .arg = "A", .help = "scale alpha/r", .min = 1e-9,
         .max = 1e6, .what = "a positive number"},
        {.name = "--dropout", .type = OPTS_DOUBLE, .field = &o->dropout, .arg = "P",
         .help = "dropout on the LoRA input", .min = 0, .max = 1, .flags = OPTS_MAX_OPEN},
        {.name = "--rslora", .type = OPTS_FLAG, .field = &o->rslora,
         .help = "scale alpha/sqrt(r) (rsLoRA)"},
        {.name = "--targets", .type = OPTS_CUSTOM, .field = &o->targets, .arg = "LIST",
         .help = "comma-separated: " TARGETS_LIST ", or all-linear", .def = "all-linear", .parse = parse_targets},
        {.name = "--quant", .type = OPTS_CHOICE, .field = &o->quant, .arg = "nf4|none",
         .help = "nf4: QLoRA on a 4-bit base; none: LoRA on a bf16 base", .choices = quants},
        {.help = "optim:"},
        {.name = "--epochs", .type = OPTS_INT, .field = &o->epochs, .arg = "N", .help = "passes over the data",
         .min = 1, .max = 1000},
        {.name = "--lr", .type = OPTS_DOUBLE, .field = &o->lr, .arg = "LR", .help = "AdamW learning rate",
         .min = 1e-12, .max = 1, .what = "a positive learning rate up to 1"},
        {.name = "--schedule", .type = OPTS_CHOICE, .field = &o->schedule, .arg = "cosine|linear|constant",
         .help = "learning rate schedule", .choices = schedules},
        {.name = "--warmup-ratio", .type = OPTS_DOUBLE, .field = &o->warmup_ratio, .arg = "R",
         .help = "warmup steps as a fraction of all (or --warmup-steps)", .min = 0, .max = 1, .flags = OPTS_MAX_OPEN,
         .def = "0"},
        {.name = "--warmup-steps", .type = OPTS_INT, .field = &o->warmup_steps, .arg = "N", .help = "warmup steps",
         .min = 0, .max = 100000000, .def = "from --warmup-ratio"},
        {.name = "--batch-size", .type = OPTS_INT, .field = &o->batch_size, .arg = "N",
         .help = "examples per micro-batch", .min = 1, .max = 65536},
        {.name = "--grad-accum", .type = OPTS_INT, .field = &o->grad_accum, .arg = "N",
         .help = "micro-batches per optimizer step", .min = 1, .max = 65536},
        {.name = "--weight-decay", .type = OPTS_DOUBLE, .field = &o->weight_decay, .arg = "W",
         .help = "AdamW weight decay", .min = 0, .max = 10},
        {.name = "--max-grad-norm", .type = OPTS_DOUBLE, .field = &o->max_grad_norm, .arg = "G",
         .help = "gradient clipping norm (0: no clipping)", .min = 0, .max = 1e6,
         .what = "a non-negative number (0: no clipping)"},
        {.name = "--seed", .type = OPTS_U64, .field = &o->seed, .arg = "N",
         .help = "seed for shuffling, dropout, init and --val-split"},
        {.help = "eval:"},
        {.name = "--eval-steps", .type = OPTS_INT, .field = &o->eval_steps, .arg = "N",
         .help = "evaluate every N steps", .min = 1, .max = 100000000, .def = "at the end of each epoch"},
        {.name = "--eval-on-start", .type = OPTS_FLAG, .field = &o->eval_on_start,
         .help = "also before the first step: the untrained loss"},
        {.name = "--early-stopping-patience", .type = OPTS_INT, .field = &o->patience, .arg = "N",
         .help = "stop after N evals without improvement", .min = 1, .max = 1000000, .def = "off"},
        {.help = "saving:"},
        {.name = "--save-steps", .type = OPTS_INT, .field = &o->save_steps, .arg = "N",
         .help = "checkpoint every N steps", .min = 1, .max = 100000000, .def = "at the end"},
        {.name = "--resume", .type = OPTS_STRING, .field = &o->resume, .arg = "DIR",
         .help = "continue from a checkpoint folder", .flags = OPTS_NONEMPTY},
        {.help = "run:"},
        {.name = "--device", .type = OPTS_CHOICE, .field = &o->device, .arg = "cpu|cuda",
         .help = "where the model trains", .choices = devices},
        {.name = "--threads", .type = OPTS_INT, .field = &o->threads, .arg = "N", .help = "CPU threads", .min = 1,
         .max = 256, .def = "every online CPU"},
        {.name = "--logging-steps", .type = OPTS_INT, .field = &o->logging_steps, .arg = "N",
         .help = "a log line every N steps", .min = 1, .max = 100000000},
        {.name = "--recompute", .type = OPTS_FLAG, .field = &o->recompute,
         .help = "recompute activations in backward (less memory, ~1.3x time)"},
        {.name = "--stop-after", .type = OPTS_INT, .field = &o->stop_after, .arg = "N",
         .help = "testing: stop after N steps, write no adapter", .min = 1, .max = 100000000, .def = "off"},
        {.name = "--dry-run", .type = OPTS_FLAG, .field = &o->dry_run,
         .help = "check the model and data, print the plan, train nothing"},
        {0},
    };
    if (argc < 2) {
        opts_help(stderr, USAGE, table, NULL);
        exit(2);
    }
    double warmup_ratio = o->warmup_ratio;
    o->warmup_ratio = -1; // tells whether --warmup-ratio was given (--help shows its .def)
    err_t e;
    int rc = opts_parse(table, argc, argv, &e);
    if (rc == OPTS_HELP) {
        opts_help(stdout, USAGE, table, NULL);
        exit(0);
    }
    if (rc != OPTS_OK) bad_usage("%s", e.msg);
    o->warmup_ratio_set = o->warmup_ratio >= 0;
    if (!o->warmup_ratio_set) o->warmup_ratio = warmup_ratio;
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
    train_opts o = {.rank = 16, .alpha = 32, .dropout = 0.05, .targets = (1u << MODEL_LIN_COUNT) - 1,
                    .epochs = 3, .lr = 2e-4, .schedule = "cosine", .warmup_steps = -1, .batch_size = 4,
                    .grad_accum = 1, .max_grad_norm = 1.0, .seed = 42, .quant = "nf4", .family = CHAT_NFAMILIES,
                    .logging_steps = 10, .device = "cpu"};
    parse_args(argc, argv, &o);
    check_args(&o);
    return run(&o);
}
