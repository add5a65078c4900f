/*
 * closs: contrastive and metric-learning losses with their gradients.
 *
 * The whole public API, C11, usable without CUDA headers. The exact mathematics of every loss and
 * option is in docs/contract.md; this header repeats the formulas next to each entry point.
 *
 * Conventions
 *   - Every function returns a closs_status_t; on failure closs_last_error() names the argument,
 *     the value and the reason, and no output has been written. The exceptions are the GPU
 *     failures that come after a call has started enqueuing its work, CUDA_ERROR from a launch
 *     and CUBLAS_ERROR from a cuBLAS call (a CUBLAS_ERROR from creating the cuBLAS context comes
 *     first and writes nothing): then what was enqueued before the failure may have run, and
 *     every output of the call (loss, stats, valid, grad_z) holds unspecified values. For
 *     NT-Xent and SupCon's chunked path that is the stats and NONE losses of the anchors before
 *     the failing block of rows, and with a backward the forward's outputs and grad_z's rows
 *     before it. The CUDA error closs's own failed work left is consumed (cudaGetLastError), not
 *     left for the caller; a sticky one (the context is lost) stays, as it does for everyone.
 *   - Matrices are row-major with a leading dimension (ld >= cols, in elements), so framework views
 *     work without copies.
 *   - Parameter structs carry their own size (versioning); start from the *_PARAMS_INIT macros,
 *     which hold the contract's defaults, and change the fields you need.
 *   - Reductions: MEAN (default), SUM, NONE (one loss per row or anchor). Gradients are those of
 *     the reduced loss times the upstream gradient (see `upstream` below).
 *   - NaN or Inf in an input propagates to the loss: it makes NaN every loss it reaches (its own
 *     row's for pair, triplet and cosine; every anchor's for NT-Xent and SupCon, whose
 *     denominators sum over all rows; for CLIP and SigLIP every ℓ_i whose terms hold that row of
 *     a or b), even where max(0, −∞), exp(−∞) or softplus(−∞) would hide it, and the gradients
 *     with it. With `check_inputs = 1` in the parameters,
 *     an entry point first verifies that every floating input is finite and returns
 *     CLOSS_STATUS_NONFINITE_INPUT naming the first bad element instead.
 *   - The CPU reference entry points (closs_ref_*) take host f32 or f64 inputs and accumulate in
 *     double. The GPU entry points mirror them with a handle, device pointers, workspace and a
 *     stream.
 */
#ifndef CLOSS_H
#define CLOSS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#    if defined(CLOSS_BUILDING_SHARED)
#        define CLOSS_API __declspec(dllexport)
#    elif defined(CLOSS_USING_SHARED)
#        define CLOSS_API __declspec(dllimport)
#    else
#        define CLOSS_API
#    endif
#elif defined(__GNUC__)
#    define CLOSS_API __attribute__((visibility("default")))
#else
#    define CLOSS_API
#endif

/* ------------------------------------------------------------------------------------------------
 * Version
 * --------------------------------------------------------------------------------------------- */
#define CLOSS_VERSION_MAJOR 0
#define CLOSS_VERSION_MINOR 1
#define CLOSS_VERSION_PATCH 0
#define CLOSS_VERSION                                                                              \
    (CLOSS_VERSION_MAJOR * 10000 + CLOSS_VERSION_MINOR * 100 + CLOSS_VERSION_PATCH)

/*! closs_version() : the version of the library actually loaded, as CLOSS_VERSION computes it.
 *  Compare with CLOSS_VERSION to detect a header/library mismatch. */
CLOSS_API int closs_version(void);
/*! closs_version_string() : "MAJOR.MINOR.PATCH" of the loaded library. */
CLOSS_API const char *closs_version_string(void);

/* ------------------------------------------------------------------------------------------------
 * Status and errors
 * --------------------------------------------------------------------------------------------- */
typedef enum closs_status_t {
    CLOSS_STATUS_SUCCESS = 0,
    CLOSS_STATUS_INVALID_ARGUMENT, /* a pointer, shape, dtype, enum or parameter is out of range */
    CLOSS_STATUS_NOT_SUPPORTED,    /* valid, but not available in this build or on this device */
    CLOSS_STATUS_NO_DEVICE,        /* no usable CUDA device */
    CLOSS_STATUS_WORKSPACE_TOO_SMALL, /* the caller's workspace is smaller than the query said */
    CLOSS_STATUS_ALLOC_FAILED,        /* host or device memory could not be allocated */
    CLOSS_STATUS_CUDA_ERROR,          /* the CUDA runtime reported an error */
    CLOSS_STATUS_CUBLAS_ERROR,        /* cuBLAS reported an error */
    CLOSS_STATUS_NONFINITE_INPUT,     /* check mode found NaN or Inf in an input */
    CLOSS_STATUS_COUNT
} closs_status_t;

/*! closs_status_string() : a fixed sentence for a status, with advice; never NULL. */
CLOSS_API const char *closs_status_string(closs_status_t status);

/*! closs_last_error() : the detail of the last failure on the calling thread ("" if none):
 *  which argument, which value, why. Every entry point clears it on entry, so after a success it
 *  is "". The pointer stays valid until the next closs call on the same thread. */
CLOSS_API const char *closs_last_error(void);

/* ------------------------------------------------------------------------------------------------
 * Data descriptions
 * --------------------------------------------------------------------------------------------- */
typedef enum closs_dtype_t {
    CLOSS_F32 = 0,
    CLOSS_F16,
    CLOSS_BF16,
    CLOSS_F64,
    CLOSS_I32, /* labels only */
    CLOSS_I64  /* labels only */
} closs_dtype_t;

typedef enum closs_reduction_t {
    CLOSS_REDUCTION_MEAN = 0,
    CLOSS_REDUCTION_SUM,
    CLOSS_REDUCTION_NONE
} closs_reduction_t;

