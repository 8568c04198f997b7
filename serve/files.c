// files: the Files API store. See files.h.
#include "files.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "multipart.h"
#include "log.h"
#include "reply.h"
#include "store.h"
#include "util.h"

#define FILES_FORM_SLACK (64u << 10) // the form's own bytes around the file
#define FILES_LIST_MAX 10000

struct files_store {
    char *dir;
    size_t max_bytes;
    files_env env;
    store recs; // files_rec, in creation order
};

static void flog(const files_store *fs, const char *level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void flog(const files_store *fs, const char *level, const char *fmt, ...) {
    (void)fs;
    va_list ap;
    va_start(ap, fmt);
    log_vline(level, "files", fmt, ap);
    va_end(ap);
}

int64_t files_now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void files_new_id(const char *prefix, char *out, size_t n) {
    unsigned char b[12];
    if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b) {
        // No kernel randomness (should not happen): time and address bits.
        uint64_t t = uv_hrtime() ^ (uint64_t)(uintptr_t)out;
        for (size_t i = 0; i < sizeof b; i++) b[i] = (unsigned char)(t >> (8 * (i % 8))) ^ (unsigned char)(i * 37);
    }
    size_t k = (size_t)snprintf(out, n, "%s", prefix);
    for (size_t i = 0; i < sizeof b && k + 2 < n; i++, k += 2) snprintf(out + k, n - k, "%02x", b[i]);
}

// ---- queries -------------------------------------------------------------

static int hexval(int c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

int files_query_get(const char *query, const char *key, char *out, size_t n) {
    size_t klen = strlen(key);
    for (const char *p = query; p && *p;) {
        const char *amp = strchr(p, '&');
        size_t len = amp ? (size_t)(amp - p) : strlen(p);
        if (len > klen && strncmp(p, key, klen) == 0 && p[klen] == '=') {
            size_t k = 0;
            for (size_t i = klen + 1; i < len; i++) {
                int c = (unsigned char)p[i];
                if (c == '+') c = ' ';
                else if (c == '%' && i + 2 < len && hexval(p[i + 1]) >= 0 && hexval(p[i + 2]) >= 0) {
                    c = hexval(p[i + 1]) * 16 + hexval(p[i + 2]);
                    i += 2;
                }
                if (k + 1 >= n) return -1;
                out[k++] = (char)c;
            }
            out[k] = '\0';
            return 1;
        }
        p = amp ? amp + 1 : NULL;
    }
    if (n) out[0] = '\0';
    return 0;
}

int files_query_page(const char *query, int def, int max_limit, int *limit, char *after, size_t after_n,
                     api_error *e) {
    char v[32];
    *limit = def;
    int rc = files_query_get(query, "limit", v, sizeof v);
    if (rc != 0) {
        char *end;
        long n = rc > 0 ? strtol(v, &end, 10) : 0;
        if (rc < 0 || !v[0] || *end || n < 1 || n > max_limit)
            return api_err_invalid(e, "limit", "Invalid 'limit': expected an integer from 1 to %d.", max_limit);
        *limit = (int)n;
    }
    if (files_query_get(query, "after", after, after_n) < 0)
        return api_err_invalid(e, "after", "Invalid 'after': too long.");
    return 0;
}

// ---- records -------------------------------------------------------------------------

static void rec_free(files_rec *r) {
    if (!r) return;
    free(r->data_path);
    free(r->meta_path);
    free(r);
}

// A new record for id with its two paths (other fields zero).
static files_rec *rec_new(const files_store *fs, const char *id) {
    files_rec *r = calloc(1, sizeof *r);
    char name[64];
    if (!r) return NULL;
    snprintf(r->id, sizeof r->id, "%s", id);
    snprintf(name, sizeof name, "%s.data", id);
    r->data_path = util_path_join(fs->dir, name);
    snprintf(name, sizeof name, "%s.json", id);
    r->meta_path = util_path_join(fs->dir, name);
    if (!r->data_path || !r->meta_path) {
        rec_free(r);
        return NULL;
    }
    return r;
}

// Inserts r keeping creation order. Returns 0 or -1 (out of memory).
static int rec_insert(files_store *fs, files_rec *r) { return store_insert(&fs->recs, r, r->id, r->created_us); }

const files_rec *files_get(const files_store *fs, const char *id, const char *tenant) {
    int i = fs ? store_index(&fs->recs, id) : -1;
    const files_rec *r = i >= 0 ? store_at(&fs->recs, i) : NULL;
    return r && strcmp(r->tenant, tenant) == 0 ? r : NULL;
}

int files_count(const files_store *fs) { return fs ? fs->recs.n : 0; }

size_t files_body_limit(const files_store *fs) { return fs->max_bytes + FILES_FORM_SLACK; }

static char *meta_json(const files_rec *r) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", r->id);
    cJSON_AddStringToObject(o, "tenant", r->tenant);
    cJSON_AddStringToObject(o, "filename", r->filename);
    cJSON_AddStringToObject(o, "purpose", r->purpose);
    cJSON_AddNumberToObject(o, "bytes", (double)r->bytes);
    cJSON_AddNumberToObject(o, "created_at", (double)r->created_at);
    cJSON_AddNumberToObject(o, "created_us", (double)r->created_us);
    char *s = cJSON_Print(o);
    cJSON_Delete(o);
    return s;
}

