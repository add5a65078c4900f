/* `closs eval LOSS --in DIR --out DIR [--device D] [--dtype T] [NAME=VALUE ...]`
 *
 * Reads the loss's inputs from DIR/<input>.npy, computes the loss and the gradient of every float
 * input (and of CLIP's and SigLIP's logit scale and bias), writes loss.npy and grad_<input>.npy
 * (float64) into the out DIR and prints one JSON line.
 * The arguments are parsed by eval_args.c, which does no I/O. The order is what keeps a failure
 * clean: every argument is checked and everything computed before the first file is written, and
 * the files are written under temporary names and renamed only once all of them are complete. */
#define _POSIX_C_SOURCE 200809L /* mkdir, stat */

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "closs.h"
#include "commands.h"
#include "eval_args.h"
#include "eval_gpu.h"
#include "inputs.h"
#include "npy.h"
#include "params.h"

/* The CPU stays the default until a device check has verified the GPU entry points; then a
 * machine with a CUDA device should use it by default. --device cuda runs them when asked. */
static eval_device default_device(void) { return EVAL_DEVICE_CPU; }

static const char *const device_names[] = {[EVAL_DEVICE_CPU] = "cpu", [EVAL_DEVICE_CUDA] = "cuda"};

/* The scalar parameters with a gradient (CLIP's and SigLIP's), in the order of the closs_ref_*
 * arguments: grad_<name>.npy. */
#define MAX_SCALARS 2
static const char *const scalar_names[MAX_SCALARS] = {"logit_scale", "logit_bias"};

static int scalar_count(cli_loss loss) {
    return loss == CLI_LOSS_CLIP ? 1 : loss == CLI_LOSS_SIGLIP ? 2 : 0;
}

typedef struct eval_results {
    double *loss;                      /* one value, or one per row for reduction none */
    double *grads[CLI_MAX_INPUTS];     /* for each matrix input, NULL for the others */
    int64_t grad_rows[CLI_MAX_INPUTS]; /* the rows of each gradient */
    double scalar_grads[MAX_SCALARS];  /* logit_scale, logit_bias */
    int64_t valid;                     /* SupCon: anchors with at least one positive */
} eval_results;

static int report(int status, const char *format, ...) __attribute__((format(printf, 2, 3)));

/* Prints "closs: error: <message>" on one line and returns `status`, the exit status. */
static int report(int status, const char *format, ...) {
    va_list args;
    va_start(args, format);
    fputs("closs: error: ", stderr);
    vfprintf(stderr, format, args);
    fputc('\n', stderr);
    va_end(args);
    return status;
}

static void print_help(FILE *out) {
    fprintf(
        out,
        "usage: closs eval LOSS --in DIR --out DIR [--device cpu|cuda] "
        "[--dtype f64|f32|f16|bf16] [NAME=VALUE ...]\n"
        "\n"
        "Computes LOSS and its gradients from the .npy files in the --in DIR, writes loss.npy\n"
        "(shape () for mean and sum, (rows,) for none) and grad_<input>.npy for every float\n"
        "input (float64, the input's shape; clip's and siglip's grad_b has only the rows of a\n"
        "with grad_negatives=0), and for clip and siglip grad_logit_scale.npy (and for siglip\n"
        "grad_logit_bias.npy, shape ()) into the --out DIR, and prints one JSON line:\n"
        "  {\"loss\": ..., \"device\": ..., \"dtype\": ..., \"rows\": ..., \"dim\": ..., "
        "\"reduction\": ...}\n"
        "with \"valid\" (anchors with a positive) added for supcon and \"negatives\" (b's rows\n"
        "after the partners) for clip and siglip. A loss that is not finite or not a single\n"
        "value (reduction=none) is null, with \"loss_text\" when not finite.\n"
        "\n"
        "losses and the inputs they read (DIR/<input>.npy):\n");
    for (int l = 0; l < CLI_LOSS_COUNT; ++l) {
        char inputs[256];
        cli_describe_inputs((cli_loss)l, inputs, sizeof inputs);
        fprintf(out, "  %-8s %s\n", cli_loss_name((cli_loss)l), inputs);
    }
    fprintf(
        out,
        "Float inputs are float32 or float64, labels int32 or int64, all in C order.\n"
        "\n"
        "options:\n"
        "  --in DIR        the directory holding the inputs\n"
        "  --out DIR       the directory for the outputs, created if missing\n"
        "  --device DEV    cpu (default %s) or cuda (the GPU entry points, not yet verified on\n"
        "                  a GPU; not yet written for clip and siglip)\n"
        "  --dtype TYPE    the dtype the loss is computed in: f64 (default, CPU only), f32\n"
        "                  (inputs rounded to float32 first), f16 or bf16 (GPU only)\n"
        "  -h, --help      this text\n"
        "\n"
        "parameters (NAME=VALUE, shown with their defaults; the library checks the ranges):\n",
        device_names[default_device()]);
    cli_params_print_help(out);
}

