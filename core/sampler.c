#include "sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct sampler_state {
    int vocab;
    util_rng rng;
    int64_t generated;
    int32_t *index;       // vocab: 1 + the token's place in seen; 0 = not seen yet
    bk_sample_seen *seen; // the distinct tokens of prompt and output, in first-seen order
    int n_seen;
};

// ---- parameters ----------------------------------------------------------------

sampler_params sampler_params_default(void) {
    return (sampler_params){.temperature = 1.0f, .top_p = 1.0f, .repetition_penalty = 1.0f, .want_logprob = 1};
}

static int in_range(float v, float lo, float hi) { return v >= lo && v <= hi; }  // false for NaN

static int check_ids(const char *field, const int32_t *ids, size_t stride, int n, int vocab, err_t *err) {
    for (int i = 0; i < n; i++) {
        int32_t id = *(const int32_t *)((const char *)ids + (size_t)i * stride);
        if (id < 0 || id >= vocab)
            return err_set(err, "%s[%d]: token id %d outside the vocabulary [0, %d)", field, i, (int)id, vocab);
    }
    return 0;
}

int sampler_params_check(const sampler_params *p, int vocab, err_t *err) {
    if (!in_range(p->temperature, 0, 2)) return err_set(err, "temperature must be in [0, 2], got %g", p->temperature);
    if (!(p->top_p > 0 && p->top_p <= 1)) return err_set(err, "top_p must be in (0, 1], got %g", p->top_p);
    if (p->top_k < -1) return err_set(err, "top_k must be -1 or 0 (off) or a positive count, got %d", p->top_k);
    if (!in_range(p->min_p, 0, 1)) return err_set(err, "min_p must be in [0, 1], got %g", p->min_p);
    if (!in_range(p->presence_penalty, -2, 2))
        return err_set(err, "presence_penalty must be in [-2, 2], got %g", p->presence_penalty);
    if (!in_range(p->frequency_penalty, -2, 2))
        return err_set(err, "frequency_penalty must be in [-2, 2], got %g", p->frequency_penalty);
    if (!(p->repetition_penalty > 0 && p->repetition_penalty <= 2))
        return err_set(err, "repetition_penalty must be in (0, 2], got %g", p->repetition_penalty);
    if (!(p->top_logprobs >= 0 && p->top_logprobs <= SAMPLER_MAX_TOP_LOGPROBS))
        return err_set(err, "top_logprobs must be in [0, %d], got %d", SAMPLER_MAX_TOP_LOGPROBS, p->top_logprobs);
    if (p->n_logit_bias < 0 || p->n_logit_bias > 1024 || (p->n_logit_bias > 0 && !p->logit_bias))
        return err_set(err, "logit_bias must have at most 1024 entries, got %d", p->n_logit_bias);
    if (p->n_stop_ids < 0 || p->n_stop_ids > 1024 || (p->n_stop_ids > 0 && !p->stop_ids))
        return err_set(err, "stop token ids: at most 1024, got %d", p->n_stop_ids);
    for (int i = 0; i < p->n_logit_bias; i++)
        if (!in_range(p->logit_bias[i].bias, -100, 100))
            return err_set(err, "logit_bias[%d] (token %d) must be in [-100, 100], got %g", i,
                           (int)p->logit_bias[i].token, p->logit_bias[i].bias);
    if (p->n_logit_bias > 0 &&
        check_ids("logit_bias", &p->logit_bias[0].token, sizeof(sampler_bias), p->n_logit_bias, vocab, err))
        return -1;
    return check_ids("stop token ids", p->stop_ids, sizeof(int32_t), p->n_stop_ids, vocab, err);
}

// ---- state ---------------------------------------------------------------------

sampler_state *sampler_state_new(int vocab, uint64_t seed, err_t *err) {
    if (vocab <= 0) {
        err_set(err, "sampler: vocabulary size %d", vocab);
        return NULL;
    }
    sampler_state *st = calloc(1, sizeof *st);
    if (st) {
        st->vocab = vocab;
        st->index = calloc((size_t)vocab, sizeof *st->index);
        st->seen = malloc((size_t)vocab * sizeof *st->seen);
    }
    if (!st || !st->index || !st->seen) {
        sampler_state_free(st);
        err_set(err, "sampler: out of memory for a vocabulary of %d", vocab);
        return NULL;
    }
    util_rng_seed(&st->rng, seed);
    return st;
}

void sampler_state_free(sampler_state *st) {
    if (!st) return;
    free(st->index);
    free(st->seen);
    free(st);
}

// The seen entry of token t, added on first sight.
static bk_sample_seen *seen_entry(sampler_state *st, int32_t t) {
    if (!st->index[t]) {
        st->seen[st->n_seen] = (bk_sample_seen){t, 0, 0};
        st->index[t] = ++st->n_seen;
    }
    return &st->seen[st->index[t] - 1];
}

