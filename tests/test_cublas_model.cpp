// The column-major cuBLAS model (tests/cublas_model.h) itself, against what the cuBLAS
// documentation says of cublas<t>gemm and cublasGemmEx: a product worked by hand, each transpose
// against the row-major matrices its storage was built from, the statuses of invalid arguments,
// β = 0 not reading C (NaN there stays out), β = 1 adding, 16-bit operands, and an access past a
// buffer caught. test_contrastive_kernels runs the chunked path's own calls through it.
#include <cmath>
#include <vector>

#include <criterion/criterion.h>

#include "cublas_model.h"

static const float one = 1.0f, zero = 0.0f;

// A = [[1 2 3] [4 5 6]] (2 × 3), B = [[7 8] [9 10] [11 12]] (3 × 2), column-major:
// A·B = [[58 64] [139 154]].
Test(cublas_model, product_worked_by_hand) {
    cublas_model::Handle handle;
    std::vector<float> a = {1, 4, 2, 5, 3, 6}, b = {7, 9, 11, 8, 10, 12}, c(4, NAN);
    cublas_model::allow(handle, "a", a), cublas_model::allow(handle, "b", b), cublas_model::allow(handle, "c", c);
    cr_assert_eq(cublasSgemm(&handle, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 3, &one, a.data(), 2, b.data(), 3, &zero,
                             c.data(), 2),
                 CUBLAS_STATUS_SUCCESS);
    const float want[4] = {58, 139, 64, 154};
    for (int e = 0; e < 4; ++e) cr_expect_eq(c[e], want[e], "C[%d] = %g", e, c[e]);
    cr_expect_eq(handle.calls, 1);
}

// Every transpose pair, leading dimensions past the minimum, α = 2, β = 0.5 on a C that holds 1:
// against R·S from the row-major R (m × k) and S (k × n) the storage was filled from (op N: the
// matrix itself, column-major; op T: its transpose stored column-major).
Test(cublas_model, transposes_and_leading_dimensions) {
    const int m = 3, n = 4, k = 5, pad = 2;
    float r[m][k], s[k][n];
    for (int i = 0; i < m; ++i)
        for (int l = 0; l < k; ++l) r[i][l] = (float)(i * 7 + l * 3 % 5) - 4.0f;
    for (int l = 0; l < k; ++l)
        for (int j = 0; j < n; ++j) s[l][j] = (float)((l + 2 * j) % 6) - 2.5f;
    const cublasOperation_t ops[2] = {CUBLAS_OP_N, CUBLAS_OP_T};
    for (auto ta : ops)
        for (auto tb : ops) {
            cublas_model::Handle handle;
            const int lda = (ta == CUBLAS_OP_N ? m : k) + pad, ldb = (tb == CUBLAS_OP_N ? k : n) + pad,
                      ldc = m + pad;
            std::vector<float> a((size_t)lda * (ta == CUBLAS_OP_N ? k : m), NAN),
                b((size_t)ldb * (tb == CUBLAS_OP_N ? n : k), NAN), c((size_t)ldc * n, 1.0f);
            for (int i = 0; i < m; ++i)
                for (int l = 0; l < k; ++l) (ta == CUBLAS_OP_N ? a[i + l * lda] : a[l + i * lda]) = r[i][l];
            for (int l = 0; l < k; ++l)
                for (int j = 0; j < n; ++j) (tb == CUBLAS_OP_N ? b[l + j * ldb] : b[j + l * ldb]) = s[l][j];
            cublas_model::allow(handle, "a", a), cublas_model::allow(handle, "b", b);
            cublas_model::allow(handle, "c", c);
            const float alpha = 2.0f, beta = 0.5f;
            cr_assert_eq(cublasSgemm(&handle, ta, tb, m, n, k, &alpha, a.data(), lda, b.data(), ldb, &beta, c.data(),
                                     ldc),
                         CUBLAS_STATUS_SUCCESS);
            for (int i = 0; i < ldc; ++i)
                for (int j = 0; j < n; ++j) {
                    double want = 1.0; // the padding rows of C stay as they were
                    if (i < m) {
                        double sum = 0;
                        for (int l = 0; l < k; ++l) sum += (double)r[i][l] * s[l][j];
                        want = 2 * sum + 0.5;
                    }
                    cr_expect_eq(c[i + j * ldc], (float)want, "op %d %d: C(%d, %d) = %g, want %g", ta, tb, i, j,
                                 c[i + j * ldc], want);
                }
        }
}

