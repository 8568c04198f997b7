#include "safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

// The reference implementation refuses headers over 100 MB; so do we.
#define SFT_MAX_HEADER 100000000ull

static const struct {
    const char *name;
    size_t size;
} dtypes[SFT_NDTYPES] = {
    [SFT_F32] = {"F32", 4}, [SFT_F16] = {"F16", 2}, [SFT_BF16] = {"BF16", 2},
    [SFT_U8] = {"U8", 1},   [SFT_I8] = {"I8", 1},   [SFT_I32] = {"I32", 4},
    [SFT_I64] = {"I64", 8}, [SFT_BOOL] = {"BOOL", 1}, [SFT_F64] = {"F64", 8},
};

size_t sft_dtype_size(sft_dtype dt) { return (unsigned)dt < SFT_NDTYPES ? dtypes[dt].size : 0; }

const char *sft_dtype_name(sft_dtype dt) { return (unsigned)dt < SFT_NDTYPES ? dtypes[dt].name : "?"; }

int sft_dtype_parse(const char *name) {
    for (int i = 0; i < SFT_NDTYPES; i++)
        if (strcmp(name, dtypes[i].name) == 0) return i;
    return -1;
}

// One mapped (or borrowed in-memory) file.
typedef struct sft_map {
    char *path;
    const uint8_t *base;
    void *map;  // base as mmap returned it, for munmap (when mapped)
    size_t len;
    int mapped; // 1: munmap on close; 0: borrowed memory
    cJSON *metadata;
} sft_map;

struct sft {
    sft_map *maps;
    int n_maps;
    sft_tensor *tensors;
    int n_tensors, cap_tensors;
    struct name_ref *by_name; // sorted by name, for bsearch
};

// ---------------------------------------------------------------- parsing

// Reads a JSON number that must be a non-negative integer representable
// exactly in a double (the JSON spec gives no more).
static int json_uint(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return -1;
    double d = v->valuedouble;
    if (!(d >= 0) || d > 9007199254740992.0 || floor(d) != d) return -1;
    *out = (uint64_t)d;
    return 0;
}

static int push_tensor(sft *s, const sft_tensor *t) {
    if (s->n_tensors == s->cap_tensors) {
        int cap = s->cap_tensors ? s->cap_tensors * 2 : 64;
        sft_tensor *nt = realloc(s->tensors, (size_t)cap * sizeof *nt);
        if (!nt) return -1;
        s->tensors = nt;
        s->cap_tensors = cap;
    }
    s->tensors[s->n_tensors++] = *t;
    return 0;
}

// Validates one header entry and fills t (name and data still unset).
static int parse_entry(const sft_map *m, const cJSON *e, sft_tensor *t, uint64_t *begin, uint64_t *end,
                       err_t *err) {
    const char *name = e->string;
    if (!cJSON_IsObject(e)) return err_set(err, "%s: tensor '%s': header entry is not an object", m->path, name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt)) return err_set(err, "%s: tensor '%s': missing string 'dtype'", m->path, name);
    int d = sft_dtype_parse(dt->valuestring);
    if (d < 0) return err_set(err, "%s: tensor '%s': unsupported dtype '%s'", m->path, name, dt->valuestring);
    t->dtype = (sft_dtype)d;
    if (!cJSON_IsArray(shape)) return err_set(err, "%s: tensor '%s': missing array 'shape'", m->path, name);
    int nd = cJSON_GetArraySize(shape);
    if (nd > SFT_MAX_DIMS)
        return err_set(err, "%s: tensor '%s': %d dimensions (at most %d supported)", m->path, name, nd, SFT_MAX_DIMS);
    t->ndim = nd;
    uint64_t numel = 1;
    int i = 0, overflow = 0;
    for (const cJSON *x = shape->child; x; x = x->next, i++) {
        uint64_t v;
        if (json_uint(x, &v) != 0)
            return err_set(err, "%s: tensor '%s': shape[%d] is not a non-negative integer", m->path, name, i);
        t->shape[i] = (int64_t)v;
        if (v != 0 && numel > UINT64_MAX / v) overflow = 1;
        numel *= v;
    }
    size_t es = sft_dtype_size(t->dtype);
    if (overflow || numel > (uint64_t)INT64_MAX / es)
        return err_set(err, "%s: tensor '%s': shape is too large", m->path, name);
    t->numel = (int64_t)numel;
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 || json_uint(offs->child, begin) != 0 ||
        json_uint(offs->child->next, end) != 0)
        return err_set(err, "%s: tensor '%s': 'data_offsets' must be two non-negative integers", m->path, name);
    if (*end < *begin)
        return err_set(err, "%s: tensor '%s': data_offsets [%llu, %llu] end before begin", m->path, name,
                       (unsigned long long)*begin, (unsigned long long)*end);
    if (*end - *begin != numel * es)
        return err_set(err, "%s: tensor '%s': %s shape needs %llu bytes but data_offsets [%llu, %llu] hold %llu",
                       m->path, name, dtypes[t->dtype].name, (unsigned long long)(numel * es),
                       (unsigned long long)*begin, (unsigned long long)*end,
                       (unsigned long long)(*end - *begin));
    t->nbytes = (size_t)(*end - *begin);
    return 0;
}

