// gguf: the GGUF writer and a validating reader (format in gguf.h).
#include "gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

// ggml's block formats: elements per block and bytes per block.
static const struct {
    uint32_t type;
    const char *name;
    int block, bytes;
} dtypes[] = {
    {0, "F32", 1, 4},       {1, "F16", 1, 2},        {2, "Q4_0", 32, 18},    {3, "Q4_1", 32, 20},
    {6, "Q5_0", 32, 22},    {7, "Q5_1", 32, 24},     {8, "Q8_0", 32, 34},    {9, "Q8_1", 32, 36},
    {10, "Q2_K", 256, 84},  {11, "Q3_K", 256, 110},  {12, "Q4_K", 256, 144}, {13, "Q5_K", 256, 176},
    {14, "Q6_K", 256, 210}, {15, "Q8_K", 256, 292},  {24, "I8", 1, 1},       {25, "I16", 1, 2},
    {26, "I32", 1, 4},      {27, "I64", 1, 8},       {28, "F64", 1, 8},      {30, "BF16", 1, 2},
};
#define N_DTYPES (sizeof dtypes / sizeof dtypes[0])

static int dtype_index(uint32_t t) {
    for (size_t i = 0; i < N_DTYPES; i++)
        if (dtypes[i].type == t) return (int)i;
    return -1;
}

const char *gguf_dtype_name(uint32_t t) {
    int i = dtype_index(t);
    return i >= 0 ? dtypes[i].name : "an unknown type";
}

uint64_t gguf_dtype_bytes(uint32_t t, int64_t n) {
    int i = dtype_index(t);
    if (i < 0 || n < 0 || n % dtypes[i].block) return 0;
    return (uint64_t)(n / dtypes[i].block) * (uint64_t)dtypes[i].bytes;
}

// Sizes of the fixed-size key/value types (0 for string and array).
static size_t scalar_size(gguf_type t) {
    static const size_t sz[GGUF_T_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return (unsigned)t < GGUF_T_COUNT ? sz[t] : 0;
}

static uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

// ---- writer ------------------------------------------------------------------

typedef struct wtensor {
    char *name;
    gguf_dtype type;
    int ndim;
    int64_t ne[GGUF_MAX_DIMS];
    const void *data;
    uint64_t nbytes, offset;
} wtensor;

struct gguf_writer {
    uint8_t *kv; // the key/value section as it will be written
    size_t kv_len, kv_cap;
    char **keys;
    int n_kv, cap_keys;
    wtensor *t;
    int n_t, cap_t;
    uint64_t data_len; // the data section so far, padded
    err_t err;
    int failed;
};

gguf_writer *gguf_writer_new(void) { return calloc(1, sizeof(gguf_writer)); }

void gguf_writer_free(gguf_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n_kv; i++) free(w->keys[i]);
    for (int i = 0; i < w->n_t; i++) free(w->t[i].name);
    free(w->keys);
    free(w->t);
    free(w->kv);
    free(w);
}

// Keeps the first failure only: later ones are usually its consequences.
static void fail(gguf_writer *w, const char *what, const char *name) {
    if (w->failed) return;
    w->failed = 1;
    err_set(&w->err, "%s: %s", name, what);
}

static void put(gguf_writer *w, const void *p, size_t n) {
    if (w->failed) return;
    if (w->kv_len + n > w->kv_cap) {
        size_t cap = w->kv_cap ? w->kv_cap : 4096;
        while (cap < w->kv_len + n) cap *= 2;
        uint8_t *q = realloc(w->kv, cap);
        if (!q) { fail(w, "out of memory", "key/value section"); return; }
        w->kv = q;
        w->kv_cap = cap;
    }
    memcpy(w->kv + w->kv_len, p, n);
    w->kv_len += n;
}

