// The CPU harness's shared-memory race check (tests/cuda_on_cpu.h), for the accesses it sees: those
// through the functions of cuda/tile_ptx.cuh (shared_load, shared_store, ldmatrix_*, cp_async_16).
//
// Happens-before, as the hardware gives it to shared memory: program order within a thread;
// __syncthreads() between any two threads of the block; __syncwarp(mask) between the lanes of
// `mask`; and a cp.async copy lands as a write of the issuing thread at its cp_async_wait (others
// see it only after a barrier that follows that wait). Nothing else orders: not the register
// exchange of a warp collective (mma.sync, ldmatrix, shuffles), nor the fact that on the CPU the
// lanes ran one after another.
//
// Shadow state per 2 bytes of shared memory: the last write (thread, barrier epoch, the writer's
// warp-local clock) and the reads since (their warp, each reading lane's clock), plus a cp.async
// copy in flight into it. A barrier epoch ends at each __syncthreads; inside one, lanes of a warp
// carry vector clocks that __syncwarp merges, so that "a and b met at a barrier after the first
// access and before the second" is exact, transitively. A race is a read or write of a unit that
// another thread wrote (or, for a write, read) with no such barrier between: the check reports it
// at the second access, whichever order the fibers ran them in, with both threads and both sites.
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <source_location>
#include <string>
#include <unordered_map>
#include <vector>

#include "cuda_on_cpu_fibers.h"

// The ends of the program's code and static storage (GNU ld provides both).
extern "C" char __etext[], _end[];

namespace cuda_on_cpu {

class RaceCheck final : public BarrierObserver {
  public:
    static constexpr uint16_t kNobody = 0xffff;

    // The launch's dynamic shared memory: `bytes` of the buffer at `base` (the rest of the buffer
    // is out of bounds for this launch).
    void set_dynamic_shared(unsigned char *base, size_t capacity, size_t bytes) {
        dynamic_base_ = base, dynamic_capacity_ = capacity, dynamic_bytes_ = bytes;
    }
    bool in_dynamic_buffer(const void *address) const {
        const auto *p = static_cast<const unsigned char *>(address);
        return p >= dynamic_base_ && p < dynamic_base_ + dynamic_capacity_;
    }

    // A shared-memory access of `bytes` at `address` by `thread`; faults on a race, or on an
    // address outside shared memory.
    void read(int thread, const void *address, size_t bytes, const char *op,
              const std::source_location &site) {
        const uint16_t id = site_id(op, site);
        for_each_unit(address, bytes, op, site,
                      [&](Unit &u, uintptr_t a) { check_read(u, a, thread, id); });
    }
    void write(int thread, const void *address, size_t bytes, const char *op,
               const std::source_location &site) {
        const uint16_t id = site_id(op, site);
        for_each_unit(address, bytes, op, site, [&](Unit &u, uintptr_t a) {
            check_write(u, a, thread, id);
            record_write(u, thread, id);
        });
    }

    // cp.async: at the issue, a write that must not race with what came before, then the bytes
    // are in flight (any access before they land is a race); at the wait that covers it, the write
    // lands as the issuing thread's.
    void async_issue(int thread, const void *address, size_t bytes, const char *op,
                     const std::source_location &site) {
        const uint16_t id = site_id(op, site);
        for_each_unit(address, bytes, op, site, [&](Unit &u, uintptr_t a) {
            check_write(u, a, thread, id);
            u.pending_block = block_serial_, u.pending_writer = (uint16_t)thread,
            u.pending_site = id;
            u.read_epoch = 0;
        });
    }
    void async_land(int thread, const void *address, size_t bytes, const char *op,
                    const std::source_location &site) {
        for_each_unit(address, bytes, op, site, [&](Unit &u, uintptr_t) {
            u.pending_block = 0;
            record_write(u, thread, u.pending_site);
        });
    }

    // Whether `bytes` at `address` lie in shared memory (the launch's dynamic part, or static
    // storage, where the harness puts __shared__ variables); if not, why not.
    std::string outside_shared(const void *address, size_t bytes) const {
        const auto a = reinterpret_cast<uintptr_t>(address);
        const auto base = reinterpret_cast<uintptr_t>(dynamic_base_);
        if (a >= base && a < base + dynamic_capacity_) {
            if (a + bytes <= base + dynamic_bytes_) return {};
            return "dynamic shared memory +" + std::to_string(a - base) + ", past the launch's " +
                   std::to_string(dynamic_bytes_) + " bytes";
        }
        if (a >= reinterpret_cast<uintptr_t>(__etext) &&
            a + bytes <= reinterpret_cast<uintptr_t>(_end))
            return {};
        return "address " + hex(a) +
               ", not shared memory (neither the launch's dynamic shared memory nor a " +
               "__shared__ variable: a global or local pointer?)";
    }

