// bench/tokenizer: encode throughput of core/tokenizer.c.
//
//   build/bench/tokenizer TOKENIZER CORPUS [THREADS]
//
// CORPUS is the file tests/tokenizer/bench.js writes (records of a 4-byte
// little-endian length and UTF-8 bytes); each record is one tok_encode call
// with special tokens parsed, as a server encodes prompts. Prints load time
// and MB/s of input text, single-threaded and, with THREADS > 1, with that
// many threads sharing the one tok. bench/tokenizer.sh runs it beside the
// npm tokenizer.
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tokenizer.h"
#include "util.h"

typedef struct rec {
    const char *p;
    size_t n;
} rec;

typedef struct job {
    const tok *t;
    const rec *r;
    size_t nr;
    size_t ids;
    int failed;
} job;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void *encode_all(void *arg) {
    job *j = arg;
    for (size_t i = 0; i < j->nr; i++) {
        size_t n;
        err_t err;
        int32_t *ids = tok_encode(j->t, j->r[i].p, j->r[i].n, 1, &n, &err);
        if (!ids) {
            fprintf(stderr, "bench: %s\n", err.msg);
            j->failed = 1;
            return NULL;
        }
        j->ids += n;
        free(ids);
    }
    return NULL;
}

// Every thread encodes the whole corpus; returns MB/s over all threads.
static double run(const tok *t, const rec *r, size_t nr, size_t bytes, int threads, size_t *ids) {
    pthread_t th[64];
    job jobs[64];
    double t0 = now();
    for (int i = 0; i < threads; i++) {
        jobs[i] = (job){t, r, nr, 0, 0};
        pthread_create(&th[i], NULL, encode_all, &jobs[i]);
    }
    int failed = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        failed |= jobs[i].failed;
    }
    double s = now() - t0;
    *ids = jobs[0].ids;
    return failed ? -1 : (double)bytes * threads / 1e6 / s;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s TOKENIZER CORPUS [THREADS]\n", argv[0]);
        return 2;
    }
    int threads = argc > 3 ? atoi(argv[3]) : 1;
    if (threads < 1 || threads > 64) threads = 1;
    err_t err;
    size_t len;
    char *data = util_read_file(argv[2], &len, &err);
    if (!data) {
        fprintf(stderr, "bench: %s\n", err.msg);
        return 1;
    }
    size_t nr = 0, cap = 1024, bytes = 0;
    rec *r = malloc(cap * sizeof *r);
    for (size_t i = 0; i + 4 <= len;) {
        const unsigned char *u = (const unsigned char *)data + i;
        size_t n = (size_t)u[0] | (size_t)u[1] << 8 | (size_t)u[2] << 16 | (size_t)u[3] << 24;
        if (i + 4 + n > len) break;
        if (nr == cap) r = realloc(r, (cap *= 2) * sizeof *r);
        r[nr++] = (rec){data + i + 4, n};
        bytes += n;
        i += 4 + n;
    }
    double t0 = now();
    tok *t = tok_open(argv[1], &err);
    if (!t) {
        fprintf(stderr, "bench: %s\n", err.msg);
        return 1;
    }
    double load_s = now() - t0;
    size_t ids;
    run(t, r, nr < 200 ? nr : 200, bytes, 1, &ids);  // warm the caches, as the JS side warms its JIT
    double mbs = run(t, r, nr, bytes, 1, &ids);
    printf("tessera %s: load %.3f s, %.2f MB, %zu ids, %.2f MB/s\n", argv[1], load_s, bytes / 1e6, ids, mbs);
    if (threads > 1) {
        double mt = run(t, r, nr, bytes, threads, &ids);
        printf("tessera %s: %d threads, %.2f MB/s in all\n", argv[1], threads, mt);
    }
    tok_free(t);
    free(r);
    free(data);
    return mbs < 0;
}