static void put_u32(gguf_writer *w, uint32_t v) { put(w, &v, 4); }
static void put_u64(gguf_writer *w, uint64_t v) { put(w, &v, 8); }
static void put_str(gguf_writer *w, const char *s) {
    size_t n = strlen(s);
    put_u64(w, n);
    put(w, s, n);
}

// Records the key (refusing a duplicate) and writes it with its type.
static int begin_kv(gguf_writer *w, const char *key, gguf_type type) {
    if (w->failed) return -1;
    for (int i = 0; i < w->n_kv; i++)
        if (strcmp(w->keys[i], key) == 0) { fail(w, "duplicate key", key); return -1; }
    if (w->n_kv == w->cap_keys) {
        int cap = w->cap_keys ? 2 * w->cap_keys : 32;
        char **k = realloc(w->keys, (size_t)cap * sizeof *k);
        if (!k) { fail(w, "out of memory", key); return -1; }
        w->keys = k;
        w->cap_keys = cap;
    }
    if (!(w->keys[w->n_kv] = strdup(key))) { fail(w, "out of memory", key); return -1; }
    w->n_kv++;
    put_str(w, key);
    put_u32(w, (uint32_t)type);
    return w->failed ? -1 : 0;
}

void gguf_writer_str(gguf_writer *w, const char *key, const char *v) {
    if (begin_kv(w, key, GGUF_T_STR) == 0) put_str(w, v);
}

void gguf_writer_u32(gguf_writer *w, const char *key, uint32_t v) {
    if (begin_kv(w, key, GGUF_T_U32) == 0) put_u32(w, v);
}

void gguf_writer_i32(gguf_writer *w, const char *key, int32_t v) {
    if (begin_kv(w, key, GGUF_T_I32) == 0) put(w, &v, 4);
}

void gguf_writer_f32(gguf_writer *w, const char *key, float v) {
    if (begin_kv(w, key, GGUF_T_F32) == 0) put(w, &v, 4);
}

void gguf_writer_bool(gguf_writer *w, const char *key, int v) {
    uint8_t b = v != 0;
    if (begin_kv(w, key, GGUF_T_BOOL) == 0) put(w, &b, 1);
}

void gguf_writer_arr_str(gguf_writer *w, const char *key, const char *const *v, size_t n) {
    if (begin_kv(w, key, GGUF_T_ARR) < 0) return;
    put_u32(w, GGUF_T_STR);
    put_u64(w, n);
    for (size_t i = 0; i < n; i++) put_str(w, v[i]);
}

void gguf_writer_arr_i32(gguf_writer *w, const char *key, const int32_t *v, size_t n) {
    if (begin_kv(w, key, GGUF_T_ARR) < 0) return;
    put_u32(w, GGUF_T_I32);
    put_u64(w, n);
    put(w, v, n * 4);
}

void gguf_writer_tensor(gguf_writer *w, const char *name, gguf_dtype type, int ndim, const int64_t *ne,
                        const void *data) {
    if (w->failed) return;
    if (type != GGUF_F32 && type != GGUF_F16 && type != GGUF_BF16) {
        fail(w, "the writer takes F32, F16 or BF16", name);
        return;
    }
    if (ndim < 1 || ndim > GGUF_MAX_DIMS) { fail(w, "expected 1 to 4 dimensions", name); return; }
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) {
        if (ne[d] < 1) { fail(w, "a dimension below 1", name); return; }
        n *= ne[d];
    }
    for (int i = 0; i < w->n_t; i++)
        if (strcmp(w->t[i].name, name) == 0) { fail(w, "duplicate tensor name", name); return; }
    if (w->n_t == w->cap_t) {
        int cap = w->cap_t ? 2 * w->cap_t : 64;
        wtensor *t = realloc(w->t, (size_t)cap * sizeof *t);
        if (!t) { fail(w, "out of memory", name); return; }
        w->t = t;
        w->cap_t = cap;
    }
    wtensor *t = &w->t[w->n_t];
    *t = (wtensor){.name = strdup(name), .type = type, .ndim = ndim, .data = data};
    if (!t->name) { fail(w, "out of memory", name); return; }
    memcpy(t->ne, ne, (size_t)ndim * sizeof *ne);
    t->nbytes = gguf_dtype_bytes(type, n);
    t->offset = w->data_len;
    w->data_len = align_up(t->offset + t->nbytes, GGUF_ALIGNMENT);
    w->n_t++;
}

