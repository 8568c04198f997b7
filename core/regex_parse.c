// regex_parse: ECMA-262 pattern syntax (as JSON Schema's "pattern" uses it)
// into the syntax tree of regex_int.h: code point sets, concatenation,
// alternation and counted repetition. Everything ECMA has and a DFA cannot
// do (lookbehind, backreferences, \b, \p{..}) is an error
// naming the construct and its offset.
#include <stdlib.h>
#include <string.h>

#include "regex_int.h"
#include "utf8.h"

#define RX_MAX_COUNT 100000 // the largest n or m in {n,m}
#define RX_MAX_DEPTH 200    // nested groups

// ---- code point sets ----

int rx_set_add(rx_set *s, uint32_t lo, uint32_t hi) {
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
        if (s->r[i].lo > next && rx_set_add(&t, next, s->r[i].lo - 1)) return free(t.r), -1;
        next = s->r[i].hi + 1;
    }
    if (next <= max && rx_set_add(&t, next, max)) return free(t.r), -1;
    free(s->r);
    *s = t;
    return 0;
}

static int set_merge(rx_set *dst, const rx_set *src) {
    for (int i = 0; i < src->n; i++)
        if (rx_set_add(dst, src->r[i].lo, src->r[i].hi)) return -1;
    return 0;
}

// ---- the syntax tree ----

typedef struct rx_parser {
    const char *p;
    size_t n, i;
    rx_ast a; // what is being built
    int depth;
    err_t *err;
} rx_parser;

static int node_new(rx_parser *p, int kind) {
    if (p->a.n_nodes == p->a.cap_nodes) {
        int cap = p->a.cap_nodes ? p->a.cap_nodes * 2 : 32;
        rx_node *nd = realloc(p->a.nodes, (size_t)cap * sizeof *nd);
        if (!nd) return err_set(p->err, "regex: out of memory");
        p->a.nodes = nd, p->a.cap_nodes = cap;
    }
    p->a.nodes[p->a.n_nodes] = (rx_node){.kind = kind, .kid = -1, .next = -1};
    return p->a.n_nodes++;
}

// Appends child c to the kid list of node parent (kept in order via a walk;
// lists are short).
static void node_append(rx_parser *p, int parent, int c) {
    int *at = &p->a.nodes[parent].kid;
    while (*at >= 0) at = &p->a.nodes[*at].next;
    *at = c;
}

static int perr(rx_parser *p, const char *what) {
    return err_set(p->err, "regex: %s at offset %zu", what, p->i);
}

static int node_set(rx_parser *p, rx_set *s) {
    int k = node_new(p, RN_SET);
    if (k < 0) return free(s->r), -1;
    set_norm(s);
    // \s holds code points past 0xFF: a byte pattern keeps its bytes only.
    while (s->n && s->r[s->n - 1].lo > p->a.max_cp) s->n--;
    if (s->n && s->r[s->n - 1].hi > p->a.max_cp) s->r[s->n - 1].hi = p->a.max_cp;
    p->a.nodes[k].set = *s;
    return k;
}

static int node_cp(rx_parser *p, uint32_t lo, uint32_t hi) {
    rx_set s = {0};
    if (rx_set_add(&s, lo, hi)) return err_set(p->err, "regex: out of memory");
    return node_set(p, &s);
}

// ---- escapes and classes ----

