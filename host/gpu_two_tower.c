/* GPU entry points of CLIP and SigLIP: argument checks, the choice of path, the workspace layouts
 * of the FUSED and CHUNKED paths, check mode, then one call of cuda/two_tower_fused.cu or
 * cuda/two_tower_chunked.cu. Every argument is checked before the device is touched, and nothing
 * is enqueued on an error.
 *
 * AUTO picks FUSED when D ≤ CLOSS_TWO_TOWER_FUSED_MAX_DIM (512: the fused backward keeps a block's
 * gradient rows in registers), else CHUNKED; both take at most INT_MAX rows of b (cuBLAS's int).
 * The workspace is arithmetic on (path, N, N + K, D), so its query needs no handle and no device:
 * FUSED 10·N + 4·(N + K) floats; CHUNKED adds the embedded rows as float ((2N + K)·D) and a block
 * of at most 256 MiB with its gradient rows. */
#include <limits.h>
#include <math.h>
#include <stdint.h>

#include "error.h"
#include "gpu.h"
#include "params.h"
#include "validate.h"

#ifdef CLOSS_WITH_CUDA
#    include <cuda_runtime_api.h>

#    include "launch.h"
#    include "two_tower_launch.h"
#else
#    define CLOSS_TWO_TOWER_FUSED_MAX_DIM 512
#endif

/* One call, whichever of forward, backward or both, of either loss. */
typedef struct two_tower_call {
    int siglip;
    closs_matrix_t a, b;
    int normalize, symmetric, in_batch_negatives, grad_negatives, check_inputs;
    double logit_scale, logit_bias; /* the parameters' values, for NULL device scalars */
    closs_reduction_t reduction;
    closs_path_t path;
    closs_two_tower_range range; /* as requested, then resolved by check_call */
    const float *device_scale, *device_bias;
    int forward, backward;
    float *loss;
    float *row_stats, *column_stats; /* CLIP; forward: optional outputs; backward only: inputs */
    const float *upstream;
    closs_grad_t grad_a, grad_b;
    float *grad_logit_scale, *grad_logit_bias;
} two_tower_call;

static int64_t pairs_of(const two_tower_call *call) { return call->a.rows; }

/* The shape of a gradient output: `rows` rows of the inputs' dtype and dim. */
static closs_matrix_t gradient_shape(const two_tower_call *call, closs_grad_t grad, int64_t rows) {
    return closs_matrix_ld(grad.data, call->a.dtype, rows, call->a.cols, grad.ld);
}

static int64_t grad_b_rows(const two_tower_call *call) {
    return call->range.count + call->range.negatives_count;
}

/* The floats a loss (the range's pairs) or an upstream (every pair's) holds: 1, or one per pair
 * for NONE. */
static size_t per_call_floats(const two_tower_call *call, int64_t pairs) {
    return call->reduction == CLOSS_REDUCTION_NONE ? (size_t)pairs : 1;
}

/* No output or caller's workspace shares memory with an input or another output. The statistics
 * are outputs of a forward (the range's pairs) and inputs of a backward-only call (all N). */
