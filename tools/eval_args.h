/* The command line of `closs eval`, parsed into what to compute. Parsing does no I/O and
 * allocates nothing: every check that needs only the arguments is made here, so that it can be
 * fuzzed and tested in-process, while eval.c prints, reads the inputs and computes. */
#ifndef CLOSS_TOOLS_EVAL_ARGS_H
#define CLOSS_TOOLS_EVAL_ARGS_H

#include <stdbool.h>
#include <stddef.h>

#include "closs.h"
#include "params.h"

typedef enum eval_device {
    EVAL_DEVICE_DEFAULT, /* --device was not given: eval.c picks one */
    EVAL_DEVICE_CPU,
    EVAL_DEVICE_CUDA
} eval_device;

typedef struct eval_args {
    bool help;                    /* --help or -h was reached; nothing after it was looked at */
    const char *in_dir, *out_dir; /* point into argv */
    cli_params params;            /* the loss and its NAME=VALUE parameters */
    eval_device device;
    closs_dtype_t dtype; /* CLOSS_F64 unless --dtype names another */
} eval_args;

/* Parses `closs eval` arguments (argv[0] is "eval" and is skipped; argv[argc] need not be NULL).
 * Returns true when they are well-formed, or when --help was reached first (args->help);
 * otherwise writes a one-line message into err (err_size bytes) and returns false. Whether the
 * device and dtype can run is not checked here: that depends on what the library was built with. */
bool eval_parse_args(int argc, char **argv, eval_args *args, char *err, size_t err_size);

#endif
