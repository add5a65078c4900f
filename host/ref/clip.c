/* CLIP (symmetric InfoNCE; Radford et al. 2021) with hard negatives and queues, CPU reference.
 *
 *   x_ij = s·c_ij,  c_ij = â_i·b̂_j,  h = ½ when symmetric, else 1;
 *   n_i = log Σ_{j∈C(i), j≠i} exp(x_ij)  (row i's negatives),  m_j = log Σ_{k<N, k≠j} exp(x_kj),
 *   ℓ_i = h·softplus(n_i − x_ii) + [symmetric]·h·softplus(m_i − x_ii),
 * which is −x_ii + log Σ_{j∈C(i)} exp(x_ij) (and the column's) without the cancellation of two
 * large numbers: a confident pair (x_ii far above its negatives) keeps its small loss and
 * gradient to double precision. With r_i = x_ii + softplus(n_i − x_ii) and q_j likewise (the full
 * log-sum-exps) and w_i the weight of ℓ_i in the reduced loss (the upstream gradient included),
 *   G_ij = ∂L/∂x_ij = h·w_i·exp(x_ij − r_i) + [symmetric, j < N]·h·w_j·exp(x_ij − q_j)  (j ≠ i),
 *   G_ii = −h·w_i·σ(n_i − x_ii) − [symmetric]·h·w_i·σ(m_i − x_ii)  (−w·(1 − softmax), exactly),
 * for j ∈ C(i) (0 elsewhere), every exponent ≤ 0. Row i of G gives ∂/∂â_i and row i's share of
 * ∂/∂s = Σ G_ij·c_ij; column j gives ∂/∂b̂_j (two_tower.h). With in_batch_negatives = 0 (and so
 * symmetric = 0), C(i) = {i} ∪ {j ≥ N}: a row of a walks only its partner and the extra negatives,
 * and a partner's column meets only its own row. n and m are the statistics the forward saves.
 * With a row range (closs.h, "Two-tower row ranges") the loss covers the range's pairs over the
 * global N, and the gradients the range's rows: they need every pair's n, m and weight.
 */
#include <math.h>
#include <string.h>

#include "error.h"
#include "params.h"
#include "ref_common.h"
#include "softmax_contrastive.h"
#include "two_tower.h"
#include "validate.h"

/* One call: the whole loss (closs_ref_clip), the forward (loss and the range's statistics) or the
 * backward (gradients from the given statistics of all pairs). */
typedef struct clip_call {
    int backward;
    double *loss;                                       /* NULL in a backward */
    double *row_stats, *column_stats;                   /* forward: the range's, may be NULL */
    const double *given_row_stats, *given_column_stats; /* backward: every pair's */
    const double *upstream;
    double *grad_a, *grad_b, *grad_logit_scale;
} clip_call;

static closs_status_t check_arguments(const closs_clip_params *params, closs_matrix_t a,
                                      closs_matrix_t b, const clip_call *call,
                                      closs_two_tower_range *range) {
    CLOSS_TRY(closs_check_clip_params(params));
    if (!call->backward) {
        CLOSS_TRY(closs_check_not_null("loss", call->loss));
    } else {
        CLOSS_TRY(closs_check_not_null("row_stats", call->given_row_stats));
        if (params->symmetric)
            CLOSS_TRY(
                closs_check_not_null("column_stats (symmetric = 1)", call->given_column_stats));
        if (!call->grad_a && !call->grad_b && !call->grad_logit_scale)
            return closs_fail(CLOSS_STATUS_INVALID_ARGUMENT,
                              "grad_a, grad_b and grad_logit_scale are all NULL: a backward "
                              "computes at least one of them");
    }
    const closs_two_tower_inputs inputs = CLOSS_TWO_TOWER_INPUTS(params, a, b);
    return closs_two_tower_check(&inputs, range);
}

/* What the visits read and write; the arrays hold every pair's values. */
typedef struct clip_state {
    int symmetric;
    int64_t pairs;
    double scale, half;
    const double *row_lse, *column_lse;         /* r_i and q_j */
    const double *row_sigmoid, *column_sigmoid; /* σ(n_i − x_ii), σ(m_i − x_ii) */
    const double *weights;
    double *scale_share; /* per row of a: Σ_j G_ij·c_ij */
} clip_state;

static double clip_gradient(const clip_state *state, int64_t i, int64_t j, double cosine) {
    const double h = state->half;
    if (i == j) {
        double g = -h * state->weights[i] * state->row_sigmoid[i];
        if (state->symmetric) g -= h * state->weights[i] * state->column_sigmoid[i];
        return g;
    }
    const double x = state->scale * cosine;
    double g = h * state->weights[i] * exp(x - state->row_lse[i]);
    if (state->symmetric && j < state->pairs)
        g += h * state->weights[j] * exp(x - state->column_lse[j]);
    return g;
}

/* A row i of a meeting row j of b. */
static double a_row_visit(void *context, int64_t i, int64_t j, double cosine) {
    clip_state *state = context;
    const double g = clip_gradient(state, i, j, cosine);
    state->scale_share[i] += g * cosine;
    return state->scale * g;
}

