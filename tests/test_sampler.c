// sampler: greedy and its limits (temperature -> 0, top_k 1, tiny top_p),
// seeded reproducibility independent of other sequences, the filters against
// brute force, the sampled distribution against softmax (chi-square), the
// penalty and bias arithmetic on hand-made logits, logprobs, stop ids, and
// parameter validation naming the field.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/sampler.h"
#include "../core/util.h"
#include "check.h"

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
    return check_finish("test_sampler");
}
