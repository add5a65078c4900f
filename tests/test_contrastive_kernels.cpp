// The NT-Xent/SupCon kernels themselves (cuda/contrastive_fused_kernels.cuh, the tensor-core
// contrastive_wmma_kernels.cuh, the chunked path's contrastive_chunked_kernels.cuh and the shared
// contrastive_kernels.cuh and contrastive_classes.cuh: the exact device code), run on the CPU
// harness (tests/cuda_on_cpu.h: a fiber per CUDA thread, `static` for __shared__). Each
// path's launch sequence is repeated here with CUB's stable radix sort and inclusive scan done on
// the host, and the chunked path's own cuBLAS calls (contrastive_chunked_products.cuh) run by a
// column-major model of cuBLAS (tests/cublas_model.h: arguments checked, accesses bounds-checked,
// outputs NaN-poisoned); the results (lse, the
// loss in every reduction, valid, dz) are compared with closs_ref_ntxent/supcon in double, for rows
// over one to three tiles and every D the three backward variants take (1 … 256), ld > D (whose
// padding must stay untouched), both shifts and every label pattern. test_contrastive_math's
// emulation re-implements the algorithms; this runs the kernels' own indexing, padding,
// butterflies and barriers. The tensor-core kernels run for f16 and bf16 inputs with WMMA emulated
// on whole tiles (below). Not covered: races in these kernels (their shared arrays are plain
// pointers, which the harness's race check does not see: compute-sanitizer's racecheck does that
// on a device), ex2.approx and __fdividef (exact here), the order of the tensor cores' and
// cuBLAS's additions, CUB, cuBLAS's own kernels and the launches.
#include <algorithm>
#include <atomic>
#include <barrier>
#include <numeric>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <deque>
#include <thread>
#include <type_traits>
#include <vector>

#include <criterion/criterion.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "closs.h"
#include "cuda_on_cpu.h" // before the kernels: CUDA's built-ins on the CPU
#include "cublas_model.h" // the chunked path's cuBLAS entry points, column-major, on the CPU
#include "dtype_range.h"

// The further built-ins the tensor-core kernels use.
static float __uint_as_float(unsigned u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
static unsigned __float_as_uint(float f) {
    unsigned u;
    std::memcpy(&u, &f, 4);
    return u;
}
static unsigned atomicMax(unsigned *address, unsigned value) {
    std::atomic_ref<unsigned> target(*address);
    unsigned old = target.load();
    while (old < value && !target.compare_exchange_weak(old, value)) {
    }
    return old;
}

// WMMA, emulated on whole 16 × 16 tiles. The CUDA API defines load, store and mma on tiles in
// memory, not on a register layout (which is unspecified), so an emulation that keeps the whole
// tile in every lane computes what the hardware does up to the order of the float additions:
//   load_matrix_sync, mma_sync, store_matrix_sync first wait for all 32 lanes of the warp (the
//     API's "waits until all warp lanes have arrived"); a store then writes each element from one
//     lane (lane e mod 32), so a lane that reads another lane's elements without a __syncwarp()
//     after the store can see stale values, as on a GPU;
//   operands keep their 16-bit type (the kernel rounded them when it staged them), products are
//     exact in float, and each output adds its 16 products to the accumulator in order k in
//     float;
//   a fragment's elements (num_elements, x[]) are the whole tile: a kernel may only touch them
//   uniformly (the same operation on every element), which gives the same result either way.
namespace nvcuda {
namespace wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <typename Use, int M, int N, int K, typename T, typename Layout = void> struct fragment {
    static constexpr int rows = std::is_same_v<Use, matrix_b> ? K : M;
    static constexpr int cols = std::is_same_v<Use, matrix_a> ? K : N;
    static constexpr int num_elements = rows * cols;
    T x[num_elements];
};

static float value_of(float v) { return v; }
static float value_of(__half v) { return __half2float(v); }
static float value_of(__nv_bfloat16 v) { return __bfloat162float(v); }

static void warp_arrive() { cuda_on_cpu::warp_converge("a WMMA call"); }

template <typename F, typename T> static void fill_fragment(F &f, T value) {
    for (auto &e : f.x) e = value;
}

template <typename Use, int M, int N, int K, typename T, typename Layout>
static void load_matrix_sync(fragment<Use, M, N, K, T, Layout> &f, const T *p, unsigned ld) {
    using F = fragment<Use, M, N, K, T, Layout>;
    warp_arrive();
    for (int r = 0; r < F::rows; ++r)
        for (int c = 0; c < F::cols; ++c)
            f.x[r * F::cols + c] = std::is_same_v<Layout, row_major> ? p[r * ld + c] : p[c * ld + r];
}

template <int M, int N, int K>
static void store_matrix_sync(float *p, const fragment<accumulator, M, N, K, float> &f, unsigned ld,
                              layout_t layout) {
    warp_arrive();
    for (int e = threadIdx.x % 32; e < M * N; e += 32) {
        const int r = e / N, c = e % N;
        p[layout == mem_row_major ? r * ld + c : c * ld + r] = f.x[e];
    }
}

// One warp collective: the product is computed once for all lanes whose operands are the same
// (all of them, unless the kernel raced on the tiles it loaded).
template <int M, int N, int K, typename T, typename LA, typename LB>
static void mma_sync(fragment<accumulator, M, N, K, float> &d, const fragment<matrix_a, M, N, K, T, LA> &a,
                     const fragment<matrix_b, M, N, K, T, LB> &b, const fragment<accumulator, M, N, K, float> &c) {
    struct Operands {
        fragment<accumulator, M, N, K, float> *d;
        const fragment<matrix_a, M, N, K, T, LA> *a;
        const fragment<matrix_b, M, N, K, T, LB> *b;
        const fragment<accumulator, M, N, K, float> *c;
        bool same_as(const Operands &o) const {
            return !std::memcmp(a, o.a, sizeof *a) && !std::memcmp(b, o.b, sizeof *b) && !std::memcmp(c, o.c, sizeof *c);
        }
        void compute(float (&out)[M * N]) const {
            for (int m = 0; m < M; ++m)
                for (int n = 0; n < N; ++n) {
                    float sum = c->x[m * N + n];
                    for (int k = 0; k < K; ++k) sum += value_of(a->x[m * K + k]) * value_of(b->x[k * N + n]);
                    out[m * N + n] = sum;
                }
        }
    };
    Operands mine{&d, &a, &b, &c};
    cuda_on_cpu::harness().scheduler.warp_collective(
        "a WMMA mma_sync", std::source_location::current(), &mine, [](int, cuda_on_cpu::CollectiveSlot(&lanes)[32]) {
            const Operands &first = *static_cast<const Operands *>(lanes[0].arguments);
            float result[M * N], own[M * N];
            bool same[32];
            for (int l = 0; l < 32; ++l) same[l] = static_cast<const Operands *>(lanes[l].arguments)->same_as(first);
            first.compute(result); // before any d (which may be a lane's c) is written
            for (int l = 0; l < 32; ++l) {
                const Operands &o = *static_cast<const Operands *>(lanes[l].arguments);
                if (same[l]) std::copy(result, result + M * N, o.d->x);
                else o.compute(own), std::copy(own, own + M * N, o.d->x);
            }
        });
}
} // namespace wmma
} // namespace nvcuda

