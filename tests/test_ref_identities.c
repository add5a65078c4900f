/* Identities the CPU reference must satisfy, on fresh random inputs and random options:
 *   - SupCon with labels = sample index over two stacked views is NT-Xent (values and gradients);
 *   - with normalisation (or a cosine distance) scaling an input by c > 0 changes no loss and
 *     divides the gradient by c;
 *   - permuting rows consistently permutes the per-row losses and gradients;
 *   - the reductions agree (sum = Σ none, mean = sum / count, count = valid for SupCon);
 *   - the layout does not matter: ld > cols, f32 vs f64 holding the same values, NULL gradient
 *     pointers (bitwise), and repeated calls (bitwise);
 *   - SupCon's `valid` is the number of anchors with a positive; the official SupContrast mean is
 *     mean × valid / M;
 *   - CLIP: symmetric is the mean of the two one-way losses (b's extra negatives only in a → b);
 *     without in-batch negatives (MoCo) it is one call per pair against [partner; negatives];
 *     SigLIP's sum over rows equals the sum over columns (swap a and b); for both, permuting
 *     pairs or negatives, scaling rows (normalised), s·∂L/∂s = Σ a·∂L/∂a = Σ b·∂L/∂b (not
 *     normalised), the reductions, the layouts, grad_negatives = 0, and the CLIP forward and
 *     backward against the one call. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "closs.h"
#include "test_support.h"
#include "two_tower_support.h"

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

/* ---- CLIP and SigLIP ----------------------------------------------------------------------- */

/* A random problem of the loss: random valid options (CLIP's three variants), scale and bias. */
static tt_problem random_tower(ct_rng *rng, int siglip, int64_t pairs, int64_t negatives,
                               int64_t dim, closs_reduction_t reduction) {
    tt_problem p = tt_new(siglip, pairs, negatives, dim);
    const int variant = (int)ct_int(rng, 0, negatives > 0 ? 2 : 1);
    p.clip.symmetric = variant == 0;
    p.clip.in_batch_negatives = variant != 2;
    TT_FIELD(&p, normalize) = (int)ct_int(rng, 0, 1);
    TT_FIELD(&p, reduction) = reduction;
    TT_FIELD(&p, logit_scale) =
        TT_FIELD(&p, normalize) ? ct_uniform(rng, 1.0, 20.0) : ct_uniform(rng, 0.5, 3.0);
    p.sig.logit_bias = ct_uniform(rng, -5.0, 2.0);
    tt_fill(&p, rng);
    tt_describe(&p);
    return p;
}

static double *random_pair_upstream(ct_rng *rng, const tt_problem *p) {
    double *upstream = ct_doubles(p->pairs);
    for (int64_t i = 0; i < p->pairs; ++i) upstream[i] = ct_uniform(rng, -2.0, 2.0);
    return upstream;
}

static void assert_close_towers(const tt_problem *p, const tt_outputs *got, const tt_outputs *want,
                                ct_rng *rng, const char *what) {
    char text[320];
    snprintf(text, sizeof text, "%s: %s", p->name, what);
    ct_assert_close(got->loss, want->loss, tt_loss_count(p), CLOSE, CLOSE, rng, text);
    ct_assert_close(got->grad_a, want->grad_a, p->pairs * p->dim, CLOSE, CLOSE, rng, text);
    ct_assert_close(got->grad_b, want->grad_b, tt_grad_b_rows(p) * p->dim, CLOSE, CLOSE, rng, text);
    ct_assert_close(&got->grad_scale, &want->grad_scale, 1, CLOSE, CLOSE, rng, text);
    if (p->siglip) ct_assert_close(&got->grad_bias, &want->grad_bias, 1, CLOSE, CLOSE, rng, text);
}

/* ℓ_i = ½(L_ab(i) + L_ba(i)): the symmetric loss of (a, b) is the mean of the one-way losses of
 * (a, b) and of (b's partners, a), per pair (NONE) and for every gradient; b's extra negatives
 * are in the first direction only. */