typedef enum closs_distance_t {
    CLOSS_DISTANCE_EUCLIDEAN = 0, /* ‖a − b‖ */
    CLOSS_DISTANCE_SQEUCLIDEAN,   /* ‖a − b‖²  (triplet only) */
    CLOSS_DISTANCE_COSINE         /* 1 − cos(a, b) */
} closs_distance_t;

/* The GPU algorithm of NT-Xent and SupCon: CHUNKED multiplies a block of rows by all rows with
 * cuBLAS into a bounded workspace (any size, the oracle of the fused path); FUSED keeps the
 * similarity tiles on chip; AUTO picks. The CPU reference accepts and ignores it. */
typedef enum closs_path_t {
    CLOSS_PATH_AUTO = 0,
    CLOSS_PATH_FUSED,
    CLOSS_PATH_CHUNKED
} closs_path_t;

/* A row-major matrix: element (r, c) is at data[r * ld + c].
 * data may be NULL only when rows == 0. */
typedef struct closs_matrix_t {
    const void *data;
    closs_dtype_t dtype;
    int64_t rows;
    int64_t cols;
    int64_t ld;
} closs_matrix_t;

/* A contiguous vector of `length` elements. data may be NULL only when length == 0. */
typedef struct closs_vector_t {
    const void *data;
    closs_dtype_t dtype;
    int64_t length;
} closs_vector_t;

/*! closs_matrix() : a dense description (ld == cols). */
static inline closs_matrix_t closs_matrix(const void *data, closs_dtype_t dtype, int64_t rows,
                                          int64_t cols) {
    closs_matrix_t m = {data, dtype, rows, cols, cols};
    return m;
}
/*! closs_matrix_ld() : a strided description (ld >= cols). */
static inline closs_matrix_t closs_matrix_ld(const void *data, closs_dtype_t dtype, int64_t rows,
                                             int64_t cols, int64_t ld) {
    closs_matrix_t m = {data, dtype, rows, cols, ld};
    return m;
}
/*! closs_vector() : a contiguous vector description. */
static inline closs_vector_t closs_vector(const void *data, closs_dtype_t dtype, int64_t length) {
    closs_vector_t v = {data, dtype, length};
    return v;
}
/*! closs_dtype_size() : bytes per element of `dtype` (2 for f16 and bf16), 0 for an unknown one. */
CLOSS_API size_t closs_dtype_size(closs_dtype_t dtype);

/* ------------------------------------------------------------------------------------------------
 * Parameters, one struct per loss. `size` must be sizeof(the struct): it lets the structs grow
 * without breaking the ABI. The INIT macros hold the contract's defaults.
 * --------------------------------------------------------------------------------------------- */

/* Pair contrastive (Siamese): ℓ_i = y_i·d_i² + (1 − y_i)·max(0, m − d_i)². */
typedef struct closs_pair_params {
    size_t size;
    double margin;             /* m, finite and >= 0 */
    closs_distance_t distance; /* EUCLIDEAN (d = ‖x1 − x2‖) or COSINE (d = 1 − cos) */
    closs_reduction_t reduction;
    int check_inputs; /* 1: also verify the inputs are finite (NONFINITE_INPUT otherwise) */
} closs_pair_params;
#define CLOSS_PAIR_PARAMS_INIT                                                                     \
    { sizeof(closs_pair_params), 1.0, CLOSS_DISTANCE_EUCLIDEAN, CLOSS_REDUCTION_MEAN, 0 }

/* Triplet (FaceNet): ℓ_i = max(0, d(a_i, p_i) − d(a_i, n_i) + α). */
typedef struct closs_triplet_params {
    size_t size;
    double margin;             /* α, finite (zero and negative allowed) */
    closs_distance_t distance; /* SQEUCLIDEAN (default), EUCLIDEAN or COSINE */
    int swap;                  /* 1: d(a, n) becomes min(d(a, n), d(p, n)) */
    closs_reduction_t reduction;
    int check_inputs; /* 1: also verify the inputs are finite (NONFINITE_INPUT otherwise) */
} closs_triplet_params;
#define CLOSS_TRIPLET_PARAMS_INIT                                                                  \
    { sizeof(closs_triplet_params), 1.0, CLOSS_DISTANCE_SQEUCLIDEAN, 0, CLOSS_REDUCTION_MEAN, 0 }

/* NT-Xent (SimCLR), z = cat(z1, z2) with 2N rows, p(i) = (i + N) mod 2N:
 *   ℓ_i = − s_{i,p(i)}/τ + log Σ_{k≠i} exp(s_ik/τ),  s_ik = ẑ_i·ẑ_k.
 * MEAN is over all 2N anchors. */
typedef struct closs_ntxent_params {
    size_t size;
    double temperature; /* τ, finite and > 0 */
    int normalize;      /* 1: ẑ = z/max(‖z‖, 1e-12) (cosine similarity); 0: ẑ = z */
    closs_reduction_t reduction;
    int check_inputs;  /* 1: also verify the inputs are finite (NONFINITE_INPUT otherwise) */
    closs_path_t path; /* GPU algorithm; AUTO by default */
    /* The anchor row range [row_begin, row_begin + row_count) of one rank of a data-parallel
     * job (see "Row ranges" below); 0 and 0 mean all rows. Added after 0.1.0: a struct whose size
     * ends before row_begin is still accepted and means all rows. */
    int64_t row_begin;
    int64_t row_count;
} closs_ntxent_params;
#define CLOSS_NTXENT_PARAMS_INIT                                                                   \
    { sizeof(closs_ntxent_params), 0.1, 1, CLOSS_REDUCTION_MEAN, 0, CLOSS_PATH_AUTO, 0, 0 }

/* Supervised contrastive (SupCon L_out), P(i) = {p ≠ i : label_p = label_i}, A(i) = {a ≠ i}:
 *   ℓ_i = (τ/τ_b)·( −(1/|P(i)|) Σ_{p∈P(i)} s_ip/τ + log Σ_{a∈A(i)} exp(s_ia/τ) ).
 * Anchors with |P(i)| = 0 have ℓ_i = 0 and are left out of MEAN, which divides by the number of
 * anchors with a positive (`valid`). Official SupContrast divides by M: multiply by valid/M. */
