"""The losses written in plain torch ops, the way a user would without closs: the comparison point
of the package's tests. They follow docs/contract.md and materialise what they need (NT-Xent and
SupCon the full similarity matrix, CLIP and SigLIP the N × (N + K) logits). The two-tower section
also holds the forms of the libraries the contract says CLIP and SigLIP reproduce (OpenCLIP,
sentence-transformers, MoCo), which tests/test_two_tower_torch.py holds to the NumPy contract."""

import torch
import torch.nn.functional as F


def _reduce(rows, reduction):
    return {"mean": rows.mean, "sum": rows.sum, "none": lambda: rows}[reduction]()


def cosine(a, b):
    return (a * b).sum(1) / (a.norm(dim=1).clamp_min(1e-8) * b.norm(dim=1).clamp_min(1e-8))


def _distance(a, b, distance):
    if distance == "euclidean":
        return (a - b).norm(dim=1)
    if distance == "sqeuclidean":
        return ((a - b) ** 2).sum(1)
    return 1 - cosine(a, b)


def pair(x1, x2, y, margin=1.0, distance="euclidean", reduction="mean"):
    d = _distance(x1, x2, distance)
    return _reduce(y * d**2 + (1 - y) * F.relu(margin - d) ** 2, reduction)


def triplet(a, p, n, margin=1.0, distance="sqeuclidean", swap=False, reduction="mean"):
    if distance == "euclidean" and margin > 0:  # torch's own (eps = 0, as the contract says)
        return F.triplet_margin_loss(a, p, n, margin=margin, p=2, eps=0, swap=swap, reduction=reduction)
    negative = _distance(a, n, distance)
    if swap:
        negative = torch.minimum(negative, _distance(p, n, distance))
    return _reduce(F.relu(_distance(a, p, distance) - negative + margin), reduction)


def cosine_contrastive(x1, x2, y, margin=0.0, squared=False, reduction="mean"):
    if not squared and bool(((y == 0) | (y == 1)).all()):  # torch's own, targets ±1
        return F.cosine_embedding_loss(x1, x2, 2 * y - 1, margin=margin, reduction=reduction)
    c = cosine(x1, x2)
    return _reduce(y * (1 - c) + (1 - y) * F.relu(c - margin) ** (2 if squared else 1), reduction)