static void free_results(eval_results *results) {
    free(results->loss);
    for (int i = 0; i < CLI_MAX_INPUTS; ++i) free(results->grads[i]);
}

/* The rows of an input's gradient: its own, but for b without grad_negatives only the partners'
 * (the rows of a). */
static int64_t gradient_rows(const cli_params *params, const cli_inputs *inputs, int index) {
    const cli_input *input = &inputs->items[index];
    if (input->kind != CLI_INPUT_CANDIDATES) return input->array.shape[0];
    const int all = params->loss == CLI_LOSS_CLIP ? params->as.clip.grad_negatives
                                                  : params->as.siglip.grad_negatives;
    return all ? input->array.shape[0] : inputs->rows;
}

static bool allocate_results(const cli_params *params, const cli_inputs *inputs,
                             eval_results *results) {
    memset(results, 0, sizeof *results);
    const closs_reduction_t reduction = cli_params_reduction(params);
    size_t loss_count = reduction == CLOSS_REDUCTION_NONE ? (size_t)inputs->rows : 1;
    /* At least one element each: the library wants a pointer even for an empty batch. */
    results->loss = calloc(loss_count ? loss_count : 1, sizeof(double));
    bool ok = results->loss != NULL;
    for (int i = 0; i < inputs->count; ++i) {
        const cli_input *input = &inputs->items[i];
        if (!cli_input_is_matrix(input)) continue;
        /* Room for the whole input: the library refuses a b whose dim differs from a's. */
        const size_t count = (size_t)input->array.count;
        results->grads[i] = calloc(count ? count : 1, sizeof(double));
        results->grad_rows[i] = gradient_rows(params, inputs, i);
        ok = ok && results->grads[i] != NULL;
    }
    return ok;
}

static closs_status_t run_reference(const cli_params *params, const cli_inputs *in,
                                    eval_results *out) {
    switch (params->loss) {
    case CLI_LOSS_PAIR:
        return closs_ref_pair(&params->as.pair, cli_input_matrix(in, 0), cli_input_matrix(in, 1),
                              cli_input_vector(in, 2), NULL, out->loss, out->grads[0],
                              out->grads[1]);
    case CLI_LOSS_TRIPLET:
        return closs_ref_triplet(&params->as.triplet, cli_input_matrix(in, 0),
                                 cli_input_matrix(in, 1), cli_input_matrix(in, 2), NULL, out->loss,
                                 out->grads[0], out->grads[1], out->grads[2]);
    case CLI_LOSS_NTXENT:
        return closs_ref_ntxent(&params->as.ntxent, cli_input_matrix(in, 0), NULL, out->loss,
                                out->grads[0]);
    case CLI_LOSS_SUPCON:
        return closs_ref_supcon(&params->as.supcon, cli_input_matrix(in, 0),
                                cli_input_vector(in, 1), NULL, out->loss, out->grads[0],
                                &out->valid);
    case CLI_LOSS_COSINE:
        return closs_ref_cosine(&params->as.cosine, cli_input_matrix(in, 0),
                                cli_input_matrix(in, 1), cli_input_vector(in, 2), NULL, out->loss,
                                out->grads[0], out->grads[1]);
    case CLI_LOSS_CLIP:
        return closs_ref_clip(&params->as.clip, cli_input_matrix(in, 0), cli_input_matrix(in, 1),
                              NULL, out->loss, out->grads[0], out->grads[1], &out->scalar_grads[0]);
    case CLI_LOSS_SIGLIP:
        return closs_ref_siglip(&params->as.siglip, cli_input_matrix(in, 0),
                                cli_input_matrix(in, 1), NULL, out->loss, out->grads[0],
                                out->grads[1], &out->scalar_grads[0], &out->scalar_grads[1]);
    case CLI_LOSS_COUNT: break;
    }
    return CLOSS_STATUS_INVALID_ARGUMENT;
}

