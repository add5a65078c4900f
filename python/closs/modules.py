"""Drop-in nn.Modules over closs.functional. Arguments and defaults follow docs/contract.md; each
docstring says how to reproduce the conventions of torch, pytorch-metric-learning, the official
SupContrast code, OpenCLIP and sentence-transformers. Parameters are checked by closs when the module is built (a dry run of the CPU
reference on a tiny input), so a bad value fails at construction with closs's message.
"""

import torch

from . import functional


def _dry_run(loss, *inputs):
    """Runs `loss` on a tiny CPU input so that closs checks the parameters now, not mid-training."""
    with torch.no_grad():
        loss(*inputs)


def _rows(count, dim=2):
    return torch.arange(1.0, count * dim + 1.0, dtype=torch.float64).reshape(count, dim)


class _ClossLoss(torch.nn.Module):
    def extra_repr(self):
        return ", ".join("%s=%r" % item for item in self._options.items())


class ContrastiveLoss(_ClossLoss):
    """Pair contrastive (Siamese) loss, Hadsell et al. 2006: ℓ = y·d² + (1 − y)·max(0, margin − d)².

    forward(x1, x2, y): x1, x2 (N, D); y (N) in [0, 1], 1 for similar pairs (bool or integer y is
    converted). distance: "euclidean" (d = ‖x1 − x2‖) or "cosine" (d = 1 − cos).
    Conventions: sentence-transformers' ContrastiveLoss (size_average) is 0.5 × this with
    distance="cosine"; pytorch-metric-learning's ContrastiveLoss uses separate positive and negative
    margins on all pairs of a batch and is a different loss.
    """

    def __init__(self, margin=1.0, distance="euclidean", reduction="mean", check_inputs=False):
        super().__init__()
        self._options = dict(margin=margin, distance=distance, reduction=reduction, check_inputs=check_inputs)
        _dry_run(self, _rows(1), _rows(1), torch.ones(1, dtype=torch.float64))

    def forward(self, x1, x2, y):
        return functional.pair_contrastive_loss(x1, x2, y, **self._options)


class TripletMarginLoss(_ClossLoss):
    """Triplet loss, FaceNet: ℓ = max(0, d(a, p) − d(a, n) + margin).

    forward(anchor, positive, negative), each (N, D). distance: "sqeuclidean" (default, FaceNet's
    ‖a − b‖²), "euclidean" or "cosine" (1 − cos); swap: d(a, n) → min(d(a, n), d(p, n)).
    Conventions: torch.nn.TripletMarginLoss(margin, p=2, eps=0, swap) is distance="euclidean"
    (torch's default eps = 1e-6 adds eps to a − b before the norm: a difference of about 1e-6);
    pytorch-metric-learning's TripletMarginLoss mines triplets from labels and then applies this
    loss with distance="euclidean" on normalised embeddings.
    """

    def __init__(self, margin=1.0, distance="sqeuclidean", swap=False, reduction="mean", check_inputs=False):
        super().__init__()
        self._options = dict(margin=margin, distance=distance, swap=swap, reduction=reduction,
                             check_inputs=check_inputs)
        _dry_run(self, _rows(1), _rows(1), _rows(1))

    def forward(self, anchor, positive, negative):
        return functional.triplet_margin_loss(anchor, positive, negative, **self._options)


class CosineContrastiveLoss(_ClossLoss):
    """Cosine contrastive loss: ℓ = y·(1 − c) + (1 − y)·max(0, c − margin)^q, c = cos(x1, x2),
    q = 2 if squared else 1.

    forward(x1, x2, y): y (N) in [0, 1], 1 for similar pairs.
    Conventions: torch.nn.CosineEmbeddingLoss(margin) with targets t ∈ {1, −1} is this loss with
    y = (t + 1) / 2 and squared=False.
    """

    def __init__(self, margin=0.0, squared=False, reduction="mean", check_inputs=False):
        super().__init__()
        self._options = dict(margin=margin, squared=squared, reduction=reduction, check_inputs=check_inputs)
        _dry_run(self, _rows(1), _rows(1), torch.ones(1, dtype=torch.float64))

    def forward(self, x1, x2, y):
        return functional.cosine_contrastive_loss(x1, x2, y, **self._options)


