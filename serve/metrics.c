// metrics: Prometheus text rendering. See metrics.h.
#include "metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// From 1 ms (a tiny model's decode step) to 10 s (a long prefill on CPU).
const double metrics_step_bounds[METRICS_STEP_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                          0.25,  0.5,    1.0,   2.5,  5.0,   10.0, 30.0};

void metrics_observe_step(metrics_engine *m, double seconds, int tokens) {
    int i = 0;
    while (i < METRICS_STEP_BUCKETS && seconds > metrics_step_bounds[i]) i++;
    m->step_bucket[i]++;
    m->step_seconds_sum += seconds;
    m->batch_tokens = tokens;
}

void metrics_count_request(metrics_requests *r, const char *endpoint, int status) {
    for (int i = 0; i < r->n; i++)
        if (r->rows[i].status == status && strcmp(r->rows[i].endpoint, endpoint) == 0) {
            r->rows[i].n++;
            return;
        }
    if (r->n == METRICS_MAX_ROWS) return;
    snprintf(r->rows[r->n].endpoint, sizeof r->rows[r->n].endpoint, "%s", endpoint);
    r->rows[r->n].status = status;
    r->rows[r->n].n = 1;
    r->n++;
}

void metrics_count_adapter_failure(metrics_requests *r, const char *name) {
    for (int i = 0; i < r->n_adapter_failures; i++)
        if (strcmp(r->adapter_failures[i].adapter, name) == 0) {
            r->adapter_failures[i].n++;
            return;
        }
    if (r->n_adapter_failures == METRICS_MAX_ROWS) return;
    snprintf(r->adapter_failures[r->n_adapter_failures].adapter, sizeof r->adapter_failures[0].adapter, "%s", name);
    r->adapter_failures[r->n_adapter_failures++].n = 1;
}

// A growing string; on allocation failure it turns to NULL and stays so.
typedef struct buf {
    char *p;
    size_t len, cap;
} buf;

