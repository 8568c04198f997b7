// backend_cuda: the CUDA op table, and what every op shares: the device,
// one stream, the cuBLAS handle bound to it, the scratch buffers and the
// staging ring for small per-call host arrays.
//
// Backend memory is device memory (cudaMalloc). Ops are queued on the one
// stream and return at once; upload returns when the host buffer may be
// reused, download when the data is on the host (both synchronise the
// stream, which also makes download the point where results are ready, as
// backend.h says).
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cu_backend.h"
#include "cu_internal.h"

// The backend's process-wide state, set up once by bk_cuda (under `lock`)
// and used by the one engine thread that runs the ops afterwards.
static struct {
    pthread_mutex_t lock;
    int ready;
    int device, sm_count;
    cudaStream_t stream;
    cublasHandle_t cublas;
    void *scratch[CU_SCRATCH_N];
    size_t scratch_bytes[CU_SCRATCH_N];
    // staging ring: pinned host slots, device slots, an event per slot
    void *stage_host[CU_STAGE_RING], *stage_dev[CU_STAGE_RING];
    cudaEvent_t stage_done[CU_STAGE_RING];
    size_t stage_bytes;
    int stage_next;
    int tc_min_tokens;
    bk_ops ops;
} cu = {PTHREAD_MUTEX_INITIALIZER};

void cu_fatal(const char *file, int line, const char *what) {
    fprintf(stderr, "fatal cuda: %s:%d: %s\n", file, line, what);
    abort();
}

cudaStream_t cu_stream(void) { return cu.stream; }
cublasHandle_t cu_cublas(void) { return cu.cublas; }
int cu_sm_count(void) { return cu.sm_count; }
int cu_tc_min_tokens(void) { return cu.tc_min_tokens; }

void bk_cuda_set_tc_min_tokens(int t) { cu.tc_min_tokens = t < 1 ? 1 : t; }

void *cu_scratch(int which, size_t bytes) {
    if (which < 0 || which >= CU_SCRATCH_N) cu_fatal(__FILE__, __LINE__, "cu_scratch: no such buffer");
    if (bytes <= cu.scratch_bytes[which]) return cu.scratch[which];
    // cudaFree waits for the device, so kernels still reading the old
    // buffer finish first.
    if (cu.scratch[which]) CU_CHECK(cudaFree(cu.scratch[which]));
    cu.scratch[which] = NULL;
    cu.scratch_bytes[which] = 0;
    size_t n = bytes + bytes / 4; // some headroom: fewer regrowths as T varies
    if (cudaMalloc(&cu.scratch[which], n) != cudaSuccess) {
        (void)cudaGetLastError(); // clear the sticky-free allocation error
        cu.scratch[which] = NULL;
        return NULL;
    }
    cu.scratch_bytes[which] = n;
    return cu.scratch[which];
}

// Grows every ring slot to hold `bytes` (rare: segment lists are small).
static int stage_grow(size_t bytes) {
    CU_CHECK(cudaStreamSynchronize(cu.stream));
    size_t n = bytes < 4096 ? 4096 : bytes * 2;
    for (int i = 0; i < CU_STAGE_RING; i++) {
        if (cu.stage_host[i]) CU_CHECK(cudaFreeHost(cu.stage_host[i]));
        if (cu.stage_dev[i]) CU_CHECK(cudaFree(cu.stage_dev[i]));
        cu.stage_host[i] = cu.stage_dev[i] = NULL;
    }
    cu.stage_bytes = 0;
    for (int i = 0; i < CU_STAGE_RING; i++)
        if (cudaMallocHost(&cu.stage_host[i], n) != cudaSuccess || cudaMalloc(&cu.stage_dev[i], n) != cudaSuccess) {
            (void)cudaGetLastError();
            return -1;
        }
    cu.stage_bytes = n;
    return 0;
}

const void *cu_stage(const void *host, size_t bytes) {
    if (bytes > cu.stage_bytes && stage_grow(bytes) < 0) return NULL;
    int i = cu.stage_next;
    cu.stage_next = (i + 1) % CU_STAGE_RING;
    // The slot's previous copy must have left the pinned buffer before it is
    // overwritten (almost always long done: CU_STAGE_RING calls ago).
    CU_CHECK(cudaEventSynchronize(cu.stage_done[i]));
    memcpy(cu.stage_host[i], host, bytes);
    CU_CHECK(cudaMemcpyAsync(cu.stage_dev[i], cu.stage_host[i], bytes, cudaMemcpyHostToDevice, cu.stream));
    CU_CHECK(cudaEventRecord(cu.stage_done[i], cu.stream));
    return cu.stage_dev[i];
}

// ---- memory ----------------------------------------------------------------------

static void *cuda_alloc(size_t bytes, err_t *err) {
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        size_t free_b = 0, total_b = 0;
        cudaMemGetInfo(&free_b, &total_b);
        err_set(err, "cuda backend: cannot allocate %zu bytes of device memory (%s; %.2f of %.2f GiB free)", bytes,
                cudaGetErrorString(e), (double)free_b / (1 << 30), (double)total_b / (1 << 30));
        return NULL;
    }
    return p;
}