int gguf_writer_n_tensors(const gguf_writer *w) { return w->n_t; }

static int write_all(FILE *fp, const void *p, size_t n) { return n == 0 || fwrite(p, 1, n, fp) == n ? 0 : -1; }

static int write_pad(FILE *fp, uint64_t n) {
    static const uint8_t zero[GGUF_ALIGNMENT];
    return write_all(fp, zero, (size_t)n);
}

// Header, key/values, tensor infos, padding, then each tensor padded.
static int write_body(gguf_writer *w, FILE *fp) {
    uint32_t head[2] = {0x46554747u /* "GGUF" */, GGUF_VERSION};
    uint64_t counts[2] = {(uint64_t)w->n_t, (uint64_t)w->n_kv};
    uint64_t pos = sizeof head + sizeof counts + w->kv_len;
    if (write_all(fp, head, sizeof head) || write_all(fp, counts, sizeof counts) || write_all(fp, w->kv, w->kv_len))
        return -1;
    for (int i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        uint64_t len = strlen(t->name), ne[GGUF_MAX_DIMS];
        uint32_t nd = (uint32_t)t->ndim, type = (uint32_t)t->type;
        for (int d = 0; d < t->ndim; d++) ne[d] = (uint64_t)t->ne[d];
        if (write_all(fp, &len, 8) || write_all(fp, t->name, len) || write_all(fp, &nd, 4) ||
            write_all(fp, ne, 8 * nd) || write_all(fp, &type, 4) || write_all(fp, &t->offset, 8))
            return -1;
        pos += 8 + len + 4 + 8 * nd + 4 + 8;
    }
    if (write_pad(fp, align_up(pos, GGUF_ALIGNMENT) - pos)) return -1;
    for (int i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        uint64_t end = i + 1 < w->n_t ? w->t[i + 1].offset : t->offset + t->nbytes;
        if (write_all(fp, t->data, (size_t)t->nbytes) || write_pad(fp, end - t->offset - t->nbytes)) return -1;
    }
    return 0;
}

int gguf_writer_write(gguf_writer *w, const char *path, err_t *err) {
    if (w->failed) {
        if (err) *err = w->err;
        return err_wrap(err, "%s", path);
    }
    size_t n = strlen(path) + 5;
    char *tmp = malloc(n);
    if (!tmp) return err_set(err, "%s: out of memory", path);
    snprintf(tmp, n, "%s.tmp", path);
    FILE *fp = fopen(tmp, "wb");
    int rc = -1;
    if (!fp) {
        err_set(err, "%s: %s", tmp, strerror(errno));
    } else if (write_body(w, fp) < 0 || fflush(fp) != 0 || fsync(fileno(fp)) != 0) {
        err_set(err, "%s: write failed: %s", tmp, strerror(errno));
        fclose(fp);
        unlink(tmp);
    } else if (fclose(fp) != 0 || rename(tmp, path) != 0) {
        err_set(err, "%s: %s", path, strerror(errno));
        unlink(tmp);
    } else {
        rc = 0;
    }
    free(tmp);
    return rc;
}

// ---- reader ------------------------------------------------------------------

typedef struct cursor {
    const uint8_t *p;
    size_t len, pos;
    const char *name; // the file, for messages
    err_t *err;
} cursor;

typedef struct mapping {
    void *addr;
    size_t len;
} mapping;

static int take(cursor *c, void *out, size_t n, const char *what) {
    if (n > c->len - c->pos) return err_set(c->err, "%s: truncated at byte %zu reading %s", c->name, c->pos, what);
    memcpy(out, c->p + c->pos, n);
    c->pos += n;
    return 0;
}

