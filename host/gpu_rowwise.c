/* GPU entry points of the row-wise losses (pair, triplet, cosine): argument checks, workspace,
 * check mode, then one launch of cuda/rowwise.cu. Every argument is checked before the device is
 * touched, and nothing is enqueued on an error. */
#include <stdint.h>

#include "error.h"
#include "gpu.h"
#include "params.h"
#include "rowwise_math.h"
#include "validate.h"

#ifdef CLOSS_WITH_CUDA
#    include "launch.h"
#endif

/* One call of a row-wise loss, whichever of forward, backward or both. */
typedef struct rowwise_call {
    closs_row_params row;
    closs_reduction_t reduction;
    int check_inputs;
    int input_count;
    const char *names[3];
    const char *grad_names[3];
    closs_matrix_t x[3];
    int has_labels;
    closs_vector_t y;
    int forward; /* the loss is wanted */
    float *loss;
    int backward;          /* the gradients are wanted */
    const float *upstream; /* backward only; NULL means 1 */
    closs_grad_t grad[3];
} rowwise_call;

static closs_status_t check_inputs(const rowwise_call *call) {
    for (int k = 0; k < call->input_count; ++k) {
        CLOSS_TRY(closs_check_device_matrix(call->names[k], call->x[k], CLOSS_GPU_FLOAT_DTYPES, 0));
        if (k == 0) continue;
        CLOSS_TRY(closs_check_same_shape(call->names[0], call->x[0], call->names[k], call->x[k]));
        if (call->x[k].dtype != call->x[0].dtype)
            return closs_fail(CLOSS_STATUS_INVALID_ARGUMENT,
                              "%s.dtype = %s but %s.dtype = %s: the inputs of a call share one "
                              "dtype",
                              call->names[k], closs_dtype_name(call->x[k].dtype), call->names[0],
                              closs_dtype_name(call->x[0].dtype));
    }
    if (call->has_labels)
        CLOSS_TRY(closs_check_device_vector("y", call->y, CLOSS_GPU_FLOAT_DTYPES, call->x[0].rows));
    return CLOSS_STATUS_SUCCESS;
}

/* The float values `loss` (forward) or `upstream` (backward) hold: one, or one per row for NONE. */
static size_t per_call_floats(const rowwise_call *call) {
    return call->reduction == CLOSS_REDUCTION_NONE ? (size_t)call->x[0].rows : 1;
}

/* No gradient, loss or caller's workspace shares memory with an input or another of them. */
static closs_status_t check_disjoint(const rowwise_call *call, closs_span workspace) {
    closs_span inputs[5], outputs[5] = {workspace};
    int input_count = 0, output_count = 1;
    for (int k = 0; k < call->input_count; ++k) {
        inputs[input_count++] =
            (closs_span){call->names[k], call->x[k].data, closs_matrix_span(call->x[k])};
        closs_matrix_t grad = call->x[k];
        grad.data = call->grad[k].data;
        grad.ld = call->grad[k].ld;
        outputs[output_count++] =
            (closs_span){call->grad_names[k], grad.data, closs_matrix_span(grad)};
    }
    if (call->has_labels)
        inputs[input_count++] = (closs_span){
            "y", call->y.data, (size_t)call->y.length * closs_dtype_size(call->y.dtype)};
    if (call->backward)
        inputs[input_count++] =
            (closs_span){"upstream", call->upstream, per_call_floats(call) * sizeof(float)};
    if (call->forward)
        outputs[output_count++] =
            (closs_span){"loss", call->loss, per_call_floats(call) * sizeof(float)};
    return closs_check_disjoint(outputs, output_count, inputs, input_count);
}

