// sampler: greedy and its limits (temperature -> 0, top_k 1, tiny top_p),
// seeded reproducibility independent of other sequences, the filters against
// brute force, the sampled distribution against softmax (chi-square), the
// penalty and bias arithmetic on hand-made logits, logprobs, stop ids, and
// parameter validation naming the field; then the backend op against the
// previous sampler (tests/sampler_ref.c): greedy, the same draw u, the
// distribution of u over tokens, logprobs, the allowed bitset, the batch.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/sampler.h"
#include "../core/util.h"
#include "check.h"
#include "sampler_ref.h"

// Samples once from a copy of logits (sampler_sample modifies its input).
static int sample_copy(sampler_state *st, const sampler_params *p, const float *logits, int V, sampler_result *r) {
    float *l = malloc(sizeof(float) * (size_t)V);
    memcpy(l, logits, sizeof(float) * (size_t)V);
    int t = sampler_sample(st, p, l, V, r);
    free(l);
    return t;
}

static void random_logits(util_rng *rng, float *l, int V, double scale) {
    for (int i = 0; i < V; i++) l[i] = (float)(scale * util_rng_normal(rng));
}

static int argmax(const float *l, int V) {
    int best = 0;
    for (int i = 1; i < V; i++)
        if (l[i] > l[best]) best = i;
    return best;
}

// ---- validation --------------------------------------------------------------------

static void expect_bad(sampler_params p, const char *words) {
    err_t err = {0};
    CHECK(sampler_params_check(&p, 100, &err) != 0 && strstr(err.msg, words), "want '%s', got '%s'", words, err.msg);
}

static void test_params_check(void) {
    err_t err = {0};
    sampler_params d = sampler_params_default(), p;
    CHECK(sampler_params_check(&d, 100, &err) == 0, "%s", err.msg);
    p = d, p.temperature = 3;
    expect_bad(p, "temperature must be in [0, 2], got 3");
    p = d, p.temperature = NAN;
    expect_bad(p, "temperature must be in [0, 2]");
    p = d, p.top_p = 0;
    expect_bad(p, "top_p must be in (0, 1], got 0");
    p = d, p.top_k = -2;
    expect_bad(p, "top_k must be");
    p = d, p.min_p = 1.5f;
    expect_bad(p, "min_p must be in [0, 1]");
    p = d, p.presence_penalty = 2.5f;
    expect_bad(p, "presence_penalty must be in [-2, 2]");
    p = d, p.frequency_penalty = -3;
    expect_bad(p, "frequency_penalty must be in [-2, 2]");
    p = d, p.repetition_penalty = 0;
    expect_bad(p, "repetition_penalty must be in (0, 2]");
    p = d, p.top_logprobs = 21;
    expect_bad(p, "top_logprobs must be in [0, 20], got 21");
    sampler_bias b[2] = {{5, 1}, {7, 101}};
    p = d, p.logit_bias = b, p.n_logit_bias = 2;
    expect_bad(p, "logit_bias[1] (token 7) must be in [-100, 100], got 101");
    b[1] = (sampler_bias){100, 1};
    expect_bad(p, "logit_bias[1]: token id 100 outside the vocabulary [0, 100)");
    int32_t stops[2] = {2, -1};
    p = d, p.stop_ids = stops, p.n_stop_ids = 2;
    expect_bad(p, "stop token ids[1]: token id -1");
    p = d, p.top_k = -1, p.temperature = 0, p.top_logprobs = 20, p.min_p = 1, p.repetition_penalty = 2;
    CHECK(sampler_params_check(&p, 100, &err) == 0, "edges of every range accepted: %s", err.msg);

    CHECK(sampler_state_new(0, 1, &err) == NULL && strstr(err.msg, "vocabulary"), "%s", err.msg);
    sampler_state *st = sampler_state_new(10, 1, &err);
    int32_t prompt[3] = {1, 10, 2};
    CHECK(sampler_state_prompt(st, prompt, 3, &err) != 0 && strstr(err.msg, "prompt[1]"), "%s", err.msg);
    sampler_state_free(st);
}

// ---- greedy and its limits -------------------------------------------------------------

