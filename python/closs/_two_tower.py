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
from ._arguments import CallArguments, contiguous_rows

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
    args = CallArguments(ctypes.byref(params)).matrix(a).matrix(b)
    if kind == "clip":
        args.output(loss).output(row_stats).output(column_stats).call("closs_ref_clip_forward")
    else:
        args.add(None).output(loss).add(None, None, None, None).call("closs_ref_siglip")
    return loss, row_stats, column_stats


def _reference_gradients(kind, params, a, b, scale, bias, stats=None, upstream=None):
    """The gradients (and, without stats, the loss) by the reference: closs_ref_clip(_backward)
    or closs_ref_siglip."""
    params = _with_scalars(kind, params, scale, bias)
    loss, grads = _loss_buffer(params, a), _grad_buffers(kind, params, a, b)
    args = CallArguments(ctypes.byref(params)).matrix(a).matrix(b)
    if kind == "clip" and stats is not None:
        name = "closs_ref_clip_backward"
        args.input(stats[0], torch.float64).input(stats[1], torch.float64).input(upstream, torch.float64)
    else:
        name = "closs_ref_" + kind
        args.input(upstream, torch.float64).output(loss)
    for g in grads:
        args.output(g)
    args.call(name)
    return loss, grads


# ---- the GPU entry points -----------------------------------------------------------------------

def _gpu_call(kind, params, direction, a, b, scale, bias, outputs):
    """closs_KIND_DIRECTION(handle, params, a, b, scale[, bias], outputs..., workspace, bytes,
    stream); the GPU reads the scale (and bias) as device floats."""
    reads = CallArguments().matrix(a).matrix(b).input(scale, torch.float32)
    if kind == "siglip":
        reads.input(bias, torch.float32)
    query = ("closs_%s_workspace_size" % kind, ctypes.c_int64(a.shape[0]), ctypes.c_int64(b.shape[0]),
             ctypes.c_int64(a.shape[1]), _dispatch.FLOAT_TYPES[a.dtype])
    _dispatch.gpu_call("closs_%s_%s" % (kind, direction), _dispatch._handle(a.device), params, reads, outputs,
                       query)


def _gpu_forward(kind, params, a, b, scale, bias):
    loss = _loss_buffer(params, a)
    row_length, column_length = stats_lengths(kind, params, a.shape[0])
    row_stats = torch.empty(row_length, dtype=torch.float32, device=a.device)
    column_stats = torch.empty(column_length, dtype=torch.float32, device=a.device)
    outputs = CallArguments().output(loss)
    if kind == "clip":
        outputs.output(row_stats).output(column_stats)
    _gpu_call(kind, params, "forward", a, b, scale, bias, outputs)
    return loss, row_stats, column_stats


def _add_gradients(args, grads):
    """grad_a and grad_b (closs_grad_t), then the scalar gradients."""
    for g in grads[:2]:
        args.gradient(g)
    for g in grads[2:]:
        args.output(g)
    return args


def _gpu_forward_backward(kind, params, a, b, scale, bias):
    loss, grads = _loss_buffer(params, a), _grad_buffers(kind, params, a, b)
    _gpu_call(kind, params, "forward_backward", a, b, scale, bias, _add_gradients(CallArguments().output(loss), grads))
    return loss, grads


def _gpu_backward(kind, params, a, b, scale, bias, stats, upstream):
    grads = _grad_buffers(kind, params, a, b)
    outputs = CallArguments()
    for s in stats if kind == "clip" else []:
        outputs.input(s, torch.float32)
    outputs.input(upstream, torch.float32)
    _gpu_call(kind, params, "backward", a, b, scale, bias, _add_gradients(outputs, grads))
    return grads


# ---- the three directions -----------------------------------------------------------------------

def _readable(a, b):
    return contiguous_rows(a), contiguous_rows(b)


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
