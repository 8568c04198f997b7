// regex: the byte NFA of a parsed pattern (Thompson construction; each
// character set becomes a trie of UTF-8 byte ranges, or of JSON string
// encodings), rx_compile and rx_match. The parser is regex_parse.c, the DFA
// side regex_dfa.c; see regex.h for the contract.
#include <stdlib.h>
#include <string.h>

#include "regex_int.h"
#include "utf8.h"

// ---- NFA construction ----

int32_t rx_nfa_state(rx_nfa *n) {
    if (n->n >= RX_MAX_NFA) return -1;
    if (n->n == n->cap) {
        int32_t cap = n->cap ? n->cap * 2 : 256;
        rx_nstate *s = realloc(n->s, (size_t)cap * sizeof *s);
        if (!s) return -1;
        n->s = s, n->cap = cap;
    }
    n->s[n->n] = (rx_nstate){.out = -1, .eps = -1, .tag = -1};
    return n->n++;
}

int rx_nfa_eps(rx_nfa *n, int32_t from, int32_t to) {
    return rx_nfa_eps_kind(n, from, to, RX_EPS);
}

int rx_nfa_eps_kind(rx_nfa *n, int32_t from, int32_t to, int32_t kind) {
    if (n->ne == n->cape) {
        int32_t cap = n->cape ? n->cape * 2 : 256;
        rx_nedge *e = realloc(n->e, (size_t)cap * sizeof *e);
        if (!e) return -1;
        n->e = e, n->cape = cap;
    }
    n->e[n->ne] = (rx_nedge){to, n->s[from].eps, kind};
    n->s[from].eps = n->ne++;
    return 0;
}

void rx_nfa_free(rx_nfa *n) {
    free(n->s);
    free(n->e);
    memset(n, 0, sizeof *n);
}

typedef struct rx_trie_edge rx_trie_edge;

typedef struct rx_build {
    rx_nfa *nfa;
    const rx_ast *a;
    int json;
    err_t *err;
    rx_trie_edge *trie; // the current character set's trie (see chain)
    int n_trie, cap_trie;
    int skip_look; // lookaheads build nothing (rx_nfa_add_node)
} rx_build;

static int32_t berr(rx_build *b) {
    if (b->nfa->n >= RX_MAX_NFA)
        return err_set(b->err, "regex: pattern too large (more than %d NFA states; counted repetition too big?)",
                       RX_MAX_NFA);
    return err_set(b->err, "regex: out of memory");
}

// The byte sequences of one character set share their prefixes: a trie
// rooted at the set's `from` state, one entry per inner edge. Fewer states
// with byte edges means smaller state sets in the subset construction.
typedef struct rx_trie_edge {
    int32_t parent, child;
    uint8_t lo, hi;
} rx_trie_edge;

// A byte edge lo..hi from `parent` to `child` (through a new state).
static int edge(rx_build *b, int32_t parent, uint8_t lo, uint8_t hi, int32_t child) {
    int32_t e = rx_nfa_state(b->nfa);
    if (e < 0 || rx_nfa_eps(b->nfa, parent, e)) return berr(b);
    b->nfa->s[e].lo = lo, b->nfa->s[e].hi = hi, b->nfa->s[e].out = child;
    return 0;
}

// Adds the sequence lo[i]..hi[i] (i < k) from `from` to `to` into the trie.
static int chain(rx_build *b, int32_t from, int32_t to, const uint8_t *lo, const uint8_t *hi, int k) {
    int32_t at = from;
    for (int i = 0; i + 1 < k; i++) {
        int32_t next = -1;
        for (int j = 0; j < b->n_trie && next < 0; j++)
            if (b->trie[j].parent == at && b->trie[j].lo == lo[i] && b->trie[j].hi == hi[i]) next = b->trie[j].child;
        if (next < 0) {
            if (b->n_trie == b->cap_trie) {
                int cap = b->cap_trie ? b->cap_trie * 2 : 64;
                rx_trie_edge *t = realloc(b->trie, (size_t)cap * sizeof *t);
                if (!t) return err_set(b->err, "regex: out of memory");
                b->trie = t, b->cap_trie = cap;
            }
            if ((next = rx_nfa_state(b->nfa)) < 0 || edge(b, at, lo[i], hi[i], next)) return berr(b);
            b->trie[b->n_trie++] = (rx_trie_edge){at, next, lo[i], hi[i]};
        }
        at = next;
    }
    return edge(b, at, lo[k - 1], hi[k - 1], to);
}

