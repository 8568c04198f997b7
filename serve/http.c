// http: libuv TCP + llhttp. See http.h for the contract.
//
// A connection owns an input buffer of bytes not yet parsed. Parsing runs
// only while no response is pending: on_message_complete pauses llhttp, the
// request is handed to the handler, and the bytes after it (pipelined
// requests) wait in the buffer until the response is finished. Reading goes
// on meanwhile, so a client that closes its end is noticed at once (the
// buffer is capped: past the cap reading stops until it drains).
//
// One uv_timer per connection serves every deadline: the idle keep-alive
// timeout, the whole-request timeout, a zero-delay "kick" that resumes
// parsing after a response finished outside the parse loop, and the
// graceful-close timeout.
#include "http.h"

#include <ctype.h>
#include <llhttp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "util.h"

#define HTTP_MAX_HEADERS 128
#define HTTP_CLOSE_GRACE_MS 5000

typedef struct conn conn;

struct http_res {
    conn *c;           // NULL once the connection is gone or the response is done
    int refs;          // the handler's (until finished) + the connection's (until done/closed)
    int finished;      // the handler finished it
    int head_sent;
    int sse, chunked;
    int keep_alive;
    int closed;        // the connection closed before the response was done
    http_req req;
    http_header *extra;
    int n_extra;
    http_close_cb on_close;
    void *on_close_ud;
    // parse-time accumulation
    size_t body_cap;
    size_t body_limit; // this request's largest body (http_config.body_limit)
    int last_was_value;
};

struct http_server {
    uv_loop_t *loop;
    uv_tcp_t listener;
    http_config cfg;
    char host[64];
    http_handler handler;
    void *ud;
    llhttp_settings_t settings;
    int port;
    conn *conns;
    int n_conns;
    uint64_t next_id;
    int closing;
    int open_handles; // listener + connections
    void (*done)(void *);
    void *done_ud;
};

struct conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    int handles; // open handles (2 until closed)
    http_server *srv;
    conn *prev, *next;
    llhttp_t parser;
    char *in;
    size_t in_head, in_len, in_cap;
    http_res *parsing;  // request being parsed (not yet handed over)
    http_res *active;   // request handed to the handler, response not done
    size_t hdr_bytes;
    int reject_status;  // set by a parser callback that refuses the request
    const char *reject_msg;
    uint64_t deadline;  // request timeout of the request being parsed (0 = none)
    int processing;
    int reading, read_paused;
    int shutting;       // graceful close: no more writes; close once flushed and the peer is done
    int peer_eof;       // the client closed its end
    int doomed;         // a write failed: close on the next loop turn
    int closing;
    uint64_t id;
    char peer[64];
};

static void conn_close(conn *c);
static void conn_shutdown(conn *c);
static void conn_doom(conn *c);
static void conn_process(conn *c);
static void conn_arm_timer(conn *c);

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

