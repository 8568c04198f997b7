// jsonschema_object: object and array nodes. An object's keys are one DFA
// (rx_keys) over its property names (required names not in properties
// included, so they may appear), its patternProperties and, unless
// additionalProperties is false, any other key. Arrays: a prefix of
// per-position nodes, then one node for the rest.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonschema_int.h"

typedef struct obj_build {
    const cJSON *props, *pats, *req;
    int32_t addl; // node, or -1: no other key
    int np;
    const char *pat_src[64];
    const cJSON *pat_schema[64];
    int32_t pat_dfa[64]; // key DFAs (RX_JSON_STRING | RX_SEARCH)
    const char **names;
    js_prop *out;
    int n;
    // propertyNames as a list of names (pn_list) or one pattern (pn_pat,
    // its DFA pn_dfa); both NULL / -1 when it says nothing.
    const cJSON *pn_list;
    const char *pn_pat;
    int32_t pn_dfa;
} obj_build;

static int32_t sub_schema(js_cx *cx, const cJSON *s, const char *ptr, const char *kw, const char *key) {
    char p[1024], q[1024];
    cx_ptr_join(q, sizeof q, ptr, kw);
    if (key) cx_ptr_join(p, sizeof p, q, key);
    return cx_schema(cx, s, key ? p : q);
}

// The patterns, their key DFAs, and the proof that no key matches two of
// them with different schemas (the engine takes one pattern node per key).
static int collect_patterns(js_cx *cx, obj_build *b, const char *ptr) {
    const cJSON *m;
    cJSON_ArrayForEach(m, b->pats) {
        if (b->np == 64) return cx_fail(cx, "patternProperties", ptr, "more than 64 patterns");
        int32_t d = cx_dfa(cx, m->string, RX_JSON_STRING | RX_SEARCH, "patternProperties", ptr);
        if (d == -2) continue; // matches no key
        if (d < 0) return -1;
        b->pat_src[b->np] = m->string;
        b->pat_schema[b->np] = m;
        b->pat_dfa[b->np++] = d;
    }
    for (int i = 0; i < b->np; i++)
        for (int j = i + 1; j < b->np; j++) {
            if (cJSON_Compare(b->pat_schema[i], b->pat_schema[j], 1)) continue;
            int32_t d = cx_dfa_and(cx, b->pat_dfa[i], b->pat_dfa[j], "patternProperties", ptr);
            if (d == -1) return -1;
            if (d >= 0)
                return cx_fail(cx, "patternProperties", ptr, "patterns '%s' and '%s' may match one key", b->pat_src[i],
                               b->pat_src[j]);
        }
    return 0;
}

static int is_required(const cJSON *req, const char *name) {
    const cJSON *r;
    cJSON_ArrayForEach(r, req) if (cJSON_IsString(r) && !strcmp(r->valuestring, name)) return 1;
    return 0;
}

// The node for the value of key `name`: its property schema merged with
// every pattern it matches; else additionalProperties. -2: the key is not
// allowed.
static int32_t name_node(js_cx *cx, obj_build *b, const char *name, const char *ptr) {
    const cJSON *sch = cJSON_GetObjectItemCaseSensitive(b->props, name);
    char p[1024], q[1024];
    cx_ptr_join(q, sizeof q, ptr, "properties");
    cx_ptr_join(p, sizeof p, q, name);
    char *text;
    if (cx_json_string_text(name, &text)) return err_set(cx->err, "schema: out of memory"), -1;
    for (int j = 0; j < b->np; j++) {
        if (!rx_match(cx->s->dfas[b->pat_dfa[j]], text, strlen(text))) continue;
        const cJSON *ps = b->pat_schema[j];
        sch = sch ? cx_merge(cx, sch, ps, p) : ps;
        if (!sch) return free(text), -1;
    }
    free(text);
    if (sch) return cx_schema(cx, sch, p);
    return b->addl >= 0 ? b->addl : -2;
}

