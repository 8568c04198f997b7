// tokenizer_int: what tokenizer.c (encoding, decoding) and tokenizer_load.c
// (tokenizer.json and tokenizer_config.json into a tok) share: the struct
// behind the opaque tok, growable buffers, the UTF-8 helpers, the GPT-2
// byte alphabet and the hash tables. Private to those two files.
#ifndef TESSERA_TOKENIZER_INT_H
#define TESSERA_TOKENIZER_INT_H

#include "tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <cjson/cJSON.h>
#include <pcre2.h>
#include <utf8proc.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"
#include "util.h"

// Ids above this are refused: per-id tables are sized by the highest id.
#define TOK_MAX_ID (1 << 26)

// ---------------------------------------------------------------------------
// Growable buffers. Functions return -1 on out of memory.

typedef struct {
    char *p;
    size_t n, cap;
} sbuf;

typedef struct {
    int32_t *v;
    size_t n, cap;
} ivec;

static inline int grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return -1;
    *p = q;
    *cap = c;
    return 0;
}

static inline int sb_put(sbuf *b, const void *d, size_t n) {
    // +1 so that callers can always NUL-terminate in place.
    if (grow((void **)&b->p, &b->cap, b->n + n + 1, 1)) return -1;
    if (n) memcpy(b->p + b->n, d, n);
    b->n += n;
    return 0;
}

static inline int iv_push(ivec *a, int32_t x) {
    if (grow((void **)&a->v, &a->cap, a->n + 1, sizeof *a->v)) return -1;
    a->v[a->n++] = x;
    return 0;
}

// ---------------------------------------------------------------------------
// UTF-8 repair (the decoder is core/utf8.c's, the WHATWG one).

static const char FFFD[] = "\xEF\xBF\xBD";

// Appends s[0..n) to out with every ill-formed sequence replaced by U+FFFD.
// With keep_tail, a well-formed but incomplete last character is left out
// (the caller keeps it for later). Returns the number of bytes consumed, or
// (size_t)-1 on out of memory.
static inline size_t utf8_repair(const char *s, size_t n, sbuf *out, bool keep_tail) {
    const uint8_t *u = (const uint8_t *)s;
    size_t i = 0, run = 0, adv;  // run: start of the pending valid stretch
    while (i < n) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        int32_t cp = utf8_decode(u + i, n - i, &adv);
        if (cp >= 0) {
            i += adv;
            continue;
        }
        if (sb_put(out, s + run, i - run)) return (size_t)-1;
        if (cp == UTF8_TRUNCATED && keep_tail) return i;
        if (sb_put(out, FFFD, 3)) return (size_t)-1;
        i += adv;
        run = i;
    }
    if (sb_put(out, s + run, n - run)) return (size_t)-1;
    return n;
}

// JS's \s, and what String.prototype.trim removes: ECMAScript WhiteSpace and
// LineTerminator. It differs from Unicode White_Space (which PCRE2's \s and
// Oniguruma's \s, hence HF Rust, follow): U+FEFF is in, U+0085 is out.
static inline bool js_is_space(int32_t c) {
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000 || c == 0xFEFF;
}
#define JS_SPACE_CLASS \
    "\\t\\n\\x{0B}\\f\\r \\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}\\x{FEFF}"

// ---------------------------------------------------------------------------
// The GPT-2 byte alphabet: each byte is shown as one printable character so
// that BPE tokens are strings without spaces or control characters. Bytes
// that are printable Latin-1 map to themselves; the other 68 map, in order,
// to U+0100 upwards. All targets are below U+0144.

#define BYTE_CP_LIMIT 0x144

static inline void byte_alphabet(int32_t to_cp[256], int16_t to_byte[BYTE_CP_LIMIT]) {
    int32_t next = 256;
    for (int i = 0; i < BYTE_CP_LIMIT; i++) to_byte[i] = -1;
    for (int b = 0; b < 256; b++) {
        bool keep = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        to_cp[b] = keep ? b : next++;
        to_byte[to_cp[b]] = (int16_t)b;
    }
}

