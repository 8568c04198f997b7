// pool: the CPU backend's thread pool, process-wide (the one piece of global
// mutable state in kernels/cpu: one pool serves every model in the process,
// as one set of cores does).
//
// cpu_pool_run(n, fn, ctx) calls fn(ctx, task, thread) for every task in
// [0, n) on the pool's threads (the calling thread is thread 0 and works
// too) and returns when all are done. Tasks are handed out one at a time
// from a shared counter, so uneven tasks balance, and the caller waits for
// the tasks, not for the threads: one that is slow to wake (a busy shared
// machine) finds the job done and costs nothing. Idle threads poll for the
// next run for 0.1 ms (yielding the CPU) before they sleep, which bridges
// the short gaps between a forward pass's ops. One run at a time: calls
// from several threads are serialised.
//
// The pool starts on first use with $TESSERA_THREADS threads, or one per
// online CPU. With $TESSERA_PIN=1, worker i is pinned to the i-th CPU the
// process may use (best effort; read when the pool starts); the calling
// thread never is.
// Tasks write whole 64-byte lines of their output where they can (row
// tiles of 16 floats, 64-byte aligned buffers), so two threads rarely
// share a line. cpu_pool_shutdown joins the workers and frees the per-thread
// scratch (tests call it so LeakSanitizer sees a clean exit); a later run
// starts the pool again.
#ifndef TESSERA_CPU_POOL_H
#define TESSERA_CPU_POOL_H

#include <stddef.h>
#include <stdint.h>

typedef void (*cpu_task_fn)(void *ctx, int64_t task, int thread);

void cpu_pool_run(int64_t n_tasks, cpu_task_fn fn, void *ctx);

// Number of threads (>= 1) runs use, the caller included.
int cpu_pool_threads(void);

// n >= 1 threads, or 0 for the default above. Not during a run.
void cpu_pool_set_threads(int n);

// Per-thread scratch of at least `bytes`, 64-byte aligned, owned by the pool
// and valid until the same thread asks again. Only thread `thread` (the
// index fn received) may use it. Grows on demand: after the first steps of
// a model it never allocates again.
void *cpu_pool_scratch(int thread, size_t bytes);

void cpu_pool_shutdown(void);

#endif
