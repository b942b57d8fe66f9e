"""Fixtures shared by the test modules."""
from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("KERAS_BACKEND", "torch")  # TensorFlow is not installed; keras runs on torch here
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def one_torch_thread():
    """Tiny models: one thread is fastest, and avoids oversubscribing a shared 2-core CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def float64():
    """Engines compared in float64, so that equivalence is not at the mercy of float32 reduction order."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.fixture
def trained(monkeypatch):
    """Every config the engines start training in this process, in order (both engines' ``run_members`` wrapped)."""
    from budgetsched.bench.engines import batched, train

    log: list = []
    real = train.run_members

    def counting(configs, *a, **k):
        log.extend(configs)
        return real(configs, *a, **k)
    monkeypatch.setattr(train, "run_members", counting)
    monkeypatch.setattr(batched, "run_members", counting)
    return log


@pytest.fixture
def sigint_default():
    """Ctrl-C delivered as in a foreground terminal: the default KeyboardInterrupt handler, whatever this test
    process inherited (a background job, or nohup, starts with SIGINT ignored)."""
    import signal

    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


class InterruptingStore:
    """A store whose (after+1)-th put raises KeyboardInterrupt, as Ctrl-C would between two writes."""

    def __init__(self, store, after: int) -> None:
        self.store, self.after, self.puts = store, after, 0

    def __getattr__(self, name):  # everything else is the real store's
        return getattr(self.store, name)

    def put(self, config, result, meta=None, **kw):
        if self.puts == self.after:
            raise KeyboardInterrupt
        self.store.put(config, result, meta, **kw)
        self.puts += 1


@pytest.fixture
def interrupting_store():
    """The InterruptingStore class (wrap a Store: ``interrupting_store(store, after=3)``)."""
    return InterruptingStore
