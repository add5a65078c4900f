/* The GPU's per-row mathematics (cuda/rowwise_math.h), run on the CPU against the double-precision
 * reference: the loss and every gradient, for each row-wise loss and option, on fresh random
 * inputs. The kernels only add the reductions over D and the writes around this code. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "closs.h"
#include "rowwise_math.h"

enum { ROWS = 32, DIM = 13 };

/* Criterion may run each parameter in a fresh process (exec, not fork), where the parent's
 * pointers mean nothing: the label is stored in the struct, not pointed to. */
typedef struct math_case {
    closs_row_params params;
    char label[48];
} math_case;

static double uniform(uint64_t *state) {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return (double)((*state * 0x2545F4914F6CDD1Dull) >> 11) * 0x1.0p-53;
}

/* The statistics as the kernel forms them: float inputs, float accumulation. */
static closs_row_stats row_stats(const float *const rows[3], int count) {
    closs_row_stats s = {{{0}}, {0}};
    for (int c = 0; c < DIM; ++c) {
        for (int j = 0; j < count; ++j)
            for (int k = 0; k < count; ++k) s.dot[j][k] += rows[j][c] * rows[k][c];
        for (int j = 0; j < count; ++j)
            for (int k = j + 1; k < count; ++k) {
                float d = rows[j][c] - rows[k][c];
                s.sqdiff[closs_rm_pair_index(j, k)] += d * d;
            }
    }
    return s;
}

/* Sets every statistic outside `needs` to NaN: a loss that read one would turn NaN. */
static void poison_unneeded(closs_row_stats *s, unsigned needs) {
    for (int j = 0; j < 3; ++j)
        for (int k = 0; k < 3; ++k)
            if (!(needs & closs_rm_dot_bit(j, k))) s->dot[j][k] = NAN;
    for (int p = 0; p < 3; ++p)
        if (!(needs & closs_rm_sqdiff_bit(p))) s->sqdiff[p] = NAN;
}

/* The kernels write only the gradient terms `needs` allows (rowwise_kernels.cuh,
 * write_gradients): self[k][j] with x_k·x_j read, diff[k][p] with pair p read and k in it. Any
 * other coefficient must be exactly zero, or the kernels would drop it. */
static void expect_structural_zeros(const closs_row_grad *g, unsigned needs, const char *label) {
    static const int pair_rows[3][2] = {{0, 1}, {0, 2}, {1, 2}};
    for (int k = 0; k < 3; ++k) {
        for (int j = 0; j < 3; ++j)
            if (!(needs & closs_rm_dot_bit(k, j)))
                cr_expect(g->self[k][j] == 0.0f, "%s: self[%d][%d] = %g, not read by the kernels",
                          label, k, j, g->self[k][j]);
        for (int p = 0; p < 3; ++p)
            if (!(needs & closs_rm_sqdiff_bit(p)) || (k != pair_rows[p][0] && k != pair_rows[p][1]))
                cr_expect(g->diff[k][p] == 0.0f, "%s: diff[%d][%d] = %g, not read by the kernels",
                          label, k, p, g->diff[k][p]);
    }
}

/* |a − b| ≤ 1e-4·(|b| + scale) + 2e-6. The absolute part covers float's rounding of terms of
 * size one (the inputs lie in [−1, 1]) that cancel near a hinge's kink. */
static void expect_close(double got, double want, double scale, const char *what, int row,
                         const char *label, uint64_t seed) {
    cr_expect(fabs(got - want) <= 1e-4 * (fabs(want) + scale) + 2e-6,
              "%s: %s row %d: got %.9g want %.9g (seed %llu)", label, what, row, got, want,
              (unsigned long long)seed);
}

