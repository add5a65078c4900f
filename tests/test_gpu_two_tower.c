/* The GPU CLIP and SigLIP, on both paths (FUSED, CHUNKED, and AUTO, which picks FUSED for D ≤ 512),
 * against the CPU reference; and the two paths against each other at N = 8192.
 *
 * Each case draws fresh random inputs (each partner b_i leaning towards a_i), rounds them to the
 * case's dtype (the reference then sees exactly the values the GPU sees), uploads them with the
 * case's layout (padded leading dimensions whose padding holds NaN, base pointers off 16-byte
 * alignment), poisons every output with NaN, and checks
 *   - forward+backward: the loss, ∂/∂a, ∂/∂b, ∂/∂s (and ∂/∂β), padding and the row after each
 *     gradient untouched;
 *   - a second forward+backward gives the same bits;
 *   - forward: the loss and (CLIP) the statistics of every pair against the reference's;
 *   - backward alone from that forward's statistics with random upstream gradients (one per pair
 *     for NONE).
 * The logit scale and bias come from device scalars in half of the cases, from the parameters in
 * the others. Row ranges, check mode, NaN propagation and the caller's workspace have tests of
 * their own. Without a device every test is skipped, visibly.
 *
 * Tolerances (as tests/test_two_tower_kernels.cpp's; the inputs are exact on both sides): L =
 * s·max|c_ij|, the logits' spread. Losses norm-wise within 1e-4 of max(‖want‖, 0.1·L per pair in
 * the reduction); statistics within 1e-4·max(|want|, L) each; gradients norm-wise within the
 * dtype's gradient_tolerance() plus 1e-4·(max(1, L/10) − 1) of max(‖want‖, floor), the floor a
 * fifth of the terms that cancel where the gradient is 0 mathematically (0.2·s·w·R·sqrt(Σ 1/n_i²));
 * the scalar gradients within 1e-4·max(1, L/10) of max(|want|, 0.1·w·max|c|·rows·(N + K)).
 *
 * CLOSS_GPU_TEST_SCALE=sim (gpu_scale.h) runs the sizes marked "sim" instead, on the fused path:
 * there the chunked path's calls must fail with CUBLAS_ERROR (the simulator cannot create a cuBLAS
 * context), having written nothing. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "closs.h"
#include "gpu_support.h"

typedef struct tt_case {
    int siglip;
    closs_dtype_t dtype;
    int64_t pairs, negatives, dim;
    int padded, misaligned, device_scalars;
    closs_path_t path;
    int normalize, symmetric, in_batch, grad_negatives, check_inputs;
    closs_reduction_t reduction;
    double scale, bias;
    int64_t row_begin, row_count, negatives_begin, negatives_count;
} tt_case;

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

TestSuite(gpu_two_tower, .init = setup, .fini = teardown, .timeout = 900);

static int64_t rows_b(const tt_case *c) { return c->pairs + c->negatives; }

/* The call's share: its pairs and its extra negatives (closs.h "Two-tower row ranges"). */
static void range_of(const tt_case *c, int64_t *begin, int64_t *count, int64_t *grad_b_rows) {
    const int whole = c->row_count == 0;
    *begin = whole ? 0 : c->row_begin;
    *count = whole ? c->pairs : c->row_count;
    *grad_b_rows = *count + (whole ? (c->grad_negatives ? c->negatives : 0) : c->negatives_count);
}

static int64_t loss_count(const tt_case *c) {
    int64_t begin, count, grad_b;
    range_of(c, &begin, &count, &grad_b);
    return c->reduction == CLOSS_REDUCTION_NONE ? count : 1;
}

static closs_clip_params clip_params(const tt_case *c) {
    closs_clip_params p = CLOSS_CLIP_PARAMS_INIT;
    p.logit_scale = c->scale, p.symmetric = c->symmetric, p.in_batch_negatives = c->in_batch;
    p.normalize = c->normalize, p.grad_negatives = c->grad_negatives, p.reduction = c->reduction;
    p.check_inputs = c->check_inputs, p.path = c->path;
    p.row_begin = c->row_begin, p.row_count = c->row_count;
    p.negatives_begin = c->negatives_begin, p.negatives_count = c->negatives_count;
    return p;
}

static closs_siglip_params siglip_params(const tt_case *c) {
    closs_siglip_params p = CLOSS_SIGLIP_PARAMS_INIT;
    p.logit_scale = c->scale, p.logit_bias = c->bias, p.normalize = c->normalize;
    p.grad_negatives = c->grad_negatives, p.reduction = c->reduction, p.path = c->path;
    p.check_inputs = c->check_inputs;
    p.row_begin = c->row_begin, p.row_count = c->row_count;
    p.negatives_begin = c->negatives_begin, p.negatives_count = c->negatives_count;
    return p;
}

/* Everything one case needs on both sides. */
typedef struct tt_data {
    int64_t lda, ldb;
    float *a, *b;    /* host, dense, rounded to the dtype */
    float *upstream; /* N values (NONE) or 1 */
    /* device */
    void *device_a, *device_b, *device_grad_a, *device_grad_b;
    float *loss, *row_stats, *column_stats, *upstream_device; /* N + 1 each (a guard) */
    float *scalars; /* s, β, ∂/∂s, ∂/∂β, a guard */
} tt_data;

static void *offset(void *base, const tt_case *c) {
    return (char *)base + (c->misaligned ? closs_dtype_size(c->dtype) : 0);
}

/* A strided device copy of `rows` dense host rows (rounded in place), NaN in the padding. */
static void *upload_rows(const tt_case *c, float *host, int64_t rows, int64_t ld) {
    const size_t element = closs_dtype_size(c->dtype),
                 bytes = ((size_t)rows * (size_t)ld + 1) * element;
    unsigned char *staging = malloc(bytes + 16);
    memset(staging, 0xff, bytes + 16);
    for (int64_t r = 0; r < rows; ++r)
        round_to_dtype(host + r * c->dim, (size_t)c->dim, c->dtype,
                       staging + (size_t)(r * ld) * element);
    void *device = offset(gpu_alloc(bytes + 16), c);
    gpu_upload(device, staging, (size_t)rows * (size_t)ld * element);
    free(staging);
    return device;
}

