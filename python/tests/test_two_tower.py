"""CLIP and SigLIP in the PyTorch package, on CPU tensors (the double-precision reference):
gradcheck in float64 for every option, values and gradients (features, logit scale, bias) against
the plain-torch forms of torch_losses (which tests/test_two_tower_torch.py holds to the NumPy
contract), OpenCLIP's ClipLoss and SigLipLoss as drop-ins, sentence-transformers' MNRL with hard
negatives, MoCo v2's queue, torch.library.opcheck on every operator and option, a compiled
training step with fullgraph=True equal to eager, torch.export, and the errors. Fresh random inputs
on every run."""

import itertools

import pytest
import torch
import torch.nn.functional as F

import closs
import torch_losses
from closs import _two_tower_ops

REDUCTIONS = ["mean", "sum", "none"]
CLIP_MODES = [dict(symmetric=True, in_batch_negatives=True), dict(symmetric=False, in_batch_negatives=True),
              dict(symmetric=False, in_batch_negatives=False)]


def rows(n, d=4, requires_grad=True, dtype=torch.float64):
    return torch.randn(n, d, dtype=dtype).requires_grad_(requires_grad)


def scalar(value, requires_grad=True):
    return torch.tensor(value, dtype=torch.float64, requires_grad=requires_grad)


# (kind, options, extra negatives K): every option with and without extra rows of b.
def cases():
    for mode, normalize, reduction, extra in itertools.product(CLIP_MODES, [True, False], REDUCTIONS, [0, 3]):
        yield "clip", dict(mode, normalize=normalize, reduction=reduction), extra
    for normalize, reduction, extra in itertools.product([True, False], REDUCTIONS, [0, 3]):
        yield "siglip", dict(normalize=normalize, reduction=reduction), extra


CASES = list(cases())


def case_id(kind, options, extra, *more):
    return "-".join(["%s-K%d" % (kind, extra)] + ["%s=%s" % kv for kv in options.items()] + [str(m) for m in more])


IDS = [case_id(*case) for case in CASES]


def inputs(kind, extra, pairs=5):
    """a, b (pairs + extra rows) and the scalars, all leaves in float64. The scales keep the
    logits moderate so that gradcheck's finite differences are accurate."""
    tensors = [rows(pairs), rows(pairs + extra), scalar(2.5)]
    return tensors + ([scalar(-1.5)] if kind == "siglip" else [])


def call(kind, tensors, options):
    if kind == "clip":
        return closs.clip_loss(*tensors, **options)
    return closs.siglip_loss(*tensors, **options)


def reference(kind, tensors, options):
    return (torch_losses.clip if kind == "clip" else torch_losses.siglip)(*tensors, **options)


@pytest.mark.parametrize("kind, options, extra", CASES, ids=IDS)
def test_gradcheck(kind, options, extra):
    assert torch.autograd.gradcheck(lambda *t: call(kind, t, options), inputs(kind, extra))


@pytest.mark.parametrize("kind, options, extra", CASES, ids=IDS)
def test_matches_plain_torch(kind, options, extra):
    tensors = inputs(kind, extra)
    ours, theirs = call(kind, tensors, options), reference(kind, tensors, options)
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)
    upstream = torch.rand_like(ours) + 0.5
    for got, want in zip(torch.autograd.grad(ours, tensors, upstream), torch.autograd.grad(theirs, tensors, upstream)):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


def test_openclip_clip_loss_drop_in():
    """OpenCLIP's model normalises its features and returns logit_scale.exp(); the gradients that
    reach the raw features and the log-scale are OpenCLIP's (closs normalises again: the model's
    own projection absorbs it)."""
    raw_image, raw_text, log_scale = rows(16, 8), rows(16, 8), scalar(float(torch.tensor(1 / 0.07).log()))
    results = []
    for loss_fn in [closs.ClipLoss(), torch_losses.openclip_clip_loss]:
        image, text = F.normalize(raw_image, dim=-1), F.normalize(raw_text, dim=-1)
        loss = loss_fn(image, text, log_scale.exp())
        results.append((loss, torch.autograd.grad(loss, [raw_image, raw_text, log_scale])))
    (ours, our_grads), (theirs, their_grads) = results
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=0)
    for got, want in zip(our_grads, their_grads):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-13)
    assert closs.ClipLoss()(raw_image, raw_text, 10.0, output_dict=True).keys() == {"contrastive_loss"}


