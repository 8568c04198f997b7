// regex_int: what core/regex.c (parser, byte NFA) and core/regex_dfa.c
// (subset construction, trimming, minimization, products) share. Private to
// the regex module.
#ifndef TESSERA_REGEX_INT_H
#define TESSERA_REGEX_INT_H

#include <stdint.h>

#include "regex.h"

// A byte NFA in Thompson form. A state has at most one byte edge
// (lo..hi -> out) and any number of epsilon edges (a list in `edges`).
// tag >= 0 marks an accepting state (rx_keys tells names and patterns apart
// by tag); bnd marks a state between two characters of the decoded string.
typedef struct rx_nstate {
    int32_t out;  // byte edge target, -1 none
    int32_t eps;  // first epsilon edge (index into edges), -1 none
    int32_t tag;  // -1: not accepting
    uint8_t lo, hi;
    uint8_t bnd;
} rx_nstate;

typedef struct rx_nedge {
    int32_t to, next;
} rx_nedge;

typedef struct rx_nfa {
    rx_nstate *s;
    int32_t n, cap;
    rx_nedge *e;
    int32_t ne, cape;
    int32_t start;
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
// Adds the quoted JSON encoding of the literal string s[0..len) (UTF-8),
// accepting with `tag`; returns the start state or -1 with err.
int32_t rx_nfa_add_literal(rx_nfa *n, const char *s, size_t len, int32_t tag, err_t *err);
int32_t rx_nfa_state(rx_nfa *n);
int rx_nfa_eps(rx_nfa *n, int32_t from, int32_t to);
void rx_nfa_free(rx_nfa *n);

// The trimmed, minimized DFA of n from n->start (subset construction over
// byte classes), or NULL with err ("matches no string", too many states).
rx_dfa *rx_determinize(const rx_nfa *n, rx_labels lab, err_t *err);

// Trims and minimizes d in place into a new DFA (d is freed either way);
// NULL with err when nothing is accepted or on out of memory.
rx_dfa *rx_finish(rx_dfa *d, err_t *err);

#endif
