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
constexpr int kBlock = 256; // threads of NT-Xent/SupCon's per-row and per-element kernels

// Blocks for `work` items, `per_block` a block, for a grid-stride loop: at least 1, at most 65535.
inline int grid_for(int64_t work, int per_block) {
    const int64_t blocks = (work + per_block - 1) / per_block;
    return (int)(blocks < 65535 ? (blocks > 0 ? blocks : 1) : 65535);
}

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

// The 32-bit word holding elements 2w, 2w + 1 (16-bit T) or w (float) of `in`, in storage order.
template <typename T, int VEC> __device__ __forceinline__ uint32_t storage_word(const float (&in)[VEC], int w) {
    uint32_t word;
    if constexpr (sizeof(T) == 4) {
        __builtin_memcpy(&word, &in[w], 4);
    } else {
        const T pair[2] = {from_float<T>(in[2 * w]), from_float<T>(in[2 * w + 1])};
        __builtin_memcpy(&word, pair, 4);
    }
    return word;
}

// Stores VEC floats as T at chunk `index` of chunks starting at `row` (16-byte chunks when
// VEC·sizeof(T) = 16, `row` then 16-byte aligned; else single elements). Indexing whole chunks, not elements, keeps every store one instruction
// (from an element pointer nvcc splits some 16-byte stores into four).
template <typename T, int VEC>
__device__ __forceinline__ void store_floats(T *row, int64_t index, const float (&in)[VEC]) {
    if constexpr (VEC * sizeof(T) == 16) {
        reinterpret_cast<uint4 *>(row)[index] = make_uint4(storage_word<T, VEC>(in, 0), storage_word<T, VEC>(in, 1),
                                                           storage_word<T, VEC>(in, 2), storage_word<T, VEC>(in, 3));
    } else {
#pragma unroll
        for (int v = 0; v < VEC; ++v) row[index * VEC + v] = from_float<T>(in[v]);
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
