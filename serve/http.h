// http: an HTTP/1.1 server on a libuv loop, parsing with llhttp.
//
// What it does for its caller:
//   - keep-alive and pipelining: requests on one connection are handled one
//     at a time, in order; bytes of the next request wait (unparsed) until
//     the current response is finished, so responses go out in request order;
//   - limits: the request line + headers (max_header_bytes, else 431) and the
//     body (max_body_bytes, else 413, checked against Content-Length before
//     the body is read, and against each chunk's announced size as a
//     chunked body arrives); Expect:
//     100-continue is answered; a request must arrive whole within
//     request_timeout_ms of its first byte (else 408); a keep-alive
//     connection idle for idle_timeout_ms is closed. These error bodies are
//     OpenAI-style JSON: {"error":{"message","type","param","code"}}, and the
//     connection is closed after them;
//   - HEAD: the handler answers as for GET; only the headers go out;
//   - answers ready together (pipelined requests answered at once) are
//     sent in one write;
//   - connection limits: at most max_connections open (fds beyond that are
//     kept for the rest of the process) and max_connections_per_ip from one
//     client address; a connection must send a complete header block within
//     header_timeout_ms of its start (else 408, or a silent close if it sent
//     nothing). When the global cap is reached, the connection that has been
//     waiting longest for a complete header block (a half-sent request or an
//     idle keep-alive) is closed to make room; when none waits, or one
//     address is over its cap, the newcomer gets 503 with Retry-After and is
//     closed. Per-connection buffers are freed when drained, and after a
//     flood of connections ends the freed heap is handed back (malloc_trim);
//   - bodies with Content-Length or chunked transfer encoding (llhttp
//     decodes), handed over whole and NUL-terminated;
//   - responses with Content-Length, or Server-Sent Events over chunked
//     transfer encoding (`data: ...\n\n` frames);
//   - disconnect detection: a client that closes (or resets) its end while
//     its response is still pending fires the response's close callback, so
//     the caller can cancel the work behind it.
//
// Threading: everything here runs on the loop thread, callbacks included.
// A response may be finished later than its handler returns (from a work
// callback, or after another thread has handed results to the loop with
// uv_async_send), but always on the loop thread.
//
// Response lifetime: the handler is given an http_res it must finish
// exactly once, with http_res_send or http_res_sse_end, now or later. Until
// then the http_res stays valid even if its connection closes: writes to a
// closed response are no-ops that return -1, and http_res_closed says so.
#ifndef TESSERA_HTTP_H
#define TESSERA_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "err.h"

typedef struct http_server http_server;
typedef struct http_res http_res;

typedef struct http_header {
    char *name;  // lower-cased
    char *value; // leading/trailing spaces trimmed
} http_header;

// One parsed request, owned by the server; valid until the response is
// finished (copy what must live longer).
typedef struct http_req {
    const char *method;  // "GET", "POST", ...
    char *target;        // the request target as sent: "/v1/models?x=1"
    char *path;          // the target up to '?', not percent-decoded
    char *query;         // after '?', or "" (not decoded)
    http_header *headers;
    int n_headers;
    char *body;          // NUL-terminated (the NUL is not counted); "" when none
    size_t body_len;
    int http_minor;      // 1.x
    uint64_t conn_id;    // the connection's number (for logs)
    char peer[64];       // "127.0.0.1:53412"
} http_req;

// The request handler. Called on the loop thread once per request.
typedef void (*http_handler)(const http_req *req, http_res *res, void *ud);

typedef struct http_config {
    const char *host;           // "127.0.0.1"; IPv6 addresses allowed ("::1")
    int port;                   // 0 = any free port (see http_server_port)
    size_t max_body_bytes;      // 0 = 8 MiB
    size_t max_header_bytes;    // request line + headers; 0 = 16 KiB
    uint64_t idle_timeout_ms;   // keep-alive idle; 0 = 60 s
    uint64_t request_timeout_ms;// first byte -> request complete; 0 = 30 s
    size_t max_write_queue;     // unsent response bytes before the client is dropped; 0 = 16 MiB
    int backlog;                // listen backlog; 0 = 511
    int max_connections;        // open at once; 0 = RLIMIT_NOFILE - HTTP_FD_HEADROOM (at least 16)
    int max_connections_per_ip; // from one client address; 0 = max_connections / 4 (at least 1)
    uint64_t header_timeout_ms; // connection start (or a request's first byte) -> headers complete; 0 = 10 s
    // Optional: told about every request the module answers itself (400
    // malformed, 408, 413, 431) so the caller can log it. peer "ip:port".
    void (*on_reject)(void *ud, int status, const char *peer, const char *reason);
    // Optional: the body limit of one request (method, target as sent), in
    // place of max_body_bytes; 0 keeps max_body_bytes. Asked once the
    // headers are in (an upload endpoint may take more than JSON ones).
    size_t (*body_limit)(void *ud, const char *method, const char *target);
} http_config;

