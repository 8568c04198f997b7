// files: OpenAI's Files API for fine-tuning data, stored on disk.
//
//   POST   /v1/files               multipart/form-data: file (the bytes, with
//                                  a filename) and purpose ("fine-tune": the
//                                  only purpose this server stores files for)
//   GET    /v1/files               the tenant's files, newest first; query
//                                  purpose, limit (1..10000, default 10000),
//                                  after (a file id: the page after it),
//                                  order (desc | asc)
//   GET    /v1/files/{id}          the file object
//   GET    /v1/files/{id}/content  the bytes as uploaded
//   DELETE /v1/files/{id}          {"id","object":"file","deleted":true}
//
// Storage, under DATA_DIR/files/: FILE_ID.data (the bytes) and FILE_ID.json
// (id, tenant, filename, purpose, bytes, created_at), each written with
// util_write_file_atomic; the .json is written last and is the commit
// point: a file exists when its .json does. At open, leftovers of a crash
// (temp files, .data without .json, a .json whose .data is missing or of
// another size) are removed and logged.
//
// Ownership: every file belongs to the tenant (tenants.h: the tenant's name)
// that uploaded it; another tenant gets 404 "No such File object" exactly as
// for an id that does not exist.
//
// Size: an upload over max_bytes is refused with 413. The server sizes the
// HTTP body limit of POST /v1/files from it (files_body_limit).
//
// Threading: everything on the loop thread; the disk writes of an upload and
// the read behind /content run on the libuv thread pool.
#ifndef TESSERA_FILES_H
#define TESSERA_FILES_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "api.h"
#include "err.h"
#include "http.h"
#include "metrics.h"

// What the endpoints need from the server (server.c fills it).
typedef struct files_env {
    void *ud;
    uv_loop_t *loop;
    // The server's requests counter (reply.h): answers are counted and
    // logged through reply_*_logged.
    metrics_requests *requests;
} files_env;

typedef struct files_rec {
    char id[40];          // "file-" + 24 hex digits
    char tenant[64];
    char filename[256];
    char purpose[32];
    int64_t bytes;
    int64_t created_at;
    int64_t created_us;   // the order of creation (wall clock, microseconds)
    char *data_path;      // DATA_DIR/files/ID.data
    char *meta_path;      // DATA_DIR/files/ID.json
} files_rec;

typedef struct files_store files_store;

// Opens (creating) DATA_DIR/files and loads every stored file. env is
// copied. Returns a new store (files_free) or NULL + err naming the folder.
files_store *files_open(const char *data_dir, size_t max_bytes, const files_env *env, err_t *err);
void files_free(files_store *fs);

// Number of stored files (all tenants).
int files_count(const files_store *fs);

// The body limit POST /v1/files needs: max_bytes plus room for the form.
size_t files_body_limit(const files_store *fs);

// The file id of tenant, or NULL (absent or another tenant's). Borrowed:
// valid until the file is deleted (on the loop thread).
const files_rec *files_get(const files_store *fs, const char *id, const char *tenant);

// Handles a request whose path starts with /v1/files (method and path
// checked here: 404/405 as the server does). tenant is the caller's.
void files_handle(files_store *fs, const http_req *q, http_res *res, const char *tenant);

// ---- helpers the fine-tuning endpoints share ---------------------------------

// The value of key in a query string ("a=1&b=x%20y"), percent-decoded into
// out (n bytes). Returns 1 if present, 0 if absent, -1 if too long.
int files_query_get(const char *query, const char *key, char *out, size_t n);

// Reads the pagination parameters limit (1..max_limit, default def) and
// after ("" when absent) from a query. Returns 0, or -1 + e (400 naming the
// parameter).
int files_query_page(const char *query, int def, int max_limit, int *limit, char *after, size_t after_n,
                     api_error *e);

// "PREFIX" + 24 random hex digits into out (n bytes), from the kernel's
// random source (ids are not guessable across tenants).
void files_new_id(const char *prefix, char *out, size_t n);

// The wall clock in microseconds: orders what is created within one second.
int64_t files_now_us(void);

#endif
