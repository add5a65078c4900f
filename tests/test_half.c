/* The host f16/bf16 conversions of `closs eval --device cuda` (tools/half.c), exhaustively:
 * every 16-bit pattern survives the round trip, and float32 values between two neighbours round
 * to the nearer, ties to the even one, with overflow to infinity at the format's threshold. */
#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "half.h"

typedef struct format {
    const char *name;
    uint16_t (*from_float)(float);
    float (*to_float)(uint16_t);
    uint16_t infinity;
} format;

static const format formats[] = {
    {"f16", cli_f16_from_float, cli_float_from_f16, 0x7c00},
    {"bf16", cli_bf16_from_float, cli_float_from_bf16, 0x7f80},
};

static float next_toward(float from, float to) { return nextafterf(from, to); }

Test(half, every_pattern_round_trips) {
    for (size_t f = 0; f < sizeof formats / sizeof formats[0]; ++f) {
        const format *fmt = &formats[f];
        for (uint32_t bits = 0; bits <= 0xffff; ++bits) {
            float value = fmt->to_float((uint16_t)bits);
            uint16_t back = fmt->from_float(value);
            if (isnan(value)) {
                cr_assert(isnan(fmt->to_float(back)), "%s 0x%04x: NaN lost", fmt->name, bits);
                continue;
            }
            cr_assert_eq(back, bits, "%s 0x%04x -> %a -> 0x%04x", fmt->name, bits, (double)value,
                         back);
        }
    }
}

/* Between each pair of neighbours a < b (positive, finite): the midpoint goes to the one with an
 * even last bit, anything nearer a to a, nearer b to b; negatives mirror them. */
Test(half, rounds_to_nearest_even) {
    for (size_t f = 0; f < sizeof formats / sizeof formats[0]; ++f) {
        const format *fmt = &formats[f];
        for (uint16_t low = 0; low + 1 < fmt->infinity; ++low) {
            const uint16_t high = (uint16_t)(low + 1);
            const float a = fmt->to_float(low), b = fmt->to_float(high);
            const float middle = a + (b - a) / 2; /* exact: 16-bit neighbours have few bits */
            const uint16_t even = (low & 1) ? high : low;
            cr_assert_eq(fmt->from_float(middle), even, "%s tie between 0x%04x and 0x%04x",
                         fmt->name, low, high);
            cr_assert_eq(fmt->from_float(next_toward(middle, a)), low, "%s below 0x%04x's tie",
                         fmt->name, low);
            cr_assert_eq(fmt->from_float(next_toward(middle, b)), high, "%s above 0x%04x's tie",
                         fmt->name, low);
            cr_assert_eq(fmt->from_float(-next_toward(middle, b)), high | 0x8000,
                         "%s negative 0x%04x", fmt->name, high);
        }
    }
}

Test(half, overflow_and_specials) {
    cr_assert_eq(cli_f16_from_float(65504.0f), 0x7bff);
    cr_assert_eq(cli_f16_from_float(nextafterf(65520.0f, 0.0f)), 0x7bff);
    cr_assert_eq(cli_f16_from_float(65520.0f), 0x7c00);
    cr_assert_eq(cli_f16_from_float(-1e30f), 0xfc00);
    cr_assert_eq(cli_f16_from_float(INFINITY), 0x7c00);
    cr_assert_eq(cli_f16_from_float(0x1p-25f), 0x0000); /* a tie with zero: even */
    cr_assert_eq(cli_f16_from_float(nextafterf(0x1p-25f, 1.0f)), 0x0001);
    cr_assert_eq(cli_f16_from_float(-0.0f), 0x8000);
    cr_assert_eq(cli_bf16_from_float(FLT_MAX), 0x7f80);
    cr_assert_eq(cli_bf16_from_float(-INFINITY), 0xff80);
    cr_assert(isnan(cli_float_from_bf16(cli_bf16_from_float(NAN))));
    cr_assert(isnan(cli_float_from_f16(cli_f16_from_float(-NAN))));
    cr_assert_eq(cli_bf16_from_float(0x1p-149f), 0x0000);      /* the smallest float subnormal */
    cr_assert_eq(cli_bf16_from_float(1.0f + 0x1p-8f), 0x3f80); /* a tie: to even */
}
