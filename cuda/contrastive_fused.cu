// NT-Xent and SupCon on the GPU, the FUSED path: similarity tiles live in shared memory and
// registers, and no M × M (or chunk × M) matrix is ever written. f16 and bf16 inputs take the
// tensor-core kernels of contrastive_wmma_kernels.cuh (WMMA, float accumulation; their math and
// tile schedule are at its top) for the two similarity passes; f32 takes the SIMT kernels below,
// float throughout. Everything else is shared.
//
// Math (fused_math.h, contrastive_math.h; docs/contract.md §3–4): ẑ_i = z_i·r_i with
// r_i = 1/max(‖z_i‖, eps) (1 without normalisation), x_ij = ẑ_i·ẑ_j/τ,
//   lse_i = log Σ_{j≠i} e^(x_ij)      fixed shift c = 1/τ when normalised and τ ≥ 1/40, else an
//                                     online maximum; stored as the true log-sum-exp (`stats`,
//                                     the same meaning as on the chunked path)
//   ℓ_i   = s·(lse_i − Σ_{k∈P(i)} x_ik/|P(i)|), the positive sum taken in the same tiles (a
//           positive is a column whose key equals the anchor's: NT-Xent's partner, SupCon's class)
//   dẑ_i  = Σ_{j≠i} G_ij ẑ_j,
//           G_ij = (1/τ)·(e^(x_ij − c)·(b_i + b_j) − [j∈P(i)]·(a_i + a_j)), b_i = w_i·e^(c − lse_i)
//           (the positives folded into G, so that a confident positive's terms cancel in one
//           float; S is symmetric: a row of dẐ needs only its row of S, so dẐ is row-stationary
//           and needs no atomics)
//   dz_i  = (dẑ_i − ẑ_i(ẑ_i·dẑ_i))·r_i  (dẑ_i/eps for a zero row; dẑ_i without normalisation).
//
// Launch shape (one stream, in this order):
//   embed            ‖z_i‖, r_i and the non-finite flag; one warp per row (contrastive_kernels.cuh)
//   classes          (contrastive_classes.cu) SupCon: CUB radix sort of (label, row); the classes
//                    with ≥ 2 rows numbered 0..K−1 by a CUB scan of their first rows; class_of,
//                    class_start/end, K
//   positives        (contrastive_classes.cu) |P(i)|: 1 for NT-Xent, the class size − 1 for SupCon
//   forward_kernel   one block of 256 threads per 64 anchor rows walks every 64-column tile:
//                    S tile = ẑ_rows·ẑ_colsᵀ from 16-column slices of D staged in shared memory,
//                    each thread 4 × 4 products (rows ty + 16p, columns tx + 16q), then its own
//                    rows' partial sums of e^x and of the positives' x; a half-warp butterfly
//                    merges the 16 lanes of a row (f16, bf16: wmma_forward_kernel, 4 warps per 64
//                    anchors, WMMA tiles)
//   anchor_loss      ℓ_i from lse_i and the positive sum; one thread per anchor
//   finish_loss      the reduction and `valid` (contrastive_kernels.cuh)
//   anchor_weights   w_i, a_i (contrastive_kernels.cuh)
//   backward_kernel  one block per 64 anchor rows: per column tile the S tile again, G into
//                    shared memory, then dẑ_rows += G·ẑ_cols (16 rows of ẑ at a time, all of D),
//                    held in registers (D/4 floats a thread, so D ≤ 256); last the
//                    normalisation's backward and the store in the input dtype
//                    (f16, bf16: softmax_factors_kernel for each row's factor in G and their
//                    scale β, then wmma_backward_kernel).
// Launches per call (forward+backward): NT-Xent 7 (+1 memset) for f32, 8 (+2 memsets) for f16 and
// bf16; SupCon adds the label sort and numbering (a copy, 3 kernels, CUB's sort and scan).
// With a row range (closs.h "Row ranges") the forward's blocks cover the range's anchors (all rows
// when a backward follows: it needs every lse), anchor_loss the range, the backward's blocks the
// range's rows; the column tiles always run over all M rows.
// The kernels live in contrastive_fused_kernels.cuh (this file: the launch sequence and the C
// entry points; SupCon's label sort and numbering are contrastive_classes.cu's, shared with the
// chunked path), which tests/test_contrastive_kernels.cpp also runs on the CPU, a thread per CUDA
// thread.
// Determinism: every sum has one order (products over D in increasing k, each lane's terms in
// increasing j, fixed butterflies), no float atomics; CUB's radix
// sort is stable. The file is compiled with -fmad=false: only the explicit fmaf() calls fuse,
// exactly as tests/test_contrastive_math.c's CPU emulation of this algorithm does.
// Cost: forward 2·M²·D flops and M² exponentials, backward 4·M²·D and M² (2·M² with the online
// maximum). Extra memory: O(M).
#include "contrastive_wmma_kernels.cuh"

