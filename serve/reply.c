#include "reply.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

static const char oom_body[] =
    "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\",\"param\":null,\"code\":null}}";

const char *reply_endpoint(const char *p) {
    static const char *const fixed[] = {"/health",          "/metrics",
                                        "/v1/models",       "/v1/chat/completions",
                                        "/v1/completions",  "/v1/load_lora_adapter",
                                        "/v1/unload_lora_adapter", "/v1/files",
                                        "/v1/fine_tuning/jobs", "/v1/rerank", "/v1/embeddings"};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        if (strcmp(p, fixed[i]) == 0) return fixed[i];
    if (strcmp(p, "/rerank") == 0) return "/v1/rerank"; // its alias
    if (strncmp(p, "/v1/models/", 11) == 0) return "/v1/models/{id}";
    if (strncmp(p, "/v1/files/", 10) == 0) return "/v1/files/{id}";
    if (strncmp(p, "/v1/fine_tuning/", 16) == 0) return "/v1/fine_tuning/jobs/{id}";
    return "other";
}

void reply_access(metrics_requests *m, const http_req *q, int status, const char *tenant, const char *model) {
    if (m) metrics_count_request(m, reply_endpoint(q->path), status);
    log_line("info", "http", "request method=%s path=%s status=%d peer=%s conn=%llu tenant=%s model=%s", q->method,
             q->path, status, q->peer, (unsigned long long)q->conn_id, tenant ? tenant : "-", model ? model : "-");
}

void reply_json(http_res *res, int status, char *body) {
    if (!body) {
        http_res_send(res, 500, NULL, oom_body, sizeof oom_body - 1);
        return;
    }
    http_res_send(res, status, NULL, body, strlen(body));
    free(body);
}

void reply_error(http_res *res, const api_error *e) {
    if (e->retry_after > 0) {
        char v[16];
        snprintf(v, sizeof v, "%d", e->retry_after);
        http_res_header(res, "Retry-After", v);
    }
    reply_json(res, e->status, api_error_json(e));
}

void reply_json_logged(metrics_requests *m, const http_req *q, http_res *res, int status, char *body,
                       const char *tenant, const char *model) {
    reply_access(m, q, body ? status : 500, tenant, model);
    reply_json(res, status, body);
}

void reply_error_logged(metrics_requests *m, const http_req *q, http_res *res, const api_error *e,
                        const char *tenant, const char *model) {
    reply_access(m, q, e->status, tenant, model);
    reply_error(res, e);
}
