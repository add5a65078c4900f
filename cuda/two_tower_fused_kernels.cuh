// The FUSED path's walks for CLIP and SigLIP (two_tower_fused.cu has the launch sequence; the math
// is at the top of two_tower_math.h): a block owns a tile of anchor rows of one tower and walks
// the rows of the other tower in 64-row column tiles, recomputing c = â·b̂ tile by tile in
// registers. No N × (N + K) matrix is ever stored. A header of its own so that
// tests/test_two_tower_kernels.cpp runs these very kernels on the CPU harness.
//
// Tile schedule. 256 threads form 16 row groups (ty) × 16 lanes (tx): thread (ty, tx) holds rows
// ty + 16p of the anchor tile and columns tx + 16q (q < 4) of each 64-column tile, so column j of
// every tile is always handled by lane j mod 16, in increasing j. D goes through shared memory in
// 16-column slices; each product is a chain of fmaf over k in increasing order (the same bits
// whichever tower walks: fmaf(a, b, acc) = fmaf(b, a, acc)).
//   forward_walk_kernel   64 anchor rows a block. CLIP: each anchor's online log-sum-exp over
//                         its columns but its partner, merged over the 16 lanes by a butterfly
//                         (n_i walking a over b; m_j walking b over a). SigLIP: the sum of
//                         softplus(x) over the off-diagonal columns (the pair's own term is
//                         pair_loss_kernel's).
//   backward_walk_kernel  kRows anchor rows a block (64 for D ≤ 256, 32 for D ≤ 512) and their
//                         gradient rows in registers (kRows·kMaxDim/256 floats a thread): per
//                         column tile, c again, G off the diagonal into shared memory, then
//                         dẑ_rows += G·(the tile's rows), 16 (8 for D ≤ 512) at a time; last the
//                         pair's own term (G_ii·partner), the factor s, the normalisation's
//                         backward and the store in the input dtype. Walking a, it also sums
//                         each row's shares of ∂/∂s (Σ_j G_ij·c_ij) and ∂/∂β (Σ_j G_ij), and
//                         for a SigLIP forward its loss terms, which saves SigLIP's forward walk.
//                         Walking b (b's rows as anchors, the transposed walk) gives ∂/∂b without
//                         atomics: every gradient row has one owner and one order of terms.
// Which columns a walk meets (two_tower_fused.cu): CLIP walking a, every row of b, or only the
// extra negatives with in_batch_negatives = 0; walking b, every row of a (for a partner with
// in_batch_negatives = 0, none: its only term is the pair's own). SigLIP: all of the other tower.
// The diagonal (column index = anchor index: only a pair has the same index in both towers) is
// left out of the tile loop and handled per row.
#pragma once

#include <stdint.h>

#include <type_traits>

#include "two_tower_kernels.cuh"

