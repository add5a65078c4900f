// The fused path's kernels (contrastive_fused.cu has the math, the launch shape and the C entry
// points): the similarity tiles, the forward's log-sum-exp, positive sums and loss, the backward's
// row-stationary dz with the positives folded into G (the class numbering both paths share is
// contrastive_classes.cuh).
// A header of its own so that tests/test_contrastive_kernels.cpp can run these very kernels on the
// CPU, a thread per CUDA thread.
#pragma once

#include <stdint.h>

#include "contrastive_kernels.cuh"
#include "fused_math.h"

namespace closs {
namespace {

constexpr int kTile = CLOSS_FUSED_TILE;
constexpr int kLanes = CLOSS_FUSED_LANES;
constexpr int kSlice = CLOSS_FUSED_SLICE;
constexpr int kThreads = CLOSS_FUSED_THREADS;
constexpr int kPerThread = kTile / kLanes; // rows and columns of a tile per thread
static_assert(kThreads / kLanes * kPerThread == kTile, "the row groups cover the tile");
static_assert(kLanes <= kWarpSize && kWarpSize % kLanes == 0, "a row group is within a warp");

// ẑ(row, col), 0 outside the M × D matrix (the tiles' padding: 0·0 adds nothing).
template <typename T>
__device__ __forceinline__ float unit_element(const closs_contrastive_launch &job, int64_t row, int64_t col) {
    if (row >= job.rows || col >= job.dim) return 0.0f;
    return to_float(static_cast<const T *>(job.z)[row * job.ld + col]) * job.inv_norm[row];
}

// Padded by one column: the slice stores (consecutive threads, consecutive k) hit distinct banks.
struct TileShared {
    float rows[kSlice][kTile + 1];
    float cols[kSlice][kTile + 1];
};

// s[p][q] = ẑ_{i0+ty+16p} · ẑ_{j0+tx+16q}, each a chain of fmaf over k = 0..D−1 in order. Every
// thread of the block must call it (it synchronises); shared memory is free again on return.
template <typename T>
__device__ __forceinline__ void similarity_tile(const closs_contrastive_launch &job, int64_t i0, int64_t j0,
                                                TileShared &shared, float (&s)[kPerThread][kPerThread]) {
    const int tx = threadIdx.x % kLanes, ty = threadIdx.x / kLanes;
#pragma unroll
    for (int p = 0; p < kPerThread; ++p)
#pragma unroll
        for (int q = 0; q < kPerThread; ++q) s[p][q] = 0.0f;
    for (int64_t k0 = 0; k0 < job.dim; k0 += kSlice) {
        for (int e = threadIdx.x; e < kSlice * kTile; e += kThreads) {
            const int r = e / kSlice, k = e % kSlice;
            shared.rows[k][r] = unit_element<T>(job, i0 + r, k0 + k);
            shared.cols[k][r] = unit_element<T>(job, j0 + r, k0 + k);
        }
        __syncthreads();
#pragma unroll
        for (int k = 0; k < kSlice; ++k) {
            float a[kPerThread], b[kPerThread];
#pragma unroll
            for (int p = 0; p < kPerThread; ++p) a[p] = shared.rows[k][ty + kLanes * p];
#pragma unroll
            for (int q = 0; q < kPerThread; ++q) b[q] = shared.cols[k][tx + kLanes * q];
#pragma unroll
            for (int p = 0; p < kPerThread; ++p)
#pragma unroll
                for (int q = 0; q < kPerThread; ++q) s[p][q] = fmaf(a[p], b[q], s[p][q]);
        }
        __syncthreads();
    }
}

// The anchor's key (fused_math.h): a column j ≠ i is one of its positives when their keys agree.
__device__ __forceinline__ int anchor_key(const closs_contrastive_launch &job, int64_t i) {
    return closs_fm_row_key(job.supcon, i, job.rows, job.supcon && i < job.rows ? job.class_of[i] : -1);
}

// Computes the tile at (i0, j0) and calls visit(p, q, pair, positive, x) for each of the thread's
// elements (row i0 + ty + 16p, column j0 + tx + 16q): pair is j < M and j ≠ i, positive that j is
// also in P(i), x = s_ij/τ. row_key[p] is anchor_key() of row i0 + ty + 16p.
template <typename T, typename Visit>
__device__ __forceinline__ void visit_tile(const closs_contrastive_launch &job, int64_t i0, int64_t j0,
                                          const int (&row_key)[kPerThread], TileShared &shared, Visit visit) {
    const int tx = threadIdx.x % kLanes, ty = threadIdx.x / kLanes;
    float s[kPerThread][kPerThread];
    int column_key[kPerThread];
#pragma unroll
    for (int q = 0; q < kPerThread; ++q) {
        const int64_t j = j0 + tx + kLanes * q;
        column_key[q] = j < job.rows ? closs_fm_column_key(job.supcon, j, job.supcon ? job.class_of[j] : 0) : -3;
    }
    similarity_tile<T>(job, i0, j0, shared, s);
#pragma unroll
    for (int p = 0; p < kPerThread; ++p)
#pragma unroll
        for (int q = 0; q < kPerThread; ++q) {
            const int64_t i = i0 + ty + kLanes * p, j = j0 + tx + kLanes * q;
            const bool pair = j < job.rows && j != i;
            visit(p, q, pair, pair && column_key[q] == row_key[p], s[p][q] * job.inv_temperature);
        }
}

// The 16 lanes of a row group are one half-warp; offsets below 16 stay inside it.
__device__ __forceinline__ float lanes_sum(float value) {
#pragma unroll
    for (int offset = kLanes / 2; offset > 0; offset >>= 1) value += __shfl_xor_sync(kFullMask, value, offset);
    return value;
}

__device__ __forceinline__ closs_lse_partial lanes_merge(closs_lse_partial value) {
#pragma unroll
    for (int offset = kLanes / 2; offset > 0; offset >>= 1) {
        closs_lse_partial other = {__shfl_xor_sync(kFullMask, value.max, offset),
                                   __shfl_xor_sync(kFullMask, value.sum, offset)};
        value = closs_cm_lse_merge(value, other);
    }
    return value;
}

// ---- forward -----------------------------------------------------------------------------------

template <typename T, bool kFixed>
__global__ void __launch_bounds__(kThreads) forward_kernel(const closs_contrastive_launch job) {
    __shared__ TileShared shared;
    const int tx = threadIdx.x % kLanes, ty = threadIdx.x / kLanes;
    const int64_t i0 = job.lse_begin + (int64_t)blockIdx.x * kTile;
    const float shift = job.inv_temperature;
    float sum[kPerThread], positive_sum[kPerThread];
    closs_lse_partial partial[kPerThread];
    int row_key[kPerThread];
#pragma unroll
    for (int p = 0; p < kPerThread; ++p) {
        sum[p] = positive_sum[p] = 0.0f;
        partial[p] = closs_cm_lse_empty();
        row_key[p] = anchor_key(job, i0 + ty + kLanes * p);
    }
    for (int64_t j0 = 0; j0 < job.rows; j0 += kTile)
        visit_tile<T>(job, i0, j0, row_key, shared, [&](int p, int, bool pair, bool positive, float x) {
            if (!pair) return;
            if constexpr (kFixed) sum[p] = closs_fm_push_fixed(sum[p], x, shift);
            else partial[p] = closs_fm_push_online(partial[p], x);
            if (positive) positive_sum[p] += x;
        });
    const bool nonfinite = *job.nonfinite != 0;
#pragma unroll
    for (int p = 0; p < kPerThread; ++p) {
        float lse;
        if constexpr (kFixed) lse = closs_fm_lse_fixed(lanes_sum(sum[p]), shift);
        else lse = closs_cm_lse_value(lanes_merge(partial[p]));
        const float positives = lanes_sum(positive_sum[p]);
        const int64_t i = i0 + ty + kLanes * p;
        if (tx == 0 && i < job.lse_begin + job.lse_count) {
            job.lse[i - job.lse_begin] = nonfinite ? __int_as_float(0x7fc00000) : lse;
            job.row_loss[i] = positives; // anchor_loss_kernel turns it into ℓ_i
        }
    }
}

// ℓ_i from lse_i and Σ_{k∈P(i)} x_ik, which the similarity pass left in row_loss[i] (every kernel
// family sums it in its tiles); one thread per anchor of the row range.
__global__ void anchor_loss_kernel(const closs_contrastive_launch job) {
    for (int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; r < job.row_count;
         r += (int64_t)gridDim.x * blockDim.x) {
        const int64_t i = job.row_begin + r;
        float loss = closs_cm_row_loss(job.lse[i - job.lse_begin], job.row_loss[i], job.positives[i], job.scale);
        if (*job.nonfinite) loss = __int_as_float(0x7fc00000); // every anchor (contract)
        job.row_loss[i] = loss;
        if (job.reduction == CLOSS_REDUCTION_NONE) job.loss[r] = loss;
    }
}

// ---- backward ----------------------------------------------------------------------------------

// The anchor's factor in G: b_i with the fixed shift, w_i with the online maximum.
template <bool kFixed>
__device__ __forceinline__ float softmax_factor(const closs_contrastive_launch &job, int64_t i) {
    const float w = job.weights[i];
    return kFixed ? closs_fm_softmax_weight(w, job.lse[i], job.inv_temperature) : w;
}

template <typename T, bool kFixed, int kMaxDim>
__global__ void __launch_bounds__(kThreads) backward_kernel(const closs_contrastive_launch job) {
    constexpr int kDimPerThread = kMaxDim / kLanes; // dẑ columns tx + 16q of each of the 4 rows
    __shared__ TileShared shared;
    __shared__ float coefficients[kTile][kTile + 1];
    __shared__ float units[kSlice][kMaxDim];
    __shared__ float column_factor[kTile], column_lse[kTile], column_a[kTile];
    const int tx = threadIdx.x % kLanes, ty = threadIdx.x / kLanes;
    const int64_t i0 = job.row_begin + (int64_t)blockIdx.x * kTile, row_end = job.row_begin + job.row_count;
    const float inv_t = job.inv_temperature, shift = inv_t;

    float row_factor[kPerThread], row_lse[kPerThread], row_a[kPerThread];
    int row_key[kPerThread];
#pragma unroll
    for (int p = 0; p < kPerThread; ++p) {
        const int64_t i = i0 + ty + kLanes * p;
        row_factor[p] = i < job.rows ? softmax_factor<kFixed>(job, i) : 0.0f;
        row_lse[p] = i < job.rows ? job.lse[i] : 0.0f;
        row_a[p] = i < job.rows ? job.anchor_a[i] : 0.0f;
        row_key[p] = anchor_key(job, i);
    }
    float grad[kPerThread][kDimPerThread];
#pragma unroll
    for (int p = 0; p < kPerThread; ++p)
#pragma unroll
        for (int q = 0; q < kDimPerThread; ++q) grad[p][q] = 0.0f;

    for (int64_t j0 = 0; j0 < job.rows; j0 += kTile) {
        // Published by similarity_tile's first barrier; the previous tile's readers have all
        // passed the barrier after the coefficients.
        if (threadIdx.x < kTile) {
            const int64_t j = j0 + threadIdx.x;
            column_factor[threadIdx.x] = j < job.rows ? softmax_factor<kFixed>(job, j) : 0.0f;
            column_lse[threadIdx.x] = j < job.rows ? job.lse[j] : 0.0f;
            column_a[threadIdx.x] = j < job.rows ? job.anchor_a[j] : 0.0f;
        }
        visit_tile<T>(job, i0, j0, row_key, shared, [&](int p, int q, bool pair, bool positive, float x) {
            const int col = tx + kLanes * q;
            const float fold = positive ? row_a[p] + column_a[col] : 0.0f;
            float g = 0.0f;
            if (pair)
                g = kFixed ? closs_fm_coefficient_fixed(x, shift, row_factor[p], column_factor[col], fold, inv_t)
                           : closs_fm_coefficient_online(x, row_lse[p], column_lse[col], row_factor[p],
                                                         column_factor[col], fold, inv_t);
            coefficients[ty + kLanes * p][col] = g;
        });
        __syncthreads();
        // dẑ_rows += G·ẑ_cols, 16 column rows at a time; past the last row G and ẑ are 0.
        for (int js = 0; js < kTile && j0 + js < job.rows; js += kSlice) {
            for (int e = threadIdx.x; e < kSlice * kMaxDim; e += kThreads) {
                const int jj = e / kMaxDim, c = e % kMaxDim;
                units[jj][c] = unit_element<T>(job, j0 + js + jj, c);
            }
            __syncthreads();
#pragma unroll 4
            for (int jj = 0; jj < kSlice; ++jj) {
#pragma unroll
                for (int p = 0; p < kPerThread; ++p) {
                    const float g = coefficients[ty + kLanes * p][js + jj];
#pragma unroll
                    for (int q = 0; q < kDimPerThread; ++q) grad[p][q] = fmaf(g, units[jj][tx + kLanes * q], grad[p][q]);
                }
            }
            __syncthreads();
        }
    }

    // The normalisation's backward and the store. Rows past M compute on row 0 (every lane must
    // take part in the butterfly); rows past the range store nothing.
#pragma unroll
    for (int p = 0; p < kPerThread; ++p) {
        const int64_t i = i0 + ty + kLanes * p;
        const int64_t row = i < job.rows ? i : 0;
        float radial = 0.0f;
#pragma unroll
        for (int q = 0; q < kDimPerThread; ++q) {
            const int64_t c = tx + kLanes * q;
            if (c >= job.dim) continue;
            radial = fmaf(unit_element<T>(job, row, c), grad[p][q], radial);
        }
        radial = lanes_sum(radial);
        if (i >= row_end) continue;
        const float norm = job.norms[i];
        T *out = static_cast<T *>(job.grad) + (i - job.row_begin) * job.grad_ld;
#pragma unroll
        for (int q = 0; q < kDimPerThread; ++q) {
            const int64_t c = tx + kLanes * q;
            if (c >= job.dim) continue;
            out[c] = from_float<T>(closs_fm_unnormalize(grad[p][q], unit_element<T>(job, i, c), radial, norm, job.normalize));
        }
    }
}

} // namespace
} // namespace closs
