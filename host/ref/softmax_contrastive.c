/* The M² core of NT-Xent and SupCon in the CPU reference (math in softmax_contrastive.h).
 *
 * Work is split into blocks of ANCHOR_BLOCK anchor rows: each pass over the M rows ẑ_k then serves
 * ANCHOR_BLOCK anchors, which divides the memory traffic by that factor, and blocks are spread over
 * the OpenMP threads. Each anchor's sums run over k in increasing order, whatever the thread. */
#include "softmax_contrastive.h"

#include <math.h>
#include <string.h>

#include "ref_common.h"

enum { ANCHOR_BLOCK = 8 };
static const double normalize_eps = 1e-12;

double closs_ref_dot(const double *a, const double *b, int64_t dim) {
    /* Four partial sums: independent chains the compiler can keep in one vector register. */
    double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
    int64_t c = 0;
    for (; c + 4 <= dim; c += 4) {
        s0 += a[c] * b[c];
        s1 += a[c + 1] * b[c + 1];
        s2 += a[c + 2] * b[c + 2];
        s3 += a[c + 3] * b[c + 3];
    }
    for (; c < dim; ++c) s0 += a[c] * b[c];
    return (s0 + s1) + (s2 + s3);
}

int closs_ref_embed(closs_matrix_t z, int normalize, double *zhat, double *norms) {
    const int64_t dim = z.cols;
    int finite = 1;
    for (int64_t i = 0; i < z.rows; ++i) {
        double *row = zhat + i * dim;
        finite &= closs_ref_load_row(z, i, row);
        norms[i] = sqrt(closs_ref_dot(row, row, dim));
        if (!normalize) continue;
        double scale = 1.0 / (norms[i] > normalize_eps ? norms[i] : normalize_eps);
        for (int64_t c = 0; c < dim; ++c) row[c] *= scale;
    }
    return finite;
}

void closs_ref_embed_backward(const double *zhat, const double *norms, int normalize, int64_t rows,
                              int64_t dim, double *grad) {
    if (!normalize) return;
    for (int64_t i = 0; i < rows; ++i) {
        const double *unit = zhat + i * dim;
        double *g = grad + i * dim;
        if (norms[i] > normalize_eps) {
            /* ẑ = z/‖z‖: the Jacobian (I − ẑẑᵀ)/‖z‖ is symmetric. */
            double radial = closs_ref_dot(unit, g, dim);
            for (int64_t c = 0; c < dim; ++c) g[c] = (g[c] - unit[c] * radial) / norms[i];
        } else {
            /* ẑ = z/eps: a constant scale. */
            for (int64_t c = 0; c < dim; ++c) g[c] /= normalize_eps;
        }
    }
}

void closs_ref_softmax_lse(const double *zhat, int64_t rows, int64_t dim, double temperature,
                           int finite, int64_t anchor_begin, int64_t anchor_count, double *lse) {
    const double inv_t = 1.0 / temperature;
    const int64_t anchor_end = anchor_begin + anchor_count;
    if (!finite) {
        for (int64_t i = anchor_begin; i < anchor_end; ++i) lse[i] = NAN;
        return;
    }
    const int64_t blocks = (anchor_count + ANCHOR_BLOCK - 1) / ANCHOR_BLOCK;
    CLOSS_PARALLEL_FOR_IF(anchor_count * rows * dim >= CLOSS_PARALLEL_MIN_WORK)
    for (int64_t block = 0; block < blocks; ++block) {
        const int64_t first = anchor_begin + block * ANCHOR_BLOCK;
        const int count =
            (int)(anchor_end - first < ANCHOR_BLOCK ? anchor_end - first : ANCHOR_BLOCK);
        /* Online log-sum-exp: `sum` is Σ exp(x − max) over the terms seen so far. */
        double max[ANCHOR_BLOCK], sum[ANCHOR_BLOCK];
        for (int b = 0; b < count; ++b) {
            max[b] = -INFINITY;
            sum[b] = 0.0;
        }
        for (int64_t k = 0; k < rows; ++k) {
            const double *zk = zhat + k * dim;
            for (int b = 0; b < count; ++b) {
                if (first + b == k) continue;
                double x = closs_ref_logit(zhat + (first + b) * dim, zk, dim, inv_t);
                if (x > max[b]) {
                    sum[b] = sum[b] * exp(max[b] - x) + 1.0;
                    max[b] = x;
                } else {
                    sum[b] += exp(x - max[b]); /* NaN in x stays in the sum */
                }
            }
        }
        for (int b = 0; b < count; ++b) lse[first + b] = max[b] + log(sum[b]);
    }
}

void closs_ref_range_lse(const double *zhat, int64_t rows, int64_t dim, double temperature,
                         int finite, const double *given_stats, int all_rows, int64_t begin,
                         int64_t count, double *lse) {
    if (given_stats) memcpy(lse, given_stats, (size_t)rows * sizeof(double));
    else if (all_rows) closs_ref_softmax_lse(zhat, rows, dim, temperature, finite, 0, rows, lse);
    else closs_ref_softmax_lse(zhat, rows, dim, temperature, finite, begin, count, lse);
}

void closs_ref_softmax_backward(const double *zhat, int64_t rows, int64_t dim, double temperature,
                                const double *lse, const double *weights, int64_t row_begin,
                                int64_t row_count, double *dzhat) {
    const double inv_t = 1.0 / temperature;
    const int64_t row_end = row_begin + row_count;
    const int64_t blocks = (row_count + ANCHOR_BLOCK - 1) / ANCHOR_BLOCK;
    CLOSS_PARALLEL_FOR_IF(row_count * rows * dim >= CLOSS_PARALLEL_MIN_WORK)
    for (int64_t block = 0; block < blocks; ++block) {
        const int64_t first = row_begin + block * ANCHOR_BLOCK;
        const int count = (int)(row_end - first < ANCHOR_BLOCK ? row_end - first : ANCHOR_BLOCK);
        for (int64_t k = 0; k < rows; ++k) {
            const double *zk = zhat + k * dim;
            for (int b = 0; b < count; ++b) {
                const int64_t i = first + b;
                if (i == k) continue;
                double x = closs_ref_logit(zhat + i * dim, zk, dim, inv_t);
                double coefficient =
                    inv_t * (weights[i] * exp(x - lse[i]) + weights[k] * exp(x - lse[k]));
                double *gi = dzhat + (i - row_begin) * dim;
                for (int64_t c = 0; c < dim; ++c) gi[c] += coefficient * zk[c];
            }
        }
    }
}
