// A column-major model of the two cuBLAS entry points the chunked path calls, cublasSgemm and
// cublasGemmEx (cuda/contrastive_chunked_products.cuh), written from the cuBLAS documentation
// ("cublas<t>gemm()", "cublasGemmEx()"), so that tests run the library's own calls on the CPU.
// Include once, in one test file, after <cublas_v2.h>: it defines the entry points themselves
// (cublasSgemm_v2, cublasGemmEx; the test is not linked with cuBLAS) and the handle's struct.
//
// What it does, as the documentation defines it:
//   C = α·op(A)·op(B) + β·C, op(A) m × k, op(B) k × n, C m × n, all column-major: element (i, j)
//   of a matrix with leading dimension ld at [i + j·ld]; op(X) = X for CUBLAS_OP_N, Xᵀ for
//   CUBLAS_OP_T (and CUBLAS_OP_C, the same for real types). β = 0: C is not read (it need not
//   hold valid numbers), so NaN there does not leak into the result.
//   Statuses: CUBLAS_STATUS_NOT_INITIALIZED for a NULL handle; CUBLAS_STATUS_INVALID_VALUE for
//   m, n or k < 0, a transa/transb that is not N, T or C, lda < max(1, m) (transa N) or
//   max(1, k) (otherwise), ldb < max(1, k) (transb N) or max(1, n) (otherwise), ldc < max(1, m),
//   or α or β NULL; GemmEx: CUBLAS_STATUS_NOT_SUPPORTED for a combination of types its table does
//   not list (the model knows the ones closs may use: compute CUBLAS_COMPUTE_32F with A = B of
//   CUDA_R_32F, CUDA_R_16F or CUDA_R_16BF and C of CUDA_R_32F or the operands' type).
//   m, n or k = 0: nothing is read; k = 0 (or α = 0) still sets C = β·C.
// The sum: float, in the order of k (CUBLAS_COMPUTE_32F; cuBLAS's own order differs, by rounding);
// 16-bit operands exact in float.
// What the model checks beyond cuBLAS: every element it reads or writes must lie inside memory
// the test registered with the handle (Handle::allow), else cublas_model::OutOfBounds is thrown
// naming the call, the matrix and the element: a wrong leading dimension or transpose that
// cuBLAS would run without a status (reading a neighbour's rows, or past an allocation) is caught.
// It counts the calls (Handle::calls) and keeps the stream and workspace the caller set.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

struct cublasContext {
    struct Region {
        const char *name;
        uintptr_t begin, end;
    };
    std::vector<Region> memory; // what the calls may touch
    int calls = 0;
};

namespace cublas_model {

using Handle = cublasContext;

struct OutOfBounds : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// The memory a call may read or write: [data, data + bytes).
inline void allow(Handle &handle, const char *name, const void *data, size_t bytes) {
    handle.memory.push_back({name, (uintptr_t)data, (uintptr_t)data + bytes});
}
template <typename V> void allow(Handle &handle, const char *name, const std::vector<V> &v) {
    allow(handle, name, v.data(), v.size() * sizeof(V));
}

inline size_t type_bytes(cudaDataType_t type) { return type == CUDA_R_32F ? 4 : 2; }

// One column-major matrix argument: its base, type and leading dimension.
struct Matrix {
    const char *call, *name;
    const Handle &handle;
    const void *data;
    cudaDataType_t type;
    int ld;

