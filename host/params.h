/* Private: the checks of each loss's parameter struct, shared by the CPU reference and the GPU
 * entry points so that both accept exactly the ranges of docs/contract.md. */
#ifndef CLOSS_HOST_PARAMS_H
#define CLOSS_HOST_PARAMS_H

#include "closs.h"

closs_status_t closs_check_pair_params(const closs_pair_params *params);
closs_status_t closs_check_triplet_params(const closs_triplet_params *params);
closs_status_t closs_check_cosine_params(const closs_cosine_params *params);
closs_status_t closs_check_ntxent_params(const closs_ntxent_params *params);
closs_status_t closs_check_supcon_params(const closs_supcon_params *params);
closs_status_t closs_check_clip_params(const closs_clip_params *params);
closs_status_t closs_check_siglip_params(const closs_siglip_params *params);

/* NT-Xent's and SupCon's anchor row range (closs.h, "Row ranges"): first as the caller set it
 * (0 and 0 from a struct older than the fields), then resolved against z's rows. */
typedef struct closs_row_range {
    int64_t begin, count;
} closs_row_range;

closs_row_range closs_ntxent_requested_range(const closs_ntxent_params *params);
closs_row_range closs_supcon_requested_range(const closs_supcon_params *params);

/* 0/0 becomes [0, rows); anything else must lie within the rows (INVALID_ARGUMENT naming
 * row_begin or row_count otherwise). */
closs_status_t closs_resolve_row_range(closs_row_range requested, int64_t rows,
                                       closs_row_range *range);

/* A two-tower call's share (closs.h, "Two-tower row ranges"): the pairs [begin, begin + count) and
 * the extra negatives [negatives_begin, negatives_begin + negatives_count) (indices among the K
 * negatives, so rows N + those of b) whose gradient rows the call writes. */
typedef struct closs_two_tower_range {
    int64_t begin, count;
    int64_t negatives_begin, negatives_count;
} closs_two_tower_range;

/* The requested fields (all 0: the whole batch, whose negatives are all K when grad_negatives is
 * 1 and none otherwise) resolved against N pairs and K negatives; INVALID_ARGUMENT naming the
 * field otherwise. */
closs_status_t closs_resolve_two_tower_range(closs_two_tower_range requested, int grad_negatives,
                                             int64_t pairs, int64_t negatives,
                                             closs_two_tower_range *range);

/* The towers' shapes, on the CPU and the GPU alike: b as wide as a, with at least a's rows (N
 * partners, then K = b.rows − a.rows extra negatives); INVALID_ARGUMENT naming b otherwise. */
closs_status_t closs_check_tower_shapes(closs_matrix_t a, closs_matrix_t b);

#endif
