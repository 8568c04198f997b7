// chat: render a conversation into a prompt string the way a model's
// tokenizer_config.json `chat_template` does, without a Jinja engine.
//
// Real chat templates come in a handful of families. Each family here is a
// hand-written renderer that reproduces, byte for byte, what Hugging Face's
// apply_chat_template(messages, tokenize=False, add_generation_prompt=...)
// produces for that family's template (tests/test_chat.sh checks this against
// the JS Jinja engine and, where installed, Python's jinja2, on the real
// template strings). chat_detect picks the family from a template string;
// chat_family_parse picks it by name (a command-line override).
//
// The prompt comes back as segments that say who wrote each byte: the
// template (markup) or a message (content), and whether training puts the
// loss on it. chat_encode tokenizes by them, so that text a user types can
// never become a control token; chat_render is the plain string.
//
// Families and what each renders (templates are reproduced as they are,
// quirks included):
//
//   chatml     <|im_start|>ROLE\nCONTENT<|im_end|>\n per message; no default
//              system prompt. Generation prompt: <|im_start|>assistant\n.
//   qwen2      chatml, plus "You are a helpful assistant." as a system turn
//              when the first message is not a system one (Qwen2-Instruct).
//   qwen2.5    chatml, plus "You are Qwen, created by Alibaba Cloud. You are
//              a helpful assistant." as the default system turn; consecutive
//              `tool` messages are grouped into one user turn of
//              <tool_response>...</tool_response> blocks.
//   qwen3      Qwen3's template: no default system; tool grouping as qwen2.5;
//              assistant turns after the last real user query keep their
//              reasoning as <think>\nR\n</think>\n\n before the content (the
//              final assistant turn always gets a think block, empty if no
//              reasoning); earlier assistant turns lose their reasoning.
//              Reasoning comes from chat_msg.reasoning or, when that is NULL,
//              from a "<think>R</think>" inside the content. With
//              add_generation_prompt and enable_thinking == 0 the generation
//              prompt carries an empty think block.
//   llama3     The original Meta-Llama-3-Instruct template: bos_token, then
//              <|start_header_id|>ROLE<|end_header_id|>\n\n + trim(CONTENT) +
//              <|eot_id|> per message, and ALWAYS a trailing
//              <|start_header_id|>assistant<|end_header_id|>\n\n, whatever
//              add_generation_prompt says (that template ignores it).
//   llama3-genprompt  The same, but the trailing assistant header comes only
//              with add_generation_prompt (the later revision of that template).
//   llama3.1   Llama 3.1 / 3.3: bos_token, a system turn that always starts
//              with "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul
//              2024\n\n" and holds the trimmed first system message, then the
//              llama3 turns; a `tool` message becomes an ipython turn whose
//              content is JSON-quoted (as the template's tojson does).
//
// trim() is Python's str.strip(): Unicode whitespace as Python defines it
// (this differs from JavaScript's trim on U+001C..U+001F and U+FEFF).
//
// Tools and assistant tool calls (chat_tools, chat_render_tools) render as
// the templates do:
//   qwen2.5, qwen3  a system turn with "# Tools", one `tool | tojson` line
//              per tool inside <tools></tools> and the call instructions
//              (holding the first system message, if any; qwen2.5's default
//              one otherwise); each call as
//              <tool_call>\n{"name": NAME, "arguments": ARGS}\n</tool_call>
//              after the content (qwen2.5 drops an empty content and its
//              newline; qwen3 a null content counts as "").
//   llama3.1   "Environment: ipython\n" opens the system turn; the first
//              user message (which must follow the system one) is preceded
//              by the template's instructions and each tool as
//              tojson(indent=4) (tools_in_user_message, its default); a call
//              is an assistant turn {"name": NAME, "parameters": ARGS}, one
//              call per message, content ignored. No tools means no tools
//              key: that template would render an empty list as tools.
// tojson is Python's json.dumps(ensure_ascii=False): ", " and ": " (with an
// indent "," and ": "), keys in the order given; numbers print as integers
// when integral (cJSON keeps no distinction between 1 and 1.0), else as
// Python's float repr.
//
// Not supported: tools and tool_calls in the other families (refused, not
// rendered wrong); llama3.1's builtin_tools, custom_tools,
// tools_in_user_message=false and date override; templates outside these
// families (chat_detect says so rather than guessing).
#ifndef TESSERA_CHAT_H
#define TESSERA_CHAT_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "tokenizer.h"

