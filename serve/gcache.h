// gcache: the compiled grammars behind response_format and tool calls
// (core/grammar.h), shared by every request of the server.
//
// One gm_vocab for the served tokenizer, built on the first constrained
// request (on the thread pool, never on the loop thread; a server that
// never sees one never pays for it). Grammars are cached by a 64-bit hash
// of the schema text and the options (text and options are compared too, so a
// hash collision is a miss, never a wrong grammar), least recently used
// first out once their gm_grammar_bytes pass the bound. A grammar is
// refcounted: gc_get hands the caller its own reference, so one evicted
// while sequences still run on it lives until the last of them ends.
//
// Threading: every function but gc_new / gc_free may run on any thread at
// once (one mutex guards the table; the vocab build and the compiles run
// outside it, so a long compile blocks no other lookup).
#ifndef TESSERA_GCACHE_H
#define TESSERA_GCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "grammar.h"
#include "tokenizer.h"

typedef struct gc_cache gc_cache;

// A new cache over t's tokens (borrowed: t must outlive the cache), the
// compile options o (copied) and a bound of max_bytes grammar bytes (0 =
// GC_DEFAULT_BYTES). NULL when out of memory.
#define GC_DEFAULT_BYTES ((size_t)256 << 20)
gc_cache *gc_new(const tok *t, const gm_opts *o, size_t max_bytes);
void gc_free(gc_cache *c);

// The grammar of schema_text (a JSON text: an object, or true / false),
// compiled now or found in the cache; the caller owns one reference
// (gm_grammar_unref). NULL + err: the text is not JSON, or the engine
// refuses the schema (err holds the compiler's "KEYWORD at POINTER: reason"),
// or the vocab could not be built. May take milliseconds: not on the loop.
gm_grammar *gc_get(gc_cache *c, const char *schema_text, err_t *err);
// gc_get with other compile options than the cache's (o copied; part of
// the key): a Hermes tool call's grammar takes the template's blanks
// after it (gm_opts.ws_after).
gm_grammar *gc_get_opts(gc_cache *c, const char *schema_text, const gm_opts *o, err_t *err);

typedef struct gc_stats {
    int64_t hits, misses, compile_errors, evictions;
    int64_t compile_us;  // time spent compiling (misses), microseconds
    size_t bytes;        // grammar bytes held by the cache now
    int entries;
    gm_cache_stats vocab; // the vocab's shared lexeme caches (zero before it is built)
} gc_stats;

void gc_get_stats(gc_cache *c, gc_stats *out);

#endif
