/* Private: the handle's insides and the pieces every GPU entry point shares. */
#ifndef CLOSS_HOST_GPU_H
#define CLOSS_HOST_GPU_H

#include <stddef.h>
#include <stdint.h>

#include "closs.h"

#define CLOSS_GPU_FLOAT_DTYPES                                                                     \
    (CLOSS_DTYPE_BIT(CLOSS_F32) | CLOSS_DTYPE_BIT(CLOSS_F16) | CLOSS_DTYPE_BIT(CLOSS_BF16))

struct closs_handle_st {
    int device;
    int multiprocessors;
    unsigned long long *check_flags; /* device: 2 values for check mode */
    void *cublas;                    /* cublasHandle_t: the chunked path's, NULL until used */
    void *workspace;                 /* device: grown on demand for callers that pass none */
    size_t workspace_bytes;
};

/* Workspace sizes are rounded up to this, which keeps every piece of them aligned. */
#define CLOSS_WORKSPACE_ALIGNMENT 256

/* The handle is not NULL (checked after the arguments, so that argument errors are reported the
 * same way with or without a device). */
closs_status_t closs_check_handle(closs_handle_t handle);

/* The handle's cuBLAS context, created on first use (NT-Xent and SupCon's chunked path); a
 * failure to create it is CUBLAS_ERROR, and the next call tries again. */
closs_status_t closs_handle_cublas(closs_handle_t handle, void **cublas);

/* Picks the workspace of a call: the caller's (at least `needed` bytes), or with NULL and 0 the
 * handle's own, grown to `needed` if smaller. */
closs_status_t closs_resolve_workspace(closs_handle_t handle, void *workspace,
                                       size_t workspace_bytes, size_t needed, void **out);

/* The arguments of a workspace query: sizes a call could have (rows >= min_rows, dim >= 1, a GPU
 * float dtype). */
closs_status_t closs_check_gpu_sizes(int64_t rows, int64_t dim, closs_dtype_t dtype,
                                     int64_t min_rows);

/* Check mode: runs the check kernel over `scan` (a closs_rowwise_launch describing the inputs) on
 * `stream` (a cudaStream_t), waits, and reads back the first row with a non-finite input
 * (bad_rows[0]) and the first pair label outside [0, 1] (bad_rows[1]), UINT64_MAX for none. */
struct closs_rowwise_launch;
closs_status_t closs_run_check(closs_handle_t handle, const struct closs_rowwise_launch *scan,
                               void *stream, unsigned long long bad_rows[2]);

/* Turns a CUDA runtime error code into CLOSS_STATUS_CUDA_ERROR with its text; success stays. */
closs_status_t closs_cuda_status(int cuda_error, const char *what);

#endif
