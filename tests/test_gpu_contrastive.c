/* The GPU NT-Xent and SupCon, on both paths (FUSED, CHUNKED, and AUTO, which picks FUSED for
 * D ≤ 256), against the CPU reference; and the two paths against each other at M = 65,536.
 *
 * Each case draws fresh random inputs, rounds them to the case's dtype (the reference then sees
 * exactly the values the GPU sees), uploads them with the case's layout (padded leading
 * dimension whose padding holds NaN, base pointer off 16-byte alignment), poisons every output
 * with NaN, and checks
 *   - forward+backward: the loss and the gradient (upstream 1), and SupCon's valid count;
 *   - a second forward+backward gives the same bits;
 *   - forward without its optional outputs (stats and valid NULL): the loss;
 *   - forward: the loss, `stats` for every anchor against a log-sum-exp computed here in double,
 *     and SupCon's valid count;
 *   - backward alone from that forward's stats, with random upstream gradients (one per anchor
 *     for NONE);
 *   - row ranges (one rank's share of a batch) on both paths against the reference's range.
 * Without a device every test is skipped, visibly.
 *
 * Tolerances. The inputs are exact on both sides, so what differs is the GPU's float arithmetic
 * and the rounding of the gradient to its dtype. Float arithmetic errs by some ulps of the logits
 * x_ik = s_ik/τ, whatever their values, so every check is scaled by the logits' scale L: 1/τ with
 * normalisation (unit vectors: |s| ≤ 1, and the error of a float dot product of unit vectors is
 * relative to 1, not to |s|), the largest |s_ik|/τ of the case without (measure_inputs()).
 *   - Losses: ‖got − want‖ ≤ 1e-4·max(‖want‖, floor), floor = 0.1·(τ/τ_b)·L per anchor in the
 *     reduction. Where a loss cancels (NT-Xent with 2 rows is identically 0: its only negative is
 *     its positive) what remains is the rounding of the terms that cancel, a fraction of L; on
 *     ordinary cases the floor is below ‖want‖ (ℓ_i ≳ log(M − 1) + the logits' spread).
 *   - stats: for every anchor |got − lse_i| ≤ 1e-4·max(|lse_i|, L).
 *   - Gradients: norm-wise, ‖got − want‖ ≤ tolerance·max(‖want‖, floor) (+ f16's subnormal
 *     spacing, below). gradient_tolerance(dtype) covers the rounding to the dtype plus float
 *     arithmetic while the softmax is well conditioned. A softmax moves with its logits (an error
 *     δ in x_ik changes p_ik by p_ik·δ), so the float-arithmetic part grows with L: it is scaled
 *     by max(1, L/10) (with normalisation max(1, 0.1/τ): 10 at τ = 0.01, 1.43 at τ = 0.07), and
 *     the rounding to the dtype, which does not grow, is not:
 *         tolerance = gradient_tolerance(dtype) + gradient_tolerance(F32)·(max(1, L/10) − 1).
 *     The floor 0.2·w·R/τ·sqrt(Σ_i 1/n_i²) (w the largest anchor weight, upstream and τ/τ_b
 *     included; R = max ‖ẑ_k‖; n_i = max(‖z_i‖, 1e-12) with normalisation, else 1) is a tenth of
 *     the size of the terms that cancel where the gradient is 0 mathematically: the softmax and
 *     the positive parts of NT-Xent with 2 rows, and the projection (I − ẑẑᵀ)/‖z‖ with 1 column
 *     (every ẑ is ±1). f16 adds its subnormal spacing 2^-24 per element: the mean gradient over
 *     thousands of anchors at τ = 10 lies below f16's smallest normal number (6.1e-5).
 *   - SupCon with no positive anywhere (valid 0): loss and gradient exactly 0.
 *
 * CLOSS_GPU_TEST_SCALE=sim (gpu_scale.h) runs the sizes marked "sim" instead, on the fused path
 * only: there the chunked path's calls must fail with CUBLAS_ERROR (the simulator cannot create
 * a cuBLAS context), having written nothing. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "closs.h"
#include "dtype_range.h"
#include "gpu_support.h"
#include "softmax_contrastive.h" /* closs_ref_dot: the reference's dot product */

typedef enum { LOSS_NTXENT, LOSS_SUPCON } loss_kind;

typedef enum {
    LABELS_CLASSES,    /* random classes of about 4 rows */
    LABELS_SINGLETONS, /* the same, with every fifth row in a class of its own */
    LABELS_DISTINCT,   /* no anchor has a positive: valid 0, loss 0, gradient 0 */
    LABELS_EQUAL,      /* one class: every other row is a positive */
    LABEL_PATTERNS
} label_pattern;

typedef struct contrastive_case {
    loss_kind loss;
    int variant; /* normalisation and temperature, see set_options() */
    closs_reduction_t reduction;
    closs_dtype_t dtype;
    int64_t rows, dim;
    int padded;     /* ld = dim + 5 */
    int misaligned; /* z's and grad_z's base pointers one element past a 16-byte boundary */
    closs_path_t path;
    /* SupCon only */
    int half_base;             /* base_temperature 0.5 instead of the default (τ) */
    closs_dtype_t label_dtype; /* CLOSS_I32 or CLOSS_I64 */
    label_pattern labels;
} contrastive_case;

/* τ = 0.01 only with normalisation: without it, the logits of dot products would be thousands,
 * where a float has no digits left for the softmax. */
enum { VARIANTS = 7 };
static const int variant_normalize[VARIANTS] = {1, 1, 1, 1, 0, 0, 0};
static const double variant_temperature[VARIANTS] = {0.01, 0.07, 1.0, 10.0, 0.07, 1.0, 10.0};

static int normalize_of(const contrastive_case *c) { return variant_normalize[c->variant]; }
static double temperature_of(const contrastive_case *c) { return variant_temperature[c->variant]; }

/* τ/τ_b, SupCon's factor on every loss and gradient (1 for NT-Xent and SupCon's default). */
static double loss_scale(const contrastive_case *c) {
    return c->loss == LOSS_SUPCON && c->half_base ? temperature_of(c) / 0.5 : 1.0;
}

typedef struct loss_params {
    closs_ntxent_params ntxent;
    closs_supcon_params supcon;
} loss_params;

static loss_params set_options(const contrastive_case *c) {
    loss_params p = {CLOSS_NTXENT_PARAMS_INIT, CLOSS_SUPCON_PARAMS_INIT};
    p.ntxent.normalize = p.supcon.normalize = normalize_of(c);
    p.ntxent.temperature = p.supcon.temperature = temperature_of(c);
    p.supcon.base_temperature = c->half_base ? 0.5 : 0.0;
    p.ntxent.reduction = p.supcon.reduction = c->reduction;
    p.ntxent.path = p.supcon.path = c->path;
    return p;
}

/* Everything one case needs on both sides. */
typedef struct case_data {
    int64_t rows, dim, ld;
    float *host;      /* z, rounded to the dtype, dense */
    void *labels;     /* SupCon: int32 or int64 */
    double *upstream; /* random upstream gradients: 1 value, or one per anchor for NONE */
    /* the inputs measured in double (measure_inputs) */
    double *lse;          /* log Σ_{k≠i} exp(s_ik/τ): what `stats` must hold */
    double logit_scale;   /* L, see the tolerances above */
    double max_norm;      /* R = max ‖ẑ_k‖ */
    double inverse_norms; /* sqrt(Σ_i 1/n_i²) */
    /* device */
    void *device_z, *device_grad, *device_labels;
    float *device_loss, *device_stats, *device_upstream; /* loss and stats: rows + 1 (a guard) */
    int64_t *device_valid;                               /* 2 (a guard) */
} case_data;

static void *offset(void *base, const contrastive_case *c) {
    return (char *)base + (c->misaligned ? closs_dtype_size(c->dtype) : 0);
}

static size_t label_bytes(const contrastive_case *c) { return c->label_dtype == CLOSS_I32 ? 4 : 8; }

/* Spread-out label values, negative ones included. The int64 values differ only above bit 32:
 * labels truncated to 32 bits would all look equal. */
static int64_t label_value(int64_t class_index, closs_dtype_t dtype) {
    if (dtype == CLOSS_I32) return class_index * 7919 - 1000003;
    return (class_index - 1024) * ((int64_t)1 << 40) + 17;
}

static void make_labels(const contrastive_case *c, uint64_t *state, void *out) {
    const int64_t classes = c->rows / 4 > 1 ? c->rows / 4 : 1;
    for (int64_t i = 0; i < c->rows; ++i) {
        int64_t class_index = (int64_t)(uniform01(state) * (double)classes);
        if (class_index >= classes) class_index = classes - 1;
        if (c->labels == LABELS_SINGLETONS && i % 5 == 2) class_index = classes + i;
        if (c->labels == LABELS_DISTINCT) class_index = i;
        if (c->labels == LABELS_EQUAL) class_index = 0;
        const int64_t value = label_value(class_index, c->label_dtype);
        if (c->label_dtype == CLOSS_I32) ((int32_t *)out)[i] = (int32_t)value;
        else ((int64_t *)out)[i] = value;
    }
}

