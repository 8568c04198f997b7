// regex_ops: DFAs made from other parts: rx_keys (the union of names and
// patterns with labelled accepting states) and rx_intersect (the product of
// two DFAs); and the small accessors.
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

// ---- rx_intersect ----

typedef struct pairmap {
    int64_t *key; // ta * b->n_states + tb, -1 empty
    int32_t *val;
    size_t cap;
} pairmap;

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
    for (size_t j = 0; j < pairs->n / 2; j++)
        pair_get(m, (int64_t)pairs->v[2 * j] * nb + pairs->v[2 * j + 1], (int32_t)j, &added);
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

// BFS over the reachable pairs; pairs holds (a state, b state) per product
// state, next the rows. 0, -1 out of memory, -2 too many states.
static int product_walk(const rx_dfa *a, const rx_dfa *b, int32_t k, const uint8_t *ca, const uint8_t *cb,
                        rx_ivec *pairs, rx_ivec *next) {
    pairmap m = {0};
    int added, r = pair_reserve(&m, (size_t)k + 1, pairs, b->n_states);
    if (!r) pair_get(&m, 0, 0, &added);
    if (!r && (rx_ivec_push(pairs, 0) || rx_ivec_push(pairs, 0))) r = -1;
    for (size_t i = 0; !r && i < pairs->n / 2; i++) {
        int32_t sa = pairs->v[2 * i], sb = pairs->v[2 * i + 1];
        if (pairs->n / 2 > RX_MAX_RAW) r = -2;
        else r = pair_reserve(&m, pairs->n / 2 + (size_t)k, pairs, b->n_states);
        for (int32_t c = 0; !r && c < k; c++) {
            int32_t ta = a->next[(size_t)sa * a->n_classes + ca[c]], tb = b->next[(size_t)sb * b->n_classes + cb[c]];
            int32_t t = -1;
            if (ta >= 0 && tb >= 0) {
                t = pair_get(&m, (int64_t)ta * b->n_states + tb, (int32_t)(pairs->n / 2), &added);
                if (added && (rx_ivec_push(pairs, ta) || rx_ivec_push(pairs, tb))) r = -1;
            }
            if (!r && rx_ivec_push(next, t)) r = -1;
        }
    }
    free(m.key), free(m.val);
    return r;
}

rx_dfa *rx_intersect(const rx_dfa *a, const rx_dfa *b, err_t *err) {
    uint8_t cls[256], ca[256], cb[256];
    int32_t k = product_classes(a, b, cls, ca, cb);
    rx_ivec pairs = {0}, next = {0};
    int r = product_walk(a, b, k, ca, cb, &pairs, &next);
    rx_dfa *d = NULL;
    if (r == -2) err_set(err, "regex: intersection too complex (more than %d states)", RX_MAX_STATES);
    else if (r) err_set(err, "regex: out of memory");
    else if (!(d = rx_dfa_alloc((int32_t)(pairs.n / 2), k, 0, a->char_end != NULL))) err_set(err, "regex: out of memory");
    if (d) {
        memcpy(d->cls, cls, sizeof cls);
        memcpy(d->next, next.v, next.n * sizeof *next.v);
        for (int32_t s = 0; s < d->n_states; s++) {
            int32_t sa = pairs.v[2 * s], sb = pairs.v[2 * s + 1];
            d->accept[s] = a->accept[sa] && b->accept[sb];
            if (d->char_end) d->char_end[s] = a->char_end[sa];
        }
    }
    free(pairs.v), free(next.v);
    return d ? rx_finish(d, err) : NULL;
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
