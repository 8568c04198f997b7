// jsonschema: js_compile's dispatch (one schema object normalized step by
// step, see jsonschema_int.h), the node and DFA tables, anyOf / oneOf.
// $ref lives in jsonschema_ref.c; allOf, dependencies, not and the oneOf
// proofs in jsonschema_merge.c; lexemes and enum/const nodes in
// jsonschema_types.c; objects and arrays in jsonschema_object.c; listed
// values checked one by one in jsonschema_value.c.
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonschema_int.h"

// ---- errors, pointers, owned JSON ----------------------------------------

int cx_fail(js_cx *cx, const char *kw, const char *ptr, const char *fmt, ...) {
    char why[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    size_t n = strlen(ptr);
    if (n > 160) // deep pointers keep their tail, where the problem is
        return err_set(cx->err, "%s at ...%s: %s", kw, ptr + n - 160, why);
    return err_set(cx->err, "%s at %s: %s", kw, ptr[0] ? ptr : "/", why);
}

// ptr + "/" + key with JSON pointer escapes (~ -> ~0, / -> ~1), cut at cap.
void cx_ptr_join(char *out, size_t cap, const char *ptr, const char *key) {
    size_t n = (size_t)snprintf(out, cap, "%s/", ptr);
    for (const char *k = key; *k && n + 3 < cap; k++) {
        if (*k == '~' || *k == '/') {
            out[n++] = '~';
            out[n++] = *k == '~' ? '0' : '1';
        } else {
            out[n++] = *k;
        }
    }
    if (n >= cap) n = cap - 1;
    out[n] = 0;
}

cJSON *cx_own(js_cx *cx, cJSON *o) {
    if (!o) return NULL;
    if (cx->n_owned == cx->cap_owned) {
        int32_t cap = cx->cap_owned ? 2 * cx->cap_owned : 16;
        cJSON **p = realloc(cx->owned, (size_t)cap * sizeof *p);
        if (!p) {
            cJSON_Delete(o);
            return NULL;
        }
        cx->owned = p;
        cx->cap_owned = cap;
    }
    cx->owned[cx->n_owned++] = o;
    return o;
}

// Keywords that never constrain a value (validators ignore them), and
// places that only hold subschemas for $ref.
int cx_is_annotation(const char *k) {
    static const char *const ann[] = {
        "title",        "description", "default",          "examples",        "$comment",
        "$schema",      "$id",         "id",               "deprecated",      "readOnly",
        "writeOnly",    "contentMediaType", "contentEncoding", "contentSchema", "$defs",
        "definitions",  "$anchor",     "$vocabulary",      "$dynamicAnchor",  "$recursiveAnchor",
        "example",      "nullable",    "discriminator",    "xml",             "externalDocs",
    };
    for (size_t i = 0; i < sizeof ann / sizeof *ann; i++)
        if (!strcmp(k, ann[i])) return 1;
    return 0;
}

// ---- nodes ----------------------------------------------------------------

int32_t cx_new_node(js_cx *cx, js_kind kind) {
    js_schema *s = cx->s;
    if (s->n_nodes >= JS_MAX_NODES) {
        err_set(cx->err, "schema: too many nodes (more than %d)", JS_MAX_NODES);
        return -1;
    }
    if (s->n_nodes == cx->cap_nodes) {
        int32_t cap = cx->cap_nodes ? 2 * cx->cap_nodes : 64;
        js_node *n = realloc(s->nodes, (size_t)cap * sizeof *n);
        uint8_t *sh = n ? realloc(cx->shared, (size_t)cap) : NULL;
        if (n) s->nodes = n;
        if (!n || !sh) {
            err_set(cx->err, "schema: out of memory for %d nodes", cap);
            return -1;
        }
        cx->shared = sh;
        cx->cap_nodes = cap;
    }
    int32_t i = s->n_nodes++;
    js_node *n = &s->nodes[i];
    memset(n, 0, sizeof *n);
    n->kind = kind;
    n->dfa = n->key_dfa = -1;
    n->max_len = n->max_props = n->max_items = -1;
    n->additional = n->items = -1;
    cx->shared[i] = 0;
    return i;
}

int32_t cx_never(js_cx *cx) {
    return cx_new_node(cx, JS_NEVER);
}

// An ANYOF over alts[0..n) (copied); the one alt itself when n is 1, never
// when 0.
int32_t cx_anyof_node(js_cx *cx, const int32_t *alts, int32_t n) {
    if (n == 0) return cx_never(cx);
    if (n == 1) return alts[0];
    int32_t i = cx_new_node(cx, JS_ANYOF);
    if (i < 0) return -1;
    int32_t *a = malloc((size_t)n * sizeof *a);
    if (!a) return err_set(cx->err, "schema: out of memory"), -1;
    memcpy(a, alts, (size_t)n * sizeof *a);
    cx->s->nodes[i].alts = a;
    cx->s->nodes[i].n_alts = n;
    return i;
}

// ---- DFAs, deduplicated by source and flags ---------------------------------

static int32_t dfa_find(js_cx *cx, const char *key) {
    for (int32_t i = 0; i < cx->s->n_dfas; i++)
        if (!strcmp(cx->dfa_src[i], key)) return i;
    return -1;
}

int32_t cx_dfa_add(js_cx *cx, rx_dfa *d, char *key) {
    js_schema *s = cx->s;
    if (s->n_dfas == cx->cap_dfas) {
        int32_t cap = cx->cap_dfas ? 2 * cx->cap_dfas : 16;
        rx_dfa **p = realloc(s->dfas, (size_t)cap * sizeof *p);
        char **k = p ? realloc(cx->dfa_src, (size_t)cap * sizeof *k) : NULL;
        if (p) s->dfas = p;
        if (!p || !k) {
            rx_free(d);
            free(key);
            return err_set(cx->err, "schema: out of memory for DFAs"), -1;
        }
        cx->dfa_src = k;
        cx->cap_dfas = cap;
    }
    s->dfas[s->n_dfas] = d;
    cx->dfa_src[s->n_dfas] = key;
    return s->n_dfas++;
}

static int is_empty_error(const err_t *e) {
    return strstr(e->msg, "matches no") || strstr(e->msg, "empty");
}

// The DFA for src under flags; -1 with "KW at PTR: regex error", or -2
// when the language is empty (the caller's branch accepts nothing).
int32_t cx_dfa(js_cx *cx, const char *src, unsigned flags, const char *kw, const char *ptr) {
    size_t n = strlen(src);
    char *key = malloc(n + 16);
    if (!key) return err_set(cx->err, "schema: out of memory"), -1;
    snprintf(key, n + 16, "%u:%s", flags, src);
    int32_t i = dfa_find(cx, key);
    if (i >= 0) {
        free(key);
        return i;
    }
    err_t e = {{0}};
    rx_dfa *d = rx_compile(src, n, flags, &e);
    if (!d) {
        free(key);
        if (is_empty_error(&e)) return -2;
        return cx_fail(cx, kw, ptr, "%s", e.msg), -1;
    }
    return cx_dfa_add(cx, d, key);
}

// The intersection of DFAs a and b, deduplicated: -2 empty, -3 refused by
// rx_intersect (its reason in *e), -1 out of memory.
static int32_t dfa_and(js_cx *cx, int32_t a, int32_t b, err_t *e) {
    if (a == b) return a;
    char key[48];
    snprintf(key, sizeof key, "&%d,%d", a < b ? a : b, a < b ? b : a);
    int32_t i = dfa_find(cx, key);
    if (i >= 0) return i;
    rx_dfa *d = rx_intersect(cx->s->dfas[a], cx->s->dfas[b], e);
    if (!d) return is_empty_error(e) ? -2 : -3;
    char *k = strdup(key);
    if (!k) return rx_free(d), err_set(cx->err, "schema: out of memory"), -1;
    return cx_dfa_add(cx, d, k);
}

// The intersection of DFAs a and b (-2: empty).
int32_t cx_dfa_and(js_cx *cx, int32_t a, int32_t b, const char *kw, const char *ptr) {
    err_t e = {{0}};
    int32_t r = dfa_and(cx, a, b, &e);
    return r == -3 ? cx_fail(cx, kw, ptr, "%s", e.msg), -1 : r;
}

int32_t cx_dfa_and_try(js_cx *cx, int32_t a, int32_t b) {
    err_t e = {{0}};
    int32_t r = dfa_and(cx, a, b, &e);
    if (r == -3 && strstr(e.msg, "out of memory")) return err_set(cx->err, "%s", e.msg);
    return r;
}

// ---- the "any value" node ---------------------------------------------------

#define RX_NUMBER "-?(0|[1-9][0-9]*)(\\.[0-9]+)?([eE][+-]?[0-9]+)?"
#define RX_INTEGER "-?(0|[1-9][0-9]*)"

int32_t cx_lexeme(js_cx *cx, js_lex lex, const char *src, unsigned flags, const char *ptr) {
    int32_t d = cx_dfa(cx, src, flags, "type", ptr);
    if (d == -2) return cx_never(cx);
    if (d < 0) return -1;
    int32_t i = cx_new_node(cx, JS_LEXEME);
    if (i < 0) return -1;
    cx->s->nodes[i].lex = lex;
    cx->s->nodes[i].dfa = d;
    return i;
}

int32_t cx_any_keys(js_cx *cx) {
    int32_t i = dfa_find(cx, "keys:any");
    if (i >= 0) return i;
    err_t e = {{0}};
    rx_dfa *kd = rx_keys(NULL, 0, NULL, 0, 1, &e);
    if (!kd) return err_set(cx->err, "schema: any-key DFA: %s", e.msg), -1;
    char *k = strdup("keys:any");
    if (!k) return rx_free(kd), err_set(cx->err, "schema: out of memory"), -1;
    return cx_dfa_add(cx, kd, k);
}

// Any JSON value: null, booleans, numbers, strings, and objects and arrays
// whose members are any value (a cycle through this node).
int32_t cx_any(js_cx *cx) {
    if (cx->any_node >= 0) return cx->any_node;
    int32_t any = cx_new_node(cx, JS_ANYOF);
    if (any < 0) return -1;
    cx->shared[any] = 1;
    cx->any_node = any;
    int32_t alts[5];
    if ((alts[0] = cx_lexeme(cx, JS_LEX_LITERAL, "true|false|null", RX_BYTES, "")) < 0) return -1;
    if ((alts[1] = cx_lexeme(cx, JS_LEX_NUMBER, RX_NUMBER, RX_BYTES, "")) < 0) return -1;
    if ((alts[2] = cx_lexeme(cx, JS_LEX_STRING, "[\\s\\S]*", RX_JSON_STRING, "")) < 0) return -1;
    if ((alts[3] = cx_new_node(cx, JS_OBJECT)) < 0) return -1;
    if ((alts[4] = cx_new_node(cx, JS_ARRAY)) < 0) return -1;
    int32_t kdi = cx_any_keys(cx);
    if (kdi < 0) return -1;
    js_node *n = cx->s->nodes;
    n[alts[3]].key_dfa = kdi;
    n[alts[3]].additional = any;
    n[alts[4]].items = any;
    int32_t *a = malloc(sizeof alts);
    if (!a) return err_set(cx->err, "schema: out of memory"), -1;
    memcpy(a, alts, sizeof alts);
    n[any].alts = a;
    n[any].n_alts = 5;
    return any;
}

// ---- types ------------------------------------------------------------------

static unsigned type_bit(const char *t) {
    static const struct {
        const char *name;
        unsigned bit;
    } tab[] = {{"null", JT_NULL},     {"boolean", JT_BOOL}, {"integer", JT_INT}, {"number", JT_NUM | JT_INT},
               {"string", JT_STR},    {"object", JT_OBJ},   {"array", JT_ARR}};
    for (size_t i = 0; i < sizeof tab / sizeof *tab; i++)
        if (!strcmp(t, tab[i].name)) return tab[i].bit;
    return 0;
}

// The type bits "type" allows (JT_ALL when absent); -1 for a bad value.
// JT_NUM always comes with JT_INT (number includes integer).
int cx_types_of(const cJSON *s, unsigned *types) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(s, "type");
    *types = JT_ALL;
    if (!t) return 0;
    if (cJSON_IsString(t)) {
        *types = type_bit(t->valuestring);
        return *types ? 0 : -1;
    }
    if (!cJSON_IsArray(t)) return -1;
    *types = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, t) {
        unsigned b = cJSON_IsString(e) ? type_bit(e->valuestring) : 0;
        if (!b) return -1;
        *types |= b;
    }
    return 0;
}

