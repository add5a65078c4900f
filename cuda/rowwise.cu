// Row-wise losses on the GPU: pair contrastive, triplet and cosine contrastive.
//
// Math (docs/contract.md; per-row formulas in rowwise_math.h): each row's loss depends on its two
// or three input rows x0, x1, x2 only through the dot products x_j·x_k and the squared distances
// ‖x_j − x_k‖², and each row's gradient is a linear combination of x0, x1, x2 and their
// differences. So one warp per row:
//   pass 1: read the row's inputs (16-byte loads when aligned), accumulate the statistics in
//           float, reduce them across the warp by shuffles;
//   math:   closs_row_loss_grad() gives ℓ_i and the gradient coefficients; the upstream gradient
//           (1/rows for MEAN) scales them;
//   pass 2: re-read the row (from L1/L2: it was just read) and write every gradient row.
// The loss: per-row for NONE; otherwise each warp sums its rows, each block its warps (in warp
// order) into one partial, and a one-thread kernel sums the partials in block order (in double).
// Fixed grid, fixed orders: the same inputs give the same bits on every run, with no atomics.
//
// Launch: CLOSS_ROWWISE_THREADS threads (8 warps) per block, closs_rowwise_blocks() blocks, rows
// visited in a grid-stride loop. Floor: memory-bound, (inputs read once + gradients written
// once) / copy bandwidth.
#include <stdint.h>

#include "common.cuh"
#include "launch.h"

