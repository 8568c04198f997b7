// multipart: multipart/form-data bodies. See multipart.h.
#include "multipart.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "api.h"
#include "utf8.h"

#define MP_MAX_BOUNDARY 70

// RFC 2046 bchars: DIGIT / ALPHA / "'()+_,-./:=?" and space (not last).
static int is_bchar(int c) {
    return isalnum(c) || (c && strchr("'()+_,-./:=? ", c) != NULL);
}

// RFC 7230 tchar, for tokens (parameter names, unquoted values).
static int is_tchar(int c) {
    return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static const char *skip_ows(const char *p, const char *end) {
    while (p < end && (*p == ' ' || *p == '\t')) p++;
    return p;
}

// Reads one parameter value at *pp (a token or a quoted string with
// backslash escapes) into out. Returns 0 or -1 (malformed, or too long).
static int read_value(const char **pp, const char *end, char *out, size_t n) {
    const char *p = *pp;
    size_t k = 0;
    if (p < end && *p == '"') {
        for (p++; p < end && *p != '"'; p++) {
            if (*p == '\\' && p + 1 < end) p++;
            if (k + 1 >= n) return -1;
            out[k++] = *p;
        }
        if (p >= end) return -1; // unterminated
        p++;
    } else {
        while (p < end && is_tchar((unsigned char)*p)) {
            if (k + 1 >= n) return -1;
            out[k++] = *p++;
        }
        if (k == 0) return -1;
    }
    out[k] = '\0';
    *pp = p;
    return 0;
}

// Walks "; name=value" parameters of a header value from p. For each one
// whose name is in names[i], its value goes into outs[i] (sizes[i] bytes)
// and found[i] is set. Unknown parameters are skipped. Returns 0 or -1.
static int read_params(const char *p, const char *end, const char *const *names, char **outs,
                       const size_t *sizes, int *found, int count) {
    char scratch[512];
    for (;;) {
        p = skip_ows(p, end);
        if (p == end) return 0;
        if (*p != ';') return -1;
        p = skip_ows(p + 1, end);
        const char *nm = p;
        while (p < end && is_tchar((unsigned char)*p)) p++;
        size_t nlen = (size_t)(p - nm);
        p = skip_ows(p, end);
        if (nlen == 0 || p == end || *p != '=') return -1;
        p = skip_ows(p + 1, end);
        int idx = -1;
        for (int i = 0; i < count; i++)
            if (strlen(names[i]) == nlen && strncasecmp(nm, names[i], nlen) == 0) idx = i;
        if (idx >= 0 && found[idx]) return -1; // the same parameter twice
        if (read_value(&p, end, idx >= 0 ? outs[idx] : scratch, idx >= 0 ? sizes[idx] : sizeof scratch) != 0)
            return -1;
        if (idx >= 0) found[idx] = 1;
    }
}

int mp_boundary(const char *ct, char *out, size_t n, err_t *err) {
    static const char type[] = "multipart/form-data";
    if (!ct) return err_set(err, "Content-Type is missing: expected multipart/form-data");
    const char *end = ct + strlen(ct);
    const char *p = skip_ows(ct, end);
    if (strncasecmp(p, type, sizeof type - 1) != 0)
        return err_set(err, "Content-Type is \"%.80s\": expected multipart/form-data", ct);
    p += sizeof type - 1;
    char b[MP_MAX_BOUNDARY + 2];
    const char *names[] = {"boundary"};
    char *outs[] = {b};
    size_t sizes[] = {sizeof b};
    int found[1] = {0};
    if (read_params(p, end, names, outs, sizes, found, 1) != 0)
        return err_set(err, "Content-Type: malformed parameters after multipart/form-data");
    if (!found[0]) return err_set(err, "Content-Type: multipart/form-data without a boundary parameter");
    size_t len = strlen(b);
    if (len == 0 || len > MP_MAX_BOUNDARY || b[len - 1] == ' ')
        return err_set(err, "Content-Type: the boundary must have 1 to %d characters and not end in a space",
                       MP_MAX_BOUNDARY);
    for (size_t i = 0; i < len; i++)
        if (!is_bchar((unsigned char)b[i]))
            return err_set(err, "Content-Type: the boundary holds a character RFC 2046 does not allow (byte 0x%02x)",
                           (unsigned char)b[i]);
    if (len + 1 > n) return err_set(err, "Content-Type: boundary too long");
    memcpy(out, b, len + 1);
    return 0;
}

// 1 if s is valid UTF-8 with no control characters (names, file names).
static int clean_text(const char *s) {
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f) return 0;
    return utf8_valid(s, strlen(s));
}

// The last path component of a client's file name, in place.
static void strip_path(char *name) {
    const char *s = name, *last = name;
    for (; *s; s++)
        if (*s == '/' || *s == '\\') last = s + 1;
    memmove(name, last, strlen(last) + 1);
}

// Reads the Content-Disposition value of part i.
static int read_disposition(const char *p, const char *end, mp_part *part, int i, err_t *err) {
    static const char fd[] = "form-data";
    p = skip_ows(p, end);
    if ((size_t)(end - p) < sizeof fd - 1 || strncasecmp(p, fd, sizeof fd - 1) != 0)
        return err_set(err, "part %d: Content-Disposition must be form-data", i + 1);
    const char *names[] = {"name", "filename"};
    char *outs[] = {part->name, part->filename};
    size_t sizes[] = {sizeof part->name, sizeof part->filename};
    int found[2] = {0, 0};
    if (read_params(p + sizeof fd - 1, end, names, outs, sizes, found, 2) != 0)
        return err_set(err, "part %d: malformed Content-Disposition parameters (or a name over %zu bytes)", i + 1,
                       sizeof part->name - 1);
    if (!found[0] || !part->name[0]) return err_set(err, "part %d: Content-Disposition has no name", i + 1);
    if (!clean_text(part->name)) return err_set(err, "part %d: the name holds control characters or invalid UTF-8", i + 1);
    part->has_filename = found[1];
    if (found[1]) {
        strip_path(part->filename);
        if (!clean_text(part->filename))
            return err_set(err, "part %d: the filename holds control characters or invalid UTF-8", i + 1);
    }
    return 0;
}

