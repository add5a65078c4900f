// The XLA FFI handlers of closs_jax's two-tower losses, CLIP and SigLIP (docs/contract.md §6-7):
// one for host buffers (the CPU reference, closs_ref_clip*, closs_ref_siglip) and one for CUDA
// buffers (the GPU entry points on XLA's stream, workspace from XLA's scratch allocator).
// closs_jax/__init__.py registers both as the custom call target "closs_two_tower".
//
// Attributes: "kind" (0 CLIP, 1 SigLIP) and "direction" (0 forward, 1 forward_backward,
// 2 backward), int32, and the loss's options named as the fields of its params struct (int32).
// The logit scale (and SigLIP's bias) are buffers, not attributes: they are traced values with a
// gradient. Buffers, in closs.h's order:
//   forward           args: a, b, scale, [bias]                                rets: loss,
//   [row_stats, column_stats] forward_backward  args: a, b, scale, [bias] rets: loss, grad_a,
//   grad_b, grad_scale, [grad_bias] backward          args: a, b, scale, [bias], [row_stats,
//   column_stats], upstream   rets: the gradients
// a is N × D, b (N + K) × D, dense row-major, one floating dtype; scale, bias, grad_scale and
// grad_bias are 0-d, of the loss's dtype (float64 for float64 inputs, else float32); CLIP's
// statistics (N each; column_stats has 0 values unless symmetric) are of the loss's dtype too.
// grad_b has N + K rows, or N with grad_negatives = 0.

#include <closs.h>

#include <cstdint>
#include <string>
#include <vector>

#include "ffi_common.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using namespace closs_jax; // NOLINT(google-build-using-namespace): the shared helpers

enum Kind { CLIP, SIGLIP };
enum Direction { FORWARD, FORWARD_BACKWARD, BACKWARD };

// One call's buffers, sorted by role (see the top of the file).
struct Call {
    int kind = CLIP, direction = FORWARD;
    closs_clip_params clip = CLOSS_CLIP_PARAMS_INIT;
    closs_siglip_params siglip = CLOSS_SIGLIP_PARAMS_INIT;
    closs_matrix_t a{}, b{};
    std::vector<ffi::AnyBuffer> args; // keeps the argument views alive
    const ffi::AnyBuffer *scale = nullptr, *bias = nullptr, *row_stats = nullptr,
                         *column_stats = nullptr, *upstream = nullptr;
    std::vector<ffi::AnyBuffer> rets; // loss, [stats] or the gradients, as the direction has them
    bool symmetric() const { return kind == CLIP && clip.symmetric; }
    closs_reduction_t reduction() const { return kind == CLIP ? clip.reduction : siglip.reduction; }
};

ffi::Error read_params(const ffi::Dictionary &attrs, Call *call) {
    if (call->kind == CLIP) {
        closs_clip_params &p = call->clip;
        CLOSS_JAX_TRY(read(attrs, "symmetric", &p.symmetric));
        CLOSS_JAX_TRY(read(attrs, "in_batch_negatives", &p.in_batch_negatives));
        CLOSS_JAX_TRY(read(attrs, "normalize", &p.normalize));
        CLOSS_JAX_TRY(read(attrs, "grad_negatives", &p.grad_negatives));
        CLOSS_JAX_TRY(read_enum(attrs, "reduction", &p.reduction));
        CLOSS_JAX_TRY(read(attrs, "check_inputs", &p.check_inputs));
        return read_enum(attrs, "path", &p.path);
    }
    closs_siglip_params &p = call->siglip;
    CLOSS_JAX_TRY(read(attrs, "normalize", &p.normalize));
    CLOSS_JAX_TRY(read(attrs, "grad_negatives", &p.grad_negatives));
    CLOSS_JAX_TRY(read_enum(attrs, "reduction", &p.reduction));
    CLOSS_JAX_TRY(read(attrs, "check_inputs", &p.check_inputs));
    return read_enum(attrs, "path", &p.path);
}

