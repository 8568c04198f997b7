// store: records in creation order. See store.h.
#include "store.h"

#include <stdlib.h>
#include <string.h>

static int item_before(const store_item *a, const store_item *b) {
    return a->created_us != b->created_us ? a->created_us < b->created_us : strcmp(a->id, b->id) < 0;
}

int store_insert(store *s, void *rec, const char *id, int64_t created_us) {
    if (s->n == s->cap) {
        int cap = s->cap ? s->cap * 2 : 16;
        store_item *t = realloc(s->items, (size_t)cap * sizeof *t);
        if (!t) return -1;
        s->items = t;
        s->cap = cap;
    }
    store_item it = {.created_us = created_us, .id = id, .rec = rec};
    int i = s->n;
    // Records mostly arrive newest: the walk back is short.
    while (i > 0 && item_before(&it, &s->items[i - 1])) {
        s->items[i] = s->items[i - 1];
        i--;
    }
    s->items[i] = it;
    s->n++;
    return 0;
}

int store_index(const store *s, const char *id) {
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->items[i].id, id) == 0) return i;
    return -1;
}

void *store_at(const store *s, int i) { return s->items[i].rec; }

void *store_remove(store *s, int i) {
    void *rec = s->items[i].rec;
    memmove(&s->items[i], &s->items[i + 1], (size_t)(s->n - i - 1) * sizeof *s->items);
    s->n--;
    return rec;
}

void store_free(store *s) {
    free(s->items);
    *s = (store){0};
}

int store_page(const store *s, int newest_first, const char *after, int limit,
               int (*keep)(const void *rec, void *arg), void (*emit)(void *rec, void *arg), void *arg) {
    int started = after[0] == '\0', k = 0;
    for (int i = 0; i < s->n; i++) {
        const store_item *it = &s->items[newest_first ? s->n - 1 - i : i];
        if (!keep(it->rec, arg)) continue;
        if (!started) {
            started = strcmp(it->id, after) == 0;
            continue;
        }
        if (k == limit) return 1;
        emit(it->rec, arg);
        k++;
    }
    return 0;
}
