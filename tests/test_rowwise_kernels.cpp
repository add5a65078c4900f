// The row-wise kernels themselves (cuda/rowwise_kernels.cuh: the exact device code, each loss's
// template chosen by the same with_loss() as the launcher), run on the CPU with a fiber per CUDA
// thread (tests/cuda_on_cpu.h), against closs_ref_pair/triplet/cosine in double. Every loss,
// distance and swap; D from 1 to past what a row group holds in registers (so the re-reading path
// runs too), with 1 to 32 lanes per row and several rows per warp; 16-byte and one-element chunks;
// ld > D (whose padding must stay untouched); rows that leave part of the last warp idle; every
// reduction with upstream gradients; f32 and bf16; a non-finite input. Not covered: the launches,
// the real hardware's shuffles and memory (the GPU suites and compute-sanitizer on a device).
#include <cmath>
#include <cstdio>
#include <ctime>
#include <type_traits>
#include <vector>

#include <criterion/criterion.h>

#include "closs.h"
#include "cuda_on_cpu.h" // before the kernels: CUDA's built-ins on the CPU
#include "dtype_range.h"

#include "rowwise_kernels.cuh"

namespace {

struct LossCase {
    closs_row_params params;
    const char *name;
};

const LossCase kLosses[] = {
    {{CLOSS_ROW_PAIR, CLOSS_DISTANCE_EUCLIDEAN, 1.0f, 0, 0}, "pair euclidean"},
    {{CLOSS_ROW_PAIR, CLOSS_DISTANCE_COSINE, 0.5f, 0, 0}, "pair cosine"},
    {{CLOSS_ROW_TRIPLET, CLOSS_DISTANCE_SQEUCLIDEAN, 1.0f, 0, 0}, "triplet sqeuclidean"},
    {{CLOSS_ROW_TRIPLET, CLOSS_DISTANCE_SQEUCLIDEAN, 4.0f, 1, 0}, "triplet sqeuclidean swap"},
    {{CLOSS_ROW_TRIPLET, CLOSS_DISTANCE_EUCLIDEAN, 0.5f, 0, 0}, "triplet euclidean"},
    {{CLOSS_ROW_TRIPLET, CLOSS_DISTANCE_EUCLIDEAN, 0.5f, 1, 0}, "triplet euclidean swap"},
    {{CLOSS_ROW_TRIPLET, CLOSS_DISTANCE_COSINE, 0.2f, 0, 0}, "triplet cosine"},
    {{CLOSS_ROW_TRIPLET, CLOSS_DISTANCE_COSINE, -0.1f, 1, 0}, "triplet cosine swap"},
    {{CLOSS_ROW_COSINE, CLOSS_DISTANCE_COSINE, 0.0f, 0, 0}, "cosine"},
    {{CLOSS_ROW_COSINE, CLOSS_DISTANCE_COSINE, 0.3f, 0, 1}, "cosine squared"},
};

double uniform(uint64_t *state) {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return (double)((*state * 0x2545F4914F6CDD1Dull) >> 11) * 0x1.0p-53;
}

// One problem: inputs (dtype T, stored at ld), labels, upstream, and the kernel's outputs.
template <typename T> struct Problem {
    int rows, dim, ld, inputs;
    closs_reduction_t reduction;
    std::vector<float> x[3];       // the values the kernel sees (rounded to T), dense
    std::vector<T> stored[3];      // at ld, padding included
    std::vector<T> grad[3];        // at ld, poisoned with NaN
    std::vector<float> y, upstream, loss, partials;
};

template <typename T> T to_storage(float value) { return closs::from_float<T>(value); }
template <typename T> float from_storage(T value) { return closs::to_float(value); }

template <typename T>
Problem<T> make_problem(const LossCase &loss, int rows, int dim, int ld, closs_reduction_t reduction,
                        uint64_t *state) {
    Problem<T> p;
    p.rows = rows, p.dim = dim, p.ld = ld, p.reduction = reduction;
    p.inputs = loss.params.kind == CLOSS_ROW_TRIPLET ? 3 : 2;
    for (int k = 0; k < p.inputs; ++k) {
        p.x[k].resize((size_t)rows * dim);
        p.stored[k].assign((size_t)rows * ld + 16, to_storage<T>(NAN));
        p.grad[k].assign((size_t)rows * ld + 16, to_storage<T>(NAN));
        for (int r = 0; r < rows; ++r)
            for (int c = 0; c < dim; ++c) {
                const T value = to_storage<T>((float)(2.0 * uniform(state) - 1.0));
                p.stored[k][(size_t)r * ld + c] = value;
                p.x[k][(size_t)r * dim + c] = from_storage(value);
            }
    }
    for (int r = 0; r < rows; ++r) p.y.push_back(r % 3 == 2 ? (float)uniform(state) : (float)(r % 2));
    const int losses = reduction == CLOSS_REDUCTION_NONE ? rows : 1;
    for (int i = 0; i < losses; ++i) p.upstream.push_back((float)(0.25 + 1.5 * uniform(state)));
    p.loss.assign(losses, NAN);
    return p;
}

// rowwise.cu's launcher, on the CPU: the loss's kernel on `blocks` blocks, then the loss's sum.
template <typename T> closs_rowwise_launch run_kernels(const LossCase &loss, Problem<T> &p, int blocks, bool vectors,
                                                       bool forward, bool backward) {
    closs_rowwise_launch job = {};
    job.params = loss.params;
    job.input_count = p.inputs;
    job.dtype = std::is_same<T, float>::value    ? CLOSS_F32
                : std::is_same<T, __half>::value ? CLOSS_F16
                                                 : CLOSS_BF16;
    job.rows = p.rows, job.dim = p.dim;
    for (int k = 0; k < p.inputs; ++k) {
        job.x[k] = p.stored[k].data();
        job.ld[k] = p.ld;
        if (backward) job.grad[k] = p.grad[k].data(), job.grad_ld[k] = p.ld;
    }
    job.y = loss.params.kind == CLOSS_ROW_TRIPLET ? nullptr : p.y.data();
    job.y_dtype = CLOSS_F32;
    job.reduction = p.reduction;
    job.loss = forward ? p.loss.data() : nullptr;
    job.upstream = backward ? p.upstream.data() : nullptr;
    job.vectorized = vectors;
    job.blocks = blocks;
    p.partials.assign(blocks, NAN);
    job.partials = p.partials.data();
    constexpr int kVec = 16 / sizeof(T);
    using namespace closs::rowwise;
    with_loss(job.params, [&](auto tag) {
        using L = decltype(tag);
        if (use_vectors<T>(job))
            launch(blocks, CLOSS_ROWWISE_THREADS,
                   [&] { rowwise_kernel<T, L, kVec>(job, lanes_log2_for<T, kVec>(job.dim)); });
        else
            launch(blocks, CLOSS_ROWWISE_THREADS, [&] { rowwise_kernel<T, L, 1>(job, lanes_log2_for<T, 1>(job.dim)); });
        return cudaSuccess;
    });
    if (forward && p.reduction != CLOSS_REDUCTION_NONE)
        launch(1, 1, [&] {
            finish_loss_kernel(job.partials, blocks, job.rows, p.reduction == CLOSS_REDUCTION_MEAN, job.loss);
        });
    return job;
}

template <typename T>
closs_status_t reference(const LossCase &loss, const Problem<T> &p, const double *upstream, std::vector<double> &want_loss,
                         std::vector<double> (&want_grad)[3]) {
    closs_matrix_t m[3];
    for (int k = 0; k < 3; ++k) {
        want_grad[k].assign((size_t)p.rows * p.dim, 0.0);
        m[k] = closs_matrix(p.inputs > k ? p.x[k].data() : p.x[0].data(), CLOSS_F32, p.rows, p.dim);
    }
    want_loss.assign(p.reduction == CLOSS_REDUCTION_NONE ? p.rows : 1, 0.0);
    closs_vector_t y = closs_vector(p.y.data(), CLOSS_F32, p.rows);
    const closs_row_params &q = loss.params;
    if (q.kind == CLOSS_ROW_PAIR) {
        closs_pair_params r = CLOSS_PAIR_PARAMS_INIT;
        r.margin = q.margin, r.distance = q.distance, r.reduction = p.reduction;
        return closs_ref_pair(&r, m[0], m[1], y, upstream, want_loss.data(), want_grad[0].data(),
                              want_grad[1].data());
    }
    if (q.kind == CLOSS_ROW_TRIPLET) {
        closs_triplet_params r = CLOSS_TRIPLET_PARAMS_INIT;
        r.margin = q.margin, r.distance = q.distance, r.swap = q.swap, r.reduction = p.reduction;
        return closs_ref_triplet(&r, m[0], m[1], m[2], upstream, want_loss.data(), want_grad[0].data(),
                                 want_grad[1].data(), want_grad[2].data());
    }
    closs_cosine_params r = CLOSS_COSINE_PARAMS_INIT;
    r.margin = q.margin, r.squared = q.squared, r.reduction = p.reduction;
    return closs_ref_cosine(&r, m[0], m[1], y, upstream, want_loss.data(), want_grad[0].data(),
                            want_grad[1].data());
}

// ‖got − want‖ ≤ tolerance·‖want‖ + floor·√n: norm-wise, with a floor for float's rounding of terms
// that cancel where the exact value is 0.
bool close(const std::vector<double> &got, const std::vector<double> &want, double tolerance, double floor,
           double *error) {
    double difference = 0.0, norm = 0.0;
    for (size_t i = 0; i < want.size(); ++i) {
        if (std::isnan(got[i]) && !std::isnan(want[i])) difference = INFINITY;
        difference += (got[i] - want[i]) * (got[i] - want[i]);
        norm += want[i] * want[i];
    }
    *error = std::sqrt(difference) / std::fmax(std::sqrt(norm), 1e-30);
    return std::sqrt(difference) <= tolerance * std::sqrt(norm) + floor * std::sqrt((double)want.size());
}

// The floor of input k's gradient where the loss has cosines, as test_gpu_rowwise.c's
// cosine_floor(): ∂cos/∂x_k is the difference of two terms of norm 1/n_k that cancel exactly at
// D = 1, and float arithmetic leaves some ulps of them. A tenth of their size, weighted as the loss
// is: 0.1·sqrt(Σ_i (w_i·C/n_ki)²), C a bound on |∂ℓ/∂cos| (pair 2·max(2, m), triplet 2, cosine
// 1 or, squared, max(1, 2(1 − m))). 0 without cosines.
template <typename T> double cosine_floor(const LossCase &loss, const Problem<T> &p, int k) {
    const closs_row_params &q = loss.params;
    if (q.distance != CLOSS_DISTANCE_COSINE && q.kind != CLOSS_ROW_COSINE) return 0.0;
    const double slope = q.kind == CLOSS_ROW_PAIR      ? 2.0 * std::fmax(2.0, q.margin)
                         : q.kind == CLOSS_ROW_TRIPLET ? 2.0
                         : q.squared                   ? std::fmax(1.0, 2.0 * (1.0 - q.margin))
                                                       : 1.0;
    double sum = 0.0;
    for (int i = 0; i < p.rows; ++i) {
        double weight = p.upstream[p.reduction == CLOSS_REDUCTION_NONE ? i : 0];
        if (p.reduction == CLOSS_REDUCTION_MEAN) weight /= p.rows;
        double squares = 0.0;
        for (int c = 0; c < p.dim; ++c) squares += p.x[k][(size_t)i * p.dim + c] * p.x[k][(size_t)i * p.dim + c];
        const double term = weight * slope / std::fmax(std::sqrt(squares), 1e-8);
        sum += term * term;
    }
    return 0.1 * std::sqrt(sum);
}

// One problem through the kernels: forward+backward with upstream 1 (forward part) and backward
// with the random upstream, against the reference; the padding past D stays NaN.
template <typename T> void check(const LossCase &loss, int rows, int dim, int pad, closs_reduction_t reduction,
                                 bool vectors, uint64_t seed) {
    uint64_t state = seed | 1;
    Problem<T> p = make_problem<T>(loss, rows, dim, dim + pad, reduction, &state);
    const bool f32 = std::is_same<T, float>::value;
    const double tolerance = f32 ? 2e-5 : 1e-2; // bf16: the gradients are stored rounded
    char what[160];
    snprintf(what, sizeof what, "%s %s rows=%d dim=%d ld=%d reduction=%d %s (seed %llu)", loss.name,
             f32 ? "f32" : "bf16", rows, dim, dim + pad, (int)reduction, vectors ? "16-byte" : "1-element",
             (unsigned long long)seed);

    std::vector<double> want_loss, want_grad[3], got;
    run_kernels<T>(loss, p, 2, vectors, true, false);
    cr_assert_eq(reference<T>(loss, p, nullptr, want_loss, want_grad), CLOSS_STATUS_SUCCESS, "%s", closs_last_error());
    got.assign(p.loss.begin(), p.loss.end());
    double error = 0.0;
    cr_expect(close(got, want_loss, 2e-5, 1e-6, &error), "%s: loss relative error %.3g (got %.9g want %.9g)", what,
              error, got[0], want_loss[0]);

    std::vector<double> upstream(p.upstream.begin(), p.upstream.end());
    run_kernels<T>(loss, p, 2, vectors, false, true);
    cr_assert_eq(reference<T>(loss, p, upstream.data(), want_loss, want_grad), CLOSS_STATUS_SUCCESS);
    for (int k = 0; k < p.inputs; ++k) {
        got.assign((size_t)rows * dim, 0.0);
        int padding_written = 0;
        for (int r = 0; r < rows; ++r) {
            for (int c = 0; c < dim; ++c) got[(size_t)r * dim + c] = from_storage(p.grad[k][(size_t)r * p.ld + c]);
            for (int c = dim; c < p.ld; ++c) padding_written += !std::isnan(from_storage(p.grad[k][(size_t)r * p.ld + c]));
        }
        const double floor = std::fmax(1e-6, cosine_floor(loss, p, k) / std::sqrt((double)got.size()));
        cr_expect(close(got, want_grad[k], tolerance, floor, &error), "%s: gradient %d relative error %.3g", what, k,
                  error);
        cr_expect_eq(padding_written, 0, "%s: gradient %d: %d padding elements written", what, k, padding_written);
    }
}

} // namespace

