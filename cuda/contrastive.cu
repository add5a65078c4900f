// NT-Xent and SupCon on the GPU, the CHUNKED path: cuBLAS multiplies a block of C anchor rows by
// all M rows into a C × M workspace, and small kernels do the rest. No M × M matrix is stored.
//
// Math (contrastive_math.h; docs/contract.md §3–4): x_ik = ẑ_i·ẑ_k/τ, lse_i = log Σ_{k≠i} e^(x_ik),
// ℓ_i = s·(lse_i − mean_{k∈P(i)} x_ik); dẐ = G·Ẑ with G from lse, the anchor weights and the
// positive sets, then back through the normalisation. The order of work:
//   embed            ẑ (float, dense) and ‖z_i‖, one warp per row; a flag for non-finite inputs
//   count_positives  |P(i)| (SupCon: the other rows with its label; NT-Xent: 1), one block per row
//   per chunk:       S_c = Ẑ_c·Ẑᵀ (cuBLAS), then row_stats: lse_i, ℓ_i (one block per row)
//   finish_loss      the reduced loss and `valid`, one block, fixed order
//   anchor_weights   w_i, a_i from the upstream gradient
//   per chunk:       S_c again (cuBLAS), coefficients: S_c → G_c in place, dẐ_c = G_c·Ẑ (cuBLAS),
//                    embed_backward: dz_c in the input dtype, one warp per row
// With a row range (closs.h "Row ranges") the forward's chunks cover the range's anchors (all rows
// when a backward follows: it needs every lse) and the backward's the range's rows.
// Every sum runs in a fixed order (cuBLAS without atomics, fixed reduction trees), so the same
// inputs give the same bits. Cost: forward 2·M²·D flops, backward 4·M²·D (S recomputed), 2·M²
// exponentials; memory O(M·D + C·M).
#include <cublas_v2.h>
#include <math.h>
#include <stdint.h>

#include "contrastive_kernels.cuh"

