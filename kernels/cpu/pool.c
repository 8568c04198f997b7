#include "pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define POOL_MAX_THREADS 256

// How long an idle thread polls for the next job before it sleeps: decode
// issues a few hundred short runs per step (one per op), and waking a
// sleeping thread costs tens of microseconds in a VM, as much as a small
// matmul. Polling bridges the gaps between ops; an idle pool still sleeps.
// The polling yields the CPU, so a machine with more runnable threads than
// cores loses little to it.
#define POOL_SPIN_NS 100000

// The claim word: the job's generation in the high bits, the next task
// index in the low ones. A task is claimed by a compare-and-swap that also
// checks the generation, so a thread that wakes late can never take a task
// of a job that has been replaced.
#define IDX_BITS 40
#define IDX_MASK ((UINT64_C(1) << IDX_BITS) - 1)

typedef struct scratch {
    void *p;
    size_t cap;
    char pad[64 - sizeof(void *) - sizeof(size_t)]; // one cache line per thread
} scratch;

// A job. Two slots, by generation parity: the caller fills the slot of
// generation g + 1 while no thread can claim from it any more (job g - 1 is
// done), then publishes g + 1 in the claim word. Atomic (relaxed) because
// a late thread may read a slot while it is refilled; it then fails to
// claim and ignores what it read.
typedef struct job {
    _Atomic(cpu_task_fn) fn;
    _Atomic(void *) ctx;
    atomic_int_fast64_t n_tasks;
    atomic_int_fast64_t done; // tasks finished
} job;

// The pool. `run_mu` serialises callers. Threads that find no job poll the
// claim word for POOL_SPIN_NS, then sleep on `wake` under `mu`; the caller
// waits for the job's `done` count the same way on `done_cv`. `sleepers`
// and `caller_waits` (guarded by mu) tell the other side to signal.
static struct {
    pthread_mutex_t run_mu, mu;
    pthread_cond_t wake, done_cv;
    int started;
    atomic_int stop;
    int nthreads;         // caller included
    pthread_t th[POOL_MAX_THREADS];
    atomic_uint_fast64_t claim;
    uint64_t gen;         // the caller's count of jobs published
    job jobs[2];
    int sleepers;         // workers blocked on wake
    int caller_waits;     // the caller is blocked on done_cv
    scratch scr[POOL_MAX_THREADS];
} pool = {
    .run_mu = PTHREAD_MUTEX_INITIALIZER,
    .mu = PTHREAD_MUTEX_INITIALIZER,
    .wake = PTHREAD_COND_INITIALIZER,
    .done_cv = PTHREAD_COND_INITIALIZER,
};

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

// Polls done(arg) until it holds or POOL_SPIN_NS pass: a few hundred pause
// instructions first, then sched_yield between polls (when another thread
// waits for this CPU, it runs). Returns done(arg).
static int poll_until(int (*done)(uint64_t), uint64_t arg) {
    int64_t t0 = 0;
    for (int i = 0;; i++) {
        if (done(arg)) return 1;
        if (i < 256) {
            cpu_relax();
            continue;
        }
        int64_t t = now_ns();
        if (!t0) t0 = t;
        else if (t - t0 > POOL_SPIN_NS) return 0;
        sched_yield();
    }
}

static int new_job_or_stop(uint64_t seen) {
    return (atomic_load_explicit(&pool.claim, memory_order_acquire) >> IDX_BITS) != seen ||
           atomic_load_explicit(&pool.stop, memory_order_acquire);
}

static int job_done(uint64_t g) {
    const job *j = &pool.jobs[g & 1];
    return atomic_load_explicit(&j->done, memory_order_acquire) ==
           atomic_load_explicit(&j->n_tasks, memory_order_relaxed);
}

// Runs tasks of job generation g until none is left to claim. Returns
// when this thread can claim no more (others may still be running theirs).
static void work(uint64_t g, int thread) {
    job *j = &pool.jobs[g & 1];
    uint64_t v = atomic_load_explicit(&pool.claim, memory_order_acquire);
    for (;;) {
        if (v >> IDX_BITS != g) return; // replaced by a later job
        int64_t n = atomic_load_explicit(&j->n_tasks, memory_order_relaxed);
        int64_t t = (int64_t)(v & IDX_MASK);
        if (t >= n) return;
        if (!atomic_compare_exchange_weak_explicit(&pool.claim, &v, v + 1, memory_order_acq_rel,
                                                   memory_order_acquire))
            continue; // v reloaded
        cpu_task_fn fn = atomic_load_explicit(&j->fn, memory_order_relaxed);
        fn(atomic_load_explicit(&j->ctx, memory_order_relaxed), t, thread);
        if (atomic_fetch_add_explicit(&j->done, 1, memory_order_acq_rel) + 1 == n) {
            pthread_mutex_lock(&pool.mu);
            if (pool.caller_waits) pthread_cond_signal(&pool.done_cv);
            pthread_mutex_unlock(&pool.mu);
        }
        v = atomic_load_explicit(&pool.claim, memory_order_acquire);
    }
}

