"""The C arguments of one closs call, built so that nothing they point into can be freed before the
call returns.

ctypes keeps only an address: `c_void_p(tensor.to(torch.float64).data_ptr())` lets the temporary
that `.to` made be freed, and its memory reused, while the C call still reads it (issue #27:
closs.distributed's float32 gradients on gloo were off by up to 0.66). So no binding takes an
address itself: every pointer goes through a CallArguments, which converts where asked and holds
each tensor it was given until the call has returned (build, call, drop). tests/test_arguments.py
checks that no other module of the package takes a tensor's address.
"""

import ctypes

import torch

from . import _capi

FLOAT_TYPES = {torch.float32: _capi.F32, torch.float16: _capi.F16, torch.bfloat16: _capi.BF16,
               torch.float64: _capi.F64}
LABEL_TYPES = {torch.int32: _capi.I32, torch.int64: _capi.I64}


def _address(tensor):
    return ctypes.c_void_p(tensor.data_ptr() if tensor is not None and tensor.numel() else None)


def contiguous_rows(tensor):
    """The tensor itself when each row is contiguous (any row stride ≥ dim is a leading
    dimension), else a contiguous copy."""
    rows, cols = tensor.shape
    if tensor.stride(1) == 1 and (rows <= 1 or tensor.stride(0) >= cols):
        return tensor
    return tensor.contiguous()


class CallArguments:
    """The arguments of one C call, in order, and every tensor they point into."""

    def __init__(self, *values):
        self.values = list(values)
        self._held = []

    def _hold(self, tensor):
        self._held.append(tensor)
        return tensor

    def add(self, *values):
        """Plain values: handles, ctypes.byref(params), sizes, None."""
        self.values.extend(values)
        return self

    def extend(self, other):
        """Another CallArguments' values, in order, and what they point into."""
        self.values.extend(other.values)
        self._held.extend(other._held)
        return self

    def input(self, tensor, dtype=None):
        """A pointer to what the call reads: the tensor, converted to dtype and made contiguous
        here where it is not already (None: a null pointer)."""
        if tensor is not None:
            tensor = self._hold((tensor if dtype is None else tensor.to(dtype)).contiguous())
        self.values.append(_address(tensor))
        return self

    def output(self, tensor):
        """A pointer to a dense buffer the call writes (never a copy: the caller reads it after)."""
        if tensor is not None and tensor.numel() and not tensor.is_contiguous():
            raise ValueError("closs writes dense outputs; got strides %s" % (tensor.stride(),))
        self.values.append(_address(None if tensor is None else self._hold(tensor)))
        return self

    def matrix(self, tensor):
        """A closs_matrix_t over a 2-D floating tensor (copied where its rows are not contiguous)."""
        tensor = self._hold(contiguous_rows(tensor))
        rows, cols = tensor.shape
        ld = tensor.stride(0) if rows > 1 else cols  # a single row's stride is meaningless
        self.values.append(_capi.Matrix(_address(tensor), FLOAT_TYPES[tensor.dtype], rows, cols, ld))
        return self

    def vector(self, tensor, types):
        """A closs_vector_t over a 1-D tensor whose dtype is a key of `types`."""
        tensor = self._hold(tensor.contiguous())
        self.values.append(_capi.Vector(_address(tensor), types[tensor.dtype], tensor.numel()))
        return self

    def gradient(self, tensor):
        """A closs_grad_t over a dense 2-D buffer the call writes."""
        if tensor.numel() and not tensor.is_contiguous():
            raise ValueError("closs writes dense gradients; got strides %s" % (tensor.stride(),))
        self.values.append(_capi.Grad(_address(self._hold(tensor)), tensor.stride(0)))
        return self

    def call(self, name):
        """Runs closs's `name` on these arguments (raising closs's error); the tensors stay held
        until it has returned."""
        _capi.library().call(name, *self.values)
