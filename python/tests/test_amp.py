"""Issue #27, item 4: float16 gradients under a GradScaler-like loss scale.

The fused forward+backward computes the gradients at upstream 1 and the backward multiplies them by
the upstream gradient; for float16 they were rounded before the scale reached them (on the GPU,
whose kernels write float16 gradients), so the small ones flushed to zero. float16 inputs now take
closs's backward with the real, scaled upstream (functional.fuses): checked here by which operator
runs (the CPU computes float16 in float32, so its numbers alone cannot show the GPU's rounding),
and by the unscaled gradient against float64."""

import pytest
import torch

import closs
from closs import _ops, _two_tower_ops


def _record(monkeypatch, table, kind):
    called = []
    for direction in ("forward", "forward_backward"):
        operator = table[kind][direction]
        monkeypatch.setitem(table[kind], direction,
                            lambda *a, _o=operator, _d=direction, **k: called.append(_d) or _o(*a, **k))
    return called


@pytest.mark.parametrize("dtype, fused", [(torch.float16, False), (torch.bfloat16, True), (torch.float32, True)])
def test_float16_gradients_take_the_scaled_upstream(monkeypatch, dtype, fused):
    z = torch.randn(16, 8).to(dtype).requires_grad_(True)
    called = _record(monkeypatch, _ops.OPERATORS, "supcon")
    closs.supcon_loss(z, torch.arange(16) % 4)
    assert called == ["forward_backward" if fused else "forward"]
    a, b = torch.randn(6, 8).to(dtype).requires_grad_(True), torch.randn(6, 8).to(dtype)
    called = _record(monkeypatch, _two_tower_ops.OPERATORS, "clip")
    closs.clip_loss(a, b)
    assert called == ["forward_backward" if fused else "forward"]


def test_float16_under_a_loss_scale_matches_float64():
    scale = 65536.0
    generator = torch.Generator().manual_seed(3)
    z = torch.randn(512, 32, generator=generator).to(torch.float16)
    labels = torch.randint(0, 128, (512,), generator=generator)
    exact = z.to(torch.float64).requires_grad_(True)
    closs.supcon_loss(exact, labels).backward()
    given = z.clone().requires_grad_(True)
    (closs.supcon_loss(given, labels) * scale).backward()
    got = given.grad.to(torch.float64) / scale
    assert ((got == 0) & (exact.grad != 0)).sum() == 0, "gradient entries flushed to zero"
    assert (got - exact.grad).norm() / exact.grad.norm() < 1e-3
