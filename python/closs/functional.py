"""The five losses as functions of tensors, differentiable through autograd, over the closs
operators (_ops.py), so that torch.compile(fullgraph=True) and torch.export trace through them.

Each runs closs on the tensors' device: the double-precision CPU reference for CPU tensors
(float32 and float64; float16/bfloat16 are computed from a float32 copy), the GPU kernels for CUDA
tensors (float32, float16, bfloat16; float32 accumulation) on the current stream. The loss is
float64 for float64 inputs and float32 otherwise; gradients come back in each input's dtype.

With reduction "mean" or "sum" and an input that needs a gradient, the forward computes the
gradients too (closs::LOSS_forward_backward: one pass; on the GPU the fused forward+backward) and
the backward scales them by the upstream gradient. Otherwise (reduction "none", no gradient
wanted, or float16 inputs, whose gradients must see a loss scale before they are rounded: fuses)
closs::LOSS_forward computes only the losses (NT-Xent and SupCon keep one statistic per
anchor on the GPU) and the backward runs closs::LOSS_backward with the upstream gradient. Second
derivatives are not supported.

The two-tower losses, clip_loss and siglip_loss, take an image (or query) tower a (N, D), a text
(or document) tower b whose first N rows are the partners of a's rows, optional extra negatives
(hard negatives, a queue: more rows of b, or `negatives=`), and the logit scale (and SigLIP's bias)
as tensors that receive a gradient (_two_tower_ops.py has their operators).

The math of every loss and option is in docs/contract.md.
"""

import numbers

import torch

from . import _dispatch, _ops, _two_tower, _two_tower_ops


def fuses(reduction, given, prepared):
    """Whether the forward computes the gradients too (closs's one-pass forward+backward at upstream
    1; the backward then scales them): only for "mean" and "sum", when a gradient is wanted, and
    never for float16 inputs. Those would have their gradients rounded to float16 at upstream 1,
    before a GradScaler's scale multiplies them, so the scaler would protect nothing (SupCon, M =
    4096: 94% of the entries are below float16's smallest normal: bench/NOTES.md); closs's backward
    instead takes the real, scaled upstream and rounds g·scale once. given: the caller's tensors,
    prepared: the operators' (on the CPU float16 is computed in float32, but takes the same path)."""
    if reduction == "none" or not torch.is_grad_enabled() or not any(t.requires_grad for t in prepared):
        return False
    return not any(isinstance(t, torch.Tensor) and t.dtype == torch.float16 for t in given)


def _run(name, inputs, vector, options):
    """(loss, valid) of loss `name`: valid is SupCon's count of anchors with a positive, else None."""
    spec = _dispatch.SPECS[name]
    given = inputs
    inputs, vector = _dispatch.prepare(spec, inputs, vector)
    tensors = list(inputs) + ([vector] if spec.vector is not None else [])
    fused = fuses(options["reduction"], given, inputs)
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


# ---- two-tower losses -----------------------------------------------------------------------------

_TOWERS = {False: _dispatch.LossSpec("two-tower", ("image_features", "text_features")),
           True: _dispatch.LossSpec("two-tower", ("image_features", "text_features", "negatives"))}


def scalar(name, value, like):
    """A 0-d tensor of the loss's dtype on the features' device, differentiably converted from a
    tensor of one element (a learnable scale, exponentiated: OpenCLIP's logit_scale.exp()), or a
    constant from a number."""
    dtype = _two_tower.loss_dtype(like)
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or value.dtype.is_complex:
            raise ValueError("%s must hold one real value, got shape %s, %s" % (name, tuple(value.shape), value.dtype))
        return value.reshape(()).to(device=like.device, dtype=dtype)
    if not isinstance(value, numbers.Real):
        raise TypeError("%s must be a tensor or a number, got %s" % (name, type(value).__name__))
    return torch.full((), float(value), dtype=dtype, device=like.device)


def prepare_towers(image_features, text_features, negatives, grad_negatives):
    """(a, text, negatives, grad_negatives): the towers (and the extra negatives, or None) in one
    compute dtype, and whether the extra rows get a gradient (None: when they need one; a queue
    without requires_grad gets none)."""
    given = negatives is not None
    tensors, _ = _dispatch.prepare(_TOWERS[given], [image_features, text_features] + ([negatives] if given else []),
                                   None)
    if given and negatives.shape[1] != text_features.shape[1]:
        raise ValueError("negatives has %d columns but text_features has %d"
                         % (negatives.shape[1], text_features.shape[1]))
    if grad_negatives is None:
        grad_negatives = (negatives if given else text_features).requires_grad and torch.is_grad_enabled()
    return tensors[0], tensors[1], tensors[2] if given else None, bool(grad_negatives)