#include "contrastive_chunked_kernels.cuh"
#include "contrastive_chunked_products.cuh"
#include "contrastive_classes.cuh"
#include "contrastive_tile_kernels.cuh"
#include "contrastive_wmma_kernels.cuh"

struct Problem {
    int supcon, normalize, reduction; // reduction: 0 mean, 1 sum, 2 none
    double tau, tau_b;
    int rows, dim, ld;
    std::vector<float> z;
    std::vector<int64_t> labels;
    std::vector<float> upstream;
    int row_begin = 0, row_count = 0; // the row range (0/0: all rows)
};

static void reference(const Problem &pr, std::vector<double> &loss, std::vector<double> &grad,
                      int64_t *valid) {
    const int M = pr.rows;
    std::vector<double> upstream(M);
    for (int i = 0; i < M; ++i) upstream[i] = pr.reduction == 2 ? pr.upstream[i] : pr.upstream[0];
    closs_matrix_t z = closs_matrix_ld(pr.z.data(), CLOSS_F32, M, pr.dim, pr.ld);
    const closs_reduction_t reduction = pr.reduction == 0   ? CLOSS_REDUCTION_MEAN
                                        : pr.reduction == 1 ? CLOSS_REDUCTION_SUM
                                                            : CLOSS_REDUCTION_NONE;
    closs_status_t status;
    *valid = pr.row_count ? pr.row_count : M;
    if (pr.supcon) {
        closs_supcon_params q = CLOSS_SUPCON_PARAMS_INIT;
        q.temperature = pr.tau, q.base_temperature = pr.tau_b;
        q.normalize = pr.normalize, q.reduction = reduction;
        q.row_begin = pr.row_begin, q.row_count = pr.row_count;
        status = closs_ref_supcon(&q, z, closs_vector(pr.labels.data(), CLOSS_I64, M),
                                  upstream.data(), loss.data(), grad.data(), valid);
    } else {
        closs_ntxent_params q = CLOSS_NTXENT_PARAMS_INIT;
        q.temperature = pr.tau, q.normalize = pr.normalize, q.reduction = reduction;
        q.row_begin = pr.row_begin, q.row_count = pr.row_count;
        status = closs_ref_ntxent(&q, z, upstream.data(), loss.data(), grad.data());
    }
    cr_assert_eq(status, CLOSS_STATUS_SUCCESS, "%s", closs_last_error());
}

// What one run found, against the double reference.
struct Errors {
    double lse, loss, grad; // relative; lse against max(|lse|, 1/τ), the gradient norm-wise
    double grad_to_norm;    // the gradient's error against ‖dz‖ alone (no floor)
    int64_t valid, want_valid;
    int range_mismatches; // tensor cores: rows a run over an anchor range got wrong (below)
    bool range_forward_differs; // a forward of the range alone vs the rows of the full one
};

// The fused path's kernel families for 16-bit inputs (tile_dispatch.h): the tile engine, what a
// device with sm_80 code runs, or the WMMA kernels, what the simulated tier's compute_70 runs.
enum class Tensor { engine, wmma };

// One tensor-core pass over the anchors [row_begin, row_end), with the launch shape and dynamic
// shared memory contrastive_fused.cu's launch_tensor() gives it (the harness faults on an access
// past those bytes).
template <typename T, bool kFixed>
static void run_tensor(const closs_contrastive_launch &job, bool backward, int64_t row_begin, int64_t row_end,
                       Tensor family) {
    using namespace closs;
    auto blocks = [&](int rows) { return (unsigned)((row_end - row_begin + rows - 1) / rows); };
    auto pass = [&]<int kDim>() {
        if (family == Tensor::wmma) {
            using Shared = WmmaShared<kDim>;
            launch(blocks(kAnchorRows), kWmmaThreads, backward ? Shared::backward_bytes : Shared::forward_bytes, [&] {
                if (backward) wmma_backward_kernel<T, kFixed, kDim>(job, row_begin, row_end);
                else wmma_forward_kernel<T, kFixed, kDim>(job, row_begin, row_end);
            });
        } else if (backward) {
            using Shape = TileBackwardShape<kDim>;
            launch(blocks(Shape::kAnchorRows), Shape::kThreads, Shape::kBytes,
                   [&] { tile_backward_kernel<T, kFixed, kDim>(job, row_begin, row_end); });
        } else {
            using Shape = TileForwardShape<kDim>;
            launch(blocks(Shape::kAnchorRows), Shape::kThreads, Shape::kBytes,
                   [&] { tile_forward_kernel<T, kFixed, kDim>(job, row_begin, row_end); });
        }
    };
    switch (wmma_dim_variant(job.dim)) {
    case 64: pass.template operator()<64>(); break;
    case 128: pass.template operator()<128>(); break;
    default: pass.template operator()<256>(); break;
    }
}

