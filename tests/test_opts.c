// opts: the command-line parser: every type, ranges, both value forms, the
// errors (each names the flag and what was allowed) and the generated help.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../core/opts.h"
#include "check.h"

typedef struct cli {
    const char *name, *mode;
    int port, verbose, count;
    int64_t big;
    size_t bytes;
    uint64_t seed, small_seed;
    double ratio, frac;
    float temp;
    const char *list[3];
    int n_list;
} cli;

static const char *const modes[] = {"fast", "slow", "exact", NULL};

// A custom option: appends to cli.list, at most 3.
static int add_item(const opts_opt *opt, const char *v, void *field, err_t *err) {
    cli *c = field;
    if (c->n_list == 3) return err_set(err, "at most 3 of them");
    c->list[c->n_list++] = v;
    return 0;
}

// The table over c; t must hold 16 entries.
static void table(cli *c, opts_opt *t) {
    const opts_opt tab[16] = {
        {.name = "--name", .type = OPTS_STRING, .field = &c->name, .arg = "S", .help = "a name",
         .flags = OPTS_NONEMPTY},
        {.name = "--port", .type = OPTS_INT, .field = &c->port, .arg = "N", .help = "a port", .min = 0, .max = 65535},
        {.name = "--verbose", .type = OPTS_FLAG, .field = &c->verbose, .help = "talk more"},
        {.help = "numbers:"},
        {.name = "--count", .type = OPTS_INT, .field = &c->count, .arg = "N", .help = "a count",
         .def = "all of them"},
        {.name = "--big", .type = OPTS_INT64, .field = &c->big, .arg = "N", .help = "a big one", .min = -5,
         .max = 1e15},
        {.name = "--bytes", .type = OPTS_SIZE, .field = &c->bytes, .arg = "B", .help = "a size", .min = 1, .max = 1e9},
        {.name = "--seed", .type = OPTS_U64, .field = &c->seed, .arg = "N", .help = "any seed"},
        {.name = "--small-seed", .type = OPTS_U64, .field = &c->small_seed, .arg = "N", .help = "a small seed",
         .max = 100},
        {.name = "--ratio", .type = OPTS_DOUBLE, .field = &c->ratio, .arg = "R", .help = "a ratio", .min = 0, .max = 1,
         .flags = OPTS_MAX_OPEN},
        {.name = "--frac", .type = OPTS_DOUBLE, .field = &c->frac, .arg = "F", .help = "a fraction", .min = 0,
         .max = 1, .flags = OPTS_MIN_OPEN | OPTS_MAX_OPEN, .what = "a fraction in (0, 1)", .def = "none"},
        {.name = "--temp", .type = OPTS_FLOAT, .field = &c->temp, .arg = "T", .help = "any number"},
        {.name = "--mode", .type = OPTS_CHOICE, .field = &c->mode, .arg = "M", .help = "how", .choices = modes},
        {.name = "--item", .type = OPTS_CUSTOM, .field = c, .arg = "X", .help = "an item (repeatable)",
         .parse = add_item},
        {0},
    };
    memcpy(t, tab, sizeof tab);
}

static cli defaults(void) { return (cli){.port = 8000, .mode = "fast", .ratio = 0.25, .seed = 42}; }

// Parses the NULL-terminated args (after a program name) into *c.
static int parse(cli *c, err_t *err, const char *const *args) {
    char *argv[32] = {"prog"};
    int argc = 1;
    while (args[argc - 1]) argv[argc] = (char *)(uintptr_t)args[argc - 1], argc++;
    opts_opt t[16];
    table(c, t);
    return opts_parse(t, argc, argv, err);
}

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

static void test_types(void) {
    cli c = defaults();
    err_t err = {{0}};
    int rc = parse(&c, &err,
                   ARGS("--name", "x", "--port=0", "--verbose", "--count", "-7", "--big", "1000000000000", "--bytes",
                        "4096", "--seed", "18446744073709551615", "--ratio", "0", "--frac=0.5", "--temp", "-1.5",
                        "--mode", "exact", "--item", "a", "--item=b"));
    CHECK(rc == OPTS_OK, "%s", err.msg);
    CHECK(strcmp(c.name, "x") == 0 && c.port == 0 && c.verbose == 1 && c.count == -7);
    CHECK(c.big == 1000000000000LL && c.bytes == 4096 && c.seed == UINT64_MAX);
    CHECK(c.ratio == 0 && c.frac == 0.5 && c.temp == -1.5f && strcmp(c.mode, "exact") == 0);
    CHECK(c.n_list == 2 && strcmp(c.list[0], "a") == 0 && strcmp(c.list[1], "b") == 0);

    cli d = defaults();
    CHECK(parse(&d, &err, ARGS("--port", "9", "--port", "10")) == OPTS_OK && d.port == 10, "the last one wins");
    CHECK(d.ratio == 0.25 && d.seed == 42 && strcmp(d.mode, "fast") == 0 && !d.name, "untouched fields keep defaults");
    CHECK(parse(&d, &err, ARGS("--name", "--port")) == OPTS_OK && strcmp(d.name, "--port") == 0,
          "a value may look like a flag");
    CHECK(parse(&d, &err, ARGS("--name=a=b")) == OPTS_OK && strcmp(d.name, "a=b") == 0, "split at the first =");
}

