/* `closs bench`, CPU half: the double-precision reference, verified and timed.
 *
 * For each selected loss: build fresh random inputs (fixed seed, so runs are comparable), verify
 * the analytic gradient against central finite differences on a few coordinates, then time
 * forward+backward (median of the repeats after one warm-up run).
 *
 * Cost model next to each time (the reference works in double):
 *   pair, triplet, cosine: O(N·D), reported as input+gradient bytes over time (GB/s);
 *   NT-Xent, SupCon: forward M²·D multiply-adds for the log-sum-exp, backward 2·M²·D (the
 *   similarities recomputed, then accumulated into dz): 6·M²·D flops, reported as GFLOP/s;
 *   CLIP, SigLIP (b = N partners, K = 0): the GPU floor's flops (bench_quadratic_flops). */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cpu.h"

enum { CHECKED_COORDINATES = 6, CPU_REPEATS = 5, CPU_DEFAULT_DIM = 128 };
/* Central differences in double agree to ~1e-7 relative; more means a wrong gradient. */
static const double GRADIENT_TOLERANCE = 1e-4;

/* Sized to finish within seconds on one CPU core. */
static int64_t default_rows(const bench_case *c) {
    return c->rowwise ? 65536 : c->two_tower ? 512 : 2048;
}

/* The inputs of one case, dense double. */
typedef struct cpu_inputs {
    int64_t rows, dim;
    int count; /* floating inputs in use: x[0 .. count) and grad[0 .. count) */
    double *x[BENCH_MAX_INPUTS];
    double *grad[BENCH_MAX_INPUTS];
    double *y;       /* pair labels (pair, cosine) */
    int64_t *labels; /* class labels (supcon) */
} cpu_inputs;

/* xorshift64*: a fixed, portable stream so every machine benchmarks the same inputs. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static double uniform(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 0x2545F4914F6CDD1Dull) >> 11) * 0x1.0p-53;
}

static double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* One forward+backward of the case through the public CPU reference. grads may be NULL. */
static closs_status_t run_case(const bench_case *c, const cpu_inputs *in, double *const *grads,
                               double *loss) {
    /* Every slot described, so that each call below passes initialised matrices (an unused
     * input is NULL, make_inputs zeroes the struct). */
    closs_matrix_t m[BENCH_MAX_INPUTS];
    for (int k = 0; k < BENCH_MAX_INPUTS; ++k)
        m[k] = closs_matrix(in->x[k], CLOSS_F64, in->rows, in->dim);
    closs_vector_t y = closs_vector(in->y, CLOSS_F64, in->rows);
    double *g0 = grads ? grads[0] : NULL, *g1 = grads ? grads[1] : NULL,
           *g2 = grads ? grads[2] : NULL;
    if (!strcmp(c->name, "pair")) {
        closs_pair_params p = CLOSS_PAIR_PARAMS_INIT;
        return closs_ref_pair(&p, m[0], m[1], y, NULL, loss, g0, g1);
    }
    if (!strcmp(c->name, "triplet")) {
        closs_triplet_params p = CLOSS_TRIPLET_PARAMS_INIT;
        return closs_ref_triplet(&p, m[0], m[1], m[2], NULL, loss, g0, g1, g2);
    }
    if (!strcmp(c->name, "ntxent")) {
        closs_ntxent_params p = CLOSS_NTXENT_PARAMS_INIT;
        return closs_ref_ntxent(&p, m[0], NULL, loss, g0);
    }
    if (!strcmp(c->name, "supcon")) {
        closs_supcon_params p = CLOSS_SUPCON_PARAMS_INIT;
        return closs_ref_supcon(&p, m[0], closs_vector(in->labels, CLOSS_I64, in->rows), NULL, loss,
                                g0, NULL);
    }
    if (!strcmp(c->name, "clip")) {
        closs_clip_params p = CLOSS_CLIP_PARAMS_INIT;
        return closs_ref_clip(&p, m[0], m[1], NULL, loss, g0, g1, NULL);
    }
    if (!strcmp(c->name, "siglip")) {
        closs_siglip_params p = CLOSS_SIGLIP_PARAMS_INIT;
        return closs_ref_siglip(&p, m[0], m[1], NULL, loss, g0, g1, NULL, NULL);
    }
    closs_cosine_params p = CLOSS_COSINE_PARAMS_INIT;
    return closs_ref_cosine(&p, m[0], m[1], y, NULL, loss, g0, g1);
}

static int make_inputs(const bench_case *c, int64_t rows, int64_t dim, cpu_inputs *in) {
    memset(in, 0, sizeof *in);
    in->rows = rows;
    in->dim = dim;
    in->count = c->input_count;
    size_t elements = (size_t)rows * (size_t)dim;
    for (int k = 0; k < in->count; ++k) {
        in->x[k] = malloc(elements * sizeof(double));
        in->grad[k] = malloc(elements * sizeof(double));
        if (!in->x[k] || !in->grad[k]) return -1;
        for (size_t e = 0; e < elements; ++e) in->x[k][e] = 2.0 * uniform() - 1.0;
    }
    in->y = malloc((size_t)rows * sizeof(double));
    in->labels = malloc((size_t)rows * sizeof(int64_t));
    if (!in->y || !in->labels) return -1;
    /* Half similar, half dissimilar pairs; SupCon with about 4 views per class. */
    const int64_t classes = rows / 4 + 1; /* integer division: a whole number of classes */
    for (int64_t i = 0; i < rows; ++i) {
        in->y[i] = (double)(i % 2);
        in->labels[i] = (int64_t)(uniform() * (double)classes);
    }
    return 0;
}

