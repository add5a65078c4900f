/* NT-Xent's and SupCon's anchor row ranges (closs.h, "Row ranges") in the CPU reference: the M
 * rows split into 1, 2, 3 and 7 ranges of uneven sizes must give back the full-batch answer to
 * 1e-12, both through the one-call closs_ref_ntxent/supcon with a range and through the
 * data-parallel sequence forward(range) → stats of all ranges concatenated → backward(range):
 * losses (summed for MEAN and SUM, concatenated for NONE), SupCon's valid count (summed), the
 * forward statistics and the gradient rows (concatenated). Every option is swept: normalisation,
 * reductions, τ, τ_b, NT-Xent pairs that straddle ranges, SupCon classes that span ranges or sit
 * in one, anchors without a positive. Then the range's argument checks (reference and GPU entry
 * points, which check before touching a device) and the older, smaller parameter structs.
 *
 * CLIP and SigLIP the same way: each range owns some pairs and some of the extra negatives (none
 * for some ranges), and the ranges' losses, gradient rows of a and b and shares of ∂/∂s and ∂/∂β
 * must give back the whole batch's to 1e-12; CLIP both in one call per range and through
 * forward → every range's statistics → backward. */
#include <criterion/criterion.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "closs.h"
#include "test_support.h"
#include "two_tower_support.h"

enum { ROWS = 22, DIM = 5 };

typedef struct range_case {
    int supcon;
    int normalize;
    closs_reduction_t reduction;
    double temperature, base_temperature;
    int labels; /* SupCon: 0 random classes of about 3 (span ranges), 1 blocks of 3 consecutive
                   rows (mostly inside one range), 2 singletons but three pairs (no positive) */
} range_case;

/* Everything one call (or the sum of the ranges' calls) produced. */
typedef struct results {
    double loss[ROWS]; /* 1 value, or ROWS for NONE */
    double stats[ROWS];
    double grad[ROWS * DIM];
    int64_t valid;
} results;

typedef struct problem {
    range_case c;
    ct_matrix z;
    ct_vector labels;
    double upstream[ROWS];
} problem;

static closs_ntxent_params ntxent_params(const range_case *c, int64_t begin, int64_t count) {
    closs_ntxent_params p = CLOSS_NTXENT_PARAMS_INIT;
    p.temperature = c->temperature;
    p.normalize = c->normalize;
    p.reduction = c->reduction;
    p.row_begin = begin;
    p.row_count = count;
    return p;
}

static closs_supcon_params supcon_params(const range_case *c, int64_t begin, int64_t count) {
    closs_supcon_params p = CLOSS_SUPCON_PARAMS_INIT;
    p.temperature = c->temperature;
    p.base_temperature = c->base_temperature;
    p.normalize = c->normalize;
    p.reduction = c->reduction;
    p.row_begin = begin;
    p.row_count = count;
    return p;
}

/* One range through the one-call reference (fused = 1) or forward then backward from
 * `all_stats` (the statistics of every row); writes the range's part of `out`. */
static void run_range(const problem *pr, int64_t begin, int64_t count, int fused,
                      const double *all_stats, double *loss, double *stats, double *grad,
                      int64_t *valid) {
    closs_status_t status;
    if (pr->c.supcon) {
        closs_supcon_params p = supcon_params(&pr->c, begin, count);
        if (fused) {
            status =
                closs_ref_supcon(&p, pr->z.view, pr->labels.view, pr->upstream, loss, grad, valid);
        } else if (!all_stats) {
            status = closs_ref_supcon_forward(&p, pr->z.view, pr->labels.view, loss, stats, valid);
        } else {
            status = closs_ref_supcon_backward(&p, pr->z.view, pr->labels.view, all_stats,
                                               pr->upstream, grad);
        }
    } else {
        closs_ntxent_params p = ntxent_params(&pr->c, begin, count);
        if (valid) *valid = count;
        if (fused) status = closs_ref_ntxent(&p, pr->z.view, pr->upstream, loss, grad);
        else if (!all_stats) status = closs_ref_ntxent_forward(&p, pr->z.view, loss, stats);
        else status = closs_ref_ntxent_backward(&p, pr->z.view, all_stats, pr->upstream, grad);
    }
    cr_assert_eq(status, CLOSS_STATUS_SUCCESS, "range [%lld, +%lld): %s", (long long)begin,
                 (long long)count, closs_last_error());
}

