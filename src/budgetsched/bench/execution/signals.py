"""Interrupts during a study: SIGTERM is handled like Ctrl-C, and neither lands inside a store write."""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Iterator

__all__ = ["Signals"]


class Signals:
    """Turn SIGTERM into the same interrupt as Ctrl-C, and hold both while a store write is in progress, so an
    interrupt never lands inside a transaction and a written row is always counted."""

    def __init__(self) -> None:
        self.caught: int | None = None
        self._holding = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "Signals":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.getsignal(sig)
                if self._previous[sig] is signal.SIG_IGN:
                    continue  # e.g. SIGINT in a background job: the user chose to ignore it
                signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, prev in self._previous.items():
            signal.signal(sig, prev)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.caught is None:
            self.caught = signum
        if not self._holding:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        self._holding = True
        try:
            yield
        finally:
            self._holding = False
        if self.caught is not None:
            raise KeyboardInterrupt
