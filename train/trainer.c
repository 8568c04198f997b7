#include "trainer.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "json.h"
#include "lora_train.h"
#include "safetensors.h"
#include "util.h"

typedef struct trainer {
    const trainer_config *c;
    model *m;
    lt_model *lt;
    optim_adamw opt;
    lora_config lc;
    const data_set *train, *val;
    int n_train;
    int64_t n_micro, steps_per_epoch, total;
    int32_t *perm;    // (n_train) the order of perm_epoch
    int64_t perm_epoch;
    lt_seq *seqs;     // (batch_size)
    float *best;      // (n_params) best parameters when patience is set (host memory)
    float *stage;     // (2, n_params) host copies of backend memory for checkpoints (on every
                      // backend, so the CPU tests run the device path)
    double best_eval, last_eval;
    int64_t best_step;
    int bad_evals, stopped_early;
    FILE *metrics;
    char *metrics_path, *ckpt_root;
    // the logging window
    double win_loss, win_t0;
    int win_steps;
    int64_t win_tokens;
    double run_tokens, run_train_s;
    double bar_tps; // the throughput the progress bar shows
    int bar_open;   // the progress bar is on the current line
} trainer;

int64_t trainer_steps_per_epoch(int n_train, int batch_size, int grad_accum) {
    int64_t micro = ((int64_t)n_train + batch_size - 1) / batch_size;
    return (micro + grad_accum - 1) / grad_accum;
}

static const bk_ops *bk_of(const model *m) {
    model_view v;
    model_get_view(m, &v);
    return v.bk;
}

static char *concat(const char *a, const char *b) {
    size_t n = strlen(a) + strlen(b) + 1;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s%s", a, b);
    return s;
}

// ---- setup ---------------------------------------------------------------------------

// The adapter_config.json PEFT would write for these options: the short
// projection names in model_linear order.
static int make_lora_config(trainer *tr, err_t *err) {
    const trainer_config *c = tr->c;
    lora_config *lc = &tr->lc;
    memset(lc, 0, sizeof *lc);
    lc->r = c->rank;
    lc->alpha = c->alpha;
    lc->use_rslora = c->rslora;
    lc->dropout = c->dropout;
    snprintf(lc->task_type, sizeof lc->task_type, "CAUSAL_LM");
    lc->base_model = strdup(c->model_dir);
    lc->targets = calloc(MODEL_LIN_COUNT, sizeof(char *));
    if (!lc->base_model || !lc->targets) return err_set(err, "out of memory");
    for (int l = 0; l < MODEL_LIN_COUNT; l++) {
        if (!(c->targets >> l & 1)) continue;
        if (!(lc->targets[lc->n_targets++] = strdup(model_linear_name((model_linear)l))))
            return err_set(err, "out of memory");
    }
    return 0;
}

static int by_length_desc(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x < y) - (x > y);
}

// The most tokens a micro-batch can hold: the batch_size longest examples
// of either set. -1 on out of memory.
static int64_t max_batch_tokens(const data_set *a, const data_set *b, int bs) {
    int na = data_count(a), nb = b ? data_count(b) : 0;
    int *len = malloc((size_t)(na + nb) * sizeof *len);
    if (!len) return -1;
    for (int i = 0; i < na; i++) len[i] = data_get(a, i)->n;
    for (int i = 0; i < nb; i++) len[na + i] = data_get(b, i)->n;
    qsort(len, (size_t)(na + nb), sizeof *len, by_length_desc);
    int64_t sum = 0;
    for (int i = 0; i < bs && i < na + nb; i++) sum += len[i];
    free(len);
    return sum;
}

// mkdir -p of the folder that will hold path.
static int make_parents(const char *path, err_t *err) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) return err_set(err, "%s: %s", buf, strerror(errno));
        *p = '/';
    }
    return 0;
}

