"""Issue #27, item 6: the thread-local closs handles of the GPU path are destroyed when their thread
ends (nn.DataParallel starts new threads every forward; each used to leak a handle's device memory
and cuBLAS context). Runs without a GPU: closs_create/closs_destroy and the device switch are
mocked, and the test counts creations and destructions."""

import contextlib
import gc
import threading

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
