// test_multipart: serve/multipart.c, the multipart/form-data reader of
// POST /v1/files: the shapes real clients send (curl, httpx, undici), the
// RFC's preamble/epilogue, and bad inputs: each refused with a message,
// never read out of bounds (every truncation of a good body is tried under
// ASan), never accepted half-parsed.
#include "../serve/multipart.h"

#include <stdlib.h>
#include <string.h>

#include "../core/util.h"
#include "check.h"

#define CT "multipart/form-data; boundary=XyZ"

static const char good[] =
    "--XyZ\r\n"
    "Content-Disposition: form-data; name=\"purpose\"\r\n"
    "\r\n"
    "fine-tune\r\n"
    "--XyZ\r\n"
    "Content-Disposition: form-data; name=\"file\"; filename=\"C:\\\\data\\\\train.jsonl\"\r\n"
    "Content-Type: application/octet-stream\r\n"
    "\r\n"
    "{\"a\":1}\r\n{\"b\":2}\r\n"
    "--XyZ--\r\n";

// Parses a body given as a string (binary-safe length).
static int parse(const char *ct, const char *body, size_t len, mp_form *f, err_t *e) {
    // A heap copy of exactly len bytes, so ASan catches any read past the end.
    char *copy = malloc(len ? len : 1);
    memcpy(copy, body, len);
    int rc = mp_parse(ct, copy, len, f, e);
    if (rc == 0)
        for (int i = 0; i < f->n; i++) f->parts[i].data = body + (f->parts[i].data - copy);
    free(copy);
    return rc;
}

static void test_good(void) {
    mp_form f;
    err_t e = {{0}};
    CHECK(parse(CT, good, sizeof good - 1, &f, &e) == 0, "%s", e.msg);
    CHECK(f.n == 2);
    const mp_part *p = mp_find(&f, "purpose");
    CHECK(p && p->len == 9 && memcmp(p->data, "fine-tune", 9) == 0 && !p->has_filename);
    const mp_part *file = mp_find(&f, "file");
    CHECK(file && file->has_filename && strcmp(file->filename, "train.jsonl") == 0, "filename %s",
          file ? file->filename : "-");
    CHECK(file && strcmp(file->content_type, "application/octet-stream") == 0);
    CHECK(file && file->len == 16 && memcmp(file->data, "{\"a\":1}\r\n{\"b\":2}", 16) == 0);
    CHECK(mp_find(&f, "nope") == NULL);
}

static void test_client_shapes(void) {
    mp_form f;
    err_t e = {{0}};
    // undici/node FormData: a long boundary with dashes, quoted in the header.
    const char *ct = "Multipart/Form-Data; boundary=\"----formdata-undici-0123456789\"";
    const char body[] = "preamble to ignore\r\n------formdata-undici-0123456789\r\n"
                        "content-disposition: form-data; name=\"file\"; filename=\"a%22b.jsonl\"\r\n\r\n"
                        "x\r\n------formdata-undici-0123456789--\r\nepilogue";
    CHECK(parse(ct, body, sizeof body - 1, &f, &e) == 0, "%s", e.msg);
    CHECK(f.n == 1 && strcmp(f.parts[0].filename, "a%22b.jsonl") == 0 && f.parts[0].len == 1);
    // An empty file and an empty header-less value part are fine.
    const char empty[] = "--XyZ\r\nContent-Disposition: form-data; name=file; filename=\"\"\r\n\r\n\r\n--XyZ--";
    CHECK(parse(CT, empty, sizeof empty - 1, &f, &e) == 0, "%s", e.msg);
    CHECK(f.n == 1 && f.parts[0].len == 0 && f.parts[0].has_filename && f.parts[0].filename[0] == '\0');
    // Binary data with CR, LF, NUL and a near-boundary inside.
    const char bin[] = "--XyZ\r\nContent-Disposition: form-data; name=\"b\"\r\n\r\n\0\r\n--Xy\r\n-\r\n--XyZ--";
    CHECK(parse(CT, bin, sizeof bin - 1, &f, &e) == 0, "%s", e.msg);
    CHECK(f.n == 1 && f.parts[0].len == 10 && f.parts[0].data[0] == '\0');
}

static void expect_bad(const char *ct, const char *body, const char *want, const char *what) {
    mp_form f;
    err_t e = {{0}};
    int rc = parse(ct, body, strlen(body), &f, &e);
    CHECK(rc == -1, "%s: accepted", what);
    CHECK(rc != -1 || strstr(e.msg, want), "%s: message \"%s\" lacks \"%s\"", what, e.msg, want);
}

