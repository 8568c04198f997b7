// sched_grammar: structured output and tool calls inside the step loop.
// See sched_int.h, and server.h for what each constraint promises.
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

// ---- one sequence's constraint -----------------------------------------------------
//
// Each choice walks its own phases (sched_int.h), after a reasoning block
// when think_end >= 0 (THINK, then as below with up to SRV_THINK_WS blanks):
//
//   response_format  WS -> ON, a stop id once the value is complete
//   Hermes AUTO      FREE -call_open-> WS -> ON -complete-> [CLOSE] -call_close-> FREE
//   Hermes REQUIRED  OPEN -call_open-> WS -> ON -> [CLOSE] -call_close-> OPEN, or a stop id
//   Hermes BAN       FREE with call_open masked (also AUTO once max_calls calls opened)
//   Llama AUTO, BAN  FIRST -'{' (AUTO only)-> ON, a stop id once complete;
//                    FIRST -any other token (but a few blanks or
//                    <|python_tag|>)-> FREE
//   Llama REQUIRED   ON, a stop id once complete
//
// A Hermes tag is an ordinary token whose bytes the matcher would take
// inside a JSON string, so it is cleared from a call's mask here and set
// only where a call opens or closes. A call is an object: once complete
// the matcher could take only blanks, and the template's blanks are ours
// (SRV_CALL_WS, not fed to the matcher), so its mask is not consulted.
// Free phases cost nothing: no mask (or, for a ban, one filled when the
// phase begins).

static void set_bit(uint32_t *b, int32_t id, int on) {
    if (on) b[id / 32] |= 1u << (id % 32);
    else b[id / 32] &= ~(1u << (id % 32));
}

static int has_bit(const uint32_t *b, int32_t id) { return (b[id / 32] >> (id % 32)) & 1; }

static int hermes(const seq *s) { return s->tools != SRV_TOOLS_OFF && s->q->r->call_open >= 0; }

static int under_cap(const seq *s) {
    int cap = s->q->r->max_calls;
    return cap <= 0 || s->n_calls < cap;
}

// Hermes free text where no call may open.
static int free_banned(const seq *s) { return hermes(s) && (s->tools == SRV_TOOLS_BAN || !under_cap(s)); }

static void set_stops(const seq *s, uint32_t *b, int on) {
    const sampler_params *p = &s->q->r->sampling;
    for (int i = 0; i < p->n_stop_ids; i++) set_bit(b, p->stop_ids[i], on);
}

// Inside a value or a call (WS, ON). A response_format value ends with a
// stop id, which the tokenizer may count as ordinary, so never before it
// is complete; a Llama call likewise, and nothing else once complete; a
// Hermes call ends with blanks then call_close, never a stop id.
static void mask_value(sched *e, seq *s, uint32_t *b) {
    const srv_request *r = s->q->r;
    int complete = gm_is_complete(s->gm);
    if (s->tools == SRV_TOOLS_OFF || !complete) gm_mask(s->gm, b);
    if (hermes(s)) {
        set_bit(b, r->call_open, 0);
        set_bit(b, r->call_close, complete);
        set_stops(s, b, 0);
        if (complete && s->ws_left > 0)
            for (size_t w = 0; w < e->mask_words; w++) b[w] |= e->ws_bits[w];
    } else {
        set_stops(s, b, complete);
    }
    if (s->gphase == SEQ_G_WS)
        for (size_t w = 0; w < e->mask_words; w++) b[w] |= e->ws_bits[w];
}

// Llama's first token: anything that does not start with '{' (blanks and
// <|python_tag|>, which the reply parser lets a call follow, only while
// ws_left lasts); under AUTO also the '{' tokens the call may start with.
static void mask_first(sched *e, seq *s, uint32_t *b) {
    if (s->tools == SRV_TOOLS_AUTO) {
        gm_mask(s->gm, b);
        for (size_t w = 0; w < e->mask_words; w++) b[w] &= e->brace_bits[w];
    }
    for (size_t w = 0; w < e->mask_words; w++) {
        b[w] |= ~(e->brace_bits[w] | e->ws_bits[w]);
        if (s->ws_left > 0) b[w] |= e->ws_bits[w];
    }
    if (e->python_tag >= 0) set_bit(b, e->python_tag, s->ws_left > 0);
}

// Hermes' bitsets made of a few known tokens: between required calls
// (OPEN), after a complete call (CLOSE), banned free text (FREE).
static void mask_tags(sched *e, seq *s, uint32_t *b) {
    const srv_request *r = s->q->r;
    if (s->gphase == SEQ_G_FREE) {
        memset(b, 0xff, e->mask_words * sizeof *b);
        set_bit(b, r->call_open, 0);
        set_bit(b, r->call_close, 0);
        return;
    }
    if (s->ws_left > 0) memcpy(b, e->ws_bits, e->mask_words * sizeof *b);
    if (s->gphase == SEQ_G_CLOSE) {
        set_bit(b, r->call_close, 1);
        return;
    }
    if (under_cap(s)) set_bit(b, r->call_open, 1);
    if (s->n_calls > 0) set_stops(s, b, 1);
}

