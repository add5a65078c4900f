/* GPU entry points of NT-Xent and SupCon: argument checks, the choice of path, the workspace
 * layouts of the CHUNKED and FUSED paths, check mode, then one call of cuda/contrastive.cu or
 * cuda/contrastive_fused.cu. Every argument is checked before the device is touched, and nothing
 * is enqueued on an error.
 *
 * AUTO picks FUSED when D ≤ CLOSS_FUSED_MAX_DIM (256: the fused backward keeps a block's rows of
 * dẑ in registers), else CHUNKED. Both take at most INT_MAX rows (cuBLAS's and CUB's int sizes).
 * The workspace is pure arithmetic on (path, M, D, dtype), so its query needs no handle and no
 * device. */
#include <limits.h>
#include <stdint.h>

#include "error.h"
#include "fused_math.h" /* CLOSS_FUSED_MAX_DIM: which path a call takes */
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
    closs_row_range range; /* as requested, then resolved by check_call */
    int forward;
    float *loss;
    float *stats; /* forward: optional output; backward: required input */
    int64_t *valid;
    int backward;
    const float *upstream;
    closs_grad_t grad_z;
} contrastive_call;

/* The float values `loss` (forward, the range's anchors) or `upstream` (backward, every anchor's)
 * hold: one, or one per anchor for NONE. */
static size_t per_call_floats(const contrastive_call *call, int64_t anchors) {
    return call->reduction == CLOSS_REDUCTION_NONE ? (size_t)anchors : 1;
}

/* No output or caller's workspace shares memory with an input or another of them; `stats` is an
 * output of a forward (the range's anchors) and an input of a backward-only call (all M anchors).
 * Runs after the row range is resolved. */
static closs_status_t check_disjoint(const contrastive_call *call, closs_span workspace) {
    const int64_t stats_rows = call->forward ? call->range.count : call->z.rows;
    closs_matrix_t grad = call->z;
    grad.data = call->grad_z.data;
    grad.ld = call->grad_z.ld;
    grad.rows = call->range.count;
    const closs_span stats = {"stats", call->stats, (size_t)stats_rows * sizeof(float)};
    closs_span inputs[4] = {{"z", call->z.data, closs_matrix_span(call->z)}},
               outputs[5] = {workspace};
    int input_count = 1, output_count = 1;
    if (call->supcon)
        inputs[input_count++] =
            (closs_span){"labels", call->labels.data,
                         (size_t)call->labels.length * closs_dtype_size(call->labels.dtype)};
    if (call->forward) {
        outputs[output_count++] = (closs_span){
            "loss", call->loss, per_call_floats(call, call->range.count) * sizeof(float)};
        outputs[output_count++] = stats;
        outputs[output_count++] = (closs_span){"valid", call->valid, sizeof(int64_t)};
    } else if (call->backward) {
        inputs[input_count++] = stats;
    }
    if (call->backward) {
        inputs[input_count++] = (closs_span){"upstream", call->upstream,
                                             per_call_floats(call, call->z.rows) * sizeof(float)};
        outputs[output_count++] = (closs_span){"grad_z", grad.data, closs_matrix_span(grad)};
    }
    return closs_check_disjoint(outputs, output_count, inputs, input_count);
}

/* The chunked path hands cuBLAS a 16-bit z as it is, with its row stride as GemmEx's int leading
 * dimension (cuda/contrastive_chunked_products.cuh), and f16's normalised backward its scaled
 * rows ((cols + 7) / 8 · 8 apart): past INT_MAX either would wrap, and a wrapped value that cuBLAS
 * accepts reads the wrong rows. FUSED takes 64-bit strides; f32 multiplies a copy D apart. */
