// sample: the CPU implementation of bk_ops.sample (core/sampler.h states
// the semantics; tests/sampler_ref.c is the earlier whole-vocabulary
// sampler the tests compare this one against).
//
// Cost per row of V logits, all in f32 vectors (AVX2 + FMA when the CPU
// has them, as matmul chooses; else 4-lane SSE / NEON):
//   - the sparse edits (mask, penalties, bias): O(mask words + seen + biased);
//   - one read-only pass for the max, its lowest index and the count of
//     finite logits; a NaN or +inf anywhere triggers one cleaning pass;
//   - logprobs only when asked: one pass of a polynomial exp for the
//     log-sum-exp, one thresholded pass for the top alternatives;
//   - temperature sampling: one exp pass for the normaliser Z that also
//     sums the mass above a few thresholds (not needed with top_k, or with
//     min_p and no top_p); one pass that collects only the tokens above the
//     highest threshold whose mass suffices (the candidates), then the
//     top_k / top_p / min_p cut and the draw over them, where only the
//     bucket of candidates (by p, 1/16 octave) in which the mass crosses
//     the line is sorted.
// The draw walks the kept tokens most likely first (ties: lower id), so a
// given u picks the same token whichever filters are on.
//
// Accuracy (stated, and bounded in tests/test_sampler.c): the polynomial
// exp is within 2 ulp of expf on [-87.3, 0] and 0 below; candidates' p are
// that exp, not expf; sums run in f32 over chunks of 512 and the chunks add
// in double. So Z and the log-sum-exp are within ~1e-6 relative of the
// reference's double sums, logprobs within 2e-5, and a draw differs from
// the reference's only where u * mass falls within ~1e-6 of a step
// between two tokens (or two p within 2 ulp are ordered the other way).
#include <float.h>
#include <math.h>
#include <stdlib.h>

#include "cpu_ops.h"
#include "vexp.h"
#include "pool.h"

// A candidate token: its unnormalised probability exp((l - max) / T).
typedef struct cand {
    float p;
    int32_t id;
} cand;

static inline int any_lane(cpu_i4 m) { return (m[0] | m[1] | m[2] | m[3]) != 0; }

// ---- sparse edits --------------------------------------------------------------

// Tokens outside the allowed bitset become -inf.
static void apply_mask(float *l, int V, const uint32_t *allowed) {
    for (int w = 0; w * 32 < V; w++) {
        uint32_t bits = allowed[w];
        if (bits == UINT32_MAX) continue;
        int end = w * 32 + 32 < V ? w * 32 + 32 : V;
        for (int t = w * 32; t < end; t++)
            if (!(bits >> (t & 31) & 1)) l[t] = -INFINITY;
    }
}

static float clean(float l) { return isnan(l) ? -INFINITY : l == INFINITY ? FLT_MAX : l; }

// Penalties then bias, over the listed tokens only (each cleaned first as
// the whole row is, so a NaN does not survive into the arithmetic).
static void apply_edits(float *l, const bk_sample_row *r) {
    float rep = r->repetition_penalty;
    for (int i = 0; i < r->n_seen; i++) {
        const bk_sample_seen *s = &r->seen[i];
        float v = clean(l[s->token]);
        if (rep != 1.0f) v = v < 0 ? v * rep : v / rep; // HF: shrink toward "less likely" either sign
        if (s->count > 0) v -= r->presence_penalty + r->frequency_penalty * (float)s->count;
        l[s->token] = v;
    }
    for (int i = 0; i < r->n_bias; i++) {
        float *v = &l[r->bias[i].token];
        *v = clean(*v) + r->bias[i].bias;
    }
}

// ---- the max -------------------------------------------------------------------

typedef struct row_max {
    float m;
    int argmax;   // lowest index holding m; -1 when nothing is finite
    int n_finite; // logits > -inf
    int dirty;    // a NaN or +inf was seen
} row_max;

// Folds one lane's max (value v first seen at id) into r: a greater value,
// or the same finite value at a lower index, wins.
static void max_lane(row_max *r, float v, int32_t id) {
    if (v > r->m || (v == r->m && v > -INFINITY && id < r->argmax)) {
        r->m = v;
        r->argmax = id;
    }
}

