/* Identities the CPU reference must satisfy, on fresh random inputs and random options:
 *   - SupCon with labels = sample index over two stacked views is NT-Xent (values and gradients);
 *   - with normalisation (or a cosine distance) scaling an input by c > 0 changes no loss and
 *     divides the gradient by c;
 *   - permuting rows consistently permutes the per-row losses and gradients;
 *   - the reductions agree (sum = Σ none, mean = sum / count, count = valid for SupCon);
 *   - the layout does not matter: ld > cols, f32 vs f64 holding the same values, NULL gradient
 *     pointers (bitwise), and repeated calls (bitwise);
 *   - SupCon's `valid` is the number of anchors with a positive; the official SupContrast mean is
 *     mean × valid / M. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "closs.h"
#include "test_support.h"

enum { PAIR, TRIPLET, NTXENT, SUPCON, COSINE, KIND_COUNT };

/* Agreement up to summation order. */
static const double CLOSE = 1e-12;

/* ---- a loss with its options and inputs ---------------------------------------------------- */

typedef struct instance {
    int kind;
    int64_t rows, dim;
    int inputs;
    double *x[3];    /* dense f64 inputs */
    double *y;       /* pair/cosine labels */
    int64_t *labels; /* SupCon labels */
    closs_pair_params pair;
    closs_triplet_params triplet;
    closs_ntxent_params ntxent;
    closs_supcon_params supcon;
    closs_cosine_params cosine;
    char name[160];
} instance;

typedef struct outcome {
    double *loss;    /* rows values */
    double *grad[3]; /* rows × dim each */
    int64_t valid;
} outcome;

static int input_count(int kind) {
    return kind == TRIPLET ? 3 : kind == PAIR || kind == COSINE ? 2 : 1;
}

/* Random options of `kind` (every field the contract defines), described in p->name. */
static void random_options(instance *p, ct_rng *rng) {
    switch (p->kind) {
    case PAIR:
        p->pair = (closs_pair_params)CLOSS_PAIR_PARAMS_INIT;
        p->pair.distance = ct_int(rng, 0, 1) ? CLOSS_DISTANCE_COSINE : CLOSS_DISTANCE_EUCLIDEAN;
        p->pair.margin = ct_uniform(rng, 0.0, 2.0);
        snprintf(p->name, sizeof p->name, "pair distance=%d margin=%g", (int)p->pair.distance,
                 p->pair.margin);
        break;
    case TRIPLET:
        p->triplet = (closs_triplet_params)CLOSS_TRIPLET_PARAMS_INIT;
        p->triplet.distance = (closs_distance_t)ct_int(rng, 0, 2);
        p->triplet.swap = (int)ct_int(rng, 0, 1);
        p->triplet.margin = ct_uniform(rng, -0.5, 1.5);
        snprintf(p->name, sizeof p->name, "triplet distance=%d swap=%d margin=%g",
                 (int)p->triplet.distance, p->triplet.swap, p->triplet.margin);
        break;
    case NTXENT:
        p->ntxent = (closs_ntxent_params)CLOSS_NTXENT_PARAMS_INIT;
        p->ntxent.normalize = (int)ct_int(rng, 0, 1);
        p->ntxent.temperature = ct_uniform(rng, 0.05, 1.0);
        snprintf(p->name, sizeof p->name, "ntxent normalize=%d temperature=%g", p->ntxent.normalize,
                 p->ntxent.temperature);
        break;
    case SUPCON:
        p->supcon = (closs_supcon_params)CLOSS_SUPCON_PARAMS_INIT;
        p->supcon.normalize = (int)ct_int(rng, 0, 1);
        p->supcon.temperature = ct_uniform(rng, 0.05, 1.0);
        p->supcon.base_temperature = ct_int(rng, 0, 1) ? 0.0 : ct_uniform(rng, 0.05, 1.0);
        snprintf(p->name, sizeof p->name, "supcon normalize=%d temperature=%g base_temperature=%g",
                 p->supcon.normalize, p->supcon.temperature, p->supcon.base_temperature);
        break;
    default:
        p->cosine = (closs_cosine_params)CLOSS_COSINE_PARAMS_INIT;
        p->cosine.squared = (int)ct_int(rng, 0, 1);
        p->cosine.margin = ct_uniform(rng, -0.5, 0.5);
        snprintf(p->name, sizeof p->name, "cosine squared=%d margin=%g", p->cosine.squared,
                 p->cosine.margin);
        break;
    }
}

