/* CLIP and SigLIP helpers of the reference test suites (see two_tower_support.h). */
#include "two_tower_support.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

tt_problem tt_new(int siglip, int64_t pairs, int64_t negatives, int64_t dim) {
    tt_problem p;
    memset(&p, 0, sizeof p);
    p.siglip = siglip;
    p.pairs = pairs;
    p.negatives = negatives;
    p.dim = dim;
    p.clip = (closs_clip_params)CLOSS_CLIP_PARAMS_INIT;
    p.sig = (closs_siglip_params)CLOSS_SIGLIP_PARAMS_INIT;
    p.a = ct_doubles(pairs * dim);
    p.b = ct_doubles((pairs + negatives) * dim);
    memset(p.a, 0, (size_t)(pairs * dim) * sizeof(double));
    memset(p.b, 0, (size_t)((pairs + negatives) * dim) * sizeof(double));
    tt_describe(&p);
    return p;
}

void tt_fill(tt_problem *p, ct_rng *rng) {
    const int64_t dim = p->dim, rows_b = p->pairs + p->negatives;
    const int normalize = TT_FIELD(p, normalize);
    /* Without normalisation, entries of variance 1/(s·√D) give s·a·b a variance of about 1. */
    const double spread = normalize ? 1.0 : sqrt(1.0 / (TT_FIELD(p, logit_scale) * sqrt(dim)));
    ct_fill_normal(rng, p->a, p->pairs * dim, spread);
    ct_fill_normal(rng, p->b, rows_b * dim, spread);
    for (int64_t i = 0; i < p->pairs; ++i)
        for (int64_t c = 0; c < dim; ++c) p->b[i * dim + c] += 0.5 * p->a[i * dim + c];
    if (!normalize) return;
    for (int64_t r = 0; r < p->pairs + rows_b; ++r) {
        double *row = r < p->pairs ? p->a + r * dim : p->b + (r - p->pairs) * dim;
        const double scale = ct_uniform(rng, 0.3, 3.0) / fmax(ct_norm(row, dim), 1e-3);
        for (int64_t c = 0; c < dim; ++c) row[c] *= scale;
    }
}

void tt_free(tt_problem *p) {
    free(p->a);
    free(p->b);
    p->a = p->b = NULL;
}

void tt_describe(tt_problem *p) {
    static const char *const reductions[] = {"mean", "sum", "none"};
    const closs_reduction_t reduction = TT_FIELD(p, reduction);
    const char *reduction_name = (unsigned)reduction < 3 ? reductions[reduction] : "?";
    if (p->siglip)
        snprintf(p->name, sizeof p->name,
                 "siglip s=%g bias=%g normalize=%d grad_negatives=%d reduction=%s N=%lld K=%lld "
                 "D=%lld",
                 p->sig.logit_scale, p->sig.logit_bias, p->sig.normalize, p->sig.grad_negatives,
                 reduction_name, (long long)p->pairs, (long long)p->negatives, (long long)p->dim);
    else
        snprintf(p->name, sizeof p->name,
                 "clip s=%g symmetric=%d in_batch_negatives=%d normalize=%d grad_negatives=%d "
                 "reduction=%s N=%lld K=%lld D=%lld",
                 p->clip.logit_scale, p->clip.symmetric, p->clip.in_batch_negatives,
                 p->clip.normalize, p->clip.grad_negatives, reduction_name, (long long)p->pairs,
                 (long long)p->negatives, (long long)p->dim);
}

static int whole_batch(const tt_problem *p) {
    return TT_FIELD(p, row_begin) == 0 && TT_FIELD(p, row_count) == 0;
}

int64_t tt_range_count(const tt_problem *p) {
    return whole_batch(p) ? p->pairs : TT_FIELD(p, row_count);
}

int64_t tt_grad_b_rows(const tt_problem *p) {
    if (whole_batch(p)) return p->pairs + (TT_FIELD(p, grad_negatives) ? p->negatives : 0);
    return TT_FIELD(p, row_count) + TT_FIELD(p, negatives_count);
}

int64_t tt_loss_count(const tt_problem *p) {
    return TT_FIELD(p, reduction) == CLOSS_REDUCTION_NONE ? tt_range_count(p) : 1;
}

closs_status_t tt_call_views(const tt_problem *p, closs_matrix_t a, closs_matrix_t b,
                             const double *upstream, double *loss, double *grad_a, double *grad_b,
                             double *grad_scale, double *grad_bias) {
    if (p->siglip)
        return closs_ref_siglip(&p->sig, a, b, upstream, loss, grad_a, grad_b, grad_scale,
                                grad_bias);
    return closs_ref_clip(&p->clip, a, b, upstream, loss, grad_a, grad_b, grad_scale);
}

closs_status_t tt_call(const tt_problem *p, const double *upstream, double *loss, double *grad_a,
                       double *grad_b, double *grad_scale, double *grad_bias) {
    return tt_call_views(p, closs_matrix(p->a, CLOSS_F64, p->pairs, p->dim),
                         closs_matrix(p->b, CLOSS_F64, p->pairs + p->negatives, p->dim), upstream,
                         loss, grad_a, grad_b, grad_scale, grad_bias);
}

tt_outputs tt_outputs_new(const tt_problem *p) {
    tt_outputs o;
    const int64_t rows_b = p->pairs + p->negatives;
    o.loss = ct_doubles(p->pairs);
    o.grad_a = ct_doubles(p->pairs * p->dim);
    o.grad_b = ct_doubles(rows_b * p->dim);
    ct_poison(o.loss, p->pairs);
    ct_poison(o.grad_a, p->pairs * p->dim);
    ct_poison(o.grad_b, rows_b * p->dim);
    ct_poison(&o.grad_scale, 1);
    ct_poison(&o.grad_bias, 1);
    return o;
}

void tt_outputs_free(tt_outputs *o) {
    free(o->loss);
    free(o->grad_a);
    free(o->grad_b);
}

void tt_run(const tt_problem *p, const double *upstream, tt_outputs *o) {
    closs_status_t status =
        tt_call(p, upstream, o->loss, o->grad_a, o->grad_b, &o->grad_scale, &o->grad_bias);
    cr_assert_eq(status, CLOSS_STATUS_SUCCESS, "%s: %s", p->name, closs_last_error());
}

void tt_assert_same_bits(const tt_problem *p, const tt_outputs *got, const tt_outputs *want,
                         const ct_rng *rng, const char *what) {
    char text[320];
    snprintf(text, sizeof text, "%s: %s, loss", p->name, what);
    ct_assert_bitwise(got->loss, want->loss, tt_loss_count(p), rng, text);
    snprintf(text, sizeof text, "%s: %s, grad_a", p->name, what);
    ct_assert_bitwise(got->grad_a, want->grad_a, tt_range_count(p) * p->dim, rng, text);
    snprintf(text, sizeof text, "%s: %s, grad_b", p->name, what);
    ct_assert_bitwise(got->grad_b, want->grad_b, tt_grad_b_rows(p) * p->dim, rng, text);
    snprintf(text, sizeof text, "%s: %s, grad_logit_scale", p->name, what);
    ct_assert_bitwise(&got->grad_scale, &want->grad_scale, 1, rng, text);
    if (p->siglip) {
        snprintf(text, sizeof text, "%s: %s, grad_logit_bias", p->name, what);
        ct_assert_bitwise(&got->grad_bias, &want->grad_bias, 1, rng, text);
    }
}