static tt_data make_data(const tt_case *c, uint64_t *state) {
    const int64_t n = c->pairs, r = rows_b(c), d = c->dim;
    tt_data data = {.lda = d + (c->padded ? 5 : 0), .ldb = d + (c->padded ? 3 : 0)};
    data.a = malloc(((size_t)(n * d) + 1) * sizeof(float));
    data.b = malloc(((size_t)(r * d) + 1) * sizeof(float));
    /* unnormalised rows are scaled so that s·a·b spreads over a few units */
    const double spread = c->normalize ? 1.0 : 1.5 / sqrt(c->scale * (double)d / 3.0);
    for (int64_t e = 0; e < n * d; ++e)
        data.a[e] = (float)(spread * (2.0 * uniform01(state) - 1.0));
    for (int64_t e = 0; e < r * d; ++e) {
        double v = spread * (2.0 * uniform01(state) - 1.0);
        if (e < n * d) v = 0.6 * data.a[e] + 0.8 * v; /* a partner leans towards its row */
        data.b[e] = (float)v;
    }
    data.device_a = upload_rows(c, data.a, n, data.lda);
    data.device_b = upload_rows(c, data.b, r, data.ldb);
    const size_t element = closs_dtype_size(c->dtype);
    data.device_grad_a = offset(gpu_alloc(((size_t)(n + 1) * (size_t)data.lda) * element + 16), c);
    data.device_grad_b = offset(gpu_alloc(((size_t)(r + 1) * (size_t)data.ldb) * element + 16), c);
    const size_t upstreams = c->reduction == CLOSS_REDUCTION_NONE ? (size_t)n : 1;
    data.upstream = malloc((upstreams + 1) * sizeof(float));
    for (size_t i = 0; i < upstreams; ++i)
        data.upstream[i] = (float)(0.25 + 1.5 * uniform01(state));
    data.upstream_device = gpu_alloc((upstreams + 1) * sizeof(float));
    gpu_upload(data.upstream_device, data.upstream, upstreams * sizeof(float));
    data.loss = gpu_alloc((size_t)(n + 1) * sizeof(float));
    data.row_stats = gpu_alloc((size_t)(n + 1) * sizeof(float));
    data.column_stats = gpu_alloc((size_t)(n + 1) * sizeof(float));
    data.scalars = gpu_alloc(5 * sizeof(float));
    const float scalars[2] = {(float)c->scale, (float)c->bias};
    gpu_upload(data.scalars, scalars, sizeof scalars);
    return data;
}

static void free_data(tt_data *d) {
    free(d->a);
    free(d->b);
    free(d->upstream);
    gpu_free_all();
}

/* NaN in every output (the statistics only when asked: a backward reads them). */
static void poison_outputs(const tt_case *c, const tt_data *d, int stats) {
    const size_t element = closs_dtype_size(c->dtype);
    gpu_poison(d->loss, (size_t)(c->pairs + 1) * sizeof(float));
    gpu_poison(d->device_grad_a, (size_t)(c->pairs + 1) * (size_t)d->lda * element);
    gpu_poison(d->device_grad_b, (size_t)(rows_b(c) + 1) * (size_t)d->ldb * element);
    gpu_poison(d->scalars + 2, 3 * sizeof(float));
    if (stats) {
        gpu_poison(d->row_stats, (size_t)(c->pairs + 1) * sizeof(float));
        gpu_poison(d->column_stats, (size_t)(c->pairs + 1) * sizeof(float));
    }
}

typedef enum { CALL_FORWARD_BACKWARD, CALL_FORWARD, CALL_BACKWARD } call_kind;

/* One GPU call of the case; the backward reads d->row_stats and d->column_stats and, when
 * `upstream`, the random upstream gradients. */
static closs_status_t call_gpu(const tt_case *c, const tt_data *d, call_kind kind, int upstream,
                               void *workspace, size_t workspace_bytes) {
    const closs_matrix_t a = closs_matrix_ld(d->device_a, c->dtype, c->pairs, c->dim, d->lda);
    const closs_matrix_t b = closs_matrix_ld(d->device_b, c->dtype, rows_b(c), c->dim, d->ldb);
    const closs_grad_t ga = {d->device_grad_a, d->lda}, gb = {d->device_grad_b, d->ldb};
    const float *scale = c->device_scalars ? d->scalars : NULL;
    const float *bias = c->device_scalars ? d->scalars + 1 : NULL;
    const float *up = upstream ? d->upstream_device : NULL;
    float *grad_scale = d->scalars + 2, *grad_bias = d->scalars + 3;
    if (c->siglip) {
        const closs_siglip_params p = siglip_params(c);
        if (kind == CALL_FORWARD)
            return closs_siglip_forward(handle, &p, a, b, scale, bias, d->loss, workspace,
                                        workspace_bytes, NULL);
        if (kind == CALL_BACKWARD)
            return closs_siglip_backward(handle, &p, a, b, scale, bias, up, ga, gb, grad_scale,
                                         grad_bias, workspace, workspace_bytes, NULL);
        return closs_siglip_forward_backward(handle, &p, a, b, scale, bias, d->loss, ga, gb,
                                             grad_scale, grad_bias, workspace, workspace_bytes,
                                             NULL);
    }
    const closs_clip_params p = clip_params(c);
    if (kind == CALL_FORWARD)
        return closs_clip_forward(handle, &p, a, b, scale, d->loss, d->row_stats, d->column_stats,
                                  workspace, workspace_bytes, NULL);
    if (kind == CALL_BACKWARD)
        return closs_clip_backward(handle, &p, a, b, scale, d->row_stats, d->column_stats, up, ga,
                                   gb, grad_scale, workspace, workspace_bytes, NULL);
    return closs_clip_forward_backward(handle, &p, a, b, scale, d->loss, ga, gb, grad_scale,
                                       workspace, workspace_bytes, NULL);
}

/* ---- the reference and the tolerances' scales --------------------------------------------------
 */

typedef struct tt_want {
    double *loss, *row_stats, *column_stats, *grad_a, *grad_b;
    double grad_scale, grad_bias;
    double logits, grad_a_floor, grad_b_floor, scalar_floor; /* see the top */
} tt_want;

static double *doubles(int64_t count) { return malloc(((size_t)count + 1) * sizeof(double)); }

