"""The closs operators (closs::LOSS_forward, _forward_backward, _backward) on CPU tensors:
torch.library.opcheck of every operator with every option of test_cpu's cases (schema, fake
tensors, autograd registration, AOT dispatch), a training step per loss under
torch.compile(fullgraph=True) equal to eager with no graph break, torch.export of a module that uses
a closs loss, autocast, and second derivatives refused."""

import inspect

import pytest
import torch

import closs
from closs import _dispatch, _ops
from test_cpu import CASES, IDS

FUNCTIONS = {"pair": closs.pair_contrastive_loss, "triplet": closs.triplet_margin_loss,
             "cosine": closs.cosine_contrastive_loss, "ntxent": closs.ntxent_loss, "supcon": closs.supcon_loss}


def operator_options(name, options):
    """The operators' scalar options for a call of the functional form with `options`: its defaults
    filled in, in the schema's order, base_temperature None as 0 (= temperature)."""
    defaults = {k: p.default for k, p in inspect.signature(FUNCTIONS[name]).parameters.items()
                if p.default is not inspect.Parameter.empty}
    merged = dict(defaults, **options)
    if merged.get("base_temperature", 0) is None:
        merged["base_temperature"] = 0.0
    names = [argument.split()[1] for argument in _ops.OPTIONS[name].split(", ")]
    return {k: merged[k] for k in names}


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_opcheck_every_operator_and_option(case):
    name, _, _, make, options = case
    spec = _dispatch.SPECS[name]
    made = make()
    inputs, vector = made[:len(spec.inputs)], made[len(spec.inputs)] if spec.vector else None
    tensors = list(inputs) + ([vector] if vector is not None else [])
    kwargs = operator_options(name, options)
    operators = _ops.OPERATORS[name]
    torch.library.opcheck(operators["forward"], tensors, kwargs)
    torch.library.opcheck(operators["forward_backward"], tensors, kwargs)
    rows = inputs[0].shape[0]
    upstream = torch.rand(rows if options["reduction"] == "none" else (), dtype=torch.float64) + 0.5
    stats = [torch.empty(0)] if spec.contrastive else []  # the CPU forward's (empty) statistics
    detached = [t.detach() for t in tensors]
    torch.library.opcheck(operators["backward"], detached + stats + [upstream], kwargs)


def test_every_operator_is_registered_in_the_closs_namespace():
    for name in FUNCTIONS:
        for direction in ["forward", "backward", "forward_backward"]:
            assert hasattr(torch.ops.closs, "%s_%s" % (name, direction))


# One training step per loss: a linear layer, then the loss; "none" is summed (its backward is
# closs::LOSS_backward), the others go through closs::LOSS_forward_backward.
STEPS = {
    "pair": lambda f, h, y, labels, **o: f(h[0::2], h[1::2], y, **o),
    "triplet": lambda f, h, y, labels, **o: f(h[0::3], h[1::3], h[2::3], **o),
    "cosine": lambda f, h, y, labels, **o: f(h[0::2], h[1::2], y, **o),
    "ntxent": lambda f, h, y, labels, **o: f(h, **o),
    "supcon": lambda f, h, y, labels, **o: f(h, labels, **o),
}


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_compiled_training_step_has_no_graph_break_and_equals_eager(name, reduction):
    torch.manual_seed(0)
    linear = torch.nn.Linear(6, 5).double()
    x = torch.randn(12, 6, dtype=torch.float64)
    y = torch.rand(6, dtype=torch.float64)
    labels = torch.randint(0, 3, (12,))

    def step(x):
        loss = STEPS[name](FUNCTIONS[name], torch.tanh(linear(x)), y, labels, reduction=reduction)
        return loss.sum()

    explained = torch._dynamo.explain(step)(x)
    assert explained.graph_break_count == 0 and explained.graph_count == 1, explained.break_reasons
    torch._dynamo.reset()
    results = []
    for function in [step, torch.compile(step, fullgraph=True)]:
        loss = function(x)
        results.append((loss.detach(), torch.autograd.grad(loss, list(linear.parameters()))))
    (eager, eager_grads), (compiled, compiled_grads) = results
    torch.testing.assert_close(compiled, eager, rtol=1e-12, atol=0)
    for c, e in zip(compiled_grads, eager_grads):
        torch.testing.assert_close(c, e, rtol=1e-10, atol=1e-13)


class _Embedder(torch.nn.Module):
    def __init__(self, loss):
        super().__init__()
        self.linear = torch.nn.Linear(6, 4).double()
        self.loss = loss

    def forward(self, x, labels):
        return self.loss(self.linear(x), labels)


@pytest.mark.parametrize("reduction, grad_mode, recorded", [
    ("mean", torch.enable_grad, "closs::supcon_forward_backward"),  # gradients wanted: one fused pass
    ("mean", torch.no_grad, "closs::supcon_forward"),  # inference
    ("none", torch.enable_grad, "closs::supcon_forward"),
])
def test_torch_export_captures_a_module_using_closs(reduction, grad_mode, recorded):
    model = _Embedder(closs.SupConLoss(temperature=0.2, reduction=reduction))
    x = torch.randn(10, 6, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 3, 4])
    with grad_mode():
        exported = torch.export.export(model, (x, labels))
    called = {node.target.name() for node in exported.graph.nodes if node.op == "call_function"
              and isinstance(node.target, torch._ops.OpOverload) and node.target.namespace == "closs"}
    assert called == {recorded}
    x2 = torch.randn(10, 6, dtype=torch.float64)
    torch.testing.assert_close(exported.module()(x2, labels), model(x2, labels), rtol=1e-12, atol=0)


def test_autocast_on_the_cpu():
    """As on CUDA: autocast's bfloat16 activations go in as they are (closs computes from a float32
    copy), the loss is float32, the gradient reaches the layer."""
    linear = torch.nn.Linear(8, 6)
    x = torch.randn(16, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z = linear(x)
        loss = closs.NTXentLoss()(z)
    assert z.dtype == torch.bfloat16 and loss.dtype == torch.float32
    loss.backward()
    assert linear.weight.grad is not None and torch.isfinite(linear.weight.grad).all()


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_no_second_derivative(reduction):
    z = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    """create_graph=True is refused with closs's message: before #27 "mean" gave a constant
    gradient (a penalty ‖∇L‖² added nothing to z.grad) and "none" torch's generic message."""
    loss = closs.ntxent_loss(z, reduction=reduction).sum()
    with pytest.raises(RuntimeError, match="closs::ntxent has no second derivative"):
        torch.autograd.grad(loss, z, create_graph=True)
    loss = closs.ntxent_loss(z, reduction=reduction).sum()
    (grad,) = torch.autograd.grad(loss, z)  # without create_graph: fine
    assert not grad.requires_grad