// UTF-8 byte sequences for [lo, hi] (same encoded length, no surrogates):
// split until every byte position is a plain range (the standard split at
// 6-bit boundaries), then one chain each.
static int utf8_ranges(rx_build *b, int32_t from, int32_t to, uint32_t lo, uint32_t hi) {
    char x[4], y[4];
    size_t k = utf8_encode(x, (int32_t)lo);
    for (size_t i = 1; i < k; i++) {
        uint32_t m = (1u << (6 * i)) - 1;
        if ((lo & ~m) == (hi & ~m)) continue;
        if (lo & m) return utf8_ranges(b, from, to, lo, lo | m) || utf8_ranges(b, from, to, (lo | m) + 1, hi);
        if ((hi & m) != m) return utf8_ranges(b, from, to, lo, (hi & ~m) - 1) || utf8_ranges(b, from, to, hi & ~m, hi);
    }
    utf8_encode(y, (int32_t)hi);
    return chain(b, from, to, (const uint8_t *)x, (const uint8_t *)y, (int)k);
}

// Splits [lo, hi] by encoded length and around the surrogates.
static int cp_range(rx_build *b, int32_t from, int32_t to, uint32_t lo, uint32_t hi) {
    static const uint32_t cuts[][2] = {{0, 0x7F}, {0x80, 0x7FF}, {0x800, 0xD7FF}, {0xE000, 0xFFFF}, {0x10000, 0x10FFFF}};
    for (int i = 0; i < 5; i++) {
        uint32_t a = lo > cuts[i][0] ? lo : cuts[i][0], z = hi < cuts[i][1] ? hi : cuts[i][1];
        if (a <= z && utf8_ranges(b, from, to, a, z)) return -1;
    }
    return 0;
}

// The JSON escape of c (a quote, backslash or control), as Python writes it.
static int json_escape(uint32_t c, uint8_t *out) {
    static const char hex[] = "0123456789abcdef";
    char sh = 0;
    switch (c) {
    case '"': sh = '"'; break;
    case '\\': sh = '\\'; break;
    case '\b': sh = 'b'; break;
    case '\f': sh = 'f'; break;
    case '\n': sh = 'n'; break;
    case '\r': sh = 'r'; break;
    case '\t': sh = 't'; break;
    }
    out[0] = '\\';
    if (sh) return out[1] = (uint8_t)sh, 2;
    memcpy(out + 1, "u00", 3);
    out[4] = (uint8_t)hex[c >> 4], out[5] = (uint8_t)hex[c & 15];
    return 6;
}

static int json_special(uint32_t c) {
    return c < 0x20 || c == '"' || c == '\\';
}

// Raw code points [lo, hi] in JSON mode: escapes for the specials, UTF-8
// ranges between them.
static int json_range(rx_build *b, int32_t from, int32_t to, uint32_t lo, uint32_t hi) {
    for (uint32_t c = lo; c <= hi;) {
        if (json_special(c)) {
            uint8_t e[6];
            int k = json_escape(c, e);
            if (chain(b, from, to, e, e, k)) return -1;
            c++;
            continue;
        }
        uint32_t e = c < '"' ? '"' - 1 : c < '\\' ? '\\' - 1 : hi;
        if (e > hi) e = hi;
        if (cp_range(b, from, to, c, e)) return -1;
        c = e + 1;
    }
    return 0;
}

