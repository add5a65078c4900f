// The CLIP and SigLIP kernels themselves (cuda/two_tower_fused_kernels.cuh, the chunked path's
// cuda/two_tower_chunked_kernels.cuh and the shared cuda/two_tower_kernels.cuh: the exact device
// code, and the launch order of run_plan()), run on the CPU harness (tests/cuda_on_cpu.h: a fiber
// per CUDA thread, `static` for __shared__), with the chunked path's own cuBLAS calls
// (two_tower_chunked_products.cuh) run by a column-major model of cuBLAS written from its
// documentation (tests/cublas_model.h: every argument honoured, every access bounds-checked). Against closs_ref_clip/_forward and closs_ref_siglip in double, on fresh random
// inputs rounded to the dtype (the reference sees the rounded values), with every output and the
// workspace poisoned (NaN) first:
//   - a forward of the call's range alone: the loss and CLIP's statistics, guards after them;
//   - a backward alone from the statistics of all N pairs (a forward of the whole batch) with
//     random upstream gradients: ∂/∂a, ∂/∂b, ∂/∂s (∂/∂β), padding and guard rows untouched;
//   - forward+backward: the loss (the same bits as the forward alone) and the gradients.
// Shapes: odd N over one to three tiles, K = 0 and K > 0, D = 1, 3, 17, 64, 65, 130, 300 (the
// backward's four variants), and on the engine 264, 384 and 512 (engine_wide_dims); every option
// and reduction, row ranges, s up to 100, the logit scale and bias as device scalars or from the
// parameters; f32, f16 and bf16; both paths, and the fused path's walks on the tile engine
// (two_tower_tile_kernels.cuh: mma.sync, ldmatrix and cp.async emulated lane by lane, every
// shared access race-checked).
// Not covered: races of the SIMT walks (their shared arrays are plain pointers, which the
// harness's race check does not see: compute-sanitizer's racecheck does that on a device), the
// order of cuBLAS's additions, the launches themselves.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <type_traits>
#include <vector>

#include <criterion/criterion.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "closs.h"
#include "cuda_on_cpu.h" // before the kernels: CUDA's built-ins on the CPU
#include "cublas_model.h" // the chunked path's cuBLAS entry points, column-major, on the CPU

#include "two_tower_chunked_kernels.cuh"
#include "two_tower_chunked_products.cuh"
#include "two_tower_fused_kernels.cuh"
#include "two_tower_tile_kernels.cuh"