static closs_status_t check_disjoint(const two_tower_call *call, closs_span workspace) {
    const int backward_only = call->backward && !call->forward;
    const int64_t stats_count = backward_only ? pairs_of(call) : call->range.count;
    const closs_span row_stats = {"row_stats", call->row_stats,
                                  (size_t)stats_count * sizeof(float)};
    const closs_span column_stats = {"column_stats", call->symmetric ? call->column_stats : NULL,
                                     (size_t)stats_count * sizeof(float)};
    closs_span inputs[7] = {{"a", call->a.data, closs_matrix_span(call->a)},
                            {"b", call->b.data, closs_matrix_span(call->b)},
                            {"logit_scale", call->device_scale, sizeof(float)},
                            {"logit_bias", call->device_bias, sizeof(float)}},
               outputs[8] = {workspace}; /* the workspace, 3 of a forward, 4 of a backward */
    int input_count = 4, output_count = 1;
    if (call->forward) {
        outputs[output_count++] = (closs_span){
            "loss", call->loss, per_call_floats(call, call->range.count) * sizeof(float)};
        outputs[output_count++] = row_stats;
        outputs[output_count++] = column_stats;
    } else {
        inputs[input_count++] = row_stats;
        inputs[input_count++] = column_stats;
    }
    if (call->backward) {
        inputs[input_count++] = (closs_span){"upstream", call->upstream,
                                             per_call_floats(call, pairs_of(call)) * sizeof(float)};
        outputs[output_count++] =
            (closs_span){"grad_a", call->grad_a.data,
                         closs_matrix_span(gradient_shape(call, call->grad_a, call->range.count))};
        outputs[output_count++] =
            (closs_span){"grad_b", call->grad_b.data,
                         closs_matrix_span(gradient_shape(call, call->grad_b, grad_b_rows(call)))};
        outputs[output_count++] =
            (closs_span){"grad_logit_scale", call->grad_logit_scale, sizeof(float)};
        outputs[output_count++] =
            (closs_span){"grad_logit_bias", call->grad_logit_bias, sizeof(float)};
    }
    return closs_check_disjoint(outputs, output_count, inputs, input_count);
}

/* a and b: device matrices of one GPU float dtype and dim, b with at least a's rows. */
static closs_status_t check_towers(closs_matrix_t a, closs_matrix_t b) {
    CLOSS_TRY(closs_check_device_matrix("a", a, CLOSS_GPU_FLOAT_DTYPES, 1));
    CLOSS_TRY(closs_check_device_matrix("b", b, CLOSS_GPU_FLOAT_DTYPES, 1));
    if (b.dtype != a.dtype)
        return closs_fail(CLOSS_STATUS_INVALID_ARGUMENT,
                          "b.dtype = %s: must be a's dtype %s (one dtype for both towers and "
                          "their gradients)",
                          closs_dtype_name(b.dtype), closs_dtype_name(a.dtype));
    return closs_check_tower_shapes(a, b);
}

/* A gradient output, when asked for (data not NULL): `rows` rows of the inputs' dtype and dim. */
static closs_status_t check_gradient(const char *name, const two_tower_call *call,
                                     closs_grad_t grad, int64_t rows) {
    if (!grad.data) return CLOSS_STATUS_SUCCESS;
    return closs_check_device_matrix(name, gradient_shape(call, grad, rows), CLOSS_GPU_FLOAT_DTYPES,
                                     0);
}

/* Every argument; the caller's workspace (NULL: the handle's own) only for overlaps (its size is
 * checked against the layout later). */
static closs_status_t check_call(two_tower_call *call, void *workspace, size_t workspace_bytes) {
    CLOSS_TRY(check_towers(call->a, call->b));
    CLOSS_TRY(closs_resolve_two_tower_range(call->range, call->grad_negatives, call->a.rows,
                                            call->b.rows - call->a.rows, &call->range));
    if (call->forward) CLOSS_TRY(closs_check_not_null("loss", call->loss));
    const struct {
        const char *name;
        const void *pointer;
    } scalars[] = {{"loss", call->loss},
                   {"row_stats", call->row_stats},
                   {"column_stats", call->column_stats},
                   {"upstream", call->upstream},
                   {"logit_scale", call->device_scale},
                   {"logit_bias", call->device_bias},
                   {"grad_logit_scale", call->grad_logit_scale},
                   {"grad_logit_bias", call->grad_logit_bias}};
    for (size_t s = 0; s < sizeof scalars / sizeof scalars[0]; ++s)
        CLOSS_TRY(closs_check_aligned(scalars[s].name, scalars[s].pointer, sizeof(float)));
    if (call->backward && !call->forward && !call->siglip) {
        CLOSS_TRY(closs_check_not_null("row_stats", call->row_stats));
        if (call->symmetric) CLOSS_TRY(closs_check_not_null("column_stats", call->column_stats));
    }
    if (call->backward && !call->forward && !call->grad_a.data && !call->grad_b.data &&
        !call->grad_logit_scale && !call->grad_logit_bias)
        return closs_fail(
            CLOSS_STATUS_INVALID_ARGUMENT,
            "grad_a.data, grad_b.data and grad_logit_scale%s are all NULL: a backward "
            "computes at least one of them",
            call->siglip ? ", grad_logit_bias" : "");
    if (call->backward) {
        CLOSS_TRY(check_gradient("grad_a", call, call->grad_a, call->range.count));
        CLOSS_TRY(check_gradient("grad_b", call, call->grad_b, grad_b_rows(call)));
    }
    return check_disjoint(call, (closs_span){"workspace", workspace, workspace_bytes});
}

