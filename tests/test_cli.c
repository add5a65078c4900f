/* The closs command-line tool, run as a separate process on .npy files in a temporary directory.
 * Its outputs must equal, bit for bit, the closs_ref_* functions called here on the same data (the
 * tool is a thin layer over them); its JSON line must carry the same loss; and every bad input,
 * parameter or command line must fail with exit status 2, a one-line "closs: error: " message
 * that names the problem, and an untouched out directory. */
#define _XOPEN_SOURCE 700 /* mkdtemp, nftw, posix_spawn, truncate */

#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "closs.h"
#include "gpu_scale.h"
#include "npy.h"

extern char **environ;

enum { ROWS = 6, DIM = 5, CELLS = ROWS * DIM };

/* ---- a temporary directory per test: in/ for the inputs, out/ for the outputs ------------- */

static char workdir[64], in_dir[96], out_dir[96];

static void make_workdir(void) {
    strcpy(workdir, "/tmp/closs-test-cli-XXXXXX");
    cr_assert_not_null(mkdtemp(workdir));
    snprintf(in_dir, sizeof in_dir, "%s/in", workdir);
    snprintf(out_dir, sizeof out_dir, "%s/out", workdir);
    cr_assert_eq(mkdir(in_dir, 0777), 0);
    cr_assert_eq(mkdir(out_dir, 0777), 0);
}

static int remove_entry(const char *path, const struct stat *info, int flag, struct FTW *ftw) {
    (void)info, (void)flag, (void)ftw;
    return remove(path);
}

static void remove_tree(const char *path) { nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS); }

static void remove_workdir(void) { remove_tree(workdir); }

TestSuite(cli_eval, .init = make_workdir, .fini = remove_workdir);
TestSuite(cli_reject, .init = make_workdir, .fini = remove_workdir);
TestSuite(cli_usage, .init = make_workdir, .fini = remove_workdir);

static int count_entries(const char *dir) {
    DIR *handle = opendir(dir);
    cr_assert_not_null(handle, "cannot open %s", dir);
    int count = 0;
    for (struct dirent *entry; (entry = readdir(handle));)
        count += strcmp(entry->d_name, ".") != 0 && strcmp(entry->d_name, "..") != 0;
    closedir(handle);
    return count;
}

/* ---- running the tool ------------------------------------------------------------------------ */

typedef struct cli_result {
    int status;
    char out[16384];
    char err[16384];
} cli_result;

/* The file's text, or its last size − 1 bytes: under a GPU simulator (the simulated tier) the
 * tool's stdout holds tens of KiB of the simulator's own lines before the summary. */
static void read_text(const char *path, char *text, size_t size) {
    FILE *file = fopen(path, "rb");
    cr_assert_not_null(file);
    if (fseek(file, 0, SEEK_END) == 0 && ftell(file) > (long)(size - 1))
        fseek(file, -(long)(size - 1), SEEK_END);
    else rewind(file);
    size_t length = fread(text, 1, size - 1, file);
    text[length] = '\0';
    fclose(file);
    unlink(path);
}

/* Runs the tool with `args` (NULL-terminated, without the program name), stdout and stderr
 * captured through files in the work directory. */
static void run_cli(cli_result *result, const char *const *args) {
    char *argv[64];
    int argc = 0;
    argv[argc++] = CLOSS_CLI_PATH;
    for (; *args; ++args) {
        cr_assert_lt(argc, 63);
        argv[argc++] = (char *)*args;
    }
    argv[argc] = NULL;
    char out_path[128], err_path[128];
    snprintf(out_path, sizeof out_path, "%s/stdout", workdir);
    snprintf(err_path, sizeof err_path, "%s/stderr", workdir);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&actions, 2, err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    pid_t pid;
    cr_assert_eq(posix_spawn(&pid, CLOSS_CLI_PATH, &actions, NULL, argv, environ), 0);
    posix_spawn_file_actions_destroy(&actions);
    int wait_status;
    cr_assert_eq(waitpid(pid, &wait_status, 0), pid);
    cr_assert(WIFEXITED(wait_status), "the tool died (wait status %d)", wait_status);
    result->status = WEXITSTATUS(wait_status);
    read_text(out_path, result->out, sizeof result->out);
    read_text(err_path, result->err, sizeof result->err);
}

#define RUN(result, ...) run_cli(result, (const char *const[]){__VA_ARGS__, NULL})

/* ---- inputs ---------------------------------------------------------------------------------- */

/* Deterministic values in [-1, 1) with all 53 bits used, so that rounding to float32 changes
 * them. */
static void fill_random(double *data, size_t count, uint64_t seed) {
    uint64_t state = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < count; ++i) {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        data[i] = (double)((state * 0x2545F4914F6CDD1Dull) >> 11) / 9007199254740992.0 * 2 - 1;
    }
}

static void write_input(const char *name, npy_dtype dtype, int ndim, int64_t rows, int64_t cols,
                        const void *data) {
    char path[160], err[256];
    snprintf(path, sizeof path, "%s/%s.npy", in_dir, name);
    int64_t shape[2] = {rows, cols};
    cr_assert(npy_write(path, dtype, ndim, shape, data, err, sizeof err), "%s", err);
}

static void write_matrix(const char *name, const double *data) {
    write_input(name, NPY_F8, 2, ROWS, DIM, data);
}

static void write_raw_input(const char *name, const void *bytes, size_t size) {
    char path[160];
    snprintf(path, sizeof path, "%s/%s.npy", in_dir, name);
    FILE *file = fopen(path, "wb");
    cr_assert_not_null(file);
    cr_assert_eq(fwrite(bytes, 1, size, file), size);
    fclose(file);
}

static const double pair_targets[ROWS] = {0, 1, 0.5, 1, 0, 0.25};

typedef struct pair_inputs {
    double x1[CELLS], x2[CELLS], y[ROWS];
} pair_inputs;

/* x1, x2 and y as pair and cosine read them. */
static pair_inputs write_pair_inputs(void) {
    pair_inputs in;
    fill_random(in.x1, CELLS, 1);
    fill_random(in.x2, CELLS, 2);
    memcpy(in.y, pair_targets, sizeof in.y);
    write_matrix("x1", in.x1);
    write_matrix("x2", in.x2);
    write_input("y", NPY_F8, 1, ROWS, 0, in.y);
    return in;
}

static closs_matrix_t matrix64(const double *data, int64_t rows) {
    return closs_matrix(data, CLOSS_F64, rows, DIM);
}

static closs_vector_t vector64(const double *data, int64_t length) {
    return closs_vector(data, CLOSS_F64, length);
}

/* ---- checking the outputs -------------------------------------------------------------------- */

/* What a successful run must print and write, computed with the closs_ref_* function. */
typedef struct expected {
    const char *dtype, *reduction;
    int64_t rows;
    bool per_row_loss; /* reduction none: loss.npy is (rows,) and the JSON loss null */
    double loss[ROWS];
    int grad_count;
    const char *grad_names[3];
    double grads[3][CELLS];
    int64_t grad_rows[3]; /* 0: rows */
    int64_t valid;        /* SupCon only: -1 for the others */
    int scalar_count;     /* CLIP and SigLIP: grad_logit_scale.npy (and grad_logit_bias.npy) */
    double scalars[2];
    int64_t negatives; /* CLIP and SigLIP: K; -1 for the others */
} expected;

