// regex_int: what the regex module's files share: regex_parse.c (pattern to
// syntax tree), regex.c (byte NFA, rx_compile), regex_dfa.c (subset
// construction, trimming, minimization), regex_ops.c (rx_keys, products),
// regex_look.c (leading lookaheads) and regex_format.c (formats, integer
// ranges). Private to the module.
#ifndef TESSERA_REGEX_INT_H
#define TESSERA_REGEX_INT_H

#include <stdint.h>
#include <stdlib.h>

#include "regex.h"

#define RX_MAX_RAW (2 * RX_MAX_STATES) // DFA states before minimization
#define RX_MAX_NFA 200000 // NFA states (counted repetition past it is an error); below 2^18

// A growable int32 array.
typedef struct rx_ivec {
    int32_t *v;
    size_t n, cap;
} rx_ivec;

static inline int rx_ivec_push(rx_ivec *a, int32_t x) {
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        int32_t *v = realloc(a->v, cap * sizeof *v);
        if (!v) return -1;
        a->v = v, a->cap = cap;
    }
    a->v[a->n++] = x;
    return 0;
}

static inline int rx_ivec_grow(rx_ivec *a, size_t n) {
    if (n <= a->cap) return 0;
    size_t cap = a->cap ? a->cap : 64;
    while (cap < n) cap *= 2;
    int32_t *v = realloc(a->v, cap * sizeof *v);
    if (!v) return -1;
    a->v = v, a->cap = cap;
    return 0;
}

#define RX_MAX_CP 0x10FFFF

// ---- the syntax tree (regex_parse.c) ----

// Code point sets: sorted, disjoint, non-adjacent ranges.
typedef struct rx_range {
    uint32_t lo, hi;
} rx_range;

typedef struct rx_set {
    rx_range *r;
    int n, cap;
} rx_set;

// Nodes: a character set, a concatenation or alternation of the kid list,
// kid repeated {min,max}, the assertions ^ (start of input) and $ (end),
// or a lookahead over kid (min 1: negative; max: its offset in the pattern).
enum { RN_SET, RN_CAT, RN_ALT, RN_REP, RN_BOL, RN_EOL, RN_LOOK };

typedef struct rx_node {
    int kind;
    int kid, next; // first child and next sibling (CAT, ALT, REP), -1 none
    int min, max;  // REP; max -1: unbounded
    rx_set set;    // SET
} rx_node;


typedef struct rx_ast {
    rx_node *nodes;
    int n_nodes, cap_nodes;
    int root;        // an RN_ALT: the top-level alternatives
    uint32_t max_cp; // 0x10FFFF, or 0xFF for RX_BYTES
} rx_ast;

// Parses pattern[0..len) (flags RX_*: RX_BYTES limits it to 0..0xFF) into
// a; 0, or -1 with err (a is then empty). Free with rx_ast_free.
int rx_parse(rx_ast *a, const char *pattern, size_t len, unsigned flags, err_t *err);
void rx_ast_free(rx_ast *a);
// Appends [lo, hi] to s (not normalized); -1 on out of memory.
int rx_set_add(rx_set *s, uint32_t lo, uint32_t hi);

// ---- the byte NFA (regex.c) ----

// A byte NFA in Thompson form. A state has at most one byte edge
// (lo..hi -> out) and any number of epsilon edges (a list in `edges`).
// tag >= 0 marks an accepting state (rx_keys tells names and patterns apart
// by tag); bnd marks a state between two characters of the decoded string;
// fin marks the state whose byte edge is the closing quote (JSON strings),
// the one byte edge that may follow an end-of-input assertion.
typedef struct rx_nstate {
    int32_t out;  // byte edge target, -1 none
    int32_t eps;  // first epsilon edge (index into edges), -1 none
    int32_t tag;  // -1: not accepting
    uint8_t lo, hi;
    uint8_t bnd, fin;
} rx_nstate;

// Epsilon edges: plain, or the assertions ^ (taken only before the first
// character) and $ (taken anywhere, but what follows may consume nothing
// but the closing quote: the subset construction tracks "ended" states).
enum { RX_EPS, RX_EPS_BOL, RX_EPS_EOL };

