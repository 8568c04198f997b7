// grammar_mask: token masks. A thread inside a lexeme (string, key,
// literal) takes its tokens from the vocab's per-(DFA, state) cache: the
// tokens that stay inside are one cached bitset, and the tokens that leave
// are grouped by exit state and the bytes after the exit, so only those
// suffixes run through the matcher. Every other thread walks the token trie
// with the full matcher, skipping dead subtrees.
#include <stdlib.h>
#include <string.h>

#include "grammar_int.h"

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

// What is known after the lexeme ends in one exit state: the threads then
// (0 or 1: the lexeme's parent) and the first suffix bytes seen to kill
// them, so most exit groups cost one bit test.
#define EXIT_MEMO 8

typedef struct exit_memo {
    int n;
    int32_t state[EXIT_MEMO];
    gm_set after[EXIT_MEMO];
    uint32_t dead[EXIT_MEMO][8];
    gm_mark base; // the arena above every memo's frames
} exit_memo;

static int memo_find(gm_matcher *m, gm_arena *a, const gm_thread *t, exit_memo *mm, int32_t x) {
    for (int i = 0; i < mm->n; i++)
        if (mm->state[i] == x) return i;
    if (mm->n == EXIT_MEMO) return -1;
    int i = mm->n++;
    gm_arena_reset(a, mm->base);
    mm->state[i] = x;
    mm->after[i].n = 0;
    memset(mm->dead[i], 0, sizeof mm->dead[i]);
    gm_thread_end_lexeme(m->g, a, t, x, &mm->after[i]);
    mm->base = gm_arena_mark(a);
    return i;
}

// Whether the suffix bytes are accepted after the thread's lexeme ends in
// exit state x.
static bool exit_ok(gm_matcher *m, gm_arena *a, const gm_thread *t, exit_memo *mm, int32_t x,
                    const uint8_t *suf, int32_t len) {
    int i = memo_find(m, a, t, mm, x);
    gm_set one, *s0 = &one, *s1 = &m->levels[1];
    if (i < 0) { // past the memo: the plain way
        gm_arena_reset(a, mm->base);
        one.n = 0;
        gm_thread_end_lexeme(m->g, a, t, x, &one);
    } else {
        if (!mm->after[i].n) return false;
        if (len && mm->dead[i][suf[0] / 32] >> (suf[0] % 32) & 1) return false;
        one = mm->after[i];
    }
    gm_arena_reset(a, mm->base);
    for (int32_t k = 0; k < len && s0->n; k++) {
        gm_set_step(m->g, a, s0, suf[k], s1);
        if (k == 0 && i >= 0 && !s1->n) mm->dead[i][suf[0] / 32] |= 1u << (suf[0] % 32);
        gm_set *tmp = s0;
        s0 = s1;
        s1 = tmp == &one ? &m->levels[2] : tmp;
    }
    bool ok = s0->n > 0;
    gm_arena_reset(a, mm->base);
    return ok;
}

// Each cached exit token's exit state in the key DFA d from state s (the
// canonical cache forgets which key a state names), built on first use and
// published with a CAS. NULL on out of memory.
static const int32_t *key_exits(const gm_grammar *g, int32_t dfa, int32_t s, const gm_lexcache *e) {
    _Atomic(int32_t *) *slot = &g->info[dfa].exit_state[s];
    int32_t *x = atomic_load_explicit(slot, memory_order_acquire);
    if (x) return x;
    const rx_dfa *d = g->s->dfas[dfa];
    const gm_vocab *v = g->v;
    int32_t *mine = malloc(((size_t)e->n_exit_toks + 1) * sizeof *mine);
    if (!mine) return NULL;
    for (int32_t k = 0; k < e->n_exit_toks; k++) {
        const uint8_t *b = v->tok_bytes[e->exit_toks[k]];
        int32_t st = s;
        for (int32_t i = 0; i < e->exit_off[k] && st >= 0; i++) st = d->next[(size_t)st * d->n_classes + d->cls[b[i]]];
        mine[k] = st;
    }
    if (atomic_compare_exchange_strong(slot, &x, mine)) return mine;
    free(mine);
    return x;
}