/* The path a call takes (*fused: 1 for FUSED, 0 for CHUNKED), or NOT_SUPPORTED past its limits. */
static closs_status_t choose_path(closs_path_t path, int64_t rows_b, int64_t dim, int *fused) {
    if (rows_b > INT_MAX || dim > INT_MAX)
        return closs_fail(CLOSS_STATUS_NOT_SUPPORTED,
                          "b is %lld × %lld: CLIP and SigLIP take at most %d rows and columns",
                          (long long)rows_b, (long long)dim, INT_MAX);
    if (path == CLOSS_PATH_FUSED && dim > CLOSS_TWO_TOWER_FUSED_MAX_DIM)
        return closs_fail(CLOSS_STATUS_NOT_SUPPORTED,
                          "path = CLOSS_PATH_FUSED with a.cols = %lld: the fused kernels take at "
                          "most %d columns; use CLOSS_PATH_CHUNKED or CLOSS_PATH_AUTO",
                          (long long)dim, CLOSS_TWO_TOWER_FUSED_MAX_DIM);
    *fused = path == CLOSS_PATH_FUSED ||
             (path == CLOSS_PATH_AUTO && dim <= CLOSS_TWO_TOWER_FUSED_MAX_DIM);
    return CLOSS_STATUS_SUCCESS;
}

/* The sizes a workspace query names: N ≥ 1 pairs, N + K ≥ N rows of b, D ≥ 1, a GPU dtype. */
static closs_status_t check_sizes(int64_t pairs, int64_t rows_b, int64_t dim, closs_dtype_t dtype) {
    if (pairs < 1)
        return closs_fail(CLOSS_STATUS_INVALID_ARGUMENT,
                          "pairs = %lld: must be >= 1 (the rows of a)", (long long)pairs);
    if (rows_b < pairs)
        return closs_fail(CLOSS_STATUS_INVALID_ARGUMENT,
                          "rows_b = %lld: must be >= pairs = %lld (b holds the partners, then the "
                          "extra negatives)",
                          (long long)rows_b, (long long)pairs);
    return closs_check_gpu_sizes(pairs, dim, dtype, 1); /* dim and dtype */
}

#ifdef CLOSS_WITH_CUDA

enum { CUBLAS_WORKSPACE_BYTES = 4 << 20 };

/* Rows of a or b per cuBLAS block: chunk × (N + K) floats within 256 MiB (a chunk of b's rows
 * meets only the N rows of a). */
static int64_t chunk_rows(int64_t rows_b) {
    const int64_t chunk = ((int64_t)1 << 26) / rows_b;
    return chunk < 1 ? 1 : (chunk > rows_b ? rows_b : chunk);
}

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

static closs_status_t take_floats(workspace_layout *layout, int64_t count, float **out) {
    return take(layout, count, sizeof(float), (void **)out);
}

/* Both paths: per-row values of a (N) and b (N + K), and the statistics when the caller keeps
 * none (row_stats, column_stats: NULL there, they are filled in from the caller's or these).
 * CHUNKED adds â, b̂ as float, the block and its gradient rows, and cuBLAS's workspace. */
