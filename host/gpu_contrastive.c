/* GPU entry points of NT-Xent and SupCon: argument checks, the workspace layout of the CHUNKED
 * path, check mode, then one call of cuda/contrastive.cu. Every argument is checked before the
 * device is touched, and nothing is enqueued on an error. */
#include <limits.h>
#include <stdint.h>

#include "error.h"
#include "gpu.h"
#include "params.h"
#include "validate.h"

#ifdef CLOSS_WITH_CUDA
#    include "launch.h"
#endif

/* One call, whichever of forward, backward or both. */
typedef struct contrastive_call {
    int supcon;
    closs_matrix_t z;
    closs_vector_t labels; /* SupCon */
    int normalize;
    double temperature, scale; /* scale: τ/τ_b for SupCon, 1 for NT-Xent */
    closs_reduction_t reduction;
    int check_inputs;
    closs_path_t path;
    int forward;
    float *loss;
    float *stats; /* forward: optional output; backward: required input */
    int64_t *valid;
    int backward;
    const float *upstream;
    closs_grad_t grad_z;
} contrastive_call;

static closs_status_t check_call(const contrastive_call *call) {
    CLOSS_TRY(closs_check_matrix("z", call->z, CLOSS_GPU_FLOAT_DTYPES, call->supcon ? 1 : 2));
    if (!call->supcon && call->z.rows % 2 != 0)
        return closs_fail(CLOSS_STATUS_INVALID_ARGUMENT,
                          "z.rows = %lld: NT-Xent needs an even number of rows (two views of "
                          "each sample, z = cat(z1, z2))",
                          (long long)call->z.rows);
    if (call->supcon)
        CLOSS_TRY(closs_check_vector("labels", call->labels, CLOSS_LABEL_DTYPES, call->z.rows));
    if (call->forward) CLOSS_TRY(closs_check_not_null("loss", call->loss));
    if (call->backward) {
        if (!call->forward) CLOSS_TRY(closs_check_not_null("stats", call->stats));
        CLOSS_TRY(closs_check_not_null("grad_z.data", call->grad_z.data));
        closs_matrix_t shape = call->z;
        shape.data = call->grad_z.data;
        shape.ld = call->grad_z.ld;
        CLOSS_TRY(closs_check_matrix("grad_z", shape, CLOSS_GPU_FLOAT_DTYPES, 0));
    }
    return CLOSS_STATUS_SUCCESS;
}

#ifdef CLOSS_WITH_CUDA

/* The chunked path's limits: cuBLAS takes int sizes. */
static closs_status_t check_path(closs_path_t path, int64_t rows, int64_t dim) {
    if (path == CLOSS_PATH_FUSED)
        return closs_fail(CLOSS_STATUS_NOT_SUPPORTED,
                          "path = CLOSS_PATH_FUSED: the fused path is not written yet; use "
                          "CLOSS_PATH_AUTO or CLOSS_PATH_CHUNKED");
    if (rows > INT_MAX || dim > INT_MAX)
        return closs_fail(CLOSS_STATUS_NOT_SUPPORTED,
                          "z is %lld × %lld: the chunked path takes at most %d rows and columns",
                          (long long)rows, (long long)dim, INT_MAX);
    return CLOSS_STATUS_SUCCESS;
}

/* Rows of S per cuBLAS call: the C × M float block stays within 256 MiB. */
static int64_t chunk_rows(int64_t rows) {
    int64_t chunk = ((int64_t)1 << 26) / (rows > 0 ? rows : 1);
    return chunk < 1 ? 1 : (chunk > rows ? rows : chunk);
}

enum { CUBLAS_WORKSPACE_BYTES = 4 << 20 };

/* The workspace, carved in order into aligned buffers; `base` NULL only measures. */
typedef struct workspace_layout {
    char *base;
    int64_t used;
} workspace_layout;

static closs_status_t take(workspace_layout *layout, int64_t count, int64_t element, void **out) {
    int64_t bytes = 0;
    CLOSS_TRY(closs_mul_size("workspace", count, element, &bytes));
    CLOSS_TRY(closs_add_size("workspace", bytes, CLOSS_WORKSPACE_ALIGNMENT - 1, &bytes));
    bytes -= bytes % CLOSS_WORKSPACE_ALIGNMENT;
    if (out) *out = layout->base ? layout->base + layout->used : NULL;
    return closs_add_size("workspace", layout->used, bytes, &layout->used);
}

