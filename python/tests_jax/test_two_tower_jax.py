"""closs_jax's CLIP and SigLIP on the CPU (the double-precision reference) against plain
jax.numpy (jnp_losses): values and jax.grad of all four inputs (the towers, the logit scale and
the bias) under jax.jit, in float64, for every option, with and without extra negatives; the
queue without a gradient; float32; errors. A GPU test skips without a CUDA device for JAX."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

jax.config.update("jax_enable_x64", True)

import closs_jax  # noqa: E402
import jnp_losses  # noqa: E402

rng = np.random.default_rng()
REDUCTIONS = ["mean", "sum", "none"]


def rows(n, d=4):
    return jnp.asarray(rng.standard_normal((n, d)))


def cases():
    modes = [dict(symmetric=True, in_batch_negatives=True), dict(symmetric=False, in_batch_negatives=True),
             dict(symmetric=False, in_batch_negatives=False)]
    for mode, normalize, reduction, extra in itertools.product(modes, [True, False], REDUCTIONS, [0, 3]):
        yield "clip", dict(mode, normalize=normalize, reduction=reduction), extra
    for normalize, reduction, extra in itertools.product([True, False], REDUCTIONS, [0, 3]):
        yield "siglip", dict(normalize=normalize, reduction=reduction), extra


CASES = list(cases())
IDS = ["%s-K%d-%s" % (kind, extra, "-".join("%s=%s" % kv for kv in options.items())) for kind, options, extra in CASES]


def functions(kind, options, negatives):
    """(closs_jax's loss, jax.numpy's) of (a, b, scale[, bias]), the extra negatives given apart to
    closs_jax and as rows of b to jax.numpy."""
    if kind == "clip":
        return (lambda a, b, s: closs_jax.clip_loss(a, b, s, negatives=negatives, **options),
                lambda a, b, s: jnp_losses.clip(a, jnp.concatenate([b, negatives]), s, **options))
    return (lambda a, b, s, beta: closs_jax.siglip_loss(a, b, s, beta, negatives=negatives, **options),
            lambda a, b, s, beta: jnp_losses.siglip(a, jnp.concatenate([b, negatives]), s, beta, **options))


@pytest.mark.parametrize("kind, options, extra", CASES, ids=IDS)
def test_matches_jax_numpy_under_jit_and_grad(kind, options, extra):
    negatives = rows(extra)
    inputs = [rows(5), rows(5), jnp.asarray(2.5)] + ([jnp.asarray(-1.5)] if kind == "siglip" else [])
    ours, theirs = functions(kind, options, negatives)
    loss_ours, loss_theirs = jax.jit(ours)(*inputs), theirs(*inputs)
    assert loss_ours.dtype == jnp.float64 and loss_ours.shape == loss_theirs.shape
    np.testing.assert_allclose(loss_ours, loss_theirs, rtol=1e-10, atol=1e-12)
    upstream = jnp.asarray(rng.random(loss_ours.shape) + 0.5)
    argnums = tuple(range(len(inputs)))
    grads = jax.jit(jax.grad(lambda *xs: jnp.sum(ours(*xs) * upstream), argnums))(*inputs)
    expected = jax.grad(lambda *xs: jnp.sum(theirs(*xs) * upstream), argnums)(*inputs)
    for g, e in zip(grads, expected):
        assert g.dtype == jnp.float64 and g.shape == e.shape
        np.testing.assert_allclose(g, e, rtol=1e-9, atol=1e-12)


def test_negatives_get_their_gradient_or_none():
    a, b, negatives = rows(5), rows(5), rows(4)
    with_grad = jax.grad(lambda n: closs_jax.clip_loss(a, b, 3.0, negatives=n))(negatives)
    expected = jax.grad(lambda n: jnp_losses.clip(a, jnp.concatenate([b, n]), 3.0))(negatives)
    np.testing.assert_allclose(with_grad, expected, rtol=1e-9, atol=1e-12)
    # grad_negatives=False: a queue that gets no gradient work, zero rows for autodiff
    without = jax.grad(lambda n: closs_jax.clip_loss(a, b, 3.0, negatives=n, grad_negatives=False,
                                                     symmetric=False))(negatives)
    assert without.shape == negatives.shape and not np.any(np.asarray(without))


def test_float32_inputs():
    a, b = rows(6, 5), rows(9, 5)
    value_and_grad = jax.value_and_grad(lambda a, b, s: closs_jax.clip_loss(a, b, s), (0, 1, 2))
    loss, grads = value_and_grad(a.astype(jnp.float32), b.astype(jnp.float32), jnp.float32(4.0))
    exact, exact_grads = jax.value_and_grad(lambda a, b, s: jnp_losses.clip(a, b, s), (0, 1, 2))(a, b, 4.0)
    assert loss.dtype == jnp.float32 and all(g.dtype == jnp.float32 for g in grads)
    np.testing.assert_allclose(loss, exact, rtol=1e-6)
    for g, e in zip(grads, exact_grads):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6 * float(jnp.abs(e).max()))


def test_closs_errors_carry_its_message():
    with pytest.raises(Exception, match="logit_scale"):
        closs_jax.clip_loss(rows(4), rows(4), 0.0)
    with pytest.raises(Exception, match="in_batch_negatives"):
        closs_jax.clip_loss(rows(4), rows(4), in_batch_negatives=False)
    with pytest.raises(Exception, match="b.rows"):
        closs_jax.siglip_loss(rows(4), rows(3))
    with pytest.raises(ValueError, match="2-D"):
        closs_jax.siglip_loss(jnp.ones(3), jnp.ones(3))


@pytest.mark.skipif(not any(d.platform == "gpu" for d in jax.devices()), reason="no CUDA device for JAX")
@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_gpu_matches_cpu_reference(kind):
    gpu, cpu = jax.devices("gpu")[0], jax.devices("cpu")[0]
    inputs = [rows(130, 67), rows(140, 67), jnp.asarray(10.0)] + ([jnp.asarray(-5.0)] if kind == "siglip" else [])
    loss_fn = closs_jax.clip_loss if kind == "clip" else closs_jax.siglip_loss
    value_and_grad = jax.jit(jax.value_and_grad(loss_fn, tuple(range(len(inputs)))))
    on_gpu = value_and_grad(*jax.device_put([x.astype(jnp.float32) for x in inputs], gpu))
    on_cpu = value_and_grad(*jax.device_put(inputs, cpu))
    for ours, expected in zip(jax.tree.leaves(on_gpu), jax.tree.leaves(on_cpu)):
        scale = float(jnp.abs(expected).max())
        np.testing.assert_allclose(np.asarray(ours, np.float64), expected, rtol=2e-5, atol=2e-5 * scale)
