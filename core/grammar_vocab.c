// grammar_vocab: the vocab (every ordinary token's bytes in a trie) and
// its lexeme caches, one entry per (DFA, state), found by the DFA's tables.
// The regex compiler's DFAs are minimal, so equal lexemes (the free string,
// numbers, literals) share entries across grammars as they are. A key DFA
// is first reduced to a canonical form (states merged when they accept the
// same byte strings, key labels ignored, renumbered breadth first): where
// any key is allowed, its states collapse into the free string's.
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
        for (int32_t j = common; j < len; j++)
            if (v->byte_depth[v->tok_bytes[id][j]] < j + 1) v->byte_depth[v->tok_bytes[id][j]] = (uint16_t)(j + 1);
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
    v->caches = calloc(GM_CACHE_BUCKETS, sizeof *v->caches);
    v->bitsets = calloc(GM_CACHE_BUCKETS, sizeof *v->bitsets);
    v->cache_budget = GM_CACHE_BUDGET;
    int32_t *ids = malloc((size_t)v->n_tokens * sizeof *ids);
    int32_t n = 0;
    if (!v->tok_bytes || !v->tok_len || !v->tok_next || !v->caches || !v->bitsets || !ids) goto oom;
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

// ---- the cache budget ---------------------------------------------------------

// Counts n more bytes against the budget: true if they fit (the caller
// publishes), false and nothing counted if not.
static bool budget_take(gm_vocab *v, size_t n) {
    size_t before = atomic_fetch_add(&v->cache_bytes, n);
    if (before + n <= v->cache_budget) return true;
    atomic_fetch_sub(&v->cache_bytes, n);
    atomic_fetch_add(&v->cache_refused, 1);
    return false;
}

static void budget_give(gm_vocab *v, size_t n) {
    atomic_fetch_sub(&v->cache_bytes, n);
}

void gm_vocab_set_cache_budget(gm_vocab *v, size_t bytes) {
    v->cache_budget = bytes;
}

gm_cache_stats gm_vocab_cache_stats(const gm_vocab *v) {
    return (gm_cache_stats){.bytes = atomic_load(&v->cache_bytes),
                            .entries = atomic_load(&v->cache_entries),
                            .budget = v->cache_budget,
                            .unpublished = atomic_load(&v->cache_refused)};
}

static size_t dfacache_bytes(const gm_dfacache *c) {
    size_t n = (size_t)c->n_states;
    return sizeof *c + n * sizeof *c->states + sizeof *c->own + n * c->own->n_classes * sizeof *c->own->next +
           n * (c->own->char_end ? 3 : 2);
}

void gm_dfacache_free(gm_dfacache *c) {
    if (!c) return;
    free(c->states);
    free(c->has_out);
    gm_dfa_own_free(c->own);
    free(c);
}

static gm_dfacache *dfacache_new(rx_dfa *own, uint64_t h) {
    gm_dfacache *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->hash = h;
    c->n_states = own->n_states;
    c->own = own;
    c->states = calloc((size_t)own->n_states, sizeof *c->states);
    c->has_out = calloc((size_t)own->n_states, 1);
    if (!c->states || !c->has_out) {
        c->own = NULL;
        gm_dfacache_free(c);
        return NULL;
    }
    for (int32_t s = 0; s < own->n_states; s++)
        for (int32_t k = 0; k < own->n_classes; k++)
            if (own->next[(size_t)s * own->n_classes + k] >= 0) c->has_out[s] = 1;
    return c;
}

