#include "nf4.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

// bitsandbytes' NF4 values (get_4bit_type("nf4")); each is exactly a float.
const float nf4_codebook[16] = {
    -1.0f,
    -0.6961928009986877f,
    -0.5250730514526367f,
    -0.39491748809814453f,
    -0.28444138169288635f,
    -0.18477343022823334f,
    -0.09105003625154495f,
    0.0f,
    0.07958029955625534f,
    0.16093020141124725f,
    0.24611230194568634f,
    0.33791524171829224f,
    0.44070982933044434f,
    0.5626170039176941f,
    0.7229568362236023f,
    1.0f,
};

// ---- the two codebooks -----------------------------------------------------

// The 15 decision thresholds: midpoints of consecutive codes, computed in
// double and rounded to float, as bitsandbytes' literals in dQuantizeNF4 are.
static void nf4_midpoints(float mid[15]) {
    for (int i = 0; i < 15; i++) mid[i] = (float)(((double)nf4_codebook[i] + (double)nf4_codebook[i + 1]) * 0.5);
}

// x (already scaled by 1/absmax) -> 4-bit code: the number of thresholds x
// lies strictly above. Equal to bnb's decision tree, ties included (a value
// on a threshold takes the lower code; NaN takes code 0).
static inline int nf4_encode(const float mid[15], float x) {
    int c = 0;
    for (int i = 0; i < 15; i++) c += x > mid[i];
    return c;
}

// torch.linspace(start, end, n)[k] in float32, as torch's CPU kernel forms
// it: the first half counts up from start, the second half down from end.
static float linspace_f32(float start, float end, int n, int k) {
    float step = (end - start) / (float)(n - 1);
    return k < n / 2 ? start + step * (float)k : end - step * (float)(n - k - 1);
}

