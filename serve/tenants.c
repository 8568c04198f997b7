// tenants: the --tenants file, Bearer auth and adapter visibility. See tenants.h.
#include "tenants.h"

#include <cjson/cJSON.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util.h"

typedef struct tn_key {
    char *key;
    size_t len;
    tn_tenant tenant;
} tn_key;

struct tn_table {
    tn_key *keys;
    int n;
};

static const tn_tenant open_tenant = {.name = "open", .base = 1, .admin = 1};

static void tenant_free(tn_tenant *t) {
    free(t->name);
    for (int i = 0; i < t->n_globs; i++) free(t->globs[i]);
    free(t->globs);
}

void tn_free(tn_table *t) {
    if (!t) return;
    for (int i = 0; i < t->n; i++) {
        free(t->keys[i].key);
        tenant_free(&t->keys[i].tenant);
    }
    free(t->keys);
    free(t);
}

int tn_count(const tn_table *t) { return t ? t->n : 0; }

static int key_ok(const char *k) {
    if (!*k) return 0;
    for (const unsigned char *p = (const unsigned char *)k; *p; p++)
        if (*p <= 0x20 || *p == 0x7f) return 0;
    return 1;
}

// Reads one key's entry into out; err names the entry and field.
static int parse_entry(const cJSON *v, const char *name, const char *key, tn_tenant *out, err_t *err) {
    // key is the entry's label ("keys entry 3"), not the secret.
    if (!cJSON_IsObject(v)) return err_set(err, "%s: %s: expected an object", name, key);
    out->base = 1;
    // A field given twice is refused (JSON allows it; which one would win
    // is a guess, and the first one's strings would be lost).
    int seen_tenant = 0, seen_adapters = 0;
    for (const cJSON *f = v->child; f; f = f->next) {
        if ((strcmp(f->string, "tenant") == 0 && seen_tenant++) ||
            (strcmp(f->string, "adapters") == 0 && seen_adapters++))
            return err_set(err, "%s: %s.%s: given twice", name, key, f->string);
        if (strcmp(f->string, "tenant") == 0) {
            if (!cJSON_IsString(f) || !f->valuestring[0])
                return err_set(err, "%s: %s.tenant: expected a non-empty string", name, key);
            if (!(out->name = strdup(f->valuestring))) return err_set(err, "out of memory");
        } else if (strcmp(f->string, "adapters") == 0) {
            if (!cJSON_IsArray(f))
                return err_set(err, "%s: %s.adapters: expected a list of adapter name globs", name, key);
            int n = cJSON_GetArraySize(f);
            if (n && !(out->globs = calloc((size_t)n, sizeof *out->globs))) return err_set(err, "out of memory");
            int i = 0;
            for (const cJSON *g = f->child; g; g = g->next, i++) {
                if (!cJSON_IsString(g) || !g->valuestring[0])
                    return err_set(err, "%s: %s.adapters[%d]: expected a non-empty string", name, key, i);
                if (!(out->globs[i] = strdup(g->valuestring))) return err_set(err, "out of memory");
                out->n_globs = i + 1;
            }
        } else if (strcmp(f->string, "base") == 0 || strcmp(f->string, "admin") == 0) {
            if (!cJSON_IsBool(f)) return err_set(err, "%s: %s.%s: expected true or false", name, key, f->string);
            if (f->string[0] == 'b') out->base = cJSON_IsTrue(f);
            else out->admin = cJSON_IsTrue(f);
        } else {
            return err_set(err, "%s: %s: unknown field \"%s\" (expected tenant, adapters, base, admin)", name,
                           key, f->string);
        }
    }
    if (!out->name) return err_set(err, "%s: %s: missing \"tenant\"", name, key);
    return 0;
}

