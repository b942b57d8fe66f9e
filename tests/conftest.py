"""Fixtures shared by the test modules."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture
def one_torch_thread():
    """Tiny models: one thread is fastest, and avoids oversubscribing a shared 2-core CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class InterruptingStore:
    """A store whose (after+1)-th put raises KeyboardInterrupt, as Ctrl-C would between two writes."""

    def __init__(self, store, after: int) -> None:
        self.store, self.after, self.puts = store, after, 0

    def finished_keys(self):
        return self.store.finished_keys()

    def put(self, config, result, meta=None):
        if self.puts == self.after:
            raise KeyboardInterrupt
        self.store.put(config, result, meta)
        self.puts += 1


@pytest.fixture
def interrupting_store():
    """The InterruptingStore class (wrap a Store: ``interrupting_store(store, after=3)``)."""
    return InterruptingStore
