// data: JSONL training files to token ids and loss masks. See data.h for
// the formats, the bad-line rules and how special tokens are kept out of
// message content. The file reads top to bottom as a line goes through it:
// read the line, check its bytes, parse it into messages, render them with
// the chat template into segments, tokenize markup and content apart. The
// tool-calling fields of a line are read in data_tools.c, the report is
// counted and printed in data_report.c (data_int.h joins them).
#include "data.h"
#include "data_int.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "utf8.h"
#include "util.h"

int td_bad(err_t *why, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    if (why) vsnprintf(why->msg, sizeof why->msg, fmt, ap);
    va_end(ap);
    return TD_BAD;
}

const char *data_format_name(data_format f) {
    switch (f) {
    case DATA_FMT_OPENAI: return "openai-chat";
    case DATA_FMT_ALPACA: return "alpaca";
    case DATA_FMT_SHAREGPT: return "sharegpt";
    default: return "none";
    }
}

struct data_set {
    data_example *ex;
    int n, cap;
    data_format format;
};

int td_grow(void **p, int *cap, int need, size_t elem) {
    if (need <= *cap) return 0;
    int c = *cap ? *cap : 16;
    while (c < need) c = c > INT32_MAX / 2 ? need : c * 2;
    void *q = realloc(*p, (size_t)c * elem);
    if (!q) return -1;
    *p = q;
    *cap = c;
    return 0;
}

// ---------------------------------------------------------------------------
// Reading lines

// Buffered line reader. A line longer than the cap is not kept: the reader
// skips to its end and says so, so that one huge line costs no memory.
typedef struct td_reader {
    FILE *f;
    char buf[1 << 16];
    size_t pos, end;
    int eof;
    char *line;
    size_t len, cap;
} td_reader;

// Reads the next line (without its '\n') into r->line, NUL-terminated.
// Returns 1, 0 at the end of the file, -1 on a read error or out of memory.
static int rd_line(td_reader *r, size_t max, int *too_long) {
    int got = 0;
    r->len = 0;
    *too_long = 0;
    for (;;) {
        if (r->pos == r->end) {
            if (r->eof) break;
            r->end = fread(r->buf, 1, sizeof r->buf, r->f);
            r->pos = 0;
            if (r->end == 0) {
                if (ferror(r->f)) return -1;
                r->eof = 1;
                break;
            }
        }
        got = 1;
        char *nl = memchr(r->buf + r->pos, '\n', r->end - r->pos);
        size_t take = (nl ? (size_t)(nl - r->buf) : r->end) - r->pos;
        if (!*too_long && r->len + take > max) *too_long = 1;
        if (!*too_long) {
            if (r->len + take + 1 > r->cap) {
                size_t cap = r->cap ? r->cap : 4096;
                while (cap < r->len + take + 1) cap *= 2;
                char *p = realloc(r->line, cap);
                if (!p) return -1;
                r->line = p;
                r->cap = cap;
            }
            memcpy(r->line + r->len, r->buf + r->pos, take);
            r->len += take;
        }
        r->pos += take + (nl ? 1 : 0);
        if (nl) break;
    }
    if (!got) return 0;
    if (*too_long) r->len = 0;
    if (!r->line && !(r->line = malloc(1))) return -1;
    r->line[r->len] = '\0';
    return 1;
}

// ---------------------------------------------------------------------------
// Checking a line's bytes

// cJSON is more lenient than the json.loads that OpenAI's and Hugging Face's
// tools read these files with: it takes raw control characters inside
// strings, and it stops at a NUL byte as if the line ended there. Those are
// refused here, and so is the escape \u0000, which cJSON would decode into a
// NUL that silently cuts the C string short.
int td_json_prescan(const char *s, size_t n, err_t *why) {
    int in_str = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (in_str) {
            if (c == '\\') {
                if (i + 5 < n && memcmp(s + i + 1, "u0000", 5) == 0)
                    return td_bad(why, "invalid JSON: \\u0000 (NUL) in a string at column %zu", i + 1);
                i++;
            } else if (c == '"') {
                in_str = 0;
            } else if (c < 0x20) {
                return err_set(why, "invalid JSON: raw control character 0x%02X in a string at column %zu "
                                    "(write it escaped)", c, i + 1);
            }
        } else if (c == '"') {
            in_str = 1;
        } else if (c < 0x20 && c != '\t' && c != '\r') {
            return err_set(why, "invalid JSON: control character 0x%02X at column %zu", c, i + 1);
        }
    }
    return 0;
}