static closs_status_t lay_out(workspace_layout *layout, int64_t rows, int64_t dim,
                              closs_contrastive_launch *job) {
    const int64_t chunk = chunk_rows(rows);
    int64_t matrix = 0, block = 0, gradient_block = 0;
    CLOSS_TRY(closs_mul_size("workspace", rows, dim, &matrix));
    CLOSS_TRY(closs_mul_size("workspace", chunk, rows, &block));
    CLOSS_TRY(closs_mul_size("workspace", chunk, dim, &gradient_block));
    CLOSS_TRY(take(layout, matrix, sizeof(float), (void **)&job->zhat));
    CLOSS_TRY(take(layout, rows, sizeof(float), (void **)&job->norms));
    CLOSS_TRY(take(layout, rows, sizeof(float), (void **)&job->row_loss));
    CLOSS_TRY(take(layout, rows, sizeof(float), (void **)&job->weights));
    CLOSS_TRY(take(layout, rows, sizeof(float), (void **)&job->anchor_a));
    CLOSS_TRY(take(layout, rows, sizeof(float), (void **)&job->lse));
    CLOSS_TRY(take(layout, rows, sizeof(int), (void **)&job->positives));
    CLOSS_TRY(take(layout, 1, sizeof(int), (void **)&job->valid_count));
    CLOSS_TRY(take(layout, 1, sizeof(int), (void **)&job->nonfinite));
    CLOSS_TRY(take(layout, block, sizeof(float), (void **)&job->similarity));
    CLOSS_TRY(take(layout, gradient_block, sizeof(float), (void **)&job->dzhat));
    CLOSS_TRY(take(layout, CUBLAS_WORKSPACE_BYTES, 1, &job->cublas_workspace));
    job->cublas_workspace_bytes = CUBLAS_WORKSPACE_BYTES;
    job->chunk_rows = chunk;
    if ((uint64_t)layout->used > (uint64_t)SIZE_MAX)
        return closs_fail(CLOSS_STATUS_INVALID_ARGUMENT, "workspace: %lld bytes exceed size_t",
                          (long long)layout->used);
    return CLOSS_STATUS_SUCCESS;
}

/* Check mode: the first row of z holding NaN or Inf, found on the device (the row-wise check
 * kernel, given z as its only input) and read back before anything is computed. */
static closs_status_t run_check(closs_handle_t handle, const contrastive_call *call,
                                cudaStream_t stream) {
    closs_rowwise_launch scan = {
        .input_count = 2,
        .dtype = call->z.dtype,
        .rows = call->z.rows,
        .dim = call->z.cols,
        .x = {call->z.data, call->z.data},
        .ld = {call->z.ld, call->z.ld},
        .blocks = closs_rowwise_blocks(handle->multiprocessors, call->z.rows),
    };
    unsigned long long bad_rows[2];
    CLOSS_TRY(closs_run_check(handle, &scan, stream, bad_rows));
    if (bad_rows[0] != UINT64_MAX)
        return closs_fail(CLOSS_STATUS_NONFINITE_INPUT,
                          "check mode found a non-finite input in row %llu of z", bad_rows[0]);
    return CLOSS_STATUS_SUCCESS;
}

