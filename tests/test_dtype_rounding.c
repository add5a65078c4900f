/* The host-side f16/bf16 rounding that the GPU comparisons rely on (tests/gpu_support.c); it
 * runs on the CPU, so it is checked on every machine. */
#include <criterion/criterion.h>
#include <string.h>

#include "gpu_support.h"

Test(dtype_rounding, half_and_bfloat16) {
    float values[] = {1.0f,
                      -2.5f,
                      65504.0f,
                      65520.0f,
                      1.0f + 1.0f / 2048.0f,
                      5.9604645e-8f,
                      1.0f + 1.0f / 256.0f,
                      3.0e38f};
    uint16_t half[8], bf16[8];
    float rounded_half[8], rounded_bf16[8];
    memcpy(rounded_half, values, sizeof values);
    memcpy(rounded_bf16, values, sizeof values);
    round_to_dtype(rounded_half, 8, CLOSS_F16, half);
    round_to_dtype(rounded_bf16, 8, CLOSS_BF16, bf16);
    cr_expect_eq(half[0], 0x3c00);
    cr_expect_eq(half[1], 0xc100);
    cr_expect_eq(half[2], 0x7bff); /* the largest finite half */
    cr_expect_eq(half[3], 0x7c00); /* rounds up to infinity */
    cr_expect_eq(half[4], 0x3c00); /* a tie rounds to even */
    cr_expect_eq(half[5], 0x0001); /* the smallest subnormal */
    cr_expect_eq(bf16[0], 0x3f80);
    cr_expect_eq(bf16[6], 0x3f80); /* a tie rounds to even */
    cr_expect_eq(bf16[7], 0x7f62);
    float widened[8];
    widen_from_dtype(half, 8, CLOSS_F16, widened);
    cr_expect(memcmp(widened, rounded_half, sizeof widened) == 0);
    cr_expect_float_eq(widened[5], 5.9604645e-8f, 1e-12f);
    widen_from_dtype(bf16, 8, CLOSS_BF16, widened);
    cr_expect(memcmp(widened, rounded_bf16, sizeof widened) == 0);
}
