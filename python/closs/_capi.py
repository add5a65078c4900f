"""The C API of libcloss through ctypes: finding and loading the library, the structs of
include/closs.h field for field, the parameter structs with the contract's defaults (as the
*_PARAMS_INIT macros), and statuses turned into Python exceptions carrying closs_last_error().

Nothing here knows about torch; the benchmarks use it directly on raw pointers.
"""

import ctypes
import ctypes.util
import os
import pathlib
import re

F32, F16, BF16, F64, I32, I64 = range(6)
REDUCTIONS = {"mean": 0, "sum": 1, "none": 2}
DISTANCES = {"euclidean": 0, "sqeuclidean": 1, "cosine": 2}
PATHS = {"auto": 0, "fused": 1, "chunked": 2}

# closs_status_t, in the header's order.
SUCCESS, INVALID_ARGUMENT, NOT_SUPPORTED, NO_DEVICE, WORKSPACE_TOO_SMALL, ALLOC_FAILED, \
    CUDA_ERROR, CUBLAS_ERROR, NONFINITE_INPUT = range(9)


class ClossError(RuntimeError):
    """A closs call failed. `status` is the closs_status_t, `function` the C entry point, and the
    message is closs_last_error(): which argument, which value, why."""

    def __init__(self, function, status, status_text, detail):
        super().__init__("%s: %s" % (function, detail or status_text))
        self.function, self.status, self.status_text, self.detail = function, status, status_text, detail


class ClossArgumentError(ClossError, ValueError):
    """An argument is out of range (CLOSS_STATUS_INVALID_ARGUMENT)."""


class ClossNonfiniteInputError(ClossError, ValueError):
    """check_inputs found NaN or Inf in an input (CLOSS_STATUS_NONFINITE_INPUT)."""


class ClossNotSupportedError(ClossError, NotImplementedError):
    """Valid, but not available in this build or on this device (NOT_SUPPORTED, NO_DEVICE)."""


_EXCEPTIONS = {INVALID_ARGUMENT: ClossArgumentError, NONFINITE_INPUT: ClossNonfiniteInputError,
               NOT_SUPPORTED: ClossNotSupportedError, NO_DEVICE: ClossNotSupportedError}


class Matrix(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("dtype", ctypes.c_int), ("rows", ctypes.c_int64),
                ("cols", ctypes.c_int64), ("ld", ctypes.c_int64)]


class Vector(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("dtype", ctypes.c_int), ("length", ctypes.c_int64)]


class Grad(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("ld", ctypes.c_int64)]


class PairParams(ctypes.Structure):
    _fields_ = [("size", ctypes.c_size_t), ("margin", ctypes.c_double), ("distance", ctypes.c_int),
                ("reduction", ctypes.c_int), ("check_inputs", ctypes.c_int)]


class TripletParams(ctypes.Structure):
    _fields_ = [("size", ctypes.c_size_t), ("margin", ctypes.c_double), ("distance", ctypes.c_int),
                ("swap", ctypes.c_int), ("reduction", ctypes.c_int), ("check_inputs", ctypes.c_int)]


class CosineParams(ctypes.Structure):
    _fields_ = [("size", ctypes.c_size_t), ("margin", ctypes.c_double), ("squared", ctypes.c_int),
                ("reduction", ctypes.c_int), ("check_inputs", ctypes.c_int)]


class NtxentParams(ctypes.Structure):
    _fields_ = [("size", ctypes.c_size_t), ("temperature", ctypes.c_double), ("normalize", ctypes.c_int),
                ("reduction", ctypes.c_int), ("check_inputs", ctypes.c_int), ("path", ctypes.c_int),
                ("row_begin", ctypes.c_int64), ("row_count", ctypes.c_int64)]


class SupconParams(ctypes.Structure):
    _fields_ = [("size", ctypes.c_size_t), ("temperature", ctypes.c_double),
                ("base_temperature", ctypes.c_double), ("normalize", ctypes.c_int),
                ("reduction", ctypes.c_int), ("check_inputs", ctypes.c_int), ("path", ctypes.c_int),
                ("row_begin", ctypes.c_int64), ("row_count", ctypes.c_int64)]


