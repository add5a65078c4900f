// CLIP's and SigLIP's CHUNKED path, its cuBLAS calls (two_tower_chunked.cu has the math, the order
// of work and the launches): the block of c and the gradient's block, one SGEMM each. A header of
// its own so that tests/test_two_tower_kernels.cpp runs these very calls on the CPU, against a
// column-major model of cuBLAS written from its documentation (tests/cublas_model.h), which checks
// every argument (transposes, m/n/k, leading dimensions, α/β) and every access.
//
// cuBLAS is column-major; the buffers here are row-major, so a row-major R × C matrix with row
// stride ld is, to cuBLAS, its C × R transpose with leading dimension ld. P̂ are the walk's anchor
// rows, Q̂ its column rows (â or b̂, float, leading dimension D):
//   block (chunk × columns) = P̂_c·Q̂_colsᵀ  as  blockᵀ (columns × chunk) = Q̂_cols·P̂_cᵀ, Q̂ seen as D × R (op T)
//   block_grad (chunk × D) = G·Q̂_cols      as  block_gradᵀ (D × chunk) = Q̂_colsᵀ·Gᵀ, G seen as columns × chunk
// host/gpu_two_tower.c has refused N + K > INT_MAX and D > INT_MAX (cuBLAS's int sizes).
#pragma once

#include <cublas_v2.h>
#include <stdint.h>

#include "two_tower_kernels.cuh"

namespace closs {
namespace {

// The embedded rows of the walk's anchors and columns.
const float *anchor_rows(const closs_two_tower_launch &job, const TwoTowerWalk &walk) {
    return walk.anchors_are_a ? job.a_hat : job.b_hat;
}
const float *column_rows(const closs_two_tower_launch &job, const TwoTowerWalk &walk) {
    return walk.anchors_are_a ? job.b_hat : job.a_hat;
}

// block = P̂[first, + chunk)·Q̂[column_begin, column_end)ᵀ, row-major with leading dimension columns.
cublasStatus_t similarity_block(const closs_two_tower_launch &job, const TwoTowerWalk &walk, cublasHandle_t cublas,
                                int64_t first, int64_t chunk) {
    const float one = 1.0f, zero = 0.0f;
    const int columns = (int)(walk.column_end - walk.column_begin), dim = (int)job.dim;
    return cublasSgemm(cublas, CUBLAS_OP_T, CUBLAS_OP_N, columns, (int)chunk, dim, &one,
                       column_rows(job, walk) + walk.column_begin * job.dim, dim, anchor_rows(job, walk) + first * job.dim,
                       dim, &zero, job.block, columns);
}

// block_grad (chunk × D, row-major) = G·Q̂_columns, G the block (chunk × columns).
cublasStatus_t gradient_block(const closs_two_tower_launch &job, const TwoTowerWalk &walk, cublasHandle_t cublas,
                              int64_t chunk) {
    const float one = 1.0f, zero = 0.0f;
    const int columns = (int)(walk.column_end - walk.column_begin), dim = (int)job.dim;
    return cublasSgemm(cublas, CUBLAS_OP_N, CUBLAS_OP_N, dim, (int)chunk, columns, &one,
                       column_rows(job, walk) + walk.column_begin * job.dim, dim, job.block, columns, &zero,
                       job.block_grad, dim);
}

} // namespace
} // namespace closs
