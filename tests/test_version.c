/* The version macros, the runtime version and the CMake project version agree. */
#include <criterion/criterion.h>
#include <stdio.h>

#include "closs.h"

Test(version, header_matches_library) {
    cr_assert_eq(closs_version(), CLOSS_VERSION);
    char expected[32];
    snprintf(expected, sizeof expected, "%d.%d.%d", CLOSS_VERSION_MAJOR, CLOSS_VERSION_MINOR,
             CLOSS_VERSION_PATCH);
    cr_assert_str_eq(closs_version_string(), expected);
    cr_assert_str_eq(closs_version_string(), CLOSS_EXPECTED_VERSION);
}

Test(status, every_status_has_a_string) {
    for (int s = 0; s <= CLOSS_STATUS_COUNT; ++s) {
        const char *text = closs_status_string((closs_status_t)s);
        cr_assert_not_null(text);
        cr_assert_gt(strlen(text), 0);
    }
    cr_assert_str_eq(closs_status_string(CLOSS_STATUS_SUCCESS), "success");
}

Test(device, count_without_gpu_is_not_an_error) {
    int count = -1;
    cr_assert_eq(closs_cuda_device_count(&count), CLOSS_STATUS_SUCCESS);
    cr_assert_geq(count, 0);
    cr_assert_eq(closs_cuda_device_count(NULL), CLOSS_STATUS_INVALID_ARGUMENT);
    cr_assert_neq(strlen(closs_last_error()), 0);
}
