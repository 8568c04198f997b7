// opts: one table-driven command-line parser for serve, serve --generate
// and train.
//
// A program declares its options as an array of opts_opt ending in an entry
// whose name and help are both NULL: the flag, its type, the allowed range,
// the field it writes (a pointer into the caller's structs) and one line of
// help. Entries with no name and a help text are section titles in --help.
//
// Accepted forms: `--flag value` and `--flag=value` for options that take a
// value (the value is the next argument whatever it looks like, so
// `--prompt --x` gives the prompt "--x"); `--flag` for flags. `--help` and
// `-h` anywhere among the options win over everything else.
//
// The defaults are whatever the caller stored in the fields before parsing:
// opts_help prints them from the fields (or the entry's `def` text), so it
// must run before opts_parse writes anything, which is why opts_parse
// returns OPTS_HELP before it writes a field.
//
// Errors name the flag, the value and what was allowed, e.g.
//   --port: expected an integer from 0 to 65535, got "70000"
// The module never prints on its own (except opts_help) and never exits.
#ifndef TESSERA_OPTS_H
#define TESSERA_OPTS_H

#include <stdio.h>

#include "err.h"

typedef enum opts_type {
    OPTS_FLAG,   // no value: sets an int to 1
    OPTS_STRING, // const char *, borrowed from argv
    OPTS_INT,    // int in [min, max]
    OPTS_INT64,  // int64_t in [min, max]
    OPTS_SIZE,   // size_t in [min, max] (a plain count of bytes: no units)
    OPTS_U64,    // uint64_t: a non-negative integer, at most max when max is not 0
    OPTS_DOUBLE, // double, finite, in min..max (ends per OPTS_MIN_OPEN / OPTS_MAX_OPEN)
    OPTS_FLOAT,  // float, like OPTS_DOUBLE
    OPTS_CHOICE, // const char *: the matching entry of `choices` (static strings)
    OPTS_CUSTOM, // `parse` decides; it gets the value and the field
} opts_type;

// Bits of opts_opt.flags.
enum {
    OPTS_MIN_OPEN = 1 << 0, // OPTS_DOUBLE/FLOAT: min itself is not allowed
    OPTS_MAX_OPEN = 1 << 1, // OPTS_DOUBLE/FLOAT: max itself is not allowed
    OPTS_NONEMPTY = 1 << 2, // OPTS_STRING: "" is an error
    OPTS_NODEF = 1 << 3,    // --help shows no default for this option
};

typedef struct opts_opt opts_opt;

// An OPTS_CUSTOM parser: stores v into field, or returns -1 + err (the
// message is prefixed with the flag by opts_parse).
typedef int (*opts_parse_fn)(const opts_opt *opt, const char *v, void *field, err_t *err);

struct opts_opt {
    const char *name;   // "--port"; NULL with a help text: a section title
    opts_type type;
    void *field;        // what it writes (borrowed; its type follows `type`)
    const char *arg;    // the value's name in --help: "N", "DIR" (NULL: flags)
    const char *help;   // one line; '\n' continues it on an indented line
    double min, max;    // the range for numbers; both 0: the type's whole range
    unsigned flags;     // OPTS_* bits above
    const char *def;    // the default as --help shows it; NULL: from the field
    const char *what;   // numbers: replaces "an integer from A to B" in errors
    const char *const *choices; // OPTS_CHOICE: NULL-terminated
    opts_parse_fn parse;        // OPTS_CUSTOM
};

enum { OPTS_OK = 0, OPTS_HELP = 1 };

// Parses argv[1..argc) (argv[0] is the program's name) into the fields of
// `table`. Returns OPTS_OK, OPTS_HELP when --help or -h is among the
// options (nothing written then), or -1 + err naming the flag: an unknown
// option, an argument not starting with "--", a missing value, a value on
// a flag, a bad number or choice, a number out of range. Fields are
// written in argument order; the last of a repeated option wins.
int opts_parse(const opts_opt *table, int argc, char **argv, err_t *err);

// Writes `usage` (verbatim), then one line per option of `table`: the flag,
// its value's name, the help and "(default: X)" from `def` or the field's
// current value (none for flags, NULL strings and OPTS_NODEF), then
// `epilogue` (verbatim; NULL: none).
void opts_help(FILE *f, const char *usage, const opts_opt *table, const char *epilogue);

#endif
