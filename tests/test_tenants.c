// test_tenants: the --tenants file: parsing and its errors, Bearer auth,
// glob visibility, open mode, key masking, reload by swapping tables.
#include "../serve/tenants.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/util.h"
#include "check.h"

static const char *good =
    "{\"keys\": {"
    "  \"sk-acme-1\": {\"tenant\": \"acme\", \"adapters\": [\"acme-*\", \"shared-bot\"]},"
    "  \"sk-acme-ci\": {\"tenant\": \"acme\", \"adapters\": [\"acme-?\"], \"base\": false},"
    "  \"sk-globex\": {\"tenant\": \"globex\", \"adapters\": [\"globex-[ab]*\"]},"
    "  \"sk-ops\": {\"tenant\": \"ops\", \"admin\": true, \"base\": false},"
    "  \"sk-none\": {\"tenant\": \"nobody\"}"
    "}}";

static tn_table *parse(const char *json, err_t *err) { return tn_parse(json, strlen(json), "t.json", err); }

static const tn_tenant *auth_ok(const tn_table *t, const char *header) {
    const tn_tenant *tn = NULL;
    tn_auth_result r = tn_auth(t, header, &tn);
    CHECK(r == TN_AUTH_OK && tn, "auth failed for %s", header ? header : "(null)");
    return tn;
}

static void test_parse_and_auth(void) {
    err_t err = {{0}};
    tn_table *t = parse(good, &err);
    CHECK(t != NULL, "%s", err.msg);
    if (!t) return;
    CHECK(tn_count(t) == 5);
    const tn_tenant *acme = auth_ok(t, "Bearer sk-acme-1");
    CHECK(acme && strcmp(acme->name, "acme") == 0 && acme->base && !acme->admin && acme->n_globs == 2);
    // The scheme is case-insensitive; extra spaces are tolerated.
    CHECK(auth_ok(t, "bearer sk-acme-1") == acme);
    CHECK(auth_ok(t, "BEARER    sk-acme-1  ") == acme);
    const tn_tenant *tn = NULL;
    CHECK(tn_auth(t, NULL, &tn) == TN_AUTH_MISSING && tn == NULL);
    CHECK(tn_auth(t, "", &tn) == TN_AUTH_MISSING);
    CHECK(tn_auth(t, "Bearer", &tn) == TN_AUTH_MISSING);
    CHECK(tn_auth(t, "Bearer ", &tn) == TN_AUTH_MISSING);
    CHECK(tn_auth(t, "Basic c2stYWNtZS0xOg==", &tn) == TN_AUTH_MISSING);
    CHECK(tn_auth(t, "sk-acme-1", &tn) == TN_AUTH_MISSING, "the key alone is not Bearer auth");
    CHECK(tn_auth(t, "Bearer sk-acme-2", &tn) == TN_AUTH_INVALID && tn == NULL);
    CHECK(tn_auth(t, "Bearer sk-acme-1x", &tn) == TN_AUTH_INVALID, "a longer key is another key");
    CHECK(tn_auth(t, "Bearer sk-acme-", &tn) == TN_AUTH_INVALID, "a prefix is another key");
    CHECK(tn_auth(t, "Bearer SK-ACME-1", &tn) == TN_AUTH_INVALID, "keys are case-sensitive");
    tn_free(t);
}

static void test_visibility(void) {
    err_t err = {{0}};
    tn_table *t = parse(good, &err);
    CHECK(t != NULL, "%s", err.msg);
    if (!t) return;
    const tn_tenant *acme = auth_ok(t, "Bearer sk-acme-1");
    CHECK(tn_allows(acme, "acme-bot") && tn_allows(acme, "acme-") && tn_allows(acme, "shared-bot"));
    CHECK(!tn_allows(acme, "globex-a") && !tn_allows(acme, "shared-bot2") && !tn_allows(acme, "xacme-bot"));
    CHECK(tn_allows_base(acme));
    const tn_tenant *ci = auth_ok(t, "Bearer sk-acme-ci");
    CHECK(tn_allows(ci, "acme-1") && !tn_allows(ci, "acme-12") && !tn_allows_base(ci));
    const tn_tenant *globex = auth_ok(t, "Bearer sk-globex");
    CHECK(tn_allows(globex, "globex-alpha") && tn_allows(globex, "globex-b") && !tn_allows(globex, "globex-c"));
    CHECK(!tn_allows(globex, "acme-bot"));
    const tn_tenant *ops = auth_ok(t, "Bearer sk-ops");
    CHECK(ops->admin && tn_allows(ops, "acme-bot") && tn_allows(ops, "anything") && tn_allows_base(ops),
          "admin sees everything, base included, whatever base says");
    const tn_tenant *none = auth_ok(t, "Bearer sk-none");
    CHECK(!tn_allows(none, "acme-bot") && tn_allows_base(none), "no adapters by default; base by default");
    tn_free(t);
}

static void test_open_mode(void) {
    const tn_tenant *tn = NULL;
    CHECK(tn_auth(NULL, NULL, &tn) == TN_AUTH_OK && tn);
    CHECK(tn_auth(NULL, "Bearer whatever", &tn) == TN_AUTH_OK && tn);
    CHECK(tn && tn_allows(tn, "acme-bot") && tn_allows_base(tn));
    CHECK(tn_count(NULL) == 0);
}

