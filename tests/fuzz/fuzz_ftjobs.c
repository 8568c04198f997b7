// fuzz_ftjobs: the body of POST /v1/fine_tuning/jobs (serve/ftjobs.c
// ftjob_parse_create): model, training/validation file ids, method,
// hyperparameters, suffix, seed, metadata, integrations. The store behind
// it is a real files store in a scratch folder holding two records of
// tenant acme (one fine-tune file, one of another purpose), so file-id
// lookups succeed or fail for real. Byte 0 picks the tenant (acme or
// globex) and whether the key may use the base model; the rest is the body.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../serve/ftjob_int.h"
#include "../../serve/ftjob_state.h"
#include "util.h"

static ftjob_store st;
static char root[64];

static void cleanup(void) {
    files_free(st.files);
    char cmd[96];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0) fprintf(stderr, "fuzz_ftjobs: could not remove %s\n", root);
}

static void put(const char *path, const char *text) {
    err_t e = {{0}};
    if (util_write_file_atomic(path, text, strlen(text), &e) != 0) {
        fprintf(stderr, "fuzz_ftjobs: %s\n", e.msg);
        exit(2);
    }
}

// A file record as files.c writes it: FILE_ID.json beside FILE_ID.data.
static void record(const char *dir, const char *id, const char *purpose) {
    static const char data[] = "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}]}\n";
    char path[256], meta[512];
    snprintf(path, sizeof path, "%s/%s.data", dir, id);
    put(path, data);
    snprintf(meta, sizeof meta,
             "{\"id\":\"%s\",\"tenant\":\"acme\",\"filename\":\"d.jsonl\",\"purpose\":\"%s\",\"bytes\":%zu,"
             "\"created_at\":1700000000}",
             id, purpose, sizeof data - 1);
    snprintf(path, sizeof path, "%s/%s.json", dir, id);
    put(path, meta);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    char files[96];
    snprintf(root, sizeof root, "/tmp/tessera-fuzz-ftjobs.%d", (int)getpid());
    snprintf(files, sizeof files, "%s/files", root);
    if (mkdir(root, 0700) || mkdir(files, 0700)) {
        perror("fuzz_ftjobs: mkdir");
        exit(2);
    }
    atexit(cleanup);
    record(files, "file-000000000000000000000001", "fine-tune");
    record(files, "file-000000000000000000000002", "assistants");
    files_env env = {0};
    err_t e = {{0}};
    if (!(st.files = files_open(root, 1 << 20, &env, &e)) || files_count(st.files) != 2) {
        fprintf(stderr, "fuzz_ftjobs: files store: %s\n", e.msg[0] ? e.msg : "the two records did not load");
        exit(2);
    }
    st.base_id = "tiny";
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    // The body as the HTTP layer hands it over: NUL-terminated, the NUL not counted.
    size_t len = size - 1;
    char *body = malloc(len + 1);
    ftjob *j = calloc(1, sizeof *j);
    if (!body || !j) {
        free(body);
        free(j);
        return 0;
    }
    memcpy(body, data + 1, len);
    body[len] = 0;
    http_req q = {.method = "POST", .body = body, .body_len = len};
    api_error e;
    memset(&e, 0, sizeof e);
    const char *tenant = (data[0] & 1) ? "globex" : "acme";
    if (ftjob_parse_create(&st, &q, tenant, (data[0] >> 1) & 1, j, &e) != 0) {
        if (e.status != 400 || !e.message[0]) abort();
    } else if (strcmp(j->model, "tiny") != 0 || strcmp(j->training_file, "file-000000000000000000000001") != 0) {
        abort(); // only the base model and the tenant's own fine-tune file get through
    }
    ftstate_job_free(j);
    free(body);
    return 0;
}