// The logits [i, V) after the vector passes, one at a time, into r.
static row_max max_tail(row_max r, const float *l, int i, int V) {
    for (; i < V; i++) {
        r.n_finite += l[i] > -INFINITY;
        r.dirty |= !(l[i] < INFINITY) && l[i] != -INFINITY;
        if (l[i] > r.m) {
            r.m = l[i];
            r.argmax = i;
        }
    }
    return r;
}

// Per-lane running max with its first index, reduced to the lowest index
// of the overall max; NaN never compares greater, so it is skipped here and
// flagged for cleaning.
static row_max find_max_v4(const float *l, int V) {
    const cpu_v4 ninf = {-INFINITY, -INFINITY, -INFINITY, -INFINITY}, pinf = -ninf;
    cpu_v4 best = ninf;
    cpu_i4 idx = {0}, cnt = {0}, bad = {0}, iv = {0, 1, 2, 3};
    int i = 0;
    for (; i + 4 <= V; i += 4, iv += 4) {
        cpu_v4 v = cpu_v4_load(l + i);
        cpu_i4 gt = v > best;
        best = cpu_select_v4(gt, v, best);
        idx = (gt & iv) | (~gt & idx);
        cnt -= v > ninf;
        bad |= ~(v < pinf) & ~(v == ninf);
    }
    row_max r = {-INFINITY, -1, cnt[0] + cnt[1] + cnt[2] + cnt[3], any_lane(bad)};
    for (int k = 0; k < 4; k++) max_lane(&r, best[k], idx[k]);
    return max_tail(r, l, i, V);
}

// ---- AVX2 + FMA: the same passes 8 lanes at a time ---------------------------------
//
// Used when cpu_simd() >= CPU_SIMD_AVX2. The exp is cpu_exp8 (vexp.h),
// within an ulp of cpu_exp_v4; the sums are within the same bound of the
// reference.
#if CPU_HAVE_AVX2
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma")))

static AVX2 row_max find_max_avx2(const float *l, int V) {
    __m256 ninf = _mm256_set1_ps(-INFINITY), pinf = _mm256_set1_ps(INFINITY), best = ninf;
    __m256i idx = _mm256_setzero_si256(), cnt = idx, iv = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __m256 bad = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= V; i += 8, iv = _mm256_add_epi32(iv, _mm256_set1_epi32(8))) {
        __m256 v = _mm256_loadu_ps(l + i), gt = _mm256_cmp_ps(v, best, _CMP_GT_OQ);
        best = _mm256_blendv_ps(best, v, gt);
        idx = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(idx), _mm256_castsi256_ps(iv), gt));
        cnt = _mm256_sub_epi32(cnt, _mm256_castps_si256(_mm256_cmp_ps(v, ninf, _CMP_GT_OQ)));
        bad = _mm256_or_ps(bad, _mm256_and_ps(_mm256_cmp_ps(v, pinf, _CMP_NLT_UQ), _mm256_cmp_ps(v, ninf, _CMP_NEQ_UQ)));
    }
    float bv[8];
    int32_t bi[8], bc[8];
    _mm256_storeu_ps(bv, best);
    _mm256_storeu_si256((__m256i *)bi, idx);
    _mm256_storeu_si256((__m256i *)bc, cnt);
    row_max r = {-INFINITY, -1, 0, _mm256_movemask_ps(bad) != 0};
    for (int k = 0; k < 8; k++) {
        r.n_finite += bc[k];
        max_lane(&r, bv[k], bi[k]);
    }
    return max_tail(r, l, i, V);
}

static inline AVX2 double hsum8d(__m256 v) {
    float f[8];
    _mm256_storeu_ps(f, v);
    return (double)(((f[0] + f[4]) + (f[1] + f[5])) + ((f[2] + f[6]) + (f[3] + f[7])));
}

