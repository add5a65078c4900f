/* Parameter checks (see params.h). The ranges are those of docs/contract.md. */
#include "params.h"

#include <math.h>
#include <stddef.h>

#include "error.h"
#include "validate.h"

closs_status_t closs_check_pair_params(const closs_pair_params *params) {
    CLOSS_TRY(closs_check_params("params", params, sizeof *params));
    CLOSS_TRY(closs_check_finite_in("margin", params->margin, 0.0, INFINITY));
    if (params->distance != CLOSS_DISTANCE_EUCLIDEAN && params->distance != CLOSS_DISTANCE_COSINE)
        return closs_fail(CLOSS_STATUS_INVALID_ARGUMENT,
                          "distance = %d: the pair loss takes CLOSS_DISTANCE_EUCLIDEAN or "
                          "CLOSS_DISTANCE_COSINE",
                          (int)params->distance);
    CLOSS_TRY(closs_check_reduction(params->reduction));
    return closs_check_flag("check_inputs", params->check_inputs);
}

closs_status_t closs_check_triplet_params(const closs_triplet_params *params) {
    CLOSS_TRY(closs_check_params("params", params, sizeof *params));
    CLOSS_TRY(closs_check_finite_in("margin", params->margin, -INFINITY, INFINITY));
    if (params->distance != CLOSS_DISTANCE_EUCLIDEAN &&
        params->distance != CLOSS_DISTANCE_SQEUCLIDEAN && params->distance != CLOSS_DISTANCE_COSINE)
        return closs_fail(CLOSS_STATUS_INVALID_ARGUMENT,
                          "distance = %d: must be CLOSS_DISTANCE_EUCLIDEAN, _SQEUCLIDEAN or "
                          "_COSINE",
                          (int)params->distance);
    CLOSS_TRY(closs_check_flag("swap", params->swap));
    CLOSS_TRY(closs_check_reduction(params->reduction));
    return closs_check_flag("check_inputs", params->check_inputs);
}

closs_status_t closs_check_cosine_params(const closs_cosine_params *params) {
    CLOSS_TRY(closs_check_params("params", params, sizeof *params));
    CLOSS_TRY(closs_check_finite_in("margin", params->margin, -1.0, 1.0));
    CLOSS_TRY(closs_check_flag("squared", params->squared));
    CLOSS_TRY(closs_check_reduction(params->reduction));
    return closs_check_flag("check_inputs", params->check_inputs);
}

static closs_status_t check_path(closs_path_t path) {
    if (path != CLOSS_PATH_AUTO && path != CLOSS_PATH_FUSED && path != CLOSS_PATH_CHUNKED)
        return closs_fail(CLOSS_STATUS_INVALID_ARGUMENT,
                          "path = %d: must be CLOSS_PATH_AUTO, _FUSED or _CHUNKED", (int)path);
    return CLOSS_STATUS_SUCCESS;
}

closs_status_t closs_check_ntxent_params(const closs_ntxent_params *params) {
    CLOSS_TRY(closs_check_versioned_params(
        "params", params, offsetof(closs_ntxent_params, row_begin), sizeof *params));
    CLOSS_TRY(closs_check_positive_finite("temperature", params->temperature));
    CLOSS_TRY(closs_check_flag("normalize", params->normalize));
    CLOSS_TRY(closs_check_reduction(params->reduction));
    CLOSS_TRY(check_path(params->path));
    return closs_check_flag("check_inputs", params->check_inputs);
}

closs_status_t closs_check_supcon_params(const closs_supcon_params *params) {
    CLOSS_TRY(closs_check_versioned_params(
        "params", params, offsetof(closs_supcon_params, row_begin), sizeof *params));
    CLOSS_TRY(closs_check_positive_finite("temperature", params->temperature));
    if (params->base_temperature != 0.0)
        CLOSS_TRY(closs_check_positive_finite("base_temperature", params->base_temperature));
    CLOSS_TRY(closs_check_flag("normalize", params->normalize));
    CLOSS_TRY(closs_check_reduction(params->reduction));
    CLOSS_TRY(check_path(params->path));
    return closs_check_flag("check_inputs", params->check_inputs);
}

/* The options CLIP and SigLIP share. */
static closs_status_t check_two_tower_options(int normalize, int grad_negatives,
                                              closs_reduction_t reduction, int check_inputs,
                                              closs_path_t path) {
    CLOSS_TRY(closs_check_flag("normalize", normalize));
    CLOSS_TRY(closs_check_flag("grad_negatives", grad_negatives));
    CLOSS_TRY(closs_check_reduction(reduction));
    CLOSS_TRY(check_path(path));
    return closs_check_flag("check_inputs", check_inputs);
}

closs_status_t closs_check_clip_params(const closs_clip_params *params) {
    CLOSS_TRY(closs_check_params("params", params, sizeof *params));
    CLOSS_TRY(closs_check_positive_finite("logit_scale", params->logit_scale));
    CLOSS_TRY(closs_check_flag("symmetric", params->symmetric));
    CLOSS_TRY(closs_check_flag("in_batch_negatives", params->in_batch_negatives));
    if (params->symmetric && !params->in_batch_negatives)
        return closs_fail(CLOSS_STATUS_INVALID_ARGUMENT,
                          "symmetric = 1 with in_batch_negatives = 0: the b → a direction has no "
                          "negatives but the other pairs' rows of a; set symmetric = 0 (MoCo) or "
                          "in_batch_negatives = 1 (CLIP)");
    return check_two_tower_options(params->normalize, params->grad_negatives, params->reduction,
                                   params->check_inputs, params->path);
}