/* A row j of b meeting row i of a. */
static double b_row_visit(void *context, int64_t j, int64_t i, double cosine) {
    return ((const clip_state *)context)->scale * clip_gradient(context, i, j, cosine);
}

/* The walk of rows of a over C(i), or of b's partner rows over the rows of a that have them in
 * C(i): every row, or only their own without in-batch negatives. */
static closs_two_tower_walk walk_of(const closs_two_tower *towers, int in_batch, int b_rows,
                                    closs_two_tower_visit visit, void *context) {
    closs_two_tower_walk walk = {
        .rows = b_rows ? towers->b_hat : towers->a_hat,
        .others = b_rows ? towers->a_hat : towers->b_hat,
        .dim = towers->dim,
        .partner_first = !in_batch,
        .visit = visit,
        .context = context,
    };
    if (in_batch) {
        walk.others_end = b_rows ? towers->pairs : towers->rows_b;
    } else if (!b_rows) {
        walk.others_begin = towers->pairs; /* the partner, then the extra negatives */
        walk.others_end = towers->rows_b;
    } /* else: the partner alone */
    return walk;
}

/* n_i (and m_i when symmetric) for the pairs [begin, begin + count): −∞ without a negative. */
static void statistics(const closs_two_tower *towers, const closs_clip_params *params,
                       int64_t begin, int64_t count, double *row_negatives,
                       double *column_negatives, double *sums) {
    for (int side = 0; side < 1 + params->symmetric; ++side) {
        double *lse = side ? column_negatives : row_negatives;
        for (int64_t i = begin; i < begin + count; ++i) {
            lse[i] = -INFINITY;
            sums[i] = 0.0;
        }
        closs_two_tower_lse accumulators = {params->logit_scale, lse, sums};
        /* The columns m_j run over every row of a, with or without in-batch negatives in C(i). */
        closs_two_tower_walk walk = walk_of(towers, side ? 1 : params->in_batch_negatives, side,
                                            closs_two_tower_lse_visit, &accumulators);
        closs_two_tower_walk_rows(&walk, begin, count, NULL);
        for (int64_t i = begin; i < begin + count; ++i) lse[i] += log(sums[i]);
    }
}

static void gradients(const closs_two_tower *towers, const closs_clip_params *params,
                      const clip_call *call, closs_two_tower_range range, clip_state *state) {
    const int64_t dim = towers->dim, pairs = towers->pairs;
    const int in_batch = params->in_batch_negatives;
    if (call->grad_a || call->grad_logit_scale) {
        if (call->grad_a) memset(call->grad_a, 0, (size_t)(range.count * dim) * sizeof(double));
        for (int64_t i = range.begin; i < range.begin + range.count; ++i)
            state->scale_share[i] = 0.0;
        closs_two_tower_walk walk = walk_of(towers, in_batch, 0, a_row_visit, state);
        closs_two_tower_walk_rows(&walk, range.begin, range.count, call->grad_a);
        if (call->grad_a)
            closs_two_tower_embed_backward(towers, 0, range.begin, range.count, call->grad_a);
        if (call->grad_logit_scale)
            *call->grad_logit_scale =
                closs_two_tower_sum(state->scale_share, range.begin, range.count);
    }
    if (call->grad_b) {
        const int64_t rows = range.count + range.negatives_count;
        double *negatives_grad = call->grad_b + range.count * dim;
        memset(call->grad_b, 0, (size_t)(rows * dim) * sizeof(double));
        closs_two_tower_walk walk = walk_of(towers, in_batch, 1, b_row_visit, state);
        closs_two_tower_walk_rows(&walk, range.begin, range.count, call->grad_b);
        closs_two_tower_embed_backward(towers, 1, range.begin, range.count, call->grad_b);
        /* An extra negative j ≥ N lies in every C(i). */
        walk = walk_of(towers, 1, 1, b_row_visit, state);
        closs_two_tower_walk_rows(&walk, pairs + range.negatives_begin, range.negatives_count,
                                  negatives_grad);
        closs_two_tower_embed_backward(towers, 1, pairs + range.negatives_begin,
                                       range.negatives_count, negatives_grad);
    }
}

