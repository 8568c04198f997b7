// multipart: a small strict multipart/form-data reader (RFC 7578 over RFC
// 2046) for POST /v1/files, the one endpoint whose body is not JSON.
//
// What it accepts: a Content-Type "multipart/form-data; boundary=B" (the
// boundary a token or quoted string of 1..70 characters from RFC 2046's
// bchars); a body of parts, each "--B" CRLF, header lines, CRLF, data, then
// CRLF "--B" for the next part or CRLF "--B--" for the end. A preamble
// before the first delimiter and an epilogue after the last are ignored,
// as the RFC says. Each part needs Content-Disposition: form-data with a
// name; filename and Content-Type are read when present; other headers are
// ignored. Refused, with a message saying what and where: a missing or bad
// boundary, a missing final delimiter (a truncated body), header lines
// without ':' or longer than the block allows, folded header lines, a part
// without a name, two parts with the same name, more than MP_MAX_PARTS
// parts, names or file names with control characters or invalid UTF-8.
//
// Quoted-string parameter values take backslash escapes ("a\"b"); the
// percent-escapes browsers and undici write for '"' and newlines (%22, %0A)
// are kept as written (they are printable). filename keeps only the part
// after the last '/' or '\\' (a client's path is no business of ours).
//
// Nothing is copied: the parts' data point into the body, which the caller
// keeps alive while it uses them.
#ifndef TESSERA_MULTIPART_H
#define TESSERA_MULTIPART_H

#include <stddef.h>

#include "err.h"

#define MP_MAX_PARTS 16
#define MP_MAX_HEADER_BLOCK 8192 // bytes of header lines per part

typedef struct mp_part {
    char name[128];          // the form field's name (non-empty)
    char filename[256];      // "" when the part has none (see has_filename)
    int has_filename;
    char content_type[128];  // "" when the part has none
    const char *data;        // borrowed from the body
    size_t len;
} mp_part;

typedef struct mp_form {
    mp_part parts[MP_MAX_PARTS];
    int n;
} mp_form;

// Reads the boundary out of a Content-Type value into out (n bytes). Returns
// 0, or -1 + err when the value is not multipart/form-data with a valid
// boundary parameter.
int mp_boundary(const char *content_type, char *out, size_t n, err_t *err);

// Parses body (len bytes, need not be NUL-terminated) as sent with the
// Content-Type value content_type. Returns 0 with *out filled (at least one
// part), or -1 + err.
int mp_parse(const char *content_type, const char *body, size_t len, mp_form *out, err_t *err);

// The part named name, or NULL. Borrowed from f.
const mp_part *mp_find(const mp_form *f, const char *name);

#endif