static int is_blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r') return 0;
    return 1;
}

// A string from the data, quoted for a one-line message: at most about 32
// bytes, cut at a character boundary, control characters escaped.
const char *td_clip(const char *s, char *buf, size_t n) {
    size_t w = 0, i = 0;
    buf[w++] = '"';
    while (s[i] && w + 8 < n && i < 32) {
        unsigned char c = (unsigned char)s[i];
        size_t k = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
        if (c < 0x20) w += (size_t)snprintf(buf + w, n - w, "\\x%02X", c), i++;
        else if (w + k + 5 < n) memcpy(buf + w, s + i, k), w += k, i += k;
        else break;
    }
    snprintf(buf + w, n - w, "%s\"", s[i] ? "..." : "");
    return buf;
}

// A short description of a JSON value for messages: its type, or the value
// itself for numbers and strings.
const char *td_desc(const cJSON *v, char *buf, size_t n) {
    if (!v) return "nothing";
    if (cJSON_IsNull(v)) return "null";
    if (cJSON_IsBool(v)) return cJSON_IsTrue(v) ? "true" : "false";
    if (cJSON_IsNumber(v)) return snprintf(buf, n, "%g", v->valuedouble), buf;
    if (cJSON_IsString(v)) return td_clip(v->valuestring, buf, n);
    if (cJSON_IsArray(v)) return "an array";
    return "an object";
}

const cJSON *td_get(const cJSON *obj, const char *key) {
    return cJSON_GetObjectItemCaseSensitive(obj, key);
}

// ---------------------------------------------------------------------------
// Lines to conversations

static void td_conv_reset(td_conv *c) {
    for (int i = 0; i < c->n_owned; i++) free(c->owned[i]);
    c->n = c->n_owned = 0;
    td_tools_reset(&c->tools);
}

static void td_conv_free(td_conv *c) {
    td_conv_reset(c);
    free(c->msgs);
    free(c->weights);
    free(c->owned);
    free(c->tools.defs);
    free(c->tools.calls);
}

int td_conv_add(td_conv *c, const char *role, const char *content, int weight) {
    if (td_grow((void **)&c->msgs, &c->cap_msgs, c->n + 1, sizeof *c->msgs) ||
        td_grow((void **)&c->weights, &c->cap_weights, c->n + 1, sizeof *c->weights))
        return TD_OOM;
    c->msgs[c->n] = (chat_msg){.role = role, .content = content, .reasoning = NULL};
    c->weights[c->n++] = weight;
    return 0;
}

// Takes ownership of s (freed with the conversation); NULL on out of memory.
static char *td_conv_own(td_conv *c, char *s) {
    if (!s || td_grow((void **)&c->owned, &c->cap_owned, c->n_owned + 1, sizeof *c->owned)) {
        free(s);
        return NULL;
    }
    return c->owned[c->n_owned++] = s;
}

// a + sep + b as a new string owned by c.
static char *td_conv_join(td_conv *c, const char *a, const char *sep, const char *b) {
    size_t la = strlen(a), ls = strlen(sep), lb = strlen(b);
    char *s = malloc(la + ls + lb + 1);
    if (s) memcpy(s, a, la), memcpy(s + la, sep, ls), memcpy(s + la + ls, b, lb + 1);
    return td_conv_own(c, s);
}

