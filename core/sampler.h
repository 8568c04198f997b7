// sampler: picks the next token of each sequence from its row of logits.
// The state of a sequence (RNG, tokens seen) and the request's parameters
// live here, on the host; the arithmetic over the vocabulary is the
// backend's `sample` op (kernels/backend.h; on the CPU kernels/cpu/sample.c),
// which sampler_sample runs on a host row and sampler_sample_batch on a
// step's rows in backend memory, one call for the batch.
//
// Order of operations (as Hugging Face's generate and vLLM apply them):
//   0. the allowed-token bitset (batch calls only; the grammar's): tokens
//      outside it become -inf before anything else;
//   1. repetition_penalty (HF): for every distinct token of prompt +
//      generated text, a positive logit is divided by the penalty and a
//      negative one multiplied by it;
//   2. presence and frequency penalties (OpenAI): over generated tokens only,
//      logit[t] -= presence * (count[t] > 0) + frequency * count[t];
//   3. logit_bias (OpenAI): logit[t] += bias[t];
//   -> logprobs are taken here: log-softmax of these processed logits, before
//      temperature and the top-k / top-p / min-p filters: the model's
//      distribution as the request's penalties and bias shaped it, so a token
//      banned by a -100 bias shows as very unlikely, and the numbers do not
//      change with temperature or the filters (OpenAI reports them so). A
//      token whose logit is -inf has logprob -INFINITY; the API layer decides
//      how to print that.
//   4. temperature: below SAMPLER_GREEDY_BELOW (1e-5, as vLLM) means greedy
//      (argmax, the lowest id wins a tie): 1/temperature would overflow
//      there; else logits / temperature;
//   5. top_k, then top_p over the (renormalised) top-k set, then min_p
//      (keep p >= min_p * p_max), as HF's warpers chain them;
//   6. one draw u from the per-request RNG picks from what is left: the
//      kept tokens are walked most likely first (ties: lower id) until their
//      mass passes u times the kept mass.
//
// Reproducibility: each sequence owns a sampler_state whose RNG is seeded
// from the request's seed and advanced exactly once per sampled token
// (greedy too), so a seeded request yields the same tokens whatever other
// sequences share its batch. Ties in the filters are broken by lower token id.
#ifndef TESSERA_SAMPLER_H
#define TESSERA_SAMPLER_H

#include <stdint.h>

#include "backend.h"
#include "err.h"
#include "util.h"

#define SAMPLER_MAX_TOP_LOGPROBS 20
#define SAMPLER_GREEDY_BELOW 1e-5f

// {token, bias in [-100, 100]}: the backend op's type, so a request's
// array is handed to it as it is.
typedef bk_logit_bias sampler_bias;

// Per-request parameters, validated once at the edge by sampler_params_check.
// Arrays are borrowed: they must outlive every call that uses the params.
typedef struct sampler_params {
    float temperature;         // [0, 2]; 0 (below 1e-5) = greedy
    float top_p;               // (0, 1]; 1 = off
    int top_k;                 // 0 or -1 = off; else keep the k most likely
    float min_p;               // [0, 1]; 0 = off
    uint64_t seed;             // seeds the state's RNG (read by sampler_state_new only)
    float presence_penalty;    // [-2, 2]
    float frequency_penalty;   // [-2, 2]
    float repetition_penalty;  // (0, 2]; 1 = off
    const sampler_bias *logit_bias;
    int n_logit_bias;          // [0, 1024]
    const int32_t *stop_ids;   // tokens that finish the sequence (EOS included by the caller)
    int n_stop_ids;            // [0, 1024]
    int top_logprobs;          // [0, 20] alternatives to report
    int want_logprob;          // 1 (the default): compute the chosen token's logprob; 0 skips
                               // the log-sum-exp pass when top_logprobs is 0 too (logprob NAN)
} sampler_params;

// The defaults: temperature 1, top_p 1, want_logprob 1, everything else off.
sampler_params sampler_params_default(void);

// 0 if every field is in range for a vocabulary of `vocab` tokens (bias and
// stop ids in [0, vocab)); else -1 + err naming the field and its range,
// e.g. "temperature must be in [0, 2], got 3".
int sampler_params_check(const sampler_params *p, int vocab, err_t *err);

typedef bk_logprob sampler_logprob; // {token, logprob}

enum { SAMPLER_FINISH_NONE = 0, SAMPLER_FINISH_STOP = 1 };

typedef struct sampler_result {
    int32_t token;
    float logprob;                                  // the chosen token's (NAN when not wanted)
    int n_top;                                      // = params top_logprobs
    sampler_logprob top[SAMPLER_MAX_TOP_LOGPROBS];  // most likely first (ties: lower id)
    int finish;                                     // SAMPLER_FINISH_STOP if token is a stop id
} sampler_result;

// One sequence's sampling state: its RNG and the distinct tokens that
// appeared in prompt or output with their generated counts, kept as the
// sparse list the backend op reads (about 16 bytes per vocabulary entry,
// allocated once), so sampling never allocates.
typedef struct sampler_state sampler_state;

// Returns a new state for a vocabulary of `vocab` tokens, RNG seeded from
// `seed`; free with sampler_state_free. NULL + err on bad vocab or no memory.
sampler_state *sampler_state_new(int vocab, uint64_t seed, err_t *err);
void sampler_state_free(sampler_state *st);

// Records prompt tokens (they count for repetition_penalty only). Ids
// outside [0, vocab) are refused with -1 + err naming the position.
int sampler_state_prompt(sampler_state *st, const int32_t *ids, int n, err_t *err);

// Records a generated token that was not sampled here (one the engine
// forced); sampler_sample records its own choice. Ids outside [0, vocab)
// are ignored.
void sampler_state_append(sampler_state *st, int32_t token);

// Number of tokens generated so far (sampled or appended).
int64_t sampler_state_generated(const sampler_state *st);

// Samples the next token from logits (vocab floats, host memory; p
// already checked) with the CPU op. logits is modified in place: on return
// it holds the logits after steps 1-3 (penalties and bias), NaN replaced
// by -inf and +inf by FLT_MAX. Fills *out, records the token in st, and
// returns it; returns -1 (and records nothing, the RNG not advanced) if
// `vocab` differs from the state's or no logit is finite.
int sampler_sample(sampler_state *st, const sampler_params *p, float *logits, int vocab, sampler_result *out);

// One row of a batch: the sequence's state (borrowed), its request's
// parameters (checked) and, when a grammar constrains this step, its
// allowed-token bitset (ceil(vocab / 32) words, bit t % 32 of word t / 32
// for token t; NULL: every token).
typedef struct sampler_job {
    sampler_state *st;
    const sampler_params *p;
    const uint32_t *allowed;
} sampler_job;

// The most rows one bk->sample call takes; larger batches take one call
// per this many rows.
#define SAMPLER_BATCH_ROWS 256

// Samples row i of logits (n rows of vocab floats in bk's memory, e.g.
// model_logits after a model_forward with logits NULL) for jobs[i], with
// bk->sample: only the tokens and logprobs come back to the host. The
// rows may be overwritten. Fills out[i] and records each token in its
// state as sampler_sample does; out[i].token is -1 (nothing recorded) for
// a row with no finite logit or a state of another vocabulary.
void sampler_sample_batch(const bk_ops *bk, float *logits, int n, int vocab, const sampler_job *jobs,
                          sampler_result *out);

#endif