static int open_metrics(trainer *tr, err_t *err) {
    if (make_parents(tr->c->out, err) < 0) return -1;
    if (!(tr->metrics_path = concat(tr->c->out, ".metrics.jsonl")) ||
        !(tr->ckpt_root = concat(tr->c->out, ".checkpoints")))
        return err_set(err, "out of memory");
    tr->metrics = fopen(tr->metrics_path, tr->c->resume ? "a" : "w");
    if (!tr->metrics) return err_set(err, "%s: %s", tr->metrics_path, strerror(errno));
    return 0;
}

static int setup(trainer *tr, model *m, const trainer_config *c, const data_set *train, const data_set *val,
                 err_t *err) {
    tr->c = c;
    tr->m = m;
    tr->train = train;
    tr->val = val && data_count(val) > 0 ? val : NULL;
    tr->n_train = data_count(train);
    tr->n_micro = (tr->n_train + c->batch_size - 1) / c->batch_size;
    tr->steps_per_epoch = trainer_steps_per_epoch(tr->n_train, c->batch_size, c->grad_accum);
    tr->total = tr->steps_per_epoch * c->epochs;
    tr->perm_epoch = -1;
    tr->best_eval = tr->last_eval = NAN;
    tr->best_step = -1;
    if (tr->n_train < 1) return err_set(err, "no training examples");
    if (make_lora_config(tr, err) < 0) return -1;
    int64_t max_tokens = max_batch_tokens(train, tr->val, c->batch_size);
    if (max_tokens < 0) return err_set(err, "out of memory");
    if (max_tokens > INT32_MAX / 2)
        return err_set(err, "micro-batches of up to %" PRId64 " tokens: too many (lower --batch-size or --max-seq-len)",
                       max_tokens);
    lt_opts o = {.rank = c->rank, .alpha = c->alpha, .rslora = c->rslora, .targets = c->targets,
                 .dropout = (float)c->dropout, .max_tokens = (int)max_tokens, .recompute = c->recompute};
    if (!(tr->lt = lt_new(m, &o, err))) return -1;
    fprintf(c->log, "info train: activations %.1f MiB for micro-batches of up to %" PRId64 " tokens%s\n",
            (double)lt_activation_bytes(tr->lt) / (1 << 20), max_tokens,
            c->recompute ? " (--recompute)" : " (--recompute keeps less)");
    lt_init_peft(tr->lt, c->seed);
    int64_t n = lt_n_params(tr->lt);
    if (optim_adamw_init(&tr->opt, bk_of(m), n, c->weight_decay, err) < 0) return -1;
    tr->perm = malloc((size_t)tr->n_train * sizeof *tr->perm);
    tr->seqs = malloc((size_t)c->batch_size * sizeof *tr->seqs);
    tr->best = c->patience && tr->val ? calloc((size_t)n, sizeof(float)) : NULL;
    tr->stage = malloc((size_t)n * 2 * sizeof(float));
    if (!tr->perm || !tr->seqs || !tr->stage || (c->patience && tr->val && !tr->best))
        return err_set(err, "out of memory");
    return open_metrics(tr, err);
}

static void teardown(trainer *tr) {
    lt_free(tr->lt);
    optim_adamw_free(&tr->opt);
    lora_config_free(&tr->lc);
    free(tr->perm);
    free(tr->seqs);
    free(tr->best);
    free(tr->stage);
    if (tr->metrics) fclose(tr->metrics);
    free(tr->metrics_path);
    free(tr->ckpt_root);
}

// ---- data order -------------------------------------------------------------------------

static void shuffle_for(trainer *tr, int64_t epoch) {
    if (tr->perm_epoch == epoch) return;
    util_rng rng;
    util_rng_seed(&rng, util_splitmix64(tr->c->seed) ^ util_splitmix64((uint64_t)epoch + 1));
    for (int i = 0; i < tr->n_train; i++) tr->perm[i] = i;
    for (int i = tr->n_train - 1; i > 0; i--) {
        int j = (int)(util_rng_next(&rng) % (uint64_t)(i + 1));
        int32_t t = tr->perm[i];
        tr->perm[i] = tr->perm[j];
        tr->perm[j] = t;
    }
    tr->perm_epoch = epoch;
}

