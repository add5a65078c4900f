/* The fused path's choice of kernels for f16 and bf16 (cuda/tile_dispatch.h) on the CPU, with the
 * device and the loaded binary as inputs: the tile engine, WMMA or SIMT by the architecture the
 * loaded code was compiled for and by whether the kernel's shared memory fits the device, never a
 * trap or a launch that cannot fit (issue #22, item 6). A kernel fits when its dynamic shared
 * memory (the library's own, closs_tensor_kernel_shared_bytes; the tensor-core kernels have no
 * static shared memory) is at most the device's opt-in maximum per block, the rule by which the
 * runtime accepts or refuses cudaFuncSetAttribute(MaxDynamicSharedMemorySize) in the launcher; the
 * devices' limits are their documented opt-in maxima (CUDA C++ Programming Guide, "Technical
 * Specifications per Compute Capability"). */
#include <criterion/criterion.h>

#include "launch.h"
#include "tile_dispatch.h"
#include "two_tower_launch.h"

typedef struct device {
    const char *name;
    size_t shared_optin;
} device;

static const device t4 = {"sm_75 (T4)", 64 * 1024};
static const device a100 = {"sm_80 (A100)", 163 * 1024};
static const device rtx = {"sm_86/sm_89 (RTX 30xx/40xx)", 99 * 1024};
static const device h100 = {"sm_90 (H100/H200)", 227 * 1024};

/* The kernels a pass gets when the loaded code of both tensor-core families was compiled for
 * architecture `code` (0: the binary has none for this device). */
static closs_tile_kernels choose(closs_tile_kernels preferred, int code, const device *d, int bf16,
                                 int backward, int dim) {
    const closs_tile_candidate engine = {code, closs_tensor_kernel_shared_bytes(0, backward, dim) <=
                                                   d->shared_optin};
    const closs_tile_candidate wmma = {code, closs_tensor_kernel_shared_bytes(1, backward, dim) <=
                                                 d->shared_optin};
    return closs_choose_tile_kernels(preferred, bf16, engine, wmma);
}

static const char *const names[] = {"engine", "WMMA", "SIMT"};
static const int dims[] = {64, 128, 256};

#define EXPECT_KERNELS(want, preferred, code, d, bf16, backward, dim)                              \
    do {                                                                                           \
        const closs_tile_kernels got_ = choose(preferred, code, d, bf16, backward, dim);           \
        cr_expect_eq(got_, want, "%s, code for sm_%d, %s %s D = %d: %s, want %s", (d)->name, code, \
                     (bf16) ? "bf16" : "f16", (backward) ? "backward" : "forward", dim,            \
                     names[got_], names[want]);                                                    \
    } while (0)

/* closs's default build (sm_80 and sm_90 code): the engine everywhere its shared memory fits. On
 * an RTX 30xx/40xx (99 KB) the backward at D = 256 needs 100.3 KB (128 anchor rows staged beside
 * two column tiles), and WMMA's 104.7 KB do not fit either: SIMT. */
Test(tile_dispatch, default_build) {
    const device *devices[] = {&a100, &rtx, &h100};
    for (int k = 0; k < 3; ++k)
        for (int bf16 = 0; bf16 <= 1; ++bf16)
            for (int backward = 0; backward <= 1; ++backward)
                for (int d = 0; d < 3; ++d) {
                    const int code = devices[k] == &h100 ? 90 : 80;
                    const int fits = !(devices[k] == &rtx && backward && dims[d] == 256);
                    EXPECT_KERNELS(fits ? CLOSS_TILE_ENGINE : CLOSS_TILE_SIMT, CLOSS_TILE_ENGINE,
                                   code, devices[k], bf16, backward, dims[d]);
                }
}

/* A build for sm_75 run on a newer GPU JIT-compiles its compute_75 PTX, where the engine and bf16's
 * WMMA kernels are traps: f16 takes WMMA where it fits, bf16 SIMT; the device's capability alone
 * (8.0, 9.0) would have sent both to the traps. On the T4 itself WMMA's backward at D > 64 exceeds
 * 64 KB. The simulated tier (compute_70 code) is the same case. */
