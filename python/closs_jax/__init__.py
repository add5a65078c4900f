"""closs for JAX: the five losses as jax.ffi calls into libcloss, differentiable with jax.grad
(jax.custom_vjp) and usable under jax.jit, on the CPU (the double-precision reference) and on CUDA
(the fused kernels, on XLA's stream, workspace from XLA's allocator).

    import closs_jax
    loss = closs_jax.ntxent_loss(jnp.concatenate([z1, z2]), temperature=0.1)
    grads = jax.grad(lambda z: closs_jax.ntxent_loss(z))(z)

The functions take the arguments of closs's PyTorch functional forms (docs/contract.md has the
math). The loss is float64 for float64 inputs (jax_enable_x64) and float32 otherwise; gradients
come back in each input's dtype. On the CPU float16/bfloat16 inputs are computed from a float32
copy. With "mean" or "sum" the forward of jax.grad computes the gradients too (closs's
forward_backward: one pass) and the backward scales them; with "none", and for float16 (whose
gradients must see a loss scale before they are rounded), the backward runs closs's backward with
the real cotangent. Labels (y, labels) get no gradient.

The two-tower losses, clip_loss and siglip_loss, take the towers a (N, D) and b ((N + K, D): the
partners, then K extra negatives, or given apart as negatives=) and the logit scale (and SigLIP's
bias) as arrays: jax.grad differentiates all four. They go through a second FFI target,
"closs_two_tower" (two_tower_ffi.cc).

The handler (ffi.cc, built by CMake as libcloss_jax.so when jaxlib's FFI headers are found) is
found through $CLOSS_JAX_LIBRARY, the copy `pip install` put beside this file or the source tree's
build/python/; the libcloss it links must be this package's version (ImportError otherwise).
"""

import ctypes
import functools
import os
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["pair_contrastive_loss", "triplet_margin_loss", "cosine_contrastive_loss", "ntxent_loss",
           "supcon_loss", "clip_loss", "siglip_loss", "handler_path", "library_version"]

# include/closs.h's enums, and ffi.cc's loss and direction numbers.
_REDUCTIONS = {"mean": 0, "sum": 1, "none": 2}
_DISTANCES = {"euclidean": 0, "sqeuclidean": 1, "cosine": 2}
_PATHS = {"auto": 0, "fused": 1, "chunked": 2}
_LOSSES = {"pair": 0, "triplet": 1, "cosine": 2, "ntxent": 3, "supcon": 4}
_DIRECTIONS = {"forward": 0, "forward_backward": 1, "backward": 2}
# (number of floating inputs, has a vector, NT-Xent/SupCon statistics, SupCon's valid count)
_SHAPES = {"pair": (2, True, False, False), "triplet": (3, False, False, False),
           "cosine": (2, True, False, False), "ntxent": (1, False, True, False), "supcon": (1, True, True, True)}


def _handler_candidates():
    here = pathlib.Path(__file__).resolve().parent
    return [here / "libcloss_jax.so", here.parent.parent / "build" / "python" / "libcloss_jax.so"]


def _find_handler():
    if os.environ.get("CLOSS_JAX_LIBRARY"):
        return os.environ["CLOSS_JAX_LIBRARY"]  # asked for by name: no fallback to another copy
    for candidate in _handler_candidates():
        if candidate.exists():
            return str(candidate)
    raise OSError("the closs JAX handler (libcloss_jax.so) was not found (tried %s); install closs where jax is "
                  "installed (pip install .), or build it (cmake -S . -B build && cmake --build build, with jax "
                  "installed), or set CLOSS_JAX_LIBRARY to its path"
                  % ", ".join(map(str, _handler_candidates())))


def _package_version():
    """As closs's (closs/_capi.py): _version.py, written by the wheel's build from CMakeLists.txt's
    `project(closs VERSION ...)`; in a source tree that line itself."""
    try:
        from ._version import __version__
        return __version__
    except ImportError:
        cmake = pathlib.Path(__file__).resolve().parents[2] / "CMakeLists.txt"
        match = re.search(r"project\(closs VERSION ([0-9.]+)", cmake.read_text() if cmake.is_file() else "")
        return match.group(1) if match else "unknown (no _version.py, no %s)" % cmake