namespace {

// The fused path as a device without sm_80 code runs it (every walk on the SIMT kernels), the
// fused path as an sm_80+ device runs it (the walks tt_engine_walk() names on the tile engine,
// the others on the SIMT kernels: two_tower_fused.cu's run_walk), and the chunked path.
enum class Path { fused, engine, chunked };
const char *path_name(Path path) {
    return path == Path::fused ? "fused" : path == Path::engine ? "engine" : "chunked";
}

struct Problem {
    bool siglip = false;
    int pairs = 1, negatives = 0, dim = 1, lda = 1, ldb = 1;
    int normalize = 1, symmetric = 1, in_batch = 1, grad_negatives = 1;
    closs_reduction_t reduction = CLOSS_REDUCTION_MEAN;
    double scale = 10.0, bias = -10.0;
    bool device_scalars = false; // s and β through pointers (else the parameters' values)
    int64_t row_begin = 0, row_count = 0, negatives_begin = 0, negatives_count = 0;
    std::vector<float> a, b;     // lda- and ldb-strided, NaN in the padding
    std::vector<float> upstream; // N values (NONE) or 1
    int rows_b() const { return pairs + negatives; }
};

// The resolved range: the pairs, the negatives the call owns, grad_b's rows.
struct Range {
    int64_t begin, count, negatives_begin, negatives_count;
    int64_t grad_b_rows() const { return count + negatives_count; }
};

Range range_of(const Problem &pr) {
    if (pr.row_count == 0) return {0, pr.pairs, 0, pr.grad_negatives ? (int64_t)pr.negatives : 0};
    return {pr.row_begin, pr.row_count, pr.negatives_begin, pr.negatives_count};
}

closs_clip_params clip_params(const Problem &pr) {
    closs_clip_params p = CLOSS_CLIP_PARAMS_INIT;
    p.logit_scale = pr.scale, p.symmetric = pr.symmetric, p.in_batch_negatives = pr.in_batch;
    p.normalize = pr.normalize, p.grad_negatives = pr.grad_negatives, p.reduction = pr.reduction;
    p.row_begin = pr.row_begin, p.row_count = pr.row_count;
    p.negatives_begin = pr.negatives_begin, p.negatives_count = pr.negatives_count;
    return p;
}

closs_siglip_params siglip_params(const Problem &pr) {
    closs_siglip_params p = CLOSS_SIGLIP_PARAMS_INIT;
    p.logit_scale = pr.scale, p.logit_bias = pr.bias, p.normalize = pr.normalize;
    p.grad_negatives = pr.grad_negatives, p.reduction = pr.reduction;
    p.row_begin = pr.row_begin, p.row_count = pr.row_count;
    p.negatives_begin = pr.negatives_begin, p.negatives_count = pr.negatives_count;
    return p;
}

// ---- the reference ------------------------------------------------------------------------------

struct Want {
    std::vector<double> loss, row_stats, column_stats; // the range's
    std::vector<double> grad_a, grad_b;                // the range's rows, dense
    double grad_scale = 0.0, grad_bias = 0.0;
};

closs_matrix_t a_matrix(const Problem &pr) {
    return closs_matrix_ld(pr.a.data(), CLOSS_F32, pr.pairs, pr.dim, pr.lda);
}
closs_matrix_t b_matrix(const Problem &pr) {
    return closs_matrix_ld(pr.b.data(), CLOSS_F32, pr.rows_b(), pr.dim, pr.ldb);
}

// The loss, statistics and gradients of the range, with the upstream gradients given (NULL: 1).
Want reference(const Problem &pr, const double *upstream) {
    const Range range = range_of(pr);
    Want want;
    want.loss.assign(range.count, NAN);
    want.row_stats.assign(range.count, NAN);
    want.column_stats.assign(range.count, NAN);
    want.grad_a.assign((size_t)range.count * pr.dim, NAN);
    want.grad_b.assign((size_t)range.grad_b_rows() * pr.dim, NAN);
    closs_status_t status;
    if (pr.siglip) {
        const closs_siglip_params p = siglip_params(pr);
        status = closs_ref_siglip(&p, a_matrix(pr), b_matrix(pr), upstream, want.loss.data(),
                                  want.grad_a.data(), want.grad_b.data(), &want.grad_scale,
                                  &want.grad_bias);
    } else {
        const closs_clip_params p = clip_params(pr);
        status = closs_ref_clip(&p, a_matrix(pr), b_matrix(pr), upstream, want.loss.data(),
                                want.grad_a.data(), want.grad_b.data(), &want.grad_scale);
        if (status == CLOSS_STATUS_SUCCESS)
            status = closs_ref_clip_forward(&p, a_matrix(pr), b_matrix(pr), want.loss.data(),
                                            want.row_stats.data(), want.column_stats.data());
    }
    cr_assert_eq(status, CLOSS_STATUS_SUCCESS, "%s", closs_last_error());
    return want;
}

// ---- the kernels on the CPU harness -------------------------------------------------------------

template <typename T> T from(float v) {
    if constexpr (std::is_same_v<T, float>) return v;
    else if constexpr (std::is_same_v<T, __half>) return __float2half_rn(v);
    else return __float2bfloat16_rn(v);
}
float as_float(float v) { return v; }
float as_float(__half v) { return __half2float(v); }
float as_float(__nv_bfloat16 v) { return __bfloat162float(v); }
template <typename T> closs_dtype_t dtype_of() {
    return std::is_same_v<T, float>    ? CLOSS_F32
           : std::is_same_v<T, __half> ? CLOSS_F16
                                       : CLOSS_BF16;
}

// A status other than success from the chunked path's cuBLAS calls fails the test, naming it.
void expect_cublas_success(cublasStatus_t status, const char *what) {
    cr_assert_eq(status, CUBLAS_STATUS_SUCCESS, "%s: cuBLAS status %d", what, (int)status);
}

// run_plan's launches on the harness: the grid-stride kernels on 2 blocks (which also runs their
// strides), the walks as two_tower_fused.cu or two_tower_chunked.cu launches them.
template <typename T, bool kSiglip> struct CpuLaunches {
    const closs_two_tower_launch &job;
    Path path;

    cudaError_t embed() {
        launch(2, closs::kTwoTowerBlock, [&] { closs::embed_kernel<T>(job); });
        launch(2, closs::kTwoTowerBlock, [&] { closs::positives_kernel<T>(job); });
        return cudaSuccess;
    }
    cudaError_t finish_forward() {
        launch(2, closs::kTwoTowerBlock, [&] { closs::pair_loss_kernel(job); });
        launch(1, closs::kTwoTowerBlock, [&] { closs::finish_loss_kernel(job); });
        return cudaSuccess;
    }
    cudaError_t prepare_backward() {
        launch(2, closs::kTwoTowerBlock, [&] { closs::prepare_backward_kernel(job); });
        return cudaSuccess;
    }
    cudaError_t finish_scalars() {
        launch(1, closs::kTwoTowerBlock, [&] { closs::finish_scalars_kernel(job); });
        return cudaSuccess;
    }
    cudaError_t walk(const closs::TwoTowerWalk &walk, bool backward) {
        const int64_t anchors = walk.anchor_end - walk.anchor_begin;
        if (anchors <= 0) return cudaSuccess;
        if (path == Path::chunked) return chunked_walk(walk, backward);
        if (path == Path::engine && closs::tt_engine_walk<T, kSiglip>(job.dim, backward))
            return engine_walk(walk, backward, anchors);
        if (!backward) {
            launch((unsigned)((anchors + closs::kTtTile - 1) / closs::kTtTile), closs::kTtThreads,
                   [&] { closs::forward_walk_kernel<T, kSiglip>(job, walk); });
            return cudaSuccess;
        }
        closs::with_backward_variant(job.dim, [&](auto rows, auto max_dim) {
            constexpr int kRows = decltype(rows)::value;
            launch((unsigned)((anchors + kRows - 1) / kRows), closs::kTtThreads, [&] {
                closs::backward_walk_kernel<T, kSiglip, kRows, decltype(max_dim)::value>(job, walk);
            });
        });
        return cudaSuccess;
    }
    // two_tower_fused.cu's engine walk, with its launch shape and dynamic shared memory (the
    // harness faults on an access past those bytes).
    cudaError_t engine_walk(const closs::TwoTowerWalk &walk, bool backward, int64_t anchors) {
        if constexpr (closs::kTtEngineLoss<T, kSiglip>) {
            closs::with_engine_dim(job.dim, [&](auto dim) {
                constexpr int kDim = decltype(dim)::value;
                auto blocks = [&](int rows) { return (unsigned)((anchors + rows - 1) / rows); };
                if constexpr (std::is_same_v<T, __nv_bfloat16>) {
                    using Shape = closs::TtBackwardShape<kDim>;
                    if (backward) {
                        launch(blocks(Shape::kAnchorRows), Shape::kThreads, Shape::kBytes,
                               [&] { closs::tile_backward_walk_kernel<T, kSiglip, kDim>(job, walk); });
                        return 0;
                    }
                }
                using Shape = closs::TtForwardShape<kDim>;
                launch(blocks(Shape::kAnchorRows), Shape::kThreads, Shape::kBytes,
                       [&] { closs::tile_forward_walk_kernel<T, kSiglip, kDim>(job, walk); });
                return 0;
            });
        }
        return cudaSuccess;
    }
    // two_tower_chunked.cu's run_walk, its cuBLAS calls run by the model (job.cublas).
    cudaError_t chunked_walk(const closs::TwoTowerWalk &walk, bool backward) {
        const bool has_columns = walk.column_end > walk.column_begin;
        const auto cublas = static_cast<cublasHandle_t>(job.cublas);
        for (int64_t first = walk.anchor_begin; first < walk.anchor_end; first += job.chunk_rows) {
            const int64_t chunk = std::min(job.chunk_rows, walk.anchor_end - first);
            if (has_columns)
                expect_cublas_success(closs::similarity_block(job, walk, cublas, first, chunk),
                                      "similarity_block");
            if (!backward) {
                launch((unsigned)chunk, closs::kTwoTowerBlock,
                       [&] { closs::block_forward_kernel<kSiglip>(job, walk, first, job.block); });
                continue;
            }
            launch((unsigned)chunk, closs::kTwoTowerBlock,
                   [&] { closs::block_coefficients_kernel<kSiglip>(job, walk, first, job.block); });
            if (!walk.grad) continue;
            if (has_columns)
                expect_cublas_success(closs::gradient_block(job, walk, cublas, chunk),
                                      "gradient_block");
            else std::fill(job.block_grad, job.block_grad + chunk * job.dim, 0.0f);
            launch(2, closs::kTwoTowerBlock, [&] {
                closs::gradient_epilogue_kernel<T>(job, walk, first, chunk, job.block_grad);
            });
        }
        return cudaSuccess;
    }
};

// What a call gives, as floats: the loss values (and a guard), CLIP's statistics of the range (and
// guards), the gradients with their padding and a guard row each, the scalar gradients.
struct Got {
    std::vector<float> loss, row_stats, column_stats, grad_a, grad_b;
    float grad_scale = NAN, grad_bias = NAN;
};

enum class Call { forward, backward, forward_backward };

// One call through the kernels, laid out as host/gpu_two_tower.c lays out a launch; every buffer
// starts as NaN. `all_pairs`: a forward of the whole batch whatever the range (for the statistics
// a backward reads). `stats`: the backward's statistics of all N pairs (row, then column).
template <typename T>
Got run_kernels(const Problem &pr, Path path, Call call, bool all_pairs,
                const std::vector<float> *upstream, const Got *stats) {
    const Range full = range_of(pr);
    const Range range = all_pairs ? Range{0, pr.pairs, 0, 0} : full;
    const int64_t N = pr.pairs, R = pr.rows_b(), D = pr.dim;
    std::vector<T> a(pr.a.size()), b(pr.b.size());
    for (size_t e = 0; e < a.size(); ++e) a[e] = from<T>(pr.a[e]);
    for (size_t e = 0; e < b.size(); ++e) b[e] = from<T>(pr.b[e]);
    const bool forward = call != Call::backward, backward = call != Call::forward;
    Got got;
    const int64_t losses = pr.reduction == CLOSS_REDUCTION_NONE ? range.count : 1;
    got.loss.assign(losses + 1, NAN);
    got.row_stats.assign(range.count + 1, NAN);
    got.column_stats.assign(range.count + 1, NAN);
    std::vector<T> grad_a((size_t)(range.count + 1) * pr.lda, from<T>(NAN));
    std::vector<T> grad_b((size_t)(range.grad_b_rows() + 1) * pr.ldb, from<T>(NAN));

    closs_two_tower_launch job = {};
    job.siglip = pr.siglip, job.dtype = dtype_of<T>();
    job.pairs = N, job.rows_b = R, job.dim = D;
    job.a = a.data(), job.b = b.data(), job.lda = pr.lda, job.ldb = pr.ldb;
    job.normalize = pr.normalize, job.symmetric = pr.siglip ? 0 : pr.symmetric;
    job.in_batch_negatives = pr.siglip ? 1 : pr.in_batch, job.reduction = pr.reduction;
    float device_scale = (float)pr.scale, device_bias = (float)pr.bias;
    job.scale_value = pr.device_scalars ? NAN : (float)pr.scale;
    job.bias_value = pr.device_scalars ? NAN : (float)pr.bias;
    if (pr.device_scalars)
        job.logit_scale = &device_scale, job.logit_bias = pr.siglip ? &device_bias : nullptr;
    job.row_begin = range.begin, job.row_count = range.count;
    job.negatives_begin = range.negatives_begin, job.negatives_count = range.negatives_count;
    job.stats_begin = backward ? 0 : range.begin;
    job.stats_count = backward ? N : range.count;
    job.forward = forward;
    job.loss = got.loss.data();
    job.upstream = upstream ? upstream->data() : nullptr;
    // the workspace, NaN
    std::vector<float> per_pair(12 * N, NAN), per_row_b(4 * R, NAN);
    float *w = per_pair.data();
    for (float **slot :
         {&job.norms_a, &job.inv_norm_a, &job.positives, &job.row_loss, &job.factor_a, &job.lse_a,
          &job.scale_share, &job.bias_share, &job.row_stats, &job.column_stats})
        *slot = w, w += N;
    w = per_row_b.data();
    for (float **slot : {&job.norms_b, &job.inv_norm_b, &job.factor_b, &job.lse_b})
        *slot = w, w += R;
    std::vector<float> stats_copy;
    if (call == Call::forward) { // the caller's statistics, the range's
        job.row_stats = got.row_stats.data();
        job.column_stats = got.column_stats.data();
    } else if (call == Call::backward) { // the caller's, all N
        stats_copy = stats->row_stats;
        stats_copy.insert(stats_copy.end(), stats->column_stats.begin(), stats->column_stats.end());
        job.row_stats = stats_copy.data();
        job.column_stats = stats_copy.data() + stats->row_stats.size();
    }
    if (backward) {
        job.grad_a = grad_a.data(), job.grad_a_ld = pr.lda;
        job.grad_b = grad_b.data(), job.grad_b_ld = pr.ldb;
        job.grad_logit_scale = &got.grad_scale;
        job.grad_logit_bias = pr.siglip ? &got.grad_bias : nullptr;
    }
    std::vector<float> a_hat, b_hat, block, block_grad;
    cublas_model::Handle cublas; // may touch the float rows and the two blocks, nothing else
    if (path == Path::chunked) { // chunks that end inside the walks, a last one partial
        job.chunk_rows = std::max<int64_t>(1, N / 3);
        a_hat.assign(N * D, NAN), b_hat.assign(R * D, NAN);
        block.assign(job.chunk_rows * R, NAN), block_grad.assign(job.chunk_rows * D, NAN);
        job.a_hat = a_hat.data(), job.b_hat = b_hat.data(), job.block = block.data(),
        job.block_grad = block_grad.data();
        cublas_model::allow(cublas, "a_hat", a_hat), cublas_model::allow(cublas, "b_hat", b_hat);
        cublas_model::allow(cublas, "block", block);
        cublas_model::allow(cublas, "block_grad", block_grad);
        job.cublas = &cublas;
    }
    if (pr.siglip) {
        CpuLaunches<T, true> launches{job, path};
        closs::run_plan(job, launches);
    } else {
        CpuLaunches<T, false> launches{job, path};
        closs::run_plan(job, launches);
    }
    got.grad_a.resize(grad_a.size()), got.grad_b.resize(grad_b.size());
    for (size_t e = 0; e < grad_a.size(); ++e) got.grad_a[e] = as_float(grad_a[e]);
    for (size_t e = 0; e < grad_b.size(); ++e) got.grad_b[e] = as_float(grad_b[e]);
    return got;
}

// ---- comparisons --------------------------------------------------------------------------------

// ‖got − want‖ / max(‖want‖, floor) over the dense rows of a strided result; NaN where got has a
// NaN that want has not. `wrote_outside` counts padding and guard-row elements that are not NaN.
double strided_error(const std::vector<float> &got, int64_t ld, const std::vector<double> &want,
                     int64_t rows, int64_t dim, double floor, int *wrote_outside) {
    double difference = 0.0, norm = 0.0;
    bool nan = false;
    for (int64_t r = 0; r < rows; ++r) {
        for (int64_t c = 0; c < dim; ++c) {
            const double g = got[r * ld + c], w = want[r * dim + c];
            nan |= std::isnan(g) && !std::isnan(w);
            difference += (g - w) * (g - w);
            norm += w * w;
        }
        for (int64_t c = dim; c < ld; ++c) *wrote_outside += !std::isnan(got[r * ld + c]);
    }
    for (int64_t c = 0; c < ld; ++c) *wrote_outside += !std::isnan(got[rows * ld + c]);
    return nan ? NAN : std::sqrt(difference) / std::max({std::sqrt(norm), floor, 1e-300});
}

// The same for `count` values (and the guard after them).
double values_error(const std::vector<float> &got, const std::vector<double> &want, int64_t count,
                    double floor, int *wrote_outside) {
    double difference = 0.0, norm = 0.0;
    bool nan = false;
    for (int64_t i = 0; i < count; ++i) {
        nan |= std::isnan(got[i]) && !std::isnan(want[i]);
        difference += (got[i] - want[i]) * (got[i] - want[i]);
        norm += want[i] * want[i];
    }
    *wrote_outside += !std::isnan(got[count]);
    return nan ? NAN : std::sqrt(difference) / std::max({std::sqrt(norm), floor, 1e-300});
}

// The scales of the tolerances (as tests/test_gpu_contrastive.c's): L = s·max|c_ij|, the logits'
// spread; the gradient floor 0.2·s·w·R·sqrt(Σ_i 1/n_i²) (w the largest weight, R the largest
// embedded norm of the other tower, n_i the row's norm clamped), a fifth of the terms that cancel
// where a gradient is 0 mathematically (N = 1, D = 1 normalised).
struct Scales {
    double logits, grad_a_floor, grad_b_floor, scalar_floor;
};

Scales scales_of(const Problem &pr, const double *upstream) {
    const Range range = range_of(pr);
    const int64_t N = pr.pairs, R = pr.rows_b(), D = pr.dim;
    auto embedded = [&](const std::vector<float> &m, int64_t ld, int64_t rows,
                        std::vector<double> &out, std::vector<double> &norms) {
        out.assign(rows * D, 0.0), norms.assign(rows, 0.0);
        for (int64_t r = 0; r < rows; ++r) {
            double sq = 0.0;
            for (int64_t c = 0; c < D; ++c) sq += (double)m[r * ld + c] * m[r * ld + c];
            norms[r] = std::sqrt(sq);
            const double scale = pr.normalize ? 1.0 / std::max(norms[r], 1e-12) : 1.0;
            for (int64_t c = 0; c < D; ++c) out[r * D + c] = m[r * ld + c] * scale;
        }
    };
    std::vector<double> a, b, na, nb;
    embedded(pr.a, pr.lda, N, a, na);
    embedded(pr.b, pr.ldb, R, b, nb);
    double cmax = 0.0, ra = 0.0, rb = 0.0, wmax = 0.0, inv_a = 0.0, inv_b = 0.0;
    for (int64_t i = 0; i < N; ++i)
        for (int64_t j = 0; j < R; ++j) {
            double c = 0.0;
            for (int64_t k = 0; k < D; ++k) c += a[i * D + k] * b[j * D + k];
            cmax = std::max(cmax, std::fabs(c));
        }
    for (int64_t i = 0; i < N; ++i) {
        double sq = 0.0;
        for (int64_t k = 0; k < D; ++k) sq += a[i * D + k] * a[i * D + k];
        ra = std::max(ra, std::sqrt(sq));
        const double u = pr.reduction == CLOSS_REDUCTION_NONE ? (upstream ? upstream[i] : 1.0)
                                                              : (upstream ? upstream[0] : 1.0);
        wmax = std::max(wmax, std::fabs(pr.reduction == CLOSS_REDUCTION_MEAN ? u / N : u));
    }
    for (int64_t j = 0; j < R; ++j) {
        double sq = 0.0;
        for (int64_t k = 0; k < D; ++k) sq += b[j * D + k] * b[j * D + k];
        rb = std::max(rb, std::sqrt(sq));
    }
    for (int64_t i = range.begin; i < range.begin + range.count; ++i) {
        const double n = pr.normalize ? std::max(na[i], 1e-12) : 1.0;
        inv_a += 1.0 / (n * n);
    }
    auto add_b = [&](int64_t j) {
        const double n = pr.normalize ? std::max(nb[j], 1e-12) : 1.0;
        inv_b += 1.0 / (n * n);
    };
    for (int64_t j = range.begin; j < range.begin + range.count; ++j) add_b(j);
    for (int64_t k = 0; k < range.negatives_count; ++k) add_b(N + range.negatives_begin + k);
    Scales s;
    s.logits = std::max(pr.scale * cmax, 1e-3);
    s.grad_a_floor = 0.2 * pr.scale * wmax * rb * std::sqrt(inv_a);
    s.grad_b_floor = 0.2 * pr.scale * wmax * ra * std::sqrt(inv_b);
    s.scalar_floor = 0.1 * wmax * cmax * (double)range.count * (double)R;
    return s;
}

// The largest errors of one problem's calls, each relative to its floor (see check()).
struct Errors {
    double stats = 0, loss = 0, grad_a = 0, grad_b = 0, scalars = 0;
    int wrote_outside = 0;
    bool loss_bits_differ = false;
};

void worst(double &into, double e) { into = std::isnan(e) ? INFINITY : std::max(into, e); }
void worst_of(Errors &largest, const Errors &e) {
    for (auto [into, from] : {std::pair{&largest.stats, e.stats},
                              {&largest.loss, e.loss},
                              {&largest.grad_a, e.grad_a},
                              {&largest.grad_b, e.grad_b},
                              {&largest.scalars, e.scalars}})
        worst(*into, from);
}

// Losses: norm-wise against max(‖want‖, 0.1·L per pair in the reduction). Statistics: each within
// 1e-5·max(|want|, L) (the largest ratio is reported). Scalars: against max(|want|, their floor).
template <typename T> Errors check(const Problem &given, Path path) {
    Problem pr = given;
    for (float &v : pr.a) v = std::isnan(v) ? v : as_float(from<T>(v)); // what the kernels see
    for (float &v : pr.b) v = std::isnan(v) ? v : as_float(from<T>(v));
    const Range range = range_of(pr);
    const int64_t D = pr.dim;
    Errors e;
    const int64_t losses = pr.reduction == CLOSS_REDUCTION_NONE ? range.count : 1;
    std::vector<double> upstream_d(pr.upstream.begin(), pr.upstream.end());
    const Want want = reference(pr, nullptr), want_upstream = reference(pr, upstream_d.data());
    const Scales scale = scales_of(pr, nullptr), scale_upstream = scales_of(pr, upstream_d.data());
    const double per_pair = 0.1 * scale.logits;
    const double loss_floor = pr.reduction == CLOSS_REDUCTION_SUM ? per_pair * range.count
                              : pr.reduction == CLOSS_REDUCTION_NONE
                                  ? per_pair * std::sqrt((double)range.count)
                                  : per_pair * range.count / pr.pairs;
    // the forward of the range alone
    const Got forward = run_kernels<T>(pr, path, Call::forward, false, nullptr, nullptr);
    worst(e.loss, values_error(forward.loss, want.loss, losses, loss_floor, &e.wrote_outside));
    if (!pr.siglip) {
        for (int side = 0; side < 1 + pr.symmetric; ++side) {
            const std::vector<float> &got = side ? forward.column_stats : forward.row_stats;
            const std::vector<double> &stat = side ? want.column_stats : want.row_stats;
            for (int64_t i = 0; i < range.count; ++i) {
                const double allowed = std::max(std::fabs(stat[i]), scale.logits);
                const double error = stat[i] == -INFINITY ? (got[i] == -INFINITY ? 0.0 : INFINITY)
                                                          : std::fabs(got[i] - stat[i]) / allowed;
                worst(e.stats, error);
            }
            e.wrote_outside += !std::isnan(got[range.count]);
        }
    }
    // the backward alone, from a forward of every pair's statistics, with random upstream
    const Got all = run_kernels<T>(pr, path, Call::forward, true, nullptr, nullptr);
    Got stats;
    stats.row_stats.assign(all.row_stats.begin(), all.row_stats.begin() + pr.pairs);
    stats.column_stats.assign(all.column_stats.begin(), all.column_stats.begin() + pr.pairs);
    const Got backward = run_kernels<T>(pr, path, Call::backward, false, &pr.upstream, &stats);
    worst(e.grad_a, strided_error(backward.grad_a, pr.lda, want_upstream.grad_a, range.count, D,
                                  scale_upstream.grad_a_floor, &e.wrote_outside));
    worst(e.grad_b,
          strided_error(backward.grad_b, pr.ldb, want_upstream.grad_b, range.grad_b_rows(), D,
                        scale_upstream.grad_b_floor, &e.wrote_outside));
    worst(e.scalars,
          std::fabs(backward.grad_scale - want_upstream.grad_scale) /
              std::max(std::fabs(want_upstream.grad_scale), scale_upstream.scalar_floor));
    if (pr.siglip)
        worst(e.scalars,
              std::fabs(backward.grad_bias - want_upstream.grad_bias) /
                  std::max(std::fabs(want_upstream.grad_bias), scale_upstream.scalar_floor));
    // forward+backward
    const Got both = run_kernels<T>(pr, path, Call::forward_backward, false, nullptr, nullptr);
    worst(e.loss, values_error(both.loss, want.loss, losses, loss_floor, &e.wrote_outside));
    e.loss_bits_differ =
        std::memcmp(both.loss.data(), forward.loss.data(), losses * sizeof(float)) != 0;
    worst(e.grad_a, strided_error(both.grad_a, pr.lda, want.grad_a, range.count, D,
                                  scale.grad_a_floor, &e.wrote_outside));
    worst(e.grad_b, strided_error(both.grad_b, pr.ldb, want.grad_b, range.grad_b_rows(), D,
                                  scale.grad_b_floor, &e.wrote_outside));
    worst(e.scalars, std::fabs(both.grad_scale - want.grad_scale) /
                         std::max(std::fabs(want.grad_scale), scale.scalar_floor));
    if (pr.siglip)
        worst(e.scalars, std::fabs(both.grad_bias - want.grad_bias) /
                             std::max(std::fabs(want.grad_bias), scale.scalar_floor));
    return e;
}

const char *dtype_names[] = {"f32", "f16", "bf16"};
const double grad_tolerances[] = {1e-4, 2e-3, 1e-2}; // the GPU suites' (rounding to the dtype)

Errors check_dtype(const Problem &pr, int t, Path path) {
    return t == 0   ? check<float>(pr, path)
           : t == 1 ? check<__half>(pr, path)
                    : check<__nv_bfloat16>(pr, path);
}

std::string describe(const Problem &pr) {
    static const char *reductions[] = {"mean", "sum", "none"};
    char text[400];
    snprintf(text, sizeof text,
             "%s N=%d K=%d D=%d lda=%d ldb=%d normalize=%d symmetric=%d in_batch=%d "
             "grad_negatives=%d %s s=%g "
             "beta=%g%s range [%lld, +%lld) negatives [%lld, +%lld)",
             pr.siglip ? "siglip" : "clip", pr.pairs, pr.negatives, pr.dim, pr.lda, pr.ldb,
             pr.normalize, pr.symmetric, pr.in_batch, pr.grad_negatives, reductions[pr.reduction],
             pr.scale, pr.bias, pr.device_scalars ? " (device scalars)" : "",
             (long long)pr.row_begin, (long long)pr.row_count, (long long)pr.negatives_begin,
             (long long)pr.negatives_count);
    return text;
}

// Tolerances: losses 1e-5 and statistics 1e-5 (float arithmetic from exact inputs, whatever the
// dtype); gradients the dtype's (its rounding), plus float arithmetic's part, which grows with
// the logits' spread L as a softmax or sigmoid does: 1e-4·(max(1, L/10) − 1); the scalar
// gradients (float, not rounded to the dtype) 1e-4·max(1, L/10).
void expect_within(const Problem &pr, int t, Path path, const Errors &e) {
    const double conditioning = std::max(1.0, pr.scale / 10.0);
    const double grad_tolerance = grad_tolerances[t] + 1e-4 * (conditioning - 1.0);
    const double scalar_tolerance = 1e-4 * conditioning;
    cr_expect(e.stats <= 1e-5 && e.loss <= 1e-5 && e.grad_a <= grad_tolerance &&
                  e.grad_b <= grad_tolerance && e.scalars <= scalar_tolerance &&
                  e.wrote_outside == 0 && !e.loss_bits_differ,
              "%s %s %s: statistics error %.2e, loss %.2e, grad_a %.2e, grad_b %.2e (tolerance "
              "%.1e), scalars "
              "%.2e (%.1e), %d element(s) written outside the outputs, forward+backward's loss %s",
              path_name(path), dtype_names[t], describe(pr).c_str(),
              e.stats, e.loss, e.grad_a, e.grad_b, grad_tolerance, e.scalars, scalar_tolerance,
              e.wrote_outside,
              e.loss_bits_differ ? "differs from the forward's bits" : "has the forward's bits");
}

// ---- inputs -------------------------------------------------------------------------------------

unsigned long long random_state;
double uniform() {
    random_state = random_state * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(random_state >> 11) * 0x1p-53;
}

// Random rows, each partner b_i leaning towards a_i (positives score above most negatives), the
// padding NaN; unnormalised rows are scaled so that s·a·b spreads over a few units.
void fill(Problem &pr) {
    const int R = pr.rows_b();
    pr.lda = pr.dim + (pr.dim % 2 ? 3 : 0);
    pr.ldb = pr.dim + (pr.dim % 3 == 1 ? 2 : 0);
    pr.a.assign((size_t)pr.pairs * pr.lda, NAN);
    pr.b.assign((size_t)R * pr.ldb, NAN);
    const double spread = pr.normalize ? 1.0 : 1.5 / std::sqrt(pr.scale * pr.dim / 3.0);
    for (int i = 0; i < pr.pairs; ++i)
        for (int c = 0; c < pr.dim; ++c)
            pr.a[(size_t)i * pr.lda + c] = (float)(spread * (2 * uniform() - 1));
    for (int j = 0; j < R; ++j)
        for (int c = 0; c < pr.dim; ++c) {
            double v = spread * (2 * uniform() - 1);
            if (j < pr.pairs) v = 0.6 * pr.a[(size_t)j * pr.lda + c] + 0.8 * v;
            pr.b[(size_t)j * pr.ldb + c] = (float)v;
        }
    pr.upstream.resize(pr.reduction == CLOSS_REDUCTION_NONE ? pr.pairs : 1);
    for (float &u : pr.upstream) u = (float)(0.25 + 1.5 * uniform());
}

const int pair_counts[] = {1, 3, 65, 130};
const int dims[] = {1, 3, 17, 64, 65, 130, 300};
const int negative_counts[] = {0, 7, 70};
const double scales[] = {1.0, 1.0 / 0.07, 100.0};

// Case (siglip, ni, di) of the sweep: shapes from the lists, options varied with the indices.
Problem sweep_case(bool siglip, int ni, int di) {
    Problem pr;
    pr.siglip = siglip;
    pr.pairs = pair_counts[ni];
    pr.dim = dims[di];
    pr.negatives = negative_counts[(ni + 2 * di) % 3];
    pr.normalize = (ni + di) % 4 != 0;
    pr.symmetric = siglip ? 0 : (ni + di) % 3 != 2;
    pr.in_batch = pr.symmetric || (ni * 3 + di) % 2;
    pr.grad_negatives = (ni + di) % 5 != 1;
    pr.reduction = (closs_reduction_t)((ni + 2 * di) % 3);
    pr.scale = scales[(ni * 7 + di) % 3];
    pr.bias = siglip ? (di % 2 ? -10.0 : 2.5) : 0.0;
    pr.device_scalars = (ni + di) % 2;
    fill(pr);
    return pr;
}

// The sweep on one path, case c in dtypes[c mod count]; logs the largest errors.
void sweep(std::vector<int> dtypes, Path path, unsigned long long seed) {
    random_state = seed;
    Errors largest;
    for (int siglip = 0; siglip <= 1; ++siglip)
        for (int ni = 0; ni < 4; ++ni)
            for (int di = 0; di < 7; ++di) {
                const Problem pr = sweep_case(siglip, ni, di);
                const int dtype = dtypes[(ni + di + siglip) % dtypes.size()];
                const Errors e = check_dtype(pr, dtype, path);
                expect_within(pr, dtype, path, e);
                worst_of(largest, e);
            }
    cr_log_info("%s, %s: largest errors: statistics %.2e, loss %.2e, grad_a %.2e, grad_b %.2e, "
                "scalars %.2e",
                path_name(path),
                dtypes.size() > 1 ? "dtypes in turn" : dtype_names[dtypes[0]], largest.stats,
                largest.loss, largest.grad_a, largest.grad_b, largest.scalars);
}

} // namespace

