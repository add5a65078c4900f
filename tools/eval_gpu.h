/* `closs eval --device cuda`: the loss's forward+backward through the public GPU entry points. */
#ifndef CLOSS_TOOLS_EVAL_GPU_H
#define CLOSS_TOOLS_EVAL_GPU_H

#include <stddef.h>
#include <stdint.h>

#include "closs.h"
#include "inputs.h"
#include "params.h"

/* Copies `inputs` (float arrays loaded as float32) to the device, matrices converted to `dtype`
 * (CLOSS_F32, CLOSS_F16 or CLOSS_BF16), runs the loss's *_forward_backward (upstream 1, as the
 * CPU path; CLIP's and SigLIP's logit scale and bias from the parameters) and copies back: `loss`
 * (1 value, or rows for reduction none), each matrix input's gradient into grads[i] (grad_rows[i]
 * rows × dim, widened to double), CLIP's and SigLIP's scalar gradients into scalar_grads
 * (logit_scale, logit_bias) and SupCon's valid count. On failure writes a one-line message into
 * err and returns the library's status (CUDA runtime failures are CLOSS_STATUS_CUDA_ERROR or
 * ALLOC_FAILED). Built without CUDA it returns NOT_SUPPORTED. */
closs_status_t cli_eval_gpu(const cli_params *params, closs_dtype_t dtype, const cli_inputs *inputs,
                            const int64_t grad_rows[CLI_MAX_INPUTS], double *loss,
                            double *grads[CLI_MAX_INPUTS], double scalar_grads[2], int64_t *valid,
                            char *err, size_t err_size);

#endif