static void test_greedy(void) {
    err_t err = {0};
    sampler_state *st = sampler_state_new(10, 5, &err);
    sampler_params p = sampler_params_default();
    p.temperature = 0;
    float l[10] = {0, 1, 2, 5, -1, 5, 0, 3, NAN, 4};
    sampler_result r;
    CHECK(sample_copy(st, &p, l, 10, &r) == 3 && r.token == 3, "lowest id wins the tie: %d", r.token);
    CHECK(sampler_state_generated(st) == 1);
    // NaN counts as -inf; all non-finite yields -1 and records nothing.
    float bad[10];
    for (int i = 0; i < 10; i++) bad[i] = i % 2 ? NAN : -INFINITY;
    CHECK(sample_copy(st, &p, bad, 10, &r) == -1 && sampler_state_generated(st) == 1);
    CHECK(sample_copy(st, &p, l, 9, &r) == -1, "vocab mismatch refused");
    // Below 1e-5 a temperature is greedy: no overflow of 1/T, ties to the lower id.
    p.temperature = 1e-30f;
    int same = 1;
    for (int i = 0; i < 20; i++) same &= sample_copy(st, &p, l, 10, &r) == 3;
    CHECK(same, "temperature 1e-30 is greedy");
    sampler_state_free(st);
}

// temperature -> 0, top_k = 1 and a tiny top_p all reduce to greedy.
static void test_greedy_limits(void) {
    err_t err = {0};
    util_rng rng;
    util_rng_seed(&rng, 99);
    sampler_state *st = sampler_state_new(200, 7, &err);
    float l[200];
    int bad_t = 0, bad_k = 0, bad_p = 0, bad_minp = 0;
    for (int trial = 0; trial < 300; trial++) {
        random_logits(&rng, l, 200, 2.0);
        int want = argmax(l, 200);
        if (trial % 10 == 0 && want < 199) l[want + 1] = l[want];  // a tied max: the lower id wins
        sampler_params p = sampler_params_default();
        sampler_result r;
        p.temperature = 1e-4f;
        // A random row's runner-up is rarely within 1e-3 of the max; where it is,
        // the limit is not yet reached, so only rows with a clear max count.
        float second = -INFINITY;
        for (int i = 0; i < 200; i++)
            if (i != want && l[i] > second) second = l[i];
        int clear = l[want] - second > 0.01f;
        if (clear) bad_t += sample_copy(st, &p, l, 200, &r) != want;
        p.temperature = 1.5f;
        p.top_k = 1;
        bad_k += sample_copy(st, &p, l, 200, &r) != want;
        p.top_k = 0;
        p.top_p = 1e-6f;
        bad_p += sample_copy(st, &p, l, 200, &r) != want;
        p.top_p = 1;
        p.min_p = 1;  // keeps every token as likely as the max: all tied ones
        if (clear) bad_minp += sample_copy(st, &p, l, 200, &r) != want;
    }
    CHECK(bad_t == 0 && bad_k == 0 && bad_p == 0 && bad_minp == 0, "T->0 %d, top_k=1 %d, top_p tiny %d, min_p=1 %d",
          bad_t, bad_k, bad_p, bad_minp);
    sampler_state_free(st);
}

// ---- reproducibility -----------------------------------------------------------------

static void test_seed_reproducible(void) {
    err_t err = {0};
    util_rng rng;
    util_rng_seed(&rng, 3);
    enum { V = 50, N = 64 };
    float rows[N][V];
    for (int i = 0; i < N; i++) random_logits(&rng, rows[i], V, 1.0);
    sampler_params p = sampler_params_default();
    p.temperature = 1.2f;
    p.top_p = 0.95f;
    p.frequency_penalty = 0.3f;
    int alone[N], mixed[N];
    sampler_result r;
    sampler_state *a = sampler_state_new(V, 42, &err);
    for (int i = 0; i < N; i++) alone[i] = sample_copy(a, &p, rows[i], V, &r);
    sampler_state_free(a);
    // The same seed, now interleaved with two other sequences (another seed
    // and a greedy one), as in a batch: the same tokens.
    a = sampler_state_new(V, 42, &err);
    sampler_state *b = sampler_state_new(V, 43, &err), *g = sampler_state_new(V, 42, &err);
    sampler_params pg = sampler_params_default();
    pg.temperature = 0;
    for (int i = 0; i < N; i++) {
        sample_copy(b, &p, rows[N - 1 - i], V, &r);
        sample_copy(g, &pg, rows[i], V, &r);
        mixed[i] = sample_copy(a, &p, rows[i], V, &r);
    }
    CHECK(memcmp(alone, mixed, sizeof alone) == 0, "seeded sequence changed with batch company");
    sampler_state_free(b);
    b = sampler_state_new(V, 43, &err);
    int diff = 0;
    for (int i = 0; i < N; i++) diff += sample_copy(b, &p, rows[i], V, &r) != alone[i];
    CHECK(diff > 0, "a different seed gives a different sequence");
    sampler_state_free(a);
    sampler_state_free(b);
    sampler_state_free(g);
}

// ---- distribution --------------------------------------------------------------------

