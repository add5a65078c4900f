"""closs.distributed against a single process on the concatenated batch: 2 and 4 CPU processes
with gloo on the loopback interface, float64, every rank's loss and the gradient of its rows
within 1e-10 of the single process's, for NT-Xent and SupCon with "mean", "sum" and "none"; the
DDP scaling; uneven row counts refused on every rank; and NCCL with CUDA tensors where GPUs are
present (skipped otherwise).

Each world is one torch.multiprocessing.spawn running every case (starting processes is what
costs); a failing comparison raises in the rank, and spawn re-raises it here with its message."""

import faulthandler
import os
import sys
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import closs
import closs.distributed

TOLERANCE = 1e-10


def spawn_world(function, world):
    """Runs function(rank, world, rendezvous) in `world` processes. The ranks meet through a file
    (torch's FileStore) in a fresh directory: a TCP port picked here and released before rank 0
    binds it could be taken in between by any process of a busy CI machine, and a TCP store is
    served by rank 0, whose exit the other ranks would then race."""
    with tempfile.TemporaryDirectory(prefix="closs-world-") as directory:
        mp.spawn(function, args=(world, os.path.join(directory, "store")), nprocs=world, join=True)


def _init(rank, world, rendezvous, backend):
    # A rank that dies of a signal (SIGABRT from C++) prints its Python stack: spawn itself only
    # says which rank and which signal.
    faulthandler.enable()
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"  # loopback only
    dist.init_process_group(backend, init_method="file://" + rendezvous, rank=rank, world_size=world)


def _finish():
    """The end of a rank whose checks all passed: every rank tears its group down together, then
    leaves by os._exit, without the interpreter's finalisation. In CI a gloo rank once died of
    SIGABRT ("terminate called without an active exception": a C++ thread destroyed while still
    joinable) while its peer was alive; 8 runs here did not repeat it. That is what PyTorch's gloo
    gives when a process exits with its group's threads alive (pytorch/pytorch#190489); faulthandler
    (_init) prints the rank's stack should it happen anywhere else."""
    dist.barrier()
    dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _close(a, b, what):
    error = (a - b).abs().max().item() if a.numel() else 0.0
    scale = max(1.0, b.abs().max().item() if b.numel() else 0.0)
    assert error <= TOLERANCE * scale, "%s: max difference %.3g (scale %.3g)" % (what, error, scale)


def _global_batch(seed, rows, dim, classes):
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn(rows, dim, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, classes, (rows,), generator=generator)
    labels[0] = 10_000  # an anchor without a positive
    upstream = torch.rand(rows, generator=generator, dtype=torch.float64) + 0.5
    return z, labels, upstream


def _local_rows(loss, rows, world, rank):
    """The global row indices of a rank's rows, in its local order."""
    if loss == "ntxent":  # cat(z1 of every rank, z2 of every rank): two blocks per rank
        half, b = rows // 2, rows // (2 * world)
        return torch.cat([torch.arange(rank * b, (rank + 1) * b),
                          torch.arange(half + rank * b, half + (rank + 1) * b)])
    n = rows // world
    return torch.arange(rank * n, (rank + 1) * n)


def _single_and_distributed(loss, reduction, rank, world, device, ddp=False, seed=0):
    rows, dim = 8 * world, 5
    z, labels, upstream = _global_batch(seed, rows, dim, classes=rows // 3)
    options = dict(reduction=reduction)
    if loss == "supcon":
        options.update(temperature=0.2, base_temperature=0.1)
    else:
        options.update(temperature=0.3)
    dtype = torch.float64 if device.type == "cpu" else torch.float32
    z, upstream = z.to(device, dtype), upstream.to(device, dtype)
    labels = labels.to(device)

    whole = z.clone().requires_grad_(True)
    single = (closs.supcon_loss(whole, labels, **options) if loss == "supcon"
              else closs.ntxent_loss(whole, **options))
    mine = _local_rows(loss, rows, world, rank).to(device)
    local = z[mine].clone().requires_grad_(True)
    if loss == "supcon":
        got, valid = closs.distributed.supcon_loss(local, labels[mine], ddp=ddp, return_valid=True,
                                                   **options)
        _, single_valid = closs.supcon_loss(z, labels, return_valid=True, **options)
        assert valid.item() == single_valid.item(), "valid %d, single process %d" % (valid, single_valid)
    else:
        got = closs.distributed.ntxent_loss(local, ddp=ddp, **options)
    if reduction == "none":
        single.backward(upstream)
        got.backward(upstream[mine])
        want_loss = single.detach()[mine]
    else:
        single.backward()
        got.backward()
        want_loss = single.detach()
    scale = world if ddp else 1
    return got.detach(), want_loss, local.grad, scale * whole.grad[mine]


def _cpu_world(rank, world, rendezvous):
    _init(rank, world, rendezvous, "gloo")
    cpu = torch.device("cpu")
    for loss in ("ntxent", "supcon"):
        for reduction in ("mean", "sum", "none"):
            got, want, grad, want_grad = _single_and_distributed(loss, reduction, rank, world, cpu,
                                                                 seed=world)
            what = "%s %s, rank %d of %d" % (loss, reduction, rank, world)
            _close(got, want, what + ": loss")
            _close(grad, want_grad, what + ": gradient")
    # DistributedDataParallel averages over the ranks: ddp=True scales the local gradient by W.
    got, want, grad, want_grad = _single_and_distributed("supcon", "mean", rank, world, cpu, ddp=True)
    _close(got, want, "ddp: loss")
    _close(grad, want_grad, "ddp: gradient (W times the exact one)")
    # Uneven rows: every rank refuses, naming the counts (the check is itself collective).
    z = torch.randn(4 + 2 * rank, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="same number of rows"):
        closs.distributed.ntxent_loss(z)
    _finish()


@pytest.mark.parametrize("world", [2, 4])
def test_gloo_matches_a_single_process(world):
    spawn_world(_cpu_world, world)


def test_without_a_process_group_the_error_says_so():
    with pytest.raises(RuntimeError, match="init_process_group"):
        closs.distributed.ntxent_loss(torch.randn(4, 3))


def _cuda_world(rank, world, rendezvous):
    torch.cuda.set_device(rank)
    _init(rank, world, rendezvous, "nccl")
    device = torch.device("cuda", rank)
    for loss in ("ntxent", "supcon"):
        for reduction in ("mean", "sum", "none"):
            got, want, grad, want_grad = _single_and_distributed(loss, reduction, rank, world, device)
            what = "%s %s on CUDA, rank %d of %d" % (loss, reduction, rank, world)
            # float32 on the GPU: the single process and the ranks share the kernels' rounding
            # up to the order of the sums.
            assert (got - want).abs().max().item() <= 1e-5 * max(1.0, want.abs().max().item()), what
            assert (grad - want_grad).abs().max().item() <= 1e-5 * max(1.0, want_grad.abs().max().item()), what
    _finish()


def spawn_nccl_world(function):
    """Runs function(rank, world, rendezvous) on up to 2 GPUs (NCCL takes one rank per device); skips,
    saying why, without them."""
    if not torch.cuda.is_available() or not dist.is_nccl_available():
        pytest.skip("no CUDA device (or no NCCL): the NCCL test needs a GPU")
    if not closs.cuda_available():
        pytest.skip("libcloss was built without CUDA")
    spawn_world(function, min(2, torch.cuda.device_count()))


def test_nccl_with_cuda_tensors():
    spawn_nccl_world(_cuda_world)