// sum_exp_levels (below) 8 lanes at a time; n_levels 1 sums only the total.
static AVX2 double sum_exp_avx2(const float *l, int V, float m, float s, int n_levels, const float *level_lo,
                                double *mass) {
    __m256 mv = _mm256_set1_ps(m), sv = _mm256_set1_ps(s);
    for (int lv = 0; lv < n_levels; lv++) mass[lv] = 0;
    int i = 0;
    while (i + 8 <= V) {
        __m256 acc[8];
        for (int lv = 0; lv < 8; lv++) acc[lv] = _mm256_setzero_ps();
        int end = i + 512 < V ? i + 512 : V;
        if (n_levels == 1) {
            for (; i + 8 <= end; i += 8)
                acc[0] = _mm256_add_ps(acc[0], cpu_exp8(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(l + i), mv), sv)));
        } else {
            for (; i + 8 <= end; i += 8) {
                __m256 x = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(l + i), mv), sv), e = cpu_exp8(x);
                for (int lv = 0; lv < n_levels - 1; lv++)
                    acc[lv] = _mm256_add_ps(acc[lv], _mm256_and_ps(_mm256_cmp_ps(x, _mm256_set1_ps(level_lo[lv]), _CMP_GE_OQ), e));
                acc[n_levels - 1] = _mm256_add_ps(acc[n_levels - 1], e);
            }
        }
        for (int lv = 0; lv < n_levels; lv++) mass[lv] += hsum8d(acc[lv]);
    }
    for (; i < V; i++) { // the tail of the row
        float x = (l[i] - m) * s;
        double e = cpu_exp_v4(cpu_splat_v4(x))[0];
        for (int lv = 0; lv < n_levels; lv++) mass[lv] += lv == n_levels - 1 || x >= level_lo[lv] ? e : 0;
    }
    return mass[n_levels - 1];
}
#endif

// The passes over the whole row, on the best kernels the CPU has.
static int use_avx2(void) { return CPU_HAVE_AVX2 && cpu_simd() >= CPU_SIMD_AVX2; }

static row_max find_max(const float *l, int V) {
#if CPU_HAVE_AVX2
    if (use_avx2()) return find_max_avx2(l, V);
#endif
    return find_max_v4(l, V);
}

// NaN -> -inf, +inf -> FLT_MAX (so that exp(l - max) stays defined), then
// the max again.
static row_max clean_and_find_max(float *l, int V) {
    row_max r = find_max(l, V);
    if (!r.dirty) return r;
    for (int i = 0; i < V; i++) l[i] = clean(l[i]);
    return find_max(l, V);
}


// ---- logprobs ------------------------------------------------------------------

// sum over l (V) of exp((l - m) * s), f32 lanes per chunk, chunks in double.
static double sum_exp_v4(const float *l, int V, float m, float s) {
    double total = 0;
    cpu_v4 mv = {m, m, m, m}, sv = {s, s, s, s};
    int i = 0;
    while (i + 4 <= V) {
        cpu_v4 a = {0}, b = {0};
        int end = i + 512 < V ? i + 512 : V;
        for (; i + 8 <= end; i += 8) {
            a += cpu_exp_v4((cpu_v4_load(l + i) - mv) * sv);
            b += cpu_exp_v4((cpu_v4_load(l + i + 4) - mv) * sv);
        }
        for (; i + 4 <= end; i += 4) a += cpu_exp_v4((cpu_v4_load(l + i) - mv) * sv);
        total += (double)cpu_v8_sum(a, b);
    }
    for (; i < V; i++) {
        cpu_v4 x = {(l[i] - m) * s, -INFINITY, -INFINITY, -INFINITY};
        total += (double)cpu_exp_v4(x)[0];
    }
    return total;
}

// log-sum-exp's sum: exp(l - m) over the row.
static double sum_exp(const float *l, int V, float m, float s) {
#if CPU_HAVE_AVX2
    double total;
    if (use_avx2()) return sum_exp_avx2(l, V, m, s, 1, NULL, &total);
#endif
    return sum_exp_v4(l, V, m, s);
}

// Inserts (id, l) into top (n of k held, logit order, earlier ids first on
// ties: a later id must be strictly greater to pass one).
static int top_insert(bk_logprob *top, int n, int k, int32_t id, float l) {
    if (n == k && !(l > top[n - 1].logprob)) return n;
    int j = n < k ? n++ : k - 1;
    while (j > 0 && l > top[j - 1].logprob) {
        top[j] = top[j - 1];
        j--;
    }
    top[j] = (bk_logprob){id, l};
    return n;
}

