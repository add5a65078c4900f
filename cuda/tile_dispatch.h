/* Which kernels run the fused path's similarity passes for f16 and bf16 inputs
 * (cuda/contrastive_fused.cu): plain C that nvcc also compiles, so that
 * tests/test_tile_dispatch.c checks the choice on the CPU with made-up devices and binaries.
 *
 * The choice follows what the loaded binary holds for this device and what the device can give,
 * not the device's compute capability alone: a library built for sm_75 and run on an sm_90 GPU
 * JIT-compiles its compute_75 PTX, where the tile engine's kernels (and bf16's WMMA kernels) are
 * traps, and a kernel whose shared memory exceeds the device's per-block opt-in limit fails at
 * launch. So each candidate kernel is described by
 *   code  the architecture its loaded code was compiled for, the lower of cudaFuncGetAttributes'
 *         ptxVersion (the __CUDA_ARCH__ the code saw: 75 for JIT-compiled compute_75 PTX) and
 *         binaryVersion (GPGPU-Sim reports the PTX ISA version as ptxVersion, and the target as
 *         binaryVersion), major·10 + minor; 0 when the binary has no code for this device;
 *   fits  whether cudaFuncSetAttribute accepted its dynamic shared memory: the runtime refuses
 *         more than the device's opt-in maximum per block less the kernel's static shared memory;
 * and a pass runs, of
 *   ENGINE  the tile engine (contrastive_tile_kernels.cuh): code for sm_80 or later;
 *   WMMA    the WMMA kernels (contrastive_wmma_kernels.cuh): sm_70 or later for f16, sm_80 for
 *           bf16 (the simulated tier's compute_70 build runs f16 here);
 *   SIMT    the float SIMT kernels: any target, at most 42 KB of static shared memory;
 * the first whose code is real and fits, in that order. CLOSS_TILE_KERNELS=wmma or =simt in the
 * environment (benchmarks: bench/device-check.sh times the engine against WMMA) puts that family
 * first; it is still skipped where it cannot run. Host code only. */
#ifndef CLOSS_CUDA_TILE_DISPATCH_H
#define CLOSS_CUDA_TILE_DISPATCH_H

#include <string.h>

typedef enum { CLOSS_TILE_ENGINE, CLOSS_TILE_WMMA, CLOSS_TILE_SIMT } closs_tile_kernels;

/* One candidate kernel for this pass and device (see the top). */
typedef struct closs_tile_candidate {
    int code; /* the loaded code's architecture, 0: none */
    int fits; /* its shared memory fits the device */
} closs_tile_candidate;

/* The architecture below which a family's kernels are traps (f16: is_bf16 0). */
static inline int closs_tile_minimum_code(closs_tile_kernels family, int is_bf16) {
    return family == CLOSS_TILE_ENGINE ? 80 : family == CLOSS_TILE_WMMA ? (is_bf16 ? 80 : 70) : 0;
}

/* Whether the candidate is real code for this device and fits its shared memory. */
static inline int closs_tile_usable(closs_tile_kernels family, int is_bf16,
                                    closs_tile_candidate candidate) {
    if (family == CLOSS_TILE_SIMT) return 1;
    return candidate.code >= closs_tile_minimum_code(family, is_bf16) && candidate.fits;
}

/* CLOSS_TILE_KERNELS's value (NULL: unset): the family to try first. */
static inline closs_tile_kernels closs_tile_preference(const char *value) {
    if (value && strcmp(value, "wmma") == 0) return CLOSS_TILE_WMMA;
    if (value && strcmp(value, "simt") == 0) return CLOSS_TILE_SIMT;
    return CLOSS_TILE_ENGINE;
}

/* The family a pass runs: `preferred` if usable, else the first usable of ENGINE, WMMA, SIMT. */
static inline closs_tile_kernels closs_choose_tile_kernels(closs_tile_kernels preferred,
                                                           int is_bf16, closs_tile_candidate engine,
                                                           closs_tile_candidate wmma) {
    if (preferred == CLOSS_TILE_SIMT) return CLOSS_TILE_SIMT;
    if (closs_tile_usable(preferred, is_bf16, preferred == CLOSS_TILE_ENGINE ? engine : wmma))
        return preferred;
    if (closs_tile_usable(CLOSS_TILE_ENGINE, is_bf16, engine)) return CLOSS_TILE_ENGINE;
    if (closs_tile_usable(CLOSS_TILE_WMMA, is_bf16, wmma)) return CLOSS_TILE_WMMA;
    return CLOSS_TILE_SIMT;
}

/* The family of one of SigLIP's walks (cuda/two_tower_fused.cu), given the choice for its own
 * kernel and for the other direction's (the forward's for a backward walk, the backward's for a
 * forward walk): a forward+backward call takes its loss from the backward's walk, a forward alone
 * from the forward's, so the two take the engine together or not at all, and the two calls give
 * the same loss bits (an RTX 30xx/40xx fits the forward's tiles at D = 256 but not the backward's;
 * an A100 the backward's at D = 512 but not the forward's). */
static inline closs_tile_kernels closs_siglip_walk_kernels(closs_tile_kernels own,
                                                           closs_tile_kernels other) {
    return own == CLOSS_TILE_ENGINE && other != CLOSS_TILE_ENGINE ? CLOSS_TILE_SIMT : own;
}

#ifdef __CUDACC__
/* What the loaded binary holds of `kernel` for the current device: the architecture its code was
 * compiled for (0 when there is none for this device), and whether the runtime accepts
 * `shared_bytes` of dynamic shared memory (it refuses more than the device's opt-in maximum). Sets
 * the kernel's dynamic shared memory limit to them as it asks. CUDA C++ only. */
template <typename Kernel>
static closs_tile_candidate closs_describe_tile_kernel(Kernel kernel, size_t shared_bytes) {
    cudaFuncAttributes attributes;
    if (cudaFuncGetAttributes(&attributes, kernel) != cudaSuccess) {
        (void)cudaGetLastError(); /* no code for this device: not an error of the call */
        closs_tile_candidate none = {0, 0};
        return none;
    }
    closs_tile_candidate candidate;
    candidate.fits = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          (int)shared_bytes) == cudaSuccess;
    if (!candidate.fits) (void)cudaGetLastError();
    candidate.code = attributes.ptxVersion < attributes.binaryVersion ? attributes.ptxVersion
                                                                      : attributes.binaryVersion;
    return candidate;
}
#endif

#endif
