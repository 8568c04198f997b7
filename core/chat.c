// chat: chat-template families rendered by hand. See chat.h for what each
// family produces; the renderers below follow the Jinja templates statement
// by statement, so a reader can hold the template and the C side by side.
#include "chat.h"
#include "chat_int.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "utf8.h"
#include "util.h"

// ---------------------------------------------------------------------------
// Output buffer


// ---------------------------------------------------------------------------
// Python string semantics the templates rely on

static view view_of(const char *s) { return (view){s, strlen(s)}; }

// Python's str.isspace(), which str.strip() and Jinja's |trim use. JavaScript's
// trim differs (it keeps U+001C..U+001F and strips U+FEFF); Hugging Face
// renders templates with Python, so Python is the reference.
static int py_isspace(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
           c == 0x202F || c == 0x205F || c == 0x3000;
}

// str.strip() with no argument.
static view py_strip(view v) {
    const unsigned char *s = (const unsigned char *)v.p;
    size_t b = 0, e = v.n;
    // Lax decoding: an ill-formed sequence never counts as whitespace.
    int32_t c;
    size_t k;
    while (b < e && (c = utf8_decode_lax(s + b, e - b, &k)) >= 0 && py_isspace((uint32_t)c)) b += k;
    while (e > b) {
        size_t j = e - 1;
        while (j > b && (s[j] & 0xC0) == 0x80 && e - j < 4) j--;
        c = utf8_decode_lax(s + j, e - j, &k);
        if (c < 0 || k != e - j || !py_isspace((uint32_t)c)) break;
        e = j;
    }
    return (view){v.p + b, e - b};
}

// str.lstrip('\n') / str.rstrip('\n'): the Qwen3 template strips newlines only.
static view lstrip_nl(view v) {
    while (v.n && v.p[0] == '\n') v.p++, v.n--;
    return v;
}

static view rstrip_nl(view v) {
    while (v.n && v.p[v.n - 1] == '\n') v.n--;
    return v;
}

// First / last occurrence of needle in v, or NULL.
static const char *view_find(view v, const char *needle) {
    size_t m = strlen(needle);
    for (size_t i = 0; i + m <= v.n; i++)
        if (memcmp(v.p + i, needle, m) == 0) return v.p + i;
    return NULL;
}

static const char *view_rfind(view v, const char *needle) {
    size_t m = strlen(needle);
    for (size_t i = v.n; i >= m; i--)
        if (memcmp(v.p + i - m, needle, m) == 0) return v.p + i - m;
    return NULL;
}

static int starts_with(const char *s, const char *prefix) {
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && memcmp(s + n - m, suffix, m) == 0;
}

// ---------------------------------------------------------------------------
// Families

static const char *const family_names[CHAT_NFAMILIES] = {
    [CHAT_CHATML] = "chatml",
    [CHAT_QWEN2] = "qwen2",
    [CHAT_QWEN25] = "qwen2.5",
    [CHAT_QWEN3] = "qwen3",
    [CHAT_LLAMA3] = "llama3",
    [CHAT_LLAMA3_GENPROMPT] = "llama3-genprompt",
    [CHAT_LLAMA31] = "llama3.1",
};

#define QWEN2_SYSTEM "You are a helpful assistant."
#define QWEN25_SYSTEM "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
#define LLAMA3_BOS "<|begin_of_text|>"

const char *chat_family_name(chat_family f) {
    return f >= 0 && f < CHAT_NFAMILIES ? family_names[f] : "unknown";
}

int chat_family_parse(const char *name, chat_family *out, err_t *err) {
    for (int f = 0; f < CHAT_NFAMILIES; f++)
        if (name && strcmp(name, family_names[f]) == 0) {
            *out = (chat_family)f;
            return 0;
        }
    return err_set(err, "unknown chat template family '%s' (expected chatml, qwen2, qwen2.5, qwen3, "
                        "llama3, llama3-genprompt or llama3.1)", name ? name : "(null)");
}

static int is_llama(chat_family f) {
    return f == CHAT_LLAMA3 || f == CHAT_LLAMA3_GENPROMPT || f == CHAT_LLAMA31;
}