// Whether propertyNames lets key `name` appear.
static int name_allowed(const js_cx *cx, const obj_build *b, const char *name) {
    if (b->pn_list) {
        const cJSON *v;
        cJSON_ArrayForEach(v, b->pn_list) if (cJSON_IsString(v) && !strcmp(v->valuestring, name)) return 1;
        return 0;
    }
    if (!b->pn_pat) return 1;
    char *text;
    if (cx_json_string_text(name, &text)) return 0;
    int ok = rx_match(cx->s->dfas[b->pn_dfa], text, strlen(text));
    free(text);
    return ok;
}

static void add_name(obj_build *b, const char *name) {
    for (int i = 0; i < b->n; i++)
        if (!strcmp(b->names[i], name)) return;
    b->names[b->n++] = name;
}

// props[] for every property name, then every required name not among
// them (and, when propertyNames lists the names, those), less the names
// propertyNames forbids. -2: a required key can never appear (the object
// is impossible).
static int collect_names(js_cx *cx, obj_build *b, const char *ptr) {
    int cap = cJSON_GetArraySize(b->props) + cJSON_GetArraySize(b->req) + cJSON_GetArraySize(b->pn_list) + 1;
    b->names = calloc((size_t)cap, sizeof *b->names);
    b->out = calloc((size_t)cap, sizeof *b->out);
    if (!b->names || !b->out) return err_set(cx->err, "schema: out of memory");
    const cJSON *m;
    cJSON_ArrayForEach(m, b->props) {
        for (int k = 0; k < b->n; k++)
            if (!strcmp(b->names[k], m->string)) return cx_fail(cx, "properties", ptr, "duplicate name '%s'", m->string);
        add_name(b, m->string);
    }
    cJSON_ArrayForEach(m, b->req) {
        if (!cJSON_IsString(m)) return cx_fail(cx, "required", ptr, "expected strings");
        add_name(b, m->valuestring);
    }
    cJSON_ArrayForEach(m, b->pn_list) if (cJSON_IsString(m)) add_name(b, m->valuestring);
    int k = 0;
    for (int i = 0; i < b->n; i++) {
        const char *name = b->names[i];
        int req = is_required(b->req, name);
        if (!name_allowed(cx, b, name)) {
            if (req) return -2;
            continue;
        }
        int32_t node = name_node(cx, b, name, ptr);
        if (node == -2 && req) return -2;
        if (node == -2 && !cJSON_GetObjectItemCaseSensitive(b->props, name)) continue; // listed, but no schema takes it
        if (node == -2) node = cx_never(cx); // a property false: the key may not appear
        if (node < 0) return -1;
        b->names[k] = name;
        b->out[k].required = req;
        b->out[k].node = node;
        if (!(b->out[k++].name = strdup(name))) return b->n = k, err_set(cx->err, "schema: out of memory");
    }
    b->n = k;
    return 0;
}

// "K<any>" + names + patterns: the dedupe key of a key DFA.
static char *keys_key(const obj_build *b, int any) {
    size_t n = 8;
    for (int i = 0; i < b->n; i++) n += strlen(b->names[i]) + 1;
    for (int i = 0; i < b->np; i++) n += strlen(b->pat_src[i]) + 1;
    char *k = malloc(n), *p = k;
    if (!k) return NULL;
    p += sprintf(p, "K%d\x1f", any);
    for (int i = 0; i < b->n; i++) p += sprintf(p, "%s\x1f", b->names[i]);
    *p++ = '\x1e';
    for (int i = 0; i < b->np; i++) p += sprintf(p, "%s\x1f", b->pat_src[i]);
    *p = 0;
    return k;
}

static int32_t key_dfa(js_cx *cx, const obj_build *b, const char *ptr) {
    int any = b->addl >= 0 && !b->pn_list && !b->pn_pat;
    if (!any && !b->n && !b->np) return cx_any_keys(cx); // the caller sets max_props 0
    char *key = keys_key(b, any);
    if (!key) return err_set(cx->err, "schema: out of memory"), -1;
    for (int32_t i = 0; i < cx->s->n_dfas; i++)
        if (!strcmp(cx->dfa_src[i], key)) return free(key), i;
    err_t e = {{0}};
    rx_dfa *d = rx_keys(b->names, b->n, b->pat_src, b->np, any, &e);
    if (!d) return free(key), cx_fail(cx, "properties", ptr, "%s", e.msg), -1;
    return cx_dfa_add(cx, d, key);
}