static void seq_mask(sched *e, seq *s) {
    uint32_t *b = s->allowed;
    memset(b, 0, e->mask_words * sizeof *b);
    if (s->gphase == SEQ_G_WS || s->gphase == SEQ_G_ON) mask_value(e, s, b);
    else if (s->gphase == SEQ_G_FIRST) mask_first(e, s, b);
    else mask_tags(e, s, b);
    size_t n = 0;
    for (size_t w = 0; w < e->mask_words; w++) n += (size_t)__builtin_popcount(b[w]);
    s->n_allowed = n;
}

// Phases whose mask changes with every token: computed on the mask threads.
static int needs_mask(const seq *s) { return s->allowed && s->gphase != SEQ_G_THINK && s->gphase != SEQ_G_FREE; }

// Enters a phase; banned free text gets its bitset now, once.
static void enter(sched *e, seq *s, int phase, int ws_left) {
    s->gphase = phase;
    s->ws_left = ws_left;
    if (phase == SEQ_G_FREE && free_banned(s)) seq_mask(e, s);
}

// Where the constraint starts: at the first token, or after the reasoning
// block's end (with ws blank tokens allowed first).
static void enter_start(sched *e, seq *s, int ws) {
    int req = s->tools == SRV_TOOLS_REQUIRED;
    if (hermes(s)) enter(e, s, req ? SEQ_G_OPEN : SEQ_G_FREE, ws);
    else if (s->tools != SRV_TOOLS_OFF && !req) enter(e, s, SEQ_G_FIRST, ws ? ws : SRV_CALL_WS);
    else enter(e, s, ws ? SEQ_G_WS : SEQ_G_ON, ws); // a response_format value, a required Llama call
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
        if (needs_mask(wanted[i])) e->mjobs[e->n_mjobs++] = wanted[i];
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

static const char *phase_name(int phase) {
    static const char *n[] = {"none", "think", "ws", "value", "free", "first", "open", "close"};
    return phase >= 0 && phase <= SEQ_G_CLOSE ? n[phase] : "?";
}

static const char *mode_name(int mode) {
    static const char *n[] = {"off", "ban", "auto", "required"};
    return mode >= SRV_TOOLS_OFF && mode <= SRV_TOOLS_REQUIRED ? n[mode] : "?";
}

int sched_grammar_seq_open(sched *e, seq *s, err_t *err) {
    const srv_request *r = s->q->r;
    int tools = r->grammar ? SRV_TOOLS_OFF : r->tools_mode;
    if (!r->grammar && tools == SRV_TOOLS_OFF) return 0;
    gm_grammar *g = r->grammar ? r->grammar : r->call_grammar;
    if (!g && tools != SRV_TOOLS_BAN)
        return err_set(err, "tools_mode %s needs a call_grammar (an engine contract violation)", mode_name(tools));
    s->tools = tools;
    s->n_calls = 0;
    if (g && !(s->gm = gm_matcher_new(g, err))) return -1;
    if (!(s->allowed = calloc(e->mask_words, sizeof *s->allowed))) {
        sched_grammar_seq_close(s);
        return err_set(err, "out of memory");
    }
    if (r->think_end >= 0) enter(e, s, SEQ_G_THINK, 0);
    else enter_start(e, s, 0);
    pthread_mutex_lock(&e->mu);
    if (tools == SRV_TOOLS_OFF) e->st.grammar_sequences++;
    else e->st.tool_sequences++;
    pthread_mutex_unlock(&e->mu);
    return 0;
}

void sched_grammar_seq_close(seq *s) {
    gm_matcher_free(s->gm);
    s->gm = NULL;
    free(s->allowed);
    s->allowed = NULL;
    s->gphase = 0;
}

const uint32_t *sched_grammar_allowed(const seq *s) {
    if (!s->allowed || s->gphase == SEQ_G_THINK) return NULL;
    return s->gphase != SEQ_G_FREE || free_banned(s) ? s->allowed : NULL;
}

static int refused(const seq *s, int32_t id, const char *what) {
    log_line("error", "sched", "%s token %d in phase %s request=%llu choice=%d generated=%d call=%d (an engine bug)",
             what, (int)id, phase_name(s->gphase), (unsigned long long)s->q->r->id, s->index, s->n_gen, s->n_calls);
    return -1;
}

static int matcher_take(seq *s, int32_t id) {
    return gm_accept_token(s->gm, id) == 0 ? 0 : refused(s, id, "the grammar refused the masked-in");
}

// A Hermes call_open: a fresh matcher, up to SRV_CALL_WS blanks, the object.
static int open_call(sched *e, seq *s) {
    s->n_calls++;
    gm_matcher_reset(s->gm);
    enter(e, s, SEQ_G_WS, SRV_CALL_WS);
    return 0;
}

static int close_call(sched *e, seq *s) {
    if (s->tools == SRV_TOOLS_REQUIRED) enter(e, s, SEQ_G_OPEN, SRV_CALL_WS);
    else enter(e, s, SEQ_G_FREE, 0);
    return 0;
}

// The phases' moves; a token no move takes was outside the mask.
static int took_in_phase(sched *e, seq *s, int32_t id) {
    const srv_request *r = s->q->r;
    int ws = has_bit(e->ws_bits, id);
    switch (s->gphase) {
    case SEQ_G_THINK:
        if (id == r->think_end) enter_start(e, s, SRV_THINK_WS);
        return 0;
    case SEQ_G_FREE:
        if (!hermes(s)) return 0;
        if (free_banned(s)) return id == r->call_open || id == r->call_close ? refused(s, id, "banned") : 0;
        return id == r->call_open ? open_call(e, s) : 0; // a stray call_close in free text is text
    case SEQ_G_FIRST:
        if ((ws || id == e->python_tag) && s->ws_left > 0) return s->ws_left--, 0;
        if (!has_bit(e->brace_bits, id)) return enter(e, s, SEQ_G_FREE, 0), 0;
        if (s->tools != SRV_TOOLS_AUTO) return refused(s, id, "banned");
        s->gphase = SEQ_G_ON;
        return matcher_take(s, id);
    case SEQ_G_OPEN:
        if (ws && s->ws_left > 0) return s->ws_left--, 0;
        return id == r->call_open && under_cap(s) ? open_call(e, s) : refused(s, id, "unmasked");
    case SEQ_G_WS:
        if (ws) { // the value has not started
            if (--s->ws_left == 0) enter(e, s, SEQ_G_ON, SRV_CALL_WS);
            return 0;
        }
        enter(e, s, SEQ_G_ON, SRV_CALL_WS);
        return matcher_take(s, id);
    case SEQ_G_ON:
        if (hermes(s) && gm_is_complete(s->gm)) {
            if (id == r->call_close) return close_call(e, s);
            if (ws && s->ws_left > 0) return enter(e, s, SEQ_G_CLOSE, s->ws_left - 1), 0;
            return refused(s, id, "unmasked");
        }
        if (hermes(s) && (id == r->call_open || id == r->call_close)) return refused(s, id, "unmasked");
        return matcher_take(s, id);
    case SEQ_G_CLOSE:
        if (id == r->call_close) return close_call(e, s);
        if (ws && s->ws_left > 0) return s->ws_left--, 0;
        return refused(s, id, "unmasked");
    }
    return 0;
}

int sched_grammar_took(sched *e, seq *s, const sampler_result *res) {
    if (!s->gphase || res->finish == SAMPLER_FINISH_STOP) return 0;
    return took_in_phase(e, s, res->token);
}

void sched_grammar_log_dead_end(sched *e, const seq *s) {
    size_t len = 0;
    char *text = e->gtok ? tok_decode(e->gtok, s->gen, s->n_gen, 0, &len) : NULL;
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
             "request=%llu choice=%d generated=%d phase=%s tools=%s call=%d text_end=\"%s\"",
             (unsigned long long)s->q->r->id, s->index, s->n_gen, phase_name(s->gphase), mode_name(s->tools),
             s->n_calls, tail);
    free(text);
}