Test(two_tower_kernels, fused_f32_match_reference) { sweep({0}, Path::fused, 23001); }

// f16 and bf16 rows read and widened by the same SIMT kernels: the results carry the gradient's
// rounding to the dtype (the tolerances' first part) and nothing else.
Test(two_tower_kernels, fused_16bit_match_reference) { sweep({1, 2}, Path::fused, 23002); }

// The walks on the tile engine (two_tower_tile_kernels.cuh), as a device with sm_80 code runs
// them: bf16's forward and backward walks with D ≤ 512 (D = 300: engine_wide_dims' shapes),
// mma.sync, ldmatrix and cp.async emulated lane by lane and every shared access race-checked.
// Tolerances as the SIMT walks': the statistics and losses are float arithmetic on the exact
// products (1e-5); the gradients' bf16 part (1e-2) covers G' = G·r_j rounded to bf16 once per term
// (2^-9 of each term, of one sign off the diagonal, so no cancellation amplifies it), below the
// output's own rounding to bf16.
Test(two_tower_kernels, engine_bf16_match_reference) { sweep({2}, Path::engine, 23007); }

// f16 on an sm_80+ device: CLIP's forward walks on the engine (its backward and SigLIP on the SIMT
// walks, which the statistics of the engine's forward feed).
Test(two_tower_kernels, engine_f16_match_reference) { sweep({1}, Path::engine, 23008); }