namespace closs {
namespace {

constexpr int kTtTile = 64;     // columns per tile; anchor rows of the forward's tiles
constexpr int kTtLanes = 16;    // lanes of a row group: a tile's columns tx + 16q
constexpr int kTtSlice = 16;    // columns of D per shared-memory stage
constexpr int kTtThreads = 256; // 16 row groups of 16 lanes
constexpr int kTtColumnsPerThread = kTtTile / kTtLanes;
static_assert(kTtThreads / kTtLanes == 16 && kTtLanes <= kWarpSize && kWarpSize % kTtLanes == 0,
              "16 row groups, each within a warp");

// The D-slices of the tile: the anchors' kRows rows and the 64 columns' rows, padded by one column
// so that the slice stores (consecutive threads, consecutive k) hit distinct banks.
template <int kRows> struct TwoTowerTileShared {
    float rows[kTtSlice][kRows + 1];
    float cols[kTtSlice][kTtTile + 1];
};

// c[p][q] = (anchor i0 + ty + 16p)·(column j0 + tx + 16q), each a chain of fmaf over k = 0..D−1.
// Every thread of the block must call it (it synchronises); shared memory is free again on return.
template <int kRows, typename T>
__device__ __forceinline__ void
two_tower_tile(const Tower<T> &anchors, const Tower<T> &columns, int64_t i0, int64_t j0,
               TwoTowerTileShared<kRows> &shared, float (&c)[kRows / 16][kTtColumnsPerThread]) {
    constexpr int kRowsPerThread = kRows / 16;
    const int tx = threadIdx.x % kTtLanes, ty = threadIdx.x / kTtLanes;
#pragma unroll
    for (int p = 0; p < kRowsPerThread; ++p)
#pragma unroll
        for (int q = 0; q < kTtColumnsPerThread; ++q) c[p][q] = 0.0f;
    for (int64_t k0 = 0; k0 < anchors.dim; k0 += kTtSlice) {
        for (int e = threadIdx.x; e < kTtSlice * kTtTile; e += kTtThreads) {
            const int r = e / kTtSlice, k = e % kTtSlice;
            if (r < kRows) shared.rows[k][r] = anchors.unit(i0 + r, k0 + k);
            shared.cols[k][r] = columns.unit(j0 + r, k0 + k);
        }
        __syncthreads();
#pragma unroll
        for (int k = 0; k < kTtSlice; ++k) {
            float a[kRowsPerThread], b[kTtColumnsPerThread];
#pragma unroll
            for (int p = 0; p < kRowsPerThread; ++p) a[p] = shared.rows[k][ty + kTtLanes * p];
#pragma unroll
            for (int q = 0; q < kTtColumnsPerThread; ++q) b[q] = shared.cols[k][tx + kTtLanes * q];
#pragma unroll
            for (int p = 0; p < kRowsPerThread; ++p)
#pragma unroll
                for (int q = 0; q < kTtColumnsPerThread; ++q) c[p][q] = fmaf(a[p], b[q], c[p][q]);
        }
        __syncthreads();
    }
}

// The 16 lanes of a row group are one half-warp; offsets below 16 stay inside it.
__device__ __forceinline__ float row_group_sum(float value) {
#pragma unroll
    for (int offset = kTtLanes / 2; offset > 0; offset >>= 1)
        value += __shfl_xor_sync(kFullMask, value, offset);
    return value;
}

__device__ __forceinline__ closs_lse_partial row_group_merge(closs_lse_partial value) {
#pragma unroll
    for (int offset = kTtLanes / 2; offset > 0; offset >>= 1) {
        const closs_lse_partial other = {__shfl_xor_sync(kFullMask, value.max, offset),
                                         __shfl_xor_sync(kFullMask, value.sum, offset)};
        value = closs_tt_lse_merge(value, other);
    }
    return value;
}

// The towers of a walk: the anchors' and the columns'.
template <typename T>
__device__ __forceinline__ void walk_towers(const closs_two_tower_launch &job,
                                            const TwoTowerWalk &walk, Tower<T> &anchors,
                                            Tower<T> &columns) {
    anchors = walk.anchors_are_a ? tower_a<T>(job) : tower_b<T>(job);
    columns = walk.anchors_are_a ? tower_b<T>(job) : tower_a<T>(job);
}

// ---- forward -----------------------------------------------------------------------------------

template <typename T, bool kSiglip>
__global__ void __launch_bounds__(kTtThreads)
    forward_walk_kernel(const closs_two_tower_launch job, const TwoTowerWalk walk) {
    __shared__ TwoTowerTileShared<kTtTile> shared;
    constexpr int kRowsPerThread = kTtTile / 16;
    const int tx = threadIdx.x % kTtLanes, ty = threadIdx.x / kTtLanes;
    const int64_t i0 = walk.anchor_begin + (int64_t)blockIdx.x * kTtTile;
    const float s = logit_scale_of(job), beta = logit_bias_of(job);
    Tower<T> anchors, columns;
    walk_towers(job, walk, anchors, columns);
    closs_lse_partial lse[kRowsPerThread];
    float loss[kRowsPerThread];
#pragma unroll
    for (int p = 0; p < kRowsPerThread; ++p) {
        lse[p] = {-INFINITY, 0.0f};
        loss[p] = 0.0f;
    }
    for (int64_t j0 = walk.column_begin; j0 < walk.column_end; j0 += kTtTile) {
        float c[kRowsPerThread][kTtColumnsPerThread];
        two_tower_tile<kTtTile>(anchors, columns, i0, j0, shared, c);
#pragma unroll
        for (int p = 0; p < kRowsPerThread; ++p)
#pragma unroll
            for (int q = 0; q < kTtColumnsPerThread; ++q) {
                const int64_t i = i0 + ty + kTtLanes * p, j = j0 + tx + kTtLanes * q;
                if (j >= walk.column_end || j == i) continue;
                if constexpr (kSiglip) loss[p] += closs_tt_softplus(fmaf(s, c[p][q], beta));
                else lse[p] = closs_tt_lse_push(lse[p], s * c[p][q]);
            }
    }
#pragma unroll
    for (int p = 0; p < kRowsPerThread; ++p) {
        float value;
        if constexpr (kSiglip) value = row_group_sum(loss[p]);
        else value = closs_tt_lse_value(row_group_merge(lse[p]));
        const int64_t i = i0 + ty + kTtLanes * p;
        if (tx == 0 && i < walk.anchor_end) walk.out[i - walk.anchor_begin] = value;
    }
}

// ---- backward ----------------------------------------------------------------------------------

// Rows of the column tile staged at a time for dẑ += G·rows: 16 KB of shared memory.
template <int kMaxDim> constexpr int kTtStagedRows = kMaxDim <= 256 ? 16 : 8;
// Blocks per SM the backward is compiled for: 2 (≤ 128 registers) while its gradient rows fit,
// 1 for D > 128 (kRows·kMaxDim/256 = 64 gradient floats a thread leave no room under 128).
template <int kMaxDim> constexpr int kTtBackwardBlocksPerSm = kMaxDim <= 128 ? 2 : 1;

template <typename T, bool kSiglip, int kRows, int kMaxDim>
__global__ void __launch_bounds__(kTtThreads, kTtBackwardBlocksPerSm<kMaxDim>)
    backward_walk_kernel(const closs_two_tower_launch job, const TwoTowerWalk walk) {
    constexpr int kRowsPerThread = kRows / 16;
    constexpr int kDimPerThread = kMaxDim / kTtLanes; // gradient columns tx + 16q of each row
    constexpr int kStaged = kTtStagedRows<kMaxDim>;
    __shared__ TwoTowerTileShared<kRows> shared;
    __shared__ float coefficients[kRows][kTtTile + 1];
    __shared__ float staged[kStaged][kMaxDim];
    __shared__ float column_factor[kTtTile], column_lse[kTtTile];
    const int tx = threadIdx.x % kTtLanes, ty = threadIdx.x / kTtLanes;
    const int64_t i0 = walk.anchor_begin + (int64_t)blockIdx.x * kRows;
    const float s = logit_scale_of(job), beta = logit_bias_of(job);
    const bool losses = kSiglip && walk.shares && job.forward;
    Tower<T> anchors, columns;
    walk_towers(job, walk, anchors, columns);

    float row_factor[kRowsPerThread], row_lse[kRowsPerThread];
    float scale_share[kRowsPerThread], bias_share[kRowsPerThread], loss[kRowsPerThread];
    float grad[kRowsPerThread][kDimPerThread];
#pragma unroll
    for (int p = 0; p < kRowsPerThread; ++p) {
        const int64_t i = i0 + ty + kTtLanes * p;
        if (kSiglip && !walk.anchors_are_a)
            row_factor[p] = 0.0f, row_lse[p] = INFINITY; // w is the columns'
        else g_factors(job, walk.anchors_are_a, i, &row_factor[p], &row_lse[p]);
        scale_share[p] = bias_share[p] = loss[p] = 0.0f;
#pragma unroll
        for (int q = 0; q < kDimPerThread; ++q) grad[p][q] = 0.0f;
    }

    for (int64_t j0 = walk.column_begin; j0 < walk.column_end; j0 += kTtTile) {
        // Published by the tile's first barrier; the previous tile's readers have all passed the
        // barrier after the coefficients.
        if (threadIdx.x < kTtTile) {
            const int64_t j = j0 + threadIdx.x;
            g_factors(job, !walk.anchors_are_a, j < walk.column_end ? j : INT64_MAX,
                      &column_factor[threadIdx.x], &column_lse[threadIdx.x]);
        }
        float c[kRowsPerThread][kTtColumnsPerThread];
        two_tower_tile<kRows>(anchors, columns, i0, j0, shared, c);
#pragma unroll
        for (int p = 0; p < kRowsPerThread; ++p)
#pragma unroll
            for (int q = 0; q < kTtColumnsPerThread; ++q) {
                const int col = tx + kTtLanes * q;
                const int64_t i = i0 + ty + kTtLanes * p, j = j0 + col;
                float g = 0.0f;
                if (j < walk.column_end && j != i) {
                    if constexpr (kSiglip) {
                        const float w = walk.anchors_are_a ? row_factor[p] : column_factor[col];
                        const closs_tt_siglip_element element =
                            closs_tt_siglip(fmaf(s, c[p][q], beta), w, 0);
                        g = element.coefficient;
                        if (losses) loss[p] += element.loss;
                        bias_share[p] += g;
                    } else {
                        g = closs_tt_clip_coefficient(s * c[p][q], row_factor[p], row_lse[p],
                                                      column_factor[col], column_lse[col]);
                    }
                    scale_share[p] = fmaf(g, c[p][q], scale_share[p]);
                }
                coefficients[ty + kTtLanes * p][col] = g;
            }
        __syncthreads();
        // dẑ_rows += G·(the tile's rows), kStaged rows at a time; past the last column G is 0.
        for (int js = 0; js < kTtTile && j0 + js < walk.column_end; js += kStaged) {
            for (int e = threadIdx.x; e < kStaged * kMaxDim; e += kTtThreads) {
                const int jj = e / kMaxDim, col = e % kMaxDim;
                staged[jj][col] = columns.unit(j0 + js + jj, col);
            }
            __syncthreads();
#pragma unroll 4
            for (int jj = 0; jj < kStaged; ++jj) {
#pragma unroll
                for (int p = 0; p < kRowsPerThread; ++p) {
                    const float g = coefficients[ty + kTtLanes * p][js + jj];
#pragma unroll
                    for (int q = 0; q < kDimPerThread; ++q)
                        grad[p][q] = fmaf(g, staged[jj][tx + kTtLanes * q], grad[p][q]);
                }
            }
            __syncthreads();
        }
    }

    // The pair's own term, s, the normalisation's backward and the store. Rows past the tower
    // compute on its row 0 (every lane must take part in the butterflies); rows past the walk's
    // anchors store nothing.
#pragma unroll
    for (int p = 0; p < kRowsPerThread; ++p) {
        const int64_t i = i0 + ty + kTtLanes * p;
        const int64_t row = i < anchors.rows ? i : 0;
        float diagonal = 0.0f, cosine = 0.0f; // G_ii and c_ii
        if (row < job.pairs) { // a pair: its partner has the same index in the other tower
            cosine = job.positives[row];
            diagonal = diagonal_coefficient(job, row, fmaf(s, cosine, beta));
#pragma unroll
            for (int q = 0; q < kDimPerThread; ++q)
                grad[p][q] = fmaf(diagonal, columns.unit(row, tx + kTtLanes * q), grad[p][q]);
        }
        float radial = 0.0f;
#pragma unroll
        for (int q = 0; q < kDimPerThread; ++q) {
            grad[p][q] *= s;
            radial = fmaf(anchors.unit(row, tx + kTtLanes * q), grad[p][q], radial);
        }
        radial = row_group_sum(radial);
        if (walk.shares) {
            scale_share[p] = row_group_sum(scale_share[p]);
            if constexpr (kSiglip) {
                bias_share[p] = row_group_sum(bias_share[p]);
                loss[p] = row_group_sum(loss[p]);
            }
        }
        if (i >= walk.anchor_end) continue;
        if (walk.shares && tx == 0) { // the lanes' sums, then the pair's own term (once)
            job.scale_share[i] = fmaf(diagonal, cosine, scale_share[p]);
            if constexpr (kSiglip) {
                job.bias_share[i] = bias_share[p] + diagonal;
                if (losses) job.row_loss[i] = loss[p]; // the pair's own term: pair_loss_kernel
            }
        }
        if (!walk.grad) continue;
        const float norm = (walk.anchors_are_a ? job.norms_a : job.norms_b)[i];
        T *out = static_cast<T *>(walk.grad) + (i - walk.anchor_begin) * walk.grad_ld;
#pragma unroll
        for (int q = 0; q < kDimPerThread; ++q) {
            const int64_t col = tx + kTtLanes * q;
            if (col < job.dim)
                out[col] = from_float<T>(
                    unembed(grad[p][q], anchors.unit(i, col), radial, norm, job.normalize));
        }
    }
}

// Calls variant(rows, max_dim) (std::integral_constant arguments) with the backward's variant for
// D: 64 anchor rows with D ≤ 64, 128 or 256 gradient columns in registers, 32 rows with D ≤ 512.
template <typename Variant> auto with_backward_variant(int64_t dim, Variant variant) {
    using Rows64 = std::integral_constant<int, 64>;
    if (dim <= 64) return variant(Rows64(), std::integral_constant<int, 64>());
    if (dim <= 128) return variant(Rows64(), std::integral_constant<int, 128>());
    if (dim <= 256) return variant(Rows64(), std::integral_constant<int, 256>());
    return variant(std::integral_constant<int, 32>(),
                   std::integral_constant<int, CLOSS_TWO_TOWER_FUSED_MAX_DIM>());
}

} // namespace
} // namespace closs
