"""NT-Xent and SupCon over torch.distributed: every rank's anchors against every rank's rows, with
one all-gather of the embeddings and no gradient all-reduce. CLIP and SigLIP (ClipLoss, SigLipLoss,
clip_loss, siglip_loss) work the same way: _distributed_two_tower.py.

Each of the W ranks of a process group passes its own rows; the loss is that of the global batch
(all ranks' rows, see below), on every rank, and autograd gives each rank the exact gradient of
that loss with respect to its own rows. One step, for a rank that owns n of the M global rows:
  forward   all_gather_into_tensor of z (M·D values) and of SupCon's labels; closs computes the
            statistics (one log-sum-exp per anchor) and the losses of the rank's n anchors against
            all M rows (closs's row range, docs/contract.md "Row ranges"); one all_reduce of the
            loss (and of SupCon's valid count); an all-gather of the statistics (M floats).
  backward  closs computes the gradient of the rank's n rows from the gathered statistics: the
            gradient of a row needs only every anchor's statistic, never another rank's gradient,
            so no M × D gradient is ever reduced or scattered. ("none" all-gathers the M
            upstream gradients first.)
Compute per rank is n·M·D multiply-adds each way.

The global batch:
  SupCon   rows and labels concatenated in rank order (a single process's `cat` of the ranks').
  NT-Xent  each rank passes its z = cat(z1, z2) (2b rows, as ntxent_loss takes), and the global
           batch pairs the views across ranks: cat(z1 of all ranks, z2 of all ranks), whose row i
           is paired with row i + M/2. A rank's anchors are then two ranges of that batch.
Every rank must pass the same number of rows (checked: a clear error otherwise; check_rows=False
skips the check's all-gather and host synchronisation), the same options
and the same process group, and call backward whenever another does (the collectives pair up).

Scaling. The loss is the global loss L on every rank, and the gradient of rank r's rows is
exactly ∂L/∂z_r: summing the ranks' parameter gradients gives the single-process ∂L/∂θ.
DistributedDataParallel averages gradients over the W ranks instead of summing them, which would
give ∂L/∂θ / W; pass `ddp=True` when the model is wrapped in DDP, and the backward returns
W·∂L/∂z_r so that DDP's average is exactly ∂L/∂θ.

Backends: NCCL for CUDA tensors, gloo for CPU tensors (the group's backend must match z's device).
"""

import ctypes

import torch
import torch.distributed as dist

from . import _capi, _dispatch
from ._arguments import CallArguments
from ._ops import refuse_double_backward

__all__ = ["ntxent_loss", "supcon_loss", "NTXentLoss", "SupConLoss", "clip_loss", "siglip_loss", "ClipLoss",
           "SigLipLoss"]


def _world(group):
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError("closs.distributed needs an initialised torch.distributed process group "
                           "(torch.distributed.init_process_group)")
    return dist.get_world_size(group), dist.get_rank(group)


def _check_backend(group, device):
    backend = str(dist.get_backend(group)).lower()
    if backend == "nccl" and device.type != "cuda":
        raise ValueError("the process group's backend is NCCL, which takes CUDA tensors; z is on %s "
                         "(use a gloo group for CPU tensors)" % device)
    if backend == "gloo" and device.type != "cpu":
        raise ValueError("the process group's backend is gloo, used here for CPU tensors; z is on %s "
                         "(use an NCCL group for CUDA tensors)" % device)


def _gather(tensor, world, group):
    """all_gather_into_tensor along dim 0: (world · rows, ...) in rank order."""
    out = torch.empty((world * tensor.shape[0],) + tuple(tensor.shape[1:]), dtype=tensor.dtype,
                      device=tensor.device)
    dist.all_gather_into_tensor(out, tensor.contiguous(), group=group)
    return out


def _check_equal_rows(rows, world, group, device):
    counts = _gather(torch.tensor([rows], dtype=torch.int64, device=device), world, group).tolist()
    if len(set(counts)) != 1:
        raise ValueError("closs.distributed needs the same number of rows on every rank; the ranks "
                         "have %s (pad the batches, or drop the last uneven one)" % counts)


