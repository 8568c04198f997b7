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
//
// Limits on connections (see http.h): every read lands in one server-wide
// buffer and only the bytes not yet parsed are kept per connection (freed
// once drained), so an idle or half-sent connection costs its struct and a
// few hundred bytes. Connections waiting for a complete header block sit on
// a list, oldest first; at the global cap the oldest is closed for the
// newcomer, since an attacker's idle sockets are exactly those, while a
// client with a request in flight is never dropped for another.
//
// The response side (lifetime, writing, http_res_*) is in http_res.c; the
// types both share are in http_int.h.
#include "http_int.h"

#include <ctype.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>

#define HTTP_MAX_HEADERS 128
#define HTTP_CLOSE_GRACE_MS 5000

static void conn_process(conn *c);

// ---- small helpers ------------------------------------------------------------

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
    c->parsing = http_res_new(c);
    if (!c->parsing) return refuse(c, 500, "out of memory");
    c->hdr_bytes = 0;
    uint64_t now = uv_now(c->srv->loop);
    c->deadline = now + c->srv->cfg.request_timeout_ms;
    if (!c->hdr_deadline) c->hdr_deadline = now + c->srv->cfg.header_timeout_ms;
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
    c->hdr_deadline = 0;
    c->in_body = 1;
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
        if (http_conn_write(c, cont, sizeof cont - 1, NULL, 0, NULL, 0) != 0) return refuse(c, 500, "write failed");
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

// A chunk announces its size before its bytes: one past the body limit is
// refused now, not after waiting for bytes that will never fit.
static int on_chunk_header(llhttp_t *p) {
    conn *c = p->data;
    http_res *r = c->parsing;
    if (p->content_length > r->body_limit - r->req.body_len)
        return refuse(c, 413, "request body is larger than the server accepts");
    return 0;
}

static int on_message_complete(llhttp_t *p) {
    conn *c = p->data;
    http_res *r = c->parsing;
    c->in_body = 0;
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
    c->corked = 1;
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
            http_conn_reject(c, status, msg);
        }
    }
    if (c->in_head == c->in_len) {
        c->in_head = c->in_len = 0;
        free(c->in); // drained: an idle connection keeps no buffer
        c->in = NULL;
        c->in_cap = 0;
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
    http_conn_flush(c);
    http_conn_arm_timer(c);
}

static void on_timer(uv_timer_t *t);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf);

// ---- the wait list: connections without a complete header block ----------------

static void wait_leave(conn *c) {
    if (!c->waiting) return;
    http_server *srv = c->srv;
    if (c->wait_prev) c->wait_prev->wait_next = c->wait_next;
    else srv->wait_head = c->wait_next;
    if (c->wait_next) c->wait_next->wait_prev = c->wait_prev;
    else srv->wait_tail = c->wait_prev;
    c->wait_prev = c->wait_next = NULL;
    c->waiting = 0;
}

static void wait_enter(conn *c) {
    if (c->waiting) return;
    http_server *srv = c->srv;
    c->wait_prev = srv->wait_tail;
    c->wait_next = NULL;
    if (srv->wait_tail) srv->wait_tail->wait_next = c;
    else srv->wait_head = c;
    srv->wait_tail = c;
    c->waiting = 1;
}

static uint64_t earliest(uint64_t a, uint64_t b) { return !a ? b : !b ? a : a < b ? a : b; }

// Picks the connection's next deadline from its state, and makes sure it
// reads when it should.
void http_conn_arm_timer(conn *c) {
    if (c->closing) return;
    uint64_t now = uv_now(c->srv->loop);
    if (!c->active && !c->in_body && !c->shutting) wait_enter(c);
    else wait_leave(c);
    if (!c->reading && (!c->read_paused || c->shutting) && !c->doomed) {
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0) c->reading = 1;
    }
    if (c->doomed) {
        uv_timer_start(&c->timer, on_timer, 0, 0);
    } else if (c->shutting) {
        uv_timer_start(&c->timer, on_timer, HTTP_CLOSE_GRACE_MS, 0);
    } else if (c->active) {
        uv_timer_stop(&c->timer); // generation may take long; disconnects are seen by reading
    } else if (c->parsing && (c->deadline || c->hdr_deadline)) {
        uint64_t d = earliest(c->deadline, c->hdr_deadline);
        uv_timer_start(&c->timer, on_timer, d > now ? d - now : 0, 0);
    } else if (c->in_head < c->in_len) {
        uv_timer_start(&c->timer, on_timer, 0, 0); // more input to parse: kick
    } else if (c->hdr_deadline) {
        // A fresh connection that has not sent a byte: the header timeout, not the keep-alive one.
        uv_timer_start(&c->timer, on_timer, c->hdr_deadline > now ? c->hdr_deadline - now : 0, 0);
    } else {
        uv_timer_start(&c->timer, on_timer, c->srv->cfg.idle_timeout_ms, 0);
    }
}