// The OpenAI file object.
static cJSON *file_object(const files_rec *r) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", r->id);
    cJSON_AddStringToObject(o, "object", "file");
    cJSON_AddNumberToObject(o, "bytes", (double)r->bytes);
    cJSON_AddNumberToObject(o, "created_at", (double)r->created_at);
    cJSON_AddNullToObject(o, "expires_at");
    cJSON_AddStringToObject(o, "filename", r->filename);
    cJSON_AddStringToObject(o, "purpose", r->purpose);
    cJSON_AddStringToObject(o, "status", "processed");
    cJSON_AddNullToObject(o, "status_details");
    return o;
}

static char *print_free(cJSON *o) {
    char *s = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return s;
}

// ---- loading --------------------------------------------------------------------------

static const char *str_field(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

// Reads one FILE_ID.json; NULL + why when it is not a whole, consistent record.
static files_rec *load_one(files_store *fs, const char *id, char *why, size_t n) {
    files_rec *r = rec_new(fs, id);
    if (!r) return snprintf(why, n, "out of memory"), NULL;
    err_t e = {{0}};
    char *text = util_read_file(r->meta_path, NULL, &e);
    cJSON *o = text ? cJSON_Parse(text) : NULL;
    free(text);
    const char *tenant = str_field(o, "tenant"), *fname = str_field(o, "filename"), *purpose = str_field(o, "purpose");
    const cJSON *bytes = cJSON_GetObjectItemCaseSensitive(o, "bytes");
    const cJSON *created = cJSON_GetObjectItemCaseSensitive(o, "created_at");
    const char *sid = str_field(o, "id");
    struct stat sb;
    if (!o || !tenant || !fname || !purpose || !cJSON_IsNumber(bytes) || !cJSON_IsNumber(created) || !sid ||
        strcmp(sid, id) != 0) {
        snprintf(why, n, "%s: not a valid file record", r->meta_path);
    } else if (stat(r->data_path, &sb) != 0 || (int64_t)sb.st_size != (int64_t)bytes->valuedouble) {
        snprintf(why, n, "%s: missing or of another size than the record says", r->data_path);
    } else {
        snprintf(r->tenant, sizeof r->tenant, "%s", tenant);
        snprintf(r->filename, sizeof r->filename, "%s", fname);
        snprintf(r->purpose, sizeof r->purpose, "%s", purpose);
        r->bytes = (int64_t)bytes->valuedouble;
        r->created_at = (int64_t)created->valuedouble;
        const cJSON *us = cJSON_GetObjectItemCaseSensitive(o, "created_us");
        r->created_us = cJSON_IsNumber(us) ? (int64_t)us->valuedouble : r->created_at * 1000000;
        cJSON_Delete(o);
        return r;
    }
    cJSON_Delete(o);
    rec_free(r);
    return NULL;
}

// 1 if name is "file-" + hex digits + suffix exactly; the id goes to id.
static int parse_name(const char *name, const char *suffix, char *id, size_t n) {
    size_t len = strlen(name), sl = strlen(suffix);
    if (strncmp(name, "file-", 5) != 0 || len <= 5 + sl || strcmp(name + len - sl, suffix) != 0) return 0;
    for (size_t i = 5; i < len - sl; i++)
        if (!isxdigit((unsigned char)name[i])) return 0;
    if (len - sl + 1 > n) return 0;
    memcpy(id, name, len - sl);
    id[len - sl] = '\0';
    return 1;
}

// Loads every record, then removes what no record owns (crash leftovers).
static int load_all(files_store *fs, err_t *err) {
    for (int pass = 0; pass < 2; pass++) {
        DIR *d = opendir(fs->dir);
        if (!d) return err_set(err, "%s: %s", fs->dir, strerror(errno));
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            char id[64], why[512];
            if (de->d_name[0] == '.') continue;
            char *path = util_path_join(fs->dir, de->d_name);
            if (!path) break;
            if (pass == 0 && parse_name(de->d_name, ".json", id, sizeof id)) {
                files_rec *r = load_one(fs, id, why, sizeof why);
                if (!r || rec_insert(fs, r) != 0) {
                    if (r) rec_free(r);
                    else flog(fs, "warn", "dropped file=%s reason=%s", id, why);
                    unlink(path);
                }
            } else if (pass == 1) {
                int owned = (parse_name(de->d_name, ".json", id, sizeof id) ||
                             parse_name(de->d_name, ".data", id, sizeof id)) && store_index(&fs->recs, id) >= 0;
                if (!owned) {
                    flog(fs, "warn", "removed leftover path=%s (no file record owns it)", path);
                    unlink(path);
                }
            }
            free(path);
        }
        closedir(d);
    }
    return 0;
}