namespace closs {
namespace {

template <typename T, bool kFixed>
cudaError_t launch_backward(const closs_contrastive_launch &job, unsigned tiles, cudaStream_t stream) {
    if (job.dim <= 64) backward_kernel<T, kFixed, 64><<<tiles, kThreads, 0, stream>>>(job);
    else if (job.dim <= 128) backward_kernel<T, kFixed, 128><<<tiles, kThreads, 0, stream>>>(job);
    else backward_kernel<T, kFixed, CLOSS_FUSED_MAX_DIM><<<tiles, kThreads, 0, stream>>>(job);
    return cudaGetLastError();
}

// A similarity pass by the SIMT kernels, over the job's range: the backward's rows, the forward's
// lse.
template <typename T, bool kFixed>
cudaError_t simt_similarity_pass(const closs_contrastive_launch &job, bool backward, cudaStream_t stream) {
    const int64_t anchors = backward ? job.row_count : job.lse_count;
    const unsigned tiles = (unsigned)((anchors + kTile - 1) / kTile);
    if (backward) return launch_backward<T, kFixed>(job, tiles, stream);
    forward_kernel<T, kFixed><<<tiles, kThreads, 0, stream>>>(job);
    return cudaGetLastError();
}

// One tensor-core pass (f16, bf16) over the anchors [begin, end), its dynamic shared memory
// allowed past the default 48 KB first.
template <typename Kernel>
cudaError_t launch_wmma(Kernel kernel, size_t shared_bytes, const closs_contrastive_launch &job, int64_t begin,
                        int64_t end, cudaStream_t stream) {
    cudaError_t status = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)shared_bytes);
    if (status != cudaSuccess) return status;
    const unsigned blocks = (unsigned)((end - begin + kAnchorRows - 1) / kAnchorRows);
    kernel<<<blocks, kWmmaThreads, shared_bytes, stream>>>(job, begin, end);
    return cudaGetLastError();
}

template <typename T, bool kFixed, int kDim>
cudaError_t wmma_pass(const closs_contrastive_launch &job, bool backward, cudaStream_t stream) {
    using Shared = WmmaShared<kDim>;
    return backward ? launch_wmma(wmma_backward_kernel<T, kFixed, kDim>, Shared::backward_bytes, job, job.row_begin,
                                  job.row_begin + job.row_count, stream)
                    : launch_wmma(wmma_forward_kernel<T, kFixed, kDim>, Shared::forward_bytes, job, job.lse_begin,
                                  job.lse_begin + job.lse_count, stream);
}

// bf16 WMMA needs sm_80 (f16's sm_70 is below every architecture CUDA 13 builds for).
bool bf16_wmma_on_device() {
    int device = 0, major = 0;
    return cudaGetDevice(&device) == cudaSuccess &&
           cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) == cudaSuccess && major >= 8;
}

// A similarity pass on tensor cores; the backward's first needs each anchor's factor in G.
template <typename T, bool kFixed>
cudaError_t wmma_similarity_pass(const closs_contrastive_launch &job, bool backward, cudaStream_t stream) {
    if (backward) softmax_factors_kernel<kFixed><<<grid_for(job.rows, kBlock), kBlock, 0, stream>>>(job);
    switch (wmma_dim_variant(job.dim)) {
    case 64: return wmma_pass<T, kFixed, 64>(job, backward, stream);
    case 128: return wmma_pass<T, kFixed, 128>(job, backward, stream);
    default: return wmma_pass<T, kFixed, CLOSS_FUSED_MAX_DIM>(job, backward, stream);
    }
}

// The similarity pass of the forward or the backward: f32 on the SIMT kernels (its contract
// tolerance a 16-bit product cannot meet; see the README), f16 on tensor cores (every target CUDA
// 13 builds has them, so f16 has no SIMT kernels), bf16 on tensor cores from sm_80 and SIMT before.
template <typename T, bool kFixed>
cudaError_t similarity_pass(const closs_contrastive_launch &job, bool backward, cudaStream_t stream) {
    if constexpr (std::is_same<T, __half>::value) {
        return wmma_similarity_pass<T, kFixed>(job, backward, stream);
    } else {
        if constexpr (std::is_same<T, __nv_bfloat16>::value)
            if (bf16_wmma_on_device()) return wmma_similarity_pass<T, kFixed>(job, backward, stream);
        return simt_similarity_pass<T, kFixed>(job, backward, stream);
    }
}

template <typename T, bool kFixed>
cudaError_t run(const closs_contrastive_launch &job, cudaStream_t stream) {
    cudaError_t status = cudaMemsetAsync(job.nonfinite, 0, sizeof *job.nonfinite, stream);
    if (status != cudaSuccess) return status;
    const int warps_per_block = kBlock / kWarpSize;
    embed_kernel<T><<<grid_for(job.rows, warps_per_block), kBlock, 0, stream>>>(job);
    status = closs_launch_contrastive_classes(&job, stream);
    if (status != cudaSuccess) return status;

    if (job.forward) {
        status = similarity_pass<T, kFixed>(job, false, stream);
        if (status != cudaSuccess) return status;
        anchor_loss_kernel<<<grid_for(job.row_count, kBlock), kBlock, 0, stream>>>(job);
    }
    // The valid count is needed by MEAN's weights in a backward-only call too.
    finish_loss_kernel<<<1, kBlock, 0, stream>>>(job);
    if (job.grad) {
        if (job.factor_max) CLOSS_TRY_CUDA(cudaMemsetAsync(job.factor_max, 0, sizeof *job.factor_max, stream));
        anchor_weights_kernel<<<grid_for(job.rows, kBlock), kBlock, 0, stream>>>(job);
        return similarity_pass<T, kFixed>(job, true, stream);
    }
    return cudaGetLastError();
}

template <typename T> cudaError_t run_for_shift(const closs_contrastive_launch &job, cudaStream_t stream) {
    return job.fixed_shift ? run<T, true>(job, stream) : run<T, false>(job, stream);
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