static closs_status_t lay_out(workspace_layout *layout, int64_t pairs, int64_t rows_b, int64_t dim,
                              int fused, closs_two_tower_launch *job, float **own_stats) {
    float **per_pair[] = {&job->norms_a,  &job->inv_norm_a, &job->positives,   &job->row_loss,
                          &job->factor_a, &job->lse_a,      &job->scale_share, &job->bias_share,
                          &own_stats[0],  &own_stats[1]};
    float **per_row_b[] = {&job->norms_b, &job->inv_norm_b, &job->factor_b, &job->lse_b};
    for (size_t k = 0; k < sizeof per_pair / sizeof per_pair[0]; ++k)
        CLOSS_TRY(take_floats(layout, pairs, per_pair[k]));
    for (size_t k = 0; k < sizeof per_row_b / sizeof per_row_b[0]; ++k)
        CLOSS_TRY(take_floats(layout, rows_b, per_row_b[k]));
    if (!fused) {
        const int64_t chunk = chunk_rows(rows_b);
        int64_t a_elements = 0, b_elements = 0, block = 0, block_grad = 0;
        CLOSS_TRY(closs_mul_size("workspace", pairs, dim, &a_elements));
        CLOSS_TRY(closs_mul_size("workspace", rows_b, dim, &b_elements));
        CLOSS_TRY(closs_mul_size("workspace", chunk, rows_b, &block));
        CLOSS_TRY(closs_mul_size("workspace", chunk, dim, &block_grad));
        CLOSS_TRY(take_floats(layout, a_elements, &job->a_hat));
        CLOSS_TRY(take_floats(layout, b_elements, &job->b_hat));
        CLOSS_TRY(take_floats(layout, block, &job->block));
        CLOSS_TRY(take_floats(layout, block_grad, &job->block_grad));
        CLOSS_TRY(take(layout, CUBLAS_WORKSPACE_BYTES, 1, &job->cublas_workspace));
        job->cublas_workspace_bytes = CUBLAS_WORKSPACE_BYTES;
        job->chunk_rows = chunk;
    }
    if ((uint64_t)layout->used > (uint64_t)SIZE_MAX)
        return closs_fail(CLOSS_STATUS_INVALID_ARGUMENT, "workspace: %lld bytes exceed size_t",
                          (long long)layout->used);
    return CLOSS_STATUS_SUCCESS;
}

/* Check mode: the first row of a and of b holding NaN or Inf (the row-wise check kernel, given
 * one tower as its only input), then the device scalars s > 0 finite and β finite, read back
 * before anything is computed. */
static closs_status_t run_check(closs_handle_t handle, const two_tower_call *call,
                                cudaStream_t stream) {
    const closs_matrix_t towers[2] = {call->a, call->b};
    const char *const names[2] = {"a", "b"};
    for (int t = 0; t < 2; ++t) {
        const closs_matrix_t m = towers[t];
        closs_rowwise_launch scan = {
            .input_count = 2,
            .dtype = m.dtype,
            .rows = m.rows,
            .dim = m.cols,
            .x = {m.data, m.data},
            .ld = {m.ld, m.ld},
            .blocks = closs_rowwise_blocks(handle->multiprocessors, m.rows),
        };
        unsigned long long bad_rows[2];
        CLOSS_TRY(closs_run_check(handle, &scan, stream, bad_rows));
        if (bad_rows[0] != UINT64_MAX)
            return closs_fail(CLOSS_STATUS_NONFINITE_INPUT,
                              "check mode found a non-finite input in row %llu of %s", bad_rows[0],
                              names[t]);
    }
    float scalars[2] = {(float)call->logit_scale, (float)call->logit_bias};
    const float *device[2] = {call->device_scale, call->siglip ? call->device_bias : NULL};
    for (int k = 0; k < 2; ++k)
        if (device[k])
            CLOSS_TRY(closs_cuda_status(cudaMemcpyAsync(&scalars[k], device[k], sizeof(float),
                                                        cudaMemcpyDeviceToHost, stream),
                                        "check mode: reading the logit scale and bias"));
    CLOSS_TRY(closs_cuda_status(cudaStreamSynchronize(stream), "check mode"));
    if (!(isfinite(scalars[0]) && scalars[0] > 0.0f))
        return closs_fail(isfinite(scalars[0]) ? CLOSS_STATUS_INVALID_ARGUMENT
                                               : CLOSS_STATUS_NONFINITE_INPUT,
                          "logit_scale = %g on the device: check mode wants it finite and > 0",
                          (double)scalars[0]);
    if (call->siglip && !isfinite(scalars[1]))
        return closs_fail(CLOSS_STATUS_NONFINITE_INPUT,
                          "logit_bias = %g on the device: check mode wants it finite",
                          (double)scalars[1]);
    return CLOSS_STATUS_SUCCESS;
}