// ---------------------------------------------------------------------------
// The tokenizer.

typedef struct merge_slot {
    uint64_t key;  // left id << 32 | right id; EMPTY_KEY when free
    uint32_t rank;
    int32_t id;  // the merged token
} merge_slot;
#define EMPTY_KEY UINT64_MAX

typedef struct added_tok {
    const char *s;  // content (points into tok->strs)
    size_t len;
    int32_t id;
    int order;  // position in added_tokens
    bool lstrip, rstrip;
} added_tok;

enum { F_USED = 1, F_SPECIAL = 2 };

// One pre-tokenizer step: a Split regex (Isolated: the matches and the text
// between them are all kept), or the final ByteLevel step, which may prefix
// a space and may split with the GPT-2 regex (keeping matches only).
typedef struct pre_step {
    pcre2_code *re;  // NULL: no splitting
    bool byte_level, add_prefix_space;
} pre_step;

struct tok {
    int32_t n_ids;  // highest id + 1
    uint8_t *flags;
    uint32_t *str_off;  // token string as in the file, NUL-terminated, in strs
    uint32_t *raw_off, *raw_len;  // bytes the id decodes to, in raws
    char *strs, *raws;

    int32_t *str_tab;  // open addressing, string -> id, -1 empty
    size_t str_mask;
    merge_slot *merge_tab;
    size_t merge_mask;
    int32_t byte_id[256];  // id of each single-byte token
    int32_t to_cp[256];

    added_tok *added;  // sorted by first byte, then longest first
    int n_added;
    int added_first[257];  // bucket starts by first byte

    bool nfc, ignore_merges;
    pre_step *pre;
    int n_pre;

    int32_t bos, eos;
    ivec prefix, suffix;  // what TOK_ADD_SPECIAL adds
};

static inline uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;  // FNV-1a
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

static inline size_t table_size(size_t n) {
    size_t c = 64;
    while (c < n + n / 2 + 1) c *= 2;  // load factor at most 2/3
    return c;
}

static inline int32_t str_lookup(const tok *t, const char *s, size_t n) {
    for (size_t i = hash_bytes(s, n) & t->str_mask;; i = (i + 1) & t->str_mask) {
        int32_t id = t->str_tab[i];
        if (id < 0) return -1;
        const char *k = t->strs + t->str_off[id];
        if (strncmp(k, s, n) == 0 && k[n] == '\0') return id;
    }
}

// Points string s (already the string of id) at id. A later entry with the
// same string wins, as when JS fills a Map.
static inline void str_insert(tok *t, int32_t id) {
    const char *s = t->strs + t->str_off[id];
    size_t n = strlen(s);
    size_t i = hash_bytes(s, n) & t->str_mask;
    for (; t->str_tab[i] >= 0; i = (i + 1) & t->str_mask)
        if (strcmp(t->strs + t->str_off[t->str_tab[i]], s) == 0) break;
    t->str_tab[i] = id;
}

static inline const merge_slot *merge_lookup(const tok *t, int32_t a, int32_t b) {
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    for (size_t i = util_splitmix64(key) & t->merge_mask;; i = (i + 1) & t->merge_mask) {
        const merge_slot *m = &t->merge_tab[i];
        if (m->key == key) return m;
        if (m->key == EMPTY_KEY) return NULL;
    }
}

// A pair listed twice keeps its last rank, as JS's Map and Rust's HashMap do.
static inline void merge_insert(tok *t, int32_t a, int32_t b, uint32_t rank, int32_t id) {
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    size_t i = util_splitmix64(key) & t->merge_mask;
    while (t->merge_tab[i].key != EMPTY_KEY && t->merge_tab[i].key != key) i = (i + 1) & t->merge_mask;
    t->merge_tab[i] = (merge_slot){key, rank, id};
}


#endif
