// sched: the real generation engine behind the server (server.h's
// srv_engine) over core/model: one engine thread runs the step loop.
//
// Each step the engine thread
//   1. takes new requests from the submit queue and applies cancels (a
//      cancelled choice is finished and its KV blocks freed here, at the
//      step boundary);
//   2. uploads adapters the loader thread has parsed into model slots (at
//      most max_loras resident; the least recently used slot that no
//      running sequence uses is evicted);
//   3. admits waiting sequences (one per choice) in arrival order while
//      fewer than max_num_seqs run, their adapter is resident and the KV
//      pool has blocks for what they must compute; a sequence whose adapter
//      is not resident waits without blocking the others;
//   4. builds one flat batch of at most max_batched_tokens tokens: one token
//      per decoding sequence first, then prefill chunks (a long prompt is
//      spread over several steps and never stalls the decoders), sorted by
//      adapter slot into contiguous segments; grows each sequence's KV as
//      it goes, preempting the most recently admitted sequence (its KV is
//      dropped and recomputed later, results unchanged) when blocks run out;
//   5. runs model_forward (while it runs, worker threads fill the allowed-
//      token bitsets of the sequences with a response_format grammar:
//      sched_grammar.c), leaving the logits in backend memory, samples
//      every sequence whose last token was in the batch with its own
//      sampler_state (seed + choice index) in one sampler_sample_batch call
//      (only token ids and requested logprobs come back), and posts
//      tokens and finishes to an outbox that the loop thread drains on a
//      uv_async_t (the sink is only ever called on the loop thread).
//
// Embedding requests (srv_request.embed) are sequences like the others
// (admitted, given KV, chunked, preempted) with nothing to sample: each
// step their chunks run in a model_forward_hidden of their own after the
// generation forward, and their rows are pooled per sched_opts.pooling
// (sched_embed.c).
//
// Adapters are keyed by registry entry (srv_request.adapter_entry): a new
// version on disk is a new entry, so it gets a slot of its own for new
// requests while requests resolved to the old one finish on the old
// weights, which the entry keeps open even after the folder is replaced or
// removed (registry.h). Loads and slots hold references on their entries.
// Weights are built from the entry (reg_entry_load) on a loader thread,
// never on the engine or the loop thread. A file that fails to load, or whose rank is
// above the model's max_lora_rank, finishes its requests with
// SRV_FINISH_ERROR and an error log line naming the adapter.
//
// Ownership: sched_new borrows the server and the model (both must outlive
// the engine: free the engine after srv_run has returned and before
// model_free) and plugs itself in with srv_set_engine.
#ifndef TESSERA_SCHED_H
#define TESSERA_SCHED_H

#include "embed.h"
#include "err.h"
#include "metrics.h"
#include "model.h"
#include "server.h"

typedef struct sched_opts {
    int max_num_seqs;       // sequences running at once (default 16)
    int max_batched_tokens; // tokens per forward (default 512; also the model's max_tokens)
    int max_queue;          // choices waiting beyond which submit answers BUSY (default 256)
    int max_model_len;      // positions per sequence (default: max_position_embeddings, at most 8192)
    int kv_block_size;      // tokens per KV block (default 16)
    int kv_blocks;          // blocks in the KV pool (default: enough for max_num_seqs sequences
                            // of max_model_len, at most 1 GiB of KV at the model's
                            // kv_bytes_per_token: bf16 fits twice the blocks of f32)
    emb_pooling pooling;    // embedding requests' pooling (default EMB_POOL_LAST: Qwen3-Embedding's)
} sched_opts;

// The defaults above (0 fields mean the default in sched_new too).
sched_opts sched_opts_default(void);

typedef struct sched sched;

// Creates the engine for m (adapter slots = model_max_slots(m)) and plugs
// it into s. Returns the engine (free with sched_free once srv_run has
// returned) or NULL + err.
sched *sched_new(srv *s, model *m, const sched_opts *o, err_t *err);
void sched_free(sched *e);

// Counters for logs and /metrics (read on the loop thread; approximate):
// metrics.h's engine snapshot, step-latency histogram included.
typedef metrics_engine sched_stats;
void sched_get_stats(sched *e, sched_stats *st);

#endif
