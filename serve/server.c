// server: routes, the life of a generation request ("job"), the adapters
// watcher, reloads and signals. See
// server.h for the routes and the engine contract.
//
// A job is one HTTP generation request. It lives through three states:
// TOKENIZING (chat template + tokenizer on the thread pool), GENERATING
// (one srv_request per prompt submitted to the engine; tokens come back to
// the sink on the loop thread, become text through a tok_stream per choice,
// pass the stop-string filter and go out as SSE chunks or into the final
// JSON) and done. The client may vanish at any point: the http close
// callback cancels the engine work, and the job is freed once the engine
// has finished every choice.
#include "server.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "api.h"
#include "chat.h"
#include "files.h"
#include "ftjobs.h"
#include "http.h"
#include "log.h"
#include "registry.h"
#include "reply.h"
#include "tenants.h"
#include "util.h"

#define SRV_DEFAULT_RESCAN_MS 2000
#define SRV_WATCH_DEBOUNCE_MS 100

typedef struct job job;

struct srv {
    srv_config cfg;
    char *model_dir, *adapters_dir, *tenants_path, *host;
    uv_loop_t loop;
    http_server *http;
    model_config model;
    tok *tok;
    int has_chat;
    chat_family family;
    char *bos;
    char *base_id;
    int64_t base_created;
    int32_t eos[MODEL_MAX_EOS + 1];
    int n_eos;
    util_rng rng;
    uint64_t next_req_id;

    tn_table *tenants;
    reg_snapshot *adapters;

    // adapters watcher: one scan at a time on the thread pool
    uv_timer_t rescan_timer, debounce_timer;
    uv_fs_event_t watch;
    int watching;
    uv_work_t scan_work;
    int scanning, scan_again;
    reg_snapshot *scan_prev, *scan_result;
    reg_changes scan_changes;
    err_t scan_err;

    // tenants reload
    uv_work_t tn_work;
    int tn_loading;
    tn_table *tn_new;
    err_t tn_err;

    uv_signal_t sigterm, sigint, sighup;
    srv_engine engine;
    int has_engine;
    job *jobs;
    int stopping;
    metrics_requests requests; // GET /metrics
    // Adapters registered with POST /v1/load_lora_adapter (held references);
    // they shadow a folder of the same name.
    reg_entry **runtime;
    int n_runtime;
    // Fine-tuning (--data-dir): the files and jobs stores, and the callers
    // waiting for an adapters scan that starts after they asked (rescan_now).
    files_store *files;
    ftjob_store *ftjobs;
    uint64_t scan_seq;         // scans started
    struct scan_waiter *waiters;
};

typedef struct scan_waiter {
    uint64_t after;            // done once a scan numbered above this has finished
    void (*done)(void *arg);
    void *arg;
    struct scan_waiter *next;
} scan_waiter;

// ---- auth and model visibility ---------------------------------------------------

// Resolves the tenant or fills a 401.
static const tn_tenant *authenticate(srv *s, const http_req *q, api_error *e) {
    const char *auth = http_req_header(q, "authorization");
    const tn_tenant *tn = NULL;
    switch (tn_auth(s->tenants, auth, &tn)) {
    case TN_AUTH_OK:
        return tn;
    case TN_AUTH_MISSING:
        api_err_set(e, 401, "invalid_request_error", NULL, NULL,
                    "You didn't provide an API key. You need to provide your API key in an Authorization header "
                    "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).");
        return NULL;
    case TN_AUTH_INVALID:
    default: {
        char masked[64];
        tn_mask_key(auth, masked, sizeof masked);
        api_err_set(e, 401, "invalid_request_error", NULL, "invalid_api_key",
                    "Incorrect API key provided: %s. Ask this server's operator for a valid key.", masked);
        return NULL;
    }
    }
}

static int runtime_index(const srv *s, const char *name) {
    for (int i = 0; i < s->n_runtime; i++)
        if (strcmp(s->runtime[i]->name, name) == 0) return i;
    return -1;
}

// The adapter named name: a runtime-loaded one first, else the folder's.
static const reg_entry *find_adapter(const srv *s, const char *name) {
    int i = runtime_index(s, name);
    return i >= 0 ? s->runtime[i] : reg_find(s->adapters, name);
}

// 1 if the tenant may see and use adapter name: a fine-tuned model ("ft:")
// by its job's tenant only, whatever the globs say (ftjobs.h); any other by
// the tenant's globs.
static int adapter_allowed(const srv *s, const tn_tenant *tn, const char *name) {
    if (ftjob_is_ft_name(name)) {
        const char *owner = ftjob_model_owner(s->ftjobs, name);
        return owner && strcmp(owner, tn->name) == 0;
    }
    return tn_allows(tn, name);
}

// 1 if the tenant may use model id; *entry gets the adapter (NULL = base).
static int model_visible(srv *s, const tn_tenant *tn, const char *id, const reg_entry **entry) {
    *entry = NULL;
    if (strcmp(id, s->base_id) == 0) return tn_allows_base(tn);
    const reg_entry *e = find_adapter(s, id);
    if (!e || !adapter_allowed(s, tn, id)) return 0;
    *entry = e;
    return 1;
}

static int model_not_found(api_error *e, const char *id, const char *param) {
    return api_err_set(e, 404, "invalid_request_error", param, "model_not_found",
                       "The model '%s' does not exist or you do not have access to it.", id);
}

// ---- /v1/models -------------------------------------------------------------------

static api_model base_model(srv *s) {
    return (api_model){.id = s->base_id, .created = s->base_created, .owned_by = "tessera"};
}

static api_model adapter_model(srv *s, const reg_entry *e) {
    return (api_model){.id = e->name, .created = e->created, .owned_by = "tessera", .parent = s->base_id};
}

static void route_models(srv *s, const http_req *q, http_res *res, const tn_tenant *tn) {
    int cap = (s->adapters ? s->adapters->n + 1 : 1) + s->n_runtime, n = 0;
    api_model *m = calloc((size_t)cap, sizeof *m);
    if (!m) {
        reply_json(res, 500, NULL);
        return;
    }
    if (tn_allows_base(tn)) m[n++] = base_model(s);
    for (int i = 0; s->adapters && i < s->adapters->n; i++) {
        const reg_entry *e = s->adapters->entries[i];
        if (e->ok && adapter_allowed(s, tn, e->name) && runtime_index(s, e->name) < 0) m[n++] = adapter_model(s, e);
    }
    for (int i = 0; i < s->n_runtime; i++)
        if (adapter_allowed(s, tn, s->runtime[i]->name)) m[n++] = adapter_model(s, s->runtime[i]);
    reply_access(&s->requests, q, 200, tn->name, NULL);
    reply_json(res, 200, api_models_json(m, n));
    free(m);
}

static void route_model(srv *s, const http_req *q, http_res *res, const tn_tenant *tn, const char *id_enc) {
    char *id = http_url_decode(strdup(id_enc));
    const reg_entry *e = NULL;
    api_error err;
    if (!id) {
        reply_json(res, 500, NULL);
    } else if (!model_visible(s, tn, id, &e)) {
        model_not_found(&err, id, "model");
        reply_error_logged(&s->requests, q, res, &err, tn->name, NULL);
    } else {
        api_model m = e ? adapter_model(s, e) : base_model(s);
        reply_access(&s->requests, q, 200, tn->name, id);
        reply_json(res, 200, api_model_json(&m));
    }
    free(id);
}

// ---- jobs: state ------------------------------------------------------------------

enum { JOB_TOKENIZING, JOB_GENERATING, JOB_DONE };

