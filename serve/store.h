// store: records kept in creation order (created_us, then id), as the Files
// and fine-tuning APIs list them (files.c, ftjobs), with lookup by id and
// the pages of a list endpoint (after=ID, limit, has_more).
//
// Ownership: the store holds pointers it does not own. A record's id is
// borrowed too and must stay valid and unchanged while the record is in
// the store (the records keep it in themselves). store_free frees the
// array only; the caller frees the records.
//
// Lookups are linear: a server holds hundreds of files and jobs, not
// millions. Everything on one thread (the loop's).
#ifndef TESSERA_STORE_H
#define TESSERA_STORE_H

#include <stdint.h>

typedef struct store_item {
    int64_t created_us;
    const char *id; // borrowed from rec
    void *rec;
} store_item;

// Zero-initialised is an empty store.
typedef struct store {
    store_item *items; // oldest first
    int n, cap;
} store;

// Inserts rec at its place in creation order. Returns 0 or -1 (out of
// memory; the store is unchanged).
int store_insert(store *s, void *rec, const char *id, int64_t created_us);

// The index of the record with id, or -1.
int store_index(const store *s, const char *id);

// The record at index i (0 = oldest), 0 <= i < s->n.
void *store_at(const store *s, int i);

// Removes the record at index i and returns it (the caller frees it).
void *store_remove(store *s, int i);

void store_free(store *s);

// One page of a list: walks the records newest first (or oldest first),
// skipping those keep(rec, arg) rejects; starts after the kept record
// whose id is after ("" = at the first; an id that no kept record has
// gives an empty page) and calls emit(rec, arg) for at most limit
// records. Returns has_more: 1 if a kept record follows the page.
int store_page(const store *s, int newest_first, const char *after, int limit,
               int (*keep)(const void *rec, void *arg), void (*emit)(void *rec, void *arg), void *arg);

#endif
