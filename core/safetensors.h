// safetensors: read (mmap) and write the Hugging Face safetensors format.
//
// File layout: 8-byte little-endian header length N, N bytes of JSON
// {"name": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]},
//  "__metadata__": {"k": "v"}}, then the data region. Offsets are relative to
// the start of the data region.
//
// Every header is validated before any tensor is handed out: header length
// bounds, JSON syntax, known dtype, shape x dtype size == byte range, ranges
// inside the file, no overlaps and no holes (as the reference Rust crate
// requires). A corrupt or truncated file yields an error naming the file and
// the tensor; nothing crashes.
//
// A set may span several files: a model folder with model.safetensors, or a
// sharded one with model.safetensors.index.json ({"weight_map": {name: file}}).
#ifndef TESSERA_SAFETENSORS_H
#define TESSERA_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef enum sft_dtype {
    SFT_F32,
    SFT_F16,
    SFT_BF16,
    SFT_U8,
    SFT_I8,
    SFT_I32,
    SFT_I64,
    SFT_BOOL,
    SFT_F64,
    SFT_NDTYPES
} sft_dtype;

#define SFT_MAX_DIMS 8

// A tensor view. `data` points into the mmap'd file (borrowed: valid until
// sft_close). `file` is the path of the file that holds it.
typedef struct sft_tensor {
    const char *name;
    sft_dtype dtype;
    int ndim;
    int64_t shape[SFT_MAX_DIMS];
    int64_t numel;
    const void *data;
    size_t nbytes;
    const char *file;
} sft_tensor;

typedef struct sft sft;

size_t sft_dtype_size(sft_dtype dt);
const char *sft_dtype_name(sft_dtype dt);
// Returns the dtype for a name like "BF16", or -1 if unknown.
int sft_dtype_parse(const char *name);

// Opens a set of tensors. path may be:
//   - a .safetensors file;
//   - a model.safetensors.index.json file (every shard it names is opened);
//   - a folder holding model.safetensors.index.json or model.safetensors
//     (the index wins when both exist).
// Returns a new set; free with sft_close. NULL + err on any invalid input.
sft *sft_open(const char *path, err_t *err);

// Parses an in-memory safetensors image (not copied: buf must outlive the
// set). name is used in error messages. For tests and fuzzing.
sft *sft_open_memory(const void *buf, size_t len, const char *name, err_t *err);

void sft_close(sft *s);

int sft_count(const sft *s);
// Tensors in the order: by file, then by data offset.
const sft_tensor *sft_at(const sft *s, int i);
// NULL if absent.
const sft_tensor *sft_find(const sft *s, const char *name);
// A __metadata__ value of the first file, or NULL.
const char *sft_metadata(const sft *s, const char *key);

// Converts a floating tensor (F32, F16, BF16, F64) to f32 into out, which
// holds t->numel floats. -1 + err for any other dtype.
int sft_to_f32(const sft_tensor *t, float *out, err_t *err);

// Writer: collects tensors, then writes one file atomically (temp + rename).
// Data is borrowed: it must stay valid until sft_writer_write returns.
// As the Hugging Face writer does, tensors are written largest dtype first,
// then by name, and the header is padded with spaces to a multiple of 8
// bytes, so every tensor's data is aligned to its element size.
typedef struct sft_writer sft_writer;

sft_writer *sft_writer_new(void);
int sft_writer_add(sft_writer *w, const char *name, sft_dtype dt, int ndim, const int64_t *shape,
                   const void *data, err_t *err);
int sft_writer_metadata(sft_writer *w, const char *key, const char *value, err_t *err);
int sft_writer_write(sft_writer *w, const char *path, err_t *err);
void sft_writer_free(sft_writer *w);

#endif
