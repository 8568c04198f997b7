// embeddings: POST /v1/embeddings, from the parsed body to the answer.
//
// Checks before any work, in order: the body (api.h api_parse_embeddings),
// the model (access.h, as chat: a tenant sees the base if allowed and its
// adapters; 404 model_not_found otherwise), the adapter's rank against the
// engine's --max-lora-rank, `dimensions` <= hidden_size, token ids inside
// the vocabulary (400 naming input[i]). Then the texts are tokenized on
// the libuv thread pool as /v1/completions tokenizes a prompt (the
// tokenizer's special tokens parsed and its post-processor's tokens added:
// a Qwen3-Embedding tokenizer.json appends <|endoftext|>, the token whose
// state its reference pools); token-id inputs are taken as given. An input
// longer than max_position_embeddings is a 400. Each input becomes one
// embedding srv_request (srv_request.embed) on the resolved adapter,
// batched by the engine with everything else; the vectors come back on
// the loop thread, are truncated to `dimensions` and re-normalized
// (emb_truncate), and the answer is
//   {"object":"list","data":[{"object":"embedding","index","embedding"}],
//    "model","usage":{"prompt_tokens","total_tokens"}}
// with each embedding a float array or, for encoding_format "base64", the
// base64 of its little-endian float32 bytes. 503 without an engine that
// takes embeddings (srv_engine.embeddings), 429 when it is busy.
//
// Owns its jobs in flight; borrows everything in embeddings_env and the
// engine. Loop thread only, except the tokenizing.
#ifndef TESSERA_EMBEDDINGS_H
#define TESSERA_EMBEDDINGS_H

#include <uv.h>

#include "access.h"
#include "http.h"
#include "metrics.h"
#include "server.h"
#include "tenants.h"

typedef struct embeddings_env {
    uv_loop_t *loop;
    metrics_requests *requests; // answers are counted and logged here (reply.h)
    const access_ctx *access;
    const model_config *model;
    const tok *tok;
} embeddings_env;

typedef struct embeddings embeddings;

// A new handler (embeddings_free) or NULL when out of memory.
embeddings *embeddings_open(const embeddings_env *env);
// The engine (borrowed; NULL: every request is answered 503).
void embeddings_set_engine(embeddings *s, const srv_engine *engine);
// Answers one request from tenant tn (borrowed for this call).
void embeddings_handle(embeddings *s, const http_req *q, http_res *res, const tn_tenant *tn);
// The server is stopping: jobs still tokenizing are dropped when they return.
void embeddings_stop(embeddings *s);
void embeddings_free(embeddings *s);

#endif
