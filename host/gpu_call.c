/* What every GPU entry point does around its launches, so that a caller following closs.h cannot
 * get a wrong answer or lose the CUDA context through the call's surroundings:
 *   - on entry (closs_begin_call): a CUDA error already pending is the caller's, reported as such
 *     and not cleared; a handle bound to another device than the current one is refused (its
 *     kernels would run on the wrong GPU, with that device's cuBLAS context); while the stream is
 *     capturing a CUDA graph, so is what a graph cannot hold (the handle's own workspace, check
 *     mode's wait; the cuBLAS context's creation is refused by closs_handle_cublas);
 *   - the workspace (closs_resolve_workspace): a caller's buffer of any alignment is aligned up
 *     inside the slack the size query included; the handle's own buffer is shared by every call
 *     that passes none, on any stream, so each such call waits for the previous one (an event);
 *   - on exit (closs_end_call): that event is recorded after the call's work.
 * Launch errors are read after each launch by the launchers (cuda/), before a cuBLAS or CUB call
 * could clear them. */
#include <stdint.h>

#include "error.h"
#include "gpu.h"

#ifdef CLOSS_WITH_CUDA
#    include <cuda_runtime_api.h>
#endif

size_t closs_workspace_query(size_t layout_bytes) {
    return layout_bytes + CLOSS_WORKSPACE_ALIGNMENT;
}

closs_status_t closs_align_workspace(void *workspace, size_t workspace_bytes, size_t layout_bytes,
                                     void **out) {
    const size_t needed = closs_workspace_query(layout_bytes);
    if (workspace_bytes < needed)
        return closs_fail(CLOSS_STATUS_WORKSPACE_TOO_SMALL,
                          "workspace_bytes = %zu: this call needs %zu (ask the *_workspace_size "
                          "function)",
                          workspace_bytes, needed);
    const uintptr_t address = (uintptr_t)workspace;
    const uintptr_t padding = (CLOSS_WORKSPACE_ALIGNMENT - address % CLOSS_WORKSPACE_ALIGNMENT) %
                              CLOSS_WORKSPACE_ALIGNMENT;
    *out = (char *)workspace + padding;
    return CLOSS_STATUS_SUCCESS;
}

#ifdef CLOSS_WITH_CUDA

closs_status_t closs_begin_call(closs_handle_t handle, closs_stream_t stream, const void *workspace,
                                int check_inputs) {
    CLOSS_TRY(closs_check_handle(handle));
    /* Peek, not get: the error belongs to the caller's earlier work, and is left for them. */
    const cudaError_t pending = cudaPeekAtLastError();
    if (pending != cudaSuccess)
        return closs_fail(CLOSS_STATUS_CUDA_ERROR,
                          "a CUDA error was pending before this call: %s (%s); it comes from "
                          "earlier work of the caller, and closs left it in place "
                          "(cudaGetLastError() reads and clears it)",
                          cudaGetErrorString(pending), cudaGetErrorName(pending));
    int current = -1;
    CLOSS_TRY(closs_cuda_status(cudaGetDevice(&current), "cudaGetDevice"));
    if (current != handle->device)
        return closs_fail(CLOSS_STATUS_INVALID_ARGUMENT,
                          "handle: bound to CUDA device %d, but device %d is current on this "
                          "thread; call cudaSetDevice(%d) first, or use a handle created on "
                          "device %d",
                          handle->device, current, handle->device, current);
    /* One capture query for both steps; the first that applies is named. */
    if (!workspace)
        return closs_refuse_in_capture(stream, "the handle's own workspace (a later call may free "
                                               "it to grow it while the graph still uses it); "
                                               "pass a workspace");
    if (check_inputs)
        return closs_refuse_in_capture(stream, "check_inputs = 1 (it waits for the stream to read "
                                               "its findings); pass 0");
    return CLOSS_STATUS_SUCCESS;
}

