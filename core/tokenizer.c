// tokenizer: byte-level BPE from tokenizer.json. See tokenizer.h for the
// pipeline; this file follows it top to bottom: UTF-8 helpers, the GPT-2
// byte alphabet, hash tables, loading, encoding, decoding.
//
// The reference is transformers.js (npm @lenml/tokenizers 3.7.2), which the
// tests run side by side. Where it and the HF Rust tokenizers differ, we
// follow the JS oracle and say what Rust would do (translate_regex,
// load_vocab, js_is_space).
//
// Unicode versions: PCRE2 10.42 (\p{L}, \p{N}) and utf8proc 2.8 (NFC) know
// Unicode 15.0; Node 20's ICU knows 17.0. Letters, digits and compositions
// assigned after 15.0 (CJK Extension I, Tulu-Tigalari, Kirat Rai, ...) are
// therefore unassigned to us and may tokenize differently from the oracle.
// HF Rust has the same kind of gap with its own Oniguruma tables.
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

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return -1;
    *p = q;
    *cap = c;
    return 0;
}

static int sb_put(sbuf *b, const void *d, size_t n) {
    // +1 so that callers can always NUL-terminate in place.
    if (grow((void **)&b->p, &b->cap, b->n + n + 1, 1)) return -1;
    if (n) memcpy(b->p + b->n, d, n);
    b->n += n;
    return 0;
}

static int iv_push(ivec *a, int32_t x) {
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
static size_t utf8_repair(const char *s, size_t n, sbuf *out, bool keep_tail) {
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
static bool js_is_space(int32_t c) {
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

static void byte_alphabet(int32_t to_cp[256], int16_t to_byte[BYTE_CP_LIMIT]) {
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

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;  // FNV-1a
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

static size_t table_size(size_t n) {
    size_t c = 64;
    while (c < n + n / 2 + 1) c *= 2;  // load factor at most 2/3
    return c;
}

static int32_t str_lookup(const tok *t, const char *s, size_t n) {
    for (size_t i = hash_bytes(s, n) & t->str_mask;; i = (i + 1) & t->str_mask) {
        int32_t id = t->str_tab[i];
        if (id < 0) return -1;
        const char *k = t->strs + t->str_off[id];
        if (strncmp(k, s, n) == 0 && k[n] == '\0') return id;
    }
}

// Points string s (already the string of id) at id. A later entry with the
// same string wins, as when JS fills a Map.
static void str_insert(tok *t, int32_t id) {
    const char *s = t->strs + t->str_off[id];
    size_t n = strlen(s);
    size_t i = hash_bytes(s, n) & t->str_mask;
    for (; t->str_tab[i] >= 0; i = (i + 1) & t->str_mask)
        if (strcmp(t->strs + t->str_off[t->str_tab[i]], s) == 0) break;
    t->str_tab[i] = id;
}

static const merge_slot *merge_lookup(const tok *t, int32_t a, int32_t b) {
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    for (size_t i = util_splitmix64(key) & t->merge_mask;; i = (i + 1) & t->merge_mask) {
        const merge_slot *m = &t->merge_tab[i];
        if (m->key == key) return m;
        if (m->key == EMPTY_KEY) return NULL;
    }
}

// A pair listed twice keeps its last rank, as JS's Map and Rust's HashMap do.
static void merge_insert(tok *t, int32_t a, int32_t b, uint32_t rank, int32_t id) {
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    size_t i = util_splitmix64(key) & t->merge_mask;
    while (t->merge_tab[i].key != EMPTY_KEY && t->merge_tab[i].key != key) i = (i + 1) & t->merge_mask;
    t->merge_tab[i] = (merge_slot){key, rank, id};
}

void tok_free(tok *t) {
    if (!t) return;
    free(t->flags);
    free(t->str_off);
    free(t->raw_off);
    free(t->raw_len);
    free(t->strs);
    free(t->raws);
    free(t->str_tab);
    free(t->merge_tab);
    free(t->added);
    for (int i = 0; i < t->n_pre; i++) pcre2_code_free(t->pre[i].re);
    free(t->pre);
    free(t->prefix.v);
    free(t->suffix.v);
    free(t);
}

// ---------------------------------------------------------------------------
// Loading. Each loader takes the file name for its messages.

typedef struct load {
    tok *t;
    const char *path;  // tokenizer.json, for messages
    err_t *err;
    int16_t to_byte[BYTE_CP_LIMIT];  // the byte alphabet, backwards
} load;

static int oom(load *L) { return err_set(L->err, "%s: out of memory", L->path); }

static const char *json_type(const cJSON *o) {
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(o, "type");
    return cJSON_IsString(ty) ? ty->valuestring : "";
}

static int json_id(const cJSON *v, int32_t *id) {
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble >= TOK_MAX_ID ||
        v->valuedouble != (double)(int32_t)v->valuedouble)
        return -1;
    *id = (int32_t)v->valuedouble;
    return 0;
}

// First pass over vocab and added_tokens: the highest id, so that the per-id
// tables can be sized once.
static int scan_ids(load *L, const cJSON *vocab, const cJSON *added) {
    int32_t max = -1, id;
    const cJSON *v;
    cJSON_ArrayForEach(v, vocab) {
        if (json_id(v, &id))
            return err_set(L->err, "%s: model.vocab['%.80s'] is not an id in [0, %d)", L->path,
                           v->string, TOK_MAX_ID);
        if (id > max) max = id;
    }
    int i = 0;
    cJSON_ArrayForEach(v, added) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(v, "content");
        if (json_id(cJSON_GetObjectItemCaseSensitive(v, "id"), &id) || !cJSON_IsString(c) ||
            !c->valuestring[0])
            return err_set(L->err, "%s: added_tokens[%d] needs a non-empty content and an id",
                           L->path, i);
        if (id > max) max = id;
        i++;
    }
    if (max < 255) return err_set(L->err, "%s: model.vocab has fewer than 256 tokens", L->path);
    tok *t = L->t;
    t->n_ids = max + 1;
    t->flags = calloc((size_t)t->n_ids, 1);
    t->str_off = calloc((size_t)t->n_ids, sizeof *t->str_off);
    t->raw_off = calloc((size_t)t->n_ids, sizeof *t->raw_off);
    t->raw_len = calloc((size_t)t->n_ids, sizeof *t->raw_len);
    t->str_mask = table_size((size_t)t->n_ids + (size_t)i) - 1;
    t->str_tab = malloc((t->str_mask + 1) * sizeof *t->str_tab);
    if (!t->flags || !t->str_off || !t->raw_off || !t->raw_len || !t->str_tab) return oom(L);
    memset(t->str_tab, 0xFF, (t->str_mask + 1) * sizeof *t->str_tab);
    return 0;
}

// True if every character of s is in the byte alphabet.
static bool in_alphabet(const load *L, const char *s, size_t n) {
    size_t adv;
    for (size_t i = 0; i < n; i += adv) {
        int32_t cp = utf8_decode((const uint8_t *)s + i, n - i, &adv);
        if (cp < 0 || cp >= BYTE_CP_LIMIT || L->to_byte[cp] < 0) return false;
    }
    return true;
}

// Records id's string and the bytes it decodes to: a vocab token is written
// in the byte alphabet and maps back char by char; an added token's content
// is its own bytes. A vocab token with a char outside the alphabet (none in
// real byte-level vocabs) decodes to its own UTF-8, as in HF Rust's
// ByteLevel decoder (JS would write a 0 byte for that char).
static int set_token(load *L, sbuf *strs, sbuf *raws, int32_t id, const char *s, bool byte_level) {
    tok *t = L->t;
    size_t n = strlen(s);
    if (strs->n + n + 1 > UINT32_MAX || raws->n + n > UINT32_MAX)
        return err_set(L->err, "%s: token strings exceed 4 GB", L->path);
    t->str_off[id] = (uint32_t)strs->n;
    t->raw_off[id] = (uint32_t)raws->n;
    if (sb_put(strs, s, n + 1)) return oom(L);
    if (!byte_level || !in_alphabet(L, s, n)) {
        if (sb_put(raws, s, n)) return oom(L);
    } else {
        size_t adv;
        for (size_t i = 0; i < n; i += adv) {
            char b = (char)L->to_byte[utf8_decode((const uint8_t *)s + i, n - i, &adv)];
            if (sb_put(raws, &b, 1)) return oom(L);
        }
    }
    t->raw_len[id] = (uint32_t)(raws->n - t->raw_off[id]);
    t->flags[id] = F_USED;
    return 0;
}

static int load_vocab(load *L, const cJSON *vocab, const cJSON *added, sbuf *strs, sbuf *raws) {
    tok *t = L->t;
    const cJSON *v;
    int32_t id = 0;
    cJSON_ArrayForEach(v, vocab) {
        json_id(v, &id);
        if (set_token(L, strs, raws, id, v->string, true)) return -1;
    }
    int n = cJSON_GetArraySize(added);
    t->added = calloc((size_t)n + 1, sizeof *t->added);
    if (!t->added) return oom(L);
    cJSON_ArrayForEach(v, added) {
        json_id(cJSON_GetObjectItemCaseSensitive(v, "id"), &id);
        const char *c = cJSON_GetObjectItemCaseSensitive(v, "content")->valuestring;
        if (set_token(L, strs, raws, id, c, false)) return -1;
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(v, "special"))) t->flags[id] |= F_SPECIAL;
        // single_word is ignored, as transformers.js ignores it (HF Rust would
        // only match such a token between word boundaries). normalized is
        // ignored too: added tokens are matched in the raw text, as in JS; HF
        // Rust matches normalized=true tokens after normalization, which
        // gives the same result for NFC and ASCII tokens.
        t->added[t->n_added] = (added_tok){
            .id = id,
            .order = t->n_added, // its place in the file
            .lstrip = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(v, "lstrip")),
            .rstrip = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(v, "rstrip")),
        };
        t->n_added++;
    }
    return 0;
}

