// reply: how every API answer leaves the server. The routes of server.c,
// completion.c, admin.c, files.c and ftjobs answer through here, so that
// each request is
//   - answered once: a JSON body, or an error in OpenAI's shape
//     ({"error": {"message", "type", "param", "code"}}, Retry-After on 429);
//   - counted once in the requests metric (by route pattern and status);
//   - logged once: "info http: request method=... path=... status=...
//     peer=... conn=... tenant=... model=...".
//
// All on the loop thread. The requests counter is the server's (borrowed);
// NULL counts nothing (unit tests).
#ifndef TESSERA_REPLY_H
#define TESSERA_REPLY_H

#include "api.h"
#include "http.h"
#include "metrics.h"

// The route pattern of a path, for the counter's endpoint label (never the
// raw path, so labels stay few): "/v1/models/{id}", "other", ...
const char *reply_endpoint(const char *path);

// Counts and logs a request about to be answered with status. tenant and
// model may be NULL ("-").
void reply_access(metrics_requests *m, const http_req *q, int status, const char *tenant, const char *model);

// Sends a JSON body, taking ownership of it; NULL means out of memory and
// sends a 500. Neither counts nor logs.
void reply_json(http_res *res, int status, char *body);
// Sends e as OpenAI's error object (with Retry-After when e->retry_after).
void reply_error(http_res *res, const api_error *e);

// The two above, after reply_access (the status logged is the one sent).
void reply_json_logged(metrics_requests *m, const http_req *q, http_res *res, int status, char *body,
                       const char *tenant, const char *model);
void reply_error_logged(metrics_requests *m, const http_req *q, http_res *res, const api_error *e,
                        const char *tenant, const char *model);

#endif
