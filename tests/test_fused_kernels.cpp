// The fused path's kernels themselves (cuda/contrastive_fused_kernels.cuh and the shared
// contrastive_kernels.cuh: the exact device code), run on the CPU with a std::thread per CUDA
// thread: a std::barrier for __syncthreads(), one per warp for __shfl_xor_sync() and
// __any_sync(), `static` for __shared__ (one block runs at a time). contrastive_fused.cu's launch
// sequence is repeated here with CUB's stable radix sort and inclusive scan done on the host, and
// the results (lse, the loss in every reduction, valid, dz) are compared with
// closs_ref_ntxent/supcon in double, for rows over one to three tiles and every D the three
// backward variants take (1 … 256), ld > D (whose padding must stay untouched), both shifts and
// every label pattern. test_contrastive_math's emulation re-implements the algorithm; this runs
// the kernels' own indexing, padding, butterflies and barriers. Not covered: races (a CPU thread
// waits at every barrier as a GPU's would, but a missing barrier rarely shows here:
// compute-sanitizer's racecheck does that on a device), f16/bf16 loads, CUB and the launches.
#include <algorithm>
#include <atomic>
#include <barrier>
#include <numeric>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <deque>
#include <thread>
#include <vector>

#include <criterion/criterion.h>

#include "closs.h"
#include "cuda_on_cpu.h" // before the kernels: CUDA's built-ins on the CPU

#include "contrastive_fused_kernels.cuh"

struct Problem {
    int supcon, normalize, reduction; // reduction: 0 mean, 1 sum, 2 none
    double tau, tau_b;
    int rows, dim, ld;
    int row_begin = 0, row_count = 0; // the row range (0/0: all rows)
    std::vector<float> z;
    std::vector<int64_t> labels;
    std::vector<float> upstream;
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
    int64_t valid, want_valid;
    bool range_forward_differs; // a forward of the range alone vs the rows of the full one
};

