// jsonschema_merge: allOf as one schema. Two schemas merge keyword by
// keyword into a new one (owned by the compiler, its members borrowed from
// the parts): types and enums intersect, bounds tighten, patterns pile up,
// and objects and arrays merge per key and per position as
// {"allOf": [a's schema there, b's schema there]}, merged in turn when
// compiled. What cannot be merged exactly is an error naming the keyword.
// Also here: the proof that two oneOf alternatives are disjoint, and `not`.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonschema_int.h"

#define OOM(cx) (err_set((cx)->err, "schema: out of memory"), (const cJSON *)NULL)

static int add_ref(cJSON *o, const char *k, const cJSON *v) {
    return cJSON_AddItemReferenceToObject(o, k, cx_mut(v)) ? 0 : -1;
}

// {"allOf": [x, y]} (NULL / true parts dropped), owned.
static const cJSON *pair(js_cx *cx, const cJSON *x, const cJSON *y) {
    if (!x || cJSON_IsTrue(x)) return y;
    if (!y || cJSON_IsTrue(y)) return x;
    if (cJSON_IsFalse(x)) return x;
    if (cJSON_IsFalse(y)) return y;
    if (cJSON_Compare(x, y, 1)) return x;
    cJSON *o = cx_own(cx, cJSON_CreateObject());
    cJSON *arr = o ? cJSON_AddArrayToObject(o, "allOf") : NULL;
    if (!arr || !cJSON_AddItemReferenceToArray(arr, cx_mut(x)) || !cJSON_AddItemReferenceToArray(arr, cx_mut(y)))
        return OOM(cx);
    return o;
}

const cJSON *cx_deref(js_cx *cx, const cJSON *s, const char *ptr) {
    if (!cJSON_IsObject(s)) return s;
    if (++cx->depth > JS_MAX_DEPTH) {
        cx->depth--;
        return cx_fail(cx, "$ref", ptr, "references nest deeper than %d levels", JS_MAX_DEPTH), NULL;
    }
    const cJSON *r = s;
    const cJSON *ref = cJSON_GetObjectItemCaseSensitive(s, "$ref");
    const cJSON *all = cJSON_GetObjectItemCaseSensitive(s, "allOf");
    static const char *const skip[] = {"$ref"};
    if (ref) {
        const cJSON *t = cJSON_IsString(ref) ? cx_resolve(cx, ref->valuestring, ptr) : NULL;
        if (!cJSON_IsString(ref) && !cx_fail(cx, "$ref", ptr, "expected a string")) t = NULL;
        if (t) t = cx_deref(cx, t, ptr);
        if (!t || cx->draft <= JS_DRAFT7 || !cx_has_other(s, skip, 1)) {
            r = t;
        } else {
            const cJSON *rest = cx_without(cx, s, "$ref");
            rest = rest ? cx_deref(cx, rest, ptr) : NULL;
            r = rest ? cx_merge(cx, t, rest, ptr) : NULL;
        }
    } else if (all) {
        char p[1024];
        cx_ptr_join(p, sizeof p, ptr, "allOf");
        if (!cJSON_IsArray(all)) {
            cx_fail(cx, "allOf", ptr, "expected an array");
            r = NULL;
        } else {
            r = cx_without(cx, s, "allOf");
            int i = 0;
            const cJSON *m;
            cJSON_ArrayForEach(m, all) {
                char q[1100];
                snprintf(q, sizeof q, "%s/%d", p, i++);
                const cJSON *d = r ? cx_deref(cx, m, q) : NULL;
                r = d ? cx_merge(cx, r, d, q) : NULL;
                if (!r) break;
            }
        }
    }
    cx->depth--;
    return r;
}

// ---- per-keyword merges ---------------------------------------------------------

static const char *const validation_kws[] = {
    "type", "enum", "const", "multipleOf", "maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum", "maxLength",
    "minLength", "pattern", "\x01patterns", "format", "items", "additionalItems", "prefixItems", "maxItems",
    "minItems", "uniqueItems", "contains", "maxContains", "minContains", "maxProperties", "minProperties", "required",
    "properties", "patternProperties", "additionalProperties", "dependencies", "dependentRequired",
    "dependentSchemas", "propertyNames", "if", "then", "else", "anyOf", "oneOf", "not", "unevaluatedItems",
    "unevaluatedProperties", "$recursiveRef", "$dynamicRef", "extends", "disallow", "divisibleBy", "\x01nots",
};

static int is_validation(const char *k) {
    for (size_t i = 0; i < sizeof validation_kws / sizeof *validation_kws; i++)
        if (!strcmp(k, validation_kws[i])) return 1;
    return 0;
}

