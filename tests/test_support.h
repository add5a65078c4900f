/* Shared helpers of the CPU-reference test suites: a seeded PRNG whose seed goes into every
 * failure message, inputs in any layout the API accepts (f32/f64, ld > cols with NaN padding),
 * NaN poisoning of outputs, central finite differences, tolerant and bitwise comparisons, and
 * small independent re-implementations of the distances (for hand cases and kink avoidance).
 *
 * Reproducing a failure: every message ends with "[seed S: rerun with CLOSS_TEST_SEED=S]";
 * setting that variable makes every test of the suite draw the same inputs again. */
#ifndef CLOSS_TEST_SUPPORT_H
#define CLOSS_TEST_SUPPORT_H

#include <stddef.h>
#include <stdint.h>

#include "closs.h"

/* ---- random inputs ------------------------------------------------------------------------- */

typedef struct ct_rng {
    uint64_t seed; /* what a failure message prints */
    uint64_t s[4]; /* xoshiro256** state */
} ct_rng;

/* A generator seeded from $CLOSS_TEST_SEED when set, else from /dev/urandom (else time and pid). */
ct_rng ct_rng_fresh(void);
/* A generator with a given seed. */
ct_rng ct_rng_seeded(uint64_t seed);
uint64_t ct_next_u64(ct_rng *rng);
double ct_uniform(ct_rng *rng, double low, double high); /* [low, high) */
double ct_normal(ct_rng *rng);                           /* standard normal */
int64_t ct_int(ct_rng *rng, int64_t low, int64_t high);  /* [low, high], inclusive */
void ct_fill_normal(ct_rng *rng, double *x, int64_t n, double scale);
/* A random permutation of 0..n−1. */
void ct_permutation(ct_rng *rng, int64_t *perm, int64_t n);

#define CT_SEED_FMT       " [seed %llu: rerun with CLOSS_TEST_SEED=%llu]"
#define CT_SEED_ARGS(rng) (unsigned long long)(rng)->seed, (unsigned long long)(rng)->seed

/* ---- inputs in the layouts the API accepts ------------------------------------------------- */

/* Storage for one input matrix, owned by the test. Padding columns (ld > cols) hold NaN, so a
 * library that reads them produces NaN instead of a silently right answer. */
typedef struct ct_matrix {
    closs_matrix_t view;
    void *storage;
} ct_matrix;

/* Copies dense rows × cols doubles into a new matrix of `dtype` (CLOSS_F32 rounds) with leading
 * dimension `ld` (>= cols). */
ct_matrix ct_matrix_pack(const double *dense, int64_t rows, int64_t cols, closs_dtype_t dtype,
                         int64_t ld);
void ct_matrix_free(ct_matrix *m);

/* A real vector (pair/cosine labels) or an integer vector (SupCon labels) in `dtype`. */
typedef struct ct_vector {
    closs_vector_t view;
    void *storage;
} ct_vector;
ct_vector ct_vector_real(const double *values, int64_t length, closs_dtype_t dtype);
ct_vector ct_vector_label(const int64_t *values, int64_t length, closs_dtype_t dtype);
void ct_vector_free(ct_vector *v);

/* Rounds every value to the nearest float, in place: the f64 twin of an f32 input. */
void ct_round_to_f32(double *x, int64_t n);

/* ---- poisoning ---------------------------------------------------------------------------- */

/* A quiet NaN with a recognisable payload; any value the library computes differs from it. */
double ct_poison_value(void);
void ct_poison(double *x, int64_t n);
/* Index of the first element that no longer holds the poison bits (−1: all still poisoned). */
int64_t ct_first_unpoisoned(const double *x, int64_t n);
/* Index of the first element that still holds the poison bits (−1: all were overwritten). */
int64_t ct_first_poisoned(const double *x, int64_t n);
/* Index of the first NaN or Inf (−1: all finite). */
int64_t ct_first_nonfinite(const double *x, int64_t n);

/* ---- finite differences and comparisons ---------------------------------------------------- */

/* The scalar objective of an n-vector, for finite differences. */
typedef double (*ct_objective_fn)(void *context, const double *x);

/* grad[i] = (f(x + h_i e_i) − f(x − h_i e_i)) / (2 h_i), h_i = 1e-6·max(1, |x_i|) (the step
 * actually taken, after rounding). x is restored exactly. */
void ct_central_differences(ct_objective_fn f, void *context, double *x, int64_t n, double *grad);

/* First i with |got_i − want_i| > atol + rtol·max(|got_i|, |want_i|), or a NaN on one side only
 * (two NaNs agree); −1 when none. */
int64_t ct_first_mismatch(const double *got, const double *want, int64_t n, double rtol,
                          double atol);
/* First i where the bits differ; −1 when none. */
int64_t ct_first_bit_difference(const double *a, const double *b, int64_t n);
int ct_same_bits(double a, double b);
double ct_max_abs(const double *x, int64_t n);

/* ---- independent formulas (contract.md, written again here) --------------------------------- */

double ct_dot(const double *a, const double *b, int64_t dim);
double ct_norm(const double *a, int64_t dim);
/* a·b / (max(‖a‖, 1e-8)·max(‖b‖, 1e-8)) */
double ct_cos(const double *a, const double *b, int64_t dim);
/* ‖a − b‖, ‖a − b‖² or 1 − cos(a, b). */
double ct_distance(closs_distance_t kind, const double *a, const double *b, int64_t dim);

/* ---- assertions --------------------------------------------------------------------------- */

/* Asserts got ≈ want element-wise (see ct_first_mismatch); `what` names the quantity and `rng`
 * (may be NULL) supplies the seed for the message. */
#define ct_assert_close(got, want, n, rtol, atol, rng, what)                                       \
    do {                                                                                           \
        const double *ct_got_ = (got), *ct_want_ = (want);                                         \
        int64_t ct_bad_ = ct_first_mismatch(ct_got_, ct_want_, (n), (rtol), (atol));               \
        if (ct_bad_ >= 0)                                                                          \
            cr_assert_fail("%s: element %lld of %lld: got %.17g, want %.17g (rtol %g, atol %g)%s", \
                           (what), (long long)ct_bad_, (long long)(n), ct_got_[ct_bad_],           \
                           ct_want_[ct_bad_], (double)(rtol), (double)(atol), ct_seed_text(rng));  \
    } while (0)

/* Asserts got and want hold the same bits element-wise. */
#define ct_assert_bitwise(got, want, n, rng, what)                                                 \
    do {                                                                                           \
        const double *ct_got_ = (got), *ct_want_ = (want);                                         \
        int64_t ct_bad_ = ct_first_bit_difference(ct_got_, ct_want_, (n));                         \
        if (ct_bad_ >= 0)                                                                          \
            cr_assert_fail("%s: element %lld of %lld differs: %.17g vs %.17g%s", (what),           \
                           (long long)ct_bad_, (long long)(n), ct_got_[ct_bad_],                   \
                           ct_want_[ct_bad_], ct_seed_text(rng));                                  \
    } while (0)

/* " [seed S: rerun with CLOSS_TEST_SEED=S]", or "" for NULL; a static buffer. */
const char *ct_seed_text(const ct_rng *rng);

/* Allocation that aborts the test on failure. */
void *ct_alloc(size_t bytes);
double *ct_doubles(int64_t n);

#endif
