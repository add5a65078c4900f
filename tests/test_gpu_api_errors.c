/* The GPU entry points check every argument before they touch the device, so their errors are
 * tested here on any machine: each bad argument gets INVALID_ARGUMENT and a message naming it; with
 * every argument valid, a NULL handle is the error (or NOT_SUPPORTED in a build without CUDA). */
#include <criterion/criterion.h>
#include <string.h>

#include "closs.h"

/* Never dereferenced: the checks fail before any device access. */
static float fake_device[64];

static closs_matrix_t matrix(int64_t rows, int64_t cols) {
    return closs_matrix(fake_device, CLOSS_F32, rows, cols);
}

#define EXPECT_INVALID(call, argument)                                                             \
    do {                                                                                           \
        cr_expect_eq((call), CLOSS_STATUS_INVALID_ARGUMENT, "%s", #call);                          \
        cr_expect(strstr(closs_last_error(), argument), "'%s' not named in: %s", argument,         \
                  closs_last_error());                                                             \
    } while (0)

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
    closs_grad_t g = {fake_device, 8};
    closs_status_t status = closs_pair_forward_backward(NULL, &p, matrix(4, 8), matrix(4, 8),
                                                        closs_vector(fake_device, CLOSS_F32, 4),
                                                        fake_device, g, g, NULL, 0, NULL);
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
    closs_grad_t g = {fake_device, 8};
    float *loss = fake_device, *stats = fake_device;
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
