// grammar_mask: token masks. A thread inside a lexeme (string, key,
// literal) takes its tokens from the vocab's per-(DFA, state) cache: the
// tokens that stay inside are one cached bitset, and the tokens that leave
// are grouped by exit state and the bytes after the exit, so only those
// suffixes run through the matcher. Every other thread walks the token trie
// with the full matcher, skipping dead subtrees.
#include <stdlib.h>
#include <string.h>

#include "grammar_int.h"

// ---- the vocab's DFA caches -------------------------------------------------

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

static uint64_t dfa_hash(const rx_dfa *d) {
    uint64_t h = 0xcbf29ce484222325ull;
    h = fnv(h, &d->n_states, sizeof d->n_states);
    h = fnv(h, &d->n_classes, sizeof d->n_classes);
    h = fnv(h, d->cls, sizeof d->cls);
    h = fnv(h, d->next, (size_t)d->n_states * d->n_classes * sizeof *d->next);
    h = fnv(h, d->accept, (size_t)d->n_states);
    if (d->char_end) h = fnv(h, d->char_end, (size_t)d->n_states);
    return h;
}

// Same tables (what a token walk depends on; key tables are not part of it).
static bool dfa_same(const rx_dfa *a, const rx_dfa *b) {
    if (a->n_states != b->n_states || a->n_classes != b->n_classes) return false;
    if (memcmp(a->cls, b->cls, sizeof a->cls)) return false;
    if (memcmp(a->next, b->next, (size_t)a->n_states * a->n_classes * sizeof *a->next)) return false;
    if (memcmp(a->accept, b->accept, (size_t)a->n_states)) return false;
    if (!a->char_end != !b->char_end) return false;
    return !a->char_end || !memcmp(a->char_end, b->char_end, (size_t)a->n_states);
}

static void dfa_own_free(rx_dfa *d) {
    if (!d) return;
    free(d->next);
    free(d->accept);
    free(d->char_end);
    free(d);
}

// The vocab's own copy of the tables a token walk reads.
static rx_dfa *dfa_own(const rx_dfa *d) {
    rx_dfa *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    size_t n = (size_t)d->n_states;
    c->n_states = d->n_states;
    c->n_classes = d->n_classes;
    memcpy(c->cls, d->cls, sizeof c->cls);
    c->next = malloc(n * d->n_classes * sizeof *c->next);
    c->accept = malloc(n);
    c->char_end = d->char_end ? malloc(n) : NULL;
    if (!c->next || !c->accept || (d->char_end && !c->char_end)) {
        dfa_own_free(c);
        return NULL;
    }
    memcpy(c->next, d->next, n * d->n_classes * sizeof *c->next);
    memcpy(c->accept, d->accept, n);
    if (d->char_end) memcpy(c->char_end, d->char_end, n);
    return c;
}

gm_dfacache *gm_vocab_dfacache(gm_vocab *v, const rx_dfa *d, err_t *err) {
    uint64_t h = dfa_hash(d);
    for (gm_dfacache *c = atomic_load(&v->caches); c; c = c->next)
        if (c->hash == h && dfa_same(c->own, d)) return c;
    gm_dfacache *c = calloc(1, sizeof *c);
    if (!c) return err_set(err, "grammar: out of memory"), NULL;
    c->hash = h;
    c->n_states = d->n_states;
    c->own = dfa_own(d);
    c->states = calloc((size_t)d->n_states, sizeof *c->states);
    if (!c->own || !c->states) {
        dfa_own_free(c->own);
        free(c->states);
        free(c);
        return err_set(err, "grammar: out of memory"), NULL;
    }
    // Push; a racing twin of the same DFA is harmless (both stay valid).
    gm_dfacache *head = atomic_load(&v->caches);
    do c->next = head;
    while (!atomic_compare_exchange_weak(&v->caches, &head, c));
    return c;
}

static void lexcache_free(gm_lexcache *e) {
    if (!e) return;
    free(e->inside);
    free(e->inside_chars);
    free(e->exits);
    free(e->exit_toks);
    free(e->exit_chars);
    free(e);
}

void gm_vocab_free_caches(gm_vocab *v) {
    gm_dfacache *c = atomic_load(&v->caches);
    while (c) {
        gm_dfacache *next = c->next;
        for (int32_t s = 0; s < c->n_states; s++) lexcache_free(atomic_load(&c->states[s]));
        free(c->states);
        dfa_own_free(c->own);
        free(c);
        c = next;
    }
    atomic_store(&v->caches, NULL);
}