/* The whole batch cut at `cuts` (ranges [cuts[r], cuts[r + 1])), the ranges' results combined. */
static results split_run(const problem *pr, const int64_t *cuts, int ranges, int fused) {
    results out;
    ct_poison(out.loss, ROWS);
    ct_poison(out.stats, ROWS);
    ct_poison(out.grad, ROWS * DIM);
    const int none = pr->c.reduction == CLOSS_REDUCTION_NONE;
    double total = 0.0;
    out.valid = 0;
    for (int r = 0; r < ranges; ++r) {
        const int64_t begin = cuts[r], count = cuts[r + 1] - cuts[r];
        double loss[ROWS];
        int64_t valid = -1;
        run_range(pr, begin, count, fused, NULL, loss, out.stats + begin,
                  fused ? out.grad + begin * DIM : NULL, &valid);
        if (none) memcpy(out.loss + begin, loss, (size_t)count * sizeof(double));
        else total += loss[0];
        out.valid += valid;
    }
    if (!none) out.loss[0] = total;
    if (!fused) /* every rank has gathered every rank's statistics */
        for (int r = 0; r < ranges; ++r)
            run_range(pr, cuts[r], cuts[r + 1] - cuts[r], 0, out.stats, NULL, NULL,
                      out.grad + cuts[r] * DIM, NULL);
    return out;
}

static problem make_problem(ct_rng *rng, range_case c) {
    problem pr = {.c = c};
    double z[ROWS * DIM];
    ct_fill_normal(rng, z, ROWS * DIM, 1.0);
    pr.z = ct_matrix_pack(z, ROWS, DIM, CLOSS_F64, DIM + 2);
    int64_t labels[ROWS];
    for (int64_t i = 0; i < ROWS; ++i)
        labels[i] = c.labels == 0   ? ct_int(rng, 0, ROWS / 3)
                    : c.labels == 1 ? i / 3
                                    : (i < 6 ? i / 2 : 100 + i);
    pr.labels = ct_vector_label(labels, ROWS, CLOSS_I64);
    for (int64_t i = 0; i < ROWS; ++i) pr.upstream[i] = ct_uniform(rng, 0.25, 1.75);
    return pr;
}

static void check_splits(range_case c) {
    ct_rng rng = ct_rng_fresh();
    problem pr = make_problem(&rng, c);
    const int64_t whole[] = {0, ROWS};
    const results want = split_run(&pr, whole, 1, 1);
    const int losses = c.reduction == CLOSS_REDUCTION_NONE ? ROWS : 1;
    /* 2, 3 and 7 uneven ranges; NT-Xent's pairs (i, i + 11) straddle them all. */
    static const int64_t two[] = {0, 9, ROWS}, three[] = {0, 8, 15, ROWS};
    static const int64_t seven[] = {0, 1, 4, 9, 10, 16, 20, ROWS};
    const struct {
        const int64_t *cuts;
        int ranges;
    } splits[] = {{whole, 1}, {two, 2}, {three, 3}, {seven, 7}};
    for (size_t s = 0; s < sizeof splits / sizeof splits[0]; ++s)
        for (int fused = 0; fused <= 1; ++fused) {
            const results got = split_run(&pr, splits[s].cuts, splits[s].ranges, fused);
            const char *how = fused ? "one call per range" : "forward, gathered stats, backward";
            cr_expect(ct_first_mismatch(got.loss, want.loss, losses, 1e-12, 1e-12) < 0,
                      "%d ranges (%s): loss %.17g, full batch %.17g" CT_SEED_FMT, splits[s].ranges,
                      how, got.loss[0], want.loss[0], CT_SEED_ARGS(&rng));
            cr_expect(ct_first_mismatch(got.grad, want.grad, ROWS * DIM, 1e-12, 1e-12) < 0,
                      "%d ranges (%s): gradient element %lld differs" CT_SEED_FMT, splits[s].ranges,
                      how,
                      (long long)ct_first_mismatch(got.grad, want.grad, ROWS * DIM, 1e-12, 1e-12),
                      CT_SEED_ARGS(&rng));
            cr_expect_eq(got.valid, want.valid, "%d ranges (%s): valid %lld, full batch %lld",
                         splits[s].ranges, how, (long long)got.valid, (long long)want.valid);
            if (!fused) {
                const results full_forward = split_run(&pr, whole, 1, 0);
                cr_expect(ct_first_mismatch(got.stats, full_forward.stats, ROWS, 1e-12, 1e-12) < 0,
                          "%d ranges: the forward statistics differ from the full batch's",
                          splits[s].ranges);
            }
        }
    ct_matrix_free(&pr.z);
    ct_vector_free(&pr.labels);
}