class _Layout:
    """Where a rank's rows sit in the global batch: its anchor ranges (begin, count), in the order
    of its local rows, and the permutation from rank-ordered gathers to global row order."""

    def __init__(self, ntxent, rows, world, rank):
        self.ntxent, self.world = ntxent, world
        if ntxent:
            half, global_half = rows // 2, world * (rows // 2)
            self.ranges = [(rank * half, half), (global_half + rank * half, half)]
        else:
            self.ranges = [(rank * rows, rows)]

    def to_global(self, gathered):
        """Rank-ordered gather (world · rows, ...) → global row order. For NT-Xent each rank's
        block is [z1; z2]: the global batch takes every rank's z1, then every rank's z2."""
        if not self.ntxent:
            return gathered
        rest = tuple(gathered.shape[1:])
        blocks = gathered.reshape((self.world, 2, -1) + rest)
        return blocks.transpose(0, 1).reshape((-1,) + rest).contiguous()


def _range_params(params, begin, count):
    ranged = type(params).from_buffer_copy(params)
    ranged.row_begin, ranged.row_count = begin, count
    return ranged


def _forward_range(spec, params, z_all, labels_all):
    """The range's loss (1 value, or count for NONE), statistics (count) and valid count."""
    rows, device = params.row_count, z_all.device
    cpu = device.type == "cpu"
    loss = torch.empty(_dispatch.loss_length(params, rows), dtype=torch.float64 if cpu else torch.float32,
                       device=device)
    stats = torch.empty(rows, dtype=loss.dtype, device=device)
    valid = torch.zeros((), dtype=torch.int64, device=device)
    outputs = CallArguments().output(loss).output(stats)
    if spec.has_valid:
        outputs.output(valid)
    if cpu:
        args = _dispatch.add_vector(CallArguments(ctypes.byref(params)).matrix(z_all), spec, labels_all)
        args.extend(outputs).call("closs_ref_%s_forward" % spec.name)
    else:
        _dispatch._gpu_call(spec, params, "forward", [z_all], labels_all, outputs)
    return loss, stats, valid


def _backward_range(spec, params, z_all, labels_all, stats_all, upstream):
    """The gradient of the range's rows (count × D) of the global loss."""
    cpu = z_all.device.type == "cpu"
    grad = torch.empty((params.row_count, z_all.shape[1]), dtype=torch.float64 if cpu else z_all.dtype,
                       device=z_all.device)
    compute = torch.float64 if cpu else torch.float32
    outputs = CallArguments().input(stats_all, compute).input(upstream, compute)
    if cpu:
        args = _dispatch.add_vector(CallArguments(ctypes.byref(params)).matrix(z_all), spec, labels_all)
        args.extend(outputs.output(grad)).call("closs_ref_%s_backward" % spec.name)
    else:
        _dispatch._gpu_call(spec, params, "backward", [z_all], labels_all, outputs.gradient(grad))
    return grad


class _DistributedLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, spec, params, group, ddp, check_rows, z, labels):
        world, rank = _world(group)
        (prepared,), labels = _dispatch.prepare(spec, [z], labels)
        device, rows = prepared.device, prepared.shape[0]
        _check_backend(group, device)
        if check_rows:
            _check_equal_rows(rows, world, group, device)
        if spec.name == "ntxent" and rows % 2:
            raise ValueError("z has %d rows: each rank's NT-Xent z is cat(z1, z2), an even number of rows"
                             % rows)
        layout = _Layout(spec.name == "ntxent", rows, world, rank)
        z_all = layout.to_global(_gather(prepared, world, group))
        # int64 on every rank: a rank's int32 labels would make its gather a different size.
        labels_all = _gather(labels.to(torch.int64), world, group) if spec.vector else None

        pieces = [_forward_range(spec, _range_params(params, begin, count), z_all, labels_all)
                  for begin, count in layout.ranges]
        loss = torch.cat([p[0] for p in pieces])
        stats = torch.cat([p[1] for p in pieces])
        none = params.reduction == _capi.REDUCTIONS["none"]
        if not none:
            loss = loss.sum().reshape(1)
        valid = sum(p[2] for p in pieces)
        # One all_reduce: the ranks' shares of the loss (MEAN over the global count already) and
        # of SupCon's valid count; "none" keeps this rank's anchors' losses.
        reduced = ([] if none else [loss.to(torch.float64)])
        reduced += [valid.to(torch.float64).reshape(1)] if spec.has_valid else []
        if reduced:
            totals = torch.cat(reduced)
            dist.all_reduce(totals, group=group)
            if not none:
                loss = totals[:1]
            valid = totals[-1].to(torch.int64)

        ctx.spec, ctx.params, ctx.group, ctx.ddp = spec, params, group, ddp
        ctx.layout, ctx.world, ctx.input_dtype = layout, world, z.dtype
        # Every rank gathers the statistics, wanted here or not: the collectives must pair up
        # across ranks, and another rank's z may need a gradient where this one's does not.
        stats_all = layout.to_global(_gather(stats, world, group))
        if ctx.needs_input_grad[5]:
            ctx.save_for_backward(z_all, labels_all, stats_all)
        loss = loss.to(torch.float64 if prepared.dtype == torch.float64 else torch.float32)
        if not none:
            loss = loss.reshape(())
        if spec.has_valid:
            ctx.mark_non_differentiable(valid)
            return loss, valid
        return loss

    @staticmethod
    def backward(ctx, grad_loss, *unused_grad_valid):
        refuse_double_backward("distributed " + ctx.spec.name, grad_loss)
        z_all, labels_all, stats_all = ctx.saved_tensors
        upstream = grad_loss.reshape(-1)
        if ctx.params.reduction == _capi.REDUCTIONS["none"]:  # every anchor's upstream gradient
            upstream = ctx.layout.to_global(_gather(upstream.contiguous(), ctx.world, ctx.group))
        grad = torch.cat([_backward_range(ctx.spec, _range_params(ctx.params, begin, count), z_all,
                                          labels_all, stats_all, upstream)
                          for begin, count in ctx.layout.ranges])
        if ctx.ddp:
            grad = grad * ctx.world
        return None, None, None, None, None, grad.to(ctx.input_dtype), None