/* Enqueues the launches of one path. */
static closs_status_t enqueue(const closs_two_tower_launch *job, int fused, cudaStream_t stream) {
    const char *what = job->siglip ? "SigLIP kernels" : "CLIP kernels";
    if (fused) return closs_cuda_status(closs_launch_two_tower_fused(job, stream), what);
    int cublas_status = 0;
    const cudaError_t error = closs_launch_two_tower_chunked(job, stream, &cublas_status);
    if (cublas_status != 0)
        return closs_fail(CLOSS_STATUS_CUBLAS_ERROR, "cuBLAS returned status %d", cublas_status);
    return closs_cuda_status(error, what);
}

/* The call's outputs and options in the launch; the statistics the caller keeps, or the
 * workspace's. */
static void describe_job(const two_tower_call *call, float *const own_stats[2],
                         closs_two_tower_launch *job) {
    const closs_two_tower_range range = call->range;
    const int gradient =
        call->grad_a.data || call->grad_b.data || call->grad_logit_scale || call->grad_logit_bias;
    job->siglip = call->siglip;
    job->dtype = call->a.dtype;
    job->pairs = call->a.rows;
    job->rows_b = call->b.rows;
    job->dim = call->a.cols;
    job->a = call->a.data;
    job->b = call->b.data;
    job->lda = call->a.ld;
    job->ldb = call->b.ld;
    job->normalize = call->normalize;
    job->symmetric = call->symmetric;
    job->in_batch_negatives = call->in_batch_negatives;
    job->reduction = call->reduction;
    job->logit_scale = call->device_scale;
    job->logit_bias = call->device_bias;
    job->scale_value = (float)call->logit_scale;
    job->bias_value = (float)call->logit_bias;
    job->row_begin = range.begin;
    job->row_count = range.count;
    job->negatives_begin = range.negatives_begin;
    job->negatives_count = range.negatives_count;
    /* a backward that follows needs every pair's statistics; a forward alone the range's */
    job->stats_begin = call->backward ? 0 : range.begin;
    job->stats_count = call->backward ? job->pairs : range.count;
    job->forward = call->forward;
    job->loss = call->loss;
    job->row_stats = call->row_stats ? call->row_stats : own_stats[0];
    job->column_stats = call->column_stats && call->symmetric ? call->column_stats : own_stats[1];
    if (call->backward && call->forward) { /* forward_backward: the statistics stay inside */
        job->row_stats = own_stats[0];
        job->column_stats = own_stats[1];
    }
    job->upstream = call->upstream;
    if (call->backward && gradient) {
        job->grad_a = call->grad_a.data;
        job->grad_a_ld = call->grad_a.ld;
        job->grad_b = call->grad_b.data;
        job->grad_b_ld = call->grad_b.ld;
        job->grad_logit_scale = call->grad_logit_scale;
        job->grad_logit_bias = call->grad_logit_bias;
    }
}