// ---- one cache entry: every token walked through one DFA from one state ----

typedef struct exit_rec {
    int32_t tok, state, off, chars;
} exit_rec;

typedef struct walk_ctx {
    const gm_vocab *v;
    const rx_dfa *d;
    uint8_t *has_out;
    int32_t quote_state;
    exit_rec *recs;
    size_t n_recs, cap;
} walk_ctx;

static _Thread_local const gm_vocab *cmp_vocab;

static int cmp_exit(const void *pa, const void *pb) {
    const exit_rec *a = pa, *b = pb;
    if (a->state != b->state) return a->state < b->state ? -1 : 1;
    const uint8_t *sa = cmp_vocab->tok_bytes[a->tok] + a->off, *sb = cmp_vocab->tok_bytes[b->tok] + b->off;
    int32_t la = cmp_vocab->tok_len[a->tok] - a->off, lb = cmp_vocab->tok_len[b->tok] - b->off;
    int c = memcmp(sa, sb, (size_t)(la < lb ? la : lb));
    if (c) return c;
    if (la != lb) return la < lb ? -1 : 1;
    return a->tok < b->tok ? -1 : a->tok > b->tok;
}

static int add_exits(walk_ctx *w, int32_t from, int32_t to, int32_t state, int32_t off, int32_t chars) {
    for (int32_t i = from; i < to; i++) {
        for (int32_t t = w->v->nodes[i].token; t >= 0; t = w->v->tok_next[t]) {
            if (w->n_recs == w->cap) {
                size_t cap = w->cap ? 2 * w->cap : 256;
                exit_rec *r = realloc(w->recs, cap * sizeof *r);
                if (!r) return -1;
                w->recs = r;
                w->cap = cap;
            }
            w->recs[w->n_recs++] = (exit_rec){t, state, off, chars};
        }
    }
    return 0;
}

static bool boundary(const walk_ctx *w, int32_t s) {
    return (w->d->char_end && w->d->char_end[s]) || s == w->quote_state;
}

static uint8_t *has_out_table(const rx_dfa *d) {
    uint8_t *h = calloc((size_t)d->n_states, 1);
    if (!h) return NULL;
    for (int32_t s = 0; s < d->n_states; s++)
        for (int32_t c = 0; c < d->n_classes; c++)
            if (d->next[(size_t)s * d->n_classes + c] >= 0) h[s] = 1;
    return h;
}

// The trie walk with the DFA alone: inside tokens into e, exits into w.
static int walk_dfa(walk_ctx *w, gm_lexcache *e, int32_t start) {
    const gm_vocab *v = w->v;
    const rx_dfa *d = w->d;
    int32_t *st = malloc(((size_t)v->max_depth + 1) * 2 * sizeof *st);
    if (!st) return -1;
    int32_t *ch = st + v->max_depth + 1;
    st[0] = start;
    ch[0] = 0;
    for (int32_t i = 0; i < v->n_nodes;) {
        const gm_tnode *nd = &v->nodes[i];
        int32_t p = st[nd->depth - 1], c = ch[nd->depth - 1];
        int32_t to = d->next[(size_t)p * d->n_classes + d->cls[nd->byte]];
        if (to < 0 || !w->has_out[to]) {
            // Dead after an accepting state: the subtree's tokens leave the
            // lexeme here (a first byte that leaves goes to the mask's root
            // walk instead). A state with no way on: the lexeme ends with
            // this byte, and whatever follows is the suffix.
            int rc = 0;
            if (to < 0 && d->accept[p] && nd->depth >= 2)
                rc = add_exits(w, i, nd->skip, p, nd->depth - 1, c);
            else if (to >= 0)
                rc = add_exits(w, i, nd->skip, to, nd->depth, c + (boundary(w, p) && !d->accept[to]));
            if (rc < 0) {
                free(st);
                return -1;
            }
            i = nd->skip;
            continue;
        }
        if (d->char_end && boundary(w, p) && !d->accept[to]) c++;
        st[nd->depth] = to;
        ch[nd->depth] = c;
        for (int32_t t = nd->token; t >= 0; t = v->tok_next[t]) {
            e->inside[t / 32] |= 1u << (t % 32);
            if (e->inside_chars) e->inside_chars[t] = (uint8_t)(c > 255 ? 255 : c);
            if (c > e->max_chars) e->max_chars = (uint8_t)(c > 255 ? 255 : c);
        }
        i++;
    }
    free(st);
    return 0;
}

