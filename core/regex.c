// regex: the ECMA-262 parser and the byte NFA (Thompson construction over
// UTF-8 byte ranges, or over JSON string encodings). The DFA side lives in
// regex_dfa.c; see regex.h for the contract.
#include <stdlib.h>
#include <string.h>

#include "regex_int.h"
#include "utf8.h"

#define RX_MAX_CP 0x10FFFF
#define RX_MAX_NFA 200000 // NFA states; counted repetition past this is an error
#define RX_MAX_COUNT 100000
#define RX_MAX_DEPTH 200

// ---- code point sets: sorted, disjoint, non-adjacent ranges ----

typedef struct rx_range {
    uint32_t lo, hi;
} rx_range;

typedef struct rx_set {
    rx_range *r;
    int n, cap;
} rx_set;

static int set_add(rx_set *s, uint32_t lo, uint32_t hi) {
    if (s->n == s->cap) {
        int cap = s->cap ? s->cap * 2 : 4;
        rx_range *r = realloc(s->r, (size_t)cap * sizeof *r);
        if (!r) return -1;
        s->r = r, s->cap = cap;
    }
    s->r[s->n++] = (rx_range){lo, hi};
    return 0;
}

static int range_cmp(const void *a, const void *b) {
    const rx_range *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

// Sorts and merges overlapping or adjacent ranges.
static void set_norm(rx_set *s) {
    if (s->n < 2) return;
    qsort(s->r, (size_t)s->n, sizeof *s->r, range_cmp);
    int k = 0;
    for (int i = 1; i < s->n; i++) {
        if (s->r[i].lo <= s->r[k].hi + 1) {
            if (s->r[i].hi > s->r[k].hi) s->r[k].hi = s->r[i].hi;
        } else {
            s->r[++k] = s->r[i];
        }
    }
    s->n = k + 1;
}

// Replaces a normalized s by its complement within [0, max].
static int set_negate(rx_set *s, uint32_t max) {
    rx_set t = {0};
    uint32_t next = 0;
    for (int i = 0; i < s->n; i++) {
        if (s->r[i].lo > next && set_add(&t, next, s->r[i].lo - 1)) return free(t.r), -1;
        next = s->r[i].hi + 1;
    }
    if (next <= max && set_add(&t, next, max)) return free(t.r), -1;
    free(s->r);
    *s = t;
    return 0;
}

static int set_merge(rx_set *dst, const rx_set *src) {
    for (int i = 0; i < src->n; i++)
        if (set_add(dst, src->r[i].lo, src->r[i].hi)) return -1;
    return 0;
}

// ---- the syntax tree ----

enum { RN_SET, RN_CAT, RN_ALT, RN_REP };

typedef struct rx_node {
    int kind;
    int kid, next; // first child and next sibling (CAT, ALT, REP), -1 none
    int min, max;  // REP; max -1: unbounded
    rx_set set;    // SET
} rx_node;

typedef struct rx_parser {
    const char *p;
    size_t n, i;
    unsigned flags;
    uint32_t max_cp; // 0x10FFFF, or 0xFF for RX_BYTES
    rx_node *nodes;
    int n_nodes, cap_nodes;
    int depth;
    err_t *err;
} rx_parser;

static int node_new(rx_parser *p, int kind) {
    if (p->n_nodes == p->cap_nodes) {
        int cap = p->cap_nodes ? p->cap_nodes * 2 : 32;
        rx_node *nd = realloc(p->nodes, (size_t)cap * sizeof *nd);
        if (!nd) return err_set(p->err, "regex: out of memory");
        p->nodes = nd, p->cap_nodes = cap;
    }
    p->nodes[p->n_nodes] = (rx_node){.kind = kind, .kid = -1, .next = -1};
    return p->n_nodes++;
}

// Appends child c to the kid list of node parent (kept in order via a walk;
// lists are short).
static void node_append(rx_parser *p, int parent, int c) {
    int *at = &p->nodes[parent].kid;
    while (*at >= 0) at = &p->nodes[*at].next;
    *at = c;
}

static int perr(rx_parser *p, const char *what) {
    return err_set(p->err, "regex: %s at offset %zu", what, p->i);
}

static int node_set(rx_parser *p, rx_set *s) {
    int k = node_new(p, RN_SET);
    if (k < 0) return free(s->r), -1;
    set_norm(s);
    p->nodes[k].set = *s;
    return k;
}

static int node_cp(rx_parser *p, uint32_t lo, uint32_t hi) {
    rx_set s = {0};
    if (set_add(&s, lo, hi)) return err_set(p->err, "regex: out of memory");
    return node_set(p, &s);
}

// ---- escapes and classes ----

static int add_class_escape(rx_set *s, char c) {
    static const uint32_t space[][2] = {{9, 13},       {32, 32},         {0xA0, 0xA0},     {0x1680, 0x1680},
                                        {0x2000, 0x200A}, {0x2028, 0x2029}, {0x202F, 0x202F}, {0x205F, 0x205F},
                                        {0x3000, 0x3000}, {0xFEFF, 0xFEFF}};
    int r = 0;
    switch (c | 0x20) {
    case 'd': r = set_add(s, '0', '9'); break;
    case 'w':
        r = set_add(s, '0', '9') || set_add(s, 'A', 'Z') || set_add(s, '_', '_') || set_add(s, 'a', 'z');
        break;
    case 's':
        for (size_t i = 0; i < sizeof space / sizeof space[0] && !r; i++) r = set_add(s, space[i][0], space[i][1]);
        break;
    }
    return r;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') return (c | 0x20) - 'a' + 10;
    return -1;
}

// Reads exactly k hex digits at p->i; -1 if they are not there.
static int64_t read_hex(rx_parser *p, int k) {
    int64_t v = 0;
    for (int j = 0; j < k; j++) {
        if (p->i + (size_t)j >= p->n || hexval(p->p[p->i + j]) < 0) return -1;
        v = v * 16 + hexval(p->p[p->i + j]);
    }
    p->i += (size_t)k;
    return v;
}

// \u escapes: \uHHHH, a surrogate pair of two, or \u{H...}.
static int64_t read_u_escape(rx_parser *p) {
    if (p->i < p->n && p->p[p->i] == '{') {
        size_t j = p->i + 1;
        int64_t v = 0;
        while (j < p->n && hexval(p->p[j]) >= 0 && v <= RX_MAX_CP) v = v * 16 + hexval(p->p[j++]);
        if (j == p->i + 1 || j >= p->n || p->p[j] != '}' || v > RX_MAX_CP) return -1;
        p->i = j + 1;
        return v;
    }
    int64_t v = read_hex(p, 4);
    if (v >= 0xD800 && v <= 0xDBFF && p->i + 6 <= p->n && p->p[p->i] == '\\' && p->p[p->i + 1] == 'u') {
        size_t save = p->i;
        p->i += 2;
        int64_t lo = read_hex(p, 4);
        if (lo >= 0xDC00 && lo <= 0xDFFF) return 0x10000 + ((v - 0xD800) << 10) + (lo - 0xDC00);
        p->i = save;
    }
    return v;
}

// The constructs ECMA has and this engine refuses, by the letter after '\'.
static const char *unsupported_escape(char c) {
    switch (c) {
    case 'b': return "word boundary '\\b'";
    case 'B': return "word boundary '\\B'";
    case 'p': case 'P': return "Unicode property escape '\\p{..}'";
    case 'k': return "named backreference '\\k<..>'";
    }
    if (c >= '1' && c <= '9') return "backreference '\\N'";
    return NULL;
}

// Parses the escape after a '\' at p->i - 1. A character class escape
// (\d \w \s and negations) fills *set and returns 1; a single character
// sets *cp and returns 0; -1 on error. in_class: '\b' is backspace and '\-'
// a dash.
static int parse_escape(rx_parser *p, int in_class, rx_set *set, uint32_t *cp) {
    if (p->i >= p->n) return perr(p, "'\\' at the end of the pattern");
    char c = p->p[p->i++];
    const char *simple = "t\tn\nr\rf\fv\v";
    for (const char *s = simple; *s; s += 2)
        if (c == s[0]) return *cp = (uint8_t)s[1], 0;
    if (strchr("dDwWsS", c)) {
        if (add_class_escape(set, c)) return err_set(p->err, "regex: out of memory");
        if (c >= 'A' && c <= 'Z') {
            set_norm(set);
            if (set_negate(set, p->max_cp)) return err_set(p->err, "regex: out of memory");
        }
        return 1;
    }
    if (in_class && c == 'b') return *cp = 8, 0;
    if (in_class && c == '-') return *cp = '-', 0;
    if (c == '0' && !(p->i < p->n && p->p[p->i] >= '0' && p->p[p->i] <= '9')) return *cp = 0, 0;
    const char *no = unsupported_escape(c);
    if (no) {
        p->i--;
        return err_set(p->err, "regex: %s is not supported at offset %zu", no, p->i - 1);
    }
    if (c == 'c' && p->i < p->n && ((p->p[p->i] | 0x20) >= 'a' && (p->p[p->i] | 0x20) <= 'z'))
        return *cp = (uint8_t)(p->p[p->i++] & 31), 0;
    if (c == 'x' || c == 'u') {
        int64_t v = c == 'x' ? read_hex(p, 2) : read_u_escape(p);
        if (v < 0) return perr(p, c == 'x' ? "bad '\\x' escape" : "bad '\\u' escape");
        if ((uint32_t)v > p->max_cp) return perr(p, "code point above 0xFF in a byte pattern");
        return *cp = (uint32_t)v, 0;
    }
    // Identity escapes: ECMA's u mode allows syntax characters and '/';
    // any ASCII punctuation is accepted here (it can only mean itself).
    if ((uint8_t)c < 0x80 && !((c | 0x20) >= 'a' && (c | 0x20) <= 'z') && !(c >= '0' && c <= '9') && c > 0x20)
        return *cp = (uint8_t)c, 0;
    p->i--;
    return err_set(p->err, "regex: unknown escape '\\%c' at offset %zu", c, p->i - 1);
}

// One literal character of the pattern (UTF-8 decoded).
static int read_char(rx_parser *p, uint32_t *cp) {
    size_t adv;
    int32_t c = utf8_decode((const uint8_t *)p->p + p->i, p->n - p->i, &adv);
    if (c < 0) return perr(p, "invalid UTF-8 in the pattern");
    if ((uint32_t)c > p->max_cp) return perr(p, "code point above 0xFF in a byte pattern");
    p->i += adv;
    *cp = (uint32_t)c;
    return 0;
}

// One class atom: a character (0) or a class escape merged into set (1).
static int class_atom(rx_parser *p, rx_set *set, uint32_t *cp) {
    if (p->p[p->i] == '\\') {
        p->i++;
        rx_set t = {0};
        int r = parse_escape(p, 1, &t, cp);
        if (r == 1 && set_merge(set, &t)) r = err_set(p->err, "regex: out of memory");
        free(t.r);
        return r;
    }
    return read_char(p, cp);
}

static int parse_class_items(rx_parser *p, rx_set *s) {
    while (p->i < p->n && p->p[p->i] != ']') {
        uint32_t a, b;
        int r = class_atom(p, s, &a);
        if (r < 0) return -1;
        if (p->i + 1 < p->n && p->p[p->i] == '-' && p->p[p->i + 1] != ']') {
            p->i++;
            int r2 = class_atom(p, s, &b);
            if (r2 < 0) return -1;
            if (r == 1 || r2 == 1) return perr(p, "class escape in a range");
            if (b < a) return perr(p, "range out of order in character class");
            if (set_add(s, a, b)) return err_set(p->err, "regex: out of memory");
        } else if (r == 0 && set_add(s, a, a)) {
            return err_set(p->err, "regex: out of memory");
        }
    }
    if (p->i >= p->n) return perr(p, "missing ']'");
    p->i++;
    return 0;
}

static int parse_class(rx_parser *p) {
    rx_set s = {0};
    int neg = p->i < p->n && p->p[p->i] == '^';
    p->i += (size_t)neg;
    if (parse_class_items(p, &s)) return free(s.r), -1;
    set_norm(&s);
    if (neg && set_negate(&s, p->max_cp)) return free(s.r), err_set(p->err, "regex: out of memory");
    return node_set(p, &s);
}

// ---- atoms, quantifiers, sequences, alternation ----

static int parse_alt(rx_parser *p, int top, int *anch);

static int parse_group(rx_parser *p) {
    size_t at = p->i - 1;
    if (p->i < p->n && p->p[p->i] == '?') {
        const char *q = p->p + p->i;
        size_t left = p->n - p->i;
        if (left >= 2 && q[1] == ':') {
            p->i += 2;
        } else if (left >= 3 && q[1] == '<' && q[2] != '=' && q[2] != '!') {
            const char *gt = memchr(q, '>', left);
            if (!gt) return perr(p, "unterminated group name");
            p->i += (size_t)(gt - q) + 1;
        } else {
            const char *what = left >= 2 && q[1] == '=' ? "lookahead '(?='"
                               : left >= 2 && q[1] == '!' ? "negative lookahead '(?!'"
                               : left >= 3 && q[1] == '<' && q[2] == '=' ? "lookbehind '(?<='"
                               : left >= 3 && q[1] == '<' ? "negative lookbehind '(?<!'"
                                                          : "group modifier '(?'";
            return err_set(p->err, "regex: %s is not supported at offset %zu", what, at);
        }
    }
    if (++p->depth > RX_MAX_DEPTH) return perr(p, "groups nested too deep");
    int k = parse_alt(p, 0, NULL);
    p->depth--;
    if (k < 0) return -1;
    if (p->i >= p->n || p->p[p->i] != ')') return err_set(p->err, "regex: missing ')' for '(' at offset %zu", at);
    p->i++;
    return k;
}

static int parse_atom(rx_parser *p) {
    uint32_t cp;
    char c = p->p[p->i++];
    switch (c) {
    case '.': {
        rx_set s = {0};
        int bad = p->max_cp == 0xFF ? set_add(&s, '\n', '\n')
                                    : set_add(&s, '\n', '\n') || set_add(&s, '\r', '\r') || set_add(&s, 0x2028, 0x2029);
        if (bad || set_negate(&s, p->max_cp)) return free(s.r), err_set(p->err, "regex: out of memory");
        return node_set(p, &s);
    }
    case '[': return parse_class(p);
    case '(': return parse_group(p);
    case '\\': {
        rx_set s = {0};
        int r = parse_escape(p, 0, &s, &cp);
        if (r == 1) return node_set(p, &s);
        free(s.r);
        return r < 0 ? -1 : node_cp(p, cp, cp);
    }
    case '*': case '+': case '?': p->i--; return perr(p, "nothing to repeat");
    case '{': case '}': case ']': p->i--; return perr(p, "lone quantifier bracket");
    case '^': case '$':
        p->i--;
        return err_set(p->err, "regex: anchor '%c' is only supported at the start / end of a top-level alternative, at offset %zu",
                       c, p->i);
    }
    p->i--;
    if (read_char(p, &cp)) return -1;
    return node_cp(p, cp, cp);
}

static int read_count(rx_parser *p, int *v) {
    size_t j = p->i;
    long x = 0;
    while (p->i < p->n && p->p[p->i] >= '0' && p->p[p->i] <= '9') {
        x = x * 10 + (p->p[p->i++] - '0');
        if (x > RX_MAX_COUNT) return perr(p, "repetition count too large");
    }
    *v = (int)x;
    return p->i > j ? 1 : 0;
}

// Parses {n}, {n,}, {n,m} at p->i ('{'); 0 with *min/*max, -1 on error.
static int parse_braces(rx_parser *p, int *min, int *max) {
    p->i++;
    int r = read_count(p, min);
    if (r <= 0) return r < 0 ? -1 : perr(p, "lone quantifier bracket");
    *max = *min;
    if (p->i < p->n && p->p[p->i] == ',') {
        p->i++;
        r = read_count(p, max);
        if (r < 0) return -1;
        if (r == 0) *max = -1;
    }
    if (p->i >= p->n || p->p[p->i] != '}') return perr(p, "lone quantifier bracket");
    p->i++;
    if (*max >= 0 && *max < *min) return perr(p, "numbers out of order in {} quantifier");
    return 0;
}

static int parse_quant(rx_parser *p, int atom) {
    if (p->i >= p->n) return atom;
    int min, max;
    switch (p->p[p->i]) {
    case '*': min = 0, max = -1, p->i++; break;
    case '+': min = 1, max = -1, p->i++; break;
    case '?': min = 0, max = 1, p->i++; break;
    case '{':
        if (parse_braces(p, &min, &max)) return -1;
        break;
    default: return atom;
    }
    if (p->i < p->n && p->p[p->i] == '?') p->i++; // lazy: the same language
    if (p->i < p->n && strchr("*+?{", p->p[p->i])) return perr(p, "nothing to repeat");
    int k = node_new(p, RN_REP);
    if (k < 0) return -1;
    p->nodes[k].kid = atom, p->nodes[k].min = min, p->nodes[k].max = max;
    return k;
}

// A sequence up to '|', ')' or the end. At the top level, leading '^' and a
// final '$' set anch bits 1 and 2.
static int parse_seq(rx_parser *p, int top, int *anch) {
    int cat = node_new(p, RN_CAT);
    if (cat < 0) return -1;
    while (top && p->i < p->n && p->p[p->i] == '^') p->i++, *anch |= 1;
    while (p->i < p->n && p->p[p->i] != '|' && p->p[p->i] != ')') {
        if (top && p->p[p->i] == '$' && (p->i + 1 == p->n || p->p[p->i + 1] == '|')) {
            p->i++, *anch |= 2;
            break;
        }
        int a = parse_atom(p);
        if (a < 0) return -1;
        a = parse_quant(p, a);
        if (a < 0) return -1;
        node_append(p, cat, a);
    }
    return cat;
}

// Alternatives; at the top level each one is wrapped for search semantics
// by the caller through anch (one entry per alternative).
static int parse_alt(rx_parser *p, int top, int *anch) {
    int alt = node_new(p, RN_ALT), n = 0;
    if (alt < 0) return -1;
    for (;;) {
        int a = 0;
        int s = parse_seq(p, top, &a);
        if (s < 0) return -1;
        if (top) anch[n] = a;
        node_append(p, alt, s);
        n++;
        if (p->i >= p->n || p->p[p->i] != '|') break;
        p->i++;
    }
    if (top && p->i < p->n) return perr(p, "unmatched ')'");
    return alt;
}

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
    if (n->ne == n->cape) {
        int32_t cap = n->cape ? n->cape * 2 : 256;
        rx_nedge *e = realloc(n->e, (size_t)cap * sizeof *e);
        if (!e) return -1;
        n->e = e, n->cape = cap;
    }
    n->e[n->ne] = (rx_nedge){to, n->s[from].eps};
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
    const rx_parser *p;
    int json;
    err_t *err;
    rx_trie_edge *trie; // the current character set's trie (see chain)
    int n_trie, cap_trie;
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
        int r = b->p->max_cp == 0xFF ? chain(b, from, to, &l, &h, 1)
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
    const rx_node *nd = &b->p->nodes[k];
    switch (nd->kind) {
    case RN_SET: return frag_set(b, &nd->set, from);
    case RN_CAT:
        for (int c = nd->kid; c >= 0 && from >= 0; c = b->p->nodes[c].next) from = frag(b, c, from);
        return from;
    case RN_REP: return frag_rep(b, nd, from);
    }
    int32_t end = rx_nfa_state(b->nfa);
    if (end < 0) return berr(b);
    for (int c = nd->kid; c >= 0; c = b->p->nodes[c].next) {
        int32_t s = frag_join(b, &from), e = s < 0 ? -1 : frag(b, c, s);
        if (e < 0 || rx_nfa_eps(b->nfa, e, end)) return e < 0 ? -1 : berr(b);
    }
    return end;
}

