/* Small cases of the CPU reference worked out by hand (the arithmetic is in the comments), and
 * the contract's conventions: the gradient at a hinge exactly 0 and at a Euclidean distance exactly
 * 0 is 0 (never NaN), zero rows with normalisation give finite results, NaN in any input reaches
 * the loss, and empty batches give 0 without writing anything. CLIP and SigLIP: hand cases on
 * orthogonal rows, the losses NaN reaches (and those it must not), and finite results at large
 * logit scales. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "closs.h"
#include "test_support.h"
#include "two_tower_support.h"

/* Hand-computed values are exact up to a few roundings. */
static const double TIGHT = 1e-13;

#define assert_near(got, want, what)                                                               \
    do {                                                                                           \
        double got_ = (got), want_ = (want);                                                       \
        cr_assert(fabs(got_ - want_) <= TIGHT * fmax(1.0, fabs(want_)),                            \
                  "%s: got %.17g, want %.17g", (what), got_, want_);                               \
    } while (0)

static void assert_all_near(const double *got, const double *want, int64_t n, const char *what) {
    ct_assert_close(got, want, n, TIGHT, TIGHT, (const ct_rng *)NULL, what);
}

/* Exactly +0.0 or −0.0 everywhere (not NaN, not tiny). */
static void assert_all_zero(const double *x, int64_t n, const char *what) {
    for (int64_t i = 0; i < n; ++i)
        cr_assert(x[i] == 0.0, "%s: element %lld is %.17g, want 0", what, (long long)i, x[i]);
}

static closs_matrix_t f64(const double *data, int64_t rows, int64_t cols) {
    return closs_matrix(data, CLOSS_F64, rows, cols);
}

/* ---- defaults ------------------------------------------------------------------------------ */

Test(cases, init_macros_hold_the_contract_defaults) {
    closs_pair_params pair = CLOSS_PAIR_PARAMS_INIT;
    cr_assert(pair.size == sizeof pair && pair.margin == 1.0 &&
              pair.distance == CLOSS_DISTANCE_EUCLIDEAN && pair.reduction == CLOSS_REDUCTION_MEAN);
    closs_triplet_params triplet = CLOSS_TRIPLET_PARAMS_INIT;
    cr_assert(triplet.size == sizeof triplet && triplet.margin == 1.0 &&
              triplet.distance == CLOSS_DISTANCE_SQEUCLIDEAN && triplet.swap == 0 &&
              triplet.reduction == CLOSS_REDUCTION_MEAN);
    closs_ntxent_params ntxent = CLOSS_NTXENT_PARAMS_INIT;
    cr_assert(ntxent.size == sizeof ntxent && ntxent.temperature == 0.1 && ntxent.normalize == 1 &&
              ntxent.reduction == CLOSS_REDUCTION_MEAN);
    closs_supcon_params supcon = CLOSS_SUPCON_PARAMS_INIT;
    cr_assert(supcon.size == sizeof supcon && supcon.temperature == 0.07 &&
              supcon.base_temperature == 0.0 && supcon.normalize == 1 &&
              supcon.reduction == CLOSS_REDUCTION_MEAN);
    closs_cosine_params cosine = CLOSS_COSINE_PARAMS_INIT;
    cr_assert(cosine.size == sizeof cosine && cosine.margin == 0.0 && cosine.squared == 0 &&
              cosine.reduction == CLOSS_REDUCTION_MEAN);
}

/* ---- pair ---------------------------------------------------------------------------------- */

/* Euclidean, margin m = 6, d = ‖x1 − x2‖, ℓ = y·d² + (1 − y)·max(0, m − d)²,
 * ∂ℓ/∂d = 2y·d − 2(1 − y)·h, ∂d/∂x1 = (x1 − x2)/d = −∂d/∂x2.
 *   row 0: (0,0) vs (3,4), y = 1:    d = 5, ℓ = 25;                 ∂ℓ/∂x1 = 2(x1 − x2) = (−6, −8)
 *   row 1: (1,1) vs (4,5), y = 0:    d = 5, h = 1, ℓ = 1;           ∂ℓ/∂d = −2,
 *                                    ∂ℓ/∂x1 = −2·(−3,−4)/5 = (1.2, 1.6)
 *   row 2: (0,0) vs (0,7), y = 0:    d = 7, h = 0 (closed), ℓ = 0;  gradient 0
 *   row 3: (1,2) vs (4,6), y = 0.25: d = 5, ℓ = 0.25·25 + 0.75·1 = 7; ∂ℓ/∂d = 2.5 − 1.5 = 1,
 *                                    ∂ℓ/∂x1 = (−3,−4)/5 = (−0.6, −0.8)
 *   sum = 33, mean = 8.25; ∂ℓ/∂x2 = −∂ℓ/∂x1 row by row. */
Test(cases, pair_euclidean_four_rows) {
    const double x1[] = {0, 0, 1, 1, 0, 0, 1, 2}, x2[] = {3, 4, 4, 5, 0, 7, 4, 6};
    const double y[] = {1, 0, 0, 0.25};
    const double rows_loss[] = {25, 1, 0, 7};
    const double g1_sum[] = {-6, -8, 1.2, 1.6, 0, 0, -0.6, -0.8};
    closs_pair_params params = CLOSS_PAIR_PARAMS_INIT;
    params.margin = 6.0;
    for (int r = 0; r < 3; ++r) {
        params.reduction = (closs_reduction_t)r;
        double loss[4], g1[8], g2[8], want1[8], want2[8];
        cr_assert_eq(closs_ref_pair(&params, f64(x1, 4, 2), f64(x2, 4, 2),
                                    closs_vector(y, CLOSS_F64, 4), NULL, loss, g1, g2),
                     CLOSS_STATUS_SUCCESS, "%s", closs_last_error());
        const double scale = r == CLOSS_REDUCTION_MEAN ? 0.25 : 1.0;
        for (int e = 0; e < 8; ++e) {
            want1[e] = scale * g1_sum[e];
            want2[e] = -want1[e];
        }
        if (r == CLOSS_REDUCTION_MEAN) assert_near(loss[0], 8.25, "pair mean");
        if (r == CLOSS_REDUCTION_SUM) assert_near(loss[0], 33.0, "pair sum");
        if (r == CLOSS_REDUCTION_NONE) assert_all_near(loss, rows_loss, 4, "pair none");
        assert_all_near(g1, want1, 8, "pair grad_x1");
        assert_all_near(g2, want2, 8, "pair grad_x2");
    }
}

/* Cosine distance d = 1 − cos: x1 = (1,0), x2 = (0,2): cos = 0, d = 1.
 * ∂cos/∂x1 = x2/(‖x1‖‖x2‖) − cos·x1/‖x1‖² = (0,1);  ∂cos/∂x2 = x1/(‖x1‖‖x2‖) − … = (0.5, 0).
 *   y = 1:        ℓ = d² = 1,              ∂ℓ/∂d = 2d = 2:      ∂ℓ/∂x1 = −2·(0,1) = (0,−2),
 *                                                              ∂ℓ/∂x2 = −2·(0.5,0) = (−1,0)
 *   y = 0, m = 2: ℓ = (2 − 1)² = 1,         ∂ℓ/∂d = −2h = −2:    ∂ℓ/∂x1 = (0,2), ∂ℓ/∂x2 = (1,0) */
Test(cases, pair_cosine_distance) {
    const double x1[] = {1, 0}, x2[] = {0, 2};
    closs_pair_params params = CLOSS_PAIR_PARAMS_INIT;
    params.distance = CLOSS_DISTANCE_COSINE;
    params.margin = 2.0;
    double loss, g1[2], g2[2];
    const double one = 1.0, zero = 0.0;
    cr_assert_eq(closs_ref_pair(&params, f64(x1, 1, 2), f64(x2, 1, 2),
                                closs_vector(&one, CLOSS_F64, 1), NULL, &loss, g1, g2),
                 CLOSS_STATUS_SUCCESS, "%s", closs_last_error());
    assert_near(loss, 1.0, "y = 1 loss");
    assert_all_near(g1, (const double[]){0, -2}, 2, "y = 1 grad_x1");
    assert_all_near(g2, (const double[]){-1, 0}, 2, "y = 1 grad_x2");
    cr_assert_eq(closs_ref_pair(&params, f64(x1, 1, 2), f64(x2, 1, 2),
                                closs_vector(&zero, CLOSS_F64, 1), NULL, &loss, g1, g2),
                 CLOSS_STATUS_SUCCESS, "%s", closs_last_error());
    assert_near(loss, 1.0, "y = 0 loss");
    assert_all_near(g1, (const double[]){0, 2}, 2, "y = 0 grad_x1");
    assert_all_near(g2, (const double[]){1, 0}, 2, "y = 0 grad_x2");
}