typedef struct closs_supcon_params {
    size_t size;
    double temperature;      /* τ, finite and > 0 */
    double base_temperature; /* τ_b, finite and > 0; 0 means "equal to temperature" */
    int normalize;           /* 1: cosine similarity (default); 0: dot product */
    closs_reduction_t reduction;
    int check_inputs;  /* 1: also verify the inputs are finite (NONFINITE_INPUT otherwise) */
    closs_path_t path; /* GPU algorithm; AUTO by default */
    int64_t row_begin; /* the anchor row range, as in closs_ntxent_params (added after 0.1.0) */
    int64_t row_count;
} closs_supcon_params;
#define CLOSS_SUPCON_PARAMS_INIT                                                                   \
    { sizeof(closs_supcon_params), 0.07, 0.0, 1, CLOSS_REDUCTION_MEAN, 0, CLOSS_PATH_AUTO, 0, 0 }

/* Row ranges (NT-Xent and SupCon): one call computes one rank's share of a batch whose M rows
 * every rank holds (all-gathered), so that the ranks' results add up to the full-batch answer.
 * With R = [row_begin, row_begin + row_count) (0 ≤ row_begin, 1 ≤ row_count, row_begin +
 * row_count ≤ M; 0/0 = all rows):
 *   loss      NONE: ℓ_i for i in R (row_count values); SUM: Σ_{i∈R} ℓ_i; MEAN: Σ_{i∈R} ℓ_i / n
 *             with the GLOBAL denominator n (NT-Xent: M; SupCon: the anchors of all M rows that
 *             have a positive, which the labels of all rows determine): the ranks' losses sum to
 *             the full loss for SUM and MEAN and concatenate to it for NONE.
 *   valid     SupCon: the anchors of R with a positive (the ranks' values sum to the full count).
 *   grad_z    row_count × D: the gradient of the full reduced loss with respect to the rows of R.
 *   upstream  for NONE, M values (every anchor's upstream gradient: the rows of R appear in every
 *             anchor's denominator); for MEAN and SUM, one value as always.
 *   stats     the GPU *_forward writes the row_count statistics of R's anchors; *_backward reads
 *             all M (the ranks' forward statistics, concatenated in row order). */

/* Cosine contrastive: c_i = cos(x1_i, x2_i), ℓ_i = y_i·(1 − c_i) + (1 − y_i)·max(0, c_i − δ)^q,
 * q = 2 if squared else 1. */
typedef struct closs_cosine_params {
    size_t size;
    double margin; /* δ, in [−1, 1] */
    int squared;   /* 1: q = 2 */
    closs_reduction_t reduction;
    int check_inputs; /* 1: also verify the inputs are finite (NONFINITE_INPUT otherwise) */
} closs_cosine_params;
#define CLOSS_COSINE_PARAMS_INIT                                                                   \
    { sizeof(closs_cosine_params), 0.0, 0, CLOSS_REDUCTION_MEAN, 0 }

/* Two-tower losses (CLIP, SigLIP) take a: N × D and b: (N + K) × D, N ≥ 1, K ≥ 0: row i < N of b
 * is the partner of row i of a, rows N ≤ j < N + K of b are extra negatives (hard negatives, a
 * queue). â, b̂ are the rows normalised when `normalize` is on, else the rows themselves, and
 * s = logit_scale > 0 (OpenCLIP's logit_scale.exp()). Both give ∂/∂a, ∂/∂b and ∂/∂s (and SigLIP
 * ∂/∂β): the scale and the bias are inputs with a gradient. */

/* CLIP (symmetric InfoNCE), x_ij = s·â_i·b̂_j:
 *   L_ab(i) = −x_ii + log Σ_{j∈C(i)} exp(x_ij),  C(i) = every j < N + K, or {i} ∪ {j ≥ N} when
 *             in_batch_negatives = 0 (MoCo v1/v2: the positive key and the queue);
 *   L_ba(j) = −x_jj + log Σ_{i<N} exp(x_ij)  for j < N (b → a);
 *   ℓ_i = ½(L_ab(i) + L_ba(i)) when symmetric, else L_ab(i); MEAN is over the N pairs.
 * OpenCLIP's ClipLoss is the defaults; sentence-transformers' MultipleNegativesRankingLoss is
 * symmetric = 0, logit_scale = 20 with b = cat(positives, hard negatives) (docs/contract.md §6). */
typedef struct closs_clip_params {
    size_t size;
    double logit_scale;     /* s, finite and > 0 */
    int symmetric;          /* 1: ½(a → b + b → a) (CLIP); 0: a → b only (MNRL, MoCo) */
    int in_batch_negatives; /* 1: every row of b is in C(i); 0: only b_i and the extra negatives
                               (needs symmetric = 0) */
    int normalize;          /* 1: cosine similarity (default); 0: dot product */
    int grad_negatives;     /* 1: grad_b covers the extra negatives too; 0: only the N partners
                               (a queue without a gradient costs no gradient work) */
    closs_reduction_t reduction;
    int check_inputs;  /* 1: also verify the inputs are finite (NONFINITE_INPUT otherwise) */
    closs_path_t path; /* GPU algorithm (FUSED, CHUNKED, AUTO); the CPU reference ignores it */
    /* One rank's share ("Two-tower row ranges" below); all four 0 mean the whole batch. */
    int64_t row_begin, row_count;             /* the rank's pairs [row_begin, + row_count) */
    int64_t negatives_begin, negatives_count; /* its extra negatives, rows N + [begin, + count) */
} closs_clip_params;
#define CLOSS_CLIP_PARAMS_INIT                                                                     \
    {                                                                                              \
        sizeof(closs_clip_params), 1.0 / 0.07, 1, 1, 1, 1, CLOSS_REDUCTION_MEAN, 0,                \
            CLOSS_PATH_AUTO, 0, 0, 0, 0                                                            \
    }

