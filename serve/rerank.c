// rerank: Qwen3-Reranker scoring over the engine, one max_tokens-1
// request per document. See rerank.h.
#include "rerank.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "log.h"
#include "registry.h"
#include "reply.h"
#include "util.h"

// Qwen3-Reranker's prompt, as its model card's reference code builds it:
// the prefix and suffix are tokenized with their control tokens, the body
// "<Instruct>: I\n<Query>: Q\n<Document>: D" as one plain text between them.
static const char RR_PREFIX[] =
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the Instruct "
    "provided. Note that the answer can only be \"yes\" or \"no\".<|im_end|>\n<|im_start|>user\n";
static const char RR_SUFFIX[] = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n";
static const char RR_INSTRUCT[] = "Given a web search query, retrieve relevant passages that answer the query";

// The bias put on "yes" and "no": the most the sampler takes. Both move
// by the same amount, so their difference, all the score reads, is kept
// (to the f32 rounding of a logit near 100: about 1e-5).
#define RR_BIAS 100.0f

typedef struct rr_job rr_job;

struct rerank {
    completion_env env;
    const srv_engine *engine;
    util_rng rng;
    uint64_t next_req_id;
    int stopping;
};

typedef struct rr_doc {
    rr_job *job;
    char *text;            // the document's text (owned)
    int32_t *ids;          // its prompt (owned)
    int n_ids;
    srv_request r;
    int submitted, done;
    float lp_yes, lp_no;   // NAN until the token comes
    double score;
} rr_doc;

struct rr_job {
    rerank *s;
    http_res *res;
    const http_req *q;
    uv_work_t work;
    char id[48];
    char tenant[64];
    char *model, *query, *instruct;
    int top_n, return_documents;
    reg_entry *adapter;    // held; NULL = base
    sampler_bias bias[2];
    rr_doc *docs;
    int n_docs, n_done;
    int64_t prompt_tokens;
    api_error err;
    sampler_params sp;     // every document's (borrows bias)
    int next_doc;          // the first document not yet submitted
    int in_flight;         // submitted, not finished
    int failed, closed, generating, replied, holds;
};

// ---- job lifetime -------------------------------------------------------------

static void job_free(rr_job *j) {
    if (!j->replied) http_res_send(j->res, 499, NULL, "", 0); // the connection is gone: only releases res
    for (int i = 0; i < j->n_docs; i++) {
        free(j->docs[i].text);
        free(j->docs[i].ids);
    }
    free(j->docs);
    if (j->adapter) reg_entry_unref(j->adapter);
    free(j->model);
    free(j->query);
    free(j->instruct);
    free(j);
}

static void job_error(rr_job *j) {
    j->replied = 1;
    reply_error_logged(j->s->env.requests, j->q, j->res, &j->err, j->tenant, j->model);
}

static int by_score(const void *a, const void *b) {
    const rr_doc *x = *(rr_doc *const *)a, *y = *(rr_doc *const *)b;
    if (x->score != y->score) return x->score < y->score ? 1 : -1;
    return (x > y) - (x < y); // ties: the earlier document first
}

static void job_respond(rr_job *j) {
    rr_doc **order = malloc((size_t)j->n_docs * sizeof *order);
    cJSON *o = cJSON_CreateObject(), *results = NULL, *usage = NULL;
    int ok = order && o;
    for (int i = 0; ok && i < j->n_docs; i++) order[i] = &j->docs[i];
    if (ok) qsort(order, (size_t)j->n_docs, sizeof *order, by_score);
    ok = ok && cJSON_AddStringToObject(o, "id", j->id) && cJSON_AddStringToObject(o, "object", "list") &&
         cJSON_AddStringToObject(o, "model", j->model) && (results = cJSON_AddArrayToObject(o, "results"));
    int n = j->top_n > 0 && j->top_n < j->n_docs ? j->top_n : j->n_docs;
    for (int i = 0; ok && i < n; i++) {
        cJSON *r = cJSON_CreateObject(), *d;
        ok = r && cJSON_AddItemToArray(results, r) &&
             cJSON_AddNumberToObject(r, "index", (double)(order[i] - j->docs)) &&
             cJSON_AddNumberToObject(r, "relevance_score", order[i]->score);
        if (ok && j->return_documents)
            ok = (d = cJSON_AddObjectToObject(r, "document")) && cJSON_AddStringToObject(d, "text", order[i]->text);
    }
    ok = ok && (usage = cJSON_AddObjectToObject(o, "usage")) &&
         cJSON_AddNumberToObject(usage, "prompt_tokens", (double)j->prompt_tokens) &&
         cJSON_AddNumberToObject(usage, "total_tokens", (double)j->prompt_tokens);
    char *json = ok ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    free(order);
    j->replied = 1;
    reply_json_logged(j->s->env.requests, j->q, j->res, json ? 200 : 500, json, j->tenant, j->model);
}

