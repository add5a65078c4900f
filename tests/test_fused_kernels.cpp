// The fused path's tile kernels themselves (cuda/contrastive_fused_tiles.cuh: forward_kernel and
// backward_kernel, the exact device code), run on the CPU with a std::thread per CUDA thread: a
// std::barrier for __syncthreads(), one per warp for __shfl_xor_sync(), `static` for __shared__
// (one block runs at a time). Their inputs (norms, anchor weights, class sums) are prepared
// here; their lse and dz are compared with closs_ref_ntxent/supcon in double. What
// test_contrastive_math's emulation cannot show, this does: the kernels' own indexing, tile
// padding, leading dimensions, lane butterflies and barriers, for rows over one to three tiles
// and every D the three backward variants take (1 … 256). Not covered: races (the CPU threads
// synchronise more than a GPU would: compute-sanitizer's racecheck does that on a device),
// f16/bf16 loads, and the label sort, class sums and loss kernels of contrastive_fused.cu.
#include <barrier>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <deque>
#include <thread>
#include <vector>

#include <criterion/criterion.h>
#include <cuda_runtime_api.h> // before the stand-ins below: it defines __shared__ and friends

#include "closs.h"

// Stand-ins for the CUDA built-ins the kernels use.
struct sim_dim3 {
    unsigned x = 0, y = 0, z = 0;
};
thread_local sim_dim3 sim_threadIdx, sim_blockIdx;
sim_dim3 sim_blockDim, sim_gridDim;
#define threadIdx sim_threadIdx
#define blockIdx  sim_blockIdx
#define blockDim  sim_blockDim
#define gridDim   sim_gridDim
#undef __shared__
#define __shared__ static
#undef __launch_bounds__
#define __launch_bounds__(n)

static std::barrier<> *block_barrier;
static std::barrier<> *warp_barrier[8];
static float exchange[8][32];
static void __syncthreads() { block_barrier->arrive_and_wait(); }
static float __shfl_xor_sync(unsigned, float v, int offset) {
    const int w = threadIdx.x / 32, l = threadIdx.x % 32;
    exchange[w][l] = v;
    warp_barrier[w]->arrive_and_wait();
    const float other = exchange[w][l ^ offset];
    warp_barrier[w]->arrive_and_wait();
    return other;
}
static int __any_sync(unsigned, int p) { return p; }
static float __int_as_float(int i) {
    float f;
    std::memcpy(&f, &i, 4);
    return f;
}

#include "contrastive_fused_tiles.cuh"

// Runs `kernel` on `blocks` blocks of kThreads threads, one block after another.
template <typename Kernel> static void launch(unsigned blocks, Kernel kernel) {
    sim_gridDim.x = blocks;
    sim_blockDim.x = closs::kThreads;
    for (unsigned b = 0; b < blocks; ++b) {
        std::barrier<> block(closs::kThreads);
        std::deque<std::barrier<>> warps;
        block_barrier = &block;
        for (int w = 0; w < closs::kThreads / 32; ++w) warp_barrier[w] = &warps.emplace_back(32);
        std::vector<std::thread> threads;
        for (int t = 0; t < closs::kThreads; ++t)
            threads.emplace_back([=] {
                sim_threadIdx.x = t;
                sim_blockIdx.x = b;
                kernel();
            });
        for (auto &t : threads) t.join();
    }
}

struct Problem {
    int supcon, normalize, reduction; // reduction: 0 mean, 1 sum, 2 none
    double tau, tau_b;
    int rows, dim, ld;
    std::vector<float> z;
    std::vector<int64_t> labels;
    std::vector<float> upstream;
};

