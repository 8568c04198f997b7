// tokcheck: compares core/tokenizer.c with the npm oracle's output
// (tests/tokenizer/oracle.js) and checks the tokenizer API.
//
//   tokcheck check ORACLE.tsv [--min N] [--threads K]
//       every E line: encode with and without special-token parsing and with
//       add_special, round trip, decode, streaming decode; every D line:
//       decode and streaming decode of random ids. Fails on any mismatch or
//       fewer than N (default 2000) corpus strings. --threads re-encodes the
//       corpus from K threads at once on the same tok and compares.
//   tokcheck api QWEN3_DIR LLAMA3_DIR SCRATCH_DIR
//       vocabulary queries, BOS/EOS, streaming edge cases, and the error
//       messages of broken tokenizer.json files written to SCRATCH_DIR.
//   tokcheck encode PATH [--plain] TEXT
//       prints the ids of TEXT (a debugging aid).
#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include "tokenizer.h"
#include "util.h"

// ---------------------------------------------------------------------------
// Oracle file parsing.

typedef struct id_list {
    int32_t *v;
    size_t n;
    int given;  // 0 for '-'
} id_list;

typedef struct byte_str {
    char *p;
    size_t n;
    int given;
} byte_str;

typedef struct ecase {
    int line;
    byte_str input, roundtrip, dec_skip;
    id_list special, plain, add;
} ecase;

typedef struct dcase {
    int line;
    id_list ids;
    byte_str dec, dec_skip;
} dcase;

static int hexval(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static byte_str parse_hex(const char *s) {
    byte_str b = {0};
    if (strcmp(s, "-") == 0) return b;
    size_t n = strlen(s);
    b.p = malloc(n / 2 + 1);
    for (size_t i = 0; i + 1 < n; i += 2) b.p[b.n++] = (char)(hexval(s[i]) * 16 + hexval(s[i + 1]));
    b.p[b.n] = '\0';
    b.given = 1;
    return b;
}

static id_list parse_ids(const char *s) {
    id_list r = {0};
    if (strcmp(s, "-") == 0) return r;
    r.given = 1;
    size_t cap = 1;
    for (const char *p = s; *p; p++) cap += *p == ',';
    r.v = malloc(cap * sizeof *r.v);
    for (const char *p = s; *p;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p) break;  // malformed; the comparison will fail
        r.v[r.n++] = (int32_t)v;
        p = *end == ',' ? end + 1 : end;
    }
    return r;
}

// Splits line at tabs in place; returns the field count.
static int fields(char *line, char **f, int max) {
    int n = 0;
    f[n++] = line;
    for (char *p = line; *p && n < max; p++)
        if (*p == '\t') {
            *p = '\0';
            f[n++] = p + 1;
        }
    return n;
}

typedef struct oracle {
    char name[64];
    char *dir;
    ecase *e;
    size_t ne;
    dcase *d;
    size_t nd;
} oracle;

static int read_oracle(const char *path, oracle *o) {
    err_t err;
    char *text = util_read_file(path, NULL, &err);
    if (!text) {
        fprintf(stderr, "tokcheck: %s\n", err.msg);
        return -1;
    }
    size_t lines = 1;
    for (char *p = text; *p; p++) lines += *p == '\n';
    o->e = calloc(lines, sizeof *o->e);
    o->d = calloc(lines, sizeof *o->d);
    int lineno = 0;
    for (char *line = text, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = '\0';
        lineno++;
        char *f[8];
        int nf = fields(line, f, 8);
        if (f[0][0] == '#' && nf >= 3) {
            snprintf(o->name, sizeof o->name, "%s", f[1]);
            o->dir = strdup(f[2]);
        } else if (strcmp(f[0], "E") == 0 && nf == 7) {
            o->e[o->ne++] = (ecase){lineno, parse_hex(f[1]), parse_hex(f[5]), parse_hex(f[6]),
                                    parse_ids(f[2]), parse_ids(f[3]), parse_ids(f[4])};
        } else if (strcmp(f[0], "D") == 0 && nf == 4) {
            o->d[o->nd++] = (dcase){lineno, parse_ids(f[1]), parse_hex(f[2]), parse_hex(f[3])};
        } else {
            fprintf(stderr, "tokcheck: %s:%d: malformed line\n", path, lineno);
            free(text);
            return -1;
        }
    }
    free(text);
    if (!o->dir) {
        fprintf(stderr, "tokcheck: %s: no '#' header line naming the tokenizer\n", path);
        return -1;
    }
    return 0;
}

