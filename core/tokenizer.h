// tokenizer: byte-level BPE tokenizers read from a Hugging Face
// tokenizer.json (Qwen2/2.5/3, Llama 3, GPT-2 style), giving the same ids as
// transformers.js (the npm oracle the tests compare against, token for token).
//
// Encoding runs the same pipeline as the reference:
//   1. the input bytes are made well-formed UTF-8: every ill-formed sequence
//      becomes U+FFFD by the "maximal subpart" rule, exactly what the WHATWG
//      TextDecoder('utf-8') does (a leading BOM is kept, not stripped);
//   2. added tokens (tokenizer.json "added_tokens") are cut out of the raw
//      text, longest match first, left to right (only when asked to);
//   3. each piece of text between them is normalized (NFC, if the file says
//      so), split by the pre-tokenizer regexes (PCRE2), mapped to the GPT-2
//      byte alphabet and merged by BPE rank.
// Decoding maps ids back to bytes and repairs ill-formed UTF-8 the same way.
//
// A tok is immutable once opened: every function taking a const tok * may be
// called from several threads at once.
#ifndef TESSERA_TOKENIZER_H
#define TESSERA_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef struct tok tok;

// Opens a tokenizer. path is a tokenizer.json file or a model folder holding
// one. tokenizer_config.json beside it, if present, gives bos_token,
// eos_token, add_bos_token / add_eos_token and additional_special_tokens.
// Returns a new tok (free with tok_free) or NULL with err naming the file and
// what was wrong in it.
tok *tok_open(const char *path, err_t *err);
void tok_free(tok *t);

// Flags for tok_encode_ex.
enum {
    // Added/special tokens written in the text become their ids, as HF does.
    // Without it the text is tokenized as plain text throughout: use that
    // for untrusted content so that a user cannot type "<|im_end|>". (This is
    // stricter than HF's split_special_tokens, which still cuts out added
    // tokens that are not marked special, such as Qwen's <think>.)
    TOK_PARSE_SPECIAL = 1,
    // Adds what HF's add_special_tokens=True adds: the special tokens of a
    // TemplateProcessing post_processor around the single sequence, or else
    // BOS / EOS when tokenizer_config.json sets add_bos_token / add_eos_token.
    // Neither Qwen3 nor the npm Llama 3 files add anything.
    TOK_ADD_SPECIAL = 2,
};

// Encodes len bytes of text (any bytes; NUL is an ordinary character; text
// may be NULL when len is 0). Returns a new array of *n ids (free()),
// non-NULL even when *n is 0; NULL with err set only on out of memory or a
// regex engine failure (e.g. its match limit on pathological input).
int32_t *tok_encode_ex(const tok *t, const char *text, size_t len, int flags, size_t *n,
                       err_t *err);

// tok_encode_ex with flags = parse_special ? TOK_PARSE_SPECIAL : 0.
int32_t *tok_encode(const tok *t, const char *text, size_t len, int parse_special, size_t *n,
                    err_t *err);

// Decodes n ids into a new NUL-terminated string (free()), *len (if not NULL)
// its length without the NUL. The bytes are valid UTF-8: a token sequence
// that splits a character decodes its stray bytes to U+FFFD, as HF does.
// skip_special drops special tokens. Ids out of range are skipped. No
// clean_up_tokenization_spaces: decode(encode(s)) is s (NFC'd if the
// normalizer says so). Returns NULL only on out of memory.
char *tok_decode(const tok *t, const int32_t *ids, size_t n, int skip_special, size_t *len);

// Highest id + 1, added tokens included (Qwen3: 151669, Llama 3: 128256).
int tok_vocab_size(const tok *t);

// The id of an exact token string as written in the vocab ("Ġthe") or in
// added_tokens ("<|im_end|>"), or -1.
int32_t tok_token_id(const tok *t, const char *token);

// The token string of id as written in the file (borrowed; lives as long as
// t), or NULL for an id that is out of range or unused.
const char *tok_token_str(const tok *t, int32_t id);

// The raw bytes id decodes to (borrowed; lives as long as t; not
// NUL-terminated, may be part of a UTF-8 character), *len their count; NULL
// for an id out of range or unused. For the grammar engine's token trie.
const char *tok_token_bytes(const tok *t, int32_t id, size_t *len);

// 1 if id is a special token (an added token with "special": true, or listed
// in tokenizer_config.json additional_special_tokens), else 0.
int tok_is_special(const tok *t, int32_t id);

// The added token that s[0..n) starts with, as TOK_PARSE_SPECIAL would cut
// it out there (the longest one), or -1; *len gets its length in bytes (0
// when none). For callers that choose where added tokens may be parsed,
// e.g. chat_encode (core/chat.h), which parses them in template markup only.
int32_t tok_added_at(const tok *t, const char *s, size_t n, size_t *len);

// BOS / EOS ids named by tokenizer_config.json bos_token / eos_token, or -1.
int32_t tok_bos_id(const tok *t);
int32_t tok_eos_id(const tok *t);

// 1 if TOK_ADD_SPECIAL puts BOS first (the id tok_bos_id gives, or the first
// special token of the post_processor template), else 0. For callers that
// build the id sequence themselves, e.g. a completion prompt.
int tok_add_bos(const tok *t);

// Streaming decode for generation: push ids one at a time and emit what
// comes back. A character split across tokens is held back until its last
// byte arrives, so no chunk ends in half a UTF-8 character; bytes that can
// no longer become a character are emitted as U+FFFD. The concatenation of
// all chunks and the final flush equals tok_decode of the same ids.
typedef struct tok_stream tok_stream;

// Returns a new stream (free with tok_stream_free) borrowing t, or NULL on
// out of memory. skip_special as in tok_decode.
tok_stream *tok_stream_new(const tok *t, int skip_special);

// Adds one id. Returns the bytes now ready (*len of them, NUL-terminated,
// possibly ""), owned by the stream and valid until its next call; NULL only
// on out of memory.
const char *tok_stream_push(tok_stream *s, int32_t id, size_t *len);

// Ends the sequence: a held-back incomplete character comes out as U+FFFD.
// The stream may then be reused for a new sequence. Same ownership as push.
const char *tok_stream_flush(tok_stream *s, size_t *len);
void tok_stream_free(tok_stream *s);

#endif
