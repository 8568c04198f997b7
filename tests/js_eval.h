// js_eval: a slow reference reader of a compiled js_schema, for tests: does
// the node graph accept this JSON text? It walks the text value by value
// (no tokens, no masks), so it checks the compiler's graph apart from the
// grammar engine. Values are delimited by JSON syntax, then checked against
// the node; ANYOF tries each alternative on the same span.
#ifndef TESSERA_JS_EVAL_H
#define TESSERA_JS_EVAL_H

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "jsonschema.h"

typedef struct js_ev {
    const js_schema *s;
    const char *t;
    size_t n;
    int depth;
} js_ev;

static size_t js_ev_ws(const js_ev *e, size_t i) {
    while (i < e->n && (e->t[i] == ' ' || e->t[i] == '\t' || e->t[i] == '\n' || e->t[i] == '\r')) i++;
    return i;
}

// End of the JSON value starting at i (no whitespace before it), or 0.
static size_t js_ev_skip(const js_ev *e, size_t i) {
    if (i >= e->n) return 0;
    char c = e->t[i];
    if (c == '"') {
        for (i++; i < e->n; i++) {
            if (e->t[i] == '\\') i++;
            else if (e->t[i] == '"') return i + 1;
        }
        return 0;
    }
    if (c == '{' || c == '[') {
        char close = c == '{' ? '}' : ']';
        i = js_ev_ws(e, i + 1);
        if (i < e->n && e->t[i] == close) return i + 1;
        for (;;) {
            if (c == '{') {
                size_t k = js_ev_skip(e, i);
                if (!k || e->t[i] != '"') return 0;
                i = js_ev_ws(e, k);
                if (i >= e->n || e->t[i] != ':') return 0;
                i = js_ev_ws(e, i + 1);
            }
            size_t v = js_ev_skip(e, i);
            if (!v) return 0;
            i = js_ev_ws(e, v);
            if (i < e->n && e->t[i] == ',') {
                i = js_ev_ws(e, i + 1);
                continue;
            }
            return i < e->n && e->t[i] == close ? i + 1 : 0;
        }
    }
    size_t j = i;
    while (j < e->n && strchr("+-.0123456789eEtruefalsn", e->t[j])) j++;
    return j > i ? j : 0;
}

static int js_ev_dfa(const rx_dfa *d, const char *s, size_t n, int32_t *state) {
    int32_t st = 0;
    for (size_t i = 0; i < n && st >= 0; i++) st = d->next[st * d->n_classes + d->cls[(uint8_t)s[i]]];
    if (state) *state = st;
    return st >= 0 && d->accept[st];
}

// Code points in the JSON string text s[0..n) (quotes included).
static int64_t js_ev_strlen(const char *s, size_t n) {
    int64_t c = 0;
    for (size_t i = 1; i + 1 < n; i++) {
        unsigned char b = (unsigned char)s[i];
        if (b == '\\') {
            if (s[i + 1] == 'u') {
                unsigned v = (unsigned)strtoul((char[]){s[i + 2], s[i + 3], s[i + 4], s[i + 5], 0}, NULL, 16);
                i += 5;
                if (v >= 0xD800 && v < 0xDC00) i += 6; // a pair is one code point
            } else {
                i++;
            }
            c++;
        } else {
            c += (b & 0xC0) != 0x80;
        }
    }
    return c;
}

static int js_ev_node(js_ev *e, int32_t id, size_t a, size_t b);

static int js_ev_number(const js_node *n, const char *s, size_t len) {
    char buf[128];
    if (len >= sizeof buf) return 0;
    memcpy(buf, s, len);
    buf[len] = 0;
    double x = strtod(buf, NULL);
    if (n->has_min && (x < n->minimum || (n->excl_min && x == n->minimum))) return 0;
    if (n->has_max && (x > n->maximum || (n->excl_max && x == n->maximum))) return 0;
    if (n->multiple_of > 0) {
        double q = x / n->multiple_of;
        if (fabs(q - nearbyint(q)) > 1e-9) return 0;
    }
    if (n->num_enum) {
        int hit = 0;
        for (int32_t i = 0; i < n->n_num_enum; i++) hit |= n->num_enum[i] == x;
        if (!hit) return 0;
    }
    return 1;
}