// ---- dispatch -----------------------------------------------------------------

static int32_t cx_alternatives(js_cx *cx, const cJSON *s, const char *key, const char *ptr);

// A copy of s (members borrowed) without member `drop`, owned by cx.
cJSON *cx_without(js_cx *cx, const cJSON *s, const char *drop) {
    cJSON *o = cx_own(cx, cJSON_CreateObject());
    if (!o) return err_set(cx->err, "schema: out of memory"), NULL;
    const cJSON *m;
    cJSON_ArrayForEach(m, s) {
        if (drop && !strcmp(m->string, drop)) continue;
        if (!cJSON_AddItemReferenceToObject(o, m->string, cx_mut(m)))
            return err_set(cx->err, "schema: out of memory"), NULL;
    }
    return o;
}

// 1 if s has a member other than annotations and the ones in skip[].
int cx_has_other(const cJSON *s, const char *const *skip, int n_skip) {
    if (!cJSON_IsObject(s)) return 1; // not a schema object: the caller's checks refuse it
    const cJSON *m;
    cJSON_ArrayForEach(m, s) {
        int skipped = cx_is_annotation(m->string);
        for (int i = 0; i < n_skip && !skipped; i++) skipped = !strcmp(m->string, skip[i]);
        if (!skipped) return 1;
    }
    return 0;
}

