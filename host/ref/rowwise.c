/* The row-wise driver (see rowwise.h). Rows are processed in order on one thread: these losses
 * are O(N·D) and the reference values clarity over speed here. */
#include "rowwise.h"

#include <math.h>
#include <stdlib.h>

#include "error.h"
#include "ref_common.h"
#include "validate.h"

static closs_status_t check_job(const closs_ref_rowwise_job *job) {
    for (int k = 0; k < job->input_count; ++k) {
        CLOSS_TRY(closs_check_matrix(job->names[k], job->inputs[k], CLOSS_REF_FLOAT_DTYPES, 0));
        if (k > 0)
            CLOSS_TRY(closs_check_same_shape(job->names[0], job->inputs[0], job->names[k],
                                             job->inputs[k]));
    }
    if (job->has_labels) {
        CLOSS_TRY(
            closs_check_vector("y", job->labels, CLOSS_REF_FLOAT_DTYPES, job->inputs[0].rows));
        CLOSS_TRY(closs_check_unit_interval("y", job->labels));
    }
    CLOSS_TRY(closs_check_not_null("loss", job->loss));
    for (int k = 0; k < job->input_count && job->check_inputs; ++k)
        CLOSS_TRY(closs_check_finite_matrix(job->names[k], job->inputs[k]));
    return CLOSS_STATUS_SUCCESS;
}

closs_status_t closs_ref_rowwise(const closs_ref_rowwise_job *job, closs_ref_row_loss_fn row_loss,
                                 const void *params) {
    CLOSS_TRY(check_job(job));
    const int64_t rows = job->inputs[0].rows, dim = job->inputs[0].cols;
    const int count = job->input_count;

    /* One block: the row losses, `count` input rows, `count` gradient rows, then scratch. */
    int64_t row_buffers = 0;
    CLOSS_TRY(
        closs_mul_size("row buffers", 2 * count + CLOSS_ROWWISE_SCRATCH_ROWS, dim, &row_buffers));
    double *block = NULL;
    CLOSS_TRY(closs_add_size("row buffers", rows, row_buffers, &row_buffers));
    CLOSS_TRY(closs_ref_alloc("row buffers", row_buffers, sizeof(double), (void **)&block));
    double *scratch = block + rows + 2 * count * dim;
    double *row_losses = block;
    double *in_rows[CLOSS_ROWWISE_MAX_INPUTS] = {0}, *grad_rows[CLOSS_ROWWISE_MAX_INPUTS] = {0};
    for (int k = 0; k < count; ++k) {
        in_rows[k] = block + rows + (2 * k) * dim;
        grad_rows[k] = job->grads[k] ? block + rows + (2 * k + 1) * dim : NULL;
    }

    for (int64_t i = 0; i < rows; ++i) {
        int finite = 1;
        for (int k = 0; k < count; ++k) finite &= closs_ref_load_row(job->inputs[k], i, in_rows[k]);
        double label = job->has_labels ? closs_ref_load_real(job->labels, i) : 0.0;
        row_losses[i] =
            row_loss(params, (const double *const *)in_rows, label, dim, grad_rows, scratch);
        /* A non-finite input row yields NaN even where a hinge would close over it. */
        double weight = finite ? closs_ref_row_weight(job->reduction, job->upstream, i, rows) : NAN;
        if (!finite) row_losses[i] = NAN;
        for (int k = 0; k < count; ++k) {
            if (!job->grads[k]) continue;
            double *out = job->grads[k] + i * dim;
            for (int64_t c = 0; c < dim; ++c) out[c] = weight * grad_rows[k][c];
        }
    }
    closs_ref_reduce(job->reduction, row_losses, rows, rows, job->loss);
    free(block);
    return CLOSS_STATUS_SUCCESS;
}
