/* `closs bench`, GPU half: each loss through the public GPU entry points, as a user calls them.
 *
 * Per device: first the ceilings (device.cu): a 2 GiB device-to-device copy, an 8192³
 * cuBLAS bf16 GEMM with f32 accumulation, and the ex2.approx throughput.
 * Per (loss, dtype): a check at a small size, the GPU's loss and gradients against the CPU
 * reference on the same (dtype-rounded) inputs, as the largest norm-wise relative error.
 * Per sweep point: inputs, gradients and labels in `copies` sets, rotated so that their total is
 * at least 3× the L2 cache (a run never finds its inputs in L2 from the run before); the
 * workspace from *_workspace_size, passed explicitly; WARMUP runs, then `repeats` runs, each
 * between two CUDA events on the default stream; the median is reported.
 *   rate   row-wise: (inputs read once + gradients written once + f32 labels) / time;
 *          the others: their floor's flops / time (bench_quadratic_flops: NT-Xent/SupCon
 *          6·M²·D, CLIP 8·N²·D, SigLIP 6·N²·D);
 *   floor  row-wise: those bytes / copy bandwidth;
 *          the others: max(flops / bf16 GEMM rate, 2·N² / exp rate);
 *   memory workspace bytes + gradients + loss: what one call needs beyond its inputs
 *          ("workspace+outputs"; the call itself never allocates when given workspace). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu.h"
#include "params.h"

#ifdef CLOSS_BENCH_WITH_CUDA
#    include <cuda_runtime_api.h>

#    include "device.h"
#endif

static const closs_dtype_t gpu_dtypes[] = {CLOSS_F32, CLOSS_BF16, CLOSS_F16};
static const int64_t default_rowwise_rows[] = {16384, 131072, 1048576};
static const int64_t default_rowwise_dims[] = {128, 512};
static const int64_t default_contrastive_rows[] = {4096, 16384, 65536};
static const int64_t default_contrastive_dims[] = {128};
static const int64_t default_two_tower_dims[] = {512}; /* issue #23's target: N = 65,536, D = 512 */

/* Visits every GPU sweep point: the same list for the run and for --list-sizes. */
typedef int (*bench_visit_fn)(void *context, const bench_case *c, closs_dtype_t dtype, int64_t rows,
                              int64_t dim);

static int visit_sweep(const bench_options *options, bench_visit_fn visit, void *context) {
    for (int i = 0; i < BENCH_CASES; ++i) {
        const bench_case *c = &bench_cases[i];
        if (!bench_selects(options, c)) continue;
        bench_list rows = options->rows, dims = options->dims;
        if (!rows.count) {
            const int64_t *values = c->rowwise ? default_rowwise_rows : default_contrastive_rows;
            rows.count = 3;
            memcpy(rows.values, values, 3 * sizeof *values);
        }
        if (!dims.count) {
            dims.count = c->rowwise ? 2 : 1;
            memcpy(dims.values,
                   c->rowwise     ? default_rowwise_dims
                   : c->two_tower ? default_two_tower_dims
                                  : default_contrastive_dims,
                   (size_t)dims.count * sizeof dims.values[0]);
        }
        for (size_t t = 0; t < sizeof gpu_dtypes / sizeof gpu_dtypes[0]; ++t) {
            if (!bench_wants_dtype(options, gpu_dtypes[t])) continue;
            for (int r = 0; r < rows.count; ++r) {
                for (int d = 0; d < dims.count; ++d) {
                    /* NT-Xent takes two views of each sample: an even number of rows. */
                    int64_t n =
                        rows.values[r] + (strcmp(c->name, "ntxent") ? 0 : rows.values[r] % 2);
                    int stop = visit(context, c, gpu_dtypes[t], n, dims.values[d]);
                    if (stop) return stop;
                }
            }
        }
    }
    return 0;
}

static int print_size(void *context, const bench_case *c, closs_dtype_t dtype, int64_t rows,
                      int64_t dim) {
    fprintf((FILE *)context, "%s %s %lld %lld\n", c->name, cli_dtype_name(dtype), (long long)rows,
            (long long)dim);
    return 0;
}

