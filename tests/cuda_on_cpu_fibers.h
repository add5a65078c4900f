// The CPU harness's execution model (tests/cuda_on_cpu.h): a block's CUDA threads run as
// cooperative fibers on the calling OS thread, one at a time, each on a stack of its own. A thread
// runs until it waits (__syncthreads, __syncwarp, a warp-collective instruction) or ends; the
// scheduler then resumes the next ready thread in a fixed order, so every run of a test takes the
// same interleaving. A wait is over when its last participant arrives: that thread releases the
// others (they queue up, in thread order) and itself runs on.
//
// What ends a block early, as a fault on a GPU would end the kernel: a failed check of the harness
// (a race, a misaligned or out-of-bounds shared address, a divergent warp collective) and a
// deadlock (no thread can run, some have not ended). launch() then throws cuda_on_cpu::KernelFault
// with a message that says where; the block's fibers are dropped where they stood.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <functional>
#include <memory>
#include <source_location>
#include <stdexcept>
#include <string>
#include <vector>

#include <sys/mman.h>

// A hand-written switch on x86-64 (no system call: swapcontext's signal-mask calls would cost
// more than the work between two switches); ucontext elsewhere, or with CLOSS_FIBERS_UCONTEXT.
#if defined(__x86_64__) && !defined(CLOSS_FIBERS_UCONTEXT)
#    define CLOSS_FIBERS_X86_64 1
#else
#    include <ucontext.h>
#endif

namespace cuda_on_cpu {

// What the harness reports instead of running on: the kernel would have faulted, raced or hung.
struct KernelFault : std::runtime_error {
    using std::runtime_error::runtime_error;
};

[[noreturn]] inline void fault(const std::string &message) { throw KernelFault(message); }

inline std::string where(const std::source_location &site) {
    std::string file = site.file_name();
    const size_t slash = file.find_last_of('/');
    if (slash != std::string::npos) file.erase(0, slash + 1);
    return file + ":" + std::to_string(site.line()) + " (" + site.function_name() + ")";
}

} // namespace cuda_on_cpu

#ifdef CLOSS_FIBERS_X86_64
// closs_fiber_switch(save, load): saves the callee-saved registers, MXCSR and the x87 control word
// on the current stack, stores the stack pointer in *save, switches to the stack `load` (saved
// the same way, or prepared by Fiber::start) and restores from it. closs_fiber_start is where a
// new fiber's first switch returns to: it calls r13(r12) (Fiber::start puts them there), which
// never returns. Weak, so that two test files including this header link.
extern "C" void closs_fiber_switch(void **save, void *load);
asm(R"(
    .text
    .p2align 4
    .weak closs_fiber_switch
    .hidden closs_fiber_switch
    .type closs_fiber_switch, @function
closs_fiber_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size closs_fiber_switch, .-closs_fiber_switch

    .p2align 4
    .weak closs_fiber_start
    .hidden closs_fiber_start
    .type closs_fiber_start, @function
closs_fiber_start:
    movq %r12, %rdi
    callq *%r13
    ud2
    .size closs_fiber_start, .-closs_fiber_start
)");
extern "C" void closs_fiber_start();
#endif

namespace cuda_on_cpu {

// One execution context with its own stack (mmap'ed, a guard page below it, kept for reuse).
class Fiber {
  public:
    static constexpr size_t kStackBytes = 1 << 20;
    static constexpr size_t kGuardBytes = 1 << 12;

