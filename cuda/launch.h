/* Private: the launchers of the CUDA kernels, with C linkage, called by host/ after it has
 * validated every argument. They enqueue work on the given stream and never synchronise. */
#ifndef CLOSS_CUDA_LAUNCH_H
#define CLOSS_CUDA_LAUNCH_H

#include <cuda_runtime_api.h>
#include <stdint.h>

#include "closs.h"
#include "rowwise_math.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Threads per block of the row-wise kernels: 8 warps, one row per warp at a time. */
#define CLOSS_ROWWISE_THREADS 256

/* One launch of a row-wise loss (pair, triplet, cosine): forward, backward or both. */
typedef struct closs_rowwise_launch {
    closs_row_params params;
    int input_count;     /* 2 (pair, cosine) or 3 (triplet) */
    closs_dtype_t dtype; /* F32, F16 or BF16, for inputs and gradients */
    int64_t rows, dim;
    const void *x[3];
    int64_t ld[3];
    const void *y; /* pair labels (pair, cosine), or NULL */
    closs_dtype_t y_dtype;
    closs_reduction_t reduction;
    float *loss;           /* forward: 1 value (MEAN, SUM) or rows (NONE); NULL: no forward */
    const float *upstream; /* backward: 1 value or rows (NONE); NULL means 1 */
    void *grad[3];         /* NULL: that gradient is not written */
    int64_t grad_ld[3];
    int vectorized;  /* every row start 16-byte aligned: 16-byte loads and stores */
    int blocks;      /* from closs_rowwise_blocks() */
    float *partials; /* workspace: `blocks` floats, the per-block loss sums */
} closs_rowwise_launch;

/* The grid size for `rows` rows on a device with `multiprocessors` SMs; the workspace holds one
 * float per block. Fixed for a given device and size, so results repeat bit for bit. */
int closs_rowwise_blocks(int multiprocessors, int64_t rows);

cudaError_t closs_launch_rowwise(const closs_rowwise_launch *launch, cudaStream_t stream);

/* Check mode: finds the first row holding a non-finite input (bad_rows[0]) and the first pair
 * label outside [0, 1] (bad_rows[1]); each is UINT64_MAX when there is none. bad_rows is device
 * memory of 2 values, initialised by the launcher. */
cudaError_t closs_launch_rowwise_check(const closs_rowwise_launch *launch,
                                       unsigned long long *bad_rows, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
