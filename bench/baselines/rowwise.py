"""Row-wise losses on the GPU, side by side in one run: closs against what a PyTorch user would
otherwise write, eager and torch.compile'd, forward+backward on the same inputs.

  pair     closs_pair_forward_backward      vs  the contract's formula in torch ops
  triplet  closs_triplet_forward_backward   vs  F.triplet_margin_loss(p=2, eps=0) (euclidean)
  cosine   closs_cosine_forward_backward    vs  F.cosine_embedding_loss(target = 2y - 1)

First a correctness check at a small size against the torch formula in float64; then each
implementation is timed with CUDA events (median of --repeats after warm-up, alternating between
two input sets) and its peak extra memory read from PyTorch's allocator (closs's workspace and
gradients come from that allocator too). The floor is bytes moved (each input read once, each
gradient written once, the labels) over the device-to-device copy bandwidth measured in the same
run.

usage: python3 bench/baselines/rowwise.py --lib build/host/libcloss.so [--json FILE]
"""

import argparse
import ctypes
import json
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import closs_ctypes as cl  # noqa: E402
from timing import copy_bandwidth_gbs, median_ms, peak_extra_mb, relative_error  # noqa: E402

DTYPES = {"f32": (torch.float32, cl.F32), "bf16": (torch.bfloat16, cl.BF16), "f16": (torch.float16, cl.F16)}
INPUTS = {"pair": 2, "triplet": 3, "cosine": 2}


def torch_loss(name, xs, y):
    if name == "pair":
        d = torch.linalg.vector_norm(xs[0] - xs[1], dim=1)
        return (y * d.square() + (1 - y) * torch.clamp(1.0 - d, min=0).square()).mean()
    if name == "triplet":
        return F.triplet_margin_loss(xs[0], xs[1], xs[2], margin=1.0, p=2, eps=0.0)
    return F.cosine_embedding_loss(xs[0], xs[1], 2 * y - 1, margin=0.0)


class Closs:
    """closs's fused forward+backward on torch tensors, on the current stream, with workspace and
    outputs from PyTorch's allocator."""

    def __init__(self, library):
        self.lib = cl.Library(library)
        self.handle = ctypes.c_void_p()
        self.lib.call("closs_create", ctypes.byref(self.handle))

    def params(self, name):
        if name == "pair":
            return cl.pair_params(margin=1.0, distance="euclidean")
        if name == "triplet":
            return cl.triplet_params(margin=1.0, distance="euclidean")
        return cl.cosine_params(margin=0.0)

    def workspace_bytes(self, name, rows, dim, code):
        size = ctypes.c_size_t()
        self.lib.call("closs_%s_workspace_size" % name, self.handle, ctypes.byref(self.params(name)),
                      ctypes.c_int64(rows), ctypes.c_int64(dim), code, ctypes.byref(size))
        return size.value

    def forward_backward(self, name, xs, y32):
        """Returns (loss, gradients) as new tensors."""
        rows, dim = xs[0].shape
        code = DTYPES[{torch.float32: "f32", torch.bfloat16: "bf16", torch.float16: "f16"}[xs[0].dtype]][1]
        grads = [torch.empty_like(x) for x in xs]
        loss = torch.empty(1, dtype=torch.float32, device=xs[0].device)
        bytes_ = self.workspace_bytes(name, rows, dim, code)
        workspace = torch.empty(max(bytes_, 1), dtype=torch.uint8, device=xs[0].device)
        matrices = [cl.Matrix(x.data_ptr(), code, rows, dim, x.stride(0)) for x in xs]
        outs = [cl.Grad(g.data_ptr(), g.stride(0)) for g in grads]
        stream = ctypes.c_void_p(torch.cuda.current_stream().cuda_stream)
        params = ctypes.byref(self.params(name))
        tail = [ctypes.c_void_p(workspace.data_ptr()), ctypes.c_size_t(workspace.numel()), stream]
        loss_ptr = ctypes.c_void_p(loss.data_ptr())
        if name == "triplet":
            self.lib.call("closs_triplet_forward_backward", self.handle, params, *matrices, loss_ptr,
                          *outs, *tail)
        else:
            labels = cl.Vector(y32.data_ptr(), cl.F32, rows)
            self.lib.call("closs_%s_forward_backward" % name, self.handle, params, *matrices, labels,
                          loss_ptr, *outs, *tail)
        return loss, grads


def make_inputs(name, rows, dim, dtype, seed):
    generator = torch.Generator(device="cuda").manual_seed(seed)
    xs = [torch.randn(rows, dim, device="cuda", dtype=torch.float32, generator=generator).to(dtype)
          for _ in range(INPUTS[name])]
    y32 = (torch.rand(rows, device="cuda", generator=generator) < 0.5).float()
    return xs, y32


