// regex_format: regex sources for JSON Schema formats (rx_format) and for
// integer ranges (rx_int_range). Plain text generators: the DFAs come from
// rx_compile like any other pattern.
#include <stdio.h>
#include <string.h>

#include "regex.h"

// ---- formats ----
//
// Each source is anchored and errs on the strict side: a string a validator
// (Python jsonschema, Rust jsonschema) would refuse must never match, while
// some exotic valid strings may be refused. What each one leaves out:
//   date       RFC 3339 full-date, days per month and leap years checked
//              exactly; year 0000 refused (Python's datetime has no year 0).
//   time       RFC 3339 full-time: offset required; upper-case T and Z only;
//              no leap second (:60).
//   duration   the ABNF of RFC 3339 appendix A (as JSON Schema cites it):
//              no fractions, no lower case, no "P1Y2D" (month skipped).
//   email      dot-atom local part (RFC 5321) @ a hostname as below; no quoted
//              local parts, no address literals. The local part's 64 chars
//              are kept as for hostnames: one atom of up to 64, two of up to
//              31 and 32, or three or four of up to 15.
//   hostname   RFC 1123 labels (letters, digits, inner hyphens, 1-63 chars),
//              the last one starting with a letter; the total of 253 is kept
//              by allowing up to 4 labels of up to 62 chars or up to 12 labels
//              of up to 20 (a regex cannot count the total cheaply).
//   ipv6       every RFC 4291 text form, embedded IPv4 included; no zone id.
//   uri        RFC 3986 absolute URI, ASCII only, percent-encoding checked.

#define DEC_OCTET "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
#define IPV4 DEC_OCTET "(?:\\." DEC_OCTET "){3}"

#define YEAR "(?:[1-9][0-9]{3}|0[1-9][0-9]{2}|00[1-9][0-9]|000[1-9])"
#define LEAP_YEAR "(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)"
#define MONTH_DAY                                                                                                 \
    "(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|" \
    "2[0-8]))"
#define DATE "(?:" YEAR "-" MONTH_DAY "|" LEAP_YEAR "-02-29)"
#define TIME "(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\\.[0-9]+)?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"

#define DUR_TIME "T(?:[0-9]+H(?:[0-9]+M(?:[0-9]+S)?)?|[0-9]+M(?:[0-9]+S)?|[0-9]+S)"
#define DUR_DATE "(?:[0-9]+D|[0-9]+M(?:[0-9]+D)?|[0-9]+Y(?:[0-9]+M(?:[0-9]+D)?)?)"
#define DURATION "P(?:" DUR_DATE "(?:" DUR_TIME ")?|" DUR_TIME "|[0-9]+W)"

#define LABEL(n) "[A-Za-z0-9](?:[A-Za-z0-9-]{0," #n "}[A-Za-z0-9])?"
#define TLD(n) "[A-Za-z](?:[A-Za-z0-9-]{0," #n "}[A-Za-z0-9])?"
#define HOSTNAME "(?:(?:" LABEL(60) "\\.){0,3}" TLD(60) "|(?:" LABEL(18) "\\.){0,11}" TLD(18) ")"
#define ATEXT "[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
#define LOCAL_PART                                                                                         \
    "(?:" ATEXT "{1,64}|" ATEXT "{1,31}\\." ATEXT "{1,32}|(?:" ATEXT "{1,15}\\.){2,3}" ATEXT "{1,15})"
#define EMAIL LOCAL_PART "@" HOSTNAME

#define H16 "[0-9A-Fa-f]{1,4}"
#define LS32 "(?:" H16 ":" H16 "|" IPV4 ")"
#define IPV6                                                                                          \
    "(?:(?:" H16 ":){6}" LS32 "|::(?:" H16 ":){5}" LS32 "|(?:" H16 ")?::(?:" H16 ":){4}" LS32          \
    "|(?:(?:" H16 ":){0,1}" H16 ")?::(?:" H16 ":){3}" LS32 "|(?:(?:" H16 ":){0,2}" H16 ")?::(?:" H16 \
    ":){2}" LS32 "|(?:(?:" H16 ":){0,3}" H16 ")?::" H16 ":" LS32 "|(?:(?:" H16 ":){0,4}" H16         \
    ")?::" LS32 "|(?:(?:" H16 ":){0,5}" H16 ")?::" H16 "|(?:(?:" H16 ":){0,6}" H16 ")?::)"

