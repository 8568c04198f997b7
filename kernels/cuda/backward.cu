// backward: the training ops of the CUDA backend. Placeholder so the
// forward half links on its own: the training ops (written in parallel)
// replace this file, filling attention_train ... sumsq here.
#include "cu_internal.h"

void cu_train_fill(bk_ops *ops) { (void)ops; }