def _checked_library_version(handler):
    """The version of the libcloss the handler loaded, which must be this package's."""
    try:
        version_string = handler.closs_version_string  # libcloss's, found through the handler's links
    except AttributeError:
        raise ImportError("%s is not closs's JAX handler: no libcloss behind it" % handler_path) from None
    version_string.restype = ctypes.c_char_p
    version = version_string().decode(errors="replace")
    if version != __version__:
        raise ImportError("closs_jax %s (%s) found a handler whose libcloss is %s (%s): the two must be the same "
                          "version; reinstall closs (pip install .), rebuild the source tree's build/, or point "
                          "CLOSS_JAX_LIBRARY at a handler of closs %s"
                          % (__version__, pathlib.Path(__file__).resolve().parent, version, handler_path, __version__))
    return version


__version__ = _package_version()
handler_path = _find_handler()
_handler = ctypes.CDLL(handler_path)
_library_version = _checked_library_version(_handler)


def library_version():
    """The version of the libcloss behind the handler: always __version__ (the import checks it)."""
    return _library_version


jax.ffi.register_ffi_target("closs", jax.ffi.pycapsule(_handler.closs_jax_cpu), platform="cpu")
jax.ffi.register_ffi_target("closs", jax.ffi.pycapsule(_handler.closs_jax_cuda), platform="CUDA")
jax.ffi.register_ffi_target("closs_two_tower", jax.ffi.pycapsule(_handler.closs_jax_two_tower_cpu), platform="cpu")
jax.ffi.register_ffi_target("closs_two_tower", jax.ffi.pycapsule(_handler.closs_jax_two_tower_cuda),
                            platform="CUDA")


def _choice(kind, table, value):
    try:
        return np.int32(table[value])
    except (KeyError, TypeError):
        raise ValueError("%s = %r: must be one of %s" % (kind, value, ", ".join(map(repr, table)))) from None


def _attributes(options):
    """The handler's attributes: floats as float64, flags and choices as int32."""
    tables = {"reduction": _REDUCTIONS, "distance": _DISTANCES, "path": _PATHS}
    attributes = {}
    for key, value in options:
        if key in tables:
            attributes[key] = _choice(key, tables[key], value)
        elif isinstance(value, bool):
            attributes[key] = np.int32(value)
        else:
            attributes[key] = np.float64(value)
    return attributes


def _call(name, direction, args, options):
    """One handler call; returns its results in ffi.cc's order for that direction."""
    inputs_count, _, contrastive, has_valid = _SHAPES[name]
    inputs = args[:inputs_count]
    first = inputs[0]
    rows = first.shape[0]
    reduction = dict(options)["reduction"]
    loss_type = jnp.float64 if first.dtype == jnp.float64 else jnp.float32
    loss = jax.ShapeDtypeStruct((rows,) if reduction == "none" else (), loss_type)
    stats = [jax.ShapeDtypeStruct((rows,), jnp.float32)] if contrastive else []
    # SupCon's int64 count, as two int32 words (JAX has no int64 without jax_enable_x64).
    valid = [jax.ShapeDtypeStruct((2,), jnp.int32)] if has_valid else []
    grads = [jax.ShapeDtypeStruct(t.shape, t.dtype) for t in inputs]
    results = {"forward": [loss] + stats + valid, "forward_backward": [loss] + valid + grads,
               "backward": grads}[direction]
    call = jax.ffi.ffi_call("closs", results, vmap_method="sequential")  # vmap: one call per element
    return call(*args, loss=np.int32(_LOSSES[name]), direction=np.int32(_DIRECTIONS[direction]),
                **_attributes(options))


def _primal_outputs(name, loss, valid):
    """loss, and SupCon's valid count as int32 (its low word: counts are below 2³¹)."""
    return (loss, valid[0]) if _SHAPES[name][3] else loss


