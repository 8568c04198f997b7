// fuzz_multipart: multipart/form-data bodies (serve/multipart.c), the
// POST /v1/files upload. The input's first line is the Content-Type value,
// the rest the body (in a buffer of exactly its size: it is not
// NUL-terminated on the wire either). Every part of a form that parses must
// lie inside the body.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../serve/multipart.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    size_t n = 0;
    while (n < size && data[n] != '\n') n++;
    if (n > 512) return 0;
    char ct[513];
    memcpy(ct, data, n);
    ct[n] = 0;
    size_t len = n < size ? size - n - 1 : 0;
    char *body = malloc(len ? len : 1);
    if (!body) return 0;
    if (len) memcpy(body, data + n + 1, len);

    mp_form f;
    err_t e = {{0}};
    if (mp_parse(ct, body, len, &f, &e) == 0) {
        if (f.n < 1 || f.n > MP_MAX_PARTS) abort();
        for (int i = 0; i < f.n; i++) {
            const mp_part *p = &f.parts[i];
            if (p->data < body || p->data + p->len > body + len || !p->name[0]) abort();
            if (mp_find(&f, p->name) != p) abort(); // names are unique
        }
    } else if (!e.msg[0]) {
        abort();
    }
    char b[128];
    err_t e2 = {{0}};
    (void)mp_boundary(ct, b, sizeof b, &e2);
    free(body);
    return 0;
}
