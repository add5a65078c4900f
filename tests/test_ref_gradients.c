/* The CPU reference's analytic gradients against central finite differences, for every option
 * combination of every loss, on fresh random inputs.
 *
 * The objective differentiated numerically is the one the API documents: the reduced loss for
 * MEAN and SUM (the analytic gradient is checked with upstream NULL and with a non-unit scalar
 * upstream u, against u × the difference), and Σ_i upstream_i·ℓ_i for NONE with a random non-unit
 * upstream per row. Finite differences always run on dense f64 copies; the analytic call sees the
 * same values in one of four layouts (f64 or f32, ld == cols or ld > cols with NaN padding), so f32
 * inputs are checked as "the gradient at the f32-rounded point".
 *
 * CLIP and SigLIP add their logit scale (and SigLIP its bias) to the differentiated variables.
 *
 * Inputs stay away from the points where a loss is not differentiable: every hinge argument (and,
 * with triplet swap, the gap between the two candidate negative distances) is at least KINK_GAP
 * from 0, and the rows alternate between an open and a closed hinge wherever the margin allows
 * both. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "closs.h"
#include "test_support.h"
#include "two_tower_support.h"

enum { PAIR, TRIPLET, NTXENT, SUPCON, COSINE };
enum { DENSE_F64, STRIDED_F64, DENSE_F32, STRIDED_F32, LAYOUT_COUNT };
enum { LABELS_CLASSES, LABELS_SINGLETONS, LABELS_ONE_PAIR, LABELS_ONE_CLASS, LABEL_PATTERN_COUNT };

static const double KINK_GAP = 0.05;
static const double RTOL = 1e-6, ATOL = 1e-6;

typedef struct grad_case {
    int kind;
    closs_distance_t distance; /* pair, triplet */
    double margin;             /* pair, triplet, cosine */
    int flag;                  /* triplet swap, cosine squared, NT-Xent/SupCon normalize */
    double temperature;        /* NT-Xent, SupCon */
    double base_temperature;   /* SupCon (0: equal to temperature) */
    int label_pattern;         /* SupCon */
    closs_dtype_t label_dtype; /* SupCon */
    closs_reduction_t reduction;
    int layout;
    char name[128];
} grad_case;

static const closs_reduction_t reductions[] = {CLOSS_REDUCTION_MEAN, CLOSS_REDUCTION_SUM,
                                               CLOSS_REDUCTION_NONE};

static const char *reduction_name(closs_reduction_t r) {
    return r == CLOSS_REDUCTION_MEAN ? "mean" : r == CLOSS_REDUCTION_SUM ? "sum" : "none";
}
static const char *distance_name(closs_distance_t d) {
    return d == CLOSS_DISTANCE_EUCLIDEAN     ? "euclidean"
           : d == CLOSS_DISTANCE_SQEUCLIDEAN ? "sqeuclidean"
                                             : "cosine";
}
static const char *layout_name(int layout) {
    static const char *names[] = {"f64", "f64 ld>cols", "f32", "f32 ld>cols"};
    return names[layout];
}
static const char *pattern_name(int pattern) {
    static const char *names[] = {"classes", "singletons", "one pair", "one class"};
    return names[pattern];
}

/* ---- one problem: inputs, options, and the two ways of calling the library ------------------ */

typedef struct problem {
    const grad_case *c;
    int64_t rows, dim;
    int inputs;           /* input matrices: 3 (triplet), 2 (pair, cosine), 1 (NT-Xent, SupCon) */
    double *x;            /* inputs × rows × dim, dense f64 (f32-rounded for f32 layouts) */
    double *y;            /* pair/cosine labels (f32-rounded for f32 layouts) */
    int64_t *labels;      /* SupCon */
    double *row_upstream; /* NONE: the per-row upstream */
    closs_pair_params pair;
    closs_triplet_params triplet;
    closs_ntxent_params ntxent;
    closs_supcon_params supcon;
    closs_cosine_params cosine;
    ct_rng *rng;
} problem;

static int64_t input_elements(const problem *p) { return p->inputs * p->rows * p->dim; }

static closs_status_t call_library(const problem *p, const closs_matrix_t *in, closs_vector_t y,
                                   closs_vector_t labels, const double *upstream, double *loss,
                                   double *grad) {
    const int64_t block = p->rows * p->dim;
    double *g0 = grad, *g1 = grad ? grad + block : NULL, *g2 = grad ? grad + 2 * block : NULL;
    switch (p->c->kind) {
    case PAIR: return closs_ref_pair(&p->pair, in[0], in[1], y, upstream, loss, g0, g1);
    case TRIPLET:
        return closs_ref_triplet(&p->triplet, in[0], in[1], in[2], upstream, loss, g0, g1, g2);
    case NTXENT: return closs_ref_ntxent(&p->ntxent, in[0], upstream, loss, g0);
    case SUPCON: return closs_ref_supcon(&p->supcon, in[0], labels, upstream, loss, g0, NULL);
    default: return closs_ref_cosine(&p->cosine, in[0], in[1], y, upstream, loss, g0, g1);
    }
}

