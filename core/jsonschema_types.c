// jsonschema_types: what is left of a schema once $ref, allOf, anyOf and
// oneOf are gone becomes per-type nodes here: the lexemes (null, boolean,
// integer, number, string), objects and arrays, enum/const as literal DFAs
// and structure, and the `not` forms that narrow a schema exactly.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonschema_int.h"

#define RX_NUMBER "-?(0|[1-9][0-9]*)(\\.[0-9]+)?([eE][+-]?[0-9]+)?"
#define RX_INTEGER "-?(0|[1-9][0-9]*)"

int cx_num(const cJSON *s, const char *key, double *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(s, key);
    if (!v) return 0;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) return -1;
    *out = v->valuedouble;
    return 1;
}

// A non-negative integer member; 0 absent, 1 found, -1 bad.
int cx_count(js_cx *cx, const cJSON *s, const char *key, const char *ptr, int64_t *out) {
    double d;
    int r = cx_num(s, key, &d);
    if (r == 0) return 0;
    if (r < 0 || d < 0 || d != floor(d)) return cx_fail(cx, key, ptr, "expected a non-negative integer");
    *out = d > 9e18 ? INT64_MAX : (int64_t)d;
    return 1;
}

// ---- JSON text of scalars -------------------------------------------------------

// The canonical JSON text of string s, quotes included, as Python's
// json.dumps(ensure_ascii=False) writes it. New string in *out.
int cx_json_string_text(const char *s, char **out) {
    size_t n = strlen(s), k = 0;
    char *o = malloc(6 * n + 3);
    if (!o) return -1;
    o[k++] = '"';
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        const char *esc = NULL;
        switch (*p) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        }
        if (esc) {
            memcpy(o + k, esc, 2);
            k += 2;
        } else if (*p < 0x20) {
            k += (size_t)sprintf(o + k, "\\u%04x", *p);
        } else {
            o[k++] = (char)*p;
        }
    }
    o[k++] = '"';
    o[k] = 0;
    *out = o;
    return 0;
}

// Appends regex source as it is.
static int lit_append_raw(char **buf, size_t *len, size_t *cap, const char *src) {
    size_t n = strlen(src);
    if (*len + n + 1 > *cap) {
        size_t c = (*len + n + 1) * 2;
        char *b = realloc(*buf, c);
        if (!b) return -1;
        *buf = b;
        *cap = c;
    }
    memcpy(*buf + *len, src, n + 1);
    *len += n;
    return 0;
}

