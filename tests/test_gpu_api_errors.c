/* The GPU entry points check every argument before they touch the device, so their errors are
 * tested here on any machine: each bad argument gets INVALID_ARGUMENT and a message naming it; with
 * every argument valid, a NULL handle is the error (or NOT_SUPPORTED in a build without CUDA).
 * Includes the refusals of issue #14 (overlapping outputs, misaligned pointers) and the workspace
 * alignment, which need no device either. */
#include <criterion/criterion.h>
#include <limits.h>
#include <math.h>
#include <string.h>

#include "closs.h"
#include "gpu.h" /* closs_align_workspace, CLOSS_WORKSPACE_ALIGNMENT (host/, private) */

/* Never dereferenced: the checks fail before any device access. Inputs live in fake_device,
 * outputs in fake_out and fake_grad (outputs may not overlap inputs or each other). */
static float fake_device[64], fake_out[64], fake_grad[3][64];

static closs_matrix_t matrix(int64_t rows, int64_t cols) {
    return closs_matrix(fake_device, CLOSS_F32, rows, cols);
}

#define EXPECT_STATUS(call, want, argument)                                                        \
    do {                                                                                           \
        cr_expect_eq((call), (want), "%s", #call);                                                 \
        cr_expect(strstr(closs_last_error(), argument), "'%s' not named in: %s", argument,         \
                  closs_last_error());                                                             \
    } while (0)
#define EXPECT_INVALID(call, argument) EXPECT_STATUS(call, CLOSS_STATUS_INVALID_ARGUMENT, argument)

Test(gpu_api_errors, pair_arguments) {
    closs_pair_params p = CLOSS_PAIR_PARAMS_INIT;
    closs_vector_t y = closs_vector(fake_device, CLOSS_F32, 4);
    closs_grad_t g = {fake_device, 8};
    float *loss = fake_device;
    EXPECT_INVALID(
        closs_pair_forward(NULL, NULL, matrix(4, 8), matrix(4, 8), y, loss, NULL, 0, NULL),
        "params");
    EXPECT_INVALID(closs_pair_forward(NULL, &p, matrix(4, 8), matrix(5, 8), y, loss, NULL, 0, NULL),
                   "x2");
    closs_matrix_t f64 = closs_matrix(fake_device, CLOSS_F64, 4, 8);
    EXPECT_INVALID(closs_pair_forward(NULL, &p, f64, f64, y, loss, NULL, 0, NULL), "x1.dtype");
    closs_matrix_t f16 = closs_matrix(fake_device, CLOSS_F16, 4, 8);
    EXPECT_INVALID(closs_pair_forward(NULL, &p, matrix(4, 8), f16, y, loss, NULL, 0, NULL),
                   "x2.dtype");
    EXPECT_INVALID(closs_pair_forward(NULL, &p, matrix(4, 8), matrix(4, 8),
                                      closs_vector(fake_device, CLOSS_F32, 3), loss, NULL, 0, NULL),
                   "y.length");
    EXPECT_INVALID(closs_pair_forward(NULL, &p, matrix(4, 8), matrix(4, 8), y, NULL, NULL, 0, NULL),
                   "loss");
    closs_grad_t narrow = {fake_device, 7};
    EXPECT_INVALID(closs_pair_backward(NULL, &p, matrix(4, 8), matrix(4, 8), y, NULL, narrow, g,
                                       NULL, 0, NULL),
                   "grad_x1.ld");
    EXPECT_INVALID(closs_pair_forward_backward(NULL, &p, matrix(4, 8), matrix(4, 8), y, NULL, g, g,
                                               NULL, 0, NULL),
                   "loss");
    p.distance = CLOSS_DISTANCE_SQEUCLIDEAN;
    EXPECT_INVALID(closs_pair_forward(NULL, &p, matrix(4, 8), matrix(4, 8), y, loss, NULL, 0, NULL),
                   "distance");
}

Test(gpu_api_errors, triplet_and_cosine_arguments) {
    closs_triplet_params t = CLOSS_TRIPLET_PARAMS_INIT;
    closs_cosine_params c = CLOSS_COSINE_PARAMS_INIT;
    closs_grad_t g = {fake_device, 8};
    float *loss = fake_device;
    EXPECT_INVALID(closs_triplet_forward(NULL, &t, matrix(4, 8), matrix(4, 8), matrix(4, 9), loss,
                                         NULL, 0, NULL),
                   "negative");
    t.swap = 2;
    EXPECT_INVALID(closs_triplet_backward(NULL, &t, matrix(4, 8), matrix(4, 8), matrix(4, 8), NULL,
                                          g, g, g, NULL, 0, NULL),
                   "swap");
    c.margin = 1.5;
    EXPECT_INVALID(closs_cosine_forward(NULL, &c, matrix(4, 8), matrix(4, 8),
                                        closs_vector(fake_device, CLOSS_F32, 4), loss, NULL, 0,
                                        NULL),
                   "margin");
    size_t bytes = 0;
    EXPECT_INVALID(closs_cosine_workspace_size(NULL, &c, 4, 8, CLOSS_F32, &bytes), "margin");
    c.margin = 0.0;
    EXPECT_INVALID(closs_cosine_workspace_size(NULL, &c, -1, 8, CLOSS_F32, &bytes), "rows");
    EXPECT_INVALID(closs_cosine_workspace_size(NULL, &c, 4, 0, CLOSS_F32, &bytes), "dim");
    EXPECT_INVALID(closs_cosine_workspace_size(NULL, &c, 4, 8, CLOSS_I32, &bytes), "dtype");
}

/* Valid arguments: the handle is what is missing (a CUDA build) or the build has no GPU part. */
Test(gpu_api_errors, valid_arguments_reach_the_handle_check) {
    closs_pair_params p = CLOSS_PAIR_PARAMS_INIT;
    closs_grad_t g0 = {fake_grad[0], 8}, g1 = {fake_grad[1], 8};
    closs_status_t status = closs_pair_forward_backward(NULL, &p, matrix(4, 8), matrix(4, 8),
                                                        closs_vector(fake_device, CLOSS_F32, 4),
                                                        fake_out, g0, g1, NULL, 0, NULL);
    if (closs_cuda_available()) {
        cr_expect_eq(status, CLOSS_STATUS_INVALID_ARGUMENT);
        cr_expect(strstr(closs_last_error(), "handle"), "%s", closs_last_error());
    } else {
        cr_expect_eq(status, CLOSS_STATUS_NOT_SUPPORTED);
    }
    cr_expect_eq(closs_destroy(NULL), CLOSS_STATUS_SUCCESS);
    cr_expect_eq(closs_create(NULL), CLOSS_STATUS_INVALID_ARGUMENT);
}

Test(gpu_api_errors, ntxent_and_supcon_arguments) {
    closs_ntxent_params n = CLOSS_NTXENT_PARAMS_INIT;
    closs_supcon_params s = CLOSS_SUPCON_PARAMS_INIT;
    closs_vector_t labels = closs_vector(fake_device, CLOSS_I64, 4);
    closs_grad_t g = {fake_device, 8};
    float *loss = fake_device, *stats = fake_device;
    EXPECT_INVALID(closs_ntxent_forward(NULL, &n, matrix(5, 8), loss, stats, NULL, 0, NULL),
                   "z.rows");
    EXPECT_INVALID(closs_ntxent_forward_backward(NULL, &n, matrix(3, 8), loss, g, NULL, 0, NULL),
                   "z.rows");
    EXPECT_INVALID(closs_supcon_forward(NULL, &s, matrix(4, 8),
                                        closs_vector(fake_device, CLOSS_I64, 3), loss, stats, NULL,
                                        NULL, 0, NULL),
                   "labels");
    EXPECT_INVALID(closs_supcon_backward(NULL, &s, matrix(4, 8),
                                         closs_vector(fake_device, CLOSS_I32, 5), stats, NULL, g,
                                         NULL, 0, NULL),
                   "labels");
    EXPECT_INVALID(closs_supcon_forward(NULL, &s, matrix(4, 8),
                                        closs_vector(fake_device, CLOSS_F32, 4), loss, stats, NULL,
                                        NULL, 0, NULL),
                   "labels.dtype");
    EXPECT_INVALID(closs_ntxent_forward(NULL, &n, matrix(4, 8), NULL, stats, NULL, 0, NULL),
                   "loss");
    EXPECT_INVALID(
        closs_supcon_forward_backward(NULL, &s, matrix(4, 8), labels, NULL, NULL, g, NULL, 0, NULL),
        "loss");
    EXPECT_INVALID(closs_ntxent_backward(NULL, &n, matrix(4, 8), NULL, NULL, g, NULL, 0, NULL),
                   "stats");
    EXPECT_INVALID(
        closs_supcon_backward(NULL, &s, matrix(4, 8), labels, NULL, NULL, g, NULL, 0, NULL),
        "stats");
    closs_grad_t narrow = {fake_device, 7};
    EXPECT_INVALID(
        closs_ntxent_backward(NULL, &n, matrix(4, 8), stats, NULL, narrow, NULL, 0, NULL),
        "grad_z");
    EXPECT_INVALID(closs_supcon_forward_backward(NULL, &s, matrix(4, 8), labels, loss, NULL, narrow,
                                                 NULL, 0, NULL),
                   "grad_z");
    n.path = (closs_path_t)3;
    EXPECT_INVALID(closs_ntxent_forward(NULL, &n, matrix(4, 8), loss, stats, NULL, 0, NULL),
                   "path");
    size_t bytes = 0;
    EXPECT_INVALID(closs_ntxent_workspace_size(NULL, &n, 4, 8, CLOSS_F32, &bytes), "path");
    s.path = (closs_path_t)-1;
    EXPECT_INVALID(
        closs_supcon_backward(NULL, &s, matrix(4, 8), labels, stats, NULL, g, NULL, 0, NULL),
        "path");
}

/* Every NT-Xent and SupCon entry point with valid arguments (stats NULL in a forward call and
 * valid NULL are allowed): the handle is what is missing, or the build has no GPU part. */
#define EXPECT_HANDLE_CHECK(call)                                                                  \
    do {                                                                                           \
        closs_status_t status_ = (call);                                                           \
        if (closs_cuda_available()) {                                                              \
            cr_expect_eq(status_, CLOSS_STATUS_INVALID_ARGUMENT, "%s", #call);                     \
            cr_expect(strstr(closs_last_error(), "handle"), "%s: %s", #call, closs_last_error());  \
        } else {                                                                                   \
            cr_expect_eq(status_, CLOSS_STATUS_NOT_SUPPORTED, "%s: %s", #call,                     \
                         closs_last_error());                                                      \
        }                                                                                          \
    } while (0)

/* The NT-Xent and SupCon workspace queries are arithmetic: no handle needed (closs.h). */
Test(gpu_api_errors, contrastive_workspace_size_needs_no_handle) {
    closs_ntxent_params n = CLOSS_NTXENT_PARAMS_INIT;
    closs_supcon_params s = CLOSS_SUPCON_PARAMS_INIT;
    const closs_status_t want =
        closs_cuda_available() ? CLOSS_STATUS_SUCCESS : CLOSS_STATUS_NOT_SUPPORTED;
    size_t bytes = 0;
    cr_expect_eq(closs_ntxent_workspace_size(NULL, &n, 4, 8, CLOSS_F32, &bytes), want, "%s",
                 closs_last_error());
    cr_expect_eq(closs_supcon_workspace_size(NULL, &s, 4, 8, CLOSS_BF16, &bytes), want, "%s",
                 closs_last_error());
    if (closs_cuda_available()) cr_expect_gt(bytes, 0);
}

Test(gpu_api_errors, contrastive_valid_arguments_reach_the_handle_check) {
    closs_ntxent_params n = CLOSS_NTXENT_PARAMS_INIT;
    closs_supcon_params s = CLOSS_SUPCON_PARAMS_INIT;
    static int64_t fake_valid[1];
    closs_vector_t labels = closs_vector(fake_device, CLOSS_I32, 4);
    closs_grad_t g = {fake_grad[0], 8};
    float *loss = fake_out, *stats = fake_grad[1];
    EXPECT_HANDLE_CHECK(closs_ntxent_forward(NULL, &n, matrix(4, 8), loss, NULL, NULL, 0, NULL));
    EXPECT_HANDLE_CHECK(closs_ntxent_forward(NULL, &n, matrix(4, 8), loss, stats, NULL, 0, NULL));
    EXPECT_HANDLE_CHECK(
        closs_ntxent_backward(NULL, &n, matrix(4, 8), stats, NULL, g, NULL, 0, NULL));
    EXPECT_HANDLE_CHECK(
        closs_ntxent_forward_backward(NULL, &n, matrix(4, 8), loss, g, NULL, 0, NULL));
    EXPECT_HANDLE_CHECK(
        closs_supcon_forward(NULL, &s, matrix(4, 8), labels, loss, NULL, NULL, NULL, 0, NULL));
    EXPECT_HANDLE_CHECK(closs_supcon_forward(NULL, &s, matrix(4, 8), labels, loss, stats,
                                             fake_valid, NULL, 0, NULL));
    EXPECT_HANDLE_CHECK(
        closs_supcon_backward(NULL, &s, matrix(4, 8), labels, stats, NULL, g, NULL, 0, NULL));
    EXPECT_HANDLE_CHECK(closs_supcon_forward_backward(NULL, &s, matrix(3, 8),
                                                      closs_vector(fake_device, CLOSS_I64, 3), loss,
                                                      NULL, g, NULL, 0, NULL));
}

/* ---- issue #14: what a caller following the header could otherwise get wrong ----------------- */

/* Valid arguments, whatever the build: past every argument check (the handle check or, without
 * CUDA, NOT_SUPPORTED comes next). */
static int passed_argument_checks(closs_status_t status) {
    if (!closs_cuda_available()) return status == CLOSS_STATUS_NOT_SUPPORTED;
    return status == CLOSS_STATUS_INVALID_ARGUMENT && strstr(closs_last_error(), "handle");
}

#define EXPECT_OVERLAP(call, output, input)                                                        \
    do {                                                                                           \
        EXPECT_INVALID(call, output);                                                              \
        cr_expect(strstr(closs_last_error(), "overlaps") && strstr(closs_last_error(), input),     \
                  "'%s' overlapping '%s' not said in: %s", output, input, closs_last_error());     \
    } while (0)

/* Every loss refuses a gradient (or loss) that shares any byte with an input or another output,
 * by address range (a partial overlap too), and accepts buffers that only touch. Everything is
 * carved from one array, so that the ranges are where the test says. */
static float arena[1024];
enum { X0 = 0, X1 = 64, X2 = 128, Y = 192, UP = 224, OUT = 256, G0 = 320, G1 = 384, G2 = 448 };

Test(gpu_api_errors, overlapping_outputs_are_refused) {
    float *const a = arena;
    closs_matrix_t m[3] = {closs_matrix(a + X0, CLOSS_F32, 4, 8),
                           closs_matrix(a + X1, CLOSS_F32, 4, 8),
                           closs_matrix(a + X2, CLOSS_F32, 4, 8)};
    closs_vector_t labels = closs_vector(a + Y, CLOSS_F32, 4);
    closs_grad_t g[3] = {{a + G0, 8}, {a + G1, 8}, {a + G2, 8}};
    const closs_grad_t none = {NULL, 0};
    closs_pair_params pair = CLOSS_PAIR_PARAMS_INIT;
    closs_triplet_params triplet = CLOSS_TRIPLET_PARAMS_INIT;
    closs_cosine_params cosine = CLOSS_COSINE_PARAMS_INIT;

    EXPECT_OVERLAP(closs_pair_backward(NULL, &pair, m[0], m[1], labels, NULL,
                                       (closs_grad_t){a + X1, 8}, g[1], NULL, 0, NULL),
                   "grad_x1", "x2");
    /* A gradient whose first row is x1's last element: overlap by range, not by pointer. */
    EXPECT_OVERLAP(closs_pair_backward(NULL, &pair, m[0], m[1], labels, NULL, g[0],
                                       (closs_grad_t){a + X0 + 31, 8}, NULL, 0, NULL),
                   "grad_x2", "x1");
    EXPECT_OVERLAP(closs_pair_forward_backward(NULL, &pair, m[0], m[1], labels, a + OUT, g[0],
                                               (closs_grad_t){a + G0 + 24, 8}, NULL, 0, NULL),
                   "grad_x1", "grad_x2");
    EXPECT_OVERLAP(closs_pair_forward(NULL, &pair, m[0], m[1], labels, a + Y + 3, NULL, 0, NULL),
                   "loss", "y");
    EXPECT_OVERLAP(closs_pair_forward_backward(NULL, &pair, m[0], m[1], labels, a + G1 + 31, g[0],
                                               g[1], NULL, 0, NULL),
                   "grad_x2", "loss");
    EXPECT_OVERLAP(closs_triplet_backward(NULL, &triplet, m[0], m[1], m[2], NULL, g[0], g[1],
                                          (closs_grad_t){a + X0 + 16, 8}, NULL, 0, NULL),
                   "grad_negative", "anchor");
    EXPECT_OVERLAP(closs_triplet_backward(NULL, &triplet, m[0], m[1], m[2], a + G2 + 5, g[0], g[1],
                                          g[2], NULL, 0, NULL),
                   "grad_negative", "upstream");
    EXPECT_OVERLAP(closs_cosine_forward_backward(NULL, &cosine, m[0], m[1], labels, a + OUT, g[0],
                                                 (closs_grad_t){a + Y - 30, 8}, NULL, 0, NULL),
                   "grad_x2", "y");
    cosine.reduction = CLOSS_REDUCTION_NONE; /* upstream then holds one float per row */
    EXPECT_OVERLAP(closs_cosine_backward(NULL, &cosine, m[0], m[1], labels, a + G1 - 3, g[0], g[1],
                                         NULL, 0, NULL),
                   "grad_x2", "upstream");

    /* A gradient not asked for (data NULL) overlaps nothing; buffers that touch do not overlap:
     * a gradient in the rows right after its input's. */
    cr_expect(passed_argument_checks(closs_pair_backward(NULL, &pair, m[0], m[1], labels, a + UP,
                                                         g[0], none, NULL, 0, NULL)),
              "%s", closs_last_error());
    closs_matrix_t first_rows = closs_matrix(a + X0, CLOSS_F32, 2, 8);
    cr_expect(passed_argument_checks(closs_pair_backward(
                  NULL, &pair, first_rows, closs_matrix(a + X1, CLOSS_F32, 2, 8),
                  closs_vector(a + Y, CLOSS_F32, 2), NULL, (closs_grad_t){a + X0 + 16, 8}, none,
                  NULL, 0, NULL)),
              "a gradient right after its input: %s", closs_last_error());
}

Test(gpu_api_errors, contrastive_overlapping_outputs_are_refused) {
    float *const a = arena;
    int64_t *const labels = (int64_t *)(void *)(a + Y); /* 4 × 8 bytes: Y … Y + 8 */
    float *const stats = a + UP, *const upstream = a + 600;
    closs_ntxent_params n = CLOSS_NTXENT_PARAMS_INIT;
    closs_supcon_params s = CLOSS_SUPCON_PARAMS_INIT;
    closs_matrix_t z = closs_matrix(a + X0, CLOSS_F32, 4, 8);
    closs_vector_t l = closs_vector(labels, CLOSS_I64, 4);
    EXPECT_OVERLAP(closs_ntxent_forward_backward(NULL, &n, z, a + OUT, (closs_grad_t){a + X0, 8},
                                                 NULL, 0, NULL),
                   "grad_z", "z");
    EXPECT_OVERLAP(closs_ntxent_backward(NULL, &n, z, stats, NULL, (closs_grad_t){stats - 30, 8},
                                         NULL, 0, NULL),
                   "grad_z", "stats");
    EXPECT_OVERLAP(closs_ntxent_backward(NULL, &n, z, stats, upstream,
                                         (closs_grad_t){upstream - 31, 8}, NULL, 0, NULL),
                   "grad_z", "upstream");
    EXPECT_OVERLAP(closs_ntxent_forward(NULL, &n, z, a + OUT + 3, a + OUT, NULL, 0, NULL), "loss",
                   "stats");
    EXPECT_OVERLAP(closs_supcon_backward(NULL, &s, z, l, stats, NULL, (closs_grad_t){a + Y + 4, 8},
                                         NULL, 0, NULL),
                   "grad_z", "labels");
    EXPECT_OVERLAP(closs_supcon_forward(NULL, &s, z, l, a + OUT, stats,
                                        (int64_t *)(void *)(a + X0 + 2), NULL, 0, NULL),
                   "valid", "z");
    cr_expect(passed_argument_checks(closs_supcon_forward_backward(
                  NULL, &s, z, l, a + OUT, (int64_t *)(void *)(a + G1), (closs_grad_t){a + G0, 8},
                  NULL, 0, NULL)),
              "%s", closs_last_error());
}

/* A caller's workspace may not share a byte with an input or an output either (the kernels write
 * it while they read the inputs); one that only touches them is fine, and NULL (the handle's own)
 * overlaps nothing. */
Test(gpu_api_errors, workspace_apart_from_inputs_and_outputs) {
    float *const a = arena;
    closs_matrix_t m[2] = {closs_matrix(a + X0, CLOSS_F32, 4, 8),
                           closs_matrix(a + X1, CLOSS_F32, 4, 8)};
    closs_vector_t y = closs_vector(a + Y, CLOSS_F32, 4);
    closs_grad_t g[2] = {{a + G0, 8}, {a + G1, 8}};
    closs_pair_params pair = CLOSS_PAIR_PARAMS_INIT;
    closs_ntxent_params n = CLOSS_NTXENT_PARAMS_INIT;
    EXPECT_OVERLAP(closs_pair_forward_backward(NULL, &pair, m[0], m[1], y, a + OUT, g[0], g[1],
                                               a + X1 + 8, 64, NULL),
                   "workspace", "x2");
    EXPECT_OVERLAP(closs_pair_forward_backward(NULL, &pair, m[0], m[1], y, a + OUT, g[0], g[1],
                                               a + G1 - 4, 64, NULL),
                   "workspace", "grad_x2");
    EXPECT_OVERLAP(closs_ntxent_forward(NULL, &n, m[0], a + OUT, a + UP, a + UP - 15, 64, NULL),
                   "workspace", "stats");
    EXPECT_OVERLAP(
        closs_ntxent_backward(NULL, &n, m[0], a + UP, NULL, g[0], a + X0 + 31, 4096, NULL),
        "workspace", "z");
    cr_expect(passed_argument_checks(closs_pair_forward_backward(
                  NULL, &pair, m[0], m[1], y, a + OUT, g[0], g[1], a + G1 + 32, 64, NULL)),
              "a workspace right after the last gradient: %s", closs_last_error());
    cr_expect(passed_argument_checks(
                  closs_ntxent_forward(NULL, &n, m[0], a + OUT, a + UP, NULL, 0, NULL)),
              "the handle's workspace: %s", closs_last_error());
}

/* A pointer not aligned to its element size is refused (on the GPU it would fault and take the
 * CUDA context with it); one element past a 16-byte boundary is fine. */
Test(gpu_api_errors, data_pointers_aligned_to_their_element) {
    static _Alignas(16) unsigned char bytes[4][256];
    closs_pair_params pair = CLOSS_PAIR_PARAMS_INIT;
    closs_ntxent_params n = CLOSS_NTXENT_PARAMS_INIT;
    closs_supcon_params s = CLOSS_SUPCON_PARAMS_INIT;
    closs_vector_t y = closs_vector(bytes[2], CLOSS_F32, 4);
    closs_grad_t g1 = {bytes[3], 8}, g_odd = {bytes[3] + 2, 8};
    float *loss = (float *)(void *)(bytes[2] + 64);
    EXPECT_INVALID(closs_pair_forward(NULL, &pair, closs_matrix(bytes[0] + 1, CLOSS_F32, 4, 8),
                                      closs_matrix(bytes[1], CLOSS_F32, 4, 8), y, loss, NULL, 0,
                                      NULL),
                   "x1.data");
    EXPECT_INVALID(closs_pair_forward(NULL, &pair, closs_matrix(bytes[0] + 2, CLOSS_BF16, 4, 8),
                                      closs_matrix(bytes[1] + 3, CLOSS_BF16, 4, 8), y, loss, NULL,
                                      0, NULL),
                   "x2.data");
    EXPECT_INVALID(closs_pair_forward(NULL, &pair, closs_matrix(bytes[0], CLOSS_F32, 4, 8),
                                      closs_matrix(bytes[1], CLOSS_F32, 4, 8),
                                      closs_vector(bytes[2] + 2, CLOSS_F32, 4), loss, NULL, 0,
                                      NULL),
                   "y.data");
    EXPECT_INVALID(closs_pair_forward(NULL, &pair, closs_matrix(bytes[0], CLOSS_F32, 4, 8),
                                      closs_matrix(bytes[1], CLOSS_F32, 4, 8), y,
                                      (float *)(void *)(bytes[2] + 66), NULL, 0, NULL),
                   "loss");
    EXPECT_INVALID(closs_pair_backward(NULL, &pair, closs_matrix(bytes[0], CLOSS_F32, 4, 8),
                                       closs_matrix(bytes[1], CLOSS_F32, 4, 8), y, NULL, g1,
                                       (closs_grad_t){bytes[3] + 130, 8}, NULL, 0, NULL),
                   "grad_x2.data");
    EXPECT_INVALID(closs_pair_backward(NULL, &pair, closs_matrix(bytes[0], CLOSS_F32, 4, 8),
                                       closs_matrix(bytes[1], CLOSS_F32, 4, 8), y,
                                       (const float *)(void *)(bytes[2] + 129), g1,
                                       (closs_grad_t){NULL, 0}, NULL, 0, NULL),
                   "upstream");
    EXPECT_INVALID(closs_ntxent_forward_backward(NULL, &n,
                                                 closs_matrix(bytes[0] + 2, CLOSS_F32, 4, 8), loss,
                                                 g1, NULL, 0, NULL),
                   "z.data");
    EXPECT_INVALID(closs_supcon_forward(NULL, &s, closs_matrix(bytes[0], CLOSS_F16, 4, 8),
                                        closs_vector(bytes[1] + 4, CLOSS_I64, 4), loss, NULL, NULL,
                                        NULL, 0, NULL),
                   "labels.data");
    EXPECT_INVALID(closs_supcon_forward(NULL, &s, closs_matrix(bytes[0], CLOSS_F16, 4, 8),
                                        closs_vector(bytes[1], CLOSS_I64, 4), loss, NULL,
                                        (int64_t *)(void *)(bytes[2] + 4), NULL, 0, NULL),
                   "valid");
    /* f16 and bf16 one element past a 16-byte boundary: aligned to the element, accepted. */
    cr_expect(passed_argument_checks(
                  closs_pair_backward(NULL, &pair, closs_matrix(bytes[0] + 2, CLOSS_F16, 4, 8),
                                      closs_matrix(bytes[1] + 2, CLOSS_F16, 4, 8), y, NULL, g_odd,
                                      (closs_grad_t){NULL, 0}, NULL, 0, NULL)),
              "%s", closs_last_error());
}

/* A caller's workspace at any address: the queried size (layout + 256 bytes of slack) is enough
 * at every offset, the call works in the aligned part, and one byte less is refused. */
Test(gpu_api_errors, workspace_aligned_up_inside_the_slack) {
    static _Alignas(256) unsigned char arena[4096];
    const size_t layout = 1024, query = closs_workspace_query(layout);
    cr_expect_eq(query, layout + CLOSS_WORKSPACE_ALIGNMENT);
    const size_t offsets[] = {0, 1, 255, 256, 257};
    for (size_t i = 0; i < sizeof offsets / sizeof offsets[0]; ++i) {
        unsigned char *workspace = arena + offsets[i];
        void *aligned = NULL;
        cr_expect_eq(closs_align_workspace(workspace, query, layout, &aligned),
                     CLOSS_STATUS_SUCCESS, "offset %zu: %s", offsets[i], closs_last_error());
        cr_expect_eq((uintptr_t)aligned % CLOSS_WORKSPACE_ALIGNMENT, 0, "offset %zu", offsets[i]);
        cr_expect((unsigned char *)aligned >= workspace &&
                      (unsigned char *)aligned + layout <= workspace + query,
                  "offset %zu: the aligned layout leaves the workspace", offsets[i]);
        aligned = NULL;
        cr_expect_eq(closs_align_workspace(workspace, query - 1, layout, &aligned),
                     CLOSS_STATUS_WORKSPACE_TOO_SMALL, "offset %zu", offsets[i]);
        cr_expect(strstr(closs_last_error(), "workspace_bytes"), "%s", closs_last_error());
        cr_expect_null(aligned, "nothing written on failure");
    }
}

/* ---- CLIP and SigLIP (issue #23) --------------------------------------------------------------
 * a: 4 × 8 in fake_device[0, 32), b: 6 × 8 (N = 4, K = 2) in arena; outputs in fake_out and
 * fake_grad. */
static closs_matrix_t tower_b(void) { return closs_matrix(arena + 512, CLOSS_F32, 6, 8); }

Test(gpu_api_errors, two_tower_arguments) {
    closs_clip_params c = CLOSS_CLIP_PARAMS_INIT;
    closs_siglip_params s = CLOSS_SIGLIP_PARAMS_INIT;
    const closs_matrix_t a = matrix(4, 8), b = tower_b();
    closs_grad_t ga = {fake_grad[0], 8}, gb = {fake_grad[1], 8}, none = {NULL, 0};
    float *loss = fake_out, *stats = fake_out + 8, *scalar = fake_out + 32;
    size_t bytes = 0;
    /* the parameters */
    EXPECT_INVALID(closs_clip_forward(NULL, NULL, a, b, NULL, loss, NULL, NULL, NULL, 0, NULL),
                   "params");
    c.logit_scale = 0.0;
    EXPECT_INVALID(closs_clip_forward(NULL, &c, a, b, NULL, loss, NULL, NULL, NULL, 0, NULL),
                   "logit_scale");
    c = (closs_clip_params)CLOSS_CLIP_PARAMS_INIT;
    c.in_batch_negatives = 0; /* with symmetric = 1 */
    EXPECT_INVALID(
        closs_clip_forward_backward(NULL, &c, a, b, NULL, loss, ga, gb, scalar, NULL, 0, NULL),
        "symmetric");
    c = (closs_clip_params)CLOSS_CLIP_PARAMS_INIT;
    s.logit_bias = INFINITY;
    EXPECT_INVALID(closs_siglip_forward(NULL, &s, a, b, NULL, NULL, loss, NULL, 0, NULL),
                   "logit_bias");
    s = (closs_siglip_params)CLOSS_SIGLIP_PARAMS_INIT;
    s.grad_negatives = 2;
    EXPECT_INVALID(
        closs_siglip_backward(NULL, &s, a, b, NULL, NULL, NULL, ga, gb, NULL, NULL, NULL, 0, NULL),
        "grad_negatives");
    s.grad_negatives = 1;
    c.path = (closs_path_t)7;
    EXPECT_INVALID(closs_clip_workspace_size(NULL, &c, 4, 6, 8, CLOSS_F32, &bytes), "path");
    c.path = CLOSS_PATH_AUTO;
    c.reduction = (closs_reduction_t)5;
    EXPECT_INVALID(closs_clip_forward(NULL, &c, a, b, NULL, loss, NULL, NULL, NULL, 0, NULL),
                   "reduction");
    c.reduction = CLOSS_REDUCTION_MEAN;
    /* the towers */
    EXPECT_INVALID(closs_clip_forward(NULL, &c, closs_matrix(fake_device, CLOSS_F64, 4, 8), b, NULL,
                                      loss, NULL, NULL, NULL, 0, NULL),
                   "a.dtype");
    EXPECT_INVALID(
        closs_clip_forward(NULL, &c, matrix(0, 8), b, NULL, loss, NULL, NULL, NULL, 0, NULL),
        "a.rows");
    EXPECT_INVALID(closs_siglip_forward(NULL, &s, a, closs_matrix(arena + 512, CLOSS_BF16, 6, 8),
                                        NULL, NULL, loss, NULL, 0, NULL),
                   "b.dtype");
    EXPECT_INVALID(closs_siglip_forward(NULL, &s, a, closs_matrix(arena + 512, CLOSS_F32, 6, 7),
                                        NULL, NULL, loss, NULL, 0, NULL),
                   "b.cols");
    EXPECT_INVALID(closs_clip_forward(NULL, &c, a, closs_matrix(arena + 512, CLOSS_F32, 3, 8), NULL,
                                      loss, NULL, NULL, NULL, 0, NULL),
                   "b.rows");
    EXPECT_INVALID(closs_clip_forward(NULL, &c, closs_matrix_ld(fake_device, CLOSS_F32, 4, 8, 7), b,
                                      NULL, loss, NULL, NULL, NULL, 0, NULL),
                   "a.ld");
    /* the outputs and the statistics */
    EXPECT_INVALID(closs_clip_forward(NULL, &c, a, b, NULL, NULL, stats, NULL, NULL, 0, NULL),
                   "loss");
    EXPECT_INVALID(closs_siglip_forward_backward(NULL, &s, a, b, NULL, NULL, NULL, ga, gb, NULL,
                                                 NULL, NULL, 0, NULL),
                   "loss");
    EXPECT_INVALID(
        closs_clip_backward(NULL, &c, a, b, NULL, NULL, stats, NULL, ga, gb, NULL, NULL, 0, NULL),
        "row_stats");
    EXPECT_INVALID(
        closs_clip_backward(NULL, &c, a, b, NULL, stats, NULL, NULL, ga, gb, NULL, NULL, 0, NULL),
        "column_stats");
    EXPECT_INVALID(closs_clip_backward(NULL, &c, a, b, NULL, stats, stats + 4, NULL, none, none,
                                       NULL, NULL, 0, NULL),
                   "grad_a.data");
    EXPECT_INVALID(closs_siglip_backward(NULL, &s, a, b, NULL, NULL, NULL, none, none, NULL, NULL,
                                         NULL, 0, NULL),
                   "grad_logit_bias");
    EXPECT_INVALID(closs_clip_forward_backward(NULL, &c, a, b, NULL, loss,
                                               (closs_grad_t){fake_grad[0], 7}, gb, NULL, NULL, 0,
                                               NULL),
                   "grad_a.ld");
    EXPECT_INVALID(closs_siglip_forward_backward(NULL, &s, a, b, NULL, NULL, loss, ga,
                                                 (closs_grad_t){fake_grad[1], 4}, NULL, NULL, NULL,
                                                 0, NULL),
                   "grad_b.ld");
    /* the row ranges (N = 4, K = 2) */
    c.row_begin = 4, c.row_count = 1;
    EXPECT_INVALID(closs_clip_forward(NULL, &c, a, b, NULL, loss, NULL, NULL, NULL, 0, NULL),
                   "row_begin");
    c.row_begin = 1, c.row_count = 4;
    EXPECT_INVALID(closs_clip_forward(NULL, &c, a, b, NULL, loss, NULL, NULL, NULL, 0, NULL),
                   "row_count");
    c.row_count = 2, c.negatives_begin = 3;
    EXPECT_INVALID(closs_clip_forward(NULL, &c, a, b, NULL, loss, NULL, NULL, NULL, 0, NULL),
                   "negatives_begin");
    c.negatives_begin = 1, c.negatives_count = 2;
    EXPECT_INVALID(closs_clip_forward(NULL, &c, a, b, NULL, loss, NULL, NULL, NULL, 0, NULL),
                   "negatives_count");
    c.negatives_count = 1, c.grad_negatives = 0;
    EXPECT_INVALID(closs_clip_forward(NULL, &c, a, b, NULL, loss, NULL, NULL, NULL, 0, NULL),
                   "negatives_count");
    EXPECT_INVALID(closs_clip_workspace_size(NULL, &c, 4, 6, 8, CLOSS_F32, &bytes),
                   "negatives_count");
    s.negatives_count = 1; /* with the whole batch */
    EXPECT_INVALID(closs_siglip_forward(NULL, &s, a, b, NULL, NULL, loss, NULL, 0, NULL),
                   "negatives_begin");
    s.negatives_count = 0;
    c = (closs_clip_params)CLOSS_CLIP_PARAMS_INIT;
    /* the workspace query */
    EXPECT_INVALID(closs_clip_workspace_size(NULL, &c, 0, 6, 8, CLOSS_F32, &bytes), "pairs");
    EXPECT_INVALID(closs_clip_workspace_size(NULL, &c, 4, 3, 8, CLOSS_F32, &bytes), "rows_b");
    EXPECT_INVALID(closs_siglip_workspace_size(NULL, &s, 4, 6, 0, CLOSS_F32, &bytes), "dim");
    EXPECT_INVALID(closs_siglip_workspace_size(NULL, &s, 4, 6, 8, CLOSS_F64, &bytes), "dtype");
    EXPECT_INVALID(closs_siglip_workspace_size(NULL, &s, 4, 6, 8, CLOSS_F32, NULL), "bytes");
}

Test(gpu_api_errors, two_tower_pointers_aligned_to_their_element) {
    static _Alignas(16) unsigned char bytes[4][256];
    closs_clip_params c = CLOSS_CLIP_PARAMS_INIT;
    closs_siglip_params s = CLOSS_SIGLIP_PARAMS_INIT;
    const closs_matrix_t a = closs_matrix(bytes[0], CLOSS_F32, 4, 8), b = tower_b();
    closs_grad_t ga = {bytes[2], 8};
    float *loss = (float *)(void *)(bytes[3]), *stats = (float *)(void *)(bytes[3] + 64);
    const void *odd = bytes[3] + 130; /* 2 bytes past a float */
    EXPECT_INVALID(closs_clip_forward(NULL, &c, closs_matrix(bytes[0] + 2, CLOSS_F32, 4, 8), b,
                                      NULL, loss, NULL, NULL, NULL, 0, NULL),
                   "a.data");
    EXPECT_INVALID(closs_siglip_forward(NULL, &s, closs_matrix(bytes[0], CLOSS_BF16, 4, 8),
                                        closs_matrix(bytes[1] + 1, CLOSS_BF16, 6, 8), NULL, NULL,
                                        loss, NULL, 0, NULL),
                   "b.data");
    EXPECT_INVALID(closs_clip_forward(NULL, &c, a, b, odd, loss, NULL, NULL, NULL, 0, NULL),
                   "logit_scale");
    EXPECT_INVALID(closs_siglip_forward(NULL, &s, a, b, NULL, odd, loss, NULL, 0, NULL),
                   "logit_bias");
    EXPECT_INVALID(closs_clip_forward(NULL, &c, a, b, NULL, (float *)(void *)(bytes[3] + 1), NULL,
                                      NULL, NULL, 0, NULL),
                   "loss");
    EXPECT_INVALID(closs_clip_forward(NULL, &c, a, b, NULL, loss, (float *)(void *)(bytes[3] + 66),
                                      NULL, NULL, 0, NULL),
                   "row_stats");
    EXPECT_INVALID(closs_clip_backward(NULL, &c, a, b, NULL, stats, stats + 8, odd, ga,
                                       (closs_grad_t){NULL, 0}, NULL, NULL, 0, NULL),
                   "upstream");
    EXPECT_INVALID(closs_clip_forward_backward(NULL, &c, a, b, NULL, loss,
                                               (closs_grad_t){bytes[2] + 2, 8},
                                               (closs_grad_t){NULL, 0}, NULL, NULL, 0, NULL),
                   "grad_a.data");
    EXPECT_INVALID(closs_siglip_backward(NULL, &s, a, b, NULL, NULL, NULL, ga,
                                         (closs_grad_t){NULL, 0}, (float *)(void *)(bytes[3] + 3),
                                         NULL, NULL, 0, NULL),
                   "grad_logit_scale");
    EXPECT_INVALID(closs_siglip_backward(NULL, &s, a, b, NULL, NULL, NULL, ga,
                                         (closs_grad_t){NULL, 0}, NULL,
                                         (float *)(void *)(bytes[3] + 7), NULL, 0, NULL),
                   "grad_logit_bias");
}

/* Outputs that share a byte with an input or another output, the device scalars included. */
Test(gpu_api_errors, two_tower_overlapping_outputs_are_refused) {
    float *const w = arena;
    closs_clip_params c = CLOSS_CLIP_PARAMS_INIT;
    closs_siglip_params s = CLOSS_SIGLIP_PARAMS_INIT;
    const closs_matrix_t a = closs_matrix(w + X0, CLOSS_F32, 4, 8), b = tower_b(); /* b: 512-560 */
    closs_grad_t ga = {w + G0, 8}, gb = {w + 640, 8};
    float *const scale = w + Y, *const bias = w + Y + 1, *const stats = w + UP;
    EXPECT_OVERLAP(closs_clip_forward_backward(NULL, &c, a, b, scale, w + OUT,
                                               (closs_grad_t){w + X0 + 24, 8}, gb, NULL, NULL, 0,
                                               NULL),
                   "grad_a", "a");
    EXPECT_OVERLAP(closs_clip_forward_backward(NULL, &c, a, b, scale, w + OUT, ga,
                                               (closs_grad_t){w + 512 + 40, 8}, NULL, NULL, 0,
                                               NULL),
                   "grad_b", "b");
    EXPECT_OVERLAP(
        closs_clip_forward_backward(NULL, &c, a, b, scale, w + OUT, ga, gb, scale, NULL, 0, NULL),
        "grad_logit_scale", "logit_scale");
    EXPECT_OVERLAP(
        closs_clip_forward(NULL, &c, a, b, NULL, stats + 3, stats, stats + 4, NULL, 0, NULL),
        "row_stats", "loss");
    EXPECT_OVERLAP(closs_clip_backward(NULL, &c, a, b, NULL, stats, stats + 4, NULL, ga,
                                       (closs_grad_t){stats + 6, 8}, NULL, NULL, 0, NULL),
                   "grad_b", "column_stats");
    EXPECT_OVERLAP(closs_siglip_forward_backward(NULL, &s, a, b, scale, bias, w + OUT, ga, gb, bias,
                                                 NULL, NULL, 0, NULL),
                   "grad_logit_scale", "logit_bias");
    EXPECT_OVERLAP(closs_siglip_forward_backward(NULL, &s, a, b, scale, bias, w + OUT, ga, gb,
                                                 w + OUT + 2, w + OUT + 2, NULL, 0, NULL),
                   "grad_logit_bias", "grad_logit_scale");
    s.reduction = CLOSS_REDUCTION_NONE; /* upstream: one float per pair */
    EXPECT_OVERLAP(closs_siglip_backward(NULL, &s, a, b, NULL, NULL, w + G0 - 3, ga, gb, NULL, NULL,
                                         NULL, 0, NULL),
                   "grad_a", "upstream");
    EXPECT_OVERLAP(closs_siglip_forward(NULL, &s, a, b, NULL, NULL, w + OUT, w + 515, 64, NULL),
                   "workspace", "b");
    /* touching is not overlapping; a frozen tower (data NULL) overlaps nothing */
    cr_expect(passed_argument_checks(closs_siglip_forward_backward(
                  NULL, &s, a, b, scale, bias, w + OUT, (closs_grad_t){w + X0 + 32, 8},
                  (closs_grad_t){NULL, 0}, w + Y + 2, NULL, NULL, 0, NULL)),
              "%s", closs_last_error());
}

/* Every CLIP and SigLIP entry point with valid arguments (NULL statistics in a forward, NULL
 * device scalars, a frozen tower) reaches the handle check; the queries need no handle. */
Test(gpu_api_errors, two_tower_valid_arguments_reach_the_handle_check) {
    closs_clip_params c = CLOSS_CLIP_PARAMS_INIT;
    closs_siglip_params s = CLOSS_SIGLIP_PARAMS_INIT;
    const closs_matrix_t a = matrix(4, 8), b = tower_b();
    closs_grad_t ga = {fake_grad[0], 8}, gb = {fake_grad[1], 8}, none = {NULL, 0};
    float *loss = fake_out, *stats = fake_out + 8, *scalars = fake_out + 32;
    const float *upstream = fake_grad[2];
    EXPECT_HANDLE_CHECK(closs_clip_forward(NULL, &c, a, b, NULL, loss, NULL, NULL, NULL, 0, NULL));
    EXPECT_HANDLE_CHECK(
        closs_clip_forward(NULL, &c, a, b, fake_grad[2], loss, stats, stats + 4, NULL, 0, NULL));
    EXPECT_HANDLE_CHECK(closs_clip_backward(NULL, &c, a, b, NULL, stats, stats + 4, upstream, ga,
                                            none, scalars, NULL, 0, NULL));
    EXPECT_HANDLE_CHECK(
        closs_clip_forward_backward(NULL, &c, a, b, NULL, loss, none, gb, NULL, NULL, 0, NULL));
    c.symmetric = 0, c.in_batch_negatives = 0, c.grad_negatives = 0; /* MoCo: no column stats */
    EXPECT_HANDLE_CHECK(closs_clip_backward(NULL, &c, a, b, NULL, stats, NULL, NULL, none, none,
                                            scalars, NULL, 0, NULL));
    c.row_begin = 1, c.row_count = 2; /* a rank's share */
    EXPECT_HANDLE_CHECK(
        closs_clip_forward_backward(NULL, &c, a, b, NULL, loss, ga, gb, scalars, NULL, 0, NULL));
    EXPECT_HANDLE_CHECK(closs_siglip_forward(NULL, &s, a, b, NULL, NULL, loss, NULL, 0, NULL));
    EXPECT_HANDLE_CHECK(closs_siglip_backward(NULL, &s, a, b, NULL, NULL, upstream, none, none,
                                              NULL, scalars, NULL, 0, NULL));
    EXPECT_HANDLE_CHECK(closs_siglip_forward_backward(NULL, &s, a, b, upstream, upstream + 1, loss,
                                                      ga, gb, scalars, scalars + 1, NULL, 0, NULL));
    const closs_status_t want =
        closs_cuda_available() ? CLOSS_STATUS_SUCCESS : CLOSS_STATUS_NOT_SUPPORTED;
    size_t bytes = 0;
    cr_expect_eq(closs_clip_workspace_size(NULL, &c, 4, 6, 8, CLOSS_F16, &bytes), want, "%s",
                 closs_last_error());
    cr_expect_eq(closs_siglip_workspace_size(NULL, &s, 4, 4, 8, CLOSS_BF16, &bytes), want, "%s",
                 closs_last_error());
    if (closs_cuda_available()) cr_expect_gt(bytes, 0);
}

/* ---- issue #28: the chunked path's 16-bit leading dimension reaches cuBLAS as an int --------- */

#define EXPECT_NOT_SUPPORTED(call, argument)                                                       \
    EXPECT_STATUS(call, CLOSS_STATUS_NOT_SUPPORTED, argument)

/* z.ld > INT_MAX with a 16-bit z on the chunked path (CHUNKED, or AUTO past 256 columns) is
 * refused by name before the handle is looked at, in every build; INT_MAX itself, f32 (multiplied
 * as a copy D apart) and FUSED (64-bit strides) pass the argument checks. The loss lies below z
 * (z's span reaches gigabytes past its start), so that no overlap is reported. */
static float below_and_z[256];

Test(gpu_api_errors, chunked_16bit_ld_past_int_max_is_refused) {
    closs_ntxent_params n = CLOSS_NTXENT_PARAMS_INIT;
    closs_supcon_params s = CLOSS_SUPCON_PARAMS_INIT;
    float *loss = below_and_z;
    void *z_data = below_and_z + 128;
    const int64_t past = (int64_t)INT_MAX + 1;
    n.path = CLOSS_PATH_CHUNKED;
    closs_matrix_t z = closs_matrix(z_data, CLOSS_BF16, 2, 8);
    z.ld = past;
    EXPECT_NOT_SUPPORTED(closs_ntxent_forward(NULL, &n, z, loss, NULL, NULL, 0, NULL), "z.ld");
    closs_grad_t g = {fake_grad[0], 8};
    EXPECT_NOT_SUPPORTED(closs_ntxent_backward(NULL, &n, z, fake_grad[1], NULL, g, NULL, 0, NULL),
                         "z.ld");
    z = closs_matrix(z_data, CLOSS_F16, 2, 300); /* AUTO: chunked past 256 columns */
    z.ld = past;
    EXPECT_NOT_SUPPORTED(closs_supcon_forward(NULL, &s, z, closs_vector(fake_device, CLOSS_I64, 2),
                                              loss, NULL, NULL, NULL, 0, NULL),
                         "z.ld");

    /* f16's normalised backward: its scaled rows, (cols + 7) / 8 · 8 apart, past INT_MAX */
    z = closs_matrix(z_data, CLOSS_F16, 2, INT_MAX - 3);
    EXPECT_NOT_SUPPORTED(closs_ntxent_forward_backward(NULL, &n, z, loss,
                                                       (closs_grad_t){fake_grad[0], INT_MAX - 3},
                                                       NULL, 0, NULL),
                         "z.cols");

    z = closs_matrix(z_data, CLOSS_F16, 2, 8);
    z.ld = INT_MAX;
    cr_expect(passed_argument_checks(closs_ntxent_forward(NULL, &n, z, loss, NULL, NULL, 0, NULL)),
              "ld = INT_MAX: %s", closs_last_error());
    z.ld = past;
    z.dtype = CLOSS_F32;
    cr_expect(passed_argument_checks(closs_ntxent_forward(NULL, &n, z, loss, NULL, NULL, 0, NULL)),
              "f32: %s", closs_last_error());
    z.dtype = CLOSS_F16;
    n.path = CLOSS_PATH_FUSED;
    cr_expect(passed_argument_checks(closs_ntxent_forward(NULL, &n, z, loss, NULL, NULL, 0, NULL)),
              "FUSED: %s", closs_last_error());
}
