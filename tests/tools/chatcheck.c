// chatcheck: tests core/chat against rendered references, and renders on demand.
//
//   chatcheck compare CASES.json   render every case and compare byte for byte
//                                  with each reference it carries (tests/chat/oracle.js
//                                  and oracle.py write them); check the spans
//                                  and the segments
//   chatcheck unit                 error paths, detection, config parsing, segments
//   chatcheck render (--family NAME | --config tokenizer_config.json)
//                    [--gen] [--think 0|1] [--bos TOKEN] < messages.json
//                                  print the prompt for an OpenAI-style messages array
//
// A case: {"id", "config": path, "family": expected name, "messages": [{role,
// content, reasoning_content?}], "add_generation_prompt": bool,
// "enable_thinking": null|bool, "expected": {"js": str, "lenml": str, "py": str}}.
// The family comes from chat_from_config(config), so detection is checked too.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "chat.h"
#include "../check.h"
#include "util.h"

// ---------------------------------------------------------------------------
// Messages from JSON

// Borrows strings from the cJSON tree, which must outlive the array.
static chat_msg *msgs_from_json(const cJSON *arr, int *n, err_t *err) {
    if (!cJSON_IsArray(arr)) {
        err_set(err, "messages: expected an array");
        return NULL;
    }
    *n = cJSON_GetArraySize(arr);
    chat_msg *m = calloc((size_t)(*n > 0 ? *n : 1), sizeof *m);
    if (!m) return NULL;
    int i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(it, "role");
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(it, "content");
        const cJSON *z = cJSON_GetObjectItemCaseSensitive(it, "reasoning_content");
        m[i].role = cJSON_IsString(r) ? r->valuestring : NULL;
        m[i].content = cJSON_IsString(c) ? c->valuestring : NULL;
        m[i].reasoning = cJSON_IsString(z) ? z->valuestring : NULL;
        i++;
    }
    return m;
}

// A case's tools and tool calls, borrowed from its cJSON tree: "tools" (an
// array of objects) and each message's "tool_calls" ([{function: {name,
// arguments}}]). Free with tools_free.
typedef struct case_tools {
    chat_tools t;
    const cJSON **defs;
    chat_calls *calls;
    chat_tool_call *all;
} case_tools;

static void tools_free(case_tools *ct) {
    free(ct->defs);
    free(ct->calls);
    free(ct->all);
}

// Returns 1 when the case has tools or tool calls (ct filled), 0 when not,
// -1 on out of memory.
static int tools_from_json(const cJSON *c, int n, case_tools *ct) {
    const cJSON *tools = cJSON_GetObjectItemCaseSensitive(c, "tools"), *msgs = cJSON_GetObjectItemCaseSensitive(c, "messages");
    int nd = cJSON_GetArraySize(tools), total = 0, i = 0, k = 0;
    const cJSON *it, *call;
    cJSON_ArrayForEach(it, msgs) total += cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(it, "tool_calls"));
    *ct = (case_tools){0};
    if (!cJSON_IsArray(tools) && total == 0) return 0;
    ct->defs = calloc((size_t)nd + 1, sizeof *ct->defs);
    ct->calls = calloc((size_t)n + 1, sizeof *ct->calls);
    ct->all = calloc((size_t)total + 1, sizeof *ct->all);
    if (!ct->defs || !ct->calls || !ct->all) return -1;
    cJSON_ArrayForEach(it, tools) ct->defs[i++] = it;
    i = 0;
    cJSON_ArrayForEach(it, msgs) {
        ct->calls[i].calls = &ct->all[k];
        cJSON_ArrayForEach(call, cJSON_GetObjectItemCaseSensitive(it, "tool_calls")) {
            const cJSON *fn = cJSON_GetObjectItemCaseSensitive(call, "function");
            ct->all[k++] = (chat_tool_call){
                .id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(call, "id")),
                .name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(fn, "name")),
                .arguments = cJSON_GetObjectItemCaseSensitive(fn, "arguments"),
            };
            ct->calls[i].n++;
        }
        i++;
    }
    ct->t = (chat_tools){.defs = ct->defs, .n_defs = nd, .calls = ct->calls};
    return 1;
}

// ---------------------------------------------------------------------------
// compare

// Prints a string with control bytes escaped, at most max bytes.
static void print_escaped(FILE *f, const char *s, size_t n, size_t max) {
    for (size_t i = 0; i < n && i < max; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n') fputs("\\n", f);
        else if (c == '\t') fputs("\\t", f);
        else if (c == '\\') fputs("\\\\", f);
        else if (c < 0x20 || c == 0x7f) fprintf(f, "\\x%02x", c);
        else fputc(c, f);
    }
    if (n > max) fputs("...", f);
}