/* Adds exp(x) to a running log-sum-exp: *sum is Σ exp(x − *max). */
static void add_to_lse(double *max, double *sum, double x) {
    if (x > *max) {
        *sum = *sum * exp(*max - x) + 1.0;
        *max = x;
    } else {
        *sum += exp(x - *max);
    }
}

/* From the rounded inputs, in double: ẑ (normalised with eps 1e-12 as the contract says), each
 * anchor's lse_i = log Σ_{k≠i} exp(s_ik/τ) (each pair once: s is symmetric), and the scales of
 * the tolerances. */
static void measure_inputs(const contrastive_case *c, case_data *d) {
    const int64_t rows = c->rows, dim = c->dim;
    const double inv_t = 1.0 / temperature_of(c);
    double *zhat = malloc(((size_t)rows * (size_t)dim + 1) * sizeof(double));
    double *max = malloc(((size_t)rows + 1) * sizeof(double));
    double *sum = malloc(((size_t)rows + 1) * sizeof(double));
    double inverse_squares = 0.0, max_norm = 0.0, max_logit = 0.0;
    for (int64_t i = 0; i < rows; ++i) {
        double *row = zhat + i * dim;
        for (int64_t k = 0; k < dim; ++k) row[k] = d->host[i * dim + k];
        double norm = sqrt(closs_ref_dot(row, row, dim)), n = 1.0;
        if (normalize_of(c)) {
            n = norm > 1e-12 ? norm : 1e-12;
            const double scale = 1.0 / n;
            for (int64_t k = 0; k < dim; ++k) row[k] *= scale;
            norm *= scale;
        }
        inverse_squares += 1.0 / (n * n);
        max_norm = fmax(max_norm, norm);
        max[i] = -INFINITY;
        sum[i] = 0.0;
    }
    for (int64_t i = 0; i < rows; ++i)
        for (int64_t k = i + 1; k < rows; ++k) {
            const double x = closs_ref_dot(zhat + i * dim, zhat + k * dim, dim) * inv_t;
            max_logit = fmax(max_logit, fabs(x));
            add_to_lse(&max[i], &sum[i], x);
            add_to_lse(&max[k], &sum[k], x);
        }
    d->lse = malloc(((size_t)rows + 1) * sizeof(double));
    for (int64_t i = 0; i < rows; ++i) d->lse[i] = max[i] + log(sum[i]);
    d->logit_scale = normalize_of(c) ? inv_t : max_logit;
    d->max_norm = max_norm;
    d->inverse_norms = sqrt(inverse_squares);
    free(sum);
    free(max);
    free(zhat);
}

static case_data make_case(const contrastive_case *c, uint64_t *state) {
    case_data d = {.rows = c->rows, .dim = c->dim, .ld = c->dim + (c->padded ? 5 : 0)};
    const size_t rows = (size_t)c->rows, dense = rows * (size_t)c->dim;
    const size_t element = closs_dtype_size(c->dtype),
                 strided_bytes = (rows * (size_t)d.ld + 1) * element;
    /* NaN in the padding: a kernel that reads it shows in every loss. */
    unsigned char *staging = malloc(strided_bytes + 16);
    memset(staging, 0xff, strided_bytes + 16);
    d.host = malloc((dense + 1) * sizeof(float));
    for (size_t e = 0; e < dense; ++e) d.host[e] = (float)(2.0 * uniform01(state) - 1.0);
    /* Rounded in place, stored row by row at the case's leading dimension. */
    for (int64_t r = 0; r < c->rows; ++r)
        round_to_dtype(d.host + r * c->dim, (size_t)c->dim, c->dtype,
                       staging + (size_t)r * (size_t)d.ld * element);
    d.device_z = offset(gpu_alloc(strided_bytes + 16), c);
    gpu_upload(d.device_z, staging, rows * (size_t)d.ld * element);
    d.device_grad = offset(gpu_alloc(strided_bytes + 16), c);
    free(staging);

    d.labels = malloc((rows + 1) * label_bytes(c));
    d.device_labels = gpu_alloc((rows + 1) * label_bytes(c));
    if (c->loss == LOSS_SUPCON) {
        make_labels(c, state, d.labels);
        gpu_upload(d.device_labels, d.labels, rows * label_bytes(c));
    }

    const size_t loss_count = c->reduction == CLOSS_REDUCTION_NONE ? rows : 1;
    d.upstream = malloc((loss_count + 1) * sizeof(double));
    float *upstream_f32 = malloc((loss_count + 1) * sizeof(float));
    for (size_t i = 0; i < loss_count; ++i) {
        upstream_f32[i] = (float)(0.25 + 1.5 * uniform01(state));
        d.upstream[i] = upstream_f32[i];
    }
    d.device_upstream = gpu_alloc((loss_count + 1) * sizeof(float));
    gpu_upload(d.device_upstream, upstream_f32, loss_count * sizeof(float));
    free(upstream_f32);
    d.device_loss = gpu_alloc((rows + 1) * sizeof(float));
    d.device_stats = gpu_alloc((rows + 1) * sizeof(float));
    d.device_valid = gpu_alloc(2 * sizeof(int64_t));
    measure_inputs(c, &d);
    return d;
}

static void free_case(case_data *d) {
    free(d->host);
    free(d->labels);
    free(d->upstream);
    free(d->lse);
    gpu_free_all();
}

typedef enum {
    CALL_FORWARD_BACKWARD,
    CALL_FORWARD,           /* with stats and (SupCon) valid */
    CALL_FORWARD_LOSS_ONLY, /* stats and valid NULL */
    CALL_BACKWARD           /* from the stats in device_stats, with device_upstream */
} call_kind;

static closs_status_t call_gpu(closs_handle_t handle, const contrastive_case *c, const case_data *d,
                               const loss_params *p, call_kind kind, void *workspace,
                               size_t workspace_bytes) {
    closs_matrix_t z = closs_matrix_ld(d->device_z, c->dtype, c->rows, c->dim, d->ld);
    closs_grad_t g = {d->device_grad, d->ld};
    closs_vector_t labels = closs_vector(d->device_labels, c->label_dtype, c->rows);
    float *loss = d->device_loss;
    float *stats = kind == CALL_FORWARD_LOSS_ONLY ? NULL : d->device_stats;
    int64_t *valid = kind == CALL_FORWARD_LOSS_ONLY ? NULL : d->device_valid;
    const float *upstream = d->device_upstream;
    if (c->loss == LOSS_NTXENT) {
        if (kind == CALL_FORWARD_BACKWARD)
            return closs_ntxent_forward_backward(handle, &p->ntxent, z, loss, g, workspace,
                                                 workspace_bytes, NULL);
        if (kind == CALL_BACKWARD)
            return closs_ntxent_backward(handle, &p->ntxent, z, d->device_stats, upstream, g,
                                         workspace, workspace_bytes, NULL);
        return closs_ntxent_forward(handle, &p->ntxent, z, loss, stats, workspace, workspace_bytes,
                                    NULL);
    }
    if (kind == CALL_FORWARD_BACKWARD)
        return closs_supcon_forward_backward(handle, &p->supcon, z, labels, loss, valid, g,
                                             workspace, workspace_bytes, NULL);
    if (kind == CALL_BACKWARD)
        return closs_supcon_backward(handle, &p->supcon, z, labels, d->device_stats, upstream, g,
                                     workspace, workspace_bytes, NULL);
    return closs_supcon_forward(handle, &p->supcon, z, labels, loss, stats, valid, workspace,
                                workspace_bytes, NULL);
}

/* The reference on the rounded inputs; *anchors receives the number of anchors in the mean
 * (NT-Xent: all; SupCon: valid). */
static closs_status_t call_reference(const contrastive_case *c, const case_data *d,
                                     const loss_params *p, const double *upstream, double *loss,
                                     double *grad, int64_t *anchors) {
    closs_matrix_t z = closs_matrix(d->host, CLOSS_F32, c->rows, c->dim);
    if (c->loss == LOSS_NTXENT) {
        if (anchors) *anchors = c->rows;
        return closs_ref_ntxent(&p->ntxent, z, upstream, loss, grad);
    }
    closs_vector_t labels = closs_vector(d->labels, c->label_dtype, c->rows);
    return closs_ref_supcon(&p->supcon, z, labels, upstream, loss, grad, anchors);
}