static void free_oracle(oracle *o) {
    for (size_t i = 0; i < o->ne; i++) {
        ecase *c = &o->e[i];
        free(c->input.p), free(c->roundtrip.p), free(c->dec_skip.p);
        free(c->special.v), free(c->plain.v), free(c->add.v);
    }
    for (size_t i = 0; i < o->nd; i++) free(o->d[i].ids.v), free(o->d[i].dec.p), free(o->d[i].dec_skip.p);
    free(o->e), free(o->d), free(o->dir);
}

// ---------------------------------------------------------------------------
// Reporting.

static int shown = 0;  // details printed so far
#define MAX_SHOWN 8

static void print_escaped(const char *s, size_t n, size_t max) {
    fputc('"', stderr);
    for (size_t i = 0; i < n && i < max; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n') fputs("\\n", stderr);
        else if (c == '\t') fputs("\\t", stderr);
        else if (c == '\r') fputs("\\r", stderr);
        else if (c == '"' || c == '\\') fprintf(stderr, "\\%c", c);
        else if (c < 0x20 || c == 0x7F) fprintf(stderr, "\\x%02x", c);
        else fputc(c, stderr);
    }
    fprintf(stderr, "\"%s", n > max ? "..." : "");
}

static void print_ids(const tok *t, const int32_t *v, size_t n, size_t from) {
    size_t end = from + 12 < n ? from + 12 : n;
    fprintf(stderr, "[%zu ids] %s", n, from ? "... " : "");
    for (size_t i = from; i < end; i++) {
        const char *s = tok_token_str(t, v[i]);
        fprintf(stderr, "%d", v[i]);
        if (s) {
            fputc('=', stderr);
            print_escaped(s, strlen(s), 24);
        }
        fputc(' ', stderr);
    }
    fprintf(stderr, "%s\n", end < n ? "..." : "");
}

static int same_ids(const int32_t *a, size_t na, const id_list *b) {
    return na == b->n && (na == 0 || memcmp(a, b->v, na * sizeof *a) == 0);
}

static void report_ids(const tok *t, const char *what, const ecase *c, const int32_t *got, size_t n,
                       const id_list *want) {
    if (shown++ >= MAX_SHOWN) return;
    size_t d = 0;
    while (d < n && d < want->n && got[d] == want->v[d]) d++;
    size_t from = d > 3 ? d - 3 : 0;
    fprintf(stderr, "MISMATCH %s, oracle line %d, first difference at id %zu\n  input ", what, c->line, d);
    print_escaped(c->input.p, c->input.n, 200);
    fprintf(stderr, "\n  want ");
    print_ids(t, want->v, want->n, from);
    fprintf(stderr, "  got  ");
    print_ids(t, got, n, from);
}

static void report_text(const char *what, int line, const char *got, size_t n, const byte_str *want) {
    if (shown++ >= MAX_SHOWN) return;
    fprintf(stderr, "MISMATCH %s, oracle line %d\n  want ", what, line);
    print_escaped(want->p, want->n, 200);
    fprintf(stderr, "\n  got  ");
    print_escaped(got, n, 200);
    fputc('\n', stderr);
}

// ---------------------------------------------------------------------------
// The checks.

typedef struct counts {
    int enc_special, enc_plain, enc_add, roundtrip, decode, stream, errors;
} counts;

static int utf8_ok(const char *s, size_t n) {
    // Strict well-formedness (RFC 3629), written apart from the code under test.
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        unsigned c = u[i], lo = 0x80, hi = 0xBF;
        size_t k;
        if (c < 0x80) k = 0;
        else if (c >= 0xC2 && c <= 0xDF) k = 1;
        else if (c >= 0xE0 && c <= 0xEF) k = 2, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
        else if (c >= 0xF0 && c <= 0xF4) k = 3, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
        else return 0;
        if (k > n - 1 - i) return 0;
        for (size_t j = 1; j <= k; j++) {
            if (u[i + j] < lo || u[i + j] > hi) return 0;
            lo = 0x80, hi = 0xBF;
        }
        i += k + 1;
    }
    return 1;
}

