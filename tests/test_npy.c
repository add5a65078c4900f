/* The .npy reader and writer of the closs tool (tools/npy.c): round trips through files, headers
 * built by hand in every accepted form and format version, and every rejection with its message.
 * Malformed input must give an error string, never a crash: the last tests truncate and corrupt a
 * valid file byte by byte. */
#define _XOPEN_SOURCE 700 /* mkdtemp, nftw, umask, stat */

#include <criterion/criterion.h>
#include <dirent.h>
#include <ftw.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "npy.h"

/* ---- a temporary directory per test --------------------------------------------------------- */

static char workdir[64];

static void make_workdir(void) {
    strcpy(workdir, "/tmp/closs-test-npy-XXXXXX");
    cr_assert_not_null(mkdtemp(workdir));
}

static int remove_entry(const char *path, const struct stat *info, int flag, struct FTW *ftw) {
    (void)info, (void)flag, (void)ftw;
    return remove(path);
}

static void remove_workdir(void) { nftw(workdir, remove_entry, 16, FTW_DEPTH | FTW_PHYS); }

TestSuite(npy_file, .init = make_workdir, .fini = remove_workdir);

static void path_in_workdir(char *out, size_t size, const char *name) {
    snprintf(out, size, "%s/%s", workdir, name);
}

static int count_entries(const char *dir) {
    DIR *handle = opendir(dir);
    cr_assert_not_null(handle);
    int count = 0;
    for (struct dirent *entry; (entry = readdir(handle));)
        count += strcmp(entry->d_name, ".") != 0 && strcmp(entry->d_name, "..") != 0;
    closedir(handle);
    return count;
}

/* ---- building files by hand --------------------------------------------------------------- */

/* A .npy file in memory: magic, version major.0, the header length field for that version, the
 * header text exactly as given (no padding is added), then `data_bytes` bytes of `data`. */
typedef struct npy_bytes {
    unsigned char bytes[4096];
    size_t size;
} npy_bytes;

static npy_bytes hand_built(unsigned major, const char *header, const void *data,
                            size_t data_bytes) {
    npy_bytes file;
    memcpy(file.bytes, "\x93NUMPY", 6);
    file.bytes[6] = (unsigned char)major;
    file.bytes[7] = 0;
    size_t length = strlen(header);
    size_t length_bytes = major == 1 ? 2 : 4;
    for (size_t i = 0; i < length_bytes; ++i)
        file.bytes[8 + i] = (unsigned char)(length >> (8 * i));
    file.size = 8 + length_bytes;
    cr_assert_lt(file.size + length + data_bytes, sizeof file.bytes);
    memcpy(file.bytes + file.size, header, length);
    file.size += length;
    if (data_bytes) memcpy(file.bytes + file.size, data, data_bytes);
    file.size += data_bytes;
    return file;
}

static const double six_doubles[6] = {1.5, -2.0, 0.25, 3.0, -0.125, 1e300};

/* Parses and expects success. */
static npy_array parse_ok(const npy_bytes *file) {
    npy_array array;
    char err[256] = "";
    cr_assert(npy_parse(file->bytes, file->size, &array, err, sizeof err),
              "unexpected rejection: %s", err);
    return array;
}

/* Parses and expects a rejection whose message contains `expected`. */
static void expect_rejection(const void *bytes, size_t size, const char *expected) {
    npy_array array;
    char err[256] = "";
    cr_assert_not(npy_parse(bytes, size, &array, err, sizeof err),
                  "accepted a file that should fail with \"%s\"", expected);
    cr_assert(strstr(err, expected), "message \"%s\" does not contain \"%s\"", err, expected);
}

static void expect_header_rejection(const char *header, size_t data_bytes, const char *expected) {
    unsigned char zeros[512] = {0};
    cr_assert_leq(data_bytes, sizeof zeros);
    npy_bytes file = hand_built(1, header, zeros, data_bytes);
    expect_rejection(file.bytes, file.size, expected);
}

/* ---- round trips ---------------------------------------------------------------------------- */

