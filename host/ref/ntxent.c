/* NT-Xent (SimCLR, Chen et al. 2020), CPU reference.
 *
 *   z: 2N × D, rows i and i + N are two views of sample i; p(i) = (i + N) mod 2N.
 *   ℓ_i = − s_{i,p(i)}/τ + lse_i,   s_ik = ẑ_i·ẑ_k,   lse_i = log Σ_{k≠i} exp(s_ik/τ).
 *   ∂/∂ẑ_i = softmax part (softmax_contrastive.h) − (w_i + w_{p(i)})·ẑ_{p(i)}/τ, since p is an
 *   involution: ẑ_i appears in the positive term of anchor i and of anchor p(i).
 *   Then back through the normalisation.
 */
#include <math.h>
#include <stdlib.h>

#include "error.h"
#include "params.h"
#include "ref_common.h"
#include "softmax_contrastive.h"
#include "validate.h"

static closs_status_t check_arguments(const closs_ntxent_params *params, closs_matrix_t z,
                                      const double *loss) {
    CLOSS_TRY(closs_check_ntxent_params(params));
    CLOSS_TRY(closs_check_matrix("z", z, CLOSS_REF_FLOAT_DTYPES, 2));
    if (z.rows % 2 != 0)
        return closs_fail(CLOSS_STATUS_INVALID_ARGUMENT,
                          "z.rows = %lld: NT-Xent needs an even number of rows (two views of "
                          "each sample, z = cat(z1, z2))",
                          (long long)z.rows);
    CLOSS_TRY(closs_check_not_null("loss", loss));
    return params->check_inputs ? closs_check_finite_matrix("z", z) : CLOSS_STATUS_SUCCESS;
}

closs_status_t closs_ref_ntxent(const closs_ntxent_params *params, closs_matrix_t z,
                                const double *upstream, double *loss, double *grad_z) {
    closs_clear_error();
    CLOSS_TRY(check_arguments(params, z, loss));
    const int64_t rows = z.rows, dim = z.cols, half = rows / 2;
    const double temperature = params->temperature;

    double *zhat = NULL, *per_row = NULL;
    int64_t elements = 0, statistics = 0;
    CLOSS_TRY(closs_mul_size("z", rows, dim, &elements));
    CLOSS_TRY(closs_mul_size("per-row statistics", 4, rows, &statistics));
    CLOSS_TRY(closs_ref_alloc("normalised z", elements, sizeof(double), (void **)&zhat));
    closs_status_t status =
        closs_ref_alloc("per-row statistics", statistics, sizeof(double), (void **)&per_row);
    if (status != CLOSS_STATUS_SUCCESS) {
        free(zhat);
        return status;
    }
    double *norms = per_row, *lse = per_row + rows, *row_losses = per_row + 2 * rows;
    double *weights = per_row + 3 * rows;

    const int finite = closs_ref_embed(z, params->normalize, zhat, norms);
    closs_ref_softmax_lse(zhat, rows, dim, temperature, finite, lse);
    for (int64_t i = 0; i < rows; ++i) {
        int64_t partner = (i + half) % rows;
        row_losses[i] =
            -closs_ref_logit(zhat + i * dim, zhat + partner * dim, dim, 1.0 / temperature) + lse[i];
    }
    closs_ref_reduce(params->reduction, row_losses, rows, rows, loss);

    if (grad_z) {
        for (int64_t i = 0; i < rows; ++i)
            weights[i] = closs_ref_row_weight(params->reduction, upstream, i, rows);
        for (int64_t e = 0; e < rows * dim; ++e) grad_z[e] = 0.0;
        closs_ref_softmax_backward(zhat, rows, dim, temperature, lse, weights, grad_z);
        for (int64_t i = 0; i < rows; ++i) {
            int64_t partner = (i + half) % rows;
            double scale = (weights[i] + weights[partner]) / temperature;
            const double *zp = zhat + partner * dim;
            double *gi = grad_z + i * dim;
            for (int64_t c = 0; c < dim; ++c) gi[c] -= scale * zp[c];
        }
        closs_ref_embed_backward(zhat, norms, params->normalize, rows, dim, grad_z);
    }
    free(per_row);
    free(zhat);
    return CLOSS_STATUS_SUCCESS;
}
