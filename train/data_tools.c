// data_tools: the tool-calling side of a training line (see data.h for the
// forms it reads and data_int.h for the contract): tool definitions, the
// calls of assistant messages, and the tool results that answer them, read
// from OpenAI's fine-tuning format (with its legacy `functions`,
// `function_call` and role `function`) and from ShareGPT's `tools`,
// `function_call` and `observation`, all onto one model: chat.h's
// chat_tools, which chat_render_tools renders as the model's template does.
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "data_int.h"

void td_tools_reset(td_tools *t) {
    cJSON_Delete(t->owned);
    t->owned = NULL;
    t->n_defs = t->n_calls = t->n_results = 0;
    t->parallel = 1;
    t->first[0] = '\0';
}

// Remembers the first field of the line that uses tools, for the reason
// td_tools_check gives on a template without a tool format.
__attribute__((format(printf, 2, 3))) static void mark(td_tools *t, const char *fmt, ...) {
    if (t->first[0]) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->first, sizeof t->first, fmt, ap);
    va_end(ap);
}

// Keeps v until the line is done. Returns v, or NULL (v freed) on OOM.
static cJSON *own(td_tools *t, cJSON *v) {
    if (!v) return NULL;
    if ((!t->owned && !(t->owned = cJSON_CreateArray())) || !cJSON_AddItemToArray(t->owned, v)) {
        cJSON_Delete(v);
        return NULL;
    }
    return v;
}

// Parses s, a JSON text inside a string of the line, with the same rules
// as the line itself. *out is owned by t. TD_BAD with why naming path.
static int parse_inner(td_tools *t, const char *s, const char *path, cJSON **out, err_t *why) {
    size_t n = strlen(s);
    if (td_json_prescan(s, n, why)) return err_wrap(why, "%s", path), TD_BAD;
    const char *end = NULL;
    cJSON *v = cJSON_ParseWithLengthOpts(s, n + 1, &end, 1);
    if (!v) {
        if (!end || end >= s + n) return td_bad(why, "%s: invalid JSON (the text ends early)", path);
        return td_bad(why, "%s: invalid JSON at column %zu of the string", path, (size_t)(end - s) + 1);
    }
    if (!(*out = own(t, v))) return TD_OOM;
    return 0;
}

// OpenAI's rule for function names: a-z, A-Z, 0-9, '_' and '-', 1 to 64.
static int name_ok(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 64) return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') ||
              s[i] == '_' || s[i] == '-'))
            return 0;
    return 1;
}

static const char *def_name(const cJSON *def) { return td_get(td_get(def, "function"), "name")->valuestring; }

static int declared(const td_tools *t, const char *name) {
    for (int k = 0; k < t->n_defs; k++)
        if (strcmp(def_name(t->defs[k]), name) == 0) return 1;
    return 0;
}

// A function definition {"name", "description"?, "parameters"?} at path.
static int check_function(const td_tools *t, const cJSON *fn, const char *path, err_t *why) {
    char d[48];
    if (!cJSON_IsObject(fn))
        return td_bad(why, "%s: expected an object {\"name\", \"description\", \"parameters\"}, got %s", path,
                      td_desc(fn, d, sizeof d));
    const cJSON *name = td_get(fn, "name"), *desc = td_get(fn, "description"), *params = td_get(fn, "parameters");
    if (!cJSON_IsString(name))
        return td_bad(why, "%s.name: expected a string, got %s", path, td_desc(name, d, sizeof d));
    if (!name_ok(name->valuestring))
        return td_bad(why, "%s.name: %s is not a function name (1 to 64 of a-z, A-Z, 0-9, _ and -)", path,
                      td_clip(name->valuestring, d, sizeof d));
    if (declared(t, name->valuestring))
        return td_bad(why, "%s.name: %s is declared twice", path, td_clip(name->valuestring, d, sizeof d));
    if (desc && !cJSON_IsString(desc) && !cJSON_IsNull(desc))
        return td_bad(why, "%s.description: expected a string, got %s", path, td_desc(desc, d, sizeof d));
    if (params && !cJSON_IsObject(params))
        return td_bad(why, "%s.parameters: expected a JSON schema object, got %s", path, td_desc(params, d, sizeof d));
    return 0;
}