// The string map is filled once the arena stops moving: vocab first, then
// added tokens, so that an added token's content wins over a vocab entry of
// the same string (JS sets them into the same Map in that order).
static void index_strings(tok *t, const cJSON *vocab) {
    const cJSON *v;
    int32_t id = 0;
    cJSON_ArrayForEach(v, vocab) {
        json_id(v, &id);
        str_insert(t, id);
    }
    for (int i = 0; i < t->n_added; i++) {
        added_tok *a = &t->added[i];
        a->s = t->strs + t->str_off[a->id];
        a->len = strlen(a->s);
        str_insert(t, a->id);
    }
}

static int cmp_added(const void *pa, const void *pb) {
    const added_tok *a = pa, *b = pb;
    if ((uint8_t)a->s[0] != (uint8_t)b->s[0]) return (uint8_t)a->s[0] - (uint8_t)b->s[0];
    if (a->len != b->len) return a->len > b->len ? -1 : 1;
    return b->order - a->order;  // the same content twice: the last one wins, as in JS's Map
}

// Buckets the added tokens by first byte, longest first, so that the first
// hit at a position is the longest match (the JS trie keeps the longest).
static void index_added(tok *t) {
    qsort(t->added, (size_t)t->n_added, sizeof *t->added, cmp_added);
    int j = 0;
    for (int b = 0; b < 256; b++) {
        t->added_first[b] = j;
        while (j < t->n_added && (uint8_t)t->added[j].s[0] == b) j++;
    }
    t->added_first[256] = t->n_added;
}