/* ---- triplet ------------------------------------------------------------------------------- */

/* Squared Euclidean, α = 1, a = (0,0), p = (1,0):  d⁺ = 1.
 *   row 0: n = (0,2): d⁻ = 4, 1 − 4 + 1 = −2 → ℓ = 0, gradient 0
 *   row 1: n = (0,1): d⁻ = 1, 1 − 1 + 1 = 1 → ℓ = 1;
 *          ∂ℓ/∂a = 2(a − p) − 2(a − n) = 2(n − p) = (−2, 2), ∂ℓ/∂p = 2(p − a) = (2, 0),
 *          ∂ℓ/∂n = −2(n − a) = (0, −2)   (they sum to 0: translation invariance)
 *   mean = 0.5 (the closed row counts in the mean). */
Test(cases, triplet_sqeuclidean) {
    const double a[] = {0, 0, 0, 0}, p[] = {1, 0, 1, 0}, n[] = {0, 2, 0, 1};
    closs_triplet_params params = CLOSS_TRIPLET_PARAMS_INIT;
    double loss, ga[4], gp[4], gn[4];
    cr_assert_eq(closs_ref_triplet(&params, f64(a, 2, 2), f64(p, 2, 2), f64(n, 2, 2), NULL, &loss,
                                   ga, gp, gn),
                 CLOSS_STATUS_SUCCESS, "%s", closs_last_error());
    assert_near(loss, 0.5, "mean");
    assert_all_near(ga, (const double[]){0, 0, -1, 1}, 4, "grad_anchor (mean: halved)");
    assert_all_near(gp, (const double[]){0, 0, 1, 0}, 4, "grad_positive");
    assert_all_near(gn, (const double[]){0, 0, 0, -1}, 4, "grad_negative");
}

/* Euclidean, α = 1, a = (0,0), p = (3,4), n = (6,8): d(a,p) = 5, d(a,n) = 10, d(p,n) = 5.
 *   swap off: 5 − 10 + 1 = −4 → ℓ = 0, gradient 0.
 *   swap on:  d⁻ = min(10, 5) = 5 (the (p, n) pair): 5 − 5 + 1 = 1 → ℓ = 1;
 *     ∂ℓ/∂a = (a − p)/5 = (−0.6, −0.8);
 *     ∂ℓ/∂p = (p − a)/5 − (p − n)/5 = (0.6, 0.8) + (0.6, 0.8) = (1.2, 1.6);
 *     ∂ℓ/∂n = −(n − p)/5 = (−0.6, −0.8). */
Test(cases, triplet_swap_changes_the_negative) {
    const double a[] = {0, 0}, p[] = {3, 4}, n[] = {6, 8};
    closs_triplet_params params = CLOSS_TRIPLET_PARAMS_INIT;
    params.distance = CLOSS_DISTANCE_EUCLIDEAN;
    double loss, ga[2], gp[2], gn[2];
    cr_assert_eq(closs_ref_triplet(&params, f64(a, 1, 2), f64(p, 1, 2), f64(n, 1, 2), NULL, &loss,
                                   ga, gp, gn),
                 CLOSS_STATUS_SUCCESS, "%s", closs_last_error());
    assert_near(loss, 0.0, "swap off");
    assert_all_zero(ga, 2, "swap off grad_anchor");
    assert_all_zero(gp, 2, "swap off grad_positive");
    assert_all_zero(gn, 2, "swap off grad_negative");
    params.swap = 1;
    cr_assert_eq(closs_ref_triplet(&params, f64(a, 1, 2), f64(p, 1, 2), f64(n, 1, 2), NULL, &loss,
                                   ga, gp, gn),
                 CLOSS_STATUS_SUCCESS, "%s", closs_last_error());
    assert_near(loss, 1.0, "swap on");
    assert_all_near(ga, (const double[]){-0.6, -0.8}, 2, "swap on grad_anchor");
    assert_all_near(gp, (const double[]){1.2, 1.6}, 2, "swap on grad_positive");
    assert_all_near(gn, (const double[]){-0.6, -0.8}, 2, "swap on grad_negative");
}

/* Swap that keeps (a, n): a = (0,0), p = (1,0), n = (−2,0): d(a,n) = 2 < d(p,n) = 3, so swap on and
 * off agree. Euclidean, α = 0.5: 1 − 2 + 0.5 = −0.5 → 0; α = 2: 1 − 2 + 2 = 1 → ℓ = 1,
 * ∂ℓ/∂a = (a − p)/1 − (a − n)/2 = (−1,0) − (1,0) = (−2,0), ∂ℓ/∂p = (1,0), ∂ℓ/∂n = (1,0). */
Test(cases, triplet_swap_keeps_the_closer_negative) {
    const double a[] = {0, 0}, p[] = {1, 0}, n[] = {-2, 0};
    closs_triplet_params params = CLOSS_TRIPLET_PARAMS_INIT;
    params.distance = CLOSS_DISTANCE_EUCLIDEAN;
    params.margin = 2.0;
    for (int swap = 0; swap < 2; ++swap) {
        params.swap = swap;
        double loss, ga[2], gp[2], gn[2];
        cr_assert_eq(closs_ref_triplet(&params, f64(a, 1, 2), f64(p, 1, 2), f64(n, 1, 2), NULL,
                                       &loss, ga, gp, gn),
                     CLOSS_STATUS_SUCCESS, "%s", closs_last_error());
        assert_near(loss, 1.0, "loss");
        assert_all_near(ga, (const double[]){-2, 0}, 2, "grad_anchor");
        assert_all_near(gp, (const double[]){1, 0}, 2, "grad_positive");
        assert_all_near(gn, (const double[]){1, 0}, 2, "grad_negative");
    }
}

/* A negative margin: squared Euclidean, α = −0.5, a = (0,0), p = (1,0), n = (0,0.5):
 * d⁺ = 1, d⁻ = 0.25, 1 − 0.25 − 0.5 = 0.25 → ℓ = 0.25.
 * Cosine distance, α = 1, a = (1,0), p = (1,1), n = (0,1): d⁺ = 1 − 1/√2, d⁻ = 1 − 0 = 1,
 * ℓ = 1 − 1/√2 − 1 + 1 = 1 − 1/√2 ≈ 0.29289; with α = 0.5: 0.29289 − 0.5 < 0 → 0. */
Test(cases, triplet_negative_margin_and_cosine) {
    closs_triplet_params params = CLOSS_TRIPLET_PARAMS_INIT;
    params.margin = -0.5;
    double loss;
    cr_assert_eq(closs_ref_triplet(
                     &params, f64((const double[]){0, 0}, 1, 2), f64((const double[]){1, 0}, 1, 2),
                     f64((const double[]){0, 0.5}, 1, 2), NULL, &loss, NULL, NULL, NULL),
                 CLOSS_STATUS_SUCCESS, "%s", closs_last_error());
    assert_near(loss, 0.25, "negative margin");
    params.distance = CLOSS_DISTANCE_COSINE;
    const double a[] = {1, 0}, p[] = {1, 1}, n[] = {0, 1};
    params.margin = 1.0;
    cr_assert_eq(closs_ref_triplet(&params, f64(a, 1, 2), f64(p, 1, 2), f64(n, 1, 2), NULL, &loss,
                                   NULL, NULL, NULL),
                 CLOSS_STATUS_SUCCESS, "%s", closs_last_error());
    assert_near(loss, 1.0 - 1.0 / sqrt(2.0), "cosine, margin 1");
    params.margin = 0.5;
    cr_assert_eq(closs_ref_triplet(&params, f64(a, 1, 2), f64(p, 1, 2), f64(n, 1, 2), NULL, &loss,
                                   NULL, NULL, NULL),
                 CLOSS_STATUS_SUCCESS, "%s", closs_last_error());
    assert_near(loss, 0.0, "cosine, margin 0.5");
}

/* ---- cosine -------------------------------------------------------------------------------- */