static int add_def(td_tools *t, const cJSON *def) {
    if (td_grow((void **)&t->defs, &t->cap_defs, t->n_defs + 1, sizeof *t->defs)) return TD_OOM;
    t->defs[t->n_defs++] = def;
    mark(t, "tools");
    return 0;
}

// An OpenAI tool {"type": "function", "function": {...}}, kept as given.
static int read_tool(td_tools *t, const cJSON *tool, const char *path, err_t *why) {
    char d[48], fpath[64];
    if (!cJSON_IsObject(tool))
        return td_bad(why, "%s: expected an object {\"type\": \"function\", \"function\": {...}}, got %s", path,
                      td_desc(tool, d, sizeof d));
    const cJSON *type = td_get(tool, "type");
    if (!cJSON_IsString(type) || strcmp(type->valuestring, "function") != 0)
        return td_bad(why, "%s.type: expected \"function\", got %s", path, td_desc(type, d, sizeof d));
    snprintf(fpath, sizeof fpath, "%s.function", path);
    int rc = check_function(t, td_get(tool, "function"), fpath, why);
    return rc ? rc : add_def(t, tool);
}

// A bare function definition (legacy `functions`, ShareGPT's tools) as
// the tool {"type": "function", "function": fn} the templates render.
static int read_function(td_tools *t, const cJSON *fn, const char *path, err_t *why) {
    int rc = check_function(t, fn, path, why);
    if (rc) return rc;
    cJSON *tool = own(t, cJSON_CreateObject());
    if (!tool || !cJSON_AddStringToObject(tool, "type", "function")) return TD_OOM;
    cJSON *copy = cJSON_Duplicate(fn, 1);
    if (!copy || !cJSON_AddItemToObject(tool, "function", copy)) {
        cJSON_Delete(copy);
        return TD_OOM;
    }
    return add_def(t, tool);
}

// An array of tools (legacy: of functions) named key.
static int read_tool_list(td_tools *t, const cJSON *list, const char *key, int legacy, err_t *why) {
    char d[48], path[64];
    if (!cJSON_IsArray(list))
        return td_bad(why, "%s: expected an array of %s, got %s", key,
                      legacy ? "function definitions" : "{\"type\": \"function\", \"function\": {...}}",
                      td_desc(list, d, sizeof d));
    int k = 0, rc = 0;
    for (const cJSON *v = list->child; v && !rc; v = v->next, k++) {
        snprintf(path, sizeof path, "%s[%d]", key, k);
        rc = legacy ? read_function(t, v, path, why) : read_tool(t, v, path, why);
    }
    return rc;
}

int td_tools_openai(td_conv *c, const cJSON *root, err_t *why) {
    td_tools *t = &c->tools;
    const cJSON *tools = td_get(root, "tools"), *fns = td_get(root, "functions"),
                *par = td_get(root, "parallel_tool_calls");
    char d[48];
    if (par && !cJSON_IsNull(par)) {
        if (!cJSON_IsBool(par))
            return td_bad(why, "parallel_tool_calls: expected true or false, got %s", td_desc(par, d, sizeof d));
        t->parallel = cJSON_IsTrue(par);
    }
    if (td_present(tools) && td_present(fns))
        return td_bad(why, "tools and functions: give one (functions is the legacy form of tools)");
    // One of them at most holds tools; the other may still be [] or null.
    int rc = 0;
    if (tools && !cJSON_IsNull(tools)) rc = read_tool_list(t, tools, "tools", 0, why);
    if (!rc && fns && !cJSON_IsNull(fns)) rc = read_tool_list(t, fns, "functions", 1, why);
    return rc;
}