static closs_status_t run(closs_handle_t handle, two_tower_call *call, void *workspace,
                          size_t workspace_bytes, closs_stream_t stream) {
    CLOSS_TRY(check_call(call, workspace, workspace_bytes));
    CLOSS_TRY(closs_begin_call(handle, stream, workspace, call->check_inputs));
    int fused = 0;
    CLOSS_TRY(choose_path(call->path, call->b.rows, call->a.cols, &fused));
    void *cublas = NULL;
    if (!fused) CLOSS_TRY(closs_handle_cublas(handle, stream, &cublas));
    closs_two_tower_launch job = {0};
    float *own_stats[2] = {NULL, NULL};
    workspace_layout measure = {NULL, 0};
    CLOSS_TRY(lay_out(&measure, call->a.rows, call->b.rows, call->a.cols, fused, &job, own_stats));
    void *base = NULL;
    CLOSS_TRY(closs_resolve_workspace(handle, workspace, workspace_bytes, (size_t)measure.used,
                                      stream, &base));
    workspace_layout layout = {base, 0};
    CLOSS_TRY(lay_out(&layout, call->a.rows, call->b.rows, call->a.cols, fused, &job, own_stats));
    describe_job(call, own_stats, &job);
    job.cublas = cublas;

    cudaStream_t cuda_stream = (cudaStream_t)stream;
    if (call->check_inputs) CLOSS_TRY(run_check(handle, call, cuda_stream));
    return closs_end_call(handle, workspace, stream, enqueue(&job, fused, cuda_stream));
}

static closs_status_t workspace_size(closs_path_t path, int64_t pairs, int64_t rows_b, int64_t dim,
                                     size_t *bytes) {
    int fused = 0;
    CLOSS_TRY(choose_path(path, rows_b, dim, &fused));
    closs_two_tower_launch job = {0};
    float *own_stats[2] = {NULL, NULL};
    workspace_layout measure = {NULL, 0};
    CLOSS_TRY(lay_out(&measure, pairs, rows_b, dim, fused, &job, own_stats));
    *bytes = closs_workspace_query((size_t)measure.used);
    return CLOSS_STATUS_SUCCESS;
}

#else /* no CUDA in this build: the same argument checks, then NOT_SUPPORTED */

static closs_status_t run(closs_handle_t handle, two_tower_call *call, void *workspace,
                          size_t workspace_bytes, closs_stream_t stream) {
    (void)handle, (void)stream;
    CLOSS_TRY(check_call(call, workspace, workspace_bytes));
    return closs_fail(CLOSS_STATUS_NOT_SUPPORTED, "closs was built without CUDA");
}

static closs_status_t workspace_size(closs_path_t path, int64_t pairs, int64_t rows_b, int64_t dim,
                                     size_t *bytes) {
    (void)path, (void)pairs, (void)rows_b, (void)dim, (void)bytes;
    return closs_fail(CLOSS_STATUS_NOT_SUPPORTED, "closs was built without CUDA");
}

#endif

/* What an entry point asks for, beside the inputs. */
typedef struct two_tower_outputs {
    int forward, backward;
    float *loss;
    float *row_stats, *column_stats; /* CLIP; forward: optional outputs; backward only: inputs */
    const float *upstream;
    closs_grad_t grad_a, grad_b;
    float *grad_logit_scale, *grad_logit_bias;
} two_tower_outputs;

static closs_status_t compute(closs_handle_t handle, two_tower_call call, two_tower_outputs out,
                              void *workspace, size_t workspace_bytes, closs_stream_t stream) {
    call.forward = out.forward;
    call.backward = out.backward;
    call.loss = out.loss;
    call.row_stats = out.row_stats;
    call.column_stats = out.column_stats;
    call.upstream = out.upstream;
    call.grad_a = out.grad_a;
    call.grad_b = out.grad_b;
    call.grad_logit_scale = out.grad_logit_scale;
    call.grad_logit_bias = out.grad_logit_bias;
    return run(handle, &call, workspace, workspace_bytes, stream);
}

/* The checks of a workspace query: the parameters (by the caller), the sizes, the range. */
static closs_status_t query(closs_path_t path, closs_two_tower_range requested, int grad_negatives,
                            int64_t pairs, int64_t rows_b, int64_t dim, closs_dtype_t dtype,
                            size_t *bytes) {
    CLOSS_TRY(check_sizes(pairs, rows_b, dim, dtype));
    closs_two_tower_range range;
    CLOSS_TRY(
        closs_resolve_two_tower_range(requested, grad_negatives, pairs, rows_b - pairs, &range));
    CLOSS_TRY(closs_check_not_null("bytes", bytes));
    return workspace_size(path, pairs, rows_b, dim, bytes);
}