// Any character, any number of times (search semantics' implicit .*).
static int32_t frag_any_star(rx_build *b, int32_t from) {
    rx_set s = {0};
    if (set_add(&s, 0, b->p->max_cp)) return err_set(b->err, "regex: out of memory");
    int32_t loop = frag_join(b, &from), e = loop < 0 ? -1 : frag_set(b, &s, loop);
    free(s.r);
    if (e < 0 || rx_nfa_eps(b->nfa, e, loop)) return e < 0 ? -1 : berr(b);
    return loop;
}

// The body: the top-level alternatives, each wrapped in .* on the sides its
// anchors leave open (search), or as is (anchored).
static int32_t frag_top(rx_build *b, int root, const int *anch, int search, int32_t from) {
    int32_t end = rx_nfa_state(b->nfa);
    if (end < 0) return berr(b);
    b->nfa->s[end].bnd = (uint8_t)b->json;
    int i = 0;
    for (int c = b->p->nodes[root].kid; c >= 0; c = b->p->nodes[c].next, i++) {
        int32_t s = frag_join(b, &from);
        if (s >= 0 && search && !(anch[i] & 1)) s = frag_any_star(b, s);
        if (s >= 0) s = frag(b, c, s);
        if (s >= 0 && search && !(anch[i] & 2)) s = frag_any_star(b, s);
        if (s < 0 || rx_nfa_eps(b->nfa, s, end)) return s < 0 ? -1 : berr(b);
    }
    return end;
}