// contrastive_fused.cu's launch sequence (run()) with these kernels, CUB's stable radix sort
// and inclusive scan done here in the same order (the grid-stride kernels on fewer blocks than
// the GPU gets, which also runs their strides: thread creation is what costs here); then everything
// against the reference. The gradient error is relative to max(‖dz‖, the scale of the terms that
// cancel where dz is 0).
static Errors run(const Problem &pr) {
    using namespace closs;
    const int M = pr.rows, D = pr.dim, half = M / 2;
    const int begin = pr.row_begin, count = pr.row_count ? pr.row_count : M;
    closs_contrastive_launch job = {};
    job.row_begin = begin, job.row_count = count;
    job.lse_begin = 0, job.lse_count = M; // a backward follows: every lse
    job.supcon = pr.supcon;
    job.dtype = CLOSS_F32;
    job.rows = M, job.dim = D, job.ld = pr.ld, job.z = pr.z.data();
    job.labels = pr.labels.data(), job.label_dtype = CLOSS_I64;
    job.normalize = pr.normalize;
    job.inv_temperature = (float)(1.0 / pr.tau);
    job.scale = pr.supcon ? (float)(pr.tau / pr.tau_b) : 1.0f;
    job.reduction = pr.reduction == 0   ? CLOSS_REDUCTION_MEAN
                    : pr.reduction == 1 ? CLOSS_REDUCTION_SUM
                                        : CLOSS_REDUCTION_NONE;
    job.fixed_shift = closs_fm_fixed_shift(pr.normalize, job.inv_temperature);
    job.forward = 1;
    std::vector<float> loss(M + 1, NAN), lse(M, NAN), norms(M), inv_norm(M), row_loss(M), w(M),
        a(M), grad((size_t)count * pr.ld, NAN), sums((size_t)half * D), weighted((size_t)half * D);
    std::vector<int> positives(M), class_of(M), start(half), end(half), heads(M), ids(M);
    int valid_count = 0, nonfinite = 0, class_count = 0;
    int64_t valid = -1;
    job.loss = loss.data(), job.lse = lse.data(), job.valid = &valid;
    job.upstream = pr.upstream.data(), job.grad = grad.data(), job.grad_ld = pr.ld;
    job.norms = norms.data(), job.inv_norm = inv_norm.data(), job.row_loss = row_loss.data();
    job.weights = w.data(), job.anchor_a = a.data(), job.positives = positives.data();
    job.valid_count = &valid_count, job.nonfinite = &nonfinite;
    job.class_heads = heads.data(), job.class_ids = ids.data(), job.class_of = class_of.data();
    job.class_start = start.data(), job.class_end = end.data(), job.class_count = &class_count;
    job.class_sum = sums.data(), job.class_weighted_sum = weighted.data();

    launch(2, kBlock, [&] { embed_kernel<float>(job); });
    std::vector<int64_t> keys(M);
    std::vector<int> order(M);
    if (pr.supcon) {
        for (int r = 0; r < M; ++r) order[r] = r;
        std::stable_sort(order.begin(), order.end(),
                         [&](int x, int y) { return pr.labels[x] < pr.labels[y]; });
        for (int r = 0; r < M; ++r) keys[r] = pr.labels[order[r]];
        launch(1, kBlock, [&] { class_heads_kernel<int64_t>(job, keys.data()); });
        std::inclusive_scan(heads.begin(), heads.end(), ids.begin());
        launch(1, kBlock, [&] { assign_classes_kernel<int64_t>(job, keys.data(), order.data()); });
    }
    launch(1, kBlock, [&] { positives_kernel(job); });
    const int class_grid = 3, class_threads = 128;
    if (pr.supcon)
        launch(class_grid, class_threads,
               [&] { class_sums_kernel<float>(job, order.data(), nullptr, job.class_sum); });
    const unsigned tiles = (unsigned)((M + kTile - 1) / kTile), grad_tiles = (unsigned)((count + kTile - 1) / kTile);
    if (job.fixed_shift) launch(tiles, kThreads, [&] { forward_kernel<float, true>(job); });
    else launch(tiles, kThreads, [&] { forward_kernel<float, false>(job); });
    launch(2, kBlock, [&] { anchor_loss_kernel<float>(job); });
    launch(1, kBlock, [&] { finish_loss_kernel(job); });
    // A forward of the range alone (as closs_*_forward with a range launches it): its lse go to
    // a range-sized buffer from the range's first anchor; lse and loss must be the full run's bits.
    Errors e = {};
    {
        closs_contrastive_launch alone = job;
        std::vector<float> range_lse(count + 1, NAN), range_loss(count + 1, NAN), range_rows(M, NAN);
        alone.lse_begin = begin, alone.lse_count = count;
        alone.lse = range_lse.data(), alone.loss = range_loss.data();
        alone.row_loss = range_rows.data(), alone.valid = nullptr;
        const unsigned range_tiles = (unsigned)((count + kTile - 1) / kTile);
        if (job.fixed_shift) launch(range_tiles, kThreads, [&] { forward_kernel<float, true>(alone); });
        else launch(range_tiles, kThreads, [&] { forward_kernel<float, false>(alone); });
        launch(2, kBlock, [&] { anchor_loss_kernel<float>(alone); });
        launch(1, kBlock, [&] { finish_loss_kernel(alone); });
        const int range_losses = pr.reduction == 2 ? count : 1;
        e.range_forward_differs = std::memcmp(range_lse.data(), lse.data() + begin, count * sizeof(float)) != 0 ||
                                  std::memcmp(range_loss.data(), loss.data(), range_losses * sizeof(float)) != 0 ||
                                  !std::isnan(range_loss[range_losses]) || !std::isnan(range_lse[count]);
    }
    launch(1, kBlock, [&] { anchor_weights_kernel(job); });
    if (pr.supcon)
        launch(class_grid, class_threads, [&] {
            class_sums_kernel<float>(job, order.data(), job.anchor_a, job.class_weighted_sum);
        });
    const int variant = D <= 64 ? 0 : D <= 128 ? 1 : 2;
    const bool fixed = job.fixed_shift;
    launch(grad_tiles, kThreads, [&] {
        if (fixed && variant == 0) backward_kernel<float, true, 64>(job);
        else if (fixed && variant == 1) backward_kernel<float, true, 128>(job);
        else if (fixed) backward_kernel<float, true, 256>(job);
        else if (variant == 0) backward_kernel<float, false, 64>(job);
        else if (variant == 1) backward_kernel<float, false, 128>(job);
        else backward_kernel<float, false, 256>(job);
    });

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
    return e;
}