static void cuda_free(void *p) {
    if (p) CU_CHECK(cudaFree(p));
}

static void cuda_upload(void *dst, const void *host_src, size_t bytes) {
    if (!bytes) return;
    CU_CHECK(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, cu.stream));
    CU_CHECK(cudaStreamSynchronize(cu.stream));
}

static void cuda_download(void *host_dst, const void *src, size_t bytes) {
    if (bytes) CU_CHECK(cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, cu.stream));
    CU_CHECK(cudaStreamSynchronize(cu.stream));
}

// ---- set-up ------------------------------------------------------------------------

// A kernel that does nothing: launching it proves the binary holds code
// this device can run (the build targets sm_90 only).
__global__ void cu_probe_kernel(int *p) {
    if (p) *p = 1;
}

static int setup(err_t *err) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        (void)cudaGetLastError();
        return err_set(err, "cuda backend: no CUDA device (%s)", e != cudaSuccess ? cudaGetErrorString(e) : "none visible");
    }
    int dev = 0;
    if ((e = cudaGetDevice(&dev)) != cudaSuccess || (e = cudaSetDevice(dev)) != cudaSuccess)
        return err_set(err, "cuda backend: cannot use device %d: %s", dev, cudaGetErrorString(e));
    cudaDeviceProp p;
    if ((e = cudaGetDeviceProperties(&p, dev)) != cudaSuccess)
        return err_set(err, "cuda backend: device %d: %s", dev, cudaGetErrorString(e));
    cu_probe_kernel<<<1, 1>>>(NULL);
    if ((e = cudaGetLastError()) != cudaSuccess || (e = cudaDeviceSynchronize()) != cudaSuccess)
        return err_set(err, "cuda backend: device %d (%s, sm_%d%d) cannot run this build's kernels (built for sm_90): %s",
                       dev, p.name, p.major, p.minor, cudaGetErrorString(e));
    if ((e = cudaStreamCreateWithFlags(&cu.stream, cudaStreamNonBlocking)) != cudaSuccess)
        return err_set(err, "cuda backend: stream: %s", cudaGetErrorString(e));
    cublasStatus_t s = cublasCreate(&cu.cublas);
    if (s != CUBLAS_STATUS_SUCCESS) return err_set(err, "cuda backend: cublasCreate failed (status %d)", (int)s);
    if ((s = cublasSetStream(cu.cublas, cu.stream)) != CUBLAS_STATUS_SUCCESS)
        return err_set(err, "cuda backend: cublasSetStream failed (status %d)", (int)s);
    // No TF32 for f32 GEMMs: the f32 path stays f32 (matmul.cu).
    if ((s = cublasSetMathMode(cu.cublas, CUBLAS_DEFAULT_MATH)) != CUBLAS_STATUS_SUCCESS)
        return err_set(err, "cuda backend: cublasSetMathMode failed (status %d)", (int)s);
    for (int i = 0; i < CU_STAGE_RING; i++)
        if ((e = cudaEventCreateWithFlags(&cu.stage_done[i], cudaEventDisableTiming)) != cudaSuccess)
            return err_set(err, "cuda backend: event: %s", cudaGetErrorString(e));
    if (stage_grow(4096) < 0) return err_set(err, "cuda backend: out of memory for the staging buffers");
    cu.device = dev;
    cu.sm_count = p.multiProcessorCount;
    const char *env = getenv("TESSERA_CUDA_TC_MIN_T");
    cu.tc_min_tokens = env && *env ? atoi(env) : CU_TC_MIN_TOKENS;
    if (cu.tc_min_tokens < 1) cu.tc_min_tokens = 1;
    return 0;
}

static void fill_ops(bk_ops *o) {
    memset(o, 0, sizeof *o);
    o->name = "cuda";
    o->host_memory = 0;
    o->alloc = cuda_alloc;
    o->free = cuda_free;
    o->upload = cuda_upload;
    o->download = cuda_download;
    o->embed = cu_embed;
    o->rmsnorm = cu_rmsnorm;
    o->matmul = cu_matmul;
    o->lora = cu_lora;
    o->rope = cu_rope;
    o->kv_store = cu_kv_store;
    o->attention = cu_attention;
    o->swiglu = cu_swiglu;
    o->residual = cu_residual;
    o->gather_rows = cu_gather_rows;
    o->sample = cu_sample;
    cu_train_fill(o);
}

extern "C" const bk_ops *bk_cuda(err_t *err) {
    pthread_mutex_lock(&cu.lock);
    if (!cu.ready) {
        if (setup(err) == 0) {
            fill_ops(&cu.ops);
            cu.ready = 1;
        }
    }
    pthread_mutex_unlock(&cu.lock);
    return cu.ready ? &cu.ops : NULL;
}

extern "C" int bk_cuda_sync(err_t *err) {
    if (!cu.ready) return err_set(err, "cuda backend: not set up (bk_cuda)");
    cudaError_t e = cudaStreamSynchronize(cu.stream);
    if (e == cudaSuccess) e = cudaGetLastError();
    if (e != cudaSuccess) return err_set(err, "cuda backend: %s", cudaGetErrorString(e));
    return 0;
}