// Chi-square of N draws against softmax(logits / T) restricted to `keep`
// (NULL = all), on a vocabulary of 8, divided by its 0.999 quantile for
// cells - 1 degrees of freedom: a fair sampler exceeds 1 once in a thousand
// seeds, and with a fixed seed the number is fixed.
static double chi_square(const float *logits, const sampler_params *p, const int *keep, uint64_t seed, int *outside) {
    static const double q999[8] = {0, 10.83, 13.82, 16.27, 18.47, 20.52, 22.46, 24.32};
    enum { V = 8, N = 100000 };
    err_t err = {0};
    sampler_state *st = sampler_state_new(V, seed, &err);
    double want[V], z = 0;
    for (int i = 0; i < V; i++) z += want[i] = (!keep || keep[i]) ? exp(logits[i] / p->temperature) : 0;
    int obs[V] = {0};
    sampler_result r;
    for (int n = 0; n < N; n++) {
        float l[V];
        memcpy(l, logits, sizeof l);
        obs[sampler_sample(st, p, l, V, &r)]++;
    }
    double chi = 0;
    int cells = 0;
    *outside = 0;
    for (int i = 0; i < V; i++) {
        double e = want[i] / z * N;
        if (e == 0) {
            *outside += obs[i];
            continue;
        }
        chi += (obs[i] - e) * (obs[i] - e) / e;
        cells++;
    }
    sampler_state_free(st);
    return chi / q999[cells - 1];
}

static void test_distribution_matches_softmax(void) {
    const double probs[8] = {0.3, 0.2, 0.15, 0.1, 0.1, 0.08, 0.05, 0.02};
    float l[8];
    for (int i = 0; i < 8; i++) l[i] = (float)log(probs[i]);
    sampler_params p = sampler_params_default();
    int outside;
    double chi = chi_square(l, &p, NULL, 11, &outside);
    CHECK(chi < 1, "T=1: chi2 %.2f", chi);
    printf("chi2 / its 0.999 quantile (100000 draws): T=1 %.2f", chi);
    p.temperature = 0.5f;
    chi = chi_square(l, &p, NULL, 12, &outside);
    CHECK(chi < 1, "T=0.5: chi2 %.2f", chi);
    printf(", T=0.5 %.2f", chi);
    p.temperature = 1;
    p.top_k = 3;
    int k3[8] = {1, 1, 1, 0, 0, 0, 0, 0};
    chi = chi_square(l, &p, k3, 13, &outside);
    CHECK(chi < 1 && outside == 0, "top_k 3: chi2 %.2f, %d outside", chi, outside);
    printf(", top_k=3 %.2f", chi);
    // top_p 0.6: 0.3 + 0.2 = 0.5 < 0.6, + 0.15 crosses: three kept.
    p.top_k = 0;
    p.top_p = 0.6f;
    chi = chi_square(l, &p, k3, 14, &outside);
    CHECK(chi < 1 && outside == 0, "top_p 0.6: chi2 %.2f, %d outside", chi, outside);
    printf(", top_p=0.6 %.2f", chi);
    // min_p 0.3: keep p >= 0.09: the first five.
    p.top_p = 1;
    p.min_p = 0.3f;
    int m5[8] = {1, 1, 1, 1, 1, 0, 0, 0};
    chi = chi_square(l, &p, m5, 15, &outside);
    CHECK(chi < 1 && outside == 0, "min_p 0.3: chi2 %.2f, %d outside", chi, outside);
    printf(", min_p=0.3 %.2f\n", chi);
}

// Brute force: the set the filters should keep, from a full sort.
static int desc_by_logit(const void *a, const void *b, const float *l) {
    int x = *(const int *)a, y = *(const int *)b;
    return l[x] > l[y] ? -1 : l[x] < l[y] ? 1 : x - y;
}
static const float *sort_logits;
static int cmp_sort(const void *a, const void *b) { return desc_by_logit(a, b, sort_logits); }

static void expected_keep(const float *l, int V, const sampler_params *p, int *keep) {
    int *order = malloc(sizeof(int) * (size_t)V);
    for (int i = 0; i < V; i++) order[i] = i;
    sort_logits = l;
    qsort(order, (size_t)V, sizeof(int), cmp_sort);
    int n = p->top_k > 0 && p->top_k < V ? p->top_k : V;
    double z = 0, acc = 0, pmax = exp((double)l[order[0]] / p->temperature);
    for (int i = 0; i < n; i++) z += exp((double)l[order[i]] / p->temperature);
    int np = n;
    for (int i = 0; i < n; i++) {
        acc += exp((double)l[order[i]] / p->temperature) / z;
        if (acc >= p->top_p) {
            np = i + 1;
            break;
        }
    }
    memset(keep, 0, sizeof(int) * (size_t)V);
    for (int i = 0; i < np; i++) keep[order[i]] = exp((double)l[order[i]] / p->temperature) >= p->min_p * pmax;
    free(order);
}