static int is_joint(const char *k) {
    static const char *const j[] = {"properties", "patternProperties", "additionalProperties", "items",
                                    "additionalItems", "prefixItems", "minimum", "maximum",
                                    "exclusiveMinimum", "exclusiveMaximum"};
    for (size_t i = 0; i < sizeof j / sizeof *j; i++)
        if (!strcmp(k, j[i])) return 1;
    return 0;
}

static const char *const type_names[] = {"null", "boolean", "integer", "number", "string", "object", "array"};

static int merge_type(js_cx *cx, cJSON *o, const cJSON *a, const cJSON *b) {
    unsigned ta, tb;
    cx_types_of(a, &ta);
    cx_types_of(b, &tb);
    unsigned t = ta & tb;
    cJSON *arr = cJSON_AddArrayToObject(o, "type");
    if (!arr) return err_set(cx->err, "schema: out of memory");
    static const unsigned bits[] = {JT_NULL, JT_BOOL, JT_INT, JT_NUM, JT_STR, JT_OBJ, JT_ARR};
    for (int i = 0; i < 7; i++) {
        if (!(t & bits[i])) continue;
        if (bits[i] == JT_INT && (t & JT_NUM)) continue; // "number" covers it
        cJSON_AddItemToArray(arr, cJSON_CreateString(type_names[i]));
    }
    return 0;
}

static int merge_list(js_cx *cx, cJSON *o, const char *k, const cJSON *va, const cJSON *vb, int intersect) {
    cJSON *arr = cJSON_AddArrayToObject(o, k);
    if (!arr) return err_set(cx->err, "schema: out of memory");
    const cJSON *x, *y;
    cJSON_ArrayForEach(x, va) {
        int in_b = 0;
        cJSON_ArrayForEach(y, vb) in_b |= cJSON_Compare(x, y, 1);
        if (!intersect || in_b) cJSON_AddItemReferenceToArray(arr, cx_mut(x));
    }
    if (!intersect) {
        cJSON_ArrayForEach(y, vb) {
            int in_a = 0;
            cJSON_ArrayForEach(x, va) in_a |= cJSON_Compare(x, y, 1);
            if (!in_a) cJSON_AddItemReferenceToArray(arr, cx_mut(y));
        }
    }
    return 0;
}

static int merge_patterns(js_cx *cx, cJSON *o, const cJSON *a, const cJSON *b) {
    cJSON *arr = cJSON_AddArrayToObject(o, "\x01patterns");
    if (!arr) return err_set(cx->err, "schema: out of memory");
    const cJSON *sides[2] = {a, b};
    for (int i = 0; i < 2; i++) {
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(sides[i], "pattern");
        if (cJSON_IsString(p)) cJSON_AddItemReferenceToArray(arr, cx_mut(p));
        const cJSON *m;
        cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(sides[i], "\x01patterns"))
            cJSON_AddItemReferenceToArray(arr, cx_mut(m));
    }
    return 0;
}

// Both parts carry a `not`: the merge keeps one and gathers the others in
// "\x01nots", applied one after the other (cx_not).
static int merge_nots(js_cx *cx, cJSON *o, const cJSON *a, const cJSON *b) {
    if (cJSON_GetObjectItemCaseSensitive(o, "\x01nots") || cJSON_GetObjectItemCaseSensitive(o, "not")) return 0;
    cJSON *arr = cJSON_AddArrayToObject(o, "\x01nots");
    if (!arr) return err_set(cx->err, "schema: out of memory");
    const cJSON *sides[2] = {a, b};
    for (int i = 0; i < 2; i++) {
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(sides[i], "not"), *m;
        if (n) cJSON_AddItemReferenceToArray(arr, cx_mut(n));
        cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(sides[i], "\x01nots"))
            cJSON_AddItemReferenceToArray(arr, cx_mut(m));
    }
    return 0;
}