static int load_merges(load *L, const cJSON *merges) {
    tok *t = L->t;
    size_t n = (size_t)cJSON_GetArraySize(merges);
    t->merge_mask = table_size(n) - 1;
    t->merge_tab = malloc((t->merge_mask + 1) * sizeof *t->merge_tab);
    if (!t->merge_tab) return oom(L);
    for (size_t i = 0; i <= t->merge_mask; i++) t->merge_tab[i].key = EMPTY_KEY;
    sbuf both = {0};
    const cJSON *m;
    uint32_t rank = 0;
    int rc = 0;
    // Tokenizers >= 0.20 write a merge as ["a", "b"]; older files as "a b".
    // Byte-level tokens never contain a space, so the old form is unambiguous.
    cJSON_ArrayForEach(m, merges) {
        const char *a = NULL, *b = NULL;
        size_t na = 0, nb = 0;
        if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 && cJSON_IsString(m->child) &&
            cJSON_IsString(m->child->next)) {
            a = m->child->valuestring, b = m->child->next->valuestring;
            na = strlen(a), nb = strlen(b);
        } else if (cJSON_IsString(m)) {
            const char *sp = strchr(m->valuestring, ' ');
            if (sp && !strchr(sp + 1, ' ')) {
                a = m->valuestring, na = (size_t)(sp - a);
                b = sp + 1, nb = strlen(b);
            }
        }
        if (!a) {
            rc = err_set(L->err, "%s: model.merges[%u] is neither \"a b\" nor [\"a\", \"b\"]", L->path, rank);
            break;
        }
        both.n = 0;
        if (sb_put(&both, a, na) || sb_put(&both, b, nb)) {
            rc = oom(L);
            break;
        }
        int32_t ia = str_lookup(t, a, na), ib = str_lookup(t, b, nb), ic = str_lookup(t, both.p, both.n);
        if (ia < 0 || ib < 0 || ic < 0) {
            rc = err_set(L->err, "%s: model.merges[%u] ('%.*s', '%.*s'): %s not in the vocab", L->path,
                         rank, (int)na, a, (int)nb, b, ia < 0 ? "left" : ib < 0 ? "right" : "merged token");
            break;
        }
        merge_insert(t, ia, ib, rank++, ic);
    }
    free(both.p);
    return rc;
}

static int load_model(load *L, const cJSON *model, const cJSON *added) {
    tok *t = L->t;
    if (!cJSON_IsObject(model)) return err_set(L->err, "%s: no model object", L->path);
    if (strcmp(json_type(model), "BPE") != 0)
        return err_set(L->err, "%s: model.type '%s' unsupported (only BPE)", L->path, json_type(model));
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(model, "byte_fallback")))
        return err_set(L->err, "%s: model.byte_fallback unsupported (only byte-level BPE)", L->path);
    const char *strs_opt[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        const cJSON *o = cJSON_GetObjectItemCaseSensitive(model, strs_opt[i]);
        if (cJSON_IsString(o) && o->valuestring[0])
            return err_set(L->err, "%s: model.%s '%s' unsupported", L->path, strs_opt[i], o->valuestring);
    }
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (cJSON_IsNumber(dropout) && dropout->valuedouble > 0)
        return err_set(L->err, "%s: model.dropout unsupported for inference", L->path);
    t->ignore_merges = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(model, "ignore_merges"));

    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (!cJSON_IsObject(vocab)) return err_set(L->err, "%s: model.vocab is not an object", L->path);
    if (!cJSON_IsArray(merges)) return err_set(L->err, "%s: model.merges is not an array", L->path);
    if (added && !cJSON_IsArray(added)) return err_set(L->err, "%s: added_tokens is not an array", L->path);

    byte_alphabet(t->to_cp, L->to_byte);
    sbuf strs = {0}, raws = {0};
    int rc = scan_ids(L, vocab, added);
    if (!rc) rc = load_vocab(L, vocab, added, &strs, &raws);
    t->strs = strs.p;
    t->raws = raws.p;
    if (rc) return -1;
    index_strings(t, vocab);
    index_added(t);

    // Every byte must be a token: BPE starts from single bytes.
    for (int b = 0; b < 256; b++) {
        char s[4];
        size_t n = utf8_encode(s, t->to_cp[b]);
        t->byte_id[b] = str_lookup(t, s, n);
        if (t->byte_id[b] < 0)
            return err_set(L->err, "%s: model.vocab lacks the byte-level token for byte 0x%02X", L->path, b);
    }
    return load_merges(L, merges);
}

static int load_normalizer(load *L, const cJSON *norm) {
    if (!norm || cJSON_IsNull(norm)) return 0;
    const char *ty = json_type(norm);
    if (strcmp(ty, "NFC") == 0) {
        L->t->nfc = true;
        return 0;
    }
    if (strcmp(ty, "Sequence") == 0) {
        const cJSON *n;
        cJSON_ArrayForEach(n, cJSON_GetObjectItemCaseSensitive(norm, "normalizers")) {
            if (load_normalizer(L, n)) return -1;
        }
        return 0;
    }
    return err_set(L->err, "%s: normalizer.type '%s' unsupported (only NFC or none)", L->path, ty);
}

// Rewrites a pattern from tokenizer.json (written for Rust's Oniguruma) into
// PCRE2 syntax that matches what transformers.js's JS RegExp (flags "gu")
// matches:
//  - "(?i:'s|'t|...)" becomes the explicit ASCII-case form JS substitutes for
//    it. Under (?i) PCRE2 and Oniguruma also fold U+017F (long s) to 's', so
//    HF Rust splits "'ſ" as a contraction; JS and we do not.
//  - \s and \S become JS's whitespace set (see js_is_space). HF Rust's \s
//    is Unicode White_Space: U+0085 is a space and U+FEFF is not, where JS
//    and we say the opposite. (PCRE2's own \s would also take U+180E.)
//  - \d and \w are ASCII in JS, as here; PCRE2_UCP and Oniguruma would make
//    them Unicode. (Neither real file uses them.)
static int translate_regex(load *L, const char *src, sbuf *out) {
    static const char ci_group[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)";
    static const char ci_js[] = "(?:'([sS]|[tT]|[rR][eE]|[vV][eE]|[mM]|[lL][lL]|[dD]))";
    bool in_class = false;
    if (sb_put(out, "", 0)) return oom(L);
    for (const char *p = src; *p;) {
        if (!in_class && strncmp(p, ci_group, sizeof ci_group - 1) == 0) {
            if (sb_put(out, ci_js, sizeof ci_js - 1)) return oom(L);
            p += sizeof ci_group - 1;
            continue;
        }
        const char *rep = NULL;
        char c = p[0];
        size_t take = 1;
        if (c == '\\' && p[1]) {
            take = 2;
            switch (p[1]) {
            case 's': rep = in_class ? JS_SPACE_CLASS : "[" JS_SPACE_CLASS "]"; break;
            case 'S': rep = in_class ? NULL : "[^" JS_SPACE_CLASS "]"; break;
            case 'd': rep = in_class ? "0-9" : "[0-9]"; break;
            case 'D': rep = in_class ? NULL : "[^0-9]"; break;
            case 'w': rep = in_class ? "A-Za-z0-9_" : "[A-Za-z0-9_]"; break;
            case 'W': rep = in_class ? NULL : "[^A-Za-z0-9_]"; break;
            default: break;
            }
            if (!rep && strchr("SDW", p[1]))
                return err_set(L->err, "%s: pre_tokenizer regex: \\%c inside [...] unsupported", L->path, p[1]);
        } else if (c == '[' && !in_class) {
            in_class = true;
            if (p[1] == '^') take = 2;
            if (p[take] == ']')
                return err_set(L->err, "%s: pre_tokenizer regex: '[]' or '[^]' unsupported", L->path);
        } else if (c == ']' && in_class) {
            in_class = false;
        }
        if (rep ? sb_put(out, rep, strlen(rep)) : sb_put(out, p, take)) return oom(L);
        p += take;
    }
    out->p[out->n] = '\0';
    return 0;
}

