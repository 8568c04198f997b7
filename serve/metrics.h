// metrics: the Prometheus text exposition (format 0.0.4) behind GET
// /metrics: request counters kept by the server on the loop thread, and a
// snapshot of the engine's counters and step-latency histogram.
//
// The engine fills a metrics_engine under its own lock (sched_get_stats);
// the server keeps a metrics_requests and calls metrics_text to render
// both. This module has no state of its own and no threads.
#ifndef TESSERA_METRICS_H
#define TESSERA_METRICS_H

#include <stdint.h>

// Upper bounds (seconds) of tessera_step_seconds' finite buckets.
#define METRICS_STEP_BUCKETS 14
extern const double metrics_step_bounds[METRICS_STEP_BUCKETS];

// The engine's side: counters since start, gauges now.
typedef struct metrics_engine {
    int64_t prompt_tokens, generation_tokens, steps, cancelled, preempted;
    int64_t adapter_loads, adapter_load_failures;
    int waiting, running, adapters_resident;
    int batch_tokens; // tokens in the last forward
    int64_t kv_bytes_per_token; // KV cache bytes one position takes (its dtype's)
    // Step durations: step_bucket[i] counts steps with duration in
    // (bounds[i-1], bounds[i]]; the last one counts those above every bound
    // (not cumulative; metrics_text makes them so).
    int64_t step_bucket[METRICS_STEP_BUCKETS + 1];
    double step_seconds_sum;
    // Structured output: constrained sequences started, masks computed, the
    // seconds spent computing them (on the mask threads and the engine
    // thread together) and the seconds steps waited for them after the
    // forward (the part the forward did not hide).
    int64_t grammar_sequences, grammar_masks;
    double grammar_mask_seconds_sum, grammar_mask_wait_seconds_sum;
    // Tool calls: sequences started under a tool-call constraint (tools
    // with tool_choice none, auto or required; their masks count above).
    int64_t tool_sequences;
} metrics_engine;

// Adds one step of `seconds` (and `tokens` batched) to m.
void metrics_observe_step(metrics_engine *m, double seconds, int tokens);

// The grammar cache's numbers (serve/gcache.h), a snapshot per scrape.
typedef struct metrics_grammar {
    int64_t hits, misses, compile_errors, evictions, entries, bytes;
    double compile_seconds;
    int64_t vocab_cache_bytes, vocab_cache_unpublished;
} metrics_grammar;

// The server's side: requests answered, by endpoint and status.
#define METRICS_MAX_ROWS 128
typedef struct metrics_requests {
    struct {
        char endpoint[32];
        int status;
        int64_t n;
    } rows[METRICS_MAX_ROWS];
    int n;
    // Adapter folders whose new files failed validation, by adapter name
    // (tessera_adapter_load_failures_total{adapter="NAME"}).
    struct {
        char adapter[136];
        int64_t n;
    } adapter_failures[METRICS_MAX_ROWS];
    int n_adapter_failures;
    // Requests with response_format json_object / json_schema whose
    // grammar was ready (compiled or cached), and those refused because their schema was.
    int64_t structured_requests, structured_schema_errors;
    metrics_grammar grammar; // filled by completion_grammar_metrics before each render
} metrics_requests;

// Counts one answered request. endpoint is the route's pattern
// ("/v1/chat/completions", "/v1/models/{id}", "other"); copied. Rows past
// METRICS_MAX_ROWS are dropped (the routes and statuses are few).
void metrics_count_request(metrics_requests *r, const char *endpoint, int status);

// Counts one failed validation of the adapter folder name (copied; names
// past METRICS_MAX_ROWS distinct ones are dropped).
void metrics_count_adapter_failure(metrics_requests *r, const char *name);

// Renders everything as Prometheus text. e may be NULL (no engine: the
// engine metrics are left out). Returns a new string (free) or NULL when
// out of memory.
char *metrics_text(const metrics_requests *r, const metrics_engine *e);

#endif