/* The embedded rows in double, their norms clamped (1 unnormalised) and the largest norm. */
static double *embedded(const tt_case *c, const float *m, int64_t rows, double *clamped,
                        double *largest) {
    double *out = doubles(rows * c->dim);
    *largest = 0.0;
    for (int64_t r = 0; r < rows; ++r) {
        double sq = 0.0;
        for (int64_t k = 0; k < c->dim; ++k) sq += (double)m[r * c->dim + k] * m[r * c->dim + k];
        const double n = c->normalize ? fmax(sqrt(sq), 1e-12) : 1.0;
        clamped[r] = n;
        for (int64_t k = 0; k < c->dim; ++k) out[r * c->dim + k] = m[r * c->dim + k] / n;
        *largest = fmax(*largest, sqrt(sq) / n);
    }
    return out;
}

static tt_want reference(const tt_case *c, const tt_data *d, int upstream) {
    int64_t begin, count, grad_b_rows;
    range_of(c, &begin, &count, &grad_b_rows);
    const int64_t n = c->pairs, r = rows_b(c), dim = c->dim;
    tt_want w = {.loss = doubles(n),
                 .row_stats = doubles(n),
                 .column_stats = doubles(n),
                 .grad_a = doubles(n * dim),
                 .grad_b = doubles(r * dim)};
    const closs_matrix_t a = closs_matrix(d->a, CLOSS_F32, n, dim),
                         b = closs_matrix(d->b, CLOSS_F32, r, dim);
    const size_t upstreams = c->reduction == CLOSS_REDUCTION_NONE ? (size_t)n : 1;
    double *up = doubles((int64_t)upstreams);
    for (size_t i = 0; i < upstreams; ++i) up[i] = upstream ? d->upstream[i] : 1.0;
    closs_status_t status;
    if (c->siglip) {
        const closs_siglip_params p = siglip_params(c);
        status =
            closs_ref_siglip(&p, a, b, up, w.loss, w.grad_a, w.grad_b, &w.grad_scale, &w.grad_bias);
    } else {
        const closs_clip_params p = clip_params(c);
        status = closs_ref_clip(&p, a, b, up, w.loss, w.grad_a, w.grad_b, &w.grad_scale);
        if (status == CLOSS_STATUS_SUCCESS)
            status = closs_ref_clip_forward(&p, a, b, w.loss, w.row_stats, w.column_stats);
    }
    cr_assert_eq(status, CLOSS_STATUS_SUCCESS, "reference: %s", closs_last_error());
    /* the scales */
    double *na = doubles(n), *nb = doubles(r), ra, rb, cmax = 0.0, wmax = 0.0, inv_a = 0.0,
           inv_b = 0.0;
    double *ah = embedded(c, d->a, n, na, &ra), *bh = embedded(c, d->b, r, nb, &rb);
    for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < r; ++j) {
            double dot = 0.0;
            for (int64_t k = 0; k < dim; ++k) dot += ah[i * dim + k] * bh[j * dim + k];
            cmax = fmax(cmax, fabs(dot));
        }
    for (size_t i = 0; i < upstreams; ++i)
        wmax = fmax(wmax, fabs(c->reduction == CLOSS_REDUCTION_MEAN ? up[i] / (double)n : up[i]));
    for (int64_t i = begin; i < begin + count; ++i)
        inv_a += 1.0 / (na[i] * na[i]), inv_b += 1.0 / (nb[i] * nb[i]);
    for (int64_t k = 0; k < grad_b_rows - count; ++k) {
        const int64_t j = n + (c->row_count ? c->negatives_begin : 0) + k;
        inv_b += 1.0 / (nb[j] * nb[j]);
    }
    w.logits = fmax(c->scale * cmax, 1e-3);
    w.grad_a_floor = 0.2 * c->scale * wmax * rb * sqrt(inv_a);
    w.grad_b_floor = 0.2 * c->scale * wmax * ra * sqrt(inv_b);
    w.scalar_floor = 0.1 * wmax * cmax * (double)count * (double)r;
    free(ah), free(bh), free(na), free(nb), free(up);
    return w;
}

static void free_want(tt_want *w) {
    free(w->loss), free(w->row_stats), free(w->column_stats), free(w->grad_a), free(w->grad_b);
}

static void describe(const tt_case *c, uint64_t seed, char *out, size_t size) {
    static const char *reductions[] = {"mean", "sum", "none"}, *dtypes[] = {"f32", "f16", "bf16"};
    static const char *paths[] = {"auto", "fused", "chunked"};
    snprintf(out, size,
             "%s %s N=%lld K=%lld D=%lld%s%s path=%s normalize=%d symmetric=%d in_batch=%d "
             "grad_negatives=%d %s s=%g beta=%g%s range [%lld, +%lld) negatives [%lld, +%lld) "
             "(CLOSS_TEST_SEED=%llu)",
             c->siglip ? "siglip" : "clip", dtypes[c->dtype], (long long)c->pairs,
             (long long)c->negatives, (long long)c->dim, c->padded ? " padded" : "",
             c->misaligned ? " misaligned" : "", paths[c->path], c->normalize, c->symmetric,
             c->in_batch, c->grad_negatives, reductions[c->reduction], c->scale, c->bias,
             c->device_scalars ? " (device scalars)" : "", (long long)c->row_begin,
             (long long)c->row_count, (long long)c->negatives_begin, (long long)c->negatives_count,
             (unsigned long long)seed);
}

/* ---- comparisons ----------------------------------------------------------------------------- */

static double conditioning(const tt_want *w) { return fmax(1.0, w->logits / 10.0); }

static void expect_losses(const tt_case *c, const tt_data *d, const tt_want *w, const char *what,
                          const char *name) {
    int64_t begin, count, grad_b_rows;
    range_of(c, &begin, &count, &grad_b_rows);
    const int64_t losses = loss_count(c);
    float *got = malloc(((size_t)losses + 1) * sizeof(float));
    gpu_download(got, d->loss, ((size_t)losses + 1) * sizeof(float));
    cr_expect(isnan(got[losses]), "%s: %s wrote past its %lld loss value(s)", name, what,
              (long long)losses);
    const double per_pair = 0.1 * w->logits;
    const double floor = c->reduction == CLOSS_REDUCTION_SUM ? per_pair * (double)count
                         : c->reduction == CLOSS_REDUCTION_NONE
                             ? per_pair * sqrt((double)count)
                             : per_pair * (double)count / (double)c->pairs;
    const double error = relative_error_above(got, w->loss, (size_t)losses, floor);
    cr_expect(error <= 1e-4, "%s: %s loss relative error %.3g (got %.9g, want %.9g)", name, what,
              error, got[0], w->loss[0]);
    free(got);
}

