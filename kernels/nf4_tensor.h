// nf4_tensor: the layout of a bitsandbytes NF4 weight as the kernels read it
// (core/nf4.h makes, loads and writes these; see it for how the codes and
// the double-quantized absmax are chosen).
//
//   - The weight is one flat row-major array of numel values, cut into
//     blocks of NF4_BLOCK consecutive values (a block may span two rows);
//     numel is a multiple of NF4_BLOCK.
//   - Each value is a 4-bit index into code[16]; two per byte, element 2i in
//     the HIGH nibble of byte i, element 2i+1 in the low nibble.
//   - Block b's scale is absmax[b], stored as f32, or double-quantized
//     (bnb's compress_statistics): an 8-bit code into dyn[256] per block,
//     one f32 nested_absmax per NF4_NESTED_BLOCK blocks and one offset;
//     decoded absmax = dyn[code] * nested_absmax + offset (two roundings).
//   - Dequantized weight: w = code[c] * absmax (float).
#ifndef TESSERA_NF4_TENSOR_H
#define TESSERA_NF4_TENSOR_H

#include <stdint.h>

#define NF4_BLOCK 64          // weights per absmax
#define NF4_NESTED_BLOCK 256  // absmax values per nested absmax

// A quantized 2-D weight W (rows x cols). Pointers are either into `owned`
// (one allocation made by nf4_quantize / nf4_from_bnb) or borrowed from an
// mmap'd safetensors set (nf4_from_bnb borrows the packed bytes and the
// 8-bit absmax codes: keep that set open until nf4_free).
typedef struct nf4_tensor {
    int64_t rows, cols;
    int64_t numel;             // rows * cols, a multiple of NF4_BLOCK
    int64_t nblocks;           // numel / NF4_BLOCK
    const uint8_t *packed;     // numel / 2 bytes, two codes per byte (high nibble first)
    float code[16];            // code value per 4-bit index (the file's quant_map)
    int dtype;                 // the original weight's sft_dtype (SFT_BF16, SFT_F16 or SFT_F32); kernels ignore it

    int nested;                // 0: absmax is f32; 1: double-quantized
    const float *absmax;       // nested == 0: nblocks floats
    const uint8_t *absmax_q;   // nested == 1: nblocks codes into dyn
    const float *nested_absmax;// nested == 1: nnested floats
    int64_t nnested;           // ceil(nblocks / NF4_NESTED_BLOCK)
    float offset;              // nested == 1: mean of the original absmax
    float dyn[256];            // nested == 1: the 8-bit map (the file's nested_quant_map)

    void *owned;               // freed by nf4_free; NULL when nothing is owned
} nf4_tensor;

// The decoded absmax of block b (0 <= b < nblocks). Two roundings, as bnb:
// dequantize_blockwise, then += offset.
static inline float nf4_absmax(const nf4_tensor *t, int64_t b) {
    if (!t->nested) return t->absmax[b];
    float scaled = t->dyn[t->absmax_q[b]] * t->nested_absmax[b / NF4_NESTED_BLOCK];
    return scaled + t->offset;
}

// The 4-bit code of flat element i.
static inline int nf4_code_at(const nf4_tensor *t, int64_t i) {
    uint8_t byte = t->packed[i >> 1];
    return (i & 1) ? (byte & 0x0f) : (byte >> 4);
}

#endif
