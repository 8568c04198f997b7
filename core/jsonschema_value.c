// jsonschema_value: a schema checked against one known JSON value. When a
// schema lists its values (enum or const, itself or in an allOf part), the
// compiler keeps the listed values the whole schema accepts, so keywords a
// grammar cannot enforce (not, uniqueItems, contains, if/then/else,
// dependencies, oneOf) still apply exactly: on a known value each is a plain
// test. A keyword this checker does not know how to test is an error.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonschema_int.h"

typedef struct vcx {
    js_cx *cx;
    const char *ptr;
    int depth;
} vcx;

static int check(vcx *v, const cJSON *s, const cJSON *x);

static const cJSON *kw(const cJSON *s, const char *k) {
    return cJSON_GetObjectItemCaseSensitive(s, k);
}

static unsigned type_of(const cJSON *x) {
    if (cJSON_IsNull(x)) return JT_NULL;
    if (cJSON_IsBool(x)) return JT_BOOL;
    if (cJSON_IsNumber(x)) return x->valuedouble == floor(x->valuedouble) ? JT_INT | JT_NUM : JT_NUM;
    if (cJSON_IsString(x)) return JT_STR;
    return cJSON_IsObject(x) ? JT_OBJ : JT_ARR;
}

static int all_of(vcx *v, const cJSON *arr, const cJSON *x) {
    const cJSON *s;
    cJSON_ArrayForEach(s, arr) {
        int r = check(v, s, x);
        if (r <= 0) return r;
    }
    return 1;
}

// Matches among arr's schemas (stops at `stop`), or -1.
static int count_of(vcx *v, const cJSON *arr, const cJSON *x, int stop) {
    int n = 0;
    const cJSON *s;
    cJSON_ArrayForEach(s, arr) {
        int r = check(v, s, x);
        if (r < 0) return -1;
        if ((n += r) >= stop) break;
    }
    return n;
}

static int check_number(vcx *v, const cJSON *s, const cJSON *x) {
    double d = x->valuedouble, b;
    const cJSON *em = kw(s, "exclusiveMinimum"), *eM = kw(s, "exclusiveMaximum");
    if (cx_num(s, "minimum", &b) > 0 && (d < b || (cJSON_IsTrue(em) && d == b))) return 0;
    if (cx_num(s, "maximum", &b) > 0 && (d > b || (cJSON_IsTrue(eM) && d == b))) return 0;
    if (cJSON_IsNumber(em) && d <= em->valuedouble) return 0;
    if (cJSON_IsNumber(eM) && d >= eM->valuedouble) return 0;
    if (cx_num(s, "multipleOf", &b) > 0 && b > 0) {
        double q = d / b;
        if (fabs(q - nearbyint(q)) > 1e-9) return 0;
    }
    return 1;
}

static int check_string(vcx *v, const cJSON *s, const cJSON *x) {
    int64_t n = 0;
    for (const unsigned char *p = (const unsigned char *)x->valuestring; *p; p++) n += (*p & 0xC0) != 0x80;
    double b;
    if (cx_num(s, "minLength", &b) > 0 && n < b) return 0;
    if (cx_num(s, "maxLength", &b) > 0 && n > b) return 0;
    const cJSON *pat = kw(s, "pattern"), *fmt = kw(s, "format"), *more = kw(s, "\x01patterns");
    if (!pat && !more && !cJSON_IsString(fmt)) return 0 + 1;
    // The string's DFA is the one the compiler builds for a string schema.
    cJSON *only = cJSON_CreateObject();
    if (!only) return err_set(v->cx->err, "schema: out of memory");
    if (pat) cJSON_AddItemReferenceToObject(only, "pattern", cx_mut(pat));
    if (more) cJSON_AddItemReferenceToObject(only, "\x01patterns", cx_mut(more));
    if (fmt) cJSON_AddItemReferenceToObject(only, "format", cx_mut(fmt));
    cJSON_AddStringToObject(only, "type", "string");
    int32_t node = cx_typed(v->cx, only, v->ptr);
    cJSON_Delete(only);
    if (node < 0) return -1;
    const js_node *nd = &v->cx->s->nodes[node];
    if (nd->kind == JS_NEVER) return 0;
    char *text;
    if (cx_json_string_text(x->valuestring, &text)) return err_set(v->cx->err, "schema: out of memory");
    int ok = rx_match(v->cx->s->dfas[nd->dfa], text, strlen(text));
    free(text);
    return ok;
}