static void test_bad(void) {
    expect_bad(NULL, good, "missing", "no content type");
    expect_bad("application/json", good, "expected multipart", "json");
    expect_bad("multipart/form-data", good, "without a boundary", "no boundary");
    expect_bad("multipart/form-data; boundary=", good, "malformed", "empty boundary");
    expect_bad("multipart/form-data; boundary=\"abc", good, "malformed", "unterminated quote");
    expect_bad("multipart/form-data; boundary=a b", good, "malformed", "space in token");
    expect_bad("multipart/form-data; boundary=\"a<b\"", good, "RFC 2046", "bad bchar");
    expect_bad("multipart/form-data; boundary=x; boundary=y", good, "malformed", "two boundaries");
    char longb[120] = "multipart/form-data; boundary=";
    memset(longb + strlen(longb), 'a', 71);
    expect_bad(longb, good, "1 to 70", "71-char boundary");
    expect_bad(CT, "", "no boundary delimiter", "empty body");
    expect_bad(CT, "--XyZ--", "no parts", "no parts");
    expect_bad(CT, "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nabc", "no closing", "truncated data");
    expect_bad(CT, "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n", "does not end", "truncated headers");
    expect_bad(CT, "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nabc\r\n--XyZ", "CRLF or",
               "no final --");
    expect_bad(CT, "--XyZ\r\nContent-Disposition: form-data\r\n\r\nabc\r\n--XyZ--", "no name", "no name");
    expect_bad(CT, "--XyZ\r\nContent-Disposition: attachment; name=a\r\n\r\nabc\r\n--XyZ--", "form-data",
               "attachment");
    expect_bad(CT, "--XyZ\r\nContent-Type: text/plain\r\n\r\nabc\r\n--XyZ--", "no Content-Disposition", "no disp");
    expect_bad(CT, "--XyZ\r\nContent-Disposition: form-data; name=a\r\n  continued\r\n\r\nabc\r\n--XyZ--", "folded", "folded");
    expect_bad(CT, "--XyZ\r\nno colon here\r\n\r\nabc\r\n--XyZ--", "without a name", "no colon");
    expect_bad(CT, "--XyZ\r\nContent-Disposition: form-data; name=\"a\x01\"\r\n\r\nabc\r\n--XyZ--", "control",
               "control char in name");
    expect_bad(CT, "--XyZ\r\nContent-Disposition: form-data; name=a; filename=\"\xff.jsonl\"\r\n\r\nx\r\n--XyZ--",
               "UTF-8", "bad utf-8 filename");
    expect_bad(CT,
               "--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\nx\r\n--XyZ\r\n"
               "Content-Disposition: form-data; name=a\r\n\r\ny\r\n--XyZ--",
               "second part", "duplicate names");
    expect_bad(CT, "--XyZ\r\nContent-Disposition: form-data; name=a; name=b\r\n\r\nx\r\n--XyZ--", "malformed",
               "duplicate parameter");
    expect_bad(CT, "--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\nx\r\n--XyZjunk\r\n", "CRLF or",
               "boundary inside data");
    // Too many parts.
    util_buf b = {0};
    for (int i = 0; i <= MP_MAX_PARTS; i++) {
        char part[96];
        snprintf(part, sizeof part, "--XyZ\r\nContent-Disposition: form-data; name=\"p%d\"\r\n\r\nv\r\n", i);
        util_buf_puts(&b, part);
    }
    util_buf_puts(&b, "--XyZ--");
    expect_bad(CT, b.p, "more than", "too many parts");
    free(b.p);
    // A header block over the limit.
    util_buf h = {0};
    util_buf_puts(&h, "--XyZ\r\nContent-Disposition: form-data; name=a\r\n");
    for (int i = 0; i < 400; i++) util_buf_puts(&h, "X-Filler: 0123456789012345678901234\r\n");
    util_buf_puts(&h, "\r\nv\r\n--XyZ--");
    expect_bad(CT, h.p, "longer than", "huge header block");
    free(h.p);
}

// Every prefix of a good body is either refused or (for prefixes that end
// after the final delimiter) equal to the whole; every single-byte
// corruption parses or fails cleanly. ASan watches the reads.
static void test_truncations_and_flips(void) {
    size_t n = sizeof good - 1;
    mp_form f;
    err_t e;
    int accepted = 0;
    for (size_t k = 0; k < n; k++) {
        int rc = parse(CT, good, k, &f, &e);
        if (rc == 0) {
            accepted++;
            CHECK(k >= n - 4, "prefix of %zu bytes accepted", k); // only the epilogue CRLF may go
        }
    }
    CHECK(accepted >= 1);
    char *m = malloc(n);
    unsigned seed = 12345;
    for (int t = 0; t < 4000; t++) {
        memcpy(m, good, n);
        seed = seed * 1103515245u + 12345u;
        size_t at = (seed >> 8) % n;
        seed = seed * 1103515245u + 12345u;
        m[at] = (char)(seed >> 16);
        int rc = parse(CT, m, n, &f, &e);
        CHECK(rc == 0 || rc == -1);
        if (rc == 0) CHECK(f.n >= 1 && f.n <= MP_MAX_PARTS);
    }
    free(m);
}

int main(void) {
    test_good();
    test_client_shapes();
    test_bad();
    test_truncations_and_flips();
    return check_finish("test_multipart");
}
