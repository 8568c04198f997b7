// regex: the byte DFAs of core/regex against hand-written expectations:
// raw-byte lexemes (numbers, literals), JSON string encoding (escapes,
// multi-byte UTF-8, char_end), search vs anchored semantics, the errors for
// unsupported constructs and limits, rx_keys' labels, rx_intersect,
// rx_int_range against brute force, every rx_format against valid and
// invalid lists, and the DFA invariants (trimmed, minimal-ish sizes). The
// comparison with Node's RegExp over thousands of cases is
// tests/test_regex.sh.
#include <stdlib.h>
#include <string.h>

#include "../core/regex.h"
#include "check.h"

// Canonical JSON encoding (Python's json.dumps(ensure_ascii=False)).
static size_t json_enc(const char *s, char *out) {
    static const char hex[] = "0123456789abcdef";
    size_t k = 0;
    out[k++] = '"';
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        const char *sh = c == '"' ? "\\\"" : c == '\\' ? "\\\\" : c == '\b' ? "\\b" : c == '\f' ? "\\f"
                       : c == '\n' ? "\\n" : c == '\r' ? "\\r" : c == '\t' ? "\\t" : NULL;
        if (sh) memcpy(out + k, sh, 2), k += 2;
        else if (c < 0x20) memcpy(out + k, "\\u00", 4), k += 4, out[k++] = hex[c >> 4], out[k++] = hex[c & 15];
        else out[k++] = (char)c;
    }
    out[k++] = '"';
    return k;
}

static rx_dfa *compile(const char *p, unsigned flags) {
    err_t e = {{0}};
    rx_dfa *d = rx_compile(p, strlen(p), flags, &e);
    CHECK(d != NULL, "/%s/ (flags %u): %s", p, flags, e.msg);
    return d;
}

static int match_str(const rx_dfa *d, const char *s) {
    char enc[4096];
    return rx_match(d, enc, json_enc(s, enc));
}

// Every string in yes matches, none in no (JSON-encoded when flags say so).
static void expect(const char *p, unsigned flags, const char *const *yes, const char *const *no) {
    rx_dfa *d = compile(p, flags);
    if (!d) return;
    for (; yes && *yes; yes++) {
        int m = flags & RX_JSON_STRING ? match_str(d, *yes) : rx_match(d, *yes, strlen(*yes));
        CHECK(m, "/%s/ should match \"%s\"", p, *yes);
    }
    for (; no && *no; no++) {
        int m = flags & RX_JSON_STRING ? match_str(d, *no) : rx_match(d, *no, strlen(*no));
        CHECK(!m, "/%s/ should not match \"%s\"", p, *no);
    }
    rx_free(d);
}

#define L(...) ((const char *const[]){__VA_ARGS__, NULL})

// Every state reaches an accepting one (the contract's trimming).
static void check_trimmed(const rx_dfa *d, const char *what) {
    int n = d->n_states, changed = 1;
    uint8_t *live = calloc((size_t)n, 1);
    for (int s = 0; s < n; s++) live[s] = d->accept[s];
    while (changed) {
        changed = 0;
        for (int s = 0; s < n; s++)
            for (int c = 0; c < d->n_classes && !live[s]; c++) {
                int t = d->next[s * d->n_classes + c];
                if (t >= 0 && live[t]) live[s] = 1, changed = 1;
            }
    }
    int dead = 0;
    for (int s = 0; s < n; s++) dead += !live[s];
    CHECK(dead == 0, "%s: %d states cannot reach accept", what, dead);
    free(live);
}

static void test_bytes(void) {
    const char *num = "-?(0|[1-9][0-9]*)(\\.[0-9]+)?([eE][+-]?[0-9]+)?";
    expect(num, RX_BYTES, L("0", "-0", "12", "1.5", "1e10", "-3.25E-7", "10"), L("", "01", "1.", ".5", "1e", "+1", "--1", "1 "));
    expect("true", RX_BYTES, L("true"), L("tru", "truee", "\"true\""));
    expect("\\x80\\xff", RX_BYTES, L("\x80\xff"), L("\xc2\x80"));
    expect("a.c", RX_BYTES, L("abc", "a\xff" "c", "a\rc"), L("a\nc", "ac"));
    // \s in bytes: its ASCII members and 0xA0 only (no bytes of U+1680 etc.).
    expect("\\s", RX_BYTES, L(" ", "\t", "\xa0"), L("\x80", "\xe1", "\x16", "a"));
    expect("[^\\S]\\S", RX_BYTES, L(" \x80", "\xa0" "a"), L("  ", "\x80\x80"));
    expect("é", RX_BYTES, L("é"), L("\xe9"));
    rx_dfa *d = compile(num, RX_BYTES);
    if (d) {
        CHECK(d->char_end == NULL && d->key_name == NULL, "byte DFAs have no char_end or key labels");
        CHECK(d->n_states <= 10, "number lexeme: %d states (minimal is 9)", d->n_states);
        check_trimmed(d, "number");
        rx_free(d);
    }
}

