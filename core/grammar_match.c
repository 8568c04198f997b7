// grammar_match: the byte-level matcher over a js_schema node graph. One
// byte moves every thread of a set; see grammar_int.h for the state.
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "grammar_int.h"

// ---- arena ----------------------------------------------------------------

void *gm_arena_alloc(gm_arena *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (n > GM_ARENA_CHUNK) return NULL;
    if (a->n_chunks == 0 || a->off + n > GM_ARENA_CHUNK) {
        int next = a->n_chunks == 0 ? 0 : a->cur + 1;
        if (next >= GM_ARENA_MAX_CHUNKS) return NULL;
        if (next == a->n_chunks) {
            a->chunks[next] = malloc(GM_ARENA_CHUNK);
            if (!a->chunks[next]) return NULL;
            a->n_chunks++;
        }
        a->cur = next;
        a->off = 0;
    }
    void *p = a->chunks[a->cur] + a->off;
    a->off += n;
    return p;
}

gm_mark gm_arena_mark(const gm_arena *a) {
    return (gm_mark){a->cur, a->off};
}

void gm_arena_reset(gm_arena *a, gm_mark m) {
    a->cur = m.cur;
    a->off = m.off;
}

void gm_arena_free(gm_arena *a) {
    for (int i = 0; i < a->n_chunks; i++) free(a->chunks[i]);
    memset(a, 0, sizeof *a);
}

// ---- helpers ----------------------------------------------------------------

static bool is_ws(uint8_t b) {
    return b == ' ' || b == '\t' || b == '\n' || b == '\r';
}

static const js_node *node_at(const gm_grammar *g, int32_t i) {
    return &g->s->nodes[i];
}

static gm_frame *frame_new(gm_arena *a, const gm_frame *copy_of) {
    gm_frame *f = gm_arena_alloc(a, sizeof *f);
    if (f && copy_of) *f = *copy_of;
    return f;
}

static size_t seen_words(const js_node *n) {
    return ((size_t)n->n_props + 63) / 64;
}

static bool seen_has(const gm_frame *f, int32_t i) {
    return f->seen && (f->seen[i / 64] >> (i % 64) & 1);
}

static bool frame_eq(const gm_grammar *g, const gm_frame *x, const gm_frame *y) {
    while (x != y) {
        if (!x || !y) return false;
        if (x->node != y->node || x->kind != y->kind || x->phase != y->phase ||
            x->state != y->state || x->count != y->count || x->prop != y->prop ||
            x->dfa != y->dfa || x->num_len != y->num_len || x->depth != y->depth)
            return false;
        if (x->num_len && memcmp(x->num, y->num, x->num_len)) return false;
        if (x->seen != y->seen) {
            size_t w = seen_words(node_at(g, x->node));
            for (size_t i = 0; i < w; i++) {
                uint64_t a = x->seen ? x->seen[i] : 0, b = y->seen ? y->seen[i] : 0;
                if (a != b) return false;
            }
        }
        x = x->up;
        y = y->up;
    }
    return true;
}

// Adds t to out unless an equal thread is there; past GM_MAX_THREADS the
// thread is dropped (a possible false reject, never a false accept).
static void set_add(const gm_grammar *g, gm_set *out, const gm_frame *top, int32_t ws) {
    for (int i = 0; i < out->n; i++)
        if (out->th[i].ws == ws && frame_eq(g, out->th[i].top, top)) return;
    if (out->n < GM_MAX_THREADS) out->th[out->n++] = (gm_thread){top, ws};
}

static void ws_step(const gm_grammar *g, const gm_thread *t, gm_set *out) {
    if (g->ws_max < 0 || t->ws < g->ws_max) set_add(g, out, t->top, t->ws + 1);
}

bool gm_lex_numeric(const js_node *n) {
    return n->lex == JS_LEX_NUMBER &&
           (n->has_min || n->has_max || n->multiple_of > 0 || n->num_enum);
}

