#!/usr/bin/env python3
"""CLIP and SigLIP side by side in one run: closs (through its PyTorch package, closs.ClipLoss and
SigLipLoss on the GPU kernels), OpenCLIP's own ClipLoss and SigLipLoss (eager and torch.compile),
and, for CLIP, Inf-CL and memeff where they are installed; forward+backward, time and memory, on
the same inputs, written in `closs bench`'s JSON schema ("closs-bench/1") for bench/report.py.

What each implementation computes, from raw features a, b (N × D), a learnable scale s (and
SigLIP's bias β), so that every one does the same work (normalisation included):
  closs-torch       closs.ClipLoss()(a, b, s) / closs.SigLipLoss()(a, b, s, β): normalises inside
  openclip-eager    OpenCLIP's ClipLoss()(F.normalize(a), F.normalize(b), s) and SigLipLoss(), its
                    loss.py loaded from the installed open_clip_torch (which itself needs
                    torchvision and timm: only loss.py, which needs torch alone, is loaded); for
                    16-bit inputs under torch.autocast, as OpenCLIP trains
  openclip-compile  the same step through torch.compile
  inf-cl            Inf-CL's cal_flash_loss each way, (L(â·s, b̂) + L(b̂·s, â)) / 2 (float32 inside)
  memeff            memeff's MemoryEfficientCLIPLoss(temperature = 1/s, stable=False): a fixed
                    temperature, no gradient for s
Each is checked once per (loss, dtype) at 1,024 rows against the same loss in float64 torch ops
(loss and gradients of a, b and, where the implementation has one, s and β). Per point: the
median of --repeats CUDA-event-timed runs after warm-up, inputs rotated past the L2 cache, and
the allocator's peak over one step minus what was allocated before it. The floor: 8·N²·D flops
for CLIP (four N × N × D products: the logits, their recomputation, and the two gradients) and
6·N²·D for SigLIP (one walk gives the loss and both gradients), at the measured bf16 GEMM rate.
Out of memory is status "oom", an implementation that is not installed or fails "error".

usage: python3 bench/baselines/two_tower.py --json two-tower.json [--loss clip,siglip]
           [--rows 8192,16384,32768,65536] [--dim 512] [--dtype bf16] [--repeats R]
           [--implementations closs-torch,openclip-eager,...] [--budget-s S] [--device cuda|cpu]
(--device cpu: a logic check without a GPU; inf-cl and memeff need one.)
"""

import argparse
import importlib.util
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

here = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [here, os.path.join(os.path.dirname(os.path.dirname(here)), "python")]
import timing  # noqa: E402

DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16, "f64": torch.float64}
TOLERANCE = {"f32": 1e-4, "f16": 2e-3, "bf16": 1e-2, "f64": 1e-10}
FLOPS = {"clip": 8, "siglip": 6}  # × N²·D
IMPLEMENTATIONS = ["closs-torch", "openclip-eager", "openclip-compile", "inf-cl", "memeff"]
CLIP_ONLY = {"inf-cl", "memeff"}
LOGIT_SCALE, LOGIT_BIAS = 1 / 0.07, -10.0