static void check_filters(int V, double scale, int top_k, float top_p, float min_p, uint64_t seed) {
    err_t err = {0};
    util_rng rng;
    util_rng_seed(&rng, seed);
    float *l = malloc(sizeof(float) * (size_t)V);
    int *keep = malloc(sizeof(int) * (size_t)V), *hit = calloc((size_t)V, sizeof(int));
    random_logits(&rng, l, V, scale);
    sampler_params p = sampler_params_default();
    p.top_k = top_k, p.top_p = top_p, p.min_p = min_p, p.temperature = 0.8f;
    expected_keep(l, V, &p, keep);
    sampler_state *st = sampler_state_new(V, seed, &err);
    sampler_result r;
    int outside = 0, kept = 0, distinct = 0;
    for (int i = 0; i < V; i++) kept += keep[i];
    int draws = V > 1000 ? 300 : 3000;  // sanitized builds are slow on big vocabularies
    for (int n = 0; n < draws; n++) {
        int t = sample_copy(st, &p, l, V, &r);
        outside += !keep[t];
        distinct += !hit[t]++;
    }
    CHECK(outside == 0, "V %d top_k %d top_p %g min_p %g: %d draws outside the %d kept", V, top_k, top_p, min_p,
          outside, kept);
    CHECK(distinct > 1 || kept == 1, "draws vary");
    sampler_state_free(st);
    free(l);
    free(keep);
    free(hit);
}

static void test_filters_match_brute_force(void) {
    check_filters(1000, 2.0, 37, 1.0f, 0.0f, 1);
    check_filters(1000, 2.0, 0, 0.8f, 0.0f, 2);
    check_filters(1000, 2.0, 100, 0.5f, 0.05f, 3);
    check_filters(20000, 0.3, 0, 0.9f, 0.0f, 4);  // nucleus of thousands: the sorted head grows
    check_filters(20000, 0.3, 5000, 0.7f, 0.5f, 5);
    check_filters(50, 1.0, 0, 1.0f, 0.2f, 6);
}

// ---- penalties, bias, logprobs, stop ------------------------------------------------------

static void test_penalty_arithmetic(void) {
    err_t err = {0};
    sampler_state *st = sampler_state_new(6, 1, &err);
    int32_t prompt[3] = {0, 1, 0};
    CHECK(sampler_state_prompt(st, prompt, 3, &err) == 0);
    sampler_state_append(st, 2);
    sampler_state_append(st, 2);
    sampler_state_append(st, 3);
    sampler_state_append(st, 0);
    sampler_bias bias[1] = {{4, 10}};
    sampler_params p = sampler_params_default();
    p.temperature = 0;
    p.repetition_penalty = 2;
    p.presence_penalty = 0.5f;
    p.frequency_penalty = 0.25f;
    p.logit_bias = bias;
    p.n_logit_bias = 1;
    float l[6] = {2, -2, 1, 0.5f, -1, 3};
    sampler_result r;
    CHECK(sampler_sample(st, &p, l, 6, &r) == 4);
    // t0: prompt + generated once: 2/2 - 0.5 - 0.25; t1: prompt only: -2*2;
    // t2: twice: 1/2 - 0.5 - 0.5; t3: once: 0.5/2 - 0.75; t4: bias; t5: untouched.
    const float want[6] = {0.25f, -4, -0.5f, -0.5f, 9, 3};
    for (int i = 0; i < 6; i++) CHECK(l[i] == want[i], "logit %d: %g, want %g", i, l[i], want[i]);
    CHECK(sampler_state_generated(st) == 5);
    // The sampled token now counts too: t4 generated once, so next time
    // it pays presence + frequency (and its positive logit is halved).
    float l2[6] = {2, -2, 1, 0.5f, -1, 3};
    p.n_logit_bias = 0;
    sampler_sample(st, &p, l2, 6, &r);
    CHECK(l2[4] == -1 * 2 - 0.75f, "t4 after being generated: %g", l2[4]);
    sampler_state_free(st);
}

static void test_logit_bias_forces(void) {
    err_t err = {0};
    util_rng rng;
    util_rng_seed(&rng, 8);
    sampler_state *st = sampler_state_new(64, 9, &err);
    sampler_bias up[1] = {{9, 100}}, down[1] = {{0, -100}};
    sampler_params p = sampler_params_default();
    p.logit_bias = up;
    p.n_logit_bias = 1;
    p.top_logprobs = 1;
    int bad = 0;
    float l[64];
    sampler_result r;
    for (int n = 0; n < 200; n++) {
        random_logits(&rng, l, 64, 2.0);
        bad += sample_copy(st, &p, l, 64, &r) != 9;
    }
    CHECK(bad == 0, "+100 bias forces token 9 (%d misses)", bad);
    CHECK(r.logprob > -1e-6f && r.top[0].token == 9, "a forced token's logprob is ~0: %g", r.logprob);
    p.logit_bias = down;
    p.temperature = 0;
    random_logits(&rng, l, 64, 1.0);
    l[0] = 10;
    CHECK(sample_copy(st, &p, l, 64, &r) != 0, "-100 bias bans the argmax");
    sampler_state_free(st);
}

