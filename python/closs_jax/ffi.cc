// The XLA FFI handlers of closs_jax: one for host buffers (the CPU reference, closs_ref_*) and one
// for CUDA buffers (the GPU entry points on XLA's stream, with workspace from XLA's scratch
// allocator). closs_jax/__init__.py registers both as the custom call target "closs" and calls them
// through jax.ffi.ffi_call.
//
// Every call names the loss and the direction in its attributes ("loss", "direction", int32) and
// carries the loss's parameters as attributes named as the fields of its closs_*_params struct
// (float64 or int32). Its buffers follow closs.h's argument order:
//   forward           args: inputs..., [vector]                   rets: loss, [stats], [valid]
//   forward_backward  args: inputs..., [vector]                   rets: loss, [valid], grads...
//   backward          args: inputs..., [vector], [stats], upstream  rets: grads...
// vector is y (pair, cosine) or labels (SupCon); stats (NT-Xent, SupCon: one float per anchor) are
// written by the GPU forward for the GPU backward; the CPU reference neither writes nor reads them
// (its backward recomputes what it needs). valid is SupCon's int64 count of anchors with a
// positive. The loss is float64 for float64 inputs and float32 otherwise; gradients have the
// inputs' dtype. Inputs are dense row-major (rows × dim): XLA's default layout.

#include <closs.h>

#include <cstdint>
#include <string>
#include <vector>

#include "ffi_common.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using namespace closs_jax; // NOLINT(google-build-using-namespace): the shared helpers

enum Loss { PAIR, TRIPLET, COSINE, NTXENT, SUPCON };
enum Direction { FORWARD, FORWARD_BACKWARD, BACKWARD };

// How many floating inputs each loss takes, and whether it has a vector, stats and valid.
struct Shape {
    int inputs;
    bool vector, contrastive, valid;
};
const Shape kShapes[] = {{2, true, false, false},
                         {3, false, false, false},
                         {2, true, false, false},
                         {1, false, true, false},
                         {1, true, true, true}};

// The parameters of every loss, read from the call's attributes.
struct Params {
    closs_pair_params pair = CLOSS_PAIR_PARAMS_INIT;
    closs_triplet_params triplet = CLOSS_TRIPLET_PARAMS_INIT;
    closs_cosine_params cosine = CLOSS_COSINE_PARAMS_INIT;
    closs_ntxent_params ntxent = CLOSS_NTXENT_PARAMS_INIT;
    closs_supcon_params supcon = CLOSS_SUPCON_PARAMS_INIT;
};

ffi::Error read_params(const ffi::Dictionary &attrs, int loss, Params *p) {
    switch (loss) {
    case PAIR:
        CLOSS_JAX_TRY(read(attrs, "margin", &p->pair.margin));
        CLOSS_JAX_TRY(read_enum(attrs, "distance", &p->pair.distance));
        CLOSS_JAX_TRY(read_enum(attrs, "reduction", &p->pair.reduction));
        return read(attrs, "check_inputs", &p->pair.check_inputs);
    case TRIPLET:
        CLOSS_JAX_TRY(read(attrs, "margin", &p->triplet.margin));
        CLOSS_JAX_TRY(read_enum(attrs, "distance", &p->triplet.distance));
        CLOSS_JAX_TRY(read(attrs, "swap", &p->triplet.swap));
        CLOSS_JAX_TRY(read_enum(attrs, "reduction", &p->triplet.reduction));
        return read(attrs, "check_inputs", &p->triplet.check_inputs);
    case COSINE:
        CLOSS_JAX_TRY(read(attrs, "margin", &p->cosine.margin));
        CLOSS_JAX_TRY(read(attrs, "squared", &p->cosine.squared));
        CLOSS_JAX_TRY(read_enum(attrs, "reduction", &p->cosine.reduction));
        return read(attrs, "check_inputs", &p->cosine.check_inputs);
    case NTXENT:
        CLOSS_JAX_TRY(read(attrs, "temperature", &p->ntxent.temperature));
        CLOSS_JAX_TRY(read(attrs, "normalize", &p->ntxent.normalize));
        CLOSS_JAX_TRY(read_enum(attrs, "reduction", &p->ntxent.reduction));
        CLOSS_JAX_TRY(read(attrs, "check_inputs", &p->ntxent.check_inputs));
        return read_enum(attrs, "path", &p->ntxent.path);
    case SUPCON:
        CLOSS_JAX_TRY(read(attrs, "temperature", &p->supcon.temperature));
        CLOSS_JAX_TRY(read(attrs, "base_temperature", &p->supcon.base_temperature));
        CLOSS_JAX_TRY(read(attrs, "normalize", &p->supcon.normalize));
        CLOSS_JAX_TRY(read_enum(attrs, "reduction", &p->supcon.reduction));
        CLOSS_JAX_TRY(read(attrs, "check_inputs", &p->supcon.check_inputs));
        return read_enum(attrs, "path", &p->supcon.path);
    default: return ffi::Error::InvalidArgument("closs_jax: unknown loss");
    }
}

