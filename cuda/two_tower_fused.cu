// CLIP and SigLIP on the GPU, the FUSED path: logit tiles live in registers and shared memory, and
// no N × (N + K) (or chunk × (N + K)) matrix is ever written. The walks run on the tile engine
// (two_tower_tile_kernels.cuh: mma.sync, float accumulation) for bf16 and for f16's CLIP
// forward at D ≤ 512 where the loaded code and the device allow (tile_dispatch.h), else on the
// float SIMT kernels (two_tower_fused_kernels.cuh: f32, f16's backward and SigLIP, pre-sm_80
// code, devices whose shared memory does not fit; 16-bit rows read as they are and widened). The
// math is at the top of two_tower_math.h, the tile schedules at the tops of the kernel headers.
//
// Launch sequence (one stream, in this order; N pairs, R = N + K rows of b, D ≤ 512):
//   embed             ‖row‖ and 1/‖row‖ of every row of a and b (NaN for a non-finite row)
//   positives         c_ii, one warp per pair
//   forward (CLIP)    walk a over b: n_i; when symmetric, walk b over a: m_j (the transposed walk:
//                     the column statistics without per-block partials, bench/NOTES.md says why);
//                     then pair_loss (ℓ_i) and finish_loss (the reduction, one block)
//   forward (SigLIP)  walk a over b: Σ_{j≠i} softplus(x_ij); pair_loss adds softplus(−x_ii) — or,
//                     when a backward follows, the backward's walk over a does this on the way
//   backward          prepare_backward (every row's factor and lse of G), then
//                     walk a over b: ∂/∂a of the range's pairs and their shares of ∂/∂s (∂/∂β),
//                       finish_scalars (one block, fixed order);
//                     walk b over a: ∂/∂b of the range's partners, then of its extra negatives.
// A gradient that is not asked for skips its walk (∂/∂a's walk also serves the scalars and a
// SigLIP forward); a walk without anchors (no extra negatives) is not launched. Launches per
// forward+backward call with K > 0: CLIP 12 (symmetric), SigLIP 9; one fewer with K = 0.
// With a row range (closs.h "Two-tower row ranges") the forward's walks cover the range's pairs
// (all N when a backward follows: it needs every statistic), the backward's the range's rows.
// Cost, forward+backward, CLIP symmetric, R = N + K: the tiles of c in 4 walks, (6·N·R + 2·N²)·D
// flops, and the two gradient products, 2·N·R·D each: 10·N·R·D + 2·N²·D in all, 6 GEMMs' worth
// of 2·N²·D at K = 0 (SigLIP: 8·N·R·D, no statistics walk); exponentials N·R + N² forward (one
// per element and walk), 4·N·R backward (two per element and walk). Extra memory: O(N + K).
// Determinism: every sum has one order (products over D in increasing k, each lane's terms in
// increasing column, fixed butterflies, the per-pair shares summed by one block in double), no
// atomics. Compiled with -fmad=false: the CPU harness (tests/test_two_tower_kernels.cpp, built
// with -ffp-contract=off) then rounds as the GPU does, up to expf/logf's last bits.
#include <stdlib.h>

#include <type_traits>

#include "tile_dispatch.h"
#include "two_tower_fused_kernels.cuh"
#include "two_tower_tile_kernels.cuh"