static int add_class_escape(rx_set *s, char c) {
    static const uint32_t space[][2] = {{9, 13},       {32, 32},         {0xA0, 0xA0},     {0x1680, 0x1680},
                                        {0x2000, 0x200A}, {0x2028, 0x2029}, {0x202F, 0x202F}, {0x205F, 0x205F},
                                        {0x3000, 0x3000}, {0xFEFF, 0xFEFF}};
    int r = 0;
    switch (c | 0x20) {
    case 'd': r = rx_set_add(s, '0', '9'); break;
    case 'w':
        r = rx_set_add(s, '0', '9') || rx_set_add(s, 'A', 'Z') || rx_set_add(s, '_', '_') || rx_set_add(s, 'a', 'z');
        break;
    case 's':
        for (size_t i = 0; i < sizeof space / sizeof space[0] && !r; i++) r = rx_set_add(s, space[i][0], space[i][1]);
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
            if (set_negate(set, p->a.max_cp)) return err_set(p->err, "regex: out of memory");
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
        if ((uint32_t)v > p->a.max_cp) return perr(p, "code point above 0xFF in a byte pattern");
        return *cp = (uint32_t)v, 0;
    }
    // Identity escapes: ECMA's u mode allows syntax characters and '/';
    // any ASCII punctuation is accepted here (it can only mean itself).
    if ((uint8_t)c < 0x80 && !((c | 0x20) >= 'a' && (c | 0x20) <= 'z') && !(c >= '0' && c <= '9') && c > 0x20)
        return *cp = (uint8_t)c, 0;
    p->i--;
    return err_set(p->err, "regex: unknown escape '\\%c' at offset %zu", c, p->i - 1);
}

// One literal character of the pattern (UTF-8 decoded; a raw byte in a
// byte pattern).
static int read_char(rx_parser *p, uint32_t *cp) {
    if (p->a.max_cp == 0xFF) return *cp = (uint8_t)p->p[p->i++], 0; // byte patterns: raw bytes
    size_t adv;
    int32_t c = utf8_decode((const uint8_t *)p->p + p->i, p->n - p->i, &adv);
    if (c < 0) return perr(p, "invalid UTF-8 in the pattern");
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
            if (rx_set_add(s, a, b)) return err_set(p->err, "regex: out of memory");
        } else if (r == 0 && rx_set_add(s, a, a)) {
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
    if (neg && set_negate(&s, p->a.max_cp)) return free(s.r), err_set(p->err, "regex: out of memory");
    return node_set(p, &s);
}

// ---- atoms, quantifiers, sequences, alternation ----

static int parse_alt(rx_parser *p, int top);

// A lookahead (?=X) or (?!X) at `at`: an RN_LOOK node (min: negative,
// max: its offset) over X. Where it may stand is checked when compiling.
// A group's alternatives up to its ')' (the '(' at `at`).
static int parse_inner(rx_parser *p, size_t at) {
    if (++p->depth > RX_MAX_DEPTH) return perr(p, "groups nested too deep");
    int k = parse_alt(p, 0);
    p->depth--;
    if (k < 0) return -1;
    if (p->i >= p->n || p->p[p->i] != ')') return err_set(p->err, "regex: missing ')' for '(' at offset %zu", at);
    p->i++;
    return k;
}

static int parse_look(rx_parser *p, int neg, size_t at) {
    p->i += 2;
    int k = parse_inner(p, at);
    if (k < 0) return -1;
    int look = node_new(p, RN_LOOK);
    if (look < 0) return -1;
    p->a.nodes[look].kid = k, p->a.nodes[look].min = neg, p->a.nodes[look].max = (int)at;
    return look;
}

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
        } else if (left >= 2 && (q[1] == '=' || q[1] == '!')) {
            return parse_look(p, q[1] == '!', at);
        } else {
            const char *what = left >= 3 && q[1] == '<' && q[2] == '=' ? "lookbehind '(?<='"
                               : left >= 3 && q[1] == '<' ? "negative lookbehind '(?<!'"
                                                          : "group modifier '(?'";
            return err_set(p->err, "regex: %s is not supported at offset %zu", what, at);
        }
    }
    return parse_inner(p, at);
}

// Whether p->i starts a {n}, {n,} or {n,m} quantifier.
static int is_braces(const rx_parser *p) {
    size_t j = p->i + 1, d = j;
    while (j < p->n && p->p[j] >= '0' && p->p[j] <= '9') j++;
    if (j == d) return 0;
    if (j < p->n && p->p[j] == ',')
        for (j++; j < p->n && p->p[j] >= '0' && p->p[j] <= '9';) j++;
    return j < p->n && p->p[j] == '}';
}