/* The objective, from dense f64 views of x: the reduced loss (MEAN, SUM) or Σ upstream_i·ℓ_i. */
static double objective(void *context, const double *x) {
    const problem *p = context;
    closs_matrix_t in[3];
    for (int k = 0; k < p->inputs; ++k)
        in[k] = closs_matrix(x + k * p->rows * p->dim, CLOSS_F64, p->rows, p->dim);
    ct_vector labels = {{0}, NULL};
    if (p->c->kind == SUPCON) labels = ct_vector_label(p->labels, p->rows, p->c->label_dtype);
    double loss[64];
    closs_status_t status =
        call_library(p, in, closs_vector(p->y, CLOSS_F64, p->rows), labels.view, NULL, loss, NULL);
    ct_vector_free(&labels);
    cr_assert_eq(status, CLOSS_STATUS_SUCCESS, "%s: %s", p->c->name, closs_last_error());
    if (p->c->reduction != CLOSS_REDUCTION_NONE) return loss[0];
    double total = 0.0;
    for (int64_t i = 0; i < p->rows; ++i) total += p->row_upstream[i] * loss[i];
    return total;
}

/* A non-unit upstream value: |u| in [0.3, 2.5], either sign, never within 0.1 of ±1. */
static double non_unit(ct_rng *rng) {
    double u;
    do u = ct_uniform(rng, 0.3, 2.5);
    while (fabs(u - 1.0) < 0.1);
    return ct_uniform(rng, 0.0, 1.0) < 0.5 ? -u : u;
}

/* The check shared by every loss: finite differences vs the analytic gradient in the case's
 * layout, every gradient element written, and the loss of that call equal to the objective's. */
static void check_gradients(problem *p) {
    const grad_case *c = p->c;
    const int64_t n = input_elements(p), rows = p->rows;
    const int f32 = c->layout == DENSE_F32 || c->layout == STRIDED_F32;
    const int strided = c->layout == STRIDED_F64 || c->layout == STRIDED_F32;
    const closs_dtype_t dtype = f32 ? CLOSS_F32 : CLOSS_F64;
    if (f32) {
        ct_round_to_f32(p->x, n);
        if (p->y) ct_round_to_f32(p->y, rows);
    }
    if (c->reduction == CLOSS_REDUCTION_NONE) {
        p->row_upstream = ct_doubles(rows);
        for (int64_t i = 0; i < rows; ++i) p->row_upstream[i] = non_unit(p->rng);
    }

    double *numeric = ct_doubles(n);
    ct_central_differences(objective, p, p->x, n, numeric);
    /* A floor well above the comparison's absolute tolerance (1e-6); 1e-3 was too high for
     * SupCon with a single class, whose gradient (softmax minus uniform) can be ~1e-4. */
    cr_assert_gt(ct_max_abs(numeric, n), 1e-4,
                 "%s: the finite-difference gradient is ~0 (max %g): the inputs test nothing%s",
                 c->name, ct_max_abs(numeric, n), ct_seed_text(p->rng));

    const int64_t ld = strided ? p->dim + 1 + ct_int(p->rng, 0, 4) : p->dim;
    ct_matrix packed[3];
    closs_matrix_t in[3];
    for (int k = 0; k < p->inputs; ++k) {
        packed[k] = ct_matrix_pack(p->x + k * rows * p->dim, rows, p->dim, dtype, ld);
        in[k] = packed[k].view;
    }
    ct_vector y = {{0}, NULL}, labels = {{0}, NULL};
    if (p->y) y = ct_vector_real(p->y, rows, dtype);
    if (c->kind == SUPCON) labels = ct_vector_label(p->labels, rows, c->label_dtype);

    double *analytic = ct_doubles(n), *want = ct_doubles(n), loss[64];
    char what[256];
    /* NONE: the per-row upstream. MEAN/SUM: first NULL (an upstream of 1), then a scalar u. */
    const int passes = c->reduction == CLOSS_REDUCTION_NONE ? 1 : 2;
    for (int pass = 0; pass < passes; ++pass) {
        double scalar = pass == 0 ? 1.0 : non_unit(p->rng);
        const double *upstream = c->reduction == CLOSS_REDUCTION_NONE ? p->row_upstream
                                 : pass == 0                          ? NULL
                                                                      : &scalar;
        ct_poison(analytic, n);
        closs_status_t status = call_library(p, in, y.view, labels.view, upstream, loss, analytic);
        cr_assert_eq(status, CLOSS_STATUS_SUCCESS, "%s: %s", c->name, closs_last_error());
        int64_t unwritten = ct_first_poisoned(analytic, n);
        cr_assert_eq(unwritten, -1, "%s: gradient element %lld was not written%s", c->name,
                     (long long)unwritten, ct_seed_text(p->rng));
        for (int64_t e = 0; e < n; ++e) want[e] = scalar * numeric[e];
        if (c->reduction == CLOSS_REDUCTION_NONE)
            snprintf(what, sizeof what, "%s, upstream per row: analytic vs finite differences",
                     c->name);
        else
            snprintf(what, sizeof what, "%s, upstream %s%.3g: analytic vs finite differences",
                     c->name, upstream ? "" : "NULL = ", scalar);
        ct_assert_close(analytic, want, n, RTOL, ATOL, p->rng, what);
    }
    /* The layout's loss is the objective's (bitwise: the same values, accumulated in double). */
    double value = loss[0];
    if (c->reduction == CLOSS_REDUCTION_NONE) {
        value = 0.0;
        for (int64_t i = 0; i < rows; ++i) value += p->row_upstream[i] * loss[i];
    }
    double reference = objective(p, p->x);
    cr_assert(ct_same_bits(value, reference), "%s: loss %.17g in this layout, %.17g dense f64%s",
              c->name, value, reference, ct_seed_text(p->rng));

    for (int k = 0; k < p->inputs; ++k) ct_matrix_free(&packed[k]);
    ct_vector_free(&y);
    ct_vector_free(&labels);
    free(analytic);
    free(want);
    free(numeric);
    free(p->row_upstream);
}