/* Random inputs: unnormalised softmax inputs are scaled so that s/τ stays moderate. SupCon labels
 * come from a random alphabet of 1..rows values, so some anchors may lack a positive. */
static instance random_instance(int kind, ct_rng *rng, int64_t rows, int64_t dim) {
    instance p;
    memset(&p, 0, sizeof p);
    p.kind = kind;
    p.rows = rows;
    p.dim = dim;
    p.inputs = input_count(kind);
    random_options(&p, rng);
    double scale = 1.0;
    if (kind == NTXENT && !p.ntxent.normalize) scale = sqrt(2.0 * p.ntxent.temperature / dim);
    if (kind == SUPCON && !p.supcon.normalize) scale = sqrt(2.0 * p.supcon.temperature / dim);
    for (int k = 0; k < p.inputs; ++k) {
        p.x[k] = ct_doubles(rows * dim);
        ct_fill_normal(rng, p.x[k], rows * dim, scale);
    }
    if (kind == PAIR || kind == COSINE) {
        p.y = ct_doubles(rows);
        for (int64_t i = 0; i < rows; ++i)
            p.y[i] = i % 3 == 0 ? 0.0 : i % 3 == 1 ? 1.0 : ct_uniform(rng, 0.0, 1.0);
    }
    if (kind == SUPCON) {
        p.labels = ct_alloc((size_t)rows * sizeof(int64_t));
        const int64_t alphabet = ct_int(rng, 1, rows);
        for (int64_t i = 0; i < rows; ++i) p.labels[i] = 1000 - 37 * ct_int(rng, 0, alphabet - 1);
    }
    return p;
}

static void free_instance(instance *p) {
    for (int k = 0; k < p->inputs; ++k) free(p->x[k]);
    free(p->y);
    free(p->labels);
}

static outcome new_outcome(const instance *p) {
    outcome o;
    o.loss = ct_doubles(p->rows);
    for (int k = 0; k < 3; ++k) o.grad[k] = ct_doubles(p->rows * p->dim);
    o.valid = -1;
    return o;
}

static void free_outcome(outcome *o) {
    free(o->loss);
    for (int k = 0; k < 3; ++k) free(o->grad[k]);
}

/* Calls the loss on explicit views (in, y, labels), with `reduction` and `upstream`; gradient k
 * is requested when bit k of grad_mask is set. Outputs are poisoned first. */
static void invoke_views(const instance *p, const closs_matrix_t *in, closs_vector_t y,
                         closs_vector_t labels, closs_reduction_t reduction, const double *upstream,
                         unsigned grad_mask, outcome *o) {
    ct_poison(o->loss, p->rows);
    double *g[3];
    for (int k = 0; k < 3; ++k) {
        ct_poison(o->grad[k], p->rows * p->dim);
        g[k] = grad_mask & (1u << k) ? o->grad[k] : NULL;
    }
    o->valid = -1;
    closs_status_t status;
    switch (p->kind) {
    case PAIR: {
        closs_pair_params params = p->pair;
        params.reduction = reduction;
        status = closs_ref_pair(&params, in[0], in[1], y, upstream, o->loss, g[0], g[1]);
        break;
    }
    case TRIPLET: {
        closs_triplet_params params = p->triplet;
        params.reduction = reduction;
        status =
            closs_ref_triplet(&params, in[0], in[1], in[2], upstream, o->loss, g[0], g[1], g[2]);
        break;
    }
    case NTXENT: {
        closs_ntxent_params params = p->ntxent;
        params.reduction = reduction;
        status = closs_ref_ntxent(&params, in[0], upstream, o->loss, g[0]);
        break;
    }
    case SUPCON: {
        closs_supcon_params params = p->supcon;
        params.reduction = reduction;
        status = closs_ref_supcon(&params, in[0], labels, upstream, o->loss, g[0], &o->valid);
        break;
    }
    default: {
        closs_cosine_params params = p->cosine;
        params.reduction = reduction;
        status = closs_ref_cosine(&params, in[0], in[1], y, upstream, o->loss, g[0], g[1]);
        break;
    }
    }
    cr_assert_eq(status, CLOSS_STATUS_SUCCESS, "%s: %s", p->name, closs_last_error());
}