static int add_pre_step(load *L, const char *pattern, bool byte_level, bool prefix_space) {
    tok *t = L->t;
    pre_step st = {.byte_level = byte_level, .add_prefix_space = prefix_space};
    if (pattern) {
        sbuf re = {0};
        if (translate_regex(L, pattern, &re)) {
            free(re.p);
            return -1;
        }
        int code;
        PCRE2_SIZE at;
        st.re = pcre2_compile((PCRE2_SPTR)re.p, re.n, PCRE2_UTF | PCRE2_UCP, &code, &at, NULL);
        free(re.p);
        if (!st.re) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(code, msg, sizeof msg);
            return err_set(L->err, "%s: pre_tokenizer regex '%.200s': %s at offset %zu", L->path, pattern,
                           (char *)msg, (size_t)at);
        }
        pcre2_jit_compile(st.re, PCRE2_JIT_COMPLETE);  // the interpreter remains if JIT is unavailable
    }
    pre_step *p = realloc(t->pre, (size_t)(t->n_pre + 1) * sizeof *p);
    if (!p) {
        pcre2_code_free(st.re);
        return oom(L);
    }
    t->pre = p;
    t->pre[t->n_pre++] = st;
    return 0;
}

// Supported: any number of Split (Regex, Isolated, not inverted), then one
// ByteLevel, possibly inside a Sequence; or a ByteLevel alone.
static int load_pre_tokenizer(load *L, const cJSON *pre, int depth) {
    tok *t = L->t;
    const char *ty = json_type(pre);
    if (t->n_pre > 0 && t->pre[t->n_pre - 1].byte_level)
        return err_set(L->err, "%s: pre_tokenizer: '%s' after ByteLevel unsupported", L->path, ty);
    if (strcmp(ty, "Sequence") == 0 && depth < 4) {
        const cJSON *p;
        cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(pre, "pretokenizers")) {
            if (load_pre_tokenizer(L, p, depth + 1)) return -1;
        }
        return 0;
    }
    if (strcmp(ty, "Split") == 0) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(pre, "pattern");
        const cJSON *re = cJSON_GetObjectItemCaseSensitive(pat, "Regex");
        const cJSON *beh = cJSON_GetObjectItemCaseSensitive(pre, "behavior");
        if (!cJSON_IsString(re))
            return err_set(L->err, "%s: pre_tokenizer Split: only pattern.Regex is supported", L->path);
        if (!cJSON_IsString(beh) || strcmp(beh->valuestring, "Isolated") != 0 ||
            cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(pre, "invert")))
            return err_set(L->err, "%s: pre_tokenizer Split: only behavior Isolated, invert false is supported",
                           L->path);
        return add_pre_step(L, re->valuestring, false, false);
    }
    if (strcmp(ty, "ByteLevel") == 0) {
        const cJSON *ur = cJSON_GetObjectItemCaseSensitive(pre, "use_regex");
        bool use_regex = !cJSON_IsFalse(ur);  // default true
        static const char gpt2[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
        return add_pre_step(L, use_regex ? gpt2 : NULL, true,
                            cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(pre, "add_prefix_space")));
    }
    return err_set(L->err, "%s: pre_tokenizer.type '%s' unsupported (only Split, ByteLevel, Sequence)",
                   L->path, ty);
}

// TemplateProcessing's "single" template: the special tokens before
// Sequence A go to prefix, those after it to suffix. Ids come from its
// special_tokens table, as in HF Rust (JS looks the name up in the vocab;
// real files agree).
static int load_template(load *L, const cJSON *pp) {
    tok *t = L->t;
    const cJSON *single = cJSON_GetObjectItemCaseSensitive(pp, "single");
    const cJSON *table = cJSON_GetObjectItemCaseSensitive(pp, "special_tokens");
    bool after = false;
    const cJSON *it;
    cJSON_ArrayForEach(it, single) {
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(it, "SpecialToken");
        if (cJSON_GetObjectItemCaseSensitive(it, "Sequence")) {
            after = true;
            continue;
        }
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(sp, "id");
        if (!cJSON_IsString(name))
            return err_set(L->err, "%s: post_processor.single: items must be Sequence or SpecialToken", L->path);
        const cJSON *ids = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(table, name->valuestring), "ids");
        ivec *dst = after ? &t->suffix : &t->prefix;
        if (cJSON_IsArray(ids)) {
            const cJSON *v;
            int32_t id = 0;
            cJSON_ArrayForEach(v, ids) {
                if (json_id(v, &id) || id >= t->n_ids)
                    return err_set(L->err, "%s: post_processor.special_tokens['%s'].ids: bad id", L->path,
                                   name->valuestring);
                if (iv_push(dst, id)) return oom(L);
            }
        } else {
            int32_t id = str_lookup(t, name->valuestring, strlen(name->valuestring));
            if (id < 0)
                return err_set(L->err, "%s: post_processor: special token '%s' not in the vocab", L->path,
                               name->valuestring);
            if (iv_push(dst, id)) return oom(L);
        }
    }
    return 0;
}

