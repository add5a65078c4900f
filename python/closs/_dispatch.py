"""Runs one closs loss on torch tensors: the CPU reference for CPU tensors, the GPU entry points for
CUDA tensors (on the current stream, with workspace from PyTorch's allocator, never synchronising).

Every loss is described by a LossSpec; the C calls of all five follow one argument order
(include/closs.h), so one function per direction assembles them:
  reference  closs_ref_L(params, inputs..., [vector], upstream, loss, grads..., [valid])
  forward    closs_L_forward(handle, params, inputs..., [vector], loss, [stats], [valid], ws..., stream)
  fused      closs_L_forward_backward(handle, params, inputs..., [vector], loss, [valid], grads..., ws...)
  backward   closs_L_backward(handle, params, inputs..., [vector], [stats], upstream, grads..., ws...)
forward, forward_backward and backward below are the three operators' implementations (_ops.py):
they take the inputs in one floating dtype (prepare converts them) and compute every gradient.
"""

import ctypes
import threading
import weakref
from dataclasses import dataclass

import torch

from . import _capi
from ._arguments import FLOAT_TYPES, LABEL_TYPES, CallArguments, contiguous_rows


@dataclass(frozen=True)
class LossSpec:
    name: str
    inputs: tuple           # names of the floating inputs, each rows × dim
    vector: str = None      # "y" (pair labels in [0, 1]), "labels" (integer classes) or None
    contrastive: bool = False  # NT-Xent/SupCon: one loss per anchor over all rows, saved stats
    has_valid: bool = False    # SupCon reports the anchors that have a positive


SPECS = {
    "pair": LossSpec("pair", ("x1", "x2"), "y"),
    "triplet": LossSpec("triplet", ("anchor", "positive", "negative")),
    "cosine": LossSpec("cosine", ("x1", "x2"), "y"),
    "ntxent": LossSpec("ntxent", ("z",), contrastive=True),
    "supcon": LossSpec("supcon", ("z",), "labels", contrastive=True, has_valid=True),
}


def prepare(spec, inputs, vector):
    """Checks types, shapes and devices torch-side (sizes and values are closs's to check) and
    converts, with differentiable torch ops, the floating inputs to one compute dtype and the vector
    to a dtype closs reads. Returns (inputs, vector) for the operators (_ops)."""
    device = inputs[0].device
    for name, tensor in zip(spec.inputs, inputs):
        if not isinstance(tensor, torch.Tensor):
            raise TypeError("%s must be a torch.Tensor, got %s" % (name, type(tensor).__name__))
        if tensor.dim() != 2:
            raise ValueError("%s must be 2-D (rows, dim), got shape %s" % (name, tuple(tensor.shape)))
        if tensor.device != device:
            raise ValueError("%s is on %s but %s is on %s" % (name, tensor.device, spec.inputs[0], device))
        if tensor.dtype not in FLOAT_TYPES:
            raise TypeError("%s has dtype %s: closs takes float32, float16, bfloat16 (and float64 on the "
                            "CPU)" % (name, tensor.dtype))
    dtype = inputs[0].dtype
    for tensor in inputs[1:]:
        dtype = torch.promote_types(dtype, tensor.dtype)
    if device.type == "cpu":
        dtype = torch.float64 if dtype == torch.float64 else torch.float32  # what the reference takes
    elif device.type == "cuda":
        if dtype == torch.float64:
            raise TypeError("closs on CUDA takes float32, float16 or bfloat16, not float64 (use the CPU "
                            "for float64)")
    else:
        raise ValueError("closs runs on CPU and CUDA tensors, not on %s" % device)
    prepared = [t.to(dtype) for t in inputs]

    if spec.vector is not None:
        if not isinstance(vector, torch.Tensor):
            raise TypeError("%s must be a torch.Tensor" % spec.vector)
        if vector.dim() != 1:
            raise ValueError("%s must be 1-D, got shape %s" % (spec.vector, tuple(vector.shape)))
        if vector.device != device:
            raise ValueError("%s is on %s but the inputs are on %s" % (spec.vector, vector.device, device))
        if spec.vector == "y":
            # The reference reads f32/f64, the GPU f32/f16/bf16: f64 on the CPU, f32 on the GPU.
            vector = vector.to(torch.float64 if device.type == "cpu" else torch.float32)
        else:
            if vector.dtype.is_floating_point or vector.dtype.is_complex:
                raise TypeError("labels must be an integer tensor, got %s" % vector.dtype)
            if vector.dtype not in LABEL_TYPES:
                vector = vector.to(torch.int64)
    return prepared, vector


def add_vector(args, spec, vector):
    """The loss's y or labels, if it has one, as the next argument."""
    if spec.vector is not None:
        args.vector(vector, FLOAT_TYPES if spec.vector == "y" else LABEL_TYPES)
    return args