// The engine's walks at 256 < D ≤ 512 (D padded to 512: anchors staged in shared memory, and the
// backward's warps in pairs that share 16 anchor rows, split the column tile for S and G' and D
// for dẐ, pass G' and combine ẑ·dẑ and the shares through shared memory): D = 264 (the second
// part of D mostly padding), 384 (half padding) and 512 (both parts whole); N over one to three
// anchor blocks, K = 0 and K > 0 (masked column tiles at the walks' ends and on the diagonal, in
// either half of a tile), normalisation on and off, every reduction, CLIP symmetric and not,
// SigLIP (whose forward must sum each row's loss in the backward's order: the loss bits of a
// forward and a forward+backward are compared); bf16 (forward and backward) and f16 (CLIP's
// forward walks). Tolerances as the sweep's.
Test(two_tower_kernels, engine_wide_dims) {
    random_state = 23009;
    const int wide_dims[] = {264, 384, 512};
    const int wide_pairs[] = {3, 65, 130};
    Errors largest;
    for (int siglip = 0; siglip <= 1; ++siglip)
        for (int di = 0; di < 3; ++di)
            for (int ni = 0; ni < 3; ++ni) {
                Problem pr = sweep_case(siglip, ni + 1, 3); // options varied as the sweep's
                pr.dim = wide_dims[di], pr.pairs = wide_pairs[ni];
                pr.negatives = negative_counts[(ni + di + siglip) % 3];
                pr.normalize = (ni + di + siglip) % 3 != 1;
                pr.symmetric = siglip ? 0 : (ni + di) % 2 == 0;
                pr.in_batch = pr.symmetric || di != 1;
                pr.reduction = (closs_reduction_t)((ni + 2 * di + siglip) % 3);
                fill(pr);
                const int dtype = !siglip && (ni + di) % 3 == 2 ? 1 : 2;
                const Errors e = check_dtype(pr, dtype, Path::engine);
                expect_within(pr, dtype, Path::engine, e);
                worst_of(largest, e);
            }
    cr_log_info("engine, D > 256: largest errors: statistics %.2e, loss %.2e, grad_a %.2e, "
                "grad_b %.2e, scalars %.2e",
                largest.stats, largest.loss, largest.grad_a, largest.grad_b, largest.scalars);
}