static closs_status_t check_cublas_strides(const contrastive_call *call) {
    const int chunked = call->path == CLOSS_PATH_CHUNKED ||
                        (call->path == CLOSS_PATH_AUTO && call->z.cols > CLOSS_FUSED_MAX_DIM);
    if (!chunked || call->z.dtype == CLOSS_F32) return CLOSS_STATUS_SUCCESS;
    if (call->z.ld > INT_MAX)
        return closs_fail(
            CLOSS_STATUS_NOT_SUPPORTED,
            "z.ld = %lld: the chunked path takes a 16-bit z with a leading dimension of "
            "at most %d (cuBLAS's int); copy z to rows z.cols apart",
            (long long)call->z.ld, INT_MAX);
    const int scaled_rows = call->z.dtype == CLOSS_F16 && call->normalize && call->backward;
    if (scaled_rows && (call->z.cols + 7) / 8 * 8 > INT_MAX)
        return closs_fail(CLOSS_STATUS_NOT_SUPPORTED,
                          "z.cols = %lld: the chunked path's f16 backward takes at most %d columns",
                          (long long)call->z.cols, INT_MAX / 8 * 8);
    return CLOSS_STATUS_SUCCESS;
}

/* Every argument; the caller's workspace (NULL: the handle's own) only for overlaps (its size is
 * checked against the layout later). */
static closs_status_t check_call(contrastive_call *call, void *workspace, size_t workspace_bytes) {
    CLOSS_TRY(
        closs_check_device_matrix("z", call->z, CLOSS_GPU_FLOAT_DTYPES, call->supcon ? 1 : 2));
    CLOSS_TRY(check_cublas_strides(call));
    if (!call->supcon && call->z.rows % 2 != 0)
        return closs_fail(CLOSS_STATUS_INVALID_ARGUMENT,
                          "z.rows = %lld: NT-Xent needs an even number of rows (two views of "
                          "each sample, z = cat(z1, z2))",
                          (long long)call->z.rows);
    if (call->supcon)
        CLOSS_TRY(
            closs_check_device_vector("labels", call->labels, CLOSS_LABEL_DTYPES, call->z.rows));
    CLOSS_TRY(closs_resolve_row_range(call->range, call->z.rows, &call->range));
    if (call->forward) CLOSS_TRY(closs_check_not_null("loss", call->loss));
    CLOSS_TRY(closs_check_aligned("loss", call->loss, sizeof(float)));
    CLOSS_TRY(closs_check_aligned("stats", call->stats, sizeof(float)));
    CLOSS_TRY(closs_check_aligned("valid", call->valid, sizeof(int64_t)));
    CLOSS_TRY(closs_check_aligned("upstream", call->upstream, sizeof(float)));
    if (call->backward) {
        if (!call->forward) CLOSS_TRY(closs_check_not_null("stats", call->stats));
        CLOSS_TRY(closs_check_not_null("grad_z.data", call->grad_z.data));
        closs_matrix_t shape = call->z;
        shape.rows = call->range.count; /* the range's rows only */
        shape.data = call->grad_z.data;
        shape.ld = call->grad_z.ld;
        CLOSS_TRY(closs_check_device_matrix("grad_z", shape, CLOSS_GPU_FLOAT_DTYPES, 0));
    }
    return check_disjoint(call, (closs_span){"workspace", workspace, workspace_bytes});
}

#ifdef CLOSS_WITH_CUDA

/* The path a call takes (*fused: 1 for FUSED, 0 for CHUNKED), or NOT_SUPPORTED past its limits. */
static closs_status_t choose_path(closs_path_t path, int64_t rows, int64_t dim, int *fused) {
    if (rows > INT_MAX || dim > INT_MAX)
        return closs_fail(CLOSS_STATUS_NOT_SUPPORTED,
                          "z is %lld × %lld: NT-Xent and SupCon take at most %d rows and columns",
                          (long long)rows, (long long)dim, INT_MAX);
    if (path == CLOSS_PATH_FUSED && dim > CLOSS_FUSED_MAX_DIM)
        return closs_fail(CLOSS_STATUS_NOT_SUPPORTED,
                          "path = CLOSS_PATH_FUSED with z.cols = %lld: the fused kernels take at "
                          "most %d columns; use CLOSS_PATH_CHUNKED or CLOSS_PATH_AUTO",
                          (long long)dim, CLOSS_FUSED_MAX_DIM);
    *fused = path == CLOSS_PATH_FUSED || (path == CLOSS_PATH_AUTO && dim <= CLOSS_FUSED_MAX_DIM);
    return CLOSS_STATUS_SUCCESS;
}