// The k most likely of l (V) into top with logprobs l - lse; a block of 4
// is looked at only when one of its lanes beats the current k-th.
static void top_logprobs(const float *l, int V, int k, double lse, bk_logprob *top) {
    int n = 0, i = 0;
    for (; i < V && n < k; i++) n = top_insert(top, n, k, i, l[i]);
    for (; i + 4 <= V; i += 4) {
        float t = top[k - 1].logprob;
        if (!any_lane(cpu_v4_load(l + i) > (cpu_v4){t, t, t, t})) continue;
        for (int j = i; j < i + 4; j++) n = top_insert(top, n, k, j, l[j]);
    }
    for (; i < V; i++) n = top_insert(top, n, k, i, l[i]);
    for (int j = 0; j < n; j++) top[j].logprob = (float)(top[j].logprob - lse);
}

// ---- candidates ----------------------------------------------------------------

static int better(const cand *a, const cand *b) { return a->p > b->p || (a->p == b->p && a->id < b->id); }

// Reorders c[0..n) so that c[0..k) hold the k best, in no particular order
// (Hoare quickselect on the strict order `better`).
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

// Sorts the most likely head of c[0..n) a growing piece at a time until
// the running mass reaches `need` (>= need, or > need when strict) and
// returns how many tokens that took; -1 if all n fall short (then c is
// fully sorted). The fallback of `crossing`.
static int sorted_prefix(cand *c, int n, double need, int strict) {
    double acc = 0;
    int done = 0;
    for (int head = n < 64 ? n : 64;; head = head * 4 < n ? head * 4 : n) {
        select_best(c + done, n - done, head - done);
        qsort(c + done, (size_t)(head - done), sizeof *c, cand_cmp);
        for (; done < head; done++) {
            acc += c[done].p;
            if (strict ? acc > need : acc >= need) return done + 1;
        }
        if (head == n) return -1;
    }
}

// Buckets of p by its float bits (positive floats order as their bits):
// exponent and 4 mantissa bits, 1/16 of an octave each.
enum { N_BUCKETS = 2048 };
static int bucket(float p) {
    uint32_t b;
    memcpy(&b, &p, sizeof b);
    return (int)(b >> 19) & (N_BUCKETS - 1);
}

static void swap_cand(cand *c, int i, int j) {
    cand t = c[i];
    c[i] = c[j];
    c[j] = t;
}

// The smallest most-likely prefix of c[0..n) (order: p, then lower id)
// whose mass reaches `need` (>= need, or > need when strict): reorders c so
// that it is c[0..j), its last token c[j - 1], and returns j; -1 if the
// whole mass falls short. Instead of sorting, the mass is bucketed by p;
// only the bucket where it crosses is sorted. mass: N_BUCKETS scratch.
static int crossing(cand *c, int n, double need, int strict, double *mass) {
    memset(mass, 0, N_BUCKETS * sizeof *mass);
    for (int i = 0; i < n; i++) mass[bucket(c[i].p)] += c[i].p;
    double acc = 0;
    int b = N_BUCKETS - 1;
    for (; b >= 0; b--) {
        if (strict ? acc + mass[b] > need : acc + mass[b] >= need) break;
        acc += mass[b];
    }
    if (b < 0) return -1;
    int hi = 0;
    for (int i = 0; i < n; i++)
        if (bucket(c[i].p) > b) swap_cand(c, i, hi++);
    int end = hi;
    for (int i = hi; i < n; i++)
        if (bucket(c[i].p) == b) swap_cand(c, i, end++);
    qsort(c + hi, (size_t)(end - hi), sizeof *c, cand_cmp);
    for (int i = hi; i < end; i++) {
        acc += c[i].p;
        if (strict ? acc > need : acc >= need) return i + 1;
    }
    return sorted_prefix(c, n, need, strict); // the bucket sums rounded the other way: sort after all
}

// Collects into c every finite token whose scaled logit x = (l - m) * inv_t
// is at least lo (-inf: every finite token), with p = exp(x) (the
// polynomial exp). Returns how many.
static int collect(const float *l, int V, float m, float inv_t, float lo, cand *c) {
    cpu_v4 mv = cpu_splat_v4(m), sv = cpu_splat_v4(inv_t), lov = cpu_splat_v4(lo);
    int n = 0, i = 0;
    for (; i + 4 <= V; i += 4) {
        cpu_v4 v = cpu_v4_load(l + i), x = (v - mv) * sv;
        cpu_i4 in = (x >= lov) & (v > cpu_splat_v4(-INFINITY));
        if (!any_lane(in)) continue;
        cpu_v4 p = cpu_exp_v4(x);
        for (int k = 0; k < 4; k++)
            if (in[k]) c[n++] = (cand){p[k], i + k};
    }
    for (; i < V; i++) {
        float x = (l[i] - m) * inv_t;
        if (l[i] > -INFINITY && x >= lo) c[n++] = (cand){cpu_exp_v4(cpu_splat_v4(x))[0], i};
    }
    return n;
}