bool gm_lex_counted(const gm_grammar *g, const gm_frame *f) {
    if (f->up && f->up->kind == FR_OBJECT && f->up->phase == PH_KEY) return false;
    const js_node *n = node_at(g, f->node);
    return n->lex == JS_LEX_STRING && (n->min_len > 0 || n->max_len >= 0);
}

static bool is_key_lex(const gm_frame *f) {
    return f->up && f->up->kind == FR_OBJECT && f->up->phase == PH_KEY;
}

// ---- numbers ----------------------------------------------------------------

// value / m within rounding of an integer: 1e-9, or a few ulps of a large
// quotient (a relative bound would pass 1643723400.5 as a multiple of 1).
static bool multiple_ok(double v, double m, const char *text) {
    bool integral = !strpbrk(text, ".eE");
    if (integral && fabs(v) < 9e15 && m == floor(m) && m < 9e15) {
        return (int64_t)v % (int64_t)m == 0;
    }
    double q = v / m;
    return fabs(q - nearbyint(q)) <= fmax(1e-9, 8 * DBL_EPSILON * fabs(q));
}

// Whether v meets a bound it equals as a double: integer texts past 2^53
// lost digits in the parse (9223372036854776001 == 2^63), so equality
// there cannot be decided and is refused.
static bool bound_exact(double v, double bound, const char *text) {
    return v != bound || fabs(v) < 9007199254740992.0 || strpbrk(text, ".eE");
}

// The numeric checks a number DFA cannot make, on its whole text.
static bool number_ok(const js_node *n, const char *num, int len) {
    char buf[GM_NUM_TEXT + 1];
    memcpy(buf, num, (size_t)len);
    buf[len] = 0;
    double v = strtod(buf, NULL);
    if (n->has_min && (n->excl_min ? !(v > n->minimum) : !(v >= n->minimum))) return false;
    if (n->has_max && (n->excl_max ? !(v < n->maximum) : !(v <= n->maximum))) return false;
    if ((n->has_min && !bound_exact(v, n->minimum, buf)) || (n->has_max && !bound_exact(v, n->maximum, buf)))
        return false;
    if (n->multiple_of > 0 && !multiple_ok(v, n->multiple_of, buf)) return false;
    if (n->num_enum) {
        for (int32_t i = 0; i < n->n_num_enum; i++)
            if (n->num_enum[i] == v) return true;
        return false;
    }
    return true;
}

// ---- number prefixes within bounds -------------------------------------------
//
// A number prefix that no completion can bring within minimum/maximum is
// refused at once, so a sampling model never walks into a dead end. Before
// an exponent mark, the completions of a prefix with significant digits D
// (leading zeros dropped) are every number whose digits begin with D, at
// any scale (more digits, a fraction, an exponent of either sign): per
// decade k the range [0.D, 0.D + 10^-len(D)) x 10^k. A prefix with no
// significant digit yet ("-", "0", "-0.00") reaches every number of its
// sign and 0. Past an exponent mark, exponent_meets. Refused as too long
// for the number text kept (GM_NUM_TEXT): a mantissa past 40 bytes, an
// exponent past 4 digits (possible false rejects). What stays unrefused
// until the number ends: more than 15 significant digits within a relative
// 1e-12 of a bound, and multipleOf values (the compiler makes number enums
// and whole multipleOf exact DFAs).

typedef struct num_range {
    double lo, hi;
    bool lo_in, hi_in; // ends included
} num_range;

static bool range_meets(num_range a, num_range b) {
    double lo = fmax(a.lo, b.lo), hi = fmin(a.hi, b.hi);
    bool lo_in = (a.lo != lo || a.lo_in) && (b.lo != lo || b.lo_in);
    bool hi_in = (a.hi != hi || a.hi_in) && (b.hi != hi || b.hi_in);
    return lo < hi || (lo == hi && lo_in && hi_in);
}