static void bad(const char *json, const char *part) {
    err_t err = {{0}};
    tn_table *t = parse(json, &err);
    CHECK(t == NULL, "accepted: %s", json);
    tn_free(t);
    CHECK(strstr(err.msg, part) != NULL, "error '%s' lacks '%s'", err.msg, part);
    CHECK(strncmp(err.msg, "t.json: ", 8) == 0, "error names the file: %s", err.msg);
}

static void test_errors(void) {
    bad("{", "not valid JSON");
    bad("[]", "expected an object");
    bad("{}", "\"keys\" must be an object");
    bad("{\"keys\": []}", "\"keys\" must be an object");
    bad("{\"keys\": {}, \"extra\": 1}", "unknown top-level field \"extra\"");
    bad("{\"keys\": {\"sk-a\": 5}}", "keys entry 1: expected an object");
    bad("{\"keys\": {\"sk-a\": {}}}", "keys entry 1: missing \"tenant\"");
    bad("{\"keys\": {\"sk-a\": {\"tenant\": \"\"}}}", "keys entry 1.tenant: expected a non-empty string");
    bad("{\"keys\": {\"sk-a\": {\"tenant\": \"a\"}, \"sk-b\": {\"tenant\": \"b\", \"adapters\": \"b-*\"}}}",
        "keys entry 2.adapters: expected a list");
    bad("{\"keys\": {\"sk-a\": {\"tenant\": \"a\", \"adapters\": [\"x\", 3]}}}", "keys entry 1.adapters[1]");
    bad("{\"keys\": {\"sk-a\": {\"tenant\": \"a\", \"admin\": \"yes\"}}}", "keys entry 1.admin: expected true or false");
    bad("{\"keys\": {\"sk-a\": {\"tenant\": \"a\", \"base\": 1}}}", "keys entry 1.base");
    bad("{\"keys\": {\"sk-a\": {\"tenant\": \"a\", \"adapter\": [\"x\"]}}}", "unknown field \"adapter\"");
    bad("{\"keys\": {\"\": {\"tenant\": \"a\"}}}", "empty or holds whitespace");
    bad("{\"keys\": {\"sk a\": {\"tenant\": \"a\"}}}", "empty or holds whitespace");
    bad("{\"keys\": {\"sk-a\": {\"tenant\": \"a\"}, \"sk-a\": {\"tenant\": \"b\"}}}", "listed twice");
    // Found by tests/fuzz/fuzz_tenants: a field given twice leaked the first.
    bad("{\"keys\": {\"sk-a\": {\"tenant\": \"a\", \"tenant\": \"b\"}}}", "keys entry 1.tenant: given twice");
    bad("{\"keys\": {\"sk-a\": {\"tenant\": \"a\", \"adapters\": [\"x\"], \"adapters\": [\"y\"]}}}",
        "keys entry 1.adapters: given twice");
    // The secret never appears in an error message.
    err_t err = {{0}};
    tn_table *t = parse("{\"keys\": {\"sk-secret-123\": {\"tenant\": 5}}}", &err);
    CHECK(!t && strstr(err.msg, "sk-secret") == NULL, "%s", err.msg);
    tn_free(t);
}

static void test_mask(void) {
    char out[64];
    tn_mask_key("Bearer sk-abcdefghijklmnop", out, sizeof out);
    CHECK(strcmp(out, "sk-ab***mnop") == 0, "%s", out);
    tn_mask_key("Bearer short", out, sizeof out);
    CHECK(strcmp(out, "***") == 0, "%s", out);
    tn_mask_key(NULL, out, sizeof out);
    CHECK(strcmp(out, "***") == 0, "%s", out);
}

// A reload reads the file again into a new table; a bad file keeps the old
// one in force (the caller swaps only on success).
static void test_reload(void) {
    char path[] = "/tmp/tessera-tenants-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0) return;
    close(fd);
    err_t err = {{0}};
    CHECK(util_write_file_atomic(path, good, strlen(good), &err) == 0, "%s", err.msg);
    tn_table *cur = tn_load(path, &err);
    CHECK(cur != NULL, "%s", err.msg);
    const char *next = "{\"keys\": {\"sk-new\": {\"tenant\": \"acme\", \"adapters\": [\"*\"]}}}";
    CHECK(util_write_file_atomic(path, next, strlen(next), &err) == 0, "%s", err.msg);
    tn_table *t = tn_load(path, &err);
    CHECK(t != NULL, "%s", err.msg);
    if (t) {
        tn_free(cur);
        cur = t;
    }
    const tn_tenant *tn = NULL;
    CHECK(tn_auth(cur, "Bearer sk-acme-1", &tn) == TN_AUTH_INVALID, "the old key is gone");
    CHECK(tn_auth(cur, "Bearer sk-new", &tn) == TN_AUTH_OK && tn_allows(tn, "globex-a"));
    CHECK(util_write_file_atomic(path, "{\"keys\": 1}", 11, &err) == 0, "%s", err.msg);
    t = tn_load(path, &err);
    CHECK(t == NULL && strstr(err.msg, path) != NULL, "a bad file fails naming it: %s", err.msg);
    CHECK(tn_auth(cur, "Bearer sk-new", &tn) == TN_AUTH_OK, "the old table stays in force");
    unlink(path);
    t = tn_load(path, &err);
    CHECK(t == NULL, "a missing file fails");
    tn_free(cur);
}

int main(void) {
    test_parse_and_auth();
    test_visibility();
    test_open_mode();
    test_errors();
    test_mask();
    test_reload();
    return check_finish("test_tenants");
}
