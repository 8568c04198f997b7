// completion_tools: tool calling inside a generation job. See
// completion_tools.h.
#include "completion_tools.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "log.h"
#include "toolcall.h"
#include "util.h"

// Hermes (<tool_call> blocks) or Llama 3.1's bare JSON: the families with
// a tool format.
static int is_hermes(chat_family f) { return f == CHAT_QWEN25 || f == CHAT_QWEN3; }
static int has_tool_format(chat_family f) { return is_hermes(f) || f == CHAT_LLAMA31; }

// The reply may hold calls: tools declared and tool_choice not "none".
static int may_call(const api_request *q) { return q->n_tools > 0 && q->tool_choice != API_TOOLS_NONE; }

int ct_check(const api_request *q, chat_family f, const tok *t, api_error *e) {
    if (q->kind != API_CHAT || q->n_tools == 0) return 0;
    if (!has_tool_format(f))
        return api_err_invalid(e, "tools",
                               "Invalid 'tools': this model's chat template (%s) has no tool-call format; tools "
                               "work with the qwen2.5, qwen3 and llama3.1 templates (--chat-template).",
                               chat_family_name(f));
    if (is_hermes(f) && (tok_token_id(t, "<tool_call>") < 0 || tok_token_id(t, "</tool_call>") < 0))
        return api_err_invalid(e, "tools",
                               "Invalid 'tools': the %s chat template calls tools with <tool_call> and "
                               "</tool_call>, which this model's tokenizer has no tokens for.",
                               chat_family_name(f));
    return 0;
}

int ct_parses(const api_request *q, chat_family f) {
    return q->kind == API_CHAT && (f == CHAT_QWEN3 || (may_call(q) && has_tool_format(f)));
}

// ---- the prompt -----------------------------------------------------------------

// What chat_render_tools borrows, built from a request (owned here).
typedef struct history {
    chat_msg *msgs;
    cJSON *tools;             // the parsed tools_json array
    const cJSON **defs;       // its items
    int n_defs;
    chat_calls *calls;        // one per message
    chat_tool_call *all;      // every message's calls, in order
    cJSON **args;             // their parsed arguments
    int n_all;
} history;

static void history_free(history *h) {
    free(h->msgs);
    cJSON_Delete(h->tools);
    free(h->defs);
    free(h->calls);
    free(h->all);
    for (int i = 0; i < h->n_all; i++) cJSON_Delete(h->args[i]);
    free(h->args);
}

// The tools as sent: the items of tools_json. -1 when out of memory (the
// text came from api's own print of the body, so it parses).
static int history_tools(history *h, const api_request *q) {
    if (!q->tools_json) return 0;
    if (!(h->tools = cJSON_Parse(q->tools_json))) return -1;
    int n = cJSON_GetArraySize(h->tools);
    if (!(h->defs = calloc(n > 0 ? (size_t)n : 1, sizeof *h->defs))) return -1;
    for (const cJSON *it = h->tools->child; it; it = it->next) h->defs[h->n_defs++] = it;
    return 0;
}

// Every message's calls, arguments parsed (api checked that they parse).
static int history_calls(history *h, const api_request *q) {
    int total = 0;
    for (int m = 0; m < q->n_messages; m++) total += q->messages[m].n_tool_calls;
    if (total == 0) return 0;
    h->calls = calloc((size_t)q->n_messages, sizeof *h->calls);
    h->all = calloc((size_t)total, sizeof *h->all);
    h->args = calloc((size_t)total, sizeof *h->args);
    if (!h->calls || !h->all || !h->args) return -1;
    for (int m = 0; m < q->n_messages; m++) {
        const api_message *msg = &q->messages[m];
        h->calls[m] = (chat_calls){.calls = h->all + h->n_all, .n = msg->n_tool_calls};
        for (int k = 0; k < msg->n_tool_calls; k++) {
            cJSON *a = cJSON_Parse(msg->tool_calls[k].arguments);
            if (!a) return -1;
            h->args[h->n_all] = a;
            h->all[h->n_all++] = (chat_tool_call){.id = msg->tool_calls[k].id, .name = msg->tool_calls[k].name,
                                                  .arguments = a};
        }
    }
    return 0;
}