// A length-prefixed string as a new NUL-terminated copy; NULL + err.
static char *take_str(cursor *c, const char *what) {
    uint64_t n = 0;
    if (take(c, &n, 8, what) < 0) return NULL;
    if (n > c->len - c->pos) {
        err_set(c->err, "%s: %s: string of %llu bytes runs past the end of the file", c->name, what,
                (unsigned long long)n);
        return NULL;
    }
    char *s = malloc((size_t)n + 1);
    if (!s) {
        err_set(c->err, "%s: out of memory reading %s", c->name, what);
        return NULL;
    }
    memcpy(s, c->p + c->pos, (size_t)n);
    s[n] = 0;
    c->pos += (size_t)n;
    return s;
}

static int take_scalar(cursor *c, gguf_kv *kv, gguf_type t) {
    uint8_t b[8] = {0};
    size_t n = scalar_size(t);
    if (take(c, b, n, kv->key) < 0) return -1;
    switch (t) {
    case GGUF_T_U8: case GGUF_T_BOOL: kv->num.u = b[0]; break;
    case GGUF_T_I8: kv->num.i = (int8_t)b[0]; break;
    case GGUF_T_U16: { uint16_t v; memcpy(&v, b, 2); kv->num.u = v; break; }
    case GGUF_T_I16: { int16_t v; memcpy(&v, b, 2); kv->num.i = v; break; }
    case GGUF_T_U32: { uint32_t v; memcpy(&v, b, 4); kv->num.u = v; break; }
    case GGUF_T_I32: { int32_t v; memcpy(&v, b, 4); kv->num.i = v; break; }
    case GGUF_T_F32: { float v; memcpy(&v, b, 4); kv->num.f = v; break; }
    case GGUF_T_U64: memcpy(&kv->num.u, b, 8); break;
    case GGUF_T_I64: memcpy(&kv->num.i, b, 8); break;
    case GGUF_T_F64: memcpy(&kv->num.f, b, 8); break;
    default: break;
    }
    return 0;
}

static int take_array(cursor *c, gguf_kv *kv) {
    uint32_t et = 0;
    if (take(c, &et, 4, kv->key) < 0 || take(c, &kv->n, 8, kv->key) < 0) return -1;
    kv->arr_type = (gguf_type)et;
    if (et >= GGUF_T_COUNT || et == GGUF_T_ARR)
        return err_set(c->err, "%s: %s: array of type %u (expected a scalar or string type)", c->name, kv->key, et);
    if (et != GGUF_T_STR) {
        size_t sz = scalar_size((gguf_type)et);
        if (kv->n > (c->len - c->pos) / sz)
            return err_set(c->err, "%s: %s: array of %llu elements runs past the end of the file", c->name, kv->key,
                           (unsigned long long)kv->n);
        kv->arr = c->p + c->pos;
        c->pos += (size_t)kv->n * sz;
        return 0;
    }
    // Each string takes at least its 8-byte length: bounds the allocation.
    if (kv->n > (c->len - c->pos) / 8)
        return err_set(c->err, "%s: %s: %llu strings cannot fit in the file", c->name, kv->key,
                       (unsigned long long)kv->n);
    kv->strs = calloc((size_t)kv->n + 1, sizeof *kv->strs);
    if (!kv->strs) return err_set(c->err, "%s: %s: out of memory", c->name, kv->key);
    for (uint64_t i = 0; i < kv->n; i++)
        if (!(kv->strs[i] = take_str(c, kv->key))) return -1;
    return 0;
}

