// jscheck: the schema compiler against MaskBench files, without the token
// engine: compile each schema (js_compile), read each test's text with the
// reference reader (tests/js_eval.h), compare with "valid".
//
//   jscheck [--fail-list FILE] PATH...   files or folders of MaskBench JSON
//
// Prints one line per failing schema to the fail list ("FILE\tKIND\tWHY")
// and a summary line: schemas, passing, compile_error, false_reject,
// false_accept, compile p50 / max microseconds.
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "../js_eval.h"
#include "jsonschema.h"
#include "util.h"

typedef struct stats {
    int schemas, passing, compile_error, false_reject, false_accept;
    double *us;
    int n_us, cap_us;
    FILE *fails;
} stats;

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static void one_file(stats *st, const char *path) {
    err_t err = {{0}};
    size_t len;
    char *text = util_read_file(path, &len, &err);
    cJSON *doc = text ? cJSON_ParseWithLength(text, len) : NULL;
    free(text);
    if (!doc) {
        fprintf(stderr, "jscheck: %s: cannot read\n", path);
        return;
    }
    st->schemas++;
    double t0 = now_us();
    js_schema *s = js_compile(cJSON_GetObjectItemCaseSensitive(doc, "schema"), &err);
    double dt = now_us() - t0;
    if (st->n_us == st->cap_us) {
        st->cap_us = st->cap_us ? 2 * st->cap_us : 1024;
        st->us = realloc(st->us, (size_t)st->cap_us * sizeof *st->us);
    }
    st->us[st->n_us++] = dt;
    if (dt > 200000) fprintf(stderr, "jscheck: %s: compile took %.0f ms\n", path, dt / 1000);
    if (!s) {
        st->compile_error++;
        if (st->fails) fprintf(st->fails, "%s\tcompile_error\t%s\n", path, err.msg);
        cJSON_Delete(doc);
        return;
    }
    int fr = 0, fa = 0, i = 0;
    const cJSON *t;
    cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(doc, "tests")) {
        const char *tx = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "text"));
        int valid = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(t, "valid"));
        int got = tx ? js_eval(s, tx, strlen(tx)) : 0;
        if (valid && !got) fr++;
        if (!valid && got) fa++;
        if (st->fails && valid != got) fprintf(st->fails, "%s\t%s\ttest %d: %.200s\n", path, valid ? "false_reject" : "false_accept", i, tx);
        i++;
    }
    st->false_reject += fr > 0;
    st->false_accept += fa > 0;
    st->passing += !fr && !fa;
    js_free(s);
    cJSON_Delete(doc);
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int cmp_s(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void one_path(stats *st, const char *path) {
    struct stat sb;
    if (stat(path, &sb) || !S_ISDIR(sb.st_mode)) {
        one_file(st, path);
        return;
    }
    DIR *d = opendir(path);
    if (!d) return;
    char **names = NULL;
    int n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (l < 6 || strcmp(de->d_name + l - 5, ".json")) continue;
        if (n == cap) names = realloc(names, (size_t)(cap = cap ? 2 * cap : 256) * sizeof *names);
        names[n] = malloc(strlen(path) + l + 2);
        sprintf(names[n++], "%s/%s", path, de->d_name);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, cmp_s);
    for (int i = 0; i < n; i++) {
        one_file(st, names[i]);
        free(names[i]);
    }
    free(names);
}

int main(int argc, char **argv) {
    stats st = {0};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--fail-list") && i + 1 < argc) {
            st.fails = fopen(argv[++i], "w");
            continue;
        }
        one_path(&st, argv[i]);
    }
    if (st.fails) fclose(st.fails);
    qsort(st.us, (size_t)st.n_us, sizeof *st.us, cmp_d);
    double p50 = st.n_us ? st.us[st.n_us / 2] : 0, mx = st.n_us ? st.us[st.n_us - 1] : 0;
    printf("{\"schemas\": %d, \"passing\": %d, \"compile_error\": %d, \"false_reject\": %d, \"false_accept\": %d, "
           "\"compile_us\": {\"p50\": %.0f, \"max\": %.0f}}\n",
           st.schemas, st.passing, st.compile_error, st.false_reject, st.false_accept, p50, mx);
    free(st.us);
    return st.false_accept ? 1 : 0;
}
