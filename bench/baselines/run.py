#!/usr/bin/env python3
"""The PyTorch baselines of `closs bench`: each loss as a PyTorch user would write it (losses.py),
eager and torch.compile'd, forward+backward, on `closs bench`'s own GPU sweep, written in the same
JSON schema ("closs-bench/1", bench/output.c) for bench/report.py.

The sweep is `closs bench --list-sizes` with the same narrowing options, so both sides always run
the same points. Per (loss, dtype, implementation): a check at a small size against the same torch
code in float64; per point: inputs rotated over enough copies to exceed 3× the L2 cache, the
median of --repeats runs timed with CUDA events after warm-up (torch.compile's compilation happens
in the warm-up), and the allocator's peak during one step minus what was allocated before it.
Out-of-memory is recorded as status "oom"; a compiler failure as "error"; a point not started
because --budget-s ran out as "skipped". None of them stops the run.

usage: python3 bench/baselines/run.py --closs build/closs --json torch.json
           [--loss NAME] [--rows N,...] [--dim D,...] [--dtype T,...] [--repeats R]
           [--no-compile] [--budget-s S] [--device cuda|cpu]
(--device cpu: a logic check on a machine without a GPU, with a monotonic clock and no memory.)
"""

import argparse
import os
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import losses  # noqa: E402
import timing  # noqa: E402

TOLERANCE = {"f32": 1e-4, "f16": 2e-3, "bf16": 1e-2, "f64": 1e-10}


def sweep(args):
    """[(loss, dtype, rows, dim)] from closs bench --list-sizes, narrowed as asked."""
    command = [args.closs, "bench", "--list-sizes"]
    for option in ("loss", "rows", "dim", "dtype"):
        value = getattr(args, option)
        if value:
            command += ["--" + option, value]
    listing = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    points = []
    for line in listing.splitlines():
        loss, dtype, rows, dim = line.split()
        points.append((loss, dtype, int(rows), int(dim)))
    return points


def new_point(implementation, loss, dtype, rows, dim):
    return {"implementation": implementation, "loss": loss, "dtype": dtype, "rows": rows, "dim": dim,
            "status": "ok", "error": None, "repeats": 0, "median_ms": None, "rate": None, "rate_unit": None,
            "floor_ms": None, "floor_fraction": None, "peak_extra_bytes": None,
            "memory_method": "torch.max_memory_allocated", "check_error": None, "check_tolerance": None,
            "check_method": None, "loss_value": None}


def step_of(function, sets):
    """step(k): one forward+backward on input set k mod len(sets); returns the loss."""
    def step(k):
        xs, labels = sets[k % len(sets)]
        leaves = [x.detach().requires_grad_() for x in xs]
        loss = function(leaves, labels)
        loss.backward()
        return loss
    return step


def check(function, loss, dtype, dim, device):
    """Largest norm-wise relative error of the loss and each gradient against float64 torch."""
    rows = 1000 if loss in losses.ROWWISE else 512
    xs, labels = losses.make_inputs(loss, rows, dim, losses.DTYPES[dtype], device, seed=7)
    leaves = [x.detach().requires_grad_() for x in xs]
    got = function(leaves, labels)
    got.backward()
    reference = [x.detach().double().requires_grad_() for x in xs]
    want = losses.LOSSES[loss](reference, labels.double() if labels.is_floating_point() else labels)
    want.backward()
    errors = [timing.relative_error(got.detach().reshape(1), want.detach().reshape(1))]
    errors += [timing.relative_error(leaf.grad, ref.grad) for leaf, ref in zip(leaves, reference)]
    return max(errors)


