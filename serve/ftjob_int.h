// ftjob_int: the types the fine-tuning modules share (private to serve's
// ftjob*.c). ftjobs.h is the public side and says what the jobs do.
//
//   ftjobs.c       the routes: parse a create, list, get, events,
//                  checkpoints, cancel
//   ftjob_state.c  a job's JSON (API object and state file), its events,
//                  the job list, the state file written off the loop
//   ftjob_run.c    a train child process: spawn, pipes, metrics file, kill
//   ftjob_life.c   a job's life: validate, queue, train, publish, cancel;
//                  open (load, settle), stop
//
// Everything here is touched on the loop thread only.
#ifndef TESSERA_FTJOB_INT_H
#define TESSERA_FTJOB_INT_H

#include <stdint.h>

#include <cjson/cJSON.h>

#include "ftjobs.h"
#include "statefile.h"
#include "store.h"

enum { ST_VALIDATING, ST_QUEUED, ST_RUNNING, ST_SUCCEEDED, ST_FAILED, ST_CANCELLED, ST_COUNT };
extern const char *const ftjob_status_names[ST_COUNT]; // "validating_files", ...

typedef struct ftrun ftrun; // a train child (ftjob_run.h)
typedef struct ftjob ftjob;

struct ftjob {
    ftjob_store *st;
    char id[40];
    char tenant[64];
    char model[256];
    char training_file[64], validation_file[64]; // "" = none
    char suffix[48];
    int has_suffix;
    int64_t seed;
    int64_t created_at, finished_at;             // finished_at 0 = null
    int64_t created_us;                          // creation order (files_now_us)
    int status;
    char name[512];                              // ft:... (the adapter folder and model id)
    int has_model;                               // fine_tuned_model set (succeeded)
    char err_code[48], err_param[32];
    char *err_msg;                               // NULL = no error
    int req_epochs, req_batch;                   // < 0: "auto"
    double req_lr;
    int resolved, n_epochs, batch_size;          // after validation
    double lr_mult;
    int64_t n_train, tokens, trained_tokens;
    int64_t step, total_steps;
    double last_loss;
    long pid;                                    // the train child's, while running
    cJSON *metadata;                             // object or NULL
    cJSON *events;                               // array, oldest first
    char *work_dir;
    statefile *state;                            // DATA_DIR/jobs/JOBID.json
    ftrun *child;
    int publishing;                              // adapter moved, waiting for the registry
    int64_t persisted_us, persisted_step;        // when the state was last put, at what step
};

struct ftjob_store {
    ftjob_config cfg;
    char *data_dir, *adapters_dir, *model_dir, *base_id, *train_bin, *jobs_dir;
    ftjob_host host;
    files_store *files;
    store jobs;     // ftjob, in creation order
    int validating; // a validation child is running
    int opening;    // in ftjob_open (the loop is not running): state writes are synchronous
    int stopping;
};

// POST /v1/fine_tuning/jobs's body (q->body, NUL-terminated) into j's
// request fields (model, files, suffix, seed, metadata, hyperparameters),
// for a key of tenant that may (base_allowed) use the base model. Returns 0,
// or -1 + e (400, param named). j->metadata is j's on both paths. In ftjobs.c;
// not static for tests/fuzz/fuzz_ftjobs.c.
int ftjob_parse_create(ftjob_store *st, const http_req *q, const char *tenant, int base_allowed, ftjob *j,
                       api_error *e);

#endif
