// tokenizer_load: tok_open, tokenizer.json (vocab, merges, normalizer,
// pre-tokenizer, post-processor) and tokenizer_config.json into a tok.
// tokenizer.c says what the reference is and where we follow it.
#include "tokenizer_int.h"

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
