/* `closs eval --device cuda`: what a C user of the GPU entry points does. Host arrays are
 * converted to the device dtype on the host (half.c), copied to device buffers, the loss's
 * forward_backward runs on the default stream with the handle's own workspace, and the results
 * come back widened to double for the same output files as the CPU path. */
#include "eval_gpu.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "half.h"

#ifdef CLOSS_CLI_WITH_CUDA
#    include <cuda_runtime_api.h>

/* The device's copies of one call's arrays; NULL where unused. */
typedef struct device_arrays {
    void *inputs[CLI_MAX_INPUTS];
    void *grads[CLI_MAX_INPUTS];
    float *loss;
    int64_t *valid;
    float *scalars; /* CLIP's and SigLIP's ∂/∂s and ∂/∂β */
} device_arrays;

static void free_device_arrays(device_arrays *arrays) {
    for (int i = 0; i < CLI_MAX_INPUTS; ++i) {
        cudaFree(arrays->inputs[i]);
        cudaFree(arrays->grads[i]);
    }
    cudaFree(arrays->loss);
    cudaFree(arrays->valid);
    cudaFree(arrays->scalars);
}

static closs_status_t cuda_failure(int error, const char *what, char *err, size_t err_size) {
    snprintf(err, err_size, "%s: %s", what, cudaGetErrorString((cudaError_t)error));
    return error == cudaErrorMemoryAllocation ? CLOSS_STATUS_ALLOC_FAILED : CLOSS_STATUS_CUDA_ERROR;
}

/* Device memory of `bytes` (at least 16: an empty batch still gets a valid pointer). */
static closs_status_t device_alloc(void **out, size_t bytes, const char *name, char *err,
                                   size_t err_size) {
    cudaError_t error = cudaMalloc(out, bytes ? bytes : 16);
    if (error == cudaSuccess) return CLOSS_STATUS_SUCCESS;
    char what[96];
    snprintf(what, sizeof what, "device memory for %s (%zu bytes)", name, bytes);
    return cuda_failure(error, what, err, err_size);
}

/* One input on the device: matrices (CLIP's and SigLIP's b too) in `dtype`, pair targets as
 * float32, labels as they are. */
static closs_status_t upload(const cli_input *input, closs_dtype_t dtype, void **out, char *err,
                             size_t err_size) {
    const size_t count = input->array.count;
    const closs_dtype_t device_dtype = cli_input_is_matrix(input) ? dtype : input->dtype;
    const size_t bytes = count * closs_dtype_size(device_dtype);
    const void *host = input->array.data;
    uint16_t *converted = NULL;
    if (device_dtype == CLOSS_F16 || device_dtype == CLOSS_BF16) {
        converted = malloc(bytes ? bytes : 1);
        if (!converted) {
            snprintf(err, err_size, "out of host memory converting %s", input->name);
            return CLOSS_STATUS_ALLOC_FAILED;
        }
        const float *values = input->array.data;
        for (size_t i = 0; i < count; ++i)
            converted[i] = device_dtype == CLOSS_F16 ? cli_f16_from_float(values[i])
                                                     : cli_bf16_from_float(values[i]);
        host = converted;
    }
    closs_status_t status = device_alloc(out, bytes, input->name, err, err_size);
    if (status == CLOSS_STATUS_SUCCESS && bytes) {
        cudaError_t error = cudaMemcpy(*out, host, bytes, cudaMemcpyHostToDevice);
        if (error != cudaSuccess) status = cuda_failure(error, "copy to the device", err, err_size);
    }
    free(converted);
    return status;
}