static void put(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(buf *b, const char *fmt, ...) {
    if (!b->p) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (k < 0) return;
        if ((size_t)k < b->cap - b->len) {
            b->len += (size_t)k;
            return;
        }
        size_t cap = b->cap * 2 + (size_t)k;
        char *p = realloc(b->p, cap);
        if (!p) {
            free(b->p);
            b->p = NULL;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
}

static void metric(buf *b, const char *name, const char *type, const char *help) {
    put(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void counter(buf *b, const char *name, const char *help, int64_t v) {
    metric(b, name, "counter", help);
    put(b, "%s %lld\n", name, (long long)v);
}

// A counter of seconds (a float).
static void counter_s(buf *b, const char *name, const char *help, double v) {
    metric(b, name, "counter", help);
    put(b, "%s %.9g\n", name, v);
}

static void gauge(buf *b, const char *name, const char *help, int64_t v) {
    metric(b, name, "gauge", help);
    put(b, "%s %lld\n", name, (long long)v);
}

// A label value: backslash, quote and newline escaped as Prometheus wants
// (folder names may hold any of them).
static void put_label(buf *b, const char *v) {
    for (; *v; v++) {
        if (*v == '\\' || *v == '"') put(b, "\\%c", *v);
        else if (*v == '\n') put(b, "\\n");
        else put(b, "%c", *v);
    }
}

// The adapter failure family: the engine's slot loads (unlabelled, when
// there is an engine) and the folders' failed validations, by adapter.
static void failures_text(buf *b, const metrics_requests *r, const metrics_engine *e) {
    if (!e && r->n_adapter_failures == 0) return;
    metric(b, "tessera_adapter_load_failures_total", "counter",
           "Adapter loads that failed: into a slot (no label), or a folder's new files (by adapter).");
    if (e) put(b, "tessera_adapter_load_failures_total %lld\n", (long long)e->adapter_load_failures);
    for (int i = 0; i < r->n_adapter_failures; i++) {
        put(b, "tessera_adapter_load_failures_total{adapter=\"");
        put_label(b, r->adapter_failures[i].adapter);
        put(b, "\"} %lld\n", (long long)r->adapter_failures[i].n);
    }
}

static void engine_text(buf *b, const metrics_engine *e) {
    counter(b, "tessera_prompt_tokens_total", "Prompt tokens prefilled (recomputed ones after preemption included).",
            e->prompt_tokens);
    counter(b, "tessera_generation_tokens_total", "Tokens generated.", e->generation_tokens);
    gauge(b, "tessera_queue_depth", "Choices waiting to be admitted.", e->waiting);
    gauge(b, "tessera_running_sequences", "Sequences running in the batch.", e->running);
    gauge(b, "tessera_batch_tokens", "Tokens in the last forward step.", e->batch_tokens);
    gauge(b, "tessera_adapters_resident", "Adapters holding a model slot.", e->adapters_resident);
    gauge(b, "tessera_kv_bytes_per_token", "KV cache bytes per token position (K and V, every layer, its dtype).",
          e->kv_bytes_per_token);
    counter(b, "tessera_adapters_loaded_total", "Adapter loads into a slot.", e->adapter_loads);
    counter(b, "tessera_cancelled_total", "Choices cancelled (client gone, stop string, shutdown).", e->cancelled);
    counter(b, "tessera_preempted_total", "Sequences preempted for KV blocks.", e->preempted);
    metric(b, "tessera_step_seconds", "histogram", "Duration of one engine step (one forward and sampling).");
    int64_t cum = 0;
    for (int i = 0; i < METRICS_STEP_BUCKETS; i++) {
        cum += e->step_bucket[i];
        put(b, "tessera_step_seconds_bucket{le=\"%g\"} %lld\n", metrics_step_bounds[i], (long long)cum);
    }
    cum += e->step_bucket[METRICS_STEP_BUCKETS];
    put(b, "tessera_step_seconds_bucket{le=\"+Inf\"} %lld\n", (long long)cum);
    put(b, "tessera_step_seconds_sum %.9g\n", e->step_seconds_sum);
    put(b, "tessera_step_seconds_count %lld\n", (long long)cum);
    counter(b, "tessera_grammar_sequences_total", "Sequences constrained by a response_format grammar.",
            e->grammar_sequences);
    counter(b, "tessera_grammar_masks_total", "Allowed-token masks computed for constrained sequences.",
            e->grammar_masks);
    counter_s(b, "tessera_grammar_mask_seconds_total", "Seconds spent computing grammar masks (all threads).",
              e->grammar_mask_seconds_sum);
    counter_s(b, "tessera_grammar_mask_wait_seconds_total",
              "Seconds steps waited for grammar masks after the forward pass (mask time the forward did not hide).",
              e->grammar_mask_wait_seconds_sum);
    counter(b, "tessera_tool_call_sequences_total",
            "Sequences under a tool-call constraint (tools with tool_choice none, auto, required or a named tool).",
            e->tool_sequences);
}

static void grammar_text(buf *b, const metrics_grammar *g) {
    counter(b, "tessera_grammar_cache_hits_total", "response_format schemas found compiled in the grammar cache.", g->hits);
    counter(b, "tessera_grammar_cache_misses_total", "response_format schemas compiled (cache misses).", g->misses);
    counter(b, "tessera_grammar_cache_evictions_total", "Grammars evicted from the cache (LRU past its byte bound).",
            g->evictions);
    gauge(b, "tessera_grammar_cache_entries", "Grammars in the cache.", g->entries);
    gauge(b, "tessera_grammar_cache_bytes", "Bytes of the grammars in the cache.", g->bytes);
    counter_s(b, "tessera_grammar_compile_seconds_total", "Seconds spent compiling schemas.", g->compile_seconds);
    gauge(b, "tessera_grammar_vocab_cache_bytes", "Bytes of the token-mask caches shared by every grammar.",
          g->vocab_cache_bytes);
    counter(b, "tessera_grammar_vocab_cache_unpublished_total",
            "Mask cache entries not kept because the shared caches reached their budget.", g->vocab_cache_unpublished);
}

char *metrics_text(const metrics_requests *r, const metrics_engine *e) {
    buf b = {malloc(4096), 0, 4096};
    metric(&b, "tessera_requests_total", "counter", "HTTP requests answered, by endpoint and status.");
    for (int i = 0; i < r->n; i++)
        put(&b, "tessera_requests_total{endpoint=\"%s\",status=\"%d\"} %lld\n", r->rows[i].endpoint,
            r->rows[i].status, (long long)r->rows[i].n);
    counter(&b, "tessera_structured_requests_total", "Requests with a response_format grammar (json_object, json_schema).",
            r->structured_requests);
    counter(&b, "tessera_structured_schema_errors_total", "Requests refused because the engine cannot enforce their schema.",
            r->structured_schema_errors);
    grammar_text(&b, &r->grammar);
    if (e) engine_text(&b, e);
    failures_text(&b, r, e);
    return b.p;
}
