// The tile engine's walk itself (cuda/tile_engine.cuh) on the CPU harness, with an epilogue of its
// own: S = A·Bᵀ for two different operands (the next losses' rows of `a` against rows of `b`), every
// element written once, and per-column statistics (each column's sum over a warp's anchor rows, by
// the shuffles a column-wise log-sum-exp would use). Checks, for every shape the NT-Xent/SupCon
// kernels use, the fragment and staging maps (which (row, column) each accumulator register holds),
// partial tiles of A and of B, D not a multiple of 16, rows whose start or ld rule out cp.async
// (the element-wise staging), and the per-tile column vectors, against sums in double. The
// harness runs mma.sync/ldmatrix/cp.async lane by lane and race-checks every shared access.
#include <cmath>
#include <cstring>
#include <vector>

#include <criterion/criterion.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "cuda_on_cpu.h" // before the kernels: CUDA's built-ins on the CPU

#include "tile_engine.cuh"

namespace {

using namespace closs;

// out[i][j] = S_ij·w_j for i < rows of A, j < rows of B (w_j = 1 + j/1024, a column vector staged
// per tile); column_sums[(block·warps + warp)·rows_b + j] = Σ over the warp's rows i < rows_a.
template <typename T, class Shape> struct Probe {
    struct Fetched {
        float w;
    };
    float *out, *column_sums;
    int64_t rows_a, rows_b, warp_first;

    __device__ Fetched fetch(int64_t j) const { return {j < rows_b ? 1.0f + (float)j / 1024.0f : 0.0f}; }
    __device__ void stage(float *vectors, int c, const Fetched &f) const { tile::shared_store(vectors + c, f.w); }

    __device__ void tile(float (&s)[Shape::kMTiles][Shape::kNTiles][4], int64_t j0, const float *vectors, const T *) {
        const int warp = threadIdx.x / kWarpSize;
        for (int n = 0; n < Shape::kNTiles; ++n)
            for (int odd = 0; odd < 2; ++odd) {
                const int c = 8 * n + fragment_column(odd);
                const float w = tile::shared_load(vectors + c);
                float column = 0.0f;
                for (int mt = 0; mt < Shape::kMTiles; ++mt)
                    for (int half = 0; half < 2; ++half) {
                        const int e = 2 * half + odd;
                        const int64_t i = warp_first + 16 * mt + fragment_row(e), j = j0 + c;
                        const float v = s[mt][n][e] * w;
                        if (i < rows_a && j < rows_b) out[i * rows_b + j] = v;
                        if (i < rows_a) column += v;
                    }
                // the 8 lanes holding column c (same l % 4) in a fixed butterfly
                for (int offset = 4; offset < kWarpSize; offset <<= 1)
                    column += __shfl_xor_sync(kFullMask, column, offset);
                const int64_t j = j0 + c;
                if (tile_lane() < 4 && j < rows_b)
                    column_sums[((int64_t)blockIdx.x * Shape::kWarps + warp) * rows_b + j] = column;
            }
    }
    __device__ void finish(const AnchorFragments<T, Shape> &, int64_t) {}
};

template <typename T, class Shape>
void probe_kernel(const TileOperand<T> a, const TileOperand<T> b, Probe<T, Shape> p) {
    const int64_t i0 = (int64_t)blockIdx.x * Shape::kAnchorRows;
    p.warp_first = i0 + threadIdx.x / kWarpSize * Shape::kWarpRows;
    AnchorFragments<T, Shape> anchors;
    walk_tiles<T, Shape>(a, b, i0, anchors, p);
}

unsigned long long random_state = 4242;
double random_uniform() {
    random_state = random_state * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(random_state >> 11) * 0x1p-53;
}

template <typename T> T to_t(float v) {
    if constexpr (std::is_same_v<T, __half>) return __float2half_rn(v);
    else return __float2bfloat16_rn(v);
}
template <typename T> float from_t(T v) {
    if constexpr (std::is_same_v<T, __half>) return __half2float(v);
    else return __bfloat162float(v);
}

// One walk of A (rows_a × dim, leading dimension ld_a) against B through shape Shape; returns the
// number of wrong elements and column sums (relative error above 1e-5 of the row's magnitude).
template <typename T, class Shape> int check(int rows_a, int rows_b, int dim, int ld_a, int ld_b, const char *what) {
    std::vector<T> a((size_t)rows_a * ld_a + 1), b((size_t)rows_b * ld_b + 1);
    // +1: an odd element offset makes the rows unaligned for cp.async when asked (ld odd)
    for (auto &v : a) v = to_t<T>((float)(2 * random_uniform() - 1));
    for (auto &v : b) v = to_t<T>((float)(2 * random_uniform() - 1));
    const bool shift = ld_a % 2; // odd ld: also start one element in, so that no row is 16-byte aligned
    const T *a_rows = a.data() + shift, *b_rows = b.data() + shift;
    const unsigned blocks = (unsigned)((rows_a + Shape::kAnchorRows - 1) / Shape::kAnchorRows);
    std::vector<float> out((size_t)rows_a * rows_b, NAN), sums((size_t)blocks * Shape::kWarps * rows_b, NAN);
    const TileOperand<T> oa = {a_rows, rows_a, ld_a, dim,
                               reinterpret_cast<uintptr_t>(a_rows) % 16 == 0 && ld_a % 8 == 0};
    const TileOperand<T> ob = {b_rows, rows_b, ld_b, dim,
                               reinterpret_cast<uintptr_t>(b_rows) % 16 == 0 && ld_b % 8 == 0};
    Probe<T, Shape> p{out.data(), sums.data(), rows_a, rows_b, 0};
    launch(blocks, Shape::kThreads, Shape::kBytes, [&] { probe_kernel<T, Shape>(oa, ob, p); });
    int wrong = 0;
    for (int j = 0; j < rows_b; ++j) {
        const double w = 1.0 + j / 1024.0;
        for (unsigned blk = 0; blk < blocks; ++blk)
            for (int warp = 0; warp < Shape::kWarps; ++warp) {
                double want_sum = 0.0, size = 0.0;
                for (int r = 0; r < Shape::kWarpRows; ++r) {
                    const int64_t i = (int64_t)blk * Shape::kAnchorRows + warp * Shape::kWarpRows + r;
                    if (i >= rows_a) break;
                    double s = 0.0, magnitude = 0.0;
                    for (int k = 0; k < dim; ++k) {
                        const double x = (double)from_t(a_rows[i * ld_a + k]) * from_t(b_rows[(int64_t)j * ld_b + k]);
                        s += x, magnitude += std::fabs(x);
                    }
                    s *= w, magnitude *= w;
                    want_sum += s, size += magnitude;
                    wrong += !(std::fabs(out[i * rows_b + j] - s) <= 1e-5 * magnitude + 1e-30);
                }
                const float got = sums[((size_t)blk * Shape::kWarps + warp) * rows_b + j];
                if (size > 0) wrong += !(std::fabs(got - want_sum) <= 1e-5 * size);
            }
    }
    cr_expect_eq(wrong, 0, "%s: A %d × %d (ld %d), B %d rows (ld %d): %d wrong elements or column sums", what, rows_a,
                 dim, ld_a, rows_b, ld_b, wrong);
    return wrong;
}

} // namespace