/* Calls the loss on dense f64 views of the instance's inputs. */
static void invoke(const instance *p, closs_reduction_t reduction, const double *upstream,
                   unsigned grad_mask, outcome *o) {
    closs_matrix_t in[3];
    for (int k = 0; k < p->inputs; ++k) in[k] = closs_matrix(p->x[k], CLOSS_F64, p->rows, p->dim);
    closs_vector_t y = closs_vector(p->y, CLOSS_F64, p->y ? p->rows : 0);
    closs_vector_t labels = closs_vector(p->labels, CLOSS_I64, p->labels ? p->rows : 0);
    invoke_views(p, in, y, labels, reduction, upstream, grad_mask, o);
}

static const unsigned ALL_GRADS = 7u;

static int64_t loss_count(const instance *p, closs_reduction_t reduction) {
    return reduction == CLOSS_REDUCTION_NONE ? p->rows : 1;
}

/* Asserts two outcomes agree bitwise (loss, requested gradients, valid). */
static void assert_same_bits(const instance *p, const outcome *a, const outcome *b,
                             closs_reduction_t reduction, unsigned grad_mask, const ct_rng *rng,
                             const char *what) {
    char text[256];
    snprintf(text, sizeof text, "%s, %s, reduction %d: loss", p->name, what, (int)reduction);
    ct_assert_bitwise(a->loss, b->loss, loss_count(p, reduction), rng, text);
    for (int k = 0; k < p->inputs; ++k) {
        if (!(grad_mask & (1u << k))) continue;
        snprintf(text, sizeof text, "%s, %s, reduction %d: gradient %d", p->name, what,
                 (int)reduction, k);
        ct_assert_bitwise(a->grad[k], b->grad[k], p->rows * p->dim, rng, text);
    }
    cr_assert_eq(a->valid, b->valid, "%s, %s: valid %lld vs %lld%s", p->name, what,
                 (long long)a->valid, (long long)b->valid, ct_seed_text(rng));
}

static void assert_close_outcomes(const instance *p, const outcome *a, const outcome *b,
                                  closs_reduction_t reduction, const ct_rng *rng,
                                  const char *what) {
    char text[256];
    snprintf(text, sizeof text, "%s, %s, reduction %d: loss", p->name, what, (int)reduction);
    ct_assert_close(a->loss, b->loss, loss_count(p, reduction), CLOSE, CLOSE, rng, text);
    for (int k = 0; k < p->inputs; ++k) {
        snprintf(text, sizeof text, "%s, %s, reduction %d: gradient %d", p->name, what,
                 (int)reduction, k);
        ct_assert_close(a->grad[k], b->grad[k], p->rows * p->dim, CLOSE, CLOSE, rng, text);
    }
}

/* One upstream value per row (NONE reads them all, MEAN and SUM the first). */
static double *random_upstream(ct_rng *rng, int64_t rows) {
    double *u = ct_doubles(rows);
    for (int64_t i = 0; i < rows; ++i) u[i] = ct_uniform(rng, -2.0, 2.0);
    return u;
}

/* ---- SupCon with sample labels is NT-Xent --------------------------------------------------- */

/* labels[i] = labels[i + N] = v_i (distinct arbitrary values): P(i) = {p(i)}, |P(i)| = 1, every
 * anchor is valid (valid = 2N, so the two means agree), and with τ_b = τ the SupCon anchor loss
 * is −s_{i,p(i)}/τ + log Σ_{k≠i} exp(s_ik/τ): NT-Xent's, for values and gradients. */
Test(identities, supcon_with_sample_labels_is_ntxent) {
    ct_rng rng = ct_rng_fresh();
    for (int normalize = 0; normalize < 2; ++normalize)
        for (int r = 0; r < 3; ++r)
            for (int explicit_base = 0; explicit_base < 2; ++explicit_base) {
                const closs_reduction_t reduction = (closs_reduction_t)r;
                const int64_t half = ct_int(&rng, 1, 16), rows = 2 * half, dim = ct_int(&rng, 1, 8);
                instance nt = random_instance(NTXENT, &rng, rows, dim);
                nt.ntxent.normalize = normalize;
                instance sc = random_instance(SUPCON, &rng, rows, dim);
                sc.supcon.normalize = normalize;
                sc.supcon.temperature = nt.ntxent.temperature;
                sc.supcon.base_temperature = explicit_base ? nt.ntxent.temperature : 0.0;
                memcpy(sc.x[0], nt.x[0], (size_t)(rows * dim) * sizeof(double));
                for (int64_t i = 0; i < half; ++i)
                    sc.labels[i] = sc.labels[i + half] = 5 * i * i - 3 * i - 11;
                snprintf(sc.name, sizeof sc.name, "supcon as ntxent N=%lld normalize=%d tau=%g%s",
                         (long long)half, normalize, nt.ntxent.temperature,
                         explicit_base ? " base=tau" : "");
                double *upstream = random_upstream(&rng, rows);
                outcome a = new_outcome(&sc), b = new_outcome(&nt);
                invoke(&sc, reduction, upstream, ALL_GRADS, &a);
                invoke(&nt, reduction, upstream, ALL_GRADS, &b);
                cr_assert_eq(a.valid, rows, "valid %lld, want %lld", (long long)a.valid,
                             (long long)rows);
                assert_close_outcomes(&sc, &a, &b, reduction, &rng, "SupCon vs NT-Xent");
                free(upstream);
                free_outcome(&a);
                free_outcome(&b);
                free_instance(&nt);
                free_instance(&sc);
            }
}