static int float_cmp(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

void nf4_dynamic_map(float map[256]) {
    int n = 0;
    for (int i = 0; i < 7; i++) {
        int items = (1 << i) + 1;  // boundaries of this exponent's linear region
        float scale = (float)pow(10.0, i - 6);
        for (int k = 0; k + 1 < items; k++) {
            float mean = (linspace_f32(0.1f, 1.0f, items, k) + linspace_f32(0.1f, 1.0f, items, k + 1)) / 2.0f;
            map[n++] = scale * mean;
            map[n++] = -scale * mean;
        }
    }
    map[n++] = 0.0f;
    map[n++] = 1.0f;
    qsort(map, 256, sizeof(float), float_cmp);
}

// x -> index of the nearest entry of a sorted 256-entry map, deciding by the
// float midpoint of the two neighbours. bnb's 8-bit quantizer is a binary
// search whose last probe is always an even index and a value exactly on the
// midpoint stays with that probe; so ties go to the even index here.
static int dyn_encode(const float map[256], float x) {
    if (!(x > map[0])) return 0;
    if (x >= map[255]) return 255;
    int lo = 0, hi = 255;  // map[lo] < x <= map[hi]
    while (hi - lo > 1) {
        int m = (lo + hi) / 2;
        if (map[m] < x) lo = m;
        else hi = m;
    }
    float mid = (map[lo] + map[hi]) * 0.5f;
    if (x > mid) return hi;
    if (x < mid) return lo;
    return (lo % 2 == 0) ? lo : hi;
}

// ---- quantize ----------------------------------------------------------------

// w (nblocks x 64) -> absmax (nblocks), packed (nblocks x 32 bytes).
static void quantize_blocks(const float *w, int64_t nblocks, float *absmax, uint8_t *packed) {
    float mid[15];
    nf4_midpoints(mid);
    for (int64_t b = 0; b < nblocks; b++) {
        const float *x = w + b * NF4_BLOCK;
        float amax = 0.0f;
        for (int j = 0; j < NF4_BLOCK; j++) amax = fmaxf(amax, fabsf(x[j]));
        absmax[b] = amax;
        // Multiply by the reciprocal, as the bnb kernel does (it can differ
        // from a division in the last bit, which can move a code).
        float inv = 1.0f / amax;
        uint8_t *out = packed + b * (NF4_BLOCK / 2);
        for (int j = 0; j < NF4_BLOCK; j += 2) {
            int hi = amax > 0.0f ? nf4_encode(mid, x[j] * inv) : 7;
            int lo = amax > 0.0f ? nf4_encode(mid, x[j + 1] * inv) : 7;
            out[j / 2] = (uint8_t)(hi << 4 | lo);
        }
    }
}

// absmax (nblocks) -> t->absmax_q (nblocks), t->nested_absmax (nnested),
// t->offset: bnb's compress_statistics. The mean is summed in double (torch
// sums float32 in its own order; the two can differ in the last bit).
static void double_quantize(const float *absmax, nf4_tensor *t, uint8_t *codes, float *nested) {
    double sum = 0.0;
    for (int64_t b = 0; b < t->nblocks; b++) sum += absmax[b];
    t->offset = (float)(sum / (double)t->nblocks);
    for (int64_t j = 0; j < t->nnested; j++) {
        int64_t begin = j * NF4_NESTED_BLOCK;
        int64_t end = begin + NF4_NESTED_BLOCK < t->nblocks ? begin + NF4_NESTED_BLOCK : t->nblocks;
        float amax = 0.0f;
        for (int64_t b = begin; b < end; b++) amax = fmaxf(amax, fabsf(absmax[b] - t->offset));
        nested[j] = amax;
        float inv = 1.0f / amax;
        for (int64_t b = begin; b < end; b++) {
            float x = amax > 0.0f ? (absmax[b] - t->offset) * inv : 0.0f;  // all equal: code of 0.0
            codes[b] = (uint8_t)dyn_encode(t->dyn, x);
        }
    }
}

static int check_shape(int64_t rows, int64_t cols, int64_t *numel, err_t *err) {
    if (rows <= 0 || cols <= 0 || rows > INT64_MAX / cols)
        return err_set(err, "nf4: invalid weight shape %lld x %lld", (long long)rows, (long long)cols);
    *numel = rows * cols;
    if (*numel % NF4_BLOCK != 0)
        return err_set(err, "nf4: %lld x %lld weight has %lld values, not a multiple of the block size %d",
                       (long long)rows, (long long)cols, (long long)*numel, NF4_BLOCK);
    return 0;
}

int nf4_quantize(const float *w, int64_t rows, int64_t cols, int double_quant, nf4_tensor *out, err_t *err) {
    memset(out, 0, sizeof *out);
    int64_t numel;
    if (check_shape(rows, cols, &numel, err)) return -1;
    for (int64_t i = 0; i < numel; i++)
        if (!isfinite(w[i]))
            return err_set(err, "nf4: weight value %lld (row %lld, col %lld) is not finite", (long long)i,
                           (long long)(i / cols), (long long)(i % cols));
    out->rows = rows;
    out->cols = cols;
    out->numel = numel;
    out->nblocks = numel / NF4_BLOCK;
    out->nnested = (out->nblocks + NF4_NESTED_BLOCK - 1) / NF4_NESTED_BLOCK;
    out->dtype = SFT_BF16;
    out->nested = double_quant != 0;
    memcpy(out->code, nf4_codebook, sizeof out->code);

    // One allocation, floats first so that they are aligned.
    size_t nf = (size_t)(out->nested ? out->nnested : out->nblocks);
    size_t bytes = nf * sizeof(float) + (size_t)numel / 2 + (out->nested ? (size_t)out->nblocks : 0);
    float *absmax = out->nested ? malloc((size_t)out->nblocks * sizeof(float)) : NULL;
    out->owned = malloc(bytes);
    if (!out->owned || (out->nested && !absmax)) {
        free(absmax);
        nf4_free(out);
        return err_set(err, "nf4: out of memory for a %lld x %lld weight", (long long)rows, (long long)cols);
    }
    float *floats = out->owned;
    uint8_t *packed = (uint8_t *)(floats + nf);
    out->packed = packed;
    if (!out->nested) {
        quantize_blocks(w, out->nblocks, floats, packed);
        out->absmax = floats;
        return 0;
    }
    quantize_blocks(w, out->nblocks, absmax, packed);
    uint8_t *codes = packed + numel / 2;
    nf4_dynamic_map(out->dyn);
    double_quantize(absmax, out, codes, floats);
    out->absmax_q = codes;
    out->nested_absmax = floats;
    free(absmax);
    return 0;
}

void nf4_free(nf4_tensor *t) {
    if (!t) return;
    free(t->owned);
    memset(t, 0, sizeof *t);
}

// ---- dequantize and matvec ---------------------------------------------------

// Flat elements [begin, end) -> out (end - begin floats), one absmax decode
// per block touched.
static void dequant_range(const nf4_tensor *t, int64_t begin, int64_t end, float *out) {
    int64_t i = begin;
    while (i < end) {
        int64_t b = i / NF4_BLOCK;
        int64_t stop = (b + 1) * NF4_BLOCK < end ? (b + 1) * NF4_BLOCK : end;
        float a = nf4_absmax(t, b);
        for (; i < stop; i++) out[i - begin] = t->code[nf4_code_at(t, i)] * a;
    }
}

void nf4_dequantize(const nf4_tensor *t, float *out) { dequant_range(t, 0, t->numel, out); }

void nf4_dequantize_row(const nf4_tensor *t, int64_t r, float *out) {
    dequant_range(t, r * t->cols, (r + 1) * t->cols, out);
}

// W (rows x cols), x (cols) -> y (rows). Each weight is formed exactly as
// nf4_dequantize forms it, so this equals dequantize-then-dense bit for bit
// when the dense loop sums in the same order.
void nf4_matvec(const nf4_tensor *t, const float *x, float *y) {
    for (int64_t r = 0; r < t->rows; r++) {
        int64_t i = r * t->cols, end = i + t->cols;
        float acc = 0.0f;
        while (i < end) {
            int64_t b = i / NF4_BLOCK;
            int64_t stop = (b + 1) * NF4_BLOCK < end ? (b + 1) * NF4_BLOCK : end;
            float a = nf4_absmax(t, b);
            for (; i < stop; i++) {
                float w = t->code[nf4_code_at(t, i)] * a;
                acc += w * x[i - r * t->cols];
            }
        }
        y[r] = acc;
    }
}

// ---- bitsandbytes checkpoints ------------------------------------------------

#define QS_NF4 ".quant_state.bitsandbytes__nf4"
#define QS_FP4 ".quant_state.bitsandbytes__fp4"

static const sft_tensor *find_part(const sft *s, const char *weight, const char *suffix, char *name, size_t cap) {
    snprintf(name, cap, "%s%s", weight, suffix);
    return sft_find(s, name);
}

int nf4_is_bnb(const sft *s, const char *weight_name) {
    char name[512];
    return find_part(s, weight_name, QS_NF4, name, sizeof name) != NULL ||
           find_part(s, weight_name, QS_FP4, name, sizeof name) != NULL;
}

// What the quant_state JSON says, checked against bnb's expectations.
typedef struct qs_info {
    int64_t rows, cols;
    sft_dtype dtype;
    int nested;
    float offset;
} qs_info;

static int json_int_eq(const cJSON *o, const char *key, double want, const char *tname, err_t *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v)) return err_set(err, "tensor '%s': quant_state has no number '%s'", tname, key);
    if (v->valuedouble != want)
        return err_set(err, "tensor '%s': quant_state %s is %g, expected %g", tname, key, v->valuedouble, want);
    return 0;
}