// Micro-batch mi of the current epoch's order into tr->seqs; returns its
// size and adds its token count to *tokens.
static int micro_batch(trainer *tr, int64_t mi, int64_t *tokens) {
    int bs = tr->c->batch_size, n = 0;
    for (int64_t i = mi * bs; i < (mi + 1) * bs && i < tr->n_train; i++) {
        const data_example *ex = data_get(tr->train, tr->perm[i]);
        tr->seqs[n++] = (lt_seq){ex->ids, ex->mask, ex->n};
        *tokens += ex->n;
    }
    return n;
}

// ---- one step, evaluation ---------------------------------------------------------------

typedef struct step_info {
    double loss, lr, grad_norm;
    int64_t tokens, targets;
} step_info;

// Optimizer step `step` (0-based): its micro-batches' gradients, clipped,
// then AdamW.
static int train_step(trainer *tr, int64_t step, step_info *si, err_t *err) {
    const trainer_config *c = tr->c;
    int64_t epoch = step / tr->steps_per_epoch, k = step % tr->steps_per_epoch;
    int64_t m0 = k * c->grad_accum, m1 = m0 + c->grad_accum < tr->n_micro ? m0 + c->grad_accum : tr->n_micro;
    shuffle_for(tr, epoch);
    memset(si, 0, sizeof *si);
    int64_t tokens = 0;
    for (int64_t mi = m0; mi < m1; mi++) {
        int n = micro_batch(tr, mi, &tokens);
        si->targets += lt_count_targets(tr->seqs, n);
    }
    si->tokens = tokens;
    lt_zero_grads(tr->lt);
    double sum = 0;
    for (int64_t mi = m0; mi < m1; mi++) {
        int n = micro_batch(tr, mi, &tokens);
        uint64_t key = util_splitmix64(c->seed ^ util_splitmix64((uint64_t)step * 65536 + (uint64_t)(mi - m0)));
        double part = 0;
        if (lt_forward_backward(tr->lt, tr->seqs, n, si->targets ? 1.0f / (float)si->targets : 0.0f, key, &part,
                                err) < 0)
            return err_wrap(err, "step %" PRId64, step + 1);
        sum += part;
    }
    si->lr = optim_lr(c->schedule, c->lr, step, c->warmup_steps, tr->total);
    if (si->targets == 0) return 0; // nothing to learn from: no update
    si->loss = sum / (double)si->targets;
    int64_t n = lt_n_params(tr->lt);
    si->grad_norm = optim_grad_norm(bk_of(tr->m), lt_grads(tr->lt), n);
    if (!isfinite(si->grad_norm))
        return err_set(err, "step %" PRId64 ": the gradient norm is %g (the loss diverged; lower --lr)", step + 1,
                       si->grad_norm);
    optim_adamw_step(&tr->opt, lt_params(tr->lt), lt_grads(tr->lt), si->lr,
                     optim_clip_factor(si->grad_norm, c->max_grad_norm));
    return 0;
}

// Mean loss over every target of the validation set (file order, no dropout).
static int evaluate(trainer *tr, double *loss, err_t *err) {
    int bs = tr->c->batch_size, nv = data_count(tr->val);
    double sum = 0;
    int64_t count = 0;
    for (int i0 = 0; i0 < nv; i0 += bs) {
        int n = 0;
        for (int i = i0; i < i0 + bs && i < nv; i++) {
            const data_example *ex = data_get(tr->val, i);
            tr->seqs[n++] = (lt_seq){ex->ids, ex->mask, ex->n};
        }
        double part = 0;
        if (lt_forward_loss(tr->lt, tr->seqs, n, &part, err) < 0) return err_wrap(err, "validation");
        sum += part;
        count += lt_count_targets(tr->seqs, n);
    }
    *loss = count ? sum / (double)count : NAN;
    return 0;
}

// ---- checkpoints ------------------------------------------------------------------------