namespace closs {
namespace {

// A walk by the SIMT kernels.
template <typename T, bool kSiglip>
cudaError_t simt_walk(const closs_two_tower_launch &job, const TwoTowerWalk &walk, bool backward,
                      int64_t anchors, cudaStream_t stream) {
    if (!backward) {
        forward_walk_kernel<T, kSiglip>
            <<<(unsigned)((anchors + kTtTile - 1) / kTtTile), kTtThreads, 0, stream>>>(job, walk);
        return cudaGetLastError();
    }
    return with_backward_variant(job.dim, [&](auto rows, auto max_dim) {
        constexpr int kRows = decltype(rows)::value;
        backward_walk_kernel<T, kSiglip, kRows, decltype(max_dim)::value>
            <<<(unsigned)((anchors + kRows - 1) / kRows), kTtThreads, 0, stream>>>(job, walk);
        return cudaGetLastError();
    });
}

// A walk on the tile engine (two_tower_tile_kernels.cuh), with its launch shape.
struct EngineWalk {
    void (*kernel)(closs_two_tower_launch, TwoTowerWalk);
    int threads, anchor_rows;
    size_t shared_bytes;
};

template <typename T, bool kSiglip, int kDim> EngineWalk engine_walk(bool backward) {
    using Forward = TtForwardShape<kDim>;
    using Backward = TtBackwardShape<kDim>;
    if constexpr (std::is_same<T, __nv_bfloat16>::value) // f16's backward keeps the SIMT walks
        if (backward)
            return {tile_backward_walk_kernel<T, kSiglip, kDim>, Backward::kThreads,
                    Backward::kAnchorRows, Backward::kBytes};
    return {tile_forward_walk_kernel<T, kSiglip, kDim>, Forward::kThreads, Forward::kAnchorRows,
            Forward::kBytes};
}

// One walk of the plan: on the tile engine where it has the walk (tt_engine_walk) and the loaded
// code and the device allow it (tile_dispatch.h; no WMMA family here: CLOSS_TILE_KERNELS=simt
// alone changes the choice), else on the SIMT kernels.
template <typename T, bool kSiglip>
cudaError_t run_walk(const closs_two_tower_launch &job, const TwoTowerWalk &walk, bool backward,
                     cudaStream_t stream) {
    const int64_t anchors = walk.anchor_end - walk.anchor_begin;
    if (anchors <= 0) return cudaSuccess;
    if constexpr (kTtEngineLoss<T, kSiglip>) {
        if (!tt_engine_walk<T, kSiglip>(job.dim, backward))
            return simt_walk<T, kSiglip>(job, walk, backward, anchors, stream);
        auto walk_of = [&](bool backward_walk) {
            return with_engine_dim(job.dim, [&](auto dim) {
                return engine_walk<T, kSiglip, decltype(dim)::value>(backward_walk);
            });
        };
        auto family_of = [&](const EngineWalk &w) {
            const closs_tile_candidate none = {0, 0};
            return closs_choose_tile_kernels(closs_tile_preference(getenv("CLOSS_TILE_KERNELS")),
                                             std::is_same<T, __nv_bfloat16>::value,
                                             closs_describe_tile_kernel(w.kernel, w.shared_bytes),
                                             none);
        };
        const EngineWalk k = walk_of(backward);
        closs_tile_kernels family = family_of(k);
        if (kSiglip) // a forward's loss bits as a forward+backward's (tile_dispatch.h)
            family = closs_siglip_walk_kernels(
                family, tt_engine_walk<T, kSiglip>(job.dim, !backward) ? family_of(walk_of(!backward))
                                                                       : CLOSS_TILE_SIMT);
        if (family == CLOSS_TILE_ENGINE) {
            k.kernel<<<(unsigned)((anchors + k.anchor_rows - 1) / k.anchor_rows), k.threads,
                       k.shared_bytes, stream>>>(job, walk);
            return cudaGetLastError();
        }
    }
    return simt_walk<T, kSiglip>(job, walk, backward, anchors, stream);
}

template <typename T, bool kSiglip>
cudaError_t run(const closs_two_tower_launch &job, cudaStream_t stream) {
    return run_on_gpu<T>(job, stream, [&](const TwoTowerWalk &walk, bool backward) {
        return run_walk<T, kSiglip>(job, walk, backward, stream);
    });
}

template <typename T> cudaError_t run_loss(const closs_two_tower_launch &job, cudaStream_t stream) {
    return job.siglip ? run<T, true>(job, stream) : run<T, false>(job, stream);
}

} // namespace
} // namespace closs

extern "C" size_t closs_two_tower_engine_shared_bytes(int backward, int64_t dim) {
    using namespace closs; // the sizes depend on neither the dtype nor the loss
    return with_engine_dim(dim, [&](auto padded) {
        constexpr int kDim = decltype(padded)::value;
        return backward ? TtBackwardShape<kDim>::kBytes : TtForwardShape<kDim>::kBytes;
    });
}

extern "C" cudaError_t closs_launch_two_tower_fused(const closs_two_tower_launch *job,
                                                    cudaStream_t stream) {
    switch (job->dtype) {
    case CLOSS_F16: return closs::run_loss<__half>(*job, stream);
    case CLOSS_BF16: return closs::run_loss<__nv_bfloat16>(*job, stream);
    default: return closs::run_loss<float>(*job, stream);
    }
}
