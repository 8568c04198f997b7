#include "kv.h"

#include <stdlib.h>
#include <string.h>

kv_cache *kv_new(const bk_ops *bk, const kv_opts *o, err_t *err) {
    if (o->n_layers < 1 || o->n_kv_heads < 1 || o->head_dim < 1 || o->block_size < 1 || o->n_blocks < 1 ||
        o->max_seqs < 1 || o->max_seq_len < 1) {
        err_set(err,
                "kv cache: every size must be >= 1 (layers %d, kv heads %d, head_dim %d, block_size %d, "
                "blocks %d, max_seqs %d, max_seq_len %d)",
                o->n_layers, o->n_kv_heads, o->head_dim, o->block_size, o->n_blocks, o->max_seqs, o->max_seq_len);
        return NULL;
    }
    kv_cache *kv = calloc(1, sizeof *kv);
    if (!kv) {
        err_set(err, "kv cache: out of memory");
        return NULL;
    }
    kv->o = *o;
    kv->bk = bk;
    kv->max_blocks_per_seq = (o->max_seq_len + o->block_size - 1) / o->block_size;
    kv->row = (int64_t)o->n_kv_heads * o->head_dim;
    int64_t per_layer = (int64_t)o->n_blocks * o->block_size * kv->row * bk_dtype_bytes(o->dtype); // bytes
    size_t nt = (size_t)o->max_seqs * kv->max_blocks_per_seq;
    kv->k = calloc((size_t)o->n_layers, sizeof *kv->k);
    kv->v = calloc((size_t)o->n_layers, sizeof *kv->v);
    kv->table = malloc(nt * sizeof *kv->table);
    kv->n_mapped = calloc((size_t)o->max_seqs, sizeof *kv->n_mapped);
    kv->len = calloc((size_t)o->max_seqs, sizeof *kv->len);
    kv->open = calloc((size_t)o->max_seqs, 1);
    kv->free_list = malloc((size_t)o->n_blocks * sizeof *kv->free_list);
    kv->dirty_lo = calloc((size_t)o->max_seqs, sizeof *kv->dirty_lo);
    kv->dirty_hi = calloc((size_t)o->max_seqs, sizeof *kv->dirty_hi);
    if (!kv->k || !kv->v || !kv->table || !kv->n_mapped || !kv->len || !kv->open || !kv->free_list ||
        !kv->dirty_lo || !kv->dirty_hi) {
        kv_free(kv);
        err_set(err, "kv cache: out of memory");
        return NULL;
    }
    kv->mem = bk->alloc((size_t)per_layer * 2 * (size_t)o->n_layers, err);
    if (!kv->mem) {
        kv_free(kv);
        err_wrap(err, "kv cache of %d blocks x %d tokens", o->n_blocks, o->block_size);
        return NULL;
    }
    char *p = kv->mem;
    for (int l = 0; l < o->n_layers; l++) {
        kv->k[l] = p, p += per_layer;
        kv->v[l] = p, p += per_layer;
    }
    for (size_t i = 0; i < nt; i++) kv->table[i] = -1;
    kv->table_bk = kv->table;
    if (!bk->host_memory) {
        kv->table_bk = bk->alloc(nt * sizeof *kv->table, err);
        if (!kv->table_bk) {
            kv_free(kv);
            return NULL;
        }
        kv->table_dirty = kv->table_all = 1;
    }
    // Stack with block 0 on top: a fresh cache hands out 0, 1, 2, ...
    for (int b = 0; b < o->n_blocks; b++) kv->free_list[b] = o->n_blocks - 1 - b;
    kv->n_free = o->n_blocks;
    return kv;
}

void kv_free(kv_cache *kv) {
    if (!kv) return;
    if (kv->mem) kv->bk->free(kv->mem);
    if (kv->table_bk && kv->table_bk != kv->table) kv->bk->free(kv->table_bk);
    free(kv->k);
    free(kv->v);
    free(kv->table);
    free(kv->n_mapped);
    free(kv->len);
    free(kv->open);
    free(kv->free_list);
    free(kv->dirty_lo);
    free(kv->dirty_hi);
    free(kv);
}

