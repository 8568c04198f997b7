// bench/gpu_serve: the CUDA engine's serving numbers on a big random model
// (bench/gen_model) with rank-16 all-linear adapters (tests/tools/mkadapter):
//
//   build/bench/gpu_serve --model DIR --adapters DIR [--name NAME]
//       [--decode] [--throughput] [--hotload]      (default: all three)
//       [--batches 32,64] [--nadapters 0,1,8,32,64,512] [--prompt 128]
//       [--gen 128] [--steps 128] [--slots 64] [--pool 16] [--cpu]
//
// --adapters DIR holds a0, a1, ... (PEFT folders); --pool of them are
// parsed once into host memory and adapter identity k uses a(k mod pool):
// n "distinct adapters" are n slots holding n separate copies, which costs
// the GPU what n different adapters cost. Every number is printed and also
// as one `RESULT section key=value ...` line (bench/gpu_summary.py reads
// them). The copy rate is measured first, in this process (gpu_util.h):
// floors are bytes / that rate.
//
// 1. decode      one sequence: a --prompt token prefill, then --steps
//                greedy decode steps. tokens/s; the floor is the bytes each
//                step must read (every weight, NF4 as packed, lm_head bf16,
//                and the K/V of positions 0..pos) over the copy rate; ratio
//                = floor time / measured time (target >= 0.70).
// 2. throughput  for each batch B and adapter count n: continuous batching
//                of B lanes, each running requests back to back (prompt
//                --prompt tokens, --gen greedy tokens; request r uses
//                adapter r mod n, none when n = 0). The lanes' first
//                requests are staggered in length so that requests finish
//                and start on every few steps, as in a server: a step
//                holds one decode token per decoding lane plus the whole
//                prompt of each lane starting a request, sorted by adapter
//                slot. Adapter slots: this bench keeps its own LRU over
//                model_adapter_set (not serve/sched.c's engine), --slots of
//                them: when n <= slots all n are loaded before timing; when
//                n > slots (every new request misses: round robin over more
//                adapters than slots) a request whose adapter is not resident evicts the
//                least recently used slot no running lane uses, and the
//                upload (model_adapter_set) is inside the timed loop; parsing
//                is not (serve parses on a loader thread; --hotload times
//                it). Timed: --steps steps after the lanes' first prompts.
//                tokens/s = tokens generated (the first token of a request
//                comes from its prefill) / wall time, host argmax included.
//                Decode-only steps (no prompt in them) are also timed alone
//                against their floor: weights + the f32 A/B of each distinct
//                adapter in the step + every lane's K/V. Device memory: the
//                peak of cudaMemGetInfo's used bytes over the run, minus
//                what was in use before the model loaded (the CUDA context).
// 3. hotload     time to first use of a new adapter: lora_load (read +
//                parse; the file's pages dropped from the page cache first,
//                "cold", then again "warm"), model_adapter_set into a free
//                slot (+ device sync), and the first forward that uses it
//                (one token of a new sequence). Median of 3.
//
// --cpu runs the same on the CPU backend without any CUDA call (no floors):
// it checks the bench's logic on a machine without a GPU.
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "adapter.h"
#include "backend.h"
#include "cuda/cu_backend.h"
#include "gpu_util.h"
#include "kv.h"
#include "model.h"
#include "util.h"

#define MAX_LIST 8
#define MAX_LANES 256

typedef struct opts {
    const char *model, *adapters, *name;
    int decode, throughput, hotload, cpu;
    int batches[MAX_LIST], nb, nads[MAX_LIST], nn;
    int prompt, gen, steps, slots, pool;
} opts;

typedef struct bench {
    const opts *o;
    const bk_ops *bk;
    model *m;
    const model_config *cfg;
    double rate;      // device copy rate, bytes/s (0 with --cpu)
    int64_t base_mem; // device bytes in use before the model (0 with --cpu)
    int64_t peak_mem; // highest device bytes in use seen since the last reset
    lora_adapter **pool;
    int npool;
    float *logits;    // (MAX_LANES, vocab) host
} bench;

