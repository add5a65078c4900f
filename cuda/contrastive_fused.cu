// NT-Xent and SupCon on the GPU, the FUSED path: similarity tiles live in shared memory and
// registers, and no M × M (or chunk × M) matrix is ever written. SIMT, float accumulation (the
// tensor-core version is a later step); correctness and a fixed order of operations first.
//
// Math (fused_math.h, contrastive_math.h; docs/contract.md §3–4): ẑ_i = z_i·r_i with
// r_i = 1/max(‖z_i‖, eps) (1 without normalisation), x_ij = ẑ_i·ẑ_j/τ,
//   lse_i = log Σ_{j≠i} e^(x_ij)      fixed shift c = 1/τ when normalised and τ ≥ 1/40, else an
//                                     online maximum; stored as the true log-sum-exp (`stats`,
//                                     the same meaning as on the chunked path)
//   ℓ_i   = s·(lse_i − Σ_{k∈P(i)} x_ik/|P(i)|), the positive sum in O(D): ẑ_i·ẑ_p(i) (NT-Xent)
//           or ẑ_i·(C_k − ẑ_i) with C_k = Σ ẑ over the anchor's class k (SupCon)
//   dẑ_i  = Σ_{j≠i} G_ij ẑ_j − (1/τ)·Σ_{k∈P(i)} (a_i + a_k)·ẑ_k,
//           G_ij = (1/τ)·e^(x_ij − c)·(b_i + b_j), b_i = w_i·e^(c − lse_i)   (S is symmetric: a
//           row of dẐ needs only its row of S, so dẐ is row-stationary and needs no atomics)
//   dz_i  = (dẑ_i − ẑ_i(ẑ_i·dẑ_i))·r_i  (dẑ_i/eps for a zero row; dẑ_i without normalisation).
//
// Launch shape (one stream, in this order):
//   embed            ‖z_i‖, r_i and the non-finite flag; one warp per row (contrastive_kernels.cuh)
//   classes          SupCon: CUB radix sort of (label, row); the classes with ≥ 2 rows numbered
//                    0..K−1 by a CUB scan of their first rows; class_of, class_start/end, K
//   positives        |P(i)|: 1 for NT-Xent, the class size − 1 for SupCon
//   class sums       SupCon: C_k (and A_k = Σ a_k ẑ_k for the backward); one block per class,
//                    a thread per column, the rows in sorted order (increasing row index)
//   forward_kernel   one block of 256 threads per 64 anchor rows walks every 64-column tile:
//                    S tile = ẑ_rows·ẑ_colsᵀ from 16-column slices of D staged in shared memory,
//                    each thread 4 × 4 products (rows ty + 16p, columns tx + 16q), then its own
//                    rows' partial sums; a half-warp butterfly merges the 16 lanes of a row
//   anchor_loss      ℓ_i from lse_i and the positive sum; one warp per anchor
//   finish_loss      the reduction and `valid` (contrastive_kernels.cuh)
//   anchor_weights   w_i, a_i (contrastive_kernels.cuh)
//   backward_kernel  one block per 64 anchor rows: per column tile the S tile again, G into
//                    shared memory, then dẑ_rows += G·ẑ_cols (16 rows of ẑ at a time, all of D),
//                    held in registers (D/4 floats a thread, so D ≤ 256); last the positive part,
//                    the normalisation's backward and the store in the input dtype.
// With a row range (closs.h "Row ranges") the forward's blocks cover the range's anchors (all rows
// when a backward follows: it needs every lse), anchor_loss the range, the backward's blocks the
// range's rows; the column tiles always run over all M rows.
// The kernels live in contrastive_fused_kernels.cuh (this file: CUB, the launch sequence and the
// C entry points), which tests/test_fused_kernels.cpp also runs on the CPU, a thread per CUDA
// thread.
// Determinism: every sum has one order (products over D in increasing k, each lane's terms in
// increasing j, fixed butterflies, class sums in sorted order), no float atomics; CUB's radix
// sort is stable. The file is compiled with -fmad=false: only the explicit fmaf() calls fuse,
// exactly as tests/test_contrastive_math.c's CPU emulation of this algorithm does.
// Cost: forward 2·M²·D flops and M² exponentials, backward 4·M²·D and M² (2·M² with the online
// maximum). Extra memory: O(M), plus SupCon's (M/2)·D floats for each of C and A.
#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_scan.cuh>

#include "contrastive_fused_kernels.cuh"

