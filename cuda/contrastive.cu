// NT-Xent and SupCon on the GPU, the CHUNKED path: cuBLAS multiplies a block of C anchor rows by
// all M rows into a C × M workspace, and small kernels (contrastive_chunked_kernels.cuh) do the
// rest. No M × M matrix is stored. The path for any D (the fused path takes D ≤ 256), and the
// oracle the fused path is checked against.
//
// Math (contrastive_math.h; docs/contract.md §3–4): x_ik = ẑ_i·ẑ_k/τ, lse_i = log Σ_{k≠i} e^(x_ik),
// ℓ_i = s·(lse_i − mean_{k∈P(i)} x_ik); dẐ = G·Ẑ with G from lse, the anchor weights and the
// positive sets, then back through the normalisation.
// The products by dtype (the cuBLAS calls: contrastive_chunked_products.cuh):
//   f32          S = Ẑ_c·Ẑᵀ and dẐ_c = G_c·Ẑ by cublasSgemm on a float copy Ẑ (no TF32: the
//                contract's f32 tolerance)
//   f16, bf16    on tensor cores by cublasGemmEx (16-bit operands, CUBLAS_COMPUTE_32F, float S),
//                on the caller's z itself (no copy): S_raw = Z_c·Zᵀ, x_ik = S_raw·(r_i/τ)·r_k
//                (the rank-1 scale, r_i = 1/max(‖z_i‖, eps)); the backward's G, which 16-bit
//                operands cannot hold as it is, becomes G'_ik = G_ik·r_k/β (β = max_k |w_k|, so
//                that MEAN's small weights do not underflow f16) in two 16-bit halves, high and
//                low (to_operand, contrastive_kernels.cuh), and dẐ_c = β·(G'high·Z + G'low·Z): two
//                GemmEx calls, the second adding to the first.
// The order of work:
//   embed            ‖z_i‖, r_i (16-bit) or ẑ (f32), one warp per row; a flag for non-finite inputs
//   classes          SupCon: the label sort and class numbering (contrastive_classes.cu), then
//                    |P(i)| for every anchor: O(M) after the sort, whatever the class sizes
//   per chunk:       S_c (cuBLAS), then row_stats: lse_i, ℓ_i (one block per row)
//   finish_loss      the reduced loss and `valid`, one block, fixed order
//   anchor_weights   w_i, a_i from the upstream gradient (16-bit: and β)
//   scale_rows       f16 with normalisation: z′ = z·2^e, r′ = r·2^−e (contrastive_kernels.cuh),
//                    which the backward's chunks multiply instead of z and r (G' of a near-zero
//                    row would otherwise pass f16's range)
//   per chunk:       S_c again (cuBLAS), coefficients: S_c → G_c (f32, in place) or G'_c (16-bit),
//                    dẐ_c (cuBLAS), embed_backward: dz_c in the input dtype, one warp per row
// Launches per forward+backward call with K chunks of rows: NT-Xent 6 + 2K kernels and 3K cuBLAS
// calls for f32 (4K for 16-bit: the two halves of G'), plus 1 memset (2 for 16-bit); SupCon adds
// the class numbering (a copy, 3 kernels, CUB's sort and scan).
// With a row range (closs.h "Row ranges") the forward's chunks cover the range's anchors (all rows
// when a backward follows: it needs every lse) and the backward's the range's rows.
// Every sum runs in a fixed order (cuBLAS without atomics, fixed reduction trees), so the same
// inputs give the same bits. Cost: forward 2·M²·D flops, backward 4·M²·D (S recomputed; 6·M²·D
// for 16-bit, G' in two halves), 2·M² exponentials; memory O(M·D + C·M) (host/gpu_contrastive.c
// sizes C so that the block of S, and G' for 16-bit, stay within 256 MiB).
#include <cublas_v2.h>
#include <math.h>
#include <stdint.h>

#include <type_traits>

#include "contrastive_chunked_kernels.cuh"
#include "contrastive_chunked_products.cuh"