// A diff-like excerpt around the first differing byte.
static void print_mismatch(const char *id, const char *oracle, const char *want, const char *got) {
    size_t i = 0;
    while (want[i] && want[i] == got[i]) i++;
    size_t from = i > 60 ? i - 60 : 0;
    fprintf(stderr, "MISMATCH %s vs %s: first difference at byte %zu (want %zu bytes, got %zu)\n", id, oracle, i,
            strlen(want), strlen(got));
    fputs("  - ", stderr);
    print_escaped(stderr, want + from, strlen(want + from), 160);
    fputs("\n  + ", stderr);
    print_escaped(stderr, got + from, strlen(got + from), 160);
    fputc('\n', stderr);
}

static int span_ok(const char *out, const chat_span *s, const chat_msg *m, chat_family f) {
    int llama = f == CHAT_LLAMA3 || f == CHAT_LLAMA3_GENPROMPT || f == CHAT_LLAMA31;
    const char *head = llama ? "<|start_header_id|>assistant<|end_header_id|>\n\n" : "<|im_start|>assistant\n";
    const char *tail = llama ? "<|eot_id|>" : "<|im_end|>";
    size_t hl = strlen(head), tl = strlen(tail);
    if (s->start < hl || s->end < s->start + tl) return 0;
    if (memcmp(out + s->start - hl, head, hl) != 0 || memcmp(out + s->end - tl, tail, tl) != 0) return 0;
    // What the model writes is the message content (trimmed for llama, its
    // part after </think> for qwen3): the span minus its marker must sit in it,
    // unless qwen3 rendered a think block first.
    size_t body = s->end - tl - s->start;
    if (f == CHAT_QWEN3 && body >= 7 && memcmp(out + s->start, "<think>", 7) == 0) return 1;
    char *text = strndup(out + s->start, body);
    int ok = text && strstr(m->content, text) != NULL;
    free(text);
    return ok;
}

// Checks the spans: one per assistant message, in order, each framed by the
// family's header and end-of-turn marker.
static int spans_ok(const char *out, const chat_span *sp, int ns, const chat_msg *m, int n, chat_family f,
                    const char *id) {
    int want = 0, k = 0;
    for (int i = 0; i < n; i++) want += strcmp(m[i].role, "assistant") == 0;
    if (ns != want) {
        fprintf(stderr, "SPANS %s: %d spans for %d assistant messages\n", id, ns, want);
        return 0;
    }
    for (int i = 0; i < n; i++) {
        if (strcmp(m[i].role, "assistant") != 0) continue;
        const chat_span *s = &sp[k];
        if (s->msg_index != i || (k > 0 && s->start < sp[k - 1].end) || !span_ok(out, s, &m[i], f)) {
            fprintf(stderr, "SPANS %s: span %d [%zu,%zu) of message %d is wrong\n", id, k, s->start, s->end,
                    s->msg_index);
            return 0;
        }
        k++;
    }
    return 1;
}

// Checks chat_render_segments against chat_render's text: the segments
// cover it in order, non-empty and maximal; content comes from its message
// (its content or reasoning; llama3.1's JSON-escaped tool results are
// pinned by test_segments instead); only assistant messages are trained.
static int segs_ok(const chat_prompt *p, const char *out, const chat_msg *m, int n, chat_family f, const char *id,
                   const chat_tools *tools) {
    const char *why = NULL;
    size_t at = 0;
    if (p->len != strlen(out) || strcmp(p->text, out) != 0) why = "text differs from chat_render's";
    for (int i = 0; i < p->n_segs && !why; i++) {
        const chat_seg *g = &p->segs[i], *prev = i ? &p->segs[i - 1] : NULL;
        int mi = g->msg_index;
        if (g->start != at || g->end <= g->start) why = "not contiguous and non-empty";
        else if (prev && prev->kind == g->kind && prev->msg_index == mi && prev->trained == g->trained)
            why = "not maximal";
        else if (mi < -1 || mi >= n || (g->kind == CHAT_CONTENT && mi < 0 && !tools)) why = "bad msg_index";
        else if (g->trained && (mi < 0 || strcmp(m[mi].role, "assistant") != 0)) why = "trained outside assistant";
        else if (tools && (mi < 0 || (tools->calls && tools->calls[mi].n > 0) || (mi == 0 && tools->n_defs > 0) ||
                           (f == CHAT_LLAMA31 && tools->n_defs > 0 && strcmp(m[mi].role, "user") == 0))) {
            // Tool JSON and call names: pinned by test_tool_segments instead.
        } else if (g->kind == CHAT_CONTENT && !(f == CHAT_LLAMA31 && strcmp(m[mi].role, "tool") == 0)) {
            char *text = strndup(p->text + g->start, g->end - g->start);
            if (!strstr(m[mi].content, text) && !(m[mi].reasoning && strstr(m[mi].reasoning, text)))
                why = "content not from its message";
            free(text);
        }
        at = g->end;
    }
    if (!why && at != p->len) why = "segments end before the text";
    if (why) fprintf(stderr, "SEGMENTS %s: %s\n", id, why);
    return why == NULL;
}

