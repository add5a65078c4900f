/* Private: the launchers of CLIP's and SigLIP's kernels (cuda/two_tower_fused.cu, FUSED;
 * cuda/two_tower_chunked.cu, CHUNKED), with C linkage, called by host/gpu_two_tower.c after it has
 * checked every argument and carved the workspace. They enqueue work on the given stream and
 * never synchronise. */
#ifndef CLOSS_CUDA_TWO_TOWER_LAUNCH_H
#define CLOSS_CUDA_TWO_TOWER_LAUNCH_H

#include <cuda_runtime_api.h>
#include <stddef.h>
#include <stdint.h>

#include "closs.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The FUSED path's backward keeps a block's rows of the gradient in registers: 64 rows × D ≤ 256
 * or 32 rows × D ≤ 512 (cuda/two_tower_fused_kernels.cuh); past this, CHUNKED. */
#define CLOSS_TWO_TOWER_FUSED_MAX_DIM 512

/* One call of CLIP or SigLIP: forward, backward or both (closs.h, "Two-tower row ranges", for the
 * ranges). N = pairs, R = rows_b = N + K. */
typedef struct closs_two_tower_launch {
    int siglip;          /* 0: CLIP */
    closs_dtype_t dtype; /* a, b and the gradients: F32, F16 or BF16 */
    int64_t pairs, rows_b, dim;
    const void *a, *b;
    int64_t lda, ldb;
    int normalize;
    int symmetric, in_batch_negatives; /* CLIP */
    closs_reduction_t reduction;
    /* s and β: the device scalars, or NULL for the values below (the parameters') */
    const float *logit_scale, *logit_bias;
    float scale_value, bias_value;
    /* The call's share: pairs [row_begin, + row_count), extra negatives (indices among the K)
     * [negatives_begin, + negatives_count); the forward's statistics cover the pairs
     * [stats_begin, + stats_count) (the range alone, or all N when a backward follows). */
    int64_t row_begin, row_count, negatives_begin, negatives_count;
    int64_t stats_begin, stats_count;
    int forward;
    float *loss;                     /* forward: 1 value, or row_count for NONE */
    float *row_stats, *column_stats; /* CLIP: n and m; forward: stats_count written from [0];
                                        backward: all N read */
    const float *upstream;           /* NULL: 1; else 1 value, or N for NONE */
    void *grad_a, *grad_b;           /* NULL: not computed */
    int64_t grad_a_ld, grad_b_ld;
    float *grad_logit_scale, *grad_logit_bias; /* NULL: not computed */
    /* workspace, both paths */
    float *norms_a, *norms_b;        /* N, R: ‖row‖ */
    float *inv_norm_a, *inv_norm_b;  /* N, R: 1/max(‖row‖, eps) (1 unnormalised), NaN for a row
                                        holding NaN or Inf */
    float *positives;                /* N: c_ii */
    float *row_loss;                 /* N: ℓ_i */
    float *factor_a, *lse_a;         /* N: a-side factor and lse of G (SigLIP: w_i in factor_a) */
    float *factor_b, *lse_b;         /* R: b-side factor and lse of G (CLIP) */
    float *scale_share, *bias_share; /* N: row i of a's share of ∂/∂s and ∂/∂β */
    /* CHUNKED path */
    int64_t chunk_rows;   /* rows of a or b per cuBLAS block */
    float *a_hat, *b_hat; /* N × D, R × D: the embedded rows as float */
    float *block;         /* chunk_rows × max(N, R): c, then G, in place */
    float *block_grad;    /* chunk_rows × D: Σ G·(other tower's rows) */
    void *cublas_workspace;
    size_t cublas_workspace_bytes;
    void *cublas; /* the handle's cublasHandle_t */
} closs_two_tower_launch;

/* Enqueues a whole call of the FUSED path (D ≤ CLOSS_TWO_TOWER_FUSED_MAX_DIM, N + K ≤ INT_MAX). */
cudaError_t closs_launch_two_tower_fused(const closs_two_tower_launch *launch, cudaStream_t stream);

/* The dynamic shared memory per block of the FUSED path's tile-engine walk for D = dim (≤ 256),
 * of the backward or the forward (cuda/two_tower_tile_kernels.cuh): what tile_dispatch.h compares
 * with a device's opt-in limit. No device needed. */
size_t closs_two_tower_engine_shared_bytes(int backward, int64_t dim);

/* Enqueues a whole call of the CHUNKED path. A cuBLAS failure ends it: *cublas_status is then
 * nonzero (the cuBLAS status) and the returned error is not to be reported; 0 otherwise. */
cudaError_t closs_launch_two_tower_chunked(const closs_two_tower_launch *launch,
                                           cudaStream_t stream, int *cublas_status);

#ifdef __cplusplus
}
#endif

#endif