static void describe(const contrastive_case *c, uint64_t seed, char *out, size_t size) {
    static const char *reductions[] = {"mean", "sum", "none"};
    static const char *dtypes[] = {"f32", "f16", "bf16"};
    static const char *paths[] = {"auto", "fused", "chunked"};
    static const char *patterns[] = {"classes", "singletons", "distinct", "equal"};
    char supcon[96] = "";
    if (c->loss == LOSS_SUPCON)
        snprintf(supcon, sizeof supcon, " base_temperature=%s labels=%s/%s",
                 c->half_base ? "0.5" : "default", patterns[c->labels],
                 c->label_dtype == CLOSS_I32 ? "i32" : "i64");
    snprintf(out, size,
             "%s normalize=%d tau=%g%s %s %s rows=%lld dim=%lld%s%s path=%s "
             "(CLOSS_TEST_SEED=%llu)",
             c->loss == LOSS_NTXENT ? "ntxent" : "supcon", normalize_of(c), temperature_of(c),
             supcon, reductions[c->reduction], dtypes[c->dtype], (long long)c->rows,
             (long long)c->dim, c->padded ? " padded" : "", c->misaligned ? " misaligned" : "",
             paths[c->path], (unsigned long long)seed);
}

/* ---- comparisons (see the tolerances at the top) --------------------------------------------- */

/* ‖got − want‖ / max(‖want‖, minimum): relative_error() for values that may cancel to 0; NaN
 * where got is NaN and want is not. *denominator receives max(‖want‖, minimum). */
static double error_above_floor(const float *got, const double *want, size_t count, double minimum,
                                double *denominator) {
    double difference = 0.0, norm = 0.0;
    int nan_appeared = 0;
    for (size_t i = 0; i < count; ++i) {
        nan_appeared |= isnan(got[i]) && !isnan(want[i]);
        double d = (double)got[i] - want[i];
        difference += d * d;
        norm += want[i] * want[i];
    }
    *denominator = fmax(fmax(sqrt(norm), minimum), 1e-30);
    return nan_appeared ? NAN : sqrt(difference) / *denominator;
}

/* The size of the reduced loss's terms that may cancel: 0.1·(τ/τ_b)·L per anchor. */
static double loss_floor(const contrastive_case *c, const case_data *d, int64_t anchors) {
    const double per_anchor = 0.1 * loss_scale(c) * d->logit_scale;
    if (c->reduction == CLOSS_REDUCTION_SUM) return per_anchor * (double)anchors;
    if (c->reduction == CLOSS_REDUCTION_NONE) return per_anchor * sqrt((double)c->rows);
    return per_anchor;
}

/* The largest weight of an anchor's loss in the gradient: upstream, 1/anchors for MEAN, τ/τ_b. */
static double largest_weight(const contrastive_case *c, const case_data *d, const double *upstream,
                             int64_t anchors) {
    double weight = upstream ? fabs(upstream[0]) : 1.0;
    if (c->reduction == CLOSS_REDUCTION_NONE && upstream)
        for (int64_t i = 1; i < d->rows; ++i) weight = fmax(weight, fabs(upstream[i]));
    if (c->reduction == CLOSS_REDUCTION_MEAN) weight = anchors > 0 ? weight / (double)anchors : 0.0;
    return loss_scale(c) * weight;
}

/* A tenth of the size of the gradient's terms that may cancel: 0.2·w·R/τ·sqrt(Σ_i 1/n_i²). */
static double gradient_floor(const contrastive_case *c, const case_data *d, const double *upstream,
                             int64_t anchors) {
    return 0.2 * largest_weight(c, d, upstream, anchors) * d->max_norm / temperature_of(c) *
           d->inverse_norms;
}

static double gradient_tolerance_of(const contrastive_case *c, const case_data *d) {
    const double conditioning = fmax(1.0, d->logit_scale / 10.0);
    return gradient_tolerance(c->dtype) + gradient_tolerance(CLOSS_F32) * (conditioning - 1.0);
}

/* Downloads `count` losses (and the guard after them) and compares them with the reference;
 * `exact_zero`: every loss must be 0. */
static void expect_losses(const case_data *d, size_t count, const double *want, double minimum,
                          int exact_zero, const char *what, const char *name) {
    float *got = malloc((count + 1) * sizeof(float));
    gpu_download(got, d->device_loss, (count + 1) * sizeof(float));
    cr_expect(isnan(got[count]), "%s: %s wrote past its %zu loss value(s)", name, what, count);
    if (exact_zero) {
        size_t nonzero = 0;
        for (size_t i = 0; i < count; ++i) nonzero += got[i] != 0.0f;
        cr_expect(nonzero == 0, "%s: %s: %zu loss value(s) not 0 with no positive (first %.9g)",
                  name, what, nonzero, got[0]);
    } else {
        double denominator = 0.0;
        double error = error_above_floor(got, want, count, minimum, &denominator);
        cr_expect(error <= 1e-4, "%s: %s loss relative error %.3g (got %.9g, want %.9g)", name,
                  what, error, got[0], want[0]);
    }
    free(got);
}

static void expect_stats(const case_data *d, const char *name) {
    const int64_t rows = d->rows;
    float *got = malloc(((size_t)rows + 1) * sizeof(float));
    gpu_download(got, d->device_stats, ((size_t)rows + 1) * sizeof(float));
    cr_expect(isnan(got[rows]), "%s: forward wrote past the %lld stats", name, (long long)rows);
    int64_t wrong = 0, first = -1;
    for (int64_t i = 0; i < rows; ++i) {
        const double allowed = 1e-4 * fmax(fabs(d->lse[i]), d->logit_scale);
        if (!(fabs((double)got[i] - d->lse[i]) <= allowed)) {
            if (first < 0) first = i;
            ++wrong;
        }
    }
    cr_expect(wrong == 0,
              "%s: stats: %lld of %lld anchors off the log-sum-exp, first %lld: got %.9g, want "
              "%.9g",
              name, (long long)wrong, (long long)rows, (long long)first,
              first >= 0 ? got[first] : 0.0f, first >= 0 ? d->lse[first] : 0.0);
    free(got);
}

static void expect_valid(const case_data *d, int64_t want, const char *what, const char *name) {
    int64_t got[2];
    gpu_download(got, d->device_valid, sizeof got);
    cr_expect_eq(got[0], want, "%s: %s valid %lld, want %lld", name, what, (long long)got[0],
                 (long long)want);
    cr_expect_eq(got[1], (int64_t)-1, "%s: %s wrote past valid", name, what);
}

static void expect_gradient(const contrastive_case *c, const case_data *d, const double *want,
                            double minimum, int exact_zero, const char *what, const char *name) {
    const size_t dense = (size_t)c->rows * (size_t)c->dim, element = closs_dtype_size(c->dtype);
    const size_t row_bytes = (size_t)d->ld * element, used_bytes = (size_t)c->dim * element;
    unsigned char *strided = malloc((size_t)c->rows * row_bytes + 1);
    float *got = malloc((dense + 1) * sizeof(float));
    gpu_download(strided, d->device_grad, (size_t)c->rows * row_bytes);
    size_t padding_written = 0;
    for (int64_t r = 0; r < c->rows; ++r) {
        const unsigned char *row = strided + (size_t)r * row_bytes;
        widen_from_dtype(row, (size_t)c->dim, c->dtype, got + r * c->dim);
        for (size_t b = used_bytes; b < row_bytes; ++b) padding_written += row[b] != 0xff;
    }
    cr_expect(padding_written == 0, "%s: %s wrote %zu byte(s) of grad_z's padding", name, what,
              padding_written);
    if (exact_zero) {
        size_t nonzero = 0;
        for (size_t e = 0; e < dense; ++e) nonzero += got[e] != 0.0f;
        cr_expect(nonzero == 0, "%s: %s: %zu gradient element(s) not 0 with no positive", name,
                  what, nonzero);
    } else {
        double denominator = 0.0;
        const double error = error_above_floor(got, want, dense, minimum, &denominator);
        const double subnormal = c->dtype == CLOSS_F16 ? 0x1p-24 * sqrt((double)dense) : 0.0;
        const double tolerance = gradient_tolerance_of(c, d) + subnormal / denominator;
        cr_expect(error <= tolerance, "%s: %s gradient relative error %.3g (tolerance %.3g)", name,
                  what, error, tolerance);
    }
    free(got);
    free(strided);
}

/* NaN in every output but the stats (which a backward call reads). */
static void poison_outputs(const contrastive_case *c, const case_data *d) {
    gpu_poison(d->device_loss, ((size_t)c->rows + 1) * sizeof(float));
    gpu_poison(d->device_grad, (size_t)c->rows * (size_t)d->ld * closs_dtype_size(c->dtype));
    gpu_poison(d->device_valid, 2 * sizeof(int64_t));
}

static void poison_stats(const contrastive_case *c, const case_data *d) {
    gpu_poison(d->device_stats, ((size_t)c->rows + 1) * sizeof(float));
}

