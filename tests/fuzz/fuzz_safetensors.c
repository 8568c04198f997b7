// fuzz_safetensors: safetensors images (core/safetensors.c) parsed from
// memory: the 8-byte header length, the JSON header, dtypes, shapes and
// data offsets. A set that opens has every tensor inside the image, so
// each is converted to f32 (which reads all its bytes: an offset check that
// lets one through is an ASan report).
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    // A copy of exactly size bytes: reads past the image are reports.
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    err_t e = {{0}};
    sft *s = sft_open_memory(buf, size, "fuzz", &e);
    if (s) {
        for (int i = 0; i < sft_count(s); i++) {
            const sft_tensor *t = sft_at(s, i);
            int64_t n = 1;
            for (int d = 0; d < t->ndim; d++) n *= t->shape[d];
            // Cap the scratch buffer; the element count is already bounded
            // by the image size for a set that opened.
            if (n < 0 || n > (1 << 20)) continue;
            float *out = malloc((size_t)(n ? n : 1) * sizeof(float));
            if (out) {
                err_t e2 = {{0}};
                (void)sft_to_f32(t, out, &e2);
                free(out);
            }
            (void)sft_find(s, t->name);
        }
        (void)sft_metadata(s, "format");
        sft_close(s);
    } else if (!e.msg[0]) {
        abort(); // a failure must say why
    }
    free(buf);
    return 0;
}
