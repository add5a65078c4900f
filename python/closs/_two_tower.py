"""Runs the two-tower losses, CLIP and SigLIP (docs/contract.md §6-7), on torch tensors: the CPU
reference for CPU tensors, the GPU entry points for CUDA tensors (on the current stream, workspace
from PyTorch's allocator, the logit scale and bias read on the device: no host synchronisation).

A call is (kind, params, a, b, scale, bias): kind "clip" or "siglip"; params the ctypes struct of
_capi, whose row range selects one rank's share (distributed.py; all zero: the whole batch); a
(N × D) and b ((N + K) × D) in one floating dtype with contiguous rows; scale and, for SigLIP,
bias: 0-d tensors on the inputs' device, float64 for float64 inputs and float32 otherwise (the CPU
reference reads their values into params, the GPU reads them where they are).

  forward           (loss, row_stats, column_stats): CLIP's statistics of the range's pairs
                    (float64 on the CPU, float32 on CUDA; column_stats empty unless symmetric);
                    SigLIP has none (both empty)
  forward_backward  (loss, grads) in one pass, upstream 1
  backward          grads, from the statistics of all N pairs (empty ones are recomputed) and the
                    upstream gradient (1 value, or N for "none")
grads = [grad_a, grad_b, grad_logit_scale] (+ grad_logit_bias for SigLIP): grad_a has the range's
rows (N for the whole batch), grad_b the range's partners then its negatives (N + K, or N with
grad_negatives = 0), each in its input's dtype; the scalar gradients 0-d, in the loss's dtype.
"""

import ctypes

import torch

from . import _capi, _dispatch

KINDS = ("clip", "siglip")
_NONE = _capi.REDUCTIONS["none"]


def loss_dtype(a):
    return torch.float64 if a.dtype == torch.float64 else torch.float32


def stats_dtype(device):
    """The CPU reference's statistics are doubles, the GPU's floats."""
    return torch.float64 if device.type == "cpu" else torch.float32


def rows(params, pairs, rows_b):
    """(rows of grad_a, rows of grad_b) of a call: the range's, or the whole batch's."""
    negatives = max(rows_b - pairs, 0)
    if params.row_count == 0:
        return pairs, pairs + (negatives if params.grad_negatives else 0)
    return params.row_count, params.row_count + params.negatives_count


def loss_length(params, pairs):
    if params.reduction != _NONE:
        return 1
    return pairs if params.row_count == 0 else params.row_count


def stats_lengths(kind, params, pairs):
    """(row_stats, column_stats) lengths of a forward: CLIP's, for the range's pairs."""
    if kind != "clip":
        return 0, 0
    count = pairs if params.row_count == 0 else params.row_count
    return count, count if params.symmetric else 0


def _loss_result(loss, params, a):
    loss = loss.to(loss_dtype(a))
    return loss if params.reduction == _NONE else loss.reshape(())


def _loss_buffer(params, a):
    """The loss as the call writes it: doubles from the CPU reference, floats from the GPU."""
    return torch.empty(loss_length(params, a.shape[0]), dtype=torch.float64 if a.device.type == "cpu"
                       else torch.float32, device=a.device)


def _grad_buffers(kind, params, a, b):
    """grad_a, grad_b (doubles on the CPU, the input's dtype on CUDA) and the scalar gradients."""
    cpu = a.device.type == "cpu"
    rows_a, rows_b = rows(params, a.shape[0], b.shape[0])
    grads = [torch.empty((count, a.shape[1]), dtype=torch.float64 if cpu else a.dtype, device=a.device)
             for count in (rows_a, rows_b)]
    return grads + [torch.empty((), dtype=torch.float64 if cpu else torch.float32, device=a.device)
                    for _ in range(1 if kind == "clip" else 2)]


def _finish_grads(grads, a, scale):
    """Gradients in the dtypes the operators return."""
    return [grads[0].to(a.dtype), grads[1].to(a.dtype)] + [g.to(scale.dtype) for g in grads[2:]]


# ---- the CPU reference --------------------------------------------------------------------------

def _with_scalars(kind, params, scale, bias):
    """A copy of params carrying the scale's (and bias's) value, which the reference reads there."""
    params = type(params).from_buffer_copy(params)
    params.logit_scale = float(scale)
    if kind == "siglip":
        params.logit_bias = float(bias)
    return params


def _reference_forward(kind, params, a, b, scale, bias):
    params = _with_scalars(kind, params, scale, bias)
    loss = _loss_buffer(params, a)
    row_length, column_length = stats_lengths(kind, params, a.shape[0])
    row_stats = torch.empty(row_length, dtype=torch.float64)
    column_stats = torch.empty(column_length, dtype=torch.float64)
    library = _capi.library()
    if kind == "clip":
        library.call("closs_ref_clip_forward", ctypes.byref(params), _dispatch._matrix(a), _dispatch._matrix(b),
                     _dispatch._pointer(loss), _dispatch._pointer(row_stats), _dispatch._pointer(column_stats))
    else:
        library.call("closs_ref_siglip", ctypes.byref(params), _dispatch._matrix(a), _dispatch._matrix(b), None,
                     _dispatch._pointer(loss), None, None, None, None)
    return loss, row_stats, column_stats