// One keyword both parts carry.
static int merge_both(js_cx *cx, cJSON *o, const char *k, const cJSON *a, const cJSON *b, const cJSON *va,
                      const cJSON *vb, const char *ptr) {
    if (!strcmp(k, "type")) return merge_type(cx, o, a, b);
    if (!strcmp(k, "enum")) return merge_list(cx, o, k, va, vb, 1);
    if (!strcmp(k, "required")) return merge_list(cx, o, k, va, vb, 0);
    if (!strcmp(k, "pattern") || !strcmp(k, "\x01patterns")) {
        if (cJSON_GetObjectItemCaseSensitive(o, "\x01patterns")) return 0;
        return merge_patterns(cx, o, a, b);
    }
    if (cJSON_Compare(va, vb, 1)) return add_ref(o, k, va);
    static const char *const mins[] = {"minLength", "minItems", "minProperties"};
    static const char *const maxs[] = {"maxLength", "maxItems", "maxProperties"};
    for (int i = 0; i < 3; i++) {
        if (!strcmp(k, mins[i]) && cJSON_IsNumber(va) && cJSON_IsNumber(vb))
            return add_ref(o, k, va->valuedouble >= vb->valuedouble ? va : vb);
        if (!strcmp(k, maxs[i]) && cJSON_IsNumber(va) && cJSON_IsNumber(vb))
            return add_ref(o, k, va->valuedouble <= vb->valuedouble ? va : vb);
    }
    if (!strcmp(k, "uniqueItems")) return add_ref(o, k, cJSON_IsTrue(va) ? va : vb);
    if (!strcmp(k, "multipleOf") && cJSON_IsNumber(va) && cJSON_IsNumber(vb)) {
        double x = va->valuedouble, y = vb->valuedouble, q = x / y;
        if (x > 0 && y > 0 && fabs(q - nearbyint(q)) < 1e-12) return add_ref(o, k, va);
        if (x > 0 && y > 0 && fabs(1 / q - nearbyint(1 / q)) < 1e-12) return add_ref(o, k, vb);
        if (x >= 1 && y >= 1 && x == floor(x) && y == floor(y) && x < 1e9 && y < 1e9) { // integers: their lcm
            uint64_t g = (uint64_t)x, h = (uint64_t)y;
            while (h) {
                uint64_t r = g % h;
                g = h, h = r;
            }
            return cJSON_AddNumberToObject(o, k, x / (double)g * y) ? 0 : err_set(cx->err, "schema: out of memory");
        }
    }
    if (!strcmp(k, "format") && cJSON_IsString(va) && cJSON_IsString(vb)) {
        if (!rx_format(va->valuestring)) return add_ref(o, k, vb);
        if (!rx_format(vb->valuestring)) return add_ref(o, k, va);
    }
    if (!strcmp(k, "const")) return 1; // two different constants: nothing matches
    if (!strcmp(k, "not") || !strcmp(k, "\x01nots")) return merge_nots(cx, o, a, b);
    if (!strcmp(k, "anyOf") && cJSON_GetArraySize(va) * cJSON_GetArraySize(vb) <= 64) {
        cJSON *arr = cJSON_AddArrayToObject(o, "anyOf");
        const cJSON *x, *y;
        cJSON_ArrayForEach(x, va) cJSON_ArrayForEach(y, vb) {
            const cJSON *p = pair(cx, x, y);
            if (!p || !cJSON_AddItemReferenceToArray(arr, cx_mut(p))) return -1;
        }
        return 0;
    }
    return cx_fail(cx, "allOf", ptr, "cannot merge two different '%s'", k);
}

// ---- bounds -------------------------------------------------------------------------

typedef struct side_bound {
    int has;
    int excl;
    double v;
} side_bound;

// A part's lower (lower=1) or upper bound in either draft's form.
static side_bound bound_of(const cJSON *s, int lower) {
    side_bound b = {0, 0, 0};
    const cJSON *plain = cJSON_GetObjectItemCaseSensitive(s, lower ? "minimum" : "maximum");
    const cJSON *ex = cJSON_GetObjectItemCaseSensitive(s, lower ? "exclusiveMinimum" : "exclusiveMaximum");
    if (cJSON_IsNumber(plain)) b.has = 1, b.v = plain->valuedouble, b.excl = cJSON_IsTrue(ex);
    if (cJSON_IsNumber(ex)) {
        double v = ex->valuedouble;
        if (!b.has || (lower ? v >= b.v : v <= b.v)) b.has = 1, b.v = v, b.excl = 1;
    }
    return b;
}

static side_bound tighter(side_bound x, side_bound y, int lower) {
    if (!x.has) return y;
    if (!y.has) return x;
    if (x.v == y.v) return x.excl ? x : y;
    return (lower ? x.v > y.v : x.v < y.v) ? x : y;
}

static int merge_bounds(js_cx *cx, cJSON *o, const cJSON *a, const cJSON *b) {
    for (int lower = 0; lower < 2; lower++) {
        side_bound t = tighter(bound_of(a, lower), bound_of(b, lower), lower);
        if (!t.has) continue;
        const char *k = lower ? (t.excl ? "exclusiveMinimum" : "minimum") : (t.excl ? "exclusiveMaximum" : "maximum");
        if (!cJSON_AddNumberToObject(o, k, t.v)) return err_set(cx->err, "schema: out of memory");
    }
    return 0;
}

// ---- objects ------------------------------------------------------------------------

// Part s's schema for the value of key `name` into *out: its property and
// every pattern it matches, else its additionalProperties (NULL: anything).
// 0, or -1 with an error.
static int side_schema(js_cx *cx, const cJSON *s, const char *name, const char *ptr, const cJSON **out) {
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(s, "properties"), name);
    int named = r != NULL;
    const cJSON *m;
    char *text = NULL;
    cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(s, "patternProperties")) {
        if (!text && cx_json_string_text(name, &text)) return err_set(cx->err, "schema: out of memory");
        int32_t d = cx_dfa(cx, m->string, RX_JSON_STRING | RX_SEARCH, "patternProperties", ptr);
        if (d == -1) return free(text), -1;
        if (d < 0 || !rx_match(cx->s->dfas[d], text, strlen(text))) continue;
        named = 1;
        r = r ? pair(cx, r, m) : m;
        if (!r) return free(text), -1;
    }
    free(text);
    *out = named ? r : cJSON_GetObjectItemCaseSensitive(s, "additionalProperties");
    return 0;
}

