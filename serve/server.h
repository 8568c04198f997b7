// server: the OpenAI-compatible multi-tenant server: one libuv loop that
// wires http (transport), api (JSON), tenants (keys), registry (the
// current set of adapters), watcher (the adapters folder), access (which
// model a key may use), completion (generation jobs and streaming), admin
// (runtime adapters), rerank (/v1/rerank), files and ftjobs (fine-tuning) and, through the
// interface below, a generation engine.
//
// Routes:
//   GET  /health                 {"status":"ok"}, no key needed
//   GET  /metrics                Prometheus text (metrics.h), no key needed
//                                (as vLLM: keep the port off the internet)
//   GET  /v1/models              the models the key may use (access.h):
//                                the base, if the tenant may use it, and
//                                its adapters
//   GET  /v1/models/{id}         one of those, else 404 model_not_found
//   POST /v1/chat/completions    validated, templated, tokenized, checked
//   POST /v1/completions         against the context, then handed to the
//                                engine (503 when none is plugged in);
//                                completion.h
//   POST /v1/rerank, /rerank     Jina/Cohere-style reranking, scored as
//                                Qwen3-Reranker (rerank.h), through the
//                                same engine and access rule as chat
//   POST /v1/embeddings          the same access rules; embedding requests
//                                (srv_request.embed) to the engine;
//                                embeddings.h
//   POST /v1/load_lora_adapter   vLLM's: {"lora_name","lora_path"} registers
//                                an adapter folder from any server path
//                                (validated off the loop; 400 if invalid or
//                                the name is taken); it shadows a folder of
//                                the same name and is listed to tenants
//                                whose globs match; 403 permission_error
//                                for a fine-tuned model's folder or one
//                                inside --data-dir (admin.h)
//   POST /v1/unload_lora_adapter {"lora_name"}: removes a runtime-loaded
//                                one (404 otherwise); requests in flight
//                                finish on it. Both need an admin key (403
//                                permission_error otherwise); in open mode
//                                (no --tenants) anyone may call them
//   /v1/files...                 OpenAI's Files API (files.h) and
//   /v1/fine_tuning/jobs...      fine-tuning jobs API (ftjobs.h), with
//                                --data-dir; fine-tuned models ("ft:...")
//                                are visible to their own tenant only
//
// Per request on the loop thread: auth (tenants), body (api), model visible
// to the tenant (access). The chat template and tokenizer run on the libuv
// thread pool; so do adapter-folder scans. Signals: SIGTERM/SIGINT stop the
// server (srv_run returns 0); SIGHUP reloads the tenants file (a bad file
// keeps the old table) and rescans the adapters.
//
// ---- The engine boundary ----------------------------------------------------
//
// An engine turns a validated srv_request into tokens. The server does the
// text side on the loop thread (DESIGN.md, data flow step 3): incremental
// UTF-8-safe detokenizing, stop strings, SSE chunks or the final JSON. The
// engine does the numbers: prefill, decode, sampling (sampler.h), max_tokens
// and stop token ids (EOS).
//
// Threading: submit, cancel and stop are called on the loop thread. The
// engine calls the request's sink on the loop thread too: an engine thread
// hands results over with uv_async_send on srv_loop() (serve/echo.c is
// a small complete example).
//
// Lifetime: a submitted srv_request belongs to the server and stays valid
// until the engine has called sink.on_finish once for each of its n choices;
// after that the engine must not touch it. Every choice gets exactly one
// on_finish, also after cancel (reason SRV_FINISH_CANCEL, or the real reason
// if it finished first) and at shutdown (inside stop()).
#ifndef TESSERA_SERVER_H
#define TESSERA_SERVER_H

#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "err.h"
#include "grammar.h"
#include "metrics.h"
#include "sampler.h"
#include "tokenizer.h"

typedef struct srv srv;

typedef enum srv_finish {
    SRV_FINISH_STOP,   // EOS or a stop token id: finish_reason "stop"
    SRV_FINISH_LENGTH, // max_tokens reached: "length"
    SRV_FINISH_CANCEL, // cancelled (client gone, stop string, shutdown)
    SRV_FINISH_ERROR,  // the engine failed this choice: the client gets a 500 / an error event
} srv_finish;