static void sample_mem(bench *b) {
    if (b->o->cpu) return;
    err_t ignore;
    int64_t used = gpu_mem_used(&ignore);
    if (used > b->peak_mem) b->peak_mem = used;
}

static double gib(int64_t bytes) { return (double)bytes / (double)(1 << 30); }

static int32_t argmax(const float *row, int n) {
    int32_t best = 0;
    for (int i = 1; i < n; i++)
        if (row[i] > row[best]) best = i;
    return best;
}

static int32_t prompt_token(int req, int i) { return (int32_t)((i * 37 + req * 11) % 1000 + 3); }

// Prefills one sequence's prompt (want the last token); returns its greedy next token or -1.
static int32_t prefill_one(bench *b, kv_cache *kv, int seq, int slot, int req, err_t *err) {
    int P = b->o->prompt;
    int32_t tok[1024], pos[1024], sq[1024], ad[1024];
    uint8_t want[1024];
    for (int i = 0; i < P; i++)
        tok[i] = prompt_token(req, i), pos[i] = i, sq[i] = seq, ad[i] = slot, want[i] = i == P - 1;
    model_batch mb = {P, tok, pos, sq, ad, want};
    if (model_forward(b->m, kv, &mb, b->logits, err) < 0) return -1;
    return argmax(b->logits, b->cfg->vocab_size);
}

// ---- 1. single-stream decode ------------------------------------------------------

static int run_decode(bench *b, err_t *err) {
    const opts *o = b->o;
    int len = o->prompt + o->steps + 8, rc = -1;
    kv_cache *kv = model_kv_new(b->m, 16, 2 * ((len + 15) / 16), 2, len, err);
    double *dt = malloc((size_t)o->steps * sizeof *dt), *fl = malloc((size_t)o->steps * sizeof *fl);
    if (!kv || !dt || !fl) {
        if (kv) err_set(err, "out of memory");
        goto done;
    }
    // warm-up: a prefill and a few steps on a throwaway sequence (module load, handles)
    int s = kv_seq_open(kv, err);
    if (s < 0 || kv_seq_reserve(kv, s, len, err) < 0 || prefill_one(b, kv, s, -1, 0, err) < 0) goto done;
    for (int i = 0; i < 4; i++) {
        int32_t tok = 5, pos = o->prompt + i, sq = s;
        model_batch mb = {1, &tok, &pos, &sq, NULL, NULL};
        if (model_forward(b->m, kv, &mb, b->logits, err) < 0) goto done;
    }
    kv_seq_close(kv, s);
    if ((s = kv_seq_open(kv, err)) < 0 || kv_seq_reserve(kv, s, len, err) < 0) goto done;
    double t0 = gpu_now_s();
    int32_t tok = prefill_one(b, kv, s, -1, 1, err);
    double prefill = gpu_now_s() - t0, total = 0, floor_total = 0;
    if (tok < 0) goto done;
    int64_t wbytes = gpu_step_weight_bytes(b->m, 1);
    for (int i = 0; i < o->steps; i++) {
        int32_t pos = o->prompt + i, sq = s;
        model_batch mb = {1, &tok, &pos, &sq, NULL, NULL};
        t0 = gpu_now_s();
        if (model_forward(b->m, kv, &mb, b->logits, err) < 0) goto done;
        dt[i] = gpu_now_s() - t0;
        total += dt[i];
        fl[i] = b->rate > 0 ? (double)(wbytes + gpu_kv_read_bytes(b->cfg, pos)) / b->rate : 0;
        floor_total += fl[i];
        tok = argmax(b->logits, b->cfg->vocab_size);
    }
    sample_mem(b);
    double ratio = floor_total > 0 ? floor_total / total : 0, step_ms = 1e3 * gpu_median(dt, o->steps);
    printf("decode, 1 sequence: prefill %d tokens %.1f ms (%.0f tok/s); %d steps %.2f tok/s, median step %.3f ms; "
           "floor %.3f ms/step = %.1f tok/s (weights %.3f GB + KV at copy %.0f GB/s); ratio %.3f (target >= 0.70)\n",
           o->prompt, 1e3 * prefill, o->prompt / prefill, o->steps, o->steps / total, step_ms,
           1e3 * floor_total / o->steps, floor_total > 0 ? o->steps / floor_total : 0, (double)wbytes / 1e9,
           b->rate / 1e9, ratio);
    printf("RESULT decode model=%s tok_s=%.3f floor_tok_s=%.3f ratio=%.4f step_ms=%.4f floor_ms=%.4f "
           "prefill_tok_s=%.1f weight_gb=%.4f copy_gbs=%.1f\n",
           o->name, o->steps / total, floor_total > 0 ? o->steps / floor_total : 0, ratio, step_ms,
           1e3 * floor_total / o->steps, o->prompt / prefill, (double)wbytes / 1e9, b->rate / 1e9);
    fflush(stdout);
    rc = 0;
done:
    kv_free(kv);
    free(dt), free(fl);
    return rc;
}

