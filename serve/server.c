// server: connections, routing, the life of the server (open, run, stop,
// free), signals, /health, /metrics and /v1/models. See server.h for the
// routes and the engine contract. The rest lives in rooms of its own:
// completion.c (chat and completions: jobs and streaming), admin.c (the
// runtime adapter endpoints), watcher.c (the adapters folder), access.c
// (which model a key may use), files.c and ftjobs (fine-tuning).
#include "server.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "access.h"
#include "admin.h"
#include "api.h"
#include "chat.h"
#include "completion.h"
#include "rerank.h"
#include "embeddings.h"
#include "files.h"
#include "ftjobs.h"
#include "http.h"
#include "log.h"
#include "registry.h"
#include "reply.h"
#include "tenants.h"
#include "util.h"
#include "watcher.h"

struct srv {
    srv_config cfg;
    char *model_dir, *adapters_dir, *tenants_path, *host, *data_dir;
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

    tn_table *tenants;
    reg_set *adapters;    // the folder's latest snapshot + the runtime-loaded adapters
    access_ctx access;    // which model a key may use (over base_id, adapters, ftjobs)
    watcher *watcher;     // the adapters folder; NULL without one
    completion *gen;      // chat and completions
    rerank *rr;           // /v1/rerank
    embeddings *emb;      // /v1/embeddings
    admin_env admin;      // load/unload_lora_adapter

    // tenants reload
    uv_work_t tn_work;
    int tn_loading;
    tn_table *tn_new;
    err_t tn_err;

    uv_signal_t sigterm, sigint, sighup;
    srv_engine engine;
    int has_engine;
    int stopping;
    metrics_requests requests; // GET /metrics
    // Fine-tuning (--data-dir): the files and jobs stores.
    files_store *files;
    ftjob_store *ftjobs;
};

// ---- auth -----------------------------------------------------------------------------

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

// ---- /v1/models -------------------------------------------------------------------

static api_model base_model(srv *s) {
    return (api_model){.id = s->base_id, .created = s->base_created, .owned_by = "tessera"};
}

static api_model adapter_model(srv *s, const reg_entry *e) {
    return (api_model){.id = e->name, .created = e->created, .owned_by = "tessera", .parent = s->base_id};
}

// The listing is every name of the server's set that access_model allows.
static void route_models(srv *s, const http_req *q, http_res *res, const tn_tenant *tn) {
    int cap = 1, n = 0, pos = 0;
    while (reg_set_next(s->adapters, &pos)) cap++;
    api_model *m = calloc((size_t)cap, sizeof *m);
    if (!m) {
        reply_json(res, 500, NULL);
        return;
    }
    const reg_entry *e;
    if (access_model(&s->access, tn, s->base_id, &e)) m[n++] = base_model(s);
    pos = 0;
    for (const reg_entry *a; (a = reg_set_next(s->adapters, &pos)) != NULL;)
        if (access_model(&s->access, tn, a->name, &e)) m[n++] = adapter_model(s, e);
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
    } else if (!access_model(&s->access, tn, id, &e)) {
        access_not_found(&err, id, "model");
        reply_error_logged(&s->requests, q, res, &err, tn->name, NULL);
    } else {
        api_model m = e ? adapter_model(s, e) : base_model(s);
        reply_access(&s->requests, q, 200, tn->name, id);
        reply_json(res, 200, api_model_json(&m));
    }
    free(id);
}

static void on_reject(void *ud, int status, const char *peer, const char *reason) {
    log_line("info", "http", "rejected status=%d peer=%s reason=%s", status, peer, reason);
}