static int load_post_processor(load *L, const cJSON *pp, bool *templated) {
    if (!pp || cJSON_IsNull(pp)) return 0;
    const char *ty = json_type(pp);
    if (strcmp(ty, "ByteLevel") == 0) return 0;  // offsets only
    if (strcmp(ty, "TemplateProcessing") == 0) {
        *templated = true;
        return load_template(L, pp);
    }
    if (strcmp(ty, "Sequence") == 0) {
        const cJSON *p;
        cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(pp, "processors")) {
            if (load_post_processor(L, p, templated)) return -1;
        }
        return 0;
    }
    return err_set(L->err, "%s: post_processor.type '%s' unsupported (only ByteLevel, TemplateProcessing)",
                   L->path, ty);
}

static int load_tokenizer_json(load *L, const cJSON *root, bool *templated) {
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (load_model(L, cJSON_GetObjectItemCaseSensitive(root, "model"), added)) return -1;
    if (load_normalizer(L, cJSON_GetObjectItemCaseSensitive(root, "normalizer"))) return -1;
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    if (pre && !cJSON_IsNull(pre) && load_pre_tokenizer(L, pre, 0)) return -1;
    if (L->t->n_pre == 0 || !L->t->pre[L->t->n_pre - 1].byte_level)
        return err_set(L->err, "%s: pre_tokenizer must end with ByteLevel (byte-level BPE only)", L->path);
    const cJSON *dec = cJSON_GetObjectItemCaseSensitive(root, "decoder");
    if (strcmp(json_type(dec), "ByteLevel") != 0)
        return err_set(L->err, "%s: decoder.type '%s' unsupported (only ByteLevel)", L->path, json_type(dec));
    return load_post_processor(L, cJSON_GetObjectItemCaseSensitive(root, "post_processor"), templated);
}

// tokenizer_config.json names BOS/EOS as a string or as {"content": ...}.
static int32_t config_token(const tok *t, const cJSON *cfg, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (cJSON_IsObject(v)) v = cJSON_GetObjectItemCaseSensitive(v, "content");
    return cJSON_IsString(v) ? str_lookup(t, v->valuestring, strlen(v->valuestring)) : -1;
}

static int load_config(load *L, const char *path, bool templated) {
    tok *t = L->t;
    if (!util_is_file(path)) return 0;
    char *text = util_read_file(path, NULL, L->err);
    if (!text) return -1;
    cJSON *cfg = cJSON_Parse(text);
    free(text);
    if (!cJSON_IsObject(cfg)) {
        cJSON_Delete(cfg);
        return err_set(L->err, "%s: not a JSON object", path);
    }
    t->bos = config_token(t, cfg, "bos_token");
    t->eos = config_token(t, cfg, "eos_token");
    const cJSON *extra = cJSON_GetObjectItemCaseSensitive(cfg, "additional_special_tokens"), *v;
    cJSON_ArrayForEach(v, extra) {
        const char *s = cJSON_IsString(v) ? v->valuestring : NULL;
        if (cJSON_IsObject(v) && cJSON_IsString(cJSON_GetObjectItemCaseSensitive(v, "content")))
            s = cJSON_GetObjectItemCaseSensitive(v, "content")->valuestring;
        int32_t id = s ? str_lookup(t, s, strlen(s)) : -1;
        if (id >= 0) t->flags[id] |= F_SPECIAL;
    }
    // A template already says what add_special_tokens adds; the flags apply
    // only without one (as LlamaTokenizerFast rebuilds its template from them).
    int rc = 0;
    if (!templated) {
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cfg, "add_bos_token")) && t->bos >= 0)
            rc |= iv_push(&t->prefix, t->bos);
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cfg, "add_eos_token")) && t->eos >= 0)
            rc |= iv_push(&t->suffix, t->eos);
    }
    cJSON_Delete(cfg);
    return rc ? err_set(L->err, "%s: out of memory", path) : 0;
}

tok *tok_open(const char *path, err_t *err) {
    char *json_path, *cfg_path;
    if (util_is_dir(path)) {
        json_path = util_path_join(path, "tokenizer.json");
        cfg_path = util_path_join(path, "tokenizer_config.json");
    } else {
        const char *slash = strrchr(path, '/');
        char *dir = slash ? strndup(path, (size_t)(slash - path) + (slash == path)) : strdup(".");
        json_path = strdup(path);
        cfg_path = dir ? util_path_join(dir, "tokenizer_config.json") : NULL;
        free(dir);
    }
    tok *t = calloc(1, sizeof *t);
    if (!json_path || !cfg_path || !t) {
        err_set(err, "%s: out of memory", path);
        goto fail;
    }
    t->bos = t->eos = -1;
    char *text = util_read_file(json_path, NULL, err);
    if (!text) goto fail;
    cJSON *root = cJSON_Parse(text);
    if (!cJSON_IsObject(root)) {
        const char *at = cJSON_GetErrorPtr();
        err_set(err, "%s: invalid JSON near byte %ld", json_path,
                at && at >= text && at < text + strlen(text) ? (long)(at - text) : -1L);
        free(text);
        cJSON_Delete(root);
        goto fail;
    }
    free(text);
    load L = {.t = t, .path = json_path, .err = err};
    bool templated = false;
    int rc = load_tokenizer_json(&L, root, &templated);
    cJSON_Delete(root);
    if (rc || load_config(&L, cfg_path, templated)) goto fail;
    free(json_path);
    free(cfg_path);
    return t;
fail:
    free(json_path);
    free(cfg_path);
    tok_free(t);
    return NULL;
}

// ---------------------------------------------------------------------------
// Encoding. One enc per call holds the output and scratch space, so that
// concurrent calls share nothing writable.

typedef struct bpe_sym {
    int32_t id;  // -1 once merged into its left neighbour
    int32_t prev, next;
} bpe_sym;

typedef struct bpe_cand {
    uint32_t rank, pos;  // pos: index of the left symbol
    int32_t id;
} bpe_cand;