void bench_gpu_list_sizes(const bench_options *options, FILE *out) {
    visit_sweep(options, print_size, out);
}

#ifndef CLOSS_BENCH_WITH_CUDA

int bench_gpu_probe(bench_gpu_info *info) {
    memset(info, 0, sizeof *info);
    snprintf(info->reason, sizeof info->reason,
             closs_cuda_available() ? "this closs tool was built without CUDA"
                                    : "this build has no CUDA support (configure with nvcc on "
                                      "PATH and CLOSS_ENABLE_CUDA=ON)");
    return 0;
}

int bench_gpu_run(const bench_options *options, bench_gpu_info *info, bench_points *points) {
    (void)options, (void)info, (void)points;
    return 0;
}

#else

enum { WARMUP = 3, GPU_REPEATS = 25, CEILING_REPEATS = 10, GEMM_SIZE = 8192, MAX_COPIES = 64 };
static const size_t COPY_BYTES = (size_t)2 << 30;
static const size_t ALIGNMENT = 256;

int bench_gpu_probe(bench_gpu_info *info) {
    memset(info, 0, sizeof *info);
    int devices = 0;
    if (!closs_cuda_available()) {
        snprintf(info->reason, sizeof info->reason,
                 "this build has no CUDA support (configure with nvcc on PATH and "
                 "CLOSS_ENABLE_CUDA=ON)");
        return 0;
    }
    if (closs_cuda_device_count(&devices) != CLOSS_STATUS_SUCCESS || devices == 0) {
        snprintf(info->reason, sizeof info->reason,
                 "no CUDA device is present (or no driver is installed)");
        return 0;
    }
    struct cudaDeviceProp properties;
    int device = 0, l2 = 0;
    if (cudaGetDevice(&device) != cudaSuccess ||
        cudaGetDeviceProperties(&properties, device) != cudaSuccess ||
        cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, device) != cudaSuccess) {
        snprintf(info->reason, sizeof info->reason, "the CUDA runtime failed: %s",
                 cudaGetErrorString(cudaGetLastError()));
        return -1;
    }
    snprintf(info->name, sizeof info->name, "%s", properties.name);
    info->ceilings.l2_bytes = l2;
    info->ran = 1;
    return 0;
}

static size_t aligned(size_t bytes) { return (bytes + ALIGNMENT - 1) / ALIGNMENT * ALIGNMENT; }

/* The JSON's implementation of a GPU point: "closs" for the row-wise losses and for the others
 * on the AUTO path, "closs-fused" or "closs-chunked" when --path chose one; run with
 * CLOSS_TILE_KERNELS=wmma (NT-Xent, SupCon) or =simt (those, CLIP, SigLIP; cuda/tile_dispatch.h:
 * the fused path's 16-bit kernels other than the tile engine), "closs-wmma" or "closs-simt"
 * instead of "closs". CLIP and SigLIP have no WMMA kernels: =wmma runs their engine walks. */
static const char *implementation(const bench_case *c, closs_path_t path) {
    const char *kernels = getenv("CLOSS_TILE_KERNELS");
    if (c->rowwise) return "closs";
    if (path == CLOSS_PATH_CHUNKED) return "closs-chunked";
    if (kernels && !c->two_tower && strcmp(kernels, "wmma") == 0) return "closs-wmma";
    if (kernels && strcmp(kernels, "simt") == 0) return "closs-simt";
    return path == CLOSS_PATH_FUSED ? "closs-fused" : "closs";
}

/* Triplet with torch's TripletMarginLoss distance (euclidean), so that the baselines compute the
 * same function; every other loss runs with the contract's defaults. */
static closs_triplet_params triplet_params(void) {
    closs_triplet_params p = CLOSS_TRIPLET_PARAMS_INIT;
    p.distance = CLOSS_DISTANCE_EUCLIDEAN;
    return p;
}

/* One set of device buffers for a call: inputs, their gradients, the labels. */
typedef struct gpu_set {
    void *x[BENCH_MAX_INPUTS];
    void *grad[BENCH_MAX_INPUTS];
    void *labels; /* pair/cosine: f32 y; SupCon: int64 class labels */
} gpu_set;