static int hexval(int ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

char *http_url_decode(char *s) {
    char *w = s;
    for (const char *r = s; *r; r++) {
        int hi, lo;
        if (*r == '%' && (hi = hexval(r[1])) >= 0 && (lo = hexval(r[2])) >= 0) {
            *w++ = (char)(hi * 16 + lo);
            r += 2;
        } else {
            *w++ = *r;
        }
    }
    *w = '\0';
    return s;
}

const char *http_req_header(const http_req *req, const char *name) {
    for (int i = 0; i < req->n_headers; i++)
        if (strcmp(req->headers[i].name, name) == 0) return req->headers[i].value;
    return NULL;
}

// Appends n bytes to a NUL-terminated heap string *s of length *len.
static int str_append(char **s, size_t *len, const char *p, size_t n) {
    char *t = realloc(*s, *len + n + 1);
    if (!t) return -1;
    memcpy(t + *len, p, n);
    *len += n;
    t[*len] = '\0';
    *s = t;
    return 0;
}

static void date_header(char *buf, size_t n) {
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(buf, n, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

// ---- responses: lifetime ---------------------------------------------------------

static http_res *res_new(conn *c) {
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

static void res_unref(http_res *r) {
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
    res_unref(r);
    if (!keep) conn_shutdown(c);
    else if (!c->processing) conn_arm_timer(c); // kicks parsing on the next loop turn if input waits
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
    if (status < 0 && status != UV_ECANCELED) conn_close(c);
}

// Queues bytes (copied) for the connection. -1 if the connection is going.
static int conn_write(conn *c, const char *a, size_t na, const char *b, size_t nb, const char *z, size_t nz) {
    if (c->closing || c->shutting) return -1;
    wreq *q = malloc(sizeof *q + na + nb + nz);
    if (!q) {
        conn_doom(c);
        return -1;
    }
    q->c = c;
    memcpy(q->data, a, na);
    if (nb) memcpy(q->data + na, b, nb);
    if (nz) memcpy(q->data + na + nb, z, nz);
    uv_buf_t buf = uv_buf_init(q->data, (unsigned)(na + nb + nz));
    if (uv_write(&q->w, (uv_stream_t *)&c->tcp, &buf, 1, on_write) != 0) {
        free(q);
        conn_doom(c);
        return -1;
    }
    // A client that stops reading must not make us buffer without bound.
    if (uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) > c->srv->cfg.max_write_queue) {
        conn_doom(c);
        return -1;
    }
    return 0;
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
            conn_doom(r->c);
        } else {
            conn *c = r->c;
            int rc = conn_write(c, head, hn, body, len, NULL, 0);
            free(head);
            if (rc == 0) res_done(r);
        }
    }
    res_unref(r);
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
        conn_doom(r->c);
        return -1;
    }
    int rc = conn_write(r->c, head, hn, NULL, 0, NULL, 0);
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
        conn_doom(r->c);
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
        rc = conn_write(r->c, size, (size_t)sn, ev, k, "\r\n", 2);
    } else {
        rc = conn_write(r->c, ev, k, NULL, 0, NULL, 0);
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
        int rc = r->chunked ? conn_write(r->c, "0\r\n\r\n", 5, NULL, 0, NULL, 0) : 0;
        if (rc == 0) res_done(r);
    }
    res_unref(r);
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

// Answers a request the parser refused (or that timed out) and closes.
static void conn_reject(conn *c, int status, const char *msg) {
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
    if (conn_write(c, head, (size_t)hn, body, (size_t)bn, NULL, 0) != 0) return;
    conn_shutdown(c);
}

// ---- llhttp callbacks ----------------------------------------------------------

static int refuse(conn *c, int status, const char *msg) {
    c->reject_status = status;
    c->reject_msg = msg;
    return -1;
}

static int count_header_bytes(conn *c, size_t n) {
    c->hdr_bytes += n;
    if (c->hdr_bytes > c->srv->cfg.max_header_bytes)
        return refuse(c, 431, "request line and headers are larger than the server accepts");
    return 0;
}

static int on_message_begin(llhttp_t *p) {
    conn *c = p->data;
    c->parsing = res_new(c);
    if (!c->parsing) return refuse(c, 500, "out of memory");
    c->hdr_bytes = 0;
    c->deadline = uv_now(c->srv->loop) + c->srv->cfg.request_timeout_ms;
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t n) {
    conn *c = p->data;
    if (count_header_bytes(c, n)) return -1;
    size_t len = strlen(c->parsing->req.target);
    return str_append(&c->parsing->req.target, &len, at, n) ? refuse(c, 500, "out of memory") : 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t n) {
    conn *c = p->data;
    http_res *r = c->parsing;
    if (count_header_bytes(c, n)) return -1;
    if (r->req.n_headers == 0 || r->last_was_value) {
        if (r->req.n_headers == HTTP_MAX_HEADERS) return refuse(c, 431, "too many request headers");
        http_header *h = realloc(r->req.headers, (size_t)(r->req.n_headers + 1) * sizeof *h);
        if (!h) return refuse(c, 500, "out of memory");
        r->req.headers = h;
        h[r->req.n_headers].name = calloc(1, 1);
        h[r->req.n_headers].value = calloc(1, 1);
        r->req.n_headers++;
        if (!h[r->req.n_headers - 1].name || !h[r->req.n_headers - 1].value) return refuse(c, 500, "out of memory");
        r->last_was_value = 0;
    }
    http_header *h = &r->req.headers[r->req.n_headers - 1];
    size_t len = strlen(h->name);
    return str_append(&h->name, &len, at, n) ? refuse(c, 500, "out of memory") : 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t n) {
    conn *c = p->data;
    http_res *r = c->parsing;
    if (count_header_bytes(c, n)) return -1;
    if (r->req.n_headers == 0) return 0;
    r->last_was_value = 1;
    http_header *h = &r->req.headers[r->req.n_headers - 1];
    size_t len = strlen(h->value);
    return str_append(&h->value, &len, at, n) ? refuse(c, 500, "out of memory") : 0;
}

