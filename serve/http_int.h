// http_int: the types http.c and http_res.c share (private to serve's
// http*.c). http.h is the public side and says what the server does.
//
//   http.c      connections: accept, read, the llhttp callbacks, the parse
//               loop, timers, close; the server (listen, close)
//   http_res.c  responses: their lifetime, writing to the socket, the
//               public http_res_* calls, the connection-level error answers
//
// Everything here is touched on the loop thread only.
#ifndef TESSERA_HTTP_INT_H
#define TESSERA_HTTP_INT_H

#include <llhttp.h>
#include <stddef.h>
#include <stdint.h>

#include "http.h"

typedef struct conn conn;

// Open connections of one client address (a bucket chain of the server's
// table; freed when the count drops to 0).
typedef struct http_ip {
    unsigned char addr[16]; // IPv6, or IPv4-mapped
    int n;
    struct http_ip *next;
} http_ip;

#define HTTP_IP_BUCKETS 4096
#define HTTP_READ_CHUNK (64 * 1024)

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
    // Connections waiting for a complete header block (fresh, half-sent or
    // idle keep-alive), oldest first: the ones closed at the global cap.
    conn *wait_head, *wait_tail;
    http_ip *ips[HTTP_IP_BUCKETS];
    char *rbuf;        // HTTP_READ_CHUNK bytes every read lands in first
    int high;          // most connections open since the last heap trim
    uint64_t overload_logged; // uv_now of the last overload report
    uint64_t overload_unlogged; // evictions + refusals since
    http_stats st;
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
    uint64_t hdr_deadline; // header timeout: headers must be complete by then (0 = none)
    int in_body;        // headers complete, body still arriving
    int waiting;        // on the server's wait list
    conn *wait_prev, *wait_next;
    http_ip *ip;        // this address's count (NULL until accepted under the caps)
    char *out;          // bytes written while corked (parse loop), flushed as one write
    size_t out_len, out_cap;
    int corked;
    int processing;
    int reading, read_paused;
    int shutting;       // graceful close: no more writes; close once flushed and the peer is done
    int peer_eof;       // the client closed its end
    int doomed;         // a write failed: close on the next loop turn
    int closing;
    uint64_t id;
    char peer[64];
};

// ---- connections (http.c) ----------------------------------------------------

// Closes the connection now. A pending response is detached (its close
// callback fires); a half-parsed request is dropped.
void http_conn_close(conn *c);

// Graceful close: nothing more is written; the connection closes once the
// queued bytes are flushed and the client has closed its end, or after a
// grace period.
void http_conn_shutdown(conn *c);

// A write failed inside some caller's call: writes become no-ops now and the
// connection closes on the next loop turn.
void http_conn_doom(conn *c);

// Picks the connection's next deadline from its state, and makes sure it
// reads when it should.
void http_conn_arm_timer(conn *c);

// ---- responses (http_res.c) ----------------------------------------------------

// A new response (and its request, empty) for connection c, holding the
// connection's reference; NULL when out of memory.
http_res *http_res_new(conn *c);

// Drops one reference; the last frees the response and its request.
void http_res_unref(http_res *r);

// Queues bytes (copied) for the connection: a, then b, then z (b and z may
// be empty). Returns 0, or -1 if the connection is going.
int http_conn_write(conn *c, const char *a, size_t na, const char *b, size_t nb, const char *z, size_t nz);

// Answers a request the parser refused (or that timed out) with an
// OpenAI-style JSON error, and closes.
void http_conn_reject(conn *c, int status, const char *msg);

// Answers 503 with Retry-After to a connection over a cap, and closes it
// at once (its descriptor is what the cap protects).
void http_conn_busy(conn *c, const char *msg);

// Sends what was written while corked as one write.
void http_conn_flush(conn *c);

#endif