static problem new_problem(const grad_case *c, ct_rng *rng, int inputs, int64_t rows, int64_t dim) {
    problem p;
    memset(&p, 0, sizeof p);
    p.c = c;
    p.rng = rng;
    p.inputs = inputs;
    p.rows = rows;
    p.dim = dim;
    p.x = ct_doubles(input_elements(&p));
    return p;
}

static void free_problem(problem *p) {
    free(p->x);
    free(p->y);
    free(p->labels);
}

/* ---- input construction ------------------------------------------------------------------- */

static void random_unit(ct_rng *rng, double *u, int64_t dim) {
    double norm;
    do {
        ct_fill_normal(rng, u, dim, 1.0);
        norm = ct_norm(u, dim);
    } while (norm < 1e-3);
    for (int64_t c = 0; c < dim; ++c) u[c] /= norm;
}

/* b at cosine `cosine` from a, with norm `length` (dim >= 2): cos·â + sin·v̂, v̂ ⟂ â. */
static void vector_at_cosine(ct_rng *rng, const double *a, int64_t dim, double cosine,
                             double length, double *b) {
    double unit_a[16], v[16];
    double norm_a = ct_norm(a, dim);
    for (int64_t c = 0; c < dim; ++c) unit_a[c] = a[c] / norm_a;
    double norm_v;
    do {
        ct_fill_normal(rng, v, dim, 1.0);
        double along = ct_dot(v, unit_a, dim);
        for (int64_t c = 0; c < dim; ++c) v[c] -= along * unit_a[c];
        norm_v = ct_norm(v, dim);
    } while (norm_v < 1e-3);
    double sine = sqrt(1.0 - cosine * cosine);
    for (int64_t c = 0; c < dim; ++c) b[c] = length * (cosine * unit_a[c] + sine * v[c] / norm_v);
}

/* A value in the open side [low, kink − gap] or the closed side [kink + gap, high] of a kink,
 * alternating with `want_low`; the other side when the wanted one is empty. */
static double pick_side(ct_rng *rng, double low, double high, double kink, int want_low) {
    double low_end = kink - KINK_GAP, high_start = kink + KINK_GAP;
    int low_ok = low_end - low > 0.01, high_ok = high - high_start > 0.01;
    cr_assert(low_ok || high_ok, "no room on either side of the kink at %g", kink);
    if ((want_low && low_ok) || !high_ok) return ct_uniform(rng, low, low_end);
    return ct_uniform(rng, high_start, high);
}

/* Pair and cosine labels: 1, 0 and soft values, in turn. */
static double *pair_labels(ct_rng *rng, int64_t rows) {
    double *y = ct_doubles(rows);
    for (int64_t i = 0; i < rows; ++i)
        y[i] = i % 3 == 0 ? 0.0 : i % 3 == 1 ? 1.0 : ct_uniform(rng, 0.1, 0.9);
    return y;
}

/* ---- pair ---------------------------------------------------------------------------------- */

ParameterizedTestParameters(gradients, pair) {
    static grad_case cases[2 * 3 * 3];
    static const closs_distance_t distances[] = {CLOSS_DISTANCE_EUCLIDEAN, CLOSS_DISTANCE_COSINE};
    static const double margins[] = {0.0, 0.5, 2.0};
    int n = 0;
    for (int d = 0; d < 2; ++d)
        for (int m = 0; m < 3; ++m)
            for (int r = 0; r < 3; ++r, ++n) {
                grad_case *c = &cases[n];
                *c = (grad_case){.kind = PAIR,
                                 .distance = distances[d],
                                 .margin = margins[m],
                                 .reduction = reductions[r],
                                 .layout = n % LAYOUT_COUNT};
                snprintf(c->name, sizeof c->name, "pair distance=%s margin=%g reduction=%s [%s]",
                         distance_name(c->distance), c->margin, reduction_name(c->reduction),
                         layout_name(c->layout));
            }
    return cr_make_param_array(grad_case, cases, n);
}