// A message's text: a non-empty string, or (OpenAI) an array of
// {"type": "text", "text": ...} parts joined with "\n".
int td_read_content(td_conv *c, const cJSON *v, const char *path, const char **out, err_t *why) {
    char d[48];
    if (!v) return err_set(why, "%s: missing", path);
    if (cJSON_IsString(v)) {
        if (!*v->valuestring) return td_bad(why, "%s: empty content", path);
        *out = v->valuestring;
        return 0;
    }
    if (!cJSON_IsArray(v))
        return td_bad(why, "%s: expected a string or an array of text parts, got %s", path,
                      td_desc(v, d, sizeof d));
    const char *text = "";
    int j = 0;
    for (const cJSON *p = v->child; p; p = p->next, j++) {
        const cJSON *type = td_get(p, "type"), *t = td_get(p, "text");
        if (!cJSON_IsObject(p) || !cJSON_IsString(type))
            return td_bad(why, "%s[%d]: expected {\"type\": \"text\", \"text\": \"...\"}, got %s", path, j,
                          td_desc(p, d, sizeof d));
        if (strcmp(type->valuestring, "text") != 0)
            return td_bad(why, "%s[%d].type: unsupported content part %s (only \"text\")", path, j,
                          td_clip(type->valuestring, d, sizeof d));
        if (!cJSON_IsString(t))
            return td_bad(why, "%s[%d].text: expected a string, got %s", path, j, td_desc(t, d, sizeof d));
        if (!(text = j == 0 ? t->valuestring : td_conv_join(c, text, "\n", t->valuestring))) return TD_OOM;
    }
    if (!*text) return td_bad(why, "%s: empty content", path);
    *out = text;
    return 0;
}

// An optional string field: 0 with *out = NULL when absent or null.
static int read_opt_string(const cJSON *obj, const char *key, const char **out, err_t *why) {
    const cJSON *v = td_get(obj, key);
    char d[48];
    *out = NULL;
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsString(v))
        return td_bad(why, "%s: expected a string, got %s", key, td_desc(v, d, sizeof d));
    *out = v->valuestring;
    return 0;
}

// A present field that is not null, false or an empty array.
int td_present(const cJSON *v) {
    return v && !cJSON_IsNull(v) && !cJSON_IsFalse(v) && !(cJSON_IsArray(v) && !v->child);
}

static const char *const chat_roles[] = {"system", "user", "assistant"};

static const char *known_role(const char *r) {
    for (int i = 0; i < 3; i++)
        if (strcmp(r, chat_roles[i]) == 0) return chat_roles[i];
    return NULL;
}

// OpenAI's roles; "function" is the legacy form of "tool".
static const char *openai_role(const char *r) {
    static const char *const extra[] = {"tool", "function"};
    for (int i = 0; i < 2; i++)
        if (strcmp(r, extra[i]) == 0) return extra[i];
    return known_role(r);
}

// An assistant message's weight: 1 unless "weight" says 0.
static int read_weight(const cJSON *m, int i, const char *role, int *weight, err_t *why) {
    char d[48];
    const cJSON *w = td_get(m, "weight");
    *weight = 1;
    if (!w) return 0;
    if (role != chat_roles[2]) return td_bad(why, "messages[%d].weight: only assistant messages take a weight", i);
    if (!cJSON_IsNumber(w) || (w->valuedouble != 0 && w->valuedouble != 1))
        return td_bad(why, "messages[%d].weight: bad weight %s (expected 0 or 1)", i, td_desc(w, d, sizeof d));
    *weight = w->valuedouble != 0;
    return 0;
}

// One message of an OpenAI line. An assistant message with tool calls may
// have no content (null, absent or "").
static int openai_message(const cJSON *m, int i, td_conv *c, err_t *why) {
    char d[48], path[64];
    if (!cJSON_IsObject(m)) return td_bad(why, "messages[%d]: expected an object, got %s", i, td_desc(m, d, sizeof d));
    const cJSON *r = td_get(m, "role");
    if (!cJSON_IsString(r))
        return td_bad(why, "messages[%d].role: expected a string, got %s", i, td_desc(r, d, sizeof d));
    const char *role = openai_role(r->valuestring);
    if (!role)
        return td_bad(why, "messages[%d].role: unknown role %s (expected system, user, assistant, tool or function)",
                      i, td_clip(r->valuestring, d, sizeof d));
    int weight, n_calls = 0, rc = read_weight(m, i, role, &weight, why);
    if (rc) return rc;
    if (strcmp(role, "tool") == 0 || strcmp(role, "function") == 0)
        return td_openai_result(c, m, i, strcmp(role, "function") == 0, why);
    if (role == chat_roles[2] && (rc = td_openai_calls(c, m, i, &n_calls, why))) return rc;
    if (role != chat_roles[2] && (td_present(td_get(m, "tool_calls")) || td_present(td_get(m, "function_call"))))
        return td_bad(why, "messages[%d].%s: only assistant messages make tool calls", i,
                      td_present(td_get(m, "tool_calls")) ? "tool_calls" : "function_call");
    const cJSON *content = td_get(m, "content");
    const char *text = NULL;
    snprintf(path, sizeof path, "messages[%d].content", i);
    int none = !content || cJSON_IsNull(content) || (cJSON_IsString(content) && !*content->valuestring);
    if (!(n_calls > 0 && none) && (rc = td_read_content(c, content, path, &text, why))) return rc;
    return td_conv_add(c, role, text, weight);
}