    std::string describe(uintptr_t a) const {
        const auto base = reinterpret_cast<uintptr_t>(dynamic_base_);
        if (a >= base && a < base + dynamic_capacity_)
            return "dynamic shared memory +" + std::to_string(a - base);
        return "__shared__ variable byte " + hex(a);
    }

    // BarrierObserver
    void block_started(int threads) override {
        ++block_serial_;
        clocks_.resize((threads + 31) / 32);
        block_barrier();
    }
    void block_barrier() override {
        ++epoch_;
        for (auto &warp : clocks_)
            for (int lane = 0; lane < 32; ++lane) {
                warp[lane].fill(0);
                warp[lane][lane] = 1;
            }
    }
    void warp_barrier(int warp, uint32_t lanes) override {
        std::array<uint32_t, 32> merged{};
        for (int l = 0; l < 32; ++l)
            if (lanes >> l & 1)
                for (int k = 0; k < 32; ++k) merged[k] = std::max(merged[k], clocks_[warp][l][k]);
        for (int l = 0; l < 32; ++l)
            if (lanes >> l & 1) {
                clocks_[warp][l] = merged;
                ++clocks_[warp][l][l];
            }
    }

  private:
    struct Unit {
        uint32_t write_epoch = 0, write_clock = 0;
        uint16_t writer = 0, write_site = 0;
        uint32_t pending_block = 0; // a cp.async in flight, issued in this block (0: none)
        uint16_t pending_writer = 0, pending_site = 0;
        uint32_t read_epoch = 0, read_lanes = 0; // reads in this epoch: lanes of warp read_warp
        uint16_t read_warp = 0;
        uint16_t other_reader = kNobody, other_site = 0; // a reader in another warp (then any
                                                         // write in this epoch races)
        uint32_t read_clock[32];
        uint16_t read_site[32];
    };
    struct Site {
        const char *op;
        std::source_location where;
    };

    template <typename F>
    void for_each_unit(const void *address, size_t bytes, const char *op,
                       const std::source_location &site, F f) {
        const std::string outside = outside_shared(address, bytes);
        if (!outside.empty()) fault(std::string(op) + " at " + where(site) + ": " + outside);
        const auto first = reinterpret_cast<uintptr_t>(address) & ~uintptr_t(1);
        const auto last = reinterpret_cast<uintptr_t>(address) + (bytes ? bytes : 1);
        const auto base = reinterpret_cast<uintptr_t>(dynamic_base_);
        for (uintptr_t a = first; a < last; a += 2) {
            if (a >= base && a < base + dynamic_capacity_) {
                const size_t index = (a - base) / 2;
                if (index >= dynamic_units_.size()) dynamic_units_.resize(dynamic_capacity_ / 2);
                f(dynamic_units_[index], a);
            } else {
                f(static_units_[a], a);
            }
        }
    }

    uint32_t clock(int thread, int of_lane) const {
        return clocks_[thread / 32][thread % 32][of_lane];
    }
    bool pending(const Unit &u) const { return u.pending_block == block_serial_; }

    // Whether the access of `earlier` (at its own clock `earlier_clock`, this epoch) happens before
    // now in thread `later`: the same thread, or lanes of one warp that met at a __syncwarp since.
    bool ordered(int earlier, uint32_t earlier_clock, int later) const {
        if (earlier == later) return true;
        if (earlier / 32 != later / 32) return false;
        return clock(later, earlier % 32) >= earlier_clock;
    }

    void check_read(Unit &u, uintptr_t a, int thread, uint16_t id) {
        if (pending(u)) race_with_copy(u, a, thread, id, "reads");
        if (u.write_epoch == epoch_ && !ordered(u.writer, u.write_clock, thread))
            race(a, thread, id, "reads", u.writer, u.write_site, "wrote");
        const int warp = thread / 32, lane = thread % 32;
        if (u.read_epoch != epoch_) {
            u.read_epoch = epoch_, u.read_warp = (uint16_t)warp, u.read_lanes = 0,
            u.other_reader = kNobody;
        }
        if (u.read_warp == warp) {
            u.read_lanes |= 1u << lane;
            u.read_clock[lane] = clock(thread, lane);
            u.read_site[lane] = id;
        } else if (u.other_reader == kNobody) {
            u.other_reader = (uint16_t)thread, u.other_site = id;
        }
    }

