// api_tools: the tool-calling fields of a chat request (see api.h, "Tools"):
// the declared tools, tool_choice and parallel_tool_calls, the history's
// assistant tool_calls and tool messages' tool_call_id, and the check that
// every tool message answers a call made before it.
//
// Errors name the exact field ("tools[2].function.name",
// "messages[3].tool_call_id") in OpenAI's wording, as api.c does.
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_int.h"

#define API_MAX_TOOLS 128

static int missing(api_error *e, const char *param) {
    return api_err_invalid(e, param, "Missing required parameter: '%s'.", param);
}

// A required string field: missing, or not a string, is a 400 naming param.
static const cJSON *need_string(const cJSON *o, const char *name, const char *param, api_error *e) {
    const cJSON *v = field(o, name);
    if (!v) {
        missing(e, param);
        return NULL;
    }
    if (!cJSON_IsString(v)) {
        wrong_type(e, param, "a string", v);
        return NULL;
    }
    return v;
}

// A "type" field that must be "function" (OpenAI's only type we serve).
static int check_function_type(const cJSON *o, const char *param, int required, api_error *e) {
    const cJSON *t = field(o, "type");
    if (!t) return required ? missing(e, param) : 0;
    if (!cJSON_IsString(t)) return wrong_type(e, param, "a string", t);
    if (strcmp(t->valuestring, "function") != 0)
        return api_err_invalid(e, param, "Invalid value: '%s'. Supported values are: 'function'.", t->valuestring);
    return 0;
}

// ---- tools ---------------------------------------------------------------------

static int check_tool_name(const char *name, const char *param, api_error *e) {
    size_t n = strlen(name);
    if (n == 0)
        return api_err_invalid(e, param, "Invalid '%s': string too short. Expected a string with minimum length 1, "
                                         "but got an empty string instead.", param);
    if (n > 64)
        return api_err_invalid(e, param, "Invalid '%s': string too long. Expected a string with maximum length 64, "
                                         "but got a string with length %zu instead.", param, n);
    if (!name_ok(name))
        return api_err_invalid(e, param, "Invalid '%s': string does not match pattern. Expected a string that "
                                         "matches the pattern '^[a-zA-Z0-9_-]+$'.", param);
    return 0;
}

// tools[i] = {"type":"function","function":{"name","description"?,"parameters"?,"strict"?}}
// into r->tools[i] (r->n_tools already counts it, so a failure frees it).
static int read_tool(const cJSON *t, int i, api_request *r, api_error *e) {
    api_tool *out = &r->tools[i];
    char p[64];
    snprintf(p, sizeof p, "tools[%d]", i);
    if (!cJSON_IsObject(t)) return wrong_type(e, p, "an object", t);
    snprintf(p, sizeof p, "tools[%d].type", i);
    if (check_function_type(t, p, 1, e) != 0) return -1;
    snprintf(p, sizeof p, "tools[%d].function", i);
    const cJSON *fn = field(t, "function");
    if (!fn) return missing(e, p);
    if (!cJSON_IsObject(fn)) return wrong_type(e, p, "an object", fn);
    snprintf(p, sizeof p, "tools[%d].function.name", i);
    const cJSON *name = need_string(fn, "name", p, e);
    if (!name || check_tool_name(name->valuestring, p, e) != 0) return -1;
    for (int k = 0; k < i; k++)
        if (strcmp(r->tools[k].name, name->valuestring) == 0)
            return api_err_invalid(e, p, "Invalid '%s': the function name '%s' is already declared by tools[%d]; "
                                         "function names must be unique.", p, name->valuestring, k);
    if (!(out->name = strdup(name->valuestring))) return oom(e);
    snprintf(p, sizeof p, "tools[%d].function.description", i);
    const cJSON *desc = field(fn, "description");
    if (desc && !cJSON_IsString(desc)) return wrong_type(e, p, "a string", desc);
    snprintf(p, sizeof p, "tools[%d].function.parameters", i);
    const cJSON *params = field(fn, "parameters");
    if (params && !cJSON_IsObject(params)) return wrong_type(e, p, "an object", params);
    if (params && !(out->parameters = cJSON_PrintUnformatted(params))) return oom(e);
    snprintf(p, sizeof p, "tools[%d].function.strict", i);
    const cJSON *strict = field(fn, "strict");
    if (strict && !cJSON_IsBool(strict)) return wrong_type(e, p, "a boolean", strict);
    out->strict = strict && cJSON_IsTrue(strict);
    return 0;
}