static void expect_stats(const tt_case *c, const tt_data *d, const tt_want *w, const char *name) {
    int64_t begin, count, grad_b_rows;
    range_of(c, &begin, &count, &grad_b_rows);
    float *got = malloc(((size_t)count + 1) * sizeof(float));
    for (int side = 0; side < 1 + c->symmetric; ++side) {
        gpu_download(got, side ? d->column_stats : d->row_stats,
                     ((size_t)count + 1) * sizeof(float));
        const double *want = side ? w->column_stats : w->row_stats;
        int64_t wrong = 0, first = -1;
        for (int64_t i = 0; i < count; ++i) {
            const int ok = want[i] == -INFINITY
                               ? got[i] == -INFINITY
                               : fabs(got[i] - want[i]) <= 1e-4 * fmax(fabs(want[i]), w->logits);
            if (!ok && first < 0) first = i;
            wrong += !ok;
        }
        cr_expect(
            wrong == 0 && isnan(got[count]),
            "%s: %s: %lld of %lld off the reference (first %lld: got %.9g, want %.9g), guard %s",
            name, side ? "column_stats" : "row_stats", (long long)wrong, (long long)count,
            (long long)first, first >= 0 ? got[first] : 0.0f, first >= 0 ? want[first] : 0.0,
            isnan(got[count]) ? "untouched" : "written");
    }
    free(got);
}

/* One gradient: `rows` rows at leading dimension ld, the padding and the row after untouched. */
static void expect_gradient(const tt_case *c, const void *device, int64_t rows, int64_t ld,
                            const double *want, double floor, const tt_want *w, const char *which,
                            const char *what, const char *name) {
    const size_t element = closs_dtype_size(c->dtype), row_bytes = (size_t)ld * element;
    const size_t used = (size_t)c->dim * element, dense = (size_t)(rows * c->dim);
    unsigned char *strided = malloc((size_t)(rows + 1) * row_bytes + 1);
    float *got = malloc((dense + 1) * sizeof(float));
    gpu_download(strided, device, (size_t)(rows + 1) * row_bytes);
    size_t outside = 0;
    for (int64_t r = 0; r <= rows; ++r) {
        const unsigned char *row = strided + (size_t)r * row_bytes;
        if (r < rows) widen_from_dtype(row, (size_t)c->dim, c->dtype, got + r * c->dim);
        for (size_t b = r < rows ? used : 0; b < row_bytes; ++b) outside += row[b] != 0xff;
    }
    cr_expect(outside == 0, "%s: %s wrote %zu byte(s) of %s's padding or the row after it", name,
              what, outside, which);
    const double tolerance = gradient_tolerance(c->dtype) + 1e-4 * (conditioning(w) - 1.0);
    const double subnormal = c->dtype == CLOSS_F16 ? 0x1p-24 * sqrt((double)dense) : 0.0;
    double norm = 0.0;
    for (size_t e = 0; e < dense; ++e) norm += want[e] * want[e];
    const double error = relative_error_above(got, want, dense, floor);
    cr_expect(error <= tolerance + subnormal / fmax(fmax(sqrt(norm), floor), 1e-30),
              "%s: %s %s relative error %.3g (tolerance %.3g)", name, what, which, error,
              tolerance);
    free(got);
    free(strided);
}

static void expect_gradients(const tt_case *c, const tt_data *d, const tt_want *w, const char *what,
                             const char *name) {
    int64_t begin, count, grad_b_rows;
    range_of(c, &begin, &count, &grad_b_rows);
    expect_gradient(c, d->device_grad_a, count, d->lda, w->grad_a, w->grad_a_floor, w, "grad_a",
                    what, name);
    expect_gradient(c, d->device_grad_b, grad_b_rows, d->ldb, w->grad_b, w->grad_b_floor, w,
                    "grad_b", what, name);
    float scalars[3];
    gpu_download(scalars, d->scalars + 2, sizeof scalars);
    const double tolerance = 1e-4 * conditioning(w);
    const double scale_error =
        fabs(scalars[0] - w->grad_scale) / fmax(fabs(w->grad_scale), w->scalar_floor);
    cr_expect(scale_error <= tolerance,
              "%s: %s grad_logit_scale %.9g, want %.9g (relative error %.3g)", name, what,
              scalars[0], w->grad_scale, scale_error);
    if (c->siglip) {
        const double bias_error =
            fabs(scalars[1] - w->grad_bias) / fmax(fabs(w->grad_bias), w->scalar_floor);
        cr_expect(bias_error <= tolerance,
                  "%s: %s grad_logit_bias %.9g, want %.9g (relative error %.3g)", name, what,
                  scalars[1], w->grad_bias, bias_error);
    } else {
        cr_expect(isnan(scalars[1]), "%s: %s wrote a bias gradient", name, what);
    }
    cr_expect(isnan(scalars[2]), "%s: %s wrote past the scalar gradients", name, what);
}

/* ---- one case -------------------------------------------------------------------------------- */

static int all_poisoned(const void *device, size_t bytes) {
    unsigned char *host = malloc(bytes + 1);
    gpu_download(host, device, bytes);
    int poisoned = 1;
    for (size_t b = 0; b < bytes; ++b) poisoned &= host[b] == 0xff;
    free(host);
    return poisoned;
}

/* A failed call wrote nothing: every output still holds the poison. */
static void expect_untouched(const tt_case *c, const tt_data *d, int stats, const char *what) {
    const size_t element = closs_dtype_size(c->dtype);
    gpu_synchronize();
    cr_expect(all_poisoned(d->loss, (size_t)(c->pairs + 1) * sizeof(float)), "%s wrote the loss",
              what);
    cr_expect(all_poisoned(d->device_grad_a, (size_t)(c->pairs + 1) * (size_t)d->lda * element),
              "%s wrote grad_a", what);
    cr_expect(all_poisoned(d->device_grad_b, (size_t)(rows_b(c) + 1) * (size_t)d->ldb * element),
              "%s wrote grad_b", what);
    cr_expect(all_poisoned(d->scalars + 2, 3 * sizeof(float)), "%s wrote a scalar gradient", what);
    if (stats)
        cr_expect(all_poisoned(d->row_stats, (size_t)(c->pairs + 1) * sizeof(float)),
                  "%s wrote stats", what);
}

