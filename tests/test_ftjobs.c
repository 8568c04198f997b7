// test_ftjobs: the pure pieces of the files and fine-tuning endpoints:
// query strings and pagination parameters (files.c), "auto"
// hyperparameters and the reserved "ft:" namespace (ftjobs.c), ids. The
// endpoints themselves run against a real server in tests/test_finetune.sh.
#include "../serve/files.h"
#include "../serve/ftjobs.h"

#include <string.h>

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

int main(void) {
    test_query();
    test_page();
    test_auto();
    test_names_and_ids();
    return check_finish("test_ftjobs");
}
