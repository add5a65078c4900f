/* `closs bench`: is it right, how fast, how much memory, on whatever machine it runs on.
 *
 * The command line and the order of work: the CPU reference half (cpu.c) always runs unless
 * --dtype leaves f64 out; the GPU half (gpu.c) runs when this build has CUDA and a device is
 * present, and says why not otherwise; then one table on stdout (output.c) and, with --json, one
 * file in the schema documented there. Progress goes to stderr. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "commands.h"
#include "cpu.h"
#include "gpu.h"
#include "output.h"
#include "params.h"
#include "points.h"

/* The dtypes --dtype accepts, in the order the sweeps use. */
static const closs_dtype_t bench_dtypes[] = {CLOSS_F32, CLOSS_BF16, CLOSS_F16, CLOSS_F64};

static void print_usage(FILE *out) {
    fprintf(out,
            "usage: closs bench [--loss NAME] [--rows N,...] [--dim D,...] [--dtype T,...]\n"
            "                   [--path P] [--repeats R] [--json FILE] [--list-sizes]\n"
            "\n"
            "Verifies and times forward+backward of each loss on fixed random inputs: the CPU\n"
            "reference (f64) always, the GPU (f32, bf16, f16) when a CUDA device is present.\n"
            "  --loss NAME    pair, triplet, ntxent, supcon, cosine, clip or siglip (default:\n"
            "                 the first five; clip and siglip when named, with b = N partners)\n"
            "  --rows N,...   rows per input (default: CPU 65536 row-wise, 2048 NT-Xent/SupCon,\n"
            "                 512 CLIP/SigLIP; GPU a sweep, see --list-sizes)\n"
            "  --dim D,...    features per row (default: CPU 128; GPU a sweep)\n"
            "  --dtype T,...  f32, bf16, f16 (GPU) and f64 (the CPU reference); default all\n"
            "  --path P       the quadratic losses' GPU path: auto (default), fused or chunked\n"
            "                 (the points are then named closs-fused or closs-chunked)\n"
            "  --repeats R    timed runs, the median is reported (default: CPU 5, GPU 25)\n"
            "  --json FILE    also write every point as JSON (schema: bench/output.c)\n"
            "  --list-sizes   print the GPU sweep, one \"loss dtype rows dim\" line per point\n");
}

/* "4096,16384": one to BENCH_MAX_LIST positive integers. */
static int parse_counts(const char *text, bench_list *list) {
    list->count = 0;
    const char *p = text;
    for (;;) {
        char *end = NULL;
        if (*p < '0' || *p > '9' || list->count == BENCH_MAX_LIST) return -1;
        long long value = strtoll(p, &end, 10);
        if (value < 1 || end == p) return -1;
        list->values[list->count++] = value;
        if (!*end) return 0;
        if (*end != ',') return -1;
        p = end + 1;
    }
}

static int parse_dtypes(const char *text, bench_list *list) {
    list->count = 0;
    const char *p = text;
    for (;;) {
        size_t length = strcspn(p, ",");
        int found = 0;
        for (size_t i = 0; i < sizeof bench_dtypes / sizeof bench_dtypes[0]; ++i) {
            const char *name = cli_dtype_name(bench_dtypes[i]);
            if (strlen(name) == length && !strncmp(p, name, length) &&
                list->count < BENCH_MAX_LIST) {
                list->values[list->count++] = bench_dtypes[i];
                found = 1;
            }
        }
        if (!found) return -1;
        if (!p[length]) return 0;
        p += length + 1;
    }
}

static int known_loss(const char *name) {
    for (int i = 0; i < BENCH_CASES; ++i)
        if (!strcmp(name, bench_cases[i].name)) return 1;
    return 0;
}

static int takes_value(const char *option) {
    static const char *const valued[] = {"--loss",  "--json",    "--rows", "--dim",
                                         "--dtype", "--repeats", "--path"};
    for (size_t i = 0; i < sizeof valued / sizeof valued[0]; ++i)
        if (!strcmp(option, valued[i])) return 1;
    return 0;
}