tn_table *tn_parse(const char *json, size_t len, const char *name, err_t *err) {
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root) {
        err_set(err, "%s: not valid JSON", name);
        return NULL;
    }
    tn_table *t = calloc(1, sizeof *t);
    const cJSON *keys = NULL;
    if (!t) {
        err_set(err, "out of memory");
        goto fail;
    }
    if (!cJSON_IsObject(root)) {
        err_set(err, "%s: expected an object {\"keys\": {...}}", name);
        goto fail;
    }
    for (const cJSON *f = root->child; f; f = f->next) {
        if (strcmp(f->string, "keys") != 0) {
            err_set(err, "%s: unknown top-level field \"%s\" (expected \"keys\")", name, f->string);
            goto fail;
        }
        keys = f;
    }
    if (!keys || !cJSON_IsObject(keys)) {
        err_set(err, "%s: \"keys\" must be an object mapping each API key to its tenant", name);
        goto fail;
    }
    int n = cJSON_GetArraySize(keys);
    if (n && !(t->keys = calloc((size_t)n, sizeof *t->keys))) {
        err_set(err, "out of memory");
        goto fail;
    }
    for (const cJSON *k = keys->child; k; k = k->next) {
        if (!key_ok(k->string)) {
            err_set(err, "%s: keys: a key is empty or holds whitespace or control characters", name);
            goto fail;
        }
        for (int i = 0; i < t->n; i++)
            if (strcmp(t->keys[i].key, k->string) == 0) {
                err_set(err, "%s: keys: a key is listed twice (tenant \"%s\")", name, t->keys[i].tenant.name);
                goto fail;
            }
        tn_key *e = &t->keys[t->n++];
        if (!(e->key = strdup(k->string))) {
            err_set(err, "out of memory");
            goto fail;
        }
        e->len = strlen(e->key);
        // Errors name the entry by position, never by the key: a secret
        // must not end up in a log.
        char label[48];
        snprintf(label, sizeof label, "keys entry %d", t->n);
        if (parse_entry(k, name, label, &e->tenant, err) != 0) goto fail;
    }
    cJSON_Delete(root);
    return t;
fail:
    cJSON_Delete(root);
    tn_free(t);
    return NULL;
}

tn_table *tn_load(const char *path, err_t *err) {
    size_t len = 0;
    char *text = util_read_file(path, &len, err);
    if (!text) return NULL;
    tn_table *t = tn_parse(text, len, path, err);
    free(text);
    return t;
}

// The token after "Bearer " (case-insensitive scheme), or NULL.
static const char *bearer(const char *authorization) {
    if (!authorization || strncasecmp(authorization, "bearer", 6) != 0) return NULL;
    const char *p = authorization + 6;
    if (*p != ' ' && *p != '\t') return NULL;
    while (*p == ' ' || *p == '\t') p++;
    return *p ? p : NULL;
}

// Equal in time that depends only on the lengths.
static int same_key(const char *a, size_t na, const char *b, size_t nb) {
    unsigned char diff = na != nb;
    size_t n = na < nb ? na : nb;
    for (size_t i = 0; i < n; i++) diff |= (unsigned char)(a[i] ^ b[i]);
    return diff == 0;
}

tn_auth_result tn_auth(const tn_table *t, const char *authorization, const tn_tenant **out) {
    *out = NULL;
    if (!t) {
        *out = &open_tenant;
        return TN_AUTH_OK;
    }
    const char *key = bearer(authorization);
    if (!key) return TN_AUTH_MISSING;
    size_t n = strlen(key);
    while (n > 0 && (key[n - 1] == ' ' || key[n - 1] == '\t')) n--;
    const tn_tenant *found = NULL;
    for (int i = 0; i < t->n; i++)
        if (same_key(key, n, t->keys[i].key, t->keys[i].len) && !found) found = &t->keys[i].tenant;
    *out = found;
    return found ? TN_AUTH_OK : TN_AUTH_INVALID;
}

int tn_allows(const tn_tenant *tn, const char *adapter) {
    if (tn->admin) return 1;
    for (int i = 0; i < tn->n_globs; i++)
        if (fnmatch(tn->globs[i], adapter, 0) == 0) return 1;
    return 0;
}

int tn_allows_base(const tn_tenant *tn) { return tn->admin || tn->base; }

void tn_mask_key(const char *authorization, char *out, size_t n) {
    const char *key = bearer(authorization);
    if (!key) key = authorization ? authorization : "";
    size_t len = strlen(key);
    if (len < 12) {
        snprintf(out, n, "***");
        return;
    }
    snprintf(out, n, "%.5s***%s", key, key + len - 4);
}
