/* Private: what CLIP and SigLIP share in the CPU reference.
 *
 * Both losses are sums over the logit matrix X of a (N rows) against b (N + K rows), x_ij built
 * from c_ij = â_i·b̂_j and the logit scale s. With G_ij = ∂L/∂x_ij (of the reduced loss, upstream
 * included) their gradients are
 *   ∂L/∂â_i = s·Σ_j G_ij·b̂_j,   ∂L/∂b̂_j = s·Σ_i G_ij·â_i,   ∂L/∂s = Σ_ij G_ij·c_ij,
 * then back through the normalisation. X is never stored: a row of one tower walks the other,
 * recomputing each c_ij, and G_ij follows from c_ij and O(N) per-row values. A walked row belongs
 * to one thread and meets the other tower's rows in a fixed order, so no sum depends on the
 * number of threads.
 *
 * A row of a or b holding NaN or Inf becomes all NaN on loading: every c_ij it enters is NaN, and
 * so is every loss that sums such a term, where exp(−∞) = 0 or softplus(−∞) = 0 would hide it. */
#ifndef CLOSS_REF_TWO_TOWER_H
#define CLOSS_REF_TWO_TOWER_H

#include <math.h>

#include "closs.h"
#include "params.h"

/* The arguments CLIP and SigLIP check alike. */
typedef struct closs_two_tower_inputs {
    closs_matrix_t a, b;
    closs_two_tower_range requested; /* the params' row range fields */
    int grad_negatives;
    int check_inputs;
} closs_two_tower_inputs;

/* The inputs of a call with `params` (CLIP's or SigLIP's: the fields share their names). */
#define CLOSS_TWO_TOWER_INPUTS(params, a_matrix, b_matrix)                                         \
    ((closs_two_tower_inputs){                                                                     \
        .a = (a_matrix),                                                                           \
        .b = (b_matrix),                                                                           \
        .requested = {(params)->row_begin, (params)->row_count, (params)->negatives_begin,         \
                      (params)->negatives_count},                                                  \
        .grad_negatives = (params)->grad_negatives,                                                \
        .check_inputs = (params)->check_inputs,                                                    \
    })

/* a and b f32 or f64 with a.rows ≥ 1, b.rows ≥ a.rows and one dim; the range resolved against
 * N = a.rows and K = b.rows − a.rows; in check mode, every element finite. */
closs_status_t closs_two_tower_check(const closs_two_tower_inputs *inputs,
                                     closs_two_tower_range *range);

/* The towers in double, and `per_pair_values` × N doubles of scratch for the loss's per-row
 * values, in one allocation. */
typedef struct closs_two_tower {
    int64_t pairs, rows_b, dim; /* N, N + K, D */
    int normalize;
    double *a_hat, *b_hat;     /* dense N × D and (N + K) × D */
    double *a_norms, *b_norms; /* ‖a_i‖, ‖b_j‖ */
    double *scratch;
} closs_two_tower;

/* Loads and embeds both towers (closs_ref_embed's normalisation); ALLOC_FAILED or
 * INVALID_ARGUMENT (sizes beyond 64 bits) with nothing allocated otherwise. */
closs_status_t closs_two_tower_load(closs_matrix_t a, closs_matrix_t b, int normalize,
                                    int64_t per_pair_values, closs_two_tower *towers);
void closs_two_tower_free(closs_two_tower *towers);

/* visit(context, row, other, c) is called for every pair a walk meets (row of the walked tower,
 * other of the other tower, c their dot product) and returns the coefficient of the other tower's
 * row in the walked row's gradient (s·G for a gradient walk). It may update per-row values of
 * `row`: only the thread that owns the row calls it for that row, in the walk's order. */
typedef double (*closs_two_tower_visit)(void *context, int64_t row, int64_t other, double cosine);

typedef struct closs_two_tower_walk {
    const double *rows;   /* the walked tower, dense, dim columns */
    const double *others; /* the tower each row meets */
    int64_t dim;
    int partner_first; /* 1: row i first meets others' row i (its partner), unless within
                          [others_begin, others_end) */
    int64_t others_begin, others_end; /* then these rows of `others`, in increasing order */
    closs_two_tower_visit visit;
    void *context;
} closs_two_tower_walk;

/* Walks the rows [begin, begin + count). When `grad` (count × dim, zeroed by the caller) is not
 * NULL, each visit's coefficient times the other row is added to the walked row's gradient. */
void closs_two_tower_walk_rows(const closs_two_tower_walk *walk, int64_t begin, int64_t count,
                               double *grad);

/* The gradient rows of one tower's rows [begin, begin + count), computed with respect to the
 * embedded rows and taken back through the normalisation, in place. */
void closs_two_tower_embed_backward(const closs_two_tower *towers, int b_tower, int64_t begin,
                                    int64_t count, double *grad);

/* values[begin] + ... + values[begin + count − 1], in that order: a range's share of ∂/∂s or ∂/∂β
 * from its rows' shares. */
double closs_two_tower_sum(const double *values, int64_t begin, int64_t count);

/* Online log-sum-exp of every walked row over the logits s·c it meets but its partner's (a visit
 * that returns 0): max and sum are per walked row, `scale` is s. lse = max + log(sum) after the
 * walk (−∞ when the row met nothing else). */
typedef struct closs_two_tower_lse {
    double scale;
    double *max, *sum;
} closs_two_tower_lse;
double closs_two_tower_lse_visit(void *context, int64_t row, int64_t other, double cosine);

/* log(1 + eˣ) and 1 / (1 + e⁻ˣ), never overflowing (exp of a non-positive number only); NaN stays
 * NaN. */
static inline double closs_ref_softplus(double x) {
    return x > 0.0 ? x + log1p(exp(-x)) : log1p(exp(x));
}
static inline double closs_ref_sigmoid(double x) {
    if (x >= 0.0) return 1.0 / (1.0 + exp(-x));
    const double e = exp(x);
    return e / (1.0 + e);
}

#endif