namespace closs {
namespace {

constexpr int kClassThreads = 128;

// Sorts (label, row) and numbers the classes; *order receives the sorted rows.
template <typename L>
cudaError_t classes(const closs_contrastive_launch &job, cudaStream_t stream, const int **order) {
    const int rows = (int)job.rows;
    cudaError_t status =
        cudaMemcpyAsync(job.sort_keys[0], job.labels, (size_t)rows * sizeof(L), cudaMemcpyDeviceToDevice, stream);
    if (status != cudaSuccess) return status;
    iota_kernel<<<grid_for(rows, kBlock), kBlock, 0, stream>>>(job.sort_index[0], rows);
    CLOSS_RETURN_IF_LAUNCH_FAILED(); // before CUB, which could clear it
    cub::DoubleBuffer<L> keys(static_cast<L *>(job.sort_keys[0]), static_cast<L *>(job.sort_keys[1]));
    cub::DoubleBuffer<int> index(job.sort_index[0], job.sort_index[1]);
    size_t bytes = job.cub_temp_bytes;
    status = cub::DeviceRadixSort::SortPairs(job.cub_temp, bytes, keys, index, rows, 0, (int)sizeof(L) * 8, stream);
    if (status != cudaSuccess) return status;
    class_heads_kernel<L><<<grid_for(rows, kBlock), kBlock, 0, stream>>>(job, keys.Current());
    CLOSS_RETURN_IF_LAUNCH_FAILED();
    bytes = job.cub_temp_bytes;
    status = cub::DeviceScan::InclusiveSum(job.cub_temp, bytes, job.class_heads, job.class_ids, rows, stream);
    if (status != cudaSuccess) return status;
    assign_classes_kernel<L><<<grid_for(rows, kBlock), kBlock, 0, stream>>>(job, keys.Current(), index.Current());
    *order = index.Current();
    return cudaGetLastError();
}

template <typename T, bool kFixed>
cudaError_t launch_backward(const closs_contrastive_launch &job, unsigned tiles, cudaStream_t stream) {
    if (job.dim <= 64) backward_kernel<T, kFixed, 64><<<tiles, kThreads, 0, stream>>>(job);
    else if (job.dim <= 128) backward_kernel<T, kFixed, 128><<<tiles, kThreads, 0, stream>>>(job);
    else backward_kernel<T, kFixed, CLOSS_FUSED_MAX_DIM><<<tiles, kThreads, 0, stream>>>(job);
    return cudaGetLastError();
}

template <typename T, bool kFixed>
cudaError_t run(const closs_contrastive_launch &job, cudaStream_t stream) {
    cudaError_t status = cudaMemsetAsync(job.nonfinite, 0, sizeof *job.nonfinite, stream);
    if (status != cudaSuccess) return status;
    const int warps_per_block = kBlock / kWarpSize;
    embed_kernel<T><<<grid_for(job.rows, warps_per_block), kBlock, 0, stream>>>(job);
    const int *order = nullptr;
    if (job.supcon) {
        status = job.label_dtype == CLOSS_I32 ? classes<int32_t>(job, stream, &order)
                                              : classes<int64_t>(job, stream, &order);
        if (status != cudaSuccess) return status;
    }
    positives_kernel<<<grid_for(job.rows, kBlock), kBlock, 0, stream>>>(job);
    const int class_grid = grid_for(job.rows / 2, 1);
    if (job.supcon) class_sums_kernel<T><<<class_grid, kClassThreads, 0, stream>>>(job, order, nullptr, job.class_sum);

    if (job.forward) {
        const unsigned lse_tiles = (unsigned)((job.lse_count + kTile - 1) / kTile);
        forward_kernel<T, kFixed><<<lse_tiles, kThreads, 0, stream>>>(job);
        anchor_loss_kernel<T><<<grid_for(job.row_count, warps_per_block), kBlock, 0, stream>>>(job);
    }
    // The valid count is needed by MEAN's weights in a backward-only call too.
    finish_loss_kernel<<<1, kBlock, 0, stream>>>(job);
    if (job.grad) {
        anchor_weights_kernel<<<grid_for(job.rows, kBlock), kBlock, 0, stream>>>(job);
        if (job.supcon)
            class_sums_kernel<T><<<class_grid, kClassThreads, 0, stream>>>(job, order, job.anchor_a,
                                                                          job.class_weighted_sum);
        return launch_backward<T, kFixed>(job, (unsigned)((job.row_count + kTile - 1) / kTile), stream);
    }
    return cudaGetLastError();
}

template <typename T> cudaError_t run_for_shift(const closs_contrastive_launch &job, cudaStream_t stream) {
    return job.fixed_shift ? run<T, true>(job, stream) : run<T, false>(job, stream);
}

template <typename L> cudaError_t cub_bytes(int rows, size_t *bytes) {
    cub::DoubleBuffer<L> keys(nullptr, nullptr);
    cub::DoubleBuffer<int> index(nullptr, nullptr);
    size_t sort = 0, scan = 0;
    cudaError_t status = cub::DeviceRadixSort::SortPairs(nullptr, sort, keys, index, rows, 0, (int)sizeof(L) * 8);
    if (status != cudaSuccess) return status;
    status = cub::DeviceScan::InclusiveSum(nullptr, scan, (const int *)nullptr, (int *)nullptr, rows);
    *bytes = sort > scan ? sort : scan;
    return status;
}

} // namespace
} // namespace closs

extern "C" cudaError_t closs_launch_contrastive_fused(const closs_contrastive_launch *job, cudaStream_t stream) {
    switch (job->dtype) {
    case CLOSS_F16: return closs::run_for_shift<__half>(*job, stream);
    case CLOSS_BF16: return closs::run_for_shift<__nv_bfloat16>(*job, stream);
    default: return closs::run_for_shift<float>(*job, stream);
    }
}

extern "C" cudaError_t closs_fused_cub_bytes(int64_t rows, closs_dtype_t label_dtype, size_t *bytes) {
    return label_dtype == CLOSS_I32 ? closs::cub_bytes<int32_t>((int)rows, bytes)
                                    : closs::cub_bytes<int64_t>((int)rows, bytes);
}
