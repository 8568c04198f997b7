// tokenizer: byte-level BPE from tokenizer.json. See tokenizer.h for the
// pipeline. The shared types and helpers (UTF-8, the GPT-2 byte alphabet,
// hash tables) are in tokenizer_int.h, loading in tokenizer_load.c; this
// file encodes and decodes.
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
#include "tokenizer_int.h"

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

const char *tok_token_bytes(const tok *t, int32_t id, size_t *len) {
    if (!id_shown(t, id, 0)) return NULL;
    *len = t->raw_len[id];
    return t->raws + t->raw_off[id];
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