Test(row_ranges, ntxent_every_option) {
    const closs_reduction_t reductions[] = {CLOSS_REDUCTION_MEAN, CLOSS_REDUCTION_SUM,
                                            CLOSS_REDUCTION_NONE};
    const double temperatures[] = {0.05, 0.5, 2.0};
    for (int normalize = 0; normalize <= 1; ++normalize)
        for (int r = 0; r < 3; ++r)
            for (int t = 0; t < 3; ++t)
                check_splits((range_case){0, normalize, reductions[r], temperatures[t], 0.0, 0});
}

Test(row_ranges, supcon_every_option) {
    const closs_reduction_t reductions[] = {CLOSS_REDUCTION_MEAN, CLOSS_REDUCTION_SUM,
                                            CLOSS_REDUCTION_NONE};
    for (int normalize = 0; normalize <= 1; ++normalize)
        for (int r = 0; r < 3; ++r)
            for (int labels = 0; labels < 3; ++labels) {
                const double tau = labels == 1 ? 0.07 : 0.5;
                const double base = normalize ? 0.0 : 0.3; /* 0: equal to τ */
                check_splits((range_case){1, normalize, reductions[r], tau, base, labels});
            }
}

/* The split is not trivially right: a range's MEAN over its own anchors (rather than the global
 * count) would differ, and so would the gradient of the range's loss alone. */
Test(row_ranges, a_range_is_not_the_whole_batch) {
    ct_rng rng = ct_rng_fresh();
    problem pr = make_problem(&rng, (range_case){1, 1, CLOSS_REDUCTION_MEAN, 0.5, 0.0, 0});
    double full = 0.0, part = 0.0, grad_full[ROWS * DIM], grad_part[9 * DIM];
    int64_t valid_full = 0, valid_part = 0;
    closs_supcon_params p = supcon_params(&pr.c, 0, 0);
    cr_assert_eq(
        closs_ref_supcon(&p, pr.z.view, pr.labels.view, NULL, &full, grad_full, &valid_full),
        CLOSS_STATUS_SUCCESS);
    p = supcon_params(&pr.c, 0, 9);
    cr_assert_eq(
        closs_ref_supcon(&p, pr.z.view, pr.labels.view, NULL, &part, grad_part, &valid_part),
        CLOSS_STATUS_SUCCESS);
    cr_expect(valid_part < valid_full, "valid %lld of %lld", (long long)valid_part,
              (long long)valid_full);
    cr_expect(part < full, "the range's share %g must be part of the mean %g", part, full);
    cr_expect(ct_first_mismatch(grad_part, grad_full, 9 * DIM, 1e-12, 1e-12) < 0,
              "the range's gradient rows are the full batch's rows");
    ct_matrix_free(&pr.z);
    ct_vector_free(&pr.labels);
}

/* ---- arguments ------------------------------------------------------------------------------ */

static void expect_invalid(closs_status_t status, const char *needle, double *loss,
                           const double *grad, int64_t grad_count) {
    cr_expect_eq(status, CLOSS_STATUS_INVALID_ARGUMENT, "status %d for %s", (int)status, needle);
    cr_expect(strstr(closs_last_error(), needle) != NULL, "message '%s' should name %s",
              closs_last_error(), needle);
    cr_expect(ct_first_unpoisoned(loss, 1) < 0, "loss written on error (%s)", needle);
    cr_expect(ct_first_unpoisoned(grad, grad_count) < 0, "grad_z written on error (%s)", needle);
}

