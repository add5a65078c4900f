/* Private: the driver shared by the row-wise losses (pair, triplet, cosine). Each row's loss
 * depends only on that row of every input, so a loss supplies one function that computes ℓ_i and
 * ∂ℓ_i/∂(each input row); the driver checks the inputs, loads rows into double, applies the
 * reduction and the upstream gradient, and writes the outputs. */
#ifndef CLOSS_REF_ROWWISE_H
#define CLOSS_REF_ROWWISE_H

#include "closs.h"

#define CLOSS_ROWWISE_MAX_INPUTS 3

/* ℓ_i of one row; grads[k], when not NULL, receives ∂ℓ_i/∂rows[k] (dim doubles). `label` is
 * y_i for the losses that take pair labels, else 0. `scratch` has room for
 * CLOSS_ROWWISE_SCRATCH_ROWS·dim doubles. */
#define CLOSS_ROWWISE_SCRATCH_ROWS 4
typedef double (*closs_ref_row_loss_fn)(const void *params, const double *const *rows, double label,
                                        int64_t dim, double *const *grads, double *scratch);

typedef struct closs_ref_rowwise_job {
    int input_count;                             /* 2 or 3 */
    const char *names[CLOSS_ROWWISE_MAX_INPUTS]; /* for error messages: "x1", "anchor", ... */
    closs_matrix_t inputs[CLOSS_ROWWISE_MAX_INPUTS];
    double *grads[CLOSS_ROWWISE_MAX_INPUTS]; /* dense outputs, or NULL to skip */
    int has_labels;                          /* pair labels y in [0, 1] */
    closs_vector_t labels;
    closs_reduction_t reduction;
    int check_inputs; /* check mode: inputs must be finite */
    const double *upstream;
    double *loss;
} closs_ref_rowwise_job;

/* Validates the job's inputs and outputs (the loss's own parameters are checked by the caller
 * first), then computes. */
closs_status_t closs_ref_rowwise(const closs_ref_rowwise_job *job, closs_ref_row_loss_fn row_loss,
                                 const void *params);

#endif
