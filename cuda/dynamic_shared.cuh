// The dynamic shared memory of a launch (`extern __shared__`), for the kernels that size it at
// launch (the tile engine's, the WMMA kernels'); on the CPU harness (no __CUDACC__) its buffer,
// tests/cuda_on_cpu.h's closs_emulated_dynamic_shared, declared before the kernels are included.
#pragma once

namespace closs {

#ifdef __CUDACC__
__device__ __forceinline__ unsigned char *dynamic_shared() {
    extern __shared__ __align__(128) unsigned char dynamic_shared_bytes[];
    return dynamic_shared_bytes;
}
#else
inline unsigned char *dynamic_shared() { return closs_emulated_dynamic_shared; }
#endif

} // namespace closs
