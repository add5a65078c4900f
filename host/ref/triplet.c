/* Triplet loss (FaceNet, Schroff et al. 2015), CPU reference.
 *
 *   ℓ_i = max(0, d(a_i, p_i) − d⁻_i + α),  d⁻_i = d(a_i, n_i), or with swap
 *   d⁻_i = min(d(a_i, n_i), d(p_i, n_i)); the pair that attains the minimum takes the gradient
 *   (a tie keeps (a, n)). The hinge has gradient 0 at exactly 0 (contract).
 */
#include <math.h>

#include "error.h"
#include "params.h"
#include "ref_common.h"
#include "rowwise.h"
#include "validate.h"

static double triplet_row(const void *opaque, const double *const *rows, double label, int64_t dim,
                          double *const *grads, double *scratch) {
    (void)label;
    const closs_triplet_params *params = opaque;
    const closs_distance_t kind = params->distance;
    const double *anchor = rows[0], *positive = rows[1], *negative = rows[2];

    double positive_distance = closs_ref_distance(kind, anchor, positive, dim, NULL, NULL);
    double negative_distance = closs_ref_distance(kind, anchor, negative, dim, NULL, NULL);
    int swapped = 0;
    if (params->swap) {
        double pn_distance = closs_ref_distance(kind, positive, negative, dim, NULL, NULL);
        swapped = pn_distance < negative_distance;
        if (swapped) negative_distance = pn_distance;
    }
    double loss = closs_ref_hinge(positive_distance - negative_distance + params->margin);
    if (!grads[0] && !grads[1] && !grads[2]) return loss;

    /* ∂ℓ/∂· = active·(∂d⁺/∂· − ∂d⁻/∂·), active = 1 where the hinge is open, NaN with the loss. */
    double active = loss > 0.0 ? 1.0 : (isnan(loss) ? loss : 0.0);
    double *dplus_anchor = scratch, *dplus_positive = scratch + dim;
    double *dminus_first = scratch + 2 * dim, *dminus_negative = scratch + 3 * dim;
    closs_ref_distance(kind, anchor, positive, dim, dplus_anchor, dplus_positive);
    closs_ref_distance(kind, swapped ? positive : anchor, negative, dim, dminus_first,
                       dminus_negative);
    for (int64_t c = 0; c < dim; ++c) {
        double anchor_part = dplus_anchor[c] - (swapped ? 0.0 : dminus_first[c]);
        double positive_part = dplus_positive[c] - (swapped ? dminus_first[c] : 0.0);
        if (grads[0]) grads[0][c] = active * anchor_part;
        if (grads[1]) grads[1][c] = active * positive_part;
        if (grads[2]) grads[2][c] = -active * dminus_negative[c];
    }
    return loss;
}

closs_status_t closs_ref_triplet(const closs_triplet_params *params, closs_matrix_t anchor,
                                 closs_matrix_t positive, closs_matrix_t negative,
                                 const double *upstream, double *loss, double *grad_anchor,
                                 double *grad_positive, double *grad_negative) {
    closs_clear_error();
    CLOSS_TRY(closs_check_triplet_params(params));
    closs_ref_rowwise_job job = {
        .input_count = 3,
        .names = {"anchor", "positive", "negative"},
        .inputs = {anchor, positive, negative},
        .grads = {grad_anchor, grad_positive, grad_negative},
        .reduction = params->reduction,
        .check_inputs = params->check_inputs,
        .upstream = upstream,
        .loss = loss,
    };
    return closs_ref_rowwise(&job, triplet_row, params);
}
