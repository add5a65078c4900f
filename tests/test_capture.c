/* CUDA graph capture (closs.h, "CUDA graph capture"; issue #28 item 3), on the CPU: the CUDA
 * runtime calls the entry points make before their launches are replaced by the mocks below
 * (linked with -Wl,--wrap, tests/CMakeLists.txt), so the capture status is whatever a test says and
 * every allocation, event and cuBLAS context creation is counted. While the stream captures, a call
 * that would use the handle's own workspace, run check mode or create the cuBLAS context must be
 * refused with NOT_SUPPORTED, naming the step, before any of those happen; outside a capture the
 * same calls must go on (here to the mocked cudaMalloc, which fails). The real capture and the
 * replay of a captured graph are tested on a device by tests/test_gpu_capture.c. */
#include <criterion/criterion.h>
#include <cuda_runtime_api.h>
#include <stdint.h>
#include <string.h>

#include "closs.h"
#include "gpu.h" /* struct closs_handle_st (host/, private) */

/* ---- the mocked runtime --------------------------------------------------------------------- */

static enum cudaStreamCaptureStatus capture_status;
static cudaError_t capture_query_error;
static cudaStream_t queried_stream;
static int capture_queries, allocations, events, waits, cublas_creations;

cudaError_t __wrap_cudaStreamIsCapturing(cudaStream_t stream,
                                         enum cudaStreamCaptureStatus *status) {
    capture_queries++;
    queried_stream = stream;
    if (capture_query_error != cudaSuccess) return capture_query_error;
    *status = capture_status;
    return cudaSuccess;
}
cudaError_t __wrap_cudaPeekAtLastError(void) { return cudaSuccess; }
cudaError_t __wrap_cudaGetLastError(void) { return cudaSuccess; }
cudaError_t __wrap_cudaGetDevice(int *device) {
    *device = 0;
    return cudaSuccess;
}
cudaError_t __wrap_cudaMalloc(void **pointer, size_t bytes) {
    (void)bytes;
    allocations++;
    *pointer = NULL;
    return cudaErrorMemoryAllocation;
}
cudaError_t __wrap_cudaFree(void *pointer) {
    (void)pointer;
    return cudaSuccess;
}
cudaError_t __wrap_cudaEventCreateWithFlags(cudaEvent_t *event, unsigned int flags) {
    (void)flags;
    events++;
    *event = (cudaEvent_t)(uintptr_t)0xE0;
    return cudaSuccess;
}
cudaError_t __wrap_cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int flags) {
    (void)stream, (void)event, (void)flags;
    waits++;
    return cudaSuccess;
}
int __wrap_closs_cublas_create(void **cublas) {
    cublas_creations++;
    *cublas = NULL;
    return 1; /* CUBLAS_STATUS_NOT_INITIALIZED */
}

/* ---- the calls ------------------------------------------------------------------------------ */

/* Never dereferenced: every call here ends before a launch. The workspace is a made-up device
 * address (the chunked path's needs more than 32 MiB), far from the host arrays. */
static float inputs[4096], outputs[4096];
static void *const workspace = (void *)(uintptr_t)0x7f0000000000;
static struct closs_handle_st handle; /* device 0, no cuBLAS context, no workspace yet */
static const closs_stream_t stream = (closs_stream_t)(uintptr_t)0x5000;

static void reset(enum cudaStreamCaptureStatus status) {
    memset(&handle, 0, sizeof handle);
    handle.multiprocessors = 132; /* the row-wise size query reads it */
    capture_status = status;
    capture_query_error = cudaSuccess;
    queried_stream = NULL;
    capture_queries = allocations = events = waits = cublas_creations = 0;
}

static closs_matrix_t rows(int64_t count) { return closs_matrix(inputs, CLOSS_F32, count, 16); }

/* NT-Xent forward on 64 × 16 rows: the handle's workspace (own), check mode, a path. */
static closs_status_t ntxent(int own, int check, closs_path_t path) {
    closs_ntxent_params p = CLOSS_NTXENT_PARAMS_INIT;
    p.check_inputs = check, p.path = path;
    size_t bytes = 0;
    cr_assert_eq(closs_ntxent_workspace_size(NULL, &p, 64, 16, CLOSS_F32, &bytes),
                 CLOSS_STATUS_SUCCESS);
    return closs_ntxent_forward(&handle, &p, rows(64), outputs, NULL, own ? NULL : workspace,
                                own ? 0 : bytes, stream);
}

/* CLIP forward, 32 pairs and 8 extra negatives of 16: likewise. */
static closs_status_t clip(int own, int check, closs_path_t path) {
    closs_clip_params p = CLOSS_CLIP_PARAMS_INIT;
    p.check_inputs = check, p.path = path;
    size_t bytes = 0;
    cr_assert_eq(closs_clip_workspace_size(NULL, &p, 32, 40, 16, CLOSS_F32, &bytes),
                 CLOSS_STATUS_SUCCESS);
    closs_matrix_t b = closs_matrix(inputs + 32 * 16, CLOSS_F32, 40, 16);
    return closs_clip_forward(&handle, &p, rows(32), b, NULL, outputs, NULL, NULL,
                              own ? NULL : workspace, own ? 0 : bytes, stream);
}

/* Cosine contrastive forward on 64 pairs of 16: the row-wise entry points. */
static closs_status_t cosine(int own, int check) {
    closs_cosine_params p = CLOSS_COSINE_PARAMS_INIT;
    p.check_inputs = check;
    size_t bytes = 0;
    cr_assert_eq(closs_cosine_workspace_size(&handle, &p, 64, 16, CLOSS_F32, &bytes),
                 CLOSS_STATUS_SUCCESS);
    closs_matrix_t x2 = closs_matrix(inputs + 64 * 16, CLOSS_F32, 64, 16);
    closs_vector_t y = closs_vector(inputs + 128 * 16, CLOSS_F32, 64);
    return closs_cosine_forward(&handle, &p, rows(64), x2, y, outputs, own ? NULL : workspace,
                                own ? 0 : bytes, stream);
}

