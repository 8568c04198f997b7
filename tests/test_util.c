// util: float conversions, the growable buffer, atomic file writes and
// whole-folder publishing (a replaced folder is swapped, never half there).
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/json.h"
#include "../core/util.h"
#include "check.h"

static void test_floats(void) {
    CHECK(util_bf16_to_f32(util_f32_to_bf16(1.0f)) == 1.0f);
    CHECK(util_f32_to_bf16(1.00390625f) == 0x3f80, "ties round to even");
    CHECK(util_f32_to_bf16(1.01171875f) == 0x3f82, "ties round to even (odd below)");
    float vals[] = {0.0f, -2.5f, 65504.0f, 6.103515625e-05f, 5.960464477539063e-08f, 0.33325195f};
    for (size_t i = 0; i < sizeof vals / sizeof *vals; i++)
        CHECK(util_f16_to_f32(util_f32_to_f16(vals[i])) == vals[i], "f16 round trip of %g", vals[i]);
    CHECK(util_f32_to_f16(1e6f) == 0x7c00, "overflow to inf");
}

static void test_buf(void) {
    util_buf b = {0};
    for (int i = 0; i < 1000; i++) util_buf_puts(&b, "ab");
    util_buf_put(&b, "xyz", 1);
    CHECK(!b.oom && b.len == 2001 && b.p[2000] == 'x' && b.p[2001] == '\0');
    free(b.p);
}

static int count_entries(const char *dir) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "test $(ls -A %s | wc -l) -eq 1", dir);
    return system(cmd) == 0;
}

static void test_dir_publish(void) {
    char root[] = "/tmp/tessera-util-XXXXXX";
    CHECK(mkdtemp(root) != NULL);
    err_t err = {{0}};
    char *dest = util_path_join(root, "adapter");
    for (int round = 0; round < 3; round++) {
        char *tmp = util_dir_tmp_beside(dest, &err);
        CHECK(tmp && strstr(tmp, "/.adapter.tmp."), "%s", err.msg);
        if (!tmp) break;
        char *f = util_path_join(tmp, "v"), text[16];
        snprintf(text, sizeof text, "%d", round);
        CHECK(util_write_file_atomic(f, text, strlen(text), &err) == 0);
        free(f);
        CHECK(util_dir_publish(tmp, dest, &err) == 0, "%s", err.msg);
        f = util_path_join(dest, "v");
        char *got = util_read_file(f, NULL, &err);
        CHECK(got && strcmp(got, text) == 0, "round %d", round);
        free(got);
        free(f);
        CHECK(count_entries(root), "round %d: only the published folder is left", round);
        free(tmp);
    }
    free(dest);
    util_rm_rf(root);
    CHECK(!util_is_dir(root));
}

static void test_json_fields(void) {
    err_t err = {{0}};
    cJSON *o = cJSON_Parse("{\"n\": 3, \"f\": 2.5, \"s\": \"x\", \"b\": true, \"z\": null}");
    json_ctx c = {"cfg.json", "rope.", &err};
    int64_t i = 0;
    double d = 0;
    int b = 0;
    const char *s = NULL;
    CHECK(json_opt_int(&c, o, "n", 0, 10, &i) == 1 && i == 3);
    CHECK(json_opt_int(&c, o, "z", 0, 10, &i) == 0 && json_opt_int(&c, o, "absent", 0, 10, &i) == 0);
    CHECK(json_opt_int(&c, o, "n", 5, 10, &i) == -1 && strstr(err.msg, "cfg.json: field rope.n: 3 is out of range"),
          "%s", err.msg);
    CHECK(json_opt_int(&c, o, "f", 0, 10, &i) == -1 && strstr(err.msg, "expected an integer"), "%s", err.msg);
    CHECK(json_opt_num(&c, o, "f", &d) == 1 && d == 2.5);
    CHECK(json_opt_bool(&c, o, "s", &b) == -1 && strstr(err.msg, "field rope.s: expected true or false, got string"),
          "%s", err.msg);
    CHECK(json_opt_str(&c, o, "s", &s) == 1 && strcmp(s, "x") == 0);
    CHECK(json_req_int(&c, o, "z", 0, 1, &i) == -1 && strstr(err.msg, "missing required field rope.z"), "%s",
          err.msg);
    json_ctx nofile = {NULL, "", &err};
    CHECK(json_opt_str(&nofile, o, "b", &s) == -1 && strncmp(err.msg, "field b:", 8) == 0, "%s", err.msg);
    cJSON_Delete(o);
}