// Appends text as an RX_BYTES regex matching exactly its bytes.
static int lit_append(char **buf, size_t *len, size_t *cap, const char *text) {
    size_t need = *len + 4 * strlen(text) + 2;
    if (need > *cap) {
        size_t c = need * 2;
        char *b = realloc(*buf, c);
        if (!b) return -1;
        *buf = b;
        *cap = c;
    }
    if (*len) (*buf)[(*len)++] = '|';
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        if ((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z'))
            (*buf)[(*len)++] = (char)*p;
        else
            *len += (size_t)sprintf(*buf + *len, "\\x%02x", *p);
    }
    (*buf)[*len] = 0;
    return 0;
}

// ---- refused keywords -------------------------------------------------------------

static int nonempty(const cJSON *v) {
    return v && !(cJSON_IsObject(v) && !v->child) && !(cJSON_IsArray(v) && !v->child);
}

// The validation keywords this engine cannot enforce: an error naming the
// first one present (keywords a draft does not know are ignored, as that
// draft's validators ignore them).
static int check_refused(js_cx *cx, const cJSON *s, const char *ptr) {
    static const struct {
        const char *kw;
        int since;
        const char *why;
    } tab[] = {
        {"contains", JS_DRAFT6, "not supported (needs searching the items)"},
        {"dependencies", JS_DRAFT4, "not supported (conditional on keys)"},
        {"dependentRequired", JS_DRAFT2019, "not supported (conditional on keys)"},
        {"dependentSchemas", JS_DRAFT2019, "not supported (conditional on keys)"},
        {"unevaluatedProperties", JS_DRAFT2019, "not supported"},
        {"unevaluatedItems", JS_DRAFT2019, "not supported"},
        {"$recursiveRef", JS_DRAFT2019, "not supported (dynamic scope)"},
        {"$dynamicRef", JS_DRAFT2020, "not supported (dynamic scope)"},
        {"extends", 0, "draft-03 keyword not supported"},
        {"disallow", 0, "draft-03 keyword not supported"},
        {"divisibleBy", 0, "draft-03 keyword not supported"},
    };
    for (size_t i = 0; i < sizeof tab / sizeof *tab; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(s, tab[i].kw);
        if (v && cx->draft >= tab[i].since && nonempty(v) && !cJSON_IsTrue(v))
            return cx_fail(cx, tab[i].kw, ptr, "%s", tab[i].why);
    }
    const cJSON *iff = cJSON_GetObjectItemCaseSensitive(s, "if");
    if (iff && cx->draft >= JS_DRAFT7 &&
        (cJSON_GetObjectItemCaseSensitive(s, "then") || cJSON_GetObjectItemCaseSensitive(s, "else")))
        return cx_fail(cx, "if", ptr, "not supported (conditional schema)");
    const cJSON *req = cJSON_GetObjectItemCaseSensitive(s, "required");
    if (req && !cJSON_IsArray(req)) return cx_fail(cx, "required", ptr, "expected an array of names");
    return 0;
}

// ---- lexemes ------------------------------------------------------------------------

static int32_t lexeme_node(js_cx *cx, js_lex lex, int32_t dfa) {
    int32_t i = cx_new_node(cx, JS_LEXEME);
    if (i < 0) return -1;
    cx->s->nodes[i].lex = lex;
    cx->s->nodes[i].dfa = dfa;
    return i;
}

// Intersects *acc with DFA d (-2: empty). 0, or -1 error, 1 empty.
static int dfa_narrow(js_cx *cx, int32_t *acc, int32_t d, const char *kw, const char *ptr) {
    if (d == -2) return 1;
    if (d < 0) return -1;
    if (*acc >= 0) d = cx_dfa_and(cx, *acc, d, kw, ptr);
    if (d == -2) return 1;
    if (d < 0) return -1;
    *acc = d;
    return 0;
}

// The formats validators check (JSON Schema's list): one this engine has
// no DFA for is refused; any other name is an annotation and ignored, as
// validators ignore unknown formats.
static int standard_format(const char *f) {
    static const char *const std[] = {
        "date-time", "date", "time", "duration", "email", "idn-email", "hostname", "idn-hostname", "ipv4", "ipv6",
        "uri", "uri-reference", "iri", "iri-reference", "uuid", "uri-template", "json-pointer",
        "relative-json-pointer", "regex",
    };
    for (size_t i = 0; i < sizeof std / sizeof *std; i++)
        if (!strcmp(f, std[i])) return 1;
    return 0;
}

// The DFA of a string schema's pattern(s) and format (-1 error, -2 empty),
// or the any-string DFA.
int32_t cx_string_dfa(js_cx *cx, const cJSON *s, const char *ptr) {
    int32_t acc = -1;
    int r = 0;
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(s, "pattern");
    if (p && !cJSON_IsString(p)) return cx_fail(cx, "pattern", ptr, "expected a string"), -1;
    if (p)
        r = dfa_narrow(cx, &acc, cx_dfa(cx, p->valuestring, RX_JSON_STRING | RX_SEARCH, "pattern", ptr), "pattern",
                       ptr);
    const cJSON *more = cJSON_GetObjectItemCaseSensitive(s, "\x01patterns"); // from allOf merges
    const cJSON *m;
    cJSON_ArrayForEach(m, more) {
        if (r) break;
        r = dfa_narrow(cx, &acc, cx_dfa(cx, m->valuestring, RX_JSON_STRING | RX_SEARCH, "pattern", ptr), "pattern",
                       ptr);
    }
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(s, "format");
    const char *fsrc = cJSON_IsString(f) ? rx_format(f->valuestring) : NULL;
    if (!fsrc && cJSON_IsString(f) && standard_format(f->valuestring))
        return cx_fail(cx, "format", ptr, "'%s' is not supported", f->valuestring), -1;
    if (!r && fsrc) r = dfa_narrow(cx, &acc, cx_dfa(cx, fsrc, RX_JSON_STRING, "format", ptr), "format", ptr);
    if (r) return r > 0 ? -2 : -1;
    if (acc < 0) acc = cx_dfa(cx, "[\\s\\S]*", RX_JSON_STRING, "type", ptr);
    return acc;
}

// A pattern or format with a length bound: the bound joins the DFA where
// the product stays small, so no prefix the DFA takes runs out of room
// before the pattern can finish (the engine's code-point counter alone
// would let "^\d+\.\d+$" under maxLength 4 write four digits). A
// larger product keeps the counter alone (such a dead end stays possible).
// -2: no string fits.
#define LEN_DFA_MAX 512
static int32_t length_narrow(js_cx *cx, const cJSON *s, int32_t d, int64_t lo, int64_t hi, const char *ptr) {
    if ((lo == 0 && hi < 0) || hi > LEN_DFA_MAX || lo > LEN_DFA_MAX) return d;
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(s, "format");
    bool shaped = cJSON_GetObjectItemCaseSensitive(s, "pattern") || cJSON_GetObjectItemCaseSensitive(s, "\x01patterns") ||
                  (cJSON_IsString(f) && rx_format(f->valuestring));
    if (!shaped) return d; // any string: the counter is exact
    char src[64];
    if (hi >= 0) snprintf(src, sizeof src, "[\\s\\S]{%lld,%lld}", (long long)lo, (long long)hi);
    else snprintf(src, sizeof src, "[\\s\\S]{%lld,}", (long long)lo);
    int32_t len = cx_dfa(cx, src, RX_JSON_STRING, "maxLength", ptr);
    if (len < 0) return len;
    int32_t r = cx_dfa_and_try(cx, d, len);
    return r == -3 ? d : r;
}

static int32_t string_node(js_cx *cx, const cJSON *s, const char *ptr) {
    int64_t lo = 0, hi = -1;
    if (cx_count(cx, s, "minLength", ptr, &lo) < 0 || cx_count(cx, s, "maxLength", ptr, &hi) < 0) return -1;
    if (hi >= 0 && lo > hi) return cx_never(cx);
    int32_t d = cx_string_dfa(cx, s, ptr);
    if (d >= 0) d = length_narrow(cx, s, d, lo, hi, ptr);
    if (d == -2) return cx_never(cx);
    if (d < 0) return -1;
    int32_t i = lexeme_node(cx, JS_LEX_STRING, d);
    if (i < 0) return -1;
    cx->s->nodes[i].min_len = lo;
    cx->s->nodes[i].max_len = hi;
    return i;
}

typedef struct num_bounds {
    bool has_min, has_max, excl_min, excl_max;
    double min, max, multiple_of;
} num_bounds;

// minimum / maximum / exclusive* in both forms (draft 4 booleans, draft 6+
// numbers), the tighter bound winning.
static int bounds_of(js_cx *cx, const cJSON *s, const char *ptr, num_bounds *b) {
    memset(b, 0, sizeof *b);
    double v;
    int r;
    if ((r = cx_num(s, "minimum", &v)) < 0) return cx_fail(cx, "minimum", ptr, "expected a number");
    if (r) b->has_min = true, b->min = v;
    if ((r = cx_num(s, "maximum", &v)) < 0) return cx_fail(cx, "maximum", ptr, "expected a number");
    if (r) b->has_max = true, b->max = v;
    const cJSON *em = cJSON_GetObjectItemCaseSensitive(s, "exclusiveMinimum");
    const cJSON *eM = cJSON_GetObjectItemCaseSensitive(s, "exclusiveMaximum");
    if (cJSON_IsTrue(em) && b->has_min) b->excl_min = true;
    if (cJSON_IsTrue(eM) && b->has_max) b->excl_max = true;
    if (cJSON_IsNumber(em) && (!b->has_min || em->valuedouble >= b->min))
        b->has_min = b->excl_min = true, b->min = em->valuedouble;
    if (cJSON_IsNumber(eM) && (!b->has_max || eM->valuedouble <= b->max))
        b->has_max = b->excl_max = true, b->max = eM->valuedouble;
    if ((r = cx_num(s, "multipleOf", &v)) < 0 || (r && v <= 0))
        return cx_fail(cx, "multipleOf", ptr, "expected a number above 0");
    if (r) b->multiple_of = v;
    return 0;
}

static void set_bounds(js_node *n, const num_bounds *b) {
    n->has_min = b->has_min, n->has_max = b->has_max;
    n->excl_min = b->excl_min, n->excl_max = b->excl_max;
    n->minimum = b->min, n->maximum = b->max;
    n->multiple_of = b->multiple_of;
}

static int32_t whole_node(js_cx *cx, const cJSON *s, const char *ptr, bool zero_fraction);

static int32_t number_node(js_cx *cx, const cJSON *s, const char *ptr) {
    num_bounds b;
    if (bounds_of(cx, s, ptr, &b) < 0) return -1;
    if (b.has_min && b.has_max && (b.min > b.max || (b.min == b.max && (b.excl_min || b.excl_max))))
        return cx_never(cx);
    // A whole multipleOf allows whole numbers only: the integer DFA with an
    // optional zero fraction (exact bounds, no fraction a sampling model
    // could start and never finish; "1e3" is refused, a possible false reject).
    if (b.multiple_of >= 1 && b.multiple_of == floor(b.multiple_of)) return whole_node(cx, s, ptr, true);
    int32_t i = cx_lexeme(cx, JS_LEX_NUMBER, RX_NUMBER, RX_BYTES, ptr);
    if (i >= 0) set_bounds(&cx->s->nodes[i], &b);
    return i;
}

// Integers: the bounds become an exact DFA (rx_int_range) when they fit
// int64; otherwise they stay node fields on the integer DFA. zero_fraction:
// "12.0", "12.00" too (type number with a whole multipleOf).
static int32_t whole_node(js_cx *cx, const cJSON *s, const char *ptr, bool zero_fraction) {
    num_bounds b;
    if (bounds_of(cx, s, ptr, &b) < 0) return -1;
    // Past 2^53 a double stands for a range of integers: the bound moves one
    // double inward, inside the true bound, for the exact range DFA. (Number
    // bounds stay: the engine refuses an integer text that equals a bound
    // past 2^53 as a double.)
    if (b.has_min && fabs(b.min) >= 9007199254740992.0) b.min = nextafter(b.min, INFINITY);
    if (b.has_max && fabs(b.max) >= 9007199254740992.0) b.max = nextafter(b.max, -INFINITY);
    double lo = b.has_min ? (b.excl_min ? floor(b.min) + 1 : ceil(b.min)) : 0;
    double hi = b.has_max ? (b.excl_max ? ceil(b.max) - 1 : floor(b.max)) : 0;
    if (b.has_min && b.has_max && lo > hi) return cx_never(cx);
    char buf[512], src[560];
    const double top = 9223372036854774784.0; // the largest double below 2^63
    if (b.has_max && hi > top) hi = top;      // int64 range: larger texts are refused
    if (b.has_min && lo < -top) lo = -top;
    int fits = fabs(lo) <= top && fabs(hi) <= top;
    if (fits && (b.has_min || b.has_max) &&
        rx_int_range(b.has_min, (int64_t)lo, b.has_max, (int64_t)hi, buf, sizeof buf) == 0) {
        b.has_min = b.has_max = false;
    } else {
        snprintf(buf, sizeof buf, "%s", RX_INTEGER);
    }
    snprintf(src, sizeof src, "(%s)%s", buf, zero_fraction ? "(\\.0+)?" : "");
    int32_t i = cx_lexeme(cx, JS_LEX_NUMBER, src, RX_BYTES, ptr);
    if (i >= 0) set_bounds(&cx->s->nodes[i], &b);
    return i;
}

static int32_t integer_node(js_cx *cx, const cJSON *s, const char *ptr) {
    return whole_node(cx, s, ptr, false);
}

// ---- enum / const ---------------------------------------------------------------------

int32_t cx_object(js_cx *cx, const cJSON *s, const char *ptr);
int32_t cx_array(js_cx *cx, const cJSON *s, const char *ptr);

// The node accepting exactly the JSON value v (numbers by value).
static int32_t const_node(js_cx *cx, const cJSON *v, const char *ptr);

static int32_t const_object(js_cx *cx, const cJSON *v, const char *ptr) {
    int n = cJSON_GetArraySize(v);
    const char **names = calloc((size_t)n + 1, sizeof *names);
    js_prop *props = calloc((size_t)n + 1, sizeof *props);
    int32_t i = -1, k = 0;
    if (!names || !props) {
        err_set(cx->err, "schema: out of memory");
        goto fail;
    }
    const cJSON *m;
    cJSON_ArrayForEach(m, v) {
        for (int j = 0; j < k; j++)
            if (!strcmp(names[j], m->string)) {
                cx_fail(cx, "const", ptr, "duplicate key '%s' in a value", m->string);
                goto fail;
            }
        char p[1024];
        cx_ptr_join(p, sizeof p, ptr, m->string);
        names[k] = m->string;
        props[k].required = true;
        props[k].name = strdup(m->string);
        if (!props[k].name || (props[k].node = const_node(cx, m, p)) < 0) {
            k++;
            goto fail;
        }
        k++;
    }
    int32_t kdi;
    if (k == 0) {
        kdi = cx_any_keys(cx); // {}: max_props 0 below
    } else {
        err_t e = {{0}};
        rx_dfa *kd = rx_keys(names, k, NULL, 0, 0, &e);
        if (!kd) {
            cx_fail(cx, "const", ptr, "keys: %s", e.msg);
            goto fail;
        }
        char key[32];
        snprintf(key, sizeof key, "keys#%d", cx->s->n_dfas);
        char *kk = strdup(key);
        kdi = kk ? cx_dfa_add(cx, kd, kk) : (rx_free(kd), -1);
    }
    if (kdi < 0 || (i = cx_new_node(cx, JS_OBJECT)) < 0) goto fail;
    js_node *o = &cx->s->nodes[i];
    o->props = props;
    o->n_props = k;
    o->key_dfa = kdi;
    o->min_props = o->max_props = k;
    free(names);
    return i;
fail:
    for (int j = 0; j < k; j++) free(props[j].name);
    free(props);
    free(names);
    return -1;
}

static int32_t const_array(js_cx *cx, const cJSON *v, const char *ptr) {
    int n = cJSON_GetArraySize(v);
    int32_t *pre = malloc(((size_t)n + 1) * sizeof *pre);
    if (!pre) return err_set(cx->err, "schema: out of memory"), -1;
    int k = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, v) {
        char p[1024];
        snprintf(p, sizeof p, "%s/%d", ptr, k);
        if ((pre[k++] = const_node(cx, m, p)) < 0) return free(pre), -1;
    }
    int32_t i = cx_new_node(cx, JS_ARRAY);
    if (i < 0) return free(pre), -1;
    js_node *a = &cx->s->nodes[i];
    a->prefix = pre;
    a->n_prefix = n;
    a->items = -1;
    a->min_items = a->max_items = n;
    return i;
}