// ---- init / free ----------------------------------------------------------------------

// Tokens whose bytes are all space, tab, newline or carriage return
// (ws_bits), and those that start with '{' after any of them (brace_bits:
// how a Llama 3.1 reply opens a call).
static void find_tokens(sched *e, const tok *t) {
    int n = tok_vocab_size(t);
    for (int32_t id = 0; id < n && (size_t)id / 32 < e->mask_words; id++) {
        size_t len = 0;
        const char *p = tok_is_special(t, id) ? NULL : tok_token_bytes(t, id, &len);
        if (!p || len == 0) continue;
        size_t blanks = 0;
        while (blanks < len && p[blanks] && strchr(" \t\n\r", p[blanks])) blanks++;
        if (blanks == len) set_bit(e->ws_bits, id, 1);
        else if (p[blanks] == '{') set_bit(e->brace_bits, id, 1);
    }
}

int sched_grammar_init(sched *e, const tok *t, err_t *err) {
    e->gtok = t;
    e->python_tag = t ? tok_token_id(t, "<|python_tag|>") : -1;
    int n = t ? tok_vocab_size(t) : 0;
    if (n < e->V) n = e->V;
    e->mask_words = ((size_t)n + 31) / 32;
    e->ws_bits = calloc(e->mask_words, sizeof *e->ws_bits);
    e->brace_bits = calloc(e->mask_words, sizeof *e->brace_bits);
    e->mjobs = calloc((size_t)e->o.max_num_seqs, sizeof *e->mjobs);
    if (!e->ws_bits || !e->brace_bits || !e->mjobs) return err_set(err, "out of memory");
    if (t) find_tokens(e, t);
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
    free(e->brace_bits);
    free(e->mjobs);
}