// Key DFAs are canonicalized (their states collapse into the free string's
// where any key is allowed); other DFAs are looked up as they are. Past the
// budget a new DFA's cache is private (the grammar frees it).
gm_dfacache *gm_vocab_dfacache(gm_vocab *v, const rx_dfa *d, int32_t **map, err_t *err) {
    int32_t quote = d->char_end ? d->next[d->cls['"']] : -1;
    bool canon = d->key_name && d->n_states <= GM_CANON_MAX;
    int32_t *block = canon ? malloc((size_t)d->n_states * sizeof *block) : NULL;
    int32_t nb = block ? gm_dfa_blocks(d, quote, block) : -1;
    *map = malloc((size_t)d->n_states * sizeof **map);
    rx_dfa *own = !*map ? NULL : canon ? (nb > 0 ? gm_dfa_canon(d, block, nb, *map) : NULL) : gm_dfa_copy(d, *map);
    free(block);
    uint64_t h = own ? gm_dfa_hash(own) : 0;
    _Atomic(gm_dfacache *) *bucket = &v->caches[h % GM_CACHE_BUCKETS];
    for (gm_dfacache *c = own ? atomic_load(bucket) : NULL; c; c = c->next)
        if (c->hash == h && gm_dfa_same(c->own, own)) {
            gm_dfa_own_free(own);
            return c;
        }
    gm_dfacache *c = own ? dfacache_new(own, h) : NULL;
    if (!c) {
        gm_dfa_own_free(own);
        free(*map);
        *map = NULL;
        return err_set(err, "grammar: out of memory"), NULL;
    }
    if (!budget_take(v, dfacache_bytes(c))) {
        c->priv = true;
        return c;
    }
    // Push; a racing twin of the same DFA is harmless (both stay valid).
    gm_dfacache *head = atomic_load(bucket);
    do c->next = head;
    while (!atomic_compare_exchange_weak(bucket, &head, c));
    return c;
}

// A published entry; its inside bitset belongs to the vocab's shared set.
static void lexcache_free(gm_lexcache *e) {
    if (!e) return;
    free(e->long_toks);
    free(e->long_chars);
    free(atomic_load(&e->chars));
    free(e->exits);
    free(e->exit_toks);
    free(e->exit_chars);
    free(e->exit_off);
    free(e);
}

void gm_vocab_free_caches(gm_vocab *v) {
    for (int b = 0; v->caches && b < GM_CACHE_BUCKETS; b++) {
        gm_dfacache *c = atomic_load(&v->caches[b]);
        while (c) {
            gm_dfacache *next = c->next;
            for (int32_t s = 0; s < c->n_states; s++) lexcache_free(atomic_load(&c->states[s]));
            gm_dfacache_free(c);
            c = next;
        }
    }
    free(v->caches);
    v->caches = NULL;
    for (int b = 0; v->bitsets && b < GM_CACHE_BUCKETS; b++) {
        gm_bits *x = atomic_load(&v->bitsets[b]);
        while (x) {
            gm_bits *next = x->next;
            free(x);
            x = next;
        }
    }
    free(v->bitsets);
    v->bitsets = NULL;
}

// ---- one cache entry: every token walked through one DFA from one state ----

typedef struct exit_rec {
    int32_t tok, state, off, chars;
} exit_rec;

// A matcher's buffers for building entries: every walk runs here, then the
// entry is copied out to be published, or used from here for one mask when
// the budget is spent. Grow-only, so a matcher stops allocating once it has
// seen its largest entry.
struct gm_lexscratch {
    gm_lexcache e;       // the last entry built; its arrays are the buffers
    size_t cap_exit;     // capacity of e's exit arrays
    int32_t cap_long;    // capacity of e.long_toks / long_chars
    exit_rec *recs;
    size_t cap_recs;
    int32_t *stack;      // the walk's per-depth states and counts
    uint8_t *chars;      // per-token code point counts (n_tokens), on need
};

gm_lexscratch *gm_lexscratch_new(const gm_vocab *v) {
    gm_lexscratch *x = calloc(1, sizeof *x);
    if (!x) return NULL;
    x->e.inside = malloc(v->words * sizeof *x->e.inside);
    x->stack = malloc(((size_t)v->max_depth + 1) * 2 * sizeof *x->stack);
    if (!x->e.inside || !x->stack) {
        gm_lexscratch_free(x);
        return NULL;
    }
    return x;
}

void gm_lexscratch_free(gm_lexscratch *x) {
    if (!x) return;
    free(x->e.inside);
    free(x->e.long_toks);
    free(x->e.long_chars);
    free(x->e.exits);
    free(x->e.exit_toks);
    free(x->e.exit_chars);
    free(x->e.exit_off);
    free(x->recs);
    free(x->stack);
    free(x->chars);
    free(x);
}

