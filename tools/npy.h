/* Reading and writing NumPy .npy files (format versions 1.0, 2.0 and 3.0).
 *
 * The layout: the magic "\x93NUMPY", a major and a minor version byte, the header length (2 bytes
 * little-endian in 1.0, 4 bytes in 2.0 and 3.0), then the header: a Python dict literal
 * {'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), } padded with spaces and ending in
 * '\n', then the raw data in C order.
 *
 * Only what the closs tool exchanges is accepted: little-endian float32, float64, int32 and int64
 * in C order. Every other input, however malformed, is refused with a message that names the
 * problem: the reader never reads outside the bytes it was given (it is meant to be fuzzed). */
#ifndef CLOSS_TOOLS_NPY_H
#define CLOSS_TOOLS_NPY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* NumPy's own limit (NPY_MAXDIMS in NumPy 2). */
#define NPY_MAX_DIMS 64

typedef enum npy_dtype { NPY_F4, NPY_F8, NPY_I4, NPY_I8 } npy_dtype;

/* An array read from a file: `data` holds `count` elements of `dtype` in C order and belongs to
 * the array (npy_free releases it). */
typedef struct npy_array {
    npy_dtype dtype;
    int ndim;
    int64_t shape[NPY_MAX_DIMS];
    int64_t count; /* the product of shape: 1 for a scalar, 0 when a dimension is 0 */
    void *data;    /* NULL only when count == 0 */
} npy_array;

/* A file written under a temporary name next to its final name, waiting for npy_commit. */
typedef struct npy_pending {
    char *temp_path;
    char *final_path;
} npy_pending;

/* "<f4", "<f8", "<i4" or "<i8". */
const char *npy_descr(npy_dtype dtype);
size_t npy_itemsize(npy_dtype dtype);

/* Writes a shape as Python prints a tuple: "()", "(3,)", "(3, 4)". Truncates to fit out_size. */
void npy_format_shape(const int64_t *shape, int ndim, char *out, size_t out_size);

/* The functions below that return bool return true on success. On failure they return false,
 * write a one-line message into err (err_size bytes; err may be NULL when err_size is 0) and leave
 * nothing behind: no allocation to free, no file. */

/* Decodes a whole .npy file held in memory. */
bool npy_parse(const void *bytes, size_t size, npy_array *out, char *err, size_t err_size);
/* Reads and decodes the .npy file at path. */
bool npy_read(const char *path, npy_array *out, char *err, size_t err_size);
void npy_free(npy_array *array);

/* Writes `data` (the product of shape elements of dtype, C order; ndim 0 is a scalar) to path as a
 * version 1.0 file, under a temporary name in the same directory that is renamed into place, so a
 * reader never sees a half-written file at path. */
bool npy_write(const char *path, npy_dtype dtype, int ndim, const int64_t *shape, const void *data,
               char *err, size_t err_size);

/* The two halves of npy_write, for writing several files all-or-nothing: write every file as
 * pending, then commit them all, or discard them all if one of the writes failed. */
bool npy_write_pending(const char *path, npy_dtype dtype, int ndim, const int64_t *shape,
                       const void *data, npy_pending *pending, char *err, size_t err_size);
/* Renames the temporary file to its final name; on failure removes it. Frees the pending paths. */
bool npy_commit(npy_pending *pending, char *err, size_t err_size);
/* Removes the temporary file and frees the pending paths. */
void npy_discard(npy_pending *pending);

#endif