    void check_write(Unit &u, uintptr_t a, int thread, uint16_t id) {
        if (pending(u)) race_with_copy(u, a, thread, id, "writes");
        if (u.write_epoch == epoch_ && !ordered(u.writer, u.write_clock, thread))
            race(a, thread, id, "writes", u.writer, u.write_site, "wrote");
        if (u.read_epoch != epoch_) return;
        const int warp = thread / 32;
        if (u.read_warp != warp) {
            const int reader = u.read_warp * 32 + __builtin_ctz(u.read_lanes);
            race(a, thread, id, "writes", reader, u.read_site[reader % 32], "read");
        }
        if (u.other_reader != kNobody)
            race(a, thread, id, "writes", u.other_reader, u.other_site, "read");
        for (uint32_t lanes = u.read_lanes; lanes; lanes &= lanes - 1) {
            const int lane = __builtin_ctz(lanes), reader = warp * 32 + lane;
            if (!ordered(reader, u.read_clock[lane], thread))
                race(a, thread, id, "writes", reader, u.read_site[lane], "read");
        }
    }

    void record_write(Unit &u, int thread, uint16_t id) {
        u.write_epoch = epoch_, u.write_clock = clock(thread, thread % 32);
        u.writer = (uint16_t)thread, u.write_site = id;
        u.read_epoch = 0;
    }

    std::string who(int thread) const {
        return "thread " + std::to_string(thread) + " (warp " + std::to_string(thread / 32) +
               ", lane " + std::to_string(thread % 32) + ")";
    }
    std::string at(uint16_t id) const {
        const Site &s = sites_[id];
        return std::string("through ") + s.op + " at " + where(s.where);
    }

    [[noreturn]] void race(uintptr_t a, int thread, uint16_t id, const char *verb, int other,
                           uint16_t other_id, const char *other_verb) const {
        const bool one_warp = thread / 32 == other / 32;
        fault("race on " + describe(a) + ": " + who(thread) + " " + verb + " it " + at(id) +
              ", and " + who(other) + " " + other_verb + " it " + at(other_id) +
              (one_warp ? ", with no __syncthreads, nor __syncwarp joining both, between them"
                        : ", with no __syncthreads between them (other warps)"));
    }

    [[noreturn]] void race_with_copy(const Unit &u, uintptr_t a, int thread, uint16_t id,
                                     const char *verb) const {
        const std::string copy =
            " while the cp_async_16 issued at " + where(sites_[u.pending_site].where);
        if (u.pending_writer == thread)
            fault("race on " + describe(a) + ": " + who(thread) + " " + verb + " it " + at(id) +
                  copy + " by the same thread is in flight: no cp_async_wait covers it yet");
        fault("race on " + describe(a) + ": " + who(thread) + " " + verb + " it " + at(id) + copy +
              " by " + who(u.pending_writer) +
              " is in flight: no cp_async_wait of that thread, then a barrier, comes between");
    }

    uint16_t site_id(const char *op, const std::source_location &where) {
        const Key key{op, where.file_name(), where.function_name(), where.line(), where.column()};
        const auto [it, added] = site_ids_.try_emplace(key, (uint16_t)sites_.size());
        if (added) {
            if (sites_.size() == 0xffff) fault("the race check's table of access sites is full");
            sites_.push_back({op, where});
        }
        return it->second;
    }
    struct Key {
        const char *op, *file, *function;
        uint32_t line, column;
        bool operator==(const Key &) const = default;
    };
    struct KeyHash {
        size_t operator()(const Key &k) const {
            size_t h = std::hash<const void *>()(k.op);
            h = h * 31 + std::hash<const void *>()(k.file);
            h = h * 31 + std::hash<const void *>()(k.function);
            return h * 31 + (size_t)k.line * 131 + k.column;
        }
    };

    static std::string hex(uintptr_t v) {
        char text[24];
        snprintf(text, sizeof text, "0x%llx", (unsigned long long)v);
        return text;
    }

    unsigned char *dynamic_base_ = nullptr;
    size_t dynamic_capacity_ = 0, dynamic_bytes_ = 0;
    std::vector<Unit> dynamic_units_;
    std::unordered_map<uintptr_t, Unit> static_units_;
    std::vector<std::array<std::array<uint32_t, 32>, 32>> clocks_; // [warp][lane][of lane]
    uint32_t epoch_ = 0, block_serial_ = 0;
    std::vector<Site> sites_;
    std::unordered_map<Key, uint16_t, KeyHash> site_ids_;
};

} // namespace cuda_on_cpu