// A random problem: the option sweep of match_reference, picked by (ri, di).
struct Random {
    unsigned long long state = 12345;
    double operator()() {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        return (double)(state >> 11) * 0x1p-53;
    }
};

static Problem random_problem(Random &rnd, int supcon, int rows, int dim, int ri, int di) {
    Problem pr;
    pr.supcon = supcon;
    pr.rows = rows;
    pr.dim = dim;
    if (!supcon && pr.rows % 2) pr.rows += 1;
    pr.normalize = (ri + di) % 3 != 0;
    const double taus[] = {0.01, 0.07, 1.0, 10.0};
    pr.tau = taus[(ri * 7 + di) % 4];
    if (!pr.normalize && pr.tau < 0.05) pr.tau = 0.5;
    pr.tau_b = supcon && di % 2 ? 0.5 : pr.tau;
    pr.reduction = (ri + 2 * di) % 3;
    pr.ld = pr.dim + (di % 2 ? 3 : 0);
    pr.z.assign((size_t)pr.rows * pr.ld, NAN);
    for (int i = 0; i < pr.rows; ++i)
        for (int c = 0; c < pr.dim; ++c) pr.z[(size_t)i * pr.ld + c] = (float)(2 * rnd() - 1);
    if (pr.normalize && pr.rows > 2 && di == 1)
        for (int c = 0; c < pr.dim; ++c) pr.z[(size_t)(pr.rows - 1) * pr.ld + c] = 0;
    pr.labels.resize(pr.rows);
    const int pattern = (ri + di) % 4;
    for (int i = 0; i < pr.rows; ++i)
        pr.labels[i] = pattern == 0   ? (int64_t)(rnd() * (pr.rows / 4 + 1))
                       : pattern == 1 ? i
                       : pattern == 2 ? 7
                                      : (i % 5 == 2 ? 1000 + i : (int64_t)(rnd() * 3));
    pr.upstream.resize(pr.rows);
    for (auto &u : pr.upstream) u = (float)(0.25 + 1.5 * rnd());
    return pr;
}

static void expect_match(const Problem &pr, const Errors &e) {
    cr_expect(e.lse <= 1e-5 && e.loss <= 1e-5 && e.grad <= 1e-4 && e.valid == e.want_valid &&
                  !e.range_forward_differs,
              "%s M=%d D=%d ld=%d rows [%d, +%d) normalize=%d tau=%g reduction=%d labels=%lld...: "
              "lse error %.2e, loss error %.2e, gradient error %.2e, valid %lld (want %lld), the "
              "range's own forward %s",
              pr.supcon ? "supcon" : "ntxent", pr.rows, pr.dim, pr.ld, pr.row_begin, pr.row_count,
              pr.normalize, pr.tau, pr.reduction, (long long)pr.labels[0], e.lse, e.loss, e.grad,
              (long long)e.valid, (long long)e.want_valid,
              e.range_forward_differs ? "differs from the full forward" : "agrees");
}

Test(fused_kernels, match_reference) {
    Random rnd;
    const int rows_list[] = {2, 3, 65, 130};
    const int dims[] = {1, 3, 17, 64, 65, 130, 256};
    for (int supcon = 0; supcon <= 1; ++supcon)
        for (int ri = 0; ri < 4; ++ri)
            for (int di = 0; di < 7; ++di) {
                const Problem pr = random_problem(rnd, supcon, rows_list[ri], dims[di], ri, di);
                expect_match(pr, run(pr));
            }
}

// Row ranges (closs.h "Row ranges"): the forward's and backward's blocks start at the range's
// first row, inside a tile or on its edge, the range ends before M, one row, the whole batch.
Test(fused_kernels, row_ranges) {
    Random rnd;
    const int ranges[][2] = {{0, 0}, {5, 66}, {64, 2}, {63, 67}, {129, 1}, {0, 71}};
    const int dims[] = {17, 130};
    for (int supcon = 0; supcon <= 1; ++supcon)
        for (int r = 0; r < 6; ++r)
            for (int di = 0; di < 2; ++di) {
                Problem pr = random_problem(rnd, supcon, 130, dims[di], r, di + 2 * r);
                pr.row_begin = ranges[r][0], pr.row_count = ranges[r][1];
                expect_match(pr, run(pr));
            }
}