/* x1 = (1,0), x2 = (3,4): c = 3/5 = 0.6, ∂c/∂x1 = x2/5 − 0.6·x1 = (0, 0.8),
 * ∂c/∂x2 = x1/5 − 0.6·x2/25 = (0.2 − 0.072, −0.096) = (0.128, −0.096).
 *   y = 0, δ = 0.2:  h = 0.4.  plain: ℓ = 0.4,  ∂ℓ/∂c = 1;    squared: ℓ = 0.16, ∂ℓ/∂c = 2h = 0.8
 *                    (the square damps a violation below 1 …)
 *   y = 0, δ = −0.5: h = 1.1.  plain: ℓ = 1.1;  squared: ℓ = 1.21, ∂ℓ/∂c = 2.2
 *                    (… and sharpens one above 1)
 *   y = 1:           ℓ = 1 − c = 0.4 either way, ∂ℓ/∂c = −1. */
Test(cases, cosine_squared_or_not) {
    const double x1[] = {1, 0}, x2[] = {3, 4};
    const double dc1[] = {0, 0.8}, dc2[] = {0.128, -0.096};
    struct {
        double y, margin;
        int squared;
        double loss, dloss_dc;
    } rows[] = {
        {0, 0.2, 0, 0.4, 1.0},   {0, 0.2, 1, 0.16, 0.8}, {0, -0.5, 0, 1.1, 1.0},
        {0, -0.5, 1, 1.21, 2.2}, {1, 0.2, 0, 0.4, -1.0}, {1, 0.2, 1, 0.4, -1.0},
    };
    for (size_t r = 0; r < sizeof rows / sizeof rows[0]; ++r) {
        closs_cosine_params params = CLOSS_COSINE_PARAMS_INIT;
        params.margin = rows[r].margin;
        params.squared = rows[r].squared;
        double loss, g1[2], g2[2];
        cr_assert_eq(closs_ref_cosine(&params, f64(x1, 1, 2), f64(x2, 1, 2),
                                      closs_vector(&rows[r].y, CLOSS_F64, 1), NULL, &loss, g1, g2),
                     CLOSS_STATUS_SUCCESS, "%s", closs_last_error());
        assert_near(loss, rows[r].loss, "loss");
        double want1[2], want2[2];
        for (int c = 0; c < 2; ++c) {
            want1[c] = rows[r].dloss_dc * dc1[c];
            want2[c] = rows[r].dloss_dc * dc2[c];
        }
        assert_all_near(g1, want1, 2, "grad_x1");
        assert_all_near(g2, want2, 2, "grad_x2");
    }
}

/* ---- NT-Xent ------------------------------------------------------------------------------- */

/* 2N = 2 rows: each anchor's denominator holds only its partner, so
 * ℓ_i = −s/τ + log exp(s/τ) = 0 for any z, and the gradient of a constant is 0. (The reference
 * computes s/τ twice, once as the positive and once as the log-sum-exp, so allow one rounding.) */
Test(cases, ntxent_two_rows_is_zero) {
    ct_rng rng = ct_rng_fresh();
    for (int normalize = 0; normalize < 2; ++normalize)
        for (int r = 0; r < 3; ++r) {
            double z[2 * 5], loss[2], grad[2 * 5];
            ct_fill_normal(&rng, z, 10, 1.0);
            closs_ntxent_params params = CLOSS_NTXENT_PARAMS_INIT;
            params.normalize = normalize;
            params.reduction = (closs_reduction_t)r;
            params.temperature = ct_uniform(&rng, 0.05, 2.0);
            cr_assert_eq(closs_ref_ntxent(&params, f64(z, 2, 5), NULL, loss, grad),
                         CLOSS_STATUS_SUCCESS, "%s", closs_last_error());
            const double scale = (fabs(ct_dot(z, z + 5, 5)) + 1.0) / params.temperature;
            for (int i = 0; i < (r == CLOSS_REDUCTION_NONE ? 2 : 1); ++i)
                cr_assert(fabs(loss[i]) <= 4e-16 * scale, "loss[%d] = %.17g, want 0%s", i, loss[i],
                          ct_seed_text(&rng));
            for (int e = 0; e < 10; ++e)
                cr_assert(fabs(grad[e]) <= 1e-14 * scale, "grad[%d] = %.17g, want 0%s", e, grad[e],
                          ct_seed_text(&rng));
        }
}

/* 2N = 4, normalised, τ = 0.5:
 * z0 = (1,0), z1 = (0,1), z2 = (3,4) → (0.6,0.8), z3 = (0,−2) → (0,−1).
 * s01 = 0, s02 = 0.6, s03 = 0, s12 = 0.8, s13 = −1, s23 = −0.8; partners 0↔2, 1↔3; s/τ doubles s.
 *   ℓ0 = −1.2 + log(e⁰ + e^1.2 + e⁰)       = −1.2 + log(5.3201169)  = 0.47149528
 *   ℓ1 =  2   + log(e⁰ + e^1.6 + e^−2)     =  2 + log(6.0883677)    = 3.80638002
 *   ℓ2 = −1.2 + log(e^1.2 + e^1.6 + e^−1.6) = −1.2 + log(8.4751459) = 0.93712607
 *   ℓ3 =  2   + log(e⁰ + e^−2 + e^−1.6)    =  2 + log(1.3372318)    = 2.29060166
 *   sum = 7.50560302, mean (over 2N = 4) = 1.87640076 */
Test(cases, ntxent_four_rows) {
    const double z[] = {1, 0, 0, 1, 3, 4, 0, -2};
    const double want[] = {
        -1.2 + log(2.0 + exp(1.2)),
        2.0 + log(1.0 + exp(1.6) + exp(-2.0)),
        -1.2 + log(exp(1.2) + exp(1.6) + exp(-1.6)),
        2.0 + log(1.0 + exp(-2.0) + exp(-1.6)),
    };
    const double printed[] = {0.4714952810700388, 3.806380017492307, 0.9371260650661848,
                              2.2906016572367998};
    assert_all_near(want, printed, 4, "the comment's arithmetic");
    closs_ntxent_params params = CLOSS_NTXENT_PARAMS_INIT;
    params.temperature = 0.5;
    double loss[4];
    params.reduction = CLOSS_REDUCTION_NONE;
    cr_assert_eq(closs_ref_ntxent(&params, f64(z, 4, 2), NULL, loss, NULL), CLOSS_STATUS_SUCCESS);
    assert_all_near(loss, want, 4, "none");
    params.reduction = CLOSS_REDUCTION_SUM;
    cr_assert_eq(closs_ref_ntxent(&params, f64(z, 4, 2), NULL, loss, NULL), CLOSS_STATUS_SUCCESS);
    assert_near(loss[0], 7.505603020865331, "sum");
    params.reduction = CLOSS_REDUCTION_MEAN;
    cr_assert_eq(closs_ref_ntxent(&params, f64(z, 4, 2), NULL, loss, NULL), CLOSS_STATUS_SUCCESS);
    assert_near(loss[0], 1.8764007552163326, "mean");
}

/* ---- SupCon -------------------------------------------------------------------------------- */

/* All labels distinct: no anchor has a positive, every ℓ_i = 0, valid = 0, and mean = 0 by
 * convention; nothing depends on z, so the gradient is exactly 0. */
Test(cases, supcon_all_distinct_labels) {
    ct_rng rng = ct_rng_fresh();
    const int64_t rows = ct_int(&rng, 1, 12), dim = 4;
    double z[12 * 4], loss[12], grad[12 * 4];
    int64_t labels[12];
    ct_fill_normal(&rng, z, rows * dim, 1.0);
    for (int64_t i = 0; i < rows; ++i) labels[i] = 7 * i - 20;
    for (int r = 0; r < 3; ++r) {
        closs_supcon_params params = CLOSS_SUPCON_PARAMS_INIT;
        params.reduction = (closs_reduction_t)r;
        int64_t valid = -1;
        ct_poison(loss, 12);
        ct_poison(grad, 12 * 4);
        cr_assert_eq(closs_ref_supcon(&params, f64(z, rows, dim),
                                      closs_vector(labels, CLOSS_I64, rows), NULL, loss, grad,
                                      &valid),
                     CLOSS_STATUS_SUCCESS, "%s", closs_last_error());
        cr_assert_eq(valid, 0, "valid = %lld%s", (long long)valid, ct_seed_text(&rng));
        assert_all_zero(loss, r == CLOSS_REDUCTION_NONE ? rows : 1, "loss");
        assert_all_zero(grad, rows * dim, "grad");
    }
}

/* M = 1 (the smallest batch SupCon accepts): no positive, loss 0, valid 0, gradient 0. */
Test(cases, supcon_single_row) {
    const double z[] = {0.3, -1.2, 2.0};
    const int32_t label = 4;
    closs_supcon_params params = CLOSS_SUPCON_PARAMS_INIT;
    double loss = 1.0, grad[3];
    int64_t valid = -1;
    cr_assert_eq(closs_ref_supcon(&params, f64(z, 1, 3), closs_vector(&label, CLOSS_I32, 1), NULL,
                                  &loss, grad, &valid),
                 CLOSS_STATUS_SUCCESS, "%s", closs_last_error());
    cr_assert_eq(valid, 0);
    assert_all_zero(&loss, 1, "loss");
    assert_all_zero(grad, 3, "grad");
}