static int write_state(trainer *tr, int64_t step, const char *dir, err_t *err) {
    char *path = util_path_join(dir, "trainer_state.json");
    if (!path) return err_set(err, "out of memory");
    char buf[2048];
    char best[64];
    if (isnan(tr->best_eval)) snprintf(best, sizeof best, "null");
    else snprintf(best, sizeof best, "%.17g", tr->best_eval);
    int n = snprintf(buf, sizeof buf,
                     "{\n  \"step\": %" PRId64 ",\n  \"adam_step\": %" PRId64 ",\n  \"total_steps\": %" PRId64
                     ",\n  \"steps_per_epoch\": %" PRId64 ",\n  \"epoch\": %.6f,\n  \"seed\": \"%" PRIu64
                     "\",\n  \"n_params\": %" PRId64 ",\n  \"n_train\": %d,\n  \"batch_size\": %d,\n"
                     "  \"grad_accum\": %d,\n  \"best_eval_loss\": %s,\n  \"best_step\": %" PRId64
                     ",\n  \"bad_evals\": %d,\n"
                     "  \"data_order\": \"epoch e: Fisher-Yates from util_rng seeded by (seed, e)\",\n"
                     "  \"dropout\": \"keyed by (seed, step, micro-batch)\"\n}\n",
                     step, tr->opt.step, tr->total, tr->steps_per_epoch, (double)step / (double)tr->steps_per_epoch,
                     tr->c->seed, lt_n_params(tr->lt), tr->n_train, tr->c->batch_size, tr->c->grad_accum, best,
                     tr->best_step, tr->bad_evals);
    int rc = util_write_file_atomic(path, buf, (size_t)n, err);
    free(path);
    return rc;
}

// The AdamW moments downloaded into the staging buffer.
static void moments_to_host(trainer *tr, const float **m, const float **v) {
    int64_t n = lt_n_params(tr->lt);
    tr->opt.bk->download(tr->stage, tr->opt.m, (size_t)n * sizeof(float));
    tr->opt.bk->download(tr->stage + n, tr->opt.v, (size_t)n * sizeof(float));
    *m = tr->stage, *v = tr->stage + n;
}

static int write_optimizer(trainer *tr, const char *dir, err_t *err) {
    char *path = util_path_join(dir, "optimizer.safetensors");
    sft_writer *w = sft_writer_new();
    int64_t shape[1] = {lt_n_params(tr->lt)};
    const float *m, *v;
    moments_to_host(tr, &m, &v);
    int rc = -1;
    if (!path || !w) {
        err_set(err, "out of memory");
    } else if (sft_writer_add(w, "exp_avg", SFT_F32, 1, shape, m, err) == 0 &&
               sft_writer_add(w, "exp_avg_sq", SFT_F32, 1, shape, v, err) == 0 &&
               (!tr->best || sft_writer_add(w, "best_params", SFT_F32, 1, shape, tr->best, err) == 0)) {
        rc = sft_writer_write(w, path, err);
    }
    sft_writer_free(w);
    free(path);
    return rc;
}

// OUT.checkpoints/checkpoint-STEP/, built beside and published whole.
static int save_checkpoint(trainer *tr, int64_t step, err_t *err) {
    if (mkdir(tr->ckpt_root, 0755) != 0 && errno != EEXIST)
        return err_set(err, "%s: %s", tr->ckpt_root, strerror(errno));
    char name[64];
    snprintf(name, sizeof name, "/checkpoint-%" PRId64, step);
    char *dir = concat(tr->ckpt_root, name);
    char *tmp = dir ? util_dir_tmp_beside(dir, err) : NULL;
    int rc = -1;
    if (!dir) err_set(err, "out of memory");
    if (tmp && lt_write_peft(tr->lt, &tr->lc, tmp, err) == 0 && write_optimizer(tr, tmp, err) == 0 &&
        write_state(tr, step, tmp, err) == 0)
        rc = util_dir_publish(tmp, dir, err);
    if (tmp && rc < 0) util_rm_rf(tmp);
    free(tmp);
    free(dir);
    return rc;
}