Test(row_ranges, bad_ranges_are_refused_and_nothing_is_written) {
    ct_rng rng = ct_rng_fresh();
    problem pr = make_problem(&rng, (range_case){1, 1, CLOSS_REDUCTION_MEAN, 0.5, 0.0, 0});
    const struct {
        int64_t begin, count;
        const char *field;
    } bad[] = {{-1, 3, "row_begin = -1"},       {ROWS, 1, "row_begin = 22"},
               {5, 0, "row_count = 0"},         {0, -2, "row_count = -2"},
               {4, ROWS - 3, "row_count = 19"}, {ROWS - 1, 2, "row_count = 2"}};
    double loss[1], stats[ROWS], grad[ROWS * DIM], all_stats[ROWS] = {0};
    int64_t valid = -7;
    double z32_values[ROWS * DIM] = {0};
    ct_matrix z32 = ct_matrix_pack(z32_values, ROWS, DIM, CLOSS_F32, DIM);
    for (size_t b = 0; b < sizeof bad / sizeof bad[0]; ++b) {
        ct_poison(loss, 1);
        ct_poison(grad, ROWS * DIM);
        closs_supcon_params s = supcon_params(&pr.c, bad[b].begin, bad[b].count);
        closs_ntxent_params n = ntxent_params(&pr.c, bad[b].begin, bad[b].count);
        expect_invalid(closs_ref_supcon(&s, pr.z.view, pr.labels.view, NULL, loss, grad, &valid),
                       bad[b].field, loss, grad, ROWS * DIM);
        expect_invalid(closs_ref_supcon_forward(&s, pr.z.view, pr.labels.view, loss, stats, &valid),
                       bad[b].field, loss, grad, ROWS * DIM);
        expect_invalid(
            closs_ref_supcon_backward(&s, pr.z.view, pr.labels.view, all_stats, NULL, grad),
            bad[b].field, loss, grad, ROWS * DIM);
        expect_invalid(closs_ref_ntxent(&n, pr.z.view, NULL, loss, grad), bad[b].field, loss, grad,
                       ROWS * DIM);
        expect_invalid(closs_ref_ntxent_backward(&n, pr.z.view, all_stats, NULL, grad),
                       bad[b].field, loss, grad, ROWS * DIM);
        /* The GPU entry points check the range before the handle (NULL here) and the device. */
        expect_invalid(closs_supcon_forward(NULL, &s, z32.view, pr.labels.view, (float *)loss,
                                            (float *)stats, &valid, NULL, 0, NULL),
                       bad[b].field, loss, grad, ROWS * DIM);
        expect_invalid(closs_ntxent_backward(NULL, &n, z32.view, (const float *)all_stats, NULL,
                                             (closs_grad_t){grad, DIM}, NULL, 0, NULL),
                       bad[b].field, loss, grad, ROWS * DIM);
    }
    cr_expect_eq(valid, -7, "valid written on error");
    ct_matrix_free(&z32);
    ct_matrix_free(&pr.z);
    ct_vector_free(&pr.labels);
}

Test(row_ranges, backward_needs_stats_and_grad) {
    ct_rng rng = ct_rng_fresh();
    problem pr = make_problem(&rng, (range_case){0, 1, CLOSS_REDUCTION_SUM, 0.5, 0.0, 0});
    closs_ntxent_params n = ntxent_params(&pr.c, 2, 5);
    double loss[1], grad[ROWS * DIM], stats[ROWS] = {0};
    ct_poison(loss, 1);
    ct_poison(grad, ROWS * DIM);
    expect_invalid(closs_ref_ntxent_backward(&n, pr.z.view, NULL, NULL, grad), "stats", loss, grad,
                   ROWS * DIM);
    expect_invalid(closs_ref_ntxent_backward(&n, pr.z.view, stats, NULL, NULL), "grad_z", loss,
                   grad, ROWS * DIM);
    expect_invalid(closs_ref_ntxent_forward(&n, pr.z.view, NULL, stats), "loss", loss, grad,
                   ROWS * DIM);
    closs_supcon_params s = supcon_params(&pr.c, 2, 5);
    expect_invalid(closs_ref_supcon_backward(&s, pr.z.view, pr.labels.view, NULL, NULL, grad),
                   "stats", loss, grad, ROWS * DIM);
    ct_matrix_free(&pr.z);
    ct_vector_free(&pr.labels);
}

