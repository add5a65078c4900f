/* The GPU's chunked NT-Xent and SupCon algorithm (cuda/contrastive_math.h), run literally on the
 * CPU in float with that header's functions, against the double-precision reference, on fresh
 * random inputs: every option, reduction and label pattern, several shapes, and chunk sizes that
 * put chunk boundaries everywhere.
 *
 * Tolerances. Each comparison has its own bound, computed from the run's magnitudes by a
 * first-order rounding analysis of the float algorithm (u = 2^-24, a float's unit roundoff; the
 * double reference's own error, below 2^-40 of the same magnitudes, is added). The float
 * similarity x_ik = (ẑ_i·ẑ_k)/τ is off by at most
 *     e_ik = c_x·u·‖ẑ_i‖‖ẑ_k‖/τ,   c_x = 2D + 6 normalised (norm, division, dot, 1/τ), D + 2 not,
 * so the error grows with D/τ and, without normalisation, with the norms. Then, with s = τ/τ_b:
 *   lse_i  ± e_i + 3M·u + u·(log M + |lse_i|)      (e_i = max_k e_ik; M − 1 merges, logf)
 *   ℓ_i    ± s·(2e_i + 3M·u + u·(log M + |lse_i|) + (|P(i)| + 2)·u·max_{k∈P(i)} |x_ik|)
 *            + 3u·|ℓ_i|                            (0 exactly when P(i) is empty)
 *   Σ ℓ_i  ± Σ bounds + M·u·Σ|ℓ_i|, and u more of the mean for MEAN
 *   G_ik   ± H_ik·(e_ik + max(δlse_i, δlse_k) + u·max|x_ik − lse| + 8u) + underflow, with
 *            H_ik = (|w_i|·e^(x_ik − lse_i) + |w_k|·e^(x_ik − lse_k)
 *                    + [k∈P(i)]·(|a_i| + |a_k|))/τ  the size of the terms that make G_ik
 *   dẑ_i   ± Σ_k (δG_ik + (M + D/2 + 2)·u·H_ik)·‖ẑ_k‖                         (in norm)
 *   dz_i   ± (‖δdẑ_i‖ + (2D + 10)·u·Σ_k H_ik·‖ẑ_k‖)/‖z_i‖   (the projection's rounding)
 * Each row's gradient is checked in norm against its own bound. A fixed relative tolerance would
 * not do: the gradient is a difference of terms of size H that cancel (to exactly 0 for M = 2,
 * or D = 1 normalised, where both sides keep only rounding residues), and a zero row's gradient,
 * dẑ/ε (ε in place of ‖z_i‖ above), dwarfs its neighbours'. Observed errors stay below a fifth
 * of these worst-case bounds (typically a few percent); a slip in a formula (a sign, a factor, a
 * missing term) is off by orders of magnitude more, and even a 1e-5 relative error in x_ik fails
 * every case. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "closs.h"
#include "contrastive_math.h"

enum { MAX_ROWS = 34, MAX_DIM = 16, MAX_REPORTS = 8 };
static const double unit_roundoff = 0x1p-24;   /* float */
static const double reference_error = 0x1p-40; /* double, with room for M·D = 528 roundings */
static const float normalize_eps = 1e-12f;

/* ---- one test: the loss and its options; shapes, labels and chunks are looped over inside ---- */

/* Criterion may run each parameter in a fresh process (exec, not fork), where the parent's
 * pointers mean nothing: the name is stored in the struct, not pointed to. */
typedef struct cm_case {
    int supcon; /* 0: NT-Xent */
    int normalize;
    double temperature;
    double base_temperature; /* SupCon; 0 means "equal to temperature" */
    closs_reduction_t reduction;
    char name[64];
} cm_case;

typedef enum label_pattern {
    LABELS_MIXED,    /* a few classes and singletons (anchors without a positive) */
    LABELS_DISTINCT, /* every label different: valid = 0 */
    LABELS_EQUAL,    /* one class */
    LABELS_PAIRS,    /* rows j and j + ⌈M/2⌉ share a label (NT-Xent's structure) */
    LABEL_PATTERNS
} label_pattern;
static const char *const pattern_names[LABEL_PATTERNS] = {"mixed", "distinct", "equal", "pairs"};