def test_openclip_siglip_loss_drop_in():
    raw_image, raw_text = rows(12, 8), rows(12, 8)
    log_scale, bias = scalar(float(torch.tensor(10.0).log())), scalar(-10.0)
    results = []
    for loss_fn in [closs.SigLipLoss(), torch_losses.openclip_siglip_loss]:
        image, text = F.normalize(raw_image, dim=-1), F.normalize(raw_text, dim=-1)
        loss = loss_fn(image, text, log_scale.exp(), bias)
        results.append((loss, torch.autograd.grad(loss, [raw_image, raw_text, log_scale, bias])))
    (ours, our_grads), (theirs, their_grads) = results
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=0)
    for got, want in zip(our_grads, their_grads):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-13)


def test_clip_loss_ignores_a_logit_bias_as_openclip_does():
    """A bias added to every logit cancels in each softmax: same loss, a zero gradient for it."""
    image, text, bias = rows(6), rows(6), scalar(3.0)
    loss = closs.ClipLoss()(image, text, 5.0, bias)
    torch.testing.assert_close(loss, closs.clip_loss(image, text, 5.0))
    (grad,) = torch.autograd.grad(loss, bias)
    assert grad.item() == 0.0


@pytest.mark.parametrize("symmetric", [False, True])
def test_mnrl_with_hard_negatives(symmetric):
    """sentence-transformers' (Symmetric)MultipleNegativesRankingLoss, scale 20, two hard negatives
    per anchor, given as `negatives=` (they get gradients: they come from the model)."""
    anchors, positives, negatives = rows(6, 10), rows(6, 10), rows(12, 10)
    loss_fn = closs.ClipLoss(symmetric=symmetric, logit_scale=20.0)
    ours = loss_fn(anchors, positives, negatives=negatives)
    theirs = torch_losses.mnrl(anchors, torch.cat([positives, negatives]), 20.0, symmetric)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=0)
    leaves = [anchors, positives, negatives]
    for got, want in zip(torch.autograd.grad(ours, leaves), torch.autograd.grad(theirs, leaves)):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-13)


def test_moco_v2_queue_costs_no_gradient_work():
    """A queue without requires_grad: grad_negatives is off by itself, so closs computes the
    gradient of the N partner rows only (the operator's grad_b has N rows)."""
    q, k, queue = rows(8, 16), rows(8, 16, requires_grad=False), rows(32, 16, requires_grad=False)
    loss = closs.clip_loss(q, k, 1 / 0.2, negatives=queue, symmetric=False, in_batch_negatives=False)
    expected = torch_losses.moco_v2(q, k, queue, 0.2)
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(torch.autograd.grad(loss, q)[0], torch.autograd.grad(expected, q)[0], rtol=1e-10,
                               atol=1e-13)
    options = dict(symmetric=False, in_batch_negatives=False, normalize=True, grad_negatives=False,
                   reduction="mean", check_inputs=False, path="auto")
    b = torch.cat([k, queue]).detach()
    _, grad_a, grad_b, _ = _two_tower_ops.OPERATORS["clip"]["forward_backward"](q.detach(), b, scalar(5.0), **options)
    assert grad_a.shape == (8, 16) and grad_b.shape == (8, 16)


def test_negatives_as_rows_of_b_or_as_an_argument():
    image, text, extra = rows(5), rows(5), rows(4)
    together = closs.siglip_loss(image, torch.cat([text, extra]), 3.0, -2.0)
    apart = closs.siglip_loss(image, text, 3.0, -2.0, negatives=extra)
    torch.testing.assert_close(together, apart, rtol=0, atol=0)


