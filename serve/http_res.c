// http_res: the response side of the HTTP server. See http.h for the
// contract and http_int.h for how it splits with http.c.
//
// A response is reference-counted: the connection holds one reference until
// the response is done or the connection closes, the handler one until it
// finishes the response, so a response outlives its connection when the
// handler finishes late. Bytes are copied into one uv_write request per
// write and freed when libuv is done with them; the connection's write
// queue is capped (max_write_queue), past which the client is dropped.
//
// Threading: loop thread only, as all of http.
#include "http_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util.h"

// ---- small helpers ------------------------------------------------------------

const char *http_status_text(int status) {
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

static void date_header(char *buf, size_t n) {
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(buf, n, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

// ---- responses: lifetime ---------------------------------------------------------

http_res *http_res_new(conn *c) {
    http_res *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->c = c;
    r->refs = 1; // the connection's; the handler's is added at dispatch
    r->req.body = calloc(1, 1);
    r->req.target = calloc(1, 1);
    r->req.conn_id = c->id;
    snprintf(r->req.peer, sizeof r->req.peer, "%s", c->peer);
    if (!r->req.body || !r->req.target) {
        free(r->req.body);
        free(r->req.target);
        free(r);
        return NULL;
    }
    return r;
}

void http_res_unref(http_res *r) {
    if (--r->refs > 0) return;
    free(r->req.target);
    free(r->req.path);
    free(r->req.body);
    for (int i = 0; i < r->req.n_headers; i++) {
        free(r->req.headers[i].name);
        free(r->req.headers[i].value);
    }
    free(r->req.headers);
    for (int i = 0; i < r->n_extra; i++) {
        free(r->extra[i].name);
        free(r->extra[i].value);
    }
    free(r->extra);
    free(r);
}

// The response is complete on the wire (queued): detach it from its
// connection and go on with the next request, or close.
static void res_done(http_res *r) {
    conn *c = r->c;
    if (!c) return;
    r->c = NULL;
    c->active = NULL;
    int keep = r->keep_alive && !c->srv->closing;
    http_res_unref(r);
    if (!keep) http_conn_shutdown(c);
    else if (!c->processing) http_conn_arm_timer(c); // kicks parsing on the next loop turn if input waits
}

// ---- writing ---------------------------------------------------------------

typedef struct wreq {
    uv_write_t w;
    conn *c;
    char data[];
} wreq;

static void on_write(uv_write_t *w, int status) {
    wreq *q = (wreq *)w;
    conn *c = q->c;
    free(q);
    if (status < 0 && status != UV_ECANCELED) http_conn_close(c);
}

// Appends to the corked output; -1 (and the connection doomed) past the
// write queue cap or out of memory.
static int conn_out_append(conn *c, const char *a, size_t na, const char *b, size_t nb, const char *z, size_t nz) {
    size_t n = na + nb + nz;
    if (c->out_len + n > c->srv->cfg.max_write_queue) {
        http_conn_doom(c);
        return -1;
    }
    if (c->out_len + n > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 1024;
        while (cap < c->out_len + n) cap *= 2;
        char *o = realloc(c->out, cap);
        if (!o) {
            http_conn_doom(c);
            return -1;
        }
        c->out = o;
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, a, na);
    if (nb) memcpy(c->out + c->out_len + na, b, nb);
    if (nz) memcpy(c->out + c->out_len + na + nb, z, nz);
    c->out_len += n;
    return 0;
}

// Queues bytes (copied) for the connection. -1 if the connection is going.
// While the parse loop runs (corked), bytes are gathered and go out as one
// write when it ends: answers to pipelined requests ready together share a
// write (and usually a TCP segment).
int http_conn_write(conn *c, const char *a, size_t na, const char *b, size_t nb, const char *z, size_t nz) {
    if (c->closing || c->shutting) return -1;
    if (c->corked) return conn_out_append(c, a, na, b, nb, z, nz);
    c->srv->st.writes++;
    wreq *q = malloc(sizeof *q + na + nb + nz);
    if (!q) {
        http_conn_doom(c);
        return -1;
    }
    q->c = c;
    memcpy(q->data, a, na);
    if (nb) memcpy(q->data + na, b, nb);
    if (nz) memcpy(q->data + na + nb, z, nz);
    uv_buf_t buf = uv_buf_init(q->data, (unsigned)(na + nb + nz));
    if (uv_write(&q->w, (uv_stream_t *)&c->tcp, &buf, 1, on_write) != 0) {
        free(q);
        http_conn_doom(c);
        return -1;
    }
    // A client that stops reading must not make us buffer without bound.
    if (uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) > c->srv->cfg.max_write_queue) {
        http_conn_doom(c);
        return -1;
    }
    return 0;
}

void http_conn_flush(conn *c) {
    c->corked = 0;
    if (c->out_len && !c->closing && !c->shutting) http_conn_write(c, c->out, c->out_len, NULL, 0, NULL, 0);
    free(c->out);
    c->out = NULL;
    c->out_len = c->out_cap = 0;
}

static int res_writable(const http_res *r) { return r->c && !r->c->closing && !r->c->shutting; }

// Formats the status line and headers into a new string.
static char *res_head(http_res *r, int status, const char *ctype, const char *length_or_te, size_t *len) {
    char date[64], line[512];
    date_header(date, sizeof date);
    snprintf(line, sizeof line, "HTTP/1.%d %d %s\r\nDate: %s\r\nContent-Type: %s\r\n%s%sConnection: %s\r\n",
             r->req.http_minor == 0 ? 0 : 1, status, http_status_text(status), date, ctype,
             length_or_te ? length_or_te : "", length_or_te ? "\r\n" : "", r->keep_alive ? "keep-alive" : "close");
    util_buf h = {0};
    util_buf_puts(&h, line);
    for (int i = 0; i < r->n_extra; i++) {
        util_buf_puts(&h, r->extra[i].name);
        util_buf_puts(&h, ": ");
        util_buf_puts(&h, r->extra[i].value);
        util_buf_puts(&h, "\r\n");
    }
    util_buf_puts(&h, "\r\n");
    if (h.oom) {
        free(h.p);
        return NULL;
    }
    *len = h.len;
    return h.p;
}

// ---- responses: public ---------------------------------------------------------

int http_res_header(http_res *r, const char *name, const char *value) {
    if (r->head_sent || strpbrk(name, "\r\n:") || strpbrk(value, "\r\n")) return -1;
    http_header *e = realloc(r->extra, (size_t)(r->n_extra + 1) * sizeof *e);
    if (!e) return -1;
    r->extra = e;
    e[r->n_extra].name = strdup(name);
    e[r->n_extra].value = strdup(value);
    if (!e[r->n_extra].name || !e[r->n_extra].value) {
        free(e[r->n_extra].name);
        free(e[r->n_extra].value);
        return -1;
    }
    r->n_extra++;
    return 0;
}

int http_res_closed(const http_res *r) { return r->closed || !res_writable(r); }

void http_res_on_close(http_res *r, http_close_cb cb, void *ud) {
    r->on_close = cb;
    r->on_close_ud = ud;
}

void http_res_send(http_res *r, int status, const char *ctype, const char *body, size_t len) {
    if (r->finished) return; // a second finish is a caller bug; ignore it rather than double free
    r->finished = 1;         // from here on no close callback fires
    if (res_writable(r) && !r->head_sent) {
        char cl[64];
        snprintf(cl, sizeof cl, "Content-Length: %zu", len);
        size_t hn = 0;
        char *head = res_head(r, status, ctype ? ctype : "application/json", cl, &hn);
        r->head_sent = 1;
        if (!head) {
            http_conn_doom(r->c);
        } else {
            conn *c = r->c;
            // HEAD: the headers GET would send (Content-Length included), no body.
            int head_only = r->req.method && strcmp(r->req.method, "HEAD") == 0;
            int rc = http_conn_write(c, head, hn, body, head_only ? 0 : len, NULL, 0);
            free(head);
            if (rc == 0) res_done(r);
        }
    }
    http_res_unref(r);
}

int http_res_sse_begin(http_res *r) {
    if (!res_writable(r) || r->head_sent) return -1;
    r->sse = 1;
    r->chunked = r->req.http_minor != 0;
    if (!r->chunked) r->keep_alive = 0; // HTTP/1.0: the stream ends with the connection
    http_res_header(r, "Cache-Control", "no-cache");
    http_res_header(r, "X-Accel-Buffering", "no");
    size_t hn = 0;
    char *head = res_head(r, 200, "text/event-stream; charset=utf-8",
                          r->chunked ? "Transfer-Encoding: chunked" : NULL, &hn);
    r->head_sent = 1;
    if (!head) {
        http_conn_doom(r->c);
        return -1;
    }
    int rc = http_conn_write(r->c, head, hn, NULL, 0, NULL, 0);
    free(head);
    return rc;
}

int http_res_sse_data(http_res *r, const char *data, size_t len) {
    if (!res_writable(r) || !r->sse) return -1;
    // "data: " + each line + "\n" (a line break in data becomes "\ndata: "), then "\n".
    size_t breaks = 0;
    for (size_t i = 0; i < len; i++) breaks += data[i] == '\n';
    size_t n = 6 + len + breaks * 6 + 2;
    char *ev = malloc(n);
    if (!ev) {
        http_conn_doom(r->c);
        return -1;
    }
    size_t k = 0;
    memcpy(ev, "data: ", 6);
    k = 6;
    for (size_t i = 0; i < len; i++) {
        ev[k++] = data[i];
        if (data[i] == '\n') {
            memcpy(ev + k, "data: ", 6);
            k += 6;
        }
    }
    ev[k++] = '\n';
    ev[k++] = '\n';
    int rc;
    if (r->chunked) {
        char size[32];
        int sn = snprintf(size, sizeof size, "%zx\r\n", k);
        rc = http_conn_write(r->c, size, (size_t)sn, ev, k, "\r\n", 2);
    } else {
        rc = http_conn_write(r->c, ev, k, NULL, 0, NULL, 0);
    }
    free(ev);
    return rc;
}

void http_res_sse_end(http_res *r) {
    if (r->finished) return;
    if (res_writable(r) && !r->head_sent) {
        // Ended without ever starting: answer something well-formed.
        http_res_send(r, 500, NULL, "", 0);
        return;
    }
    r->finished = 1;
    if (res_writable(r) && r->sse) {
        int rc = r->chunked ? http_conn_write(r->c, "0\r\n\r\n", 5, NULL, 0, NULL, 0) : 0;
        if (rc == 0) res_done(r);
    }
    http_res_unref(r);
}

// ---- connection-level error responses ------------------------------------------

static void json_escape_into(char *out, size_t n, const char *s) {
    size_t k = 0;
    for (; *s && k + 7 < n; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            out[k++] = '\\';
            out[k++] = (char)ch;
        } else if (ch < 0x20) {
            k += (size_t)snprintf(out + k, n - k, "\\u%04x", ch);
        } else {
            out[k++] = (char)ch;
        }
    }
    out[k] = '\0';
}

// The error answer of status with msg, Connection: close, and extra
// header lines (each ending in CRLF) into head and body.
static void error_answer(int status, const char *msg, const char *extra, char *head, size_t hcap, int *hn,
                         char *body, size_t bcap, int *bn) {
    char esc[512], date[64];
    json_escape_into(esc, sizeof esc, msg);
    *bn = snprintf(body, bcap,
                   "{\"error\":{\"message\":\"%s\",\"type\":\"%s\",\"param\":null,\"code\":null}}", esc,
                   status >= 500 ? "server_error" : "invalid_request_error");
    date_header(date, sizeof date);
    *hn = snprintf(head, hcap,
                   "HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                   "%sConnection: close\r\n\r\n",
                   status, http_status_text(status), date, *bn, extra);
}

void http_conn_busy(conn *c, const char *msg) {
    char body[768], head[512];
    int hn, bn;
    error_answer(503, msg, "Retry-After: 1\r\n", head, sizeof head, &hn, body, sizeof body, &bn);
    http_conn_write(c, head, (size_t)hn, body, (size_t)bn, NULL, 0);
    http_conn_close(c);
}

// Answers a request the parser refused (or that timed out) and closes.
void http_conn_reject(conn *c, int status, const char *msg) {
    if (c->closing || c->shutting) return;
    char esc[512], body[768], head[512];
    json_escape_into(esc, sizeof esc, msg);
    int bn = snprintf(body, sizeof body,
                      "{\"error\":{\"message\":\"%s\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":null}}",
                      esc);
    char date[64];
    date_header(date, sizeof date);
    int hn = snprintf(head, sizeof head,
                      "HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                      "Connection: close\r\n\r\n",
                      status, http_status_text(status), date, bn);
    if (c->srv->cfg.on_reject) c->srv->cfg.on_reject(c->srv->ud, status, c->peer, msg);
    if (http_conn_write(c, head, (size_t)hn, body, (size_t)bn, NULL, 0) != 0) return;
    http_conn_shutdown(c);
}
