// What every tensor-core epilogue shares (NT-Xent/SupCon's contrastive_tensor_common.cuh, CLIP and
// SigLIP's two_tower_tile_kernels.cuh): base-2 constants, the fast exponential, and the quad sum
// of a row whose columns are spread over the four lanes of a quad (the mma fragment layout).
#pragma once

#include "common.cuh"

namespace closs {
namespace {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// 2^x by the special function unit (ex2.approx, 2 ulp; the fixed shift keeps every term ≥ 2^-116,
// a normal float, so flushing subnormals loses nothing there).
__device__ __forceinline__ float exp2_fast(float x) {
#ifdef __CUDA_ARCH__
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
#else
    return exp2f(x);
#endif
}

// The four lanes of a quad hold one row: xor 1 and 2 stay within it.
__device__ __forceinline__ float quad_sum(float value) {
    value += __shfl_xor_sync(kFullMask, value, 1);
    return value + __shfl_xor_sync(kFullMask, value, 2);
}

} // namespace
} // namespace closs