#define HEX "[0-9A-Fa-f]"
#define UUID HEX "{8}-" HEX "{4}-" HEX "{4}-" HEX "{4}-" HEX "{12}"

// RFC 3986 pieces. PCHAR's class: unreserved, sub-delims, ':' and '@'.
#define PCT "%[0-9A-Fa-f]{2}"
#define UNRES_SUB "\\-A-Za-z0-9._~!$&'()*+,;="
#define PCHAR "(?:[" UNRES_SUB ":@]|" PCT ")"
#define SEGMENT PCHAR "*"
#define SEGMENT_NZ PCHAR "+"
#define SEGMENT_NZ_NC "(?:[" UNRES_SUB "@]|" PCT ")+"
#define USERINFO "(?:[" UNRES_SUB ":]|" PCT ")*"
#define REG_NAME "(?:[" UNRES_SUB "]|" PCT ")*"
#define IPVFUTURE "v[0-9A-Fa-f]+\\.[" UNRES_SUB ":]+"
#define HOST "(?:\\[(?:" IPV6 "|" IPVFUTURE ")\\]|" REG_NAME ")"
#define AUTHORITY "(?:" USERINFO "@)?" HOST "(?::[0-9]*)?"
#define PATH_ABEMPTY "(?:/" SEGMENT ")*"
#define PATH_ABSOLUTE "/(?:" SEGMENT_NZ "(?:/" SEGMENT ")*)?"
#define PATH_ROOTLESS SEGMENT_NZ "(?:/" SEGMENT ")*"
#define PATH_NOSCHEME SEGMENT_NZ_NC "(?:/" SEGMENT ")*"
#define QUERY_FRAG "(?:\\?(?:" PCHAR "|[/?])*)?(?:#(?:" PCHAR "|[/?])*)?"
#define SCHEME "[A-Za-z][A-Za-z0-9+.-]*"
#define URI SCHEME ":(?://" AUTHORITY PATH_ABEMPTY "|" PATH_ABSOLUTE "|" PATH_ROOTLESS ")?" QUERY_FRAG
#define RELATIVE_REF "(?://" AUTHORITY PATH_ABEMPTY "|" PATH_ABSOLUTE "|" PATH_NOSCHEME ")?" QUERY_FRAG

#define JSON_POINTER "(?:/(?:[^~/]|~[01])*)*"

static const struct {
    const char *name, *source;
} formats[] = {
    {"date-time", "^" DATE "T" TIME "$"},
    {"date", "^" DATE "$"},
    {"time", "^" TIME "$"},
    {"duration", "^" DURATION "$"},
    {"email", "^" EMAIL "$"},
    {"idn-email", "^" EMAIL "$"}, // an ASCII email is an internationalized one
    {"hostname", "^" HOSTNAME "$"},
    {"ipv4", "^" IPV4 "$"},
    {"ipv6", "^" IPV6 "$"},
    {"uuid", "^" UUID "$"},
    {"uri", "^" URI "$"},
    {"iri", "^" URI "$"}, // every URI is an IRI
    {"uri-reference", "^(?:" URI "|" RELATIVE_REF ")$"},
    {"iri-reference", "^(?:" URI "|" RELATIVE_REF ")$"},
    {"json-pointer", "^" JSON_POINTER "$"},
    {"relative-json-pointer", "^(?:0|[1-9][0-9]*)(?:#|" JSON_POINTER ")$"},
};

const char *rx_format(const char *name) {
    for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++)
        if (!strcmp(formats[i].name, name)) return formats[i].source;
    return NULL;
}

// ---- integer ranges ----

typedef struct sbuf {
    char *p;
    size_t cap, n;
    int alts; // alternatives written so far
} sbuf;

static void put(sbuf *b, const char *s) {
    size_t k = strlen(s);
    if (b->n + k < b->cap) memcpy(b->p + b->n, s, k);
    b->n += k;
}

// One alternative: a literal prefix, digit class [x-y] (if x >= 0) and r
// free digits.
static void alt(sbuf *b, const char *prefix, int x, int y, int r) {
    char t[32];
    if (b->alts++) put(b, "|");
    put(b, prefix);
    if (x >= 0 && x == y) snprintf(t, sizeof t, "%c", '0' + x), put(b, t);
    else if (x >= 0) snprintf(t, sizeof t, "[%c-%c]", '0' + x, '0' + y), put(b, t);
    if (r == 1) put(b, "[0-9]");
    else if (r > 1) snprintf(t, sizeof t, "[0-9]{%d}", r), put(b, t);
}

