// SupCon's classes and every anchor's positive count, for both NT-Xent/SupCon paths (the kernels
// and what they compute: contrastive_classes.cuh). One translation unit, so that CUB's radix sort
// is compiled once for the two paths.
//
// Launches (SupCon): a copy of the labels, iota, CUB's stable radix sort of (label, row) in the
// workspace's double buffers, class_heads, CUB's inclusive scan, assign_classes; then, for both
// losses, positives. Every step is O(M) work; the sort is stable and the scan has one order, so
// the same labels give the same classes on every run.
#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_scan.cuh>

#include "contrastive_classes.cuh"

namespace closs {
namespace {

// Sorts (label, row) and numbers the classes.
template <typename L> cudaError_t classes(const closs_contrastive_launch &job, cudaStream_t stream) {
    const int rows = (int)job.rows;
    CLOSS_TRY_CUDA(cudaMemcpyAsync(job.sort_keys[0], job.labels, (size_t)rows * sizeof(L), cudaMemcpyDeviceToDevice,
                                   stream));
    iota_kernel<<<grid_for(rows, kBlock), kBlock, 0, stream>>>(job.sort_index[0], rows);
    CLOSS_RETURN_IF_LAUNCH_FAILED(); // before CUB, which could clear it
    cub::DoubleBuffer<L> keys(static_cast<L *>(job.sort_keys[0]), static_cast<L *>(job.sort_keys[1]));
    cub::DoubleBuffer<int> index(job.sort_index[0], job.sort_index[1]);
    size_t bytes = job.cub_temp_bytes;
    CLOSS_TRY_CUDA(
        cub::DeviceRadixSort::SortPairs(job.cub_temp, bytes, keys, index, rows, 0, (int)sizeof(L) * 8, stream));
    class_heads_kernel<L><<<grid_for(rows, kBlock), kBlock, 0, stream>>>(job, keys.Current());
    CLOSS_RETURN_IF_LAUNCH_FAILED();
    bytes = job.cub_temp_bytes;
    CLOSS_TRY_CUDA(cub::DeviceScan::InclusiveSum(job.cub_temp, bytes, job.class_heads, job.class_ids, rows, stream));
    assign_classes_kernel<L><<<grid_for(rows, kBlock), kBlock, 0, stream>>>(job, keys.Current(), index.Current());
    return cudaGetLastError();
}

template <typename L> cudaError_t cub_bytes(int rows, size_t *bytes) {
    cub::DoubleBuffer<L> keys(nullptr, nullptr);
    cub::DoubleBuffer<int> index(nullptr, nullptr);
    size_t sort = 0, scan = 0;
    CLOSS_TRY_CUDA(cub::DeviceRadixSort::SortPairs(nullptr, sort, keys, index, rows, 0, (int)sizeof(L) * 8));
    const cudaError_t status =
        cub::DeviceScan::InclusiveSum(nullptr, scan, (const int *)nullptr, (int *)nullptr, rows);
    *bytes = sort > scan ? sort : scan;
    return status;
}

} // namespace
} // namespace closs

extern "C" cudaError_t closs_launch_contrastive_classes(const closs_contrastive_launch *job, cudaStream_t stream) {
    if (job->supcon)
        CLOSS_TRY_CUDA(job->label_dtype == CLOSS_I32 ? closs::classes<int32_t>(*job, stream)
                                                     : closs::classes<int64_t>(*job, stream));
    closs::positives_kernel<<<closs::grid_for(job->rows, closs::kBlock), closs::kBlock, 0, stream>>>(*job);
    return cudaGetLastError();
}

extern "C" cudaError_t closs_contrastive_cub_bytes(int64_t rows, closs_dtype_t label_dtype, size_t *bytes) {
    return label_dtype == CLOSS_I32 ? closs::cub_bytes<int32_t>((int)rows, bytes)
                                    : closs::cub_bytes<int64_t>((int)rows, bytes);
}