// One call's buffers, sorted by role (see the top of the file).
struct Call {
    int loss = 0, direction = 0;
    Shape shape{};
    Params params;
    std::vector<closs_matrix_t> inputs;
    closs_vector_t vector{};
    ffi::AnyBuffer *stats_in = nullptr, *upstream = nullptr;
    void *loss_out = nullptr, *stats_out = nullptr, *valid_out = nullptr;
    ffi::DataType loss_type = ffi::DataType::F32;
    std::vector<void *> grads;
    std::vector<ffi::AnyBuffer> args; // keeps the argument views alive
};

ffi::Error describe(const ffi::Dictionary &attrs, ffi::RemainingArgs args, ffi::RemainingRets rets,
                    Call *call) {
    CLOSS_JAX_TRY(read(attrs, "loss", &call->loss));
    CLOSS_JAX_TRY(read(attrs, "direction", &call->direction));
    if (call->loss < PAIR || call->loss > SUPCON || call->direction < FORWARD ||
        call->direction > BACKWARD) {
        return ffi::Error::InvalidArgument("closs_jax: unknown loss or direction");
    }
    call->shape = kShapes[call->loss];
    CLOSS_JAX_TRY(read_params(attrs, call->loss, &call->params));
    const Shape &s = call->shape;
    size_t wanted_args =
        s.inputs + s.vector + (call->direction == BACKWARD ? (s.contrastive ? 2 : 1) : 0);
    if (args.size() != wanted_args) {
        return ffi::Error::InvalidArgument("closs_jax: wrong number of arguments");
    }
    for (size_t i = 0; i < args.size(); ++i) {
        ffi::ErrorOr<ffi::AnyBuffer> buffer = args.get<ffi::AnyBuffer>(i);
        if (buffer.has_error()) return buffer.error();
        call->args.push_back(*buffer);
    }
    for (int i = 0; i < s.inputs; ++i) {
        const ffi::AnyBuffer &b = call->args[i];
        closs_dtype_t dtype;
        if (b.dimensions().size() != 2 || !to_closs_dtype(b.element_type(), &dtype)) {
            return ffi::Error::InvalidArgument("closs_jax: inputs must be 2-D floating arrays");
        }
        int64_t rows = b.dimensions()[0], cols = b.dimensions()[1];
        call->inputs.push_back(closs_matrix_ld(b.untyped_data(), dtype, rows, cols, cols));
    }
    size_t next = s.inputs;
    if (s.vector) {
        const ffi::AnyBuffer &b = call->args[next++];
        closs_dtype_t dtype;
        if (b.dimensions().size() != 1 || !to_closs_dtype(b.element_type(), &dtype)) {
            return ffi::Error::InvalidArgument("closs_jax: the vector must be a 1-D array");
        }
        call->vector = closs_vector(b.untyped_data(), dtype, b.dimensions()[0]);
    }
    if (call->direction == BACKWARD) {
        if (s.contrastive) call->stats_in = &call->args[next++];
        call->upstream = &call->args[next];
    }

    std::vector<void *> outputs;
    std::vector<ffi::DataType> types;
    for (size_t i = 0; i < rets.size(); ++i) {
        ffi::ErrorOr<ffi::Result<ffi::AnyBuffer>> buffer = rets.get<ffi::AnyBuffer>(i);
        if (buffer.has_error()) return buffer.error();
        outputs.push_back((*buffer)->untyped_data());
        types.push_back((*buffer)->element_type());
    }
    size_t wanted_rets = call->direction == FORWARD            ? 1 + s.contrastive + s.valid
                         : call->direction == FORWARD_BACKWARD ? 1 + s.valid + s.inputs
                                                               : s.inputs;
    if (outputs.size() != wanted_rets) {
        return ffi::Error::InvalidArgument("closs_jax: wrong number of results");
    }
    size_t at = 0;
    if (call->direction != BACKWARD) {
        call->loss_type = types[0];
        call->loss_out = outputs[at++];
    }
    if (call->direction == FORWARD && s.contrastive) call->stats_out = outputs[at++];
    if (call->direction != BACKWARD && s.valid) call->valid_out = outputs[at++];
    call->grads.assign(outputs.begin() + at, outputs.end());
    return ffi::Error::Success();
}