/* ---- scale invariance ----------------------------------------------------------------------- */

/* Scales row i of input k by factors[k][i]. */
static void scale_rows(instance *p, double factors[3][64]) {
    for (int k = 0; k < p->inputs; ++k)
        for (int64_t i = 0; i < p->rows; ++i)
            for (int64_t c = 0; c < p->dim; ++c) p->x[k][i * p->dim + c] *= factors[k][i];
}

/* With normalisation (NT-Xent, SupCon) or a cosine distance (pair, triplet, cosine), scaling any
 * row by c > 0 changes no loss, and the gradient of that row becomes gradient / c. Powers of two
 * scale exactly, so then the results must agree bitwise; other factors agree to rounding. */
Test(identities, normalised_losses_ignore_scale) {
    ct_rng rng = ct_rng_fresh();
    for (int kind = 0; kind < KIND_COUNT; ++kind)
        for (int exact = 0; exact < 2; ++exact)
            for (int r = 0; r < 3; ++r) {
                const closs_reduction_t reduction = (closs_reduction_t)r;
                const int64_t rows = 2 * ct_int(&rng, 2, 12), dim = ct_int(&rng, 2, 8);
                instance p = random_instance(kind, &rng, rows, dim);
                p.pair.distance = p.triplet.distance = CLOSS_DISTANCE_COSINE;
                p.ntxent.normalize = p.supcon.normalize = 1;
                double factors[3][64];
                for (int k = 0; k < 3; ++k)
                    for (int64_t i = 0; i < rows; ++i)
                        factors[k][i] = exact ? ldexp(1.0, (int)ct_int(&rng, -8, 8))
                                              : exp(ct_uniform(&rng, log(0.01), log(100.0)));
                double *upstream = random_upstream(&rng, rows);
                outcome before = new_outcome(&p), after = new_outcome(&p);
                invoke(&p, reduction, upstream, ALL_GRADS, &before);
                scale_rows(&p, factors);
                invoke(&p, reduction, upstream, ALL_GRADS, &after);
                /* Undo the 1/c on the gradient. */
                for (int k = 0; k < p.inputs; ++k)
                    for (int64_t i = 0; i < rows; ++i)
                        for (int64_t c = 0; c < dim; ++c)
                            after.grad[k][i * dim + c] *= factors[k][i];
                if (exact)
                    assert_same_bits(&p, &after, &before, reduction, ALL_GRADS, &rng,
                                     "rows scaled by powers of two");
                else assert_close_outcomes(&p, &after, &before, reduction, &rng, "rows scaled");
                free(upstream);
                free_outcome(&before);
                free_outcome(&after);
                free_instance(&p);
            }
}

/* ---- permutations --------------------------------------------------------------------------- */

/* Moves row i of every input (and label) to row perm[i]. */
static void permute_rows(instance *p, const int64_t *perm) {
    const int64_t rows = p->rows, dim = p->dim;
    double *scratch = ct_doubles(rows * dim);
    for (int k = 0; k < p->inputs; ++k) {
        for (int64_t i = 0; i < rows; ++i)
            memcpy(scratch + perm[i] * dim, p->x[k] + i * dim, (size_t)dim * sizeof(double));
        memcpy(p->x[k], scratch, (size_t)(rows * dim) * sizeof(double));
    }
    if (p->y) {
        for (int64_t i = 0; i < rows; ++i) scratch[perm[i]] = p->y[i];
        memcpy(p->y, scratch, (size_t)rows * sizeof(double));
    }
    if (p->labels) {
        int64_t *labels = ct_alloc((size_t)rows * sizeof(int64_t));
        for (int64_t i = 0; i < rows; ++i) labels[perm[i]] = p->labels[i];
        memcpy(p->labels, labels, (size_t)rows * sizeof(int64_t));
        free(labels);
    }
    free(scratch);
}