static int check_items(vcx *v, const cJSON *s, const cJSON *x) {
    int n = cJSON_GetArraySize(x);
    double b;
    if (cx_num(s, "minItems", &b) > 0 && n < b) return 0;
    if (cx_num(s, "maxItems", &b) > 0 && n > b) return 0;
    const cJSON *items = kw(s, "items"), *pre = v->cx->draft >= JS_DRAFT2020 ? kw(s, "prefixItems") : NULL;
    const cJSON *rest = items;
    if (cJSON_IsArray(pre)) {
    } else if (cJSON_IsArray(items)) {
        pre = items;
        rest = kw(s, "additionalItems");
    } else {
        pre = NULL;
    }
    int np = cJSON_GetArraySize(pre), i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, x) {
        const cJSON *sub = i < np ? cJSON_GetArrayItem(pre, i) : rest;
        int r = sub ? check(v, sub, e) : 1;
        if (r <= 0) return r;
        i++;
    }
    if (cJSON_IsTrue(kw(s, "uniqueItems")))
        for (const cJSON *a = x->child; a; a = a->next)
            for (const cJSON *c = a->next; c; c = c->next)
                if (cJSON_Compare(a, c, 1)) return 0;
    const cJSON *con = v->cx->draft >= JS_DRAFT6 ? kw(s, "contains") : NULL;
    if (con) {
        double lo = 1, hi = -1;
        cx_num(s, "minContains", &lo);
        cx_num(s, "maxContains", &hi);
        int m = 0;
        cJSON_ArrayForEach(e, x) {
            int r = check(v, con, e);
            if (r < 0) return -1;
            m += r;
        }
        if (m < lo || (hi >= 0 && m > hi)) return 0;
    }
    return 1;
}

// The schemas that apply to member m of object s (properties, patterns,
// else additionalProperties), each checked.
static int check_member(vcx *v, const cJSON *s, const cJSON *m) {
    const cJSON *p = kw(kw(s, "properties"), m->string);
    int covered = p != NULL;
    int r0 = p ? check(v, p, m) : 1;
    if (r0 <= 0) return r0;
    const cJSON *pp;
    char *text = NULL;
    cJSON_ArrayForEach(pp, kw(s, "patternProperties")) {
        if (!text && cx_json_string_text(m->string, &text)) return err_set(v->cx->err, "schema: out of memory");
        int32_t d = cx_dfa(v->cx, pp->string, RX_JSON_STRING | RX_SEARCH, "patternProperties", v->ptr);
        if (d == -1) return free(text), -1;
        if (d < 0 || !rx_match(v->cx->s->dfas[d], text, strlen(text))) continue;
        covered = 1;
        int r = check(v, pp, m);
        if (r <= 0) return free(text), r;
    }
    free(text);
    const cJSON *ad = kw(s, "additionalProperties");
    return covered || !ad ? 1 : check(v, ad, m);
}

static int check_object(vcx *v, const cJSON *s, const cJSON *x) {
    int n = cJSON_GetArraySize(x);
    double b;
    if (cx_num(s, "minProperties", &b) > 0 && n < b) return 0;
    if (cx_num(s, "maxProperties", &b) > 0 && n > b) return 0;
    const cJSON *r, *m;
    cJSON_ArrayForEach(r, kw(s, "required")) if (cJSON_IsString(r) && !kw(x, r->valuestring)) return 0;
    const cJSON *pn = v->cx->draft >= JS_DRAFT6 ? kw(s, "propertyNames") : NULL;
    cJSON_ArrayForEach(m, x) {
        int ok = check_member(v, s, m);
        if (ok <= 0) return ok;
        if (pn) {
            cJSON *name = cJSON_CreateString(m->string);
            ok = name ? check(v, pn, name) : err_set(v->cx->err, "schema: out of memory");
            cJSON_Delete(name);
            if (ok <= 0) return ok;
        }
    }
    const char *deps[] = {"dependencies", "dependentRequired", "dependentSchemas"};
    for (int i = 0; i < 3; i++)
        cJSON_ArrayForEach(m, kw(s, deps[i])) {
            if (!kw(x, m->string)) continue;
            if (cJSON_IsArray(m)) {
                cJSON_ArrayForEach(r, m) if (cJSON_IsString(r) && !kw(x, r->valuestring)) return 0;
            } else {
                int ok = check(v, m, x);
                if (ok <= 0) return ok;
            }
        }
    return 1;
}