static expected expect(const char *reduction, int grad_count, const char *const *grad_names) {
    expected e = {.dtype = "f64",
                  .reduction = reduction,
                  .rows = ROWS,
                  .grad_count = grad_count,
                  .valid = -1,
                  .negatives = -1};
    e.per_row_loss = strcmp(reduction, "none") == 0;
    for (int i = 0; i < grad_count; ++i) e.grad_names[i] = grad_names[i];
    return e;
}

/* The text of `"key": value` in a one-line JSON object, without the key; "" when absent. */
static void json_value(const char *json, const char *key, char *value, size_t size) {
    char pattern[64];
    snprintf(pattern, sizeof pattern, "\"%s\": ", key);
    value[0] = '\0';
    const char *at = strstr(json, pattern);
    if (!at) return;
    at += strlen(pattern);
    size_t length = strcspn(at, ",}");
    if (length >= size) length = size - 1;
    memcpy(value, at, length);
    value[length] = '\0';
}

static void expect_json(const char *json, const char *key, const char *value) {
    char actual[128];
    json_value(json, key, actual, sizeof actual);
    cr_expect_str_eq(actual, value, "JSON %s is '%s', expected '%s' in %s", key, actual, value,
                     json);
}

/* out/<name>.npy holds float64 of shape (rows, dim) (ndim 2), (rows,) (ndim 1) or () with exactly
 * the bits of `values`. */
static void expect_output_file(const char *name, int ndim, int64_t rows, const double *values) {
    char path[160], err[256];
    snprintf(path, sizeof path, "%s/%s.npy", out_dir, name);
    npy_array array;
    cr_assert(npy_read(path, &array, err, sizeof err), "%s: %s", path, err);
    cr_assert_eq(array.dtype, NPY_F8, "%s", name);
    cr_assert_eq(array.ndim, ndim, "%s", name);
    if (ndim >= 1) cr_assert_eq(array.shape[0], rows, "%s", name);
    if (ndim == 2) cr_assert_eq(array.shape[1], DIM, "%s", name);
    if (array.count)
        cr_assert_eq(memcmp(array.data, values, (size_t)array.count * sizeof(double)), 0,
                     "%s differs from the reference", name);
    npy_free(&array);
}

static void check_outputs(const cli_result *r, const expected *e) {
    cr_assert_eq(r->status, 0, "exit status %d, stderr: %s", r->status, r->err);
    cr_expect_str_eq(r->err, "");
    /* One JSON object on one line. */
    size_t length = strlen(r->out);
    cr_assert(length > 2 && r->out[0] == '{' && strcmp(r->out + length - 2, "}\n") == 0 &&
                  strchr(r->out, '\n') == r->out + length - 1,
              "not one JSON line: %s", r->out);
    char loss_text[64];
    json_value(r->out, "loss", loss_text, sizeof loss_text);
    if (e->per_row_loss) {
        cr_expect_str_eq(loss_text, "null");
    } else {
        char *end;
        double printed = strtod(loss_text, &end);
        cr_expect(*loss_text && *end == '\0', "JSON loss '%s' is not a number", loss_text);
        cr_expect(printed == e->loss[0], "JSON loss %s, reference %.17g", loss_text, e->loss[0]);
    }
    expect_json(r->out, "device", "\"cpu\"");
    char text[32];
    snprintf(text, sizeof text, "\"%s\"", e->dtype);
    expect_json(r->out, "dtype", text);
    snprintf(text, sizeof text, "\"%s\"", e->reduction);
    expect_json(r->out, "reduction", text);
    snprintf(text, sizeof text, "%lld", (long long)e->rows);
    expect_json(r->out, "rows", text);
    snprintf(text, sizeof text, "%d", DIM);
    expect_json(r->out, "dim", text);
    if (e->valid >= 0) snprintf(text, sizeof text, "%lld", (long long)e->valid);
    else text[0] = '\0';
    expect_json(r->out, "valid", text);
    if (e->negatives >= 0) snprintf(text, sizeof text, "%lld", (long long)e->negatives);
    else text[0] = '\0';
    expect_json(r->out, "negatives", text);

    expect_output_file("loss", e->per_row_loss ? 1 : 0, e->rows, e->loss);
    for (int i = 0; i < e->grad_count; ++i) {
        char name[32];
        snprintf(name, sizeof name, "grad_%s", e->grad_names[i]);
        expect_output_file(name, 2, e->grad_rows[i] ? e->grad_rows[i] : e->rows, e->grads[i]);
    }
    static const char *const scalar_files[] = {"grad_logit_scale", "grad_logit_bias"};
    for (int k = 0; k < e->scalar_count; ++k)
        expect_output_file(scalar_files[k], 0, 0, &e->scalars[k]);
    cr_expect_eq(count_entries(out_dir), 1 + e->grad_count + e->scalar_count,
                 "the out directory has extra files");
}

static const char *const pair_grads[] = {"x1", "x2"};
static const char *const triplet_grads[] = {"anchor", "positive", "negative"};
static const char *const z_grads[] = {"z"};

/* ---- every loss against the reference -------------------------------------------------------- */

Test(cli_eval, pair_defaults) {
    pair_inputs in = write_pair_inputs();
    cli_result r;
    RUN(&r, "eval", "pair", "--in", in_dir, "--out", out_dir);
    expected e = expect("mean", 2, pair_grads);
    closs_pair_params params = CLOSS_PAIR_PARAMS_INIT;
    cr_assert_eq(closs_ref_pair(&params, matrix64(in.x1, ROWS), matrix64(in.x2, ROWS),
                                vector64(in.y, ROWS), NULL, e.loss, e.grads[0], e.grads[1]),
                 CLOSS_STATUS_SUCCESS);
    check_outputs(&r, &e);
}

Test(cli_eval, pair_with_parameters) {
    pair_inputs in = write_pair_inputs();
    cli_result r;
    /* Parameters before the loss and options in the --name=value form are fine too. */
    RUN(&r, "eval", "margin=0.5", "distance=cosine", "pair", "--in=", in_dir, "--out", out_dir,
        "reduction=sum");
    cr_assert_neq(r.status, 0, "'--in=' with an empty value must fail");
    char in_option[128];
    snprintf(in_option, sizeof in_option, "--in=%s", in_dir);
    RUN(&r, "eval", "margin=0.5", "distance=cosine", "pair", in_option, "--out", out_dir,
        "reduction=sum");
    expected e = expect("sum", 2, pair_grads);
    closs_pair_params params = CLOSS_PAIR_PARAMS_INIT;
    params.margin = 0.5;
    params.distance = CLOSS_DISTANCE_COSINE;
    params.reduction = CLOSS_REDUCTION_SUM;
    cr_assert_eq(closs_ref_pair(&params, matrix64(in.x1, ROWS), matrix64(in.x2, ROWS),
                                vector64(in.y, ROWS), NULL, e.loss, e.grads[0], e.grads[1]),
                 CLOSS_STATUS_SUCCESS);
    check_outputs(&r, &e);
}