// ---- the CPU reference --------------------------------------------------------------------------

// closs_ref_* writes double losses and gradients; float32 results go through double copies.
ffi::Error run_reference(Call &call) {
    const Shape &s = call.shape;
    int64_t rows = call.inputs[0].rows, cols = call.inputs[0].cols;
    const Params &p = call.params;
    closs_reduction_t reduction = call.loss == PAIR      ? p.pair.reduction
                                  : call.loss == TRIPLET ? p.triplet.reduction
                                  : call.loss == COSINE  ? p.cosine.reduction
                                  : call.loss == NTXENT  ? p.ntxent.reduction
                                                         : p.supcon.reduction;
    bool reduced = reduction != CLOSS_REDUCTION_NONE;
    bool f64 = call.inputs[0].dtype == CLOSS_F64;

    std::vector<double> loss(reduced ? 1 : static_cast<size_t>(rows));
    std::vector<double> upstream;
    if (call.upstream != nullptr) {
        size_t n = call.upstream->element_count();
        upstream.resize(n);
        for (size_t i = 0; i < n; ++i) {
            upstream[i] = call.upstream->element_type() == ffi::DataType::F64
                              ? static_cast<const double *>(call.upstream->untyped_data())[i]
                              : static_cast<const float *>(call.upstream->untyped_data())[i];
        }
        if (n != loss.size()) {
            return ffi::Error::InvalidArgument("closs_jax: upstream has the wrong length");
        }
    }
    size_t count = static_cast<size_t>(rows * cols);
    std::vector<std::vector<double>> grads(call.grads.size());
    std::vector<double *> grad_ptr(s.inputs, nullptr);
    for (size_t i = 0; i < call.grads.size(); ++i) {
        if (f64) {
            grad_ptr[i] = static_cast<double *>(call.grads[i]);
        } else {
            grads[i].resize(count);
            grad_ptr[i] = grads[i].data();
        }
    }
    const double *up = call.upstream != nullptr ? upstream.data() : nullptr;
    int64_t valid = 0;
    closs_status_t status;
    const char *function;
    const closs_matrix_t *in = call.inputs.data();
    switch (call.loss) {
    case PAIR:
        function = "closs_ref_pair";
        status = closs_ref_pair(&call.params.pair, in[0], in[1], call.vector, up, loss.data(),
                                grad_ptr[0], grad_ptr[1]);
        break;
    case TRIPLET:
        function = "closs_ref_triplet";
        status = closs_ref_triplet(&call.params.triplet, in[0], in[1], in[2], up, loss.data(),
                                   grad_ptr[0], grad_ptr[1], grad_ptr[2]);
        break;
    case COSINE:
        function = "closs_ref_cosine";
        status = closs_ref_cosine(&call.params.cosine, in[0], in[1], call.vector, up, loss.data(),
                                  grad_ptr[0], grad_ptr[1]);
        break;
    case NTXENT:
        function = "closs_ref_ntxent";
        status = closs_ref_ntxent(&call.params.ntxent, in[0], up, loss.data(), grad_ptr[0]);
        break;
    default:
        function = "closs_ref_supcon";
        status = closs_ref_supcon(&call.params.supcon, in[0], call.vector, up, loss.data(),
                                  grad_ptr[0], &valid);
        break;
    }
    if (status != CLOSS_STATUS_SUCCESS) return closs_failure(function);

    if (call.loss_out != nullptr) {
        for (size_t i = 0; i < loss.size(); ++i) {
            if (call.loss_type == ffi::DataType::F64) {
                static_cast<double *>(call.loss_out)[i] = loss[i];
            } else {
                static_cast<float *>(call.loss_out)[i] = static_cast<float>(loss[i]);
            }
        }
    }
    for (size_t i = 0; i < call.grads.size() && !f64; ++i) {
        for (size_t k = 0; k < count; ++k) {
            static_cast<float *>(call.grads[i])[k] = static_cast<float>(grads[i][k]);
        }
    }
    if (call.stats_out != nullptr) { // not used by the reference's backward
        for (int64_t i = 0; i < rows; ++i) static_cast<float *>(call.stats_out)[i] = 0.0f;
    }
    if (call.valid_out != nullptr) *static_cast<int64_t *>(call.valid_out) = valid;
    return ffi::Error::Success();
}

