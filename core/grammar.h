// grammar: constrained decoding. A JSON Schema becomes a grammar; each
// sequence keeps a matcher; before each sampled token the matcher fills the
// allowed-token bitset the sampler applies (bk_sample_row.allowed), and the
// sampled token advances it.
//
// Three objects:
//   gm_vocab    one per tokenizer: every token's bytes in a trie, and the
//               per-lexeme-state mask caches all grammars share. Built once
//               (a few ms for 128k tokens), read by many threads.
//   gm_grammar  a compiled schema, immutable, refcounted: one may serve many
//               sequences at once (serve caches them by schema hash).
//   gm_matcher  one sequence's position in its grammar. Not shared: one
//               thread at a time per matcher; different matchers may run on
//               different threads at once (the shared caches are published
//               with atomics).
//
// Masks cover the tokenizer's ordinary tokens only: a special token (EOS,
// <|im_end|>, <think>) is never set. The caller allows its stop tokens when
// gm_is_complete says the value may end here, and must stop when the mask
// is empty and the value is complete.
//
// How a mask is computed fast: inside a lexeme (a string, a key, a number)
// the tokens that stay inside it depend only on the lexeme's DFA state, so
// their bitset is computed once per DFA state, cached in the vocab, and
// shared by every grammar and sequence; only tokens that leave the lexeme
// (a closing quote and what follows) walk the full matcher, grouped by the
// bytes after the exit. No allocation per token in the steady state.
#ifndef TESSERA_GRAMMAR_H
#define TESSERA_GRAMMAR_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "tokenizer.h"

typedef struct gm_vocab gm_vocab;
typedef struct gm_grammar gm_grammar;
typedef struct gm_matcher gm_matcher;

// A new vocab over t's tokens (t must outlive it), or NULL with err set.
gm_vocab *gm_vocab_new(const tok *t, err_t *err);
void gm_vocab_free(gm_vocab *v);
// Words in a mask: ceil(vocab size / 32).
size_t gm_mask_words(const gm_vocab *v);

// The vocab's shared caches (per-DFA tables and per-state lexeme entries,
// never evicted) stop growing at a byte budget: GM_CACHE_BUDGET unless set.
// Past it, new entries are built per matcher for each mask and dropped
// (same masks, slower: a first visit's cost on every visit). Set it before
// the vocab is shared between threads.
#define GM_CACHE_BUDGET ((size_t)256 << 20)
void gm_vocab_set_cache_budget(gm_vocab *v, size_t bytes);

typedef struct gm_cache_stats {
    size_t bytes;         // held by published caches (counted on publish)
    size_t entries;       // per-state entries published
    size_t budget;
    uint64_t unpublished; // builds refused by the budget so far
} gm_cache_stats;
// A snapshot (for /metrics); safe while other threads mask.
gm_cache_stats gm_vocab_cache_stats(const gm_vocab *v);

typedef struct gm_opts {
    // Most whitespace bytes (space, \t, \n, \r) allowed between two JSON
    // tokens: -1 unbounded (MaskBench, validation), 0 compact output. A bound
    // keeps a sampling model from filling max_tokens with blanks.
    int ws_max;
    // Most whitespace bytes allowed after the root value (0: none, the
    // value is the whole text). For a value a template continues with
    // blanks (a Hermes tool call: "...}\n</tool_call>"): a tokenizer fuses
    // them with the value's last bytes ("}}\n" is one Qwen token), which
    // only a grammar that takes them lets through.
    int ws_after;
} gm_opts;

// Compiles a JSON Schema (a cJSON object, or true / false). NULL with err
// set to "KEYWORD at POINTER: reason" for a schema this engine cannot
// enforce exactly. The grammar holds one reference (gm_grammar_unref).
gm_grammar *gm_compile_json_schema(gm_vocab *v, const cJSON *schema, const gm_opts *o, err_t *err);
void gm_grammar_ref(gm_grammar *g);
void gm_grammar_unref(gm_grammar *g);
// Bytes the grammar holds (not the vocab's shared caches; a DFA cache made
// past the vocab's budget is the grammar's), for cache bounds.
size_t gm_grammar_bytes(const gm_grammar *g);

// A new matcher at the start of g's value (takes a reference to g).
gm_matcher *gm_matcher_new(gm_grammar *g, err_t *err);
void gm_matcher_free(gm_matcher *m);
// Back to the start, for reuse.
void gm_matcher_reset(gm_matcher *m);

// Fills bits (gm_mask_words words; bit t % 32 of word t / 32) with the
// tokens that may come next. Returns the number of tokens allowed.
size_t gm_mask(gm_matcher *m, uint32_t *bits);
// Advances by one token. 0, or -1 (matcher unchanged) if the token is not
// allowed here; a special token is never allowed.
int gm_accept_token(gm_matcher *m, int32_t id);
// Advances by raw bytes (tests, MaskBench's checks). 0, or -1 unchanged.
int gm_accept_bytes(gm_matcher *m, const char *s, size_t n);
// true: what was accepted so far is one complete value of the grammar.
bool gm_is_complete(const gm_matcher *m);

#endif
