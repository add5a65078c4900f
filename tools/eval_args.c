/* Parsing `closs eval LOSS --in DIR --out DIR [--device D] [--dtype T] [NAME=VALUE ...]`.
 *
 * Arguments are read in order and the first problem is the one reported. NAME=VALUE parameters
 * may come before the loss name, so they are applied in a second pass, once the whole line has
 * been sorted and the loss is known; the second pass walks argv exactly as the first did, which
 * needs no list of the parameters (nothing is allocated, nothing to free). */
#include "eval_args.h"

#include <stdio.h>
#include <string.h>

/* The option values as written, before they are interpreted. */
typedef struct option_values {
    const char *in, *out, *device, *dtype;
} option_values;

/* The option --NAME (NAME being `length` bytes) goes into *slot; NULL for an unknown option. */
static const char **option_slot(option_values *values, const char *name, size_t length) {
    static const char *const names[] = {"in", "out", "device", "dtype"};
    const char **slots[] = {&values->in, &values->out, &values->device, &values->dtype};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; ++i)
        if (strlen(names[i]) == length && strncmp(names[i], name, length) == 0) return slots[i];
    return NULL;
}

static bool is_help(const char *arg) {
    return strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0;
}

/* "--NAME" without "=VALUE": its value is the next argument. */
static bool value_follows(const char *arg) {
    return arg[0] == '-' && arg[1] == '-' && !strchr(arg, '=');
}

/* First pass: sorts the arguments into the loss name and the options, and checks the options'
 * syntax. Sets args->help and stops when --help is reached. */
static bool sort_arguments(int argc, char **argv, eval_args *args, const char **loss_name,
                           option_values *values, char *err, size_t err_size) {
    for (int i = 1; i < argc; ++i) {
        const char *arg = argv[i];
        if (is_help(arg)) {
            args->help = true;
            return true;
        }
        if (arg[0] == '-' && arg[1] == '-') {
            const char *name = arg + 2;
            const char *equals = strchr(name, '=');
            size_t length = equals ? (size_t)(equals - name) : strlen(name);
            /* The name goes into messages with %.*s, which takes an int. */
            int shown = length > 1024 ? 1024 : (int)length;
            const char **slot = option_slot(values, name, length);
            if (!slot) {
                snprintf(err, err_size, "unknown option '--%.*s'; see 'closs eval --help'", shown,
                         name);
                return false;
            }
            if (*slot) {
                snprintf(err, err_size, "--%.*s given twice", shown, name);
                return false;
            }
            const char *value = equals ? equals + 1 : i + 1 < argc ? argv[++i] : NULL;
            if (!value || value[0] == '\0') {
                snprintf(err, err_size, "--%.*s needs a value", shown, name);
                return false;
            }
            *slot = value;
        } else if (arg[0] == '-') {
            snprintf(err, err_size, "unknown option '%s'; see 'closs eval --help'", arg);
            return false;
        } else if (strchr(arg, '=')) {
            continue; /* a parameter, applied by the second pass */
        } else if (*loss_name) {
            snprintf(err, err_size, "unexpected argument '%s' (the loss is already %s)", arg,
                     *loss_name);
            return false;
        } else {
            *loss_name = arg;
        }
    }
    if (!*loss_name) {
        snprintf(err, err_size, "missing LOSS (%s); see 'closs eval --help'", cli_loss_names());
        return false;
    }
    if (!values->in) {
        snprintf(err, err_size, "missing --in DIR");
        return false;
    }
    if (!values->out) {
        snprintf(err, err_size, "missing --out DIR");
        return false;
    }
    return true;
}

/* Second pass: applies the NAME=VALUE arguments in order, skipping option values as the first
 * pass did (which has already refused every other kind of argument it could meet). */
static bool apply_parameters(int argc, char **argv, cli_params *params, char *err,
                             size_t err_size) {
    for (int i = 1; i < argc; ++i) {
        const char *arg = argv[i];
        if (value_follows(arg)) ++i;
        else if (arg[0] != '-' && strchr(arg, '=') && !cli_params_set(params, arg, err, err_size))
            return false;
    }
    return true;
}

static bool parse(int argc, char **argv, eval_args *args, char *err, size_t err_size) {
    memset(args, 0, sizeof *args);
    args->device = EVAL_DEVICE_DEFAULT;
    args->dtype = CLOSS_F64;
    const char *loss_name = NULL;
    option_values values = {0};
    if (!sort_arguments(argc, argv, args, &loss_name, &values, err, err_size)) return false;
    if (args->help) return true;
    args->in_dir = values.in;
    args->out_dir = values.out;

    cli_loss loss;
    if (!cli_loss_from_name(loss_name, &loss)) {
        snprintf(err, err_size, "unknown loss '%s' (expected %s)", loss_name, cli_loss_names());
        return false;
    }
    cli_params_init(&args->params, loss);
    if (!apply_parameters(argc, argv, &args->params, err, err_size)) return false;

    if (values.device) {
        if (strcmp(values.device, "cpu") == 0) {
            args->device = EVAL_DEVICE_CPU;
        } else if (strcmp(values.device, "cuda") == 0) {
            args->device = EVAL_DEVICE_CUDA;
        } else {
            snprintf(err, err_size, "--device %s: expected cpu or cuda", values.device);
            return false;
        }
    }
    if (values.dtype && !cli_dtype_from_name(values.dtype, &args->dtype)) {
        snprintf(err, err_size, "--dtype %s: expected f64, f32, f16 or bf16", values.dtype);
        return false;
    }
    return true;
}

bool eval_parse_args(int argc, char **argv, eval_args *args, char *err, size_t err_size) {
    if (parse(argc, argv, args, err, err_size)) return true;
    /* The messages quote arguments, which may hold any byte but NUL. */
    cli_make_printable(err, err_size);
    return false;
}
