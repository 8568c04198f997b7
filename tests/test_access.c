// test_access: the server's current set of adapters (registry.h: the
// folder's snapshot plus runtime entries that shadow it) and the one rule
// for which model a key may see and use (access.h), over entries built in
// memory (no folders: what is tested is the bookkeeping, not validation).
#include "../serve/access.h"

#include <stdlib.h>
#include <string.h>

#include "check.h"

// A good (ok) or bad entry named name, holding one reference.
static reg_entry *entry(const char *name, int ok) {
    reg_entry *e = calloc(1, sizeof *e);
    e->name = strdup(name);
    e->path = strdup(name);
    e->ok = ok;
    if (!ok) e->error = strdup("bad");
    atomic_init(&e->refs, 1);
    return e;
}

// A snapshot of the given entries (already sorted by name).
static reg_snapshot *snapshot(reg_entry **es, int n) {
    reg_snapshot *s = calloc(1, sizeof *s);
    s->entries = calloc((size_t)n, sizeof *s->entries);
    for (int i = 0; i < n; i++) s->entries[i] = es[i];
    s->n = n;
    return s;
}

// The names reg_set_next yields, joined by spaces.
static void names(const reg_set *set, char *out, size_t n) {
    out[0] = '\0';
    int pos = 0;
    for (const reg_entry *e; (e = reg_set_next(set, &pos)) != NULL;) {
        if (out[0]) strncat(out, " ", n - strlen(out) - 1);
        strncat(out, e->name, n - strlen(out) - 1);
    }
}

static void test_set(void) {
    reg_set *set = reg_set_new();
    char got[256];
    names(set, got, sizeof got);
    CHECK(strcmp(got, "") == 0, "empty set lists '%s'", got);
    CHECK(reg_set_find(set, "a") == NULL);
    reg_entry *fb = entry("b", 1);
    reg_set_replace_folder(set, snapshot((reg_entry *[]){entry("a", 1), fb, entry("c", 1), entry("d", 0)}, 4));
    names(set, got, sizeof got);
    CHECK(strcmp(got, "a b c") == 0, "folder only: '%s' (a bad entry is not listed)", got);
    CHECK(reg_set_find(set, "b") == fb);
    CHECK(reg_set_find(set, "d") == NULL, "a bad entry is not found");

    reg_entry *rb = entry("b", 1), *rz = entry("z", 1);
    CHECK(reg_set_add_runtime(set, rb) == 0 && reg_set_add_runtime(set, rz) == 0);
    names(set, got, sizeof got);
    CHECK(strcmp(got, "a c b z") == 0, "runtime after the folder, shadowing its b: '%s'", got);
    CHECK(reg_set_find(set, "b") == rb, "the runtime b shadows the folder's");
    CHECK(reg_set_is_runtime(set, "b") && reg_set_is_runtime(set, "z") && !reg_set_is_runtime(set, "a"));

    // A request holds the runtime entry; the unload drops only the set's reference.
    reg_entry *held = reg_entry_ref(reg_set_find(set, "z"));
    CHECK(reg_set_remove_runtime(set, "z") == 0);
    CHECK(reg_set_remove_runtime(set, "z") == -1, "a second remove finds nothing");
    CHECK(reg_set_find(set, "z") == NULL);
    CHECK(strcmp(held->name, "z") == 0 && atomic_load(&held->refs) == 1, "the holder's reference lives on");
    reg_entry_unref(held);
    CHECK(reg_set_remove_runtime(set, "b") == 0);
    CHECK(reg_set_find(set, "b") == fb, "the folder's b is back");
    CHECK(reg_set_remove_runtime(set, "a") == -1, "a folder entry is not removed as a runtime one");

    // A new snapshot replaces the folder's; runtime entries stay.
    CHECK(reg_set_add_runtime(set, entry("r", 1)) == 0);
    reg_set_replace_folder(set, snapshot((reg_entry *[]){entry("c", 1)}, 1));
    names(set, got, sizeof got);
    CHECK(strcmp(got, "c r") == 0, "after a rescan: '%s'", got);
    CHECK(reg_set_folder(set)->n == 1);
    reg_set_free(set);
}

static void test_rule(void) {
    reg_set *set = reg_set_new();
    reg_set_replace_folder(set, snapshot((reg_entry *[]){entry("acme-bot", 1), entry("ft:base:acme::ftjob-1", 1),
                                                         entry("globex-bot", 1)}, 3));
    reg_entry *rt = entry("acme-rt", 1);
    reg_set_add_runtime(set, rt);
    access_ctx a = {.base_id = "base", .adapters = set, .ftjobs = NULL};
    char *acme_globs[] = {"acme-*"}, *all[] = {"*"};
    tn_tenant acme = {.name = "acme", .globs = acme_globs, .n_globs = 1, .base = 1};
    tn_tenant nobase = {.name = "acme", .globs = acme_globs, .n_globs = 1, .base = 0};
    tn_tenant star = {.name = "globex", .globs = all, .n_globs = 1, .base = 1};
    tn_tenant admin = {.name = "ops", .admin = 1};
    const reg_entry *e = (const reg_entry *)1;

    CHECK(access_model(&a, &acme, "base", &e) == 1 && e == NULL, "the base, no entry");
    CHECK(access_model(&a, &nobase, "base", &e) == 0 && e == NULL, "a key without the base");
    CHECK(access_model(&a, &admin, "base", &e) == 1, "an admin has the base");
    CHECK(access_model(&a, &acme, "acme-bot", &e) == 1 && e && strcmp(e->name, "acme-bot") == 0);
    CHECK(access_model(&a, &acme, "acme-rt", &e) == 1 && e == rt, "a runtime entry by glob");
    CHECK(access_model(&a, &acme, "globex-bot", &e) == 0 && e == NULL, "another's adapter");
    CHECK(access_model(&a, &acme, "acme-missing", &e) == 0, "a name that does not exist");
    CHECK(access_model(&a, &star, "globex-bot", &e) == 1 && access_model(&a, &admin, "globex-bot", &e) == 1);
    // No job made the ft: folder (no jobs store): nobody may use it, admin or "*".
    for (const tn_tenant *t = &acme; t; t = t == &acme ? &star : t == &star ? &admin : NULL)
        CHECK(access_model(&a, t, "ft:base:acme::ftjob-1", &e) == 0 && e == NULL, "ft: for %s", t->name);
    a.adapters = NULL;
    CHECK(access_model(&a, &admin, "acme-bot", &e) == 0, "no set: no adapter");
    CHECK(access_model(&a, &admin, "base", &e) == 1, "no set: still the base");

    api_error err;
    CHECK(access_not_found(&err, "x", "model") == -1 && err.status == 404);
    CHECK(strcmp(err.code, "model_not_found") == 0 && strcmp(err.param, "model") == 0);
    CHECK(strstr(err.message, "The model 'x' does not exist or you do not have access to it.") != NULL, "%s",
          err.message);
    reg_set_free(set);
}

int main(void) {
    test_set();
    test_rule();
    return check_finish("test_access");
}
