/* The contract's rule for results beyond the output dtype's range (docs/contract.md, "Numerics"),
 * checked element by element; one definition for the GPU suites (C) and the CPU harness's tests
 * (C++): nothing is NaN for finite inputs; an exact value beyond the dtype's largest finite value
 * comes back as ±Inf with its sign (what round-to-nearest gives); a value the dtype holds comes
 * back finite, and within the usual tolerance (the caller compares the sums returned). Values
 * within 1% of the threshold may round either way: float arithmetic before the rounding moves
 * them by more than the dtype's half ulp there. */
#ifndef CLOSS_TESTS_DTYPE_RANGE_H
#define CLOSS_TESTS_DTYPE_RANGE_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "closs.h"

/* The smallest magnitude that round-to-nearest turns into Inf: the largest finite value plus
 * half an ulp (f16 65504 + 16; bf16 (2 − 2^-7)·2^127 + 2^-8·2^127; f32 FLT_MAX + 2^-24·2^127). */
static inline double dtype_overflow_threshold(closs_dtype_t dtype) {
    return dtype == CLOSS_F16 ? 65520.0 : dtype == CLOSS_BF16 ? 0x1.ffp127 : 0x1.ffffffp127;
}

typedef struct range_check {
    int64_t first_bad; /* the first element against the rule, or −1 */
    size_t beyond; /* elements whose exact value is beyond the range (so the test checked some) */
    double error, norm; /* ‖got − want‖² and ‖want‖² over the elements the dtype holds */
} range_check;

static inline range_check check_range(const float *got, const double *want, size_t count,
                                      closs_dtype_t dtype) {
    const double threshold = dtype_overflow_threshold(dtype);
    range_check result = {-1, 0, 0.0, 0.0};
    for (size_t i = 0; i < count; ++i) {
        const double exact = fabs(want[i]);
        int bad = isnan(got[i]);
        if (exact >= 1.01 * threshold) {
            ++result.beyond;
            bad |= !isinf(got[i]) || (got[i] > 0) != (want[i] > 0);
        } else if (exact <= 0.99 * threshold) {
            bad |= !isfinite(got[i]);
            result.error += ((double)got[i] - want[i]) * ((double)got[i] - want[i]);
            result.norm += want[i] * want[i];
        }
        if (bad && result.first_bad < 0) result.first_bad = (int64_t)i;
    }
    return result;
}

#endif