// The chunked path's kernels and cuBLAS calls (through tests/cublas_model.h), the dtypes in turn.
Test(two_tower_kernels, chunked_match_reference) { sweep({0, 1, 2}, Path::chunked, 23003); }

// Row ranges (closs.h "Two-tower row ranges"): pairs starting and ending inside and on the 64-row
// tiles (and the 32-row ones of D > 256), extra negatives inside and at the ends of the K rows;
// both losses, both paths, f32 and (in turn) f16 or bf16, and bf16 on the engine's walks.
Test(two_tower_kernels, row_ranges) {
    random_state = 23004;
    const int64_t pairs[][2] = {{5, 66}, {64, 2}, {63, 67}, {129, 1}, {0, 130}};
    const int64_t negatives[][2] = {{0, 0}, {10, 30}, {69, 1}, {0, 70}, {40, 0}};
    for (int siglip = 0; siglip <= 1; ++siglip)
        for (int r = 0; r < 5; ++r) {
            Problem pr = sweep_case(siglip, 3, r % 2 ? 5 : 6); // N = 130, D = 130 or 300
            pr.negatives = 70, pr.grad_negatives = 1, pr.in_batch = pr.symmetric || r % 2;
            pr.reduction = (closs_reduction_t)(r % 3);
            pr.row_begin = pairs[r][0], pr.row_count = pairs[r][1];
            pr.negatives_begin = negatives[r][0], pr.negatives_count = negatives[r][1];
            fill(pr);
            const int t = 1 + (r + siglip) % 2;
            expect_within(pr, 0, Path::fused, check_dtype(pr, 0, Path::fused));
            expect_within(pr, t, Path::fused, check_dtype(pr, t, Path::fused));
            expect_within(pr, t, Path::chunked, check_dtype(pr, t, Path::chunked));
            expect_within(pr, 2, Path::engine, check_dtype(pr, 2, Path::engine));
        }
}

