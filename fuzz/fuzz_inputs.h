/* One fuzz input through the closs tool's parsers, with the promises each parser makes checked.
 * The libFuzzer targets (fuzz_npy.c, fuzz_cli_args.c) and the regression test
 * (tests/test_fuzz_regressions.c) both call these, so a saved crash replays exactly as found.
 *
 * Each returns NULL when the input was accepted or refused cleanly, or a description of the
 * promise it broke. Memory errors and undefined behaviour are the sanitizers' to catch. Nothing
 * is printed, nothing is left allocated, and no file is touched. */
#ifndef CLOSS_FUZZ_INPUTS_H
#define CLOSS_FUZZ_INPUTS_H

#include <stddef.h>
#include <stdint.h>

/* The bytes as a whole .npy file, decoded by npy_parse. */
const char *closs_fuzz_npy_input(const uint8_t *data, size_t size);

/* The bytes as an argument vector, split on NUL bytes: the first string is the subcommand's
 * argv[0] ("eval" in the seeds), parsed by eval_parse_args; every NAME=VALUE string is also set
 * on each loss's parameters with cli_params_set. */
const char *closs_fuzz_cli_input(const uint8_t *data, size_t size);

#endif