// Copies tensor `name` (n f32) of s into dst.
static int load_f32(const sft *s, const char *file, const char *name, float *dst, int64_t n, err_t *err) {
    const sft_tensor *t = sft_find(s, name);
    if (!t) return err_set(err, "%s: missing tensor %s", file, name);
    if (t->dtype != SFT_F32 || t->numel != n)
        return err_set(err, "%s: tensor %s: expected F32 with %" PRId64 " values", file, name, n);
    memcpy(dst, t->data, (size_t)n * sizeof(float));
    return 0;
}

// Into the staging buffer, then uploaded whole (every A and B is in the file).
static int load_params(trainer *tr, const char *dir, err_t *err) {
    char *path = util_path_join(dir, "adapter_model.safetensors");
    sft *s = path ? sft_open(path, err) : NULL;
    int rc = s ? 0 : -1;
    const model_config *cfg = model_get_config(tr->m);
    float *P = tr->stage;
    for (int l = 0; rc == 0 && l < cfg->num_hidden_layers; l++)
        for (int i = 0; rc == 0 && i < MODEL_LIN_COUNT; i++) {
            const lt_module *md = lt_module_at(tr->lt, l, (model_linear)i);
            if (!md->rank) continue;
            char key[160];
            lt_peft_key(l, (model_linear)i, 0, key, sizeof key);
            rc = load_f32(s, path, key, P + md->a_off, (int64_t)md->rank * md->in, err);
            lt_peft_key(l, (model_linear)i, 1, key, sizeof key);
            if (rc == 0) rc = load_f32(s, path, key, P + md->b_off, (int64_t)md->out * md->rank, err);
        }
    if (rc == 0) lt_set_params(tr->lt, P);
    sft_close(s);
    free(path);
    return rc;
}

static int load_optimizer(trainer *tr, const char *dir, err_t *err) {
    char *path = util_path_join(dir, "optimizer.safetensors");
    sft *s = path ? sft_open(path, err) : NULL;
    int64_t n = lt_n_params(tr->lt);
    float *m = tr->stage, *v = tr->stage + n;
    int rc = s && load_f32(s, path, "exp_avg", m, n, err) == 0 && load_f32(s, path, "exp_avg_sq", v, n, err) == 0 &&
                     (!tr->best || load_f32(s, path, "best_params", tr->best, n, err) == 0)
                 ? 0
                 : -1;
    if (rc == 0) {
        tr->opt.bk->upload(tr->opt.m, m, (size_t)n * sizeof(float));
        tr->opt.bk->upload(tr->opt.v, v, (size_t)n * sizeof(float));
    }
    sft_close(s);
    free(path);
    return rc;
}

