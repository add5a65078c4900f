// The CHUNKED path's kernels for CLIP and SigLIP (two_tower_chunked.cu has the order of work and
// the cuBLAS calls): a block of c = P̂_chunk·Q̂_columnsᵀ, which cuBLAS wrote, becomes each anchor's
// statistic or loss (forward), or G in place with each row's shares of ∂/∂s and ∂/∂β (backward);
// after the second product, the gradient rows get their pair's own term, s and the normalisation's
// backward. The walks are those of the FUSED path (TwoTowerWalk, plan_of) and the formulas the
// same functions (two_tower_math.h). A header of its own so that tests/test_two_tower_kernels.cpp
// runs these very kernels on the CPU harness, with the cuBLAS calls (two_tower_chunked_products.cuh)
// run by tests/cublas_model.h.
#pragma once

#include "two_tower_kernels.cuh"

namespace closs {
namespace {

struct TwoTowerLseMerge {
    __device__ closs_lse_partial operator()(closs_lse_partial x, closs_lse_partial y) const {
        return closs_tt_lse_merge(x, y);
    }
};

// Forward, one block per anchor row first + blockIdx.x of the walk: CLIP's statistic (the online
// log-sum-exp of its columns but its partner) or SigLIP's Σ_{j≠i} softplus(x_ij), into walk.out.
// `block` holds the chunk's rows of c, walk.column_end − walk.column_begin values each.
template <bool kSiglip>
__global__ void __launch_bounds__(kTwoTowerBlock)
    block_forward_kernel(const closs_two_tower_launch job, const TwoTowerWalk walk, int64_t first,
                         const float *block) {
    __shared__ closs_lse_partial merge_shared[kTwoTowerBlock];
    __shared__ float sum_shared[kTwoTowerBlock];
    const int64_t i = first + blockIdx.x, columns = walk.column_end - walk.column_begin;
    const float *row = block + (int64_t)blockIdx.x * columns;
    const float s = logit_scale_of(job), beta = logit_bias_of(job);
    closs_lse_partial lse = {-INFINITY, 0.0f};
    float loss = 0.0f;
    for (int64_t k = threadIdx.x; k < columns; k += kTwoTowerBlock) {
        if (walk.column_begin + k == i) continue; // the partner
        if constexpr (kSiglip) loss += closs_tt_softplus(fmaf(s, row[k], beta));
        else lse = closs_tt_lse_push(lse, s * row[k]);
    }
    float value;
    if constexpr (kSiglip) value = block_reduce(loss, sum_shared, TwoTowerAdd());
    else value = closs_tt_lse_value(block_reduce(lse, merge_shared, TwoTowerLseMerge()));
    if (threadIdx.x == 0) walk.out[i - walk.anchor_begin] = value;
}

// Backward, one block per anchor row: the chunk's row of c becomes G (0 on the diagonal, whose
// term the epilogue adds), in place; walking a, the row's shares of ∂/∂s and ∂/∂β, its own term
// included, and for a SigLIP forward the sum of its off-diagonal loss terms.
template <bool kSiglip>
__global__ void __launch_bounds__(kTwoTowerBlock)
    block_coefficients_kernel(const closs_two_tower_launch job, const TwoTowerWalk walk,
                              int64_t first, float *block) {
    __shared__ float sum_shared[kTwoTowerBlock];
    const int64_t i = first + blockIdx.x, columns = walk.column_end - walk.column_begin;
    float *row = block + (int64_t)blockIdx.x * columns;
    const float s = logit_scale_of(job), beta = logit_bias_of(job);
    const bool losses = kSiglip && walk.shares && job.forward;
    float row_factor, row_lse;
    if (kSiglip && !walk.anchors_are_a) row_factor = 0.0f, row_lse = INFINITY; // w is the columns'
    else g_factors(job, walk.anchors_are_a, i, &row_factor, &row_lse);
    float scale_share = 0.0f, bias_share = 0.0f, loss = 0.0f;
    for (int64_t k = threadIdx.x; k < columns; k += kTwoTowerBlock) {
        const int64_t j = walk.column_begin + k;
        float g = 0.0f;
        if (j != i) {
            float column_factor, column_lse;
            g_factors(job, !walk.anchors_are_a, j, &column_factor, &column_lse);
            if constexpr (kSiglip) {
                const closs_tt_siglip_element element = closs_tt_siglip(
                    fmaf(s, row[k], beta), walk.anchors_are_a ? row_factor : column_factor, 0);
                g = element.coefficient;
                if (losses) loss += element.loss;
                bias_share += g;
            } else {
                g = closs_tt_clip_coefficient(s * row[k], row_factor, row_lse, column_factor,
                                              column_lse);
            }
            scale_share = fmaf(g, row[k], scale_share);
        }
        row[k] = g;
    }
    if (!walk.shares) return; // the same for the whole block
    scale_share = block_reduce(scale_share, sum_shared, TwoTowerAdd());
    if constexpr (kSiglip) {
        bias_share = block_reduce(bias_share, sum_shared, TwoTowerAdd());
        loss = block_reduce(loss, sum_shared, TwoTowerAdd());
    }
    if (threadIdx.x != 0) return;
    const float cosine = job.positives[i];
    const float g = diagonal_coefficient(job, i, fmaf(s, cosine, beta));
    job.scale_share[i] = fmaf(g, cosine, scale_share);
    if constexpr (kSiglip) {
        job.bias_share[i] = bias_share + g;
        if (losses) job.row_loss[i] = loss; // the pair's own term: pair_loss_kernel
    }
}

// The chunk's gradient rows, one warp per row: dẑ = s·(Σ G·(other rows) + G_ii·partner), then
// the normalisation's backward and the store in the input dtype. `block_grad` holds the product.
template <typename T>
__global__ void gradient_epilogue_kernel(const closs_two_tower_launch job, const TwoTowerWalk walk,
                                         int64_t first, int64_t chunk, const float *block_grad) {
    const int lane = threadIdx.x % kWarpSize;
    const int64_t warps = (int64_t)gridDim.x * (blockDim.x / kWarpSize);
    const float s = logit_scale_of(job), beta = logit_bias_of(job);
    const float *anchors = walk.anchors_are_a ? job.a_hat : job.b_hat;
    const float *partners = walk.anchors_are_a ? job.b_hat : job.a_hat;
    const float *norms = walk.anchors_are_a ? job.norms_a : job.norms_b;
    for (int64_t r = (int64_t)blockIdx.x * (blockDim.x / kWarpSize) + threadIdx.x / kWarpSize;
         r < chunk; r += warps) {
        const int64_t i = first + r;
        const bool pair = i < job.pairs;
        const float g = pair ? diagonal_coefficient(job, i, fmaf(s, job.positives[i], beta)) : 0.0f;
        const float *product = block_grad + r * job.dim;
        auto dzhat = [&](int64_t c) {
            const float sum = pair ? fmaf(g, partners[i * job.dim + c], product[c]) : product[c];
            return s * sum;
        };
        float radial = 0.0f;
        for (int64_t c = lane; c < job.dim; c += kWarpSize)
            radial = fmaf(anchors[i * job.dim + c], dzhat(c), radial);
        radial = warp_sum(radial);
        T *out = static_cast<T *>(walk.grad) + (i - walk.anchor_begin) * walk.grad_ld;
        for (int64_t c = lane; c < job.dim; c += kWarpSize)
            out[c] = from_float<T>(
                unembed(dzhat(c), anchors[i * job.dim + c], radial, norms[i], job.normalize));
    }
}

} // namespace
} // namespace closs
