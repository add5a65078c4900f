/* The .npy reader and writer (see npy.h for the format). The reader decodes from bytes already in
 * memory, checking every length against what is there before using it; the writer goes through a
 * temporary file and a rename so that a final name only ever holds a complete file. */
#define _POSIX_C_SOURCE 200809L /* fileno, fstat, mkstemp, fdopen, fsync, fchmod, umask */

#include "npy.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The data is copied to and from memory as it lies in the file; on a little-endian host '<', '='
 * and '|' all mean the host's order, and nothing needs swapping. */
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#    error "the .npy reader and writer assume a little-endian host"
#endif

static const unsigned char npy_magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};

/* Room for the longest header the writer makes: 64 dimensions of 19 digits, the fixed text and
 * up to 64 bytes of padding. */
#define NPY_SHAPE_TEXT_MAX   (NPY_MAX_DIMS * 21 + 4)
#define NPY_WRITE_HEADER_MAX (NPY_SHAPE_TEXT_MAX + 256)

/* Header strings longer than this are no key or dtype the reader knows. */
#define NPY_STRING_MAX 32

static void set_error(char *err, size_t err_size, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

static void set_error(char *err, size_t err_size, const char *format, ...) {
    if (!err || err_size == 0) return;
    va_list args;
    va_start(args, format);
    vsnprintf(err, err_size, format, args);
    va_end(args);
}

const char *npy_descr(npy_dtype dtype) {
    switch (dtype) {
    case NPY_F4: return "<f4";
    case NPY_F8: return "<f8";
    case NPY_I4: return "<i4";
    case NPY_I8: return "<i8";
    }
    return "?";
}

size_t npy_itemsize(npy_dtype dtype) {
    switch (dtype) {
    case NPY_F4:
    case NPY_I4: return 4;
    case NPY_F8:
    case NPY_I8: return 8;
    }
    return 0;
}

void npy_format_shape(const int64_t *shape, int ndim, char *out, size_t out_size) {
    if (out_size == 0) return;
    size_t used = 0;
    out[0] = '\0';
    for (int d = -1; d <= ndim; ++d) {
        char piece[32];
        if (d == -1) snprintf(piece, sizeof piece, "(");
        else if (d == ndim) snprintf(piece, sizeof piece, ndim == 1 ? ",)" : ")");
        else snprintf(piece, sizeof piece, "%s%lld", d ? ", " : "", (long long)shape[d]);
        size_t length = strlen(piece);
        if (used + length >= out_size) return;
        memcpy(out + used, piece, length + 1);
        used += length;
    }
}

/* ---- reading -------------------------------------------------------------------------------- */

/* A cursor over the header text. Positions in messages are byte offsets in the file. */
typedef struct header_parser {
    const unsigned char *text;
    size_t length;
    size_t pos;
    size_t file_offset; /* where the header starts in the file */
    char *err;
    size_t err_size;
} header_parser;

/* What the header says, before it is checked against the data. */
typedef struct header_fields {
    char descr[NPY_STRING_MAX + 1];
    bool fortran_order;
    int ndim;
    int64_t shape[NPY_MAX_DIMS];
    bool has_descr, has_fortran_order, has_shape;
} header_fields;

static bool is_header_space(unsigned char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static void skip_space(header_parser *p) {
    while (p->pos < p->length && is_header_space(p->text[p->pos])) ++p->pos;
}

static int peek(const header_parser *p) { return p->pos < p->length ? p->text[p->pos] : -1; }

/* Fails with "expected <what>, found <the byte at the cursor>". */
static bool fail_expected(header_parser *p, const char *what) {
    int c = peek(p);
    char found[24];
    if (c < 0) snprintf(found, sizeof found, "the end of the header");
    else if (c >= 0x20 && c < 0x7f) snprintf(found, sizeof found, "'%c'", c);
    else snprintf(found, sizeof found, "byte 0x%02x", (unsigned)c);
    set_error(p->err, p->err_size, "malformed header at byte %zu: expected %s, found %s",
              p->file_offset + p->pos, what, found);
    return false;
}

static bool expect_char(header_parser *p, char c, const char *what) {
    if (peek(p) != (unsigned char)c) return fail_expected(p, what);
    ++p->pos;
    return true;
}

/* A Python string literal in single or double quotes, without escapes. Bytes outside printable
 * ASCII are kept as '?' so that `out` can go into a message as it is; no valid key or dtype holds
 * one. */
static bool parse_string(header_parser *p, char out[NPY_STRING_MAX + 1], const char *what) {
    int quote = peek(p);
    if (quote != '\'' && quote != '"') return fail_expected(p, what);
    size_t start = p->pos++;
    size_t length = 0;
    for (;;) {
        int c = peek(p);
        if (c < 0) {
            set_error(p->err, p->err_size, "malformed header: the string at byte %zu never ends",
                      p->file_offset + start);
            return false;
        }
        ++p->pos;
        if (c == quote) break;
        if (c == '\\') {
            set_error(p->err, p->err_size,
                      "malformed header at byte %zu: escape sequences in strings are not supported",
                      p->file_offset + p->pos - 1);
            return false;
        }
        if (length == NPY_STRING_MAX) {
            set_error(p->err, p->err_size,
                      "malformed header at byte %zu: string longer than %d bytes",
                      p->file_offset + start, NPY_STRING_MAX);
            return false;
        }
        out[length++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    out[length] = '\0';
    return true;
}

static bool matches_word(const header_parser *p, const char *word) {
    size_t length = strlen(word);
    if (p->length - p->pos < length || memcmp(p->text + p->pos, word, length) != 0) return false;
    /* "Truex" is not "True". */
    if (p->pos + length < p->length) {
        unsigned char next = p->text[p->pos + length];
        if (next == '_' || (next >= '0' && next <= '9') ||
            ((next | 0x20) >= 'a' && (next | 0x20) <= 'z'))
            return false;
    }
    return true;
}

static bool parse_bool(header_parser *p, bool *out) {
    if (matches_word(p, "True")) {
        p->pos += 4;
        *out = true;
        return true;
    }
    if (matches_word(p, "False")) {
        p->pos += 5;
        *out = false;
        return true;
    }
    return fail_expected(p, "True or False for 'fortran_order'");
}

/* A non-negative decimal integer; the 'L' suffix of Python 2 longs is allowed, as NumPy does. */
static bool parse_dimension(header_parser *p, int64_t *out) {
    int c = peek(p);
    if (c < '0' || c > '9') return fail_expected(p, "a non-negative integer in 'shape'");
    size_t start = p->pos;
    int64_t value = 0;
    while ((c = peek(p)) >= '0' && c <= '9') {
        int digit = c - '0';
        if (value > (INT64_MAX - digit) / 10) {
            set_error(p->err, p->err_size,
                      "malformed header at byte %zu: shape dimension larger than 2^63 - 1",
                      p->file_offset + start);
            return false;
        }
        value = value * 10 + digit;
        ++p->pos;
    }
    if (c == 'L' || c == 'l') ++p->pos;
    *out = value;
    return true;
}

/* A tuple of dimensions: (), (5,), (3, 4), (3, 4,). "(5)" is an integer in Python, not a tuple. */
static bool parse_shape(header_parser *p, header_fields *h) {
    size_t start = p->pos;
    if (!expect_char(p, '(', "a tuple for 'shape'")) return false;
    skip_space(p);
    h->ndim = 0;
    if (peek(p) == ')') {
        ++p->pos;
        return true;
    }
    bool trailing_comma = false;
    for (;;) {
        if (h->ndim == NPY_MAX_DIMS) {
            set_error(p->err, p->err_size, "malformed header: shape has more than %d dimensions",
                      NPY_MAX_DIMS);
            return false;
        }
        if (!parse_dimension(p, &h->shape[h->ndim])) return false;
        ++h->ndim;
        skip_space(p);
        if (peek(p) == ',') {
            ++p->pos;
            skip_space(p);
            if (peek(p) == ')') {
                ++p->pos;
                trailing_comma = true;
                break;
            }
            continue;
        }
        if (!expect_char(p, ')', "',' or ')' in 'shape'")) return false;
        break;
    }
    if (h->ndim == 1 && !trailing_comma) {
        set_error(p->err, p->err_size,
                  "malformed header at byte %zu: shape (%lld) is not a tuple; a 1-D shape is "
                  "written (%lld,)",
                  p->file_offset + start, (long long)h->shape[0], (long long)h->shape[0]);
        return false;
    }
    return true;
}

/* Records that `key` was seen, refusing a second time. */
static bool mark_seen(header_parser *p, bool *seen, const char *key) {
    if (*seen) {
        set_error(p->err, p->err_size, "malformed header: key '%s' appears twice", key);
        return false;
    }
    *seen = true;
    return true;
}

static bool parse_entry(header_parser *p, header_fields *h) {
    char key[NPY_STRING_MAX + 1];
    if (!parse_string(p, key, "a quoted key")) return false;
    skip_space(p);
    if (!expect_char(p, ':', "':' after a key")) return false;
    skip_space(p);
    if (strcmp(key, "descr") == 0) {
        if (!mark_seen(p, &h->has_descr, key)) return false;
        if (peek(p) == '[') {
            set_error(p->err, p->err_size,
                      "unsupported dtype: structured arrays (a list 'descr') are not supported");
            return false;
        }
        return parse_string(p, h->descr, "a quoted dtype for 'descr'");
    }
    if (strcmp(key, "fortran_order") == 0)
        return mark_seen(p, &h->has_fortran_order, key) && parse_bool(p, &h->fortran_order);
    if (strcmp(key, "shape") == 0) return mark_seen(p, &h->has_shape, key) && parse_shape(p, h);
    set_error(p->err, p->err_size,
              "malformed header: unknown key '%s' (expected 'descr', 'fortran_order', 'shape')",
              key);
    return false;
}

/* The dict literal, then nothing but whitespace to the end of the header. */
static bool parse_dict(header_parser *p, header_fields *h) {
    skip_space(p);
    if (!expect_char(p, '{', "'{' opening the header dict")) return false;
    skip_space(p);
    if (peek(p) == '}') {
        ++p->pos;
    } else {
        for (;;) {
            if (!parse_entry(p, h)) return false;
            skip_space(p);
            if (peek(p) == ',') {
                ++p->pos;
                skip_space(p);
                if (peek(p) == '}') {
                    ++p->pos;
                    break;
                }
                continue;
            }
            if (!expect_char(p, '}', "',' or '}' in the header dict")) return false;
            break;
        }
    }
    skip_space(p);
    if (p->pos != p->length) return fail_expected(p, "only spaces after the header dict");
    const char *missing = !h->has_descr           ? "descr"
                          : !h->has_fortran_order ? "fortran_order"
                          : !h->has_shape         ? "shape"
                                                  : NULL;
    if (missing) {
        set_error(p->err, p->err_size, "malformed header: no '%s' key", missing);
        return false;
    }
    return true;
}

static bool dtype_from_descr(const char *descr, npy_dtype *out, char *err, size_t err_size) {
    static const struct {
        const char *code;
        npy_dtype dtype;
    } known[] = {{"f4", NPY_F4}, {"f8", NPY_F8}, {"i4", NPY_I4}, {"i8", NPY_I8}};
    char order = descr[0];
    if (order == '>' || order == '!') {
        set_error(err, err_size,
                  "big-endian dtype '%s' is not supported: save the array with "
                  "a.astype(a.dtype.newbyteorder('<'))",
                  descr);
        return false;
    }
    /* '=' and '|' mean the host's order, which is little-endian here (checked at compile time). */
    if ((order == '<' || order == '=' || order == '|') && strlen(descr) == 3) {
        for (size_t i = 0; i < sizeof known / sizeof known[0]; ++i) {
            if (strcmp(descr + 1, known[i].code) == 0) {
                *out = known[i].dtype;
                return true;
            }
        }
    }
    set_error(err, err_size, "unsupported dtype '%s': expected '<f4', '<f8', '<i4' or '<i8'",
              descr);
    return false;
}

/* Reads the prelude and header of a file of `size` bytes and checks the data length. On success
 * `out` has everything but data, and *data_offset is where the data starts. */
static bool decode_header(const unsigned char *bytes, size_t size, npy_array *out,
                          size_t *data_offset, char *err, size_t err_size) {
    if (size == 0) {
        set_error(err, err_size, "not a .npy file: the file is empty");
        return false;
    }
    size_t magic_checked = size < sizeof npy_magic ? size : sizeof npy_magic;
    if (memcmp(bytes, npy_magic, magic_checked) != 0) {
        set_error(err, err_size, "not a .npy file: it does not start with \"\\x93NUMPY\"");
        return false;
    }
    if (size < 8) {
        set_error(err, err_size,
                  "truncated .npy file: %zu bytes, too few for the magic string and the version",
                  size);
        return false;
    }
    unsigned major = bytes[6], minor = bytes[7];
    if (major < 1 || major > 3 || minor != 0) {
        set_error(err, err_size,
                  "unsupported .npy format version %u.%u (1.0, 2.0 and 3.0 are supported)", major,
                  minor);
        return false;
    }
    /* 1.0 has a 2-byte header length, 2.0 and 3.0 a 4-byte one (3.0 allows UTF-8 in the header,
     * which makes no difference to the keys and dtypes accepted here). */
    size_t length_bytes = major == 1 ? 2 : 4;
    size_t prelude = 8 + length_bytes;
    if (size < prelude) {
        set_error(err, err_size,
                  "truncated .npy file: %zu bytes, too few for the version %u.0 header length",
                  size, major);
        return false;
    }
    size_t header_length = 0;
    for (size_t i = 0; i < length_bytes; ++i) header_length |= (size_t)bytes[8 + i] << (8 * i);
    if (header_length == 0) {
        set_error(err, err_size, "malformed header: the header length is 0");
        return false;
    }
    if (header_length > size - prelude) {
        set_error(err, err_size,
                  "truncated header: the header length says %zu bytes but only %zu follow",
                  header_length, size - prelude);
        return false;
    }
    const unsigned char *text = bytes + prelude;
    if (text[header_length - 1] != '\n') {
        set_error(err, err_size, "malformed header: it does not end in a newline");
        return false;
    }

    header_fields h = {0};
    header_parser p = {text, header_length, 0, prelude, err, err_size};
    if (!parse_dict(&p, &h)) return false;
    if (!dtype_from_descr(h.descr, &out->dtype, err, err_size)) return false;

    char shape_text[NPY_SHAPE_TEXT_MAX];
    npy_format_shape(h.shape, h.ndim, shape_text, sizeof shape_text);
    /* Column-major data is laid out differently unless at most one dimension is involved. */
    if (h.fortran_order && h.ndim > 1) {
        set_error(err, err_size,
                  "fortran_order is True: column-major arrays are not supported; save "
                  "np.ascontiguousarray(a)");
        return false;
    }

    int64_t count = 1;
    bool has_zero = false;
    for (int d = 0; d < h.ndim; ++d) has_zero |= h.shape[d] == 0;
    for (int d = 0; d < h.ndim && !has_zero; ++d) {
        if (count > INT64_MAX / h.shape[d]) {
            set_error(err, err_size, "shape %s has more than 2^63 - 1 elements", shape_text);
            return false;
        }
        count *= h.shape[d];
    }
    if (has_zero) count = 0;
    size_t itemsize = npy_itemsize(out->dtype);
    if ((uint64_t)count > (uint64_t)INT64_MAX / itemsize || (uint64_t)count > SIZE_MAX / itemsize) {
        set_error(err, err_size, "shape %s of %s is too large to address", shape_text, h.descr);
        return false;
    }
    size_t data_bytes = (size_t)count * itemsize;
    size_t available = size - prelude - header_length;
    if (available < data_bytes) {
        set_error(err, err_size,
                  "truncated data: shape %s of %s needs %zu bytes but the file holds %zu",
                  shape_text, h.descr, data_bytes, available);
        return false;
    }
    if (available > data_bytes) {
        set_error(err, err_size,
                  "%zu bytes of trailing data after the array (shape %s of %s needs %zu)",
                  available - data_bytes, shape_text, h.descr, data_bytes);
        return false;
    }

    out->ndim = h.ndim;
    memcpy(out->shape, h.shape, sizeof(int64_t) * (size_t)h.ndim);
    out->count = count;
    out->data = NULL;
    *data_offset = prelude + header_length;
    return true;
}

bool npy_parse(const void *bytes, size_t size, npy_array *out, char *err, size_t err_size) {
    npy_array array;
    size_t offset;
    if (!decode_header(bytes, size, &array, &offset, err, err_size)) return false;
    size_t data_bytes = size - offset;
    if (data_bytes > 0) {
        array.data = malloc(data_bytes);
        if (!array.data) {
            set_error(err, err_size, "out of memory for %zu bytes of data", data_bytes);
            return false;
        }
        memcpy(array.data, (const unsigned char *)bytes + offset, data_bytes);
    }
    *out = array;
    return true;
}

/* Reads a whole stream into a malloc'ed buffer. The size of a regular file is only a first guess:
 * the loop reads to the end whatever it turns out to be. */
static bool read_all(FILE *file, unsigned char **bytes, size_t *size, char *err, size_t err_size) {
    size_t capacity = 1 << 16;
    struct stat info;
    if (fstat(fileno(file), &info) == 0 && S_ISREG(info.st_mode) && info.st_size > 0 &&
        (uint64_t)info.st_size < SIZE_MAX)
        capacity = (size_t)info.st_size + 1; /* + 1: the end is seen without growing */
    unsigned char *buffer = malloc(capacity);
    size_t used = 0;
    for (;;) {
        if (!buffer) {
            set_error(err, err_size, "out of memory reading the file");
            return false;
        }
        used += fread(buffer + used, 1, capacity - used, file);
        if (ferror(file)) {
            set_error(err, err_size, "cannot read: %s", strerror(errno));
            free(buffer);
            return false;
        }
        if (used < capacity) break; /* end of file */
        unsigned char *grown = capacity <= SIZE_MAX / 2 ? realloc(buffer, capacity * 2) : NULL;
        if (!grown) free(buffer);
        buffer = grown;
        capacity *= 2;
    }
    *bytes = buffer;
    *size = used;
    return true;
}

bool npy_read(const char *path, npy_array *out, char *err, size_t err_size) {
    FILE *file = fopen(path, "rb");
    if (!file) {
        set_error(err, err_size, "cannot open: %s", strerror(errno));
        return false;
    }
    unsigned char *bytes;
    size_t size;
    bool read_ok = read_all(file, &bytes, &size, err, err_size);
    fclose(file);
    if (!read_ok) return false;

    npy_array array;
    size_t offset;
    if (!decode_header(bytes, size, &array, &offset, err, err_size)) {
        free(bytes);
        return false;
    }
    /* Move the data to the start of the buffer, which malloc aligned for any element type. */
    size_t data_bytes = size - offset;
    if (data_bytes == 0) {
        free(bytes);
    } else {
        memmove(bytes, bytes + offset, data_bytes);
        unsigned char *shrunk = realloc(bytes, data_bytes);
        array.data = shrunk ? shrunk : bytes;
    }
    *out = array;
    return true;
}

void npy_free(npy_array *array) {
    if (!array) return;
    free(array->data);
    array->data = NULL;
    array->count = 0;
}

/* ---- writing -------------------------------------------------------------------------------- */

/* The prelude and header of a version 1.0 file, padded with spaces so that the data starts at a
 * multiple of 64 bytes, as NumPy does. Returns the total length. */
static size_t build_header(char out[NPY_WRITE_HEADER_MAX], npy_dtype dtype, int ndim,
                           const int64_t *shape) {
    char shape_text[NPY_SHAPE_TEXT_MAX];
    npy_format_shape(shape, ndim, shape_text, sizeof shape_text);
    const size_t prelude = 10;
    int dict_length = snprintf(out + prelude, NPY_WRITE_HEADER_MAX - prelude,
                               "{'descr': '%s', 'fortran_order': False, 'shape': %s, }",
                               npy_descr(dtype), shape_text);
    size_t total = prelude + (size_t)dict_length + 1; /* + 1: the newline */
    size_t padded = (total + 63) / 64 * 64;
    memset(out + prelude + dict_length, ' ', padded - total);
    out[padded - 1] = '\n';
    /* The longest header fits version 1.0's 2-byte length, so 2.0 is never needed. */
    size_t header_length = padded - prelude;
    memcpy(out, npy_magic, sizeof npy_magic);
    out[6] = 1;
    out[7] = 0;
    out[8] = (char)(header_length & 0xff);
    out[9] = (char)(header_length >> 8);
    return padded;
}

static bool check_write_arguments(npy_dtype dtype, int ndim, const int64_t *shape, const void *data,
                                  size_t *data_bytes, char *err, size_t err_size) {
    if (npy_itemsize(dtype) == 0) {
        set_error(err, err_size, "cannot write dtype %d", (int)dtype);
        return false;
    }
    if (ndim < 0 || ndim > NPY_MAX_DIMS) {
        set_error(err, err_size, "cannot write %d dimensions (0 to %d)", ndim, NPY_MAX_DIMS);
        return false;
    }
    if (ndim > 0 && !shape) {
        set_error(err, err_size, "cannot write: no shape for %d dimensions", ndim);
        return false;
    }
    size_t count = 1;
    for (int d = 0; d < ndim; ++d) {
        if (shape[d] < 0) {
            set_error(err, err_size, "cannot write a negative dimension (%lld)",
                      (long long)shape[d]);
            return false;
        }
        if (shape[d] == 0) count = 0;
    }
    for (int d = 0; d < ndim && count > 0; ++d) {
        if ((uint64_t)shape[d] > SIZE_MAX / npy_itemsize(dtype) / count) {
            set_error(err, err_size, "cannot write: the shape is too large to address");
            return false;
        }
        count *= (size_t)shape[d];
    }
    if (count > 0 && !data) {
        set_error(err, err_size, "cannot write: no data for %zu elements", count);
        return false;
    }
    *data_bytes = count * npy_itemsize(dtype);
    return true;
}

bool npy_write_pending(const char *path, npy_dtype dtype, int ndim, const int64_t *shape,
                       const void *data, npy_pending *pending, char *err, size_t err_size) {
    size_t data_bytes;
    if (!check_write_arguments(dtype, ndim, shape, data, &data_bytes, err, err_size)) return false;
    char header[NPY_WRITE_HEADER_MAX];
    size_t header_bytes = build_header(header, dtype, ndim, shape);

    /* mkstemp in the same directory, so that the rename stays within one file system. */
    static const char suffix[] = ".tmp-XXXXXX";
    size_t path_length = strlen(path);
    char *temp_path = malloc(path_length + sizeof suffix);
    char *final_path = malloc(path_length + 1);
    if (!temp_path || !final_path) {
        free(temp_path);
        free(final_path);
        set_error(err, err_size, "out of memory");
        return false;
    }
    memcpy(final_path, path, path_length + 1);
    snprintf(temp_path, path_length + sizeof suffix, "%s%s", path, suffix);
    int fd = mkstemp(temp_path);
    if (fd < 0) {
        set_error(err, err_size, "cannot create a temporary file next to %s: %s", path,
                  strerror(errno));
        free(temp_path);
        free(final_path);
        return false;
    }
    /* mkstemp creates the file 0600; give it the permissions a plain fopen would. */
    mode_t mask = umask(0);
    umask(mask);
    FILE *file = fdopen(fd, "wb");
    bool ok = file && fchmod(fd, 0666 & ~mask) == 0 &&
              fwrite(header, 1, header_bytes, file) == header_bytes &&
              (data_bytes == 0 || fwrite(data, 1, data_bytes, file) == data_bytes) &&
              fflush(file) == 0 && fsync(fd) == 0;
    int write_errno = ok ? 0 : errno;
    if (file ? fclose(file) != 0 : close(fd) != 0) {
        if (ok) write_errno = errno;
        ok = false;
    }
    if (!ok) {
        set_error(err, err_size, "cannot write %s: %s", temp_path, strerror(write_errno));
        unlink(temp_path);
        free(temp_path);
        free(final_path);
        return false;
    }
    pending->temp_path = temp_path;
    pending->final_path = final_path;
    return true;
}

bool npy_commit(npy_pending *pending, char *err, size_t err_size) {
    bool ok = rename(pending->temp_path, pending->final_path) == 0;
    if (!ok) {
        set_error(err, err_size, "cannot rename %s to %s: %s", pending->temp_path,
                  pending->final_path, strerror(errno));
        unlink(pending->temp_path);
    }
    free(pending->temp_path);
    free(pending->final_path);
    pending->temp_path = pending->final_path = NULL;
    return ok;
}

void npy_discard(npy_pending *pending) {
    if (pending->temp_path) unlink(pending->temp_path);
    free(pending->temp_path);
    free(pending->final_path);
    pending->temp_path = pending->final_path = NULL;
}

bool npy_write(const char *path, npy_dtype dtype, int ndim, const int64_t *shape, const void *data,
               char *err, size_t err_size) {
    npy_pending pending;
    if (!npy_write_pending(path, dtype, ndim, shape, data, &pending, err, err_size)) return false;
    return npy_commit(&pending, err, err_size);
}
