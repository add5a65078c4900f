"""closs's losses as PyTorch operators in the `closs` namespace (torch.library.custom_op), so that
torch.compile(fullgraph=True) and torch.export trace through them instead of breaking the graph.

Three operators per loss, as the C API has them (include/closs.h), for LOSS in pair, triplet,
cosine, ntxent, supcon:
  closs::LOSS_forward(inputs..., [vector], options...)          -> loss, [stats], [valid]
  closs::LOSS_forward_backward(inputs..., [vector], options...) -> loss, [valid], grads...
  closs::LOSS_backward(inputs..., [vector], [stats], upstream, options...) -> grads...
`vector` is y (pair, cosine) or labels (SupCon); stats (NT-Xent, SupCon) are the forward's
per-anchor statistics on CUDA and empty on the CPU; valid is SupCon's count of anchors with a
positive. The options are plain scalars in the order of the loss's _capi.*_params function (see
OPTIONS). Losses are 0-d for "mean" and "sum", one per row for "none"; float64 for float64 inputs,
float32 otherwise. Gradients are dense, in each input's dtype.

The operators take the inputs as closs reads them (one floating dtype; functional.py converts):
they run the CPU reference on CPU tensors and the GPU entry points on CUDA tensors
(_dispatch.py). Their fake implementations give the exact shapes and dtypes without running
anything. Autograd: the backward of LOSS_forward is LOSS_backward with the upstream gradient; the
backward of LOSS_forward_backward scales the gradients it already computed by the upstream
gradient ("mean", "sum"; with "none" they are those of Σ ℓ_i, so it runs LOSS_backward, with
recomputed statistics). An empty `stats` given to LOSS_backward is recomputed. No operator has a
second derivative.
"""

import torch

from . import _capi, _dispatch


def refuse_double_backward(name, grad_loss):
    """closs's operators have no second derivative. Under create_graph=True autograd would take
    their gradients as constants and silently drop every second-order term (a gradient penalty
    ‖∇L‖² would add nothing to the gradient): refuse instead, naming the loss."""
    if torch.is_grad_enabled() or grad_loss.requires_grad:
        raise RuntimeError("closs::%s has no second derivative: its backward cannot run with create_graph=True "
                           "(a gradient penalty through it would silently miss its second-order terms); take the "
                           "gradient without create_graph, or detach the closs loss from the penalty" % name)

# Each loss's scalar options, as schema arguments, in the order of its _capi.*_params function.
OPTIONS = {
    "pair": "float margin, str distance, str reduction, bool check_inputs",
    "triplet": "float margin, str distance, bool swap, str reduction, bool check_inputs",
    "cosine": "float margin, bool squared, str reduction, bool check_inputs",
    "ntxent": "float temperature, bool normalize, str reduction, bool check_inputs, str path",
    "supcon": "float temperature, float base_temperature, bool normalize, str reduction, bool check_inputs, "
              "str path",
}


class _Layout:
    """Where a loss's arguments sit in its operators' argument lists."""

    def __init__(self, spec):
        self.spec = spec
        self.inputs = len(spec.inputs)
        self.tensors = self.inputs + (spec.vector is not None)  # the inputs and the vector
        names = [argument.split()[1] for argument in OPTIONS[spec.name].split(", ")]
        self.reduction = names.index("reduction")

    def split(self, args, extra=0):
        """(inputs, vector, the `extra` tensors after the vector, options) of an argument list."""
        vector = args[self.inputs] if self.spec.vector is not None else None
        return (list(args[:self.inputs]), vector, list(args[self.tensors:self.tensors + extra]),
                tuple(args[self.tensors + extra:]))

    def params(self, options):
        return getattr(_capi, self.spec.name + "_params")(*options)

    def fake_loss(self, inputs, options):
        first = inputs[0]
        shape = (first.shape[0],) if options[self.reduction] == "none" else ()
        dtype = torch.float64 if first.dtype == torch.float64 else torch.float32
        return first.new_empty(shape, dtype=dtype)


def _schema(layout, extra, returns):
    tensors = ["Tensor %s" % name for name in layout.spec.inputs]
    if layout.spec.vector is not None:
        tensors.append("Tensor %s" % layout.spec.vector)
    tensors += ["Tensor %s" % name for name in extra]
    outputs = ["Tensor %s" % name for name in returns]
    result = outputs[0].split()[0] if len(outputs) == 1 else "(%s)" % ", ".join(outputs)
    return "(%s, %s) -> %s" % (", ".join(tensors), OPTIONS[layout.spec.name], result)


def _single_or_tuple(outputs):
    return outputs[0] if len(outputs) == 1 else tuple(outputs)