Test(npy_file, round_trip_every_dtype_and_shape) {
    const double doubles[6] = {1.5, -2.0, 0.25, 3.0, -0.125, 1e300};
    const float floats[6] = {1.5f, -2.0f, 0.25f, 3.0f, -0.125f, 3.4e38f};
    const int32_t ints[6] = {1, -2, INT32_MAX, INT32_MIN, 0, 7};
    const int64_t longs[6] = {1, -2, INT64_MAX, INT64_MIN, 0, 7};
    const struct {
        npy_dtype dtype;
        const void *data;
    } typed[] = {{NPY_F8, doubles}, {NPY_F4, floats}, {NPY_I4, ints}, {NPY_I8, longs}};
    const struct {
        int ndim;
        int64_t shape[3];
    } shapes[] = {{0, {0}}, {1, {6}},    {2, {2, 3}},   {3, {1, 3, 2}},
                  {1, {0}}, {2, {0, 5}}, {3, {2, 0, 4}}};
    char path[128];
    path_in_workdir(path, sizeof path, "a.npy");
    for (size_t t = 0; t < sizeof typed / sizeof typed[0]; ++t) {
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; ++s) {
            char err[256] = "";
            cr_assert(npy_write(path, typed[t].dtype, shapes[s].ndim, shapes[s].shape,
                                typed[t].data, err, sizeof err),
                      "%s", err);
            npy_array array;
            cr_assert(npy_read(path, &array, err, sizeof err), "%s", err);
            cr_assert_eq(array.dtype, typed[t].dtype);
            cr_assert_eq(array.ndim, shapes[s].ndim);
            int64_t count = 1;
            for (int d = 0; d < shapes[s].ndim; ++d) {
                cr_assert_eq(array.shape[d], shapes[s].shape[d]);
                count *= shapes[s].shape[d];
            }
            cr_assert_eq(array.count, count);
            if (count) {
                cr_assert_eq(
                    memcmp(array.data, typed[t].data, (size_t)count * npy_itemsize(array.dtype)),
                    0);
            } else {
                cr_assert_null(array.data);
            }
            npy_free(&array);
        }
    }
}

Test(npy_file, written_header_is_what_numpy_writes) {
    char path[128];
    path_in_workdir(path, sizeof path, "scalar.npy");
    double value = 0.5;
    char err[256];
    cr_assert(npy_write(path, NPY_F8, 0, NULL, &value, err, sizeof err), "%s", err);
    unsigned char bytes[256];
    FILE *file = fopen(path, "rb");
    size_t size = fread(bytes, 1, sizeof bytes, file);
    fclose(file);
    /* Version 1.0, NumPy's own dict text, the data at a multiple of 64 bytes (the 55-byte dict
     * and the 10-byte prelude need two blocks of 64). */
    cr_assert_eq(size, 128 + 8);
    cr_assert_eq(memcmp(bytes, "\x93NUMPY\x01\x00", 8), 0);
    cr_assert_eq(bytes[8] | bytes[9] << 8, 128 - 10);
    const char *dict = "{'descr': '<f8', 'fortran_order': False, 'shape': (), }";
    cr_assert_eq(memcmp(bytes + 10, dict, strlen(dict)), 0);
    for (size_t i = 10 + strlen(dict); i < 127; ++i) cr_assert_eq(bytes[i], ' ');
    cr_assert_eq(bytes[127], '\n');
    cr_assert_eq(memcmp(bytes + 128, &value, 8), 0);
}

Test(npy_file, shapes_print_as_python_tuples) {
    char text[64];
    int64_t shape[3] = {3, 4, 0};
    npy_format_shape(shape, 0, text, sizeof text);
    cr_assert_str_eq(text, "()");
    npy_format_shape(shape, 1, text, sizeof text);
    cr_assert_str_eq(text, "(3,)");
    npy_format_shape(shape, 3, text, sizeof text);
    cr_assert_str_eq(text, "(3, 4, 0)");
}

