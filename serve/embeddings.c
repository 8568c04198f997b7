// embeddings: POST /v1/embeddings jobs (see embeddings.h). A job lives
// through TOKENIZING (the thread pool), RUNNING (one embedding request per
// input in the engine) and is answered and freed once every submitted
// request has finished (the client may be gone by then: its close cancels
// them).
#include "embeddings.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "embed.h"
#include "log.h"
#include "registry.h"
#include "reply.h"

typedef struct emb_job emb_job;

typedef struct emb_item {
    emb_job *job;
    int32_t *ids;
    int n_ids;
    srv_request r;
    int submitted, finished;
    float *vec; // hidden_size floats once the engine reported it
} emb_item;

struct emb_job {
    embeddings *s;
    const http_req *q;
    http_res *res;
    char tenant[64];
    api_embed_request req;
    api_error err;
    int failed, closed, running, n_finished;
    reg_entry *adapter; // held; NULL = the base
    emb_item *items;
    uv_work_t work;
    emb_job *next, *prev;
};

struct embeddings {
    embeddings_env env;
    const srv_engine *engine;
    emb_job *jobs;
    uint64_t next_req_id;
    int stopping;
};

static void job_free(emb_job *j) {
    embeddings *s = j->s;
    if (j->prev) j->prev->next = j->next;
    else if (s->jobs == j) s->jobs = j->next;
    if (j->next) j->next->prev = j->prev;
    for (int i = 0; j->items && i < j->req.n_inputs; i++) free(j->items[i].ids), free(j->items[i].vec);
    free(j->items);
    reg_entry_unref(j->adapter);
    api_embed_request_free(&j->req);
    free(j);
}

static void job_error(emb_job *j) {
    reply_error_logged(j->s->env.requests, j->q, j->res, &j->err, j->tenant, j->req.model);
}

// The answer's data array: each vector truncated to `dimensions` and
// re-normalized, as floats or base64.
static char *answer_json(emb_job *j) {
    const api_embed_request *q = &j->req;
    int C = (int)j->s->env.model->hidden_size, dims = q->dimensions ? q->dimensions : C;
    int64_t tokens = 0;
    cJSON *o = cJSON_CreateObject(), *data = cJSON_AddArrayToObject(o, "data");
    char *b64 = malloc(emb_base64_len(dims));
    int ok = o && data && b64 && cJSON_AddStringToObject(o, "object", "list");
    for (int i = 0; ok && i < q->n_inputs; i++) {
        emb_item *it = &j->items[i];
        tokens += it->n_ids;
        if (q->dimensions) emb_truncate(it->vec, C, dims);
        cJSON *d = cJSON_CreateObject();
        ok = d && cJSON_AddItemToArray(data, d) && cJSON_AddStringToObject(d, "object", "embedding") &&
             cJSON_AddNumberToObject(d, "index", i);
        cJSON *v = !ok ? NULL
                   : q->base64 ? cJSON_CreateString(emb_base64(it->vec, dims, b64))
                               : cJSON_CreateFloatArray(it->vec, dims);
        ok = v && cJSON_AddItemToObject(d, "embedding", v);
    }
    cJSON *u = ok ? cJSON_AddObjectToObject(o, "usage") : NULL;
    ok = u && cJSON_AddStringToObject(o, "model", q->model) && cJSON_AddNumberToObject(u, "prompt_tokens", (double)tokens) &&
         cJSON_AddNumberToObject(u, "total_tokens", (double)tokens);
    char *body = ok ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    free(b64);
    return body;
}

// Every submitted request has finished: answer (unless the client left).
static void job_maybe_done(emb_job *j) {
    int submitted = 0;
    for (int i = 0; i < j->req.n_inputs; i++) submitted += j->items[i].submitted;
    if (j->n_finished < submitted) return;
    if (!j->closed) {
        if (j->failed) job_error(j);
        else reply_json_logged(j->s->env.requests, j->q, j->res, 200, answer_json(j), j->tenant, j->req.model);
    }
    job_free(j);
}

static void sink_embedding(void *ctx, const float *v, int dim) {
    emb_item *it = ctx;
    if ((it->vec = malloc((size_t)dim * sizeof *v))) memcpy(it->vec, v, (size_t)dim * sizeof *v);
}