/* One problem: inputs as the GPU would receive them. */
typedef struct cm_problem {
    int rows, dim;
    float z[MAX_ROWS * MAX_DIM];
    int32_t labels32[MAX_ROWS];
    int64_t labels64[MAX_ROWS];
    closs_dtype_t label_dtype;
    float upstream[MAX_ROWS]; /* [0] for MEAN and SUM, one per row for NONE */
    char what[96];            /* shape and labels, for messages */
} cm_problem;

/* What the emulation produces, and the intermediates the error bounds need. */
typedef struct cm_result {
    float loss[MAX_ROWS]; /* [0] for MEAN and SUM, one per row for NONE */
    float grad[MAX_ROWS * MAX_DIM];
    int valid;
    float zhat[MAX_ROWS * MAX_DIM], norm[MAX_ROWS];
    int positives[MAX_ROWS];
    float lse[MAX_ROWS], row_loss[MAX_ROWS], w[MAX_ROWS], a[MAX_ROWS];
    float inv_temperature, scale;
} cm_result;

/* ---- random inputs ------------------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double uniform(uint64_t *state, double low, double high) {
    return low + (high - low) * (double)(splitmix64(state) >> 11) * 0x1.0p-53;
}

/* $CLOSS_TEST_SEED when set, else /dev/urandom, else the time. */
static uint64_t suite_seed(void) {
    const char *text = getenv("CLOSS_TEST_SEED");
    if (text && *text) return strtoull(text, NULL, 0);
    uint64_t seed = 0;
    FILE *urandom = fopen("/dev/urandom", "rb");
    if (urandom) {
        if (fread(&seed, sizeof seed, 1, urandom) != 1) seed = 0;
        fclose(urandom);
    }
    return seed ? seed : (uint64_t)time(NULL) ^ (uint64_t)clock() << 32;
}

/* Each case draws its own stream from the seed and its name: one seed reproduces every case. */
static uint64_t case_state(uint64_t seed, const char *name) {
    uint64_t hash = 0xCBF29CE484222325ull;
    for (const char *c = name; *c; ++c) hash = (hash ^ (unsigned char)*c) * 0x100000001B3ull;
    return seed ^ hash;
}

#define SEED_FMT        " [seed %llu: rerun with CLOSS_TEST_SEED=%llu]"
#define SEED_ARGS(seed) (unsigned long long)(seed), (unsigned long long)(seed)

static int64_t label_value(label_pattern pattern, int i, int rows, int wide, uint64_t *state) {
    /* int64 labels use values that collide if truncated to 32 bits (7 and 7 + 2^32). */
    static const int64_t pool[4] = {7, -3, 1000, 7 + ((int64_t)1 << 32)};
    switch (pattern) {
    case LABELS_MIXED:
        if (i % 4 == 3) return wide ? -((int64_t)1 << 40) - i : 100000 + 17 * i;
        return pool[splitmix64(state) % (wide ? 4u : 3u)];
    case LABELS_DISTINCT: return wide ? ((int64_t)i << 33) - 3 : (i % 2 ? -1 : 1) * (3 + 11 * i);
    case LABELS_EQUAL: return wide ? ((int64_t)1 << 40) + 7 : -3;
    default: return 1000 - 7 * (i % ((rows + 1) / 2));
    }
}