Test(npy_file, writer_leaves_only_the_final_file) {
    char path[128];
    path_in_workdir(path, sizeof path, "out.npy");
    double first[2] = {1, 2}, second[3] = {3, 4, 5};
    int64_t shape_first[1] = {2}, shape_second[1] = {3};
    char err[256];
    cr_assert(npy_write(path, NPY_F8, 1, shape_first, first, err, sizeof err), "%s", err);
    cr_assert(npy_write(path, NPY_F8, 1, shape_second, second, err, sizeof err), "%s", err);
    cr_assert_eq(count_entries(workdir), 1);
    npy_array array;
    cr_assert(npy_read(path, &array, err, sizeof err), "%s", err);
    cr_assert_eq(array.count, 3); /* replaced whole, not appended to or mixed */
    cr_assert_eq(memcmp(array.data, second, sizeof second), 0);
    npy_free(&array);
}

Test(npy_file, written_file_follows_the_umask) {
    umask(022);
    char path[128];
    path_in_workdir(path, sizeof path, "mode.npy");
    double value = 1;
    char err[256];
    cr_assert(npy_write(path, NPY_F8, 0, NULL, &value, err, sizeof err), "%s", err);
    struct stat info;
    cr_assert_eq(stat(path, &info), 0);
    cr_assert_eq(info.st_mode & 0777, 0644);
}

Test(npy_file, pending_files_appear_only_on_commit) {
    char path_a[128], path_b[128];
    path_in_workdir(path_a, sizeof path_a, "a.npy");
    path_in_workdir(path_b, sizeof path_b, "b.npy");
    double value = 2;
    npy_pending a, b;
    char err[256];
    cr_assert(npy_write_pending(path_a, NPY_F8, 0, NULL, &value, &a, err, sizeof err), "%s", err);
    cr_assert(npy_write_pending(path_b, NPY_F8, 0, NULL, &value, &b, err, sizeof err), "%s", err);
    cr_assert_eq(access(path_a, F_OK), -1);
    cr_assert_eq(count_entries(workdir), 2); /* the two temporary files */
    npy_discard(&b);
    cr_assert(npy_commit(&a, err, sizeof err), "%s", err);
    cr_assert_eq(access(path_a, F_OK), 0);
    cr_assert_eq(access(path_b, F_OK), -1);
    cr_assert_eq(count_entries(workdir), 1);
}

Test(npy_file, writer_rejects_what_it_cannot_write) {
    char path[128], err[256];
    double value = 0;
    path_in_workdir(path, sizeof path, "missing-dir/a.npy");
    cr_assert_not(npy_write(path, NPY_F8, 0, NULL, &value, err, sizeof err));
    cr_assert(strstr(err, "cannot create a temporary file"), "%s", err);
    path_in_workdir(path, sizeof path, "a.npy");
    int64_t negative[1] = {-1};
    cr_assert_not(npy_write(path, NPY_F8, 1, negative, &value, err, sizeof err));
    cr_assert(strstr(err, "negative dimension"), "%s", err);
    int64_t huge[2] = {INT64_MAX, 4};
    cr_assert_not(npy_write(path, NPY_F8, 2, huge, &value, err, sizeof err));
    cr_assert(strstr(err, "too large"), "%s", err);
    int64_t three[1] = {3};
    cr_assert_not(npy_write(path, NPY_F8, 1, three, NULL, err, sizeof err));
    cr_assert(strstr(err, "no data"), "%s", err);
    cr_assert_not(npy_write(path, NPY_F8, NPY_MAX_DIMS + 1, three, &value, err, sizeof err));
    cr_assert(strstr(err, "dimensions"), "%s", err);
    cr_assert_eq(count_entries(workdir), 0);
}

Test(npy_file, reader_reports_unreadable_files) {
    char path[128], err[256];
    npy_array array;
    path_in_workdir(path, sizeof path, "absent.npy");
    cr_assert_not(npy_read(path, &array, err, sizeof err));
    cr_assert(strstr(err, "cannot open: No such file"), "%s", err);
    cr_assert_not(npy_read(workdir, &array, err, sizeof err)); /* a directory */
    cr_assert(strstr(err, "cannot read"), "%s", err);
}

