/* What `closs bench` measures, shared by its CPU and GPU halves and its output: the losses it
 * knows, the options that narrow the sweep, one record per measured point (an element of the JSON
 * "points" array, documented in output.c) and the progress line. Includes nothing else of the
 * bench's, so that every other file of it stands on this one. */
#ifndef CLOSS_BENCH_POINTS_H
#define CLOSS_BENCH_POINTS_H

#include <stdint.h>

#include "closs.h"

enum { BENCH_MAX_INPUTS = 3, BENCH_MAX_LIST = 8, BENCH_CASES = 7 };

typedef struct bench_case {
    const char *name;
    int input_count; /* floating inputs, each rows × dim, each with a gradient */
    int rowwise;     /* O(N·D) loss (pair, triplet, cosine) or O(M²·D) (the others) */
    int targets;     /* pair labels y (pair, cosine) */
    int two_tower;   /* CLIP, SigLIP: a and b, N rows each (K = 0); only with --loss (below) */
} bench_case;

/* The flops a point of a quadratic loss stands for, and its exponentials, at N rows and D
 * columns (forward+backward; the floor's numerator): NT-Xent and SupCon 6·N²·D (S, then S again
 * and G·Z) and 2·N²; CLIP 4 GEMMs, 8·N²·D (S, and in the backward S, G·B̂ and Gᵀ·Â), and 2·N² (one
 * per element forward and backward); SigLIP 3 GEMMs, 6·N²·D (S with G in one pass, G·B̂, Gᵀ·Â),
 * and 2·N² (an exponential and a logarithm per element). */
double bench_quadratic_flops(const bench_case *c, double rows, double dim);
double bench_quadratic_exps(const bench_case *c, double rows);

extern const bench_case bench_cases[BENCH_CASES];

/* A list of sizes or dtypes; count 0 means "the default". */
typedef struct bench_list {
    int count;
    int64_t values[BENCH_MAX_LIST];
} bench_list;

typedef struct bench_options {
    const char *loss;  /* NULL: every loss */
    bench_list rows;   /* --rows */
    bench_list dims;   /* --dim */
    bench_list dtypes; /* --dtype, closs_dtype_t values; CLOSS_F64 is the CPU reference */
    int repeats;       /* 0: the default (5 on the CPU, 25 on the GPU) */
    closs_path_t path; /* --path: NT-Xent's and SupCon's GPU path (AUTO by default) */
    const char *json;  /* --json FILE */
    int list_sizes;    /* --list-sizes: print the GPU sweep and stop */
} bench_options;

/* One measured point: a row of the table and an element of the JSON "points" array. Doubles that
 * are NaN are unknown (JSON null). */
typedef struct bench_point {
    const char *implementation; /* "closs" (GPU) or "closs-reference" (CPU, double) */
    const char *loss;
    const char *dtype; /* "f32", "bf16", "f16"; "f64" for the CPU reference */
    int64_t rows, dim;
    const char *status; /* "ok", "oom" or "error" */
    char error[256];    /* why, when status is not "ok" */
    int repeats;
    double median_ms;
    double rate; /* achieved: GB/s for the row-wise losses, TFLOP/s (GPU) or GFLOP/s (CPU) */
    const char *rate_unit;
    double floor_ms;         /* the hardware floor of this point (GPU only) */
    double peak_extra_bytes; /* device memory beyond the inputs (GPU only) */
    const char *memory_method;
    double check_error; /* the point's correctness check (see check_method) */
    double check_tolerance;
    const char *check_method;
    double loss_value;
} bench_point;

/* A growing array of points. */
typedef struct bench_points {
    bench_point *items;
    int count, capacity;
} bench_points;

bench_point *bench_points_add(bench_points *points);
void bench_points_free(bench_points *points);
void bench_point_init(bench_point *point, const char *implementation, const bench_case *c,
                      const char *dtype, int64_t rows, int64_t dim);

/* The progress line on stderr: rewritten in place on a terminal, one line each otherwise. */
void bench_progress(const char *format, ...) __attribute__((format(printf, 1, 2)));
void bench_progress_done(void);

/* Whether a run with these options measures `c`: the one --loss names, or without --loss every
 * loss but CLIP and SigLIP, which bench/baselines (the PyTorch side of the same sweep) does not
 * time yet: they run when named. */
int bench_selects(const bench_options *options, const bench_case *c);

/* Whether --dtype selects `dtype` (no --dtype: every dtype). */
int bench_wants_dtype(const bench_options *options, closs_dtype_t dtype);

#endif