// The thresholds on x = (l - max) / T the candidates are taken at: the
// first whose mass suffices (p >= e^-3, e^-8, e^-16; -inf: every token).
// Each level costs a masked sum in the normaliser's pass: few, far apart.
enum { N_LEVELS = 4 };
static const float level_lo[N_LEVELS] = {-3, -8, -16, -INFINITY};

// Z = sum of exp(x) over l (V), and in mass[lv] the part with x >= level_lo[lv].
static double sum_exp_levels_v4(const float *l, int V, float m, float inv_t, double mass[N_LEVELS]) {
    cpu_v4 mv = cpu_splat_v4(m), sv = cpu_splat_v4(inv_t);
    for (int lv = 0; lv < N_LEVELS; lv++) mass[lv] = 0;
    int i = 0;
    while (i < V) {
        cpu_v4 acc[N_LEVELS] = {{0}};
        int end = i + 512 < V ? i + 512 : V;
        for (; i + 4 <= end; i += 4) {
            cpu_v4 x = (cpu_v4_load(l + i) - mv) * sv, e = cpu_exp_v4(x);
            for (int lv = 0; lv < N_LEVELS - 1; lv++) acc[lv] += cpu_as_v4((x >= cpu_splat_v4(level_lo[lv])) & cpu_as_i4(e));
            acc[N_LEVELS - 1] += e;
        }
        for (; i < end; i++) { // the tail of the row
            float x = (l[i] - m) * inv_t, e = cpu_exp_v4(cpu_splat_v4(x))[0];
            for (int lv = 0; lv < N_LEVELS; lv++) acc[lv][0] += x >= level_lo[lv] ? e : 0;
        }
        for (int lv = 0; lv < N_LEVELS; lv++) mass[lv] += (double)((acc[lv][0] + acc[lv][1]) + (acc[lv][2] + acc[lv][3]));
    }
    return mass[N_LEVELS - 1];
}

static double sum_exp_levels(const float *l, int V, float m, float inv_t, double mass[N_LEVELS]) {
#if CPU_HAVE_AVX2
    if (use_avx2()) return sum_exp_avx2(l, V, m, inv_t, N_LEVELS, level_lo, mass);
#endif
    return sum_exp_levels_v4(l, V, m, inv_t, mass);
}

// ---- temperature, filters, the draw ----------------------------------------------

typedef struct draw_ctx {
    const float *l;
    int V;
    float m, inv_t;
    int n_finite;
    const bk_sample_row *r;
    cand *c;       // (V) candidates
    double *hist;  // (N_BUCKETS) crossing's scratch
} draw_ctx;

// The draw over the kept tokens c[0..n): walk most likely first until the
// mass passes u * their sum.
static int32_t draw(const draw_ctx *d, int n) {
    cand *c = d->c;
    int j = crossing(c, n, d->r->u * sum_p(c, n), 1, d->hist);
    if (j > 0) return c[j - 1].id;
    int last = 0; // u * sum rounded up past the last step: the least likely with p > 0
    for (int i = 1; i < n; i++)
        if (c[i].p > 0 && better(&c[last], &c[i])) last = i;
    return c[last].id;
}

static int min_p_filter(cand *c, int n, float min_p) {
    int kept = 0;
    for (int i = 0; i < n; i++)
        if (c[i].p >= min_p) c[kept++] = c[i];
    return kept;
}

// top_k set: the k best of the finite tokens, found among candidates of
// lowered thresholds until there are k of them. Returns k (c[0..k) the set).
static int top_k_set(const draw_ctx *d, int k) {
    for (int lv = 0;; lv++) {
        int n = collect(d->l, d->V, d->m, d->inv_t, level_lo[lv], d->c);
        if (n >= k || lv == N_LEVELS - 1) {
            select_best(d->c, n, k);
            return k;
        }
    }
}

