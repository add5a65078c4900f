/* Private: the thread-local "last error" detail behind closs_last_error(). */
#ifndef CLOSS_HOST_ERROR_H
#define CLOSS_HOST_ERROR_H

#include "closs.h"

/* Clears the detail; every public entry point calls it first. */
void closs_clear_error(void);

/* Records a printf-style detail for `status` and returns `status`, so that a check reads
 * `return closs_fail(CLOSS_STATUS_INVALID_ARGUMENT, "x1.rows = %lld ...", ...)`. */
closs_status_t closs_fail(closs_status_t status, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

/* Propagates a failing status from a helper: the helper already wrote the detail. */
#define CLOSS_TRY(expr)                                                                            \
    do {                                                                                           \
        closs_status_t closs_try_status_ = (expr);                                                 \
        if (closs_try_status_ != CLOSS_STATUS_SUCCESS) return closs_try_status_;                   \
    } while (0)

#endif
