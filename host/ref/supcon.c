/* Supervised contrastive loss (SupCon "L_out", Khosla et al. 2020), CPU reference.
 *
 *   P(i) = {p ≠ i : label_p = label_i},  A(i) = {a ≠ i},  s_ik = ẑ_i·ẑ_k,
 *   ℓ_i = (τ/τ_b)·( −(1/|P(i)|) Σ_{p∈P(i)} s_ip/τ + lse_i ),  ℓ_i = 0 when |P(i)| = 0.
 * The positive terms cost O(M·D) through per-class sums: with c = class of i,
 *   Σ_{p∈P(i)} s_ip = ẑ_i·C_c − ẑ_i·ẑ_i,   C_c = Σ_{j∈c} ẑ_j,
 * and their gradient, with anchor weights w (0 for anchors without a positive),
 *   ∂/∂ẑ_i = −(1/τ)·( (w_i/|P(i)|)·(C_c − ẑ_i) + W_c − (w_i/|P(i)|)·ẑ_i ),
 *   W_c = Σ_{j∈c} (w_j/|P(j)|)·ẑ_j   (ẑ_i is a positive of every other anchor of its class).
 * Labels are compacted to classes 0..K−1 by sorting (label, index) pairs.
 * With a row range (closs.h, "Row ranges") the loss covers the range's anchors over the global
 * valid count, and the gradient the range's rows: it needs every anchor's lse and weight, and
 * the class sums of all rows.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "params.h"
#include "ref_common.h"
#include "softmax_contrastive.h"
#include "validate.h"

typedef struct labelled_row {
    int64_t label;
    int64_t row;
} labelled_row;

static int compare_labelled_rows(const void *a, const void *b) {
    const labelled_row *x = a, *y = b;
    if (x->label != y->label) return x->label < y->label ? -1 : 1;
    return x->row < y->row ? -1 : (x->row > y->row);
}

/* class_of[i] in 0..K−1 and class_size[c]; returns K. `sorted` is scratch of M entries. */
static int64_t compact_labels(closs_vector_t labels, labelled_row *sorted, int64_t *class_of,
                              int64_t *class_size) {
    const int64_t rows = labels.length;
    for (int64_t i = 0; i < rows; ++i)
        sorted[i] = (labelled_row){closs_ref_load_label(labels, i), i};
    qsort(sorted, (size_t)rows, sizeof *sorted, compare_labelled_rows);
    int64_t classes = 0;
    for (int64_t s = 0; s < rows; ++s) {
        if (s == 0 || sorted[s].label != sorted[s - 1].label) class_size[classes++] = 0;
        class_of[sorted[s].row] = classes - 1;
        class_size[classes - 1] += 1;
    }
    return classes;
}

/* One call: the whole loss (closs_ref_supcon: loss, and grad_z when not NULL), the forward
 * (loss, valid and the range's stats) or the backward (grad_z from the given stats of all rows). */
typedef struct supcon_call {
    int backward;              /* closs_ref_supcon_backward */
    double *loss;              /* NULL in a backward */
    double *stats;             /* forward: the range's lse, may be NULL */
    const double *given_stats; /* backward: every row's lse */
    int64_t *valid;            /* may be NULL */
    const double *upstream;
    double *grad_z;
} supcon_call;

static closs_status_t check_arguments(const closs_supcon_params *params, closs_matrix_t z,
                                      closs_vector_t labels, const supcon_call *call,
                                      closs_row_range *range) {
    CLOSS_TRY(closs_check_supcon_params(params));
    CLOSS_TRY(closs_check_matrix("z", z, CLOSS_REF_FLOAT_DTYPES, 1));
    CLOSS_TRY(closs_check_vector("labels", labels, CLOSS_LABEL_DTYPES, z.rows));
    CLOSS_TRY(closs_resolve_row_range(closs_supcon_requested_range(params), z.rows, range));
    CLOSS_TRY(closs_ref_check_outputs(call->backward, call->loss, call->given_stats, call->grad_z));
    return params->check_inputs ? closs_check_finite_matrix("z", z) : CLOSS_STATUS_SUCCESS;
}