/* The outputs, and the caller's workspace (NULL: the handle's own) apart from everything else. */
static closs_status_t check_outputs(const rowwise_call *call, void *workspace,
                                    size_t workspace_bytes) {
    if (call->forward) {
        CLOSS_TRY(closs_check_not_null("loss", call->loss));
        CLOSS_TRY(closs_check_aligned("loss", call->loss, sizeof(float)));
    }
    if (call->backward) CLOSS_TRY(closs_check_aligned("upstream", call->upstream, sizeof(float)));
    for (int k = 0; k < call->input_count; ++k) {
        if (!call->grad[k].data) continue;
        /* A gradient has its input's shape and dtype, with its own leading dimension. */
        closs_matrix_t shape = call->x[k];
        shape.data = call->grad[k].data;
        shape.ld = call->grad[k].ld;
        CLOSS_TRY(closs_check_device_matrix(call->grad_names[k], shape, CLOSS_GPU_FLOAT_DTYPES, 0));
    }
    return check_disjoint(call, (closs_span){"workspace", workspace, workspace_bytes});
}

#ifdef CLOSS_WITH_CUDA

/* The per-block loss partials, before the alignment slack. */
static size_t layout_bytes_for(closs_handle_t handle, int64_t rows) {
    return (size_t)closs_rowwise_blocks(handle->multiprocessors, rows) * sizeof(float);
}

/* 16-byte loads and stores need every row start of every input and gradient 16-byte aligned. */
static int rows_are_aligned(const rowwise_call *call) {
    const size_t element = closs_dtype_size(call->x[0].dtype);
    for (int k = 0; k < call->input_count; ++k) {
        if ((uintptr_t)call->x[k].data % 16 || (size_t)call->x[k].ld * element % 16) return 0;
        if (call->backward && call->grad[k].data &&
            ((uintptr_t)call->grad[k].data % 16 || (size_t)call->grad[k].ld * element % 16))
            return 0;
    }
    return 1;
}

/* Check mode: the device looks for a non-finite input or a label outside [0, 1], and the host
 * waits for the answer before anything is computed. */
static closs_status_t run_check(closs_handle_t handle, const rowwise_call *call,
                                const closs_rowwise_launch *launch, cudaStream_t stream) {
    unsigned long long bad_rows[2];
    CLOSS_TRY(closs_run_check(handle, launch, stream, bad_rows));
    if (bad_rows[0] != UINT64_MAX)
        return closs_fail(CLOSS_STATUS_NONFINITE_INPUT,
                          "check mode found a non-finite input in row %llu of %s", bad_rows[0],
                          call->input_count == 3 ? "anchor, positive or negative" : "x1 or x2");
    if (bad_rows[1] != UINT64_MAX)
        return closs_fail(CLOSS_STATUS_INVALID_ARGUMENT,
                          "y[%llu]: check mode found a pair label outside [0, 1]", bad_rows[1]);
    return CLOSS_STATUS_SUCCESS;
}

static closs_status_t run(closs_handle_t handle, const rowwise_call *call, void *workspace,
                          size_t workspace_bytes, closs_stream_t stream) {
    CLOSS_TRY(check_inputs(call));
    CLOSS_TRY(check_outputs(call, workspace, workspace_bytes));
    CLOSS_TRY(closs_begin_call(handle, stream, workspace, call->check_inputs));
    const int64_t rows = call->x[0].rows;
    void *partials = NULL;
    CLOSS_TRY(closs_resolve_workspace(handle, workspace, workspace_bytes,
                                      layout_bytes_for(handle, rows), stream, &partials));

    closs_rowwise_launch launch = {
        .params = call->row,
        .input_count = call->input_count,
        .dtype = call->x[0].dtype,
        .rows = rows,
        .dim = call->x[0].cols,
        .y = call->has_labels ? call->y.data : NULL,
        .y_dtype = call->y.dtype,
        .reduction = call->reduction,
        .loss = call->loss,
        .upstream = call->upstream,
        .vectorized = rows_are_aligned(call),
        .blocks = closs_rowwise_blocks(handle->multiprocessors, rows),
        .partials = partials,
    };
    for (int k = 0; k < call->input_count; ++k) {
        launch.x[k] = call->x[k].data;
        launch.ld[k] = call->x[k].ld;
        if (call->backward) {
            launch.grad[k] = call->grad[k].data;
            launch.grad_ld[k] = call->grad[k].ld;
        }
    }
    cudaStream_t cuda_stream = (cudaStream_t)stream;
    if (call->check_inputs) CLOSS_TRY(run_check(handle, call, &launch, cuda_stream));
    return closs_end_call(
        handle, workspace, stream,
        closs_cuda_status(closs_launch_rowwise(&launch, cuda_stream), "row-wise kernel"));
}

