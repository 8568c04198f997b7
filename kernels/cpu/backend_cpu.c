// backend_cpu: the CPU op table. Backend memory is host memory, 64-byte
// aligned so vector loads never straddle more lines than they must.
#include <stdlib.h>

#include "cpu_backward.h"
#include "cpu_ops.h"
#include "pool.h"

static void *cpu_alloc(size_t bytes, err_t *err) {
    size_t n = (bytes + 63) / 64 * 64;
    void *p = aligned_alloc(64, n ? n : 64);
    if (!p) err_set(err, "cpu backend: out of memory allocating %zu bytes", bytes);
    return p;
}

static void cpu_free(void *p) { free(p); }

static void cpu_copy(void *dst, const void *src, size_t bytes) {
    if (bytes) memcpy(dst, src, bytes);
}

static const bk_ops cpu_ops = {
    .name = "cpu",
    .host_memory = 1,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload = cpu_copy,
    .download = cpu_copy,
    .embed = cpu_embed,
    .rmsnorm = cpu_rmsnorm,
    .matmul = cpu_matmul,
    .lora = cpu_lora,
    .rope = cpu_rope,
    .kv_store = cpu_kv_store,
    .attention = cpu_attention,
    .swiglu = cpu_swiglu,
    .residual = cpu_residual,
    .gather_rows = cpu_gather_rows,
    .attention_train = cpu_attention_train,
    .attention_backward = cpu_attention_backward,
    .lora_train = cpu_lora_train,
    .lora_backward = cpu_lora_backward,
    .matmul_backward = cpu_matmul_backward,
    .rmsnorm_backward = cpu_rmsnorm_backward,
    .rope_backward = cpu_rope_backward,
    .swiglu_backward = cpu_swiglu_backward,
    .cross_entropy = cpu_cross_entropy,
    .adamw = cpu_adamw,
    .sumsq = cpu_sumsq,
    .sample = cpu_sample,
};

const bk_ops *bk_cpu(void) { return &cpu_ops; }

void bk_cpu_set_threads(int n) { cpu_pool_set_threads(n); }

int bk_cpu_threads(void) { return cpu_pool_threads(); }

void bk_cpu_shutdown(void) {
    cpu_pool_shutdown();
    cpu_q8_shutdown();
}

static const char *simd_name(int level) {
    return level == CPU_SIMD_AVX512VL ? "avx512vl" : level == CPU_SIMD_AVX2 ? "avx2+fma" : "portable";
}

const char *bk_cpu_set_simd(int level) { return simd_name(cpu_simd_set(level)); }

const char *bk_cpu_simd(void) { return simd_name(cpu_simd()); }

const char *bk_cpu_set_matmul(int mode) { return cpu_matmul_mode_set(mode) == CPU_MATMUL_Q8 ? "q8" : "exact"; }

const char *bk_cpu_matmul(void) { return cpu_matmul_mode() == CPU_MATMUL_Q8 ? "q8" : "exact"; }