Test(npy_file, reader_reads_a_hand_built_file) {
    npy_bytes built = hand_built(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }\n",
                                 six_doubles, sizeof six_doubles);
    char path[128], err[256];
    path_in_workdir(path, sizeof path, "hand.npy");
    FILE *file = fopen(path, "wb");
    fwrite(built.bytes, 1, built.size, file);
    fclose(file);
    npy_array array;
    cr_assert(npy_read(path, &array, err, sizeof err), "%s", err);
    cr_assert_eq(array.ndim, 2);
    cr_assert_eq(array.shape[0], 2);
    cr_assert_eq(array.shape[1], 3);
    cr_assert_eq(memcmp(array.data, six_doubles, sizeof six_doubles), 0);
    npy_free(&array);
    /* The file is checked the same way as bytes in memory. */
    built.size -= 1;
    file = fopen(path, "wb");
    fwrite(built.bytes, 1, built.size, file);
    fclose(file);
    cr_assert_not(npy_read(path, &array, err, sizeof err));
    cr_assert(strstr(err, "truncated data"), "%s", err);
}

/* ---- headers written by hand: accepted forms ---------------------------------------------- */

Test(npy_header, accepts_versions_2_and_3) {
    for (unsigned major = 2; major <= 3; ++major) {
        npy_bytes file =
            hand_built(major, "{'descr': '<f8', 'fortran_order': False, 'shape': (6,), }\n",
                       six_doubles, sizeof six_doubles);
        npy_array array = parse_ok(&file);
        cr_assert_eq(array.ndim, 1);
        cr_assert_eq(array.shape[0], 6);
        cr_assert_eq(memcmp(array.data, six_doubles, sizeof six_doubles), 0);
        npy_free(&array);
    }
}

Test(npy_header, accepts_any_python_spelling_of_the_dict) {
    const char *headers[] = {
        /* double quotes, other key order, no trailing comma, extra spaces, tabs */
        "{\"shape\": (2, 3), \"fortran_order\": False, \"descr\": \"<f8\"}\n",
        "  {  'descr' :'<f8','fortran_order':False,'shape':(2,3,)  ,  }\t \n",
        /* Python 2 longs, as old NumPy wrote them */
        "{'descr': '<f8', 'fortran_order': False, 'shape': (2L, 3L), }\n",
        /* '=' and '|' mean the host's order, little-endian here */
        "{'descr': '=f8', 'fortran_order': False, 'shape': (2, 3), }\n",
        "{'descr': '|f8', 'fortran_order': False, 'shape': (2, 3), }\n",
        /* a newline inside the dict is whitespace too */
        "{'descr': '<f8',\n 'fortran_order': False,\n 'shape': (2, 3)}\n",
    };
    for (size_t i = 0; i < sizeof headers / sizeof headers[0]; ++i) {
        npy_bytes file = hand_built(1, headers[i], six_doubles, sizeof six_doubles);
        npy_array array = parse_ok(&file);
        cr_assert_eq(array.dtype, NPY_F8, "header %zu", i);
        cr_assert_eq(array.ndim, 2, "header %zu", i);
        cr_assert_eq(array.shape[0], 2, "header %zu", i);
        cr_assert_eq(array.shape[1], 3, "header %zu", i);
        npy_free(&array);
    }
}

Test(npy_header, accepts_every_supported_dtype) {
    const struct {
        const char *descr;
        npy_dtype dtype;
    } cases[] = {{"<f4", NPY_F4}, {"<f8", NPY_F8}, {"<i4", NPY_I4}, {"<i8", NPY_I8}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; ++i) {
        char header[128];
        snprintf(header, sizeof header,
                 "{'descr': '%s', 'fortran_order': False, 'shape': (3,), }\n", cases[i].descr);
        npy_bytes file = hand_built(1, header, six_doubles, 3 * npy_itemsize(cases[i].dtype));
        npy_array array = parse_ok(&file);
        cr_assert_eq(array.dtype, cases[i].dtype, "%s", cases[i].descr);
        npy_free(&array);
    }
}