typedef struct choice {
    int index;
    tok_stream *ts;
    util_buf text;             // non-streamed: the text so far
    util_buf held;             // text held back: it may be the start of a stop string
    api_token_logprob *lps;    // non-streamed logprobs (strings owned)
    int n_lps, cap_lps;
    int tokens;                // tokens received
    int completion_tokens;
    const char *finish;        // decided finish_reason (a stop string matched), else NULL
    int cut;                   // a stop string matched: later tokens are ignored
    int done, error;
} choice;

typedef struct job_gen {
    srv_request r;
    job *job;
    int first;                 // index of its choice 0 in job->choices
    int submitted;
    int32_t *ids;
    int n_ids;
} job_gen;

struct job {
    srv *s;
    http_res *res;
    const http_req *q;         // valid until res is finished
    job *prev, *next;
    int state;
    api_request req;
    char id[48];
    int64_t created;
    reg_entry *adapter;        // held reference; NULL = base
    char tenant[64];
    uv_work_t work;
    job_gen *gens;
    int n_gens;
    choice *choices;
    int n_choices, n_done;
    int64_t prompt_tokens;
    api_error err;
    int failed;                // err holds the answer
    int closed;                // the client is gone
    int streaming;             // SSE started
    int holds;                 // > 0 while a loop over the engine may finish choices
    int replied;
    int status;                // for the log
};

static void job_free(job *j) {
    srv *s = j->s;
    if (!j->replied) {
        j->replied = 1;
        http_res_send(j->res, 499, NULL, "", 0); // the connection is gone: only releases res
    }
    if (j->prev) j->prev->next = j->next;
    else if (s->jobs == j) s->jobs = j->next;
    if (j->next) j->next->prev = j->prev;
    for (int i = 0; i < j->n_gens; i++) free(j->gens[i].ids);
    free(j->gens);
    for (int i = 0; i < j->n_choices; i++) {
        choice *c = &j->choices[i];
        tok_stream_free(c->ts);
        free(c->text.p);
        free(c->held.p);
        for (int k = 0; k < c->n_lps; k++) {
            free((char *)c->lps[k].token);
            for (int t = 0; t < c->lps[k].n_top; t++) free((char *)c->lps[k].top[t].token);
            free((void *)c->lps[k].top);
        }
        free(c->lps);
    }
    free(j->choices);
    if (j->adapter) reg_entry_unref(j->adapter);
    api_request_free(&j->req);
    free(j);
}

static void job_log(job *j, int status) {
    j->status = status;
    metrics_count_request(&j->s->requests, reply_endpoint(j->q->path), status);
    int64_t ct = 0;
    for (int i = 0; i < j->n_choices; i++) ct += j->choices[i].completion_tokens;
    log_line("info", "http", "request method=%s path=%s status=%d peer=%s conn=%llu tenant=%s model=%s "
          "prompt_tokens=%lld completion_tokens=%lld stream=%d", j->q->method, j->q->path, status, j->q->peer,
          (unsigned long long)j->q->conn_id, j->tenant, j->req.model, (long long)j->prompt_tokens, (long long)ct,
          j->req.stream);
}

static void job_reply_error(job *j) {
    job_log(j, j->err.status);
    j->replied = 1;
    reply_error(j->res, &j->err);
}

// ---- jobs: the stream of text ---------------------------------------------------------

// The decoded text of one token id (a new string; U+FFFD for a partial character).
static char *token_text(const srv *s, int32_t id, size_t *len) {
    char *t = tok_decode(s->tok, &id, 1, 0, len);
    if (!t) {
        *len = 0;
        return strdup("");
    }
    return t;
}

// Builds the logprob entry of a sampled token (strings owned by the entry).
static int make_logprob(const srv *s, const sampler_result *r, api_token_logprob *out) {
    memset(out, 0, sizeof *out);
    out->token = token_text(s, r->token, &out->len);
    out->logprob = r->logprob;
    if (r->n_top > 0) {
        api_top_logprob *top = calloc((size_t)r->n_top, sizeof *top);
        if (!top) return -1;
        for (int k = 0; k < r->n_top; k++) {
            top[k].token = token_text(s, r->top[k].token, &top[k].len);
            top[k].logprob = r->top[k].logprob;
        }
        out->top = top;
        out->n_top = r->n_top;
    }
    return out->token ? 0 : -1;
}

static void free_logprob(api_token_logprob *lp) {
    free((char *)lp->token);
    for (int t = 0; t < lp->n_top; t++) free((char *)lp->top[t].token);
    free((void *)lp->top);
}

// Sends one SSE event with a built JSON text.
static void sse_send(job *j, char *json) {
    if (json) http_res_sse_data(j->res, json, strlen(json));
    free(json);
}

// Text (and the logprob of the token that produced it) ready for the client.
static void choice_emit(job *j, choice *c, const char *p, size_t n, api_token_logprob *lp) {
    const api_request *q = &j->req;
    if (j->streaming) {
        if (n == 0 && !lp) return;
        char *json = q->kind == API_CHAT
                         ? api_chat_chunk_json(j->id, j->created, q->model, c->index, 0, p, n, NULL, lp, lp ? 1 : 0,
                                               q->include_usage)
                         : api_completion_chunk_json(j->id, j->created, q->model, c->index, p, n, NULL, lp,
                                                     lp ? 1 : 0, q->include_usage);
        sse_send(j, json);
        if (lp) free_logprob(lp);
        return;
    }
    util_buf_put(&c->text, p, n);
    if (c->text.oom) c->error = 1;
    if (lp) {
        if (c->n_lps == c->cap_lps) {
            int cap = c->cap_lps ? c->cap_lps * 2 : 64;
            api_token_logprob *t = realloc(c->lps, (size_t)cap * sizeof *t);
            if (!t) {
                free_logprob(lp);
                c->error = 1;
                return;
            }
            c->lps = t;
            c->cap_lps = cap;
        }
        c->lps[c->n_lps++] = *lp;
    }
}

static void job_cancel_choice(job *j, int ci);

// Passes new text through the stop strings: text that might be the start
// of a stop string is held back; a complete one ends the choice there
// (finish_reason "stop", the stop string itself is not returned).
static void choice_text(job *j, choice *c, const char *p, size_t n, api_token_logprob *lp) {
    util_buf *h = &c->held;
    util_buf_put(h, p, n);
    if (h->oom) {
        c->error = 1;
        if (lp) free_logprob(lp);
        return;
    }
    const api_request *q = &j->req;
    size_t cut = h->len;
    int found = 0;
    for (int i = 0; i < q->n_stop; i++) {
        const char *m = h->len ? memmem(h->p, h->len, q->stop[i], strlen(q->stop[i])) : NULL;
        if (m && (size_t)(m - h->p) < cut) {
            cut = (size_t)(m - h->p);
            found = 1;
        }
    }
    size_t keep = 0;
    if (!found) {
        // The longest tail of held that is a proper prefix of a stop string.
        for (int i = 0; i < q->n_stop; i++) {
            size_t sl = strlen(q->stop[i]);
            for (size_t k = sl - 1; k > keep; k--)
                if (k <= h->len && memcmp(h->p + h->len - k, q->stop[i], k) == 0) {
                    keep = k;
                    break;
                }
        }
        cut = h->len - keep;
    }
    choice_emit(j, c, h->p ? h->p : "", cut, lp);
    if (found) {
        h->len = 0;
        c->cut = 1;
        c->finish = "stop";
        if (!c->done) job_cancel_choice(j, (int)(c - j->choices));
    } else if (cut) {
        memmove(h->p, h->p + cut, keep);
        h->len = keep;
    }
}

// ---- jobs: completion --------------------------------------------------------------

static const char *finish_name(srv_finish r) {
    return r == SRV_FINISH_LENGTH ? "length" : "stop";
}

