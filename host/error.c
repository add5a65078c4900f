/* The per-thread detail message of the last failure. Thread-local so that concurrent callers on
 * different threads never see each other's messages. */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>

static _Thread_local char last_error[512];

void closs_clear_error(void) { last_error[0] = '\0'; }

closs_status_t closs_fail(closs_status_t status, const char *format, ...) {
    va_list args;
    va_start(args, format);
    vsnprintf(last_error, sizeof last_error, format, args);
    va_end(args);
    return status;
}

const char *closs_last_error(void) { return last_error; }
