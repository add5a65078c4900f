/* Loading a loss's inputs. The checks here are the ones only the tool can make (a file per input,
 * its number of dimensions and dtype, shapes that agree between files); value ranges, the row
 * count rules and labels in [0, 1] are left to the library, which names the offending value. */
#include "inputs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct input_spec {
    const char *name;
    cli_input_kind kind;
} input_spec;

/* Matrices first, each loss's inputs in the order of its closs_ref_* arguments. */
static const struct {
    int count;
    input_spec inputs[CLI_MAX_INPUTS];
} loss_inputs[CLI_LOSS_COUNT] = {
    [CLI_LOSS_PAIR] =
        {3, {{"x1", CLI_INPUT_MATRIX}, {"x2", CLI_INPUT_MATRIX}, {"y", CLI_INPUT_TARGETS}}},
    [CLI_LOSS_TRIPLET] = {3,
                          {{"anchor", CLI_INPUT_MATRIX},
                           {"positive", CLI_INPUT_MATRIX},
                           {"negative", CLI_INPUT_MATRIX}}},
    [CLI_LOSS_NTXENT] = {1, {{"z", CLI_INPUT_MATRIX}}},
    [CLI_LOSS_SUPCON] = {2, {{"z", CLI_INPUT_MATRIX}, {"labels", CLI_INPUT_LABELS}}},
    [CLI_LOSS_COSINE] =
        {3, {{"x1", CLI_INPUT_MATRIX}, {"x2", CLI_INPUT_MATRIX}, {"y", CLI_INPUT_TARGETS}}},
    [CLI_LOSS_CLIP] = {2, {{"a", CLI_INPUT_MATRIX}, {"b", CLI_INPUT_CANDIDATES}}},
    [CLI_LOSS_SIGLIP] = {2, {{"a", CLI_INPUT_MATRIX}, {"b", CLI_INPUT_CANDIDATES}}},
};

bool cli_input_is_matrix(const cli_input *input) {
    return input->kind == CLI_INPUT_MATRIX || input->kind == CLI_INPUT_CANDIDATES;
}

static const char *kind_shape(cli_input_kind kind) {
    switch (kind) {
    case CLI_INPUT_MATRIX: return "(rows, dim)";
    case CLI_INPUT_TARGETS: return "(rows) in [0, 1]";
    case CLI_INPUT_LABELS: return "(rows)";
    case CLI_INPUT_CANDIDATES: return "(rows + negatives, dim)";
    }
    return "?";
}

static const char *kind_dtypes(cli_input_kind kind) {
    return kind == CLI_INPUT_LABELS ? "int32 or int64" : "float32 or float64";
}

void cli_describe_inputs(cli_loss loss, char *out, size_t out_size) {
    size_t used = 0;
    out[0] = '\0';
    int count = loss_inputs[loss].count;
    for (int i = 0; i < count; ++i) {
        const input_spec *spec = &loss_inputs[loss].inputs[i];
        /* Consecutive inputs of one kind share their shape: "x1, x2 (rows, dim); y (rows)". */
        bool last_of_kind = i + 1 == count || loss_inputs[loss].inputs[i + 1].kind != spec->kind;
        int n = snprintf(out + used, out_size - used, "%s%s%s", spec->name,
                         last_of_kind ? " " : ", ", last_of_kind ? kind_shape(spec->kind) : "");
        if (n < 0 || (size_t)n >= out_size - used) return;
        used += (size_t)n;
        if (last_of_kind && i + 1 < count) {
            n = snprintf(out + used, out_size - used, "; ");
            if (n < 0 || (size_t)n >= out_size - used) return;
            used += (size_t)n;
        }
    }
}

static bool is_float(npy_dtype dtype) { return dtype == NPY_F4 || dtype == NPY_F8; }

/* Rewrites a float array in the compute dtype. */
static bool convert_floats(npy_array *array, closs_dtype_t compute_dtype) {
    npy_dtype wanted = compute_dtype == CLOSS_F32 ? NPY_F4 : NPY_F8;
    if (array->dtype == wanted || array->count == 0) {
        array->dtype = wanted;
        return true;
    }
    void *converted = malloc((size_t)array->count * npy_itemsize(wanted));
    if (!converted) return false;
    for (int64_t i = 0; i < array->count; ++i) {
        if (wanted == NPY_F4) ((float *)converted)[i] = (float)((const double *)array->data)[i];
        else ((double *)converted)[i] = ((const float *)array->data)[i];
    }
    free(array->data);
    array->data = converted;
    array->dtype = wanted;
    return true;
}