static int history_build(history *h, const api_request *q) {
    if (!(h->msgs = calloc((size_t)q->n_messages, sizeof *h->msgs))) return -1;
    for (int m = 0; m < q->n_messages; m++) {
        const api_message *msg = &q->messages[m];
        // A null content beside calls renders as the templates render None.
        const char *content = msg->null_content && msg->n_tool_calls > 0 ? NULL : msg->content;
        h->msgs[m] = (chat_msg){.role = api_role_name(msg->role), .content = content};
    }
    return history_tools(h, q) == 0 && history_calls(h, q) == 0 ? 0 : -1;
}

chat_prompt *ct_render(const api_request *q, chat_family f, const chat_opts *opts, api_error *e) {
    history h = {0};
    if (history_build(&h, q) != 0) {
        history_free(&h);
        api_err_set(e, 500, "server_error", NULL, NULL, "out of memory rendering the conversation");
        return NULL;
    }
    chat_tools tools = {.defs = h.defs, .n_defs = h.n_defs, .calls = h.calls};
    err_t err = {{0}};
    chat_prompt *p = chat_render_tools(f, h.msgs, q->n_messages, opts, &tools, &err);
    history_free(&h);
    if (!p) api_err_invalid(e, "messages", "%s", err.msg);
    return p;
}

// ---- the call grammar -------------------------------------------------------------

// The arguments schema of tool t: its parameters as sent (held to an
// object, which a call's arguments must be), an object without properties
// when it has none (OpenAI: an empty parameter list), any object when
// loose. A "$id" of its own keeps its "#/..." refs pointing into it once
// it is nested in the call's schema.
static cJSON *args_schema(const api_tool *t, int i, int loose) {
    if (loose) return cJSON_Parse("{\"type\":\"object\"}");
    if (!t->parameters) return cJSON_Parse("{\"type\":\"object\",\"properties\":{},\"additionalProperties\":false}");
    cJSON *p = cJSON_Parse(t->parameters);
    if (!cJSON_IsObject(p)) return p;
    if (!cJSON_HasObjectItem(p, "$id") && !cJSON_HasObjectItem(p, "id")) {
        char id[48];
        snprintf(id, sizeof id, "tessera:tools/%d", i);
        cJSON_AddStringToObject(p, "$id", id);
    }
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(p, "type");
    if (cJSON_IsString(type) && strcmp(type->valuestring, "object") == 0) return p;
    cJSON *all = cJSON_CreateObject(), *list = cJSON_CreateArray();
    cJSON_AddStringToObject(all, "type", "object");
    cJSON_AddItemToArray(list, p);
    cJSON_AddItemToObject(all, "allOf", list);
    return all;
}

// One call of tool i: {"name": {"const": N}, KEY: args}, both required,
// nothing else.
static cJSON *call_schema(const api_request *q, chat_family f, int i, int loose) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "object");
    cJSON *props = cJSON_AddObjectToObject(o, "properties");
    cJSON *name = cJSON_AddObjectToObject(props, "name");
    cJSON_AddStringToObject(name, "const", q->tools[i].name);
    const char *key = f == CHAT_LLAMA31 ? "parameters" : "arguments";
    cJSON_AddItemToObject(props, key, args_schema(&q->tools[i], i, loose));
    cJSON *req = cJSON_AddArrayToObject(o, "required");
    cJSON_AddItemToArray(req, cJSON_CreateString("name"));
    cJSON_AddItemToArray(req, cJSON_CreateString(key));
    cJSON_AddFalseToObject(o, "additionalProperties");
    return o;
}