// Whether some positive number whose digits begin with m's (m in [0.1, 1),
// u = 10^-digits) lies in r, r's ends positive magnitudes.
static bool digits_meet(double m, double u, num_range r) {
    if (!(r.hi > 0)) return false;
    if (r.lo <= 0 || isinf(r.hi) || r.hi / r.lo > 100) return true; // tiny or huge numbers, or a whole decade
    for (int k = (int)floor(log10(r.lo)) - 1; k <= (int)floor(log10(r.hi)) + 2; k++) {
        double p = pow(10, k);
        num_range d = {m * p * (1 - 1e-12), (m + u) * p * (1 + 1e-12), true, true};
        if (range_meets(d, r)) return true;
    }
    return false;
}

// Past the exponent mark the mantissa is fixed (magnitude mant) and the
// exponent digits so far spell ex: the exponents still reachable are ex
// itself and those spelled by more digits (at most 4 in all); before a
// digit, any (either sign while no sign is written: sign 0). Whether
// mant x 10^e meets r (magnitudes) for one of them.
static bool exponent_meets(double mant, int sign, const char *digits, int n_digits, num_range r) {
    if (!(r.hi > 0)) return false;
    if (mant == 0) return range_meets((num_range){0, 0, true, true}, r);
    if (n_digits > 4) return false; // 10^10000 and beyond: not a double
    int ex = 0;
    for (int i = 0; i < n_digits; i++) ex = ex * 10 + (digits[i] - '0');
    // the exponents whose value lands in r, with a relative 1e-12 slack
    double lo_e = ceil(r.lo > 0 ? log10(r.lo / mant) - 1e-12 : -INFINITY);
    double hi_e = floor(isinf(r.hi) ? INFINITY : log10(r.hi / mant) + 1e-12);
    if (lo_e > hi_e) return false;
    if (n_digits == 0) // [0, 9999] for '+', [-9999, 0] for '-', both for no sign
        return (sign >= 0 && hi_e >= 0 && lo_e <= 9999) || (sign <= 0 && lo_e <= 0 && hi_e >= -9999);
    double e = sign < 0 ? -ex : ex;
    if (lo_e <= e && e <= hi_e) return true;
    // k more digits: |e| in [ex 10^k, ex 10^k + 10^k - 1]
    for (int k = 1, p = 10; n_digits + k <= 4; k++, p *= 10) {
        double a = (double)ex * p, b = a + p - 1;
        if (sign < 0 ? fmax(lo_e, -b) <= fmin(hi_e, -a) : fmax(lo_e, a) <= fmin(hi_e, b)) return true;
    }
    return false;
}

static bool num_prefix_ok(const js_node *n, const char *num, int len) {
    if (!n->has_min && !n->has_max) return true;
    num_range r = {n->has_min ? n->minimum : -INFINITY, n->has_max ? n->maximum : INFINITY,
                   n->has_min && !n->excl_min, n->has_max && !n->excl_max};
    // the text must end within GM_NUM_TEXT: 40 bytes of mantissa (a '.'
    // wants a digit after it) leave room for a 4-digit exponent
    const char *e = memchr(num, 'e', (size_t)len);
    if (!e) e = memchr(num, 'E', (size_t)len);
    int mant_len = e ? (int)(e - num) : len;
    if (mant_len > 40 || (!e && len == 40 && num[len - 1] == '.')) return false;
    bool neg = len && num[0] == '-';
    double m = 0, u = 1;
    int sig = 0;
    for (int i = neg; i < len; i++) {
        char c = num[i];
        if (c == 'e' || c == 'E') {
            if (neg) r = (num_range){-r.hi, -r.lo, r.hi_in, r.lo_in};
            int k = i + 1;
            int sign = k < len && num[k] == '-' ? -1 : k < len && num[k] == '+' ? 1 : 0;
            if (sign) k++;
            else if (k < len) sign = 1; // digits without a sign
            char mant[GM_NUM_TEXT + 1];
            memcpy(mant, num + neg, (size_t)(i - neg));
            mant[i - neg] = '\0';
            return exponent_meets(strtod(mant, NULL), sign, num + k, len - k, r);
        }
        if (c < '0' || c > '9' || (sig == 0 && c == '0')) continue;
        if (++sig > 15) continue; // past what a double tells: m stays (digits_meet has slack)
        u /= 10;
        m += (c - '0') * u;
    }
    if (neg) r = (num_range){-r.hi, -r.lo, r.hi_in, r.lo_in}; // magnitudes
    if (sig == 0) return range_meets((num_range){0, INFINITY, true, false}, r);
    return digits_meet(m, u, r);
}

