// jsonschema_int: the schema compiler's private state, shared by
// core/jsonschema.c (dispatch, nodes, DFAs, anyOf/oneOf),
// core/jsonschema_ref.c ($ref, $id, anchors, drafts),
// core/jsonschema_merge.c (allOf merged into one schema, dependencies, not,
// oneOf disjointness), core/jsonschema_types.c (lexemes, enum/const nodes),
// core/jsonschema_object.c (objects, arrays) and core/jsonschema_value.c
// (a schema checked on one known value). Not a public contract.
//
// How a schema is compiled: cx_schema normalizes one schema object at a
// time: $ref is resolved, a schema listing its values (enum/const) keeps
// those the whole schema accepts, allOf becomes one merged schema (a new
// cJSON object the compiler owns, whose members borrow the parts' values),
// dependencies become anyOf, anyOf and oneOf distribute the rest of the
// schema into each alternative, `not` becomes a narrower schema; what is
// left (type and the per-type keywords) becomes per-type nodes. Private
// keys a merge writes: "\x01patterns" (more patterns), "\x01nots" (more
// nots). Merging works on JSON, not on nodes, so
// the node graph is written once and never inspected while it grows.
#ifndef TESSERA_JSONSCHEMA_INT_H
#define TESSERA_JSONSCHEMA_INT_H

#include <stddef.h>
#include <stdint.h>

#include "jsonschema.h"

enum { JS_DRAFT4 = 4, JS_DRAFT6 = 6, JS_DRAFT7 = 7, JS_DRAFT2019 = 2019, JS_DRAFT2020 = 2020 };

// Type bits.
enum {
    JT_NULL = 1,
    JT_BOOL = 2,
    JT_INT = 4,
    JT_NUM = 8, // number includes integer
    JT_STR = 16,
    JT_OBJ = 32,
    JT_ARR = 64,
    JT_ALL = 127,
};

#define JS_MAX_NODES 200000
#define JS_MAX_DEPTH 160

typedef struct js_memo {
    const cJSON *key; // a document schema object (a $ref target)
    int32_t node;
} js_memo;

typedef struct js_cx {
    js_schema *s;
    int32_t cap_nodes;
    int32_t cap_dfas;
    char **dfa_src; // [n_dfas] dedupe keys
    uint8_t *shared; // [cap_nodes] 1: the node may be referenced elsewhere

    const cJSON *doc;
    int draft;
    err_t *err;
    int depth;

    js_memo *memo; // open addressing, cap_memo slots (power of two)
    int32_t cap_memo, n_memo;

    // Base URI resources: every object with an $id (resolved against its
    // parent's base) and every anchor, found in one walk of the document.
    struct js_res {
        char *uri; // absolute, no fragment (anchors: "uri#name")
        const cJSON *node;
    } *res;
    int32_t n_res, cap_res;

    cJSON **owned; // merged schemas built while compiling, freed at the end
    int32_t n_owned, cap_owned;

    // The resource the schema being compiled sits in: "#..." refs resolve
    // against it, relative refs against its base URI.
    const cJSON *cur_root;
    const char *cur_base;

    const cJSON *fresh; // the ref target cx_schema compiles next (skip its memo)
    int32_t any_node; // the node accepting every JSON value, -1 until built
} js_cx;

// cJSON's reference adders take a mutable item though they never change it.
static inline cJSON *cx_mut(const cJSON *v) {
    return (cJSON *)(uintptr_t)v;
}

