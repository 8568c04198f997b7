// statefile: a small file rewritten whole at every change (a job's state),
// written on the libuv thread pool so that the loop thread never waits on
// the disk (util_write_file_atomic: temp file, fsync, rename).
//
// Order: one write per file is in flight at a time, so writes land in the
// order they were put. A text put while a write is in flight waits; a
// newer text put meanwhile replaces it (the newest wins), and one more
// write follows the one in flight. While writes are in flight or waiting
// the loop stays alive: a loop run to its end has every text on disk.
//
// Errors: a failed write is logged ("error COMP: cannot record WHAT
// error=...") and not retried on its own; the next put writes again.
//
// Ownership: statefile_put takes the text. statefile_free may be called
// while a write is in flight: the statefile then finishes its writes
// (the waiting text too) and frees itself; the caller's pointer is dead at
// once. Everything but the write itself runs on the loop thread.
#ifndef TESSERA_STATEFILE_H
#define TESSERA_STATEFILE_H

#include <uv.h>

typedef struct statefile statefile;

// A statefile for path. comp and what name it in log lines ("ftjobs",
// "job=ftjob-..."); all three are copied. NULL when out of memory.
statefile *statefile_new(uv_loop_t *loop, const char *path, const char *comp, const char *what);

// Writes text (owned; NULL = out of memory, logged) on the thread pool, or
// after the write in flight. Returns at once.
void statefile_put(statefile *f, char *text);

// Writes text (owned) now, on this thread: for code that runs before the
// loop does (opening a store). Nothing may be in flight. Returns 0 or -1
// (logged).
int statefile_put_sync(statefile *f, char *text);

// Writes finished (done or failed) so far, and of them failed: for tests.
long statefile_writes(const statefile *f);
long statefile_failures(const statefile *f);

void statefile_free(statefile *f);

#endif