/* One pair among three rows, normalised, τ = 0.5, τ_b = 1 (so τ/τ_b = 0.5), labels {5, 9, 5}:
 * z0 = (1,0), z1 = (0,1), z2 = (3,4) → (0.6,0.8); s01 = 0, s02 = 0.6, s12 = 0.8; s/τ doubles s.
 *   ℓ0 = 0.5·(−1.2 + log(e⁰ + e^1.2))   = 0.5·(−1.2 + 1.46328247) = 0.13164123
 *   ℓ1 = 0 (no positive)
 *   ℓ2 = 0.5·(−1.2 + log(e^1.2 + e^1.6)) = 0.5·(−1.2 + 2.11301525) = 0.45650763
 *   valid = 2, sum = 0.58814886, mean = sum/valid = 0.29407443,
 *   official SupContrast (mean over all M = 3 anchors) = sum/3 = mean·valid/M = 0.19604962. */
Test(cases, supcon_one_pair) {
    const double z[] = {1, 0, 0, 1, 3, 4};
    const int64_t labels[] = {5, 9, 5};
    const double want[] = {0.5 * (-1.2 + log(1.0 + exp(1.2))), 0.0,
                           0.5 * (-1.2 + log(exp(1.2) + exp(1.6)))};
    assert_near(want[0], 0.1316412336690156, "the comment's arithmetic (ℓ0)");
    assert_near(want[2], 0.4565076261999764, "the comment's arithmetic (ℓ2)");
    closs_supcon_params params = CLOSS_SUPCON_PARAMS_INIT;
    params.temperature = 0.5;
    params.base_temperature = 1.0;
    double loss[3];
    int64_t valid = -1;
    params.reduction = CLOSS_REDUCTION_NONE;
    cr_assert_eq(closs_ref_supcon(&params, f64(z, 3, 2), closs_vector(labels, CLOSS_I64, 3), NULL,
                                  loss, NULL, &valid),
                 CLOSS_STATUS_SUCCESS, "%s", closs_last_error());
    assert_all_near(loss, want, 3, "none");
    cr_assert(loss[1] == 0.0, "the anchor without a positive has ℓ = %.17g, want exactly 0",
              loss[1]);
    cr_assert_eq(valid, 2);
    params.reduction = CLOSS_REDUCTION_SUM;
    cr_assert_eq(closs_ref_supcon(&params, f64(z, 3, 2), closs_vector(labels, CLOSS_I64, 3), NULL,
                                  loss, NULL, NULL),
                 CLOSS_STATUS_SUCCESS);
    assert_near(loss[0], 0.588148859868992, "sum");
    params.reduction = CLOSS_REDUCTION_MEAN;
    cr_assert_eq(closs_ref_supcon(&params, f64(z, 3, 2), closs_vector(labels, CLOSS_I64, 3), NULL,
                                  loss, NULL, &valid),
                 CLOSS_STATUS_SUCCESS);
    assert_near(loss[0], 0.294074429934496, "mean (over valid anchors)");
    assert_near(loss[0] * (double)valid / 3.0, 0.19604961995633066, "official convention");
}

/* The gradient by hand, normalize off, D = 1, τ = τ_b = 1, z = (1, 2, −1), labels {0, 0, 1}:
 * s01 = 2, s02 = −1, s12 = −2. Row 2 is a singleton (ℓ2 = 0) but still sits in the denominators.
 *   ℓ0 = −z0z1 + log(e^{z0z1} + e^{z0z2}),  ℓ1 = −z1z0 + log(e^{z1z0} + e^{z1z2})
 *   with A = e² + e^−1, B = e² + e^−2:
 *   ∂ℓ0/∂z0 = −z1 + (z1e² + z2e^−1)/A = −2 + (2e² − e^−1)/A,  ∂ℓ0/∂z1 = −z0 + z0e²/A = −e^−1/A,
 *   ∂ℓ0/∂z2 = z0e^−1/A = e^−1/A;
 *   ∂ℓ1/∂z1 = −z0 + (z0e² + z2e^−2)/B = −1 + (e² − e^−2)/B,  ∂ℓ1/∂z0 = −z1 + z1e²/B = −2e^−2/B,
 *   ∂ℓ1/∂z2 = z1e^−2/B = 2e^−2/B.
 *   sum-reduction gradient: g_k = ∂ℓ0/∂z_k + ∂ℓ1/∂z_k; mean (valid = 2) halves it. */
Test(cases, supcon_gradient_by_hand) {
    const double z[] = {1, 2, -1};
    const int32_t labels[] = {0, 0, 1};
    const double e = exp(1.0), A = e * e + 1.0 / e, B = e * e + exp(-2.0);
    const double loss_sum = (-2.0 + log(A)) + (-2.0 + log(B));
    const double g_sum[] = {-2.0 + (2.0 * e * e - 1.0 / e) / A - 2.0 * exp(-2.0) / B,
                            -(1.0 / e) / A - 1.0 + (e * e - exp(-2.0)) / B,
                            (1.0 / e) / A + 2.0 * exp(-2.0) / B};
    closs_supcon_params params = CLOSS_SUPCON_PARAMS_INIT;
    params.temperature = 1.0;
    params.normalize = 0;
    for (int r = 0; r < 2; ++r) {
        params.reduction = (closs_reduction_t)r;
        const double scale = r == CLOSS_REDUCTION_MEAN ? 0.5 : 1.0;
        double loss, grad[3], want[3];
        int64_t valid = -1;
        cr_assert_eq(closs_ref_supcon(&params, f64(z, 3, 1), closs_vector(labels, CLOSS_I32, 3),
                                      NULL, &loss, grad, &valid),
                     CLOSS_STATUS_SUCCESS, "%s", closs_last_error());
        cr_assert_eq(valid, 2);
        assert_near(loss, scale * loss_sum, r == CLOSS_REDUCTION_MEAN ? "mean" : "sum");
        for (int k = 0; k < 3; ++k) want[k] = scale * g_sum[k];
        assert_all_near(grad, want, 3, "grad_z");
    }
}

/* ---- conventions: non-differentiable points ------------------------------------------------ */

/* A hinge exactly at 0 has gradient 0 (the one-sided value), never NaN:
 *   triplet, squared Euclidean, α = 0: a = (0,0), p = (1,0), n = (0,1): 1 − 1 + 0 = 0;
 *   triplet, Euclidean, α = 1: a = (0,0), p = (3,4), n = (0,6): 5 − 6 + 1 = 0;
 *   cosine, plain, y = 0: x1 = (1,0), x2 = (3,4): c = 0.6 = δ, so max(0, c − δ) sits at its kink;
 *   pair, Euclidean, y = 0, m = 5, d = 5: h = 0 (h² is smooth there: 0 too). */
