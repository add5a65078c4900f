/* CLIP and SigLIP in the reference test suites: one problem type for both losses (a: N × D,
 * b: (N + K) × D, the loss's parameter struct), random inputs spread so that the softmax or the
 * sigmoids are neither flat nor saturated, and one call that runs either loss. */
#ifndef CLOSS_TWO_TOWER_SUPPORT_H
#define CLOSS_TWO_TOWER_SUPPORT_H

#include <stdint.h>

#include "closs.h"
#include "test_support.h"

typedef struct tt_problem {
    int siglip; /* 0: CLIP, 1: SigLIP */
    int64_t pairs, negatives, dim;
    double *a, *b; /* dense f64: pairs × dim and (pairs + negatives) × dim */
    closs_clip_params clip;
    closs_siglip_params sig;
    char name[160];
} tt_problem;

/* A field both parameter structs have, of the problem's loss (an lvalue). */
#define TT_FIELD(p, field) (*((p)->siglip ? &(p)->sig.field : &(p)->clip.field))

/* Defaults (the INIT macros) and zero inputs. */
tt_problem tt_new(int siglip, int64_t pairs, int64_t negatives, int64_t dim);
/* Random inputs for the problem's current normalize and logit_scale: rows of random norm in
 * [0.3, 3] with normalisation, else entries scaled so that s·a_i·b_j has a spread of about 1; each
 * partner b_i leans towards a_i, so that positives score higher than most negatives. */
void tt_fill(tt_problem *p, ct_rng *rng);
void tt_free(tt_problem *p);
/* "clip symmetric=1 in_batch_negatives=1 normalize=1 ... N=5 K=3 D=4" into p->name. */
void tt_describe(tt_problem *p);

/* The rows of grad_b a call writes: the range's partners and negatives, or for the whole batch
 * N + K (N with grad_negatives = 0). The values of loss: 1, or for NONE the range's pairs. */
int64_t tt_grad_b_rows(const tt_problem *p);
int64_t tt_loss_count(const tt_problem *p);
/* The range's pairs (all N for the whole batch). */
int64_t tt_range_count(const tt_problem *p);

/* closs_ref_clip or closs_ref_siglip on the views a and b; grad_bias is ignored for CLIP. */
closs_status_t tt_call_views(const tt_problem *p, closs_matrix_t a, closs_matrix_t b,
                             const double *upstream, double *loss, double *grad_a, double *grad_b,
                             double *grad_scale, double *grad_bias);
/* The same on the dense f64 inputs. */
closs_status_t tt_call(const tt_problem *p, const double *upstream, double *loss, double *grad_a,
                       double *grad_b, double *grad_scale, double *grad_bias);

/* Everything one call may write, poisoned by tt_outputs_new (room for the whole batch). */
typedef struct tt_outputs {
    double *loss, *grad_a, *grad_b;
    double grad_scale, grad_bias;
} tt_outputs;
tt_outputs tt_outputs_new(const tt_problem *p);
void tt_outputs_free(tt_outputs *o);
/* tt_call into o, every gradient requested. */
void tt_run(const tt_problem *p, const double *upstream, tt_outputs *o);

/* Asserts that two calls' outputs hold the same bits: the loss values, grad_a (the range's pairs),
 * grad_b (tt_grad_b_rows), the scale's and, for SigLIP, the bias's gradient. */
void tt_assert_same_bits(const tt_problem *p, const tt_outputs *got, const tt_outputs *want,
                         const ct_rng *rng, const char *what);

#endif