/* The simulated tier cannot run cuBLAS: a chunked call fails with CUBLAS_ERROR and writes nothing.
 */
static void expect_chunked_refused(const tt_case *c, const tt_data *d, const char *name) {
    GPU_SIM_LEAVES_OUT("the chunked path's cases");
    for (int kind = 0; kind < 3; ++kind) {
        if (kind == CALL_BACKWARD) continue; /* it would need statistics first */
        poison_outputs(c, d, 1);
        cr_expect_eq(call_gpu(c, d, (call_kind)kind, 0, NULL, 0), CLOSS_STATUS_CUBLAS_ERROR,
                     "%s: %s", name, closs_last_error());
        expect_untouched(c, d, 1, "a refused chunked call");
    }
}

static void check_case(const tt_case *c) {
    uint64_t seed = test_seed(), state = seed | 1;
    char name[400];
    describe(c, seed, name, sizeof name);
    tt_data d = make_data(c, &state);
    const int chunked =
        c->path == CLOSS_PATH_CHUNKED || (c->path == CLOSS_PATH_AUTO && c->dim > 512);
    if (gpu_test_simulated() && chunked) {
        expect_chunked_refused(c, &d, name);
        free_data(&d);
        return;
    }
    tt_want want = reference(c, &d, 0);

    /* forward+backward, upstream 1 */
    poison_outputs(c, &d, 1);
    cr_assert_eq(call_gpu(c, &d, CALL_FORWARD_BACKWARD, 0, NULL, 0), CLOSS_STATUS_SUCCESS, "%s: %s",
                 name, closs_last_error());
    gpu_synchronize();
    expect_losses(c, &d, &want, "forward+backward", name);
    expect_gradients(c, &d, &want, "forward+backward", name);

    /* the same bits again */
    const size_t element = closs_dtype_size(c->dtype);
    const size_t sizes[3] = {(size_t)(c->pairs + 1) * (size_t)d.lda * element,
                             (size_t)(rows_b(c) + 1) * (size_t)d.ldb * element, 5 * sizeof(float)};
    void *const buffers[3] = {d.device_grad_a, d.device_grad_b, d.scalars};
    unsigned char *first[3];
    for (int k = 0; k < 3; ++k) {
        first[k] = malloc(sizes[k]);
        gpu_download(first[k], buffers[k], sizes[k]);
    }
    poison_outputs(c, &d, 1);
    cr_assert_eq(call_gpu(c, &d, CALL_FORWARD_BACKWARD, 0, NULL, 0), CLOSS_STATUS_SUCCESS, "%s: %s",
                 name, closs_last_error());
    for (int k = 0; k < 3; ++k) {
        unsigned char *second = malloc(sizes[k]);
        gpu_download(second, buffers[k], sizes[k]);
        cr_expect(memcmp(first[k], second, sizes[k]) == 0,
                  "%s: two identical calls gave different bits", name);
        free(second);
        free(first[k]);
    }

    /* forward: the loss and the statistics */
    poison_outputs(c, &d, 1);
    cr_assert_eq(call_gpu(c, &d, CALL_FORWARD, 0, NULL, 0), CLOSS_STATUS_SUCCESS, "%s: %s", name,
                 closs_last_error());
    gpu_synchronize();
    expect_losses(c, &d, &want, "forward", name);
    if (!c->siglip) expect_stats(c, &d, &want, name);

    /* backward alone, from those statistics, with upstream gradients other than 1 */
    tt_want with_upstream = reference(c, &d, 1);
    poison_outputs(c, &d, 0);
    cr_assert_eq(call_gpu(c, &d, CALL_BACKWARD, 1, NULL, 0), CLOSS_STATUS_SUCCESS, "%s: %s", name,
                 closs_last_error());
    gpu_synchronize();
    expect_gradients(c, &d, &with_upstream, "backward", name);
    free_want(&with_upstream);
    free_want(&want);
    free_data(&d);
}

/* ---- sweeps ------------------------------------------------------------------------------------
 */

static const closs_path_t paths[3] = {CLOSS_PATH_AUTO, CLOSS_PATH_FUSED, CLOSS_PATH_CHUNKED};
static const double scales[3] = {1.0, 1.0 / 0.07, 100.0};

/* The case of index `index` at these sizes: options, reduction, dtype, layout, path and the
 * scalars' source rotate with it (FUSED only where it takes D). */
static tt_case rotated_case(int siglip, int64_t pairs, int64_t negatives, int64_t dim, int index) {
    tt_case c = {.siglip = siglip,
                 .dtype = (closs_dtype_t)(index % 3),
                 .pairs = pairs,
                 .negatives = negatives,
                 .dim = dim,
                 .padded = index / 2 % 2,
                 .misaligned = index / 3 % 2,
                 .device_scalars = index / 4 % 2,
                 .path = paths[index / 5 % 3],
                 .normalize = index % 7 != 3,
                 .reduction = (closs_reduction_t)(index / 3 % 3),
                 .scale = scales[index / 2 % 3],
                 .bias = siglip ? (index % 2 ? -10.0 : 1.5) : 0.0,
                 .grad_negatives = index % 5 != 4};
    if (!siglip) {
        c.symmetric = index % 4 != 1;
        c.in_batch = c.symmetric || index % 3;
    }
    if (c.path == CLOSS_PATH_FUSED && dim > 512) c.path = CLOSS_PATH_CHUNKED;
    return c;
}

/* Odd N over one to many 64-row tiles, K = 0 and K > 0, D across the fused backward's variants
 * (≤ 64, ≤ 128, ≤ 256, ≤ 512) and past them (CHUNKED); the reference's O(N·(N + K)·D) bounds the
 * sizes. sim: one or two tiles, D up to 300 with one tile. */