Test(identities, clip_symmetric_is_the_mean_of_both_directions) {
    ct_rng rng = ct_rng_fresh();
    for (int trial = 0; trial < 12; ++trial) {
        const int64_t pairs = ct_int(&rng, 1, 12), negatives = ct_int(&rng, 0, 5);
        tt_problem p =
            random_tower(&rng, 0, pairs, negatives, ct_int(&rng, 1, 8), CLOSS_REDUCTION_NONE);
        p.clip.symmetric = p.clip.in_batch_negatives = 1;
        double *upstream = random_pair_upstream(&rng, &p);
        tt_outputs both = tt_outputs_new(&p), ab = tt_outputs_new(&p);
        tt_run(&p, upstream, &both);
        p.clip.symmetric = 0;
        tt_run(&p, upstream, &ab);
        tt_problem q = tt_new(0, pairs, 0, p.dim); /* (b's partners, a) */
        q.clip = p.clip;
        memcpy(q.a, p.b, (size_t)(pairs * p.dim) * sizeof(double));
        memcpy(q.b, p.a, (size_t)(pairs * p.dim) * sizeof(double));
        tt_outputs ba = tt_outputs_new(&q), mean = tt_outputs_new(&p);
        tt_run(&q, upstream, &ba);
        for (int64_t i = 0; i < pairs; ++i) mean.loss[i] = 0.5 * (ab.loss[i] + ba.loss[i]);
        for (int64_t e = 0; e < pairs * p.dim; ++e) {
            mean.grad_a[e] = 0.5 * (ab.grad_a[e] + ba.grad_b[e]);
            mean.grad_b[e] = 0.5 * (ab.grad_b[e] + ba.grad_a[e]);
        }
        for (int64_t e = pairs * p.dim; e < (pairs + negatives) * p.dim; ++e)
            mean.grad_b[e] = 0.5 * ab.grad_b[e];
        mean.grad_scale = 0.5 * (ab.grad_scale + ba.grad_scale);
        p.clip.symmetric = 1;
        assert_close_towers(&p, &both, &mean, &rng, "symmetric vs ½(a → b + b → a)");
        tt_outputs_free(&both);
        tt_outputs_free(&ab);
        tt_outputs_free(&ba);
        tt_outputs_free(&mean);
        free(upstream);
        tt_free(&q);
        tt_free(&p);
    }
}

/* Without in-batch negatives (MoCo v2), pair i sees only its partner and the extra negatives Q:
 * the loss is that of N one-pair calls on (a_i, [b_i; Q]), whose ∂/∂Q add up. */
Test(identities, clip_without_in_batch_negatives_is_one_pair_at_a_time) {
    ct_rng rng = ct_rng_fresh();
    for (int trial = 0; trial < 10; ++trial) {
        const int64_t pairs = ct_int(&rng, 1, 10), negatives = ct_int(&rng, 1, 6);
        const int64_t dim = ct_int(&rng, 1, 8);
        tt_problem p = random_tower(&rng, 0, pairs, negatives, dim, CLOSS_REDUCTION_NONE);
        p.clip.symmetric = p.clip.in_batch_negatives = 0;
        double *upstream = random_pair_upstream(&rng, &p);
        tt_outputs whole = tt_outputs_new(&p), assembled = tt_outputs_new(&p);
        tt_run(&p, upstream, &whole);
        memset(assembled.grad_b + pairs * dim, 0, (size_t)(negatives * dim) * sizeof(double));
        assembled.grad_scale = 0.0;
        tt_problem one = tt_new(0, 1, negatives, dim);
        one.clip = p.clip;
        one.clip.in_batch_negatives = 1; /* one pair: C(0) is every row either way */
        memcpy(one.b + dim, p.b + pairs * dim, (size_t)(negatives * dim) * sizeof(double));
        tt_outputs part = tt_outputs_new(&one);
        for (int64_t i = 0; i < pairs; ++i) {
            memcpy(one.a, p.a + i * dim, (size_t)dim * sizeof(double));
            memcpy(one.b, p.b + i * dim, (size_t)dim * sizeof(double));
            tt_run(&one, upstream + i, &part);
            assembled.loss[i] = part.loss[0];
            memcpy(assembled.grad_a + i * dim, part.grad_a, (size_t)dim * sizeof(double));
            memcpy(assembled.grad_b + i * dim, part.grad_b, (size_t)dim * sizeof(double));
            for (int64_t e = 0; e < negatives * dim; ++e)
                assembled.grad_b[pairs * dim + e] += part.grad_b[dim + e];
            assembled.grad_scale += part.grad_scale;
        }
        assert_close_towers(&p, &whole, &assembled, &rng, "MoCo vs one call per pair");
        tt_outputs_free(&whole);
        tt_outputs_free(&assembled);
        tt_outputs_free(&part);
        free(upstream);
        tt_free(&one);
        tt_free(&p);
    }
}