/* Rows of S per cuBLAS call: the C × M block of S (4 bytes an element), and for 16-bit inputs
 * the two halves of G' (2 more each), stay within 256 MiB while M ≤ 2²⁶ (f32) or 2²⁵ (16-bit);
 * past that C is 1 and the block is M elements (docs/contract.md, "Numerics"). */
static int64_t chunk_rows(int64_t rows, closs_dtype_t dtype) {
    const int64_t element_bytes = dtype == CLOSS_F32 ? 4 : 8;
    int64_t chunk = ((int64_t)1 << 28) / element_bytes / (rows > 0 ? rows : 1);
    return chunk < 1 ? 1 : (chunk > rows ? rows : chunk);
}

/* cuBLAS's own workspace (cublasSetWorkspace): 32 MiB, what the cuBLAS documentation recommends
 * on Hopper (sm_90), below which some of its kernels are not chosen. The same on every device, so
 * that the workspace query needs none and cuBLAS's choice, hence the bits, never depends on the
 * workspace's size. */
enum { CUBLAS_WORKSPACE_BYTES = 32 << 20 };

/* CUB's temporary storage for SupCon's label sort (keys and values in our own double buffer) and
 * scan: bins, look-back state and counters, well under a byte per row. Reserved without asking
 * CUB, which needs a device; run() checks CUB's own answer against it. */
static int64_t cub_reserve(int64_t rows) { return ((int64_t)2 << 20) + 8 * rows; }

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

/* The buffers both paths use, and SupCon's label sort and class numbering (labels take 8 bytes
 * whatever their dtype: the query does not know it). */
static closs_status_t lay_out_common(workspace_layout *layout, int64_t rows, int supcon,
                                     closs_contrastive_launch *job) {
    CLOSS_TRY(take(layout, rows, sizeof(float), (void **)&job->norms));
    CLOSS_TRY(take(layout, rows, sizeof(float), (void **)&job->row_loss));
    CLOSS_TRY(take(layout, rows, sizeof(float), (void **)&job->weights));
    CLOSS_TRY(take(layout, rows, sizeof(float), (void **)&job->anchor_a));
    CLOSS_TRY(take(layout, rows, sizeof(float), (void **)&job->lse));
    CLOSS_TRY(take(layout, rows, sizeof(int), (void **)&job->positives));
    CLOSS_TRY(take(layout, 1, sizeof(int), (void **)&job->valid_count));
    CLOSS_TRY(take(layout, 1, sizeof(int), (void **)&job->nonfinite));
    if (!supcon) return CLOSS_STATUS_SUCCESS;
    const int64_t classes = rows / 2;
    for (int b = 0; b < 2; ++b) {
        CLOSS_TRY(take(layout, rows, sizeof(int64_t), &job->sort_keys[b]));
        CLOSS_TRY(take(layout, rows, sizeof(int), (void **)&job->sort_index[b]));
    }
    CLOSS_TRY(take(layout, rows, sizeof(int), (void **)&job->class_heads));
    CLOSS_TRY(take(layout, rows, sizeof(int), (void **)&job->class_ids));
    CLOSS_TRY(take(layout, rows, sizeof(int), (void **)&job->class_of));
    CLOSS_TRY(take(layout, classes, sizeof(int), (void **)&job->class_start));
    CLOSS_TRY(take(layout, classes, sizeof(int), (void **)&job->class_end));
    CLOSS_TRY(take(layout, 1, sizeof(int), (void **)&job->class_count));
    CLOSS_TRY(take(layout, cub_reserve(rows), 1, &job->cub_temp));
    job->cub_temp_bytes = (size_t)cub_reserve(rows);
    return CLOSS_STATUS_SUCCESS;
}

/* f16, either path: the backward's scaled copy z′ of z and its r′ (cuda/launch.h, z_scaled), M
 * rows of D rounded up to 8 halves. run() uses them only with normalisation and a backward (the
 * size query knows neither). */
static closs_status_t lay_out_scaled_rows(workspace_layout *layout, int64_t rows, int64_t dim,
                                          closs_dtype_t dtype, closs_contrastive_launch *job) {
    if (dtype != CLOSS_F16) return CLOSS_STATUS_SUCCESS;
    int64_t matrix = 0;
    job->scaled_ld = (dim + 7) / 8 * 8;
    CLOSS_TRY(closs_mul_size("workspace", rows, job->scaled_ld, &matrix));
    CLOSS_TRY(take(layout, matrix, 2, &job->z_scaled));
    return take(layout, rows, sizeof(float), (void **)&job->inv_norm_scaled);
}