/* A caller built against the header before the range fields passes the smaller struct: it is
 * accepted, the library never reads past its end, and it means all rows. A size between the two
 * is refused. */
Test(row_ranges, older_parameter_structs_mean_all_rows) {
    ct_rng rng = ct_rng_fresh();
    problem pr = make_problem(&rng, (range_case){1, 1, CLOSS_REDUCTION_MEAN, 0.5, 0.0, 0});
    double want = 0.0, got = 0.0, grad_want[ROWS * DIM], grad_got[ROWS * DIM];
    closs_supcon_params s = supcon_params(&pr.c, 0, 0);
    cr_assert_eq(closs_ref_supcon(&s, pr.z.view, pr.labels.view, NULL, &want, grad_want, NULL),
                 CLOSS_STATUS_SUCCESS);
    /* The old struct, followed in memory by what a range would say: it must not be read. */
    const size_t old_size = offsetof(closs_supcon_params, row_begin);
    closs_supcon_params ranged = supcon_params(&pr.c, 3, 4);
    ranged.size = old_size;
    closs_supcon_params *old = malloc(old_size); /* exactly the old size (for the sanitizers) */
    memcpy(old, &ranged, old_size);
    cr_assert_eq(closs_ref_supcon(old, pr.z.view, pr.labels.view, NULL, &got, grad_got, NULL),
                 CLOSS_STATUS_SUCCESS, "%s", closs_last_error());
    cr_expect(ct_same_bits(got, want), "old struct: %.17g, want %.17g", got, want);
    cr_expect(ct_first_bit_difference(grad_got, grad_want, ROWS * DIM) < 0);
    ranged.size = offsetof(closs_supcon_params, row_count);
    ct_poison(&got, 1);
    cr_expect_eq(closs_ref_supcon(&ranged, pr.z.view, pr.labels.view, NULL, &got, grad_got, NULL),
                 CLOSS_STATUS_INVALID_ARGUMENT);
    cr_expect(strstr(closs_last_error(), "params->size") != NULL, "%s", closs_last_error());
    free(old);

    closs_ntxent_params n = ntxent_params(&pr.c, 0, 0), n_old = ntxent_params(&pr.c, 5, 5);
    n_old.size = offsetof(closs_ntxent_params, row_begin);
    cr_assert_eq(closs_ref_ntxent(&n, pr.z.view, NULL, &want, grad_want), CLOSS_STATUS_SUCCESS);
    cr_assert_eq(closs_ref_ntxent(&n_old, pr.z.view, NULL, &got, grad_got), CLOSS_STATUS_SUCCESS,
                 "%s", closs_last_error());
    cr_expect(ct_same_bits(got, want), "old NT-Xent struct: %.17g, want %.17g", got, want);
    cr_expect(ct_first_bit_difference(grad_got, grad_want, ROWS * DIM) < 0);
    ct_matrix_free(&pr.z);
    ct_vector_free(&pr.labels);
}

/* ---- CLIP and SigLIP: each rank's pairs and extra negatives -------------------------------- */

enum { TT_PAIRS = 13, TT_NEGATIVES = 9, TT_DIM = 4 };

/* Whole-batch outputs assembled from the ranges'. */
typedef struct tower_results {
    double loss[TT_PAIRS];
    double grad_a[TT_PAIRS * TT_DIM], grad_b[(TT_PAIRS + TT_NEGATIVES) * TT_DIM];
    double grad_scale, grad_bias;
    double row_stats[TT_PAIRS], column_stats[TT_PAIRS];
} tower_results;

static void set_range(tt_problem *p, int64_t begin, int64_t count, int64_t negatives_begin,
                      int64_t negatives_count) {
    TT_FIELD(p, row_begin) = begin;
    TT_FIELD(p, row_count) = count;
    TT_FIELD(p, negatives_begin) = negatives_begin;
    TT_FIELD(p, negatives_count) = negatives_count;
}

