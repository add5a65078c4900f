/* Private: the M² core shared by NT-Xent and SupCon in the CPU reference.
 *
 * With ẑ the (optionally normalised) embeddings, s_ik = ẑ_i·ẑ_k and τ the temperature:
 *   lse_i = log Σ_{k≠i} exp(s_ik/τ)                        (the denominator of every anchor)
 *   ∂/∂ẑ_i of Σ_j w_j·lse_j = (1/τ) Σ_{k≠i} (w_i·P_ik + w_k·P_ki)·ẑ_k,  P_ik = exp(s_ik/τ − lse_i)
 * S is symmetric, so row i's gradient needs only row i of S (recomputed) and the O(M) vectors lse
 * and w: no M×M buffer, and every row is owned by one thread (no atomics, thread-count-independent
 * results). */
#ifndef CLOSS_REF_SOFTMAX_CONTRASTIVE_H
#define CLOSS_REF_SOFTMAX_CONTRASTIVE_H

#include "closs.h"

/* ẑ_i = z_i / max(‖z_i‖, 1e-12) when normalize, else z_i; norms[i] = ‖z_i‖. Dense outputs.
 * Returns 1 when every element of z is finite. */
int closs_ref_embed(closs_matrix_t z, int normalize, double *zhat, double *norms);

/* dz_i = (dẑ_i − ẑ_i(ẑ_i·dẑ_i)) / ‖z_i‖ while ‖z_i‖ > 1e-12, else dẑ_i / 1e-12; the identity
 * when normalize is 0. Works in place: `grad` holds dẑ on entry and dz on return. */
void closs_ref_embed_backward(const double *zhat, const double *norms, int normalize, int64_t rows,
                              int64_t dim, double *grad);

double closs_ref_dot(const double *a, const double *b, int64_t dim);

/* lse_i of the anchors i in [anchor_begin, anchor_begin + anchor_count) against all rows, into
 * lse[i] (stable: a running maximum, NaN propagates). With `finite` 0 every lse_i is NaN: a
 * non-finite row enters every anchor's denominator, and exp(−∞) = 0 must not hide it. */
void closs_ref_softmax_lse(const double *zhat, int64_t rows, int64_t dim, double temperature,
                           int finite, int64_t anchor_begin, int64_t anchor_count, double *lse);

/* The lse a call needs, into lse (all rows): a backward's given stats of every row; else computed,
 * for every row when a gradient follows (it needs them all), for the range's anchors otherwise. */
void closs_ref_range_lse(const double *zhat, int64_t rows, int64_t dim, double temperature,
                         int finite, const double *given_stats, int all_rows, int64_t begin,
                         int64_t count, double *lse);

/* s_ik/τ, computed the same way wherever a loss needs it (so that terms that must cancel do). */
static inline double closs_ref_logit(const double *zi, const double *zk, int64_t dim,
                                     double inv_temperature) {
    return closs_ref_dot(zi, zk, dim) * inv_temperature;
}

/* Adds the softmax part of the gradient of rows [row_begin, row_begin + row_count), weighted per
 * anchor by `weights`, into dzhat (row_count × dim; lse and weights: all rows). */
void closs_ref_softmax_backward(const double *zhat, int64_t rows, int64_t dim, double temperature,
                                const double *lse, const double *weights, int64_t row_begin,
                                int64_t row_count, double *dzhat);

#endif
