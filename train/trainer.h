// trainer: the fine-tuning loop. Epochs over the training set in a seeded
// shuffled order, micro-batches of batch_size examples, grad_accum of them
// per optimizer step (the loss of a step is the mean over all its target
// tokens, as transformers normalises accumulated steps), clipping, AdamW
// with the lr schedule, validation, early stopping, checkpoints, and the
// PEFT adapter published whole at the end.
//
// Determinism: the run is a function of the data, the options and --seed.
// Epoch e's order is a Fisher-Yates shuffle from a generator seeded with
// (seed, e); the dropout masks of micro-batch j of step s are keyed by
// (seed, s, j); every op gives the same bits for any thread count. So the
// whole state at a step boundary is (step, parameters, AdamW moments,
// early-stopping record), which a checkpoint holds, and a resumed run
// writes the same adapter bytes as an uninterrupted one.
//
// Files, for --out DIR/NAME:
//   DIR/NAME/                         the adapter (adapter_config.json,
//                                     adapter_model.safetensors), built in a
//                                     hidden temp folder beside it and
//                                     published in one rename
//   DIR/NAME.metrics.jsonl            one JSON object per logged step and
//                                     per evaluation (appended on resume)
//   DIR/NAME.checkpoints/checkpoint-S/ every save_steps: the adapter, the
//                                     optimizer state (optimizer.safetensors)
//                                     and trainer_state.json
//   DIR/NAME.loss.png                 the loss curves (gnuplot, when installed)
// None of these is a folder with adapter_config.json at the top of DIR, so
// a server watching DIR sees only the finished adapter.
#ifndef TESSERA_TRAINER_H
#define TESSERA_TRAINER_H

#include <stdint.h>
#include <stdio.h>

#include "data.h"
#include "err.h"
#include "model.h"
#include "optim.h"

typedef struct trainer_config {
    const char *model_dir; // written as base_model_name_or_path
    const char *out;       // the adapter folder
    const char *resume;    // a checkpoint folder to continue from, or NULL
    int rank;
    double alpha;
    int rslora;
    unsigned targets;      // bit l: model_linear l
    double dropout;
    int epochs;
    double lr;
    optim_schedule schedule;
    int64_t warmup_steps;
    double weight_decay, max_grad_norm; // max_grad_norm 0: no clipping
    int batch_size, grad_accum;
    uint64_t seed;
    int eval_steps;        // 0: at the end of each epoch
    int eval_on_start;     // 1: evaluate at step 0 too (before any update: the base's loss)
    int patience;          // evaluations without improvement before stopping; 0: never.
                           // With it the adapter written is the best one (load_best_model_at_end).
    int save_steps;        // 0: no checkpoints
    int logging_steps;     // >= 1
    int recompute;         // recompute each layer's activations in backward
    int stop_after;        // > 0: stop after this many steps and write no adapter
                           // (for tests: a run killed after its checkpoint)
    int progress;          // 1: a progress bar instead of log lines
    int plot;              // 1: write the loss PNG when gnuplot is installed
    FILE *log;             // where progress and log lines go
} trainer_config;

typedef struct trainer_result {
    int64_t steps;                 // optimizer steps done (all of them, across a resume)
    int64_t total_steps;
    double first_loss, last_loss;  // training loss of the first / last step this run did
    double best_eval, last_eval;   // NAN when there was no validation
    int stopped_early;
    double seconds, tokens_per_s;  // this run's wall time and training throughput
} trainer_result;

// Optimizer steps per epoch: ceil(ceil(n_train / batch_size) / grad_accum).
int64_t trainer_steps_per_epoch(int n_train, int batch_size, int grad_accum);

// Trains a LoRA on m (loaded by the caller with the base it trains on:
// NF4 or dense) and writes the files above. val may be NULL. Returns 0, or
// -1 + err naming what failed (a checkpoint that does not match the
// options, a file that cannot be written, out of memory).
int trainer_run(model *m, const trainer_config *c, const data_set *train, const data_set *val,
                trainer_result *res, err_t *err);

#endif
