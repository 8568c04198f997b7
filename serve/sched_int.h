// sched_int: what serve's sched*.c share (private; sched.h is the public
// side and says what the engine does).
//
//   sched.c           the engine: submit/cancel/stop, the outbox, admission,
//                     one step (plan, forward, sample), create/free
//   sched_adapters.c  adapters: the load list, the loader thread, the slot
//                     table
//   sched_embed.c     embedding requests: their forward and pooling
//   sched_grammar.c   structured output and tool calls: each constrained
//                     sequence's phase, matcher and allowed-token bitset,
//                     and the mask workers that fill the bitsets while the
//                     forward runs
//
// Threads and who touches what:
//   loop thread:   submit, cancel, stop, the async callback (sink calls);
//   engine thread: the waiting list, the running array, the KV cache, the
//                  model, the adapter slots, the batch buffers;
//   loader thread: reg_entry_load of queued adapter loads;
//   mask threads:  gm_mask of the sequences the engine thread posted for
//                  this step (each sequence on one thread at a time; the
//                  engine thread does not touch them until the step's
//                  masks are all done).
// `mu` guards what they share: the inbox, the cancel flags, the outbox, the
// load list's states, the stats, kick/quit.
#ifndef TESSERA_SCHED_INT_H
#define TESSERA_SCHED_INT_H

#include <pthread.h>
#include <stdint.h>

#include "registry.h"
#include "sched.h"

enum { SEQ_WAIT, SEQ_RUN, SEQ_DONE };

// A constrained sequence's phase (sched_grammar.c draws the machine):
//   THINK  in a reasoning block: free until think_end
//   WS     whitespace (ws_left more) or the matcher's first token: after
//          a reasoning block (response_format), after a Hermes call_open
//   ON     inside the matcher's value (the response_format value, a call)
//   FREE   tools: free text; Hermes: call_open opens a call (masked under
//          SRV_TOOLS_BAN and at max_calls)
//   FIRST  tools, Llama 3.1: the reply's first token (after ws_left blank
//          ones, or a <|python_tag|>, which a call may follow): one
//          starting with '{' opens the call, any other makes the rest
//          free text
//   OPEN   tools, Hermes SRV_TOOLS_REQUIRED, between calls: whitespace
//          (ws_left more), call_open, or a stop id once a call is done
//   CLOSE  tools, Hermes: the call is complete: whitespace (ws_left more)
//          or call_close
// Which phases have a mask: sched_grammar_allowed.
enum { SEQ_G_THINK = 1, SEQ_G_WS, SEQ_G_ON, SEQ_G_FREE, SEQ_G_FIRST, SEQ_G_OPEN, SEQ_G_CLOSE };

typedef struct sreq sreq;

typedef struct seq {
    sreq *q;
    int index;
    int state;
    int cancel;         // under mu: the loop thread asked for a cancel
    int kvs;            // KV sequence id, -1 when none
    int64_t n_past;     // positions stored in the KV
    int n_gen;
    int32_t *gen;       // generated tokens (capacity max_tokens)
    sampler_state *ss;
    int slot;           // adapter slot while running; -1 = base
    uint64_t admitted;  // admission order: preemption takes the latest
    int planned;        // tokens in this step's batch
    gm_matcher *gm;     // the value's or the current call's matcher; NULL: none (free text, a ban)
    int tools;          // SRV_TOOLS_*: OFF for free text and response_format
    int n_calls;        // tools: calls opened so far
    int gphase;         // SEQ_G_*: where the sequence is in its constraint; 0 = unconstrained
    int ws_left;        // WS, FIRST, OPEN, CLOSE (and ON just before CLOSE): whitespace tokens still allowed
    int think_first;    // think_end >= 0 and nothing generated yet: the first token may open a
                        // reasoning block (think_open) instead of starting the constraint
    uint32_t *allowed;  // (mask_words) this step's allowed tokens; NULL when unconstrained
    size_t n_allowed;   // bits set in allowed
    float *pool;        // embedding requests: (hidden_size) the sum of the rows so far (mean pooling) or
                        // the last row (last pooling); NULL for generation
    struct seq *next;   // inbox / waiting list
} seq;

// One srv_request: its n choices. Freed on the loop thread once every
// finish has been delivered (cancel may look at it until then).
struct sreq {
    srv_request *r;
    int n, delivered;
    seq seqs[];
};

typedef struct event {
    sreq *q;
    srv_request *r;
    int index;
    int finish;         // 0 = a token
    srv_finish reason;
    int count;
    sampler_result res;
    float *vec;         // an embedding (owned; dim floats) instead of a token, when not NULL
    int dim;
    struct event *next;
} event;

enum { LOAD_QUEUED, LOAD_BUSY, LOAD_DONE };

typedef struct aload {
    reg_entry *entry;   // held reference
    int state;          // under mu
    int ready;          // engine's copy of state == LOAD_DONE
    int failed;         // engine: the adapter cannot be used (err says why)
    lora_adapter *a;    // the loader's result (NULL on failure)
    err_t err;
    struct aload *next; // list mutations under mu
} aload;

typedef struct aslot {
    reg_entry *entry;   // held reference; NULL = free
    int refs;           // running sequences using it
    uint64_t last;      // LRU tick
} aslot;

struct sched {
    srv *s;
    model *m;
    sched_opts o;
    const model_config *cfg;
    int V;
    kv_cache *kv;
    uv_async_t async;
    pthread_t thread, loader;
    int started, loader_started;
    pthread_mutex_t mu;
    pthread_cond_t cv, lcv;

    // under mu
    seq *in_head, *in_tail;
    int n_queued;       // choices submitted and not admitted nor finished
    int kick, quit;
    event *out_head, *out_tail;
    aload *loads;
    sched_stats st;