static void job_respond(job *j) {
    const api_request *q = &j->req;
    api_usage usage = {.prompt_tokens = j->prompt_tokens};
    int error = 0;
    for (int i = 0; i < j->n_choices; i++) {
        usage.completion_tokens += j->choices[i].completion_tokens;
        error |= j->choices[i].error;
    }
    if (j->streaming) {
        if (error) {
            api_error e;
            api_err_set(&e, 500, "server_error", NULL, NULL, "the generation engine failed on this request");
            sse_send(j, api_error_json(&e));
        } else if (q->include_usage) {
            sse_send(j, q->kind == API_CHAT ? api_chat_usage_chunk_json(j->id, j->created, q->model, &usage)
                                            : api_completion_usage_chunk_json(j->id, j->created, q->model, &usage));
        }
        http_res_sse_data(j->res, "[DONE]", 6);
        job_log(j, 200);
        j->replied = 1;
        http_res_sse_end(j->res);
        return;
    }
    if (error) {
        api_err_set(&j->err, 500, "server_error", NULL, NULL, "the generation engine failed on this request");
        job_reply_error(j);
        return;
    }
    api_choice *ch = calloc(j->n_choices > 0 ? (size_t)j->n_choices : 1, sizeof *ch);
    if (!ch) {
        j->replied = 1;
        reply_json(j->res, 500, NULL);
        return;
    }
    for (int i = 0; i < j->n_choices; i++) {
        choice *c = &j->choices[i];
        ch[i] = (api_choice){.index = c->index, .text = c->text.p ? c->text.p : "", .len = c->text.len,
                             .finish_reason = c->finish, .logprobs = q->logprobs ? c->lps : NULL,
                             .n_logprobs = c->n_lps};
        static const api_token_logprob none;
        if (q->logprobs && !c->lps) ch[i].logprobs = &none; // an empty list, not null
    }
    char *json = q->kind == API_CHAT ? api_chat_completion_json(j->id, j->created, q->model, ch, j->n_choices, &usage)
                                     : api_text_completion_json(j->id, j->created, q->model, ch, j->n_choices, &usage);
    free(ch);
    job_log(j, 200);
    j->replied = 1;
    reply_json(j->res, 200, json);
}

// Frees the job once every choice is finished and nobody is inside a loop
// over it; answers the client first if it is still there.
static void job_maybe_done(job *j) {
    if (j->holds > 0 || j->n_done < j->n_choices || j->state == JOB_DONE) return;
    j->state = JOB_DONE;
    if (!j->closed && !j->replied) {
        if (j->failed) job_reply_error(j);
        else job_respond(j);
    }
    job_free(j);
}

// ---- jobs: the engine's sink ----------------------------------------------------

static void choice_token(job *j, job_gen *g, choice *c, const sampler_result *r) {
    if (c->done || c->cut || j->closed || c->tokens >= g->r.max_tokens) return;
    if (r->finish == SAMPLER_FINISH_STOP) return; // EOS: counted by on_finish, never shown
    c->tokens++;
    api_token_logprob lp, *lpp = NULL;
    if (j->req.logprobs) {
        if (make_logprob(j->s, r, &lp) == 0) lpp = &lp;
        else free_logprob(&lp);
    }
    size_t n = 0;
    const char *text = tok_stream_push(c->ts, r->token, &n);
    if (!text) {
        c->error = 1;
        if (lpp) free_logprob(lpp);
        return;
    }
    choice_text(j, c, text, n, lpp);
}

// The sink callbacks hold the job while they work: a stop string may make
// them cancel, and the engine may finish the choice inside that call.
static void sink_token(void *ctx, int index, const sampler_result *r) {
    job_gen *g = ctx;
    job *j = g->job;
    if (index < 0 || index >= g->r.n) return;
    j->holds++;
    choice_token(j, g, &j->choices[g->first + index], r);
    j->holds--;
    job_maybe_done(j);
}

static void sink_finish(void *ctx, int index, srv_finish reason, int completion_tokens) {
    job_gen *g = ctx;
    job *j = g->job;
    if (index < 0 || index >= g->r.n) return;
    choice *c = &j->choices[g->first + index];
    if (c->done) return;
    c->done = 1;
    j->n_done++;
    j->holds++;
    c->completion_tokens = c->cut ? c->tokens : completion_tokens;
    if (reason == SRV_FINISH_ERROR && !c->cut) c->error = 1;
    if (!j->closed && !c->error) {
        if (!c->cut) {
            size_t n = 0;
            const char *rest = tok_stream_flush(c->ts, &n);
            if (rest) choice_text(j, c, rest, n, NULL);
        }
        if (!c->cut && c->held.len) { // no stop string came: the held text is text
            choice_emit(j, c, c->held.p, c->held.len, NULL);
            c->held.len = 0;
        }
        if (!c->finish) c->finish = finish_name(reason);
        if (j->streaming) {
            const api_request *q = &j->req;
            sse_send(j, q->kind == API_CHAT ? api_chat_chunk_json(j->id, j->created, q->model, c->index, 0, NULL, 0,
                                                                  c->finish, NULL, 0, q->include_usage)
                                            : api_completion_chunk_json(j->id, j->created, q->model, c->index, "", 0,
                                                                        c->finish, NULL, 0, q->include_usage));
        }
    }
    j->holds--;
    job_maybe_done(j);
}

// Called from the sink only (which holds the job).
static void job_cancel_choice(job *j, int ci) {
    srv *s = j->s;
    for (int i = 0; i < j->n_gens; i++) {
        job_gen *g = &j->gens[i];
        if (ci >= g->first && ci < g->first + g->r.n && g->submitted && s->has_engine)
            s->engine.cancel(s->engine.ctx, &g->r, ci - g->first);
    }
}

// The client went away: cancel whatever the engine still does for the job.
static void job_on_close(http_res *res, void *ud) {
    job *j = ud;
    srv *s = j->s;
    j->closed = 1;
    if (j->state != JOB_GENERATING) return; // a tokenizing job is dropped when its work returns
    log_line("info", "http", "client gone, cancelling request id=%s conn=%llu", j->id, (unsigned long long)j->q->conn_id);
    j->holds++;
    for (int i = 0; i < j->n_gens; i++)
        if (j->gens[i].submitted && s->has_engine) s->engine.cancel(s->engine.ctx, &j->gens[i].r, -1);
    j->holds--;
    job_maybe_done(j);
}

// ---- jobs: tokenizing (thread pool) ------------------------------------------------

// Renders and tokenizes every prompt. Runs on a worker: reads only
// immutable server state (tokenizer, template) and the job.
static void job_tokenize(uv_work_t *w) {
    job *j = w->data;
    srv *s = j->s;
    const api_request *q = &j->req;
    err_t err = {{0}};
    for (int i = 0; i < j->n_gens; i++) {
        job_gen *g = &j->gens[i];
        size_t n = 0;
        int32_t *ids = NULL;
        if (q->kind == API_CHAT) {
            chat_msg *msgs = calloc((size_t)q->n_messages, sizeof *msgs);
            if (!msgs) goto oom;
            for (int m = 0; m < q->n_messages; m++)
                msgs[m] = (chat_msg){api_role_name(q->messages[m].role), q->messages[m].content, NULL};
            chat_opts opts = {.add_generation_prompt = 1, .enable_thinking = q->enable_thinking, .bos_token = s->bos};
            chat_prompt *prompt = chat_render_segments(s->family, msgs, q->n_messages, &opts, &err);
            free(msgs);
            if (!prompt) {
                api_err_invalid(&j->err, "messages", "%s", err.msg);
                j->failed = 1;
                return;
            }
            // Special tokens come from the template's markup only: message
            // content is plain text, so a user who types "<|im_end|>" gets
            // that text, not the control token (as OpenAI's API does).
            ids = chat_encode(s->tok, prompt, &n, NULL, &err);
            chat_prompt_free(prompt);
        } else if (q->prompts[i].ids) {
            n = (size_t)q->prompts[i].n_ids;
            ids = malloc((n ? n : 1) * sizeof *ids);
            if (ids && n) memcpy(ids, q->prompts[i].ids, n * sizeof *ids);
        } else {
            ids = tok_encode_ex(s->tok, q->prompts[i].text, strlen(q->prompts[i].text),
                                TOK_PARSE_SPECIAL | TOK_ADD_SPECIAL, &n, &err);
        }
        if (!ids) goto oom;
        g->ids = ids;
        g->n_ids = (int)n;
    }
    return;
oom:
    api_err_set(&j->err, 500, "server_error", NULL, NULL, "tokenizing failed: %s", err.msg[0] ? err.msg : "out of memory");
    j->failed = 1;
}

