"""ctypes bindings of the parts of libcloss the benchmarks call.

The structs mirror include/closs.h field for field (C layout rules are those of ctypes), and each
parameter struct starts from the contract's defaults, as the *_PARAMS_INIT macros do.
"""

import ctypes

F32, F16, BF16, F64, I32, I64 = range(6)
MEAN, SUM, NONE = range(3)
EUCLIDEAN, SQEUCLIDEAN, COSINE = range(3)
REDUCTIONS = {"mean": MEAN, "sum": SUM, "none": NONE}
DISTANCES = {"euclidean": EUCLIDEAN, "sqeuclidean": SQEUCLIDEAN, "cosine": COSINE}


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
                ("reduction", ctypes.c_int), ("check_inputs", ctypes.c_int), ("path", ctypes.c_int)]


class SupconParams(ctypes.Structure):
    _fields_ = [("size", ctypes.c_size_t), ("temperature", ctypes.c_double),
                ("base_temperature", ctypes.c_double), ("normalize", ctypes.c_int),
                ("reduction", ctypes.c_int), ("check_inputs", ctypes.c_int), ("path", ctypes.c_int)]


PATHS = {"auto": 0, "fused": 1, "chunked": 2}


def ntxent_params(temperature=0.1, normalize=True, reduction="mean", path="auto"):
    return NtxentParams(ctypes.sizeof(NtxentParams), temperature, int(normalize), REDUCTIONS[reduction], 0,
                        PATHS[path])


def supcon_params(temperature=0.07, base_temperature=0.0, normalize=True, reduction="mean", path="auto"):
    return SupconParams(ctypes.sizeof(SupconParams), temperature, base_temperature, int(normalize),
                        REDUCTIONS[reduction], 0, PATHS[path])


def pair_params(margin=1.0, distance="euclidean", reduction="mean"):
    return PairParams(ctypes.sizeof(PairParams), margin, DISTANCES[distance], REDUCTIONS[reduction], 0)


def triplet_params(margin=1.0, distance="sqeuclidean", swap=False, reduction="mean"):
    return TripletParams(ctypes.sizeof(TripletParams), margin, DISTANCES[distance], int(swap),
                         REDUCTIONS[reduction], 0)


def cosine_params(margin=0.0, squared=False, reduction="mean"):
    return CosineParams(ctypes.sizeof(CosineParams), margin, int(squared), REDUCTIONS[reduction], 0)


class Library:
    """libcloss loaded from `path`, with status checking: a failing call raises RuntimeError
    carrying closs_last_error()."""

    def __init__(self, path):
        self.lib = ctypes.CDLL(path)
        self.lib.closs_last_error.restype = ctypes.c_char_p
        self.lib.closs_status_string.restype = ctypes.c_char_p
        self.lib.closs_version_string.restype = ctypes.c_char_p

    def call(self, name, *args):
        status = getattr(self.lib, name)(*args)
        if status != 0:
            raise RuntimeError("%s: %s (%s)" % (name, self.lib.closs_status_string(status).decode(),
                                                self.lib.closs_last_error().decode()))

    def version(self):
        return self.lib.closs_version_string().decode()
