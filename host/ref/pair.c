/* Pair contrastive loss (Siamese; Hadsell, Chopra, LeCun 2006), CPU reference.
 *
 *   ℓ_i = y_i·d_i² + (1 − y_i)·h_i²,   h_i = max(0, m − d_i),
 *   d_i = ‖x1_i − x2_i‖ (EUCLIDEAN) or 1 − cos(x1_i, x2_i) (COSINE),
 *   ∂ℓ_i/∂d_i = 2·y_i·d_i − 2·(1 − y_i)·h_i, chained through ∂d_i/∂x1_i and ∂d_i/∂x2_i.
 */
#include <math.h>

#include "error.h"
#include "params.h"
#include "ref_common.h"
#include "rowwise.h"
#include "validate.h"

static double pair_row(const void *opaque, const double *const *rows, double y, int64_t dim,
                       double *const *grads, double *scratch) {
    (void)scratch;
    const closs_pair_params *params = opaque;
    double distance =
        closs_ref_distance(params->distance, rows[0], rows[1], dim, grads[0], grads[1]);
    double hinge = closs_ref_hinge(params->margin - distance);
    double dloss_ddistance = 2.0 * y * distance - 2.0 * (1.0 - y) * hinge;
    for (int k = 0; k < 2; ++k)
        if (grads[k])
            for (int64_t c = 0; c < dim; ++c) grads[k][c] *= dloss_ddistance;
    return y * distance * distance + (1.0 - y) * hinge * hinge;
}

closs_status_t closs_ref_pair(const closs_pair_params *params, closs_matrix_t x1, closs_matrix_t x2,
                              closs_vector_t y, const double *upstream, double *loss,
                              double *grad_x1, double *grad_x2) {
    closs_clear_error();
    CLOSS_TRY(closs_check_pair_params(params));
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
    return closs_ref_rowwise(&job, pair_row, params);
}