_TWO_TOWER_RANGE = [("row_begin", ctypes.c_int64), ("row_count", ctypes.c_int64),
                    ("negatives_begin", ctypes.c_int64), ("negatives_count", ctypes.c_int64)]


class ClipParams(ctypes.Structure):
    _fields_ = [("size", ctypes.c_size_t), ("logit_scale", ctypes.c_double), ("symmetric", ctypes.c_int),
                ("in_batch_negatives", ctypes.c_int), ("normalize", ctypes.c_int),
                ("grad_negatives", ctypes.c_int), ("reduction", ctypes.c_int), ("check_inputs", ctypes.c_int),
                ("path", ctypes.c_int)] + _TWO_TOWER_RANGE


class SiglipParams(ctypes.Structure):
    _fields_ = [("size", ctypes.c_size_t), ("logit_scale", ctypes.c_double), ("logit_bias", ctypes.c_double),
                ("normalize", ctypes.c_int), ("grad_negatives", ctypes.c_int), ("reduction", ctypes.c_int),
                ("check_inputs", ctypes.c_int), ("path", ctypes.c_int)] + _TWO_TOWER_RANGE


def _choice(kind, table, value):
    try:
        return table[value]
    except (KeyError, TypeError):
        raise ValueError("%s = %r: must be one of %s" % (kind, value, ", ".join(map(repr, table)))) from None


def pair_params(margin=1.0, distance="euclidean", reduction="mean", check_inputs=False):
    return PairParams(ctypes.sizeof(PairParams), margin, _choice("distance", DISTANCES, distance),
                      _choice("reduction", REDUCTIONS, reduction), int(check_inputs))


def triplet_params(margin=1.0, distance="sqeuclidean", swap=False, reduction="mean", check_inputs=False):
    return TripletParams(ctypes.sizeof(TripletParams), margin, _choice("distance", DISTANCES, distance),
                         int(swap), _choice("reduction", REDUCTIONS, reduction), int(check_inputs))


def cosine_params(margin=0.0, squared=False, reduction="mean", check_inputs=False):
    return CosineParams(ctypes.sizeof(CosineParams), margin, int(squared),
                        _choice("reduction", REDUCTIONS, reduction), int(check_inputs))


def ntxent_params(temperature=0.1, normalize=True, reduction="mean", check_inputs=False, path="auto"):
    return NtxentParams(ctypes.sizeof(NtxentParams), temperature, int(normalize),
                        _choice("reduction", REDUCTIONS, reduction), int(check_inputs),
                        _choice("path", PATHS, path))


def supcon_params(temperature=0.07, base_temperature=None, normalize=True, reduction="mean",
                  check_inputs=False, path="auto"):
    """base_temperature None (or 0) means "equal to temperature", as in the contract."""
    return SupconParams(ctypes.sizeof(SupconParams), temperature,
                        0.0 if base_temperature is None else base_temperature, int(normalize),
                        _choice("reduction", REDUCTIONS, reduction), int(check_inputs),
                        _choice("path", PATHS, path))


def clip_params(logit_scale=1 / 0.07, symmetric=True, in_batch_negatives=True, normalize=True,
                grad_negatives=True, reduction="mean", check_inputs=False, path="auto"):
    """The whole batch (row range 0, 0, 0, 0); distributed.py sets a rank's range."""
    return ClipParams(ctypes.sizeof(ClipParams), logit_scale, int(symmetric), int(in_batch_negatives),
                      int(normalize), int(grad_negatives), _choice("reduction", REDUCTIONS, reduction),
                      int(check_inputs), _choice("path", PATHS, path))