static void test_logprobs(void) {
    err_t err = {0};
    util_rng rng;
    util_rng_seed(&rng, 21);
    enum { V = 16 };
    float l[V];
    random_logits(&rng, l, V, 3.0);
    l[5] = l[6];  // a tie, reported lower id first
    sampler_state *st = sampler_state_new(V, 2, &err);
    sampler_params p = sampler_params_default();
    p.top_logprobs = 20;
    sampler_result r, r2;
    int t = sample_copy(st, &p, l, V, &r);
    CHECK(r.n_top == V, "n_top %d clipped to the vocabulary", r.n_top);
    double total = 0;
    int chosen_seen = 0;
    for (int i = 0; i < r.n_top; i++) {
        total += exp(r.top[i].logprob);
        if (i > 0) {
            int ordered = r.top[i - 1].logprob > r.top[i].logprob ||
                          (r.top[i - 1].logprob == r.top[i].logprob && r.top[i - 1].token < r.top[i].token);
            CHECK(ordered, "top logprobs sorted at %d", i);
        }
        if (r.top[i].token == t) chosen_seen = r.top[i].logprob == r.logprob;
    }
    CHECK(fabs(total - 1) < 1e-5, "logprobs sum to %.7f", total);
    CHECK(chosen_seen, "the chosen token's logprob is among the alternatives");
    // Before temperature and filters: the same numbers at T 0.3 with top_k 2.
    p.temperature = 0.3f;
    p.top_k = 2;
    p.top_logprobs = 5;
    sample_copy(st, &p, l, V, &r2);
    CHECK(r2.n_top == 5);
    for (int i = 0; i < 5; i++)
        CHECK(r2.top[i].token == r.top[i].token && r2.top[i].logprob == r.top[i].logprob, "alternative %d", i);
    p.top_logprobs = 0;
    sample_copy(st, &p, l, V, &r2);
    CHECK(r2.n_top == 0);
    sampler_state_free(st);
}

static void test_stop_ids(void) {
    err_t err = {0};
    sampler_state *st = sampler_state_new(8, 4, &err);
    int32_t stops[2] = {2, 7};
    sampler_params p = sampler_params_default();
    p.temperature = 0;
    p.stop_ids = stops;
    p.n_stop_ids = 2;
    float a[8] = {0, 0, 5, 0, 0, 0, 0, 0}, b[8] = {0, 5, 0, 0, 0, 0, 0, 0};
    sampler_result r;
    CHECK(sample_copy(st, &p, a, 8, &r) == 2 && r.finish == SAMPLER_FINISH_STOP);
    CHECK(sample_copy(st, &p, b, 8, &r) == 1 && r.finish == SAMPLER_FINISH_NONE);
    sampler_state_free(st);
}


// ---- against the reference (the previous sampler) ---------------------------------------

// Logprob tolerance: the op sums exp in f32 chunks with a polynomial exp,
// the reference in double; the log-sum-exp differs by ~1e-6.
#define LP_TOL(x) (2e-5 + 2e-6 * fabs(x))

static int lp_close(float a, float b) { return (isinf(a) && a == b) || fabs((double)a - b) <= LP_TOL(b); }

// A row of realistic-looking logits: N(0, scale) plus `peaks` tokens raised
// well above, sometimes ties, -inf, NaN, +inf.
static void messy_logits(util_rng *rng, float *l, int V, double scale, int peaks, int dirt) {
    random_logits(rng, l, V, scale);
    for (int i = 0; i < peaks; i++) l[util_rng_next(rng) % (uint64_t)V] += (float)(4 + 6 * util_rng_uniform(rng));
    if (dirt & 1) l[util_rng_next(rng) % (uint64_t)V] = -INFINITY;
    if (dirt & 2) l[util_rng_next(rng) % (uint64_t)V] = NAN;
    if (dirt & 4) l[util_rng_next(rng) % (uint64_t)V] = INFINITY;
    if (dirt & 8) {  // a tie at the max
        int a = argmax(l, V), b = (int)(util_rng_next(rng) % (uint64_t)V);
        l[b] = l[a];
    }
}

typedef struct pair {
    sampler_state *st;
    sref_state *ref;
} pair;

