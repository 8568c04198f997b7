// grammar: the vocab's token trie, grammars over compiled schemas, and the
// matcher's public calls. The byte matcher is grammar_match.c; masks and
// their caches are grammar_mask.c.
#include <stdlib.h>
#include <string.h>

#include "grammar_int.h"

// ---- vocab ----------------------------------------------------------------

static _Thread_local const gm_vocab *sort_vocab; // qsort has no context argument

static int cmp_tokens(const void *pa, const void *pb) {
    int32_t a = *(const int32_t *)pa, b = *(const int32_t *)pb;
    int32_t la = sort_vocab->tok_len[a], lb = sort_vocab->tok_len[b];
    int c = memcmp(sort_vocab->tok_bytes[a], sort_vocab->tok_bytes[b], (size_t)(la < lb ? la : lb));
    if (c) return c;
    if (la != lb) return la < lb ? -1 : 1;
    return a < b ? -1 : a > b;
}

// Nodes for the sorted ids, depth first: each token adds the nodes past its
// common prefix with the previous one; a node's skip is set when it leaves
// the path.
static int trie_build(gm_vocab *v, const int32_t *ids, int32_t n, err_t *err) {
    size_t cap = 1024;
    v->nodes = malloc(cap * sizeof *v->nodes);
    int32_t *path = malloc(UINT16_MAX * sizeof *path);
    int32_t depth = 0, prev = -1;
    if (!v->nodes || !path) {
        free(path);
        return err_set(err, "grammar vocab: out of memory");
    }
    for (int32_t k = 0; k < n; k++) {
        int32_t id = ids[k], len = v->tok_len[id], common = 0;
        if (prev >= 0) {
            int32_t pl = v->tok_len[prev];
            while (common < len && common < pl && v->tok_bytes[id][common] == v->tok_bytes[prev][common])
                common++;
            if (common == len && pl == len) { // same bytes as prev: chain the id
                v->tok_next[id] = v->tok_next[prev];
                v->tok_next[prev] = id;
                continue;
            }
        }
        while (depth > common) v->nodes[path[--depth]].skip = v->n_nodes;
        for (; depth < len; depth++) {
            if ((size_t)v->n_nodes == cap) {
                gm_tnode *p = realloc(v->nodes, 2 * cap * sizeof *p);
                if (!p) {
                    free(path);
                    return err_set(err, "grammar vocab: out of memory");
                }
                v->nodes = p;
                cap *= 2;
            }
            v->nodes[v->n_nodes] = (gm_tnode){.byte = v->tok_bytes[id][depth],
                                              .depth = (uint16_t)(depth + 1), .token = -1};
            path[depth] = v->n_nodes++;
        }
        v->nodes[path[len - 1]].token = id;
        if (len > v->max_depth) v->max_depth = len;
        prev = id;
    }
    while (depth > 0) v->nodes[path[--depth]].skip = v->n_nodes;
    free(path);
    return 0;
}

gm_vocab *gm_vocab_new(const tok *t, err_t *err) {
    gm_vocab *v = calloc(1, sizeof *v);
    if (!v) return err_set(err, "grammar vocab: out of memory"), NULL;
    v->t = t;
    v->n_tokens = tok_vocab_size(t);
    v->words = ((size_t)v->n_tokens + 31) / 32;
    v->tok_bytes = calloc((size_t)v->n_tokens, sizeof *v->tok_bytes);
    v->tok_len = calloc((size_t)v->n_tokens, sizeof *v->tok_len);
    v->tok_next = malloc((size_t)v->n_tokens * sizeof *v->tok_next);
    int32_t *ids = malloc((size_t)v->n_tokens * sizeof *ids);
    int32_t n = 0;
    if (!v->tok_bytes || !v->tok_len || !v->tok_next || !ids) goto oom;
    for (int32_t id = 0; id < v->n_tokens; id++) {
        size_t len = 0;
        const char *b = tok_token_bytes(t, id, &len);
        v->tok_next[id] = -1;
        // Tokens longer than the trie's depth type are left out (never allowed).
        if (!b || len == 0 || len >= UINT16_MAX || tok_is_special(t, id)) continue;
        v->tok_bytes[id] = (const uint8_t *)b;
        v->tok_len[id] = (int32_t)len;
        ids[n++] = id;
    }
    sort_vocab = v;
    qsort(ids, (size_t)n, sizeof *ids, cmp_tokens);
    if (trie_build(v, ids, n, err) < 0) {
        free(ids);
        gm_vocab_free(v);
        return NULL;
    }
    free(ids);
    return v;
oom:
    free(ids);
    gm_vocab_free(v);
    return err_set(err, "grammar vocab: out of memory"), NULL;
}

