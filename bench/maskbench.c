// maskbench: the grammar engine (core/grammar.h) on MaskBench files, scored
// as MaskBench scores engines (/work/shared/data/README.md).
//
//   build/maskbench --tokenizer DIR PATH... [--fail-list FILE] [--cache-mib N]
//
// PATH: MaskBench .json files or folders of them. Per schema: TTFM = compile
// + matcher + first mask. Per test: the text tokenized (no special tokens),
// then per token the mask is timed (TBM), its bit checked and the token
// accepted; accepted iff every token was allowed and the value is complete.
// Every token's mask bit is also checked against gm_accept_token's own
// answer (a disagreement is an engine bug, counted and printed).
// Single-threaded. The last stdout line is the summary JSON object, with
// the vocab's cache at the end (--cache-mib: its budget, else the default).
#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "grammar_int.h"
#include "tokenizer.h"

typedef struct samples {
    double *v;
    size_t n, cap;
} samples;

typedef struct bench {
    tok *t;
    gm_vocab *v;
    uint32_t *bits;
    FILE *fail;
    samples tbm, ttfm;
    int schemas, passing, compile_error, false_reject, false_accept, disagree;
} bench;

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static void push(samples *s, double x) {
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 4096;
        s->v = realloc(s->v, s->cap * sizeof *s->v);
        if (!s->v) {
            fprintf(stderr, "maskbench: out of memory\n");
            exit(1);
        }
    }
    s->v[s->n++] = x;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(const samples *s, double p) {
    if (!s->n) return 0;
    size_t i = (size_t)(p * (double)(s->n - 1) + 0.5);
    return s->v[i];
}

static char *read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    if (buf) buf[n] = 0;
    fclose(f);
    return buf;
}

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

// Runs one test text; 1 accepted, 0 refused (why: the refused token).
static int run_test(bench *b, gm_matcher *m, const char *text, char *why, size_t why_cap) {
    err_t e = {0};
    size_t n = 0;
    int32_t *ids = tok_encode(b->t, text, strlen(text), 0, &n, &e);
    int ok = 1;
    gm_matcher_reset(m);
    for (size_t i = 0; ids && i < n; i++) {
        double t0 = now_us();
        gm_mask(m, b->bits);
        push(&b->tbm, now_us() - t0);
        bool bit = b->bits[ids[i] / 32] >> (ids[i] % 32) & 1;
        if (bit != gm_matcher_allows(m, ids[i])) {
            b->disagree++;
            fprintf(stderr, "maskbench: BUG mask bit %d but matcher %d, token %zu '%s'\n", bit, !bit, i,
                    tok_token_str(b->t, ids[i]));
        }
        if (!bit || gm_accept_token(m, ids[i]) < 0) {
            size_t len = 0;
            const char *tb = tok_token_bytes(b->t, ids[i], &len);
            snprintf(why, why_cap, "token %zu %.*s refused", i, (int)len, tb ? tb : "");
            ok = 0;
            break;
        }
    }
    if (ok && !gm_is_complete(m)) {
        snprintf(why, why_cap, "incomplete at the end");
        ok = 0;
    }
    free(ids);
    return ok;
}

static void fail(bench *b, const char *file, const char *kind, const char *why) {
    if (b->fail) fprintf(b->fail, "%s\t%s\t%s\n", file, kind, why);
}