files_store *files_open(const char *data_dir, size_t max_bytes, const files_env *env, err_t *err) {
    files_store *fs = calloc(1, sizeof *fs);
    if (!fs || !(fs->dir = util_path_join(data_dir, "files"))) {
        free(fs);
        err_set(err, "out of memory");
        return NULL;
    }
    fs->max_bytes = max_bytes;
    fs->env = *env;
    if ((mkdir(data_dir, 0755) != 0 && errno != EEXIST) || (mkdir(fs->dir, 0755) != 0 && errno != EEXIST)) {
        err_set(err, "--data-dir %s: cannot create %s: %s", data_dir, fs->dir, strerror(errno));
        files_free(fs);
        return NULL;
    }
    if (load_all(fs, err) != 0) {
        files_free(fs);
        return NULL;
    }
    flog(fs, "info", "store dir=%s files=%d max_file_bytes=%zu", fs->dir, fs->recs.n, max_bytes);
    return fs;
}

void files_free(files_store *fs) {
    if (!fs) return;
    for (int i = 0; i < fs->recs.n; i++) rec_free(store_at(&fs->recs, i));
    store_free(&fs->recs);
    free(fs->dir);
    free(fs);
}

// ---- POST /v1/files -------------------------------------------------------------------

typedef struct upload {
    files_store *fs;
    const http_req *q;
    http_res *res;
    files_rec *rec;
    const char *data;
    err_t err;
    int failed;
    uv_work_t work;
} upload;