static void parser_free(rx_parser *p) {
    for (int i = 0; i < p->n_nodes; i++) free(p->nodes[i].set.r);
    free(p->nodes);
}

static int32_t quote(rx_build *b, int32_t from) {
    int32_t q = rx_nfa_state(b->nfa);
    if (q < 0) return berr(b);
    b->nfa->s[from].lo = b->nfa->s[from].hi = '"';
    b->nfa->s[from].out = q;
    return q;
}

int32_t rx_nfa_add(rx_nfa *n, const char *pattern, size_t len, unsigned flags, int32_t tag, err_t *err) {
    rx_parser p = {.p = pattern, .n = len, .flags = flags, .err = err};
    p.max_cp = flags & RX_BYTES ? 0xFF : RX_MAX_CP;
    int *anch = calloc(len + 1, sizeof *anch);
    if (!anch) return err_set(err, "regex: out of memory");
    int root = parse_alt(&p, 1, anch);
    rx_build b = {.nfa = n, .p = &p, .json = (flags & RX_JSON_STRING) != 0, .err = err};
    int32_t start = root < 0 ? -1 : rx_nfa_state(n), s = start;
    if (root >= 0 && start < 0) berr(&b);
    if (s >= 0 && b.json) {
        s = quote(&b, s);
        if (s >= 0) n->s[s].bnd = 1;
    }
    if (s >= 0) s = frag_top(&b, root, anch, (flags & RX_SEARCH) != 0, s);
    if (s >= 0 && b.json) s = quote(&b, s);
    if (s >= 0) n->s[s].tag = tag;
    free(anch);
    free(b.trie);
    parser_free(&p);
    return s < 0 ? -1 : start;
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
    rx_parser p = {.max_cp = RX_MAX_CP, .err = err};
    rx_build b = {.nfa = n, .p = &p, .json = 1, .err = err};
    int32_t start = rx_nfa_state(n), at = start < 0 ? berr(&b) : quote(&b, start);
    if (at >= 0) n->s[at].bnd = 1, at = literal_chars(&b, s, len, at);
    if (at >= 0) at = quote(&b, at);
    if (at >= 0) n->s[at].tag = tag;
    free(b.trie);
    return at < 0 ? -1 : start;
}

rx_dfa *rx_compile(const char *pattern, size_t len, unsigned flags, err_t *err) {
    rx_nfa n = {0};
    n.start = rx_nfa_add(&n, pattern, len, flags, 0, err);
    rx_dfa *d = NULL;
    if (n.start >= 0) d = rx_determinize(&n, (rx_labels){.json = (flags & RX_JSON_STRING) != 0}, err);
    rx_nfa_free(&n);
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