int kv_seq_open(kv_cache *kv, err_t *err) {
    for (int s = 0; s < kv->o.max_seqs; s++) {
        if (kv->open[s]) continue;
        kv->open[s] = 1;
        kv->n_mapped[s] = 0;
        kv->len[s] = 0;
        return s;
    }
    return err_set(err, "kv cache: all %d sequences are open", kv->o.max_seqs);
}

// Widens seq's range of table entries to upload by [lo, hi) (device
// backends only; the CPU reads the host table itself).
static void mark_dirty(kv_cache *kv, int seq, int lo, int hi) {
    if (kv->table_bk == kv->table) return;
    if (kv->dirty_hi[seq] <= kv->dirty_lo[seq]) {
        kv->dirty_lo[seq] = lo, kv->dirty_hi[seq] = hi;
    } else {
        if (lo < kv->dirty_lo[seq]) kv->dirty_lo[seq] = lo;
        if (hi > kv->dirty_hi[seq]) kv->dirty_hi[seq] = hi;
    }
    kv->table_dirty = 1;
}

int kv_blocks_for(const kv_cache *kv, int seq, int64_t n_tokens) {
    int64_t need = (n_tokens + kv->o.block_size - 1) / kv->o.block_size - kv->n_mapped[seq];
    return need > 0 ? (int)need : 0;
}

int kv_seq_reserve(kv_cache *kv, int seq, int64_t n_tokens, err_t *err) {
    if (seq < 0 || seq >= kv->o.max_seqs || !kv->open[seq])
        return err_set(err, "kv cache: sequence %d is not open", seq);
    if (n_tokens > (int64_t)kv->max_blocks_per_seq * kv->o.block_size)
        return err_set(err, "kv cache: sequence %d: %lld tokens pass max_seq_len %d", seq, (long long)n_tokens,
                       kv->o.max_seq_len);
    int need = kv_blocks_for(kv, seq, n_tokens);
    if (need > kv->n_free)
        return err_set(err, "kv cache: sequence %d needs %d more blocks for %lld tokens, %d free", seq, need,
                       (long long)n_tokens, kv->n_free);
    int32_t *row = kv->table + (int64_t)seq * kv->max_blocks_per_seq;
    if (need) mark_dirty(kv, seq, kv->n_mapped[seq], kv->n_mapped[seq] + need);
    for (int i = 0; i < need; i++) row[kv->n_mapped[seq]++] = kv->free_list[--kv->n_free];
    return 0;
}

void kv_seq_close(kv_cache *kv, int seq) {
    if (seq < 0 || seq >= kv->o.max_seqs || !kv->open[seq]) return;
    int32_t *row = kv->table + (int64_t)seq * kv->max_blocks_per_seq;
    // Pushed back in reverse so the next reserve takes them in the same order.
    for (int i = kv->n_mapped[seq] - 1; i >= 0; i--) {
        kv->free_list[kv->n_free++] = row[i];
        row[i] = -1;
    }
    kv->n_mapped[seq] = 0;
    kv->len[seq] = 0;
    kv->open[seq] = 0;
}

void kv_sync_table(kv_cache *kv) {
    if (!kv->table_dirty || kv->table_bk == kv->table) return;
    int64_t stride = kv->max_blocks_per_seq;
    if (kv->table_all)
        kv->bk->upload(kv->table_bk, kv->table, (size_t)kv->o.max_seqs * (size_t)stride * sizeof *kv->table);
    for (int s = 0; s < kv->o.max_seqs; s++) {
        int lo = kv->dirty_lo[s], hi = kv->dirty_hi[s];
        if (hi > lo && !kv->table_all)
            kv->bk->upload(kv->table_bk + s * stride + lo, kv->table + s * stride + lo,
                           (size_t)(hi - lo) * sizeof *kv->table);
        kv->dirty_lo[s] = kv->dirty_hi[s] = 0;
    }
    kv->table_dirty = kv->table_all = 0;
}

int64_t kv_seq_capacity(const kv_cache *kv, int seq) {
    if (seq < 0 || seq >= kv->o.max_seqs || !kv->open[seq]) return 0;
    return (int64_t)kv->n_mapped[seq] * kv->o.block_size;
}

int kv_free_blocks(const kv_cache *kv) { return kv->n_free; }