ffi::Error cpu_handler(ffi::Dictionary attrs, ffi::RemainingArgs args, ffi::RemainingRets rets) {
    Call call;
    CLOSS_JAX_TRY(describe(attrs, args, rets, &call));
    for (const closs_matrix_t &m : call.inputs) {
        if (m.dtype != CLOSS_F32 && m.dtype != CLOSS_F64) {
            return ffi::Error::InvalidArgument(
                "closs_jax: on the CPU closs takes float32 or float64");
        }
    }
    return run_reference(call);
}

// ---- the GPU entry points -----------------------------------------------------------------------

closs_grad_t grad_at(const Call &call, size_t i) {
    return closs_grad_t{call.grads[i], call.inputs[0].cols};
}

ffi::Error run_gpu(Call &call, closs_handle_t h, void *ws, size_t bytes, closs_stream_t stream) {
    const closs_matrix_t *in = call.inputs.data();
    const Params &p = call.params;
    auto *loss = static_cast<float *>(call.loss_out);
    auto *stats = static_cast<float *>(call.stats_out);
    auto *valid = static_cast<int64_t *>(call.valid_out);
    const float *stats_in = call.stats_in != nullptr
                                ? static_cast<const float *>(call.stats_in->untyped_data())
                                : nullptr;
    const float *up = call.upstream != nullptr
                          ? static_cast<const float *>(call.upstream->untyped_data())
                          : nullptr;
    const closs_vector_t &v = call.vector;
    closs_status_t status = CLOSS_STATUS_SUCCESS;
    static const char *const names[5][3] = {
        {"closs_pair_forward", "closs_pair_forward_backward", "closs_pair_backward"},
        {"closs_triplet_forward", "closs_triplet_forward_backward", "closs_triplet_backward"},
        {"closs_cosine_forward", "closs_cosine_forward_backward", "closs_cosine_backward"},
        {"closs_ntxent_forward", "closs_ntxent_forward_backward", "closs_ntxent_backward"},
        {"closs_supcon_forward", "closs_supcon_forward_backward", "closs_supcon_backward"}};
    switch (call.loss * 3 + call.direction) {
    case PAIR * 3 + FORWARD:
        status = closs_pair_forward(h, &p.pair, in[0], in[1], v, loss, ws, bytes, stream);
        break;
    case PAIR * 3 + FORWARD_BACKWARD:
        status = closs_pair_forward_backward(h, &p.pair, in[0], in[1], v, loss, grad_at(call, 0),
                                             grad_at(call, 1), ws, bytes, stream);
        break;
    case PAIR * 3 + BACKWARD:
        status = closs_pair_backward(h, &p.pair, in[0], in[1], v, up, grad_at(call, 0),
                                     grad_at(call, 1), ws, bytes, stream);
        break;
    case TRIPLET * 3 + FORWARD:
        status = closs_triplet_forward(h, &p.triplet, in[0], in[1], in[2], loss, ws, bytes, stream);
        break;
    case TRIPLET * 3 + FORWARD_BACKWARD:
        status = closs_triplet_forward_backward(h, &p.triplet, in[0], in[1], in[2], loss,
                                                grad_at(call, 0), grad_at(call, 1),
                                                grad_at(call, 2), ws, bytes, stream);
        break;
    case TRIPLET * 3 + BACKWARD:
        status = closs_triplet_backward(h, &p.triplet, in[0], in[1], in[2], up, grad_at(call, 0),
                                        grad_at(call, 1), grad_at(call, 2), ws, bytes, stream);
        break;
    case COSINE * 3 + FORWARD:
        status = closs_cosine_forward(h, &p.cosine, in[0], in[1], v, loss, ws, bytes, stream);
        break;
    case COSINE * 3 + FORWARD_BACKWARD:
        status =
            closs_cosine_forward_backward(h, &p.cosine, in[0], in[1], v, loss, grad_at(call, 0),
                                          grad_at(call, 1), ws, bytes, stream);
        break;
    case COSINE * 3 + BACKWARD:
        status = closs_cosine_backward(h, &p.cosine, in[0], in[1], v, up, grad_at(call, 0),
                                       grad_at(call, 1), ws, bytes, stream);
        break;
    case NTXENT * 3 + FORWARD:
        status = closs_ntxent_forward(h, &p.ntxent, in[0], loss, stats, ws, bytes, stream);
        break;
    case NTXENT * 3 + FORWARD_BACKWARD:
        status = closs_ntxent_forward_backward(h, &p.ntxent, in[0], loss, grad_at(call, 0), ws,
                                               bytes, stream);
        break;
    case NTXENT * 3 + BACKWARD:
        status = closs_ntxent_backward(h, &p.ntxent, in[0], stats_in, up, grad_at(call, 0), ws,
                                       bytes, stream);
        break;
    case SUPCON * 3 + FORWARD:
        status =
            closs_supcon_forward(h, &p.supcon, in[0], v, loss, stats, valid, ws, bytes, stream);
        break;
    case SUPCON * 3 + FORWARD_BACKWARD:
        status = closs_supcon_forward_backward(h, &p.supcon, in[0], v, loss, valid,
                                               grad_at(call, 0), ws, bytes, stream);
        break;
    default:
        status = closs_supcon_backward(h, &p.supcon, in[0], v, stats_in, up, grad_at(call, 0), ws,
                                       bytes, stream);
        break;
    }
    return status == CLOSS_STATUS_SUCCESS ? ffi::Error::Success()
                                          : closs_failure(names[call.loss][call.direction]);
}