// Prepares the kernels' inputs as contrastive_fused.cu's other kernels would (norms, classes
// and their sums, anchor weights), runs forward_kernel then backward_kernel, and returns the
// largest relative error of lse and the norm-wise error of dz against the double reference,
// relative to max(‖dz‖, the scale of the terms that cancel where dz is 0).
static void run(const Problem &pr, double *lse_err, double *grad_err) {
    const int M = pr.rows, D = pr.dim;
    closs_contrastive_launch job = {};
    job.supcon = pr.supcon;
    job.rows = M, job.dim = D, job.ld = pr.ld;
    job.z = pr.z.data();
    job.normalize = pr.normalize;
    job.inv_temperature = (float)(1.0 / pr.tau);
    job.scale = pr.supcon ? (float)(pr.tau / pr.tau_b) : 1.0f;
    job.fixed_shift = closs_fm_fixed_shift(pr.normalize, job.inv_temperature);
    std::vector<float> norms(M), inv_norm(M), lse(M, NAN), w(M), a(M), grad((size_t)M * pr.ld, NAN);
    std::vector<int> class_of(M, -1), positives(M, 0);
    int nonfinite = 0;
    for (int i = 0; i < M; ++i) {
        float sq = 0;
        for (int c = 0; c < D; ++c) sq += pr.z[(size_t)i * pr.ld + c] * pr.z[(size_t)i * pr.ld + c];
        norms[i] = std::sqrt(sq);
        inv_norm[i] = pr.normalize ? 1.0f / std::fmax(norms[i], 1e-12f) : 1.0f;
    }
    // classes: number them by first appearance; sums in increasing row order
    int K = 0;
    for (int i = 0; i < M; ++i) {
        if (!pr.supcon) {
            positives[i] = 1;
            continue;
        }
        int n = 0;
        for (int k = 0; k < M; ++k) n += pr.labels[k] == pr.labels[i];
        positives[i] = n - 1;
    }
    std::vector<float> C((size_t)M * D, 0), A((size_t)M * D, 0);
    if (pr.supcon) {
        std::vector<int> id(M, -1);
        for (int i = 0; i < M; ++i) {
            if (positives[i] == 0 || id[i] >= 0) continue;
            for (int k = i; k < M; ++k)
                if (pr.labels[k] == pr.labels[i]) id[k] = K;
            ++K;
        }
        class_of = id;
    }
    int valid = 0;
    for (int i = 0; i < M; ++i) valid += positives[i] > 0;
    for (int i = 0; i < M; ++i) {
        float u = pr.reduction == 2 ? pr.upstream[i] : pr.upstream[0];
        if (pr.reduction == 0) u /= (float)valid;
        closs_cm_anchor_weights(u, positives[i], job.scale, &w[i], &a[i]);
    }
    for (int i = 0; i < M; ++i)
        if (class_of[i] >= 0)
            for (int c = 0; c < D; ++c) {
                float unit = pr.z[(size_t)i * pr.ld + c] * inv_norm[i];
                C[(size_t)class_of[i] * D + c] += unit;
                A[(size_t)class_of[i] * D + c] =
                    std::fmaf(a[i], unit, A[(size_t)class_of[i] * D + c]);
            }
    job.norms = norms.data();
    job.inv_norm = inv_norm.data();
    job.lse = lse.data();
    job.weights = w.data();
    job.anchor_a = a.data();
    job.class_of = class_of.data();
    job.class_sum = C.data();
    job.class_weighted_sum = A.data();
    job.nonfinite = &nonfinite;
    job.grad = grad.data();
    job.grad_ld = pr.ld;
    const unsigned tiles = (unsigned)((M + 63) / 64);
    if (job.fixed_shift) launch(tiles, [&] { closs::forward_kernel<float, true>(job); });
    else launch(tiles, [&] { closs::forward_kernel<float, false>(job); });
    if (job.fixed_shift) {
        if (D <= 64) launch(tiles, [&] { closs::backward_kernel<float, true, 64>(job); });
        else if (D <= 128) launch(tiles, [&] { closs::backward_kernel<float, true, 128>(job); });
        else launch(tiles, [&] { closs::backward_kernel<float, true, 256>(job); });
    } else {
        if (D <= 64) launch(tiles, [&] { closs::backward_kernel<float, false, 64>(job); });
        else if (D <= 128) launch(tiles, [&] { closs::backward_kernel<float, false, 128>(job); });
        else launch(tiles, [&] { closs::backward_kernel<float, false, 256>(job); });
    }
    // the reference
    std::vector<double> up(M), ref_loss(M), ref_grad((size_t)M * D);
    for (int i = 0; i < M; ++i) up[i] = pr.reduction == 2 ? pr.upstream[i] : pr.upstream[0];
    closs_matrix_t zm = closs_matrix_ld(pr.z.data(), CLOSS_F32, M, D, pr.ld);
    const closs_reduction_t red = (closs_reduction_t)(pr.reduction == 0   ? CLOSS_REDUCTION_MEAN
                                                      : pr.reduction == 1 ? CLOSS_REDUCTION_SUM
                                                                          : CLOSS_REDUCTION_NONE);
    closs_status_t st;
    if (pr.supcon) {
        closs_supcon_params q = CLOSS_SUPCON_PARAMS_INIT;
        q.temperature = pr.tau;
        q.base_temperature = pr.tau_b;
        q.normalize = pr.normalize;
        q.reduction = red;
        st = closs_ref_supcon(&q, zm, closs_vector(pr.labels.data(), CLOSS_I64, M), up.data(),
                              ref_loss.data(), ref_grad.data(), nullptr);
    } else {
        closs_ntxent_params q = CLOSS_NTXENT_PARAMS_INIT;
        q.temperature = pr.tau;
        q.normalize = pr.normalize;
        q.reduction = red;
        st = closs_ref_ntxent(&q, zm, up.data(), ref_loss.data(), ref_grad.data());
    }
    if (st != CLOSS_STATUS_SUCCESS) {
        std::printf("reference failed: %s\n", closs_last_error());
        std::exit(1);
    }
    // lse in double
    double le = 0;
    for (int i = 0; i < M; ++i) {
        double mx = -INFINITY;
        std::vector<double> xs;
        for (int k = 0; k < M; ++k)
            if (k != i) {
                double s = 0;
                for (int c = 0; c < D; ++c)
                    s += (double)pr.z[(size_t)i * pr.ld + c] * inv_norm[i] *
                         pr.z[(size_t)k * pr.ld + c] * inv_norm[k];
                xs.push_back(s / pr.tau);
                mx = std::fmax(mx, s / pr.tau);
            }
        double sum = 0;
        for (double x : xs) sum += std::exp(x - mx);
        double want = M > 1 ? mx + std::log(sum) : -INFINITY;
        double e = M > 1 ? std::fabs(lse[i] - want) / std::fmax(std::fabs(want), 1.0 / pr.tau)
                         : (lse[i] == -INFINITY ? 0 : 1);
        if (!(e <= le)) le = e;
    }
    double diff = 0, size = 0, padding_written = 0;
    for (int i = 0; i < M; ++i) {
        for (int c = 0; c < D; ++c) {
            double d = grad[(size_t)i * pr.ld + c] - ref_grad[(size_t)i * D + c];
            diff += d * d;
            size += ref_grad[(size_t)i * D + c] * ref_grad[(size_t)i * D + c];
        }
        for (int c = D; c < pr.ld; ++c) padding_written += !std::isnan(grad[(size_t)i * pr.ld + c]);
    }
    double w_max = 0, R = 0, inv_sq = 0;
    for (int i = 0; i < M; ++i) {
        w_max = std::fmax(w_max, std::fabs(w[i]));
        R = std::fmax(R, norms[i] * inv_norm[i]);
        const double n = pr.normalize ? std::fmax(norms[i], 1e-12f) : 1.0;
        inv_sq += 1.0 / (n * n);
    }
    const double floor = 0.2 * w_max * R / pr.tau * std::sqrt(inv_sq);
    *lse_err = le;
    *grad_err = padding_written
                    ? INFINITY
                    : std::sqrt(diff) / std::fmax(std::fmax(std::sqrt(size), floor), 1e-300);
}

