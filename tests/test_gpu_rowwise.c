/* The GPU row-wise losses (pair, triplet, cosine) against the CPU reference.
 *
 * Each case draws fresh random inputs, rounds them to the case's dtype (the reference then sees
 * exactly the values the GPU sees), uploads them with the case's layout (padded leading
 * dimension, base pointer off 16-byte alignment), poisons every output with NaN, and checks
 *   - forward+backward: the loss and every gradient (upstream 1);
 *   - backward alone with random upstream gradients (one per row for NONE);
 *   - forward alone (per-row losses for NONE);
 *   - a second forward+backward gives the same bits.
 * Gradients are compared norm-wise, relative to the reference's norm or, with cosines, to a floor
 * (cosine_floor()): at D = 1 every pair of rows is parallel and the cosine's gradient is exactly 0,
 * while float arithmetic leaves the rounding of the terms that cancel.
 * Without a device every test is skipped, visibly. CLOSS_GPU_TEST_SCALE=sim (gpu_scale.h) runs
 * the sizes marked "sim" instead. */
#define _POSIX_C_SOURCE 200809L /* nanosleep */
#include <criterion/criterion.h>
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "closs.h"
#include "gpu.h" /* the handle's insides (host/, private): to fake a binding to another device */
#include "dtype_range.h"
#include "gpu_support.h"

typedef enum { LOSS_PAIR, LOSS_TRIPLET, LOSS_COSINE } loss_kind;

typedef struct rowwise_case {
    loss_kind loss;
    int variant; /* which option set of the loss, see set_options() */
    closs_reduction_t reduction;
    closs_dtype_t dtype;
    int64_t rows, dim;
    int padded;     /* ld = dim + 5 */
    int misaligned; /* every base pointer one element past a 16-byte boundary */
} rowwise_case;

/* The parameters of every loss, one variant of options each. */
typedef struct loss_params {
    closs_pair_params pair;
    closs_triplet_params triplet;
    closs_cosine_params cosine;
} loss_params;

enum { PAIR_VARIANTS = 3, TRIPLET_VARIANTS = 5, COSINE_VARIANTS = 3 };

static loss_params set_options(const rowwise_case *c) {
    loss_params p = {CLOSS_PAIR_PARAMS_INIT, CLOSS_TRIPLET_PARAMS_INIT, CLOSS_COSINE_PARAMS_INIT};
    static const double pair_margins[] = {1.0, 0.0, 0.5};
    static const closs_distance_t pair_distances[] = {
        CLOSS_DISTANCE_EUCLIDEAN, CLOSS_DISTANCE_EUCLIDEAN, CLOSS_DISTANCE_COSINE};
    p.pair.margin = pair_margins[c->variant % PAIR_VARIANTS];
    p.pair.distance = pair_distances[c->variant % PAIR_VARIANTS];
    static const double triplet_margins[] = {1.0, 0.5, 0.2, -0.1, 4.0};
    static const closs_distance_t triplet_distances[] = {
        CLOSS_DISTANCE_SQEUCLIDEAN, CLOSS_DISTANCE_EUCLIDEAN, CLOSS_DISTANCE_COSINE,
        CLOSS_DISTANCE_COSINE, CLOSS_DISTANCE_SQEUCLIDEAN};
    static const int triplet_swaps[] = {0, 1, 0, 1, 1};
    p.triplet.margin = triplet_margins[c->variant % TRIPLET_VARIANTS];
    p.triplet.distance = triplet_distances[c->variant % TRIPLET_VARIANTS];
    p.triplet.swap = triplet_swaps[c->variant % TRIPLET_VARIANTS];
    static const double cosine_margins[] = {0.0, 0.3, -0.5};
    static const int cosine_squared[] = {0, 1, 0};
    p.cosine.margin = cosine_margins[c->variant % COSINE_VARIANTS];
    p.cosine.squared = cosine_squared[c->variant % COSINE_VARIANTS];
    p.pair.reduction = p.triplet.reduction = p.cosine.reduction = c->reduction;
    return p;
}

static int input_count(loss_kind loss) { return loss == LOSS_TRIPLET ? 3 : 2; }

/* Everything one case needs on both sides. */
typedef struct case_data {
    int64_t rows, dim, ld;
    int inputs;
    float *host[3];   /* the dtype-rounded values, dense */
    float *labels;    /* y (pair, cosine), f32 */
    double *upstream; /* random upstream gradients: 1 value or rows */
    void *device[3];  /* inputs on the device with the case's layout */
    void *device_grad[3];
    float *device_labels, *device_loss, *device_upstream;
} case_data;

static void *offset(void *base, const rowwise_case *c) {
    return (char *)base + (c->misaligned ? closs_dtype_size(c->dtype) : 0);
}

