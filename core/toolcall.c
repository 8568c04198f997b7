// toolcall: the incremental tool-call parser (see toolcall.h for the
// formats and the decisions). One state machine over a byte buffer: each
// state's handler looks at the unconsumed bytes and either consumes some,
// moves to another state, or asks for more; bytes that might still be a
// tag stay in the buffer until decided.
#include "toolcall.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    S_START,  // HERMES: a leading <think>?
    S_THINK,  // inside <think>: reasoning until </think>
    S_POST,   // after </think> or </tool_call>: blanks dropped
    S_LSTART, // LLAMA3: blanks, <|python_tag|>, then '{' or content
    S_TEXT,   // content (HERMES: until <tool_call>)
    S_HEAD,   // a call's {"name": N, "arguments": being read
    S_ARGS,   // a begun call's arguments object, streamed
    S_OUTER,  // the '}' closing the call object
    S_HOLD,   // a call read whole, decided when its object closes
    S_CLOSE,  // HERMES: </tool_call>; LLAMA3: ';' or the end
    S_LNEXT,  // LLAMA3: after ';', the next '{'
};

enum { NEED = -1, FAIL = -2 }; // handler results besides bytes consumed
enum { NAME_MAX_LEN = 256 };

typedef struct {
    char *s;
    size_t n, cap;
} sbuf;

// The JSON scanner that finds where an object ends without parsing it:
// depth, strings, escapes and UTF-8 sequences, so a cut is never made
// inside a character or an escape.
typedef struct {
    int depth, in_str, esc, u8need;
} scan;

struct tc_parser {
    tc_format format;
    char **names;
    int n_names;
    uint64_t rng;
    tc_emit_fn emit;
    void *ud;
    int state, final, failed;
    int think_lead; // S_THINK: the newlines right after <think> are still dropped
    sbuf buf;  // bytes fed and not yet consumed
    sbuf hold; // the current call's raw text (tag and all) while undecided
    sbuf args; // the current call's arguments text so far
    size_t args_sent;
    size_t obj_at; // S_HOLD: where the call object starts in hold
    scan sc;
    int n_calls;
    char id[TC_ID_LEN + 1];
    char name[NAME_MAX_LEN + 1];
    char err[320];
};

static bool sb_add(sbuf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n + 1) cap *= 2;
        char *t = realloc(b->s, cap);
        if (!t) return false;
        b->s = t;
        b->cap = cap;
    }
    if (n) memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = '\0';
    return true;
}

static int fail(tc_parser *p, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err, sizeof p->err, fmt, ap);
    va_end(ap);
    p->failed = 1;
    return FAIL;
}

static void emit_text(tc_parser *p, tc_kind kind, const char *s, size_t n) {
    if (n == 0) return;
    tc_event ev = {.kind = kind, .index = p->n_calls, .text = s, .len = n};
    p->emit(p->ud, &ev);
}

static void emit_mark(tc_parser *p, tc_kind kind) {
    tc_event ev = {.kind = kind, .index = p->n_calls, .id = p->id, .name = p->name};
    p->emit(p->ud, &ev);
}

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// How many of s[0..n) can go out now: all but a trailing UTF-8 sequence
// that its lead byte says is still incomplete.
static size_t u8_cut(const char *s, size_t n) {
    for (size_t k = 1; k <= 3 && k <= n; k++) {
        unsigned char c = (unsigned char)s[n - k];
        if ((c & 0xC0) == 0x80) continue;
        size_t want = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
        return want > k ? n - k : n;
    }
    return n;
}

// Whether s[0..n) starts with tag: 1 yes, 0 it is a proper prefix of tag
// (undecided), -1 no.
static int match(const char *s, size_t n, const char *tag) {
    size_t t = strlen(tag), m = n < t ? n : t;
    if (memcmp(s, tag, m) != 0) return -1;
    return m == t ? 1 : 0;
}