typedef struct rx_nedge {
    int32_t to, next;
    int32_t kind; // RX_EPS*
} rx_nedge;

typedef struct rx_nfa {
    rx_nstate *s;
    int32_t n, cap;
    rx_nedge *e;
    int32_t ne, cape;
    int32_t start;
    // Search semantics' trailing .* loop (-1: none). From there every
    // continuation is accepted, so a subset holding it is that loop alone
    // (rx_compile only: rx_keys' other branches still label what follows).
    int32_t any_tail;
} rx_nfa;

// Labels the subset construction gives accepting DFA states: plain (every
// accepting tag is the same), or rx_keys' (tag < n_names: that name; tag <
// n_names + 64: pattern bit tag - n_names; else any other key).
typedef struct rx_labels {
    int keys;     // 0: plain accept flags only
    int n_names;  // keys only
    int json;     // fill char_end from the states' bnd flags
} rx_labels;

// Adds the NFA of pattern[0..len) (flags RX_*) to n, from a new state to a
// new accepting state tagged `tag`; returns that start state or -1 with err.
int32_t rx_nfa_add(rx_nfa *n, const char *pattern, size_t len, unsigned flags, int32_t tag, err_t *err);
// The same from node k of a parsed pattern, with `any characters` before
// it (head) and after it (tail) unless anchored there; lookaheads inside k
// build nothing (their placement checked by the caller) unless k is the
// root, where any lookahead is an error.
int32_t rx_nfa_add_node(rx_nfa *n, const rx_ast *a, int k, int head, int tail, unsigned flags, int32_t tag,
                        err_t *err);
// Adds the quoted JSON encoding of the literal string s[0..len) (UTF-8),
// accepting with `tag`; returns the start state or -1 with err.
int32_t rx_nfa_add_literal(rx_nfa *n, const char *s, size_t len, int32_t tag, err_t *err);
int32_t rx_nfa_state(rx_nfa *n);
int rx_nfa_eps(rx_nfa *n, int32_t from, int32_t to);
int rx_nfa_eps_kind(rx_nfa *n, int32_t from, int32_t to, int32_t kind);
void rx_nfa_free(rx_nfa *n);

// The trimmed, minimized DFA of n from n->start (subset construction over
// byte classes), or NULL with err ("matches no string", too many states).
rx_dfa *rx_determinize(const rx_nfa *n, rx_labels lab, err_t *err);

// A new DFA of n_states x n_classes, with key labels (keys) and char_end
// (json) when asked; next uninitialized, labels 0. NULL on out of memory.
rx_dfa *rx_dfa_alloc(int32_t n_states, int32_t n_classes, int keys, int json);

// The DFA of node k alone (as rx_nfa_add_node), trimmed and minimized.
rx_dfa *rx_compile_node(const rx_ast *a, int k, int head, int tail, unsigned flags, err_t *err);

// ---- lookaheads (regex_look.c) ----

// Whether the pattern has a lookahead anywhere.
int rx_has_look(const rx_ast *a);
// Search semantics only: a positive lookahead ending a top-level
// alternative becomes a plain group (the same strings match).
void rx_inline_tail_looks(rx_ast *a);
// rx_compile for a pattern with lookaheads: each top-level alternative's
// DFA, intersected with (?=X) or with the complement of (?!X) for the
// lookaheads right after its leading ^ (X then anything), all alternatives
// united. A lookahead anywhere else is an error naming it.
rx_dfa *rx_compile_look(const rx_ast *a, unsigned flags, err_t *err);

// DFA products, reachable pairs only, trimmed and minimized: RX_AND accepts
// what both accept, RX_ANDNOT what a accepts and b does not, RX_OR what
// either accepts. char_end comes from a where a is alive, else from b.
enum { RX_AND, RX_ANDNOT, RX_OR };
rx_dfa *rx_product(const rx_dfa *a, const rx_dfa *b, int op, err_t *err);

// Trims and minimizes d in place into a new DFA (d is freed either way);
// NULL with err when nothing is accepted or on out of memory.
rx_dfa *rx_finish(rx_dfa *d, err_t *err);

#endif
