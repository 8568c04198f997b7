// sched_grammar: structured output inside the step loop. See sched_int.h.
//
// A step's masks depend only on tokens already accepted, so they are
// computed while the forward pass runs: the engine thread posts the
// constrained sequences it will sample to the mask threads before
// model_forward, and after it takes what is left itself and waits for the
// rest. The time the step still waits there is the part the forward did
// not hide (tessera_grammar_mask_wait_seconds_total beside
// tessera_grammar_mask_seconds_total).
#include "sched_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#define MASK_THREADS_MAX 4

// ---- one sequence's mask ------------------------------------------------------------

static void set_bit(uint32_t *b, int32_t id, int on) {
    if (on) b[id / 32] |= 1u << (id % 32);
    else b[id / 32] &= ~(1u << (id % 32));
}

static int has_bit(const uint32_t *b, int32_t id) { return (b[id / 32] >> (id % 32)) & 1; }

// The grammar's tokens; the stop ids only where the value is complete (a
// stop id the tokenizer counts as ordinary must not end a half value);
// after a reasoning block, whitespace too.
static void seq_mask(sched *e, seq *s) {
    uint32_t *b = s->allowed;
    memset(b, 0, e->mask_words * sizeof *b);
    gm_mask(s->gm, b);
    const sampler_params *p = &s->q->r->sampling;
    int complete = gm_is_complete(s->gm);
    for (int i = 0; i < p->n_stop_ids; i++) set_bit(b, p->stop_ids[i], complete);
    if (s->gphase == SEQ_G_WS)
        for (size_t w = 0; w < e->mask_words; w++) b[w] |= e->ws_bits[w];
    size_t n = 0;
    for (size_t w = 0; w < e->mask_words; w++) n += (size_t)__builtin_popcount(b[w]);
    s->n_allowed = n;
}

// ---- the mask threads ------------------------------------------------------------

static double run_job(sched *e, seq *s) {
    double t0 = util_now_s();
    seq_mask(e, s);
    return util_now_s() - t0;
}

static void *mask_main(void *arg) {
    sched *e = arg;
    pthread_mutex_lock(&e->mmu);
    for (;;) {
        while (!e->mquit && e->mnext >= e->n_mjobs) pthread_cond_wait(&e->mcv, &e->mmu);
        if (e->mquit) break;
        seq *s = e->mjobs[e->mnext++];
        pthread_mutex_unlock(&e->mmu);
        double dt = run_job(e, s);
        pthread_mutex_lock(&e->mmu);
        e->mbusy += dt;
        if (++e->mfinished == e->n_mjobs) pthread_cond_signal(&e->mdone);
    }
    pthread_mutex_unlock(&e->mmu);
    return NULL;
}

void sched_masks_begin(sched *e, seq **wanted, int n) {
    pthread_mutex_lock(&e->mmu);
    e->n_mjobs = e->mnext = e->mfinished = 0;
    e->mbusy = 0;
    for (int i = 0; i < n; i++)
        if (wanted[i]->gm && wanted[i]->gphase != SEQ_G_THINK) e->mjobs[e->n_mjobs++] = wanted[i];
    if (e->n_mjobs > 0) pthread_cond_broadcast(&e->mcv);
    pthread_mutex_unlock(&e->mmu);
}

void sched_masks_end(sched *e) {
    double t0 = util_now_s();
    pthread_mutex_lock(&e->mmu);
    int n = e->n_mjobs;
    if (n == 0) {
        pthread_mutex_unlock(&e->mmu);
        return;
    }
    while (e->mnext < e->n_mjobs) { // the forward is done: this thread helps
        seq *s = e->mjobs[e->mnext++];
        pthread_mutex_unlock(&e->mmu);
        double dt = run_job(e, s);
        pthread_mutex_lock(&e->mmu);
        e->mbusy += dt;
        e->mfinished++;
    }
    while (e->mfinished < e->n_mjobs) pthread_cond_wait(&e->mdone, &e->mmu);
    double busy = e->mbusy;
    e->n_mjobs = e->mnext = e->mfinished = 0;
    pthread_mutex_unlock(&e->mmu);
    double waited = util_now_s() - t0;
    pthread_mutex_lock(&e->mu);
    e->st.grammar_masks += n;
    e->st.grammar_mask_seconds_sum += busy;
    e->st.grammar_mask_wait_seconds_sum += waited;
    pthread_mutex_unlock(&e->mu);
}

// ---- sequences ----------------------------------------------------------------------

int sched_grammar_seq_open(sched *e, seq *s, err_t *err) {
    const srv_request *r = s->q->r;
    if (!r->grammar) return 0;
    s->gm = gm_matcher_new(r->grammar, err);
    s->allowed = calloc(e->mask_words, sizeof *s->allowed);
    if (!s->gm || !s->allowed) {
        if (s->gm && !s->allowed) err_set(err, "out of memory");
        sched_grammar_seq_close(s);
        return -1;
    }
    s->gphase = r->think_end >= 0 ? SEQ_G_THINK : SEQ_G_ON;
    pthread_mutex_lock(&e->mu);
    e->st.grammar_sequences++;
    pthread_mutex_unlock(&e->mu);
    return 0;
}