typedef struct walk_ctx {
    const gm_vocab *v;
    const rx_dfa *d;
    const uint8_t *has_out;
    gm_lexscratch *x;
    uint8_t *chars;      // chars only: per token counts, nothing else kept
    int32_t quote_state;
    size_t n_recs;
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

// Room for one more exit record.
static int recs_reserve(walk_ctx *w) {
    gm_lexscratch *x = w->x;
    if (w->n_recs < x->cap_recs) return 0;
    size_t cap = x->cap_recs ? 2 * x->cap_recs : 256;
    exit_rec *r = realloc(x->recs, cap * sizeof *r);
    if (!r) return -1;
    x->recs = r;
    x->cap_recs = cap;
    return 0;
}

static int add_exits(walk_ctx *w, int32_t from, int32_t to, int32_t state, int32_t off, int32_t chars) {
    if (w->chars) return 0;
    for (int32_t i = from; i < to; i++) {
        for (int32_t t = w->v->nodes[i].token; t >= 0; t = w->v->tok_next[t]) {
            if (recs_reserve(w) < 0) return -1;
            w->x->recs[w->n_recs++] = (exit_rec){t, state, off, chars};
        }
    }
    return 0;
}

static int long_add(walk_ctx *w, int32_t t, uint8_t c) {
    gm_lexscratch *x = w->x;
    gm_lexcache *e = &x->e;
    if (e->n_long == x->cap_long) {
        int32_t cap = x->cap_long ? 2 * x->cap_long : 64;
        int32_t *tk = realloc(e->long_toks, (size_t)cap * sizeof *tk);
        if (tk) e->long_toks = tk;
        uint8_t *ch = realloc(e->long_chars, (size_t)cap);
        if (ch) e->long_chars = ch;
        if (!tk || !ch) return -1;
        x->cap_long = cap;
    }
    e->long_toks[e->n_long] = t;
    e->long_chars[e->n_long++] = c;
    return 0;
}

static bool boundary(const walk_ctx *w, int32_t s) {
    return (w->d->char_end && w->d->char_end[s]) || s == w->quote_state;
}

// An inside token t with c code points: its bit, or with w->chars its count.
static int add_inside(walk_ctx *w, int32_t t, int32_t c) {
    uint8_t c8 = (uint8_t)(c > 255 ? 255 : c);
    gm_lexcache *e = &w->x->e;
    if (w->chars) {
        w->chars[t] = c8;
        return 0;
    }
    e->inside[t / 32] |= 1u << (t % 32);
    if (c8 > e->max_chars) e->max_chars = c8;
    return c8 > GM_SHORT_CHARS ? long_add(w, t, c8) : 0;
}

// The trie walk with the DFA alone: inside tokens into the scratch entry,
// exits into the scratch records.
static int walk_dfa(walk_ctx *w, int32_t start) {
    const gm_vocab *v = w->v;
    const rx_dfa *d = w->d;
    int32_t *st = w->x->stack, *ch = st + v->max_depth + 1;
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
            if (rc < 0) return -1;
            i = nd->skip;
            continue;
        }
        if (d->char_end && boundary(w, p) && !d->accept[to]) c++;
        st[nd->depth] = to;
        ch[nd->depth] = c;
        for (int32_t t = nd->token; t >= 0; t = v->tok_next[t])
            if (add_inside(w, t, c) < 0) return -1;
        i++;
    }
    return 0;
}

static int exits_reserve(gm_lexscratch *x, size_t n) {
    if (n <= x->cap_exit) return 0;
    gm_lexcache *e = &x->e;
    int32_t *tk = realloc(e->exit_toks, n * sizeof *tk);
    if (tk) e->exit_toks = tk;
    uint8_t *ch = realloc(e->exit_chars, n);
    if (ch) e->exit_chars = ch;
    uint16_t *off = realloc(e->exit_off, n * sizeof *off);
    if (off) e->exit_off = off;
    gm_exit *ex = realloc(e->exits, n * sizeof *ex);
    if (ex) e->exits = ex;
    if (!tk || !ch || !off || !ex) return -1;
    x->cap_exit = n;
    return 0;
}