static int32_t schema_body(js_cx *cx, const cJSON *s, const char *ptr) {
    if (cJSON_IsBool(s)) return cJSON_IsTrue(s) ? cx_any(cx) : cx_never(cx);
    if (!cJSON_IsObject(s)) return cx_fail(cx, "schema", ptr, "expected an object or a boolean"), -1;
    static const char *const skip[] = {"$ref"};
    const cJSON *ref = cJSON_GetObjectItemCaseSensitive(s, "$ref");
    if (ref && (cx->draft <= JS_DRAFT7 || !cx_has_other(s, skip, 1))) return cx_ref(cx, s, ptr);
    int32_t lits = cx_listed_values(cx, s, ptr); // enum / const: each value checked
    if (lits != -2) return lits;
    if (ref) {
        const cJSON *d = cx_deref(cx, s, ptr);
        return d ? cx_schema(cx, d, ptr) : -1;
    }
    if (cJSON_GetObjectItemCaseSensitive(s, "dependencies") || cJSON_GetObjectItemCaseSensitive(s, "dependentRequired") ||
        cJSON_GetObjectItemCaseSensitive(s, "dependentSchemas")) {
        const cJSON *d = cx_dependencies(cx, s, ptr);
        return d ? cx_schema(cx, d, ptr) : -1;
    }
    if (cJSON_GetObjectItemCaseSensitive(s, "allOf")) {
        const cJSON *d = cx_deref(cx, s, ptr); // merges allOf too
        return d ? cx_schema(cx, d, ptr) : -1;
    }
    if (cJSON_GetObjectItemCaseSensitive(s, "anyOf")) return cx_alternatives(cx, s, "anyOf", ptr);
    if (cJSON_GetObjectItemCaseSensitive(s, "oneOf")) return cx_alternatives(cx, s, "oneOf", ptr);
    if (cJSON_GetObjectItemCaseSensitive(s, "not") || cJSON_GetObjectItemCaseSensitive(s, "\x01nots"))
        return cx_not(cx, s, ptr);
    return cx_typed(cx, s, ptr);
}