/* FUSED: 1/‖z_i‖, and the tensor-core backward's factors and β (16-bit), f16's scaled rows. O(M)
 * whatever D but for those: the positives are summed and folded in the similarity tiles, so
 * SupCon needs no class sums. */
static closs_status_t lay_out_fused(workspace_layout *layout, int64_t rows, int64_t dim, int supcon,
                                    closs_dtype_t dtype, closs_contrastive_launch *job) {
    CLOSS_TRY(lay_out_common(layout, rows, supcon, job));
    CLOSS_TRY(take(layout, rows, sizeof(float), (void **)&job->inv_norm));
    if (dtype == CLOSS_F32) return CLOSS_STATUS_SUCCESS;
    CLOSS_TRY(take(layout, rows, sizeof(float), (void **)&job->softmax_factor));
    CLOSS_TRY(take(layout, 1, sizeof(unsigned), (void **)&job->factor_max));
    return lay_out_scaled_rows(layout, rows, dim, dtype, job);
}

/* CHUNKED: one block of C rows of S and its gradient rows, cuBLAS's workspace; for f32 the ẑ copy,
 * for 16-bit inputs (multiplied as they are) 1/‖z_i‖, β and the two halves of the block of G',
 * for f16 also the scaled rows. */
static closs_status_t lay_out_chunked(workspace_layout *layout, int64_t rows, int64_t dim,
                                      int supcon, closs_dtype_t dtype,
                                      closs_contrastive_launch *job) {
    const int64_t chunk = chunk_rows(rows, dtype);
    int64_t matrix = 0, block = 0, gradient_block = 0;
    CLOSS_TRY(closs_mul_size("workspace", rows, dim, &matrix));
    CLOSS_TRY(closs_mul_size("workspace", chunk, rows, &block));
    CLOSS_TRY(closs_mul_size("workspace", chunk, dim, &gradient_block));
    CLOSS_TRY(lay_out_common(layout, rows, supcon, job));
    if (dtype == CLOSS_F32) {
        CLOSS_TRY(take(layout, matrix, sizeof(float), (void **)&job->zhat));
    } else {
        CLOSS_TRY(take(layout, rows, sizeof(float), (void **)&job->inv_norm));
        CLOSS_TRY(take(layout, 1, sizeof(unsigned), (void **)&job->factor_max));
        CLOSS_TRY(take(layout, block, 2, &job->coefficient_high));
        CLOSS_TRY(take(layout, block, 2, &job->coefficient_low));
        CLOSS_TRY(lay_out_scaled_rows(layout, rows, dim, dtype, job));
    }
    CLOSS_TRY(take(layout, block, sizeof(float), (void **)&job->similarity));
    CLOSS_TRY(take(layout, gradient_block, sizeof(float), (void **)&job->dzhat));
    CLOSS_TRY(take(layout, CUBLAS_WORKSPACE_BYTES, 1, &job->cublas_workspace));
    job->cublas_workspace_bytes = CUBLAS_WORKSPACE_BYTES;
    job->chunk_rows = chunk;
    return CLOSS_STATUS_SUCCESS;
}

static closs_status_t lay_out(workspace_layout *layout, int64_t rows, int64_t dim, int supcon,
                              closs_dtype_t dtype, int fused, closs_contrastive_launch *job) {
    CLOSS_TRY(fused ? lay_out_fused(layout, rows, dim, supcon, dtype, job)
                    : lay_out_chunked(layout, rows, dim, supcon, dtype, job));
    if ((uint64_t)layout->used > (uint64_t)SIZE_MAX)
        return closs_fail(CLOSS_STATUS_INVALID_ARGUMENT, "workspace: %lld bytes exceed size_t",
                          (long long)layout->used);
    return CLOSS_STATUS_SUCCESS;
}

/* CUB's own need for the label sort and scan (it asks the device) within what the layout reserved.
 */