static void test_json_string(void) {
    expect("[\\s\\S]*", RX_JSON_STRING, L("", "a", "\"", "\\", "\n\t\x01\x1f", "é€😀", "\x7f"), NULL);
    expect(".*", RX_JSON_STRING, L("", "abc", "é", "\t"), L("a\nb", "\r", "\xe2\x80\xa8"));
    expect("a\"b\\\\c", RX_JSON_STRING, L("a\"b\\c"), L("a\"b\\\\c"));
    expect("[^a]", RX_JSON_STRING, L("b", "é", "😀", "\n", "\""), L("a", "", "bb"));
    expect("\\u00e9|\\u{1F600}|\\uD83D\\uDE00x", RX_JSON_STRING, L("é", "😀", "😀x"), L("e", "x"));
    // Non-canonical encodings are refused: the DFA accepts one spelling.
    rx_dfa *d = compile("[\\s\\S]*", RX_JSON_STRING);
    if (!d) return;
    const char *bad[] = {"\"\\u0041\"", "\"\\/\"", "\"\\u000A\"", "\"\\u000a\"", "\"\x01\"", "\"\xed\xa0\x80\"", "\"\xc0\xaf\"",
                         "\"\xf4\x90\x80\x80\"", "\"a", "a\"", "\"\"\"", "\"\\\""};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) CHECK(!rx_match(d, bad[i], strlen(bad[i])), "free string accepted %s", bad[i]);
    const char *good[] = {"\"\\u0001\"", "\"\\u001f\"", "\"\\b\\f\\n\\r\\t\"", "\"\\\\\\\"\"", "\"\xf4\x8f\xbf\xbf\""};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) CHECK(rx_match(d, good[i], strlen(good[i])), "free string refused %s", good[i]);
    CHECK(d->n_states <= 20, "free string DFA: %d states", d->n_states);
    CHECK(d->char_end != NULL, "JSON string DFA has char_end");
    // char_end: count boundaries entered after the opening quote = code points.
    const char *s = "\"a\\n\xc3\xa9\xf0\x9f\x98\x80\\u0001\"";
    int st = 0, count = 0;
    for (size_t i = 0; s[i]; i++) {
        st = d->next[st * d->n_classes + d->cls[(uint8_t)s[i]]];
        if (st < 0) break;
        if (i > 0 && d->char_end[st]) count++;
    }
    CHECK(st >= 0 && d->accept[st] && count == 5, "char_end counted %d code points (want 5)", count);
    CHECK(!d->char_end[0], "the start state is no boundary");
    check_trimmed(d, "free string");
    rx_free(d);
}

static void expect_error(const char *p, unsigned flags, const char *needle) {
    err_t e = {{0}};
    rx_dfa *d = rx_compile(p, strlen(p), flags, &e);
    CHECK(d == NULL && strstr(e.msg, needle), "/%s/: want an error with \"%s\", got \"%s\"", p, needle, d ? "a DFA" : e.msg);
    rx_free(d);
}