// contrastive_fused.cu's similarity_pass(): SIMT for float, the tensor-core family for 16-bit
// inputs (each row's factor in G first, for the backward).
template <typename T, bool kFixed>
static void similarity_pass(const closs_contrastive_launch &job, bool backward, Tensor family) {
    using namespace closs;
    if constexpr (!std::is_same_v<T, float>) {
        if (backward) launch(2, kBlock, [&] { softmax_factors_kernel<kFixed>(job); });
        if (backward) run_tensor<T, kFixed>(job, true, job.row_begin, job.row_begin + job.row_count, family);
        else run_tensor<T, kFixed>(job, false, job.lse_begin, job.lse_begin + job.lse_count, family);
        return;
    }
    const int64_t anchors = backward ? job.row_count : job.lse_count;
    const unsigned tiles = (unsigned)((anchors + kTile - 1) / kTile);
    const int D = (int)job.dim;
    launch(tiles, kThreads, [&] {
        if (!backward) forward_kernel<T, kFixed>(job);
        else if (D <= 64) backward_kernel<T, kFixed, 64>(job);
        else if (D <= 128) backward_kernel<T, kFixed, 128>(job);
        else backward_kernel<T, kFixed, 256>(job);
    });
}

template <typename T> static void similarity_pass(const closs_contrastive_launch &job, bool backward, Tensor family) {
    if (job.fixed_shift) similarity_pass<T, true>(job, backward, family);
    else similarity_pass<T, false>(job, backward, family);
}

static float as_float(float v) { return v; }
static float as_float(__half v) { return __half2float(v); }
static float as_float(__nv_bfloat16 v) { return __bfloat162float(v); }
template <typename T> static T from(float v);
template <> float from<float>(float v) { return v; }
template <> __half from<__half>(float v) { return __float2half_rn(v); }
template <> __nv_bfloat16 from<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }
template <typename T> static closs_dtype_t dtype_of() {
    return std::is_same_v<T, float> ? CLOSS_F32 : std::is_same_v<T, __half> ? CLOSS_F16 : CLOSS_BF16;
}

// A status other than success from the chunked path's cuBLAS calls ends the test, naming it.
static void expect_cublas_success(cublasStatus_t status, const char *what) {
    if (status != CUBLAS_STATUS_SUCCESS)
        throw std::runtime_error(std::string(what) + ": cuBLAS status " + std::to_string(status));
}

// contrastive.cu's forward and backward chunks (run()), after embed, the classes, and (backward)
// anchor_weights; on fewer blocks than the GPU gets, which also runs the grid strides. The cuBLAS
// calls are contrastive_chunked_products.cuh's own, run by tests/cublas_model.h.
template <typename T> static void chunked_forward(const closs_contrastive_launch &job, cublasHandle_t cublas) {
    using namespace closs;
    for (int64_t first = job.lse_begin; first < job.lse_begin + job.lse_count; first += job.chunk_rows) {
        const int64_t chunk = std::min(job.chunk_rows, job.lse_begin + job.lse_count - first);
        expect_cublas_success(similarity_chunk<T>(job, cublas, first, chunk), "similarity_chunk");
        launch((unsigned)chunk, kBlock, [&] { row_stats_kernel(job, first, job.similarity); });
    }
    launch(1, kBlock, [&] { finish_loss_kernel(job); });
}

template <typename T> static void chunked_backward(const closs_contrastive_launch &job, cublasHandle_t cublas) {
    using namespace closs;
    for (int64_t first = job.row_begin; first < job.row_begin + job.row_count; first += job.chunk_rows) {
        const int64_t chunk = std::min(job.chunk_rows, job.row_begin + job.row_count - first);
        expect_cublas_success(similarity_chunk<T>(job, cublas, first, chunk), "similarity_chunk");
        launch(3, kBlock, [&] { coefficients_kernel<T>(job, first, chunk, job.similarity); });
        expect_cublas_success(gradient_chunk<T>(job, cublas, chunk), "gradient_chunk");
        launch(2, kBlock, [&] { embed_backward_kernel<T>(job, first, chunk, job.dzhat); });
    }
}

// fused: SIMT for f32 and the tile engine for 16-bit inputs; wmma: the WMMA kernels for them.
enum class Path { fused, wmma, chunked };

