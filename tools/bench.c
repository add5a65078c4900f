/* `closs bench`: is it right, how fast, how much memory, on whatever machine it runs on.
 *
 * For each loss: build fresh random inputs (fixed seed, so runs are comparable), verify the
 * analytic gradient against central finite differences on a few coordinates, then time
 * forward+backward (median of --repeats runs after one warm-up run). The GPU part is reported as
 * skipped, with the reason: the GPU half of this command is not written yet (on a GPU,
 * bench/baselines/rowwise.py times the GPU losses next to PyTorch).
 *
 * Cost model printed next to each time (the CPU reference in double):
 *   pair, triplet, cosine: O(N·D) — reported as input+gradient bytes over time (GB/s);
 *   NT-Xent, SupCon: forward M²·D multiply-adds for the log-sum-exp, backward 2·M²·D (the
 *   similarities recomputed, then accumulated into dz): 6·M²·D flops, reported as GFLOP/s. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "closs.h"
#include "commands.h"

enum { MAX_INPUTS = 3, CHECKED_COORDINATES = 6 };

typedef struct bench_case {
    const char *name;
    int input_count;      /* floating inputs, each rows × dim */
    int rowwise;          /* O(N·D) loss (pair, triplet, cosine) or O(M²·D) (NT-Xent, SupCon) */
    int64_t default_rows; /* sized to finish within seconds on one CPU core */
} bench_case;

static const bench_case cases[] = {
    {"pair", 2, 1, 65536},  {"triplet", 3, 1, 65536}, {"ntxent", 1, 0, 2048},
    {"supcon", 1, 0, 2048}, {"cosine", 2, 1, 65536},
};

/* The inputs of one case, dense double. */
typedef struct bench_inputs {
    int64_t rows, dim;
    int count; /* floating inputs in use: x[0 .. count) and grad[0 .. count) */
    double *x[MAX_INPUTS];
    double *grad[MAX_INPUTS];
    double *y;       /* pair labels (pair, cosine) */
    int64_t *labels; /* class labels (supcon) */
} bench_inputs;

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
static closs_status_t run_case(const bench_case *c, const bench_inputs *in, double *const *grads,
                               double *loss) {
    /* Every slot described, so that each call below passes initialised matrices (an unused
     * input is NULL, make_inputs zeroes the struct). */
    closs_matrix_t m[MAX_INPUTS];
    for (int k = 0; k < MAX_INPUTS; ++k)
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
    closs_cosine_params p = CLOSS_COSINE_PARAMS_INIT;
    return closs_ref_cosine(&p, m[0], m[1], y, NULL, loss, g0, g1);
}

