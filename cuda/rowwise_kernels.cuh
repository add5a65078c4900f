// The row-wise kernels (pair, triplet, cosine), included by rowwise.cu and, to run the same code
// on the CPU, by tests/test_rowwise_kernels.cpp.
//
// Math (docs/contract.md; per-row formulas in rowwise_math.h): a row's loss depends on its two or
// three input rows x0, x1, x2 only through a few dot products x_j·x_k and squared distances
// ‖x_j − x_k‖², and its gradient is a linear combination of those rows and their differences.
// Each kernel is compiled for one loss, distance and swap (Loss below): it reduces only the
// statistics that loss reads (closs_rm_needs: one for pair with the Euclidean distance, two or
// three for triplet, three to six with the cosine), and writes only the gradient terms that can
// be non-zero. No run-time choice of loss, no run-time index into per-row arrays: nothing in local
// memory (tests/sass_rules/rowwise.txt checks the compiled code).
//
// Schedule: a row group of `lanes` lanes (a power of two, 1 … 32) per row, 32/lanes rows per warp
// at a time, 8 warps per block, rows in a grid-stride loop. A lane holds a few chunks
// (chunks_for) of VEC elements per input: VEC·sizeof(T) = 16 bytes when every row is 16-byte
// aligned and D a multiple of VEC, else VEC = 1. Chunk c of lane m covers columns (c·lanes + m)·VEC
// on, so a row of up to lanes × chunks × VEC columns is read once, kept in registers through the
// reduction (butterflies within the group) and the per-row math, then turned into gradients. The
// launcher picks the fewest lanes that cover D (D = 128: 8 lanes in every dtype, so 4 rows per
// warp, each lane loading 16 bytes per chunk), which also spreads the per-row math over the most
// rows. Longer rows (D > 512 at 16-byte chunks) are read in spans of 32 lanes' chunks and read
// again for the gradients (from L2: a few KB per row).
//
// A non-finite input reaches every statistic its row reads (each input appears in one of them), so
// a row is NaN exactly when one of its statistics is not finite (contract: NaN even where a hinge
// would close over it); finite inputs so large that a statistic overflows float count as
// non-finite too.
//
// Losses: per row for NONE; otherwise each warp sums its rows, each block its warps (in order)
// into one partial, and a one-thread kernel sums the partials in block order, in double. Fixed
// grid, fixed layout for a given D and dtype, no atomics: the same bits on every run.
#pragma once

#include <stdint.h>

#include "common.cuh"
#include "launch.h"
#include "rowwise_math.h"