// Where the engine reports, on the loop thread.
typedef struct srv_sink {
    void *ctx;
    // One generated token of choice `index` (0..n-1), in order. r->token is
    // the id; r->logprob and r->top (n_top = sampling.top_logprobs) feed
    // logprobs when the request asked for them. The token that ends a choice
    // with SAMPLER_FINISH_STOP (EOS) need not be reported; if it is
    // (r->finish set) it is ignored: never shown, only counted by on_finish.
    void (*on_token)(void *ctx, int index, const sampler_result *r);
    // Choice `index` is over. completion_tokens counts every token sampled
    // for it (EOS included, as vLLM counts).
    void (*on_finish)(void *ctx, int index, srv_finish reason, int completion_tokens);
    // Embedding requests only (srv_request.embed): the pooled, L2-normalized
    // vector (dim = hidden_size floats, borrowed for the call), once,
    // before on_finish(SRV_FINISH_STOP, 0). Not called when it fails.
    void (*on_embedding)(void *ctx, const float *v, int dim);
} srv_sink;

// A validated generation request: one prompt, n independent choices.
// Everything is read-only for the engine except engine_data.
typedef struct srv_request {
    uint64_t id;                // unique in this process (logs)
    const int32_t *prompt;      // token ids, each in [0, vocab_size)
    int n_prompt;               // >= 1
    const char *adapter;        // adapter name, NULL = the base model
    struct reg_entry *adapter_entry; // its registry entry (NULL = base): the version this request
                                     // was resolved to; held by the caller until the request ends
    sampler_params sampling;    // checked with sampler_params_check; stop_ids = the EOS ids;
                                // seed always set (random when the client gave none);
                                // choice i should seed its sampler_state with seed + i
    int max_tokens;             // >= 1, and n_prompt + max_tokens <= max_position_embeddings
    int n;                      // choices, 1..API_MAX_N
    // Structured output: each choice runs its own matcher over grammar
    // (borrowed: the caller holds a reference until every choice has
    // finished); NULL = free text. Before each token the engine masks the
    // logits to what the grammar allows; the stop ids are allowed only
    // where the value is complete, and are all that is left once the
    // grammar allows nothing more.
    gm_grammar *grammar;
    // With a grammar: -1, the constraint holds from the first token; else
    // the id of the token that closes a reasoning block (Qwen3's </think>):
    // the reply may open with one (its first token is then the
    // tokenizer's <think>): tokens up to think_end are free, then up to
    // SRV_THINK_WS whitespace-only tokens (the template's "\n\n"), then
    // the grammar. A reply whose first token is not <think> is held to
    // the grammar from that token.
    int32_t think_end;
    // Tool calls (sched_grammar.c; exclusive with grammar). call_grammar
    // is one call's JSON object (borrowed like grammar): Hermes
    // {"name", "arguments"}, Llama 3.1 {"name", "parameters"}, anyOf the
    // tools the reply may call. After a reasoning block (think_end, as
    // above) the modes are:
    //   SRV_TOOLS_OFF       no constraint (no tools)
    //   SRV_TOOLS_BAN       tool_choice "none": a call never opens (Hermes:
    //                       call_open is masked; Llama: no first token
    //                       starting with '{')
    //   SRV_TOOLS_AUTO      free text; a call, once opened (Hermes: the
    //                       call_open token; Llama: a first token starting
    //                       with '{'), is held to call_grammar until it
    //                       closes (Hermes: up to SRV_CALL_WS whitespace
    //                       tokens, then call_close; Llama: a stop id)
    //   SRV_TOOLS_REQUIRED  calls only: Hermes: call_open first; after each
    //                       call_close, up to SRV_CALL_WS whitespace tokens,
    //                       then call_open again or a stop id; Llama: the
    //                       reply is one call, then a stop id
    // max_calls > 0 caps the calls (parallel_tool_calls false, a named
    // tool_choice: 1); at the cap call_open is masked. Llama 3.1 has one
    // call per reply.
    int tools_mode;             // SRV_TOOLS_*
    gm_grammar *call_grammar;
    int32_t call_open, call_close; // Hermes' <tool_call>, </tool_call>; -1 for Llama 3.1
    int max_calls;              // 0 = no cap
    // 1: an embedding request (engines with srv_engine.embeddings): n is 1;
    // the prompt is prefilled and nothing is sampled (sampling, max_tokens,
    // grammar and tools are ignored); the engine pools the final hidden
    // states of the prompt (its --pooling) into sink.on_embedding.
    int embed;
    srv_sink sink;
    void *engine_data;          // the engine's own
} srv_request;

