"""The contract's CLIP and SigLIP (tests/contract_numpy.py) against the plain PyTorch forms of the
losses docs/contract.md says they reproduce: OpenCLIP's ClipLoss and SigLipLoss (one process),
sentence-transformers' MultipleNegativesRankingLoss with hard negatives (and its symmetric
variant), MoCo v2 with a queue and MoCo v3's ctr (python/tests/torch_losses.py, which the PyTorch
package's tests compare closs with). Values and autograd gradients in float64, with
respect to the raw features, the learnable log-scale t = log s (whose gradient is s·∂L/∂s) and
SigLIP's bias. tests/test_cli_vs_numpy.py then holds the C reference to the NumPy one.

    python3 -m pytest -q tests/test_two_tower_torch.py
"""
import os
import sys
import zlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

here = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [here, os.path.join(os.path.dirname(here), "python", "tests")]
import contract_numpy as cn  # noqa: E402
import torch_losses  # noqa: E402
from torch_losses import mnrl, moco_v2, moco_v3_ctr, openclip_clip_loss, openclip_siglip_loss  # noqa: E402

TOLERANCE = 1e-12


def leaf(array):
    return torch.tensor(array, dtype=torch.float64, requires_grad=True)


def assert_close(got, want, what):
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, "%s: shape %s, want %s" % (what, got.shape, want.shape)
    error = np.max(np.abs(got - want)) if got.size else 0.0
    scale = max(np.max(np.abs(want)) if want.size else 0.0, 1.0)
    assert error <= TOLERANCE * scale, "%s: max error %.3g (scale %.3g)" % (what, error, scale)


@pytest.fixture
def rng(request):
    """Inputs of their own for each test case, the same on every run."""
    return np.random.default_rng(zlib.crc32(request.node.name.encode()))


@pytest.mark.parametrize("pairs", [1, 7, 16])
@pytest.mark.parametrize("log_scale", [np.log(1 / 0.07), np.log(100.0), 0.3])
def test_openclip_clip_loss(rng, pairs, log_scale):
    a, b = rng.normal(size=(pairs, 12)), rng.normal(size=(pairs, 12))
    b += 0.5 * a
    image, text, t = leaf(a), leaf(b), leaf(log_scale)
    loss = openclip_clip_loss(F.normalize(image, dim=1), F.normalize(text, dim=1), t.exp())
    loss.backward()
    want_loss, want = cn.clip(a, b, logit_scale=float(np.exp(log_scale)))
    assert_close(loss.item(), want_loss, "loss")
    assert_close(image.grad, want["a"], "∂/∂image")
    assert_close(text.grad, want["b"], "∂/∂text")
    assert_close(t.grad, np.exp(log_scale) * want["logit_scale"], "∂/∂log s")


@pytest.mark.parametrize("pairs, extra", [(1, 0), (7, 0), (9, 5)])
@pytest.mark.parametrize("log_scale, bias", [(np.log(10.0), -10.0), (np.log(100.0), -100.0),
                                             (0.5, 1.5)])
def test_openclip_siglip_loss(rng, pairs, extra, log_scale, bias):
    a, b = rng.normal(size=(pairs, 12)), rng.normal(size=(pairs + extra, 12))
    b[:pairs] += 0.5 * a
    image, text, t, beta = leaf(a), leaf(b), leaf(log_scale), leaf(bias)
    loss = openclip_siglip_loss(F.normalize(image, dim=1), F.normalize(text, dim=1), t.exp(), beta)
    loss.backward()
    want_loss, want = cn.siglip(a, b, logit_scale=float(np.exp(log_scale)), logit_bias=bias)
    assert_close(loss.item(), want_loss, "loss")
    assert_close(image.grad, want["a"], "∂/∂image")
    assert_close(text.grad, want["b"], "∂/∂text")
    assert_close(t.grad, np.exp(log_scale) * want["logit_scale"], "∂/∂log s")
    assert_close(beta.grad, want["logit_bias"], "∂/∂β")


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("negative_columns", [0, 1, 3])
def test_sentence_transformers_mnrl(rng, symmetric, negative_columns):
    pairs, dim = 6, 10
    anchors, positives = rng.normal(size=(pairs, dim)), rng.normal(size=(pairs, dim))
    negatives = [rng.normal(size=(pairs, dim)) for _ in range(negative_columns)]
    candidates = np.concatenate([positives] + negatives)
    a, c = leaf(anchors), leaf(candidates)
    loss = mnrl(a, c, 20.0, symmetric)
    loss.backward()
    want_loss, want = cn.clip(anchors, candidates, logit_scale=20.0, symmetric=symmetric)
    assert_close(loss.item(), want_loss, "loss")
    assert_close(a.grad, want["a"], "∂/∂anchors")
    assert_close(c.grad, want["b"], "∂/∂candidates")


