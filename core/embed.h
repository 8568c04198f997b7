// embed: pooling of a sequence's final hidden states into one embedding
// vector, the pieces /v1/embeddings needs on the numbers' side.
//
//   EMB_POOL_LAST  the last token's hidden state, L2-normalized: what
//                  Qwen3-Embedding does (its model card's
//                  last_token_pool + F.normalize)
//   EMB_POOL_MEAN  the mean over every token of the sequence, L2-normalized
//
// Hidden states are model_forward_hidden's rows (after the final norm).
// Everything here works on caller-owned host arrays; nothing allocates.
#ifndef TESSERA_EMBED_H
#define TESSERA_EMBED_H

#include <stddef.h>

typedef enum emb_pooling { EMB_POOL_LAST, EMB_POOL_MEAN } emb_pooling;

// "last" / "mean" -> 0 and *out set; -1 for anything else.
int emb_pooling_parse(const char *s, emb_pooling *out);
const char *emb_pooling_name(emb_pooling p);

// out (C) = pool(h (n, C)), n >= 1 rows of one sequence in order, then
// L2-normalized (a zero vector stays zero).
void emb_pool(emb_pooling p, const float *h, int n, int C, float *out);

// Scales v (n) to unit L2 norm, summing in double; a zero vector is left.
void emb_normalize(float *v, int n);

// Matryoshka truncation: keeps the first dims of v (dims <= n) and
// re-normalizes them; returns dims.
int emb_truncate(float *v, int n, int dims);

// v (n floats) as base64 of its little-endian float32 bytes (OpenAI's
// encoding_format "base64") into out, which must hold emb_base64_len(n)
// bytes (NUL included). Returns out.
size_t emb_base64_len(int n);
char *emb_base64(const float *v, int n, char *out);

#endif