// The node for schema s found at ptr (a JSON pointer into the document, or
// the place a merged schema came from).
int32_t cx_schema(js_cx *cx, const cJSON *s, const char *ptr) {
    if (++cx->depth > JS_MAX_DEPTH) {
        cx->depth--;
        return cx_fail(cx, "schema", ptr, "nested deeper than %d levels", JS_MAX_DEPTH), -1;
    }
    int32_t done = cJSON_IsObject(s) && s != cx->fresh ? cx_memo_get(cx, s) : -1;
    cx->fresh = NULL;
    if (done >= 0) {
        cx->depth--;
        return done;
    }
    const cJSON *root = cx->cur_root;
    const char *base = cx->cur_base;
    cx_enter_resource(cx, s);
    int32_t r = schema_body(cx, s, ptr);
    cx->cur_root = root;
    cx->cur_base = base;
    cx->depth--;
    return r;
}

// anyOf / oneOf: the rest of the schema merged into each alternative, an
// ANYOF of those. oneOf only when every two alternatives are proven
// disjoint (then exactly one matches whenever any does).
static int32_t cx_alternatives(js_cx *cx, const cJSON *s, const char *key, const char *ptr) {
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(s, key);
    char p[1024];
    cx_ptr_join(p, sizeof p, ptr, key);
    int n = cJSON_GetArraySize(arr);
    if (!cJSON_IsArray(arr) || n == 0) return cx_fail(cx, key, ptr, "expected a non-empty array"), -1;
    if (n > 256) return cx_fail(cx, key, ptr, "more than 256 alternatives"), -1;
    const cJSON *rest = cx_without(cx, s, key);
    if (!rest) return -1;
    int has_rest = cx_has_other(rest, NULL, 0);
    const cJSON **alt = malloc(2 * (size_t)n * sizeof *alt), **plain = alt ? alt + n : NULL;
    int32_t *nodes = malloc((size_t)n * sizeof *nodes);
    int32_t r = -1;
    if (!alt || !nodes) {
        err_set(cx->err, "schema: out of memory");
        goto done;
    }
    int i = 0;
    const cJSON *a;
    cJSON_ArrayForEach(a, arr) {
        char ap[1100];
        snprintf(ap, sizeof ap, "%s/%d", p, i);
        plain[i] = alt[i] = cx_deref(cx, a, ap);
        if (alt[i] && has_rest) alt[i] = cx_merge(cx, rest, alt[i], ap);
        if (!alt[i]) goto done;
        i++;
    }
    if (!strcmp(key, "oneOf")) {
        int x = 0, y = 0, e = cx_make_exclusive(cx, alt, n, ptr, &x, &y);
        if (e < 0) goto done;
        if (e == 0) {
            cx_fail(cx, "oneOf", ptr, "alternatives %d and %d may overlap", x, y);
            goto done;
        }
    }
    for (i = 0; i < n; i++) {
        char ap[1100];
        snprintf(ap, sizeof ap, "%s/%d", p, i);
        // An alternative left as it was compiles from the document, so its
        // refs keep their memo.
        const cJSON *one = alt[i] == plain[i] ? cJSON_GetArrayItem(arr, i) : alt[i];
        if ((nodes[i] = cx_schema(cx, one, ap)) < 0) goto done;
    }
    r = cx_anyof_node(cx, nodes, n);
done:
    free(alt);
    free(nodes);
    return r;
}