// Large logit scales on normalised rows, with confident pairs (a partner equal to its row) and
// negatives equal or opposite to a row: the exponents reach ±2s. Everything matches the reference
// (no overflow, no NaN), and a confident pair keeps its tiny loss and gradient (f32, and bf16 on
// the engine's walks).
Test(two_tower_kernels, large_logit_scales) {
    random_state = 23005;
    for (int siglip = 0; siglip <= 1; ++siglip)
        for (double scale : {100.0, 1000.0}) {
            Problem pr;
            pr.siglip = siglip, pr.pairs = 67, pr.negatives = 9, pr.dim = 33;
            pr.scale = scale, pr.bias = siglip ? -scale / 2 : 0.0,
            pr.reduction = CLOSS_REDUCTION_NONE;
            fill(pr);
            for (int j = 0; j < pr.rows_b(); ++j)
                for (int c = 0; c < pr.dim; ++c) {
                    const float v = pr.a[(size_t)(j % pr.pairs) * pr.lda + c];
                    if (j < pr.pairs && j % 3 == 0) pr.b[(size_t)j * pr.ldb + c] = v; // confident
                    if (j >= pr.pairs)
                        pr.b[(size_t)j * pr.ldb + c] = j % 2 ? v : -v; // equal or opposite
                }
            for (Path path : {Path::fused, Path::chunked})
                expect_within(pr, 0, path, check_dtype(pr, 0, path));
            expect_within(pr, 2, Path::engine, check_dtype(pr, 2, Path::engine));
        }
}