namespace closs {
namespace {

template <typename L> __device__ __forceinline__ bool is_positive(const closs_contrastive_launch &job, const L *labels,
                                                                 int64_t i, int64_t k) {
    if (k == i) return false;
    if (!job.supcon) return k == (i + job.rows / 2) % job.rows;
    return labels[k] == labels[i];
}

// |P(i)| for SupCon (the other rows with label_i); 1 for NT-Xent.
template <typename L>
__global__ void __launch_bounds__(kBlock) count_positives_kernel(const closs_contrastive_launch job) {
    __shared__ int shared[kBlock];
    const L *labels = static_cast<const L *>(job.labels);
    for (int64_t i = blockIdx.x; i < job.rows; i += gridDim.x) {
        int count = 0;
        if (job.supcon)
            for (int64_t k = threadIdx.x; k < job.rows; k += kBlock) count += is_positive(job, labels, i, k);
        count = job.supcon ? block_reduce(count, shared, AddInt()) : 1;
        if (threadIdx.x == 0) job.positives[i] = count;
    }
}

// One block per anchor row of the chunk: lse_i, the positives' sum and ℓ_i.
template <typename L>
__global__ void __launch_bounds__(kBlock) row_stats_kernel(const closs_contrastive_launch job, int64_t first,
                                                           const float *similarity) {
    __shared__ closs_lse_partial lse_shared[kBlock];
    __shared__ float sum_shared[kBlock];
    const L *labels = static_cast<const L *>(job.labels);
    const int64_t i = first + blockIdx.x;
    const float *row = similarity + (int64_t)blockIdx.x * job.rows;
    closs_lse_partial lse = closs_cm_lse_empty();
    float positive_sum = 0.0f;
    for (int64_t k = threadIdx.x; k < job.rows; k += kBlock) {
        if (k == i) continue;
        const float x = row[k] * job.inv_temperature;
        lse = closs_cm_lse_add(lse, x);
        if (is_positive(job, labels, i, k)) positive_sum += x;
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



// S_c → G_c in place (contrastive_math.h), one thread per element.
template <typename L>
__global__ void coefficients_kernel(const closs_contrastive_launch job, int64_t first, int64_t chunk,
                                    float *similarity) {
    const L *labels = static_cast<const L *>(job.labels);
    const int64_t elements = chunk * job.rows;
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < elements; e += (int64_t)gridDim.x * blockDim.x) {
        const int64_t i = first + e / job.rows, k = e % job.rows;
        if (k == i) {
            similarity[e] = 0.0f;
            continue;
        }
        const float x = similarity[e] * job.inv_temperature;
        similarity[e] = closs_cm_coefficient(x, job.lse[i], job.lse[k], job.weights[i], job.weights[k],
                                             job.anchor_a[i], job.anchor_a[k],
                                             is_positive(job, labels, i, k), job.inv_temperature);
    }
}

// dz_i from dẑ_i: (dẑ − ẑ(ẑ·dẑ))/‖z_i‖ while ‖z_i‖ > eps, dẑ/eps below, dẑ without normalisation.
template <typename T>
__global__ void embed_backward_kernel(const closs_contrastive_launch job, int64_t first, int64_t chunk,
                                      const float *dzhat) {
    const int lane = threadIdx.x % kWarpSize;
    const int64_t warps = (int64_t)gridDim.x * (blockDim.x / kWarpSize);
    for (int64_t r = (int64_t)blockIdx.x * (blockDim.x / kWarpSize) + threadIdx.x / kWarpSize; r < chunk;
         r += warps) {
        const int64_t row = first + r;
        const float *g = dzhat + r * job.dim, *unit = job.zhat + row * job.dim;
        float radial = 0.0f;
        if (job.normalize)
            for (int64_t c = lane; c < job.dim; c += kWarpSize) radial = fmaf(unit[c], g[c], radial);
        radial = warp_sum(radial);
        const float norm = job.norms[row];
        T *out = static_cast<T *>(job.grad) + (row - job.row_begin) * job.grad_ld;
        for (int64_t c = lane; c < job.dim; c += kWarpSize) {
            float value = g[c];
            if (job.normalize) value = norm > kNormalizeEps ? (value - unit[c] * radial) / norm : value / kNormalizeEps;
            out[c] = from_float<T>(value);
        }
    }
}


// S_c (chunk × M, row-major) = Ẑ_c·Ẑᵀ. cuBLAS is column-major: S_cᵀ = Ẑ·Ẑ_cᵀ with Ẑ seen as D × M.
cublasStatus_t similarity_chunk(const closs_contrastive_launch &job, cublasHandle_t cublas, int64_t first,
                                int64_t chunk) {
    const float one = 1.0f, zero = 0.0f;
    return cublasSgemm(cublas, CUBLAS_OP_T, CUBLAS_OP_N, (int)job.rows, (int)chunk, (int)job.dim, &one,
                       job.zhat, (int)job.dim, job.zhat + first * job.dim, (int)job.dim, &zero,
                       job.similarity, (int)job.rows);
}

// dẐ_c (chunk × D, row-major) = G_c·Ẑ; column-major: dẐ_cᵀ = Ẑᵀ·G_cᵀ.
cublasStatus_t gradient_chunk(const closs_contrastive_launch &job, cublasHandle_t cublas, int64_t chunk) {
    const float one = 1.0f, zero = 0.0f;
    return cublasSgemm(cublas, CUBLAS_OP_N, CUBLAS_OP_N, (int)job.dim, (int)chunk, (int)job.rows, &one,
                       job.zhat, (int)job.dim, job.similarity, (int)job.rows, &zero, job.dzhat,
                       (int)job.dim);
}

template <typename T, typename L>
cudaError_t run(const closs_contrastive_launch &job, cudaStream_t stream, int *cublas_status) {
    cublasHandle_t cublas = static_cast<cublasHandle_t>(job.cublas);
    *cublas_status = cublasSetStream(cublas, stream);
    if (*cublas_status == CUBLAS_STATUS_SUCCESS) // after SetStream, which resets it
        *cublas_status = cublasSetWorkspace(cublas, job.cublas_workspace, job.cublas_workspace_bytes);
    if (*cublas_status != CUBLAS_STATUS_SUCCESS) return cudaSuccess;

    cudaError_t status = cudaMemsetAsync(job.nonfinite, 0, sizeof *job.nonfinite, stream);
    if (status != cudaSuccess) return status;
    const int warps_per_block = kBlock / kWarpSize;
    embed_kernel<T><<<grid_for(job.rows, warps_per_block), kBlock, 0, stream>>>(job);
    count_positives_kernel<L><<<grid_for(job.rows, 1), kBlock, 0, stream>>>(job);
    CLOSS_RETURN_IF_LAUNCH_FAILED();

    const int64_t lse_end = job.lse_begin + job.lse_count, row_end = job.row_begin + job.row_count;
    for (int64_t first = job.lse_begin; job.forward && first < lse_end; first += job.chunk_rows) {
        const int64_t chunk = lse_end - first < job.chunk_rows ? lse_end - first : job.chunk_rows;
        if ((*cublas_status = similarity_chunk(job, cublas, first, chunk)) != CUBLAS_STATUS_SUCCESS)
            return cudaSuccess;
        row_stats_kernel<L><<<(unsigned)chunk, kBlock, 0, stream>>>(job, first, job.similarity);
        CLOSS_RETURN_IF_LAUNCH_FAILED();
    }
    // The valid count is needed by MEAN's weights in a backward-only call too.
    finish_loss_kernel<<<1, kBlock, 0, stream>>>(job);

    if (job.grad) {
        anchor_weights_kernel<<<grid_for(job.rows, kBlock), kBlock, 0, stream>>>(job);
        CLOSS_RETURN_IF_LAUNCH_FAILED();
        for (int64_t first = job.row_begin; first < row_end; first += job.chunk_rows) {
            const int64_t chunk = row_end - first < job.chunk_rows ? row_end - first : job.chunk_rows;
            if ((*cublas_status = similarity_chunk(job, cublas, first, chunk)) != CUBLAS_STATUS_SUCCESS)
                return cudaSuccess;
            coefficients_kernel<L><<<grid_for(chunk * job.rows, kBlock), kBlock, 0, stream>>>(job, first, chunk,
                                                                                        job.similarity);
            CLOSS_RETURN_IF_LAUNCH_FAILED();
            if ((*cublas_status = gradient_chunk(job, cublas, chunk)) != CUBLAS_STATUS_SUCCESS)
                return cudaSuccess;
            embed_backward_kernel<T><<<grid_for(chunk, warps_per_block), kBlock, 0, stream>>>(job, first, chunk,
                                                                                         job.dzhat);
            CLOSS_RETURN_IF_LAUNCH_FAILED();
        }
    }
    return cudaGetLastError();
}

template <typename T>
cudaError_t run_for_labels(const closs_contrastive_launch &job, cudaStream_t stream, int *cublas_status) {
    if (job.supcon && job.label_dtype == CLOSS_I32) return run<T, int32_t>(job, stream, cublas_status);
    return run<T, int64_t>(job, stream, cublas_status);
}

} // namespace
} // namespace closs

extern "C" cudaError_t closs_launch_contrastive(const closs_contrastive_launch *job, cudaStream_t stream,
                                                int *cublas_status) {
    switch (job->dtype) {
    case CLOSS_F16: return closs::run_for_labels<__half>(*job, stream, cublas_status);
    case CLOSS_BF16: return closs::run_for_labels<__nv_bfloat16>(*job, stream, cublas_status);
    default: return closs::run_for_labels<float>(*job, stream, cublas_status);
    }
}

extern "C" int closs_cublas_create(void **cublas) {
    cublasHandle_t handle = nullptr;
    cublasStatus_t status = cublasCreate(&handle);
    if (status == CUBLAS_STATUS_SUCCESS) status = cublasSetMathMode(handle, CUBLAS_DEFAULT_MATH);
    *cublas = handle;
    return (int)status;
}

extern "C" void closs_cublas_destroy(void *cublas) {
    if (cublas) cublasDestroy(static_cast<cublasHandle_t>(cublas));
}