static int read_tool_list(const cJSON *o, api_request *r, api_error *e) {
    const cJSON *v = field(o, "tools");
    if (!v) return 0;
    if (!cJSON_IsArray(v)) return wrong_type(e, "tools", "an array", v);
    int n = cJSON_GetArraySize(v);
    if (n == 0) return 0;
    if (n > API_MAX_TOOLS)
        return api_err_invalid(e, "tools", "Invalid 'tools': array too long. Expected an array with maximum length %d, "
                                           "but got an array with length %d instead.", API_MAX_TOOLS, n);
    if (!(r->tools = calloc((size_t)n, sizeof *r->tools))) return oom(e);
    int i = 0;
    for (const cJSON *t = v->child; t; t = t->next, i++) {
        r->n_tools = i + 1;
        if (read_tool(t, i, r, e) != 0) return -1;
    }
    // The chat templates print each tool whole (tojson), unknown keys too.
    return (r->tools_json = cJSON_PrintUnformatted(v)) ? 0 : oom(e);
}

// ---- tool_choice ------------------------------------------------------------------

static int no_tools_choice(api_error *e) {
    return api_err_invalid(e, "tool_choice", "Invalid value for 'tool_choice': 'tool_choice' is only allowed when "
                                             "'tools' are specified.");
}

// {"type":"function","function":{"name"}}: the name must be a declared tool.
static int read_named_choice(const cJSON *v, api_request *r, api_error *e) {
    if (check_function_type(v, "tool_choice.type", 1, e) != 0) return -1;
    const cJSON *fn = field(v, "function");
    if (!fn) return missing(e, "tool_choice.function");
    if (!cJSON_IsObject(fn)) return wrong_type(e, "tool_choice.function", "an object", fn);
    const cJSON *name = need_string(fn, "name", "tool_choice.function.name", e);
    if (!name) return -1;
    if (r->n_tools == 0) return no_tools_choice(e);
    for (int k = 0; k < r->n_tools; k++) {
        if (strcmp(r->tools[k].name, name->valuestring) == 0) {
            r->tool_choice = API_TOOLS_NAMED;
            r->tool_choice_index = k;
            return 0;
        }
    }
    return api_err_invalid(e, "tool_choice.function.name",
                           "Invalid 'tool_choice.function.name': no function named '%s' is declared in 'tools'.",
                           name->valuestring);
}

// "auto" without tools has nothing to call: it reads as "none", so the
// engine never looks for a call.
static int read_tool_choice(const cJSON *o, api_request *r, api_error *e) {
    const cJSON *v = field(o, "tool_choice");
    r->tool_choice = r->n_tools > 0 ? API_TOOLS_AUTO : API_TOOLS_NONE;
    if (!v) return 0;
    if (cJSON_IsObject(v)) return read_named_choice(v, r, e);
    if (!cJSON_IsString(v)) return wrong_type(e, "tool_choice", "a string or an object", v);
    const char *s = v->valuestring;
    if (strcmp(s, "none") == 0) {
        r->tool_choice = API_TOOLS_NONE;
    } else if (strcmp(s, "auto") == 0) {
        // the default already: auto with tools, none without
    } else if (strcmp(s, "required") == 0) {
        if (r->n_tools == 0) return no_tools_choice(e);
        r->tool_choice = API_TOOLS_REQUIRED;
    } else {
        return api_err_invalid(e, "tool_choice", "Invalid value: '%s'. Supported values are: 'none', 'auto', and "
                                                 "'required' (or an object naming a function).", s);
    }
    return 0;
}