// The schema text of a reply's call: the tools it may call (the named one,
// or all), anyOf when more than one; loose[i] = 1 makes tool i's arguments
// any object. A new string, NULL when out of memory.
static char *calls_text(const api_request *q, chat_family f, const uint8_t *loose) {
    cJSON *root;
    if (q->tool_choice == API_TOOLS_NAMED) {
        root = call_schema(q, f, q->tool_choice_index, loose[q->tool_choice_index]);
    } else if (q->n_tools == 1) {
        root = call_schema(q, f, 0, loose[0]);
    } else {
        root = cJSON_CreateObject();
        cJSON *any = cJSON_AddArrayToObject(root, "anyOf");
        for (int i = 0; i < q->n_tools; i++) cJSON_AddItemToArray(any, call_schema(q, f, i, loose[i]));
    }
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return text;
}

// Compiles (or finds) a call schema text, which it frees. A Hermes call
// is followed by the template's "\n" before </tool_call>, and the
// tokenizer fuses it with the call's last bytes ("}}\n" is one Qwen
// token): its grammar takes up to SRV_CALL_WS blanks after the value.
static gm_grammar *compile_text(gc_cache *gc, chat_family f, int ws_max, char *text, err_t *err) {
    if (!text) {
        err_set(err, "out of memory");
        return NULL;
    }
    gm_opts o = {.ws_max = ws_max, .ws_after = is_hermes(f) ? SRV_CALL_WS : 0};
    gm_grammar *g = gc_get_opts(gc, text, &o, err);
    free(text);
    return g;
}

// The compiler's "KEYWORD at POINTER: reason" points into the call's
// schema; the client wrote the parameters: the pointer is made relative to
// them (dropping "/properties/arguments" and the "/allOf/0" args_schema
// may have wrapped them in).
static void params_pointer(char *msg, chat_family f) {
    char prefix[40];
    snprintf(prefix, sizeof prefix, " at /properties/%s", f == CHAT_LLAMA31 ? "parameters" : "arguments");
    char *at = strstr(msg, prefix);
    if (!at) return;
    char *rest = at + strlen(prefix);
    if (strncmp(rest, "/allOf/0", 8) == 0) rest += 8;
    const char *root = *rest == '/' ? "" : "/";
    memmove(at + 4 + strlen(root), rest, strlen(rest) + 1);
    memcpy(at + 4, root, strlen(root));
}

// The combined grammar failed: finds the tools whose own call the engine
// refuses. A strict one is the client's error (400 naming its parameters);
// a non-strict one is marked loose and logged. Returns the number marked,
// or -1 with e filled.
static int find_refused(gc_cache *gc, const api_request *q, chat_family f, int ws_max, const char *request_id,
                        uint8_t *loose, api_error *e) {
    int marked = 0;
    char names[256] = "", reason[sizeof ((err_t *)0)->msg] = "";
    for (int i = 0; i < q->n_tools; i++) {
        if (loose[i] || (q->tool_choice == API_TOOLS_NAMED && i != q->tool_choice_index)) continue;
        cJSON *one = call_schema(q, f, i, 0);
        err_t err = {{0}};
        gm_grammar *g = compile_text(gc, f, ws_max, cJSON_PrintUnformatted(one), &err);
        cJSON_Delete(one);
        if (g) {
            gm_grammar_unref(g);
            continue;
        }
        params_pointer(err.msg, f);
        if (q->tools[i].strict) {
            char param[96];
            snprintf(param, sizeof param, "tools[%d].function.parameters", i);
            return api_err_invalid(e, param, "Invalid schema for function '%s': %s", q->tools[i].name, err.msg);
        }
        loose[i] = 1;
        if (marked++ == 0) snprintf(reason, sizeof reason, "%s", err.msg);
        size_t used = strlen(names);
        snprintf(names + used, sizeof names - used, "%s%s", used ? "," : "", q->tools[i].name);
    }
    if (marked)
        log_line("info", "completion", "tool arguments unconstrained (schema refused, tools not strict) request=%s "
                 "tools=%s reason=%s", request_id, names, reason);
    return marked;
}