/* The buffers of a point: `copies` sets in one allocation, workspace, loss and `valid`. */
typedef struct gpu_buffers {
    const bench_case *c;
    closs_dtype_t dtype;
    int64_t rows, dim;
    closs_path_t path; /* NT-Xent's and SupCon's */
    int copies;
    size_t matrix_bytes, label_bytes, set_bytes, workspace_bytes;
    char *sets;
    void *workspace;
    float *loss;
    int64_t *valid;
    float *scalars; /* CLIP's and SigLIP's ∂/∂s and ∂/∂β */
} gpu_buffers;

static gpu_set set_at(const gpu_buffers *b, int k) {
    gpu_set s;
    memset(&s, 0, sizeof s);
    char *base = b->sets + (size_t)k * b->set_bytes;
    for (int i = 0; i < b->c->input_count; ++i) {
        s.x[i] = base + (size_t)i * b->matrix_bytes;
        s.grad[i] = base + (size_t)(b->c->input_count + i) * b->matrix_bytes;
    }
    s.labels = base + (size_t)2 * b->c->input_count * b->matrix_bytes;
    return s;
}

/* One forward+backward (triplet_params() and the contract's defaults; CLIP and SigLIP with
 * b = N partners, K = 0, the logit scale and bias from the parameters, their gradients asked
 * for), on the default stream. */
static closs_status_t gpu_call(closs_handle_t handle, const gpu_buffers *b, int k) {
    gpu_set s = set_at(b, k);
    closs_matrix_t m[BENCH_MAX_INPUTS];
    closs_grad_t g[BENCH_MAX_INPUTS];
    for (int i = 0; i < BENCH_MAX_INPUTS; ++i) {
        m[i] = closs_matrix(s.x[i], b->dtype, b->rows, b->dim);
        g[i].data = s.grad[i];
        g[i].ld = b->dim;
    }
    closs_vector_t y = closs_vector(s.labels, CLOSS_F32, b->rows);
    const char *name = b->c->name;
    void *ws = b->workspace;
    size_t wb = b->workspace_bytes;
    if (!strcmp(name, "pair")) {
        closs_pair_params p = CLOSS_PAIR_PARAMS_INIT;
        return closs_pair_forward_backward(handle, &p, m[0], m[1], y, b->loss, g[0], g[1], ws, wb,
                                           NULL);
    }
    if (!strcmp(name, "triplet")) {
        closs_triplet_params p = triplet_params();
        return closs_triplet_forward_backward(handle, &p, m[0], m[1], m[2], b->loss, g[0], g[1],
                                              g[2], ws, wb, NULL);
    }
    if (!strcmp(name, "ntxent")) {
        closs_ntxent_params p = CLOSS_NTXENT_PARAMS_INIT;
        p.path = b->path;
        return closs_ntxent_forward_backward(handle, &p, m[0], b->loss, g[0], ws, wb, NULL);
    }
    if (!strcmp(name, "supcon")) {
        closs_supcon_params p = CLOSS_SUPCON_PARAMS_INIT;
        p.path = b->path;
        closs_vector_t labels = closs_vector(s.labels, CLOSS_I64, b->rows);
        return closs_supcon_forward_backward(handle, &p, m[0], labels, b->loss, b->valid, g[0], ws,
                                             wb, NULL);
    }
    if (!strcmp(name, "clip")) {
        closs_clip_params p = CLOSS_CLIP_PARAMS_INIT;
        p.path = b->path;
        return closs_clip_forward_backward(handle, &p, m[0], m[1], NULL, b->loss, g[0], g[1],
                                           b->scalars, ws, wb, NULL);
    }
    if (!strcmp(name, "siglip")) {
        closs_siglip_params p = CLOSS_SIGLIP_PARAMS_INIT;
        p.path = b->path;
        return closs_siglip_forward_backward(handle, &p, m[0], m[1], NULL, NULL, b->loss, g[0],
                                             g[1], b->scalars, b->scalars + 1, ws, wb, NULL);
    }
    closs_cosine_params p = CLOSS_COSINE_PARAMS_INIT;
    return closs_cosine_forward_backward(handle, &p, m[0], m[1], y, b->loss, g[0], g[1], ws, wb,
                                         NULL);
}

