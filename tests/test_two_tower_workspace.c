/* CLIP and SigLIP workspace queries, on any machine (they need no handle and no device): the fused
 * path's memory is O(N + K) floats, independent of D (issue #23: stated at N = 1,048,576), what
 * AUTO selects, the fused path's column limit, and the chunked path's copies and block. Skipped
 * in a build without CUDA, where every GPU call is NOT_SUPPORTED. */
#include <criterion/criterion.h>
#include <string.h>

#include "closs.h"

#define REQUIRE_CUDA_BUILD()                                                                       \
    do {                                                                                           \
        if (!closs_cuda_available()) cr_skip_test("closs was built without CUDA");                 \
    } while (0)

static size_t workspace(int siglip, closs_path_t path, int64_t pairs, int64_t negatives,
                        int64_t dim, closs_dtype_t dtype) {
    closs_clip_params clip = CLOSS_CLIP_PARAMS_INIT;
    closs_siglip_params sig = CLOSS_SIGLIP_PARAMS_INIT;
    clip.path = sig.path = path;
    size_t bytes = 0;
    const closs_status_t status =
        siglip
            ? closs_siglip_workspace_size(NULL, &sig, pairs, pairs + negatives, dim, dtype, &bytes)
            : closs_clip_workspace_size(NULL, &clip, pairs, pairs + negatives, dim, dtype, &bytes);
    cr_assert_eq(status, CLOSS_STATUS_SUCCESS, "%s", closs_last_error());
    return bytes;
}

static size_t aligned(size_t bytes) { return (bytes + 255) / 256 * 256; }

/* 10 floats per pair and 4 per row of b, each buffer rounded up to 256 bytes, and 256 bytes of
 * slack (the caller's workspace may sit at any address): 56 MiB at N = 2^20, K = 0. */
Test(two_tower_workspace, fused_is_linear_in_the_rows_and_free_of_d) {
    REQUIRE_CUDA_BUILD();
    const int64_t pairs = (int64_t)1 << 20, queue = 65536;
    for (int siglip = 0; siglip <= 1; ++siglip) {
        const size_t million = workspace(siglip, CLOSS_PATH_FUSED, pairs, 0, 512, CLOSS_BF16);
        cr_expect_eq(million, (size_t)14 * 4 * (size_t)pairs + 256, "N = 2^20: %zu bytes", million);
        cr_expect_eq(workspace(siglip, CLOSS_PATH_FUSED, pairs, queue, 512, CLOSS_BF16),
                     (size_t)(10 * pairs + 4 * (pairs + queue)) * 4 + 256);
        cr_expect_eq(workspace(siglip, CLOSS_PATH_FUSED, pairs, 0, 1, CLOSS_F32), million,
                     "the same at D = 1 and in f32");
        cr_log_info("%s fused workspace at N = 2^20: %.1f MiB (K = 0), %.1f MiB (K = 65,536)",
                    siglip ? "SigLIP" : "CLIP", (double)million / (1 << 20),
                    (double)workspace(siglip, CLOSS_PATH_FUSED, pairs, queue, 512, CLOSS_BF16) /
                        (1 << 20));
    }
}

Test(two_tower_workspace, auto_selects_fused_up_to_512_columns) {
    REQUIRE_CUDA_BUILD();
    for (int64_t dim = 511; dim <= 513; ++dim) {
        const closs_path_t want = dim <= 512 ? CLOSS_PATH_FUSED : CLOSS_PATH_CHUNKED;
        cr_expect_eq(workspace(0, CLOSS_PATH_AUTO, 4096, 100, dim, CLOSS_F16),
                     workspace(0, want, 4096, 100, dim, CLOSS_F16), "CLIP, dim %lld",
                     (long long)dim);
        cr_expect_eq(workspace(1, CLOSS_PATH_AUTO, 4097, 0, dim, CLOSS_F32),
                     workspace(1, want, 4097, 0, dim, CLOSS_F32), "SigLIP, dim %lld",
                     (long long)dim);
    }
}

Test(two_tower_workspace, fused_refuses_more_than_512_columns) {
    REQUIRE_CUDA_BUILD();
    closs_siglip_params params = CLOSS_SIGLIP_PARAMS_INIT;
    params.path = CLOSS_PATH_FUSED;
    size_t bytes = 7;
    cr_expect_eq(closs_siglip_workspace_size(NULL, &params, 64, 64, 513, CLOSS_F32, &bytes),
                 CLOSS_STATUS_NOT_SUPPORTED);
    cr_expect(strstr(closs_last_error(), "path"), "%s", closs_last_error());
    cr_expect_eq(bytes, 7, "nothing written on failure");
}

/* CHUNKED: the fused path's buffers, float copies of both towers ((2N + K)·D floats), a block of
 * at most 256 MiB with its C rows of gradient, and cuBLAS's 4 MiB. */
Test(two_tower_workspace, chunked_copies_the_towers_and_bounds_its_block) {
    REQUIRE_CUDA_BUILD();
    const int64_t pairs = (int64_t)1 << 20, negatives = 4096, dim = 768;
    const size_t fused = workspace(0, CLOSS_PATH_FUSED, pairs, negatives, 64, CLOSS_BF16);
    const size_t chunked = workspace(0, CLOSS_PATH_CHUNKED, pairs, negatives, dim, CLOSS_BF16);
    const size_t copies = (size_t)(2 * pairs + negatives) * (size_t)dim * 4;
    const size_t block_rows = ((size_t)1 << 26) / (size_t)(pairs + negatives);
    const size_t rest = chunked - fused - copies;
    cr_expect(chunked > fused + copies, "%zu bytes: no room for the copies", chunked);
    cr_expect_leq(rest, ((size_t)256 << 20) + block_rows * dim * 4 + ((size_t)4 << 20) + 4096,
                  "block, its gradient rows and cuBLAS's workspace: %zu bytes", rest);
    /* a small batch: â, b̂, the whole N × (N + K) block at once, its gradient rows (a chunk is
     * at most N + K rows), cuBLAS's workspace; each rounded up to 256 bytes */
    const size_t small = workspace(1, CLOSS_PATH_CHUNKED, 100, 28, 8, CLOSS_F32) -
                         workspace(1, CLOSS_PATH_FUSED, 100, 28, 8, CLOSS_F32);
    cr_expect_eq(small,
                 aligned(100 * 8 * 4) + aligned(128 * 8 * 4) + aligned(128 * 128 * 4) +
                     aligned(128 * 8 * 4) + ((size_t)4 << 20),
                 "chunked at N = 100, K = 28: %zu bytes beyond the fused path's", small);
}

/* Past INT_MAX rows of b (cuBLAS's int, and the kernels' grids) the calls are refused as not
 * supported, not mis-sized. */
Test(two_tower_workspace, rows_past_int_max_not_supported) {
    REQUIRE_CUDA_BUILD();
    closs_clip_params params = CLOSS_CLIP_PARAMS_INIT;
    size_t bytes = 3;
    cr_expect_eq(
        closs_clip_workspace_size(NULL, &params, 4, (int64_t)1 << 31, 8, CLOSS_F32, &bytes),
        CLOSS_STATUS_NOT_SUPPORTED);
    cr_expect_eq(bytes, 3);
}
