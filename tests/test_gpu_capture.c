/* CUDA graph capture on a device (closs.h, "CUDA graph capture"; issue #28 item 3): inside a real
 * capture the calls that need what a graph cannot hold are refused (and the capture survives the
 * refusals), the others are captured, and the replayed graph gives the same bits as the same
 * calls run directly, on the fused and the chunked paths and for CLIP. The refusals' logic is
 * tested on the CPU with a mocked runtime (test_capture.c); this suite runs in the device check
 * only (GPGPU-Sim has no stream capture). */
#include <criterion/criterion.h>
#include <cuda_runtime_api.h>
#include <stdlib.h>
#include <string.h>

#include "closs.h"
#include "gpu_support.h"

static closs_handle_t handle;
static cudaStream_t stream;

static void setup(void) {
    if (!gpu_available()) return;
    cr_assert_eq(closs_create(&handle), CLOSS_STATUS_SUCCESS, "%s", closs_last_error());
    cr_assert_eq(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
}

static void teardown(void) {
    if (stream) cudaStreamDestroy(stream);
    stream = NULL;
    gpu_free_all();
    closs_destroy(handle);
    handle = NULL;
}

TestSuite(gpu_capture, .init = setup, .fini = teardown, .timeout = 300);

enum { kRows = 512, kDim = 64, kPairs = 256, kNegatives = 64 };

static void *random_rows(int64_t rows, int64_t dim) {
    static uint64_t state;
    if (!state) state = test_seed();
    float *host = malloc(sizeof(float) * (size_t)(rows * dim));
    cr_assert(host);
    for (int64_t k = 0; k < rows * dim; k++) host[k] = (float)(2.0 * uniform01(&state) - 1.0);
    void *device = gpu_alloc(sizeof(float) * (size_t)(rows * dim));
    gpu_upload(device, host, sizeof(float) * (size_t)(rows * dim));
    free(host);
    return device;
}

static void begin_capture(void) {
    cr_assert_eq(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), cudaSuccess);
}

/* Ends the capture (which the refusals must not have invalidated), replays the graph once and
 * waits for it. */