// ---- 2. throughput: lanes, an LRU of adapter slots --------------------------------

typedef struct lru {
    int nslots;
    int *slot_ad;     // adapter identity in each slot, -1 empty
    int *refs;        // lanes using each slot
    int64_t *touched; // last use (a counter)
    int *ad_slot;     // slot of each identity, -1 when not resident
    int64_t clock;
    int swaps;
    double swap_s;
} lru;

// The slot for identity ad, uploading it (evicting the least recently used
// slot no lane uses) when it is not resident. -1 + err.
static int lru_acquire(bench *b, lru *l, int ad, err_t *err) {
    int s = l->ad_slot[ad];
    if (s < 0) {
        for (int i = 0; i < l->nslots && s < 0; i++)
            if (l->slot_ad[i] < 0) s = i;
        if (s < 0) // none empty: the least recently used one no lane holds
            for (int i = 0; i < l->nslots; i++)
                if (l->refs[i] == 0 && (s < 0 || l->touched[i] < l->touched[s])) s = i;
        if (s < 0) return err_set(err, "every one of %d adapter slots is in use (--slots below the batch)", l->nslots);
        double t0 = gpu_now_s();
        if (model_adapter_set(b->m, s, b->pool[ad % b->npool], err) < 0) return -1;
        l->swap_s += gpu_now_s() - t0;
        l->swaps++;
        if (l->slot_ad[s] >= 0) l->ad_slot[l->slot_ad[s]] = -1;
        l->slot_ad[s] = ad, l->ad_slot[ad] = s;
    }
    l->refs[s]++;
    l->touched[s] = ++l->clock;
    return s;
}

typedef struct lane {
    int seq, ad, slot; // slot -1: no adapter
    int pos;           // next position to write
    int left;          // tokens still to generate
    int fresh;         // the prompt is not prefilled yet
    int req;
    int32_t tok;       // next input token when decoding
} lane;

typedef struct tput {
    int B, n;
    lane lanes[MAX_LANES];
    int order[MAX_LANES];
    int next_req;
    kv_cache *kv;
    lru l;
} tput;

static int lane_start(bench *b, tput *t, lane *ln, int left, err_t *err) {
    const opts *o = b->o;
    ln->req = t->next_req++;
    ln->ad = t->n > 0 ? ln->req % t->n : -1;
    ln->slot = ln->ad >= 0 ? lru_acquire(b, &t->l, ln->ad, err) : -1;
    if (ln->ad >= 0 && ln->slot < 0) return -1;
    if ((ln->seq = kv_seq_open(t->kv, err)) < 0 || kv_seq_reserve(t->kv, ln->seq, o->prompt + o->gen, err) < 0)
        return -1;
    ln->pos = 0, ln->left = left, ln->fresh = 1;
    return 0;
}