static void on_timer(uv_timer_t *t) {
    conn *c = t->data;
    if (c->closing) return;
    if (c->shutting) {
        http_conn_close(c); // the client did not take the last response in time
    } else if (c->active) {
        // nothing to do while the handler works
    } else if (c->parsing && c->deadline && uv_now(c->srv->loop) >= c->deadline) {
        http_conn_reject(c, 408, "request not received in time");
    } else if (c->hdr_deadline && uv_now(c->srv->loop) >= c->hdr_deadline) {
        c->srv->st.header_timeouts++;
        if (c->parsing) http_conn_reject(c, 408, "request headers not received in time");
        else http_conn_close(c); // never sent a byte: nothing to answer
    } else if (c->parsing || c->in_head < c->in_len) {
        conn_process(c);
    } else {
        http_conn_close(c); // idle keep-alive connection
    }
}

// ---- reading ---------------------------------------------------------------

// Every read lands in the server's one buffer (libuv calls on_read before
// the next on_alloc); on_read keeps only what arrived.
static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
    conn *c = h->data;
    *buf = uv_buf_init(c->srv->rbuf, HTTP_READ_CHUNK);
}

// Appends n bytes to the connection's unparsed input. -1 when out of memory.
static int in_append(conn *c, const char *p, size_t n) {
    if (c->in_cap - c->in_len < n) {
        size_t cap = c->in_cap ? c->in_cap : 1024;
        while (cap - c->in_len < n) cap *= 2;
        char *q = realloc(c->in, cap);
        if (!q) return -1;
        c->in = q;
        c->in_cap = cap;
    }
    memcpy(c->in + c->in_len, p, n);
    c->in_len += n;
    return 0;
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
        if (nread == UV_EOF && !c->active && !c->shutting) http_conn_shutdown(c);
        else http_conn_close(c);
        return;
    }
    if (c->shutting) return; // lingering close: what the client still sends is dropped
    if (in_append(c, buf->base, (size_t)nread) != 0) {
        http_conn_close(c);
        return;
    }
    size_t cap = c->srv->cfg.max_header_bytes + 64 * 1024;
    if (c->active && c->in_len - c->in_head > cap) {
        // Pipelined bytes pile up behind a slow response: stop reading for now.
        uv_read_stop(s);
        c->reading = 0;
        c->read_paused = 1;
    }
    if (!c->active) conn_process(c);
}

// ---- per-address counts ---------------------------------------------------------

static unsigned ip_hash(const unsigned char *a) {
    unsigned h = 2166136261u;
    for (int i = 0; i < 16; i++) h = (h ^ a[i]) * 16777619u;
    return h % HTTP_IP_BUCKETS;
}

// The count of addr, created at 0; NULL when out of memory.
static http_ip *ip_get(http_server *srv, const unsigned char *addr) {
    http_ip **b = &srv->ips[ip_hash(addr)];
    for (http_ip *e = *b; e; e = e->next)
        if (memcmp(e->addr, addr, 16) == 0) return e;
    http_ip *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    memcpy(e->addr, addr, 16);
    e->next = *b;
    *b = e;
    return e;
}

static void ip_release(conn *c) {
    http_ip *e = c->ip;
    if (!e) return;
    c->ip = NULL;
    if (--e->n > 0) return;
    for (http_ip **b = &c->srv->ips[ip_hash(e->addr)]; *b; b = &(*b)->next) {
        if (*b == e) {
            *b = e->next;
            free(e);
            return;
        }
    }
}

// ---- connections: open / close -------------------------------------------------

