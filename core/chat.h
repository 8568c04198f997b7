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
// Not supported: tool definitions (`tools`), assistant `tool_calls`, and
// the date override of llama3.1; templates outside these families (chat_detect
// says so rather than guessing).
#ifndef TESSERA_CHAT_H
#define TESSERA_CHAT_H

#include <stddef.h>

#include "err.h"

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
// NULL (it may be ""). reasoning is optional (NULL = absent); only qwen3
// renders it, the other families' templates ignore it.
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

// Byte range [start, end) of one assistant message in the rendered prompt:
// everything after that turn's header up to and including its end-of-turn
// marker (<|im_end|> or <|eot_id|>), i.e. what the model generates and what
// training puts the loss on. For qwen3 this includes the think block.
typedef struct chat_span {
    size_t start, end;
    int msg_index;  // index into the msgs array
} chat_span;

// Picks the family of a chat_template string. Returns 0, or -1 with
// "unsupported chat template (...)" when no family matches exactly enough
// to reproduce it (e.g. ChatML with an unknown default system prompt).
int chat_detect(const char *chat_template, chat_family *out, err_t *err);

// Parses a family name ("chatml", "qwen2", "qwen2.5", "qwen3", "llama3",
// "llama3-genprompt", "llama3.1"). Returns 0, or -1 naming the known names.
int chat_family_parse(const char *name, chat_family *out, err_t *err);

// The family's name as chat_family_parse accepts it (static string).
const char *chat_family_name(chat_family f);

// Renders msgs[0..n) into a new NUL-terminated prompt (free with free()).
// opts may be NULL: no generation prompt, thinking unset, default bos.
// If spans is not NULL, *spans gets a new array (free with free(); NULL when
// there is no assistant message) of one chat_span per assistant message, in
// order, and *n_spans its length. Validates every message first: a known
// role the family can render and non-NULL content; the error names the
// message index and role. Returns NULL with err set on failure (n < 1 too).
char *chat_render(chat_family f, const chat_msg *msgs, int n, const chat_opts *opts,
                  chat_span **spans, int *n_spans, err_t *err);

// Reads a Hugging Face tokenizer_config.json: detects the family of its
// chat_template (a string, or a list of {name, template} of which "default"
// is used; when the file has none, a chat_template.jinja beside it) and
// returns the bos_token (a new string to free(), or NULL when the file has
// none). bos_token may be NULL if the caller does not want it.
int chat_from_config(const char *tokenizer_config_json_path, chat_family *f, char **bos_token,
                     err_t *err);

#endif
