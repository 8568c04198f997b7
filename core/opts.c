// opts: the command-line parser (see opts.h).
#include "opts.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int is_help(const char *a) { return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0; }

static int takes_value(const opts_opt *o) { return o->type != OPTS_FLAG; }

static int is_end(const opts_opt *o) { return !o->name && !o->help; }

// The option named by a[0..n), or NULL.
static const opts_opt *find(const opts_opt *table, const char *a, size_t n) {
    for (const opts_opt *o = table; !is_end(o); o++)
        if (o->name && strlen(o->name) == n && strncmp(o->name, a, n) == 0) return o;
    return NULL;
}

// The integer range of an integer option: its own, or its type's.
static void int_range(const opts_opt *o, long long *lo, long long *hi) {
    if (o->min != 0 || o->max != 0) {
        *lo = (long long)o->min;
        *hi = (long long)o->max;
    } else if (o->type == OPTS_INT) {
        *lo = INT_MIN;
        *hi = INT_MAX;
    } else {
        *lo = o->type == OPTS_SIZE ? 0 : LLONG_MIN;
        *hi = LLONG_MAX;
    }
}

static int parse_int(const opts_opt *o, const char *v, err_t *err) {
    long long lo, hi;
    int_range(o, &lo, &hi);
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (errno || end == v || *end || n < lo || n > hi) {
        if (o->what) return err_set(err, "%s: expected %s, got \"%s\"", o->name, o->what, v);
        return err_set(err, "%s: expected an integer from %lld to %lld, got \"%s\"", o->name, lo, hi, v);
    }
    if (o->type == OPTS_INT) *(int *)o->field = (int)n;
    else if (o->type == OPTS_INT64) *(int64_t *)o->field = (int64_t)n;
    else *(size_t *)o->field = (size_t)n;
    return 0;
}

static int parse_u64(const opts_opt *o, const char *v, err_t *err) {
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    // strtoull would take "-1" as 2^64-1 and "+1" as 1: neither is a plain count.
    if (errno || end == v || *end || v[0] == '-' || v[0] == '+' || (o->max != 0 && n > (unsigned long long)o->max)) {
        if (o->max == 0) return err_set(err, "%s: expected a non-negative integer, got \"%s\"", o->name, v);
        return err_set(err, "%s: expected an integer from %.0f to %.0f, got \"%s\"", o->name, o->min, o->max, v);
    }
    *(uint64_t *)o->field = (uint64_t)n;
    return 0;
}

// "a number from 0 to 10", "a number in [0, 1)", or "a number".
static void real_what(const opts_opt *o, char *buf, size_t size) {
    int lo_open = (o->flags & OPTS_MIN_OPEN) != 0, hi_open = (o->flags & OPTS_MAX_OPEN) != 0;
    if (o->what) snprintf(buf, size, "%s", o->what);
    else if (o->min == 0 && o->max == 0) snprintf(buf, size, "a number");
    else if (!lo_open && !hi_open) snprintf(buf, size, "a number from %g to %g", o->min, o->max);
    else snprintf(buf, size, "a number in %c%g, %g%c", lo_open ? '(' : '[', o->min, o->max, hi_open ? ')' : ']');
}

static int parse_real(const opts_opt *o, const char *v, err_t *err) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    int ranged = o->min != 0 || o->max != 0;
    int bad = errno || end == v || *end || !isfinite(x);
    if (!bad && ranged)
        bad = x < o->min || x > o->max || ((o->flags & OPTS_MIN_OPEN) && x == o->min) ||
              ((o->flags & OPTS_MAX_OPEN) && x == o->max);
    if (bad) {
        char what[128];
        real_what(o, what, sizeof what);
        return err_set(err, "%s: expected %s, got \"%s\"", o->name, what, v);
    }
    if (o->type == OPTS_FLOAT) *(float *)o->field = (float)x;
    else *(double *)o->field = x;
    return 0;
}

