// completion: generation jobs, from the parsed body to the SSE stream or
// the final JSON. See completion.h.
#include "completion.h"
#include "completion_tools.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gcache.h"
#include "log.h"
#include "logprobs.h"
#include "registry.h"
#include "reply.h"
#include "util.h"

typedef struct job job;

struct completion {
    completion_env env;
    const srv_engine *engine;  // NULL = none
    util_rng rng;              // job ids and the seeds clients leave out
    uint64_t next_req_id;
    job *jobs;                 // in flight
    int stopping;
    gc_cache *gc;              // response_format's grammars
};

// Most whitespace bytes between two JSON tokens of a constrained answer:
// a newline and the indentation of json.dumps(indent=2) five levels deep or
// indent=4 two levels deep (a model that pretty-prints keeps its style in
// the usual shapes; deeper, it is pushed to less indentation, still valid),
// and small enough that a sampling model cannot spend max_tokens on blanks.
#define COMPLETION_WS_MAX 12

// ---- jobs: state ------------------------------------------------------------------

enum { JOB_TOKENIZING, JOB_GENERATING, JOB_DONE };

typedef struct choice {
    int index;
    job *job;
    tok_stream *ts;
    util_buf text;             // non-streamed: the text so far
    util_buf held;             // text held back: it may be the start of a stop string
    lp_list lps;               // non-streamed logprobs
    int tokens;                // tokens received
    int completion_tokens;
    const char *finish;        // decided finish_reason (a stop string matched), else NULL
    int cut;                   // a stop string matched: later tokens are ignored
    int done, error;           // error: the answer is a 500 (later tokens are ignored)
    ct_reply *reply;           // chat with tools or Qwen3: the reply parser, else NULL
    api_token_logprob *lp;     // streamed with a parser: the logprob waiting for a chunk
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
    completion *s;
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
    gm_grammar *grammar;       // response_format's (a held reference), NULL = free text
    gm_grammar *call_grammar;  // the tools' (a held reference), NULL = no call may be made
    char tool_err[256];        // a reply parser's error (the 500's message), "" = none
    api_error err;
    int failed;                // err holds the answer
    int closed;                // the client is gone
    int streaming;             // SSE started
    int holds;                 // > 0 while a loop over the engine may finish choices
    int replied;
    int status;                // for the log
};

static void job_free(job *j) {
    completion *s = j->s;
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
        lp_list_free(&c->lps);
        ct_reply_free(c->reply);
    }
    free(j->choices);
    if (j->adapter) reg_entry_unref(j->adapter);
    if (j->grammar) gm_grammar_unref(j->grammar); // every choice has finished: the engine is done with it
    if (j->call_grammar) gm_grammar_unref(j->call_grammar);
    api_request_free(&j->req);
    free(j);
}

static void job_log(job *j, int status) {
    j->status = status;
    metrics_count_request(j->s->env.requests, reply_endpoint(j->q->path), status);
    int64_t ct = 0;
    for (int i = 0; i < j->n_choices; i++) ct += j->choices[i].completion_tokens;
    log_line("info", "http", "request method=%s path=%s status=%d peer=%s conn=%llu tenant=%s model=%s "
          "prompt_tokens=%lld completion_tokens=%lld stream=%d", j->q->method, j->q->path, status, j->q->peer,
          (unsigned long long)j->q->conn_id, j->tenant, j->req.model ? j->req.model : "-",
          (long long)j->prompt_tokens, (long long)ct, j->req.stream);
}

static void job_reply_error(job *j) {
    job_log(j, j->err.status);
    j->replied = 1;
    reply_error(j->res, &j->err);
}

// ---- jobs: the stream of text ---------------------------------------------------------

// Sends one SSE event with a built JSON text.
static void sse_send(job *j, char *json) {
    if (json) http_res_sse_data(j->res, json, strlen(json));
    free(json);
}

static void job_cancel_choice(job *j, int ci);

