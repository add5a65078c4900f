/* libFuzzer target: arbitrary bytes as a .npy file (see npy_input.c for what is checked). */
#include <stdlib.h>

#include "fuzz_inputs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* A broken promise is a finding like a sanitizer report: abort so libFuzzer saves the input.
     * tests/test_fuzz_regressions.c replays it and prints the description. */
    if (closs_fuzz_npy_input(data, size)) abort();
    return 0;
}