// One character from set s, from `from` to a new state (a boundary state in
// JSON mode); returns it.
static int32_t frag_set(rx_build *b, const rx_set *s, int32_t from) {
    int32_t to = rx_nfa_state(b->nfa);
    if (to < 0) return berr(b);
    b->nfa->s[to].bnd = (uint8_t)b->json;
    b->n_trie = 0;
    for (int i = 0; i < s->n; i++) {
        uint32_t lo = s->r[i].lo, hi = s->r[i].hi;
        uint8_t l = (uint8_t)lo, h = (uint8_t)hi;
        int r = b->a->max_cp == 0xFF ? chain(b, from, to, &l, &h, 1)
                : b->json            ? json_range(b, from, to, lo, hi)
                                     : cp_range(b, from, to, lo, hi);
        if (r) return -1;
    }
    return to;
}

static int32_t frag(rx_build *b, int k, int32_t from);

static int32_t frag_join(rx_build *b, int32_t *from) {
    int32_t t = rx_nfa_state(b->nfa);
    if (t < 0 || rx_nfa_eps(b->nfa, *from, t)) return berr(b);
    return t;
}

// x{min,max}: min copies, then x* or (max - min) optional copies, each
// allowed to stop early (an epsilon edge from every copy's start to the end).
static int32_t frag_rep(rx_build *b, const rx_node *nd, int32_t from) {
    int32_t s = from;
    for (int i = 0; i < nd->min; i++)
        if ((s = frag(b, nd->kid, s)) < 0) return -1;
    int32_t loop = frag_join(b, &s);
    if (loop < 0) return -1;
    if (nd->max < 0) {
        int32_t e = frag(b, nd->kid, loop);
        if (e < 0 || rx_nfa_eps(b->nfa, e, loop)) return e < 0 ? -1 : berr(b);
        return loop;
    }
    int32_t end = rx_nfa_state(b->nfa);
    if (end < 0) return berr(b);
    s = loop;
    for (int i = nd->min; i < nd->max; i++) {
        if (rx_nfa_eps(b->nfa, s, end)) return berr(b);
        if ((s = frag(b, nd->kid, s)) < 0) return -1;
    }
    if (rx_nfa_eps(b->nfa, s, end)) return berr(b);
    return end;
}

static int32_t frag(rx_build *b, int k, int32_t from) {
    const rx_node *nd = &b->a->nodes[k];
    switch (nd->kind) {
    case RN_SET: return frag_set(b, &nd->set, from);
    case RN_CAT:
        for (int c = nd->kid; c >= 0 && from >= 0; c = b->a->nodes[c].next) from = frag(b, c, from);
        return from;
    case RN_REP: return frag_rep(b, nd, from);
    case RN_LOOK:
        // Lookaheads are the DFA-level path's (regex_look.c): here they were
        // either checked and are left out, or stand where none is allowed.
        if (b->skip_look) return from;
        return err_set(b->err, "regex: %s '%s' is only supported right after a leading '^' (at offset %d)",
                       nd->min ? "negative lookahead" : "lookahead", nd->min ? "(?!" : "(?=", nd->max);
    case RN_BOL: case RN_EOL: {
        int32_t t = rx_nfa_state(b->nfa);
        if (t < 0 || rx_nfa_eps_kind(b->nfa, from, t, nd->kind == RN_BOL ? RX_EPS_BOL : RX_EPS_EOL)) return berr(b);
        b->nfa->s[t].bnd = (uint8_t)b->json;
        return t;
    }
    }
    int32_t end = rx_nfa_state(b->nfa);
    if (end < 0) return berr(b);
    for (int c = nd->kid; c >= 0; c = b->a->nodes[c].next) {
        int32_t s = frag_join(b, &from), e = s < 0 ? -1 : frag(b, c, s);
        if (e < 0 || rx_nfa_eps(b->nfa, e, end)) return e < 0 ? -1 : berr(b);
    }
    return end;
}

