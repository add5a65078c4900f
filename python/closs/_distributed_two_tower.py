"""CLIP and SigLIP over torch.distributed (closs.distributed.ClipLoss, SigLipLoss, clip_loss,
siglip_loss): every rank's pairs against every rank's rows, each tower gathered once, no gradient
of any embedding reduced or exchanged.

Each of the W ranks passes its own n pairs (image_features a_r, text_features b_r: n × D) and
optionally k extra negatives (the same n and k on every rank). The global batch is a = cat(a_r),
b = cat(b_r of every rank, then the negatives of every rank), in rank order (docs/contract.md,
"Row ranges", CLIP and SigLIP). One step, for rank r:
  forward   all_gather_into_tensor of a, of b and of the negatives, straight into the global
            buffers (N·D and (N + K)·D values; no copy); closs's row range computes the loss of
            the rank's pairs against all rows; one all_reduce of the loss; for CLIP an all-gather
            of the statistics of the rank's pairs (2n floats: the log-sum-exp of each pair's
            negatives in both directions, N each way globally).
  backward  closs computes the gradient of the rank's own rows (its a_r, b_r and negatives) from
            the gathered rows and statistics, and its share of ∂L/∂s (and ∂L/∂β); one
            all_reduce (a sum) of those shares. ("none" all-gathers the N upstream gradients.)
Per-rank memory: the gathered towers, O((N + K)·D), and O(N) statistics; never an n × N matrix.

Scaling, as for NT-Xent and SupCon (distributed.py): the loss is the global loss L on every rank
and the gradient of rank r's rows is ∂L/∂(rows of r), so summing the ranks' parameter gradients
gives ∂L/∂θ (ddp=False); with ddp=True (the model in DistributedDataParallel, which averages) they
are W times that. The logit scale and bias are replicated on every rank: each rank returns the
full gradient T (the all-reduced sum of the shares) divided by W, so that the ranks' sum is T
(ddp=False), or times W, so that DDP's average is T (ddp=True): every rank gets the same value.
"""

import torch
import torch.distributed as dist

from . import _capi, _two_tower
from ._ops import refuse_double_backward
from .distributed import _check_backend, _gather, _world
from .functional import prepare_towers, scalar


def _check_equal_counts(counts, world, group, device):
    """Every rank must pass as many pairs and negatives as every other (the gathers need it)."""
    local = torch.tensor(counts, dtype=torch.int64, device=device)
    gathered = _gather(local, world, group).reshape(world, len(counts)).tolist()
    if any(row != gathered[0] for row in gathered):
        raise ValueError("closs.distributed needs the same number of pairs and of extra negatives on every "
                         "rank; the ranks have (pairs, negatives) %s (pad the batches, or drop the last uneven "
                         "one)" % [tuple(row) for row in gathered])


def _gather_into(out, tensor, group):
    dist.all_gather_into_tensor(out, tensor.contiguous(), group=group)


class _DistributedTwoTower(torch.autograd.Function):
    @staticmethod
    def forward(ctx, kind, params, group, ddp, check_rows, a, text, negatives, scale, bias):
        world, rank = _world(group)
        device, dim = a.device, a.shape[1]
        _check_backend(group, device)
        pairs, extra = a.shape[0], 0 if negatives is None else negatives.shape[0]
        if text.shape[0] != pairs:
            raise ValueError("text_features has %d rows and image_features %d: each rank passes its pairs, and "
                             "extra negatives as negatives=" % (text.shape[0], pairs))
        if check_rows:
            _check_equal_counts([pairs, extra], world, group, device)
        total, total_extra = world * pairs, world * extra
        a_all = a.new_empty((total, dim))
        b_all = a.new_empty((total + total_extra, dim))
        _gather_into(a_all, a, group)
        _gather_into(b_all[:total], text, group)
        if extra:
            _gather_into(b_all[total:], negatives, group)

        ranged = type(params).from_buffer_copy(params)
        ranged.row_begin, ranged.row_count = rank * pairs, pairs
        own_negatives = extra if params.grad_negatives else 0
        ranged.negatives_begin, ranged.negatives_count = rank * own_negatives, own_negatives
        loss, row_stats, column_stats = _two_tower.forward(kind, ranged, a_all, b_all, scale, bias)
        none = params.reduction == _capi.REDUCTIONS["none"]
        if not none:  # the ranks' shares add up to the global loss ("mean" divides by the global N)
            total_loss = loss.to(torch.float64).reshape(1)
            dist.all_reduce(total_loss, group=group)
            loss = total_loss.to(loss.dtype).reshape(())

        ctx.kind, ctx.params, ctx.group, ctx.ddp, ctx.world = kind, ranged, group, ddp, world
        ctx.pairs, ctx.extra = pairs, own_negatives
        stats = []
        if kind == "clip":  # every pair's statistics, in global order: 2n floats from each rank (every
            # rank gathers, wanted here or not: another rank's inputs may need a gradient)
            mine = torch.stack([row_stats, column_stats if column_stats.numel() else row_stats])
            gathered = _gather(mine.unsqueeze(0), world, group)  # (W, 2, n)
            stats = list(gathered.transpose(0, 1).reshape(2, total).contiguous())
        if any(ctx.needs_input_grad[5:]):
            ctx.save_for_backward(a_all, b_all, scale, bias, *stats)
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        refuse_double_backward("distributed " + ctx.kind, grad_loss)
        a_all, b_all, scale, bias, *stats = ctx.saved_tensors
        upstream = grad_loss.reshape(-1)
        if ctx.params.reduction == _capi.REDUCTIONS["none"]:  # every pair's upstream gradient
            upstream = _gather(upstream.contiguous(), ctx.world, ctx.group)
        grads = _two_tower.backward(ctx.kind, ctx.params, a_all, b_all, scale, bias, stats or None, upstream)
        grad_a, grad_b, scalars = grads[0], grads[1], grads[2:]
        shares = torch.stack([g.to(torch.float64) for g in scalars])
        dist.all_reduce(shares, group=ctx.group)  # the full ∂L/∂s (and ∂L/∂β) on every rank
        factor = ctx.world if ctx.ddp else 1
        scalar_grads = [(total * (1 if ctx.ddp else 1 / ctx.world)).to(g.dtype) for total, g in zip(shares, scalars)]
        grad_text, grad_negatives = grad_b[:ctx.pairs], grad_b[ctx.pairs:] if ctx.extra else None
        rows = [g * factor if g is not None else None for g in (grad_a, grad_text, grad_negatives)]
        return (None, None, None, None, None, *rows, scalar_grads[0], scalar_grads[1] if len(scalar_grads) > 1 else None)