static int parse_dtype(const cJSON *o, const char *key, sft_dtype *out, const char *tname, err_t *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    const char *s = cJSON_IsString(v) ? v->valuestring : NULL;
    if (s && strcmp(s, "bfloat16") == 0) *out = SFT_BF16;
    else if (s && strcmp(s, "float16") == 0) *out = SFT_F16;
    else if (s && strcmp(s, "float32") == 0) *out = SFT_F32;
    else return err_set(err, "tensor '%s': quant_state %s is %s%s%s, expected bfloat16, float16 or float32", tname,
                        key, s ? "'" : "", s ? s : "missing or not a string", s ? "'" : "");
    return 0;
}

static int parse_shape(const cJSON *o, qs_info *qi, const char *tname, err_t *err) {
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(o, "shape");
    if (!cJSON_IsArray(sh) || cJSON_GetArraySize(sh) != 2)
        return err_set(err, "tensor '%s': quant_state shape must be [rows, cols]", tname);
    double d[2];
    for (int i = 0; i < 2; i++) {
        const cJSON *v = cJSON_GetArrayItem(sh, i);
        d[i] = cJSON_IsNumber(v) ? v->valuedouble : -1;
        if (!(d[i] >= 1 && d[i] <= 9.0e15 && d[i] == floor(d[i])))
            return err_set(err, "tensor '%s': quant_state shape[%d] is not a positive integer", tname, i);
    }
    qi->rows = (int64_t)d[0];
    qi->cols = (int64_t)d[1];
    return 0;
}

// The nested fields, present together or not at all.
static int parse_nested(const cJSON *o, qs_info *qi, const char *tname, err_t *err) {
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(o, "nested_offset");
    qi->nested = off != NULL;
    if (!qi->nested) return 0;
    if (!cJSON_IsNumber(off) || !isfinite(off->valuedouble) || fabs(off->valuedouble) > 3.0e38)
        return err_set(err, "tensor '%s': quant_state nested_offset is not a finite number", tname);
    qi->offset = (float)off->valuedouble;
    if (json_int_eq(o, "nested_blocksize", NF4_NESTED_BLOCK, tname, err)) return -1;
    sft_dtype nd;
    if (cJSON_GetObjectItemCaseSensitive(o, "nested_dtype") && parse_dtype(o, "nested_dtype", &nd, tname, err))
        return -1;
    return 0;
}

