"""The package on CPU tensors (the double-precision reference): gradcheck in float64 for every loss
and option, values and gradients against the same losses in plain torch ops, dtypes, strides,
reductions and the module conveniences. Fresh random inputs on every run."""

import itertools

import pytest
import torch

import closs
import torch_losses

REDUCTIONS = ["mean", "sum", "none"]


def rows(n, d, dtype=torch.float64, requires_grad=True):
    return torch.randn(n, d, dtype=dtype).requires_grad_(requires_grad)


def soft_labels(n):
    y = torch.rand(n, dtype=torch.float64)
    y[: n // 2] = torch.randint(0, 2, (n // 2,), dtype=torch.float64)  # hard and soft labels
    return y


# Every loss with every option, as (name, closs function, torch function, inputs maker, options).
def cases():
    for reduction, distance in itertools.product(REDUCTIONS, ["euclidean", "cosine"]):
        for margin in [0.0, 1.0, 4.0]:
            yield ("pair", closs.pair_contrastive_loss, torch_losses.pair,
                   lambda: (rows(7, 5), rows(7, 5), soft_labels(7)),
                   dict(margin=margin, distance=distance, reduction=reduction))
    for reduction, distance, swap in itertools.product(REDUCTIONS, ["sqeuclidean", "euclidean", "cosine"],
                                                       [False, True]):
        for margin in [-0.5, 1.0, 3.0]:
            yield ("triplet", closs.triplet_margin_loss, torch_losses.triplet,
                   lambda: (rows(6, 4), rows(6, 4), rows(6, 4)),
                   dict(margin=margin, distance=distance, swap=swap, reduction=reduction))
    for reduction, squared in itertools.product(REDUCTIONS, [False, True]):
        for margin in [-0.5, 0.0, 0.3]:
            yield ("cosine", closs.cosine_contrastive_loss, torch_losses.cosine_contrastive,
                   lambda: (rows(7, 3), rows(7, 3), soft_labels(7)),
                   dict(margin=margin, squared=squared, reduction=reduction))
    for reduction, normalize, temperature in itertools.product(REDUCTIONS, [True, False], [0.05, 0.5, 2.0]):
        yield ("ntxent", closs.ntxent_loss, torch_losses.ntxent, lambda: (rows(8, 4),),
               dict(temperature=temperature, normalize=normalize, reduction=reduction))
    for reduction, normalize, temperature, base in itertools.product(REDUCTIONS, [True, False], [0.07, 0.5],
                                                                     [None, 0.3]):
        yield ("supcon", closs.supcon_loss, torch_losses.supcon,
               lambda: (rows(9, 4), torch.tensor([3, -1, 3, 7, -1, 7, 7, 100, 5])),  # 5: no positive
               dict(temperature=temperature, base_temperature=base, normalize=normalize, reduction=reduction))


CASES = list(cases())
IDS = ["%s-%s" % (c[0], "-".join("%s=%s" % kv for kv in c[4].items())) for c in CASES]


def _split(name, inputs):
    """(differentiable inputs, the call with the vector argument in its place)."""
    if name in ("pair", "cosine"):
        x1, x2, y = inputs
        return (x1, x2), lambda f, a, b, **o: f(a, b, y, **o)
    if name == "supcon":
        z, labels = inputs
        return (z,), lambda f, a, **o: f(a, labels, **o)
    return inputs, lambda f, *a, **o: f(*a, **o)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_gradcheck(case):
    name, function, _, make, options = case
    differentiable, call = _split(name, make())
    assert torch.autograd.gradcheck(lambda *a: call(function, *a, **options), differentiable)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_matches_torch(case):
    name, function, reference, make, options = case
    differentiable, call = _split(name, make())
    ours = call(function, *differentiable, **options)
    theirs = call(reference, *differentiable, **options)
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)
    upstream = torch.rand_like(ours) + 0.5
    grads = torch.autograd.grad(ours, differentiable, upstream)
    expected = torch.autograd.grad(theirs, differentiable, upstream)
    for g, e in zip(grads, expected):
        torch.testing.assert_close(g, e, rtol=1e-9, atol=1e-12)


def test_supcon_matches_official_supcontrast_rescaled():
    """The official code divides by all M anchors: ours × valid/M reproduces it."""
    z = rows(10, 6)
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 3, 3, 4, 5])  # 2, 4 and 5 have no positive
    loss, valid = closs.supcon_loss(z, labels, temperature=0.1, base_temperature=0.07, return_valid=True)
    assert valid.item() == 7 and valid.dtype == torch.int64
    official = torch_losses.supcon_official(z, labels, temperature=0.1, base_temperature=0.07)
    torch.testing.assert_close(loss * valid / 10, official, rtol=1e-10, atol=0)


def test_supcon_official_layout_and_simclr_identity():
    """features (B, V, D) flattened view-major; without labels SupCon is NT-Xent (contract §4)."""
    features = rows(5, 2 * 3).reshape(5, 2, 3)
    z = torch.cat(torch.unbind(features, dim=1))
    labels = torch.tensor([4, 1, 4, 0, 2])
    module = closs.SupConLoss(temperature=0.2)
    torch.testing.assert_close(module(features, labels), closs.supcon_loss(z, labels.repeat(2), temperature=0.2))
    torch.testing.assert_close(module(features), closs.ntxent_loss(z, temperature=0.2), rtol=1e-12, atol=0)