// Any character, any number of times (search semantics' implicit .*).
static int32_t frag_any_star(rx_build *b, int32_t from) {
    rx_set s = {0};
    if (rx_set_add(&s, 0, b->a->max_cp)) return err_set(b->err, "regex: out of memory");
    int32_t loop = frag_join(b, &from), e = loop < 0 ? -1 : frag_set(b, &s, loop);
    free(s.r);
    if (e < 0 || rx_nfa_eps(b->nfa, e, loop)) return e < 0 ? -1 : berr(b);
    return loop;
}

// Whether node k (an alternation: each of its alternatives; else k itself,
// a sequence) begins (kind RN_BOL) or ends (RN_EOL) with that anchor.
static int all_anchored(const rx_ast *a, int k, int kind) {
    if (a->nodes[k].kind == RN_ALT) {
        for (int c = a->nodes[k].kid; c >= 0; c = a->nodes[c].next)
            if (!all_anchored(a, c, kind)) return 0;
        return 1;
    }
    int first = a->nodes[k].kid, last = first;
    while (last >= 0 && a->nodes[last].next >= 0) last = a->nodes[last].next;
    int at = kind == RN_BOL ? first : last;
    return at >= 0 && a->nodes[at].kind == kind;
}

// The body: node k between `any characters` loops on the sides that ask for
// one (head, tail). Search semantics is ECMA's RegExp.test: any characters,
// the pattern, any characters, with ^ and $ as assertions; a side where
// every alternative is anchored needs no loop (common, and it keeps the
// subsets small). Anchored: the pattern alone.
static int32_t frag_body(rx_build *b, int k, int head, int tail, int32_t from) {
    int32_t s = from;
    if (head && !all_anchored(b->a, k, RN_BOL)) s = frag_any_star(b, s);
    if (s >= 0) s = frag(b, k, s);
    if (s >= 0 && tail && !all_anchored(b->a, k, RN_EOL)) s = b->nfa->any_tail = frag_any_star(b, s);
    if (s < 0) return -1;
    int32_t end = rx_nfa_state(b->nfa);
    if (end < 0 || rx_nfa_eps(b->nfa, s, end)) return berr(b);
    b->nfa->s[end].bnd = (uint8_t)b->json;
    return end;
}

static int32_t quote(rx_build *b, int32_t from) {
    int32_t q = rx_nfa_state(b->nfa);
    if (q < 0) return berr(b);
    b->nfa->s[from].lo = b->nfa->s[from].hi = '"';
    b->nfa->s[from].out = q;
    return q;
}

int32_t rx_nfa_add_node(rx_nfa *n, const rx_ast *a, int k, int head, int tail, unsigned flags, int32_t tag,
                        err_t *err) {
    rx_build b = {.nfa = n, .a = a, .json = (flags & RX_JSON_STRING) != 0, .err = err, .skip_look = k != a->root};
    int32_t start = rx_nfa_state(n), s = start < 0 ? berr(&b) : start;
    if (s >= 0 && b.json) {
        s = quote(&b, s);
        if (s >= 0) n->s[s].bnd = 1;
    }
    if (s >= 0) s = frag_body(&b, k, head, tail, s);
    if (s >= 0 && b.json) n->s[s].fin = 1, s = quote(&b, s);
    if (s >= 0) n->s[s].tag = tag;
    free(b.trie);
    return s < 0 ? -1 : start;
}

// Adds DFA d as NFA states (one per DFA state, one edge state per run of
// bytes with the same target), accepting with `tag`; returns its start.
static int32_t nfa_add_dfa(rx_nfa *n, const rx_dfa *d, int32_t tag, err_t *err) {
    int32_t base = n->n;
    for (int32_t s = 0; s < d->n_states; s++) {
        if (rx_nfa_state(n) < 0) return err_set(err, "regex: out of memory");
        n->s[base + s].tag = d->accept[s] ? tag : -1;
        n->s[base + s].bnd = d->char_end ? d->char_end[s] : 0;
    }
    for (int32_t s = 0; s < d->n_states; s++) {
        const int32_t *row = d->next + (size_t)s * (size_t)d->n_classes;
        for (int lo = 0, hi; lo < 256; lo = hi + 1) {
            int32_t t = row[d->cls[lo]];
            for (hi = lo; hi < 255 && row[d->cls[hi + 1]] == t;) hi++;
            if (t < 0) continue;
            int32_t e = rx_nfa_state(n);
            if (e < 0 || rx_nfa_eps(n, base + s, e)) return err_set(err, "regex: out of memory");
            n->s[e].lo = (uint8_t)lo, n->s[e].hi = (uint8_t)hi, n->s[e].out = base + t;
        }
    }
    return base;
}