struct cJSON;

typedef enum chat_family {
    CHAT_CHATML,
    CHAT_QWEN2,
    CHAT_QWEN25,
    CHAT_QWEN3,
    CHAT_LLAMA3,
    CHAT_LLAMA3_GENPROMPT,
    CHAT_LLAMA31,
    CHAT_NFAMILIES
} chat_family;

// One message. All strings are borrowed for the duration of the call.
// role: "system", "user", "assistant" or "tool" (tool: not in llama3 and
// llama3-genprompt, whose templates have no tool turn). content must not be
// NULL (it may be ""), except in an assistant message with tool calls
// (chat_tools): NULL there renders as the templates render a null content.
// reasoning is optional (NULL = absent); only qwen3 renders it, the other
// families' templates ignore it.
typedef struct chat_msg {
    const char *role;
    const char *content;
    const char *reasoning;
} chat_msg;

typedef struct chat_opts {
    int add_generation_prompt;  // append the header that starts the reply
    int enable_thinking;        // -1 unset, 0, 1; only qwen3 reads it
    const char *bos_token;      // llama3*: NULL means "<|begin_of_text|>"; "" means none
} chat_opts;

// One call an assistant message makes (borrowed). id is optional: no
// supported template prints it. arguments is a JSON object (the parsed
// OpenAI `function.arguments` string), printed as tojson prints it.
typedef struct chat_tool_call {
    const char *id;
    const char *name;
    const struct cJSON *arguments;
} chat_tool_call;

// The calls of one message: calls[0..n).
typedef struct chat_calls {
    const chat_tool_call *calls;
    int n;
} chat_calls;

// A request's tools and its messages' tool calls, all borrowed. defs are
// the tools as the client sent them (OpenAI's {"type": "function",
// "function": {"name", "description", "parameters"}}), each printed whole
// with tojson; n_defs == 0: no tools. calls is NULL, or one chat_calls per
// message (n of them), n = 0 for a message without calls; only assistant
// messages may have calls. qwen2.5, qwen3 and llama3.1 only.
typedef struct chat_tools {
    const struct cJSON *const *defs;
    int n_defs;
    const chat_calls *calls;
} chat_tools;

// Byte range [start, end) of one assistant message in the rendered prompt:
// everything after that turn's header up to and including its end-of-turn
// marker (<|im_end|> or <|eot_id|>), i.e. what the model generates and what
// training puts the loss on. For qwen3 this includes the think block. It is
// the union of that message's trained segments (below).
typedef struct chat_span {
    size_t start, end;
    int msg_index;  // index into the msgs array
} chat_span;

// Who wrote a piece of the prompt. Markup is everything the template writes
// itself: bos, role headers and turn markers, Qwen3's think-block tags and
// the newlines around them, <tool_response> wrappers, default system
// prompts, llama3.1's "Cutting Knowledge Date..." preamble and the quotes
// of its JSON-quoted ipython content, the generation prompt. Content is the
// messages' own text as the template places it (trimmed, split off a think
// block, JSON-escaped in an ipython turn): the text a client or a data file
// supplied, which must never be read as control tokens. Tool definitions and
// call names and arguments are content too, punctuation included, although
// the template's tojson writes the braces and quotes: every string in them
// is the client's, and a segment of content cannot be half trusted. Only the
// fixed text around them ("# Tools...", "<tool_call>\n{\"name\": \"") is
// markup. This costs nothing in the ids: chat_encode encodes the text
// between two cut tokens as one piece whatever segments it spans.
typedef enum chat_seg_kind { CHAT_MARKUP, CHAT_CONTENT } chat_seg_kind;

