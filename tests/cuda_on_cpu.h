// CUDA on the CPU: the harness that runs the kernels' own device code in tests
// (tests/test_contrastive_kernels.cpp, tests/test_rowwise_kernels.cpp, and its own self-test
// tests/test_cuda_on_cpu.cpp). Include after <cuda_runtime_api.h> (which defines __shared__ and
// friends) and before the kernels; compile as C++20 with -Wno-attributes -Wno-unknown-pragmas
// (the CUDA attributes and #pragma unroll mean nothing to g++).
//
// Execution (tests/cuda_on_cpu_fibers.h). launch() runs the grid's blocks one after another on
// the calling thread; a block's CUDA threads are fibers, run one at a time in a fixed order, each
// until it waits at __syncthreads, __syncwarp or a warp-collective instruction, or ends. A wait is
// over when its last participant arrives: deterministic, and cheap enough to emulate every warp
// instruction lane by lane. __syncthreads waits for every thread that has not ended (it does not
// wait for threads that returned: the lenient reading); __syncwarp(mask) for the lanes of mask; a
// warp collective (mma, ldmatrix, __shfl_xor_sync, __any_sync) for all 32 lanes at the same
// instruction, or the kernel faults (divergent warp, an ended lane, a partial warp). No thread
// able to run while some have not ended is a deadlock, reported as such.
//
// Memory. `__shared__` variables are `static` (one block runs at a time; they are not cleared
// between blocks, as the hardware does not clear them either); dynamic shared memory is
// closs_emulated_dynamic_shared, 227 KB (the opt-in maximum of an H100/H200 block), filled with
// 0xff bytes (NaN) at the start of every block; a launch may name its size (launch's
// dynamic_shared_bytes), past which an access faults. Global memory is the host's.
//
// Instructions. The built-ins below; cuda/tile_ptx.cuh's mma.sync, ldmatrix, cp.async and
// shared-memory accesses emulated per lane as the PTX ISA defines them
// (tests/cuda_on_cpu_tile.h, which says how, including the order of mma's float sum); WMMA is
// emulated in test_contrastive_kernels.cpp on whole tiles.
//
// Checks. Every shared access through tile_ptx.cuh (shared_load/shared_store, ldmatrix,
// cp_async_16) is race-checked against the hardware's happens-before (tests/cuda_on_cpu_races.h:
// __syncthreads, __syncwarp, a thread's own cp.async waits; no barrier in warp collectives), and
// its address checked for alignment and bounds as the hardware faults on them. A failed check, a
// deadlock or a fault ends the launch: launch() throws cuda_on_cpu::KernelFault, whose message
// names the block, the launch, and for a race both threads, both accesses and their source lines.
//
// Not covered: shared memory accessed through plain pointers (the SIMT and WMMA kernels' own
// arrays) is not race-checked; races on global memory; atomics are the host's, done one thread at
// a time; __threadfence and memory-order subtleties between blocks (blocks run one after another);
// the hardware's rounding of ex2.approx and __fdividef, and the tensor cores' order of additions.
// Approximations: the race check's unit is 2 bytes (two threads writing the two bytes of one
// unit would be reported; the kernels' shared data is 16- and 32-bit); for the bounds check,
// shared memory is the launch's dynamic part or any static storage (where `__shared__`
// variables live, but so do the program's other statics: a static array passed as shared memory
// is not caught, a heap or stack pointer is); shuffles and votes take full-warp masks only.
#pragma once

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <source_location>
#include <string>
#include <type_traits>

#include <cuda_runtime_api.h>

#include "cuda_on_cpu_fibers.h"
#include "cuda_on_cpu_races.h"
#include "cuda_on_cpu_tile.h"

// Stand-ins for the CUDA built-ins the kernels use.
struct sim_dim3 {
    unsigned x = 0, y = 0, z = 0;
};
inline sim_dim3 sim_threadIdx, sim_blockIdx, sim_blockDim, sim_gridDim;
#define threadIdx sim_threadIdx
#define blockIdx  sim_blockIdx
#define blockDim  sim_blockDim
#define gridDim   sim_gridDim
#undef __shared__
#define __shared__ static
#undef __launch_bounds__
#define __launch_bounds__(...)

// The dynamic shared memory of a launch (extern __shared__ on the GPU).
alignas(128) inline unsigned char closs_emulated_dynamic_shared[227 << 10];