// Appends to re (RX_BYTES) the number texts that spell v: its shortest
// round-trip text as Python's json.dumps writes it, with any number of
// trailing fraction zeros ("2", "2.0", "2.50"; -0 is 0). Other spellings
// (2e0, 0.25e1) are refused: a possible false reject, never a false accept,
// and every prefix the DFA takes has a completion in the enum (a number DFA
// with the values checked at its end would let a sampling model write
// digits no value starts with).
static int number_text_add(char **re, size_t *len, size_t *cap, double v) {
    char t[40], r[128];
    if (v == 0) v = 0; // -0
    if (v == floor(v) && fabs(v) < 1e15) {
        snprintf(t, sizeof t, "%.0f", v);
    } else {
        for (int prec = 1; prec <= 17; prec++) {
            snprintf(t, sizeof t, "%.*g", prec, v);
            if (strtod(t, NULL) == v) break;
        }
    }
    size_t k = 0;
    bool frac = false, expo = false;
    for (const char *c = t; *c && k + 4 < sizeof r; c++) {
        if (*c == '.') frac = true;
        if (*c == 'e') expo = true;
        if (*c == '.' || *c == '+' || *c == '-') r[k++] = '\\';
        r[k++] = *c;
    }
    r[k] = 0;
    const char *tail = expo ? "" : frac ? "0*" : "(\\.0+)?";
    if (*len && lit_append_raw(re, len, cap, "|")) return -1;
    if (lit_append_raw(re, len, cap, "(?:") || lit_append_raw(re, len, cap, r) || lit_append_raw(re, len, cap, tail))
        return -1;
    return lit_append_raw(re, len, cap, ")");
}

