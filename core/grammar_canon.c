// grammar_canon: the vocab's DFA identities. A lexeme cache is keyed by
// the DFA's tables (hash, then compared byte for byte), and key DFAs are
// first brought to a canonical form (states merged by language, key labels
// ignored), so grammars whose DFAs walk tokens alike share one cache. Moved
// out of grammar_vocab.c unchanged; private to core/grammar*.c.
#include <stdlib.h>
#include <string.h>

#include "grammar_int.h"

// ---- the vocab's DFA caches -------------------------------------------------

// A word at a time (the tables run to megabytes), then the tail bytes.
uint64_t gm_fnv(uint64_t h, const void *p, size_t n) {
    const uint8_t *b = p;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t x;
        memcpy(&x, b + i, 8);
        h = (h ^ x) * 0x100000001b3ull;
        h ^= h >> 29;
    }
    for (; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

uint64_t gm_dfa_hash(const rx_dfa *d) {
    uint64_t h = 0xcbf29ce484222325ull;
    h = gm_fnv(h, &d->n_states, sizeof d->n_states);
    h = gm_fnv(h, &d->n_classes, sizeof d->n_classes);
    h = gm_fnv(h, d->cls, sizeof d->cls);
    h = gm_fnv(h, d->next, (size_t)d->n_states * d->n_classes * sizeof *d->next);
    h = gm_fnv(h, d->accept, (size_t)d->n_states);
    if (d->char_end) h = gm_fnv(h, d->char_end, (size_t)d->n_states);
    return h;
}

// Same tables (what a token walk depends on; key tables are not part of it).
bool gm_dfa_same(const rx_dfa *a, const rx_dfa *b) {
    if (a->n_states != b->n_states || a->n_classes != b->n_classes) return false;
    if (memcmp(a->cls, b->cls, sizeof a->cls)) return false;
    if (memcmp(a->next, b->next, (size_t)a->n_states * a->n_classes * sizeof *a->next)) return false;
    if (memcmp(a->accept, b->accept, (size_t)a->n_states)) return false;
    if (!a->char_end != !b->char_end) return false;
    return !a->char_end || !memcmp(a->char_end, b->char_end, (size_t)a->n_states);
}

void gm_dfa_own_free(rx_dfa *d) {
    if (!d) return;
    free(d->next);
    free(d->accept);
    free(d->char_end);
    free(d);
}

// ---- canonical DFAs -----------------------------------------------------------

// Moore refinement: states with the same accept / char_end / quote-state
// flags and, class by class, successors in the same block end in one block.
// Each round hashes every state's row (its block, its successors' blocks)
// into a table of first holders. block[] gets each state's block; returns
// the number of blocks, -1 on out of memory. Only key DFAs need it (the
// regex compiler's other DFAs are minimal already; a key DFA's states differ
// by which key they name), up to GM_CANON_MAX states (grammar_int.h).

static uint64_t row_hash(const int32_t *r, int32_t w) {
    return gm_fnv(0xcbf29ce484222325ull, r, (size_t)w * sizeof *r);
}

static int32_t refine_round(const rx_dfa *d, int32_t *block, int32_t *rows, int32_t *table, size_t cap,
                            int32_t *next_block) {
    int32_t n = d->n_states, k = d->n_classes, w = k + 1, nb = 0;
    for (int32_t s = 0; s < n; s++) {
        int32_t *r = rows + (size_t)s * w;
        r[0] = block[s];
        for (int32_t c = 0; c < k; c++) {
            int32_t t = d->next[(size_t)s * k + c];
            r[c + 1] = t < 0 ? -1 : block[t];
        }
    }
    for (size_t i = 0; i < cap; i++) table[i] = -1;
    for (int32_t s = 0; s < n; s++) {
        const int32_t *r = rows + (size_t)s * w;
        size_t h = row_hash(r, w) & (cap - 1);
        while (table[h] >= 0 && memcmp(rows + (size_t)table[h] * w, r, (size_t)w * sizeof *r))
            h = (h + 1) & (cap - 1);
        if (table[h] < 0) {
            table[h] = s;
            next_block[s] = nb++;
        } else {
            next_block[s] = next_block[table[h]];
        }
    }
    memcpy(block, next_block, (size_t)n * sizeof *block);
    return nb;
}

int32_t gm_dfa_blocks(const rx_dfa *d, int32_t quote, int32_t *block) {
    int32_t n = d->n_states, w = d->n_classes + 1, nb = -1;
    size_t cap = 16;
    while (cap < 2 * (size_t)n) cap *= 2;
    int32_t *rows = malloc((size_t)n * w * sizeof *rows), *table = malloc(cap * sizeof *table);
    int32_t *nextb = malloc((size_t)n * sizeof *nextb);
    if (rows && table && nextb) {
        for (int32_t s = 0; s < n; s++)
            block[s] = d->accept[s] | (d->char_end ? d->char_end[s] << 1 : 0) | (s == quote) << 2;
        for (int32_t prev = -1; (nb = refine_round(d, block, rows, table, cap, nextb)) != prev;) prev = nb;
    }
    free(rows);
    free(table);
    free(nextb);
    return nb;
}

// The canonical DFA over the blocks: states numbered breadth first from the
// start, bytes grouped into classes by their columns in first-byte order.
// map[s] gets each original state's canonical state.
rx_dfa *gm_dfa_canon(const rx_dfa *d, const int32_t *block, int32_t nb, int32_t *map) {
    int32_t k = d->n_classes;
    int32_t *rep = malloc((size_t)nb * sizeof *rep), *id = malloc((size_t)nb * sizeof *id);
    int32_t *queue = malloc((size_t)nb * sizeof *queue);
    rx_dfa *c = calloc(1, sizeof *c);
    int32_t ccls[256], nq = 0, nc = 0;
    if (!rep || !id || !queue || !c) goto fail;
    for (int32_t b = 0; b < nb; b++) id[b] = -1;
    for (int32_t s = d->n_states - 1; s >= 0; s--) rep[block[s]] = s;
    id[block[0]] = nq;
    queue[nq++] = block[0];
    for (int32_t qi = 0; qi < nq; qi++)
        for (int b = 0; b < 256; b++) {
            int32_t t = d->next[(size_t)rep[queue[qi]] * k + d->cls[b]];
            if (t >= 0 && id[block[t]] < 0) {
                id[block[t]] = nq;
                queue[nq++] = block[t];
            }
        }
    // A class's column: its canonical target from every canonical state.
    // Equal columns merge; canonical classes are numbered in byte order.
    int32_t eq[256], num[256];
    for (int32_t a = 0; a < k; a++) {
        eq[a] = a;
        for (int32_t b = 0; b < a && eq[a] == a; b++) {
            if (eq[b] != b) continue;
            bool same = true;
            for (int32_t q = 0; q < nq && same; q++) {
                int32_t ta = d->next[(size_t)rep[queue[q]] * k + a];
                int32_t tb = d->next[(size_t)rep[queue[q]] * k + b];
                same = (ta < 0 ? -1 : id[block[ta]]) == (tb < 0 ? -1 : id[block[tb]]);
            }
            if (same) eq[a] = b;
        }
        num[a] = -1;
    }
    for (int b = 0; b < 256; b++) {
        int32_t r = eq[d->cls[b]];
        if (num[r] < 0) num[r] = nc++;
        ccls[b] = num[r];
    }
    c->n_states = nq;
    c->n_classes = nc;
    c->next = malloc((size_t)nq * nc * sizeof *c->next);
    c->accept = malloc((size_t)nq);
    c->char_end = d->char_end ? malloc((size_t)nq) : NULL;
    if (!c->next || !c->accept || (d->char_end && !c->char_end)) goto fail;
    for (int b = 0; b < 256; b++) c->cls[b] = (uint8_t)ccls[b];
    for (int32_t q = 0; q < nq; q++) {
        int32_t r = rep[queue[q]];
        c->accept[q] = d->accept[r];
        if (c->char_end) c->char_end[q] = d->char_end[r];
        for (int b = 0; b < 256; b++) {
            int32_t t = d->next[(size_t)r * k + d->cls[b]];
            c->next[(size_t)q * nc + ccls[b]] = t < 0 ? -1 : id[block[t]];
        }
    }
    for (int32_t s = 0; s < d->n_states; s++) map[s] = id[block[s]];
    free(rep);
    free(id);
    free(queue);
    return c;
fail:
    free(rep);
    free(id);
    free(queue);
    gm_dfa_own_free(c);
    return NULL;
}

// A plain copy of the tables a token walk reads, for DFAs the regex
// compiler already minimized (every DFA but a key DFA).
rx_dfa *gm_dfa_copy(const rx_dfa *d, int32_t *map) {
    rx_dfa *c = calloc(1, sizeof *c);
    size_t n = (size_t)d->n_states;
    if (!c) return NULL;
    *c = (rx_dfa){.n_states = d->n_states, .n_classes = d->n_classes};
    memcpy(c->cls, d->cls, sizeof c->cls);
    c->next = malloc(n * d->n_classes * sizeof *c->next);
    c->accept = malloc(n);
    c->char_end = d->char_end ? malloc(n) : NULL;
    if (!c->next || !c->accept || (d->char_end && !c->char_end)) {
        gm_dfa_own_free(c);
        return NULL;
    }
    memcpy(c->next, d->next, n * d->n_classes * sizeof *c->next);
    memcpy(c->accept, d->accept, n);
    if (d->char_end) memcpy(c->char_end, d->char_end, n);
    for (int32_t s = 0; s < d->n_states; s++) map[s] = s;
    return c;
}