Test(cases, gradient_at_a_hinge_exactly_zero_is_zero) {
    double loss, ga[2], gp[2], gn[2];
    closs_triplet_params triplet = CLOSS_TRIPLET_PARAMS_INIT;
    triplet.margin = 0.0;
    cr_assert_eq(closs_ref_triplet(&triplet, f64((const double[]){0, 0}, 1, 2),
                                   f64((const double[]){1, 0}, 1, 2),
                                   f64((const double[]){0, 1}, 1, 2), NULL, &loss, ga, gp, gn),
                 CLOSS_STATUS_SUCCESS);
    assert_all_zero(&loss, 1, "triplet sqeuclidean loss");
    assert_all_zero(ga, 2, "triplet sqeuclidean grad_anchor");
    assert_all_zero(gp, 2, "triplet sqeuclidean grad_positive");
    assert_all_zero(gn, 2, "triplet sqeuclidean grad_negative");

    triplet.distance = CLOSS_DISTANCE_EUCLIDEAN;
    triplet.margin = 1.0;
    cr_assert_eq(closs_ref_triplet(&triplet, f64((const double[]){0, 0}, 1, 2),
                                   f64((const double[]){3, 4}, 1, 2),
                                   f64((const double[]){0, 6}, 1, 2), NULL, &loss, ga, gp, gn),
                 CLOSS_STATUS_SUCCESS);
    assert_all_zero(&loss, 1, "triplet euclidean loss");
    assert_all_zero(ga, 2, "triplet euclidean grad_anchor");
    assert_all_zero(gp, 2, "triplet euclidean grad_positive");
    assert_all_zero(gn, 2, "triplet euclidean grad_negative");

    const double x1[] = {1, 0}, x2[] = {3, 4}, y0 = 0.0;
    double g1[2], g2[2];
    closs_cosine_params cosine = CLOSS_COSINE_PARAMS_INIT;
    cosine.margin = 0.6;
    cr_assert_eq(closs_ref_cosine(&cosine, f64(x1, 1, 2), f64(x2, 1, 2),
                                  closs_vector(&y0, CLOSS_F64, 1), NULL, &loss, g1, g2),
                 CLOSS_STATUS_SUCCESS);
    assert_all_zero(&loss, 1, "cosine loss");
    assert_all_zero(g1, 2, "cosine grad_x1");
    assert_all_zero(g2, 2, "cosine grad_x2");

    closs_pair_params pair = CLOSS_PAIR_PARAMS_INIT;
    pair.margin = 5.0;
    const double origin[] = {0, 0};
    cr_assert_eq(closs_ref_pair(&pair, f64(origin, 1, 2), f64(x2, 1, 2),
                                closs_vector(&y0, CLOSS_F64, 1), NULL, &loss, g1, g2),
                 CLOSS_STATUS_SUCCESS);
    assert_all_zero(&loss, 1, "pair loss");
    assert_all_zero(g1, 2, "pair grad_x1");
    assert_all_zero(g2, 2, "pair grad_x2");
}

/* A Euclidean distance exactly 0 has gradient 0 (‖·‖ is not differentiable there):
 *   pair, x1 == x2, y = 1: ℓ = 0, gradient 0;  y = 0, m = 1: ℓ = (1 − 0)² = 1, ∂ℓ/∂d = −2 but
 *   ∂d/∂x = 0, so the gradient is 0 (not NaN from (x1 − x2)/0);
 *   triplet, Euclidean, a == p = (1,1), n = (1,2), α = 2: ℓ = 0 − 1 + 2 = 1,
 *   ∂ℓ/∂a = 0 − (a − n)/1 = (0,1), ∂ℓ/∂p = 0, ∂ℓ/∂n = −(n − a)/1 = (0,−1). */
Test(cases, gradient_at_euclidean_distance_zero_is_zero) {
    ct_rng rng = ct_rng_fresh();
    double x[6], loss[2], g1[6], g2[6];
    ct_fill_normal(&rng, x, 6, 1.0);
    const double y[] = {1.0, 0.0};
    closs_pair_params pair = CLOSS_PAIR_PARAMS_INIT;
    pair.reduction = CLOSS_REDUCTION_NONE;
    const double both[] = {x[0], x[1], x[2], x[0], x[1], x[2]}; /* the same point twice */
    cr_assert_eq(closs_ref_pair(&pair, f64(both, 2, 3), f64(both, 2, 3),
                                closs_vector(y, CLOSS_F64, 2), NULL, loss, g1, g2),
                 CLOSS_STATUS_SUCCESS);
    assert_all_near(loss, (const double[]){0.0, 1.0}, 2, "pair losses");
    assert_all_zero(g1, 6, "pair grad_x1");
    assert_all_zero(g2, 6, "pair grad_x2");

    closs_triplet_params triplet = CLOSS_TRIPLET_PARAMS_INIT;
    triplet.distance = CLOSS_DISTANCE_EUCLIDEAN;
    triplet.margin = 2.0;
    double ga[2], gp[2], gn[2];
    const double a[] = {1, 1}, n[] = {1, 2};
    cr_assert_eq(closs_ref_triplet(&triplet, f64(a, 1, 2), f64(a, 1, 2), f64(n, 1, 2), NULL, loss,
                                   ga, gp, gn),
                 CLOSS_STATUS_SUCCESS);
    assert_near(loss[0], 1.0, "triplet loss");
    assert_all_near(ga, (const double[]){0, 1}, 2, "triplet grad_anchor");
    assert_all_zero(gp, 2, "triplet grad_positive");
    assert_all_near(gn, (const double[]){0, -1}, 2, "triplet grad_negative");
}

/* Zero rows with normalisation on (ẑ = 0/max(0, 1e-12) = 0; cos clamps its norms at 1e-8):
 * finite losses and gradients for every loss that normalises. */
Test(cases, zero_rows_give_finite_results) {
    ct_rng rng = ct_rng_fresh();
    enum { ROWS = 6, DIM = 3 };
    double z[ROWS * DIM], x2[ROWS * DIM], x3[ROWS * DIM], loss[ROWS];
    double g1[ROWS * DIM], g2[ROWS * DIM], g3[ROWS * DIM];
    ct_fill_normal(&rng, z, ROWS * DIM, 1.0);
    ct_fill_normal(&rng, x2, ROWS * DIM, 1.0);
    ct_fill_normal(&rng, x3, ROWS * DIM, 1.0);
    for (int c = 0; c < DIM; ++c) z[1 * DIM + c] = x2[4 * DIM + c] = x3[2 * DIM + c] = 0.0;
    const double y[ROWS] = {0, 1, 0, 1, 0.5, 0};
    const int64_t labels[ROWS] = {1, 1, 2, 2, 1, 3};

    for (int r = 0; r < 3; ++r) {
        const closs_reduction_t reduction = (closs_reduction_t)r;
        const int64_t outputs = reduction == CLOSS_REDUCTION_NONE ? ROWS : 1;
        closs_ntxent_params ntxent = CLOSS_NTXENT_PARAMS_INIT;
        ntxent.reduction = reduction;
        cr_assert_eq(closs_ref_ntxent(&ntxent, f64(z, ROWS, DIM), NULL, loss, g1),
                     CLOSS_STATUS_SUCCESS);
        cr_assert_eq(ct_first_nonfinite(loss, outputs), -1, "ntxent loss%s", ct_seed_text(&rng));
        cr_assert_eq(ct_first_nonfinite(g1, ROWS * DIM), -1, "ntxent grad%s", ct_seed_text(&rng));

        closs_supcon_params supcon = CLOSS_SUPCON_PARAMS_INIT;
        supcon.reduction = reduction;
        cr_assert_eq(closs_ref_supcon(&supcon, f64(z, ROWS, DIM),
                                      closs_vector(labels, CLOSS_I64, ROWS), NULL, loss, g1, NULL),
                     CLOSS_STATUS_SUCCESS);
        cr_assert_eq(ct_first_nonfinite(loss, outputs), -1, "supcon loss%s", ct_seed_text(&rng));
        cr_assert_eq(ct_first_nonfinite(g1, ROWS * DIM), -1, "supcon grad%s", ct_seed_text(&rng));

        closs_cosine_params cosine = CLOSS_COSINE_PARAMS_INIT;
        cosine.reduction = reduction;
        cr_assert_eq(closs_ref_cosine(&cosine, f64(z, ROWS, DIM), f64(x2, ROWS, DIM),
                                      closs_vector(y, CLOSS_F64, ROWS), NULL, loss, g1, g2),
                     CLOSS_STATUS_SUCCESS);
        cr_assert_eq(ct_first_nonfinite(loss, outputs), -1, "cosine loss%s", ct_seed_text(&rng));
        cr_assert_eq(ct_first_nonfinite(g1, ROWS * DIM), -1, "cosine grad%s", ct_seed_text(&rng));
        cr_assert_eq(ct_first_nonfinite(g2, ROWS * DIM), -1, "cosine grad%s", ct_seed_text(&rng));

        closs_pair_params pair = CLOSS_PAIR_PARAMS_INIT;
        pair.distance = CLOSS_DISTANCE_COSINE;
        pair.reduction = reduction;
        cr_assert_eq(closs_ref_pair(&pair, f64(z, ROWS, DIM), f64(x2, ROWS, DIM),
                                    closs_vector(y, CLOSS_F64, ROWS), NULL, loss, g1, g2),
                     CLOSS_STATUS_SUCCESS);
        cr_assert_eq(ct_first_nonfinite(loss, outputs), -1, "pair loss%s", ct_seed_text(&rng));
        cr_assert_eq(ct_first_nonfinite(g1, ROWS * DIM), -1, "pair grad%s", ct_seed_text(&rng));
        cr_assert_eq(ct_first_nonfinite(g2, ROWS * DIM), -1, "pair grad%s", ct_seed_text(&rng));

        closs_triplet_params triplet = CLOSS_TRIPLET_PARAMS_INIT;
        triplet.distance = CLOSS_DISTANCE_COSINE;
        triplet.reduction = reduction;
        cr_assert_eq(closs_ref_triplet(&triplet, f64(z, ROWS, DIM), f64(x2, ROWS, DIM),
                                       f64(x3, ROWS, DIM), NULL, loss, g1, g2, g3),
                     CLOSS_STATUS_SUCCESS);
        cr_assert_eq(ct_first_nonfinite(loss, outputs), -1, "triplet loss%s", ct_seed_text(&rng));
        cr_assert_eq(ct_first_nonfinite(g1, ROWS * DIM), -1, "triplet grad%s", ct_seed_text(&rng));
        cr_assert_eq(ct_first_nonfinite(g2, ROWS * DIM), -1, "triplet grad%s", ct_seed_text(&rng));
        cr_assert_eq(ct_first_nonfinite(g3, ROWS * DIM), -1, "triplet grad%s", ct_seed_text(&rng));
    }
}

