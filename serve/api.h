// api: the OpenAI HTTP API's JSON, both ways: request bodies validated into
// typed structs, and the response objects built from plain values.
//
// Requests (POST /v1/chat/completions, POST /v1/completions). Every field
// OpenAI documents that we can honour is read and checked; a field of the
// wrong type or out of range is a 400 whose `param` names it (as OpenAI
// does: "temperature", "messages[1].content[0].type", "stop[2]"). Unknown
// fields are ignored, as OpenAI does. JSON null means "not given". Every
// string in the body must be valid UTF-8 (cJSON does not check; we do).
//
// Chat specifics: roles system, developer (read as system), user, assistant,
// tool; content a string or a list of {"type":"text","text":...} parts,
// joined with "\n" (as vLLM does); an assistant message may have null
// content. Refused with a 400 naming the field, because silently ignoring
// them would give wrong answers: other content part types (images, audio),
// legacy `functions` / `function_call` and `function` messages.
//
// Tools (api_tools.c): `tools` (type "function": name [a-zA-Z0-9_-]{1,64},
// unique; description; parameters, an object; strict), `tool_choice`
// ("none", "auto", "required", {"type":"function","function":{"name"}}
// naming a declared tool; "auto" by default with tools, "none" without,
// also when "auto" is sent without tools; "required" or a named choice
// without tools is a 400), and `parallel_tool_calls` (default true); at
// most 128 tools. History: an assistant message may carry `tool_calls`
// ([{"id","type":"function","function":{"name","arguments"}}], type may be
// left out, arguments a string holding a JSON object; content then may be
// null or absent); a call's name need not be a declared tool. A `tool`
// message needs `tool_call_id` naming a call of an earlier assistant
// message not yet answered (400 otherwise). tools and
// a non-text response_format together (with tool_choice other than "none")
// are refused: one grammar per reply.
//
// response_format (both endpoints; vLLM takes it on completions too):
// {"type":"text"}; {"type":"json_object"} (any JSON object: the schema
// {"type":"object"}); {"type":"json_schema","json_schema":{"name" (required,
// [a-zA-Z0-9_-]{1,64}), "description"?, "schema"? (an object; absent means
// any JSON value, the empty schema), "strict"? (boolean or null)}}. Only the
// shape is checked here; whether the engine can enforce the schema is
// decided when it is compiled (completion.c, 400 with param
// "response_format.json_schema.schema").
//
// Completions specifics: prompt is a string, a list of strings, a list of
// token ids, or a list of lists of token ids; logprobs is an integer 0..5
// (the number of alternatives), echo true and suffix are refused, best_of
// must equal n if given; max_tokens defaults to 16 (as OpenAI's legacy
// endpoint and vLLM). Chat leaves max_tokens at -1 when not given: the
// server fills the context.
//
// vLLM's extensions top_k, min_p, repetition_penalty and
// chat_template_kwargs.enable_thinking (Qwen3) are read too (clients
// written for vLLM send them); other chat_template_kwargs are ignored.
//
// Responses: JSON texts (new strings, free()) in the exact shapes the
// OpenAI SDKs parse: chat.completion, chat.completion.chunk,
// text_completion, model, list, error.
#ifndef TESSERA_API_H
#define TESSERA_API_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "sampler.h"

#define API_MAX_STOP 4
#define API_MAX_N 8
#define API_MAX_LOGIT_BIAS 1024
#define API_MAX_PROMPTS 64
#define API_MAX_COMPLETION_LOGPROBS 5

// ---- errors -------------------------------------------------------------------

// An error answer: the HTTP status and OpenAI's error object.
typedef struct api_error {
    int status;        // 400, 401, 404, 405, 413, 429, 500, 503
    char type[32];     // "invalid_request_error", "authentication_error"?, "server_error", ...
    char param[96];    // "" = null
    char code[48];     // "" = null
    char message[512];
    int retry_after;   // seconds for Retry-After (429/503), 0 = no header
} api_error;

