/* `closs bench`'s output (output.c): the table on stdout and the JSON file, schema
 * "closs-bench/1" (documented at the top of output.c). */
#ifndef CLOSS_BENCH_OUTPUT_H
#define CLOSS_BENCH_OUTPUT_H

#include <stdio.h>

#include "gpu.h"
#include "points.h"

void bench_print_table(FILE *out, const bench_points *points, const bench_gpu_info *gpu);
/* 0, or -1 when the file could not be written. */
int bench_write_json(const char *path, const bench_points *points, const bench_gpu_info *gpu);

#endif
