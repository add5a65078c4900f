"""closs_jax on the CPU (the double-precision reference) against the same losses in plain
jax.numpy: values and jax.grad under jax.jit in float64 for every loss, reduction and the main
options; float32 inputs; SupCon's valid count; errors carrying closs's message. Fresh random inputs
on every run. GPU tests skip without a CUDA device."""

import itertools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

jax.config.update("jax_enable_x64", True)

import closs_jax  # noqa: E402
import jnp_losses  # noqa: E402

REDUCTIONS = ["mean", "sum", "none"]
rng = np.random.default_rng()


def rows(n, d, dtype=np.float64):
    return jnp.asarray(rng.standard_normal((n, d)), dtype=dtype)


def soft_labels(n):
    y = rng.random(n)
    y[: n // 2] = rng.integers(0, 2, n // 2)  # hard and soft labels
    return jnp.asarray(y)


# (name, closs_jax function, jax.numpy function, inputs maker -> (differentiable, vector), options)
def cases():
    for reduction, distance, margin in itertools.product(REDUCTIONS, ["euclidean", "cosine"], [0.0, 1.0, 4.0]):
        yield ("pair", closs_jax.pair_contrastive_loss, jnp_losses.pair,
               lambda: ((rows(7, 5), rows(7, 5)), soft_labels(7)),
               dict(margin=margin, distance=distance, reduction=reduction))
    for reduction, distance, swap in itertools.product(REDUCTIONS, ["sqeuclidean", "euclidean", "cosine"],
                                                       [False, True]):
        yield ("triplet", closs_jax.triplet_margin_loss, jnp_losses.triplet,
               lambda: ((rows(6, 4), rows(6, 4), rows(6, 4)), None),
               dict(margin=0.5, distance=distance, swap=swap, reduction=reduction))
    for reduction, squared, margin in itertools.product(REDUCTIONS, [False, True], [-0.5, 0.3]):
        yield ("cosine", closs_jax.cosine_contrastive_loss, jnp_losses.cosine_contrastive,
               lambda: ((rows(7, 3), rows(7, 3)), soft_labels(7)),
               dict(margin=margin, squared=squared, reduction=reduction))
    for reduction, normalize, temperature in itertools.product(REDUCTIONS, [True, False], [0.05, 2.0]):
        yield ("ntxent", closs_jax.ntxent_loss, jnp_losses.ntxent, lambda: ((rows(8, 4),), None),
               dict(temperature=temperature, normalize=normalize, reduction=reduction))
    for reduction, normalize, base in itertools.product(REDUCTIONS, [True, False], [None, 0.3]):
        yield ("supcon", closs_jax.supcon_loss, jnp_losses.supcon,
               lambda: ((rows(9, 4),), jnp.array([3, -1, 3, 7, -1, 7, 7, 100, 5])),  # 5: no positive
               dict(temperature=0.5, base_temperature=base, normalize=normalize, reduction=reduction))


CASES = list(cases())
IDS = ["%s-%s" % (c[0], "-".join("%s=%s" % kv for kv in c[4].items())) for c in CASES]


def _with_vector(function, vector, options):
    """function(*inputs) with the vector (y or labels) in its place and the options bound."""
    if vector is None:
        return lambda *inputs: function(*inputs, **options)
    return lambda *inputs: function(*inputs, vector, **options)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_matches_jax_numpy_under_jit_and_grad(case):
    name, ours, theirs, make, options = case
    inputs, vector = make()
    loss_ours = jax.jit(_with_vector(ours, vector, options))(*inputs)
    loss_theirs = _with_vector(theirs, vector, options)(*inputs)
    assert loss_ours.dtype == jnp.float64 and loss_ours.shape == loss_theirs.shape
    np.testing.assert_allclose(loss_ours, loss_theirs, rtol=1e-10, atol=1e-12)
    upstream = jnp.asarray(rng.random(loss_ours.shape) + 0.5)

    def weighted(function):
        return lambda *xs: jnp.sum(_with_vector(function, vector, options)(*xs) * upstream)

    argnums = tuple(range(len(inputs)))
    grads = jax.jit(jax.grad(weighted(ours), argnums))(*inputs)
    expected = jax.grad(weighted(theirs), argnums)(*inputs)
    for g, e in zip(grads, expected):
        assert g.dtype == jnp.float64
        np.testing.assert_allclose(g, e, rtol=1e-9, atol=1e-12)


def test_float32_inputs():
    """float32 in, float32 loss and gradient, equal to the float64 computation within float32."""
    z = rows(12, 5)
    labels = jnp.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 3, 3, 4])
    loss, grad = jax.value_and_grad(lambda z: closs_jax.supcon_loss(z, labels, temperature=0.2))(z.astype(jnp.float32))
    exact, exact_grad = jax.value_and_grad(lambda z: jnp_losses.supcon(z, labels, temperature=0.2))(z)
    assert loss.dtype == jnp.float32 and grad.dtype == jnp.float32
    np.testing.assert_allclose(loss, exact, rtol=1e-6)
    np.testing.assert_allclose(grad, exact_grad, rtol=1e-5, atol=1e-6 * float(jnp.abs(exact_grad).max()))