/* A permutation that every loss accepts: any for the row-wise losses and SupCon; for NT-Xent a
 * permutation of the samples, each sample's two views optionally exchanged, so that row i + N
 * stays the partner of row i. */
static void structural_permutation(ct_rng *rng, int kind, int64_t rows, int64_t *perm) {
    if (kind != NTXENT) {
        ct_permutation(rng, perm, rows);
        return;
    }
    const int64_t half = rows / 2;
    int64_t samples[64];
    ct_permutation(rng, samples, half);
    for (int64_t i = 0; i < half; ++i) {
        int64_t flip = ct_int(rng, 0, 1);
        perm[i] = samples[i] + flip * half;
        perm[i + half] = samples[i] + (1 - flip) * half;
    }
}

/* Permuting the rows consistently (inputs, labels, upstream) permutes the NONE losses and the
 * gradients (bitwise for the row-wise losses, whose rows are independent; to rounding for NT-Xent
 * and SupCon, whose sums run in row order) and leaves MEAN and SUM unchanged (to rounding). */
Test(identities, permuting_rows_changes_nothing) {
    ct_rng rng = ct_rng_fresh();
    for (int kind = 0; kind < KIND_COUNT; ++kind)
        for (int trial = 0; trial < 3; ++trial)
            for (int r = 0; r < 3; ++r) {
                const closs_reduction_t reduction = (closs_reduction_t)r;
                const int64_t rows = 2 * ct_int(&rng, 2, 16), dim = ct_int(&rng, 1, 8);
                instance p = random_instance(kind, &rng, rows, dim);
                int64_t perm[64];
                structural_permutation(&rng, kind, rows, perm);
                double *upstream = random_upstream(&rng, rows);
                double *moved_upstream = ct_doubles(rows);
                for (int64_t i = 0; i < rows; ++i)
                    moved_upstream[perm[i]] =
                        reduction == CLOSS_REDUCTION_NONE ? upstream[i] : upstream[0];
                outcome before = new_outcome(&p), after = new_outcome(&p),
                        expected = new_outcome(&p);
                invoke(&p, reduction, upstream, ALL_GRADS, &before);
                permute_rows(&p, perm);
                invoke(&p, reduction, moved_upstream, ALL_GRADS, &after);
                /* `expected`: `before` moved to the new row order. */
                memcpy(expected.loss, before.loss, sizeof(double));
                for (int64_t i = 0; i < rows; ++i) {
                    if (reduction == CLOSS_REDUCTION_NONE) expected.loss[perm[i]] = before.loss[i];
                    for (int k = 0; k < p.inputs; ++k)
                        memcpy(expected.grad[k] + perm[i] * dim, before.grad[k] + i * dim,
                               (size_t)dim * sizeof(double));
                }
                expected.valid = before.valid;
                const int rowwise = kind == PAIR || kind == TRIPLET || kind == COSINE;
                if (rowwise && reduction == CLOSS_REDUCTION_NONE)
                    assert_same_bits(&p, &after, &expected, reduction, ALL_GRADS, &rng,
                                     "rows permuted");
                else assert_close_outcomes(&p, &after, &expected, reduction, &rng, "rows permuted");
                cr_assert_eq(after.valid, before.valid);
                free(upstream);
                free(moved_upstream);
                free_outcome(&before);
                free_outcome(&after);
                free_outcome(&expected);
                free_instance(&p);
            }
}

/* Relabelling SupCon's classes by a bijection of the label values changes nothing. */
Test(identities, supcon_label_values_do_not_matter) {
    ct_rng rng = ct_rng_fresh();
    for (int trial = 0; trial < 6; ++trial) {
        const int64_t rows = ct_int(&rng, 2, 40), dim = ct_int(&rng, 1, 8);
        instance p = random_instance(SUPCON, &rng, rows, dim);
        outcome before = new_outcome(&p), after = new_outcome(&p);
        const closs_reduction_t reduction = (closs_reduction_t)(trial % 3);
        invoke(&p, reduction, NULL, ALL_GRADS, &before);
        /* label → −3·label + 2⁴⁰: injective, reverses the order, leaves i32 for i64. */
        for (int64_t i = 0; i < rows; ++i) p.labels[i] = -3 * p.labels[i] + ((int64_t)1 << 40);
        invoke(&p, reduction, NULL, ALL_GRADS, &after);
        assert_close_outcomes(&p, &after, &before, reduction, &rng, "labels relabelled");
        cr_assert_eq(after.valid, before.valid);
        free_outcome(&before);
        free_outcome(&after);
        free_instance(&p);
    }
}