/* mkdir -p: creates path and its missing parents. */
static bool make_directories(const char *path, char *err, size_t err_size) {
    char partial[4096];
    const size_t length = strlen(path);
    if (length >= sizeof partial) {
        snprintf(err, err_size, "--out directory name too long");
        return false;
    }
    memcpy(partial, path, length + 1); /* with its NUL: fits, checked above */
    for (char *p = partial + 1;; ++p) {
        if (*p != '/' && *p != '\0') continue;
        char saved = *p;
        *p = '\0';
        if (mkdir(partial, 0777) != 0 && errno != EEXIST) {
            snprintf(err, err_size, "cannot create directory %s: %s", partial, strerror(errno));
            return false;
        }
        *p = saved;
        if (saved == '\0') break;
    }
    struct stat info;
    if (stat(path, &info) != 0 || !S_ISDIR(info.st_mode)) {
        snprintf(err, err_size, "--out %s is not a directory", path);
        return false;
    }
    return true;
}

/* Writes loss.npy, every grad_<input>.npy and grad_<scalar>.npy, all or none. */
static bool write_outputs(const char *out_dir, const cli_params *params, const cli_inputs *inputs,
                          const eval_results *results, char *err, size_t err_size) {
    if (!make_directories(out_dir, err, err_size)) return false;
    const closs_reduction_t reduction = cli_params_reduction(params);
    npy_pending pending[1 + CLI_MAX_INPUTS + MAX_SCALARS];
    int staged = 0;
    char path[4200];
    snprintf(path, sizeof path, "%s/loss.npy", out_dir);
    int64_t loss_shape[1] = {inputs->rows};
    bool ok = npy_write_pending(path, NPY_F8, reduction == CLOSS_REDUCTION_NONE ? 1 : 0, loss_shape,
                                results->loss, &pending[staged], err, err_size);
    staged += ok;
    for (int i = 0; ok && i < inputs->count; ++i) {
        if (!results->grads[i]) continue;
        int64_t grad_shape[2] = {results->grad_rows[i], inputs->items[i].array.shape[1]};
        snprintf(path, sizeof path, "%s/grad_%s.npy", out_dir, inputs->items[i].name);
        ok = npy_write_pending(path, NPY_F8, 2, grad_shape, results->grads[i], &pending[staged],
                               err, err_size);
        staged += ok;
    }
    for (int k = 0; ok && k < scalar_count(params->loss); ++k) {
        snprintf(path, sizeof path, "%s/grad_%s.npy", out_dir, scalar_names[k]);
        ok = npy_write_pending(path, NPY_F8, 0, loss_shape, &results->scalar_grads[k],
                               &pending[staged], err, err_size);
        staged += ok;
    }
    for (int i = 0; i < staged; ++i) {
        if (ok) ok = npy_commit(&pending[i], err, err_size);
        else npy_discard(&pending[i]);
    }
    return ok;
}

static void print_summary(const cli_params *params, eval_device device, closs_dtype_t dtype,
                          const cli_inputs *inputs, const eval_results *results) {
    closs_reduction_t reduction = cli_params_reduction(params);
    double loss = results->loss[0];
    if (reduction == CLOSS_REDUCTION_NONE) printf("{\"loss\": null");
    else if (isfinite(loss)) printf("{\"loss\": %.17g", loss);
    else
        printf("{\"loss\": null, \"loss_text\": \"%s\"", isnan(loss) ? "nan"
                                                         : loss > 0  ? "inf"
                                                                     : "-inf");
    printf(", \"device\": \"%s\", \"dtype\": \"%s\", \"rows\": %lld, \"dim\": %lld, "
           "\"reduction\": \"%s\"",
           device_names[device], cli_dtype_name(dtype), (long long)inputs->rows,
           (long long)inputs->dim, cli_reduction_name(reduction));
    if (params->loss == CLI_LOSS_SUPCON) printf(", \"valid\": %lld", (long long)results->valid);
    if (scalar_count(params->loss) > 0)
        printf(", \"negatives\": %lld",
               (long long)(inputs->items[1].array.shape[0] - inputs->rows));
    printf("}\n");
}

