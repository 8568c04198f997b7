// test_ftjobs: the pure pieces of the files and fine-tuning endpoints:
// query strings and pagination parameters (files.c), "auto"
// hyperparameters (ftjob_life.c) and the reserved "ft:" namespace
// (ftjobs.c), ids, the creation-ordered store and its pages (store.c), and
// the job state writes off the loop thread (statefile.c). The endpoints
// themselves run against a real server in tests/test_finetune.sh.
#include "../serve/files.h"
#include "../serve/ftjobs.h"
#include "../serve/statefile.h"
#include "../serve/store.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util.h"

#include "check.h"

static void test_query(void) {
    char v[32];
    CHECK(files_query_get("limit=5&after=ftjob-1", "limit", v, sizeof v) == 1 && strcmp(v, "5") == 0);
    CHECK(files_query_get("limit=5&after=ftjob-1", "after", v, sizeof v) == 1 && strcmp(v, "ftjob-1") == 0);
    CHECK(files_query_get("xlimit=5", "limit", v, sizeof v) == 0 && v[0] == '\0', "a longer key is another key");
    CHECK(files_query_get("", "limit", v, sizeof v) == 0);
    CHECK(files_query_get("purpose=fine%2Dtune&x=a+b", "purpose", v, sizeof v) == 1 && strcmp(v, "fine-tune") == 0);
    CHECK(files_query_get("x=a+b", "x", v, sizeof v) == 1 && strcmp(v, "a b") == 0);
    CHECK(files_query_get("x=%4", "x", v, sizeof v) == 1 && strcmp(v, "%4") == 0, "a cut escape stays as is");
    CHECK(files_query_get("x=%zz", "x", v, sizeof v) == 1 && strcmp(v, "%zz") == 0);
    CHECK(files_query_get("x=0123456789012345678901234567890123456789", "x", v, sizeof v) == -1, "too long");
    CHECK(files_query_get("x=", "x", v, sizeof v) == 1 && v[0] == '\0');
}

static void test_page(void) {
    api_error e;
    int limit = 0;
    char after[64];
    CHECK(files_query_page("", 20, 100, &limit, after, sizeof after, &e) == 0 && limit == 20 && after[0] == '\0');
    CHECK(files_query_page("limit=100&after=ftjob-x", 20, 100, &limit, after, sizeof after, &e) == 0 &&
          limit == 100 && strcmp(after, "ftjob-x") == 0);
    const char *bad[] = {"limit=0", "limit=101", "limit=-1", "limit=5x", "limit=", "limit=1e2"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&e, 0, sizeof e);
        CHECK(files_query_page(bad[i], 20, 100, &limit, after, sizeof after, &e) == -1 && e.status == 400 &&
              strcmp(e.param, "limit") == 0, "%s", bad[i]);
    }
}

static void test_auto(void) {
    int ep = -1, bs = -1;
    double lr = -1;
    ftjob_resolve_auto(8, &ep, &bs, &lr);
    CHECK(ep == 25 && bs == 1 && lr == 1, "8 examples: %d %d %g", ep, bs, lr); // 300/8 = 38, capped at 25
    ep = bs = -1, lr = -1;
    ftjob_resolve_auto(50, &ep, &bs, &lr);
    CHECK(ep == 6 && bs == 1, "50 examples: %d %d", ep, bs);
    ep = bs = -1, lr = -1;
    ftjob_resolve_auto(5000, &ep, &bs, &lr);
    CHECK(ep == 3 && bs == 8, "5000 examples: %d %d", ep, bs);
    ep = 7, bs = 3, lr = 2.5;
    ftjob_resolve_auto(5000, &ep, &bs, &lr);
    CHECK(ep == 7 && bs == 3 && lr == 2.5, "given values are kept");
    ep = bs = -1, lr = -1;
    ftjob_resolve_auto(0, &ep, &bs, &lr);
    CHECK(ep >= 1 && bs >= 1 && lr > 0, "no examples still gives usable numbers");
}

static void test_names_and_ids(void) {
    CHECK(ftjob_is_ft_name("ft:tiny:acme::ftjob-1"));
    CHECK(!ftjob_is_ft_name("ft-bot") && !ftjob_is_ft_name("f") && !ftjob_is_ft_name("") && !ftjob_is_ft_name("FT:x"));
    char a[40], b[40];
    files_new_id("file-", a, sizeof a);
    files_new_id("file-", b, sizeof b);
    CHECK(strlen(a) == 29 && strncmp(a, "file-", 5) == 0 && strspn(a + 5, "0123456789abcdef") == 24, "%s", a);
    CHECK(strcmp(a, b) != 0, "two ids differ");
    CHECK(files_now_us() > (int64_t)1700000000 * 1000000);
}

// ---- store ----------------------------------------------------------------

typedef struct rec {
    char id[8];
    char owner;
} rec;

typedef struct page {
    char owner;
    char got[32];
} page;

static int keep_owner(const void *r, void *arg) { return ((const rec *)r)->owner == ((page *)arg)->owner; }

static void emit_id(void *r, void *arg) {
    page *p = arg;
    strcat(p->got, ((rec *)r)->id);
}

// One page of owner's records as their ids run together ("edb").
static int page_of(const store *s, char owner, int newest_first, const char *after, int limit, page *p) {
    memset(p, 0, sizeof *p);
    p->owner = owner;
    return store_page(s, newest_first, after, limit, keep_owner, emit_id, p);
}