// ShareGPT's tools: LLaMA-Factory writes a JSON string of function
// definitions; an array is taken too, and so are OpenAI-style entries.
int td_tools_sharegpt(td_conv *c, const cJSON *root, err_t *why) {
    td_tools *t = &c->tools;
    const cJSON *tools = td_get(root, "tools");
    cJSON *parsed = NULL;
    char d[48], path[64];
    if (!tools || cJSON_IsNull(tools) || (cJSON_IsString(tools) && !*tools->valuestring)) return 0;
    if (cJSON_IsString(tools)) {
        int rc = parse_inner(t, tools->valuestring, "tools", &parsed, why);
        if (rc) return rc;
        tools = parsed;
    }
    if (!cJSON_IsArray(tools))
        return td_bad(why, "tools: expected an array of function definitions (or a JSON string of one), got %s",
                      td_desc(tools, d, sizeof d));
    int k = 0, rc = 0;
    for (const cJSON *v = tools->child; v && !rc; v = v->next, k++) {
        snprintf(path, sizeof path, "tools[%d]", k);
        rc = cJSON_IsString(td_get(v, "type")) ? read_tool(t, v, path, why) : read_function(t, v, path, why);
    }
    return rc;
}

// A call's arguments: a JSON string holding an object (OpenAI), or the
// object itself (as LLaMA-Factory writes it). *out borrowed or owned by t.
static int read_args(td_tools *t, const cJSON *v, const char *path, const cJSON **out, err_t *why) {
    char d[48], apath[128];
    snprintf(apath, sizeof apath, "%s.arguments", path);
    if (cJSON_IsObject(v)) return *out = v, 0;
    if (!cJSON_IsString(v))
        return td_bad(why, "%s: expected a JSON string holding an object, got %s", apath, td_desc(v, d, sizeof d));
    cJSON *args = NULL;
    int rc = parse_inner(t, v->valuestring, apath, &args, why);
    if (rc) return rc;
    if (!cJSON_IsObject(args))
        return td_bad(why, "%s: expected a JSON object, got %s", apath, td_desc(args, d, sizeof d));
    *out = args;
    return 0;
}

// The names the line declares, for a message ("a, b, c", cut to fit).
static const char *declared_list(const td_tools *t, char *buf, size_t n) {
    size_t w = 0;
    buf[0] = '\0';
    for (int k = 0; k < t->n_defs && w + 8 < n; k++) {
        int m = snprintf(buf + w, n - w, "%s%s", k ? ", " : "", def_name(t->defs[k]));
        w = m < 0 || (size_t)m >= n - w ? n - 1 : w + (size_t)m;
    }
    return buf;
}

// One call {"name", "arguments"} at path, of message msg: its name must be
// a declared tool and its arguments an object.
static int add_call(td_conv *c, const cJSON *fn, const char *id, const char *path, int msg, err_t *why) {
    td_tools *t = &c->tools;
    char d[48], list[160];
    if (!cJSON_IsObject(fn))
        return td_bad(why, "%s: expected an object {\"name\", \"arguments\"}, got %s", path, td_desc(fn, d, sizeof d));
    const cJSON *name = td_get(fn, "name");
    if (!cJSON_IsString(name) || !*name->valuestring)
        return td_bad(why, "%s.name: expected a non-empty string, got %s", path, td_desc(name, d, sizeof d));
    if (t->n_defs == 0)
        return td_bad(why, "%s.name: calls %s, and the line declares no tools", path,
                      td_clip(name->valuestring, d, sizeof d));
    if (!declared(t, name->valuestring))
        return td_bad(why, "%s.name: calls %s, which the line does not declare (it declares %s)", path,
                      td_clip(name->valuestring, d, sizeof d), declared_list(t, list, sizeof list));
    const cJSON *args = NULL;
    int rc = read_args(t, td_get(fn, "arguments"), path, &args, why);
    if (rc) return rc;
    if (td_grow((void **)&t->calls, &t->cap_calls, t->n_calls + 1, sizeof *t->calls)) return TD_OOM;
    t->calls[t->n_calls++] = (td_call){
        .call = {.id = id, .name = name->valuestring, .arguments = args}, .msg = msg, .answered = 0};
    mark(t, "%s", path);
    return 0;
}