// Reads trainer_state.json, checking it belongs to a run with these options
// and data. Returns the step to continue from, or -1 + err.
static int64_t load_state(trainer *tr, const char *dir, err_t *err) {
    char *path = util_path_join(dir, "trainer_state.json");
    size_t len;
    char *text = path ? util_read_file(path, &len, err) : NULL;
    cJSON *o = text ? cJSON_ParseWithLength(text, len) : NULL;
    int64_t step = -1;
    json_ctx jc = {path, "", err};
    int64_t v[8];
    const char *seed = NULL;
    double best = NAN;
    if (!text) goto done;
    if (!o || !cJSON_IsObject(o)) {
        err_set(err, "%s: not a JSON object", path);
        goto done;
    }
    static const char *keys[] = {"step", "adam_step", "bad_evals", "n_params", "n_train", "batch_size",
                                 "grad_accum", "total_steps"};
    for (int i = 0; i < 8; i++)
        if (json_req_int(&jc, o, keys[i], 0, INT64_MAX, &v[i]) < 0) goto done;
    int64_t want[] = {-1, -1, -1, lt_n_params(tr->lt), tr->n_train, tr->c->batch_size, tr->c->grad_accum, tr->total};
    for (int i = 3; i < 8; i++)
        if (v[i] != want[i]) {
            err_set(err, "%s: %s is %" PRId64 ", this run has %" PRId64 " (resume with the same data and options)",
                    path, keys[i], v[i], want[i]);
            goto done;
        }
    if (json_opt_str(&jc, o, "seed", &seed) < 0) goto done;
    char sbuf[32];
    snprintf(sbuf, sizeof sbuf, "%" PRIu64, tr->c->seed);
    if (!seed || strcmp(seed, sbuf) != 0) {
        err_set(err, "%s: seed is %s, this run has %s", path, seed ? seed : "(none)", sbuf);
        goto done;
    }
    if (json_opt_num(&jc, o, "best_eval_loss", &best) < 0) goto done;
    int64_t best_step = -1;
    const cJSON *bs = json_field(o, "best_step");
    if (cJSON_IsNumber(bs)) best_step = (int64_t)bs->valuedouble;
    if (v[0] > tr->total) {
        err_set(err, "%s: step %" PRId64 " is past the run's %" PRId64 " steps", path, v[0], tr->total);
        goto done;
    }
    tr->opt.step = v[1];
    tr->bad_evals = (int)v[2];
    tr->best_eval = best;
    tr->best_step = best_step;
    step = v[0];
done:
    cJSON_Delete(o);
    free(text);
    free(path);
    return step;
}

static int64_t resume(trainer *tr, err_t *err) {
    const char *dir = tr->c->resume;
    int64_t step = load_state(tr, dir, err);
    if (step < 0 || load_params(tr, dir, err) < 0 || load_optimizer(tr, dir, err) < 0)
        return err_wrap(err, "--resume %s", dir);
    return step;
}

// ---- output ---------------------------------------------------------------------------------

static int write_adapter(trainer *tr, err_t *err) {
    if (tr->best && tr->best_step >= 0) lt_set_params(tr->lt, tr->best);
    char *tmp = util_dir_tmp_beside(tr->c->out, err);
    if (!tmp) return -1;
    int rc = lt_write_peft(tr->lt, &tr->lc, tmp, err);
    if (rc == 0) rc = util_dir_publish(tmp, tr->c->out, err);
    if (rc < 0) util_rm_rf(tmp);
    free(tmp);
    return rc;
}

static int has_gnuplot(void) {
    const char *path = getenv("PATH");
    if (!path) return 0;
    char buf[4096];
    for (const char *p = path; *p;) {
        const char *e = strchr(p, ':');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        snprintf(buf, sizeof buf, "%.*s/gnuplot", (int)n, p);
        if (access(buf, X_OK) == 0) return 1;
        p += n + (e ? 1 : 0);
    }
    return 0;
}

// Writes the (step, value) pairs of `field` in the metrics file to gp as
// gnuplot inline data (or counts them when gp is NULL); returns the count.
static int metric_points(FILE *in, const char *field, FILE *gp) {
    char line[1024];
    int n = 0;
    rewind(in);
    while (fgets(line, sizeof line, in)) {
        cJSON *o = cJSON_Parse(line);
        const cJSON *s = json_field(o, "step"), *v = json_field(o, field);
        if (cJSON_IsNumber(s) && cJSON_IsNumber(v)) {
            if (gp) fprintf(gp, "%g %.6g\n", s->valuedouble, v->valuedouble);
            n++;
        }
        cJSON_Delete(o);
    }
    if (gp) fprintf(gp, "e\n");
    return n;
}

