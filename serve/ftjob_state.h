// ftjob_state: a fine-tuning job's record: its JSON (the API object and
// the state file DATA_DIR/jobs/JOBID.json), its events, and the store's
// job list. Private to serve's ftjob*.c (ftjob_int.h); loop thread only.
#ifndef TESSERA_FTJOB_STATE_H
#define TESSERA_FTJOB_STATE_H

#include "err.h"
#include "ftjob_int.h"

#define FT_MAX_EVENTS 1000 // kept per job (the oldest metrics go first)

// A new job id of st (status validating_files, "auto" hyperparameters,
// no events), not in the list yet. Free with ftstate_job_free. NULL when
// out of memory.
ftjob *ftstate_job_new(ftjob_store *st, const char *id);
// Frees j; a state write in flight still lands (statefile.h).
void ftstate_job_free(ftjob *j);

// Sets j's error object (code, param: NULL = null, message).
void ftstate_set_error(ftjob *j, const char *code, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

// Appends an event: a "metrics" event with data (an object, taken), or a
// "message" event when data is NULL.
void ftstate_event(ftjob *j, const char *level, cJSON *data, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

// OpenAI's fine_tuning.job object (a new cJSON tree, the caller's).
cJSON *ftstate_job_object(const ftjob *j);

// Records j's state: the JSON is made here, the file is written on the
// thread pool (statefile.h: in order, the newest wins). While the store
// opens (st->opening) it is written at once.
void ftstate_persist(ftjob *j);
// The same for training progress, at most every 2 s (and at the first step).
void ftstate_persist_progress(ftjob *j);

// The list, in creation order. insert returns 0 or -1 (out of memory).
int ftstate_insert(ftjob_store *st, ftjob *j);
static inline int ftstate_count(const ftjob_store *st) { return st->jobs.n; }
static inline ftjob *ftstate_at(const ftjob_store *st, int i) { return store_at(&st->jobs, i); }
// The job id of tenant, or NULL (absent, or another tenant's).
ftjob *ftstate_find(const ftjob_store *st, const char *id, const char *tenant);

// Loads every DATA_DIR/jobs/JOBID.json into the list (a state that cannot
// be read is logged and skipped) and removes crash leftovers (temp files,
// work folders). Returns 0, or -1 + err when the folder cannot be read.
int ftstate_load(ftjob_store *st, err_t *err);

// The string field k of object o, or NULL. Borrowed from o.
const char *ftstate_str_field(const cJSON *o, const char *k);

#endif