// One entry of OpenAI's tool_calls: {"id", "type": "function", "function"}.
static int read_tool_call(td_conv *c, const cJSON *tc, const char *path, err_t *why) {
    char d[48], fpath[96];
    if (!cJSON_IsObject(tc))
        return td_bad(why, "%s: expected an object {\"id\", \"type\": \"function\", \"function\"}, got %s", path,
                      td_desc(tc, d, sizeof d));
    const cJSON *type = td_get(tc, "type"), *id = td_get(tc, "id");
    if (type && (!cJSON_IsString(type) || strcmp(type->valuestring, "function") != 0))
        return td_bad(why, "%s.type: expected \"function\", got %s", path, td_desc(type, d, sizeof d));
    if (id && !cJSON_IsNull(id) && !cJSON_IsString(id))
        return td_bad(why, "%s.id: expected a string, got %s", path, td_desc(id, d, sizeof d));
    snprintf(fpath, sizeof fpath, "%s.function", path);
    return add_call(c, td_get(tc, "function"), cJSON_IsString(id) ? id->valuestring : NULL, fpath, c->n, why);
}

int td_openai_calls(td_conv *c, const cJSON *m, int i, int *n_calls, err_t *why) {
    const cJSON *tcs = td_get(m, "tool_calls"), *fc = td_get(m, "function_call");
    char d[48], path[64];
    int before = c->tools.n_calls, rc = 0;
    *n_calls = 0;
    if (td_present(tcs) && td_present(fc))
        return td_bad(why, "messages[%d]: tool_calls and function_call: give one (function_call is the legacy "
                           "form)", i);
    if (td_present(fc)) {
        snprintf(path, sizeof path, "messages[%d].function_call", i);
        rc = add_call(c, fc, NULL, path, c->n, why);
    } else if (td_present(tcs)) {
        if (!cJSON_IsArray(tcs))
            return td_bad(why, "messages[%d].tool_calls: expected an array, got %s", i, td_desc(tcs, d, sizeof d));
        int k = 0;
        for (const cJSON *tc = tcs->child; tc && !rc; tc = tc->next, k++) {
            snprintf(path, sizeof path, "messages[%d].tool_calls[%d]", i, k);
            rc = read_tool_call(c, tc, path, why);
        }
    }
    if (rc) return rc;
    *n_calls = c->tools.n_calls - before;
    if (*n_calls > 1 && !c->tools.parallel)
        return td_bad(why, "messages[%d].tool_calls: %d calls in one message, and parallel_tool_calls is false", i,
                      *n_calls);
    return 0;
}

// The earliest unanswered call with this id (or, id NULL, any), or -1.
static int first_open(const td_tools *t, const char *id) {
    for (int k = 0; k < t->n_calls; k++)
        if (!t->calls[k].answered && (!id || (t->calls[k].call.id && strcmp(t->calls[k].call.id, id) == 0)))
            return k;
    return -1;
}

// The latest unanswered call of this name, or -1.
static int last_open_named(const td_tools *t, const char *name) {
    for (int k = t->n_calls - 1; k >= 0; k--)
        if (!t->calls[k].answered && strcmp(t->calls[k].call.name, name) == 0) return k;
    return -1;
}

// Adds a tool message answering call k.
static int add_result(td_conv *c, int k, const char *text) {
    c->tools.calls[k].answered = 1;
    c->tools.n_results++;
    return td_conv_add(c, "tool", text, 1);
}