static void lane_finish(tput *t, lane *ln) {
    kv_seq_close(t->kv, ln->seq);
    if (ln->slot >= 0) t->l.refs[ln->slot]--;
}

static int by_slot(const void *pa, const void *pb, void *ctx) {
    const lane *l = ctx;
    int a = *(const int *)pa, c = *(const int *)pb;
    if (l[a].slot != l[c].slot) return l[a].slot - l[c].slot;
    return a - c;
}

typedef struct step_stat {
    int tokens, generated, prefills, distinct;
    int64_t kv_bytes, lora_bytes;
} step_stat;

// One forward over every lane that can go (decoders, and prompts while they
// fit in max_tokens), then argmax and request turnover. Returns the forward's
// seconds (model_forward alone) or -1 + err.
static double tput_step(bench *b, tput *t, int32_t *tok, int32_t *pos, int32_t *sq, int32_t *ad, uint8_t *want,
                        step_stat *st, err_t *err) {
    const opts *o = b->o;
    int T = 0, nw = 0, cap = model_max_tokens(b->m), used[MAX_LANES], nused = 0, prev_slot = -2;
    memset(st, 0, sizeof *st);
    for (int i = 0; i < t->B; i++) t->order[i] = i;
    qsort_r(t->order, (size_t)t->B, sizeof(int), by_slot, t->lanes);
    for (int k = 0; k < t->B; k++) {
        lane *ln = &t->lanes[t->order[k]];
        int n = ln->fresh ? o->prompt : 1;
        if (T + n > cap) continue; // this prompt waits for the next step
        for (int i = 0; i < n; i++) {
            tok[T + i] = ln->fresh ? prompt_token(ln->req, i) : ln->tok;
            pos[T + i] = ln->pos + i, sq[T + i] = ln->seq, ad[T + i] = ln->slot, want[T + i] = i == n - 1;
        }
        st->kv_bytes += gpu_kv_read_bytes(b->cfg, ln->pos); // a decode token reads 0..pos
        if (ln->slot >= 0 && ln->slot != prev_slot) {
            st->distinct++;
            st->lora_bytes += gpu_adapter_bytes(b->pool[ln->ad % b->npool]);
        }
        prev_slot = ln->slot;
        st->prefills += ln->fresh;
        used[nused++] = t->order[k];
        T += n, nw++;
    }
    st->tokens = T;
    model_batch mb = {T, tok, pos, sq, ad, want};
    double t0 = gpu_now_s();
    if (model_forward(b->m, t->kv, &mb, b->logits, err) < 0) return -1;
    double dt = gpu_now_s() - t0;
    for (int k = 0; k < nused; k++) {
        lane *ln = &t->lanes[used[k]];
        ln->tok = argmax(b->logits + (size_t)k * b->cfg->vocab_size, b->cfg->vocab_size);
        ln->pos += ln->fresh ? o->prompt : 1;
        ln->fresh = 0;
        st->generated++;
        if (--ln->left > 0) continue;
        lane_finish(t, ln);
        if (lane_start(b, t, ln, o->gen, err) < 0) return -1;
    }
    return dt;
}

static int lru_init(lru *l, int nslots, int nids) {
    memset(l, 0, sizeof *l);
    l->nslots = nslots;
    l->slot_ad = malloc((size_t)nslots * sizeof *l->slot_ad);
    l->refs = calloc((size_t)nslots, sizeof *l->refs);
    l->touched = calloc((size_t)nslots, sizeof *l->touched);
    l->ad_slot = malloc((size_t)(nids > 0 ? nids : 1) * sizeof *l->ad_slot);
    if (!l->slot_ad || !l->refs || !l->touched || !l->ad_slot) return -1;
    for (int i = 0; i < nslots; i++) l->slot_ad[i] = -1;
    for (int i = 0; i < nids; i++) l->ad_slot[i] = -1;
    return 0;
}

static void lru_free(lru *l) { free(l->slot_ad), free(l->refs), free(l->touched), free(l->ad_slot); }

