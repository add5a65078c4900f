"""NT-Xent and SupCon on the GPU, side by side in one run: closs (the CHUNKED path) against what a
PyTorch user would otherwise run, eager and torch.compile'd, forward+backward on the same inputs.

  ntxent  closs_ntxent_forward_backward  vs  F.cross_entropy over the self-masked similarity
                                             matrix (SimCLR's usual formulation)
  supcon  closs_supcon_forward_backward  vs  SupConLoss as the official SupContrast code computes
                                             it (max-shifted logits, masks, mean log-probability
                                             of the positives), with two views per class so
                                             that its mean over all anchors equals closs's mean
                                             over anchors with a positive

First a correctness check at M = 1024 against the same torch code in float64; then times (CUDA
events, median of --repeats) and peak extra memory for M in --rows; an out-of-memory is recorded,
not fatal. The floor printed next to closs is max(6·M²·D flops / the float32 matrix-product rate
measured here, (inputs + gradients) / copy bandwidth): the chunked path multiplies in float32.

usage: python3 bench/baselines/contrastive.py --lib build/host/libcloss.so [--json FILE]
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
from timing import copy_bandwidth_gbs, matmul_tflops, median_ms, peak_extra_mb, relative_error  # noqa: E402

DTYPES = {"f32": (torch.float32, cl.F32), "bf16": (torch.bfloat16, cl.BF16), "f16": (torch.float16, cl.F16)}
TEMPERATURE = {"ntxent": 0.1, "supcon": 0.07}


def torch_ntxent(z, labels, temperature):
    del labels  # the positives are the other view: rows i and i + N
    rows = z.shape[0]
    zhat = F.normalize(z, dim=1)
    logits = zhat @ zhat.t() / temperature
    self_mask = torch.eye(rows, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    half = rows // 2
    targets = torch.cat([torch.arange(half, rows), torch.arange(0, half)]).to(z.device)
    return F.cross_entropy(logits, targets)


def torch_supcon(z, labels, temperature):
    rows = z.shape[0]
    zhat = F.normalize(z, dim=1)
    column = labels.view(-1, 1)
    positives = torch.eq(column, column.t()).to(zhat.dtype)
    logits = zhat @ zhat.t() / temperature
    logits = logits - logits.max(dim=1, keepdim=True).values.detach()
    not_self = 1 - torch.eye(rows, dtype=zhat.dtype, device=z.device)
    positives = positives * not_self
    log_prob = logits - torch.log((torch.exp(logits) * not_self).sum(1, keepdim=True))
    counts = positives.sum(1)
    counts = torch.where(counts < 1e-6, torch.ones_like(counts), counts)
    mean_log_prob_pos = (positives * log_prob).sum(1) / counts
    return -(mean_log_prob_pos).mean()  # base temperature = temperature


TORCH = {"ntxent": torch_ntxent, "supcon": torch_supcon}


class Closs:
    def __init__(self, library):
        self.lib = cl.Library(library)
        self.handle = ctypes.c_void_p()
        self.lib.call("closs_create", ctypes.byref(self.handle))

    def forward_backward(self, name, z, labels):
        rows, dim = z.shape
        code = {torch.float32: cl.F32, torch.bfloat16: cl.BF16, torch.float16: cl.F16}[z.dtype]
        if name == "ntxent":
            params = cl.ntxent_params(temperature=TEMPERATURE[name], path="chunked")
        else:
            params = cl.supcon_params(temperature=TEMPERATURE[name], path="chunked")
        size = ctypes.c_size_t()
        self.lib.call("closs_%s_workspace_size" % name, self.handle, ctypes.byref(params),
                      ctypes.c_int64(rows), ctypes.c_int64(dim), code, ctypes.byref(size))
        workspace = torch.empty(max(size.value, 1), dtype=torch.uint8, device=z.device)
        grad = torch.empty_like(z)
        loss = torch.empty(1, dtype=torch.float32, device=z.device)
        matrix = cl.Matrix(z.data_ptr(), code, rows, dim, z.stride(0))
        out = cl.Grad(grad.data_ptr(), grad.stride(0))
        tail = [ctypes.c_void_p(workspace.data_ptr()), ctypes.c_size_t(workspace.numel()),
                ctypes.c_void_p(torch.cuda.current_stream().cuda_stream)]
        if name == "ntxent":
            self.lib.call("closs_ntxent_forward_backward", self.handle, ctypes.byref(params), matrix,
                          ctypes.c_void_p(loss.data_ptr()), out, *tail)
        else:
            vector = cl.Vector(labels.data_ptr(), cl.I64, rows)
            self.lib.call("closs_supcon_forward_backward", self.handle, ctypes.byref(params), matrix,
                          vector, ctypes.c_void_p(loss.data_ptr()), None, out, *tail)
        return loss, grad


def make_inputs(rows, dim, dtype, seed):
    generator = torch.Generator(device="cuda").manual_seed(seed)
    z = torch.randn(rows, dim, device="cuda", generator=generator).to(dtype)
    labels = torch.arange(rows, device="cuda") % (rows // 2)  # two views per class
    return z, labels


def check(closs, name, dtype):
    z, labels = make_inputs(1024, 128, dtype, seed=7)
    loss, grad = closs.forward_backward(name, z, labels)
    reference = z.double().requires_grad_()
    want = TORCH[name](reference, labels, TEMPERATURE[name])
    want.backward()
    return max(relative_error(loss, want.detach().reshape(1)), relative_error(grad, reference.grad))


def measure(step, repeats):
    """(median ms, peak extra MB), or (None, None) and the reason when it runs out of memory."""
    try:
        return median_ms(step, repeats), peak_extra_mb(step), None
    except torch.cuda.OutOfMemoryError as error:
        torch.cuda.empty_cache()
        return None, None, "out of memory: " + str(error).splitlines()[0][:120]


def bench(closs, name, dtype_name, rows, dim, repeats, compile_ok, ceilings):
    dtype = DTYPES[dtype_name][0]
    z, labels = make_inputs(rows, dim, dtype, seed=1)

    def run_closs():
        closs.forward_backward(name, z, labels)

    def torch_step(fn):
        def step():
            leaf = z.detach().requires_grad_()
            fn(leaf, labels, TEMPERATURE[name]).backward()
        return step

    element = torch.finfo(dtype).bits // 8
    floor_ms = max(6 * rows * rows * dim / (ceilings["f32_tflops"] * 1e12),
                   2 * rows * dim * element / (ceilings["copy_gbs"] * 1e9)) * 1e3
    result = {"loss": name, "dtype": dtype_name, "rows": rows, "dim": dim, "floor_ms": floor_ms}
    result["closs_ms"], result["closs_mb"], result["closs_error"] = measure(run_closs, repeats)
    result["eager_ms"], result["eager_mb"], result["eager_error"] = measure(torch_step(TORCH[name]), repeats)
    result["compile_ms"] = result["compile_mb"] = None
    if compile_ok:
        try:
            compiled = torch.compile(TORCH[name], dynamic=False)
            result["compile_ms"], result["compile_mb"], result["compile_error"] = measure(
                torch_step(compiled), repeats)
        except Exception as error:  # a compiler failure is a result to report
            result["compile_error"] = str(error).splitlines()[0][:200]
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lib", required=True)
    parser.add_argument("--rows", default="4096,16384,65536")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--dtypes", default="bf16,f32")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--json")
    args = parser.parse_args()

    closs = Closs(args.lib)
    ceilings = {"copy_gbs": copy_bandwidth_gbs(args.repeats),
                "f32_tflops": matmul_tflops(torch.float32, args.repeats),
                "bf16_tflops": matmul_tflops(torch.bfloat16, args.repeats)}
    report = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "closs": closs.lib.version(),
              "ceilings": ceilings, "checks": [], "results": []}
    print("device %s, torch %s; copy %.0f GB/s, f32 matmul %.1f TFLOP/s, bf16 matmul %.0f TFLOP/s"
          % (report["gpu"], report["torch"], ceilings["copy_gbs"], ceilings["f32_tflops"],
             ceilings["bf16_tflops"]), flush=True)
    for name in TORCH:
        for dtype_name in args.dtypes.split(","):
            error = check(closs, name, DTYPES[dtype_name][0])
            report["checks"].append({"loss": name, "dtype": dtype_name, "max_relative_error": error})
            print("check %-7s %-5s max relative error vs float64 torch: %.2e" % (name, dtype_name, error),
                  flush=True)
            for rows in [int(r) for r in args.rows.split(",")]:
                report["results"].append(bench(closs, name, dtype_name, rows, args.dim, args.repeats,
                                               not args.no_compile, ceilings))
                print("  %s" % json.dumps(report["results"][-1]), flush=True)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(report, out, indent=1)

    def fmt(value, pattern="%.2f"):
        return pattern % value if value is not None else "n/a"

    print("\n%-7s %-5s %7s %10s %9s %10s %10s %10s %10s %10s" % (
        "loss", "dtype", "rows", "closs ms", "floor ms", "eager ms", "compile ms", "closs MB", "eager MB",
        "compile MB"))
    for r in report["results"]:
        print("%-7s %-5s %7d %10s %9.2f %10s %10s %10s %10s %10s" % (
            r["loss"], r["dtype"], r["rows"], fmt(r["closs_ms"]), r["floor_ms"], fmt(r["eager_ms"]),
            fmt(r["compile_ms"]), fmt(r["closs_mb"], "%.0f"), fmt(r["eager_mb"], "%.0f"),
            fmt(r["compile_mb"], "%.0f")))


if __name__ == "__main__":
    main()
