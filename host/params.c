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