static closs_status_t clip(const closs_clip_params *params, closs_matrix_t a, closs_matrix_t b,
                           const clip_call *call) {
    closs_clear_error();
    closs_two_tower_range range = {0, 0, 0, 0};
    CLOSS_TRY(check_arguments(params, a, b, call, &range));
    /* Per pair: x_ii, n, m, the running sums of either, r, q, σ(n − x_ii), σ(m − x_ii), the
     * weights, the losses and the scale shares. */
    enum {
        POSITIVES,
        ROW_NEGATIVES,
        COLUMN_NEGATIVES,
        SUMS,
        ROW_LSE,
        COLUMN_LSE,
        ROW_SIGMOID,
        COLUMN_SIGMOID,
        WEIGHTS,
        LOSSES,
        SCALE_SHARES,
        VALUES
    };
    closs_two_tower towers;
    CLOSS_TRY(closs_two_tower_load(a, b, params->normalize, VALUES, &towers));
    const int64_t pairs = towers.pairs, dim = towers.dim, begin = range.begin;
    const int64_t end = range.begin + range.count;
    double *values[VALUES];
    for (int v = 0; v < VALUES; ++v) values[v] = towers.scratch + v * pairs;
    const int gradient = call->grad_a || call->grad_b || call->grad_logit_scale;
    const double scale = params->logit_scale, half = params->symmetric ? 0.5 : 1.0;

    /* A gradient needs every pair's values; the loss only the range's. */
    const int64_t first = gradient ? 0 : begin, last = gradient ? pairs : end;
    for (int64_t i = first; i < last; ++i)
        values[POSITIVES][i] =
            scale * closs_ref_dot(towers.a_hat + i * dim, towers.b_hat + i * dim, dim);
    if (call->backward) {
        memcpy(values[ROW_NEGATIVES], call->given_row_stats, (size_t)pairs * sizeof(double));
        if (params->symmetric)
            memcpy(values[COLUMN_NEGATIVES], call->given_column_stats,
                   (size_t)pairs * sizeof(double));
    } else {
        statistics(&towers, params, first, last - first, values[ROW_NEGATIVES],
                   values[COLUMN_NEGATIVES], values[SUMS]);
    }
    if (call->loss) {
        for (int64_t i = begin; i < end; ++i) {
            double loss =
                half * closs_ref_softplus(values[ROW_NEGATIVES][i] - values[POSITIVES][i]);
            if (params->symmetric)
                loss +=
                    half * closs_ref_softplus(values[COLUMN_NEGATIVES][i] - values[POSITIVES][i]);
            values[LOSSES][i] = loss;
        }
        /* MEAN divides by all N pairs, whatever the range. */
        closs_ref_reduce(params->reduction, values[LOSSES] + begin, range.count, pairs, call->loss);
    }
    if (call->row_stats)
        memcpy(call->row_stats, values[ROW_NEGATIVES] + begin,
               (size_t)range.count * sizeof(double));
    if (call->column_stats && params->symmetric)
        memcpy(call->column_stats, values[COLUMN_NEGATIVES] + begin,
               (size_t)range.count * sizeof(double));
    if (gradient) {
        for (int64_t i = 0; i < pairs; ++i) {
            const double x = values[POSITIVES][i];
            values[WEIGHTS][i] = closs_ref_row_weight(params->reduction, call->upstream, i, pairs);
            for (int side = 0; side < 1 + params->symmetric; ++side) {
                const double t = values[side ? COLUMN_NEGATIVES : ROW_NEGATIVES][i] - x;
                values[side ? COLUMN_LSE : ROW_LSE][i] = x + closs_ref_softplus(t);
                values[side ? COLUMN_SIGMOID : ROW_SIGMOID][i] = closs_ref_sigmoid(t);
            }
        }
        clip_state state = {
            .symmetric = params->symmetric,
            .pairs = pairs,
            .scale = scale,
            .half = half,
            .row_lse = values[ROW_LSE],
            .column_lse = values[COLUMN_LSE],
            .row_sigmoid = values[ROW_SIGMOID],
            .column_sigmoid = values[COLUMN_SIGMOID],
            .weights = values[WEIGHTS],
            .scale_share = values[SCALE_SHARES],
        };
        gradients(&towers, params, call, range, &state);
    }
    closs_two_tower_free(&towers);
    return CLOSS_STATUS_SUCCESS;
}

closs_status_t closs_ref_clip(const closs_clip_params *params, closs_matrix_t a, closs_matrix_t b,
                              const double *upstream, double *loss, double *grad_a, double *grad_b,
                              double *grad_logit_scale) {
    const clip_call call = {.loss = loss,
                            .upstream = upstream,
                            .grad_a = grad_a,
                            .grad_b = grad_b,
                            .grad_logit_scale = grad_logit_scale};
    return clip(params, a, b, &call);
}

closs_status_t closs_ref_clip_forward(const closs_clip_params *params, closs_matrix_t a,
                                      closs_matrix_t b, double *loss, double *row_stats,
                                      double *column_stats) {
    const clip_call call = {.loss = loss, .row_stats = row_stats, .column_stats = column_stats};
    return clip(params, a, b, &call);
}

closs_status_t closs_ref_clip_backward(const closs_clip_params *params, closs_matrix_t a,
                                       closs_matrix_t b, const double *row_stats,
                                       const double *column_stats, const double *upstream,
                                       double *grad_a, double *grad_b, double *grad_logit_scale) {
    const clip_call call = {.backward = 1,
                            .given_row_stats = row_stats,
                            .given_column_stats = column_stats,
                            .upstream = upstream,
                            .grad_a = grad_a,
                            .grad_b = grad_b,
                            .grad_logit_scale = grad_logit_scale};
    return clip(params, a, b, &call);
}
