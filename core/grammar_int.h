// grammar_int: the grammar engine's private types, shared by grammar.c
// (grammars, the matcher's public calls), grammar_vocab.c (the token trie
// and the per-lexeme-state caches), grammar_match.c (the byte matcher) and
// grammar_mask.c (token masks). Tests and bench/maskbench include it for
// gm_matcher_allows.
//
// The matcher's state is a small set of threads (anyOf forks one thread per
// alternative). A thread is a stack of frames; frames are immutable and
// live in a chunked bump arena, so stepping a byte builds a new top frame
// over a shared parent and backtracking (the trie walk) is an arena mark
// reset. Nothing is freed one frame at a time; after each accepted token
// the live threads are copied into the other arena (compaction).
//
// Caches: the vocab keeps, per canonical DFA (grammar_vocab.c) and state,
// the tokens that stay inside the lexeme and those that leave it grouped by
// exit state and suffix. Entries are built on first use (into the
// matcher's gm_lexscratch) and published with a compare-and-swap; they are
// never freed before the vocab. Publishing stops at the vocab's byte budget
// (gm_vocab_set_cache_budget): past it an entry is built into the matcher's
// scratch and used for that one mask, so memory stays bounded and readers
// never race an eviction.
#ifndef TESSERA_GRAMMAR_INT_H
#define TESSERA_GRAMMAR_INT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "grammar.h"
#include "jsonschema.h"

#define GM_MAX_THREADS 32  // more is a dead thread: a possible false reject
#define GM_MAX_DEPTH 200   // frames per thread, the same
#define GM_NUM_TEXT 64     // number text kept for numeric checks; longer is refused
#define GM_ARENA_CHUNK (64 * 1024)
#define GM_ARENA_MAX_CHUNKS 1024 // 64 MiB of frames per arena; past it threads die
#define GM_SHORT_CHARS 16        // see gm_lexcache's long tokens
#define GM_CACHE_BUCKETS 4096

// ---- vocab ----------------------------------------------------------------

// One trie node: nodes are stored depth first, so node i's subtree is
// [i, skip) and its children follow it; a dead subtree is skipped in O(1).
typedef struct gm_tnode {
    uint8_t byte;
    uint16_t depth; // 1 for the root's children
    int32_t token;  // the token ending here, or -1
    int32_t skip;   // index of the next node outside this subtree
} gm_tnode;

// The tokens that leave a lexeme from one DFA state: the DFA stopped at an
// accepting state (exit_state, canonical) and the rest of the token (suffix)
// goes to the enclosing grammar. exit_toks[tok_off, tok_off + n_toks) share
// the suffix; exit_chars[] is each one's count of code points started
// inside the lexeme, exit_off[] its bytes inside.
typedef struct gm_exit {
    int32_t exit_state;
    const uint8_t *suf;       // into the first token's bytes (the tokenizer's)
    int32_t suf_len;
    int32_t tok_off, n_toks;  // into exit_toks / exit_chars
} gm_exit;

// An inside bitset shared by every published entry with that set.
typedef struct gm_bits {
    uint64_t hash;
    struct gm_bits *next;
    uint32_t w[]; // mask words
} gm_bits;

// The cached walk of every token through one DFA from one state.
typedef struct gm_lexcache {
    uint32_t *inside;       // tokens all of whose bytes stay in the DFA (and
                            // do not end the lexeme); published: shared
                            // (gm_bits), read only
    // Code points each inside token starts (strings with char_end): the few
    // over GM_SHORT_CHARS listed here; every token's count built on first
    // need (a bounded string within GM_SHORT_CHARS of its maxLength).
    int32_t *long_toks;
    uint8_t *long_chars;
    int32_t n_long;
    uint8_t max_chars;      // the largest count of an inside token
    _Atomic(uint8_t *) chars;
    gm_exit *exits;
    int32_t n_exits;
    int32_t *exit_toks;
    uint8_t *exit_chars;
    uint16_t *exit_off;     // bytes of the token inside the lexeme
    int32_t n_exit_toks;
} gm_lexcache;

// A canonical DFA's caches, one per state, filled on first use.
typedef struct gm_dfacache {
    uint64_t hash;
    rx_dfa *own;            // the canonical DFA (gm_vocab_dfacache), the
                            // vocab's own; compared byte for byte on lookup
    int32_t n_states;
    uint8_t *has_out;       // [n_states] 1: some byte moves on
    bool priv;              // made past the budget: not in the vocab's lists,
                            // no entries published, freed by its grammar
    _Atomic(gm_lexcache *) *states;
    struct gm_dfacache *next;
} gm_dfacache;

// A matcher's buffers for building lexeme cache entries (grammar_vocab.c).
typedef struct gm_lexscratch gm_lexscratch;