static closs_status_t run(closs_handle_t handle, const contrastive_call *call, void *workspace,
                          size_t workspace_bytes, closs_stream_t stream) {
    CLOSS_TRY(check_call(call));
    CLOSS_TRY(closs_check_handle(handle));
    CLOSS_TRY(check_path(call->path, call->z.rows, call->z.cols));
    closs_contrastive_launch job = {0};
    workspace_layout measure = {NULL, 0};
    CLOSS_TRY(lay_out(&measure, call->z.rows, call->z.cols, &job));
    void *base = NULL;
    CLOSS_TRY(
        closs_resolve_workspace(handle, workspace, workspace_bytes, (size_t)measure.used, &base));
    workspace_layout layout = {base, 0};
    CLOSS_TRY(lay_out(&layout, call->z.rows, call->z.cols, &job));

    job.supcon = call->supcon;
    job.dtype = call->z.dtype;
    job.rows = call->z.rows;
    job.dim = call->z.cols;
    job.z = call->z.data;
    job.ld = call->z.ld;
    job.labels = call->supcon ? call->labels.data : NULL;
    job.label_dtype = call->supcon ? call->labels.dtype : CLOSS_I64;
    job.normalize = call->normalize;
    job.inv_temperature = (float)(1.0 / call->temperature);
    job.scale = (float)call->scale;
    job.reduction = call->reduction;
    job.forward = call->forward;
    job.loss = call->loss;
    if (call->stats) job.lse = call->stats; /* else the workspace's own */
    job.valid = call->valid;
    job.upstream = call->upstream;
    job.grad = call->backward ? call->grad_z.data : NULL;
    job.grad_ld = call->grad_z.ld;
    job.cublas = handle->cublas;

    cudaStream_t cuda_stream = (cudaStream_t)stream;
    if (call->check_inputs) CLOSS_TRY(run_check(handle, call, cuda_stream));
    int cublas_status = 0;
    CLOSS_TRY(closs_cuda_status(closs_launch_contrastive(&job, cuda_stream, &cublas_status),
                                "NT-Xent/SupCon kernels"));
    if (cublas_status != 0)
        return closs_fail(CLOSS_STATUS_CUBLAS_ERROR, "cuBLAS returned status %d", cublas_status);
    return CLOSS_STATUS_SUCCESS;
}

static closs_status_t workspace_size(closs_handle_t handle, closs_path_t path, int64_t rows,
                                     int64_t dim, closs_dtype_t dtype, size_t *bytes) {
    CLOSS_TRY(closs_check_gpu_sizes(rows, dim, dtype, 1));
    CLOSS_TRY(closs_check_not_null("bytes", bytes));
    CLOSS_TRY(closs_check_handle(handle));
    CLOSS_TRY(check_path(path, rows, dim));
    closs_contrastive_launch job = {0};
    workspace_layout measure = {NULL, 0};
    CLOSS_TRY(lay_out(&measure, rows, dim, &job));
    *bytes = (size_t)measure.used;
    return CLOSS_STATUS_SUCCESS;
}

#else /* no CUDA in this build: the same argument checks, then NOT_SUPPORTED */

static closs_status_t run(closs_handle_t handle, const contrastive_call *call, void *workspace,
                          size_t workspace_bytes, closs_stream_t stream) {
    (void)handle, (void)workspace, (void)workspace_bytes, (void)stream;
    CLOSS_TRY(check_call(call));
    return closs_fail(CLOSS_STATUS_NOT_SUPPORTED, "closs was built without CUDA");
}

static closs_status_t workspace_size(closs_handle_t handle, closs_path_t path, int64_t rows,
                                     int64_t dim, closs_dtype_t dtype, size_t *bytes) {
    (void)handle, (void)path;
    CLOSS_TRY(closs_check_gpu_sizes(rows, dim, dtype, 1));
    CLOSS_TRY(closs_check_not_null("bytes", bytes));
    return closs_fail(CLOSS_STATUS_NOT_SUPPORTED, "closs was built without CUDA");
}

#endif

/* ---- NT-Xent --------------------------------------------------------------------------------- */

static contrastive_call ntxent_call(const closs_ntxent_params *p, closs_matrix_t z) {
    return (contrastive_call){.z = z,
                              .normalize = p->normalize,
                              .temperature = p->temperature,
                              .scale = 1.0,
                              .reduction = p->reduction,
                              .check_inputs = p->check_inputs,
                              .path = p->path};
}

closs_status_t closs_ntxent_workspace_size(closs_handle_t handle, const closs_ntxent_params *params,
                                           int64_t rows, int64_t dim, closs_dtype_t dtype,
                                           size_t *bytes) {
    closs_clear_error();
    CLOSS_TRY(closs_check_ntxent_params(params));
    return workspace_size(handle, params->path, rows, dim, dtype, bytes);
}

closs_status_t closs_ntxent_forward(closs_handle_t handle, const closs_ntxent_params *params,
                                    closs_matrix_t z, float *loss, float *stats, void *workspace,
                                    size_t workspace_bytes, closs_stream_t stream) {
    closs_clear_error();
    CLOSS_TRY(closs_check_ntxent_params(params));
    contrastive_call call = ntxent_call(params, z);
    call.forward = 1;
    call.loss = loss;
    call.stats = stats;
    return run(handle, &call, workspace, workspace_bytes, stream);
}