/* ---- reductions ----------------------------------------------------------------------------- */

/* sum = Σ none; mean = sum / count (count: rows; 2N for NT-Xent; valid for SupCon, mean 0 when
 * valid is 0); the gradients follow: ∇mean = ∇sum / count, ∇none with upstream NULL = ∇sum, and
 * ∇none with every upstream_i = u equals ∇sum with upstream u. */
Test(identities, reductions_agree) {
    ct_rng rng = ct_rng_fresh();
    for (int kind = 0; kind < KIND_COUNT; ++kind)
        for (int trial = 0; trial < 4; ++trial) {
            const int64_t rows = 2 * ct_int(&rng, 1, 16), dim = ct_int(&rng, 1, 8);
            instance p = random_instance(kind, &rng, rows, dim);
            outcome none = new_outcome(&p), sum = new_outcome(&p), mean = new_outcome(&p);
            invoke(&p, CLOSS_REDUCTION_NONE, NULL, ALL_GRADS, &none);
            invoke(&p, CLOSS_REDUCTION_SUM, NULL, ALL_GRADS, &sum);
            invoke(&p, CLOSS_REDUCTION_MEAN, NULL, ALL_GRADS, &mean);
            const int64_t count = kind == SUPCON ? sum.valid : rows;
            double total = 0.0;
            for (int64_t i = 0; i < rows; ++i) total += none.loss[i];
            ct_assert_close(sum.loss, &total, 1, CLOSE, CLOSE, &rng, p.name);
            const double want_mean = count > 0 ? sum.loss[0] / (double)count : 0.0;
            ct_assert_close(mean.loss, &want_mean, 1, CLOSE, CLOSE, &rng, p.name);
            for (int k = 0; k < p.inputs; ++k) {
                double *scaled = ct_doubles(rows * dim);
                for (int64_t e = 0; e < rows * dim; ++e)
                    scaled[e] = count > 0 ? sum.grad[k][e] / (double)count : 0.0;
                ct_assert_close(mean.grad[k], scaled, rows * dim, CLOSE, CLOSE, &rng,
                                "∇mean vs ∇sum / count");
                ct_assert_close(none.grad[k], sum.grad[k], rows * dim, CLOSE, CLOSE, &rng,
                                "∇none (upstream NULL) vs ∇sum");
                free(scaled);
            }
            const double u = ct_uniform(&rng, -3.0, 3.0);
            double *all_u = ct_doubles(rows);
            for (int64_t i = 0; i < rows; ++i) all_u[i] = u;
            invoke(&p, CLOSS_REDUCTION_NONE, all_u, ALL_GRADS, &none);
            invoke(&p, CLOSS_REDUCTION_SUM, &u, ALL_GRADS, &sum);
            for (int k = 0; k < p.inputs; ++k)
                ct_assert_close(none.grad[k], sum.grad[k], rows * dim, CLOSE, CLOSE, &rng,
                                "∇none (upstream u each) vs ∇sum (upstream u)");
            free(all_u);
            free_outcome(&none);
            free_outcome(&sum);
            free_outcome(&mean);
            free_instance(&p);
        }
}

/* ---- layouts -------------------------------------------------------------------------------- */

/* The same values through another layout: ld > cols (NaN padding, a different ld per input) or
 * f32 storage of f32-representable values (pair labels in f32 too; SupCon labels in i32).
 * Results must be bitwise identical to the dense f64 call. */