static closs_status_t workspace_size(closs_handle_t handle, const gpu_buffers *b, size_t *bytes) {
    const bench_case *c = b->c;
    const closs_dtype_t dtype = b->dtype;
    const int64_t rows = b->rows, dim = b->dim;
    if (!strcmp(c->name, "pair")) {
        closs_pair_params p = CLOSS_PAIR_PARAMS_INIT;
        return closs_pair_workspace_size(handle, &p, rows, dim, dtype, bytes);
    }
    if (!strcmp(c->name, "triplet")) {
        closs_triplet_params p = triplet_params();
        return closs_triplet_workspace_size(handle, &p, rows, dim, dtype, bytes);
    }
    if (!strcmp(c->name, "ntxent")) {
        closs_ntxent_params p = CLOSS_NTXENT_PARAMS_INIT;
        p.path = b->path;
        return closs_ntxent_workspace_size(handle, &p, rows, dim, dtype, bytes);
    }
    if (!strcmp(c->name, "supcon")) {
        closs_supcon_params p = CLOSS_SUPCON_PARAMS_INIT;
        p.path = b->path;
        return closs_supcon_workspace_size(handle, &p, rows, dim, dtype, bytes);
    }
    if (!strcmp(c->name, "clip")) {
        closs_clip_params p = CLOSS_CLIP_PARAMS_INIT;
        p.path = b->path;
        return closs_clip_workspace_size(handle, &p, rows, rows, dim, dtype, bytes);
    }
    if (!strcmp(c->name, "siglip")) {
        closs_siglip_params p = CLOSS_SIGLIP_PARAMS_INIT;
        p.path = b->path;
        return closs_siglip_workspace_size(handle, &p, rows, rows, dim, dtype, bytes);
    }
    closs_cosine_params p = CLOSS_COSINE_PARAMS_INIT;
    return closs_cosine_workspace_size(handle, &p, rows, dim, dtype, bytes);
}

static void free_buffers(gpu_buffers *b) {
    cudaFree(b->sets);
    cudaFree(b->workspace);
    cudaFree(b->loss);
    cudaFree(b->valid);
    cudaFree(b->scalars);
    b->sets = NULL;
    b->workspace = NULL;
    b->loss = NULL;
    b->valid = NULL;
    b->scalars = NULL;
}

/* Host labels: y alternating 0/1 (half similar pairs); SupCon two views per class, as the
 * baselines use (labels i mod M/2). */
static int upload_labels(const gpu_buffers *b, void *device) {
    void *host = malloc(b->label_bytes);
    if (!host) return -1;
    for (int64_t i = 0; i < b->rows; ++i) {
        if (!strcmp(b->c->name, "supcon"))
            ((int64_t *)host)[i] = i % (b->rows / 2 ? b->rows / 2 : 1);
        else ((float *)host)[i] = (float)(i % 2);
    }
    int failed = cudaMemcpy(device, host, b->label_bytes, cudaMemcpyHostToDevice) != cudaSuccess;
    free(host);
    return failed ? -1 : 0;
}

/* Allocates and fills `copies` sets (at least one); 0, or -1 with the reason in `error`
 * (and status "oom" when memory ran out). */
