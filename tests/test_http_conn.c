// test_http_conn: serve/http.c's connection limits and wire behaviour,
// driven over loopback sockets against a server on a loop in this thread:
// answers to pipelined requests ready together leave in one write; HEAD
// gets headers and no body; a chunk announcing more than the body limit is
// refused at once (413); the header timeout (408, or a silent close for a
// connection that sent nothing); the global cap closes the connection that
// has waited longest for its headers, and answers 503 + Retry-After when
// every connection is busy; the per-address cap refuses one address and
// not another; buffers are freed (ASan's leak check at exit).
#include "../serve/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"

static uv_loop_t loop;
static http_server *srv;
static http_res *held[4]; // "/slow" requests, answered when the test says
static int n_held;

static void handler(const http_req *q, http_res *res, void *ud) {
    if (strcmp(q->path, "/slow") == 0 && n_held < 4) {
        held[n_held++] = res;
        return;
    }
    http_res_send(res, 200, "text/plain", "ok", 2);
}

static void start(int max_conns, int per_ip, uint64_t header_ms) {
    http_config cfg = {.host = "127.0.0.1", .max_body_bytes = 1024, .max_connections = max_conns,
                       .max_connections_per_ip = per_ip, .header_timeout_ms = header_ms};
    err_t err = {{0}};
    srv = http_server_start(&loop, &cfg, handler, NULL, &err);
    CHECK(srv != NULL, "%s", err.msg);
}

static void on_closed(void *ud) { *(int *)ud = 1; }

static void stop(void) {
    for (int i = 0; i < n_held; i++) http_res_send(held[i], 200, NULL, "{}", 2);
    n_held = 0;
    int done = 0;
    http_server_close(srv, on_closed, &done);
    while (!done) uv_run(&loop, UV_RUN_NOWAIT);
    srv = NULL;
}

// Runs the loop for about ms milliseconds.
static void pump(int ms) {
    for (int i = 0; i < ms; i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
}

// A client socket to the server, from source address src (NULL: any).
static int dial(const char *src) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    if (src) {
        inet_pton(AF_INET, src, &a.sin_addr);
        CHECK(bind(fd, (struct sockaddr *)&a, sizeof a) == 0, "bind %s: %s", src, strerror(errno));
    }
    a.sin_port = htons((uint16_t)http_server_port(srv));
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    CHECK(connect(fd, (struct sockaddr *)&a, sizeof a) == 0, "connect: %s", strerror(errno));
    fcntl(fd, F_SETFL, O_NONBLOCK);
    pump(20); // accepted
    return fd;
}

static void say(int fd, const char *s) { CHECK(send(fd, s, strlen(s), 0) == (ssize_t)strlen(s)); }

// Reads into buf (NUL-terminated) while pumping the loop, until the peer
// closes, want is found, or ms pass. Returns the byte count; *eof set when
// the peer closed (or reset).
static size_t hear(int fd, char *buf, size_t cap, const char *want, int ms, int *eof) {
    size_t n = 0;
    *eof = 0;
    buf[0] = '\0';
    for (int i = 0; i < ms && !*eof; i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        ssize_t k = recv(fd, buf + n, cap - 1 - n, 0);
        if (k > 0) {
            n += (size_t)k;
            buf[n] = '\0';
            if (want && strstr(buf, want)) break;
            continue;
        }
        if (k == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) *eof = 1;
        else usleep(1000);
    }
    return n;
}

static int count(const char *s, const char *sub) {
    int n = 0;
    for (const char *p = s; (p = strstr(p, sub)); p++) n++;
    return n;
}

static void test_pipelined_answers_share_a_write(void) {
    start(0, 0, 0);
    int fd = dial(NULL);
    http_stats before, after;
    http_server_stats(srv, &before);
    say(fd, "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\nGET /c HTTP/1.1\r\nHost: x\r\n\r\n");
    char buf[4096];
    int eof;
    hear(fd, buf, sizeof buf, "/c-never", 300, &eof); // all that comes in 300 ms
    CHECK(count(buf, "HTTP/1.1 200 OK") == 3, "got %s", buf);
    http_server_stats(srv, &after);
    CHECK(after.writes - before.writes == 1, "three answers ready together took %llu writes",
          (unsigned long long)(after.writes - before.writes));
    close(fd);
    stop();
}