static void check_layout(int kind, ct_rng *rng, int strided, int f32) {
    for (int r = 0; r < 3; ++r) {
        const closs_reduction_t reduction = (closs_reduction_t)r;
        const int64_t rows = 2 * ct_int(rng, 1, 16), dim = ct_int(rng, 1, 16);
        instance p = random_instance(kind, rng, rows, dim);
        if (f32) {
            for (int k = 0; k < p.inputs; ++k) ct_round_to_f32(p.x[k], rows * dim);
            if (p.y) ct_round_to_f32(p.y, rows);
        }
        double *upstream = random_upstream(rng, rows);
        outcome dense = new_outcome(&p), other = new_outcome(&p);
        invoke(&p, reduction, upstream, ALL_GRADS, &dense);

        const closs_dtype_t dtype = f32 ? CLOSS_F32 : CLOSS_F64;
        ct_matrix packed[3];
        closs_matrix_t in[3];
        for (int k = 0; k < p.inputs; ++k) {
            const int64_t ld = strided ? dim + ct_int(rng, 1, 5) : dim;
            packed[k] = ct_matrix_pack(p.x[k], rows, dim, dtype, ld);
            in[k] = packed[k].view;
        }
        ct_vector y = {{0}, NULL}, labels = {{0}, NULL};
        if (p.y) y = ct_vector_real(p.y, rows, dtype);
        if (p.labels) labels = ct_vector_label(p.labels, rows, f32 ? CLOSS_I32 : CLOSS_I64);
        invoke_views(&p, in, y.view, labels.view, reduction, upstream, ALL_GRADS, &other);
        assert_same_bits(&p, &other, &dense, reduction, ALL_GRADS, rng,
                         strided ? (f32 ? "f32, ld > cols" : "ld > cols") : "f32 inputs");
        for (int k = 0; k < p.inputs; ++k) ct_matrix_free(&packed[k]);
        ct_vector_free(&y);
        ct_vector_free(&labels);
        free(upstream);
        free_outcome(&dense);
        free_outcome(&other);
        free_instance(&p);
    }
}

Test(identities, results_do_not_depend_on_ld) {
    ct_rng rng = ct_rng_fresh();
    for (int kind = 0; kind < KIND_COUNT; ++kind) check_layout(kind, &rng, 1, 0);
}

Test(identities, f32_inputs_equal_f64_inputs_holding_the_same_values) {
    ct_rng rng = ct_rng_fresh();
    for (int kind = 0; kind < KIND_COUNT; ++kind) {
        check_layout(kind, &rng, 0, 1);
        check_layout(kind, &rng, 1, 1);
    }
}

/* Any subset of NULL gradient pointers: the same loss, and the requested gradients unchanged. */
Test(identities, null_gradients_change_nothing_else) {
    ct_rng rng = ct_rng_fresh();
    for (int kind = 0; kind < KIND_COUNT; ++kind)
        for (int r = 0; r < 3; ++r) {
            const closs_reduction_t reduction = (closs_reduction_t)r;
            const int64_t rows = 2 * ct_int(&rng, 1, 16), dim = ct_int(&rng, 1, 8);
            instance p = random_instance(kind, &rng, rows, dim);
            double *upstream = random_upstream(&rng, rows);
            outcome full = new_outcome(&p), partial = new_outcome(&p);
            invoke(&p, reduction, upstream, ALL_GRADS, &full);
            for (unsigned mask = 0; mask < (1u << p.inputs); ++mask) {
                invoke(&p, reduction, upstream, mask, &partial);
                char what[64];
                snprintf(what, sizeof what, "gradient mask %u", mask);
                assert_same_bits(&p, &partial, &full, reduction, mask, &rng, what);
            }
            free(upstream);
            free_outcome(&full);
            free_outcome(&partial);
            free_instance(&p);
        }
}

/* Repeated calls give the same bits, also at M = 64, D = 16 where the softmax losses split the
 * anchors into several blocks (and OpenMP threads, when built with OpenMP). */
Test(identities, repeated_calls_are_bitwise_identical) {
    ct_rng rng = ct_rng_fresh();
    for (int kind = 0; kind < KIND_COUNT; ++kind)
        for (int r = 0; r < 3; ++r) {
            const closs_reduction_t reduction = (closs_reduction_t)r;
            instance p = random_instance(kind, &rng, 64, 16);
            double *upstream = random_upstream(&rng, 64);
            outcome first = new_outcome(&p), again = new_outcome(&p);
            invoke(&p, reduction, upstream, ALL_GRADS, &first);
            for (int repeat = 0; repeat < 3; ++repeat) {
                invoke(&p, reduction, upstream, ALL_GRADS, &again);
                assert_same_bits(&p, &again, &first, reduction, ALL_GRADS, &rng, "repeated call");
            }
            free(upstream);
            free_outcome(&first);
            free_outcome(&again);
            free_instance(&p);
        }
}