// Streams ids through tok_stream and checks that every chunk is whole UTF-8
// and that the chunks add up to tok_decode's output.
static int stream_matches(const tok *t, const int32_t *v, size_t n, int skip) {
    size_t want_n, len;
    char *want = tok_decode(t, v, n, skip, &want_n);
    tok_stream *s = tok_stream_new(t, skip);
    char *got = malloc(want_n + 16);
    size_t got_n = 0;
    int ok = want && s && got;
    for (size_t i = 0; ok && i <= n; i++) {
        const char *chunk = i < n ? tok_stream_push(s, v[i], &len) : tok_stream_flush(s, &len);
        if (!chunk || !utf8_ok(chunk, len) || got_n + len > want_n) {
            ok = 0;
            break;
        }
        memcpy(got + got_n, chunk, len);
        got_n += len;
    }
    ok = ok && got_n == want_n && memcmp(got, want, want_n) == 0;
    free(want), free(got);
    tok_stream_free(s);
    return ok;
}

static void check_encode(const tok *t, const ecase *c, counts *k) {
    struct {
        const id_list *want;
        int flags;
        int *count;
        const char *what;
    } runs[] = {
        {&c->special, TOK_PARSE_SPECIAL, &k->enc_special, "encode (parse special)"},
        {&c->plain, 0, &k->enc_plain, "encode (plain text)"},
        {&c->add, TOK_PARSE_SPECIAL | TOK_ADD_SPECIAL, &k->enc_add, "encode (add special)"},
    };
    for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
        if (!runs[r].want->given) continue;
        err_t err;
        size_t n;
        int32_t *got = tok_encode_ex(t, c->input.p, c->input.n, runs[r].flags, &n, &err);
        if (!got) {
            k->errors++;
            fprintf(stderr, "ERROR line %d: %s\n", c->line, err.msg);
            continue;
        }
        if (!same_ids(got, n, runs[r].want)) {
            (*runs[r].count)++;
            report_ids(t, runs[r].what, c, got, n, runs[r].want);
        }
        // Round trip: our own ids decode to the (normalized) input.
        if (c->roundtrip.given && runs[r].flags != (TOK_PARSE_SPECIAL | TOK_ADD_SPECIAL)) {
            size_t dn;
            char *d = tok_decode(t, got, n, 0, &dn);
            if (!d || dn != c->roundtrip.n || memcmp(d, c->roundtrip.p, dn) != 0) {
                k->roundtrip++;
                report_text("round trip", c->line, d, d ? dn : 0, &c->roundtrip);
            }
            free(d);
        }
        free(got);
    }
}

static void check_decode(const tok *t, const int32_t *v, size_t n, const byte_str *want, int skip, int line,
                         counts *k) {
    if (want->given) {
        size_t dn;
        char *d = tok_decode(t, v, n, skip, &dn);
        if (!d || dn != want->n || memcmp(d, want->p, dn) != 0 || d[dn] != '\0') {
            k->decode++;
            report_text(skip ? "decode (skip special)" : "decode", line, d, d ? dn : 0, want);
        }
        free(d);
    }
    if (!stream_matches(t, v, n, skip)) {
        k->stream++;
        if (shown++ < MAX_SHOWN) fprintf(stderr, "MISMATCH streaming decode (skip=%d), oracle line %d\n", skip, line);
    }
}

typedef struct thread_job {
    const tok *t;
    const oracle *o;
    int start, step;
    int bad;
} thread_job;

static void *thread_main(void *arg) {
    thread_job *j = arg;
    for (size_t i = (size_t)j->start; i < j->o->ne; i += (size_t)j->step) {
        const ecase *c = &j->o->e[i];
        size_t n;
        int32_t *got = tok_encode(j->t, c->input.p, c->input.n, 1, &n, NULL);
        if (!got || !same_ids(got, n, &c->special)) j->bad++;
        free(got);
    }
    return NULL;
}

