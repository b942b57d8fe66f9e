"""One schedule per parameter group, one budget history: what a framework adapter drives.

A :class:`GroupSchedule` is a list of :class:`budgetsched.Schedule`, one per parameter group, that differ only in
peak, floor and warmup start (:meth:`Schedule.with_peak`). Their budget changes are applied to every group at once,
so the history lives in one place (the schedules themselves; :attr:`GroupSchedule.budget_changes` reads it), and the
per-step LRs of all groups come from one evaluation of the shared weights:
``lr_i(t) = a_i * w0(t) + b_i * w1(t)`` (:meth:`Schedule.weights`, :attr:`Schedule.coefficients`).

>>> from budgetsched import Schedule
>>> g = GroupSchedule.build(Schedule("linear", 10, 0.1), peaks=[0.1, 0.02], floors=[0.0, 0.0])
>>> [round(x, 6) for x in g.lrs(5)]
[0.05, 0.01]
>>> g2 = g.with_budget(20, at_step=5, strategy="continue")
>>> [round(x, 6) for x in g2.lrs(5)], g2.budget_changes
([0.05, 0.01], [(5, 20)])
"""
from __future__ import annotations

from typing import Any, Sequence

from .changes import Extend, Rewarm
from .schedule import Schedule

__all__ = ["GroupSchedule"]


class GroupSchedule:
    """Schedules of several parameter groups sharing one profile, sampling rate, warmup and budget history.

    Build with :meth:`build`; every method returns a new object (schedules are immutable).
    """

    def __init__(self, origin: Schedule, schedules: Sequence[Schedule]) -> None:
        if not schedules:
            raise ValueError("a GroupSchedule needs at least one parameter group's schedule")
        self.origin = origin  # the first group's schedule as built, before any budget change
        self.schedules: tuple[Schedule, ...] = tuple(schedules)
        self.lead = self.schedules[0]
        self._coefs = list(zip(*[s.coefficients for s in self.schedules]))

    @classmethod
    def build(cls, base: Schedule, peaks: Sequence[float], floors: Sequence[float],
              starts: Sequence[float | None] | None = None) -> "GroupSchedule":
        """One schedule per group from ``base`` (a schedule with no budget change), with these peaks, floors and
        warmup start LRs (None: peak / W). Group 0 is ``base`` itself (built with ``peaks[0]``, ``floors[0]``,
        ``starts[0]``)."""
        if base.budget_changes:
            raise ValueError("GroupSchedule.build takes a schedule without budget changes")
        starts = [None] * len(peaks) if starts is None else list(starts)
        scheds = [base if i == 0 else base._derive(p, f, s) for i, (p, f, s) in enumerate(zip(peaks, floors, starts))]
        return cls(base, scheds)

    # -- values ------------------------------------------------------------------------------------------------------
    @property
    def total_steps(self) -> int:
        return self.lead.total_steps

    @property
    def has_momentum(self) -> bool:
        return self.lead.has_momentum

    def lrs(self, t: int) -> list[float]:
        """The LR of every group at integer step t >= 0 (unchecked; the adapters' per-step path)."""
        k, w0, w1 = self.lead.weights(t)
        return [a * w0 + b * w1 for a, b in self._coefs[k]]

    def momentum(self, t: int) -> float | None:
        """OneCycle's momentum / beta1 at step t (the same for every group); None for other profiles."""
        return self.lead.momentum(t) if self.lead.has_momentum else None

    # -- budget changes ----------------------------------------------------------------------------------------------
    def with_budget(self, new_total_steps: int, at_step: int, *, strategy: str | None = None,
                    rewarm_steps: int | None = None, rewarm_peaks: Sequence[float] | None = None,
                    warn: bool = True) -> "GroupSchedule":
        """Every group's :meth:`Schedule.with_budget` (``rewarm_peaks``: one per group, or None for each group's
        own peak); the finished-run warning is logged once, not once per group."""
        if rewarm_peaks is not None and len(rewarm_peaks) != len(self.schedules):
            raise ValueError(f"rewarm_peak has {len(rewarm_peaks)} entries for {len(self.schedules)} parameter groups")
        new = [s.with_budget(new_total_steps, at_step, strategy=strategy, rewarm_steps=rewarm_steps,
                             rewarm_peak=None if rewarm_peaks is None else rewarm_peaks[i], warn=warn and i == 0)
               for i, s in enumerate(self.schedules)]
        return GroupSchedule(self.origin, new)

    def with_group(self, peak: float, floor: float, start: float | None) -> "GroupSchedule":
        """One more group (e.g. added to the optimizer mid-run), with the budget history so far; a re-warm goes up
        to the new group's own peak."""
        s = self.origin._derive(peak, floor, start)
        for c in self.lead.budget_changes:
            if isinstance(c, Rewarm):
                s = s.with_budget(c.total_steps, c.at_step, strategy="rewarm", rewarm_steps=c.rewarm_steps, warn=False)
            else:
                s = s.with_budget(c.total_steps, c.at_step, strategy="extend" if isinstance(c, Extend) else "continue",
                                  warn=False)
        return GroupSchedule(self.origin, [*self.schedules, s])

    @property
    def budget_changes(self) -> list[tuple[Any, ...]]:
        """Every change, oldest first: ``(at_step, total)`` (continue), ``(at_step, total, rewarm_steps,
        rewarm_peaks)`` (rewarm; ``rewarm_peaks`` one per group, or None for each group's own peak) or
        ``(at_step, total, "extend")``."""
        out: list[tuple[Any, ...]] = []
        for n, c in enumerate(self.lead.budget_changes):
            if isinstance(c, Rewarm):
                given = [s.budget_changes[n] for s in self.schedules]
                peaks = None
                if any(g.rewarm_peak is not None for g in given):
                    peaks = [g.rewarm_peak if g.rewarm_peak is not None else s.peak_lr
                             for g, s in zip(given, self.schedules)]
                out.append((c.at_step, c.total_steps, c.rewarm_steps, peaks))
            elif isinstance(c, Extend):
                out.append((c.at_step, c.total_steps, "extend"))
            else:
                out.append((c.at_step, c.total_steps))
        return out

    def with_history(self, changes: Sequence[Sequence[Any]]) -> "GroupSchedule":
        """Replay :attr:`budget_changes` (plain data from a checkpoint, 2 to 5 entries each: ``[at, total,
        rewarm_steps, rewarm_peaks, strategy]`` with None for what does not apply), each with the strategy it
        records: without ``rewarm_steps`` or a strategy, "continue" (never the default ``"auto"``)."""
        new = self
        for i, c in enumerate(changes):
            c = list(c)
            if not 2 <= len(c) <= 5:
                raise ValueError(f"budget_changes[{i}] must be [at_step, total[, rewarm_steps[, rewarm_peaks[, "
                                 f"strategy]]]], got {c!r}")
            at, total = int(c[0]), int(c[1])
            if len(c) >= 3 and isinstance(c[2], str):
                new = new.with_budget(total, at, strategy=c[2], warn=False)
                continue
            steps = c[2] if len(c) > 2 else None
            peaks = c[3] if len(c) > 3 else None
            # the strategy the change ran with, never today's default: no rewarm_steps is "continue" (release 0.1)
            strategy = c[4] if len(c) > 4 and c[4] is not None else "continue" if steps is None else "rewarm"
            new = new.with_budget(total, at, strategy=strategy, rewarm_steps=None if steps is None else int(steps),
                                  rewarm_peaks=None if peaks is None else [float(p) for p in peaks], warn=False)
        return new