enum { SRV_SUBMIT_OK = 0, SRV_SUBMIT_BUSY = 1 };

#define SRV_THINK_WS 2
#define SRV_CALL_WS 2

enum { SRV_TOOLS_OFF, SRV_TOOLS_BAN, SRV_TOOLS_AUTO, SRV_TOOLS_REQUIRED };

typedef struct srv_engine {
    void *ctx;
    // Takes a request. Returns SRV_SUBMIT_OK; SRV_SUBMIT_BUSY when it
    // cannot queue more now (the client gets 429 with Retry-After); or -1 +
    // err for a request it cannot serve (503 with err's message). When it
    // does not return OK it must not call the sink for r.
    int (*submit)(void *ctx, srv_request *r, err_t *err);
    // Stop choice `index` of r (-1: every choice) as soon as possible.
    // on_finish still comes for each such choice, later or inside this call.
    void (*cancel)(void *ctx, srv_request *r, int index);
    // The server is shutting down: every connection is closed and every
    // request cancelled. Join threads, call on_finish (synchronously, here)
    // for each choice not finished yet, and close the engine's libuv handles.
    void (*stop)(void *ctx);
    // Optional (NULL: none): a snapshot of the engine's counters for GET
    // /metrics, on the loop thread.
    void (*stats)(void *ctx, metrics_engine *out);
    // The largest adapter rank it serves (0: no limit): a request for an
    // adapter of a higher rank is answered 400 before it is submitted.
    int max_lora_rank;
    // 1: submit takes embedding requests (srv_request.embed); 0: the server
    // answers /v1/embeddings 503 without submitting.
    int embeddings;
} srv_engine;

// ---- the server ---------------------------------------------------------------

typedef struct srv_config {
    const char *model_dir;          // Hugging Face folder (config.json, tokenizer.json, ...)
    const char *served_model_name;  // the base model's id; NULL = the folder's basename
    const char *chat_template;      // family name overriding detection (chat.h); NULL = detect
    const char *host;               // NULL = "127.0.0.1"
    int port;                       // 0 = any free port (logged)
    const char *adapters_dir;       // NULL = no adapters
    const char *tenants_path;       // NULL = open mode (no keys; every adapter visible)
    const char *lora_roots;         // comma-separated folders load_lora_adapter may read besides adapters_dir
    const char *admin_key;          // open mode: the Bearer key allowed to load/unload; NULL = routes off
    size_t max_body_bytes;          // 0 = 8 MiB
    uint64_t idle_timeout_ms;       // 0 = 60 s
    uint64_t request_timeout_ms;    // 0 = 30 s
    uint64_t header_timeout_ms;     // connection start -> headers complete; 0 = 10 s
    int max_connections;            // 0 = RLIMIT_NOFILE - HTTP_FD_HEADROOM (http.h)
    int max_connections_per_ip;     // 0 = max_connections / 4
    uint64_t rescan_ms;             // periodic adapter rescan; 0 = 2 s
    // Fine-tuning (files.h, ftjobs.h): on when data_dir is set (it needs
    // adapters_dir, where the trained adapters are published).
    const char *data_dir;           // NULL = no /v1/files, no /v1/fine_tuning
    const char *train_bin;          // the train program (required with data_dir)
    size_t max_file_bytes;          // 0 = 512 MiB
    int ft_workers;                 // trainings at once; 0 = 1
} srv_config;

// Reads the model's config, tokenizer and chat template, the tenants file
// and the adapters folder (a first scan), and binds the listening socket.
// Logs one line per fact to stderr. Returns a new server (srv_free) or NULL
// + err naming the file or address at fault.
srv *srv_open(const srv_config *cfg, err_t *err);

// Plugs an engine in (copied). Before srv_run. Without one, generation
// endpoints validate and then answer 503 "generation engine not available".
void srv_set_engine(srv *s, const srv_engine *e);

// What an engine needs from the server.
uv_loop_t *srv_loop(srv *s);
const model_config *srv_model(const srv *s);
const tok *srv_tokenizer(const srv *s);
const char *srv_model_dir(const srv *s);

// Runs the loop until SIGTERM/SIGINT (or srv_stop); then closes every
// connection, cancels requests, stops the engine and returns 0.
int srv_run(srv *s);

// Begins the same shutdown from the loop thread.
void srv_stop(srv *s);

void srv_free(srv *s);

#endif