// A word cache for one call: long texts repeat their words, and a lookup
// is cheaper than BPE. Per call, so that a tok stays immutable and threads
// share nothing; only texts long enough to pay for it get one.
#define WC_SLOTS 4096
#define WC_MIN_TEXT 4096
#define WC_MAX_WORD 22
#define WC_MAX_IDS 6
typedef struct wc_slot {
    uint8_t len, n_ids;
    char word[WC_MAX_WORD];
    int32_t ids[WC_MAX_IDS];
} wc_slot;

typedef struct enc {
    const tok *t;
    wc_slot *cache;  // WC_SLOTS, or NULL
    ivec out;
    pcre2_match_data *md;
    bpe_sym *sym;
    size_t sym_cap;
    bpe_cand *heap;
    size_t heap_n, heap_cap;
    sbuf word, spaced;  // byte-alphabet form of a word; a piece with a prefix space
    err_t *err;
} enc;

static int enc_oom(enc *e) { return err_set(e->err, "tokenizer: out of memory"); }

static bool cand_less(const bpe_cand *a, const bpe_cand *b) {
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static int heap_push(enc *e, bpe_cand c) {
    if (grow((void **)&e->heap, &e->heap_cap, e->heap_n + 1, sizeof *e->heap)) return -1;
    size_t i = e->heap_n++;
    while (i > 0 && cand_less(&c, &e->heap[(i - 1) / 2])) {
        e->heap[i] = e->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    e->heap[i] = c;
    return 0;
}

static bpe_cand heap_pop(enc *e) {
    bpe_cand top = e->heap[0], last = e->heap[--e->heap_n];
    size_t i = 0, n = e->heap_n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && cand_less(&e->heap[c + 1], &e->heap[c])) c++;
        if (!cand_less(&e->heap[c], &last)) break;
        e->heap[i] = e->heap[c];
        i = c;
    }
    if (n) e->heap[i] = last;
    return top;
}

// Queues the merge of the symbol at pos with its right neighbour, if any.
static int bpe_queue(enc *e, int32_t pos) {
    int32_t nx = e->sym[pos].next;
    if (nx < 0) return 0;
    const merge_slot *m = merge_lookup(e->t, e->sym[pos].id, e->sym[nx].id);
    return m ? heap_push(e, (bpe_cand){m->rank, (uint32_t)pos, m->id}) : 0;
}

// BPE over one word: start from single bytes and repeatedly apply the
// lowest-ranked merge among adjacent pairs, leftmost first on ties. A heap
// of candidate merges keeps this O(n log n) for long words (a paragraph of
// Chinese is one \p{L}+ word); stale candidates are skipped when popped by
// checking that the pair still merges into the same token. Same order as
// HF Rust's Word::merge_all and transformers.js's priority queue.
static int bpe_word(enc *e, const uint8_t *s, size_t n) {
    if (n > INT32_MAX) return err_set(e->err, "tokenizer: word of %zu bytes too long", n);
    if (grow((void **)&e->sym, &e->sym_cap, n, sizeof *e->sym)) return enc_oom(e);
    bpe_sym *sym = e->sym;
    for (size_t i = 0; i < n; i++)
        sym[i] = (bpe_sym){e->t->byte_id[s[i]], (int32_t)i - 1, i + 1 < n ? (int32_t)i + 1 : -1};
    e->heap_n = 0;
    for (size_t i = 0; i + 1 < n; i++)
        if (bpe_queue(e, (int32_t)i)) return enc_oom(e);
    while (e->heap_n) {
        bpe_cand c = heap_pop(e);
        bpe_sym *l = &sym[c.pos];
        if (l->id < 0 || l->next < 0) continue;
        const merge_slot *m = merge_lookup(e->t, l->id, sym[l->next].id);
        if (!m || m->id != c.id) continue;
        int32_t gone = l->next;
        l->id = c.id;
        l->next = sym[gone].next;
        sym[gone].id = -1;
        if (l->next >= 0) sym[l->next].prev = (int32_t)c.pos;
        if ((l->prev >= 0 && bpe_queue(e, l->prev)) || bpe_queue(e, (int32_t)c.pos)) return enc_oom(e);
    }
    for (int32_t i = 0; i >= 0; i = sym[i].next)
        if (iv_push(&e->out, sym[i].id)) return enc_oom(e);
    return 0;
}

// One pre-token. With ignore_merges (Llama 3) a word that is a token as a
// whole is emitted as is, even where merges would reach something else.
static int encode_word(enc *e, const char *s, size_t n) {
    const tok *t = e->t;
    const uint8_t *u = (const uint8_t *)s;
    if (n == 0) return 0;
    if (t->ignore_merges) {
        e->word.n = 0;
        for (size_t i = 0; i < n; i++) {
            char c[4];
            if (sb_put(&e->word, c, utf8_encode(c, t->to_cp[u[i]]))) return enc_oom(e);
        }
        int32_t id = str_lookup(t, e->word.p, e->word.n);
        if (id >= 0) return iv_push(&e->out, id) ? enc_oom(e) : 0;
    }
    if (n == 1) return iv_push(&e->out, t->byte_id[u[0]]) ? enc_oom(e) : 0;
    wc_slot *c = e->cache && n <= WC_MAX_WORD ? &e->cache[hash_bytes(s, n) & (WC_SLOTS - 1)] : NULL;
    if (c && c->len == n && memcmp(c->word, s, n) == 0) {
        for (int i = 0; i < c->n_ids; i++)
            if (iv_push(&e->out, c->ids[i])) return enc_oom(e);
        return 0;
    }
    size_t first = e->out.n;
    if (bpe_word(e, u, n)) return -1;
    if (c && e->out.n - first <= WC_MAX_IDS) {
        c->len = (uint8_t)n;
        c->n_ids = (uint8_t)(e->out.n - first);
        memcpy(c->word, s, n);
        memcpy(c->ids, e->out.v + first, c->n_ids * sizeof *c->ids);
    }
    return 0;
}

static int regex_error(enc *e, int rc) {
    PCRE2_UCHAR msg[160];
    pcre2_get_error_message(rc, msg, sizeof msg);
    return err_set(e->err, "tokenizer: pre_tokenizer regex failed: %s", (char *)msg);
}

static int pre_tokenize(enc *e, const char *s, size_t n, int step);