static void server_handle_closed(http_server *srv) {
    if (--srv->open_handles > 0 || !srv->closing) return;
    void (*done)(void *) = srv->done;
    void *ud = srv->done_ud;
    free(srv->rbuf);
    free(srv);
    if (done) done(ud);
}

static void on_conn_handle_closed(uv_handle_t *h) {
    conn *c = h->data;
    if (--c->handles > 0) return;
    http_server *srv = c->srv;
    free(c->in);
    free(c->out);
    free(c);
    // After a flood, glibc keeps the freed connections' memory in its
    // arenas; hand it back once most of them are gone.
    if (srv->high >= 256 && srv->n_conns <= srv->high / 8) {
        malloc_trim(0);
        srv->high = srv->n_conns;
    }
    server_handle_closed(srv);
}

// Our side is flushed and closed (FIN sent). Close the socket when the
// client has closed its side too, or when the grace period ends.
static void on_shutdown(uv_shutdown_t *sd, int status) {
    conn *c = sd->data;
    free(sd);
    if (status < 0 || c->peer_eof) http_conn_close(c);
}

// Graceful close: nothing more is written; the connection closes once the
// queued bytes are flushed and the client has closed its end, or after a
// grace period. Until then what the client sends is read and dropped: a
// client still sending a body we refused (413) would otherwise get a TCP
// reset that can destroy the response before it reads it.
void http_conn_shutdown(conn *c) {
    if (c->closing || c->shutting) return;
    http_conn_flush(c); // the corked bytes go before the FIN
    c->shutting = 1;
    http_conn_arm_timer(c);
    uv_shutdown_t *sd = malloc(sizeof *sd);
    if (sd) sd->data = c;
    if (!sd || uv_shutdown(sd, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
        free(sd);
        http_conn_doom(c);
    }
}

// A write failed inside some caller's call: make writes no-ops now and
// close on the next loop turn, so close callbacks never run inside
// http_res_* calls.
void http_conn_doom(conn *c) {
    if (c->closing) return;
    c->shutting = c->doomed = 1;
    http_conn_arm_timer(c);
}

// Closes the connection now. A pending response is detached (its close
// callback fires); a half-parsed request is dropped.
void http_conn_close(conn *c) {
    if (c->closing) return;
    c->closing = 1;
    http_server *srv = c->srv;
    if (c->prev) c->prev->next = c->next;
    else srv->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    srv->n_conns--;
    wait_leave(c);
    ip_release(c);
    if (c->parsing) {
        http_res_unref(c->parsing);
        c->parsing = NULL;
    }
    http_res *r = c->active;
    if (r) {
        c->active = NULL;
        r->c = NULL;
        r->closed = 1;
        if (r->on_close && !r->finished) r->on_close(r, r->on_close_ud);
        http_res_unref(r);
    }
    uv_read_stop((uv_stream_t *)&c->tcp);
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
}

// Reports overload (evictions, refusals) through on_reject at most once a
// second, so a flood does not become a flood of log lines.
static void report_overload(http_server *srv, const char *peer) {
    srv->overload_unlogged++;
    uint64_t now = uv_now(srv->loop);
    if (!srv->cfg.on_reject || (srv->overload_logged && now - srv->overload_logged < 1000)) return;
    char msg[160];
    snprintf(msg, sizeof msg, "connection limits reached: %llu connections evicted or refused (max-connections %d, per address %d)",
             (unsigned long long)srv->overload_unlogged, srv->cfg.max_connections, srv->cfg.max_connections_per_ip);
    srv->cfg.on_reject(srv->ud, 503, peer, msg);
    srv->overload_logged = now;
    srv->overload_unlogged = 0;
}

// The peer's "ip:port" into c->peer and its address (IPv4 mapped) into addr.
static void peer_name(conn *c, unsigned char addr[16]) {
    struct sockaddr_storage sa;
    int salen = sizeof sa;
    char ip[48] = "?";
    int port = 0;
    memset(addr, 0, 16);
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&sa, &salen) == 0) {
        if (sa.ss_family == AF_INET6) {
            struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&sa;
            uv_ip6_name(a6, ip, sizeof ip);
            port = ntohs(a6->sin6_port);
            memcpy(addr, &a6->sin6_addr, 16);
        } else {
            struct sockaddr_in *a4 = (struct sockaddr_in *)&sa;
            uv_ip4_name(a4, ip, sizeof ip);
            port = ntohs(a4->sin_port);
            addr[10] = addr[11] = 0xff;
            memcpy(addr + 12, &a4->sin_addr, 4);
        }
    }
    snprintf(c->peer, sizeof c->peer, "%s:%d", ip, port);
}