static int check_body(vcx *v, const cJSON *s, const cJSON *x) {
    if (cJSON_IsBool(s)) return cJSON_IsTrue(s);
    if (!cJSON_IsObject(s)) return cx_fail(v->cx, "schema", v->ptr, "expected an object or a boolean");
    static const char *const refused[] = {"unevaluatedProperties", "unevaluatedItems", "$recursiveRef", "$dynamicRef",
                                          "extends", "disallow", "divisibleBy"};
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++)
        if (kw(s, refused[i])) return cx_fail(v->cx, refused[i], v->ptr, "not supported");
    const cJSON *ref = kw(s, "$ref");
    if (ref) {
        const cJSON *t = cJSON_IsString(ref) ? cx_resolve(v->cx, ref->valuestring, v->ptr) : NULL;
        if (!t) return -1;
        int r = check(v, t, x);
        if (r <= 0 || v->cx->draft <= JS_DRAFT7) return r;
    }
    unsigned types;
    if (cx_types_of(s, &types) < 0) return cx_fail(v->cx, "type", v->ptr, "expected a type name or a list of them");
    unsigned t = type_of(x);
    if (!(types & t)) return 0;
    const cJSON *en = kw(s, "enum"), *co = kw(s, "const"), *e;
    if (co && !cJSON_Compare(co, x, 1)) return 0;
    if (en) {
        int hit = 0;
        cJSON_ArrayForEach(e, en) hit |= cJSON_Compare(e, x, 1);
        if (!hit) return 0;
    }
    int r = 1;
    if (t & JT_NUM) r = check_number(v, s, x);
    else if (t == JT_STR) r = check_string(v, s, x);
    else if (t == JT_ARR) r = check_items(v, s, x);
    else if (t == JT_OBJ) r = check_object(v, s, x);
    if (r <= 0) return r;
    if (kw(s, "allOf") && (r = all_of(v, kw(s, "allOf"), x)) <= 0) return r;
    if (kw(s, "anyOf") && (r = count_of(v, kw(s, "anyOf"), x, 1)) <= 0) return r;
    if (kw(s, "oneOf") && (r = count_of(v, kw(s, "oneOf"), x, 2)) != 1) return r < 0 ? -1 : 0;
    if (kw(s, "not") && (r = check(v, kw(s, "not"), x)) != 0) return r < 0 ? -1 : 0;
    cJSON_ArrayForEach(e, kw(s, "\x01nots")) if ((r = check(v, e, x)) != 0) return r < 0 ? -1 : 0;
    const cJSON *iff = v->cx->draft >= JS_DRAFT7 ? kw(s, "if") : NULL;
    if (iff) {
        int c = check(v, iff, x);
        if (c < 0) return -1;
        const cJSON *branch = kw(s, c ? "then" : "else");
        if (branch) return check(v, branch, x);
    }
    return 1;
}

static int check(vcx *v, const cJSON *s, const cJSON *x) {
    if (++v->depth > JS_MAX_DEPTH) {
        v->depth--;
        return cx_fail(v->cx, "schema", v->ptr, "checking a listed value nests deeper than %d levels", JS_MAX_DEPTH);
    }
    int r = check_body(v, s, x);
    v->depth--;
    return r;
}

int cx_value_ok(js_cx *cx, const cJSON *s, const cJSON *x, const char *ptr) {
    vcx v = {cx, ptr, 0};
    return check(&v, s, x);
}

// The values a schema lists: its enum or const, or those of an allOf part.
static const cJSON *listed(js_cx *cx, const cJSON *s, const char *ptr, int *is_const) {
    const cJSON *l = kw(s, "enum");
    *is_const = 0;
    if (cJSON_IsArray(l)) return l;
    if ((l = kw(s, "const"))) return *is_const = 1, l;
    const cJSON *part;
    cJSON_ArrayForEach(part, kw(s, "allOf")) {
        err_t saved = *cx->err;
        const cJSON *d = cx_deref(cx, part, ptr);
        *cx->err = saved; // a part that does not resolve fails later, where it is compiled
        if (!cJSON_IsObject(d)) continue;
        if (cJSON_IsArray(l = kw(d, "enum"))) return l;
        if ((l = kw(d, "const"))) return *is_const = 1, l;
    }
    return NULL;
}

int32_t cx_listed_values(js_cx *cx, const cJSON *s, const char *ptr) {
    int is_const;
    const cJSON *l = cJSON_IsObject(s) ? listed(cx, s, ptr, &is_const) : NULL;
    if (!l) return -2;
    int n = is_const ? 1 : cJSON_GetArraySize(l), k = 0;
    const cJSON **keep = malloc(((size_t)n + 1) * sizeof *keep);
    if (!keep) return err_set(cx->err, "schema: out of memory"), -1;
    for (const cJSON *x = is_const ? l : l->child; x; x = is_const ? NULL : x->next) {
        int dup = 0;
        for (int i = 0; i < k && !dup; i++) dup = cJSON_Compare(keep[i], x, 1);
        if (dup) continue;
        int r = cx_value_ok(cx, s, x, ptr);
        if (r < 0) return free(keep), -1;
        if (r) keep[k++] = x;
    }
    int32_t node = cx_literals(cx, keep, k, ptr);
    free(keep);
    return node;
}
