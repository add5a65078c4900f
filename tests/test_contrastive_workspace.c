/* NT-Xent and SupCon workspace queries, on any machine (they need no handle and no device): the
 * fused path's memory at a million rows (issue #4: under 1 GiB at M = 2^20, D = 128, bf16), what
 * AUTO selects, and the fused path's column limit. Skipped in a build without CUDA, where every
 * GPU call is NOT_SUPPORTED. */
#include <criterion/criterion.h>
#include <string.h>

#include "closs.h"

#define REQUIRE_CUDA_BUILD()                                                                       \
    do {                                                                                           \
        if (!closs_cuda_available()) cr_skip_test("closs was built without CUDA");                 \
    } while (0)

/* The workspace of a call on `path`, queried without a handle. */
static size_t workspace_bytes(int supcon, closs_path_t path, int64_t rows, int64_t dim,
                              closs_dtype_t dtype) {
    closs_ntxent_params ntxent = CLOSS_NTXENT_PARAMS_INIT;
    closs_supcon_params supcon_params = CLOSS_SUPCON_PARAMS_INIT;
    ntxent.path = supcon_params.path = path;
    size_t bytes = 0;
    const closs_status_t status =
        supcon ? closs_supcon_workspace_size(NULL, &supcon_params, rows, dim, dtype, &bytes)
               : closs_ntxent_workspace_size(NULL, &ntxent, rows, dim, dtype, &bytes);
    cr_assert_eq(status, CLOSS_STATUS_SUCCESS, "%s", closs_last_error());
    return bytes;
}

/* bf16, the dtype of the large-batch runs. */
static size_t ntxent_bytes(closs_path_t path, int64_t rows, int64_t dim) {
    return workspace_bytes(0, path, rows, dim, CLOSS_BF16);
}

static size_t supcon_bytes(closs_path_t path, int64_t rows, int64_t dim) {
    return workspace_bytes(1, path, rows, dim, CLOSS_BF16);
}

Test(contrastive_workspace, fused_million_rows_under_one_gib) {
    REQUIRE_CUDA_BUILD();
    const int64_t rows = (int64_t)1 << 20, dim = 128;
    const size_t gib = (size_t)1 << 30;
    const size_t ntxent = ntxent_bytes(CLOSS_PATH_FUSED, rows, dim);
    const size_t supcon = supcon_bytes(CLOSS_PATH_FUSED, rows, dim);
    cr_expect_lt(ntxent, gib, "NT-Xent fused workspace %zu bytes", ntxent);
    cr_expect_lt(supcon, gib, "SupCon fused workspace %zu bytes", supcon);
    /* The M × M matrix it avoids is 4 TiB in float; even the chunked path's ẑ is 512 MiB. */
    cr_expect_lt(ntxent, ntxent_bytes(CLOSS_PATH_CHUNKED, rows, dim));
    cr_log_info("fused workspace at M = 2^20, D = 128: NT-Xent %.1f MiB, SupCon %.1f MiB",
                (double)ntxent / (1 << 20), (double)supcon / (1 << 20));
}

/* The fused path sums and folds the positives in its tiles (no class sums): its workspace is
 * O(M), the same at every D it takes. */
Test(contrastive_workspace, fused_does_not_grow_with_columns) {
    REQUIRE_CUDA_BUILD();
    const int64_t rows = (int64_t)1 << 20;
    for (int supcon = 0; supcon <= 1; ++supcon) {
        const size_t narrow = workspace_bytes(supcon, CLOSS_PATH_FUSED, rows, 1, CLOSS_BF16);
        const size_t wide = workspace_bytes(supcon, CLOSS_PATH_FUSED, rows, 256, CLOSS_BF16);
        cr_expect_eq(narrow, wide, "%s: %zu bytes at D = 1, %zu at D = 256",
                     supcon ? "SupCon" : "NT-Xent", narrow, wide);
    }
}

Test(contrastive_workspace, auto_selects_fused_up_to_256_columns) {
    REQUIRE_CUDA_BUILD();
    for (int64_t dim = 255; dim <= 257; ++dim) {
        const closs_path_t want = dim <= 256 ? CLOSS_PATH_FUSED : CLOSS_PATH_CHUNKED;
        cr_expect_eq(ntxent_bytes(CLOSS_PATH_AUTO, 4096, dim), ntxent_bytes(want, 4096, dim),
                     "NT-Xent, dim %lld", (long long)dim);
        cr_expect_eq(supcon_bytes(CLOSS_PATH_AUTO, 4097, dim), supcon_bytes(want, 4097, dim),
                     "SupCon, dim %lld", (long long)dim);
    }
}

Test(contrastive_workspace, fused_refuses_more_than_256_columns) {
    REQUIRE_CUDA_BUILD();
    closs_supcon_params params = CLOSS_SUPCON_PARAMS_INIT;
    params.path = CLOSS_PATH_FUSED;
    size_t bytes = 7;
    cr_expect_eq(closs_supcon_workspace_size(NULL, &params, 64, 257, CLOSS_F32, &bytes),
                 CLOSS_STATUS_NOT_SUPPORTED);
    cr_expect(strstr(closs_last_error(), "path"), "%s", closs_last_error());
    cr_expect_eq(bytes, 7, "nothing written on failure");
}

