"""What a chunk needs to train wherever it runs: the execution context (sent with every chunk) and the data cache
(kept by each process).

A chunk travels to an inline call, a worker process or a Ray task as ``(kind, configs, ExecutionContext)``: the
context is a small frozen, picklable value, so every executor hands the engines the same options. A process loads a
task's data once and keeps it in its :class:`DataCache` (:func:`process_state`), so the chunks that follow on that
process reuse it.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

__all__ = ["ExecutionContext", "DataCache", "ProcessState", "process_state"]


@dataclass(frozen=True)
class ExecutionContext:
    """The options every chunk of a study trains with (the same for all of them).

    Attributes:
        device: ``"cpu"`` or ``"cuda"`` / ``"cuda:N"`` (checked by :func:`budgetsched.bench.execution.options.check_device`
            on the driver).
        data_dir, cache_dir: passed to each task's loader (absolute paths on the driver; the same on every node).
        chunk_size: models one batched-engine call trains at once.
        checkpoint_dir: where anytime trunks keep their snapshots (None: in memory only).
        threads: torch threads of the process that trains the chunk.
        task_locations: ``(reference, where)`` pairs: a process imports the code of a task reference from
            ``where`` (the copy shipped to a Ray cluster; :func:`budgetsched.bench.tasks.registry.locate_task`).
    """

    device: str = "cpu"
    data_dir: str | None = None
    cache_dir: str | None = None
    chunk_size: int = 64
    checkpoint_dir: str | None = None
    threads: int = 1
    task_locations: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, device: str = "cpu", data_dir: str | os.PathLike[str] | None = None,
           cache_dir: str | os.PathLike[str] | None = None, chunk_size: int = 64,
           checkpoint_dir: str | os.PathLike[str] | None = None, threads: int = 1) -> "ExecutionContext":
        """A context from paths of any kind, made absolute against this process's working directory (a worker
        elsewhere, e.g. a Ray worker in its shipped working directory, reads the same paths) and kept as strings."""
        def s(p: Any) -> str | None:
            return None if p is None else os.path.abspath(os.path.expanduser(str(p)))
        return cls(device, s(data_dir), s(cache_dir), chunk_size, s(checkpoint_dir), threads)

    def replace(self, **changes: Any) -> "ExecutionContext":
        return dataclasses.replace(self, **changes)


class DataCache:
    """A task's data, loaded once per process and key ``(task, data_dir, cache_dir)``.

    A trainable (a user's own training function) loads its own data: its entry is ``None``.
    """

    def __init__(self) -> None:
        self._data: dict[tuple[str, str | None, str | None], Any] = {}

    def load(self, task_name: str, data_dir: str | None, cache_dir: str | None) -> tuple[Any, Any]:
        """``(task, data)``, loading the data on first use (a missing file raises here)."""
        from budgetsched.bench.tasks import get_task
        from budgetsched.bench.tasks.custom import Trainable

        task = get_task(task_name)
        if isinstance(task, Trainable):  # the user's own training function loads its own data
            return task, None
        k = (task_name, data_dir, cache_dir)
        if k not in self._data:
            self._data[k] = task.load(None if data_dir is None else Path(data_dir),
                                      None if cache_dir is None else Path(cache_dir))
        return task, self._data[k]

    def loaded(self, task_name: str) -> tuple[Any, Any] | None:
        """The task and the data already loaded for it (any data or cache directory), or None."""
        from budgetsched.bench.tasks import get_task

        for (name, _, _), data in self._data.items():
            if name == task_name:
                return get_task(name), data
        return None

    def clear(self) -> None:
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


@dataclass
class ProcessState:
    """What one process keeps between chunks: its data cache, and (in a worker process) where it reports progress
    (model-steps trained, as each epoch ends)."""

    cache: DataCache = dataclasses.field(default_factory=DataCache)
    progress: Callable[[int], None] | None = None


_STATE = ProcessState()  # one per process: the driver's, or a worker process's (set up by its initializer)


def process_state() -> ProcessState:
    """This process's :class:`ProcessState`."""
    return _STATE