    const void *at(int64_t row, int64_t column) const {
        const size_t bytes = type_bytes(type);
        const uintptr_t address =
            (uintptr_t)data + (uintptr_t)((row + column * (int64_t)ld) * (int64_t)bytes);
        for (const auto &region : handle.memory)
            if (address >= region.begin && address + bytes <= region.end)
                return (const void *)address;
        throw OutOfBounds(std::string(call) + ": " + name + "(" + std::to_string(row) + ", " +
                          std::to_string(column) + ") with ld " + std::to_string(ld) +
                          " lies outside every buffer the test allowed");
    }
    float load(int64_t row, int64_t column) const {
        const void *p = at(row, column);
        switch (type) {
        case CUDA_R_16F: return __half2float(*static_cast<const __half *>(p));
        case CUDA_R_16BF: return __bfloat162float(*static_cast<const __nv_bfloat16 *>(p));
        default: return *static_cast<const float *>(p);
        }
    }
    void store(int64_t row, int64_t column, float value) const {
        void *p = const_cast<void *>(at(row, column));
        switch (type) {
        case CUDA_R_16F: *static_cast<__half *>(p) = __float2half_rn(value); break;
        case CUDA_R_16BF: *static_cast<__nv_bfloat16 *>(p) = __float2bfloat16_rn(value); break;
        default: *static_cast<float *>(p) = value;
        }
    }
};

inline bool valid_operation(cublasOperation_t op) {
    return op == CUBLAS_OP_N || op == CUBLAS_OP_T || op == CUBLAS_OP_C;
}
inline int at_least_one(int v) { return v > 1 ? v : 1; }

// The gemm both entry points share, after their own type checks.
inline cublasStatus_t gemm(const char *call, Handle *handle, cublasOperation_t transa,
                           cublasOperation_t transb, int m, int n, int k, const float *alpha,
                           const void *A, cudaDataType_t Atype, int lda, const void *B,
                           cudaDataType_t Btype, int ldb, const float *beta, void *C,
                           cudaDataType_t Ctype, int ldc) {
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (m < 0 || n < 0 || k < 0 || !valid_operation(transa) || !valid_operation(transb) ||
        lda < at_least_one(transa == CUBLAS_OP_N ? m : k) ||
        ldb < at_least_one(transb == CUBLAS_OP_N ? k : n) || ldc < at_least_one(m) || !alpha ||
        !beta)
        return CUBLAS_STATUS_INVALID_VALUE;
    ++handle->calls;
    const Matrix a{call, "A", *handle, A, Atype, lda}, b{call, "B", *handle, B, Btype, ldb},
        c{call, "C", *handle, C, Ctype, ldc};
    for (int64_t j = 0; j < n; ++j)
        for (int64_t i = 0; i < m; ++i) {
            float sum = 0.0f;
            if (*alpha != 0.0f)
                for (int64_t l = 0; l < k; ++l)
                    sum += (transa == CUBLAS_OP_N ? a.load(i, l) : a.load(l, i)) *
                           (transb == CUBLAS_OP_N ? b.load(l, j) : b.load(j, l));
            const float product = *alpha * sum;
            c.store(i, j, *beta == 0.0f ? product : product + *beta * c.load(i, j));
        }
    return CUBLAS_STATUS_SUCCESS;
}

} // namespace cublas_model

extern "C" cublasStatus_t cublasSgemm_v2(cublasHandle_t handle, cublasOperation_t transa,
                                         cublasOperation_t transb, int m, int n, int k,
                                         const float *alpha, const float *A, int lda,
                                         const float *B, int ldb, const float *beta, float *C,
                                         int ldc) {
    return cublas_model::gemm("cublasSgemm", handle, transa, transb, m, n, k, alpha, A, CUDA_R_32F,
                              lda, B, CUDA_R_32F, ldb, beta, C, CUDA_R_32F, ldc);
}

extern "C" cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa,
                                       cublasOperation_t transb, int m, int n, int k,
                                       const void *alpha, const void *A, cudaDataType Atype,
                                       int lda, const void *B, cudaDataType Btype, int ldb,
                                       const void *beta, void *C, cudaDataType Ctype, int ldc,
                                       cublasComputeType_t computeType, cublasGemmAlgo_t algo) {
    const bool known_operand = Atype == CUDA_R_32F || Atype == CUDA_R_16F || Atype == CUDA_R_16BF;
    if (computeType != CUBLAS_COMPUTE_32F || !known_operand || Btype != Atype ||
        (Ctype != CUDA_R_32F && Ctype != Atype))
        return CUBLAS_STATUS_NOT_SUPPORTED;
    (void)algo; // a choice of kernel, not of result
    // CUBLAS_COMPUTE_32F: α and β are float
    return cublas_model::gemm("cublasGemmEx", handle, transa, transb, m, n, k,
                              static_cast<const float *>(alpha), A, Atype, lda, B, Btype, ldb,
                              static_cast<const float *>(beta), C, Ctype, ldc);
}