static void test_search(void) {
    unsigned f = RX_SEARCH | RX_JSON_STRING;
    expect("ab", f, L("ab", "xaby", "ab\n"), L("a", "ba", ""));
    expect("^ab", f, L("ab", "abz"), L("zab"));
    expect("ab$", f, L("ab", "zab"), L("abz"));
    expect("^a|b$", f, L("a", "ax", "b", "xb"), L("xa", "bx"));
    expect("^$", f, L(""), L("a"));
    expect("", f, L("", "anything"), NULL);
    expect("^(a|b)+$", f, L("a", "abba"), L("", "abc"));
    expect("^[a-z]{2,3}$", f, L("ab", "abc"), L("a", "abcd"));
    expect("^a{2}b{0,1}c{1,}$", f, L("aac", "aabccc"), L("ac", "aabbc"));
    expect("^\\d+\\.\\w\\s\\S$", f, L("12.a x", "0._\u3000y"), L("1.a  ", "a.a x"));
    expect("^[^\\d\\s]$", f, L("a", "é"), L("1", " ", "\n"));
    expect("^\\D\\W$", f, L("a!", "\n "), L("1!", "aa"));
    expect("^(?:x|y)(?<name>z)*?$", f, L("x", "yzz"), L("z"));
    // Anchors inside groups and alternatives, as ECMA's assertions.
    expect("(^$)|(^[a-f]{2}$)", f, L("", "ab"), L("abc", "xab", "a"));
    expect("(^a)|(b$)", f, L("a", "ax", "b", "xb"), L("xa", "bx"));
    expect("^([^,]+(,|$)){3,}$", f, L("a,b,c", "a,b,c,"), L("a,b", "a,,b,c"));
    expect("(?:^|,)x(?:,|$)", f, L("x", "x,a", "a,x", "a,x,b"), L("ax", "xa", "a,xb"));
    expect("(a|^)b", f, L("b", "ab", "bz", "xab"), L("xb", "a"));
    // Braces that are no quantifier, lone } and ]: literals (Annex B, Python's re).
    expect("^\\{\\{.+}}$", f, L("{{x}}"), L("{{}}", "{x}"));
    expect("^a{,2}]{x$", f, L("a{,2}]{x"), L("aa"));
    expect("^[[a-z]*]$", f, L("]", "[a]", "ab]"), L("a", "[a"));
    expect("Normal|Fighting|Flying|Poison|Ground|Rock|Bug|Ghost|Steel|Fire|Water|Grass", f, L("Rock", "xFirex", "Bugs"), L("rock", ""));
    expect("^list|date|number$", f, L("list1", "a date b", "a number"), L("a list", "number 1"));
    // Lookaheads right after a leading ^: the string begins (not) with X.
    expect("^(?!internal)[a-z]+$", f, L("public", "interna", "xinternal"), L("internal", "internals", "Public"));
    expect("^(?=[^=]+$)(?!\\s+$)(.|\n)+$", f, L("a", "a b", "x\ny"), L(" ", "\n\t", "a=b", ""));
    expect("^(?!pattern$).*$", f, L("patterns", "x", ""), L("pattern"));
    expect("x$|^(?=ab)a", f, L("abc", "zx"), L("ac", "xa"));
    expect("^(?!a)", f, L("", "b", "ba"), L("a", "ab"));
    expect("^(?=a)", f, L("a", "ab"), L("", "b"));
    expect("(?!ab)[a-c]{2}", RX_JSON_STRING, L("aa", "ba", "ac"), L("ab", "a")); // anchored: no ^ needed
    expect_error("^(?=b)a", f, "matches no string");
    // Searching, a lookahead that ends an alternative is a plain group.
    expect("([^/]*/)*(?=\\.(yaml|json))", f, L("a/.yaml", "x.json", "a/b/.jsonx"), L("a/b.yml", "yaml"));
    expect("(x|y)(?=[0-9]{2})", f, L("x12", "ay99b"), L("x1", "z12", "x 12"));
    expect("^a|b(?=c)", f, L("a", "abc", "bc", "xbcx"), L("b", "xa", "cb"));
    expect_error("a(?=b)c", f, "lookahead '(?=' is only supported right after a leading '^'");
    expect("^\\t\\n\\r\\f\\v\\x41\\cA$", f, L("\t\n\r\f\vA\x01"), NULL);
}

// \0 (U+0000) checked through its encoded form: C strings stop at NUL.
static void test_nul(void) {
    rx_dfa *d = compile("^a\\0b$", RX_SEARCH | RX_JSON_STRING);
    if (!d) return;
    CHECK(rx_match(d, "\"a\\u0000b\"", 10), "\\0 is U+0000, written \\u0000");
    rx_free(d);
}