Test(npy_header, fortran_order_is_fine_for_one_dimension) {
    npy_bytes file = hand_built(1, "{'descr': '<f8', 'fortran_order': True, 'shape': (6,), }\n",
                                six_doubles, sizeof six_doubles);
    npy_array array = parse_ok(&file);
    npy_free(&array);
}

Test(npy_header, zero_dimension_makes_an_empty_array) {
    npy_bytes file = hand_built(1,
                                "{'descr': '<f8', 'fortran_order': False, "
                                "'shape': (9223372036854775807, 0), }\n",
                                NULL, 0);
    npy_array array = parse_ok(&file);
    cr_assert_eq(array.count, 0);
    cr_assert_null(array.data);
    npy_free(&array);
}

/* ---- rejections, each with its message ------------------------------------------------------ */

Test(npy_reject, prelude_problems) {
    expect_rejection("", 0, "the file is empty");
    expect_rejection("PK\x03\x04 a zip file", 16, "not a .npy file");
    expect_rejection("\x93NUM", 4, "truncated .npy file");
    expect_rejection("\x93NUMPY\x01", 7, "truncated .npy file");
    expect_rejection("\x93NUMPY\x01\x00\x10", 9, "too few for the version 1.0 header length");
    expect_rejection("\x93NUMPY\x02\x00\x10\x00\x00", 11,
                     "too few for the version 2.0 header length");
    expect_rejection("\x93NUMPY\x04\x00\x10\x00\x00\x00", 12,
                     "unsupported .npy format version 4.0");
    expect_rejection("\x93NUMPY\x01\x01\x10\x00", 10, "unsupported .npy format version 1.1");
    expect_rejection("\x93NUMPY\x00\x00\x10\x00", 10, "unsupported .npy format version 0.0");
    expect_rejection("\x93NUMPY\x01\x00\x00\x00", 10, "the header length is 0");
    expect_rejection("\x93NUMPY\x01\x00\x40\x00{}\n", 13,
                     "truncated header: the header length says 64 bytes but only 3 follow");
    expect_rejection("\x93NUMPY\x02\x00\xff\xff\xff\xff{}\n", 15, "truncated header");
}

Test(npy_reject, header_must_end_in_a_newline) {
    expect_header_rejection("{'descr': '<f8', 'fortran_order': False, 'shape': (), }    ", 8,
                            "does not end in a newline");
}

Test(npy_reject, dtypes) {
    expect_header_rejection("{'descr': '>f8', 'fortran_order': False, 'shape': (1,), }\n", 8,
                            "big-endian dtype '>f8' is not supported");
    expect_header_rejection("{'descr': '>i4', 'fortran_order': False, 'shape': (1,), }\n", 4,
                            "big-endian");
    expect_header_rejection("{'descr': '!f4', 'fortran_order': False, 'shape': (1,), }\n", 4,
                            "big-endian");
    const char *unsupported[] = {"<f2",  "<c16", "<u4", "|b1",  "|u1", "float64",
                                 "<f8 ", "",     "<",   "<f16", "O"};
    for (size_t i = 0; i < sizeof unsupported / sizeof unsupported[0]; ++i) {
        char header[128], expected[64];
        snprintf(header, sizeof header,
                 "{'descr': '%s', 'fortran_order': False, 'shape': (1,), }\n", unsupported[i]);
        snprintf(expected, sizeof expected, "unsupported dtype '%s'", unsupported[i]);
        expect_header_rejection(header, 8, expected);
    }
    expect_header_rejection("{'descr': [('a', '<f8')], 'fortran_order': False, 'shape': (1,), }\n",
                            8, "structured arrays");
    /* A UTF-8 byte (version 3.0 allows them) is shown as '?', not printed raw. */
    expect_header_rejection("{'descr': '<f\xc3\xa9', 'fortran_order': False, 'shape': (1,), }\n", 8,
                            "unsupported dtype '<f?"
                            "?'");
}

