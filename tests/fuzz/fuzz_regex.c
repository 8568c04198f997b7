// fuzz_regex: JSON Schema "pattern" strings (core/regex.h rx_compile), the
// regex text a request's schema carries. The first byte picks the flags and
// whether the pattern is also an object-key pattern (rx_keys) and
// intersected with the free string; the rest is the pattern. A DFA that
// compiles must be trimmed and answer rx_match on the pattern's own bytes.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "regex.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    uint8_t mode = data[0];
    const char *pat = (const char *)data + 1;
    size_t n = size - 1;
    unsigned flags = (mode & 1 ? RX_SEARCH : 0) | (mode & 2 ? RX_JSON_STRING : 0) | (mode & 4 ? RX_BYTES : 0);
    if ((flags & RX_BYTES) && (flags & RX_JSON_STRING)) flags &= ~(unsigned)RX_BYTES;
    err_t e = {{0}};
    rx_dfa *d = rx_compile(pat, n, flags, &e);
    if (!d) {
        if (!e.msg[0]) abort(); // every refusal says why
        return 0;
    }
    if (d->n_states < 1 || d->n_states > RX_MAX_STATES) abort();
    (void)rx_match(d, pat, n);
    if ((mode & 8) && (flags & RX_JSON_STRING)) {
        rx_dfa *any = rx_compile("[\\s\\S]*", 7, RX_JSON_STRING, &e);
        rx_dfa *both = any ? rx_intersect(d, any, &e) : NULL;
        rx_free(both);
        rx_free(any);
    }
    if ((mode & 16) && !memchr(pat, 0, n)) {
        char *p = strndup(pat, n);
        const char *names[] = {"a", "b"}, *pats[] = {p};
        rx_dfa *k = p ? rx_keys(names, 2, pats, 1, mode & 32, &e) : NULL;
        rx_free(k);
        free(p);
    }
    rx_free(d);
    return 0;
}