ffi::Error workspace_size(const Call &call, closs_handle_t h, size_t *bytes) {
    const closs_matrix_t &z = call.inputs[0];
    const Params &p = call.params;
    closs_status_t status;
    switch (call.loss) {
    case PAIR:
        status = closs_pair_workspace_size(h, &p.pair, z.rows, z.cols, z.dtype, bytes);
        break;
    case TRIPLET:
        status = closs_triplet_workspace_size(h, &p.triplet, z.rows, z.cols, z.dtype, bytes);
        break;
    case COSINE:
        status = closs_cosine_workspace_size(h, &p.cosine, z.rows, z.cols, z.dtype, bytes);
        break;
    case NTXENT:
        status = closs_ntxent_workspace_size(h, &p.ntxent, z.rows, z.cols, z.dtype, bytes);
        break;
    default:
        status = closs_supcon_workspace_size(h, &p.supcon, z.rows, z.cols, z.dtype, bytes);
        break;
    }
    return status == CLOSS_STATUS_SUCCESS ? ffi::Error::Success()
                                          : closs_failure("closs_*_workspace_size");
}

ffi::Error gpu_handler(closs_stream_t stream, ffi::ScratchAllocator scratch, int32_t device,
                       ffi::Dictionary attrs, ffi::RemainingArgs args, ffi::RemainingRets rets) {
    Call call;
    CLOSS_JAX_TRY(describe(attrs, args, rets, &call));
    closs_handle_t handle = nullptr;
    CLOSS_JAX_TRY(handle_for(device, &handle));
    size_t bytes = 0;
    CLOSS_JAX_TRY(workspace_size(call, handle, &bytes));
    void *workspace = nullptr;
    CLOSS_JAX_TRY(scratch_workspace(scratch, bytes, &workspace));
    return run_gpu(call, handle, workspace, bytes, stream);
}

} // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(closs_jax_cpu, cpu_handler, closs_jax::cpu_binding());
XLA_FFI_DEFINE_HANDLER_SYMBOL(closs_jax_cuda, gpu_handler, closs_jax::cuda_binding());
