// Row-wise losses on the GPU (pair contrastive, triplet, cosine contrastive): the launchers, which
// pick the kernel compiled for the call's loss, distance and swap (rowwise_kernels.cuh has the
// kernels, their math and their schedule), and the check-mode kernel.
//
// Launch: CLOSS_ROWWISE_THREADS threads (8 warps) per block, closs_rowwise_blocks() blocks, rows in
// a grid-stride loop. Floor: memory-bound, (inputs read once + gradients written once) / copy
// bandwidth (bench/NOTES.md).
#include <stdint.h>

#include "rowwise_kernels.cuh"

namespace closs {
namespace {

using rowwise::kWarpsPerBlock;

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
            float label = rowwise::load_label(launch.y, launch.y_dtype, row);
            if (!(label >= 0.0f && label <= 1.0f)) atomicMin(&bad_rows[1], (unsigned long long)row);
        }
    }
}

// The kernel of the call's loss (16-byte chunks when the layout allows), then the loss's partial
// sums.
template <typename T> cudaError_t launch_for_loss(const closs_rowwise_launch &launch, cudaStream_t stream) {
    constexpr int kVec = 16 / sizeof(T);
    if (launch.rows > 0) {
        CLOSS_TRY_CUDA(rowwise::with_loss(launch.params, [&](auto loss) {
            using L = decltype(loss);
            if (rowwise::use_vectors<T>(launch))
                rowwise::rowwise_kernel<T, L, kVec><<<launch.blocks, CLOSS_ROWWISE_THREADS, 0, stream>>>(
                    launch, rowwise::lanes_log2_for<T, kVec>(launch.dim));
            else
                rowwise::rowwise_kernel<T, L, 1><<<launch.blocks, CLOSS_ROWWISE_THREADS, 0, stream>>>(
                    launch, rowwise::lanes_log2_for<T, 1>(launch.dim));
            return cudaGetLastError();
        }));
    }
    if (launch.loss && launch.reduction != CLOSS_REDUCTION_NONE)
        rowwise::finish_loss_kernel<<<1, 1, 0, stream>>>(launch.partials, launch.rows > 0 ? launch.blocks : 0,
                                                         launch.rows, launch.reduction == CLOSS_REDUCTION_MEAN,
                                                         launch.loss);
    return cudaGetLastError();
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
    // blocks than there are rows for at one row per warp.
    const int64_t wanted = (rows + closs::rowwise::kWarpsPerBlock - 1) / closs::rowwise::kWarpsPerBlock;
    const int64_t limit = 4 * (int64_t)(multiprocessors > 0 ? multiprocessors : 1);
    return (int)(wanted < limit ? (wanted > 0 ? wanted : 1) : limit);
}

extern "C" cudaError_t closs_launch_rowwise(const closs_rowwise_launch *launch, cudaStream_t stream) {
    switch (launch->dtype) {
    case CLOSS_F16: return closs::launch_for_loss<__half>(*launch, stream);
    case CLOSS_BF16: return closs::launch_for_loss<__nv_bfloat16>(*launch, stream);
    default: return closs::launch_for_loss<float>(*launch, stream);
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