int sampler_state_prompt(sampler_state *st, const int32_t *ids, int n, err_t *err) {
    if (check_ids("prompt", ids, sizeof(int32_t), n, st->vocab, err)) return -1;
    for (int i = 0; i < n; i++) seen_entry(st, ids[i])->in_prompt = 1;
    return 0;
}

void sampler_state_append(sampler_state *st, int32_t token) {
    if (token < 0 || token >= st->vocab) return;
    seen_entry(st, token)->count++;
    st->generated++;
}

int64_t sampler_state_generated(const sampler_state *st) { return st->generated; }

// ---- sampling --------------------------------------------------------------------

// The op's arguments for one row; u is the row's draw.
static bk_sample_row make_row(const sampler_state *st, const sampler_params *p, const uint32_t *allowed, double u) {
    return (bk_sample_row){
        .temperature = p->temperature,
        .top_k = p->top_k,
        .top_p = p->top_p,
        .min_p = p->min_p,
        .repetition_penalty = p->repetition_penalty,
        .presence_penalty = p->presence_penalty,
        .frequency_penalty = p->frequency_penalty,
        .seen = st->seen,
        .n_seen = st->n_seen,
        .bias = p->logit_bias,
        .n_bias = p->n_logit_bias,
        .allowed = allowed,
        .u = u,
        .top_logprobs = p->top_logprobs,
        .want_logprob = p->want_logprob,
    };
}

static int is_stop(const sampler_params *p, int32_t t) {
    for (int i = 0; i < p->n_stop_ids; i++)
        if (p->stop_ids[i] == t) return 1;
    return 0;
}

// The op's answer into *out; records the token, or on failure puts the
// RNG back as it was before the draw (saved).
static int finish_row(sampler_state *st, const sampler_params *p, const bk_sample_out *o, const util_rng *saved,
                      sampler_result *out) {
    out->token = o->token;
    out->logprob = o->logprob;
    out->n_top = o->n_top;
    memcpy(out->top, o->top, (size_t)o->n_top * sizeof *out->top);
    out->finish = SAMPLER_FINISH_NONE;
    if (o->token < 0) {
        st->rng = *saved;
        return -1;
    }
    out->finish = is_stop(p, o->token) ? SAMPLER_FINISH_STOP : SAMPLER_FINISH_NONE;
    sampler_state_append(st, o->token);
    return o->token;
}

// One draw per token, greedy or not, so the RNG stream of a sequence
// depends only on how many tokens it has sampled.
int sampler_sample(sampler_state *st, const sampler_params *p, float *logits, int vocab, sampler_result *out) {
    if (vocab != st->vocab) return -1;
    util_rng saved = st->rng;
    bk_sample_row row = make_row(st, p, NULL, util_rng_uniform(&st->rng));
    bk_sample_out o;
    bk_cpu()->sample(logits, 1, vocab, &row, &o);
    return finish_row(st, p, &o, &saved, out);
}

// Up to SAMPLER_BATCH_ROWS rows in one op call.
static void sample_chunk(const bk_ops *bk, float *logits, int n, int vocab, const sampler_job *jobs,
                         sampler_result *out) {
    bk_sample_row rows[SAMPLER_BATCH_ROWS];
    bk_sample_out res[SAMPLER_BATCH_ROWS];
    util_rng saved[SAMPLER_BATCH_ROWS];
    if (n <= 0) return;
    for (int i = 0; i < n; i++) {
        sampler_state *st = jobs[i].st;
        saved[i] = st->rng;
        rows[i] = make_row(st, jobs[i].p, jobs[i].allowed, util_rng_uniform(&st->rng));
        if (st->vocab != vocab) // refused below; meanwhile the cheapest row that reads nothing of st
            rows[i] = (bk_sample_row){.temperature = 0, .repetition_penalty = 1, .top_p = 1};
    }
    bk->sample(logits, n, vocab, rows, res);
    for (int i = 0; i < n; i++) {
        if (jobs[i].st->vocab != vocab) res[i].token = -1;
        finish_row(jobs[i].st, jobs[i].p, &res[i], &saved[i], &out[i]);
    }
}

void sampler_sample_batch(const bk_ops *bk, float *logits, int n, int vocab, const sampler_job *jobs,
                          sampler_result *out) {
    for (int i = 0; i < n; i += SAMPLER_BATCH_ROWS) {
        int k = n - i < SAMPLER_BATCH_ROWS ? n - i : SAMPLER_BATCH_ROWS;
        sample_chunk(bk, logits + (size_t)i * (size_t)vocab, k, vocab, jobs + i, out + i);
    }
}
