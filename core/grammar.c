// grammar: grammars over compiled schemas and the matcher's public calls.
// The vocab and its caches are grammar_vocab.c, the byte matcher
// grammar_match.c, masks grammar_mask.c.
#include <stdlib.h>
#include <string.h>

#include "grammar_int.h"

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
        in->cache = gm_vocab_dfacache(g->v, d, &in->canon, err);
        if (!in->cache) return -1;
        if (d->key_name) {
            in->exit_state = calloc((size_t)d->n_states, sizeof *in->exit_state);
            if (!in->exit_state) return err_set(err, "grammar: out of memory");
        }
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
    g->ws_after = o && o->ws_after > 0 ? o->ws_after : 0;
    if (check_nodes(s, err) < 0 || info_init(g, err) < 0 || gm_keys_init(g, err) < 0) {
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
    for (int32_t i = 0; g->info && i < g->s->n_dfas; i++) {
        gm_dfainfo *in = &g->info[i];
        free(in->has_out);
        free(in->canon);
        for (int32_t st = 0; in->exit_state && st < g->s->dfas[i]->n_states; st++)
            free(atomic_load(&in->exit_state[st]));
        free(in->exit_state);
        if (in->cache && in->cache->priv) gm_dfacache_free(in->cache);
    }
    free(g->info);
    gm_keys_free(g);
    js_free(g->s);
    free(g);
}

size_t gm_grammar_bytes(const gm_grammar *g) {
    size_t n = sizeof *g + (size_t)g->s->n_nodes * sizeof(js_node);
    for (int32_t i = 0; i < g->s->n_dfas; i++) {
        n += rx_bytes(g->s->dfas[i]) + (size_t)g->s->dfas[i]->n_states;
        if (g->info[i].cache->priv) // past the vocab's budget: the grammar's own copy
            n += rx_bytes(g->s->dfas[i]) + (size_t)g->s->dfas[i]->n_states * (sizeof(void *) + 1);
    }
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
    m->lex = gm_lexscratch_new(g->v);
    if (!m->levels || !m->marks || !m->scratch || !m->lex) {
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
    gm_lexscratch_free(m->lex);
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