def ntxent_loss(z, temperature=0.1, normalize=True, reduction="mean", group=None, ddp=False,
                path="auto", check_rows=True):
    """NT-Xent of the global batch cat(z1 of every rank, z2 of every rank), from this rank's
    z = cat(z1, z2) (2b rows, the same b on every rank). "mean" and "sum": the global loss on every
    rank; "none": the losses of this rank's 2b anchors. ddp: scale the gradient by the world size
    for DistributedDataParallel's averaging (module docstring). check_rows: check that every rank
    passes as many rows (an all-gather and a host synchronisation per call; False skips it, for
    CUDA graph capture and fullgraph compile, when every batch has the same rows on every rank:
    uneven rows then make the collectives mismatch). Options as closs.ntxent_loss."""
    params = _capi.ntxent_params(temperature, normalize, reduction, False, path)
    return _DistributedLoss.apply(_dispatch.SPECS["ntxent"], params, group, ddp, check_rows, z, None)


def supcon_loss(z, labels, temperature=0.07, base_temperature=None, normalize=True, reduction="mean",
                group=None, ddp=False, path="auto", return_valid=False, check_rows=True):
    """SupCon of the global batch (every rank's rows and labels, in rank order), from this rank's
    z (n, D) and labels (n), the same n on every rank. "mean" divides by the anchors of the whole
    batch that have a positive; return_valid gives that global count. "none": this rank's anchors'
    losses. ddp and check_rows as in ntxent_loss. Options as closs.supcon_loss."""
    params = _capi.supcon_params(temperature, base_temperature, normalize, reduction, False, path)
    loss, valid = _DistributedLoss.apply(_dispatch.SPECS["supcon"], params, group, ddp, check_rows, z, labels)
    return (loss, valid) if return_valid else loss


class NTXentLoss(torch.nn.Module):
    """closs.distributed.ntxent_loss as a module: forward(z) with this rank's z = cat(z1, z2)."""

    def __init__(self, temperature=0.1, normalize=True, reduction="mean", group=None, ddp=False,
                 path="auto", check_rows=True):
        super().__init__()
        self._options = dict(temperature=temperature, normalize=normalize, reduction=reduction,
                             group=group, ddp=ddp, path=path, check_rows=check_rows)

    def forward(self, z):
        return ntxent_loss(z, **self._options)


class SupConLoss(torch.nn.Module):
    """closs.distributed.supcon_loss as a module: forward(z, labels), this rank's rows; z may also
    be (n, V, D) views, as closs.SupConLoss takes (flattened view-major per rank)."""

    def __init__(self, temperature=0.07, base_temperature=None, normalize=True, reduction="mean",
                 group=None, ddp=False, path="auto", check_rows=True):
        super().__init__()
        self._options = dict(temperature=temperature, base_temperature=base_temperature,
                             normalize=normalize, reduction=reduction, group=group, ddp=ddp, path=path,
                             check_rows=check_rows)

    def forward(self, z, labels):
        if z.dim() == 3:  # (n, views, D): the official SupContrast layout, per rank
            views = z.shape[1]
            z = torch.cat(torch.unbind(z, dim=1), dim=0)
            labels = labels.repeat(views)
        return supcon_loss(z, labels, **self._options)


from ._distributed_two_tower import ClipLoss, SigLipLoss, clip_loss, siglip_loss  # noqa: E402 (uses the above)