def _fuses(options, dtype):
    """Whether the forward of jax.grad computes the gradients too (one pass at cotangent 1, scaled
    later): for "mean" and "sum", and not for float16, whose gradients would be rounded before a
    loss scale reaches them (most entries of SupCon's are float16 subnormals at M = 4096;
    bench/NOTES.md): closs's backward takes the real cotangent and rounds g·scale once."""
    return dict(options)["reduction"] != "none" and dtype != jnp.float16


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _loss(name, options, inputs, vector):
    args = list(inputs) + ([vector] if _SHAPES[name][1] else [])
    outputs = _call(name, "forward", args, options)
    return _primal_outputs(name, outputs[0], outputs[-1])


def _loss_forward(name, options, inputs, vector):
    args = list(inputs) + ([vector] if _SHAPES[name][1] else [])
    _, _, contrastive, has_valid = _SHAPES[name]
    if _fuses(options, inputs[0].dtype):  # one pass: the gradients now, scaled later
        loss, *rest = _call(name, "forward_backward", args, options)
        valid = rest[0] if has_valid else None
        return _primal_outputs(name, loss, valid), tuple(rest[1 if has_valid else 0:])
    loss, *rest = _call(name, "forward", args, options)
    stats = rest[0] if contrastive else None
    return _primal_outputs(name, loss, rest[-1] if has_valid else None), (inputs, vector, stats)


def _loss_backward(name, options, residuals, cotangent):
    upstream = cotangent[0] if _SHAPES[name][3] else cotangent
    if not isinstance(residuals[0], tuple):  # fused (_fuses): residuals are the loss's gradients
        grads = tuple((g * upstream).astype(g.dtype) for g in residuals)
    else:  # residuals: the inputs, vector and statistics for closs's backward
        inputs, vector, stats = residuals
        args = list(inputs) + ([vector] if _SHAPES[name][1] else []) + ([stats] if stats is not None else [])
        grads = tuple(_call(name, "backward", args + [upstream], options))
    return grads, None


_loss.defvjp(_loss_forward, _loss_backward)


def _runs_on_cpu(arrays):
    """Whether the call runs on the CPU reference: where the arrays are, when they are concrete
    (CPU arrays with a GPU default backend run on the CPU); JAX's default backend under jit, whose
    tracers have no device yet."""
    devices = set()
    for t in arrays:
        if isinstance(t, jax.core.Tracer):
            return jax.default_backend() == "cpu"
        devices.update(t.devices())
    return all(device.platform == "cpu" for device in devices)


def _run(name, inputs, vector, options):
    """Checks and converts the arguments (one floating dtype for the inputs; a vector dtype closs
    reads), then the custom_vjp call."""
    inputs = [jnp.asarray(t) for t in inputs]
    for t in inputs:
        if t.ndim != 2:
            raise ValueError("closs_jax: the inputs must be 2-D (rows, dim), got shape %s" % (t.shape,))
        if not jnp.issubdtype(t.dtype, jnp.floating):
            raise TypeError("closs_jax: the inputs must be floating, got %s" % t.dtype)
    dtype = jnp.result_type(*inputs)
    if _runs_on_cpu(inputs) and dtype != jnp.float64:
        dtype = jnp.float32  # the reference reads float32 and float64
    inputs = tuple(t.astype(dtype) for t in inputs)
    if vector is not None:
        vector = jnp.asarray(vector)
        if vector.ndim != 1:
            raise ValueError("closs_jax: %s must be 1-D, got shape %s" % ("labels" if name == "supcon" else "y",
                                                                           vector.shape))
        if name == "supcon":
            if not jnp.issubdtype(vector.dtype, jnp.integer):
                raise TypeError("closs_jax: labels must be integers, got %s" % vector.dtype)
            if vector.dtype not in (jnp.int32, jnp.int64):
                vector = vector.astype(jnp.int32)
        else:
            vector = vector.astype(jnp.float64 if dtype == jnp.float64 else jnp.float32)
    return _loss(name, tuple(options.items()), inputs, vector)


def pair_contrastive_loss(x1, x2, y, margin=1.0, distance="euclidean", reduction="mean", check_inputs=False):
    """Pair contrastive (Siamese) loss: y·d² + (1 − y)·max(0, margin − d)², y in [0, 1]."""
    return _run("pair", [x1, x2], y, dict(margin=float(margin), distance=distance, reduction=reduction,
                                          check_inputs=bool(check_inputs)))