static const cJSON *addl_or_true(const cJSON *s) {
    return cJSON_GetObjectItemCaseSensitive(s, "additionalProperties");
}

static int merge_objects(js_cx *cx, cJSON *o, const cJSON *a, const cJSON *b, const char *ptr) {
    cJSON *props = cJSON_CreateObject(), *pats = cJSON_CreateObject();
    if (!props || !pats || !cJSON_AddItemToObject(o, "properties", props) ||
        !cJSON_AddItemToObject(o, "patternProperties", pats))
        return cJSON_Delete(props), cJSON_Delete(pats), err_set(cx->err, "schema: out of memory");
    const cJSON *sides[2] = {a, b};
    for (int i = 0; i < 2; i++) {
        const cJSON *m;
        cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(sides[i], "properties")) {
            if (cJSON_GetObjectItemCaseSensitive(props, m->string)) continue;
            const cJSON *x, *y;
            if (side_schema(cx, a, m->string, ptr, &x) < 0 || side_schema(cx, b, m->string, ptr, &y) < 0) return -1;
            const cJSON *p = pair(cx, x, y);
            if (!p) p = cx_own(cx, cJSON_CreateTrue());
            if (!p || add_ref(props, m->string, p)) return err_set(cx->err, "schema: out of memory");
        }
    }
    for (int i = 0; i < 2; i++) {
        const cJSON *other = sides[1 - i], *m;
        cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(sides[i], "patternProperties")) {
            const cJSON *same =
                cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(other, "patternProperties"), m->string);
            if (same && i == 1) continue; // merged when i was 0
            const cJSON *p = pair(cx, m, same ? same : addl_or_true(other));
            if (!p) p = cx_own(cx, cJSON_CreateTrue());
            if (!p || add_ref(pats, m->string, p)) return err_set(cx->err, "schema: out of memory");
        }
    }
    const cJSON *ad = pair(cx, addl_or_true(a), addl_or_true(b));
    if (ad && add_ref(o, "additionalProperties", ad)) return err_set(cx->err, "schema: out of memory");
    return 0;
}

// ---- arrays -------------------------------------------------------------------------

static void item_parts(js_cx *cx, const cJSON *s, const cJSON **prefix, const cJSON **rest) {
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(s, "items");
    const cJSON *pre = cx->draft >= JS_DRAFT2020 ? cJSON_GetObjectItemCaseSensitive(s, "prefixItems") : NULL;
    *prefix = NULL;
    *rest = items;
    if (cJSON_IsArray(pre)) {
        *prefix = pre;
    } else if (cJSON_IsArray(items)) {
        *prefix = items;
        *rest = cJSON_GetObjectItemCaseSensitive(s, "additionalItems");
    }
}

static int merge_arrays(js_cx *cx, cJSON *o, const cJSON *a, const cJSON *b) {
    const cJSON *pa, *ra, *pb, *rb;
    item_parts(cx, a, &pa, &ra);
    item_parts(cx, b, &pb, &rb);
    int na = cJSON_GetArraySize(pa), nb = cJSON_GetArraySize(pb), n = na > nb ? na : nb;
    const cJSON *rest = pair(cx, ra, rb);
    if (n == 0) return rest && add_ref(o, "items", rest) ? err_set(cx->err, "schema: out of memory") : 0;
    int new_form = cx->draft >= JS_DRAFT2020;
    cJSON *arr = cJSON_AddArrayToObject(o, new_form ? "prefixItems" : "items");
    if (!arr) return err_set(cx->err, "schema: out of memory");
    for (int i = 0; i < n; i++) {
        const cJSON *x = i < na ? cJSON_GetArrayItem(pa, i) : ra, *y = i < nb ? cJSON_GetArrayItem(pb, i) : rb;
        const cJSON *p = pair(cx, x, y);
        if (!p) p = cx_own(cx, cJSON_CreateTrue());
        if (!p || !cJSON_AddItemReferenceToArray(arr, cx_mut(p))) return err_set(cx->err, "schema: out of memory");
    }
    if (rest && add_ref(o, new_form ? "items" : "additionalItems", rest)) return err_set(cx->err, "schema: out of memory");
    return 0;
}

static int has_any_of(const cJSON *s, const char *const *k, int n) {
    for (int i = 0; i < n; i++)
        if (cJSON_HasObjectItem(s, k[i])) return 1;
    return 0;
}