// ---- routing ----------------------------------------------------------------------

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
    completion_grammar_metrics(s->gen, &s->requests);
    char *text = metrics_text(&s->requests, has ? &st : NULL);
    // The connection limits' counters (http.h), after the rest.
    http_stats hs;
    http_server_stats(s->http, &hs);
    char conns[1024];
    int cn = snprintf(conns, sizeof conns,
                      "# HELP tessera_http_connections Open HTTP connections.\n"
                      "# TYPE tessera_http_connections gauge\ntessera_http_connections %d\n"
                      "# HELP tessera_http_connections_max The cap on open connections (--max-connections).\n"
                      "# TYPE tessera_http_connections_max gauge\ntessera_http_connections_max %d\n"
                      "# HELP tessera_http_connections_evicted_total Connections closed at the cap while waiting for their headers.\n"
                      "# TYPE tessera_http_connections_evicted_total counter\ntessera_http_connections_evicted_total %llu\n"
                      "# HELP tessera_http_connections_refused_total Connections answered 503 at a connection cap.\n"
                      "# TYPE tessera_http_connections_refused_total counter\ntessera_http_connections_refused_total %llu\n"
                      "# HELP tessera_http_header_timeouts_total Connections closed for not sending their headers in time.\n"
                      "# TYPE tessera_http_header_timeouts_total counter\ntessera_http_header_timeouts_total %llu\n",
                      hs.connections, hs.max_connections, (unsigned long long)hs.evicted,
                      (unsigned long long)hs.refused, (unsigned long long)hs.header_timeouts);
    size_t tn = text ? strlen(text) : 0;
    char *all = text ? realloc(text, tn + (size_t)cn + 1) : NULL;
    if (!all) {
        free(text);
        reply_json(res, 500, NULL);
        return;
    }
    memcpy(all + tn, conns, (size_t)cn + 1);
    http_res_send(res, 200, "text/plain; version=0.0.4; charset=utf-8", all, tn + (size_t)cn);
    free(all);
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
        const reg_entry *base;
        ftjob_handle(s->ftjobs, q, res, tn->name, access_model(&s->access, tn, s->base_id, &base));
    }
}