typedef struct tally {
    int cases, compared[3], mismatches, errors;
} tally;

static const char *const oracles[3] = {"js", "lenml", "py"};

// A case with tools: chat_render_tools against each reference, and its
// segments (spans come from the same trained segments).
static void compare_tools_case(const char *id, chat_family f, const chat_msg *m, int n, const chat_opts *o,
                               const case_tools *ct, const cJSON *exp, tally *t) {
    err_t err = {{0}};
    chat_prompt *p = chat_render_tools(f, m, n, o, &ct->t, &err);
    if (!p) {
        fprintf(stderr, "ERROR %s: %s\n", id, err.msg);
        t->errors++;
        return;
    }
    for (int k = 0; k < 3; k++) {
        const char *want = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(exp, oracles[k]));
        if (!want) continue;
        t->compared[k]++;
        if (strcmp(want, p->text) != 0) {
            print_mismatch(id, oracles[k], want, p->text);
            t->mismatches++;
        }
    }
    if (!segs_ok(p, p->text, m, n, f, id, &ct->t)) t->errors++;
    chat_prompt_free(p);
}

static void compare_case(const cJSON *c, tally *t) {
    const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "id"));
    const char *config = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "config"));
    const char *family = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "family"));
    const cJSON *exp = cJSON_GetObjectItemCaseSensitive(c, "expected");
    const cJSON *think = cJSON_GetObjectItemCaseSensitive(c, "enable_thinking");
    id = id ? id : "?";
    t->cases++;
    err_t err = {{0}};
    chat_family f;
    char *bos = NULL;
    if (!config || chat_from_config(config, &f, &bos, &err) != 0) {
        fprintf(stderr, "ERROR %s: %s\n", id, config ? err.msg : "no config");
        t->errors++;
        return;
    }
    if (family && strcmp(family, chat_family_name(f)) != 0) {
        fprintf(stderr, "DETECT %s: %s detected as %s, expected %s\n", id, config, chat_family_name(f), family);
        t->errors++;
    }
    int n = 0;
    chat_msg *m = msgs_from_json(cJSON_GetObjectItemCaseSensitive(c, "messages"), &n, &err);
    chat_opts o = {
        .add_generation_prompt = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "add_generation_prompt")),
        .enable_thinking = cJSON_IsBool(think) ? cJSON_IsTrue(think) : -1,
        // Hugging Face passes the config's bos_token; a config without one
        // renders it as an empty (undefined) string.
        .bos_token = bos ? bos : "",
    };
    chat_span *spans = NULL;
    int ns = 0;
    case_tools ct;
    int has_tools = m ? tools_from_json(c, n, &ct) : 0;
    if (has_tools) {
        compare_tools_case(id, f, m, n, &o, &ct, exp, t);
        tools_free(&ct);
        free(m);
        free(bos);
        return;
    }
    char *out = m ? chat_render(f, m, n, &o, &spans, &ns, &err) : NULL;
    if (!out) {
        fprintf(stderr, "ERROR %s: %s\n", id, err.msg);
        t->errors++;
    } else {
        for (int k = 0; k < 3; k++) {
            const char *want = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(exp, oracles[k]));
            if (!want) continue;
            t->compared[k]++;
            if (strcmp(want, out) != 0) {
                print_mismatch(id, oracles[k], want, out);
                t->mismatches++;
            }
        }
        if (!spans_ok(out, spans, ns, m, n, f, id)) t->errors++;
        chat_prompt *p = chat_render_segments(f, m, n, &o, &err);
        if (!p || !segs_ok(p, out, m, n, f, id, NULL)) t->errors++;
        chat_prompt_free(p);
    }
    free(out);
    free(spans);
    free(m);
    free(bos);
}

