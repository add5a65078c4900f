"""Issue #27, item 6: the thread-local closs handles of the GPU path are destroyed when their thread
ends (nn.DataParallel starts new threads every forward; each used to leak a handle's device memory
and cuBLAS context). Runs without a GPU: closs_create/closs_destroy and the device switch are
mocked, and the test counts creations and destructions."""

import contextlib
import gc
import threading

import pytest
import torch

from closs import _capi, _dispatch


class _FakeLibrary:
    def __init__(self):
        self.created, self.destroyed, self.next = [], [], 0x1000
        library = self

        class Lib:
            @staticmethod
            def closs_destroy(handle):
                library.destroyed.append(handle.value)
                return 0
        self.lib = Lib()

    def call(self, name, pointer):
        assert name == "closs_create"
        self.next += 0x10
        pointer._obj.value = self.next
        self.created.append(self.next)


def test_a_threads_handles_are_destroyed_when_it_ends(monkeypatch):
    fake = _FakeLibrary()
    monkeypatch.setattr(_capi, "library", lambda: fake)
    monkeypatch.setattr(torch.cuda, "device", lambda index: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: False)
    seen = []

    def work():
        first = _dispatch._handle(torch.device("cuda", 0))
        assert _dispatch._handle(torch.device("cuda", 0)) is first  # one per thread and device
        seen.append(first.pointer.value)
        _dispatch._handle(torch.device("cuda", 1))

    for _ in range(3):
        thread = threading.Thread(target=work)
        thread.start()
        thread.join()
    gc.collect()
    assert len(fake.created) == 6 and len(set(seen)) == 3
    assert sorted(fake.destroyed) == sorted(fake.created), "handles leaked: %s" % (
        set(fake.created) - set(fake.destroyed))


def test_inside_a_cuda_graph_capture_the_errors_say_what_to_do(monkeypatch):
    """Issue #27, item 7: a thread's first call cannot create its handle inside a capture, and
    check_inputs=True synchronises the stream: both are refused with what to do, before any C
    call (the capture would otherwise be invalidated with a confusing CUDA error)."""
    fake = _FakeLibrary()
    monkeypatch.setattr(_capi, "library", lambda: fake)
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: True)
    errors = []

    def first_call():
        try:
            _dispatch._handle(torch.device("cuda", 0))
        except RuntimeError as error:
            errors.append(str(error))
    thread = threading.Thread(target=first_call)
    thread.start()
    thread.join()
    assert errors and "run one step before capturing" in errors[0] and not fake.created

    class Handle:
        device, pointer = 0, None
    params = _capi.ntxent_params(0.1, True, "mean", True, "auto")  # check_inputs=True
    with pytest.raises(ValueError, match="check_inputs=False inside a capture"):
        _dispatch.gpu_call("closs_ntxent_forward", Handle(), params, None, None, None)