// Python's repr(float) / json.dumps for a float.
static void test_py_float(void) {
    struct { double v; const char *want; } cases[] = {
        {0.1, "0.1"}, {1.0, "1.0"}, {-2.5, "-2.5"}, {0.0, "0.0"}, {-0.0, "-0.0"}, {1e-4, "0.0001"},
        {1e-5, "1e-05"}, {1234.5, "1234.5"}, {1e16, "1e+16"}, {1.5e20, "1.5e+20"},
        {123456789012345.0, "123456789012345.0"},
        {0.30000000000000004, "0.30000000000000004"}, {2e-4, "0.0002"}, {1e100, "1e+100"}, {-3.25e-7, "-3.25e-07"},
        {1.0 / 0.0, "Infinity"}, {-1.0 / 0.0, "-Infinity"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char buf[40];
        util_py_float(cases[i].v, buf, sizeof buf);
        CHECK(strcmp(buf, cases[i].want) == 0, "%.17g: got %s, want %s", cases[i].v, buf, cases[i].want);
    }
    char buf[40];
    util_py_float(nan(""), buf, sizeof buf);
    CHECK(strcmp(buf, "NaN") == 0, "%s", buf);
}

// splitmix64's published first outputs from state 0, which util_rng_seed
// (and so every generated model) depends on.
static void test_splitmix(void) {
    CHECK(util_splitmix64(0) == 0xe220a8397b1dcdafull);
    CHECK(util_splitmix64(0x9e3779b97f4a7c15ull) == 0x6e789e6aa1b965f4ull);
    util_rng r;
    util_rng_seed(&r, 0);
    CHECK(r.s[0] == 0xe220a8397b1dcdafull && r.s[1] == 0x6e789e6aa1b965f4ull && r.s[2] == 0x06c45d188009454full);
}

static void test_shape_str_and_clock(void) {
    char shape[16];
    util_shape_str(shape, sizeof shape, 2, (const int64_t[]){4096, 11008});
    CHECK(strcmp(shape, "[4096, 11008]") == 0, "%s", shape);
    util_shape_str(shape, 8, 2, (const int64_t[]){4096, 11008});
    CHECK(strcmp(shape, "[4096, ") == 0, "cut short, still a string: %s", shape);
    double t0 = util_now_s(), t1 = util_now_s();
    CHECK(t0 > 0 && t1 >= t0, "monotonic");
}

// util_read_file_real names the file the bytes came from: through a
// symlink, the target (what adapter confinement checks), not the link.
static void test_read_file_real(void) {
    char root[] = "/tmp/tessera-util-real.XXXXXX";
    CHECK(mkdtemp(root) != NULL);
    char *target = util_path_join(root, "target.txt"), *link = util_path_join(root, "link.txt");
    err_t err = {{0}};
    CHECK(util_write_file_atomic(target, "abc", 3, &err) == 0, "%s", err.msg);
    CHECK(symlink(target, link) == 0);
    char *real = NULL, *resolved = realpath(target, NULL);
    size_t n = 0;
    char *data = util_read_file_real(link, &n, &real, &err);
    CHECK(data && n == 3 && memcmp(data, "abc", 3) == 0, "%s", err.msg);
    CHECK(real && resolved && strcmp(real, resolved) == 0, "real path %s, want %s", real ? real : "(null)",
          resolved ? resolved : "(null)");
    free(data), free(real);
    real = (char *)"unset";
    CHECK(util_read_file_real("/nonexistent/x", &n, &real, &err) == NULL && real == NULL, "a missing file: no path");
    unlink(link), unlink(target), rmdir(root);
    free(target), free(link), free(resolved);
}

int main(void) {
    test_floats();
    test_py_float();
    test_splitmix();
    test_shape_str_and_clock();
    test_buf();
    test_dir_publish();
    test_read_file_real();
    test_json_fields();
    return check_finish("test_util");
}