// New and reference states with the same seed and the same history
// (a prompt and some generated tokens).
static pair pair_new(util_rng *rng, int V, uint64_t seed) {
    err_t err = {0};
    pair q = {sampler_state_new(V, seed, &err), sref_state_new(V, seed, &err)};
    int32_t prompt[12];
    for (int i = 0; i < 12; i++) prompt[i] = (int32_t)(util_rng_next(rng) % (uint64_t)V);
    sampler_state_prompt(q.st, prompt, 12, &err);
    sref_state_prompt(q.ref, prompt, 12, &err);
    for (int i = 0; i < 6; i++) {
        int32_t t = prompt[i % 3] + (i > 2);
        sampler_state_append(q.st, t % V);
        sref_state_append(q.ref, t % V);
    }
    return q;
}

static void pair_free(pair q) {
    sampler_state_free(q.st);
    sref_state_free(q.ref);
}

typedef struct diff_count {
    int rows, token, logprob, top;
} diff_count;

// One sample from each of the pair (same seed, so the same u) on copies of l.
static void compare_once(pair q, const sampler_params *p, const float *l, int V, diff_count *d) {
    float *a = malloc(sizeof(float) * (size_t)V), *b = malloc(sizeof(float) * (size_t)V);
    memcpy(a, l, sizeof(float) * (size_t)V);
    memcpy(b, l, sizeof(float) * (size_t)V);
    sampler_result rn, rr;
    int tn = sampler_sample(q.st, p, a, V, &rn), tr = sref_sample(q.ref, p, b, V, &rr);
    d->rows++;
    d->token += tn != tr;
    if (tn >= 0 && tn == tr) d->logprob += !lp_close(rn.logprob, rr.logprob);
    if (tn >= 0 && tr >= 0) {
        int bad = rn.n_top != rr.n_top;
        for (int i = 0; !bad && i < rn.n_top; i++)
            bad = rn.top[i].token != rr.top[i].token || !lp_close(rn.top[i].logprob, rr.top[i].logprob);
        d->top += bad;
    }
    free(a);
    free(b);
}

// Greedy: the same token on every row (ties, -inf, NaN, +inf, penalties,
// bias), and the same alternatives with logprobs within LP_TOL.
static void test_greedy_matches_reference(void) {
    util_rng rng;
    util_rng_seed(&rng, 131);
    static const int vocabs[] = {1, 3, 37, 1000, 4099};
    diff_count d = {0};
    for (int trial = 0; trial < 600; trial++) {
        int V = vocabs[trial % 5];
        float *l = malloc(sizeof(float) * (size_t)V);
        messy_logits(&rng, l, V, 2.0, 3, trial % 16);
        if (trial % 50 == 7)
            for (int i = 0; i < V; i++) l[i] = -INFINITY;  // nothing finite: both refuse
        pair q = pair_new(&rng, V, (uint64_t)trial);
        sampler_bias bias[2] = {{(int32_t)(util_rng_next(&rng) % (uint64_t)V), 5},
                                {(int32_t)(util_rng_next(&rng) % (uint64_t)V), -100}};
        sampler_params p = sampler_params_default();
        p.temperature = trial % 3 ? 0 : 1e-6f;
        p.repetition_penalty = trial % 4 ? 1.3f : 1;
        p.presence_penalty = trial % 5 ? 0.4f : 0;
        p.frequency_penalty = trial % 7 ? -0.3f : 0;
        p.logit_bias = bias;
        p.n_logit_bias = trial % 2 ? 2 : 0;
        p.top_logprobs = trial % 21;
        compare_once(q, &p, l, V, &d);
        pair_free(q);
        free(l);
    }
    printf("greedy vs reference: %d rows, %d tokens differ, %d logprobs and %d alternative lists beyond tolerance\n",
           d.rows, d.token, d.logprob, d.top);
    CHECK(d.token == 0 && d.logprob == 0 && d.top == 0, "greedy: %d tokens, %d logprobs, %d top lists differ",
          d.token, d.logprob, d.top);
}