def _reference_gradients(kind, params, a, b, scale, bias, stats=None, upstream=None):
    """The gradients (and, without stats, the loss) by the reference: closs_ref_clip(_backward)
    or closs_ref_siglip."""
    params = _with_scalars(kind, params, scale, bias)
    loss, grads = _loss_buffer(params, a), _grad_buffers(kind, params, a, b)
    pointers = [_dispatch._pointer(g) for g in grads]
    matrices = [_dispatch._matrix(a), _dispatch._matrix(b)]
    if upstream is not None:  # kept in a name: the pointer must not outlive the tensor
        upstream = upstream.to(torch.float64).contiguous()
    library = _capi.library()
    if kind == "clip" and stats is not None:
        row_stats, column_stats = (s.to(torch.float64).contiguous() for s in stats)
        library.call("closs_ref_clip_backward", ctypes.byref(params), *matrices, _dispatch._pointer(row_stats),
                     _dispatch._pointer(column_stats), _dispatch._pointer(upstream), *pointers)
    else:
        library.call("closs_ref_" + kind, ctypes.byref(params), *matrices, _dispatch._pointer(upstream),
                     _dispatch._pointer(loss), *pointers)
    return loss, grads


# ---- the GPU entry points -----------------------------------------------------------------------

def _gpu_call(kind, params, direction, a, b, scalars, *outputs):
    """closs_KIND_DIRECTION(handle, params, a, b, scale[, bias], outputs..., workspace, bytes,
    stream), with workspace from PyTorch's caching allocator on the current stream."""
    device = a.device
    library = _capi.library()
    handle = _dispatch._handle(device)
    with torch.cuda.device(device):
        size = ctypes.c_size_t()
        library.call("closs_%s_workspace_size" % kind, handle, ctypes.byref(params), ctypes.c_int64(a.shape[0]),
                     ctypes.c_int64(b.shape[0]), ctypes.c_int64(a.shape[1]), _dispatch._FLOAT_TYPES[a.dtype],
                     ctypes.byref(size))
        workspace = torch.empty(size.value, dtype=torch.uint8, device=device)
        stream = ctypes.c_void_p(torch.cuda.current_stream(device).cuda_stream)
        args = [handle, ctypes.byref(params), _dispatch._matrix(a), _dispatch._matrix(b)]
        args += [_dispatch._pointer(s) for s in scalars] + list(outputs)
        args += [_dispatch._pointer(workspace), ctypes.c_size_t(size.value), stream]
        library.call("closs_%s_%s" % (kind, direction), *args)


def _scalars(kind, scale, bias):
    """The device floats the GPU reads: the scale, and SigLIP's bias."""
    scalars = [scale.to(torch.float32).contiguous()]
    if kind == "siglip":
        scalars.append(bias.to(torch.float32).contiguous())
    return scalars


def _gpu_forward(kind, params, a, b, scale, bias):
    loss = _loss_buffer(params, a)
    row_length, column_length = stats_lengths(kind, params, a.shape[0])
    row_stats = torch.empty(row_length, dtype=torch.float32, device=a.device)
    column_stats = torch.empty(column_length, dtype=torch.float32, device=a.device)
    stats = [_dispatch._pointer(row_stats), _dispatch._pointer(column_stats)] if kind == "clip" else []
    _gpu_call(kind, params, "forward", a, b, _scalars(kind, scale, bias), _dispatch._pointer(loss), *stats)
    return loss, row_stats, column_stats


def _gpu_grad_arguments(grads):
    return [_dispatch._grad_struct(g) for g in grads[:2]] + [_dispatch._pointer(g) for g in grads[2:]]


def _gpu_forward_backward(kind, params, a, b, scale, bias):
    loss, grads = _loss_buffer(params, a), _grad_buffers(kind, params, a, b)
    _gpu_call(kind, params, "forward_backward", a, b, _scalars(kind, scale, bias), _dispatch._pointer(loss),
              *_gpu_grad_arguments(grads))
    return loss, grads


def _gpu_backward(kind, params, a, b, scale, bias, stats, upstream):
    grads = _grad_buffers(kind, params, a, b)
    stats = [s.to(torch.float32).contiguous() for s in stats] if kind == "clip" else []
    upstream = upstream.to(torch.float32).contiguous()
    _gpu_call(kind, params, "backward", a, b, _scalars(kind, scale, bias), *[_dispatch._pointer(s) for s in stats],
              _dispatch._pointer(upstream), *_gpu_grad_arguments(grads))
    return grads


# ---- the three directions -----------------------------------------------------------------------

def _readable(a, b):
    return _dispatch._with_contiguous_rows(a), _dispatch._with_contiguous_rows(b)


def forward(kind, params, a, b, scale, bias=None):
    a, b = _readable(a, b)
    run = _reference_forward if a.device.type == "cpu" else _gpu_forward
    loss, row_stats, column_stats = run(kind, params, a, b, scale, bias)
    return _loss_result(loss, params, a), row_stats, column_stats


def forward_backward(kind, params, a, b, scale, bias=None):
    a, b = _readable(a, b)
    if a.device.type == "cpu":
        loss, grads = _reference_gradients(kind, params, a, b, scale, bias)
    else:
        loss, grads = _gpu_forward_backward(kind, params, a, b, scale, bias)
    return _loss_result(loss, params, a), _finish_grads(grads, a, scale)


def backward(kind, params, a, b, scale, bias, stats, upstream):
    """stats: CLIP's (row_stats, column_stats) of all N pairs, or empty ones to recompute."""
    a, b = _readable(a, b)
    if kind == "clip" and stats[0].numel() == 0:
        stats = forward(kind, params, a, b, scale, bias)[1:]
    if a.device.type == "cpu":
        grads = _reference_gradients(kind, params, a, b, scale, bias, stats if kind == "clip" else None,
                                     upstream)[1]
    else:
        grads = _gpu_backward(kind, params, a, b, scale, bias, stats, upstream)
    return _finish_grads(grads, a, scale)
