#include "cu_device.h"

#include <cuda_runtime.h>
#include <stdio.h>

extern "C" int cu_device_describe(char *buf, size_t len) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        snprintf(buf, len, "no CUDA device: %s", e != cudaSuccess ? cudaGetErrorString(e) : "none visible");
        return 0;
    }
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < n && used < len; i++) {
        cudaDeviceProp p;
        if (cudaGetDeviceProperties(&p, i) != cudaSuccess) continue;
        int w = snprintf(buf + used, len - used, "%s%d: %s, sm_%d%d, %.1f GiB, %d SMs", i ? "\n" : "", i, p.name,
                         p.major, p.minor, (double)p.totalGlobalMem / (1 << 30), p.multiProcessorCount);
        if (w < 0) break;
        used += (size_t)w;
    }
    return n;
}