static case_data make_case(const rowwise_case *c, uint64_t *state) {
    case_data d = {.rows = c->rows,
                   .dim = c->dim,
                   .ld = c->dim + (c->padded ? 5 : 0),
                   .inputs = input_count(c->loss)};
    const size_t dense = (size_t)c->rows * (size_t)c->dim, element = closs_dtype_size(c->dtype);
    const size_t strided_bytes = ((size_t)c->rows * (size_t)d.ld + 1) * element;
    void *staging = malloc(strided_bytes + 16);
    for (int k = 0; k < d.inputs; ++k) {
        d.host[k] = malloc((dense + 1) * sizeof(float));
        for (size_t e = 0; e < dense; ++e) d.host[k][e] = (float)(2.0 * uniform01(state) - 1.0);
        /* Rounded in place, stored row by row at the case's leading dimension. */
        for (int64_t r = 0; r < c->rows; ++r)
            round_to_dtype(d.host[k] + r * c->dim, (size_t)c->dim, c->dtype,
                           (char *)staging + (size_t)r * (size_t)d.ld * element);
        void *base = gpu_alloc(strided_bytes + 16);
        d.device[k] = offset(base, c);
        gpu_upload(d.device[k], staging, (size_t)c->rows * (size_t)d.ld * element);
        d.device_grad[k] = offset(gpu_alloc(strided_bytes + 16), c);
    }
    free(staging);
    d.labels = malloc(((size_t)c->rows + 1) * sizeof(float));
    for (int64_t i = 0; i < c->rows; ++i)
        d.labels[i] = i % 3 == 2 ? (float)uniform01(state) : (float)(i % 2);
    d.device_labels = gpu_alloc(((size_t)c->rows + 1) * sizeof(float));
    gpu_upload(d.device_labels, d.labels, (size_t)c->rows * sizeof(float));
    const size_t loss_count = c->reduction == CLOSS_REDUCTION_NONE ? (size_t)c->rows : 1;
    d.upstream = malloc((loss_count + 1) * sizeof(double));
    float *upstream_f32 = malloc((loss_count + 1) * sizeof(float));
    for (size_t i = 0; i < loss_count; ++i) {
        upstream_f32[i] = (float)(0.25 + 1.5 * uniform01(state));
        d.upstream[i] = upstream_f32[i];
    }
    d.device_upstream = gpu_alloc((loss_count + 1) * sizeof(float));
    gpu_upload(d.device_upstream, upstream_f32, loss_count * sizeof(float));
    free(upstream_f32);
    d.device_loss = gpu_alloc((loss_count + 1) * sizeof(float));
    return d;
}

static void free_case(case_data *d) {
    for (int k = 0; k < d->inputs; ++k) free(d->host[k]);
    free(d->labels);
    free(d->upstream);
    gpu_free_all();
}

typedef enum { CALL_FORWARD_BACKWARD, CALL_FORWARD, CALL_BACKWARD } call_kind;

static closs_status_t call_gpu(closs_handle_t handle, const rowwise_case *c, const case_data *d,
                               call_kind kind) {
    loss_params p = set_options(c);
    closs_matrix_t m[3];
    closs_grad_t g[3];
    for (int k = 0; k < 3; ++k) {
        m[k] = closs_matrix_ld(d->device[k], c->dtype, c->rows, c->dim, d->ld);
        g[k] = (closs_grad_t){d->device_grad[k], d->ld};
    }
    closs_vector_t y = closs_vector(d->device_labels, CLOSS_F32, c->rows);
    float *loss = d->device_loss;
    const float *upstream = d->device_upstream;
    switch (c->loss) {
    case LOSS_PAIR:
        if (kind == CALL_FORWARD)
            return closs_pair_forward(handle, &p.pair, m[0], m[1], y, loss, NULL, 0, NULL);
        if (kind == CALL_BACKWARD)
            return closs_pair_backward(handle, &p.pair, m[0], m[1], y, upstream, g[0], g[1], NULL,
                                       0, NULL);
        return closs_pair_forward_backward(handle, &p.pair, m[0], m[1], y, loss, g[0], g[1], NULL,
                                           0, NULL);
    case LOSS_TRIPLET:
        if (kind == CALL_FORWARD)
            return closs_triplet_forward(handle, &p.triplet, m[0], m[1], m[2], loss, NULL, 0, NULL);
        if (kind == CALL_BACKWARD)
            return closs_triplet_backward(handle, &p.triplet, m[0], m[1], m[2], upstream, g[0],
                                          g[1], g[2], NULL, 0, NULL);
        return closs_triplet_forward_backward(handle, &p.triplet, m[0], m[1], m[2], loss, g[0],
                                              g[1], g[2], NULL, 0, NULL);
    case LOSS_COSINE:
        if (kind == CALL_FORWARD)
            return closs_cosine_forward(handle, &p.cosine, m[0], m[1], y, loss, NULL, 0, NULL);
        if (kind == CALL_BACKWARD)
            return closs_cosine_backward(handle, &p.cosine, m[0], m[1], y, upstream, g[0], g[1],
                                         NULL, 0, NULL);
        return closs_cosine_forward_backward(handle, &p.cosine, m[0], m[1], y, loss, g[0], g[1],
                                             NULL, 0, NULL);
    }
    return CLOSS_STATUS_INVALID_ARGUMENT;
}

static closs_status_t call_reference(const rowwise_case *c, const case_data *d,
                                     const double *upstream, double *loss, double *grads[3]) {
    loss_params p = set_options(c);
    closs_matrix_t m[3];
    for (int k = 0; k < 3; ++k) m[k] = closs_matrix(d->host[k], CLOSS_F32, c->rows, c->dim);
    closs_vector_t y = closs_vector(d->labels, CLOSS_F32, c->rows);
    if (c->loss == LOSS_PAIR)
        return closs_ref_pair(&p.pair, m[0], m[1], y, upstream, loss, grads[0], grads[1]);
    if (c->loss == LOSS_TRIPLET)
        return closs_ref_triplet(&p.triplet, m[0], m[1], m[2], upstream, loss, grads[0], grads[1],
                                 grads[2]);
    return closs_ref_cosine(&p.cosine, m[0], m[1], y, upstream, loss, grads[0], grads[1]);
}

static void describe(const rowwise_case *c, uint64_t seed, char *out, size_t size) {
    static const char *losses[] = {"pair", "triplet", "cosine"};
    static const char *reductions[] = {"mean", "sum", "none"};
    static const char *dtypes[] = {"f32", "f16", "bf16"};
    snprintf(out, size, "%s variant %d %s %s rows=%lld dim=%lld%s%s (CLOSS_TEST_SEED=%llu)",
             losses[c->loss], c->variant, reductions[c->reduction], dtypes[c->dtype],
             (long long)c->rows, (long long)c->dim, c->padded ? " padded" : "",
             c->misaligned ? " misaligned" : "", (unsigned long long)seed);
}

