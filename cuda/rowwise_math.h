/* The per-row mathematics of the row-wise losses (pair, triplet, cosine) on the GPU, in float.
 *
 * A row's loss depends on its (up to three) input rows x0, x1, x2 only through a few reductions
 * over the D features (closs_row_stats): the dot products x_j·x_k and the squared distances
 * ‖x_j − x_k‖² (computed directly, not from the dots, so that close points keep their precision).
 * From those, closs_row_loss_grad() returns the loss ℓ and the gradient of every input row as a
 * linear combination
 *     ∂ℓ/∂x_k = Σ_j self[k][j]·x_j + Σ_p diff[k][p]·(x_a(p) − x_b(p)),  p ∈ {(0,1), (0,2), (1,2)},
 * so the kernel needs one pass over the row to reduce and one to write gradients.
 *
 * This header is plain C that nvcc also compiles (CLOSS_HD marks the functions host+device): the
 * same code runs in the kernels and in tests/test_rowwise_math.c, which checks it on the CPU
 * against the double-precision reference. The formulas are those of docs/contract.md and
 * host/ref/{pair,triplet,cosine}.c; conventions (gradient 0 at a closed hinge and at distance 0,
 * NaN propagating through hinges) are the same. */
#ifndef CLOSS_CUDA_ROWWISE_MATH_H
#define CLOSS_CUDA_ROWWISE_MATH_H

#include <math.h>

#include "closs.h"

#ifdef __CUDACC__
#    define CLOSS_HD       __host__ __device__ __forceinline__
#    define CLOSS_HD_CONST constexpr __host__ __device__ /* usable in templates' constants */
#elif defined(__cplusplus)
#    define CLOSS_HD       static inline
#    define CLOSS_HD_CONST static constexpr
#else
#    define CLOSS_HD       static inline
#    define CLOSS_HD_CONST static inline
#endif

/* The pairs of input rows, in the order of closs_row_stats.sqdiff and closs_row_grad.diff. */
enum { CLOSS_PAIR_01 = 0, CLOSS_PAIR_02 = 1, CLOSS_PAIR_12 = 2 };

typedef struct closs_row_stats {
    float dot[3][3]; /* x_j·x_k (symmetric) */
    float sqdiff[3]; /* ‖x0 − x1‖², ‖x0 − x2‖², ‖x1 − x2‖² */
} closs_row_stats;

typedef struct closs_row_grad {
    float loss;
    float self[3][3]; /* ∂ℓ/∂x_k += self[k][j]·x_j */
    float diff[3][3]; /* ∂ℓ/∂x_k += diff[k][p]·(x_a(p) − x_b(p)) */
} closs_row_grad;

/* Which loss a row belongs to, with its parameters in float. */
typedef enum { CLOSS_ROW_PAIR, CLOSS_ROW_TRIPLET, CLOSS_ROW_COSINE } closs_row_kind;

typedef struct closs_row_params {
    closs_row_kind kind;
    closs_distance_t distance; /* pair, triplet */
    float margin;
    int swap;    /* triplet */
    int squared; /* cosine */
} closs_row_params;

/* max(0, x) that keeps NaN (the contract propagates non-finite values to the loss). */
CLOSS_HD float closs_rm_hinge(float x) { return x > 0.0f ? x : (x != x ? x : 0.0f); }

/* The hinge's slope: 1 where open, 0 where closed or exactly 0, NaN with a NaN argument. */
CLOSS_HD float closs_rm_open(float hinge) {
    return hinge > 0.0f ? 1.0f : (hinge != hinge ? hinge : 0.0f);
}

/* (0,1)→0 (0,2)→1 (1,2)→2 */
CLOSS_HD_CONST int closs_rm_pair_index(int a, int b) { return a + b - 1; }