/* z is symmetric, so with K = 0 SigLIP's sum over the pairs (rows) equals the sum over columns:
 * swapping a and b changes neither the SUM loss nor ∂/∂s, ∂/∂β, and swaps ∂/∂a and ∂/∂b. */
Test(identities, siglip_rows_and_columns_sum_alike) {
    ct_rng rng = ct_rng_fresh();
    for (int trial = 0; trial < 10; ++trial) {
        const int64_t pairs = ct_int(&rng, 1, 12), dim = ct_int(&rng, 1, 8);
        tt_problem p = random_tower(&rng, 1, pairs, 0, dim, CLOSS_REDUCTION_SUM);
        tt_problem q = tt_new(1, pairs, 0, dim);
        q.sig = p.sig;
        memcpy(q.a, p.b, (size_t)(pairs * dim) * sizeof(double));
        memcpy(q.b, p.a, (size_t)(pairs * dim) * sizeof(double));
        tt_outputs ab = tt_outputs_new(&p), ba = tt_outputs_new(&q), swapped = tt_outputs_new(&p);
        const double u = ct_uniform(&rng, 0.5, 2.0);
        tt_run(&p, &u, &ab);
        tt_run(&q, &u, &ba);
        swapped.loss[0] = ba.loss[0];
        memcpy(swapped.grad_a, ba.grad_b, (size_t)(pairs * dim) * sizeof(double));
        memcpy(swapped.grad_b, ba.grad_a, (size_t)(pairs * dim) * sizeof(double));
        swapped.grad_scale = ba.grad_scale;
        swapped.grad_bias = ba.grad_bias;
        assert_close_towers(&p, &ab, &swapped, &rng, "siglip(a, b) vs siglip(b, a)");
        tt_outputs_free(&ab);
        tt_outputs_free(&ba);
        tt_outputs_free(&swapped);
        tt_free(&q);
        tt_free(&p);
    }
}

/* Moves pair i to perm[i] (a's row and its partner) and negative k to perm_q[k]. */
static void permute_tower(tt_problem *p, const int64_t *perm, const int64_t *perm_q) {
    const int64_t dim = p->dim, pairs = p->pairs;
    double *scratch = ct_doubles((pairs + p->negatives) * dim);
    for (int tower = 0; tower < 2; ++tower) {
        double *x = tower ? p->b : p->a;
        const int64_t rows = tower ? pairs + p->negatives : pairs;
        for (int64_t r = 0; r < rows; ++r) {
            const int64_t to = r < pairs ? perm[r] : pairs + perm_q[r - pairs];
            memcpy(scratch + to * dim, x + r * dim, (size_t)dim * sizeof(double));
        }
        memcpy(x, scratch, (size_t)(rows * dim) * sizeof(double));
    }
    free(scratch);
}