ParameterizedTest(grad_case *c, gradients, pair) {
    ct_rng rng = ct_rng_fresh();
    problem p = new_problem(c, &rng, 2, ct_int(&rng, 4, 12), ct_int(&rng, 2, 8));
    p.pair = (closs_pair_params)CLOSS_PAIR_PARAMS_INIT;
    p.pair.margin = c->margin;
    p.pair.distance = c->distance;
    p.pair.reduction = c->reduction;
    p.y = pair_labels(&rng, p.rows);
    const int cosine = c->distance == CLOSS_DISTANCE_COSINE;
    for (int64_t i = 0; i < p.rows; ++i) {
        double *x1 = p.x + i * p.dim, *x2 = p.x + (p.rows + i) * p.dim;
        ct_fill_normal(&rng, x1, p.dim, ct_uniform(&rng, 0.5, 1.5));
        /* The hinge is max(0, m − d): d below m − gap (open) or above m + gap (closed). */
        double d = pick_side(&rng, KINK_GAP, cosine ? 2.0 - KINK_GAP : c->margin + 3.0, c->margin,
                             i % 2 == 0);
        if (cosine) {
            vector_at_cosine(&rng, x1, p.dim, 1.0 - d, ct_uniform(&rng, 0.5, 2.0), x2);
        } else {
            double u[16];
            random_unit(&rng, u, p.dim);
            for (int64_t k = 0; k < p.dim; ++k) x2[k] = x1[k] + d * u[k];
        }
    }
    check_gradients(&p);
    free_problem(&p);
}

/* ---- triplet ------------------------------------------------------------------------------- */

ParameterizedTestParameters(gradients, triplet) {
    static grad_case cases[3 * 2 * 3 * 3];
    static const closs_distance_t distances[] = {CLOSS_DISTANCE_SQEUCLIDEAN,
                                                 CLOSS_DISTANCE_EUCLIDEAN, CLOSS_DISTANCE_COSINE};
    static const double margins[] = {-0.5, 0.0, 1.0};
    int n = 0;
    for (int d = 0; d < 3; ++d)
        for (int swap = 0; swap < 2; ++swap)
            for (int m = 0; m < 3; ++m)
                for (int r = 0; r < 3; ++r, ++n) {
                    grad_case *c = &cases[n];
                    *c = (grad_case){.kind = TRIPLET,
                                     .distance = distances[d],
                                     .flag = swap,
                                     .margin = margins[m],
                                     .reduction = reductions[r],
                                     .layout = n % LAYOUT_COUNT};
                    snprintf(c->name, sizeof c->name,
                             "triplet distance=%s swap=%d margin=%g reduction=%s [%s]",
                             distance_name(c->distance), swap, c->margin,
                             reduction_name(c->reduction), layout_name(c->layout));
                }
    return cr_make_param_array(grad_case, cases, n);
}

ParameterizedTest(grad_case *c, gradients, triplet) {
    ct_rng rng = ct_rng_fresh();
    problem p = new_problem(c, &rng, 3, ct_int(&rng, 4, 12), ct_int(&rng, 2, 8));
    p.triplet = (closs_triplet_params)CLOSS_TRIPLET_PARAMS_INIT;
    p.triplet.margin = c->margin;
    p.triplet.distance = c->distance;
    p.triplet.swap = c->flag;
    p.triplet.reduction = c->reduction;
    const int64_t rows = p.rows, dim = p.dim;
    int open_rows = 0, swapped_rows = 0;
    for (int64_t i = 0; i < rows; ++i) {
        double *a = p.x + i * dim, *pos = p.x + (rows + i) * dim, *neg = p.x + (2 * rows + i) * dim;
        /* Targets: the hinge open on even rows; with swap, (p, n) chosen on every other pair. */
        const int want_open = i % 2 == 0, want_swapped = (i / 2) % 2 == 0;
        for (int attempt = 0;; ++attempt) {
            cr_assert_lt(attempt, 100000, "%s: no usable triplet row found%s", c->name,
                         ct_seed_text(&rng));
            ct_fill_normal(&rng, a, dim, ct_uniform(&rng, 0.5, 1.5));
            double sp = exp(ct_uniform(&rng, log(0.05), log(3.0)));
            double sn = exp(ct_uniform(&rng, log(0.05), log(3.0)));
            double flip = ct_uniform(&rng, 0.0, 1.0) < 0.3 ? -1.0 : 1.0; /* anti-aligned n */
            for (int64_t k = 0; k < dim; ++k) {
                pos[k] = a[k] + sp * ct_normal(&rng);
                neg[k] = flip * a[k] + sn * ct_normal(&rng);
            }
            double d_ap = ct_distance(c->distance, a, pos, dim);
            double d_an = ct_distance(c->distance, a, neg, dim);
            double d_pn = ct_distance(c->distance, pos, neg, dim);
            int swapped = c->flag && d_pn < d_an;
            double hinge = d_ap - (swapped ? d_pn : d_an) + c->margin;
            /* Clear of every kink: the hinge, the min of swap, and ‖·‖ at 0 (euclidean). */
            if (fabs(hinge) < KINK_GAP) continue;
            if (c->flag && fabs(d_an - d_pn) < KINK_GAP) continue;
            if (fmin(d_ap, fmin(d_an, d_pn)) < KINK_GAP) continue;
            /* Cosine gradients grow as 1/‖x‖²: a near-zero row makes central differences
             * (step ~1e-6) lose more than the tolerance to curvature. */
            if (c->distance == CLOSS_DISTANCE_COSINE &&
                fmin(ct_norm(a, dim), fmin(ct_norm(pos, dim), ct_norm(neg, dim))) < 0.2)
                continue;
            int on_target = (hinge > 0) == want_open && (!c->flag || swapped == want_swapped);
            if (!on_target && attempt < 2000) continue;
            open_rows += hinge > 0;
            swapped_rows += swapped && hinge > 0;
            break;
        }
    }
    cr_assert(open_rows > 0 && open_rows < rows, "%s: %d of %lld hinges open%s", c->name, open_rows,
              (long long)rows, ct_seed_text(&rng));
    if (c->flag)
        cr_assert_gt(swapped_rows, 0, "%s: no open row uses the swapped negative%s", c->name,
                     ct_seed_text(&rng));
    check_gradients(&p);
    free_problem(&p);
}