// ---- objects and arrays -----------------------------------------------------

static bool obj_required_seen(const js_node *n, const gm_frame *f) {
    for (int32_t i = 0; i < n->n_props; i++)
        if (n->props[i].required && !seen_has(f, i)) return false;
    return true;
}

static bool obj_can_close(const gm_grammar *g, const gm_frame *f) {
    const js_node *n = node_at(g, f->node);
    return f->count >= n->min_props && obj_required_seen(n, f);
}

// Whether one more key may still come: under max_props, and some key has a
// value node that can start (an unseen property, a pattern, additional).
static bool obj_can_add(const gm_grammar *g, const gm_frame *f) {
    const js_node *n = node_at(g, f->node);
    if (n->max_props >= 0 && f->count >= n->max_props) return false;
    if (n->additional >= 0 && node_at(g, n->additional)->kind != JS_NEVER) return true;
    for (int32_t j = 0; j < n->n_patterns; j++)
        if (node_at(g, n->pattern_nodes[j])->kind != JS_NEVER) return true;
    for (int32_t i = 0; i < n->n_props; i++)
        if (!seen_has(f, i) && node_at(g, n->props[i].node)->kind != JS_NEVER) return true;
    return false;
}

static int32_t arr_item(const gm_grammar *g, const js_node *n, int32_t i) {
    int32_t it = i < n->n_prefix ? n->prefix[i] : n->items;
    if (it < 0 || node_at(g, it)->kind == JS_NEVER) return -1;
    if (n->max_items >= 0 && i >= n->max_items) return -1;
    return it;
}

// The value node a completed key (key DFA state) takes, and its property
// index (-1 for pattern / additional keys); -1 when the key is refused.
static int32_t key_value(const gm_grammar *g, const gm_frame *obj, const rx_dfa *d, int32_t s,
                         int32_t *prop) {
    const js_node *n = node_at(g, obj->node);
    int32_t name = d->key_name ? d->key_name[s] : -1;
    uint64_t pats = d->key_pats ? d->key_pats[s] : 0;
    int32_t vn = -1;
    *prop = -1;
    if (name >= 0 && name < n->n_props) {
        if (seen_has(obj, name)) return -1; // duplicate key
        *prop = name;
        vn = n->props[name].node;
    } else if (pats) {
        // Several patterns: the compiler merged them where it could; two
        // different nodes here would need both to hold, which this matcher
        // does not run, so the key is refused (never a false accept).
        for (int j = 0; j < n->n_patterns && j < 64; j++) {
            if (!(pats >> j & 1)) continue;
            if (vn >= 0 && vn != n->pattern_nodes[j]) return -1;
            vn = n->pattern_nodes[j];
        }
    } else {
        vn = n->additional;
    }
    if (vn < 0 || node_at(g, vn)->kind == JS_NEVER) return -1;
    return vn;
}

// The parent p after its child value (or key lexeme, ending in key DFA
// state key_state) completed; NULL when refused. p NULL: the root is done,
// returned as the sentinel `done`.
static const gm_frame done_frame;

static const gm_frame *child_done(const gm_grammar *g, gm_arena *a, const gm_frame *p,
                                  const gm_frame *child) {
    if (!p) return &done_frame;
    gm_frame *f = frame_new(a, p);
    if (!f) return NULL;
    if (p->kind == FR_ARRAY) {
        f->phase = PH_AFTER;
        f->count++;
    } else if (p->phase == PH_KEY) {
        const rx_dfa *d = g->s->dfas[child->dfa];
        int32_t prop;
        int32_t vn = key_value(g, p, d, child->state, &prop);
        if (vn < 0) return NULL;
        f->phase = PH_COLON;
        f->state = vn;
        f->prop = prop;
    } else { // object member value
        f->phase = PH_AFTER;
        f->count++;
        if (p->prop >= 0) {
            size_t w = seen_words(node_at(g, p->node));
            uint64_t *s = gm_arena_alloc(a, w * 8);
            if (!s) return NULL;
            if (p->seen) memcpy(s, p->seen, w * 8);
            else memset(s, 0, w * 8);
            s[p->prop / 64] |= (uint64_t)1 << (p->prop % 64);
            f->seen = s;
        }
        f->prop = -1;
    }
    return f;
}

