"""closs.distributed's CLIP and SigLIP against a single process on the concatenated batch: 2 and 4
CPU processes with gloo on the loopback interface, float64, every rank's loss and the gradients of
its own rows (image, text, extra negatives) and of the logit scale and bias within 1e-10 of the
single process's; CLIP symmetric, MNRL with hard negatives, MoCo's queue without a gradient, SigLIP
with extra negatives; "mean", "sum" and "none"; the DDP scaling; uneven counts refused on every
rank; and NCCL with CUDA tensors where GPUs are present (skipped otherwise).

Each world is one torch.multiprocessing.spawn running every case, as test_distributed.py."""

import pytest
import torch

import closs
import closs.distributed
from test_distributed import _close, _finish, _init, spawn_nccl_world, spawn_world

# (kind, options, extra negatives per rank, whether they need a gradient)
CASES = [
    ("clip", {}, 0, False),
    ("clip", {}, 2, True),
    ("clip", {"symmetric": False, "logit_scale": 20.0}, 3, True),  # MNRL with hard negatives
    ("clip", {"symmetric": False, "in_batch_negatives": False}, 4, False),  # MoCo v2: a queue
    ("siglip", {}, 0, False),
    ("siglip", {}, 2, True),
]


def _global_batch(seed, world, pairs, extra, dim=5):
    generator = torch.Generator().manual_seed(seed)
    draw = lambda *shape: torch.randn(*shape, generator=generator, dtype=torch.float64)  # noqa: E731
    image, text, negatives = draw(world * pairs, dim), draw(world * pairs, dim), draw(world * extra, dim)
    text += 0.5 * image  # partners that resemble each other, as after some training
    upstream = torch.rand(world * pairs, generator=generator, dtype=torch.float64) + 0.5
    return image, text, negatives, upstream


def _run(kind, options, tensors, negatives, module=closs):
    options = dict(options)
    scale = tensors[2] if "logit_scale" not in options else options.pop("logit_scale")
    function = module.clip_loss if kind == "clip" else module.siglip_loss
    arguments = [tensors[0], tensors[1], scale] + ([tensors[3]] if kind == "siglip" else [])
    return function(*arguments, negatives=negatives, **options)


def _single_and_distributed(kind, options, extra, negatives_grad, reduction, rank, world, device, ddp=False,
                            seed=0):
    pairs = 4
    dtype = torch.float64 if device.type == "cpu" else torch.float32  # closs takes no float64 on CUDA
    image, text, negatives, upstream = (t.to(device, dtype) for t in _global_batch(seed, world, pairs, extra))
    scalars = [torch.tensor(3.0, dtype=image.dtype, device=device), torch.tensor(-2.0, dtype=image.dtype,
                                                                                device=device)]
    options = dict(options, reduction=reduction)

    def leaves(*tensors):
        return [t.clone().requires_grad_(True) for t in tensors]

    whole = leaves(image, text, *scalars)
    whole_negatives = negatives.clone().requires_grad_(negatives_grad) if extra else None
    single = _run(kind, options, whole, whole_negatives)
    mine, my_negatives = slice(rank * pairs, (rank + 1) * pairs), slice(rank * extra, (rank + 1) * extra)
    local = leaves(image[mine], text[mine], *scalars)
    local_negatives = negatives[my_negatives].clone().requires_grad_(negatives_grad) if extra else None
    got = _run(kind, dict(options, ddp=ddp), local, local_negatives, closs.distributed)
    if reduction == "none":
        single.backward(upstream)
        got.backward(upstream[mine])
        want_loss = single.detach()[mine]
    else:
        single.backward()
        got.backward()
        want_loss = single.detach()
    rows, scalar_scale = (world, 1.0) if ddp else (1, 1.0 / world)
    comparisons = [("loss", got.detach(), want_loss),
                   ("∂/∂image", local[0].grad, rows * whole[0].grad[mine]),
                   ("∂/∂text", local[1].grad, rows * whole[1].grad[mine])]
    for name, index in [("logit_scale", 2)] + ([("logit_bias", 3)] if kind == "siglip" else []):
        if whole[index].grad is None:  # a constant scale (MNRL's 20)
            assert local[index].grad is None
        else:
            comparisons.append(("∂/∂" + name, local[index].grad, scalar_scale * whole[index].grad))
    if extra and negatives_grad:
        comparisons.append(("∂/∂negatives", local_negatives.grad, rows * whole_negatives.grad[my_negatives]))
    elif extra:
        assert local_negatives.grad is None
    return comparisons


def _cpu_world(rank, world, rendezvous):
    _init(rank, world, rendezvous, "gloo")
    cpu = torch.device("cpu")
    for (kind, options, extra, negatives_grad), reduction in ((c, r) for c in CASES for r in ("mean", "sum", "none")):
        for what, got, want in _single_and_distributed(kind, options, extra, negatives_grad, reduction, rank, world,
                                                       cpu, seed=world):
            _close(got, want, "%s %s %s K=%d, rank %d of %d: %s" % (kind, options, reduction, extra, rank, world,
                                                                    what))
    # DistributedDataParallel averages over the ranks: ddp=True scales every gradient by W.
    for kind, options, extra, negatives_grad in (CASES[1], CASES[5]):
        for what, got, want in _single_and_distributed(kind, options, extra, negatives_grad, "mean", rank, world, cpu,
                                                       ddp=True):
            _close(got, want, "ddp %s: %s" % (kind, what))
    # Uneven counts: every rank refuses, naming them (the check is itself collective).
    a = torch.randn(3 + rank, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="same number of pairs"):
        closs.distributed.clip_loss(a, a)
    a = torch.randn(3, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="same number of pairs and of extra negatives"):
        closs.distributed.siglip_loss(a, a, negatives=torch.randn(1 + rank, 4, dtype=torch.float64))
    _finish()


@pytest.mark.parametrize("world", [2, 4])
def test_gloo_two_tower_matches_a_single_process(world):
    spawn_world(_cpu_world, world)


def test_two_tower_without_a_process_group_the_error_says_so():
    with pytest.raises(RuntimeError, match="init_process_group"):
        closs.distributed.ClipLoss()(torch.randn(4, 3), torch.randn(4, 3), 10.0)


def _cuda_world(rank, world, rendezvous):
    torch.cuda.set_device(rank)
    _init(rank, world, rendezvous, "nccl")
    device = torch.device("cuda", rank)
    for (kind, options, extra, negatives_grad), reduction in ((c, r) for c in CASES for r in ("mean", "none")):
        for what, got, want in _single_and_distributed(kind, options, extra, negatives_grad, reduction, rank, world,
                                                       device):
            # float32 on the GPU: the single process and the ranks round differently
            scale = max(1.0, want.abs().max().item())
            assert (got - want).abs().max().item() <= 1e-4 * scale, "%s %s %s on CUDA: %s" % (kind, options,
                                                                                            reduction, what)
    _finish()


def test_nccl_two_tower_with_cuda_tensors():
    spawn_nccl_world(_cuda_world)