// Every message must have a role the family renders and content. The
// templates themselves skip unknown roles silently; we refuse them instead,
// since a dropped message is a silent change of the prompt.
static int validate(chat_family f, const chat_msg *msgs, int n, const chat_tools *tools, err_t *err) {
    if (n < 1 || !msgs) return err_set(err, "chat: no messages to render");
    for (int i = 0; i < n; i++) {
        const char *r = msgs[i].role;
        if (!r) return err_set(err, "chat: message %d: role is missing", i);
        if (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant") && strcmp(r, "tool"))
            return err_set(err, "chat: message %d: unknown role '%s' (expected system, user, assistant or tool)",
                           i, r);
        if (strcmp(r, "tool") == 0 && (f == CHAT_LLAMA3 || f == CHAT_LLAMA3_GENPROMPT))
            return err_set(err, "chat: message %d (tool): the %s chat template has no tool turn", i,
                           chat_family_name(f));
        int calls = tools && tools->calls ? tools->calls[i].n : 0;
        if (!msgs[i].content && !(strcmp(r, "assistant") == 0 && calls > 0))
            return err_set(err, "chat: message %d (%s): content is missing", i, r);
    }
    return 0;
}

static int is_role(const chat_msg *m, const char *role) { return strcmp(m->role, role) == 0; }

void chat_put(render *r, chat_seg_kind kind, view v) {
    if (v.n == 0 || r->oom) return;
    size_t at = r->out.len;
    util_buf_put(&r->out, v.p, v.n);
    chat_seg *last = r->n_segs ? &r->segs[r->n_segs - 1] : NULL;
    if (last && last->kind == kind && last->msg_index == r->msg && last->trained == r->trained) {
        last->end = r->out.len;
        return;
    }
    if (r->n_segs == r->cap_segs) {
        int cap = r->cap_segs ? 2 * r->cap_segs : 16;
        chat_seg *p = realloc(r->segs, (size_t)cap * sizeof *p);
        if (!p) {
            r->oom = 1;
            return;
        }
        r->segs = p;
        r->cap_segs = cap;
    }
    r->segs[r->n_segs++] = (chat_seg){at, r->out.len, r->msg, kind, r->trained};
}

static void markup(render *r, const char *s) { chat_put(r, CHAT_MARKUP, view_of(s)); }
static void content(render *r, view v) { chat_put(r, CHAT_CONTENT, v); }

// Jinja's |tojson on a string, as transformers defines it (json.dumps with
// ensure_ascii=False): quotes and escapes, non-ASCII passes through. The
// quotes are the template's; the escaped text is still the message's.
static void json_string(render *r, const char *s) {
    markup(r, "\"");
    while (*s) {
        size_t k = 0;
        while (s[k] && (unsigned char)s[k] >= 0x20 && s[k] != '"' && s[k] != '\\') k++;
        content(r, (view){s, k});
        if (!s[k]) break;
        unsigned char c = (unsigned char)s[k];
        char esc[8];
        const char *e = c == '"' ? "\\\"" : c == '\\' ? "\\\\" : c == '\n' ? "\\n" : c == '\r' ? "\\r"
                      : c == '\t' ? "\\t" : c == '\b' ? "\\b" : c == '\f' ? "\\f" : NULL;
        if (!e) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            e = esc;
        }
        content(r, view_of(e));
        s += k + 1;
    }
    markup(r, "\"");
}

// Qwen2.5 and Qwen3 fold a run of tool messages into one user turn:
//   <|im_start|>user\n<tool_response>\nA\n</tool_response>\n<tool_response>...<|im_end|>\n
static void chatml_tool(render *r, const chat_msg *msgs, int n, int i) {
    r->msg = i;
    if (i == 0 || !is_role(&msgs[i - 1], "tool")) markup(r, "<|im_start|>user");
    markup(r, "\n<tool_response>\n");
    content(r, view_of(msgs[i].content));
    markup(r, "\n</tool_response>");
    if (i == n - 1 || !is_role(&msgs[i + 1], "tool")) markup(r, "<|im_end|>\n");
}

// <|im_start|>ROLE\nCONTENT<|im_end|>\n, with the span around an assistant's
// CONTENT<|im_end|>. Message -1 is a default system turn: all the template's.
static void chatml_turn(render *r, int i, const char *role, view text) {
    r->msg = i;
    markup(r, "<|im_start|>");
    markup(r, role);
    markup(r, "\n");
    r->trained = strcmp(role, "assistant") == 0;
    chat_put(r, i < 0 ? CHAT_MARKUP : CHAT_CONTENT, text);
    markup(r, "<|im_end|>");
    r->trained = 0;
    markup(r, "\n");
}