static closs_dtype_t library_dtype(npy_dtype dtype) {
    switch (dtype) {
    case NPY_F4: return CLOSS_F32;
    case NPY_F8: return CLOSS_F64;
    case NPY_I4: return CLOSS_I32;
    case NPY_I8: return CLOSS_I64;
    }
    return CLOSS_F64;
}

/* Reads one input and checks its number of dimensions and its dtype against its kind. */
static bool load_input(const char *dir, const input_spec *spec, closs_dtype_t compute_dtype,
                       cli_input *input, char *err, size_t err_size) {
    char path[4096];
    if (snprintf(path, sizeof path, "%s/%s.npy", dir, spec->name) >= (int)sizeof path) {
        snprintf(err, err_size, "--in directory name too long");
        return false;
    }
    char detail[512];
    npy_array array;
    if (!npy_read(path, &array, detail, sizeof detail)) {
        snprintf(err, err_size, "%s: %s", path, detail);
        return false;
    }
    bool want_float = spec->kind != CLI_INPUT_LABELS;
    int want_ndim = spec->kind == CLI_INPUT_MATRIX || spec->kind == CLI_INPUT_CANDIDATES ? 2 : 1;
    if (array.ndim != want_ndim || is_float(array.dtype) != want_float) {
        char shape[64];
        npy_format_shape(array.shape, array.ndim, shape, sizeof shape);
        snprintf(err, err_size, "%s: %s must be %s %s, got shape %s of %s", path, spec->name,
                 kind_dtypes(spec->kind), kind_shape(spec->kind), shape, npy_descr(array.dtype));
        npy_free(&array);
        return false;
    }
    if (want_float && !convert_floats(&array, compute_dtype)) {
        snprintf(err, err_size, "%s: out of memory converting to %s", path,
                 compute_dtype == CLOSS_F32 ? "float32" : "float64");
        npy_free(&array);
        return false;
    }
    input->name = spec->name;
    input->kind = spec->kind;
    input->array = array;
    input->dtype = library_dtype(array.dtype);
    return true;
}

/* Every matrix has the first one's shape and every vector one element per row. Candidates (b)
 * have rows of their own, and their dim and row count are the library's to check. */
static bool check_agreement(cli_inputs *inputs, char *err, size_t err_size) {
    const cli_input *first = &inputs->items[0];
    inputs->rows = first->array.shape[0];
    inputs->dim = first->array.shape[1];
    for (int i = 1; i < inputs->count; ++i) {
        const cli_input *input = &inputs->items[i];
        if (input->kind == CLI_INPUT_CANDIDATES) continue;
        char shape[64], first_shape[64];
        npy_format_shape(input->array.shape, input->array.ndim, shape, sizeof shape);
        npy_format_shape(first->array.shape, first->array.ndim, first_shape, sizeof first_shape);
        if (input->kind == CLI_INPUT_MATRIX &&
            (input->array.shape[0] != inputs->rows || input->array.shape[1] != inputs->dim)) {
            snprintf(err, err_size, "%s.npy has shape %s but %s.npy has %s: they must match",
                     input->name, shape, first->name, first_shape);
            return false;
        }
        if (input->kind != CLI_INPUT_MATRIX && input->array.shape[0] != inputs->rows) {
            snprintf(err, err_size, "%s.npy has shape %s but %s.npy has %lld rows: one %s per row",
                     input->name, shape, first->name, (long long)inputs->rows,
                     input->kind == CLI_INPUT_LABELS ? "label" : "target");
            return false;
        }
    }
    return true;
}

bool cli_load_inputs(cli_loss loss, const char *dir, closs_dtype_t compute_dtype,
                     cli_inputs *inputs, char *err, size_t err_size) {
    memset(inputs, 0, sizeof *inputs);
    for (int i = 0; i < loss_inputs[loss].count; ++i) {
        if (!load_input(dir, &loss_inputs[loss].inputs[i], compute_dtype, &inputs->items[i], err,
                        err_size)) {
            cli_free_inputs(inputs);
            return false;
        }
        inputs->count = i + 1;
    }
    if (!check_agreement(inputs, err, err_size)) {
        cli_free_inputs(inputs);
        return false;
    }
    return true;
}

void cli_free_inputs(cli_inputs *inputs) {
    for (int i = 0; i < inputs->count; ++i) npy_free(&inputs->items[i].array);
    inputs->count = 0;
}

closs_matrix_t cli_input_matrix(const cli_inputs *inputs, int index) {
    const cli_input *input = &inputs->items[index];
    return closs_matrix(input->array.data, input->dtype, input->array.shape[0],
                        input->array.shape[1]);
}

closs_vector_t cli_input_vector(const cli_inputs *inputs, int index) {
    const cli_input *input = &inputs->items[index];
    return closs_vector(input->array.data, input->dtype, input->array.count);
}
