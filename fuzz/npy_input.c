/* A fuzz input as a .npy file. Beyond "no crash", the reader promises (npy.h): a refusal comes
 * with a one-line message that fits the error buffer, whatever its size, and an acceptance
 * describes exactly the bytes it was given: the shape's product is the element count and the
 * data is the last count * itemsize bytes of the file. */
#define _POSIX_C_SOURCE 200809L /* strnlen */

#include <stdbool.h>
#include <string.h>

#include "fuzz_inputs.h"
#include "npy.h"

/* The size the closs tool gives the reader (tools/inputs.c), and one that cuts every message. */
#define ERR_SIZE_TOOL 512
#define ERR_SIZE_TINY 7

static const char *check_refusal(const char *err, size_t err_size) {
    size_t length = strnlen(err, err_size);
    if (length == err_size) return "the error message is not terminated within its buffer";
    if (length == 0) return "a refusal without an error message";
    if (memchr(err, '\n', length)) return "the error message is more than one line";
    return NULL;
}

static const char *check_array(const npy_array *array, const uint8_t *data, size_t size) {
    if (array->ndim < 0 || array->ndim > NPY_MAX_DIMS) return "ndim out of range";
    size_t itemsize = npy_itemsize(array->dtype);
    if (itemsize == 0 || strcmp(npy_descr(array->dtype), "?") == 0) return "an unknown dtype";
    int64_t count = 1;
    bool overflow = false;
    for (int d = 0; d < array->ndim; ++d) {
        if (array->shape[d] < 0) return "a negative dimension";
        overflow |= __builtin_mul_overflow(count, array->shape[d], &count);
    }
    if (overflow) {
        /* Harmless only when some dimension is 0: the array then has no elements. */
        for (int d = 0; d < array->ndim; ++d)
            if (array->shape[d] == 0) count = 0;
        if (count != 0) return "the shape's product overflows but the array was accepted";
    }
    if (count != array->count) return "count is not the product of the shape";
    if ((uint64_t)count > size / itemsize) return "more data than the file holds";
    size_t data_bytes = (size_t)count * itemsize;
    if (data_bytes > 0 && !array->data) return "elements but no data";
    if (count == 0 && array->data) return "data for an empty array";
    /* Reading every byte also lets AddressSanitizer check the allocation's size. */
    if (data_bytes && memcmp(array->data, data + size - data_bytes, data_bytes) != 0)
        return "the data is not the end of the file";

    char shape_text[NPY_MAX_DIMS * 22 + 4], short_text[6];
    npy_format_shape(array->shape, array->ndim, shape_text, sizeof shape_text);
    npy_format_shape(array->shape, array->ndim, short_text, sizeof short_text);
    if (strnlen(shape_text, sizeof shape_text) == sizeof shape_text ||
        strnlen(short_text, sizeof short_text) == sizeof short_text)
        return "npy_format_shape left its output unterminated";
    if (shape_text[0] != '(' || shape_text[strlen(shape_text) - 1] != ')')
        return "npy_format_shape cut a shape short in a buffer meant for the longest one";
    return NULL;
}

/* Decodes once with the error buffer err of err_size bytes (none when err_size is 0) and checks
 * the outcome. *accepted says whether the reader accepted the file. */
static const char *decode(const uint8_t *data, size_t size, char *err, size_t err_size,
                          bool *accepted) {
    if (err_size) memset(err, 0, err_size);
    npy_array array;
    *accepted = npy_parse(data, size, &array, err, err_size);
    if (!*accepted) return err_size ? check_refusal(err, err_size) : NULL;
    const char *problem = check_array(&array, data, size);
    npy_free(&array);
    npy_free(&array); /* freeing twice is allowed: npy_free leaves the array empty */
    return problem;
}

const char *closs_fuzz_npy_input(const uint8_t *data, size_t size) {
    /* Separate arrays: AddressSanitizer's redzones around each catch a write past its end. */
    char err_tool[ERR_SIZE_TOOL], err_tiny[ERR_SIZE_TINY];
    bool accepted[3];
    const char *problem = decode(data, size, err_tool, sizeof err_tool, &accepted[0]);
    if (!problem) problem = decode(data, size, err_tiny, sizeof err_tiny, &accepted[1]);
    if (!problem) problem = decode(data, size, NULL, 0, &accepted[2]);
    if (!problem && (accepted[0] != accepted[1] || accepted[0] != accepted[2]))
        problem = "the outcome depends on the size of the error buffer";
    return problem;
}