// Without top_k: the candidates of the first level whose mass reaches
// `need` hold the most likely prefix that matters; p_floor (min_p, or 0)
// is the lowest p that can be kept, so no level goes below it.
static int cover(const draw_ctx *d, const double mass[N_LEVELS], double need, float p_floor) {
    int lv = 0;
    while (lv < N_LEVELS - 1 && !(mass[lv] >= need * (1 + 1e-4))) lv++; // margin: Z is approximate
    float lo = level_lo[lv];
    float lfloor = p_floor > 0 ? logf(p_floor) - 1e-3f : -INFINITY; // slack: min_p is applied exactly later
    return collect(d->l, d->V, d->m, d->inv_t, lo > lfloor ? lo : lfloor, d->c);
}

static int32_t sample_filtered(const draw_ctx *d) {
    const bk_sample_row *r = d->r;
    cand *c = d->c;
    double mass[N_LEVELS];
    if (r->top_k > 0 && r->top_k < d->n_finite) {
        int n = top_k_set(d, r->top_k);
        if (r->top_p < 1.0f) {
            int j = crossing(c, n, r->top_p * sum_p(c, n), 0, d->hist);
            if (j > 0) n = j; // else rounding left the sum a hair short: keep all
        }
        if (r->min_p > 0.0f) n = min_p_filter(c, n, r->min_p);
        return draw(d, n);
    }
    if (r->top_p == 1.0f && r->min_p > 0.0f) { // kept = {p >= min_p}: no normaliser needed
        for (int lv = 0; lv < N_LEVELS; lv++) mass[lv] = 0;
        int n = cover(d, mass, 1, r->min_p);
        return draw(d, min_p_filter(c, n, r->min_p));
    }
    double z = sum_exp_levels(d->l, d->V, d->m, d->inv_t, mass);
    double need = r->top_p < 1.0f ? r->top_p * z : r->u * z;
    int n = cover(d, mass, need, r->min_p);
    if (r->top_p < 1.0f) {
        int j = crossing(c, n, need, 0, d->hist);
        if (j > 0) n = j; // else the candidates are all that can be kept
        if (r->min_p > 0.0f) n = min_p_filter(c, n, r->min_p);
        return draw(d, n);
    }
    // Every finite token is kept: the walk crosses u * z within the
    // candidates (their mass passed it), or they are all of them.
    int j = crossing(c, n, need, 1, d->hist);
    return j > 0 ? c[j - 1].id : draw(d, n);
}

// ---- one row ---------------------------------------------------------------------

// scratch: N_BUCKETS doubles then V cands (unused when greedy).
static void sample_row(float *l, int V, const bk_sample_row *r, bk_sample_out *out, void *scratch) {
    if (r->allowed) apply_mask(l, V, r->allowed);
    apply_edits(l, r);
    row_max mx = clean_and_find_max(l, V);
    out->token = -1;
    out->logprob = NAN;
    out->n_top = 0;
    if (mx.argmax < 0) return;
    out->n_top = r->top_logprobs < V ? r->top_logprobs : V;
    double lse = NAN;
    if (r->want_logprob || out->n_top > 0) lse = mx.m + log(sum_exp(l, V, mx.m, 1.0f));
    if (out->n_top > 0) top_logprobs(l, V, out->n_top, lse, out->top);
    int32_t tok = mx.argmax;
    if (!(r->temperature < 1e-5f)) {
        draw_ctx d = {l, V, mx.m, 1.0f / r->temperature, mx.n_finite, r, (cand *)((double *)scratch + N_BUCKETS),
                      scratch};
        tok = sample_filtered(&d);
    }
    out->token = tok;
    if (r->want_logprob || out->n_top > 0) out->logprob = (float)(l[tok] - lse);
}

typedef struct sample_job {
    float *logits;
    int V;
    const bk_sample_row *rows;
    bk_sample_out *out;
} sample_job;

static void sample_task(void *ctx, int64_t i, int thread) {
    const sample_job *j = ctx;
    int greedy = j->rows[i].temperature < 1e-5f;
    void *scratch = greedy ? NULL : cpu_pool_scratch(thread, N_BUCKETS * sizeof(double) + (size_t)j->V * sizeof(cand));
    sample_row(j->logits + i * (int64_t)j->V, j->V, &j->rows[i], &j->out[i], scratch);
}

// Rows are independent: one task each on the pool.
void cpu_sample(float *logits, int N, int V, const bk_sample_row *rows, bk_sample_out *out) {
    sample_job j = {logits, V, rows, out};
    cpu_pool_run(N, sample_task, &j);
}