def test_supcon_valid_count():
    z = rows(10, 6)
    labels = jnp.array([0, 0, 1, 1, 1, 2, 3, 3, 4, 5])  # 2, 4 and 5 have no positive
    loss, valid = jax.jit(lambda z: closs_jax.supcon_loss(z, labels, return_valid=True))(z)
    assert int(valid) == 7
    np.testing.assert_allclose(loss, jnp_losses.supcon(z, labels), rtol=1e-10)


def test_labels_get_no_gradient_and_inputs_all_do():
    x1, x2, y = rows(5, 3), rows(5, 3), soft_labels(5)
    grads = jax.grad(lambda a, b: closs_jax.pair_contrastive_loss(a, b, y), (0, 1))(x1, x2)
    assert all(g.shape == (5, 3) for g in grads)


def test_vmap_runs_one_loss_per_batch_element():
    zs = jnp.stack([rows(8, 4) for _ in range(3)])
    losses, grads = jax.jit(jax.vmap(jax.value_and_grad(lambda z: closs_jax.ntxent_loss(z, temperature=0.3))))(zs)
    for z, loss, grad in zip(zs, losses, grads):
        expected, expected_grad = jax.value_and_grad(lambda z: jnp_losses.ntxent(z, temperature=0.3))(z)
        np.testing.assert_allclose(loss, expected, rtol=1e-10)
        np.testing.assert_allclose(grad, expected_grad, rtol=1e-9, atol=1e-12)


def test_closs_errors_carry_its_message():
    with pytest.raises(Exception, match="temperature = 0"):
        closs_jax.ntxent_loss(rows(4, 3), temperature=0.0)
    with pytest.raises(Exception, match="rows"):
        closs_jax.ntxent_loss(rows(5, 3))  # NT-Xent needs an even number of rows
    with pytest.raises(ValueError, match="reduction = 'avg'"):
        closs_jax.ntxent_loss(rows(4, 3), reduction="avg")
    with pytest.raises(ValueError, match="2-D"):
        closs_jax.triplet_margin_loss(jnp.ones(3), jnp.ones(3), jnp.ones(3))


def test_check_inputs_reports_nonfinite():
    z = rows(4, 3).at[2, 1].set(jnp.nan)
    assert jnp.isnan(closs_jax.ntxent_loss(z))
    with pytest.raises(Exception, match="z"):
        closs_jax.ntxent_loss(z, check_inputs=True)


