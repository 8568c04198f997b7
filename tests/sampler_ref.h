// sampler_ref: the previous host sampler (see sampler_ref.c), for tests
// and benches only. Same parameters and results as core/sampler.h; its
// own state type, created and freed as sampler_state is.
#ifndef TESSERA_SAMPLER_REF_H
#define TESSERA_SAMPLER_REF_H

#include "../core/sampler.h"

typedef struct sref_state sref_state;

// Returns a new state (free with sref_state_free); NULL + err as sampler_state_new.
sref_state *sref_state_new(int vocab, uint64_t seed, err_t *err);
void sref_state_free(sref_state *st);
int sref_state_prompt(sref_state *st, const int32_t *ids, int n, err_t *err);
void sref_state_append(sref_state *st, int32_t token);
int64_t sref_state_generated(const sref_state *st);

// The old sampler_sample: draws u from the state's RNG.
int sref_sample(sref_state *st, const sampler_params *p, float *logits, int vocab, sampler_result *out);
// The same with the draw u in [0, 1) given (the RNG is not touched).
int sref_sample_u(sref_state *st, const sampler_params *p, float *logits, int vocab, double u, sampler_result *out);

#endif