// A streamed delta of a reply parser (ct_send_fn), with the logprob of
// the token whose text made it, if it is the first chunk of that text.
static void choice_send_delta(void *ud, const api_delta *d) {
    choice *c = ud;
    job *j = c->job;
    const api_request *q = &j->req;
    api_token_logprob *lp = c->lp;
    c->lp = NULL;
    if (j->streaming)
        sse_send(j, api_chat_delta_json(j->id, j->created, q->model, c->index, d, NULL, lp, lp ? 1 : 0,
                                        q->include_usage));
    if (lp) lp_free(lp);
}

// The reply parser failed (a call it had begun went bad: with the call
// grammar on, an engine bug): the choice ends in a 500, or the stream's
// error event, and its generation stops.
static void choice_tool_error(job *j, choice *c) {
    const char *msg = ct_reply_error(c->reply);
    log_line("error", "completion", "tool call unreadable request=%s choice=%d: %s", j->id, c->index, msg);
    if (!j->tool_err[0]) snprintf(j->tool_err, sizeof j->tool_err, "%s", msg);
    c->error = 1;
    if (!c->done) job_cancel_choice(j, (int)(c - j->choices));
}

// Text through the reply parser: its events become deltas (streamed) or
// the answer's parts. A streamed token whose text made no chunk (held
// back, or a tag) still sends its logprob, with an empty delta.
static void choice_parse(job *j, choice *c, const char *p, size_t n, api_token_logprob *lp) {
    if (!j->streaming) {
        if (lp && lp_list_push(&c->lps, lp) != 0) c->error = 1;
    } else {
        c->lp = lp;
    }
    if (n && ct_reply_feed(c->reply, p, n) != 0) choice_tool_error(j, c);
    if (c->lp && !c->error) {
        api_delta none = {.call_index = -1};
        choice_send_delta(c, &none);
    } else if (c->lp) {
        lp_free(c->lp);
        c->lp = NULL;
    }
}

// Text (and the logprob of the token that produced it) ready for the client.
static void choice_emit(job *j, choice *c, const char *p, size_t n, api_token_logprob *lp) {
    const api_request *q = &j->req;
    if (c->reply) {
        choice_parse(j, c, p, n, lp);
        return;
    }
    if (j->streaming) {
        if (n == 0 && !lp) return;
        char *json = q->kind == API_CHAT
                         ? api_chat_chunk_json(j->id, j->created, q->model, c->index, 0, p, n, NULL, lp, lp ? 1 : 0,
                                               q->include_usage)
                         : api_completion_chunk_json(j->id, j->created, q->model, c->index, p, n, NULL, lp,
                                                     lp ? 1 : 0, q->include_usage);
        sse_send(j, json);
        if (lp) lp_free(lp);
        return;
    }
    util_buf_put(&c->text, p, n);
    if (c->text.oom) c->error = 1;
    if (lp && lp_list_push(&c->lps, lp) != 0) c->error = 1;
}