static void normalize_headers(http_req *q) {
    for (int i = 0; i < q->n_headers; i++) {
        for (char *s = q->headers[i].name; *s; s++) *s = (char)tolower((unsigned char)*s);
        char *v = q->headers[i].value;
        size_t n = strlen(v);
        while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t')) v[--n] = '\0';
        size_t lead = strspn(v, " \t");
        if (lead) memmove(v, v + lead, n - lead + 1);
    }
}

static int on_headers_complete(llhttp_t *p) {
    conn *c = p->data;
    http_res *r = c->parsing;
    normalize_headers(&r->req);
    size_t cap = c->srv->cfg.max_body_bytes;
    if (c->srv->cfg.body_limit) {
        size_t own = c->srv->cfg.body_limit(c->srv->ud, llhttp_method_name((llhttp_method_t)llhttp_get_method(p)),
                                            r->req.target);
        if (own) cap = own;
    }
    r->body_limit = cap;
    if ((p->flags & F_CONTENT_LENGTH) && p->content_length > cap)
        return refuse(c, 413, "request body is larger than the server accepts");
    const char *expect = http_req_header(&r->req, "expect");
    if (expect && strcasecmp(expect, "100-continue") == 0 && p->http_minor >= 1) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        if (conn_write(c, cont, sizeof cont - 1, NULL, 0, NULL, 0) != 0) return refuse(c, 500, "write failed");
    }
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n) {
    conn *c = p->data;
    http_res *r = c->parsing;
    if (r->req.body_len + n > r->body_limit)
        return refuse(c, 413, "request body is larger than the server accepts");
    if (r->req.body_len + n + 1 > r->body_cap) {
        size_t cap = r->body_cap ? r->body_cap : 4096;
        while (cap < r->req.body_len + n + 1) cap *= 2;
        char *b = realloc(r->req.body, cap);
        if (!b) return refuse(c, 500, "out of memory");
        r->req.body = b;
        r->body_cap = cap;
    }
    memcpy(r->req.body + r->req.body_len, at, n);
    r->req.body_len += n;
    r->req.body[r->req.body_len] = '\0';
    return 0;
}

static int on_message_complete(llhttp_t *p) {
    conn *c = p->data;
    http_res *r = c->parsing;
    r->req.method = llhttp_method_name((llhttp_method_t)llhttp_get_method(p));
    r->req.http_minor = llhttp_get_http_minor(p);
    r->keep_alive = llhttp_should_keep_alive(p) && !llhttp_get_upgrade(p);
    const char *q = strchr(r->req.target, '?');
    size_t plen = q ? (size_t)(q - r->req.target) : strlen(r->req.target);
    r->req.path = malloc(plen + 1 + (q ? strlen(q + 1) : 0) + 1);
    if (!r->req.path) return refuse(c, 500, "out of memory");
    memcpy(r->req.path, r->req.target, plen);
    r->req.path[plen] = '\0';
    r->req.query = r->req.path + plen + 1;
    strcpy(r->req.query, q ? q + 1 : "");
    return HPE_PAUSED;
}

// ---- the parse loop ---------------------------------------------------------

static void conn_dispatch(conn *c) {
    http_res *r = c->parsing;
    c->parsing = NULL;
    c->deadline = 0;
    c->active = r;
    r->refs++; // the handler's
    c->srv->handler(&r->req, r, c->srv->ud);
}