#define EXPECT_REFUSED(call, step)                                                                 \
    do {                                                                                           \
        cr_expect_eq((call), CLOSS_STATUS_NOT_SUPPORTED, "%s", #call);                             \
        cr_expect(strstr(closs_last_error(), "capturing a CUDA graph") &&                          \
                      strstr(closs_last_error(), step),                                            \
                  "%s: the capture and '%s' not named in: %s", #call, step, closs_last_error());   \
        cr_expect_eq(queried_stream, (cudaStream_t)stream, "the call's own stream is asked");      \
    } while (0)

/* Nothing a graph cannot hold happened before the refusal. */
static void expect_nothing_done(void) {
    cr_expect_eq(allocations, 0, "cudaMalloc called %d times", allocations);
    cr_expect_eq(events, 0, "cudaEventCreate called %d times", events);
    cr_expect_eq(waits, 0, "cudaStreamWaitEvent called %d times", waits);
    cr_expect_eq(cublas_creations, 0, "cublasCreate called %d times", cublas_creations);
}

Test(capture, the_handles_own_workspace_is_refused_while_capturing) {
    const enum cudaStreamCaptureStatus capturing[] = {cudaStreamCaptureStatusActive,
                                                      cudaStreamCaptureStatusInvalidated};
    for (int k = 0; k < 2; k++) {
        reset(capturing[k]);
        EXPECT_REFUSED(ntxent(1, 0, CLOSS_PATH_FUSED), "the handle's own workspace");
        EXPECT_REFUSED(clip(1, 0, CLOSS_PATH_FUSED), "the handle's own workspace");
        EXPECT_REFUSED(cosine(1, 0), "the handle's own workspace");
        expect_nothing_done();
    }
}

Test(capture, check_mode_is_refused_while_capturing) {
    reset(cudaStreamCaptureStatusActive);
    EXPECT_REFUSED(ntxent(0, 1, CLOSS_PATH_FUSED), "check_inputs");
    EXPECT_REFUSED(clip(0, 1, CLOSS_PATH_FUSED), "check_inputs");
    EXPECT_REFUSED(cosine(0, 1), "check_inputs");
    expect_nothing_done();
}

Test(capture, the_first_chunked_call_is_refused_while_capturing) {
    reset(cudaStreamCaptureStatusActive);
    EXPECT_REFUSED(ntxent(0, 0, CLOSS_PATH_CHUNKED), "cuBLAS context");
    EXPECT_REFUSED(clip(0, 0, CLOSS_PATH_CHUNKED), "cuBLAS context");
    expect_nothing_done();
}

/* Outside a capture the same calls go on to the steps refused above: the handle's workspace is
 * allocated (the mock fails it: ALLOC_FAILED) and the cuBLAS context created (CUBLAS_ERROR). */
Test(capture, outside_a_capture_nothing_is_refused) {
    reset(cudaStreamCaptureStatusNone);
    cr_expect_eq(ntxent(1, 0, CLOSS_PATH_FUSED), CLOSS_STATUS_ALLOC_FAILED, "%s",
                 closs_last_error());
    cr_expect_eq(allocations, 1);
    cr_expect_eq(cosine(1, 0), CLOSS_STATUS_ALLOC_FAILED, "%s", closs_last_error());
    cr_expect_eq(ntxent(0, 0, CLOSS_PATH_CHUNKED), CLOSS_STATUS_CUBLAS_ERROR, "%s",
                 closs_last_error());
    cr_expect_eq(clip(0, 0, CLOSS_PATH_CHUNKED), CLOSS_STATUS_CUBLAS_ERROR, "%s",
                 closs_last_error());
    cr_expect_eq(cublas_creations, 2);
}

/* A caller's workspace, no check mode and a fused path need no capture query at all. */
Test(capture, a_call_that_needs_nothing_does_not_ask) {
    reset(cudaStreamCaptureStatusActive);
    handle.cublas = NULL;
    void *base = NULL;
    cr_expect_eq(closs_begin_call(&handle, stream, workspace, 0), CLOSS_STATUS_SUCCESS, "%s",
                 closs_last_error());
    cr_expect_eq(closs_resolve_workspace(&handle, workspace, 4096, 1024, stream, &base),
                 CLOSS_STATUS_SUCCESS, "%s", closs_last_error());
    cr_expect_eq(capture_queries, 0);
    /* and a handle whose cuBLAS context exists hands it out inside a capture */
    handle.cublas = (void *)(uintptr_t)0xCB;
    void *cublas = NULL;
    cr_expect_eq(closs_handle_cublas(&handle, stream, &cublas), CLOSS_STATUS_SUCCESS);
    cr_expect_eq(cublas, handle.cublas);
    expect_nothing_done();
}

/* A failing capture query is the call's CUDA_ERROR, named, and nothing is done. */
Test(capture, a_failing_capture_query_is_reported) {
    reset(cudaStreamCaptureStatusNone);
    capture_query_error = cudaErrorStreamCaptureImplicit;
    cr_expect_eq(ntxent(1, 0, CLOSS_PATH_FUSED), CLOSS_STATUS_CUDA_ERROR);
    cr_expect(strstr(closs_last_error(), "cudaStreamIsCapturing"), "%s", closs_last_error());
    expect_nothing_done();
}