static int parse_openai(const cJSON *root, td_conv *c, err_t *why) {
    char d[48];
    int rc = td_tools_openai(c, root, why);
    if (rc) return rc;
    const cJSON *ms = td_get(root, "messages");
    if (!cJSON_IsArray(ms)) return td_bad(why, "messages: expected an array, got %s", td_desc(ms, d, sizeof d));
    if (!ms->child) return td_bad(why, "messages: empty");
    int i = 0;
    for (const cJSON *m = ms->child; m && !rc; m = m->next, i++) rc = openai_message(m, i, c, why);
    return rc;
}

static int parse_alpaca(const cJSON *root, td_conv *c, err_t *why) {
    char d[48];
    const cJSON *ins = td_get(root, "instruction"), *out = td_get(root, "output"), *hist = td_get(root, "history");
    const char *input, *system;
    if (!cJSON_IsString(ins))
        return td_bad(why, "instruction: expected a string, got %s", td_desc(ins, d, sizeof d));
    if (!*ins->valuestring) return td_bad(why, "instruction: empty content");
    if (!cJSON_IsString(out)) return td_bad(why, "output: expected a string, got %s", td_desc(out, d, sizeof d));
    if (!*out->valuestring) return td_bad(why, "output: empty content");
    int rc = read_opt_string(root, "input", &input, why);
    if (!rc) rc = read_opt_string(root, "system", &system, why);
    if (rc) return rc;
    if (system && *system && (rc = td_conv_add(c, "system", system, 1))) return rc;
    if (hist && !cJSON_IsNull(hist)) {
        if (!cJSON_IsArray(hist))
            return td_bad(why, "history: expected an array of [instruction, output], got %s",
                          td_desc(hist, d, sizeof d));
        int i = 0;
        for (const cJSON *h = hist->child; h; h = h->next, i++) {
            const cJSON *q = cJSON_GetArrayItem(h, 0), *a = cJSON_GetArrayItem(h, 1);
            if (!cJSON_IsArray(h) || cJSON_GetArraySize(h) != 2 || !cJSON_IsString(q) || !cJSON_IsString(a))
                return td_bad(why, "history[%d]: expected [instruction, output] (two strings), got %s", i,
                              td_desc(h, d, sizeof d));
            if (!*q->valuestring || !*a->valuestring)
                return td_bad(why, "history[%d][%d]: empty content", i, *q->valuestring ? 1 : 0);
            if ((rc = td_conv_add(c, "user", q->valuestring, 1)) ||
                (rc = td_conv_add(c, "assistant", a->valuestring, 1)))
                return rc;
        }
    }
    const char *user = ins->valuestring;
    if (input && *input && !(user = td_conv_join(c, user, "\n\n", input))) return TD_OOM;
    if ((rc = td_conv_add(c, "user", user, 1)) || (rc = td_conv_add(c, "assistant", out->valuestring, 1))) return rc;
    return 0;
}

// ShareGPT's speaker names, with the OpenAI ones accepted too.
// function_call and observation are tool turns (LLaMA-Factory's names).
static const char *sharegpt_role(const char *from) {
    if (strcmp(from, "human") == 0) return "user";
    if (strcmp(from, "gpt") == 0) return "assistant";
    if (strcmp(from, "function_call") == 0) return "function_call";
    if (strcmp(from, "observation") == 0) return "observation";
    return known_role(from);
}