// Binds and starts listening on loop. The config's strings are copied.
// Returns a new server (close with http_server_close) or NULL + err naming
// the address and the libuv error.
http_server *http_server_start(uv_loop_t *loop, const http_config *cfg, http_handler handler, void *ud,
                               err_t *err);

// The port actually bound (useful with port 0).
int http_server_port(const http_server *s);

// Number of open connections.
int http_server_connections(const http_server *s);

// Descriptors the default max_connections leaves to the rest of the
// process: the listener, the loop's own, the log, the adapters watcher and
// its scans, adapter and model files being loaded, train children's pipes.
#define HTTP_FD_HEADROOM 256

// What the connection limits did so far (for metrics and tests).
typedef struct http_stats {
    int connections;        // open now
    int max_connections;    // the caps in force (defaults resolved)
    int max_per_ip;
    uint64_t accepted;      // connections accepted (refused ones included)
    uint64_t evicted;       // closed at the global cap while waiting for headers
    uint64_t refused;       // answered 503 at a cap
    uint64_t header_timeouts;
    uint64_t writes;        // socket writes queued (pipelined answers ready together share one)
} http_stats;
void http_server_stats(const http_server *s, http_stats *out);

// Stops accepting and closes every connection: idle ones now, busy ones (a
// response pending) at once too, firing their close callbacks so the caller
// can cancel. done (may be NULL) is called once every handle is closed;
// after it the server is freed. Responses not yet finished stay valid until
// their owner finishes them (as for any closed connection).
void http_server_close(http_server *s, void (*done)(void *ud), void *ud);

// ---- responses ------------------------------------------------------------

// Adds a response header (copied) before http_res_send / http_res_sse_begin.
// Content-Type, Content-Length, Transfer-Encoding, Connection and Date are
// written by this module. Returns 0, or -1 if headers were already sent or
// the name or value holds CR/LF.
int http_res_header(http_res *res, const char *name, const char *value);

// Sends a whole response with Content-Length and finishes res (it must not
// be used afterwards). content_type NULL means application/json. On a closed
// connection it only finishes res.
void http_res_send(http_res *res, int status, const char *content_type, const char *body, size_t len);

// Starts a 200 Server-Sent Events response (text/event-stream, chunked;
// HTTP/1.0 clients get the stream unchunked and the connection closed after).
// Returns 0, or -1 when the connection is closed.
int http_res_sse_begin(http_res *res);

// Writes one event: "data: " + data + "\n\n" (a newline inside data starts a
// new "data: " line, as SSE requires). Returns 0, or -1 when the connection
// is closed (then stop producing and finish res).
int http_res_sse_data(http_res *res, const char *data, size_t len);

// Ends the event stream and finishes res (it must not be used afterwards).
void http_res_sse_end(http_res *res);

// 1 if the connection behind res is gone (or going): writes are no-ops.
int http_res_closed(const http_res *res);

// Called at most once, on the loop thread, if the connection closes before
// res is finished (client disconnect, timeout, server shutdown). res is
// still valid inside and after the callback until it is finished.
typedef void (*http_close_cb)(http_res *res, void *ud);
void http_res_on_close(http_res *res, http_close_cb cb, void *ud);

// Reason phrase of a status code ("Not Found"), or "Unknown".
const char *http_status_text(int status);

// Decodes %XX escapes of s in place (a malformed escape is kept as is).
// Returns s.
char *http_url_decode(char *s);

// The value of header name (lower-case) or NULL. Borrowed from req.
const char *http_req_header(const http_req *req, const char *name);

#endif
