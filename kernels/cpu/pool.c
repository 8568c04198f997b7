#include "pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define POOL_MAX_THREADS 256

typedef struct scratch {
    void *p;
    size_t cap;
    char pad[64 - sizeof(void *) - sizeof(size_t)]; // one cache line per thread
} scratch;

// The pool. `run_mu` serialises callers; `mu` guards the job hand-off. A job
// is published by bumping `gen`; each worker that sees a new gen takes tasks
// from `next` until none are left, then decrements `busy`.
static struct {
    pthread_mutex_t run_mu, mu;
    pthread_cond_t wake, done;
    int started, stop;
    int nthreads;         // caller included
    pthread_t th[POOL_MAX_THREADS];
    uint64_t gen;
    uint64_t start_gen;   // gen when the workers were started
    int busy;             // workers still on the current job
    cpu_task_fn fn;
    void *ctx;
    int64_t n_tasks;
    atomic_int_fast64_t next;
    scratch scr[POOL_MAX_THREADS];
} pool = {
    .run_mu = PTHREAD_MUTEX_INITIALIZER,
    .mu = PTHREAD_MUTEX_INITIALIZER,
    .wake = PTHREAD_COND_INITIALIZER,
    .done = PTHREAD_COND_INITIALIZER,
};

static void work(int thread) {
    for (;;) {
        int64_t t = atomic_fetch_add_explicit(&pool.next, 1, memory_order_relaxed);
        if (t >= pool.n_tasks) break;
        pool.fn(pool.ctx, t, thread);
    }
}

static void *worker_main(void *arg) {
    int thread = (int)(intptr_t)arg;
    // Not pool.gen: a job may already have been published before this
    // thread first takes the lock.
    uint64_t seen = pool.start_gen;
    pthread_mutex_lock(&pool.mu);
    for (;;) {
        while (pool.gen == seen && !pool.stop) pthread_cond_wait(&pool.wake, &pool.mu);
        if (pool.stop) break;
        seen = pool.gen;
        pthread_mutex_unlock(&pool.mu);
        work(thread);
        pthread_mutex_lock(&pool.mu);
        if (--pool.busy == 0) pthread_cond_signal(&pool.done);
    }
    pthread_mutex_unlock(&pool.mu);
    return NULL;
}

static int default_threads(void) {
    const char *env = getenv("TESSERA_THREADS");
    long n = env ? strtol(env, NULL, 10) : 0;
    if (n <= 0) n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n <= 0) n = 1;
    return n > POOL_MAX_THREADS ? POOL_MAX_THREADS : (int)n;
}

// Starts n - 1 workers (the caller is the n-th). With run_mu held.
static void start(int n) {
    pool.stop = 0;
    pool.nthreads = 1;
    pool.start_gen = pool.gen;
    for (int i = 1; i < n; i++) {
        if (pthread_create(&pool.th[i], NULL, worker_main, (void *)(intptr_t)i) != 0) break;
        pool.nthreads++;
    }
    pool.started = 1;
}

static void stop_workers(void) {
    if (!pool.started) return;
    pthread_mutex_lock(&pool.mu);
    pool.stop = 1;
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.mu);
    for (int i = 1; i < pool.nthreads; i++) pthread_join(pool.th[i], NULL);
    pool.started = 0;
}

void cpu_pool_run(int64_t n_tasks, cpu_task_fn fn, void *ctx) {
    if (n_tasks <= 0) return;
    pthread_mutex_lock(&pool.run_mu);
    if (!pool.started) start(default_threads());
    pool.fn = fn;
    pool.ctx = ctx;
    pool.n_tasks = n_tasks;
    atomic_store(&pool.next, 0);
    if (pool.nthreads == 1 || n_tasks == 1) {
        work(0);
        pthread_mutex_unlock(&pool.run_mu);
        return;
    }
    pthread_mutex_lock(&pool.mu);
    pool.busy = pool.nthreads - 1;
    pool.gen++;
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.mu);
    work(0);
    pthread_mutex_lock(&pool.mu);
    while (pool.busy > 0) pthread_cond_wait(&pool.done, &pool.mu);
    pthread_mutex_unlock(&pool.mu);
    pthread_mutex_unlock(&pool.run_mu);
}

int cpu_pool_threads(void) {
    pthread_mutex_lock(&pool.run_mu);
    if (!pool.started) start(default_threads());
    int n = pool.nthreads;
    pthread_mutex_unlock(&pool.run_mu);
    return n;
}

void cpu_pool_set_threads(int n) {
    pthread_mutex_lock(&pool.run_mu);
    stop_workers();
    start(n <= 0 ? default_threads() : n > POOL_MAX_THREADS ? POOL_MAX_THREADS : n);
    pthread_mutex_unlock(&pool.run_mu);
}

void *cpu_pool_scratch(int thread, size_t bytes) {
    scratch *s = &pool.scr[thread];
    if (s->cap >= bytes) return s->p;
    size_t cap = (bytes + 63) / 64 * 64;
    void *p = aligned_alloc(64, cap);
    if (!p) {
        // Ops cannot fail; a few hundred KiB of scratch missing is fatal.
        fprintf(stderr, "fatal cpu_pool: out of memory for %zu bytes of scratch\n", cap);
        abort();
    }
    free(s->p);
    s->p = p;
    s->cap = cap;
    return p;
}

void cpu_pool_shutdown(void) {
    pthread_mutex_lock(&pool.run_mu);
    stop_workers();
    for (int i = 0; i < POOL_MAX_THREADS; i++) {
        free(pool.scr[i].p);
        pool.scr[i].p = NULL;
        pool.scr[i].cap = 0;
    }
    pthread_mutex_unlock(&pool.run_mu);
}