// conversations[i]. *calls: this entry was a function_call (the next one,
// if a function_call too, joins its message as a parallel call).
static int sharegpt_entry(const cJSON *m, int i, td_conv *c, int *calls, err_t *why) {
    char d[48], path[64];
    if (!cJSON_IsObject(m))
        return td_bad(why, "conversations[%d]: expected an object, got %s", i, td_desc(m, d, sizeof d));
    const cJSON *f = td_get(m, "from");
    if (!cJSON_IsString(f))
        return td_bad(why, "conversations[%d].from: expected a string, got %s", i, td_desc(f, d, sizeof d));
    const char *role = sharegpt_role(f->valuestring);
    if (!role)
        return td_bad(why, "conversations[%d].from: unknown role %s (expected system, human, gpt, user, "
                      "assistant, function_call or observation)", i, td_clip(f->valuestring, d, sizeof d));
    const cJSON *v = td_get(m, "value");
    snprintf(path, sizeof path, "conversations[%d].value", i);
    if (v && !cJSON_IsString(v)) return td_bad(why, "%s: expected a string, got %s", path, td_desc(v, d, sizeof d));
    const char *text;
    int rc = td_read_content(c, v, path, &text, why), join = *calls;
    *calls = strcmp(role, "function_call") == 0;
    if (rc) return rc;
    if (*calls) return td_sharegpt_call(c, text, i, join, why);
    if (strcmp(role, "observation") == 0) return td_sharegpt_result(c, text, i, why);
    return td_conv_add(c, role, text, 1);
}

static int parse_sharegpt(const cJSON *root, td_conv *c, err_t *why) {
    char d[48];
    const cJSON *cs = td_get(root, "conversations");
    const char *system;
    int rc = read_opt_string(root, "system", &system, why);
    if (!rc) rc = td_tools_sharegpt(c, root, why);
    if (rc) return rc;
    if (!cJSON_IsArray(cs))
        return td_bad(why, "conversations: expected an array, got %s", td_desc(cs, d, sizeof d));
    if (!cs->child) return td_bad(why, "conversations: empty");
    if (system && *system && (rc = td_conv_add(c, "system", system, 1))) return rc;
    int i = 0, calls = 0;
    for (const cJSON *m = cs->child; m && !rc; m = m->next, i++) rc = sharegpt_entry(m, i, c, &calls, why);
    return rc;
}

static data_format detect_format(const cJSON *root) {
    if (td_get(root, "messages")) return DATA_FMT_OPENAI;
    if (td_get(root, "conversations")) return DATA_FMT_SHAREGPT;
    if (td_get(root, "instruction") || td_get(root, "output")) return DATA_FMT_ALPACA;
    return DATA_FMT_NONE;
}

// Every example needs something to learn: an assistant message with weight 1.
static int check_assistant(const td_conv *c, err_t *why) {
    int any = 0, weighted = 0;
    for (int i = 0; i < c->n; i++)
        if (strcmp(c->msgs[i].role, "assistant") == 0) any = 1, weighted |= c->weights[i] != 0;
    if (!any) return td_bad(why, "no assistant message");
    if (!weighted) return td_bad(why, "no assistant message with weight 1 (all have weight 0)");
    return 0;
}

// ---------------------------------------------------------------------------
// Tokenizing

static int is_llama(chat_family f) {
    return f == CHAT_LLAMA3 || f == CHAT_LLAMA3_GENPROMPT || f == CHAT_LLAMA31;
}

// The turn markers the family's template writes must be added tokens of the
// tokenizer; otherwise it belongs to another model family and every turn
// would be plain text.
static int check_markers(const data_opts *o, err_t *err) {
    static const char *const chatml[] = {"<|im_start|>", "<|im_end|>", NULL};
    static const char *const llama[] = {"<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", NULL};
    int llama_family = is_llama(o->family);
    for (const char *const *mk = llama_family ? llama : chatml; *mk; mk++) {
        size_t len;
        if (tok_added_at(o->tok, *mk, strlen(*mk), &len) >= 0 && len == strlen(*mk)) continue;
        if (llama_family)
            return err_set(err, "the tokenizer has no added tokens <|start_header_id|>, <|end_header_id|> and "
                                "<|eot_id|> that the %s chat template writes (check --chat-template)",
                           chat_family_name(o->family));
        return err_set(err, "the tokenizer has no added tokens <|im_start|> and <|im_end|> that the %s chat "
                            "template writes (check --chat-template)", chat_family_name(o->family));
    }
    return 0;
}

