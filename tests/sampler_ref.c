// sampler_ref: the host sampler as it was before sampling became a backend
// op (kernels/cpu/sample.c), kept unchanged as the reference that
// tests/test_sampler.c and bench/sampler.c measure the new one against. It
// computes a double-precision exp over the whole vocabulary on every call.
// Not linked into serve.
#include "sampler_ref.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

// A candidate token during filtering: its unnormalised probability
// exp((logit - max) / temperature), so the most likely has p == 1.
typedef struct cand {
    float p;
    int32_t id;
} cand;

struct sref_state {
    int vocab;
    util_rng rng;
    int64_t generated;
    uint32_t *count;   // vocab: times generated
    uint8_t *seen;     // vocab: SEEN_PROMPT | SEEN_OUTPUT
    int32_t *touched;  // the distinct tokens with seen != 0, in first-seen order
    int n_touched;
    cand *cand;        // vocab: filter scratch
};

enum { SEEN_PROMPT = 1, SEEN_OUTPUT = 2 };

static int check_ids(const char *field, const int32_t *ids, size_t stride, int n, int vocab, err_t *err) {
    for (int i = 0; i < n; i++) {
        int32_t id = *(const int32_t *)((const char *)ids + (size_t)i * stride);
        if (id < 0 || id >= vocab)
            return err_set(err, "%s[%d]: token id %d outside the vocabulary [0, %d)", field, i, (int)id, vocab);
    }
    return 0;
}

// ---- state ---------------------------------------------------------------------

sref_state *sref_state_new(int vocab, uint64_t seed, err_t *err) {
    if (vocab <= 0) {
        err_set(err, "sampler: vocabulary size %d", vocab);
        return NULL;
    }
    sref_state *st = calloc(1, sizeof *st);
    if (st) {
        st->vocab = vocab;
        st->count = calloc((size_t)vocab, sizeof *st->count);
        st->seen = calloc((size_t)vocab, 1);
        st->touched = malloc((size_t)vocab * sizeof *st->touched);
        st->cand = malloc((size_t)vocab * sizeof *st->cand);
    }
    if (!st || !st->count || !st->seen || !st->touched || !st->cand) {
        sref_state_free(st);
        err_set(err, "sampler: out of memory for a vocabulary of %d", vocab);
        return NULL;
    }
    util_rng_seed(&st->rng, seed);
    return st;
}

void sref_state_free(sref_state *st) {
    if (!st) return;
    free(st->count);
    free(st->seen);
    free(st->touched);
    free(st->cand);
    free(st);
}

static void mark(sref_state *st, int32_t t, uint8_t how) {
    if (!st->seen[t]) st->touched[st->n_touched++] = t;
    st->seen[t] |= how;
}

int sref_state_prompt(sref_state *st, const int32_t *ids, int n, err_t *err) {
    if (check_ids("prompt", ids, sizeof(int32_t), n, st->vocab, err)) return -1;
    for (int i = 0; i < n; i++) mark(st, ids[i], SEEN_PROMPT);
    return 0;
}

void sref_state_append(sref_state *st, int32_t token) {
    if (token < 0 || token >= st->vocab) return;
    mark(st, token, SEEN_OUTPUT);
    st->count[token]++;
    st->generated++;
}

int64_t sref_state_generated(const sref_state *st) { return st->generated; }

// ---- steps 1-3: penalties and bias -----------------------------------------------

// logits (V) -> logits (V), in place, over the tokens seen so far only.
static void apply_penalties(const sref_state *st, const sampler_params *p, float *logits) {
    float rep = p->repetition_penalty;
    for (int i = 0; i < st->n_touched; i++) {
        int32_t t = st->touched[i];
        float l = logits[t];
        if (rep != 1.0f) l = l < 0 ? l * rep : l / rep;  // HF: shrink toward "less likely" either sign
        if (st->count[t] > 0) l -= p->presence_penalty + p->frequency_penalty * (float)st->count[t];
        logits[t] = l;
    }
}

static void apply_bias(const sampler_params *p, float *logits) {
    for (int i = 0; i < p->n_logit_bias; i++) logits[p->logit_bias[i].token] += p->logit_bias[i].bias;
}

// ---- logprobs ------------------------------------------------------------------

// Max and argmax (lowest id on ties) of logits (V). NaN becomes -inf and
// +inf the largest float first, so that exp(l - max) stays defined.
static float max_logit(float *logits, int V, int *argmax) {
    float m = -INFINITY;
    *argmax = -1;
    for (int i = 0; i < V; i++) {
        if (isnan(logits[i])) logits[i] = -INFINITY;
        if (logits[i] == INFINITY) logits[i] = FLT_MAX;
        if (logits[i] > m) {
            m = logits[i];
            *argmax = i;
        }
    }
    return m;
}

// log(sum(exp(logits))) with the max m factored out.
static double log_sum_exp(const float *logits, int V, float m) {
    double s = 0;
    for (int i = 0; i < V; i++) s += exp((double)logits[i] - m);
    return m + log(s);
}