/* SigLIP (sigmoid loss), x_ij = s·â_i·b̂_j + β, z_ij = 1 if i = j < N, else −1:
 *   ℓ_i = −Σ_{j<N+K} log σ(z_ij·x_ij) = Σ_{j<N+K} softplus(−z_ij·x_ij);  MEAN is (1/N)·Σ_i ℓ_i
 * (OpenCLIP's SigLipLoss). The defaults are the SigLIP paper's initialisation. */
typedef struct closs_siglip_params {
    size_t size;
    double logit_scale; /* s, finite and > 0 */
    double logit_bias;  /* β, finite */
    int normalize;      /* 1: cosine similarity (default); 0: dot product */
    int grad_negatives; /* as for CLIP */
    closs_reduction_t reduction;
    int check_inputs;  /* 1: also verify the inputs are finite (NONFINITE_INPUT otherwise) */
    closs_path_t path; /* GPU algorithm (FUSED, CHUNKED, AUTO); the CPU reference ignores it */
    int64_t row_begin, row_count;             /* as for CLIP */
    int64_t negatives_begin, negatives_count; /* as for CLIP */
} closs_siglip_params;
#define CLOSS_SIGLIP_PARAMS_INIT                                                                   \
    {                                                                                              \
        sizeof(closs_siglip_params), 10.0, -10.0, 1, 1, CLOSS_REDUCTION_MEAN, 0, CLOSS_PATH_AUTO,  \
            0, 0, 0, 0                                                                             \
    }

/* Two-tower row ranges (CLIP and SigLIP): one call computes one rank's share of a batch whose
 * a (N rows) and b (N + K rows: every rank's partners in rank order, then every rank's extra
 * negatives) every rank holds, gathered, so that the ranks' results add up to the full-batch
 * answer. The rank owns the pairs P = [row_begin, row_begin + row_count) (rows of a and their
 * partners in b) and the extra negatives Q = rows N + [negatives_begin, negatives_begin +
 * negatives_count) of b. All four 0 mean the whole batch (P = all N pairs, Q = all K negatives);
 * otherwise 0 ≤ row_begin < N, 1 ≤ row_count ≤ N − row_begin, negatives_begin ≥ 0,
 * negatives_count ≥ 0 (0: the rank owns no negative), negatives_begin + negatives_count ≤ K, and
 * negatives_count = 0 when grad_negatives = 0.
 *   loss       NONE: ℓ_i for i in P; SUM: Σ_{i∈P} ℓ_i; MEAN: Σ_{i∈P} ℓ_i / N (the GLOBAL N).
 *   grad_a     row_count × D: the gradient of the full reduced loss with respect to a's rows P.
 *   grad_b     (row_count + |Q|) × D: with respect to b's rows P, then b's rows Q (|Q| = K for
 *              the whole batch, 0 with grad_negatives = 0): the layout of the rank's own
 *              cat(partners, negatives).
 *   grad_logit_scale, grad_logit_bias
 *              one value: the share of the logit matrix's rows P in the gradient,
 *              Σ_{i∈P} Σ_j (∂L/∂x_ij)·(∂x_ij/∂s); the ranks' values add up (one all-reduce).
 *   upstream   NONE: N values (every pair's: every row of a meets every row of b); else 1.
 *   stats      CLIP only: the log-sum-exp of each pair's negatives,
 *                row_stats[i] = log Σ_{j∈C(i), j≠i} exp(x_ij),
 *                column_stats[i] = log Σ_{k<N, k≠i} exp(x_ki) (symmetric only),
 *              −∞ for none. The positive stays out of them so that ℓ = softplus(stat − x_ii)
 *              keeps its precision for a confident pair. The forward writes them for i in P
 *              (row_count values each); the backward reads all N of each (the ranks' values
 *              concatenated in rank order). SigLIP needs none: one call gives a rank's share. */

/* ------------------------------------------------------------------------------------------------
 * CPU reference. Inputs are host memory, CLOSS_F32 or CLOSS_F64, with a leading dimension;
 * everything is accumulated in double. NT-Xent and SupCon take O(M²·D) time and O(M·D) extra
 * memory (no M×M buffer); they use every OpenMP thread when built with OpenMP, and the result does
 * not depend on the number of threads.
 *
 * Arguments common to every closs_ref_* function:
 *   upstream  NULL for an upstream gradient of 1; else for MEAN and SUM one value that multiplies
 *             every gradient, and for NONE one value per row (the gradient is then that of
 *             Σ_i upstream[i]·ℓ_i).
 *   loss      output, not NULL: one double for MEAN and SUM, one per row (anchor) for NONE.
 *   grad_*    output, dense (rows × cols, ld = cols) double, or NULL to skip that gradient.
 * Pair labels y are CLOSS_F32 or CLOSS_F64 with every value in [0, 1] (NaN rejected); SupCon labels
 * are CLOSS_I32 or CLOSS_I64, any values. Pair, triplet and cosine accept rows == 0 (loss 0).
 * --------------------------------------------------------------------------------------------- */

/*! closs_ref_pair() : pair contrastive loss of x1, x2 (N × D) with labels y (N);
 *  gradients with respect to x1 and x2. */
CLOSS_API closs_status_t closs_ref_pair(const closs_pair_params *params, closs_matrix_t x1,
                                        closs_matrix_t x2, closs_vector_t y, const double *upstream,
                                        double *loss, double *grad_x1, double *grad_x2);

/*! closs_ref_triplet() : triplet loss of anchor, positive, negative (N × D); gradients with
 *  respect to all three. */
CLOSS_API closs_status_t closs_ref_triplet(const closs_triplet_params *params,
                                           closs_matrix_t anchor, closs_matrix_t positive,
                                           closs_matrix_t negative, const double *upstream,
                                           double *loss, double *grad_anchor, double *grad_positive,
                                           double *grad_negative);

/*! closs_ref_ntxent() : NT-Xent of z (2N × D, rows i and i + N are the two views of sample i);
 *  gradient with respect to z (through the normalisation when it is on). */