def ntxent(z, temperature=0.1, normalize=True, reduction="mean"):
    """Cross-entropy over the self-masked similarity matrix, the partner as the target."""
    rows = z.shape[0]
    zhat = F.normalize(z, dim=1, eps=1e-12) if normalize else z
    logits = zhat @ zhat.T / temperature
    logits = logits.masked_fill(torch.eye(rows, dtype=torch.bool, device=z.device), float("-inf"))
    partner = (torch.arange(rows, device=z.device) + rows // 2) % rows
    return F.cross_entropy(logits, partner, reduction=reduction)


def supcon_official(z, labels, temperature=0.07, base_temperature=0.07, normalize=True):
    """SupCon as the official SupContrast code computes it (contrast_mode "all"): the mean over all
    M anchors, an anchor without a positive contributing 0 (the code's guard on the positive count)."""
    rows = z.shape[0]
    zhat = F.normalize(z, dim=1, eps=1e-12) if normalize else z
    logits = zhat @ zhat.T / temperature
    logits = logits - logits.max(dim=1, keepdim=True).values.detach()
    not_self = ~torch.eye(rows, dtype=torch.bool, device=z.device)
    positive = (labels[:, None] == labels[None, :]) & not_self
    log_prob = logits - torch.log((torch.exp(logits) * not_self).sum(1, keepdim=True))
    count = positive.sum(1)
    mean_log_prob_positive = (positive * log_prob).sum(1) / torch.where(count < 1, 1, count)
    return (-(temperature / base_temperature) * mean_log_prob_positive).mean()


def supcon(z, labels, temperature=0.07, base_temperature=None, normalize=True, reduction="mean"):
    """The contract's SupCon: per anchor as the official code, anchors without a positive left out
    of the mean."""
    base_temperature = base_temperature or temperature
    rows = z.shape[0]
    zhat = F.normalize(z, dim=1, eps=1e-12) if normalize else z
    logits = (zhat @ zhat.T / temperature).masked_fill(torch.eye(rows, dtype=torch.bool, device=z.device),
                                                        float("-inf"))
    positive = (labels[:, None] == labels[None, :]) & ~torch.eye(rows, dtype=torch.bool, device=z.device)
    count = positive.sum(1)
    mean_positive = (positive * logits.masked_fill(~positive, 0)).sum(1) / count.clamp_min(1)
    per_anchor = (temperature / base_temperature) * (torch.logsumexp(logits, 1) - mean_positive)
    per_anchor = torch.where(count > 0, per_anchor, torch.zeros_like(per_anchor))
    if reduction == "mean":
        return per_anchor.sum() / (count > 0).sum().clamp_min(1)
    return _reduce(per_anchor, reduction)


# ---- two-tower losses (contract §6-7) -------------------------------------------------------------

def _towers(a, b, normalize):
    if not normalize:
        return a, b
    return F.normalize(a, dim=1, eps=1e-12), F.normalize(b, dim=1, eps=1e-12)


def clip(a, b, logit_scale, symmetric=True, in_batch_negatives=True, normalize=True, reduction="mean"):
    """The contract's CLIP as cross-entropies over the N × (N + K) logits; without in-batch
    negatives the other partners' logits are masked out (MoCo's positive-and-queue softmax)."""
    pairs = a.shape[0]
    ahat, bhat = _towers(a, b, normalize)
    logits = logit_scale * ahat @ bhat.T
    if not in_batch_negatives:
        others = ~torch.eye(pairs, b.shape[0], dtype=torch.bool, device=a.device)
        others[:, pairs:] = False
        logits = logits.masked_fill(others, float("-inf"))
    labels = torch.arange(pairs, device=a.device)
    rows = F.cross_entropy(logits, labels, reduction="none")
    if symmetric:
        rows = (rows + F.cross_entropy(logits[:, :pairs].T, labels, reduction="none")) / 2
    return _reduce(rows, reduction)


def siglip(a, b, logit_scale, logit_bias, normalize=True, reduction="mean"):
    """The contract's SigLIP: −log σ(z·x) over the N × (N + K) logits, z = 1 on the partners."""
    pairs = a.shape[0]
    ahat, bhat = _towers(a, b, normalize)
    logits = logit_scale * ahat @ bhat.T + logit_bias
    signs = 2 * torch.eye(pairs, b.shape[0], dtype=logits.dtype, device=a.device) - 1
    return _reduce(-F.logsigmoid(signs * logits).sum(1), reduction)


def openclip_clip_loss(image, text, logit_scale):
    """OpenCLIP's ClipLoss.forward on one process: the mean of both cross-entropies."""
    logits_per_image = logit_scale * image @ text.T
    logits_per_text = logit_scale * text @ image.T
    labels = torch.arange(image.shape[0], device=image.device)
    return (F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_text, labels)) / 2


def openclip_siglip_loss(image, text, logit_scale, logit_bias):
    """OpenCLIP's SigLipLoss._loss: labels 2·I − 1, extra texts negative only, sum over N."""
    logits = logit_scale * image @ text.T + logit_bias
    labels = -torch.ones_like(logits)
    labels[:, : image.shape[0]] += 2 * torch.eye(image.shape[0], dtype=logits.dtype, device=image.device)
    return -F.logsigmoid(labels * logits).sum() / image.shape[0]


def mnrl(anchors, candidates, scale, symmetric):
    """sentence-transformers' MultipleNegativesRankingLoss (cos_sim, scale) and, symmetric, its
    MultipleNegativesSymmetricRankingLoss (backward: positives against anchors)."""
    scores = F.normalize(anchors, dim=1) @ F.normalize(candidates, dim=1).T * scale
    labels = torch.arange(anchors.shape[0], device=anchors.device)
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
    return F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long, device=q.device))


def moco_v3_ctr(q, k, temperature):
    q, k = F.normalize(q, dim=1), F.normalize(k, dim=1)
    logits = q @ k.T / temperature
    return F.cross_entropy(logits, torch.arange(q.shape[0], device=q.device)) * (2 * temperature)
