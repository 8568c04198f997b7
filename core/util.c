#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

// Reads the rest of an open file; path names it in errors.
static char *read_stream(FILE *f, const char *path, size_t *len, err_t *err) {
    if (fseek(f, 0, SEEK_END) != 0) goto fail;
    long n = ftell(f);
    if (n < 0 || fseek(f, 0, SEEK_SET) != 0) goto fail;
    char *buf = malloc((size_t)n + 1);
    if (!buf) {
        err_set(err, "%s: out of memory reading %ld bytes", path, n);
        return NULL;
    }
    if (n > 0 && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        goto fail;
    }
    buf[n] = '\0';
    if (len) *len = (size_t)n;
    return buf;
fail:
    err_set(err, "%s: read failed: %s", path, strerror(errno));
    return NULL;
}

char *util_read_file(const char *path, size_t *len, err_t *err) {
    return util_read_file_real(path, len, NULL, err);
}

char *util_read_file_real(const char *path, size_t *len, char **real, err_t *err) {
    if (real) *real = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        err_set(err, "%s: %s", path, strerror(errno));
        return NULL;
    }
    if (real) {
        // The path of the file actually open, not of the name: checking
        // this one leaves no gap for a symlink swapped in between.
        char link[64], buf[PATH_MAX];
        snprintf(link, sizeof link, "/proc/self/fd/%d", fileno(f));
        ssize_t k = readlink(link, buf, sizeof buf - 1);
        if (k <= 0 || !(*real = strndup(buf, (size_t)k))) {
            err_set(err, "%s: cannot tell where the open file lies", path);
            fclose(f);
            return NULL;
        }
    }
    char *data = read_stream(f, path, len, err);
    fclose(f);
    if (!data && real) {
        free(*real);
        *real = NULL;
    }
    return data;
}

int util_write_file_atomic(const char *path, const void *data, size_t len, err_t *err) {
    size_t n = strlen(path) + 32;
    char *tmp = malloc(n);
    if (!tmp) return err_set(err, "%s: out of memory", path);
    snprintf(tmp, n, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        err_set(err, "%s: %s", tmp, strerror(errno));
        free(tmp);
        return -1;
    }
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR) continue;
            err_set(err, "%s: write failed: %s", tmp, strerror(errno));
            goto fail;
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0) {
        err_set(err, "%s: fsync failed: %s", tmp, strerror(errno));
        goto fail;
    }
    close(fd);
    fd = -1;
    if (rename(tmp, path) != 0) {
        err_set(err, "%s: rename failed: %s", path, strerror(errno));
        goto fail;
    }
    free(tmp);
    return 0;
fail:
    if (fd >= 0) close(fd);
    unlink(tmp);
    free(tmp);
    return -1;
}

char *util_path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *s = malloc(a + b + 2);
    if (!s) return NULL;
    memcpy(s, dir, a);
    size_t k = a;
    if (a > 0 && dir[a - 1] != '/') s[k++] = '/';
    memcpy(s + k, name, b + 1);
    return s;
}

int util_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

char *util_dir_tmp_beside(const char *path, err_t *err) {
    const char *slash = strrchr(path, '/');
    int dlen = slash ? (int)(slash - path + 1) : 0;
    size_t n = strlen(path) + 48;
    char *tmp = malloc(n);
    if (!tmp) {
        err_set(err, "%s: out of memory", path);
        return NULL;
    }
    snprintf(tmp, n, "%.*s.%s.tmp.%ld", dlen, path, path + dlen, (long)getpid());
    util_rm_rf(tmp); // left over by a killed run with the same pid
    if (mkdir(tmp, 0755) != 0) {
        err_set(err, "%s: %s", tmp, strerror(errno));
        free(tmp);
        return NULL;
    }
    return tmp;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

void util_rm_rf(const char *path) { nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

int util_dir_publish(const char *tmp, const char *path, err_t *err) {
    if (!util_is_dir(path)) {
        if (rename(tmp, path) != 0) return err_set(err, "%s: rename: %s", path, strerror(errno));
        return 0;
    }
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_EXCHANGE) == 0) {
        util_rm_rf(tmp); // now holds the old folder
        return 0;
    }
    size_t n = strlen(path) + 48;
    char *old = malloc(n);
    if (!old) return err_set(err, "%s: out of memory", path);
    snprintf(old, n, "%s.old.%ld", path, (long)getpid());
    int rc = 0;
    if (rename(path, old) != 0) {
        rc = err_set(err, "%s: rename: %s", path, strerror(errno));
    } else if (rename(tmp, path) != 0) {
        rc = err_set(err, "%s: rename: %s", path, strerror(errno));
        rename(old, path);
    } else {
        util_rm_rf(old);
    }
    free(old);
    return rc;
}

int util_is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

void util_buf_put(util_buf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void util_buf_puts(util_buf *b, const char *s) { util_buf_put(b, s, strlen(s)); }

#define GOLDEN 0x9e3779b97f4a7c15ull

// The first four outputs of a splitmix64 generator started at seed.
void util_rng_seed(util_rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) r->s[i] = util_splitmix64(seed + (uint64_t)i * GOLDEN);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t util_rng_next(util_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double util_rng_uniform(util_rng *r) { return (double)(util_rng_next(r) >> 11) * 0x1.0p-53; }

double util_rng_normal(util_rng *r) {
    double u1 = util_rng_uniform(r), u2 = util_rng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

void util_shape_str(char *buf, size_t n, int ndim, const int64_t *shape) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

double util_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// The digits of v's shortest round-trip form (%e with the fewest digits
// that strtod reads back as v) into digits (no point, no sign); returns
// the decimal exponent.
static int shortest_digits(double v, char digits[24]) {
    char e[40];
    for (int p = 1; p <= 17; p++) {
        snprintf(e, sizeof e, "%.*e", p - 1, v);
        if (strtod(e, NULL) == v) break;
    }
    const char *q = e + (v < 0);
    int nd = 0;
    for (; *q && *q != 'e'; q++)
        if (*q != '.') digits[nd++] = *q;
    digits[nd] = '\0';
    return atoi(q + 1);
}

void util_py_float(double v, char *buf, size_t n) {
    if (isnan(v) || isinf(v) || v == 0) {
        snprintf(buf, n, "%s", isnan(v) ? "NaN" : isinf(v) ? (v > 0 ? "Infinity" : "-Infinity")
                               : signbit(v)  ? "-0.0" : "0.0");
        return;
    }
    char digits[24];
    int x = shortest_digits(v, digits), nd = (int)strlen(digits);
    const char *sign = v < 0 ? "-" : "";
    if (x < -4 || x >= 16) {
        snprintf(buf, n, "%s%c%s%se%c%02d", sign, digits[0], nd > 1 ? "." : "", digits + 1, x < 0 ? '-' : '+',
                 x < 0 ? -x : x);
    } else if (x < 0) {
        snprintf(buf, n, "%s0.%.*s%s", sign, -x - 1, "0000", digits);
    } else if (nd <= x + 1) {
        snprintf(buf, n, "%s%s%.*s.0", sign, digits, x + 1 - nd, "0000000000000000");
    } else {
        snprintf(buf, n, "%s%.*s.%s", sign, x + 1, digits, digits + x + 1);
    }
}