// contrastive_fused.cu's or contrastive.cu's launch sequence (run()) with these kernels, CUB's
// stable radix sort and inclusive scan done here in the same order (the grid-stride kernels on
// fewer blocks than the GPU gets, which also runs their strides: thread creation is what costs
// here); then everything against the reference. The inputs are rounded to T first and the
// reference sees the rounded values. The gradient error is relative to max(‖dz‖, the scale of the
// terms that cancel where dz is 0). The chunked path takes about M/3 rows a chunk, so that
// chunks end inside the range and a last one is partial.
template <typename T>
static Errors run(const Problem &given, Path path = Path::fused, std::vector<float> *grad_out = nullptr,
                  std::vector<double> *want_grad_out = nullptr) {
    using namespace closs;
    constexpr bool kWide = std::is_same_v<T, float>;
    const bool chunked = path == Path::chunked;
    const Tensor family = path == Path::wmma ? Tensor::wmma : Tensor::engine;
    Problem pr = given;
    std::vector<T> z(pr.z.size());
    for (size_t e = 0; e < z.size(); ++e) {
        z[e] = from<T>(pr.z[e]);
        pr.z[e] = as_float(z[e]);
    }
    const int M = pr.rows, D = pr.dim, half = M / 2;
    const int begin = pr.row_begin, count = pr.row_count ? pr.row_count : M;
    closs_contrastive_launch job = {};
    job.row_begin = begin, job.row_count = count;
    job.lse_begin = 0, job.lse_count = M; // a backward follows: every lse
    job.supcon = pr.supcon;
    job.dtype = dtype_of<T>();
    job.rows = M, job.dim = D, job.ld = pr.ld, job.z = z.data();
    job.labels = pr.labels.data(), job.label_dtype = CLOSS_I64;
    job.normalize = pr.normalize;
    job.inv_temperature = (float)(1.0 / pr.tau);
    job.scale = pr.supcon ? (float)(pr.tau / pr.tau_b) : 1.0f;
    job.reduction = pr.reduction == 0   ? CLOSS_REDUCTION_MEAN
                    : pr.reduction == 1 ? CLOSS_REDUCTION_SUM
                                        : CLOSS_REDUCTION_NONE;
    job.fixed_shift = closs_fm_fixed_shift(pr.normalize, job.inv_temperature);
    job.forward = 1;
    std::vector<float> loss(M + 1, NAN), lse(M, NAN), norms(M), inv_norm(M), row_loss(M), w(M), a(M), factors(M);
    std::vector<T> grad_storage((size_t)count * pr.ld, from<T>(NAN));
    std::vector<int> positives(M), class_of(M), start(half), end(half), heads(M), ids(M);
    int valid_count = 0, nonfinite = 0, class_count = 0;
    unsigned factor_max = 0;
    int64_t valid = -1;
    job.loss = loss.data(), job.lse = lse.data(), job.valid = &valid;
    job.upstream = pr.upstream.data(), job.grad = grad_storage.data(), job.grad_ld = pr.ld;
    job.norms = norms.data(), job.row_loss = row_loss.data();
    job.weights = w.data(), job.anchor_a = a.data(), job.positives = positives.data();
    job.valid_count = &valid_count, job.nonfinite = &nonfinite;
    job.class_heads = heads.data(), job.class_ids = ids.data(), job.class_of = class_of.data();
    job.class_start = start.data(), job.class_end = end.data(), job.class_count = &class_count;
    // host/gpu_contrastive.c's layouts: which buffers each path and dtype gets
    const int64_t chunk_rows = std::max(1, M / 3);
    std::vector<float> zhat((size_t)M * D), similarity((size_t)chunk_rows * M, NAN), dzhat((size_t)chunk_rows * D, NAN);
    std::vector<T> g_high((size_t)chunk_rows * M, from<T>(NAN)), g_low((size_t)chunk_rows * M, from<T>(NAN));
    if (!chunked || !kWide) job.inv_norm = inv_norm.data();
    if (!kWide) job.factor_max = &factor_max;
    // f16 with normalisation: the backward's scaled rows (host/gpu_contrastive.c, both paths)
    const int64_t scaled_ld = (D + 7) / 8 * 8;
    std::vector<T> z_scaled(std::is_same_v<T, __half> ? (size_t)M * scaled_ld : 0, from<T>(NAN));
    std::vector<float> inv_norm_scaled(M, NAN);
    if (std::is_same_v<T, __half> && pr.normalize) {
        job.z_scaled = z_scaled.data(), job.scaled_ld = scaled_ld;
        job.inv_norm_scaled = inv_norm_scaled.data();
    }
    if (!chunked) {
        job.softmax_factor = factors.data();
    } else {
        job.chunk_rows = chunk_rows, job.similarity = similarity.data(), job.dzhat = dzhat.data();
        if (kWide) job.zhat = zhat.data();
        else job.coefficient_high = g_high.data(), job.coefficient_low = g_low.data();
    }
    // The memory the chunked path's cuBLAS calls may touch: what they get from host/gpu_contrastive.c
    cublas_model::Handle cublas;
    cublas_model::allow(cublas, "similarity", similarity), cublas_model::allow(cublas, "dzhat", dzhat);
    if (kWide) {
        cublas_model::allow(cublas, "zhat", zhat);
    } else {
        cublas_model::allow(cublas, "z", z), cublas_model::allow(cublas, "z_scaled", z_scaled);
        cublas_model::allow(cublas, "coefficient_high", g_high), cublas_model::allow(cublas, "coefficient_low", g_low);
    }

    launch(2, kBlock, [&] { embed_kernel<T>(job); });
    std::vector<int64_t> keys(M);
    std::vector<int> order(M);
    if (pr.supcon) { // contrastive_classes.cu
        for (int r = 0; r < M; ++r) order[r] = r;
        std::stable_sort(order.begin(), order.end(),
                         [&](int x, int y) { return pr.labels[x] < pr.labels[y]; });
        for (int r = 0; r < M; ++r) keys[r] = pr.labels[order[r]];
        launch(1, kBlock, [&] { class_heads_kernel<int64_t>(job, keys.data()); });
        std::inclusive_scan(heads.begin(), heads.end(), ids.begin());
        launch(1, kBlock, [&] { assign_classes_kernel<int64_t>(job, keys.data(), order.data()); });
    }
    launch(1, kBlock, [&] { positives_kernel(job); });
    auto forward = [&](const closs_contrastive_launch &run_job) {
        if (chunked) return chunked_forward<T>(run_job, &cublas);
        similarity_pass<T>(run_job, false, family);
        launch(2, kBlock, [&] { anchor_loss_kernel(run_job); });
        launch(1, kBlock, [&] { finish_loss_kernel(run_job); });
    };
    forward(job);
    // A forward of the range alone (as closs_*_forward with a range launches it): its lse go to
    // a range-sized buffer from the range's first anchor; lse and loss must be the full run's bits.
    // (Chunked: only with a range; its row_stats are a block per anchor, which costs here.)
    Errors e = {};
    if (!chunked || pr.row_count) {
        closs_contrastive_launch alone = job;
        std::vector<float> range_lse(count + 1, NAN), range_loss(count + 1, NAN), range_rows(M, NAN);
        alone.lse_begin = begin, alone.lse_count = count;
        alone.lse = range_lse.data(), alone.loss = range_loss.data();
        alone.row_loss = range_rows.data(), alone.valid = nullptr;
        forward(alone);
        const int range_losses = pr.reduction == 2 ? count : 1;
        e.range_forward_differs = std::memcmp(range_lse.data(), lse.data() + begin, count * sizeof(float)) != 0 ||
                                  std::memcmp(range_loss.data(), loss.data(), range_losses * sizeof(float)) != 0 ||
                                  !std::isnan(range_loss[range_losses]) || !std::isnan(range_lse[count]);
    }
    factor_max = 0; // contrastive*.cu's memset
    launch(2, kBlock, [&] { anchor_weights_kernel(job); });
    if (job.z_scaled) launch(2, kBlock, [&] { scale_rows_kernel<T>(job); });
    if (chunked) chunked_backward<T>(backward_job(job), &cublas);
    else similarity_pass<T>(backward_job(job), true, family);
    std::vector<float> grad(grad_storage.size());
    for (size_t e = 0; e < grad.size(); ++e) grad[e] = as_float(grad_storage[e]);

    if constexpr (!kWide) {
        if (count == M && !chunked) {
            // The anchor range the kernels take ([row_begin, row_end), against all M rows): the
            // rows inside get the full run's bits, the rows outside stay untouched.
            const int64_t first = M / 3, last = M - M / 5;
            std::vector<float> range_lse(M, NAN);
            std::vector<T> range_grad(grad_storage.size(), from<T>(NAN));
            closs_contrastive_launch part = job;
            part.lse = range_lse.data(), part.grad = range_grad.data(); // rows at their own index
            if (job.fixed_shift) run_tensor<T, true>(part, false, first, last, family);
            else run_tensor<T, false>(part, false, first, last, family);
            part.lse = job.lse;
            if (job.fixed_shift) run_tensor<T, true>(backward_job(part), true, first, last, family);
            else run_tensor<T, false>(backward_job(part), true, first, last, family);
            for (int64_t i = 0; i < M; ++i) {
                const bool inside = i >= first && i < last;
                bool ok = inside ? std::memcmp(&range_lse[i], &lse[i], sizeof(float)) == 0 : std::isnan(range_lse[i]);
                for (int c = 0; c < D; ++c) {
                    const float got = as_float(range_grad[(size_t)i * pr.ld + c]);
                    ok = ok && (inside ? std::memcmp(&got, &grad[(size_t)i * pr.ld + c], sizeof(float)) == 0 : std::isnan(got));
                }
                e.range_mismatches += !ok;
            }
        }
    }
    // r_i as the kernels use it (the chunked f32 path has none of its own)
    for (int i = 0; i < M; ++i) inv_norm[i] = pr.normalize ? 1.0f / std::fmax(norms[i], 1e-12f) : 1.0f;
    std::vector<double> want_loss(M), want_grad((size_t)count * D);
    reference(pr, want_loss, want_grad, &e.want_valid);
    e.valid = pr.supcon ? valid : e.want_valid;
    /* lse in double, the losses */
    for (int i = 0; i < M; ++i) {
        double max = -INFINITY, sum = 0.0;
        std::vector<double> x;
        for (int k = 0; k < M; ++k) {
            if (k == i) continue;
            double s = 0.0;
            for (int c = 0; c < D; ++c)
                s += (double)pr.z[(size_t)i * pr.ld + c] * inv_norm[i] *
                     pr.z[(size_t)k * pr.ld + c] * inv_norm[k];
            x.push_back(s / pr.tau);
            max = std::fmax(max, s / pr.tau);
        }
        for (double v : x) sum += std::exp(v - max);
        const double want = M > 1 ? max + std::log(sum) : -INFINITY;
        const double error =
            M > 1 ? std::fabs(lse[i] - want) / std::fmax(std::fabs(want), 1.0 / pr.tau)
                  : (lse[i] == -INFINITY ? 0.0 : INFINITY);
        if (!(error <= e.lse)) e.lse = error;
    }
    const int losses = pr.reduction == 2 ? count : 1;
    double loss_diff = 0.0, loss_size = 0.0;
    for (int i = 0; i < losses; ++i) {
        loss_diff += (loss[i] - want_loss[i]) * (loss[i] - want_loss[i]);
        loss_size += want_loss[i] * want_loss[i];
    }
    const double loss_floor = 0.1 * job.scale / pr.tau * (pr.normalize ? 1.0 : D);
    e.loss = std::isnan(loss[losses])
                 ? std::sqrt(loss_diff) / std::fmax(std::sqrt(loss_size), loss_floor)
                 : INFINITY; /* wrote past its losses */
    /* the gradient, and the padding of grad_z untouched */
    double diff = 0.0, size = 0.0, w_max = 0.0, radius = 0.0, inverse_squares = 0.0;
    int padding_written = 0;
    for (int i = 0; i < M; ++i) {
        w_max = std::fmax(w_max, std::fabs(w[i]));
        radius = std::fmax(radius, norms[i] * inv_norm[i]);
    }
    for (int r = 0; r < count; ++r) {
        for (int c = 0; c < D; ++c) {
            const double d = grad[(size_t)r * pr.ld + c] - want_grad[(size_t)r * D + c];
            diff += d * d;
            size += want_grad[(size_t)r * D + c] * want_grad[(size_t)r * D + c];
        }
        for (int c = D; c < pr.ld; ++c) padding_written += !std::isnan(grad[(size_t)r * pr.ld + c]);
        const double n = pr.normalize ? std::fmax(norms[begin + r], 1e-12f) : 1.0;
        inverse_squares += 1.0 / (n * n);
    }
    const double floor = 0.2 * w_max * radius / pr.tau * std::sqrt(inverse_squares);
    e.grad = padding_written
                 ? INFINITY
                 : std::sqrt(diff) / std::fmax(std::fmax(std::sqrt(size), floor), 1e-300);
    e.grad_to_norm = std::sqrt(diff) / std::fmax(std::sqrt(size), 1e-300);
    if (grad_out) *grad_out = grad;
    if (want_grad_out) *want_grad_out = want_grad;
    return e;
}