// Parses the header block [p, end) (lines ending CRLF, without the empty
// line) of part i.
static int read_headers(const char *p, const char *end, mp_part *part, int i, err_t *err) {
    int has_disp = 0;
    while (p < end) {
        const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
        if (!eol) eol = end;
        if (*p == ' ' || *p == '\t') return err_set(err, "part %d: folded header lines are not accepted", i + 1);
        const char *colon = memchr(p, ':', (size_t)(eol - p));
        if (!colon || colon == p) return err_set(err, "part %d: a header line without a name and ':'", i + 1);
        for (const char *c = p; c < colon; c++)
            if (!is_tchar((unsigned char)*c)) return err_set(err, "part %d: a header name with a bad character", i + 1);
        size_t nlen = (size_t)(colon - p);
        const char *v = skip_ows(colon + 1, eol), *ve = eol;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
        if (nlen == 19 && strncasecmp(p, "content-disposition", 19) == 0) {
            if (has_disp) return err_set(err, "part %d: two Content-Disposition headers", i + 1);
            has_disp = 1;
            if (read_disposition(v, ve, part, i, err) != 0) return -1;
        } else if (nlen == 12 && strncasecmp(p, "content-type", 12) == 0) {
            size_t n = (size_t)(ve - v);
            if (n >= sizeof part->content_type) return err_set(err, "part %d: Content-Type too long", i + 1);
            memcpy(part->content_type, v, n);
            part->content_type[n] = '\0';
        }
        p = eol == end ? end : eol + 2;
    }
    if (!has_disp) return err_set(err, "part %d: no Content-Disposition header", i + 1);
    return 0;
}

// After "--B" at p: "--" ends the form (returns 1), else optional
// whitespace and CRLF start a part (returns 0, *next after the CRLF).
static int after_delimiter(const char *p, const char *end, const char **next, err_t *err) {
    if (end - p >= 2 && p[0] == '-' && p[1] == '-') return 1;
    p = skip_ows(p, end);
    if (end - p < 2 || p[0] != '\r' || p[1] != '\n')
        return err_set(err, "a boundary delimiter not followed by CRLF or \"--\"");
    *next = p + 2;
    return 0;
}

int mp_parse(const char *ct, const char *body, size_t len, mp_form *out, err_t *err) {
    memset(out, 0, sizeof *out);
    char b[MP_MAX_BOUNDARY + 1];
    if (mp_boundary(ct, b, sizeof b, err) != 0) return -1;
    char delim[MP_MAX_BOUNDARY + 5]; // CRLF "--" B
    size_t dlen = (size_t)snprintf(delim, sizeof delim, "\r\n--%s", b);
    const char *end = body + len, *p;
    // The first delimiter may open the body (no CRLF before it) or follow a preamble.
    if (len >= dlen - 2 && memcmp(body, delim + 2, dlen - 2) == 0) {
        p = body + dlen - 2;
    } else {
        const char *d = memmem(body, len, delim, dlen);
        if (!d) return err_set(err, "no boundary delimiter in the body (boundary \"%s\")", b);
        p = d + dlen;
    }
    for (;;) {
        const char *start = NULL;
        int rc = after_delimiter(p, end, &start, err);
        if (rc < 0) return -1;
        if (rc == 1) break;
        if (out->n == MP_MAX_PARTS) return err_set(err, "more than %d parts", MP_MAX_PARTS);
        mp_part *part = &out->parts[out->n];
        const char *hend = memmem(start, (size_t)(end - start), "\r\n\r\n", 4);
        const char *empty = (end - start >= 2 && start[0] == '\r' && start[1] == '\n') ? start : NULL;
        const char *data = empty ? start + 2 : hend ? hend + 4 : NULL;
        const char *hblock_end = empty ? start : hend;
        if (!data) return err_set(err, "part %d: the header block does not end (truncated body?)", out->n + 1);
        if (hblock_end - start > MP_MAX_HEADER_BLOCK)
            return err_set(err, "part %d: header lines longer than %d bytes", out->n + 1, MP_MAX_HEADER_BLOCK);
        if (read_headers(start, hblock_end, part, out->n, err) != 0) return -1;
        const char *d = memmem(data, (size_t)(end - data), delim, dlen);
        if (!d) return err_set(err, "part %d: no closing boundary delimiter (truncated body?)", out->n + 1);
        part->data = data;
        part->len = (size_t)(d - data);
        for (int k = 0; k < out->n; k++)
            if (strcmp(out->parts[k].name, part->name) == 0)
                return err_set(err, "part %d: a second part named \"%s\"", out->n + 1, part->name);
        out->n++;
        p = d + dlen;
    }
    if (out->n == 0) return err_set(err, "the form has no parts");
    return 0;
}

const mp_part *mp_find(const mp_form *f, const char *name) {
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->parts[i].name, name) == 0) return &f->parts[i];
    return NULL;
}
