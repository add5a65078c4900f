// The CHUNKED path's cuBLAS calls (contrastive.cu has the math, the order of work and the
// launches): the block of S and the gradient's block, one or two GEMMs each. A header of its own
// so that tests/test_contrastive_kernels.cpp runs these very calls on the CPU, against a
// column-major model of cuBLAS written from its documentation (tests/cublas_model.h), which checks
// every argument (transposes, m/n/k, leading dimensions, α/β, types) and every access.
//
// cuBLAS is column-major; the buffers here are row-major, so a row-major R × C matrix with row
// stride ld is, to cuBLAS, its C × R transpose with leading dimension ld:
//   S_c (chunk × M) = Ẑ_c·Ẑᵀ       as   S_cᵀ (M × chunk) = Ẑ·Ẑ_cᵀ,   Ẑ seen as D × M (op T)
//   dẐ_c (chunk × D) = G_c·Ẑ       as   dẐ_cᵀ (D × chunk) = Ẑᵀ·G_cᵀ, G_c seen as M × chunk
// f32 multiplies the float copy Ẑ (leading dimension D) by cublasSgemm; f16 and bf16 multiply the
// caller's rows z (leading dimension ld; backward_job's z′ and scaled_ld for f16 with
// normalisation) by cublasGemmEx into float, and the gradient's product is two GemmEx calls, G'high
// with β = 0 and G'low with β = 1 adding to it. host/gpu_contrastive.c has refused ld > INT_MAX
// (cuBLAS's int leading dimensions) before any call here.
#pragma once

#include <cublas_v2.h>
#include <stdint.h>

#include <type_traits>

#include "contrastive_kernels.cuh"

namespace closs {
namespace {

template <typename T> constexpr cudaDataType_t kCudaType = std::is_same<T, __half>::value ? CUDA_R_16F : CUDA_R_16BF;

// S_c for the anchors [first, first + chunk) against all rows, into job.similarity.
template <typename T>
cublasStatus_t similarity_chunk(const closs_contrastive_launch &job, cublasHandle_t cublas, int64_t first,
                                int64_t chunk) {
    const float one = 1.0f, zero = 0.0f;
    const int rows = (int)job.rows, dim = (int)job.dim;
    if constexpr (std::is_same<T, float>::value) {
        return cublasSgemm(cublas, CUBLAS_OP_T, CUBLAS_OP_N, rows, (int)chunk, dim, &one, job.zhat, dim,
                           job.zhat + first * job.dim, dim, &zero, job.similarity, rows);
    } else {
        const T *z = static_cast<const T *>(job.z);
        return cublasGemmEx(cublas, CUBLAS_OP_T, CUBLAS_OP_N, rows, (int)chunk, dim, &one, z, kCudaType<T>,
                            (int)job.ld, z + first * job.ld, kCudaType<T>, (int)job.ld, &zero, job.similarity,
                            CUDA_R_32F, rows, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    }
}

// dẐ_c for the chunk's rows, into job.dzhat, from G_c (f32, in job.similarity) or G'_c's halves.
template <typename T>
cublasStatus_t gradient_chunk(const closs_contrastive_launch &job, cublasHandle_t cublas, int64_t chunk) {
    const float one = 1.0f, zero = 0.0f;
    const int rows = (int)job.rows, dim = (int)job.dim;
    if constexpr (std::is_same<T, float>::value) {
        return cublasSgemm(cublas, CUBLAS_OP_N, CUBLAS_OP_N, dim, (int)chunk, rows, &one, job.zhat, dim,
                           job.similarity, rows, &zero, job.dzhat, dim);
    } else {
        const void *halves[2] = {job.coefficient_high, job.coefficient_low};
        for (int h = 0; h < 2; ++h) {
            const cublasStatus_t status =
                cublasGemmEx(cublas, CUBLAS_OP_N, CUBLAS_OP_N, dim, (int)chunk, rows, &one, job.z, kCudaType<T>,
                             (int)job.ld, halves[h], kCudaType<T>, rows, h == 0 ? &zero : &one, job.dzhat,
                             CUDA_R_32F, dim, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
            if (status != CUBLAS_STATUS_SUCCESS) return status;
        }
        return CUBLAS_STATUS_SUCCESS;
    }
}

} // namespace
} // namespace closs