@pytest.mark.parametrize("queue_size", [1, 32])
def test_moco_v2_queue(rng, queue_size):
    pairs, dim, temperature = 8, 16, 0.2
    q, k, queue = (rng.normal(size=(n, dim)) for n in (pairs, pairs, queue_size))
    qt = leaf(q)
    loss = moco_v2(qt, torch.tensor(k), torch.tensor(queue), temperature)
    loss.backward()
    want_loss, want = cn.clip(q, np.concatenate([k, queue]), logit_scale=1 / temperature,
                              symmetric=False, in_batch_negatives=False, grad_negatives=False)
    assert_close(loss.item(), want_loss, "loss")
    assert_close(qt.grad, want["a"], "∂/∂q")
    assert want["b"].shape == (pairs, dim)


def test_moco_v3_ctr(rng):
    pairs, dim, temperature = 8, 16, 0.2
    q1, q2, k1, k2 = (rng.normal(size=(pairs, dim)) for _ in range(4))
    loss = moco_v3_ctr(torch.tensor(q1), torch.tensor(k2), temperature) + \
        moco_v3_ctr(torch.tensor(q2), torch.tensor(k1), temperature)
    want = sum(2 * temperature * cn.clip(q, k, logit_scale=1 / temperature, symmetric=False)[0]
               for q, k in ((q1, k2), (q2, k1)))
    assert_close(loss.item(), want, "loss")


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("symmetric, in_batch_negatives", [(True, True), (False, True), (False, False)])
def test_plain_torch_clip_with_every_option(rng, symmetric, in_batch_negatives, normalize, reduction):
    """torch_losses.clip, the PyTorch package's comparison point, is the contract for every option."""
    a, b = rng.normal(size=(5, 6)), rng.normal(size=(8, 6))
    at, bt, st = leaf(a), leaf(b), leaf(2.5)
    loss = torch_losses.clip(at, bt, st, symmetric, in_batch_negatives, normalize, reduction)
    loss.sum().backward()
    want_loss, want = cn.clip(a, b, 2.5, symmetric, in_batch_negatives, normalize, reduction=reduction)
    assert_close(loss.detach(), want_loss, "loss")
    assert_close(at.grad, want["a"], "∂/∂a")
    assert_close(bt.grad, want["b"], "∂/∂b")
    assert_close(st.grad, want["logit_scale"], "∂/∂s")


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("normalize", [True, False])
def test_plain_torch_siglip_with_every_option(rng, normalize, reduction):
    a, b = rng.normal(size=(5, 6)), rng.normal(size=(8, 6))
    at, bt, st, beta = leaf(a), leaf(b), leaf(2.5), leaf(-1.5)
    loss = torch_losses.siglip(at, bt, st, beta, normalize, reduction)
    loss.sum().backward()
    want_loss, want = cn.siglip(a, b, 2.5, -1.5, normalize, reduction=reduction)
    assert_close(loss.detach(), want_loss, "loss")
    assert_close(at.grad, want["a"], "∂/∂a")
    assert_close(bt.grad, want["b"], "∂/∂b")
    assert_close(st.grad, want["logit_scale"], "∂/∂s")
    assert_close(beta.grad, want["logit_bias"], "∂/∂β")
