"""The contract's CLIP and SigLIP (tests/contract_numpy.py) against the plain PyTorch forms of the
losses docs/contract.md says they reproduce: OpenCLIP's ClipLoss and SigLipLoss (one process),
sentence-transformers' MultipleNegativesRankingLoss with hard negatives (and its symmetric
variant), MoCo v2 with a queue and MoCo v3's ctr. Values and autograd gradients in float64, with
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import contract_numpy as cn  # noqa: E402

TOLERANCE = 1e-12


def leaf(array):
    return torch.tensor(array, dtype=torch.float64, requires_grad=True)


def openclip_clip_loss(image, text, logit_scale):
    """OpenCLIP's ClipLoss.forward on one process: the mean of both cross-entropies."""
    logits_per_image = logit_scale * image @ text.T
    logits_per_text = logit_scale * text @ image.T
    labels = torch.arange(image.shape[0])
    return (F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_text, labels)) / 2


def openclip_siglip_loss(image, text, logit_scale, logit_bias):
    """OpenCLIP's SigLipLoss._loss: labels 2·I − 1, extra texts negative only, sum over N."""
    logits = logit_scale * image @ text.T + logit_bias
    labels = -torch.ones_like(logits)
    labels[:, : image.shape[0]] += 2 * torch.eye(image.shape[0], dtype=logits.dtype)
    return -F.logsigmoid(labels * logits).sum() / image.shape[0]


def mnrl(anchors, candidates, scale, symmetric):
    """sentence-transformers' MultipleNegativesRankingLoss (cos_sim, scale) and, symmetric, its
    MultipleNegativesSymmetricRankingLoss (backward: positives against anchors)."""
    scores = F.normalize(anchors, dim=1) @ F.normalize(candidates, dim=1).T * scale
    labels = torch.arange(anchors.shape[0])
    forward = F.cross_entropy(scores, labels)
    if not symmetric:
        return forward
    return (forward + F.cross_entropy(scores[:, : anchors.shape[0]].T, labels)) / 2


def moco_v2(q, k, queue, temperature):
    """MoCo v2's logits cat(l_pos, l_neg) / T, label 0 (q and k normalised, queue as stored)."""
    q, k = F.normalize(q, dim=1), F.normalize(k, dim=1)
    l_pos = (q * k).sum(dim=1, keepdim=True)
    l_neg = q @ F.normalize(queue, dim=1).T
    logits = torch.cat([l_pos, l_neg], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long))


def moco_v3_ctr(q, k, temperature):
    q, k = F.normalize(q, dim=1), F.normalize(k, dim=1)
    logits = q @ k.T / temperature
    return F.cross_entropy(logits, torch.arange(q.shape[0])) * (2 * temperature)


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