    Fiber() {
        memory_ = mmap(nullptr, kStackBytes + kGuardBytes, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (memory_ == MAP_FAILED)
            throw std::runtime_error("CPU harness: no memory for a fiber stack");
        mprotect(memory_, kGuardBytes, PROT_NONE); // an overflow faults instead of corrupting
    }
    ~Fiber() {
        if (memory_) munmap(memory_, kStackBytes + kGuardBytes);
    }
    Fiber(const Fiber &) = delete;
    Fiber &operator=(const Fiber &) = delete;

    // Prepares the fiber so that the next switch_from() into it runs entry(argument) on its stack.
    void start(void (*entry)(void *), void *argument) {
        char *top = static_cast<char *>(memory_) + kGuardBytes + kStackBytes;
#ifdef CLOSS_FIBERS_X86_64
        // closs_fiber_switch pops 8 bytes (MXCSR, x87 control word), r15..r12, rbx, rbp, then
        // returns into closs_fiber_start with rsp 16-byte aligned, as a call expects.
        auto *frame = reinterpret_cast<uint64_t *>(top - 96);
        uint32_t control[2] = {};
        asm volatile("stmxcsr %0\n\tfnstcw %1" : "=m"(control[0]), "=m"(control[1]));
        uint64_t modes;
        static_assert(sizeof modes == sizeof control);
        __builtin_memcpy(&modes, control, sizeof modes);
        frame[0] = modes;
        frame[1] = 0, frame[2] = 0;                                // r15, r14
        frame[3] = reinterpret_cast<uint64_t>(entry);              // r13
        frame[4] = reinterpret_cast<uint64_t>(argument);           // r12
        frame[5] = 0, frame[6] = 0;                                // rbx, rbp
        frame[7] = reinterpret_cast<uint64_t>(&closs_fiber_start); // return address
        stack_pointer_ = frame;
#else
        getcontext(&context_);
        context_.uc_stack.ss_sp = static_cast<char *>(memory_) + kGuardBytes;
        context_.uc_stack.ss_size = kStackBytes;
        context_.uc_link = nullptr;
        pending_entry_ = entry, pending_argument_ = argument;
        makecontext(&context_, reinterpret_cast<void (*)()>(&Fiber::trampoline), 0);
        (void)top;
#endif
    }

    // Leaves `from` (the running context, its state saved there) for this fiber.
    void switch_from(Fiber &from) {
#ifdef CLOSS_FIBERS_X86_64
        closs_fiber_switch(&from.stack_pointer_, stack_pointer_);
#else
        starting_ = this;
        swapcontext(&from.context_, &context_);
#endif
    }

    // A Fiber object for the OS thread's own stack (no memory of its own).
    struct Main {};
    explicit Fiber(Main) {}

  private:
    void *memory_ = nullptr;
#ifdef CLOSS_FIBERS_X86_64
    void *stack_pointer_ = nullptr;
#else
    ucontext_t context_{};
    void (*pending_entry_)(void *) = nullptr;
    void *pending_argument_ = nullptr;
    static inline thread_local Fiber *starting_ = nullptr;
    static void trampoline() { starting_->pending_entry_(starting_->pending_argument_); }
#endif
};

// Hooks of the race check (tests/cuda_on_cpu_races.h) into the scheduler's barriers.
struct BarrierObserver {
    virtual void block_started(int threads) = 0;
    virtual void block_barrier() = 0;
    virtual void warp_barrier(int warp, uint32_t lanes) = 0;
    virtual ~BarrierObserver() = default;
};

// A warp-collective instruction as one lane brought it: the lanes' `arguments` (pointers into
// their own stacks) stay valid until the last lane's `finish` has run on all 32.
struct CollectiveSlot {
    const char *name = nullptr;
    std::source_location site;
    void *arguments = nullptr;
};
using CollectiveFinish = void (*)(int warp, CollectiveSlot (&lanes)[32]);

// The threads of one block and what each waits for.
class BlockScheduler {
  public:
    static constexpr int kMaxThreads = 1024;