// Groups the sorted exit records by (state, suffix).
static int group_exits(walk_ctx *w, gm_lexcache *e) {
    cmp_vocab = w->v;
    qsort(w->recs, w->n_recs, sizeof *w->recs, cmp_exit);
    e->exit_toks = malloc((w->n_recs + 1) * sizeof *e->exit_toks);
    e->exit_chars = malloc(w->n_recs + 1);
    e->exits = malloc((w->n_recs + 1) * sizeof *e->exits);
    if (!e->exit_toks || !e->exit_chars || !e->exits) return -1;
    for (size_t i = 0; i < w->n_recs; i++) {
        const exit_rec *r = &w->recs[i];
        e->exit_toks[i] = r->tok;
        e->exit_chars[i] = (uint8_t)(r->chars > 255 ? 255 : r->chars);
        gm_exit *last = e->n_exits ? &e->exits[e->n_exits - 1] : NULL;
        const uint8_t *suf = w->v->tok_bytes[r->tok] + r->off;
        int32_t len = w->v->tok_len[r->tok] - r->off;
        if (last && last->exit_state == r->state && last->suf_len == len &&
            !memcmp(last->suf, suf, (size_t)len)) {
            last->n_toks++;
            continue;
        }
        e->exits[e->n_exits++] = (gm_exit){.exit_state = r->state, .suf = suf, .suf_len = len,
                                           .tok_off = (int32_t)i, .n_toks = 1};
    }
    return 0;
}

static gm_lexcache *lexcache_build(const gm_vocab *v, const rx_dfa *d, int32_t s) {
    gm_lexcache *e = calloc(1, sizeof *e);
    walk_ctx w = {.v = v, .d = d, .quote_state = d->char_end ? d->next[d->cls['"']] : -1};
    if (!e) return NULL;
    e->inside = calloc(v->words, sizeof *e->inside);
    e->inside_chars = d->char_end ? calloc((size_t)v->n_tokens, 1) : NULL;
    w.has_out = has_out_table(d);
    int rc = !e->inside || (d->char_end && !e->inside_chars) || !w.has_out ? -1 : 0;
    if (rc == 0) rc = walk_dfa(&w, e, s);
    if (rc == 0) rc = group_exits(&w, e);
    free(w.recs);
    free(w.has_out);
    if (rc < 0) {
        lexcache_free(e);
        return NULL;
    }
    return e;
}

// The entry for (c, s), built on first use and published with a CAS (a
// losing builder frees its copy). NULL only on out of memory.
static const gm_lexcache *lexcache_get(const gm_vocab *v, gm_dfacache *c, int32_t s) {
    gm_lexcache *e = atomic_load_explicit(&c->states[s], memory_order_acquire);
    if (e) return e;
    gm_lexcache *mine = lexcache_build(v, c->own, s);
    if (!mine) return NULL;
    if (atomic_compare_exchange_strong(&c->states[s], &e, mine)) return mine;
    lexcache_free(mine);
    return e;
}

// ---- masks --------------------------------------------------------------------

static void set_tokens(const gm_vocab *v, int32_t t, uint32_t *bits) {
    for (; t >= 0; t = v->tok_next[t]) bits[t / 32] |= 1u << (t % 32);
}

// Walks the trie with the full matcher from the threads in m->levels[0].
// skip_d / skip_s: first bytes on which that DFA moves from that state are
// left out (the lexeme cache covers them).
static void walk_full(gm_matcher *m, gm_arena *a, uint32_t *bits, const rx_dfa *skip_d, int32_t skip_s) {
    const gm_grammar *g = m->g;
    const gm_vocab *v = g->v;
    m->marks[0] = gm_arena_mark(a);
    for (int32_t i = 0; i < v->n_nodes;) {
        const gm_tnode *nd = &v->nodes[i];
        int d = nd->depth;
        if (d == 1 && skip_d && skip_d->next[(size_t)skip_s * skip_d->n_classes + skip_d->cls[nd->byte]] >= 0) {
            i = nd->skip;
            continue;
        }
        gm_arena_reset(a, m->marks[d - 1]);
        gm_set_step(g, a, &m->levels[d - 1], nd->byte, &m->levels[d]);
        if (m->levels[d].n == 0) {
            i = nd->skip;
            continue;
        }
        m->marks[d] = gm_arena_mark(a);
        if (nd->token >= 0) set_tokens(v, nd->token, bits);
        i++;
    }
    gm_arena_reset(a, m->marks[0]);
}