static void on_request(const http_req *q, http_res *res, void *ud) {
    srv *s = ud;
    api_error e;
    const char *p = q->path;
    // HEAD is GET without the body (http_res_send leaves it out).
    int get = strcmp(q->method, "GET") == 0 || strcmp(q->method, "HEAD") == 0;
    int post = strcmp(q->method, "POST") == 0;
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
               strcmp(p, "/v1/load_lora_adapter") == 0 || strcmp(p, "/v1/unload_lora_adapter") == 0 ||
               strcmp(p, "/v1/rerank") == 0 || strcmp(p, "/rerank") == 0 || strcmp(p, "/v1/embeddings") == 0) {
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
    else if (strcmp(p, "/v1/load_lora_adapter") == 0) admin_lora(&s->admin, q, res, tn, 1);
    else if (strcmp(p, "/v1/unload_lora_adapter") == 0) admin_lora(&s->admin, q, res, tn, 0);
    else if (strcmp(p, "/v1/rerank") == 0 || strcmp(p, "/rerank") == 0) rerank_handle(s->rr, q, res, tn);
    else if (strcmp(p, "/v1/embeddings") == 0) embeddings_handle(s->emb, q, res, tn);
    else completion_handle(s->gen, q, res, tn, strcmp(p, "/v1/chat/completions") == 0 ? API_CHAT : API_COMPLETION);
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
    watcher_scan(s->watcher);
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
    completion_stop(s->gen);
    rerank_stop(s->rr);
    embeddings_stop(s->emb);
    // Connections first: their close callbacks cancel the jobs behind them.
    if (s->http) http_server_close(s->http, NULL, NULL);
    s->http = NULL;
    // Fine-tuning: kill the train children (ftjobs.h says what becomes of
    // their jobs) and release whoever waits for a scan.
    ftjob_stop(s->ftjobs);
    watcher_stop(s->watcher);
    // Then the engine finishes every choice still out (inside stop).
    if (s->has_engine && s->engine.stop) s->engine.stop(s->engine.ctx);
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

// The jobs wait for a scan after publishing, and ask whether the folder's
// snapshot offers the adapter (ftjob_host).
static void ft_rescan(void *ud, void (*done)(void *arg), void *arg) {
    srv *s = ud;
    watcher_rescan(s->watcher, done, arg);
}

static int ft_adapter_ready(void *ud, const char *name, char *why, size_t n) {
    srv *s = ud;
    return watcher_adapter_ready(s->watcher, name, why, n);
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
    ftjob_host host = {.env = env, .rescan = ft_rescan, .adapter_ready = ft_adapter_ready};
    if (!(s->ftjobs = ftjob_open(&fc, &host, s->files, err))) return -1;
    s->access.ftjobs = s->ftjobs;
    return 0;
}

// The set of adapters, the watcher, generation and the admin routes, each
// given what it needs of the server.
static int open_rooms(srv *s, err_t *err) {
    if (!(s->adapters = reg_set_new())) return err_set(err, "out of memory");
    s->access = (access_ctx){.base_id = s->base_id, .adapters = s->adapters};
    watcher_config wc = {.dir = s->adapters_dir, .model = &s->model, .reserved = s->base_id,
                         .rescan_ms = s->cfg.rescan_ms, .metrics = &s->requests};
    if (s->adapters_dir && !(s->watcher = watcher_open(&s->loop, &wc, s->adapters, err))) return -1;
    completion_env ce = {.loop = &s->loop, .requests = &s->requests, .access = &s->access, .model = &s->model,
                         .tok = s->tok, .has_chat = s->has_chat, .family = s->family, .bos = s->bos,
                         .eos = s->eos, .n_eos = s->n_eos};
    if (!(s->gen = completion_open(&ce))) return err_set(err, "out of memory");
    if (!(s->rr = rerank_open(&ce))) return err_set(err, "out of memory");
    embeddings_env ee = {.loop = &s->loop, .requests = &s->requests, .access = &s->access, .model = &s->model,
                         .tok = s->tok};
    if (!(s->emb = embeddings_open(&ee))) return err_set(err, "out of memory");
    s->admin = (admin_env){.loop = &s->loop, .requests = &s->requests, .model = &s->model, .adapters = s->adapters,
                           .access = &s->access, .data_dir = s->data_dir, .adapters_dir = s->adapters_dir,
                           .lora_roots = s->cfg.lora_roots, .open_mode = !s->tenants_path,
                           .admin_key = s->cfg.admin_key};
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
    s->data_dir = cfg->data_dir ? strdup(cfg->data_dir) : NULL;
    // A write to a client that has gone must fail with EPIPE, not kill the
    // process (libuv leaves SIGPIPE to the application).
    signal(SIGPIPE, SIG_IGN);
    if (uv_loop_init(&s->loop) != 0) {
        free(s);
        err_set(err, "cannot create the event loop");
        return NULL;
    }
    uv_signal_init(&s->loop, &s->sigterm);
    uv_signal_init(&s->loop, &s->sigint);
    uv_signal_init(&s->loop, &s->sighup);
    s->sigterm.data = s->sigint.data = s->sighup.data = s;
    if (!s->model_dir || !s->host || !s->base_id || (cfg->adapters_dir && !s->adapters_dir) ||
        (cfg->tenants_path && !s->tenants_path) || (cfg->data_dir && !s->data_dir)) {
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
    if (open_rooms(s, err) != 0) goto fail;
    if (cfg->data_dir && open_finetune(s, err) != 0) goto fail;
    if (!s->cfg.max_body_bytes) s->cfg.max_body_bytes = 8u << 20;
    http_config hc = {.host = s->host, .port = cfg->port, .max_body_bytes = cfg->max_body_bytes,
                      .idle_timeout_ms = cfg->idle_timeout_ms, .request_timeout_ms = cfg->request_timeout_ms,
                      .header_timeout_ms = cfg->header_timeout_ms, .max_connections = cfg->max_connections,
                      .max_connections_per_ip = cfg->max_connections_per_ip,
                      .on_reject = on_reject, .body_limit = body_limit};
    if (!(s->http = http_server_start(&s->loop, &hc, on_request, s, err))) goto fail;
    uv_signal_start(&s->sigterm, on_signal, SIGTERM);
    uv_signal_start(&s->sigint, on_signal, SIGINT);
    uv_signal_start(&s->sighup, on_signal, SIGHUP);
    log_line("info", "server", "listening addr=%s port=%d", s->host, http_server_port(s->http));
    http_stats hs;
    http_server_stats(s->http, &hs);
    log_line("info", "http", "limits max_connections=%d max_connections_per_ip=%d header_timeout_ms=%llu",
             hs.max_connections, hs.max_per_ip,
             (unsigned long long)(cfg->header_timeout_ms ? cfg->header_timeout_ms : 10000));
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
    completion_set_engine(s->gen, &s->engine);
    rerank_set_engine(s->rr, &s->engine);
    embeddings_set_engine(s->emb, &s->engine);
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
    watcher_free(s->watcher);
    completion_free(s->gen);
    rerank_free(s->rr);
    embeddings_free(s->emb);
    reg_set_free(s->adapters);
    tn_free(s->tenants);
    tok_free(s->tok);
    free(s->bos);
    free(s->base_id);
    free(s->model_dir);
    free(s->adapters_dir);
    free(s->tenants_path);
    free(s->host);
    free(s->data_dir);
    free(s);
}