// Groups the sorted exit records by (state, suffix).
static int group_exits(walk_ctx *w) {
    gm_lexscratch *x = w->x;
    gm_lexcache *e = &x->e;
    cmp_vocab = w->v;
    if (w->n_recs) qsort(x->recs, w->n_recs, sizeof *x->recs, cmp_exit);
    if (exits_reserve(x, w->n_recs + 1) < 0) return -1;
    e->n_exit_toks = (int32_t)w->n_recs;
    for (size_t i = 0; i < w->n_recs; i++) {
        const exit_rec *r = &x->recs[i];
        e->exit_toks[i] = r->tok;
        e->exit_off[i] = (uint16_t)r->off;
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

// ---- a first visit from a sibling state's entry ------------------------------
//
// Counted repetitions ([a-z_-]{162}, (?:\S+\s+){0,49}\S+) have long runs of
// states that differ only in how far they are from the end: every token
// walks from one as from the next, except where the exit states land. When
// a published sibling p walks like s for every byte string a token could
// spell (pairs of states explored breadth first, as deep as the bytes of
// each class reach in the trie), s's entry is p's with each exit token's
// exit state replayed from s: a few DFA steps per exit token instead of a
// walk of the whole trie.
#define GM_PAIR_MAX 512   // state pairs explored per sibling tried
#define GM_SIBLING_TRIES 2
#define GM_SIBLING_SCAN 64 // states either side looked at

// The same walk decisions from a and b for one byte: dead on the same
// classes, both accepting or not, both boundaries or not, both with a way on.
static bool state_alike(const gm_dfacache *c, int32_t quote, int32_t a, int32_t b) {
    const rx_dfa *d = c->own;
    if (d->accept[a] != d->accept[b] || c->has_out[a] != c->has_out[b] || (a == quote) != (b == quote))
        return false;
    if (d->char_end && d->char_end[a] != d->char_end[b]) return false;
    const int32_t *ra = d->next + (size_t)a * d->n_classes, *rb = d->next + (size_t)b * d->n_classes;
    for (int32_t k = 0; k < d->n_classes; k++)
        if ((ra[k] < 0) != (rb[k] < 0)) return false;
    return true;
}

typedef struct pair_walk {
    int32_t a[GM_PAIR_MAX], b[GM_PAIR_MAX], depth[GM_PAIR_MAX];
    int64_t seen[2 * GM_PAIR_MAX]; // open addressing, -1 empty
    int32_t n;
} pair_walk;

// Adds (a, b) at depth t unless seen; false when the table is full.
static bool pair_push(pair_walk *pw, int32_t a, int32_t b, int32_t t) {
    int64_t key = (int64_t)a << 32 | (uint32_t)b;
    size_t h = (size_t)((uint64_t)key * 0x9e3779b97f4a7c15ull >> 40) & (2 * GM_PAIR_MAX - 1);
    while (pw->seen[h] >= 0) {
        if (pw->seen[h] == key) return true;
        h = (h + 1) & (2 * GM_PAIR_MAX - 1);
    }
    if (pw->n == GM_PAIR_MAX) return false;
    pw->seen[h] = key;
    pw->a[pw->n] = a;
    pw->b[pw->n] = b;
    pw->depth[pw->n++] = t;
    return true;
}

// Whether every token walks from p as from s (see above). cdepth[k]: the
// deepest trie depth a byte of class k reaches.
static bool walks_alike(const gm_dfacache *c, int32_t quote, const uint16_t *cdepth, int32_t p, int32_t s,
                        pair_walk *pw) {
    const rx_dfa *d = c->own;
    memset(pw->seen, 0xff, sizeof pw->seen);
    pw->n = 0;
    pair_push(pw, p, s, 0);
    for (int32_t i = 0; i < pw->n; i++) {
        int32_t a = pw->a[i], b = pw->b[i], t = pw->depth[i];
        if (!state_alike(c, quote, a, b)) return false;
        for (int32_t k = 0; k < d->n_classes; k++) {
            int32_t na = d->next[(size_t)a * d->n_classes + k], nb = d->next[(size_t)b * d->n_classes + k];
            if (na < 0 || na == nb || cdepth[k] <= t) continue; // equal states walk alike
            if (!pair_push(pw, na, nb, t + 1)) return false;
        }
    }
    return true;
}

// A published entry of a state that walks like s, or NULL. Nearby states
// first (counters are numbered in a row).
static const gm_lexcache *sibling(const gm_vocab *v, const gm_dfacache *c, int32_t s) {
    const rx_dfa *d = c->own;
    int32_t quote = d->char_end ? d->next[d->cls['"']] : -1, tries = 0;
    uint16_t cdepth[256] = {0};
    pair_walk *pw = NULL;
    const gm_lexcache *found = NULL;
    for (int b = 0; b < 256; b++)
        if (cdepth[d->cls[b]] < v->byte_depth[b]) cdepth[d->cls[b]] = v->byte_depth[b];
    for (int32_t dist = 1; dist <= GM_SIBLING_SCAN && !found && tries < GM_SIBLING_TRIES; dist++) {
        for (int side = 0; side < 2 && !found && tries < GM_SIBLING_TRIES; side++) {
            int32_t p = side ? s + dist : s - dist;
            if (p < 0 || p >= c->n_states) continue;
            const gm_lexcache *e = atomic_load_explicit(&c->states[p], memory_order_acquire);
            if (!e || !state_alike(c, quote, p, s)) continue;
            if (!pw && !(pw = malloc(sizeof *pw))) return NULL;
            tries++;
            if (walks_alike(c, quote, cdepth, p, s, pw)) found = e;
        }
    }
    free(pw);
    return found;
}

// s's entry into x->e from its sibling's src: the same tokens inside, the
// same exit tokens with their exit states replayed from s.
static int derive(walk_ctx *w, const gm_lexcache *src, int32_t s) {
    const gm_vocab *v = w->v;
    const rx_dfa *d = w->d;
    gm_lexcache *e = &w->x->e;
    memcpy(e->inside, src->inside, v->words * sizeof *e->inside);
    e->max_chars = src->max_chars;
    for (int32_t k = 0; k < src->n_long; k++)
        if (long_add(w, src->long_toks[k], src->long_chars[k]) < 0) return -1;
    for (int32_t k = 0; k < src->n_exit_toks; k++) {
        int32_t t = src->exit_toks[k], off = src->exit_off[k], st = s;
        for (int32_t i = 0; i < off; i++) st = d->next[(size_t)st * d->n_classes + d->cls[v->tok_bytes[t][i]]];
        if (recs_reserve(w) < 0) return -1;
        w->x->recs[w->n_recs++] = (exit_rec){t, st, off, src->exit_chars[k]};
    }
    return group_exits(w);
}

// Builds c's entry for s into x->e (its arrays x's buffers). chars: only
// every inside token's count into it (n_tokens bytes), x->e left alone.
static int lexcache_build(const gm_vocab *v, const gm_dfacache *c, int32_t s, gm_lexscratch *x,
                          uint8_t *chars) {
    const rx_dfa *d = c->own;
    walk_ctx w = {.v = v, .d = d, .has_out = c->has_out, .x = x, .chars = chars,
                  .quote_state = d->char_end ? d->next[d->cls['"']] : -1};
    if (!chars) {
        gm_lexcache *e = &x->e;
        memset(e->inside, 0, v->words * sizeof *e->inside);
        e->n_long = e->n_exits = e->n_exit_toks = 0;
        e->max_chars = 0;
        atomic_store(&e->chars, NULL);
    }
    if (!chars && !c->priv) {
        const gm_lexcache *src = sibling(v, c, s);
        if (src) return derive(&w, src, s);
    }
    if (walk_dfa(&w, s) < 0) return -1;
    return chars ? 0 : group_exits(&w);
}

static void *dup_bytes(const void *p, size_t n) {
    void *q = malloc(n ? n : 1);
    if (q && n) memcpy(q, p, n);
    return q;
}

// Bytes an entry holds beside its shared inside bitset, as counted against
// the budget.
static size_t lexcache_bytes(const gm_lexcache *e) {
    return sizeof *e + (size_t)e->n_long * 5 + (size_t)e->n_exits * sizeof *e->exits +
           ((size_t)e->n_exit_toks + 1) * 7;
}

// ---- shared inside bitsets ------------------------------------------------------
//
// Most states of a lexeme keep the same tokens inside (every state of a free
// string's body, most of a pattern's), so published entries share equal
// bitsets: one copy per distinct set, found by hash, pushed lock-free.

static const uint32_t *bits_find(const gm_vocab *v, const uint32_t *w, uint64_t h) {
    for (gm_bits *b = atomic_load(&v->bitsets[h % GM_CACHE_BUCKETS]); b; b = b->next)
        if (b->hash == h && !memcmp(b->w, w, v->words * sizeof *w)) return b->w;
    return NULL;
}

// A shared copy of w (counted by the caller); NULL on out of memory.
static const uint32_t *bits_add(gm_vocab *v, const uint32_t *w, uint64_t h) {
    gm_bits *b = malloc(sizeof *b + v->words * sizeof *w);
    if (!b) return NULL;
    b->hash = h;
    memcpy(b->w, w, v->words * sizeof *w);
    _Atomic(gm_bits *) *bucket = &v->bitsets[h % GM_CACHE_BUCKETS];
    gm_bits *head = atomic_load(bucket);
    do b->next = head;
    while (!atomic_compare_exchange_weak(bucket, &head, b));
    return b->w;
}

// An exact-size copy of the scratch entry over the shared bitset inside,
// to publish; NULL on out of memory.
static gm_lexcache *lexcache_copy(const gm_lexcache *s, const uint32_t *inside) {
    gm_lexcache *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    size_t nx = (size_t)s->n_exit_toks + 1;
    e->n_long = s->n_long;
    e->max_chars = s->max_chars;
    e->n_exits = s->n_exits;
    e->n_exit_toks = s->n_exit_toks;
    e->inside = (uint32_t *)(uintptr_t)inside; // shared, never written
    e->long_toks = dup_bytes(s->long_toks, (size_t)s->n_long * sizeof *s->long_toks);
    e->long_chars = dup_bytes(s->long_chars, (size_t)s->n_long);
    e->exits = dup_bytes(s->exits, (size_t)s->n_exits * sizeof *s->exits);
    e->exit_toks = dup_bytes(s->exit_toks, nx * sizeof *s->exit_toks);
    e->exit_chars = dup_bytes(s->exit_chars, nx);
    e->exit_off = dup_bytes(s->exit_off, nx * sizeof *s->exit_off);
    if (!e->inside || !e->long_toks || !e->long_chars || !e->exits || !e->exit_toks || !e->exit_chars ||
        !e->exit_off) {
        lexcache_free(e);
        return NULL;
    }
    return e;
}

const uint8_t *gm_lexcache_chars(gm_vocab *v, gm_dfacache *c, int32_t s, const gm_lexcache *e,
                                 gm_lexscratch *x) {
    gm_lexcache *me = (gm_lexcache *)(uintptr_t)e; // only the atomic slot is written
    uint8_t *have = atomic_load_explicit(&me->chars, memory_order_acquire);
    if (have) return have;
    size_t n = (size_t)v->n_tokens;
    bool publish = e != &x->e && budget_take(v, n);
    uint8_t *mine = publish ? malloc(n) : x->chars ? x->chars : (x->chars = malloc(n));
    if (!mine || lexcache_build(v, c, s, x, mine) < 0) {
        if (publish) {
            free(mine);
            budget_give(v, n);
        }
        return NULL;
    }
    if (!publish || atomic_compare_exchange_strong(&me->chars, &have, mine)) return mine;
    free(mine);
    budget_give(v, n);
    return have;
}

// The entry for (c, s): published, or built into x and published with a
// CAS (a losing builder frees its copy), or past the budget (or in a
// private cache) built into x and used from there until x's next build.
// NULL only on out of memory.
const gm_lexcache *gm_lexcache_get(gm_vocab *v, gm_dfacache *c, int32_t s, gm_lexscratch *x) {
    gm_lexcache *e = atomic_load_explicit(&c->states[s], memory_order_acquire);
    if (e) return e;
    if (lexcache_build(v, c, s, x, NULL) < 0) return NULL;
    if (c->priv) return &x->e;
    uint64_t h = gm_fnv(0xcbf29ce484222325ull, x->e.inside, v->words * sizeof *x->e.inside);
    const uint32_t *inside = bits_find(v, x->e.inside, h);
    size_t n = lexcache_bytes(&x->e) + (inside ? 0 : sizeof(gm_bits) + v->words * sizeof *inside);
    if (!budget_take(v, n)) return &x->e;
    gm_lexcache *mine = NULL;
    if (!inside) inside = bits_add(v, x->e.inside, h); // counted above even if the entry is lost
    if (inside) mine = lexcache_copy(&x->e, inside);
    if (!mine) return &x->e;
    if (atomic_compare_exchange_strong(&c->states[s], &e, mine)) {
        atomic_fetch_add(&v->cache_entries, 1);
        return mine;
    }
    lexcache_free(mine);
    budget_give(v, lexcache_bytes(&x->e));
    return e;
}