// Parses buffered input while no response is pending; hands complete
// requests to the handler; answers parse errors. Never re-entered: a
// response finished inside the handler just lets the loop go on.
static void conn_process(conn *c) {
    if (c->processing) return;
    c->processing = 1;
    while (!c->closing && !c->shutting && !c->active && c->in_head < c->in_len) {
        const char *p = c->in + c->in_head;
        size_t n = c->in_len - c->in_head;
        llhttp_errno_t e = llhttp_execute(&c->parser, p, n);
        if (e == HPE_OK) {
            c->in_head = c->in_len;
        } else if (e == HPE_PAUSED || e == HPE_PAUSED_UPGRADE) {
            c->in_head += (size_t)(llhttp_get_error_pos(&c->parser) - p);
            llhttp_resume(&c->parser);
            if (c->parsing) conn_dispatch(c);
            if (e == HPE_PAUSED_UPGRADE) c->in_head = c->in_len; // not ours to read: the response closes
        } else {
            int status = c->reject_status ? c->reject_status : 400;
            char msg[256];
            if (c->reject_msg)
                snprintf(msg, sizeof msg, "%s", c->reject_msg);
            else
                snprintf(msg, sizeof msg, "malformed HTTP request: %s", llhttp_get_error_reason(&c->parser));
            c->in_head = c->in_len;
            conn_reject(c, status, msg);
        }
    }
    if (c->in_head == c->in_len) {
        c->in_head = c->in_len = 0;
    } else if (c->in_head > 0 && c->in_head >= c->in_cap / 2) {
        memmove(c->in, c->in + c->in_head, c->in_len - c->in_head);
        c->in_len -= c->in_head;
        c->in_head = 0;
    }
    if (c->read_paused && !c->closing && c->in_len - c->in_head < c->srv->cfg.max_header_bytes) {
        c->read_paused = 0;
        c->reading = 0;
    }
    c->processing = 0;
    conn_arm_timer(c);
}

static void on_timer(uv_timer_t *t);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf);

// Picks the connection's next deadline from its state, and makes sure it
// reads when it should.
static void conn_arm_timer(conn *c) {
    if (c->closing) return;
    uint64_t now = uv_now(c->srv->loop);
    if (!c->reading && (!c->read_paused || c->shutting) && !c->doomed) {
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0) c->reading = 1;
    }
    if (c->doomed) {
        uv_timer_start(&c->timer, on_timer, 0, 0);
    } else if (c->shutting) {
        uv_timer_start(&c->timer, on_timer, HTTP_CLOSE_GRACE_MS, 0);
    } else if (c->active) {
        uv_timer_stop(&c->timer); // generation may take long; disconnects are seen by reading
    } else if (c->parsing && c->deadline) {
        uv_timer_start(&c->timer, on_timer, c->deadline > now ? c->deadline - now : 0, 0);
    } else if (c->in_head < c->in_len) {
        uv_timer_start(&c->timer, on_timer, 0, 0); // more input to parse: kick
    } else {
        uv_timer_start(&c->timer, on_timer, c->srv->cfg.idle_timeout_ms, 0);
    }
}

static void on_timer(uv_timer_t *t) {
    conn *c = t->data;
    if (c->closing) return;
    if (c->shutting) {
        conn_close(c); // the client did not take the last response in time
    } else if (c->active) {
        // nothing to do while the handler works
    } else if (c->parsing && c->deadline && uv_now(c->srv->loop) >= c->deadline) {
        conn_reject(c, 408, "request not received in time");
    } else if (c->parsing || c->in_head < c->in_len) {
        conn_process(c);
    } else {
        conn_close(c); // idle keep-alive connection
    }
}