/* Loads, computes, writes, prints. The GPU reads float inputs loaded as float32 and converted
 * to its dtype on the way. */
static int evaluate(const char *in_dir, const char *out_dir, const cli_params *params,
                    eval_device device, closs_dtype_t dtype) {
    char err[1024];
    cli_inputs inputs;
    const closs_dtype_t load_dtype = device == EVAL_DEVICE_CUDA ? CLOSS_F32 : dtype;
    if (!cli_load_inputs(params->loss, in_dir, load_dtype, &inputs, err, sizeof err))
        return report(CLOSS_EXIT_USAGE, "%s", err);
    eval_results results;
    int status = CLOSS_EXIT_OK;
    if (!allocate_results(params, &inputs, &results)) {
        status = report(CLOSS_EXIT_FAILURE, "out of memory for the outputs");
    } else {
        closs_status_t computed;
        if (device == EVAL_DEVICE_CUDA) {
            computed =
                cli_eval_gpu(params, dtype, &inputs, results.grad_rows, results.loss, results.grads,
                             results.scalar_grads, &results.valid, err, sizeof err);
        } else {
            computed = run_reference(params, &inputs, &results);
            snprintf(err, sizeof err, "%s", closs_last_error());
        }
        if (computed != CLOSS_STATUS_SUCCESS) {
            /* Bad input, or a request this machine cannot serve (no device, no CUDA build). */
            bool usage = computed == CLOSS_STATUS_INVALID_ARGUMENT ||
                         computed == CLOSS_STATUS_NONFINITE_INPUT ||
                         computed == CLOSS_STATUS_NO_DEVICE ||
                         computed == CLOSS_STATUS_NOT_SUPPORTED;
            status =
                report(usage ? CLOSS_EXIT_USAGE : CLOSS_EXIT_FAILURE, "%s: %s",
                       cli_loss_name(params->loss), err[0] ? err : closs_status_string(computed));
        } else if (!write_outputs(out_dir, params, &inputs, &results, err, sizeof err)) {
            status = report(CLOSS_EXIT_FAILURE, "%s", err);
        } else {
            print_summary(params, device, dtype, &inputs, &results);
            if (fflush(stdout) != 0 || ferror(stdout))
                status = report(CLOSS_EXIT_FAILURE, "cannot write the summary to stdout");
        }
    }
    free_results(&results);
    cli_free_inputs(&inputs);
    return status;
}

/* Whether the parsed device and dtype can run, given what the library was built with. */
static int run_checked(const eval_args *args) {
    eval_device device = args->device == EVAL_DEVICE_DEFAULT ? default_device() : args->device;
    if (device == EVAL_DEVICE_CUDA && args->dtype == CLOSS_F64)
        return report(CLOSS_EXIT_USAGE,
                      "--device cuda: --dtype f64 (the default) is CPU only; give --dtype f32, "
                      "f16 or bf16");
    if (device == EVAL_DEVICE_CPU && args->dtype != CLOSS_F64 && args->dtype != CLOSS_F32)
        return report(CLOSS_EXIT_USAGE, "--dtype %s: the CPU reference takes f64 or f32",
                      cli_dtype_name(args->dtype));
    return evaluate(args->in_dir, args->out_dir, &args->params, device, args->dtype);
}

int closs_eval_main(int argc, char **argv) {
    eval_args args;
    /* Room for any message in full but an argument of several kilobytes, which is cut short. */
    char err[4096];
    if (!eval_parse_args(argc, argv, &args, err, sizeof err))
        return report(CLOSS_EXIT_USAGE, "%s", err);
    if (args.help) {
        print_help(stdout);
        return CLOSS_EXIT_OK;
    }
    return run_checked(&args);
}