// Alphanumerics from a splitmix64 stream: OpenAI's id shape, call_ + 24.
static void new_id(tc_parser *p) {
    static const char an[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    memcpy(p->id, "call_", 5);
    for (int i = 0; i < 24; i++) {
        uint64_t z = (p->rng += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        p->id[5 + i] = an[(z ^ (z >> 31)) % 62];
    }
    p->id[TC_ID_LEN] = '\0';
}

static bool known(const tc_parser *p, const char *name, size_t n) {
    for (int i = 0; i < p->n_names; i++)
        if (strlen(p->names[i]) == n && memcmp(p->names[i], name, n) == 0) return true;
    return false;
}

// Feeds one byte to the scanner; returns true when it closed the outermost
// object or array.
static bool scan_byte(scan *sc, unsigned char c) {
    if ((c & 0xC0) == 0x80 && sc->u8need > 0) sc->u8need--;
    else sc->u8need = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : c >= 0xC0 ? 1 : 0;
    if (sc->in_str) {
        if (sc->esc == -1) sc->esc = c == 'u' ? 4 : 0;
        else if (sc->esc > 0) sc->esc--;
        else if (c == '\\') sc->esc = -1;
        else if (c == '"') sc->in_str = 0;
        return false;
    }
    if (c == '"') sc->in_str = 1;
    else if (c == '{' || c == '[') sc->depth++;
    else if (c == '}' || c == ']') return --sc->depth == 0;
    return false;
}

static bool scan_clean(const scan *sc) { return sc->esc == 0 && sc->u8need == 0; }

// Text up to tag goes out as kind; on the tag, the state becomes next.
// A '<' that may still be the tag waits (unless the text has ended).
static int text_until(tc_parser *p, const char *s, size_t n, const char *tag, tc_kind kind, int next) {
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '<') continue;
        int m = match(s + i, n - i, tag);
        if (m == 1) {
            emit_text(p, kind, s, i);
            p->state = next;
            return (int)(i + strlen(tag));
        }
        if (m == 0 && !p->final) {
            emit_text(p, kind, s, i);
            return i ? (int)i : NEED;
        }
    }
    size_t cut = p->final ? n : u8_cut(s, n);
    emit_text(p, kind, s, cut);
    return cut ? (int)cut : NEED;
}

// A call's raw text so far comes back as content and reading goes on.
static int as_content(tc_parser *p) {
    emit_text(p, TC_CONTENT, p->hold.s, p->hold.n);
    p->hold.n = 0;
    p->state = S_TEXT;
    return 0;
}

// Starts a call candidate whose raw text so far is s[0..n) (its tag).
static int open_call(tc_parser *p, const char *s, size_t n, int consumed) {
    p->hold.n = 0;
    if (!sb_add(&p->hold, s, n)) return fail(p, "toolcall: out of memory");
    p->state = S_HEAD;
    return consumed;
}

static int h_start(tc_parser *p, const char *s, size_t n) {
    int m = match(s, n, "<think>");
    if (m == 1) {
        p->state = S_THINK;
        p->think_lead = 1;
        return 7;
    }
    if (m == 0 && !p->final) return NEED;
    p->state = S_TEXT;
    return 0;
}

static size_t trim_newlines(const char *s, size_t n) {
    while (n > 0 && s[n - 1] == '\n') n--;
    return n;
}

// Reasoning up to </think>, less the newlines at its two ends: Qwen3's
// template writes a block as "<think>\n" + reasoning.strip('\n') +
// "\n</think>", so the model's empty block "<think>\n\n</think>" is no
// reasoning, and a reasoning_content sent back renders as it was written.
// A run of newlines waits until text after it shows it is not the end.
static int h_think(tc_parser *p, const char *s, size_t n) {
    size_t i = 0;
    if (p->think_lead) {
        while (i < n && s[i] == '\n') i++;
        if (i == n && !p->final) return i ? (int)i : NEED;
        p->think_lead = 0;
        return (int)i;
    }
    for (; i < n; i++) {
        if (s[i] != '<') continue;
        int m = match(s + i, n - i, "</think>");
        if (m == 1) {
            emit_text(p, TC_REASONING, s, trim_newlines(s, i));
            p->state = S_POST;
            return (int)(i + strlen("</think>"));
        }
        if (m == 0 && !p->final) break; // may be the tag: wait from here
    }
    if (p->final && i == n) { // an unclosed block: all of it
        emit_text(p, TC_REASONING, s, n);
        return (int)n;
    }
    size_t keep = trim_newlines(s, u8_cut(s, i));
    emit_text(p, TC_REASONING, s, keep);
    return keep ? (int)keep : NEED;
}