static int32_t number_enum_node(js_cx *cx, const double *vals, int n, const char *ptr) {
    char *re = NULL;
    size_t len = 0, cap = 0;
    for (int k = 0; k < n; k++)
        if (number_text_add(&re, &len, &cap, vals[k])) return free(re), err_set(cx->err, "schema: out of memory"), -1;
    int32_t i = re ? cx_lexeme(cx, JS_LEX_NUMBER, re, RX_BYTES, ptr) : cx_never(cx);
    free(re);
    if (i < 0 || cx->s->nodes[i].kind != JS_LEXEME) return i;
    double *e = malloc((size_t)n * sizeof *e);
    if (!e) return err_set(cx->err, "schema: out of memory"), -1;
    memcpy(e, vals, (size_t)n * sizeof *e);
    cx->s->nodes[i].num_enum = e;
    cx->s->nodes[i].n_num_enum = n;
    return i;
}

static int32_t literal_node(js_cx *cx, const char *re, const char *ptr) {
    int32_t d = cx_dfa(cx, re, RX_BYTES, "enum", ptr);
    if (d < 0) return d == -2 ? cx_never(cx) : -1;
    return lexeme_node(cx, JS_LEX_LITERAL, d);
}

// Appends scalar v's text to the literal regex; 0, or -1 out of memory.
static int literal_add(char **re, size_t *len, size_t *cap, const cJSON *v) {
    if (cJSON_IsNull(v)) return lit_append(re, len, cap, "null");
    if (cJSON_IsBool(v)) return lit_append(re, len, cap, cJSON_IsTrue(v) ? "true" : "false");
    char *text;
    if (cx_json_string_text(v->valuestring, &text)) return -1;
    int r = lit_append(re, len, cap, text);
    free(text);
    return r;
}