/* ---- NT-Xent ------------------------------------------------------------------------------- */

ParameterizedTestParameters(gradients, ntxent) {
    static grad_case cases[2 * 3 * 3];
    static const double temperatures[] = {0.05, 0.5, 2.0};
    int n = 0;
    for (int normalize = 0; normalize < 2; ++normalize)
        for (int t = 0; t < 3; ++t)
            for (int r = 0; r < 3; ++r, ++n) {
                grad_case *c = &cases[n];
                *c = (grad_case){.kind = NTXENT,
                                 .flag = normalize,
                                 .temperature = temperatures[t],
                                 .reduction = reductions[r],
                                 .layout = n % LAYOUT_COUNT};
                snprintf(c->name, sizeof c->name,
                         "ntxent normalize=%d temperature=%g reduction=%s [%s]", normalize,
                         c->temperature, reduction_name(c->reduction), layout_name(c->layout));
            }
    return cr_make_param_array(grad_case, cases, n);
}

/* Embeddings for the softmax losses, spread so that s_ik/τ varies by O(1) between rows and the
 * softmax is neither flat nor one-hot (a one-hot softmax has a vanishing gradient that would test
 * nothing): entries of scale sqrt(2τ/dim) around 0 (normalize off), or around a shared direction
 * and then scaled by a random row norm in [0.3, 3] (normalize on, through the normalisation). */
static void softmax_embeddings(ct_rng *rng, double *z, int64_t rows, int64_t dim, int normalize,
                               double temperature) {
    double centre[16];
    random_unit(rng, centre, dim);
    const double spread = sqrt(2.0 * temperature / (double)dim);
    for (int64_t i = 0; i < rows; ++i) {
        double *row = z + i * dim;
        ct_fill_normal(rng, row, dim, spread);
        if (!normalize) continue;
        double norm = ct_uniform(rng, 0.3, 3.0);
        for (int64_t c = 0; c < dim; ++c) row[c] = norm * (centre[c] + row[c]);
    }
}

ParameterizedTest(grad_case *c, gradients, ntxent) {
    ct_rng rng = ct_rng_fresh();
    problem p = new_problem(c, &rng, 1, 2 * ct_int(&rng, 2, 6), ct_int(&rng, 2, 8));
    p.ntxent = (closs_ntxent_params)CLOSS_NTXENT_PARAMS_INIT;
    p.ntxent.temperature = c->temperature;
    p.ntxent.normalize = c->flag;
    p.ntxent.reduction = c->reduction;
    softmax_embeddings(&rng, p.x, p.rows, p.dim, c->flag, c->temperature);
    check_gradients(&p);
    free_problem(&p);
}

/* ---- SupCon -------------------------------------------------------------------------------- */