// ---- js_compile -----------------------------------------------------------------

static void cx_free(js_cx *cx) {
    for (int32_t i = 0; i < cx->n_owned; i++) cJSON_Delete(cx->owned[i]);
    free(cx->owned);
    if (cx->s)
        for (int32_t i = 0; i < cx->s->n_dfas; i++) free(cx->dfa_src[i]);
    free(cx->dfa_src);
    free(cx->shared);
    cx_memo_free(cx);
}

js_schema *js_compile(const cJSON *schema, err_t *err) {
    js_cx cx;
    memset(&cx, 0, sizeof cx);
    cx.err = err;
    cx.doc = schema;
    cx.any_node = -1;
    cx.cur_root = schema;
    cx.cur_base = "";
    cx.s = calloc(1, sizeof *cx.s);
    if (!cx.s) {
        err_set(err, "schema: out of memory");
        return NULL;
    }
    cx.draft = cx_draft_of(schema);
    int32_t root = -1;
    if (cx_index_ids(&cx) == 0) root = cx_ref_target(&cx, schema, "");
    js_schema *s = cx.s;
    s->root = root;
    if (root < 0) {
        cx_free(&cx);
        js_free(s);
        return NULL;
    }
    cx_free(&cx);
    return s;
}

void js_free(js_schema *s) {
    if (!s) return;
    for (int32_t i = 0; i < s->n_nodes; i++) {
        js_node *n = &s->nodes[i];
        free(n->alts);
        free(n->num_enum);
        for (int32_t j = 0; j < n->n_props; j++) free(n->props[j].name);
        free(n->props);
        free(n->pattern_nodes);
        free(n->prefix);
    }
    free(s->nodes);
    for (int32_t i = 0; i < s->n_dfas; i++) rx_free(s->dfas[i]);
    free(s->dfas);
    free(s);
}