static int parse_quant_state(const sft_tensor *qs, qs_info *qi, err_t *err) {
    if (qs->dtype != SFT_U8)
        return err_set(err, "tensor '%s': dtype %s, expected U8 (JSON bytes)", qs->name, sft_dtype_name(qs->dtype));
    cJSON *o = cJSON_ParseWithLength(qs->data, qs->nbytes);
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return err_set(err, "tensor '%s': quant_state is not a JSON object", qs->name);
    }
    int rc = -1;
    const cJSON *qt = cJSON_GetObjectItemCaseSensitive(o, "quant_type");
    if (!cJSON_IsString(qt)) err_set(err, "tensor '%s': quant_state has no string 'quant_type'", qs->name);
    else if (strcmp(qt->valuestring, "nf4") != 0)
        err_set(err, "tensor '%s': quant_type '%s' is not supported (only nf4)", qs->name, qt->valuestring);
    else if (!json_int_eq(o, "blocksize", NF4_BLOCK, qs->name, err) &&
             !parse_dtype(o, "dtype", &qi->dtype, qs->name, err) && !parse_shape(o, qi, qs->name, err) &&
             !parse_nested(o, qi, qs->name, err))
        rc = 0;
    cJSON_Delete(o);
    return rc;
}

// A tensor that must exist with one dtype and `numel` values in `ndim` dims
// (the trailing dims of a 2-D [n, 1] tensor are allowed by want2d).
static const sft_tensor *need(const sft *s, const char *weight, const char *suffix, sft_dtype dt, int64_t numel,
                              int want2d, err_t *err) {
    char name[512];
    const sft_tensor *t = find_part(s, weight, suffix, name, sizeof name);
    if (!t) {
        err_set(err, "tensor '%s': missing (bitsandbytes 4-bit weight '%s')", name, weight);
        return NULL;
    }
    if (t->dtype != dt) {
        err_set(err, "tensor '%s': dtype %s, expected %s", name, sft_dtype_name(t->dtype), sft_dtype_name(dt));
        return NULL;
    }
    int shape_ok = t->numel == numel && (t->ndim == 1 || (want2d && t->ndim == 2 && t->shape[1] == 1));
    if (!shape_ok) {
        char got[128];
        util_shape_str(got, sizeof got, t->ndim, t->shape);
        err_set(err, "tensor '%s': shape %s, expected [%lld%s]", name, got, (long long)numel, want2d ? ", 1" : "");
        return NULL;
    }
    return t;
}