def openclip_loss_module():
    """OpenCLIP's loss.py from the installed open_clip_torch, without importing the package (whose
    __init__ needs torchvision, timm and more); None and the reason when it is not installed."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        return None, "open_clip_torch is not installed (bench/prepare-device-deps.sh carries it)"
    path = os.path.join(list(spec.submodule_search_locations)[0], "loss.py")
    loss_spec = importlib.util.spec_from_file_location("open_clip_loss", path)
    module = importlib.util.module_from_spec(loss_spec)
    loss_spec.loader.exec_module(module)
    return module, None


def _autocast(dtype, device):
    """OpenCLIP trains 16-bit models under autocast: its cross-entropy then runs in float32."""
    if dtype in (torch.bfloat16, torch.float16):
        return torch.autocast(device.type, dtype=dtype)
    return torch.autocast(device.type, enabled=False)


def implementation(name, loss, device):
    """step(a, b, scale, bias) -> loss for one implementation, or raises with the reason."""
    if name == "closs-torch":
        import closs
        module = closs.ClipLoss() if loss == "clip" else closs.SigLipLoss()
        return (lambda a, b, s, beta: module(a, b, s)) if loss == "clip" else module
    if name.startswith("openclip"):
        openclip, reason = openclip_loss_module()
        if openclip is None:
            raise RuntimeError(reason)
        module = openclip.ClipLoss() if loss == "clip" else openclip.SigLipLoss()

        def step(a, b, s, beta):
            with _autocast(a.dtype, a.device):
                a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
                return module(a, b, s) if loss == "clip" else module(a, b, s, beta)
        return torch.compile(step) if name == "openclip-compile" else step
    if name == "inf-cl":
        from inf_cl import cal_flash_loss

        def step(a, b, s, beta):
            a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
            return (cal_flash_loss(a, b, scale=s).mean() + cal_flash_loss(b, a, scale=s).mean()) / 2
        return step
    if name == "memeff":
        from memeff import MemoryEfficientCLIPLoss
        module = MemoryEfficientCLIPLoss(temperature=1 / LOGIT_SCALE, stable=False)
        return lambda a, b, s, beta: module(a, b)
    raise ValueError("unknown implementation %r" % name)


def reference(loss, a, b, s, beta):
    """The loss in plain torch ops on the inputs as given (float64 in the checks)."""
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    logits = s * a @ b.T
    labels = torch.arange(a.shape[0], device=a.device)
    if loss == "clip":
        return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    signs = 2 * torch.eye(a.shape[0], device=a.device, dtype=logits.dtype) - 1
    return -F.logsigmoid(signs * (logits + beta)).sum() / a.shape[0]


def make_inputs(rows, dim, dtype, device, seed):
    """Raw features, uniform in [-1, 1), the text rows correlated with their images."""
    generator = torch.Generator(device=device).manual_seed(seed)
    a = 2 * torch.rand(rows, dim, device=device, generator=generator) - 1
    b = 0.5 * a + (2 * torch.rand(rows, dim, device=device, generator=generator) - 1)
    return a.to(dtype), b.to(dtype)


def scalars(dtype, device):
    """The learnable scale and bias, float64 with float64 features and float32 otherwise."""
    dtype = torch.float64 if dtype == torch.float64 else torch.float32
    return (torch.tensor(LOGIT_SCALE, dtype=dtype, device=device, requires_grad=True),
            torch.tensor(LOGIT_BIAS, dtype=dtype, device=device, requires_grad=True))


def step_of(function, sets, device):
    s, beta = scalars(sets[0][0].dtype, device)

    def step(k):
        a, b = (x.detach().requires_grad_() for x in sets[k % len(sets)])
        value = function(a, b, s, beta)
        value.backward()
        return value
    return step


def check(function, loss, dtype, dim, device):
    """The largest norm-wise relative error of the loss and each gradient (a, b, and the scalars
    where the implementation gives them) against float64 torch."""
    a, b = make_inputs(1024, dim, dtype, device, seed=7)
    leaves = [a.detach().requires_grad_(), b.detach().requires_grad_(), *scalars(dtype, device)]
    got = function(*leaves)
    got.backward()
    exact = [t.detach().double().requires_grad_() for t in leaves]
    want = reference(loss, *exact)
    want.backward()
    errors = [timing.relative_error(got.detach().reshape(1), want.detach().reshape(1))]
    for leaf, ref in zip(leaves, exact):
        if leaf.grad is not None:  # memeff has no scale gradient, CLIP no bias
            errors.append(timing.relative_error(leaf.grad, ref.grad))
    return max(errors)


def new_point(name, loss, dtype, rows, dim):
    return {"implementation": name, "loss": loss, "dtype": dtype, "rows": rows, "dim": dim, "status": "ok",
            "error": None, "repeats": 0, "median_ms": None, "rate": None, "rate_unit": None, "floor_ms": None,
            "floor_fraction": None, "peak_extra_bytes": None, "memory_method": "torch.max_memory_allocated",
            "check_error": None, "check_tolerance": TOLERANCE[dtype], "check_method": "vs-float64-torch",
            "loss_value": None}


def failed(point, error):
    point["status"] = "oom" if timing.is_out_of_memory(error) else "error"
    point["error"] = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
    point["median_ms"] = point["peak_extra_bytes"] = None


def measure(point, function, rows, dim, dtype, repeats, device, gemm_tflops):
    set_bytes = 2 * rows * dim * torch.finfo(dtype).bits // 8
    sets = [make_inputs(rows, dim, dtype, device, seed) for seed in range(timing.rotation(set_bytes, device))]
    step = step_of(function, sets, device)
    point["median_ms"] = timing.median_ms(step, repeats, device)
    point["repeats"] = repeats
    point["peak_extra_bytes"] = timing.peak_extra_bytes(step, device)
    point["loss_value"] = float(step(0).item())
    flops = FLOPS[point["loss"]] * float(rows) ** 2 * dim
    point["rate"], point["rate_unit"] = flops / (point["median_ms"] * 1e-3) / 1e12, "TFLOP/s"
    if gemm_tflops:
        point["floor_ms"] = flops / (gemm_tflops * 1e12) * 1e3
        point["floor_fraction"] = point["floor_ms"] / point["median_ms"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", required=True)
    parser.add_argument("--loss", default="clip,siglip")
    parser.add_argument("--rows", default="8192,16384,32768,65536")
    parser.add_argument("--dim", default="512")
    parser.add_argument("--dtype", default="bf16")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--implementations", default=",".join(IMPLEMENTATIONS))
    parser.add_argument("--budget-s", type=float, default=float("inf"),
                        help="start no new point after this many seconds (the rest: status skipped)")
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()

    start = time.monotonic()
    device = torch.device(args.device)
    document = timing.new_document("bench/baselines/two_tower.py", device)
    try:
        import closs
        document["closs_version"] = closs.library().version()
    except Exception as error:  # closs-torch's points will say why
        print("closs not loaded: %s" % str(error).splitlines()[0][:200], file=sys.stderr)
    gemm_tflops = (document["ceilings"] or {}).get("gemm_bf16_tflops")
    # Smallest sizes first, so that a spent budget skips the largest points, not whole losses.
    tasks = [(name, loss, dtype, int(rows), int(dim)) for rows in args.rows.split(",") for dim in args.dim.split(",")
             for dtype in args.dtype.split(",") for loss in args.loss.split(",")
             for name in args.implementations.split(",") if loss == "clip" or name not in CLIP_ONLY]
    functions, checks = {}, {}
    for index, (name, loss, dtype, rows, dim) in enumerate(tasks):
        point = new_point(name, loss, dtype, rows, dim)
        document["points"].append(point)
        if time.monotonic() - start > args.budget_s:
            point["status"], point["error"] = "skipped", "time budget (--budget-s) spent"
            continue
        print("[%d/%d] %s %s %s rows=%d dim=%d" % (index + 1, len(tasks), name, loss, dtype, rows, dim),
              file=sys.stderr, flush=True)
        try:
            if (name, loss) not in functions:
                functions[(name, loss)] = implementation(name, loss, device)
            function = functions[(name, loss)]
            if (name, loss, dtype, dim) not in checks:
                checks[(name, loss, dtype, dim)] = check(function, loss, DTYPES[dtype], dim, device)
            point["check_error"] = checks[(name, loss, dtype, dim)]
            measure(point, function, rows, dim, DTYPES[dtype], args.repeats, device, gemm_tflops)
        except Exception as error:  # not installed, out of memory, a compiler failure: a result
            failed(point, error)
        if device.type == "cuda":
            torch.cuda.empty_cache()
        timing.write_json(args.json, document)  # after every point: a run cut short keeps its results
    print("\n%-16s %-6s %-4s %8s %5s %10s %10s %9s  %s" % ("implementation", "loss", "type", "rows", "dim",
                                                         "median ms", "extra MB", "check", "status"))
    for p in document["points"]:
        print("%-16s %-6s %-4s %8d %5d %10s %10s %9s  %s%s" % (
            p["implementation"], p["loss"], p["dtype"], p["rows"], p["dim"],
            "%.3f" % p["median_ms"] if p["median_ms"] else "-",
            "%.1f" % (p["peak_extra_bytes"] / 1e6) if p["peak_extra_bytes"] is not None else "-",
            "%.1e" % p["check_error"] if p["check_error"] is not None and math.isfinite(p["check_error"]) else "-",
            p["status"], ": " + p["error"] if p["error"] else ""))
    print("%d points in %.0f s; wrote %s" % (len(document["points"]), time.monotonic() - start, args.json))


if __name__ == "__main__":
    main()