// OUT.loss.png from the metrics file: training loss per logged step and
// validation loss per evaluation. Best effort: a missing gnuplot is noted.
static void plot_loss(trainer *tr) {
    FILE *log = tr->c->log;
    if (!has_gnuplot()) {
        fprintf(log, "info train: gnuplot not found; no loss plot\n");
        return;
    }
    char *png = concat(tr->c->out, ".loss.png");
    FILE *in = fopen(tr->metrics_path, "r");
    int n_train = in ? metric_points(in, "loss", NULL) : 0, n_eval = in ? metric_points(in, "eval_loss", NULL) : 0;
    FILE *gp = png && n_train > 0 ? popen("gnuplot", "w") : NULL;
    if (gp) {
        fprintf(gp, "set terminal pngcairo size 900,500 noenhanced\nset output '%s'\n", png);
        fprintf(gp, "set xlabel 'step'\nset ylabel 'loss'\nset grid\nset key top right\n");
        fprintf(gp, "plot '-' using 1:2 with lines lw 2 title 'train'%s\n",
                n_eval ? ", '-' using 1:2 with linespoints lw 2 title 'validation'" : "");
        metric_points(in, "loss", gp);
        if (n_eval) metric_points(in, "eval_loss", gp);
        if (pclose(gp) == 0) fprintf(log, "info train: loss plot %s\n", png);
        else fprintf(log, "warn train: gnuplot failed; no loss plot\n");
    }
    if (in) fclose(in);
    free(png);
}

// ---- logging ------------------------------------------------------------------------------

// Ends the progress bar's line, if one is open, before a log line.
static void bar_break(trainer *tr) {
    if (tr->bar_open) fputc('\n', tr->c->log);
    tr->bar_open = 0;
}

static void progress_bar(trainer *tr, int64_t step, const step_info *si, double tps) {
    int width = 30, done = (int)(width * step / (tr->total ? tr->total : 1));
    char bar[64];
    for (int i = 0; i < width; i++) bar[i] = i < done ? '=' : i == done ? '>' : ' ';
    bar[width] = '\0';
    fprintf(tr->c->log, "\r[%s] %" PRId64 "/%" PRId64 " epoch %.2f loss %.4f lr %.2e %.0f tok/s ", bar, step,
            tr->total, (double)step / (double)tr->steps_per_epoch, si->loss, si->lr, tps);
    fflush(tr->c->log);
    tr->bar_open = 1;
}

static void log_step(trainer *tr, int64_t step, const step_info *si) {
    tr->win_loss += si->loss;
    tr->win_steps++;
    tr->win_tokens += si->tokens;
    int last = step == tr->total;
    if (step % tr->c->logging_steps != 0 && !last) {
        if (tr->c->progress) progress_bar(tr, step, si, tr->bar_tps);
        return;
    }
    double t = util_now_s(), dt = t - tr->win_t0;
    double tps = dt > 0 ? (double)tr->win_tokens / dt : 0, loss = tr->win_loss / tr->win_steps;
    double epoch = (double)step / (double)tr->steps_per_epoch;
    tr->bar_tps = tps;
    if (tr->c->progress) progress_bar(tr, step, si, tps);
    else
        fprintf(tr->c->log,
                "info train: step=%" PRId64 "/%" PRId64 " epoch=%.2f loss=%.4f lr=%.3e grad_norm=%.4f tok/s=%.0f\n",
                step, tr->total, epoch, loss, si->lr, si->grad_norm, tps);
    fprintf(tr->metrics,
            "{\"step\": %" PRId64 ", \"epoch\": %.4f, \"loss\": %.6f, \"lr\": %.6e, \"grad_norm\": %.6f, "
            "\"tokens_per_s\": %.1f}\n",
            step, epoch, loss, si->lr, si->grad_norm, tps);
    fflush(tr->metrics);
    tr->win_loss = 0;
    tr->win_steps = 0;
    tr->win_tokens = 0;
    tr->win_t0 = t;
}

