/* GPU test helpers (see gpu_support.h). */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include "gpu_support.h"

#include <criterion/criterion.h>
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "half.h" /* the closs tool's f16/bf16 conversions (tools/half.c) */

int gpu_available(void) {
    int count = 0;
    return closs_cuda_device_count(&count) == CLOSS_STATUS_SUCCESS && count > 0;
}

enum { MAX_BUFFERS = 64 };
static void *buffers[MAX_BUFFERS];
static int buffer_count;

#define CUDA_OK(call)                                                                              \
    do {                                                                                           \
        cudaError_t status_ = (call);                                                              \
        cr_assert_eq(status_, cudaSuccess, "%s: %s", #call, cudaGetErrorString(status_));          \
    } while (0)

void *gpu_alloc(size_t bytes) {
    cr_assert_lt(buffer_count, MAX_BUFFERS);
    void *pointer = NULL;
    CUDA_OK(cudaMalloc(&pointer, bytes > 0 ? bytes : 1));
    buffers[buffer_count++] = pointer;
    return pointer;
}

void gpu_free_all(void) {
    for (int i = 0; i < buffer_count; ++i) cudaFree(buffers[i]);
    buffer_count = 0;
}

void gpu_upload(void *device, const void *host, size_t bytes) {
    if (bytes) CUDA_OK(cudaMemcpy(device, host, bytes, cudaMemcpyHostToDevice));
}

void gpu_download(void *host, const void *device, size_t bytes) {
    if (bytes) CUDA_OK(cudaMemcpy(host, device, bytes, cudaMemcpyDeviceToHost));
}

void gpu_synchronize(void) { CUDA_OK(cudaDeviceSynchronize()); }

void gpu_poison(void *device, size_t bytes) {
    if (bytes) CUDA_OK(cudaMemset(device, 0xff, bytes));
}

void round_to_dtype(float *values, size_t count, closs_dtype_t dtype, void *out) {
    for (size_t i = 0; i < count; ++i) {
        if (dtype == CLOSS_F32) {
            ((float *)out)[i] = values[i];
        } else if (dtype == CLOSS_F16) {
            uint16_t h = cli_f16_from_float(values[i]);
            ((uint16_t *)out)[i] = h;
            values[i] = cli_float_from_f16(h);
        } else {
            uint16_t b = cli_bf16_from_float(values[i]);
            ((uint16_t *)out)[i] = b;
            values[i] = cli_float_from_bf16(b);
        }
    }
}

void widen_from_dtype(const void *in, size_t count, closs_dtype_t dtype, float *out) {
    for (size_t i = 0; i < count; ++i) {
        if (dtype == CLOSS_F32) out[i] = ((const float *)in)[i];
        else if (dtype == CLOSS_F16) out[i] = cli_float_from_f16(((const uint16_t *)in)[i]);
        else out[i] = cli_float_from_bf16(((const uint16_t *)in)[i]);
    }
}

double relative_error_above(const float *got, const double *want, size_t count, double minimum) {
    double difference = 0.0, norm = 0.0;
    for (size_t i = 0; i < count; ++i) {
        if (isnan(got[i]) && !isnan(want[i])) return NAN;
        double d = (double)got[i] - want[i];
        difference += d * d;
        norm += want[i] * want[i];
    }
    return sqrt(difference) / fmax(fmax(sqrt(norm), minimum), 1e-30);
}

double relative_error(const float *got, const double *want, size_t count) {
    return relative_error_above(got, want, count, 0.0);
}

double gradient_tolerance(closs_dtype_t dtype) {
    /* Output rounding (2^-11 for f16, 2^-8 for bf16) dominates; f32 keeps float arithmetic's
     * error over long rows. */
    return dtype == CLOSS_F32 ? 1e-4 : dtype == CLOSS_F16 ? 2e-3 : 1e-2;
}

uint64_t test_seed(void) {
    const char *fixed = getenv("CLOSS_TEST_SEED");
    if (fixed) return strtoull(fixed, NULL, 10);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (uint64_t)now.tv_nsec ^ ((uint64_t)now.tv_sec << 20);
}

double uniform01(uint64_t *state) {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return (double)((*state * 0x2545F4914F6CDD1Dull) >> 11) * 0x1.0p-53;
}