def check(closs, name, dtype):
    """closs at a small size against the torch formula in float64 on the same values."""
    xs, y32 = make_inputs(name, 4096, 128, dtype, seed=7)
    loss, grads = closs.forward_backward(name, xs, y32)
    reference = [x.double().requires_grad_() for x in xs]
    want = torch_loss(name, reference, y32.double())
    want.backward()
    errors = [relative_error(loss, want.detach().reshape(1))]
    errors += [relative_error(g, r.grad) for g, r in zip(grads, reference)]
    return max(errors)


def bench(closs, name, dtype_name, rows, dim, repeats, compiled_ok, bandwidth):
    dtype, _ = DTYPES[dtype_name]
    sets = [make_inputs(name, rows, dim, dtype, seed) for seed in (1, 2)]
    turn = [0]

    def next_set():
        turn[0] ^= 1
        return sets[turn[0]]

    def run_closs():
        xs, y32 = next_set()
        closs.forward_backward(name, xs, y32)

    def torch_step(fn):
        def step():
            xs, y32 = next_set()
            leaves = [x.detach().requires_grad_() for x in xs]
            fn(name, leaves, y32.to(dtype)).backward()
        return step

    result = {"loss": name, "dtype": dtype_name, "rows": rows, "dim": dim}
    element = torch.finfo(dtype).bits // 8
    moved = 2 * INPUTS[name] * rows * dim * element + (4 * rows if name != "triplet" else 0)
    result["floor_ms"] = moved / (bandwidth * 1e9) * 1e3
    result["closs_ms"] = median_ms(run_closs, repeats)
    result["closs_mb"] = peak_extra_mb(run_closs)
    result["closs_gbs"] = moved / (result["closs_ms"] * 1e-3) / 1e9
    eager = torch_step(torch_loss)
    result["eager_ms"] = median_ms(eager, repeats)
    result["eager_mb"] = peak_extra_mb(eager)
    result["compile_ms"] = result["compile_mb"] = None
    if compiled_ok:
        try:
            compiled = torch_step(torch.compile(torch_loss, dynamic=False))
            result["compile_ms"] = median_ms(compiled, repeats)
            result["compile_mb"] = peak_extra_mb(compiled)
        except Exception as error:  # a compiler failure is a result to report, not a crash
            result["compile_error"] = str(error).splitlines()[0][:200]
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lib", required=True, help="path to libcloss.so")
    parser.add_argument("--rows", type=int, default=1 << 20)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--dtypes", default="f32,bf16")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--json")
    args = parser.parse_args()

    closs = Closs(args.lib)
    bandwidth = copy_bandwidth_gbs(args.repeats)
    report = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
              "closs": closs.lib.version(), "copy_gbs": bandwidth, "checks": [], "results": []}
    print("device %s, torch %s, closs %s; copy bandwidth %.0f GB/s (read + write)"
          % (report["gpu"], report["torch"], report["closs"], bandwidth), flush=True)
    for name in INPUTS:
        for dtype_name in args.dtypes.split(","):
            error = check(closs, name, DTYPES[dtype_name][0])
            report["checks"].append({"loss": name, "dtype": dtype_name, "max_relative_error": error})
            print("check %-8s %-5s max relative error vs float64 torch: %.2e" % (name, dtype_name, error),
                  flush=True)
            report["results"].append(bench(closs, name, dtype_name, args.rows, args.dim, args.repeats,
                                           not args.no_compile, bandwidth))
            print("  %s" % json.dumps(report["results"][-1]), flush=True)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(report, out, indent=1)

    def fmt(value, pattern):
        return pattern % value if value is not None else "n/a"

    print("\n%-8s %-5s %9s %9s %8s %6s %9s %9s %8s %8s %9s %9s %9s" % (
        "loss", "dtype", "rows", "closs ms", "GB/s", "%floor", "eager ms", "compile", "x eager",
        "x compile", "closs MB", "eager MB", "comp. MB"))
    for r in report["results"]:
        print("%-8s %-5s %9d %9.3f %8.0f %6.0f %9.3f %9s %8.2f %8s %9.0f %9.0f %9s" % (
            r["loss"], r["dtype"], r["rows"], r["closs_ms"], r["closs_gbs"], 100 * r["floor_ms"] / r["closs_ms"],
            r["eager_ms"], fmt(r["compile_ms"], "%.3f"), r["eager_ms"] / r["closs_ms"],
            fmt(r["compile_ms"] and r["compile_ms"] / r["closs_ms"], "%.2f"), r["closs_mb"], r["eager_mb"],
            fmt(r["compile_mb"], "%.0f")))


if __name__ == "__main__":
    main()