static void make_problem(const cm_case *t, int rows, int dim, label_pattern pattern,
                         closs_dtype_t label_dtype, uint64_t *state, cm_problem *p) {
    p->rows = rows, p->dim = dim, p->label_dtype = label_dtype;
    for (int e = 0; e < rows * dim; ++e) p->z[e] = (float)uniform(state, -1.0, 1.0);
    /* A zero row: ẑ = 0 and its gradient is dẑ/ε (the contract's convention). */
    const int zero_row = dim == 3 && rows > 2;
    if (zero_row)
        for (int c = 0; c < dim; ++c) p->z[(rows - 1) * dim + c] = 0.0f;
    for (int i = 0; i < rows; ++i) {
        int64_t label = label_value(pattern, i, rows, label_dtype == CLOSS_I64, state);
        p->labels64[i] = label;
        p->labels32[i] = (int32_t)label;
    }
    const int per_row = t->reduction == CLOSS_REDUCTION_NONE;
    for (int i = 0; i < (per_row ? rows : 1); ++i) {
        double u = per_row ? uniform(state, -2.0, 2.0) : uniform(state, 0.5, 2.0);
        p->upstream[i] = (float)(!per_row && splitmix64(state) % 2 ? -u : u);
    }
    if (t->supcon)
        snprintf(p->what, sizeof p->what, "M=%d D=%d labels %s %s%s", rows, dim,
                 pattern_names[pattern], label_dtype == CLOSS_I64 ? "int64" : "int32",
                 zero_row ? " zero row" : "");
    else snprintf(p->what, sizeof p->what, "M=%d D=%d%s", rows, dim, zero_row ? " zero row" : "");
}

/* The labels as the GPU reads them. */
static int64_t load_label(const cm_problem *p, int i) {
    return p->label_dtype == CLOSS_I64 ? p->labels64[i] : (int64_t)p->labels32[i];
}

static int is_positive(const cm_case *t, const cm_problem *p, int i, int k) {
    if (k == i) return 0;
    return t->supcon ? load_label(p, i) == load_label(p, k) : k == (i + p->rows / 2) % p->rows;
}

/* ---- the GPU's algorithm, in float --------------------------------------------------------- */

/* S = ẑ_chunk · ẑᵀ for rows first .. first + count − 1, float accumulation. */
static void similarity_chunk(const cm_result *r, int rows, int dim, int first, int count,
                             float *s) {
    for (int b = 0; b < count; ++b)
        for (int k = 0; k < rows; ++k) {
            float acc = 0.0f;
            for (int c = 0; c < dim; ++c)
                acc += r->zhat[(first + b) * dim + c] * r->zhat[k * dim + c];
            s[b * rows + k] = acc;
        }
}