    // engine thread
    seq *wait_head;
    seq **run;
    int n_run;
    aslot *slots;
    int n_slots;
    uint64_t tick, admit_tick;
    int32_t *b_tok, *b_pos, *b_seq, *b_ad;
    uint8_t *b_want;
    seq **order, **wanted;
    sampler_job *jobs;         // (max_num_seqs) one step's rows for sampler_sample_batch
    sampler_result *results;   // (max_num_seqs) what it sampled

    // structured output (sched_grammar.c)
    size_t mask_words;         // words of an allowed bitset: covers the model's and the tokenizer's ids
    const tok *gtok;           // the tokenizer the bitsets index (dead-end logs)
    uint32_t *ws_bits;         // tokens made of whitespace only (after a reasoning block, around calls)
    uint32_t *brace_bits;      // tokens whose bytes start with '{' after any blanks (Llama 3.1 calls)
    int32_t python_tag;        // Llama 3.1's <|python_tag|>, -1 if none: toolcall.h reads a call after it
    int32_t think_open;        // Qwen3's <think>, -1 if none: the token that opens a reasoning block
    pthread_t *mthreads;
    int n_mthreads;
    pthread_mutex_t mmu;       // the step's mask jobs
    pthread_cond_t mcv, mdone;
    seq **mjobs;               // (max_num_seqs) posted for this step
    int n_mjobs, mnext, mfinished, mquit;
    double mbusy;              // seconds spent in gm_mask this step
    // embeddings (sched_embed.c)
    seq **emb;                 // (max_num_seqs) this step's embedding sequences
    float *hid;                // (max_batched_tokens, hidden_size) their wanted rows' hidden states
};

// ---- adapters (sched_adapters.c) ---------------------------------------------

// What sched_adapter_slot returns besides a slot index (>= 0).
typedef enum sched_slot_result {
    SCHED_SLOT_BASE = -1,   // no adapter: the base model (the batch's adapter index -1)
    SCHED_SLOT_WAIT = -2,   // not yet: the adapter is loading, or no slot is free
    SCHED_SLOT_FAILED = -3, // the adapter cannot be used (its load says why)
} sched_slot_result;

// The slot for a waiting sequence's adapter: resident, or uploaded now from
// a finished load (which starts the load when there is none); else one of
// sched_slot_result. Engine thread.
int sched_adapter_slot(sched *e, seq *s);

// The load of r's adapter entry, or NULL. Engine thread (or the loop thread
// once the threads are joined).
aload *sched_load_find(sched *e, const srv_request *r);

// Unlinks l (under mu) and frees it, its adapter and its entry reference.
// Engine thread, or the loop thread once the threads are joined.
void sched_load_remove(sched *e, aload *l);

// Drops failed loads and finished loads no waiting sequence wants any more.
// Engine thread, after admission.
void sched_loads_prune(sched *e);

// The loader thread's body (arg: the sched): builds queued loads' weights
// with reg_entry_load until quit.
void *sched_loader_main(void *arg);

// ---- sched.c, for the other files ------------------------------------------------

// Ends s and posts its finish (seq_finish). Engine thread; must not hold mu.
void sched_seq_finish(sched *e, seq *s, srv_finish reason);
// Appends ev to the outbox; mu held.
void sched_post_locked(sched *e, event *ev);

// ---- embeddings (sched_embed.c) ----------------------------------------------------

// An embedding request's sequence at submit: its pool. 0, or -1 + err.
int sched_embed_open(sched *e, seq *s, err_t *err);
// Runs this step's n embedding sequences (planned > 0) in one forward,
// folds their rows into their pools and finishes those whose prompt is
// done (posting the vector first). Returns the prompt tokens it computed.
int sched_embed_step(sched *e, seq **emb, int n);

// ---- structured output (sched_grammar.c) -----------------------------------------

// The whitespace and brace tokens of t (borrowed: it must outlive e; NULL:
// no tokenizer, no such tokens) and the mask threads. Needs e->V and
// e->o.max_num_seqs; e->mu guards the stats it adds to. 0, or -1 + err.
int sched_grammar_init(sched *e, const tok *t, err_t *err);
// Joins the mask threads and frees what init made.
void sched_grammar_free(sched *e);

// A sequence of a request with a grammar or a tool-call constraint
// (tools_mode not OFF): its phase, matcher and bitset (submit, loop
// thread). 0, or -1 + err (also for SRV_TOOLS_AUTO / REQUIRED without a
// call_grammar). A request with neither: nothing, 0.
int sched_grammar_seq_open(sched *e, seq *s, err_t *err);
// Frees the sequence's matcher and bitset (any thread that owns s).
void sched_grammar_seq_close(seq *s);

// Before the forward: posts the masks of the wanted sequences that are
// constrained to the mask threads. After it: sched_masks_end computes what
// is left on the engine thread, waits for the rest and counts the time.
void sched_masks_begin(sched *e, seq **wanted, int n);
void sched_masks_end(sched *e);

// The bitset to sample s with this step (NULL: every token).
const uint32_t *sched_grammar_allowed(const seq *s);

// Advances s's phase and matcher by the token just sampled (a free
// phase's token too: it may open a call). 0, or -1 when the token is one
// the mask did not allow or the matcher refuses one its own mask allowed
// (an engine bug: logged; the caller finishes the sequence with an error).
int sched_grammar_took(sched *e, seq *s, const sampler_result *res);

// Logs a grammar that allows no token where its value is not complete (an
// engine bug: a prefix it accepted has no completion), with the phase,
// the call it was in and the end of the text so far.
void sched_grammar_log_dead_end(sched *e, const seq *s);

#endif