struct gm_vocab {
    const tok *t;
    int32_t n_tokens;         // tok_vocab_size
    size_t words;             // mask words
    gm_tnode *nodes;
    int32_t n_nodes;
    int32_t max_depth;
    uint16_t byte_depth[256]; // the deepest trie depth each byte reaches
    const uint8_t **tok_bytes;// per id, NULL for special / empty
    int32_t *tok_len;
    int32_t *tok_next;        // the next id with the same bytes, -1
    // DFA caches by hash: lock-free push-only lists, GM_CACHE_BUCKETS heads
    _Atomic(gm_dfacache *) *caches;
    // Published entries' inside bitsets, one per distinct set, the same way
    _Atomic(struct gm_bits *) *bitsets;
    // What the caches hold: DFA caches and entries published, counted on
    // publish against cache_budget (gm_vocab_set_cache_budget).
    size_t cache_budget;
    _Atomic size_t cache_bytes, cache_entries;
    _Atomic uint64_t cache_refused;
};

// ---- grammar --------------------------------------------------------------

// Per DFA facts the matcher needs beyond the tables.
typedef struct gm_dfainfo {
    uint8_t *has_out;   // [n_states] 1: some byte moves on
    int32_t quote_state;// the state after the opening quote (strings), -1 else
    gm_dfacache *cache; // the vocab's cache for this DFA's canonical form
    int32_t *canon;     // [n_states] state -> canonical state
    // Key DFAs: per state, each cached exit token's exit state in this DFA
    // (the canonical form forgets which key a state names); built on use.
    _Atomic(int32_t *) *exit_state;
} gm_dfainfo;

// An object node's keys (grammar_keys.c): per key DFA state, the
// properties some completion of the key names (words per state) and flags.
typedef struct gm_keyinfo {
    uint64_t *names;
    uint8_t *flags;
    size_t words;
} gm_keyinfo;

struct gm_grammar {
    atomic_int refs;
    gm_vocab *v;
    js_schema *s;
    gm_dfainfo *info; // [s->n_dfas]
    gm_keyinfo *keys; // [s->n_nodes], filled for JS_OBJECT nodes
    int ws_max;
    int ws_after;     // blanks allowed after the root value (gm_opts)
};

// ---- matcher --------------------------------------------------------------

enum { FR_VALUE, FR_LEX, FR_OBJECT, FR_ARRAY };
enum {
    PH_OPEN,   // after '{' / '['
    PH_KEY,    // object: a key lexeme on top
    PH_COLON,  // object: key done, before ':'
    PH_VALUE,  // a value frame on top
    PH_AFTER,  // after a member / item
    PH_COMMA,  // after ','
};

typedef struct gm_frame {
    const struct gm_frame *up;
    int32_t node;
    uint8_t kind, phase;
    uint16_t num_len;   // FR_LEX numbers with checks: bytes in num
    uint16_t depth;     // frames below this one
    int32_t dfa;        // FR_LEX: index into the schema's DFAs
    int32_t state;      // FR_LEX: DFA state; FR_OBJECT in PH_COLON: value node
    int32_t count;      // FR_LEX: code points started; containers: members
    int32_t prop;       // FR_OBJECT: property index of the key being read, -1
    const uint64_t *seen; // FR_OBJECT: seen properties (n_props bits) or NULL
    const char *num;    // FR_LEX numbers with checks: the text so far
} gm_frame;

typedef struct gm_thread {
    const gm_frame *top; // NULL: the root value is complete
    int32_t ws;          // whitespace bytes in a row
} gm_thread;

typedef struct gm_arena {
    char *chunks[GM_ARENA_MAX_CHUNKS];
    int n_chunks;   // allocated
    int cur;        // chunk in use
    size_t off;     // in chunks[cur]
} gm_arena;

typedef struct gm_mark {
    int cur;
    size_t off;
} gm_mark;

typedef struct gm_set {
    gm_thread th[GM_MAX_THREADS];
    int n;
} gm_set;

struct gm_matcher {
    gm_grammar *g;
    gm_arena arena[2]; // the live state and the scratch for compaction
    int live;          // which arena holds `cur`
    gm_set cur;
    // the mask walk's per-depth sets and arena marks (vocab max_depth + 2;
    // also scratch sets for gm_accept_bytes and the exit groups)
    gm_set *levels;
    gm_mark *marks;
    uint32_t *scratch; // mask words: a lexeme's inside tokens less long ones
    gm_lexscratch *lex;// where cache entries are built (and used, past the budget)
};