static void *worker_main(void *arg) {
    int thread = (int)(intptr_t)arg;
    uint64_t seen = atomic_load_explicit(&pool.claim, memory_order_acquire) >> IDX_BITS;
    for (;;) {
        if (!poll_until(new_job_or_stop, seen)) {
            pthread_mutex_lock(&pool.mu);
            pool.sleepers++;
            while (!new_job_or_stop(seen)) pthread_cond_wait(&pool.wake, &pool.mu);
            pool.sleepers--;
            pthread_mutex_unlock(&pool.mu);
        }
        if (atomic_load_explicit(&pool.stop, memory_order_acquire)) break;
        seen = atomic_load_explicit(&pool.claim, memory_order_acquire) >> IDX_BITS;
        work(seen, thread);
    }
    return NULL;
}

static int default_threads(void) {
    const char *env = getenv("TESSERA_THREADS");
    long n = env ? strtol(env, NULL, 10) : 0;
    if (n <= 0) n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n <= 0) n = 1;
    return n > POOL_MAX_THREADS ? POOL_MAX_THREADS : (int)n;
}

// Pins worker i to the i-th CPU this process may run on (of the set it
// started with), so a worker keeps its core's caches between the ops of a
// step instead of being moved by the scheduler; the caller (thread 0) is
// left alone, since it is the application's own thread. Best effort: a
// failure leaves the thread unpinned. Only with $TESSERA_PIN=1: on this
// project's shared 2-vCPU machine pinned workers were slower (a pinned
// worker cannot leave a core another process holds; bench/RESULTS.md).
static void pin(pthread_t th, int i) {
#ifdef __linux__
    const char *env = getenv("TESSERA_PIN");
    if (!env || strcmp(env, "1") != 0) return;
    cpu_set_t allowed, one;
    if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) return;
    int n = CPU_COUNT(&allowed), k = i % (n > 0 ? n : 1);
    for (int c = 0; c < CPU_SETSIZE; c++) {
        if (!CPU_ISSET(c, &allowed) || k-- > 0) continue;
        CPU_ZERO(&one);
        CPU_SET(c, &one);
        pthread_setaffinity_np(th, sizeof one, &one);
        return;
    }
#else
    (void)th, (void)i;
#endif
}

// Starts n - 1 workers (the caller is the n-th). With run_mu held.
static void start(int n) {
    atomic_store(&pool.stop, 0);
    pool.nthreads = 1;
    for (int i = 1; i < n; i++) {
        if (pthread_create(&pool.th[i], NULL, worker_main, (void *)(intptr_t)i) != 0) break;
        pin(pool.th[i], i);
        pool.nthreads++;
    }
    pool.started = 1;
}

static void stop_workers(void) {
    if (!pool.started) return;
    pthread_mutex_lock(&pool.mu);
    atomic_store(&pool.stop, 1);
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.mu);
    for (int i = 1; i < pool.nthreads; i++) pthread_join(pool.th[i], NULL);
    pool.started = 0;
}

// Publishes the job, takes tasks like any worker, then waits until every
// task is done. A worker that has not woken by then simply finds the job
// finished: the caller never waits for a thread that has no task.
void cpu_pool_run(int64_t n_tasks, cpu_task_fn fn, void *ctx) {
    if (n_tasks <= 0) return;
    pthread_mutex_lock(&pool.run_mu);
    if (!pool.started) start(default_threads());
    uint64_t g = ++pool.gen & (UINT64_MAX >> IDX_BITS);
    job *j = &pool.jobs[g & 1];
    atomic_store_explicit(&j->fn, fn, memory_order_relaxed);
    atomic_store_explicit(&j->ctx, ctx, memory_order_relaxed);
    atomic_store_explicit(&j->n_tasks, n_tasks, memory_order_relaxed);
    atomic_store_explicit(&j->done, 0, memory_order_relaxed);
    atomic_store_explicit(&pool.claim, g << IDX_BITS, memory_order_release); // publishes the slot
    if (pool.nthreads > 1 && n_tasks > 1) {
        pthread_mutex_lock(&pool.mu);
        if (pool.sleepers) pthread_cond_broadcast(&pool.wake);
        pthread_mutex_unlock(&pool.mu);
    }
    work(g, 0);
    if (!poll_until(job_done, g)) {
        pthread_mutex_lock(&pool.mu);
        pool.caller_waits = 1;
        while (!job_done(g)) pthread_cond_wait(&pool.done_cv, &pool.mu);
        pool.caller_waits = 0;
        pthread_mutex_unlock(&pool.mu);
    }
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
