"""The package on CUDA tensors: values and gradients against the CPU reference (float64, same
values), every dtype, the fused (mean, sum) and separate (none) backward, both NT-Xent/SupCon paths,
strided rows, a side stream, no host synchronisation, and one training step equal to the
plain-torch step. Skipped, visibly, without a CUDA device or a CUDA build of libcloss."""

import pytest
import torch

import closs
import torch_losses

if not torch.cuda.is_available():
    pytest.skip("no CUDA device", allow_module_level=True)
if not closs.cuda_available():
    pytest.skip("libcloss was built without CUDA", allow_module_level=True)

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
# Relative to the largest magnitude of the expected values: float32 accumulation everywhere; the
# inputs themselves are exact in the reference (it reads the same rounded values).
TOLERANCE = {torch.float32: 2e-5, torch.float16: 4e-3, torch.bfloat16: 3e-2}


def inputs_for(name, rows, dim, dtype, device):
    make = lambda: torch.randn(rows, dim, device=device).to(dtype)  # noqa: E731
    if name in ("pair", "cosine"):
        return [make(), make()], torch.rand(rows, device=device)
    if name == "triplet":
        return [make(), make(), make()], None
    if name == "ntxent":
        return [make()], None
    return [make()], torch.randint(0, max(rows // 4, 1), (rows,), device=device)


FUNCTIONS = {"pair": lambda x, v, **o: closs.pair_contrastive_loss(*x, v, **o),
             "triplet": lambda x, v, **o: closs.triplet_margin_loss(*x, **o),
             "cosine": lambda x, v, **o: closs.cosine_contrastive_loss(*x, v, **o),
             "ntxent": lambda x, v, **o: closs.ntxent_loss(*x, **o),
             "supcon": lambda x, v, **o: closs.supcon_loss(*x, v, **o)}


def loss_and_grads(name, inputs, vector, upstream, **options):
    leaves = [x.detach().requires_grad_() for x in inputs]
    loss = FUNCTIONS[name](leaves, vector, **options)
    grads = torch.autograd.grad(loss, leaves, upstream.to(loss.device, loss.dtype).reshape(loss.shape))
    return loss, grads


def assert_close_scaled(actual, expected, tolerance):
    scale = expected.abs().max().clamp_min(1e-30)
    torch.testing.assert_close(actual.double().cpu(), expected, rtol=tolerance, atol=tolerance * scale)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name, options", [
    ("pair", {}), ("pair", {"distance": "cosine", "margin": 0.5}),
    ("triplet", {}), ("triplet", {"distance": "euclidean", "swap": True}), ("triplet", {"distance": "cosine"}),
    ("cosine", {}), ("cosine", {"squared": True, "margin": 0.2}),
    ("ntxent", {"path": "chunked"}), ("ntxent", {"path": "auto", "temperature": 0.05}),
    ("ntxent", {"path": "auto", "normalize": False, "temperature": 20.0}),
    ("supcon", {"path": "chunked"}), ("supcon", {"path": "auto", "base_temperature": 0.1}),
])
def test_matches_cpu_reference(name, options, reduction, dtype):
    rows = 130 if name in ("ntxent", "supcon") else 1003
    inputs, vector = inputs_for(name, rows, 67, dtype, "cuda")
    upstream = torch.rand(rows if reduction == "none" else 1, dtype=torch.float64) + 0.5
    loss, grads = loss_and_grads(name, inputs, vector, upstream, reduction=reduction, **options)
    assert loss.dtype == torch.float32 and all(g.dtype == dtype for g in grads)
    cpu_inputs = [x.double().cpu() for x in inputs]
    cpu_vector = None if vector is None else vector.cpu()
    expected_loss, expected_grads = loss_and_grads(name, cpu_inputs, cpu_vector, upstream, reduction=reduction,
                                                   **options)
    assert_close_scaled(loss, expected_loss, TOLERANCE[dtype])
    for g, e in zip(grads, expected_grads):
        assert_close_scaled(g, e, TOLERANCE[dtype])


def test_strided_rows_side_stream_and_no_host_sync():
    wide = torch.randn(512, 200, device="cuda")
    z = wide[:, 10:138]  # ld 200 > dim 128: passed as a view
    labels = torch.randint(0, 64, (512,), device="cuda")
    upstream = torch.ones(1, device="cuda")  # already on the device: no copy in the checked region
    expected, expected_grads = loss_and_grads("supcon", [z.contiguous()], labels, upstream)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        torch.cuda.set_sync_debug_mode("error")  # any synchronising torch call raises
        try:
            loss, grads = loss_and_grads("supcon", [z], labels, upstream)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    torch.cuda.current_stream().wait_stream(stream)
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=0)
    torch.testing.assert_close(grads[0], expected_grads[0], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_no_synchronisation_inside_libcloss(name, dtype):
    """Issue #27 item 10: set_sync_debug_mode sees only torch's synchronisations, not those inside
    libcloss (called through ctypes). Here the stream is kept busy (torch.cuda._sleep) while closs
    enqueues a forward and a backward: had anything synchronised, the stream would be idle when
    they return. float16 takes forward then backward (the loss-scale rule), float32 the fused one."""
    inputs, vector = inputs_for(name, 256, 64, dtype, "cuda")
    upstream = torch.full((), 1024.0, device="cuda")
    loss_and_grads(name, inputs, vector, upstream)  # warm-up: the handle, the allocator's blocks
    torch.cuda.synchronize()
    torch.cuda._sleep(200_000_000)  # ~0.1 s of GPU clock cycles ahead of closs's kernels
    loss_and_grads(name, inputs, vector, upstream)
    assert not torch.cuda.current_stream().query(), "the stream drained: a call synchronised"
    torch.cuda.synchronize()


def test_one_training_step_equals_plain_torch():
    torch.manual_seed(0)
    data = torch.randn(256, 32, device="cuda")
    labels = torch.randint(0, 16, (256,), device="cuda")
    model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 16)).cuda()
    twin = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 16)).cuda()
    twin.load_state_dict(model.state_dict())
    for network, loss_fn in [(model, closs.SupConLoss(temperature=0.1)),
                             (twin, lambda z, y: torch_losses.supcon(z, y, temperature=0.1))]:
        optimizer = torch.optim.SGD(network.parameters(), lr=0.5)
        optimizer.zero_grad()
        loss_fn(network(data), labels).backward()
        optimizer.step()
    for ours, theirs in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-6)


