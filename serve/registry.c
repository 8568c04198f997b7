// registry: scan the adapters folder into snapshots. See registry.h.
#include "registry.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "adapter.h"
#include "util.h"

static int stamp_of(const char *path, reg_stamp *st) {
    struct stat sb;
    if (stat(path, &sb) != 0) return -1;
    st->dev = sb.st_dev;
    st->ino = sb.st_ino;
    st->size = (int64_t)sb.st_size;
    st->mtime_ns = (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;
    return 0;
}

static int stamp_eq(const reg_stamp *a, const reg_stamp *b) {
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size && a->mtime_ns == b->mtime_ns;
}

// Entries are immutable once published except for their count, so the
// registry hands out const views and the count is taken through one: the
// only place const is cast away (through uintptr_t, which -Wcast-qual
// allows, because it is meant).
reg_entry *reg_entry_ref(const reg_entry *e) {
    reg_entry *m = (reg_entry *)(uintptr_t)e;
    atomic_fetch_add(&m->refs, 1);
    return m;
}

void reg_entry_unref(reg_entry *e) {
    if (!e || atomic_fetch_sub(&e->refs, 1) != 1) return;
    free(e->name);
    free(e->path);
    free(e->error);
    lora_source_close(e->src);
    reg_entry_unref(e->last_good);
    free(e);
}

void reg_snapshot_free(reg_snapshot *s) {
    if (!s) return;
    for (int i = 0; i < s->n; i++) reg_entry_unref(s->entries[i]);
    free(s->entries);
    free(s);
}

void reg_changes_free(reg_changes *c) {
    if (!c) return;
    free(c->added);
    free(c->replaced);
    free(c->removed);
    free(c->failed);
    memset(c, 0, sizeof *c);
}

static const reg_entry *find_any(const reg_snapshot *s, const char *name) {
    if (!s) return NULL;
    int lo = 0, hi = s->n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        int c = strcmp(s->entries[mid]->name, name);
        if (c == 0) return s->entries[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return NULL;
}

// What the entry offers: itself when good, else its last good version.
static const reg_entry *served(const reg_entry *e) { return !e ? NULL : e->ok ? e : e->last_good; }

const reg_entry *reg_find(const reg_snapshot *s, const char *name) { return served(find_any(s, name)); }

int reg_count(const reg_snapshot *s) {
    int n = 0;
    for (int i = 0; s && i < s->n; i++) n += served(s->entries[i]) != NULL;
    return n;
}

// 1 if the real path real is root_real or inside it.
static int path_inside(const char *real, const char *root_real) {
    size_t n = strlen(root_real);
    return real && strncmp(real, root_real, n) == 0 &&
           (real[n] == '\0' || real[n] == '/' || (n == 1 && root_real[0] == '/'));
}

// 1 if the real path of path (resolved now) is root_real or inside it.
static int resolves_inside(const char *path, const char *root_real) {
    char *r = path ? realpath(path, NULL) : NULL;
    int in = path_inside(r, root_real);
    free(r);
    return in;
}

// The watcher's symlink rule (registry.h): the folder and its two files
// must resolve inside the watched folder. Checked twice: by name before
// anything is read (so nothing outside is even opened: a FIFO would hang
// the scan), and, once read, by where the bytes really came from
// (lora_source_real_path: the open descriptor), so a symlink swapped in
// and out around the read cannot slip through. NULL if inside, else why not.
static const char *escapes(const reg_entry *e, const char *root_real) {
    static const char folder[] = "the folder resolves outside the adapters folder (symlink)";
    static const char file[] = "a file resolves outside the adapters folder (symlink)";
    if (!root_real) return NULL;
    if (!resolves_inside(e->path, root_real)) return folder;
    const char *files[] = {"adapter_config.json", "adapter_model.safetensors"};
    for (int i = 0; i < 2; i++) {
        int in;
        if (e->src) {
            in = path_inside(lora_source_real_path(e->src, i), root_real);
        } else {
            char *f = util_path_join(e->path, files[i]);
            in = resolves_inside(f, root_real);
            free(f);
        }
        if (!in) return file;
    }
    return NULL;
}

// Validates the folder as lora_load does and fills the entry's metadata
// and source, or its error.
static void validate(reg_entry *e, const model_config *cfg, const char *reserved) {
    if (reserved && strcmp(e->name, reserved) == 0) {
        e->error = strdup("the name is the base model's id; rename the folder");
        return;
    }
    err_t err = {{0}};
    lora_source *src = lora_source_open(e->path, &err);
    lora_adapter *a = src ? lora_source_build(src, cfg, &err) : NULL;
    if (!a) {
        lora_source_close(src);
        e->error = strdup(err.msg);
        return;
    }
    e->ok = 1;
    e->src = src;
    e->rank = a->max_rank;
    e->alpha = a->config.alpha;
    e->n_adapted = a->n_adapted;
    e->n_params = a->n_params;
    e->created = e->weights.mtime_ns / 1000000000;
    lora_free(a);
}

// A new entry for folder name, stamped (both files must exist: a folder
// with neither is not an adapter and yields NULL with *skip set).
static reg_entry *entry_new(const char *dir, const char *name, int *skip) {
    *skip = 0;
    reg_entry *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    atomic_init(&e->refs, 1);
    e->name = strdup(name);
    e->path = util_path_join(dir, name);
    char *cfg = e->path ? util_path_join(e->path, "adapter_config.json") : NULL;
    char *wts = e->path ? util_path_join(e->path, "adapter_model.safetensors") : NULL;
    if (!e->name || !e->path || !cfg || !wts) {
        free(cfg);
        free(wts);
        reg_entry_unref(e);
        return NULL;
    }
    int has_cfg = stamp_of(cfg, &e->config) == 0;
    int has_wts = stamp_of(wts, &e->weights) == 0;
    stamp_of(e->path, &e->dir);
    free(cfg);
    free(wts);
    if (!has_cfg) {
        *skip = 1;
        reg_entry_unref(e);
        return NULL;
    }
    if (!has_wts) e->error = strdup("adapter_model.safetensors is missing");
    return e;
}

reg_entry *reg_open(const char *name, const char *path, const model_config *cfg, err_t *err) {
    reg_entry *e = calloc(1, sizeof *e);
    char *cf = util_path_join(path, "adapter_config.json");
    char *wts = util_path_join(path, "adapter_model.safetensors");
    if (!e || !cf || !wts || !(e->name = strdup(name)) || !(e->path = strdup(path))) {
        free(cf);
        free(wts);
        if (e) {
            free(e->name);
            free(e);
        }
        err_set(err, "out of memory");
        return NULL;
    }
    atomic_init(&e->refs, 1);
    int missing = stamp_of(e->path, &e->dir) != 0 ? 1 : stamp_of(cf, &e->config) != 0 ? 2
                : stamp_of(wts, &e->weights) != 0 ? 3 : 0;
    free(cf);
    free(wts);
    if (missing) {
        err_set(err, "%s: %s", path, missing == 1 ? "no such folder" : missing == 2 ? "adapter_config.json is missing"
                                                                              : "adapter_model.safetensors is missing");
        reg_entry_unref(e);
        return NULL;
    }
    validate(e, cfg, NULL);
    if (!e->ok) {
        err_set(err, "%s: %s", path, e->error ? e->error : "not a valid adapter");
        reg_entry_unref(e);
        return NULL;
    }
    return e;
}

static int cmp_entry(const void *a, const void *b) {
    return strcmp((*(reg_entry *const *)a)->name, (*(reg_entry *const *)b)->name);
}

static int push(const reg_entry ***arr, int *n, const reg_entry *e) {
    const reg_entry **t = realloc(*arr, (size_t)(*n + 1) * sizeof *t);
    if (!t) return -1;
    t[(*n)++] = e;
    *arr = t;
    return 0;
}

reg_snapshot *reg_scan(const char *dir, const model_config *cfg, const reg_snapshot *prev, const char *reserved,
                       reg_changes *changes, err_t *err) {
    if (changes) memset(changes, 0, sizeof *changes);
    DIR *d = opendir(dir);
    if (!d) {
        err_set(err, "%s: %s", dir, strerror(errno));
        return NULL;
    }
    char *root_real = realpath(dir, NULL);
    reg_snapshot *s = calloc(1, sizeof *s);
    int cap = 0;
    struct dirent *de;
    while (s && (de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.') continue;
        int skip = 0;
        reg_entry *e = entry_new(dir, de->d_name, &skip);
        if (!e) {
            if (skip) continue;
            break; // out of memory
        }
        if (!util_is_dir(e->path)) {
            reg_entry_unref(e);
            continue;
        }
        const reg_entry *old = find_any(prev, e->name);
        if (old && stamp_eq(&old->dir, &e->dir) && stamp_eq(&old->config, &e->config) &&
            stamp_eq(&old->weights, &e->weights)) {
            reg_entry_unref(e);
            e = reg_entry_ref(old); // unchanged: share it
        } else {
            const char *why = e->error ? NULL : escapes(e, root_real);
            if (why) e->error = strdup(why);
            else if (!e->error) validate(e, cfg, reserved);
            if (e->ok && (why = escapes(e, root_real)) != NULL) { // the files as read
                lora_source_close(e->src);
                e->src = NULL;
                e->ok = 0;
                e->error = strdup(why);
            }
            if (!e->ok && served(old)) e->last_good = reg_entry_ref(served(old));
        }
        if (s->n == cap) {
            cap = cap ? cap * 2 : 16;
            reg_entry **t = realloc(s->entries, (size_t)cap * sizeof *t);
            if (!t) {
                reg_entry_unref(e);
                break;
            }
            s->entries = t;
        }
        s->entries[s->n++] = e;
    }
    closedir(d);
    free(root_real);
    if (!s) {
        err_set(err, "out of memory");
        return NULL;
    }
    if (s->n > 1) qsort(s->entries, (size_t)s->n, sizeof *s->entries, cmp_entry);
    if (!changes) return s;
    for (int i = 0; i < s->n; i++) {
        const reg_entry *e = s->entries[i], *old = find_any(prev, e->name);
        if (old == e) continue;
        if (!e->ok) {
            push(&changes->failed, &changes->n_failed, e);
            if (served(old) && !e->last_good) push(&changes->removed, &changes->n_removed, old);
        } else if (served(old)) {
            push(&changes->replaced, &changes->n_replaced, e);
        } else {
            push(&changes->added, &changes->n_added, e);
        }
    }
    for (int i = 0; prev && i < prev->n; i++) {
        const reg_entry *o = prev->entries[i];
        if (served(o) && !find_any(s, o->name)) push(&changes->removed, &changes->n_removed, o);
    }
    return s;
}

lora_adapter *reg_entry_load(const reg_entry *e, const model_config *cfg, err_t *err) {
    if (!e->src) {
        err_set(err, "%s: not a validated adapter", e->path);
        return NULL;
    }
    return lora_source_build(e->src, cfg, err);
}

// ---- the server's current set ------------------------------------------------------

struct reg_set {
    reg_snapshot *folder;
    reg_entry **runtime; // held references, in the order registered (a removal moves the last into its place)
    int n_runtime;
};

reg_set *reg_set_new(void) { return calloc(1, sizeof(reg_set)); }

void reg_set_free(reg_set *s) {
    if (!s) return;
    reg_snapshot_free(s->folder);
    for (int i = 0; i < s->n_runtime; i++) reg_entry_unref(s->runtime[i]);
    free(s->runtime);
    free(s);
}

const reg_snapshot *reg_set_folder(const reg_set *s) { return s->folder; }

void reg_set_replace_folder(reg_set *s, reg_snapshot *snap) {
    reg_snapshot *old = s->folder;
    s->folder = snap;
    reg_snapshot_free(old);
}

static int runtime_index(const reg_set *s, const char *name) {
    for (int i = 0; i < s->n_runtime; i++)
        if (strcmp(s->runtime[i]->name, name) == 0) return i;
    return -1;
}

const reg_entry *reg_set_find(const reg_set *s, const char *name) {
    int i = runtime_index(s, name);
    return i >= 0 ? s->runtime[i] : reg_find(s->folder, name);
}

int reg_set_is_runtime(const reg_set *s, const char *name) { return runtime_index(s, name) >= 0; }

int reg_set_add_runtime(reg_set *s, reg_entry *e) {
    reg_entry **r = realloc(s->runtime, (size_t)(s->n_runtime + 1) * sizeof *r);
    if (!r) return -1;
    s->runtime = r;
    s->runtime[s->n_runtime++] = e;
    return 0;
}

int reg_set_remove_runtime(reg_set *s, const char *name) {
    int i = runtime_index(s, name);
    if (i < 0) return -1;
    reg_entry_unref(s->runtime[i]);
    s->runtime[i] = s->runtime[--s->n_runtime];
    return 0;
}

// *pos counts the folder's entries first, then the runtime ones.
const reg_entry *reg_set_next(const reg_set *s, int *pos) {
    int nf = s->folder ? s->folder->n : 0;
    while (*pos < nf) {
        const reg_entry *e = served(s->folder->entries[(*pos)++]);
        if (e && runtime_index(s, e->name) < 0) return e;
    }
    int i = *pos - nf;
    if (i >= s->n_runtime) return NULL;
    (*pos)++;
    return s->runtime[i];
}