static int cmd_compare(const char *path) {
    err_t err = {{0}};
    char *text = util_read_file(path, NULL, &err);
    if (!text) {
        fprintf(stderr, "chatcheck: %s\n", err.msg);
        return 1;
    }
    cJSON *root = cJSON_Parse(text);
    free(text);
    const cJSON *cases = cJSON_GetObjectItemCaseSensitive(root, "cases"), *c;
    if (!cJSON_IsArray(cases)) {
        fprintf(stderr, "chatcheck: %s: expected {\"cases\": [...]}\n", path);
        cJSON_Delete(root);
        return 1;
    }
    tally t = {0};
    cJSON_ArrayForEach(c, cases) compare_case(c, &t);
    cJSON_Delete(root);
    printf("chat oracle: %d cases; compared with js %d, lenml %d, py %d; %d mismatches, %d other errors\n",
           t.cases, t.compared[0], t.compared[1], t.compared[2], t.mismatches, t.errors);
    return t.cases > 0 && t.compared[0] > 0 && t.mismatches == 0 && t.errors == 0 ? 0 : 1;
}

// ---------------------------------------------------------------------------
// unit

static char *render1(chat_family f, const chat_msg *m, int n, int gen, err_t *err) {
    chat_opts o = {.add_generation_prompt = gen, .enable_thinking = -1, .bos_token = NULL};
    return chat_render(f, m, n, &o, NULL, NULL, err);
}

static void test_errors(void) {
    err_t err = {{0}};
    chat_msg bad_role[] = {{"user", "hi", NULL}, {"bot", "hello", NULL}};
    CHECK(render1(CHAT_QWEN3, bad_role, 2, 1, &err) == NULL);
    CHECK(strstr(err.msg, "message 1") && strstr(err.msg, "'bot'"), "%s", err.msg);

    chat_msg no_content[] = {{"system", "s", NULL}, {"user", NULL, NULL}};
    CHECK(render1(CHAT_CHATML, no_content, 2, 1, &err) == NULL);
    CHECK(strstr(err.msg, "message 1 (user)") && strstr(err.msg, "content"), "%s", err.msg);

    chat_msg no_role[] = {{NULL, "x", NULL}};
    CHECK(render1(CHAT_LLAMA3, no_role, 1, 1, &err) == NULL);
    CHECK(strstr(err.msg, "message 0") && strstr(err.msg, "role"), "%s", err.msg);

    chat_msg tool[] = {{"user", "x", NULL}, {"tool", "42", NULL}};
    CHECK(render1(CHAT_LLAMA3, tool, 2, 1, &err) == NULL);
    CHECK(strstr(err.msg, "message 1 (tool)"), "%s", err.msg);
    char *ok = render1(CHAT_QWEN3, tool, 2, 1, &err);
    CHECK(ok != NULL, "%s", err.msg);
    free(ok);

    CHECK(render1(CHAT_QWEN3, tool, 0, 1, &err) == NULL);
    CHECK(strstr(err.msg, "no messages"), "%s", err.msg);
    CHECK(render1((chat_family)99, tool, 1, 1, &err) == NULL);

    chat_family f;
    CHECK(chat_family_parse("llama2", &f, &err) != 0);
    CHECK(strstr(err.msg, "llama2") && strstr(err.msg, "qwen3"), "%s", err.msg);
    for (int k = 0; k < CHAT_NFAMILIES; k++) {
        CHECK(chat_family_parse(chat_family_name((chat_family)k), &f, &err) == 0 && f == (chat_family)k);
    }
    CHECK(strcmp(chat_family_name((chat_family)-1), "unknown") == 0);
}

static void detect_fails(const char *tpl, const char *why) {
    err_t err = {{0}};
    chat_family f;
    CHECK(chat_detect(tpl, &f, &err) != 0, "%s detected as %s", why, chat_family_name(f));
    CHECK(strstr(err.msg, "unsupported chat template"), "%s: %s", why, err.msg);
}

static void test_detect(void) {
    detect_fails(NULL, "NULL");
    detect_fails("", "empty");
    detect_fails("{% for m in messages %}[INST] {{ m.content }} [/INST]{% endfor %}", "mistral");
    // Qwen1.5: ChatML markers, default system without the period, and no
    // <|im_end|> after the last turn.
    detect_fails("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
                 "{{ '<|im_start|>system\\nYou are a helpful assistant<|im_end|>\\n' }}{% endif %}"
                 "{{'<|im_start|>' + message['role'] + '\\n' + message['content']}}{% endfor %}",
                 "qwen1.5");
    // ChatML layout with an unknown default system prompt.
    detect_fails("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
                 "{{ '<|im_start|>system\\nYou are SmolLM<|im_end|>\\n' }}{% endif %}"
                 "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
                 "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
                 "smollm");
    // Phi-4 uses <|im_sep|> after the role.
    detect_fails("{% for message in messages %}{{'<|im_start|>' + message['role'] + '<|im_sep|>' + "
                 "message['content'] + '<|im_end|>'}}{% endfor %}",
                 "phi-4");
    // Llama 3.2 dates the system turn with strftime_now.
    detect_fails("{{- bos_token }}{%- if strftime_now is defined %}{%- set date_string = strftime_now('%d %b %Y') %}"
                 "{%- endif %}{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ "
                 "message['content'] | trim + '<|eot_id|>' }}",
                 "llama3.2");

    err_t err = {{0}};
    chat_family f = CHAT_QWEN3;
    const char *chatml_dq = "{% for message in messages %}{{\"<|im_start|>\" + message.role + \"\\n\" + "
                            "message.content + \"<|im_end|>\" + \"\\n\"}}{% endfor %}";
    CHECK(chat_detect(chatml_dq, &f, &err) == 0 && f == CHAT_CHATML, "%s", err.msg);
}