void gm_vocab_free(gm_vocab *v) {
    if (!v) return;
    gm_vocab_free_caches(v);
    free(v->nodes);
    free(v->tok_bytes);
    free(v->tok_len);
    free(v->tok_next);
    free(v);
}

size_t gm_mask_words(const gm_vocab *v) {
    return v->words;
}

// ---- grammar ----------------------------------------------------------------

static int info_init(gm_grammar *g, err_t *err) {
    js_schema *s = g->s;
    g->info = calloc((size_t)s->n_dfas, sizeof *g->info);
    if (!g->info) return err_set(err, "grammar: out of memory");
    for (int32_t i = 0; i < s->n_dfas; i++) {
        const rx_dfa *d = s->dfas[i];
        gm_dfainfo *in = &g->info[i];
        in->has_out = calloc((size_t)d->n_states, 1);
        if (!in->has_out) return err_set(err, "grammar: out of memory");
        for (int32_t st = 0; st < d->n_states; st++)
            for (int32_t c = 0; c < d->n_classes; c++)
                if (d->next[(size_t)st * d->n_classes + c] >= 0) in->has_out[st] = 1;
        int32_t q = d->next[d->cls['"']];
        in->quote_state = d->char_end ? q : -1;
        in->cache = gm_vocab_dfacache(g->v, d, err);
        if (!in->cache) return -1;
    }
    return 0;
}

// A string node with a length bound needs its DFA's character boundaries.
static int check_nodes(const js_schema *s, err_t *err) {
    for (int32_t i = 0; i < s->n_nodes; i++) {
        const js_node *n = &s->nodes[i];
        if (n->kind != JS_LEXEME || n->lex != JS_LEX_STRING) continue;
        if ((n->min_len > 0 || n->max_len >= 0) && !s->dfas[n->dfa]->char_end)
            return err_set(err, "minLength/maxLength at node %d: string DFA has no char_end table", i);
    }
    return 0;
}

gm_grammar *gm_grammar_from_schema(gm_vocab *v, js_schema *s, const gm_opts *o, err_t *err) {
    gm_grammar *g = calloc(1, sizeof *g);
    if (!g) {
        js_free(s);
        return err_set(err, "grammar: out of memory"), NULL;
    }
    atomic_init(&g->refs, 1);
    g->v = v;
    g->s = s;
    g->ws_max = o ? o->ws_max : -1;
    if (check_nodes(s, err) < 0 || info_init(g, err) < 0) {
        gm_grammar_unref(g);
        return NULL;
    }
    return g;
}

gm_grammar *gm_compile_json_schema(gm_vocab *v, const cJSON *schema, const gm_opts *o, err_t *err) {
    js_schema *s = js_compile(schema, err);
    if (!s) return NULL;
    return gm_grammar_from_schema(v, s, o, err);
}

void gm_grammar_ref(gm_grammar *g) {
    atomic_fetch_add(&g->refs, 1);
}

void gm_grammar_unref(gm_grammar *g) {
    if (!g || atomic_fetch_sub(&g->refs, 1) != 1) return;
    if (g->info)
        for (int32_t i = 0; i < g->s->n_dfas; i++) free(g->info[i].has_out);
    free(g->info);
    js_free(g->s);
    free(g);
}

size_t gm_grammar_bytes(const gm_grammar *g) {
    size_t n = sizeof *g + (size_t)g->s->n_nodes * sizeof(js_node);
    for (int32_t i = 0; i < g->s->n_dfas; i++)
        n += rx_bytes(g->s->dfas[i]) + (size_t)g->s->dfas[i]->n_states;
    for (int32_t i = 0; i < g->s->n_nodes; i++) {
        const js_node *nd = &g->s->nodes[i];
        n += (size_t)nd->n_alts * 4 + (size_t)nd->n_props * sizeof(js_prop) +
             (size_t)nd->n_patterns * 4 + (size_t)nd->n_prefix * 4 + (size_t)nd->n_num_enum * 8;
    }
    return n;
}