static void emulate(const cm_case *t, const cm_problem *p, int chunk, cm_result *r) {
    const int rows = p->rows, dim = p->dim;
    const double base =
        t->supcon && t->base_temperature != 0.0 ? t->base_temperature : t->temperature;
    r->inv_temperature = (float)(1.0 / t->temperature);
    r->scale = t->supcon ? (float)(t->temperature / base) : 1.0f;
    const float inv_t = r->inv_temperature, scale = r->scale;

    /* 1. ẑ and the norms. */
    for (int i = 0; i < rows; ++i) {
        const float *z = p->z + i * dim;
        float squares = 0.0f;
        for (int c = 0; c < dim; ++c) squares += z[c] * z[c];
        r->norm[i] = sqrtf(squares);
        const float denominator = fmaxf(r->norm[i], normalize_eps);
        for (int c = 0; c < dim; ++c)
            r->zhat[i * dim + c] = t->normalize ? z[c] / denominator : z[c];
    }
    /* 2. Positive counts. */
    r->valid = 0;
    for (int i = 0; i < rows; ++i) {
        r->positives[i] = 0;
        for (int k = 0; k < rows; ++k) r->positives[i] += is_positive(t, p, i, k);
        r->valid += r->positives[i] > 0;
    }
    /* 3. Forward, chunk by chunk. */
    static float s[MAX_ROWS * MAX_ROWS];
    for (int first = 0; first < rows; first += chunk) {
        const int count = rows - first < chunk ? rows - first : chunk;
        similarity_chunk(r, rows, dim, first, count, s);
        for (int b = 0; b < count; ++b) {
            const int i = first + b;
            closs_lse_partial partial = closs_cm_lse_empty();
            float positive_sum = 0.0f;
            for (int k = 0; k < rows; ++k) {
                if (k == i) continue;
                const float x = s[b * rows + k] * inv_t;
                partial = closs_cm_lse_add(partial, x);
                if (is_positive(t, p, i, k)) positive_sum += x;
            }
            r->lse[i] = closs_cm_lse_value(partial);
            r->row_loss[i] = closs_cm_row_loss(r->lse[i], positive_sum, r->positives[i], scale);
        }
    }
    /* 4. The reduction. */
    if (t->reduction == CLOSS_REDUCTION_NONE) {
        memcpy(r->loss, r->row_loss, (size_t)rows * sizeof(float));
    } else {
        float sum = 0.0f;
        for (int i = 0; i < rows; ++i) sum += r->row_loss[i];
        if (t->reduction == CLOSS_REDUCTION_MEAN) sum = r->valid > 0 ? sum / (float)r->valid : 0.0f;
        r->loss[0] = sum;
    }
    /* 5. Backward: anchor weights, then G·ẑ chunk by chunk, then through the normalisation. */
    for (int i = 0; i < rows; ++i) {
        float weight = p->upstream[0];
        if (t->reduction == CLOSS_REDUCTION_NONE) weight = p->upstream[i];
        else if (t->reduction == CLOSS_REDUCTION_MEAN)
            weight = r->valid > 0 ? p->upstream[0] / (float)r->valid : 0.0f;
        closs_cm_anchor_weights(weight, r->positives[i], scale, &r->w[i], &r->a[i]);
    }
    for (int first = 0; first < rows; first += chunk) {
        const int count = rows - first < chunk ? rows - first : chunk;
        similarity_chunk(r, rows, dim, first, count, s);
        for (int b = 0; b < count; ++b) {
            const int i = first + b;
            float g[MAX_ROWS], dzhat[MAX_DIM];
            for (int k = 0; k < rows; ++k)
                g[k] = k == i ? 0.0f
                              : closs_cm_coefficient(s[b * rows + k] * inv_t, r->lse[i], r->lse[k],
                                                     r->w[i], r->w[k], r->a[i], r->a[k],
                                                     is_positive(t, p, i, k), inv_t);
            for (int c = 0; c < dim; ++c) {
                float acc = 0.0f;
                for (int k = 0; k < rows; ++k) acc += g[k] * r->zhat[k * dim + c];
                dzhat[c] = acc;
            }
            const float *unit = r->zhat + i * dim;
            float *dz = r->grad + i * dim;
            if (!t->normalize) {
                for (int c = 0; c < dim; ++c) dz[c] = dzhat[c];
            } else if (r->norm[i] > normalize_eps) {
                float radial = 0.0f;
                for (int c = 0; c < dim; ++c) radial += unit[c] * dzhat[c];
                for (int c = 0; c < dim; ++c) dz[c] = (dzhat[c] - unit[c] * radial) / r->norm[i];
            } else {
                for (int c = 0; c < dim; ++c) dz[c] = dzhat[c] / normalize_eps;
            }
        }
    }
}

/* ---- the error bounds of the header comment ------------------------------------------------ */

typedef struct cm_bounds {
    double loss[MAX_ROWS]; /* [0] for MEAN and SUM, one per row for NONE */
    double grad[MAX_ROWS]; /* on ‖dz_i‖ */
} cm_bounds;

static double row_norm(const float *x, int dim) {
    double sum = 0.0;
    for (int c = 0; c < dim; ++c) sum += (double)x[c] * x[c];
    return sqrt(sum);
}