/* ---- conventions: NaN propagation ---------------------------------------------------------- */

enum { NAN_ROWS = 6, NAN_DIM = 4 };

/* One call of loss `kind` (0 pair, 1 triplet, 2 NT-Xent, 3 SupCon, 4 cosine) on three random
 * matrices `in` with options `variant` (distance / normalize). */
static closs_status_t nan_call(int kind, int variant, const double *const *in,
                               closs_reduction_t reduction, double *loss) {
    static const double y[NAN_ROWS] = {0, 1, 0.5, 0, 1, 0};
    static const int64_t labels[NAN_ROWS] = {3, 3, 8, 8, 8, 5}; /* row 5 is a singleton */
    const closs_matrix_t a = f64(in[0], NAN_ROWS, NAN_DIM), b = f64(in[1], NAN_ROWS, NAN_DIM),
                         c = f64(in[2], NAN_ROWS, NAN_DIM);
    const closs_vector_t yv = closs_vector(y, CLOSS_F64, NAN_ROWS);
    switch (kind) {
    case 0: {
        closs_pair_params p = CLOSS_PAIR_PARAMS_INIT;
        p.distance = variant ? CLOSS_DISTANCE_COSINE : CLOSS_DISTANCE_EUCLIDEAN;
        p.reduction = reduction;
        return closs_ref_pair(&p, a, b, yv, NULL, loss, NULL, NULL);
    }
    case 1: {
        closs_triplet_params p = CLOSS_TRIPLET_PARAMS_INIT;
        p.distance = (closs_distance_t)variant;
        p.swap = variant == 1;
        p.reduction = reduction;
        return closs_ref_triplet(&p, a, b, c, NULL, loss, NULL, NULL, NULL);
    }
    case 2: {
        closs_ntxent_params p = CLOSS_NTXENT_PARAMS_INIT;
        p.normalize = variant & 1;
        p.reduction = reduction;
        return closs_ref_ntxent(&p, a, NULL, loss, NULL);
    }
    case 3: {
        closs_supcon_params p = CLOSS_SUPCON_PARAMS_INIT;
        p.normalize = variant & 1;
        p.reduction = reduction;
        return closs_ref_supcon(&p, a, closs_vector(labels, CLOSS_I64, NAN_ROWS), NULL, loss, NULL,
                                NULL);
    }
    default: {
        closs_cosine_params p = CLOSS_COSINE_PARAMS_INIT;
        p.squared = variant & 1;
        p.reduction = reduction;
        return closs_ref_cosine(&p, a, b, yv, NULL, loss, NULL, NULL);
    }
    }
}

/* Puts `bad` at a random column of every (loss, options, input, row) in turn and checks the loss
 * of every reduction with `ok` (isnan for NaN, "not finite" for Inf): MEAN and SUM; with NONE the
 * bad row's own loss for the row-wise losses (its anchor's for NT-Xent; for SupCon, an anchor with
 * a positive, since the bad row sits in every denominator, even a singleton's row). */
static void check_bad_value_reaches_the_loss(double bad, int (*ok)(double), const char *want) {
    ct_rng rng = ct_rng_fresh();
    static const int inputs_of[] = {2, 3, 1, 1, 2};
    static const char *names[] = {"pair", "triplet", "ntxent", "supcon", "cosine"};
    double data[3][NAN_ROWS * NAN_DIM];
    int checks = 0, failures = 0;
    char first_failure[256] = "", where[512] = "";
    for (int kind = 0; kind < 5; ++kind)
        for (int variant = 0; variant < 3; ++variant)
            for (int input = 0; input < inputs_of[kind]; ++input) {
                int failed_here = 0;
                for (int row = 0; row < NAN_ROWS; ++row) {
                    for (int k = 0; k < 3; ++k)
                        ct_fill_normal(&rng, data[k], NAN_ROWS * NAN_DIM, 1.0);
                    const int col = (int)ct_int(&rng, 0, NAN_DIM - 1);
                    const double value = ct_int(&rng, 0, 1) ? bad : -bad;
                    data[input][row * NAN_DIM + col] = value;
                    const double *in[] = {data[0], data[1], data[2]};
                    for (int r = 0; r < 3; ++r) {
                        double loss[NAN_ROWS];
                        cr_assert_eq(nan_call(kind, variant, in, (closs_reduction_t)r, loss),
                                     CLOSS_STATUS_SUCCESS, "%s", closs_last_error());
                        const int64_t at = r == CLOSS_REDUCTION_NONE
                                               ? (kind == 3 && row == NAN_ROWS - 1 ? 0 : row)
                                               : 0;
                        ++checks;
                        if (ok(loss[at])) continue;
                        ++failures;
                        failed_here = 1;
                        if (!first_failure[0])
                            snprintf(first_failure, sizeof first_failure,
                                     "%s variant %d: %g at input %d [%d][%d], reduction %d: "
                                     "loss[%lld] = %.17g",
                                     names[kind], variant, value, input, row, col, r, (long long)at,
                                     loss[at]);
                    }
                }
                if (failed_here) {
                    size_t used = strlen(where);
                    snprintf(where + used, sizeof where - used, "%s%s variant %d input %d",
                             used ? ", " : "", names[kind], variant, input);
                }
            }
    cr_assert_eq(failures, 0,
                 "%d of %d losses are not %s; first: %s; in: %s (see nan_call for the variants: "
                 "triplet 0 euclidean, 1 sqeuclidean with swap, 2 cosine; input 2 = negative)%s",
                 failures, checks, want, first_failure, where, ct_seed_text(&rng));
}

static int is_nan(double x) { return isnan(x); }
static int is_not_finite(double x) { return !isfinite(x); }

/* contract.md: "NaN or Inf in an input propagates to the loss (it is not silently dropped)". */
Test(cases, nan_in_any_input_reaches_the_loss) {
    check_bad_value_reaches_the_loss(NAN, is_nan, "NaN");
}

/* Also Inf: an infinite input must not vanish through max(0, −∞) = 0 (a triplet negative at
 * infinite distance) or exp(−∞) = 0 (an unnormalised SupCon/NT-Xent row at similarity −∞), which
 * would leave a finite loss next to a NaN gradient (0·∞). */
Test(cases, inf_in_any_input_reaches_the_loss) {
    check_bad_value_reaches_the_loss(INFINITY, is_not_finite, "NaN or ±Inf");
}

/* ---- conventions: empty batches ------------------------------------------------------------ */

/* rows = 0 for pair, triplet and cosine: loss 0 for MEAN (by convention) and SUM; NONE writes
 * nothing; no gradient element is written. Data may be NULL or not. */