static int check_threads(const tok *t, const oracle *o, int k) {
    pthread_t th[16];
    thread_job jobs[16];
    if (k > 16) k = 16;
    for (int i = 0; i < k; i++) {
        jobs[i] = (thread_job){t, o, i, k, 0};
        pthread_create(&th[i], NULL, thread_main, &jobs[i]);
    }
    int bad = 0;
    for (int i = 0; i < k; i++) {
        pthread_join(th[i], NULL);
        bad += jobs[i].bad;
    }
    return bad;
}

static int cmd_check(int argc, char **argv) {
    const char *path = argv[0];
    int min = 2000, threads = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--min") == 0) min = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--threads") == 0) threads = atoi(argv[i + 1]);
    }
    oracle o = {0};
    if (read_oracle(path, &o)) return 1;
    err_t err;
    tok *t = tok_open(o.dir, &err);
    if (!t) {
        fprintf(stderr, "tokcheck: %s\n", err.msg);
        free_oracle(&o);
        return 1;
    }
    counts k = {0};
    for (size_t i = 0; i < o.ne; i++) {
        const ecase *c = &o.e[i];
        check_encode(t, c, &k);
        if (c->special.given) {
            check_decode(t, c->special.v, c->special.n, &c->roundtrip, 0, c->line, &k);
            check_decode(t, c->special.v, c->special.n, &c->dec_skip, 1, c->line, &k);
        }
    }
    for (size_t i = 0; i < o.nd; i++) {
        const dcase *c = &o.d[i];
        check_decode(t, c->ids.v, c->ids.n, &c->dec, 0, c->line, &k);
        check_decode(t, c->ids.v, c->ids.n, &c->dec_skip, 1, c->line, &k);
    }
    int thread_bad = threads > 0 ? check_threads(t, &o, threads) : 0;
    int bad = k.enc_special + k.enc_plain + k.enc_add + k.roundtrip + k.decode + k.stream + k.errors + thread_bad;
    printf("%s: %zu strings, %zu decode cases; mismatches: encode %d, encode plain-text %d, "
           "encode add-special %d, round trip %d, decode %d, stream %d, errors %d, threads(%d) %d\n",
           o.name, o.ne, o.nd, k.enc_special, k.enc_plain, k.enc_add, k.roundtrip, k.decode, k.stream, k.errors,
           threads, thread_bad);
    if ((int)o.ne < min) {
        printf("FAIL %s: corpus has %zu strings, fewer than %d\n", o.name, o.ne, min);
        bad++;
    }
    tok_free(t);
    free_oracle(&o);
    return bad ? 1 : 0;
}

// ---------------------------------------------------------------------------
// API facts and error messages.

static void check_stream_edges(const tok *t) {
    // "中" is E4 B8 AD: fed one byte token at a time, nothing comes out until
    // the last byte; a cut-off character flushes as U+FFFD.
    size_t len;
    int32_t bytes[3];
    // Lone byte tokens are not reachable from text (a lone E4 is
    // ill-formed and encodes as U+FFFD), so look them up in the vocab.
    const char *names[3] = {"ä", "¸", "Ń"};  // the byte alphabet for E4, B8, AD
    for (int i = 0; i < 3; i++) bytes[i] = tok_token_id(t, names[i]);
    CHECK(bytes[0] >= 0 && bytes[1] >= 0 && bytes[2] >= 0);
    tok_stream *s = tok_stream_new(t, 0);
    const char *out = tok_stream_push(s, bytes[0], &len);
    CHECK(out && len == 0);
    out = tok_stream_push(s, bytes[1], &len);
    CHECK(out && len == 0);
    out = tok_stream_push(s, bytes[2], &len);
    CHECK(out && len == 3 && memcmp(out, "\xE4\xB8\xAD", 3) == 0);
    tok_stream_push(s, bytes[0], &len);
    out = tok_stream_flush(s, &len);
    CHECK(out && len == 3 && memcmp(out, "\xEF\xBF\xBD", 3) == 0, "cut-off character flushes as U+FFFD");
    // An ill-formed continuation comes out at once: E4 then 'a'.
    tok_stream_push(s, bytes[0], &len);
    out = tok_stream_push(s, tok_token_id(t, "a"), &len);
    CHECK(out && len == 4 && memcmp(out, "\xEF\xBF\xBD" "a", 4) == 0);
    out = tok_stream_flush(s, &len);
    CHECK(out && len == 0);
    tok_stream_free(s);
}