/* The chunked path multiplies bf16 z where it is (no copy) and keeps its block of S and the two
 * 16-bit halves of G' within 256 MiB; f16 adds the backward's scaled rows z′ (M·D halves:
 * cuda/launch.h, z_scaled), f32 a float copy of ẑ (M·D floats). Past that, O(M): at most 96 bytes
 * a row (both losses: SupCon's label sort too), CUB's 2 MiB and cuBLAS's 32 MiB. */
Test(contrastive_workspace, chunked_copies_f32_and_scales_f16) {
    REQUIRE_CUDA_BUILD();
    const int64_t rows = (int64_t)1 << 20, dim = 512;
    const size_t block = (size_t)256 << 20, per_row = 96 * (size_t)rows + ((size_t)36 << 20);
    for (int supcon = 0; supcon <= 1; ++supcon) {
        const char *loss = supcon ? "SupCon" : "NT-Xent";
        const size_t narrow = workspace_bytes(supcon, CLOSS_PATH_CHUNKED, rows, dim, CLOSS_BF16);
        const size_t half = workspace_bytes(supcon, CLOSS_PATH_CHUNKED, rows, dim, CLOSS_F16);
        const size_t wide = workspace_bytes(supcon, CLOSS_PATH_CHUNKED, rows, dim, CLOSS_F32);
        const size_t copy = (size_t)rows * dim * sizeof(float), scaled = (size_t)rows * dim * 2;
        cr_expect_leq(narrow, block + per_row, "%s bf16: %zu bytes", loss, narrow);
        cr_expect_geq(half, narrow + scaled, "%s f16: %zu bytes", loss, half);
        cr_expect_leq(half, narrow + scaled + per_row, "%s f16: %zu bytes", loss, half);
        cr_expect_geq(wide, copy + block, "%s f32: %zu bytes", loss, wide);
        cr_expect_leq(wide, copy + block + per_row, "%s f32: %zu bytes", loss, wide);
    }
}

/* The fused path's f16 workspace: bf16's and the scaled rows z′, D rounded up to 8 halves a row. */
Test(contrastive_workspace, fused_f16_scaled_rows) {
    REQUIRE_CUDA_BUILD();
    const int64_t rows = 4099;
    for (int64_t dim = 1; dim <= 256; dim += 51) {
        const size_t half = workspace_bytes(0, CLOSS_PATH_FUSED, rows, dim, CLOSS_F16);
        const size_t narrow = workspace_bytes(0, CLOSS_PATH_FUSED, rows, dim, CLOSS_BF16);
        const size_t scaled =
            (size_t)rows * (size_t)((dim + 7) / 8 * 8) * 2 + (size_t)rows * sizeof(float);
        cr_expect_geq(half, narrow + scaled, "D = %lld: f16 %zu, bf16 %zu bytes", (long long)dim,
                      half, narrow);
        cr_expect_leq(half, narrow + scaled + 1024, "D = %lld: f16 %zu, bf16 %zu bytes",
                      (long long)dim, half, narrow);
    }
}

/* Issue #28: cuBLAS gets a constant 32 MiB workspace on the chunked path (what its documentation
 * recommends on Hopper; constant, so that cuBLAS's choice of kernel, and so the bits, never depend
 * on the shape), and the fused path, which calls no cuBLAS, none. At 2 rows everything else the
 * chunked path takes is a few KiB (SupCon: CUB's 2 MiB more). */
Test(contrastive_workspace, chunked_reserves_32_mib_for_cublas) {
    REQUIRE_CUDA_BUILD();
    const size_t cublas = (size_t)32 << 20, small = (size_t)64 << 10, cub = (size_t)2 << 20;
    const closs_dtype_t dtypes[] = {CLOSS_F32, CLOSS_F16, CLOSS_BF16};
    for (int t = 0; t < 3; ++t)
        for (int64_t dim = 8; dim <= 512; dim *= 4) {
            const size_t ntxent = workspace_bytes(0, CLOSS_PATH_CHUNKED, 2, dim, dtypes[t]);
            const size_t supcon = workspace_bytes(1, CLOSS_PATH_CHUNKED, 2, dim, dtypes[t]);
            cr_expect(ntxent >= cublas && ntxent <= cublas + small,
                      "NT-Xent, dtype %d, D %lld: %zu bytes", t, (long long)dim, ntxent);
            cr_expect(supcon >= cublas + cub && supcon <= cublas + cub + small,
                      "SupCon, dtype %d, D %lld: %zu bytes", t, (long long)dim, supcon);
            if (dim <= 256)
                cr_expect_lt(workspace_bytes(0, CLOSS_PATH_FUSED, 2, dim, dtypes[t]), small,
                             "fused NT-Xent, dtype %d, D %lld", t, (long long)dim);
        }
}
