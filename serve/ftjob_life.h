// ftjob_life: a fine-tuning job's life (ftjobs.h tells it): validation
// (train --dry-run), the queue, training, publishing, cancel; and the
// store's open (load, settle what a dead server left), stop and free.
// Private to serve's ftjob*.c; loop thread only.
#ifndef TESSERA_FTJOB_LIFE_H
#define TESSERA_FTJOB_LIFE_H

#include "ftjob_int.h"

// Starts what can start: one validation at a time, trainings up to
// cfg.workers, in creation order. Nothing once the store is stopping.
void ftlife_pump(ftjob_store *st);

// Cancels j: at once when validating or queued; a running train is killed
// and its work folder goes when it has exited. Returns 0, or -1 when j has
// already finished.
int ftlife_cancel(ftjob *j);

#endif
