// sample: the CPU implementation of bk_ops.sample (core/sampler.h states
// the semantics; tests/sampler_ref.c is the earlier whole-vocabulary
// sampler the tests compare this one against).
//
// Cost per row of V logits, all in f32 over 4-lane vectors:
//   - the sparse edits (mask, penalties, bias): O(words of the mask + seen + biased);
//   - one read-only pass for the max and its lowest index (and the count of
//     finite logits); a NaN or +inf anywhere triggers one cleaning pass;
//   - logprobs only when asked: one pass of a polynomial exp for the
//     log-sum-exp, one thresholded pass for the top alternatives;
//   - temperature sampling: at most one exp pass for the normaliser Z (not
//     needed with top_k, or min_p without top_p), then threshold passes that
//     collect only the tokens whose probability can matter (p >= tau, tau
//     lowered 1e-3 -> 1e-6 -> 1e-10 -> 0 until their mass suffices), whose
//     probabilities are then computed exactly as the reference does
//     (expf((l - max) / T)) and sorted a growing head at a time.
// The draw walks the kept tokens most likely first (ties: lower id), so a
// given u picks the same token whichever filters are on.
//
// Accuracy: the polynomial exp is within 2 ulp of expf on [-87.3, 0] and 0
// below; sums are taken in f32 over chunks of 512 and the chunks added in
// double, so Z and the log-sum-exp are within ~1e-6 relative of the double
// sums of the reference (tests/test_sampler.c bounds what that changes).
#include <float.h>
#include <math.h>
#include <stdlib.h>

#include "cpu_ops.h"
#include "pool.h"

typedef int32_t cpu_i4 __attribute__((vector_size(16)));

// A candidate token: its unnormalised probability exp((l - max) / T).
typedef struct cand {
    float p;
    int32_t id;
} cand;

static inline cpu_i4 as_i4(cpu_v4 v) {
    cpu_i4 r;
    memcpy(&r, &v, sizeof r);
    return r;
}

static inline cpu_v4 as_v4(cpu_i4 v) {
    cpu_v4 r;
    memcpy(&r, &v, sizeof r);
    return r;
}

// mask lanes (all ones / zero) ? a : b
static inline cpu_v4 select_v4(cpu_i4 mask, cpu_v4 a, cpu_v4 b) { return as_v4((mask & as_i4(a)) | (~mask & as_i4(b))); }

static inline int any_lane(cpu_i4 m) { return (m[0] | m[1] | m[2] | m[3]) != 0; }

static inline cpu_v4 splat(float x) { return (cpu_v4){x, x, x, x}; }

// exp(x) for x <= 0 (-inf gives 0): 2^n * e^r with n = round(x / ln 2),
// |r| <= ln2 / 2, e^r by its degree-6 Taylor polynomial (truncation below
// 1.3e-7 relative); x < -87.3 (where expf is denormal or 0) gives 0.
static inline cpu_v4 exp_v4(cpu_v4 x) {
    cpu_i4 under = x < splat(-87.3f);
    x = select_v4(under, splat(-87.3f), x);
    cpu_v4 shift = splat(0x1.8p23f); // adding it rounds to an integer
    cpu_v4 n = (x * splat(1.44269504f) + shift) - shift;
    cpu_v4 r = x - n * splat(0.693359375f); // ln 2 in two parts: n * 355/512 is exact
    r = r + n * splat(2.12194440e-4f);
    cpu_v4 p = splat(1.0f / 720);
    p = p * r + splat(1.0f / 120);
    p = p * r + splat(1.0f / 24);
    p = p * r + splat(1.0f / 6);
    p = p * r + splat(0.5f);
    p = p * r + splat(1.0f);
    p = p * r + splat(1.0f);
    cpu_i4 e = (__builtin_convertvector(n, cpu_i4) + 127) << 23;
    return select_v4(under, (cpu_v4){0}, p * as_v4(e));
}

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

