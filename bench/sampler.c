// bench/sampler: the host sampler per token, the previous one
// (tests/sampler_ref.c: double exp over the whole vocabulary) against the
// backend op's CPU implementation (kernels/cpu/sample.c via sampler_sample),
// in the same run, alternated call by call.
//
//   make bench-sampler        (= build/bench/sampler [--rounds 60])
//
// Vocabularies: 151,936 (Qwen3's config vocab_size, the lm_head rows) and
// 151,669 (the tokens its tokenizer defines; the figures of issue 13).
// Logits: 16 rows, each a tail N(0, 2.5^2) over every token (an LM's
// logits have a standard deviation of 2-3) plus a head of 32 random tokens
// raised by 17 - 1.6 ln(rank + 1), so the top logit stands ~17 above the
// bulk as in a confident LM's next-token distribution (the program prints
// the top token's probability and the 0.95 nucleus at T = 0.8). "top_p
// flat" uses the tail alone: no head, so the nucleus holds most of the
// vocabulary, the worst case for any top_p. The rows are generated once
// and copied into the sampler's buffer before each (untimed) call. Each
// sampler carries a 256-token prompt history; penalties off.
//
// Modes: greedy (temperature 0, no logprobs: what a request without
// logprobs costs), greedy with the chosen token's logprob and 5
// alternatives, temperature 0.8 + top_p 0.95. The old sampler always
// computes logprobs. Each figure is the median over the rounds (old: one
// call per round; new: 8 calls per round).
//
// The last line is one JSON object, the new sampler's medians on 151,669:
// {"vocab": N, "greedy_us": x, "top_p_us": y}.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../core/sampler.h"
#include "../core/util.h"
#include "../tests/sampler_ref.h"

enum { ROWS = 16, NEW_PER_ROUND = 8, HISTORY = 256 };

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void make_rows(float *rows, int V, util_rng *rng) {
    for (int r = 0; r < 2 * ROWS; r++) {
        float *l = rows + (size_t)r * V;
        for (int i = 0; i < V; i++) l[i] = (float)(2.5 * util_rng_normal(rng));
        if (r < ROWS) // the flat rows (ROWS..2 ROWS) have no head
            for (int k = 0; k < 32; k++) l[util_rng_next(rng) % (uint64_t)V] += (float)(17 - 1.6 * log((double)k + 1));
    }
}

typedef enum { GREEDY, GREEDY_LP, TOP_P, TOP_P_FLAT, N_MODES } mode;
static const char *mode_name[N_MODES] = {"greedy", "greedy+logprobs", "top_p", "top_p flat"};

static sampler_params mode_params(mode m) {
    sampler_params p = sampler_params_default();
    p.temperature = m >= TOP_P ? 0.8f : 0;
    p.top_p = m >= TOP_P ? 0.95f : 1;
    p.want_logprob = m != GREEDY;
    p.top_logprobs = m == GREEDY_LP ? 5 : 0;
    return p;
}

// The shape of the rows at T = 0.8: the top token's probability and the
// size of the 0.95 nucleus (medians over the rows with a head, and flat).
static void describe(const float *rows, int V) {
    double top[ROWS], nucleus[2][ROWS];
    double *p = malloc(sizeof(double) * (size_t)V);
    for (int r = 0; r < 2 * ROWS; r++) {
        const float *l = rows + (size_t)r * V;
        double m = l[0], z = 0;
        for (int i = 1; i < V; i++) m = l[i] > m ? l[i] : m;
        for (int i = 0; i < V; i++) z += p[i] = exp((l[i] - m) / 0.8);
        for (int i = 0; i < V; i++) p[i] /= z;
        qsort(p, (size_t)V, sizeof *p, cmp_double);
        double acc = 0;
        int n = 0;
        while (acc < 0.95 && n < V) acc += p[V - 1 - n++];
        if (r < ROWS) top[r] = p[V - 1];
        nucleus[r / ROWS][r % ROWS] = n;
    }
    printf("vocab %d rows at T 0.8: top token p %.2f, 0.95 nucleus %.0f tokens (flat rows: %.0f), medians\n", V,
           median(top, ROWS), median(nucleus[0], ROWS), median(nucleus[1], ROWS));
    free(p);
}

// One timed call of the old (ref != NULL) or new sampler on a copy of row.
static double time_call(sampler_state *st, sref_state *ref, const sampler_params *p, const float *row, float *work,
                        int V) {
    memcpy(work, row, sizeof(float) * (size_t)V);
    sampler_result r;
    double t0 = now_us();
    if (ref) sref_sample(ref, p, work, V, &r);
    else sampler_sample(st, p, work, V, &r);
    return now_us() - t0;
}

// Medians (us) of the new sampler per mode, after printing old and new.
static void bench_vocab(int V, int rounds, double *new_med) {
    util_rng rng;
    util_rng_seed(&rng, (uint64_t)V);
    float *rows = malloc(sizeof(float) * (size_t)V * 2 * ROWS), *work = malloc(sizeof(float) * (size_t)V);
    double *old_t = malloc(sizeof(double) * (size_t)rounds), *new_t = malloc(sizeof(double) * (size_t)rounds * NEW_PER_ROUND);
    make_rows(rows, V, &rng);
    describe(rows, V);
    int32_t hist[HISTORY];
    for (int i = 0; i < HISTORY; i++) hist[i] = (int32_t)(util_rng_next(&rng) % (uint64_t)V);
    err_t err = {0};
    for (mode m = 0; m < N_MODES; m++) {
        sampler_params p = mode_params(m);
        sampler_state *st = sampler_state_new(V, 1, &err);
        sref_state *ref = sref_state_new(V, 1, &err);
        if (!st || !ref || sampler_state_prompt(st, hist, HISTORY, &err) < 0 ||
            sref_state_prompt(ref, hist, HISTORY, &err) < 0) {
            fprintf(stderr, "bench/sampler: %s\n", err.msg);
            exit(1);
        }
        for (int k = 0; k < rounds; k++) {
            const float *row = rows + (size_t)(k % ROWS + (m == TOP_P_FLAT ? ROWS : 0)) * V;
            old_t[k] = time_call(NULL, ref, &p, row, work, V);
            for (int j = 0; j < NEW_PER_ROUND; j++) new_t[k * NEW_PER_ROUND + j] = time_call(st, NULL, &p, row, work, V);
        }
        double o = median(old_t, rounds), n = median(new_t, rounds * NEW_PER_ROUND);
        printf("vocab %d %-16s old %8.1f us   new %7.1f us   old/new %6.1fx\n", V, mode_name[m], o, n, o / n);
        new_med[m] = n;
        sampler_state_free(st);
        sref_state_free(ref);
    }
    free(rows);
    free(work);
    free(old_t);
    free(new_t);
}

int main(int argc, char **argv) {
    int rounds = 60;
    if (argc == 3 && strcmp(argv[1], "--rounds") == 0) rounds = atoi(argv[2]);
    if (rounds < 1) {
        fprintf(stderr, "usage: %s [--rounds N >= 1]\n", argv[0]);
        return 2;
    }
    printf("sampler per token, median of %d rounds (old: tests/sampler_ref.c, new: the CPU sample op)\n", rounds);
    double med[N_MODES];
    bench_vocab(151936, rounds, med);
    bench_vocab(151669, rounds, med);
    bk_cpu_shutdown();
    printf("{\"vocab\": %d, \"greedy_us\": %.1f, \"top_p_us\": %.1f}\n", 151669, med[GREEDY], med[TOP_P]);
    return 0;
}
