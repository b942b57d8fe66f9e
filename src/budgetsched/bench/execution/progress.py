"""A study's progress on stderr, fed by the runner's own events: a group starts, model-steps are trained (as each
epoch ends), a trial is written (or found finished by another run on the store).

One concept, two looks (``run_study(progress=...)``):

* ``"bar"`` (``True``): a rich progress bar weighted by work (model-steps), with ETA and the current group;
* ``"lines"``: plain lines for a log file, CI, a pipe or a background job - ``N trials to run`` first, then
  ``d of N trials (p %), elapsed, about r left`` each time ``d`` passes another tenth of ``N`` (at most one line
  per :data:`PLAIN_GAP_S` seconds, the last always) and at least every :data:`PLAIN_EVERY_S` seconds while the
  run moves on, where r = elapsed x (N - d) / d;
* ``"auto"``: the bar when stderr is a terminal, lines otherwise; ``"off"`` (``False``): nothing.

Nothing here reads the store: the runner reports each trial the moment it writes or adopts it.
"""
from __future__ import annotations

import sys
import threading
import time
from typing import Any, Callable, TextIO

from budgetsched.bench.protocol.grid import TrialConfig

__all__ = ["Progress", "MODES", "PLAIN_STEPS", "PLAIN_EVERY_S", "PLAIN_GAP_S", "duration"]

#: What ``progress=`` may name (``True`` is ``"bar"``, ``False`` / ``None`` is ``"off"``).
MODES = ("auto", "bar", "lines", "off")
#: Plain lines: one each time another tenth of the trials to run is written ...
PLAIN_STEPS = 10
#: ... and at least one this often (seconds) while the run moves on (a long chunk's epochs count), so a log shows
#: a study is alive without a line per trial.
PLAIN_EVERY_S = 300.0
#: ... but no two lines closer than this (seconds), the last excepted: a burst of trials (a batched chunk written at
#: once) is one line with its latest count, as when the command read the store every 2 s.
PLAIN_GAP_S = 2.0
#: The prefix of every line the command says (``budgetsched.cli._common.PROG``; the CLI sits above this layer).
_PROG = "budgetsched"


def duration(seconds: float) -> str:
    """``42 s``, ``7 min``, ``2.5 h``: a duration as a person reads it in a log."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _mode(progress: bool | str | None, stream: TextIO | None) -> str:
    """``progress=`` as one of ``bar`` / ``lines`` / ``off`` (``auto`` asks whether the stream is a terminal)."""
    if progress is True:
        return "bar"
    if progress is False or progress is None:
        return "off"
    if progress not in MODES:
        raise ValueError(f"progress must be True, False or one of {', '.join(map(repr, MODES))}, got {progress!r}")
    if progress == "auto":
        out = sys.stderr if stream is None else stream
        try:
            return "bar" if out.isatty() else "lines"
        except (AttributeError, ValueError):  # no isatty, or a closed stream: not a terminal
            return "lines"
    return str(progress)


class Progress:
    """The study's progress, in the look ``progress`` names (module docstring); every method is a no-op when off.

    Args:
        progress: ``True`` / ``"bar"``, ``"lines"``, ``"auto"``, or ``False`` / ``"off"``.
        total: trials of the study (its grid after duplicate budgets are dropped).
        done: of those, already finished in the store before this run.
        stream: where the lines (or the bar) go; default ``sys.stderr`` at the time of each line.
        clock: seconds, monotonic (a test's fake clock).
    """

    def __init__(self, progress: bool | str | None, total: int, done: int, *, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.mode = _mode(progress, stream)
        self._bar: Any = None
        self._lines: _Lines | None = None
        self._lock = threading.Lock()  # work arrives from a reader thread (worker processes), trials from the writer
        if self.mode == "lines":
            self._lines = _Lines(total - done, done, stream, clock)
        elif self.mode == "bar":
            from rich.console import Console
            from rich.progress import BarColumn
            from rich.progress import Progress as RichProgress
            from rich.progress import TaskProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            console = Console(stderr=True) if stream is None else Console(file=stream)
            self._bar = RichProgress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                                     TextColumn("of the work, {task.fields[trials]} trials"), TimeElapsedColumn(),
                                     TextColumn("ETA"), TimeRemainingColumn(), console=console, transient=False)
            self._trials = done
            self._total_trials = total
            self._id = self._bar.add_task("starting", total=1, completed=0, trials=f"{done}/{total}")
            self._bar.start()

    @property
    def live(self) -> bool:
        """Whether a bar is on screen (it shows the runner's notes; otherwise the runner warns once instead)."""
        return self._bar is not None

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
        """``n`` model-steps trained (an epoch ended somewhere)."""
        with self._lock:
            if self._bar is not None:
                self._bar.advance(self._id, n)
            elif self._lines is not None:
                self._lines.tick()

    def trial(self, n: int = 1) -> None:
        """``n`` trials finished: written by this run, or found finished by another run on the same store."""
        with self._lock:
            if self._bar is not None:
                self._trials += n
                self._bar.update(self._id, trials=f"{self._trials}/{self._total_trials}")
            elif self._lines is not None:
                self._lines.trial(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        self._lines = None


class _Lines:
    """Plain progress lines: a header when the run starts, then a line each time the trials written pass another
    tenth of those to run (no sooner than :data:`PLAIN_GAP_S` after the last line, unless all are written), or when
    :data:`PLAIN_EVERY_S` passed since the last line and some are written."""

    def __init__(self, total: int, before: int, stream: TextIO | None, clock: Callable[[], float]) -> None:
        self.total, self.before, self.stream, self.clock = total, before, stream, clock
        self.done = 0
        self.step = 0
        self.t0 = self.last_t = clock()
        if total > 0:  # a resumed study with nothing left says nothing
            self._say(f"{total} trials to run" + (f" ({before} already in the store)" if before else ""))

    def trial(self, n: int) -> None:
        self.done += n
        self.show(self.done, self.clock())

    def tick(self) -> None:
        """Work without a finished trial: only the periodic line can be due."""
        if self.done:
            self.show(self.done, self.clock())

    def show(self, done: int, now: float) -> None:
        """A line when ``done`` passed the next tenth (:data:`PLAIN_GAP_S` after the last line, or all done), or when
        :data:`PLAIN_EVERY_S` passed and some are done."""
        step = min(PLAIN_STEPS, done * PLAIN_STEPS // max(self.total, 1))
        since = now - self.last_t
        tenth = step > self.step and (since >= PLAIN_GAP_S or step == PLAIN_STEPS)
        if tenth or (since >= PLAIN_EVERY_S and done > 0 and step < PLAIN_STEPS):
            self.step, self.last_t = max(step, self.step), now
            elapsed = now - self.t0
            left = f", about {duration(elapsed * (self.total - done) / done)} left" if 0 < done < self.total else ""
            self._say(f"{done} of {self.total} trials ({100 * done // max(self.total, 1)} %), "
                      f"{duration(elapsed)}{left}")

    def _say(self, text: str) -> None:
        out = sys.stderr if self.stream is None else self.stream
        out.write(f"{_PROG}: {text}\n")
        out.flush()