static int make_inputs(const bench_case *c, int64_t rows, int64_t dim, bench_inputs *in) {
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

static void free_inputs(bench_inputs *in) {
    for (int k = 0; k < MAX_INPUTS; ++k) {
        free(in->x[k]);
        free(in->grad[k]);
    }
    free(in->y);
    free(in->labels);
}

/* The largest relative difference between the analytic gradient and a central finite
 * difference over a few random coordinates of every input; negative on an API failure. */
static double check_gradient(const bench_case *c, bench_inputs *in) {
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

typedef struct bench_result {
    const char *loss;
    int64_t rows, dim;
    double loss_value, gradient_error, median_seconds, rate;
    const char *rate_unit;
} bench_result;

static int bench_one(const bench_case *c, int64_t rows, int64_t dim, int repeats,
                     bench_result *result) {
    bench_inputs in;
    if (make_inputs(c, rows, dim, &in) != 0) {
        free_inputs(&in);
        fprintf(stderr, "closs: error: bench %s: out of memory\n", c->name);
        return -1;
    }
    result->loss = c->name;
    result->rows = rows;
    result->dim = dim;
    result->gradient_error = check_gradient(c, &in);
    if (result->gradient_error < 0.0) {
        fprintf(stderr, "closs: error: bench %s: %s\n", c->name, closs_last_error());
        free_inputs(&in);
        return -1;
    }
    double *times = malloc((size_t)repeats * sizeof(double));
    run_case(c, &in, in.grad, &result->loss_value); /* warm-up: page in every buffer */
    for (int r = 0; r < repeats && times; ++r) {
        double start = now_seconds();
        run_case(c, &in, in.grad, &result->loss_value);
        times[r] = now_seconds() - start;
    }
    if (!times) {
        free_inputs(&in);
        return -1;
    }
    qsort(times, (size_t)repeats, sizeof *times, compare_doubles);
    result->median_seconds = times[repeats / 2];
    free(times);
    double n = (double)rows, d = (double)dim;
    if (c->rowwise) {
        /* Each input read once and each gradient written once, in double. */
        result->rate = 2.0 * c->input_count * n * d * sizeof(double) / result->median_seconds / 1e9;
        result->rate_unit = "GB/s";
    } else {
        result->rate = 6.0 * n * n * d / result->median_seconds / 1e9;
        result->rate_unit = "GFLOP/s";
    }
    free_inputs(&in);
    return 0;
}

static void print_usage(FILE *out) {
    fprintf(out,
            "usage: closs bench [--loss NAME] [--rows N] [--dim D] [--repeats R] [--json FILE]\n"
            "\n"
            "Verifies and times forward+backward of each loss on fixed random inputs.\n"
            "  --loss NAME   pair, triplet, ntxent, supcon or cosine (default: all five)\n"
            "  --rows N      rows per input (default: 65536 row-wise, 2048 NT-Xent/SupCon)\n"
            "  --dim D       features per row (default 128)\n"
            "  --repeats R   timed runs; the median is reported (default 5)\n"
            "  --json FILE   also write the results as JSON\n");
}

static int parse_count(const char *text, int64_t *out) {
    char *end = NULL;
    long long value = strtoll(text, &end, 10);
    if (!text[0] || *end || value < 1) return -1;
    *out = value;
    return 0;
}

static void describe_gpu(char *reason, size_t size) {
    int devices = 0;
    if (!closs_cuda_available()) snprintf(reason, size, "this build has no CUDA support");
    else if (closs_cuda_device_count(&devices) != CLOSS_STATUS_SUCCESS || devices == 0)
        snprintf(reason, size, "no CUDA device is present");
    else
        snprintf(reason, size,
                 "%d CUDA device(s) found, but the GPU half of closs bench is not written yet "
                 "(bench/baselines/rowwise.py times the GPU losses)",
                 devices);
}

static int write_json(const char *path, const bench_result *results, int count,
                      const char *gpu_reason) {
    FILE *out = fopen(path, "w");
    if (!out) return -1;
    fprintf(out,
            "{\"version\": \"%s\", \"gpu\": {\"ran\": false, \"reason\": \"%s\"},\n"
            " \"cpu\": [\n",
            closs_version_string(), gpu_reason);
    for (int i = 0; i < count; ++i) {
        const bench_result *r = &results[i];
        fprintf(out,
                "  {\"loss\": \"%s\", \"rows\": %lld, \"dim\": %lld, \"loss_value\": %.17g, "
                "\"gradient_error\": %.3g, \"median_seconds\": %.6g, \"rate\": %.6g, "
                "\"rate_unit\": \"%s\"}%s\n",
                r->loss, (long long)r->rows, (long long)r->dim, r->loss_value, r->gradient_error,
                r->median_seconds, r->rate, r->rate_unit, i + 1 < count ? "," : "");
    }
    fprintf(out, " ]\n}\n");
    return fclose(out) == 0 ? 0 : -1;
}

int closs_bench_main(int argc, char **argv) {
    const char *only = NULL, *json_path = NULL;
    int64_t rows = 0, dim = 128, repeats = 5;
    for (int a = 1; a < argc; ++a) {
        const char *arg = argv[a];
        const int has_value = a + 1 < argc;
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
            print_usage(stdout);
            return 0;
        } else if (!strcmp(arg, "--loss") && has_value) {
            only = argv[++a];
        } else if (!strcmp(arg, "--json") && has_value) {
            json_path = argv[++a];
        } else if ((!strcmp(arg, "--rows") || !strcmp(arg, "--dim") || !strcmp(arg, "--repeats")) &&
                   has_value) {
            int64_t *target = !strcmp(arg, "--rows")  ? &rows
                              : !strcmp(arg, "--dim") ? &dim
                                                      : &repeats;
            if (parse_count(argv[++a], target) != 0) {
                fprintf(stderr, "closs: error: %s %s: expected a positive integer\n", arg, argv[a]);
                return CLOSS_EXIT_USAGE;
            }
        } else {
            fprintf(stderr, "closs: error: bench: unknown or incomplete option '%s'\n", arg);
            print_usage(stderr);
            return CLOSS_EXIT_USAGE;
        }
    }

    const int case_count = (int)(sizeof cases / sizeof cases[0]);
    bench_result results[sizeof cases / sizeof cases[0]];
    int done = 0, selected = 0;
    char gpu_reason[160];
    describe_gpu(gpu_reason, sizeof gpu_reason);
    printf("closs %s bench\nGPU part skipped: %s.\nCPU reference (double precision):\n\n",
           closs_version_string(), gpu_reason);
    for (int i = 0; i < case_count; ++i) {
        if (only && strcmp(only, cases[i].name) != 0) continue;
        ++selected;
        int64_t case_rows = rows ? rows : cases[i].default_rows;
        if (!strcmp(cases[i].name, "ntxent")) case_rows += case_rows % 2; /* two views each */
        fprintf(stderr, "  [%d/%d] %s rows=%lld dim=%lld ...\n", selected, only ? 1 : case_count,
                cases[i].name, (long long)case_rows, (long long)dim);
        if (bench_one(&cases[i], case_rows, dim, (int)repeats, &results[done]) != 0)
            return CLOSS_EXIT_FAILURE;
        ++done;
    }
    if (!selected) {
        fprintf(stderr,
                "closs: error: bench: unknown loss '%s' (pair, triplet, ntxent, supcon, cosine)\n",
                only);
        return CLOSS_EXIT_USAGE;
    }

    printf("%-8s %8s %5s %20s %10s %12s %14s\n", "loss", "rows", "dim", "loss value", "grad err",
           "median ms", "rate");
    int failed = 0;
    for (int i = 0; i < done; ++i) {
        const bench_result *r = &results[i];
        /* Central differences in double agree to ~1e-7 relative; more means a wrong gradient. */
        int ok = r->gradient_error < 1e-4;
        failed |= !ok;
        printf("%-8s %8lld %5lld %20.12g %10.1e %12.3f %9.2f %-7s%s\n", r->loss, (long long)r->rows,
               (long long)r->dim, r->loss_value, r->gradient_error, 1e3 * r->median_seconds,
               r->rate, r->rate_unit, ok ? "" : "  GRADIENT CHECK FAILED");
    }
    printf("\ngrad err: largest relative difference between the analytic gradient and central\n"
           "finite differences at %d random coordinates per input (pass < 1e-4).\n",
           CHECKED_COORDINATES);
    if (json_path && write_json(json_path, results, done, gpu_reason) != 0) {
        fprintf(stderr, "closs: error: cannot write %s\n", json_path);
        return CLOSS_EXIT_FAILURE;
    }
    return failed ? CLOSS_EXIT_FAILURE : CLOSS_EXIT_OK;
}