int api_read_tools(const cJSON *o, api_request *r, api_error *e) {
    if (read_tool_list(o, r, e) != 0 || read_tool_choice(o, r, e) != 0) return -1;
    if (read_bool(o, "parallel_tool_calls", &r->parallel_tool_calls, e) != 0) return -1;
    // A reply is constrained by one grammar: the calls' or the format's.
    if (r->n_tools > 0 && r->tool_choice != API_TOOLS_NONE && r->format != API_FORMAT_TEXT)
        return api_err_invalid(e, "response_format",
                               "Invalid 'response_format': a JSON response format cannot be combined with 'tools' "
                               "unless 'tool_choice' is 'none': this server constrains a reply with one grammar, "
                               "either the tool calls' or the response format's.");
    return 0;
}

// ---- history messages ------------------------------------------------------------------

// arguments must hold a JSON object: the templates print it as one.
static int check_arguments(const char *s, const char *param, api_error *e) {
    cJSON *v = cJSON_ParseWithOpts(s, NULL, 1);
    int ok = v && cJSON_IsObject(v);
    cJSON_Delete(v);
    if (ok) return 0;
    return api_err_invalid(e, param, "Invalid '%s': expected a string holding a JSON object (the call's arguments), "
                                     "but it %s.", param, v ? "holds another JSON value" : "is not valid JSON");
}

// messages[i].tool_calls[j] into c.
static int read_call(const cJSON *t, const char *base, api_tool_call *c, api_error *e) {
    char p[96];
    if (!cJSON_IsObject(t)) return wrong_type(e, base, "an object", t);
    snprintf(p, sizeof p, "%s.id", base);
    const cJSON *id = need_string(t, "id", p, e);
    if (!id) return -1;
    if (!id->valuestring[0]) return api_err_invalid(e, p, "Invalid '%s': empty string.", p);
    if (!(c->id = strdup(id->valuestring))) return oom(e);
    // type may be left out: a call can only be a function call here.
    snprintf(p, sizeof p, "%s.type", base);
    if (check_function_type(t, p, 0, e) != 0) return -1;
    snprintf(p, sizeof p, "%s.function", base);
    const cJSON *fn = field(t, "function");
    if (!fn) return missing(e, p);
    if (!cJSON_IsObject(fn)) return wrong_type(e, p, "an object", fn);
    snprintf(p, sizeof p, "%s.function.name", base);
    const cJSON *name = need_string(fn, "name", p, e);
    if (!name) return -1;
    if (!name->valuestring[0]) return api_err_invalid(e, p, "Invalid '%s': empty string.", p);
    if (!(c->name = strdup(name->valuestring))) return oom(e);
    snprintf(p, sizeof p, "%s.function.arguments", base);
    const cJSON *args = need_string(fn, "arguments", p, e);
    if (!args || check_arguments(args->valuestring, p, e) != 0) return -1;
    return (c->arguments = strdup(args->valuestring)) ? 0 : oom(e);
}

static int read_calls(const cJSON *tc, int i, api_message *out, api_error *e) {
    char p[64];
    snprintf(p, sizeof p, "messages[%d].tool_calls", i);
    if (!cJSON_IsArray(tc)) return wrong_type(e, p, "an array", tc);
    int n = cJSON_GetArraySize(tc);
    if (n == 0) return 0;
    if (out->role != API_ROLE_ASSISTANT)
        return api_err_invalid(e, p, "Invalid '%s': only messages with role 'assistant' can have tool calls.", p);
    if (!(out->tool_calls = calloc((size_t)n, sizeof *out->tool_calls))) return oom(e);
    int j = 0;
    for (const cJSON *t = tc->child; t; t = t->next, j++) {
        out->n_tool_calls = j + 1;
        snprintf(p, sizeof p, "messages[%d].tool_calls[%d]", i, j);
        if (read_call(t, p, &out->tool_calls[j], e) != 0) return -1;
    }
    return 0;
}