static void test_config(void) {
    err_t err = {{0}};
    chat_family f;
    char *bos = NULL;
    CHECK(chat_from_config("no/such/tokenizer_config.json", &f, &bos, &err) != 0);
    CHECK(strstr(err.msg, "no/such/tokenizer_config.json"), "%s", err.msg);

    // A list of named templates (the "default" one is used), bos_token as an
    // AddedToken object; and a file with no template at all.
    char dir[] = "/tmp/chatcheck.XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char *path = util_path_join(dir, "tokenizer_config.json");
    const char *list = "{\"bos_token\": {\"__type\": \"AddedToken\", \"content\": \"<s>\"}, \"chat_template\": ["
                       "{\"name\": \"tool_use\", \"template\": \"{{ '[INST]' }}\"},"
                       "{\"name\": \"default\", \"template\": \"{% for message in messages %}{{'<|im_start|>' + "
                       "message['role'] + '\\\\n' + message['content'] + '<|im_end|>' + '\\\\n'}}{% endfor %}\"}]}";
    CHECK(util_write_file_atomic(path, list, strlen(list), &err) == 0, "%s", err.msg);
    CHECK(chat_from_config(path, &f, &bos, &err) == 0 && f == CHAT_CHATML, "%s", err.msg);
    CHECK(bos && strcmp(bos, "<s>") == 0);
    free(bos);
    const char *nodefault = "{\"chat_template\": [{\"name\": \"rag\", \"template\": \"x\"}]}";
    CHECK(util_write_file_atomic(path, nodefault, strlen(nodefault), &err) == 0, "%s", err.msg);
    CHECK(chat_from_config(path, &f, &bos, &err) != 0);
    CHECK(strstr(err.msg, "no template named \"default\""), "%s", err.msg);

    const char *none = "{\"bos_token\": null}";
    CHECK(util_write_file_atomic(path, none, strlen(none), &err) == 0, "%s", err.msg);
    CHECK(chat_from_config(path, &f, &bos, &err) != 0);
    CHECK(strstr(err.msg, "no chat_template"), "%s", err.msg);

    // chat_template.jinja beside the config (newer Hugging Face folders).
    char *jinja = util_path_join(dir, "chat_template.jinja");
    const char *tpl = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
                      "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}";
    CHECK(util_write_file_atomic(jinja, tpl, strlen(tpl), &err) == 0, "%s", err.msg);
    CHECK(chat_from_config(path, &f, &bos, &err) == 0 && f == CHAT_CHATML && bos == NULL, "%s", err.msg);

    const char *broken = "{\"chat_template\": ";
    CHECK(util_write_file_atomic(path, broken, strlen(broken), &err) == 0, "%s", err.msg);
    CHECK(chat_from_config(path, &f, &bos, &err) != 0);
    CHECK(strstr(err.msg, "not a JSON object"), "%s", err.msg);
    remove(jinja);
    remove(path);
    remove(dir);
    free(jinja);
    free(path);
}

// Python's str.strip() whitespace, where JavaScript's trim differs: the JS
// oracle cannot check these, so they are pinned here.
static void test_python_trim(void) {
    err_t err = {{0}};
    chat_msg m[] = {{"user", "\x1c\x1d \xc2\x85x\xef\xbb\xbf\xe3\x80\x80\x1e\x1f", NULL}};
    char *out = render1(CHAT_LLAMA3_GENPROMPT, m, 1, 0, &err);
    CHECK(out && strcmp(out, "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n"
                             "x\xef\xbb\xbf<|eot_id|>") == 0, "%s", out ? out : err.msg);
    free(out);
    // Invalid UTF-8 at either end is kept, never read past.
    chat_msg bad[] = {{"user", "\xe3\x80 y \xc2", NULL}};
    out = render1(CHAT_LLAMA3_GENPROMPT, bad, 1, 0, &err);
    CHECK(out && strstr(out, "\n\n\xe3\x80 y \xc2<|eot_id|>"), "%s", out ? out : err.msg);
    free(out);
}