static void check_facts(const char *qwen_dir, const char *llama_dir) {
    err_t err;
    tok *q = tok_open(qwen_dir, &err);
    CHECK(q, "%s", err.msg);
    char *file = util_path_join(llama_dir, "tokenizer.json");
    tok *l = tok_open(file, &err);  // a file path works as well as a folder
    free(file);
    CHECK(l, "%s", err.msg);
    if (!q || !l) {
        tok_free(q), tok_free(l);
        return;
    }
    CHECK(tok_vocab_size(q) == 151669, "qwen3 vocab %d", tok_vocab_size(q));
    CHECK(tok_vocab_size(l) == 128256, "llama3 vocab %d", tok_vocab_size(l));
    CHECK(tok_token_id(q, "<|im_end|>") == 151645);
    CHECK(tok_token_id(q, "<think>") == 151667);
    CHECK(tok_token_id(q, "Ġthe") == 279);
    CHECK(tok_token_id(q, "no such token") == -1);
    CHECK(tok_token_str(q, 279) && strcmp(tok_token_str(q, 279), "Ġthe") == 0);
    CHECK(tok_token_str(q, 151644) && strcmp(tok_token_str(q, 151644), "<|im_start|>") == 0);
    CHECK(tok_token_str(q, -1) == NULL && tok_token_str(q, 151669) == NULL);
    CHECK(tok_is_special(q, 151645) && !tok_is_special(q, 151667) && !tok_is_special(q, 279));
    CHECK(tok_bos_id(q) == -1 && tok_eos_id(q) == 151645 && !tok_add_bos(q));
    CHECK(tok_bos_id(l) == 128000 && tok_eos_id(l) == 128001 && !tok_add_bos(l));
    CHECK(tok_is_special(l, 128009));

    size_t n, len;
    int32_t *ids = tok_encode(q, "", 0, 1, &n, NULL);
    CHECK(ids && n == 0, "empty text gives an empty, non-NULL array");
    free(ids);
    ids = tok_encode(q, NULL, 0, 1, &n, NULL);
    CHECK(ids && n == 0);
    free(ids);
    ids = tok_encode(q, "<|im_end|>", 10, 1, &n, NULL);
    CHECK(ids && n == 1 && ids[0] == 151645);
    free(ids);
    ids = tok_encode(q, "<|im_end|>", 10, 0, &n, NULL);
    CHECK(ids && n > 1, "plain text does not parse special tokens");
    free(ids);
    int32_t mixed[] = {151644, 279, 151645, -5, 99999999};
    char *d = tok_decode(q, mixed, 5, 1, &len);
    CHECK(d && strcmp(d, " the") == 0 && len == 4, "skip special, ignore bad ids: '%s'", d ? d : "");
    free(d);
    d = tok_decode(q, NULL, 0, 0, &len);
    CHECK(d && len == 0 && d[0] == '\0');
    free(d);
    check_stream_edges(q);
    check_stream_edges(l);
    tok_free(q);
    tok_free(l);
}

// A minimal byte-level BPE tokenizer.json as a cJSON tree: the 256 byte
// tokens plus "ab" from one merge. Tests break one field at a time.
static cJSON *mini_json(void) {
    cJSON *root = cJSON_CreateObject(), *model = cJSON_AddObjectToObject(root, "model");
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON *vocab = cJSON_AddObjectToObject(model, "vocab");
    int next = 256, id = 0;
    for (int b = 0; b < 256; b++) {
        int keep = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        int cp = keep ? b : next++;
        char s[3] = {0};
        if (cp < 0x80) s[0] = (char)cp;
        else s[0] = (char)(0xC0 | (cp >> 6)), s[1] = (char)(0x80 | (cp & 0x3F));
        cJSON_AddNumberToObject(vocab, s, id++);
    }
    cJSON_AddNumberToObject(vocab, "ab", id++);
    cJSON *merges = cJSON_AddArrayToObject(model, "merges");
    cJSON_AddItemToArray(merges, cJSON_CreateString("a b"));
    cJSON_AddArrayToObject(root, "added_tokens");
    cJSON *pre = cJSON_AddObjectToObject(root, "pre_tokenizer");
    cJSON_AddStringToObject(pre, "type", "ByteLevel");
    cJSON *dec = cJSON_AddObjectToObject(root, "decoder");
    cJSON_AddStringToObject(dec, "type", "ByteLevel");
    return root;
}