/* Everything the computation needs besides the outputs, in two allocations. */
typedef struct supcon_buffers {
    double *reals;     /* ẑ, class sums C, weighted sums W (M·D each), then 4 × M statistics */
    int64_t *integers; /* class_of (M), class_size (M), sorted pairs (2·M) */
} supcon_buffers;

static closs_status_t supcon(const closs_supcon_params *params, closs_matrix_t z,
                             closs_vector_t labels, const supcon_call *call) {
    closs_clear_error();
    closs_row_range range = {0, 0};
    CLOSS_TRY(check_arguments(params, z, labels, call, &range));
    const int64_t rows = z.rows, dim = z.cols;
    const int64_t begin = range.begin, end = range.begin + range.count;
    const double temperature = params->temperature;
    const double base_temperature =
        params->base_temperature != 0.0 ? params->base_temperature : temperature;
    const double scale = temperature / base_temperature;

    supcon_buffers buffers = {0};
    int64_t matrix_elements = 0;
    CLOSS_TRY(closs_mul_size("z", rows, dim, &matrix_elements));
    int64_t reals = 0, statistics = 0, integers = 0;
    CLOSS_TRY(closs_mul_size("SupCon buffers", 3, matrix_elements, &reals));
    CLOSS_TRY(closs_mul_size("SupCon buffers", 4, rows, &statistics));
    CLOSS_TRY(closs_add_size("SupCon buffers", reals, statistics, &reals));
    CLOSS_TRY(closs_mul_size("SupCon label buffers", 4, rows, &integers));
    CLOSS_TRY(closs_ref_alloc("SupCon buffers", reals, sizeof(double), (void **)&buffers.reals));
    closs_status_t status = closs_ref_alloc("SupCon label buffers", integers, sizeof(int64_t),
                                            (void **)&buffers.integers);
    if (status != CLOSS_STATUS_SUCCESS) {
        free(buffers.reals);
        return status;
    }
    double *zhat = buffers.reals, *class_sum = zhat + matrix_elements;
    double *weighted_sum = class_sum + matrix_elements;
    double *norms = weighted_sum + matrix_elements, *lse = norms + rows;
    double *row_losses = lse + rows, *weights = row_losses + rows;
    int64_t *class_of = buffers.integers, *class_size = class_of + rows;
    labelled_row *sorted = (labelled_row *)(class_size + rows);

    const int64_t classes = compact_labels(labels, sorted, class_of, class_size);
    const int finite = closs_ref_embed(z, params->normalize, zhat, norms);
    memset(class_sum, 0, (size_t)(classes * dim) * sizeof(double));
    for (int64_t i = 0; i < rows; ++i) {
        /* compact_labels set class_of[i] for every row (`sorted` is a permutation of the rows),
         * which the analyzer cannot follow through the scatter. */
        // NOLINTNEXTLINE(clang-analyzer-core.UndefinedBinaryOperatorResult)
        double *sum = class_sum + class_of[i] * dim;
        for (int64_t c = 0; c < dim; ++c) sum[c] += zhat[i * dim + c];
    }
    closs_ref_range_lse(zhat, rows, dim, temperature, finite, call->given_stats,
                        call->grad_z != NULL, begin, range.count, lse);

    /* MEAN divides by the anchors of ALL rows with a positive, whatever the range (closs.h,
     * "Row ranges"); `valid` counts the range's. */
    int64_t valid_count = 0, range_valid = 0;
    for (int64_t i = 0; i < rows; ++i) {
        const int valid = class_size[class_of[i]] > 1;
        valid_count += valid;
        range_valid += valid && i >= begin && i < end;
    }
    if (call->loss) {
        for (int64_t i = begin; i < end; ++i) {
            const int64_t positives = class_size[class_of[i]] - 1;
            /* No positive: ℓ_i = 0, unless a non-finite input must show (NaN reaches every
             * loss). */
            row_losses[i] = finite ? 0.0 : NAN;
            if (positives == 0) continue;
            const double *zi = zhat + i * dim;
            double positive_sum =
                closs_ref_dot(zi, class_sum + class_of[i] * dim, dim) - closs_ref_dot(zi, zi, dim);
            row_losses[i] = scale * (-positive_sum / ((double)positives * temperature) + lse[i]);
        }
        closs_ref_reduce(params->reduction, row_losses + begin, range.count, valid_count,
                         call->loss);
    }
    if (call->valid) *call->valid = range_valid;
    if (call->stats) memcpy(call->stats, lse + begin, (size_t)range.count * sizeof(double));

    double *grad_z = call->grad_z;
    if (grad_z) {
        for (int64_t i = 0; i < rows; ++i) {
            const int64_t positives = class_size[class_of[i]] - 1;
            weights[i] = positives > 0
                             ? scale * closs_ref_row_weight(params->reduction, call->upstream, i,
                                                            valid_count)
                             : 0.0;
        }
        memset(weighted_sum, 0, (size_t)(classes * dim) * sizeof(double));
        for (int64_t i = 0; i < rows; ++i) {
            const int64_t positives = class_size[class_of[i]] - 1;
            if (positives == 0) continue;
            double *sum = weighted_sum + class_of[i] * dim;
            for (int64_t c = 0; c < dim; ++c)
                sum[c] += weights[i] / (double)positives * zhat[i * dim + c];
        }
        for (int64_t e = 0; e < range.count * dim; ++e) grad_z[e] = 0.0;
        closs_ref_softmax_backward(zhat, rows, dim, temperature, lse, weights, begin, range.count,
                                   grad_z);
        for (int64_t i = begin; i < end; ++i) {
            const int64_t positives = class_size[class_of[i]] - 1;
            if (positives == 0) continue; /* a singleton class: no positive terms at all */
            const double own = weights[i] / (double)positives;
            const double *zi = zhat + i * dim, *sum = class_sum + class_of[i] * dim;
            const double *wsum = weighted_sum + class_of[i] * dim;
            double *gi = grad_z + (i - begin) * dim;
            for (int64_t c = 0; c < dim; ++c)
                gi[c] -= (own * (sum[c] - 2.0 * zi[c]) + wsum[c]) / temperature;
        }
        closs_ref_embed_backward(zhat + begin * dim, norms + begin, params->normalize, range.count,
                                 dim, grad_z);
    }
    free(buffers.integers);
    free(buffers.reals);
    return CLOSS_STATUS_SUCCESS;
}

closs_status_t closs_ref_supcon(const closs_supcon_params *params, closs_matrix_t z,
                                closs_vector_t labels, const double *upstream, double *loss,
                                double *grad_z, int64_t *valid) {
    const supcon_call call = {.loss = loss, .valid = valid, .upstream = upstream, .grad_z = grad_z};
    return supcon(params, z, labels, &call);
}

closs_status_t closs_ref_supcon_forward(const closs_supcon_params *params, closs_matrix_t z,
                                        closs_vector_t labels, double *loss, double *stats,
                                        int64_t *valid) {
    const supcon_call call = {.loss = loss, .stats = stats, .valid = valid};
    return supcon(params, z, labels, &call);
}

closs_status_t closs_ref_supcon_backward(const closs_supcon_params *params, closs_matrix_t z,
                                         closs_vector_t labels, const double *stats,
                                         const double *upstream, double *grad_z) {
    const supcon_call call = {
        .backward = 1, .given_stats = stats, .upstream = upstream, .grad_z = grad_z};
    return supcon(params, z, labels, &call);
}