/* Permuting the pairs (with the NONE upstream) and the extra negatives permutes the NONE losses
 * and the gradient rows, and leaves the reduced loss and ∂/∂s, ∂/∂β unchanged, to rounding. */
Test(identities, two_tower_permutations_change_nothing) {
    ct_rng rng = ct_rng_fresh();
    for (int siglip = 0; siglip <= 1; ++siglip)
        for (int trial = 0; trial < 6; ++trial) {
            const int64_t pairs = ct_int(&rng, 2, 12), negatives = ct_int(&rng, 0, 6);
            const int64_t dim = ct_int(&rng, 1, 8);
            tt_problem p =
                random_tower(&rng, siglip, pairs, negatives, dim, (closs_reduction_t)(trial % 3));
            int64_t perm[16], perm_q[8];
            ct_permutation(&rng, perm, pairs);
            ct_permutation(&rng, perm_q, negatives);
            double *upstream = random_pair_upstream(&rng, &p), moved_upstream[16];
            for (int64_t i = 0; i < pairs; ++i)
                moved_upstream[perm[i]] =
                    TT_FIELD(&p, reduction) == CLOSS_REDUCTION_NONE ? upstream[i] : upstream[0];
            tt_outputs before = tt_outputs_new(&p), after = tt_outputs_new(&p);
            tt_outputs expected = tt_outputs_new(&p);
            tt_run(&p, upstream, &before);
            permute_tower(&p, perm, perm_q);
            tt_run(&p, moved_upstream, &after);
            expected.loss[0] = before.loss[0];
            expected.grad_scale = before.grad_scale;
            expected.grad_bias = before.grad_bias;
            for (int64_t r = 0; r < pairs + negatives; ++r) {
                const int64_t to = r < pairs ? perm[r] : pairs + perm_q[r - pairs];
                if (r < pairs) {
                    if (TT_FIELD(&p, reduction) == CLOSS_REDUCTION_NONE)
                        expected.loss[to] = before.loss[r];
                    memcpy(expected.grad_a + to * dim, before.grad_a + r * dim,
                           (size_t)dim * sizeof(double));
                }
                memcpy(expected.grad_b + to * dim, before.grad_b + r * dim,
                       (size_t)dim * sizeof(double));
            }
            assert_close_towers(&p, &after, &expected, &rng, "pairs and negatives permuted");
            tt_outputs_free(&before);
            tt_outputs_free(&after);
            tt_outputs_free(&expected);
            free(upstream);
            tt_free(&p);
        }
}

/* Normalised, scaling any row of a or b by c > 0 changes no loss, nor ∂/∂s, ∂/∂β, and divides
 * that row's gradient by c (bitwise for powers of two). Not normalised, x is bilinear in (a, b)
 * and linear in s: s·∂L/∂s = Σ_i a_i·∂L/∂a_i = Σ_j b_j·∂L/∂b_j. */