static int take_kv(cursor *c, gguf_file *f, int64_t i) {
    gguf_kv *kv = &f->kv[i];
    uint32_t t = 0;
    if (!(kv->key = take_str(c, "a key")) || take(c, &t, 4, kv->key) < 0) return -1;
    for (int64_t j = 0; j < i; j++)
        if (strcmp(f->kv[j].key, kv->key) == 0) return err_set(c->err, "%s: duplicate key %s", c->name, kv->key);
    if (t >= GGUF_T_COUNT) return err_set(c->err, "%s: %s: unknown value type %u", c->name, kv->key, t);
    kv->type = (gguf_type)t;
    kv->n = 1;
    if (t == GGUF_T_ARR) return take_array(c, kv);
    if (t == GGUF_T_STR) return (kv->str = take_str(c, kv->key)) ? 0 : -1;
    return take_scalar(c, kv, kv->type);
}

static int take_tensor(cursor *c, gguf_file *f, int64_t i) {
    gguf_tensor *t = &f->tensors[i];
    uint32_t nd = 0;
    if (!(t->name = take_str(c, "a tensor name")) || take(c, &nd, 4, t->name) < 0) return -1;
    for (int64_t j = 0; j < i; j++)
        if (strcmp(f->tensors[j].name, t->name) == 0)
            return err_set(c->err, "%s: duplicate tensor %s", c->name, t->name);
    if (nd < 1 || nd > GGUF_MAX_DIMS)
        return err_set(c->err, "%s: tensor %s: %u dimensions (expected 1 to 4)", c->name, t->name, nd);
    t->ndim = (int)nd;
    t->numel = 1;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    for (int d = 0; d < t->ndim; d++) {
        uint64_t v = 0;
        if (take(c, &v, 8, t->name) < 0) return -1;
        if (v < 1 || v > ((uint64_t)1 << 40) || (uint64_t)t->numel > ((uint64_t)1 << 50) / v)
            return err_set(c->err, "%s: tensor %s: dimension %d is %llu", c->name, t->name, d, (unsigned long long)v);
        t->ne[d] = (int64_t)v;
        t->numel *= (int64_t)v;
    }
    if (take(c, &t->type, 4, t->name) < 0 || take(c, &t->offset, 8, t->name) < 0) return -1;
    t->nbytes = gguf_dtype_bytes(t->type, t->numel);
    if (dtype_index(t->type) >= 0 && t->nbytes == 0)
        return err_set(c->err, "%s: tensor %s: %lld elements are not whole %s blocks", c->name, t->name,
                       (long long)t->numel, gguf_dtype_name(t->type));
    return 0;
}

static int set_alignment(cursor *c, gguf_file *f) {
    const gguf_kv *a = gguf_find_kv(f, "general.alignment");
    f->alignment = GGUF_ALIGNMENT;
    if (!a) return 0;
    if (a->type != GGUF_T_U32 || a->num.u == 0 || (a->num.u & (a->num.u - 1)))
        return err_set(c->err, "%s: general.alignment: expected a power of two as u32", c->name);
    f->alignment = (uint32_t)a->num.u;
    return 0;
}

// Offsets aligned, data inside the file.
static int check_tensors(cursor *c, gguf_file *f) {
    uint64_t avail = f->data_offset <= c->len ? c->len - f->data_offset : 0;
    for (int64_t i = 0; i < f->n_tensors; i++) {
        gguf_tensor *t = &f->tensors[i];
        if (t->offset % f->alignment)
            return err_set(c->err, "%s: tensor %s: offset %llu is not a multiple of the alignment %u", c->name,
                           t->name, (unsigned long long)t->offset, f->alignment);
        if (t->offset > avail || t->nbytes > avail - t->offset)
            return err_set(c->err, "%s: tensor %s: data [%llu, +%llu) runs past the end of the file", c->name,
                           t->name, (unsigned long long)t->offset, (unsigned long long)t->nbytes);
        t->data = c->p + f->data_offset + t->offset;
    }
    return 0;
}