// A Qwen2.5 assistant turn with tool calls: the content only when it is
// not empty, then the calls. The first "\n" (of the content or of the first
// call) stands where the generation prompt's does, so it is not trained.
static void qwen25_calls_turn(render *r, const chat_msg *m, int i) {
    int has_content = m->content && *m->content;
    r->msg = i;
    markup(r, "<|im_start|>assistant\n");
    r->trained = 1;
    if (has_content) content(r, view_of(m->content));
    chat_qwen_tool_calls(r, i, has_content);
    markup(r, "<|im_end|>");
    r->trained = 0;
    markup(r, "\n");
}

// chatml, qwen2, qwen2.5: the templates differ only in the default system
// turn and in whether tool messages are folded into user turns. With tools,
// qwen2.5's system turn is the "# Tools" one, holding the first system message.
static void render_chatml(render *r, chat_family f, const chat_msg *msgs, int n, const chat_opts *o) {
    const char *def = f == CHAT_QWEN2 ? QWEN2_SYSTEM : f == CHAT_QWEN25 ? QWEN25_SYSTEM : NULL;
    int tools = f == CHAT_QWEN25 && chat_has_tools(r);
    if (tools) chat_qwen_tools_turn(r, f, msgs);
    else if (def && !is_role(&msgs[0], "system")) chatml_turn(r, -1, "system", view_of(def));
    for (int i = tools && is_role(&msgs[0], "system") ? 1 : 0; i < n; i++) {
        if (f == CHAT_QWEN25 && is_role(&msgs[i], "tool")) chatml_tool(r, msgs, n, i);
        else if (chat_n_calls(r, i) > 0) qwen25_calls_turn(r, &msgs[i], i);
        else chatml_turn(r, i, msgs[i].role, view_of(msgs[i].content));
    }
    r->msg = -1;
    if (o->add_generation_prompt) markup(r, "<|im_start|>assistant\n");
}

// The index of the last user message that is a real query, not a tool result
// passed back as "<tool_response>...</tool_response>"; n-1 when there is none
// (as the template's namespace default).
static int qwen3_last_query(const chat_msg *msgs, int n) {
    for (int i = n - 1; i >= 0; i--)
        if (is_role(&msgs[i], "user") && !(starts_with(msgs[i].content, "<tool_response>") &&
                                           ends_with(msgs[i].content, "</tool_response>")))
            return i;
    return n - 1;
}

// An assistant turn in Qwen3. Reasoning is the message's own, else the
// content's text before its first "</think>" (from the last "<think>" before
// that), and the content is then what follows its last "</think>"; newlines
// at the seams are dropped. Only turns after the last query show reasoning,
// and only the final turn shows an empty one.
static void qwen3_assistant(render *r, const chat_msg *m, int i, int n, int last_query) {
    view text = view_of(m->content ? m->content : ""), reasoning = {"", 0};
    if (m->reasoning) {
        reasoning = view_of(m->reasoning);
    } else if (view_find(text, "</think>")) {
        view before = {text.p, (size_t)(view_find(text, "</think>") - text.p)};
        const char *after = view_rfind(text, "</think>") + strlen("</think>");
        text = lstrip_nl((view){after, (size_t)(text.p + text.n - after)});
        before = rstrip_nl(before);
        const char *open = view_rfind(before, "<think>");
        if (open) open += strlen("<think>"), before = (view){open, (size_t)(before.p + before.n - open)};
        reasoning = lstrip_nl(before);
    }
    r->msg = i;
    markup(r, "<|im_start|>assistant\n");
    r->trained = 1;
    if (i > last_query && (i == n - 1 || reasoning.n > 0)) {
        markup(r, "<think>\n");
        content(r, rstrip_nl(lstrip_nl(reasoning)));
        markup(r, "\n</think>\n\n");
        content(r, lstrip_nl(text));
    } else {
        content(r, text);
    }
    chat_qwen_tool_calls(r, i, text.n > 0);
    markup(r, "<|im_end|>");
    r->trained = 0;
    markup(r, "\n");
}