typedef struct span {
    uint64_t begin, end;
    int index;
} span;

static int span_cmp(const void *a, const void *b) {
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

// Byte ranges must tile the data region exactly: sorted by begin, each
// starts where the previous ended and the last ends at the file's end.
// This rules out overlaps (two tensors aliasing bytes) and junk.
static int check_tiling(const sft_map *m, span *sp, int n, uint64_t data_len, const sft *s, err_t *err) {
    if (n > 1) qsort(sp, (size_t)n, sizeof *sp, span_cmp);
    uint64_t expect = 0;
    for (int i = 0; i < n; i++) {
        const char *name = s->tensors[sp[i].index].name;
        if (sp[i].begin < expect)
            return err_set(err, "%s: tensor '%s': data_offsets [%llu, %llu] overlap the previous tensor (ends at %llu)",
                           m->path, name, (unsigned long long)sp[i].begin, (unsigned long long)sp[i].end,
                           (unsigned long long)expect);
        if (sp[i].begin > expect)
            return err_set(err, "%s: tensor '%s': gap of %llu bytes before its data_offsets [%llu, %llu]", m->path,
                           name, (unsigned long long)(sp[i].begin - expect), (unsigned long long)sp[i].begin,
                           (unsigned long long)sp[i].end);
        if (sp[i].end > data_len)
            return err_set(err,
                           "%s: tensor '%s': data_offsets [%llu, %llu] run past the end of the data (%llu bytes): "
                           "file truncated?",
                           m->path, name, (unsigned long long)sp[i].begin, (unsigned long long)sp[i].end,
                           (unsigned long long)data_len);
        expect = sp[i].end;
    }
    if (expect != data_len)
        return err_set(err, "%s: %llu bytes of data after the last tensor (header describes %llu of %llu)", m->path,
                       (unsigned long long)(data_len - expect), (unsigned long long)expect,
                       (unsigned long long)data_len);
    return 0;
}

static int tensor_offset_cmp(const void *a, const void *b) {
    const uint8_t *x = ((const sft_tensor *)a)->data, *y = ((const sft_tensor *)b)->data;
    return x < y ? -1 : x > y;
}

// Parses and validates the header of map m, appending its tensors to s.
static int parse_map(sft *s, sft_map *m, err_t *err) {
    if (m->len < 8) return err_set(err, "%s: file is %zu bytes, too short for a safetensors header", m->path, m->len);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | m->base[i];
    if (hlen < 2 || hlen > SFT_MAX_HEADER)
        // The number is the file's first 8 bytes: not echoed, as the file may
        // be anything (a server's error messages reach its clients).
        return err_set(err, "%s: not a safetensors file (header length out of bounds 2..%llu)", m->path,
                       SFT_MAX_HEADER);
    if (hlen > m->len - 8)
        return err_set(err, "%s: header length exceeds the file size %zu: file truncated?", m->path, m->len);
    const char *json = (const char *)m->base + 8;
    cJSON *root = cJSON_ParseWithLength(json, (size_t)hlen);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        long off = at ? (long)(at - json) : -1;
        return err_set(err, "%s: header is not valid JSON (near byte %ld)", m->path, off);
    }
    int rc = -1;
    span *sp = NULL;
    if (!cJSON_IsObject(root)) {
        err_set(err, "%s: header is not a JSON object", m->path);
        goto out;
    }
    int n = cJSON_GetArraySize(root);
    sp = calloc((size_t)n + 1, sizeof *sp);
    if (!sp) {
        err_set(err, "%s: out of memory", m->path);
        goto out;
    }
    int k = 0;
    uint64_t data_len = m->len - 8 - hlen;
    const uint8_t *data = m->base + 8 + hlen;
    for (cJSON *e = root->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) {
            if (!cJSON_IsObject(e)) {
                err_set(err, "%s: __metadata__ is not an object", m->path);
                goto out;
            }
            for (cJSON *v = e->child; v; v = v->next)
                if (!cJSON_IsString(v)) {
                    err_set(err, "%s: __metadata__ value '%s' is not a string", m->path, v->string);
                    goto out;
                }
            continue;
        }
        sft_tensor t = {0};
        uint64_t b = 0, en = 0;
        if (parse_entry(m, e, &t, &b, &en, err) != 0) goto out;
        t.file = m->path;
        t.data = b <= data_len ? data + b : data; // range checked in check_tiling
        if (!(t.name = strdup(e->string)) || push_tensor(s, &t) != 0) {
            util_free_const(t.name);
            err_set(err, "%s: out of memory", m->path);
            goto out;
        }
        sp[k++] = (span){b, en, s->n_tensors - 1};
    }
    if (check_tiling(m, sp, k, data_len, s, err) != 0) goto out;
    if (k > 1) qsort(s->tensors + s->n_tensors - k, (size_t)k, sizeof *s->tensors, tensor_offset_cmp);
    cJSON *meta = cJSON_DetachItemFromObjectCaseSensitive(root, "__metadata__");
    m->metadata = meta;
    rc = 0;