static void test_spans(void) {
    err_t err = {{0}};
    chat_msg m[] = {{"user", "q", NULL}, {"assistant", "a1", NULL}, {"user", "q2", NULL},
                    {"assistant", "a2", "why"}};
    chat_opts o = {.add_generation_prompt = 0, .enable_thinking = -1, .bos_token = NULL};
    chat_span *sp = NULL;
    int ns = 0;
    char *out = chat_render(CHAT_QWEN3, m, 4, &o, &sp, &ns, &err);
    CHECK(out && ns == 2, "%s", err.msg);
    if (out && ns == 2) {
        CHECK(sp[0].msg_index == 1 && sp[1].msg_index == 3);
        CHECK(strncmp(out + sp[0].start, "a1<|im_end|>", sp[0].end - sp[0].start) == 0);
        const char *want = "<think>\nwhy\n</think>\n\na2<|im_end|>";
        CHECK(sp[1].end - sp[1].start == strlen(want) && strncmp(out + sp[1].start, want, strlen(want)) == 0);
    }
    free(out);
    free(sp);
    // No assistant message: no array.
    sp = (chat_span *)&err;
    out = chat_render(CHAT_LLAMA3, m, 1, &o, &sp, &ns, &err);
    CHECK(out && sp == NULL && ns == 0);
    free(out);
    // opts NULL: defaults (no generation prompt, Llama 3's own bos).
    out = chat_render(CHAT_LLAMA3_GENPROMPT, m, 1, NULL, NULL, NULL, &err);
    CHECK(out && strcmp(out, "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nq<|eot_id|>") == 0);
    free(out);
}

// The segments as text: each one "|" + M (markup) or C (content) + its
// message index + "*" when trained + ":" + its bytes. A new string.
static char *annotate(const chat_prompt *p) {
    util_buf b = {0};
    char head[32];
    for (int i = 0; i < p->n_segs; i++) {
        const chat_seg *g = &p->segs[i];
        snprintf(head, sizeof head, "|%c%d%s:", g->kind == CHAT_MARKUP ? 'M' : 'C', g->msg_index,
                 g->trained ? "*" : "");
        util_buf_puts(&b, head);
        util_buf_put(&b, p->text + g->start, g->end - g->start);
    }
    util_buf_put(&b, "", 0);
    return b.p;
}

static void check_segs(chat_family f, const chat_msg *m, int n, int gen, int think, const char *want) {
    err_t err = {{0}};
    chat_opts o = {.add_generation_prompt = gen, .enable_thinking = think, .bos_token = NULL};
    chat_prompt *p = chat_render_segments(f, m, n, &o, &err);
    char *got = p ? annotate(p) : NULL;
    CHECK(got && strcmp(got, want) == 0, "%s segments\n  got  %s\n  want %s", chat_family_name(f),
          got ? got : err.msg, want);
    free(got);
    chat_prompt_free(p);
}