const cJSON *cx_merge(js_cx *cx, const cJSON *a, const cJSON *b, const char *ptr) {
    a = cx_deref(cx, a, ptr);
    b = a ? cx_deref(cx, b, ptr) : NULL;
    if (!a || !b) return NULL;
    if (cJSON_IsFalse(a) || cJSON_IsTrue(b)) return a;
    if (cJSON_IsFalse(b) || cJSON_IsTrue(a)) return b;
    cJSON *o = cx_own(cx, cJSON_CreateObject());
    if (!o) return OOM(cx);
    const cJSON *sides[2] = {a, b};
    for (int i = 0; i < 2; i++) {
        const cJSON *m;
        cJSON_ArrayForEach(m, sides[i]) {
            const char *k = m->string;
            if (!is_validation(k) || is_joint(k) || cJSON_HasObjectItem(o, k)) continue;
            const cJSON *vo = cJSON_GetObjectItemCaseSensitive(sides[1 - i], k);
            if (!vo && !strcmp(k, "pattern")) vo = cJSON_GetObjectItemCaseSensitive(sides[1 - i], "\x01patterns");
            if (!vo && !strcmp(k, "\x01patterns")) vo = cJSON_GetObjectItemCaseSensitive(sides[1 - i], "pattern");
            if (!vo && !strcmp(k, "not")) vo = cJSON_GetObjectItemCaseSensitive(sides[1 - i], "\x01nots");
            if (!vo && !strcmp(k, "\x01nots")) vo = cJSON_GetObjectItemCaseSensitive(sides[1 - i], "not");
            int r = vo ? merge_both(cx, o, k, a, b, i ? vo : m, i ? m : vo, ptr) : add_ref(o, k, m);
            if (r > 0) return cx_own(cx, cJSON_CreateFalse());
            if (r < 0) return NULL;
        }
    }
    static const char *const objk[] = {"properties", "patternProperties", "additionalProperties"};
    static const char *const arrk[] = {"items", "additionalItems", "prefixItems"};
    static const char *const numk[] = {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"};
    for (int g = 0; g < 3; g++) {
        const char *const *ks = g == 0 ? objk : g == 1 ? arrk : numk;
        int nk = g == 2 ? 4 : 3;
        int ha = has_any_of(a, ks, nk), hb = has_any_of(b, ks, nk);
        int r = 0;
        if (ha && hb) {
            r = g == 0 ? merge_objects(cx, o, a, b, ptr) : g == 1 ? merge_arrays(cx, o, a, b) : merge_bounds(cx, o, a, b);
        } else if (ha || hb) {
            for (int j = 0; j < nk && !r; j++) {
                const cJSON *v = cJSON_GetObjectItemCaseSensitive(ha ? a : b, ks[j]);
                if (v) r = add_ref(o, ks[j], v) ? err_set(cx->err, "schema: out of memory") : 0;
            }
        }
        if (r < 0) return NULL;
    }
    return o;
}

// ---- oneOf: proving alternatives disjoint ------------------------------------------

static unsigned value_bits(const cJSON *v) {
    if (cJSON_IsNull(v)) return JT_NULL;
    if (cJSON_IsBool(v)) return JT_BOOL;
    if (cJSON_IsNumber(v)) return v->valuedouble == floor(v->valuedouble) ? JT_INT : JT_NUM;
    if (cJSON_IsString(v)) return JT_STR;
    return cJSON_IsObject(v) ? JT_OBJ : JT_ARR;
}

// The types s may accept: "type", narrowed by enum/const values.
static unsigned types_eff(const cJSON *s) {
    unsigned t;
    if (cx_types_of(s, &t) < 0) t = JT_ALL;
    const cJSON *en = cJSON_GetObjectItemCaseSensitive(s, "enum"), *co = cJSON_GetObjectItemCaseSensitive(s, "const");
    if (co) t &= value_bits(co) | (value_bits(co) == JT_INT ? JT_NUM : 0);
    if (cJSON_IsArray(en)) {
        unsigned u = 0;
        const cJSON *v;
        cJSON_ArrayForEach(v, en) u |= value_bits(v);
        t &= u;
    }
    return t;
}

// The literal values s allows (enum or const), or NULL.
static int literals_disjoint(const cJSON *a, const cJSON *b) {
    const cJSON *la[2] = {cJSON_GetObjectItemCaseSensitive(a, "enum"), cJSON_GetObjectItemCaseSensitive(a, "const")};
    const cJSON *lb[2] = {cJSON_GetObjectItemCaseSensitive(b, "enum"), cJSON_GetObjectItemCaseSensitive(b, "const")};
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++) {
            if (!la[i] || !lb[j]) continue;
            if ((i == 0 && !cJSON_IsArray(la[i])) || (j == 0 && !cJSON_IsArray(lb[j]))) continue;
            int common = 0;
            const cJSON *x = i == 0 ? la[i]->child : la[i];
            for (; x && !common; x = i == 0 ? x->next : NULL) {
                const cJSON *y = j == 0 ? lb[j]->child : lb[j];
                for (; y && !common; y = j == 0 ? y->next : NULL) common = cJSON_Compare(x, y, 1);
            }
            if (!common) return 1;
        }
    return 0;
}

