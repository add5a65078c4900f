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
    void *workspace_done; /* cudaEvent_t recorded after each call that used `workspace` */
};

/* Workspace pieces are aligned to this (cuBLAS's workspace and CUB want 256 bytes). A caller's
 * workspace may have any alignment: the queried size includes this much slack, and the call aligns
 * up inside it. */
#define CLOSS_WORKSPACE_ALIGNMENT 256

/* The handle is not NULL (checked after the arguments, so that argument errors are reported the
 * same way with or without a device). */
closs_status_t closs_check_handle(closs_handle_t handle);

/* The handle's cuBLAS context, created on first use (NT-Xent and SupCon's chunked path); a
 * failure to create it is CUBLAS_ERROR, and the next call tries again. Creating it allocates,
 * which a CUDA graph capture forbids: while `stream` is capturing, a handle without one gets
 * NOT_SUPPORTED (closs_refuse_in_capture) and nothing is created. */
closs_status_t closs_handle_cublas(closs_handle_t handle, closs_stream_t stream, void **cublas);

/* NOT_SUPPORTED, naming `what`, while `stream` is capturing a CUDA graph (cudaStreamIsCapturing:
 * active or invalidated), for the steps that a capture cannot hold (allocations, host waits);
 * success outside a capture. A failing cudaStreamIsCapturing is CUDA_ERROR, its error consumed. */
closs_status_t closs_refuse_in_capture(closs_stream_t stream, const char *what);

/* host/gpu_call.c: what every GPU call does around its launches. */

/* On entry, once the arguments are checked and before any CUDA call: the handle is not NULL, no
 * CUDA error is pending from before the call (reported as the caller's, and left in place), the
 * calling thread's current device is the handle's, and, while `stream` is capturing a CUDA graph,
 * the call neither uses the handle's own workspace (`workspace` NULL: the graph would keep a
 * buffer that a later call may free when it grows it) nor runs check mode (`check_inputs`: it
 * waits for the stream), both refused with NOT_SUPPORTED (closs_refuse_in_capture). */
closs_status_t closs_begin_call(closs_handle_t handle, closs_stream_t stream, const void *workspace,
                                int check_inputs);

/* What *_workspace_size reports for a layout of `layout_bytes` (256-aligned pieces): the layout
 * plus CLOSS_WORKSPACE_ALIGNMENT bytes of slack, so that any caller pointer can be aligned up. */
size_t closs_workspace_query(size_t layout_bytes);

/* A caller's workspace of `workspace_bytes` (at least closs_workspace_query(layout_bytes), else
 * WORKSPACE_TOO_SMALL) aligned up to CLOSS_WORKSPACE_ALIGNMENT; no CUDA call. */
closs_status_t closs_align_workspace(void *workspace, size_t workspace_bytes, size_t layout_bytes,
                                     void **out);

/* The workspace of a call: the caller's, aligned (closs_align_workspace), or with NULL and 0 the
 * handle's own, grown if smaller; `stream` then first waits for the calls that used it before, on
 * whatever stream (an event), so that two calls never share it at once. */
closs_status_t closs_resolve_workspace(closs_handle_t handle, void *workspace,
                                       size_t workspace_bytes, size_t layout_bytes,
                                       closs_stream_t stream, void **out);

/* After a call has enqueued its work (`status` its outcome, passed through): when the call used
 * the handle's workspace (`workspace` NULL), records the event the next such call waits for. */
closs_status_t closs_end_call(closs_handle_t handle, const void *workspace, closs_stream_t stream,
                              closs_status_t status);

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