static int all_poisoned(const void *device, size_t bytes) {
    unsigned char *host = malloc(bytes + 1);
    gpu_download(host, device, bytes);
    int poisoned = 1;
    for (size_t b = 0; b < bytes; ++b) poisoned &= host[b] == 0xff;
    free(host);
    return poisoned;
}

/* A failed call wrote nothing: every output still holds the poison (stats only if poisoned). */
static void expect_untouched(const contrastive_case *c, const case_data *d, int stats_poisoned,
                             const char *what) {
    gpu_synchronize();
    cr_expect(all_poisoned(d->device_loss, ((size_t)c->rows + 1) * sizeof(float)),
              "%s wrote the loss before failing", what);
    cr_expect(
        all_poisoned(d->device_grad, (size_t)c->rows * (size_t)d->ld * closs_dtype_size(c->dtype)),
        "%s wrote the gradient before failing", what);
    if (stats_poisoned)
        cr_expect(all_poisoned(d->device_stats, ((size_t)c->rows + 1) * sizeof(float)),
                  "%s wrote the stats before failing", what);
    if (c->loss == LOSS_SUPCON)
        cr_expect(all_poisoned(d->device_valid, 2 * sizeof(int64_t)),
                  "%s wrote valid before failing", what);
}

static void check_case(closs_handle_t handle, const contrastive_case *c) {
    uint64_t seed = test_seed(), state = seed | 1;
    char name[300];
    describe(c, seed, name, sizeof name);
    case_data d = make_case(c, &state);
    const loss_params p = set_options(c);
    const size_t dense = (size_t)c->rows * (size_t)c->dim;
    const size_t loss_count = c->reduction == CLOSS_REDUCTION_NONE ? (size_t)c->rows : 1;
    double *want_loss = malloc(((size_t)c->rows + 1) * sizeof(double));
    double *scratch_loss = malloc(((size_t)c->rows + 1) * sizeof(double));
    double *want_grad = malloc((dense + 1) * sizeof(double));
    int64_t anchors = 0;

    /* forward+backward, upstream 1 */
    cr_assert_eq(call_reference(c, &d, &p, NULL, want_loss, want_grad, &anchors),
                 CLOSS_STATUS_SUCCESS, "%s: %s", name, closs_last_error());
    const int nothing_valid = anchors == 0;
    const double minimum = loss_floor(c, &d, anchors);
    poison_outputs(c, &d);
    cr_assert_eq(call_gpu(handle, c, &d, &p, CALL_FORWARD_BACKWARD, NULL, 0), CLOSS_STATUS_SUCCESS,
                 "%s: %s", name, closs_last_error());
    gpu_synchronize();
    expect_losses(&d, loss_count, want_loss, minimum, nothing_valid, "forward+backward", name);
    expect_gradient(c, &d, want_grad, gradient_floor(c, &d, NULL, anchors), nothing_valid,
                    "forward+backward", name);
    if (c->loss == LOSS_SUPCON) expect_valid(&d, anchors, "forward+backward", name);

    /* the same bits again */
    const size_t grad_bytes = (size_t)c->rows * (size_t)d.ld * closs_dtype_size(c->dtype);
    const size_t loss_bytes = loss_count * sizeof(float), all = grad_bytes + loss_bytes + 8;
    char *first = malloc(all), *second = malloc(all);
    gpu_download(first, d.device_grad, grad_bytes);
    gpu_download(first + grad_bytes, d.device_loss, loss_bytes);
    gpu_download(first + grad_bytes + loss_bytes, d.device_valid, 8);
    poison_outputs(c, &d);
    cr_assert_eq(call_gpu(handle, c, &d, &p, CALL_FORWARD_BACKWARD, NULL, 0), CLOSS_STATUS_SUCCESS,
                 "%s: %s", name, closs_last_error());
    gpu_download(second, d.device_grad, grad_bytes);
    gpu_download(second + grad_bytes, d.device_loss, loss_bytes);
    gpu_download(second + grad_bytes + loss_bytes, d.device_valid, 8);
    cr_expect(memcmp(first, second, all) == 0, "%s: two identical calls gave different bits", name);
    free(first);
    free(second);

    /* forward without its optional outputs */
    poison_outputs(c, &d);
    poison_stats(c, &d);
    cr_assert_eq(call_gpu(handle, c, &d, &p, CALL_FORWARD_LOSS_ONLY, NULL, 0), CLOSS_STATUS_SUCCESS,
                 "%s: %s", name, closs_last_error());
    gpu_synchronize();
    expect_losses(&d, loss_count, want_loss, minimum, nothing_valid, "forward without stats", name);

    /* forward: the loss, every anchor's stats and valid */
    poison_outputs(c, &d);
    poison_stats(c, &d);
    cr_assert_eq(call_gpu(handle, c, &d, &p, CALL_FORWARD, NULL, 0), CLOSS_STATUS_SUCCESS, "%s: %s",
                 name, closs_last_error());
    gpu_synchronize();
    expect_losses(&d, loss_count, want_loss, minimum, nothing_valid, "forward", name);
    expect_stats(&d, name);
    if (c->loss == LOSS_SUPCON) expect_valid(&d, anchors, "forward", name);

    /* backward alone, from the forward's stats, with upstream gradients other than 1 */
    cr_assert_eq(call_reference(c, &d, &p, d.upstream, scratch_loss, want_grad, NULL),
                 CLOSS_STATUS_SUCCESS, "%s: %s", name, closs_last_error());
    poison_outputs(c, &d);
    cr_assert_eq(call_gpu(handle, c, &d, &p, CALL_BACKWARD, NULL, 0), CLOSS_STATUS_SUCCESS,
                 "%s: %s", name, closs_last_error());
    gpu_synchronize();
    expect_gradient(c, &d, want_grad, gradient_floor(c, &d, d.upstream, anchors), nothing_valid,
                    "backward", name);

    free(want_grad);
    free(scratch_loss);
    free(want_loss);
    free_case(&d);
}

static closs_handle_t handle;

static void setup(void) {
    if (!gpu_available()) return;
    cr_assert_eq(closs_create(&handle), CLOSS_STATUS_SUCCESS, "%s", closs_last_error());
}

static void teardown(void) {
    gpu_free_all();
    closs_destroy(handle);
    handle = NULL;
}

TestSuite(gpu_contrastive, .init = setup, .fini = teardown, .timeout = 600);

/* The path of a case: AUTO, CHUNKED or FUSED by `rotation`, FUSED only where it takes D; in the
 * simulated tier AUTO and FUSED (its dimensions all take the fused path). */
static closs_path_t rotate_path(int rotation, int64_t dim) {
    static const closs_path_t paths[3] = {CLOSS_PATH_AUTO, CLOSS_PATH_FUSED, CLOSS_PATH_CHUNKED};
    const closs_path_t path = paths[rotation % (gpu_test_simulated() ? 2 : 3)];
    return path == CLOSS_PATH_FUSED && dim > 256 ? CLOSS_PATH_CHUNKED : path;
}

/* Every size of the sweep: options, reductions, dtypes, layouts, paths and (SupCon) labels rotate
 * with the size so that the sweep covers them all without a full cross product (every option set
 * meets every reduction, and each dim several option sets). NT-Xent needs an even number of rows.
 * 10000 rows need more than one block of the chunked path (2^26 similarities per block for f32,
 * 2^25 for f16 and bf16) and many 64-row tiles of the fused path. */
static void sweep_sizes(loss_kind loss) {
    static const int64_t ntxent_rows[] = {2, 64, 1000, 4096, 10000};
    static const int64_t supcon_rows[] = {2, 3, 64, 1000, 4097, 10001};
    static const int64_t full_dims[] = {1, 3, 64, 128, 130, 256, 1000};
    /* sim: partial 64-row tiles, and D up to the fused path's 256 (a 64 × 64 tile costs the same
     * whatever its rows: the larger D only with one tile) */
    static const int64_t sim_ntxent_rows[] = {2, 66}, sim_supcon_rows[] = {3, 65};
    static const int64_t sim_dims[] = {1, 3, 64, 130, 256};
    const int sim = gpu_test_simulated();
    const int64_t *rows = loss == LOSS_NTXENT ? (sim ? sim_ntxent_rows : ntxent_rows)
                                              : (sim ? sim_supcon_rows : supcon_rows);
    const int row_count = sim                   ? 2
                          : loss == LOSS_NTXENT ? (int)(sizeof ntxent_rows / sizeof ntxent_rows[0])
                                                : (int)(sizeof supcon_rows / sizeof supcon_rows[0]);
    const int64_t *dims = sim ? sim_dims : full_dims;
    const int dim_count = sim ? (int)(sizeof sim_dims / sizeof sim_dims[0])
                              : (int)(sizeof full_dims / sizeof full_dims[0]);
    for (int r = 0; r < row_count; ++r)
        for (int d = 0; d < dim_count; ++d) {
            /* The reference's and measure_inputs()'s O(M²·D) time; the simulator's. */
            if ((double)rows[r] * (double)rows[r] * (double)dims[d] > (sim ? 3e5 : 4.3e9)) continue;
            const int index = r * dim_count + d;
            contrastive_case c = {loss,
                                  (r + 4 * d) % VARIANTS,
                                  (closs_reduction_t)(index % 3),
                                  (closs_dtype_t)(index / 3 % 3) /* f32, f16, bf16 */,
                                  rows[r],
                                  dims[d],
                                  index % 2,
                                  index / 2 % 2,
                                  rotate_path(index / 5, dims[d]),
                                  index / 4 % 2,
                                  index / 6 % 2 ? CLOSS_I64 : CLOSS_I32,
                                  (label_pattern)((3 * r + d) % LABEL_PATTERNS)};
            check_case(handle, &c);
        }
}

