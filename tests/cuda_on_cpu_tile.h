// cuda/tile_ptx.cuh on the CPU (tests/cuda_on_cpu.h): each instruction acts on each lane's
// registers as the PTX ISA's tables define it, and every shared-memory access goes through the
// race check (tests/cuda_on_cpu_races.h). The fragment maps (fragment_maps below) are written from
// the PTX ISA ("Matrix Fragments for mma.m16n8k16 with floating point type", "Warp-level matrix
// load instruction: ldmatrix"); tests/test_cuda_on_cpu.cpp checks the instructions' behaviour
// against CUTLASS CuTe's independent encoding of the same layouts.
//
//   mma_m16n8k16<T>  a warp collective: the last lane to arrive gathers A (16 × 16), B (16 × 8)
//       and C (16 × 8) from the 32 lanes' registers, computes D and scatters it. The product of
//       two f16 values is exact in float (11 + 11 significant bits, exponents well inside float's),
//       as is that of two bf16 values (8 + 8 bits) unless it leaves float's range; each D[m][n] is
//       C[m][n] plus the 16 products added one at a time in order k = 0..15, in float (round to
//       nearest even). The PTX ISA leaves the order and rounding of the tensor cores' sum
//       unspecified (measurements of V100 to A100 tensor cores, Fasi et al., "Numerical behavior
//       of NVIDIA tensor cores", PeerJ CS 2021, found exact products and a sum of aligned
//       significands truncated, not rounded). A float sum in k order errs by about as much, and
//       is no more accurate, so a tolerance that holds here is not one that only a double sum (or
//       one rounding at the end) would meet; and it is deterministic, so a test's numbers repeat.
//   ldmatrix_x{1,2,4}[_trans]  a warp collective: lanes 8q..8q+7 give the row addresses of matrix
//       q (the other lanes' addresses are not read); each must be 16-byte aligned and its 16 bytes
//       inside shared memory, or the kernel faults, as on the hardware. Register q of lane l gets
//       row l/4, elements 2(l%4), 2(l%4)+1 of matrix q (low half first), or with .trans the
//       elements (2(l%4), l/4) and (2(l%4)+1, l/4). Each row is read as the lane that gave its
//       address (that is whose access the race check sees).
//   cp_async_16  both addresses 16-byte aligned, the destination in shared memory, 0 ≤ bytes ≤
//       16, or the kernel faults. The source's `bytes` are read at the issue; the destination is
//       filled with 0xff (NaN in f16, bf16 and f32) and the copy lands (the bytes, zeros past
//       `bytes`) when the issuing thread's cp_async_wait covers its group: a kernel that reads too
//       early sees the poison, and the race check reports it. Copies still in flight when the
//       block ends are dropped.
//   cp_async_commit / cp_async_wait<N>  per thread: commit closes the open group (possibly
//       empty); wait lands every committed group but the N newest. Neither orders memory between
//       threads (a barrier after the wait does).
//   shared_load / shared_store  an access of sizeof(T) bytes, aligned to alignof(T) (else a
//       fault), race-checked.
//   pack_pair<T>  two floats rounded to nearest even, lo in the low half.
// Each function takes a defaulted std::source_location, which the nvcc versions do not have: the
// call sites are the same, and the harness's messages name the line of the access.
#pragma once

#include <cstdint>
#include <cstring>
#include <deque>
#include <source_location>
#include <string>
#include <type_traits>
#include <vector>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "cuda_on_cpu_fibers.h"
#include "cuda_on_cpu_races.h"

