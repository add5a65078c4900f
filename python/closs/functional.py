"""The five losses as functions of tensors, differentiable through autograd, over the closs
operators (_ops.py), so that torch.compile(fullgraph=True) and torch.export trace through them.

Each runs closs on the tensors' device: the double-precision CPU reference for CPU tensors
(float32 and float64; float16/bfloat16 are computed from a float32 copy), the GPU kernels for CUDA
tensors (float32, float16, bfloat16; float32 accumulation) on the current stream. The loss is
float64 for float64 inputs and float32 otherwise; gradients come back in each input's dtype.

With reduction "mean" or "sum" and an input that needs a gradient, the forward computes the
gradients too (closs::LOSS_forward_backward: one pass; on the GPU the fused forward+backward) and
the backward scales them by the upstream gradient. Otherwise (reduction "none", or no gradient
wanted) closs::LOSS_forward computes only the losses (NT-Xent and SupCon keep one statistic per
anchor on the GPU) and the backward runs closs::LOSS_backward with the upstream gradient. Second
derivatives are not supported.

The math of every loss and option is in docs/contract.md.
"""

import torch

from . import _dispatch, _ops


def _run(name, inputs, vector, options):
    """(loss, valid) of loss `name`: valid is SupCon's count of anchors with a positive, else None."""
    spec = _dispatch.SPECS[name]
    inputs, vector = _dispatch.prepare(spec, inputs, vector)
    tensors = list(inputs) + ([vector] if spec.vector is not None else [])
    fused = options["reduction"] != "none" and torch.is_grad_enabled() and any(t.requires_grad for t in inputs)
    outputs = _ops.OPERATORS[name]["forward_backward" if fused else "forward"](*tensors, **options)
    if not spec.has_valid:
        return (outputs if isinstance(outputs, torch.Tensor) else outputs[0]), None
    return outputs[0], outputs[1 if fused else 2]


def pair_contrastive_loss(x1, x2, y, margin=1.0, distance="euclidean", reduction="mean", check_inputs=False):
    """Pair contrastive (Siamese) loss: y·d² + (1 − y)·max(0, margin − d)², y in [0, 1] (1 = similar),
    d = ‖x1 − x2‖ ("euclidean") or 1 − cos(x1, x2) ("cosine"). x1, x2: (N, D); y: (N)."""
    options = dict(margin=float(margin), distance=distance, reduction=reduction, check_inputs=bool(check_inputs))
    return _run("pair", [x1, x2], y, options)[0]


def triplet_margin_loss(anchor, positive, negative, margin=1.0, distance="sqeuclidean", swap=False,
                        reduction="mean", check_inputs=False):
    """Triplet loss: max(0, d(a, p) − d(a, n) + margin), d "sqeuclidean" (FaceNet's), "euclidean"
    (torch's with eps = 0) or "cosine" (1 − cos); swap: d(a, n) → min(d(a, n), d(p, n))."""
    options = dict(margin=float(margin), distance=distance, swap=bool(swap), reduction=reduction,
                   check_inputs=bool(check_inputs))
    return _run("triplet", [anchor, positive, negative], None, options)[0]


def cosine_contrastive_loss(x1, x2, y, margin=0.0, squared=False, reduction="mean", check_inputs=False):
    """Cosine contrastive loss: y·(1 − c) + (1 − y)·max(0, c − margin)^q, c = cos(x1, x2), q = 2 if
    squared else 1, y in [0, 1]."""
    options = dict(margin=float(margin), squared=bool(squared), reduction=reduction, check_inputs=bool(check_inputs))
    return _run("cosine", [x1, x2], y, options)[0]


def ntxent_loss(z, temperature=0.1, normalize=True, reduction="mean", check_inputs=False, path="auto"):
    """NT-Xent (SimCLR) of z = cat(z1, z2), (2N, D): rows i and i + N are two views of sample i.
    ℓ_i = −s(i, p(i))/τ + log Σ_{k≠i} exp(s(i, k)/τ), s cosine similarity (normalize) or dot product.
    path: the GPU algorithm, "auto", "fused" or "chunked" (ignored on the CPU)."""
    options = dict(temperature=float(temperature), normalize=bool(normalize), reduction=reduction,
                   check_inputs=bool(check_inputs), path=path)
    return _run("ntxent", [z], None, options)[0]


def supcon_loss(z, labels, temperature=0.07, base_temperature=None, normalize=True, reduction="mean",
                check_inputs=False, path="auto", return_valid=False):
    """Supervised contrastive loss (SupCon L_out) of z (M, D) with integer labels (M).
    ℓ_i = (τ/τ_b)·(−mean_{p∈P(i)} s(i, p)/τ + log Σ_{a≠i} exp(s(i, a)/τ)); anchors without a positive
    have ℓ_i = 0 and are left out of "mean". return_valid: also return the number of anchors with a
    positive, as a 0-d int64 tensor on z's device (reading it on the host synchronises)."""
    options = dict(temperature=float(temperature),
                   base_temperature=0.0 if base_temperature is None else float(base_temperature),  # 0: = τ
                   normalize=bool(normalize), reduction=reduction, check_inputs=bool(check_inputs), path=path)
    loss, valid = _run("supcon", [z], labels, options)
    return (loss, valid) if return_valid else loss