static int h_post(tc_parser *p, const char *s, size_t n) {
    size_t i = 0;
    while (i < n && is_ws(s[i])) i++;
    if (i < n) p->state = S_TEXT;
    return (int)i;
}

// Llama 3.1: blanks and <|python_tag|> are held until a '{' makes the
// reply a call, or anything else makes it content.
static int h_lstart(tc_parser *p, const char *s, size_t n) {
    static const char tag[] = "<|python_tag|>";
    size_t i = 0;
    while (i < n && is_ws(s[i])) i++;
    if (i < n && s[i] == '<') {
        int m = match(s + i, n - i, tag);
        if (m == 0 && !p->final) return NEED;
        if (m == 1)
            for (i += strlen(tag); i < n && is_ws(s[i]);) i++;
    }
    if (i == n && !p->final) return NEED;
    if (i < n && s[i] == '{') return open_call(p, s, i, (int)i);
    p->state = S_TEXT;
    return 0;
}

static int h_text(tc_parser *p, const char *s, size_t n) {
    if (p->format == TC_HERMES) {
        int r = text_until(p, s, n, "<tool_call>", TC_CONTENT, S_HEAD);
        if (p->state == S_HEAD && r > 0) {
            p->hold.n = 0;
            if (!sb_add(&p->hold, "<tool_call>", 11)) return fail(p, "toolcall: out of memory");
        }
        return r;
    }
    size_t cut = p->final ? n : u8_cut(s, n);
    emit_text(p, TC_CONTENT, s, cut);
    return cut ? (int)cut : NEED;
}

static void skip_ws(const char *s, size_t n, size_t *i) {
    while (*i < n && is_ws(s[*i])) (*i)++;
}

// Literal lit at s[*i]: 1 matched (and skipped), NEED cut short, FAIL not it.
static int lit(const char *s, size_t n, size_t *i, const char *lit) {
    int m = match(s + *i, n - *i, lit);
    if (m == 1) *i += strlen(lit);
    return m == 1 ? 1 : m == 0 ? NEED : FAIL;
}

// The head of a call object, `{"name": "N", "arguments": ` (or
// "parameters"), up to the '{' that opens the arguments. 0 with the name's
// place and the arguments' offset, NEED or FAIL (not this shape: the call
// is then read whole).
static int parse_head(const char *s, size_t n, size_t *name, size_t *name_len, size_t *args) {
    size_t i = 0;
    int r;
    skip_ws(s, n, &i);
    if ((r = lit(s, n, &i, "{")) != 1) return r;
    skip_ws(s, n, &i);
    if ((r = lit(s, n, &i, "\"name\"")) != 1) return r;
    skip_ws(s, n, &i);
    if ((r = lit(s, n, &i, ":")) != 1) return r;
    skip_ws(s, n, &i);
    if ((r = lit(s, n, &i, "\"")) != 1) return r;
    *name = i;
    for (; i < n && s[i] != '"'; i++)
        if (s[i] == '\\' || (unsigned char)s[i] < 0x20 || i - *name >= NAME_MAX_LEN) return FAIL;
    if (i == n) return NEED;
    *name_len = i++ - *name;
    skip_ws(s, n, &i);
    if ((r = lit(s, n, &i, ",")) != 1) return r;
    skip_ws(s, n, &i);
    int a = lit(s, n, &i, "\"arguments\"");
    if (a == FAIL) a = lit(s, n, &i, "\"parameters\"");
    if (a != 1) return a;
    skip_ws(s, n, &i);
    if ((r = lit(s, n, &i, ":")) != 1) return r;
    skip_ws(s, n, &i);
    if (i == n) return NEED;
    if (s[i] != '{') return FAIL;
    *args = i;
    return 0;
}

static void begin_call(tc_parser *p, const char *name, size_t len) {
    memcpy(p->name, name, len);
    p->name[len] = '\0';
    new_id(p);
    emit_mark(p, TC_CALL_BEGIN);
    p->args.n = 0;
    p->args_sent = 0;
    memset(&p->sc, 0, sizeof p->sc);
}

