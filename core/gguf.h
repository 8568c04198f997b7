// gguf: write and read GGUF files, the single-file model format of ggml and
// llama.cpp (version 3). Used by bench/gguf to hand our models and adapters
// to llama.cpp for side-by-side benchmarks; nothing in serving reads GGUF.
//
// File layout (every number little-endian):
//   "GGUF", u32 version, u64 tensor count, u64 key/value count;
//   key/value pairs: string key, u32 value type, value (a string is a u64
//     length and its bytes, no NUL; an array is a u32 element type, a u64
//     count and the elements);
//   tensor infos: string name, u32 ndim, u64 ne[ndim] (ne[0] varies fastest,
//     so a row-major [out, in] matrix is ne = {in, out}), u32 ggml type,
//     u64 offset of its data from the start of the data section;
//   padding to the alignment (general.alignment, 32 when absent), then the
//   data section, each tensor's data starting at a multiple of the alignment.
#ifndef TESSERA_GGUF_H
#define TESSERA_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define GGUF_VERSION 3
#define GGUF_ALIGNMENT 32 // the default, which the writer uses
#define GGUF_MAX_DIMS 4

// Key/value types, as numbered in the file.
typedef enum gguf_type {
    GGUF_T_U8 = 0,
    GGUF_T_I8 = 1,
    GGUF_T_U16 = 2,
    GGUF_T_I16 = 3,
    GGUF_T_U32 = 4,
    GGUF_T_I32 = 5,
    GGUF_T_F32 = 6,
    GGUF_T_BOOL = 7,
    GGUF_T_STR = 8,
    GGUF_T_ARR = 9,
    GGUF_T_U64 = 10,
    GGUF_T_I64 = 11,
    GGUF_T_F64 = 12,
    GGUF_T_COUNT
} gguf_type;

// Tensor element types (ggml's numbering). The writer takes F32, F16 and
// BF16; the reader knows the sizes of these and of the common quantized
// block formats (what llama-quantize writes), and takes any other type
// without a size check (nbytes 0).
typedef enum gguf_dtype {
    GGUF_F32 = 0,
    GGUF_F16 = 1,
    GGUF_Q4_0 = 2,
    GGUF_Q8_0 = 8,
    GGUF_Q6_K = 14,
    GGUF_BF16 = 30,
} gguf_dtype;

// "F32", "Q4_0", ... or "an unknown type" for a type the table lacks.
const char *gguf_dtype_name(uint32_t t);
// Bytes of n elements of type t (n a multiple of its block size), or 0 if
// the type is unknown or n is not a whole number of blocks.
uint64_t gguf_dtype_bytes(uint32_t t, int64_t n);

// ---- writer ----------------------------------------------------------------
// Collects key/value pairs (copied) and tensors (data borrowed: it must stay
// valid until gguf_writer_write returns), then writes the file in the order
// added: NAME.tmp, then renamed over NAME. The adding functions never fail
// on their own: the first problem (out of memory, a duplicate key or tensor
// name, a bad shape) is kept and reported by gguf_writer_write.
typedef struct gguf_writer gguf_writer;

gguf_writer *gguf_writer_new(void); // NULL on out of memory
void gguf_writer_free(gguf_writer *w);

void gguf_writer_str(gguf_writer *w, const char *key, const char *v);
void gguf_writer_u32(gguf_writer *w, const char *key, uint32_t v);
void gguf_writer_i32(gguf_writer *w, const char *key, int32_t v);
void gguf_writer_f32(gguf_writer *w, const char *key, float v);
void gguf_writer_bool(gguf_writer *w, const char *key, int v);
void gguf_writer_arr_str(gguf_writer *w, const char *key, const char *const *v, size_t n);
void gguf_writer_arr_i32(gguf_writer *w, const char *key, const int32_t *v, size_t n);
// ne[0] is the fastest-varying dimension (see above); 1 <= ndim <= 4.
void gguf_writer_tensor(gguf_writer *w, const char *name, gguf_dtype type, int ndim, const int64_t *ne,
                        const void *data);

int gguf_writer_n_tensors(const gguf_writer *w);
// 0, or -1 + err naming the file (or the key / tensor that was refused).
int gguf_writer_write(gguf_writer *w, const char *path, err_t *err);

// ---- reader ----------------------------------------------------------------
// gguf_open maps the file and validates all of it before returning: magic,
// version (2 or 3), every length inside the file, known key/value types,
// no nested arrays, no duplicate key or tensor name, 1..4 dimensions >= 1,
// alignment a power of two, every tensor offset a multiple of it and its
// data (for known types) inside the file. Errors name the file and the key
// or tensor.
typedef struct gguf_kv {
    char *key;
    gguf_type type;
    gguf_type arr_type; // arrays: the element type
    uint64_t n;         // arrays: the element count
    union {
        uint64_t u; // unsigned integers and bool
        int64_t i;  // signed integers
        double f;   // F32, F64
    } num;
    char *str;       // GGUF_T_STR (NUL-terminated copy)
    char **strs;     // arrays of strings (n copies)
    const void *arr; // numeric arrays: n elements in the file, unaligned (memcpy them)
} gguf_kv;

typedef struct gguf_tensor {
    char *name;
    uint32_t type; // a gguf_dtype, or another ggml type
    int ndim;
    int64_t ne[GGUF_MAX_DIMS]; // unused dimensions are 1
    int64_t numel;
    uint64_t offset;           // from the start of the data section
    uint64_t nbytes;           // 0 for an unknown type
    const void *data;          // into the mapping (borrowed until gguf_close)
} gguf_tensor;

typedef struct gguf_file {
    uint32_t version;
    uint32_t alignment;
    uint64_t data_offset; // of the data section, from the start of the file
    size_t size;
    int64_t n_kv, n_tensors;
    gguf_kv *kv;
    gguf_tensor *tensors;
    void *map; // private
} gguf_file;

// Returns a new file view; free with gguf_close. NULL + err on any problem.
gguf_file *gguf_open(const char *path, err_t *err);
// The same over a buffer (not copied: it must outlive the view); name is
// used in messages.
gguf_file *gguf_open_memory(const void *buf, size_t len, const char *name, err_t *err);
void gguf_close(gguf_file *f);

const gguf_kv *gguf_find_kv(const gguf_file *f, const char *key);       // NULL if absent
const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name); // NULL if absent

#endif