CLOSS_API closs_status_t closs_ref_ntxent(const closs_ntxent_params *params, closs_matrix_t z,
                                          const double *upstream, double *loss, double *grad_z);

/*! closs_ref_supcon() : SupCon of z (M × D) with integer labels (M); gradient with respect to z.
 *  valid (may be NULL) receives the number of anchors that have at least one positive. */
CLOSS_API closs_status_t closs_ref_supcon(const closs_supcon_params *params, closs_matrix_t z,
                                          closs_vector_t labels, const double *upstream,
                                          double *loss, double *grad_z, int64_t *valid);

/*! closs_ref_ntxent_forward(), closs_ref_supcon_forward() : the loss and the statistics of the
 *  anchors in the params' row range (`stats`: row_count doubles, each anchor's log-sum-exp
 *  lse_i = log Σ_{k≠i} exp(s_ik/τ), as the GPU forward writes them), against all rows of z.
 *  closs_ref_*_backward() : the gradient of the range's rows from the statistics of ALL M anchors
 *  (the forwards' stats concatenated in row order) and the upstream gradient, as above.
 *  Together they are one rank's share of a data-parallel step (see "Row ranges"); with 0/0
 *  they split closs_ref_ntxent()/closs_ref_supcon() in two. stats is not checked for finiteness:
 *  a NaN propagates. */
CLOSS_API closs_status_t closs_ref_ntxent_forward(const closs_ntxent_params *params,
                                                  closs_matrix_t z, double *loss, double *stats);
CLOSS_API closs_status_t closs_ref_ntxent_backward(const closs_ntxent_params *params,
                                                   closs_matrix_t z, const double *stats,
                                                   const double *upstream, double *grad_z);
CLOSS_API closs_status_t closs_ref_supcon_forward(const closs_supcon_params *params,
                                                  closs_matrix_t z, closs_vector_t labels,
                                                  double *loss, double *stats, int64_t *valid);
CLOSS_API closs_status_t closs_ref_supcon_backward(const closs_supcon_params *params,
                                                   closs_matrix_t z, closs_vector_t labels,
                                                   const double *stats, const double *upstream,
                                                   double *grad_z);

/*! closs_ref_cosine() : cosine contrastive loss of x1, x2 (N × D) with labels y (N); gradients
 *  with respect to x1 and x2. */
CLOSS_API closs_status_t closs_ref_cosine(const closs_cosine_params *params, closs_matrix_t x1,
                                          closs_matrix_t x2, closs_vector_t y,
                                          const double *upstream, double *loss, double *grad_x1,
                                          double *grad_x2);

/*! closs_ref_clip() : CLIP of a (N × D) against b ((N + K) × D, K = b.rows − a.rows ≥ 0), with
 *  s = params->logit_scale; gradients with respect to a, b (all N + K rows, or N with
 *  grad_negatives = 0; a range's rows with a row range) and s (one double). Any of grad_a,
 *  grad_b, grad_logit_scale may be NULL. O(N·(N + K)·D) time, O((N + K)·D) memory.
 *  closs_ref_clip_forward() : the loss and the statistics of the range's pairs (row_stats,
 *  column_stats: row_count doubles each, the log-sum-exp of each pair's negatives as in
 *  "Two-tower row ranges"; may be NULL; column_stats is not written when symmetric = 0).
 *  closs_ref_clip_backward() : the gradients of the range from the statistics of ALL N pairs
 *  (row_stats, and column_stats when symmetric; not checked for finiteness: a NaN propagates)
 *  and the upstream gradient. Together they are one rank's share of a data-parallel step; with
 *  the whole batch they split closs_ref_clip() in two. */
CLOSS_API closs_status_t closs_ref_clip(const closs_clip_params *params, closs_matrix_t a,
                                        closs_matrix_t b, const double *upstream, double *loss,
                                        double *grad_a, double *grad_b, double *grad_logit_scale);
CLOSS_API closs_status_t closs_ref_clip_forward(const closs_clip_params *params, closs_matrix_t a,
                                                closs_matrix_t b, double *loss, double *row_stats,
                                                double *column_stats);
CLOSS_API closs_status_t closs_ref_clip_backward(const closs_clip_params *params, closs_matrix_t a,
                                                 closs_matrix_t b, const double *row_stats,
                                                 const double *column_stats, const double *upstream,
                                                 double *grad_a, double *grad_b,
                                                 double *grad_logit_scale);

/*! closs_ref_siglip() : SigLIP of a (N × D) against b ((N + K) × D), with s = params->logit_scale
 *  and β = params->logit_bias; gradients with respect to a, b, s and β as for CLIP (any may be
 *  NULL). With a row range it is one rank's whole share: SigLIP needs no statistics. */
CLOSS_API closs_status_t closs_ref_siglip(const closs_siglip_params *params, closs_matrix_t a,
                                          closs_matrix_t b, const double *upstream, double *loss,
                                          double *grad_a, double *grad_b, double *grad_logit_scale,
                                          double *grad_logit_bias);

