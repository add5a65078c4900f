/* The per-tile mathematics of the FUSED NT-Xent/SupCon path (cuda/contrastive_fused.cu), in
 * float, plain C that nvcc also compiles: the kernels use these functions and
 * tests/test_contrastive_math.c runs the same algorithm with them on the CPU.
 *
 * Names as in contrastive_math.h (x_ij = ẑ_i·ẑ_j/τ, w_i the anchor's weight in the gradient,
 * a_i = w_i/|P(i)|), plus a shift c for the log-sum-exp:
 *   fixed shift (normalised and 1/τ ≤ CLOSS_FUSED_FIXED_SHIFT_LIMIT): c = 1/τ bounds every x_ij,
 *     so lse_i = c + log Σ_{j≠i} e^(x_ij − c) with one exponential per pair and no maximum.
 *     Every term e^(x_ij − c) ≥ e^(−2/τ) ≥ e^(−80) stays a normal float, and so does
 *     e^(c − lse_i) ≤ e^(2/τ) ≤ e^80 below.
 *   online maximum otherwise (unnormalised, or τ < 1/40): lse_i from (max, Σ e^(x − max)).
 * Backward: dẑ_i = Σ_{j≠i} G_ij ẑ_j with the positives folded into G (P(i) is symmetric:
 * k ∈ P(i) ⇔ i ∈ P(k)),
 *   G_ij = (1/τ)·(w_i e^(x_ij − lse_i) + w_j e^(x_ij − lse_j) − [j∈P(i)]·(a_i + a_j))
 *        = (1/τ)·(E_ij·(b_i + b_j) − [j∈P(i)]·(a_i + a_j)),  E_ij = e^(x_ij − c),
 *          b_i = w_i·e^(c − lse_i)  (fixed shift: one exponential per pair; the online case keeps
 *          the two exponentials).
 * A confident positive (p_ij → 1) makes its softmax and positive terms cancel: folded, they cancel
 * in one float per pair, before any product rounds them (bench/NOTES.md, "Accuracy where
 * positives are confident"). The forward's Σ_{k∈P(i)} x_ik is summed in the same tiles, so the
 * fused path needs no class sums: a positive is a column whose key equals the anchor's
 * (closs_fm_row_key). */
#ifndef CLOSS_CUDA_FUSED_MATH_H
#define CLOSS_CUDA_FUSED_MATH_H

#include <stdint.h>

#include "contrastive_math.h"

/* A block owns CLOSS_FUSED_TILE anchor rows and walks the columns in tiles of as many rows. Its
 * threads form (CLOSS_FUSED_TILE/4) × CLOSS_FUSED_LANES: thread (ty, tx) holds rows ty + 16p and
 * columns tx + 16q (p, q < 4) of each similarity tile, so column j of every tile is always handled
 * by lane tx = j mod 16, in increasing j. The dot products run over D in slices of
 * CLOSS_FUSED_SLICE columns. */
#define CLOSS_FUSED_TILE              64
#define CLOSS_FUSED_LANES             16
#define CLOSS_FUSED_SLICE             16
#define CLOSS_FUSED_THREADS           256
/* The backward keeps a block's 64 rows of dẑ in registers (D/4 floats per thread). */
#define CLOSS_FUSED_MAX_DIM           256
/* 1/τ up to which the fixed shift c = 1/τ is used with normalisation (τ ≥ 0.025). */
#define CLOSS_FUSED_FIXED_SHIFT_LIMIT 40.0f

CLOSS_CM_HD int closs_fm_fixed_shift(int normalize, float inv_temperature) {
    return normalize && inv_temperature <= CLOSS_FUSED_FIXED_SHIFT_LIMIT;
}

/* One term of the fixed-shift sum. */
CLOSS_CM_HD float closs_fm_push_fixed(float sum, float x, float shift) {
    return sum + expf(x - shift);
}

/* One term of the online log-sum-exp: one exponential (the rescale or the term). */
CLOSS_CM_HD closs_lse_partial closs_fm_push_online(closs_lse_partial p, float x) {
    if (x > p.max) {
        p.sum = p.sum * expf(p.max - x) + 1.0f; /* the empty partial: 0·e^(−∞) + 1 */
        p.max = x;
    } else {
        p.sum += expf(x - p.max);
    }
    return p;
}

CLOSS_CM_HD float closs_fm_lse_fixed(float sum, float shift) { return shift + logf(sum); }

/* b_i = w_i·e^(c − lse_i); 0 for an anchor with no other row (lse = −∞). */
CLOSS_CM_HD float closs_fm_softmax_weight(float w, float lse, float shift) {
    return lse == -INFINITY ? 0.0f : w * expf(shift - lse);
}

/* G_ij (j ≠ i) with the fixed shift, from b_i and b_j; `positive` is a_i + a_j for j ∈ P(i), else
 * 0. */
CLOSS_CM_HD float closs_fm_coefficient_fixed(float x, float shift, float b_i, float b_j,
                                             float positive, float inv_temperature) {
    return inv_temperature * (expf(x - shift) * (b_i + b_j) - positive);
}

/* G_ij (j ≠ i) with the online maximum, from w and lse of both anchors; `positive` as above. */
CLOSS_CM_HD float closs_fm_coefficient_online(float x, float lse_i, float lse_j, float w_i,
                                              float w_j, float positive, float inv_temperature) {
    return inv_temperature * (w_i * expf(x - lse_i) + w_j * expf(x - lse_j) - positive);
}

/* The keys that tell a positive pair (j ∈ P(i) ⇔ key of column j = key of anchor i, j ≠ i): for
 * NT-Xent the anchor's key is its partner's index and a column's its own; for SupCon both are the
 * row's class (class_of: −1 for a row without a positive, whose anchor key −2 matches nothing). */
CLOSS_CM_HD int closs_fm_row_key(int supcon, int64_t row, int64_t rows, int class_of_row) {
    if (supcon) return class_of_row < 0 ? -2 : class_of_row;
    return (int)(row < rows / 2 ? row + rows / 2 : row - rows / 2);
}
CLOSS_CM_HD int closs_fm_column_key(int supcon, int64_t column, int class_of_column) {
    return supcon ? class_of_column : (int)column;
}

/* dz from dẑ: (dẑ − ẑ·radial)/‖z‖ while ‖z‖ > eps, dẑ/eps below, dẑ without normalisation. */
CLOSS_CM_HD float closs_fm_unnormalize(float dzhat, float unit, float radial, float norm,
                                       int normalize) {
    const float eps = 1e-12f;
    if (!normalize) return dzhat;
    return norm > eps ? (dzhat - unit * radial) / norm : dzhat / eps;
}

#endif