static closs_status_t forward_backward(closs_handle_t handle, const cli_params *params,
                                       closs_dtype_t dtype, const cli_inputs *in,
                                       const device_arrays *d) {
    closs_matrix_t m[CLI_MAX_INPUTS] = {{0}};
    closs_grad_t g[CLI_MAX_INPUTS] = {{0}};
    closs_vector_t v = {0};
    for (int i = 0; i < in->count; ++i) {
        const cli_input *input = &in->items[i];
        if (cli_input_is_matrix(input)) {
            m[i] = closs_matrix(d->inputs[i], dtype, input->array.shape[0], in->dim);
            g[i] = (closs_grad_t){d->grads[i], in->dim};
        } else {
            const closs_dtype_t vector_dtype =
                input->kind == CLI_INPUT_TARGETS ? CLOSS_F32 : input->dtype;
            v = closs_vector(d->inputs[i], vector_dtype, (int64_t)input->array.count);
        }
    }
    switch (params->loss) {
    case CLI_LOSS_PAIR:
        return closs_pair_forward_backward(handle, &params->as.pair, m[0], m[1], v, d->loss, g[0],
                                           g[1], NULL, 0, NULL);
    case CLI_LOSS_TRIPLET:
        return closs_triplet_forward_backward(handle, &params->as.triplet, m[0], m[1], m[2],
                                              d->loss, g[0], g[1], g[2], NULL, 0, NULL);
    case CLI_LOSS_NTXENT:
        return closs_ntxent_forward_backward(handle, &params->as.ntxent, m[0], d->loss, g[0], NULL,
                                             0, NULL);
    case CLI_LOSS_SUPCON:
        return closs_supcon_forward_backward(handle, &params->as.supcon, m[0], v, d->loss, d->valid,
                                             g[0], NULL, 0, NULL);
    case CLI_LOSS_COSINE:
        return closs_cosine_forward_backward(handle, &params->as.cosine, m[0], m[1], v, d->loss,
                                             g[0], g[1], NULL, 0, NULL);
    case CLI_LOSS_CLIP: /* the logit scale from the parameters (a NULL device scalar) */
        return closs_clip_forward_backward(handle, &params->as.clip, m[0], m[1], NULL, d->loss,
                                           g[0], g[1], d->scalars, NULL, 0, NULL);
    case CLI_LOSS_SIGLIP:
        return closs_siglip_forward_backward(handle, &params->as.siglip, m[0], m[1], NULL, NULL,
                                             d->loss, g[0], g[1], d->scalars, d->scalars + 1, NULL,
                                             0, NULL);
    case CLI_LOSS_COUNT: break;
    }
    return CLOSS_STATUS_INVALID_ARGUMENT;
}

/* Device results into the caller's double arrays: the losses, each gradient's grad_rows[k] rows
 * and the scalar gradients. */
static closs_status_t download(const cli_inputs *in, closs_dtype_t dtype, size_t loss_count,
                               const int64_t grad_rows[], const device_arrays *d, double *loss,
                               double *grads[], double scalar_grads[2], int64_t *valid, char *err,
                               size_t err_size) {
    size_t largest = loss_count;
    for (int k = 0; k < in->count; ++k) {
        const size_t count = (size_t)grad_rows[k] * (size_t)in->dim;
        if (grads[k] && count > largest) largest = count;
    }
    const size_t buffer_bytes = largest * sizeof(float);
    void *buffer = malloc(buffer_bytes ? buffer_bytes : 1);
    if (!buffer) {
        snprintf(err, err_size, "out of host memory for the results");
        return CLOSS_STATUS_ALLOC_FAILED;
    }
    closs_status_t status = CLOSS_STATUS_SUCCESS;
    cudaError_t error =
        cudaMemcpy(buffer, d->loss, loss_count * sizeof(float), cudaMemcpyDeviceToHost);
    for (size_t i = 0; error == cudaSuccess && i < loss_count; ++i)
        loss[i] = ((const float *)buffer)[i];
    for (int k = 0; error == cudaSuccess && k < in->count; ++k) {
        const size_t grad_count = (size_t)grad_rows[k] * (size_t)in->dim;
        if (!grads[k] || !grad_count) continue;
        error = cudaMemcpy(buffer, d->grads[k], grad_count * closs_dtype_size(dtype),
                           cudaMemcpyDeviceToHost);
        for (size_t i = 0; error == cudaSuccess && i < grad_count; ++i) {
            const uint16_t *half = buffer;
            grads[k][i] = dtype == CLOSS_F32   ? ((const float *)buffer)[i]
                          : dtype == CLOSS_F16 ? cli_float_from_f16(half[i])
                                               : cli_float_from_bf16(half[i]);
        }
    }
    if (error == cudaSuccess && d->valid)
        error = cudaMemcpy(valid, d->valid, sizeof *valid, cudaMemcpyDeviceToHost);
    float scalars[2] = {0.0f, 0.0f};
    if (error == cudaSuccess && d->scalars)
        error = cudaMemcpy(scalars, d->scalars, sizeof scalars, cudaMemcpyDeviceToHost);
    scalar_grads[0] = scalars[0];
    scalar_grads[1] = scalars[1];
    if (error != cudaSuccess) status = cuda_failure(error, "copy from the device", err, err_size);
    free(buffer);
    return status;
}