/* ------------------------------------------------------------------------------------------------
 * GPU entry points (built when the CUDA toolkit is found; otherwise they check their arguments and
 * return CLOSS_STATUS_NOT_SUPPORTED).
 *
 * They mirror the reference with a handle first and workspace and stream last. Inputs and
 * gradients are device memory of dtype CLOSS_F32, CLOSS_F16 or CLOSS_BF16 (one dtype for all
 * inputs and gradients of a call; pair labels y may be any of the three), with a leading
 * dimension; arithmetic is in float; losses are device floats. Calls enqueue work on `stream` and
 * return without synchronising; results are the same bits on every run (no float atomics).
 *
 * Every loss has three calls:
 *   *_forward           loss: 1 float (MEAN, SUM) or one per row (NONE);
 *   *_backward          upstream: device float(s), 1 value or one per row for NONE, or NULL for 1;
 *                       writes the gradients (a closs_grad_t with data NULL is skipped);
 *   *_forward_backward  both in one pass over the inputs, upstream 1.
 * Workspace: ask *_workspace_size for the bytes and pass device memory of at least that size, at
 * any address (the size includes 256 bytes of slack: the call aligns up inside it), or pass NULL
 * and 0 to use the handle's own, which grows on demand (that allocation synchronises). Calls that
 * use the handle's own workspace are ordered on the device even on different streams: each waits
 * (an event, no host synchronisation) for the previous such call of the handle to finish. Calls
 * given their own workspaces are not ordered by closs.
 *
 * What every GPU call refuses, before touching the device (INVALID_ARGUMENT, naming the argument):
 *   - a gradient or loss buffer, or the caller's workspace, that shares any byte with an input
 *     (x, y, upstream, stats, labels) or with another of them: no in-place or overlapping outputs;
 *   - a data pointer not aligned to its element size (2 for f16/bf16, 4 for f32, float and i32,
 *     8 for i64);
 *   - a handle bound to another device than the calling thread's current one (the handle is not
 *     switched to; call cudaSetDevice first).
 * A CUDA error already pending when a call starts is the caller's: the call returns CUDA_ERROR
 * saying so and leaves the error in place (cudaGetLastError still sees it). Errors of closs's own
 * launches are read after each launch.
 *
 * Check mode (`check_inputs = 1`) first verifies on the device that every input is finite and every
 * pair label lies in [0, 1], reads the answer back (a host synchronisation, in check mode only) and
 * returns NONFINITE_INPUT or INVALID_ARGUMENT naming the first bad row without computing. Without
 * it, labels are not range-checked on the GPU and NaN propagates.
 *
 * CUDA graph capture: while `stream` is capturing (cudaStreamIsCapturing), a call is refused with
 * NOT_SUPPORTED, before touching the device, when it would need what a graph cannot hold: the
 * handle's own workspace (pass one: a later call could free the handle's to grow it while the
 * graph still points into it), check mode (it waits for the stream), or the first chunked-path
 * call on a handle (it creates the cuBLAS context; make one chunked call before capturing). Any
 * other call is captured like a kernel launch and replays the same work on the same buffers.
 * --------------------------------------------------------------------------------------------- */

/* The same type as cudaStream_t, without the CUDA headers; NULL is the default stream. */
struct CUstream_st;
typedef struct CUstream_st *closs_stream_t;

/* A library context bound to one CUDA device: its properties, a check-mode buffer and an
 * optional grown-on-demand workspace. Use one handle per thread at a time. */
typedef struct closs_handle_st *closs_handle_t;

/* A gradient output in device memory: rows × cols of the inputs' dtype, leading dimension ld. */
typedef struct closs_grad_t {
    void *data; /* NULL: this gradient is not computed */
    int64_t ld; /* >= cols */
} closs_grad_t;

/*! closs_create() : a handle bound to the calling thread's current CUDA device.
 *  @return NO_DEVICE without a usable device, NOT_SUPPORTED in a build without CUDA. */
CLOSS_API closs_status_t closs_create(closs_handle_t *handle);
/*! closs_destroy() : frees the handle and its workspace; NULL is fine. */
CLOSS_API closs_status_t closs_destroy(closs_handle_t handle);

/*! Workspace bytes for a call of that loss with these sizes (the same for all three calls). */
CLOSS_API closs_status_t closs_pair_workspace_size(closs_handle_t handle,
                                                   const closs_pair_params *params, int64_t rows,
                                                   int64_t dim, closs_dtype_t dtype, size_t *bytes);
CLOSS_API closs_status_t closs_triplet_workspace_size(closs_handle_t handle,
                                                      const closs_triplet_params *params,
                                                      int64_t rows, int64_t dim,
                                                      closs_dtype_t dtype, size_t *bytes);
CLOSS_API closs_status_t closs_cosine_workspace_size(closs_handle_t handle,
                                                     const closs_cosine_params *params,
                                                     int64_t rows, int64_t dim, closs_dtype_t dtype,
                                                     size_t *bytes);

/*! Pair contrastive loss on the GPU (closs_ref_pair's math). */
CLOSS_API closs_status_t closs_pair_forward(closs_handle_t handle, const closs_pair_params *params,
                                            closs_matrix_t x1, closs_matrix_t x2, closs_vector_t y,
                                            float *loss, void *workspace, size_t workspace_bytes,
                                            closs_stream_t stream);
CLOSS_API closs_status_t closs_pair_backward(closs_handle_t handle, const closs_pair_params *params,
                                             closs_matrix_t x1, closs_matrix_t x2, closs_vector_t y,
                                             const float *upstream, closs_grad_t grad_x1,
                                             closs_grad_t grad_x2, void *workspace,
                                             size_t workspace_bytes, closs_stream_t stream);
CLOSS_API closs_status_t closs_pair_forward_backward(
    closs_handle_t handle, const closs_pair_params *params, closs_matrix_t x1, closs_matrix_t x2,
    closs_vector_t y, float *loss, closs_grad_t grad_x1, closs_grad_t grad_x2, void *workspace,
    size_t workspace_bytes, closs_stream_t stream);

/*! Triplet loss on the GPU (closs_ref_triplet's math). */
CLOSS_API closs_status_t closs_triplet_forward(closs_handle_t handle,
                                               const closs_triplet_params *params,
                                               closs_matrix_t anchor, closs_matrix_t positive,
                                               closs_matrix_t negative, float *loss,
                                               void *workspace, size_t workspace_bytes,
                                               closs_stream_t stream);
CLOSS_API closs_status_t closs_triplet_backward(
    closs_handle_t handle, const closs_triplet_params *params, closs_matrix_t anchor,
    closs_matrix_t positive, closs_matrix_t negative, const float *upstream,
    closs_grad_t grad_anchor, closs_grad_t grad_positive, closs_grad_t grad_negative,
    void *workspace, size_t workspace_bytes, closs_stream_t stream);
