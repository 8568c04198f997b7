// jsonschema_ref: drafts, $id resources and anchors, and $ref. A $ref
// resolves within the document only: "#/json/pointer" (percent- and
// ~-escaped), "#name" anchors ($anchor, and "$id": "#name" before 2019-09),
// and URIs relative to the enclosing $id naming a resource of the same
// document. Anything else is remote: an error naming the ref. A target
// compiles once (memo by its address): a recursive ref becomes a cycle.
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonschema_int.h"

int cx_draft_of(const cJSON *doc) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(doc, "$schema");
    if (!cJSON_IsString(v)) return JS_DRAFT2020;
    const char *s = v->valuestring;
    if (strstr(s, "draft-03") || strstr(s, "draft-04")) return JS_DRAFT4;
    if (strstr(s, "draft-06")) return JS_DRAFT6;
    if (strstr(s, "draft-07")) return JS_DRAFT7;
    if (strstr(s, "2019-09")) return JS_DRAFT2019;
    return JS_DRAFT2020;
}

static const char *id_of(const js_cx *cx, const cJSON *s) {
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(s, cx->draft <= JS_DRAFT4 ? "id" : "$id");
    return cJSON_IsString(id) ? id->valuestring : NULL;
}

// ref resolved against base (RFC 3986, without dot segments), fragment
// kept. New string.
static char *uri_join(const char *base, const char *ref) {
    size_t nb = strlen(base), nr = strlen(ref);
    char *out = malloc(nb + nr + 2);
    if (!out) return NULL;
    const char *colon = strchr(ref, ':');
    const char *slash = strchr(ref, '/');
    if (colon && (!slash || colon < slash)) { // has a scheme: absolute
        memcpy(out, ref, nr + 1);
        return out;
    }
    size_t keep = strcspn(base, "#");
    if (ref[0] == '#') {
    } else if (ref[0] == '/') {
        const char *auth = strstr(base, "://");
        const char *path = auth ? strchr(auth + 3, '/') : NULL;
        keep = path ? (size_t)(path - base) : auth ? keep : 0;
    } else {
        while (keep > 0 && base[keep - 1] != '/') keep--;
    }
    memcpy(out, base, keep);
    memcpy(out + keep, ref, nr + 1);
    return out;
}

static int res_add(js_cx *cx, char *uri, const cJSON *node) {
    if (!uri) return err_set(cx->err, "schema: out of memory");
    if (cx->n_res == cx->cap_res) {
        int32_t cap = cx->cap_res ? 2 * cx->cap_res : 16;
        struct js_res *r = realloc(cx->res, (size_t)cap * sizeof *r);
        if (!r) return free(uri), err_set(cx->err, "schema: out of memory");
        cx->res = r;
        cx->cap_res = cap;
    }
    cx->res[cx->n_res].uri = uri;
    cx->res[cx->n_res++].node = node;
    return 0;
}

// Walks every object under s (base: the URI s sits in), recording $id
// resources and anchors. Keyword values that are not schemas (enum, const,
// examples) are skipped.
static int index_walk(js_cx *cx, const cJSON *s, const char *base, int depth) {
    if (depth > 400) return 0;
    if (cJSON_IsArray(s)) {
        const cJSON *m;
        cJSON_ArrayForEach(m, s) if (index_walk(cx, m, base, depth + 1) < 0) return -1;
        return 0;
    }
    if (!cJSON_IsObject(s)) return 0;
    char *mine = NULL;
    const char *id = id_of(cx, s);
    if (id && id[0] == '#') {
        if (res_add(cx, uri_join(base, id), s) < 0) return -1;
    } else if (id) {
        mine = uri_join(base, id);
        if (!mine) return err_set(cx->err, "schema: out of memory");
        mine[strcspn(mine, "#")] = 0;
        if (res_add(cx, strdup(mine), s) < 0) return free(mine), -1;
        base = mine;
    }
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(s, "$anchor");
    if (cJSON_IsString(a)) {
        size_t n = strlen(base) + strlen(a->valuestring) + 2;
        char *u = malloc(n);
        if (u) snprintf(u, n, "%s#%s", base, a->valuestring);
        if (res_add(cx, u, s) < 0) return free(mine), -1;
    }
    const cJSON *m;
    cJSON_ArrayForEach(m, s) {
        if (!strcmp(m->string, "enum") || !strcmp(m->string, "const") || !strcmp(m->string, "examples") ||
            !strcmp(m->string, "default"))
            continue;
        if (index_walk(cx, m, base, depth + 1) < 0) return free(mine), -1;
    }
    free(mine);
    return 0;
}