// One segment: the bytes [start, end) of the prompt text.
typedef struct chat_seg {
    size_t start, end;
    int msg_index;       // the message whose turn it belongs to; -1 for none (bos,
                         // a default system turn, the generation prompt, and
                         // qwen's tools turn when no system message holds it)
    chat_seg_kind kind;
    int trained;         // 1 inside an assistant message's chat_span
} chat_seg;

// A rendered prompt: text (NUL-terminated, len bytes) cut into segments that
// are non-empty, in order, and cover it exactly (segs[0].start == 0, each
// starts where the previous ends, the last ends at len). Neighbouring
// segments differ in msg_index, kind or trained (they are merged otherwise).
typedef struct chat_prompt {
    char *text;
    size_t len;
    chat_seg *segs;
    int n_segs;
} chat_prompt;

// Picks the family of a chat_template string. Returns 0, or -1 with
// "unsupported chat template (...)" when no family matches exactly enough
// to reproduce it (e.g. ChatML with an unknown default system prompt).
int chat_detect(const char *chat_template, chat_family *out, err_t *err);

// Parses a family name ("chatml", "qwen2", "qwen2.5", "qwen3", "llama3",
// "llama3-genprompt", "llama3.1"). Returns 0, or -1 naming the known names.
int chat_family_parse(const char *name, chat_family *out, err_t *err);

// The family's name as chat_family_parse accepts it (static string).
const char *chat_family_name(chat_family f);

// Renders msgs[0..n) into a new prompt (free with chat_prompt_free).
// opts may be NULL: no generation prompt, thinking unset, default bos.
// Validates every message first: a known role the family can render and
// non-NULL content; the error names the message index and role. Returns NULL
// with err set on failure (n < 1 too).
chat_prompt *chat_render_segments(chat_family f, const chat_msg *msgs, int n, const chat_opts *opts,
                                  err_t *err);
void chat_prompt_free(chat_prompt *p);

// chat_render_segments with tools and tool calls (tools may be NULL: none).
// Also validates them: a family that renders them, calls on assistant
// messages only, each with a name and an object for arguments.
chat_prompt *chat_render_tools(chat_family f, const chat_msg *msgs, int n, const chat_opts *opts,
                               const chat_tools *tools, err_t *err);

// chat_render_segments' text alone, as a new NUL-terminated string (free
// with free()). If spans is not NULL, *spans gets a new array (free with
// free(); NULL when there is no assistant message) of one chat_span per
// assistant message, in order, taken from the trained segments, and
// *n_spans its length. Same validation and errors.
char *chat_render(chat_family f, const chat_msg *msgs, int n, const chat_opts *opts,
                  chat_span **spans, int *n_spans, err_t *err);

// Tokenizes a rendered prompt by its segments (t borrowed). Added tokens are
// cut out of markup only (leftmost, longest, lying wholly inside a run of
// markup segments), so the template's markers become their ids; content is
// always plain text, so a message that says "<|im_end|>" cannot forge a
// turn. The text between two cut tokens is encoded as one piece, whatever
// segments it spans, so the ids equal tok_encode(p->text, parse_special=1)
// whenever no content holds added-token text. (The lstrip/rstrip of added
// tokens is not applied; the Qwen and Llama 3 tokenizers set neither.) The
// caller may clear trained flags first (the trainer does so for messages of
// weight 0); p is only read.
// Returns a new array of *n ids (free()); if trained is not NULL, *trained
// gets a new array of *n flags (free()): 1 for a token that has a byte in a
// trained segment (a token straddling a segment edge counts, as found by
// re-encoding the text before that edge). NULL with err set on out of
// memory or a tokenizer failure.
int32_t *chat_encode(const tok *t, const chat_prompt *p, size_t *n, uint8_t **trained, err_t *err);

// Reads a Hugging Face tokenizer_config.json: detects the family of its
// chat_template (a string, or a list of {name, template} of which "default"
// is used; when the file has none, a chat_template.jinja beside it) and
// returns the bos_token (a new string to free(), or NULL when the file has
// none). bos_token may be NULL if the caller does not want it.
int chat_from_config(const char *tokenizer_config_json_path, chat_family *f, char **bos_token,
                     err_t *err);

#endif