// Whether the suffix bytes are accepted after the thread's lexeme ends in
// exit state x.
static bool exit_ok(gm_matcher *m, gm_arena *a, const gm_thread *t, int32_t x, const uint8_t *suf,
                    int32_t len) {
    gm_set *s0 = &m->levels[0], *s1 = &m->levels[1];
    s0->n = 0;
    gm_thread_end_lexeme(m->g, a, t, x, s0);
    for (int32_t i = 0; i < len && s0->n; i++) {
        gm_set_step(m->g, a, s0, suf[i], s1);
        gm_set *tmp = s0;
        s0 = s1;
        s1 = tmp;
    }
    return s0->n > 0;
}

// The lexeme fast path for one thread whose top frame is a lexeme (not a
// number with numeric checks).
static int mask_lexeme(gm_matcher *m, gm_arena *a, const gm_thread *t, uint32_t *bits) {
    const gm_grammar *g = m->g;
    const gm_vocab *v = g->v;
    const gm_frame *f = t->top;
    const js_node *n = &g->s->nodes[f->node];
    const gm_lexcache *e = lexcache_get(v, g->info[f->dfa].cache, f->state);
    if (!e) return -1;
    bool counted = gm_lex_counted(g, f);
    int64_t room = counted && n->max_len >= 0 ? n->max_len - f->count : INT64_MAX;
    int64_t need = counted ? n->min_len - f->count : 0;
    if (room >= e->max_chars) {
        for (size_t w = 0; w < v->words; w++) bits[w] |= e->inside[w];
    } else {
        for (size_t w = 0; w < v->words; w++) {
            for (uint32_t b = e->inside[w]; b; b &= b - 1) {
                int32_t tk = (int32_t)(w * 32 + (size_t)__builtin_ctz(b));
                if (e->inside_chars[tk] <= room) bits[w] |= 1u << (tk % 32);
            }
        }
    }
    gm_mark mk = gm_arena_mark(a);
    for (int32_t i = 0; i < e->n_exits; i++) {
        const gm_exit *x = &e->exits[i];
        bool ok = exit_ok(m, a, t, x->exit_state, x->suf, x->suf_len);
        gm_arena_reset(a, mk);
        if (!ok) continue;
        for (int32_t k = x->tok_off; k < x->tok_off + x->n_toks; k++) {
            int32_t c = e->exit_chars[k];
            if (counted && (c > room || c < need)) continue;
            bits[e->exit_toks[k] / 32] |= 1u << (e->exit_toks[k] % 32);
        }
    }
    // Tokens whose first byte already leaves the lexeme: the enclosing
    // grammar's own walk, after the lexeme ends here.
    const rx_dfa *d = g->s->dfas[f->dfa];
    if (d->accept[f->state]) {
        m->levels[0].n = 0;
        gm_thread_end_lexeme(g, a, t, f->state, &m->levels[0]);
        if (m->levels[0].n) walk_full(m, a, bits, d, f->state);
        gm_arena_reset(a, mk);
    }
    return 0;
}

static bool fast_path(const gm_grammar *g, const gm_thread *t) {
    const gm_frame *f = t->top;
    if (!f || f->kind != FR_LEX) return false;
    return f->num == NULL; // numbers with checks need their text: walked
}

size_t gm_mask_set(gm_matcher *m, uint32_t *bits) {
    const gm_vocab *v = m->g->v;
    gm_arena *a = &m->arena[m->live];
    memset(bits, 0, v->words * sizeof *bits);
    for (int i = 0; i < m->cur.n; i++) {
        gm_thread t = m->cur.th[i];
        if (fast_path(m->g, &t) && mask_lexeme(m, a, &t, bits) == 0) continue;
        m->levels[0].n = 1;
        m->levels[0].th[0] = t;
        walk_full(m, a, bits, NULL, 0);
    }
    size_t n = 0;
    for (size_t w = 0; w < v->words; w++) n += (size_t)__builtin_popcount(bits[w]);
    return n;
}