int cx_index_ids(js_cx *cx) {
    const char *id = id_of(cx, cx->doc);
    char *root = strdup(id && id[0] != '#' ? id : "");
    if (!root) return err_set(cx->err, "schema: out of memory");
    root[strcspn(root, "#")] = 0;
    int r = index_walk(cx, cx->doc, "", 0);
    if (r == 0 && !root[0]) r = res_add(cx, strdup(""), cx->doc);
    free(root);
    return r;
}

static const struct js_res *res_find(const js_cx *cx, const char *uri) {
    for (int32_t i = 0; i < cx->n_res; i++)
        if (!strcmp(cx->res[i].uri, uri)) return &cx->res[i];
    return NULL;
}

static const char *res_uri_of(const js_cx *cx, const cJSON *node) {
    for (int32_t i = 0; i < cx->n_res; i++)
        if (cx->res[i].node == node && !strchr(cx->res[i].uri, '#')) return cx->res[i].uri;
    return NULL;
}

void cx_enter_resource(js_cx *cx, const cJSON *s) {
    const char *id = cJSON_IsObject(s) ? id_of(cx, s) : NULL;
    if (!id || id[0] == '#') return;
    const char *uri = res_uri_of(cx, s);
    if (!uri) return;
    cx->cur_root = s;
    cx->cur_base = uri;
}

static int hexval(int c) {
    return isdigit(c) ? c - '0' : isxdigit(c) ? (tolower(c) - 'a' + 10) : -1;
}

// One JSON pointer token, percent- and ~-decoded, into out.
static void ptr_token(const char *t, size_t n, char *out, size_t cap) {
    size_t k = 0;
    for (size_t i = 0; i < n && k + 1 < cap; i++) {
        if (t[i] == '%' && i + 2 < n && hexval(t[i + 1]) >= 0 && hexval(t[i + 2]) >= 0) {
            out[k++] = (char)(hexval(t[i + 1]) * 16 + hexval(t[i + 2]));
            i += 2;
        } else if (t[i] == '~' && i + 1 < n && (t[i + 1] == '0' || t[i + 1] == '1')) {
            out[k++] = t[i + 1] == '0' ? '~' : '/';
            i++;
        } else {
            out[k++] = t[i];
        }
    }
    out[k] = 0;
}

// The value at JSON pointer p (after '#') from root, or NULL.
static const cJSON *walk_pointer(const cJSON *root, const char *p) {
    const cJSON *cur = root;
    while (*p == '/' && cur) {
        p++;
        size_t n = strcspn(p, "/");
        char tok[512];
        ptr_token(p, n, tok, sizeof tok);
        if (cJSON_IsArray(cur)) {
            char *end;
            long i = strtol(tok, &end, 10);
            cur = *end || !tok[0] ? NULL : cJSON_GetArrayItem(cur, (int)i);
        } else {
            cur = cJSON_GetObjectItemCaseSensitive(cur, tok);
        }
        p += n;
    }
    return *p ? NULL : cur;
}

const cJSON *cx_resolve(js_cx *cx, const char *ref, const char *ptr) {
    if (ref[0] == '#' && (ref[1] == 0 || ref[1] == '/')) {
        const cJSON *t = walk_pointer(cx->cur_root, ref + 1);
        if (!t) cx_fail(cx, "$ref", ptr, "'%s' names nothing in the document", ref);
        return t;
    }
    char *abs = uri_join(cx->cur_base, ref);
    if (!abs) return err_set(cx->err, "schema: out of memory"), NULL;
    const struct js_res *r = res_find(cx, abs);
    const cJSON *t = r ? r->node : NULL;
    if (!r) {
        char *hash = strchr(abs, '#');
        if (hash && (hash[1] == '/' || hash[1] == 0)) {
            *hash = 0;
            r = res_find(cx, abs);
            t = r ? walk_pointer(r->node, hash + 1) : NULL;
        }
    }
    free(abs);
    if (!t) cx_fail(cx, "$ref", ptr, "'%s' is not in this document (remote references are not supported)", ref);
    return t;
}