// With top_p < 1 both walk the kept tokens most likely first, so the same u
// picks the same token except where u * mass falls within ~1e-6 of a step
// between two tokens (the normalisers differ by that much): at most one row
// in a thousand is allowed to differ, and the count is printed.
static void test_top_p_same_u(void) {
    util_rng rng;
    util_rng_seed(&rng, 77);
    static const int vocabs[] = {50, 1000, 4099, 20000};
    diff_count d = {0};
    int trials = 1200;
    for (int trial = 0; trial < trials; trial++) {
        int V = vocabs[trial % 4];
        float *l = malloc(sizeof(float) * (size_t)V);
        messy_logits(&rng, l, V, trial % 3 ? 2.0 : 0.4, trial % 7, trial % 4 == 1 ? 1 : 0);
        pair q = pair_new(&rng, V, 1000 + (uint64_t)trial);
        sampler_params p = sampler_params_default();
        p.temperature = 0.3f + 1.5f * (float)util_rng_uniform(&rng);
        p.top_p = (float)(0.05 + 0.94 * util_rng_uniform(&rng));
        p.top_k = trial % 3 == 0 ? 1 + (int)(util_rng_next(&rng) % 200) : 0;
        p.min_p = trial % 5 == 0 ? 0.05f : 0;
        p.repetition_penalty = 1.2f;
        p.frequency_penalty = 0.5f;
        p.top_logprobs = trial % 3;
        compare_once(q, &p, l, V, &d);
        pair_free(q);
        free(l);
    }
    printf("top_p vs reference, same u: %d rows, %d tokens differ (boundary cases), %d logprobs, %d top lists\n",
           d.rows, d.token, d.logprob, d.top);
    CHECK(d.token <= trials / 1000 && d.logprob == 0 && d.top == 0, "top_p same u: %d tokens, %d logprobs, %d tops",
          d.token, d.logprob, d.top);
}

// Without top_p the reference walks the kept tokens in id order (or
// quickselect's), the op most likely first: the same distribution, another
// map from u to token. Over a grid of M draws each token's count may differ
// by one per boundary it straddles, so by at most 2.
static void sweep_u(const float *l, int V, const sampler_params *p, int *worst, int *kept_differ) {
    enum { M = 1500 };
    int *cn = calloc((size_t)V, sizeof(int)), *cr = calloc((size_t)V, sizeof(int));
    float *a = malloc(sizeof(float) * (size_t)V);
    err_t err = {0};
    sref_state *ref = sref_state_new(V, 1, &err);
    bk_sample_row row = {.temperature = p->temperature, .top_k = p->top_k, .top_p = p->top_p, .min_p = p->min_p,
                         .repetition_penalty = 1};
    for (int j = 0; j < M; j++) {
        double u = (j + 0.5) / M;
        sampler_result rr;
        bk_sample_out o;
        memcpy(a, l, sizeof(float) * (size_t)V);
        cr[sref_sample_u(ref, p, a, V, u, &rr)]++;
        memcpy(a, l, sizeof(float) * (size_t)V);
        row.u = u;
        bk_cpu()->sample(a, 1, V, &row, &o);
        cn[o.token]++;
    }
    for (int i = 0; i < V; i++) {
        int dd = abs(cn[i] - cr[i]);
        if (dd > *worst) *worst = dd;
        *kept_differ += (cn[i] > 0) != (cr[i] > 0) && dd > 2;
    }
    sref_state_free(ref);
    free(a);
    free(cn);
    free(cr);
}

static void test_other_filters_same_distribution(void) {
    util_rng rng;
    util_rng_seed(&rng, 5);
    int worst = 0, kept_differ = 0;
    for (int trial = 0; trial < 24; trial++) {
        int V = trial % 2 ? 300 : 1001;
        float *l = malloc(sizeof(float) * (size_t)V);
        messy_logits(&rng, l, V, trial % 3 ? 1.5 : 0.3, trial % 4, 0);
        sampler_params p = sampler_params_default();
        p.temperature = 0.5f + (float)util_rng_uniform(&rng);
        p.top_k = trial % 3 == 1 ? 1 + trial * 7 : 0;
        p.min_p = trial % 4 >= 2 ? 0.02f * (float)(trial % 5) : 0;
        sweep_u(l, V, &p, &worst, &kept_differ);
        free(l);
    }
    printf("temperature / top_k / min_p vs reference over a grid of u: largest count difference %d\n", worst);
    CHECK(worst <= 2 && kept_differ == 0, "largest count difference %d (<= 2), %d kept sets differ", worst,
          kept_differ);
}

// The Qwen vocabulary: a few rows of realistic logits, greedy and
// temperature 0.8 + top_p 0.95, with logprobs.
static void test_big_vocab(void) {
    enum { V = 151669 };
    util_rng rng;
    util_rng_seed(&rng, 151);
    float *l = malloc(sizeof(float) * V);
    diff_count d = {0};
    for (int trial = 0; trial < 12; trial++) {
        messy_logits(&rng, l, V, 3.0, 20, 0);
        pair q = pair_new(&rng, V, (uint64_t)trial);
        sampler_params p = sampler_params_default();
        p.temperature = trial % 2 ? 0.8f : 0;
        p.top_p = 0.95f;
        p.top_logprobs = 5;
        compare_once(q, &p, l, V, &d);
        pair_free(q);
    }
    CHECK(d.token == 0 && d.logprob == 0 && d.top == 0, "151669 tokens: %d tokens, %d logprobs, %d tops differ",
          d.token, d.logprob, d.top);
    free(l);
}