static unsigned long long random_state;
static double random_uniform() {
    random_state = random_state * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(random_state >> 11) * 0x1p-53;
}

const int rows_list[] = {2, 3, 65, 130};
const int dims[] = {1, 3, 17, 64, 65, 130, 256};
const double taus[] = {0.01, 0.07, 1.0, 10.0};

// Case (supcon, ri, di) of the sweep: rows_list[ri] (or `rows`) × dims[di], normalisation, τ, τ_b,
// reduction, ld and the label pattern varied with the indices; a zero row in some (not in f16,
// where its gradient dẑ/eps overflows). ld is D or D + 3; `aligned`: a multiple of 8 (16-bit rows
// 16-byte aligned, which the tile engine copies by cp.async; others it stages element-wise).
static Problem sweep_case(int supcon, int ri, int di, bool zero_row, int *pattern, int rows = 0,
                          bool aligned = false) {
    Problem pr;
    pr.supcon = supcon;
    pr.rows = rows ? rows : rows_list[ri];
    pr.dim = dims[di];
    if (!supcon && pr.rows % 2) pr.rows += 1;
    pr.normalize = (ri + di) % 3 != 0;
    pr.tau = taus[(ri * 7 + di) % 4];
    if (!pr.normalize && pr.tau < 0.05) pr.tau = 0.5;
    pr.tau_b = supcon && di % 2 ? 0.5 : pr.tau;
    pr.reduction = (ri + 2 * di) % 3;
    pr.ld = aligned ? (pr.dim + 7) / 8 * 8 + (di % 2 ? 8 : 0) : pr.dim + (di % 2 ? 3 : 0);
    pr.z.assign((size_t)pr.rows * pr.ld, NAN);
    for (int i = 0; i < pr.rows; ++i)
        for (int c = 0; c < pr.dim; ++c) pr.z[(size_t)i * pr.ld + c] = (float)(2 * random_uniform() - 1);
    if (zero_row && pr.normalize && pr.rows > 2 && di == 1)
        for (int c = 0; c < pr.dim; ++c) pr.z[(size_t)(pr.rows - 1) * pr.ld + c] = 0;
    pr.labels.resize(pr.rows);
    *pattern = (ri + di) % 4;
    for (int i = 0; i < pr.rows; ++i)
        pr.labels[i] = *pattern == 0   ? (int64_t)(random_uniform() * (pr.rows / 4 + 1))
                       : *pattern == 1 ? i
                       : *pattern == 2 ? 7
                                       : (i % 5 == 2 ? 1000 + i : (int64_t)(random_uniform() * 3));
    pr.upstream.resize(pr.rows);
    for (auto &u : pr.upstream) u = (float)(0.25 + 1.5 * random_uniform());
    return pr;
}