Test(cli_eval, triplet_per_row) {
    double anchor[CELLS], positive[CELLS], negative[CELLS];
    fill_random(anchor, CELLS, 3);
    fill_random(positive, CELLS, 4);
    fill_random(negative, CELLS, 5);
    write_matrix("anchor", anchor);
    write_matrix("positive", positive);
    write_matrix("negative", negative);
    cli_result r;
    RUN(&r, "eval", "triplet", "--in", in_dir, "--out", out_dir, "swap=1", "margin=0.3",
        "distance=euclidean", "reduction=none");
    expected e = expect("none", 3, triplet_grads);
    closs_triplet_params params = CLOSS_TRIPLET_PARAMS_INIT;
    params.swap = 1;
    params.margin = 0.3;
    params.distance = CLOSS_DISTANCE_EUCLIDEAN;
    params.reduction = CLOSS_REDUCTION_NONE;
    cr_assert_eq(closs_ref_triplet(&params, matrix64(anchor, ROWS), matrix64(positive, ROWS),
                                   matrix64(negative, ROWS), NULL, e.loss, e.grads[0], e.grads[1],
                                   e.grads[2]),
                 CLOSS_STATUS_SUCCESS);
    check_outputs(&r, &e);
}

Test(cli_eval, ntxent_temperature_and_dot_product) {
    double z[CELLS];
    fill_random(z, CELLS, 6);
    write_matrix("z", z);
    cli_result r;
    RUN(&r, "eval", "ntxent", "--in", in_dir, "--out", out_dir, "temperature=0.5", "normalize=0");
    expected e = expect("mean", 1, z_grads);
    closs_ntxent_params params = CLOSS_NTXENT_PARAMS_INIT;
    params.temperature = 0.5;
    params.normalize = 0;
    cr_assert_eq(closs_ref_ntxent(&params, matrix64(z, ROWS), NULL, e.loss, e.grads[0]),
                 CLOSS_STATUS_SUCCESS);
    check_outputs(&r, &e);
}

Test(cli_eval, supcon_int32_labels_report_valid) {
    double z[CELLS];
    fill_random(z, CELLS, 7);
    write_matrix("z", z);
    const int32_t labels[ROWS] = {0, 1, 0, 2, 1, 3}; /* 2 and 3 have no positive */
    write_input("labels", NPY_I4, 1, ROWS, 0, labels);
    cli_result r;
    RUN(&r, "eval", "supcon", "--in", in_dir, "--out", out_dir, "temperature=0.1",
        "base_temperature=0.07");
    expected e = expect("mean", 1, z_grads);
    closs_supcon_params params = CLOSS_SUPCON_PARAMS_INIT;
    params.temperature = 0.1;
    params.base_temperature = 0.07;
    cr_assert_eq(closs_ref_supcon(&params, matrix64(z, ROWS), closs_vector(labels, CLOSS_I32, ROWS),
                                  NULL, e.loss, e.grads[0], &e.valid),
                 CLOSS_STATUS_SUCCESS);
    cr_assert_eq(e.valid, 4);
    check_outputs(&r, &e);
}

Test(cli_eval, supcon_int64_labels_per_anchor) {
    double z[CELLS];
    fill_random(z, CELLS, 8);
    write_matrix("z", z);
    const int64_t labels[ROWS] = {5, 5, -1, -1, 1LL << 40, 1LL << 40};
    write_input("labels", NPY_I8, 1, ROWS, 0, labels);
    cli_result r;
    RUN(&r, "eval", "supcon", "--in", in_dir, "--out", out_dir, "reduction=none");
    expected e = expect("none", 1, z_grads);
    closs_supcon_params params = CLOSS_SUPCON_PARAMS_INIT;
    params.reduction = CLOSS_REDUCTION_NONE;
    cr_assert_eq(closs_ref_supcon(&params, matrix64(z, ROWS), closs_vector(labels, CLOSS_I64, ROWS),
                                  NULL, e.loss, e.grads[0], &e.valid),
                 CLOSS_STATUS_SUCCESS);
    check_outputs(&r, &e);
}

Test(cli_eval, cosine_squared) {
    pair_inputs in = write_pair_inputs();
    cli_result r;
    RUN(&r, "eval", "cosine", "--in", in_dir, "--out", out_dir, "squared=1", "margin=-0.2",
        "--device", "cpu", "--dtype", "f64");
    expected e = expect("mean", 2, pair_grads);
    closs_cosine_params params = CLOSS_COSINE_PARAMS_INIT;
    params.squared = 1;
    params.margin = -0.2;
    cr_assert_eq(closs_ref_cosine(&params, matrix64(in.x1, ROWS), matrix64(in.x2, ROWS),
                                  vector64(in.y, ROWS), NULL, e.loss, e.grads[0], e.grads[1]),
                 CLOSS_STATUS_SUCCESS);
    check_outputs(&r, &e);
}

/* a: PAIRS × DIM and b: ROWS × DIM (ROWS − PAIRS extra negatives), as CLIP and SigLIP read them. */
enum { PAIRS = ROWS - 2 };
static const char *const tower_grads[] = {"a", "b"};

typedef struct tower_inputs {
    double a[PAIRS * DIM], b[CELLS];
} tower_inputs;

static tower_inputs write_tower_inputs(void) {
    tower_inputs in;
    fill_random(in.a, PAIRS * DIM, 13);
    fill_random(in.b, CELLS, 14);
    write_input("a", NPY_F8, 2, PAIRS, DIM, in.a);
    write_input("b", NPY_F8, 2, ROWS, DIM, in.b);
    return in;
}

static expected expect_tower(const char *reduction, int scalars, int64_t b_rows) {
    expected e = expect(reduction, 2, tower_grads);
    e.rows = PAIRS;
    e.grad_rows[1] = b_rows;
    e.scalar_count = scalars;
    e.negatives = ROWS - PAIRS;
    return e;
}

Test(cli_eval, clip_defaults_and_parameters) {
    tower_inputs in = write_tower_inputs();
    cli_result r;
    RUN(&r, "eval", "clip", "--in", in_dir, "--out", out_dir);
    expected e = expect_tower("mean", 1, ROWS);
    closs_clip_params params = CLOSS_CLIP_PARAMS_INIT;
    cr_assert_eq(closs_ref_clip(&params, matrix64(in.a, PAIRS), matrix64(in.b, ROWS), NULL, e.loss,
                                e.grads[0], e.grads[1], &e.scalars[0]),
                 CLOSS_STATUS_SUCCESS);
    check_outputs(&r, &e);

    remove_tree(out_dir);
    RUN(&r, "eval", "clip", "--in", in_dir, "--out", out_dir, "logit_scale=20", "symmetric=0",
        "in_batch_negatives=0", "normalize=0", "grad_negatives=0", "reduction=none",
        "check_inputs=1");
    e = expect_tower("none", 1, PAIRS);
    params.logit_scale = 20;
    params.symmetric = params.in_batch_negatives = params.normalize = params.grad_negatives = 0;
    params.reduction = CLOSS_REDUCTION_NONE;
    params.check_inputs = 1;
    cr_assert_eq(closs_ref_clip(&params, matrix64(in.a, PAIRS), matrix64(in.b, ROWS), NULL, e.loss,
                                e.grads[0], e.grads[1], &e.scalars[0]),
                 CLOSS_STATUS_SUCCESS);
    check_outputs(&r, &e);
}