static void test_errors(void) {
    unsigned f = RX_SEARCH | RX_JSON_STRING;
    expect_error("a(?=b)$", f, "lookahead '(?=' is only supported right after a leading '^' (at offset 1)");
    expect_error("(?=a)b", f, "lookahead '(?=' is only supported right after a leading '^'"); // searching: any position
    expect_error("^((?!x).)*$", f, "negative lookahead '(?!' is only supported right after a leading '^' (at offset 2)");
    expect_error("^(?=(?!a)b)c", f, "negative lookahead '(?!' is only supported unnested");
    expect_error("^(?!a)*b", f, "nothing to repeat");
    expect_error("(?<=a)b", f, "lookbehind");
    expect_error("(?<!a)b", f, "negative lookbehind");
    expect_error("(a)\\1", f, "backreference");
    expect_error("\\bfoo", f, "word boundary");
    expect_error("\\p{L}", f, "Unicode property");
    expect_error("a^b", f, "matches no string"); // ^ and $ are assertions anywhere
    expect_error("a$b", f, "matches no string");
    expect_error("^*a", f, "nothing to repeat");
    expect_error("a{1,100000}", f, "too large");
    expect_error("a{99999999}", f, "too large");
    expect_error("[b-a]", f, "out of order");
    expect_error("[\\d-z]", f, "class escape in a range"); // a SyntaxError in ECMA's u mode too
    expect_error("a{3,2}", f, "out of order");
    expect_error("*a", f, "nothing to repeat");
    expect_error("{2}a", f, "nothing to repeat");
    expect_error("a**", f, "nothing to repeat");
    expect_error("(a", f, "missing ')'");
    expect_error("a)", f, "unmatched ')'");
    expect_error("[a", f, "missing ']'");
    expect_error("a\\", f, "end of the pattern");
    expect_error("\\q", f, "unknown escape");
    expect_error("[]", RX_JSON_STRING, "matches no string");
    expect_error("\\uD800", RX_JSON_STRING, "matches no string"); // a lone surrogate is no character
    expect_error("\\u0100", RX_BYTES, "above 0xFF");
    expect_error("[ab]*a[ab]{16}", RX_JSON_STRING, "too complex (more than 20000 states)");
    // Counted repetition of a few hundred works.
    rx_dfa *d = compile("^a{1,300}$", f);
    CHECK(d && d->n_states < 320, "a{1,300}: %d states", d ? d->n_states : -1);
    rx_free(d);
    d = compile("^.{0,200}$", f);
    CHECK(d && match_str(d, "héllo") && d->n_states < 3400, "'.{0,200}': %d states", d ? d->n_states : -1);
    rx_free(d);
}