Test(npy_reject, fortran_order_with_two_dimensions) {
    expect_header_rejection("{'descr': '<f8', 'fortran_order': True, 'shape': (2, 3), }\n", 48,
                            "fortran_order is True: column-major arrays are not supported");
}

Test(npy_reject, shapes) {
    expect_header_rejection(
        "{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296), }\n", 0,
        "has more than 2^63 - 1 elements");
    expect_header_rejection(
        "{'descr': '<f8', 'fortran_order': False, 'shape': (9223372036854775808,), }\n", 0,
        "shape dimension larger than 2^63 - 1");
    expect_header_rejection(
        "{'descr': '<f8', 'fortran_order': False, 'shape': (2305843009213693952,), }\n", 0,
        "is too large to address");
    expect_header_rejection("{'descr': '<f8', 'fortran_order': False, 'shape': (5), }\n", 40,
                            "shape (5) is not a tuple");
    expect_header_rejection("{'descr': '<f8', 'fortran_order': False, 'shape': (-1,), }\n", 0,
                            "expected a non-negative integer in 'shape', found '-'");
    expect_header_rejection("{'descr': '<f8', 'fortran_order': False, 'shape': (1.5,), }\n", 0,
                            "expected ',' or ')' in 'shape', found '.'");
    expect_header_rejection("{'descr': '<f8', 'fortran_order': False, 'shape': [1], }\n", 8,
                            "expected a tuple for 'shape'");
    expect_header_rejection("{'descr': '<f8', 'fortran_order': False, 'shape': (1,, 2), }\n", 0,
                            "expected a non-negative integer");
    char header[512] = "{'descr': '<f8', 'fortran_order': False, 'shape': (";
    for (int d = 0; d <= NPY_MAX_DIMS; ++d) strcat(header, "1,");
    strcat(header, "), }\n");
    expect_header_rejection(header, 8, "more than 64 dimensions");
}

Test(npy_reject, data_length) {
    expect_header_rejection(
        "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }\n", 47,
        "truncated data: shape (2, 3) of <f8 needs 48 bytes but the file holds 47");
    expect_header_rejection("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }\n", 49,
                            "1 bytes of trailing data after the array");
    expect_header_rejection("{'descr': '<i4', 'fortran_order': False, 'shape': (), }\n", 0,
                            "truncated data: shape () of <i4 needs 4 bytes");
}

