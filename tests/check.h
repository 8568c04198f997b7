// check: the tiny assertion kit the C tests share. A failed CHECK prints
// the file, line and expression (plus an optional message) and counts; a
// test's main returns check_finish(), non-zero if anything failed.
#ifndef TESSERA_CHECK_H
#define TESSERA_CHECK_H

#include <stdio.h>

static int check_failures = 0;
static int check_count = 0;

#define CHECK(cond, ...)                                                          \
    do {                                                                          \
        check_count++;                                                            \
        if (!(cond)) {                                                            \
            check_failures++;                                                     \
            fprintf(stderr, "%s:%d: CHECK failed: %s", __FILE__, __LINE__, #cond);  \
            fprintf(stderr, " " __VA_ARGS__);                                     \
            fputc('\n', stderr);                                                  \
        }                                                                         \
    } while (0)

static inline int check_finish(const char *name) {
    printf("%s: %d checks, %d failed\n", name, check_count, check_failures);
    return check_failures == 0 && check_count > 0 ? 0 : 1;
}

#endif
