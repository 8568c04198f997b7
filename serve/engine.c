#include "engine.h"

#include <stdlib.h>

#include "util.h"

// Prompt ids [from, from + n) at their positions; logits of the last one
// (when want_last) into logits.
static int forward_span(model *m, kv_cache *kv, int seq, int slot, const int32_t *ids, int from, int n,
                        int want_last, int32_t *pos, int32_t *sq, int32_t *ad, uint8_t *want, float *logits,
                        err_t *err) {
    for (int i = 0; i < n; i++) pos[i] = from + i, sq[i] = seq, ad[i] = slot, want[i] = 0;
    want[n - 1] = (uint8_t)want_last;
    model_batch b = {n, ids + from, pos, sq, ad, want};
    return model_forward(m, kv, &b, logits, err);
}

static int prefill(model *m, kv_cache *kv, int seq, int slot, const int32_t *prompt, int n_prompt, float *logits,
                   err_t *err) {
    int chunk = model_max_tokens(m);
    int32_t *pos = malloc((size_t)chunk * sizeof *pos), *sq = malloc((size_t)chunk * sizeof *sq);
    int32_t *ad = malloc((size_t)chunk * sizeof *ad);
    uint8_t *want = malloc((size_t)chunk);
    int rc = pos && sq && ad && want ? 0 : err_set(err, "out of memory");
    for (int from = 0; rc == 0 && from < n_prompt; from += chunk) {
        int n = n_prompt - from < chunk ? n_prompt - from : chunk;
        rc = forward_span(m, kv, seq, slot, prompt, from, n, from + n == n_prompt, pos, sq, ad, want, logits, err);
    }
    free(pos);
    free(sq);
    free(ad);
    free(want);
    return rc;
}

int engine_generate(model *m, kv_cache *kv, const int32_t *prompt, int n_prompt, const engine_gen_opts *o,
                    engine_token_fn fn, void *ctx, engine_stats *st, err_t *err) {
    const model_config *cfg = model_get_config(m);
    int V = cfg->vocab_size;
    engine_stats s = {.prompt_tokens = n_prompt, .finish = ENGINE_FINISH_LENGTH};
    if (n_prompt < 1) return err_set(err, "empty prompt: at least one token is needed");
    if (o->max_tokens < 1) return err_set(err, "max_tokens %d must be >= 1", o->max_tokens);
    if (sampler_params_check(o->sp, V, err) < 0) return -1;
    int seq = kv_seq_open(kv, err);
    if (seq < 0) return -1;
    float *logits = malloc((size_t)V * sizeof *logits);
    sampler_state *ss = sampler_state_new(V, o->sp->seed, err);
    int rc = -1;
    if (!logits || !ss) {
        if (!logits) err_set(err, "out of memory");
        goto done;
    }
    if (kv_seq_reserve(kv, seq, (int64_t)n_prompt + o->max_tokens, err) < 0 ||
        sampler_state_prompt(ss, prompt, n_prompt, err) < 0)
        goto done;

    double t0 = util_now_s();
    if (prefill(m, kv, seq, o->slot, prompt, n_prompt, logits, err) < 0) goto done;
    double t1 = util_now_s();
    s.prefill_s = t1 - t0;
    for (;;) {
        sampler_result r;
        int32_t tok = sampler_sample(ss, o->sp, logits, V, &r);
        if (tok < 0) {
            err_set(err, "sampling failed at generated token %d: no finite logit", s.generated);
            goto done;
        }
        s.generated++;
        if (fn && fn(ctx, tok, &r)) {
            s.finish = ENGINE_FINISH_CALLER;
            break;
        }
        if (r.finish == SAMPLER_FINISH_STOP) {
            s.finish = ENGINE_FINISH_STOP;
            break;
        }
        if (s.generated == o->max_tokens) break;
        int32_t pos = n_prompt + s.generated - 1, sq = seq, ad = o->slot;
        model_batch b = {1, &tok, &pos, &sq, &ad, NULL};
        if (model_forward(m, kv, &b, logits, err) < 0) goto done;
    }
    s.decode_s = util_now_s() - t1;
    rc = 0;
done:
    kv_seq_close(kv, seq);
    sampler_state_free(ss);
    free(logits);
    if (st) *st = s;
    return rc;
}