// Writes json into dir/tokenizer.json, opens it and checks the outcome: NULL
// want means success, else the error must contain want.
static void expect_open(const char *dir, cJSON *json, const char *want) {
    char *path = util_path_join(dir, "tokenizer.json");
    char *text = cJSON_PrintUnformatted(json);
    err_t err = {{0}};
    CHECK(util_write_file_atomic(path, text, strlen(text), &err) == 0, "%s", err.msg);
    tok *t = tok_open(path, &err);
    if (!want) {
        CHECK(t, "mini tokenizer should open: %s", err.msg);
    } else {
        CHECK(!t && strstr(err.msg, want) && strstr(err.msg, "tokenizer.json"), "want '%s', got '%s'", want,
              t ? "success" : err.msg);
    }
    if (t && !want) {
        size_t n;
        int32_t *ids = tok_encode(t, "abab a", 6, 1, &n, NULL);
        CHECK(ids && n == 4 && ids[0] == 256 && ids[1] == 256, "mini encode");
        free(ids);
    }
    tok_free(t);
    free(text);
    free(path);
    cJSON_Delete(json);
}

static void check_errors(const char *dir) {
    expect_open(dir, mini_json(), NULL);
    cJSON *j = mini_json();
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(j, "model"), "type", cJSON_CreateString("Unigram"));
    expect_open(dir, j, "model.type 'Unigram' unsupported (only BPE)");
    j = mini_json();
    cJSON_AddItemToArray(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "model"), "merges"), cJSON_CreateString("a c"));
    expect_open(dir, j, "model.merges[1] ('a', 'c'): merged token not in the vocab");
    j = mini_json();
    cJSON_AddItemToArray(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "model"), "merges"), cJSON_CreateString("abc"));
    expect_open(dir, j, "model.merges[1] is neither");
    j = mini_json();
    cJSON_DeleteItemFromObject(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "model"), "vocab"), "A");
    expect_open(dir, j, "lacks the byte-level token for byte 0x41");
    j = mini_json();
    cJSON_AddItemToObject(j, "normalizer", cJSON_Parse("{\"type\":\"NFKC\"}"));
    expect_open(dir, j, "normalizer.type 'NFKC' unsupported");
    j = mini_json();
    cJSON_ReplaceItemInObject(j, "pre_tokenizer",
                              cJSON_Parse("{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(\"},\"behavior\":\"Isolated\"}"));
    expect_open(dir, j, "pre_tokenizer regex '('");
    j = mini_json();
    cJSON_ReplaceItemInObject(j, "pre_tokenizer", cJSON_Parse("{\"type\":\"Metaspace\"}"));
    expect_open(dir, j, "pre_tokenizer.type 'Metaspace' unsupported");
    j = mini_json();
    cJSON_ReplaceItemInObject(j, "decoder", cJSON_Parse("{\"type\":\"WordPiece\"}"));
    expect_open(dir, j, "decoder.type 'WordPiece' unsupported");
    j = mini_json();
    cJSON_AddItemToObject(cJSON_GetObjectItem(j, "model"), "byte_fallback", cJSON_CreateTrue());
    expect_open(dir, j, "byte_fallback unsupported");
    j = mini_json();
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "model"), "vocab"), "ab",
                              cJSON_CreateNumber(-3));
    expect_open(dir, j, "model.vocab['ab'] is not an id");

    // Not JSON at all, and a missing file.
    char *path = util_path_join(dir, "tokenizer.json");
    err_t err;
    util_write_file_atomic(path, "{\"model\": [", 11, &err);
    tok *t = tok_open(path, &err);
    CHECK(!t && strstr(err.msg, "invalid JSON"), "%s", err.msg);
    free(path);
    path = util_path_join(dir, "no-such-folder");
    t = tok_open(path, &err);
    CHECK(!t && strstr(err.msg, "no-such-folder: No such file"), "%s", err.msg);
    free(path);
}