static void run_schema(bench *b, const char *path) {
    char *text = read_file(path);
    cJSON *doc = text ? cJSON_Parse(text) : NULL;
    free(text);
    if (!doc) {
        fprintf(stderr, "maskbench: %s: not readable JSON, skipped\n", path);
        return;
    }
    const char *file = base_name(path);
    b->schemas++;
    err_t e = {0};
    gm_opts o = {.ws_max = -1};
    double t0 = now_us();
    gm_grammar *g = gm_compile_json_schema(b->v, cJSON_GetObjectItem(doc, "schema"), &o, &e);
    gm_matcher *m = g ? gm_matcher_new(g, &e) : NULL;
    if (!m) {
        b->compile_error++;
        fail(b, file, "compile_error", e.msg);
        gm_grammar_unref(g);
        cJSON_Delete(doc);
        return;
    }
    gm_mask(m, b->bits);
    push(&b->ttfm, now_us() - t0);
    gm_grammar_unref(g);
    int pass = 1;
    const cJSON *tc;
    cJSON_ArrayForEach(tc, cJSON_GetObjectItem(doc, "tests")) {
        const char *tx = cJSON_GetStringValue(cJSON_GetObjectItem(tc, "text"));
        bool valid = cJSON_IsTrue(cJSON_GetObjectItem(tc, "valid"));
        char why[512] = "";
        if (!tx) continue;
        int acc = run_test(b, m, tx, why, sizeof why);
        if (valid && !acc && pass) {
            b->false_reject++;
            fail(b, file, "false_reject", why);
            pass = 0;
        } else if (!valid && acc && pass) {
            const char *d = cJSON_GetStringValue(cJSON_GetObjectItem(tc, "description"));
            b->false_accept++;
            fail(b, file, "false_accept", d ? d : tx);
            pass = 0;
        }
    }
    b->passing += pass;
    gm_matcher_free(m);
    cJSON_Delete(doc);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

// A folder's .json files in name order.
static void run_dir(bench *b, const char *dir) {
    DIR *d = opendir(dir);
    struct dirent *de;
    char **names = NULL;
    size_t n = 0, cap = 0;
    if (!d) return;
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        if (len < 5 || strcmp(de->d_name + len - 5, ".json")) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 1024;
            names = realloc(names, cap * sizeof *names);
        }
        names[n] = malloc(strlen(dir) + len + 2);
        sprintf(names[n++], "%s/%s", dir, de->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n; i++) {
        run_schema(b, names[i]);
        if (b->schemas % 500 == 0)
            fprintf(stderr, "maskbench: %d schemas, %d passing\n", b->schemas, b->passing);
        free(names[i]);
    }
    free(names);
}

int main(int argc, char **argv) {
    bench b = {0};
    const char *tokdir = NULL, *faillist = NULL;
    long cache_mib = -1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--tokenizer") && i + 1 < argc) tokdir = argv[++i];
        else if (!strcmp(argv[i], "--fail-list") && i + 1 < argc) faillist = argv[++i];
        else if (!strcmp(argv[i], "--cache-mib") && i + 1 < argc) cache_mib = atol(argv[++i]);
    }
    if (!tokdir) {
        fprintf(stderr, "usage: maskbench --tokenizer DIR PATH... [--fail-list FILE] [--cache-mib N]\n");
        return 2;
    }
    err_t e = {0};
    b.t = tok_open(tokdir, &e);
    if (!b.t || !(b.v = gm_vocab_new(b.t, &e))) {
        fprintf(stderr, "maskbench: %s\n", e.msg);
        return 1;
    }
    if (faillist && !(b.fail = fopen(faillist, "w"))) {
        fprintf(stderr, "maskbench: --fail-list %s: cannot write\n", faillist);
        return 1;
    }
    if (cache_mib >= 0) gm_vocab_set_cache_budget(b.v, (size_t)cache_mib << 20);
    b.bits = calloc(gm_mask_words(b.v), sizeof *b.bits);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--tokenizer") || !strcmp(argv[i], "--fail-list") || !strcmp(argv[i], "--cache-mib")) {
            i++;
            continue;
        }
        struct stat st;
        if (stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode)) run_dir(&b, argv[i]);
        else run_schema(&b, argv[i]);
    }
    qsort(b.tbm.v, b.tbm.n, sizeof *b.tbm.v, cmp_double);
    qsort(b.ttfm.v, b.ttfm.n, sizeof *b.ttfm.v, cmp_double);
    gm_cache_stats cs = gm_vocab_cache_stats(b.v);
    if (b.disagree) fprintf(stderr, "maskbench: %d mask/matcher disagreements (engine bug)\n", b.disagree);
    printf("{\"schemas\": %d, \"passing\": %d, \"compile_error\": %d, \"false_reject\": %d, "
           "\"false_accept\": %d, \"tbm_us\": {\"p50\": %.1f, \"p90\": %.1f, \"p99\": %.1f, \"max\": %.1f}, "
           "\"ttfm_us\": {\"p50\": %.1f, \"p99\": %.1f}, "
           "\"cache\": {\"mib\": %.1f, \"entries\": %zu, \"unpublished\": %llu}}\n",
           b.schemas, b.passing, b.compile_error, b.false_reject, b.false_accept, pct(&b.tbm, 0.5),
           pct(&b.tbm, 0.9), pct(&b.tbm, 0.99), b.tbm.n ? b.tbm.v[b.tbm.n - 1] : 0, pct(&b.ttfm, 0.5),
           pct(&b.ttfm, 0.99), cs.bytes / 1048576.0, cs.entries, (unsigned long long)cs.unpublished);
    if (b.fail) fclose(b.fail);
    free(b.bits);
    free(b.tbm.v);
    free(b.ttfm.v);
    gm_vocab_free(b.v);
    tok_free(b.t);
    return b.disagree ? 1 : 0;
}