static closs_status_t reference(const closs_row_params *p, const float *x[3], const float *y,
                                double *loss, double *grads[3]) {
    closs_matrix_t m[3];
    for (int k = 0; k < 3; ++k) m[k] = closs_matrix(x[k], CLOSS_F32, ROWS, DIM);
    closs_vector_t labels = closs_vector(y, CLOSS_F32, ROWS);
    if (p->kind == CLOSS_ROW_PAIR) {
        closs_pair_params q = CLOSS_PAIR_PARAMS_INIT;
        q.margin = p->margin, q.distance = p->distance, q.reduction = CLOSS_REDUCTION_NONE;
        return closs_ref_pair(&q, m[0], m[1], labels, NULL, loss, grads[0], grads[1]);
    }
    if (p->kind == CLOSS_ROW_TRIPLET) {
        closs_triplet_params q = CLOSS_TRIPLET_PARAMS_INIT;
        q.margin = p->margin, q.distance = p->distance, q.swap = p->swap;
        q.reduction = CLOSS_REDUCTION_NONE;
        return closs_ref_triplet(&q, m[0], m[1], m[2], NULL, loss, grads[0], grads[1], grads[2]);
    }
    closs_cosine_params q = CLOSS_COSINE_PARAMS_INIT;
    q.margin = p->margin, q.squared = p->squared, q.reduction = CLOSS_REDUCTION_NONE;
    return closs_ref_cosine(&q, m[0], m[1], labels, NULL, loss, grads[0], grads[1]);
}