closs_status_t closs_ntxent_backward(closs_handle_t handle, const closs_ntxent_params *params,
                                     closs_matrix_t z, const float *stats, const float *upstream,
                                     closs_grad_t grad_z, void *workspace, size_t workspace_bytes,
                                     closs_stream_t stream) {
    closs_clear_error();
    CLOSS_TRY(closs_check_ntxent_params(params));
    contrastive_call call = ntxent_call(params, z);
    call.backward = 1;
    call.stats = (float *)stats; /* only read on a backward-only call */
    call.upstream = upstream;
    call.grad_z = grad_z;
    return run(handle, &call, workspace, workspace_bytes, stream);
}

closs_status_t closs_ntxent_forward_backward(closs_handle_t handle,
                                             const closs_ntxent_params *params, closs_matrix_t z,
                                             float *loss, closs_grad_t grad_z, void *workspace,
                                             size_t workspace_bytes, closs_stream_t stream) {
    closs_clear_error();
    CLOSS_TRY(closs_check_ntxent_params(params));
    contrastive_call call = ntxent_call(params, z);
    call.forward = call.backward = 1;
    call.loss = loss;
    call.grad_z = grad_z;
    return run(handle, &call, workspace, workspace_bytes, stream);
}

/* ---- SupCon ---------------------------------------------------------------------------------- */

static contrastive_call supcon_call(const closs_supcon_params *p, closs_matrix_t z,
                                    closs_vector_t labels) {
    const double base = p->base_temperature != 0.0 ? p->base_temperature : p->temperature;
    return (contrastive_call){.supcon = 1,
                              .z = z,
                              .labels = labels,
                              .normalize = p->normalize,
                              .temperature = p->temperature,
                              .scale = p->temperature / base,
                              .reduction = p->reduction,
                              .check_inputs = p->check_inputs,
                              .path = p->path};
}

closs_status_t closs_supcon_workspace_size(closs_handle_t handle, const closs_supcon_params *params,
                                           int64_t rows, int64_t dim, closs_dtype_t dtype,
                                           size_t *bytes) {
    closs_clear_error();
    CLOSS_TRY(closs_check_supcon_params(params));
    return workspace_size(handle, params->path, rows, dim, dtype, bytes);
}

closs_status_t closs_supcon_forward(closs_handle_t handle, const closs_supcon_params *params,
                                    closs_matrix_t z, closs_vector_t labels, float *loss,
                                    float *stats, int64_t *valid, void *workspace,
                                    size_t workspace_bytes, closs_stream_t stream) {
    closs_clear_error();
    CLOSS_TRY(closs_check_supcon_params(params));
    contrastive_call call = supcon_call(params, z, labels);
    call.forward = 1;
    call.loss = loss;
    call.stats = stats;
    call.valid = valid;
    return run(handle, &call, workspace, workspace_bytes, stream);
}

closs_status_t closs_supcon_backward(closs_handle_t handle, const closs_supcon_params *params,
                                     closs_matrix_t z, closs_vector_t labels, const float *stats,
                                     const float *upstream, closs_grad_t grad_z, void *workspace,
                                     size_t workspace_bytes, closs_stream_t stream) {
    closs_clear_error();
    CLOSS_TRY(closs_check_supcon_params(params));
    contrastive_call call = supcon_call(params, z, labels);
    call.backward = 1;
    call.stats = (float *)stats; /* only read on a backward-only call */
    call.upstream = upstream;
    call.grad_z = grad_z;
    return run(handle, &call, workspace, workspace_bytes, stream);
}

closs_status_t closs_supcon_forward_backward(closs_handle_t handle,
                                             const closs_supcon_params *params, closs_matrix_t z,
                                             closs_vector_t labels, float *loss, int64_t *valid,
                                             closs_grad_t grad_z, void *workspace,
                                             size_t workspace_bytes, closs_stream_t stream) {
    closs_clear_error();
    CLOSS_TRY(closs_check_supcon_params(params));
    contrastive_call call = supcon_call(params, z, labels);
    call.forward = call.backward = 1;
    call.loss = loss;
    call.valid = valid;
    call.grad_z = grad_z;
    return run(handle, &call, workspace, workspace_bytes, stream);
}