Test(cli_eval, siglip_with_parameters) {
    tower_inputs in = write_tower_inputs();
    cli_result r;
    RUN(&r, "eval", "siglip", "--in", in_dir, "--out", out_dir, "logit_scale=5", "logit_bias=-2.5",
        "reduction=sum");
    expected e = expect_tower("sum", 2, ROWS);
    closs_siglip_params params = CLOSS_SIGLIP_PARAMS_INIT;
    params.logit_scale = 5;
    params.logit_bias = -2.5;
    params.reduction = CLOSS_REDUCTION_SUM;
    cr_assert_eq(closs_ref_siglip(&params, matrix64(in.a, PAIRS), matrix64(in.b, ROWS), NULL,
                                  e.loss, e.grads[0], e.grads[1], &e.scalars[0], &e.scalars[1]),
                 CLOSS_STATUS_SUCCESS);
    check_outputs(&r, &e);
    /* Without extra negatives (b as many rows as a). */
    remove_tree(out_dir);
    write_input("b", NPY_F8, 2, PAIRS, DIM, in.b);
    RUN(&r, "eval", "siglip", "--in", in_dir, "--out", out_dir, "grad_negatives=0");
    e = expect_tower("mean", 2, PAIRS);
    e.negatives = 0;
    params = (closs_siglip_params)CLOSS_SIGLIP_PARAMS_INIT;
    params.grad_negatives = 0;
    cr_assert_eq(closs_ref_siglip(&params, matrix64(in.a, PAIRS), matrix64(in.b, PAIRS), NULL,
                                  e.loss, e.grads[0], e.grads[1], &e.scalars[0], &e.scalars[1]),
                 CLOSS_STATUS_SUCCESS);
    check_outputs(&r, &e);
}

/* ---- dtypes ---------------------------------------------------------------------------------- */

Test(cli_eval, dtype_f32_rounds_the_inputs) {
    pair_inputs in = write_pair_inputs();
    cli_result r;
    RUN(&r, "eval", "pair", "--in", in_dir, "--out", out_dir, "--dtype", "f32");
    float x1[CELLS], x2[CELLS], y[ROWS];
    for (int i = 0; i < CELLS; ++i) x1[i] = (float)in.x1[i], x2[i] = (float)in.x2[i];
    for (int i = 0; i < ROWS; ++i) y[i] = (float)in.y[i];
    expected e = expect("mean", 2, pair_grads);
    e.dtype = "f32";
    closs_pair_params params = CLOSS_PAIR_PARAMS_INIT;
    cr_assert_eq(closs_ref_pair(&params, closs_matrix(x1, CLOSS_F32, ROWS, DIM),
                                closs_matrix(x2, CLOSS_F32, ROWS, DIM),
                                closs_vector(y, CLOSS_F32, ROWS), NULL, e.loss, e.grads[0],
                                e.grads[1]),
                 CLOSS_STATUS_SUCCESS);
    check_outputs(&r, &e);
    /* ... which is not what the same files give in f64. */
    double loss64, grad64[CELLS];
    cr_assert_eq(closs_ref_pair(&params, matrix64(in.x1, ROWS), matrix64(in.x2, ROWS),
                                vector64(in.y, ROWS), NULL, &loss64, grad64, NULL),
                 CLOSS_STATUS_SUCCESS);
    cr_expect_neq(memcmp(grad64, e.grads[0], sizeof grad64), 0);
}

Test(cli_eval, float32_files_are_widened_for_f64) {
    double x1[CELLS], x2[CELLS];
    float x1f[CELLS], x2f[CELLS], yf[ROWS];
    fill_random(x1, CELLS, 9);
    fill_random(x2, CELLS, 10);
    for (int i = 0; i < CELLS; ++i) {
        x1f[i] = (float)x1[i], x2f[i] = (float)x2[i];
        x1[i] = x1f[i], x2[i] = x2f[i];
    }
    for (int i = 0; i < ROWS; ++i) yf[i] = (float)pair_targets[i];
    write_input("x1", NPY_F4, 2, ROWS, DIM, x1f);
    write_input("x2", NPY_F4, 2, ROWS, DIM, x2f);
    write_input("y", NPY_F4, 1, ROWS, 0, yf);
    cli_result r;
    RUN(&r, "eval", "cosine", "--in", in_dir, "--out", out_dir);
    expected e = expect("mean", 2, pair_grads);
    closs_cosine_params params = CLOSS_COSINE_PARAMS_INIT;
    cr_assert_eq(closs_ref_cosine(&params, matrix64(x1, ROWS), matrix64(x2, ROWS),
                                  vector64(pair_targets, ROWS), NULL, e.loss, e.grads[0],
                                  e.grads[1]),
                 CLOSS_STATUS_SUCCESS);
    check_outputs(&r, &e);
}

/* ---- edge cases of the outputs --------------------------------------------------------------- */

Test(cli_eval, empty_batch) {
    write_input("x1", NPY_F8, 2, 0, DIM, NULL);
    write_input("x2", NPY_F8, 2, 0, DIM, NULL);
    write_input("y", NPY_F8, 1, 0, 0, NULL);
    cli_result r;
    RUN(&r, "eval", "pair", "--in", in_dir, "--out", out_dir);
    expected e = expect("mean", 2, pair_grads);
    e.rows = 0;
    e.loss[0] = 0;
    check_outputs(&r, &e);
}

Test(cli_eval, nonfinite_loss_is_null_with_text) {
    pair_inputs in = write_pair_inputs();
    in.x1[DIM + 1] = NAN;
    write_matrix("x1", in.x1);
    cli_result r;
    RUN(&r, "eval", "pair", "--in", in_dir, "--out", out_dir);
    cr_assert_eq(r.status, 0, "%s", r.err);
    expect_json(r.out, "loss", "null");
    expect_json(r.out, "loss_text", "\"nan\"");
    /* ... unless check mode is asked for. */
    remove_tree(out_dir);
    RUN(&r, "eval", "pair", "--in", in_dir, "--out", out_dir, "check_inputs=1");
    cr_assert_eq(r.status, 2);
    cr_assert(strstr(r.err, "closs: error: pair: x1[1][1] = nan"), "%s", r.err);
    cr_assert_eq(access(out_dir, F_OK), -1, "the out directory was created for a failed run");
}

Test(cli_eval, out_directory_is_created_and_files_replaced) {
    write_pair_inputs();
    char nested[160];
    snprintf(nested, sizeof nested, "%s/new/nested/dir", workdir);
    cli_result r;
    RUN(&r, "eval", "pair", "--in", in_dir, "--out", nested);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_assert_eq(count_entries(nested), 3);
    /* A second run replaces the files whole and leaves no temporary file behind. */
    RUN(&r, "eval", "pair", "--in", in_dir, "--out", nested, "reduction=none");
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_assert_eq(count_entries(nested), 3);
    char path[200], err[256];
    snprintf(path, sizeof path, "%s/loss.npy", nested);
    npy_array loss;
    cr_assert(npy_read(path, &loss, err, sizeof err), "%s", err);
    cr_assert_eq(loss.ndim, 1);
    npy_free(&loss);
}

