"""SupCon on scikit-learn's digits across processes with closs.distributed, checked against one
process training on the same global batches.

    torchrun --standalone --nproc-per-node 2 examples/python/supcon_digits_distributed.py
    torchrun --standalone --nproc-per-node 2 examples/python/supcon_digits_distributed.py --steps 20

Every step draws one global batch of digits with two noisy views each (the same on every rank,
from a shared seed); each rank embeds its share of the digits, and closs.distributed.SupConLoss
computes the loss of the whole global batch: one all-gather of the embeddings and labels, each
rank's anchors against all rows, the loss and the gradient of the rank's own rows. The model is
wrapped in DistributedDataParallel, which averages parameter gradients over the ranks, so the loss
is built with ddp=True (the gradient of the rank's rows times the world size, closs/distributed.py
explains why). In float64 on the CPU (gloo) or float32 on GPUs (NCCL, one per rank).

Rank 0 then trains a fresh copy of the model in a single process on the same global batches with
closs.SupConLoss and prints both runs' losses; the script exits 1 unless every step's loss and
the final parameters agree (1e-9 relative in float64, 1e-4 in float32).
"""

import argparse
import os
import pathlib
import sys

import torch
import torch.distributed as dist

try:
    import closs
except ImportError:  # running from the source tree without installing the package
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "python"))
    import closs
import closs.distributed

from sklearn.datasets import load_digits


def make_model(dtype, device):
    torch.manual_seed(0)  # the same initial weights in every process
    return torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 16)).to(
        device, dtype)


def global_batches(x, y, steps, batch, device):
    """The steps' global batches: digits, labels and two noisy views, identical on every rank."""
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        chosen = torch.randperm(len(x), generator=generator)[:batch]
        images = x[chosen]
        views = [(images + 0.3 * torch.randn(images.shape, generator=generator, dtype=images.dtype))
                 * (torch.rand(images.shape, generator=generator) > 0.1) for _ in range(2)]
        yield [v.to(device) for v in views], y[chosen].to(device)


def train(model, loss_fn, batches, rows, lr):
    """SGD steps (plain SGD: unlike Adam, its steps scale with the gradient, so a gradient off by
    the world size shows); `rows` picks this process's digits of each global batch. Returns the
    losses."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    losses = []
    for views, labels in batches:
        features = torch.stack([model(v[rows]) for v in views], dim=1)  # (n, 2, 16)
        loss = loss_fn(features, labels[rows])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=128, help="digits per global step (a multiple of the world size)")
    parser.add_argument("--temperature", type=float, default=0.1)
    parser.add_argument("--lr", type=float, default=0.02)
    args = parser.parse_args()

    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    world, rank = dist.get_world_size(), dist.get_rank()
    if args.batch % world:
        raise SystemExit("--batch %d must be a multiple of the world size %d" % (args.batch, world))
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    dtype = torch.float32 if cuda else torch.float64
    digits = load_digits()
    x = torch.tensor(digits.data, dtype=dtype) / 16.0
    y = torch.tensor(digits.target)

    share = args.batch // world
    mine = slice(rank * share, (rank + 1) * share)
    model = torch.nn.parallel.DistributedDataParallel(make_model(dtype, device))
    loss_fn = closs.distributed.SupConLoss(temperature=args.temperature, ddp=True)
    losses = train(model, loss_fn, global_batches(x, y, args.steps, args.batch, device), mine, args.lr)

    status = 0
    if rank == 0:
        single = make_model(dtype, device)
        single_losses = train(single, closs.SupConLoss(temperature=args.temperature),
                              global_batches(x, y, args.steps, args.batch, device), slice(None), args.lr)
        tolerance = 1e-9 if dtype == torch.float64 else 1e-4
        print("step  %d processes   1 process" % world)
        for step, (a, b) in enumerate(zip(losses, single_losses), 1):
            print("%4d  %11.8f  %10.8f" % (step, a, b))
        worst = max(((p - q).abs().max() / q.abs().max().clamp(min=1e-30)).item()
                    for p, q in zip(model.module.parameters(), single.parameters()))
        agree = all(abs(a - b) <= tolerance * abs(b) for a, b in zip(losses, single_losses))
        print("final parameters: largest relative difference %.3g" % worst)
        if agree and worst <= tolerance:
            print("the %d-process run matches the single-process run" % world)
        else:
            print("MISMATCH (tolerance %g)" % tolerance)
            status = 1
    # Every rank leaves together: a rank that tore down its gloo group while rank 0 was still
    # checking aborted now and then ("terminate called without an active exception").
    dist.barrier()
    dist.destroy_process_group()
    return status


if __name__ == "__main__":
    sys.exit(main())