static int is_required(const cJSON *s, const char *name) {
    const cJSON *r;
    cJSON_ArrayForEach(r, cJSON_GetObjectItemCaseSensitive(s, "required"))
        if (cJSON_IsString(r) && !strcmp(r->valuestring, name)) return 1;
    return 0;
}

// 1 if no object s accepts has key `name`.
static int forbids(const cJSON *s, const char *name) {
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(s, "properties"), name);
    if (p) return cJSON_IsFalse(p);
    const cJSON *pats = cJSON_GetObjectItemCaseSensitive(s, "patternProperties");
    return cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(s, "additionalProperties")) && !(pats && pats->child);
}

static int objects_disjoint(js_cx *cx, const cJSON *a, const cJSON *b, int depth) {
    const cJSON *sides[2] = {a, b}, *r;
    for (int i = 0; i < 2; i++)
        cJSON_ArrayForEach(r, cJSON_GetObjectItemCaseSensitive(sides[i], "required")) {
            if (!cJSON_IsString(r)) continue;
            const char *k = r->valuestring;
            const cJSON *other = sides[1 - i];
            if (forbids(other, k)) return 1;
            if (i == 1 || !is_required(other, k)) continue;
            const cJSON *pa = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(a, "properties"), k);
            const cJSON *pb = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(b, "properties"), k);
            if (pa && pb && depth < 8) {
                err_t saved = *cx->err;
                const cJSON *da = cx_deref(cx, pa, ""), *db = da ? cx_deref(cx, pb, "") : NULL;
                *cx->err = saved;
                if (da && db && !cJSON_IsTrue(da) && !cJSON_IsTrue(db)) {
                    unsigned ta = types_eff(da), tb = types_eff(db);
                    if (!(ta & tb) || literals_disjoint(da, db)) return 1;
                    if ((ta & tb) == JT_OBJ && objects_disjoint(cx, da, db, depth + 1)) return 1;
                }
            }
        }
    return 0;
}

// 1 if b accepts none of the values a lists (enum / const at its top).
static int listed_outside(js_cx *cx, const cJSON *a, const cJSON *b) {
    const cJSON *en = cJSON_GetObjectItemCaseSensitive(a, "enum"), *co = cJSON_GetObjectItemCaseSensitive(a, "const");
    if (!cJSON_IsArray(en) && !co) return 0;
    err_t saved = *cx->err;
    int out = 1;
    for (const cJSON *v = co ? co : en->child; v && out; v = co ? NULL : v->next)
        out = cx_value_ok(cx, b, v, "") == 0;
    *cx->err = saved;
    return out;
}

// A string schema's DFA, with short length bounds folded in (-2: empty).
static int32_t sized_dfa(js_cx *cx, const cJSON *s, double lo, double hi) {
    int32_t d = cx_string_dfa(cx, s, "");
    if (d < 0 || (hi < 0 && lo <= 0) || hi > 64 || lo > 64) return d;
    char re[64];
    if (hi >= 0) snprintf(re, sizeof re, "[\\s\\S]{%d,%d}", (int)lo, (int)hi);
    else snprintf(re, sizeof re, "[\\s\\S]{%d,}", (int)lo);
    int32_t len = cx_dfa(cx, re, RX_JSON_STRING, "oneOf", "");
    return len < 0 ? len : cx_dfa_and(cx, d, len, "oneOf", "");
}

// 1 if no string both accept: their pattern / format DFAs do not meet, or
// their length ranges do not.
static int strings_disjoint(js_cx *cx, const cJSON *a, const cJSON *b) {
    double la = 0, ha = -1, lb = 0, hb = -1;
    cx_num(a, "minLength", &la), cx_num(a, "maxLength", &ha);
    cx_num(b, "minLength", &lb), cx_num(b, "maxLength", &hb);
    if ((ha >= 0 && lb > ha) || (hb >= 0 && la > hb)) return 1;
    err_t saved = *cx->err;
    int32_t da = sized_dfa(cx, a, la, ha), db = da >= 0 ? sized_dfa(cx, b, lb, hb) : da;
    int32_t both = da >= 0 && db >= 0 ? cx_dfa_and(cx, da, db, "oneOf", "") : -1;
    *cx->err = saved;
    return da == -2 || db == -2 || both == -2;
}