static void test_keys(void) {
    const char *names[] = {"id", "name", "i\"d", "x_id"};
    const char *pats[] = {"^x_", "\\d$"};
    err_t e = {{0}};
    rx_dfa *d = rx_keys(names, 4, pats, 2, 1, &e);
    CHECK(d != NULL, "rx_keys: %s", e.msg);
    if (!d) return;
    struct { const char *key; int name; uint64_t pats; } cases[] = {
        {"id", 0, 0}, {"name", 1, 0}, {"i\"d", 2, 0}, {"x_a", -1, 1}, {"x_1", -1, 3}, {"a1", -1, 2}, {"other", -1, 0}, {"", -1, 0},
        {"x_id", 3, 1}, {"😀9", -1, 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char enc[256];
        size_t n = json_enc(cases[i].key, enc);
        int st = 0;
        for (size_t j = 0; j < n && st >= 0; j++) st = d->next[st * d->n_classes + d->cls[(uint8_t)enc[j]]];
        CHECK(st >= 0 && d->accept[st], "key %s accepted", cases[i].key);
        if (st < 0) continue;
        CHECK(d->key_name[st] == cases[i].name && d->key_pats[st] == cases[i].pats, "key %s: name %d pats %llu", cases[i].key,
              d->key_name[st], (unsigned long long)d->key_pats[st]);
    }
    check_trimmed(d, "keys");
    rx_free(d);
    // Without any_key, other strings are refused.
    d = rx_keys(names, 2, NULL, 0, 0, &e);
    CHECK(d && match_str(d, "id") && !match_str(d, "idx") && !match_str(d, "nam"), "closed keys");
    rx_free(d);
    d = rx_keys(names, 0, pats, 1, 0, &e);
    CHECK(d && match_str(d, "x_y") && !match_str(d, "y"), "pattern-only keys");
    rx_free(d);
    d = rx_keys(names, 1, (const char *[]){"(?=x)b"}, 1, 0, &e);
    CHECK(!d && strstr(e.msg, "key pattern 0 ((?=x)b)") && strstr(e.msg, "lookahead"), "a bad key pattern is named: %s", e.msg);
    rx_free(d);
    // A key pattern with a leading lookahead joins the union as its DFA.
    d = rx_keys(names, 2, (const char *[]){"^(?!(id|and|or)$)[a-z]+$", "_"}, 2, 1, &e);
    CHECK(d != NULL, "keys with a lookahead pattern: %s", e.msg);
    struct { const char *key; int name; uint64_t pats; } look[] = {
        {"id", 0, 0}, {"name", 1, 1}, {"and", -1, 0}, {"andy", -1, 1}, {"a_b", -1, 2}, {"A", -1, 0},
    };
    for (size_t i = 0; d && i < sizeof look / sizeof *look; i++) {
        char enc[256];
        size_t n = json_enc(look[i].key, enc);
        int st = 0;
        for (size_t j = 0; j < n && st >= 0; j++) st = d->next[st * d->n_classes + d->cls[(uint8_t)enc[j]]];
        CHECK(st >= 0 && d->accept[st] && d->key_name[st] == look[i].name && d->key_pats[st] == look[i].pats,
              "lookahead keys: %s", look[i].key);
    }
    if (d) check_trimmed(d, "lookahead keys");
    rx_free(d);
}

static void test_intersect(void) {
    rx_dfa *a = compile("^[a-z]+$", RX_SEARCH | RX_JSON_STRING), *b = compile("^.{2,3}$", RX_SEARCH | RX_JSON_STRING);
    err_t e = {{0}};
    rx_dfa *d = a && b ? rx_intersect(a, b, &e) : NULL;
    CHECK(d != NULL, "intersect: %s", e.msg);
    if (d) {
        CHECK(match_str(d, "ab") && match_str(d, "abc") && !match_str(d, "a") && !match_str(d, "abcd") && !match_str(d, "a1"),
              "intersection language");
        CHECK(d->char_end != NULL, "intersection keeps char_end");
        check_trimmed(d, "intersection");
    }
    rx_free(d);
    rx_dfa *c = compile("^[0-9]+$", RX_SEARCH | RX_JSON_STRING);
    d = a && c ? rx_intersect(a, c, &e) : NULL;
    CHECK(!d && strstr(e.msg, "matches no string"), "empty intersection is an error: %s", e.msg);
    rx_free(a), rx_free(b), rx_free(c), rx_free(d);
}

static int in_range(int has_lo, int64_t lo, int has_hi, int64_t hi, int64_t v) {
    return (!has_lo || v >= lo) && (!has_hi || v <= hi);
}

// Every integer within 1200 of center (saturating at the int64 ends).
static void check_window(const rx_dfa *d, const char *re, int has_lo, int64_t lo, int has_hi, int64_t hi, int64_t center) {
    int64_t from = center < INT64_MIN + 1200 ? INT64_MIN : center - 1200;
    int64_t to = center > INT64_MAX - 1200 ? INT64_MAX : center + 1200;
    int bad = 0;
    for (int64_t v = from;; v++) {
        char s[32];
        snprintf(s, sizeof s, "%lld", (long long)v);
        int want = in_range(has_lo, lo, has_hi, hi, v);
        if (rx_match(d, s, strlen(s)) != want && bad++ < 5) CHECK(0, "range %s: %s should be %d", re, s, want);
        if (v == to) break;
    }
}

// rx_int_range's regex accepts exactly the integers of the range: checked
// on every number near both ends and near 0, and on the int64 extremes.
static void check_range(int has_lo, int64_t lo, int has_hi, int64_t hi) {
    char re[4096], s[32];
    CHECK(rx_int_range(has_lo, lo, has_hi, hi, re, sizeof re) == 0, "rx_int_range fits");
    rx_dfa *d = compile(re, RX_BYTES);
    if (!d) return;
    check_window(d, re, has_lo, lo, has_hi, hi, 0);
    if (has_lo) check_window(d, re, has_lo, lo, has_hi, hi, lo);
    if (has_hi) check_window(d, re, has_lo, lo, has_hi, hi, hi);
    const int64_t extremes[] = {INT64_MIN, INT64_MIN + 1, -1, 0, 1, INT64_MAX - 1, INT64_MAX};
    for (size_t i = 0; i < sizeof extremes / sizeof *extremes; i++) {
        snprintf(s, sizeof s, "%lld", (long long)extremes[i]);
        int want = in_range(has_lo, lo, has_hi, hi, extremes[i]);
        CHECK(rx_match(d, s, strlen(s)) == want, "range %s: %s should be %d", re, s, want);
    }
    CHECK(!rx_match(d, "-0", 2) && !rx_match(d, "007", 3) && !rx_match(d, "", 0), "range %s: no -0, leading zeros, empty", re);
    // Past int64: in the range only when that side is unbounded.
    CHECK(rx_match(d, "99999999999999999999", 20) == !has_hi, "range %s: 20 digits", re);
    CHECK(rx_match(d, "-99999999999999999999", 21) == !has_lo, "range %s: -20 digits", re);
    check_trimmed(d, re);
    rx_free(d);
}

static void test_int_range(void) {
    check_range(1, 0, 1, 255);
    check_range(1, -5, 1, 5);
    check_range(1, -1234, 1, -17);
    check_range(1, 7, 1, 7);
    check_range(1, 0, 1, 0);
    check_range(1, 1, 0, 0);
    check_range(1, 0, 0, 0);
    check_range(1, -100, 0, 0);
    check_range(1, 999, 0, 0);
    check_range(0, 0, 1, 0);
    check_range(0, 0, 1, -1000);
    check_range(0, 0, 1, 4321);
    check_range(0, 0, 0, 0);
    check_range(1, 19, 1, 1001);
    check_range(1, 1000, 1, 100000);
    check_range(1, -99999, 1, 5);
    check_range(1, INT64_MIN, 1, INT64_MIN + 2000);
    check_range(1, INT64_MAX - 2000, 1, INT64_MAX);
    check_range(1, INT64_MIN, 1, INT64_MAX);
    check_range(1, -2147483648LL, 1, 2147483647LL);
    char re[16];
    CHECK(rx_int_range(1, 5, 1, 4, re, sizeof re) == -1, "an empty range is refused");
    CHECK(rx_int_range(1, 0, 1, 123456789, re, sizeof re) == -1, "a small buffer is refused");
    char ex[256];
    rx_int_range(1, 0, 1, 255, ex, sizeof ex);
    CHECK(!strcmp(ex, "([1-9][0-9]|[0-9]|1[0-9]{2}|2[0-4][0-9]|25[0-5])"), "0..255 reads %s", ex);
    // Whole lengths fold into one alternative, so int64 fits in 1 KiB.
    char big[1024];
    CHECK(rx_int_range(1, INT64_MIN, 1, INT64_MAX, big, sizeof big) == 0, "the int64 range fits in 1 KiB");
}

// Formats: every string in yes matches and none in no, with the source
// compiled as the schema compiler will (search semantics, JSON string).
static void fmt(const char *name, const char *const *yes, const char *const *no) {
    const char *src = rx_format(name);
    CHECK(src != NULL, "format %s", name);
    if (!src) return;
    expect(src, RX_SEARCH | RX_JSON_STRING, yes, no);
    expect(src, RX_JSON_STRING, yes, no);
}

static void test_formats(void) {
    // Dates: days per month and leap years are exact (2023-02-29 and
    // 1900-02-29 refused, 2000-02-29 and 2024-02-29 accepted); year 0000 is
    // refused as Python's datetime does.
    fmt("date", L("2023-01-31", "2024-02-29", "2000-02-29", "0001-01-01", "9999-12-31", "2023-04-30"),
        L("2023-02-29", "1900-02-29", "2023-02-30", "2023-04-31", "2023-13-01", "2023-00-10", "2023-01-00", "0000-01-01",
          "23-01-01", "2023-1-01", "2023-01-01T00:00:00Z", "2023/01/01", "２０２３-01-01", " 2023-01-01"));
    fmt("time", L("00:00:00Z", "23:59:59+05:30", "12:34:56.789-08:00", "01:02:03.0Z"),
        L("24:00:00Z", "12:60:00Z", "12:00:60Z", "12:00:00", "12:00Z", "12:00:00+24:00", "12:00:00.Z", "1:00:00Z",
          "12:00:00z"));
    fmt("date-time", L("2023-06-01T12:00:00Z", "2024-02-29T23:59:59.5+01:00"),
        L("2023-06-01 12:00:00Z", "2023-06-01T12:00:00", "2023-02-29T12:00:00Z", "2023-06-01T25:00:00Z", "2023-06-01Tx"));
    fmt("duration", L("P1Y", "P1Y2M3D", "PT1H", "PT1H2M3S", "P1W", "P3DT4H", "PT36H", "P0D"),
        L("P", "PT", "P1H", "1Y", "P1Y2D", "PT1S2M", "P1W2D", "P1.5Y", "p1y", "P1YT"));
    fmt("email", L("a@b.co", "first.last+tag@example.com", "x_y-z@sub.domain.org", "!#$%&'*+/=?^_`{|}~-@host"),
        L("a", "@b.com", "a@", "a..b@c.com", ".a@b.com", "a.@b.com", "a@b..com", "a@-b.com", "a@b-.com", "a b@c.com",
          "a@b.c@d.com", "\"quoted\"@x.com", "a@[1.2.3.4]", "é@x.com"));
    fmt("hostname", L("localhost", "example.com", "a-b.c-d.example", "xn--bcher-kva.example", "a.b.c.d.e.f.g.h"),
        L("", "-a.com", "a-.com", "a..com", ".com", "com.", "a_b.com", "exa mple.com", "1.2.3.4", "é.com",
          "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.com")); // 64-char label
    fmt("ipv4", L("0.0.0.0", "255.255.255.255", "192.168.1.1", "10.0.0.254"),
        L("256.1.1.1", "01.1.1.1", "1.1.1", "1.1.1.1.1", "1.1.1.01", "1.1.1.1 ", "a.b.c.d", "1..1.1", "1.1.1.300",
          "١.1.1.1"));
    fmt("ipv6", L("::", "::1", "1::", "1:2:3:4:5:6:7:8", "fe80::1", "::ffff:192.168.1.1", "1:2:3:4:5:6:1.2.3.4", "ABCD:ef::1:2",
                  "1::2:3:4:5:6:7"),
        L(":", ":::", "1:2:3:4:5:6:7:8:9", "1::2::3", "12345::", "1:2:3:4:5:6:7", "::ffff:256.1.1.1", "fe80::1%eth0",
          "g::1", "1:2:3:4:5:6:7::8", "::1.2.3"));
    fmt("uuid", L("123e4567-e89b-12d3-a456-426614174000", "AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEEEEEE"),
        L("123e4567e89b12d3a456426614174000", "123e4567-e89b-12d3-a456-42661417400", "123e4567-e89b-12d3-a456-4266141740000",
          "123e456-7e89b-12d3-a456-426614174000", "{123e4567-e89b-12d3-a456-426614174000}", "g23e4567-e89b-12d3-a456-426614174000"));
    fmt("uri", L("http://example.com", "https://a.b/c?d=e#f", "mailto:x@y.z", "urn:isbn:0451450523", "http://[::1]:8080/",
                 "file:///etc/hosts", "a:", "http://u:p@h/%20x"),
        L("", "example.com", "/path", "//host", "http://exa mple.com", "1http://x", "http://%zz", "http://a/b c", "http://[::g]/",
          "http://é.com", "http://a/\"", "http://a/<b>", "http://a/b\\c"));
    fmt("uri-reference", L("http://example.com", "/path/x", "", "#frag", "?q", "a/b", "//host/p", "../x"),
        L("a b", "http://a/b c", "%zz", "\\x", "a:b c"));
    fmt("iri", L("http://example.com"), L("x y"));
    fmt("json-pointer", L("", "/a", "/a~0b/~1c", "/"), L("a", "/a~2", "/~"));
    fmt("relative-json-pointer", L("0", "1/a", "2#"), L("", "01", "-1", "/a"));
    CHECK(rx_format("no-such-format") == NULL && rx_format("regex") == NULL, "unknown formats give NULL");
}

int main(void) {
    test_bytes();
    test_json_string();
    test_search();
    test_nul();
    test_errors();
    test_keys();
    test_intersect();
    test_int_range();
    test_formats();
    return check_finish("test_regex");
}
