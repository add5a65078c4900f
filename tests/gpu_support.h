/* Helpers of the GPU test suites: skipping without a device, device buffers, f16/bf16 conversion
 * on the host, and norm-wise comparison with the reference. Every suite calls CLOSS_REQUIRE_GPU()
 * first in each test: CUDA is never touched at global scope (Criterion forks each test). */
#ifndef CLOSS_TESTS_GPU_SUPPORT_H
#define CLOSS_TESTS_GPU_SUPPORT_H

#include <stddef.h>
#include <stdint.h>

#include "closs.h"
#include "gpu_scale.h"

/* Skips the test, visibly, when no CUDA device is usable (CTest marks the suite skipped too); in
 * the simulated tier (gpu_scale.h) that fails instead: the simulator's runtime was not loaded. */
#define CLOSS_REQUIRE_GPU()                                                                        \
    do {                                                                                           \
        if (!gpu_available()) {                                                                    \
            cr_assert(!gpu_test_simulated(), "CLOSS_GPU_TEST_SCALE=sim, yet the CUDA runtime "     \
                                             "reports no device: is the simulator's "              \
                                             "libcudart.so the one loaded?");                      \
            cr_skip_test("no CUDA device: GPU test skipped");                                      \
        }                                                                                          \
    } while (0)

int gpu_available(void);

/* Device memory, freed by gpu_free_all() (called from each suite's .fini). */
void *gpu_alloc(size_t bytes);
void gpu_free_all(void);
void gpu_upload(void *device, const void *host, size_t bytes);
void gpu_download(void *host, const void *device, size_t bytes);
void gpu_synchronize(void);

/* Fills `bytes` of device memory with 0xFF: NaN in f32, f16 and bf16 ("every element written"). */
void gpu_poison(void *device, size_t bytes);

/* Rounds host floats to `dtype` (f32, f16, bf16) in place and writes their storage to `out`. */
void round_to_dtype(float *values, size_t count, closs_dtype_t dtype, void *out);
/* The stored values of `dtype` as floats. */
void widen_from_dtype(const void *in, size_t count, closs_dtype_t dtype, float *out);

/* ‖got − want‖ / max(‖want‖, tiny) over `count` values; NaN if any value of got is NaN while
 * want is not. */
double relative_error(const float *got, const double *want, size_t count);
/* The same relative to max(‖want‖, minimum), for values whose terms may cancel to 0. */
double relative_error_above(const float *got, const double *want, size_t count, double minimum);

/* The norm-wise tolerance of a gradient written in `dtype` (its rounding, plus f32 arithmetic). */
double gradient_tolerance(closs_dtype_t dtype);

uint64_t test_seed(void);
double uniform01(uint64_t *state);

#endif