def _run(kind, params, group, ddp, check_rows, image_features, text_features, negatives, grad_negatives, scale,
         bias=None):
    a, text, negatives, grad_negatives = prepare_towers(image_features, text_features, negatives, grad_negatives)
    params.grad_negatives = int(grad_negatives)
    scale = scalar("logit_scale", scale, a)
    bias = scalar("logit_bias", 0.0 if bias is None else bias, a) if kind == "siglip" else None
    return _DistributedTwoTower.apply(kind, params, group, ddp, check_rows, a, text, negatives, scale, bias)


def clip_loss(image_features, text_features, logit_scale=1 / 0.07, negatives=None, symmetric=True,
              in_batch_negatives=True, normalize=True, grad_negatives=None, reduction="mean", group=None, ddp=False,
              path="auto", check_rows=True):
    """CLIP of the global batch (every rank's pairs, then every rank's extra negatives) from this
    rank's image_features and text_features (n, D) and negatives (k, D), the same n and k on every
    rank. "mean" and "sum": the global loss on every rank; "none": this rank's pairs' losses. ddp:
    the model is in DistributedDataParallel (module docstring); check_rows as closs.distributed.ntxent_loss
    (the pair and negative counts). Options as closs.clip_loss."""
    params = _capi.clip_params(1.0, symmetric, in_batch_negatives, normalize, True, reduction, False, path)
    return _run("clip", params, group, ddp, check_rows, image_features, text_features, negatives, grad_negatives,
                logit_scale)


def siglip_loss(image_features, text_features, logit_scale=10.0, logit_bias=-10.0, negatives=None, normalize=True,
                grad_negatives=None, reduction="mean", group=None, ddp=False, path="auto", check_rows=True):
    """SigLIP of the global batch from this rank's pairs (and extra negatives), as clip_loss: OpenCLIP's
    SigLipLoss across ranks without its neighbour exchange. Options as closs.siglip_loss."""
    params = _capi.siglip_params(1.0, 0.0, normalize, True, reduction, False, path)
    return _run("siglip", params, group, ddp, check_rows, image_features, text_features, negatives, grad_negatives,
                logit_scale, logit_bias)


class ClipLoss(torch.nn.Module):
    """closs.distributed.clip_loss as a module with closs.ClipLoss's forward (OpenCLIP's
    signature): forward(image_features, text_features, logit_scale=None, logit_bias=None,
    negatives=None, output_dict=False), this rank's pairs. It replaces OpenCLIP's
    ClipLoss(local_loss=True, gather_with_grad=True, rank, world_size)."""

    def __init__(self, symmetric=True, in_batch_negatives=True, normalize=True, grad_negatives=None,
                 reduction="mean", group=None, ddp=False, path="auto", logit_scale=1 / 0.07, check_rows=True):
        super().__init__()
        self._options = dict(symmetric=symmetric, in_batch_negatives=in_batch_negatives, normalize=normalize,
                             grad_negatives=grad_negatives, reduction=reduction, group=group, ddp=ddp, path=path,
                             check_rows=check_rows)
        self.logit_scale = logit_scale

    def forward(self, image_features, text_features, logit_scale=None, logit_bias=None, negatives=None,
                output_dict=False):
        scale = self.logit_scale if logit_scale is None else logit_scale
        loss = clip_loss(image_features, text_features, scale, negatives=negatives, **self._options)
        if isinstance(logit_bias, torch.Tensor) and logit_bias.requires_grad:
            loss = loss + 0 * logit_bias.sum()  # cancels in the softmax: gradient 0, as closs.ClipLoss
        return {"contrastive_loss": loss} if output_dict else loss


class SigLipLoss(torch.nn.Module):
    """closs.distributed.siglip_loss as a module with closs.SigLipLoss's forward:
    forward(image_features, text_features, logit_scale, logit_bias, negatives=None,
    output_dict=False). It replaces OpenCLIP's SigLipLoss(rank, world_size) and its neighbour
    exchange."""

    def __init__(self, normalize=True, grad_negatives=None, reduction="mean", group=None, ddp=False, path="auto",
                 check_rows=True):
        super().__init__()
        self._options = dict(normalize=normalize, grad_negatives=grad_negatives, reduction=reduction, group=group,
                             ddp=ddp, path=path, check_rows=check_rows)

    def forward(self, image_features, text_features, logit_scale, logit_bias, negatives=None, output_dict=False):
        loss = siglip_loss(image_features, text_features, logit_scale, logit_bias, negatives=negatives,
                           **self._options)
        return {"contrastive_loss": loss} if output_dict else loss
