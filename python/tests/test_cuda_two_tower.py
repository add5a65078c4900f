"""CLIP and SigLIP on CUDA tensors: values and gradients (towers, logit scale, bias) against the CPU
reference in float64 on the same values, every dtype and reduction, the main options with and
without extra negatives, the scale and bias read on the device with no host synchronisation (on a
side stream), opcheck of the operators on CUDA, and a compiled step captured in a CUDA graph.
Skipped, visibly, without a CUDA device or a CUDA build of libcloss."""

import pytest
import torch

import closs
from closs import _two_tower_ops

if not torch.cuda.is_available():
    pytest.skip("no CUDA device", allow_module_level=True)
if not closs.cuda_available():
    pytest.skip("libcloss was built without CUDA", allow_module_level=True)

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
# Relative to the largest magnitude of the expected values, as test_cuda.py.
TOLERANCE = {torch.float32: 2e-5, torch.float16: 4e-3, torch.bfloat16: 3e-2}


def loss_and_grads(kind, tensors, negatives, upstream, **options):
    leaves = [t.detach().requires_grad_() for t in tensors]
    function = closs.clip_loss if kind == "clip" else closs.siglip_loss
    loss = function(*leaves, negatives=negatives, **options)
    grads = torch.autograd.grad(loss, leaves, upstream.to(loss.device, loss.dtype).reshape(loss.shape))
    return loss, grads


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("kind, options, extra", [
    ("clip", {}, 0), ("clip", {}, 70), ("clip", {"symmetric": False}, 70),
    ("clip", {"symmetric": False, "in_batch_negatives": False, "grad_negatives": False}, 70),
    ("clip", {"normalize": False}, 0), ("clip", {"path": "chunked"}, 70),
    ("siglip", {}, 0), ("siglip", {}, 70), ("siglip", {"normalize": False}, 0), ("siglip", {"path": "chunked"}, 70),
])
def test_matches_cpu_reference(kind, options, extra, reduction, dtype):
    pairs, dim = 130, 67
    scale = 0.2 if options.get("normalize") is False else 14.0  # moderate logits without normalisation
    tensors = [torch.randn(pairs, dim, device="cuda").to(dtype), torch.randn(pairs, dim, device="cuda").to(dtype),
               torch.tensor(scale, device="cuda")] + ([torch.tensor(-5.0, device="cuda")] if kind == "siglip" else [])
    negatives = torch.randn(extra, dim, device="cuda").to(dtype) if extra else None
    upstream = torch.rand(pairs if reduction == "none" else 1, dtype=torch.float64) + 0.5
    loss, grads = loss_and_grads(kind, tensors, negatives, upstream, reduction=reduction, **options)
    assert loss.dtype == torch.float32 and [g.dtype for g in grads[:2]] == [dtype, dtype]
    cpu = [t.double().cpu() for t in tensors]
    expected, expected_grads = loss_and_grads(kind, cpu, None if negatives is None else negatives.double().cpu(),
                                              upstream, reduction=reduction, **options)
    for got, want in [(loss, expected)] + list(zip(grads, expected_grads)):
        scale_of = want.abs().max().clamp_min(1e-30)
        torch.testing.assert_close(got.double().cpu(), want, rtol=TOLERANCE[dtype],
                                   atol=TOLERANCE[dtype] * scale_of)


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_scale_on_the_device_side_stream_and_no_host_sync(kind):
    """A learnable scale (and bias) on the device: read by the kernels, never copied to the host."""
    image, text = torch.randn(512, 128, device="cuda"), torch.randn(512, 128, device="cuda")
    log_scale = torch.tensor(2.6, device="cuda", requires_grad=True)
    bias = torch.tensor(-10.0, device="cuda", requires_grad=True)

    def step():
        image_leaf, text_leaf = image.clone().requires_grad_(), text.clone().requires_grad_()
        if kind == "clip":
            loss = closs.ClipLoss()(image_leaf, text_leaf, log_scale.exp())
        else:
            loss = closs.SigLipLoss()(image_leaf, text_leaf, log_scale.exp(), bias)
        loss.backward()
        return loss.detach(), image_leaf.grad

    expected, expected_grad = step()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        torch.cuda.set_sync_debug_mode("error")  # any synchronising torch call raises
        try:
            loss, grad = step()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    torch.cuda.current_stream().wait_stream(stream)
    torch.testing.assert_close(loss, expected, rtol=0, atol=0)  # the same bits: no float atomics
    torch.testing.assert_close(grad, expected_grad, rtol=0, atol=0)


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_opcheck_on_cuda(kind, reduction):
    operators = _two_tower_ops.OPERATORS[kind]
    tensors = [torch.randn(64, 16, device="cuda", requires_grad=True),
               torch.randn(80, 16, device="cuda", requires_grad=True),
               torch.tensor(5.0, device="cuda", requires_grad=True)]
    if kind == "siglip":
        tensors.append(torch.tensor(-3.0, device="cuda", requires_grad=True))
    names = _two_tower_ops.option_names(kind)
    kwargs = {name: value for name, value in dict(symmetric=True, in_batch_negatives=True, normalize=True,
                                                  grad_negatives=True, reduction=reduction, check_inputs=False,
                                                  path="auto").items() if name in names}
    torch.library.opcheck(operators["forward"], tensors, kwargs)
    torch.library.opcheck(operators["forward_backward"], tensors, kwargs)
    detached = [t.detach() for t in tensors]
    stats = list(operators["forward"](*detached, **kwargs)[1:]) if kind == "clip" else []
    upstream = torch.rand(64 if reduction == "none" else (), device="cuda") + 0.5
    torch.library.opcheck(operators["backward"], detached + stats + [upstream], kwargs)


def test_compiled_clip_step_is_cuda_graph_captured_without_host_sync():
    torch.manual_seed(0)
    image_tower, text_tower = torch.nn.Linear(32, 16).cuda(), torch.nn.Linear(24, 16).cuda()
    log_scale = torch.nn.Parameter(torch.tensor(2.6, device="cuda"))
    loss_fn = closs.ClipLoss()

    def forward(x, y):
        return loss_fn(image_tower(x), text_tower(y), log_scale.exp())

    compiled = torch.compile(forward, mode="reduce-overhead", fullgraph=True)
    x, y = torch.randn(256, 32, device="cuda"), torch.randn(256, 24, device="cuda")
    for _ in range(3):  # warm-up runs, then the capture
        compiled(x, y).backward()
    for p in [*image_tower.parameters(), *text_tower.parameters(), log_scale]:
        p.grad = None
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        loss = compiled(x, y)
        loss.backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    compiled_grad = log_scale.grad.clone()
    log_scale.grad = None
    expected = forward(x, y)
    expected.backward()
    torch.testing.assert_close(loss.detach(), expected.detach(), rtol=1e-5, atol=0)
    torch.testing.assert_close(compiled_grad, log_scale.grad, rtol=1e-4, atol=1e-6)