namespace cuda_on_cpu {

// One cp.async copy in flight.
struct AsyncCopy {
    void *destination;
    unsigned char bytes[16];
    std::source_location site;
};
struct AsyncGroups {
    std::vector<AsyncCopy> open;                  // issued since the last commit
    std::deque<std::vector<AsyncCopy>> committed; // oldest first
};

// What the harness keeps for the block that runs.
struct Harness {
    BlockScheduler scheduler;
    RaceCheck races;
    std::vector<AsyncGroups> async; // per thread
};
inline Harness &harness() {
    static Harness instance;
    return instance;
}
inline int current_thread() { return harness().scheduler.current(); }

// The fragment tables of the PTX ISA: (lane, element) → (row, column), where element i of a
// fragment is half i % 2 (0 low) of register i / 2.
namespace fragment_maps {
struct Position {
    int row, column;
};
// mma.m16n8k16 A (16 × 16, row major), 8 elements a0..a7 per lane.
inline Position mma_a(int lane, int i) {
    const int group = lane / 4, in_group = lane % 4;
    return {group + 8 * (i / 2 % 2), 2 * in_group + i % 2 + 8 * (i / 4)};
}
// mma.m16n8k16 B (16 × 8, K × N, column major), 4 elements b0..b3 per lane.
inline Position mma_b(int lane, int i) {
    const int group = lane / 4, in_group = lane % 4;
    return {2 * in_group + i % 2 + 8 * (i / 2), group};
}
// mma.m16n8k16 C and D (16 × 8, float), 4 elements c0..c3 per lane, one per register.
inline Position mma_c(int lane, int i) {
    const int group = lane / 4, in_group = lane % 4;
    return {group + 8 * (i / 2), 2 * in_group + i % 2};
}
// ldmatrix m8n8.b16: element i (0, 1) of a lane's register for one matrix, as (row, column) of
// that matrix in memory; `trans` gives the transposed form's.
inline Position ldmatrix(int lane, int i, bool trans) {
    const Position p = {lane / 4, 2 * (lane % 4) + i};
    return trans ? Position{p.column, p.row} : p;
}
} // namespace fragment_maps

inline float f16_value(uint16_t bits) {
    __half_raw raw;
    raw.x = bits;
    return __half2float(__half(raw));
}
inline float bf16_value(uint16_t bits) {
    const uint32_t word = (uint32_t)bits << 16;
    float value;
    std::memcpy(&value, &word, 4);
    return value;
}

template <typename T> struct MmaArguments {
    float *d;
    const uint32_t *a, *b;
};

template <typename T> void mma_finish(int, CollectiveSlot (&lanes)[32]) {
    using namespace fragment_maps;
    float a[16][16], b[16][8], c[16][8];
    auto value = [](uint32_t reg, int half) {
        const auto bits = (uint16_t)(reg >> (16 * half));
        return std::is_same_v<T, __half> ? f16_value(bits) : bf16_value(bits);
    };
    for (int lane = 0; lane < 32; ++lane) {
        const auto &in = *static_cast<const MmaArguments<T> *>(lanes[lane].arguments);
        for (int i = 0; i < 8; ++i) {
            const Position p = mma_a(lane, i);
            a[p.row][p.column] = value(in.a[i / 2], i % 2);
        }
        for (int i = 0; i < 4; ++i) {
            const Position p = mma_b(lane, i);
            b[p.row][p.column] = value(in.b[i / 2], i % 2);
            const Position q = mma_c(lane, i);
            c[q.row][q.column] = in.d[i];
        }
    }
    for (int lane = 0; lane < 32; ++lane) {
        const auto &out = *static_cast<const MmaArguments<T> *>(lanes[lane].arguments);
        for (int i = 0; i < 4; ++i) {
            const Position p = mma_c(lane, i);
            float sum = c[p.row][p.column];
            for (int k = 0; k < 16; ++k) {
                const float product = a[p.row][k] * b[k][p.column]; // exact
                sum += product;
            }
            out.d[i] = sum;
        }
    }
}

struct LdmatrixArguments {
    uint32_t *registers;
    const void *row;
};

template <int kMatrices, bool kTrans> void ldmatrix_finish(int warp, CollectiveSlot (&lanes)[32]) {
    Harness &h = harness();
    uint16_t rows[32][8];
    for (int lane = 0; lane < 8 * kMatrices; ++lane) {
        const auto &in = *static_cast<const LdmatrixArguments *>(lanes[lane].arguments);
        const auto address = reinterpret_cast<uintptr_t>(in.row);
        auto fail = [&](const std::string &why) {
            fault(std::string(lanes[lane].name) + " at " + where(lanes[lane].site) + ": lane " +
                  std::to_string(lane) + "'s row address " + why);
        };
        if (address % 16) fail("is not 16-byte aligned (the hardware faults: misaligned address)");
        const std::string outside = h.races.outside_shared(in.row, 16);
        if (!outside.empty()) fail("is outside shared memory: " + outside);
        h.races.read(warp * 32 + lane, in.row, 16, lanes[lane].name, lanes[lane].site);
        std::memcpy(rows[lane], in.row, 16);
    }
    for (int lane = 0; lane < 32; ++lane) {
        const auto &out = *static_cast<const LdmatrixArguments *>(lanes[lane].arguments);
        for (int q = 0; q < kMatrices; ++q) {
            uint32_t reg = 0;
            for (int i = 0; i < 2; ++i) {
                const fragment_maps::Position p = fragment_maps::ldmatrix(lane, i, kTrans);
                reg |= (uint32_t)rows[8 * q + p.row][p.column] << (16 * i);
            }
            out.registers[q] = reg;
        }
    }
}

template <int kMatrices, bool kTrans>
void ldmatrix(const char *name, uint32_t *registers, const void *row,
              const std::source_location &site) {
    LdmatrixArguments arguments{registers, row};
    harness().scheduler.warp_collective(name, site, &arguments,
                                        &ldmatrix_finish<kMatrices, kTrans>);
}

} // namespace cuda_on_cpu