static void sweep_sizes(int siglip) {
    static const int64_t full_pairs[] = {1, 3, 64, 1000, 4097}, full_negatives[] = {0, 100};
    static const int64_t full_dims[] = {1, 3, 64, 128, 130, 300, 512, 1000};
    static const int64_t sim_pairs[] = {3, 65}, sim_negatives[] = {0, 7},
                         sim_dims[] = {1, 17, 65, 300};
    const int sim = gpu_test_simulated();
    const int64_t *pairs = sim ? sim_pairs : full_pairs,
                  *negatives = sim ? sim_negatives : full_negatives;
    const int64_t *dims = sim ? sim_dims : full_dims;
    const int pair_count = sim ? 2 : 5, dim_count = sim ? 4 : 8;
    int index = siglip;
    for (int p = 0; p < pair_count; ++p)
        for (int k = 0; k < 2; ++k)
            for (int d = 0; d < dim_count; ++d, ++index) {
                const double work =
                    (double)pairs[p] * (double)(pairs[p] + negatives[k]) * (double)dims[d];
                if (work > (sim ? 2e5 : 4e9)) continue;
                const tt_case c = rotated_case(siglip, pairs[p], negatives[k], dims[d], index);
                check_case(&c);
            }
}

Test(gpu_two_tower, clip_sizes) {
    CLOSS_REQUIRE_GPU();
    sweep_sizes(0);
}

Test(gpu_two_tower, siglip_sizes) {
    CLOSS_REQUIRE_GPU();
    sweep_sizes(1);
}

/* Every kernel the fused path has (each dtype × loss × backward variant) at a small size, with
 * every option in turn; in the simulated tier too, where it is what launches them all. */
Test(gpu_two_tower, every_kernel_dtype_and_option) {
    CLOSS_REQUIRE_GPU();
    static const int64_t dims[4] = {40, 100, 200, 300};
    int index = 0;
    for (int siglip = 0; siglip <= 1; ++siglip)
        for (int dtype = 0; dtype < 3; ++dtype)
            for (int d = 0; d < 4; ++d, ++index) {
                tt_case c =
                    rotated_case(siglip, gpu_test_simulated() ? 9 : 200, 5 + d, dims[d], index);
                c.dtype = (closs_dtype_t)dtype;
                c.path = index % 2 ? CLOSS_PATH_FUSED : CLOSS_PATH_AUTO;
                check_case(&c);
            }
}

/* Row ranges (one rank's share): three uneven ranges of the pairs (inside and across the fused
 * path's tiles) and of the extra negatives, forward (the range's loss and statistics, gathered),
 * backward from every range's statistics with random upstream gradients, forward+backward; each
 * against the reference's range. The ranks' shares add up: checked by the reference suites. */
static void check_ranges(int siglip, closs_path_t path, closs_reduction_t reduction) {
    const int sim = gpu_test_simulated();
    const int64_t pairs = sim ? 70 : 300, negatives = sim ? 9 : 50;
    const int64_t cuts[] = {0, 7, pairs / 2 + 5, pairs}, negative_cuts[] = {0, 0, 4, negatives};
    tt_case c = rotated_case(siglip, pairs, negatives, 33, 6);
    c.path = path, c.reduction = reduction, c.grad_negatives = 1, c.dtype = CLOSS_F32;
    uint64_t seed = test_seed(), state = seed | 1;
    tt_data d = make_data(&c, &state);
    float *gathered = malloc((size_t)(2 * pairs) * sizeof(float));
    float *device_gathered = gpu_alloc((size_t)(2 * pairs + 1) * sizeof(float));
    for (int pass = 0; pass < 3; ++pass)
        for (int r = 0; r < 3; ++r) {
            c.row_begin = cuts[r], c.row_count = cuts[r + 1] - cuts[r];
            c.negatives_begin = negative_cuts[r],
            c.negatives_count = negative_cuts[r + 1] - negative_cuts[r];
            char name[400], what[48];
            describe(&c, seed, name, sizeof name);
            const call_kind kind = pass == 0   ? CALL_FORWARD
                                   : pass == 1 ? CALL_BACKWARD
                                               : CALL_FORWARD_BACKWARD;
            snprintf(what, sizeof what, "%s",
                     pass == 0   ? "forward"
                     : pass == 1 ? "backward"
                                 : "forward+backward");
            tt_want want = reference(&c, &d, kind == CALL_BACKWARD);
            tt_data view = d; /* the backward reads every range's gathered statistics */
            if (kind == CALL_BACKWARD)
                view.row_stats = device_gathered, view.column_stats = device_gathered + pairs;
            poison_outputs(&c, &d, kind != CALL_BACKWARD);
            cr_assert_eq(call_gpu(&c, &view, kind, kind == CALL_BACKWARD, NULL, 0),
                         CLOSS_STATUS_SUCCESS, "%s: %s: %s", name, what, closs_last_error());
            gpu_synchronize();
            if (kind != CALL_BACKWARD) expect_losses(&c, &d, &want, what, name);
            if (kind != CALL_FORWARD) expect_gradients(&c, &d, &want, what, name);
            if (kind == CALL_FORWARD && !siglip) {
                expect_stats(&c, &d, &want, name);
                gpu_download(gathered + c.row_begin, d.row_stats,
                             (size_t)c.row_count * sizeof(float));
                gpu_download(gathered + pairs + c.row_begin, d.column_stats,
                             (size_t)c.row_count * sizeof(float));
                if (r == 2)
                    gpu_upload(device_gathered, gathered, (size_t)(2 * pairs) * sizeof(float));
            }
            free_want(&want);
        }
    free(gathered);
    free_data(&d);
}

Test(gpu_two_tower, row_ranges) {
    CLOSS_REQUIRE_GPU();
    if (gpu_test_simulated()) GPU_SIM_LEAVES_OUT("row ranges on CHUNKED");
    for (int siglip = 0; siglip <= 1; ++siglip)
        for (int reduction = 0; reduction < 3; ++reduction) {
            check_ranges(siglip, CLOSS_PATH_FUSED, (closs_reduction_t)reduction);
            if (!gpu_test_simulated())
                check_ranges(siglip, CLOSS_PATH_CHUNKED, (closs_reduction_t)reduction);
        }
}