/* The statistics a loss reads, as bits: closs_rm_dot_bit(j, k) for x_j·x_k and
 * closs_rm_sqdiff_bit(p) for ‖x_a − x_b‖² of pair p. The kernels reduce only these, and the
 * gradient coefficients that can be non-zero follow from them: self[k][j] needs x_k·x_j and
 * diff[k][p] needs pair p with k one of its rows (tests/test_rowwise_math.c checks both). */
CLOSS_HD_CONST unsigned closs_rm_dot_bit(int j, int k) {
    return 1u << (j < k ? 3 * j + k : 3 * k + j);
}
CLOSS_HD_CONST unsigned closs_rm_sqdiff_bit(int p) { return 1u << (9 + p); }

/* d(x_a, x_b) reads x_a·x_a, x_b·x_b, x_a·x_b (COSINE) or ‖x_a − x_b‖² (the others). */
CLOSS_HD_CONST unsigned closs_rm_distance_needs(closs_distance_t distance, int a, int b) {
    return distance == CLOSS_DISTANCE_COSINE
               ? closs_rm_dot_bit(a, a) | closs_rm_dot_bit(b, b) | closs_rm_dot_bit(a, b)
               : closs_rm_sqdiff_bit(closs_rm_pair_index(a, b));
}

/* What closs_row_loss_grad reads for a loss: d(x0, x1) for pair and cosine (cosine's c is
 * 1 − d_cos), d(a, p) and d(a, n) for triplet, with swap also d(p, n). */
CLOSS_HD_CONST unsigned closs_rm_needs(int kind, closs_distance_t distance, int swap) {
    return kind == CLOSS_ROW_COSINE ? closs_rm_distance_needs(CLOSS_DISTANCE_COSINE, 0, 1)
           : kind == CLOSS_ROW_PAIR
               ? closs_rm_distance_needs(distance, 0, 1)
               : closs_rm_distance_needs(distance, 0, 1) | closs_rm_distance_needs(distance, 0, 2) |
                     (swap ? closs_rm_distance_needs(distance, 1, 2) : 0u);
}

/* cos(x_a, x_b) = x_a·x_b / (max(‖x_a‖, 1e-8)·max(‖x_b‖, 1e-8)). */
CLOSS_HD float closs_rm_cos(const closs_row_stats *s, int a, int b) {
    const float eps = 1e-8f;
    float norm_a = sqrtf(s->dot[a][a]), norm_b = sqrtf(s->dot[b][b]);
    return s->dot[a][b] / (fmaxf(norm_a, eps) * fmaxf(norm_b, eps));
}

/* Adds coef·∂cos/∂x_a and coef·∂cos/∂x_b: ∂cos/∂x_a = x_b/(n_a n_b) − cos·x_a/n_a², where the
 * second term vanishes below the eps (the clamped norm no longer depends on x_a). */
CLOSS_HD void closs_rm_add_cos_grad(const closs_row_stats *s, int a, int b, float coef,
                                    closs_row_grad *g) {
    const float eps = 1e-8f;
    float norm_a = sqrtf(s->dot[a][a]), norm_b = sqrtf(s->dot[b][b]);
    float clamped_a = fmaxf(norm_a, eps), clamped_b = fmaxf(norm_b, eps);
    float cos = s->dot[a][b] / (clamped_a * clamped_b);
    float cross = coef / (clamped_a * clamped_b);
    g->self[a][b] += cross;
    g->self[b][a] += cross;
    if (norm_a > eps) g->self[a][a] -= coef * cos / (clamped_a * clamped_a);
    if (norm_b > eps) g->self[b][b] -= coef * cos / (clamped_b * clamped_b);
}

/* d(x_a, x_b) for EUCLIDEAN, SQEUCLIDEAN or COSINE (1 − cos). */
CLOSS_HD float closs_rm_distance(closs_distance_t kind, const closs_row_stats *s, int a, int b) {
    float squared = s->sqdiff[closs_rm_pair_index(a, b)];
    if (kind == CLOSS_DISTANCE_SQEUCLIDEAN) return squared;
    if (kind == CLOSS_DISTANCE_EUCLIDEAN) return sqrtf(squared);
    return 1.0f - closs_rm_cos(s, a, b);
}

