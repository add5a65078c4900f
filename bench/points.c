/* What `closs bench` measures (points.h): the losses, the growing array of points, the progress
 * line. */
#define _POSIX_C_SOURCE 200809L /* fileno, isatty */
#include "points.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const bench_case bench_cases[BENCH_CASES] = {
    {"pair", 2, 1, 1, 0},   {"triplet", 3, 1, 0, 0}, {"ntxent", 1, 0, 0, 0}, {"supcon", 1, 0, 0, 0},
    {"cosine", 2, 1, 1, 0}, {"clip", 2, 0, 0, 1},    {"siglip", 2, 0, 0, 1},
};

int bench_selects(const bench_options *options, const bench_case *c) {
    return options->loss ? !strcmp(options->loss, c->name) : !c->two_tower;
}

double bench_quadratic_flops(const bench_case *c, double rows, double dim) {
    const double gemms = !c->two_tower ? 3.0 : strcmp(c->name, "clip") ? 3.0 : 4.0;
    return gemms * 2.0 * rows * rows * dim;
}

double bench_quadratic_exps(const bench_case *c, double rows) {
    (void)c;
    return 2.0 * rows * rows;
}

int bench_wants_dtype(const bench_options *options, closs_dtype_t dtype) {
    if (!options->dtypes.count) return 1;
    for (int i = 0; i < options->dtypes.count; ++i)
        if (options->dtypes.values[i] == (int64_t)dtype) return 1;
    return 0;
}

bench_point *bench_points_add(bench_points *points) {
    if (points->count == points->capacity) {
        int capacity = points->capacity ? 2 * points->capacity : 64;
        bench_point *items = realloc(points->items, (size_t)capacity * sizeof *items);
        if (!items) return NULL;
        points->items = items;
        points->capacity = capacity;
    }
    return &points->items[points->count++];
}

void bench_points_free(bench_points *points) {
    free(points->items);
    memset(points, 0, sizeof *points);
}

void bench_point_init(bench_point *point, const char *implementation, const bench_case *c,
                      const char *dtype, int64_t rows, int64_t dim) {
    memset(point, 0, sizeof *point);
    point->implementation = implementation;
    point->loss = c->name;
    point->dtype = dtype;
    point->rows = rows;
    point->dim = dim;
    point->status = "ok";
    point->median_ms = point->rate = point->floor_ms = point->peak_extra_bytes = NAN;
    point->check_error = point->check_tolerance = point->loss_value = NAN;
    point->rate_unit = point->memory_method = point->check_method = "";
}

void bench_progress(const char *format, ...) {
    static int terminal = -1;
    if (terminal < 0) terminal = isatty(fileno(stderr));
    va_list args;
    va_start(args, format);
    char line[160];
    vsnprintf(line, sizeof line, format, args);
    va_end(args);
    if (terminal) fprintf(stderr, "\r  %-76s", line);
    else fprintf(stderr, "  %s\n", line);
}

void bench_progress_done(void) {
    if (isatty(fileno(stderr))) fprintf(stderr, "\r%80s\r", "");
}
