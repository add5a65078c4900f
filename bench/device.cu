/* The device side of `closs bench`: input generation and the ceilings (see device.h).
 *
 * Ceilings, each the median of a few runs timed with CUDA events on the default stream:
 *   copy:  cudaMemcpyAsync device → device of a buffer far larger than L2; the rate counts the
 *          bytes read plus the bytes written, as the row-wise floors do;
 *   GEMM:  cublasGemmEx n³ with bf16 A, B, C and CUBLAS_COMPUTE_32F (tensor cores), 2·n³ flops;
 *   exp:   every thread runs EXP_CHAINS independent chains x ← 2^(−x) of EXP_STEPS steps with
 *          ex2.approx.ftz.f32 (the instruction a tuned softmax uses); the chains keep the special
 *          function unit busy and the result stays in (0, 1].
 * Launch shapes: fill and convert use a grid-stride loop of 256-thread blocks, 4 blocks per SM;
 * the exp kernel 8 blocks of 256 threads per SM. */
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

#include "device.h"

namespace {

constexpr int THREADS = 256;
constexpr int EXP_CHAINS = 8;
constexpr int EXP_STEPS = 4096;

int grid_for(size_t count, int blocks_per_sm) {
    int device = 0, sms = 1;
    cudaGetDevice(&device);
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
    size_t needed = (count + THREADS - 1) / THREADS;
    return (int)std::max<size_t>(1, std::min<size_t>(needed, (size_t)sms * blocks_per_sm));
}

/* splitmix64 of (seed, index): a counter-based stream, the same on every device and launch. */
__device__ float uniform_at(uint64_t seed, uint64_t index) {
    uint64_t z = seed + 0x9E3779B97F4A7C15ull * (index + 1);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (float)(z >> 40) * 0x1.0p-23f - 1.0f; /* 24 random bits: [-1, 1) */
}

template <typename T> __device__ T from_float(float x);
template <> __device__ float from_float<float>(float x) { return x; }
template <> __device__ __half from_float<__half>(float x) { return __float2half_rn(x); }
template <> __device__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) {
    return __float2bfloat16_rn(x);
}
__device__ float to_float(float x) { return x; }
__device__ float to_float(__half x) { return __half2float(x); }
__device__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T> __global__ void fill_kernel(T *dst, size_t count, uint64_t seed) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < count;
         i += (size_t)gridDim.x * blockDim.x)
        dst[i] = from_float<T>(uniform_at(seed, i));
}

template <typename T> __global__ void to_f32_kernel(const T *src, size_t count, float *dst) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < count;
         i += (size_t)gridDim.x * blockDim.x)
        dst[i] = to_float(src[i]);
}

__global__ void exp_kernel(float *out) {
    float x[EXP_CHAINS];
    for (int c = 0; c < EXP_CHAINS; ++c) x[c] = 1e-3f * (float)(threadIdx.x + c);
    for (int s = 0; s < EXP_STEPS; ++s) {
#pragma unroll
        for (int c = 0; c < EXP_CHAINS; ++c)
            asm volatile("ex2.approx.ftz.f32 %0, %1;" : "=f"(x[c]) : "f"(-x[c]));
    }
    float sum = 0.0f;
    for (int c = 0; c < EXP_CHAINS; ++c) sum += x[c];
    out[blockIdx.x * blockDim.x + threadIdx.x] = sum;
}

void set_error(char *error, size_t size, const char *what, const char *detail) {
    if (error && size) snprintf(error, size, "%s: %s", what, detail);
}

/* Median milliseconds of `repeats` runs of step() after one warm-up, CUDA events on stream 0.
 * NaN (with the message) on a CUDA error. */
template <typename Step>
double median_ms(Step step, int repeats, char *error, size_t error_size, const char *what) {
    std::vector<cudaEvent_t> events(2 * (size_t)repeats);
    for (auto &e : events) cudaEventCreate(&e);
    bool ok = step();
    for (int r = 0; ok && r < repeats; ++r) {
        cudaEventRecord(events[2 * r], 0);
        ok = step();
        cudaEventRecord(events[2 * r + 1], 0);
    }
    cudaError_t status = cudaDeviceSynchronize();
    if (status == cudaSuccess) status = cudaGetLastError();
    std::vector<float> times;
    for (int r = 0; ok && status == cudaSuccess && r < repeats; ++r) {
        float ms = 0.0f;
        status = cudaEventElapsedTime(&ms, events[2 * r], events[2 * r + 1]);
        times.push_back(ms);
    }
    for (auto &e : events) cudaEventDestroy(e);
    if (!ok || status != cudaSuccess || times.empty()) {
        set_error(error, error_size, what, ok ? cudaGetErrorString(status) : "the call failed");
        return NAN;
    }
    std::sort(times.begin(), times.end());
    return times[times.size() / 2];
}

} // namespace

