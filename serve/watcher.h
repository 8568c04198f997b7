// watcher: keeps the adapters folder's snapshot in the server's current
// set (registry.h) up to date. A first scan when it opens; then a rescan
// every rescan_ms, one shortly after the folder changes (a file watch,
// where the platform has one; a burst of events makes one scan), one on
// request (watcher_scan: SIGHUP) and one that a caller waits for
// (watcher_rescan: the fine-tuning jobs, which have just published a
// folder). It logs what each scan changed ("info registry: added
// adapter=...", "replaced", "removed", "warn registry: skipped ...").
//
// It owns its timers, its file watch and the scan in progress; the set is
// borrowed and must outlive it. Threading: every function runs on the loop
// thread; one scan at a time runs on the libuv thread pool, reading only
// the snapshot it started from, and the new snapshot replaces the set's on
// the loop thread.
#ifndef TESSERA_WATCHER_H
#define TESSERA_WATCHER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "err.h"
#include "metrics.h"
#include "registry.h"

typedef struct watcher watcher;

typedef struct watcher_config {
    const char *dir;           // the adapters folder
    const model_config *model; // adapters are validated against it (borrowed)
    const char *reserved;      // a name no folder may take (the base model's id)
    uint64_t rescan_ms;        // periodic rescan; 0 = 2 s
    metrics_requests *metrics; // counts folders whose files fail validation (may be NULL; loop thread)
} watcher_config;

// Scans the folder once (into set) and starts watching it. cfg's strings
// are borrowed and must outlive the watcher. Returns a new watcher (stop
// it with watcher_stop, then free it with watcher_free once the loop has
// drained) or NULL + err when the folder cannot be read.
watcher *watcher_open(uv_loop_t *loop, const watcher_config *cfg, reg_set *set, err_t *err);

// Scans now, or right after the scan in progress.
void watcher_scan(watcher *w);

// Scans now (or right after the scan in progress) and calls done(arg) on
// the loop thread once a scan that started after this call has finished,
// so the caller then finds a folder it has just written. With a NULL
// watcher, or once stopping, done runs at once.
void watcher_rescan(watcher *w, void (*done)(void *arg), void *arg);

// 1 if the folder's latest snapshot offers the adapter name; else 0 and
// the reason in why: the registry's, or "NAME: not found in the adapters
// folder". A NULL watcher offers nothing.
int watcher_adapter_ready(const watcher *w, const char *name, char *why, size_t n);

// Shutdown: calls every waiting done, closes the timers and the watch. A
// scan in progress is dropped when it returns. NULL is a no-op.
void watcher_stop(watcher *w);
void watcher_free(watcher *w);

#endif
