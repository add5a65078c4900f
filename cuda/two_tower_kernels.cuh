// The kernels both CLIP/SigLIP paths share (two_tower_fused.cu, FUSED; two_tower_chunked.cu,
// CHUNKED): the rows' norms, the positives c_ii, each pair's loss from its walk's value, the
// factors of G from the weights and statistics, and the fixed-order reductions of the loss and the
// scalar gradients. The math is at the top of two_tower_math.h. A header of its own so that
// tests/test_two_tower_kernels.cpp runs these very kernels on the CPU harness.
#pragma once

#include <math.h>
#include <stdint.h>

#include "common.cuh"
#include "two_tower_launch.h"
#include "two_tower_math.h"

namespace closs {
namespace {

constexpr float kTwoTowerEps = 1e-12f; // normalize(x) = x / max(‖x‖, eps) (the contract)
constexpr int kTwoTowerBlock = 256;    // threads of the per-row and per-pair kernels

// One tower as the kernels read it: row r, column c of the embedded rows (raw × 1/‖row‖), 0 past
// its rows or D (the tiles' padding: 0·0 adds nothing).
template <typename T> struct Tower {
    const T *data;
    int64_t ld, rows, dim;
    const float *inv_norm;
    __device__ __forceinline__ float unit(int64_t r, int64_t c) const {
        if (r >= rows || c >= dim) return 0.0f;
        return to_float(data[r * ld + c]) * inv_norm[r];
    }
};

template <typename T>
__device__ __forceinline__ Tower<T> tower_a(const closs_two_tower_launch &job) {
    return {static_cast<const T *>(job.a), job.lda, job.pairs, job.dim, job.inv_norm_a};
}
template <typename T>
__device__ __forceinline__ Tower<T> tower_b(const closs_two_tower_launch &job) {
    return {static_cast<const T *>(job.b), job.ldb, job.rows_b, job.dim, job.inv_norm_b};
}

// One walk of one tower's rows (the anchors) against the other's (the columns), on either path:
// anchor rows [anchor_begin, anchor_end) against column rows [column_begin, column_end).
struct TwoTowerWalk {
    int anchors_are_a;
    int64_t anchor_begin, anchor_end;
    int64_t column_begin, column_end;
    float *out; // forward: one value per anchor, out[i − anchor_begin]
    void *grad; // backward: gradient row i − anchor_begin; NULL: not stored
    int64_t grad_ld;
    int shares; // backward walking a: each row's shares of ∂/∂s and ∂/∂β (SigLIP: and its loss)
};

// s and β as the call gives them: the caller's device scalars, or the parameters' values.
__device__ __forceinline__ float logit_scale_of(const closs_two_tower_launch &job) {
    return job.logit_scale ? *job.logit_scale : job.scale_value;
}
__device__ __forceinline__ float logit_bias_of(const closs_two_tower_launch &job) {
    if (!job.siglip) return 0.0f;
    return job.logit_bias ? *job.logit_bias : job.bias_value;
}

// dz from dẑ (the normalisation's backward): (dẑ − ẑ·(ẑ·dẑ))/‖z‖ while ‖z‖ > eps, dẑ/eps below,
// dẑ without normalisation.
__device__ __forceinline__ float unembed(float dzhat, float unit, float radial, float norm,
                                         int normalize) {
    if (!normalize) return dzhat;
    return norm > kTwoTowerEps ? (dzhat - unit * radial) / norm : dzhat / kTwoTowerEps;
}

// The walks of a call, the same on both paths (two_tower_fused.cu and two_tower_chunked.cu run
// them in this order):
//   forward  CLIP: a over b (n_i; b's partners and negatives, or only the negatives without
//            in-batch negatives) and, when symmetric, b over a (m_j), for the statistics' pairs;
//            SigLIP: a over b (the loss), unless the backward's walk over a gives it;
//   backward a over b for ∂/∂a and the shares of ∂/∂s and ∂/∂β (and SigLIP's loss), when any of
//            them is asked for; b over a for ∂/∂b: the range's partners (each meets every row of
//            a, or CLIP without in-batch negatives none: only its own pair's term), then the
//            range's extra negatives (each meets every row of a).
struct TwoTowerPlan {
    TwoTowerWalk forward[2];
    int forward_walks;
    bool gradient, walk_a, loss_in_walk_a;
    TwoTowerWalk rows, partners, negatives;
};

inline TwoTowerWalk walk_of(int anchors_are_a, int64_t anchor_begin, int64_t anchor_count,
                            int64_t column_begin, int64_t column_end) {
    TwoTowerWalk walk = {};
    walk.anchors_are_a = anchors_are_a;
    walk.anchor_begin = anchor_begin;
    walk.anchor_end = anchor_begin + anchor_count;
    walk.column_begin = column_begin;
    walk.column_end = column_end;
    return walk;
}

inline TwoTowerPlan plan_of(const closs_two_tower_launch &job) {
    TwoTowerPlan plan = {};
    const int64_t first_column =
        job.siglip || job.in_batch_negatives ? 0 : job.pairs; // a's row meets
    plan.gradient = job.grad_a || job.grad_b || job.grad_logit_scale || job.grad_logit_bias;
    plan.loss_in_walk_a = job.siglip && job.forward && plan.gradient;
    plan.walk_a = job.grad_a || job.grad_logit_scale || job.grad_logit_bias || plan.loss_in_walk_a;
    if (job.forward && job.siglip && !plan.loss_in_walk_a) {
        plan.forward[plan.forward_walks] = walk_of(1, job.row_begin, job.row_count, 0, job.rows_b);
        plan.forward[plan.forward_walks++].out = job.row_loss + job.row_begin;
    } else if (job.forward && !job.siglip) {
        plan.forward[plan.forward_walks] =
            walk_of(1, job.stats_begin, job.stats_count, first_column, job.rows_b);
        plan.forward[plan.forward_walks++].out = job.row_stats;
        if (job.symmetric) {
            plan.forward[plan.forward_walks] =
                walk_of(0, job.stats_begin, job.stats_count, 0, job.pairs);
            plan.forward[plan.forward_walks++].out = job.column_stats;
        }
    }
    plan.rows = walk_of(1, job.row_begin, job.row_count, first_column, job.rows_b);
    plan.rows.grad = job.grad_a;
    plan.rows.grad_ld = job.grad_a_ld;
    plan.rows.shares = 1;
    const int64_t partner_columns = job.siglip || job.in_batch_negatives ? job.pairs : 0;
    plan.partners = walk_of(0, job.row_begin, job.grad_b ? job.row_count : 0, 0, partner_columns);
    plan.partners.grad = job.grad_b;
    plan.partners.grad_ld = job.grad_b_ld;
    plan.negatives = walk_of(0, job.pairs + job.negatives_begin,
                             job.grad_b ? job.negatives_count : 0, 0, job.pairs);
    plan.negatives.grad = job.grad_b
                              ? static_cast<char *>(job.grad_b) +
                                    job.row_count * job.grad_b_ld * closs_dtype_size(job.dtype)
                              : nullptr;
    plan.negatives.grad_ld = job.grad_b_ld;
    return plan;
}

// The factor and lse of G for row `index` of a tower (a-side or b-side, two_tower_math.h);
// SigLIP's a-side factor is w_i. Past the tower's rows (padding): 0 and +∞, which give G = 0.
__device__ __forceinline__ void g_factors(const closs_two_tower_launch &job, bool a_side,
                                          int64_t index, float *factor, float *lse) {
    const int64_t rows = a_side ? job.pairs : job.rows_b;
    *factor = 0.0f;
    *lse = INFINITY;
    if (index >= rows || (job.siglip && !a_side)) return;
    *factor = (a_side ? job.factor_a : job.factor_b)[index];
    if (!job.siglip) *lse = (a_side ? job.lse_a : job.lse_b)[index];
}

// G_ii of pair i with logit x = s·c_ii (+ β).
__device__ __forceinline__ float diagonal_coefficient(const closs_two_tower_launch &job, int64_t i,
                                                      float x) {
    if (job.siglip) return closs_tt_siglip(x, job.factor_a[i], 1).coefficient;
    const float column_stat = job.symmetric ? job.column_stats[i] : 0.0f;
    return closs_tt_clip_diagonal(job.row_stats[i], column_stat, x, job.factor_a[i], job.symmetric);
}

// ‖row‖ and 1/max(‖row‖, eps) (1 unnormalised) of every row of a (0 ≤ t < N) and b (N ≤ t < N + R),
// one warp per row; a row holding NaN or Inf gets NaN, so that every value computed from it is
// NaN (the contract), even where exp(−∞) = 0 would hide it. The chunked path also gets the rows
// embedded as float (a_hat, b_hat) for its SGEMMs.
template <typename T> __global__ void embed_kernel(const closs_two_tower_launch job) {
    const int lane = threadIdx.x % kWarpSize;
    const int64_t warps = (int64_t)gridDim.x * (blockDim.x / kWarpSize);
    for (int64_t t = (int64_t)blockIdx.x * (blockDim.x / kWarpSize) + threadIdx.x / kWarpSize;
         t < job.pairs + job.rows_b; t += warps) {
        const bool is_a = t < job.pairs;
        const int64_t row = is_a ? t : t - job.pairs;
        const T *x =
            static_cast<const T *>(is_a ? job.a : job.b) + row * (is_a ? job.lda : job.ldb);
        float squares = 0.0f;
        bool nonfinite = false;
        for (int64_t c = lane; c < job.dim; c += kWarpSize) {
            const float value = to_float(x[c]);
            nonfinite |= !isfinite(value);
            squares = fmaf(value, value, squares);
        }
        const float norm = sqrtf(warp_sum(squares));
        float scale = job.normalize ? 1.0f / fmaxf(norm, kTwoTowerEps) : 1.0f;
        if (warp_any(nonfinite)) scale = __int_as_float(0x7fc00000);
        float *hat = is_a ? job.a_hat : job.b_hat;
        if (hat)
            for (int64_t c = lane; c < job.dim; c += kWarpSize)
                hat[row * job.dim + c] = to_float(x[c]) * scale;
        if (lane == 0) {
            (is_a ? job.norms_a : job.norms_b)[row] = norm;
            (is_a ? job.inv_norm_a : job.inv_norm_b)[row] = scale;
        }
    }
}

// c_ii = â_i·b̂_i for every pair, one warp per pair.
template <typename T> __global__ void positives_kernel(const closs_two_tower_launch job) {
    const int lane = threadIdx.x % kWarpSize;
    const int64_t warps = (int64_t)gridDim.x * (blockDim.x / kWarpSize);
    const Tower<T> a = tower_a<T>(job), b = tower_b<T>(job);
    for (int64_t i = (int64_t)blockIdx.x * (blockDim.x / kWarpSize) + threadIdx.x / kWarpSize;
         i < job.pairs; i += warps) {
        float dot = 0.0f;
        for (int64_t c = lane; c < job.dim; c += kWarpSize)
            dot = fmaf(a.unit(i, c), b.unit(i, c), dot);
        dot = warp_sum(dot);
        if (lane == 0) job.positives[i] = dot;
    }
}

// ℓ_i of the range's pairs, from what the forward's walk left: CLIP's statistics n_i (and m_i)
// for the pairs [stats_begin, + stats_count), SigLIP's sum of the off-diagonal terms in row_loss.
__global__ void pair_loss_kernel(const closs_two_tower_launch job) {
    const float s = logit_scale_of(job), beta = logit_bias_of(job);
    for (int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; r < job.row_count;
         r += (int64_t)gridDim.x * blockDim.x) {
        const int64_t i = job.row_begin + r;
        const float x = fmaf(s, job.positives[i], beta);
        float loss;
        if (job.siglip) {
            loss = job.row_loss[i] + closs_tt_siglip(x, 0.0f, 1).loss;
        } else {
            const int64_t k = i - job.stats_begin;
            const float column_stat = job.symmetric ? job.column_stats[k] : 0.0f;
            loss = closs_tt_clip_loss(job.row_stats[k], column_stat, x, job.symmetric ? 0.5f : 1.0f,
                                      job.symmetric);
        }
        job.row_loss[i] = loss;
        if (job.reduction == CLOSS_REDUCTION_NONE) job.loss[r] = loss;
    }
}

// w_i: the weight of ℓ_i in the reduced loss, the upstream gradient included (MEAN over all N).
__device__ __forceinline__ float pair_weight(const closs_two_tower_launch &job, int64_t i) {
    if (job.reduction == CLOSS_REDUCTION_NONE) return job.upstream ? job.upstream[i] : 1.0f;
    const float upstream = job.upstream ? job.upstream[0] : 1.0f;
    return job.reduction == CLOSS_REDUCTION_MEAN ? upstream / (float)job.pairs : upstream;
}

// The factors and lse of G for every row of a (N) and b (R), from the weights and, for CLIP, the
// statistics of all N pairs: a-side f = h·w_i, lse r_i; b-side f = [symmetric, j < N]·h·w_j,
// lse q_j (+∞ where the term is absent, so that e^(x − lse) = 0). SigLIP: factor_a = w_i.
__global__ void prepare_backward_kernel(const closs_two_tower_launch job) {
    const float s = logit_scale_of(job), half = job.symmetric ? 0.5f : 1.0f;
    for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < job.pairs + job.rows_b;
         t += (int64_t)gridDim.x * blockDim.x) {
        const bool is_a = t < job.pairs;
        const int64_t j = is_a ? t : t - job.pairs;
        if (job.siglip) {
            if (is_a) job.factor_a[j] = pair_weight(job, j);
            continue;
        }
        const bool column = !is_a && j < job.pairs && job.symmetric;
        if (!is_a && !column) {
            job.factor_b[j] = 0.0f;
            job.lse_b[j] = INFINITY;
            continue;
        }
        const float x = s * job.positives[j];
        const float stat = is_a ? job.row_stats[j] : job.column_stats[j];
        (is_a ? job.factor_a : job.factor_b)[j] = half * pair_weight(job, j);
        (is_a ? job.lse_a : job.lse_b)[j] = closs_tt_clip_full_lse(stat, x);
    }
}

// Merges `value` over the block in a fixed tree (a sum, or an lse merge); valid in thread 0.
template <typename V, typename Merge>
__device__ __forceinline__ V block_reduce(V value, V *shared, Merge merge) {
    shared[threadIdx.x] = value;
    __syncthreads();
    for (int half = kTwoTowerBlock / 2; half > 0; half >>= 1) {
        if (threadIdx.x < half)
            shared[threadIdx.x] = merge(shared[threadIdx.x], shared[threadIdx.x + half]);
        __syncthreads();
    }
    const V result = shared[0];
    __syncthreads(); // the shared array may be reused at once
    return result;
}

struct TwoTowerAdd {
    template <typename V> __device__ V operator()(V x, V y) const { return x + y; }
};

// The range's share of `values` (one per pair), in double and a fixed order, by one block.
__device__ __forceinline__ double range_sum(const closs_two_tower_launch &job, const float *values,
                                            double *shared) {
    double sum = 0.0;
    for (int64_t r = threadIdx.x; r < job.row_count; r += kTwoTowerBlock)
        sum += values[job.row_begin + r];
    return block_reduce(sum, shared, TwoTowerAdd());
}

// The reduced loss of the range (MEAN divides by the global N), one block.
__global__ void __launch_bounds__(kTwoTowerBlock)
    finish_loss_kernel(const closs_two_tower_launch job) {
    __shared__ double shared[kTwoTowerBlock];
    const double sum = range_sum(job, job.row_loss, shared);
    if (threadIdx.x != 0 || job.reduction == CLOSS_REDUCTION_NONE) return;
    *job.loss = (float)(job.reduction == CLOSS_REDUCTION_MEAN ? sum / (double)job.pairs : sum);
}

// The range's shares of ∂/∂s (and SigLIP's ∂/∂β), one block.
__global__ void __launch_bounds__(kTwoTowerBlock)
    finish_scalars_kernel(const closs_two_tower_launch job) {
    __shared__ double shared[kTwoTowerBlock];
    if (job.grad_logit_scale) {
        const double sum = range_sum(job, job.scale_share, shared);
        if (threadIdx.x == 0) *job.grad_logit_scale = (float)sum;
    }
    if (job.grad_logit_bias) {
        const double sum = range_sum(job, job.bias_share, shared);
        if (threadIdx.x == 0) *job.grad_logit_bias = (float)sum;
    }
}

// A whole call: the plan's walks and the kernels around them, in order. `launches` enqueues each
// step on its path (GpuLaunches below; the CPU harness has its own): embed(), walk(walk,
// backward), finish_forward(), prepare_backward(), finish_scalars(); a failure ends the call.
template <typename Launches>
cudaError_t run_plan(const closs_two_tower_launch &job, Launches &launches) {
    const TwoTowerPlan plan = plan_of(job);
    CLOSS_TRY_CUDA(launches.embed());
    for (int w = 0; w < plan.forward_walks; ++w)
        CLOSS_TRY_CUDA(launches.walk(plan.forward[w], false));
    if (job.forward && !plan.loss_in_walk_a) CLOSS_TRY_CUDA(launches.finish_forward());
    if (!plan.gradient) return cudaSuccess;
    CLOSS_TRY_CUDA(launches.prepare_backward());
    if (plan.walk_a) CLOSS_TRY_CUDA(launches.walk(plan.rows, true));
    if (plan.loss_in_walk_a) CLOSS_TRY_CUDA(launches.finish_forward());
    if (job.grad_logit_scale || job.grad_logit_bias) CLOSS_TRY_CUDA(launches.finish_scalars());
    CLOSS_TRY_CUDA(launches.walk(plan.partners, true));
    return launches.walk(plan.negatives, true);
}

#ifdef __CUDACC__

// The launches of run_plan on `stream`, the walks by the path's `Walk` (walk, backward).
template <typename T, typename Walk> struct GpuLaunches {
    const closs_two_tower_launch &job;
    cudaStream_t stream;
    Walk run_walk;

    cudaError_t walk(const TwoTowerWalk &walk, bool backward) { return run_walk(walk, backward); }
    // ‖row‖, 1/‖row‖ and (chunked) the embedded rows of both towers, then c_ii.
    cudaError_t embed() {
        const int warps_per_block = kTwoTowerBlock / kWarpSize;
        embed_kernel<T>
            <<<grid_for(job.pairs + job.rows_b, warps_per_block), kTwoTowerBlock, 0, stream>>>(job);
        CLOSS_RETURN_IF_LAUNCH_FAILED();
        positives_kernel<T>
            <<<grid_for(job.pairs, warps_per_block), kTwoTowerBlock, 0, stream>>>(job);
        return cudaGetLastError();
    }
    // ℓ_i of the range from its walk, then the reduction.
    cudaError_t finish_forward() {
        pair_loss_kernel<<<grid_for(job.row_count, kTwoTowerBlock), kTwoTowerBlock, 0, stream>>>(
            job);
        CLOSS_RETURN_IF_LAUNCH_FAILED();
        finish_loss_kernel<<<1, kTwoTowerBlock, 0, stream>>>(job);
        return cudaGetLastError();
    }
    cudaError_t prepare_backward() {
        prepare_backward_kernel<<<grid_for(job.pairs + job.rows_b, kTwoTowerBlock), kTwoTowerBlock,
                                  0, stream>>>(job);
        return cudaGetLastError();
    }
    cudaError_t finish_scalars() {
        finish_scalars_kernel<<<1, kTwoTowerBlock, 0, stream>>>(job);
        return cudaGetLastError();
    }
};

template <typename T, typename Walk>
cudaError_t run_on_gpu(const closs_two_tower_launch &job, cudaStream_t stream, Walk walk) {
    GpuLaunches<T, Walk> launches{job, stream, walk};
    return run_plan(job, launches);
}

#endif

} // namespace
} // namespace closs