static int32_t const_node(js_cx *cx, const cJSON *v, const char *ptr) {
    if (cJSON_IsObject(v)) return const_object(cx, v, ptr);
    if (cJSON_IsArray(v)) return const_array(cx, v, ptr);
    if (cJSON_IsNumber(v)) return number_enum_node(cx, &v->valuedouble, 1, ptr);
    char *re = NULL;
    size_t len = 0, cap = 0;
    if (literal_add(&re, &len, &cap, v)) return free(re), err_set(cx->err, "schema: out of memory"), -1;
    int32_t i = literal_node(cx, re, ptr);
    free(re);
    return i;
}

int32_t cx_literals(js_cx *cx, const cJSON *const *vals, int n, const char *ptr) {
    int32_t *alts = malloc(((size_t)n + 2) * sizeof *alts);
    double *nums = malloc(((size_t)n + 1) * sizeof *nums);
    char *re = NULL;
    size_t len = 0, cap = 0;
    int n_alts = 0, n_nums = 0;
    int32_t r = -1;
    if (!alts || !nums) {
        err_set(cx->err, "schema: out of memory");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        const cJSON *v = vals[i];
        if (cJSON_IsNumber(v) && fabs(v->valuedouble) >= 9007199254740992.0) {
            cx_fail(cx, "enum", ptr, "the number %.17g is past 2^53 and cannot be compared exactly", v->valuedouble);
            goto done;
        }
        if (cJSON_IsNumber(v)) {
            nums[n_nums++] = v->valuedouble;
        } else if (cJSON_IsObject(v) || cJSON_IsArray(v)) {
            if ((alts[n_alts++] = const_node(cx, v, ptr)) < 0) goto done;
        } else if (literal_add(&re, &len, &cap, v)) {
            err_set(cx->err, "schema: out of memory");
            goto done;
        }
    }
    if (len && (alts[n_alts++] = literal_node(cx, re, ptr)) < 0) goto done;
    if (n_nums && (alts[n_alts++] = number_enum_node(cx, nums, n_nums, ptr)) < 0) goto done;
    r = cx_anyof_node(cx, alts, n_alts);
done:
    free(alts);
    free(nums);
    free(re);
    return r;
}

