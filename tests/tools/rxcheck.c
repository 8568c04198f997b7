// rxcheck: core/regex against the verdicts of an oracle (tests/regex_oracle.mjs,
// Node's RegExp with the u flag), for tests/test_regex.sh.
//
//   rxcheck cases FILE     FILE: lines "P s|a HEX" (a pattern, search or
//                          anchored, hex of its UTF-8) followed by lines
//                          "S HEX 0|1" (a string and the oracle's verdict).
//                          Compiles each pattern with RX_JSON_STRING (plus
//                          RX_SEARCH for s), matches each string's canonical
//                          JSON encoding, prints every disagreement; exit 1
//                          if there is one, on any compile error but "too
//                          complex", or when over 1% of patterns are that.
//   rxcheck match FLAGS PATTERN STRING...
//                          prints the DFA's size and, per string, 0 or 1
//                          (FLAGS: the RX_* value; STRING taken as raw bytes,
//                          JSON-encoded first when FLAGS has RX_JSON_STRING).
//   rxcheck format FLAGS NAME STRING...
//                          the same for rx_format(NAME).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "regex.h"
#include "utf8.h"

// Canonical JSON encoding, as Python's json.dumps(ensure_ascii=False).
static size_t json_encode(const char *s, size_t n, char *out) {
    static const char hex[] = "0123456789abcdef";
    size_t k = 0;
    out[k++] = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *sh = c == '"' ? "\\\"" : c == '\\' ? "\\\\" : c == '\b' ? "\\b" : c == '\f' ? "\\f"
                       : c == '\n' ? "\\n" : c == '\r' ? "\\r" : c == '\t' ? "\\t" : NULL;
        if (sh) {
            memcpy(out + k, sh, 2), k += 2;
        } else if (c < 0x20) {
            memcpy(out + k, "\\u00", 4), k += 4;
            out[k++] = hex[c >> 4], out[k++] = hex[c & 15];
        } else {
            out[k++] = (char)c;
        }
    }
    out[k++] = '"';
    return k;
}

static int unhex(const char *h, char *out) {
    size_t n = strlen(h);
    for (size_t i = 0; i + 1 < n; i += 2) {
        unsigned v;
        if (sscanf(h + i, "%2x", &v) != 1) return -1;
        out[i / 2] = (char)v;
    }
    return (int)(n / 2);
}

static int run_cases(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return fprintf(stderr, "rxcheck: cannot open %s\n", path), 2;
    static char line[1 << 16], pat[1 << 15], str[1 << 15], enc[6 << 15];
    rx_dfa *d = NULL;
    int plen = 0, bad = 0, npat = 0, nstr = 0, nerr = 0, ncx = 0, empty = 0;
    char mode = 'a';
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        if (line[0] == 'P') {
            rx_free(d);
            mode = line[2];
            plen = unhex(line + 4, pat);
            err_t e = {{0}};
            unsigned fl = RX_JSON_STRING | (mode == 's' ? RX_SEARCH : 0);
            d = rx_compile(pat, (size_t)plen, fl, &e);
            npat++;
            // Refusing a pattern whose DFA passes the state limit is right
            // (counted, not a failure); any other error is a disagreement.
            // A pattern with no match (a^b) is an error here and matches
            // nothing in Node: its verdicts are compared as all 0.
            empty = !d && strstr(e.msg, "matches no string");
            if (!d && strstr(e.msg, "too complex")) ncx++;
            else if (!d && !empty) nerr++;
            if (!d && !empty) printf("compile error: /%.*s/ (%c): %s\n", plen, pat, mode, e.msg);
        } else if (line[0] == 'S') {
            char *sp = strchr(line + 2, ' ');
            if (!sp) continue;
            *sp = 0;
            int n = unhex(line + 2, str), want = sp[1] == '1';
            size_t k = json_encode(str, (size_t)n, enc);
            int got = d ? rx_match(d, enc, k) : 0;
            nstr++;
            if ((d || empty) && got != want) {
                if (bad++ < 40) printf("mismatch: /%.*s/ (%c) on %.*s: got %d, node %d\n", plen, pat, mode, (int)k, enc, got, want);
            }
        }
    }
    rx_free(d);
    fclose(f);
    printf("rxcheck: %d patterns (%d compile errors, %d too complex), %d strings, %d mismatches\n", npat, nerr, ncx, nstr, bad);
    return bad || nerr || ncx * 100 > npat ? 1 : 0;
}

static int run_match(int argc, char **argv) {
    unsigned fl = (unsigned)atoi(argv[2]);
    err_t e = {{0}};
    const char *pat = argv[1][0] == 'f' ? rx_format(argv[3]) : argv[3];
    if (!pat) return printf("no format %s\n", argv[3]), 1;
    rx_dfa *d = rx_compile(pat, strlen(pat), fl, &e);
    if (!d) return printf("error: %s\n", e.msg), 1;
    printf("states %d classes %d bytes %zu\n", d->n_states, d->n_classes, rx_bytes(d));
    for (int i = 4; i < argc; i++) {
        static char enc[1 << 16];
        size_t n = strlen(argv[i]);
        size_t k = fl & RX_JSON_STRING ? json_encode(argv[i], n, enc) : (memcpy(enc, argv[i], n), n);
        printf("%d %.*s\n", rx_match(d, enc, k), (int)k, enc);
    }
    rx_free(d);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "cases")) return run_cases(argv[2]);
    if (argc >= 4 && (!strcmp(argv[1], "match") || !strcmp(argv[1], "format"))) return run_match(argc, argv);
    fprintf(stderr, "usage: rxcheck cases FILE | rxcheck match FLAGS PATTERN STRING...\n");
    return 2;
}
