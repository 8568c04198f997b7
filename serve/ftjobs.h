// ftjobs: OpenAI's fine-tuning jobs API, run by the train program as a
// child process; the result is served by this same server.
//
//   POST /v1/fine_tuning/jobs                  create: training_file,
//        validation_file, model (the served base's id), suffix, seed,
//        hyperparameters or method.supervised.hyperparameters {n_epochs,
//        batch_size, learning_rate_multiplier: number or "auto"}, metadata
//   GET  /v1/fine_tuning/jobs                  the tenant's jobs, newest
//        first; after (a job id), limit (1..100, default 20); has_more
//   GET  /v1/fine_tuning/jobs/{id}             the job
//   POST /v1/fine_tuning/jobs/{id}/cancel      cancel (400 once finished)
//   GET  /v1/fine_tuning/jobs/{id}/events      newest first; after, limit
//   GET  /v1/fine_tuning/jobs/{id}/checkpoints the final checkpoint of a
//        succeeded job (intermediate ones are not kept)
//
// A job's life: validating_files -> queued -> running -> succeeded, or
// failed / cancelled.
//   - validating_files: `train --dry-run` reads the files with train's own
//     reader (train/data.c) and lists every bad line; any bad line fails
//     the job with error.code invalid_training_file (or
//     invalid_validation_file) and a message naming the line numbers and
//     reasons. "auto" hyperparameters are resolved here from the number of
//     examples (ftjob_resolve_auto).
//   - queued: waits for a free worker (config.workers trainings at once);
//     jobs start in creation order.
//   - running: `train --strict` writes into DATA_DIR/jobs/JOBID.work/ (so
//     nothing partial ever lands in the adapters folder); each line of the
//     metrics file train writes there (logged steps: loss; evaluations of
//     the validation file, one per epoch: eval loss) becomes a "metrics"
//     event, read every 200 ms (train's stdout, a pipe, is block-buffered,
//     so its log lines would come late). At most about 100 steps are
//     logged per job (--logging-steps total/100). When train
//     exits 0 the adapter folder is moved into the adapters folder as
//     ft:BASE:TENANT:SUFFIX:JOBID (one rename; across file systems a copy
//     into a dot-named temp folder, then a rename), a registry rescan is run
//     and waited for, and only when the registry offers the adapter is the
//     job marked succeeded: fine_tuned_model is servable the moment a
//     client reads "succeeded".
//   - cancel: a validating or queued job is cancelled at once; a running
//     one has its train process killed (SIGKILL) and its work folder
//     removed; an adapter published in the moment between train's exit and
//     "succeeded" is renamed aside and removed. No partial folder remains.
//
// Model names: ft:BASE:TENANT:SUFFIX:JOBID, where BASE and TENANT keep
// [A-Za-z0-9._-] and every other byte becomes '-' (folder names cannot
// hold '/'), SUFFIX is empty when not given ("ft:base:acme::ftjob-..."), as
// OpenAI writes it. The name is the adapter folder's name, hence the model
// id (registry.h).
//
// Tenants: files, jobs and fine-tuned models belong to the tenant that
// created them (tenants.h: the tenant's name; keys of one tenant share
// them). Any other tenant gets 404, as for ids that do not exist. Adapter
// names starting with "ft:" are reserved: such a model is visible and
// usable only by the tenant of the succeeded job that made it, whatever the
// tenants' globs say (an "adapters": ["*"] glob or an admin key does not
// reach another tenant's fine-tuned model), and nobody can use an "ft:"
// folder that no job of this server made (ftjob_model_owner).
//
// Persistence: DATA_DIR/jobs/JOBID.json holds the job object, its events
// and the runner's own fields; it is rewritten whole at every change
// (training progress: at most every 2 s). The JSON is made on the loop
// thread; the file is written (util_write_file_atomic: temp file, fsync,
// rename) on the libuv thread pool, one write per job at a time, the
// newest state winning over any that waited (statefile.h); a failed
// write is logged and the next change writes again. On open:
//   - a job that was running is marked failed, error.code
//     "server_restarted", with the step it had reached; its work folder is
//     removed, and its train process, if it outlived a killed server (its
//     pid is in the state, checked against /proc/PID/cmdline), is killed.
//     (Until the server is restarted such an orphan trains on into its work
//     folder, which nothing reads; it never publishes.)
//     We do not resume from a checkpoint: train checkpoints only with
//     --save-steps, and a fresh job is the clear, predictable answer.
//   - validating_files and queued jobs carry on;
//   - leftovers (temp files, work folders, dot-named ft: temp folders in
//     the adapters folder) are removed.
// On SIGTERM (ftjob_stop) a running train is killed and its job marked
// failed, error.code "server_shutdown"; a validation in progress is killed
// and runs again at the next start; queued jobs stay queued. Every state
// is on disk when the loop has drained.
#ifndef TESSERA_FTJOBS_H
#define TESSERA_FTJOBS_H

#include <stddef.h>
#include <stdint.h>

#include "files.h"

typedef struct ftjob_config {
    const char *data_dir;      // jobs live in DATA_DIR/jobs
    const char *adapters_dir;  // where finished adapters are published
    const char *model_dir;     // the base model, given to train --model
    const char *base_id;       // the base model's id (a job's "model")
    const char *train_bin;     // the train program
    int workers;               // trainings at once, >= 1
    double base_lr;            // learning rate at learning_rate_multiplier 1; 0 = 2e-4
} ftjob_config;

// What the jobs need from the server beyond files_env (server.c fills it).
typedef struct ftjob_host {
    files_env env;
    // Scans the adapters folder now; done(arg) runs on the loop thread once
    // a scan that started after this call has finished.
    void (*rescan)(void *ud, void (*done)(void *arg), void *arg);
    // 1 if the registry's current snapshot offers adapter name; else 0 and
    // the registry's reason (or "not found") in why.
    int (*adapter_ready)(void *ud, const char *name, char *why, size_t n);
} ftjob_host;

typedef struct ftjob_store ftjob_store;

// Opens (creating) DATA_DIR/jobs, loads the jobs, settles the ones a dead
// server left running (see above) and starts any waiting work. files is
// borrowed (it must outlive the store). Returns a new store or NULL + err.
ftjob_store *ftjob_open(const ftjob_config *cfg, const ftjob_host *host, files_store *files, err_t *err);

// Handles a request whose path starts with /v1/fine_tuning/. base_allowed:
// the tenant may use the base model (else creating a job is a 404 on it).
void ftjob_handle(ftjob_store *st, const http_req *q, http_res *res, const char *tenant, int base_allowed);

// 1 if name is in the reserved fine-tuned namespace ("ft:...").
int ftjob_is_ft_name(const char *name);

// The tenant whose succeeded job made the model name, or NULL. Borrowed.
const char *ftjob_model_owner(const ftjob_store *st, const char *name);

// Resolves "auto" (given as < 0) hyperparameters for n_train examples:
// n_epochs 3, or more for small files (about 300 examples seen in all, at
// most 25); batch_size n_train/100 within [1, 8]; multiplier 1.
void ftjob_resolve_auto(int n_train, int *n_epochs, int *batch_size, double *lr_mult);

// Shutdown (on the loop thread): kills running children and closes their
// handles; their jobs are recorded as the exits come in. The loop then
// drains (the state writes too); ftjob_free after that.
void ftjob_stop(ftjob_store *st);
void ftjob_free(ftjob_store *st);

#endif