static void expect_within(const Problem &pr, int pattern, const char *dtype, const Errors &e, double lse_tol,
                          double loss_tol, double grad_tol) {
    cr_expect(e.lse <= lse_tol && e.loss <= loss_tol && e.grad <= grad_tol && e.valid == e.want_valid &&
                  e.range_mismatches == 0 && !e.range_forward_differs,
              "%s %s M=%d D=%d ld=%d rows [%d, +%d) normalize=%d tau=%g reduction=%d labels=%d: lse "
              "error %.2e, loss error %.2e, gradient error %.2e, valid %lld (want %lld), %d rows "
              "wrong in an anchor-range run, the range's own forward %s",
              pr.supcon ? "supcon" : "ntxent", dtype, pr.rows, pr.dim, pr.ld, pr.row_begin, pr.row_count,
              pr.normalize, pr.tau, pr.reduction, pattern, e.lse, e.loss, e.grad, (long long)e.valid,
              (long long)e.want_valid, e.range_mismatches,
              e.range_forward_differs ? "differs from the full forward" : "agrees");
}

Test(contrastive_kernels, match_reference) {
    random_state = 12345;
    for (int supcon = 0; supcon <= 1; ++supcon)
        for (int ri = 0; ri < 4; ++ri)
            for (int di = 0; di < 7; ++di) {
                int pattern = 0;
                const Problem pr = sweep_case(supcon, ri, di, true, &pattern);
                expect_within(pr, pattern, "f32", run<float>(pr), 1e-5, 1e-5, 1e-4);
            }
}

// A tensor-core family on a sweep, f16 and bf16 alternating; `rows` NULL: rows_list; every other
// row count with 16-byte aligned rows (sweep_case's `aligned`). Tolerances:
// lse and the loss come from exact 16-bit products accumulated in float, as the SIMT path's; the
// gradient carries G' rounded to 16 bits and the result rounded to the dtype: 2e-3 (f16), 1e-2
// (bf16), the GPU suite's tolerances. Each case also reruns the two tensor-core kernels over an
// anchor range [M/3, M − M/5): those rows must come out bit for bit as in the full run, the others
// untouched. Logs the largest errors.
static void tensor_sweep(Path path, const int *rows, int row_count, const char *name) {
    double largest[2][3] = {};
    for (int supcon = 0; supcon <= 1; ++supcon)
        for (int ri = 0; ri < row_count; ++ri)
            for (int di = 0; di < 7; ++di) {
                int pattern = 0;
                const bool f16 = (ri + di + supcon) % 2;
                const Problem pr = sweep_case(supcon, ri % 4, di, !f16, &pattern, rows ? rows[ri] : 0, ri % 2);
                const Errors e = f16 ? run<__half>(pr, path) : run<__nv_bfloat16>(pr, path);
                expect_within(pr, pattern, f16 ? "f16" : "bf16", e, 1e-5, 1e-5, f16 ? 2e-3 : 1e-2);
                double *worst = largest[f16 ? 0 : 1];
                worst[0] = std::fmax(worst[0], e.lse), worst[1] = std::fmax(worst[1], e.loss);
                worst[2] = std::fmax(worst[2], e.grad);
            }
    for (int t = 0; t < 2; ++t)
        cr_log_info("%s %s: largest lse error %.2e, loss %.2e, gradient %.2e", name, t ? "bf16" : "f16",
                    largest[t][0], largest[t][1], largest[t][2]);
}