static void test_store_order(void) {
    // created_us ties are ordered by id; inserted out of order on purpose.
    static rec r[] = {{"c", 'x'}, {"a", 'x'}, {"e", 'x'}, {"b", 'y'}, {"d", 'x'}};
    const int64_t us[] = {20, 10, 30, 20, 30};
    store s = {0};
    for (int i = 0; i < 5; i++) CHECK(store_insert(&s, &r[i], r[i].id, us[i]) == 0);
    char order[8] = "";
    for (int i = 0; i < s.n; i++) strcat(order, ((rec *)store_at(&s, i))->id);
    CHECK(strcmp(order, "abcde") == 0, "creation order, then id: %s", order);
    CHECK(store_index(&s, "d") == 3 && store_index(&s, "z") == -1);
    CHECK(store_remove(&s, store_index(&s, "b")) == &r[3] && s.n == 4 && store_index(&s, "c") == 1);
    store_free(&s);
    CHECK(s.n == 0 && s.items == NULL);
}

static void test_store_page(void) {
    static rec r[] = {{"a", 'x'}, {"b", 'y'}, {"c", 'x'}, {"d", 'x'}, {"e", 'x'}};
    store s = {0};
    for (int i = 0; i < 5; i++) store_insert(&s, &r[i], r[i].id, i);
    page p;
    CHECK(page_of(&s, 'x', 1, "", 2, &p) == 1 && strcmp(p.got, "ed") == 0, "newest first: %s", p.got);
    CHECK(page_of(&s, 'x', 1, "d", 2, &p) == 0 && strcmp(p.got, "ca") == 0, "after d: %s", p.got);
    CHECK(page_of(&s, 'x', 1, "c", 1, &p) == 0 && strcmp(p.got, "a") == 0, "the last page: %s", p.got);
    CHECK(page_of(&s, 'x', 0, "", 10, &p) == 0 && strcmp(p.got, "acde") == 0, "oldest first: %s", p.got);
    CHECK(page_of(&s, 'x', 1, "b", 10, &p) == 0 && p.got[0] == '\0', "another owner's id: an empty page");
    CHECK(page_of(&s, 'x', 1, "zz", 10, &p) == 0 && p.got[0] == '\0', "an unknown id: an empty page");
    CHECK(page_of(&s, 'y', 1, "", 1, &p) == 0 && strcmp(p.got, "b") == 0);
    store_free(&s);
}

// ---- statefile --------------------------------------------------------------

static int file_is(const char *path, const char *want) {
    err_t e = {{0}};
    char *got = util_read_file(path, NULL, &e);
    int ok = got && strcmp(got, want) == 0;
    free(got);
    return ok;
}

// Entries in dir other than . and .. and keep (temp files left behind).
static int others_in(const char *dir, const char *keep) {
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *de; d && (de = readdir(d)) != NULL;)
        n += de->d_name[0] != '.' && strcmp(de->d_name, keep) != 0;
    if (d) closedir(d);
    return n;
}

// While a write is in flight later texts wait, each replacing the last:
// one more write follows, of the newest text.
static void test_statefile_coalesce(uv_loop_t *loop, const char *dir) {
    char *path = util_path_join(dir, "job.json");
    statefile *f = statefile_new(loop, path, "test", "job=coalesce");
    statefile_put(f, strdup("{\"v\":1}"));
    statefile_put(f, strdup("{\"v\":2}"));
    statefile_put(f, strdup("{\"v\":3}"));
    CHECK(statefile_writes(f) == 0, "nothing is written on the calling thread");
    uv_run(loop, UV_RUN_DEFAULT);
    CHECK(statefile_writes(f) == 2 && statefile_failures(f) == 0, "writes=%ld", statefile_writes(f));
    CHECK(file_is(path, "{\"v\":3}"), "the newest text wins");
    CHECK(others_in(dir, "job.json") == 0, "no temp file is left");
    // Freed with a write in flight and one waiting: both still land.
    statefile_put(f, strdup("{\"v\":4}"));
    statefile_put(f, strdup("{\"v\":5}"));
    statefile_free(f);
    uv_run(loop, UV_RUN_DEFAULT);
    CHECK(file_is(path, "{\"v\":5}"), "the writes of a freed statefile land");
    free(path);
}

// A failed write is counted (and logged); the next text writes again.
static void test_statefile_retry(uv_loop_t *loop, const char *dir) {
    char *sub = util_path_join(dir, "later");
    char *path = util_path_join(sub, "job.json");
    statefile *f = statefile_new(loop, path, "test", "job=retry");
    statefile_put(f, strdup("{\"v\":1}"));
    uv_run(loop, UV_RUN_DEFAULT);
    CHECK(statefile_writes(f) == 1 && statefile_failures(f) == 1, "a write into a missing folder fails");
    CHECK(mkdir(sub, 0755) == 0);
    statefile_put(f, strdup("{\"v\":2}"));
    uv_run(loop, UV_RUN_DEFAULT);
    CHECK(statefile_writes(f) == 2 && statefile_failures(f) == 1 && file_is(path, "{\"v\":2}"));
    CHECK(statefile_put_sync(f, strdup("{\"v\":3}")) == 0 && file_is(path, "{\"v\":3}"), "a synchronous write");
    statefile_free(f);
    free(path);
    free(sub);
}

static void test_statefile(void) {
    char dir[] = "/tmp/test_ftjobs.XXXXXX";
    uv_loop_t loop;
    CHECK(mkdtemp(dir) != NULL && uv_loop_init(&loop) == 0);
    test_statefile_coalesce(&loop, dir);
    test_statefile_retry(&loop, dir);
    CHECK(uv_loop_close(&loop) == 0, "no write is left in flight");
    util_rm_rf(dir);
}

int main(void) {
    test_query();
    test_page();
    test_auto();
    test_names_and_ids();
    test_store_order();
    test_store_page();
    test_statefile();
    return check_finish("test_ftjobs");
}