// When all n identities fit (n <= slots), loads them, as a server that has
// served them recently holds them. When they do not, loads none: round robin
// over more identities than slots misses on every new request, and the
// lanes' first requests load theirs (untimed) as they start.
static int lru_preload(bench *b, lru *l, int n, err_t *err) {
    for (int a = 0; n <= l->nslots && a < n; a++) {
        int s = lru_acquire(b, l, a, err);
        if (s < 0) return -1;
        l->refs[s]--;
    }
    l->swaps = 0, l->swap_s = 0;
    return 0;
}

// The lanes' first requests: staggered lengths, prompts prefilled one lane
// per forward (untimed).
static int tput_fill(bench *b, tput *t, err_t *err) {
    for (int i = 0; i < t->B; i++) {
        lane *ln = &t->lanes[i];
        if (lane_start(b, t, ln, 1 + (int)((int64_t)i * b->o->gen / t->B), err) < 0) return -1;
        int32_t next = prefill_one(b, t->kv, ln->seq, ln->slot, ln->req, err);
        if (next < 0) return -1;
        ln->tok = next, ln->pos = b->o->prompt, ln->fresh = 0;
        if (--ln->left > 0) continue;
        lane_finish(t, ln);
        if (lane_start(b, t, ln, b->o->gen, err) < 0) return -1;
    }
    return 0;
}

static int run_throughput(bench *b, int B, int n, err_t *err) {
    const opts *o = b->o;
    int cap = model_max_tokens(b->m), rc = -1, ndec = 0;
    tput *t = calloc(1, sizeof *t);
    int32_t *tok = malloc((size_t)cap * 4), *pos = malloc((size_t)cap * 4), *sq = malloc((size_t)cap * 4);
    int32_t *ad = malloc((size_t)cap * 4);
    uint8_t *want = malloc((size_t)cap);
    double *dec = malloc((size_t)o->steps * sizeof *dec);
    for (int s = 0; s < model_max_slots(b->m); s++) model_adapter_clear(b->m, s); // each run starts empty
    if (!t || !tok || !pos || !sq || !ad || !want || !dec || lru_init(&t->l, o->slots, n) < 0) {
        err_set(err, "out of memory");
        goto done;
    }
    t->B = B, t->n = n;
    int per_seq = (o->prompt + o->gen + 15) / 16;
    if (!(t->kv = model_kv_new(b->m, 16, (B + 1) * per_seq, B + 1, o->prompt + o->gen, err))) goto done;
    if (lru_preload(b, &t->l, n, err) < 0 || tput_fill(b, t, err) < 0) goto done;
    step_stat st;
    for (int s = 0; s < 4; s++) // warm-up steps (the first prompts' turnover begins)
        if (tput_step(b, t, tok, pos, sq, ad, want, &st, err) < 0) goto done;
    b->peak_mem = 0;
    sample_mem(b);
    t->l.swaps = 0, t->l.swap_s = 0;
    int generated = 0, prefills = 0;
    double fwd = 0, dec_time = 0, dec_floor = 0, t0 = gpu_now_s();
    for (int s = 0; s < o->steps; s++) {
        double dt = tput_step(b, t, tok, pos, sq, ad, want, &st, err);
        if (dt < 0) goto done;
        sample_mem(b);
        fwd += dt, generated += st.generated, prefills += st.prefills;
        if (st.prefills) continue;
        dec[ndec++] = dt;
        dec_time += dt;
        if (b->rate > 0)
            dec_floor += (double)(gpu_step_weight_bytes(b->m, st.tokens) + st.kv_bytes + st.lora_bytes) / b->rate;
    }
    double wall = gpu_now_s() - t0, tps = generated / wall;
    double xf = dec_floor > 0 ? dec_time / dec_floor : 0, mem = o->cpu ? 0 : gib(b->peak_mem - b->base_mem);
    double dec_ms = ndec ? 1e3 * gpu_median(dec, ndec) : 0, floor_ms = ndec ? 1e3 * dec_floor / ndec : 0;
    printf("throughput batch %d, %d adapters: %.1f tok/s (%d tokens, %d steps, %d prefills, %.2f s; forwards %.0f%% "
           "of it); decode-only steps: %d, median %.2f ms, floor %.2f ms, %.2fx the floor (target <= 2); "
           "%d slot loads, %.2f ms each; device memory %.2f GiB\n",
           B, n, tps, generated, o->steps, prefills, wall, 100 * fwd / wall, ndec, dec_ms, floor_ms, xf, t->l.swaps,
           t->l.swaps ? 1e3 * t->l.swap_s / t->l.swaps : 0, mem);
    printf("RESULT tput model=%s batch=%d adapters=%d tok_s=%.2f wall_s=%.3f fwd_share=%.3f prefills=%d "
           "dec_steps=%d dec_step_ms=%.3f dec_floor_ms=%.3f dec_x_floor=%.3f swaps=%d swap_ms=%.3f mem_gib=%.3f\n",
           o->name, B, n, tps, wall, fwd / wall, prefills, ndec, dec_ms, floor_ms, xf, t->l.swaps,
           t->l.swaps ? 1e3 * t->l.swap_s / t->l.swaps : 0, mem);
    fflush(stdout);
    rc = 0;
done:
    if (t) {
        kv_free(t->kv);
        lru_free(&t->l);
    }
    free(t), free(tok), free(pos), free(sq), free(ad), free(want), free(dec);
    return rc;
}