int32_t rx_nfa_add(rx_nfa *n, const char *pattern, size_t len, unsigned flags, int32_t tag, err_t *err) {
    rx_ast a;
    if (rx_parse(&a, pattern, len, flags, err)) return -1;
    int search = (flags & RX_SEARCH) != 0;
    if (search) rx_inline_tail_looks(&a);
    int32_t s = -1;
    if (rx_has_look(&a)) {
        // Lookaheads are DFA products: build the DFA, then take it in.
        rx_dfa *d = rx_compile_look(&a, flags, err);
        if (d) s = nfa_add_dfa(n, d, tag, err);
        rx_free(d);
    } else {
        s = rx_nfa_add_node(n, &a, a.root, search, search, flags, tag, err);
    }
    rx_ast_free(&a);
    return s;
}

// The characters of s[0..len) from `at` on; the last state, or -1.
static int32_t literal_chars(rx_build *b, const char *s, size_t len, int32_t at) {
    for (size_t i = 0; i < len && at >= 0;) {
        size_t adv;
        int32_t c = utf8_decode((const uint8_t *)s + i, len - i, &adv);
        if (c < 0) return err_set(b->err, "regex: key name is not valid UTF-8 at byte %zu", i);
        rx_range r = {(uint32_t)c, (uint32_t)c};
        rx_set one = {&r, 1, 1};
        at = frag_set(b, &one, at);
        i += adv;
    }
    return at;
}

int32_t rx_nfa_add_literal(rx_nfa *n, const char *s, size_t len, int32_t tag, err_t *err) {
    rx_ast a = {.max_cp = RX_MAX_CP};
    rx_build b = {.nfa = n, .a = &a, .json = 1, .err = err};
    int32_t start = rx_nfa_state(n), at = start < 0 ? berr(&b) : quote(&b, start);
    if (at >= 0) n->s[at].bnd = 1, at = literal_chars(&b, s, len, at);
    if (at >= 0) n->s[at].fin = 1, at = quote(&b, at);
    if (at >= 0) n->s[at].tag = tag;
    free(b.trie);
    return at < 0 ? -1 : start;
}

rx_dfa *rx_compile_node(const rx_ast *a, int k, int head, int tail, unsigned flags, err_t *err) {
    rx_nfa n = {.any_tail = -1};
    n.start = rx_nfa_add_node(&n, a, k, head, tail, flags, 0, err);
    rx_dfa *d = NULL;
    if (n.start >= 0) d = rx_determinize(&n, (rx_labels){.json = (flags & RX_JSON_STRING) != 0}, err);
    rx_nfa_free(&n);
    return d;
}

rx_dfa *rx_compile(const char *pattern, size_t len, unsigned flags, err_t *err) {
    rx_ast a;
    if (rx_parse(&a, pattern, len, flags, err)) return NULL;
    int search = (flags & RX_SEARCH) != 0;
    if (search) rx_inline_tail_looks(&a);
    rx_dfa *d = rx_has_look(&a) ? rx_compile_look(&a, flags, err) : rx_compile_node(&a, a.root, search, search, flags, err);
    rx_ast_free(&a);
    return d;
}

int rx_match(const rx_dfa *d, const char *s, size_t n) {
    int32_t st = 0;
    for (size_t i = 0; i < n; i++) {
        st = d->next[(size_t)st * (size_t)d->n_classes + d->cls[(uint8_t)s[i]]];
        if (st < 0) return 0;
    }
    return d->accept[st];
}