// The tile engine (contrastive_tile_kernels.cuh: mma.sync, ldmatrix and cp.async emulated lane by
// lane, every shared access race-checked) with M on and beside the multiples of its column tiles
// (64 rows), its backward's blocks (128 anchor rows) and its forward's (256): 127, 128, 129, 255,
// 256, 257 (≡ 63, 0, 1 mod 64 and their neighbours mod 128 and 256; NT-Xent, which needs an even
// M, takes 128, 128, 130, 256, 256, 258), every D variant (1 … 256) and ld > D.
Test(contrastive_kernels, tile_match_reference) {
    random_state = 13579;
    const int rows[] = {127, 128, 129, 255, 256, 257};
    tensor_sweep(Path::fused, rows, 6, "tile engine");
}

// The WMMA kernels (kept for the simulated tier's compute_70 code, and for the device check's
// comparison) on the sweep's sizes.
Test(contrastive_kernels, wmma_match_reference) {
    random_state = 54321;
    tensor_sweep(Path::wmma, nullptr, 4, "WMMA");
}

// The chunked path's kernels (contrastive_chunked_kernels.cuh) on the same sweep, with a CPU
// product standing in for cuBLAS: f32 on the ẑ copy, f16 and bf16 (alternating) on the raw 16-bit
// rows with the rank-1 scale and G' in two halves. Tolerances as for the fused path's kernels.

// Dtype t of the tests that take the three in turn (0 f32, 1 f16, 2 bf16), and its gradient
// tolerance (the GPU suite's).
static const char *const dtype_names[] = {"f32", "f16", "bf16"};
static const double grad_tolerances[] = {1e-4, 2e-3, 1e-2};
static Errors run_dtype(const Problem &pr, int t, Path path) {
    return t == 0 ? run<float>(pr, path) : t == 1 ? run<__half>(pr, path) : run<__nv_bfloat16>(pr, path);
}

// The chunked path in dtype t, checked with the fused path's tolerances for that dtype.
static Errors expect_chunked(const Problem &pr, int pattern, int t) {
    const Errors e = run_dtype(pr, t, Path::chunked);
    char what[32];
    snprintf(what, sizeof what, "chunked %s", dtype_names[t]);
    expect_within(pr, pattern, what, e, 1e-5, 1e-5, grad_tolerances[t]);
    return e;
}

Test(contrastive_kernels, chunked_match_reference) {
    random_state = 97531;
    double largest[3][3] = {}; // f32, f16, bf16 × lse, loss, gradient
    for (int supcon = 0; supcon <= 1; ++supcon)
        for (int ri = 0; ri < 4; ++ri)
            for (int di = 0; di < 7; ++di) {
                int pattern = 0;
                const int t = (ri + di + supcon) % 3;
                const Problem pr = sweep_case(supcon, ri, di, t != 1, &pattern);
                const Errors e = expect_chunked(pr, pattern, t);
                double *worst = largest[t];
                worst[0] = std::fmax(worst[0], e.lse), worst[1] = std::fmax(worst[1], e.loss);
                worst[2] = std::fmax(worst[2], e.grad);
            }
    for (int t = 0; t < 3; ++t)
        cr_log_info("chunked %s: largest lse error %.2e, loss %.2e, gradient %.2e", dtype_names[t], largest[t][0],
                    largest[t][1], largest[t][2]);
}

// Confident positives: each row's partner (NT-Xent) or class mate (SupCon, pairs) nearly equal to
// it, τ = 0.07, MEAN and NONE. dz is then small beside the terms that make it up, and the usual
// gradient check (against ‖dz‖ or the scale of those terms, whichever is larger) is lenient. Both
// paths combine the softmax and positive parts of each pair in float in G, before the 16-bit
// split and the product (the fused path folds the positives into its tiles), and must meet the
// dtype's tolerance against ‖dz‖ alone.
Test(contrastive_kernels, confident_positives) {
    random_state = 8642;
    for (int supcon = 0; supcon <= 1; ++supcon)
        for (int t = 0; t < 3; ++t) {
            Problem pr;
            pr.supcon = supcon, pr.normalize = 1, pr.tau = pr.tau_b = 0.07, pr.reduction = t % 2 ? 2 : 0;
            pr.rows = 130, pr.dim = 64, pr.ld = 64;
            const int half = pr.rows / 2;
            pr.z.resize((size_t)pr.rows * pr.dim);
            for (int i = 0; i < half; ++i)
                for (int c = 0; c < pr.dim; ++c) {
                    const float value = (float)(2 * random_uniform() - 1);
                    pr.z[(size_t)i * pr.dim + c] = value;
                    pr.z[(size_t)(i + half) * pr.dim + c] = value + (float)(2e-2 * (random_uniform() - 0.5));
                }
            pr.labels.resize(pr.rows);
            for (int i = 0; i < pr.rows; ++i) pr.labels[i] = i % half;
            pr.upstream.assign(pr.rows, 1.0f);
            const double tolerance = grad_tolerances[t];
            const char *dtype = dtype_names[t];
            // ℓ_i = s·(lse_i − mean x_ik) nearly cancels here: its float rounding, relative to
            // lse ≈ 1/τ, is ~1e-5 of the losses' norm (the sweep's losses are larger: 1e-5 holds)
            const Errors fused = run_dtype(pr, t, Path::fused);
            expect_within(pr, -1, dtype, fused, 1e-5, 1e-4, tolerance);
            const Errors chunked = expect_chunked(pr, -1, t);
            for (const Errors *e : {&fused, &chunked})
                cr_expect(e->grad_to_norm <= tolerance, "%s %s %s: gradient error %.2e against ‖dz‖",
                          supcon ? "supcon" : "ntxent", e == &fused ? "fused" : "chunked", dtype, e->grad_to_norm);
            cr_log_info("confident positives, %s %s: gradient error against ‖dz‖ alone: fused %.2e, chunked %.2e",
                        supcon ? "supcon" : "ntxent", dtype, fused.grad_to_norm, chunked.grad_to_norm);
        }
}