out:
    free(sp);
    cJSON_Delete(root);
    return rc;
}

typedef struct name_ref {
    const char *name;
    int index;
} name_ref;

static int name_ref_cmp(const void *a, const void *b) {
    return strcmp(((const name_ref *)a)->name, ((const name_ref *)b)->name);
}

// Builds the name-sorted index used by sft_find and rejects duplicates,
// within one file or across shards.
static int build_index(sft *s, err_t *err) {
    s->by_name = malloc(((size_t)s->n_tensors + 1) * sizeof *s->by_name);
    if (!s->by_name) return err_set(err, "out of memory");
    for (int i = 0; i < s->n_tensors; i++) s->by_name[i] = (name_ref){s->tensors[i].name, i};
    if (s->n_tensors > 1) qsort(s->by_name, (size_t)s->n_tensors, sizeof *s->by_name, name_ref_cmp);
    for (int i = 1; i < s->n_tensors; i++) {
        const sft_tensor *a = &s->tensors[s->by_name[i - 1].index], *b = &s->tensors[s->by_name[i].index];
        if (strcmp(a->name, b->name) == 0) {
            if (a->file == b->file) return err_set(err, "%s: tensor '%s' appears twice in the header", a->file, a->name);
            return err_set(err, "tensor '%s' appears in both %s and %s", a->name, a->file, b->file);
        }
    }
    return 0;
}

// ---------------------------------------------------------------- opening

static sft *sft_new(void) { return calloc(1, sizeof(sft)); }

static sft_map *add_map(sft *s, const char *path) {
    sft_map *nm = realloc(s->maps, ((size_t)s->n_maps + 1) * sizeof *nm);
    if (!nm) return NULL;
    s->maps = nm;
    sft_map *m = &s->maps[s->n_maps];
    memset(m, 0, sizeof *m);
    if (!(m->path = strdup(path))) return NULL;
    s->n_maps++;
    return m;
}