def siglip_params(logit_scale=10.0, logit_bias=-10.0, normalize=True, grad_negatives=True, reduction="mean",
                  check_inputs=False, path="auto"):
    return SiglipParams(ctypes.sizeof(SiglipParams), logit_scale, logit_bias, int(normalize), int(grad_negatives),
                        _choice("reduction", REDUCTIONS, reduction), int(check_inputs), _choice("path", PATHS, path))


def package_version():
    """This package's version: _version.py, which the wheel's build writes from CMakeLists.txt's
    `project(closs VERSION ...)`; in a source tree (python/ on sys.path) that line itself."""
    try:
        from ._version import __version__
        return __version__
    except ImportError:
        cmake = pathlib.Path(__file__).resolve().parents[2] / "CMakeLists.txt"
        match = re.search(r"project\(closs VERSION ([0-9.]+)", cmake.read_text() if cmake.is_file() else "")
        return match.group(1) if match else "unknown (no _version.py, no %s)" % cmake


def library_candidates():
    """Where libcloss is looked for when $CLOSS_LIBRARY is not set, in order, with how each was
    found: the copy inside this package (pip install); the source tree's build/ (python/closs is
    two levels below the repository root); the system's library path (after `cmake --install`)."""
    here = pathlib.Path(__file__).resolve().parent
    candidates = [(str(here / "libcloss.so"), "beside the package"),
                  (str(here.parent.parent / "build" / "host" / "libcloss.so"), "the source tree's build/")]
    system = ctypes.util.find_library("closs")
    if system:
        candidates.append((system, "the system's library path"))
    return candidates


class ClossVersionError(RuntimeError):
    """The libcloss that was found is not this package's version (or not libcloss at all): its
    structs and entry points may differ, so it is not called."""


class Library:
    """libcloss, loaded once. `call(name, *args)` runs an entry point and raises the ClossError
    subclass that matches its status, with closs_last_error() as the message."""

    def __init__(self, path=None, found="as asked"):
        if path is None and os.environ.get("CLOSS_LIBRARY"):
            path, found = os.environ["CLOSS_LIBRARY"], "$CLOSS_LIBRARY"  # no fallback to another copy
        if path is None:
            tried = library_candidates()
            path, found = next(((p, how) for p, how in tried if os.path.sep not in p or os.path.exists(p)),
                               (None, None))
            if path is None:
                raise OSError("libcloss not found (tried %s); install closs (pip install .) or build it (cmake -S . "
                              "-B build && cmake --build build), or set CLOSS_LIBRARY to its path"
                              % ", ".join(p for p, _ in tried))
        self.path = path
        self.lib = ctypes.CDLL(path)
        self.version_string = self._checked_version(found)
        self.lib.closs_last_error.restype = ctypes.c_char_p
        self.lib.closs_status_string.restype = ctypes.c_char_p

    def _checked_version(self, found):
        """The library's closs_version_string(), which must be this package's version."""
        where = "%s (%s)" % (self.path, found)
        try:
            version_string = self.lib.closs_version_string
        except AttributeError:
            raise ClossVersionError("%s is not libcloss: it has no closs_version_string" % where) from None
        version_string.restype = ctypes.c_char_p
        version = version_string().decode(errors="replace")
        if version != package_version():
            raise ClossVersionError(
                "the closs package %s (%s) found libcloss %s at %s: the two must be the same version; reinstall "
                "closs (pip install .), rebuild the source tree's build/, or point CLOSS_LIBRARY at libcloss %s"
                % (package_version(), pathlib.Path(__file__).resolve().parent, version, where, package_version()))
        return version

    def call(self, name, *args):
        status = getattr(self.lib, name)(*args)
        if status != SUCCESS:
            detail = self.lib.closs_last_error().decode(errors="replace")
            text = self.lib.closs_status_string(status).decode(errors="replace")
            raise _EXCEPTIONS.get(status, ClossError)(name, status, text, detail)

    def version(self):
        return self.version_string

    def cuda_available(self):
        return bool(self.lib.closs_cuda_available())


_library = None


def library():
    """The process's libcloss, loaded on first use."""
    global _library
    if _library is None:
        _library = Library()
    return _library