/* The range's outputs: through one call, or (CLIP, `stats` not NULL) through the backward from
 * every pair's statistics; `forward` (CLIP) runs only the forward, for the statistics. */
static void tower_range(const tt_problem *p, const double *upstream, int forward,
                        const tower_results *stats, double *loss, double *grad_a, double *grad_b,
                        double *grad_scale, double *grad_bias, double *row_stats,
                        double *column_stats) {
    closs_status_t status;
    const closs_matrix_t a = closs_matrix(p->a, CLOSS_F64, p->pairs, p->dim);
    const closs_matrix_t b = closs_matrix(p->b, CLOSS_F64, p->pairs + p->negatives, p->dim);
    if (forward) status = closs_ref_clip_forward(&p->clip, a, b, loss, row_stats, column_stats);
    else if (stats)
        status = closs_ref_clip_backward(&p->clip, a, b, stats->row_stats,
                                         p->clip.symmetric ? stats->column_stats : NULL, upstream,
                                         grad_a, grad_b, grad_scale);
    else status = tt_call(p, upstream, loss, grad_a, grad_b, grad_scale, grad_bias);
    cr_assert_eq(status, CLOSS_STATUS_SUCCESS, "%s, range [%lld, +%lld): %s", p->name,
                 (long long)TT_FIELD(p, row_begin), (long long)TT_FIELD(p, row_count),
                 closs_last_error());
}

/* The batch cut at `cuts` (pairs) and `negative_cuts` (extra negatives), the ranges' results
 * combined as the ranks' would be: losses summed or concatenated, gradient rows put back in
 * place, scalar shares summed. `split` 0: one call per range; 1: forward, then backward. */
static tower_results tower_split_run(tt_problem *p, const double *upstream, const int64_t *cuts,
                                     const int64_t *negative_cuts, int ranges, int split) {
    tower_results out;
    ct_poison(out.loss, TT_PAIRS);
    ct_poison(out.grad_a, TT_PAIRS * TT_DIM);
    ct_poison(out.grad_b, (TT_PAIRS + TT_NEGATIVES) * TT_DIM);
    const int none = TT_FIELD(p, reduction) == CLOSS_REDUCTION_NONE;
    const int negatives_grad = TT_FIELD(p, grad_negatives);
    double total = 0.0;
    out.grad_scale = out.grad_bias = 0.0;
    for (int pass = 0; pass < 1 + split; ++pass)
        for (int r = 0; r < ranges; ++r) {
            const int64_t begin = cuts[r], count = cuts[r + 1] - cuts[r];
            const int64_t negatives_begin = negatives_grad ? negative_cuts[r] : 0;
            const int64_t negatives_count =
                negatives_grad ? negative_cuts[r + 1] - negative_cuts[r] : 0;
            set_range(p, begin, count, negatives_begin, negatives_count);
            double loss[TT_PAIRS], grad_a[TT_PAIRS * TT_DIM];
            double grad_b[(TT_PAIRS + TT_NEGATIVES) * TT_DIM], grad_scale = 0.0, grad_bias = 0.0;
            const int forward = split && pass == 0, backward = split && pass == 1;
            tower_range(p, upstream, forward, backward ? &out : NULL, loss, grad_a, grad_b,
                        &grad_scale, &grad_bias, out.row_stats + begin, out.column_stats + begin);
            if (!backward) {
                if (none) memcpy(out.loss + begin, loss, (size_t)count * sizeof(double));
                else total += loss[0];
            }
            if (forward) continue;
            memcpy(out.grad_a + begin * TT_DIM, grad_a, (size_t)(count * TT_DIM) * sizeof(double));
            memcpy(out.grad_b + begin * TT_DIM, grad_b, (size_t)(count * TT_DIM) * sizeof(double));
            memcpy(out.grad_b + (TT_PAIRS + negatives_begin) * TT_DIM, grad_b + count * TT_DIM,
                   (size_t)(negatives_count * TT_DIM) * sizeof(double));
            out.grad_scale += grad_scale;
            out.grad_bias += grad_bias;
        }
    if (!none) out.loss[0] = total;
    set_range(p, 0, 0, 0, 0);
    return out;
}