closs_status_t cli_eval_gpu(const cli_params *params, closs_dtype_t dtype, const cli_inputs *inputs,
                            const int64_t grad_rows[CLI_MAX_INPUTS], double *loss,
                            double *grads[CLI_MAX_INPUTS], double scalar_grads[2], int64_t *valid,
                            char *err, size_t err_size) {
    closs_handle_t handle = NULL;
    closs_status_t status = closs_create(&handle);
    if (status != CLOSS_STATUS_SUCCESS) {
        snprintf(err, err_size, "%s", closs_last_error());
        return status;
    }
    device_arrays d = {0};
    const size_t loss_count =
        cli_params_reduction(params) == CLOSS_REDUCTION_NONE ? (size_t)inputs->rows : 1;
    for (int i = 0; status == CLOSS_STATUS_SUCCESS && i < inputs->count; ++i) {
        status = upload(&inputs->items[i], dtype, &d.inputs[i], err, err_size);
        const size_t grad_bytes =
            (size_t)grad_rows[i] * (size_t)inputs->dim * closs_dtype_size(dtype);
        if (status == CLOSS_STATUS_SUCCESS && cli_input_is_matrix(&inputs->items[i]))
            status = device_alloc(&d.grads[i], grad_bytes, "a gradient", err, err_size);
    }
    if (status == CLOSS_STATUS_SUCCESS)
        status =
            device_alloc((void **)&d.loss, loss_count * sizeof(float), "the loss", err, err_size);
    if (status == CLOSS_STATUS_SUCCESS && params->loss == CLI_LOSS_SUPCON)
        status = device_alloc((void **)&d.valid, sizeof(int64_t), "valid", err, err_size);
    if (status == CLOSS_STATUS_SUCCESS &&
        (params->loss == CLI_LOSS_CLIP || params->loss == CLI_LOSS_SIGLIP))
        status = device_alloc((void **)&d.scalars, 2 * sizeof(float), "the scalar gradients", err,
                              err_size);
    if (status == CLOSS_STATUS_SUCCESS) {
        status = forward_backward(handle, params, dtype, inputs, &d);
        if (status != CLOSS_STATUS_SUCCESS) snprintf(err, err_size, "%s", closs_last_error());
    }
    if (status == CLOSS_STATUS_SUCCESS) {
        cudaError_t error = cudaDeviceSynchronize();
        if (error != cudaSuccess)
            status = cuda_failure(error, "the GPU computation", err, err_size);
    }
    if (status == CLOSS_STATUS_SUCCESS)
        status = download(inputs, dtype, loss_count, grad_rows, &d, loss, grads, scalar_grads,
                          valid, err, err_size);
    free_device_arrays(&d);
    closs_destroy(handle);
    return status;
}

#else /* a build without CUDA */

closs_status_t cli_eval_gpu(const cli_params *params, closs_dtype_t dtype, const cli_inputs *inputs,
                            const int64_t grad_rows[CLI_MAX_INPUTS], double *loss,
                            double *grads[CLI_MAX_INPUTS], double scalar_grads[2], int64_t *valid,
                            char *err, size_t err_size) {
    (void)params, (void)dtype, (void)inputs, (void)grad_rows, (void)loss, (void)grads,
        (void)scalar_grads, (void)valid;
    snprintf(err, err_size, "closs was built without CUDA: --device cuda is not available");
    return CLOSS_STATUS_NOT_SUPPORTED;
}

#endif
