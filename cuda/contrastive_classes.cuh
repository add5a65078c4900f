// SupCon's classes, for both NT-Xent/SupCon paths (contrastive_classes.cu launches them after
// CUB's radix sort of (label, row)): the classes with at least two rows numbered 0..K−1 in label
// order, each row's class (class_of, −1 for a singleton, which has no positive), each class's first
// and last sorted position, and |P(i)| from them: O(M) work after an O(M) sort, whatever the class
// sizes, where counting each anchor's positives directly would cost O(M²). A header of its own so
// that tests/test_contrastive_kernels.cpp can run these very kernels on the CPU.
#pragma once

#include <stdint.h>

#include "common.cuh"
#include "launch.h"

namespace closs {
namespace {

__global__ void iota_kernel(int *out, int64_t count) {
    for (int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; r < count; r += (int64_t)gridDim.x * blockDim.x)
        out[r] = (int)r;
}

// 1 at the first sorted position of each class with at least two rows.
template <typename L>
__global__ void class_heads_kernel(const closs_contrastive_launch job, const L *keys) {
    for (int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; r < job.rows; r += (int64_t)gridDim.x * blockDim.x) {
        const bool first = r == 0 || keys[r] != keys[r - 1];
        const bool shared = r + 1 < job.rows && keys[r + 1] == keys[r];
        job.class_heads[r] = first && shared;
    }
}

// class_ids is the inclusive scan of class_heads: every row of a class of ≥ 2 rows sees its
// class's number + 1. Singletons get −1 (no positive, no class sum).
template <typename L>
__global__ void assign_classes_kernel(const closs_contrastive_launch job, const L *keys, const int *order) {
    for (int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; r < job.rows; r += (int64_t)gridDim.x * blockDim.x) {
        const bool first = r == 0 || keys[r] != keys[r - 1];
        const bool last = r + 1 == job.rows || keys[r + 1] != keys[r];
        const int k = first && last ? -1 : job.class_ids[r] - 1;
        job.class_of[order[r]] = k;
        if (k >= 0 && first) job.class_start[k] = (int)r;
        if (k >= 0 && last) job.class_end[k] = (int)r;
        if (r == job.rows - 1) *job.class_count = job.class_ids[r];
    }
}

// |P(i)|: the partner (NT-Xent), the other rows of the class (SupCon).
__global__ void positives_kernel(const closs_contrastive_launch job) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < job.rows; i += (int64_t)gridDim.x * blockDim.x) {
        if (!job.supcon) {
            job.positives[i] = 1;
            continue;
        }
        const int k = job.class_of[i];
        job.positives[i] = k < 0 ? 0 : job.class_end[k] - job.class_start[k];
    }
}

} // namespace
} // namespace closs