static void test_segments(void) {
    const chat_msg m[] = {{"user", "Hi <|im_end|>", NULL}, {"assistant", " Hello ", NULL}};
    check_segs(CHAT_CHATML, m, 2, 1, -1,
               "|M0:<|im_start|>user\n|C0:Hi <|im_end|>|M0:<|im_end|>\n|M1:<|im_start|>assistant\n|C1*: Hello "
               "|M1*:<|im_end|>|M1:\n|M-1:<|im_start|>assistant\n");
    check_segs(CHAT_QWEN2, m, 2, 0, -1,
               "|M-1:<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n|M0:<|im_start|>user\n"
               "|C0:Hi <|im_end|>|M0:<|im_end|>\n|M1:<|im_start|>assistant\n|C1*: Hello |M1*:<|im_end|>|M1:\n");
    const chat_msg tools[] = {{"system", "S", NULL}, {"user", "q", NULL}, {"assistant", "", NULL},
                              {"tool", "a\"1", NULL}, {"tool", "2\n", NULL}};
    check_segs(CHAT_QWEN25, tools, 5, 0, -1,
               "|M0:<|im_start|>system\n|C0:S|M0:<|im_end|>\n|M1:<|im_start|>user\n|C1:q|M1:<|im_end|>\n"
               "|M2:<|im_start|>assistant\n|M2*:<|im_end|>|M2:\n"
               "|M3:<|im_start|>user\n<tool_response>\n|C3:a\"1|M3:\n</tool_response>"
               "|M4:\n<tool_response>\n|C4:2\n|M4:\n</tool_response><|im_end|>\n");
    const chat_msg think[] = {{"user", "q", NULL}, {"assistant", "<think>\nwhy\n</think>\n\nA", NULL}};
    check_segs(CHAT_QWEN3, think, 2, 0, -1,
               "|M0:<|im_start|>user\n|C0:q|M0:<|im_end|>\n|M1:<|im_start|>assistant\n|M1*:<think>\n|C1*:why"
               "|M1*:\n</think>\n\n|C1*:A|M1*:<|im_end|>|M1:\n");
    check_segs(CHAT_QWEN3, think, 1, 1, 0,
               "|M0:<|im_start|>user\n|C0:q|M0:<|im_end|>\n|M-1:<|im_start|>assistant\n<think>\n\n</think>\n\n");
    const chat_msg ll[] = {{"system", " sys ", NULL}, {"user", "u", NULL}, {"assistant", "a\n", NULL}};
    check_segs(CHAT_LLAMA3, ll + 1, 2, 0, -1,
               "|M-1:<|begin_of_text|>|M0:<|start_header_id|>user<|end_header_id|>\n\n|C0:u|M0:<|eot_id|>"
               "|M1:<|start_header_id|>assistant<|end_header_id|>\n\n|C1*:a|M1*:<|eot_id|>"
               "|M-1:<|start_header_id|>assistant<|end_header_id|>\n\n");
    check_segs(CHAT_LLAMA3_GENPROMPT, ll + 1, 1, 0, -1,
               "|M-1:<|begin_of_text|>|M0:<|start_header_id|>user<|end_header_id|>\n\n|C0:u|M0:<|eot_id|>");
    const chat_msg l31[] = {{"system", " sys ", NULL}, {"user", "u", NULL}, {"tool", "say \"hi\"\x01", NULL}};
    check_segs(CHAT_LLAMA31, l31, 3, 1, -1,
               "|M-1:<|begin_of_text|>|M0:<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: "
               "December 2023\nToday Date: 26 Jul 2024\n\n|C0:sys|M0:<|eot_id|>"
               "|M1:<|start_header_id|>user<|end_header_id|>\n\n|C1:u|M1:<|eot_id|>"
               "|M2:<|start_header_id|>ipython<|end_header_id|>\n\n\"|C2:say \\\"hi\\\"\\u0001|M2:\"<|eot_id|>"
               "|M-1:<|start_header_id|>assistant<|end_header_id|>\n\n");
    check_segs(CHAT_LLAMA31, l31 + 1, 1, 0, -1,
               "|M-1:<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: "
               "December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|>"
               "|M0:<|start_header_id|>user<|end_header_id|>\n\n|C0:u|M0:<|eot_id|>");
}

// chat_render_tools refuses what it cannot render as the template does,
// naming the message and call; a content-less assistant message needs calls.
static void test_tool_errors(void) {
    err_t err = {{0}};
    cJSON *args = cJSON_CreateObject(), *str = cJSON_CreateString("{}"), *def = cJSON_CreateObject();
    const cJSON *defs[] = {def};
    chat_tool_call good = {.name = "f", .arguments = args}, bad_args = {.name = "f", .arguments = str};
    chat_tool_call no_name = {.arguments = args};
    chat_msg m[] = {{"user", "x", NULL}, {"assistant", NULL, NULL}};
    chat_calls calls[] = {{NULL, 0}, {&good, 1}};
    chat_tools tools = {.defs = defs, .n_defs = 1, .calls = calls};
    chat_prompt *p = chat_render_tools(CHAT_QWEN25, m, 2, NULL, &tools, &err);
    CHECK(p && strstr(p->text, "<|im_start|>assistant\n<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n"
                                "</tool_call><|im_end|>\n") && strstr(p->text, "\n<tools>\n{}\n</tools>"),
          "%s", p ? p->text : err.msg);
    chat_prompt_free(p);
    CHECK(chat_render_tools(CHAT_LLAMA3, m, 2, NULL, &tools, &err) == NULL);
    CHECK(strstr(err.msg, "tools") && strstr(err.msg, "llama3 "), "%s", err.msg);
    chat_msg sys_only[] = {{"system", "s", NULL}};
    CHECK(chat_render_tools(CHAT_LLAMA31, sys_only, 1, NULL, &tools, &err) == NULL);
    CHECK(strstr(err.msg, "first user message") && strstr(err.msg, "message 1 is missing"), "%s", err.msg);
    chat_tool_call two[] = {good, good};
    calls[1].calls = two, calls[1].n = 2;
    CHECK(chat_render_tools(CHAT_LLAMA31, m, 2, NULL, &tools, &err) == NULL);
    CHECK(strstr(err.msg, "message 1 (assistant): 2 tool_calls"), "%s", err.msg);
    calls[1] = (chat_calls){&good, 1};
    tools.n_defs = 0;
    CHECK(chat_render_tools(CHAT_CHATML, m, 2, NULL, &tools, &err) == NULL);
    CHECK(strstr(err.msg, "message 1 (assistant)") && strstr(err.msg, "chatml"), "%s", err.msg);
    calls[1].calls = &bad_args;
    CHECK(chat_render_tools(CHAT_QWEN3, m, 2, NULL, &tools, &err) == NULL);
    CHECK(strstr(err.msg, "message 1 tool_calls[0] (f): arguments"), "%s", err.msg);
    calls[1].calls = &no_name;
    CHECK(chat_render_tools(CHAT_QWEN3, m, 2, NULL, &tools, &err) == NULL);
    CHECK(strstr(err.msg, "message 1 tool_calls[0]: name"), "%s", err.msg);
    calls[0] = (chat_calls){&good, 1};
    calls[1] = (chat_calls){NULL, 0};
    CHECK(chat_render_tools(CHAT_QWEN3, m, 2, NULL, &tools, &err) == NULL);
    CHECK(strstr(err.msg, "message 0 (user): only an assistant") || strstr(err.msg, "message 1 (assistant): content"),
          "%s", err.msg);
    CHECK(chat_render_tools(CHAT_QWEN3, m, 2, NULL, NULL, &err) == NULL);
    CHECK(strstr(err.msg, "message 1 (assistant): content is missing"), "%s", err.msg);
    cJSON_Delete(args);
    cJSON_Delete(str);
    cJSON_Delete(def);
}