static closs_status_t workspace_size(closs_handle_t handle, int64_t rows, int64_t dim,
                                     closs_dtype_t dtype, size_t *bytes) {
    CLOSS_TRY(closs_check_gpu_sizes(rows, dim, dtype, 0));
    CLOSS_TRY(closs_check_not_null("bytes", bytes));
    CLOSS_TRY(closs_check_handle(handle));
    *bytes = closs_workspace_query(layout_bytes_for(handle, rows));
    return CLOSS_STATUS_SUCCESS;
}

#else /* no CUDA in this build: the same argument checks, then NOT_SUPPORTED (no handle can        \
       * exist in such a build, so it is not asked for) */

static closs_status_t run(closs_handle_t handle, const rowwise_call *call, void *workspace,
                          size_t workspace_bytes, closs_stream_t stream) {
    (void)handle, (void)workspace, (void)workspace_bytes, (void)stream;
    CLOSS_TRY(check_inputs(call));
    CLOSS_TRY(check_outputs(call, workspace, workspace_bytes));
    return closs_fail(CLOSS_STATUS_NOT_SUPPORTED, "closs was built without CUDA");
}

static closs_status_t workspace_size(closs_handle_t handle, int64_t rows, int64_t dim,
                                     closs_dtype_t dtype, size_t *bytes) {
    (void)handle;
    CLOSS_TRY(closs_check_gpu_sizes(rows, dim, dtype, 0));
    CLOSS_TRY(closs_check_not_null("bytes", bytes));
    return closs_fail(CLOSS_STATUS_NOT_SUPPORTED, "closs was built without CUDA");
}

#endif

/* What an entry point asks for: the loss (forward), the gradients (backward), or both. */
typedef struct rowwise_outputs {
    int forward, backward;
    float *loss;
    const float *upstream; /* backward only; NULL means 1 */
    closs_grad_t grad[3];
} rowwise_outputs;

static rowwise_outputs forward_only(float *loss) {
    return (rowwise_outputs){.forward = 1, .loss = loss};
}

static rowwise_outputs backward_only(const float *upstream, closs_grad_t g0, closs_grad_t g1,
                                     closs_grad_t g2) {
    return (rowwise_outputs){.backward = 1, .upstream = upstream, .grad = {g0, g1, g2}};
}

static rowwise_outputs both(float *loss, closs_grad_t g0, closs_grad_t g1, closs_grad_t g2) {
    return (rowwise_outputs){.forward = 1, .backward = 1, .loss = loss, .grad = {g0, g1, g2}};
}

static const closs_grad_t no_grad = {NULL, 0};

/* A loss's call with the outputs its entry point asked for. */
static closs_status_t compute(closs_handle_t handle, rowwise_call call, rowwise_outputs out,
                              void *workspace, size_t workspace_bytes, closs_stream_t stream) {
    call.forward = out.forward;
    call.loss = out.loss;
    call.backward = out.backward;
    call.upstream = out.upstream;
    for (int k = 0; k < 3; ++k) call.grad[k] = out.grad[k];
    return run(handle, &call, workspace, workspace_bytes, stream);
}

/* The inputs of pair and cosine: rows x1 and x2 and a label y per pair. */
static rowwise_call labelled_pairs(closs_row_params row, closs_reduction_t reduction,
                                   int check_inputs, closs_matrix_t x1, closs_matrix_t x2,
                                   closs_vector_t y) {
    return (rowwise_call){
        .row = row,
        .reduction = reduction,
        .check_inputs = check_inputs,
        .input_count = 2,
        .names = {"x1", "x2"},
        .grad_names = {"grad_x1", "grad_x2"},
        .x = {x1, x2},
        .has_labels = 1,
        .y = y,
    };
}