// Row ranges (closs.h): the range's lse, loss and gradient rows against the reference's range,
// and a forward of the range alone bit for bit as the full one's rows; f32 (SIMT) and, on every
// other case, f16 or bf16 (tensor cores); and the chunked path in one of the three dtypes. Ranges
// start and end inside and on tile edges, and inside and on the chunked path's chunks (43 rows).
Test(contrastive_kernels, row_ranges) {
    random_state = 2468;
    const int ranges[][2] = {{0, 0}, {5, 66}, {64, 2}, {63, 67}, {129, 1}, {0, 71}};
    for (int supcon = 0; supcon <= 1; ++supcon)
        for (int r = 0; r < 6; ++r)
            for (int di = 0; di < 2; ++di) {
                int pattern = 0;
                Problem pr = sweep_case(supcon, 3, di == 0 ? 2 : 5, false, &pattern);
                pr.row_begin = ranges[r][0], pr.row_count = ranges[r][1];
                expect_within(pr, pattern, "f32", run<float>(pr), 1e-5, 1e-5, 1e-4);
                if ((r + di) % 2) expect_within(pr, pattern, "f16", run<__half>(pr), 1e-5, 1e-5, 2e-3);
                else expect_within(pr, pattern, "bf16", run<__nv_bfloat16>(pr), 1e-5, 1e-5, 1e-2);
                expect_chunked(pr, pattern, (r + di + supcon) % 3); // one dtype a case: its row statistics cost here
            }
}

// f16 with normalisation and near-zero rows (docs/contract.md, "Numerics"; issue #26): a zero row
// and rows of norm 1e-4 and 1e-6 get gradients of order 1/‖z‖, beyond f16's range: those elements
// must be ±Inf with the exact value's sign, the others finite and accurate, never NaN; and every
// other row's gradient must be as accurate as usual. G'_ik = G_ik·r_k/β of a row with r_k = 1e6
// would pass 65504 without the backward's scaled rows (scale_rows_kernel) and be clamped, which
// spoils row k's term in every other row. The tile engine, the WMMA kernels and the chunked path;
// NT-Xent and SupCon; MEAN and NONE; D = 17 (unaligned rows) and 64.
Test(contrastive_kernels, f16_near_zero_rows) {
    random_state = 31337;
    const Path paths[] = {Path::fused, Path::wmma, Path::chunked};
    const char *const path_names[] = {"tile engine", "WMMA", "chunked"};
    const int small_rows[] = {3, 8, 40};
    const double small_norms[] = {0.0, 1e-4, 1e-6};
    for (int supcon = 0; supcon <= 1; ++supcon)
        for (int di = 0; di < 2; ++di)
            for (int p = 0; p < 3; ++p) {
                Problem pr;
                pr.supcon = supcon, pr.normalize = 1, pr.tau = pr.tau_b = 0.1, pr.reduction = di ? 2 : 0;
                pr.rows = 66, pr.dim = di ? 64 : 17, pr.ld = pr.dim + (di ? 0 : 3);
                pr.z.assign((size_t)pr.rows * pr.ld, NAN);
                for (int i = 0; i < pr.rows; ++i)
                    for (int c = 0; c < pr.dim; ++c) pr.z[(size_t)i * pr.ld + c] = (float)(2 * random_uniform() - 1);
                for (int s = 0; s < 3; ++s) { // row small_rows[s] scaled to norm small_norms[s]
                    float *row = &pr.z[(size_t)small_rows[s] * pr.ld];
                    double norm = 0.0;
                    for (int c = 0; c < pr.dim; ++c) norm += (double)row[c] * row[c];
                    for (int c = 0; c < pr.dim; ++c) row[c] = (float)(row[c] * small_norms[s] / std::sqrt(norm));
                }
                pr.labels.resize(pr.rows);
                for (int i = 0; i < pr.rows; ++i) pr.labels[i] = i % 11;
                pr.upstream.resize(pr.rows);
                for (auto &u : pr.upstream) u = (float)(0.25 + 1.5 * random_uniform());
                std::vector<float> grad;
                std::vector<double> want;
                run<__half>(pr, paths[p], &grad, &want);
                const char *loss = supcon ? "supcon" : "ntxent";
                double other_diff = 0.0, other_size = 0.0;
                size_t beyond = 0;
                for (int i = 0; i < pr.rows; ++i) {
                    std::vector<float> got(pr.dim);
                    for (int c = 0; c < pr.dim; ++c) got[c] = grad[(size_t)i * pr.ld + c];
                    const double *exact = &want[(size_t)i * pr.dim];
                    const range_check check = check_range(got.data(), exact, pr.dim, CLOSS_F16);
                    double row_size = 0.0;
                    for (int c = 0; c < pr.dim; ++c) row_size += exact[c] * exact[c];
                    const bool small = i == small_rows[0] || i == small_rows[1] || i == small_rows[2];
                    const int64_t bad = check.first_bad < 0 ? 0 : check.first_bad;
                    cr_expect(check.first_bad < 0, "%s %s D=%d row %d%s: element %lld is %g, exact %g", path_names[p],
                              loss, pr.dim, i, small ? " (near zero)" : "", (long long)check.first_bad, got[bad],
                              exact[bad]);
                    beyond += check.beyond;
                    if (small) // the elements f16 holds, against the row's exact norm
                        cr_expect(std::sqrt(check.error) <= 2e-3 * std::sqrt(row_size),
                                  "%s %s D=%d near-zero row %d: error %.3g of a row of norm %.3g", path_names[p], loss,
                                  pr.dim, i, std::sqrt(check.error), std::sqrt(row_size));
                    else other_diff += check.error, other_size += row_size;
                }
                const double other_error = std::sqrt(other_diff / other_size);
                cr_expect(other_error <= 2e-3, "%s %s D=%d: the other rows' gradient error %.3g", path_names[p], loss,
                          pr.dim, other_error);
                cr_expect(beyond >= (size_t)pr.dim / 2, "%s: only %zu elements beyond f16's range: a weak test",
                          path_names[p], beyond);
                cr_log_info("f16 near-zero rows, %s %s D=%d: other rows' gradient error %.2e, %zu elements Inf",
                            path_names[p], loss, pr.dim, other_error, beyond);
            }
}