/* Without check mode a NaN in row 37 of a makes NaN the losses whose terms hold it: every pair's
 * for CLIP (row 37 is in every column's log-sum-exp), pair 37's alone for SigLIP. Check mode
 * reports NaN in a or b (naming the tower and the row), a device logit scale of 0 or Inf and a
 * non-finite device bias (naming them), before anything is written. */
Test(gpu_two_tower, check_mode_and_nan) {
    CLOSS_REQUIRE_GPU();
    for (int siglip = 0; siglip <= 1; ++siglip) {
        tt_case c = rotated_case(siglip, 40, 3, 16, 0);
        c.device_scalars = 1, c.reduction = CLOSS_REDUCTION_NONE, c.path = CLOSS_PATH_AUTO;
        c.dtype = CLOSS_F32, c.padded = c.misaligned = 0, c.normalize = 1;
        if (!siglip) c.symmetric = c.in_batch = 1;
        const char *loss = siglip ? "siglip" : "clip";
        uint64_t state = test_seed() | 1;
        tt_data d = make_data(&c, &state);
        poison_outputs(&c, &d, 1); /* statistics for the backward calls below */
        cr_assert_eq(call_gpu(&c, &d, CALL_FORWARD, 0, NULL, 0), CLOSS_STATUS_SUCCESS, "%s",
                     closs_last_error());
        gpu_synchronize();

        const float nan_value = NAN, zero = 0.0f, inf = INFINITY;
        float *bad_a = (float *)d.device_a + 37 * 16 + 3, *bad_b = (float *)d.device_b + 2 * 16 + 5;
        gpu_upload(bad_a, &nan_value, sizeof nan_value);
        gpu_poison(d.loss, 41 * sizeof(float));
        cr_assert_eq(call_gpu(&c, &d, CALL_FORWARD, 0, NULL, 0), CLOSS_STATUS_SUCCESS, "%s",
                     closs_last_error());
        float got[40];
        gpu_download(got, d.loss, sizeof got);
        int nans = 0;
        for (int i = 0; i < 40; ++i) nans += isnan(got[i]) != 0;
        cr_expect_eq(nans, siglip ? 1 : 40, "%s: %d of 40 losses NaN with NaN in row 37 of a", loss,
                     nans);
        cr_expect(isnan(got[37]), "%s: pair 37's loss is %g", loss, got[37]);

        c.check_inputs = 1;
        struct {
            float *where;
            float value, restore;
            closs_status_t status;
            const char *named;
        } bad[] = {{bad_a, NAN, d.a[37 * 16 + 3], CLOSS_STATUS_NONFINITE_INPUT, "row 37 of a"},
                   {bad_b, INFINITY, d.b[2 * 16 + 5], CLOSS_STATUS_NONFINITE_INPUT, "row 2 of b"},
                   {d.scalars, zero, (float)c.scale, CLOSS_STATUS_INVALID_ARGUMENT, "logit_scale"},
                   {d.scalars, inf, (float)c.scale, CLOSS_STATUS_NONFINITE_INPUT, "logit_scale"},
                   {d.scalars + 1, inf, (float)c.bias, CLOSS_STATUS_NONFINITE_INPUT, "logit_bias"}};
        gpu_upload(bad_a, &bad[0].restore, sizeof(float)); /* each case alone below */
        for (int k = 0; k < (siglip ? 5 : 4); ++k) {
            gpu_upload(bad[k].where, &bad[k].value, sizeof(float));
            for (int kind = 0; kind < 3; ++kind) {
                poison_outputs(&c, &d, kind != CALL_BACKWARD);
                cr_expect_eq(call_gpu(&c, &d, (call_kind)kind, 1, NULL, 0), bad[k].status,
                             "%s: %s, call %d: %s", loss, bad[k].named, kind, closs_last_error());
                cr_expect(strstr(closs_last_error(), bad[k].named), "%s: '%s' not named in: %s",
                          loss, bad[k].named, closs_last_error());
                expect_untouched(&c, &d, kind != CALL_BACKWARD, "a call refused by check mode");
            }
            gpu_upload(bad[k].where, &bad[k].restore, sizeof(float));
        }
        /* and with every input valid, check mode computes */
        poison_outputs(&c, &d, 1);
        cr_expect_eq(call_gpu(&c, &d, CALL_FORWARD_BACKWARD, 0, NULL, 0), CLOSS_STATUS_SUCCESS,
                     "%s: %s", loss, closs_last_error());
        free_data(&d);
    }
}

/* The caller's workspace: the queried size works for all three calls at any address (one byte
 * past cudaMalloc's alignment), one byte less is refused before anything runs. */
Test(gpu_two_tower, caller_workspace) {
    CLOSS_REQUIRE_GPU();
    for (int siglip = 0; siglip <= 1; ++siglip)
        for (int path = 0; path < (gpu_test_simulated() ? 1 : 2); ++path) {
            tt_case c = rotated_case(siglip, 100, 20, 24, 1);
            c.path = path ? CLOSS_PATH_CHUNKED : CLOSS_PATH_FUSED;
            uint64_t seed = test_seed(), state = seed | 1;
            char name[400];
            describe(&c, seed, name, sizeof name);
            tt_data d = make_data(&c, &state);
            size_t bytes = 0;
            const closs_clip_params cp = clip_params(&c);
            const closs_siglip_params sp = siglip_params(&c);
            cr_assert_eq(siglip ? closs_siglip_workspace_size(NULL, &sp, c.pairs, rows_b(&c), c.dim,
                                                              c.dtype, &bytes)
                                : closs_clip_workspace_size(NULL, &cp, c.pairs, rows_b(&c), c.dim,
                                                            c.dtype, &bytes),
                         CLOSS_STATUS_SUCCESS, "%s", closs_last_error());
            void *workspace = (char *)gpu_alloc(bytes + 256) + 1;
            tt_want want = reference(&c, &d, 0);
            for (int kind = 0; kind < 3; ++kind) {
                poison_outputs(&c, &d, kind != CALL_BACKWARD);
                cr_expect_eq(call_gpu(&c, &d, (call_kind)kind, 0, workspace, bytes - 1),
                             CLOSS_STATUS_WORKSPACE_TOO_SMALL, "%s: call %d with %zu − 1 bytes",
                             name, kind, bytes);
                expect_untouched(&c, &d, kind != CALL_BACKWARD,
                                 "a call with too small a workspace");
                cr_assert_eq(call_gpu(&c, &d, (call_kind)kind, 0, workspace, bytes),
                             CLOSS_STATUS_SUCCESS, "%s: call %d: %s", name, kind,
                             closs_last_error());
                gpu_synchronize();
                if (kind != CALL_BACKWARD)
                    expect_losses(&c, &d, &want, "a call with the caller's workspace", name);
                else
                    expect_gradients(&c, &d, &want, "a backward with the caller's workspace", name);
            }
            free_want(&want);
            free_data(&d);
        }
}

