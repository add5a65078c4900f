"""CLIP and SigLIP as PyTorch operators in the `closs` namespace (torch.library.custom_op), with
fake implementations and registered autograd, so that torch.compile(fullgraph=True) and
torch.export trace through them (as _ops.py does for the other losses):

  closs::clip_forward(a, b, logit_scale, options...)            -> (loss, row_stats, column_stats)
  closs::clip_forward_backward(a, b, logit_scale, options...)   -> (loss, grad_a, grad_b, grad_logit_scale)
  closs::clip_backward(a, b, logit_scale, row_stats, column_stats, upstream, options...)
                                                                -> (grad_a, grad_b, grad_logit_scale)
  closs::siglip_forward(a, b, logit_scale, logit_bias, options...) -> loss
  closs::siglip_forward_backward(a, b, logit_scale, logit_bias, options...)
                                                  -> (loss, grad_a, grad_b, grad_logit_scale, grad_logit_bias)
  closs::siglip_backward(a, b, logit_scale, logit_bias, upstream, options...)
                                                  -> (grad_a, grad_b, grad_logit_scale, grad_logit_bias)

a is N × D, b (N + K) × D (the partners, then K extra negatives), one floating dtype; logit_scale
(and logit_bias) 0-d tensors of the loss's dtype on the same device (functional.py converts). The
options are plain scalars (OPTIONS). The statistics are CLIP's log-sum-exp of each pair's negatives
(N each; column_stats empty unless symmetric), float64 on the CPU and float32 on CUDA. grad_b has
N + K rows, or N with grad_negatives = False (the extra negatives are then constants, and autograd
gives them a zero gradient). Autograd: the backward of *_forward is *_backward with the upstream
gradient; that of *_forward_backward scales the gradients it computed ("mean", "sum"), or with
"none" runs *_backward (recomputing CLIP's statistics). No second derivatives.
"""

import torch

from . import _capi, _two_tower
from ._ops import refuse_double_backward

OPTIONS = {
    "clip": "bool symmetric, bool in_batch_negatives, bool normalize, bool grad_negatives, str reduction, "
            "bool check_inputs, str path",
    "siglip": "bool normalize, bool grad_negatives, str reduction, bool check_inputs, str path",
}
# Each loss's differentiable inputs, after which its operators take their other tensors.
INPUTS = {"clip": ("a", "b", "logit_scale"), "siglip": ("a", "b", "logit_scale", "logit_bias")}
_GRAD_NAMES = {kind: ["grad_" + name for name in names] for kind, names in INPUTS.items()}


def option_names(kind):
    return [argument.split()[1] for argument in OPTIONS[kind].split(", ")]


def params(kind, options):
    """The whole-batch parameter struct of a call (the scale and bias are tensors: 0 here)."""
    named = dict(zip(option_names(kind), options))
    if kind == "clip":
        return _capi.clip_params(0.0, **named)
    return _capi.siglip_params(0.0, 0.0, **named)


def _schema(kind, extra, returns):
    tensors = ", ".join("Tensor " + name for name in list(INPUTS[kind]) + extra)
    result = "Tensor" if len(returns) == 1 else "(%s)" % ", ".join("Tensor " + name for name in returns)
    return "(%s, %s) -> %s" % (tensors, OPTIONS[kind], result)


def _fake_gradients(kind, p, a, b, scale):
    rows_a, rows_b = _two_tower.rows(p, a.shape[0], b.shape[0])
    grads = [a.new_empty((rows_a, a.shape[1])), a.new_empty((rows_b, a.shape[1]))]
    return grads + [scale.new_empty(()) for _ in INPUTS[kind][2:]]


def _fake_loss(p, a):
    length = _two_tower.loss_length(p, a.shape[0])
    return a.new_empty((length,) if p.reduction == _capi.REDUCTIONS["none"] else (),
                       dtype=_two_tower.loss_dtype(a))