def test_grad_negatives_false_treats_the_negatives_as_constants():
    image, text, extra = rows(5), rows(5), rows(4)
    loss = closs.clip_loss(image, text, 3.0, negatives=extra, grad_negatives=False, symmetric=False)
    grads = torch.autograd.grad(loss, [image, text, extra])
    expected = torch.autograd.grad(torch_losses.clip(image, torch.cat([text, extra.detach()]), 3.0, symmetric=False),
                                   [image, text])
    torch.testing.assert_close(grads[0], expected[0], rtol=1e-10, atol=1e-13)
    torch.testing.assert_close(grads[1], expected[1], rtol=1e-10, atol=1e-13)
    assert torch.count_nonzero(grads[2]) == 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_low_precision_features(dtype):
    """float32 is read as is, bfloat16 through a float32 copy; the loss and the scale's gradient
    are float32, the features' gradients come back in their dtype."""
    image, text = torch.randn(6, 8, dtype=torch.float64), torch.randn(9, 8, dtype=torch.float64)
    leaves = [image.to(dtype).requires_grad_(), text.to(dtype).requires_grad_(),
              torch.tensor(4.0, requires_grad=True)]
    loss = closs.clip_loss(*leaves)
    grads = torch.autograd.grad(loss, leaves)
    assert loss.dtype == torch.float32 and [g.dtype for g in grads] == [dtype, dtype, torch.float32]
    exact = [t.detach().double().requires_grad_() for t in leaves]
    expected = closs.clip_loss(*exact)
    torch.testing.assert_close(loss.double(), expected, rtol=1e-6, atol=0)
    tolerance = 1e-6 if dtype == torch.float32 else 1e-2
    for got, want in zip(grads, torch.autograd.grad(expected, exact)):
        torch.testing.assert_close(got.double(), want, rtol=tolerance, atol=tolerance * want.abs().max().item())


# ---- the operators ------------------------------------------------------------------------------

def operator_arguments(kind, options, extra):
    """(tensors, options) of the operators for a functional case: every option filled in."""
    names = _two_tower_ops.option_names(kind)
    defaults = dict(symmetric=True, in_batch_negatives=True, normalize=True, grad_negatives=True,
                    reduction="mean", check_inputs=False, path="auto")
    merged = dict(defaults, **options)
    return inputs(kind, extra), {name: merged[name] for name in names}


# grad_negatives off where there are extra negatives (without them it changes nothing)
OPERATOR_CASES = [case + (True,) for case in CASES] + [case + (False,) for case in CASES if case[2]]


@pytest.mark.parametrize("kind, options, extra, grad_negatives", OPERATOR_CASES,
                         ids=[case_id(*case) for case in OPERATOR_CASES])
def test_opcheck_every_operator_and_option(kind, options, extra, grad_negatives):
    tensors, kwargs = operator_arguments(kind, options, extra)
    kwargs["grad_negatives"] = grad_negatives
    operators = _two_tower_ops.OPERATORS[kind]
    torch.library.opcheck(operators["forward"], tensors, kwargs)
    torch.library.opcheck(operators["forward_backward"], tensors, kwargs)
    detached = [t.detach() for t in tensors]
    stats = list(operators["forward"](*detached, **kwargs)[1:]) if kind == "clip" else []
    upstream = torch.rand(5 if kwargs["reduction"] == "none" else (), dtype=torch.float64) + 0.5
    torch.library.opcheck(operators["backward"], detached + stats + [upstream], kwargs)


def test_every_operator_is_registered_in_the_closs_namespace():
    for kind in ("clip", "siglip"):
        for direction in ("forward", "backward", "forward_backward"):
            assert hasattr(torch.ops.closs, "%s_%s" % (kind, direction))


