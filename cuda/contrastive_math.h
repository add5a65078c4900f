/* The per-element and per-anchor mathematics of NT-Xent and SupCon on the GPU, in float.
 *
 * With ẑ the (optionally normalised) embeddings, x_ik = (ẑ_i·ẑ_k)/τ, P(i) the positives of anchor
 * i (NT-Xent: {p(i)}; SupCon: the other rows with its label) and s = τ/τ_b (1 for NT-Xent):
 *   lse_i = log Σ_{k≠i} exp(x_ik)                              (running maximum, then the sum)
 *   ℓ_i   = s·(lse_i − (1/|P(i)|) Σ_{k∈P(i)} x_ik),  0 when P(i) is empty
 * and with w_i = s·(upstream weight of anchor i) for anchors with a positive (else 0) and
 * a_i = w_i/|P(i)|, the gradient is dẐ = G·Ẑ with, for k ≠ i,
 *   G_ik = (1/τ)·( w_i·e^(x_ik − lse_i) + w_k·e^(x_ik − lse_k) − [k∈P(i)]·(a_i + a_k) ),  G_ii = 0:
 * the softmax of anchor i and of anchor k both involve s_ik (S is symmetric), and so do their
 * positive terms, so a row of G needs only its row of S and O(M) vectors (row-stationary).
 *
 * Plain C that nvcc also compiles: the kernels in contrastive.cu use these functions, and
 * tests/test_contrastive_math.c runs the same chunked algorithm with them on the CPU against the
 * double-precision reference. */
#ifndef CLOSS_CUDA_CONTRASTIVE_MATH_H
#define CLOSS_CUDA_CONTRASTIVE_MATH_H

#include <math.h>

#ifdef __CUDACC__
#    define CLOSS_CM_HD __host__ __device__ __forceinline__
#else
#    define CLOSS_CM_HD static inline
#endif

/* A partial log-sum-exp: Σ exp(x − max) over the terms seen so far. */
typedef struct closs_lse_partial {
    float max;
    float sum;
} closs_lse_partial;

CLOSS_CM_HD closs_lse_partial closs_cm_lse_empty(void) {
    closs_lse_partial p = {-INFINITY, 0.0f};
    return p;
}

/* Merges two partials. Non-finite inputs are handled by the caller (a flag that makes every
 * lse NaN, as the contract wants), so this only has to be exact for finite x. */
CLOSS_CM_HD closs_lse_partial closs_cm_lse_merge(closs_lse_partial a, closs_lse_partial b) {
    float max = a.max > b.max ? a.max : b.max;
    if (max == -INFINITY) return a; /* both empty */
    closs_lse_partial merged = {max, a.sum * expf(a.max - max) + b.sum * expf(b.max - max)};
    return merged;
}

CLOSS_CM_HD closs_lse_partial closs_cm_lse_add(closs_lse_partial p, float x) {
    closs_lse_partial single = {x, 1.0f};
    return closs_cm_lse_merge(p, single);
}

CLOSS_CM_HD float closs_cm_lse_value(closs_lse_partial p) { return p.max + logf(p.sum); }

/* ℓ_i from its log-sum-exp and the sum of its positives' x_ik. */
CLOSS_CM_HD float closs_cm_row_loss(float lse, float positive_sum, int positives, float scale) {
    return positives > 0 ? scale * (lse - positive_sum / (float)positives) : 0.0f;
}

/* w_i and a_i from the anchor's upstream weight (1/valid, 1 or its own for NONE). */
CLOSS_CM_HD void closs_cm_anchor_weights(float upstream_weight, int positives, float scale,
                                         float *w, float *a) {
    *w = positives > 0 ? scale * upstream_weight : 0.0f;
    *a = positives > 0 ? *w / (float)positives : 0.0f;
}

/* G_ik for k ≠ i. */
CLOSS_CM_HD float closs_cm_coefficient(float x, float lse_i, float lse_k, float w_i, float w_k,
                                       float a_i, float a_k, int positive, float inv_temperature) {
    float softmax = w_i * expf(x - lse_i) + w_k * expf(x - lse_k);
    return inv_temperature * (positive ? softmax - (a_i + a_k) : softmax);
}

#endif