// Renders and tokenizes one conversation (with its tools and calls; tools
// may be NULL) into *ex: chat_encode over the rendering's segments, with the
// assistant messages of weight 0 untrained. TD_BAD with why, or TD_OOM.
static int encode_conv(const data_opts *o, const chat_msg *m, const int *weights, int n, const chat_tools *tools,
                       data_example *ex, err_t *why) {
    memset(ex, 0, sizeof *ex);
    const chat_opts co = {.add_generation_prompt = 0, .enable_thinking = -1, .bos_token = o->bos_token};
    chat_prompt *p = chat_render_tools(o->family, m, n, &co, tools, why);
    if (!p) return strstr(why->msg, "out of memory") ? TD_OOM : TD_BAD;
    for (int s = 0; weights && s < p->n_segs; s++)
        if (p->segs[s].msg_index >= 0 && weights[p->segs[s].msg_index] == 0) p->segs[s].trained = 0;
    size_t len = 0;
    uint8_t *mask = NULL;
    int32_t *ids = chat_encode(o->tok, p, &len, &mask, why);
    chat_prompt_free(p);
    if (!ids) return strstr(why->msg, "out of memory") ? TD_OOM : (err_wrap(why, "tokenizing"), TD_BAD);
    int full = len > INT32_MAX ? INT32_MAX : (int)len, kept = full;
    ex->n_messages = n;
    if (kept > o->max_seq_len) ex->truncated = 1, kept = o->max_seq_len;
    for (int i = 0; i < kept; i++) ex->n_trained += mask[i];
    if (ex->n_trained == 0) {
        int first = kept;
        while (first < full && !mask[first]) first++;
        err_set(why, "no trained token within max-seq-len %d (the first is token %d of %d)", o->max_seq_len,
                first + 1, full);
        free(ids);
        free(mask);
        return TD_BAD;
    }
    // Shrink to fit: a large file holds many of these.
    int32_t *small_ids = realloc(ids, (size_t)kept * sizeof *ids);
    uint8_t *small_mask = realloc(mask, (size_t)kept);
    ex->ids = small_ids ? small_ids : ids;
    ex->mask = small_mask ? small_mask : mask;
    ex->n = kept;
    return 0;
}

static int check_opts(const data_opts *o, err_t *err) {
    if (!o || !o->tok) return err_set(err, "data: no tokenizer");
    if (o->family < 0 || o->family >= CHAT_NFAMILIES) return err_set(err, "data: unknown chat template family");
    if (o->max_seq_len <= 0) return err_set(err, "data: max-seq-len must be positive, got %d", o->max_seq_len);
    return 0;
}

int data_encode_chat(const data_opts *opts, const chat_msg *msgs, const int *weights, int n,
                     data_example *ex, err_t *err) {
    memset(ex, 0, sizeof *ex);
    if (check_opts(opts, err) || check_markers(opts, err)) return -1;
    if (n < 1 || !msgs) return err_set(err, "data: no messages");
    int any = 0;
    for (int i = 0; i < n; i++) {
        if (!msgs[i].role || !known_role(msgs[i].role) || !msgs[i].content)
            return err_set(err, "data: message %d: expected role system, user or assistant and content", i);
        any |= strcmp(msgs[i].role, "assistant") == 0 && (!weights || weights[i] != 0);
    }
    if (!any) return err_set(err, "no assistant message with weight 1");
    int rc = encode_conv(opts, msgs, weights, n, NULL, ex, err);
    if (rc == TD_OOM) err_set(err, "out of memory");
    return rc ? -1 : 0;
}

void data_example_free(data_example *ex) {
    if (!ex) return;
    free(ex->ids);
    free(ex->mask);
    ex->ids = NULL;
    ex->mask = NULL;
    ex->n = 0;
}

// ---------------------------------------------------------------------------
// Loading a file

typedef struct loader {
    const data_opts *o;
    data_set *ds;
    data_report *rep;
    td_conv c;
} loader;