static int js_ev_object(js_ev *e, const js_node *n, size_t i, size_t end) {
    if (e->t[i] != '{') return 0;
    const rx_dfa *kd = e->s->dfas[n->key_dfa];
    uint8_t seen[4096] = {0};
    int64_t count = 0;
    i = js_ev_ws(e, i + 1);
    while (i < end && e->t[i] != '}') {
        size_t k = js_ev_skip(e, i);
        int32_t st;
        if (!js_ev_dfa(kd, e->t + i, k - i, &st)) return 0;
        size_t v = js_ev_ws(e, js_ev_ws(e, k) + 1);
        size_t ve = js_ev_skip(e, v);
        int32_t name = kd->key_name ? kd->key_name[st] : -1;
        uint64_t pats = kd->key_pats ? kd->key_pats[st] : 0;
        if (name >= 0) {
            if (name < 4096 && seen[name]++) return 0;
            if (!js_ev_node(e, n->props[name].node, v, ve)) return 0;
        } else if (pats) {
            for (int j = 0; j < n->n_patterns; j++)
                if ((pats >> j & 1) && !js_ev_node(e, n->pattern_nodes[j], v, ve)) return 0;
        } else if (n->additional < 0 || !js_ev_node(e, n->additional, v, ve)) {
            return 0;
        }
        count++;
        i = js_ev_ws(e, ve);
        if (e->t[i] == ',') i = js_ev_ws(e, i + 1);
    }
    for (int32_t p = 0; p < n->n_props; p++)
        if (n->props[p].required && !(p < 4096 && seen[p])) return 0;
    return count >= n->min_props && (n->max_props < 0 || count <= n->max_props);
}

static int js_ev_array(js_ev *e, const js_node *n, size_t i, size_t end) {
    if (e->t[i] != '[') return 0;
    int64_t count = 0;
    i = js_ev_ws(e, i + 1);
    while (i < end && e->t[i] != ']') {
        size_t ve = js_ev_skip(e, i);
        int32_t node = count < n->n_prefix ? n->prefix[count] : n->items;
        if (node < 0 || !js_ev_node(e, node, i, ve)) return 0;
        count++;
        i = js_ev_ws(e, ve);
        if (e->t[i] == ',') i = js_ev_ws(e, i + 1);
    }
    return count >= n->min_items && (n->max_items < 0 || count <= n->max_items);
}

static int js_ev_node(js_ev *e, int32_t id, size_t a, size_t b) {
    if (++e->depth > 2000) return 0;
    const js_node *n = &e->s->nodes[id];
    int ok = 0;
    switch (n->kind) {
    case JS_NEVER: break;
    case JS_ANYOF:
        for (int32_t i = 0; i < n->n_alts && !ok; i++) ok = js_ev_node(e, n->alts[i], a, b);
        break;
    case JS_LEXEME:
        ok = js_ev_dfa(e->s->dfas[n->dfa], e->t + a, b - a, NULL);
        if (ok && n->lex == JS_LEX_STRING) {
            int64_t c = js_ev_strlen(e->t + a, b - a);
            ok = c >= n->min_len && (n->max_len < 0 || c <= n->max_len);
        }
        if (ok && n->lex == JS_LEX_NUMBER) ok = js_ev_number(n, e->t + a, b - a);
        break;
    case JS_OBJECT: ok = js_ev_object(e, n, a, b); break;
    case JS_ARRAY: ok = js_ev_array(e, n, a, b); break;
    }
    e->depth--;
    return ok;
}

// 1 if schema s accepts the JSON text t[0..n) (whitespace around allowed).
static inline int js_eval(const js_schema *s, const char *t, size_t n) {
    js_ev e = {s, t, n, 0};
    size_t a = js_ev_ws(&e, 0), b = js_ev_skip(&e, a);
    if (!b || js_ev_ws(&e, b) != n) return 0;
    return js_ev_node(&e, s->root, a, b);
}

#endif