namespace closs {
namespace tile {

using Site = std::source_location;

template <typename T>
void mma_m16n8k16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                  Site site = Site::current()) {
    static_assert(std::is_same_v<T, __half> || std::is_same_v<T, __nv_bfloat16>,
                  "f16 or bf16 operands");
    cuda_on_cpu::MmaArguments<T> arguments{d, a, b};
    cuda_on_cpu::harness().scheduler.warp_collective(
        std::is_same_v<T, __half> ? "mma_m16n8k16<f16>" : "mma_m16n8k16<bf16>", site, &arguments,
        &cuda_on_cpu::mma_finish<T>);
}

inline void ldmatrix_x1(uint32_t (&r)[1], const void *row, Site site = Site::current()) {
    cuda_on_cpu::ldmatrix<1, false>("ldmatrix_x1", r, row, site);
}
inline void ldmatrix_x2(uint32_t (&r)[2], const void *row, Site site = Site::current()) {
    cuda_on_cpu::ldmatrix<2, false>("ldmatrix_x2", r, row, site);
}
inline void ldmatrix_x4(uint32_t (&r)[4], const void *row, Site site = Site::current()) {
    cuda_on_cpu::ldmatrix<4, false>("ldmatrix_x4", r, row, site);
}
inline void ldmatrix_x1_trans(uint32_t (&r)[1], const void *row, Site site = Site::current()) {
    cuda_on_cpu::ldmatrix<1, true>("ldmatrix_x1_trans", r, row, site);
}
inline void ldmatrix_x2_trans(uint32_t (&r)[2], const void *row, Site site = Site::current()) {
    cuda_on_cpu::ldmatrix<2, true>("ldmatrix_x2_trans", r, row, site);
}
inline void ldmatrix_x4_trans(uint32_t (&r)[4], const void *row, Site site = Site::current()) {
    cuda_on_cpu::ldmatrix<4, true>("ldmatrix_x4_trans", r, row, site);
}

inline void cp_async_16(void *shared, const void *global, int bytes, Site site = Site::current()) {
    using namespace cuda_on_cpu;
    Harness &h = harness();
    const int thread = h.scheduler.current();
    auto fail = [&](const std::string &why) {
        fault("cp_async_16 at " + where(site) + " by thread " + std::to_string(thread) + ": " +
              why);
    };
    if (bytes < 0 || bytes > 16) fail("src-size " + std::to_string(bytes) + " outside 0..16");
    if (reinterpret_cast<uintptr_t>(shared) % 16)
        fail("the shared address is not 16-byte aligned (the hardware faults: misaligned address)");
    if (reinterpret_cast<uintptr_t>(global) % 16)
        fail("the global address is not 16-byte aligned (the hardware faults: misaligned address)");
    if (h.races.in_dynamic_buffer(global)) fail("the source is shared memory, not global");
    h.races.async_issue(thread, shared, 16, "cp_async_16", site);
    AsyncCopy copy{shared, {}, site};
    if (bytes > 0) std::memcpy(copy.bytes, global, bytes);
    std::memset(shared, 0xff, 16);
    h.async[thread].open.push_back(copy);
}

inline void cp_async_commit(Site = Site::current()) {
    cuda_on_cpu::AsyncGroups &groups = cuda_on_cpu::harness().async[cuda_on_cpu::current_thread()];
    groups.committed.push_back(std::move(groups.open));
    groups.open.clear();
}

template <int N> void cp_async_wait(Site site = Site::current()) {
    static_assert(N >= 0, "cp.async.wait_group N ≥ 0");
    cuda_on_cpu::Harness &h = cuda_on_cpu::harness();
    const int thread = h.scheduler.current();
    cuda_on_cpu::AsyncGroups &groups = h.async[thread];
    while (groups.committed.size() > (size_t)N) {
        for (const cuda_on_cpu::AsyncCopy &copy : groups.committed.front()) {
            h.races.async_land(thread, copy.destination, 16, "cp_async_wait", site);
            std::memcpy(copy.destination, copy.bytes, 16);
        }
        groups.committed.pop_front();
    }
}

template <typename T> T shared_load(const T *pointer, Site site = Site::current()) {
    using namespace cuda_on_cpu;
    if (reinterpret_cast<uintptr_t>(pointer) % alignof(T))
        fault("shared_load at " + where(site) + ": address not aligned to " +
              std::to_string(alignof(T)) + " bytes (the hardware faults: misaligned address)");
    harness().races.read(current_thread(), pointer, sizeof(T), "shared_load", site);
    T value;
    std::memcpy(static_cast<void *>(&value), pointer, sizeof(T));
    return value;
}

template <typename T> void shared_store(T *pointer, T value, Site site = Site::current()) {
    using namespace cuda_on_cpu;
    if (reinterpret_cast<uintptr_t>(pointer) % alignof(T))
        fault("shared_store at " + where(site) + ": address not aligned to " +
              std::to_string(alignof(T)) + " bytes (the hardware faults: misaligned address)");
    harness().races.write(current_thread(), pointer, sizeof(T), "shared_store", site);
    std::memcpy(static_cast<void *>(pointer), &value, sizeof(T));
}

template <typename T> uint32_t pack_pair(float lo, float hi) {
    static_assert(std::is_same_v<T, __half> || std::is_same_v<T, __nv_bfloat16>, "f16 or bf16");
    uint16_t bits[2];
    if constexpr (std::is_same_v<T, __half>) {
        const __half halves[2] = {__float2half_rn(lo), __float2half_rn(hi)};
        std::memcpy(bits, halves, 4);
    } else {
        const __nv_bfloat16 halves[2] = {__float2bfloat16_rn(lo), __float2bfloat16_rn(hi)};
        std::memcpy(bits, halves, 4);
    }
    return bits[0] | (uint32_t)bits[1] << 16;
}

} // namespace tile
} // namespace closs