// The line's conversation, tools and calls into *ex.
static int encode_line(loader *L, data_example *ex, err_t *why) {
    chat_tools tools;
    chat_calls *per_msg;
    chat_tool_call *flat;
    if (td_tools_view(&L->c, &tools, &per_msg, &flat)) return TD_OOM;
    int rc = encode_conv(L->o, L->c.msgs, L->c.weights, L->c.n, &tools, ex, why);
    free(per_msg);
    free(flat);
    if (rc) return rc;
    ex->n_tools = L->c.tools.n_defs;
    ex->n_calls = L->c.tools.n_calls;
    ex->n_results = L->c.tools.n_results;
    return 0;
}

// One line through every check into an example. 0 (added), TD_BLANK,
// TD_BAD with why, TD_OOM.
static int load_line(loader *L, char *line, size_t len, int too_long, err_t *why) {
    size_t max = L->o->max_line_bytes ? L->o->max_line_bytes : DATA_MAX_LINE_DEFAULT;
    if (too_long) return err_set(why, "line too long (over %zu bytes)", max);
    if (len && line[len - 1] == '\r') line[--len] = '\0';
    if (is_blank(line, len)) return TD_BLANK;
    size_t bad_at = utf8_bad_at(line, len);
    if (bad_at < len) return td_bad(why, "invalid UTF-8 at column %zu", bad_at + 1);
    if (td_json_prescan(line, len, why)) return TD_BAD;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(line, len + 1, &end, 1);
    if (!root) return td_bad(why, "invalid JSON at column %zu", end ? (size_t)(end - line) + 1 : (size_t)1);
    int rc = 0;
    char d[48];
    data_format f = detect_format(root);
    td_conv_reset(&L->c);
    if (!cJSON_IsObject(root)) {
        rc = td_bad(why, "not a JSON object (got %s)", td_desc(root, d, sizeof d));
    } else if (f == DATA_FMT_NONE) {
        rc = td_bad(why, "unknown format: expected \"messages\" (openai-chat), \"conversations\" (sharegpt) "
                    "or \"instruction\" and \"output\" (alpaca)");
    } else if (L->rep->format != DATA_FMT_NONE && f != L->rep->format) {
        rc = td_bad(why, "format %s, but the file is %s (set by line %" PRId64 ")", data_format_name(f),
                    data_format_name(L->rep->format), L->rep->format_line);
    } else {
        rc = f == DATA_FMT_OPENAI ? parse_openai(root, &L->c, why)
           : f == DATA_FMT_ALPACA ? parse_alpaca(root, &L->c, why)
                                  : parse_sharegpt(root, &L->c, why);
        if (!rc) rc = check_assistant(&L->c, why);
        if (!rc) rc = td_tools_check(&L->c, L->o->family, why);
    }
    data_example ex;
    if (!rc) rc = encode_line(L, &ex, why);
    cJSON_Delete(root);
    if (rc) return rc;
    if (td_grow((void **)&L->ds->ex, &L->ds->cap, L->ds->n + 1, sizeof *L->ds->ex)) {
        data_example_free(&ex);
        return TD_OOM;
    }
    ex.line = L->rep->lines > INT32_MAX ? INT32_MAX : (int)L->rep->lines;
    L->ds->ex[L->ds->n++] = ex;
    if (L->rep->format == DATA_FMT_NONE) L->rep->format = f, L->rep->format_line = L->rep->lines;
    return 0;
}

