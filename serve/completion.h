// completion: POST /v1/chat/completions and /v1/completions, from the
// parsed body to the last byte of the answer. One HTTP generation request
// is a "job"; it lives through three states: TOKENIZING (chat template +
// tokenizer on the thread pool), GENERATING (one srv_request per prompt
// submitted to the engine; tokens come back to the sink on the loop thread,
// become text through a tok_stream per choice, pass the stop-string filter
// and go out as SSE chunks or into the final JSON) and done. The client may
// vanish at any point: the http close callback cancels the engine work,
// and the job is freed once the engine has finished every choice.
//
// Checks before a job is queued, in order: the body (api.h), the model
// (access.h: 404 model_not_found), the adapter's rank against the engine's
// --max-lora-rank, a chat template for chat, token ids inside the
// vocabulary. On the thread pool, before tokenizing: response_format's
// schema becomes a grammar (compiled, or found in the grammar cache that
// completion owns, gcache.h); a schema the engine refuses is a 400 with
// param "response_format.json_schema.schema" and the compiler's reason.
// After tokenizing: the context length. A job holds a reference to its
// grammar until it is freed (each sequence's matcher holds its own). A job holds a
// reference to its adapter's registry entry until it is freed, so it
// finishes on the version it was resolved to.
//
// Tools (completion_tools.h): tools on a chat template without a tool
// format are a 400 "tools" before the job is queued; the prompt renders
// the tools and the history's calls; one call's grammar is compiled like
// response_format's (a strict tool's refused schema: 400
// "tools[i].function.parameters"), held like it, and handed to the engine
// with the tool-call constraint. Each choice's text, after the stop
// strings, goes through a reply parser into content, reasoning_content and
// tool_calls (finish_reason "tool_calls" when calls completed and the
// model stopped), streamed as OpenAI's deltas; Qwen3 chat replies always
// do, so that reasoning lands in reasoning_content. A call the parser had
// begun that then breaks is a 500 (the stream's error event).
//
// Owns the jobs in flight and the request-id and seed generator; borrows
// everything in completion_env and the engine. Threading: the loop thread
// only, except the tokenizing, which runs on the libuv thread pool and reads
// only the tokenizer, the template and its own job.
#ifndef TESSERA_COMPLETION_H
#define TESSERA_COMPLETION_H

#include <stdint.h>
#include <uv.h>

#include "access.h"
#include "api.h"
#include "chat.h"
#include "http.h"
#include "metrics.h"
#include "server.h"
#include "tenants.h"

// What generation needs from the server; all borrowed, and alive until
// completion_free.
typedef struct completion_env {
    uv_loop_t *loop;
    metrics_requests *requests; // answers are counted and logged here (reply.h)
    const access_ctx *access;   // which model a key may use
    const model_config *model;
    const tok *tok;
    int has_chat;               // the model has a chat template: family and bos
    chat_family family;
    const char *bos;            // the template's BOS text (may be NULL)
    const int32_t *eos;         // the stop token ids of every request
    int n_eos;
} completion_env;

typedef struct completion completion;

// Returns a new handler (completion_free) or NULL when out of memory.
completion *completion_open(const completion_env *env);

// The engine jobs are submitted to (borrowed); NULL, the default: jobs are
// validated and then answered 503.
void completion_set_engine(completion *c, const srv_engine *engine);

// Answers a generation request of kind API_CHAT or API_COMPLETION from
// tenant tn (authenticated by the caller; borrowed for this call only).
void completion_handle(completion *c, const http_req *q, http_res *res, const tn_tenant *tn, api_kind kind);

// Shutdown: a job still tokenizing is dropped when its work returns. The
// generating ones end through their connections' close and the engine's
// stop, which come after.
void completion_stop(completion *c);

// Fills r->grammar from the grammar cache (loop thread, before a
// /metrics render).
void completion_grammar_metrics(completion *c, metrics_requests *r);

// After the loop has drained (no job is left).
void completion_free(completion *c);

#endif