/* Each loss has one body, which its _forward, _backward and _forward_backward entry points call
 * with their outputs: the parameters checked, then the call described. */

/* ---- pair ------------------------------------------------------------------------------------ */

static closs_status_t pair(closs_handle_t handle, const closs_pair_params *p, closs_matrix_t x1,
                           closs_matrix_t x2, closs_vector_t y, rowwise_outputs out,
                           void *workspace, size_t workspace_bytes, closs_stream_t stream) {
    closs_clear_error();
    CLOSS_TRY(closs_check_pair_params(p));
    const closs_row_params row = {CLOSS_ROW_PAIR, p->distance, (float)p->margin, 0, 0};
    return compute(handle, labelled_pairs(row, p->reduction, p->check_inputs, x1, x2, y), out,
                   workspace, workspace_bytes, stream);
}

closs_status_t closs_pair_workspace_size(closs_handle_t handle, const closs_pair_params *params,
                                         int64_t rows, int64_t dim, closs_dtype_t dtype,
                                         size_t *bytes) {
    closs_clear_error();
    CLOSS_TRY(closs_check_pair_params(params));
    return workspace_size(handle, rows, dim, dtype, bytes);
}

closs_status_t closs_pair_forward(closs_handle_t handle, const closs_pair_params *params,
                                  closs_matrix_t x1, closs_matrix_t x2, closs_vector_t y,
                                  float *loss, void *workspace, size_t workspace_bytes,
                                  closs_stream_t stream) {
    return pair(handle, params, x1, x2, y, forward_only(loss), workspace, workspace_bytes, stream);
}

closs_status_t closs_pair_backward(closs_handle_t handle, const closs_pair_params *params,
                                   closs_matrix_t x1, closs_matrix_t x2, closs_vector_t y,
                                   const float *upstream, closs_grad_t grad_x1,
                                   closs_grad_t grad_x2, void *workspace, size_t workspace_bytes,
                                   closs_stream_t stream) {
    return pair(handle, params, x1, x2, y, backward_only(upstream, grad_x1, grad_x2, no_grad),
                workspace, workspace_bytes, stream);
}

closs_status_t closs_pair_forward_backward(closs_handle_t handle, const closs_pair_params *params,
                                           closs_matrix_t x1, closs_matrix_t x2, closs_vector_t y,
                                           float *loss, closs_grad_t grad_x1, closs_grad_t grad_x2,
                                           void *workspace, size_t workspace_bytes,
                                           closs_stream_t stream) {
    return pair(handle, params, x1, x2, y, both(loss, grad_x1, grad_x2, no_grad), workspace,
                workspace_bytes, stream);
}

/* ---- triplet --------------------------------------------------------------------------------- */

static closs_status_t triplet(closs_handle_t handle, const closs_triplet_params *p,
                              closs_matrix_t anchor, closs_matrix_t positive,
                              closs_matrix_t negative, rowwise_outputs out, void *workspace,
                              size_t workspace_bytes, closs_stream_t stream) {
    closs_clear_error();
    CLOSS_TRY(closs_check_triplet_params(p));
    rowwise_call call = {
        .row = {CLOSS_ROW_TRIPLET, p->distance, (float)p->margin, p->swap, 0},
        .reduction = p->reduction,
        .check_inputs = p->check_inputs,
        .input_count = 3,
        .names = {"anchor", "positive", "negative"},
        .grad_names = {"grad_anchor", "grad_positive", "grad_negative"},
        .x = {anchor, positive, negative},
    };
    return compute(handle, call, out, workspace, workspace_bytes, stream);
}

closs_status_t closs_triplet_workspace_size(closs_handle_t handle,
                                            const closs_triplet_params *params, int64_t rows,
                                            int64_t dim, closs_dtype_t dtype, size_t *bytes) {
    closs_clear_error();
    CLOSS_TRY(closs_check_triplet_params(params));
    return workspace_size(handle, rows, dim, dtype, bytes);
}