closs_status_t closs_check_siglip_params(const closs_siglip_params *params) {
    CLOSS_TRY(closs_check_params("params", params, sizeof *params));
    CLOSS_TRY(closs_check_positive_finite("logit_scale", params->logit_scale));
    CLOSS_TRY(closs_check_finite_in("logit_bias", params->logit_bias, -INFINITY, INFINITY));
    return check_two_tower_options(params->normalize, params->grad_negatives, params->reduction,
                                   params->check_inputs, params->path);
}

closs_status_t closs_resolve_two_tower_range(closs_two_tower_range requested, int grad_negatives,
                                             int64_t pairs, int64_t negatives,
                                             closs_two_tower_range *range) {
    const int64_t begin = requested.begin, count = requested.count;
    const int64_t negatives_begin = requested.negatives_begin;
    const int64_t negatives_count = requested.negatives_count;
    if (begin == 0 && count == 0) {
        if (negatives_begin != 0 || negatives_count != 0)
            return closs_fail(CLOSS_STATUS_INVALID_ARGUMENT,
                              "negatives_begin = %lld, negatives_count = %lld: a whole-batch call "
                              "(row_begin = row_count = 0) owns every extra negative; give the "
                              "rank's pairs as a row range to own a part of them",
                              (long long)negatives_begin, (long long)negatives_count);
        *range = (closs_two_tower_range){0, pairs, 0, grad_negatives ? negatives : 0};
        return CLOSS_STATUS_SUCCESS;
    }
    if (begin < 0 || begin >= pairs)
        return closs_fail(CLOSS_STATUS_INVALID_ARGUMENT,
                          "row_begin = %lld: must lie in [0, %lld), the pairs (rows of a); all "
                          "four range fields 0 mean the whole batch",
                          (long long)begin, (long long)pairs);
    if (count < 1 || count > pairs - begin)
        return closs_fail(CLOSS_STATUS_INVALID_ARGUMENT,
                          "row_count = %lld: must lie in [1, %lld] with row_begin = %lld (the "
                          "range ends within the %lld pairs)",
                          (long long)count, (long long)(pairs - begin), (long long)begin,
                          (long long)pairs);
    if (negatives_begin < 0 || negatives_begin > negatives)
        return closs_fail(CLOSS_STATUS_INVALID_ARGUMENT,
                          "negatives_begin = %lld: must lie in [0, %lld], among the K = b.rows − "
                          "a.rows extra negatives",
                          (long long)negatives_begin, (long long)negatives);
    if (negatives_count < 0 || negatives_count > negatives - negatives_begin)
        return closs_fail(CLOSS_STATUS_INVALID_ARGUMENT,
                          "negatives_count = %lld: must lie in [0, %lld] with negatives_begin = "
                          "%lld (the range ends within the K = %lld extra negatives)",
                          (long long)negatives_count, (long long)(negatives - negatives_begin),
                          (long long)negatives_begin, (long long)negatives);
    if (negatives_count > 0 && !grad_negatives)
        return closs_fail(
            CLOSS_STATUS_INVALID_ARGUMENT,
            "negatives_count = %lld with grad_negatives = 0: no gradient of the extra "
            "negatives is computed, so a range of them means nothing; pass 0",
            (long long)negatives_count);
    *range = requested;
    return CLOSS_STATUS_SUCCESS;
}

closs_status_t closs_resolve_row_range(closs_row_range requested, int64_t rows,
                                       closs_row_range *range) {
    const int64_t begin = requested.begin, count = requested.count;
    if (begin == 0 && count == 0) {
        *range = (closs_row_range){0, rows};
        return CLOSS_STATUS_SUCCESS;
    }
    if (begin < 0 || begin >= rows)
        return closs_fail(
            CLOSS_STATUS_INVALID_ARGUMENT,
            "row_begin = %lld: must lie in [0, %lld), the rows of z (0 with row_count "
            "= 0 means all rows)",
            (long long)begin, (long long)rows);
    if (count < 1 || count > rows - begin)
        return closs_fail(
            CLOSS_STATUS_INVALID_ARGUMENT,
            "row_count = %lld: must lie in [1, %lld] with row_begin = %lld (the range "
            "ends within the %lld rows of z)",
            (long long)count, (long long)(rows - begin), (long long)begin, (long long)rows);
    *range = requested;
    return CLOSS_STATUS_SUCCESS;
}

closs_row_range closs_ntxent_requested_range(const closs_ntxent_params *params) {
    if (params->size <= offsetof(closs_ntxent_params, row_begin)) return (closs_row_range){0, 0};
    return (closs_row_range){params->row_begin, params->row_count};
}

closs_row_range closs_supcon_requested_range(const closs_supcon_params *params) {
    if (params->size <= offsetof(closs_supcon_params, row_begin)) return (closs_row_range){0, 0};
    return (closs_row_range){params->row_begin, params->row_count};
}

closs_status_t closs_check_tower_shapes(closs_matrix_t a, closs_matrix_t b) {
    if (b.cols != a.cols)
        return closs_fail(CLOSS_STATUS_INVALID_ARGUMENT,
                          "b.cols = %lld: must equal a.cols = %lld (both towers embed in one "
                          "dimension)",
                          (long long)b.cols, (long long)a.cols);
    if (b.rows < a.rows)
        return closs_fail(CLOSS_STATUS_INVALID_ARGUMENT,
                          "b.rows = %lld: must be >= a.rows = %lld (row i of b is the partner of "
                          "row i of a; the K = b.rows − a.rows rows after them are extra "
                          "negatives)",
                          (long long)b.rows, (long long)a.rows);
    return CLOSS_STATUS_SUCCESS;
}
