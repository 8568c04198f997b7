// err: error values carried back to the caller.
//
// Library code never prints or exits. A function that can fail takes an
// `err_t *` as its last argument, fills it with a one-line message naming the
// thing that failed (file, tensor, field, line) and returns -1 or NULL.
// Only main() decides how to report it.
//
// It sits on the bottom floor (kernels/) because the backends report errors
// too; every layer above includes it from here.
#ifndef TESSERA_ERR_H
#define TESSERA_ERR_H

#include <stddef.h>

typedef struct err {
    char msg[512];
} err_t;

// Formats the message into e (if e is not NULL). Always returns -1 so that
// callers can write `return err_set(e, "...")`.
int err_set(err_t *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// Prepends "prefix: " to the message already in e (context from an outer
// layer, e.g. the adapter name around a safetensors error). Returns -1.
int err_wrap(err_t *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