Test(tile_dispatch, code_below_sm_80) {
    const device *devices[] = {&t4, &a100, &h100};
    const int codes[] = {70, 75};
    for (int p = 0; p < 2; ++p)
        for (int k = 0; k < 3; ++k)
            for (int backward = 0; backward <= 1; ++backward)
                for (int d = 0; d < 3; ++d) {
                    const int fits = closs_tensor_kernel_shared_bytes(1, backward, dims[d]) <=
                                     devices[k]->shared_optin;
                    EXPECT_KERNELS(fits ? CLOSS_TILE_WMMA : CLOSS_TILE_SIMT, CLOSS_TILE_ENGINE,
                                   codes[p], devices[k], 0, backward, dims[d]);
                    EXPECT_KERNELS(CLOSS_TILE_SIMT, CLOSS_TILE_ENGINE, codes[p], devices[k], 1,
                                   backward, dims[d]);
                }
    cr_expect_gt(closs_tensor_kernel_shared_bytes(1, 1, 128), t4.shared_optin);
}

/* No code for this device in the binary at all (cudaFuncGetAttributes fails: code 0). */
Test(tile_dispatch, no_code_for_the_device) {
    for (int bf16 = 0; bf16 <= 1; ++bf16)
        EXPECT_KERNELS(CLOSS_TILE_SIMT, CLOSS_TILE_ENGINE, 0, &h100, bf16, 1, 128);
}

/* CLOSS_TILE_KERNELS (the benchmark's switch) puts a family first, but never one that cannot run.
 */
Test(tile_dispatch, preference) {
    cr_expect_eq(closs_tile_preference(NULL), CLOSS_TILE_ENGINE);
    cr_expect_eq(closs_tile_preference(""), CLOSS_TILE_ENGINE);
    cr_expect_eq(closs_tile_preference("engine"), CLOSS_TILE_ENGINE);
    cr_expect_eq(closs_tile_preference("wmma"), CLOSS_TILE_WMMA);
    cr_expect_eq(closs_tile_preference("simt"), CLOSS_TILE_SIMT);
    cr_expect_eq(closs_tile_preference("WMMA"), CLOSS_TILE_ENGINE, "exact names only");
    EXPECT_KERNELS(CLOSS_TILE_WMMA, CLOSS_TILE_WMMA, 90, &h100, 1, 1, 128);
    EXPECT_KERNELS(CLOSS_TILE_SIMT, CLOSS_TILE_SIMT, 90, &h100, 1, 1, 128);
    /* On an RTX 40xx WMMA's forward at D = 256 fits; neither family's backward does. */
    EXPECT_KERNELS(CLOSS_TILE_WMMA, CLOSS_TILE_WMMA, 80, &rtx, 0, 0, 256);
    EXPECT_KERNELS(CLOSS_TILE_SIMT, CLOSS_TILE_WMMA, 80, &rtx, 1, 1, 256);
    cr_expect_gt(closs_tensor_kernel_shared_bytes(1, 1, 256), rtx.shared_optin);
    cr_expect_gt(closs_tensor_kernel_shared_bytes(0, 1, 256), rtx.shared_optin);
    /* bf16 WMMA from compute_75 PTX is a trap: the engine cannot run there either. */
    EXPECT_KERNELS(CLOSS_TILE_SIMT, CLOSS_TILE_WMMA, 75, &h100, 1, 0, 64);
}

/* CLIP's and SigLIP's walks (cuda/two_tower_fused.cu): the engine or the SIMT walks (no WMMA
 * family: its candidate is "no code"). The default build runs the engine wherever its shared
 * memory fits: everywhere but the backward at D = 256 on an RTX 30xx/40xx (99.75 KB: 128 anchor
 * rows beside two 32-row column tiles) and at D = 512 (195.3 KB forward: 128 anchor rows, 142.8 KB
 * backward: 64) the forward on an A100 and both walks on an RTX; code below sm_80 and
 * CLOSS_TILE_KERNELS=simt give the SIMT walks, =wmma the engine. */
static closs_tile_kernels choose_two_tower(closs_tile_kernels preferred, int code, const device *d,
                                           int backward, int dim) {
    const closs_tile_candidate engine = {code, closs_two_tower_engine_shared_bytes(backward, dim) <=
                                                   d->shared_optin};
    const closs_tile_candidate none = {0, 0};
    return closs_choose_tile_kernels(preferred, 1, engine, none);
}