namespace closs {
namespace rowwise {

constexpr int kWarpsPerBlock = CLOSS_ROWWISE_THREADS / kWarpSize;
// Chunks of VEC elements per lane and input held in registers: 64 bytes of f32, 32 of f16/bf16
// (whose values, widened to float, take twice the registers), or 4 elements without vectors.
template <typename T, int VEC> __host__ __device__ constexpr int chunks_for() { return VEC > 1 && sizeof(T) == 2 ? 2 : 4; }

// One loss, distance and swap, fixed at compile time.
template <closs_row_kind KIND, closs_distance_t DISTANCE, int SWAP> struct Loss {
    static constexpr closs_row_kind kKind = KIND;
    static constexpr closs_distance_t kDistance = DISTANCE;
    static constexpr int kSwap = SWAP;
    static constexpr int kInputs = KIND == CLOSS_ROW_TRIPLET ? 3 : 2;
    static constexpr unsigned kNeeds = closs_rm_needs(KIND, DISTANCE, SWAP);
    __host__ __device__ static constexpr bool dot(int j, int k) { return (kNeeds & closs_rm_dot_bit(j, k)) != 0; }
    __host__ __device__ static constexpr bool sqdiff(int p) { return (kNeeds & closs_rm_sqdiff_bit(p)) != 0; }
};

// The rows of pair p: (0,1), (0,2), (1,2).
__host__ __device__ constexpr int first_of(int p) { return p == 2 ? 1 : 0; }
__host__ __device__ constexpr int second_of(int p) { return p == 0 ? 1 : 2; }

// VEC consecutive elements, loaded and stored as one access (16 bytes when VEC·sizeof(T) = 16).
template <typename T, int VEC> struct alignas(sizeof(T) * VEC) Chunk {
    T value[VEC];
};

// The sum over a row group of `lanes` lanes (aligned groups of a power of two), the same bits in
// every lane of the group: a butterfly of fixed order, offsets lanes/2 … 1.
// Every lane shuffles at every step (no branch around a shuffle: the warp stays converged) and
// keeps the partner's value only where the step belongs to the sum.
__device__ __forceinline__ float group_sum(float value, int lanes) {
#pragma unroll
    for (int offset = kWarpSize / 2; offset > 0; offset >>= 1) {
        const float other = __shfl_xor_sync(kFullMask, value, offset);
        if (offset < lanes) value += other;
    }
    return value;
}

// The sum over the groups of the warp of a value each group holds in all its lanes.
__device__ __forceinline__ float sum_over_groups(float value, int lanes) {
#pragma unroll
    for (int offset = kWarpSize / 2; offset > 0; offset >>= 1) {
        const float other = __shfl_xor_sync(kFullMask, value, offset);
        if (offset >= lanes) value += other;
    }
    return value;
}

__device__ __forceinline__ float load_label(const void *labels, closs_dtype_t dtype, int64_t row) {
    if (dtype == CLOSS_F16) return to_float(static_cast<const __half *>(labels)[row]);
    if (dtype == CLOSS_BF16) return to_float(static_cast<const __nv_bfloat16 *>(labels)[row]);
    return static_cast<const float *>(labels)[row];
}

// The factor that turns ∂ℓ_i into the gradient of the reduced loss (host/ref/ref_common.c).
__device__ __forceinline__ float row_weight(const closs_rowwise_launch &launch, int64_t row) {
    if (launch.reduction == CLOSS_REDUCTION_NONE) return launch.upstream ? launch.upstream[row] : 1.0f;
    const float upstream = launch.upstream ? launch.upstream[0] : 1.0f;
    return launch.reduction == CLOSS_REDUCTION_SUM ? upstream : upstream / (float)launch.rows;
}

// Where one lane's chunks of one row lie within a span: chunk c starts at column base + c·lanes·VEC,
// and the first `count` of them lie inside the row (none for an idle group). 32-bit counts and
// chunk-unit offsets keep the per-chunk address arithmetic to one instruction.
template <int VEC, int C> struct Slots {
    int64_t base;
    int lanes_log2, count;
    __device__ __forceinline__ Slots(int64_t span_start, int member, int lanes_log2, int64_t dim, bool active)
        : base(span_start + (int64_t)member * VEC), lanes_log2(lanes_log2) {
        constexpr int kVecLog2 = VEC == 8 ? 3 : VEC == 4 ? 2 : VEC == 2 ? 1 : 0;
        const int64_t remaining = dim - base, stride = (int64_t)VEC << lanes_log2;
        count = !active || remaining <= 0 ? 0
                : remaining >= C * stride ? C
                                          : (int)(remaining + stride - 1) >> (lanes_log2 + kVecLog2);
    }
    __device__ __forceinline__ int64_t chunk_index(int c) const { return (int64_t)c << lanes_log2; }
};

// Loads this lane's chunks of the row's inputs (zeros outside the row, or for an idle group).
template <typename T, class L, int VEC, int C>
__device__ __forceinline__ void load_chunks(const closs_rowwise_launch &launch, int64_t row, const Slots<VEC, C> &slots,
                                            Chunk<T, VEC> (&raw)[3][C]) {
#pragma unroll
    for (int k = 0; k < L::kInputs; ++k) {
        const auto *chunks = reinterpret_cast<const Chunk<T, VEC> *>(static_cast<const T *>(launch.x[k]) +
                                                                     row * launch.ld[k] + slots.base);
#pragma unroll
        for (int c = 0; c < C; ++c) {
            if (c < slots.count) {
                raw[k][c] = chunks[slots.chunk_index(c)];
            } else {
#pragma unroll
                for (int e = 0; e < VEC; ++e) raw[k][c].value[e] = from_float<T>(0.0f);
            }
        }
    }
}

template <typename T, class L, int VEC, int C>
__device__ __forceinline__ void widen(const Chunk<T, VEC> (&raw)[3][C], int c, float (&v)[3][VEC]) {
#pragma unroll
    for (int k = 0; k < L::kInputs; ++k)
#pragma unroll
        for (int e = 0; e < VEC; ++e) v[k][e] = to_float(raw[k][c].value[e]);
}

// Adds the chunks to the statistics the loss reads (zero chunks add nothing).
template <typename T, class L, int VEC, int C>
__device__ __forceinline__ void accumulate(const Chunk<T, VEC> (&raw)[3][C], closs_row_stats &s) {
#pragma unroll
    for (int c = 0; c < C; ++c) {
        float v[3][VEC];
        widen<T, L, VEC, C>(raw, c, v);
#pragma unroll
        for (int e = 0; e < VEC; ++e) {
#pragma unroll
            for (int j = 0; j < 3; ++j)
#pragma unroll
                for (int k = j; k < 3; ++k)
                    if (L::dot(j, k)) s.dot[j][k] = fmaf(v[j][e], v[k][e], s.dot[j][k]);
#pragma unroll
            for (int p = 0; p < 3; ++p)
                if (L::sqdiff(p)) {
                    const float difference = v[first_of(p)][e] - v[second_of(p)][e];
                    s.sqdiff[p] = fmaf(difference, difference, s.sqdiff[p]);
                }
        }
    }
}

// Sums the statistics over the row group; true when one of them is not finite.
template <class L> __device__ __forceinline__ bool reduce(closs_row_stats &s, int lanes) {
    bool nonfinite = false;
#pragma unroll
    for (int j = 0; j < 3; ++j)
#pragma unroll
        for (int k = j; k < 3; ++k)
            if (L::dot(j, k)) {
                s.dot[j][k] = s.dot[k][j] = group_sum(s.dot[j][k], lanes);
                nonfinite |= !isfinite(s.dot[j][k]);
            }
#pragma unroll
    for (int p = 0; p < 3; ++p)
        if (L::sqdiff(p)) {
            s.sqdiff[p] = group_sum(s.sqdiff[p], lanes);
            nonfinite |= !isfinite(s.sqdiff[p]);
        }
    return nonfinite;
}

// Writes this lane's chunks of every wanted gradient: only the terms the loss can make non-zero.
template <typename T, class L, int VEC, int C>
__device__ __forceinline__ void write_gradients(const closs_rowwise_launch &launch, int64_t row,
                                                const Slots<VEC, C> &slots, const Chunk<T, VEC> (&raw)[3][C],
                                                const closs_row_grad &g) {
#pragma unroll
    for (int c = 0; c < C; ++c) {
        if (c >= slots.count) continue;
        float v[3][VEC];
        widen<T, L, VEC, C>(raw, c, v);
#pragma unroll
        for (int k = 0; k < L::kInputs; ++k) {
            if (!launch.grad[k]) continue;
            float out[VEC];
#pragma unroll
            for (int e = 0; e < VEC; ++e) {
                float value = 0.0f;
#pragma unroll
                for (int j = 0; j < 3; ++j)
                    if (L::dot(j, k)) value = fmaf(g.self[k][j], v[j][e], value);
#pragma unroll
                for (int p = 0; p < 3; ++p)
                    if (L::sqdiff(p) && (k == first_of(p) || k == second_of(p)))
                        value = fmaf(g.diff[k][p], v[first_of(p)][e] - v[second_of(p)][e], value);
                out[e] = value;
            }
            store_floats<T, VEC>(static_cast<T *>(launch.grad[k]) + row * launch.grad_ld[k] + slots.base,
                                 slots.chunk_index(c), out);
        }
    }
}

// At least 2 blocks (16 warps) per SM: at most 128 registers.
template <typename T, class L, int VEC>
__global__ void __launch_bounds__(CLOSS_ROWWISE_THREADS, 2)
rowwise_kernel(const closs_rowwise_launch launch, int lanes_log2) {
    const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
    const int lanes = 1 << lanes_log2, rows_per_warp = kWarpSize >> lanes_log2;
    const int group = lane >> lanes_log2, member = lane & (lanes - 1);
    // One span: the columns the group's registers hold at once.
    constexpr int C = chunks_for<T, VEC>();
    const int64_t span = (int64_t)lanes * VEC * C;
    const bool one_span = launch.dim <= span;
    const int64_t row_step = (int64_t)gridDim.x * kWarpsPerBlock * rows_per_warp;
    const closs_row_params params = {L::kKind, L::kDistance, launch.params.margin, L::kSwap,
                                     launch.params.squared};
    const bool any_gradient = launch.grad[0] || launch.grad[1] || (L::kInputs == 3 && launch.grad[2]);
    float group_loss = 0.0f; // this group's rows, in row order (MEAN and SUM)

    for (int64_t first = ((int64_t)blockIdx.x * kWarpsPerBlock + warp) * rows_per_warp; first < launch.rows;
         first += row_step) {
        const int64_t row = first + group;
        const bool active = row < launch.rows; // the warp's last rows may not all exist
        // The first span straight, the others (rows longer than the registers hold) in a loop.
        Chunk<T, VEC> raw[3][C];
        closs_row_stats s = {};
        const Slots<VEC, C> first_span(0, member, lanes_log2, launch.dim, active);
        load_chunks<T, L, VEC, C>(launch, row, first_span, raw);
        accumulate<T, L, VEC, C>(raw, s);
        for (int64_t base = span; base < launch.dim; base += span) {
            const Slots<VEC, C> slots(base, member, lanes_log2, launch.dim, active);
            load_chunks<T, L, VEC, C>(launch, row, slots, raw);
            accumulate<T, L, VEC, C>(raw, s);
        }
        const bool nonfinite = reduce<L>(s, lanes);

        const float label = launch.y && active ? load_label(launch.y, launch.y_dtype, row) : 0.0f;
        closs_row_grad g = closs_row_loss_grad(&params, &s, label);
        const float row_loss = nonfinite ? __int_as_float(0x7fc00000) : g.loss;
        if (launch.loss && active) {
            if (launch.reduction == CLOSS_REDUCTION_NONE) {
                if (member == 0) launch.loss[row] = row_loss;
            } else {
                group_loss += row_loss;
            }
        }

        if (any_gradient && active) {
            const float weight = nonfinite ? __int_as_float(0x7fc00000) : row_weight(launch, row);
#pragma unroll
            for (int k = 0; k < 3; ++k)
#pragma unroll
                for (int j = 0; j < 3; ++j) {
                    g.self[k][j] *= weight;
                    g.diff[k][j] *= weight;
                }
            if (one_span) {
                write_gradients<T, L, VEC, C>(launch, row, first_span, raw, g); // the row is still here
            } else {
                for (int64_t base = 0; base < launch.dim; base += span) {
                    const Slots<VEC, C> slots(base, member, lanes_log2, launch.dim, true);
                    load_chunks<T, L, VEC, C>(launch, row, slots, raw);
                    write_gradients<T, L, VEC, C>(launch, row, slots, raw, g);
                }
            }
        }
    }

    if (launch.loss && launch.reduction != CLOSS_REDUCTION_NONE) {
        __shared__ float warp_losses[kWarpsPerBlock];
        const float warp_loss = sum_over_groups(group_loss, lanes);
        if (lane == 0) warp_losses[warp] = warp_loss;
        __syncthreads();
        if (threadIdx.x == 0) {
            float block_loss = 0.0f;
            for (int w = 0; w < kWarpsPerBlock; ++w) block_loss += warp_losses[w];
            launch.partials[blockIdx.x] = block_loss;
        }
    }
}

// loss[0] = Σ partials (in block order, in double), divided by rows for MEAN (0 for no rows).
__global__ void finish_loss_kernel(const float *partials, int blocks, int64_t rows, int mean, float *loss) {
    double sum = 0.0;
    for (int b = 0; b < blocks; ++b) sum += partials[b];
    if (mean && rows > 0) sum /= (double)rows;
    *loss = (float)sum;
}

// Calls visit(Loss<…>{}) with the loss, distance and swap of `p`: the one place where they are
// looked at at run time (rowwise.cu's launcher and the CPU run of the kernels both use it).
template <class Visit> cudaError_t with_loss(const closs_row_params &p, Visit &&visit) {
    switch (p.kind) {
    case CLOSS_ROW_PAIR:
        if (p.distance == CLOSS_DISTANCE_COSINE) return visit(Loss<CLOSS_ROW_PAIR, CLOSS_DISTANCE_COSINE, 0>{});
        return visit(Loss<CLOSS_ROW_PAIR, CLOSS_DISTANCE_EUCLIDEAN, 0>{});
    case CLOSS_ROW_TRIPLET:
        if (p.distance == CLOSS_DISTANCE_COSINE)
            return p.swap ? visit(Loss<CLOSS_ROW_TRIPLET, CLOSS_DISTANCE_COSINE, 1>{})
                          : visit(Loss<CLOSS_ROW_TRIPLET, CLOSS_DISTANCE_COSINE, 0>{});
        if (p.distance == CLOSS_DISTANCE_EUCLIDEAN)
            return p.swap ? visit(Loss<CLOSS_ROW_TRIPLET, CLOSS_DISTANCE_EUCLIDEAN, 1>{})
                          : visit(Loss<CLOSS_ROW_TRIPLET, CLOSS_DISTANCE_EUCLIDEAN, 0>{});
        return p.swap ? visit(Loss<CLOSS_ROW_TRIPLET, CLOSS_DISTANCE_SQEUCLIDEAN, 1>{})
                      : visit(Loss<CLOSS_ROW_TRIPLET, CLOSS_DISTANCE_SQEUCLIDEAN, 0>{});
    case CLOSS_ROW_COSINE: return visit(Loss<CLOSS_ROW_COSINE, CLOSS_DISTANCE_COSINE, 0>{});
    }
    return cudaErrorInvalidValue;
}

// 16-byte chunks when every row start is 16-byte aligned and D a multiple of the chunk.
template <typename T> inline bool use_vectors(const closs_rowwise_launch &launch) {
    return launch.vectorized && launch.dim % (16 / (int)sizeof(T)) == 0;
}

// log2 of the lanes per row: the fewest that hold a row of `dim` columns in their chunks, at most
// a warp.
template <typename T, int VEC> inline int lanes_log2_for(int64_t dim) {
    int log2 = 0;
    while (log2 < 5 && ((int64_t)VEC * chunks_for<T, VEC>() << log2) < dim) ++log2;
    return log2;
}

} // namespace rowwise
} // namespace closs