// grammar_match.c
void *gm_arena_alloc(gm_arena *a, size_t n);
gm_mark gm_arena_mark(const gm_arena *a);
void gm_arena_reset(gm_arena *a, gm_mark m);
void gm_arena_free(gm_arena *a);
// The start state: one thread with the root value not yet started.
int gm_set_start(const gm_grammar *g, gm_arena *a, gm_set *out);
// Steps every thread of in by byte b into out (deduplicated); out->n 0: dead.
void gm_set_step(const gm_grammar *g, gm_arena *a, const gm_set *in, uint8_t b, gm_set *out);
// Steps a single thread into out (appended, deduplicated).
void gm_thread_step(const gm_grammar *g, gm_arena *a, const gm_thread *t, uint8_t b, gm_set *out);
// The thread that results from ending t's top lexeme in DFA state `state`
// (keys: which key; the lexeme's own checks but string lengths run), 0 or 1
// threads appended to out.
void gm_thread_end_lexeme(const gm_grammar *g, gm_arena *a, const gm_thread *t, int32_t state,
                          gm_set *out);
bool gm_thread_complete(const gm_grammar *g, const gm_thread *t);
// A deep copy of t's frames into a (compaction).
int gm_thread_copy(const gm_grammar *g, gm_arena *a, const gm_thread *t, gm_thread *out);
// True when the lexeme frame f is a string with a length bound.
bool gm_lex_counted(const gm_grammar *g, const gm_frame *f);
// Number lexemes whose end runs numeric checks (they keep their text).
bool gm_lex_numeric(const js_node *n);

// grammar_keys.c
int gm_keys_init(gm_grammar *g, err_t *err);
void gm_keys_free(gm_grammar *g);
// Whether the key being read in object frame obj, now in key DFA state
// `state`, can still become a key obj accepts (an unseen property, a
// pattern or an additional key).
bool gm_key_viable(const gm_grammar *g, const gm_frame *obj, int32_t state);
// Whether every state the key can move on to from `state` is viable, so the
// vocab's per-state lexeme cache is exact here; else the mask walks.
bool gm_key_cacheable(const gm_grammar *g, const gm_frame *obj, int32_t state);

// grammar_mask.c
size_t gm_mask_set(gm_matcher *m, uint32_t *bits);
// grammar_canon.c: DFA identities for the vocab's caches
#define GM_CANON_MAX 4000 // key DFAs past this many states keep their own form
uint64_t gm_fnv(uint64_t h, const void *p, size_t n);
// A hash of the tables a token walk depends on (not the key labels).
uint64_t gm_dfa_hash(const rx_dfa *d);
bool gm_dfa_same(const rx_dfa *a, const rx_dfa *b);
// Frees a DFA the vocab owns (tables only, no key labels).
void gm_dfa_own_free(rx_dfa *d);
// Moore blocks of d's states (key labels ignored): block[] per state;
// returns the number of blocks, -1 on out of memory.
int32_t gm_dfa_blocks(const rx_dfa *d, int32_t quote, int32_t *block);
// A new DFA of d's blocks, numbered breadth first (map: state -> new state).
rx_dfa *gm_dfa_canon(const rx_dfa *d, const int32_t *block, int32_t nb, int32_t *map);
// A copy of d's tables (map: the identity), for a DFA kept as it is.
rx_dfa *gm_dfa_copy(const rx_dfa *d, int32_t *map);

// grammar_vocab.c
// The vocab's cache for d's canonical form (found or added) and, in *canon,
// a new array (the caller frees it): d's state -> canonical state. NULL
// with err set on out of memory.
gm_dfacache *gm_vocab_dfacache(gm_vocab *v, const rx_dfa *d, int32_t **canon, err_t *err);
// A private cache (c->priv) with its DFA; published ones go with the vocab.
void gm_dfacache_free(gm_dfacache *c);
// The entry for canonical state s: the published one, else built into x
// and published if the budget allows. An entry in x is valid until x's next
// build (one mask). NULL on out of memory.
const gm_lexcache *gm_lexcache_get(gm_vocab *v, gm_dfacache *c, int32_t s, gm_lexscratch *x);
// e's per-token code point counts (e is gm_lexcache_get's answer for s),
// published with e or kept in x like e; NULL on out of memory. Does not
// disturb an entry in x.
const uint8_t *gm_lexcache_chars(gm_vocab *v, gm_dfacache *c, int32_t s, const gm_lexcache *e,
                                 gm_lexscratch *x);
// A matcher's build buffers (the bitset and walk stack allocated now, the
// rest grown on need and kept); NULL on out of memory.
gm_lexscratch *gm_lexscratch_new(const gm_vocab *v);
void gm_lexscratch_free(gm_lexscratch *x);
void gm_vocab_free_caches(gm_vocab *v);

// grammar.c: a grammar over an already compiled node graph (takes s).
gm_grammar *gm_grammar_from_schema(gm_vocab *v, js_schema *s, const gm_opts *o, err_t *err);
// Whether token id would be accepted here, leaving m unchanged (the tests'
// brute-force mask, maskbench's cross-check).
bool gm_matcher_allows(gm_matcher *m, int32_t id);

#endif