def test_ntxent_two_views():
    z1, z2 = rows(4, 3), rows(4, 3)
    torch.testing.assert_close(closs.NTXentLoss()(z1, z2), closs.NTXentLoss()(torch.cat([z1, z2])))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_low_precision_inputs(dtype):
    """float32 is read as is; float16/bfloat16 through a float32 copy. The loss is float32, the
    gradients come back in the input's dtype."""
    z64 = torch.randn(12, 8, dtype=torch.float64)
    z = z64.to(dtype).requires_grad_()
    loss = closs.ntxent_loss(z)
    loss.backward()
    assert loss.dtype == torch.float32 and z.grad.dtype == dtype
    exact = z.detach().double().requires_grad_()
    expected = closs.ntxent_loss(exact)
    expected.backward()
    torch.testing.assert_close(loss.double(), expected, rtol=1e-6, atol=0)
    tolerance = {torch.float32: 1e-6, torch.float16: 2e-3, torch.bfloat16: 1e-2}[dtype]
    torch.testing.assert_close(z.grad.double(), exact.grad, rtol=tolerance, atol=tolerance * exact.grad.abs().max())


def test_mixed_dtypes_promote():
    a = rows(5, 3, torch.float32)
    p = rows(5, 3, torch.float64)
    n = rows(5, 3, torch.float32)
    loss = closs.triplet_margin_loss(a, p, n)
    loss.backward()
    assert loss.dtype == torch.float64 and a.grad.dtype == torch.float32 and p.grad.dtype == torch.float64


def test_strided_rows_and_views():
    """Row views of a wider matrix go in with their leading dimension; other layouts are copied."""
    wide = torch.randn(6, 10, dtype=torch.float64)
    x1 = wide[:, 2:6].requires_grad_()  # ld 10 > dim 4, no copy needed
    x2 = torch.randn(4, 6, dtype=torch.float64).T.requires_grad_()  # column-major: copied
    y = torch.tensor([1.0, 0, 1, 0, 0.5, 1])
    loss = closs.pair_contrastive_loss(x1, x2, y, reduction="sum")
    loss.backward()
    c1, c2 = x1.detach().clone().requires_grad_(), x2.detach().contiguous().requires_grad_()
    expected = closs.pair_contrastive_loss(c1, c2, y, reduction="sum")
    expected.backward()
    assert loss.item() == expected.item()
    assert torch.equal(x1.grad, c1.grad) and torch.equal(x2.grad, c2.grad)


def test_upstream_gradient_scales_every_reduction():
    for reduction in REDUCTIONS:
        z = rows(6, 3)
        labels = torch.tensor([0, 1, 0, 1, 2, 2])
        loss = closs.supcon_loss(z, labels, reduction=reduction)
        (grad,) = torch.autograd.grad((loss * 3).sum(), z)
        z2 = z.detach().requires_grad_()
        (base,) = torch.autograd.grad(closs.supcon_loss(z2, labels, reduction=reduction).sum(), z2)
        torch.testing.assert_close(grad, 3 * base, rtol=1e-12, atol=1e-12 * base.abs().max().item())


def test_only_needed_gradients_and_no_grad():
    x1, x2 = rows(4, 3), rows(4, 3, requires_grad=False)
    y = torch.ones(4)
    closs.cosine_contrastive_loss(x1, x2, y).backward()
    assert x1.grad is not None and x2.grad is None
    with torch.no_grad():
        loss = closs.cosine_contrastive_loss(x1, x2, y)
    assert loss.grad_fn is None


def test_empty_batch():
    x = torch.zeros(0, 3, dtype=torch.float64, requires_grad=True)
    loss = closs.triplet_margin_loss(x, x, x)
    loss.backward()
    assert loss.item() == 0 and x.grad.shape == (0, 3)


def test_module_repr_and_defaults():
    assert "temperature=0.07" in repr(closs.SupConLoss())
    assert "distance='sqeuclidean'" in repr(closs.TripletMarginLoss())


def test_labels_and_y_types():
    z = rows(6, 3)
    for labels in [torch.tensor([1, 2, 1, 2, 3, 3], dtype=torch.int32), torch.tensor([1, 2, 1, 2, 3, 3],
                                                                                     dtype=torch.uint8)]:
        torch.testing.assert_close(closs.supcon_loss(z, labels), closs.supcon_loss(z, labels.long()))
    x1, x2 = rows(3, 2), rows(3, 2)
    torch.testing.assert_close(closs.pair_contrastive_loss(x1, x2, torch.tensor([True, False, True])),
                               closs.pair_contrastive_loss(x1, x2, torch.tensor([1.0, 0.0, 1.0])))


def test_inside_torch_compile():
    """torch.compile traces closs's operators into one graph (test_ops checks every loss), with the
    same result."""
    linear = torch.nn.Linear(8, 4).double()
    loss_fn = closs.NTXentLoss()
    step = lambda x: loss_fn(linear(x))  # noqa: E731
    x = torch.randn(16, 8, dtype=torch.float64)
    compiled = torch.compile(step, fullgraph=True)(x)
    torch.testing.assert_close(compiled, step(x), rtol=1e-12, atol=0)
    (grad,) = torch.autograd.grad(compiled, linear.weight)
    (expected,) = torch.autograd.grad(step(x), linear.weight)
    torch.testing.assert_close(grad, expected, rtol=1e-10, atol=1e-12)