int cx_may_overlap(js_cx *cx, const cJSON *a, const cJSON *b) {
    if (cJSON_IsFalse(a) || cJSON_IsFalse(b)) return 0;
    if (!cJSON_IsObject(a) || !cJSON_IsObject(b)) return 1;
    unsigned t = types_eff(a) & types_eff(b);
    if (!t || literals_disjoint(a, b)) return 0;
    if (listed_outside(cx, a, b) || listed_outside(cx, b, a)) return 0;
    if (t == JT_STR && strings_disjoint(cx, a, b)) return 0;
    if (t == JT_OBJ && objects_disjoint(cx, a, b, 0)) return 0;
    return 1;
}

// not {"required": R}: some key of R absent (objects only; every
// non-object passes, as "properties" ignores them). Owned.
static const cJSON *not_required(js_cx *cx, const cJSON *req) {
    cJSON *any = cx_own(cx, cJSON_CreateObject());
    cJSON *arr = any ? cJSON_AddArrayToObject(any, "anyOf") : NULL;
    if (!arr) return OOM(cx);
    const cJSON *k;
    cJSON_ArrayForEach(k, req) {
        cJSON *one = cJSON_CreateObject();
        cJSON *props = one ? cJSON_AddObjectToObject(one, "properties") : NULL;
        if (!props || !cJSON_AddFalseToObject(props, k->valuestring)) return cJSON_Delete(one), OOM(cx);
        cJSON_AddItemToArray(arr, one);
    }
    return cJSON_GetArraySize(arr) == 1 ? cx_own(cx, cJSON_DetachItemFromArray(arr, 0)) : any;
}

// The keys a requires and b does not, as a new owned array.
static const cJSON *required_minus(js_cx *cx, const cJSON *a, const cJSON *b) {
    cJSON *out = cx_own(cx, cJSON_CreateArray());
    if (!out) return OOM(cx);
    const cJSON *k;
    cJSON_ArrayForEach(k, cJSON_GetObjectItemCaseSensitive(a, "required"))
        if (cJSON_IsString(k) && !is_required(b, k->valuestring)) cJSON_AddItemReferenceToArray(out, cx_mut(k));
    return out;
}

// A oneOf made exclusive by trimming. Two alternatives not proven
// disjoint may still be made so when each requires keys: alternative i
// keeps only the objects missing some key alternative j requires, and j
// likewise, so no value is left in both (values outside the trim are
// dropped: false rejects, never false accepts). Non-object values must not
// be shared (their types disjoint), since "required" says nothing about
// them. 1: every pair is disjoint now (alt[] rewritten); 0: some pair may
// overlap (*x, *y name it); -1 error.
int cx_make_exclusive(js_cx *cx, const cJSON **alt, int n, const char *ptr, int *x, int *y) {
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++) {
            if (!cx_may_overlap(cx, alt[i], alt[j])) continue;
            // Each trims by the keys only the other requires.
            const cJSON *ri = required_minus(cx, alt[i], alt[j]), *rj = ri ? required_minus(cx, alt[j], alt[i]) : NULL;
            if (!rj) return -1;
            unsigned shared = types_eff(alt[i]) & types_eff(alt[j]) & ~(unsigned)JT_OBJ;
            if (shared || cJSON_GetArraySize(ri) == 0 || cJSON_GetArraySize(rj) == 0) {
                *x = i, *y = j;
                return 0;
            }
            const cJSON *ni = not_required(cx, ri), *nj = ni ? not_required(cx, rj) : NULL;
            const cJSON *ai = nj ? cx_merge(cx, alt[i], nj, ptr) : NULL;
            const cJSON *aj = ai ? cx_merge(cx, alt[j], ni, ptr) : NULL;
            if (!aj) return -1;
            alt[i] = ai, alt[j] = aj;
        }
    return 1;
}

// dependencies / dependentRequired / dependentSchemas: for each key k,
// {"anyOf": [k absent, k present and the dependency holds]}, merged into
// the rest of the schema. Owned; NULL with an error.
const cJSON *cx_dependencies(js_cx *cx, const cJSON *s, const char *ptr) {
    static const char *const kws[] = {"dependencies", "dependentRequired", "dependentSchemas"};
    const cJSON *acc = s;
    for (int i = 0; i < 3; i++) {
        const cJSON *deps = cJSON_GetObjectItemCaseSensitive(s, kws[i]);
        if (!deps) continue;
        cJSON *rest = cx_without(cx, acc, kws[i]);
        if (!rest) return NULL;
        acc = rest;
        const cJSON *d;
        cJSON_ArrayForEach(d, deps) {
            cJSON *alt = cx_own(cx, cJSON_CreateObject());
            cJSON *arr = alt ? cJSON_AddArrayToObject(alt, "anyOf") : NULL;
            cJSON *absent = cJSON_CreateObject(), *present = cJSON_CreateObject();
            if (!arr || !absent || !present) return cJSON_Delete(absent), cJSON_Delete(present), OOM(cx);
            cJSON_AddItemToArray(arr, absent);
            cJSON_AddItemToArray(arr, present);
            cJSON *props = cJSON_AddObjectToObject(absent, "properties");
            cJSON *req = cJSON_AddArrayToObject(present, "required");
            if (!props || !req || !cJSON_AddFalseToObject(props, d->string)) return OOM(cx);
            cJSON_AddItemToArray(req, cJSON_CreateString(d->string));
            if (cJSON_IsArray(d)) {
                const cJSON *k;
                cJSON_ArrayForEach(k, d) if (cJSON_IsString(k)) cJSON_AddItemToArray(req, cJSON_CreateString(k->valuestring));
            } else {
                cJSON *all = cJSON_AddArrayToObject(present, "allOf");
                if (!all || !cJSON_AddItemReferenceToArray(all, cx_mut(d))) return OOM(cx);
            }
            acc = cx_merge(cx, acc, alt, ptr);
            if (!acc) return NULL;
        }
    }
    return acc;
}

