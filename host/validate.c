/* Argument checks shared by every entry point. Messages name the argument, its value and the
 * accepted range, in the form "<argument> = <value>: <rule>". */
#include "validate.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>

#include "error.h"

const char *closs_dtype_name(closs_dtype_t dtype) {
    switch (dtype) {
    case CLOSS_F32: return "f32";
    case CLOSS_F16: return "f16";
    case CLOSS_BF16: return "bf16";
    case CLOSS_F64: return "f64";
    case CLOSS_I32: return "i32";
    case CLOSS_I64: return "i64";
    }
    return "unknown";
}

size_t closs_dtype_size(closs_dtype_t dtype) {
    switch (dtype) {
    case CLOSS_F16:
    case CLOSS_BF16: return 2;
    case CLOSS_F32:
    case CLOSS_I32: return 4;
    case CLOSS_F64:
    case CLOSS_I64: return 8;
    }
    return 0;
}

static closs_status_t invalid(const char *format, ...) __attribute__((format(printf, 1, 2)));

static closs_status_t invalid(const char *format, ...) {
    char text[400];
    va_list args;
    va_start(args, format);
    vsnprintf(text, sizeof text, format, args);
    va_end(args);
    return closs_fail(CLOSS_STATUS_INVALID_ARGUMENT, "%s", text);
}

static void describe_dtypes(unsigned allowed, char *out, size_t out_size) {
    size_t used = 0;
    out[0] = '\0';
    for (int d = CLOSS_F32; d <= CLOSS_I64; ++d) {
        if (!(allowed & CLOSS_DTYPE_BIT(d))) continue;
        int n = snprintf(out + used, out_size - used, "%s%s", used ? " or " : "",
                         closs_dtype_name((closs_dtype_t)d));
        if (n < 0 || (size_t)n >= out_size - used) break;
        used += (size_t)n;
    }
}

closs_status_t closs_check_params(const char *name, const void *params, size_t expected_size) {
    return closs_check_versioned_params(name, params, expected_size, expected_size);
}

closs_status_t closs_check_versioned_params(const char *name, const void *params, size_t older_size,
                                            size_t expected_size) {
    if (!params) return invalid("%s is NULL: pass a struct set from its *_PARAMS_INIT macro", name);
    size_t size = *(const size_t *)params;
    if (size != expected_size && size != older_size)
        return invalid("%s->size = %zu: must be sizeof the struct (%zu); start from the "
                       "*_PARAMS_INIT macro",
                       name, size, expected_size);
    return CLOSS_STATUS_SUCCESS;
}

closs_status_t closs_check_reduction(closs_reduction_t reduction) {
    if (reduction != CLOSS_REDUCTION_MEAN && reduction != CLOSS_REDUCTION_SUM &&
        reduction != CLOSS_REDUCTION_NONE)
        return invalid("reduction = %d: must be CLOSS_REDUCTION_MEAN, _SUM or _NONE",
                       (int)reduction);
    return CLOSS_STATUS_SUCCESS;
}

closs_status_t closs_mul_size(const char *what, int64_t a, int64_t b, int64_t *out) {
    if (a != 0 && b > INT64_MAX / a)
        return invalid("%s: %lld × %lld overflows 64 bits", what, (long long)a, (long long)b);
    *out = a * b;
    return CLOSS_STATUS_SUCCESS;
}

closs_status_t closs_add_size(const char *what, int64_t a, int64_t b, int64_t *out) {
    if (a > INT64_MAX - b)
        return invalid("%s: %lld + %lld overflows 64 bits", what, (long long)a, (long long)b);
    *out = a + b;
    return CLOSS_STATUS_SUCCESS;
}