// The head decides: a known name with object arguments streams them; any
// other shape is read whole (S_HOLD). The bytes wait in the buffer.
static int h_head(tc_parser *p, const char *s, size_t n) {
    size_t name = 0, name_len = 0, args = 0;
    int r = parse_head(s, n, &name, &name_len, &args);
    if (r == NEED && !p->final) return NEED;
    if (r == 0 && known(p, s + name, name_len)) {
        if (!sb_add(&p->hold, s, args)) return fail(p, "toolcall: out of memory");
        begin_call(p, s + name, name_len);
        p->state = S_ARGS;
        return (int)args;
    }
    memset(&p->sc, 0, sizeof p->sc);
    p->state = S_HOLD;
    return 0;
}

// A begun call's arguments: passed through as generated, cut only where
// the scanner is between characters and escapes; checked when they close.
static int h_args(tc_parser *p, const char *s, size_t n) {
    size_t i = 0, safe = p->args_sent;
    bool done = false;
    while (i < n && !done) {
        done = scan_byte(&p->sc, (unsigned char)s[i++]);
        if (scan_clean(&p->sc)) safe = p->args.n + i;
    }
    if (!sb_add(&p->args, s, i)) return fail(p, "toolcall: out of memory");
    emit_text(p, TC_CALL_ARGS, p->args.s + p->args_sent, safe - p->args_sent);
    p->args_sent = safe;
    if (!done) return (int)i;
    cJSON *j = cJSON_ParseWithLength(p->args.s, p->args.n);
    bool ok = cJSON_IsObject(j);
    cJSON_Delete(j);
    if (!ok)
        return fail(p, "tool call %d (%s): arguments are not a JSON object: %.80s", p->n_calls, p->name,
                    p->args.s);
    p->state = S_OUTER;
    return (int)i;
}

static void end_call(tc_parser *p) {
    emit_mark(p, TC_CALL_END);
    p->n_calls++;
    p->hold.n = 0;
    p->state = S_CLOSE;
}

static int h_outer(tc_parser *p, const char *s, size_t n) {
    size_t i = 0;
    skip_ws(s, n, &i);
    if (i == n) return (int)i ? (int)i : NEED;
    if (s[i] != '}')
        return fail(p, "tool call %d (%s): expected '}' after the arguments, got '%c'", p->n_calls, p->name, s[i]);
    end_call(p);
    return (int)i + 1;
}

// The arguments of a call read whole: an object, a string holding one
// (some models write them so), or absent ({}); compact JSON or NULL.
static char *whole_args(const cJSON *obj) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(obj, "arguments");
    if (!a) a = cJSON_GetObjectItemCaseSensitive(obj, "parameters");
    if (!a) return strdup("{}");
    if (cJSON_IsObject(a)) return cJSON_PrintUnformatted(a);
    if (!cJSON_IsString(a)) return NULL;
    cJSON *inner = cJSON_Parse(a->valuestring);
    char *out = cJSON_IsObject(inner) ? cJSON_PrintUnformatted(inner) : NULL;
    cJSON_Delete(inner);
    return out;
}

// A call read whole is decided: a known name and object arguments make it
// a call (one arguments delta), anything else content.
static int decide_hold(tc_parser *p) {
    cJSON *obj = cJSON_ParseWithLength(p->hold.s + p->obj_at, p->hold.n - p->obj_at);
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(obj, "name");
    char *args = NULL;
    bool ok = cJSON_IsString(name) && strlen(name->valuestring) <= NAME_MAX_LEN &&
              known(p, name->valuestring, strlen(name->valuestring)) && (args = whole_args(obj));
    if (ok) {
        begin_call(p, name->valuestring, strlen(name->valuestring));
        emit_text(p, TC_CALL_ARGS, args, strlen(args));
        end_call(p);
    }
    cJSON_free(args);
    cJSON_Delete(obj);
    return ok ? 0 : as_content(p);
}

static int h_hold(tc_parser *p, const char *s, size_t n) {
    size_t i = 0;
    if (p->sc.depth == 0) {
        skip_ws(s, n, &i);
        if (i < n && s[i] != '{') {
            if (!sb_add(&p->hold, s, i)) return fail(p, "toolcall: out of memory");
            return (int)i + as_content(p);
        }
        p->obj_at = p->hold.n + i;
    }
    bool done = false;
    while (i < n && !done) done = scan_byte(&p->sc, (unsigned char)s[i++]);
    if (!sb_add(&p->hold, s, i)) return fail(p, "toolcall: out of memory");
    if (done) decide_hold(p);
    return i ? (int)i : NEED;
}