static int parse_atom(rx_parser *p) {
    uint32_t cp;
    char c = p->p[p->i++];
    switch (c) {
    case '.': {
        rx_set s = {0};
        int bad = p->a.max_cp == 0xFF ? rx_set_add(&s, '\n', '\n')
                                    : rx_set_add(&s, '\n', '\n') || rx_set_add(&s, '\r', '\r') || rx_set_add(&s, 0x2028, 0x2029);
        if (bad || set_negate(&s, p->a.max_cp)) return free(s.r), err_set(p->err, "regex: out of memory");
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
    case '{':
        p->i--;
        if (is_braces(p)) return perr(p, "nothing to repeat");
        p->i++;
        return node_cp(p, '{', '{');
    // A '{' that is no quantifier, and lone '}' and ']', are literals, as
    // ECMA's Annex B (and Python's re, which validators use) read them;
    // the u flag would refuse them, but they can only mean themselves.
    case '}': case ']': return node_cp(p, (uint8_t)c, (uint8_t)c);
    case '^': return node_new(p, RN_BOL);
    case '$': return node_new(p, RN_EOL);
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
        if (!is_braces(p)) return atom; // a literal '{' follows
        if (parse_braces(p, &min, &max)) return -1;
        break;
    default: return atom;
    }
    if (p->i < p->n && p->p[p->i] == '?') p->i++; // lazy: the same language
    if (p->i < p->n && (strchr("*+?", p->p[p->i]) || (p->p[p->i] == '{' && is_braces(p))))
        return perr(p, "nothing to repeat");
    int k = node_new(p, RN_REP);
    if (k < 0) return -1;
    p->a.nodes[k].kid = atom, p->a.nodes[k].min = min, p->a.nodes[k].max = max;
    return k;
}

// A sequence up to '|', ')' or the end.
static int parse_seq(rx_parser *p) {
    int cat = node_new(p, RN_CAT);
    if (cat < 0) return -1;
    while (p->i < p->n && p->p[p->i] != '|' && p->p[p->i] != ')') {
        int a = parse_atom(p);
        if (a < 0) return -1;
        int kind = p->a.nodes[a].kind;
        if ((kind == RN_BOL || kind == RN_EOL || kind == RN_LOOK) && p->i < p->n && strchr("*+?{", p->p[p->i]))
            return perr(p, "nothing to repeat"); // as ECMA's u mode says of ^* and $+
        a = parse_quant(p, a);
        if (a < 0) return -1;
        node_append(p, cat, a);
    }
    return cat;
}

// Alternatives, up to ')' or (top) the end.
static int parse_alt(rx_parser *p, int top) {
    int alt = node_new(p, RN_ALT);
    if (alt < 0) return -1;
    for (;;) {
        int s = parse_seq(p);
        if (s < 0) return -1;
        node_append(p, alt, s);
        if (p->i >= p->n || p->p[p->i] != '|') break;
        p->i++;
    }
    if (top && p->i < p->n) return perr(p, "unmatched ')'");
    return alt;
}

void rx_ast_free(rx_ast *a) {
    for (int i = 0; i < a->n_nodes; i++) free(a->nodes[i].set.r);
    free(a->nodes);
    memset(a, 0, sizeof *a);
}

int rx_parse(rx_ast *a, const char *pattern, size_t len, unsigned flags, err_t *err) {
    rx_parser p = {.p = pattern, .n = len, .err = err};
    p.a.max_cp = flags & RX_BYTES ? 0xFF : RX_MAX_CP;
    p.a.root = parse_alt(&p, 1);
    *a = p.a;
    if (a->root < 0) return rx_ast_free(a), -1;
    return 0;
}