// ---- 3. adapter hot-load ------------------------------------------------------------

// Writes back and drops path's pages from the page cache, so the next read
// comes from the disk.
static void drop_cache(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return;
    fdatasync(fd);
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    close(fd);
}

static int run_hotload(bench *b, err_t *err) {
    enum { REPS = 3 };
    const opts *o = b->o;
    double parse[2][REPS], set[2][REPS], first[2][REPS], total[2][REPS];
    int64_t file_bytes = 0;
    kv_cache *kv = model_kv_new(b->m, 16, 4, 2, 16, err);
    if (!kv) return -1;
    for (int s = 0; s < model_max_slots(b->m); s++) model_adapter_clear(b->m, s);
    int rc = -1;
    for (int cold = 1; cold >= 0; cold--)
        for (int r = 0; r < REPS; r++) {
            char dir[1024], *file;
            snprintf(dir, sizeof dir, "%s/a%d", o->adapters, r % o->pool);
            file = util_path_join(dir, "adapter_model.safetensors");
            struct stat sb;
            if (stat(file, &sb) == 0) file_bytes = (int64_t)sb.st_size;
            if (cold) drop_cache(file);
            free(file);
            double t0 = gpu_now_s();
            lora_adapter *a = lora_load(dir, b->cfg, err);
            if (!a) goto done;
            double t1 = gpu_now_s();
            int ok = model_adapter_set(b->m, 0, a, err) == 0 && (o->cpu || bk_cuda_sync(err) == 0);
            lora_free(a);
            if (!ok) goto done;
            double t2 = gpu_now_s();
            int seq = kv_seq_open(kv, err);
            if (seq < 0 || kv_seq_reserve(kv, seq, 1, err) < 0) goto done;
            int32_t tok = 7, pos = 0, slot = 0;
            model_batch mb = {1, &tok, &pos, &seq, &slot, NULL};
            if (model_forward(b->m, kv, &mb, b->logits, err) < 0) goto done;
            double t3 = gpu_now_s();
            kv_seq_close(kv, seq);
            model_adapter_clear(b->m, 0);
            parse[cold][r] = t1 - t0, set[cold][r] = t2 - t1, first[cold][r] = t3 - t2, total[cold][r] = t3 - t0;
        }
    for (int cold = 1; cold >= 0; cold--) {
        double p = gpu_median(parse[cold], REPS), s = gpu_median(set[cold], REPS);
        double f = gpu_median(first[cold], REPS), tt = gpu_median(total[cold], REPS);
        printf("hotload (%s page cache, file %.1f MB): read + parse %.1f ms, model_adapter_set %.1f ms, first "
               "forward %.1f ms; total %.1f ms (median of %d)\n",
               cold ? "cold" : "warm", (double)file_bytes / 1e6, 1e3 * p, 1e3 * s, 1e3 * f, 1e3 * tt, REPS);
        printf("RESULT hotload model=%s cache=%s file_mb=%.1f parse_ms=%.2f set_ms=%.2f first_ms=%.2f total_ms=%.2f\n",
               o->name, cold ? "cold" : "warm", (double)file_bytes / 1e6, 1e3 * p, 1e3 * s, 1e3 * f, 1e3 * tt);
    }
    fflush(stdout);
    rc = 0;
done:
    kv_free(kv);
    return rc;
}