closs_status_t closs_check_matrix(const char *name, closs_matrix_t m, unsigned allowed_dtypes,
                                  int64_t min_rows) {
    unsigned dtype_bit = (unsigned)m.dtype < 32u ? CLOSS_DTYPE_BIT(m.dtype) : 0u;
    if (!(allowed_dtypes & dtype_bit)) {
        char allowed[64];
        describe_dtypes(allowed_dtypes, allowed, sizeof allowed);
        return invalid("%s.dtype = %d (%s): must be %s here", name, (int)m.dtype,
                       closs_dtype_name(m.dtype), allowed);
    }
    if (m.rows < min_rows)
        return invalid("%s.rows = %lld: must be >= %lld", name, (long long)m.rows,
                       (long long)min_rows);
    if (m.cols < 1) return invalid("%s.cols = %lld: dim must be >= 1", name, (long long)m.cols);
    if (m.ld < m.cols)
        return invalid("%s.ld = %lld: the leading dimension must be >= cols (%lld)", name,
                       (long long)m.ld, (long long)m.cols);
    if (m.rows > 0 && !m.data)
        return invalid("%s.data is NULL with %lld rows", name, (long long)m.rows);
    if (m.rows > 0) {
        int64_t elements = 0, bytes = 0;
        CLOSS_TRY(closs_mul_size(name, m.rows - 1, m.ld, &elements));
        if (elements > INT64_MAX - m.cols)
            return invalid("%s: (rows − 1)·ld + cols overflows 64 bits", name);
        elements += m.cols;
        CLOSS_TRY(closs_mul_size(name, elements, (int64_t)closs_dtype_size(m.dtype), &bytes));
        if ((uint64_t)bytes > (uint64_t)SIZE_MAX)
            return invalid("%s: %lld bytes do not fit in size_t", name, (long long)bytes);
    }
    return CLOSS_STATUS_SUCCESS;
}

/* "<name>.data", for alignment messages. */
static closs_status_t check_data_aligned(const char *name, const void *data, closs_dtype_t dtype) {
    char what[64];
    snprintf(what, sizeof what, "%s.data", name);
    return closs_check_aligned(what, data, closs_dtype_size(dtype));
}

closs_status_t closs_check_device_matrix(const char *name, closs_matrix_t m,
                                         unsigned allowed_dtypes, int64_t min_rows) {
    CLOSS_TRY(closs_check_matrix(name, m, allowed_dtypes, min_rows));
    return check_data_aligned(name, m.data, m.dtype);
}

closs_status_t closs_check_device_vector(const char *name, closs_vector_t v,
                                         unsigned allowed_dtypes, int64_t expected_length) {
    CLOSS_TRY(closs_check_vector(name, v, allowed_dtypes, expected_length));
    return check_data_aligned(name, v.data, v.dtype);
}

closs_status_t closs_check_same_shape(const char *name_a, closs_matrix_t a, const char *name_b,
                                      closs_matrix_t b) {
    if (a.rows != b.rows || a.cols != b.cols)
        return invalid("%s is %lld × %lld but %s is %lld × %lld: the shapes must match", name_b,
                       (long long)b.rows, (long long)b.cols, name_a, (long long)a.rows,
                       (long long)a.cols);
    return CLOSS_STATUS_SUCCESS;
}

closs_status_t closs_check_vector(const char *name, closs_vector_t v, unsigned allowed_dtypes,
                                  int64_t expected_length) {
    unsigned dtype_bit = (unsigned)v.dtype < 32u ? CLOSS_DTYPE_BIT(v.dtype) : 0u;
    if (!(allowed_dtypes & dtype_bit)) {
        char allowed[64];
        describe_dtypes(allowed_dtypes, allowed, sizeof allowed);
        return invalid("%s.dtype = %d (%s): must be %s here", name, (int)v.dtype,
                       closs_dtype_name(v.dtype), allowed);
    }
    if (v.length != expected_length)
        return invalid("%s.length = %lld: must equal the number of rows (%lld)", name,
                       (long long)v.length, (long long)expected_length);
    if (v.length > 0 && !v.data)
        return invalid("%s.data is NULL with length %lld", name, (long long)v.length);
    return CLOSS_STATUS_SUCCESS;
}

closs_status_t closs_check_unit_interval(const char *name, closs_vector_t v) {
    for (int64_t i = 0; i < v.length; ++i) {
        double value =
            v.dtype == CLOSS_F64 ? ((const double *)v.data)[i] : (double)((const float *)v.data)[i];
        if (!(value >= 0.0 && value <= 1.0))
            return invalid("%s[%lld] = %g: pair labels must lie in [0, 1]", name, (long long)i,
                           value);
    }
    return CLOSS_STATUS_SUCCESS;
}