class NTXentLoss(_ClossLoss):
    """NT-Xent (SimCLR): ℓ_i = −s(i, p(i))/τ + log Σ_{k≠i} exp(s(i, k)/τ), mean over all 2N anchors.

    forward(z) with z = cat(z1, z2), (2N, D), rows i and i + N the two views of sample i; or
    forward(z1, z2) with two (N, D) views. normalize: cosine similarity (default) or dot product.
    path: the GPU algorithm, "auto", "fused" or "chunked".
    Conventions: pytorch-metric-learning's NTXentLoss(temperature) on embeddings cat(z1, z2) with
    labels arange(N) repeated twice is this loss; so is the official SupContrast SupConLoss
    without labels on features stack([z1, z2], dim=1) (with base_temperature = temperature).
    """

    def __init__(self, temperature=0.1, normalize=True, reduction="mean", check_inputs=False, path="auto"):
        super().__init__()
        self._options = dict(temperature=temperature, normalize=normalize, reduction=reduction,
                             check_inputs=check_inputs, path=path)
        _dry_run(self, _rows(2))

    def forward(self, z, z2=None):
        if z2 is not None:
            z = torch.cat([z, z2])
        return functional.ntxent_loss(z, **self._options)


class SupConLoss(_ClossLoss):
    """Supervised contrastive loss, SupCon L_out (Khosla et al. 2020):
    ℓ_i = (τ/τ_b)·(−mean_{p∈P(i)} s(i, p)/τ + log Σ_{a≠i} exp(s(i, a)/τ)), P(i) the other rows with
    label i's label. Anchors without a positive have ℓ_i = 0 and are left out of "mean".

    forward(features, labels=None):
      - features (M, D) and labels (M), integer, any values;
      - or the official code's layout: features (B, V, D), V views of B samples, and labels (B) or
        None (then each sample is its own class: SimCLR). It is flattened view-major, as the
        official code does (torch.cat(torch.unbind(features, dim=1))).
    base_temperature: None means equal to temperature (the contract's default).
    Conventions: the official SupContrast code (base_temperature=0.07, temperature=0.07) divides
    by all M anchors: multiply this "mean" by valid/M (functional.supcon_loss(..., return_valid=True))
    or use reduction="sum" and divide by M. pytorch-metric-learning's SupConLoss is this loss.
    """

    def __init__(self, temperature=0.07, base_temperature=None, normalize=True, reduction="mean",
                 check_inputs=False, path="auto"):
        super().__init__()
        self._options = dict(temperature=temperature, base_temperature=base_temperature, normalize=normalize,
                             reduction=reduction, check_inputs=check_inputs, path=path)
        _dry_run(self, _rows(2), torch.zeros(2, dtype=torch.int64))

    def forward(self, features, labels=None):
        if features.dim() == 3:
            samples, views = features.shape[:2]
            if labels is None:
                labels = torch.arange(samples, device=features.device)
            features = torch.cat(torch.unbind(features, dim=1))
            labels = labels.repeat(views)
        elif labels is None:
            raise ValueError("labels is None: give labels (M) with features (M, D), or features (B, V, D)")
        return functional.supcon_loss(features, labels, **self._options)