namespace closs {
namespace {

constexpr int kWarpsPerBlock = CLOSS_ROWWISE_THREADS / kWarpSize;

__device__ __forceinline__ float load_label(const void *labels, closs_dtype_t dtype, int64_t row) {
    if (dtype == CLOSS_F16) return to_float(static_cast<const __half *>(labels)[row]);
    if (dtype == CLOSS_BF16) return to_float(static_cast<const __nv_bfloat16 *>(labels)[row]);
    return static_cast<const float *>(labels)[row];
}

// The factor that turns ∂ℓ_i into the gradient of the reduced loss (host/ref/ref_common.c).
__device__ __forceinline__ float row_weight(const closs_rowwise_launch &launch, int64_t row) {
    if (launch.reduction == CLOSS_REDUCTION_NONE) return launch.upstream ? launch.upstream[row] : 1.0f;
    float upstream = launch.upstream ? launch.upstream[0] : 1.0f;
    return launch.reduction == CLOSS_REDUCTION_SUM ? upstream : upstream / (float)launch.rows;
}

// Adds one chunk of VEC features of every input to the statistics.
template <int INPUTS, int VEC>
__device__ __forceinline__ void accumulate(const float (&v)[3][VEC], closs_row_stats &s,
                                           bool &nonfinite) {
#pragma unroll
    for (int e = 0; e < VEC; ++e) {
#pragma unroll
        for (int j = 0; j < INPUTS; ++j) {
            nonfinite |= !isfinite(v[j][e]);
#pragma unroll
            for (int k = j; k < INPUTS; ++k) s.dot[j][k] = fmaf(v[j][e], v[k][e], s.dot[j][k]);
        }
#pragma unroll
        for (int j = 0; j < INPUTS; ++j)
#pragma unroll
            for (int k = j + 1; k < INPUTS; ++k) {
                float difference = v[j][e] - v[k][e];
                s.sqdiff[closs_rm_pair_index(j, k)] =
                    fmaf(difference, difference, s.sqdiff[closs_rm_pair_index(j, k)]);
            }
    }
}

// Writes one chunk of VEC features of every wanted gradient.
template <typename T, int INPUTS, int VEC>
__device__ __forceinline__ void write_gradients(const closs_rowwise_launch &launch, int64_t row,
                                                int64_t column, const float (&v)[3][VEC],
                                                const closs_row_grad &g) {
#pragma unroll
    for (int k = 0; k < INPUTS; ++k) {
        if (!launch.grad[k]) continue;
        float out[VEC];
#pragma unroll
        for (int e = 0; e < VEC; ++e) {
            float value = 0.0f;
#pragma unroll
            for (int j = 0; j < INPUTS; ++j) value = fmaf(g.self[k][j], v[j][e], value);
#pragma unroll
            for (int a = 0; a < INPUTS; ++a)
#pragma unroll
                for (int b = a + 1; b < INPUTS; ++b)
                    value = fmaf(g.diff[k][closs_rm_pair_index(a, b)], v[a][e] - v[b][e], value);
            out[e] = value;
        }
        T *target = static_cast<T *>(launch.grad[k]) + row * launch.grad_ld[k] + column;
        store_floats<T, VEC>(target, out);
    }
}

// Pass 1's visitor: accumulates the statistics of a chunk.
template <int INPUTS> struct Gather {
    closs_row_stats *stats;
    bool *nonfinite;
    template <int W> __device__ void operator()(int64_t, const float (&v)[3][W]) const {
        accumulate<INPUTS, W>(v, *stats, *nonfinite);
    }
};

// Pass 2's visitor: writes the gradients of a chunk.
template <typename T, int INPUTS> struct Scatter {
    const closs_rowwise_launch *launch;
    int64_t row;
    const closs_row_grad *coefficients;
    template <int W> __device__ void operator()(int64_t column, const float (&v)[3][W]) const {
        write_gradients<T, INPUTS, W>(*launch, row, column, v, *coefficients);
    }
};

// Calls visit(column, values) for every chunk of the row this lane owns: VEC-wide chunks first,
// then the tail one feature at a time.
template <typename T, int INPUTS, int VEC, typename Visit>
__device__ __forceinline__ void for_each_chunk(const closs_rowwise_launch &launch, int64_t row,
                                               int lane, Visit visit) {
    const T *rows[3];
#pragma unroll
    for (int k = 0; k < INPUTS; ++k) rows[k] = static_cast<const T *>(launch.x[k]) + row * launch.ld[k];
    const int64_t vector_end = launch.dim / VEC * VEC;
    for (int64_t column = (int64_t)lane * VEC; column < vector_end; column += kWarpSize * VEC) {
        float v[3][VEC];
#pragma unroll
        for (int k = 0; k < INPUTS; ++k) load_floats<T, VEC>(rows[k] + column, v[k]);
        visit(column, v);
    }
    for (int64_t column = vector_end + lane; column < launch.dim; column += kWarpSize) {
        float v[3][1];
#pragma unroll
        for (int k = 0; k < INPUTS; ++k) load_floats<T, 1>(rows[k] + column, v[k]);
        visit(column, v);
    }
}

template <typename T, int INPUTS, int VEC>
__global__ void __launch_bounds__(CLOSS_ROWWISE_THREADS)
rowwise_kernel(const closs_rowwise_launch launch) {
    const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
    const int64_t warps_in_grid = (int64_t)gridDim.x * kWarpsPerBlock;
    float warp_loss = 0.0f; // this warp's rows, in row order (MEAN and SUM)

    for (int64_t row = (int64_t)blockIdx.x * kWarpsPerBlock + warp; row < launch.rows; row += warps_in_grid) {
        closs_row_stats s = {};
        bool nonfinite = false;
        for_each_chunk<T, INPUTS, VEC>(launch, row, lane, Gather<INPUTS>{&s, &nonfinite});

#pragma unroll
        for (int j = 0; j < INPUTS; ++j) {
#pragma unroll
            for (int k = j; k < INPUTS; ++k) {
                s.dot[j][k] = warp_sum(s.dot[j][k]);
                s.dot[k][j] = s.dot[j][k];
            }
        }
#pragma unroll
        for (int p = 0; p < 3; ++p) s.sqdiff[p] = warp_sum(s.sqdiff[p]);
        const bool row_nonfinite = warp_any(nonfinite);

        const float label = launch.y ? load_label(launch.y, launch.y_dtype, row) : 0.0f;
        closs_row_grad g = closs_row_loss_grad(&launch.params, &s, label);
        // A non-finite input makes its row NaN even where a hinge would close over it (contract).
        const float row_loss = row_nonfinite ? __int_as_float(0x7fc00000) : g.loss;
        if (launch.loss) {
            if (launch.reduction == CLOSS_REDUCTION_NONE) {
                if (lane == 0) launch.loss[row] = row_loss;
            } else {
                warp_loss += row_loss;
            }
        }

        if (launch.grad[0] || launch.grad[1] || (INPUTS == 3 && launch.grad[2])) {
            const float weight = row_nonfinite ? __int_as_float(0x7fc00000) : row_weight(launch, row);
#pragma unroll
            for (int k = 0; k < 3; ++k)
#pragma unroll
                for (int j = 0; j < 3; ++j) {
                    g.self[k][j] *= weight;
                    g.diff[k][j] *= weight;
                }
            for_each_chunk<T, INPUTS, VEC>(launch, row, lane, Scatter<T, INPUTS>{&launch, row, &g});
        }
    }

    if (launch.loss && launch.reduction != CLOSS_REDUCTION_NONE) {
        __shared__ float warp_losses[kWarpsPerBlock];
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

// Check mode: the first row with a non-finite input, and the first label outside [0, 1].
template <typename T, int INPUTS>
__global__ void __launch_bounds__(CLOSS_ROWWISE_THREADS)
check_kernel(const closs_rowwise_launch launch, unsigned long long *bad_rows) {
    const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
    const int64_t warps_in_grid = (int64_t)gridDim.x * kWarpsPerBlock;
    for (int64_t row = (int64_t)blockIdx.x * kWarpsPerBlock + warp; row < launch.rows; row += warps_in_grid) {
        bool nonfinite = false;
        for (int k = 0; k < INPUTS; ++k) {
            const T *values = static_cast<const T *>(launch.x[k]) + row * launch.ld[k];
            for (int64_t column = lane; column < launch.dim; column += kWarpSize)
                nonfinite |= !isfinite(to_float(values[column]));
        }
        if (warp_any(nonfinite) && lane == 0) atomicMin(&bad_rows[0], (unsigned long long)row);
        if (launch.y && lane == 0) {
            float label = load_label(launch.y, launch.y_dtype, row);
            if (!(label >= 0.0f && label <= 1.0f)) atomicMin(&bad_rows[1], (unsigned long long)row);
        }
    }
}

template <typename T, int INPUTS>
cudaError_t launch_typed(const closs_rowwise_launch &launch, cudaStream_t stream) {
    constexpr int kVec = 16 / sizeof(T);
    if (launch.rows > 0) {
        if (launch.vectorized)
            rowwise_kernel<T, INPUTS, kVec><<<launch.blocks, CLOSS_ROWWISE_THREADS, 0, stream>>>(launch);
        else
            rowwise_kernel<T, INPUTS, 1><<<launch.blocks, CLOSS_ROWWISE_THREADS, 0, stream>>>(launch);
    }
    if (launch.loss && launch.reduction != CLOSS_REDUCTION_NONE)
        finish_loss_kernel<<<1, 1, 0, stream>>>(launch.partials, launch.rows > 0 ? launch.blocks : 0,
                                                launch.rows, launch.reduction == CLOSS_REDUCTION_MEAN,
                                                launch.loss);
    return cudaGetLastError();
}

template <typename T>
cudaError_t launch_for_inputs(const closs_rowwise_launch &launch, cudaStream_t stream) {
    return launch.input_count == 3 ? launch_typed<T, 3>(launch, stream) : launch_typed<T, 2>(launch, stream);
}

template <typename T>
cudaError_t launch_check_for_inputs(const closs_rowwise_launch &launch, unsigned long long *bad_rows,
                                    cudaStream_t stream) {
    if (launch.input_count == 3)
        check_kernel<T, 3><<<launch.blocks, CLOSS_ROWWISE_THREADS, 0, stream>>>(launch, bad_rows);
    else
        check_kernel<T, 2><<<launch.blocks, CLOSS_ROWWISE_THREADS, 0, stream>>>(launch, bad_rows);
    return cudaGetLastError();
}

} // namespace
} // namespace closs

extern "C" int closs_rowwise_blocks(int multiprocessors, int64_t rows) {
    // Enough resident warps to hide memory latency (4 blocks of 8 warps per SM), never more
    // blocks than there are rows for.
    const int64_t wanted = (rows + closs::kWarpsPerBlock - 1) / closs::kWarpsPerBlock;
    const int64_t limit = 4 * (int64_t)(multiprocessors > 0 ? multiprocessors : 1);
    return (int)(wanted < limit ? (wanted > 0 ? wanted : 1) : limit);
}

extern "C" cudaError_t closs_launch_rowwise(const closs_rowwise_launch *launch, cudaStream_t stream) {
    switch (launch->dtype) {
    case CLOSS_F16: return closs::launch_for_inputs<__half>(*launch, stream);
    case CLOSS_BF16: return closs::launch_for_inputs<__nv_bfloat16>(*launch, stream);
    default: return closs::launch_for_inputs<float>(*launch, stream);
    }
}

extern "C" cudaError_t closs_launch_rowwise_check(const closs_rowwise_launch *launch,
                                                  unsigned long long *bad_rows, cudaStream_t stream) {
    cudaError_t status = cudaMemsetAsync(bad_rows, 0xff, 2 * sizeof *bad_rows, stream);
    if (status != cudaSuccess || launch->rows == 0) return status;
    switch (launch->dtype) {
    case CLOSS_F16: return closs::launch_check_for_inputs<__half>(*launch, bad_rows, stream);
    case CLOSS_BF16: return closs::launch_check_for_inputs<__nv_bfloat16>(*launch, bad_rows, stream);
    default: return closs::launch_check_for_inputs<float>(*launch, bad_rows, stream);
    }
}