closs_status_t closs_triplet_forward(closs_handle_t handle, const closs_triplet_params *params,
                                     closs_matrix_t anchor, closs_matrix_t positive,
                                     closs_matrix_t negative, float *loss, void *workspace,
                                     size_t workspace_bytes, closs_stream_t stream) {
    return triplet(handle, params, anchor, positive, negative, forward_only(loss), workspace,
                   workspace_bytes, stream);
}

closs_status_t closs_triplet_backward(closs_handle_t handle, const closs_triplet_params *params,
                                      closs_matrix_t anchor, closs_matrix_t positive,
                                      closs_matrix_t negative, const float *upstream,
                                      closs_grad_t grad_anchor, closs_grad_t grad_positive,
                                      closs_grad_t grad_negative, void *workspace,
                                      size_t workspace_bytes, closs_stream_t stream) {
    return triplet(handle, params, anchor, positive, negative,
                   backward_only(upstream, grad_anchor, grad_positive, grad_negative), workspace,
                   workspace_bytes, stream);
}

closs_status_t closs_triplet_forward_backward(closs_handle_t handle,
                                              const closs_triplet_params *params,
                                              closs_matrix_t anchor, closs_matrix_t positive,
                                              closs_matrix_t negative, float *loss,
                                              closs_grad_t grad_anchor, closs_grad_t grad_positive,
                                              closs_grad_t grad_negative, void *workspace,
                                              size_t workspace_bytes, closs_stream_t stream) {
    return triplet(handle, params, anchor, positive, negative,
                   both(loss, grad_anchor, grad_positive, grad_negative), workspace,
                   workspace_bytes, stream);
}

/* ---- cosine ---------------------------------------------------------------------------------- */

static closs_status_t cosine(closs_handle_t handle, const closs_cosine_params *p, closs_matrix_t x1,
                             closs_matrix_t x2, closs_vector_t y, rowwise_outputs out,
                             void *workspace, size_t workspace_bytes, closs_stream_t stream) {
    closs_clear_error();
    CLOSS_TRY(closs_check_cosine_params(p));
    const closs_row_params row = {CLOSS_ROW_COSINE, CLOSS_DISTANCE_COSINE, (float)p->margin, 0,
                                  p->squared};
    return compute(handle, labelled_pairs(row, p->reduction, p->check_inputs, x1, x2, y), out,
                   workspace, workspace_bytes, stream);
}

closs_status_t closs_cosine_workspace_size(closs_handle_t handle, const closs_cosine_params *params,
                                           int64_t rows, int64_t dim, closs_dtype_t dtype,
                                           size_t *bytes) {
    closs_clear_error();
    CLOSS_TRY(closs_check_cosine_params(params));
    return workspace_size(handle, rows, dim, dtype, bytes);
}

closs_status_t closs_cosine_forward(closs_handle_t handle, const closs_cosine_params *params,
                                    closs_matrix_t x1, closs_matrix_t x2, closs_vector_t y,
                                    float *loss, void *workspace, size_t workspace_bytes,
                                    closs_stream_t stream) {
    return cosine(handle, params, x1, x2, y, forward_only(loss), workspace, workspace_bytes,
                  stream);
}

closs_status_t closs_cosine_backward(closs_handle_t handle, const closs_cosine_params *params,
                                     closs_matrix_t x1, closs_matrix_t x2, closs_vector_t y,
                                     const float *upstream, closs_grad_t grad_x1,
                                     closs_grad_t grad_x2, void *workspace, size_t workspace_bytes,
                                     closs_stream_t stream) {
    return cosine(handle, params, x1, x2, y, backward_only(upstream, grad_x1, grad_x2, no_grad),
                  workspace, workspace_bytes, stream);
}

closs_status_t closs_cosine_forward_backward(closs_handle_t handle,
                                             const closs_cosine_params *params, closs_matrix_t x1,
                                             closs_matrix_t x2, closs_vector_t y, float *loss,
                                             closs_grad_t grad_x1, closs_grad_t grad_x2,
                                             void *workspace, size_t workspace_bytes,
                                             closs_stream_t stream) {
    return cosine(handle, params, x1, x2, y, both(loss, grad_x1, grad_x2, no_grad), workspace,
                  workspace_bytes, stream);
}