static int parse(cursor *c, gguf_file *f) {
    uint32_t magic = 0;
    uint64_t nt = 0, nkv = 0;
    if (take(c, &magic, 4, "the magic") < 0 || take(c, &f->version, 4, "the version") < 0 ||
        take(c, &nt, 8, "the tensor count") < 0 || take(c, &nkv, 8, "the key/value count") < 0)
        return -1;
    if (magic != 0x46554747u) return err_set(c->err, "%s: not a GGUF file (no \"GGUF\" magic)", c->name);
    if (f->version != 2 && f->version != 3)
        return err_set(c->err, "%s: GGUF version %u (expected 2 or 3)", c->name, f->version);
    // Each key/value and tensor info takes at least 12 bytes: bounds the allocations.
    if (nt > c->len / 12 || nkv > c->len / 12)
        return err_set(c->err, "%s: %llu tensors and %llu key/values cannot fit in the file", c->name,
                       (unsigned long long)nt, (unsigned long long)nkv);
    f->kv = calloc((size_t)nkv + 1, sizeof *f->kv);
    f->tensors = calloc((size_t)nt + 1, sizeof *f->tensors);
    if (!f->kv || !f->tensors) return err_set(c->err, "%s: out of memory", c->name);
    for (f->n_kv = 0; f->n_kv < (int64_t)nkv; f->n_kv++)
        if (take_kv(c, f, f->n_kv) < 0) return f->n_kv++, -1;
    for (f->n_tensors = 0; f->n_tensors < (int64_t)nt; f->n_tensors++)
        if (take_tensor(c, f, f->n_tensors) < 0) return f->n_tensors++, -1;
    if (set_alignment(c, f) < 0) return -1;
    f->data_offset = align_up(c->pos, f->alignment);
    return check_tensors(c, f);
}

gguf_file *gguf_open_memory(const void *buf, size_t len, const char *name, err_t *err) {
    gguf_file *f = calloc(1, sizeof *f);
    if (!f) {
        err_set(err, "%s: out of memory", name);
        return NULL;
    }
    cursor c = {.p = buf, .len = len, .name = name, .err = err};
    f->size = len;
    if (parse(&c, f) < 0) {
        gguf_close(f);
        return NULL;
    }
    return f;
}

gguf_file *gguf_open(const char *path, err_t *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        err_set(err, "%s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    void *addr = MAP_FAILED;
    if (fstat(fd, &st) == 0 && st.st_size > 0)
        addr = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (addr == MAP_FAILED) {
        err_set(err, "%s: cannot map: %s", path, st.st_size > 0 ? strerror(e) : "empty file");
        return NULL;
    }
    gguf_file *f = gguf_open_memory(addr, (size_t)st.st_size, path, err);
    mapping *m = f ? malloc(sizeof *m) : NULL;
    if (!m) {
        if (f) err_set(err, "%s: out of memory", path);
        gguf_close(f);
        munmap(addr, (size_t)st.st_size);
        return NULL;
    }
    *m = (mapping){addr, (size_t)st.st_size};
    f->map = m;
    return f;
}

void gguf_close(gguf_file *f) {
    if (!f) return;
    for (int64_t i = 0; f->kv && i < f->n_kv; i++) {
        gguf_kv *kv = &f->kv[i];
        for (uint64_t j = 0; kv->strs && j < kv->n && kv->strs[j]; j++) free(kv->strs[j]);
        free(kv->strs);
        free(kv->str);
        free(kv->key);
    }
    for (int64_t i = 0; f->tensors && i < f->n_tensors; i++) free(f->tensors[i].name);
    free(f->kv);
    free(f->tensors);
    if (f->map) {
        mapping *m = f->map;
        munmap(m->addr, m->len);
        free(m);
    }
    free(f);
}

const gguf_kv *gguf_find_kv(const gguf_file *f, const char *key) {
    for (int64_t i = 0; i < f->n_kv; i++)
        if (strcmp(f->kv[i].key, key) == 0) return &f->kv[i];
    return NULL;
}

const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name) {
    for (int64_t i = 0; i < f->n_tensors; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}