// Every loss at D = 1 … 700: f32 16-byte chunks cover 16·lanes columns per span (D = 600 and 700
// take two spans at 32 lanes: the re-reading path), one-element chunks 4·lanes.
Test(rowwise_kernels, every_loss_and_width_f32) {
    const int dims[] = {1, 3, 8, 20, 64, 128, 600, 700};
    const uint64_t seed = 0x9e3779b97f4a7c15ull ^ (uint64_t)time(nullptr);
    int index = 0;
    for (const LossCase &loss : kLosses)
        for (int dim : dims) {
            const closs_reduction_t reduction = (closs_reduction_t)(index % 3);
            const int pad = index % 2 ? 4 : 0; // keeps 16-byte rows when D is a multiple of 4
            check<float>(loss, 37, dim, pad, reduction, true, seed + index++);
            if (dim % 4 == 0) check<float>(loss, 37, dim, pad + 1, reduction, false, seed + index++);
        }
}

Test(rowwise_kernels, every_loss_bf16) {
    const int dims[] = {8, 64, 128, 136};
    const uint64_t seed = 0x51ed27ull ^ (uint64_t)time(nullptr);
    int index = 0;
    for (const LossCase &loss : kLosses)
        for (int dim : dims) {
            check<__nv_bfloat16>(loss, 21, dim, 8, (closs_reduction_t)(index % 3), true, seed + index);
            ++index;
        }
}

