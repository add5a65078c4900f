// The kernels that both NT-Xent/SupCon paths share (contrastive.cu, chunked; contrastive_fused.cu,
// fused): the embedding's norms, fixed-order block reductions, the reduced loss and valid count,
// and the anchors' gradient weights. Each path's .cu includes this once.
#pragma once

#include <math.h>
#include <stdint.h>

#include <type_traits>

#include "common.cuh"
#include "contrastive_math.h"
#include "launch.h"

namespace closs {
namespace {

constexpr float kNormalizeEps = 1e-12f;

// ‖z_i‖, the row's scale r_i = 1/max(‖z_i‖, eps) (1 without normalisation; inv_norm NULL: not
// needed) and ẑ_i = r_i·z_i for the chunked path's f32 (zhat NULL: the other kernels multiply raw
// z and scale the products). Any non-finite element raises the flag that turns every lse into NaN.
template <typename T>
__global__ void embed_kernel(const closs_contrastive_launch job) {
    const int lane = threadIdx.x % kWarpSize;
    const int64_t warps = (int64_t)gridDim.x * (blockDim.x / kWarpSize);
    for (int64_t row = (int64_t)blockIdx.x * (blockDim.x / kWarpSize) + threadIdx.x / kWarpSize;
         row < job.rows; row += warps) {
        const T *z = static_cast<const T *>(job.z) + row * job.ld;
        float squares = 0.0f;
        bool nonfinite = false;
        for (int64_t c = lane; c < job.dim; c += kWarpSize) {
            float value = to_float(z[c]);
            nonfinite |= !isfinite(value);
            squares = fmaf(value, value, squares);
        }
        const float norm = sqrtf(warp_sum(squares));
        if (warp_any(nonfinite) && lane == 0) atomicOr(job.nonfinite, 1);
        const float scale = job.normalize ? 1.0f / fmaxf(norm, kNormalizeEps) : 1.0f;
        if (job.zhat)
            for (int64_t c = lane; c < job.dim; c += kWarpSize) job.zhat[row * job.dim + c] = to_float(z[c]) * scale;
        if (lane == 0) {
            job.norms[row] = norm;
            if (job.inv_norm) job.inv_norm[row] = scale;
        }
    }
}

// The f16 backward's scaled rows (launch.h, z_scaled): G'_ik = G_ik·r_k/β must be an f16 operand,
// and r_k = 1/‖z_k‖ is large for a near-zero row (1e6 at ‖z_k‖ = 1e-6): G' would pass 65504 and
// be clamped, and row k's term in every other row's gradient would be wrong. Multiplying z′_k =
// z_k·2^e_k with r′_k = r_k·2^−e_k instead changes no product (powers of two: z′_i·z′_k·r′_i·r′_k
// = ẑ_i·ẑ_k, G'·z′_k = G·r_k·z_k), and e_k = max(0, −exponent of ‖z_k‖) puts ‖z′_k‖ in [1/2, 1):
// every element of z′_k is z_k's, exactly, times a power of two within f16's range, and r′_k ≤ 2.
// A zero row keeps e_k = 0 (its G' is clamped, but multiplies z_k = 0), as does a non-finite one.
// One warp per row; the padding up to scaled_ld is zero.
template <typename T> __global__ void scale_rows_kernel(const closs_contrastive_launch job) {
    const int lane = threadIdx.x % kWarpSize;
    const int64_t warps = (int64_t)gridDim.x * (blockDim.x / kWarpSize);
    for (int64_t row = (int64_t)blockIdx.x * (blockDim.x / kWarpSize) + threadIdx.x / kWarpSize;
         row < job.rows; row += warps) {
        int exponent = 0;
        const float norm = job.norms[row];
        if (norm > 0.0f && norm < 0.5f) frexpf(norm, &exponent); // norm = m·2^exponent, m ∈ [1/2, 1)
        const int e = -exponent;
        const T *z = static_cast<const T *>(job.z) + row * job.ld;
        T *scaled = static_cast<T *>(job.z_scaled) + row * job.scaled_ld;
        for (int64_t c = lane; c < job.scaled_ld; c += kWarpSize)
            scaled[c] = from_float<T>(c < job.dim ? ldexpf(to_float(z[c]), e) : 0.0f);
        if (lane == 0) job.inv_norm_scaled[row] = ldexpf(job.inv_norm[row], -e);
    }
}

// The launch the backward's similarity pass gets: with scaled rows, z′ and r′ in place of z and r,
// and r kept for dz's last factor.
__host__ __device__ inline closs_contrastive_launch backward_job(const closs_contrastive_launch &job) {
    closs_contrastive_launch scaled = job;
    if (!job.z_scaled) return scaled;
    scaled.z = job.z_scaled, scaled.ld = job.scaled_ld;
    scaled.inv_norm = job.inv_norm_scaled, scaled.inv_norm_unscaled = job.inv_norm;
    return scaled;
}

// dz's last factor r_i (the backward's inv_norm may hold r′_i).
__device__ __forceinline__ float unscaled_inv_norm(const closs_contrastive_launch &job, int64_t i) {
    return job.inv_norm_unscaled ? job.inv_norm_unscaled[i] : job.inv_norm[i];
}

// A 16-bit operand of the backward's second product, G' (either path's 16-bit backward), from
// float: f16 saturates at ±65504 instead of overflowing to ±inf (reached only by G' of a row with
// ‖z_j‖ < 4/(65504·τ), in practice a zero row, whose z_j = 0 adds nothing anyway), and a NaN stays
// NaN (fminf would drop it). G' goes to the product as high = G' rounded and low = G' − high
// rounded, one product each: a single 16-bit G' errs by 2^-9 (bf16) of each term, which is the
// whole answer where the terms of a row cancel (bench/NOTES.md, "Accuracy where positives are
// confident").
template <typename T> __device__ __forceinline__ float operand_range(float g) {
    constexpr float kHalfMax = 65504.0f;
    if constexpr (std::is_same<T, __half>::value) g = g > kHalfMax ? kHalfMax : g < -kHalfMax ? -kHalfMax : g;
    return g;
}
template <typename T> __device__ __forceinline__ T to_operand(float g) { return from_float<T>(operand_range<T>(g)); }

// Sums `value` over the block in a fixed tree; the result is valid in thread 0.
template <typename V, typename Merge>
__device__ __forceinline__ V block_reduce(V value, V *shared, Merge merge) {
    shared[threadIdx.x] = value;
    __syncthreads();
    for (int half = kBlock / 2; half > 0; half >>= 1) {
        if (threadIdx.x < half) shared[threadIdx.x] = merge(shared[threadIdx.x], shared[threadIdx.x + half]);
        __syncthreads();
    }
    V result = shared[0];
    __syncthreads(); // the shared array may be reused right away
    return result;
}

struct AddInt {
    __device__ int operator()(int a, int b) const { return a + b; }
};
struct AddFloat {
    __device__ float operator()(float a, float b) const { return a + b; }
};
struct AddDouble {
    __device__ double operator()(double a, double b) const { return a + b; }
};
struct MergeLse {
    __device__ closs_lse_partial operator()(closs_lse_partial a, closs_lse_partial b) const {
        return closs_cm_lse_merge(a, b);
    }
};

// The reduced loss of the row range and the valid counts (all rows: MEAN's denominator, closs.h
// "Row ranges"; the range's: `valid`), by one block in a fixed order.
__global__ void __launch_bounds__(kBlock) finish_loss_kernel(const closs_contrastive_launch job) {
    __shared__ double sum_shared[kBlock];
    __shared__ int count_shared[kBlock];
    double sum = 0.0;
    int valid = 0, range_valid = 0;
    for (int64_t i = threadIdx.x; i < job.rows; i += kBlock) {
        const bool in_range = i >= job.row_begin && i < job.row_begin + job.row_count;
        if (job.forward && in_range) sum += job.row_loss[i];
        valid += job.positives[i] > 0;
        range_valid += in_range && job.positives[i] > 0;
    }
    sum = block_reduce(sum, sum_shared, AddDouble());
    valid = block_reduce(valid, count_shared, AddInt());
    range_valid = block_reduce(range_valid, count_shared, AddInt());
    if (threadIdx.x != 0) return;
    *job.valid_count = valid;
    if (job.valid) *job.valid = range_valid;
    if (!job.forward || job.reduction == CLOSS_REDUCTION_NONE) return;
    // MEAN over anchors with a positive; with none, Σ is 0 (or NaN from a non-finite input).
    if (job.reduction == CLOSS_REDUCTION_MEAN && valid > 0) sum /= valid;
    *job.loss = (float)sum;
}

struct MaxFloat {
    __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

// w_i and a_i: the upstream gradient of each anchor's loss, scaled, over |P(i)|. With factor_max
// set (the 16-bit backward of either path, which divides G by β so that 16-bit operands hold it),
// also β = max_i |w_i|: a fixed block tree, then an integer atomicMax on the bits of a non-negative
// float (order-free, so deterministic); *factor_max must be 0 before the launch.
__global__ void __launch_bounds__(kBlock) anchor_weights_kernel(const closs_contrastive_launch job) {
    __shared__ float shared[kBlock];
    float largest = 0.0f;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < job.rows; i += (int64_t)gridDim.x * blockDim.x) {
        float upstream;
        if (job.reduction == CLOSS_REDUCTION_NONE) {
            upstream = job.upstream ? job.upstream[i] : 1.0f;
        } else {
            upstream = job.upstream ? job.upstream[0] : 1.0f;
            if (job.reduction == CLOSS_REDUCTION_MEAN) upstream /= (float)*job.valid_count;
        }
        float w, a;
        closs_cm_anchor_weights(upstream, job.positives[i], job.scale, &w, &a);
        job.weights[i] = w;
        job.anchor_a[i] = a;
        largest = fmaxf(largest, fabsf(w));
    }
    if (!job.factor_max) return; // the same for every thread
    largest = block_reduce(largest, shared, MaxFloat());
    if (threadIdx.x == 0) atomicMax(job.factor_max, __float_as_uint(largest));
}

} // namespace
} // namespace closs