// Every document has finished: answer (unless the client is gone) and free.
static void job_maybe_done(rr_job *j) {
    if (j->holds > 0 || j->n_done < j->n_docs) return;
    if (!j->closed) {
        if (j->failed) job_error(j);
        else job_respond(j);
    }
    job_free(j);
}

static void job_pump(rr_job *j);

// ---- the engine's sink ----------------------------------------------------------

// The one token of a document: its top two logprobs are "yes" and "no"
// (both carry the same +100 bias, far above any other token's logit).
static void sink_token(void *ctx, int index, const sampler_result *r) {
    rr_doc *d = ctx;
    (void)index;
    for (int k = 0; k < r->n_top; k++) {
        if (r->top[k].token == d->job->bias[0].token) d->lp_yes = r->top[k].logprob;
        if (r->top[k].token == d->job->bias[1].token) d->lp_no = r->top[k].logprob;
    }
}

static void sink_finish(void *ctx, int index, srv_finish reason, int completion_tokens) {
    rr_doc *d = ctx;
    rr_job *j = d->job;
    (void)index;
    (void)completion_tokens;
    d->done = 1;
    j->n_done++;
    j->in_flight--;
    if (!j->failed && (reason == SRV_FINISH_ERROR || reason == SRV_FINISH_CANCEL)) {
        api_err_set(&j->err, 500, "server_error", NULL, NULL, "the engine failed document %d", (int)(d - j->docs));
        j->failed = 1;
    } else if (!j->failed && (isnan(d->lp_yes) || isnan(d->lp_no))) {
        api_err_set(&j->err, 500, "server_error", NULL, NULL,
                    "document %d: the engine did not report the logprobs of \"yes\" and \"no\"", (int)(d - j->docs));
        j->failed = 1;
    } else if (!j->failed) {
        d->score = 1.0 / (1.0 + exp((double)d->lp_no - (double)d->lp_yes));
    }
    j->holds++;
    job_pump(j); // the engine has room for one more
    j->holds--;
    job_maybe_done(j);
}

// ---- submitting -----------------------------------------------------------------

static void job_cancel_all(rr_job *j) {
    const srv_engine *e = j->s->engine;
    j->holds++;
    for (int i = 0; i < j->n_docs; i++)
        if (j->docs[i].submitted && !j->docs[i].done) e->cancel(e->ctx, &j->docs[i].r, -1);
    j->holds--;
}

static void job_on_close(http_res *res, void *ud) {
    rr_job *j = ud;
    (void)res;
    j->closed = 1;
    if (!j->generating) return; // a tokenizing job is dropped when its work returns
    log_line("info", "http", "client gone, cancelling rerank id=%s conn=%llu documents=%d", j->id,
             (unsigned long long)j->q->conn_id, j->n_docs);
    job_cancel_all(j);
    job_maybe_done(j);
}