/* ---- SupCon's valid count and the official convention --------------------------------------- */

/* valid = #{i : ∃ j ≠ i, labels_j = labels_i}, counted here in O(M²); the NONE losses are exactly
 * 0 for the other anchors and > 0 for these (M ≥ 3: the log-sum-exp over ≥ 2 terms exceeds every
 * term, hence the mean of the positive terms). valid may be NULL. */
Test(identities, supcon_valid_counts_anchors_with_a_positive) {
    ct_rng rng = ct_rng_fresh();
    for (int trial = 0; trial < 20; ++trial) {
        const int64_t rows = ct_int(&rng, 3, 64), dim = ct_int(&rng, 1, 8);
        instance p = random_instance(SUPCON, &rng, rows, dim);
        int64_t expected = 0;
        for (int64_t i = 0; i < rows; ++i) {
            int has_positive = 0;
            for (int64_t j = 0; j < rows; ++j) has_positive |= j != i && p.labels[j] == p.labels[i];
            expected += has_positive;
        }
        outcome o = new_outcome(&p);
        invoke(&p, CLOSS_REDUCTION_NONE, NULL, ALL_GRADS, &o);
        cr_assert_eq(o.valid, expected, "valid %lld, counted %lld (M = %lld)%s", (long long)o.valid,
                     (long long)expected, (long long)rows, ct_seed_text(&rng));
        for (int64_t i = 0; i < rows; ++i) {
            int has_positive = 0;
            for (int64_t j = 0; j < rows; ++j) has_positive |= j != i && p.labels[j] == p.labels[i];
            if (has_positive)
                cr_assert(o.loss[i] > 0.0, "anchor %lld has a positive but ℓ = %.17g%s",
                          (long long)i, o.loss[i], ct_seed_text(&rng));
            else
                cr_assert(o.loss[i] == 0.0, "anchor %lld has no positive but ℓ = %.17g%s",
                          (long long)i, o.loss[i], ct_seed_text(&rng));
        }
        double loss_with = 0.0, loss_without = 0.0;
        closs_supcon_params params = p.supcon;
        cr_assert_eq(closs_ref_supcon(&params, closs_matrix(p.x[0], CLOSS_F64, rows, dim),
                                      closs_vector(p.labels, CLOSS_I64, rows), NULL, &loss_without,
                                      NULL, NULL),
                     CLOSS_STATUS_SUCCESS, "valid = NULL: %s", closs_last_error());
        cr_assert_eq(closs_ref_supcon(&params, closs_matrix(p.x[0], CLOSS_F64, rows, dim),
                                      closs_vector(p.labels, CLOSS_I64, rows), NULL, &loss_with,
                                      NULL, &o.valid),
                     CLOSS_STATUS_SUCCESS);
        cr_assert(ct_same_bits(loss_with, loss_without), "valid = NULL changed the loss");
        free_outcome(&o);
        free_instance(&p);
    }
}

/* The official SupContrast code averages over all M anchors (those without a positive count as 0);
 * the contract's mean averages over the valid ones. The documented conversion:
 * official = mean × valid / M = (Σ_i ℓ_i) / M. */
Test(identities, official_supcontrast_mean_is_mean_times_valid_over_m) {
    ct_rng rng = ct_rng_fresh();
    for (int trial = 0; trial < 10; ++trial) {
        const int64_t rows = ct_int(&rng, 2, 40), dim = ct_int(&rng, 1, 8);
        instance p = random_instance(SUPCON, &rng, rows, dim);
        /* Some singletons for sure: the last two rows get labels of their own. */
        p.labels[rows - 1] = -1;
        if (rows > 2) p.labels[rows - 2] = -2;
        outcome none = new_outcome(&p), mean = new_outcome(&p);
        invoke(&p, CLOSS_REDUCTION_NONE, NULL, 0, &none);
        invoke(&p, CLOSS_REDUCTION_MEAN, NULL, 0, &mean);
        double official = 0.0;
        for (int64_t i = 0; i < rows; ++i) official += none.loss[i];
        official /= (double)rows;
        const double converted = mean.loss[0] * (double)mean.valid / (double)rows;
        ct_assert_close(&converted, &official, 1, CLOSE, CLOSE, &rng, "mean × valid / M");
        cr_assert_lt(mean.valid, rows, "the singletons are not valid anchors");
        free_outcome(&none);
        free_outcome(&mean);
        free_instance(&p);
    }
}