int api_read_message_tools(const cJSON *m, int i, api_message *out, api_error *e) {
    const cJSON *tc = field(m, "tool_calls");
    if (tc && read_calls(tc, i, out, e) != 0) return -1;
    if (out->role != API_ROLE_TOOL) return 0;
    char p[64];
    snprintf(p, sizeof p, "messages[%d].tool_call_id", i);
    const cJSON *id = need_string(m, "tool_call_id", p, e);
    if (!id) return -1;
    return (out->tool_call_id = strdup(id->valuestring)) ? 0 : oom(e);
}

// ---- answers -------------------------------------------------------------------------

// One call made or answered: the check sorts these by id, then by message,
// and walks each id's run keeping the count of open calls. Sorting keeps it
// O(n log n) whatever the ids (a history may hold tens of thousands of
// calls within the body limit).
typedef struct call_event {
    const char *id;
    int msg;   // the message's index
    int delta; // +1 a call, -1 an answer
} call_event;

static int event_cmp(const void *pa, const void *pb) {
    const call_event *a = pa, *b = pb;
    int c = strcmp(a->id, b->id);
    return c ? c : (a->msg > b->msg) - (a->msg < b->msg);
}

// The events of r in message order; *n set to their count.
static call_event *list_events(const api_request *r, int *n) {
    int total = 0;
    for (int k = 0; k < r->n_messages; k++)
        total += r->messages[k].role == API_ROLE_TOOL ? 1 : r->messages[k].n_tool_calls;
    call_event *ev = malloc(((size_t)total + 1) * sizeof *ev);
    if (!ev) return NULL;
    *n = 0;
    for (int k = 0; k < r->n_messages; k++) {
        const api_message *m = &r->messages[k];
        if (m->role == API_ROLE_TOOL) ev[(*n)++] = (call_event){.id = m->tool_call_id, .msg = k, .delta = -1};
        for (int j = 0; j < m->n_tool_calls; j++)
            ev[(*n)++] = (call_event){.id = m->tool_calls[j].id, .msg = k, .delta = +1};
    }
    return ev;
}

int api_check_tool_answers(const api_request *r, api_error *e) {
    int n = 0, bad = -1; // bad: the first message answering nothing
    call_event *ev = list_events(r, &n);
    if (!ev) return oom(e);
    qsort(ev, (size_t)n, sizeof *ev, event_cmp);
    for (int k = 0, open = 0; k < n; k++) {
        if (k == 0 || strcmp(ev[k].id, ev[k - 1].id) != 0) open = 0;
        open += ev[k].delta;
        if (open < 0) {
            if (bad < 0 || ev[k].msg < bad) bad = ev[k].msg;
            open = 0;
        }
    }
    free(ev);
    if (bad < 0) return 0;
    char p[64];
    snprintf(p, sizeof p, "messages[%d].tool_call_id", bad);
    return api_err_invalid(e, p, "Invalid '%s': '%s' answers no earlier tool call. Messages with role 'tool' must be "
                                 "a response to a preceding message with 'tool_calls', each call answered once.",
                           p, r->messages[bad].tool_call_id);
}

void api_tools_free(api_request *r) {
    for (int i = 0; i < r->n_tools; i++) {
        free(r->tools[i].name);
        free(r->tools[i].parameters);
    }
    free(r->tools);
    free(r->tools_json);
    for (int i = 0; i < r->n_messages; i++) {
        api_message *m = &r->messages[i];
        for (int j = 0; j < m->n_tool_calls; j++) {
            free(m->tool_calls[j].id);
            free(m->tool_calls[j].name);
            free(m->tool_calls[j].arguments);
        }
        free(m->tool_calls);
        free(m->tool_call_id);
    }
}
