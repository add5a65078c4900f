// CUDA's built-ins on the CPU, for tests that run the kernels' own code a std::thread per CUDA
// thread (tests/test_contrastive_kernels.cpp, tests/test_rowwise_kernels.cpp): a std::barrier for
// __syncthreads(), one per warp for __shfl_xor_sync() and __any_sync(), `static` for __shared__
// (one block runs at a time). Include after <cuda_runtime_api.h> (which defines __shared__ and
// friends) and before the kernels; compile with -Wno-attributes -Wno-unknown-pragmas (the CUDA
// attributes and #pragma unroll mean nothing to g++).
#pragma once

#include <atomic>
#include <barrier>
#include <cstring>
#include <deque>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include <cuda_runtime_api.h>

// Stand-ins for the CUDA built-ins the kernels use.
struct sim_dim3 {
    unsigned x = 0, y = 0, z = 0;
};
thread_local sim_dim3 sim_threadIdx, sim_blockIdx;
sim_dim3 sim_blockDim, sim_gridDim;
#define threadIdx sim_threadIdx
#define blockIdx  sim_blockIdx
#define blockDim  sim_blockDim
#define gridDim   sim_gridDim
#undef __shared__
#define __shared__ static
#undef __launch_bounds__
#define __launch_bounds__(...)

static std::barrier<> *block_barrier;
static std::barrier<> *warp_barrier[8];
static float exchange[8][32];
static void __syncthreads() { block_barrier->arrive_and_wait(); }
static float __shfl_xor_sync(unsigned, float v, int offset) {
    const int w = threadIdx.x / 32, l = threadIdx.x % 32;
    exchange[w][l] = v;
    warp_barrier[w]->arrive_and_wait();
    const float other = exchange[w][l ^ offset];
    warp_barrier[w]->arrive_and_wait();
    return other;
}
static int __any_sync(unsigned, int p) {
    const int w = threadIdx.x / 32, l = threadIdx.x % 32;
    exchange[w][l] = (float)p;
    warp_barrier[w]->arrive_and_wait();
    int any = 0;
    for (int lane = 0; lane < 32; ++lane) any |= exchange[w][lane] != 0.0f;
    warp_barrier[w]->arrive_and_wait();
    return any;
}
static int atomicOr(int *address, int value) {
    return std::atomic_ref<int>(*address).fetch_or(value);
}
static float __int_as_float(int i) {
    float f;
    std::memcpy(&f, &i, 4);
    return f;
}

// The CPU threads that play a block's CUDA threads, kept from one block and launch to the next
// (starting a std::thread per CUDA thread per block cost most of these tests' time). Worker t
// plays threadIdx.x = t; a block runs when the launcher and every worker meet at `start`, and is
// over when they meet at `finish`; workers past the block's size only wait.
class BlockWorkers {
  public:
    ~BlockWorkers() { resize(0); }

    // Runs body() as threads 0..threads−1 of block `block`, and returns when all have finished.
    void run(unsigned block, int threads, const std::function<void()> &body) {
        if ((int)workers_.size() < threads) resize(threads);
        block_ = block, threads_ = threads, body_ = &body;
        start_->arrive_and_wait();
        finish_->arrive_and_wait();
    }

  private:
    void resize(int count) {
        if (!workers_.empty()) { // stop the old ones
            stop_ = true;
            start_->arrive_and_wait();
            for (auto &worker : workers_) worker.join();
            workers_.clear();
            stop_ = false;
        }
        if (count == 0) return;
        start_ = std::make_unique<std::barrier<>>(count + 1);
        finish_ = std::make_unique<std::barrier<>>(count + 1);
        for (int t = 0; t < count; ++t)
            workers_.emplace_back([this, t] {
                sim_threadIdx.x = t;
                for (;;) {
                    start_->arrive_and_wait();
                    if (stop_) return;
                    if (t < threads_) {
                        sim_blockIdx.x = block_;
                        (*body_)();
                    }
                    finish_->arrive_and_wait();
                }
            });
    }

    std::vector<std::thread> workers_;
    std::unique_ptr<std::barrier<>> start_, finish_;
    unsigned block_ = 0;
    int threads_ = 0;
    const std::function<void()> *body_ = nullptr;
    bool stop_ = false; // written before `start`, read after it: the barrier orders the two
};

static BlockWorkers block_workers;

// Runs `kernel` on `blocks` blocks of `threads` threads, one block after another.
template <typename Kernel> static void launch(unsigned blocks, int threads, Kernel kernel) {
    sim_gridDim.x = blocks;
    sim_blockDim.x = threads;
    const std::function<void()> body = [&] { kernel(); };
    for (unsigned b = 0; b < blocks; ++b) {
        std::barrier<> block(threads);
        std::deque<std::barrier<>> warps;
        block_barrier = &block;
        for (int w = 0; w < threads / 32; ++w) warp_barrier[w] = &warps.emplace_back(32);
        block_workers.run(b, threads, body);
    }
}
