// regex: regular expressions compiled to byte DFAs, for the grammar engine.
//
// Every lexeme the JSON grammar engine matches (a string with a pattern, a
// format, an enum of strings, an integer range, true/false/null, an object's
// quoted keys) is one DFA over bytes. The engine walks token byte strings
// through these tables, so a transition is one lookup:
//     s = d->next[s * d->n_classes + d->cls[byte]]    (-1: dead)
//
// Syntax: ECMA-262 as JSON Schema's "pattern" uses it: literals, `.`,
// escapes (\d \D \w \W \s \S \t \n \r \f \v \0 \xHH \uHHHH \u{H..} \/ and
// escaped punctuation), classes [...] with ranges and negation, groups
// (...), (?:...) and (?<name>...), alternation, quantifiers * + ? {n} {n,}
// {n,m} and their lazy forms (same language), the assertions ^ and $
// anywhere (no m flag: start and end of the string). A '{' that starts no
// quantifier and lone '}' ']' are literals (Annex B, as Python's re reads
// them). Lookaheads (?=X) (?!X) right after a top-level alternative's
// leading ^ (the string begins, or does not begin, with a match of X).
// Other lookaheads, lookbehind, backreferences, \b, \p{..}: an error
// naming the construct ("regex: lookbehind '(?<=' is not supported at
// offset 7"), never a silent approximation.
//
// Semantics over code points: the pattern matches decoded characters; the
// DFA accepts their UTF-8 bytes (RX_BYTES off) or their JSON string
// encoding, quotes included (RX_JSON_STRING). JSON encoding is canonical,
// as Python's json.dumps(ensure_ascii=False) writes it: `"` -> \", `\` ->
// \\, \b \f \n \r \t short escapes, other controls below 0x20 as \u00XX
// (lowercase hex), everything else raw UTF-8. Only valid UTF-8 (no
// surrogates, nothing above U+10FFFF) is ever accepted.
#ifndef TESSERA_REGEX_H
#define TESSERA_REGEX_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

enum {
    RX_SEARCH = 1,      // JSON Schema "pattern": unanchored unless ^ / $ say so
    RX_JSON_STRING = 2, // accept the quoted JSON encoding of matching strings
    RX_BYTES = 4,       // the regex is over raw bytes (\xHH is a byte, `.` any byte
                        // but \n); for the engine's own lexemes (numbers, literals)
};

// Limits: a DFA with more than RX_MAX_STATES states is an error
// ("regex: pattern too complex (more than 20000 states)").
#define RX_MAX_STATES 20000

typedef struct rx_dfa {
    int32_t n_states;  // state 0 is the start state
    int32_t n_classes; // byte equivalence classes
    uint8_t cls[256];  // byte -> class
    int32_t *next;     // [n_states * n_classes], -1 dead
    uint8_t *accept;   // [n_states] 1: the bytes so far form a match
    // Object keys only (rx_keys), else NULL: which property a completed key
    // names (-1: none) and which patterns it matches (bit j: patterns[j]).
    int32_t *key_name;
    uint64_t *key_pats;
    // [n_states] 1: the state sits between two characters of the decoded
    // string (RX_JSON_STRING only; NULL otherwise). The engine counts a
    // code point each time it enters such a state after the opening quote,
    // to enforce minLength / maxLength without a state per count.
    uint8_t *char_end;
    // Every state is live: it can reach an accepting state (the DFA is
    // trimmed), so a prefix the DFA accepts always has a completion.
} rx_dfa;

// Compiles pattern[0..len) (flags RX_*) into a new trimmed, minimized DFA.
// A pattern that matches nothing is an error ("regex: matches no string").
rx_dfa *rx_compile(const char *pattern, size_t len, unsigned flags, err_t *err);

// The DFA for a JSON object's quoted keys: the union of the exact names
// (each accepting state of a name sets key_name to its index), the patterns
// (ECMA, search semantics; bit j of key_pats), and, when any_key, every
// other string (key_name -1, key_pats 0). Names must be distinct. At most 64
// patterns. JSON encoding as RX_JSON_STRING.
rx_dfa *rx_keys(const char *const *names, int n_names, const char *const *patterns, int n_patterns,
                int any_key, err_t *err);

// The product DFA accepting what both accept (NULL with an error when empty,
// when too large, or on out of memory). char_end is kept from a.
rx_dfa *rx_intersect(const rx_dfa *a, const rx_dfa *b, err_t *err);

// 1 if the DFA accepts s[0..n) exactly.
int rx_match(const rx_dfa *d, const char *s, size_t n);

// Bytes a DFA holds, for cache bounds.
size_t rx_bytes(const rx_dfa *d);
void rx_free(rx_dfa *d);

// ECMA regex source (anchored, over decoded characters) for a JSON Schema
// "format", or NULL when the format is not one this engine checks
// (date-time, date, time, duration, email, hostname, ipv4, ipv6, uuid, uri,
// uri-reference, ...). Written from the RFCs the format names.
const char *rx_format(const char *name);

// Writes to buf an anchored RX_BYTES regex for the JSON integers in
// [lo, hi] (has_lo / has_hi 0: unbounded on that side), e.g. lo 0 hi 255
// -> "([1-9][0-9]|[0-9]|1[0-9]{2}|2[0-4][0-9]|25[0-5])". Returns 0, or -1
// if it does not fit in cap or the range is empty (lo > hi).
int rx_int_range(int has_lo, int64_t lo, int has_hi, int64_t hi, char *buf, size_t cap);

#endif