static void emit(const gm_grammar *g, gm_set *out, const gm_frame *f) {
    if (f) set_add(g, out, f == &done_frame ? NULL : f, 0);
}

// ---- lexemes ----------------------------------------------------------------

// The checks at a lexeme's end (numbers), then the parent takes over.
static const gm_frame *lex_end(const gm_grammar *g, gm_arena *a, const gm_frame *f) {
    const js_node *n = node_at(g, f->node);
    if (!is_key_lex(f) && gm_lex_numeric(n) && !number_ok(n, f->num, f->num_len)) return NULL;
    return child_done(g, a, f->up, f);
}

// A lexeme frame just moved to f->state: a state with no way on ends it now
// (a string's closing quote), else the thread goes on inside it.
static void lex_settle(const gm_grammar *g, gm_arena *a, const gm_frame *f, gm_set *out) {
    if (g->info[f->dfa].has_out[f->state]) {
        set_add(g, out, f, 0);
        return;
    }
    emit(g, out, lex_end(g, a, f));
}

// The code point counter of length-bounded strings: a character starts when
// a byte leaves a character boundary for a non-accepting state; the closing
// quote needs min_len characters. Returns false to refuse the byte.
static bool lex_count(const gm_grammar *g, const gm_frame *f, int32_t to, int32_t *count) {
    const rx_dfa *d = g->s->dfas[f->dfa];
    const js_node *n = node_at(g, f->node);
    bool boundary = (d->char_end && d->char_end[f->state]) || f->state == g->info[f->dfa].quote_state;
    if (!boundary) return true;
    if (d->accept[to]) return *count >= n->min_len;
    if (n->max_len >= 0 && *count >= n->max_len) return false;
    (*count)++;
    return true;
}

static void lex_step(const gm_grammar *g, gm_arena *a, const gm_thread *t, uint8_t b, gm_set *out) {
    const gm_frame *f = t->top;
    const rx_dfa *d = g->s->dfas[f->dfa];
    int32_t to = d->next[(size_t)f->state * d->n_classes + d->cls[b]];
    if (to < 0) {
        if (!d->accept[f->state]) return;
        const gm_frame *p = lex_end(g, a, f);
        if (!p) return;
        gm_thread pt = {p == &done_frame ? NULL : p, 0}; // the root value done: only ws_after blanks follow
        gm_thread_step(g, a, &pt, b, out);
        return;
    }
    if (is_key_lex(f) && g->info[f->dfa].has_out[to] && !gm_key_viable(g, f->up, to)) return;
    int32_t count = f->count;
    if (gm_lex_counted(g, f) && !lex_count(g, f, to, &count)) return;
    gm_frame *nf = frame_new(a, f);
    if (!nf) return;
    nf->state = to;
    nf->count = count;
    if (f->num) {
        if (f->num_len >= GM_NUM_TEXT) return;
        char *s = gm_arena_alloc(a, (size_t)f->num_len + 1);
        if (!s) return;
        memcpy(s, f->num, f->num_len);
        s[f->num_len] = (char)b;
        nf->num = s;
        nf->num_len++;
        if (!num_prefix_ok(node_at(g, f->node), s, nf->num_len)) return;
    }
    lex_settle(g, a, nf, out);
}