static void on_connection(uv_stream_t *l, int status) {
    http_server *srv = l->data;
    if (status < 0 || srv->closing) return;
    // At the global cap, the connection waiting longest for its headers
    // makes room. Always accept: a connection left in the backlog would
    // make libuv call us again at once (a busy loop), so a newcomer that
    // cannot be let in is answered 503 and closed instead.
    int full = srv->n_conns >= srv->cfg.max_connections;
    if (full && srv->wait_head) {
        srv->st.evicted++;
        report_overload(srv, srv->wait_head->peer);
        http_conn_close(srv->wait_head);
        full = 0;
    }
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
        http_conn_close(c);
        return;
    }
    srv->st.accepted++;
    if (srv->n_conns > srv->high) srv->high = srv->n_conns;
    uv_tcp_nodelay(&c->tcp, 1);
    unsigned char addr[16];
    peer_name(c, addr);
    http_ip *ip = full ? NULL : ip_get(srv, addr);
    if (!ip || ip->n >= srv->cfg.max_connections_per_ip) {
        srv->st.refused++;
        report_overload(srv, c->peer);
        http_conn_busy(c, full || !ip ? "the server has too many open connections; retry later"
                                      : "too many open connections from your address; retry later");
        return;
    }
    ip->n++;
    c->ip = ip;
    c->hdr_deadline = uv_now(srv->loop) + srv->cfg.header_timeout_ms;
    llhttp_init(&c->parser, HTTP_REQUEST, &srv->settings);
    c->parser.data = c;
    http_conn_arm_timer(c);
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
    if (!s->cfg.header_timeout_ms) s->cfg.header_timeout_ms = 10000;
    if (s->cfg.max_connections <= 0) {
        struct rlimit rl;
        rlim_t fds = getrlimit(RLIMIT_NOFILE, &rl) == 0 ? rl.rlim_cur : 1024;
        if (fds == RLIM_INFINITY || fds > 1000000) fds = 1000000;
        s->cfg.max_connections = fds > HTTP_FD_HEADROOM + 16 ? (int)(fds - HTTP_FD_HEADROOM) : 16;
    }
    if (s->cfg.max_connections_per_ip <= 0)
        s->cfg.max_connections_per_ip = s->cfg.max_connections / 4 > 0 ? s->cfg.max_connections / 4 : 1;
    if (!(s->rbuf = malloc(HTTP_READ_CHUNK))) {
        err_set(err, "out of memory");
        free(s);
        return NULL;
    }
    s->handler = handler;
    s->ud = ud;
    llhttp_settings_init(&s->settings);
    s->settings.on_message_begin = on_message_begin;
    s->settings.on_url = on_url;
    s->settings.on_header_field = on_header_field;
    s->settings.on_header_value = on_header_value;
    s->settings.on_headers_complete = on_headers_complete;
    s->settings.on_body = on_body;
    s->settings.on_chunk_header = on_chunk_header;
    s->settings.on_message_complete = on_message_complete;

    struct sockaddr_storage sa;
    int rc = strchr(s->host, ':') ? uv_ip6_addr(s->host, cfg->port, (struct sockaddr_in6 *)&sa)
                                  : uv_ip4_addr(s->host, cfg->port, (struct sockaddr_in *)&sa);
    if (rc != 0) {
        err_set(err, "listen address %s: %s", s->host, uv_strerror(rc));
        free(s->rbuf);
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

void http_server_stats(const http_server *s, http_stats *out) {
    *out = s->st;
    out->connections = s->n_conns;
    out->max_connections = s->cfg.max_connections;
    out->max_per_ip = s->cfg.max_connections_per_ip;
}

void http_server_close(http_server *s, void (*done)(void *ud), void *ud) {
    if (s->closing) return;
    s->closing = 1;
    s->done = done;
    s->done_ud = ud;
    uv_close((uv_handle_t *)&s->listener, on_listener_closed);
    while (s->conns) http_conn_close(s->conns);
}