Test(identities, two_tower_scales) {
    ct_rng rng = ct_rng_fresh();
    for (int siglip = 0; siglip <= 1; ++siglip)
        for (int trial = 0; trial < 6; ++trial) {
            const int64_t pairs = ct_int(&rng, 1, 10), negatives = ct_int(&rng, 0, 5);
            const int64_t dim = ct_int(&rng, 1, 8), rows = 2 * pairs + negatives;
            tt_problem p =
                random_tower(&rng, siglip, pairs, negatives, dim, (closs_reduction_t)(trial % 3));
            double *upstream = random_pair_upstream(&rng, &p), factors[32];
            tt_outputs before = tt_outputs_new(&p), after = tt_outputs_new(&p);
            TT_FIELD(&p, normalize) = 1;
            tt_run(&p, upstream, &before);
            for (int64_t r = 0; r < rows; ++r) {
                factors[r] = ldexp(1.0, (int)ct_int(&rng, -6, 6));
                double *row = r < pairs ? p.a + r * dim : p.b + (r - pairs) * dim;
                for (int64_t c = 0; c < dim; ++c) row[c] *= factors[r];
            }
            tt_run(&p, upstream, &after);
            for (int64_t r = 0; r < rows; ++r) {
                double *g = r < pairs ? after.grad_a + r * dim : after.grad_b + (r - pairs) * dim;
                for (int64_t c = 0; c < dim; ++c) g[c] *= factors[r];
            }
            tt_describe(&p);
            tt_assert_same_bits(&p, &after, &before, &rng, "rows scaled by powers of two");

            TT_FIELD(&p, normalize) = 0;
            tt_run(&p, upstream, &after);
            const double want = TT_FIELD(&p, logit_scale) * after.grad_scale;
            const double by_a = ct_dot(p.a, after.grad_a, pairs * dim);
            const double by_b = ct_dot(p.b, after.grad_b, (pairs + negatives) * dim);
            cr_assert(fabs(by_a - want) <= CLOSE * (1.0 + fabs(want)) &&
                          fabs(by_b - want) <= CLOSE * (1.0 + fabs(want)),
                      "%s: s·∂L/∂s = %.17g, Σ a·∂L/∂a = %.17g, Σ b·∂L/∂b = %.17g%s", p.name, want,
                      by_a, by_b, ct_seed_text(&rng));
            tt_outputs_free(&before);
            tt_outputs_free(&after);
            free(upstream);
            tt_free(&p);
        }
}

/* sum = Σ none, mean = sum / N, and the gradients follow (∇none with upstream u each = ∇sum with
 * upstream u = ∇mean with upstream N·u). */
Test(identities, two_tower_reductions_agree) {
    ct_rng rng = ct_rng_fresh();
    for (int siglip = 0; siglip <= 1; ++siglip)
        for (int trial = 0; trial < 6; ++trial) {
            const int64_t pairs = ct_int(&rng, 1, 12), negatives = ct_int(&rng, 0, 5);
            tt_problem p = random_tower(&rng, siglip, pairs, negatives, ct_int(&rng, 1, 8),
                                        CLOSS_REDUCTION_NONE);
            const double u = ct_uniform(&rng, -2.0, 2.0);
            double all_u[16];
            for (int64_t i = 0; i < pairs; ++i) all_u[i] = u;
            tt_outputs none = tt_outputs_new(&p), sum = tt_outputs_new(&p);
            tt_outputs mean = tt_outputs_new(&p);
            tt_run(&p, all_u, &none);
            TT_FIELD(&p, reduction) = CLOSS_REDUCTION_SUM;
            tt_run(&p, &u, &sum);
            const double n = (double)pairs, w = u * n;
            TT_FIELD(&p, reduction) = CLOSS_REDUCTION_MEAN;
            tt_run(&p, &w, &mean);
            double total = 0.0;
            for (int64_t i = 0; i < pairs; ++i) total += none.loss[i];
            none.loss[0] = total;
            mean.loss[0] *= n;
            TT_FIELD(&p, reduction) = CLOSS_REDUCTION_SUM;
            assert_close_towers(&p, &none, &sum, &rng, "Σ none (upstream u each) vs sum (u)");
            assert_close_towers(&p, &mean, &sum, &rng, "N·mean (upstream N·u) vs sum (u)");
            tt_outputs_free(&none);
            tt_outputs_free(&sum);
            tt_outputs_free(&mean);
            tt_free(&p);
        }
}

/* Bitwise, against the dense f64 call: f32 inputs holding the same values, ld > cols, NULL
 * gradients (the others unchanged), grad_negatives = 0 (the partner rows of grad_b), repeated
 * calls at a size that spreads over blocks and threads, and the CLIP forward then backward. */