static void lex_start(const gm_grammar *g, gm_arena *a, const gm_frame *up, int32_t node,
                      int32_t dfa, uint8_t b, gm_set *out) {
    const rx_dfa *d = g->s->dfas[dfa];
    int32_t to = d->next[d->cls[b]];
    if (to < 0) return;
    bool key = up && up->kind == FR_OBJECT && up->phase == PH_KEY;
    if (key && g->info[dfa].has_out[to] && !gm_key_viable(g, up, to)) return;
    gm_frame *f = frame_new(a, NULL);
    if (!f) return;
    *f = (gm_frame){.up = up, .node = node, .kind = FR_LEX, .depth = up ? up->depth + 1 : 0,
                    .dfa = dfa, .state = to, .prop = -1};
    if (!key && gm_lex_numeric(node_at(g, node))) {
        char *s = gm_arena_alloc(a, 1);
        if (!s) return;
        s[0] = (char)b;
        f->num = s;
        f->num_len = 1;
        if (!num_prefix_ok(node_at(g, node), s, 1)) return;
    }
    lex_settle(g, a, f, out);
}

// ---- values -----------------------------------------------------------------

static void value_start(const gm_grammar *g, gm_arena *a, const gm_frame *up, int32_t node,
                        uint8_t b, gm_set *out, int nest) {
    const js_node *n = node_at(g, node);
    if ((up ? up->depth + 1 : 0) >= GM_MAX_DEPTH || nest > 32) return;
    if (n->kind == JS_ANYOF) {
        for (int32_t i = 0; i < n->n_alts; i++) value_start(g, a, up, n->alts[i], b, out, nest + 1);
    } else if (n->kind == JS_LEXEME) {
        lex_start(g, a, up, node, n->dfa, b, out);
    } else if ((n->kind == JS_OBJECT && b == '{') || (n->kind == JS_ARRAY && b == '[')) {
        gm_frame *f = frame_new(a, NULL);
        if (!f) return;
        *f = (gm_frame){.up = up, .node = node, .kind = n->kind == JS_OBJECT ? FR_OBJECT : FR_ARRAY,
                        .phase = PH_OPEN, .depth = up ? up->depth + 1 : 0, .prop = -1};
        set_add(g, out, f, 0);
    }
}

static void key_start(const gm_grammar *g, gm_arena *a, const gm_frame *obj, gm_set *out) {
    gm_frame *f = frame_new(a, obj);
    if (!f) return;
    f->phase = PH_KEY;
    lex_start(g, a, f, obj->node, node_at(g, obj->node)->key_dfa, '"', out);
}

static void obj_step(const gm_grammar *g, gm_arena *a, const gm_thread *t, uint8_t b, gm_set *out) {
    const gm_frame *f = t->top;
    if (is_ws(b)) {
        ws_step(g, t, out);
        return;
    }
    int ph = f->phase;
    if (b == '"' && ((ph == PH_OPEN && obj_can_add(g, f)) || ph == PH_COMMA)) {
        key_start(g, a, f, out);
    } else if (b == '}' && (ph == PH_OPEN || ph == PH_AFTER) && obj_can_close(g, f)) {
        emit(g, out, child_done(g, a, f->up, f));
    } else if (b == ',' && ph == PH_AFTER && obj_can_add(g, f)) {
        gm_frame *nf = frame_new(a, f);
        if (!nf) return;
        nf->phase = PH_COMMA;
        set_add(g, out, nf, 0);
    } else if (b == ':' && ph == PH_COLON) {
        gm_frame *nf = frame_new(a, f);
        gm_frame *v = frame_new(a, NULL);
        if (!nf || !v) return;
        nf->phase = PH_VALUE;
        *v = (gm_frame){.up = nf, .node = f->state, .kind = FR_VALUE, .depth = f->depth + 1,
                        .prop = -1};
        set_add(g, out, v, 0);
    }
}

