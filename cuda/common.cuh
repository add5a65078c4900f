// Shared device helpers: dtype conversion, 16-byte vector loads, warp reductions.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

// Returns a failed cudaError_t from the enclosing function.
#define CLOSS_TRY_CUDA(expr)                                                                       \
    do {                                                                                           \
        const cudaError_t closs_try_error_ = (expr);                                               \
        if (closs_try_error_ != cudaSuccess) return closs_try_error_;                              \
    } while (0)

// Returns the error of the launch just made, if any: read at once, before a later cuBLAS or CUB
// call could clear it (host/gpu_call.c made sure that no error was pending on entry, so whatever is
// pending now is closs's).
#define CLOSS_RETURN_IF_LAUNCH_FAILED() CLOSS_TRY_CUDA(cudaGetLastError())

namespace closs {

constexpr int kWarpSize = 32;
constexpr unsigned kFullMask = 0xffffffffu;

// Every storage type is computed in float (the contract: f32 accumulation on the GPU).
template <typename T> __device__ __forceinline__ float to_float(T value);
template <> __device__ __forceinline__ float to_float<float>(float value) { return value; }
template <> __device__ __forceinline__ float to_float<__half>(__half value) { return __half2float(value); }
template <> __device__ __forceinline__ float to_float<__nv_bfloat16>(__nv_bfloat16 value) {
    return __bfloat162float(value);
}

template <typename T> __device__ __forceinline__ T from_float(float value);
template <> __device__ __forceinline__ float from_float<float>(float value) { return value; }
template <> __device__ __forceinline__ __half from_float<__half>(float value) { return __float2half_rn(value); }
template <> __device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float value) {
    return __float2bfloat16_rn(value);
}

// VEC consecutive elements starting at `source` (16-byte aligned when VEC·sizeof(T) == 16),
// converted to float.
template <typename T, int VEC>
__device__ __forceinline__ void load_floats(const T *source, float (&out)[VEC]) {
    if constexpr (VEC * sizeof(T) == 16) {
        union {
            uint4 raw;
            T values[VEC];
        } chunk;
        chunk.raw = *reinterpret_cast<const uint4 *>(source);
#pragma unroll
        for (int v = 0; v < VEC; ++v) out[v] = to_float(chunk.values[v]);
    } else {
#pragma unroll
        for (int v = 0; v < VEC; ++v) out[v] = to_float(source[v]);
    }
}

template <typename T, int VEC>
__device__ __forceinline__ void store_floats(T *target, const float (&in)[VEC]) {
    if constexpr (VEC * sizeof(T) == 16) {
        union {
            uint4 raw;
            T values[VEC];
        } chunk;
#pragma unroll
        for (int v = 0; v < VEC; ++v) chunk.values[v] = from_float<T>(in[v]);
        *reinterpret_cast<uint4 *>(target) = chunk.raw;
    } else {
#pragma unroll
        for (int v = 0; v < VEC; ++v) target[v] = from_float<T>(in[v]);
    }
}

// The sum over the warp, the same value in every lane. The butterfly order is fixed, so the
// result is the same bits on every run.
__device__ __forceinline__ float warp_sum(float value) {
#pragma unroll
    for (int offset = kWarpSize / 2; offset > 0; offset >>= 1)
        value += __shfl_xor_sync(kFullMask, value, offset);
    return value;
}

__device__ __forceinline__ int warp_any(int predicate) { return __any_sync(kFullMask, predicate); }

} // namespace closs
