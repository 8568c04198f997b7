// logprobs: decoded per-token log probabilities. See logprobs.h.
#include "logprobs.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

// The decoded text of one token id (a new string; U+FFFD for a partial character).
static char *token_text(const tok *t, int32_t id, size_t *len) {
    char *s = tok_decode(t, &id, 1, 0, len);
    if (!s) {
        *len = 0;
        return strdup("");
    }
    return s;
}

int lp_make(const tok *t, const sampler_result *r, api_token_logprob *out) {
    memset(out, 0, sizeof *out);
    out->token = token_text(t, r->token, &out->len);
    out->logprob = r->logprob;
    if (r->n_top > 0) {
        api_top_logprob *top = calloc((size_t)r->n_top, sizeof *top);
        if (!top) return -1;
        for (int k = 0; k < r->n_top; k++) {
            top[k].token = token_text(t, r->top[k].token, &top[k].len);
            top[k].logprob = r->top[k].logprob;
        }
        out->top = top;
        out->n_top = r->n_top;
    }
    return out->token ? 0 : -1;
}

void lp_free(api_token_logprob *lp) {
    util_free_const(lp->token);
    for (int t = 0; t < lp->n_top; t++) util_free_const(lp->top[t].token);
    util_free_const(lp->top);
}

int lp_list_push(lp_list *l, api_token_logprob *lp) {
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 64;
        api_token_logprob *v = realloc(l->v, (size_t)cap * sizeof *v);
        if (!v) {
            lp_free(lp);
            return -1;
        }
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = *lp;
    return 0;
}

void lp_list_free(lp_list *l) {
    for (int k = 0; k < l->n; k++) lp_free(&l->v[k]);
    free(l->v);
    *l = (lp_list){0};
}