static int all_of(const char *s, int n, char c) {
    for (int i = 0; i < n; i++)
        if (s[i] != c) return 0;
    return 1;
}

// Alternatives for the fixed-width digit strings lo..hi (length n, lo <=
// hi), each after prefix: split at the first differing digit into the part
// sharing lo's digit, the full middle, and the part sharing hi's digit.
static void span(sbuf *b, const char *prefix, const char *lo, const char *hi, int n) {
    char pre[48], nines[24], zeros[24];
    int i = 0;
    while (i < n && lo[i] == hi[i]) i++;
    snprintf(pre, sizeof pre, "%s%.*s", prefix, i, lo);
    if (i == n) return alt(b, pre, -1, -1, 0);
    int r = n - i - 1, x = lo[i] - '0', y = hi[i] - '0';
    int lo_full = all_of(lo + i + 1, r, '0'), hi_full = all_of(hi + i + 1, r, '9');
    memset(nines, '9', sizeof nines), memset(zeros, '0', sizeof zeros);
    size_t pl = strlen(pre);
    if (!lo_full) {
        pre[pl] = (char)('0' + x), pre[pl + 1] = 0;
        span(b, pre, lo + i + 1, nines, r);
        pre[pl] = 0;
    }
    int a = lo_full ? x : x + 1, z = hi_full ? y : y - 1;
    if (a <= z) alt(b, pre, a, z, r);
    if (!hi_full) {
        pre[pl] = (char)('0' + y), pre[pl + 1] = 0;
        span(b, pre, zeros, hi + i + 1, r);
        pre[pl] = 0;
    }
}

// Magnitudes lo..hi (hi_inf: no upper bound), after sign.
static void magnitudes(sbuf *b, const char *sign, uint64_t lo, int hi_inf, uint64_t hi) {
    char a[24], z[24], t[48];
    int la = snprintf(a, sizeof a, "%llu", (unsigned long long)lo);
    int lz = hi_inf ? la : snprintf(z, sizeof z, "%llu", (unsigned long long)hi);
    // The lengths strictly between la and lz hold every number of their
    // length: one alternative, [1-9][0-9]{la,lz-2}.
    if (lz - la >= 2) {
        if (lz - la == 2 && la == 1) snprintf(t, sizeof t, "%s[1-9][0-9]", sign);
        else if (lz - la == 2) snprintf(t, sizeof t, "%s[1-9][0-9]{%d}", sign, la);
        else snprintf(t, sizeof t, "%s[1-9][0-9]{%d,%d}", sign, la, lz - 2);
        if (b->alts++) put(b, "|");
        put(b, t);
    }
    for (int L = la; L <= lz; L = L == la && lz - la >= 2 ? lz : L + 1) {
        char from[24], to[24];
        if (L == la) memcpy(from, a, (size_t)L + 1);
        else memset(from, '0', (size_t)L), from[0] = '1', from[L] = 0;
        if (L == lz && !hi_inf) memcpy(to, z, (size_t)L + 1);
        else memset(to, '9', (size_t)L), to[L] = 0;
        span(b, sign, from, to, L);
    }
    if (hi_inf) {
        snprintf(t, sizeof t, "%s[1-9][0-9]{%d,}", sign, la);
        if (b->alts++) put(b, "|");
        put(b, t);
    }
}

int rx_int_range(int has_lo, int64_t lo, int has_hi, int64_t hi, char *buf, size_t cap) {
    if (has_lo && has_hi && lo > hi) return -1;
    sbuf b = {buf, cap, 0, 0};
    put(&b, "(");
    if (!has_lo || lo < 0) {
        uint64_t mlo = has_hi && hi < 0 ? (uint64_t)0 - (uint64_t)hi : 1;
        magnitudes(&b, "-", mlo, !has_lo, has_lo ? (uint64_t)0 - (uint64_t)lo : 0);
    }
    if (!has_hi || hi >= 0) magnitudes(&b, "", has_lo && lo > 0 ? (uint64_t)lo : 0, !has_hi, has_hi ? (uint64_t)hi : 0);
    put(&b, ")");
    if (b.n >= cap) return -1;
    buf[b.n] = 0;
    return 0;
}