// BOS from a TemplateProcessing post_processor, and from add_bos_token in
// tokenizer_config.json when there is no template.
static void check_add_bos(const char *dir) {
    cJSON *j = mini_json();
    cJSON_ReplaceItemInObject(j, "added_tokens",
                              cJSON_Parse("[{\"id\":257,\"content\":\"<s>\",\"special\":true},"
                                          "{\"id\":258,\"content\":\"</s>\",\"special\":true}]"));
    cJSON *j2 = cJSON_Duplicate(j, 1);
    cJSON_AddItemToObject(j, "post_processor",
                          cJSON_Parse("{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\"}},"
                                      "{\"Sequence\":{\"id\":\"A\"}},{\"SpecialToken\":{\"id\":\"</s>\"}}],"
                                      "\"special_tokens\":{\"<s>\":{\"ids\":[257]},\"</s>\":{\"ids\":[258]}}}"));
    char *path = util_path_join(dir, "tokenizer.json"), *cfg = util_path_join(dir, "tokenizer_config.json");
    err_t err = {{0}};
    for (int round = 0; round < 2; round++) {
        char *text = cJSON_PrintUnformatted(round == 0 ? j : j2);
        const char *config = round == 0 ? "{}" : "{\"bos_token\":\"<s>\",\"add_bos_token\":true}";
        util_write_file_atomic(path, text, strlen(text), &err);
        util_write_file_atomic(cfg, config, strlen(config), &err);
        free(text);
        tok *t = tok_open(dir, &err);
        CHECK(t, "%s", err.msg);
        if (!t) continue;
        size_t n;
        int32_t *ids = tok_encode_ex(t, "ab", 2, TOK_PARSE_SPECIAL | TOK_ADD_SPECIAL, &n, &err);
        CHECK(tok_add_bos(t), "round %d", round);
        if (round == 0) CHECK(ids && n == 3 && ids[0] == 257 && ids[1] == 256 && ids[2] == 258, "template");
        if (round == 1) CHECK(ids && n == 2 && ids[0] == 257 && ids[1] == 256 && tok_bos_id(t) == 257, "add_bos_token");
        free(ids);
        ids = tok_encode(t, "ab", 2, 1, &n, &err);
        CHECK(ids && n == 1 && ids[0] == 256, "no BOS without TOK_ADD_SPECIAL");
        free(ids);
        tok_free(t);
    }
    remove(cfg);
    free(path), free(cfg);
    cJSON_Delete(j), cJSON_Delete(j2);
}

static int cmd_api(char **argv) {
    check_facts(argv[0], argv[1]);
    check_errors(argv[2]);
    check_add_bos(argv[2]);
    return check_finish("tokcheck api");
}

static int cmd_encode(int argc, char **argv) {
    err_t err;
    tok *t = tok_open(argv[0], &err);
    if (!t) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    int plain = argc > 2 && strcmp(argv[1], "--plain") == 0;
    const char *text = argv[argc - 1];
    size_t n;
    int32_t *ids = tok_encode(t, text, strlen(text), !plain, &n, &err);
    for (size_t i = 0; ids && i < n; i++) printf("%d%s", ids[i], i + 1 < n ? " " : "\n");
    free(ids);
    tok_free(t);
    return ids ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc >= 3 && strcmp(argv[1], "check") == 0) return cmd_check(argc - 2, argv + 2);
    if (argc == 5 && strcmp(argv[1], "api") == 0) return cmd_api(argv + 2);
    if (argc >= 4 && strcmp(argv[1], "encode") == 0) return cmd_encode(argc - 2, argv + 2);
    fprintf(stderr, "usage: tokcheck check ORACLE.tsv [--min N] [--threads K]\n"
                    "       tokcheck api QWEN3_DIR LLAMA3_DIR SCRATCH_DIR\n"
                    "       tokcheck encode PATH [--plain] TEXT\n");
    return 2;
}
