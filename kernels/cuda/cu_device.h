// cu_device: what CUDA devices this process can see. Built only when
// CUDA is on (TESSERA_CUDA); plain C interface so C code can call it.
#ifndef TESSERA_CU_DEVICE_H
#define TESSERA_CU_DEVICE_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

// Writes one line per visible device ("0: NVIDIA H100 80GB HBM3, sm_90,
// 79.1 GiB, 132 SMs") into buf, or the CUDA runtime's reason there is none.
// Returns the number of devices (0 when none or on error).
int cu_device_describe(char *buf, size_t len);

#ifdef __cplusplus
}
#endif

#endif
