/* The input arrays of a loss, read from DIR/<name>.npy, checked against each other and converted
 * to the dtype the computation runs in. */
#ifndef CLOSS_TOOLS_INPUTS_H
#define CLOSS_TOOLS_INPUTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "closs.h"
#include "npy.h"
#include "params.h"

#define CLI_MAX_INPUTS 3

typedef enum cli_input_kind {
    CLI_INPUT_MATRIX,     /* float (rows, dim); the loss has a gradient for it */
    CLI_INPUT_TARGETS,    /* float (rows): pair and cosine labels y in [0, 1] */
    CLI_INPUT_LABELS,     /* integer (rows): SupCon class labels */
    CLI_INPUT_CANDIDATES, /* float (rows + negatives, dim): CLIP's and SigLIP's b, whose rows
                             after the partners are extra negatives; it has a gradient */
} cli_input_kind;

typedef struct cli_input {
    const char *name; /* the file's stem, also the closs_ref_* argument's name */
    cli_input_kind kind;
    npy_array array;     /* floats already converted to the compute dtype */
    closs_dtype_t dtype; /* of array.data, as the library names it */
} cli_input;

typedef struct cli_inputs {
    int count;
    cli_input items[CLI_MAX_INPUTS]; /* in the order the closs_ref_* function takes them */
    int64_t rows, dim;               /* of the first matrix (and every other but candidates) */
} cli_inputs;

/* Whether an input is a float matrix with a gradient (CLI_INPUT_MATRIX or _CANDIDATES). */
bool cli_input_is_matrix(const cli_input *input);

/* "x1, x2 (rows, dim); y (rows) in [0, 1]": what `loss` reads, for the help text. */
void cli_describe_inputs(cli_loss loss, char *out, size_t out_size);

/* Reads every input of `loss` from dir, converting float arrays to compute_dtype (CLOSS_F64 or
 * CLOSS_F32: float32 data is widened exactly, float64 data rounded to nearest). On failure writes
 * a one-line message naming the file into err and holds nothing. */
bool cli_load_inputs(cli_loss loss, const char *dir, closs_dtype_t compute_dtype,
                     cli_inputs *inputs, char *err, size_t err_size);
void cli_free_inputs(cli_inputs *inputs);

closs_matrix_t cli_input_matrix(const cli_inputs *inputs, int index);
closs_vector_t cli_input_vector(const cli_inputs *inputs, int index);

#endif