static void sink_finish(void *ctx, int index, srv_finish reason, int completion_tokens) {
    (void)index, (void)completion_tokens;
    emb_item *it = ctx;
    emb_job *j = it->job;
    it->finished = 1;
    j->n_finished++;
    if (!j->failed && (reason != SRV_FINISH_STOP || !it->vec)) {
        j->failed = 1;
        api_err_set(&j->err, 500, "server_error", NULL, NULL, "the engine failed embedding input %d (%s)",
                    (int)(it - j->items), reason == SRV_FINISH_CANCEL ? "cancelled" : "see the server log");
    }
    if (j->running) job_maybe_done(j);
}

static void job_on_close(http_res *res, void *ud) {
    (void)res;
    emb_job *j = ud;
    j->closed = 1;
    if (!j->running) return; // a tokenizing job is dropped when its work returns
    // A cancel may finish inside the call: the job is freed only after the loop.
    j->running = 0;
    for (int i = 0; i < j->req.n_inputs; i++)
        if (j->items[i].submitted && !j->items[i].finished)
            j->s->engine->cancel(j->s->engine->ctx, &j->items[i].r, -1);
    j->running = 1;
    job_maybe_done(j);
}

// Thread pool: the texts into ids; reads only the tokenizer and the job.
static void job_tokenize(uv_work_t *w) {
    emb_job *j = w->data;
    const embeddings_env *s = &j->s->env;
    for (int i = 0; i < j->req.n_inputs; i++) {
        const api_prompt *p = &j->req.inputs[i];
        emb_item *it = &j->items[i];
        size_t n = 0;
        err_t err = {{0}};
        if (p->ids) {
            n = (size_t)p->n_ids;
            if ((it->ids = malloc(n * sizeof *it->ids))) memcpy(it->ids, p->ids, n * sizeof *it->ids);
        } else {
            it->ids = tok_encode_ex(s->tok, p->text, strlen(p->text), TOK_PARSE_SPECIAL | TOK_ADD_SPECIAL, &n, &err);
        }
        if (!it->ids) {
            api_err_set(&j->err, 500, "server_error", NULL, NULL, "tokenizing failed: %s",
                        err.msg[0] ? err.msg : "out of memory");
            j->failed = 1;
            return;
        }
        it->n_ids = (int)n;
    }
}

static void submit_all(emb_job *j) {
    embeddings *s = j->s;
    err_t err = {{0}};
    for (int i = 0; i < j->req.n_inputs && !j->failed; i++) {
        emb_item *it = &j->items[i];
        it->r = (srv_request){.id = ++s->next_req_id, .prompt = it->ids, .n_prompt = it->n_ids,
                              .adapter = j->adapter ? j->adapter->name : NULL, .adapter_entry = j->adapter,
                              .sampling = sampler_params_default(), .max_tokens = 1, .n = 1, .think_end = -1,
                              .call_open = -1, .call_close = -1, .embed = 1,
                              .sink = {.ctx = it, .on_finish = sink_finish, .on_embedding = sink_embedding}};
        int rc = s->engine->submit(s->engine->ctx, &it->r, &err);
        if (rc == SRV_SUBMIT_OK) {
            it->submitted = 1;
            continue;
        }
        j->failed = 1;
        if (rc == SRV_SUBMIT_BUSY)
            api_err_set(&j->err, 429, "server_error", NULL, "server_busy",
                        "The server is busy with other requests. Please retry shortly.");
        else api_err_set(&j->err, 503, "server_error", NULL, NULL, "%s", err.msg);
        j->err.retry_after = 1;
    }
    if (j->failed) // cancel what went in; the answer waits for their finishes
        for (int i = 0; i < j->req.n_inputs; i++)
            if (j->items[i].submitted) s->engine->cancel(s->engine->ctx, &j->items[i].r, -1);
}