CLOSS_API closs_status_t closs_triplet_forward_backward(
    closs_handle_t handle, const closs_triplet_params *params, closs_matrix_t anchor,
    closs_matrix_t positive, closs_matrix_t negative, float *loss, closs_grad_t grad_anchor,
    closs_grad_t grad_positive, closs_grad_t grad_negative, void *workspace, size_t workspace_bytes,
    closs_stream_t stream);

/*! Cosine contrastive loss on the GPU (closs_ref_cosine's math). */
CLOSS_API closs_status_t closs_cosine_forward(closs_handle_t handle,
                                              const closs_cosine_params *params, closs_matrix_t x1,
                                              closs_matrix_t x2, closs_vector_t y, float *loss,
                                              void *workspace, size_t workspace_bytes,
                                              closs_stream_t stream);
CLOSS_API closs_status_t closs_cosine_backward(closs_handle_t handle,
                                               const closs_cosine_params *params, closs_matrix_t x1,
                                               closs_matrix_t x2, closs_vector_t y,
                                               const float *upstream, closs_grad_t grad_x1,
                                               closs_grad_t grad_x2, void *workspace,
                                               size_t workspace_bytes, closs_stream_t stream);
CLOSS_API closs_status_t closs_cosine_forward_backward(
    closs_handle_t handle, const closs_cosine_params *params, closs_matrix_t x1, closs_matrix_t x2,
    closs_vector_t y, float *loss, closs_grad_t grad_x1, closs_grad_t grad_x2, void *workspace,
    size_t workspace_bytes, closs_stream_t stream);

/* NT-Xent and SupCon on the GPU (closs_ref_ntxent's and closs_ref_supcon's math) without an M×M
 * matrix in memory. z is M × D (f32, f16 or bf16, M ≤ INT_MAX); labels are device int32 or
 * int64, any values. Two paths (`path` in the parameters):
 *   FUSED    similarity tiles stay on chip; workspace O(M) whatever D (for SupCon with the label
 *            sort); D ≤ 256 (NOT_SUPPORTED above).
 *   CHUNKED  cuBLAS multiplies a block of C rows by all rows into C·M floats (for f16 and bf16,
 *            on tensor cores, with C·M 16-bit pairs of coefficients beside them), within 256 MiB
 *            (the whole matrix only when M ≤ 8192 for f32, 5792 for 16-bit); f32 adds a float
 *            copy of the normalised rows (M·D floats), cuBLAS's own 32 MiB, and SupCon the
 *            label sort; any D (the 256 MiB bound holds up to M = 2^26 rows for f32, 2^25 for
 *            16-bit: docs/contract.md, "Numerics"). A 16-bit z with z.ld > INT_MAX (cuBLAS's int
 *            leading dimension) is NOT_SUPPORTED. A handle's first CHUNKED call creates its
 *            cuBLAS context (CUBLAS_ERROR if it cannot).
 *   AUTO     FUSED when D ≤ 256, else CHUNKED.
 * With a row range in the parameters ("Row ranges" above) the loss, valid, stats and grad_z cover
 * the range's rows only; *_backward's stats and NONE's upstream are M values whatever the range.
 *   *_forward   loss (1 float, or M for NONE) and `stats`: M device floats, each anchor's
 *               log-sum-exp (the same on both paths: a forward on one path may feed a backward
 *               on the other), which *_backward needs (pass NULL when no backward will follow);
 *               SupCon also writes `valid` (device int64, may be NULL): the anchors with a
 *               positive.
 *   *_backward  upstream as for the row-wise losses, and the forward's stats; grad_z is required
 *               (its data may not be NULL: z is the only input with a gradient).
 * *_workspace_size needs no device: `handle` is not used and may be NULL.
 * Check mode verifies z (not stats or upstream). */
CLOSS_API closs_status_t closs_ntxent_workspace_size(closs_handle_t handle,
                                                     const closs_ntxent_params *params,
                                                     int64_t rows, int64_t dim, closs_dtype_t dtype,
                                                     size_t *bytes);
CLOSS_API closs_status_t closs_ntxent_forward(closs_handle_t handle,
                                              const closs_ntxent_params *params, closs_matrix_t z,
                                              float *loss, float *stats, void *workspace,
                                              size_t workspace_bytes, closs_stream_t stream);
CLOSS_API closs_status_t closs_ntxent_backward(closs_handle_t handle,
                                               const closs_ntxent_params *params, closs_matrix_t z,
                                               const float *stats, const float *upstream,
                                               closs_grad_t grad_z, void *workspace,
                                               size_t workspace_bytes, closs_stream_t stream);
CLOSS_API closs_status_t closs_ntxent_forward_backward(
    closs_handle_t handle, const closs_ntxent_params *params, closs_matrix_t z, float *loss,
    closs_grad_t grad_z, void *workspace, size_t workspace_bytes, closs_stream_t stream);

CLOSS_API closs_status_t closs_supcon_workspace_size(closs_handle_t handle,
                                                     const closs_supcon_params *params,
                                                     int64_t rows, int64_t dim, closs_dtype_t dtype,
                                                     size_t *bytes);
CLOSS_API closs_status_t closs_supcon_forward(closs_handle_t handle,
                                              const closs_supcon_params *params, closs_matrix_t z,
                                              closs_vector_t labels, float *loss, float *stats,
                                              int64_t *valid, void *workspace,
                                              size_t workspace_bytes, closs_stream_t stream);
CLOSS_API closs_status_t closs_supcon_backward(closs_handle_t handle,
                                               const closs_supcon_params *params, closs_matrix_t z,
                                               closs_vector_t labels, const float *stats,
                                               const float *upstream, closs_grad_t grad_z,
                                               void *workspace, size_t workspace_bytes,
                                               closs_stream_t stream);
CLOSS_API closs_status_t closs_supcon_forward_backward(
    closs_handle_t handle, const closs_supcon_params *params, closs_matrix_t z,
    closs_vector_t labels, float *loss, int64_t *valid, closs_grad_t grad_z, void *workspace,
    size_t workspace_bytes, closs_stream_t stream);