static int make_buffers(closs_handle_t handle, gpu_buffers *b, int copies, bench_point *point) {
    b->matrix_bytes = aligned((size_t)b->rows * (size_t)b->dim * closs_dtype_size(b->dtype));
    b->label_bytes = (size_t)b->rows * (strcmp(b->c->name, "supcon") ? 4 : 8);
    b->set_bytes = 2 * (size_t)b->c->input_count * b->matrix_bytes + aligned(b->label_bytes);
    if (workspace_size(handle, b, &b->workspace_bytes) != CLOSS_STATUS_SUCCESS) {
        point->status = "error";
        snprintf(point->error, sizeof point->error, "%s", closs_last_error());
        return -1;
    }
    size_t free_bytes = 0, total_bytes = 0;
    cudaMemGetInfo(&free_bytes, &total_bytes);
    /* At most half the free memory for the rotation, leaving room for the workspace. */
    while (copies > 1 && (size_t)copies * b->set_bytes > free_bytes / 2) --copies;
    b->copies = copies;
    if (cudaMalloc((void **)&b->sets, (size_t)copies * b->set_bytes) != cudaSuccess ||
        (b->workspace_bytes && cudaMalloc(&b->workspace, b->workspace_bytes) != cudaSuccess) ||
        cudaMalloc((void **)&b->loss, sizeof(float) * 1) != cudaSuccess ||
        cudaMalloc((void **)&b->valid, sizeof(int64_t)) != cudaSuccess ||
        cudaMalloc((void **)&b->scalars, 2 * sizeof(float)) != cudaSuccess) {
        cudaGetLastError();
        free_buffers(b);
        point->status = "oom";
        snprintf(point->error, sizeof point->error,
                 "cudaMalloc failed: %d set(s) of %.0f MB and %.0f MB of workspace", copies,
                 (double)b->set_bytes / 1e6, (double)b->workspace_bytes / 1e6);
        return -1;
    }
    size_t elements = (size_t)b->rows * (size_t)b->dim;
    for (int k = 0; k < copies; ++k) {
        gpu_set s = set_at(b, k);
        int failed = upload_labels(b, s.labels) != 0;
        for (int i = 0; i < b->c->input_count; ++i)
            failed |= bench_device_fill_uniform(s.x[i], b->dtype, elements,
                                                1000u * (uint64_t)k + (uint64_t)i + 1) != 0;
        if (failed) {
            free_buffers(b);
            point->status = "error";
            snprintf(point->error, sizeof point->error, "could not fill the inputs: %s",
                     cudaGetErrorString(cudaGetLastError()));
            return -1;
        }
    }
    return 0;
}

/* A device buffer read back as host floats; NULL on failure. */
static float *download_f32(const void *device, closs_dtype_t dtype, size_t count) {
    float *scratch = NULL, *host = malloc(count * sizeof(float));
    int ok =
        host && cudaMalloc((void **)&scratch, count * sizeof(float)) == cudaSuccess &&
        bench_device_to_f32(device, dtype, count, scratch) == 0 &&
        cudaMemcpy(host, scratch, count * sizeof(float), cudaMemcpyDeviceToHost) == cudaSuccess;
    cudaFree(scratch);
    if (!ok) {
        free(host);
        return NULL;
    }
    return host;
}

static double relative_error(const float *got, const double *want, size_t count) {
    double difference = 0.0, norm = 0.0;
    for (size_t e = 0; e < count; ++e) {
        double delta = (double)got[e] - want[e];
        difference += delta * delta;
        norm += want[e] * want[e];
    }
    return sqrt(difference) / (norm > 1e-300 ? sqrt(norm) : 1.0);
}

/* The CPU reference on the GPU's inputs (read back as f32): loss and gradients in double. */
static closs_status_t reference(const gpu_buffers *b, float *const *x, const void *labels,
                                double *loss, double *const *grad) {
    closs_matrix_t m[BENCH_MAX_INPUTS];
    for (int i = 0; i < BENCH_MAX_INPUTS; ++i)
        m[i] = closs_matrix(x[i], CLOSS_F32, b->rows, b->dim);
    closs_vector_t y = closs_vector(labels, CLOSS_F32, b->rows);
    const char *name = b->c->name;
    if (!strcmp(name, "pair")) {
        closs_pair_params p = CLOSS_PAIR_PARAMS_INIT;
        return closs_ref_pair(&p, m[0], m[1], y, NULL, loss, grad[0], grad[1]);
    }
    if (!strcmp(name, "triplet")) {
        closs_triplet_params p = triplet_params();
        return closs_ref_triplet(&p, m[0], m[1], m[2], NULL, loss, grad[0], grad[1], grad[2]);
    }
    if (!strcmp(name, "ntxent")) {
        closs_ntxent_params p = CLOSS_NTXENT_PARAMS_INIT;
        return closs_ref_ntxent(&p, m[0], NULL, loss, grad[0]);
    }
    if (!strcmp(name, "supcon")) {
        closs_supcon_params p = CLOSS_SUPCON_PARAMS_INIT;
        return closs_ref_supcon(&p, m[0], closs_vector(labels, CLOSS_I64, b->rows), NULL, loss,
                                grad[0], NULL);
    }
    if (!strcmp(name, "clip")) {
        closs_clip_params p = CLOSS_CLIP_PARAMS_INIT;
        return closs_ref_clip(&p, m[0], m[1], NULL, loss, grad[0], grad[1], NULL);
    }
    if (!strcmp(name, "siglip")) {
        closs_siglip_params p = CLOSS_SIGLIP_PARAMS_INIT;
        return closs_ref_siglip(&p, m[0], m[1], NULL, loss, grad[0], grad[1], NULL, NULL);
    }
    closs_cosine_params p = CLOSS_COSINE_PARAMS_INIT;
    return closs_ref_cosine(&p, m[0], m[1], y, NULL, loss, grad[0], grad[1]);
}