// Per-lane running max with its first index, reduced to the lowest index
// of the overall max; NaN never compares greater, so it is skipped here and
// flagged for cleaning.
static row_max find_max(const float *l, int V) {
    const cpu_v4 ninf = {-INFINITY, -INFINITY, -INFINITY, -INFINITY}, pinf = -ninf;
    cpu_v4 best = ninf;
    cpu_i4 idx = {0}, cnt = {0}, bad = {0}, iv = {0, 1, 2, 3};
    int i = 0;
    for (; i + 4 <= V; i += 4, iv += 4) {
        cpu_v4 v = cpu_v4_load(l + i);
        cpu_i4 gt = v > best;
        best = select_v4(gt, v, best);
        idx = (gt & iv) | (~gt & idx);
        cnt -= v > ninf;
        bad |= ~(v < pinf) & ~(v == ninf);
    }
    row_max r = {-INFINITY, -1, cnt[0] + cnt[1] + cnt[2] + cnt[3], any_lane(bad)};
    for (int k = 0; k < 4; k++)
        if (best[k] > r.m || (best[k] == r.m && best[k] > -INFINITY && idx[k] < r.argmax)) {
            r.m = best[k];
            r.argmax = idx[k];
        }
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
static double sum_exp(const float *l, int V, float m, float s) {
    double total = 0;
    cpu_v4 mv = {m, m, m, m}, sv = {s, s, s, s};
    int i = 0;
    while (i + 4 <= V) {
        cpu_v4 a = {0}, b = {0};
        int end = i + 512 < V ? i + 512 : V;
        for (; i + 8 <= end; i += 8) {
            a += exp_v4((cpu_v4_load(l + i) - mv) * sv);
            b += exp_v4((cpu_v4_load(l + i + 4) - mv) * sv);
        }
        for (; i + 4 <= end; i += 4) a += exp_v4((cpu_v4_load(l + i) - mv) * sv);
        total += (double)cpu_v8_sum(a, b);
    }
    for (; i < V; i++) {
        cpu_v4 x = {(l[i] - m) * s, -INFINITY, -INFINITY, -INFINITY};
        total += (double)exp_v4(x)[0];
    }
    return total;
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
// fully sorted).
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

// Collects into c every token whose scaled logit x = (l - m) * inv_t is at
// least lo (-inf: every finite token), with p = expf(x) as the reference
// computes it. Returns how many.
static int collect(const float *l, int V, float m, float inv_t, float lo, cand *c) {
    cpu_v4 mv = {m, m, m, m}, sv = {inv_t, inv_t, inv_t, inv_t}, lov = {lo, lo, lo, lo};
    int n = 0, i = 0;
    int all = lo == -INFINITY;
    for (; i + 4 <= V; i += 4) {
        cpu_v4 v = cpu_v4_load(l + i);
        if (!any_lane(all ? v > -INFINITY : (v - mv) * sv >= lov)) continue;
        for (int j = i; j < i + 4; j++) {
            float x = (l[j] - m) * inv_t;
            if (l[j] > -INFINITY && x >= lo) c[n++] = (cand){expf(x), j};
        }
    }
    for (; i < V; i++) {
        float x = (l[i] - m) * inv_t;
        if (l[i] > -INFINITY && x >= lo) c[n++] = (cand){expf(x), i};
    }
    return n;
}

// ---- temperature, filters, the draw ----------------------------------------------

typedef struct draw_ctx {
    const float *l;
    int V;
    float m, inv_t;
    int n_finite;
    const bk_sample_row *r;
    cand *c;
} draw_ctx;

// The draw over c[0..n), which are the kept tokens with c[0..sorted)
// already in order: walk most likely first until the mass passes u * sum.
static int32_t draw(cand *c, int n, double u) {
    double target = u * sum_p(c, n);
    int j = sorted_prefix(c, n, target, 1);
    if (j > 0) return c[j - 1].id;
    for (int i = n - 1; i > 0; i--) // u * sum rounded up past the last step
        if (c[i].p > 0) return c[i].id;
    return c[0].id;
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
    static const float lo[] = {-6.9f, -13.8f, -23.0f, -INFINITY}; // ln 1e-3, 1e-6, 1e-10
    for (int lv = 0;; lv++) {
        int n = collect(d->l, d->V, d->m, d->inv_t, lo[lv], d->c);
        if (n >= k || lo[lv] == -INFINITY) {
            select_best(d->c, n, k);
            return k;
        }
    }
}

// Without top_k: the candidates (p >= tau, tau lowered until their mass
// reaches `need` of the total z) hold the sorted prefix that matters.
// p_floor (min_p, or 0) is the lowest tau that can matter. Returns n and
// sets *all when the candidates are every token that can be kept.
static int cover(const draw_ctx *d, double need, float p_floor, int *all) {
    static const float lo[] = {-6.9f, -13.8f, -23.0f, -INFINITY};
    float lfloor = p_floor > 0 ? logf(p_floor) - 1e-3f : -INFINITY; // slack: min_p is applied exactly later
    for (int lv = 0;; lv++) {
        float t = lo[lv] > lfloor ? lo[lv] : lfloor;
        int n = collect(d->l, d->V, d->m, d->inv_t, t, d->c);
        *all = t == lfloor;
        if (*all || sum_p(d->c, n) >= need * (1 + 1e-4)) return n;
    }
}

static int32_t sample_filtered(const draw_ctx *d) {
    const bk_sample_row *r = d->r;
    cand *c = d->c;
    int k_on = r->top_k > 0 && r->top_k < d->n_finite;
    if (k_on) {
        int n = top_k_set(d, r->top_k);
        if (r->top_p < 1.0f) {
            int j = sorted_prefix(c, n, r->top_p * sum_p(c, n), 0);
            if (j > 0) n = j; // else rounding left the sum a hair short: keep all
        }
        if (r->min_p > 0.0f) n = min_p_filter(c, n, r->min_p);
        return draw(c, n, r->u);
    }
    if (r->top_p == 1.0f && r->min_p > 0.0f) { // kept = {p >= min_p}: no normaliser needed
        int all, n = cover(d, 0, r->min_p, &all);
        return draw(c, min_p_filter(c, n, r->min_p), r->u);
    }
    double z = sum_exp(d->l, d->V, d->m, d->inv_t);
    double need = r->top_p < 1.0f ? r->top_p * z : r->u * z;
    int all, n = cover(d, need, r->min_p, &all);
    if (r->top_p < 1.0f) {
        int j = sorted_prefix(c, n, need, 0);
        if (j > 0) n = j;
        if (r->min_p > 0.0f) n = min_p_filter(c, n, r->min_p);
        return draw(c, n, r->u);
    }
    // Every finite token is kept: the walk crosses u * z within the
    // candidates (their mass passed it), or they are all of them.
    int j = sorted_prefix(c, n, need, 1);
    return j > 0 ? c[j - 1].id : draw(c, n, r->u);
}

// ---- one row ---------------------------------------------------------------------

static void sample_row(float *l, int V, const bk_sample_row *r, bk_sample_out *out, cand *scratch) {
    if (r->allowed) apply_mask(l, V, r->allowed);
    apply_edits(l, r);
    row_max mx = clean_and_find_max(l, V);
    out->token = -1;
    out->logprob = NAN;
    out->n_top = r->top_logprobs < V ? r->top_logprobs : V;
    if (mx.argmax < 0) return;
    double lse = NAN;
    if (r->want_logprob || out->n_top > 0) lse = mx.m + log(sum_exp(l, V, mx.m, 1.0f));
    if (out->n_top > 0) top_logprobs(l, V, out->n_top, lse, out->top);
    int32_t tok = mx.argmax;
    if (!(r->temperature < 1e-5f)) {
        draw_ctx d = {l, V, mx.m, 1.0f / r->temperature, mx.n_finite, r, scratch};
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
    cand *scratch = greedy ? NULL : cpu_pool_scratch(thread, (size_t)j->V * sizeof(cand));
    sample_row(j->logits + i * (int64_t)j->V, j->V, &j->rows[i], &j->out[i], scratch);
}

// Rows are independent: one task each on the pool.
void cpu_sample(float *logits, int N, int V, const bk_sample_row *rows, bk_sample_out *out) {
    sample_job j = {logits, V, rows, out};
    cpu_pool_run(N, sample_task, &j);
}