Test(gpu_contrastive, ntxent_sizes) {
    CLOSS_REQUIRE_GPU();
    sweep_sizes(LOSS_NTXENT);
}

Test(gpu_contrastive, supcon_sizes) {
    CLOSS_REQUIRE_GPU();
    sweep_sizes(LOSS_SUPCON);
}

/* Every normalisation and temperature × reduction × dtype at one size, aligned and not; SupCon's
 * base temperature, label dtype and label pattern rotate (every pattern meets every reduction,
 * dtype and temperature). sim: one 64-row tile, the dtype rotating too (every temperature and
 * every reduction still meet every dtype), and D by the reduction: 24, 72 and 130, one for each
 * of the backward kernel's D ≤ 64, 128 and 256, each of which meets every dtype and temperature. */
static void every_option(loss_kind loss) {
    const int sim = gpu_test_simulated();
    static const int64_t sim_dims[3] = {24, 72, 130};
    int index = 0;
    for (int variant = 0; variant < VARIANTS; ++variant)
        for (int reduction = 0; reduction < 3; ++reduction)
            for (int dtype = 0; dtype < 3; ++dtype, ++index) {
                if (sim && dtype != (variant + reduction) % 3) continue;
                contrastive_case c = {loss,
                                      variant,
                                      (closs_reduction_t)reduction,
                                      (closs_dtype_t)dtype,
                                      sim ? 40 : 1000,
                                      sim ? sim_dims[reduction] : 130,
                                      variant % 2,
                                      (variant + dtype) % 2,
                                      rotate_path(reduction + dtype + variant, 130),
                                      index / 8 % 2,
                                      index / 4 % 2 ? CLOSS_I64 : CLOSS_I32,
                                      (label_pattern)(index % LABEL_PATTERNS)};
                check_case(handle, &c);
            }
}

Test(gpu_contrastive, ntxent_every_option_reduction_and_dtype) {
    CLOSS_REQUIRE_GPU();
    every_option(LOSS_NTXENT);
}

Test(gpu_contrastive, supcon_every_option_reduction_and_dtype) {
    CLOSS_REQUIRE_GPU();
    every_option(LOSS_SUPCON);
}

/* The simulated tier's chunked path: its first call creates the handle's cuBLAS context, which
 * the simulator cannot: each call fails with CUBLAS_ERROR, naming cublasCreate, and writes
 * nothing. The case itself is left out, saying so. */
static void expect_chunked_refused(closs_handle_t handle, const contrastive_case *c) {
    GPU_SIM_LEAVES_OUT("the chunked path's cases");
    uint64_t state = test_seed() | 1;
    case_data d = make_case(c, &state);
    const loss_params p = set_options(c);
    static const call_kind kinds[] = {CALL_FORWARD_BACKWARD, CALL_FORWARD, CALL_BACKWARD};
    static const char *kind_names[] = {"chunked forward+backward", "chunked forward",
                                       "chunked backward"};
    for (int k = 0; k < 3; ++k) {
        poison_outputs(c, &d);
        poison_stats(c, &d);
        cr_expect_eq(call_gpu(handle, c, &d, &p, kinds[k], NULL, 0), CLOSS_STATUS_CUBLAS_ERROR,
                     "%s: %s", kind_names[k], closs_last_error());
        cr_expect(strstr(closs_last_error(), "cublasCreate"), "%s", closs_last_error());
        expect_untouched(c, &d, 1, kind_names[k]);
    }
    free_case(&d);
}

/* CHUNKED, FUSED and AUTO compute the same losses; FUSED refuses D > 256, with nothing written.
 * sim: smaller, and CHUNKED first, refused (expect_chunked_refused), then AUTO and FUSED on
 * the same handle. */
Test(gpu_contrastive, paths) {
    CLOSS_REQUIRE_GPU();
    const int sim = gpu_test_simulated();
    for (int loss = 0; loss < 2; ++loss) {
        const int64_t rows = loss == LOSS_NTXENT ? (sim ? 66 : 512) : (sim ? 65 : 513);
        contrastive_case c = {(loss_kind)loss,
                              1,
                              CLOSS_REDUCTION_MEAN,
                              CLOSS_F32,
                              rows,
                              sim ? 16 : 64,
                              1,
                              1,
                              CLOSS_PATH_CHUNKED,
                              0,
                              CLOSS_I64,
                              LABELS_SINGLETONS};
        if (sim) expect_chunked_refused(handle, &c);
        else check_case(handle, &c);
        c.path = CLOSS_PATH_AUTO;
        check_case(handle, &c);
        c.path = CLOSS_PATH_FUSED;
        check_case(handle, &c);

        c.dim = 257;
        uint64_t state = test_seed() | 1;
        case_data d = make_case(&c, &state);
        const loss_params p = set_options(&c);
        static const call_kind kinds[] = {CALL_FORWARD_BACKWARD, CALL_FORWARD, CALL_BACKWARD};
        static const char *kind_names[] = {"fused forward+backward, D = 257",
                                           "fused forward, D = 257", "fused backward, D = 257"};
        for (int k = 0; k < 3; ++k) {
            poison_outputs(&c, &d);
            poison_stats(&c, &d);
            cr_expect_eq(call_gpu(handle, &c, &d, &p, kinds[k], NULL, 0),
                         CLOSS_STATUS_NOT_SUPPORTED, "%s: %s", kind_names[k], closs_last_error());
            cr_expect(strstr(closs_last_error(), "path"), "%s", closs_last_error());
            expect_untouched(&c, &d, 1, kind_names[k]);
        }
        free_case(&d);
    }
}

/* The tensor-core kernels (FUSED with f16 and bf16 inputs): rows around the 64-row tiles, D
 * around the 16-column WMMA steps and each padded width (64, 128, 256), every temperature and
 * normalisation, against the reference. */
Test(gpu_contrastive, tensor_core_shapes) {
    CLOSS_REQUIRE_GPU();
    static const int64_t full_rows[] = {2, 63, 64, 65, 130, 1000}, sim_rows[] = {2, 65};
    static const int64_t full_dims[] = {1, 15, 16, 17, 64, 100, 128, 129, 200, 256},
                         sim_dims[] = {1, 17, 129};
    const int sim = gpu_test_simulated();
    const int64_t *rows = sim ? sim_rows : full_rows, *dims = sim ? sim_dims : full_dims;
    const size_t row_count = sim ? 2 : 6, dim_count = sim ? 3 : 10;
    int index = 0;
    for (int loss = 0; loss < 2; ++loss)
        for (size_t r = 0; r < row_count; ++r)
            for (size_t d = 0; d < dim_count; ++d, ++index) {
                contrastive_case c = {(loss_kind)loss,
                                      index % VARIANTS,
                                      (closs_reduction_t)(index % 3),
                                      index % 2 ? CLOSS_F16 : CLOSS_BF16,
                                      loss == LOSS_NTXENT ? rows[r] + rows[r] % 2 : rows[r],
                                      dims[d],
                                      index / 2 % 2,
                                      index / 4 % 2,
                                      CLOSS_PATH_FUSED,
                                      index / 3 % 2,
                                      index / 5 % 2 ? CLOSS_I64 : CLOSS_I32,
                                      (label_pattern)(index % LABEL_PATTERNS)};
                check_case(handle, &c);
            }
}

/* Check mode reads the verdict back before computing: a NaN in z is reported with its row, by
 * every call, and no output is written. */
