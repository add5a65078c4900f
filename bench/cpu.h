/* `closs bench`, CPU half (cpu.c): the double-precision reference, verified and timed. */
#ifndef CLOSS_BENCH_CPU_H
#define CLOSS_BENCH_CPU_H

#include "points.h"

/* Verifies each selected loss against finite differences and times it, appending to `points`;
 * nonzero when a point failed. */
int bench_cpu_run(const bench_options *options, bench_points *points);

#endif