static void error_bounds(const cm_case *t, const cm_problem *p, const cm_result *r, cm_bounds *b) {
    const int rows = p->rows, dim = p->dim;
    const double u = unit_roundoff, inv_t = r->inv_temperature, scale = fabs(r->scale);
    const double c_x = t->normalize ? 2.0 * dim + 6.0 : dim + 2.0;
    static float s[MAX_ROWS * MAX_ROWS];
    similarity_chunk(r, rows, dim, 0, rows, s);
    double unit_norm[MAX_ROWS], lse_error[MAX_ROWS], row_bound[MAX_ROWS];
    for (int k = 0; k < rows; ++k) unit_norm[k] = row_norm(r->zhat + k * dim, dim);

    double loss_sum = 0.0, loss_magnitude = 0.0;
    for (int i = 0; i < rows; ++i) {
        double x_error = 0.0, positive_max = 0.0;
        for (int k = 0; k < rows; ++k) {
            if (k == i) continue;
            x_error = fmax(x_error, c_x * u * unit_norm[i] * unit_norm[k] * inv_t);
            if (is_positive(t, p, i, k))
                positive_max =
                    fmax(positive_max, fabs((double)(s[i * rows + k] * r->inv_temperature)));
        }
        const double lse = r->lse[i], loss = fabs((double)r->row_loss[i]);
        lse_error[i] = rows > 1 ? x_error + 3.0 * rows * u + u * (log(rows) + fabs(lse)) : 0.0;
        row_bound[i] =
            r->positives[i] == 0
                ? 0.0
                : scale * (x_error + lse_error[i] + (r->positives[i] + 2.0) * u * positive_max) +
                      3.0 * u * loss +
                      reference_error * (scale * (fabs(lse) + positive_max) + loss);
        loss_sum += row_bound[i];
        loss_magnitude += loss;
    }
    if (t->reduction == CLOSS_REDUCTION_NONE) {
        memcpy(b->loss, row_bound, (size_t)rows * sizeof(double));
    } else {
        double bound = loss_sum + rows * u * loss_magnitude;
        if (t->reduction == CLOSS_REDUCTION_MEAN)
            bound = r->valid > 0 ? bound / r->valid + u * fabs((double)r->loss[0]) : 0.0;
        b->loss[0] = bound;
    }

    for (int i = 0; i < rows; ++i) {
        double dzhat_error = 0.0, magnitude = 0.0;
        for (int k = 0; k < rows; ++k) {
            if (k == i) continue;
            const double x = s[i * rows + k] * r->inv_temperature;
            const int positive = is_positive(t, p, i, k);
            const double h =
                inv_t * (fabs((double)r->w[i]) * exp(x - r->lse[i]) +
                         fabs((double)r->w[k]) * exp(x - r->lse[k]) +
                         (positive ? fabs((double)r->a[i]) + fabs((double)r->a[k]) : 0.0));
            const double epsilon = c_x * u * unit_norm[i] * unit_norm[k] * inv_t +
                                   fmax(lse_error[i], lse_error[k]) +
                                   u * fmax(fabs(x - r->lse[i]), fabs(x - r->lse[k])) + 8.0 * u;
            /* exp underflowing to a subnormal or 0 in float loses at most FLT_MIN per term. */
            const double underflow =
                inv_t * (fabs((double)r->w[i]) + fabs((double)r->w[k])) * FLT_MIN;
            dzhat_error +=
                (h * (epsilon + (rows + dim / 2.0 + 2.0) * u) + underflow) * unit_norm[k];
            magnitude += h * unit_norm[k];
        }
        double bound = dzhat_error;
        if (t->normalize)
            bound = r->norm[i] > normalize_eps
                        ? (dzhat_error + (2.0 * dim + 10.0) * u * magnitude) / r->norm[i]
                        : (dzhat_error + 2.0 * u * magnitude) / normalize_eps;
        const double scale_out =
            t->normalize ? (r->norm[i] > normalize_eps ? r->norm[i] : normalize_eps) : 1.0;
        b->grad[i] = bound + reference_error * magnitude / scale_out;
    }
}

/* ---- the comparison ------------------------------------------------------------------------ */

static closs_status_t reference(const cm_case *t, const cm_problem *p, double *loss, double *grad,
                                int64_t *valid) {
    double upstream[MAX_ROWS];
    for (int i = 0; i < p->rows; ++i) upstream[i] = p->upstream[i];
    closs_matrix_t z = closs_matrix(p->z, CLOSS_F32, p->rows, p->dim);
    if (!t->supcon) {
        closs_ntxent_params q = CLOSS_NTXENT_PARAMS_INIT;
        q.temperature = t->temperature, q.normalize = t->normalize, q.reduction = t->reduction;
        *valid = p->rows;
        return closs_ref_ntxent(&q, z, upstream, loss, grad);
    }
    closs_supcon_params q = CLOSS_SUPCON_PARAMS_INIT;
    q.temperature = t->temperature, q.base_temperature = t->base_temperature;
    q.normalize = t->normalize, q.reduction = t->reduction;
    const void *labels = p->label_dtype == CLOSS_I64 ? (const void *)p->labels64 : p->labels32;
    return closs_ref_supcon(&q, z, closs_vector(labels, p->label_dtype, p->rows), upstream, loss,
                            grad, valid);
}

