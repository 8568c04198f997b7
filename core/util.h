// util: small helpers shared by every module: whole-file reads, atomic
// writes, number conversions between the float formats checkpoints use.
#ifndef TESSERA_UTIL_H
#define TESSERA_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "err.h"
#include "numeric.h"

// Reads a whole file into a new NUL-terminated buffer; *len (if not NULL)
// gets its length without the NUL. Returns NULL and fills err on failure.
// Free with free().
char *util_read_file(const char *path, size_t *len, err_t *err);
// The same, and *real (when not NULL) gets the real path of the file that
// was read (a new string to free(); /proc/self/fd of the open file, so a
// check of it is a check of the bytes read, symlinks resolved).
char *util_read_file_real(const char *path, size_t *len, char **real, err_t *err);

// Writes data to path atomically: a temporary file in the same folder,
// fsync, then rename over path. Readers never see a partial file.
int util_write_file_atomic(const char *path, const void *data, size_t len, err_t *err);

// Frees memory a struct owns but shows read-only (a const char *name it
// strdup'ed). The cast goes through uintptr_t on purpose: -Wcast-qual
// guards every other place where const is cast away.
static inline void util_free_const(const void *p) { free((void *)(uintptr_t)p); }

// Joins a folder and a name with one '/' into a new string (free with free()).
char *util_path_join(const char *dir, const char *name);

int util_is_dir(const char *path);

// Folders published whole (models, adapters): build in a hidden temporary
// folder beside the destination (".NAME.tmp.PID": same filesystem, and
// folder watchers skip dot-names), then publish it. A reader of the
// destination sees the old folder or the new one, never a partial one.
//
// Creates that temporary folder; returns its path (free()) or NULL + err.
char *util_dir_tmp_beside(const char *path, err_t *err);
// Moves tmp to path. When path exists the two are swapped in one step
// (renameat2 RENAME_EXCHANGE; where the filesystem lacks it, the old folder
// is moved aside first, leaving a short gap) and the old one is removed.
int util_dir_publish(const char *tmp, const char *path, err_t *err);
// Removes a folder tree (best effort, like rm -rf).
void util_rm_rf(const char *path);
int util_is_file(const char *path);

// A growable, always NUL-terminated byte string. Zero-initialise it; free
// p with free(). After an allocation failure, further puts are dropped and
// oom stays set, so a builder checks once at the end.
typedef struct util_buf {
    char *p;
    size_t len, cap;
    int oom;
} util_buf;
void util_buf_put(util_buf *b, const char *s, size_t n);
void util_buf_puts(util_buf *b, const char *s);

// bf16 / f16 <-> f32 under their util_ names: the one copy is in
// kernels/numeric.h (the kernels read bf16 too). bf16 is rounded to nearest
// even, as torch does.
static inline float util_bf16_to_f32(uint16_t h) { return num_bf16_to_f32(h); }
static inline uint16_t util_f32_to_bf16(float f) { return num_f32_to_bf16(f); }
static inline float util_f16_to_f32(uint16_t h) { return num_f16_to_f32(h); }
static inline uint16_t util_f32_to_f16(float f) { return num_f32_to_f16(f); }

// Deterministic random numbers (splitmix64 seeding a xoshiro256**), so that
// generated models and adapters are identical on every machine.
typedef struct util_rng {
    uint64_t s[4];
} util_rng;
void util_rng_seed(util_rng *r, uint64_t seed);
uint64_t util_rng_next(util_rng *r);
// Uniform in [0, 1).
double util_rng_uniform(util_rng *r);
// Standard normal (Box-Muller).
double util_rng_normal(util_rng *r);

// splitmix64's output function on x + the golden-ratio increment: a cheap,
// well-mixed 64-bit hash of x (hash tables, per-step seeds). Successive
// splitmix64 outputs from a state s are util_splitmix64(s + k * 0x9e3779b97f4a7c15).
static inline uint64_t util_splitmix64(uint64_t x) { return num_splitmix64(x); }

// "[a, b, ...]": a tensor's shape for error messages, into buf[0..n).
void util_shape_str(char *buf, size_t n, int ndim, const int64_t *shape);

// Seconds on the monotonic clock (for durations; the epoch is arbitrary).
double util_now_s(void);

// Writes v as Python's json.dumps writes a float (repr: the shortest digits
// that read back as the same double; fixed notation for exponents in
// [-4, 16), else d.ddde+XX; always a '.' or an 'e'; NaN, Infinity,
// -Infinity for the non-finite) into buf[0..n).
void util_py_float(double v, char *buf, size_t n);

#endif
