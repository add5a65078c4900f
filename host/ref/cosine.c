/* Cosine contrastive loss, CPU reference.
 *
 *   c_i = cos(x1_i, x2_i),  ℓ_i = y_i·(1 − c_i) + (1 − y_i)·h_i^q,  h_i = max(0, c_i − δ),
 *   q = 2 if squared else 1;  ∂ℓ_i/∂c_i = −y_i + (1 − y_i)·q·h_i^(q−1) (0 where h_i = 0),
 *   chained through ∂c_i/∂x1_i and ∂c_i/∂x2_i.
 */
#include <math.h>

#include "error.h"
#include "params.h"
#include "ref_common.h"
#include "rowwise.h"
#include "validate.h"

static double cosine_row(const void *opaque, const double *const *rows, double y, int64_t dim,
                         double *const *grads, double *scratch) {
    (void)scratch;
    const closs_cosine_params *params = opaque;
    double cos = closs_ref_cos(rows[0], rows[1], dim, grads[0], grads[1]);
    double hinge = closs_ref_hinge(cos - params->margin);
    /* The hinge's slope: 1 where open, 0 where closed (and at exactly 0), NaN with the input. */
    double open = hinge > 0.0 ? 1.0 : (isnan(hinge) ? hinge : 0.0);
    double dloss_dcos = params->squared ? -y + (1.0 - y) * 2.0 * hinge : -y + (1.0 - y) * open;
    for (int k = 0; k < 2; ++k)
        if (grads[k])
            for (int64_t c = 0; c < dim; ++c) grads[k][c] *= dloss_dcos;
    double penalty = params->squared ? hinge * hinge : hinge;
    return y * (1.0 - cos) + (1.0 - y) * penalty;
}

closs_status_t closs_ref_cosine(const closs_cosine_params *params, closs_matrix_t x1,
                                closs_matrix_t x2, closs_vector_t y, const double *upstream,
                                double *loss, double *grad_x1, double *grad_x2) {
    closs_clear_error();
    CLOSS_TRY(closs_check_cosine_params(params));
    closs_ref_rowwise_job job = {
        .input_count = 2,
        .names = {"x1", "x2"},
        .inputs = {x1, x2},
        .grads = {grad_x1, grad_x2},
        .has_labels = 1,
        .labels = y,
        .reduction = params->reduction,
        .check_inputs = params->check_inputs,
        .upstream = upstream,
        .loss = loss,
    };
    return closs_ref_rowwise(&job, cosine_row, params);
}