/* Norm-wise tolerance of a result written in `dtype`: its rounding (2^-11 for f16, 2^-8 for
 * bf16) dominates; f32 keeps float arithmetic's error over long rows (as the GPU tests). */
static double tolerance(closs_dtype_t dtype) {
    return dtype == CLOSS_F32 ? 1e-4 : dtype == CLOSS_F16 ? 2e-3 : 1e-2;
}

/* The check at a small size: the largest relative error of the loss and every gradient, or a
 * negative value with the reason in `error`. */
static double gpu_check(closs_handle_t handle, const bench_case *c, closs_dtype_t dtype,
                        int64_t dim, closs_path_t path, char *error, size_t error_size) {
    gpu_buffers b = {
        .c = c, .dtype = dtype, .rows = c->rowwise ? 1000 : 512, .dim = dim, .path = path};
    bench_point scratch;
    bench_point_init(&scratch, implementation(c, path), c, cli_dtype_name(dtype), b.rows, b.dim);
    if (make_buffers(handle, &b, 1, &scratch) != 0) {
        snprintf(error, error_size, "%.180s", scratch.error);
        return -1.0;
    }
    size_t elements = (size_t)b.rows * (size_t)b.dim;
    gpu_set s = set_at(&b, 0);
    float *x[BENCH_MAX_INPUTS] = {NULL, NULL, NULL}, *g[BENCH_MAX_INPUTS] = {NULL, NULL, NULL};
    double *want[BENCH_MAX_INPUTS] = {NULL, NULL, NULL};
    void *labels = malloc(b.label_bytes);
    float loss = NAN;
    double want_loss = NAN, worst = -1.0;
    closs_status_t status = gpu_call(handle, &b, 0);
    if (status != CLOSS_STATUS_SUCCESS) {
        snprintf(error, error_size, "%s", closs_last_error());
        goto done;
    }
    int ok = labels && cudaMemcpy(labels, s.labels, b.label_bytes, cudaMemcpyDeviceToHost) == 0 &&
             cudaMemcpy(&loss, b.loss, sizeof loss, cudaMemcpyDeviceToHost) == 0;
    for (int i = 0; ok && i < c->input_count; ++i) {
        x[i] = download_f32(s.x[i], dtype, elements);
        g[i] = download_f32(s.grad[i], dtype, elements);
        want[i] = malloc(elements * sizeof(double));
        ok = x[i] && g[i] && want[i];
    }
    if (!ok) {
        snprintf(error, error_size, "reading the results back failed: %s",
                 cudaGetErrorString(cudaGetLastError()));
        goto done;
    }
    if (reference(&b, x, labels, &want_loss, want) != CLOSS_STATUS_SUCCESS) {
        snprintf(error, error_size, "the CPU reference failed: %s", closs_last_error());
        goto done;
    }
    worst = fabs((double)loss - want_loss) / (fabs(want_loss) > 1e-30 ? fabs(want_loss) : 1.0);
    if (!isfinite((double)loss)) worst = INFINITY;
    for (int i = 0; i < c->input_count; ++i) {
        double e = relative_error(g[i], want[i], elements);
        if (!(e <= worst)) worst = isnan(e) ? INFINITY : e;
    }
done:
    for (int i = 0; i < BENCH_MAX_INPUTS; ++i) {
        free(x[i]);
        free(g[i]);
        free(want[i]);
    }
    free(labels);
    free_buffers(&b);
    return worst;
}