Test(fused_kernels, match_reference) {
    unsigned long long state = 12345;
    auto rnd = [&] {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        return (double)(state >> 11) * 0x1p-53;
    };
    const int rows_list[] = {2, 3, 65, 130};
    const int dims[] = {1, 3, 17, 64, 65, 130, 256};
    const double taus[] = {0.01, 0.07, 1.0, 10.0};
    for (int supcon = 0; supcon <= 1; ++supcon)
        for (int ri = 0; ri < 4; ++ri)
            for (int di = 0; di < 7; ++di) {
                Problem pr;
                pr.supcon = supcon;
                pr.rows = rows_list[ri];
                pr.dim = dims[di];
                if (!supcon && pr.rows % 2) pr.rows += 1;
                pr.normalize = (ri + di) % 3 != 0;
                pr.tau = taus[(ri * 7 + di) % 4];
                if (!pr.normalize && pr.tau < 0.05) pr.tau = 0.5;
                pr.tau_b = supcon && di % 2 ? 0.5 : pr.tau;
                pr.reduction = (ri + 2 * di) % 3;
                pr.ld = pr.dim + (di % 2 ? 3 : 0);
                pr.z.assign((size_t)pr.rows * pr.ld, NAN);
                for (int i = 0; i < pr.rows; ++i)
                    for (int c = 0; c < pr.dim; ++c)
                        pr.z[(size_t)i * pr.ld + c] = (float)(2 * rnd() - 1);
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
                double le, ge;
                run(pr, &le, &ge);
                cr_expect(
                    le <= 1e-5 && ge <= 1e-4,
                    "%s M=%d D=%d ld=%d normalize=%d tau=%g reduction=%d labels=%d: lse error "
                    "%.2e, gradient error %.2e",
                    supcon ? "supcon" : "ntxent", pr.rows, pr.dim, pr.ld, pr.normalize, pr.tau,
                    pr.reduction, pattern, le, ge);
            }
}