static int cmd_unit(void) {
    test_errors();
    test_tool_errors();
    test_detect();
    test_config();
    test_python_trim();
    test_spans();
    test_segments();
    return check_finish("chat unit");
}

// ---------------------------------------------------------------------------
// render

// All of stdin as a new NUL-terminated string, or NULL.
static char *read_stdin(void) {
    size_t cap = 1 << 16, len = 0, got;
    char *text = malloc(cap);
    while (text && (got = fread(text + len, 1, cap - len - 1, stdin)) > 0) {
        len += got;
        if (len + 1 < cap) continue;
        char *bigger = realloc(text, cap *= 2);
        if (!bigger) free(text);
        text = bigger;
    }
    if (text) text[len] = '\0';
    return text;
}

static int cmd_render(int argc, char **argv) {
    err_t err = {{0}};
    chat_family f = CHAT_CHATML;
    int have = 0;
    char *bos = NULL;
    chat_opts o = {.add_generation_prompt = 0, .enable_thinking = -1, .bos_token = NULL};
    for (int i = 2; i < argc; i++) {
        int more = i + 1 < argc;
        if (!strcmp(argv[i], "--family") && more) have = chat_family_parse(argv[++i], &f, &err) == 0;
        else if (!strcmp(argv[i], "--config") && more) have = chat_from_config(argv[++i], &f, &bos, &err) == 0;
        else if (!strcmp(argv[i], "--gen")) o.add_generation_prompt = 1;
        else if (!strcmp(argv[i], "--think") && more) o.enable_thinking = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--bos") && more) o.bos_token = argv[++i];
        else return fprintf(stderr, "chatcheck render: bad argument %s\n", argv[i]), 2;
        if (!have) return fprintf(stderr, "chatcheck: %s\n", err.msg), 1;
    }
    if (!have) return fprintf(stderr, "chatcheck render: --family or --config is required\n"), 2;
    if (!o.bos_token) o.bos_token = bos;
    char *text = read_stdin();
    if (!text) return free(bos), fprintf(stderr, "chatcheck: out of memory reading stdin\n"), 1;
    cJSON *root = cJSON_Parse(text);
    free(text);
    int n = 0, rc = 1;
    chat_msg *m = msgs_from_json(root, &n, &err);
    char *out = m ? chat_render(f, m, n, &o, NULL, NULL, &err) : NULL;
    if (out) fputs(out, stdout), rc = 0;
    else fprintf(stderr, "chatcheck: %s\n", err.msg);
    free(out);
    free(m);
    free(bos);
    cJSON_Delete(root);
    return rc;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "compare")) return cmd_compare(argv[2]);
    if (argc == 2 && !strcmp(argv[1], "unit")) return cmd_unit();
    if (argc >= 2 && !strcmp(argv[1], "render")) return cmd_render(argc, argv);
    fprintf(stderr, "usage: chatcheck compare CASES.json | unit | render (--family NAME | --config PATH) "
                    "[--gen] [--think 0|1] [--bos TOKEN] < messages.json\n");
    return 2;
}