// Expects the args to fail with a message containing want.
static void expect_error(const char *const *args, const char *want) {
    cli c = defaults();
    err_t err = {{0}};
    int rc = parse(&c, &err, args);
    CHECK(rc == -1 && strstr(err.msg, want), "want \"%s\", got rc %d \"%s\"", want, rc, err.msg);
}

static void test_errors(void) {
    expect_error(ARGS("--port", "70000"), "--port: expected an integer from 0 to 65535, got \"70000\"");
    expect_error(ARGS("--port", "-1"), "--port: expected an integer from 0 to 65535, got \"-1\"");
    expect_error(ARGS("--port", "8x"), "--port: expected an integer from 0 to 65535, got \"8x\"");
    expect_error(ARGS("--port", ""), "--port: expected an integer");
    expect_error(ARGS("--count", "99999999999"), "--count: expected an integer from -2147483648 to 2147483647");
    expect_error(ARGS("--big", "-6"), "--big: expected an integer from -5 to 1000000000000000");
    expect_error(ARGS("--bytes", "0"), "--bytes: expected an integer from 1 to 1000000000, got \"0\"");
    expect_error(ARGS("--seed", "-1"), "--seed: expected a non-negative integer, got \"-1\"");
    expect_error(ARGS("--seed", "+1"), "--seed: expected a non-negative integer");
    expect_error(ARGS("--seed", "99999999999999999999"), "--seed: expected a non-negative integer");
    expect_error(ARGS("--small-seed", "101"), "--small-seed: expected an integer from 0 to 100, got \"101\"");
    expect_error(ARGS("--ratio", "1"), "--ratio: expected a number in [0, 1), got \"1\"");
    expect_error(ARGS("--ratio", "-0.1"), "--ratio: expected a number in [0, 1)");
    expect_error(ARGS("--ratio", "nan"), "--ratio: expected a number in [0, 1)");
    expect_error(ARGS("--frac", "0"), "--frac: expected a fraction in (0, 1), got \"0\"");
    expect_error(ARGS("--temp", "inf"), "--temp: expected a number, got \"inf\"");
    expect_error(ARGS("--temp", "1e"), "--temp: expected a number");
    expect_error(ARGS("--mode", "quick"), "--mode: expected one of fast, slow, exact, got \"quick\"");
    expect_error(ARGS("--name", ""), "--name: empty value");
    expect_error(ARGS("--item", "a", "--item", "b", "--item", "c", "--item", "d"), "--item: at most 3 of them");
    expect_error(ARGS("--nope", "1"), "unknown option --nope");
    expect_error(ARGS("--nope=1"), "unknown option --nope");
    expect_error(ARGS("--port"), "--port: missing value");
    expect_error(ARGS("--verbose=1"), "--verbose: takes no value");
    expect_error(ARGS("stray"), "unexpected argument \"stray\"");
    expect_error(ARGS("-v"), "unexpected argument \"-v\"");
}

static void test_help_wins(void) {
    cli c = defaults();
    err_t err = {{0}};
    CHECK(parse(&c, &err, ARGS("--port", "9", "--help")) == OPTS_HELP && c.port == 8000, "nothing written");
    CHECK(parse(&c, &err, ARGS("--port", "bad", "-h")) == OPTS_HELP, "help before errors");
    CHECK(parse(&c, &err, ARGS("--name", "--help")) == OPTS_OK && strcmp(c.name, "--help") == 0, "a value is a value");
}

static void test_help_text(void) {
    cli c = defaults();
    opts_opt t[16];
    table(&c, t);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    opts_help(f, "usage: prog [options]\n", t, "bye\n");
    fclose(f);
    CHECK(strncmp(text, "usage: prog [options]\n", 22) == 0, "%s", text);
    CHECK(strstr(text, "\n  --port N") && strstr(text, "a port (default: 8000)\n"), "%s", text);
    CHECK(strstr(text, "  --verbose ") && strstr(text, "talk more\n"), "flags show no default: %s", text);
    CHECK(strstr(text, "a name\n"), "a NULL string shows no default: %s", text);
    CHECK(strstr(text, "a count (default: all of them)\n"), "def text wins: %s", text);
    CHECK(strstr(text, "a ratio (default: 0.25)\n") && strstr(text, "how (default: fast)\n"), "%s", text);
    CHECK(strstr(text, "any seed (default: 42)\n"), "%s", text);
    CHECK(strstr(text, "\nnumbers:\n"), "section title: %s", text);
    CHECK(len >= 4 && strcmp(text + len - 4, "bye\n") == 0, "epilogue last: %s", text);
    // The texts line up in one column.
    const char *port = strstr(text, "  --port N"), *mode = strstr(text, "  --mode M");
    CHECK(port && mode && strchr(port, 'a') - port == strchr(mode, 'h') - mode, "%s", text);
    free(text);
}

int main(void) {
    test_types();
    test_errors();
    test_help_wins();
    test_help_text();
    return check_finish("test_opts");
}