closs_status_t closs_check_finite_matrix(const char *name, closs_matrix_t m) {
    for (int64_t r = 0; r < m.rows; ++r) {
        for (int64_t c = 0; c < m.cols; ++c) {
            int64_t at = r * m.ld + c;
            double value = m.dtype == CLOSS_F64 ? ((const double *)m.data)[at]
                                                : (double)((const float *)m.data)[at];
            if (!isfinite(value))
                return closs_fail(CLOSS_STATUS_NONFINITE_INPUT,
                                  "%s[%lld][%lld] = %g: check mode found a non-finite input in row "
                                  "%lld",
                                  name, (long long)r, (long long)c, value, (long long)r);
        }
    }
    return CLOSS_STATUS_SUCCESS;
}

closs_status_t closs_check_not_null(const char *name, const void *pointer) {
    if (!pointer) return invalid("%s is NULL", name);
    return CLOSS_STATUS_SUCCESS;
}

closs_status_t closs_check_positive_finite(const char *name, double value) {
    if (!(isfinite(value) && value > 0.0))
        return invalid("%s = %g: must be finite and > 0", name, value);
    return CLOSS_STATUS_SUCCESS;
}

closs_status_t closs_check_finite_in(const char *name, double value, double low, double high) {
    if (!(isfinite(value) && value >= low && value <= high)) {
        if (isinf(high)) return invalid("%s = %g: must be finite and >= %g", name, value, low);
        if (isinf(low)) return invalid("%s = %g: must be finite", name, value);
        return invalid("%s = %g: must lie in [%g, %g]", name, value, low, high);
    }
    return CLOSS_STATUS_SUCCESS;
}

closs_status_t closs_check_flag(const char *name, int value) {
    if (value != 0 && value != 1) return invalid("%s = %d: must be 0 or 1", name, value);
    return CLOSS_STATUS_SUCCESS;
}

size_t closs_matrix_span(closs_matrix_t m) {
    if (m.rows <= 0) return 0;
    return ((size_t)(m.rows - 1) * (size_t)m.ld + (size_t)m.cols) * closs_dtype_size(m.dtype);
}

closs_status_t closs_check_aligned(const char *name, const void *pointer, size_t alignment) {
    if (alignment > 1 && (uintptr_t)pointer % alignment != 0)
        return invalid("%s = %p: must be aligned to %zu bytes (its element size)", name, pointer,
                       alignment);
    return CLOSS_STATUS_SUCCESS;
}

static int spans_overlap(const closs_span *a, const closs_span *b) {
    if (!a->data || !b->data || a->bytes == 0 || b->bytes == 0) return 0;
    const uintptr_t a_begin = (uintptr_t)a->data, b_begin = (uintptr_t)b->data;
    return a_begin < b_begin + b->bytes && b_begin < a_begin + a->bytes;
}

static closs_status_t overlap_error(const closs_span *output, const closs_span *other,
                                    const char *role) {
    return invalid("%s (%zu bytes at %p) overlaps %s %s (%zu bytes at %p): outputs and the "
                   "workspace may not share memory with an input or another output (no in-place "
                   "computation)",
                   output->name, output->bytes, output->data, role, other->name, other->bytes,
                   other->data);
}

closs_status_t closs_check_disjoint(const closs_span *outputs, int output_count,
                                    const closs_span *inputs, int input_count) {
    for (int o = 0; o < output_count; ++o) {
        for (int i = 0; i < input_count; ++i)
            if (spans_overlap(&outputs[o], &inputs[i]))
                return overlap_error(&outputs[o], &inputs[i], "the input");
        for (int p = o + 1; p < output_count; ++p)
            if (spans_overlap(&outputs[o], &outputs[p]))
                return overlap_error(&outputs[o], &outputs[p], "the output");
    }
    return CLOSS_STATUS_SUCCESS;
}