/* The distance between rows r of inputs j and k, in double, as the loss defines it. */
static double row_distance(const rowwise_case *c, const case_data *d, closs_distance_t distance,
                           int j, int k, int64_t r) {
    double dot = 0.0, jj = 0.0, kk = 0.0, squares = 0.0;
    for (int64_t e = 0; e < c->dim; ++e) {
        const double x = d->host[j][r * c->dim + e], y = d->host[k][r * c->dim + e];
        dot += x * y, jj += x * x, kk += y * y, squares += (x - y) * (x - y);
    }
    if (distance == CLOSS_DISTANCE_SQEUCLIDEAN) return squares;
    if (distance == CLOSS_DISTANCE_EUCLIDEAN) return sqrt(squares);
    return 1.0 - dot / (fmax(sqrt(jj), 1e-8) * fmax(sqrt(kk), 1e-8));
}

/* The floor of the loss comparison: float arithmetic errs by some ulps of the terms a row's loss
 * is made of, not of the loss, which can be much smaller (triplet's d(a, p) − d(a, n) + α: two
 * distances of hundreds at D = 520 whose difference is a few units). The row's term scale T_i is
 * the sum of those terms' magnitudes ((d + m)² for pair, d(a, p) + d(a, n) (+ d(p, n)) + |α| for
 * triplet, (1 + |δ|)^q for cosine); a sum of D products errs by about √D·2^-24 of them, and the
 * floor allows ten times that, weighted as the loss is (1/rows for MEAN; per row for NONE), in
 * units of the 1e-4 relative tolerance. */
static double loss_floor(const rowwise_case *c, const case_data *d) {
    const loss_params p = set_options(c);
    double sum = 0.0, squares = 0.0;
    for (int64_t r = 0; r < c->rows; ++r) {
        double terms;
        if (c->loss == LOSS_PAIR) {
            const double m = p.pair.margin, dist = row_distance(c, d, p.pair.distance, 0, 1, r);
            terms = (dist + m) * (dist + m);
        } else if (c->loss == LOSS_TRIPLET) {
            const closs_distance_t distance = p.triplet.distance;
            terms = row_distance(c, d, distance, 0, 1, r) + row_distance(c, d, distance, 0, 2, r) +
                    fabs(p.triplet.margin);
            if (p.triplet.swap) terms += row_distance(c, d, distance, 1, 2, r);
        } else {
            terms = pow(1.0 + fabs(p.cosine.margin), p.cosine.squared ? 2.0 : 1.0);
        }
        sum += terms, squares += terms * terms;
    }
    const double scale = c->reduction == CLOSS_REDUCTION_NONE ? sqrt(squares)
                         : c->reduction == CLOSS_REDUCTION_MEAN && c->rows > 0
                             ? sum / (double)c->rows
                             : sum;
    return 10.0 * sqrt((double)c->dim) * 0x1p-24 * scale / 1e-4;
}

/* Downloads `count` floats of loss and compares them with the reference, relative to
 * max(‖want‖, floor) (loss_floor(), or 0). */
static void expect_losses(const case_data *d, size_t count, const double *want, double floor,
                          const char *what, const char *name) {
    if (count == 0) return;
    float *got = malloc(count * sizeof(float));
    gpu_download(got, d->device_loss, count * sizeof(float));
    double error = relative_error_above(got, want, count, floor);
    cr_expect(error <= 1e-4, "%s: %s loss relative error %.3g (got %.9g, want %.9g)", name, what,
              error, got[0], want[0]);
    free(got);
}

/* A bound on |∂ℓ/∂cos| for one row, over the cosines an input row enters: pair
 * |2yd − 2(1 − y)h| ≤ 2·max(2, m) (d = 1 − cos ≤ 2, h ≤ m); triplet 1 per distance, two at most;
 * cosine |−y + (1 − y)·q·h^(q−1)| ≤ max(1, 2(1 − δ)) (h ≤ 1 − δ). 0: no cosine in this loss. */
static double cosine_slope_bound(const rowwise_case *c) {
    const loss_params p = set_options(c);
    if (c->loss == LOSS_PAIR)
        return p.pair.distance == CLOSS_DISTANCE_COSINE ? 2.0 * fmax(2.0, p.pair.margin) : 0.0;
    if (c->loss == LOSS_TRIPLET) return p.triplet.distance == CLOSS_DISTANCE_COSINE ? 2.0 : 0.0;
    return p.cosine.squared ? fmax(1.0, 2.0 * (1.0 - p.cosine.margin)) : 1.0;
}

/* The floor of input k's gradient comparison where the loss has cosines. ∂cos(x_k, x_j)/∂x_k =
 * x_j/(n_k n_j) − cos·x_k/n_k² is the difference of two terms of norm 1/n_k (n = max(‖x‖, 1e-8)),
 * which cancel exactly at D = 1; float arithmetic errs by some ulps of them. The floor is a tenth
 * of their size, weighted as the loss is: 0.1·sqrt(Σ_i (w_i·C/n_ki)²), C = cosine_slope_bound(),
 * w_i the row's upstream weight (1/rows for MEAN). 0 without cosines. */