ffi::Error matrix(const ffi::AnyBuffer &buffer, closs_matrix_t *m) {
    closs_dtype_t dtype;
    if (buffer.dimensions().size() != 2 || !to_closs_dtype(buffer.element_type(), &dtype)) {
        return ffi::Error::InvalidArgument("closs_jax: a and b must be 2-D floating arrays");
    }
    int64_t rows = buffer.dimensions()[0], cols = buffer.dimensions()[1];
    *m = closs_matrix_ld(buffer.untyped_data(), dtype, rows, cols, cols);
    return ffi::Error::Success();
}

ffi::Error describe(const ffi::Dictionary &attrs, ffi::RemainingArgs args, ffi::RemainingRets rets,
                    Call *call) {
    CLOSS_JAX_TRY(read(attrs, "kind", &call->kind));
    CLOSS_JAX_TRY(read(attrs, "direction", &call->direction));
    if (call->kind < CLIP || call->kind > SIGLIP || call->direction < FORWARD ||
        call->direction > BACKWARD) {
        return ffi::Error::InvalidArgument("closs_jax: unknown two-tower loss or direction");
    }
    CLOSS_JAX_TRY(read_params(attrs, call));
    const size_t scalars = call->kind == CLIP ? 1 : 2;
    const size_t stats = call->kind == CLIP ? 2 : 0;
    size_t wanted_args = 2 + scalars + (call->direction == BACKWARD ? stats + 1 : 0);
    size_t wanted_rets = call->direction == FORWARD            ? 1 + stats
                         : call->direction == FORWARD_BACKWARD ? 3 + scalars
                                                               : 2 + scalars;
    if (args.size() != wanted_args || rets.size() != wanted_rets) {
        return ffi::Error::InvalidArgument("closs_jax: wrong number of arguments or results");
    }
    for (size_t i = 0; i < args.size(); ++i) {
        ffi::ErrorOr<ffi::AnyBuffer> buffer = args.get<ffi::AnyBuffer>(i);
        if (buffer.has_error()) return buffer.error();
        call->args.push_back(*buffer);
    }
    for (size_t i = 0; i < rets.size(); ++i) {
        ffi::ErrorOr<ffi::Result<ffi::AnyBuffer>> buffer = rets.get<ffi::AnyBuffer>(i);
        if (buffer.has_error()) return buffer.error();
        call->rets.push_back(**buffer);
    }
    CLOSS_JAX_TRY(matrix(call->args[0], &call->a));
    CLOSS_JAX_TRY(matrix(call->args[1], &call->b));
    size_t next = 2;
    call->scale = &call->args[next++];
    if (call->kind == SIGLIP) call->bias = &call->args[next++];
    if (call->direction == BACKWARD) {
        if (call->kind == CLIP) {
            call->row_stats = &call->args[next++];
            call->column_stats = &call->args[next++];
        }
        call->upstream = &call->args[next];
    }
    return ffi::Error::Success();
}

// ---- the CPU reference --------------------------------------------------------------------------

double scalar_value(const ffi::AnyBuffer &buffer, size_t i = 0) {
    return buffer.element_type() == ffi::DataType::F64
               ? static_cast<const double *>(buffer.untyped_data())[i]
               : static_cast<const float *>(buffer.untyped_data())[i];
}

std::vector<double> doubles(const ffi::AnyBuffer *buffer) {
    std::vector<double> values(buffer != nullptr ? buffer->element_count() : 0);
    for (size_t i = 0; i < values.size(); ++i) values[i] = scalar_value(*buffer, i);
    return values;
}

// Writes doubles into a result buffer of float64 or float32.
void store(const std::vector<double> &values, ffi::AnyBuffer &out) {
    for (size_t i = 0; i < values.size(); ++i) {
        if (out.element_type() == ffi::DataType::F64) {
            static_cast<double *>(out.untyped_data())[i] = values[i];
        } else {
            static_cast<float *>(out.untyped_data())[i] = static_cast<float>(values[i]);
        }
    }
}