static int map_file(sft_map *m, err_t *err) {
    int fd = open(m->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return err_set(err, "%s: %s", m->path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return err_set(err, "%s: not a regular file", m->path);
    }
    m->len = (size_t)st.st_size;
    if (m->len > 0) {
        void *p = mmap(NULL, m->len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            close(fd);
            return err_set(err, "%s: mmap failed: %s", m->path, strerror(errno));
        }
        m->base = m->map = p;
        m->mapped = 1;
    }
    close(fd);
    return 0;
}

static int open_one(sft *s, const char *path, err_t *err) {
    sft_map *m = add_map(s, path);
    if (!m) return err_set(err, "%s: out of memory", path);
    if (map_file(m, err) != 0) return -1;
    return parse_map(s, m, err);
}

// A shard name from an index must be a plain file name beside the index:
// an index is untrusted input and must not point elsewhere on disk.
static int valid_shard_name(const char *name) {
    return name[0] && name[0] != '.' && !strchr(name, '/') && !strchr(name, '\\');
}

static int open_index(sft *s, const char *index_path, err_t *err) {
    char *json = util_read_file(index_path, NULL, err);
    if (!json) return -1;
    cJSON *root = cJSON_Parse(json);
    free(json);
    if (!root) return err_set(err, "%s: not valid JSON", index_path);
    int rc = -1;
    char *dir = strdup(index_path);
    if (!dir) {
        err_set(err, "%s: out of memory", index_path);
        goto out;
    }
    char *slash = strrchr(dir, '/');
    if (slash) *slash = '\0';
    else strcpy(dir, ".");
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(wm) || !wm->child) {
        err_set(err, "%s: missing or empty object 'weight_map'", index_path);
        goto out;
    }
    // Open each distinct shard once, in order of first mention.
    for (const cJSON *e = wm->child; e; e = e->next) {
        if (!cJSON_IsString(e) || !valid_shard_name(e->valuestring)) {
            err_set(err, "%s: weight_map['%s'] must be a file name beside the index", index_path, e->string);
            goto out;
        }
        int seen = 0;
        for (const cJSON *p = wm->child; p != e && !seen; p = p->next) seen = strcmp(p->valuestring, e->valuestring) == 0;
        if (seen) continue;
        char *shard = util_path_join(dir, e->valuestring);
        int r = shard ? open_one(s, shard, err) : err_set(err, "out of memory");
        free(shard);
        if (r != 0) goto out;
    }
    if (build_index(s, err) != 0) goto out;
    // Every tensor the index promises must be in the shard it names.
    for (const cJSON *e = wm->child; e; e = e->next) {
        const sft_tensor *t = sft_find(s, e->string);
        const char *f = t ? strrchr(t->file, '/') : NULL;
        f = f ? f + 1 : (t ? t->file : NULL);
        if (!t || strcmp(f, e->valuestring) != 0) {
            err_set(err, "%s: tensor '%s' is listed in %s but not found there", index_path, e->string, e->valuestring);
            goto out;
        }
    }
    rc = 0;
out:
    free(dir);
    cJSON_Delete(root);
    return rc;
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

sft *sft_open(const char *path, err_t *err) {
    sft *s = sft_new();
    if (!s) {
        err_set(err, "%s: out of memory", path);
        return NULL;
    }
    int rc;
    if (util_is_dir(path)) {
        char *index = util_path_join(path, "model.safetensors.index.json");
        char *single = util_path_join(path, "model.safetensors");
        if (!index || !single) rc = err_set(err, "out of memory");
        else if (util_is_file(index)) rc = open_index(s, index, err);
        else if (util_is_file(single)) rc = open_one(s, single, err) == 0 ? build_index(s, err) : -1;
        else rc = err_set(err, "%s: no model.safetensors or model.safetensors.index.json in this folder", path);
        free(index);
        free(single);
    } else if (ends_with(path, ".index.json")) {
        rc = open_index(s, path, err);
    } else {
        rc = open_one(s, path, err) == 0 ? build_index(s, err) : -1;
    }
    if (rc != 0) {
        sft_close(s);
        return NULL;
    }
    return s;
}

sft *sft_open_memory(const void *buf, size_t len, const char *name, err_t *err) {
    sft *s = sft_new();
    sft_map *m = s ? add_map(s, name) : NULL;
    if (!m) {
        sft_close(s);
        err_set(err, "%s: out of memory", name);
        return NULL;
    }
    m->base = buf;
    m->len = len;
    if (parse_map(s, m, err) != 0 || build_index(s, err) != 0) {
        sft_close(s);
        return NULL;
    }
    return s;
}

void sft_close(sft *s) {
    if (!s) return;
    for (int i = 0; i < s->n_tensors; i++) util_free_const(s->tensors[i].name);
    for (int i = 0; i < s->n_maps; i++) {
        sft_map *m = &s->maps[i];
        if (m->mapped) munmap(m->map, m->len);
        cJSON_Delete(m->metadata);
        free(m->path);
    }
    free(s->maps);
    free(s->tensors);
    free(s->by_name);
    free(s);
}

int sft_count(const sft *s) { return s->n_tensors; }

const sft_tensor *sft_at(const sft *s, int i) { return i >= 0 && i < s->n_tensors ? &s->tensors[i] : NULL; }

const sft_tensor *sft_find(const sft *s, const char *name) {
    if (!s->by_name) return NULL;
    name_ref key = {name, 0};
    const name_ref *r = s->n_tensors ? bsearch(&key, s->by_name, (size_t)s->n_tensors, sizeof key, name_ref_cmp) : NULL;
    return r ? &s->tensors[r->index] : NULL;
}

const char *sft_metadata(const sft *s, const char *key) {
    if (s->n_maps == 0 || !s->maps[0].metadata) return NULL;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(s->maps[0].metadata, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

// Element reads go through memcpy: a writer that did not pad its header
// leaves the data unaligned, which is legal safetensors.
int sft_to_f32(const sft_tensor *t, float *out, err_t *err) {
    const uint8_t *p = t->data;
    int64_t n = t->numel;
    switch (t->dtype) {
    case SFT_F32:
        memcpy(out, p, (size_t)n * 4);
        return 0;
    case SFT_F64:
        for (int64_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, p + 8 * i, 8);
            out[i] = (float)d;
        }
        return 0;
    case SFT_BF16:
    case SFT_F16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            out[i] = t->dtype == SFT_BF16 ? util_bf16_to_f32(h) : util_f16_to_f32(h);
        }
        return 0;
    default:
        return err_set(err, "%s: tensor '%s': dtype %s is not a float type", t->file, t->name, sft_dtype_name(t->dtype));
    }
}

// ---------------------------------------------------------------- writing

typedef struct wentry {
    char *name;
    sft_dtype dtype;
    int ndim;
    int64_t shape[SFT_MAX_DIMS];
    const void *data;
    size_t nbytes;
} wentry;

struct sft_writer {
    wentry *e;
    int n, cap;
    cJSON *metadata;
};

sft_writer *sft_writer_new(void) { return calloc(1, sizeof(sft_writer)); }

void sft_writer_free(sft_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) free(w->e[i].name);
    free(w->e);
    cJSON_Delete(w->metadata);
    free(w);
}

