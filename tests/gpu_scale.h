/* The size of the GPU test set, from the environment variable CLOSS_GPU_TEST_SCALE:
 *   unset, "" or "full"  every case, for a real GPU;
 *   "sim"                the simulated tier (scripts/gpusim.sh): the same tests at sizes that a GPU
 *                        simulator runs in minutes (a few hundred rows at most), still covering
 *                        every kernel, option and layout, f16's tensor-core kernels included
 *                        (scripts/gpusim.sh runs a simulator with closs's WMMA fixes; bf16's need
 *                        sm_80, beyond its compute_70 PTX, and take the SIMT kernels there).
 *                        cuBLAS is never called, since its closed kernels do not run in a
 *                        simulator: the chunked path's cases are left out, and the test output
 *                        says so. Finding no device is a failure, not a skip.
 * Any other value fails the test that reads it. Header-only: test_cli uses it without the GPU
 * helpers. */
#ifndef CLOSS_TESTS_GPU_SCALE_H
#define CLOSS_TESTS_GPU_SCALE_H

#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <stdlib.h>
#include <string.h>

static inline int gpu_test_simulated(void) {
    const char *scale = getenv("CLOSS_GPU_TEST_SCALE");
    if (!scale || !*scale || strcmp(scale, "full") == 0) return 0;
    cr_assert_str_eq(scale, "sim", "CLOSS_GPU_TEST_SCALE=%s: expected full or sim", scale);
    return 1;
}

/* Says, in the test output, that the simulated tier leaves out `what` (a chunked-path case). */
#define GPU_SIM_LEAVES_OUT(what)                                                                   \
    cr_log_warn("CLOSS_GPU_TEST_SCALE=sim: %s not run: the chunked path calls cuBLAS, whose "      \
                "kernels cannot run in a simulator",                                               \
                what)

/* Skips the calling test in the simulated tier, saying why it cannot run there. */
#define GPU_SIM_SKIPS(why)                                                                         \
    do {                                                                                           \
        if (gpu_test_simulated()) cr_skip_test("CLOSS_GPU_TEST_SCALE=sim: not run: %s", why);      \
    } while (0)

#endif
