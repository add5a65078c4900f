// NT-Xent and SupCon on the GPU, the FUSED path: similarity tiles live in shared memory and
// registers, and no M × M (or chunk × M) matrix is ever written. f16 and bf16 inputs take the tile
// engine's kernels (contrastive_tile_kernels.cuh on tile_engine.cuh: mma.sync, float accumulation;
// their math and tile schedule are at their tops) for the two similarity passes where the loaded
// code and the device allow, else the WMMA kernels (contrastive_wmma_kernels.cuh) or the SIMT
// ones (tile_dispatch.h); f32 takes the SIMT kernels, float throughout. Everything else is
// shared.
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
//                    merges the 16 lanes of a row (f16, bf16: tile_forward_kernel, 8 warps per
//                    256 anchors at D ≤ 128, per 128 at D = 256, on mma.sync)
//   anchor_loss      ℓ_i from lse_i and the positive sum; one thread per anchor
//   finish_loss      the reduction and `valid` (contrastive_kernels.cuh)
//   anchor_weights   w_i, a_i (contrastive_kernels.cuh)
//   backward_kernel  one block per 64 anchor rows: per column tile the S tile again, G into
//                    shared memory, then dẑ_rows += G·ẑ_cols (16 rows of ẑ at a time, all of D),
//                    held in registers (D/4 floats a thread, so D ≤ 256); last the
//                    normalisation's backward and the store in the input dtype
//                    (f16, bf16: softmax_factors_kernel for each row's factor in G and their
//                    scale β, then tile_backward_kernel, 8 warps per 128 anchors).
// Launches per call (forward+backward): NT-Xent 7 (+1 memset) for f32, 8 (+2 memsets) for f16 and
// bf16; SupCon adds the label sort and numbering (a copy, 3 kernels, CUB's sort and scan).
// With a row range (closs.h "Row ranges") the forward's blocks cover the range's anchors (all rows
// when a backward follows: it needs every lse), anchor_loss the range, the backward's blocks the
// range's rows; the column tiles always run over all M rows.
// The kernels live in contrastive_fused_kernels.cuh and the tensor-core headers (this file: the
// launch sequence, the choice of kernels and the C entry points; SupCon's label sort and numbering
// are contrastive_classes.cu's, shared with the chunked path), which
// tests/test_contrastive_kernels.cpp also runs on the CPU harness, a fiber per CUDA thread.
// Determinism: every sum has one order (products over D in increasing k, each lane's terms in
// increasing j, fixed butterflies), no float atomics; CUB's radix
// sort is stable. The file is compiled with -fmad=false: only the explicit fmaf() calls fuse,
// exactly as tests/test_contrastive_math.c's CPU emulation of this algorithm does.
// Cost: forward 2·M²·D flops and M² exponentials, backward 4·M²·D and M² (2·M² with the online
// maximum). Extra memory: O(M).
#include <stdlib.h>

#include "contrastive_tile_kernels.cuh"
#include "contrastive_wmma_kernels.cuh"
#include "tile_dispatch.h"

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

// A tensor-core kernel with its launch shape: threads and anchor rows per block, dynamic shared
// memory.
struct TensorKernel {
    void (*kernel)(closs_contrastive_launch, int64_t, int64_t);
    int threads, anchor_rows;
    size_t shared_bytes;
};

template <typename T, bool kFixed, int kDim> TensorKernel engine_kernel(bool backward) {
    using Forward = TileForwardShape<kDim>;
    using Backward = TileBackwardShape<kDim>;
    return backward ? TensorKernel{tile_backward_kernel<T, kFixed, kDim>, Backward::kThreads, Backward::kAnchorRows,
                                   Backward::kBytes}
                    : TensorKernel{tile_forward_kernel<T, kFixed, kDim>, Forward::kThreads, Forward::kAnchorRows,
                                   Forward::kBytes};
}

template <typename T, bool kFixed, int kDim> TensorKernel wmma_kernel(bool backward) {
    using Shared = WmmaShared<kDim>;
    return backward ? TensorKernel{wmma_backward_kernel<T, kFixed, kDim>, kWmmaThreads, kAnchorRows,
                                   Shared::backward_bytes}
                    : TensorKernel{wmma_forward_kernel<T, kFixed, kDim>, kWmmaThreads, kAnchorRows,
                                   Shared::forward_bytes};
}

// What the loaded binary holds of `k` for the current device (tile_dispatch.h).
closs_tile_candidate describe(const TensorKernel &k) { return closs_describe_tile_kernel(k.kernel, k.shared_bytes); }