static double cosine_floor(const rowwise_case *c, const case_data *d, const double *upstream,
                           int k) {
    const double slope = cosine_slope_bound(c);
    if (slope == 0.0) return 0.0;
    double sum = 0.0;
    for (int64_t i = 0; i < c->rows; ++i) {
        double weight = upstream ? upstream[c->reduction == CLOSS_REDUCTION_NONE ? i : 0] : 1.0;
        if (c->reduction == CLOSS_REDUCTION_MEAN) weight /= (double)c->rows;
        double squares = 0.0;
        for (int64_t e = 0; e < c->dim; ++e) {
            const double value = d->host[k][i * c->dim + e];
            squares += value * value;
        }
        const double term = weight * slope / fmax(sqrt(squares), 1e-8);
        sum += term * term;
    }
    return 0.1 * sqrt(sum);
}

static void expect_gradients(const rowwise_case *c, const case_data *d, double *const want[3],
                             const double *upstream, const char *what, const char *name) {
    const size_t dense = (size_t)c->rows * (size_t)c->dim, element = closs_dtype_size(c->dtype);
    char *strided = malloc((size_t)c->rows * (size_t)d->ld * element + 1);
    float *got = malloc((dense + 1) * sizeof(float));
    for (int k = 0; k < d->inputs; ++k) {
        gpu_download(strided, d->device_grad[k], (size_t)c->rows * (size_t)d->ld * element);
        for (int64_t r = 0; r < c->rows; ++r)
            widen_from_dtype(strided + (size_t)r * (size_t)d->ld * element, (size_t)c->dim,
                             c->dtype, got + r * c->dim);
        double error = relative_error_above(got, want[k], dense, cosine_floor(c, d, upstream, k));
        cr_expect(error <= gradient_tolerance(c->dtype),
                  "%s: %s gradient %d relative error %.3g (tolerance %.1g)", name, what, k, error,
                  gradient_tolerance(c->dtype));
    }
    free(got);
    free(strided);
}

static void poison_outputs(const rowwise_case *c, const case_data *d) {
    const size_t loss_count = c->reduction == CLOSS_REDUCTION_NONE ? (size_t)c->rows : 1;
    gpu_poison(d->device_loss, loss_count * sizeof(float));
    for (int k = 0; k < d->inputs; ++k)
        gpu_poison(d->device_grad[k], (size_t)c->rows * (size_t)d->ld * closs_dtype_size(c->dtype));
}

