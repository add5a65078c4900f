"""Issue #27, item 9: every rank runs the same collectives, of the same sizes and dtypes, whatever
its own inputs need. A rank whose z needs no gradient used to skip the statistics' all-gather, and
int32 labels on one rank made a gather of another size than int64 on the next: the collectives
then pair up wrongly (a hang, or another rank's rows read as statistics). Checked with a mock
torch.distributed (2 ranks, this process playing rank 0) that records every collective."""

import pytest
import torch
import torch.distributed as dist

import closs
import closs.distributed


@pytest.fixture
def collectives(monkeypatch):
    log, world = [], 2

    def all_gather_into_tensor(out, tensor, group=None):
        log.append(("all_gather", tuple(out.shape), out.dtype))
        out.copy_(torch.cat([tensor] * world))

    def all_reduce(tensor, group=None):
        log.append(("all_reduce", tuple(tensor.shape), tensor.dtype))

    for name, value in [("is_available", lambda: True), ("is_initialized", lambda: True),
                        ("get_world_size", lambda group=None: world), ("get_rank", lambda group=None: 0),
                        ("get_backend", lambda group=None: "gloo"),
                        ("all_gather_into_tensor", all_gather_into_tensor), ("all_reduce", all_reduce)]:
        monkeypatch.setattr(dist, name, value)
    return log


def _run(collectives, call):
    collectives.clear()
    call()
    return list(collectives)


def test_supcon_collectives_do_not_depend_on_grad_or_label_dtype(collectives):
    z = torch.randn(6, 4, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    wanted = _run(collectives, lambda: closs.distributed.supcon_loss(z.clone().requires_grad_(True), labels))
    for grad, dtype in [(False, torch.int64), (True, torch.int32), (False, torch.int32)]:
        got = _run(collectives, lambda: closs.distributed.supcon_loss(z.clone().requires_grad_(grad),
                                                                      labels.to(dtype)))
        assert got == wanted, "requires_grad=%s, labels %s" % (grad, dtype)


def test_ntxent_and_clip_collectives_do_not_depend_on_grad(collectives):
    z, a, b = torch.randn(6, 4), torch.randn(3, 4), torch.randn(3, 4)
    assert (_run(collectives, lambda: closs.distributed.ntxent_loss(z.clone().requires_grad_(True)))
            == _run(collectives, lambda: closs.distributed.ntxent_loss(z)))
    assert (_run(collectives, lambda: closs.distributed.clip_loss(a.clone().requires_grad_(True), b))
            == _run(collectives, lambda: closs.distributed.clip_loss(a, b)))


def test_check_rows_false_skips_only_the_row_check(collectives):
    """Item 8: check_rows=False drops the row-count all-gather (and its host synchronisation), for
    CUDA graph capture and fullgraph compile; every other collective stays."""
    z, a, b = torch.randn(6, 4), torch.randn(3, 4), torch.randn(3, 4)
    for call in (lambda **k: closs.distributed.ntxent_loss(z, **k),
                 lambda **k: closs.distributed.supcon_loss(z, torch.arange(6) % 2, **k),
                 lambda **k: closs.distributed.clip_loss(a, b, **k),
                 lambda **k: closs.distributed.SigLipLoss(check_rows=False)(a, b, 10.0, -10.0) if k else
                 closs.distributed.SigLipLoss()(a, b, 10.0, -10.0)):
        checked, unchecked = _run(collectives, call), _run(collectives, lambda: call(check_rows=False))
        assert checked[0][2] == torch.int64 and unchecked == checked[1:]