// want_logprob 0 with no alternatives: the same token, no logprob.
static void test_logprob_not_wanted(void) {
    err_t err = {0};
    util_rng rng;
    util_rng_seed(&rng, 6);
    float l[300];
    random_logits(&rng, l, 300, 2.0);
    sampler_state *a = sampler_state_new(300, 3, &err), *b = sampler_state_new(300, 3, &err);
    sampler_params p = sampler_params_default();
    p.top_p = 0.9f;
    sampler_result ra, rb;
    int ta = sample_copy(a, &p, l, 300, &ra);
    p.want_logprob = 0;
    int tb = sample_copy(b, &p, l, 300, &rb);
    CHECK(ta == tb && isnan(rb.logprob) && !isnan(ra.logprob), "token %d/%d, logprob %g", ta, tb, rb.logprob);
    sampler_state_free(a);
    sampler_state_free(b);
}

// The batch: rows in backend memory (the CPU's here), one op call; the same
// tokens as sampler_sample one row at a time; the allowed bitset as -inf
// outside it; a state of another vocabulary refused without touching it.
static void test_batch(void) {
    enum { V = 1000, N = 6 };
    err_t err = {0};
    util_rng rng;
    util_rng_seed(&rng, 44);
    float *rows = malloc(sizeof(float) * V * N), *copy = malloc(sizeof(float) * V * N);
    for (int i = 0; i < N; i++) random_logits(&rng, rows + i * V, V, 2.0);
    memcpy(copy, rows, sizeof(float) * V * N);
    uint32_t allowed[(V + 31) / 32] = {0};
    for (int t = 100; t < 140; t += 3) allowed[t / 32] |= 1u << (t % 32);
    sampler_params ps[N];
    sampler_state *one[N], *many[N + 1];
    sampler_job jobs[N + 1];
    for (int i = 0; i < N; i++) {
        ps[i] = sampler_params_default();
        ps[i].temperature = i % 2 ? 0 : 0.9f;
        ps[i].top_p = i % 3 ? 1 : 0.8f;
        ps[i].top_logprobs = i;
        one[i] = sampler_state_new(V, 9 + (uint64_t)i, &err);
        many[i] = sampler_state_new(V, 9 + (uint64_t)i, &err);
        jobs[i] = (sampler_job){many[i], &ps[i], i == 4 ? allowed : NULL};
    }
    many[N] = sampler_state_new(V + 1, 1, &err);
    jobs[N] = (sampler_job){many[N], &ps[0], NULL};
    sampler_result rb[N + 1], r1;
    float *batch = malloc(sizeof(float) * V * (N + 1));
    memcpy(batch, rows, sizeof(float) * V * N);
    memcpy(batch + V * N, rows, sizeof(float) * V);
    sampler_sample_batch(bk_cpu(), batch, N + 1, V, jobs, rb);
    int same = 1;
    for (int i = 0; i < N; i++) {
        float *l = copy + i * V;
        if (i == 4)
            for (int t = 0; t < V; t++)
                if (!(allowed[t / 32] >> (t % 32) & 1)) l[t] = -INFINITY;
        int t = sampler_sample(one[i], &ps[i], l, V, &r1);
        same &= t == rb[i].token && r1.n_top == rb[i].n_top && (isnan(r1.logprob) || r1.logprob == rb[i].logprob);
    }
    CHECK(same, "batch rows sample as single rows do");
    CHECK(rb[4].token >= 100 && rb[4].token < 140 && (rb[4].token - 100) % 3 == 0, "allowed bitset: token %d",
          rb[4].token);
    CHECK(rb[N].token == -1 && sampler_state_generated(many[N]) == 0, "another vocabulary refused");
    for (int i = 0; i < N; i++) {
        sampler_state_free(one[i]);
        sampler_state_free(many[i]);
    }
    sampler_state_free(many[N]);
    free(rows);
    free(copy);
    free(batch);
}

int main(void) {
    test_params_check();
    test_greedy();
    test_greedy_limits();
    test_seed_reproducible();
    test_distribution_matches_softmax();
    test_filters_match_brute_force();
    test_penalty_arithmetic();
    test_logit_bias_forces();
    test_logprobs();
    test_stop_ids();
    test_greedy_matches_reference();
    test_top_p_same_u();
    test_other_filters_same_distribution();
    test_big_vocab();
    test_logprob_not_wanted();
    test_batch();
    // The portable kernels too, where the CPU had AVX2 above.
    const char *simd = bk_cpu_simd();
    if (strcmp(bk_cpu_set_simd(0), simd) != 0) {
        printf("again with the portable kernels (was %s):\n", simd);
        test_greedy_matches_reference();
        test_top_p_same_u();
        test_other_filters_same_distribution();
    }
    bk_cpu_shutdown();
    return check_finish("test_sampler");
}