// Copies n floats from a (possibly unaligned) mmap'd tensor, refusing
// non-finite values.
static int copy_finite(const sft_tensor *t, float *dst, int64_t n, err_t *err) {
    memcpy(dst, t->data, (size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(dst[i])) return err_set(err, "tensor '%s': value %lld is not finite", t->name, (long long)i);
    return 0;
}

// Everything but the quant_state: the packed codes, absmax, and maps.
static int load_parts(const sft *s, const char *wn, const qs_info *qi, nf4_tensor *out, err_t *err) {
    const sft_tensor *pk = need(s, wn, "", SFT_U8, out->numel / 2, 1, err);
    const sft_tensor *qm = pk ? need(s, wn, ".quant_map", SFT_F32, 16, 0, err) : NULL;
    if (!qm || copy_finite(qm, out->code, 16, err)) return -1;
    out->packed = pk->data;
    float *floats = out->owned;
    if (!qi->nested) {
        const sft_tensor *am = need(s, wn, ".absmax", SFT_F32, out->nblocks, 0, err);
        if (!am || copy_finite(am, floats, out->nblocks, err)) return -1;
        out->absmax = floats;
        return 0;
    }
    const sft_tensor *am = need(s, wn, ".absmax", SFT_U8, out->nblocks, 0, err);
    const sft_tensor *na = am ? need(s, wn, ".nested_absmax", SFT_F32, out->nnested, 0, err) : NULL;
    const sft_tensor *nq = na ? need(s, wn, ".nested_quant_map", SFT_F32, 256, 0, err) : NULL;
    if (!nq || copy_finite(na, floats, out->nnested, err) || copy_finite(nq, out->dyn, 256, err)) return -1;
    out->absmax_q = am->data;
    out->nested_absmax = floats;
    out->offset = qi->offset;
    return 0;
}

int nf4_from_bnb(const sft *s, const char *weight_name, nf4_tensor *out, err_t *err) {
    memset(out, 0, sizeof *out);
    char name[512];
    const sft_tensor *qs = find_part(s, weight_name, QS_NF4, name, sizeof name);
    if (!qs) {
        if (find_part(s, weight_name, QS_FP4, name, sizeof name))
            return err_set(err, "tensor '%s': quant_type fp4 is not supported (only nf4)", name);
        return err_set(err, "tensor '%s%s': missing (is '%s' a bitsandbytes 4-bit weight?)", weight_name, QS_NF4,
                       weight_name);
    }
    qs_info qi = {0};
    if (parse_quant_state(qs, &qi, err)) return -1;
    if (check_shape(qi.rows, qi.cols, &out->numel, err)) return err_wrap(err, "tensor '%s'", qs->name);
    // Nested iff the JSON says so; a stray nested_absmax means the two disagree.
    if (!qi.nested && find_part(s, weight_name, ".nested_absmax", name, sizeof name))
        return err_set(err, "tensor '%s' present but quant_state '%s' has no nested_offset", name, qs->name);
    out->rows = qi.rows;
    out->cols = qi.cols;
    out->dtype = qi.dtype;
    out->nested = qi.nested;
    out->nblocks = out->numel / NF4_BLOCK;
    out->nnested = (out->nblocks + NF4_NESTED_BLOCK - 1) / NF4_NESTED_BLOCK;
    out->owned = malloc((size_t)(qi.nested ? out->nnested : out->nblocks) * sizeof(float));
    if (!out->owned) return err_set(err, "tensor '%s': out of memory", weight_name);
    if (load_parts(s, weight_name, &qi, out, err)) {
        nf4_free(out);
        return -1;
    }
    return 0;
}

// ---- writer ------------------------------------------------------------------

static const char *dtype_torch_name(sft_dtype dt) {
    return dt == SFT_F16 ? "float16" : dt == SFT_F32 ? "float32" : "bfloat16";
}

// The quant_state dict as bnb's QuantState.as_dict(packed=True) orders it.
static int format_quant_state(const nf4_tensor *t, nf4_bnb_meta *meta) {
    int n = snprintf(meta->json, sizeof meta->json,
                     "{\"quant_type\": \"nf4\", \"blocksize\": %d, \"dtype\": \"%s\", \"shape\": [%lld, %lld]",
                     NF4_BLOCK, dtype_torch_name(t->dtype), (long long)t->rows, (long long)t->cols);
    if (t->nested && n > 0 && (size_t)n < sizeof meta->json) {
        char off[40];
        util_py_float((double)t->offset, off, sizeof off);
        n += snprintf(meta->json + n, sizeof meta->json - (size_t)n,
                      ", \"nested_blocksize\": %d, \"nested_dtype\": \"float32\", \"nested_offset\": %s",
                      NF4_NESTED_BLOCK, off);
    }
    if (n > 0 && (size_t)n < sizeof meta->json) n += snprintf(meta->json + n, sizeof meta->json - (size_t)n, "}");
    if (n <= 0 || (size_t)n >= sizeof meta->json) return -1;
    meta->len = n;
    return 0;
}

static int add_part(sft_writer *w, const char *weight, const char *suffix, sft_dtype dt, int64_t n0, int64_t n1,
                    const void *data, err_t *err) {
    char name[512];
    snprintf(name, sizeof name, "%s%s", weight, suffix);
    int64_t shape[2] = {n0, n1};
    return sft_writer_add(w, name, dt, n1 > 0 ? 2 : 1, shape, data, err);
}

int nf4_bnb_add(sft_writer *w, const char *weight_name, const nf4_tensor *t, nf4_bnb_meta *meta, err_t *err) {
    if (strlen(weight_name) + sizeof QS_NF4 > 512) return err_set(err, "nf4: weight name '%s' too long", weight_name);
    if (format_quant_state(t, meta)) return err_set(err, "tensor '%s': quant_state JSON too long", weight_name);
    if (add_part(w, weight_name, "", SFT_U8, t->numel / 2, 1, t->packed, err) ||
        add_part(w, weight_name, ".quant_map", SFT_F32, 16, 0, t->code, err) ||
        add_part(w, weight_name, QS_NF4, SFT_U8, meta->len, 0, meta->json, err))
        return -1;
    if (!t->nested) return add_part(w, weight_name, ".absmax", SFT_F32, t->nblocks, 0, t->absmax, err);
    if (add_part(w, weight_name, ".absmax", SFT_U8, t->nblocks, 0, t->absmax_q, err) ||
        add_part(w, weight_name, ".nested_absmax", SFT_F32, t->nnested, 0, t->nested_absmax, err) ||
        add_part(w, weight_name, ".nested_quant_map", SFT_F32, 256, 0, t->dyn, err))
        return -1;
    return 0;
}