/* CLIP and SigLIP on the GPU (closs_ref_clip's and closs_ref_siglip's math) without an
 * N × (N + K) matrix in memory. a is N × D, b is (N + K) × D, one dtype (f32, f16 or bf16),
 * N + K ≤ INT_MAX. Two paths (`path` in the parameters):
 *   FUSED    logit tiles stay on chip (float SIMT kernels for every dtype); workspace
 *            10·N + 4·(N + K) floats (56 MiB at N = 2^20, K = 0); D ≤ 512 (NOT_SUPPORTED above).
 *   CHUNKED  cuBLAS (SGEMM on float copies of the embedded rows, TF32 off) multiplies a block of
 *            rows of one tower by the other into at most 256 MiB; adds (2N + K)·D floats; any D.
 *            A handle's first CHUNKED call creates its cuBLAS context (CUBLAS_ERROR if it cannot).
 *   AUTO     FUSED when D ≤ 512, else CHUNKED.
 * Scalars: logit_scale (s) and logit_bias (β, SigLIP) are one device float each, read on the
 * device (a framework's parameter tensor, already exponentiated for s), or NULL for the value in
 * the parameters. grad_logit_scale, grad_logit_bias: one device float each, written (not
 * accumulated), or NULL to skip. grad_a (row_count × D) and grad_b ((row_count + |Q|) × D, see
 * "Two-tower row ranges") in the inputs' dtype; a closs_grad_t with data NULL is skipped (a frozen
 * tower). With a row range, the loss, statistics, gradients and scalar gradients are the range's
 * share; *_backward's statistics and NONE's upstream are N values whatever the range.
 *   closs_clip_forward    loss (1 float, or row_count for NONE) and the statistics of the range's
 *                         pairs: row_stats[i] = log Σ_{j∈C(i), j≠i} e^(x_ij), column_stats[i]
 *                         (symmetric only) = log Σ_{k<N, k≠i} e^(x_ki); either may be NULL (no
 *                         backward follows). The same on both paths.
 *   closs_clip_backward   from row_stats and (symmetric) column_stats of ALL N pairs, and
 *                         upstream (NULL for 1; 1 value, or N for NONE).
 *   closs_siglip_*        the same without statistics: one call gives a rank's whole share.
 * *_workspace_size needs no device: `handle` is not used and may be NULL; `pairs` = N, `rows_b`
 * = N + K. Check mode verifies a, b and the device scalars (s finite and > 0, β finite), not the
 * statistics or upstream. */
CLOSS_API closs_status_t closs_clip_workspace_size(closs_handle_t handle,
                                                   const closs_clip_params *params, int64_t pairs,
                                                   int64_t rows_b, int64_t dim, closs_dtype_t dtype,
                                                   size_t *bytes);
CLOSS_API closs_status_t closs_clip_forward(closs_handle_t handle, const closs_clip_params *params,
                                            closs_matrix_t a, closs_matrix_t b,
                                            const float *logit_scale, float *loss, float *row_stats,
                                            float *column_stats, void *workspace,
                                            size_t workspace_bytes, closs_stream_t stream);
CLOSS_API closs_status_t closs_clip_backward(closs_handle_t handle, const closs_clip_params *params,
                                             closs_matrix_t a, closs_matrix_t b,
                                             const float *logit_scale, const float *row_stats,
                                             const float *column_stats, const float *upstream,
                                             closs_grad_t grad_a, closs_grad_t grad_b,
                                             float *grad_logit_scale, void *workspace,
                                             size_t workspace_bytes, closs_stream_t stream);
CLOSS_API closs_status_t closs_clip_forward_backward(
    closs_handle_t handle, const closs_clip_params *params, closs_matrix_t a, closs_matrix_t b,
    const float *logit_scale, float *loss, closs_grad_t grad_a, closs_grad_t grad_b,
    float *grad_logit_scale, void *workspace, size_t workspace_bytes, closs_stream_t stream);

CLOSS_API closs_status_t closs_siglip_workspace_size(closs_handle_t handle,
                                                     const closs_siglip_params *params,
                                                     int64_t pairs, int64_t rows_b, int64_t dim,
                                                     closs_dtype_t dtype, size_t *bytes);
CLOSS_API closs_status_t closs_siglip_forward(closs_handle_t handle,
                                              const closs_siglip_params *params, closs_matrix_t a,
                                              closs_matrix_t b, const float *logit_scale,
                                              const float *logit_bias, float *loss, void *workspace,
                                              size_t workspace_bytes, closs_stream_t stream);
CLOSS_API closs_status_t closs_siglip_backward(
    closs_handle_t handle, const closs_siglip_params *params, closs_matrix_t a, closs_matrix_t b,
    const float *logit_scale, const float *logit_bias, const float *upstream, closs_grad_t grad_a,
    closs_grad_t grad_b, float *grad_logit_scale, float *grad_logit_bias, void *workspace,
    size_t workspace_bytes, closs_stream_t stream);
CLOSS_API closs_status_t closs_siglip_forward_backward(
    closs_handle_t handle, const closs_siglip_params *params, closs_matrix_t a, closs_matrix_t b,
    const float *logit_scale, const float *logit_bias, float *loss, closs_grad_t grad_a,
    closs_grad_t grad_b, float *grad_logit_scale, float *grad_logit_bias, void *workspace,
    size_t workspace_bytes, closs_stream_t stream);

/* ------------------------------------------------------------------------------------------------
 * Devices
 * --------------------------------------------------------------------------------------------- */

/*! closs_cuda_available() : 1 if this build has CUDA support, 0 otherwise. */
CLOSS_API int closs_cuda_available(void);

/*! closs_cuda_device_count() : the number of usable CUDA devices (0 when the build has no CUDA,
 *  no driver is installed or no device is present; none of those is an error). */
CLOSS_API closs_status_t closs_cuda_device_count(int *count);

#ifdef __cplusplus
}
#endif

#endif /* CLOSS_H */