/* Emulates `p` with every chunk size against the reference; returns the number of failures. */
static int check_problem(const cm_case *t, const cm_problem *p, uint64_t seed, int reported) {
    static double loss[MAX_ROWS], grad[MAX_ROWS * MAX_DIM];
    static cm_result r;
    static cm_bounds b;
    int64_t valid = -1;
    cr_assert_eq(reference(t, p, loss, grad, &valid), CLOSS_STATUS_SUCCESS, "%s %s: %s" SEED_FMT,
                 t->name, p->what, closs_last_error(), SEED_ARGS(seed));
    const int rows = p->rows, dim = p->dim;
    const int chunks[4] = {1, 3, 7, rows};
    int failures = 0;
#define REPORT(...)                                                                                \
    do {                                                                                           \
        if (reported + failures++ < MAX_REPORTS) cr_expect(0, __VA_ARGS__);                        \
    } while (0)
    for (int n = 0; n < 4; ++n) {
        emulate(t, p, chunks[n], &r);
        error_bounds(t, p, &r, &b);
        if (r.valid != valid)
            REPORT("%s %s chunk %d: valid %d, the reference says %lld" SEED_FMT, t->name, p->what,
                   chunks[n], r.valid, (long long)valid, SEED_ARGS(seed));
        const int losses = t->reduction == CLOSS_REDUCTION_NONE ? rows : 1;
        for (int i = 0; i < losses; ++i)
            if (!(fabs(r.loss[i] - loss[i]) <= b.loss[i]))
                REPORT("%s %s chunk %d: loss[%d] %.9g, reference %.9g, error %.3g > bound "
                       "%.3g" SEED_FMT,
                       t->name, p->what, chunks[n], i, r.loss[i], loss[i],
                       fabs(r.loss[i] - loss[i]), b.loss[i], SEED_ARGS(seed));
        for (int i = 0; i < rows; ++i) {
            double error = 0.0, size = 0.0;
            for (int c = 0; c < dim; ++c) {
                double d = r.grad[i * dim + c] - grad[i * dim + c];
                error += d * d;
                size += grad[i * dim + c] * grad[i * dim + c];
            }
            error = sqrt(error);
            if (!(error <= b.grad[i]))
                REPORT("%s %s chunk %d: ‖dz_%d − reference‖ = %.3g > bound %.3g (‖dz_%d‖ = "
                       "%.3g)" SEED_FMT,
                       t->name, p->what, chunks[n], i, error, b.grad[i], i, sqrt(size),
                       SEED_ARGS(seed));
        }
    }
#undef REPORT
    return failures;
}

ParameterizedTestParameters(contrastive_math, matches_reference) {
    static const double temperatures[] = {0.05, 0.1, 1.0};
    static const closs_reduction_t reductions[] = {CLOSS_REDUCTION_MEAN, CLOSS_REDUCTION_SUM,
                                                   CLOSS_REDUCTION_NONE};
    static const char *const reduction_names[] = {"mean", "sum", "none"};
    static cm_case cases[2 * 3 * 3 * 3];
    size_t count = 0;
    for (int supcon = 0; supcon <= 1; ++supcon)
        for (int base = 0; base <= supcon; ++base)
            for (int normalize = 1; normalize >= 0; --normalize)
                for (int t = 0; t < 3; ++t)
                    for (int r = 0; r < 3; ++r) {
                        cm_case *c = &cases[count++];
                        c->supcon = supcon, c->normalize = normalize;
                        c->temperature = temperatures[t];
                        c->base_temperature = base ? 0.07 : 0.0;
                        c->reduction = reductions[r];
                        snprintf(c->name, sizeof c->name, "%s normalize=%d tau=%g%s %s",
                                 supcon ? "supcon" : "ntxent", normalize, temperatures[t],
                                 supcon ? (base ? " tau_b=0.07" : " tau_b=tau") : "",
                                 reduction_names[r]);
                    }
    return cr_make_param_array(cm_case, cases, count);
}