Test(identities, two_tower_layouts_and_calls_give_the_same_bits) {
    ct_rng rng = ct_rng_fresh();
    for (int siglip = 0; siglip <= 1; ++siglip)
        for (int r = 0; r < 3; ++r) {
            const int64_t pairs = 70, negatives = 9, dim = 24, rows_b = pairs + negatives;
            tt_problem p = random_tower(&rng, siglip, pairs, negatives, dim, (closs_reduction_t)r);
            ct_round_to_f32(p.a, pairs * dim);
            ct_round_to_f32(p.b, rows_b * dim);
            double *upstream = random_pair_upstream(&rng, &p);
            tt_outputs want = tt_outputs_new(&p), got = tt_outputs_new(&p);
            tt_run(&p, upstream, &want);
            for (int repeat = 0; repeat < 2; ++repeat) {
                tt_run(&p, upstream, &got);
                tt_assert_same_bits(&p, &got, &want, &rng, "repeated call");
            }
            ct_matrix a = ct_matrix_pack(p.a, pairs, dim, CLOSS_F32, dim + 3);
            ct_matrix b = ct_matrix_pack(p.b, rows_b, dim, CLOSS_F32, dim);
            ct_poison(got.grad_a, pairs * dim);
            cr_assert_eq(tt_call_views(&p, a.view, b.view, upstream, got.loss, got.grad_a,
                                       got.grad_b, &got.grad_scale, &got.grad_bias),
                         CLOSS_STATUS_SUCCESS);
            tt_assert_same_bits(&p, &got, &want, &rng, "f32 a with ld > cols, f32 b");
            ct_matrix_free(&a);
            ct_matrix_free(&b);
            for (unsigned mask = 0; mask < 4; ++mask) {
                tt_outputs partial = tt_outputs_new(&p);
                cr_assert_eq(tt_call(&p, upstream, partial.loss, mask & 1 ? partial.grad_a : NULL,
                                     mask & 2 ? partial.grad_b : NULL, NULL, NULL),
                             CLOSS_STATUS_SUCCESS);
                ct_assert_bitwise(partial.loss, want.loss, tt_loss_count(&p), &rng, "loss");
                if (mask & 1)
                    ct_assert_bitwise(partial.grad_a, want.grad_a, pairs * dim, &rng, "grad_a");
                if (mask & 2)
                    ct_assert_bitwise(partial.grad_b, want.grad_b, rows_b * dim, &rng, "grad_b");
                tt_outputs_free(&partial);
            }
            TT_FIELD(&p, grad_negatives) = 0;
            tt_outputs partners = tt_outputs_new(&p);
            tt_run(&p, upstream, &partners);
            tt_assert_same_bits(&p, &partners, &want, &rng, "grad_negatives = 0");
            cr_assert_eq(ct_first_unpoisoned(partners.grad_b + pairs * dim, negatives * dim), -1,
                         "grad_negatives = 0 wrote the negatives' rows");
            TT_FIELD(&p, grad_negatives) = 1;
            if (!siglip) {
                double row_stats[70], column_stats[70];
                tt_outputs split = tt_outputs_new(&p);
                const closs_matrix_t av = closs_matrix(p.a, CLOSS_F64, pairs, dim);
                const closs_matrix_t bv = closs_matrix(p.b, CLOSS_F64, rows_b, dim);
                cr_assert_eq(
                    closs_ref_clip_forward(&p.clip, av, bv, split.loss, row_stats, column_stats),
                    CLOSS_STATUS_SUCCESS);
                cr_assert_eq(closs_ref_clip_backward(&p.clip, av, bv, row_stats, column_stats,
                                                     upstream, split.grad_a, split.grad_b,
                                                     &split.grad_scale),
                             CLOSS_STATUS_SUCCESS, "%s", closs_last_error());
                tt_assert_same_bits(&p, &split, &want, &rng, "forward then backward");
                tt_outputs_free(&split);
            }
            tt_outputs_free(&partners);
            tt_outputs_free(&want);
            tt_outputs_free(&got);
            free(upstream);
            tt_free(&p);
        }
}