ParameterizedTestParameters(gradients, supcon) {
    static grad_case cases[2 * 2 * LABEL_PATTERN_COUNT * 3 * 2];
    static const double base_temperatures[] = {0.0, 0.07};
    static const closs_dtype_t label_dtypes[] = {CLOSS_I32, CLOSS_I64};
    int n = 0;
    for (int normalize = 0; normalize < 2; ++normalize)
        for (int b = 0; b < 2; ++b)
            for (int pattern = 0; pattern < LABEL_PATTERN_COUNT; ++pattern)
                for (int r = 0; r < 3; ++r)
                    for (int l = 0; l < 2; ++l, ++n) {
                        grad_case *c = &cases[n];
                        *c = (grad_case){.kind = SUPCON,
                                         .flag = normalize,
                                         .temperature = normalize ? 0.1 : 0.5,
                                         .base_temperature = base_temperatures[b],
                                         .label_pattern = pattern,
                                         .label_dtype = label_dtypes[l],
                                         .reduction = reductions[r],
                                         .layout = n % LAYOUT_COUNT};
                        snprintf(c->name, sizeof c->name,
                                 "supcon normalize=%d temperature=%g base_temperature=%g "
                                 "labels=%s/%s reduction=%s [%s]",
                                 normalize, c->temperature, c->base_temperature,
                                 pattern_name(pattern), l ? "i64" : "i32",
                                 reduction_name(c->reduction), layout_name(c->layout));
                    }
    return cr_make_param_array(grad_case, cases, n);
}

/* Class sizes for a pattern (a size-1 class is a singleton anchor); returns the class count. */
static int class_sizes(ct_rng *rng, int pattern, int64_t *sizes) {
    switch (pattern) {
    case LABELS_CLASSES:
        for (int k = 0; k < 3; ++k) sizes[k] = ct_int(rng, 2, 4);
        return 3;
    case LABELS_SINGLETONS:
        sizes[0] = ct_int(rng, 2, 4);
        sizes[1] = ct_int(rng, 2, 3);
        sizes[2] = sizes[3] = sizes[4] = 1;
        return 5;
    case LABELS_ONE_PAIR: {
        int classes = (int)ct_int(rng, 3, 8);
        sizes[0] = 2;
        for (int k = 1; k < classes; ++k) sizes[k] = 1;
        return classes;
    }
    default: sizes[0] = ct_int(rng, 3, 8); return 1;
    }
}

ParameterizedTest(grad_case *c, gradients, supcon) {
    ct_rng rng = ct_rng_fresh();
    int64_t sizes[8], rows = 0;
    const int classes = class_sizes(&rng, c->label_pattern, sizes);
    for (int k = 0; k < classes; ++k) rows += sizes[k];
    problem p = new_problem(c, &rng, 1, rows, ct_int(&rng, 2, 8));
    p.supcon = (closs_supcon_params)CLOSS_SUPCON_PARAMS_INIT;
    p.supcon.temperature = c->temperature;
    p.supcon.base_temperature = c->base_temperature;
    p.supcon.normalize = c->flag;
    p.supcon.reduction = c->reduction;
    /* Arbitrary label values (negative, large, beyond i32 for i64), rows in random order. */
    int64_t values[8], *ordered = ct_alloc((size_t)rows * sizeof(int64_t)), perm[64];
    const int64_t span = c->label_dtype == CLOSS_I64 ? (int64_t)1 << 50 : (int64_t)1 << 30;
    for (int k = 0; k < classes; ++k) {
        int fresh;
        do {
            values[k] = ct_int(&rng, -span, span);
            fresh = 1;
            for (int j = 0; j < k; ++j) fresh &= values[j] != values[k];
        } while (!fresh);
    }
    int64_t next = 0;
    for (int k = 0; k < classes; ++k)
        for (int64_t s = 0; s < sizes[k]; ++s) ordered[next++] = values[k];
    ct_permutation(&rng, perm, rows);
    p.labels = ct_alloc((size_t)rows * sizeof(int64_t));
    for (int64_t i = 0; i < rows; ++i) p.labels[i] = ordered[perm[i]];
    free(ordered);
    softmax_embeddings(&rng, p.x, p.rows, p.dim, c->flag, c->temperature);
    check_gradients(&p);
    free_problem(&p);
}

/* ---- cosine -------------------------------------------------------------------------------- */

ParameterizedTestParameters(gradients, cosine) {
    static grad_case cases[2 * 3 * 3];
    static const double margins[] = {-0.5, 0.0, 0.3};
    int n = 0;
    for (int squared = 0; squared < 2; ++squared)
        for (int m = 0; m < 3; ++m)
            for (int r = 0; r < 3; ++r, ++n) {
                grad_case *c = &cases[n];
                *c = (grad_case){.kind = COSINE,
                                 .flag = squared,
                                 .margin = margins[m],
                                 .reduction = reductions[r],
                                 .layout = n % LAYOUT_COUNT};
                snprintf(c->name, sizeof c->name, "cosine squared=%d margin=%g reduction=%s [%s]",
                         squared, c->margin, reduction_name(c->reduction), layout_name(c->layout));
            }
    return cr_make_param_array(grad_case, cases, n);
}