class ClipLoss(_ClossLoss):
    """CLIP's symmetric InfoNCE, and its relatives with hard negatives and queues (docs/contract.md
    §6): x_ij = s·â_i·b̂_j, ℓ_i = ½(L_ab(i) + L_ba(i)), L_ab(i) = −x_ii + log Σ_j exp(x_ij).

    forward(image_features, text_features, logit_scale=None, logit_bias=None, negatives=None,
    output_dict=False), OpenCLIP's ClipLoss.forward with closs's additions:
      image_features (N, D); text_features (N, D), or (N + K, D) with K extra negatives after the
      partners; negatives (K, D): more extra negatives, appended (hard negatives, a MoCo queue).
      logit_scale: s, a tensor that gets a gradient (OpenCLIP's model returns logit_scale.exp()) or
      a number; None: the constructor's. logit_bias: accepted for OpenCLIP's signature; a constant
      added to every logit cancels in each softmax, so the loss does not depend on it (its gradient
      is 0). output_dict: {"contrastive_loss": loss}, as OpenCLIP.
    Options: symmetric (False: a → b only), in_batch_negatives (False: MoCo v1/v2, each a_i against
    its partner and the extra negatives), normalize, grad_negatives (None: the extra negatives get a
    gradient when they need one; False: constants), reduction, check_inputs, path (GPU algorithm).
    Conventions: OpenCLIP's ClipLoss() on one process is ClipLoss()(img, txt, logit_scale) (its
    features are normalised already; normalising again changes no gradient that reaches the model,
    whose own normalisation projects it the same way). sentence-transformers'
    MultipleNegativesRankingLoss(scale=20) is ClipLoss(symmetric=False, logit_scale=20) with
    negatives = the hard negatives; MultipleNegativesSymmetricRankingLoss is symmetric=True; MoCo v2
    is ClipLoss(symmetric=False, in_batch_negatives=False, logit_scale=1/T)(q, k, negatives=queue).
    Across processes see closs.distributed.ClipLoss.
    """

    def __init__(self, symmetric=True, in_batch_negatives=True, normalize=True, grad_negatives=None,
                 reduction="mean", check_inputs=False, path="auto", logit_scale=1 / 0.07):
        super().__init__()
        self._options = dict(symmetric=symmetric, in_batch_negatives=in_batch_negatives, normalize=normalize,
                             grad_negatives=grad_negatives, reduction=reduction, check_inputs=check_inputs, path=path)
        self.logit_scale = logit_scale
        with torch.no_grad():
            functional.clip_loss(_rows(1), _rows(1), logit_scale, **self._options)

    def forward(self, image_features, text_features, logit_scale=None, logit_bias=None, negatives=None,
                output_dict=False):
        scale = self.logit_scale if logit_scale is None else logit_scale
        loss = functional.clip_loss(image_features, text_features, scale, negatives=negatives, **self._options)
        if isinstance(logit_bias, torch.Tensor) and logit_bias.requires_grad:
            loss = loss + 0 * logit_bias.sum()  # its gradient, 0, for DDP's bookkeeping
        return {"contrastive_loss": loss} if output_dict else loss

    def extra_repr(self):
        return super().extra_repr() + ", logit_scale=%r" % self.logit_scale


class SigLipLoss(_ClossLoss):
    """SigLIP's sigmoid loss (docs/contract.md §7): ℓ_i = Σ_j softplus(−z_ij·(s·â_i·b̂_j + β)), z_ij = 1
    for the partner and −1 for every other row of b, "mean" (1/N)·Σ_i ℓ_i.

    forward(image_features, text_features, logit_scale, logit_bias, negatives=None,
    output_dict=False), OpenCLIP's SigLipLoss.forward with closs's additions: logit_scale s and
    logit_bias β are tensors that get gradients (OpenCLIP's logit_scale.exp() and logit_bias) or
    numbers; logit_bias None means no bias; text_features may have K extra rows, and negatives
    (K, D) adds more: every extra row is a negative of every image (z = −1). Options as ClipLoss.
    Conventions: OpenCLIP's SigLipLoss() on one process is SigLipLoss()(img, txt, logit_scale,
    logit_bias) (the SigLIP paper initialises s = 10, β = −10). Across processes see
    closs.distributed.SigLipLoss.
    """

    def __init__(self, normalize=True, grad_negatives=None, reduction="mean", check_inputs=False, path="auto"):
        super().__init__()
        self._options = dict(normalize=normalize, grad_negatives=grad_negatives, reduction=reduction,
                             check_inputs=check_inputs, path=path)
        with torch.no_grad():
            functional.siglip_loss(_rows(1), _rows(1), **self._options)

    def forward(self, image_features, text_features, logit_scale, logit_bias, negatives=None, output_dict=False):
        loss = functional.siglip_loss(image_features, text_features, logit_scale, logit_bias, negatives=negatives,
                                      **self._options)
        return {"contrastive_loss": loss} if output_dict else loss