// Context-length check of one prompt; fills j->err.
static int check_context(job *j, job_gen *g, int64_t *max_tokens) {
    const srv *s = j->s;
    int64_t ctx = s->model.max_position_embeddings;
    const char *param = j->req.kind == API_CHAT ? "messages" : "prompt";
    if (g->n_ids == 0) {
        api_err_invalid(&j->err, param, "Invalid '%s': the prompt is empty after tokenization.", param);
        return -1;
    }
    int64_t want = j->req.max_tokens >= 0 ? j->req.max_tokens : ctx - g->n_ids;
    if (want < 1 || g->n_ids + want > ctx) {
        api_err_set(&j->err, 400, "invalid_request_error", param, "context_length_exceeded",
                    "This model's maximum context length is %lld tokens. However, you requested %lld tokens (%d in "
                    "the %s, %lld in the completion). Please reduce the length of the %s or completion.",
                    (long long)ctx, (long long)(g->n_ids + (want > 0 ? want : 1)), g->n_ids,
                    j->req.kind == API_CHAT ? "messages" : "prompt", (long long)(want > 0 ? want : 1),
                    j->req.kind == API_CHAT ? "messages" : "prompt");
        return -1;
    }
    *max_tokens = want;
    return 0;
}

// Submits every prompt to the engine and, for a stream, starts it.
static void job_generate(job *j) {
    srv *s = j->s;
    if (!s->has_engine) {
        api_err_set(&j->err, 503, "server_error", NULL, NULL, "generation engine not available in this build");
        j->failed = 1;
        return;
    }
    const api_request *q = &j->req;
    sampler_params sp = api_sampler_params(q);
    sp.stop_ids = s->eos;
    sp.n_stop_ids = s->n_eos;
    sp.seed = q->has_seed ? q->seed : util_rng_next(&s->rng);
    err_t err = {{0}};
    if (sampler_params_check(&sp, s->model.vocab_size, &err) != 0) {
        api_err_invalid(&j->err, NULL, "%s", err.msg);
        j->failed = 1;
        return;
    }
    for (int i = 0; i < j->n_gens; i++) j->gens[i].r.sampling = sp;
    j->state = JOB_GENERATING;
    j->holds++;
    for (int i = 0; i < j->n_gens && !j->failed; i++) {
        job_gen *g = &j->gens[i];
        int rc = s->engine.submit(s->engine.ctx, &g->r, &err);
        if (rc == SRV_SUBMIT_OK) {
            g->submitted = 1;
        } else if (rc == SRV_SUBMIT_BUSY) {
            api_err_set(&j->err, 429, "server_error", NULL, "server_busy",
                        "The server is busy with other requests. Please retry shortly.");
            j->err.retry_after = 1;
            j->failed = 1;
        } else {
            api_err_set(&j->err, 503, "server_error", NULL, NULL, "%s", err.msg);
            j->err.retry_after = 1;
            j->failed = 1;
        }
    }
    if (j->failed) {
        // Choices never submitted are finished here; submitted ones are cancelled.
        for (int i = 0; i < j->n_gens; i++) {
            job_gen *g = &j->gens[i];
            if (g->submitted) {
                s->engine.cancel(s->engine.ctx, &g->r, -1);
            } else {
                for (int k = 0; k < g->r.n; k++) j->choices[g->first + k].done = 1;
                j->n_done += g->r.n;
            }
        }
    } else if (q->stream) {
        j->streaming = http_res_sse_begin(j->res) == 0;
        for (int i = 0; q->kind == API_CHAT && i < j->n_choices; i++)
            sse_send(j, api_chat_chunk_json(j->id, j->created, q->model, i, 1, NULL, 0, NULL, NULL, 0, q->include_usage));
    }
    j->holds--;
}

static void job_tokenized(uv_work_t *w, int status) {
    job *j = w->data;
    srv *s = j->s;
    if (j->closed || s->stopping || status != 0) {
        if (j->closed) log_line("info", "http", "client gone before the answer path=%s peer=%s", j->q->path, j->q->peer);
        job_free(j);
        return;
    }
    if (!j->failed) {
        for (int i = 0; i < j->n_gens && !j->failed; i++) {
            job_gen *g = &j->gens[i];
            int64_t mt = 0;
            if (check_context(j, g, &mt) != 0) {
                j->failed = 1;
                break;
            }
            j->prompt_tokens += g->n_ids;
            g->r = (srv_request){.id = ++s->next_req_id, .prompt = g->ids, .n_prompt = g->n_ids,
                                 .adapter = j->adapter ? j->adapter->name : NULL,
                                 .adapter_entry = j->adapter,
                                 .max_tokens = (int)mt, .n = j->req.n,
                                 .sink = {.ctx = g, .on_token = sink_token, .on_finish = sink_finish}};
        }
        if (!j->failed) job_generate(j); // fills each request's sampling and submits
    }
    if (j->failed && j->state != JOB_GENERATING) {
        j->state = JOB_DONE;
        job_reply_error(j);
        job_free(j);
        return;
    }
    job_maybe_done(j);
}

// ---- jobs: the request handler ----------------------------------------------------

static int check_prompt_ids(srv *s, const api_request *q, api_error *e) {
    for (int i = 0; i < q->n_prompts; i++)
        for (int k = 0; k < q->prompts[i].n_ids; k++)
            if (q->prompts[i].ids[k] >= s->model.vocab_size) {
                char p[48] = "prompt";
                if (q->n_prompts > 1) snprintf(p, sizeof p, "prompt[%d]", i);
                return api_err_invalid(e, p, "Invalid '%s': token id %d is outside the vocabulary [0, %d).", p,
                                       (int)q->prompts[i].ids[k], s->model.vocab_size);
            }
    for (int i = 0; i < q->n_logit_bias; i++)
        if (q->logit_bias[i].token >= s->model.vocab_size)
            return api_err_invalid(e, "logit_bias", "Invalid 'logit_bias': token id %d is outside the vocabulary [0, %d).",
                                   (int)q->logit_bias[i].token, s->model.vocab_size);
    return 0;
}