static void test_head_has_no_body(void) {
    start(0, 0, 0);
    int fd = dial(NULL);
    say(fd, "HEAD /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    char buf[4096];
    int eof;
    size_t n = hear(fd, buf, sizeof buf, NULL, 2000, &eof);
    CHECK(eof && strstr(buf, "HTTP/1.1 200 OK"), "got %s", buf);
    CHECK(strstr(buf, "Content-Length: 2\r\n"), "HEAD keeps GET's Content-Length: %s", buf);
    const char *end = strstr(buf, "\r\n\r\n");
    CHECK(end && (size_t)(end + 4 - buf) == n, "bytes after the HEAD response's headers: %s", buf);
    close(fd);
    stop();
}

static void test_huge_chunk_is_413_at_once(void) {
    start(0, 0, 0);
    int fd = dial(NULL);
    say(fd, "POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nabc");
    char buf[4096];
    int eof;
    hear(fd, buf, sizeof buf, "\r\n\r\n", 1000, &eof);
    CHECK(strstr(buf, "HTTP/1.1 413 Payload Too Large"), "within 1 s: got '%s'", buf);
    close(fd);
    // A chunk that fits, then one that would pass the limit (1024) in total.
    fd = dial(NULL);
    say(fd, "POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n200\r\n");
    char chunk[513];
    memset(chunk, 'a', 512);
    chunk[512] = '\0';
    say(fd, chunk);
    say(fd, "\r\n201\r\n");
    hear(fd, buf, sizeof buf, "\r\n\r\n", 1000, &eof);
    CHECK(strstr(buf, "HTTP/1.1 413 Payload Too Large"), "second chunk: got '%s'", buf);
    close(fd);
    stop();
}

static void test_header_timeout(void) {
    start(0, 0, 300);
    int half = dial(NULL), mute = dial(NULL), whole = dial(NULL);
    say(half, "GET / HTTP/1.1\r\nHo");
    say(whole, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    char buf[4096];
    int eof;
    hear(half, buf, sizeof buf, NULL, 1500, &eof);
    CHECK(eof && strstr(buf, "HTTP/1.1 408") && strstr(buf, "headers not received in time"),
          "a half-sent header block after 300 ms: '%s'", buf);
    size_t n = hear(mute, buf, sizeof buf, NULL, 500, &eof);
    CHECK(eof && n == 0, "a silent connection is closed without an answer: '%s'", buf);
    n = hear(whole, buf, sizeof buf, NULL, 300, &eof);
    CHECK(!eof && strstr(buf, "200 OK"), "a connection that sent its request stays (keep-alive): '%s'", buf);
    http_stats st;
    http_server_stats(srv, &st);
    CHECK(st.header_timeouts == 2, "header timeouts %llu", (unsigned long long)st.header_timeouts);
    close(half);
    close(mute);
    close(whole);
    stop();
}

static void test_cap_closes_the_longest_waiting(void) {
    start(3, 100, 0);
    int busy = dial(NULL);
    say(busy, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n");
    pump(20);
    int old = dial(NULL), young = dial(NULL);
    say(old, "GET / HTTP/1.1\r\nHo"); // half-sent: waiting for its headers
    pump(20);
    int late = dial(NULL); // the cap (3) is reached: the oldest waiting one goes
    char buf[4096];
    int eof;
    size_t n = hear(old, buf, sizeof buf, NULL, 500, &eof);
    CHECK(eof && n == 0, "the longest-waiting connection is closed: '%s'", buf);
    say(late, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    hear(late, buf, sizeof buf, "\r\n\r\nok", 1000, &eof);
    CHECK(strstr(buf, "200 OK"), "the newcomer is served: '%s'", buf);
    http_stats st;
    http_server_stats(srv, &st);
    CHECK(st.evicted == 1 && st.connections == 3, "evicted %llu, open %d", (unsigned long long)st.evicted,
          st.connections);
    // Now every connection is busy: a newcomer is answered 503 and closed.
    say(young, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n");
    say(late, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n");
    pump(20);
    int over = dial(NULL);
    hear(over, buf, sizeof buf, NULL, 1000, &eof);
    CHECK(eof && strstr(buf, "HTTP/1.1 503") && strstr(buf, "Retry-After: 1\r\n"), "all busy: '%s'", buf);
    http_server_stats(srv, &st);
    CHECK(st.refused == 1 && st.evicted == 1, "refused %llu", (unsigned long long)st.refused);
    n = hear(busy, buf, sizeof buf, NULL, 50, &eof);
    CHECK(!eof && n == 0, "a request in flight is never dropped for a newcomer");
    close(busy);
    close(old);
    close(young);
    close(late);
    close(over);
    stop();
}

static void test_per_address_cap(void) {
    start(100, 2, 0);
    int a = dial(NULL), b = dial(NULL), c = dial(NULL);
    char buf[4096];
    int eof;
    hear(c, buf, sizeof buf, NULL, 1000, &eof);
    CHECK(eof && strstr(buf, "HTTP/1.1 503") && strstr(buf, "from your address"), "third from 127.0.0.1: '%s'",
          buf);
    int d = dial("127.0.0.2"); // another address still gets in
    say(d, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    hear(d, buf, sizeof buf, "\r\n\r\nok", 1000, &eof);
    CHECK(strstr(buf, "200 OK"), "127.0.0.2: '%s'", buf);
    close(a);
    pump(50); // a's place is free again
    int e = dial(NULL);
    say(e, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    hear(e, buf, sizeof buf, "\r\n\r\nok", 1000, &eof);
    CHECK(strstr(buf, "200 OK"), "after one left: '%s'", buf);
    close(b);
    close(c);
    close(d);
    close(e);
    stop();
}

int main(void) {
    uv_loop_init(&loop);
    test_pipelined_answers_share_a_write();
    test_head_has_no_body();
    test_huge_chunk_is_413_at_once();
    test_header_timeout();
    test_cap_closes_the_longest_waiting();
    test_per_address_cap();
    uv_loop_close(&loop);
    return check_finish("test_http_conn");
}