// ---- dispatch by type -------------------------------------------------------------------

int32_t cx_typed(js_cx *cx, const cJSON *s, const char *ptr) {
    if (check_refused(cx, s, ptr) < 0) return -1;
    unsigned types;
    if (cx_types_of(s, &types) < 0) return cx_fail(cx, "type", ptr, "expected a type name or a list of them"), -1;
    if (cJSON_GetObjectItemCaseSensitive(s, "enum") || cJSON_GetObjectItemCaseSensitive(s, "const"))
        return cx_listed_values(cx, s, ptr);
    int32_t alts[7];
    int n = 0;
    if ((types & JT_NULL) && (alts[n++] = literal_node(cx, "null", ptr)) < 0) return -1;
    if ((types & JT_BOOL) && (alts[n++] = literal_node(cx, "true|false", ptr)) < 0) return -1;
    if (types & JT_NUM) {
        if ((alts[n++] = number_node(cx, s, ptr)) < 0) return -1;
    } else if ((types & JT_INT) && (alts[n++] = integer_node(cx, s, ptr)) < 0) {
        return -1;
    }
    if ((types & JT_STR) && (alts[n++] = string_node(cx, s, ptr)) < 0) return -1;
    if ((types & JT_OBJ) && (alts[n++] = cx_object(cx, s, ptr)) < 0) return -1;
    if ((types & JT_ARR) && (alts[n++] = cx_array(cx, s, ptr)) < 0) return -1;
    return cx_anyof_node(cx, alts, n);
}