inline void __syncthreads(std::source_location site = std::source_location::current()) {
    cuda_on_cpu::harness().scheduler.block_barrier(site);
}
inline void __syncwarp(unsigned mask = 0xffffffffu,
                       std::source_location site = std::source_location::current()) {
    cuda_on_cpu::harness().scheduler.warp_barrier(mask, site);
}

namespace cuda_on_cpu {

// A warp collective of one value per lane (shuffles, votes); no memory ordering. CUDA's rules for
// `width` (a power of two up to 32: the warp is split into segments of that many lanes) are
// in each source-lane function: a shuffle outside what the segment allows gives the lane's own
// value.
using Combine = uint64_t (*)(const uint64_t (&values)[32], int lane, int parameter, int width);
struct ExchangeArguments {
    uint64_t value;
    int parameter, width;
    uint64_t result;
};
template <Combine kCombine> void exchange_finish(int, CollectiveSlot (&lanes)[32]) {
    uint64_t values[32];
    for (int l = 0; l < 32; ++l)
        values[l] = static_cast<ExchangeArguments *>(lanes[l].arguments)->value;
    for (int l = 0; l < 32; ++l) {
        auto &arguments = *static_cast<ExchangeArguments *>(lanes[l].arguments);
        arguments.result = kCombine(values, l, arguments.parameter, arguments.width);
    }
}
template <Combine kCombine>
uint64_t exchange(const char *name, unsigned mask, uint64_t value, int parameter, int width,
                  const std::source_location &site) {
    if (mask != 0xffffffffu)
        fault(std::string(name) + " at " + where(site) +
              ": the harness emulates full-warp masks only");
    if (width < 1 || width > 32 || (width & (width - 1)))
        fault(std::string(name) + " at " + where(site) + ": width " + std::to_string(width) +
              " is not a power of two up to 32");
    ExchangeArguments arguments{value, parameter, width, 0};
    harness().scheduler.warp_collective(name, site, &arguments, &exchange_finish<kCombine>);
    return arguments.result;
}
// __shfl_xor_sync: lane ^ m; a later segment cannot be read.
inline uint64_t xor_lane(const uint64_t (&v)[32], int lane, int m, int width) {
    const int source = lane ^ m;
    return source >= (lane / width + 1) * width ? v[lane] : v[source & 31];
}
// __shfl_sync: lane (source mod width) of the caller's segment.
inline uint64_t index_lane(const uint64_t (&v)[32], int lane, int source, int width) {
    return v[lane / width * width + (source & (width - 1))];
}
// __shfl_up_sync / __shfl_down_sync: lane ∓ delta inside the caller's segment.
inline uint64_t up_lane(const uint64_t (&v)[32], int lane, int delta, int width) {
    return lane - delta >= lane / width * width ? v[lane - delta] : v[lane];
}
inline uint64_t down_lane(const uint64_t (&v)[32], int lane, int delta, int width) {
    return lane + delta < (lane / width + 1) * width ? v[lane + delta] : v[lane];
}
inline uint64_t ballot(const uint64_t (&v)[32], int, int, int) {
    uint64_t bits = 0;
    for (int l = 0; l < 32; ++l) bits |= (uint64_t)(v[l] != 0) << l;
    return bits;
}

template <Combine kCombine, typename T>
T shuffle(const char *name, unsigned mask, T value, int parameter, int width,
          const std::source_location &site) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>, "a 32- or 64-bit value");
    uint64_t bits = 0;
    std::memcpy(&bits, &value, sizeof(T));
    bits = exchange<kCombine>(name, mask, bits, parameter, width, site);
    std::memcpy(&value, &bits, sizeof(T));
    return value;
}

// A warp collective with no data: the lanes meet (as at a .sync.aligned instruction) without
// ordering memory. For emulations of other warp instructions (WMMA).
inline void warp_converge(const char *name,
                          std::source_location site = std::source_location::current()) {
    harness().scheduler.warp_collective(name, site, nullptr, [](int, CollectiveSlot(&)[32]) {});
}

} // namespace cuda_on_cpu