static int h_close(tc_parser *p, const char *s, size_t n) {
    size_t i = 0;
    skip_ws(s, n, &i);
    if (i == n) return i ? (int)i : NEED;
    if (p->format == TC_LLAMA3) {
        p->state = s[i] == ';' ? S_LNEXT : S_TEXT;
        return (int)i + (s[i] == ';');
    }
    int m = match(s + i, n - i, "</tool_call>");
    if (m == 0 && !p->final) return i ? (int)i : NEED;
    // Blanks between and after calls are dropped, as after </think>.
    p->state = m == 1 ? S_POST : S_TEXT;
    return (int)i + (m == 1 ? 12 : 0);
}

static int h_lnext(tc_parser *p, const char *s, size_t n) {
    size_t i = 0;
    skip_ws(s, n, &i);
    if (i == n) return i ? (int)i : NEED;
    if (s[i] == '{') return open_call(p, s, i, (int)i);
    p->state = S_TEXT;
    return (int)i;
}

static int step(tc_parser *p, const char *s, size_t n) {
    switch (p->state) {
    case S_START: return h_start(p, s, n);
    case S_THINK: return h_think(p, s, n);
    case S_POST: return h_post(p, s, n);
    case S_LSTART: return h_lstart(p, s, n);
    case S_TEXT: return h_text(p, s, n);
    case S_HEAD: return h_head(p, s, n);
    case S_ARGS: return h_args(p, s, n);
    case S_OUTER: return h_outer(p, s, n);
    case S_HOLD: return h_hold(p, s, n);
    case S_CLOSE: return h_close(p, s, n);
    default: return h_lnext(p, s, n);
    }
}

// Runs the handlers over the buffer until one needs more bytes.
static int run(tc_parser *p) {
    size_t pos = 0;
    while (pos < p->buf.n) {
        int r = step(p, p->buf.s + pos, p->buf.n - pos);
        if (r == FAIL) return -1;
        if (r == NEED) break;
        pos += (size_t)r;
    }
    if (pos == 0) return 0; // also keeps an empty (NULL) buffer out of memmove
    memmove(p->buf.s, p->buf.s + pos, p->buf.n - pos);
    p->buf.n -= pos;
    return 0;
}

int tc_feed(tc_parser *p, const char *s, size_t n) {
    if (p->failed) return -1;
    if (p->final) {
        fail(p, "toolcall: fed after tc_finish");
        return -1;
    }
    if (!sb_add(&p->buf, s, n)) {
        fail(p, "toolcall: out of memory");
        return -1;
    }
    return run(p);
}

int tc_finish(tc_parser *p) {
    if (p->failed) return -1;
    p->final = 1;
    if (run(p) != 0) return -1;
    if (p->state == S_HEAD || p->state == S_HOLD) as_content(p);
    if (p->state == S_ARGS || p->state == S_OUTER) {
        fail(p, "tool call %d (%s): the output ended inside its arguments", p->n_calls, p->name);
        return -1;
    }
    return 0;
}

tc_parser *tc_new(const tc_opts *o) {
    tc_parser *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->format = o->format;
    p->rng = o->id_seed;
    p->emit = o->emit;
    p->ud = o->ud;
    p->state = o->format == TC_LLAMA3 ? S_LSTART : o->in_think ? S_THINK : S_START;
    p->think_lead = p->state == S_THINK;
    p->names = calloc(o->n_tools > 0 ? (size_t)o->n_tools : 1, sizeof *p->names);
    if (!p->names) {
        free(p);
        return NULL;
    }
    for (; p->n_names < o->n_tools; p->n_names++) {
        if (!(p->names[p->n_names] = strdup(o->tool_names[p->n_names]))) {
            tc_free(p);
            return NULL;
        }
    }
    return p;
}

void tc_free(tc_parser *p) {
    if (!p) return;
    for (int i = 0; i < p->n_names; i++) free(p->names[i]);
    free(p->names);
    free(p->buf.s);
    free(p->hold.s);
    free(p->args.s);
    free(p);
}

int tc_n_calls(const tc_parser *p) { return p->n_calls; }

const char *tc_error(const tc_parser *p) { return p->err; }