static void upload_work(uv_work_t *w) {
    upload *u = w->data;
    char *meta = meta_json(u->rec);
    if (!meta) {
        u->failed = err_set(&u->err, "out of memory");
        return;
    }
    // The bytes first, then the record: a crash between leaves a .data that
    // no record owns, removed at the next start.
    if (util_write_file_atomic(u->rec->data_path, u->data, (size_t)u->rec->bytes, &u->err) != 0 ||
        util_write_file_atomic(u->rec->meta_path, meta, strlen(meta), &u->err) != 0) {
        u->failed = -1;
        unlink(u->rec->data_path);
    }
    free(meta);
}

static void upload_done(uv_work_t *w, int status) {
    upload *u = w->data;
    files_store *fs = u->fs;
    api_error e;
    if (status != 0 || u->failed || rec_insert(fs, u->rec) != 0) {
        if (!u->failed && status == 0) unlink(u->rec->meta_path), unlink(u->rec->data_path);
        flog(fs, "error", "upload failed file=%s error=%s", u->rec->id, u->failed ? u->err.msg : "cancelled");
        api_err_set(&e, 500, "server_error", NULL, NULL, "The file could not be stored: %s",
                    u->failed ? u->err.msg : "cancelled");
        reply_error_logged(fs->env.requests, u->q, u->res, &e, u->rec->tenant, NULL);
        rec_free(u->rec);
    } else {
        flog(fs, "info", "stored file=%s tenant=%s bytes=%lld filename=%s", u->rec->id, u->rec->tenant,
             (long long)u->rec->bytes, u->rec->filename);
        reply_json_logged(fs->env.requests, u->q, u->res, 200, print_free(file_object(u->rec)), u->rec->tenant, NULL);
    }
    free(u);
}

// Checks the form; fills e (400/413) when it cannot be stored.
static int check_form(const files_store *fs, const mp_form *f, const mp_part **file, api_error *e) {
    const mp_part *purpose = mp_find(f, "purpose");
    *file = mp_find(f, "file");
    if (!*file || !(*file)->has_filename)
        return api_err_invalid(e, "file", "Missing required parameter: 'file' (a form part with a filename).");
    if (!purpose) return api_err_invalid(e, "purpose", "Missing required parameter: 'purpose'.");
    if (purpose->len != 9 || memcmp(purpose->data, "fine-tune", 9) != 0)
        return api_err_invalid(e, "purpose",
                               "Invalid 'purpose': '%.*s'. This server stores files for fine-tuning only: use "
                               "'fine-tune'.", (int)(purpose->len < 64 ? purpose->len : 64), purpose->data);
    if ((*file)->len > fs->max_bytes)
        return api_err_set(e, 413, "invalid_request_error", "file", "file_too_large",
                           "The file is %zu bytes; this server accepts files up to %zu bytes (--max-file-bytes).",
                           (*file)->len, fs->max_bytes);
    if ((*file)->len == 0) return api_err_invalid(e, "file", "The file is empty.");
    if (!(*file)->filename[0]) return api_err_invalid(e, "file", "The file part has an empty filename.");
    return 0;
}

static void route_upload(files_store *fs, const http_req *q, http_res *res, const char *tenant) {
    mp_form form;
    err_t perr = {{0}};
    api_error e;
    const mp_part *file = NULL;
    if (mp_parse(http_req_header(q, "content-type"), q->body, q->body_len, &form, &perr) != 0) {
        api_err_invalid(&e, NULL, "The body is not a valid multipart/form-data upload: %s", perr.msg);
        reply_error_logged(fs->env.requests, q, res, &e, tenant, NULL);
        return;
    }
    if (check_form(fs, &form, &file, &e) != 0) {
        reply_error_logged(fs->env.requests, q, res, &e, tenant, NULL);
        return;
    }
    char id[40];
    files_new_id("file-", id, sizeof id);
    upload *u = calloc(1, sizeof *u);
    files_rec *r = rec_new(fs, id);
    if (!u || !r) {
        free(u);
        rec_free(r);
        reply_json_logged(fs->env.requests, q, res, 500, NULL, tenant, NULL);
        return;
    }
    snprintf(r->tenant, sizeof r->tenant, "%s", tenant);
    snprintf(r->filename, sizeof r->filename, "%s", file->filename);
    snprintf(r->purpose, sizeof r->purpose, "fine-tune");
    r->bytes = (int64_t)file->len;
    r->created_us = files_now_us();
    r->created_at = r->created_us / 1000000;
    *u = (upload){.fs = fs, .q = q, .res = res, .rec = r, .data = file->data};
    u->work.data = u;
    // The part's bytes live in the request body, valid until res is finished.
    if (uv_queue_work(fs->env.loop, &u->work, upload_work, upload_done) != 0) {
        rec_free(r);
        free(u);
        reply_json_logged(fs->env.requests, q, res, 500, NULL, tenant, NULL);
    }
}