// Splits s by the step's regex and hands each piece to the next step. Split
// keeps the text between matches as pieces of its own (Isolated); the
// ByteLevel regex keeps only matches (JS String.match), which with the GPT-2
// pattern cover everything anyway.
static int split_step(enc *e, const char *s, size_t n, int step) {
    const pre_step *st = &e->t->pre[step];
    size_t prev = 0, pos = 0;
    while (pos <= n) {
        int rc = pcre2_match(st->re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, e->md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) return regex_error(e, rc);
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(e->md);
        size_t ms = ov[0], me = ov[1];
        if (ms > prev && !st->byte_level && pre_tokenize(e, s + prev, ms - prev, step + 1)) return -1;
        if (me > ms && pre_tokenize(e, s + ms, me - ms, step + 1)) return -1;
        prev = me;
        if (me > ms) {
            pos = me;
        } else {  // an empty match: step over one character, as JS does with the u flag
            size_t adv = 1;
            if (ms < n) utf8_decode((const uint8_t *)s + ms, n - ms, &adv);
            pos = ms + adv;
        }
    }
    if (prev < n && !st->byte_level) return pre_tokenize(e, s + prev, n - prev, step + 1);
    return 0;
}

static int pre_tokenize(enc *e, const char *s, size_t n, int step) {
    const tok *t = e->t;
    if (step == t->n_pre) return encode_word(e, s, n);
    const pre_step *st = &t->pre[step];
    if (st->byte_level && st->add_prefix_space && (n == 0 || s[0] != ' ')) {
        // The copy outlives the recursion below, which never reaches here again.
        e->spaced.n = 0;
        if (sb_put(&e->spaced, " ", 1) || sb_put(&e->spaced, s, n)) return enc_oom(e);
        s = e->spaced.p, n = e->spaced.n;
    }
    if (!st->re) return pre_tokenize(e, s, n, step + 1);
    return split_step(e, s, n, step);
}

// NFC leaves text alone when no character could decompose, reorder or
// compose with the one before it (the NFC quick check, conservatively): a
// character is safe if it has combining class 0, no canonical decomposition,
// is not a mark (every second half of a canonical composition is a mark, or
// a Hangul vowel/trailing jamo). Characters below U+0300 are all safe, so
// most text never reaches utf8proc_map.
static bool nfc_safe(int32_t c) {
    if (c >= 0x1160 && c <= 0x11FF) return false;  // Hangul V and T jamo compose algorithmically
    const utf8proc_property_t *p = utf8proc_get_property(c);
    if (p->combining_class != 0) return false;
    if (p->category == UTF8PROC_CATEGORY_MN || p->category == UTF8PROC_CATEGORY_MC ||
        p->category == UTF8PROC_CATEGORY_ME)
        return false;
    return p->decomp_seqindex == UINT16_MAX || p->decomp_type != 0;  // none, or compatibility only
}

static bool nfc_trivial(const char *s, size_t n) {
    const uint8_t *u = (const uint8_t *)s;
    for (size_t i = 0; i < n;) {
        if (u[i] < 0xCC) {
            i += u[i] < 0x80 ? 1 : 2;  // ASCII, or a 2-byte sequence below U+0300
            continue;
        }
        size_t adv;
        if (!nfc_safe(utf8_decode(u + i, n - i, &adv))) return false;
        i += adv;
    }
    return true;
}

// A stretch of text between added tokens: normalize, then pre-tokenize.
static int encode_section(enc *e, const char *s, size_t n) {
    if (n == 0) return 0;
    if (!e->t->nfc || nfc_trivial(s, n)) return pre_tokenize(e, s, n, 0);
    utf8proc_uint8_t *norm = NULL;
    utf8proc_ssize_t m = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &norm,
                                      UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    if (m < 0) return err_set(e->err, "tokenizer: NFC failed: %s", utf8proc_errmsg(m));
    int rc = pre_tokenize(e, (const char *)norm, (size_t)m, 0);
    free(norm);
    return rc;
}

static const added_tok *match_added(const tok *t, const char *s, size_t n) {
    uint8_t b = (uint8_t)s[0];
    for (int i = t->added_first[b]; i < t->added_first[b + 1]; i++) {
        const added_tok *a = &t->added[i];
        if (a->len <= n && memcmp(a->s, s, a->len) == 0) return a;
    }
    return NULL;
}

// lstrip / rstrip of an added token eat the JS whitespace next to it (JS
// trimEnd / trimStart of the neighbouring section).
static size_t trim_start(const char *s, size_t n) {
    size_t i = 0, adv;
    while (i < n && js_is_space(utf8_decode((const uint8_t *)s + i, n - i, &adv))) i += adv;
    return i;
}

static size_t trim_end(const char *s, size_t n) {
    while (n > 0) {
        size_t k = n - 1, adv;
        while (k > 0 && ((uint8_t)s[k] & 0xC0) == 0x80) k--;
        if (!js_is_space(utf8_decode((const uint8_t *)s + k, n - k, &adv))) break;
        n = k;
    }
    return n;
}

// Cuts the added tokens out of the raw text (leftmost, longest), encoding
// the text between them.
static int encode_text(enc *e, const char *s, size_t n, bool parse_special) {
    const tok *t = e->t;
    if (!parse_special || t->n_added == 0) return encode_section(e, s, n);
    size_t start = 0, i = 0;
    bool strip_next = false;
    while (i < n) {
        const added_tok *a = match_added(t, s + i, n - i);
        if (!a) {
            i++;
            continue;
        }
        size_t skip = strip_next ? trim_start(s + start, i - start) : 0;
        size_t end = a->lstrip ? start + skip + trim_end(s + start + skip, i - start - skip) : i;
        if (encode_section(e, s + start + skip, end - start - skip)) return -1;
        if (iv_push(&e->out, a->id)) return enc_oom(e);
        i += a->len;
        start = i;
        strip_next = a->rstrip;
    }
    size_t skip = strip_next ? trim_start(s + start, n - start) : 0;
    return encode_section(e, s + start + skip, n - start - skip);
}