static int parse_choice(const opts_opt *o, const char *v, err_t *err) {
    for (int i = 0; o->choices[i]; i++) {
        if (strcmp(v, o->choices[i]) == 0) {
            *(const char **)o->field = o->choices[i];
            return 0;
        }
    }
    char list[256] = "";
    for (int i = 0; o->choices[i]; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", o->choices[i]);
    return err_set(err, "%s: expected one of %s, got \"%s\"", o->name, list, v);
}

// Stores value v of option o into its field.
static int store(const opts_opt *o, const char *v, err_t *err) {
    switch (o->type) {
    case OPTS_FLAG: *(int *)o->field = 1; return 0;
    case OPTS_STRING:
        if ((o->flags & OPTS_NONEMPTY) && !*v) return err_set(err, "%s: empty value", o->name);
        *(const char **)o->field = v;
        return 0;
    case OPTS_INT:
    case OPTS_INT64:
    case OPTS_SIZE: return parse_int(o, v, err);
    case OPTS_U64: return parse_u64(o, v, err);
    case OPTS_DOUBLE:
    case OPTS_FLOAT: return parse_real(o, v, err);
    case OPTS_CHOICE: return parse_choice(o, v, err);
    case OPTS_CUSTOM: return o->parse(o, v, o->field, err) == 0 ? 0 : err_wrap(err, "%s", o->name);
    }
    return err_set(err, "%s: unknown option type %d", o->name, (int)o->type);
}

// Whether --help / -h is among the options: a scan that steps over values
// (so `--prompt -h` is a prompt) and writes nothing.
static int wants_help(const opts_opt *table, int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (is_help(a)) return 1;
        const opts_opt *o = strncmp(a, "--", 2) == 0 && !strchr(a, '=') ? find(table, a, strlen(a)) : NULL;
        if (o && takes_value(o)) i++;
    }
    return 0;
}

// Parses the option at argv[*i] (moving *i past its value).
static int parse_one(const opts_opt *table, int argc, char **argv, int *i, err_t *err) {
    const char *a = argv[*i];
    if (strncmp(a, "--", 2) != 0) return err_set(err, "unexpected argument \"%s\"", a);
    const char *eq = strchr(a, '=');
    size_t n = eq ? (size_t)(eq - a) : strlen(a);
    const opts_opt *o = find(table, a, n);
    if (!o) return err_set(err, "unknown option %.*s", (int)n, a);
    if (!takes_value(o)) return eq ? err_set(err, "%s: takes no value", o->name) : store(o, NULL, err);
    if (eq) return store(o, eq + 1, err);
    if (*i + 1 >= argc) return err_set(err, "%s: missing value", o->name);
    return store(o, argv[++*i], err);
}

int opts_parse(const opts_opt *table, int argc, char **argv, err_t *err) {
    if (wants_help(table, argc, argv)) return OPTS_HELP;
    for (int i = 1; i < argc; i++)
        if (parse_one(table, argc, argv, &i, err) != 0) return -1;
    return OPTS_OK;
}

// The default --help shows for o ("" for none).
static void default_text(const opts_opt *o, char *buf, size_t size) {
    buf[0] = '\0';
    if (o->flags & OPTS_NODEF) return;
    if (o->def) {
        snprintf(buf, size, "%s", o->def);
        return;
    }
    switch (o->type) {
    case OPTS_INT: snprintf(buf, size, "%d", *(const int *)o->field); break;
    case OPTS_INT64: snprintf(buf, size, "%lld", (long long)*(const int64_t *)o->field); break;
    case OPTS_SIZE: snprintf(buf, size, "%zu", *(const size_t *)o->field); break;
    case OPTS_U64: snprintf(buf, size, "%llu", (unsigned long long)*(const uint64_t *)o->field); break;
    case OPTS_DOUBLE: snprintf(buf, size, "%g", *(const double *)o->field); break;
    case OPTS_FLOAT: snprintf(buf, size, "%g", (double)*(const float *)o->field); break;
    case OPTS_STRING:
    case OPTS_CHOICE: {
        const char *s = *(const char *const *)o->field;
        if (s) snprintf(buf, size, "%s", s);
        break;
    }
    case OPTS_FLAG:
    case OPTS_CUSTOM: break;
    }
}

// The column the help texts start at: past the longest "--flag ARG" that
// is not unreasonably long (longer ones push their own line's text right).
static int help_column(const opts_opt *table) {
    int w = 0;
    for (const opts_opt *o = table; !is_end(o); o++) {
        if (!o->name) continue;
        int n = (int)strlen(o->name) + (o->arg ? 1 + (int)strlen(o->arg) : 0);
        if (n > w && n <= 26) w = n;
    }
    return 2 + w + 2;
}

static void help_line(FILE *f, const opts_opt *o, int col) {
    int n = fprintf(f, "  %s%s%s", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
    fprintf(f, "%*s", n < col - 1 ? col - n : 1, "");
    for (const char *h = o->help ? o->help : ""; *h; h++) {
        fputc(*h, f);
        if (*h == '\n') fprintf(f, "%*s", col, "");
    }
    char def[128];
    default_text(o, def, sizeof def);
    if (*def) fprintf(f, " (default: %s)", def);
    fputc('\n', f);
}

void opts_help(FILE *f, const char *usage, const opts_opt *table, const char *epilogue) {
    fputs(usage, f);
    int col = help_column(table);
    for (const opts_opt *o = table; !is_end(o); o++) {
        if (o->name) help_line(f, o, col);
        else fprintf(f, "\n%s\n", o->help);
    }
    if (epilogue) fputs(epilogue, f);
}