@pytest.mark.skipif(not any(d.platform == "gpu" for d in jax.devices()), reason="no CUDA device for JAX")
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("path", ["fused", "chunked"])
def test_gpu_matches_cpu_reference(path, reduction):
    gpu, cpu = jax.devices("gpu")[0], jax.devices("cpu")[0]
    z = rows(130, 67)
    labels = jnp.asarray(rng.integers(0, 30, 130))
    upstream = jnp.asarray(rng.random(130 if reduction == "none" else ()) + 0.5)

    def value_and_grad(z, labels, upstream):
        loss, vjp = jax.vjp(lambda z: closs_jax.supcon_loss(z, labels, path=path, reduction=reduction), z)
        return loss, vjp(upstream.astype(loss.dtype))[0]

    on_gpu = jax.jit(value_and_grad)(*jax.device_put((z.astype(jnp.float32), labels, upstream), gpu))
    on_cpu = jax.jit(value_and_grad)(*jax.device_put((z, labels, upstream), cpu))
    for ours, expected in zip(on_gpu, on_cpu):
        scale = float(jnp.abs(expected).max())
        np.testing.assert_allclose(np.asarray(ours, np.float64), expected, rtol=2e-5, atol=2e-5 * scale)


@pytest.mark.skipif(not any(d.platform == "gpu" for d in jax.devices()), reason="no CUDA device for JAX")
@pytest.mark.parametrize("path", ["fused", "chunked"])
def test_gpu_calls_from_many_threads_give_the_same_bits(path):
    """Issue #27 item 5: each XLA thread has its own closs handle (closs.h: one thread per handle at a
    time), so computations launched at once from several threads, which XLA may run on different
    threads, neither race on a handle's cuBLAS stream and workspace nor change a bit of the result."""
    import concurrent.futures

    gpu = jax.devices("gpu")[0]
    inputs = [jax.device_put(rows(256, 64, np.float32), gpu) for _ in range(4)]
    step = jax.jit(jax.value_and_grad(lambda z: closs_jax.ntxent_loss(z, path=path)))
    alone = [jax.device_get(step(z)) for z in inputs]
    with concurrent.futures.ThreadPoolExecutor(len(inputs)) as pool:
        for _ in range(10):
            together = list(pool.map(lambda z: jax.device_get(step(z)), inputs))
            for got, want in zip(together, alone):
                for ours, expected in zip(got, want):
                    np.testing.assert_array_equal(ours, expected)


@pytest.mark.parametrize("dtype, directions", [(jnp.float16, {"0", "2"}), (jnp.bfloat16, {"1"}),
                                               (jnp.float32, {"1"})])
def test_float16_gradients_take_the_real_cotangent(dtype, directions):
    """Issue #27 item 4: float16's jax.grad runs closs's forward then its backward with the real
    (loss-scaled) cotangent, never the fused forward_backward, whose gradients would be rounded to
    float16 before the scale reaches them. Read from the traced program (the CPU computes float16
    from float32, so only the GPU's program has float16 calls: traced here, not run)."""
    z, labels = jnp.ones((8, 4), dtype), jnp.arange(8) % 2
    options = tuple(dict(temperature=0.1, base_temperature=0.1, normalize=True, reduction="mean",
                         check_inputs=False, path="auto").items())
    program = str(jax.make_jaxpr(jax.grad(lambda z: closs_jax._loss("supcon", options, (z,), labels)[0]))(z))
    assert set(re.findall(r"'direction', np.int32\((\d)\)", program)) == directions


def test_cpu_arrays_run_the_reference_whatever_the_default_backend(monkeypatch):
    """Issue #27 item 10: the compute dtype follows where the arrays are, not jax.default_backend()
    (float16 CPU arrays with a GPU default went to the CPU reference as float16, which it refuses)."""
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    z = rows(8, 4).astype(jnp.float16)
    want = closs_jax.ntxent_loss(z.astype(jnp.float32), temperature=0.5)
    np.testing.assert_allclose(closs_jax.ntxent_loss(z, temperature=0.5), want, rtol=1e-6)