// Validation at step; early-stopping bookkeeping. Returns 1 to stop.
static int eval_and_track(trainer *tr, int64_t step, err_t *err) {
    double loss = NAN;
    double t0 = util_now_s();
    if (evaluate(tr, &loss, err) < 0) return -1;
    tr->last_eval = loss;
    int improved = isnan(tr->best_eval) || loss < tr->best_eval;
    if (improved) {
        tr->best_eval = loss;
        tr->best_step = step;
        tr->bad_evals = 0;
        if (tr->best) lt_get_params(tr->lt, tr->best);
    } else {
        tr->bad_evals++;
    }
    bar_break(tr);
    fprintf(tr->c->log, "info train: eval step=%" PRId64 " epoch=%.2f eval_loss=%.4f best=%.4f (step %" PRId64 ")\n",
            step, (double)step / (double)tr->steps_per_epoch, loss, tr->best_eval, tr->best_step);
    fprintf(tr->metrics, "{\"step\": %" PRId64 ", \"epoch\": %.4f, \"eval_loss\": %.6f}\n", step,
            (double)step / (double)tr->steps_per_epoch, loss);
    fflush(tr->metrics);
    tr->win_t0 += util_now_s() - t0; // evaluation time is not training throughput
    return tr->c->patience && tr->bad_evals >= tr->c->patience;
}

// ---- the loop -------------------------------------------------------------------------------

static int loop(trainer *tr, int64_t step, trainer_result *res, err_t *err) {
    const trainer_config *c = tr->c;
    int first = 1;
    // Step 0's evaluation is the untrained loss (B = 0: the base model's),
    // the start the validation curve is read against.
    if (tr->val && c->eval_on_start && step == 0 && eval_and_track(tr, 0, err) < 0) return -1;
    tr->win_t0 = util_now_s();
    while (step < tr->total) {
        step_info si;
        double t0 = util_now_s();
        if (train_step(tr, step, &si, err) < 0) return -1;
        step++;
        tr->run_train_s += util_now_s() - t0;
        tr->run_tokens += (double)si.tokens;
        if (first) res->first_loss = si.loss, first = 0;
        res->last_loss = si.loss;
        log_step(tr, step, &si);
        int epoch_end = step % tr->steps_per_epoch == 0;
        int stop = 0;
        if (tr->val && (c->eval_steps ? step % c->eval_steps == 0 || step == tr->total : epoch_end)) {
            if ((stop = eval_and_track(tr, step, err)) < 0) return -1;
        }
        if (c->save_steps && step % c->save_steps == 0 && save_checkpoint(tr, step, err) < 0) return -1;
        if (stop) {
            bar_break(tr);
            fprintf(c->log, "info train: early stop at step %" PRId64 ": no improvement in %d evaluations\n", step,
                    tr->bad_evals);
            tr->stopped_early = 1;
            break;
        }
        if (c->stop_after && step >= c->stop_after) break;
    }
    bar_break(tr);
    res->steps = step;
    return 0;
}

int trainer_run(model *m, const trainer_config *c, const data_set *train, const data_set *val,
                trainer_result *res, err_t *err) {
    trainer tr;
    memset(&tr, 0, sizeof tr);
    memset(res, 0, sizeof *res);
    res->first_loss = res->last_loss = res->best_eval = res->last_eval = NAN;
    double t0 = util_now_s();
    int rc = setup(&tr, m, c, train, val, err);
    int64_t step = 0;
    if (rc == 0 && c->resume && (step = resume(&tr, err)) < 0) rc = -1;
    if (rc == 0 && c->resume)
        fprintf(c->log, "info train: resumed from %s at step %" PRId64 " of %" PRId64 "\n", c->resume, step,
                tr.total);
    res->total_steps = tr.total;
    if (rc == 0) rc = loop(&tr, step, res, err);
    int stopped = rc == 0 && c->stop_after && res->steps < tr.total && !tr.stopped_early;
    if (rc == 0 && !stopped) rc = write_adapter(&tr, err);
    if (rc == 0 && !stopped && c->plot) plot_loss(&tr);
    res->best_eval = tr.best_eval;
    res->last_eval = tr.last_eval;
    res->stopped_early = tr.stopped_early;
    res->seconds = util_now_s() - t0;
    res->tokens_per_s = tr.run_train_s > 0 ? tr.run_tokens / tr.run_train_s : 0;
    teardown(&tr);
    return rc;
}