// propertyNames: true / a string type (nothing said), false (no keys), a
// list of names (enum / const), or one pattern (then no patternProperties
// beside it). Anything else is refused.
static int property_names(js_cx *cx, const cJSON *s, const char *ptr, obj_build *b, int64_t *max_props) {
    const cJSON *pn = cJSON_GetObjectItemCaseSensitive(s, "propertyNames");
    b->pn_dfa = -1;
    if (!pn || cJSON_IsTrue(pn) || cx->draft < JS_DRAFT6) return 0;
    if (cJSON_IsFalse(pn)) {
        *max_props = 0;
        return 0;
    }
    char p[1024];
    cx_ptr_join(p, sizeof p, ptr, "propertyNames");
    if (!(pn = cx_deref(cx, pn, p))) return -1;
    static const char *const skip[] = {"type", "pattern", "enum", "const"};
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(pn, "type");
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(pn, "pattern");
    const cJSON *en = cJSON_GetObjectItemCaseSensitive(pn, "enum"), *co = cJSON_GetObjectItemCaseSensitive(pn, "const");
    if (!cJSON_IsObject(pn) || cx_has_other(pn, skip, 4) || (t && !(cJSON_IsString(t) && !strcmp(t->valuestring, "string"))))
        return cx_fail(cx, "propertyNames", ptr, "not supported (constrains every key)");
    if (co || cJSON_IsArray(en)) {
        if (pat || (co && en)) return cx_fail(cx, "propertyNames", ptr, "not supported (a list and more)");
        cJSON *list = co ? cx_own(cx, cJSON_CreateArray()) : NULL;
        if (co && (!list || !cJSON_AddItemReferenceToArray(list, cx_mut(co)))) return err_set(cx->err, "schema: out of memory");
        b->pn_list = co ? list : en;
        return 0;
    }
    if (!cJSON_IsString(pat)) return 0;
    if (b->pats && b->pats->child) return cx_fail(cx, "propertyNames", ptr, "a pattern beside patternProperties is not supported");
    int32_t d = cx_dfa(cx, pat->valuestring, RX_JSON_STRING | RX_SEARCH, "propertyNames", p);
    if (d == -2) *max_props = 0; // no key matches
    else if (d < 0) return -1;
    else b->pn_pat = pat->valuestring, b->pn_dfa = d;
    return 0;
}

int32_t cx_object(js_cx *cx, const cJSON *s, const char *ptr) {
    obj_build b;
    memset(&b, 0, sizeof b);
    b.props = cJSON_GetObjectItemCaseSensitive(s, "properties");
    b.pats = cJSON_GetObjectItemCaseSensitive(s, "patternProperties");
    b.req = cJSON_GetObjectItemCaseSensitive(s, "required");
    if (b.props && !cJSON_IsObject(b.props)) return cx_fail(cx, "properties", ptr, "expected an object"), -1;
    if (b.pats && !cJSON_IsObject(b.pats)) return cx_fail(cx, "patternProperties", ptr, "expected an object"), -1;
    int64_t lo = 0, hi = -1;
    if (cx_count(cx, s, "minProperties", ptr, &lo) < 0 || cx_count(cx, s, "maxProperties", ptr, &hi) < 0) return -1;
    if (property_names(cx, s, ptr, &b, &hi) < 0) return -1;
    const cJSON *ad = cJSON_GetObjectItemCaseSensitive(s, "additionalProperties");
    b.addl = !ad || cJSON_IsTrue(ad) ? cx_any(cx) : cJSON_IsFalse(ad) ? -1 : sub_schema(cx, ad, ptr, "additionalProperties", NULL);
    if (ad && !cJSON_IsFalse(ad) && b.addl < 0) return -1;
    int32_t r = -1;
    if (collect_patterns(cx, &b, ptr) < 0) goto fail;
    int c = collect_names(cx, &b, ptr);
    if (c == -2) {
        r = cx_never(cx);
        goto fail;
    }
    if (c < 0) goto fail;
    if (b.pn_list) b.np = 0; // listed names only: patterns were merged into them
    if (b.pn_pat && b.addl >= 0) { // other keys: those matching the pattern, valued by additionalProperties
        b.pat_src[b.np] = b.pn_pat;
        b.pat_schema[b.np++] = NULL;
    }
    int32_t kd = key_dfa(cx, &b, ptr);
    int32_t *pn = malloc(((size_t)b.np + 1) * sizeof *pn);
    if (kd < 0 || !pn) {
        free(pn);
        goto fail;
    }
    for (int j = 0; j < b.np; j++)
        if ((pn[j] = b.pat_schema[j] ? sub_schema(cx, b.pat_schema[j], ptr, "patternProperties", b.pat_src[j])
                                     : b.addl) < 0) {
            free(pn);
            goto fail;
        }
    if ((r = cx_new_node(cx, JS_OBJECT)) < 0) {
        free(pn);
        goto fail;
    }
    js_node *o = &cx->s->nodes[r];
    o->props = b.out;
    o->n_props = b.n;
    o->key_dfa = kd;
    o->pattern_nodes = pn;
    o->n_patterns = b.np;
    o->additional = b.addl;
    o->min_props = lo;
    o->max_props = !(b.addl >= 0 && !b.pn_list && !b.pn_pat) && !b.n && !b.np ? 0 : hi;
    free(b.names);
    return r;
fail:
    if (b.out)
        for (int i = 0; i < b.n; i++) free(b.out[i].name);
    free(b.out);
    free(b.names);
    return r;
}

