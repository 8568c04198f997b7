// gcache: grammars by schema hash, one vocab per tokenizer. See gcache.h.
#include "gcache.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

typedef struct entry {
    uint64_t hash;
    char *text;
    gm_opts o;           // what it was compiled with (part of the key)
    gm_grammar *g;       // the cache's reference
    size_t bytes;
    struct entry *prev, *next; // most recently used first
} entry;

struct gc_cache {
    const tok *t;
    gm_opts o;
    size_t max_bytes;
    pthread_mutex_t mu;     // the table and the stats
    pthread_mutex_t vocab_mu; // the one vocab build
    gm_vocab *vocab;        // NULL until the first gc_get; then set once (under vocab_mu)
    entry *head, *tail;
    gc_stats st;
};

gc_cache *gc_new(const tok *t, const gm_opts *o, size_t max_bytes) {
    gc_cache *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->t = t;
    c->o = *o;
    c->max_bytes = max_bytes ? max_bytes : GC_DEFAULT_BYTES;
    pthread_mutex_init(&c->mu, NULL);
    pthread_mutex_init(&c->vocab_mu, NULL);
    return c;
}

static void entry_free(entry *e) {
    gm_grammar_unref(e->g);
    free(e->text);
    free(e);
}

void gc_free(gc_cache *c) {
    if (!c) return;
    for (entry *e = c->head, *next; e; e = next) {
        next = e->next;
        entry_free(e);
    }
    gm_vocab_free(c->vocab); // after the grammars: they were built over it
    pthread_mutex_destroy(&c->mu);
    pthread_mutex_destroy(&c->vocab_mu);
    free(c);
}

// FNV-1a over the text and the options: the grammar depends on both.
static uint64_t schema_hash(const char *text, const gm_opts *o) {
    uint64_t h = 1469598103934665603ULL;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) h = (h ^ *p) * 1099511628211ULL;
    h = (h ^ (uint64_t)(uint32_t)o->ws_max) * 1099511628211ULL;
    return (h ^ (uint64_t)(uint32_t)o->ws_after) * 1099511628211ULL;
}

// The vocab, built by the first caller; the others wait for it.
static gm_vocab *vocab_get(gc_cache *c, err_t *err) {
    pthread_mutex_lock(&c->vocab_mu);
    if (!c->vocab) c->vocab = gm_vocab_new(c->t, err);
    gm_vocab *v = c->vocab;
    pthread_mutex_unlock(&c->vocab_mu);
    return v;
}

static void unlink_entry(gc_cache *c, entry *e) {
    if (e->prev) e->prev->next = e->next;
    else c->head = e->next;
    if (e->next) e->next->prev = e->prev;
    else c->tail = e->prev;
    e->prev = e->next = NULL;
}

static void push_front(gc_cache *c, entry *e) {
    e->prev = NULL;
    e->next = c->head;
    if (c->head) c->head->prev = e;
    c->head = e;
    if (!c->tail) c->tail = e;
}

// Under mu: the entry for (hash, text, o), moved to the front, or NULL.
static entry *find_locked(gc_cache *c, uint64_t hash, const char *text, const gm_opts *o) {
    for (entry *e = c->head; e; e = e->next)
        if (e->hash == hash && strcmp(e->text, text) == 0 && e->o.ws_max == o->ws_max && e->o.ws_after == o->ws_after) {
            unlink_entry(c, e);
            push_front(c, e);
            return e;
        }
    return NULL;
}

// Under mu: drops least recently used entries past the bound, never the
// newest one (a schema larger than the bound still serves its request).
static void evict_locked(gc_cache *c) {
    while (c->st.bytes > c->max_bytes && c->tail && c->tail != c->head) {
        entry *e = c->tail;
        unlink_entry(c, e);
        c->st.bytes -= e->bytes;
        c->st.entries--;
        c->st.evictions++;
        entry_free(e); // sequences running on it hold their own references
    }
}

// Compiles text outside the lock. NULL + err.
static gm_grammar *compile(gc_cache *c, const char *text, const gm_opts *o, err_t *err) {
    gm_vocab *v = vocab_get(c, err);
    if (!v) return NULL;
    cJSON *schema = cJSON_Parse(text);
    if (!schema) {
        err_set(err, "the schema is not valid JSON");
        return NULL;
    }
    gm_grammar *g = gm_compile_json_schema(v, schema, o, err);
    cJSON_Delete(schema);
    return g;
}

gm_grammar *gc_get(gc_cache *c, const char *text, err_t *err) { return gc_get_opts(c, text, &c->o, err); }

gm_grammar *gc_get_opts(gc_cache *c, const char *text, const gm_opts *o, err_t *err) {
    uint64_t h = schema_hash(text, o);
    pthread_mutex_lock(&c->mu);
    entry *e = find_locked(c, h, text, o);
    if (e) {
        gm_grammar_ref(e->g);
        c->st.hits++;
        pthread_mutex_unlock(&c->mu);
        return e->g;
    }
    pthread_mutex_unlock(&c->mu);

    // Two requests with the same new schema may both compile it; the second
    // finds the first's entry below and keeps that one.
    double t0 = util_now_s();
    gm_grammar *g = compile(c, text, o, err);
    int64_t us = (int64_t)((util_now_s() - t0) * 1e6);
    entry *ne = g ? calloc(1, sizeof *ne) : NULL;
    char *copy = ne ? strdup(text) : NULL;
    pthread_mutex_lock(&c->mu);
    c->st.misses++;
    c->st.compile_us += us;
    if (!g) c->st.compile_errors++;
    if (!g || !ne || !copy) {
        pthread_mutex_unlock(&c->mu);
        free(ne);
        free(copy);
        if (g && !(ne && copy)) err_set(err, "out of memory caching the grammar");
        if (g) gm_grammar_unref(g);
        return NULL;
    }
    if ((e = find_locked(c, h, text, o))) { // someone was first
        gm_grammar_unref(g);
        free(ne);
        free(copy);
        g = e->g;
    } else {
        *ne = (entry){.hash = h, .text = copy, .o = *o, .g = g, .bytes = gm_grammar_bytes(g)};
        push_front(c, ne);
        c->st.bytes += ne->bytes;
        c->st.entries++;
        evict_locked(c);
    }
    gm_grammar_ref(g); // the caller's
    pthread_mutex_unlock(&c->mu);
    return g;
}

void gc_get_stats(gc_cache *c, gc_stats *out) {
    pthread_mutex_lock(&c->mu);
    *out = c->st;
    pthread_mutex_unlock(&c->mu);
    pthread_mutex_lock(&c->vocab_mu);
    if (c->vocab) out->vocab = gm_vocab_cache_stats(c->vocab); // safe while others mask
    pthread_mutex_unlock(&c->vocab_mu);
}
