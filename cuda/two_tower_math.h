/* The per-element and per-pair mathematics of CLIP and SigLIP on the GPU, in float; plain C that
 * nvcc also compiles (the kernels of cuda/two_tower_*.cuh use these functions, and the CPU
 * harness runs those kernels with them).
 *
 * Notation (docs/contract.md §6–7, host/ref/clip.c, host/ref/siglip.c): â_i, b̂_j the embedded rows
 * (normalised or not), c_ij = â_i·b̂_j, s the logit scale, β SigLIP's bias, N pairs, N + K rows of
 * b, w_i the weight of ℓ_i in the reduced loss (the upstream gradient included), h = ½ when CLIP
 * is symmetric, else 1.
 *
 * CLIP, x_ij = s·c_ij. The statistics are the log-sum-exps of each pair's negatives,
 *   n_i = log Σ_{j∈C(i), j≠i} e^(x_ij),   m_j = log Σ_{k<N, k≠j} e^(x_kj),
 * computed with an online maximum (any s: a fixed shift c = s would let e^(x − c) ≥ e^(−2s)
 * underflow to 0 for s ≳ 44, and s goes to 100). Then
 *   ℓ_i  = h·softplus(n_i − x_ii) + [symmetric]·h·softplus(m_i − x_ii),
 *   r_i  = x_ii + softplus(n_i − x_ii),   q_j = x_jj + softplus(m_j − x_jj)   (the full lse),
 *   G_ij = h·w_i·e^(x_ij − r_i) + [symmetric, j < N]·h·w_j·e^(x_ij − q_j)   (j ≠ i, j ∈ C(i)),
 *   G_ii = −h·w_i·σ(n_i − x_ii) − [symmetric]·h·w_i·σ(m_i − x_ii).
 * Every exponent is ≤ 0 (up to rounding), so nothing overflows at any finite s. An element's
 * coefficient is the sum of an a-side term (row i's factor f = h·w_i and lse r_i) and a b-side
 * term (column j's f = [symmetric, j < N]·h·w_j and q_j, or f = 0 and lse +∞): the same formula
 * whichever tower walks, with the walking tower's factors for the rows and the other's for the
 * columns.
 *
 * SigLIP, x_ij = s·c_ij + β, z_ij = 1 on the diagonal i = j < N and −1 elsewhere:
 *   off the diagonal: ℓ term softplus(x_ij),   G_ij = w_i·σ(x_ij);
 *   on it:            ℓ term softplus(−x_ii),  G_ii = −w_i·σ(−x_ii).
 *
 * Gradients: ∂L/∂â_i = s·Σ_j G_ij·b̂_j, ∂L/∂b̂_j = s·Σ_i G_ij·â_i, ∂L/∂s = Σ_ij G_ij·c_ij, and
 * SigLIP's ∂L/∂β = Σ_ij G_ij. NaN in an input reaches every value computed from it: the
 * embedding turns a row holding NaN or Inf into NaN (its 1/‖row‖ is NaN), and every function
 * here keeps NaN. */
#ifndef CLOSS_CUDA_TWO_TOWER_MATH_H
#define CLOSS_CUDA_TWO_TOWER_MATH_H

#include <math.h>

#include "contrastive_math.h" /* CLOSS_CM_HD, closs_lse_partial */

/* e^(−|x|): the one exponential softplus and σ share. */
CLOSS_CM_HD float closs_tt_exp_neg_abs(float x) { return expf(-fabsf(x)); }

/* log(1 + e^x) = max(x, 0) + log1p(e^(−|x|)), from e = e^(−|x|); −∞ gives 0, +∞ gives +∞. */
CLOSS_CM_HD float closs_tt_softplus_from(float x, float e) { return fmaxf(x, 0.0f) + log1pf(e); }
CLOSS_CM_HD float closs_tt_softplus(float x) {
    return closs_tt_softplus_from(x, closs_tt_exp_neg_abs(x));
}