static void render_qwen3(render *r, const chat_msg *msgs, int n, const chat_opts *o) {
    int last_query = qwen3_last_query(msgs, n);
    int tools = chat_has_tools(r);
    if (tools) chat_qwen_tools_turn(r, CHAT_QWEN3, msgs);
    for (int i = tools && is_role(&msgs[0], "system") ? 1 : 0; i < n; i++) {
        if (is_role(&msgs[i], "assistant")) qwen3_assistant(r, &msgs[i], i, n, last_query);
        else if (is_role(&msgs[i], "tool")) chatml_tool(r, msgs, n, i);
        else chatml_turn(r, i, msgs[i].role, view_of(msgs[i].content));
    }
    r->msg = -1;
    if (o->add_generation_prompt) {
        markup(r, "<|im_start|>assistant\n");
        if (o->enable_thinking == 0) markup(r, "<think>\n\n</think>\n\n");
    }
}

// <|start_header_id|>ROLE<|end_header_id|>\n\n + trim(CONTENT) + <|eot_id|>
static void llama3_turn(render *r, int i, const char *role, const char *text) {
    r->msg = i;
    markup(r, "<|start_header_id|>");
    markup(r, role);
    markup(r, "<|end_header_id|>\n\n");
    r->trained = strcmp(role, "assistant") == 0;
    content(r, py_strip(view_of(text)));
    markup(r, "<|eot_id|>");
    r->trained = 0;
}