static int compare_floats(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Times one point into `point`; returns nonzero when the point failed (status says how). */
static int gpu_time(closs_handle_t handle, const bench_gpu_info *info, int repeats, gpu_buffers *b,
                    bench_point *point) {
    const bench_case *c = b->c;
    size_t probe_set =
        2 * (size_t)c->input_count * (size_t)b->rows * (size_t)b->dim * closs_dtype_size(b->dtype);
    size_t wanted = (size_t)(3 * info->ceilings.l2_bytes) / (probe_set ? probe_set : 1) + 1;
    int copies = (int)(wanted < 2 ? 2 : wanted > MAX_COPIES ? MAX_COPIES : wanted);
    if (make_buffers(handle, b, copies, point) != 0) return -1;

    cudaEvent_t *events = calloc(2 * (size_t)repeats, sizeof(cudaEvent_t));
    float *times = calloc((size_t)repeats, sizeof *times);
    int failed = !events || !times;
    for (int r = 0; !failed && r < 2 * repeats; ++r)
        failed = cudaEventCreate(&events[r]) != cudaSuccess;
    closs_status_t status = CLOSS_STATUS_SUCCESS;
    for (int r = 0; !failed && status == CLOSS_STATUS_SUCCESS && r < WARMUP + repeats; ++r) {
        int timed = r - WARMUP;
        if (timed >= 0) cudaEventRecord(events[2 * timed], NULL);
        status = gpu_call(handle, b, r % b->copies);
        if (timed >= 0) cudaEventRecord(events[2 * timed + 1], NULL);
    }
    cudaError_t cuda = cudaDeviceSynchronize();
    if (!failed && status == CLOSS_STATUS_SUCCESS && cuda == cudaSuccess) {
        for (int r = 0; r < repeats && cuda == cudaSuccess; ++r)
            cuda = cudaEventElapsedTime(&times[r], events[2 * r], events[2 * r + 1]);
        float loss = NAN;
        if (cuda == cudaSuccess)
            cuda = cudaMemcpy(&loss, b->loss, sizeof loss, cudaMemcpyDeviceToHost);
        point->loss_value = loss;
    }
    if (failed || status != CLOSS_STATUS_SUCCESS || cuda != cudaSuccess) {
        point->status = status == CLOSS_STATUS_ALLOC_FAILED ? "oom" : "error";
        snprintf(point->error, sizeof point->error, "%s",
                 failed                           ? "out of host memory or CUDA events"
                 : status != CLOSS_STATUS_SUCCESS ? closs_last_error()
                                                  : cudaGetErrorString(cuda));
        failed = 1;
        cudaGetLastError();
    } else {
        qsort(times, (size_t)repeats, sizeof *times, compare_floats);
        point->repeats = repeats;
        point->median_ms = times[repeats / 2];
    }
    for (int r = 0; events && r < 2 * repeats; ++r)
        if (events[r]) cudaEventDestroy(events[r]);
    free(events);
    free(times);
    point->peak_extra_bytes =
        (double)(b->workspace_bytes + (size_t)c->input_count * b->matrix_bytes + sizeof(float));
    point->memory_method = "workspace+outputs";
    free_buffers(b);
    return failed;
}

/* Rate and floor of a timed point from the ceilings. */
static void rate_and_floor(const bench_ceilings *ceilings, const bench_case *c, closs_dtype_t dtype,
                           bench_point *point) {
    const double n = (double)point->rows, d = (double)point->dim;
    const double seconds = point->median_ms * 1e-3;
    if (c->rowwise) {
        double bytes = 2.0 * c->input_count * n * d * (double)closs_dtype_size(dtype) +
                       (c->targets ? 4.0 * n : 0.0);
        point->rate = bytes / seconds / 1e9;
        point->rate_unit = "GB/s";
        point->floor_ms = bytes / (ceilings->copy_gbs * 1e9) * 1e3;
    } else {
        double flops = bench_quadratic_flops(c, n, d), exps = bench_quadratic_exps(c, n);
        point->rate = flops / seconds / 1e12;
        point->rate_unit = "TFLOP/s";
        double gemm = flops / (ceilings->gemm_bf16_tflops * 1e12);
        double exp = exps / ceilings->exp_per_second;
        point->floor_ms = 1e3 * (gemm > exp ? gemm : exp);
    }
}

typedef struct gpu_run {
    closs_handle_t handle;
    bench_gpu_info *info;
    bench_points *points;
    int repeats, total, done, failed;
    closs_path_t path;
    const bench_case *checked_case; /* the (loss, dtype) whose check is in check_error */
    closs_dtype_t checked_dtype;
    double check_error;
    char check_message[200];
} gpu_run;

static int count_point(void *context, const bench_case *c, closs_dtype_t dtype, int64_t rows,
                       int64_t dim) {
    (void)c, (void)dtype, (void)rows, (void)dim;
    ++((gpu_run *)context)->total;
    return 0;
}

static int run_point(void *context, const bench_case *c, closs_dtype_t dtype, int64_t rows,
                     int64_t dim) {
    gpu_run *run = context;
    const char *dtype_name = cli_dtype_name(dtype);
    if (run->checked_case != c || run->checked_dtype != dtype) {
        bench_progress("gpu check %s %s", c->name, dtype_name);
        run->check_message[0] = '\0';
        run->check_error = gpu_check(run->handle, c, dtype, dim, run->path, run->check_message,
                                     sizeof run->check_message);
        run->checked_case = c;
        run->checked_dtype = dtype;
    }
    bench_progress("gpu [%d/%d] %s %s rows=%lld dim=%lld", ++run->done, run->total, c->name,
                   dtype_name, (long long)rows, (long long)dim);
    bench_point *point = bench_points_add(run->points);
    if (!point) return -1;
    bench_point_init(point, implementation(c, run->path), c, dtype_name, rows, dim);
    gpu_buffers b = {.c = c, .dtype = dtype, .rows = rows, .dim = dim, .path = run->path};
    int failed = gpu_time(run->handle, run->info, run->repeats, &b, point);
    if (!failed) rate_and_floor(&run->info->ceilings, c, dtype, point);
    point->check_method = "gpu-vs-cpu-reference";
    point->check_tolerance = tolerance(dtype);
    point->check_error = run->check_error >= 0.0 ? run->check_error : NAN;
    if (!failed && !(run->check_error >= 0.0 && run->check_error <= tolerance(dtype))) {
        point->status = "error";
        if (run->check_message[0])
            snprintf(point->error, sizeof point->error, "check failed: %s", run->check_message);
        else
            snprintf(point->error, sizeof point->error, "check failed: error %.2e > %.0e",
                     run->check_error, tolerance(dtype));
        failed = 1;
    }
    run->failed |= failed && strcmp(point->status, "oom") != 0;
    return 0;
}

int bench_gpu_run(const bench_options *options, bench_gpu_info *info, bench_points *points) {
    gpu_run run;
    memset(&run, 0, sizeof run);
    run.info = info;
    run.points = points;
    run.repeats = options->repeats ? options->repeats : GPU_REPEATS;
    run.path = options->path;
    visit_sweep(options, count_point, &run);
    if (!run.total) return 0;
    if (closs_create(&run.handle) != CLOSS_STATUS_SUCCESS) {
        fprintf(stderr, "closs: error: closs_create: %s\n", closs_last_error());
        return -1;
    }
    char error[200] = "";
    bench_ceilings *ceilings = &info->ceilings;
    bench_progress("gpu ceilings: copy, bf16 GEMM, exp");
    ceilings->copy_gbs = bench_device_copy_gbs(COPY_BYTES, CEILING_REPEATS, error, sizeof error);
    ceilings->gemm_bf16_tflops =
        bench_device_gemm_bf16_tflops(GEMM_SIZE, CEILING_REPEATS, error, sizeof error);
    ceilings->exp_per_second = bench_device_exp_per_second(CEILING_REPEATS, error, sizeof error);
    if (error[0]) fprintf(stderr, "closs: warning: %s (floors unknown)\n", error);
    visit_sweep(options, run_point, &run);
    bench_progress_done();
    closs_destroy(run.handle);
    return run.failed;
}

#endif