/* ---- fused against chunked where the reference is too slow ------------------------------------
 */

static float *download_floats(const void *device, size_t count, closs_dtype_t dtype) {
    void *raw = malloc(count * closs_dtype_size(dtype) + 1);
    float *out = malloc((count + 1) * sizeof(float));
    gpu_download(raw, device, count * closs_dtype_size(dtype));
    widen_from_dtype(raw, count, dtype, out);
    free(raw);
    return out;
}

static double float_error(const float *got, const float *want, size_t count) {
    double *wide = malloc((count + 1) * sizeof(double));
    for (size_t i = 0; i < count; ++i) wide[i] = want[i];
    const double error = relative_error(got, wide, count);
    free(wide);
    return error;
}

/* N = 8192 pairs, K = 1024, D = 512 (the fused backward's 32-row variant) on both paths from the
 * same inputs: forward (loss and statistics), forward+backward (gradients, scalar gradients),
 * and the fused backward from the chunked path's statistics (interchangeable). What differs is
 * float arithmetic in another order: losses, statistics and scalars to 1e-4, gradients norm-wise
 * to twice the dtype's tolerance (each path rounds to the dtype on its own). */
static void compare_paths(int siglip, closs_dtype_t dtype, closs_reduction_t reduction) {
    tt_case c = rotated_case(siglip, 8192, 1024, 512, 0);
    c.dtype = dtype, c.reduction = reduction, c.normalize = 1, c.scale = 1.0 / 0.07,
    c.grad_negatives = 1;
    c.padded = c.misaligned = 0, c.device_scalars = 1;
    if (!siglip) c.symmetric = c.in_batch = 1;
    uint64_t seed = test_seed(), state = seed | 1;
    char name[400];
    describe(&c, seed, name, sizeof name);
    tt_data d = make_data(&c, &state);
    const size_t losses = (size_t)loss_count(&c), n = (size_t)c.pairs, nd = n * (size_t)c.dim;
    const size_t rd = (size_t)rows_b(&c) * (size_t)c.dim;
    float *stats[2] = {gpu_alloc(2 * n * sizeof(float)), gpu_alloc(2 * n * sizeof(float))};
    float *got[2][6]; /* loss, row stats, column stats, grad_a, grad_b, scalars */
    for (int path = 0; path < 2; ++path) {
        c.path = path ? CLOSS_PATH_CHUNKED : CLOSS_PATH_FUSED;
        d.row_stats = stats[path], d.column_stats = stats[path] + n;
        poison_outputs(&c, &d, 1);
        cr_assert_eq(call_gpu(&c, &d, CALL_FORWARD, 0, NULL, 0), CLOSS_STATUS_SUCCESS, "%s",
                     closs_last_error());
        got[path][0] = download_floats(d.loss, losses, CLOSS_F32);
        got[path][1] = download_floats(d.row_stats, n, CLOSS_F32);
        got[path][2] = download_floats(d.column_stats, n, CLOSS_F32);
        cr_assert_eq(call_gpu(&c, &d, CALL_FORWARD_BACKWARD, 0, NULL, 0), CLOSS_STATUS_SUCCESS,
                     "%s", closs_last_error());
        got[path][3] = download_floats(d.device_grad_a, nd, dtype);
        got[path][4] = download_floats(d.device_grad_b, rd, dtype);
        got[path][5] = download_floats(d.scalars + 2, 2, CLOSS_F32);
    }
    const double tolerance = 2.0 * gradient_tolerance(dtype);
    cr_expect(float_error(got[0][0], got[1][0], losses) <= 1e-4, "%s: fused vs chunked loss", name);
    if (!siglip)
        cr_expect(float_error(got[0][1], got[1][1], n) <= 1e-4 &&
                      float_error(got[0][2], got[1][2], n) <= 1e-4,
                  "%s: fused vs chunked statistics", name);
    cr_expect(float_error(got[0][3], got[1][3], nd) <= tolerance,
              "%s: fused vs chunked grad_a %.3g", name, float_error(got[0][3], got[1][3], nd));
    cr_expect(float_error(got[0][4], got[1][4], rd) <= tolerance,
              "%s: fused vs chunked grad_b %.3g", name, float_error(got[0][4], got[1][4], rd));
    cr_expect(float_error(got[0][5], got[1][5], siglip ? 2 : 1) <= 1e-4,
              "%s: fused vs chunked scalars", name);
    /* the fused backward from the chunked path's statistics */
    c.path = CLOSS_PATH_FUSED;
    d.row_stats = stats[1], d.column_stats = stats[1] + n;
    poison_outputs(&c, &d, 0);
    cr_assert_eq(call_gpu(&c, &d, CALL_BACKWARD, 0, NULL, 0), CLOSS_STATUS_SUCCESS, "%s",
                 closs_last_error());
    float *crossed = download_floats(d.device_grad_a, nd, dtype);
    cr_expect(float_error(crossed, got[1][3], nd) <= tolerance,
              "%s: fused backward from chunked statistics", name);
    free(crossed);
    for (int path = 0; path < 2; ++path)
        for (int k = 0; k < 6; ++k) free(got[path][k]);
    free_data(&d);
}

Test(gpu_two_tower, fused_matches_chunked_at_8192_pairs) {
    CLOSS_REQUIRE_GPU();
    if (gpu_test_simulated()) {
        GPU_SIM_LEAVES_OUT("fused against chunked at 8192 pairs");
        return;
    }
    compare_paths(0, CLOSS_F32, CLOSS_REDUCTION_MEAN);
    compare_paths(0, CLOSS_BF16, CLOSS_REDUCTION_NONE);
    compare_paths(1, CLOSS_F32, CLOSS_REDUCTION_SUM);
    compare_paths(1, CLOSS_F16, CLOSS_REDUCTION_MEAN);
}