// ---- reading ---------------------------------------------------------------

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
    conn *c = h->data;
    size_t want = 64 * 1024;
    if (c->in_cap - c->in_len < want) {
        size_t cap = c->in_cap ? c->in_cap : want;
        while (cap - c->in_len < want) cap *= 2;
        char *p = realloc(c->in, cap);
        if (!p) {
            *buf = uv_buf_init(NULL, 0);
            return;
        }
        c->in = p;
        c->in_cap = cap;
    }
    *buf = uv_buf_init(c->in + c->in_len, (unsigned)(c->in_cap - c->in_len));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    conn *c = s->data;
    if (nread == 0) return;
    if (nread < 0) {
        // EOF or reset. A pending response's client is gone: close so the
        // caller can cancel (a half-close counts as gone, as nginx has it).
        // Otherwise flush what was written, then close; a half-sent request
        // is dropped.
        c->peer_eof = 1;
        if (nread == UV_EOF && !c->active && !c->shutting) conn_shutdown(c);
        else conn_close(c);
        return;
    }
    if (c->shutting) return; // lingering close: what the client still sends is dropped
    c->in_len += (size_t)nread;
    size_t cap = c->srv->cfg.max_header_bytes + 64 * 1024;
    if (c->active && c->in_len - c->in_head > cap) {
        // Pipelined bytes pile up behind a slow response: stop reading for now.
        uv_read_stop(s);
        c->reading = 0;
        c->read_paused = 1;
    }
    if (!c->active) conn_process(c);
}

// ---- connections: open / close -------------------------------------------------

static void server_handle_closed(http_server *srv) {
    if (--srv->open_handles > 0 || !srv->closing) return;
    void (*done)(void *) = srv->done;
    void *ud = srv->done_ud;
    free(srv);
    if (done) done(ud);
}

static void on_conn_handle_closed(uv_handle_t *h) {
    conn *c = h->data;
    if (--c->handles > 0) return;
    http_server *srv = c->srv;
    free(c->in);
    free(c);
    server_handle_closed(srv);
}

// Our side is flushed and closed (FIN sent). Close the socket when the
// client has closed its side too, or when the grace period ends.
static void on_shutdown(uv_shutdown_t *sd, int status) {
    conn *c = sd->data;
    free(sd);
    if (status < 0 || c->peer_eof) conn_close(c);
}

