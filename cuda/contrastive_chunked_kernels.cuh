// The CHUNKED path's kernels (contrastive.cu has the math, the order of work, the cuBLAS calls and
// the C entry point): the row statistics of a block of S, its coefficients G and the gradient's
// store. A header of its own so that tests/test_contrastive_kernels.cpp runs these very kernels on
// the CPU, a thread per CUDA thread, between the cuBLAS calls of contrastive_chunked_products.cuh
// (run there by tests/cublas_model.h).
//
// What the block of S holds depends on the dtype (contrastive.cu, top): ẑ_i·ẑ_k for f32 (cuBLAS
// multiplied the ẑ copy), z_i·z_k for f16 and bf16 (cuBLAS multiplied the raw 16-bit rows on
// tensor cores), which the kernels turn into ẑ_i·ẑ_k by the rank-1 scale r_i·r_k (inv_norm, NULL
// for f32). The 16-bit backward writes G'_ik = G_ik·r_k/β in two 16-bit halves (to_operand) for the
// next product, dẐ = β·G'·Z, and its last kernel applies β.
#pragma once

#include <stdint.h>

#include "contrastive_kernels.cuh"

namespace closs {
namespace {

// r_k, the factor the product of row k gets (1 where S holds ẑ already).
__device__ __forceinline__ float product_scale(const closs_contrastive_launch &job, int64_t k) {
    return job.inv_norm ? job.inv_norm[k] : 1.0f;
}

// k ∈ P(i): the partner (NT-Xent), another row of i's class (SupCon, classes numbered by
// contrastive_classes.cuh; a singleton's class is −1).
__device__ __forceinline__ bool is_positive(const closs_contrastive_launch &job, int64_t i, int64_t k) {
    if (k == i) return false;
    if (!job.supcon) return k == (i + job.rows / 2) % job.rows;
    const int c = job.class_of[i];
    return c >= 0 && job.class_of[k] == c;
}

// One block per anchor row of the chunk: lse_i, the positives' sum and ℓ_i.
__global__ void __launch_bounds__(kBlock) row_stats_kernel(const closs_contrastive_launch job, int64_t first,
                                                           const float *similarity) {
    __shared__ closs_lse_partial lse_shared[kBlock];
    __shared__ float sum_shared[kBlock];
    const int64_t i = first + blockIdx.x;
    const float *row = similarity + (int64_t)blockIdx.x * job.rows;
    const float anchor_scale = product_scale(job, i) * job.inv_temperature;
    closs_lse_partial lse = closs_cm_lse_empty();
    float positive_sum = 0.0f;
    for (int64_t k = threadIdx.x; k < job.rows; k += kBlock) {
        if (k == i) continue;
        const float x = row[k] * anchor_scale * product_scale(job, k);
        lse = closs_cm_lse_add(lse, x);
        if (is_positive(job, i, k)) positive_sum += x;
    }
    lse = block_reduce(lse, lse_shared, MergeLse());
    positive_sum = block_reduce(positive_sum, sum_shared, AddFloat());
    if (threadIdx.x != 0) return;
    const float nan = __int_as_float(0x7fc00000);
    const bool nonfinite = *job.nonfinite != 0;
    const float lse_value = nonfinite ? nan : closs_cm_lse_value(lse);
    job.lse[i - job.lse_begin] = lse_value;
    float loss = closs_cm_row_loss(lse_value, positive_sum, job.positives[i], job.scale);
    if (nonfinite) loss = nan; // every anchor, even one without a positive (contract)
    job.row_loss[i] = loss;
    const int64_t r = i - job.row_begin; // outside the row range when a backward needs every lse
    if (job.reduction == CLOSS_REDUCTION_NONE && r >= 0 && r < job.row_count) job.loss[r] = loss;
}

// The block of S → G (contrastive_math.h), one thread per element: f32 in place; f16 and bf16 as
// G' = G·r_k/β into the two 16-bit blocks coefficient_high and coefficient_low.
template <typename T>
__global__ void coefficients_kernel(const closs_contrastive_launch job, int64_t first, int64_t chunk,
                                    float *similarity) {
    const int64_t elements = chunk * job.rows;
    float inv_beta = 1.0f;
    if constexpr (!std::is_same<T, float>::value) {
        const float beta = __uint_as_float(*job.factor_max);
        inv_beta = beta > 0.0f ? 1.0f / beta : 1.0f; // all weights 0: G is 0 anyway
    }
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < elements; e += (int64_t)gridDim.x * blockDim.x) {
        const int64_t i = first + e / job.rows, k = e % job.rows;
        float g = 0.0f;
        if (k != i) {
            const float x = similarity[e] * (product_scale(job, i) * job.inv_temperature) * product_scale(job, k);
            g = closs_cm_coefficient(x, job.lse[i], job.lse[k], job.weights[i], job.weights[k], job.anchor_a[i],
                                     job.anchor_a[k], is_positive(job, i, k), job.inv_temperature);
        }
        if constexpr (std::is_same<T, float>::value) {
            similarity[e] = g;
        } else {
            g *= product_scale(job, k) * inv_beta;
            const T high = to_operand<T>(g);
            static_cast<T *>(job.coefficient_high)[e] = high;
            static_cast<T *>(job.coefficient_low)[e] = to_operand<T>(g - to_float(high));
        }
    }
}

// dz_i from dẑ_i (β·dzhat for 16-bit): (dẑ − ẑ(ẑ·dẑ))/‖z_i‖ while ‖z_i‖ > eps, dẑ/eps below, dẑ
// without normalisation; one warp per row.
template <typename T>
__global__ void embed_backward_kernel(const closs_contrastive_launch job, int64_t first, int64_t chunk,
                                      const float *dzhat) {
    const int lane = threadIdx.x % kWarpSize;
    const int64_t warps = (int64_t)gridDim.x * (blockDim.x / kWarpSize);
    float beta = 1.0f;
    if constexpr (!std::is_same<T, float>::value) {
        beta = __uint_as_float(*job.factor_max);
        if (!(beta > 0.0f)) beta = 1.0f;
    }
    for (int64_t r = (int64_t)blockIdx.x * (blockDim.x / kWarpSize) + threadIdx.x / kWarpSize; r < chunk;
         r += warps) {
        const int64_t row = first + r;
        const float *g = dzhat + r * job.dim;
        // ẑ_i: the f32 copy, or the 16-bit row scaled
        auto unit = [&](int64_t c) {
            if constexpr (std::is_same<T, float>::value) return job.zhat[row * job.dim + c];
            else return to_float(static_cast<const T *>(job.z)[row * job.ld + c]) * job.inv_norm[row];
        };
        float radial = 0.0f;
        if (job.normalize)
            for (int64_t c = lane; c < job.dim; c += kWarpSize) radial = fmaf(unit(c), g[c] * beta, radial);
        radial = warp_sum(radial);
        const float norm = job.norms[row];
        T *out = static_cast<T *>(job.grad) + (row - job.row_begin) * job.grad_ld;
        for (int64_t c = lane; c < job.dim; c += kWarpSize) {
            float value = g[c] * beta;
            if (job.normalize) value = norm > kNormalizeEps ? (value - unit(c) * radial) / norm : value / kNormalizeEps;
            out[c] = from_float<T>(value);
        }
    }
}

} // namespace
} // namespace closs