// ---- not ----------------------------------------------------------------------------

// `not` in the forms that narrow the rest exactly: not {} (nothing), not a
// type list (those types dropped), not {"required": [k]} (k forbidden).
// The `not` to apply first: "not", else the first of "\x01nots" (the
// nots an allOf merge gathered), and s without it.
static const cJSON *next_not(js_cx *cx, const cJSON *s, cJSON **rest) {
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(s, "not");
    if (n) {
        *rest = cx_without(cx, s, "not");
        return *rest ? n : NULL;
    }
    const cJSON *more = cJSON_GetObjectItemCaseSensitive(s, "\x01nots");
    if (!(*rest = cx_without(cx, s, "\x01nots"))) return NULL;
    cJSON *left = cJSON_AddArrayToObject(*rest, "\x01nots");
    if (!left) return OOM(cx);
    for (const cJSON *m = more->child ? more->child->next : NULL; m; m = m->next)
        cJSON_AddItemReferenceToArray(left, cx_mut(m));
    if (!left->child) cJSON_DeleteItemFromObjectCaseSensitive(*rest, "\x01nots");
    return more->child;
}

int32_t cx_not(js_cx *cx, const cJSON *s, const char *ptr) {
    char p[1024];
    cx_ptr_join(p, sizeof p, ptr, "not");
    cJSON *rest = NULL;
    const cJSON *n = next_not(cx, s, &rest);
    n = n ? cx_deref(cx, n, p) : NULL;
    if (!n || !rest) return -1;
    if (!cJSON_IsObject(n) && !cJSON_IsBool(n))
        return cx_fail(cx, "not", ptr, "expected a schema (an object or a boolean)"), -1;
    if (cJSON_IsFalse(n)) return cx_schema(cx, rest, ptr);
    if (cJSON_IsTrue(n) || !cx_has_other(n, NULL, 0)) return cx_new_node(cx, JS_NEVER);
    static const char *const only_type[] = {"type"};
    if (!cx_has_other(n, only_type, 1)) {
        unsigned tr, tn;
        cx_types_of(rest, &tr);
        if (cx_types_of(n, &tn) < 0) return cx_fail(cx, "type", p, "expected a type name or a list of them"), -1;
        if ((tn & JT_INT) && !(tn & JT_NUM) && (tr & JT_NUM))
            return cx_fail(cx, "not", ptr, "not integer among numbers is not supported"), -1;
        unsigned t = tr & ~tn;
        cJSON_DeleteItemFromObjectCaseSensitive(rest, "type");
        cJSON *arr = cJSON_AddArrayToObject(rest, "type");
        static const unsigned bits[] = {JT_NULL, JT_BOOL, JT_INT, JT_NUM, JT_STR, JT_OBJ, JT_ARR};
        for (int i = 0; i < 7; i++)
            if ((t & bits[i]) && !(bits[i] == JT_INT && (t & JT_NUM)))
                cJSON_AddItemToArray(arr, cJSON_CreateString(type_names[i]));
        return cx_schema(cx, rest, ptr);
    }
    static const char *const only_req[] = {"required"};
    const cJSON *req = cJSON_GetObjectItemCaseSensitive(n, "required");
    if (!cx_has_other(n, only_req, 1) && cJSON_GetArraySize(req) >= 1) {
        const cJSON *k;
        cJSON_ArrayForEach(k, req) if (!cJSON_IsString(k)) return cx_fail(cx, "required", p, "expected strings"), -1;
        const cJSON *f = not_required(cx, req);
        const cJSON *m = f ? cx_merge(cx, rest, f, ptr) : NULL;
        return m ? cx_schema(cx, m, ptr) : -1;
    }
    return cx_fail(cx, "not", ptr, "not supported for this subschema"), -1;
}