int ct_compile(gc_cache *gc, const api_request *q, chat_family f, int ws_max, const char *request_id,
               gm_grammar **out, api_error *e) {
    *out = NULL;
    if (q->kind != API_CHAT || !may_call(q) || q->schema) return 0;
    uint8_t *loose = calloc((size_t)q->n_tools, 1);
    if (!loose) return api_err_set(e, 500, "server_error", NULL, NULL, "out of memory");
    err_t err = {{0}};
    *out = compile_text(gc, f, ws_max, calls_text(q, f, loose), &err);
    if (!*out) {
        int marked = find_refused(gc, q, f, ws_max, request_id, loose, e);
        if (marked > 0) *out = compile_text(gc, f, ws_max, calls_text(q, f, loose), &err);
        if (marked < 0) {
            free(loose);
            return -1;
        }
    }
    free(loose);
    if (*out) return 0;
    return api_err_set(e, 500, "server_error", "tools", NULL, "cannot build the tool-call grammar: %s", err.msg);
}

void ct_constrain(srv_request *r, const api_request *q, chat_family f, const tok *t, gm_grammar *call_grammar) {
    r->tools_mode = SRV_TOOLS_OFF;
    r->call_grammar = NULL;
    r->call_open = r->call_close = -1;
    r->max_calls = 0;
    // Without tools, or under a response_format grammar (api allows that
    // with tool_choice "none" only), nothing to add.
    if (q->kind != API_CHAT || q->n_tools == 0 || q->schema || !has_tool_format(f)) return;
    if (is_hermes(f)) {
        r->call_open = tok_token_id(t, "<tool_call>");
        r->call_close = tok_token_id(t, "</tool_call>");
    }
    switch (q->tool_choice) {
    case API_TOOLS_NONE: r->tools_mode = SRV_TOOLS_BAN; return;
    case API_TOOLS_AUTO: r->tools_mode = SRV_TOOLS_AUTO; break;
    case API_TOOLS_REQUIRED:
    case API_TOOLS_NAMED: r->tools_mode = SRV_TOOLS_REQUIRED; break;
    }
    r->call_grammar = call_grammar;
    if (q->tool_choice == API_TOOLS_NAMED || !q->parallel_tool_calls || f == CHAT_LLAMA31) r->max_calls = 1;
}

// ---- one choice's reply -----------------------------------------------------------------

typedef struct ct_call {
    char id[TC_ID_LEN + 1];
    char *name;
    util_buf args;
} ct_call;

struct ct_reply {
    tc_parser *p;
    ct_send_fn send;          // NULL: collect
    void *ud;
    util_buf content, reasoning;
    ct_call *calls;
    int n_calls, cap_calls;
    api_out_call *out;        // ct_reply_choice's view of calls
    int oom;
};

static void stream_event(ct_reply *r, const tc_event *ev) {
    api_delta d = {.call_index = -1};
    switch (ev->kind) {
    case TC_CONTENT: d.content = ev->text, d.content_len = ev->len; break;
    case TC_REASONING: d.reasoning = ev->text, d.reasoning_len = ev->len; break;
    case TC_CALL_BEGIN:
        d = (api_delta){.call_index = ev->index, .call_id = ev->id, .call_name = ev->name, .args = ""};
        break;
    case TC_CALL_ARGS: d.call_index = ev->index, d.args = ev->text, d.args_len = ev->len; break;
    case TC_CALL_END: return;
    }
    if (ev->kind != TC_CALL_BEGIN && ev->len == 0) return;
    r->send(r->ud, &d);
}

static void collect_call(ct_reply *r, const tc_event *ev) {
    if (r->n_calls == r->cap_calls) {
        int cap = r->cap_calls ? 2 * r->cap_calls : 4;
        ct_call *c = realloc(r->calls, (size_t)cap * sizeof *c);
        if (!c) {
            r->oom = 1;
            return;
        }
        r->calls = c;
        r->cap_calls = cap;
    }
    ct_call *c = &r->calls[r->n_calls];
    *c = (ct_call){.name = strdup(ev->name)};
    snprintf(c->id, sizeof c->id, "%s", ev->id);
    if (!c->name) r->oom = 1;
    else r->n_calls++;
}