// Graceful close: nothing more is written; the connection closes once the
// queued bytes are flushed and the client has closed its end, or after a
// grace period. Until then what the client sends is read and dropped: a
// client still sending a body we refused (413) would otherwise get a TCP
// reset that can destroy the response before it reads it.
static void conn_shutdown(conn *c) {
    if (c->closing || c->shutting) return;
    c->shutting = 1;
    conn_arm_timer(c);
    uv_shutdown_t *sd = malloc(sizeof *sd);
    if (sd) sd->data = c;
    if (!sd || uv_shutdown(sd, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
        free(sd);
        conn_doom(c);
    }
}

// A write failed inside some caller's call: make writes no-ops now and
// close on the next loop turn, so close callbacks never run inside
// http_res_* calls.
static void conn_doom(conn *c) {
    if (c->closing) return;
    c->shutting = c->doomed = 1;
    conn_arm_timer(c);
}

// Closes the connection now. A pending response is detached (its close
// callback fires); a half-parsed request is dropped.
static void conn_close(conn *c) {
    if (c->closing) return;
    c->closing = 1;
    http_server *srv = c->srv;
    if (c->prev) c->prev->next = c->next;
    else srv->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    srv->n_conns--;
    if (c->parsing) {
        res_unref(c->parsing);
        c->parsing = NULL;
    }
    http_res *r = c->active;
    if (r) {
        c->active = NULL;
        r->c = NULL;
        r->closed = 1;
        if (r->on_close && !r->finished) r->on_close(r, r->on_close_ud);
        res_unref(r);
    }
    uv_read_stop((uv_stream_t *)&c->tcp);
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
}

static void on_connection(uv_stream_t *l, int status) {
    http_server *srv = l->data;
    if (status < 0 || srv->closing) return;
    conn *c = calloc(1, sizeof *c);
    if (!c) return;
    c->srv = srv;
    c->id = ++srv->next_id;
    uv_tcp_init(srv->loop, &c->tcp);
    uv_timer_init(srv->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->handles = 2;
    srv->open_handles++;
    c->next = srv->conns;
    if (srv->conns) srv->conns->prev = c;
    srv->conns = c;
    srv->n_conns++;
    if (uv_accept(l, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    struct sockaddr_storage sa;
    int salen = sizeof sa;
    char ip[48] = "?";
    int port = 0;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&sa, &salen) == 0) {
        if (sa.ss_family == AF_INET6) {
            uv_ip6_name((struct sockaddr_in6 *)&sa, ip, sizeof ip);
            port = ntohs(((struct sockaddr_in6 *)&sa)->sin6_port);
        } else {
            uv_ip4_name((struct sockaddr_in *)&sa, ip, sizeof ip);
            port = ntohs(((struct sockaddr_in *)&sa)->sin_port);
        }
    }
    snprintf(c->peer, sizeof c->peer, "%s:%d", ip, port);
    llhttp_init(&c->parser, HTTP_REQUEST, &srv->settings);
    c->parser.data = c;
    conn_arm_timer(c);
}

// ---- server -----------------------------------------------------------------

static void on_listener_closed(uv_handle_t *h) { server_handle_closed(h->data); }

http_server *http_server_start(uv_loop_t *loop, const http_config *cfg, http_handler handler, void *ud,
                               err_t *err) {
    http_server *s = calloc(1, sizeof *s);
    if (!s) {
        err_set(err, "out of memory");
        return NULL;
    }
    s->loop = loop;
    s->cfg = *cfg;
    snprintf(s->host, sizeof s->host, "%s", cfg->host ? cfg->host : "127.0.0.1");
    s->cfg.host = s->host;
    if (!s->cfg.max_body_bytes) s->cfg.max_body_bytes = 8u << 20;
    if (!s->cfg.max_header_bytes) s->cfg.max_header_bytes = 16u << 10;
    if (!s->cfg.idle_timeout_ms) s->cfg.idle_timeout_ms = 60000;
    if (!s->cfg.request_timeout_ms) s->cfg.request_timeout_ms = 30000;
    if (!s->cfg.max_write_queue) s->cfg.max_write_queue = 16u << 20;
    if (!s->cfg.backlog) s->cfg.backlog = 511;
    s->handler = handler;
    s->ud = ud;
    llhttp_settings_init(&s->settings);
    s->settings.on_message_begin = on_message_begin;
    s->settings.on_url = on_url;
    s->settings.on_header_field = on_header_field;
    s->settings.on_header_value = on_header_value;
    s->settings.on_headers_complete = on_headers_complete;
    s->settings.on_body = on_body;
    s->settings.on_message_complete = on_message_complete;

    struct sockaddr_storage sa;
    int rc = strchr(s->host, ':') ? uv_ip6_addr(s->host, cfg->port, (struct sockaddr_in6 *)&sa)
                                  : uv_ip4_addr(s->host, cfg->port, (struct sockaddr_in *)&sa);
    if (rc != 0) {
        err_set(err, "listen address %s: %s", s->host, uv_strerror(rc));
        free(s);
        return NULL;
    }
    uv_tcp_init(loop, &s->listener);
    s->listener.data = s;
    s->open_handles = 1;
    if ((rc = uv_tcp_bind(&s->listener, (struct sockaddr *)&sa, 0)) != 0 ||
        (rc = uv_listen((uv_stream_t *)&s->listener, s->cfg.backlog, on_connection)) != 0) {
        err_set(err, "listen on %s port %d: %s", s->host, cfg->port, uv_strerror(rc));
        s->closing = 1;
        uv_close((uv_handle_t *)&s->listener, on_listener_closed);
        return NULL;
    }
    int salen = sizeof sa;
    uv_tcp_getsockname(&s->listener, (struct sockaddr *)&sa, &salen);
    s->port = sa.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&sa)->sin6_port)
                                       : ntohs(((struct sockaddr_in *)&sa)->sin_port);
    return s;
}

int http_server_port(const http_server *s) { return s->port; }

int http_server_connections(const http_server *s) { return s->n_conns; }

void http_server_close(http_server *s, void (*done)(void *ud), void *ud) {
    if (s->closing) return;
    s->closing = 1;
    s->done = done;
    s->done_ud = ud;
    uv_close((uv_handle_t *)&s->listener, on_listener_closed);
    while (s->conns) conn_close(s->conns);
}
