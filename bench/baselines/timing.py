"""Measurement helpers of the PyTorch baselines: medians timed with CUDA events (a monotonic clock
on the CPU), peak extra memory from PyTorch's allocator, out-of-memory as a result, the ceilings,
the JSON record."""

import datetime
import json
import math
import os
import statistics
import sys
import time

import torch


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(step, repeats, device, warmup=3):
    """The median over `repeats` runs of step(k) (k counts the runs, for input rotation), each
    between two CUDA events, after `warmup` runs."""
    for k in range(warmup):
        step(k)
    synchronize(device)
    times = []
    if device.type == "cuda":
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                  for _ in range(repeats)]
        for k, (start, end) in enumerate(events):
            start.record()
            step(warmup + k)
            end.record()
        torch.cuda.synchronize(device)
        times = [start.elapsed_time(end) for start, end in events]
    else:
        for k in range(repeats):
            start = time.perf_counter()
            step(warmup + k)
            times.append(1e3 * (time.perf_counter() - start))
    return statistics.median(times)


def peak_extra_bytes(step, device):
    """Device memory one step(0) allocates beyond what was allocated before it, at its peak."""
    if device.type != "cuda":
        return None
    synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    step(0)
    synchronize(device)
    return torch.cuda.max_memory_allocated(device) - base


def is_out_of_memory(error):
    return isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in str(error)


def rotation(set_bytes, device, limit=64):
    """How many input sets to rotate over so that together they are at least 3× the L2 cache."""
    if device.type != "cuda":
        return 2
    l2 = getattr(torch.cuda.get_device_properties(device), "L2_cache_size", 64 << 20)
    free, _ = torch.cuda.mem_get_info(device)
    wanted = max(2, math.ceil(3 * l2 / max(set_bytes, 1)) + 1)
    return max(1, min(wanted, limit, int(free // 4 // max(set_bytes, 1))))


def ceilings(device, repeats=10):
    """The copy and bf16 matrix-product rates measured through PyTorch (for the record; the report's
    floors come from closs bench's own ceilings)."""
    if device.type != "cuda":
        return None
    source = torch.empty(2**28, dtype=torch.float32, device=device).uniform_()
    target = torch.empty_like(source)
    copy_ms = median_ms(lambda k: target.copy_(source), repeats, device)
    del source, target
    a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    gemm_ms = median_ms(lambda k: a @ b, repeats, device)
    return {"copy_gbs": 2 * 2**28 * 4 / (copy_ms * 1e-3) / 1e9,
            "gemm_bf16_tflops": 2 * 8192**3 / (gemm_ms * 1e-3) / 1e12,
            "exp_per_second": None,
            "l2_bytes": getattr(torch.cuda.get_device_properties(device), "L2_cache_size", None)}


def relative_error(got, want):
    return (got.double() - want).norm().item() / max(want.norm().item(), 1e-30)


def write_json(path, document):
    """Writes the JSON document atomically (a run cut short leaves the last complete one)."""
    with open(path + ".tmp", "w") as handle:
        json.dump(document, handle, indent=1)
    os.replace(path + ".tmp", path)


def new_document(source, device):
    """A closs-bench/1 record (bench/output.c) for `source`'s points on `device`, ceilings measured
    (on a GPU) where they can be."""
    on_gpu = device.type == "cuda"
    document = {"schema": "closs-bench/1", "source": source, "closs_version": None, "torch_version": torch.__version__,
                "created_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "device": {"gpu_ran": on_gpu, "gpu_reason": None if on_gpu else "run with --device %s" % device,
                           "gpu_name": torch.cuda.get_device_name(device) if on_gpu else None},
                "ceilings": None, "points": []}
    try:
        document["ceilings"] = ceilings(device)
    except Exception as error:  # the ceilings are for the record; the points matter more
        print("ceilings not measured: %s" % str(error).splitlines()[0][:200], file=sys.stderr)
    return document
