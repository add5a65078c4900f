/* `closs bench`'s output: the table on stdout and the JSON file.
 *
 * JSON schema "closs-bench/1", shared with the PyTorch baselines (bench/baselines/) and read by
 * bench/report.py. One object:
 *   schema          "closs-bench/1"
 *   source          what wrote it: "closs bench", "bench/baselines/rowwise.py", ...
 *   closs_version   the library's version string (null when closs was not loaded)
 *   torch_version   (the baselines only) PyTorch's version
 *   created_utc     "YYYY-MM-DDTHH:MM:SSZ"
 *   device          {"gpu_ran": bool, "gpu_reason": why not (null when it ran),
 *                    "gpu_name": the CUDA device's name (null without one)}
 *   ceilings        measured in the same run, null when not measured:
 *                   {"copy_gbs": device-to-device copy, (bytes read + written) / s / 1e9,
 *                    "gemm_bf16_tflops": cublasGemmEx bf16 → f32-accumulate, 2·n³ / s / 1e12,
 *                    "exp_per_second": ex2.approx.f32 results per second,
 *                    "l2_bytes": the device's L2 size, which the input rotation exceeds}
 *   points          one object per measured point:
 *     implementation  "closs" (GPU), "closs-fused" and "closs-chunked" (NT-Xent and SupCon
 *                     with --path), "closs-reference" (the CPU reference, f64), "torch-eager",
 *                     "torch-compile"
 *     loss            "pair", "triplet", "ntxent", "supcon", "cosine" (the contract's default
 *                     parameters, except triplet's distance: euclidean, as torch's)
 *     dtype           "f32", "bf16", "f16", "f64"
 *     rows, dim       the inputs' shape (NT-Xent: rows = 2N, both views)
 *     status          "ok", "oom" (out of memory: a result, not a crash), "error", or
 *                     "skipped" (the baselines' time budget ran out before the point)
 *     error           why, when status is not "ok"; else null
 *     repeats         timed runs behind the median
 *     median_ms       median forward+backward time, ms (CUDA events on the GPU, a monotonic
 *                     clock on the CPU)
 *     rate, rate_unit achieved rate: "GB/s" (row-wise: inputs read once + gradients written
 *                     once), "TFLOP/s" (GPU NT-Xent/SupCon: 6·M²·D flops) or "GFLOP/s" (CPU)
 *     floor_ms        the hardware floor from the ceilings (null on the CPU):
 *                     row-wise max over bytes / copy_gbs; NT-Xent/SupCon
 *                     max(6·M²·D / gemm rate, 2·M² / exp rate)
 *     floor_fraction  floor_ms / median_ms (1 = at the floor)
 *     peak_extra_bytes device memory beyond the inputs at the peak, per memory_method:
 *                     "workspace+outputs" (closs bench: workspace query + gradients + loss) or
 *                     "torch.max_memory_allocated" (the baselines: the allocator's peak minus
 *                     what was allocated before the step)
 *     check_error, check_tolerance, check_method
 *                     the point's correctness check: "finite-differences" (CPU: largest
 *                     relative difference at a few coordinates), "gpu-vs-cpu-reference" (GPU:
 *                     largest norm-wise relative error of the loss and each gradient at a small
 *                     size of the same loss and dtype), "vs-float64-torch" (baselines)
 *     loss_value      the loss of the last timed run
 * Unknown numbers are null. */
#define _POSIX_C_SOURCE 200809L /* gmtime_r */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "output.h"

static void json_string(FILE *out, const char *text) {
    if (!text) {
        fputs("null", out);
        return;
    }
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)text; *p; ++p) {
        if (*p == '"' || *p == '\\') fprintf(out, "\\%c", *p);
        else if (*p < 0x20) fprintf(out, "\\u%04x", *p);
        else fputc(*p, out);
    }
    fputc('"', out);
}

static void json_number(FILE *out, double value) {
    if (isfinite(value)) fprintf(out, "%.9g", value);
    else fputs("null", out);
}

static void json_field(FILE *out, const char *name, double value, int last) {
    fprintf(out, "\"%s\": ", name);
    json_number(out, value);
    fputs(last ? "" : ", ", out);
}

static void json_text_field(FILE *out, const char *name, const char *value) {
    fprintf(out, "\"%s\": ", name);
    json_string(out, value && value[0] ? value : NULL);
    fputs(", ", out);
}

static void write_point(FILE *out, const bench_point *p) {
    fputs("  {", out);
    json_text_field(out, "implementation", p->implementation);
    json_text_field(out, "loss", p->loss);
    json_text_field(out, "dtype", p->dtype);
    fprintf(out, "\"rows\": %lld, \"dim\": %lld, ", (long long)p->rows, (long long)p->dim);
    json_text_field(out, "status", p->status);
    json_text_field(out, "error", p->error);
    fprintf(out, "\"repeats\": %d,\n   ", p->repeats);
    json_field(out, "median_ms", p->median_ms, 0);
    json_field(out, "rate", p->rate, 0);
    json_text_field(out, "rate_unit", p->rate_unit);
    json_field(out, "floor_ms", p->floor_ms, 0);
    json_field(out, "floor_fraction", p->floor_ms / p->median_ms, 0);
    json_field(out, "peak_extra_bytes", p->peak_extra_bytes, 0);
    json_text_field(out, "memory_method", p->memory_method);
    fputs("\n   ", out);
    json_field(out, "check_error", p->check_error, 0);
    json_field(out, "check_tolerance", p->check_tolerance, 0);
    json_text_field(out, "check_method", p->check_method);
    json_field(out, "loss_value", p->loss_value, 1);
    fputs("}", out);
}