/* σ(x) = 1/(1 + e^(−x)) from e = e^(−|x|): 1/(1 + e) for x ≥ 0, e/(1 + e) below (NaN: NaN). */
CLOSS_CM_HD float closs_tt_sigmoid_from(float x, float e) {
    return (x >= 0.0f ? 1.0f : e) / (1.0f + e);
}
CLOSS_CM_HD float closs_tt_sigmoid(float x) {
    return closs_tt_sigmoid_from(x, closs_tt_exp_neg_abs(x));
}

/* One term of an online log-sum-exp (one exponential: the rescale or the term). */
CLOSS_CM_HD closs_lse_partial closs_tt_lse_push(closs_lse_partial p, float x) {
    if (x > p.max) {
        p.sum = p.sum * expf(p.max - x) + 1.0f; /* the empty partial: 0·e^(−∞) + 1 */
        p.max = x;
    } else {
        p.sum += expf(x - p.max); /* NaN in x stays in the sum */
    }
    return p;
}

/* Two partials merged. Unlike closs_cm_lse_merge this keeps a NaN sum whose partial saw no
 * finite term (max −∞): two-tower losses propagate NaN through the arithmetic, not a flag. */
CLOSS_CM_HD closs_lse_partial closs_tt_lse_merge(closs_lse_partial a, closs_lse_partial b) {
    const float max = a.max > b.max ? a.max : b.max;
    if (max == -INFINITY) {
        a.sum += b.sum;
        return a;
    }
    a.sum = a.sum * expf(a.max - max) + b.sum * expf(b.max - max);
    a.max = max;
    return a;
}

/* max + log(sum): −∞ for a partial that saw no term. */
CLOSS_CM_HD float closs_tt_lse_value(closs_lse_partial p) { return p.max + logf(p.sum); }

/* CLIP's ℓ_i from the statistics n_i, m_i (m unused when not symmetric) and x_ii. */
CLOSS_CM_HD float closs_tt_clip_loss(float row_stat, float column_stat, float positive, float half,
                                     int symmetric) {
    float loss = half * closs_tt_softplus(row_stat - positive);
    if (symmetric) loss += half * closs_tt_softplus(column_stat - positive);
    return loss;
}

/* CLIP's full log-sum-exp r_i (or q_j) from a statistic and x_ii. */
CLOSS_CM_HD float closs_tt_clip_full_lse(float stat, float positive) {
    return positive + closs_tt_softplus(stat - positive);
}

/* CLIP's G_ii. */
CLOSS_CM_HD float closs_tt_clip_diagonal(float row_stat, float column_stat, float positive,
                                         float factor, int symmetric) {
    float g = -factor * closs_tt_sigmoid(row_stat - positive);
    if (symmetric) g -= factor * closs_tt_sigmoid(column_stat - positive);
    return g;
}

/* CLIP's G of an element off the diagonal: the walking row's term plus the column's. */
CLOSS_CM_HD float closs_tt_clip_coefficient(float x, float row_factor, float row_lse,
                                            float column_factor, float column_lse) {
    return row_factor * expf(x - row_lse) + column_factor * expf(x - column_lse);
}

/* SigLIP: one element's loss term and G (w: the weight of its row of a), on the diagonal
 * (positive, z = 1) or off it (z = −1). The two share their exponential. */
typedef struct closs_tt_siglip_element {
    float loss, coefficient;
} closs_tt_siglip_element;

CLOSS_CM_HD closs_tt_siglip_element closs_tt_siglip(float x, float w, int diagonal) {
    const float t = diagonal ? -x : x; /* −z·x */
    const float e = closs_tt_exp_neg_abs(t);
    const float g = w * closs_tt_sigmoid_from(t, e);
    closs_tt_siglip_element element = {closs_tt_softplus_from(t, e), diagonal ? -g : g};
    return element;
}

#endif