template <typename T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32,
                  std::source_location site = std::source_location::current()) {
    return cuda_on_cpu::shuffle<cuda_on_cpu::xor_lane>("__shfl_xor_sync", mask, v, lane_mask, width,
                                                       site);
}
template <typename T>
T __shfl_sync(unsigned mask, T v, int source_lane, int width = 32,
              std::source_location site = std::source_location::current()) {
    return cuda_on_cpu::shuffle<cuda_on_cpu::index_lane>("__shfl_sync", mask, v, source_lane, width,
                                                         site);
}
template <typename T>
T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32,
                 std::source_location site = std::source_location::current()) {
    return cuda_on_cpu::shuffle<cuda_on_cpu::up_lane>("__shfl_up_sync", mask, v, (int)delta, width,
                                                      site);
}
template <typename T>
T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32,
                   std::source_location site = std::source_location::current()) {
    return cuda_on_cpu::shuffle<cuda_on_cpu::down_lane>("__shfl_down_sync", mask, v, (int)delta,
                                                        width, site);
}
inline unsigned __ballot_sync(unsigned mask, int p,
                              std::source_location site = std::source_location::current()) {
    return (unsigned)cuda_on_cpu::exchange<cuda_on_cpu::ballot>("__ballot_sync", mask, p != 0, 0,
                                                                32, site);
}
inline int __any_sync(unsigned mask, int p,
                      std::source_location site = std::source_location::current()) {
    return cuda_on_cpu::exchange<cuda_on_cpu::ballot>("__any_sync", mask, p != 0, 0, 32, site) != 0;
}
inline int __all_sync(unsigned mask, int p,
                      std::source_location site = std::source_location::current()) {
    return cuda_on_cpu::exchange<cuda_on_cpu::ballot>("__all_sync", mask, p != 0, 0, 32, site) ==
           0xffffffffu;
}
inline int atomicOr(int *address, int value) {
    return std::atomic_ref<int>(*address).fetch_or(value);
}
inline float __int_as_float(int i) {
    float f;
    std::memcpy(&f, &i, 4);
    return f;
}
[[noreturn]] inline void __trap() { std::abort(); }
inline float __fdividef(float a, float b) { return a / b; } // the GPU's is within 2 ulp of this

// Runs `kernel` on `blocks` blocks of `threads` threads, one block after another, with
// `dynamic_shared_bytes` of dynamic shared memory (closs_emulated_dynamic_shared). Throws
// cuda_on_cpu::KernelFault when a block faults, races or deadlocks.
template <typename Kernel>
void launch(unsigned blocks, int threads, size_t dynamic_shared_bytes, Kernel kernel,
            std::source_location site = std::source_location::current()) {
    using namespace cuda_on_cpu;
    Harness &h = harness();
    if (dynamic_shared_bytes > sizeof closs_emulated_dynamic_shared)
        fault("launch at " + where(site) + ": " + std::to_string(dynamic_shared_bytes) +
              " bytes of dynamic shared memory, more than the harness's " +
              std::to_string(sizeof closs_emulated_dynamic_shared));
    h.races.set_dynamic_shared(closs_emulated_dynamic_shared, sizeof closs_emulated_dynamic_shared,
                               dynamic_shared_bytes);
    sim_gridDim = {blocks, 1, 1};
    sim_blockDim = {(unsigned)threads, 1, 1};
    const std::function<void()> body = [&] { kernel(); };
    const std::function<void(int)> on_switch = [](int thread) {
        sim_threadIdx.x = (unsigned)thread;
    };
    for (unsigned b = 0; b < blocks; ++b) {
        sim_blockIdx.x = b;
        std::memset(closs_emulated_dynamic_shared, 0xff, dynamic_shared_bytes);
        if ((int)h.async.size() < threads) h.async.resize(threads);
        for (AsyncGroups &groups : h.async) groups.open.clear(), groups.committed.clear();
        try {
            h.scheduler.run(threads, body, h.races, on_switch);
        } catch (const KernelFault &failure) {
            throw KernelFault("CPU harness: block " + std::to_string(b) + " of " +
                              std::to_string(blocks) + " (" + std::to_string(threads) +
                              " threads) launched at " + where(site) + ": " + failure.what());
        }
    }
}

// The same with the whole buffer as dynamic shared memory (kernels that do not say how much).
template <typename Kernel>
void launch(unsigned blocks, int threads, Kernel kernel,
            std::source_location site = std::source_location::current()) {
    launch(blocks, threads, sizeof closs_emulated_dynamic_shared, kernel, site);
}