int bench_write_json(const char *path, const bench_points *points, const bench_gpu_info *gpu) {
    FILE *out = fopen(path, "w");
    if (!out) return -1;
    char created[32] = "";
    time_t now = time(NULL);
    struct tm utc;
    if (gmtime_r(&now, &utc)) strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", &utc);
    fputs("{\"schema\": \"closs-bench/1\", \"source\": \"closs bench\", ", out);
    json_text_field(out, "closs_version", closs_version_string());
    json_text_field(out, "created_utc", created);
    fprintf(out, "\n \"device\": {\"gpu_ran\": %s, ", gpu->ran ? "true" : "false");
    json_text_field(out, "gpu_reason", gpu->ran ? NULL : gpu->reason);
    fputs("\"gpu_name\": ", out);
    json_string(out, gpu->name[0] ? gpu->name : NULL);
    fputs("},\n \"ceilings\": ", out);
    if (gpu->ran) {
        const bench_ceilings *c = &gpu->ceilings;
        fputc('{', out);
        json_field(out, "copy_gbs", c->copy_gbs, 0);
        json_field(out, "gemm_bf16_tflops", c->gemm_bf16_tflops, 0);
        json_field(out, "exp_per_second", c->exp_per_second, 0);
        json_field(out, "l2_bytes", (double)c->l2_bytes, 1);
        fputc('}', out);
    } else {
        fputs("null", out);
    }
    fputs(",\n \"points\": [\n", out);
    for (int i = 0; i < points->count; ++i) {
        write_point(out, &points->items[i]);
        fputs(i + 1 < points->count ? ",\n" : "\n", out);
    }
    fputs(" ]\n}\n", out);
    int failed = ferror(out);
    return (fclose(out) == 0 && !failed) ? 0 : -1;
}

/* A number in a fixed-width cell, or "-" when unknown. */
static void cell(FILE *out, int width, const char *format, double value) {
    if (isfinite(value)) fprintf(out, format, width, value);
    else fprintf(out, "%*s", width, "-");
}

void bench_print_table(FILE *out, const bench_points *points, const bench_gpu_info *gpu) {
    if (gpu->ran) {
        const bench_ceilings *c = &gpu->ceilings;
        fprintf(out,
                "\nGPU %s: ceilings measured in this run: copy %.0f GB/s (read + write), bf16 GEMM "
                "%.0f TFLOP/s, exp %.3g /s; L2 %.0f MB\n",
                gpu->name, c->copy_gbs, c->gemm_bf16_tflops, c->exp_per_second,
                (double)c->l2_bytes / 1e6);
    }
    fprintf(out, "\n%-15s %-7s %-4s %8s %5s %10s %9s %-7s %6s %10s %9s %9s  %s\n", "implementation",
            "loss", "type", "rows", "dim", "median ms", "rate", "unit", "floor", "extra MB",
            "check", "tol", "status");
    int failed_checks = 0;
    for (int i = 0; i < points->count; ++i) {
        const bench_point *p = &points->items[i];
        fprintf(out, "%-15s %-7s %-4s %8lld %5lld ", p->implementation, p->loss, p->dtype,
                (long long)p->rows, (long long)p->dim);
        cell(out, 10, "%*.3f", p->median_ms);
        cell(out, 10, "%*.2f", p->rate);
        fprintf(out, " %-7s", p->rate_unit);
        cell(out, 6, "%*.0f%%", 100.0 * p->floor_ms / p->median_ms);
        cell(out, 10, "%*.1f", p->peak_extra_bytes / 1e6);
        cell(out, 10, "%*.1e", p->check_error);
        cell(out, 9, "%*.0e", p->check_tolerance);
        fprintf(out, "  %s%s%s\n", p->status, p->error[0] ? ": " : "", p->error);
        failed_checks += !strcmp(p->status, "error");
    }
    fprintf(out, "\ncheck: CPU, the gradient against central finite differences at a few "
                 "coordinates.\n");
    if (gpu->ran)
        fprintf(
            out,
            "GPU check: largest norm-wise relative error of the loss and gradients against the\n"
            "CPU reference, at a small size of the same loss and dtype. floor: %% of the\n"
            "hardware floor reached (row-wise: bytes read and written / copy bandwidth;\n"
            "NT-Xent, SupCon: max(6·M²·D / bf16 GEMM rate, 2·M² / exp rate)). extra MB:\n"
            "workspace + gradients + loss.\n");
    if (failed_checks) fprintf(out, "%d point(s) FAILED (status error).\n", failed_checks);
}
