/* `closs bench`, GPU half (gpu.c): what it found on the device and its sweep. */
#ifndef CLOSS_BENCH_GPU_H
#define CLOSS_BENCH_GPU_H

#include <stdio.h>

#include "points.h"

/* Measured in the same run as the GPU points; NaN when not measured. */
typedef struct bench_ceilings {
    double copy_gbs;         /* device-to-device copy, (bytes read + written) / time */
    double gemm_bf16_tflops; /* cublasGemmEx bf16 × bf16 → f32 accumulate */
    double exp_per_second;   /* ex2.approx.f32 throughput */
    int64_t l2_bytes;
} bench_ceilings;

typedef struct bench_gpu_info {
    int ran;          /* 1 if the GPU half ran */
    char reason[200]; /* why it did not run */
    char name[256];   /* the device's name */
    bench_ceilings ceilings;
} bench_gpu_info;

/* Fills `info` (ran, or why not); returns nonzero only on a failure to report. */
int bench_gpu_probe(bench_gpu_info *info);
/* Measures the sweep on the device `info` describes (after a probe that ran), appending to
 * `points`; nonzero when a point failed. */
int bench_gpu_run(const bench_options *options, bench_gpu_info *info, bench_points *points);
/* The GPU sweep after narrowing, one "loss dtype rows dim" line per point. */
void bench_gpu_list_sizes(const bench_options *options, FILE *out);

#endif
