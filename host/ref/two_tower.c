/* The pieces CLIP and SigLIP share in the CPU reference (see two_tower.h).
 *
 * A walk takes its rows in blocks of ROW_BLOCK: each pass over the other tower then serves
 * ROW_BLOCK rows, which divides the memory traffic by that factor, and blocks are spread over the
 * OpenMP threads. Each row meets the other rows in increasing order, whatever the thread. */
#include "two_tower.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "ref_common.h"
#include "softmax_contrastive.h"
#include "validate.h"

enum { ROW_BLOCK = 8 };

closs_status_t closs_two_tower_check(const closs_two_tower_inputs *inputs,
                                     closs_two_tower_range *range) {
    const closs_matrix_t a = inputs->a, b = inputs->b;
    CLOSS_TRY(closs_check_matrix("a", a, CLOSS_REF_FLOAT_DTYPES, 1));
    CLOSS_TRY(closs_check_matrix("b", b, CLOSS_REF_FLOAT_DTYPES, 1));
    CLOSS_TRY(closs_check_tower_shapes(a, b));
    CLOSS_TRY(closs_resolve_two_tower_range(inputs->requested, inputs->grad_negatives, a.rows,
                                            b.rows - a.rows, range));
    if (!inputs->check_inputs) return CLOSS_STATUS_SUCCESS;
    CLOSS_TRY(closs_check_finite_matrix("a", a));
    return closs_check_finite_matrix("b", b);
}

/* Loads and embeds one tower; a row that is not finite becomes NaN. */
static void embed(closs_matrix_t m, int normalize, double *hat, double *norms) {
    closs_ref_embed(m, normalize, hat, norms);
    const int64_t dim = m.cols;
    for (int64_t r = 0; r < m.rows; ++r) {
        double *row = hat + r * dim;
        int finite = 1;
        /* A non-finite element stays non-finite through the normalisation (Inf·0 is NaN). */
        for (int64_t c = 0; c < dim; ++c) finite &= isfinite(row[c]) != 0;
        if (!finite)
            for (int64_t c = 0; c < dim; ++c) row[c] = NAN;
    }
}

closs_status_t closs_two_tower_load(closs_matrix_t a, closs_matrix_t b, int normalize,
                                    int64_t per_pair_values, closs_two_tower *towers) {
    const int64_t pairs = a.rows, rows_b = b.rows, dim = a.cols;
    int64_t rows = 0, elements = 0, per_row = 0, scratch = 0, total = 0;
    CLOSS_TRY(closs_add_size("two-tower buffers", pairs, rows_b, &rows));
    CLOSS_TRY(closs_add_size("two-tower buffers", dim, 1, &per_row)); /* the row and its norm */
    CLOSS_TRY(closs_mul_size("two-tower buffers", rows, per_row, &elements));
    CLOSS_TRY(closs_mul_size("two-tower buffers", per_pair_values, pairs, &scratch));
    CLOSS_TRY(closs_add_size("two-tower buffers", elements, scratch, &total));
    double *buffer = NULL;
    CLOSS_TRY(closs_ref_alloc("two-tower buffers", total, sizeof(double), (void **)&buffer));
    *towers =
        (closs_two_tower){.pairs = pairs, .rows_b = rows_b, .dim = dim, .normalize = normalize};
    towers->a_hat = buffer;
    towers->b_hat = towers->a_hat + pairs * dim;
    towers->a_norms = towers->b_hat + rows_b * dim;
    towers->b_norms = towers->a_norms + pairs;
    towers->scratch = towers->b_norms + rows_b;
    embed(a, normalize, towers->a_hat, towers->a_norms);
    embed(b, normalize, towers->b_hat, towers->b_norms);
    return CLOSS_STATUS_SUCCESS;
}

void closs_two_tower_free(closs_two_tower *towers) {
    free(towers->a_hat);
    towers->a_hat = NULL;
}

void closs_two_tower_walk_rows(const closs_two_tower_walk *walk, int64_t begin, int64_t count,
                               double *grad) {
    const int64_t dim = walk->dim, end = begin + count;
    const int64_t others = walk->others_end - walk->others_begin + (walk->partner_first ? 1 : 0);
    const int64_t blocks = (count + ROW_BLOCK - 1) / ROW_BLOCK;
    CLOSS_PARALLEL_FOR_IF(count * others * dim >= CLOSS_PARALLEL_MIN_WORK)
    for (int64_t block = 0; block < blocks; ++block) {
        const int64_t first = begin + block * ROW_BLOCK;
        const int rows = (int)(end - first < ROW_BLOCK ? end - first : ROW_BLOCK);
        for (int r = 0; r < rows; ++r) {
            const int64_t i = first + r;
            if (!walk->partner_first || (i >= walk->others_begin && i < walk->others_end)) continue;
            const double *partner = walk->others + i * dim;
            double coefficient =
                walk->visit(walk->context, i, i, closs_ref_dot(walk->rows + i * dim, partner, dim));
            double *g = grad ? grad + (i - begin) * dim : NULL;
            if (g)
                for (int64_t c = 0; c < dim; ++c) g[c] += coefficient * partner[c];
        }
        for (int64_t k = walk->others_begin; k < walk->others_end; ++k) {
            const double *other = walk->others + k * dim;
            for (int r = 0; r < rows; ++r) {
                const int64_t i = first + r;
                double coefficient = walk->visit(walk->context, i, k,
                                                 closs_ref_dot(walk->rows + i * dim, other, dim));
                double *g = grad ? grad + (i - begin) * dim : NULL;
                if (g)
                    for (int64_t c = 0; c < dim; ++c) g[c] += coefficient * other[c];
            }
        }
    }
}

void closs_two_tower_embed_backward(const closs_two_tower *towers, int b_tower, int64_t begin,
                                    int64_t count, double *grad) {
    const double *hat = b_tower ? towers->b_hat : towers->a_hat;
    const double *norms = b_tower ? towers->b_norms : towers->a_norms;
    closs_ref_embed_backward(hat + begin * towers->dim, norms + begin, towers->normalize, count,
                             towers->dim, grad);
}

double closs_two_tower_sum(const double *values, int64_t begin, int64_t count) {
    double total = 0.0;
    for (int64_t i = begin; i < begin + count; ++i) total += values[i];
    return total;
}

double closs_two_tower_lse_visit(void *context, int64_t row, int64_t other, double cosine) {
    closs_two_tower_lse *lse = context;
    if (other == row) return 0.0; /* the partner */
    const double x = lse->scale * cosine;
    if (x > lse->max[row]) {
        lse->sum[row] = lse->sum[row] * exp(lse->max[row] - x) + 1.0;
        lse->max[row] = x;
    } else {
        lse->sum[row] += exp(x - lse->max[row]); /* NaN in x stays in the sum */
    }
    return 0.0;
}
