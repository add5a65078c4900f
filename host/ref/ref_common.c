/* Shared pieces of the CPU reference (see ref_common.h). */
#include "ref_common.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "validate.h"

int closs_ref_load_row(closs_matrix_t m, int64_t row, double *out) {
    if (m.dtype == CLOSS_F64) {
        memcpy(out, (const double *)m.data + row * m.ld, (size_t)m.cols * sizeof(double));
    } else {
        const float *src = (const float *)m.data + row * m.ld;
        for (int64_t c = 0; c < m.cols; ++c) out[c] = (double)src[c];
    }
    int finite = 1;
    for (int64_t c = 0; c < m.cols; ++c) finite &= isfinite(out[c]) != 0;
    return finite;
}

double closs_ref_load_real(closs_vector_t v, int64_t i) {
    return v.dtype == CLOSS_F64 ? ((const double *)v.data)[i] : (double)((const float *)v.data)[i];
}

int64_t closs_ref_load_label(closs_vector_t v, int64_t i) {
    return v.dtype == CLOSS_I64 ? ((const int64_t *)v.data)[i]
                                : (int64_t)((const int32_t *)v.data)[i];
}

static double dot(const double *a, const double *b, int64_t dim) {
    double sum = 0.0;
    for (int64_t c = 0; c < dim; ++c) sum += a[c] * b[c];
    return sum;
}

double closs_ref_cos(const double *a, const double *b, int64_t dim, double *grad_a,
                     double *grad_b) {
    const double eps = 1e-8;
    double norm_a = sqrt(dot(a, a, dim)), norm_b = sqrt(dot(b, b, dim));
    double clamped_a = norm_a > eps ? norm_a : eps, clamped_b = norm_b > eps ? norm_b : eps;
    double cos = dot(a, b, dim) / (clamped_a * clamped_b);
    /* ∂cos/∂a = b/(n_a n_b) − cos·a/n_a² while ‖a‖ > eps; the second term vanishes below,
     * where the clamped norm no longer depends on a. */
    double self_a = norm_a > eps ? cos / (clamped_a * clamped_a) : 0.0;
    double self_b = norm_b > eps ? cos / (clamped_b * clamped_b) : 0.0;
    double cross = 1.0 / (clamped_a * clamped_b);
    for (int64_t c = 0; c < dim; ++c) {
        if (grad_a) grad_a[c] = b[c] * cross - a[c] * self_a;
        if (grad_b) grad_b[c] = a[c] * cross - b[c] * self_b;
    }
    return cos;
}

double closs_ref_distance(closs_distance_t kind, const double *a, const double *b, int64_t dim,
                          double *grad_a, double *grad_b) {
    if (kind == CLOSS_DISTANCE_COSINE) {
        double cos = closs_ref_cos(a, b, dim, grad_a, grad_b);
        for (int64_t c = 0; c < dim; ++c) {
            if (grad_a) grad_a[c] = -grad_a[c];
            if (grad_b) grad_b[c] = -grad_b[c];
        }
        return 1.0 - cos;
    }
    double squared = 0.0;
    for (int64_t c = 0; c < dim; ++c) squared += (a[c] - b[c]) * (a[c] - b[c]);
    double distance = kind == CLOSS_DISTANCE_SQEUCLIDEAN ? squared : sqrt(squared);
    /* ∂‖a−b‖²/∂a = 2(a−b); ∂‖a−b‖/∂a = (a−b)/‖a−b‖, taken as 0 at a == b (contract). */
    double scale = kind == CLOSS_DISTANCE_SQEUCLIDEAN ? 2.0 : distance > 0.0 ? 1.0 / distance : 0.0;
    for (int64_t c = 0; c < dim; ++c) {
        double g = scale * (a[c] - b[c]);
        if (grad_a) grad_a[c] = g;
        if (grad_b) grad_b[c] = -g;
    }
    return distance;
}

double closs_ref_row_weight(closs_reduction_t reduction, const double *upstream, int64_t row,
                            int64_t count) {
    if (reduction == CLOSS_REDUCTION_NONE) return upstream ? upstream[row] : 1.0;
    double u = upstream ? upstream[0] : 1.0;
    if (reduction == CLOSS_REDUCTION_SUM) return u;
    return count > 0 ? u / (double)count : 0.0;
}

void closs_ref_reduce(closs_reduction_t reduction, const double *row_losses, int64_t rows,
                      int64_t count, double *loss) {
    if (reduction == CLOSS_REDUCTION_NONE) {
        if (rows > 0) memcpy(loss, row_losses, (size_t)rows * sizeof(double));
        return;
    }
    double sum = 0.0;
    for (int64_t i = 0; i < rows; ++i) sum += row_losses[i];
    if (reduction == CLOSS_REDUCTION_MEAN && count > 0) sum /= (double)count;
    *loss = sum;
}

closs_status_t closs_ref_alloc(const char *what, int64_t count, size_t element_size, void **out) {
    int64_t bytes = 0;
    CLOSS_TRY(closs_mul_size(what, count > 0 ? count : 1, (int64_t)element_size, &bytes));
    if ((uint64_t)bytes > (uint64_t)SIZE_MAX)
        return closs_fail(CLOSS_STATUS_INVALID_ARGUMENT, "%s: %lld bytes do not fit in size_t",
                          what, (long long)bytes);
    *out = malloc((size_t)bytes);
    if (!*out)
        return closs_fail(CLOSS_STATUS_ALLOC_FAILED, "%s: could not allocate %lld bytes", what,
                          (long long)bytes);
    return CLOSS_STATUS_SUCCESS;
}

closs_status_t closs_ref_check_outputs(int backward, const double *loss, const double *stats,
                                       const double *grad_z) {
    if (!backward) return closs_check_not_null("loss", loss);
    CLOSS_TRY(closs_check_not_null("stats", stats));
    return closs_check_not_null("grad_z", grad_z);
}