ParameterizedTest(cm_case *t, contrastive_math, matches_reference) {
    const uint64_t seed = suite_seed();
    uint64_t state = case_state(seed, t->name);
    static const int ntxent_rows[] = {2, 10, 34}, supcon_rows[] = {1, 2, 3, 10, 33};
    static const int dims[] = {1, 3, 16};
    static const closs_dtype_t label_dtypes[] = {CLOSS_I32, CLOSS_I64};
    static cm_problem p;
    const int shapes = t->supcon ? 5 : 3;
    int failures = 0;
    for (int m = 0; m < shapes; ++m)
        for (int d = 0; d < 3; ++d)
            for (int pattern = 0; pattern < (t->supcon ? LABEL_PATTERNS : 1); ++pattern)
                for (int l = 0; l < (t->supcon ? 2 : 1); ++l) {
                    make_problem(t, t->supcon ? supcon_rows[m] : ntxent_rows[m], dims[d],
                                 (label_pattern)pattern, label_dtypes[l], &state, &p);
                    failures += check_problem(t, &p, seed, failures);
                }
}

/* Hand-checkable anchors of the header's functions. */
Test(contrastive_math, lse_partials) {
    /* log(e^1 + e^2 + e^3), in any order and merged from any split (to a few float ulps). */
    const float want = (float)log(exp(1.0) + exp(2.0) + exp(3.0));
    closs_lse_partial forward = closs_cm_lse_empty(), backward = closs_cm_lse_empty();
    for (int k = 1; k <= 3; ++k) forward = closs_cm_lse_add(forward, (float)k);
    for (int k = 3; k >= 1; --k) backward = closs_cm_lse_add(backward, (float)k);
    closs_lse_partial left = closs_cm_lse_add(closs_cm_lse_empty(), 2.0f);
    closs_lse_partial right = closs_cm_lse_add(closs_cm_lse_add(closs_cm_lse_empty(), 3.0f), 1.0f);
    cr_expect_float_eq(closs_cm_lse_value(forward), want, 1e-6f);
    cr_expect_float_eq(closs_cm_lse_value(backward), want, 1e-6f);
    cr_expect_float_eq(closs_cm_lse_value(closs_cm_lse_merge(left, right)), want, 1e-6f);
    /* Merging with an empty partial changes nothing; two empties stay empty. */
    closs_lse_partial same = closs_cm_lse_merge(closs_cm_lse_empty(), forward);
    cr_expect(same.max == forward.max && same.sum == forward.sum);
    same = closs_cm_lse_merge(forward, closs_cm_lse_empty());
    cr_expect(same.max == forward.max && same.sum == forward.sum);
    closs_lse_partial empty = closs_cm_lse_merge(closs_cm_lse_empty(), closs_cm_lse_empty());
    cr_expect(empty.max == -INFINITY && empty.sum == 0.0f);
    /* Logits whose exp overflows float (e^100) do not overflow the log-sum-exp. */
    closs_lse_partial big =
        closs_cm_lse_add(closs_cm_lse_add(closs_cm_lse_empty(), 100.0f), 100.0f);
    cr_expect_float_eq(closs_cm_lse_value(big), 100.0f + (float)log(2.0), 1e-5f);
}

Test(contrastive_math, anchors_without_positive) {
    cr_expect(closs_cm_row_loss(5.0f, 3.0f, 0, 2.0f) == 0.0f);
    float w = -1.0f, a = -1.0f;
    closs_cm_anchor_weights(0.5f, 0, 2.0f, &w, &a);
    cr_expect(w == 0.0f && a == 0.0f);
    closs_cm_anchor_weights(0.5f, 4, 2.0f, &w, &a);
    cr_expect(w == 1.0f && a == 0.25f);
    cr_expect_float_eq(closs_cm_row_loss(5.0f, 3.0f, 2, 2.0f), 7.0f, 1e-6f);
}