static void check_tower_splits(tt_problem *p, ct_rng *rng) {
    double upstream[TT_PAIRS];
    for (int64_t i = 0; i < TT_PAIRS; ++i) upstream[i] = ct_uniform(rng, 0.25, 1.75);
    tower_results want;
    ct_poison(want.grad_b, (TT_PAIRS + TT_NEGATIVES) * TT_DIM);
    tower_range(p, upstream, 0, NULL, want.loss, want.grad_a, want.grad_b, &want.grad_scale,
                &want.grad_bias, NULL, NULL);
    const int64_t k = p->negatives;
    /* Uneven ranges; some own no negative, one owns all of them. */
    const int64_t whole[] = {0, TT_PAIRS}, whole_negatives[] = {0, k};
    const int64_t two[] = {0, 5, TT_PAIRS}, two_negatives[] = {0, k, k};
    const int64_t three[] = {0, 4, 9, TT_PAIRS}, three_negatives[] = {0, k / 3, k / 3, k};
    const int64_t seven[] = {0, 1, 3, 6, 7, 9, 12, TT_PAIRS};
    const int64_t seven_negatives[] = {0, 2 * k / 9, 2 * k / 9, 4 * k / 9, 5 * k / 9, k, k, k};
    const struct {
        const int64_t *cuts, *negative_cuts;
        int ranges;
    } splits[] = {{whole, whole_negatives, 1},
                  {two, two_negatives, 2},
                  {three, three_negatives, 3},
                  {seven, seven_negatives, 7}};
    const int64_t losses = TT_FIELD(p, reduction) == CLOSS_REDUCTION_NONE ? TT_PAIRS : 1;
    const int64_t b_rows = tt_grad_b_rows(p);
    for (size_t s = 0; s < sizeof splits / sizeof splits[0]; ++s)
        for (int split = 0; split <= !p->siglip; ++split) {
            const tower_results got = tower_split_run(
                p, upstream, splits[s].cuts, splits[s].negative_cuts, splits[s].ranges, split);
            char what[320];
            snprintf(what, sizeof what, "%s: %d ranges (%s)", p->name, splits[s].ranges,
                     split ? "forward, gathered statistics, backward" : "one call per range");
            ct_assert_close(got.loss, want.loss, losses, 1e-12, 1e-12, rng, what);
            ct_assert_close(got.grad_a, want.grad_a, TT_PAIRS * TT_DIM, 1e-12, 1e-12, rng, what);
            ct_assert_close(got.grad_b, want.grad_b, b_rows * TT_DIM, 1e-12, 1e-12, rng, what);
            ct_assert_close(&got.grad_scale, &want.grad_scale, 1, 1e-12, 1e-12, rng, what);
            if (p->siglip)
                ct_assert_close(&got.grad_bias, &want.grad_bias, 1, 1e-12, 1e-12, rng, what);
        }
}

Test(row_ranges, clip_every_option) {
    ct_rng rng = ct_rng_fresh();
    static const int variants[][2] = {{1, 1}, {0, 1}, {0, 0}}; /* symmetric, in_batch_negatives */
    for (int v = 0; v < 3; ++v)
        for (int with_negatives = !variants[v][1]; with_negatives <= 1; ++with_negatives)
            for (int normalize = 0; normalize <= 1; ++normalize)
                for (int r = 0; r < 3; ++r) {
                    tt_problem p = tt_new(0, TT_PAIRS, with_negatives ? TT_NEGATIVES : 0, TT_DIM);
                    p.clip.symmetric = variants[v][0];
                    p.clip.in_batch_negatives = variants[v][1];
                    p.clip.normalize = normalize;
                    p.clip.reduction = (closs_reduction_t)r;
                    p.clip.grad_negatives = (v + r) % 2;
                    p.clip.logit_scale = normalize ? 1.0 / 0.07 : 2.0;
                    tt_fill(&p, &rng);
                    tt_describe(&p);
                    check_tower_splits(&p, &rng);
                    tt_free(&p);
                }
}