extern "C" int bench_device_fill_uniform(void *dst, closs_dtype_t dtype, size_t count,
                                          uint64_t seed) {
    if (!count) return 0;
    int grid = grid_for(count, 4);
    if (dtype == CLOSS_F32) fill_kernel<<<grid, THREADS>>>((float *)dst, count, seed);
    else if (dtype == CLOSS_F16) fill_kernel<<<grid, THREADS>>>((__half *)dst, count, seed);
    else
        fill_kernel<<<grid, THREADS>>>((__nv_bfloat16 *)dst, count, seed);
    return (int)cudaGetLastError();
}

extern "C" int bench_device_to_f32(const void *src, closs_dtype_t dtype, size_t count,
                                    float *dst) {
    if (!count) return 0;
    int grid = grid_for(count, 4);
    if (dtype == CLOSS_F32) to_f32_kernel<<<grid, THREADS>>>((const float *)src, count, dst);
    else if (dtype == CLOSS_F16) to_f32_kernel<<<grid, THREADS>>>((const __half *)src, count, dst);
    else
        to_f32_kernel<<<grid, THREADS>>>((const __nv_bfloat16 *)src, count, dst);
    return (int)cudaGetLastError();
}

extern "C" double bench_device_copy_gbs(size_t bytes, int repeats, char *error,
                                        size_t error_size) {
    void *source = nullptr, *target = nullptr;
    if (cudaMalloc(&source, bytes) != cudaSuccess || cudaMalloc(&target, bytes) != cudaSuccess) {
        cudaFree(source);
        cudaGetLastError();
        set_error(error, error_size, "copy ceiling", "cudaMalloc failed");
        return NAN;
    }
    cudaMemset(source, 1, bytes);
    double ms = median_ms(
        [&] { return cudaMemcpyAsync(target, source, bytes, cudaMemcpyDeviceToDevice, 0) == 0; },
        repeats, error, error_size, "copy ceiling");
    cudaFree(source);
    cudaFree(target);
    return 2.0 * (double)bytes / (ms * 1e-3) / 1e9;
}

extern "C" double bench_device_gemm_bf16_tflops(int n, int repeats, char *error,
                                                size_t error_size) {
    size_t elements = (size_t)n * n;
    void *a = nullptr, *b = nullptr, *c = nullptr;
    cublasHandle_t handle = nullptr;
    double result = NAN;
    if (cudaMalloc(&a, 2 * elements) != cudaSuccess || cudaMalloc(&b, 2 * elements) != cudaSuccess ||
        cudaMalloc(&c, 2 * elements) != cudaSuccess) {
        cudaGetLastError();
        set_error(error, error_size, "GEMM ceiling", "cudaMalloc failed");
    } else if (cublasCreate(&handle) != CUBLAS_STATUS_SUCCESS) {
        set_error(error, error_size, "GEMM ceiling", "cublasCreate failed");
    } else {
        bench_device_fill_uniform(a, CLOSS_BF16, elements, 11);
        bench_device_fill_uniform(b, CLOSS_BF16, elements, 12);
        const float one = 1.0f, zero = 0.0f;
        double ms = median_ms(
            [&] {
                return cublasGemmEx(handle, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one, a, CUDA_R_16BF,
                                    n, b, CUDA_R_16BF, n, &zero, c, CUDA_R_16BF, n,
                                    CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) ==
                       CUBLAS_STATUS_SUCCESS;
            },
            repeats, error, error_size, "GEMM ceiling");
        result = 2.0 * (double)n * n * n / (ms * 1e-3) / 1e12;
    }
    if (handle) cublasDestroy(handle);
    cudaFree(a);
    cudaFree(b);
    cudaFree(c);
    return result;
}

extern "C" double bench_device_exp_per_second(int repeats, char *error, size_t error_size) {
    int device = 0, sms = 1;
    cudaGetDevice(&device);
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
    const int blocks = 8 * sms;
    float *out = nullptr;
    if (cudaMalloc(&out, sizeof(float) * blocks * THREADS) != cudaSuccess) {
        cudaGetLastError();
        set_error(error, error_size, "exp ceiling", "cudaMalloc failed");
        return NAN;
    }
    double ms = median_ms(
        [&] {
            exp_kernel<<<blocks, THREADS>>>(out);
            return cudaPeekAtLastError() == cudaSuccess;
        },
        repeats, error, error_size, "exp ceiling");
    cudaFree(out);
    return (double)blocks * THREADS * EXP_CHAINS * EXP_STEPS / (ms * 1e-3);
}