static void route_generate(srv *s, const http_req *q, http_res *res, const tn_tenant *tn, api_kind kind) {
    job *j = calloc(1, sizeof *j);
    if (!j) {
        reply_json(res, 500, NULL);
        return;
    }
    j->s = s;
    j->res = res;
    j->q = q;
    j->created = (int64_t)time(NULL);
    snprintf(j->tenant, sizeof j->tenant, "%s", tn->name);
    j->next = s->jobs;
    if (s->jobs) s->jobs->prev = j;
    s->jobs = j;
    int rc = kind == API_CHAT ? api_parse_chat(q->body, q->body_len, &j->req, &j->err)
                              : api_parse_completion(q->body, q->body_len, &j->req, &j->err);
    const reg_entry *e = NULL;
    if (rc == 0 && !model_visible(s, tn, j->req.model, &e)) rc = model_not_found(&j->err, j->req.model, "model");
    if (rc == 0 && e && s->has_engine && s->engine.max_lora_rank > 0 && e->rank > s->engine.max_lora_rank)
        rc = api_err_invalid(&j->err, "model",
                             "The adapter '%s' has LoRA rank %d, above this server's --max-lora-rank %d: restart "
                             "the server with --max-lora-rank %d or more to serve it.",
                             e->name, e->rank, s->engine.max_lora_rank, e->rank);
    if (rc == 0 && kind == API_CHAT && !s->has_chat)
        rc = api_err_invalid(&j->err, "messages",
                             "This model has no supported chat template: use /v1/completions, or start the server "
                             "with --chat-template NAME.");
    if (rc == 0) rc = check_prompt_ids(s, &j->req, &j->err);
    if (rc != 0) {
        j->state = JOB_DONE;
        job_reply_error(j);
        job_free(j);
        return;
    }
    if (e) j->adapter = reg_entry_ref(e);
    uint64_t a = util_rng_next(&s->rng), b = util_rng_next(&s->rng);
    snprintf(j->id, sizeof j->id, "%s%012llx%012llx", kind == API_CHAT ? "chatcmpl-" : "cmpl-",
             (unsigned long long)(a & 0xffffffffffffULL), (unsigned long long)(b & 0xffffffffffffULL));
    j->n_gens = kind == API_CHAT ? 1 : j->req.n_prompts;
    j->n_choices = j->n_gens * j->req.n;
    j->gens = calloc((size_t)j->n_gens, sizeof *j->gens);
    j->choices = calloc(j->n_choices > 0 ? (size_t)j->n_choices : 1, sizeof *j->choices);
    int ok = j->gens && j->choices;
    for (int i = 0; ok && i < j->n_gens; i++) {
        j->gens[i].job = j;
        j->gens[i].first = i * j->req.n;
    }
    for (int i = 0; ok && i < j->n_choices; i++) {
        j->choices[i].index = i;
        ok = (j->choices[i].ts = tok_stream_new(s->tok, 1)) != NULL;
    }
    if (!ok) {
        j->n_choices = j->choices ? j->n_choices : 0;
        api_err_set(&j->err, 500, "server_error", NULL, NULL, "out of memory");
        j->state = JOB_DONE;
        job_reply_error(j);
        job_free(j);
        return;
    }
    http_res_on_close(res, job_on_close, j);
    j->state = JOB_TOKENIZING;
    j->work.data = j;
    if (uv_queue_work(&s->loop, &j->work, job_tokenize, job_tokenized) != 0) {
        api_err_set(&j->err, 500, "server_error", NULL, NULL, "could not queue the request");
        j->state = JOB_DONE;
        job_reply_error(j);
        job_free(j);
    }
}

static void on_reject(void *ud, int status, const char *peer, const char *reason) {
    log_line("info", "http", "rejected status=%d peer=%s reason=%s", status, peer, reason);
}

// ---- routing ----------------------------------------------------------------------

// ---- runtime adapters (vLLM's /v1/load_lora_adapter) -----------------------------------

typedef struct lora_req {
    srv *s;
    const http_req *q;
    http_res *res;
    char tenant[64];
    char *name, *path;
    reg_entry *entry; // the validated adapter (worker's result)
    err_t err;
    uv_work_t work;
} lora_req;

// Reads {"lora_name": ..., "lora_path": ...} (path only when want_path).
static int parse_lora_body(const http_req *q, int want_path, char **name, char **path, api_error *e) {
    *name = *path = NULL;
    cJSON *o = cJSON_ParseWithLength(q->body ? q->body : "", q->body_len);
    const cJSON *n = o ? cJSON_GetObjectItemCaseSensitive(o, "lora_name") : NULL;
    const cJSON *p = o ? cJSON_GetObjectItemCaseSensitive(o, "lora_path") : NULL;
    int rc = 0;
    if (!o || !cJSON_IsObject(o))
        rc = api_err_set(e, 400, "invalid_request_error", NULL, NULL, "The body must be a JSON object.");
    else if (!cJSON_IsString(n) || !n->valuestring[0] || strchr(n->valuestring, '/'))
        rc = api_err_set(e, 400, "invalid_request_error", "lora_name", NULL,
                         "'lora_name' must be a non-empty string without '/'.");
    else if (want_path && ftjob_is_ft_name(n->valuestring))
        rc = api_err_set(e, 400, "invalid_request_error", "lora_name", NULL,
                         "'lora_name': names starting with 'ft:' are reserved for fine-tuned models.");
    else if (want_path && (!cJSON_IsString(p) || !p->valuestring[0]))
        rc = api_err_set(e, 400, "invalid_request_error", "lora_path", NULL,
                         "'lora_path' must be the path of an adapter folder on the server.");
    if (rc == 0) {
        *name = strdup(n->valuestring);
        if (want_path) *path = strdup(p->valuestring);
        if (!*name || (want_path && !*path))
            rc = api_err_set(e, 500, "server_error", NULL, NULL, "out of memory");
    }
    cJSON_Delete(o);
    return rc;
}

static void lora_reply(lora_req *l, int status, const char *msg) {
    reply_access(&l->s->requests, l->q, status, l->tenant, l->name);
    http_res_send(l->res, status, "text/plain; charset=utf-8", msg, strlen(msg));
}

static void lora_req_free(lora_req *l) {
    if (l->entry) reg_entry_unref(l->entry);
    free(l->name);
    free(l->path);
    free(l);
}

static void lora_load_work(uv_work_t *w) {
    lora_req *l = w->data;
    l->entry = reg_open(l->name, l->path, &l->s->model, &l->err);
}

static void lora_load_done(uv_work_t *w, int status) {
    lora_req *l = w->data;
    srv *s = l->s;
    api_error e;
    char msg[320];
    if (status != 0 || !l->entry) {
        api_err_set(&e, 400, "invalid_request_error", "lora_path", NULL, "Cannot load adapter '%s': %s", l->name,
                    status != 0 ? "cancelled" : l->err.msg);
        reply_error_logged(&s->requests, l->q, l->res, &e, l->tenant, NULL);
    } else if (find_adapter(s, l->name) || strcmp(l->name, s->base_id) == 0) { // taken while loading
        api_err_set(&e, 400, "invalid_request_error", "lora_name", NULL,
                    "The lora adapter '%s' has already been loaded.", l->name);
        reply_error_logged(&s->requests, l->q, l->res, &e, l->tenant, NULL);
    } else {
        reg_entry **r = realloc(s->runtime, (size_t)(s->n_runtime + 1) * sizeof *r);
        if (!r) {
            reply_json(l->res, 500, NULL);
        } else {
            s->runtime = r;
            s->runtime[s->n_runtime++] = l->entry;
            log_line("info", "registry", "loaded adapter=%s rank=%d alpha=%g modules=%d path=%s tenant=%s",
                  l->entry->name, l->entry->rank, l->entry->alpha, l->entry->n_adapted, l->entry->path, l->tenant);
            l->entry = NULL;
            snprintf(msg, sizeof msg, "Success: LoRA adapter '%s' added successfully.", l->name);
            lora_reply(l, 200, msg);
        }
    }
    lora_req_free(l);
}