def measure(point, function, sets, repeats, device):
    step = step_of(function, sets)
    try:
        point["median_ms"] = timing.median_ms(step, repeats, device)
        point["repeats"] = repeats
        point["peak_extra_bytes"] = timing.peak_extra_bytes(step, device)
        point["loss_value"] = float(step(0).item())
    except Exception as error:  # out of memory and compiler failures are results, not crashes
        point["status"] = "oom" if timing.is_out_of_memory(error) else "error"
        point["error"] = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        point["median_ms"] = point["peak_extra_bytes"] = None
    rows, dim = point["rows"], point["dim"]
    if point["median_ms"]:
        seconds = point["median_ms"] * 1e-3
        if point["loss"] in losses.ROWWISE:
            element = torch.finfo(losses.DTYPES[point["dtype"]]).bits // 8
            moved = 2 * losses.INPUTS[point["loss"]] * rows * dim * element + (
                4 * rows if point["loss"] != "triplet" else 0)
            point["rate"], point["rate_unit"] = moved / seconds / 1e9, "GB/s"
        else:
            point["rate"], point["rate_unit"] = 6.0 * rows * rows * dim / seconds / 1e12, "TFLOP/s"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--closs", required=True, help="the closs command-line tool (for the sweep)")
    parser.add_argument("--json", required=True)
    parser.add_argument("--loss")
    parser.add_argument("--rows")
    parser.add_argument("--dim")
    parser.add_argument("--dtype")
    parser.add_argument("--repeats", type=int, default=25)
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--budget-s", type=float, default=float("inf"),
                        help="start no new point after this many seconds (the rest: status skipped)")
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()

    start = time.monotonic()
    device = torch.device(args.device)
    implementations = {"torch-eager": {name: fn for name, fn in losses.LOSSES.items()}}
    if not args.no_compile:
        # dynamic=True: one compilation per loss and dtype covers every size of the sweep.
        implementations["torch-compile"] = {name: torch.compile(fn, dynamic=True)
                                            for name, fn in losses.LOSSES.items()}
    document = timing.new_document("bench/baselines/run.py", device)
    checks = {}
    points = sweep(args)
    # Eager first for every point, then torch.compile, bf16 first: when --budget-s runs out, what
    # is skipped is the compiled f16/f32 tail, not whole losses.
    preference = {"bf16": 0, "f32": 1, "f16": 2}
    tasks = [("torch-eager", point) for point in points]
    if "torch-compile" in implementations:
        tasks += [("torch-compile", point) for point in sorted(points, key=lambda p: preference.get(p[1], 3))]
    for index, (implementation, (loss, dtype, rows, dim)) in enumerate(tasks):
        point = new_point(implementation, loss, dtype, rows, dim)
        document["points"].append(point)
        if time.monotonic() - start > args.budget_s:
            point["status"], point["error"] = "skipped", "time budget (--budget-s) spent"
            continue
        print("[%d/%d] %s %s %s rows=%d dim=%d" % (index + 1, len(tasks), implementation, loss, dtype, rows, dim),
              file=sys.stderr, flush=True)
        function = implementations[implementation][loss]
        key = (implementation, loss, dtype)
        if key not in checks:
            try:
                checks[key] = check(function, loss, dtype, dim, device)
            except Exception as error:  # reported with the point, as its check
                checks[key] = None
                print("  check failed: %s" % str(error).splitlines()[0][:200], file=sys.stderr)
        point.update(check_error=checks[key], check_tolerance=TOLERANCE[dtype], check_method="vs-float64-torch")
        sets = None
        try:
            set_bytes = losses.INPUTS[loss] * rows * dim * torch.finfo(losses.DTYPES[dtype]).bits // 8
            sets = [losses.make_inputs(loss, rows, dim, losses.DTYPES[dtype], device, seed)
                    for seed in range(timing.rotation(set_bytes, device))]
            measure(point, function, sets, args.repeats, device)
        except Exception as error:
            point["status"] = "oom" if timing.is_out_of_memory(error) else "error"
            point["error"] = str(error).strip().splitlines()[0][:200]
        del sets
        if device.type == "cuda":
            torch.cuda.empty_cache()
        timing.write_json(args.json, document)  # after every point: a run cut short still leaves its results
    timing.write_json(args.json, document)

    print("\n%-14s %-7s %-4s %8s %5s %10s %10s  %s" % ("implementation", "loss", "type", "rows", "dim",
                                                     "median ms", "extra MB", "status"))
    for p in document["points"]:
        print("%-14s %-7s %-4s %8d %5d %10s %10s  %s%s" % (
            p["implementation"], p["loss"], p["dtype"], p["rows"], p["dim"],
            "%.3f" % p["median_ms"] if p["median_ms"] else "-",
            "%.1f" % (p["peak_extra_bytes"] / 1e6) if p["peak_extra_bytes"] is not None else "-",
            p["status"], ": " + p["error"] if p["error"] else ""))
    print("%d points in %.0f s; wrote %s" % (len(document["points"]), time.monotonic() - start, args.json))


if __name__ == "__main__":
    main()