Test(gpu_contrastive, check_mode) {
    CLOSS_REQUIRE_GPU();
    for (int loss = 0; loss < 2; ++loss) {
        uint64_t state = test_seed() | 1;
        contrastive_case c = {(loss_kind)loss,
                              1,
                              CLOSS_REDUCTION_MEAN,
                              CLOSS_F32,
                              64,
                              16,
                              0,
                              0,
                              CLOSS_PATH_AUTO,
                              0,
                              CLOSS_I32,
                              LABELS_CLASSES};
        case_data d = make_case(&c, &state);
        loss_params p = set_options(&c);
        /* stats for the backward call, before the NaN goes in */
        poison_stats(&c, &d);
        cr_assert_eq(call_gpu(handle, &c, &d, &p, CALL_FORWARD, NULL, 0), CLOSS_STATUS_SUCCESS,
                     "%s", closs_last_error());
        gpu_synchronize();

        p.ntxent.check_inputs = p.supcon.check_inputs = 1;
        const float nan_value = NAN;
        float *bad = (float *)d.device_z + 37 * 16 + 3;
        gpu_upload(bad, &nan_value, sizeof nan_value);
        static const call_kind kinds[] = {CALL_BACKWARD, CALL_FORWARD, CALL_FORWARD_BACKWARD};
        static const char *kind_names[] = {"check-mode backward", "check-mode forward",
                                           "check-mode forward+backward"};
        for (int k = 0; k < 3; ++k) {
            poison_outputs(&c, &d);
            if (kinds[k] != CALL_BACKWARD) poison_stats(&c, &d);
            cr_expect_eq(call_gpu(handle, &c, &d, &p, kinds[k], NULL, 0),
                         CLOSS_STATUS_NONFINITE_INPUT, "%s %s", loss ? "supcon" : "ntxent",
                         kind_names[k]);
            cr_expect(strstr(closs_last_error(), "row 37"), "%s", closs_last_error());
            expect_untouched(&c, &d, kinds[k] != CALL_BACKWARD, kind_names[k]);
        }

        /* the value back: check mode passes and the call computes */
        gpu_upload(bad, &d.host[37 * 16 + 3], sizeof(float));
        double want = 0.0;
        int64_t anchors = 0;
        cr_assert_eq(call_reference(&c, &d, &p, NULL, &want, NULL, &anchors), CLOSS_STATUS_SUCCESS);
        poison_outputs(&c, &d);
        cr_expect_eq(call_gpu(handle, &c, &d, &p, CALL_FORWARD_BACKWARD, NULL, 0),
                     CLOSS_STATUS_SUCCESS, "%s", closs_last_error());
        gpu_synchronize();
        expect_losses(&d, 1, &want, loss_floor(&c, &d, anchors), anchors == 0, "check mode, finite",
                      loss ? "supcon" : "ntxent");
        free_case(&d);
    }
}

/* Without check mode a NaN reaches every anchor's loss (their denominators sum over all rows),
 * SupCon's anchors without a positive included. */
Test(gpu_contrastive, nan_reaches_every_anchor) {
    CLOSS_REQUIRE_GPU();
    for (int loss = 0; loss < 2; ++loss) {
        uint64_t state = test_seed() | 1;
        contrastive_case c = {(loss_kind)loss,
                              1,
                              CLOSS_REDUCTION_NONE,
                              CLOSS_F32,
                              64,
                              16,
                              0,
                              0,
                              CLOSS_PATH_AUTO,
                              0,
                              CLOSS_I64,
                              LABELS_SINGLETONS};
        case_data d = make_case(&c, &state);
        const loss_params p = set_options(&c);
        const float nan_value = NAN;
        gpu_upload((float *)d.device_z + 37 * 16 + 3, &nan_value, sizeof nan_value);
        poison_outputs(&c, &d);
        cr_assert_eq(call_gpu(handle, &c, &d, &p, CALL_FORWARD_LOSS_ONLY, NULL, 0),
                     CLOSS_STATUS_SUCCESS, "%s", closs_last_error());
        float got[64];
        gpu_download(got, d.device_loss, sizeof got);
        int finite = 0;
        for (int i = 0; i < 64; ++i) finite += !isnan(got[i]);
        cr_expect_eq(finite, 0, "%s: %d of 64 anchors' losses are not NaN",
                     loss ? "supcon" : "ntxent", finite);
        free_case(&d);
    }
}

/* The caller's workspace: the queried size works for all three calls at any address (NT-Xent's
 * 256 bytes past cudaMalloc's alignment, SupCon's 1 byte past it: the fused path's 8-byte sort
 * keys would fault unaligned), one byte less is refused before anything runs. */
Test(gpu_contrastive, caller_workspace) {
    CLOSS_REQUIRE_GPU();
    const int64_t rows = gpu_test_simulated() ? 66 : 1000;
    for (int loss = 0; loss < 2; ++loss) {
        uint64_t state = test_seed() | 1;
        contrastive_case c = {
            (loss_kind)loss, 1, CLOSS_REDUCTION_SUM, CLOSS_F32,     rows, 64, 0, 0,
            CLOSS_PATH_AUTO, 0, CLOSS_I64,           LABELS_CLASSES};
        char name[300];
        describe(&c, state, name, sizeof name);
        case_data d = make_case(&c, &state);
        const loss_params p = set_options(&c);
        size_t bytes = 0;
        closs_status_t status =
            loss == LOSS_NTXENT
                ? closs_ntxent_workspace_size(handle, &p.ntxent, rows, 64, CLOSS_F32, &bytes)
                : closs_supcon_workspace_size(handle, &p.supcon, rows, 64, CLOSS_F32, &bytes);
        cr_assert_eq(status, CLOSS_STATUS_SUCCESS, "%s", closs_last_error());
        cr_assert_gt(bytes, 0);
        void *workspace = (char *)gpu_alloc(bytes + 256) + (loss == LOSS_NTXENT ? 256 : 1);

        double want_loss = 0.0;
        double *want_grad = malloc(((size_t)rows * 64 + 1) * sizeof(double));
        double *want_backward = malloc(((size_t)rows * 64 + 1) * sizeof(double));
        int64_t anchors = 0;
        cr_assert_eq(call_reference(&c, &d, &p, NULL, &want_loss, want_grad, &anchors),
                     CLOSS_STATUS_SUCCESS);
        double scratch = 0.0;
        cr_assert_eq(call_reference(&c, &d, &p, d.upstream, &scratch, want_backward, NULL),
                     CLOSS_STATUS_SUCCESS);

        /* forward first: the backward call reads its stats */
        static const call_kind kinds[] = {CALL_FORWARD, CALL_BACKWARD, CALL_FORWARD_BACKWARD};
        static const char *kind_names[] = {"forward", "backward", "forward+backward"};
        for (int k = 0; k < 3; ++k) {
            poison_outputs(&c, &d);
            if (kinds[k] != CALL_BACKWARD) poison_stats(&c, &d);
            cr_expect_eq(call_gpu(handle, &c, &d, &p, kinds[k], workspace, bytes - 1),
                         CLOSS_STATUS_WORKSPACE_TOO_SMALL, "%s: %s with %zu − 1 bytes", name,
                         kind_names[k], bytes);
            expect_untouched(&c, &d, kinds[k] != CALL_BACKWARD, kind_names[k]);
            cr_assert_eq(call_gpu(handle, &c, &d, &p, kinds[k], workspace, bytes),
                         CLOSS_STATUS_SUCCESS, "%s: %s: %s", name, kind_names[k],
                         closs_last_error());
            gpu_synchronize();
            if (kinds[k] != CALL_BACKWARD)
                expect_losses(&d, 1, &want_loss, loss_floor(&c, &d, anchors), anchors == 0,
                              kind_names[k], name);
            if (kinds[k] == CALL_FORWARD) expect_stats(&d, name);
            if (kinds[k] == CALL_BACKWARD)
                expect_gradient(&c, &d, want_backward, gradient_floor(&c, &d, d.upstream, anchors),
                                anchors == 0, kind_names[k], name);
            if (kinds[k] == CALL_FORWARD_BACKWARD)
                expect_gradient(&c, &d, want_grad, gradient_floor(&c, &d, NULL, anchors),
                                anchors == 0, kind_names[k], name);
        }
        free(want_backward);
        free(want_grad);
        free_case(&d);
    }
}

/* ---- fused against chunked where the reference is too slow ------------------------------------
 */

static float *download_floats(const void *device, size_t count, closs_dtype_t dtype) {
    const size_t bytes = count * closs_dtype_size(dtype);
    void *raw = malloc(bytes + 1);
    float *out = malloc((count + 1) * sizeof(float));
    gpu_download(raw, device, bytes);
    widen_from_dtype(raw, count, dtype, out);
    free(raw);
    return out;
}

/* ‖got − want‖/‖want‖ of two float arrays (NaN anywhere: NaN). */
static double float_error(const float *got, const float *want, size_t count) {
    double *wide = malloc((count + 1) * sizeof(double));
    for (size_t i = 0; i < count; ++i) wide[i] = want[i];
    const double error = relative_error(got, wide, count);
    free(wide);
    return error;
}

/* One loss at M = 65,536, D = 128 (normalised, τ = 0.07) on both paths from the same inputs:
 * forward (loss and stats), forward+backward (gradient), and the fused backward from the chunked
 * path's stats (the two paths' stats are interchangeable). What differs is float arithmetic in
 * another order (cuBLAS against the tiles): losses and stats to 1e-4, gradients norm-wise to
 * twice the dtype's gradient tolerance (each path rounds to the dtype on its own). */
