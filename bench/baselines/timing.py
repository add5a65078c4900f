"""Measurement helpers shared by the GPU benchmarks: CUDA-event medians, peak extra memory from
PyTorch's allocator, the device-to-device copy bandwidth, relative errors."""

import statistics

import torch


def median_ms(step, repeats, warmup=3):
    """The median over `repeats` runs of step(), timed with CUDA events, after `warmup` runs."""
    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        step()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def peak_extra_mb(step):
    """Device memory step() allocates beyond what was allocated before it, at its peak."""
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    step()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def copy_bandwidth_gbs(repeats):
    """A 1 GiB device-to-device copy, counting bytes read plus bytes written."""
    source = torch.empty(2**28, dtype=torch.float32, device="cuda").uniform_()
    target = torch.empty_like(source)
    ms = median_ms(lambda: target.copy_(source), repeats)
    return 2 * source.numel() * 4 / (ms * 1e-3) / 1e9


def matmul_tflops(dtype, repeats, size=8192):
    """A size³ matrix product through PyTorch (cuBLAS) on random data: 2·size³ flops."""
    a = torch.randn(size, size, device="cuda", dtype=dtype)
    b = torch.randn(size, size, device="cuda", dtype=dtype)
    ms = median_ms(lambda: a @ b, repeats)
    return 2 * size**3 / (ms * 1e-3) / 1e12


def relative_error(got, want):
    return (got.double() - want).norm().item() / max(want.norm().item(), 1e-30)