static void collect_event(ct_reply *r, const tc_event *ev) {
    switch (ev->kind) {
    case TC_CONTENT: util_buf_put(&r->content, ev->text, ev->len); break;
    case TC_REASONING: util_buf_put(&r->reasoning, ev->text, ev->len); break;
    case TC_CALL_BEGIN: collect_call(r, ev); break;
    case TC_CALL_ARGS:
        if (r->n_calls > 0) util_buf_put(&r->calls[r->n_calls - 1].args, ev->text, ev->len);
        break;
    case TC_CALL_END: break;
    }
}

static void on_event(void *ud, const tc_event *ev) {
    ct_reply *r = ud;
    if (r->send) stream_event(r, ev);
    else collect_event(r, ev);
}

ct_reply *ct_reply_new(const api_request *q, chat_family f, uint64_t id_seed, ct_send_fn send, void *ud) {
    ct_reply *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->send = send;
    r->ud = ud;
    int n = may_call(q) ? q->n_tools : 0;
    const char **names = calloc(n > 0 ? (size_t)n : 1, sizeof *names);
    if (!names) {
        free(r);
        return NULL;
    }
    for (int i = 0; i < n; i++) names[i] = q->tools[i].name;
    tc_opts o = {.format = is_hermes(f) ? TC_HERMES : TC_LLAMA3, .tool_names = names, .n_tools = n,
                 .id_seed = id_seed, .emit = on_event, .ud = r};
    r->p = tc_new(&o); // copies the names
    free(names);
    if (!r->p) {
        free(r);
        return NULL;
    }
    return r;
}

void ct_reply_free(ct_reply *r) {
    if (!r) return;
    tc_free(r->p);
    free(r->content.p);
    free(r->reasoning.p);
    for (int i = 0; i < r->n_calls; i++) {
        free(r->calls[i].name);
        free(r->calls[i].args.p);
    }
    free(r->calls);
    free(r->out);
    free(r);
}

static int reply_oom(const ct_reply *r) {
    int oom = r->oom || r->content.oom || r->reasoning.oom;
    for (int i = 0; i < r->n_calls; i++) oom |= r->calls[i].args.oom;
    return oom;
}

int ct_reply_feed(ct_reply *r, const char *p, size_t n) {
    if (tc_feed(r->p, p, n) != 0) return -1;
    return reply_oom(r) ? -1 : 0;
}

int ct_reply_finish(ct_reply *r) {
    if (tc_finish(r->p) != 0) return -1;
    return reply_oom(r) ? -1 : 0;
}

const char *ct_reply_error(const ct_reply *r) {
    const char *e = tc_error(r->p);
    return e[0] ? e : reply_oom(r) ? "out of memory" : "";
}

int ct_reply_calls(const ct_reply *r) { return tc_n_calls(r->p); }

int ct_reply_choice(ct_reply *r, api_choice *ch) {
    ch->text = r->content.p ? r->content.p : "";
    ch->len = r->content.len;
    ch->null_text = r->content.len == 0 && tc_n_calls(r->p) > 0;
    ch->reasoning = r->reasoning.len ? r->reasoning.p : NULL;
    ch->reasoning_len = r->reasoning.len;
    int n = tc_n_calls(r->p); // a call cut short (max_tokens, a stop string) is left out
    if (n == 0) return 0;
    free(r->out);
    if (!(r->out = calloc((size_t)n, sizeof *r->out))) return -1;
    for (int i = 0; i < n; i++) {
        const ct_call *c = &r->calls[i];
        r->out[i] = (api_out_call){.id = c->id, .name = c->name, .arguments = c->args.p ? c->args.p : "",
                                   .len = c->args.len};
    }
    ch->calls = r->out;
    ch->n_calls = n;
    return 0;
}
