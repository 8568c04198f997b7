// sched_adapters: the engine's adapters. Owns the load list (one aload per
// registry entry being built, each holding a reference on it) and decides
// what sits in the slot table: at most max_loras adapters resident, the
// least recently used slot that no running sequence uses evicted. sched.c
// allocates and frees the table and counts a slot's users (refs, last) on
// admission and release. See sched_int.h for the entry points.
// Threads: the loader thread builds weights with reg_entry_load (never the
// engine or the loop thread); the engine thread finds loads, uploads them
// into slots and prunes them (the loop thread too in sched_stop, once the
// other threads are joined). The load list's links and states are under mu.
#include "sched_int.h"

#include <stdlib.h>

#include "log.h"

static int slot_find(sched *e, const srv_request *r) {
    for (int i = 0; i < e->n_slots; i++)
        if (e->slots[i].entry == r->adapter_entry) return i;
    return -1;
}

// A free slot, else the least recently used one no running sequence uses.
static int slot_pick(sched *e) {
    int best = -1;
    for (int i = 0; i < e->n_slots; i++) {
        if (!e->slots[i].entry) return i;
        if (e->slots[i].refs == 0 && (best < 0 || e->slots[i].last < e->slots[best].last)) best = i;
    }
    return best;
}

aload *sched_load_find(sched *e, const srv_request *r) {
    for (aload *l = e->loads; l; l = l->next)
        if (l->entry == r->adapter_entry) return l;
    return NULL;
}

static void load_start(sched *e, const srv_request *r) {
    aload *l = calloc(1, sizeof *l);
    if (!l) return; // tried again next step
    l->entry = reg_entry_ref(r->adapter_entry);
    pthread_mutex_lock(&e->mu);
    l->next = e->loads;
    e->loads = l;
    pthread_cond_signal(&e->lcv);
    pthread_mutex_unlock(&e->mu);
}

void sched_load_remove(sched *e, aload *l) {
    pthread_mutex_lock(&e->mu);
    for (aload **pp = &e->loads; *pp; pp = &(*pp)->next)
        if (*pp == l) {
            *pp = l->next;
            break;
        }
    pthread_mutex_unlock(&e->mu);
    lora_free(l->a);
    reg_entry_unref(l->entry);
    free(l);
}

void *sched_loader_main(void *arg) {
    sched *e = arg;
    pthread_mutex_lock(&e->mu);
    for (;;) {
        aload *l = NULL;
        for (aload *x = e->loads; x && !l; x = x->next)
            if (x->state == LOAD_QUEUED) l = x;
        if (!l) {
            if (e->quit) break;
            pthread_cond_wait(&e->lcv, &e->mu);
            continue;
        }
        l->state = LOAD_BUSY;
        pthread_mutex_unlock(&e->mu);
        err_t err = {{0}};
        lora_adapter *a = reg_entry_load(l->entry, e->cfg, &err);
        if (a && a->max_rank > model_max_lora_rank(e->m)) {
            err_set(&err, "%s: LoRA rank %d is above --max-lora-rank %d", l->entry->path, a->max_rank,
                    model_max_lora_rank(e->m));
            lora_free(a);
            a = NULL;
        }
        pthread_mutex_lock(&e->mu);
        l->a = a;
        l->err = err;
        l->state = LOAD_DONE;
        if (a) e->st.adapter_loads++;
        else e->st.adapter_load_failures++;
        e->kick = 1;
        pthread_cond_signal(&e->cv);
    }
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

// The slot for a waiting sequence's adapter: resident, or uploaded now from
// a finished load; else one of sched_slot_result.
int sched_adapter_slot(sched *e, seq *s) {
    const srv_request *r = s->q->r;
    if (!r->adapter_entry) return SCHED_SLOT_BASE;
    int slot = slot_find(e, r);
    if (slot >= 0) return slot;
    aload *l = sched_load_find(e, r);
    if (!l) {
        load_start(e, r);
        return SCHED_SLOT_WAIT;
    }
    if (!l->ready) return SCHED_SLOT_WAIT;
    if (l->failed || !l->a) {
        l->failed = 1;
        return SCHED_SLOT_FAILED;
    }
    int sl = slot_pick(e);
    if (sl < 0) return SCHED_SLOT_WAIT;
    aslot *as = &e->slots[sl];
    err_t err = {{0}};
    if (model_adapter_set(e->m, sl, l->a, &err) < 0) {
        l->err = err;
        l->failed = 1;
        return SCHED_SLOT_FAILED;
    }
    log_line("info", "sched", "adapter slot=%d loaded adapter=%s rank=%d evicted=%s", sl, l->entry->name, l->a->max_rank,
          as->entry ? as->entry->name : "-");
    reg_entry_unref(as->entry);
    *as = (aslot){.entry = reg_entry_ref(l->entry), .last = ++e->tick};
    sched_load_remove(e, l);
    return sl;
}

// Failed loads are dropped (a later request retries); so are finished
// loads no waiting sequence wants any more.
void sched_loads_prune(sched *e) {
    for (aload *l = e->loads, *next; l; l = next) {
        next = l->next;
        if (!l->ready) continue;
        int wanted = 0;
        for (seq *w = e->wait_head; w && !wanted && !l->failed; w = w->next) wanted = l->entry == w->q->r->adapter_entry;
        if (!wanted) sched_load_remove(e, l);
    }
}
