// What NT-Xent/SupCon's two tensor-core kernel families share (the tile engine's
// contrastive_tile_kernels.cuh and the WMMA contrastive_wmma_kernels.cuh): the quad merge of an
// online log-sum-exp (tile_epilogue_math.cuh has the fast exponential and the quad sum), each
// anchor's and column's scales, keys and terms of G' = G·r_j/β, and the kernel that computes every
// row's factor in G first. The math is at the top of contrastive_tile_kernels.cuh (and
// fused_math.h).
#pragma once

#include <stdint.h>

#include "contrastive_fused_kernels.cuh"
#include "tile_epilogue_math.cuh"

namespace closs {
namespace {

__device__ __forceinline__ closs_lse_partial quad_merge(closs_lse_partial value) {
#pragma unroll
    for (int offset = 1; offset <= 2; offset <<= 1) {
        closs_lse_partial other = {__shfl_xor_sync(kFullMask, value.max, offset),
                                   __shfl_xor_sync(kFullMask, value.sum, offset)};
        value = closs_cm_lse_merge(value, other);
    }
    return value;
}

// One of a lane's anchors: row i, r_i, its scales r_i·log2e/τ (base 2) and r_i/τ, and its key
// (fused_math.h: column j ≠ i is a positive when column_key(j) equals it).
struct LaneAnchor {
    int64_t i;
    float r, scale2, scale;
    int key;
};
__device__ __forceinline__ LaneAnchor lane_anchor(const closs_contrastive_launch &job, int64_t i) {
    const bool inside = i < job.rows;
    const float r = inside ? job.inv_norm[i] : 0.0f;
    return {i, r, r * job.inv_temperature * kLog2e, r * job.inv_temperature,
            closs_fm_row_key(job.supcon, i, job.rows, job.supcon && inside ? job.class_of[i] : -1)};
}
__device__ __forceinline__ int column_key(const closs_contrastive_launch &job, int64_t j) {
    return j < job.rows ? closs_fm_column_key(job.supcon, j, job.supcon ? job.class_of[j] : 0) : -3;
}

// Every row's factor in G: b_k with the fixed shift, w_k with the online maximum. (β comes from
// anchor_weights_kernel.)
template <bool kFixed> __global__ void softmax_factors_kernel(const closs_contrastive_launch job) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < job.rows; i += (int64_t)gridDim.x * blockDim.x)
        job.softmax_factor[i] = softmax_factor<kFixed>(job, i);
}

// σ = (1/τ)/β, the scale of G' = G·r_j/β (β = max |w|, from anchor_weights_kernel). All weights
// 0: G is 0 anyway. The approximate division (2 ulp) scales G' and is undone by β at the end; an
// exact one would be a call that costs the kernel a stack frame.
__device__ __forceinline__ float coefficient_scale(const closs_contrastive_launch &job, float beta) {
    return beta > 0.0f ? __fdividef(job.inv_temperature, beta) : job.inv_temperature;
}

// An anchor's terms of G': its factor b_i·σ or w_i·σ, lse_i·log2 e, and a_i·σ for the positives'
// fold (NT-Xent: (a_i + a_partner)·σ, the partner being its only positive, whose key is its index).
struct AnchorTerms {
    float f, l, a;
};
__device__ __forceinline__ AnchorTerms anchor_terms(const closs_contrastive_launch &job, const LaneAnchor &anchor,
                                                    float sigma) {
    const int64_t i = anchor.i;
    if (i >= job.rows) return {0.0f, 0.0f, 0.0f};
    const float a = job.supcon ? job.anchor_a[i] : job.anchor_a[i] + job.anchor_a[anchor.key];
    return {job.softmax_factor[i] * sigma, job.lse[i] * kLog2e, a * sigma};
}

// A column's terms of G': r_j, its factor (fixed shift: b_j·σ·r_j; online: w_j·σ), lse_j·log2 e,
// a_j·σ (SupCon; NT-Xent's is in the anchor's) and its key; zeros and no key past M.
struct ColumnTerms {
    float r, f, l, a;
    int key;
};
template <bool kFixed>
__device__ __forceinline__ ColumnTerms column_terms(const closs_contrastive_launch &job, int64_t j, float sigma) {
    if (j >= job.rows) return {0.0f, 0.0f, 0.0f, 0.0f, column_key(job, j)};
    const float r = job.inv_norm[j], f = job.softmax_factor[j] * sigma;
    return {r, kFixed ? f * r : f, job.lse[j] * kLog2e, job.supcon ? job.anchor_a[j] * sigma : 0.0f,
            column_key(job, j)};
}

} // namespace
} // namespace closs
