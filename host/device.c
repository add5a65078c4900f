/* Device discovery. Built without CUDA, the answers say so without being errors. */
#include "closs.h"
#include "error.h"

#ifdef CLOSS_WITH_CUDA
#    include <cuda_runtime_api.h>
#endif

int closs_cuda_available(void) {
#ifdef CLOSS_WITH_CUDA
    return 1;
#else
    return 0;
#endif
}

closs_status_t closs_cuda_device_count(int *count) {
    closs_clear_error();
    if (!count) return closs_fail(CLOSS_STATUS_INVALID_ARGUMENT, "count is NULL");
#ifdef CLOSS_WITH_CUDA
    int n = 0;
    /* No driver or no device is an answer (zero devices), not a failure. */
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError(); /* clear the sticky-free error so later calls start clean */
        n = 0;
    }
    *count = n;
#else
    *count = 0;
#endif
    return CLOSS_STATUS_SUCCESS;
}
