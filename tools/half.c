/* f16 and bf16 conversions by bit manipulation (no compiler half type needed, so any C11
 * compiler builds it); see half.h. */
#include "half.h"

#include <math.h>
#include <string.h>

static uint32_t bits_of(float value) {
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    return bits;
}

static float float_of(uint32_t bits) {
    float value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

/* `magnitude` >> shift, rounded to nearest, ties to even (shift in 1..31). */
static uint32_t shift_round_even(uint32_t magnitude, unsigned shift) {
    uint32_t kept = magnitude >> shift;
    uint32_t rest = magnitude & ((UINT32_C(1) << shift) - 1);
    uint32_t half = UINT32_C(1) << (shift - 1);
    return kept + (rest > half || (rest == half && (kept & 1)));
}

uint16_t cli_f16_from_float(float value) {
    const uint32_t bits = bits_of(value);
    const uint16_t sign = (uint16_t)((bits >> 16) & 0x8000);
    const uint32_t magnitude = bits & 0x7fffffff;
    if (magnitude > 0x7f800000) return sign | 0x7e00;  /* NaN */
    if (magnitude >= 0x477ff000) return sign | 0x7c00; /* 65520 and above round to infinity */
    const unsigned exponent = magnitude >> 23;
    if (exponent < 113) { /* below 2^-14: an f16 subnormal (units of 2^-24) or zero */
        const unsigned shift = 126 - exponent; /* value = significand · 2^(exponent − 150) */
        if (exponent == 0 || shift > 24) return sign; /* under half the smallest subnormal */
        return sign | (uint16_t)shift_round_even((magnitude & 0x7fffff) | 0x800000, shift);
    }
    /* Normal: rebias the exponent (127 → 15), keep 10 of the 23 fraction bits; a carry out of
     * the fraction correctly bumps the exponent. */
    const uint32_t rebiased = magnitude - ((uint32_t)(127 - 15) << 23);
    return sign | (uint16_t)shift_round_even(rebiased, 13);
}

float cli_float_from_f16(uint16_t bits) {
    const uint32_t sign = (uint32_t)(bits & 0x8000) << 16;
    const uint32_t exponent = (bits >> 10) & 0x1f;
    const uint32_t fraction = bits & 0x3ff;
    if (exponent == 0) { /* zero or subnormal: fraction · 2^-24, exact in float */
        float magnitude = ldexpf((float)fraction, -24);
        return sign ? -magnitude : magnitude;
    }
    if (exponent == 31) return float_of(sign | 0x7f800000 | (fraction << 13));
    return float_of(sign | ((exponent + 127 - 15) << 23) | (fraction << 13));
}

uint16_t cli_bf16_from_float(float value) {
    const uint32_t bits = bits_of(value);
    if ((bits & 0x7fffffff) > 0x7f800000) return (uint16_t)((bits >> 16) | 0x40); /* quiet NaN */
    return (uint16_t)shift_round_even(bits, 16); /* a carry out of the fraction may reach inf */
}

float cli_float_from_bf16(uint16_t bits) { return float_of((uint32_t)bits << 16); }