int td_openai_result(td_conv *c, const cJSON *m, int i, int legacy, err_t *why) {
    td_tools *t = &c->tools;
    char d[48], path[64];
    const char *text;
    snprintf(path, sizeof path, "messages[%d].content", i);
    int rc = td_read_content(c, td_get(m, "content"), path, &text, why);
    if (rc) return rc;
    mark(t, "messages[%d] (%s)", i, legacy ? "function" : "tool");
    if (legacy) {
        const cJSON *name = td_get(m, "name");
        if (!cJSON_IsString(name) || !*name->valuestring)
            return td_bad(why, "messages[%d].name: expected the name of the function it answers, got %s", i,
                          td_desc(name, d, sizeof d));
        int k = last_open_named(t, name->valuestring);
        if (k < 0)
            return td_bad(why, "messages[%d] (function): answers no earlier call of %s", i,
                          td_clip(name->valuestring, d, sizeof d));
        return add_result(c, k, text);
    }
    const cJSON *id = td_get(m, "tool_call_id");
    if (!cJSON_IsString(id) || !*id->valuestring)
        return td_bad(why, "messages[%d].tool_call_id: expected the id of the call it answers, got %s", i,
                      td_desc(id, d, sizeof d));
    int k = first_open(t, id->valuestring);
    if (k < 0)
        return td_bad(why, "messages[%d].tool_call_id: %s answers no earlier call%s", i,
                      td_clip(id->valuestring, d, sizeof d), t->n_calls ? " (none open has that id)" : "");
    return add_result(c, k, text);
}

int td_sharegpt_call(td_conv *c, const char *value, int i, int join, err_t *why) {
    td_tools *t = &c->tools;
    char path[64], d[48];
    cJSON *v = NULL;
    snprintf(path, sizeof path, "conversations[%d].value", i);
    int rc = parse_inner(t, value, path, &v, why);
    if (rc) return rc;
    if (!cJSON_IsObject(v) && !(cJSON_IsArray(v) && v->child))
        return td_bad(why, "%s: expected a call {\"name\", \"arguments\"} or an array of them, got %s", path,
                      td_desc(v, d, sizeof d));
    if (!join && (rc = td_conv_add(c, "assistant", NULL, 1))) return rc;
    if (cJSON_IsObject(v)) return add_call(c, v, NULL, path, c->n - 1, why);
    int k = 0;
    for (const cJSON *e = v->child; e && !rc; e = e->next, k++) {
        char epath[80];
        snprintf(epath, sizeof epath, "%s[%d]", path, k);
        rc = add_call(c, e, NULL, epath, c->n - 1, why);
    }
    return rc;
}

int td_sharegpt_result(td_conv *c, const char *value, int i, err_t *why) {
    mark(&c->tools, "conversations[%d] (observation)", i);
    int k = first_open(&c->tools, NULL);
    if (k < 0) return td_bad(why, "conversations[%d]: an observation that answers no earlier function_call", i);
    return add_result(c, k, value);
}

int td_tools_check(const td_conv *c, chat_family f, err_t *why) {
    if (!c->tools.first[0] || f == CHAT_QWEN25 || f == CHAT_QWEN3 || f == CHAT_LLAMA31) return 0;
    return td_bad(why, "%s: the %s chat template has no tool format (qwen2.5, qwen3 and llama3.1 have one)",
                  c->tools.first, chat_family_name(f));
}

int td_tools_view(const td_conv *c, chat_tools *out, chat_calls **per_msg, chat_tool_call **flat) {
    const td_tools *t = &c->tools;
    *out = (chat_tools){.defs = t->defs, .n_defs = t->n_defs, .calls = NULL};
    *per_msg = NULL;
    *flat = NULL;
    if (t->n_calls == 0) return 0;
    *per_msg = calloc((size_t)c->n, sizeof **per_msg);
    *flat = malloc((size_t)t->n_calls * sizeof **flat);
    if (!*per_msg || !*flat) {
        free(*per_msg), free(*flat);
        *per_msg = NULL, *flat = NULL;
        return TD_OOM;
    }
    // Calls are in message order, so each message's are contiguous.
    for (int k = 0; k < t->n_calls; k++) {
        chat_calls *cs = &(*per_msg)[t->calls[k].msg];
        (*flat)[k] = t->calls[k].call;
        if (cs->n++ == 0) cs->calls = &(*flat)[k];
    }
    out->calls = *per_msg;
    return 0;
}