// POST /v1/load_lora_adapter and /v1/unload_lora_adapter, admin keys only
// (any request in open mode). Answers as vLLM: 200 with a plain-text line.
static void route_lora(srv *s, const http_req *q, http_res *res, const tn_tenant *tn, int load) {
    api_error e;
    if (!tn->admin) {
        api_err_set(&e, 403, "permission_error", NULL, NULL,
                    "Loading and unloading adapters needs an admin key (\"admin\": true in the tenants file).");
        reply_error_logged(&s->requests, q, res, &e, tn->name, NULL);
        return;
    }
    lora_req *l = calloc(1, sizeof *l);
    if (!l) {
        reply_json(res, 500, NULL);
        return;
    }
    *l = (lora_req){.s = s, .q = q, .res = res};
    snprintf(l->tenant, sizeof l->tenant, "%s", tn->name);
    if (parse_lora_body(q, load, &l->name, &l->path, &e) != 0) {
        reply_error_logged(&s->requests, q, res, &e, tn->name, NULL);
        lora_req_free(l);
        return;
    }
    if (!load) {
        int i = runtime_index(s, l->name);
        if (i < 0) {
            api_err_set(&e, 404, "invalid_request_error", "lora_name", "model_not_found",
                        "The lora adapter '%s' was not loaded with /v1/load_lora_adapter.", l->name);
            reply_error_logged(&s->requests, q, res, &e, tn->name, NULL);
        } else {
            // Requests in flight hold their own reference and finish on it.
            reg_entry_unref(s->runtime[i]);
            s->runtime[i] = s->runtime[--s->n_runtime];
            log_line("info", "registry", "unloaded adapter=%s tenant=%s", l->name, tn->name);
            char msg[320];
            snprintf(msg, sizeof msg, "Success: LoRA adapter '%s' removed successfully.", l->name);
            lora_reply(l, 200, msg);
        }
        lora_req_free(l);
        return;
    }
    if (find_adapter(s, l->name) || strcmp(l->name, s->base_id) == 0) {
        api_err_set(&e, 400, "invalid_request_error", "lora_name", NULL,
                    "The lora adapter '%s' has already been loaded.", l->name);
        reply_error_logged(&s->requests, q, res, &e, tn->name, NULL);
        lora_req_free(l);
        return;
    }
    l->work.data = l;
    if (uv_queue_work(&s->loop, &l->work, lora_load_work, lora_load_done) != 0) {
        reply_json(res, 500, NULL);
        lora_req_free(l);
    }
}

// GET /metrics: no key (as vLLM), so scrapers need none; the numbers name
// no tenant and no adapter.
static void route_metrics(srv *s, const http_req *q, http_res *res) {
    metrics_engine st;
    int has = s->has_engine && s->engine.stats;
    if (has) {
        memset(&st, 0, sizeof st);
        s->engine.stats(s->engine.ctx, &st);
    }
    metrics_count_request(&s->requests, reply_endpoint(q->path), 200); // this scrape counts itself
    char *text = metrics_text(&s->requests, has ? &st : NULL);
    if (!text) {
        reply_json(res, 500, NULL);
        return;
    }
    http_res_send(res, 200, "text/plain; version=0.0.4; charset=utf-8", text, strlen(text));
    free(text);
}

// /v1/files and /v1/fine_tuning/: authenticated here, handled by files.c
// and ftjobs.c (which check methods and paths themselves).
static void route_finetune(srv *s, const http_req *q, http_res *res) {
    api_error e;
    const tn_tenant *tn = authenticate(s, q, &e);
    if (!tn) {
        reply_error_logged(&s->requests, q, res, &e, NULL, NULL);
        return;
    }
    if (!s->files) {
        api_err_set(&e, 404, "invalid_request_error", NULL, NULL,
                    "Files and fine-tuning are off on this server: start serve with --data-dir DIR.");
        reply_error_logged(&s->requests, q, res, &e, tn->name, NULL);
    } else if (strncmp(q->path, "/v1/files", 9) == 0) {
        files_handle(s->files, q, res, tn->name);
    } else {
        ftjob_handle(s->ftjobs, q, res, tn->name, tn_allows_base(tn));
    }
}

static void on_request(const http_req *q, http_res *res, void *ud) {
    srv *s = ud;
    api_error e;
    const char *p = q->path;
    int get = strcmp(q->method, "GET") == 0, post = strcmp(q->method, "POST") == 0;
    const char *allow = NULL;
    if (strcmp(p, "/health") == 0) {
        if (get) {
            static const char ok[] = "{\"status\":\"ok\"}";
            http_res_send(res, 200, NULL, ok, sizeof ok - 1);
            return;
        }
        allow = "GET";
    } else if (strcmp(p, "/metrics") == 0) {
        if (get) {
            route_metrics(s, q, res);
            return;
        }
        allow = "GET";
    } else if (strcmp(p, "/v1/models") == 0 || (strncmp(p, "/v1/models/", 11) == 0 && p[11])) {
        allow = get ? NULL : "GET";
    } else if (strcmp(p, "/v1/files") == 0 || strncmp(p, "/v1/files/", 10) == 0 ||
               strncmp(p, "/v1/fine_tuning/", 16) == 0) {
        route_finetune(s, q, res);
        return;
    } else if (strcmp(p, "/v1/chat/completions") == 0 || strcmp(p, "/v1/completions") == 0 ||
               strcmp(p, "/v1/load_lora_adapter") == 0 || strcmp(p, "/v1/unload_lora_adapter") == 0) {
        allow = post ? NULL : "POST";
    } else {
        api_err_set(&e, 404, "invalid_request_error", NULL, NULL, "Invalid URL (%s %s)", q->method, p);
        reply_error_logged(&s->requests, q, res, &e, NULL, NULL);
        return;
    }
    if (allow) {
        http_res_header(res, "Allow", allow);
        api_err_set(&e, 405, "invalid_request_error", NULL, NULL, "Method %s is not allowed for %s; use %s.",
                    q->method, p, allow);
        reply_error_logged(&s->requests, q, res, &e, NULL, NULL);
        return;
    }
    const tn_tenant *tn = authenticate(s, q, &e);
    if (!tn) {
        reply_error_logged(&s->requests, q, res, &e, NULL, NULL);
        return;
    }
    if (strcmp(p, "/v1/models") == 0) route_models(s, q, res, tn);
    else if (strncmp(p, "/v1/models/", 11) == 0) route_model(s, q, res, tn, p + 11);
    else if (strcmp(p, "/v1/load_lora_adapter") == 0) route_lora(s, q, res, tn, 1);
    else if (strcmp(p, "/v1/unload_lora_adapter") == 0) route_lora(s, q, res, tn, 0);
    else route_generate(s, q, res, tn, strcmp(p, "/v1/chat/completions") == 0 ? API_CHAT : API_COMPLETION);
}

// ---- the adapters folder ---------------------------------------------------------

static void scan_work(uv_work_t *w) {
    srv *s = w->data;
    memset(&s->scan_err, 0, sizeof s->scan_err);
    s->scan_result = reg_scan(s->adapters_dir, &s->model, s->scan_prev, s->base_id, &s->scan_changes, &s->scan_err);
}

static void log_changes(const reg_changes *c) {
    for (int i = 0; i < c->n_added; i++)
        log_line("info", "registry", "added adapter=%s rank=%d alpha=%g modules=%d path=%s", c->added[i]->name,
              c->added[i]->rank, c->added[i]->alpha, c->added[i]->n_adapted, c->added[i]->path);
    for (int i = 0; i < c->n_replaced; i++)
        log_line("info", "registry", "replaced adapter=%s rank=%d alpha=%g modules=%d path=%s", c->replaced[i]->name,
              c->replaced[i]->rank, c->replaced[i]->alpha, c->replaced[i]->n_adapted, c->replaced[i]->path);
    for (int i = 0; i < c->n_removed; i++) log_line("info", "registry", "removed adapter=%s", c->removed[i]->name);
    for (int i = 0; i < c->n_failed; i++)
        log_line("warn", "registry", "skipped adapter=%s path=%s error=%s", c->failed[i]->name, c->failed[i]->path,
              c->failed[i]->error ? c->failed[i]->error : "?");
}

static void start_scan(srv *s);

