"""The five losses as functions of tensors, differentiable through autograd.

Each runs closs on the tensors' device: the double-precision CPU reference for CPU tensors
(float32 and float64; float16/bfloat16 are computed from a float32 copy), the GPU kernels for CUDA
tensors (float32, float16, bfloat16; float32 accumulation) on the current stream. The loss is
float64 for float64 inputs and float32 otherwise; gradients come back in each input's dtype.

With reduction "mean" or "sum" and an input that needs a gradient, the forward computes the
gradients too (one pass; on the GPU the fused forward+backward) and the backward scales them by the
upstream gradient. With "none" the forward computes only the losses (NT-Xent and SupCon keep one
statistic per anchor on the GPU) and the backward runs closs's backward with the per-row upstream
gradient. Second derivatives are not supported.

The math of every loss and option is in docs/contract.md.
"""

import torch
from torch.autograd.function import once_differentiable

from . import _capi, _dispatch

_FIXED_ARGUMENTS = 3  # spec, params, vector: the arguments of _Loss.apply before the inputs


class _Loss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, spec, params, vector, *inputs):
        prepared, vector = _dispatch.prepare(spec, inputs, vector)
        want = list(ctx.needs_input_grad[_FIXED_ARGUMENTS:])
        fused = any(want) and params.reduction != _capi.REDUCTIONS["none"]
        grads_now = want if fused else [False] * len(want)  # the gradients this forward computes
        stats = None
        if prepared[0].device.type == "cpu":
            loss, grads, valid = _dispatch.reference(spec, params, prepared, vector, grads_now)
        else:
            loss, grads, valid, stats = _dispatch.gpu_forward(spec, params, prepared, vector, grads_now)
        ctx.spec, ctx.params, ctx.fused = spec, params, fused
        ctx.input_dtypes = [t.dtype for t in inputs]
        if fused:
            ctx.save_for_backward(*grads)
        elif any(want):
            ctx.save_for_backward(vector, stats, *prepared)
        loss = loss.to(torch.float64 if prepared[0].dtype == torch.float64 else torch.float32)
        if params.reduction != _capi.REDUCTIONS["none"]:
            loss = loss.reshape(())
        if spec.has_valid:
            ctx.mark_non_differentiable(valid)
            return loss, valid
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_loss, *unused_grad_valid):
        want = ctx.needs_input_grad[_FIXED_ARGUMENTS:]
        if ctx.fused:
            grads = [g * grad_loss if g is not None else None for g in ctx.saved_tensors]
        else:
            vector, stats, *prepared = ctx.saved_tensors
            if prepared[0].device.type == "cpu":
                _, grads, _ = _dispatch.reference(ctx.spec, ctx.params, prepared, vector, want, upstream=grad_loss)
            else:
                grads = _dispatch.gpu_backward(ctx.spec, ctx.params, prepared, vector, stats, grad_loss, want)
        grads = [g.to(dtype) if g is not None and w else None for g, w, dtype in zip(grads, want, ctx.input_dtypes)]
        return (None,) * _FIXED_ARGUMENTS + tuple(grads)


def pair_contrastive_loss(x1, x2, y, margin=1.0, distance="euclidean", reduction="mean", check_inputs=False):
    """Pair contrastive (Siamese) loss: y·d² + (1 − y)·max(0, margin − d)², y in [0, 1] (1 = similar),
    d = ‖x1 − x2‖ ("euclidean") or 1 − cos(x1, x2) ("cosine"). x1, x2: (N, D); y: (N)."""
    params = _capi.pair_params(margin, distance, reduction, check_inputs)
    return _Loss.apply(_dispatch.SPECS["pair"], params, y, x1, x2)


def triplet_margin_loss(anchor, positive, negative, margin=1.0, distance="sqeuclidean", swap=False,
                        reduction="mean", check_inputs=False):
    """Triplet loss: max(0, d(a, p) − d(a, n) + margin), d "sqeuclidean" (FaceNet's), "euclidean"
    (torch's with eps = 0) or "cosine" (1 − cos); swap: d(a, n) → min(d(a, n), d(p, n))."""
    params = _capi.triplet_params(margin, distance, swap, reduction, check_inputs)
    return _Loss.apply(_dispatch.SPECS["triplet"], params, None, anchor, positive, negative)


def cosine_contrastive_loss(x1, x2, y, margin=0.0, squared=False, reduction="mean", check_inputs=False):
    """Cosine contrastive loss: y·(1 − c) + (1 − y)·max(0, c − margin)^q, c = cos(x1, x2), q = 2 if
    squared else 1, y in [0, 1]."""
    params = _capi.cosine_params(margin, squared, reduction, check_inputs)
    return _Loss.apply(_dispatch.SPECS["cosine"], params, y, x1, x2)


def ntxent_loss(z, temperature=0.1, normalize=True, reduction="mean", check_inputs=False, path="auto"):
    """NT-Xent (SimCLR) of z = cat(z1, z2), (2N, D): rows i and i + N are two views of sample i.
    ℓ_i = −s(i, p(i))/τ + log Σ_{k≠i} exp(s(i, k)/τ), s cosine similarity (normalize) or dot product.
    path: the GPU algorithm, "auto", "fused" or "chunked" (ignored on the CPU)."""
    params = _capi.ntxent_params(temperature, normalize, reduction, check_inputs, path)
    return _Loss.apply(_dispatch.SPECS["ntxent"], params, None, z)


def supcon_loss(z, labels, temperature=0.07, base_temperature=None, normalize=True, reduction="mean",
                check_inputs=False, path="auto", return_valid=False):
    """Supervised contrastive loss (SupCon L_out) of z (M, D) with integer labels (M).
    ℓ_i = (τ/τ_b)·(−mean_{p∈P(i)} s(i, p)/τ + log Σ_{a≠i} exp(s(i, a)/τ)); anchors without a positive
    have ℓ_i = 0 and are left out of "mean". return_valid: also return the number of anchors with a
    positive, as a 0-d int64 tensor on z's device (reading it on the host synchronises)."""
    params = _capi.supcon_params(temperature, base_temperature, normalize, reduction, check_inputs, path)
    loss, valid = _Loss.apply(_dispatch.SPECS["supcon"], params, labels, z)
    return (loss, valid) if return_valid else loss