// ---- matcher ----------------------------------------------------------------

gm_matcher *gm_matcher_new(gm_grammar *g, err_t *err) {
    gm_matcher *m = calloc(1, sizeof *m);
    if (!m) return err_set(err, "grammar matcher: out of memory"), NULL;
    size_t levels = (size_t)g->v->max_depth + 2; // + 2: gm_accept_bytes borrows two
    m->levels = malloc(levels * sizeof *m->levels);
    m->marks = malloc(levels * sizeof *m->marks);
    m->scratch = malloc(g->v->words * sizeof *m->scratch);
    if (!m->levels || !m->marks || !m->scratch) {
        gm_matcher_free(m);
        return err_set(err, "grammar matcher: out of memory"), NULL;
    }
    gm_grammar_ref(g);
    m->g = g;
    gm_matcher_reset(m);
    if (m->cur.n == 0) {
        gm_matcher_free(m);
        return err_set(err, "grammar matcher: out of memory"), NULL;
    }
    return m;
}

void gm_matcher_free(gm_matcher *m) {
    if (!m) return;
    gm_arena_free(&m->arena[0]);
    gm_arena_free(&m->arena[1]);
    free(m->levels);
    free(m->marks);
    free(m->scratch);
    gm_grammar_unref(m->g);
    free(m);
}

void gm_matcher_reset(gm_matcher *m) {
    m->live = 0;
    gm_arena_reset(&m->arena[0], (gm_mark){0, 0});
    if (gm_set_start(m->g, &m->arena[0], &m->cur) < 0) m->cur.n = 0;
}

// Moves the live threads into the other arena, so the live arena holds only
// what the current state needs (each accepted token would otherwise grow it).
static void compact(gm_matcher *m) {
    gm_arena *to = &m->arena[!m->live];
    gm_set out = {.n = 0};
    gm_arena_reset(to, (gm_mark){0, 0});
    for (int i = 0; i < m->cur.n; i++)
        if (gm_thread_copy(m->g, to, &m->cur.th[i], &out.th[out.n]) == 0) out.n++;
    m->cur = out;
    m->live = !m->live;
}

// Steps s[0..n) from the current state; commit: make the result current.
static int step_bytes(gm_matcher *m, const char *s, size_t n, bool commit) {
    gm_arena *a = &m->arena[m->live];
    gm_mark mk = gm_arena_mark(a);
    gm_set *sets = m->levels; // two scratch sets; levels has at least two
    gm_set *in = &m->cur;
    if (n == 0) return 0;
    for (size_t i = 0; i < n; i++) {
        gm_set *out = &sets[i & 1];
        gm_set_step(m->g, a, in, (uint8_t)s[i], out);
        if (out->n == 0) {
            gm_arena_reset(a, mk);
            return -1;
        }
        in = out;
    }
    if (!commit) {
        gm_arena_reset(a, mk);
        return 0;
    }
    m->cur = *in;
    compact(m);
    return 0;
}

int gm_accept_bytes(gm_matcher *m, const char *s, size_t n) {
    return step_bytes(m, s, n, true);
}

int gm_accept_token(gm_matcher *m, int32_t id) {
    const gm_vocab *v = m->g->v;
    if (id < 0 || id >= v->n_tokens || !v->tok_bytes[id]) return -1;
    return step_bytes(m, (const char *)v->tok_bytes[id], (size_t)v->tok_len[id], true);
}

bool gm_matcher_allows(gm_matcher *m, int32_t id) {
    const gm_vocab *v = m->g->v;
    if (id < 0 || id >= v->n_tokens || !v->tok_bytes[id]) return false;
    return step_bytes(m, (const char *)v->tok_bytes[id], (size_t)v->tok_len[id], false) == 0;
}

bool gm_is_complete(const gm_matcher *m) {
    for (int i = 0; i < m->cur.n; i++)
        if (gm_thread_complete(m->g, &m->cur.th[i])) return true;
    return false;
}

size_t gm_mask(gm_matcher *m, uint32_t *bits) {
    return gm_mask_set(m, bits);
}