static void compare_paths(loss_kind loss, closs_dtype_t dtype, closs_reduction_t reduction) {
    const int64_t rows = 65536, dim = 128;
    const size_t dense = (size_t)rows * (size_t)dim, element = closs_dtype_size(dtype);
    contrastive_case c = {loss, 1, reduction,        dtype, rows,      dim,
                          0,    0, CLOSS_PATH_FUSED, 0,     CLOSS_I64, LABELS_SINGLETONS};
    uint64_t seed = test_seed(), state = seed | 1;
    char name[300];
    describe(&c, seed, name, sizeof name);

    float *host = malloc((dense + 1) * sizeof(float));
    void *staging = malloc(dense * element + 1);
    for (size_t e = 0; e < dense; ++e) host[e] = (float)(2.0 * uniform01(&state) - 1.0);
    round_to_dtype(host, dense, dtype, staging);
    void *z = gpu_alloc(dense * element), *grad = gpu_alloc(dense * element);
    gpu_upload(z, staging, dense * element);
    int64_t *labels = malloc(((size_t)rows + 1) * sizeof(int64_t));
    make_labels(&c, &state, labels);
    void *device_labels = gpu_alloc((size_t)rows * sizeof(int64_t));
    gpu_upload(device_labels, labels, (size_t)rows * sizeof(int64_t));
    const size_t losses = reduction == CLOSS_REDUCTION_NONE ? (size_t)rows : 1;
    float *device_loss = gpu_alloc((size_t)rows * sizeof(float));
    float *stats[2] = {gpu_alloc((size_t)rows * sizeof(float)),
                       gpu_alloc((size_t)rows * sizeof(float))};
    case_data d = {.rows = rows,
                   .dim = dim,
                   .ld = dim,
                   .device_z = z,
                   .device_grad = grad,
                   .device_labels = device_labels,
                   .device_loss = device_loss,
                   .device_valid = gpu_alloc(2 * sizeof(int64_t))};

    /* [0]: FUSED, [1]: CHUNKED */
    float *got_loss[2], *got_stats[2], *got_grad[2];
    for (int path = 0; path < 2; ++path) {
        c.path = path == 0 ? CLOSS_PATH_FUSED : CLOSS_PATH_CHUNKED;
        const loss_params p = set_options(&c);
        d.device_stats = stats[path];
        gpu_poison(device_loss, (size_t)rows * sizeof(float));
        gpu_poison(stats[path], (size_t)rows * sizeof(float));
        cr_assert_eq(call_gpu(handle, &c, &d, &p, CALL_FORWARD, NULL, 0), CLOSS_STATUS_SUCCESS,
                     "%s: %s", name, closs_last_error());
        got_loss[path] = download_floats(device_loss, losses, CLOSS_F32);
        got_stats[path] = download_floats(stats[path], (size_t)rows, CLOSS_F32);
        gpu_poison(grad, dense * element);
        cr_assert_eq(call_gpu(handle, &c, &d, &p, CALL_FORWARD_BACKWARD, NULL, 0),
                     CLOSS_STATUS_SUCCESS, "%s: %s", name, closs_last_error());
        got_grad[path] = download_floats(grad, dense, dtype);
    }
    const double loss_error = float_error(got_loss[0], got_loss[1], losses);
    cr_expect(loss_error <= 1e-4, "%s: fused vs chunked loss relative error %.3g", name,
              loss_error);
    int64_t wrong = 0;
    for (int64_t i = 0; i < rows; ++i)
        wrong += !(fabs((double)got_stats[0][i] - got_stats[1][i]) <=
                   1e-4 * fmax(fabs((double)got_stats[1][i]), 1.0 / 0.07));
    cr_expect(wrong == 0, "%s: %lld stats differ between the paths", name, (long long)wrong);
    const double tolerance = 2.0 * gradient_tolerance(dtype);
    const double grad_error = float_error(got_grad[0], got_grad[1], dense);
    cr_expect(grad_error <= tolerance, "%s: fused vs chunked gradient error %.3g (tolerance %.3g)",
              name, grad_error, tolerance);

    /* the fused backward from the chunked path's stats */
    c.path = CLOSS_PATH_FUSED;
    const loss_params p = set_options(&c);
    d.device_stats = stats[1];
    d.device_upstream = NULL; /* 1 */
    gpu_poison(grad, dense * element);
    cr_assert_eq(call_gpu(handle, &c, &d, &p, CALL_BACKWARD, NULL, 0), CLOSS_STATUS_SUCCESS,
                 "%s: %s", name, closs_last_error());
    float *crossed = download_floats(grad, dense, dtype);
    const double cross_error = float_error(crossed, got_grad[1], dense);
    cr_expect(cross_error <= tolerance,
              "%s: fused backward from chunked stats: gradient error %.3g (tolerance %.3g)", name,
              cross_error, tolerance);

    free(crossed);
    for (int path = 0; path < 2; ++path) {
        free(got_loss[path]);
        free(got_stats[path]);
        free(got_grad[path]);
    }
    free(labels);
    free(staging);
    free(host);
    gpu_free_all();
}

Test(gpu_contrastive, fused_matches_chunked_at_65536_rows) {
    CLOSS_REQUIRE_GPU();
    if (gpu_test_simulated()) {
        GPU_SIM_LEAVES_OUT("fused against chunked at 65,536 rows");
        return;
    }
    compare_paths(LOSS_NTXENT, CLOSS_F32, CLOSS_REDUCTION_MEAN);
    compare_paths(LOSS_SUPCON, CLOSS_F32, CLOSS_REDUCTION_NONE);
    compare_paths(LOSS_NTXENT, CLOSS_BF16, CLOSS_REDUCTION_NONE);
    compare_paths(LOSS_SUPCON, CLOSS_BF16, CLOSS_REDUCTION_MEAN);
    compare_paths(LOSS_NTXENT, CLOSS_F16, CLOSS_REDUCTION_SUM); /* f16 and bf16: tensor cores */
}

/* ---- row ranges (closs.h "Row ranges") --------------------------------------------------------
 * One rank's share of the batch, three uneven ranges (7, 163 and 130 of 300 rows: inside and
 * across the fused path's 64-row tiles), on the case's path, against the reference's range: the
 * forward's loss, valid and the range's stats (guards after each); the backward from every
 * range's stats gathered, with random upstream gradients (all M for NONE), giving the range's
 * gradient rows; and forward+backward. Normalised, τ = 0.07, SupCon with τ_b = 0.5 and
 * singletons (anchors without a positive, in every range). */