// Calls the waiters whose scan has finished (all of them when stopping).
static void wake_waiters(srv *s, uint64_t finished) {
    scan_waiter **pp = &s->waiters;
    while (*pp) {
        scan_waiter *w = *pp;
        if (w->after < finished || s->stopping) {
            *pp = w->next;
            w->done(w->arg);
            free(w);
        } else {
            pp = &w->next;
        }
    }
}

static void scan_done(uv_work_t *w, int status) {
    srv *s = w->data;
    s->scanning = 0;
    if (s->scan_result && !s->stopping) {
        log_changes(&s->scan_changes);
        reg_snapshot *old = s->adapters;
        s->adapters = s->scan_result;
        reg_snapshot_free(old);
    } else if (s->scan_result) {
        reg_snapshot_free(s->scan_result);
    } else if (!s->stopping) {
        log_line("warn", "registry", "scan failed: %s", s->scan_err.msg);
    }
    reg_changes_free(&s->scan_changes);
    s->scan_result = NULL;
    if (s->scan_again && !s->stopping) {
        s->scan_again = 0;
        start_scan(s);
    }
    wake_waiters(s, s->scanning ? s->scan_seq - 1 : s->scan_seq);
}

// Scans the adapters folder now (or right after the scan in progress) and
// calls done(arg) on the loop thread once that scan has finished: a caller
// that has just written an adapter folder then finds it in s->adapters.
static void rescan_now(void *ud, void (*done)(void *arg), void *arg) {
    srv *s = ud;
    scan_waiter *w = calloc(1, sizeof *w);
    if (!w || s->stopping || !s->adapters_dir) {
        free(w);
        done(arg);
        return;
    }
    *w = (scan_waiter){.after = s->scan_seq, .done = done, .arg = arg, .next = s->waiters};
    s->waiters = w;
    start_scan(s);
}

static int adapter_ready(void *ud, const char *name, char *why, size_t n) {
    srv *s = ud;
    const reg_entry *e = reg_find(s->adapters, name);
    if (e) return 1;
    for (int i = 0; s->adapters && i < s->adapters->n; i++)
        if (strcmp(s->adapters->entries[i]->name, name) == 0 && s->adapters->entries[i]->error) {
            snprintf(why, n, "%s", s->adapters->entries[i]->error);
            return 0;
        }
    snprintf(why, n, "%s: not found in the adapters folder", name);
    return 0;
}

static void start_scan(srv *s) {
    if (!s->adapters_dir || s->stopping) return;
    if (s->scanning) {
        s->scan_again = 1;
        return;
    }
    s->scanning = 1;
    s->scan_seq++;
    s->scan_prev = s->adapters; // read-only on the worker; only scan_done replaces it
    s->scan_work.data = s;
    if (uv_queue_work(&s->loop, &s->scan_work, scan_work, scan_done) != 0) s->scanning = 0;
}

static void on_rescan_timer(uv_timer_t *t) { start_scan(t->data); }

static void on_watch(uv_fs_event_t *h, const char *name, int events, int status) {
    srv *s = h->data;
    // A burst of events (a trainer's rename, a cp -r) becomes one scan.
    uv_timer_start(&s->debounce_timer, on_rescan_timer, SRV_WATCH_DEBOUNCE_MS, 0);
}

// ---- tenants reload ----------------------------------------------------------------

static void tn_work(uv_work_t *w) {
    srv *s = w->data;
    memset(&s->tn_err, 0, sizeof s->tn_err);
    s->tn_new = tn_load(s->tenants_path, &s->tn_err);
}

static void tn_done(uv_work_t *w, int status) {
    srv *s = w->data;
    s->tn_loading = 0;
    if (!s->tn_new) {
        log_line("error", "tenants", "reload failed, keeping the previous keys: %s", s->tn_err.msg);
        return;
    }
    if (s->stopping) {
        tn_free(s->tn_new);
    } else {
        tn_table *old = s->tenants;
        s->tenants = s->tn_new; // the swap: lookups run on this thread only
        tn_free(old);
        log_line("info", "tenants", "reloaded path=%s keys=%d", s->tenants_path, tn_count(s->tenants));
    }
    s->tn_new = NULL;
}

static void reload(srv *s) {
    log_line("info", "server", "SIGHUP: reloading tenants and rescanning adapters");
    if (s->tenants_path && !s->tn_loading) {
        s->tn_loading = 1;
        s->tn_work.data = s;
        if (uv_queue_work(&s->loop, &s->tn_work, tn_work, tn_done) != 0) s->tn_loading = 0;
    }
    start_scan(s);
}

// ---- signals, run, stop -------------------------------------------------------------

static void on_signal(uv_signal_t *h, int signum) {
    srv *s = h->data;
    if (signum == SIGHUP) {
        reload(s);
        return;
    }
    log_line("info", "server", "signal=%s: shutting down", signum == SIGTERM ? "SIGTERM" : "SIGINT");
    srv_stop(s);
}

static void noop_close(uv_handle_t *h) { (void)h; }

void srv_stop(srv *s) {
    if (s->stopping) return;
    s->stopping = 1;
    // Connections first: their close callbacks cancel the jobs behind them.
    if (s->http) http_server_close(s->http, NULL, NULL);
    s->http = NULL;
    // Fine-tuning: kill the train children (ftjobs.h says what becomes of
    // their jobs) and release whoever waits for a scan.
    ftjob_stop(s->ftjobs);
    wake_waiters(s, 0);
    // Then the engine finishes every choice still out (inside stop).
    if (s->has_engine && s->engine.stop) s->engine.stop(s->engine.ctx);
    uv_close((uv_handle_t *)&s->rescan_timer, noop_close);
    uv_close((uv_handle_t *)&s->debounce_timer, noop_close);
    if (s->watching) uv_close((uv_handle_t *)&s->watch, noop_close);
    uv_close((uv_handle_t *)&s->sigterm, noop_close);
    uv_close((uv_handle_t *)&s->sigint, noop_close);
    uv_close((uv_handle_t *)&s->sighup, noop_close);
}

int srv_run(srv *s) {
    uv_run(&s->loop, UV_RUN_DEFAULT);
    log_line("info", "server", "stopped");
    return 0;
}

// ---- open / free ----------------------------------------------------------------------

static char *basename_of(const char *dir) {
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--;
    size_t b = n;
    while (b > 0 && dir[b - 1] != '/') b--;
    char *s = malloc(n - b + 1);
    if (!s) return NULL;
    memcpy(s, dir + b, n - b);
    s[n - b] = '\0';
    return s;
}

static int load_model(srv *s, err_t *err) {
    if (model_config_load(s->model_dir, &s->model, err) != 0) return -1;
    if (!(s->tok = tok_open(s->model_dir, err))) return -1;
    if (tok_vocab_size(s->tok) > s->model.vocab_size)
        return err_set(err, "%s: tokenizer has %d ids but config.json vocab_size is %d", s->model_dir,
                       tok_vocab_size(s->tok), s->model.vocab_size);
    for (int i = 0; i < s->model.n_eos; i++) s->eos[s->n_eos++] = s->model.eos_token_ids[i];
    int32_t te = tok_eos_id(s->tok);
    if (te >= 0 && te < s->model.vocab_size && !model_config_is_eos(&s->model, te)) s->eos[s->n_eos++] = te;

    char *tc = util_path_join(s->model_dir, "tokenizer_config.json");
    err_t cerr = {{0}};
    int rc = tc ? chat_from_config(tc, &s->family, &s->bos, &cerr) : -1;
    free(tc);
    if (s->cfg.chat_template) {
        if (chat_family_parse(s->cfg.chat_template, &s->family, err) != 0) return -1;
        s->has_chat = 1;
    } else if (rc == 0) {
        s->has_chat = 1;
    } else {
        log_line("warn", "server", "no chat template: /v1/chat/completions will answer 400 error=%s", cerr.msg);
    }
    char *cfgpath = util_path_join(s->model_dir, "config.json");
    struct stat sb;
    s->base_created = cfgpath && stat(cfgpath, &sb) == 0 ? (int64_t)sb.st_mtime : (int64_t)time(NULL);
    free(cfgpath);
    log_line("info", "server", "model id=%s arch=%s layers=%d hidden=%d vocab=%d max_positions=%lld chat_template=%s",
          s->base_id, model_arch_name(s->model.arch), s->model.num_hidden_layers, s->model.hidden_size,
          s->model.vocab_size, (long long)s->model.max_position_embeddings,
          s->has_chat ? chat_family_name(s->family) : "none");
    return 0;
}

