/* Private: argument checks shared by every entry point (CPU reference now, GPU later).
 * Each returns CLOSS_STATUS_SUCCESS or records a message naming the argument and returns
 * CLOSS_STATUS_INVALID_ARGUMENT. None of them writes anything but the error detail. */
#ifndef CLOSS_HOST_VALIDATE_H
#define CLOSS_HOST_VALIDATE_H

#include <stdint.h>

#include "closs.h"

#define CLOSS_DTYPE_BIT(dtype) (1u << (unsigned)(dtype))
#define CLOSS_REF_FLOAT_DTYPES (CLOSS_DTYPE_BIT(CLOSS_F32) | CLOSS_DTYPE_BIT(CLOSS_F64))
#define CLOSS_LABEL_DTYPES     (CLOSS_DTYPE_BIT(CLOSS_I32) | CLOSS_DTYPE_BIT(CLOSS_I64))

const char *closs_dtype_name(closs_dtype_t dtype);

/* The struct pointer is not NULL and its `size` field equals `expected_size`. */
closs_status_t closs_check_params(const char *name, const void *params, size_t expected_size);
/* The same for a struct that grew: `size` may also be older_size, that of an earlier release
 * (whose fields are a prefix of the current struct's). */
closs_status_t closs_check_versioned_params(const char *name, const void *params, size_t older_size,
                                            size_t expected_size);
closs_status_t closs_check_reduction(closs_reduction_t reduction);

/* data (unless rows == 0), rows >= min_rows, cols >= 1, ld >= cols, an allowed dtype, and a
 * footprint ((rows − 1)·ld + cols elements, in bytes) that fits int64 and size_t. */
closs_status_t closs_check_matrix(const char *name, closs_matrix_t m, unsigned allowed_dtypes,
                                  int64_t min_rows);
/* closs_check_matrix for device memory: also data aligned to the element size. */
closs_status_t closs_check_device_matrix(const char *name, closs_matrix_t m,
                                         unsigned allowed_dtypes, int64_t min_rows);
/* b has the rows and cols of a. */
closs_status_t closs_check_same_shape(const char *name_a, closs_matrix_t a, const char *name_b,
                                      closs_matrix_t b);
/* data (unless length == 0), length == expected_length, an allowed dtype. */
closs_status_t closs_check_vector(const char *name, closs_vector_t v, unsigned allowed_dtypes,
                                  int64_t expected_length);
/* closs_check_vector for device memory: also data aligned to the element size. */
closs_status_t closs_check_device_vector(const char *name, closs_vector_t v,
                                         unsigned allowed_dtypes, int64_t expected_length);
/* Every element of a float vector lies in [0, 1] (NaN fails). */
closs_status_t closs_check_unit_interval(const char *name, closs_vector_t v);

/* Check mode: every element of an f32 or f64 matrix is finite, else NONFINITE_INPUT naming the
 * first bad element. */
closs_status_t closs_check_finite_matrix(const char *name, closs_matrix_t m);

closs_status_t closs_check_not_null(const char *name, const void *pointer);
closs_status_t closs_check_positive_finite(const char *name, double value);
closs_status_t closs_check_finite_in(const char *name, double value, double low, double high);
closs_status_t closs_check_flag(const char *name, int value); /* 0 or 1 */

/* The bytes a matrix spans from its data pointer, ((rows − 1)·ld + cols)·element size, 0 without
 * rows; call it after closs_check_matrix, which proved that it fits. */
size_t closs_matrix_span(closs_matrix_t m);

/* A device pointer is a multiple of `alignment` (its element size): a misaligned f32, f16 or bf16
 * access faults on the GPU and takes the CUDA context with it. */
closs_status_t closs_check_aligned(const char *name, const void *pointer, size_t alignment);

/* A named byte range [data, data + bytes) of a call; data NULL or bytes 0 is an empty range. */
typedef struct closs_span {
    const char *name;
    const void *data;
    size_t bytes;
} closs_span;

/* No output (the caller's workspace counts as one) shares a byte with an input or with another
 * output (the kernels read every input row while other threads write the outputs: in-place or
 * overlapping buffers give wrong answers). */
closs_status_t closs_check_disjoint(const closs_span *outputs, int output_count,
                                    const closs_span *inputs, int input_count);

/* *out = a·b, or INVALID_ARGUMENT naming `what` on overflow of int64. Both factors >= 0. */
closs_status_t closs_mul_size(const char *what, int64_t a, int64_t b, int64_t *out);
/* *out = a + b, likewise. */
closs_status_t closs_add_size(const char *what, int64_t a, int64_t b, int64_t *out);

#endif