    // Runs body() as threads 0..threads−1 of one block; returns when every thread has ended.
    // Throws KernelFault (the block is abandoned) on a fault or a deadlock.
    void run(int threads, const std::function<void()> &body, BarrierObserver &observer,
             const std::function<void(int thread)> &on_switch) {
        if (threads < 1 || threads > kMaxThreads)
            fault("a block of " + std::to_string(threads) + " threads");
        while ((int)fibers_.size() < threads) fibers_.push_back(std::make_unique<Fiber>());
        count_ = threads, body_ = &body, observer_ = &observer;
        state_.assign(threads, State{});
        warps_.assign((threads + 31) / 32, Warp{});
        for (int w = 0; w < (int)warps_.size(); ++w)
            warps_[w].alive = threads - 32 * w >= 32 ? 0xffffffffu : (1u << (threads - 32 * w)) - 1;
        ready_.clear();
        at_block_barrier_ = 0, ended_ = 0, failure_.clear();
        observer.block_started(threads);
        for (int t = 0; t < threads; ++t) {
            fibers_[t]->start(&BlockScheduler::thread_main, this);
            ready_.push_back(t);
        }
        while (!ready_.empty()) {
            current_ = ready_.front();
            ready_.pop_front();
            on_switch(current_);
            fibers_[current_]->switch_from(main_);
            if (!failure_.empty()) {
                current_ = -1;
                fault(failure_);
            }
        }
        current_ = -1;
        if (ended_ != count_) fault(deadlock_report());
    }

    int current() const { return current_; }
    int threads() const { return count_; }

    // __syncthreads(): every thread of the block that has not ended.
    void block_barrier(const std::source_location &site) {
        state_[current_].wait = Wait::block_barrier, state_[current_].site = site;
        ++at_block_barrier_;
        if (at_block_barrier_ + ended_ == count_) release_block_barrier();
        else suspend();
    }

    // __syncwarp(mask): the lanes of `mask` in the calling thread's warp.
    void warp_barrier(uint32_t mask, const std::source_location &site) {
        const int warp = current_ / 32, lane = current_ % 32;
        if (!(mask >> lane & 1))
            fault("__syncwarp(0x" + hex(mask) + ") by lane " + std::to_string(lane) +
                  ", not in its own mask, at " + where(site));
        check_lanes_alive(warp, mask, "__syncwarp", site);
        Warp &w = warps_[warp];
        w.sync_mask[lane] = mask;
        state_[current_].wait = Wait::warp_barrier, state_[current_].site = site;
        for (int l = 0; l < 32; ++l)
            if ((mask >> l & 1) && w.sync_mask[l] != mask) return suspend();
        for (int l = 0; l < 32; ++l)
            if (mask >> l & 1) {
                w.sync_mask[l] = 0;
                if (l != lane) release(warp * 32 + l);
            }
        state_[current_].wait = Wait::none;
        observer_->warp_barrier(warp, mask);
    }

    // A warp-collective instruction (.sync.aligned: all 32 lanes execute the same one). The last
    // lane to arrive checks that they agree and runs finish(); none of this orders memory.
    void warp_collective(const char *name, const std::source_location &site, void *arguments,
                         CollectiveFinish finish) {
        const int warp = current_ / 32, lane = current_ % 32;
        check_lanes_alive(warp, 0xffffffffu, name, site);
        Warp &w = warps_[warp];
        w.collective[lane] = {name, site, arguments};
        w.collective_lanes |= 1u << lane;
        state_[current_].wait = Wait::collective, state_[current_].site = site;
        if (w.collective_lanes != 0xffffffffu) return suspend();
        for (int l = 0; l < 32; ++l) {
            const CollectiveSlot &other = w.collective[l];
            if (other.name != name || !same_site(other.site, site))
                fault("divergent warp: lane " + std::to_string(lane) + " at " + name + ", " +
                      where(site) + "; lane " + std::to_string(l) + " at " + other.name + ", " +
                      where(other.site));
        }
        w.collective_lanes = 0;
        finish(warp, w.collective);
        for (int l = 0; l < 32; ++l)
            if (l != lane) release(warp * 32 + l);
        state_[current_].wait = Wait::none;
    }

  private:
    enum class Wait : uint8_t { none, block_barrier, warp_barrier, collective, ended };
    struct State {
        Wait wait = Wait::none;
        std::source_location site;
    };
    struct Warp {
        uint32_t sync_mask[32] = {}; // each lane's __syncwarp mask while it waits there, else 0
        uint32_t collective_lanes = 0;
        uint32_t alive = 0; // lanes that exist and have not ended
        CollectiveSlot collective[32];
    };

    static bool same_site(const std::source_location &a, const std::source_location &b) {
        return a.line() == b.line() && a.column() == b.column() &&
               std::string_view(a.file_name()) == b.file_name();
    }
    static std::string hex(uint32_t v) {
        char text[16];
        snprintf(text, sizeof text, "%08x", v);
        return text;
    }

