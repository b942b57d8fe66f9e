"""The study's progress bar: weighted by work (model-steps), with ETA and the current group."""
from __future__ import annotations

import threading

from budgetsched.bench.protocol.grid import TrialConfig

__all__ = ["Progress"]


class Progress:
    """A rich progress bar weighted by work (model-steps), with ETA and the current group; a no-op when off."""

    def __init__(self, enabled: bool, total: int, done: int) -> None:
        self._bar = None
        self._lock = threading.Lock()
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import BarColumn
        from rich.progress import Progress as RichProgress
        from rich.progress import TaskProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self._bar = RichProgress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                                 TextColumn("of the work, {task.fields[trials]} trials"), TimeElapsedColumn(),
                                 TextColumn("ETA"), TimeRemainingColumn(), console=Console(stderr=True),
                                 transient=False)
        self._trials = done
        self._total_trials = total
        self._id = self._bar.add_task("starting", total=1, completed=0, trials=f"{done}/{total}")
        self._bar.start()

    def set_work(self, total: float) -> None:
        if self._bar is not None:
            self._bar.update(self._id, total=max(total, 1.0))

    def group(self, config: TrialConfig) -> None:
        if self._bar is not None:
            self._bar.update(self._id, description=f"{config.task} {config.optimizer} budget {config.budget:g}%")

    def note(self, text: str) -> None:
        if self._bar is not None:
            self._bar.update(self._id, description=text)

    def work(self, n: float) -> None:
        if self._bar is not None:
            with self._lock:
                self._bar.advance(self._id, n)

    def trial(self, n: int = 1) -> None:
        if self._bar is not None:
            self._trials += n
            self._bar.update(self._id, trials=f"{self._trials}/{self._total_trials}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