def _loss_result(loss, params, inputs):
    """The loss as the operators return it: 0-d for mean and sum, float64 for float64 inputs and
    float32 otherwise."""
    loss = loss.to(torch.float64 if inputs[0].dtype == torch.float64 else torch.float32)
    return loss.reshape(()) if params.reduction != _capi.REDUCTIONS["none"] else loss


def _as_closs_reads(inputs, vector):
    """Rows contiguous (any leading dimension) and a contiguous vector: layouts the C API takes."""
    return [contiguous_rows(t) for t in inputs], None if vector is None else vector.contiguous()


# ---- the three directions, on the inputs' device ------------------------------------------------

def forward(spec, params, inputs, vector):
    """The loss alone: (loss, stats, valid). stats: on CUDA, NT-Xent's and SupCon's per-anchor
    statistics (M floats) for a later backward; empty otherwise (the CPU reference's backward
    recomputes them). valid: SupCon's anchors with a positive (0-d int64; 0 for the others)."""
    inputs, vector = _as_closs_reads(inputs, vector)
    if inputs[0].device.type == "cpu":
        loss, _, valid = reference(spec, params, inputs, vector, [False] * len(inputs))
        stats = torch.empty(0, dtype=torch.float32)
    else:
        loss, valid, stats = _gpu_forward(spec, params, inputs, vector)
    return _loss_result(loss, params, inputs), stats, valid


def forward_backward(spec, params, inputs, vector):
    """The loss and, in one pass, the gradient of every input for an upstream gradient of 1:
    (loss, grads, valid); each gradient dense, in its input's dtype."""
    inputs, vector = _as_closs_reads(inputs, vector)
    if inputs[0].device.type == "cpu":
        loss, grads, valid = reference(spec, params, inputs, vector, [True] * len(inputs))
        grads = [g.to(t.dtype) for g, t in zip(grads, inputs)]
    else:
        loss, grads, valid = _gpu_forward_backward(spec, params, inputs, vector)
    return _loss_result(loss, params, inputs), grads, valid


def backward(spec, params, inputs, vector, stats, upstream):
    """The gradient of every input for an upstream gradient (1 value, or one per row for "none").
    stats: forward's; empty ones are recomputed (a CUDA forward first; the CPU reference always)."""
    inputs, vector = _as_closs_reads(inputs, vector)
    if inputs[0].device.type == "cpu":
        _, grads, _ = reference(spec, params, inputs, vector, [True] * len(inputs), upstream)
        return [g.to(t.dtype) for g, t in zip(grads, inputs)]
    if spec.contrastive and stats.numel() != inputs[0].shape[0]:
        stats = _gpu_forward(spec, params, inputs, vector)[2]
    return _gpu_backward(spec, params, inputs, vector, stats, upstream)


def loss_length(params, rows):
    return rows if params.reduction == _capi.REDUCTIONS["none"] else 1


def stats_length(spec, first_input):
    """forward's statistics: one per anchor for NT-Xent and SupCon on CUDA, none otherwise."""
    return first_input.shape[0] if spec.contrastive and first_input.device.type == "cuda" else 0


# ---- the CPU reference --------------------------------------------------------------------------

def reference(spec, params, inputs, vector, want_grads, upstream=None):
    """closs_ref_*: the loss (float64), a float64 gradient per input where wanted (else None) and,
    for SupCon, the valid count. upstream: None for 1, else a tensor of 1 or rows values."""
    rows = inputs[0].shape[0]
    loss = torch.empty(loss_length(params, rows), dtype=torch.float64)
    grads = [torch.empty(t.shape, dtype=torch.float64) if want else None for t, want in zip(inputs, want_grads)]
    valid = torch.zeros((), dtype=torch.int64)
    args = CallArguments(ctypes.byref(params))
    for t in inputs:
        args.matrix(t)
    add_vector(args, spec, vector).input(upstream, torch.float64).output(loss)
    for g in grads:
        args.output(g)
    if spec.has_valid:
        args.output(valid)
    args.call("closs_ref_" + spec.name)
    return loss, grads, valid


# ---- the GPU entry points -----------------------------------------------------------------------

class Handle:
    """A closs handle bound to one device (closs.h: one thread at a time per handle), owned by the
    thread that made it and destroyed once that thread has ended: a thread's threading.local
    table goes with it, and with the table this object, whose finalizer calls closs_destroy
    (nn.DataParallel starts new threads every forward; each would otherwise leak a handle's
    device memory and cuBLAS context). Not at interpreter exit, when CUDA may be gone."""

    def __init__(self, device):
        self.device = device
        self.pointer = ctypes.c_void_p()
        library = _capi.library()
        with torch.cuda.device(device):  # closs_create binds the current device
            library.call("closs_create", ctypes.byref(self.pointer))
        self._finalizer = weakref.finalize(self, library.lib.closs_destroy, ctypes.c_void_p(self.pointer.value))
        self._finalizer.atexit = False


