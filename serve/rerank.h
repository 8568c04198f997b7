// rerank: POST /v1/rerank (also /rerank), the Jina/Cohere-style request
// that Dify, LangChain and llama-server send:
//   {"model", "query": string, "documents": [string | {"text": string}],
//    "top_n"?: int >= 1 (default: all), "return_documents"?: bool (false),
//    "instruction"?: string}
// answered
//   {"id", "object": "list", "model", "results": [{"index", "relevance_score",
//    "document"?: {"text"}}] (score descending, top_n of them),
//    "usage": {"prompt_tokens", "total_tokens"}}.
//
// Scoring is Qwen3-Reranker's: each document is rendered as
//   <|im_start|>system\nJudge whether the Document meets the requirements
//   based on the Query and the Instruct provided. Note that the answer can
//   only be "yes" or "no".<|im_end|>\n<|im_start|>user\n<Instruct>: I\n
//   <Query>: Q\n<Document>: D<|im_end|>\n<|im_start|>assistant\n
//   <think>\n\n</think>\n\n
// (query, document and instruction are plain text: a "<|im_end|>" typed in
// them is that text, not the control token) and its score is P(yes) =
// softmax over the logits of the tokens "yes" and "no" at the next position.
// No engine change: every document is one srv_request with max_tokens 1,
// greedy, a +100 logit_bias on both "yes" and "no" (the same shift on both
// leaves their difference, so the softmax of the two, unchanged, and makes
// them the two most likely tokens) and top_logprobs 2, which the sampler
// takes after the bias and before temperature (sampler.h); then
// P(yes) = 1 / (1 + exp(lp(no) - lp(yes))). (The f32 logits carry the
// +100, so the difference is exact to about 1e-5.)
//
// Checks, each a 400 naming the field: the body, "model" (404
// model_not_found through access.h, like chat), "query", "documents" (a
// non-empty list, at most RERANK_MAX_DOCS, of strings or objects with a
// string "text"), "top_n", "return_documents", "instruction"; a tokenizer
// without single "yes" and "no" tokens is a 400 "model"; a prompt over the
// context is a 400 "documents[i]". Tokenizing runs on the libuv thread
// pool; the rest on the loop thread. Documents go to the engine as far as
// its queue takes them, the rest as earlier ones finish; a queue full of
// other work is a 429. A client that goes away cancels the
// documents in flight; the job is freed once the engine has finished each.
//
// Owns its jobs; borrows everything in completion_env and the engine.
#ifndef TESSERA_RERANK_H
#define TESSERA_RERANK_H

#include "completion.h"

#define RERANK_MAX_DOCS 1024

typedef struct rerank rerank;

// Returns a new handler (rerank_free) or NULL when out of memory.
rerank *rerank_open(const completion_env *env);

// The engine documents are submitted to (borrowed); NULL: 503.
void rerank_set_engine(rerank *r, const srv_engine *engine);

// Answers one rerank request from tenant tn (borrowed for this call).
void rerank_handle(rerank *r, const http_req *q, http_res *res, const tn_tenant *tn);

// The server is stopping: tokenized jobs are dropped instead of submitted.
void rerank_stop(rerank *r);

void rerank_free(rerank *r);

#endif
