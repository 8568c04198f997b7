// kv: the paged KV cache. Keys and values of every sequence live in
// fixed-size blocks of block_size token slots taken from one pool; a
// sequence's block table lists its blocks in position order, so position p
// is slot table[p / block_size] * block_size + p % block_size (the layout
// kernels/backend.h's attention reads). Blocks come from a free list and go
// back to it when the sequence closes.
//
// Storage, per layer, in backend memory:
//   k[layer], v[layer]  (n_blocks * block_size, n_kv_heads * head_dim)
// elements of kv_opts.dtype: f32, or bf16 (half the bytes; kv_store rounds
// to nearest even, attention widens back exactly and accumulates in f32).
// The block tables are host memory (max_seqs, max_blocks_per_seq) int32, -1
// where no block is mapped. Ops read `table_bk`: the same array on a
// host-memory backend, a backend copy otherwise, refreshed by model_forward
// (kv_sync_table), which uploads only the entries a reserve has mapped
// since the last sync (the whole table once, at the first sync).
//
// Who writes what: the scheduler (or a test) opens a sequence, reserves
// capacity for the positions the next forward will write, and closes the
// sequence when done; model_forward stores K/V at the batch's positions.
// Not thread-safe: one engine thread owns a cache.
#ifndef TESSERA_KV_H
#define TESSERA_KV_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "err.h"

typedef struct kv_opts {
    int n_layers, n_kv_heads, head_dim;
    int block_size;   // tokens per block (16 typical; tests use 4)
    int n_blocks;     // blocks in the pool
    int max_seqs;     // sequence ids are 0 .. max_seqs - 1
    int max_seq_len;  // positions per sequence (rounded up to whole blocks)
    bk_dtype dtype;   // of the K and V rows: BK_DT_F32 (0, the default) or BK_DT_BF16
} kv_opts;

// Bytes one token position takes in a cache of this shape, K and V of every
// layer: 2 * n_layers * n_kv_heads * head_dim * bk_dtype_bytes(dtype).
static inline int64_t kv_bytes_per_token(int n_layers, int n_kv_heads, int head_dim, bk_dtype dtype) {
    return 2LL * n_layers * n_kv_heads * head_dim * bk_dtype_bytes(dtype);
}

typedef struct kv_cache {
    kv_opts o;
    const bk_ops *bk;
    int max_blocks_per_seq;  // table row length
    int64_t row;             // elements per token slot: n_kv_heads * head_dim
    void **k, **v;           // [n_layers] pointers into `mem`, rows of o.dtype
    void *mem;               // one backend allocation for every layer's K and V
    int32_t *table;          // host (max_seqs, max_blocks_per_seq)
    int32_t *table_bk;       // the tables as ops read them (== table on the CPU)
    int table_dirty;         // some row has entries the backend copy lacks
    int table_all;           // the backend copy was never written: upload it whole
    int32_t *dirty_lo, *dirty_hi; // host [max_seqs] block range [lo, hi) of a row to upload
    int32_t *n_mapped;       // host [max_seqs] blocks mapped per sequence
    int64_t *len;            // host [max_seqs] positions written so far (model_forward)
    uint8_t *open;           // host [max_seqs]
    int32_t *free_list;      // host stack of free block ids
    int n_free;
} kv_cache;

// Returns a new cache (free with kv_free) or NULL + err (bad sizes, out of
// memory). Memory: n_blocks * block_size * kv_bytes_per_token bytes.
kv_cache *kv_new(const bk_ops *bk, const kv_opts *o, err_t *err);
void kv_free(kv_cache *kv);

// Opens a sequence with no blocks; returns its id (the lowest free one), or
// -1 + err when max_seqs are open.
int kv_seq_open(kv_cache *kv, err_t *err);

// Makes positions 0 .. n_tokens - 1 of seq writable, taking blocks from the
// free list as needed. All or nothing: -1 + err (and nothing taken) when the
// free list is short or n_tokens passes max_seq_len.
int kv_seq_reserve(kv_cache *kv, int seq, int64_t n_tokens, err_t *err);

// Returns seq's blocks to the free list and closes it.
void kv_seq_close(kv_cache *kv, int seq);

// Positions seq can hold without another reserve.
int64_t kv_seq_capacity(const kv_cache *kv, int seq);

// Free blocks in the pool; blocks a reserve of n more tokens would need.
int kv_free_blocks(const kv_cache *kv);
int kv_blocks_for(const kv_cache *kv, int seq, int64_t n_tokens);

// Copies the block table entries that reserves have mapped since the last
// call to the backend, one upload per changed row (a no-op on a
// host-memory backend). A close changes nothing there: the entries it
// unmaps are read by no op (ops read positions below an open sequence's
// capacity), and the reserve that maps them again marks them.
void kv_sync_table(kv_cache *kv);

// The cache slot of position p of seq (p < capacity).
static inline int64_t kv_slot(const kv_cache *kv, int seq, int64_t p) {
    int bs = kv->o.block_size;
    return (int64_t)kv->table[(int64_t)seq * kv->max_blocks_per_seq + p / bs] * bs + p % bs;
}

#endif