/* Adds coef·∂d/∂x_a and coef·∂d/∂x_b (a < b). ∂‖x_a − x_b‖/∂x_a = (x_a − x_b)/‖x_a − x_b‖ is
 * taken as 0 at distance 0 (contract). */
CLOSS_HD void closs_rm_add_distance_grad(closs_distance_t kind, const closs_row_stats *s, int a,
                                         int b, float coef, closs_row_grad *g) {
    const int p = closs_rm_pair_index(a, b);
    if (kind == CLOSS_DISTANCE_COSINE) {
        closs_rm_add_cos_grad(s, a, b, -coef, g);
        return;
    }
    float distance = sqrtf(s->sqdiff[p]);
    float scale =
        kind == CLOSS_DISTANCE_SQEUCLIDEAN ? 2.0f : (distance > 0.0f ? 1.0f / distance : 0.0f);
    g->diff[a][p] += coef * scale;
    g->diff[b][p] -= coef * scale;
}

/* ℓ and the gradient coefficients of one row; y is the pair label (pair, cosine). */
CLOSS_HD closs_row_grad closs_row_loss_grad(const closs_row_params *params,
                                            const closs_row_stats *s, float y) {
    closs_row_grad g;
    for (int k = 0; k < 3; ++k)
        for (int j = 0; j < 3; ++j) g.self[k][j] = g.diff[k][j] = 0.0f;

    if (params->kind == CLOSS_ROW_PAIR) {
        /* ℓ = y·d² + (1 − y)·h², h = max(0, m − d); ∂ℓ/∂d = 2yd − 2(1 − y)h. */
        float d = closs_rm_distance(params->distance, s, 0, 1);
        float h = closs_rm_hinge(params->margin - d);
        g.loss = y * d * d + (1.0f - y) * h * h;
        closs_rm_add_distance_grad(params->distance, s, 0, 1, 2.0f * y * d - 2.0f * (1.0f - y) * h,
                                   &g);
    } else if (params->kind == CLOSS_ROW_TRIPLET) {
        /* ℓ = max(0, d(a, p) − d⁻ + α), d⁻ = d(a, n) or, with swap, min(d(a, n), d(p, n)). */
        float positive = closs_rm_distance(params->distance, s, 0, 1);
        float negative = closs_rm_distance(params->distance, s, 0, 2);
        /* With swap, d⁻ pairs the negative with the positive when that is closer. Both pairings
         * get a (possibly zero) coefficient, so that every row index stays a compile-time
         * constant in the kernels: a run-time index into g would put g in local memory. */
        int swapped = 0;
        if (params->swap) {
            float other = closs_rm_distance(params->distance, s, 1, 2);
            swapped = other < negative;
            negative = swapped ? other : negative;
        }
        g.loss = closs_rm_hinge(positive - negative + params->margin);
        float active = closs_rm_open(g.loss);
        closs_rm_add_distance_grad(params->distance, s, 0, 1, active, &g);
        closs_rm_add_distance_grad(params->distance, s, 0, 2, swapped ? 0.0f : -active, &g);
        if (params->swap)
            closs_rm_add_distance_grad(params->distance, s, 1, 2, swapped ? -active : 0.0f, &g);
    } else {
        /* ℓ = y(1 − c) + (1 − y)·h^q, h = max(0, c − δ); ∂ℓ/∂c = −y + (1 − y)·q·h^(q−1). */
        float c = closs_rm_cos(s, 0, 1);
        float h = closs_rm_hinge(c - params->margin);
        float penalty = params->squared ? h * h : h;
        float slope = params->squared ? 2.0f * h : closs_rm_open(h);
        g.loss = y * (1.0f - c) + (1.0f - y) * penalty;
        closs_rm_add_cos_grad(s, 0, 1, -y + (1.0f - y) * slope, &g);
    }
    return g;
}

#endif