static void end_capture_and_replay(void) {
    cudaGraph_t graph = NULL;
    cr_assert_eq(cudaStreamEndCapture(stream, &graph), cudaSuccess, "the capture was invalidated");
    cudaGraphExec_t exec = NULL;
    cr_assert_eq(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
    cr_assert_eq(cudaGraphLaunch(exec, stream), cudaSuccess);
    cr_assert_eq(cudaStreamSynchronize(stream), cudaSuccess);
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
}

static void expect_refused(closs_status_t status, const char *step) {
    cr_expect_eq(status, CLOSS_STATUS_NOT_SUPPORTED, "%s", closs_last_error());
    cr_expect(strstr(closs_last_error(), step), "'%s' not named in: %s", step, closs_last_error());
}

/* NT-Xent forward+backward on one path: direct, then captured and replayed, the same bits. */
static void ntxent_replays(closs_path_t path) {
    closs_ntxent_params p = CLOSS_NTXENT_PARAMS_INIT;
    p.path = path;
    closs_matrix_t z = closs_matrix(random_rows(kRows, kDim), CLOSS_F32, kRows, kDim);
    size_t bytes = 0;
    cr_assert_eq(closs_ntxent_workspace_size(handle, &p, kRows, kDim, CLOSS_F32, &bytes),
                 CLOSS_STATUS_SUCCESS);
    void *workspace = gpu_alloc(bytes);
    const size_t grad_bytes = sizeof(float) * kRows * kDim;
    float *loss = gpu_alloc(2 * sizeof(float)), *grad = gpu_alloc(2 * grad_bytes);
    closs_grad_t direct = {grad, kDim}, replayed = {grad + kRows * kDim, kDim};

    cr_assert_eq(
        closs_ntxent_forward_backward(handle, &p, z, loss, direct, workspace, bytes, stream),
        CLOSS_STATUS_SUCCESS, "%s", closs_last_error());
    gpu_poison(loss + 1, sizeof(float));
    gpu_poison(replayed.data, grad_bytes);
    gpu_synchronize();

    begin_capture();
    expect_refused(
        closs_ntxent_forward_backward(handle, &p, z, loss + 1, replayed, NULL, 0, stream),
        "the handle's own workspace");
    closs_ntxent_params checked = p;
    checked.check_inputs = 1;
    expect_refused(closs_ntxent_forward_backward(handle, &checked, z, loss + 1, replayed, workspace,
                                                 bytes, stream),
                   "check_inputs");
    cr_assert_eq(
        closs_ntxent_forward_backward(handle, &p, z, loss + 1, replayed, workspace, bytes, stream),
        CLOSS_STATUS_SUCCESS, "%s", closs_last_error());
    end_capture_and_replay();

    float losses[2];
    gpu_download(losses, loss, sizeof losses);
    cr_expect_eq(memcmp(&losses[0], &losses[1], sizeof(float)), 0, "loss %.9g replayed as %.9g",
                 losses[0], losses[1]);
    float *grads = malloc(2 * grad_bytes);
    cr_assert(grads);
    gpu_download(grads, grad, 2 * grad_bytes);
    cr_expect_eq(memcmp(grads, grads + kRows * kDim, grad_bytes), 0,
                 "the replayed gradient differs");
    free(grads);
}

Test(gpu_capture, fused_ntxent_replays_the_same_bits) {
    CLOSS_REQUIRE_GPU();
    ntxent_replays(CLOSS_PATH_FUSED);
}

/* The chunked path: refused on the handle's first chunked call while capturing, captured (cuBLAS
 * included, on the call's own cuBLAS workspace) once the context exists. */
Test(gpu_capture, chunked_ntxent_needs_one_call_before_capturing) {
    CLOSS_REQUIRE_GPU();
    closs_ntxent_params p = CLOSS_NTXENT_PARAMS_INIT;
    p.path = CLOSS_PATH_CHUNKED;
    closs_matrix_t z = closs_matrix(random_rows(kRows, kDim), CLOSS_F32, kRows, kDim);
    size_t bytes = 0;
    cr_assert_eq(closs_ntxent_workspace_size(handle, &p, kRows, kDim, CLOSS_F32, &bytes),
                 CLOSS_STATUS_SUCCESS);
    void *workspace = gpu_alloc(bytes);
    float *loss = gpu_alloc(sizeof(float));
    begin_capture();
    expect_refused(closs_ntxent_forward(handle, &p, z, loss, NULL, workspace, bytes, stream),
                   "cuBLAS context");
    end_capture_and_replay();
    ntxent_replays(CLOSS_PATH_CHUNKED); /* its direct call creates the context */
}

Test(gpu_capture, clip_replays_the_same_bits) {
    CLOSS_REQUIRE_GPU();
    closs_clip_params p = CLOSS_CLIP_PARAMS_INIT;
    const int64_t rows_b = kPairs + kNegatives;
    closs_matrix_t a = closs_matrix(random_rows(kPairs, kDim), CLOSS_F32, kPairs, kDim);
    closs_matrix_t b = closs_matrix(random_rows(rows_b, kDim), CLOSS_F32, rows_b, kDim);
    size_t bytes = 0;
    cr_assert_eq(closs_clip_workspace_size(handle, &p, kPairs, rows_b, kDim, CLOSS_F32, &bytes),
                 CLOSS_STATUS_SUCCESS);
    void *workspace = gpu_alloc(bytes);
    float *loss = gpu_alloc(2 * sizeof(float)), *scale_grad = gpu_alloc(2 * sizeof(float));
    cr_assert_eq(closs_clip_forward_backward(handle, &p, a, b, NULL, loss, (closs_grad_t){NULL, 0},
                                             (closs_grad_t){NULL, 0}, scale_grad, workspace, bytes,
                                             stream),
                 CLOSS_STATUS_SUCCESS, "%s", closs_last_error());
    gpu_poison(loss + 1, sizeof(float));
    gpu_poison(scale_grad + 1, sizeof(float));
    gpu_synchronize();
    begin_capture();
    cr_assert_eq(closs_clip_forward_backward(handle, &p, a, b, NULL, loss + 1,
                                             (closs_grad_t){NULL, 0}, (closs_grad_t){NULL, 0},
                                             scale_grad + 1, workspace, bytes, stream),
                 CLOSS_STATUS_SUCCESS, "%s", closs_last_error());
    end_capture_and_replay();
    float got[4];
    gpu_download(got, loss, 2 * sizeof(float));
    gpu_download(got + 2, scale_grad, 2 * sizeof(float));
    cr_expect_eq(memcmp(&got[0], &got[1], sizeof(float)), 0, "loss %.9g replayed as %.9g", got[0],
                 got[1]);
    cr_expect_eq(memcmp(&got[2], &got[3], sizeof(float)), 0, "∂/∂s %.9g replayed as %.9g", got[2],
                 got[3]);
}
