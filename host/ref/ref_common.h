/* Private helpers of the CPU reference: loading inputs into double, distances with their
 * gradients, NaN-propagating hinges, reduction weights, and a thread-count-independent
 * parallel loop. Everything is double precision. */
#ifndef CLOSS_REF_COMMON_H
#define CLOSS_REF_COMMON_H

#include <math.h>
#include <stdint.h>

#include "closs.h"

/* A parallel loop over OpenMP threads when the build has OpenMP and `worth_it` holds; the pragma
 * disappears otherwise (no unknown-pragma warnings). Small problems stay on the calling thread:
 * waking a team costs more than they do, and idle spinning threads slow every other process. */
#define CLOSS_PRAGMA(text) _Pragma(#text)
#ifdef _OPENMP
#    define CLOSS_PARALLEL_FOR_IF(worth_it) CLOSS_PRAGMA(omp parallel for schedule(static) if(worth_it))
#else
#    define CLOSS_PARALLEL_FOR_IF(worth_it)
#endif

/* Multiply-adds below which a loop is not worth spreading over threads (about a millisecond). */
#define CLOSS_PARALLEL_MIN_WORK (1 << 20)

/* Row r of an f32 or f64 matrix, converted to `dim` doubles; returns 1 when every element is
 * finite. A non-finite input makes every loss it reaches NaN, even where the arithmetic alone
 * would drop it (max(0, −∞) = 0, exp(−∞) = 0): the contract never lets one vanish. */
int closs_ref_load_row(closs_matrix_t m, int64_t row, double *out);

/* Element i of an f32 or f64 vector. */
double closs_ref_load_real(closs_vector_t v, int64_t i);

/* Element i of an i32 or i64 vector. */
int64_t closs_ref_load_label(closs_vector_t v, int64_t i);

/* max(0, x), but NaN stays NaN: the contract propagates non-finite inputs to the loss. */
static inline double closs_ref_hinge(double x) { return x > 0.0 ? x : (isnan(x) ? x : 0.0); }

/* cos(a, b) = a·b / (max(‖a‖, 1e-8)·max(‖b‖, 1e-8)); when grad_a/grad_b are not NULL they
 * receive ∂cos/∂a and ∂cos/∂b (the clamped norm is a constant below 1e-8). */
double closs_ref_cos(const double *a, const double *b, int64_t dim, double *grad_a, double *grad_b);

/* d(a, b) for EUCLIDEAN, SQEUCLIDEAN or COSINE (1 − cos); when grad_a/grad_b are not NULL they
 * receive ∂d/∂a and ∂d/∂b. The Euclidean distance has gradient 0 at a == b (contract). */
double closs_ref_distance(closs_distance_t kind, const double *a, const double *b, int64_t dim,
                          double *grad_a, double *grad_b);

/* The factor that turns ∂ℓ_i into the gradient of the reduced loss:
 * MEAN: u / count, SUM: u, NONE: upstream[i] (u = upstream[0], or 1 when upstream is NULL). */
double closs_ref_row_weight(closs_reduction_t reduction, const double *upstream, int64_t row,
                            int64_t count);

/* Writes the reduced loss: MEAN → Σ/count (Σ itself when count is 0: 0, or NaN from a non-finite
 * input), SUM → Σ, NONE → every row.
 * The sum runs in row order, so the result does not depend on the thread count. */
void closs_ref_reduce(closs_reduction_t reduction, const double *row_losses, int64_t rows,
                      int64_t count, double *loss);

/* The outputs NT-Xent and SupCon require: loss, or for a backward (from given stats) the stats
 * and grad_z. */
closs_status_t closs_ref_check_outputs(int backward, const double *loss, const double *stats,
                                       const double *grad_z);

/* `count` elements of `element_size` bytes, the byte count overflow-checked; ALLOC_FAILED or
 * INVALID_ARGUMENT (a size beyond 64 bits or size_t) naming `what` otherwise. count == 0 still
 * gives a valid allocation. */
closs_status_t closs_ref_alloc(const char *what, int64_t count, size_t element_size, void **out);

#endif
