// test_bk_open: bk_open (kernels/backend.c) turns a device name into a
// backend: "cpu" and NULL give the CPU table, --threads sizes its pool, an
// unknown name and (in a build without CUDA) "cuda" fail naming the device.
#include <stdio.h>
#include <string.h>

#include "backend.h"
#include "check.h"

static void cpu(void) {
    err_t e = {{0}};
    CHECK(bk_open("cpu", NULL, &e) == bk_cpu(), "%s", e.msg);
    CHECK(bk_open(NULL, NULL, &e) == bk_cpu(), "%s", e.msg);
    bk_open_opts o = {.threads = 3};
    CHECK(bk_open("cpu", &o, &e) == bk_cpu(), "%s", e.msg);
    CHECK(bk_cpu_threads() == 3, "threads %d, expected 3", bk_cpu_threads());
    o.threads = 0; // leaves the pool as it is
    CHECK(bk_open("cpu", &o, &e) == bk_cpu(), "%s", e.msg);
    CHECK(bk_cpu_threads() == 3, "threads %d, expected 3 kept", bk_cpu_threads());
}

static void unknown(void) {
    err_t e = {{0}};
    CHECK(bk_open("tpu", NULL, &e) == NULL);
    CHECK(strstr(e.msg, "device tpu") && strstr(e.msg, "expected cpu or cuda"), "message: %s", e.msg);
    e.msg[0] = '\0';
    CHECK(bk_open("CPU", NULL, &e) == NULL, "device names are exact");
    CHECK(strstr(e.msg, "device CPU"), "message: %s", e.msg);
}

// Without the CUDA backend linked in, "cuda" says so; with it, whether it
// opens depends on the machine's GPU, which this CPU test does not assume.
static void cuda(void) {
    if (bk_has_cuda()) {
        printf("cuda: built in; opening it is tests/cuda's business\n");
        return;
    }
    err_t e = {{0}};
    CHECK(bk_open("cuda", NULL, &e) == NULL);
    CHECK(strstr(e.msg, "device cuda: this build has no CUDA backend"), "message: %s", e.msg);
}

int main(void) {
    cpu();
    unknown();
    cuda();
    bk_cpu_shutdown();
    return check_finish("test_bk_open");
}