// ---- GET / DELETE ----------------------------------------------------------------------

// The records a list shows: the tenant's, of purpose if one is given.
typedef struct list_filter {
    const char *tenant, *purpose;
    cJSON *data;
} list_filter;

static int list_keep(const void *rec, void *arg) {
    const files_rec *r = rec;
    const list_filter *f = arg;
    return strcmp(r->tenant, f->tenant) == 0 && (!f->purpose[0] || strcmp(r->purpose, f->purpose) == 0);
}

static void list_emit(void *rec, void *arg) { cJSON_AddItemToArray(((list_filter *)arg)->data, file_object(rec)); }

static void route_list(files_store *fs, const http_req *q, http_res *res, const char *tenant) {
    api_error e = {0};
    int limit;
    char after[64], purpose[64], order[16];
    if (files_query_page(q->query, FILES_LIST_MAX, FILES_LIST_MAX, &limit, after, sizeof after, &e) != 0 ||
        files_query_get(q->query, "purpose", purpose, sizeof purpose) < 0 ||
        files_query_get(q->query, "order", order, sizeof order) < 0 ||
        (order[0] && strcmp(order, "asc") != 0 && strcmp(order, "desc") != 0 &&
         api_err_invalid(&e, "order", "Invalid 'order': expected 'asc' or 'desc'.") != 0)) {
        if (e.status == 0) api_err_invalid(&e, NULL, "Invalid query parameters.");
        reply_error_logged(fs->env.requests, q, res, &e, tenant, NULL);
        return;
    }
    cJSON *o = cJSON_CreateObject(), *data = cJSON_CreateArray();
    list_filter f = {.tenant = tenant, .purpose = purpose, .data = data};
    int more = store_page(&fs->recs, strcmp(order, "asc") != 0, after, limit, list_keep, list_emit, &f);
    cJSON_AddStringToObject(o, "object", "list");
    cJSON_AddItemToObject(o, "data", data);
    cJSON_AddBoolToObject(o, "has_more", more);
    reply_json_logged(fs->env.requests, q, res, 200, print_free(o), tenant, NULL);
}

typedef struct content_read {
    files_store *fs;
    const http_req *q;
    http_res *res;
    char tenant[64];
    char *path;
    char *data;
    size_t len;
    err_t err;
    uv_work_t work;
} content_read;

static void content_work(uv_work_t *w) {
    content_read *c = w->data;
    c->data = util_read_file(c->path, &c->len, &c->err);
}

static void content_done(uv_work_t *w, int status) {
    content_read *c = w->data;
    if (!c->data) {
        api_error e;
        api_err_set(&e, 500, "server_error", NULL, NULL, "The file could not be read: %s", c->err.msg);
        reply_error_logged(c->fs->env.requests, c->q, c->res, &e, c->tenant, NULL);
    } else {
        reply_access(c->fs->env.requests, c->q, 200, c->tenant, NULL);
        http_res_send(c->res, 200, "application/octet-stream", c->data, c->len);
    }
    free(c->data);
    free(c->path);
    free(c);
}