#define TWO_TOWER_RANGE(p)                                                                         \
    ((closs_two_tower_range){(p)->row_begin, (p)->row_count, (p)->negatives_begin,                 \
                             (p)->negatives_count})

/* ---- CLIP ------------------------------------------------------------------------------------ */

static closs_status_t clip(closs_handle_t handle, const closs_clip_params *p, closs_matrix_t a,
                           closs_matrix_t b, const float *logit_scale, two_tower_outputs out,
                           void *workspace, size_t workspace_bytes, closs_stream_t stream) {
    closs_clear_error();
    CLOSS_TRY(closs_check_clip_params(p));
    two_tower_call call = {.a = a,
                           .b = b,
                           .normalize = p->normalize,
                           .symmetric = p->symmetric,
                           .in_batch_negatives = p->in_batch_negatives,
                           .grad_negatives = p->grad_negatives,
                           .check_inputs = p->check_inputs,
                           .logit_scale = p->logit_scale,
                           .reduction = p->reduction,
                           .path = p->path,
                           .range = TWO_TOWER_RANGE(p),
                           .device_scale = logit_scale};
    return compute(handle, call, out, workspace, workspace_bytes, stream);
}

closs_status_t closs_clip_workspace_size(closs_handle_t handle, const closs_clip_params *params,
                                         int64_t pairs, int64_t rows_b, int64_t dim,
                                         closs_dtype_t dtype, size_t *bytes) {
    closs_clear_error();
    (void)handle; /* not needed: the size is arithmetic on the arguments */
    CLOSS_TRY(closs_check_clip_params(params));
    return query(params->path, TWO_TOWER_RANGE(params), params->grad_negatives, pairs, rows_b, dim,
                 dtype, bytes);
}

closs_status_t closs_clip_forward(closs_handle_t handle, const closs_clip_params *params,
                                  closs_matrix_t a, closs_matrix_t b, const float *logit_scale,
                                  float *loss, float *row_stats, float *column_stats,
                                  void *workspace, size_t workspace_bytes, closs_stream_t stream) {
    return clip(
        handle, params, a, b, logit_scale,
        (two_tower_outputs){
            .forward = 1, .loss = loss, .row_stats = row_stats, .column_stats = column_stats},
        workspace, workspace_bytes, stream);
}

closs_status_t closs_clip_backward(closs_handle_t handle, const closs_clip_params *params,
                                   closs_matrix_t a, closs_matrix_t b, const float *logit_scale,
                                   const float *row_stats, const float *column_stats,
                                   const float *upstream, closs_grad_t grad_a, closs_grad_t grad_b,
                                   float *grad_logit_scale, void *workspace, size_t workspace_bytes,
                                   closs_stream_t stream) {
    /* the statistics are only read on a backward-only call */
    return clip(handle, params, a, b, logit_scale,
                (two_tower_outputs){.backward = 1,
                                    .row_stats = (float *)row_stats,
                                    .column_stats = (float *)column_stats,
                                    .upstream = upstream,
                                    .grad_a = grad_a,
                                    .grad_b = grad_b,
                                    .grad_logit_scale = grad_logit_scale},
                workspace, workspace_bytes, stream);
}

closs_status_t closs_clip_forward_backward(closs_handle_t handle, const closs_clip_params *params,
                                           closs_matrix_t a, closs_matrix_t b,
                                           const float *logit_scale, float *loss,
                                           closs_grad_t grad_a, closs_grad_t grad_b,
                                           float *grad_logit_scale, void *workspace,
                                           size_t workspace_bytes, closs_stream_t stream) {
    return clip(handle, params, a, b, logit_scale,
                (two_tower_outputs){.forward = 1,
                                    .backward = 1,
                                    .loss = loss,
                                    .grad_a = grad_a,
                                    .grad_b = grad_b,
                                    .grad_logit_scale = grad_logit_scale},
                workspace, workspace_bytes, stream);
}