ParameterizedTest(grad_case *c, gradients, cosine) {
    ct_rng rng = ct_rng_fresh();
    problem p = new_problem(c, &rng, 2, ct_int(&rng, 4, 12), ct_int(&rng, 2, 8));
    p.cosine = (closs_cosine_params)CLOSS_COSINE_PARAMS_INIT;
    p.cosine.margin = c->margin;
    p.cosine.squared = c->flag;
    p.cosine.reduction = c->reduction;
    p.y = pair_labels(&rng, p.rows);
    for (int64_t i = 0; i < p.rows; ++i) {
        double *x1 = p.x + i * p.dim, *x2 = p.x + (p.rows + i) * p.dim;
        ct_fill_normal(&rng, x1, p.dim, ct_uniform(&rng, 0.5, 1.5));
        /* The hinge is max(0, c − δ): c above δ + gap (open) or below δ − gap (closed). */
        double cosine = pick_side(&rng, -0.95, 0.95, c->margin, i % 2 == 1);
        vector_at_cosine(&rng, x1, p.dim, cosine, ct_uniform(&rng, 0.5, 2.0), x2);
    }
    check_gradients(&p);
    free_problem(&p);
}

/* ---- CLIP and SigLIP ----------------------------------------------------------------------- */

typedef struct tower_case {
    int siglip, symmetric, in_batch_negatives, normalize, grad_negatives;
    int64_t negatives;
    double scale, bias;
    closs_reduction_t reduction;
    int layout;
} tower_case;

/* The variables x = [a, b, s, β] (dense f64) and the per-row upstream of NONE. */
typedef struct tower_problem {
    tt_problem p;
    double *x;
    double *row_upstream;
} tower_problem;

static tt_problem at_point(const tower_problem *t, const double *x) {
    tt_problem q = t->p; /* the same options, on the variables x */
    const int64_t a_size = q.pairs * q.dim, b_size = (q.pairs + q.negatives) * q.dim;
    q.a = (double *)x;
    q.b = (double *)x + a_size;
    TT_FIELD(&q, logit_scale) = x[a_size + b_size];
    q.sig.logit_bias = x[a_size + b_size + 1];
    return q;
}

static double tower_objective(void *context, const double *x) {
    const tower_problem *t = context;
    const tt_problem q = at_point(t, x);
    double loss[16];
    closs_status_t status = tt_call(&q, NULL, loss, NULL, NULL, NULL, NULL);
    cr_assert_eq(status, CLOSS_STATUS_SUCCESS, "%s: %s", q.name, closs_last_error());
    if (TT_FIELD(&q, reduction) != CLOSS_REDUCTION_NONE) return loss[0];
    double total = 0.0;
    for (int64_t i = 0; i < q.pairs; ++i) total += t->row_upstream[i] * loss[i];
    return total;
}

ParameterizedTestParameters(gradients, two_tower) {
    static tower_case cases[64];
    static const int variants[][2] = {{1, 1}, {0, 1}, {0, 0}}; /* symmetric, in_batch_negatives */
    int n = 0;
    for (int v = 0; v < 3; ++v)
        for (int k = 0; k < 2; ++k)
            for (int normalize = 0; normalize < 2; ++normalize)
                for (int r = 0; r < 3; ++r, ++n)
                    cases[n] = (tower_case){.symmetric = variants[v][0],
                                            .in_batch_negatives = variants[v][1],
                                            .normalize = normalize,
                                            .grad_negatives = (n / 3) % 2,
                                            /* without in-batch negatives K ≥ 1 (else loss 0) */
                                            .negatives = k == 0 ? !variants[v][1] : 3,
                                            .scale = normalize ? (r == 2 ? 1.0 / 0.07 : 2.5) : 1.5,
                                            .reduction = reductions[r],
                                            .layout = n % LAYOUT_COUNT};
    for (int k = 0; k < 2; ++k)
        for (int normalize = 0; normalize < 2; ++normalize)
            for (int r = 0; r < 3; ++r, ++n)
                cases[n] = (tower_case){.siglip = 1,
                                        .normalize = normalize,
                                        .grad_negatives = (n / 3) % 2,
                                        .negatives = k == 0 ? 0 : 3,
                                        .scale = normalize ? (r == 2 ? 10.0 : 3.0) : 1.5,
                                        .bias = normalize ? (r == 2 ? -10.0 : -1.5) : 0.5,
                                        .reduction = reductions[r],
                                        .layout = n % LAYOUT_COUNT};
    return cr_make_param_array(tower_case, cases, n);
}