// ---- arrays -------------------------------------------------------------------

// The prefix schemas (prefixItems in 2020-12, an items array before) and
// the schema for the rest (NULL: any).
static void array_parts(js_cx *cx, const cJSON *s, const cJSON **prefix, const char **pkw, const cJSON **rest,
                        const char **rkw) {
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(s, "items");
    const cJSON *pre = cx->draft >= JS_DRAFT2020 ? cJSON_GetObjectItemCaseSensitive(s, "prefixItems") : NULL;
    *prefix = NULL, *rest = NULL;
    if (cJSON_IsArray(pre)) {
        *prefix = pre, *pkw = "prefixItems";
        *rest = items, *rkw = "items";
    } else if (cJSON_IsArray(items)) {
        *prefix = items, *pkw = "items";
        *rest = cJSON_GetObjectItemCaseSensitive(s, "additionalItems"), *rkw = "additionalItems";
    } else {
        *rest = items, *rkw = "items";
    }
}

int32_t cx_array(js_cx *cx, const cJSON *s, const char *ptr) {
    int64_t lo = 0, hi = -1;
    if (cx_count(cx, s, "minItems", ptr, &lo) < 0 || cx_count(cx, s, "maxItems", ptr, &hi) < 0) return -1;
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(s, "uniqueItems")) && (hi < 0 || hi > 1))
        return cx_fail(cx, "uniqueItems", ptr, "not supported (needs comparing items)"), -1;
    if (hi >= 0 && lo > hi) return cx_never(cx);
    const cJSON *prefix, *rest;
    const char *pkw = "items", *rkw = "items";
    array_parts(cx, s, &prefix, &pkw, &rest, &rkw);
    int n = cJSON_GetArraySize(prefix);
    int32_t *pre = malloc(((size_t)n + 1) * sizeof *pre);
    if (!pre) return err_set(cx->err, "schema: out of memory"), -1;
    for (int i = 0; i < n; i++) {
        char p[1100], q[1024];
        cx_ptr_join(q, sizeof q, ptr, pkw);
        snprintf(p, sizeof p, "%s/%d", q, i);
        if ((pre[i] = cx_schema(cx, cJSON_GetArrayItem(prefix, i), p)) < 0) return free(pre), -1;
    }
    int32_t items = !rest || cJSON_IsTrue(rest) ? cx_any(cx) : cJSON_IsFalse(rest) ? -1 : sub_schema(cx, rest, ptr, rkw, NULL);
    if (rest && !cJSON_IsFalse(rest) && items < 0) return free(pre), -1;
    int32_t r = cx_new_node(cx, JS_ARRAY);
    if (r < 0) return free(pre), -1;
    js_node *a = &cx->s->nodes[r];
    a->prefix = pre;
    a->n_prefix = n;
    a->items = items;
    a->min_items = lo;
    a->max_items = hi;
    return r;
}