Test(cases, empty_batch) {
    double storage[4] = {1, 2, 3, 4};
    for (int with_data = 0; with_data < 2; ++with_data)
        for (int r = 0; r < 3; ++r) {
            const closs_reduction_t reduction = (closs_reduction_t)r;
            const void *data = with_data ? storage : NULL;
            const closs_matrix_t empty = closs_matrix(data, CLOSS_F64, 0, 4);
            const closs_vector_t no_y = closs_vector(data, CLOSS_F64, 0);
            double loss[2], grads[3][4];
            for (int kind = 0; kind < 3; ++kind) {
                ct_poison(loss, 2);
                for (int k = 0; k < 3; ++k) ct_poison(grads[k], 4);
                closs_status_t status;
                if (kind == 0) {
                    closs_pair_params p = CLOSS_PAIR_PARAMS_INIT;
                    p.reduction = reduction;
                    status = closs_ref_pair(&p, empty, empty, no_y, NULL, loss, grads[0], grads[1]);
                } else if (kind == 1) {
                    closs_triplet_params p = CLOSS_TRIPLET_PARAMS_INIT;
                    p.reduction = reduction;
                    status = closs_ref_triplet(&p, empty, empty, empty, NULL, loss, grads[0],
                                               grads[1], grads[2]);
                } else {
                    closs_cosine_params p = CLOSS_COSINE_PARAMS_INIT;
                    p.reduction = reduction;
                    status =
                        closs_ref_cosine(&p, empty, empty, no_y, NULL, loss, grads[0], grads[1]);
                }
                cr_assert_eq(status, CLOSS_STATUS_SUCCESS, "kind %d: %s", kind, closs_last_error());
                if (reduction == CLOSS_REDUCTION_NONE)
                    cr_assert_eq(ct_first_unpoisoned(loss, 2), -1,
                                 "kind %d: NONE wrote a loss for an empty batch", kind);
                else
                    cr_assert(loss[0] == 0.0 && ct_first_unpoisoned(loss + 1, 1) == -1,
                              "kind %d reduction %d: loss %.17g, want 0 (one value)", kind, r,
                              loss[0]);
                for (int k = 0; k < 3; ++k)
                    cr_assert_eq(ct_first_unpoisoned(grads[k], 4), -1,
                                 "kind %d: gradient %d written for an empty batch", kind, k);
            }
        }
}

/* ---- CLIP and SigLIP ----------------------------------------------------------------------- */

Test(cases, two_tower_init_macros_hold_the_contract_defaults) {
    closs_clip_params clip = CLOSS_CLIP_PARAMS_INIT;
    cr_assert(clip.size == sizeof clip && clip.logit_scale == 1.0 / 0.07 && clip.symmetric == 1 &&
              clip.in_batch_negatives == 1 && clip.normalize == 1 && clip.grad_negatives == 1 &&
              clip.reduction == CLOSS_REDUCTION_MEAN && clip.check_inputs == 0 &&
              clip.path == CLOSS_PATH_AUTO && clip.row_begin == 0 && clip.row_count == 0 &&
              clip.negatives_begin == 0 && clip.negatives_count == 0);
    closs_siglip_params siglip = CLOSS_SIGLIP_PARAMS_INIT;
    cr_assert(siglip.size == sizeof siglip && siglip.logit_scale == 10.0 &&
              siglip.logit_bias == -10.0 && siglip.normalize == 1 && siglip.grad_negatives == 1 &&
              siglip.reduction == CLOSS_REDUCTION_MEAN && siglip.check_inputs == 0 &&
              siglip.path == CLOSS_PATH_AUTO && siglip.row_begin == 0 && siglip.row_count == 0 &&
              siglip.negatives_begin == 0 && siglip.negatives_count == 0);
}

static double softplus(double x) { return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x)); }
static double sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

/* a = (2e1, e2), b = (e1, 3e2), normalised: x = s·I. Every direction of every pair has the
 * positive s and one negative 0, so ℓ_i = −s + log(eˢ + 1) = softplus(−s) and
 * ∂L/∂s = −σ(−s). With w = ½ (the mean) and h = ½, G_ii = h·w·(σ(s) + σ(s)) − w = −w·σ(−s) and
 * G_ij = w·σ(−s) off the diagonal, so ∂L/∂â_0 = s·w·σ(−s)·(e2 − e1); through the normalisation
 * (the e1 part drops, ÷ ‖a_0‖ = 2): ∂L/∂a_0 = (s/4)·σ(−s)·e2, ∂L/∂a_1 = (s/2)·σ(−s)·e1. Likewise
 * ∂L/∂b_0 = (s/2)·σ(−s)·e2 and ∂L/∂b_1 = (s/6)·σ(−s)·e1. */
Test(cases, clip_orthogonal_pairs) {
    const double a[] = {2, 0, 0, 1}, b[] = {1, 0, 0, 3}, s = 3.0, g = s * sigmoid(-s);
    closs_clip_params params = CLOSS_CLIP_PARAMS_INIT;
    params.logit_scale = s;
    double loss, grad_a[4], grad_b[4], grad_scale;
    cr_assert_eq(closs_ref_clip(&params, f64(a, 2, 2), f64(b, 2, 2), NULL, &loss, grad_a, grad_b,
                                &grad_scale),
                 CLOSS_STATUS_SUCCESS, "%s", closs_last_error());
    assert_near(loss, softplus(-s), "loss");
    assert_near(grad_scale, -sigmoid(-s), "∂L/∂s");
    const double want_a[] = {0, g / 4, g / 2, 0}, want_b[] = {0, g / 2, g / 6, 0};
    assert_all_near(grad_a, want_a, 4, "∂L/∂a");
    assert_all_near(grad_b, want_b, 4, "∂L/∂b");
    /* One direction (symmetric = 0) on these rows is the same loss. */
    params.symmetric = 0;
    double one_way;
    cr_assert_eq(
        closs_ref_clip(&params, f64(a, 2, 2), f64(b, 2, 2), NULL, &one_way, NULL, NULL, NULL),
        CLOSS_STATUS_SUCCESS);
    assert_near(one_way, softplus(-s), "symmetric = 0");
}

/* A confident pair keeps its loss and gradient to full relative precision: the same rows at
 * s = 40 give ℓ = softplus(−40) ≈ 4.2e-18 and ∂L/∂s = −σ(−40), which −x_ii + log Σ exp(x_ij)
 * would round to 0 next to logits of 40. */
Test(cases, clip_confident_pairs_keep_their_precision) {
    const double a[] = {2, 0, 0, 1}, b[] = {1, 0, 0, 3}, s = 40.0;
    for (int symmetric = 0; symmetric <= 1; ++symmetric) {
        closs_clip_params params = CLOSS_CLIP_PARAMS_INIT;
        params.logit_scale = s;
        params.symmetric = symmetric;
        double loss, grad_a[4], grad_scale;
        cr_assert_eq(closs_ref_clip(&params, f64(a, 2, 2), f64(b, 2, 2), NULL, &loss, grad_a, NULL,
                                    &grad_scale),
                     CLOSS_STATUS_SUCCESS);
        const double want_loss = log1p(exp(-s)), want_scale = -exp(-s) / (1.0 + exp(-s));
        cr_assert(fabs(loss - want_loss) <= 1e-14 * want_loss, "loss %.17g, want %.17g", loss,
                  want_loss);
        cr_assert(fabs(grad_scale - want_scale) <= 1e-14 * fabs(want_scale),
                  "∂L/∂s %.17g, want %.17g", grad_scale, want_scale);
        const double want_a1 = s * sigmoid(-s) / 4.0;
        cr_assert(fabs(grad_a[1] - want_a1) <= 1e-14 * want_a1, "∂L/∂a_01 %.17g, want %.17g",
                  grad_a[1], want_a1);
    }
}

/* a = (e1, e2), b = (e1, e2, e3): the extra negative e3 scores 0 against both rows.
 * With in-batch negatives: ℓ_i = −s + log(eˢ + 1 + 1) = log(1 + 2e⁻ˢ) (sentence-transformers'
 * MNRL with a hard negative). Without (MoCo v2, C(i) = {i, 2}): ℓ_i = log(1 + e⁻ˢ). A single pair
 * without extra negatives has ℓ = 0 and a zero gradient, exactly. */
Test(cases, clip_hard_negatives_and_queues) {
    const double a[] = {1, 0, 0, 0, 1, 0}, b[] = {1, 0, 0, 0, 1, 0, 0, 0, 1}, s = 20.0;
    closs_clip_params params = CLOSS_CLIP_PARAMS_INIT;
    params.logit_scale = s;
    params.symmetric = 0;
    params.reduction = CLOSS_REDUCTION_NONE;
    double loss[2];
    cr_assert_eq(closs_ref_clip(&params, f64(a, 2, 3), f64(b, 3, 3), NULL, loss, NULL, NULL, NULL),
                 CLOSS_STATUS_SUCCESS, "%s", closs_last_error());
    assert_near(loss[0], log1p(2.0 * exp(-s)), "MNRL row 0");
    assert_near(loss[1], log1p(2.0 * exp(-s)), "MNRL row 1");
    params.in_batch_negatives = 0;
    cr_assert_eq(closs_ref_clip(&params, f64(a, 2, 3), f64(b, 3, 3), NULL, loss, NULL, NULL, NULL),
                 CLOSS_STATUS_SUCCESS, "%s", closs_last_error());
    assert_near(loss[0], log1p(exp(-s)), "MoCo row 0");
    assert_near(loss[1], log1p(exp(-s)), "MoCo row 1");

    closs_clip_params single = CLOSS_CLIP_PARAMS_INIT;
    const double u[] = {0.3, -1.2, 0.7}, v[] = {2.0, 0.1, -0.4};
    double one, grad_a[3], grad_b[3], grad_scale;
    cr_assert_eq(closs_ref_clip(&single, f64(u, 1, 3), f64(v, 1, 3), NULL, &one, grad_a, grad_b,
                                &grad_scale),
                 CLOSS_STATUS_SUCCESS);
    cr_assert(one == 0.0, "a single pair: loss %.17g, want 0", one);
    assert_all_zero(grad_a, 3, "single pair ∂L/∂a");
    assert_all_zero(grad_b, 3, "single pair ∂L/∂b");
    assert_all_zero(&grad_scale, 1, "single pair ∂L/∂s");
}

