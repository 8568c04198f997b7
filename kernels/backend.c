// backend: bk_open, the one place that turns a device name into a backend.
// The CUDA backend is named only when the build has it (TESSERA_CUDA), so
// this file links where the CUDA objects do (Makefile DEV_OBJ).
#include "backend.h"

#include <string.h>

#ifdef TESSERA_CUDA
#include "cuda/cu_backend.h"
#endif

int bk_has_cuda(void) {
#ifdef TESSERA_CUDA
    return 1;
#else
    return 0;
#endif
}

static const bk_ops *open_cuda(err_t *err) {
#ifdef TESSERA_CUDA
    const bk_ops *bk = bk_cuda(err);
    if (!bk) err_wrap(err, "device cuda");
    return bk;
#else
    err_set(err, "device cuda: this build has no CUDA backend (nvcc was not found, or CUDA=0; rebuild with "
                 "make CUDA=1 on a machine with the CUDA toolkit)");
    return NULL;
#endif
}

const bk_ops *bk_open(const char *device, const bk_open_opts *o, err_t *err) {
    if (o && o->threads > 0) bk_cpu_set_threads(o->threads);
    if (!device || strcmp(device, "cpu") == 0) return bk_cpu();
    if (strcmp(device, "cuda") == 0) return open_cuda(err);
    err_set(err, "device %s: expected cpu or cuda", device);
    return NULL;
}