void sched_grammar_seq_close(seq *s) {
    gm_matcher_free(s->gm);
    s->gm = NULL;
    free(s->allowed);
    s->allowed = NULL;
}

const uint32_t *sched_grammar_allowed(const seq *s) {
    return s->gm && s->gphase != SEQ_G_THINK ? s->allowed : NULL;
}

int sched_grammar_took(sched *e, seq *s, const sampler_result *res) {
    if (!s->gm || res->finish == SAMPLER_FINISH_STOP) return 0;
    int32_t id = res->token;
    if (s->gphase == SEQ_G_THINK) {
        if (id == s->q->r->think_end) {
            s->gphase = SEQ_G_WS;
            s->ws_left = SRV_THINK_WS;
        }
        return 0;
    }
    if (s->gphase == SEQ_G_WS && has_bit(e->ws_bits, id)) { // the value has not started
        if (--s->ws_left == 0) s->gphase = SEQ_G_ON;
        return 0;
    }
    s->gphase = SEQ_G_ON;
    if (gm_accept_token(s->gm, id) == 0) return 0;
    log_line("error", "sched", "grammar refused token %d that its own mask allowed request=%llu choice=%d "
             "generated=%d (an engine bug)", (int)id, (unsigned long long)s->q->r->id, s->index, s->n_gen);
    return -1;
}

void sched_grammar_log_dead_end(sched *e, const seq *s) {
    size_t len = 0;
    char *text = tok_decode(srv_tokenizer(e->s), s->gen, s->n_gen, 0, &len);
    size_t from = len > 120 ? len - 120 : 0;
    char tail[512];
    size_t k = 0;
    for (size_t i = from; text && i < len && k + 4 < sizeof tail; i++) { // one line: escape controls
        unsigned char ch = (unsigned char)text[i];
        if (ch < 0x20) k += (size_t)snprintf(tail + k, sizeof tail - k, "\\x%02x", ch);
        else tail[k++] = (char)ch;
    }
    tail[k] = '\0';
    log_line("error", "sched", "grammar dead end: no token allowed and the value is not complete (an engine bug) "
             "request=%llu choice=%d generated=%d text_end=\"%s\"", (unsigned long long)s->q->r->id, s->index,
             s->n_gen, tail);
    free(text);
}

// ---- init / free ----------------------------------------------------------------------

// Tokens whose bytes are all space, tab, newline or carriage return.
static void find_ws_tokens(sched *e, const tok *t) {
    int n = tok_vocab_size(t);
    for (int32_t id = 0; id < n && (size_t)id / 32 < e->mask_words; id++) {
        size_t len = 0;
        const char *p = tok_is_special(t, id) ? NULL : tok_token_bytes(t, id, &len);
        if (!p || len == 0 || strspn(p, " \t\n\r") < len) continue;
        set_bit(e->ws_bits, id, 1);
    }
}

int sched_grammar_init(sched *e, err_t *err) {
    const tok *t = srv_tokenizer(e->s);
    int n = t ? tok_vocab_size(t) : 0;
    if (n < e->V) n = e->V;
    e->mask_words = ((size_t)n + 31) / 32;
    e->ws_bits = calloc(e->mask_words, sizeof *e->ws_bits);
    e->mjobs = calloc((size_t)e->o.max_num_seqs, sizeof *e->mjobs);
    if (!e->ws_bits || !e->mjobs) return err_set(err, "out of memory");
    if (t) find_ws_tokens(e, t);
    pthread_mutex_init(&e->mmu, NULL);
    pthread_cond_init(&e->mcv, NULL);
    pthread_cond_init(&e->mdone, NULL);
    // A quarter of the cores: the forward pass they overlap with wants the rest.
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int want = cpus >= 8 ? (int)(cpus / 4) : 1;
    if (want > MASK_THREADS_MAX) want = MASK_THREADS_MAX;
    if (!(e->mthreads = calloc((size_t)want, sizeof *e->mthreads))) return err_set(err, "out of memory");
    for (; e->n_mthreads < want; e->n_mthreads++)
        if (pthread_create(&e->mthreads[e->n_mthreads], NULL, mask_main, e) != 0)
            return err_set(err, "cannot start grammar mask thread %d", e->n_mthreads);
    return 0;
}

void sched_grammar_free(sched *e) {
    if (e->mthreads) {
        pthread_mutex_lock(&e->mmu);
        e->mquit = 1;
        pthread_cond_broadcast(&e->mcv);
        pthread_mutex_unlock(&e->mmu);
        for (int i = 0; i < e->n_mthreads; i++) pthread_join(e->mthreads[i], NULL);
        pthread_mutex_destroy(&e->mmu);
        pthread_cond_destroy(&e->mcv);
        pthread_cond_destroy(&e->mdone);
    }
    free(e->mthreads);
    e->mthreads = NULL;
    e->n_mthreads = 0;
    free(e->ws_bits);
    free(e->mjobs);
}