static const int two_tower_dims[] = {64, 128, 256, 512};

/* Whether the engine's walk fits the device (see above). */
static int two_tower_fits(const device *d, int backward, int dim) {
    if (d == &rtx) return dim < 256 || (dim == 256 && !backward);
    return d == &h100 || dim < 512 || backward;
}

Test(tile_dispatch, two_tower_walks) {
    const device *devices[] = {&a100, &rtx, &h100};
    for (int k = 0; k < 3; ++k)
        for (int backward = 0; backward <= 1; ++backward)
            for (int d = 0; d < 4; ++d) {
                const int code = devices[k] == &h100 ? 90 : 80, dim = two_tower_dims[d];
                const closs_tile_kernels want =
                    two_tower_fits(devices[k], backward, dim) ? CLOSS_TILE_ENGINE : CLOSS_TILE_SIMT;
                cr_expect_eq(choose_two_tower(CLOSS_TILE_ENGINE, code, devices[k], backward, dim),
                             want, "%s %s D = %d", devices[k]->name,
                             backward ? "backward" : "forward", dim);
                cr_expect_eq(choose_two_tower(CLOSS_TILE_WMMA, code, devices[k], backward, dim),
                             want);
                cr_expect_eq(choose_two_tower(CLOSS_TILE_SIMT, code, devices[k], backward, dim),
                             CLOSS_TILE_SIMT);
                cr_expect_eq(choose_two_tower(CLOSS_TILE_ENGINE, 75, devices[k], backward, dim),
                             CLOSS_TILE_SIMT);
                cr_expect_eq(choose_two_tower(CLOSS_TILE_ENGINE, 0, devices[k], backward, dim),
                             CLOSS_TILE_SIMT);
            }
    cr_expect_gt(closs_two_tower_engine_shared_bytes(1, 256), rtx.shared_optin);
    cr_expect_leq(closs_two_tower_engine_shared_bytes(0, 256), rtx.shared_optin);
    cr_expect_gt(closs_two_tower_engine_shared_bytes(0, 512), a100.shared_optin);
    cr_expect_leq(closs_two_tower_engine_shared_bytes(1, 512), a100.shared_optin);
    cr_expect_leq(closs_two_tower_engine_shared_bytes(0, 512), h100.shared_optin);
}

/* SigLIP's forward and backward walks take the engine together or not at all, so that a forward
 * and a forward+backward (whose loss the backward's walk sums) give the same loss bits: on an RTX
 * 30xx/40xx at D = 256 (the backward does not fit) and on an A100 at D = 512 (the forward does
 * not) both take the SIMT walks. */
Test(tile_dispatch, siglip_walks_take_the_engine_together) {
    const device *devices[] = {&a100, &rtx, &h100};
    for (int k = 0; k < 3; ++k) {
        const device *d = devices[k];
        for (int i = 0; i < 4; ++i) {
            const int dim = two_tower_dims[i];
            const closs_tile_kernels forward = choose_two_tower(CLOSS_TILE_ENGINE, 80, d, 0, dim),
                                     backward = choose_two_tower(CLOSS_TILE_ENGINE, 80, d, 1, dim);
            const closs_tile_kernels want = two_tower_fits(d, 0, dim) && two_tower_fits(d, 1, dim)
                                                ? CLOSS_TILE_ENGINE
                                                : CLOSS_TILE_SIMT;
            cr_expect_eq(closs_siglip_walk_kernels(forward, backward), want, "%s D = %d forward",
                         d->name, dim);
            cr_expect_eq(closs_siglip_walk_kernels(backward, forward), want, "%s D = %d backward",
                         d->name, dim);
        }
    }
    cr_expect_eq(closs_siglip_walk_kernels(CLOSS_TILE_SIMT, CLOSS_TILE_ENGINE), CLOSS_TILE_SIMT);
    cr_expect_eq(closs_siglip_walk_kernels(CLOSS_TILE_ENGINE, CLOSS_TILE_SIMT), CLOSS_TILE_SIMT);
}