Test(row_ranges, siglip_every_option) {
    ct_rng rng = ct_rng_fresh();
    for (int with_negatives = 0; with_negatives <= 1; ++with_negatives)
        for (int normalize = 0; normalize <= 1; ++normalize)
            for (int r = 0; r < 3; ++r)
                for (int grad_negatives = 0; grad_negatives <= 1; ++grad_negatives) {
                    tt_problem p = tt_new(1, TT_PAIRS, with_negatives ? TT_NEGATIVES : 0, TT_DIM);
                    p.sig.normalize = normalize;
                    p.sig.reduction = (closs_reduction_t)r;
                    p.sig.grad_negatives = grad_negatives;
                    p.sig.logit_scale = normalize ? 10.0 : 2.0;
                    p.sig.logit_bias = normalize ? -10.0 : 0.5;
                    tt_fill(&p, &rng);
                    tt_describe(&p);
                    check_tower_splits(&p, &rng);
                    tt_free(&p);
                }
}

/* Bad ranges: INVALID_ARGUMENT naming the field, and nothing written, from every CLIP and SigLIP
 * reference entry point. */
Test(row_ranges, bad_two_tower_ranges_are_refused_and_nothing_is_written) {
    ct_rng rng = ct_rng_fresh();
    const struct {
        int64_t begin, count, negatives_begin, negatives_count;
        int grad_negatives;
        const char *field;
    } bad[] = {
        {-1, 3, 0, 0, 1, "row_begin = -1"},
        {TT_PAIRS, 1, 0, 0, 1, "row_begin = 13"},
        {5, 0, 0, 0, 1, "row_count = 0"},
        {4, TT_PAIRS - 3, 0, 0, 1, "row_count = 10"},
        {2, 3, -1, 2, 1, "negatives_begin = -1"},
        {2, 3, TT_NEGATIVES + 1, 0, 1, "negatives_begin = 10"},
        {2, 3, 4, -1, 1, "negatives_count = -1"},
        {2, 3, 4, TT_NEGATIVES - 3, 1, "negatives_count = 6"},
        {2, 3, 0, 2, 0, "negatives_count = 2 with grad_negatives = 0"},
        {0, 0, 0, 1, 1, "negatives_count = 1: a whole-batch call"},
        {0, 0, 3, 0, 1, "negatives_begin = 3"},
    };
    double loss[TT_PAIRS], grad[(TT_PAIRS + TT_NEGATIVES) * TT_DIM], scale, bias;
    double stats[TT_PAIRS] = {0};
    for (int siglip = 0; siglip <= 1; ++siglip) {
        tt_problem p = tt_new(siglip, TT_PAIRS, TT_NEGATIVES, TT_DIM);
        tt_fill(&p, &rng);
        const closs_matrix_t a = closs_matrix(p.a, CLOSS_F64, TT_PAIRS, TT_DIM);
        const closs_matrix_t b = closs_matrix(p.b, CLOSS_F64, TT_PAIRS + TT_NEGATIVES, TT_DIM);
        for (size_t k = 0; k < sizeof bad / sizeof bad[0]; ++k) {
            set_range(&p, bad[k].begin, bad[k].count, bad[k].negatives_begin,
                      bad[k].negatives_count);
            TT_FIELD(&p, grad_negatives) = bad[k].grad_negatives;
            for (int entry = 0; entry < (siglip ? 1 : 3); ++entry) {
                ct_poison(loss, TT_PAIRS);
                ct_poison(grad, (TT_PAIRS + TT_NEGATIVES) * TT_DIM);
                ct_poison(&scale, 1);
                ct_poison(&bias, 1);
                closs_status_t status =
                    entry == 0
                        ? tt_call(&p, NULL, loss, grad, grad + TT_PAIRS * TT_DIM, &scale, &bias)
                    : entry == 1 ? closs_ref_clip_forward(&p.clip, a, b, loss, stats, stats)
                                 : closs_ref_clip_backward(&p.clip, a, b, stats, stats, NULL, grad,
                                                           NULL, &scale);
                expect_invalid(status, bad[k].field, loss, grad,
                               (TT_PAIRS + TT_NEGATIVES) * TT_DIM);
                cr_expect(ct_first_unpoisoned(&scale, 1) < 0 && ct_first_unpoisoned(&bias, 1) < 0,
                          "%s: a scalar gradient was written on error", bad[k].field);
            }
        }
        tt_free(&p);
    }
}