static void check_case(closs_handle_t handle, const rowwise_case *c) {
    uint64_t seed = test_seed(), state = seed | 1;
    char name[200];
    describe(c, seed, name, sizeof name);
    case_data d = make_case(c, &state);
    const size_t dense = (size_t)c->rows * (size_t)c->dim;
    const size_t loss_count = c->reduction == CLOSS_REDUCTION_NONE ? (size_t)c->rows : 1;
    double *want_loss = malloc((loss_count + 1) * sizeof(double));
    double *want[3];
    for (int k = 0; k < 3; ++k) want[k] = malloc((dense + 1) * sizeof(double));

    /* forward+backward, upstream 1 */
    cr_assert_eq(call_reference(c, &d, NULL, want_loss, want), CLOSS_STATUS_SUCCESS, "%s: %s", name,
                 closs_last_error());
    poison_outputs(c, &d);
    cr_assert_eq(call_gpu(handle, c, &d, CALL_FORWARD_BACKWARD), CLOSS_STATUS_SUCCESS, "%s: %s",
                 name, closs_last_error());
    gpu_synchronize();
    expect_losses(&d, loss_count, want_loss, loss_floor(c, &d), "forward+backward", name);
    expect_gradients(c, &d, want, NULL, "forward+backward", name);

    /* the same bits again */
    const size_t grad_bytes = (size_t)c->rows * (size_t)d.ld * closs_dtype_size(c->dtype);
    char *first = malloc(grad_bytes + loss_count * sizeof(float) + 1);
    char *second = malloc(grad_bytes + loss_count * sizeof(float) + 1);
    gpu_download(first, d.device_grad[0], grad_bytes);
    gpu_download(first + grad_bytes, d.device_loss, loss_count * sizeof(float));
    poison_outputs(c, &d);
    cr_assert_eq(call_gpu(handle, c, &d, CALL_FORWARD_BACKWARD), CLOSS_STATUS_SUCCESS);
    gpu_download(second, d.device_grad[0], grad_bytes);
    gpu_download(second + grad_bytes, d.device_loss, loss_count * sizeof(float));
    cr_expect(memcmp(first, second, grad_bytes + loss_count * sizeof(float)) == 0,
              "%s: two identical calls gave different bits", name);
    free(first);
    free(second);

    /* backward alone, with upstream gradients other than 1 */
    cr_assert_eq(call_reference(c, &d, d.upstream, want_loss, want), CLOSS_STATUS_SUCCESS);
    poison_outputs(c, &d);
    cr_assert_eq(call_gpu(handle, c, &d, CALL_BACKWARD), CLOSS_STATUS_SUCCESS, "%s: %s", name,
                 closs_last_error());
    gpu_synchronize();
    expect_gradients(c, &d, want, d.upstream, "backward", name);

    /* forward alone */
    cr_assert_eq(call_reference(c, &d, NULL, want_loss, want), CLOSS_STATUS_SUCCESS);
    poison_outputs(c, &d);
    cr_assert_eq(call_gpu(handle, c, &d, CALL_FORWARD), CLOSS_STATUS_SUCCESS, "%s: %s", name,
                 closs_last_error());
    gpu_synchronize();
    expect_losses(&d, loss_count, want_loss, loss_floor(c, &d), "forward", name);

    for (int k = 0; k < 3; ++k) free(want[k]);
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

TestSuite(gpu_rowwise, .init = setup, .fini = teardown, .timeout = 600);

/* Every size of the sweep, for each loss: options, reductions, dtypes and layouts rotate with the
 * size so that the sweep covers them all without a full cross product. The sim sizes are in the
 * order that gives every dtype a vectorised case (rows > 0, 16-byte aligned rows). */
static void sweep_sizes(loss_kind loss) {
    static const int64_t full_rows[] = {0, 1, 7, 1000, 100003}, sim_rows[] = {0, 1, 7, 33};
    static const int64_t full_dims[] = {1, 3, 64, 127, 128, 1024, 4099},
                         sim_dims[] = {1, 64, 3, 130, 520};
    const int sim = gpu_test_simulated();
    const int64_t *rows = sim ? sim_rows : full_rows, *dims = sim ? sim_dims : full_dims;
    const size_t row_count =
        sim ? sizeof sim_rows / sizeof sim_rows[0] : sizeof full_rows / sizeof full_rows[0];
    const size_t dim_count =
        sim ? sizeof sim_dims / sizeof sim_dims[0] : sizeof full_dims / sizeof full_dims[0];
    int index = 0;
    for (size_t r = 0; r < row_count; ++r)
        for (size_t d = 0; d < dim_count; ++d, ++index) {
            if (rows[r] * dims[d] > 13000000) continue; /* the reference's time and memory */
            rowwise_case c = {loss,
                              index,
                              (closs_reduction_t)(index % 3),
                              (closs_dtype_t)(index % 3) /* f32, f16, bf16 */,
                              rows[r],
                              dims[d],
                              index % 2,
                              index % 4 == 1};
            check_case(handle, &c);
        }
}

Test(gpu_rowwise, pair_sizes) {
    CLOSS_REQUIRE_GPU();
    sweep_sizes(LOSS_PAIR);
}

Test(gpu_rowwise, triplet_sizes) {
    CLOSS_REQUIRE_GPU();
    sweep_sizes(LOSS_TRIPLET);
}

Test(gpu_rowwise, cosine_sizes) {
    CLOSS_REQUIRE_GPU();
    sweep_sizes(LOSS_COSINE);
}

/* Every option set × reduction × dtype at one odd size (sim: a smaller one), aligned and not. */
Test(gpu_rowwise, every_option_reduction_and_dtype) {
    CLOSS_REQUIRE_GPU();
    static const int variants[] = {PAIR_VARIANTS, TRIPLET_VARIANTS, COSINE_VARIANTS};
    const int sim = gpu_test_simulated();
    for (int loss = 0; loss < 3; ++loss)
        for (int variant = 0; variant < variants[loss]; ++variant)
            for (int reduction = 0; reduction < 3; ++reduction)
                for (int dtype = 0; dtype < 3; ++dtype) {
                    rowwise_case c = {(loss_kind)loss,
                                      variant,
                                      (closs_reduction_t)reduction,
                                      (closs_dtype_t)dtype,
                                      sim ? 9 : 1000,
                                      sim ? 37 : 127,
                                      variant % 2,
                                      (variant + dtype) % 2};
                    check_case(handle, &c);
                }
}

/* Outputs beyond the dtype's range (tests/dtype_range.h, docs/contract.md "Numerics"): the first
 * input's row 2 is zero and row 4 has norm 1e-6, so that the cosine losses' gradients reach
 * 1e7-1e16. In every dtype: nothing NaN, Inf of the exact value's sign where f16 (or another dtype)
 * cannot hold it, every other element compared row by row. */
Test(gpu_rowwise, gradient_beyond_the_range_is_inf) {
    CLOSS_REQUIRE_GPU();
    static const int variants[] = {PAIR_VARIANTS, TRIPLET_VARIANTS, COSINE_VARIANTS};
    uint64_t seed = test_seed(), state = seed | 1;
    size_t beyond = 0;
    for (int loss = 0; loss < 3; ++loss)
        for (int variant = 0; variant < variants[loss]; ++variant)
            for (int dtype = 0; dtype < 3; ++dtype) {
                const rowwise_case c = {(loss_kind)loss,
                                        variant,
                                        (closs_reduction_t)(variant % 3),
                                        (closs_dtype_t)dtype,
                                        6,
                                        8,
                                        0,
                                        0};
                char name[200];
                describe(&c, seed, name, sizeof name);
                case_data d = make_case(&c, &state);
                const size_t element = closs_dtype_size(c.dtype),
                             row_bytes = (size_t)c.dim * element;
                char *staging = malloc((size_t)c.rows * row_bytes);
                for (int64_t e = 0; e < c.dim; ++e) {
                    d.host[0][2 * c.dim + e] = 0.0f;
                    d.host[0][4 * c.dim + e] =
                        (float)((e % 2 ? -1e-6 : 1e-6) / sqrt((double)c.dim));
                }
                round_to_dtype(d.host[0], (size_t)(c.rows * c.dim), c.dtype, staging);
                gpu_upload(d.device[0], staging, (size_t)c.rows * row_bytes);
                free(staging);
                double *want[3], want_loss[6];
                for (int k = 0; k < 3; ++k)
                    want[k] = malloc((size_t)(c.rows * c.dim) * sizeof(double));
                cr_assert_eq(call_reference(&c, &d, NULL, want_loss, want), CLOSS_STATUS_SUCCESS);
                poison_outputs(&c, &d);
                cr_assert_eq(call_gpu(handle, &c, &d, CALL_FORWARD_BACKWARD), CLOSS_STATUS_SUCCESS,
                             "%s: %s", name, closs_last_error());
                gpu_synchronize();
                float got[8 * 6];
                char stored[8 * 6 * 4];
                gpu_download(stored, d.device_loss, sizeof(float));
                memcpy(got, stored, sizeof(float));
                cr_expect(isfinite(got[0]), "%s: loss %g", name, got[0]);
                for (int k = 0; k < d.inputs; ++k) {
                    gpu_download(stored, d.device_grad[k], (size_t)c.rows * row_bytes);
                    widen_from_dtype(stored, (size_t)(c.rows * c.dim), c.dtype, got);
                    for (int64_t row = 0; row < c.rows; ++row) {
                        const float *got_row = got + row * c.dim;
                        const double *want_row = want[k] + row * c.dim;
                        const range_check check =
                            check_range(got_row, want_row, (size_t)c.dim, c.dtype);
                        beyond += check.beyond;
                        cr_expect(check.first_bad < 0,
                                  "%s: gradient %d [%lld][%lld] = %g, exact %.6g", name, k,
                                  (long long)row, (long long)check.first_bad,
                                  check.first_bad < 0 ? 0.0 : got_row[check.first_bad],
                                  check.first_bad < 0 ? 0.0 : want_row[check.first_bad]);
                        cr_expect(sqrt(check.error) <=
                                      gradient_tolerance(c.dtype) * sqrt(check.norm) + 1e-4,
                                  "%s: gradient %d row %lld: error %.3g of %.3g", name, k,
                                  (long long)row, sqrt(check.error), sqrt(check.norm));
                    }
                }
                for (int k = 0; k < 3; ++k) free(want[k]);
                free_case(&d);
            }
    cr_expect_gt(beyond, 0, "no gradient was beyond its dtype's range: the test checks nothing");
}

/* Check mode reads the verdict back before computing: a NaN input or a label outside [0, 1] is
 * reported with its row, and no output is written. */
Test(gpu_rowwise, check_mode) {
    CLOSS_REQUIRE_GPU();
    uint64_t state = test_seed() | 1;
    rowwise_case c = {LOSS_PAIR, 0, CLOSS_REDUCTION_MEAN, CLOSS_F32, 64, 16, 0, 0};
    case_data d = make_case(&c, &state);
    closs_pair_params params = CLOSS_PAIR_PARAMS_INIT;
    params.check_inputs = 1;
    const float nan_value = NAN, bad_label = 1.5f;
    gpu_upload((float *)d.device[1] + 37 * 16 + 3, &nan_value, sizeof nan_value);
    gpu_upload(d.device_labels + 12, &bad_label, sizeof bad_label);
    poison_outputs(&c, &d);
    closs_grad_t g1 = {d.device_grad[0], 16}, g2 = {d.device_grad[1], 16};
    closs_matrix_t x1 = closs_matrix(d.device[0], CLOSS_F32, 64, 16);
    closs_matrix_t x2 = closs_matrix(d.device[1], CLOSS_F32, 64, 16);
    closs_vector_t y = closs_vector(d.device_labels, CLOSS_F32, 64);
    cr_expect_eq(closs_pair_forward_backward(handle, &params, x1, x2, y, d.device_loss, g1, g2,
                                             NULL, 0, NULL),
                 CLOSS_STATUS_NONFINITE_INPUT);
    cr_expect(strstr(closs_last_error(), "row 37"), "%s", closs_last_error());
    float loss;
    gpu_download(&loss, d.device_loss, sizeof loss);
    cr_expect(isnan(loss), "check mode wrote the loss before failing");

    const float finite_value = 0.5f;
    gpu_upload((float *)d.device[1] + 37 * 16 + 3, &finite_value, sizeof finite_value);
    cr_expect_eq(closs_pair_forward_backward(handle, &params, x1, x2, y, d.device_loss, g1, g2,
                                             NULL, 0, NULL),
                 CLOSS_STATUS_INVALID_ARGUMENT);
    cr_expect(strstr(closs_last_error(), "y[12]"), "%s", closs_last_error());
    free_case(&d);
}

/* Check mode's kernel in every dtype, for two inputs and three: a NaN (all bits set: NaN in every
 * dtype) in any input is found, and nothing is written. */
Test(gpu_rowwise, check_mode_every_dtype_and_input) {
    CLOSS_REQUIRE_GPU();
    for (int loss = LOSS_PAIR; loss <= LOSS_TRIPLET; ++loss)
        for (int dtype = 0; dtype < 3; ++dtype)
            for (int input = 0; input < input_count((loss_kind)loss); ++input) {
                uint64_t state = test_seed() | 1;
                rowwise_case c = {
                    (loss_kind)loss, 0, CLOSS_REDUCTION_NONE, (closs_dtype_t)dtype, 24, 9, 1,
                    dtype % 2};
                case_data d = make_case(&c, &state);
                const size_t element = closs_dtype_size(c.dtype);
                gpu_poison((char *)d.device[input] + (size_t)(13 * d.ld + 8) * element, element);
                poison_outputs(&c, &d);
                loss_params p = set_options(&c);
                p.pair.check_inputs = p.triplet.check_inputs = 1;
                closs_matrix_t m[3];
                closs_grad_t g[3];
                for (int k = 0; k < 3; ++k) {
                    m[k] = closs_matrix_ld(d.device[k], c.dtype, c.rows, c.dim, d.ld);
                    g[k] = (closs_grad_t){d.device_grad[k], d.ld};
                }
                const closs_vector_t y = closs_vector(d.device_labels, CLOSS_F32, c.rows);
                const closs_status_t status =
                    loss == LOSS_PAIR
                        ? closs_pair_forward_backward(handle, &p.pair, m[0], m[1], y, d.device_loss,
                                                      g[0], g[1], NULL, 0, NULL)
                        : closs_triplet_forward_backward(handle, &p.triplet, m[0], m[1], m[2],
                                                         d.device_loss, g[0], g[1], g[2], NULL, 0,
                                                         NULL);
                cr_expect_eq(status, CLOSS_STATUS_NONFINITE_INPUT, "loss %d dtype %d input %d: %s",
                             loss, dtype, input, closs_last_error());
                cr_expect(strstr(closs_last_error(), "row 13"), "%s", closs_last_error());
                float first_loss;
                gpu_download(&first_loss, d.device_loss, sizeof first_loss);
                cr_expect(isnan(first_loss), "check mode wrote a loss before failing");
                free_case(&d);
            }
}

/* The caller's workspace: too small is refused before anything runs; the queried size works at
 * any address (1 byte and 256 bytes past cudaMalloc's alignment: the call aligns up inside it). */
Test(gpu_rowwise, caller_workspace) {
    CLOSS_REQUIRE_GPU();
    uint64_t state = test_seed() | 1;
    const int64_t rows = gpu_test_simulated() ? 40 : 5000;
    rowwise_case c = {LOSS_TRIPLET, 0, CLOSS_REDUCTION_SUM, CLOSS_F32, rows, 32, 0, 0};
    case_data d = make_case(&c, &state);
    closs_triplet_params params = CLOSS_TRIPLET_PARAMS_INIT;
    params.reduction = CLOSS_REDUCTION_SUM;
    size_t bytes = 0;
    cr_assert_eq(closs_triplet_workspace_size(handle, &params, rows, 32, CLOSS_F32, &bytes),
                 CLOSS_STATUS_SUCCESS);
    cr_assert_gt(bytes, 0);
    char *allocation = gpu_alloc(bytes + 256);
    closs_matrix_t m[3];
    for (int k = 0; k < 3; ++k) m[k] = closs_matrix(d.device[k], CLOSS_F32, rows, 32);
    double want;
    double *no_grads[3] = {NULL, NULL, NULL};
    cr_assert_eq(call_reference(&c, &d, NULL, &want, no_grads), CLOSS_STATUS_SUCCESS);
    const size_t offsets[] = {0, 1, 256};
    for (size_t i = 0; i < sizeof offsets / sizeof offsets[0]; ++i) {
        void *workspace = allocation + offsets[i];
        cr_expect_eq(closs_triplet_forward(handle, &params, m[0], m[1], m[2], d.device_loss,
                                           workspace, bytes - 1, NULL),
                     CLOSS_STATUS_WORKSPACE_TOO_SMALL);
        gpu_poison(d.device_loss, sizeof(float));
        cr_expect_eq(closs_triplet_forward(handle, &params, m[0], m[1], m[2], d.device_loss,
                                           workspace, bytes, NULL),
                     CLOSS_STATUS_SUCCESS, "offset %zu: %s", offsets[i], closs_last_error());
        gpu_synchronize();
        char what[64];
        snprintf(what, sizeof what, "caller workspace at offset %zu", offsets[i]);
        expect_losses(&d, 1, &want, loss_floor(&c, &d), what, "triplet sum");
    }

    /* pair's and cosine's own queries serve them too (the same inputs, y in [0, 1]) */
    const closs_pair_params pair = CLOSS_PAIR_PARAMS_INIT;
    const closs_cosine_params cosine = CLOSS_COSINE_PARAMS_INIT;
    const closs_vector_t y = closs_vector(d.device_labels, CLOSS_F32, rows);
    size_t pair_bytes = 0, cosine_bytes = 0;
    cr_assert_eq(closs_pair_workspace_size(handle, &pair, rows, 32, CLOSS_F32, &pair_bytes),
                 CLOSS_STATUS_SUCCESS, "%s", closs_last_error());
    cr_assert_eq(closs_cosine_workspace_size(handle, &cosine, rows, 32, CLOSS_F32, &cosine_bytes),
                 CLOSS_STATUS_SUCCESS, "%s", closs_last_error());
    void *pair_workspace = gpu_alloc(pair_bytes), *cosine_workspace = gpu_alloc(cosine_bytes);
    cr_expect_eq(closs_pair_forward(handle, &pair, m[0], m[1], y, d.device_loss, pair_workspace,
                                    pair_bytes, NULL),
                 CLOSS_STATUS_SUCCESS, "pair: %s", closs_last_error());
    cr_expect_eq(closs_cosine_forward(handle, &cosine, m[0], m[1], y, d.device_loss,
                                      cosine_workspace, cosine_bytes, NULL),
                 CLOSS_STATUS_SUCCESS, "cosine: %s", closs_last_error());
    gpu_synchronize();
    free_case(&d);
}

/* ---- issue #14: the call's surroundings ------------------------------------------------------ */

static volatile int stream_gate; /* 0 holds the stream held by hold_until_released */

static void CUDART_CB hold_until_released(void *unused) {
    (void)unused;
    const struct timespec pause = {0, 1000000};
    while (!stream_gate) nanosleep(&pause, NULL);
}

/* Two calls with the handle's own workspace on two streams: the second waits for the first (which
 * is held back on its stream), then both are right. Without the ordering, stream b would finish
 * at once, its partial sums in the buffer the held call is about to use. */
Test(gpu_rowwise, handle_workspace_ordered_across_streams) {
    CLOSS_REQUIRE_GPU();
    GPU_SIM_SKIPS("it holds one stream with a host function while another runs, and the simulator "
                  "does not run streams concurrently");
    uint64_t state = test_seed() | 1;
    rowwise_case c = {LOSS_PAIR, 0, CLOSS_REDUCTION_MEAN, CLOSS_F32, 20000, 64, 0, 0};
    case_data d = make_case(&c, &state);
    closs_pair_params params = set_options(&c).pair;
    closs_matrix_t x1 = closs_matrix(d.device[0], CLOSS_F32, c.rows, c.dim);
    closs_matrix_t x2 = closs_matrix(d.device[1], CLOSS_F32, c.rows, c.dim);
    closs_vector_t y = closs_vector(d.device_labels, CLOSS_F32, c.rows);
    float *second_loss = gpu_alloc(sizeof(float));
    gpu_poison(d.device_loss, sizeof(float));
    gpu_poison(second_loss, sizeof(float));
    cudaStream_t a, b;
    cr_assert_eq(cudaStreamCreateWithFlags(&a, cudaStreamNonBlocking), cudaSuccess);
    cr_assert_eq(cudaStreamCreateWithFlags(&b, cudaStreamNonBlocking), cudaSuccess);
    stream_gate = 0;
    cr_assert_eq(cudaLaunchHostFunc(a, hold_until_released, NULL), cudaSuccess);
    cr_expect_eq(
        closs_pair_forward(handle, &params, x1, x2, y, d.device_loss, NULL, 0, (closs_stream_t)a),
        CLOSS_STATUS_SUCCESS, "%s", closs_last_error());
    cr_expect_eq(
        closs_pair_forward(handle, &params, x1, x2, y, second_loss, NULL, 0, (closs_stream_t)b),
        CLOSS_STATUS_SUCCESS, "%s", closs_last_error());
    const struct timespec settle = {0, 200000000};
    nanosleep(&settle, NULL);
    cr_expect_eq(cudaStreamQuery(b), cudaErrorNotReady,
                 "the call on stream b ran while the call on stream a still had to use the "
                 "handle's workspace");
    (void)cudaGetLastError(); /* cudaStreamQuery's "not ready" */
    stream_gate = 1;
    cr_assert_eq(cudaStreamSynchronize(a), cudaSuccess);
    cr_assert_eq(cudaStreamSynchronize(b), cudaSuccess);
    double want;
    double *no_grads[3] = {NULL, NULL, NULL};
    cr_assert_eq(call_reference(&c, &d, NULL, &want, no_grads), CLOSS_STATUS_SUCCESS);
    expect_losses(&d, 1, &want, loss_floor(&c, &d), "stream a", "pair mean");
    float second = 0.0f;
    gpu_download(&second, second_loss, sizeof second);
    cr_expect(fabs(second - want) <= 1e-4 * fabs(want), "stream b: got %.9g want %.9g", second,
              want);
    cudaStreamDestroy(a);
    cudaStreamDestroy(b);
    free_case(&d);
}

/* A small pair call into d's (poisoned) loss. */
static closs_status_t small_pair_forward(const case_data *d) {
    closs_pair_params params = CLOSS_PAIR_PARAMS_INIT;
    gpu_poison(d->device_loss, sizeof(float));
    return closs_pair_forward(
        handle, &params, closs_matrix(d->device[0], CLOSS_F32, d->rows, d->dim),
        closs_matrix(d->device[1], CLOSS_F32, d->rows, d->dim),
        closs_vector(d->device_labels, CLOSS_F32, d->rows), d->device_loss, NULL, 0, NULL);
}

static int loss_is_poisoned(const case_data *d) {
    unsigned bits = 0;
    gpu_download(&bits, d->device_loss, sizeof bits);
    return bits == 0xffffffffu;
}

/* A handle bound to another device than the current one is refused, nothing written (faked on one
 * device by rebinding the handle). */
Test(gpu_rowwise, handle_of_another_device_is_refused) {
    CLOSS_REQUIRE_GPU();
    uint64_t state = test_seed() | 1;
    rowwise_case c = {LOSS_PAIR, 0, CLOSS_REDUCTION_MEAN, CLOSS_F32, 100, 16, 0, 0};
    case_data d = make_case(&c, &state);
    const int bound = handle->device;
    handle->device = bound + 1;
    cr_expect_eq(small_pair_forward(&d), CLOSS_STATUS_INVALID_ARGUMENT);
    cr_expect(strstr(closs_last_error(), "device"), "%s", closs_last_error());
    handle->device = bound;
    gpu_synchronize();
    cr_expect(loss_is_poisoned(&d), "the refused call wrote its loss");
    cr_expect_eq(small_pair_forward(&d), CLOSS_STATUS_SUCCESS, "%s", closs_last_error());
    free_case(&d);
}

/* A CUDA error pending from the caller's own work is reported as such and left in place. */
Test(gpu_rowwise, pending_error_is_the_callers) {
    CLOSS_REQUIRE_GPU();
    GPU_SIM_SKIPS("it needs the CUDA runtime's pending error after a failed cudaMalloc, which the "
                  "simulator's runtime does not promise");
    uint64_t state = test_seed() | 1;
    rowwise_case c = {LOSS_PAIR, 0, CLOSS_REDUCTION_MEAN, CLOSS_F32, 100, 16, 0, 0};
    case_data d = make_case(&c, &state);
    gpu_synchronize();
    void *huge = NULL;
    cr_assert_neq(cudaMalloc(&huge, (size_t)1 << 62), cudaSuccess);
    const cudaError_t pending = cudaPeekAtLastError();
    cr_assert_neq(pending, cudaSuccess, "the failed cudaMalloc left no pending error");
    cr_expect_eq(small_pair_forward(&d), CLOSS_STATUS_CUDA_ERROR);
    cr_expect(strstr(closs_last_error(), "pending") &&
                  strstr(closs_last_error(), cudaGetErrorName(pending)),
              "%s", closs_last_error());
    cr_expect_eq(cudaGetLastError(), pending, "closs cleared the caller's error");
    cr_expect(loss_is_poisoned(&d), "the refused call wrote its loss");
    cr_expect_eq(small_pair_forward(&d), CLOSS_STATUS_SUCCESS, "%s", closs_last_error());
    free_case(&d);
}