// A non-finite input makes its row's loss NaN even where the hinge closes over it (pair with
// y = 0 and a distance past the margin), and leaves every other row alone.
Test(rowwise_kernels, nonfinite_input_makes_its_row_nan) {
    uint64_t state = 7;
    Problem<float> p = make_problem<float>(kLosses[0], 9, 16, 16, CLOSS_REDUCTION_NONE, &state);
    p.stored[1][3 * 16 + 5] = INFINITY;
    p.y[3] = 0.0f;
    run_kernels<float>(kLosses[0], p, 1, true, true, true);
    for (int r = 0; r < 9; ++r)
        cr_expect(std::isnan(p.loss[r]) == (r == 3), "row %d: loss %g", r, p.loss[r]);
    for (int c = 0; c < 16; ++c) cr_expect(std::isnan(p.grad[0][3 * 16 + c]), "row 3 gradient column %d", c);
}

// A gradient beyond f16's range (tests/dtype_range.h has the contract's rule): a zero row and a row
// of norm 1e-6 in the first input, with cosines, give gradients of about 1e7 to 1e16 in the double
// reference (norms clamped at 1e-8), which f16 returns as ±Inf; every other element as usual,
// compared row by row, so that one row's huge values do not hide another's error.
Test(rowwise_kernels, f16_gradient_beyond_the_range_is_inf) {
    const int rows = 6, dim = 8;
    uint64_t state = 0x26;
    size_t beyond = 0;
    for (const LossCase &loss : kLosses)
        for (int r = 0; r < 3; ++r) {
            const closs_reduction_t reduction = (closs_reduction_t)r;
            Problem<__half> p = make_problem<__half>(loss, rows, dim, dim, reduction, &state);
            for (int c = 0; c < dim; ++c) { // row 2 of the first input zero, row 4 of norm 1e-6
                const __half tiny = to_storage<__half>((float)((c % 2 ? -1e-6 : 1e-6) / std::sqrt((double)dim)));
                p.stored[0][2 * dim + c] = to_storage<__half>(0.0f), p.x[0][2 * dim + c] = 0.0f;
                p.stored[0][4 * dim + c] = tiny, p.x[0][4 * dim + c] = from_storage(tiny);
            }
            std::vector<double> want_loss, want_grad[3];
            std::vector<double> upstream(p.upstream.begin(), p.upstream.end());
            run_kernels<__half>(loss, p, 2, true, true, true);  // forward+backward, upstream 1
            run_kernels<__half>(loss, p, 2, true, false, true); // backward with the random upstream
            cr_assert_eq(reference<__half>(loss, p, upstream.data(), want_loss, want_grad), CLOSS_STATUS_SUCCESS);
            for (size_t i = 0; i < p.loss.size(); ++i)
                cr_expect(std::isfinite(p.loss[i]), "%s reduction %d: loss[%zu] = %g", loss.name, r, i, p.loss[i]);
            for (int k = 0; k < p.inputs; ++k)
                for (int row = 0; row < rows; ++row) {
                    float got[dim];
                    for (int c = 0; c < dim; ++c) got[c] = from_storage(p.grad[k][(size_t)row * dim + c]);
                    const double *want = want_grad[k].data() + (size_t)row * dim;
                    const range_check check = check_range(got, want, dim, CLOSS_F16);
                    beyond += check.beyond;
                    cr_expect(check.first_bad < 0, "%s reduction %d: gradient %d [%d][%lld] = %g, exact %.6g",
                              loss.name, r, k, row, (long long)check.first_bad,
                              check.first_bad < 0 ? 0.0 : got[check.first_bad],
                              check.first_bad < 0 ? 0.0 : want[check.first_bad]);
                    cr_expect(std::sqrt(check.error) <= 1e-2 * std::sqrt(check.norm) + 1e-4,
                              "%s reduction %d: gradient %d row %d: error %.3g of %.3g", loss.name, r, k, row,
                              std::sqrt(check.error), std::sqrt(check.norm));
                }
        }
    cr_expect_gt(beyond, 0, "no gradient element was beyond f16's range: the test checks nothing");
}