// Returns text itself if it is well-formed UTF-8, else a new copy (in *owned)
// with U+FFFD for each ill-formed sequence.
static const char *clean_utf8(const char *text, size_t len, size_t *out_len, char **owned) {
    *owned = NULL;
    *out_len = len;
    if (utf8_valid(text, len)) return text;
    sbuf b = {0};
    if (utf8_repair(text, len, &b, false) == (size_t)-1) {
        free(b.p);
        return NULL;
    }
    *owned = b.p;
    *out_len = b.n;
    return b.p;
}

static int append_ids(enc *e, const ivec *v) {
    for (size_t i = 0; i < v->n; i++)
        if (iv_push(&e->out, v->v[i])) return enc_oom(e);
    return 0;
}

int32_t *tok_encode_ex(const tok *t, const char *text, size_t len, int flags, size_t *n, err_t *err) {
    enc e = {.t = t, .err = err};
    if (!text) text = "";
    size_t clen;
    char *owned;
    const char *s = clean_utf8(text, len, &clen, &owned);
    e.md = pcre2_match_data_create(1, NULL);  // only the whole match is read
    if (clen >= WC_MIN_TEXT) e.cache = calloc(WC_SLOTS, sizeof *e.cache);  // NULL is fine: no cache
    // out is allocated up front so that an empty result is still non-NULL.
    int rc = 0;
    if (!s || !e.md || grow((void **)&e.out.v, &e.out.cap, 16, sizeof *e.out.v)) rc = enc_oom(&e);
    if (!rc && (flags & TOK_ADD_SPECIAL)) rc = append_ids(&e, &t->prefix);
    if (!rc) rc = encode_text(&e, s, clen, flags & TOK_PARSE_SPECIAL);
    if (!rc && (flags & TOK_ADD_SPECIAL)) rc = append_ids(&e, &t->suffix);
    free(owned);
    pcre2_match_data_free(e.md);
    free(e.sym);
    free(e.heap);
    free(e.word.p);
    free(e.spaced.p);
    free(e.cache);
    if (rc) {
        free(e.out.v);
        return NULL;
    }
    *n = e.out.n;
    return e.out.v;
}

int32_t *tok_encode(const tok *t, const char *text, size_t len, int parse_special, size_t *n, err_t *err) {
    return tok_encode_ex(t, text, len, parse_special ? TOK_PARSE_SPECIAL : 0, n, err);
}

// ---------------------------------------------------------------------------
// Decoding.

static bool id_shown(const tok *t, int32_t id, int skip_special) {
    if (id < 0 || id >= t->n_ids || !(t->flags[id] & F_USED)) return false;
    return !(skip_special && (t->flags[id] & F_SPECIAL));
}

static int put_id(const tok *t, sbuf *b, int32_t id) {
    return sb_put(b, t->raws + t->raw_off[id], t->raw_len[id]);
}

char *tok_decode(const tok *t, const int32_t *ids, size_t n, int skip_special, size_t *len) {
    sbuf raw = {0}, out = {0};
    int rc = sb_put(&raw, "", 0);
    for (size_t i = 0; i < n && !rc; i++)
        if (id_shown(t, ids[i], skip_special)) rc = put_id(t, &raw, ids[i]);
    if (!rc && !utf8_valid(raw.p, raw.n)) {
        rc = utf8_repair(raw.p, raw.n, &out, false) == (size_t)-1 || sb_put(&out, "", 0);
        free(raw.p);
        raw = out;
    }
    if (rc) {
        free(raw.p);
        return NULL;
    }
    raw.p[raw.n] = '\0';
    if (len) *len = raw.n;
    return raw.p;
}

struct tok_stream {
    const tok *t;
    int skip_special;
    sbuf pend;  // bytes of an incomplete character, held back
    sbuf out;   // the chunk last returned
};

tok_stream *tok_stream_new(const tok *t, int skip_special) {
    tok_stream *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->t = t;
    s->skip_special = skip_special;
    return s;
}

// Emits the repaired pending bytes, keeping back a character still open at
// the end unless flushing. Cuts fall only between characters, where the
// WHATWG decoder is in its start state, so the chunks concatenate to what
// one tok_decode of all the bytes gives.
static const char *stream_emit(tok_stream *s, bool flush, size_t *len) {
    s->out.n = 0;
    size_t used = utf8_repair(s->pend.p ? s->pend.p : "", s->pend.n, &s->out, !flush);
    if (used == (size_t)-1 || sb_put(&s->out, "", 0)) return NULL;
    if (used < s->pend.n) memmove(s->pend.p, s->pend.p + used, s->pend.n - used);
    s->pend.n -= used;
    s->out.p[s->out.n] = '\0';
    if (len) *len = s->out.n;
    return s->out.p;
}

const char *tok_stream_push(tok_stream *s, int32_t id, size_t *len) {
    if (id_shown(s->t, id, s->skip_special) && put_id(s->t, &s->pend, id)) return NULL;
    return stream_emit(s, false, len);
}

const char *tok_stream_flush(tok_stream *s, size_t *len) { return stream_emit(s, true, len); }

void tok_stream_free(tok_stream *s) {
    if (!s) return;
    free(s->pend.p);
    free(s->out.p);
    free(s);
}

// ---------------------------------------------------------------------------
// Vocabulary queries.

int tok_vocab_size(const tok *t) { return t->n_ids; }

int32_t tok_token_id(const tok *t, const char *token) { return str_lookup(t, token, strlen(token)); }

const char *tok_token_str(const tok *t, int32_t id) {
    if (id < 0 || id >= t->n_ids || !(t->flags[id] & F_USED)) return NULL;
    return t->strs + t->str_off[id];
}

int tok_is_special(const tok *t, int32_t id) {
    return id >= 0 && id < t->n_ids && (t->flags[id] & F_SPECIAL) ? 1 : 0;
}

int32_t tok_added_at(const tok *t, const char *s, size_t n, size_t *len) {
    const added_tok *a = n ? match_added(t, s, n) : NULL;
    *len = a ? a->len : 0;
    return a ? a->id : -1;
}

int32_t tok_bos_id(const tok *t) { return t->bos; }
int32_t tok_eos_id(const tok *t) { return t->eos; }

int tok_add_bos(const tok *t) { return t->prefix.n > 0 && (t->bos < 0 || t->prefix.v[0] == t->bos); }