/* a = (e1, e2), b = (e1, e2, e3): x_ii = s + β, every other x_ij = β, so
 * ℓ_i = softplus(−(s + β)) + 2·softplus(β), ∂L/∂s = −σ(−(s + β)) (the mean of two equal rows) and
 * ∂L/∂β = −σ(−(s + β)) + 2·σ(β). At the defaults s = 10, β = −10: ℓ_i = log 2 + 2·softplus(−10).
 * Without gradients for the extra negative, ∂L/∂b has two rows, equal to the first two of the
 * full gradient. */
Test(cases, siglip_orthogonal_rows) {
    const double a[] = {1, 0, 0, 0, 1, 0}, b[] = {1, 0, 0, 0, 1, 0, 0, 0, 1};
    const double scales[][2] = {{10.0, -10.0}, {3.0, 0.5}};
    for (int k = 0; k < 2; ++k) {
        const double s = scales[k][0], beta = scales[k][1];
        closs_siglip_params params = CLOSS_SIGLIP_PARAMS_INIT;
        params.logit_scale = s;
        params.logit_bias = beta;
        double loss, grad_a[6], grad_b[9], grad_scale, grad_bias, partners[9];
        cr_assert_eq(closs_ref_siglip(&params, f64(a, 2, 3), f64(b, 3, 3), NULL, &loss, grad_a,
                                      grad_b, &grad_scale, &grad_bias),
                     CLOSS_STATUS_SUCCESS, "%s", closs_last_error());
        assert_near(loss, softplus(-(s + beta)) + 2.0 * softplus(beta), "loss");
        assert_near(grad_scale, -sigmoid(-(s + beta)), "∂L/∂s");
        assert_near(grad_bias, -sigmoid(-(s + beta)) + 2.0 * sigmoid(beta), "∂L/∂β");
        params.grad_negatives = 0;
        ct_poison(partners, 9);
        cr_assert_eq(closs_ref_siglip(&params, f64(a, 2, 3), f64(b, 3, 3), NULL, &loss, NULL,
                                      partners, NULL, NULL),
                     CLOSS_STATUS_SUCCESS);
        cr_assert_eq(ct_first_bit_difference(partners, grad_b, 6), -1);
        cr_assert_eq(ct_first_unpoisoned(partners + 6, 3), -1, "the negative's row was written");
    }
}

/* Which losses a NaN or an Inf in one row reaches (NONE, N = 5, K = 2): with in-batch negatives
 * every row of b is in every C(i), so a bad row of b reaches every loss; a bad row i of a reaches
 * ℓ_i, and every loss when symmetric (it is in every column's log-sum-exp); without in-batch
 * negatives a bad partner b_j reaches only ℓ_j, a bad extra negative every loss. SigLIP sums every
 * row of b: a bad row of b reaches every loss, a bad row of a its own. Unnormalised, a row at −∞
 * similarity would vanish from exp(−∞) = 0 and softplus(−∞) = 0: it must still be NaN. The
 * gradient of every reached loss is NaN somewhere too. */
Test(cases, two_tower_nan_reaches_exactly_the_losses_it_enters) {
    ct_rng rng = ct_rng_fresh();
    enum { N = 5, K = 2, D = 3 };
    static const int variants[][3] = {/* siglip, symmetric, in_batch_negatives */
                                      {0, 1, 1},
                                      {0, 0, 1},
                                      {0, 0, 0},
                                      {1, 0, 0}};
    for (size_t v = 0; v < sizeof variants / sizeof variants[0]; ++v)
        for (int normalize = 0; normalize <= 1; ++normalize)
            for (int in_b = 0; in_b <= 1; ++in_b)
                for (int row = 0; row < (in_b ? N + K : N); ++row)
                    for (int inf = 0; inf <= 1; ++inf) {
                        tt_problem p = tt_new(variants[v][0], N, K, D);
                        p.clip.symmetric = variants[v][1];
                        p.clip.in_batch_negatives = variants[v][2];
                        TT_FIELD(&p, normalize) = normalize;
                        TT_FIELD(&p, reduction) = CLOSS_REDUCTION_NONE;
                        tt_fill(&p, &rng);
                        tt_describe(&p);
                        double *bad = (in_b ? p.b : p.a) + row * D + ct_int(&rng, 0, D - 1);
                        *bad = inf ? -INFINITY : NAN;
                        tt_outputs o = tt_outputs_new(&p);
                        tt_run(&p, NULL, &o);
                        for (int i = 0; i < N; ++i) {
                            const int whole =
                                in_b ? (p.siglip || p.clip.in_batch_negatives || row >= N)
                                     : (!p.siglip && p.clip.symmetric);
                            const int reached = whole || row == i;
                            cr_assert(reached ? isnan(o.loss[i]) : isfinite(o.loss[i]),
                                      "%s: %s in %s row %d: loss[%d] = %g%s", p.name,
                                      inf ? "-inf" : "NaN", in_b ? "b" : "a", row, i, o.loss[i],
                                      ct_seed_text(&rng));
                        }
                        cr_assert_geq(ct_first_nonfinite(o.grad_a, N * D), 0, "%s: ∂L/∂a is finite",
                                      p.name);
                        cr_assert_geq(ct_first_nonfinite(o.grad_b, (N + K) * D), 0,
                                      "%s: ∂L/∂b is finite", p.name);
                        cr_assert(isnan(o.grad_scale), "%s: ∂L/∂s = %g", p.name, o.grad_scale);
                        tt_outputs_free(&o);
                        tt_free(&p);
                    }
}

/* Large logit scales never give NaN or Inf for finite inputs: s = 100 (CLIP's clamp) and beyond,
 * near-duplicate rows (a negative as close as the positive), the SigLIP bias at −s, and
 * unnormalised rows whose logits reach the thousands. */
Test(cases, two_tower_large_scales_stay_finite) {
    ct_rng rng = ct_rng_fresh();
    const double scales[] = {100.0, 1e4, 1e8};
    for (int siglip = 0; siglip <= 1; ++siglip)
        for (int normalize = 0; normalize <= 1; ++normalize)
            for (size_t k = 0; k < 3; ++k)
                for (int r = 0; r < 3; ++r) {
                    tt_problem p = tt_new(siglip, 6, 3, 8);
                    TT_FIELD(&p, normalize) = normalize;
                    TT_FIELD(&p, reduction) = (closs_reduction_t)r;
                    TT_FIELD(&p, logit_scale) = scales[k];
                    p.sig.logit_bias = -scales[k];
                    ct_fill_normal(&rng, p.a, 6 * 8, normalize ? 1.0 : 3.0);
                    ct_fill_normal(&rng, p.b, 9 * 8, normalize ? 1.0 : 3.0);
                    memcpy(p.b + 7 * 8, p.a + 2 * 8, 8 * sizeof(double)); /* a duplicate */
                    p.b[7 * 8] += 1e-9;
                    tt_describe(&p);
                    tt_outputs o = tt_outputs_new(&p);
                    tt_run(&p, NULL, &o);
                    cr_assert_eq(ct_first_nonfinite(o.loss, tt_loss_count(&p)), -1, "%s: loss",
                                 p.name);
                    cr_assert_eq(ct_first_nonfinite(o.grad_a, 6 * 8), -1, "%s: ∂L/∂a", p.name);
                    cr_assert_eq(ct_first_nonfinite(o.grad_b, 9 * 8), -1, "%s: ∂L/∂b", p.name);
                    cr_assert(isfinite(o.grad_scale) && (!siglip || isfinite(o.grad_bias)),
                              "%s: ∂L/∂s = %g, ∂L/∂β = %g", p.name, o.grad_scale, o.grad_bias);
                    tt_outputs_free(&o);
                    tt_free(&p);
                }
}