class _TwoTower(torch.nn.Module):
    """Two linear towers and a learnable log-scale (and bias), as CLIP and SigLIP models have."""

    def __init__(self, kind, **options):
        super().__init__()
        self.kind = kind
        self.image = torch.nn.Linear(6, 5).double()
        self.text = torch.nn.Linear(7, 5).double()
        self.log_scale = torch.nn.Parameter(torch.tensor(2.0, dtype=torch.float64))
        self.bias = torch.nn.Parameter(torch.tensor(-1.0, dtype=torch.float64))
        self.loss = closs.ClipLoss(**options) if kind == "clip" else closs.SigLipLoss(**options)

    def forward(self, x, y):
        image, text = torch.tanh(self.image(x)), torch.tanh(self.text(y))
        if self.kind == "clip":
            return self.loss(image, text, self.log_scale.exp())
        return self.loss(image, text, self.log_scale.exp(), self.bias)


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_compiled_training_step_has_no_graph_break_and_equals_eager(kind, reduction):
    torch.manual_seed(0)
    model = _TwoTower(kind, reduction=reduction)
    x, y = torch.randn(12, 6, dtype=torch.float64), torch.randn(12, 7, dtype=torch.float64)

    def step(x, y):
        return model(x, y).sum()

    explained = torch._dynamo.explain(step)(x, y)
    assert explained.graph_break_count == 0 and explained.graph_count == 1, explained.break_reasons
    torch._dynamo.reset()
    results = []
    for function in [step, torch.compile(step, fullgraph=True)]:
        loss = function(x, y)
        results.append((loss.detach(), torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)))
    (eager, eager_grads), (compiled, compiled_grads) = results
    torch.testing.assert_close(compiled, eager, rtol=1e-12, atol=0)
    for c, e in zip(compiled_grads, eager_grads):
        if e is None:  # CLIP has no bias
            assert c is None
            continue
        torch.testing.assert_close(c, e, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("kind, grad_mode, recorded", [
    ("clip", torch.enable_grad, "closs::clip_forward_backward"),
    ("clip", torch.no_grad, "closs::clip_forward"),
    ("siglip", torch.enable_grad, "closs::siglip_forward_backward"),
])
def test_torch_export_captures_a_two_tower_model(kind, grad_mode, recorded):
    model = _TwoTower(kind)
    x, y = torch.randn(10, 6, dtype=torch.float64), torch.randn(10, 7, dtype=torch.float64)
    with grad_mode():
        exported = torch.export.export(model, (x, y))
    called = {node.target.name() for node in exported.graph.nodes if node.op == "call_function"
              and isinstance(node.target, torch._ops.OpOverload) and node.target.namespace == "closs"}
    assert called == {recorded}
    x2, y2 = torch.randn(10, 6, dtype=torch.float64), torch.randn(10, 7, dtype=torch.float64)
    torch.testing.assert_close(exported.module()(x2, y2), model(x2, y2), rtol=1e-12, atol=0)


def test_no_second_derivative():
    image = rows(4)
    loss = closs.clip_loss(image, rows(4))
    with pytest.raises(RuntimeError, match="closs::clip has no second derivative"):
        torch.autograd.grad(loss, image, create_graph=True)


# ---- errors -------------------------------------------------------------------------------------

@pytest.mark.parametrize("build, words", [
    (lambda: closs.ClipLoss(in_batch_negatives=False), "in_batch_negatives"),
    (lambda: closs.ClipLoss(reduction="avg"), "reduction = 'avg'"),
    (lambda: closs.SigLipLoss(path="fast"), "path = 'fast'"),
])
def test_bad_options_fail_at_construction(build, words):
    with pytest.raises(ValueError, match=words):
        build()


def test_bad_arguments_name_themselves():
    with pytest.raises(closs.ClossArgumentError, match="logit_scale"):
        closs.clip_loss(rows(3), rows(3), 0.0)
    with pytest.raises(closs.ClossArgumentError, match="logit_scale"):
        closs.clip_loss(rows(3), rows(3), torch.tensor(-1.0))
    with pytest.raises(closs.ClossArgumentError, match="logit_bias"):
        closs.siglip_loss(rows(3), rows(3), 1.0, float("inf"))
    with pytest.raises(closs.ClossArgumentError, match="b.rows"):
        closs.clip_loss(rows(4), rows(3))
    with pytest.raises(closs.ClossArgumentError, match="b.cols"):
        closs.clip_loss(rows(3, 4), rows(3, 5))
    with pytest.raises(ValueError, match="negatives has 5 columns"):
        closs.clip_loss(rows(3, 4), rows(3, 4), negatives=rows(2, 5))
    with pytest.raises(ValueError, match="logit_scale must hold one real value"):
        closs.clip_loss(rows(3), rows(3), torch.ones(2))
    with pytest.raises(TypeError, match="logit_scale must be a tensor or a number"):
        closs.clip_loss(rows(3), rows(3), "20")


def test_check_inputs_reports_nonfinite_features():
    image = torch.randn(4, 3)
    image[1, 2] = float("nan")
    assert torch.isnan(closs.siglip_loss(image, torch.randn(4, 3)))  # NaN propagates by default
    with pytest.raises(closs.ClossNonfiniteInputError, match="a"):
        closs.siglip_loss(image, torch.randn(4, 3), check_inputs=True)
