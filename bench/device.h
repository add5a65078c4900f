/* The device side of `closs bench` (device.cu, built only with CUDA), C linkage: random
 * inputs made on the device, read back as f32 for the CPU reference, and the three ceilings the
 * floors are computed from. Each returns 0 (or a positive measurement) on success; on a CUDA or
 * cuBLAS failure a nonzero status (or NaN) and a message in `error`. */
#ifndef CLOSS_BENCH_DEVICE_H
#define CLOSS_BENCH_DEVICE_H

#include <stddef.h>
#include <stdint.h>

#include "closs.h"

#ifdef __cplusplus
extern "C" {
#endif

/* dst[0 .. count) of dtype (F32, F16, BF16) = uniform values in [-1, 1), a fixed function of
 * (seed, index), rounded to nearest. */
int bench_device_fill_uniform(void *dst, closs_dtype_t dtype, size_t count, uint64_t seed);
/* dst[0 .. count) = src widened to float (exact for every dtype). */
int bench_device_to_f32(const void *src, closs_dtype_t dtype, size_t count, float *dst);

/* A device-to-device copy of `bytes` (median of `repeats`): (bytes read + written) / s / 1e9. */
double bench_device_copy_gbs(size_t bytes, int repeats, char *error, size_t error_size);
/* An n × n × n cublasGemmEx, bf16 inputs and output, f32 accumulation (median of `repeats`):
 * 2·n³ / s / 1e12. */
double bench_device_gemm_bf16_tflops(int n, int repeats, char *error, size_t error_size);
/* ex2.approx.f32 results per second over the whole device (median of `repeats`). */
double bench_device_exp_per_second(int repeats, char *error, size_t error_size);

#ifdef __cplusplus
}
#endif

#endif