static void free_inputs(cpu_inputs *in) {
    for (int k = 0; k < BENCH_MAX_INPUTS; ++k) {
        free(in->x[k]);
        free(in->grad[k]);
    }
    free(in->y);
    free(in->labels);
}

/* The largest relative difference between the analytic gradient and a central finite
 * difference over a few random coordinates of every input; negative on an API failure. */
static double check_gradient(const bench_case *c, cpu_inputs *in) {
    double loss = 0.0, worst = 0.0;
    if (run_case(c, in, in->grad, &loss) != CLOSS_STATUS_SUCCESS) return -1.0;
    for (int k = 0; k < in->count; ++k) {
        for (int t = 0; t < CHECKED_COORDINATES; ++t) {
            size_t e = (size_t)(uniform() * (double)(in->rows * in->dim));
            double saved = in->x[k][e], step = 1e-5 * (fabs(saved) > 1.0 ? fabs(saved) : 1.0);
            double plus = 0.0, minus = 0.0;
            in->x[k][e] = saved + step;
            run_case(c, in, NULL, &plus);
            in->x[k][e] = saved - step;
            run_case(c, in, NULL, &minus);
            in->x[k][e] = saved;
            double numeric = (plus - minus) / (2.0 * step), analytic = in->grad[k][e];
            /* Relative to the gradient's scale, so tiny entries do not dominate. */
            double scale = fabs(analytic) > 1e-3 ? fabs(analytic) : 1e-3;
            double error = fabs(numeric - analytic) / scale;
            if (error > worst) worst = error;
        }
    }
    return worst;
}

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Fills `point` (already initialised); returns nonzero when it could not run. */
static int bench_one(const bench_case *c, int repeats, bench_point *point) {
    cpu_inputs in;
    if (make_inputs(c, point->rows, point->dim, &in) != 0) {
        free_inputs(&in);
        point->status = "oom";
        snprintf(point->error, sizeof point->error, "out of host memory");
        return -1;
    }
    point->check_method = "finite-differences";
    point->check_tolerance = GRADIENT_TOLERANCE;
    point->check_error = check_gradient(c, &in);
    double *times = malloc((size_t)repeats * sizeof(double));
    if (point->check_error < 0.0 || !times) {
        point->status = "error";
        snprintf(point->error, sizeof point->error, "%s",
                 times ? closs_last_error() : "out of host memory");
        point->check_error = NAN;
        free(times);
        free_inputs(&in);
        return -1;
    }
    run_case(c, &in, in.grad, &point->loss_value); /* warm-up: page in every buffer */
    for (int r = 0; r < repeats; ++r) {
        double start = now_seconds();
        run_case(c, &in, in.grad, &point->loss_value);
        times[r] = now_seconds() - start;
    }
    qsort(times, (size_t)repeats, sizeof *times, compare_doubles);
    double seconds = times[repeats / 2];
    free(times);
    free_inputs(&in);
    point->repeats = repeats;
    point->median_ms = 1e3 * seconds;
    double n = (double)point->rows, d = (double)point->dim;
    if (c->rowwise) {
        /* Each input read once and each gradient written once, in double. */
        point->rate = 2.0 * c->input_count * n * d * sizeof(double) / seconds / 1e9;
        point->rate_unit = "GB/s";
    } else {
        point->rate = bench_quadratic_flops(c, n, d) / seconds / 1e9;
        point->rate_unit = "GFLOP/s";
    }
    if (!(point->check_error < GRADIENT_TOLERANCE)) {
        point->status = "error";
        snprintf(point->error, sizeof point->error, "gradient check failed");
    }
    return 0;
}

int bench_cpu_run(const bench_options *options, bench_points *points) {
    if (!bench_wants_dtype(options, CLOSS_F64)) return 0;
    const int repeats = options->repeats ? options->repeats : CPU_REPEATS;
    int failed = 0, total = 0, done = 0;
    for (int pass = 0; pass < 2; ++pass) { /* count, then run: the progress line shows [k/n] */
        for (int i = 0; i < BENCH_CASES; ++i) {
            const bench_case *c = &bench_cases[i];
            if (!bench_selects(options, c)) continue;
            int row_count = options->rows.count ? options->rows.count : 1;
            int dim_count = options->dims.count ? options->dims.count : 1;
            for (int r = 0; r < row_count; ++r) {
                for (int d = 0; d < dim_count; ++d) {
                    if (pass == 0) {
                        ++total;
                        continue;
                    }
                    int64_t rows = options->rows.count ? options->rows.values[r] : default_rows(c);
                    int64_t dim = options->dims.count ? options->dims.values[d] : CPU_DEFAULT_DIM;
                    if (!strcmp(c->name, "ntxent")) rows += rows % 2; /* two views each */
                    bench_progress("cpu [%d/%d] %s f64 rows=%lld dim=%lld", ++done, total, c->name,
                                   (long long)rows, (long long)dim);
                    bench_point *point = bench_points_add(points);
                    if (!point) return -1;
                    bench_point_init(point, "closs-reference", c, "f64", rows, dim);
                    failed |= bench_one(c, repeats, point) != 0 || strcmp(point->status, "ok") != 0;
                }
            }
        }
    }
    bench_progress_done();
    return failed;
}
