// The PTX instructions of the register-resident tensor-core tile engine, one thin wrapper each, so
// that the engine's kernels name every warp-collective or asynchronous step explicitly and the CPU
// harness (tests/cuda_on_cpu.h) can put an exact emulation of each in its place: under nvcc these
// are inline PTX; compiled by g++ for the harness (no __CUDACC__) this header declares nothing,
// and the harness defines the same functions (tests/cuda_on_cpu_tile.h; each with a trailing
// defaulted std::source_location, so that its race and fault messages name the line: the call
// sites are the same). There the kernel's dynamic shared memory is closs_emulated_dynamic_shared
// (extern __shared__ under nvcc), and a test launches with launch(blocks, threads,
// dynamic_shared_bytes, kernel), past which an access faults.
//
// Fragments are plain 32-bit registers as the PTX ISA's fragment tables name them ("Matrix
// Fragments for mma.m16n8k16", "Warp-level matrix load instruction: ldmatrix"): a register holds
// two 16-bit values, the lower-numbered element in the low half.
//   mma_m16n8k16<T>(d, a, b)  d += a·b: a 16 × 16 (row major, 4 registers), b 16 × 8 (column
//                             major, 2 registers), d 16 × 8 float (4 registers); T is __half or
//                             __nv_bfloat16 (both operands), float accumulation. sm_80.
//   ldmatrix_x{1,2,4}[_trans](r, row)  8 × 8 16-bit matrices from shared memory; lanes 8q..8q+7
//                             give the 16-byte-aligned row addresses of matrix q (x1: lanes 0–7,
//                             x2: 0–15, x4: all 32; the other lanes' addresses are ignored),
//                             register q of lane l gets row l/4, elements 2(l%4) and 2(l%4)+1 of
//                             matrix q (_trans: of its transpose). sm_75.
//   cp_async_16(shared, global, bytes)  cp.async.cg: copies `bytes` (0..16) from global, zero-fills
//                             the rest of the 16 bytes at `shared`; both 16-byte aligned. Not
//                             visible to any thread until cp_async_wait covers its group, and to
//                             other threads only after a barrier that follows that wait. sm_80.
//   cp_async_commit()         closes this thread's group of cp_async_16 issued since the last one.
//   cp_async_wait<N>()        waits until at most N of this thread's committed groups are pending.
//   shared_load / shared_store  an ordinary shared-memory access, named so that the harness's race
//                             check sees it (the engine touches shared memory only through these
//                             functions).
//   pack_pair<T>(lo, hi)      two floats rounded to T (round to nearest even), lo in the low half.
#pragma once

#include <stdint.h>

#ifdef __CUDACC__
#    include <cuda_bf16.h>
#    include <cuda_fp16.h>

namespace closs {
namespace tile {

template <typename T> __device__ __forceinline__ void mma_m16n8k16(float (&d)[4], const uint32_t (&a)[4],
                                                                   const uint32_t (&b)[2]);

template <> __device__ __forceinline__ void mma_m16n8k16<__half>(float (&d)[4], const uint32_t (&a)[4],
                                                                 const uint32_t (&b)[2]) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
                 "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

template <>
__device__ __forceinline__ void mma_m16n8k16<__nv_bfloat16>(float (&d)[4], const uint32_t (&a)[4],
                                                            const uint32_t (&b)[2]) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                 "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

__device__ __forceinline__ uint32_t shared_address(const void *pointer) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(pointer));
}

__device__ __forceinline__ void ldmatrix_x1(uint32_t (&r)[1], const void *row) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%0}, [%1];\n"
                 : "=r"(r[0])
                 : "r"(shared_address(row)));
}
__device__ __forceinline__ void ldmatrix_x2(uint32_t (&r)[2], const void *row) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];\n"
                 : "=r"(r[0]), "=r"(r[1])
                 : "r"(shared_address(row)));
}
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void *row) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(shared_address(row)));
}
__device__ __forceinline__ void ldmatrix_x1_trans(uint32_t (&r)[1], const void *row) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x1.trans.shared.b16 {%0}, [%1];\n"
                 : "=r"(r[0])
                 : "r"(shared_address(row)));
}
__device__ __forceinline__ void ldmatrix_x2_trans(uint32_t (&r)[2], const void *row) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0, %1}, [%2];\n"
                 : "=r"(r[0]), "=r"(r[1])
                 : "r"(shared_address(row)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void *row) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(shared_address(row)));
}

__device__ __forceinline__ void cp_async_16(void *shared, const void *global, int bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(shared_address(shared)),
                 "l"(global), "r"(bytes)
                 : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N> __device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

template <typename T> __device__ __forceinline__ T shared_load(const T *pointer) { return *pointer; }
template <typename T> __device__ __forceinline__ void shared_store(T *pointer, T value) { *pointer = value; }

template <typename T> __device__ __forceinline__ uint32_t pack_pair(float lo, float hi);
template <> __device__ __forceinline__ uint32_t pack_pair<__half>(float lo, float hi) {
    const __half2 pair = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<const uint32_t *>(&pair);
}
template <> __device__ __forceinline__ uint32_t pack_pair<__nv_bfloat16>(float lo, float hi) {
    const __nv_bfloat162 pair = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<const uint32_t *>(&pair);
}

} // namespace tile
} // namespace closs
#endif
