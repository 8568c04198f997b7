// regex_ops: DFAs made from other parts: rx_keys (the union of names and
// patterns with labelled accepting states), rx_intersect and the other
// products (rx_product); and the small accessors.
#include <string.h>

#include "regex_int.h"

// ---- rx_keys ----

// Links the branch starting at s (-1: its error is already set) to the
// union's start state.
static int keys_branch(rx_nfa *n, int32_t s, err_t *err) {
    if (s < 0) return -1;
    if (rx_nfa_eps(n, n->start, s)) return err_set(err, "regex: out of memory");
    return 0;
}

rx_dfa *rx_keys(const char *const *names, int n_names, const char *const *patterns, int n_patterns, int any_key,
                err_t *err) {
    if (n_patterns > 64) return err_set(err, "regex: rx_keys takes at most 64 patterns (got %d)", n_patterns), NULL;
    rx_nfa n = {.any_tail = -1};
    int r = (n.start = rx_nfa_state(&n)) < 0 ? err_set(err, "regex: out of memory") : 0;
    for (int i = 0; !r && i < n_names; i++)
        r = keys_branch(&n, rx_nfa_add_literal(&n, names[i], strlen(names[i]), i, err), err);
    for (int j = 0; !r && j < n_patterns; j++) {
        int32_t s = rx_nfa_add(&n, patterns[j], strlen(patterns[j]), RX_SEARCH | RX_JSON_STRING, n_names + j, err);
        if (s < 0) err_wrap(err, "key pattern %d (%s)", j, patterns[j]);
        r = keys_branch(&n, s, err);
    }
    n.any_tail = -1; // the patterns' tails are no shortcut in a union
    if (!r && any_key) r = keys_branch(&n, rx_nfa_add(&n, "[\\s\\S]*", 7, RX_JSON_STRING, n_names + 64, err), err);
    rx_dfa *d = r ? NULL : rx_determinize(&n, (rx_labels){.keys = 1, .n_names = n_names, .json = 1}, err);
    rx_nfa_free(&n);
    return d;
}

// ---- products: rx_intersect and the operations of regex_look.c ----

typedef struct pairmap {
    int64_t *key; // (ta + 1) * (b->n_states + 1) + tb + 1, -1 empty
    int32_t *val;
    size_t cap;
} pairmap;

static int64_t pair_key(int32_t ta, int32_t tb, int32_t nb) {
    return (int64_t)(ta + 1) * (nb + 1) + (tb + 1);
}

static int32_t pair_get(pairmap *m, int64_t key, int32_t val_if_new, int *added) {
    size_t i = (size_t)((uint64_t)key * 0x9E3779B97F4A7C15ull >> 20) & (m->cap - 1);
    for (; m->key[i] >= 0; i = (i + 1) & (m->cap - 1))
        if (m->key[i] == key) return *added = 0, m->val[i];
    m->key[i] = key, m->val[i] = val_if_new;
    *added = 1;
    return val_if_new;
}

// Makes room for `want` entries at load 1/2, rehashing the pairs so far.
static int pair_reserve(pairmap *m, size_t want, const rx_ivec *pairs, int32_t nb) {
    if (want * 2 <= m->cap) return 0;
    size_t cap = m->cap ? m->cap : 1024;
    while (want * 2 > cap) cap *= 2;
    int64_t *k = malloc(cap * sizeof *k);
    int32_t *v = malloc(cap * sizeof *v);
    if (!k || !v) return free(k), free(v), -1;
    memset(k, 0xff, cap * sizeof *k);
    free(m->key), free(m->val);
    *m = (pairmap){k, v, cap};
    int added;
    for (size_t j = 0; j < pairs->n / 2; j++) pair_get(m, pair_key(pairs->v[2 * j], pairs->v[2 * j + 1], nb), (int32_t)j, &added);
    return 0;
}

// Product classes: one per distinct (a class, b class) pair.
static int32_t product_classes(const rx_dfa *a, const rx_dfa *b, uint8_t *cls, uint8_t *ca, uint8_t *cb) {
    int32_t n = 0;
    for (int x = 0; x < 256; x++) {
        int32_t k = -1;
        for (int32_t j = 0; j < n && k < 0; j++)
            if (ca[j] == a->cls[x] && cb[j] == b->cls[x]) k = j;
        if (k < 0) k = n, ca[n] = a->cls[x], cb[n] = b->cls[x], n++;
        cls[x] = (uint8_t)k;
    }
    return n;
}

// The successor of state s (-1: dead, which stays dead) on class c.
static int32_t step(const rx_dfa *d, int32_t s, uint8_t c) {
    return s < 0 ? -1 : d->next[(size_t)s * d->n_classes + c];
}

