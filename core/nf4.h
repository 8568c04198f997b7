// nf4: bitsandbytes' 4-bit NormalFloat ("nf4") weights, bit for bit in its
// layout, so that pre-quantized bnb-4bit checkpoints load as they are and
// what we quantize loads in bitsandbytes / transformers.
//
// The format (QLoRA, Dettmers et al. 2023; bitsandbytes quantize_4bit):
//   - The weight is taken as one flat row-major array of numel values, cut
//     into blocks of 64 consecutive values (a block may span two rows).
//   - absmax[b] = max |w| over block b; each value becomes the index (0..15)
//     of the NF4 code nearest to w / absmax[b]. As bitsandbytes does, the
//     value is scaled by multiplying with 1/absmax (float) and the code is
//     chosen by comparing against the 15 midpoints between consecutive codes
//     with a strict '>': a value exactly on a midpoint takes the LOWER code.
//     An all-zero block (absmax 0) gets code 7 (0.0): bitsandbytes' kernel
//     computes 0 * (1/0) = NaN there and stores code 0 (-1.0); both decode
//     to zero, ours without the NaN.
//   - Two codes per byte: element 2i in the HIGH nibble of byte i, element
//     2i+1 in the low nibble.
//   - Double quantization (bnb's compress_statistics, used by every QLoRA
//     checkpoint): offset = mean(absmax); (absmax - offset) is quantized to
//     8 bits in blocks of 256 with bnb's signed "dynamic" map (256 sorted
//     values, nf4_dynamic_map): nested_absmax[j] = max |absmax - offset| of
//     block j, code = nearest map entry to (absmax - offset) * (1/nested_absmax),
//     midpoint ties going to the even index (where bnb's binary search ends).
//     Decoded: absmax = dyn[code] * nested_absmax + offset (float, two roundings).
//   - Dequantized weight: w = code_value[c] * absmax (float).
//
// numel must be a multiple of 64 (every real model's linear weights are).
#ifndef TESSERA_NF4_H
#define TESSERA_NF4_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "nf4_tensor.h"
#include "safetensors.h"

// The 16 NF4 values (bitsandbytes' get_4bit_type("nf4"), float32).
extern const float nf4_codebook[16];

// Fills map[256] with bnb's create_dynamic_map(signed=True): for i in 0..6,
// the 2^i midpoints of linspace(0.1, 1, 2^i + 1) times +-10^(i-6), plus 0 and
// 1, sorted. Computed in double and rounded once to float; bitsandbytes
// builds it in float32 torch arithmetic, so an entry may differ from its
// table in the last bit. Loading always uses the map stored in the file.
void nf4_dynamic_map(float map[256]);

// nf4_tensor (the struct the kernels read), NF4_BLOCK, nf4_absmax and
// nf4_code_at are in kernels/nf4_tensor.h.

// Quantizes w (rows x cols floats, row-major; bf16 weights converted by the
// caller with util_bf16_to_f32) into *out, with double quantization when
// double_quant is non-zero. out->dtype is set to SFT_BF16 (what the written
// checkpoint records as the original dtype); change it before writing if the
// source was another type. Returns 0, or -1 + err (numel not a multiple of
// 64, non-finite weights, out of memory). Free with nf4_free.
int nf4_quantize(const float *w, int64_t rows, int64_t cols, int double_quant, nf4_tensor *out, err_t *err);

// Releases what *t owns and zeroes it. Safe on a zeroed struct.
void nf4_free(nf4_tensor *t);

// W (rows x cols) -> out (rows x cols floats).
void nf4_dequantize(const nf4_tensor *t, float *out);

// Row r of W -> out (cols floats). Rows need not start on a block or even a
// byte boundary.
void nf4_dequantize_row(const nf4_tensor *t, int64_t r, float *out);

// Reference matvec on the packed form: W (rows x cols), x (cols) -> y (rows).
// y[r] = sum_c W[r,c] x[c], accumulated in float in column order; plain C,
// one thread (kernels/cpu has the fast one).
void nf4_matvec(const nf4_tensor *t, const float *x, float *y);

// ---- bitsandbytes checkpoints ----------------------------------------------
//
// For a weight `X.weight`, a bnb-4bit safetensors file (transformers +
// bitsandbytes save_pretrained) holds:
//   X.weight                                    U8  [numel/2, 1]  packed codes
//   X.weight.absmax                             U8  [nblocks] (nested) or F32 [nblocks]
//   X.weight.quant_map                          F32 [16]
//   X.weight.nested_absmax                      F32 [ceil(nblocks/256)]   (nested only)
//   X.weight.nested_quant_map                   F32 [256]                 (nested only)
//   X.weight.quant_state.bitsandbytes__nf4      U8  [len]  UTF-8 JSON:
//     {"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": [rows, cols],
//      "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": <float>}

// 1 if `weight_name` is stored bnb-4bit in s (any quant_state tensor for it,
// nf4 or fp4), else 0. Lets a model loader choose between this and bf16.
int nf4_is_bnb(const sft *s, const char *weight_name);

// Loads `weight_name` from a bnb-4bit set, checking every tensor's presence,
// dtype and shape and the quant_state JSON (quant_type "nf4" only, blocksize
// 64, nested_blocksize 256, a 2-D shape matching the packed size, finite
// maps and offset). Errors name the tensor and what was expected. The packed
// bytes and 8-bit absmax codes are borrowed from s (keep s open until
// nf4_free); the f32 parts are copied. Free with nf4_free.
int nf4_from_bnb(const sft *s, const char *weight_name, nf4_tensor *out, err_t *err);

// Text that must outlive the sft_writer it was added to (the writer borrows
// data until sft_writer_write returns): the quant_state JSON.
typedef struct nf4_bnb_meta {
    char json[320];
    int64_t len;
} nf4_bnb_meta;

// Adds t to w as `weight_name` in the layout above, exactly as bitsandbytes
// writes it (JSON formatted as Python's json.dumps does). t and *meta are
// borrowed until sft_writer_write returns.
int nf4_bnb_add(sft_writer *w, const char *weight_name, const nf4_tensor *t, nf4_bnb_meta *meta, err_t *err);

#endif