#define PAIR(distance, margin)                                                                     \
    { {CLOSS_ROW_PAIR, distance, margin, 0, 0}, "pair " #distance " " #margin }
#define TRIPLET(distance, margin, swap)                                                            \
    { {CLOSS_ROW_TRIPLET, distance, margin, swap, 0}, "triplet " #distance " " #margin " " #swap }
#define COSINE(margin, squared)                                                                    \
    {                                                                                              \
        {CLOSS_ROW_COSINE, CLOSS_DISTANCE_COSINE, margin, 0, squared},                             \
            "cosine " #margin " " #squared                                                         \
    }

ParameterizedTestParameters(rowwise_math, matches_reference) {
    static math_case cases[] = {
        PAIR(CLOSS_DISTANCE_EUCLIDEAN, 0.0f),
        PAIR(CLOSS_DISTANCE_EUCLIDEAN, 4.0f),
        PAIR(CLOSS_DISTANCE_COSINE, 0.5f),
        PAIR(CLOSS_DISTANCE_COSINE, 2.0f),
        TRIPLET(CLOSS_DISTANCE_SQEUCLIDEAN, 1.0f, 0),
        TRIPLET(CLOSS_DISTANCE_SQEUCLIDEAN, 1.0f, 1),
        TRIPLET(CLOSS_DISTANCE_EUCLIDEAN, 0.5f, 0),
        TRIPLET(CLOSS_DISTANCE_EUCLIDEAN, 0.5f, 1),
        TRIPLET(CLOSS_DISTANCE_COSINE, 0.2f, 0),
        TRIPLET(CLOSS_DISTANCE_COSINE, -0.1f, 1),
        COSINE(0.0f, 0),
        COSINE(0.0f, 1),
        COSINE(-0.5f, 0),
        COSINE(0.3f, 1),
    };
    return cr_make_param_array(math_case, cases, sizeof cases / sizeof cases[0]);
}

ParameterizedTest(math_case *test, rowwise_math, matches_reference) {
    uint64_t seed = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)test, state = seed | 1;
    static float x[3][ROWS * DIM], y[ROWS];
    static double loss[ROWS], grads[3][ROWS * DIM];
    for (int k = 0; k < 3; ++k)
        for (int e = 0; e < ROWS * DIM; ++e) x[k][e] = (float)(2.0 * uniform(&state) - 1.0);
    for (int i = 0; i < ROWS; ++i) y[i] = i % 3 == 2 ? (float)uniform(&state) : (float)(i % 2);
    const float *inputs[3] = {x[0], x[1], x[2]};
    double *grad_rows[3] = {grads[0], grads[1], grads[2]};
    cr_assert_eq(reference(&test->params, inputs, y, loss, grad_rows), CLOSS_STATUS_SUCCESS, "%s",
                 closs_last_error());

    const int count = test->params.kind == CLOSS_ROW_TRIPLET ? 3 : 2;
    const unsigned needs =
        closs_rm_needs(test->params.kind, test->params.distance, test->params.swap);
    for (int i = 0; i < ROWS; ++i) {
        const float *rows[3] = {x[0] + i * DIM, x[1] + i * DIM, x[2] + i * DIM};
        closs_row_stats s = row_stats(rows, count);
        /* The kernels reduce only the statistics closs_rm_needs names: the others are NaN here. */
        poison_unneeded(&s, needs);
        closs_row_grad g = closs_row_loss_grad(&test->params, &s, y[i]);
        expect_structural_zeros(&g, needs, test->label);
        expect_close(g.loss, loss[i], 0.0, "loss", i, test->label, seed);
        for (int k = 0; k < count; ++k) {
            double scale = 0.0;
            for (int c = 0; c < DIM; ++c) scale = fmax(scale, fabs(grads[k][i * DIM + c]));
            for (int c = 0; c < DIM; ++c) {
                double value = 0.0;
                for (int j = 0; j < count; ++j) value += (double)g.self[k][j] * rows[j][c];
                for (int a = 0; a < count; ++a)
                    for (int b = a + 1; b < count; ++b)
                        value += (double)g.diff[k][closs_rm_pair_index(a, b)] *
                                 ((double)rows[a][c] - rows[b][c]);
                char what[32];
                snprintf(what, sizeof what, "grad %d[%d]", k, c);
                expect_close(value, grads[k][i * DIM + c], scale, what, i, test->label, seed);
            }
        }
    }
}

Test(rowwise_math, conventions_at_kinks) {
    /* x0 == x1: the Euclidean distance is 0 and its gradient taken as 0, never NaN. */
    const float row[4] = {0.5f, -1.0f, 2.0f, 0.25f};
    const float *rows[3] = {row, row, row};
    closs_row_stats s = {{{0}}, {0}};
    for (int c = 0; c < 4; ++c)
        for (int j = 0; j < 3; ++j)
            for (int k = 0; k < 3; ++k) s.dot[j][k] += rows[j][c] * rows[k][c];
    closs_row_params pair = {CLOSS_ROW_PAIR, CLOSS_DISTANCE_EUCLIDEAN, 1.0f, 0, 0};
    closs_row_grad g = closs_row_loss_grad(&pair, &s, 0.0f);
    cr_expect_float_eq(g.loss, 1.0f, 1e-6f);
    cr_expect(g.diff[0][CLOSS_PAIR_01] == 0.0f && g.diff[1][CLOSS_PAIR_01] == 0.0f);
    /* A triplet hinge exactly at 0 (d⁺ = d⁻ = 0, α = 0) has gradient 0. */
    closs_row_params triplet = {CLOSS_ROW_TRIPLET, CLOSS_DISTANCE_EUCLIDEAN, 0.0f, 0, 0};
    g = closs_row_loss_grad(&triplet, &s, 0.0f);
    cr_expect(g.loss == 0.0f);
    for (int k = 0; k < 3; ++k)
        for (int p = 0; p < 3; ++p) cr_expect(g.diff[k][p] == 0.0f && g.self[k][p] == 0.0f);
    /* What each loss reads: the fewest statistics (pair Euclidean: one; triplet with swap: three).
     */
    cr_expect_eq(closs_rm_needs(CLOSS_ROW_PAIR, CLOSS_DISTANCE_EUCLIDEAN, 0),
                 closs_rm_sqdiff_bit(CLOSS_PAIR_01));
    cr_expect_eq(closs_rm_needs(CLOSS_ROW_TRIPLET, CLOSS_DISTANCE_SQEUCLIDEAN, 1),
                 closs_rm_sqdiff_bit(0) | closs_rm_sqdiff_bit(1) | closs_rm_sqdiff_bit(2));
    cr_expect_eq(closs_rm_needs(CLOSS_ROW_COSINE, CLOSS_DISTANCE_COSINE, 0),
                 closs_rm_dot_bit(0, 0) | closs_rm_dot_bit(1, 1) | closs_rm_dot_bit(0, 1));
    /* NaN statistics give a NaN loss through the hinges. */
    s.sqdiff[CLOSS_PAIR_01] = NAN;
    g = closs_row_loss_grad(&pair, &s, 0.0f);
    cr_expect(isnan(g.loss));
}