// NaN or Inf in a row of a or b reaches every value computed from it and nothing else: the loss,
// CLIP's statistics and the gradients are NaN exactly where the reference's are (both paths and
// the engine's walks, CLIP and SigLIP).
Test(two_tower_kernels, nonfinite_rows_propagate) {
    random_state = 23006;
    for (int siglip = 0; siglip <= 1; ++siglip)
        for (int where = 0; where < 3; ++where) {
            Problem pr = sweep_case(siglip, 2, 2); // N = 65, D = 17
            pr.negatives = 7, pr.symmetric = 0, pr.in_batch = where != 2,
            pr.reduction = CLOSS_REDUCTION_NONE;
            fill(pr);
            const float bad = where == 1 ? INFINITY : NAN;
            if (where == 0) pr.a[3 * (size_t)pr.lda + 2] = bad; // a row of a
            else
                pr.b[(size_t)(where == 1 ? 5 : pr.pairs + 2) * pr.ldb] =
                    bad; // a partner, a negative
            std::vector<double> upstream(pr.upstream.begin(), pr.upstream.end());
            const Want want = reference(pr, upstream.data());
            const Range range = range_of(pr);
            for (Path path : {Path::fused, Path::chunked, Path::engine}) { // the engine's in bf16
                auto run = [&](Call call) {
                    return path == Path::engine
                               ? run_kernels<__nv_bfloat16>(pr, path, call, false, nullptr, nullptr)
                               : run_kernels<float>(pr, path, call, false, nullptr, nullptr);
                };
                const Got forward = run(Call::forward), both = run(Call::forward_backward);
                int mismatches = 0;
                for (int64_t i = 0; i < range.count; ++i) {
                    mismatches += std::isnan(forward.loss[i]) != std::isnan(want.loss[i]);
                    if (!siglip) // CLIP's statistics n_i, which the caller gets too
                        mismatches += std::isnan(forward.row_stats[i]) != std::isnan(want.row_stats[i]);
                }
                for (int64_t i = 0; i < range.count; ++i)
                    for (int c = 0; c < pr.dim; ++c)
                        mismatches += std::isnan(both.grad_a[i * pr.lda + c]) !=
                                      std::isnan(want.grad_a[i * pr.dim + c]);
                for (int64_t j = 0; j < range.grad_b_rows(); ++j)
                    for (int c = 0; c < pr.dim; ++c)
                        mismatches += std::isnan(both.grad_b[j * pr.ldb + c]) !=
                                      std::isnan(want.grad_b[j * pr.dim + c]);
                cr_expect(mismatches == 0 && std::isnan(both.grad_scale),
                          "%s %s with a non-finite value in %s: %d value(s) NaN on one side only, "
                          "∂/∂s %g",
                          path_name(path), siglip ? "siglip" : "clip",
                          where == 0   ? "a"
                          : where == 1 ? "a partner"
                                       : "an extra negative",
                          mismatches, both.grad_scale);
            }
        }
}