// Tokens of exit group x allowed after the lexeme ends (keys: each token's
// own exit state; other lexemes: the thread's).
static void mask_exit_group(gm_matcher *m, gm_arena *a, const gm_thread *t, exit_memo *mm,
                            const gm_lexcache *e, const gm_exit *x, const int32_t *kx, int64_t room,
                            int64_t need, bool counted, uint32_t *bits) {
    int32_t last = -2;
    bool ok = false;
    for (int32_t k = x->tok_off; k < x->tok_off + x->n_toks; k++) {
        int32_t c = e->exit_chars[k];
        if (counted && (c > room || c < need)) continue;
        int32_t st = kx ? kx[k] : t->top->state;
        if (st != last) {
            ok = st >= 0 && exit_ok(m, a, t, mm, st, x->suf, x->suf_len);
            last = st;
        }
        if (ok) bits[e->exit_toks[k] / 32] |= 1u << (e->exit_toks[k] % 32);
    }
}

// The lexeme fast path for one thread whose top frame is a lexeme (not a
// number with numeric checks).
static int mask_lexeme(gm_matcher *m, gm_arena *a, const gm_thread *t, uint32_t *bits) {
    const gm_grammar *g = m->g;
    const gm_vocab *v = g->v;
    const gm_frame *f = t->top;
    const js_node *n = &g->s->nodes[f->node];
    const gm_dfainfo *in = &g->info[f->dfa];
    const gm_lexcache *e = gm_lexcache_get(g->v, in->cache, in->canon[f->state], m->lex);
    const int32_t *kx = NULL;
    if (!e) return -1;
    if (in->exit_state && !(kx = key_exits(g, f->dfa, f->state, e))) return -1;
    bool counted = gm_lex_counted(g, f);
    int64_t room = counted && n->max_len >= 0 ? n->max_len - f->count : INT64_MAX;
    int64_t need = counted ? n->min_len - f->count : 0;
    if (room >= GM_SHORT_CHARS || room >= e->max_chars) {
        const uint32_t *src = e->inside;
        if (room < e->max_chars) { // leave out the long tokens that do not fit
            memcpy(m->scratch, e->inside, v->words * sizeof *m->scratch);
            for (int32_t k = 0; k < e->n_long; k++)
                if (e->long_chars[k] > room) m->scratch[e->long_toks[k] / 32] &= ~(1u << (e->long_toks[k] % 32));
            src = m->scratch;
        }
        for (size_t w = 0; w < v->words; w++) bits[w] |= src[w];
    } else {
        const uint8_t *chars = gm_lexcache_chars(g->v, in->cache, in->canon[f->state], e, m->lex);
        if (!chars) return -1;
        for (size_t w = 0; w < v->words; w++) {
            for (uint32_t b = e->inside[w]; b; b &= b - 1) {
                int32_t tk = (int32_t)(w * 32 + (size_t)__builtin_ctz(b));
                if (chars[tk] <= room) bits[w] |= 1u << (tk % 32);
            }
        }
    }
    gm_mark start = gm_arena_mark(a);
    exit_memo mm = {.n = 0, .base = start};
    for (int32_t i = 0; i < e->n_exits; i++)
        mask_exit_group(m, a, t, &mm, e, &e->exits[i], kx, room, need, counted, bits);
    gm_arena_reset(a, start);
    // Tokens whose first byte already leaves the lexeme: the enclosing
    // grammar's own walk, after the lexeme ends here.
    const rx_dfa *d = g->s->dfas[f->dfa];
    if (d->accept[f->state]) {
        gm_mark mk = gm_arena_mark(a);
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
    // a key whose completions may all be seen properties: walked
    if (f->up && f->up->kind == FR_OBJECT && f->up->phase == PH_KEY && !gm_key_cacheable(g, f->up, f->state))
        return false;
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