Test(cli_eval, unwritable_out_is_a_failure) {
    write_pair_inputs();
    char file_path[160];
    snprintf(file_path, sizeof file_path, "%s/a-file", workdir);
    FILE *file = fopen(file_path, "w");
    cr_assert_not_null(file);
    fclose(file);
    cli_result r;
    RUN(&r, "eval", "pair", "--in", in_dir, "--out", file_path);
    cr_assert_eq(r.status, 1);
    cr_assert(strstr(r.err, "closs: error: --out") && strstr(r.err, "is not a directory"), "%s",
              r.err);
    cr_assert_str_eq(r.out, "");
}

/* ---- rejections ------------------------------------------------------------------------------ */

/* Runs the tool with `args`, where "IN" and "OUT" stand for in/ and out/, and expects exit status
 * 2, one stderr line starting with "closs: error: " and containing `expected`, nothing on stdout
 * and nothing in out/. */
static void check_rejection(const char *label, const char *const *args, const char *expected) {
    const char *argv[32];
    int count = 0;
    for (; *args; ++args) {
        cr_assert_lt(count, 31);
        argv[count++] = strcmp(*args, "IN") == 0    ? in_dir
                        : strcmp(*args, "OUT") == 0 ? out_dir
                                                    : *args;
    }
    argv[count] = NULL;
    cli_result r;
    run_cli(&r, argv);
    cr_expect_eq(r.status, 2, "%s: exit status %d, stderr: %s", label, r.status, r.err);
    cr_expect(strncmp(r.err, "closs: error: ", 14) == 0, "%s: stderr is '%s'", label, r.err);
    cr_expect(strchr(r.err, '\n') == r.err + strlen(r.err) - 1, "%s: not one line: %s", label,
              r.err);
    cr_expect(strstr(r.err, expected), "%s: '%s' does not contain '%s'", label, r.err, expected);
    cr_expect_str_eq(r.out, "", "%s: wrote to stdout", label);
    cr_expect_eq(count_entries(out_dir), 0, "%s: left files in the out directory", label);
}

/* closs eval LOSS --in in/ --out out/ EXTRA... (EXTRA may be NULL alone). */
#define REJECT(label, loss, expected, ...)                                                         \
    check_rejection(                                                                               \
        label,                                                                                     \
        (const char *const[]){"eval", loss, "--in", "IN", "--out", "OUT", __VA_ARGS__, NULL},      \
        expected)

/* A hand-built version 1.0 .npy file with the given header and `data_bytes` zero bytes of data. */
static void write_with_header(const char *name, const char *header, size_t data_bytes) {
    unsigned char bytes[1024] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
    size_t length = strlen(header);
    cr_assert_leq(10 + length + data_bytes, sizeof bytes);
    bytes[8] = (unsigned char)length;
    bytes[9] = 0;
    memcpy(bytes + 10, header, length);
    write_raw_input(name, bytes, 10 + length + data_bytes);
}

typedef enum spoiler {
    MISSING_X2,
    X1_ONE_DIMENSIONAL,
    X1_INTEGER,
    Y_TWO_DIMENSIONAL,
    X2_FEWER_ROWS,
    X2_OTHER_DIM,
    Y_TOO_SHORT,
    X1_FORTRAN_ORDER,
    X1_BIG_ENDIAN,
    X1_HALF_PRECISION,
    X1_TRUNCATED,
    X1_NOT_NPY,
    X1_NO_NEWLINE,
    Y_ABOVE_ONE,
    Y_NAN,
} spoiler;

/* Replaces one of the valid pair inputs with a bad one. */
static void spoil(spoiler which, pair_inputs *in) {
    char path[160];
    struct stat info;
    switch (which) {
    case MISSING_X2:
        snprintf(path, sizeof path, "%s/x2.npy", in_dir);
        cr_assert_eq(unlink(path), 0);
        break;
    case X1_ONE_DIMENSIONAL: write_input("x1", NPY_F8, 1, ROWS, 0, in->x1); break;
    case X1_INTEGER: {
        int32_t ints[CELLS] = {0};
        write_input("x1", NPY_I4, 2, ROWS, DIM, ints);
        break;
    }
    case Y_TWO_DIMENSIONAL: write_input("y", NPY_F8, 2, ROWS, 1, in->y); break;
    case X2_FEWER_ROWS: write_input("x2", NPY_F8, 2, ROWS - 2, DIM, in->x2); break;
    case X2_OTHER_DIM: write_input("x2", NPY_F8, 2, ROWS, DIM - 1, in->x2); break;
    case Y_TOO_SHORT: write_input("y", NPY_F8, 1, ROWS - 1, 0, in->y); break;
    case X1_FORTRAN_ORDER:
        write_with_header("x1", "{'descr': '<f8', 'fortran_order': True, 'shape': (6, 5), }\n",
                          8 * CELLS);
        break;
    case X1_BIG_ENDIAN:
        write_with_header("x1", "{'descr': '>f8', 'fortran_order': False, 'shape': (6, 5), }\n",
                          8 * CELLS);
        break;
    case X1_HALF_PRECISION:
        write_with_header("x1", "{'descr': '<f2', 'fortran_order': False, 'shape': (6, 5), }\n",
                          2 * CELLS);
        break;
    case X1_TRUNCATED:
        snprintf(path, sizeof path, "%s/x1.npy", in_dir);
        cr_assert_eq(stat(path, &info), 0);
        cr_assert_eq(truncate(path, info.st_size - 3), 0);
        break;
    case X1_NOT_NPY: write_raw_input("x1", "x1,x2\n1,2\n", 10); break;
    case X1_NO_NEWLINE:
        write_with_header("x1", "{'descr': '<f8', 'fortran_order': False, 'shape': (6, 5), } ",
                          8 * CELLS);
        break;
    case Y_ABOVE_ONE:
        in->y[2] = 1.5;
        write_input("y", NPY_F8, 1, ROWS, 0, in->y);
        break;
    case Y_NAN:
        in->y[4] = NAN;
        write_input("y", NPY_F8, 1, ROWS, 0, in->y);
        break;
    }
}