/* 0: parsed; 1: --help was printed; CLOSS_EXIT_USAGE: a one-line error was printed (and
 * nothing else: no usage text, no file). */
static int parse_options(int argc, char **argv, bench_options *options) {
    memset(options, 0, sizeof *options);
    for (int a = 1; a < argc; ++a) {
        const char *arg = argv[a];
        const char *value = a + 1 < argc ? argv[a + 1] : NULL;
        int bad = 0;
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
            print_usage(stdout);
            return 1;
        } else if (!strcmp(arg, "--list-sizes")) {
            options->list_sizes = 1;
            continue;
        } else if (!value || !takes_value(arg)) {
            fprintf(stderr, "closs: error: bench: unknown or incomplete option '%s'\n", arg);
            return CLOSS_EXIT_USAGE;
        } else if (!strcmp(arg, "--loss")) {
            options->loss = value;
            if (!known_loss(value)) {
                fprintf(stderr,
                        "closs: error: bench: unknown loss '%s' (pair, triplet, ntxent, supcon, "
                        "cosine, clip, siglip)\n",
                        value);
                return CLOSS_EXIT_USAGE;
            }
        } else if (!strcmp(arg, "--json")) {
            options->json = value;
        } else if (!strcmp(arg, "--path")) {
            if (!cli_path_from_name(value, &options->path)) {
                fprintf(stderr, "closs: error: --path %s: expected auto, fused or chunked\n",
                        value);
                return CLOSS_EXIT_USAGE;
            }
        } else if (!strcmp(arg, "--rows")) {
            bad = parse_counts(value, &options->rows);
        } else if (!strcmp(arg, "--dim")) {
            bad = parse_counts(value, &options->dims);
        } else if (!strcmp(arg, "--dtype")) {
            if (parse_dtypes(value, &options->dtypes) != 0) {
                fprintf(stderr,
                        "closs: error: --dtype %s: expected a list of f32, bf16, f16, f64\n",
                        value);
                return CLOSS_EXIT_USAGE;
            }
        } else { /* --repeats */
            bench_list repeats;
            bad = parse_counts(value, &repeats) != 0 || repeats.count != 1 ||
                  repeats.values[0] > 100000;
            if (!bad) options->repeats = (int)repeats.values[0];
        }
        if (bad) {
            fprintf(stderr, "closs: error: %s %s: expected %s\n", arg, value,
                    strcmp(arg, "--repeats") ? "positive integers separated by commas"
                                             : "a positive integer");
            return CLOSS_EXIT_USAGE;
        }
        ++a;
    }
    return 0;
}

int closs_bench_main(int argc, char **argv) {
    bench_options options;
    int parsed = parse_options(argc, argv, &options);
    if (parsed) return parsed == CLOSS_EXIT_USAGE ? CLOSS_EXIT_USAGE : CLOSS_EXIT_OK;
    if (options.list_sizes) {
        bench_gpu_list_sizes(&options, stdout);
        return CLOSS_EXIT_OK;
    }

    bench_gpu_info gpu;
    bench_gpu_probe(&gpu);
    printf("closs %s bench\n", closs_version_string());
    if (!gpu.ran) printf("GPU part skipped: %s.\n", gpu.reason);
    fflush(stdout);

    bench_points points = {0};
    int failed = bench_cpu_run(&options, &points) != 0;
    if (gpu.ran) failed |= bench_gpu_run(&options, &gpu, &points) != 0;
    bench_print_table(stdout, &points, &gpu);
    if (options.json && bench_write_json(options.json, &points, &gpu) != 0) {
        fprintf(stderr, "closs: error: cannot write %s\n", options.json);
        failed = 1;
    }
    bench_points_free(&points);
    return failed ? CLOSS_EXIT_FAILURE : CLOSS_EXIT_OK;
}
