/* Version and status strings. */
#include "closs.h"

int closs_version(void) { return CLOSS_VERSION; }

const char *closs_version_string(void) { return CLOSS_VERSION_STRING; }

const char *closs_status_string(closs_status_t status) {
    switch (status) {
    case CLOSS_STATUS_SUCCESS: return "success";
    case CLOSS_STATUS_INVALID_ARGUMENT:
        return "invalid argument: closs_last_error() names the argument and the accepted range";
    case CLOSS_STATUS_NOT_SUPPORTED:
        return "not supported: this build or this device lacks the requested feature";
    case CLOSS_STATUS_NO_DEVICE:
        return "no CUDA device: check the driver and CUDA_VISIBLE_DEVICES, or use the CPU "
               "reference";
    case CLOSS_STATUS_WORKSPACE_TOO_SMALL:
        return "workspace too small: ask the *_workspace_size function for the size to pass";
    case CLOSS_STATUS_ALLOC_FAILED: return "allocation failed: not enough host or device memory";
    case CLOSS_STATUS_CUDA_ERROR: return "CUDA error: closs_last_error() has the runtime's message";
    case CLOSS_STATUS_CUBLAS_ERROR:
        return "cuBLAS error: closs_last_error() has the library's status";
    case CLOSS_STATUS_NONFINITE_INPUT:
        return "non-finite input: an input holds NaN or Inf (check mode)";
    case CLOSS_STATUS_COUNT: break;
    }
    return "unknown status";
}