static void route_content(files_store *fs, const http_req *q, http_res *res, const files_rec *r, const char *tenant) {
    content_read *c = calloc(1, sizeof *c);
    if (!c || !(c->path = strdup(r->data_path))) {
        free(c);
        reply_json_logged(fs->env.requests, q, res, 500, NULL, tenant, NULL);
        return;
    }
    c->fs = fs;
    c->q = q;
    c->res = res;
    snprintf(c->tenant, sizeof c->tenant, "%s", tenant);
    c->work.data = c;
    if (uv_queue_work(fs->env.loop, &c->work, content_work, content_done) != 0) {
        free(c->path);
        free(c);
        reply_json_logged(fs->env.requests, q, res, 500, NULL, tenant, NULL);
    }
}

static void route_delete(files_store *fs, const http_req *q, http_res *res, const files_rec *r, const char *tenant) {
    int i = store_index(&fs->recs, r->id);
    // The record goes first: once it is gone the file does not exist, even
    // if the server dies before the bytes are removed (open cleans those).
    if (unlink(r->meta_path) != 0 && errno != ENOENT) {
        api_error e;
        api_err_set(&e, 500, "server_error", NULL, NULL, "The file could not be deleted: %s", strerror(errno));
        reply_error_logged(fs->env.requests, q, res, &e, tenant, NULL);
        return;
    }
    unlink(r->data_path);
    flog(fs, "info", "deleted file=%s tenant=%s", r->id, tenant);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", r->id);
    cJSON_AddStringToObject(o, "object", "file");
    cJSON_AddBoolToObject(o, "deleted", 1);
    rec_free(store_remove(&fs->recs, i));
    reply_json_logged(fs->env.requests, q, res, 200, print_free(o), tenant, NULL);
}

static void reply_405(files_store *fs, const http_req *q, http_res *res, const char *allow, const char *tenant) {
    api_error e;
    http_res_header(res, "Allow", allow);
    api_err_set(&e, 405, "invalid_request_error", NULL, NULL, "Method %s is not allowed for %s; use %s.", q->method,
                q->path, allow);
    reply_error_logged(fs->env.requests, q, res, &e, tenant, NULL);
}

void files_handle(files_store *fs, const http_req *q, http_res *res, const char *tenant) {
    const char *p = q->path + strlen("/v1/files");
    int get = strcmp(q->method, "GET") == 0, post = strcmp(q->method, "POST") == 0,
        del = strcmp(q->method, "DELETE") == 0;
    if (*p == '\0' || strcmp(p, "/") == 0) {
        if (post) route_upload(fs, q, res, tenant);
        else if (get) route_list(fs, q, res, tenant);
        else reply_405(fs, q, res, "GET, POST", tenant);
        return;
    }
    char id[64];
    const char *slash = strchr(p + 1, '/');
    size_t n = slash ? (size_t)(slash - p - 1) : strlen(p + 1);
    int content = slash && strcmp(slash, "/content") == 0;
    api_error e;
    if (*p != '/' || n == 0 || n >= sizeof id || (slash && !content)) {
        api_err_set(&e, 404, "invalid_request_error", NULL, NULL, "Invalid URL (%s %s)", q->method, q->path);
        reply_error_logged(fs->env.requests, q, res, &e, tenant, NULL);
        return;
    }
    memcpy(id, p + 1, n);
    id[n] = '\0';
    http_url_decode(id);
    if (content ? !get : !get && !del) {
        reply_405(fs, q, res, content ? "GET" : "GET, DELETE", tenant);
        return;
    }
    const files_rec *r = files_get(fs, id, tenant);
    if (!r) {
        api_err_set(&e, 404, "invalid_request_error", "id", NULL, "No such File object: %s", id);
        reply_error_logged(fs->env.requests, q, res, &e, tenant, NULL);
    } else if (content) {
        route_content(fs, q, res, r, tenant);
    } else if (del) {
        route_delete(fs, q, res, r, tenant);
    } else {
        reply_json_logged(fs->env.requests, q, res, 200, print_free(file_object(r)), tenant, NULL);
    }
}
