// registry: the adapters folder. Each subfolder holding adapter_config.json
// and adapter_model.safetensors is an adapter named after the folder
// (adapters/acme-bot -> model "acme-bot"); it is validated with lora_load
// against the base model's config before it is offered.
//
// A scan returns a new snapshot: an immutable, name-sorted list of entries.
// Entries are shared between snapshots and reference-counted (atomically),
// so a request can hold the entry of the adapter it uses while a rescan
// replaces or removes it. A rescan reuses an entry whose folder and files
// look unchanged (same inode, size and mtime of the folder and both files)
// and re-validates the rest, which catches the trainer's atomic
// temp-dir-and-rename, an in-place overwrite, and a half-copied folder
// completing later. Folders whose name starts with '.' are ignored (the
// trainer's temp dirs), as are folders without adapter_config.json; a
// folder that fails validation is kept as a "bad" entry (not offered) so it
// is reported once, not at every rescan, and retried when it changes; if
// the folder held a good adapter before, that last good version stays
// served (reg_entry.last_good) until the folder is fixed or removed.
//
// Symlinks: the watched folder may itself be a symlink, but an adapter
// folder or its two files are read only if their real path (symlinks
// resolved) lies inside the watched folder's real path, checked by name
// before reading and on the open descriptors' paths after; a subfolder
// that resolves outside is ignored (logged once as bad).
//
// This module is plain C with no event loop: reg_scan reads the disk and is
// meant for a worker thread (uv_queue_work). Threading contract: reg_scan
// only reads `prev` (which must stay alive until it returns); snapshots are
// never modified after creation; reg_entry_ref/unref are thread-safe.
//
// The server's current set (reg_set, below) is the folder's latest
// snapshot plus the adapters registered at runtime (POST
// /v1/load_lora_adapter); it lives on the loop thread.
//
// A good entry holds its folder's files (a lora_source: the config text
// and the weights read into memory, not converted), so the tensors an engine
// builds with reg_entry_load when it gives the adapter a slot are the ones
// that were validated, even if the folder was renamed over or removed
// since, or written over in place: a request finishes on the version it
// was resolved to, and a last good version stays intact. The cost is the
// weights file's size in memory per listed adapter.
#ifndef TESSERA_REGISTRY_H
#define TESSERA_REGISTRY_H

#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

#include "adapter.h"
#include "config.h"
#include "err.h"

typedef struct reg_stamp {
    dev_t dev;
    ino_t ino;
    int64_t size;
    int64_t mtime_ns;
} reg_stamp;

typedef struct reg_entry {
    char *name;          // the folder name = the model id
    char *path;          // dir/name
    reg_stamp dir, config, weights;
    int ok;              // validated; 0 = bad (see error)
    char *error;         // why it is bad (NULL when ok)
    // From the validated adapter:
    int rank;            // max rank over modules
    double alpha;
    int n_adapted;       // adapted projections
    int64_t n_params;
    int64_t created;     // unix time of the weights file's mtime
    lora_source *src;    // the files as validated (good entries only)
    // A bad entry whose folder held a good adapter in the previous scan
    // keeps that one here (a reference) and it stays served: an adapter is
    // unlisted only when its folder goes, not when new files fail.
    struct reg_entry *last_good;
    atomic_int refs;
} reg_entry;

typedef struct reg_snapshot {
    reg_entry **entries; // sorted by name; good and bad ones
    int n;
} reg_snapshot;

// What a scan changed compared with prev, for logging: each array lists
// entries of the new snapshot (added, replaced, newly bad) or of prev
// (removed); borrowed from the snapshots.
typedef struct reg_changes {
    const reg_entry **added;    // new good adapters
    int n_added;
    const reg_entry **replaced; // good adapters whose files changed
    int n_replaced;
    const reg_entry **removed;  // from prev: gone (good in prev)
    int n_removed;
    const reg_entry **failed;   // new or changed and bad (entry->error says why;
                                // entry->last_good is what stays served, or NULL)
    int n_failed;
} reg_changes;

// Scans dir against the base model cfg. prev (may be NULL) is the current
// snapshot: unchanged entries are shared from it. reserved (may be NULL) is
// a name no adapter may take (the base model's id): such a folder is bad.
// Returns a new snapshot (free with reg_snapshot_free) and fills *changes
// (free with reg_changes_free; may be NULL), or NULL + err when dir cannot
// be read at all.
reg_snapshot *reg_scan(const char *dir, const model_config *cfg, const reg_snapshot *prev, const char *reserved,
                       reg_changes *changes, err_t *err);

void reg_snapshot_free(reg_snapshot *s);
void reg_changes_free(reg_changes *c);

// The served entry named name (a good one, or a bad one's last_good), or
// NULL. Borrowed
// from the snapshot: take a reference to keep it longer.
const reg_entry *reg_find(const reg_snapshot *s, const char *name);

// Number of served entries.
int reg_count(const reg_snapshot *s);

// One adapter folder at any path, under a name of its own (POST
// /v1/load_lora_adapter): stamped and validated like a scanned folder.
// Returns a new good entry (reg_entry_unref) or NULL + err saying why the
// folder is not a usable adapter for cfg.
reg_entry *reg_open(const char *name, const char *path, const model_config *cfg, err_t *err);

// The entry's adapter built from the files it was validated from (see
// above), for cfg. Thread-safe. Returns a new adapter (lora_free) or NULL +
// err (out of memory; the entry must be good).
lora_adapter *reg_entry_load(const reg_entry *e, const model_config *cfg, err_t *err);

// Reference counting for holders other than snapshots (a request in
// flight). ref returns e. unref frees the entry when the last holder drops it.
reg_entry *reg_entry_ref(const reg_entry *e);
void reg_entry_unref(reg_entry *e);

// ---- the server's current set of adapters ------------------------------------

// What the server offers: the adapters folder's latest snapshot plus the
// adapters registered at runtime, which shadow a folder entry of the same
// name. It holds a reference to each runtime entry; requests that hold
// their own finish on it after a remove or a new snapshot.
//
// Threading: the loop thread only. A scan on a worker may read the
// snapshot reg_set_folder returns (snapshots are immutable); only
// reg_set_replace_folder, on the loop thread, swaps it.
typedef struct reg_set reg_set;

// Returns a new, empty set (free with reg_set_free) or NULL (out of memory).
reg_set *reg_set_new(void);
// Drops the set's snapshot and runtime references.
void reg_set_free(reg_set *s);

// The folder's latest snapshot (NULL before the first). Borrowed.
const reg_snapshot *reg_set_folder(const reg_set *s);
// Takes ownership of snap (may be NULL) and frees the previous snapshot.
void reg_set_replace_folder(reg_set *s, reg_snapshot *snap);

// The good entry named name: a runtime one first, else the folder's; NULL
// if none. Borrowed: take a reference to keep it longer.
const reg_entry *reg_set_find(const reg_set *s, const char *name);
// 1 if name was registered at runtime.
int reg_set_is_runtime(const reg_set *s, const char *name);

// Registers e at runtime, taking over the caller's reference. Returns 0,
// or -1 when out of memory (the caller keeps its reference). The caller
// has checked that the name is free.
int reg_set_add_runtime(reg_set *s, reg_entry *e);
// Drops the runtime entry named name. Returns 0, or -1 if there is none.
int reg_set_remove_runtime(reg_set *s, const char *name);

// Iterates the set: every good entry reg_set_find can return, each once:
// the folder's (by name) that no runtime entry shadows, then the runtime
// ones. Start with *pos = 0; returns NULL at the end. Borrowed.
const reg_entry *reg_set_next(const reg_set *s, int *pos);

#endif