static void arr_step(const gm_grammar *g, gm_arena *a, const gm_thread *t, uint8_t b, gm_set *out) {
    const gm_frame *f = t->top;
    const js_node *n = node_at(g, f->node);
    if (is_ws(b)) {
        ws_step(g, t, out);
        return;
    }
    int ph = f->phase;
    if (b == ']' && (ph == PH_OPEN || ph == PH_AFTER) && f->count >= n->min_items) {
        emit(g, out, child_done(g, a, f->up, f));
    } else if (b == ',' && ph == PH_AFTER) {
        if (arr_item(g, n, f->count) < 0) return;
        gm_frame *nf = frame_new(a, f);
        if (!nf) return;
        nf->phase = PH_COMMA;
        set_add(g, out, nf, 0);
    } else if (ph == PH_OPEN || ph == PH_COMMA) {
        int32_t it = arr_item(g, n, f->count);
        if (it < 0) return;
        gm_frame *nf = frame_new(a, f);
        if (!nf) return;
        nf->phase = PH_VALUE;
        value_start(g, a, nf, it, b, out, 0);
    }
}

void gm_thread_step(const gm_grammar *g, gm_arena *a, const gm_thread *t, uint8_t b, gm_set *out) {
    const gm_frame *f = t->top;
    if (!f) { // the root value is done: only blanks may follow, ws_after of them
        if (is_ws(b) && t->ws < g->ws_after) set_add(g, out, NULL, t->ws + 1);
        return;
    }
    switch (f->kind) {
    case FR_VALUE:
        if (is_ws(b)) {
            if (f->up) ws_step(g, t, out);
        } else {
            value_start(g, a, f->up, f->node, b, out, 0);
        }
        break;
    case FR_LEX: lex_step(g, a, t, b, out); break;
    case FR_OBJECT: obj_step(g, a, t, b, out); break;
    case FR_ARRAY: arr_step(g, a, t, b, out); break;
    }
}

void gm_set_step(const gm_grammar *g, gm_arena *a, const gm_set *in, uint8_t b, gm_set *out) {
    out->n = 0;
    for (int i = 0; i < in->n; i++) gm_thread_step(g, a, &in->th[i], b, out);
}

int gm_set_start(const gm_grammar *g, gm_arena *a, gm_set *out) {
    gm_frame *f = frame_new(a, NULL);
    if (!f) return -1;
    *f = (gm_frame){.node = g->s->root, .kind = FR_VALUE, .prop = -1};
    out->n = 0;
    set_add(g, out, f, 0);
    return 0;
}

void gm_thread_end_lexeme(const gm_grammar *g, gm_arena *a, const gm_thread *t, int32_t state,
                          gm_set *out) {
    gm_frame tmp = *t->top;
    tmp.state = state;
    const gm_frame *p = lex_end(g, a, &tmp);
    if (p) set_add(g, out, p == &done_frame ? NULL : p, 0);
}

bool gm_thread_complete(const gm_grammar *g, const gm_thread *t) {
    const gm_frame *f = t->top;
    if (!f) return true;
    if (f->kind != FR_LEX || f->up) return false;
    const rx_dfa *d = g->s->dfas[f->dfa];
    if (!d->accept[f->state]) return false;
    const js_node *n = node_at(g, f->node);
    return !gm_lex_numeric(n) || number_ok(n, f->num, f->num_len);
}

static const gm_frame *frame_copy(const gm_grammar *g, gm_arena *a, const gm_frame *f) {
    if (!f) return NULL;
    const gm_frame *up = frame_copy(g, a, f->up);
    if (f->up && !up) return NULL;
    gm_frame *nf = frame_new(a, f);
    if (!nf) return NULL;
    nf->up = up;
    if (f->num_len) {
        char *s = gm_arena_alloc(a, f->num_len);
        if (!s) return NULL;
        memcpy(s, f->num, f->num_len);
        nf->num = s;
    }
    if (f->seen) {
        size_t w = seen_words(node_at(g, f->node));
        uint64_t *s = gm_arena_alloc(a, w * 8);
        if (!s) return NULL;
        memcpy(s, f->seen, w * 8);
        nf->seen = s;
    }
    return nf;
}

int gm_thread_copy(const gm_grammar *g, gm_arena *a, const gm_thread *t, gm_thread *out) {
    out->ws = t->ws;
    out->top = frame_copy(g, a, t->top);
    return t->top && !out->top ? -1 : 0;
}
