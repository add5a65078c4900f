// CLIP and SigLIP on the GPU, the CHUNKED path: cuBLAS multiplies a chunk of one tower's rows by
// the other tower's rows into a chunk × (N + K) block, and the kernels of
// two_tower_chunked_kernels.cuh do the rest. No N × (N + K) matrix is stored. The path for any D
// (FUSED takes D ≤ 512), and the GPU reference the fused path is checked against at sizes the CPU
// reference is too slow for.
//
// Every dtype multiplies float copies of the embedded rows (â, b̂: N·D and (N + K)·D floats, which
// the embedding writes) with cublasSgemm, TF32 off: an oracle in float whatever the input, one
// code path for the three dtypes (f16 and bf16 rows are widened exactly).
// The walks are the FUSED path's (plan_of, two_tower_kernels.cuh), each as chunks of its anchors:
//   forward   per chunk: block = P̂_c·Q̂ᵀ (SGEMM), block_forward (one block per anchor): CLIP's
//             n_i or m_j, SigLIP's off-diagonal loss; then pair_loss and finish_loss
//   backward  prepare_backward; per chunk of each backward walk: block = P̂_c·Q̂ᵀ (SGEMM),
//             block_coefficients (G in place, walking a also the shares), block_grad = G·Q̂
//             (SGEMM; zeroed when the walk has no columns), gradient_epilogue (the pair's own
//             term, s, the normalisation's backward, the store); finish_scalars after the walk
//             over a
// Every sum has a fixed order (cuBLAS without atomics, fixed block trees), so the bits repeat.
// Cost: the fused path's flops (4 walks of 2·N·R·D for CLIP forward+backward, plus 2 gradient
// products), on SGEMM, plus the block's round trips through memory: forward written and read
// once per walk, backward written, rewritten as G, read by the product.
#include <cublas_v2.h>

#include "two_tower_chunked_kernels.cuh"
#include "two_tower_chunked_products.cuh"

namespace closs {
namespace {

// After a failed cuBLAS call (*cublas_status has its status): a CUDA error it left in the runtime
// is closs's own (host/gpu_call.c found none pending on entry), so it is consumed here, as
// contrastive.cu does, rather than seen by the caller's next CUDA call as theirs. The walk then
// returns an error, which ends run_plan (the host reports the cuBLAS status, not this).
inline cudaError_t cublas_failed() {
    (void)cudaGetLastError();
    return cudaErrorUnknown;
}

// The launches of one walk, chunk by chunk. A cuBLAS failure ends the call (cublas_failed).
template <typename T, bool kSiglip>
cudaError_t run_walk(const closs_two_tower_launch &job, const TwoTowerWalk &walk, bool backward,
                     cublasHandle_t cublas, int *cublas_status, cudaStream_t stream) {
    const bool has_columns = walk.column_end > walk.column_begin;
    for (int64_t first = walk.anchor_begin; first < walk.anchor_end; first += job.chunk_rows) {
        const int64_t chunk =
            walk.anchor_end - first < job.chunk_rows ? walk.anchor_end - first : job.chunk_rows;
        if (has_columns && (*cublas_status = similarity_block(job, walk, cublas, first, chunk)) !=
                               CUBLAS_STATUS_SUCCESS)
            return cublas_failed();
        if (!backward) {
            block_forward_kernel<kSiglip>
                <<<(unsigned)chunk, kTwoTowerBlock, 0, stream>>>(job, walk, first, job.block);
            CLOSS_RETURN_IF_LAUNCH_FAILED();
            continue;
        }
        block_coefficients_kernel<kSiglip>
            <<<(unsigned)chunk, kTwoTowerBlock, 0, stream>>>(job, walk, first, job.block);
        CLOSS_RETURN_IF_LAUNCH_FAILED();
        if (!walk.grad) continue; // the walk over a for the scalars' shares alone
        if (!has_columns) {
            CLOSS_TRY_CUDA(cudaMemsetAsync(job.block_grad, 0,
                                           (size_t)(chunk * job.dim) * sizeof(float), stream));
        } else if ((*cublas_status = gradient_block(job, walk, cublas, chunk)) !=
                   CUBLAS_STATUS_SUCCESS) {
            return cublas_failed();
        }
        gradient_epilogue_kernel<T>
            <<<grid_for(chunk, kTwoTowerBlock / kWarpSize), kTwoTowerBlock, 0, stream>>>(
                job, walk, first, chunk, job.block_grad);
        CLOSS_RETURN_IF_LAUNCH_FAILED();
    }
    return cudaSuccess;
}

template <typename T, bool kSiglip>
cudaError_t run(const closs_two_tower_launch &job, cudaStream_t stream, int *cublas_status) {
    cublasHandle_t cublas = static_cast<cublasHandle_t>(job.cublas);
    *cublas_status = cublasSetStream(cublas, stream);
    if (*cublas_status == CUBLAS_STATUS_SUCCESS) // after SetStream, which resets it
        *cublas_status =
            cublasSetWorkspace(cublas, job.cublas_workspace, job.cublas_workspace_bytes);
    if (*cublas_status != CUBLAS_STATUS_SUCCESS) return cublas_failed();
    return run_on_gpu<T>(job, stream, [&](const TwoTowerWalk &walk, bool backward) {
        return run_walk<T, kSiglip>(job, walk, backward, cublas, cublas_status, stream);
    });
}

template <typename T>
cudaError_t run_loss(const closs_two_tower_launch &job, cudaStream_t stream, int *cublas_status) {
    return job.siglip ? run<T, true>(job, stream, cublas_status)
                      : run<T, false>(job, stream, cublas_status);
}

} // namespace
} // namespace closs

extern "C" cudaError_t closs_launch_two_tower_chunked(const closs_two_tower_launch *job,
                                                      cudaStream_t stream, int *cublas_status) {
    switch (job->dtype) {
    case CLOSS_F16: return closs::run_loss<__half>(*job, stream, cublas_status);
    case CLOSS_BF16: return closs::run_loss<__nv_bfloat16>(*job, stream, cublas_status);
    default: return closs::run_loss<float>(*job, stream, cublas_status);
    }
}
