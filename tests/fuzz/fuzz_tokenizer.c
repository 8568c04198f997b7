// fuzz_tokenizer: the tokenizer (core/tokenizer.c) on arbitrary bytes, with
// the real Qwen3 tokenizer.json: encode with and without special-token
// parsing, decode the ids back (which must give the input again for ASCII
// text: byte-level BPE is lossless, and NFC leaves ASCII alone), decode the input read as raw ids
// (in range or not), and the streaming decoder over the same ids.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_tok.h"

static tok *T;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    T = fuzz_tok_open();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int flags = data[0] & 3;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    char *copy = malloc(len ? len : 1);
    if (!copy) return 0;
    if (len) memcpy(copy, text, len);

    size_t n = 0;
    err_t e = {{0}};
    int32_t *ids = tok_encode_ex(T, copy, len, flags, &n, &e);
    if (ids) {
        size_t dl = 0;
        char *back = tok_decode(T, ids, n, 0, &dl);
        // Without special parsing or additions, ASCII round-trips.
        int ascii = 1;
        for (size_t i = 0; i < len && ascii; i++) ascii = (unsigned char)copy[i] < 0x80;
        if (flags == 0 && ascii && back && (dl != len || memcmp(back, copy, len) != 0)) abort();
        free(back);
        free(ids);
    }

    // The input read as token ids, some out of range, some special.
    size_t nr = len / 4;
    int32_t *raw = malloc((nr ? nr : 1) * sizeof *raw);
    if (raw) {
        int vocab = tok_vocab_size(T);
        for (size_t i = 0; i < nr; i++) {
            uint32_t v;
            memcpy(&v, copy + 4 * i, 4);
            // Mostly in range (so decoding does real work), sometimes not.
            raw[i] = (v & 0x80000000u) ? (int32_t)v : (int32_t)(v % (uint32_t)(vocab + 16));
        }
        size_t dl = 0;
        char *s = tok_decode(T, raw, nr, data[0] & 4, &dl);
        free(s);
        tok_stream *st = tok_stream_new(T, data[0] & 4);
        if (st) {
            for (size_t i = 0; i < nr; i++) {
                size_t pl;
                (void)tok_stream_push(st, raw[i], &pl);
            }
            size_t fl;
            (void)tok_stream_flush(st, &fl);
            tok_stream_free(st);
        }
        for (size_t i = 0; i < nr && i < 4; i++) {
            (void)tok_token_str(T, raw[i]);
            (void)tok_is_special(T, raw[i]);
        }
        free(raw);
    }
    free(copy);
    return 0;
}
