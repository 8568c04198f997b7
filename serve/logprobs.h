// logprobs: the per-token log probabilities of an answer, from the
// engine's sampler_result to the api_token_logprob entries the response
// builders print (api.h), with the token texts decoded.
//
// An entry owns its strings (shown const because api.h borrows them):
// free each with lp_free. An lp_list owns its entries.
#ifndef TESSERA_LOGPROBS_H
#define TESSERA_LOGPROBS_H

#include "api.h"
#include "sampler.h"
#include "tokenizer.h"

// Fills out with the sampled token of r and its r->n_top alternatives,
// each text decoded with t (borrowed; a partial UTF-8 character decodes to
// U+FFFD bytes as tok_decode does). Returns 0, or -1 when out of memory:
// out is then partly filled and still needs lp_free.
int lp_make(const tok *t, const sampler_result *r, api_token_logprob *out);

// Frees the strings and alternatives of one entry (not the entry itself).
void lp_free(api_token_logprob *lp);

// A growable list of entries, zero-initialised.
typedef struct lp_list {
    api_token_logprob *v;
    int n, cap;
} lp_list;

// Appends *lp (taking its strings). Returns 0, or -1 when out of memory:
// lp is freed then.
int lp_list_push(lp_list *l, api_token_logprob *lp);
void lp_list_free(lp_list *l);

#endif