ffi::Error run_reference(Call &call) {
    call.clip.logit_scale = call.siglip.logit_scale = scalar_value(*call.scale);
    if (call.bias != nullptr) call.siglip.logit_bias = scalar_value(*call.bias);
    const int64_t pairs = call.a.rows;
    std::vector<double> loss(call.reduction() == CLOSS_REDUCTION_NONE ? pairs : 1);
    closs_status_t status;
    const char *function;
    if (call.direction == FORWARD) {
        std::vector<double> row_stats(call.kind == CLIP ? pairs : 0);
        std::vector<double> column_stats(call.symmetric() ? pairs : 0);
        if (call.kind == CLIP) {
            function = "closs_ref_clip_forward";
            status = closs_ref_clip_forward(&call.clip, call.a, call.b, loss.data(),
                                            row_stats.data(), column_stats.data());
        } else {
            function = "closs_ref_siglip";
            status = closs_ref_siglip(&call.siglip, call.a, call.b, nullptr, loss.data(), nullptr,
                                      nullptr, nullptr, nullptr);
        }
        if (status != CLOSS_STATUS_SUCCESS) return closs_failure(function);
        store(loss, call.rets[0]);
        if (call.kind == CLIP) {
            store(row_stats, call.rets[1]);
            store(column_stats, call.rets[2]);
        }
        return ffi::Error::Success();
    }
    // The gradients, as rets from `first` on: grad_a, grad_b, grad_scale, [grad_bias].
    const size_t first = call.direction == FORWARD_BACKWARD ? 1 : 0;
    std::vector<std::vector<double>> grads;
    for (size_t i = first; i < call.rets.size(); ++i)
        grads.emplace_back(call.rets[i].element_count());
    std::vector<double> upstream = doubles(call.upstream);
    const double *up = call.upstream != nullptr ? upstream.data() : nullptr;
    if (call.upstream != nullptr && upstream.size() != loss.size()) {
        return ffi::Error::InvalidArgument("closs_jax: upstream has the wrong length");
    }
    double *grad_bias = grads.size() > 3 ? grads[3].data() : nullptr;
    if (call.kind == CLIP && call.direction == BACKWARD) {
        std::vector<double> row_stats = doubles(call.row_stats);
        std::vector<double> column_stats = doubles(call.column_stats);
        function = "closs_ref_clip_backward";
        status = closs_ref_clip_backward(&call.clip, call.a, call.b, row_stats.data(),
                                         column_stats.data(), up, grads[0].data(), grads[1].data(),
                                         grads[2].data());
    } else if (call.kind == CLIP) {
        function = "closs_ref_clip";
        status = closs_ref_clip(&call.clip, call.a, call.b, up, loss.data(), grads[0].data(),
                                grads[1].data(), grads[2].data());
    } else {
        function = "closs_ref_siglip";
        status = closs_ref_siglip(&call.siglip, call.a, call.b, up, loss.data(), grads[0].data(),
                                  grads[1].data(), grads[2].data(), grad_bias);
    }
    if (status != CLOSS_STATUS_SUCCESS) return closs_failure(function);
    if (first == 1) store(loss, call.rets[0]);
    for (size_t i = 0; i < grads.size(); ++i) store(grads[i], call.rets[first + i]);
    return ffi::Error::Success();
}

ffi::Error cpu_handler(ffi::Dictionary attrs, ffi::RemainingArgs args, ffi::RemainingRets rets) {
    Call call;
    CLOSS_JAX_TRY(describe(attrs, args, rets, &call));
    if ((call.a.dtype != CLOSS_F32 && call.a.dtype != CLOSS_F64) || call.b.dtype != call.a.dtype) {
        return ffi::Error::InvalidArgument("closs_jax: on the CPU closs takes float32 or float64");
    }
    return run_reference(call);
}

// ---- the GPU entry points -----------------------------------------------------------------------

// The GPU reads the scale and bias where they are, as device floats (no host synchronisation).
const float *device_float(const ffi::AnyBuffer *buffer) {
    return buffer != nullptr ? static_cast<const float *>(buffer->untyped_data()) : nullptr;
}

float *result_float(Call &call, size_t i) {
    return i < call.rets.size() ? static_cast<float *>(call.rets[i].untyped_data()) : nullptr;
}

