"""The losses in plain jax.numpy, following docs/contract.md: the comparison point of closs_jax's
tests (NT-Xent and SupCon materialise the similarity matrix, CLIP and SigLIP the logits)."""

import jax
import jax.numpy as jnp


def _reduce(rows, reduction):
    return {"mean": jnp.mean, "sum": jnp.sum, "none": lambda r: r}[reduction](rows)


def _norm(a):
    return jnp.sqrt(jnp.sum(a * a, axis=1))


def cosine(a, b):
    return jnp.sum(a * b, axis=1) / (jnp.maximum(_norm(a), 1e-8) * jnp.maximum(_norm(b), 1e-8))


def _distance(a, b, distance):
    if distance == "euclidean":
        return _norm(a - b)
    if distance == "sqeuclidean":
        return jnp.sum((a - b) ** 2, axis=1)
    return 1 - cosine(a, b)


def pair(x1, x2, y, margin=1.0, distance="euclidean", reduction="mean"):
    d = _distance(x1, x2, distance)
    return _reduce(y * d**2 + (1 - y) * jax.nn.relu(margin - d) ** 2, reduction)


def triplet(a, p, n, margin=1.0, distance="sqeuclidean", swap=False, reduction="mean"):
    negative = _distance(a, n, distance)
    if swap:
        negative = jnp.minimum(negative, _distance(p, n, distance))
    return _reduce(jax.nn.relu(_distance(a, p, distance) - negative + margin), reduction)


def cosine_contrastive(x1, x2, y, margin=0.0, squared=False, reduction="mean"):
    c = cosine(x1, x2)
    return _reduce(y * (1 - c) + (1 - y) * jax.nn.relu(c - margin) ** (2 if squared else 1), reduction)


def _logits(z, temperature, normalize):
    zhat = z / jnp.maximum(_norm(z), 1e-12)[:, None] if normalize else z
    rows = z.shape[0]
    return jnp.where(jnp.eye(rows, dtype=bool), -jnp.inf, zhat @ zhat.T / temperature)


def ntxent(z, temperature=0.1, normalize=True, reduction="mean"):
    rows = z.shape[0]
    logits = _logits(z, temperature, normalize)
    partner = (jnp.arange(rows) + rows // 2) % rows
    per_anchor = jax.nn.logsumexp(logits, axis=1) - logits[jnp.arange(rows), partner]
    return _reduce(per_anchor, reduction)


def supcon(z, labels, temperature=0.07, base_temperature=None, normalize=True, reduction="mean"):
    base_temperature = base_temperature or temperature
    rows = z.shape[0]
    logits = _logits(z, temperature, normalize)
    positive = (labels[:, None] == labels[None, :]) & ~jnp.eye(rows, dtype=bool)
    count = positive.sum(1)
    mean_positive = jnp.where(positive, logits, 0).sum(1) / jnp.maximum(count, 1)
    per_anchor = (temperature / base_temperature) * (jax.nn.logsumexp(logits, axis=1) - mean_positive)
    per_anchor = jnp.where(count > 0, per_anchor, 0)
    if reduction == "mean":
        return per_anchor.sum() / jnp.maximum((count > 0).sum(), 1)
    return _reduce(per_anchor, reduction)


def _towers(a, b, normalize):
    if not normalize:
        return a, b
    return a / jnp.maximum(_norm(a), 1e-12)[:, None], b / jnp.maximum(_norm(b), 1e-12)[:, None]


def clip(a, b, logit_scale, symmetric=True, in_batch_negatives=True, normalize=True, reduction="mean"):
    """CLIP over the N × (N + K) logits (contract §6); without in-batch negatives the other
    partners' logits are masked out."""
    pairs = a.shape[0]
    ahat, bhat = _towers(a, b, normalize)
    logits = logit_scale * ahat @ bhat.T
    partner = jnp.eye(pairs, b.shape[0], dtype=bool)
    if not in_batch_negatives:
        in_batch = jnp.arange(b.shape[0])[None, :] < pairs
        logits = jnp.where(in_batch & ~partner, -jnp.inf, logits)
    positive = jnp.diagonal(logits)
    rows = jax.nn.logsumexp(logits, axis=1) - positive
    if symmetric:
        rows = (rows + jax.nn.logsumexp(logits[:, :pairs], axis=0) - positive) / 2
    return _reduce(rows, reduction)


def siglip(a, b, logit_scale, logit_bias, normalize=True, reduction="mean"):
    """SigLIP: −log σ(z·x) over the N × (N + K) logits, z = 1 on the partners (contract §7)."""
    ahat, bhat = _towers(a, b, normalize)
    logits = logit_scale * ahat @ bhat.T + logit_bias
    signs = 2 * jnp.eye(a.shape[0], b.shape[0], dtype=logits.dtype) - 1
    return _reduce(-jax.nn.log_sigmoid(signs * logits).sum(1), reduction)
