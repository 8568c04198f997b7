// jsonschema: a JSON Schema compiled into a graph of value nodes, the
// grammar the token-mask engine (core/grammar.c) runs. Private to core/
// grammar*.c and core/jsonschema*.c; callers use core/grammar.h.
//
// What a node means: the set of JSON texts it accepts. The compiler resolves
// $ref (local: "#", "#/json/pointer", "#name" anchors, $id-relative within
// the document; recursive refs become cycles in the graph), merges allOf,
// splits type lists into anyOf, turns const/enum into structure, and checks
// every keyword it meets: a validation keyword it cannot enforce exactly is
// a compile error naming the keyword and its JSON pointer
// ("unsupported keyword 'uniqueItems' at /properties/tags"). Annotations
// (title, description, default, examples, $comment, readOnly, x-*, unknown
// non-validation keywords) are ignored, as validators ignore them.
//
// Lexemes (strings, keys, numbers, literals) are byte DFAs (core/regex.h);
// the engine checks what a DFA cannot say (string length in code points,
// numeric bounds, seen keys, item counts) when it counts or when the lexeme
// or container ends.
#ifndef TESSERA_JSONSCHEMA_H
#define TESSERA_JSONSCHEMA_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "regex.h"

typedef enum {
    JS_NEVER,  // accepts nothing (false, or an empty intersection)
    JS_ANYOF,  // any of alts (oneOf only when the compiler proved the alts disjoint)
    JS_LEXEME, // one lexeme: string, number, integer, true, false, null, enum/const scalars
    JS_OBJECT,
    JS_ARRAY,
} js_kind;

typedef enum {
    JS_LEX_STRING,  // DFA over the quoted JSON text; min_len / max_len in code points
    JS_LEX_NUMBER,  // DFA over the number text; numeric checks below at its end
    JS_LEX_LITERAL, // DFA alone decides (true, false, null, enum of strings, ...)
} js_lex;

typedef struct js_prop {
    char *name;      // decoded key (UTF-8, NUL-terminated; no NUL inside)
    int32_t node;    // value node
    bool required;
} js_prop;

typedef struct js_node {
    js_kind kind;

    // JS_ANYOF
    int32_t *alts;
    int32_t n_alts;

    // JS_LEXEME
    js_lex lex;
    int32_t dfa;              // index into js_schema.dfas
    int64_t min_len, max_len; // JS_LEX_STRING: code points; max_len -1 unbounded
    // JS_LEX_NUMBER: checked on the value the number text parses to
    bool has_min, has_max, excl_min, excl_max;
    double minimum, maximum;
    double multiple_of; // 0: none
    double *num_enum;   // n_num_enum allowed values (enum/const numbers); NULL: any
    int32_t n_num_enum;

    // JS_OBJECT. Keys are matched by key_dfa (rx_keys over the property
    // names, the patternProperties patterns and, when additional >= 0 or
    // propertyNames allows, any other key). A key that names property i
    // takes props[i].node and also every pattern node it matches (the value
    // must satisfy all: the compiler merges them into the property node
    // where it can, else errors); a key matching only patterns takes each
    // matched pattern node (more than one: the compiler stored their merge
    // in pattern_merge or refused the schema); any other key takes
    // additional (-1: such a key is not allowed). Duplicate keys naming a
    // property are refused.
    js_prop *props;
    int32_t n_props;
    int32_t key_dfa;
    int32_t *pattern_nodes; // [n_patterns], same order as key_pats bits
    int32_t n_patterns;
    int32_t additional;     // node, or -1
    int64_t min_props, max_props; // max -1 unbounded

    // JS_ARRAY: item i takes prefix[i] while i < n_prefix, then items (-1:
    // no more items allowed).
    int32_t *prefix;
    int32_t n_prefix;
    int32_t items;
    int64_t min_items, max_items; // max -1 unbounded
} js_node;

typedef struct js_schema {
    js_node *nodes;
    int32_t n_nodes;
    int32_t root;
    rx_dfa **dfas; // owned
    int32_t n_dfas;
} js_schema;

// Compiles a schema (true/false or an object, any draft 4 to 2020-12) into
// a new node graph; NULL with "KEYWORD at POINTER: reason" in err.
// Object keys may come in any order (JSON's meaning), each at most once.
js_schema *js_compile(const cJSON *schema, err_t *err);
void js_free(js_schema *s);

#endif
