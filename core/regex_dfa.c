// regex_dfa: from a byte NFA to the DFA the engine walks. Subset
// construction over byte classes (bytes no NFA range tells apart), with a
// hash table of NFA state sets; then trimming (drop what cannot reach
// accept), Hopcroft minimization (states kept apart by their labels:
// accept, char_end, key_name, key_pats), a BFS renumbering from the start
// and merging of byte classes whose columns are equal.
#include <stdlib.h>
#include <string.h>

#include "regex_int.h"

#define RX_MAX_POOL (1 << 22) // subset entries in all subsets together

static uint64_t hash_ints(const int32_t *v, size_t n) {
    uint64_t h = 1469598103934665603ull ^ n;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint32_t)v[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

// ---- the subset construction ----

typedef struct subset {
    const rx_nfa *nfa;
    rx_labels lab;
    int32_t n_classes;
    uint8_t cls[256];    // byte -> class
    uint8_t iv[256];     // byte -> interval (see subset_classes)
    uint8_t iv_cls[256]; // interval -> class
    rx_ivec pool;        // the subsets (sorted entries, see ended()), back to back
    rx_ivec off, len;    // per DFA state: its subset in pool
    rx_ivec next;        // [n_states * n_classes]
    int32_t *tab;        // open addressing: DFA state + 1, 0 empty
    size_t tab_cap;
    int32_t *mark;       // per entry: generation of the last closure that met it
    int32_t gen;
    rx_ivec stack, set;  // closure scratch
    rx_ivec tmp;         // sort scratch
    rx_ivec *bucket;     // per class: the entries one byte of it leads to
    uint64_t *bucket_hash;
} subset;

// Byte classes. First intervals: cut at every lo and hi + 1 of the NFA's
// ranges, so each range is a run of intervals. Then intervals covered by
// exactly the same ranges join one class: each distinct range splits the
// classes it covers only in part.
static void subset_classes(subset *S) {
    uint8_t cut[257] = {0}, seen[256 * 32] = {0}; // seen: a bit per (lo, hi)
    cut[0] = 1;
    for (int32_t i = 0; i < S->nfa->n; i++) {
        const rx_nstate *q = &S->nfa->s[i];
        if (q->out >= 0) cut[q->lo] = 1, cut[q->hi + 1] = 1;
    }
    int32_t n_iv = -1;
    for (int b = 0; b < 256; b++) S->iv[b] = (uint8_t)(n_iv += cut[b]);
    n_iv++;
    int32_t ncls = 1, inside[256], total[256], fresh[256];
    memset(S->iv_cls, 0, sizeof S->iv_cls);
    for (int32_t i = 0; i < S->nfa->n; i++) {
        const rx_nstate *q = &S->nfa->s[i];
        int bit = q->lo * 256 + q->hi;
        if (q->out < 0 || seen[bit >> 3] & (1 << (bit & 7))) continue;
        seen[bit >> 3] |= (uint8_t)(1 << (bit & 7));
        memset(inside, 0, (size_t)ncls * sizeof *inside), memset(total, 0, (size_t)ncls * sizeof *total);
        for (int32_t j = 0; j < n_iv; j++) total[S->iv_cls[j]]++;
        for (int32_t j = S->iv[q->lo]; j <= S->iv[q->hi]; j++) inside[S->iv_cls[j]]++;
        for (int32_t c = 0, n0 = ncls; c < n0; c++) fresh[c] = inside[c] && inside[c] < total[c] ? ncls++ : -1;
        for (int32_t j = S->iv[q->lo]; j <= S->iv[q->hi]; j++)
            if (fresh[S->iv_cls[j]] >= 0) S->iv_cls[j] = (uint8_t)fresh[S->iv_cls[j]];
    }
    for (int b = 0; b < 256; b++) S->cls[b] = S->iv_cls[S->iv[b]];
    S->n_classes = ncls;
}

// Subsets hold NFA states as q * 2 + ended: "ended" states were reached
// through a $ assertion, so of their byte edges only the closing quote
// (fin) counts.
static int ended(int32_t e) {
    return e & 1;
}

static const rx_nstate *nstate(const subset *S, int32_t e) {
    return &S->nfa->s[e >> 1];
}

// Whether the byte edge of entry e can be taken.
static int can_step(const subset *S, int32_t e) {
    const rx_nstate *q = nstate(S, e);
    return q->out >= 0 && (!ended(e) || q->fin);
}

// Whether the closure keeps entry e: only entries that consume a byte,
// accept or mark a boundary tell sets apart.
static int important(const subset *S, int32_t e) {
    const rx_nstate *q = nstate(S, e);
    return can_step(S, e) || q->tag >= 0 || q->bnd;
}

_Static_assert(RX_MAX_NFA <= (1 << 18), "sort_states sorts 19-bit subset entries");

// Sorts v[0..n) (subset entries, below 2^19, see ended()):
// insertion sort when short, else two 10-bit radix passes through tmp.
static int sort_states(int32_t *v, size_t n, rx_ivec *tmp) {
    if (n <= 48) {
        for (size_t i = 1; i < n; i++) {
            int32_t x = v[i];
            size_t j = i;
            for (; j > 0 && v[j - 1] > x; j--) v[j] = v[j - 1];
            v[j] = x;
        }
        return 0;
    }
    if (rx_ivec_grow(tmp, n)) return -1;
    int32_t *src = v, *dst = tmp->v;
    for (int shift = 0; shift < 20; shift += 10) {
        int32_t cnt[1025] = {0};
        for (size_t i = 0; i < n; i++) cnt[((src[i] >> shift) & 1023) + 1]++;
        for (int b = 0; b < 1024; b++) cnt[b + 1] += cnt[b];
        for (size_t i = 0; i < n; i++) dst[cnt[(src[i] >> shift) & 1023]++] = src[i];
        int32_t *t = src;
        src = dst, dst = t;
    }
    return 0; // two passes: the result is back in v
}

// The epsilon closure of S->stack's entries into S->set (unsorted). ^
// edges are taken only when bol (no character read yet); $ edges lead to
// ended entries.
static int closure_raw(subset *S, int bol) {
    S->gen++;
    S->set.n = 0;
    for (size_t i = 0; i < S->stack.n; i++) S->mark[S->stack.v[i]] = S->gen;
    while (S->stack.n) {
        int32_t e = S->stack.v[--S->stack.n];
        if (important(S, e) && rx_ivec_push(&S->set, e)) return -1;
        for (int32_t k = nstate(S, e)->eps; k >= 0; k = S->nfa->e[k].next) {
            const rx_nedge *edge = &S->nfa->e[k];
            if (edge->kind == RX_EPS_BOL && !bol) continue;
            int32_t t = edge->to * 2 + (ended(e) || edge->kind == RX_EPS_EOL);
            if (S->mark[t] == S->gen) continue;
            S->mark[t] = S->gen;
            if (rx_ivec_push(&S->stack, t)) return -1;
        }
    }
    return 0;
}

// The closure, sorted. One that reaches the search tail is the tail's
// closure alone (see rx_nfa.any_tail): .*[a-z]{1,255}.* then has a state
// per count before the first letter, not a subset per run of letters.
static int closure(subset *S, int bol) {
    if (closure_raw(S, bol)) return -1;
    int32_t tail = S->nfa->any_tail;
    if (tail >= 0 && S->mark[tail * 2] == S->gen) {
        S->stack.n = 0;
        if (rx_ivec_push(&S->stack, tail * 2) || closure_raw(S, 0)) return -1;
    }
    return sort_states(S->set.v, S->set.n, &S->tmp);
}

static int tab_rehash(subset *S) {
    size_t cap = S->tab_cap ? S->tab_cap * 2 : 1024;
    int32_t *t = calloc(cap, sizeof *t);
    if (!t) return -1;
    for (size_t d = 0; d < S->off.n; d++) {
        size_t h = hash_ints(S->pool.v + S->off.v[d], (size_t)S->len.v[d]) & (cap - 1);
        while (t[h]) h = (h + 1) & (cap - 1);
        t[h] = (int32_t)d + 1;
    }
    free(S->tab);
    S->tab = t, S->tab_cap = cap;
    return 0;
}

// The DFA state of S->set, added if new; -1 on out of memory, -2 too many
// states, -3 state sets too large in all.
static int32_t intern(subset *S) {
    if (S->off.n * 2 >= S->tab_cap && tab_rehash(S)) return -1;
    size_t h = hash_ints(S->set.v, S->set.n) & (S->tab_cap - 1);
    for (; S->tab[h]; h = (h + 1) & (S->tab_cap - 1)) {
        int32_t d = S->tab[h] - 1;
        if ((size_t)S->len.v[d] == S->set.n &&
            !memcmp(S->pool.v + S->off.v[d], S->set.v, S->set.n * sizeof *S->set.v))
            return d;
    }
    if (S->off.n >= RX_MAX_RAW) return -2;
    if (S->pool.n + S->set.n > RX_MAX_POOL) return -3;
    int32_t d = (int32_t)S->off.n;
    if (rx_ivec_push(&S->off, (int32_t)S->pool.n) || rx_ivec_push(&S->len, (int32_t)S->set.n)) return -1;
    for (size_t i = 0; i < S->set.n; i++)
        if (rx_ivec_push(&S->pool, S->set.v[i])) return -1;
    S->tab[h] = d + 1;
    return d;
}

// An earlier class of this row whose NFA targets equal class c's (the same
// list in the same order, as they are gathered in one pass), or -1. Many
// classes of a row lead to one state; this spares their closures.
static int32_t same_bucket(subset *S, int32_t c) {
    const rx_ivec *b = &S->bucket[c];
    if (!b->n) return -1;
    uint64_t h = hash_ints(b->v, b->n);
    S->bucket_hash[c] = h;
    for (int32_t e = 0; e < c; e++)
        if (S->bucket_hash[e] == h && S->bucket[e].n == b->n && !memcmp(S->bucket[e].v, b->v, b->n * sizeof *b->v))
            return e;
    return -1;
}

// Fills row d of the transition table.
static int expand(subset *S, int32_t d) {
    for (int32_t c = 0; c < S->n_classes; c++) S->bucket[c].n = 0;
    for (int32_t i = 0; i < S->len.v[d]; i++) {
        int32_t e = S->pool.v[S->off.v[d] + i];
        if (!can_step(S, e)) continue;
        const rx_nstate *q = nstate(S, e);
        for (int32_t j = S->iv[q->lo]; j <= S->iv[q->hi]; j++) {
            rx_ivec *bk = &S->bucket[S->iv_cls[j]];
            if (bk->n && bk->v[bk->n - 1] == q->out * 2) continue; // this range met the class already
            if (rx_ivec_push(bk, q->out * 2)) return -1;
        }
    }
    if (rx_ivec_grow(&S->next, (size_t)(d + 1) * (size_t)S->n_classes)) return -1;
    for (int32_t c = 0; c < S->n_classes; c++) {
        int32_t t = -1, same = same_bucket(S, c);
        if (same >= 0) {
            t = S->next.v[(size_t)d * (size_t)S->n_classes + (size_t)same];
        } else if (S->bucket[c].n) {
            S->stack.n = 0;
            for (size_t i = 0; i < S->bucket[c].n; i++) {
                int32_t q = S->bucket[c].v[i];
                if (S->mark[q] == S->gen + 1) continue;
                S->mark[q] = S->gen + 1;
                if (rx_ivec_push(&S->stack, q)) return -1;
            }
            // Only the opening quote comes before the first character.
            if (closure(S, d == 0 && S->lab.json)) return -1;
            if ((t = intern(S)) < 0) return t;
        }
        S->next.v[(size_t)d * (size_t)S->n_classes + (size_t)c] = t;
    }
    S->next.n = (size_t)(d + 1) * (size_t)S->n_classes;
    return 0;
}

rx_dfa *rx_dfa_alloc(int32_t n_states, int32_t n_classes, int keys, int json) {
    rx_dfa *d = calloc(1, sizeof *d);
    if (!d) return NULL;
    d->n_states = n_states, d->n_classes = n_classes;
    d->next = malloc((size_t)n_states * (size_t)n_classes * sizeof *d->next + 1);
    d->accept = calloc((size_t)n_states + 1, 1);
    int bad = !d->next || !d->accept;
    if (keys) {
        d->key_name = malloc((size_t)n_states * sizeof *d->key_name + 1);
        d->key_pats = calloc((size_t)n_states + 1, sizeof *d->key_pats);
        bad |= !d->key_name || !d->key_pats;
    }
    if (json) bad |= !(d->char_end = calloc((size_t)n_states + 1, 1));
    if (bad) rx_free(d), d = NULL;
    return d;
}

// The labels of DFA state d from its NFA set.
static void subset_label(const subset *S, rx_dfa *out, int32_t d) {
    if (out->key_name) out->key_name[d] = -1;
    for (int32_t i = 0; i < S->len.v[d]; i++) {
        const rx_nstate *q = nstate(S, S->pool.v[S->off.v[d] + i]);
        if (q->bnd && out->char_end) out->char_end[d] = 1;
        if (q->tag < 0) continue;
        out->accept[d] = 1;
        if (!S->lab.keys) continue;
        if (q->tag < S->lab.n_names) out->key_name[d] = q->tag;
        else if (q->tag < S->lab.n_names + 64) out->key_pats[d] |= 1ull << (q->tag - S->lab.n_names);
    }
}

static void subset_free(subset *S) {
    free(S->pool.v), free(S->off.v), free(S->len.v), free(S->next.v);
    free(S->tab), free(S->mark), free(S->stack.v), free(S->set.v), free(S->tmp.v);
    if (S->bucket)
        for (int32_t c = 0; c < S->n_classes; c++) free(S->bucket[c].v);
    free(S->bucket), free(S->bucket_hash);
}

static rx_dfa *subset_result(subset *S, err_t *err) {
    int32_t n = (int32_t)S->off.n;
    rx_dfa *d = rx_dfa_alloc(n, S->n_classes, S->lab.keys, S->lab.json);
    if (!d) return err_set(err, "regex: out of memory"), NULL;
    memcpy(d->cls, S->cls, sizeof d->cls);
    free(d->next); // the table built is handed over, not copied
    d->next = S->next.v;
    S->next.v = NULL;
    for (int32_t i = 0; i < n; i++) subset_label(S, d, i);
    return d;
}

rx_dfa *rx_determinize(const rx_nfa *n, rx_labels lab, err_t *err) {
    subset S = {.nfa = n, .lab = lab};
    subset_classes(&S);
    rx_dfa *d = NULL;
    int r = -1;
    S.mark = calloc((size_t)n->n * 2, sizeof *S.mark);
    S.bucket = calloc((size_t)S.n_classes, sizeof *S.bucket);
    S.bucket_hash = calloc((size_t)S.n_classes, sizeof *S.bucket_hash);
    if (S.mark && S.bucket && S.bucket_hash && !rx_ivec_push(&S.stack, n->start * 2)) {
        r = closure(&S, 1);
        if (!r) r = intern(&S) < 0 ? -1 : 0;
        for (size_t i = 0; !r && i < S.off.n; i++) r = expand(&S, (int32_t)i);
    }
    if (r == -2)
        err_set(err, "regex: pattern too complex (more than %d states)", RX_MAX_STATES);
    else if (r == -3)
        err_set(err, "regex: pattern too complex (its state sets pass %d NFA states in all)", RX_MAX_POOL);
    else if (r)
        err_set(err, "regex: out of memory");
    else
        d = subset_result(&S, err);
    subset_free(&S);
    return d ? rx_finish(d, err) : NULL;
}

// ---- trimming ----

// live[s] = 1 when s can reach an accepting state (reverse BFS).
static int live_states(const rx_dfa *d, uint8_t *live) {
    size_t n = (size_t)d->n_states, k = (size_t)d->n_classes;
    int32_t *cnt = calloc(n + 1, sizeof *cnt), *src = malloc(n * k * sizeof *src + 1), *q = malloc(n * sizeof *q + 1);
    if (!cnt || !src || !q) return free(cnt), free(src), free(q), -1;
    for (size_t i = 0; i < n * k; i++)
        if (d->next[i] >= 0) cnt[d->next[i] + 1]++;
    for (size_t s = 0; s < n; s++) cnt[s + 1] += cnt[s];
    int32_t *pos = calloc(n + 1, sizeof *pos);
    if (!pos) return free(cnt), free(src), free(q), -1;
    memcpy(pos, cnt, (n + 1) * sizeof *pos);
    for (size_t i = 0; i < n * k; i++)
        if (d->next[i] >= 0) src[pos[d->next[i]]++] = (int32_t)(i / k);
    size_t qn = 0;
    for (size_t s = 0; s < n; s++)
        if ((live[s] = d->accept[s])) q[qn++] = (int32_t)s;
    while (qn) {
        int32_t t = q[--qn];
        for (int32_t j = cnt[t]; j < cnt[t + 1]; j++)
            if (!live[src[j]]) live[src[j]] = 1, q[qn++] = src[j];
    }
    free(cnt), free(src), free(q), free(pos);
    return 0;
}

// ---- Hopcroft minimization ----
//
// States 0..n-1 plus a sink n (the target of every -1). The partition keeps
// each block's states contiguous in elem. A splitter block A is taken with
// all its incoming edges at once: they are bucketed by class, and for each
// class the predecessors are marked (moved to the front of their blocks),
// then each touched block is cut in two. Every initial block but the sink's
// starts in the worklist (Hopcroft's rule allows leaving one out, and the
// sink alone never splits), so edges into the sink are never walked: only
// the DFA's real edges are stored reversed. After a split the worklist gets
// the new half, or the smaller half when the old block was not waiting.

typedef struct hop {
    int32_t n, k;           // states with the sink, classes
    int32_t *in_off;        // edges into t: in_cls/in_src[in_off[t] .. in_off[t+1])
    uint8_t *in_cls;
    int32_t *in_src;
    int32_t *elem, *loc, *blk, *first, *end, *mark;
    int32_t nb;
    int32_t *work, nwork;   // block stack
    uint8_t *inwork;
    int32_t *touched;       // scratch: blocks marked for one class
    int32_t *by_cls, n_by;  // scratch: a splitter's in-edges sorted by class
    int32_t cls_off[257];
} hop;

static int label_eq(const rx_dfa *d, int32_t s, int32_t t) {
    if (d->accept[s] != d->accept[t]) return 0;
    if (d->char_end && d->char_end[s] != d->char_end[t]) return 0;
    if (d->key_name && (d->key_name[s] != d->key_name[t] || d->key_pats[s] != d->key_pats[t])) return 0;
    return 1;
}

static uint64_t label_hash(const rx_dfa *d, int32_t s) {
    uint64_t h = d->accept[s] * 31u + (d->char_end ? d->char_end[s] : 0);
    if (d->key_name) h = (h * 1000003u + (uint32_t)d->key_name[s]) * 0x9E3779B97F4A7C15ull ^ d->key_pats[s];
    return (h ^ (h >> 29)) * 0x9E3779B97F4A7C15ull;
}

// blk[s] for the initial partition: equal labels, the sink alone.
static int initial_blocks(const rx_dfa *d, int32_t *blk) {
    size_t cap = 16;
    while (cap < (size_t)d->n_states * 2) cap *= 2;
    int32_t *tab = calloc(cap, sizeof *tab), nb = 0;
    if (!tab) return -1;
    for (int32_t s = 0; s < d->n_states; s++) {
        size_t i = (size_t)(label_hash(d, s) >> 20) & (cap - 1);
        for (; tab[i]; i = (i + 1) & (cap - 1))
            if (label_eq(d, tab[i] - 1, s)) break;
        if (!tab[i]) tab[i] = s + 1, blk[s] = nb++;
        else blk[s] = blk[tab[i] - 1];
    }
    blk[d->n_states] = nb++;
    free(tab);
    return nb;
}

// The DFA's edges reversed, grouped by target (the sink gets none).
static int hop_reverse(hop *H, const rx_dfa *d) {
    size_t m = (size_t)d->n_states * (size_t)H->k, e = 0;
    H->in_off = calloc((size_t)H->n + 1, sizeof *H->in_off);
    if (!H->in_off) return -1;
    for (size_t i = 0; i < m; i++)
        if (d->next[i] >= 0) H->in_off[d->next[i] + 1]++, e++;
    for (int32_t t = 0; t < H->n; t++) H->in_off[t + 1] += H->in_off[t];
    H->in_cls = malloc(e + 1), H->in_src = malloc(e * sizeof *H->in_src + 1);
    H->by_cls = malloc(e * sizeof *H->by_cls + 1);
    int32_t *pos = malloc((size_t)H->n * sizeof *pos + 1);
    if (!H->in_cls || !H->in_src || !H->by_cls || !pos) return free(pos), -1;
    memcpy(pos, H->in_off, (size_t)H->n * sizeof *pos);
    for (size_t i = 0; i < m; i++) {
        int32_t t = d->next[i];
        if (t < 0) continue;
        H->in_cls[pos[t]] = (uint8_t)(i % (size_t)H->k), H->in_src[pos[t]++] = (int32_t)(i / (size_t)H->k);
    }
    free(pos);
    return 0;
}

static int hop_init(hop *H, const rx_dfa *d) {
    H->n = d->n_states + 1, H->k = d->n_classes;
    size_t n = (size_t)H->n;
    H->elem = malloc(n * sizeof(int32_t)), H->loc = malloc(n * sizeof(int32_t)), H->blk = malloc(n * sizeof(int32_t));
    H->first = malloc(n * sizeof(int32_t)), H->end = malloc(n * sizeof(int32_t)), H->mark = calloc(n, sizeof(int32_t));
    H->work = malloc(n * sizeof(int32_t)), H->inwork = calloc(n, 1), H->touched = malloc(n * sizeof(int32_t));
    if (!H->elem || !H->loc || !H->blk || !H->first || !H->end || !H->mark || !H->work || !H->inwork || !H->touched ||
        hop_reverse(H, d))
        return -1;
    if ((H->nb = initial_blocks(d, H->blk)) < 0) return -1;
    // Counting sort of the states by block.
    for (int32_t b = 0; b < H->nb; b++) H->end[b] = 0;
    for (int32_t s = 0; s < H->n; s++) H->end[H->blk[s]]++;
    for (int32_t b = 0, at = 0; b < H->nb; b++) H->first[b] = at, at += H->end[b], H->end[b] = H->first[b];
    for (int32_t s = 0; s < H->n; s++) H->loc[s] = H->end[H->blk[s]], H->elem[H->end[H->blk[s]]++] = s;
    for (int32_t b = 0; b + 1 < H->nb; b++) H->work[H->nwork++] = b, H->inwork[b] = 1; // the sink's block is last
    return 0;
}

static void hop_free(hop *H) {
    free(H->in_off), free(H->in_cls), free(H->in_src), free(H->by_cls);
    free(H->elem), free(H->loc), free(H->blk), free(H->first), free(H->end);
    free(H->mark), free(H->work), free(H->inwork), free(H->touched);
}

// Moves s to the marked front of its block.
static void hop_mark(hop *H, int32_t s, int32_t *nt) {
    int32_t b = H->blk[s], at = H->first[b] + H->mark[b];
    if (H->loc[s] < at) return; // already marked
    if (H->mark[b] == 0) H->touched[(*nt)++] = b;
    int32_t other = H->elem[at];
    H->elem[H->loc[s]] = other, H->loc[other] = H->loc[s];
    H->elem[at] = s, H->loc[s] = at;
    H->mark[b]++;
}

// Cuts each touched block into its marked front and the rest.
static void hop_split(hop *H, int32_t nt) {
    for (int32_t i = 0; i < nt; i++) {
        int32_t b = H->touched[i], m = H->mark[b];
        H->mark[b] = 0;
        if (m == H->end[b] - H->first[b]) continue;
        int32_t nb = H->nb++;
        H->first[nb] = H->first[b], H->end[nb] = H->first[b] + m, H->first[b] += m;
        for (int32_t j = H->first[nb]; j < H->end[nb]; j++) H->blk[H->elem[j]] = nb;
        int32_t add = H->inwork[b] || m <= H->end[b] - H->first[b] ? nb : b;
        if (!H->inwork[add]) H->work[H->nwork++] = add, H->inwork[add] = 1;
    }
}

// The in-edges of block a's states, sources sorted by class into by_cls
// (cls_off[c] .. cls_off[c+1]); taken before any split moves a's states.
static void hop_gather(hop *H, int32_t a) {
    int32_t k = H->k, pos[256];
    memset(H->cls_off, 0, (size_t)(k + 1) * sizeof *H->cls_off);
    for (int32_t i = H->first[a]; i < H->end[a]; i++) {
        int32_t t = H->elem[i];
        for (int32_t j = H->in_off[t]; j < H->in_off[t + 1]; j++) H->cls_off[H->in_cls[j] + 1]++;
    }
    for (int32_t c = 0; c < k; c++) H->cls_off[c + 1] += H->cls_off[c];
    memcpy(pos, H->cls_off, (size_t)k * sizeof *pos);
    for (int32_t i = H->first[a]; i < H->end[a]; i++) {
        int32_t t = H->elem[i];
        for (int32_t j = H->in_off[t]; j < H->in_off[t + 1]; j++) H->by_cls[pos[H->in_cls[j]]++] = H->in_src[j];
    }
}

static void hop_run(hop *H) {
    while (H->nwork) {
        int32_t a = H->work[--H->nwork];
        H->inwork[a] = 0;
        hop_gather(H, a);
        for (int32_t c = 0; c < H->k; c++) {
            if (H->cls_off[c] == H->cls_off[c + 1]) continue;
            int32_t nt = 0;
            for (int32_t j = H->cls_off[c]; j < H->cls_off[c + 1]; j++) hop_mark(H, H->by_cls[j], &nt);
            hop_split(H, nt);
        }
    }
}

// Blocks of equivalent states into blk (the sink's block included); returns
// their number, -1 on out of memory.
static int32_t minimize_blocks(const rx_dfa *d, int32_t *blk) {
    hop H = {0};
    int32_t nb = -1;
    if (!hop_init(&H, d)) {
        hop_run(&H);
        memcpy(blk, H.blk, (size_t)d->n_states * sizeof *blk);
        nb = H.nb;
    }
    hop_free(&H);
    return nb;
}

// ---- rebuilding: live blocks in BFS order from the start ----

// The new number of each block (-1 dead), BFS from the start's block.
static int32_t order_blocks(const rx_dfa *d, const int32_t *blk, int32_t nb, const uint8_t *live, int32_t *newid,
                            int32_t *rep) {
    for (int32_t b = 0; b < nb; b++) newid[b] = -1, rep[b] = -1;
    for (int32_t s = 0; s < d->n_states; s++)
        if (rep[blk[s]] < 0) rep[blk[s]] = s;
    int32_t *order = malloc((size_t)nb * sizeof *order + 1);
    if (!order) return -1;
    int32_t n = 0;
    newid[blk[0]] = n, order[n++] = blk[0];
    for (int32_t h = 0; h < n; h++) {
        const int32_t *row = d->next + (size_t)rep[order[h]] * (size_t)d->n_classes;
        for (int32_t c = 0; c < d->n_classes; c++) {
            if (row[c] < 0 || !live[row[c]] || newid[blk[row[c]]] >= 0) continue;
            newid[blk[row[c]]] = n, order[n++] = blk[row[c]];
        }
    }
    // order[] is reused by the caller through rep: rep[new id] = old state.
    int32_t *tmp = malloc((size_t)n * sizeof *tmp + 1);
    if (!tmp) return free(order), -1;
    for (int32_t i = 0; i < n; i++) tmp[i] = rep[order[i]];
    memcpy(rep, tmp, (size_t)n * sizeof *rep);
    free(tmp), free(order);
    return n;
}

static void copy_labels(rx_dfa *out, int32_t to, const rx_dfa *d, int32_t from) {
    out->accept[to] = d->accept[from];
    if (out->char_end) out->char_end[to] = d->char_end[from];
    if (out->key_name) out->key_name[to] = d->key_name[from], out->key_pats[to] = d->key_pats[from];
}

// Merges byte classes whose columns are equal (a hash per column first).
static void merge_classes(rx_dfa *d) {
    int32_t k = d->n_classes, n = d->n_states, map[256], first[256], nk = 0;
    uint64_t h[256];
    for (int32_t c = 0; c < k; c++) {
        h[c] = 1469598103934665603ull;
        for (int32_t s = 0; s < n; s++) h[c] = (h[c] ^ (uint32_t)d->next[(size_t)s * k + c]) * 1099511628211ull;
        map[c] = -1;
        for (int32_t j = 0; j < nk && map[c] < 0; j++) {
            int32_t e = first[j], s = 0;
            if (h[e] != h[c]) continue;
            while (s < n && d->next[(size_t)s * k + c] == d->next[(size_t)s * k + e]) s++;
            if (s == n) map[c] = j;
        }
        if (map[c] < 0) first[nk] = c, map[c] = nk++;
    }
    if (nk == k) return;
    for (int32_t s = 0; s < n; s++)
        for (int32_t c = 0; c < nk; c++) d->next[(size_t)s * nk + c] = d->next[(size_t)s * k + first[c]];
    for (int b = 0; b < 256; b++) d->cls[b] = (uint8_t)map[d->cls[b]];
    d->n_classes = nk;
}

static rx_dfa *rebuild(const rx_dfa *d, const int32_t *blk, int32_t nb, const uint8_t *live, err_t *err) {
    int32_t *newid = malloc((size_t)nb * sizeof *newid + 1), *rep = malloc((size_t)nb * sizeof *rep + 1);
    int32_t n = newid && rep ? order_blocks(d, blk, nb, live, newid, rep) : -1;
    rx_dfa *out = n < 0 ? NULL : n > RX_MAX_STATES ? NULL : rx_dfa_alloc(n, d->n_classes, d->key_name != NULL, d->char_end != NULL);
    if (n > RX_MAX_STATES) err_set(err, "regex: pattern too complex (more than %d states)", RX_MAX_STATES);
    else if (!out) err_set(err, "regex: out of memory");
    for (int32_t i = 0; out && i < n; i++) {
        const int32_t *row = d->next + (size_t)rep[i] * (size_t)d->n_classes;
        for (int32_t c = 0; c < d->n_classes; c++)
            out->next[(size_t)i * (size_t)d->n_classes + c] = row[c] < 0 || !live[row[c]] ? -1 : newid[blk[row[c]]];
        copy_labels(out, i, d, rep[i]);
    }
    if (out) memcpy(out->cls, d->cls, sizeof out->cls), merge_classes(out);
    free(newid), free(rep);
    return out;
}

rx_dfa *rx_finish(rx_dfa *d, err_t *err) {
    uint8_t *live = calloc((size_t)d->n_states + 1, 1);
    int32_t *blk = malloc((size_t)d->n_states * sizeof *blk + 1);
    rx_dfa *out = NULL;
    if (!live || !blk || live_states(d, live)) {
        err_set(err, "regex: out of memory");
    } else if (!live[0]) {
        err_set(err, "regex: matches no string");
    } else {
        // Edges into dead states become -1 first, so that a state leading to
        // a dead end and one without that edge are not kept apart.
        for (size_t i = 0; i < (size_t)d->n_states * (size_t)d->n_classes; i++)
            if (d->next[i] >= 0 && !live[d->next[i]]) d->next[i] = -1;
        int32_t nb = minimize_blocks(d, blk);
        if (nb < 0) err_set(err, "regex: out of memory");
        else out = rebuild(d, blk, nb, live, err);
    }
    free(live), free(blk);
    rx_free(d);
    return out;
}