Test(npy_reject, dict_structure) {
    struct {
        const char *header;
        const char *expected;
    } cases[] = {
        {"{'descr': '<f8', 'fortran_order': False}\n", "no 'shape' key"},
        {"{'shape': (), 'fortran_order': False}\n", "no 'descr' key"},
        {"{'descr': '<f8', 'shape': ()}\n", "no 'fortran_order' key"},
        {"{}\n", "no 'descr' key"},
        {"{'descr': '<f8', 'descr': '<f8', 'fortran_order': False, 'shape': ()}\n",
         "key 'descr' appears twice"},
        {"{'descr': '<f8', 'fortran_order': False, 'shape': (), 'extra': 1}\n",
         "unknown key 'extra'"},
        {"{'descr': '<f8', 'fortran_order': false, 'shape': ()}\n", "expected True or False"},
        {"{'descr': '<f8', 'fortran_order': Falsey, 'shape': ()}\n", "expected True or False"},
        {"{'descr': '<f8', 'fortran_order': 0, 'shape': ()}\n", "expected True or False"},
        {"{'descr': '<f8' 'fortran_order': False, 'shape': ()}\n",
         "expected ',' or '}' in the header dict"},
        {"{'descr' '<f8', 'fortran_order': False, 'shape': ()}\n", "expected ':' after a key"},
        {"{descr: '<f8', 'fortran_order': False, 'shape': ()}\n",
         "expected a quoted key, found 'd'"},
        {"{'descr': <f8, 'fortran_order': False, 'shape': ()}\n",
         "expected a quoted dtype for 'descr'"},
        {"{'descr': '<f8\n", "the string at byte 20 never ends"},
        {"{'descr': '<f\\x38', 'fortran_order': False, 'shape': ()}\n", "escape sequences"},
        {"{'descr': 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 'fortran_order': False, "
         "'shape': ()}\n",
         "longer than 32 bytes"},
        {"['descr', '<f8']\n", "expected '{' opening the header dict, found '['"},
        {"{'descr': '<f8', 'fortran_order': False, 'shape': ()} x\n",
         "expected only spaces after the header dict, found 'x'"},
        {"{'descr': '<f8', 'fortran_order': False, 'shape': ()}}\n",
         "expected only spaces after the header dict"},
        {"{'descr': '<f8', 'fortran_order': False, 'shape': ()\n",
         "expected ',' or '}' in the header dict, found the end of the header"},
        {"{'descr': '<f8', 'fortran_order': False, 'shape': ()\x01}\n", "found byte 0x01"},
        {"{'descr': '<f8', 'fortran_order': False, 'shape': ()}\0\n", "found byte 0x00"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; ++i) {
        /* the \0 case: strlen would stop at it, so those bytes are placed by length */
        const char *header = cases[i].header;
        size_t length = strlen(header);
        if (header[length - 1] != '\n') length += 2;
        unsigned char bytes[512];
        memcpy(bytes, "\x93NUMPY\x01\x00", 8);
        bytes[8] = (unsigned char)length;
        bytes[9] = 0;
        memcpy(bytes + 10, header, length);
        memset(bytes + 10 + length, 0, 8); /* enough data for shape () */
        expect_rejection(bytes, 10 + length + 8, cases[i].expected);
    }
}

Test(npy_reject, messages_give_the_file_offset) {
    /* The 'x' is at header offset 9, which is file offset 19. */
    expect_header_rejection("{'descr':x}\n", 0, "malformed header at byte 19");
}

/* ---- robustness: every truncation and every single-byte corruption fails cleanly ------------ */

static npy_bytes valid_file(void) {
    return hand_built(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }         \n",
                      six_doubles, sizeof six_doubles);
}

Test(npy_robust, every_truncation_is_rejected) {
    npy_bytes file = valid_file();
    for (size_t size = 0; size < file.size; ++size) {
        /* A copy of exactly `size` bytes on the heap, so that an overread is an overread. */
        unsigned char *prefix = malloc(size ? size : 1);
        memcpy(prefix, file.bytes, size);
        npy_array array;
        char err[256] = "";
        cr_assert_not(npy_parse(prefix, size, &array, err, sizeof err), "accepted %zu bytes", size);
        cr_assert_neq(err[0], '\0', "no message for %zu bytes", size);
        free(prefix);
    }
}

Test(npy_robust, every_single_byte_corruption_is_handled) {
    npy_bytes original = valid_file();
    size_t header_end = original.size - sizeof six_doubles;
    const unsigned char replacements[] = {0x00, 0x0a, ' ', '\'', '"', '(', ')',  ',',  ':',  '{',
                                          '}',  '[',  '0', '9',  'L', 'T', '\\', 0x7f, 0x80, 0xff};
    for (size_t at = 0; at < header_end; ++at) {
        for (size_t r = 0; r < sizeof replacements; ++r) {
            npy_bytes file = original;
            file.bytes[at] = replacements[r];
            unsigned char *copy = malloc(file.size);
            memcpy(copy, file.bytes, file.size);
            npy_array array;
            char err[256] = "";
            if (npy_parse(copy, file.size, &array, err, sizeof err)) {
                cr_assert_leq((size_t)array.count * npy_itemsize(array.dtype), file.size);
                npy_free(&array);
            } else {
                cr_assert_neq(err[0], '\0', "no message for byte %zu = 0x%02x", at,
                              replacements[r]);
            }
            free(copy);
        }
    }
}

Test(npy_robust, error_buffer_may_be_small_or_absent) {
    npy_array array;
    char tiny[4];
    cr_assert_not(npy_parse("junk", 4, &array, tiny, sizeof tiny));
    cr_assert_eq(strlen(tiny), 3);
    cr_assert_not(npy_parse("junk", 4, &array, NULL, 0));
}
