// engine: generation for one sequence over model_forward: prefill the
// prompt (in chunks of the model's max_tokens), then sample and decode one
// token at a time until a stop id, max_tokens, or the caller says stop.
// Each token goes to a callback as soon as it is sampled (the CLI streams
// it; tests collect it).
//
// The server's step loop batches many sequences; this is the one-sequence
// path the CLI and the tests use, written over the same model_forward.
#ifndef TESSERA_ENGINE_H
#define TESSERA_ENGINE_H

#include <stdint.h>

#include "err.h"
#include "kv.h"
#include "model.h"
#include "sampler.h"

enum {
    ENGINE_FINISH_LENGTH = 0, // max_tokens reached
    ENGINE_FINISH_STOP = 1,   // a stop id was sampled (it is passed to the callback, then generation ends)
    ENGINE_FINISH_CALLER = 2, // the callback returned non-zero
};

// Called once per sampled token. Return 0 to go on, non-zero to stop.
typedef int (*engine_token_fn)(void *ctx, int32_t token, const sampler_result *r);

typedef struct engine_gen_opts {
    int slot;                 // adapter slot, -1 = base model
    int max_tokens;           // tokens to generate at most (>= 1)
    const sampler_params *sp; // checked by engine_generate; stop_ids end generation
} engine_gen_opts;

typedef struct engine_stats {
    int prompt_tokens, generated;
    int finish;               // ENGINE_FINISH_*
    double prefill_s, decode_s; // wall time of the prefill forwards, of the rest
} engine_stats;

// Generates from prompt (n_prompt >= 1 ids) in a new sequence of kv, which
// must have room for n_prompt + max_tokens positions; the sequence is
// closed before returning. Fills *st (if not NULL). Returns 0, or -1 + err
// (bad params, no room, forward failure).
int engine_generate(model *m, kv_cache *kv, const int32_t *prompt, int n_prompt, const engine_gen_opts *o,
                    engine_token_fn fn, void *ctx, engine_stats *st, err_t *err);

#endif