// Submits the documents not yet submitted, in order, as far as the engine
// takes them. A BUSY while some of the job's documents are in flight only
// pauses: each of them, finishing, calls this again, so a list longer than
// the engine's queue goes through in waves. A BUSY with none in flight (the
// queue is full of others' work) is the client's 429; any other refusal a
// 503. On a failure, a client gone or a server stopping, the rest are
// never submitted (counted done) and those in flight are cancelled.
static void job_pump(rr_job *j) {
    rerank *s = j->s;
    while (j->next_doc < j->n_docs && !j->failed && !j->closed && !s->stopping) {
        rr_doc *d = &j->docs[j->next_doc];
        err_t err = {{0}};
        d->r = (srv_request){.id = ++s->next_req_id, .prompt = d->ids, .n_prompt = d->n_ids,
                             .adapter = j->adapter ? j->adapter->name : NULL, .adapter_entry = j->adapter,
                             .sampling = j->sp, .max_tokens = 1, .n = 1, .think_end = -1,
                             .call_open = -1, .call_close = -1,
                             .sink = {.ctx = d, .on_token = sink_token, .on_finish = sink_finish}};
        int rc = s->engine->submit(s->engine->ctx, &d->r, &err);
        if (rc == SRV_SUBMIT_OK) {
            d->submitted = 1;
            j->in_flight++;
            j->next_doc++;
        } else if (rc == SRV_SUBMIT_BUSY && j->in_flight > 0) {
            return;
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
    if (j->next_doc == j->n_docs) return;
    if (!j->failed && !j->closed) { // the server is stopping
        api_err_set(&j->err, 503, "server_error", NULL, NULL, "the server is shutting down");
        j->failed = 1;
    }
    j->n_done += j->n_docs - j->next_doc;
    j->next_doc = j->n_docs;
    if (!j->closed) job_cancel_all(j); // a client gone: job_on_close has cancelled them

}

// Starts the job's documents through the engine: greedy (nothing random;
// the logprobs do not depend on temperature), the bias on "yes" and "no",
// their two logprobs reported.
static void job_submit(rr_job *j) {
    j->sp = sampler_params_default();
    j->sp.temperature = 0;
    j->sp.logit_bias = j->bias;
    j->sp.n_logit_bias = 2;
    j->sp.top_logprobs = 2;
    j->sp.seed = util_rng_next(&j->s->rng);
    j->generating = 1;
    j->holds++;
    job_pump(j);
    j->holds--;
}

// ---- tokenizing (thread pool) -----------------------------------------------------

// Appends text to ids: control tokens parsed only where special is set.
static int push(const tok *t, util_buf *b, const char *text, int special, err_t *err) {
    size_t n = 0;
    int32_t *ids = tok_encode_ex(t, text, strlen(text), special ? TOK_PARSE_SPECIAL : 0, &n, err);
    if (!ids) return -1;
    util_buf_put(b, (const char *)ids, n * sizeof *ids);
    free(ids);
    return b->oom ? -1 : 0;
}

// Renders and tokenizes every document's prompt. Reads only the tokenizer
// (immutable) and the job.
static void job_tokenize(uv_work_t *w) {
    rr_job *j = w->data;
    const tok *t = j->s->env.tok;
    for (int i = 0; i < j->n_docs; i++) {
        util_buf b = {0};
        err_t err = {{0}};
        util_buf body = {0};
        util_buf_puts(&body, "<Instruct>: ");
        util_buf_puts(&body, j->instruct ? j->instruct : RR_INSTRUCT);
        util_buf_puts(&body, "\n<Query>: ");
        util_buf_puts(&body, j->query);
        util_buf_puts(&body, "\n<Document>: ");
        util_buf_puts(&body, j->docs[i].text);
        int rc = body.oom ? -1 : push(t, &b, RR_PREFIX, 1, &err);
        if (rc == 0) rc = push(t, &b, body.p, 0, &err);
        if (rc == 0) rc = push(t, &b, RR_SUFFIX, 1, &err);
        free(body.p);
        if (rc != 0) {
            free(b.p);
            api_err_set(&j->err, 500, "server_error", NULL, NULL, "tokenizing document %d failed: %s", i,
                        err.msg[0] ? err.msg : "out of memory");
            j->failed = 1;
            return;
        }
        j->docs[i].ids = (int32_t *)b.p;
        j->docs[i].n_ids = (int)(b.len / sizeof(int32_t));
    }
}

static void job_tokenized(uv_work_t *w, int status) {
    rr_job *j = w->data;
    rerank *s = j->s;
    if (j->closed || s->stopping || status != 0) {
        job_free(j);
        return;
    }
    int64_t ctx = s->env.model->max_position_embeddings;
    for (int i = 0; i < j->n_docs && !j->failed; i++) {
        j->prompt_tokens += j->docs[i].n_ids;
        if (j->docs[i].n_ids + 1 > ctx) {
            char p[32];
            snprintf(p, sizeof p, "documents[%d]", i);
            api_err_invalid(&j->err, p, "Invalid '%s': its prompt is %d tokens; this model's context is %lld.", p,
                            j->docs[i].n_ids, (long long)ctx);
            j->failed = 1;
        }
    }
    if (j->failed) {
        job_error(j);
        job_free(j);
        return;
    }
    job_submit(j);
    job_maybe_done(j);
}

// ---- parsing ----------------------------------------------------------------------

static char *dup_or_null(const cJSON *v) { return cJSON_IsString(v) ? strdup(v->valuestring) : NULL; }

// Validates the body into j; fills j->err and returns -1 on the first fault.
static int job_parse(rr_job *j, cJSON *o) {
    api_error *e = &j->err;
    if (!cJSON_IsObject(o)) return api_err_invalid(e, NULL, "The request body must be a JSON object.");
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(o, "model");
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(o, "query");
    const cJSON *ds = cJSON_GetObjectItemCaseSensitive(o, "documents");
    const cJSON *tn = cJSON_GetObjectItemCaseSensitive(o, "top_n");
    const cJSON *rd = cJSON_GetObjectItemCaseSensitive(o, "return_documents");
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(o, "instruction");
    if (!cJSON_IsString(m) || !m->valuestring[0])
        return api_err_invalid(e, "model", "Invalid 'model': expected a non-empty string.");
    if (!cJSON_IsString(q)) return api_err_invalid(e, "query", "Missing or invalid 'query': expected a string.");
    int n = cJSON_GetArraySize(ds);
    if (!cJSON_IsArray(ds) || n < 1 || n > RERANK_MAX_DOCS)
        return api_err_invalid(e, "documents", "Invalid 'documents': expected a list of 1 to %d strings or objects "
                               "with a \"text\" string.", RERANK_MAX_DOCS);
    if (tn && !cJSON_IsNull(tn) && (!cJSON_IsNumber(tn) || tn->valuedouble < 1 || tn->valuedouble > 1e9 ||
                                    tn->valuedouble != (double)(int)tn->valuedouble))
        return api_err_invalid(e, "top_n", "Invalid 'top_n': expected an integer >= 1.");
    if (rd && !cJSON_IsNull(rd) && !cJSON_IsBool(rd))
        return api_err_invalid(e, "return_documents", "Invalid 'return_documents': expected a boolean.");
    if (in && !cJSON_IsNull(in) && !cJSON_IsString(in))
        return api_err_invalid(e, "instruction", "Invalid 'instruction': expected a string.");
    j->top_n = cJSON_IsNumber(tn) ? (int)tn->valuedouble : 0;
    j->return_documents = cJSON_IsTrue(rd);
    j->model = dup_or_null(m);
    j->query = dup_or_null(q);
    j->instruct = dup_or_null(in);
    j->docs = calloc((size_t)n, sizeof *j->docs);
    if (!j->model || !j->query || (cJSON_IsString(in) && !j->instruct) || !j->docs)
        return api_err_set(e, 500, "server_error", NULL, NULL, "out of memory");
    j->n_docs = n;
    for (int i = 0; i < n; i++) {
        const cJSON *d = cJSON_GetArrayItem(ds, i);
        if (cJSON_IsObject(d)) d = cJSON_GetObjectItemCaseSensitive(d, "text");
        if (!cJSON_IsString(d)) {
            char p[32];
            snprintf(p, sizeof p, "documents[%d]", i);
            return api_err_invalid(e, p, "Invalid '%s': expected a string or an object with a \"text\" string.", p);
        }
        j->docs[i] = (rr_doc){.job = j, .text = strdup(d->valuestring), .lp_yes = NAN, .lp_no = NAN};
        if (!j->docs[i].text) return api_err_set(e, 500, "server_error", NULL, NULL, "out of memory");
    }
    return 0;
}

// The ids of "yes" and "no" as single tokens (Qwen3's vocabulary has both).
static int find_yes_no(rr_job *j) {
    const tok *t = j->s->env.tok;
    int32_t yes = tok_token_id(t, "yes"), no = tok_token_id(t, "no");
    if (yes < 0 || no < 0 || yes >= j->s->env.model->vocab_size || no >= j->s->env.model->vocab_size)
        return api_err_invalid(&j->err, "model", "This model's tokenizer has no single \"yes\" and \"no\" tokens: it "
                               "cannot score as Qwen3-Reranker does.");
    j->bias[0] = (sampler_bias){.token = yes, .bias = RR_BIAS};
    j->bias[1] = (sampler_bias){.token = no, .bias = RR_BIAS};
    return 0;
}

void rerank_handle(rerank *s, const http_req *q, http_res *res, const tn_tenant *tn) {
    rr_job *j = calloc(1, sizeof *j);
    if (!j) {
        reply_json(res, 500, NULL);
        return;
    }
    j->s = s;
    j->res = res;
    j->q = q;
    snprintf(j->tenant, sizeof j->tenant, "%s", tn->name);
    cJSON *o = cJSON_ParseWithLength(q->body ? q->body : "", q->body_len);
    int rc = o ? job_parse(j, o) : api_err_invalid(&j->err, NULL, "The request body is not valid JSON.");
    cJSON_Delete(o);
    const reg_entry *e = NULL;
    if (rc == 0 && !access_model(s->env.access, tn, j->model, &e)) rc = access_not_found(&j->err, j->model, "model");
    if (rc == 0 && e && s->engine && s->engine->max_lora_rank > 0 && e->rank > s->engine->max_lora_rank)
        rc = api_err_invalid(&j->err, "model", "The adapter '%s' has LoRA rank %d, above this server's --max-lora-rank %d.",
                             e->name, e->rank, s->engine->max_lora_rank);
    if (rc == 0) rc = find_yes_no(j);
    if (rc == 0 && !s->engine)
        rc = api_err_set(&j->err, 503, "server_error", NULL, NULL, "generation engine not available in this build");
    if (rc != 0) {
        job_error(j);
        job_free(j);
        return;
    }
    if (e) j->adapter = reg_entry_ref(e);
    uint64_t a = util_rng_next(&s->rng), b = util_rng_next(&s->rng);
    snprintf(j->id, sizeof j->id, "rerank-%012llx%012llx", (unsigned long long)(a & 0xffffffffffffULL),
             (unsigned long long)(b & 0xffffffffffffULL));
    http_res_on_close(res, job_on_close, j);
    j->work.data = j;
    if (uv_queue_work(s->env.loop, &j->work, job_tokenize, job_tokenized) != 0) {
        api_err_set(&j->err, 500, "server_error", NULL, NULL, "could not queue the request");
        job_error(j);
        job_free(j);
    }
}

// ---- open / stop / free -------------------------------------------------------------

rerank *rerank_open(const completion_env *env) {
    rerank *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->env = *env;
    // srv_request ids are unique in the process (the engine's logs):
    // completion's count from 1, these from 2^48.
    r->next_req_id = (uint64_t)1 << 48;
    util_rng_seed(&r->rng, uv_hrtime() ^ ((uint64_t)getpid() << 16));
    return r;
}

void rerank_set_engine(rerank *r, const srv_engine *engine) { r->engine = engine; }

void rerank_stop(rerank *r) {
    if (r) r->stopping = 1;
}

void rerank_free(rerank *r) { free(r); }