// The k most likely tokens of logits (V) into top, sorted (ties: lower id).
static void top_logprobs(const float *logits, int V, int k, double lse, sampler_logprob *top) {
    if (k <= 0) return;
    int n = 0;
    for (int i = 0; i < V; i++) {
        float l = logits[i];
        if (n == k && !(l > top[n - 1].logprob)) continue;  // strict: earlier (lower) ids win ties
        int j = n < k ? n++ : k - 1;
        while (j > 0 && l > top[j - 1].logprob) {
            top[j] = top[j - 1];
            j--;
        }
        top[j] = (sampler_logprob){i, l};
    }
    for (int j = 0; j < n; j++) top[j].logprob = (float)(top[j].logprob - lse);
}

// ---- steps 5-6: filters and the draw -----------------------------------------------

static int better(const cand *a, const cand *b) { return a->p > b->p || (a->p == b->p && a->id < b->id); }

// Reorders c[0..n) so that c[0..k) hold the k best candidates, in no
// particular order (Hoare quickselect on the strict order `better`).
static void select_best(cand *c, int n, int k) {
    int lo = 0, hi = n - 1, want = k - 1;
    while (lo < hi) {
        cand pivot = c[lo + (hi - lo) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (better(&c[i], &pivot)) i++;
            while (better(&pivot, &c[j])) j--;
            if (i <= j) {
                cand tmp = c[i];
                c[i++] = c[j];
                c[j--] = tmp;
            }
        }
        if (want <= j) hi = j;
        else if (want >= i) lo = i;
        else break;
    }
}

static int cand_cmp(const void *a, const void *b) { return better(a, b) ? -1 : better(b, a) ? 1 : 0; }

static double sum_p(const cand *c, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) s += c[i].p;
    return s;
}

// The smallest most-likely prefix of c[0..n) whose mass reaches top_p of
// the total (the token that crosses the line is kept, as HF and vLLM keep
// it). Sorts only a growing head of the candidates, not all of them.
static int top_p_count(cand *c, int n, float top_p) {
    double need = top_p * sum_p(c, n);
    for (int head = n < 64 ? n : 64;; head = head * 4 < n ? head * 4 : n) {
        select_best(c, n, head);
        qsort(c, (size_t)head, sizeof *c, cand_cmp);
        double acc = 0;
        for (int j = 0; j < head; j++) {
            acc += c[j].p;
            if (acc >= need) return j + 1;
        }
        if (head == n) return n;  // rounding left the sum a hair short: keep all
    }
}

// min_p: keep p >= min_p * p_max, and p_max is 1 by construction.
static int min_p_filter(cand *c, int n, float min_p) {
    int kept = 0;
    for (int i = 0; i < n; i++)
        if (c[i].p >= min_p) c[kept++] = c[i];
    return kept;
}

// Temperature, the filters and the draw; logits (V) after steps 1-3, m its max.
static int32_t sample_filtered(sref_state *st, const sampler_params *p, const float *logits, int V, float m,
                               double u) {
    cand *c = st->cand;
    float inv_t = 1.0f / p->temperature;
    int n = 0;
    for (int i = 0; i < V; i++)
        if (logits[i] > -INFINITY) c[n++] = (cand){expf((logits[i] - m) * inv_t), i};
    if (p->top_k > 0 && p->top_k < n) {
        select_best(c, n, p->top_k);
        n = p->top_k;
    }
    if (p->top_p < 1.0f) n = top_p_count(c, n, p->top_p);
    if (p->min_p > 0.0f) n = min_p_filter(c, n, p->min_p);
    double target = u * sum_p(c, n), acc = 0;
    for (int i = 0; i < n; i++) {
        acc += c[i].p;
        if (acc > target) return c[i].id;
    }
    for (int i = n - 1; i > 0; i--)  // u * sum rounded up past the last step
        if (c[i].p > 0) return c[i].id;
    return c[0].id;
}

// ---- the step ------------------------------------------------------------------

static int is_stop(const sampler_params *p, int32_t t) {
    for (int i = 0; i < p->n_stop_ids; i++)
        if (p->stop_ids[i] == t) return 1;
    return 0;
}

// The old sampler_sample with the draw u given (it does not touch the RNG).
int sref_sample_u(sref_state *st, const sampler_params *p, float *logits, int vocab, double u, sampler_result *out) {
    if (vocab != st->vocab) return -1;
    int argmax;
    if (max_logit(logits, vocab, &argmax) == -INFINITY) return -1;  // cleans NaN before penalties
    apply_penalties(st, p, logits);
    apply_bias(p, logits);
    float m = max_logit(logits, vocab, &argmax);
    if (m == -INFINITY) return -1;
    double lse = log_sum_exp(logits, vocab, m);
    out->n_top = p->top_logprobs < vocab ? p->top_logprobs : vocab;
    top_logprobs(logits, vocab, out->n_top, lse, out->top);

    int greedy = p->temperature < SAMPLER_GREEDY_BELOW;
    int32_t tok = greedy ? argmax : sample_filtered(st, p, logits, vocab, m, u);
    out->token = tok;
    out->logprob = (float)(logits[tok] - lse);
    out->finish = is_stop(p, tok) ? SAMPLER_FINISH_STOP : SAMPLER_FINISH_NONE;
    sref_state_append(st, tok);
    return tok;
}

// The old sampler_sample: one draw per token, greedy or not, so the RNG
// stream of a sequence depends only on how many tokens it has sampled.
int sref_sample(sref_state *st, const sampler_params *p, float *logits, int vocab, sampler_result *out) {
    if (vocab != st->vocab) return -1;
    return sref_sample_u(st, p, logits, vocab, util_rng_uniform(&st->rng), out);
}