// Fills e (status, type "invalid_request_error", param, no code) and
// returns -1. param may be NULL.
int api_err_invalid(api_error *e, const char *param, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

// Fills e with any status/type/code; returns -1. param, code may be NULL.
int api_err_set(api_error *e, int status, const char *type, const char *param, const char *code, const char *fmt,
                ...) __attribute__((format(printf, 6, 7)));

// The body {"error":{"message","type","param","code"}} (new string).
char *api_error_json(const api_error *e);

// ---- requests -----------------------------------------------------------------

typedef enum api_role { API_ROLE_SYSTEM, API_ROLE_USER, API_ROLE_ASSISTANT, API_ROLE_TOOL } api_role;

const char *api_role_name(api_role r); // "system", ...

// One call of an assistant history message.
typedef struct api_tool_call {
    char *id;         // as the client sent it
    char *name;
    char *arguments;  // function.arguments as sent (checked: holds a JSON object)
} api_tool_call;

typedef struct api_message {
    api_role role;
    char *content;    // the text parts joined; "" for a null assistant content
    int null_content; // assistant content was null or absent (content is "")
    char *name;       // optional participant name, NULL if absent
    api_tool_call *tool_calls; // assistant: its calls (NULL, n_tool_calls 0: none)
    int n_tool_calls;
    char *tool_call_id;        // tool: the earlier call it answers; else NULL
} api_message;

// One declared tool (type "function").
typedef struct api_tool {
    char *name;       // [a-zA-Z0-9_-]{1,64}, unique in the request
    char *parameters; // the parameters schema as JSON text (cJSON's unformatted print); NULL = not given
    int strict;       // function.strict is true
} api_tool;

typedef enum api_tool_choice {
    API_TOOLS_NONE,     // never call (the default without tools)
    API_TOOLS_AUTO,     // the model decides (the default with tools)
    API_TOOLS_REQUIRED, // at least one call, no text
    API_TOOLS_NAMED,    // exactly one call of tools[tool_choice_index]
} api_tool_choice;

// One completions prompt: text, or token ids (ids != NULL).
typedef struct api_prompt {
    char *text;
    int32_t *ids;
    int n_ids;
} api_prompt;

typedef enum api_kind { API_CHAT, API_COMPLETION } api_kind;

typedef enum api_format { API_FORMAT_TEXT, API_FORMAT_JSON_OBJECT, API_FORMAT_JSON_SCHEMA } api_format;

typedef struct api_request {
    api_kind kind;
    char *model;
    // chat
    api_message *messages;
    int n_messages;
    // completions
    api_prompt *prompts;
    int n_prompts;

    int stream;
    int include_usage;        // stream_options.include_usage
    int64_t max_tokens;       // max_completion_tokens, else max_tokens; -1 = not given
    int has_temperature, has_top_p, has_seed;
    float temperature;        // [0, 2]; 1 if not given
    float top_p;              // (0, 1]; 1 if not given
    uint64_t seed;            // the given int64 seed as bits
    char *stop[API_MAX_STOP]; // non-empty strings
    int n_stop;
    float presence_penalty;   // [-2, 2]
    float frequency_penalty;  // [-2, 2]
    sampler_bias *logit_bias; // token ids as given (range against the vocabulary is checked later)
    int n_logit_bias;
    int logprobs;             // chat: logprobs true; completions: logprobs given (0..5)
    int top_logprobs;         // chat: 0..20; completions: the logprobs integer
    int n;                    // 1..API_MAX_N
    char *user;               // NULL if absent
    // vLLM's extensions, accepted because clients written for vLLM send them
    int top_k;                // -1 or 0 = off; else >= 1
    float min_p;              // [0, 1]
    float repetition_penalty; // (0, 2]; 1 = off
    int enable_thinking;      // chat_template_kwargs.enable_thinking (vLLM's): -1 not given, 0, 1
    // response_format
    api_format format;
    char *schema;             // JSON text of the schema to enforce (cJSON's unformatted print of
                              // the body's, so equal schemas give equal texts); NULL for text
    char *schema_name;        // json_schema.name; NULL for text and json_object
    int strict;               // json_schema.strict: -1 not given or null, 0, 1 (read, not used:
                              // every schema is enforced exactly or refused)
    // tools (chat only; api_tools.c)
    api_tool *tools;
    int n_tools;
    char *tools_json;         // the `tools` array as sent (JSON text), for the chat template; NULL = none
    api_tool_choice tool_choice;
    int tool_choice_index;    // API_TOOLS_NAMED: index into tools
    int parallel_tool_calls;  // 1 unless the client sent false
} api_request;

// Parse a body into out (owned by the caller: free with api_request_free,
// also after a failure). Returns 0, or -1 with e filled (status 400).
int api_parse_chat(const char *body, size_t len, api_request *out, api_error *e);
int api_parse_completion(const char *body, size_t len, api_request *out, api_error *e);
void api_request_free(api_request *r);

// POST /v1/embeddings (api_embed.c): `model` (required), `input` a string,
// a list of strings, a list of token ids or a list of lists of token ids
// (each an api_prompt; an empty string or list is refused, at most
// API_MAX_PROMPTS inputs, as completions' prompt), `encoding_format`
// "float" (default) or "base64", `dimensions` >= 1 (0 = not given; the
// upper bound, hidden_size, is checked by the caller, who knows the
// model), `user` ignored.
typedef struct api_embed_request {
    char *model;
    api_prompt *inputs;
    int n_inputs;
    int base64;
    int dimensions;
} api_embed_request;

int api_parse_embeddings(const char *body, size_t len, api_embed_request *out, api_error *e);
void api_embed_request_free(api_embed_request *r);

// The sampler parameters a request asks for (arrays borrowed from r). Range
// checks that need the vocabulary are the caller's: sampler_params_check.
sampler_params api_sampler_params(const api_request *r);


// ---- responses ------------------------------------------------------------------

// Per-token log probabilities, as the engine reports them, with the token
// texts already decoded (bytes: a token can be part of a UTF-8 character).
typedef struct api_top_logprob {
    const char *token;
    size_t len;
    float logprob;
} api_top_logprob;

typedef struct api_token_logprob {
    const char *token;
    size_t len;
    float logprob;            // -INFINITY is written as -9999.0 (as vLLM does)
    const api_top_logprob *top;
    int n_top;
} api_token_logprob;

// One tool call of an answer (borrowed strings).
typedef struct api_out_call {
    const char *id;           // "call_..."
    const char *name;
    const char *arguments;    // JSON text, len bytes
    size_t len;
} api_out_call;

// One choice of a finished (non-streamed) answer.
typedef struct api_choice {
    int index;
    const char *text;         // the generated text (chat: the message content)
    size_t len;
    const char *finish_reason;// "stop", "length", ... or NULL (null)
    const api_token_logprob *logprobs; // NULL = logprobs not requested
    int n_logprobs;
    int null_text;            // chat: content is null (a reply of tool calls only)
    const char *reasoning;    // chat: reasoning_content, reasoning_len bytes; NULL = no such field
    size_t reasoning_len;
    const api_out_call *calls;// chat: message.tool_calls; NULL/0 = no such field
    int n_calls;
} api_choice;

typedef struct api_usage {
    int64_t prompt_tokens;
    int64_t completion_tokens;
} api_usage;

// {"id","object":"chat.completion","created","model","choices":[{"index",
// "message":{"role":"assistant","content","reasoning_content"?,
// "tool_calls"?:[{"id","type":"function","function":{"name","arguments"}}]},
// "logprobs","finish_reason"}],"usage":{...}}
char *api_chat_completion_json(const char *id, int64_t created, const char *model, const api_choice *choices,
                               int n_choices, const api_usage *usage);

// {"id","object":"text_completion","created","model","choices":[{"text",
// "index","logprobs","finish_reason"}],"usage"}. Completion logprobs are
// {"tokens","token_logprobs","top_logprobs":[{tok: lp}],"text_offset"}.
char *api_text_completion_json(const char *id, int64_t created, const char *model, const api_choice *choices,
                               int n_choices, const api_usage *usage);

// One streamed chat chunk for one choice: delta {"role":"assistant",
// "content":""} when role_delta, else {"content": text} (text NULL: an empty
// delta {}), finish_reason (NULL = null), logprobs (NULL = null).
// with_usage_null adds "usage":null (every chunk of an include_usage stream).
char *api_chat_chunk_json(const char *id, int64_t created, const char *model, int index, int role_delta,
                          const char *text, size_t len, const char *finish_reason,
                          const api_token_logprob *logprobs, int n_logprobs, int with_usage_null);

// One streamed chat delta: each part is left out when NULL / negative (and
// the call part also when it has no id, name or args, so a zeroed
// api_delta carries no call).
typedef struct api_delta {
    int role;                 // "role":"assistant"
    const char *content;      // "content", content_len bytes
    size_t content_len;
    const char *reasoning;    // "reasoning_content", reasoning_len bytes
    size_t reasoning_len;
    int call_index;           // >= 0: "tool_calls":[{"index": call_index, ...}]
    const char *call_id;      // the call's first delta: "id", "type":"function", "function":{"name"}
    const char *call_name;
    const char *args;         // "function":{"arguments": args_len bytes} (the first delta sends "")
    size_t args_len;
} api_delta;

// A chat chunk with a general delta (api_chat_chunk_json is the content-only case).
char *api_chat_delta_json(const char *id, int64_t created, const char *model, int index, const api_delta *d,
                          const char *finish_reason, const api_token_logprob *logprobs, int n_logprobs,
                          int with_usage_null);

// The last chunk of an include_usage stream: "choices":[] and the usage.
char *api_chat_usage_chunk_json(const char *id, int64_t created, const char *model, const api_usage *usage);

// One streamed text_completion chunk (choices[0] = {text, index, logprobs,
// finish_reason}); usage NULL leaves it out unless with_usage_null.
char *api_completion_chunk_json(const char *id, int64_t created, const char *model, int index, const char *text,
                                size_t len, const char *finish_reason, const api_token_logprob *logprobs,
                                int n_logprobs, int with_usage_null);
char *api_completion_usage_chunk_json(const char *id, int64_t created, const char *model, const api_usage *usage);

// A model object: {"id","object":"model","created","owned_by"} plus
// "parent" when parent is not NULL (an adapter's base model).
typedef struct api_model {
    const char *id;
    int64_t created;
    const char *owned_by;
    const char *parent;
} api_model;

char *api_model_json(const api_model *m);
// {"object":"list","data":[model...]}
char *api_models_json(const api_model *models, int n);

#endif