/* ---- SigLIP ---------------------------------------------------------------------------------- */

static closs_status_t siglip(closs_handle_t handle, const closs_siglip_params *p, closs_matrix_t a,
                             closs_matrix_t b, const float *logit_scale, const float *logit_bias,
                             two_tower_outputs out, void *workspace, size_t workspace_bytes,
                             closs_stream_t stream) {
    closs_clear_error();
    CLOSS_TRY(closs_check_siglip_params(p));
    two_tower_call call = {.siglip = 1,
                           .a = a,
                           .b = b,
                           .normalize = p->normalize,
                           .in_batch_negatives = 1,
                           .grad_negatives = p->grad_negatives,
                           .check_inputs = p->check_inputs,
                           .logit_scale = p->logit_scale,
                           .logit_bias = p->logit_bias,
                           .reduction = p->reduction,
                           .path = p->path,
                           .range = TWO_TOWER_RANGE(p),
                           .device_scale = logit_scale,
                           .device_bias = logit_bias};
    return compute(handle, call, out, workspace, workspace_bytes, stream);
}

closs_status_t closs_siglip_workspace_size(closs_handle_t handle, const closs_siglip_params *params,
                                           int64_t pairs, int64_t rows_b, int64_t dim,
                                           closs_dtype_t dtype, size_t *bytes) {
    closs_clear_error();
    (void)handle; /* not needed: the size is arithmetic on the arguments */
    CLOSS_TRY(closs_check_siglip_params(params));
    return query(params->path, TWO_TOWER_RANGE(params), params->grad_negatives, pairs, rows_b, dim,
                 dtype, bytes);
}

closs_status_t closs_siglip_forward(closs_handle_t handle, const closs_siglip_params *params,
                                    closs_matrix_t a, closs_matrix_t b, const float *logit_scale,
                                    const float *logit_bias, float *loss, void *workspace,
                                    size_t workspace_bytes, closs_stream_t stream) {
    return siglip(handle, params, a, b, logit_scale, logit_bias,
                  (two_tower_outputs){.forward = 1, .loss = loss}, workspace, workspace_bytes,
                  stream);
}

closs_status_t closs_siglip_backward(closs_handle_t handle, const closs_siglip_params *params,
                                     closs_matrix_t a, closs_matrix_t b, const float *logit_scale,
                                     const float *logit_bias, const float *upstream,
                                     closs_grad_t grad_a, closs_grad_t grad_b,
                                     float *grad_logit_scale, float *grad_logit_bias,
                                     void *workspace, size_t workspace_bytes,
                                     closs_stream_t stream) {
    return siglip(handle, params, a, b, logit_scale, logit_bias,
                  (two_tower_outputs){.backward = 1,
                                      .upstream = upstream,
                                      .grad_a = grad_a,
                                      .grad_b = grad_b,
                                      .grad_logit_scale = grad_logit_scale,
                                      .grad_logit_bias = grad_logit_bias},
                  workspace, workspace_bytes, stream);
}

closs_status_t
closs_siglip_forward_backward(closs_handle_t handle, const closs_siglip_params *params,
                              closs_matrix_t a, closs_matrix_t b, const float *logit_scale,
                              const float *logit_bias, float *loss, closs_grad_t grad_a,
                              closs_grad_t grad_b, float *grad_logit_scale, float *grad_logit_bias,
                              void *workspace, size_t workspace_bytes, closs_stream_t stream) {
    return siglip(handle, params, a, b, logit_scale, logit_bias,
                  (two_tower_outputs){.forward = 1,
                                      .backward = 1,
                                      .loss = loss,
                                      .grad_a = grad_a,
                                      .grad_b = grad_b,
                                      .grad_logit_scale = grad_logit_scale,
                                      .grad_logit_bias = grad_logit_bias},
                  workspace, workspace_bytes, stream);
}
