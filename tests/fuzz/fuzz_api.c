// fuzz_api: the chat/completions and completions request bodies
// (serve/api.c). The first byte picks the parser; the rest is the body, in a
// buffer of exactly its size (no NUL after it), so a read past len is an
// ASan report. A parse that succeeds also yields its sampler parameters and
// frees cleanly; one that fails must fill a 4xx error with a message.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../serve/api.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int chat = data[0] & 1;
    size_t len = size - 1;
    char *body = malloc(len ? len : 1);
    if (!body) return 0;
    memcpy(body, data + 1, len);

    api_request r;
    api_error e;
    memset(&r, 0, sizeof r);
    memset(&e, 0, sizeof e);
    int rc = chat ? api_parse_chat(body, len, &r, &e) : api_parse_completion(body, len, &r, &e);
    if (rc == 0) {
        sampler_params p = api_sampler_params(&r);
        (void)p;
    } else {
        if (e.status < 400 || e.status > 499 || !e.message[0]) abort();
        char *j = api_error_json(&e);
        free(j);
    }
    api_request_free(&r);
    free(body);
    return 0;
}
