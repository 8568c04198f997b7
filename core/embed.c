// embed: pooling, normalization and the base64 encoding of embeddings.
#include "embed.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

int emb_pooling_parse(const char *s, emb_pooling *out) {
    if (!strcmp(s, "last")) *out = EMB_POOL_LAST;
    else if (!strcmp(s, "mean")) *out = EMB_POOL_MEAN;
    else return -1;
    return 0;
}

const char *emb_pooling_name(emb_pooling p) { return p == EMB_POOL_MEAN ? "mean" : "last"; }

void emb_normalize(float *v, int n) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += (double)v[i] * v[i];
    if (ss <= 0) return;
    // F.normalize divides by max(norm, 1e-12); the clamp only matters for
    // a zero vector, which is left as it is above.
    double inv = 1.0 / sqrt(ss);
    for (int i = 0; i < n; i++) v[i] = (float)(v[i] * inv);
}

void emb_pool(emb_pooling p, const float *h, int n, int C, float *out) {
    if (p == EMB_POOL_LAST) {
        memcpy(out, h + (size_t)(n - 1) * C, (size_t)C * sizeof(float));
    } else {
        // Summed in double per column so a long sequence's mean does not
        // depend on float rounding order more than one division.
        for (int c = 0; c < C; c++) {
            double s = 0;
            for (int t = 0; t < n; t++) s += h[(size_t)t * C + c];
            out[c] = (float)(s / n);
        }
    }
    emb_normalize(out, C);
}

int emb_truncate(float *v, int n, int dims) {
    if (dims > n) dims = n;
    emb_normalize(v, dims);
    return dims;
}

size_t emb_base64_len(int n) { return ((size_t)n * 4 + 2) / 3 * 4 + 1; }

// Byte i of v's little-endian float32 bytes, whatever the host's order.
static uint32_t byte_at(const float *v, size_t i) {
    uint32_t u;
    memcpy(&u, &v[i / 4], 4);
    return (u >> (8 * (i % 4))) & 0xff;
}

char *emb_base64(const float *v, int n, char *out) {
    static const char A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t len = (size_t)n * 4, o = 0;
    for (size_t i = 0; i < len; i += 3) {
        size_t k = len - i >= 3 ? 3 : len - i;
        uint32_t x = byte_at(v, i) << 16;
        if (k > 1) x |= byte_at(v, i + 1) << 8;
        if (k > 2) x |= byte_at(v, i + 2);
        out[o++] = A[(x >> 18) & 63];
        out[o++] = A[(x >> 12) & 63];
        out[o++] = k > 1 ? A[(x >> 6) & 63] : '=';
        out[o++] = k > 2 ? A[x & 63] : '=';
    }
    out[o] = 0;
    return out;
}
