/* NT-Xent (SimCLR, Chen et al. 2020), CPU reference.
 *
 *   z: 2N × D, rows i and i + N are two views of sample i; p(i) = (i + N) mod 2N.
 *   ℓ_i = − s_{i,p(i)}/τ + lse_i,   s_ik = ẑ_i·ẑ_k,   lse_i = log Σ_{k≠i} exp(s_ik/τ).
 *   ∂/∂ẑ_i = softmax part (softmax_contrastive.h) − (w_i + w_{p(i)})·ẑ_{p(i)}/τ, since p is an
 *   involution: ẑ_i appears in the positive term of anchor i and of anchor p(i).
 *   Then back through the normalisation.
 * With a row range (closs.h, "Row ranges") the loss covers the range's anchors over the global
 * denominator M, and the gradient the range's rows: it needs every anchor's lse and weight.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "params.h"
#include "ref_common.h"
#include "softmax_contrastive.h"
#include "validate.h"

/* One call: the whole loss (closs_ref_ntxent: loss, and grad_z when not NULL), the forward
 * (loss and the range's stats) or the backward (grad_z from the given stats of all rows). */
typedef struct ntxent_call {
    int backward;              /* closs_ref_ntxent_backward */
    double *loss;              /* NULL in a backward */
    double *stats;             /* forward: the range's lse, may be NULL */
    const double *given_stats; /* backward: every row's lse */
    const double *upstream;
    double *grad_z;
} ntxent_call;

static closs_status_t check_arguments(const closs_ntxent_params *params, closs_matrix_t z,
                                      const ntxent_call *call, closs_row_range *range) {
    CLOSS_TRY(closs_check_ntxent_params(params));
    CLOSS_TRY(closs_check_matrix("z", z, CLOSS_REF_FLOAT_DTYPES, 2));
    if (z.rows % 2 != 0)
        return closs_fail(CLOSS_STATUS_INVALID_ARGUMENT,
                          "z.rows = %lld: NT-Xent needs an even number of rows (two views of "
                          "each sample, z = cat(z1, z2))",
                          (long long)z.rows);
    CLOSS_TRY(closs_resolve_row_range(closs_ntxent_requested_range(params), z.rows, range));
    CLOSS_TRY(closs_ref_check_outputs(call->backward, call->loss, call->given_stats, call->grad_z));
    return params->check_inputs ? closs_check_finite_matrix("z", z) : CLOSS_STATUS_SUCCESS;
}

static closs_status_t ntxent(const closs_ntxent_params *params, closs_matrix_t z,
                             const ntxent_call *call) {
    closs_clear_error();
    closs_row_range range = {0, 0};
    CLOSS_TRY(check_arguments(params, z, call, &range));
    const int64_t rows = z.rows, dim = z.cols, half = rows / 2;
    const int64_t begin = range.begin, end = range.begin + range.count;
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
    closs_ref_range_lse(zhat, rows, dim, temperature, finite, call->given_stats,
                        call->grad_z != NULL, begin, range.count, lse);
    if (call->loss) {
        for (int64_t i = begin; i < end; ++i) {
            int64_t partner = (i + half) % rows;
            row_losses[i] =
                -closs_ref_logit(zhat + i * dim, zhat + partner * dim, dim, 1.0 / temperature) +
                lse[i];
        }
        /* MEAN divides by all M anchors, whatever the range (closs.h, "Row ranges"). */
        closs_ref_reduce(params->reduction, row_losses + begin, range.count, rows, call->loss);
    }
    if (call->stats) memcpy(call->stats, lse + begin, (size_t)range.count * sizeof(double));

    double *grad_z = call->grad_z;
    if (grad_z) {
        for (int64_t i = 0; i < rows; ++i)
            weights[i] = closs_ref_row_weight(params->reduction, call->upstream, i, rows);
        for (int64_t e = 0; e < range.count * dim; ++e) grad_z[e] = 0.0;
        closs_ref_softmax_backward(zhat, rows, dim, temperature, lse, weights, begin, range.count,
                                   grad_z);
        for (int64_t i = begin; i < end; ++i) {
            int64_t partner = (i + half) % rows;
            double scale = (weights[i] + weights[partner]) / temperature;
            const double *zp = zhat + partner * dim;
            double *gi = grad_z + (i - begin) * dim;
            for (int64_t c = 0; c < dim; ++c) gi[c] -= scale * zp[c];
        }
        closs_ref_embed_backward(zhat + begin * dim, norms + begin, params->normalize, range.count,
                                 dim, grad_z);
    }
    free(per_row);
    free(zhat);
    return CLOSS_STATUS_SUCCESS;
}

closs_status_t closs_ref_ntxent(const closs_ntxent_params *params, closs_matrix_t z,
                                const double *upstream, double *loss, double *grad_z) {
    const ntxent_call call = {.loss = loss, .upstream = upstream, .grad_z = grad_z};
    return ntxent(params, z, &call);
}

closs_status_t closs_ref_ntxent_forward(const closs_ntxent_params *params, closs_matrix_t z,
                                        double *loss, double *stats) {
    const ntxent_call call = {.loss = loss, .stats = stats};
    return ntxent(params, z, &call);
}

closs_status_t closs_ref_ntxent_backward(const closs_ntxent_params *params, closs_matrix_t z,
                                         const double *stats, const double *upstream,
                                         double *grad_z) {
    const ntxent_call call = {
        .backward = 1, .given_stats = stats, .upstream = upstream, .grad_z = grad_z};
    return ntxent(params, z, &call);
}