// jsonschema.c
int32_t cx_schema(js_cx *cx, const cJSON *s, const char *ptr);
int32_t cx_new_node(js_cx *cx, js_kind kind);
int32_t cx_dfa(js_cx *cx, const char *src, unsigned flags, const char *kw, const char *ptr);
int32_t cx_any(js_cx *cx);
// The key DFA accepting every key (objects with no named key use it with
// max_props 0 and additional -1: rx_keys refuses an empty key language).
int32_t cx_any_keys(js_cx *cx);
int32_t cx_never(js_cx *cx);
int cx_fail(js_cx *cx, const char *kw, const char *ptr, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
cJSON *cx_own(js_cx *cx, cJSON *o);
void cx_ptr_join(char *out, size_t cap, const char *ptr, const char *key);
int cx_is_annotation(const char *key);
int cx_types_of(const cJSON *s, unsigned *types);
int cx_json_string_text(const char *s, char **out);
// Adds d under dedupe key `key` (takes both).
int32_t cx_dfa_add(js_cx *cx, rx_dfa *d, char *key);
// The intersection of DFAs a and b: -2 empty, -3 too large (no error: the
// caller keeps a), -1 out of memory.
int32_t cx_dfa_and_try(js_cx *cx, int32_t a, int32_t b);
int32_t cx_anyof_node(js_cx *cx, const int32_t *alts, int32_t n);
int32_t cx_dfa_and(js_cx *cx, int32_t a, int32_t b, const char *kw, const char *ptr);
int32_t cx_lexeme(js_cx *cx, js_lex lex, const char *src, unsigned flags, const char *ptr);
cJSON *cx_without(js_cx *cx, const cJSON *s, const char *drop);
int cx_has_other(const cJSON *s, const char *const *skip, int n_skip);

// jsonschema_types.c
int32_t cx_typed(js_cx *cx, const cJSON *s, const char *ptr);
int32_t cx_not(js_cx *cx, const cJSON *s, const char *ptr);
// The DFA a string schema's pattern(s) and format make (-2: empty).
int32_t cx_string_dfa(js_cx *cx, const cJSON *s, const char *ptr);
int32_t cx_object(js_cx *cx, const cJSON *s, const char *ptr);
int32_t cx_array(js_cx *cx, const cJSON *s, const char *ptr);
// The node accepting exactly the values vals[0..n) (numbers by value).
int32_t cx_literals(js_cx *cx, const cJSON *const *vals, int n, const char *ptr);
// A number member as a double; 0 absent, 1 found, -1 not a number.
int cx_num(const cJSON *s, const char *key, double *out);
// A count keyword (minLength, maxItems, minProperties, ...): 0 absent,
// 1 with *out (values past int64 clamp to INT64_MAX), or -1 failed (not
// a non-negative integer: cx_fail names it).
int cx_count(js_cx *cx, const cJSON *s, const char *key, const char *ptr, int64_t *out);

// jsonschema_ref.c
int cx_draft_of(const cJSON *doc);
int cx_index_ids(js_cx *cx);
// The schema a $ref names (borrowed from the document), NULL + error.
const cJSON *cx_resolve(js_cx *cx, const char *ref, const char *ptr);
int32_t cx_ref(js_cx *cx, const cJSON *s, const char *ptr);
// The node for document schema t (memoized: a cycle through t becomes a
// cycle in the graph).
int32_t cx_ref_target(js_cx *cx, const cJSON *t, const char *ptr);
// When s carries an $id, makes it the current resource (the caller saves
// and restores cur_root / cur_base).
void cx_enter_resource(js_cx *cx, const cJSON *s);
// The node already compiled for document schema s, or -1.
int32_t cx_memo_get(js_cx *cx, const cJSON *s);
void cx_memo_free(js_cx *cx);

// jsonschema_value.c
// 1 if schema s accepts the known value x, 0 if not, -1 with an error.
int cx_value_ok(js_cx *cx, const cJSON *s, const cJSON *x, const char *ptr);
// When s lists its values (enum / const, in s or an allOf part): the node
// for those s accepts; -2 when it lists none; -1 with an error.
int32_t cx_listed_values(js_cx *cx, const cJSON *s, const char *ptr);

// jsonschema_merge.c
// s with its dependencies keywords rewritten as anyOf (see the .c).
const cJSON *cx_dependencies(js_cx *cx, const cJSON *s, const char *ptr);
// The merge of a and b (JSON schemas, $ref resolved at their top), owned by
// cx; NULL with an error naming the keyword that could not be merged.
const cJSON *cx_merge(js_cx *cx, const cJSON *a, const cJSON *b, const char *ptr);
// The schema with $ref at its top resolved (siblings merged in 2019-09+).
const cJSON *cx_deref(js_cx *cx, const cJSON *s, const char *ptr);
// oneOf alternatives made pairwise disjoint where a proof fails, by
// trimming alternatives that require keys (see the .c): 1 done, 0 the pair
// *x, *y may overlap, -1 error.
int cx_make_exclusive(js_cx *cx, const cJSON **alt, int n, const char *ptr, int *x, int *y);
// 0 proven disjoint, 1 may overlap.
int cx_may_overlap(js_cx *cx, const cJSON *a, const cJSON *b);

#endif
