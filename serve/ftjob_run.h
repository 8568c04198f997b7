// ftjob_run: a train child process of a fine-tuning job (ftjob_int.h):
// `train --dry-run` (validation) or `train` (training). Private to serve's
// ftjob*.c; loop thread only.
//
// Its stdout and stderr come through two pipes, split into lines: stderr
// lines are logged and their tail kept (ftrun_error_line); a validation's
// stdout is kept whole (the dry run's report); a training's stdout lines
// are logged, but for its progress lines: progress comes from the metrics
// file train writes beside its output (WORK_DIR/adapter.metrics.jsonl,
// flushed at every logged step and evaluation), read from where it was
// left every FT_TAIL_MS, each whole line handed to spec.on_metrics (train's
// stdout is a pipe, so its log lines arrive in 4 KiB blocks, not as they
// are written).
//
// The child is done when the process has exited and both pipes are closed
// (so every line has been read before the exit is judged): then job->child
// is cleared, spec.on_done(job, run) runs, and the run is freed.
#ifndef TESSERA_FTJOB_RUN_H
#define TESSERA_FTJOB_RUN_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "ftjob_int.h"
#include "util.h"

#define FT_TAIL_MS 200 // how often a training's metrics file is read

typedef struct ftrun_spec {
    int training;                                   // 0: validation (--dry-run)
    char **argv;                                    // argv[0] is the program; NULL-terminated; read by spawn only
    void (*on_metrics)(ftjob *j, const char *line); // training: a line of the metrics file
    void (*on_done)(ftjob *j, ftrun *run);          // the child is done (see above)
} ftrun_spec;

struct ftrun {
    ftjob *job;
    ftrun_spec spec;
    uv_process_t proc;
    uv_pipe_t out, err;
    int open;              // handles not closed yet
    int killed;            // we sent SIGKILL (cancel, shutdown)
    util_buf part_out, part_err; // a line not finished yet
    uv_timer_t tick;       // training: reads the metrics file
    char *metrics_path;
    int64_t metrics_off;   // bytes of it consumed
    util_buf metrics_part; // a line not finished yet
    // What on_done reads:
    int64_t exit_status;
    int term_signal;
    util_buf report;       // validation: stdout
    util_buf errtail;      // stderr (the last FT_ERRTAIL_MAX bytes)
};

// Starts spec->argv for j (j->child is set). Returns the run, or NULL +
// why (nothing is left running; on_done is not called).
ftrun *ftrun_spawn(ftjob *j, const ftrun_spec *spec, char *why, size_t n);

// Sends SIGKILL (once); the run is done when the exit and pipes are in.
void ftrun_kill(ftrun *r);

// Shutdown: SIGKILL and stop listening, pipes and timer closed now (a
// grandchild may hold the pipes open); the exit arrives as the loop drains.
void ftrun_stop(ftrun *r);

// Reads what train has appended to its metrics file since the last read
// (the done callback calls it once more for the last lines).
void ftrun_tail_metrics(ftrun *r);

// The last line of stderr that says "train: ...", else its last line.
void ftrun_error_line(const ftrun *r, char *out, size_t n);

#endif