static void check_ranges(loss_kind loss, closs_path_t path, closs_reduction_t reduction,
                         int64_t dim) {
    const int64_t rows = gpu_test_simulated() ? 70 : 300, cuts[] = {0, 7, rows / 2 + 5, rows};
    contrastive_case c = {loss, 1, reduction, CLOSS_F32, rows,      dim,
                          1,    0, path,      1,         CLOSS_I64, LABELS_SINGLETONS};
    uint64_t seed = test_seed(), state = seed | 1;
    char name[300];
    describe(&c, seed, name, sizeof name);
    case_data d = make_case(&c, &state);
    const double tolerance = gradient_tolerance_of(&c, &d);
    float *all_stats = malloc((size_t)rows * sizeof(float));
    float *device_all_stats = gpu_alloc((size_t)rows * sizeof(float));
    double *want_loss = malloc(((size_t)rows + 1) * sizeof(double));
    double *want_grad = malloc((size_t)rows * (size_t)dim * sizeof(double));
    float *got = malloc(((size_t)rows * (size_t)d.ld + 1) * sizeof(float));
    for (int pass = 0; pass < 3; ++pass) /* forward, backward, forward+backward */
        for (int r = 0; r < 3; ++r) {
            const int64_t begin = cuts[r], count = cuts[r + 1] - cuts[r];
            loss_params p = set_options(&c);
            p.ntxent.row_begin = p.supcon.row_begin = begin;
            p.ntxent.row_count = p.supcon.row_count = count;
            const call_kind kind = pass == 0   ? CALL_FORWARD
                                   : pass == 1 ? CALL_BACKWARD
                                               : CALL_FORWARD_BACKWARD;
            char what[64];
            snprintf(what, sizeof what, "%s of rows [%lld, %lld)",
                     pass == 0   ? "forward"
                     : pass == 1 ? "backward"
                                 : "forward+backward",
                     (long long)begin, (long long)(begin + count));
            gpu_poison(d.device_loss, ((size_t)rows + 1) * sizeof(float));
            gpu_poison(d.device_stats, ((size_t)rows + 1) * sizeof(float));
            gpu_poison(d.device_valid, 2 * sizeof(int64_t));
            gpu_poison(d.device_grad, ((size_t)rows * (size_t)d.ld + 1) * sizeof(float));
            case_data view = d; /* the backward reads every range's gathered stats */
            if (kind == CALL_BACKWARD) view.device_stats = device_all_stats;
            const closs_status_t status = call_gpu(handle, &c, &view, &p, kind, NULL, 0);
            cr_assert_eq(status, CLOSS_STATUS_SUCCESS, "%s: %s: %s", name, what,
                         closs_last_error());
            int64_t anchors = 0;
            const double *upstream = kind == CALL_FORWARD_BACKWARD ? NULL : d.upstream;
            cr_assert_eq(call_reference(&c, &d, &p, upstream, want_loss, want_grad, &anchors),
                         CLOSS_STATUS_SUCCESS, "%s", closs_last_error());
            if (kind != CALL_BACKWARD) {
                const size_t losses = reduction == CLOSS_REDUCTION_NONE ? (size_t)count : 1;
                expect_losses(&d, losses, want_loss, loss_floor(&c, &d, anchors), 0, what, name);
                if (loss == LOSS_SUPCON) expect_valid(&d, anchors, what, name);
            }
            if (kind == CALL_FORWARD) {
                gpu_download(got, d.device_stats, ((size_t)count + 1) * sizeof(float));
                cr_expect(isnan(got[count]), "%s: %s wrote past its %lld stats", name, what,
                          (long long)count);
                for (int64_t i = 0; i < count; ++i) {
                    const double want = d.lse[begin + i];
                    cr_expect(fabs(got[i] - want) <= 1e-4 * fmax(fabs(want), d.logit_scale),
                              "%s: %s: stats[%lld] = %.9g, want %.9g", name, what, (long long)i,
                              got[i], want);
                    all_stats[begin + i] = got[i];
                }
                if (r == 2) gpu_upload(device_all_stats, all_stats, (size_t)rows * sizeof(float));
                continue;
            }
            /* The range's rows, and nothing past them (the next row's first element). */
            gpu_download(got, d.device_grad, ((size_t)count * (size_t)d.ld + 1) * sizeof(float));
            cr_expect(isnan(got[count * d.ld]), "%s: %s wrote past the range's gradient rows", name,
                      what);
            for (int64_t i = 0; i < count; ++i)
                memmove(got + i * dim, got + i * d.ld, (size_t)dim * sizeof(float));
            const double error = relative_error(got, want_grad, (size_t)(count * dim));
            cr_expect(error <= tolerance, "%s: %s: gradient relative error %.3g (tolerance %.3g)",
                      name, what, error, tolerance);
        }
    free(got);
    free(want_grad);
    free(want_loss);
    free(all_stats);
    free_case(&d);
}

/* f16 with normalisation and near-zero rows (docs/contract.md, "Numerics"): a zero row and rows of
 * norm 1e-4 and 1e-6, whose gradients (of order 1/‖z‖) pass f16's range, are ±Inf there with the
 * exact value's sign and accurate elsewhere, never NaN, and every other row's gradient is as
 * accurate as usual (a near-zero row's G' would spoil them without the backward's scaled rows,
 * cuda/contrastive_kernels.cuh). NT-Xent and SupCon, MEAN and NONE, both paths (sim: FUSED). */
Test(gpu_contrastive, f16_near_zero_rows) {
    CLOSS_REQUIRE_GPU();
    static const int64_t small_rows[] = {3, 8, 40};
    static const double small_norms[] = {0.0, 1e-4, 1e-6};
    const int sim = gpu_test_simulated();
    uint64_t seed = test_seed(), state = seed | 1;
    for (int index = 0; index < 8; ++index) {
        const closs_path_t path = index / 4 ? CLOSS_PATH_CHUNKED : CLOSS_PATH_FUSED;
        if (sim && path == CLOSS_PATH_CHUNKED) continue; /* no cuBLAS in the simulator */
        contrastive_case c = {(loss_kind)(index % 2),
                              1, /* normalised, τ = 0.07 */
                              index / 2 % 2 ? CLOSS_REDUCTION_NONE : CLOSS_REDUCTION_MEAN,
                              CLOSS_F16,
                              66,
                              index % 2 ? 64 : 17,
                              index % 2,
                              0,
                              path,
                              0,
                              CLOSS_I64,
                              LABELS_CLASSES};
        char name[300];
        describe(&c, seed, name, sizeof name);
        case_data d = make_case(&c, &state);
        /* the near-zero rows, rounded to f16 and uploaded over their rows of z */
        const size_t row_bytes = (size_t)c.dim * 2;
        unsigned char staged[64 * 2];
        for (int s = 0; s < 3; ++s) {
            float *row = d.host + small_rows[s] * c.dim;
            double norm = 0.0;
            for (int64_t e = 0; e < c.dim; ++e) norm += (double)row[e] * row[e];
            for (int64_t e = 0; e < c.dim; ++e)
                row[e] = (float)(row[e] * small_norms[s] / sqrt(norm));
            round_to_dtype(row, (size_t)c.dim, CLOSS_F16, staged);
            gpu_upload((char *)d.device_z + (size_t)small_rows[s] * (size_t)d.ld * 2, staged,
                       row_bytes);
        }
        const loss_params p = set_options(&c);
        const size_t dense = (size_t)c.rows * (size_t)c.dim;
        double *want_loss = malloc(((size_t)c.rows + 1) * sizeof(double));
        double *want = malloc(dense * sizeof(double));
        cr_assert_eq(call_reference(&c, &d, &p, NULL, want_loss, want, NULL), CLOSS_STATUS_SUCCESS,
                     "%s: %s", name, closs_last_error());
        poison_outputs(&c, &d);
        cr_assert_eq(call_gpu(handle, &c, &d, &p, CALL_FORWARD_BACKWARD, NULL, 0),
                     CLOSS_STATUS_SUCCESS, "%s: %s", name, closs_last_error());
        gpu_synchronize();
        unsigned char *strided = malloc((size_t)c.rows * (size_t)d.ld * 2);
        float got[64];
        gpu_download(strided, d.device_grad, (size_t)c.rows * (size_t)d.ld * 2);
        double other_error = 0.0, other_norm = 0.0;
        size_t beyond = 0;
        for (int64_t r = 0; r < c.rows; ++r) {
            widen_from_dtype(strided + (size_t)r * (size_t)d.ld * 2, (size_t)c.dim, CLOSS_F16, got);
            const double *exact = want + r * c.dim;
            const range_check check = check_range(got, exact, (size_t)c.dim, CLOSS_F16);
            const int small = r == small_rows[0] || r == small_rows[1] || r == small_rows[2];
            double row_norm = 0.0;
            for (int64_t e = 0; e < c.dim; ++e) row_norm += exact[e] * exact[e];
            beyond += check.beyond;
            cr_expect(check.first_bad < 0, "%s: row %lld%s: element %lld is %g, exact %.6g", name,
                      (long long)r, small ? " (near zero)" : "", (long long)check.first_bad,
                      check.first_bad < 0 ? 0.0 : got[check.first_bad],
                      check.first_bad < 0 ? 0.0 : exact[check.first_bad]);
            if (small) /* the elements f16 holds, against the row's exact norm */
                cr_expect(sqrt(check.error) <= 2e-3 * sqrt(row_norm),
                          "%s: near-zero row %lld: error %.3g of %.3g", name, (long long)r,
                          sqrt(check.error), sqrt(row_norm));
            else other_error += check.error, other_norm += row_norm;
        }
        cr_expect(sqrt(other_error) <= 2e-3 * sqrt(other_norm),
                  "%s: the other rows' gradient error %.3g of %.3g", name, sqrt(other_error),
                  sqrt(other_norm));
        cr_expect(beyond >= (size_t)c.dim / 2, "%s: only %zu elements beyond f16's range", name,
                  beyond);
        free(strided);
        free(want);
        free(want_loss);
        free_case(&d);
    }
}

Test(gpu_contrastive, row_ranges) {
    CLOSS_REQUIRE_GPU();
    if (gpu_test_simulated()) GPU_SIM_LEAVES_OUT("row ranges on CHUNKED and AUTO at D = 300");
    const closs_reduction_t reductions[] = {CLOSS_REDUCTION_MEAN, CLOSS_REDUCTION_SUM,
                                            CLOSS_REDUCTION_NONE};
    for (int loss = LOSS_NTXENT; loss <= LOSS_SUPCON; ++loss)
        for (int r = 0; r < 3; ++r) {
            check_ranges((loss_kind)loss, CLOSS_PATH_FUSED, reductions[r], 33);
            if (gpu_test_simulated()) continue; /* both others reach cuBLAS (AUTO at D = 300) */
            check_ranges((loss_kind)loss, CLOSS_PATH_CHUNKED, reductions[r], 33);
            check_ranges((loss_kind)loss, CLOSS_PATH_AUTO, reductions[r], 300);
        }
}