static void job_tokenized(uv_work_t *w, int status) {
    emb_job *j = w->data;
    embeddings *s = j->s;
    if (j->closed || s->stopping || status != 0) {
        job_free(j);
        return;
    }
    int64_t max_len = s->env.model->max_position_embeddings;
    for (int i = 0; i < j->req.n_inputs && !j->failed; i++)
        if (max_len > 0 && j->items[i].n_ids > max_len) {
            char p[32];
            snprintf(p, sizeof p, j->req.n_inputs > 1 ? "input[%d]" : "input", i);
            api_err_invalid(&j->err, p, "Invalid '%s': %d tokens, above this model's maximum context length of %lld.",
                            p, j->items[i].n_ids, (long long)max_len);
            j->failed = 1;
        } else if (j->items[i].n_ids == 0) {
            char p[32];
            snprintf(p, sizeof p, j->req.n_inputs > 1 ? "input[%d]" : "input", i);
            api_err_invalid(&j->err, p, "Invalid '%s': it tokenizes to no tokens.", p);
            j->failed = 1;
        }
    if (!j->failed) submit_all(j);
    j->running = 1;
    job_maybe_done(j); // answers now when nothing went in
}

static int check_request(embeddings *s, const tn_tenant *tn, emb_job *j, const reg_entry **e) {
    const api_embed_request *q = &j->req;
    if (!access_model(s->env.access, tn, q->model, e)) return access_not_found(&j->err, q->model, "model");
    if (*e && s->engine && s->engine->max_lora_rank > 0 && (*e)->rank > s->engine->max_lora_rank)
        return api_err_invalid(&j->err, "model", "The adapter '%s' has LoRA rank %d, above this server's "
                               "--max-lora-rank %d.", (*e)->name, (*e)->rank, s->engine->max_lora_rank);
    int C = (int)s->env.model->hidden_size;
    if (q->dimensions > C)
        return api_err_invalid(&j->err, "dimensions", "Invalid 'dimensions': at most %d (the model's hidden size), got %d.",
                               C, q->dimensions);
    for (int i = 0; i < q->n_inputs; i++)
        for (int k = 0; k < q->inputs[i].n_ids; k++)
            if (q->inputs[i].ids[k] >= s->env.model->vocab_size) {
                char p[32];
                snprintf(p, sizeof p, q->n_inputs > 1 ? "input[%d]" : "input", i);
                return api_err_invalid(&j->err, p, "Invalid '%s': token id %d is outside the vocabulary [0, %d).", p,
                                       (int)q->inputs[i].ids[k], s->env.model->vocab_size);
            }
    if (!s->engine || !s->engine->embeddings)
        return api_err_set(&j->err, 503, "server_error", NULL, NULL, "embeddings engine not available");
    return 0;
}

void embeddings_handle(embeddings *s, const http_req *q, http_res *res, const tn_tenant *tn) {
    emb_job *j = calloc(1, sizeof *j);
    if (!j) {
        reply_json(res, 500, NULL);
        return;
    }
    *j = (emb_job){.s = s, .q = q, .res = res, .next = s->jobs};
    snprintf(j->tenant, sizeof j->tenant, "%s", tn->name);
    if (s->jobs) s->jobs->prev = j;
    s->jobs = j;
    const reg_entry *e = NULL;
    if (api_parse_embeddings(q->body, q->body_len, &j->req, &j->err) != 0 || check_request(s, tn, j, &e) != 0) {
        job_error(j);
        job_free(j);
        return;
    }
    if (e) j->adapter = reg_entry_ref(e);
    if (!(j->items = calloc((size_t)j->req.n_inputs, sizeof *j->items))) {
        api_err_set(&j->err, 500, "server_error", NULL, NULL, "out of memory");
        job_error(j);
        job_free(j);
        return;
    }
    for (int i = 0; i < j->req.n_inputs; i++) j->items[i].job = j;
    http_res_on_close(res, job_on_close, j);
    j->work.data = j;
    if (uv_queue_work(s->env.loop, &j->work, job_tokenize, job_tokenized) != 0) {
        api_err_set(&j->err, 500, "server_error", NULL, NULL, "could not queue the request");
        job_error(j);
        job_free(j);
    }
}

embeddings *embeddings_open(const embeddings_env *env) {
    embeddings *s = calloc(1, sizeof *s);
    if (s) s->env = *env;
    return s;
}

void embeddings_set_engine(embeddings *s, const srv_engine *engine) { s->engine = engine; }
void embeddings_stop(embeddings *s) {
    if (s) s->stopping = 1;
}
void embeddings_free(embeddings *s) { free(s); }
