/* The handle: a device, its SM count (for grid sizes), a check-mode buffer, an optional
 * grown-on-demand workspace (host/gpu_call.c hands it out), and a cuBLAS context created on the
 * chunked path's first call (the fused and row-wise paths never pay for cuBLAS). Built without
 * CUDA, creating one reports NOT_SUPPORTED. */
#include <stdlib.h>

#include "error.h"
#include "gpu.h"
#include "validate.h"

#ifdef CLOSS_WITH_CUDA
#    include <cuda_runtime_api.h>

#    include "launch.h"
#endif

closs_status_t closs_check_gpu_sizes(int64_t rows, int64_t dim, closs_dtype_t dtype,
                                     int64_t min_rows) {
    if (rows < min_rows)
        return closs_fail(CLOSS_STATUS_INVALID_ARGUMENT, "rows = %lld: must be >= %lld",
                          (long long)rows, (long long)min_rows);
    if (dim < 1)
        return closs_fail(CLOSS_STATUS_INVALID_ARGUMENT, "dim = %lld: must be >= 1",
                          (long long)dim);
    if ((unsigned)dtype >= 32u || !(CLOSS_GPU_FLOAT_DTYPES & CLOSS_DTYPE_BIT(dtype)))
        return closs_fail(CLOSS_STATUS_INVALID_ARGUMENT, "dtype = %d: must be f32, f16 or bf16",
                          (int)dtype);
    return CLOSS_STATUS_SUCCESS;
}

closs_status_t closs_check_handle(closs_handle_t handle) {
    return handle ? CLOSS_STATUS_SUCCESS
                  : closs_fail(CLOSS_STATUS_INVALID_ARGUMENT,
                               "handle is NULL: create one with closs_create()");
}

#ifdef CLOSS_WITH_CUDA

closs_status_t closs_cuda_status(int cuda_error, const char *what) {
    if (cuda_error == cudaSuccess) return CLOSS_STATUS_SUCCESS;
    return closs_fail(CLOSS_STATUS_CUDA_ERROR, "%s: %s (%s)", what,
                      cudaGetErrorString((cudaError_t)cuda_error),
                      cudaGetErrorName((cudaError_t)cuda_error));
}

closs_status_t closs_run_check(closs_handle_t handle, const closs_rowwise_launch *scan,
                               void *stream, unsigned long long bad_rows[2]) {
    cudaStream_t cuda_stream = (cudaStream_t)stream;
    CLOSS_TRY(closs_cuda_status(closs_launch_rowwise_check(scan, handle->check_flags, cuda_stream),
                                "check-mode kernel"));
    CLOSS_TRY(closs_cuda_status(cudaMemcpyAsync(bad_rows, handle->check_flags, 2 * sizeof *bad_rows,
                                                cudaMemcpyDeviceToHost, cuda_stream),
                                "check-mode read-back"));
    return closs_cuda_status(cudaStreamSynchronize(cuda_stream), "check-mode read-back");
}

closs_status_t closs_create(closs_handle_t *handle) {
    closs_clear_error();
    CLOSS_TRY(closs_check_not_null("handle", handle));
    int device = 0, count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
        (void)cudaGetLastError();
        return closs_fail(CLOSS_STATUS_NO_DEVICE, "closs_create: no CUDA device is available");
    }
    CLOSS_TRY(closs_cuda_status(cudaGetDevice(&device), "cudaGetDevice"));
    struct closs_handle_st *h = calloc(1, sizeof *h);
    if (!h) return closs_fail(CLOSS_STATUS_ALLOC_FAILED, "closs_create: out of host memory");
    h->device = device;
    closs_status_t status = closs_cuda_status(
        cudaDeviceGetAttribute(&h->multiprocessors, cudaDevAttrMultiProcessorCount, device),
        "cudaDeviceGetAttribute");
    if (status == CLOSS_STATUS_SUCCESS &&
        cudaMalloc((void **)&h->check_flags, 2 * sizeof *h->check_flags) != cudaSuccess)
        status = closs_fail(CLOSS_STATUS_ALLOC_FAILED, "closs_create: 16 bytes of device memory");
    if (status != CLOSS_STATUS_SUCCESS) {
        cudaFree(h->check_flags);
        free(h);
        return status;
    }
    *handle = h;
    return CLOSS_STATUS_SUCCESS;
}

closs_status_t closs_destroy(closs_handle_t handle) {
    closs_clear_error();
    if (!handle) return CLOSS_STATUS_SUCCESS;
    cudaFree(handle->check_flags);
    cudaFree(handle->workspace);
    if (handle->workspace_done) cudaEventDestroy((cudaEvent_t)handle->workspace_done);
    closs_cublas_destroy(handle->cublas);
    free(handle);
    return CLOSS_STATUS_SUCCESS;
}

closs_status_t closs_handle_cublas(closs_handle_t handle, closs_stream_t stream, void **cublas) {
    if (!handle->cublas) {
        CLOSS_TRY(closs_refuse_in_capture(stream, "the creation of the handle's cuBLAS context "
                                                  "(on its first chunked call); make one chunked "
                                                  "call on this handle before capturing"));
        void *created = NULL;
        const int status = closs_cublas_create(&created);
        if (status != 0) {
            closs_cublas_destroy(created);
            return closs_fail(CLOSS_STATUS_CUBLAS_ERROR,
                              "the chunked path's cuBLAS context: cublasCreate returned status %d",
                              status);
        }
        handle->cublas = created;
    }
    *cublas = handle->cublas;
    return CLOSS_STATUS_SUCCESS;
}

#else /* no CUDA in this build */

closs_status_t closs_cuda_status(int cuda_error, const char *what) {
    (void)cuda_error;
    (void)what;
    return CLOSS_STATUS_SUCCESS;
}

closs_status_t closs_create(closs_handle_t *handle) {
    closs_clear_error();
    CLOSS_TRY(closs_check_not_null("handle", handle));
    return closs_fail(CLOSS_STATUS_NOT_SUPPORTED, "closs was built without CUDA");
}

closs_status_t closs_destroy(closs_handle_t handle) {
    closs_clear_error();
    free(handle);
    return CLOSS_STATUS_SUCCESS;
}

#endif
