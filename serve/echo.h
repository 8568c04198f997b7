// echo: a test engine that "generates" each request's prompt tokens back,
// one per delay_ms, from a thread of its own (finish "length" when
// max_tokens is smaller than the prompt, else "stop"): the srv_engine
// contract (server.h) without a model, used by tests of streaming,
// cancellation and shutdown (`serve --echo-engine MS`). Not a model.
#ifndef TESSERA_ECHO_H
#define TESSERA_ECHO_H

#include "err.h"
#include "server.h"

typedef struct echo echo;

// Starts the engine and plugs it into s (srv_set_engine). Borrows s, which
// must outlive it: free the engine after srv_run has returned. NULL + err
// when its thread or async handle cannot be made.
echo *echo_new(srv *s, int delay_ms, err_t *err);
void echo_free(echo *e);

#endif