_handles = threading.local()  # one closs handle per thread and device, as closs.h asks


def _handle(device):
    table = getattr(_handles, "by_device", None)
    if table is None:
        table = _handles.by_device = {}
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index not in table:
        if torch.cuda.is_current_stream_capturing():
            raise RuntimeError("closs: this thread's first closs call on cuda:%d is inside a CUDA graph capture, "
                               "which cannot create its closs handle (a cudaMalloc); run one step before "
                               "capturing (as torch.cuda.graphs asks anyway)" % index)
        table[index] = Handle(index)
    return table[index]


def gpu_call(name, handle, params, inputs, outputs, workspace_query):
    """One GPU entry point, closs_NAME(handle, params, inputs..., outputs..., workspace, bytes,
    stream): `inputs` and `outputs` are CallArguments in the C order, workspace_query the arguments
    of closs_*_workspace_size between the params and the size. The workspace comes from PyTorch's
    caching allocator on the current stream, so it is reused, stream-ordered, once this call's
    kernels are enqueued."""
    if params.check_inputs and torch.cuda.is_current_stream_capturing():
        raise ValueError("check_inputs=True reads the check's result on the host (a stream synchronisation), "
                         "which a CUDA graph capture cannot contain: pass check_inputs=False inside a capture")
    lib = _capi.library()
    device = torch.device("cuda", handle.device)
    with torch.cuda.device(device):
        size = ctypes.c_size_t()
        lib.call(workspace_query[0], handle.pointer, ctypes.byref(params), *workspace_query[1:],
                 ctypes.byref(size))
        workspace = torch.empty(size.value, dtype=torch.uint8, device=device)
        stream = ctypes.c_void_p(torch.cuda.current_stream(device).cuda_stream)
        args = CallArguments(handle.pointer, ctypes.byref(params)).extend(inputs).extend(outputs)
        args.output(workspace).add(ctypes.c_size_t(size.value), stream).call(name)


def _gpu_call(spec, params, direction, inputs, vector, outputs):
    """closs_LOSS_DIRECTION on inputs (and the vector) with `outputs`, a CallArguments holding the
    direction's arguments between the inputs and the workspace, in the C order."""
    rows, dim = inputs[0].shape
    reads = CallArguments()
    for t in inputs:
        reads.matrix(t)
    add_vector(reads, spec, vector)
    query = ("closs_%s_workspace_size" % spec.name, ctypes.c_int64(rows), ctypes.c_int64(dim),
             FLOAT_TYPES[inputs[0].dtype])
    gpu_call("closs_%s_%s" % (spec.name, direction), _handle(inputs[0].device), params, reads, outputs, query)


def _gradient_buffers(inputs):
    """A dense gradient of each input's shape and dtype."""
    return [torch.empty_like(t, memory_format=torch.contiguous_format) for t in inputs]


def _gpu_outputs(spec, params, inputs):
    """The loss (float32, on the device) and SupCon's valid count."""
    loss = torch.empty(loss_length(params, inputs[0].shape[0]), dtype=torch.float32, device=inputs[0].device)
    valid = torch.zeros((), dtype=torch.int64, device=inputs[0].device)
    return loss, valid


def _gpu_forward(spec, params, inputs, vector):
    """closs_*_forward, keeping NT-Xent's and SupCon's per-anchor statistics for the backward."""
    loss, valid = _gpu_outputs(spec, params, inputs)
    stats = torch.empty(stats_length(spec, inputs[0]), dtype=torch.float32, device=inputs[0].device)
    outputs = CallArguments().output(loss)
    if spec.contrastive:
        outputs.output(stats)
    if spec.has_valid:
        outputs.output(valid)
    _gpu_call(spec, params, "forward", inputs, vector, outputs)
    return loss, valid, stats


def _gpu_forward_backward(spec, params, inputs, vector):
    """closs_*_forward_backward: loss and every gradient in one pass (upstream 1)."""
    loss, valid = _gpu_outputs(spec, params, inputs)
    grads = _gradient_buffers(inputs)
    outputs = CallArguments().output(loss)
    if spec.has_valid:
        outputs.output(valid)
    for g in grads:
        outputs.gradient(g)
    _gpu_call(spec, params, "forward_backward", inputs, vector, outputs)
    return loss, grads, valid


def _gpu_backward(spec, params, inputs, vector, stats, upstream):
    """closs_*_backward with the upstream gradient on the device (float32, 1 or rows values)."""
    grads = _gradient_buffers(inputs)
    outputs = CallArguments()
    if spec.contrastive:
        outputs.input(stats, torch.float32)
    outputs.input(upstream, torch.float32)
    for g in grads:
        outputs.gradient(g)
    _gpu_call(spec, params, "backward", inputs, vector, outputs)
    return grads