// One tensor-core pass over the anchors [begin, end) (describe() has allowed its dynamic shared
// memory past the default 48 KB).
cudaError_t launch_tensor(const TensorKernel &k, const closs_contrastive_launch &job, int64_t begin, int64_t end,
                          cudaStream_t stream) {
    const unsigned blocks = (unsigned)((end - begin + k.anchor_rows - 1) / k.anchor_rows);
    k.kernel<<<blocks, k.threads, k.shared_bytes, stream>>>(job, begin, end);
    return cudaGetLastError();
}

// A similarity pass of 16-bit inputs: the tile engine, the WMMA kernels or the SIMT kernels, the
// first of them that the loaded binary has real code for on this device and whose shared memory
// fits (tile_dispatch.h); the tensor-core backward first needs each row's factor in G.
template <typename T, bool kFixed, int kDim>
cudaError_t tensor_pass(const closs_contrastive_launch &job, bool backward, cudaStream_t stream) {
    const TensorKernel engine = engine_kernel<T, kFixed, kDim>(backward), wmma = wmma_kernel<T, kFixed, kDim>(backward);
    const closs_tile_kernels family = closs_choose_tile_kernels(closs_tile_preference(getenv("CLOSS_TILE_KERNELS")),
                                                                std::is_same<T, __nv_bfloat16>::value, describe(engine),
                                                                describe(wmma));
    if (family == CLOSS_TILE_SIMT) return simt_similarity_pass<T, kFixed>(job, backward, stream);
    if (backward) softmax_factors_kernel<kFixed><<<grid_for(job.rows, kBlock), kBlock, 0, stream>>>(job);
    const TensorKernel &k = family == CLOSS_TILE_ENGINE ? engine : wmma;
    return backward ? launch_tensor(k, job, job.row_begin, job.row_begin + job.row_count, stream)
                    : launch_tensor(k, job, job.lse_begin, job.lse_begin + job.lse_count, stream);
}

// The similarity pass of the forward or the backward: f32 on the SIMT kernels (its contract
// tolerance a 16-bit product cannot meet; see the README), f16 and bf16 on tensor cores where the
// device and the binary allow (tensor_pass).
template <typename T, bool kFixed>
cudaError_t similarity_pass(const closs_contrastive_launch &job, bool backward, cudaStream_t stream) {
    if constexpr (std::is_same<T, float>::value) {
        return simt_similarity_pass<T, kFixed>(job, backward, stream);
    } else {
        switch (wmma_dim_variant(job.dim)) {
        case 64: return tensor_pass<T, kFixed, 64>(job, backward, stream);
        case 128: return tensor_pass<T, kFixed, 128>(job, backward, stream);
        default: return tensor_pass<T, kFixed, CLOSS_FUSED_MAX_DIM>(job, backward, stream);
        }
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
        if constexpr (std::is_same<T, __half>::value) // host/gpu_contrastive.c: f16 only
            if (job.z_scaled) scale_rows_kernel<T><<<grid_for(job.rows, warps_per_block), kBlock, 0, stream>>>(job);
        return similarity_pass<T, kFixed>(backward_job(job), true, stream); // f16: z′ and r′ (launch.h)
    }
    return cudaGetLastError();
}

template <typename T> cudaError_t run_for_shift(const closs_contrastive_launch &job, cudaStream_t stream) {
    return job.fixed_shift ? run<T, true>(job, stream) : run<T, false>(job, stream);
}

} // namespace
} // namespace closs

extern "C" size_t closs_tensor_kernel_shared_bytes(int wmma, int backward, int64_t dim) {
    using namespace closs; // the sizes depend on neither the dtype nor the shift
    auto bytes = [&](auto kernels_of_dim) { return kernels_of_dim(backward).shared_bytes; };
    switch (wmma_dim_variant(dim)) {
    case 64: return wmma ? bytes(wmma_kernel<__half, true, 64>) : bytes(engine_kernel<__half, true, 64>);
    case 128: return wmma ? bytes(wmma_kernel<__half, true, 128>) : bytes(engine_kernel<__half, true, 128>);
    default: return wmma ? bytes(wmma_kernel<__half, true, 256>) : bytes(engine_kernel<__half, true, 256>);
    }
}

extern "C" cudaError_t closs_launch_contrastive_fused(const closs_contrastive_launch *job, cudaStream_t stream) {
    switch (job->dtype) {
    case CLOSS_F16: return closs::run_for_shift<__half>(*job, stream);
    case CLOSS_BF16: return closs::run_for_shift<__nv_bfloat16>(*job, stream);
    default: return closs::run_for_shift<float>(*job, stream);
    }
}