// The documented statuses, and nothing written with them.
Test(cublas_model, invalid_arguments) {
    cublas_model::Handle handle;
    std::vector<float> a(64, 1.0f), b(64, 1.0f), c(64, 7.0f);
    cublas_model::allow(handle, "a", a), cublas_model::allow(handle, "b", b), cublas_model::allow(handle, "c", c);
    auto sgemm = [&](cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, int lda,
                     int ldb, int ldc, const float *alpha = &one, const float *beta = &zero) {
        return cublasSgemm(h, ta, tb, m, n, k, alpha, a.data(), lda, b.data(), ldb, beta, c.data(), ldc);
    };
    const cublasOperation_t N = CUBLAS_OP_N, T = CUBLAS_OP_T;
    cr_expect_eq(sgemm(nullptr, N, N, 2, 2, 2, 2, 2, 2), CUBLAS_STATUS_NOT_INITIALIZED);
    cr_expect_eq(sgemm(&handle, N, N, -1, 2, 2, 2, 2, 2), CUBLAS_STATUS_INVALID_VALUE);
    cr_expect_eq(sgemm(&handle, N, N, 2, -1, 2, 2, 2, 2), CUBLAS_STATUS_INVALID_VALUE);
    cr_expect_eq(sgemm(&handle, N, N, 2, 2, -1, 2, 2, 2), CUBLAS_STATUS_INVALID_VALUE);
    cr_expect_eq(sgemm(&handle, (cublasOperation_t)7, N, 2, 2, 2, 2, 2, 2), CUBLAS_STATUS_INVALID_VALUE);
    cr_expect_eq(sgemm(&handle, N, N, 3, 2, 2, 2, 2, 3), CUBLAS_STATUS_INVALID_VALUE);  // lda < m (op N)
    cr_expect_eq(sgemm(&handle, T, N, 2, 2, 3, 2, 3, 2), CUBLAS_STATUS_INVALID_VALUE);  // lda < k (op T)
    cr_expect_eq(sgemm(&handle, N, N, 2, 2, 3, 2, 2, 2), CUBLAS_STATUS_INVALID_VALUE);  // ldb < k (op N)
    cr_expect_eq(sgemm(&handle, N, T, 2, 3, 2, 2, 2, 2), CUBLAS_STATUS_INVALID_VALUE);  // ldb < n (op T)
    cr_expect_eq(sgemm(&handle, N, N, 3, 2, 2, 3, 2, 2), CUBLAS_STATUS_INVALID_VALUE);  // ldc < m
    cr_expect_eq(sgemm(&handle, N, N, 0, 0, 0, 0, 0, 0), CUBLAS_STATUS_INVALID_VALUE);  // ld < max(1, ·)
    cr_expect_eq(sgemm(&handle, N, N, 2, 2, 2, 2, 2, 2, nullptr), CUBLAS_STATUS_INVALID_VALUE);
    cr_expect_eq(sgemm(&handle, N, N, 2, 2, 2, 2, 2, 2, &one, nullptr), CUBLAS_STATUS_INVALID_VALUE);
    // GemmEx: operand types that differ, an unknown compute type
    cr_expect_eq(cublasGemmEx(&handle, N, N, 2, 2, 2, &one, a.data(), CUDA_R_16F, 2, b.data(), CUDA_R_16BF, 2, &zero,
                              c.data(), CUDA_R_32F, 2, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                 CUBLAS_STATUS_NOT_SUPPORTED);
    cr_expect_eq(cublasGemmEx(&handle, N, N, 2, 2, 2, &one, a.data(), CUDA_R_16F, 2, b.data(), CUDA_R_16F, 2, &zero,
                              c.data(), CUDA_R_32F, 2, CUBLAS_COMPUTE_16F, CUBLAS_GEMM_DEFAULT),
                 CUBLAS_STATUS_NOT_SUPPORTED);
    for (float v : c) cr_expect_eq(v, 7.0f, "C written by a refused call");
    cr_expect_eq(handle.calls, 0);
    cr_expect_eq(sgemm(&handle, T, T, 2, 3, 4, 4, 3, 2), CUBLAS_STATUS_SUCCESS); // the minimum each
    cr_expect_eq(handle.calls, 1);
}

// β = 0: C is not read (NaN there does not reach the result); β = 1 adds to it. 16-bit operands
// into float, as the chunked path's GemmEx calls: G'high then G'low.
Test(cublas_model, beta_and_16_bit_operands) {
    cublas_model::Handle handle;
    std::vector<__half> a = {__float2half(1.5f), __float2half(-2.0f)}, high = {__float2half(4.0f)},
                        low = {__float2half(0.0078125f)};
    std::vector<float> c(2, NAN);
    cublas_model::allow(handle, "a", a), cublas_model::allow(handle, "high", high);
    cublas_model::allow(handle, "low", low), cublas_model::allow(handle, "c", c);
    auto gemm = [&](const std::vector<__half> &g, const float *beta) {
        return cublasGemmEx(&handle, CUBLAS_OP_N, CUBLAS_OP_N, 2, 1, 1, &one, a.data(), CUDA_R_16F, 2, g.data(),
                            CUDA_R_16F, 1, beta, c.data(), CUDA_R_32F, 2, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    };
    cr_assert_eq(gemm(high, &zero), CUBLAS_STATUS_SUCCESS);
    cr_expect(c[0] == 6.0f && c[1] == -8.0f, "β = 0: %g %g", c[0], c[1]);
    cr_assert_eq(gemm(low, &one), CUBLAS_STATUS_SUCCESS);
    cr_expect(c[0] == 6.01171875f && c[1] == -8.015625f, "β = 1: %g %g", c[0], c[1]);
}

// A leading dimension that cuBLAS accepts but that walks past the buffer: caught, naming it.
Test(cublas_model, access_past_a_buffer_is_caught) {
    cublas_model::Handle handle;
    std::vector<float> a(6, 1.0f), b(6, 1.0f), c(4, NAN);
    cublas_model::allow(handle, "a", a), cublas_model::allow(handle, "b", b), cublas_model::allow(handle, "c", c);
    bool caught = false;
    try {
        cublasSgemm(&handle, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 3, &one, a.data(), 3, b.data(), 3, &zero, c.data(), 2);
    } catch (const cublas_model::OutOfBounds &e) {
        caught = std::string(e.what()).find("A(") != std::string::npos;
    }
    cr_expect(caught, "A read with lda 3 past its 6 elements");
    // The element just past the end: A is 2 × 3 with lda 2 in 5 floats (its last needs the 6th).
    std::vector<float> short_a(5, 1.0f);
    cublas_model::allow(handle, "short_a", short_a);
    caught = false;
    try {
        cublasSgemm(&handle, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 3, &one, short_a.data(), 2, b.data(), 3, &zero, c.data(),
                    2);
    } catch (const cublas_model::OutOfBounds &) {
        caught = true;
    }
    cr_expect(caught, "A(1, 2) one element past short_a");
}