def _define(layout):
    """Registers closs::NAME_forward, _forward_backward and _backward with their fake
    implementations and autograd. Returns the three operators (OpOverloadPackets)."""
    spec = layout.spec
    grad_names = ["grad_" + name for name in spec.inputs]
    forward_returns = ["loss"] + (["stats"] if spec.contrastive else []) + (["valid"] if spec.has_valid else [])
    fused_returns = ["loss"] + (["valid"] if spec.has_valid else []) + grad_names
    backward_extra = (["stats"] if spec.contrastive else []) + ["upstream"]

    def forward_outputs(loss, stats, valid):
        return _single_or_tuple([loss] + ([stats] if spec.contrastive else []) + ([valid] if spec.has_valid else []))

    def fused_outputs(loss, valid, grads):
        return _single_or_tuple([loss] + ([valid] if spec.has_valid else []) + list(grads))

    # ---- the implementations (CPU reference or GPU entry points) and their fakes ----

    def forward(*args):
        inputs, vector, _, options = layout.split(args)
        return forward_outputs(*_dispatch.forward(spec, layout.params(options), inputs, vector))

    def forward_fake(*args):
        inputs, _, _, options = layout.split(args)
        stats = inputs[0].new_empty(_dispatch.stats_length(spec, inputs[0]), dtype=torch.float32)
        return forward_outputs(layout.fake_loss(inputs, options), stats, inputs[0].new_empty((), dtype=torch.int64))

    def forward_backward(*args):
        inputs, vector, _, options = layout.split(args)
        loss, grads, valid = _dispatch.forward_backward(spec, layout.params(options), inputs, vector)
        return fused_outputs(loss, valid, grads)

    def forward_backward_fake(*args):
        inputs, _, _, options = layout.split(args)
        return fused_outputs(layout.fake_loss(inputs, options), inputs[0].new_empty((), dtype=torch.int64),
                             [torch.empty_like(t, memory_format=torch.contiguous_format) for t in inputs])

    def backward(*args):
        inputs, vector, extra, options = layout.split(args, len(backward_extra))
        stats = extra[0] if spec.contrastive else None
        return _single_or_tuple(_dispatch.backward(spec, layout.params(options), inputs, vector, stats, extra[-1]))

    def backward_fake(*args):
        inputs = layout.split(args, len(backward_extra))[0]
        return _single_or_tuple([torch.empty_like(t, memory_format=torch.contiguous_format) for t in inputs])

    operators = {}
    for direction, implementation, fake, extra, returns in [
            ("forward", forward, forward_fake, [], forward_returns),
            ("forward_backward", forward_backward, forward_backward_fake, [], fused_returns),
            ("backward", backward, backward_fake, backward_extra, grad_names)]:
        name = "closs::%s_%s" % (spec.name, direction)
        operator = torch.library.custom_op(name, implementation, mutates_args=(),
                                           schema=_schema(layout, extra, returns))
        operator.register_fake(fake)
        operators[direction] = operator

    # ---- autograd ----

    def forward_setup(ctx, inputs, output):
        tensors, vector, _, options = layout.split(inputs)
        ctx.save_for_backward(*tensors, vector, output[1] if spec.contrastive else None)
        ctx.options, ctx.scale_saved_gradients = options, False

    def forward_backward_setup(ctx, inputs, output):
        tensors, vector, _, options = layout.split(inputs)
        grads = output[-layout.inputs:]  # the outputs end with the gradients
        ctx.mark_non_differentiable(*grads)
        ctx.options = options
        # Its gradients are those of the loss, or with "none" of Σ ℓ_i: a per-row upstream gradient
        # needs closs's backward (which recomputes the statistics it has not got).
        ctx.scale_saved_gradients = options[layout.reduction] != "none"
        if ctx.scale_saved_gradients:
            ctx.save_for_backward(*grads)
        else:
            ctx.save_for_backward(*tensors, vector, None)

    def gradient(ctx, grad_loss, *unused):
        refuse_double_backward(spec.name, grad_loss)
        if ctx.scale_saved_gradients:
            grads = [g * grad_loss for g in ctx.saved_tensors]
        else:
            *tensors, vector, stats = ctx.saved_tensors
            if spec.contrastive and stats is None:
                stats = tensors[0].new_empty(0, dtype=torch.float32)
            args = tensors + ([vector] if spec.vector is not None else []) + ([stats] if spec.contrastive else [])
            grads = operators["backward"](*args, grad_loss, *ctx.options)
            grads = [grads] if isinstance(grads, torch.Tensor) else list(grads)
        wanted = [g if ctx.needs_input_grad[i] else None for i, g in enumerate(grads)]
        return tuple(wanted) + (None,) * (layout.tensors - layout.inputs + len(ctx.options))

    operators["forward"].register_autograd(gradient, setup_context=forward_setup)
    operators["forward_backward"].register_autograd(gradient, setup_context=forward_backward_setup)
    return {direction: getattr(torch.ops.closs, "%s_%s" % (spec.name, direction)) for direction in operators}


OPERATORS = {name: _define(_Layout(spec)) for name, spec in _dispatch.SPECS.items()}