def triplet_margin_loss(anchor, positive, negative, margin=1.0, distance="sqeuclidean", swap=False,
                        reduction="mean", check_inputs=False):
    """Triplet loss: max(0, d(a, p) − d(a, n) + margin)."""
    return _run("triplet", [anchor, positive, negative], None,
                dict(margin=float(margin), distance=distance, swap=bool(swap), reduction=reduction,
                     check_inputs=bool(check_inputs)))


def cosine_contrastive_loss(x1, x2, y, margin=0.0, squared=False, reduction="mean", check_inputs=False):
    """Cosine contrastive loss: y·(1 − c) + (1 − y)·max(0, c − margin)^q, c = cos(x1, x2)."""
    return _run("cosine", [x1, x2], y, dict(margin=float(margin), squared=bool(squared), reduction=reduction,
                                            check_inputs=bool(check_inputs)))


def ntxent_loss(z, temperature=0.1, normalize=True, reduction="mean", check_inputs=False, path="auto"):
    """NT-Xent (SimCLR) of z = concatenate([z1, z2]), (2N, D)."""
    return _run("ntxent", [z], None, dict(temperature=float(temperature), normalize=bool(normalize),
                                          reduction=reduction, check_inputs=bool(check_inputs), path=path))


def supcon_loss(z, labels, temperature=0.07, base_temperature=None, normalize=True, reduction="mean",
                check_inputs=False, path="auto", return_valid=False):
    """Supervised contrastive loss (SupCon L_out) of z (M, D) with integer labels (M). return_valid:
    also return the number of anchors with a positive (int32)."""
    loss, valid = _run("supcon", [z], labels, dict(
        temperature=float(temperature), base_temperature=0.0 if base_temperature is None else float(base_temperature),
        normalize=bool(normalize), reduction=reduction, check_inputs=bool(check_inputs), path=path))
    return (loss, valid) if return_valid else loss


# ---- two-tower losses (two_tower_ffi.cc) ----------------------------------------------------------

_KINDS = {"clip": 0, "siglip": 1}


def _two_tower_call(kind, direction, args, options):
    """One call of the "closs_two_tower" target; its results in two_tower_ffi.cc's order."""
    a, b = args[0], args[1]
    opts = dict(options)
    loss_type = jnp.float64 if a.dtype == jnp.float64 else jnp.float32
    pairs = a.shape[0]
    loss = jax.ShapeDtypeStruct((pairs,) if opts["reduction"] == "none" else (), loss_type)
    rows_b = b.shape[0] if opts["grad_negatives"] else pairs
    scalars = 1 if kind == "clip" else 2
    grads = [jax.ShapeDtypeStruct(a.shape, a.dtype), jax.ShapeDtypeStruct((rows_b, b.shape[1]), b.dtype)]
    grads += [jax.ShapeDtypeStruct((), loss_type)] * scalars
    stats = []
    if kind == "clip":
        stats = [jax.ShapeDtypeStruct((pairs,), loss_type),
                 jax.ShapeDtypeStruct((pairs if opts["symmetric"] else 0,), loss_type)]
    results = {"forward": [loss] + stats, "forward_backward": [loss] + grads, "backward": grads}[direction]
    call = jax.ffi.ffi_call("closs_two_tower", results, vmap_method="sequential")
    return call(*args, kind=np.int32(_KINDS[kind]), direction=np.int32(_DIRECTIONS[direction]),
                **_attributes(options))


def _pad_negatives(grads, rows_b):
    """grad_b with zero rows for extra negatives that get no gradient (grad_negatives=False)."""
    grad_b = grads[1]
    if grad_b.shape[0] < rows_b:
        grad_b = jnp.concatenate([grad_b, jnp.zeros((rows_b - grad_b.shape[0], grad_b.shape[1]), grad_b.dtype)])
    return (grads[0], grad_b) + tuple(grads[2:])


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _two_tower(kind, options, tensors):
    return _two_tower_call(kind, "forward", list(tensors), options)[0]


