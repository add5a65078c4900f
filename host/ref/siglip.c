/* SigLIP (sigmoid loss; Zhai et al. 2023) with extra negatives, CPU reference.
 *
 *   x_ij = s·c_ij + β,  c_ij = â_i·b̂_j,  z_ij = 1 if i = j, else −1,
 *   ℓ_i = Σ_{j<N+K} softplus(t_ij),  t_ij = −z_ij·x_ij   (−log σ(z·x) = softplus(−z·x)),
 *   G_ij = ∂L/∂x_ij = −z_ij·w_i·σ(t_ij),   ∂L/∂β = Σ G_ij,
 * with w_i the weight of ℓ_i in the reduced loss; the rest as in two_tower.h. Softplus and σ are
 * evaluated in forms that never overflow (exp of a non-positive number only), so any finite s and
 * β give finite results. There are no statistics: row i of a gives ℓ_i, ∂/∂â_i and row i's share
 * of ∂/∂s and ∂/∂β in one walk; a column of b needs only the weights of all pairs.
 */
#include <math.h>
#include <string.h>

#include "error.h"
#include "params.h"
#include "ref_common.h"
#include "two_tower.h"
#include "validate.h"

typedef struct siglip_state {
    double scale, bias;
    const double *weights;                     /* every pair's */
    double *losses, *scale_share, *bias_share; /* per row of a */
} siglip_state;

/* G_ij; *t receives t_ij. */
static double siglip_gradient(const siglip_state *state, int64_t i, int64_t j, double cosine,
                              double *t) {
    const double x = state->scale * cosine + state->bias;
    const double z = i == j ? 1.0 : -1.0;
    *t = -z * x;
    return -z * state->weights[i] * closs_ref_sigmoid(*t);
}

/* A row i of a meeting row j of b. */
static double a_row_visit(void *context, int64_t i, int64_t j, double cosine) {
    siglip_state *state = context;
    double t;
    const double g = siglip_gradient(state, i, j, cosine, &t);
    state->losses[i] += closs_ref_softplus(t);
    state->scale_share[i] += g * cosine;
    state->bias_share[i] += g;
    return state->scale * g;
}

/* A row j of b meeting row i of a. */
static double b_row_visit(void *context, int64_t j, int64_t i, double cosine) {
    double t;
    return ((const siglip_state *)context)->scale * siglip_gradient(context, i, j, cosine, &t);
}

closs_status_t closs_ref_siglip(const closs_siglip_params *params, closs_matrix_t a,
                                closs_matrix_t b, const double *upstream, double *loss,
                                double *grad_a, double *grad_b, double *grad_logit_scale,
                                double *grad_logit_bias) {
    closs_clear_error();
    CLOSS_TRY(closs_check_siglip_params(params));
    CLOSS_TRY(closs_check_not_null("loss", loss));
    const closs_two_tower_inputs inputs = CLOSS_TWO_TOWER_INPUTS(params, a, b);
    closs_two_tower_range range = {0, 0, 0, 0};
    CLOSS_TRY(closs_two_tower_check(&inputs, &range));
    enum { WEIGHTS, LOSSES, SCALE_SHARES, BIAS_SHARES, VALUES };
    closs_two_tower towers;
    CLOSS_TRY(closs_two_tower_load(a, b, params->normalize, VALUES, &towers));
    const int64_t pairs = towers.pairs, dim = towers.dim, begin = range.begin;
    double *values[VALUES];
    for (int v = 0; v < VALUES; ++v) values[v] = towers.scratch + v * pairs;
    for (int64_t i = 0; i < pairs; ++i)
        values[WEIGHTS][i] = closs_ref_row_weight(params->reduction, upstream, i, pairs);
    for (int v = LOSSES; v < VALUES; ++v) memset(values[v], 0, (size_t)pairs * sizeof(double));
    siglip_state state = {
        .scale = params->logit_scale,
        .bias = params->logit_bias,
        .weights = values[WEIGHTS],
        .losses = values[LOSSES],
        .scale_share = values[SCALE_SHARES],
        .bias_share = values[BIAS_SHARES],
    };

    /* Rows of a: the loss, ∂/∂a and the scalars' shares, each row over every row of b. */
    closs_two_tower_walk walk = {.rows = towers.a_hat,
                                 .others = towers.b_hat,
                                 .dim = dim,
                                 .others_end = towers.rows_b,
                                 .visit = a_row_visit,
                                 .context = &state};
    if (grad_a) memset(grad_a, 0, (size_t)(range.count * dim) * sizeof(double));
    closs_two_tower_walk_rows(&walk, begin, range.count, grad_a);
    if (grad_a) closs_two_tower_embed_backward(&towers, 0, begin, range.count, grad_a);
    /* MEAN divides by all N pairs, whatever the range. */
    closs_ref_reduce(params->reduction, values[LOSSES] + begin, range.count, pairs, loss);
    if (grad_logit_scale)
        *grad_logit_scale = closs_two_tower_sum(values[SCALE_SHARES], begin, range.count);
    if (grad_logit_bias)
        *grad_logit_bias = closs_two_tower_sum(values[BIAS_SHARES], begin, range.count);

    /* Rows of b (the range's partners, then its extra negatives), each over every row of a. */
    if (grad_b) {
        double *negatives_grad = grad_b + range.count * dim;
        memset(grad_b, 0, (size_t)((range.count + range.negatives_count) * dim) * sizeof(double));
        walk = (closs_two_tower_walk){.rows = towers.b_hat,
                                      .others = towers.a_hat,
                                      .dim = dim,
                                      .others_end = pairs,
                                      .visit = b_row_visit,
                                      .context = &state};
        closs_two_tower_walk_rows(&walk, begin, range.count, grad_b);
        closs_two_tower_embed_backward(&towers, 1, begin, range.count, grad_b);
        closs_two_tower_walk_rows(&walk, pairs + range.negatives_begin, range.negatives_count,
                                  negatives_grad);
        closs_two_tower_embed_backward(&towers, 1, pairs + range.negatives_begin,
                                       range.negatives_count, negatives_grad);
    }
    closs_two_tower_free(&towers);
    return CLOSS_STATUS_SUCCESS;
}