int sft_writer_add(sft_writer *w, const char *name, sft_dtype dt, int ndim, const int64_t *shape, const void *data,
                   err_t *err) {
    if ((unsigned)dt >= SFT_NDTYPES) return err_set(err, "tensor '%s': invalid dtype", name);
    if (ndim < 0 || ndim > SFT_MAX_DIMS) return err_set(err, "tensor '%s': %d dimensions", name, ndim);
    if (strcmp(name, "__metadata__") == 0) return err_set(err, "tensor name '__metadata__' is reserved");
    for (int i = 0; i < w->n; i++)
        if (strcmp(w->e[i].name, name) == 0) return err_set(err, "tensor '%s' added twice", name);
    if (w->n == w->cap) {
        int cap = w->cap ? w->cap * 2 : 64;
        wentry *ne = realloc(w->e, (size_t)cap * sizeof *ne);
        if (!ne) return err_set(err, "out of memory");
        w->e = ne;
        w->cap = cap;
    }
    wentry *e = &w->e[w->n];
    memset(e, 0, sizeof *e);
    size_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return err_set(err, "tensor '%s': negative dimension", name);
        e->shape[i] = shape[i];
        numel *= (size_t)shape[i];
    }
    if (!(e->name = strdup(name))) return err_set(err, "out of memory");
    e->dtype = dt;
    e->ndim = ndim;
    e->data = data;
    e->nbytes = numel * sft_dtype_size(dt);
    w->n++;
    return 0;
}