Test(cli_reject, bad_input_files) {
    const struct {
        spoiler which;
        const char *label;
        const char *expected;
    } cases[] = {
        {MISSING_X2, "missing file", "/in/x2.npy: cannot open: No such file or directory"},
        {X1_ONE_DIMENSIONAL, "1-D x1",
         "/in/x1.npy: x1 must be float32 or float64 (rows, dim), got shape (6,) of <f8"},
        {X1_INTEGER, "integer x1",
         "x1 must be float32 or float64 (rows, dim), got shape (6, 5) of <i4"},
        {Y_TWO_DIMENSIONAL, "2-D y",
         "y must be float32 or float64 (rows) in [0, 1], got shape (6, 1)"},
        {X2_FEWER_ROWS, "mismatched rows", "x2.npy has shape (4, 5) but x1.npy has (6, 5)"},
        {X2_OTHER_DIM, "mismatched dim", "x2.npy has shape (6, 4) but x1.npy has (6, 5)"},
        {Y_TOO_SHORT, "short y", "y.npy has shape (5,) but x1.npy has 6 rows"},
        {X1_FORTRAN_ORDER, "Fortran order", "/in/x1.npy: fortran_order is True"},
        {X1_BIG_ENDIAN, "big-endian", "/in/x1.npy: big-endian dtype '>f8' is not supported"},
        {X1_HALF_PRECISION, "float16 file", "/in/x1.npy: unsupported dtype '<f2'"},
        {X1_TRUNCATED, "truncated file",
         "/in/x1.npy: truncated data: shape (6, 5) of <f8 needs 240 bytes but the file holds 237"},
        {X1_NOT_NPY, "not a .npy file", "/in/x1.npy: not a .npy file"},
        {X1_NO_NEWLINE, "header without newline",
         "/in/x1.npy: malformed header: it does not end in a newline"},
        {Y_ABOVE_ONE, "y above 1", "pair: y[2] = 1.5"},
        {Y_NAN, "y NaN", "pair: y[4] = nan"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; ++i) {
        remove_tree(in_dir);
        cr_assert_eq(mkdir(in_dir, 0777), 0);
        pair_inputs in = write_pair_inputs();
        spoil(cases[i].which, &in);
        REJECT(cases[i].label, "pair", cases[i].expected, NULL);
    }
}

Test(cli_reject, bad_labels_and_rows) {
    double z[CELLS];
    fill_random(z, CELLS, 11);
    write_input("z", NPY_F8, 2, ROWS - 1, DIM, z);
    REJECT("odd NT-Xent rows", "ntxent", "ntxent: z.rows = 5", NULL);
    write_matrix("z", z);
    write_input("labels", NPY_F8, 1, ROWS, 0, pair_targets);
    REJECT("float labels", "supcon", "labels must be int32 or int64 (rows), got shape (6,) of <f8",
           NULL);
    const int64_t labels[ROWS - 1] = {0};
    write_input("labels", NPY_I8, 1, ROWS - 1, 0, labels);
    REJECT("short labels", "supcon",
           "labels.npy has shape (5,) but z.npy has 6 rows: one label per row", NULL);
}

/* CLIP's and SigLIP's b: its rows and dim are the library's to judge, its file the tool's. */
Test(cli_reject, bad_towers) {
    tower_inputs in = write_tower_inputs();
    write_input("b", NPY_F8, 2, PAIRS - 1, DIM, in.b);
    REJECT("b shorter than a", "clip", "clip: b.rows = 3: must be >= a.rows = 4", NULL);
    write_input("b", NPY_F8, 2, ROWS, DIM - 1, in.b);
    REJECT("b of another dim", "siglip", "siglip: b.cols = 4: must equal a.cols = 5", NULL);
    write_input("b", NPY_F8, 1, ROWS, 0, in.b);
    REJECT("1-D b", "clip", "b must be float32 or float64 (rows + negatives, dim), got shape (6,)",
           NULL);
    const int32_t ints[CELLS] = {0};
    write_input("b", NPY_I4, 2, ROWS, DIM, ints);
    REJECT("integer b", "siglip", "b must be float32 or float64", NULL);
    char path[160];
    snprintf(path, sizeof path, "%s/a.npy", in_dir);
    cr_assert_eq(unlink(path), 0);
    REJECT("missing a", "clip", "/in/a.npy: cannot open", NULL);
    write_tower_inputs();
    in.b[3] = NAN;
    write_input("b", NPY_F8, 2, ROWS, DIM, in.b);
    REJECT("NaN with check_inputs", "clip", "clip: b[0][3] = nan", "check_inputs=1");
}

/* Every input of every loss, valid, for the parameter tests. */
static void write_all_inputs(void) {
    write_pair_inputs();
    write_tower_inputs();
    double data[CELLS];
    fill_random(data, CELLS, 12);
    write_matrix("anchor", data);
    write_matrix("positive", data);
    write_matrix("negative", data);
    write_matrix("z", data);
    const int32_t labels[ROWS] = {0, 1, 2, 0, 1, 2};
    write_input("labels", NPY_I4, 1, ROWS, 0, labels);
}

Test(cli_reject, bad_parameters) {
    write_all_inputs();
    const struct {
        const char *loss, *argument, *expected;
    } cases[] = {
        {"pair", "foo=1",
         "unknown parameter 'foo' (pair takes margin, distance, reduction, check_inputs)"},
        {"pair", "temperature=0.5", "parameter 'temperature' does not apply to pair"},
        {"pair", "swap=1", "parameter 'swap' does not apply to pair"},
        {"ntxent", "margin=1",
         "parameter 'margin' does not apply to ntxent (it takes temperature, normalize, reduction, "
         "check_inputs, path)"},
        {"cosine", "base_temperature=1", "parameter 'base_temperature' does not apply to cosine"},
        {"triplet", "squared=1", "parameter 'squared' does not apply to triplet"},
        {"pair", "=1", "'=1' is not a NAME=VALUE parameter"},
        {"pair", "margin=abc", "margin=abc: not a finite number"},
        {"pair", "margin=1x", "margin=1x: not a finite number"},
        {"pair", "margin=", "margin=: not a finite number"},
        {"pair", "margin= 1", "not a finite number"},
        {"pair", "margin=nan", "margin=nan: not a finite number"},
        {"pair", "margin=inf", "margin=inf: not a finite number"},
        {"pair", "margin=1e999", "margin=1e999: not a finite number"},
        {"pair", "distance=sqeuclidean", "distance=sqeuclidean: pair takes euclidean or cosine"},
        {"triplet", "distance=manhattan",
         "distance=manhattan: triplet takes sqeuclidean, euclidean or cosine"},
        {"pair", "reduction=avg", "reduction=avg: must be mean, sum or none"},
        {"triplet", "swap=2", "swap=2: must be 0 or 1"},
        {"ntxent", "normalize=yes", "normalize=yes: must be 0 or 1"},
        {"supcon", "check_inputs=-1", "check_inputs=-1: must be 0 or 1"},
        {"supcon", "path=fast", "path=fast: must be auto, fused or chunked"},
        {"pair", "path=fused", "parameter 'path' does not apply to pair"},
        /* syntactically fine, out of the library's range: its message is passed on */
        {"pair", "margin=-1", "pair: margin = -1"},
        {"cosine", "margin=1.5", "cosine: margin = 1.5"},
        {"ntxent", "temperature=0", "ntxent: temperature = 0"},
        {"supcon", "base_temperature=-0.5", "supcon: base_temperature = -0.5"},
        {"clip", "logit_bias=1",
         "parameter 'logit_bias' does not apply to clip (it takes logit_scale, symmetric, "
         "in_batch_negatives, normalize, grad_negatives, reduction, check_inputs)"},
        {"clip", "temperature=0.07", "parameter 'temperature' does not apply to clip"},
        {"siglip", "symmetric=0", "parameter 'symmetric' does not apply to siglip"},
        {"clip", "logit_scale=abc", "logit_scale=abc: not a finite number"},
        {"siglip", "grad_negatives=yes", "grad_negatives=yes: must be 0 or 1"},
        {"clip", "logit_scale=0", "clip: logit_scale = 0: must be finite and > 0"},
        {"siglip", "logit_scale=-10", "siglip: logit_scale = -10"},
        {"clip", "in_batch_negatives=0", "clip: symmetric = 1 with in_batch_negatives = 0"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; ++i)
        REJECT(cases[i].argument, cases[i].loss, cases[i].expected, cases[i].argument);
    REJECT("twice", "pair", "parameter 'margin' given twice", "margin=1", "margin=1");
}

Test(cli_reject, bad_command_lines) {
    write_all_inputs();
    REJECT("second loss", "pair", "unexpected argument 'triplet' (the loss is already pair)",
           "triplet");
    REJECT("unknown option", "pair", "unknown option '--bogus'", "--bogus", "1");
    REJECT("short option", "pair", "unknown option '-x'", "-x");
    REJECT("option twice", "pair", "--in given twice", "--in", "IN");
    REJECT("option without value", "pair", "--dtype needs a value", "--dtype");
    REJECT("unknown device", "pair", "--device gpu: expected cpu or cuda", "--device", "gpu");
    REJECT("f64 on cuda", "pair", "--device cuda: --dtype f64 (the default) is CPU only",
           "--device", "cuda");
    REJECT("unknown dtype", "pair", "--dtype f128: expected f64, f32, f16 or bf16", "--dtype",
           "f128");
    REJECT("f16 on cpu", "pair", "--dtype f16: the CPU reference takes f64 or f32", "--dtype",
           "f16");
    REJECT("bf16 on cpu", "supcon", "--dtype bf16: the CPU reference takes f64 or f32", "--dtype",
           "bf16");
    REJECT("unknown loss", "hinge",
           "unknown loss 'hinge' (expected pair, triplet, ntxent, supcon, cosine, clip or siglip)",
           NULL);
    check_rejection("no loss", (const char *const[]){"eval", "--in", "IN", "--out", "OUT", NULL},
                    "missing LOSS (pair, triplet, ntxent, supcon, cosine, clip or siglip)");
    check_rejection("no --in", (const char *const[]){"eval", "pair", "--out", "OUT", NULL},
                    "missing --in DIR");
    check_rejection("no --out", (const char *const[]){"eval", "pair", "--in", "IN", NULL},
                    "missing --out DIR");
    check_rejection("unknown command", (const char *const[]){"frobnicate", NULL},
                    "unknown command 'frobnicate'");
}

/* ---- the GPU (--device cuda) ----------------------------------------------------------------- */

static int cuda_devices(void) {
    int count = 0;
    return closs_cuda_device_count(&count) == CLOSS_STATUS_SUCCESS ? count : 0;
}

Test(cli_reject, cuda_without_a_device) {
    if (cuda_devices() > 0) cr_skip_test("a CUDA device is present");
    write_all_inputs();
    REJECT("no device", "supcon", "supcon: closs", "--device", "cuda", "--dtype", "f32");
}

/* out/<sub>/<name>.npy as float64 values (count of them). */
static void read_output(const char *sub, const char *name, double *values, int64_t count) {
    char path[192], err[256];
    snprintf(path, sizeof path, "%s/%s/%s.npy", out_dir, sub, name);
    npy_array array;
    cr_assert(npy_read(path, &array, err, sizeof err), "%s: %s", path, err);
    cr_assert_eq(array.dtype, NPY_F8, "%s", path);
    cr_assert_eq(array.count, count, "%s", path);
    memcpy(values, array.data, (size_t)count * sizeof(double));
    npy_free(&array);
}

/* Every loss through `--device cuda` against the CPU reference on the same float32-rounded
 * inputs, in each GPU dtype, with a tolerance relative to the largest reference value. In the
 * simulated tier (gpu_scale.h) each case runs in one dtype (they rotate), and the chunked path's
 * are left out. */
Test(cli_eval, cuda_matches_the_cpu) {
    const int sim = gpu_test_simulated();
    if (cuda_devices() == 0) {
        cr_assert(!sim, "CLOSS_GPU_TEST_SCALE=sim, yet the CUDA runtime reports no device: is the "
                        "simulator's libcudart.so the one loaded?");
        cr_skip_test("no CUDA device");
    }
    write_pair_inputs();
    write_tower_inputs();
    double data[CELLS];
    const char *const matrices[] = {"anchor", "positive", "negative", "z"};
    for (int i = 0; i < 4; ++i) {
        fill_random(data, CELLS, 20 + (uint64_t)i);
        write_matrix(matrices[i], data);
    }
    const int64_t labels[ROWS] = {3, -7, 3, 9, -7, 5};
    write_input("labels", NPY_I8, 1, ROWS, 0, labels);
    /* CLIP and SigLIP: a has PAIRS rows, b ROWS (its gradient PAIRS with grad_negatives=0), and
     * the scalars' gradients; every other loss ROWS rows each. */
    const char *const clip_outputs[] = {"a", "b", "logit_scale"};
    const char *const siglip_outputs[] = {"a", "b", "logit_scale", "logit_bias"};
    const struct {
        const char *loss, *parameter;
        int grad_count;
        const char *const *grads;
        int scalars;
        int64_t b_rows;
    } cases[] = {{"pair", "reduction=sum", 2, pair_grads, 0, 0},
                 {"triplet", "swap=1", 3, triplet_grads, 0, 0},
                 {"cosine", "reduction=none", 2, pair_grads, 0, 0},
                 {"ntxent", "path=chunked", 1, z_grads, 0, 0},
                 {"ntxent", "path=auto", 1, z_grads, 0, 0},
                 {"supcon", "path=chunked", 1, z_grads, 0, 0},
                 {"supcon", "reduction=none", 1, z_grads, 0, 0},
                 {"clip", "reduction=sum", 2, clip_outputs, 1, ROWS},
                 {"clip", "grad_negatives=0", 2, clip_outputs, 1, PAIRS},
                 {"clip", "path=chunked", 2, clip_outputs, 1, ROWS},
                 {"siglip", "reduction=none", 2, siglip_outputs, 2, ROWS},
                 {"siglip", "path=chunked", 2, siglip_outputs, 2, ROWS}};
    const struct {
        const char *name;
        double tolerance;
    } dtypes[] = {{"f32", 1e-5}, {"f16", 3e-3}, {"bf16", 3e-2}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; ++c) {
        if (sim && strstr(cases[c].parameter, "chunked")) {
            char what[64];
            snprintf(what, sizeof what, "eval %s %s", cases[c].loss, cases[c].parameter);
            GPU_SIM_LEAVES_OUT(what);
            continue;
        }
        char cpu_out[160], gpu_out[160];
        snprintf(cpu_out, sizeof cpu_out, "%s/cpu", out_dir);
        snprintf(gpu_out, sizeof gpu_out, "%s/gpu", out_dir);
        cli_result r;
        RUN(&r, "eval", cases[c].loss, "--in", in_dir, "--out", cpu_out, "--dtype", "f32",
            cases[c].parameter);
        cr_assert_eq(r.status, 0, "cpu %s: %s", cases[c].loss, r.err);
        const int two_tower = cases[c].b_rows > 0;
        const int64_t rows = two_tower ? PAIRS : ROWS;
        for (size_t t = 0; t < sizeof dtypes / sizeof dtypes[0]; ++t) {
            if (sim && t != c % 3) continue; /* the simulated tier: one dtype per loss */
            RUN(&r, "eval", cases[c].loss, "--in", in_dir, "--out", gpu_out, "--device", "cuda",
                "--dtype", dtypes[t].name, cases[c].parameter);
            cr_assert_eq(r.status, 0, "cuda %s %s: %s", cases[c].loss, dtypes[t].name, r.err);
            expect_json(r.out, "device", "\"cuda\"");
            const bool per_row = strstr(cases[c].parameter, "none") != NULL;
            for (int k = -1; k < cases[c].grad_count + cases[c].scalars; ++k) {
                char name[32];
                snprintf(name, sizeof name, k < 0 ? "loss" : "grad_%s",
                         k < 0 ? "" : cases[c].grads[k]);
                const int64_t count = k < 0                      ? (per_row ? rows : 1)
                                      : k >= cases[c].grad_count ? 1
                                      : k == 1 && two_tower      ? cases[c].b_rows * DIM
                                                                 : rows * DIM;
                double expected[CELLS], actual[CELLS], scale = 1e-30;
                read_output("cpu", name, expected, count);
                read_output("gpu", name, actual, count);
                for (int64_t i = 0; i < count; ++i) scale = fmax(scale, fabs(expected[i]));
                for (int64_t i = 0; i < count; ++i)
                    cr_expect_leq(fabs(actual[i] - expected[i]), dtypes[t].tolerance * scale,
                                  "%s %s %s %s[%lld]: gpu %.9g, cpu %.9g", cases[c].loss,
                                  cases[c].parameter, dtypes[t].name, name, (long long)i, actual[i],
                                  expected[i]);
            }
        }
    }
}

/* The issue #26 case through the tool: cosine, margin 0, f16 on the GPU, x1's row 2 all zeros.
 * That row's exact gradient (norms clamped at 1e-8) is about 1e7 an element, beyond f16: ±Inf with
 * the f64 answer's sign (docs/contract.md, "Numerics"); every other element finite and within f16's
 * tolerance of the CPU's f64 answer, never NaN. */
Test(cli_eval, cuda_f16_zero_row_gives_inf) {
    if (cuda_devices() == 0) cr_skip_test("no CUDA device");
    pair_inputs in = write_pair_inputs();
    for (int e = 0; e < DIM; ++e) in.x1[2 * DIM + e] = 0.0;
    write_matrix("x1", in.x1);
    char cpu_out[160], gpu_out[160];
    snprintf(cpu_out, sizeof cpu_out, "%s/cpu", out_dir);
    snprintf(gpu_out, sizeof gpu_out, "%s/gpu", out_dir);
    cli_result r;
    RUN(&r, "eval", "cosine", "--in", in_dir, "--out", cpu_out, "--dtype", "f64", "margin=0");
    cr_assert_eq(r.status, 0, "cpu: %s", r.err);
    RUN(&r, "eval", "cosine", "--in", in_dir, "--out", gpu_out, "--device", "cuda", "--dtype",
        "f16", "margin=0");
    cr_assert_eq(r.status, 0, "cuda: %s", r.err);
    for (int k = 0; k < 2; ++k) {
        char name[32];
        snprintf(name, sizeof name, "grad_%s", pair_grads[k]);
        double expected[CELLS], actual[CELLS], scale = 0.0;
        read_output("cpu", name, expected, CELLS);
        read_output("gpu", name, actual, CELLS);
        for (int i = 0; i < CELLS; ++i)
            if (fabs(expected[i]) < 65504.0) scale = fmax(scale, fabs(expected[i]));
        int infinite = 0;
        for (int i = 0; i < CELLS; ++i) {
            if (fabs(expected[i]) > 1.01 * 65520.0) {
                ++infinite;
                cr_expect(isinf(actual[i]) && (actual[i] > 0) == (expected[i] > 0),
                          "%s[%d]: %g, exact %.6g (beyond f16: ±Inf)", name, i, actual[i],
                          expected[i]);
            } else {
                cr_expect_leq(fabs(actual[i] - expected[i]), 3e-3 * scale, "%s[%d]: %g, exact %.6g",
                              name, i, actual[i], expected[i]);
            }
        }
        cr_expect_eq(infinite, k == 0 ? DIM : 0, "%s: %d elements beyond f16's range", name,
                     infinite);
    }
}

/* ---- help and version ------------------------------------------------------------------------ */

Test(cli_usage, no_arguments_prints_usage_to_stderr) {
    cli_result r;
    run_cli(&r, (const char *const[]){NULL});
    cr_assert_eq(r.status, 2);
    cr_assert_str_eq(r.out, "");
    cr_assert(strstr(r.err, "usage: closs COMMAND"), "%s", r.err);
}

Test(cli_usage, help_lists_the_commands) {
    cli_result r;
    RUN(&r, "--help");
    cr_assert_eq(r.status, 0);
    cr_assert_str_eq(r.err, "");
    cr_assert(strstr(r.out, "usage: closs COMMAND"), "%s", r.out);
    cr_assert(strstr(r.out, "\n  eval "), "%s", r.out);
    cr_assert(strstr(r.out, "\n  bench "), "%s", r.out);
}

Test(cli_usage, eval_help_lists_losses_options_and_defaults) {
    cli_result r;
    RUN(&r, "eval", "--help");
    cr_assert_eq(r.status, 0);
    cr_assert_str_eq(r.err, "");
    const char *wanted[] = {
        "usage: closs eval LOSS --in DIR --out DIR [--device cpu|cuda] [--dtype f64|f32|f16|bf16] "
        "[NAME=VALUE ...]",
        "  pair     x1, x2 (rows, dim); y (rows) in [0, 1]",
        "  triplet  anchor, positive, negative (rows, dim)",
        "  supcon   z (rows, dim); labels (rows)",
        "  clip     a (rows, dim); b (rows + negatives, dim)",
        "  siglip   a (rows, dim); b (rows + negatives, dim)",
        "logit_scale=14.2857 ",
        "logit_scale=10 ",
        "logit_bias=-10 ",
        "symmetric=1 ",
        "in_batch_negatives=1 ",
        "grad_negatives=1 ",
        "--device DEV",
        "--dtype TYPE",
        "margin=1 ",
        "distance=euclidean ",
        "distance=sqeuclidean ",
        "swap=0 ",
        "temperature=0.1 ",
        "temperature=0.07 ",
        "base_temperature=0 ",
        "normalize=1 ",
        "margin=0 ",
        "squared=0 ",
        "reduction=mean ",
        "check_inputs=0 ",
        "path=auto ",
    };
    for (size_t i = 0; i < sizeof wanted / sizeof wanted[0]; ++i)
        cr_expect(strstr(r.out, wanted[i]), "the help lacks '%s'", wanted[i]);
    /* Arguments are read in order: --help answers when it is reached. */
    RUN(&r, "eval", "pair", "--bogus", "--help");
    cr_assert_eq(r.status, 2);
    RUN(&r, "eval", "pair", "--help", "--bogus");
    cr_assert_eq(r.status, 0);
}

Test(cli_usage, version_comes_from_the_library) {
    cli_result r;
    RUN(&r, "--version");
    cr_assert_eq(r.status, 0);
    char expected[64];
    snprintf(expected, sizeof expected, "closs %s\n", closs_version_string());
    cr_assert_str_eq(r.out, expected);
    cr_assert_str_eq(r.out, "closs 0.1.0\n");
}