def test_autocast_bf16():
    linear = torch.nn.Linear(64, 32).cuda()
    x = torch.randn(128, 64, device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        z = linear(x)
        loss = closs.NTXentLoss()(z)
    assert z.dtype == torch.bfloat16 and loss.dtype == torch.float32
    loss.backward()
    assert linear.weight.grad is not None and torch.isfinite(linear.weight.grad).all()


def test_float64_on_cuda_is_refused():
    with pytest.raises(TypeError, match="not float64"):
        closs.ntxent_loss(torch.randn(4, 3, device="cuda", dtype=torch.float64))
    with pytest.raises(ValueError, match="is on cpu"):
        closs.pair_contrastive_loss(torch.randn(2, 3, device="cuda"), torch.randn(2, 3), torch.ones(2))


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("name, options", [
    ("pair", {"margin": 1.0, "distance": "euclidean", "check_inputs": False}),
    ("triplet", {"margin": 1.0, "distance": "cosine", "swap": True, "check_inputs": False}),
    ("cosine", {"margin": 0.2, "squared": True, "check_inputs": False}),
    ("ntxent", {"temperature": 0.1, "normalize": True, "check_inputs": False, "path": "fused"}),
    ("ntxent", {"temperature": 0.5, "normalize": False, "check_inputs": False, "path": "chunked"}),
    ("supcon", {"temperature": 0.1, "base_temperature": 0.0, "normalize": True, "check_inputs": False,
                "path": "fused"}),
    ("supcon", {"temperature": 0.1, "base_temperature": 0.07, "normalize": True, "check_inputs": False,
                "path": "chunked"}),
])
def test_opcheck_on_cuda(name, options, reduction):
    """The three operators of each loss on CUDA tensors (float32, forward's real statistics)."""
    from closs import _dispatch, _ops
    spec = _dispatch.SPECS[name]
    inputs, vector = inputs_for(name, 64, 16, torch.float32, "cuda")
    inputs = [x.requires_grad_() for x in inputs]
    tensors = inputs + ([vector] if vector is not None else [])
    kwargs = dict(options, reduction=reduction)
    kwargs = {k: kwargs[k] for k in [a.split()[1] for a in _ops.OPTIONS[name].split(", ")]}
    operators = _ops.OPERATORS[name]
    torch.library.opcheck(operators["forward"], tensors, kwargs)
    torch.library.opcheck(operators["forward_backward"], tensors, kwargs)
    detached = [t.detach() for t in tensors]
    stats = [operators["forward"](*detached, **kwargs)[1]] if spec.contrastive else []
    upstream = torch.rand(64 if reduction == "none" else (), device="cuda") + 0.5
    torch.library.opcheck(operators["backward"], detached + stats + [upstream], kwargs)


@pytest.mark.parametrize("loss_fn", [closs.SupConLoss(temperature=0.1), closs.NTXentLoss(reduction="none")],
                         ids=["supcon-mean", "ntxent-none"])
def test_compiled_step_is_cuda_graph_captured_without_host_sync(loss_fn):
    """torch.compile(mode="reduce-overhead") captures the step, closs included, in a CUDA graph; its
    replays equal eager and never synchronise the host."""
    torch.manual_seed(0)
    model = torch.nn.Linear(32, 16).cuda()
    labels = torch.randint(0, 8, (256,), device="cuda")
    call = (lambda z: loss_fn(z, labels)) if isinstance(loss_fn, closs.SupConLoss) else loss_fn

    def step(x):
        loss = call(model(x)).sum()
        loss.backward()
        return loss.detach()

    compiled = torch.compile(lambda x: call(model(x)).sum(), mode="reduce-overhead", fullgraph=True)
    x = torch.randn(256, 32, device="cuda")
    for _ in range(3):  # warm-up runs, then the capture
        compiled(x).backward()
    model.zero_grad()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        loss = compiled(x)
        loss.backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    compiled_grad = model.weight.grad.clone()
    model.zero_grad()
    expected = step(x)
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-5, atol=0)
    torch.testing.assert_close(compiled_grad, model.weight.grad, rtol=1e-4, atol=1e-6)