// Passes new text through the stop strings: text that might be the start
// of a stop string is held back; a complete one ends the choice there
// (finish_reason "stop", the stop string itself is not returned).
static void choice_text(job *j, choice *c, const char *p, size_t n, api_token_logprob *lp) {
    util_buf *h = &c->held;
    util_buf_put(h, p, n);
    if (h->oom) {
        c->error = 1;
        if (lp) lp_free(lp);
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

// The answer to a choice that failed: the engine, or a tool call the
// reply parser could not read.
static void job_error_500(const job *j, api_error *e) {
    if (j->tool_err[0])
        api_err_set(e, 500, "server_error", NULL, NULL, "the model's tool call could not be read: %s", j->tool_err);
    else
        api_err_set(e, 500, "server_error", NULL, NULL, "the generation engine failed on this request");
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
            job_error_500(j, &e);
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
        job_error_500(j, &j->err);
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
                             .finish_reason = c->finish, .logprobs = q->logprobs ? c->lps.v : NULL,
                             .n_logprobs = c->lps.n};
        static const api_token_logprob none;
        if (q->logprobs && !c->lps.v) ch[i].logprobs = &none; // an empty list, not null
        if (c->reply && ct_reply_choice(c->reply, &ch[i]) != 0) error = 1;
    }
    if (error) {
        free(ch);
        api_err_set(&j->err, 500, "server_error", NULL, NULL, "out of memory");
        job_reply_error(j);
        return;
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
    if (c->done || c->cut || c->error || j->closed || c->tokens >= g->r.max_tokens) return;
    if (r->finish == SAMPLER_FINISH_STOP) return; // EOS: counted by on_finish, never shown
    c->tokens++;
    api_token_logprob lp, *lpp = NULL;
    if (j->req.logprobs) {
        if (lp_make(j->s->env.tok, r, &lp) == 0) lpp = &lp;
        else lp_free(&lp);
    }
    size_t n = 0;
    const char *text = tok_stream_push(c->ts, r->token, &n);
    if (!text) {
        c->error = 1;
        if (lpp) lp_free(lpp);
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
        if (c->reply && !c->error && ct_reply_finish(c->reply) != 0) {
            // A call cut short by max_tokens or a stop string is the
            // request's limit, not a fault: the finished calls stand.
            if (c->cut || reason == SRV_FINISH_LENGTH)
                log_line("info", "completion", "tool call cut short request=%s choice=%d: %s", j->id, c->index,
                         ct_reply_error(c->reply));
            else
                choice_tool_error(j, c);
        }
    }
    if (!j->closed && !c->error) {
        if (!c->finish) c->finish = finish_name(reason);
        // A reply that made calls and was not cut by max_tokens asks the
        // client to run them (OpenAI's "tool_calls"; a stop string counts
        // as stopping).
        if (c->reply && ct_reply_calls(c->reply) > 0 && strcmp(c->finish, "length") != 0) c->finish = "tool_calls";
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
    completion *s = j->s;
    for (int i = 0; i < j->n_gens; i++) {
        job_gen *g = &j->gens[i];
        if (ci >= g->first && ci < g->first + g->r.n && g->submitted && s->engine)
            s->engine->cancel(s->engine->ctx, &g->r, ci - g->first);
    }
}

// The client went away: cancel whatever the engine still does for the job.
static void job_on_close(http_res *res, void *ud) {
    job *j = ud;
    completion *s = j->s;
    j->closed = 1;
    if (j->state != JOB_GENERATING) return; // a tokenizing job is dropped when its work returns
    log_line("info", "http", "client gone, cancelling request id=%s conn=%llu", j->id, (unsigned long long)j->q->conn_id);
    j->holds++;
    for (int i = 0; i < j->n_gens; i++)
        if (j->gens[i].submitted && s->engine) s->engine->cancel(s->engine->ctx, &j->gens[i].r, -1);
    j->holds--;
    job_maybe_done(j);
}

// ---- jobs: tokenizing (thread pool) ------------------------------------------------

// The response_format grammar and the tools' call grammar (compiled or
// cached; gcache.h). A schema the engine refuses is the client's error:
// 400 naming the schema.
static int job_compile(job *j) {
    const api_request *q = &j->req;
    err_t err = {{0}};
    if (ct_compile(j->s->gc, q, j->s->env.family, COMPLETION_WS_MAX, j->id, &j->call_grammar, &j->err) != 0) {
        j->failed = 1;
        return -1;
    }
    if (!q->schema) return 0;
    j->grammar = gc_get(j->s->gc, q->schema, &err);
    if (j->grammar) return 0;
    if (q->format == API_FORMAT_JSON_SCHEMA)
        api_err_invalid(&j->err, "response_format.json_schema.schema", "Invalid schema for response_format '%s': %s",
                        q->schema_name, err.msg);
    else
        api_err_set(&j->err, 500, "server_error", "response_format", NULL, "cannot build the JSON grammar: %s", err.msg);
    j->failed = 1;
    return -1;
}

// Compiles the response_format's grammar, renders and tokenizes every
// prompt. Runs on a worker: reads only immutable server state (tokenizer,
// template), the grammar cache (thread-safe) and the job.
static void job_tokenize(uv_work_t *w) {
    job *j = w->data;
    const completion_env *s = &j->s->env;
    const api_request *q = &j->req;
    err_t err = {{0}};
    if (job_compile(j) != 0) return;
    for (int i = 0; i < j->n_gens; i++) {
        job_gen *g = &j->gens[i];
        size_t n = 0;
        int32_t *ids = NULL;
        if (q->kind == API_CHAT) {
            chat_opts opts = {.add_generation_prompt = 1, .enable_thinking = q->enable_thinking, .bos_token = s->bos};
            chat_prompt *prompt = ct_render(q, s->family, &opts, &j->err);
            if (!prompt) {
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
    const completion_env *s = &j->s->env;
    int64_t ctx = s->model->max_position_embeddings;
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
    completion *s = j->s;
    if (!s->engine) {
        api_err_set(&j->err, 503, "server_error", NULL, NULL, "generation engine not available in this build");
        j->failed = 1;
        return;
    }
    const api_request *q = &j->req;
    sampler_params sp = api_sampler_params(q);
    sp.stop_ids = s->env.eos;
    sp.n_stop_ids = s->env.n_eos;
    sp.seed = q->has_seed ? q->seed : util_rng_next(&s->rng);
    err_t err = {{0}};
    if (sampler_params_check(&sp, s->env.model->vocab_size, &err) != 0) {
        api_err_invalid(&j->err, NULL, "%s", err.msg);
        j->failed = 1;
        return;
    }
    for (int i = 0; i < j->n_gens; i++) j->gens[i].r.sampling = sp;
    j->state = JOB_GENERATING;
    j->holds++;
    for (int i = 0; i < j->n_gens && !j->failed; i++) {
        job_gen *g = &j->gens[i];
        int rc = s->engine->submit(s->engine->ctx, &g->r, &err);
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
                s->engine->cancel(s->engine->ctx, &g->r, -1);
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

// The token whose sampling opens the constraint: Qwen3's </think> when
// the chat template lets the model reason first (enable_thinking not
// false); -1 for every other template and for /v1/completions, whose
// constraint holds from the first token.
static int32_t think_end(const job *j) {
    const completion_env *s = &j->s->env;
    if (j->req.kind != API_CHAT || s->family != CHAT_QWEN3 || j->req.enable_thinking == 0) return -1;
    return tok_token_id(s->tok, "</think>");
}

static void job_tokenized(uv_work_t *w, int status) {
    job *j = w->data;
    completion *s = j->s;
    if (j->closed || s->stopping || status != 0) {
        if (j->closed) log_line("info", "http", "client gone before the answer path=%s peer=%s", j->q->path, j->q->peer);
        job_free(j);
        return;
    }
    if (j->req.schema && j->grammar) s->env.requests->structured_requests++;
    else if (j->req.schema && j->err.status == 400) s->env.requests->structured_schema_errors++;
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
                                 .grammar = j->grammar, .think_end = think_end(j),
                                 .sink = {.ctx = g, .on_token = sink_token, .on_finish = sink_finish}};
            ct_constrain(&g->r, &j->req, s->env.family, s->env.tok, j->call_grammar);
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

static int check_prompt_ids(const completion_env *s, const api_request *q, api_error *e) {
    for (int i = 0; i < q->n_prompts; i++)
        for (int k = 0; k < q->prompts[i].n_ids; k++)
            if (q->prompts[i].ids[k] >= s->model->vocab_size) {
                char p[48] = "prompt";
                if (q->n_prompts > 1) snprintf(p, sizeof p, "prompt[%d]", i);
                return api_err_invalid(e, p, "Invalid '%s': token id %d is outside the vocabulary [0, %d).", p,
                                       (int)q->prompts[i].ids[k], s->model->vocab_size);
            }
    for (int i = 0; i < q->n_logit_bias; i++)
        if (q->logit_bias[i].token >= s->model->vocab_size)
            return api_err_invalid(e, "logit_bias", "Invalid 'logit_bias': token id %d is outside the vocabulary [0, %d).",
                                   (int)q->logit_bias[i].token, s->model->vocab_size);
    return 0;
}

void completion_handle(completion *s, const http_req *q, http_res *res, const tn_tenant *tn, api_kind kind) {
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
    if (rc == 0 && !access_model(s->env.access, tn, j->req.model, &e))
        rc = access_not_found(&j->err, j->req.model, "model");
    if (rc == 0 && e && s->engine && s->engine->max_lora_rank > 0 && e->rank > s->engine->max_lora_rank)
        rc = api_err_invalid(&j->err, "model",
                             "The adapter '%s' has LoRA rank %d, above this server's --max-lora-rank %d: restart "
                             "the server with --max-lora-rank %d or more to serve it.",
                             e->name, e->rank, s->engine->max_lora_rank, e->rank);
    if (rc == 0 && kind == API_CHAT && !s->env.has_chat)
        rc = api_err_invalid(&j->err, "messages",
                             "This model has no supported chat template: use /v1/completions, or start the server "
                             "with --chat-template NAME.");
    if (rc == 0 && kind == API_CHAT) rc = ct_check(&j->req, s->env.family, s->env.tok, &j->err);
    if (rc == 0) rc = check_prompt_ids(&s->env, &j->req, &j->err);
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
    int parses = ct_parses(&j->req, s->env.family);
    for (int i = 0; ok && i < j->n_choices; i++) {
        choice *c = &j->choices[i];
        c->index = i;
        c->job = j;
        ok = (c->ts = tok_stream_new(s->env.tok, 1)) != NULL;
        if (ok && parses)
            ok = (c->reply = ct_reply_new(&j->req, s->env.family, util_rng_next(&s->rng),
                                          j->req.stream ? choice_send_delta : NULL, c)) != NULL;
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
    if (uv_queue_work(s->env.loop, &j->work, job_tokenize, job_tokenized) != 0) {
        api_err_set(&j->err, 500, "server_error", NULL, NULL, "could not queue the request");
        j->state = JOB_DONE;
        job_reply_error(j);
        job_free(j);
    }
}
// ---- open / stop / free ---------------------------------------------------------------

completion *completion_open(const completion_env *env) {
    completion *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->env = *env;
    gm_opts go = {.ws_max = COMPLETION_WS_MAX};
    if (!(c->gc = gc_new(env->tok, &go, 0))) {
        free(c);
        return NULL;
    }
    util_rng_seed(&c->rng, uv_hrtime() ^ ((uint64_t)getpid() << 32));
    return c;
}

void completion_set_engine(completion *c, const srv_engine *engine) { c->engine = engine; }

void completion_grammar_metrics(completion *c, metrics_requests *r) {
    gc_stats st;
    gc_get_stats(c->gc, &st);
    r->grammar = (metrics_grammar){.hits = st.hits, .misses = st.misses, .compile_errors = st.compile_errors,
                                   .evictions = st.evictions, .entries = st.entries, .bytes = (int64_t)st.bytes,
                                   .compile_seconds = (double)st.compile_us / 1e6,
                                   .vocab_cache_bytes = (int64_t)st.vocab.bytes,
                                   .vocab_cache_unpublished = (int64_t)st.vocab.unpublished};
}

void completion_stop(completion *c) {
    if (c) c->stopping = 1;
}

void completion_free(completion *c) {
    if (!c) return;
    gc_free(c->gc);
    free(c);
}