// ---- memo: document schema -> node ---------------------------------------------

static uint32_t memo_hash(const cJSON *k) {
    uintptr_t x = (uintptr_t)k;
    x ^= x >> 17;
    x *= 0x9E3779B1u;
    return (uint32_t)(x ^ (x >> 15));
}

static int32_t *memo_slot(js_cx *cx, const cJSON *k, int insert) {
    if (insert && 2 * (cx->n_memo + 1) > cx->cap_memo) {
        int32_t cap = cx->cap_memo ? 2 * cx->cap_memo : 64;
        js_memo *m = calloc((size_t)cap, sizeof *m);
        if (!m) return NULL;
        for (int32_t i = 0; i < cx->cap_memo; i++) {
            if (!cx->memo[i].key) continue;
            uint32_t h = memo_hash(cx->memo[i].key) & (uint32_t)(cap - 1);
            while (m[h].key) h = (h + 1) & (uint32_t)(cap - 1);
            m[h] = cx->memo[i];
        }
        free(cx->memo);
        cx->memo = m;
        cx->cap_memo = cap;
    }
    if (!cx->cap_memo) return NULL;
    uint32_t h = memo_hash(k) & (uint32_t)(cx->cap_memo - 1);
    while (cx->memo[h].key && cx->memo[h].key != k) h = (h + 1) & (uint32_t)(cx->cap_memo - 1);
    if (cx->memo[h].key == k) return &cx->memo[h].node;
    if (!insert) return NULL;
    cx->memo[h].key = k;
    cx->n_memo++;
    return &cx->memo[h].node;
}

int32_t cx_memo_get(js_cx *cx, const cJSON *s) {
    int32_t *slot = memo_slot(cx, s, 0);
    return slot ? *slot : -1;
}

void cx_memo_free(js_cx *cx) {
    free(cx->memo);
    for (int32_t i = 0; i < cx->n_res; i++) free(cx->res[i].uri);
    free(cx->res);
}

// The node for document schema t. Its index is reserved before its body
// compiles, so refs back to t inside the body point at it (a cycle).
int32_t cx_ref_target(js_cx *cx, const cJSON *t, const char *ptr) {
    int32_t *slot = memo_slot(cx, t, 0);
    if (slot) return *slot;
    int32_t idx = cx_new_node(cx, JS_NEVER);
    if (idx < 0) return -1;
    cx->shared[idx] = 1;
    if (!(slot = memo_slot(cx, t, 1))) return err_set(cx->err, "schema: out of memory"), -1;
    *slot = idx;
    cx->fresh = t; // its own memo entry is the slot being filled
    int32_t r = cx_schema(cx, t, ptr);
    if (r < 0) return -1;
    js_node *n = cx->s->nodes;
    if (r > idx && !cx->shared[r]) { // fresh: move it into the reserved slot
        n[idx] = n[r];
        memset(&n[r], 0, sizeof n[r]);
        n[r].kind = JS_NEVER;
        return idx;
    }
    int32_t *a = malloc(sizeof *a);
    if (!a) return err_set(cx->err, "schema: out of memory"), -1;
    a[0] = r;
    n[idx].kind = JS_ANYOF;
    n[idx].alts = a;
    n[idx].n_alts = 1;
    return idx;
}

// A schema whose $ref is all that counts (drafts <= 7, or no siblings).
int32_t cx_ref(js_cx *cx, const cJSON *s, const char *ptr) {
    const cJSON *ref = cJSON_GetObjectItemCaseSensitive(s, "$ref");
    if (!cJSON_IsString(ref)) return cx_fail(cx, "$ref", ptr, "expected a string"), -1;
    const cJSON *t = cx_resolve(cx, ref->valuestring, ptr);
    if (!t) return -1;
    char p[1024];
    snprintf(p, sizeof p, "%s", ref->valuestring[0] == '#' ? ref->valuestring + 1 : ref->valuestring);
    return cx_ref_target(cx, t, p);
}