static closs_status_t check_cub_reserve(int64_t rows, closs_dtype_t label_dtype) {
    size_t needed = 0;
    CLOSS_TRY(closs_cuda_status(closs_contrastive_cub_bytes(rows, label_dtype, &needed),
                                "CUB temporary storage query"));
    if (needed > (size_t)cub_reserve(rows))
        return closs_fail(
            CLOSS_STATUS_NOT_SUPPORTED,
            "SupCon reserves %lld bytes for CUB's label sort, which asks for %zu with "
            "%lld rows (a closs bug: please report it)",
            (long long)cub_reserve(rows), needed, (long long)rows);
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

/* The row range's part of a launch (closs.h, "Row ranges"), whatever the path: the anchors of the
 * loss and valid and the rows of the gradient; and the anchors whose lse the forward computes,
 * stored from lse[0]: the range alone in a forward (the caller's stats hold the range's), every
 * row when a backward follows (it needs them all). A backward reads lse of all M rows. */
static void set_row_range(closs_contrastive_launch *job, const contrastive_call *call) {
    job->row_begin = call->range.begin;
    job->row_count = call->range.count;
    job->lse_begin = call->backward ? 0 : call->range.begin;
    job->lse_count = call->backward ? call->z.rows : call->range.count;
}

/* Enqueues the launches of one path. */
static closs_status_t enqueue(const closs_contrastive_launch *job, int fused, cudaStream_t stream) {
    if (fused)
        return closs_cuda_status(closs_launch_contrastive_fused(job, stream),
                                 "NT-Xent/SupCon fused kernels");
    int cublas_status = 0;
    CLOSS_TRY(closs_cuda_status(closs_launch_contrastive(job, stream, &cublas_status),
                                "NT-Xent/SupCon kernels"));
    if (cublas_status != 0)
        return closs_fail(CLOSS_STATUS_CUBLAS_ERROR, "cuBLAS returned status %d", cublas_status);
    return CLOSS_STATUS_SUCCESS;
}

static closs_status_t run(closs_handle_t handle, contrastive_call *call, void *workspace,
                          size_t workspace_bytes, closs_stream_t stream) {
    CLOSS_TRY(check_call(call, workspace, workspace_bytes));
    CLOSS_TRY(closs_begin_call(handle, stream, workspace, call->check_inputs));
    int fused = 0;
    CLOSS_TRY(choose_path(call->path, call->z.rows, call->z.cols, &fused));
    void *cublas = NULL;
    if (!fused) CLOSS_TRY(closs_handle_cublas(handle, stream, &cublas));
    closs_contrastive_launch job = {0};
    workspace_layout measure = {NULL, 0};
    CLOSS_TRY(
        lay_out(&measure, call->z.rows, call->z.cols, call->supcon, call->z.dtype, fused, &job));
    if (call->supcon) CLOSS_TRY(check_cub_reserve(call->z.rows, call->labels.dtype));
    void *base = NULL;
    CLOSS_TRY(closs_resolve_workspace(handle, workspace, workspace_bytes, (size_t)measure.used,
                                      stream, &base));
    workspace_layout layout = {base, 0};
    CLOSS_TRY(
        lay_out(&layout, call->z.rows, call->z.cols, call->supcon, call->z.dtype, fused, &job));

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
    job.fixed_shift = closs_fm_fixed_shift(call->normalize, job.inv_temperature);
    job.scale = (float)call->scale;
    job.reduction = call->reduction;
    job.forward = call->forward;
    job.loss = call->loss;
    if (call->stats) job.lse = call->stats; /* else the workspace's own */
    job.valid = call->valid;
    job.upstream = call->upstream;
    job.grad = call->backward ? call->grad_z.data : NULL;
    job.grad_ld = call->grad_z.ld;
    set_row_range(&job, call);
    job.cublas = cublas;
    if (!(call->normalize && call->backward)) job.z_scaled = NULL; /* r is then 1, or unused */

    cudaStream_t cuda_stream = (cudaStream_t)stream;
    if (call->check_inputs) CLOSS_TRY(run_check(handle, call, cuda_stream));
    return closs_end_call(handle, workspace, stream, enqueue(&job, fused, cuda_stream));
}

static closs_status_t workspace_size(int supcon, closs_path_t path, int64_t rows, int64_t dim,
                                     closs_dtype_t dtype, size_t *bytes) {
    CLOSS_TRY(closs_check_gpu_sizes(rows, dim, dtype, 1));
    CLOSS_TRY(closs_check_not_null("bytes", bytes));
    int fused = 0;
    CLOSS_TRY(choose_path(path, rows, dim, &fused));
    closs_contrastive_launch job = {0};
    workspace_layout measure = {NULL, 0};
    CLOSS_TRY(lay_out(&measure, rows, dim, supcon, dtype, fused, &job));
    *bytes = closs_workspace_query((size_t)measure.used);
    return CLOSS_STATUS_SUCCESS;
}

#else /* no CUDA in this build: the same argument checks, then NOT_SUPPORTED */

static closs_status_t run(closs_handle_t handle, contrastive_call *call, void *workspace,
                          size_t workspace_bytes, closs_stream_t stream) {
    (void)handle, (void)workspace, (void)workspace_bytes, (void)stream;
    CLOSS_TRY(check_call(call, workspace, workspace_bytes));
    return closs_fail(CLOSS_STATUS_NOT_SUPPORTED, "closs was built without CUDA");
}

static closs_status_t workspace_size(int supcon, closs_path_t path, int64_t rows, int64_t dim,
                                     closs_dtype_t dtype, size_t *bytes) {
    (void)supcon, (void)path;
    CLOSS_TRY(closs_check_gpu_sizes(rows, dim, dtype, 1));
    CLOSS_TRY(closs_check_not_null("bytes", bytes));
    return closs_fail(CLOSS_STATUS_NOT_SUPPORTED, "closs was built without CUDA");
}

#endif

/* What an entry point asks for: the loss (forward), the gradient (backward), or both. */
typedef struct contrastive_outputs {
    int forward, backward;
    float *loss;
    float *stats;   /* forward: optional output; backward only: required input */
    int64_t *valid; /* SupCon's forward */
    const float *upstream;
    closs_grad_t grad_z;
} contrastive_outputs;

/* A loss's call with the outputs its entry point asked for. */
static closs_status_t compute(closs_handle_t handle, contrastive_call call, contrastive_outputs out,
                              void *workspace, size_t workspace_bytes, closs_stream_t stream) {
    call.forward = out.forward;
    call.backward = out.backward;
    call.loss = out.loss;
    call.stats = out.stats;
    call.valid = out.valid;
    call.upstream = out.upstream;
    call.grad_z = out.grad_z;
    return run(handle, &call, workspace, workspace_bytes, stream);
}

/* Each loss has one body, which its _forward, _backward and _forward_backward entry points call
 * with their outputs: the parameters checked, then the call described. */

/* ---- NT-Xent --------------------------------------------------------------------------------- */

static closs_status_t ntxent(closs_handle_t handle, const closs_ntxent_params *p, closs_matrix_t z,
                             contrastive_outputs out, void *workspace, size_t workspace_bytes,
                             closs_stream_t stream) {
    closs_clear_error();
    CLOSS_TRY(closs_check_ntxent_params(p));
    contrastive_call call = {.z = z,
                             .normalize = p->normalize,
                             .temperature = p->temperature,
                             .scale = 1.0,
                             .reduction = p->reduction,
                             .check_inputs = p->check_inputs,
                             .path = p->path,
                             .range = closs_ntxent_requested_range(p)};
    return compute(handle, call, out, workspace, workspace_bytes, stream);
}

closs_status_t closs_ntxent_workspace_size(closs_handle_t handle, const closs_ntxent_params *params,
                                           int64_t rows, int64_t dim, closs_dtype_t dtype,
                                           size_t *bytes) {
    closs_clear_error();
    (void)handle; /* not needed: the size is arithmetic on the arguments */
    CLOSS_TRY(closs_check_ntxent_params(params));
    return workspace_size(0, params->path, rows, dim, dtype, bytes);
}

closs_status_t closs_ntxent_forward(closs_handle_t handle, const closs_ntxent_params *params,
                                    closs_matrix_t z, float *loss, float *stats, void *workspace,
                                    size_t workspace_bytes, closs_stream_t stream) {
    return ntxent(handle, params, z,
                  (contrastive_outputs){.forward = 1, .loss = loss, .stats = stats}, workspace,
                  workspace_bytes, stream);
}

closs_status_t closs_ntxent_backward(closs_handle_t handle, const closs_ntxent_params *params,
                                     closs_matrix_t z, const float *stats, const float *upstream,
                                     closs_grad_t grad_z, void *workspace, size_t workspace_bytes,
                                     closs_stream_t stream) {
    /* stats is only read on a backward-only call */
    return ntxent(
        handle, params, z,
        (contrastive_outputs){
            .backward = 1, .stats = (float *)stats, .upstream = upstream, .grad_z = grad_z},
        workspace, workspace_bytes, stream);
}

closs_status_t closs_ntxent_forward_backward(closs_handle_t handle,
                                             const closs_ntxent_params *params, closs_matrix_t z,
                                             float *loss, closs_grad_t grad_z, void *workspace,
                                             size_t workspace_bytes, closs_stream_t stream) {
    return ntxent(
        handle, params, z,
        (contrastive_outputs){.forward = 1, .backward = 1, .loss = loss, .grad_z = grad_z},
        workspace, workspace_bytes, stream);
}

/* ---- SupCon ---------------------------------------------------------------------------------- */

static closs_status_t supcon(closs_handle_t handle, const closs_supcon_params *p, closs_matrix_t z,
                             closs_vector_t labels, contrastive_outputs out, void *workspace,
                             size_t workspace_bytes, closs_stream_t stream) {
    closs_clear_error();
    CLOSS_TRY(closs_check_supcon_params(p));
    const double base = p->base_temperature != 0.0 ? p->base_temperature : p->temperature;
    contrastive_call call = {.supcon = 1,
                             .z = z,
                             .labels = labels,
                             .normalize = p->normalize,
                             .temperature = p->temperature,
                             .scale = p->temperature / base,
                             .reduction = p->reduction,
                             .check_inputs = p->check_inputs,
                             .path = p->path,
                             .range = closs_supcon_requested_range(p)};
    return compute(handle, call, out, workspace, workspace_bytes, stream);
}

closs_status_t closs_supcon_workspace_size(closs_handle_t handle, const closs_supcon_params *params,
                                           int64_t rows, int64_t dim, closs_dtype_t dtype,
                                           size_t *bytes) {
    closs_clear_error();
    (void)handle; /* not needed: the size is arithmetic on the arguments */
    CLOSS_TRY(closs_check_supcon_params(params));
    return workspace_size(1, params->path, rows, dim, dtype, bytes);
}

closs_status_t closs_supcon_forward(closs_handle_t handle, const closs_supcon_params *params,
                                    closs_matrix_t z, closs_vector_t labels, float *loss,
                                    float *stats, int64_t *valid, void *workspace,
                                    size_t workspace_bytes, closs_stream_t stream) {
    return supcon(handle, params, z, labels,
                  (contrastive_outputs){.forward = 1, .loss = loss, .stats = stats, .valid = valid},
                  workspace, workspace_bytes, stream);
}

closs_status_t closs_supcon_backward(closs_handle_t handle, const closs_supcon_params *params,
                                     closs_matrix_t z, closs_vector_t labels, const float *stats,
                                     const float *upstream, closs_grad_t grad_z, void *workspace,
                                     size_t workspace_bytes, closs_stream_t stream) {
    /* stats is only read on a backward-only call */
    return supcon(
        handle, params, z, labels,
        (contrastive_outputs){
            .backward = 1, .stats = (float *)stats, .upstream = upstream, .grad_z = grad_z},
        workspace, workspace_bytes, stream);
}

closs_status_t closs_supcon_forward_backward(closs_handle_t handle,
                                             const closs_supcon_params *params, closs_matrix_t z,
                                             closs_vector_t labels, float *loss, int64_t *valid,
                                             closs_grad_t grad_z, void *workspace,
                                             size_t workspace_bytes, closs_stream_t stream) {
    return supcon(handle, params, z, labels,
                  (contrastive_outputs){
                      .forward = 1, .backward = 1, .loss = loss, .valid = valid, .grad_z = grad_z},
                  workspace, workspace_bytes, stream);
}