data_set *data_load(const char *path, const data_opts *opts, data_report *rep, err_t *err) {
    data_report local;
    data_report *R = rep ? rep : &local;
    memset(R, 0, sizeof *R);
    snprintf(R->path, sizeof R->path, "%s", path ? path : "");
    if (check_opts(opts, err)) return NULL;
    R->max_seq_len = opts->max_seq_len;
    loader L = {.o = opts, .rep = R};
    if (check_markers(opts, err)) return NULL;
    td_reader *rd = calloc(1, sizeof *rd);
    L.ds = calloc(1, sizeof *L.ds);
    if (!rd || !L.ds) {
        err_set(err, "%s: out of memory", path);
        goto fail;
    }
    if (!(rd->f = fopen(path, "rb"))) {
        err_set(err, "%s: %s", path, strerror(errno));
        goto fail;
    }
    size_t max = opts->max_line_bytes ? opts->max_line_bytes : DATA_MAX_LINE_DEFAULT;
    for (;;) {
        int too_long, r = rd_line(rd, max, &too_long);
        if (r < 0) {
            err_set(err, "%s: line %" PRId64 ": %s", path, R->lines + 1,
                    ferror(rd->f) ? strerror(errno) : "out of memory");
            goto fail;
        }
        if (r == 0) break;
        R->lines++;
        err_t why = {{0}};
        int rc = load_line(&L, rd->line, rd->len, too_long, &why);
        if (rc == TD_OOM) {
            err_set(err, "%s: line %" PRId64 ": out of memory", path, R->lines);
            goto fail;
        }
        if (rc == TD_BLANK) R->blank++;
        else if (rc == TD_BAD) td_note_bad(R, R->lines, why.msg);
    }
    L.ds->format = R->format;
    data_report_stats(R, L.ds);
    if (opts->strict && R->bad > 0) {
        err_set(err, "%s: %" PRId64 " bad line%s (strict); first: line %" PRId64 ": %s", path, R->bad,
                R->bad == 1 ? "" : "s", R->bad_lines ? R->bad_lines[0].line : 0,
                R->bad_lines ? R->bad_lines[0].reason : "?");
        goto fail;
    }
    if (L.ds->n == 0) {
        err_set(err, "%s: no usable examples (%" PRId64 " lines, %" PRId64 " bad)", path, R->lines, R->bad);
        goto fail;
    }
    fclose(rd->f);
    free(rd->line);
    free(rd);
    td_conv_free(&L.c);
    if (!rep) data_report_free(&local);
    return L.ds;
fail:
    if (rd && rd->f) fclose(rd->f);
    if (rd) free(rd->line);
    free(rd);
    td_conv_free(&L.c);
    data_free(L.ds);
    if (!rep) data_report_free(&local);
    return NULL;
}

void data_free(data_set *ds) {
    if (!ds) return;
    for (int i = 0; i < ds->n; i++) data_example_free(&ds->ex[i]);
    free(ds->ex);
    free(ds);
}

int data_count(const data_set *ds) { return ds ? ds->n : 0; }

const data_example *data_get(const data_set *ds, int i) {
    return ds && i >= 0 && i < ds->n ? &ds->ex[i] : NULL;
}

data_format data_set_format(const data_set *ds) { return ds ? ds->format : DATA_FMT_NONE; }

// ---------------------------------------------------------------------------
// Validation split

int data_split(data_set *ds, double frac, uint64_t seed, data_set **val, err_t *err) {
    *val = NULL;
    if (!(frac > 0 && frac < 1)) return err_set(err, "validation split must be between 0 and 1, got %g", frac);
    int n = ds->n;
    long k = lround(frac * n);
    if (k < 1) k = 1;
    if (k >= n)
        return err_set(err, "%d example%s: too few to hold out %g of them for validation", n, n == 1 ? "" : "s", frac);
    int *idx = malloc((size_t)n * sizeof *idx);
    uint8_t *pick = calloc((size_t)n, 1);
    data_set *v = calloc(1, sizeof *v);
    if (!idx || !pick || !v || !(v->ex = malloc((size_t)k * sizeof *v->ex))) {
        free(idx), free(pick), free(v ? v->ex : NULL), free(v);
        return err_set(err, "out of memory splitting %d examples", n);
    }
    // The first k of a Fisher-Yates shuffle seeded by seed.
    util_rng rng;
    util_rng_seed(&rng, seed);
    for (int i = 0; i < n; i++) idx[i] = i;
    for (int i = 0; i < k; i++) {
        int j = i + (int)(util_rng_next(&rng) % (uint64_t)(n - i));
        int t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
        pick[idx[i]] = 1;
    }
    int kept = 0;
    v->cap = (int)k;
    v->format = ds->format;
    for (int i = 0; i < n; i++) {
        if (pick[i]) v->ex[v->n++] = ds->ex[i];
        else ds->ex[kept++] = ds->ex[i];
    }
    ds->n = kept;
    free(idx);
    free(pick);
    *val = v;
    return 0;
}
