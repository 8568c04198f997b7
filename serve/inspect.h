// inspect: print what tessera reads from a model folder and its adapters.
#ifndef TESSERA_INSPECT_H
#define TESSERA_INSPECT_H

#include "backend.h"
#include "err.h"

#define INSPECT_MAX_ADAPTERS 16

typedef struct inspect_opts {
    const char *model;           // model folder (config.json, safetensors, tokenizer)
    const char *prompt;          // optional: rendered with the chat template and tokenized
    const char *chat_template;   // optional family name overriding detection
    const char *adapters[INSPECT_MAX_ADAPTERS];
    int n_adapters;
    bk_dtype kv_dtype;           // the KV cache's element type kv_bytes_per_token counts
} inspect_opts;

// Prints to stdout; returns 0, or -1 with err naming what failed.
int inspect_run(const inspect_opts *o, err_t *err);

#endif
