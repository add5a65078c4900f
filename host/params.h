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

#endif