closs_grad_t grad_rows(Call &call, size_t i) {
    return closs_grad_t{call.rets[i].untyped_data(), call.a.cols};
}

ffi::Error run_gpu(Call &call, closs_handle_t h, void *ws, size_t bytes, closs_stream_t stream) {
    const float *s = device_float(call.scale), *beta = device_float(call.bias);
    const float *up = device_float(call.upstream);
    const float *row_stats = device_float(call.row_stats);
    const float *column_stats = call.symmetric() ? device_float(call.column_stats) : nullptr;
    const size_t g = call.direction == FORWARD_BACKWARD ? 1 : 0; // the first gradient's result
    closs_status_t status;
    const char *function;
    if (call.kind == CLIP) {
        const closs_clip_params *p = &call.clip;
        switch (call.direction) {
        case FORWARD:
            function = "closs_clip_forward";
            status = closs_clip_forward(
                h, p, call.a, call.b, s, result_float(call, 0), result_float(call, 1),
                call.symmetric() ? result_float(call, 2) : nullptr, ws, bytes, stream);
            break;
        case FORWARD_BACKWARD:
            function = "closs_clip_forward_backward";
            status = closs_clip_forward_backward(h, p, call.a, call.b, s, result_float(call, 0),
                                                 grad_rows(call, g), grad_rows(call, g + 1),
                                                 result_float(call, g + 2), ws, bytes, stream);
            break;
        default:
            function = "closs_clip_backward";
            status = closs_clip_backward(h, p, call.a, call.b, s, row_stats, column_stats, up,
                                         grad_rows(call, 0), grad_rows(call, 1),
                                         result_float(call, 2), ws, bytes, stream);
            break;
        }
    } else {
        const closs_siglip_params *p = &call.siglip;
        switch (call.direction) {
        case FORWARD:
            function = "closs_siglip_forward";
            status = closs_siglip_forward(h, p, call.a, call.b, s, beta, result_float(call, 0), ws,
                                          bytes, stream);
            break;
        case FORWARD_BACKWARD:
            function = "closs_siglip_forward_backward";
            status = closs_siglip_forward_backward(
                h, p, call.a, call.b, s, beta, result_float(call, 0), grad_rows(call, g),
                grad_rows(call, g + 1), result_float(call, g + 2), result_float(call, g + 3), ws,
                bytes, stream);
            break;
        default:
            function = "closs_siglip_backward";
            status = closs_siglip_backward(h, p, call.a, call.b, s, beta, up, grad_rows(call, 0),
                                           grad_rows(call, 1), result_float(call, 2),
                                           result_float(call, 3), ws, bytes, stream);
            break;
        }
    }
    return status == CLOSS_STATUS_SUCCESS ? ffi::Error::Success() : closs_failure(function);
}

ffi::Error gpu_handler(closs_stream_t stream, ffi::ScratchAllocator scratch, int32_t device,
                       ffi::Dictionary attrs, ffi::RemainingArgs args, ffi::RemainingRets rets) {
    Call call;
    CLOSS_JAX_TRY(describe(attrs, args, rets, &call));
    closs_handle_t handle = nullptr;
    CLOSS_JAX_TRY(handle_for(device, &handle));
    size_t bytes = 0;
    closs_status_t status =
        call.kind == CLIP
            ? closs_clip_workspace_size(handle, &call.clip, call.a.rows, call.b.rows, call.a.cols,
                                        call.a.dtype, &bytes)
            : closs_siglip_workspace_size(handle, &call.siglip, call.a.rows, call.b.rows,
                                          call.a.cols, call.a.dtype, &bytes);
    if (status != CLOSS_STATUS_SUCCESS) return closs_failure("closs_*_workspace_size");
    void *workspace = nullptr;
    CLOSS_JAX_TRY(scratch_workspace(scratch, bytes, &workspace));
    return run_gpu(call, handle, workspace, bytes, stream);
}

} // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(closs_jax_two_tower_cpu, cpu_handler, closs_jax::cpu_binding());
XLA_FFI_DEFINE_HANDLER_SYMBOL(closs_jax_two_tower_cuda, gpu_handler, closs_jax::cuda_binding());