ParameterizedTest(tower_case *c, gradients, two_tower) {
    ct_rng rng = ct_rng_fresh();
    tower_problem t = {.p =
                           tt_new(c->siglip, ct_int(&rng, 3, 7), c->negatives, ct_int(&rng, 2, 6))};
    tt_problem *p = &t.p;
    TT_FIELD(p, logit_scale) = c->scale;
    TT_FIELD(p, normalize) = c->normalize;
    TT_FIELD(p, grad_negatives) = c->grad_negatives;
    TT_FIELD(p, reduction) = c->reduction;
    p->sig.logit_bias = c->bias;
    p->clip.symmetric = c->symmetric;
    p->clip.in_batch_negatives = c->in_batch_negatives;
    tt_fill(p, &rng);
    tt_describe(p);
    char name[200];
    snprintf(name, sizeof name, "%s [%s]", p->name, layout_name(c->layout));

    const int f32 = c->layout == DENSE_F32 || c->layout == STRIDED_F32;
    const int strided = c->layout == STRIDED_F64 || c->layout == STRIDED_F32;
    const int64_t pairs = p->pairs, dim = p->dim, rows_b = pairs + p->negatives;
    const int64_t a_size = pairs * dim, b_size = rows_b * dim, n = a_size + b_size + 2;
    const int64_t b_written = tt_grad_b_rows(p) * dim;
    if (f32) {
        ct_round_to_f32(p->a, a_size);
        ct_round_to_f32(p->b, b_size);
    }
    t.x = ct_doubles(n);
    memcpy(t.x, p->a, (size_t)a_size * sizeof(double));
    memcpy(t.x + a_size, p->b, (size_t)b_size * sizeof(double));
    t.x[a_size + b_size] = c->scale;
    t.x[a_size + b_size + 1] = c->bias;
    if (c->reduction == CLOSS_REDUCTION_NONE) {
        t.row_upstream = ct_doubles(pairs);
        for (int64_t i = 0; i < pairs; ++i) t.row_upstream[i] = non_unit(&rng);
    }
    double *numeric = ct_doubles(n);
    ct_central_differences(tower_objective, &t, t.x, n, numeric);
    cr_assert_gt(ct_max_abs(numeric, a_size + b_size), 1e-4,
                 "%s: the finite-difference gradient is ~0: the inputs test nothing%s", name,
                 ct_seed_text(&rng));

    const int64_t ld = strided ? dim + 1 + ct_int(&rng, 0, 4) : dim;
    const closs_dtype_t dtype = f32 ? CLOSS_F32 : CLOSS_F64;
    ct_matrix a = ct_matrix_pack(p->a, pairs, dim, dtype, ld);
    ct_matrix b = ct_matrix_pack(p->b, rows_b, dim, dtype, ld);
    double *grad_a = ct_doubles(a_size), *grad_b = ct_doubles(b_size), *want = ct_doubles(n);
    double loss[16], grad_scale, grad_bias;
    char what[320];
    const int passes = c->reduction == CLOSS_REDUCTION_NONE ? 1 : 2;
    for (int pass = 0; pass < passes; ++pass) {
        double scalar = pass == 0 ? 1.0 : non_unit(&rng);
        const double *upstream = c->reduction == CLOSS_REDUCTION_NONE ? t.row_upstream
                                 : pass == 0                          ? NULL
                                                                      : &scalar;
        ct_poison(grad_a, a_size);
        ct_poison(grad_b, b_size);
        ct_poison(&grad_scale, 1);
        ct_poison(&grad_bias, 1);
        closs_status_t status = tt_call_views(p, a.view, b.view, upstream, loss, grad_a, grad_b,
                                              &grad_scale, &grad_bias);
        cr_assert_eq(status, CLOSS_STATUS_SUCCESS, "%s: %s", name, closs_last_error());
        cr_assert_eq(ct_first_poisoned(grad_a, a_size), -1, "%s: grad_a not all written", name);
        cr_assert_eq(ct_first_poisoned(grad_b, b_written), -1, "%s: grad_b not all written", name);
        cr_assert_eq(ct_first_unpoisoned(grad_b + b_written, b_size - b_written), -1,
                     "%s: grad_b written past its %lld rows", name, (long long)(b_written / dim));
        cr_assert(c->siglip || ct_first_unpoisoned(&grad_bias, 1) == -1,
                  "%s: CLIP wrote a bias gradient", name);
        for (int64_t e = 0; e < n; ++e) want[e] = scalar * numeric[e];
        snprintf(what, sizeof what, "%s, upstream %s: ∂/∂a vs finite differences", name,
                 upstream ? "given" : "NULL");
        ct_assert_close(grad_a, want, a_size, RTOL, ATOL, &rng, what);
        snprintf(what, sizeof what, "%s, upstream %s: ∂/∂b vs finite differences", name,
                 upstream ? "given" : "NULL");
        ct_assert_close(grad_b, want + a_size, b_written, RTOL, ATOL, &rng, what);
        snprintf(what, sizeof what, "%s, upstream %s: ∂/∂s vs finite differences", name,
                 upstream ? "given" : "NULL");
        ct_assert_close(&grad_scale, want + a_size + b_size, 1, RTOL, ATOL, &rng, what);
        if (c->siglip) {
            snprintf(what, sizeof what, "%s, upstream %s: ∂/∂β vs finite differences", name,
                     upstream ? "given" : "NULL");
            ct_assert_close(&grad_bias, want + a_size + b_size + 1, 1, RTOL, ATOL, &rng, what);
        }
    }
    ct_matrix_free(&a);
    ct_matrix_free(&b);
    free(grad_a);
    free(grad_b);
    free(want);
    free(numeric);
    free(t.x);
    free(t.row_upstream);
    tt_free(p);
}