// The NT-Xent/SupCon kernels' shapes (contrastive_tile_kernels.cuh), one column vector each.
using Forward128 = TileShape<128, 8, 2, 64, true, 1>;
using Forward256 = TileShape<256, 8, 1, 64, true, 1>;
using Backward128 = TileShape<128, 8, 1, 64, true, 1>;
using Backward256 = TileShape<256, 8, 1, 32, false, 1>;

Test(tile_engine, two_operands_and_column_sums) {
    // A and B of different lengths, partial tiles of both, D below the padded width
    check<__nv_bfloat16, Forward128>(300, 77, 100, 104, 104, "bf16, 32-row warps");
    check<__half, Forward128>(257, 129, 65, 72, 80, "f16, 32-row warps");
    check<__nv_bfloat16, Backward128>(129, 200, 128, 128, 136, "bf16, 16-row warps");
    check<__half, Forward256>(130, 64, 250, 256, 256, "f16, D = 256");
    check<__nv_bfloat16, Backward256>(200, 95, 256, 264, 256, "bf16, anchors in shared memory, 32-row tiles");
    // rows that cp.async cannot copy (odd ld, odd start): the element-wise staging
    check<__half, Forward128>(140, 70, 33, 35, 35, "f16, unaligned rows");
    check<__nv_bfloat16, Backward256>(64, 33, 200, 201, 203, "bf16, unaligned rows, D = 256");
}