// Whether a pair can still lead anywhere under op: AND needs both sides
// alive, ANDNOT a's side, OR either.
static int pair_alive(int op, int32_t ta, int32_t tb) {
    return op == RX_AND ? ta >= 0 && tb >= 0 : op == RX_ANDNOT ? ta >= 0 : ta >= 0 || tb >= 0;
}

typedef struct product {
    const rx_dfa *a, *b;
    int op;
    int32_t k;
    uint8_t cls[256], ca[256], cb[256];
    rx_ivec pairs, next; // (a state, b state) per product state; rows
} product;

// BFS over the reachable pairs. 0, -1 out of memory, -2 too many states.
static int product_walk(product *P) {
    pairmap m = {0};
    int32_t nb = P->b->n_states;
    int added, r = pair_reserve(&m, (size_t)P->k + 1, &P->pairs, nb);
    if (!r) pair_get(&m, pair_key(0, 0, nb), 0, &added);
    if (!r && (rx_ivec_push(&P->pairs, 0) || rx_ivec_push(&P->pairs, 0))) r = -1;
    for (size_t i = 0; !r && i < P->pairs.n / 2; i++) {
        int32_t sa = P->pairs.v[2 * i], sb = P->pairs.v[2 * i + 1];
        if (P->pairs.n / 2 > RX_MAX_RAW) r = -2;
        else r = pair_reserve(&m, P->pairs.n / 2 + (size_t)P->k, &P->pairs, nb);
        for (int32_t c = 0; !r && c < P->k; c++) {
            int32_t ta = step(P->a, sa, P->ca[c]), tb = step(P->b, sb, P->cb[c]), t = -1;
            if (pair_alive(P->op, ta, tb)) {
                t = pair_get(&m, pair_key(ta, tb, nb), (int32_t)(P->pairs.n / 2), &added);
                if (added && (rx_ivec_push(&P->pairs, ta) || rx_ivec_push(&P->pairs, tb))) r = -1;
            }
            if (!r && rx_ivec_push(&P->next, t)) r = -1;
        }
    }
    free(m.key), free(m.val);
    return r;
}

static int pair_accepts(const product *P, int32_t sa, int32_t sb) {
    int x = sa >= 0 && P->a->accept[sa], y = sb >= 0 && P->b->accept[sb];
    return P->op == RX_AND ? x && y : P->op == RX_ANDNOT ? x && !y : x || y;
}

static rx_dfa *product_dfa(product *P, err_t *err) {
    int json = P->a->char_end || P->b->char_end;
    rx_dfa *d = rx_dfa_alloc((int32_t)(P->pairs.n / 2), P->k, 0, json);
    if (!d) return err_set(err, "regex: out of memory"), NULL;
    memcpy(d->cls, P->cls, sizeof P->cls);
    memcpy(d->next, P->next.v, P->next.n * sizeof *P->next.v);
    for (int32_t s = 0; s < d->n_states; s++) {
        int32_t sa = P->pairs.v[2 * s], sb = P->pairs.v[2 * s + 1];
        d->accept[s] = (uint8_t)pair_accepts(P, sa, sb);
        const uint8_t *ce = sa >= 0 ? P->a->char_end : P->b->char_end;
        if (d->char_end) d->char_end[s] = ce ? ce[sa >= 0 ? sa : sb] : 0;
    }
    return d;
}

rx_dfa *rx_product(const rx_dfa *a, const rx_dfa *b, int op, err_t *err) {
    product P = {.a = a, .b = b, .op = op};
    P.k = product_classes(a, b, P.cls, P.ca, P.cb);
    int r = product_walk(&P);
    rx_dfa *d = NULL;
    if (r == -2) err_set(err, "regex: intersection too complex (more than %d states)", RX_MAX_STATES);
    else if (r) err_set(err, "regex: out of memory");
    else d = product_dfa(&P, err);
    free(P.pairs.v), free(P.next.v);
    return d ? rx_finish(d, err) : NULL;
}

rx_dfa *rx_intersect(const rx_dfa *a, const rx_dfa *b, err_t *err) {
    return rx_product(a, b, RX_AND, err);
}

// ---- accessors ----

size_t rx_bytes(const rx_dfa *d) {
    size_t n = (size_t)d->n_states;
    size_t b = sizeof *d + n * (size_t)d->n_classes * sizeof *d->next + n;
    if (d->key_name) b += n * (sizeof *d->key_name + sizeof *d->key_pats);
    if (d->char_end) b += n;
    return b;
}

void rx_free(rx_dfa *d) {
    if (!d) return;
    free(d->next), free(d->accept), free(d->key_name), free(d->key_pats), free(d->char_end);
    free(d);
}