// ---- fine-tuning: the stores and what they need from the server --------------------------

static size_t body_limit(void *ud, const char *method, const char *target) {
    srv *s = ud;
    size_t n = strcspn(target, "?");
    if (!s->files || strcmp(method, "POST") != 0 || n != 9 || strncmp(target, "/v1/files", 9) != 0) return 0;
    size_t lim = files_body_limit(s->files);
    return lim > s->cfg.max_body_bytes ? lim : 0;
}

static int open_finetune(srv *s, err_t *err) {
    const srv_config *c = &s->cfg;
    if (!s->adapters_dir)
        return err_set(err, "--data-dir %s needs --adapters DIR: fine-tuned adapters are published there",
                       c->data_dir);
    if (!c->train_bin) return err_set(err, "--data-dir %s needs the train program (--train-bin PATH)", c->data_dir);
    files_env env = {.ud = s, .loop = &s->loop, .requests = &s->requests};
    if (!(s->files = files_open(c->data_dir, c->max_file_bytes ? c->max_file_bytes : (size_t)512 << 20, &env, err)))
        return -1;
    ftjob_config fc = {.data_dir = c->data_dir, .adapters_dir = s->adapters_dir, .model_dir = s->model_dir,
                       .base_id = s->base_id, .train_bin = c->train_bin, .workers = c->ft_workers};
    ftjob_host host = {.env = env, .rescan = rescan_now, .adapter_ready = adapter_ready};
    return (s->ftjobs = ftjob_open(&fc, &host, s->files, err)) ? 0 : -1;
}

static int start_watching(srv *s, err_t *err) {
    reg_changes ch;
    s->adapters = reg_scan(s->adapters_dir, &s->model, NULL, s->base_id, &ch, err);
    if (!s->adapters) return -1;
    log_changes(&ch);
    reg_changes_free(&ch);
    log_line("info", "registry", "watching dir=%s adapters=%d", s->adapters_dir, reg_count(s->adapters));
    uint64_t every = s->cfg.rescan_ms ? s->cfg.rescan_ms : SRV_DEFAULT_RESCAN_MS;
    uv_timer_start(&s->rescan_timer, on_rescan_timer, every, every);
    if (uv_fs_event_init(&s->loop, &s->watch) == 0) {
        s->watch.data = s;
        s->watching = 1;
        if (uv_fs_event_start(&s->watch, on_watch, s->adapters_dir, 0) != 0)
            log_line("warn", "registry", "no file watch on dir=%s: rescanning every %llu ms only", s->adapters_dir,
                  (unsigned long long)every);
    }
    return 0;
}

srv *srv_open(const srv_config *cfg, err_t *err) {
    srv *s = calloc(1, sizeof *s);
    if (!s) {
        err_set(err, "out of memory");
        return NULL;
    }
    s->cfg = *cfg;
    s->model_dir = strdup(cfg->model_dir);
    s->adapters_dir = cfg->adapters_dir ? strdup(cfg->adapters_dir) : NULL;
    s->tenants_path = cfg->tenants_path ? strdup(cfg->tenants_path) : NULL;
    s->host = strdup(cfg->host ? cfg->host : "127.0.0.1");
    s->base_id = cfg->served_model_name ? strdup(cfg->served_model_name) : basename_of(cfg->model_dir);
    util_rng_seed(&s->rng, uv_hrtime() ^ ((uint64_t)getpid() << 32));
    // A write to a client that has gone must fail with EPIPE, not kill the
    // process (libuv leaves SIGPIPE to the application).
    signal(SIGPIPE, SIG_IGN);
    if (uv_loop_init(&s->loop) != 0) {
        free(s);
        err_set(err, "cannot create the event loop");
        return NULL;
    }
    uv_timer_init(&s->loop, &s->rescan_timer);
    uv_timer_init(&s->loop, &s->debounce_timer);
    s->rescan_timer.data = s->debounce_timer.data = s;
    uv_signal_init(&s->loop, &s->sigterm);
    uv_signal_init(&s->loop, &s->sigint);
    uv_signal_init(&s->loop, &s->sighup);
    s->sigterm.data = s->sigint.data = s->sighup.data = s;
    if (!s->model_dir || !s->host || !s->base_id || (cfg->adapters_dir && !s->adapters_dir) ||
        (cfg->tenants_path && !s->tenants_path)) {
        err_set(err, "out of memory");
        goto fail;
    }
    if (load_model(s, err) != 0) goto fail;
    if (s->tenants_path) {
        if (!(s->tenants = tn_load(s->tenants_path, err))) goto fail;
        log_line("info", "tenants", "loaded path=%s keys=%d", s->tenants_path, tn_count(s->tenants));
    } else {
        log_line("info", "tenants", "open mode: no --tenants file, no API key needed, every adapter visible");
    }
    if (s->adapters_dir && start_watching(s, err) != 0) goto fail;
    if (cfg->data_dir && open_finetune(s, err) != 0) goto fail;
    if (!s->cfg.max_body_bytes) s->cfg.max_body_bytes = 8u << 20;
    http_config hc = {.host = s->host, .port = cfg->port, .max_body_bytes = cfg->max_body_bytes,
                      .idle_timeout_ms = cfg->idle_timeout_ms, .request_timeout_ms = cfg->request_timeout_ms,
                      .on_reject = on_reject, .body_limit = body_limit};
    if (!(s->http = http_server_start(&s->loop, &hc, on_request, s, err))) goto fail;
    uv_signal_start(&s->sigterm, on_signal, SIGTERM);
    uv_signal_start(&s->sigint, on_signal, SIGINT);
    uv_signal_start(&s->sighup, on_signal, SIGHUP);
    log_line("info", "server", "listening addr=%s port=%d", s->host, http_server_port(s->http));
    return s;
fail:
    srv_stop(s);
    uv_run(&s->loop, UV_RUN_DEFAULT); // lets the handles close
    srv_free(s);
    return NULL;
}

void srv_set_engine(srv *s, const srv_engine *e) {
    s->engine = *e;
    s->has_engine = 1;
}

uv_loop_t *srv_loop(srv *s) { return &s->loop; }
const model_config *srv_model(const srv *s) { return &s->model; }
const tok *srv_tokenizer(const srv *s) { return s->tok; }
const char *srv_model_dir(const srv *s) { return s->model_dir; }

void srv_free(srv *s) {
    if (!s) return;
    if (uv_loop_close(&s->loop) != 0) {
        // Handles still open (srv_run was not called): close and drain them.
        srv_stop(s);
        uv_run(&s->loop, UV_RUN_DEFAULT);
        uv_loop_close(&s->loop);
    }
    ftjob_free(s->ftjobs);
    files_free(s->files);
    reg_snapshot_free(s->adapters);
    for (int i = 0; i < s->n_runtime; i++) reg_entry_unref(s->runtime[i]);
    free(s->runtime);
    tn_free(s->tenants);
    tok_free(s->tok);
    free(s->bos);
    free(s->base_id);
    free(s->model_dir);
    free(s->adapters_dir);
    free(s->tenants_path);
    free(s->host);
    free(s);
}