namespace closs {
namespace {

// After a failed cuBLAS call (reported through cublas_status as CUBLAS_ERROR): a CUDA error it
// left in the runtime is closs's own (closs_begin_call found none pending on entry), so it is
// consumed here rather than reported by the caller's next CUDA call, or closs's, as theirs.
inline cudaError_t cublas_failed() {
    (void)cudaGetLastError();
    return cudaSuccess;
}

template <typename T>
cudaError_t run(const closs_contrastive_launch &job, cudaStream_t stream, int *cublas_status) {
    cublasHandle_t cublas = static_cast<cublasHandle_t>(job.cublas);
    *cublas_status = cublasSetStream(cublas, stream);
    if (*cublas_status == CUBLAS_STATUS_SUCCESS) // after SetStream, which resets it
        *cublas_status = cublasSetWorkspace(cublas, job.cublas_workspace, job.cublas_workspace_bytes);
    if (*cublas_status != CUBLAS_STATUS_SUCCESS) return cublas_failed();

    CLOSS_TRY_CUDA(cudaMemsetAsync(job.nonfinite, 0, sizeof *job.nonfinite, stream));
    const int warps_per_block = kBlock / kWarpSize;
    embed_kernel<T><<<grid_for(job.rows, warps_per_block), kBlock, 0, stream>>>(job);
    CLOSS_RETURN_IF_LAUNCH_FAILED();
    CLOSS_TRY_CUDA(closs_launch_contrastive_classes(&job, stream));

    const int64_t lse_end = job.lse_begin + job.lse_count, row_end = job.row_begin + job.row_count;
    for (int64_t first = job.lse_begin; job.forward && first < lse_end; first += job.chunk_rows) {
        const int64_t chunk = lse_end - first < job.chunk_rows ? lse_end - first : job.chunk_rows;
        if ((*cublas_status = similarity_chunk<T>(job, cublas, first, chunk)) != CUBLAS_STATUS_SUCCESS)
            return cublas_failed();
        row_stats_kernel<<<(unsigned)chunk, kBlock, 0, stream>>>(job, first, job.similarity);
        CLOSS_RETURN_IF_LAUNCH_FAILED();
    }
    // The valid count is needed by MEAN's weights in a backward-only call too.
    finish_loss_kernel<<<1, kBlock, 0, stream>>>(job);

    if (job.grad) {
        if (job.factor_max) CLOSS_TRY_CUDA(cudaMemsetAsync(job.factor_max, 0, sizeof *job.factor_max, stream));
        anchor_weights_kernel<<<grid_for(job.rows, kBlock), kBlock, 0, stream>>>(job);
        CLOSS_RETURN_IF_LAUNCH_FAILED();
        if constexpr (std::is_same<T, __half>::value) { // host/gpu_contrastive.c: f16 only
            if (job.z_scaled) {
                scale_rows_kernel<T><<<grid_for(job.rows, warps_per_block), kBlock, 0, stream>>>(job);
                CLOSS_RETURN_IF_LAUNCH_FAILED();
            }
        }
        const closs_contrastive_launch back = backward_job(job); // f16: z′ and r′ (launch.h)
        for (int64_t first = back.row_begin; first < row_end; first += back.chunk_rows) {
            const int64_t chunk = row_end - first < back.chunk_rows ? row_end - first : back.chunk_rows;
            if ((*cublas_status = similarity_chunk<T>(back, cublas, first, chunk)) != CUBLAS_STATUS_SUCCESS)
                return cublas_failed();
            coefficients_kernel<T><<<grid_for(chunk * back.rows, kBlock), kBlock, 0, stream>>>(back, first, chunk,
                                                                                         back.similarity);
            CLOSS_RETURN_IF_LAUNCH_FAILED();
            if ((*cublas_status = gradient_chunk<T>(back, cublas, chunk)) != CUBLAS_STATUS_SUCCESS)
                return cublas_failed();
            embed_backward_kernel<T><<<grid_for(chunk, warps_per_block), kBlock, 0, stream>>>(back, first, chunk,
                                                                                          back.dzhat);
            CLOSS_RETURN_IF_LAUNCH_FAILED();
        }
    }
    return cudaGetLastError();
}

} // namespace
} // namespace closs

extern "C" cudaError_t closs_launch_contrastive(const closs_contrastive_launch *job, cudaStream_t stream,
                                                int *cublas_status) {
    switch (job->dtype) {
    case CLOSS_F16: return closs::run<__half>(*job, stream, cublas_status);
    case CLOSS_BF16: return closs::run<__nv_bfloat16>(*job, stream, cublas_status);
    default: return closs::run<float>(*job, stream, cublas_status);
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