def _define(kind):
    """Registers closs::KIND_forward, _forward_backward and _backward. Returns the three."""
    count = len(INPUTS[kind])
    clip = kind == "clip"
    stats_names = ["row_stats", "column_stats"] if clip else []

    def split(args, extra=0):
        """(a, b, scale, bias or None, the `extra` tensors after them, options)."""
        a, b, scale = args[:3]
        bias = args[3] if not clip else None
        return a, b, scale, bias, list(args[count:count + extra]), tuple(args[count + extra:])

    def forward(*args):
        a, b, scale, bias, _, options = split(args)
        loss, row_stats, column_stats = _two_tower.forward(kind, params(kind, options), a, b, scale, bias)
        return (loss, row_stats, column_stats) if clip else loss

    def forward_fake(*args):
        a, b, scale, _, _, options = split(args)
        p = params(kind, options)
        loss = _fake_loss(p, a)
        if not clip:
            return loss
        lengths = _two_tower.stats_lengths(kind, p, a.shape[0])
        dtype = _two_tower.stats_dtype(a.device)
        return (loss,) + tuple(a.new_empty(length, dtype=dtype) for length in lengths)

    def forward_backward(*args):
        a, b, scale, bias, _, options = split(args)
        loss, grads = _two_tower.forward_backward(kind, params(kind, options), a, b, scale, bias)
        return (loss, *grads)

    def forward_backward_fake(*args):
        a, b, scale, _, _, options = split(args)
        p = params(kind, options)
        return (_fake_loss(p, a), *_fake_gradients(kind, p, a, b, scale))

    backward_extra = stats_names + ["upstream"]

    def backward(*args):
        a, b, scale, bias, extra, options = split(args, len(backward_extra))
        stats = extra[:2] if clip else None
        return tuple(_two_tower.backward(kind, params(kind, options), a, b, scale, bias, stats, extra[-1]))

    def backward_fake(*args):
        a, b, scale, _, _, options = split(args, len(backward_extra))
        return tuple(_fake_gradients(kind, params(kind, options), a, b, scale))

    operators = {}
    for direction, implementation, fake, extra, returns in [
            ("forward", forward, forward_fake, [], ["loss"] + stats_names),
            ("forward_backward", forward_backward, forward_backward_fake, [], ["loss"] + _GRAD_NAMES[kind]),
            ("backward", backward, backward_fake, backward_extra, _GRAD_NAMES[kind])]:
        operator = torch.library.custom_op("closs::%s_%s" % (kind, direction), implementation, mutates_args=(),
                                           schema=_schema(kind, extra, returns))
        operator.register_fake(fake)
        operators[direction] = operator

    def forward_setup(ctx, inputs, output):
        a, b, scale, bias, _, options = split(inputs)
        stats = list(output[1:]) if clip else []
        ctx.save_for_backward(a, b, scale, bias, *stats)
        ctx.options, ctx.scale_saved_gradients, ctx.rows_b = options, False, b.shape[0]

    def forward_backward_setup(ctx, inputs, output):
        a, b, scale, bias, _, options = split(inputs)
        grads = output[1:]
        ctx.mark_non_differentiable(*grads)
        ctx.options, ctx.rows_b = options, b.shape[0]
        # Its gradients are those of the loss, or with "none" of Σ ℓ_i: a per-pair upstream
        # gradient needs closs's backward.
        ctx.scale_saved_gradients = options[option_names(kind).index("reduction")] != "none"
        if ctx.scale_saved_gradients:
            ctx.save_for_backward(*grads)
        else:
            ctx.save_for_backward(a, b, scale, bias)

    def gradient(ctx, grad_loss, *unused):
        refuse_double_backward(kind, grad_loss)
        if ctx.scale_saved_gradients:
            grads = [g * grad_loss.to(g.dtype) for g in ctx.saved_tensors]
        else:
            a, b, scale, bias, *stats = ctx.saved_tensors
            if clip and not stats:
                stats = [a.new_empty(0, dtype=_two_tower.stats_dtype(a.device))] * 2
            tensors = [a, b, scale] + ([] if clip else [bias]) + stats
            grads = list(operators["backward"](*tensors, grad_loss, *ctx.options))
        grad_b = grads[1]
        if grad_b.shape[0] < ctx.rows_b:  # grad_negatives = False: the negatives are constants
            grads[1] = torch.nn.functional.pad(grad_b, (0, 0, 0, ctx.rows_b - grad_b.shape[0]))
        wanted = [g if ctx.needs_input_grad[i] else None for i, g in enumerate(grads)]
        return tuple(wanted) + (None,) * len(ctx.options)

    operators["forward"].register_autograd(gradient, setup_context=forward_setup)
    operators["forward_backward"].register_autograd(gradient, setup_context=forward_backward_setup)
    return {direction: getattr(torch.ops.closs, "%s_%s" % (kind, direction)) for direction in operators}


OPERATORS = {kind: _define(kind) for kind in _two_tower.KINDS}