def _two_tower_forward(kind, options, tensors):
    if _fuses(options, tensors[0].dtype):  # one pass: the gradients now, scaled later
        loss, *grads = _two_tower_call(kind, "forward_backward", list(tensors), options)
        return loss, (tuple(grads), tensors[1])  # b: its row count shapes grad_b
    loss, *stats = _two_tower_call(kind, "forward", list(tensors), options)
    return loss, (tensors, tuple(stats))


def _two_tower_backward(kind, options, residuals, cotangent):
    if not isinstance(residuals[1], tuple):  # fused (_fuses): the loss's gradients and b
        grads, b = residuals
        grads = tuple((g * cotangent).astype(g.dtype) for g in grads)
    else:  # residuals: the inputs and CLIP's statistics for closs's backward
        tensors, stats = residuals
        b = tensors[1]
        grads = tuple(_two_tower_call(kind, "backward", list(tensors) + list(stats) + [cotangent], options))
    return (_pad_negatives(grads, b.shape[0]),)


_two_tower.defvjp(_two_tower_forward, _two_tower_backward)


def _two_tower_run(kind, image_features, text_features, negatives, scalars, options):
    """Checks and converts (one floating dtype for the towers; the scalars as 0-d arrays of the
    loss's dtype), appends the negatives to b, then the custom_vjp call."""
    towers = [jnp.asarray(t) for t in [image_features, text_features] + ([negatives] if negatives is not None else [])]
    for t in towers:
        if t.ndim != 2:
            raise ValueError("closs_jax: the towers and negatives must be 2-D (rows, dim), got shape %s" % (t.shape,))
        if not jnp.issubdtype(t.dtype, jnp.floating):
            raise TypeError("closs_jax: the towers must be floating, got %s" % t.dtype)
    dtype = jnp.result_type(*towers)
    if _runs_on_cpu(towers) and dtype != jnp.float64:
        dtype = jnp.float32  # the reference reads float32 and float64
    towers = [t.astype(dtype) for t in towers]
    a, b = towers[0], jnp.concatenate(towers[1:]) if len(towers) > 2 else towers[1]
    loss_type = jnp.float64 if dtype == jnp.float64 else jnp.float32
    scalars = [jnp.asarray(value, dtype=loss_type).reshape(()) for value in scalars]
    return _two_tower(kind, tuple(options.items()), (a, b, *scalars))


def clip_loss(image_features, text_features, logit_scale=1 / 0.07, negatives=None, symmetric=True,
              in_batch_negatives=True, normalize=True, grad_negatives=True, reduction="mean", check_inputs=False,
              path="auto"):
    """CLIP (symmetric InfoNCE) of a (N, D) against b: text_features (N, D) or (N + K, D), then
    negatives (K, D) if given. logit_scale: s > 0, an array (it gets a gradient) or a number.
    symmetric=False: a → b only (MNRL); in_batch_negatives=False: MoCo v1/v2. grad_negatives=False:
    the extra negatives are constants (a queue: no gradient work for them). As closs.clip_loss."""
    options = dict(symmetric=bool(symmetric), in_batch_negatives=bool(in_batch_negatives), normalize=bool(normalize),
                   grad_negatives=bool(grad_negatives), reduction=reduction, check_inputs=bool(check_inputs), path=path)
    return _two_tower_run("clip", image_features, text_features, negatives, [logit_scale], options)


def siglip_loss(image_features, text_features, logit_scale=10.0, logit_bias=-10.0, negatives=None, normalize=True,
                grad_negatives=True, reduction="mean", check_inputs=False, path="auto"):
    """SigLIP (sigmoid loss) of a (N, D) against b, every extra row a negative; logit_scale and
    logit_bias arrays (with gradients) or numbers; None bias means 0. As closs.siglip_loss."""
    options = dict(normalize=bool(normalize), grad_negatives=bool(grad_negatives), reduction=reduction,
                   check_inputs=bool(check_inputs), path=path)
    bias = 0.0 if logit_bias is None else logit_bias
    return _two_tower_run("siglip", image_features, text_features, negatives, [logit_scale, bias], options)