int sft_writer_metadata(sft_writer *w, const char *key, const char *value, err_t *err) {
    if (!w->metadata && !(w->metadata = cJSON_CreateObject())) return err_set(err, "out of memory");
    cJSON_DeleteItemFromObjectCaseSensitive(w->metadata, key);
    if (!cJSON_AddStringToObject(w->metadata, key, value)) return err_set(err, "out of memory");
    return 0;
}

// Largest elements first, then by name, as the Hugging Face writer orders
// them: with the header padded to 8 bytes, every tensor's data is then
// aligned to its element size.
static int wentry_cmp(const void *a, const void *b) {
    const wentry *x = a, *y = b;
    size_t sx = sft_dtype_size(x->dtype), sy = sft_dtype_size(y->dtype);
    if (sx != sy) return sx > sy ? -1 : 1;
    return strcmp(x->name, y->name);
}

// Builds the header JSON, padded with spaces to a multiple of 8 bytes so
// that the data region starts aligned.
static char *build_header(sft_writer *w, size_t *len) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return NULL;
    if (w->metadata) cJSON_AddItemToObject(root, "__metadata__", cJSON_Duplicate(w->metadata, 1));
    size_t off = 0;
    for (int i = 0; i < w->n; i++) {
        const wentry *e = &w->e[i];
        cJSON *t = cJSON_AddObjectToObject(root, e->name);
        cJSON *shape = cJSON_CreateArray(), *offs = cJSON_CreateArray();
        if (!t || !shape || !offs) {
            cJSON_Delete(shape);
            cJSON_Delete(offs);
            cJSON_Delete(root);
            return NULL;
        }
        cJSON_AddStringToObject(t, "dtype", sft_dtype_name(e->dtype));
        for (int d = 0; d < e->ndim; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)e->shape[d]));
        cJSON_AddItemToObject(t, "shape", shape);
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(off + e->nbytes)));
        cJSON_AddItemToObject(t, "data_offsets", offs);
        off += e->nbytes;
    }
    char *json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!json) return NULL;
    size_t n = strlen(json), padded = (n + 7) & ~(size_t)7;
    char *h = realloc(json, padded + 1);
    if (!h) {
        free(json);
        return NULL;
    }
    memset(h + n, ' ', padded - n);
    h[padded] = '\0';
    *len = padded;
    return h;
}

static int write_all(FILE *f, const void *p, size_t n) { return n == 0 || fwrite(p, 1, n, f) == n ? 0 : -1; }

int sft_writer_write(sft_writer *w, const char *path, err_t *err) {
    if (w->n > 1) qsort(w->e, (size_t)w->n, sizeof *w->e, wentry_cmp);
    size_t hlen;
    char *header = build_header(w, &hlen);
    if (!header) return err_set(err, "%s: out of memory building the header", path);
    size_t tn = strlen(path) + 32;
    char *tmp = malloc(tn);
    FILE *f = NULL;
    int rc = -1;
    if (!tmp) {
        err_set(err, "%s: out of memory", path);
        goto out;
    }
    snprintf(tmp, tn, "%s.tmp.%ld", path, (long)getpid());
    if (!(f = fopen(tmp, "wb"))) {
        err_set(err, "%s: %s", tmp, strerror(errno));
        goto out;
    }
    uint8_t le[8];
    for (int i = 0; i < 8; i++) le[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
    int bad = write_all(f, le, 8) || write_all(f, header, hlen);
    for (int i = 0; i < w->n && !bad; i++) bad = write_all(f, w->e[i].data, w->e[i].nbytes);
    if (bad || fflush(f) != 0 || fsync(fileno(f)) != 0) {
        err_set(err, "%s: write failed: %s", tmp, strerror(errno));
        goto out;
    }
    if (fclose(f) != 0) {
        f = NULL;
        err_set(err, "%s: close failed: %s", tmp, strerror(errno));
        goto out;
    }
    f = NULL;
    if (rename(tmp, path) != 0) {
        err_set(err, "%s: rename failed: %s", path, strerror(errno));
        goto out;
    }
    rc = 0;
out:
    if (f) fclose(f);
    if (rc != 0 && tmp) unlink(tmp);
    free(tmp);
    free(header);
    return rc;
}