// ---- setup ---------------------------------------------------------------------------

static int parse_list(const char *v, int *out, int max, int lo) {
    int n = 0;
    while (*v) {
        char *end;
        long x = strtol(v, &end, 10);
        if (end == v || x < lo || x > 100000 || n == max || (*end && *end != ',')) return -1;
        out[n++] = (int)x;
        v = *end ? end + 1 : end;
    }
    return n;
}

static int arg_int(const char *v, int lo, int hi, int *out) {
    char *end;
    long x = strtol(v, &end, 10);
    if (end == v || *end || x < lo || x > hi) return -1;
    *out = (int)x;
    return 0;
}

static int parse_opts(int argc, char **argv, opts *o) {
    *o = (opts){.name = "model", .prompt = 128, .gen = 128, .steps = 128, .slots = 64, .pool = 16};
    o->nb = parse_list("32,64", o->batches, MAX_LIST, 1);
    o->nn = parse_list("0,1,8,32,64,512", o->nads, MAX_LIST, 0);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0, val = 1;
        if (strcmp(a, "--decode") == 0) o->decode = 1, val = 0;
        else if (strcmp(a, "--throughput") == 0) o->throughput = 1, val = 0;
        else if (strcmp(a, "--hotload") == 0) o->hotload = 1, val = 0;
        else if (strcmp(a, "--cpu") == 0) o->cpu = 1, val = 0;
        else if (!v) bad = 1;
        else if (strcmp(a, "--model") == 0) o->model = v;
        else if (strcmp(a, "--adapters") == 0) o->adapters = v;
        else if (strcmp(a, "--name") == 0) o->name = v;
        else if (strcmp(a, "--batches") == 0) bad = (o->nb = parse_list(v, o->batches, MAX_LIST, 1)) < 0;
        else if (strcmp(a, "--nadapters") == 0) bad = (o->nn = parse_list(v, o->nads, MAX_LIST, 0)) < 0;
        else if (strcmp(a, "--prompt") == 0) bad = arg_int(v, 1, 1024, &o->prompt);
        else if (strcmp(a, "--gen") == 0) bad = arg_int(v, 1, 8192, &o->gen);
        else if (strcmp(a, "--steps") == 0) bad = arg_int(v, 1, 100000, &o->steps);
        else if (strcmp(a, "--slots") == 0) bad = arg_int(v, 1, 4096, &o->slots);
        else if (strcmp(a, "--pool") == 0) bad = arg_int(v, 1, 4096, &o->pool);
        else bad = 1;
        if (bad) {
            fprintf(stderr, "gpu_serve: bad option %s (see the comment atop bench/gpu_serve.c)\n", a);
            return -1;
        }
        i += val;
    }
    if (!o->decode && !o->throughput && !o->hotload) o->decode = o->throughput = o->hotload = 1;
    for (int i = 0; i < o->nb; i++)
        if (o->batches[i] > MAX_LANES || o->batches[i] > o->slots) {
            fprintf(stderr, "gpu_serve: --batches %d: at most %d and at most --slots\n", o->batches[i], MAX_LANES);
            return -1;
        }
    if (!o->model || !o->adapters) {
        fprintf(stderr, "gpu_serve: --model DIR and --adapters DIR are required\n");
        return -1;
    }
    return 0;
}

