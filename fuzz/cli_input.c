/* A fuzz input as a `closs eval` command line. Beyond "no crash", the parsers promise
 * (eval_args.h, params.h): a refusal comes with a one-line message that fits the error buffer,
 * whatever its size, the outcome does not depend on that size, and an acceptance is complete (a
 * known loss, both directories, a known reduction, device and dtype). */
#define _POSIX_C_SOURCE 200809L /* strnlen */

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "eval_args.h"
#include "fuzz_inputs.h"
#include "params.h"

/* The size the closs tool gives the parser (tools/eval.c), and one that cuts every message (a
 * third, of 1 byte, has room for the terminating NUL only). */
#define ERR_SIZE_TOOL 4096
#define ERR_SIZE_TINY 5

/* The argument strings, each in its own allocation of its exact size so that AddressSanitizer
 * sees a read past its terminating NUL (in one shared buffer it would read the next string). */
typedef struct arguments {
    int count;
    char **values; /* count + 1 entries, the last NULL as in main's argv */
} arguments;

static void free_arguments(arguments *args) {
    if (!args->values) return;
    for (int i = 0; i < args->count; ++i) free(args->values[i]);
    free(args->values);
}

/* Every NUL ends a string; bytes after the last NUL are one more string. */
static bool split_arguments(const uint8_t *data, size_t size, arguments *args) {
    size_t count = 0;
    for (size_t i = 0; i < size; ++i) count += data[i] == '\0';
    if (size > 0 && data[size - 1] != '\0') ++count;
    args->count = 0;
    args->values = calloc(count + 1, sizeof(char *));
    if (!args->values) return false;
    size_t start = 0;
    while (start < size) {
        const uint8_t *nul = memchr(data + start, '\0', size - start);
        size_t length = nul ? (size_t)(nul - (data + start)) : size - start;
        char *value = malloc(length + 1);
        if (!value) return false;
        memcpy(value, data + start, length);
        value[length] = '\0';
        args->values[args->count++] = value;
        start += length + 1;
    }
    return true;
}

static const char *check_refusal(const char *err, size_t err_size) {
    size_t length = strnlen(err, err_size);
    if (length == err_size) return "the error message is not terminated within its buffer";
    if (length == 0 && err_size > 1) return "a refusal without an error message";
    if (memchr(err, '\n', length)) return "the error message is more than one line";
    return NULL;
}

static const char *check_accepted(const eval_args *parsed) {
    if (parsed->help) return NULL; /* nothing after --help is looked at */
    if (!parsed->in_dir || !parsed->in_dir[0] || !parsed->out_dir || !parsed->out_dir[0])
        return "accepted without both directories";
    if ((unsigned)parsed->params.loss >= CLI_LOSS_COUNT) return "accepted an unknown loss";
    if (strcmp(cli_reduction_name(cli_params_reduction(&parsed->params)), "?") == 0)
        return "accepted an unknown reduction";
    if (parsed->device != EVAL_DEVICE_DEFAULT && parsed->device != EVAL_DEVICE_CPU &&
        parsed->device != EVAL_DEVICE_CUDA)
        return "accepted an unknown device";
    if (strcmp(cli_dtype_name(parsed->dtype), "?") == 0) return "accepted an unknown dtype";
    return NULL;
}

/* Parses once with the error buffer err of err_size bytes and checks the outcome. */
static const char *parse_once(const arguments *args, char *err, size_t err_size, bool *accepted) {
    memset(err, 0, err_size);
    eval_args parsed;
    *accepted = eval_parse_args(args->count, args->values, &parsed, err, err_size);
    return *accepted ? check_accepted(&parsed) : check_refusal(err, err_size);
}

/* Every NAME=VALUE argument set on each loss's parameters, not only on the loss the line names,
 * then set again, which must be refused as given twice. */
static const char *set_on_every_loss(const arguments *args) {
    char err[ERR_SIZE_TOOL];
    for (int i = 0; i < args->count; ++i) {
        if (!strchr(args->values[i], '=')) continue;
        for (int l = 0; l < CLI_LOSS_COUNT; ++l) {
            cli_params params;
            cli_params_init(&params, (cli_loss)l);
            err[0] = '\0';
            bool first = cli_params_set(&params, args->values[i], err, sizeof err);
            if (!first && check_refusal(err, sizeof err)) return check_refusal(err, sizeof err);
            if (strcmp(cli_reduction_name(cli_params_reduction(&params)), "?") == 0)
                return "cli_params_set made the reduction unknown";
            err[0] = '\0';
            bool again = cli_params_set(&params, args->values[i], err, sizeof err);
            if (first && again) return "a parameter set twice was accepted";
            if (!again && check_refusal(err, sizeof err)) return check_refusal(err, sizeof err);
        }
    }
    return NULL;
}

const char *closs_fuzz_cli_input(const uint8_t *data, size_t size) {
    arguments args;
    const char *problem = NULL;
    if (split_arguments(data, size, &args)) {
        /* Separate arrays: AddressSanitizer's redzones around each catch a write past its end. */
        char err_tool[ERR_SIZE_TOOL], err_tiny[ERR_SIZE_TINY], err_one[1];
        bool accepted[3];
        problem = parse_once(&args, err_tool, sizeof err_tool, &accepted[0]);
        if (!problem) problem = parse_once(&args, err_tiny, sizeof err_tiny, &accepted[1]);
        if (!problem) problem = parse_once(&args, err_one, sizeof err_one, &accepted[2]);
        if (!problem && (accepted[0] != accepted[1] || accepted[0] != accepted[2]))
            problem = "the outcome depends on the size of the error buffer";
        if (!problem) problem = set_on_every_loss(&args);
    }
    free_arguments(&args);
    return problem;
}