static void render_llama3(render *r, chat_family f, const chat_msg *msgs, int n, const chat_opts *o) {
    markup(r, o->bos_token ? o->bos_token : LLAMA3_BOS);
    for (int i = 0; i < n; i++) llama3_turn(r, i, msgs[i].role, msgs[i].content);
    // The original Llama 3 template has no add_generation_prompt test.
    r->msg = -1;
    if (f == CHAT_LLAMA3 || o->add_generation_prompt) markup(r, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

// Llama 3.1: the first system message moves into a system turn that always
// exists and always carries the knowledge/today dates (date_string's
// default, since we pass none). Tool results go in ipython turns; the
// template's tojson quotes a string content (a string is iterable). With
// tools, the system turn says "Environment: ipython" and the first user
// message carries the tools (tools_in_user_message, the default); a call
// is an assistant turn of {"name": ..., "parameters": ...} JSON.
static void render_llama31(render *r, const chat_msg *msgs, int n, const chat_opts *o) {
    int first = is_role(&msgs[0], "system") ? 1 : 0, tools = chat_has_tools(r);
    markup(r, o->bos_token ? o->bos_token : LLAMA3_BOS);
    r->msg = first ? 0 : -1;
    markup(r, "<|start_header_id|>system<|end_header_id|>\n\n");
    if (tools) markup(r, "Environment: ipython\n");
    markup(r, "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n");
    if (first) content(r, py_strip(view_of(msgs[0].content)));
    markup(r, "<|eot_id|>");
    for (int i = first; i < n; i++) {
        if (tools && i == first) {
            r->msg = i;  // the first user message, behind the tools
            markup(r, "<|start_header_id|>user<|end_header_id|>\n\n");
            chat_llama31_tools_text(r);
            content(r, py_strip(view_of(msgs[i].content)));
            markup(r, "<|eot_id|>");
        } else if (is_role(&msgs[i], "tool")) {
            r->msg = i;
            markup(r, "<|start_header_id|>ipython<|end_header_id|>\n\n");
            json_string(r, msgs[i].content);
            markup(r, "<|eot_id|>");
        } else if (chat_n_calls(r, i) > 0) {
            r->msg = i;
            markup(r, "<|start_header_id|>assistant<|end_header_id|>\n\n");
            r->trained = 1;
            chat_llama31_call(r, i);
            markup(r, "<|eot_id|>");
            r->trained = 0;
        } else {
            llama3_turn(r, i, msgs[i].role, msgs[i].content);
        }
    }
    r->msg = -1;
    if (o->add_generation_prompt) markup(r, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

chat_prompt *chat_render_segments(chat_family f, const chat_msg *msgs, int n, const chat_opts *opts,
                                  err_t *err) {
    return chat_render_tools(f, msgs, n, opts, NULL, err);
}

chat_prompt *chat_render_tools(chat_family f, const chat_msg *msgs, int n, const chat_opts *opts,
                               const chat_tools *tools, err_t *err) {
    static const chat_opts defaults = {.add_generation_prompt = 0, .enable_thinking = -1, .bos_token = NULL};
    const chat_opts *o = opts ? opts : &defaults;
    if (f < 0 || f >= CHAT_NFAMILIES) {
        err_set(err, "chat: unknown chat template family %d", (int)f);
        return NULL;
    }
    if (validate(f, msgs, n, tools, err) != 0 || chat_tools_validate(f, msgs, n, tools, err) != 0) return NULL;

    render r = {.msg = -1, .tools = tools};
    chat_prompt *p = calloc(1, sizeof *p);
    r.oom = !p;
    if (f == CHAT_QWEN3) render_qwen3(&r, msgs, n, o);
    else if (f == CHAT_LLAMA31) render_llama31(&r, msgs, n, o);
    else if (is_llama(f)) render_llama3(&r, f, msgs, n, o);
    else render_chatml(&r, f, msgs, n, o);
    util_buf_put(&r.out, "", 0);  // an empty conversation still yields a string
    if (r.oom || r.out.oom || !r.out.p) {
        free(r.out.p);
        free(r.segs);
        free(p);
        err_set(err, "chat: out of memory rendering %d messages", n);
        return NULL;
    }
    *p = (chat_prompt){.text = r.out.p, .len = r.out.len, .segs = r.segs, .n_segs = r.n_segs};
    return p;
}

void chat_prompt_free(chat_prompt *p) {
    if (!p) return;
    free(p->text);
    free(p->segs);
    free(p);
}

// A span starts at each trained segment that does not continue the one
// before it (trained, of the same message).
static int span_starts(const chat_prompt *p, int i) {
    const chat_seg *g = &p->segs[i], *prev = i > 0 ? &p->segs[i - 1] : NULL;
    return g->trained && !(prev && prev->trained && prev->msg_index == g->msg_index);
}

// One chat_span per run of trained segments of one message. Returns 0 or -1
// on out of memory.
static int spans_of(const chat_prompt *p, chat_span **spans, int *n_spans) {
    int k = 0;
    for (int i = 0; i < p->n_segs; i++) k += span_starts(p, i);
    chat_span *sp = k > 0 ? calloc((size_t)k, sizeof *sp) : NULL;
    if (k > 0 && !sp) return -1;
    *spans = sp;
    *n_spans = k;
    k = 0;
    for (int i = 0; i < p->n_segs; i++) {
        if (!p->segs[i].trained) continue;
        if (span_starts(p, i)) sp[k++] = (chat_span){.start = p->segs[i].start, .msg_index = p->segs[i].msg_index};
        sp[k - 1].end = p->segs[i].end;
    }
    return 0;
}

char *chat_render(chat_family f, const chat_msg *msgs, int n, const chat_opts *opts,
                  chat_span **spans, int *n_spans, err_t *err) {
    if (spans) *spans = NULL;
    if (n_spans) *n_spans = 0;
    chat_prompt *p = chat_render_segments(f, msgs, n, opts, err);
    if (!p) return NULL;
    int ns = 0;
    if (spans && spans_of(p, spans, &ns) != 0) {
        chat_prompt_free(p);
        err_set(err, "chat: out of memory rendering %d messages", n);
        return NULL;
    }
    if (n_spans) *n_spans = ns;
    char *text = p->text;
    p->text = NULL;
    chat_prompt_free(p);
    return text;
}

// ---------------------------------------------------------------------------
// Tokenizing by segments

// The ids so far, with a trained flag each.
typedef struct ids_out {
    int32_t *ids;
    uint8_t *trained;
    size_t n, cap;
} ids_out;

static int ids_push(ids_out *o, int32_t id, int trained) {
    if (o->n == o->cap) {
        size_t cap = o->cap ? 2 * o->cap : 256;
        int32_t *ids = realloc(o->ids, cap * sizeof *ids);
        if (ids) o->ids = ids;
        uint8_t *tr = realloc(o->trained, cap);
        if (tr) o->trained = tr;
        if (!ids || !tr) return -1;
        o->cap = cap;
    }
    o->ids[o->n] = id;
    o->trained[o->n++] = (uint8_t)trained;
    return 0;
}

// How many leading ids of the whole gap text[a, b) (ids[0..n)) lie before
// byte x, a < x < b: the common prefix with the ids of text[a, x) alone, plus
// the token that straddles x when one does and straddle is set. Returns
// SIZE_MAX with err set on a tokenizer failure.
static size_t ids_before(const tok *t, const char *text, size_t a, size_t x, const int32_t *ids, size_t n,
                         int straddle, err_t *err) {
    size_t m = 0, k = 0;
    int32_t *pre = tok_encode(t, text + a, x - a, 0, &m, err);
    if (!pre) return SIZE_MAX;
    while (k < m && k < n && pre[k] == ids[k]) k++;
    free(pre);
    return straddle && k < m && k < n ? k + 1 : k;
}

// Encodes text[a, b), which holds no token to cut out, as plain text, and
// flags the ids that have a byte in a trained segment.
static int encode_gap(const tok *t, const chat_prompt *p, size_t a, size_t b, ids_out *out, err_t *err) {
    size_t n = 0, base = out->n;
    int32_t *ids = tok_encode(t, p->text + a, b - a, 0, &n, err);
    if (!ids) return -1;
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) rc = ids_push(out, ids[i], 0);
    if (rc) err_set(err, "chat: out of memory tokenizing");
    for (int s = 0; s < p->n_segs && !rc; s++) {
        const chat_seg *g = &p->segs[s];
        if (!g->trained || g->end <= a || g->start >= b) continue;
        size_t x = g->start > a ? g->start : a, y = g->end < b ? g->end : b;
        size_t from = x > a ? ids_before(t, p->text, a, x, ids, n, 0, err) : 0;
        size_t to = y < b ? ids_before(t, p->text, a, y, ids, n, 1, err) : n;
        if (from == SIZE_MAX || to == SIZE_MAX) rc = -1;
        for (size_t i = from; !rc && i < to; i++) out->trained[base + i] = 1;
    }
    free(ids);
    return rc;
}

static int any_trained(const chat_prompt *p, size_t a, size_t b) {
    for (int s = 0; s < p->n_segs; s++)
        if (p->segs[s].trained && p->segs[s].start < b && p->segs[s].end > a) return 1;
    return 0;
}

// The end of the run of markup segments that starts at segment *i; *i moves
// to its last segment.
static size_t markup_run_end(const chat_prompt *p, int *i) {
    while (*i + 1 < p->n_segs && p->segs[*i + 1].kind == CHAT_MARKUP) (*i)++;
    return p->segs[*i].end;
}

int32_t *chat_encode(const tok *t, const chat_prompt *p, size_t *n, uint8_t **trained, err_t *err) {
    ids_out out = {0};
    size_t gap = 0;  // start of the text not yet encoded
    // Allocates up front, so that no ids is still an array.
    int rc = ids_push(&out, 0, 0) ? err_set(err, "chat: out of memory tokenizing") : 0;
    out.n = 0;
    for (int i = 0; i < p->n_segs && !rc; i++) {
        if (p->segs[i].kind != CHAT_MARKUP) continue;
        size_t pos = p->segs[i].start, end = markup_run_end(p, &i);
        while (pos < end && !rc) {
            size_t len;
            int32_t id = tok_added_at(t, p->text + pos, end - pos, &len);
            if (id < 0) {
                pos++;
                continue;
            }
            if (pos > gap) rc = encode_gap(t, p, gap, pos, &out, err);
            if (!rc && ids_push(&out, id, any_trained(p, pos, pos + len)))
                rc = err_set(err, "chat: out of memory tokenizing");
            gap = pos += len;
        }
    }
    if (!rc && p->len > gap) rc = encode_gap(t, p, gap, p->len, &out, err);
    if (rc) {
        free(out.ids);
        free(out.trained);
        return NULL;
    }
    *n = out.n;
    if (trained) *trained = out.trained;
    else free(out.trained);
    return out.ids;
}

// ---------------------------------------------------------------------------
// Detection

// A copy of the template with formatting differences removed, so that one
// fingerprint matches the variants found in the wild: no spaces or tabs,
// double quotes as single quotes, the two-character escape \n as a newline,
// and message['x'] as message.x.
static char *normalize(const char *t) {
    static const char *const from[] = {"message['role']", "message['content']", "\\n"};
    static const char *const to[] = {"message.role", "message.content", "\n"};
    char *out = malloc(strlen(t) + 1), *w = out;
    if (!out) return NULL;
    while (*t) {
        size_t k = 0;
        while (k < 3 && !starts_with(t, from[k])) k++;
        if (k < 3) {
            w = stpcpy(w, to[k]);
            t += strlen(from[k]);
        } else if (*t == ' ' || *t == '\t') {
            t++;
        } else {
            *w++ = *t == '"' ? '\'' : *t;
            t++;
        }
    }
    *w = '\0';
    return out;
}

// The default system prompt that a ChatML template writes as a literal after
// "<|im_start|>system\n" (as opposed to a string that ends there and has the
// message content appended). Returns 0 with *def = NULL when there is none,
// 1 with a new string, -1 on out of memory.
static int chatml_default_system(const char *t, char **def) {
    *def = NULL;
    for (const char *p = strstr(t, "<|im_start|>system"); p; p = strstr(p + 1, "<|im_start|>system")) {
        const char *q = p + strlen("<|im_start|>system");
        if (starts_with(q, "\\n")) q += 2;
        else if (*q == '\n') q++;
        else continue;
        if (*q == '\'' || *q == '"') continue;
        const char *end = strstr(q, "<|im_end|>");
        if (!end) continue;
        free(*def);
        if (!(*def = strndup(q, (size_t)(end - q)))) return -1;
    }
    return *def ? 1 : 0;
}

static int unsupported(err_t *err, const char *why) {
    return err_set(err, "unsupported chat template (%s); name a family instead: chatml, qwen2, qwen2.5, "
                        "qwen3, llama3, llama3-genprompt, llama3.1", why);
}

// Qwen3's template, recognised by its reasoning handling. Templates that open
// a think block in the generation prompt (Qwen3 "Thinking" releases) render
// differently and are refused.
static int detect_qwen3(const char *norm, chat_family *out, err_t *err) {
    if (!strstr(norm, "reasoning_content") || !strstr(norm, "last_query_index") ||
        !strstr(norm, "enable_thinking") || !strstr(norm, "'<think>\n\n</think>\n\n'") ||
        !strstr(norm, "'\n<think>\n'+reasoning_content.strip('\n')+'\n</think>\n\n'+content.lstrip('\n')"))
        return unsupported(err, "ChatML with <think> handling that is not Qwen3's");
    if (strstr(norm, "assistant\n<think>")) return unsupported(err, "generation prompt opens a <think> block");
    *out = CHAT_QWEN3;
    return 0;
}

static int detect_chatml(const char *t, const char *norm, chat_family *out, err_t *err) {
    if (!strstr(norm, "'<|im_start|>'+message.role+'\n'+message.content+'<|im_end|>'") ||
        strstr(norm, "system_message") || strstr(norm, "<|im_sep|>"))
        return unsupported(err, "ChatML markers but not the ChatML message layout");
    char *def = NULL;
    if (chatml_default_system(t, &def) < 0) return err_set(err, "chat: out of memory");
    int rc = 0;
    int tools = strstr(norm, "<tool_response>") != NULL;
    if (strstr(norm, "<think>")) {
        rc = def ? unsupported(err, "Qwen3-like template with a default system prompt")
                 : detect_qwen3(norm, out, err);
    } else if (!def) {
        if (tools) rc = unsupported(err, "ChatML with <tool_response> grouping but no default system prompt");
        else *out = CHAT_CHATML;
    } else if (strcmp(def, QWEN2_SYSTEM) == 0 && !tools) {
        *out = CHAT_QWEN2;
    } else if (strcmp(def, QWEN25_SYSTEM) == 0 && tools) {
        *out = CHAT_QWEN25;
    } else {
        char why[200];
        snprintf(why, sizeof why, "ChatML with default system prompt \"%.120s\"", def);
        rc = unsupported(err, why);
    }
    free(def);
    return rc;
}

static int detect_llama(const char *norm, chat_family *out, err_t *err) {
    if (!strstr(norm, "'<|start_header_id|>'+message.role+'<|end_header_id|>\n\n'+message.content|trim+'<|eot_id|>'") ||
        !strstr(norm, "bos_token"))
        return unsupported(err, "Llama 3 markers but not the Llama 3 message layout");
    if (strstr(norm, "strftime_now"))
        return unsupported(err, "Llama 3.2 style: today's date from strftime_now");
    if (strstr(norm, "CuttingKnowledgeDate:December2023") && strstr(norm, "26Jul2024") &&
        strstr(norm, "{{-system_message}}") && strstr(norm, "ipython")) {
        *out = CHAT_LLAMA31;
        return 0;
    }
    if (strstr(norm, "Knowledge") || strstr(norm, "system_message") || strstr(norm, "tool"))
        return unsupported(err, "Llama 3 layout with a system block or tools of its own");
    *out = strstr(norm, "add_generation_prompt") ? CHAT_LLAMA3_GENPROMPT : CHAT_LLAMA3;
    return 0;
}

int chat_detect(const char *chat_template, chat_family *out, err_t *err) {
    if (!chat_template || !*chat_template) return unsupported(err, "empty");
    char *norm = normalize(chat_template);
    if (!norm) return err_set(err, "chat: out of memory");
    int rc;
    if (strstr(norm, "<|start_header_id|>") && strstr(norm, "<|eot_id|>"))
        rc = detect_llama(norm, out, err);
    else if (strstr(norm, "<|im_start|>") && strstr(norm, "<|im_end|>"))
        rc = detect_chatml(chat_template, norm, out, err);
    else
        rc = unsupported(err, "neither ChatML nor Llama 3 headers");
    free(norm);
    return rc;
}

// ---------------------------------------------------------------------------
// tokenizer_config.json

// chat_template is a string, or a list of {"name", "template"} of which the
// one named "default" is the chat template. Returns a borrowed string or NULL.
static const char *config_template(const cJSON *root) {
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(root, "chat_template");
    if (cJSON_IsString(ct)) return ct->valuestring;
    if (!cJSON_IsArray(ct)) return NULL;
    const cJSON *it;
    cJSON_ArrayForEach(it, ct) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(it, "name");
        const cJSON *tpl = cJSON_GetObjectItemCaseSensitive(it, "template");
        if (cJSON_IsString(name) && strcmp(name->valuestring, "default") == 0 && cJSON_IsString(tpl))
            return tpl->valuestring;
    }
    return NULL;
}

// bos_token is a string, null, or (older files) {"__type": "AddedToken", "content": ...}.
static int config_bos(const cJSON *root, char **bos, const char *path, err_t *err) {
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(root, "bos_token");
    if (cJSON_IsObject(b)) b = cJSON_GetObjectItemCaseSensitive(b, "content");
    *bos = NULL;
    if (!b || cJSON_IsNull(b)) return 0;
    if (!cJSON_IsString(b)) return err_set(err, "%s: bos_token: expected a string, null or {\"content\": ...}", path);
    if (!(*bos = strdup(b->valuestring))) return err_set(err, "%s: out of memory", path);
    return 0;
}

// Newer Hugging Face folders keep the template in chat_template.jinja beside
// tokenizer_config.json. Returns a new string or NULL.
static char *sibling_template(const char *path) {
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, (size_t)(slash - path)) : strdup(".");
    if (!dir) return NULL;
    char *file = util_path_join(dir, "chat_template.jinja");
    free(dir);
    char *t = file && util_is_file(file) ? util_read_file(file, NULL, NULL) : NULL;
    free(file);
    return t;
}

int chat_from_config(const char *path, chat_family *f, char **bos_token, err_t *err) {
    if (bos_token) *bos_token = NULL;
    char *text = util_read_file(path, NULL, err);
    if (!text) return -1;
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return err_set(err, "%s: not a JSON object", path);
    }
    int rc = 0;
    const char *tpl = config_template(root);
    int listed = cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(root, "chat_template"));
    char *jinja = tpl || listed ? NULL : sibling_template(path);
    if (!tpl && listed) rc = err_set(err, "%s: chat_template: no template named \"default\" in the list", path);
    else if (!tpl && !jinja) rc = err_set(err, "%s: no chat_template (nor chat_template.jinja beside it)", path);
    else if (chat_detect(tpl ? tpl : jinja, f, err) != 0) rc = err_wrap(err, "%s", path);
    else if (bos_token) rc = config_bos(root, bos_token, path, err);
    free(jinja);
    cJSON_Delete(root);
    return rc;
}