// Context, copy rate, backend, model, adapter pool.
static int setup(bench *b, const opts *o, err_t *err) {
    memset(b, 0, sizeof *b);
    b->o = o;
    if (!o->cpu) {
        cudaError_t e = cudaFree(0);
        if (e != cudaSuccess) return err_set(err, "CUDA context: %s", cudaGetErrorString(e));
        if ((b->base_mem = gpu_mem_used(err)) < 0) return -1;
        if ((b->rate = gpu_copy_rate((size_t)1 << 30, 20, err)) < 0) return -1;
        printf("device copy: %.1f GB/s (1 GiB cudaMemcpy device to device, read + write counted, median of 20)\n",
               b->rate / 1e9);
    }
    b->bk = bk_open(o->cpu ? "cpu" : "cuda", NULL, err);
    if (!b->bk) return -1;
    model_opts mo = model_opts_default();
    mo.bk = b->bk;
    mo.max_slots = o->slots;
    mo.max_lora_rank = 16;
    mo.max_tokens = o->prompt + MAX_LANES > 512 ? o->prompt + MAX_LANES : 512;
    double t0 = gpu_now_s();
    if (!(b->m = model_load(o->model, &mo, err))) return -1;
    b->cfg = model_get_config(b->m);
    sample_mem(b);
    printf("model %s: %s, hidden %d, %d layers, %d/%d heads, intermediate %d, vocab %d; weights %.2f GB, loaded in "
           "%.1f s; device memory %.2f GiB\n",
           o->name, model_arch_name(b->cfg->arch), b->cfg->hidden_size, b->cfg->num_hidden_layers,
           b->cfg->num_attention_heads, b->cfg->num_key_value_heads, b->cfg->intermediate_size, b->cfg->vocab_size,
           (double)model_weight_bytes(b->m) / 1e9, gpu_now_s() - t0, o->cpu ? 0 : gib(b->peak_mem - b->base_mem));
    if (!(b->logits = malloc((size_t)MAX_LANES * (size_t)b->cfg->vocab_size * sizeof(float))))
        return err_set(err, "out of memory for the logits");
    if (!o->throughput) return 0;
    if (!(b->pool = calloc((size_t)o->pool, sizeof *b->pool))) return err_set(err, "out of memory");
    t0 = gpu_now_s();
    for (; b->npool < o->pool; b->npool++) {
        char dir[1024];
        snprintf(dir, sizeof dir, "%s/a%d", o->adapters, b->npool);
        if (!(b->pool[b->npool] = lora_load(dir, b->cfg, err))) return -1;
    }
    printf("adapter pool: %d adapters parsed in %.1f s, %.1f MB each as f32 in a slot\n", b->npool,
           gpu_now_s() - t0, (double)gpu_adapter_bytes(b->pool[0]) / 1e6);
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv) {
    opts o;
    if (parse_opts(argc, argv, &o) < 0) return 2;
    err_t err = {{0}};
    bench b;
    int rc = setup(&b, &o, &err);
    if (rc == 0 && o.decode) rc = run_decode(&b, &err);
    for (int i = 0; rc == 0 && o.throughput && i < o.nb; i++)
        for (int k = 0; rc == 0 && k < o.nn; k++) rc = run_throughput(&b, o.batches[i], o.nads[k], &err);
    if (rc == 0 && o.hotload) rc = run_hotload(&b, &err);
    if (rc < 0) fprintf(stderr, "error gpu_serve: %s\n", err.msg);
    for (int i = 0; i < b.npool; i++) lora_free(b.pool[i]);
    free(b.pool);
    free(b.logits);
    model_free(b.m);
    if (o.cpu) bk_cpu_shutdown();
    return rc < 0 ? 1 : 0;
}
