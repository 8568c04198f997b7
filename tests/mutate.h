// mutate: mutated copies of good JSONL lines, for the data loaders'
// robustness tests (test_data.c, test_data_tools.c): each output line is a
// random input line with one random edit (a byte replaced, the line cut,
// a byte deleted, or a splice text inserted), newline-terminated.
#ifndef TESSERA_TEST_MUTATE_H
#define TESSERA_TEST_MUTATE_H

#include <stdlib.h>
#include <string.h>

#include "util.h"

// The lines of text (split in place at '\n', at most max of them) into lines.
static inline int mutate_split(char *text, char **lines, int max) {
    int n = 0;
    for (char *p = text, *nl; p && n < max && (nl = strchr(p, '\n')); p = nl + 1) *nl = '\0', lines[n++] = p;
    return n;
}

// total mutated lines (a new buffer of *len bytes, free()), or NULL when
// out of memory or an input line is too long for the line buffer.
static inline char *mutate_lines(char *const *lines, int n_lines, const char *const *splice, int n_splice,
                                 uint64_t seed, int total, size_t *len) {
    enum { LINE_MAX_BYTES = 8192 };
    util_rng rng;
    util_rng_seed(&rng, seed);
    size_t cap = (size_t)total * (LINE_MAX_BYTES + 1), out = 0;
    char *buf = malloc(cap), line[LINE_MAX_BYTES];
    for (int i = 0; buf && i < total; i++) {
        const char *l = lines[util_rng_next(&rng) % (uint64_t)n_lines];
        size_t n = strlen(l), at = util_rng_next(&rng) % n, k = util_rng_next(&rng) % 4;
        if (n > sizeof line) {
            free(buf);
            return NULL;
        }
        memcpy(line, l, n);
        if (k == 0) line[at] = (char)(util_rng_next(&rng) & 0xFF), line[at] = line[at] == '\n' ? ' ' : line[at];
        if (k == 1) n = at;
        if (k == 2) memmove(line + at, line + at + 1, n - at - 1), n--;
        if (k == 3) {
            const char *sp = splice[util_rng_next(&rng) % (uint64_t)n_splice];
            size_t m = strlen(sp);
            if (n + m > sizeof line) {
                free(buf);
                return NULL;
            }
            memmove(line + at + m, line + at, n - at);
            memcpy(line + at, sp, m);
            n += m;
        }
        memcpy(buf + out, line, n);
        out += n;
        buf[out++] = '\n';
    }
    *len = out;
    return buf;
}

#endif