closs_status_t closs_refuse_in_capture(closs_stream_t stream, const char *what) {
    enum cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    const cudaError_t error = cudaStreamIsCapturing((cudaStream_t)stream, &capture);
    if (error != cudaSuccess) {
        (void)cudaGetLastError(); /* closs's own error: nothing was pending on entry */
        return closs_cuda_status(error, "cudaStreamIsCapturing");
    }
    if (capture == cudaStreamCaptureStatusNone) return CLOSS_STATUS_SUCCESS;
    return closs_fail(CLOSS_STATUS_NOT_SUPPORTED,
                      "stream is capturing a CUDA graph, which cannot hold %s", what);
}

/* The handle's own workspace, at least `bytes`. Growing frees the old buffer (cudaFree waits for
 * the device, so no earlier call still uses it). */
static closs_status_t grow_handle_workspace(closs_handle_t handle, size_t bytes) {
    if (!handle->workspace_done) {
        cudaEvent_t event = NULL;
        if (cudaEventCreateWithFlags(&event, cudaEventDisableTiming) != cudaSuccess) {
            (void)cudaGetLastError(); /* closs's own error: nothing was pending on entry */
            return closs_fail(CLOSS_STATUS_ALLOC_FAILED, "handle workspace: cudaEventCreate");
        }
        handle->workspace_done = event;
    }
    if (handle->workspace_bytes >= bytes) return CLOSS_STATUS_SUCCESS;
    cudaFree(handle->workspace);
    handle->workspace = NULL;
    handle->workspace_bytes = 0;
    if (cudaMalloc(&handle->workspace, bytes) != cudaSuccess) {
        (void)cudaGetLastError();
        return closs_fail(CLOSS_STATUS_ALLOC_FAILED, "handle workspace: %zu bytes of device memory",
                          bytes);
    }
    handle->workspace_bytes = bytes;
    return CLOSS_STATUS_SUCCESS;
}

closs_status_t closs_resolve_workspace(closs_handle_t handle, void *workspace,
                                       size_t workspace_bytes, size_t layout_bytes,
                                       closs_stream_t stream, void **out) {
    if (workspace) return closs_align_workspace(workspace, workspace_bytes, layout_bytes, out);
    if (workspace_bytes != 0)
        return closs_fail(CLOSS_STATUS_INVALID_ARGUMENT,
                          "workspace is NULL with workspace_bytes = %zu: pass NULL and 0 to use "
                          "the handle's own",
                          workspace_bytes);
    const size_t needed = closs_workspace_query(layout_bytes);
    CLOSS_TRY(grow_handle_workspace(handle, needed));
    /* The last call that used the buffer may be on another stream: wait for it on this one. */
    CLOSS_TRY(closs_cuda_status(
        cudaStreamWaitEvent((cudaStream_t)stream, (cudaEvent_t)handle->workspace_done, 0),
        "waiting for the previous user of the handle's workspace"));
    return closs_align_workspace(handle->workspace, handle->workspace_bytes, layout_bytes, out);
}

closs_status_t closs_end_call(closs_handle_t handle, const void *workspace, closs_stream_t stream,
                              closs_status_t status) {
    if (workspace || !handle->workspace_done) return status;
    const cudaError_t recorded =
        cudaEventRecord((cudaEvent_t)handle->workspace_done, (cudaStream_t)stream);
    if (status != CLOSS_STATUS_SUCCESS) return status;
    return closs_cuda_status(recorded, "recording the end of the handle's workspace use");
}

#else /* no CUDA in this build: no handle can exist */

closs_status_t closs_begin_call(closs_handle_t handle, closs_stream_t stream, const void *workspace,
                                int check_inputs) {
    (void)handle, (void)stream, (void)workspace, (void)check_inputs;
    return closs_fail(CLOSS_STATUS_NOT_SUPPORTED, "closs was built without CUDA");
}

closs_status_t closs_resolve_workspace(closs_handle_t handle, void *workspace,
                                       size_t workspace_bytes, size_t layout_bytes,
                                       closs_stream_t stream, void **out) {
    (void)handle, (void)workspace, (void)workspace_bytes, (void)layout_bytes, (void)stream,
        (void)out;
    return closs_fail(CLOSS_STATUS_NOT_SUPPORTED, "closs was built without CUDA");
}

closs_status_t closs_end_call(closs_handle_t handle, const void *workspace, closs_stream_t stream,
                              closs_status_t status) {
    (void)handle, (void)workspace, (void)stream;
    return status;
}

#endif
