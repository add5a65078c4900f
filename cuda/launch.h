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

/* One call of NT-Xent or SupCon, on the CHUNKED path (cuda/contrastive.cu) or the FUSED path
 * (cuda/contrastive_fused.cu). host/gpu_contrastive.c checks the arguments and carves the
 * workspace into the buffers below; each path uses its own (the others stay NULL). */
typedef struct closs_contrastive_launch {
    int supcon;          /* 0: NT-Xent (positive of i is (i + M/2) mod M) */
    closs_dtype_t dtype; /* z and grad: F32, F16 or BF16 */
    int64_t rows, dim;   /* M, D; both fit cuBLAS's int */
    const void *z;
    int64_t ld;
    const void *labels; /* SupCon: I32 or I64 */
    closs_dtype_t label_dtype;
    int normalize;
    float inv_temperature; /* 1/τ */
    float scale;           /* τ/τ_b for SupCon, 1 for NT-Xent */
    closs_reduction_t reduction;
    /* The row range (closs.h, "Row ranges"; host/gpu_contrastive.c sets it for every path):
     * the anchors of the loss and valid, and the rows of grad (grad's row 0 is row_begin); the
     * forward's lse covers anchors [lse_begin, lse_begin + lse_count), stored from lse[0]. A
     * backward needs every lse: lse_begin is then 0 and lse_count M. */
    int64_t row_begin, row_count;
    int64_t lse_begin, lse_count;
    int forward;           /* compute the loss and lse (else lse is the caller's stats) */
    float *loss;           /* forward: 1 value or row_count (NONE) */
    float *lse;            /* lse_count: written by the forward; M: read by the backward */
    int64_t *valid;        /* forward, SupCon: optional */
    const float *upstream; /* backward: NULL means 1, else 1 value or M (NONE) */
    void *grad;            /* NULL: no backward */
    int64_t grad_ld;
    /* workspace */
    /* M each; row_loss: ℓ_i, which the fused path's forward first holds Σ_{k∈P(i)} x_ik in */
    float *norms, *row_loss, *weights, *anchor_a;
    int *positives;       /* M */
    int *valid_count;     /* 1 */
    int *nonfinite;       /* 1 */
    float *inv_norm;      /* M: r_i = 1/max(‖z_i‖, eps), 1 unnormalised; NULL: chunked f32 */
    unsigned *factor_max; /* 1, 16-bit backward of either path: β = max |w| as float bits */
    /* f16 backward with normalisation, either path (NULL otherwise): the backward multiplies
     * z′_k = z_k·2^e_k (e_k ≥ 0, so that ‖z′_k‖ ≥ 1/2: exact in f16) with r′_k = r_k·2^−e_k, so
     * that G'_ik = G_ik·r′_k/β stays within f16's range for a near-zero row
     * (contrastive_kernels.cuh, scale_rows_kernel); dz's last factor is then the unscaled r_i,
     * inv_norm_unscaled. */
    void *z_scaled;                 /* M × scaled_ld, f16 */
    int64_t scaled_ld;              /* D rounded up to 8: 16-byte rows */
    float *inv_norm_scaled;         /* M: r′_k */
    const float *inv_norm_unscaled; /* set by backward_job(): r_i, where inv_norm holds r′_i */
    /* SupCon's classes (both paths): the labels sorted with their row indices, then the classes
     * with at least two rows (at most M/2) numbered 0..K−1 in label order */
    void *sort_keys[2];           /* M labels each (int64-sized), CUB's double buffer */
    int *sort_index[2];           /* M row indices each */
    int *class_heads, *class_ids; /* M each: first row of a class of ≥ 2, its inclusive scan */
    int *class_of;                /* M: the row's class, −1 when it has no positive */
    int *class_start, *class_end; /* M/2 each: first and last sorted position of a class */
    int *class_count;             /* 1: K */
    void *cub_temp;
    size_t cub_temp_bytes;
    /* CHUNKED path */
    int64_t chunk_rows;                       /* C: rows of S per cuBLAS call */
    float *zhat;                              /* M × D, f32 only: ẑ */
    float *similarity;                        /* C × M */
    void *coefficient_high, *coefficient_low; /* C × M each, 16-bit only: G' in two halves */
    float *dzhat;                             /* C × D */
    void *cublas_workspace;
    size_t cublas_workspace_bytes;
    void *cublas; /* the handle's cublasHandle_t */
    /* FUSED path */
    int fixed_shift;       /* closs_fm_fixed_shift(): c = 1/τ, else an online maximum */
    float *softmax_factor; /* M, tensor-core backward: each anchor's factor in G */
} closs_contrastive_launch;

/* Enqueues the whole call. A cuBLAS failure is returned in *cublas_status (0 on success). */
cudaError_t closs_launch_contrastive(const closs_contrastive_launch *launch, cudaStream_t stream,
                                     int *cublas_status);

/* Enqueues a whole call of the FUSED path (D ≤ CLOSS_FUSED_MAX_DIM, rows ≤ INT_MAX). */
cudaError_t closs_launch_contrastive_fused(const closs_contrastive_launch *launch,
                                           cudaStream_t stream);

/* The dynamic shared memory per block of the fused path's tensor-core kernel for D = dim (≤ 256):
 * the tile engine's or (wmma) the WMMA kernels', of the backward or the forward pass; what
 * tile_dispatch.h compares with a device's opt-in limit. No device needed. */
size_t closs_tensor_kernel_shared_bytes(int wmma, int backward, int64_t dim);

/* Enqueues, for either path, SupCon's label sort and class numbering and every anchor's |P(i)|
 * (NT-Xent: 1). */
cudaError_t closs_launch_contrastive_classes(const closs_contrastive_launch *launch,
                                             cudaStream_t stream);

/* The bytes of CUB temporary storage SupCon's label sort and scan need for `rows` labels of
 * `label_dtype` (asks CUB, which needs the current device). */
cudaError_t closs_contrastive_cub_bytes(int64_t rows, closs_dtype_t label_dtype, size_t *bytes);

/* The handle's cuBLAS context (default math: no TF32), as an opaque pointer. */
int closs_cublas_create(void **cublas);
void closs_cublas_destroy(void *cublas);

#ifdef __cplusplus
}
#endif

#endif