def _towers(image_features, text_features, negatives, grad_negatives):
    """(a, b = cat(text_features, negatives), grad_negatives) for the operators."""
    a, b, negatives, grad_negatives = prepare_towers(image_features, text_features, negatives, grad_negatives)
    return a, b if negatives is None else torch.cat([b, negatives]), grad_negatives


def _run_two_tower(kind, given, tensors, options):
    fused = fuses(options["reduction"], given, tensors)
    outputs = _two_tower_ops.OPERATORS[kind]["forward_backward" if fused else "forward"](*tensors, **options)
    return outputs if isinstance(outputs, torch.Tensor) else outputs[0]


def clip_loss(image_features, text_features, logit_scale=1 / 0.07, negatives=None, symmetric=True,
              in_batch_negatives=True, normalize=True, grad_negatives=None, reduction="mean", check_inputs=False,
              path="auto"):
    """CLIP (symmetric InfoNCE) of image_features a (N, D) against text_features b: x_ij = s·â_i·b̂_j,
    ℓ_i = ½(L_ab(i) + L_ba(i)) with L_ab(i) = −x_ii + log Σ_j exp(x_ij) over every row of b and
    L_ba(i) = −x_ii + log Σ_k exp(x_ki) over the N rows of a (docs/contract.md §6).

    text_features: (N, D), or (N + K, D) with K extra negatives after the partners; negatives:
    (K, D) more extra negatives (hard negatives, a MoCo queue), appended to b. logit_scale: s > 0,
    a tensor (OpenCLIP's logit_scale.exp(); it gets a gradient) or a number. symmetric=False keeps
    a → b only (sentence-transformers' MNRL: logit_scale=20); in_batch_negatives=False scores each
    a_i against its partner and the extra negatives only (MoCo v1/v2; needs symmetric=False).
    grad_negatives: whether the extra negatives get a gradient; None (default) gives them one when
    they need it (a queue without requires_grad costs no gradient work); False treats them as
    constants. path: the GPU algorithm (ignored on the CPU). Returns the loss: 0-d for "mean" and
    "sum", one per pair for "none"."""
    a, b, grad_negatives = _towers(image_features, text_features, negatives, grad_negatives)
    scale = scalar("logit_scale", logit_scale, a)
    options = dict(symmetric=bool(symmetric), in_batch_negatives=bool(in_batch_negatives), normalize=bool(normalize),
                   grad_negatives=grad_negatives, reduction=reduction, check_inputs=bool(check_inputs), path=path)
    return _run_two_tower("clip", [image_features, text_features, negatives], [a, b, scale], options)


def siglip_loss(image_features, text_features, logit_scale=10.0, logit_bias=-10.0, negatives=None, normalize=True,
                grad_negatives=None, reduction="mean", check_inputs=False, path="auto"):
    """SigLIP (sigmoid loss) of image_features a (N, D) against text_features b:
    ℓ_i = Σ_j softplus(−z_ij·(s·â_i·b̂_j + β)), z_ij = 1 for the partner (j = i), −1 for every other
    row of b, extra negatives included; "mean" is (1/N)·Σ_i ℓ_i, OpenCLIP's SigLipLoss
    (docs/contract.md §7). logit_scale s > 0 and logit_bias β: tensors (they get gradients; OpenCLIP's
    logit_scale.exp() and logit_bias) or numbers (defaults: the SigLIP paper's initialisation);
    logit_bias None means 0. Other arguments as clip_loss."""
    a, b, grad_negatives = _towers(image_features, text_features, negatives, grad_negatives)
    scale = scalar("logit_scale", logit_scale, a)
    bias = scalar("logit_bias", 0.0 if logit_bias is None else logit_bias, a)
    options = dict(normalize=bool(normalize), grad_negatives=grad_negatives, reduction=reduction,
                   check_inputs=bool(check_inputs), path=path)
    return _run_two_tower("siglip", [image_features, text_features, negatives], [a, b, scale, bias], options)