    static void thread_main(void *self_pointer) {
        auto *self = static_cast<BlockScheduler *>(self_pointer);
        try {
            (*self->body_)();
            self->end_thread();
        } catch (const std::exception &error) {
            self->failure_ = error.what();
        } catch (...) {
            self->failure_ = "an exception that is not a std::exception";
        }
        self->main_.switch_from(*self->fibers_[self->current_]); // never resumed
        __builtin_trap();
    }

    void end_thread() {
        const int warp = current_ / 32, lane = current_ % 32;
        state_[current_].wait = Wait::ended;
        ++ended_;
        Warp &w = warps_[warp];
        w.alive &= ~(1u << lane);
        for (int l = 0; l < 32; ++l) {
            const int other = warp * 32 + l;
            if (other >= count_) break;
            const bool waits_for_it = (w.collective_lanes >> l & 1) || (w.sync_mask[l] >> lane & 1);
            if (waits_for_it)
                fault("thread " + std::to_string(current_) + " ended while lane " +
                      std::to_string(l) + " of its warp waits for it at " +
                      where(state_[other].site));
        }
        if (at_block_barrier_ > 0 && at_block_barrier_ + ended_ == count_) release_block_barrier();
    }

    // A warp instruction or barrier over `mask` needs every lane there to exist and not to have
    // ended (the PTX ISA leaves it undefined otherwise).
    void check_lanes_alive(int warp, uint32_t mask, const char *name,
                           const std::source_location &site) {
        const uint32_t missing = mask & ~warps_[warp].alive;
        if (!missing) return;
        const int lane = __builtin_ctz(missing), thread = warp * 32 + lane;
        if (thread >= count_)
            fault(std::string(name) + " at " + where(site) + " names lane " + std::to_string(lane) +
                  ", which this block of " + std::to_string(count_) + " threads does not have");
        fault(std::string(name) + " at " + where(site) + " by thread " + std::to_string(current_) +
              " names lane " + std::to_string(lane) + ", which has ended");
    }

    void release_block_barrier() {
        at_block_barrier_ = 0;
        observer_->block_barrier();
        for (int t = 0; t < count_; ++t)
            if (state_[t].wait == Wait::block_barrier && t != current_) release(t);
        if (state_[current_].wait == Wait::block_barrier) state_[current_].wait = Wait::none;
    }

    void release(int thread) {
        state_[thread].wait = Wait::none;
        ready_.push_back(thread);
    }

    void suspend() { main_.switch_from(*fibers_[current_]); }

    // Which threads wait where, runs of consecutive threads at the same place in one line.
    std::string deadlock_report() const {
        std::string report = "deadlock: no thread can run, " + std::to_string(count_ - ended_) +
                             " of " + std::to_string(count_) + " wait:";
        for (int first = 0, last; first < count_; first = last + 1) {
            const State &s = state_[first];
            last = first;
            while (last + 1 < count_ && state_[last + 1].wait == s.wait &&
                   same_site(state_[last + 1].site, s.site))
                ++last;
            if (s.wait == Wait::ended) continue;
            const char *what = s.wait == Wait::block_barrier  ? "__syncthreads"
                               : s.wait == Wait::warp_barrier ? "__syncwarp"
                                                              : "a warp collective";
            report += "\n  thread" +
                      (last > first ? "s " + std::to_string(first) + "-" : std::string(" ")) +
                      std::to_string(last) + " at " + what + ", " + where(s.site);
        }
        return report;
    }

    std::vector<std::unique_ptr<Fiber>> fibers_;
    Fiber main_{Fiber::Main{}};
    std::vector<State> state_;
    std::vector<Warp> warps_;
    std::deque<int> ready_;
    int count_ = 0, current_ = -1, at_block_barrier_ = 0, ended_ = 0;
    const std::function<void()> *body_ = nullptr;
    BarrierObserver *observer_ = nullptr;
    std::string failure_;
};

} // namespace cuda_on_cpu
