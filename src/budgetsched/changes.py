"""Budget changes as plain records: how a run continues when its budget changes (``Schedule.with_budget``).

Three strategies (docs/schedules.md, "Changing the budget mid-run"): ``"continue"`` re-maps the remaining progress
(no LR jump), ``"rewarm"`` ramps back up to a peak and decays again, ``"extend"`` moves to the plan for the new
budget with the horizon-transfer peak. Each record is a ``NamedTuple``, so it compares equal to the plain tuple a
checkpoint stores.
"""
from __future__ import annotations

from typing import NamedTuple

__all__ = ["BudgetChange", "Rewarm", "Extend", "STRATEGIES", "show_change"]


class BudgetChange(NamedTuple):
    """A budget change with strategy "continue": from ``at_step`` on, the run ends at ``total_steps`` (compares
    equal to the plain pair)."""

    at_step: int
    total_steps: int


class Rewarm(NamedTuple):
    """A budget change with strategy "rewarm": from the LR at ``at_step`` up to ``rewarm_peak`` over
    ``rewarm_steps``, then the profile from its start down to the floor at ``total_steps``. ``rewarm_peak`` None
    means the schedule's peak."""

    at_step: int
    total_steps: int
    rewarm_steps: int
    rewarm_peak: float | None


class Extend(NamedTuple):
    """A budget change with strategy "extend": from step ``at_step + 1`` on, the schedule planned for
    ``total_steps`` from the start, its peak scaled by min(1, sqrt(T / total_steps)) (T the total before the change).
    As plain data: ``(at_step, total_steps, "extend")``."""

    at_step: int
    total_steps: int
    strategy: str = "extend"


#: The continuation strategies of :meth:`Schedule.with_budget` (docs/schedules.md: which to use when).
STRATEGIES = ("continue", "rewarm", "extend")


def show_change(c: BudgetChange | Rewarm | Extend) -> str:
    if isinstance(c, Rewarm):
        peak = "" if c.rewarm_peak is None else f", peak {c.rewarm_peak:g}"
        return f"at {c.at_step}: {c.total_steps} (rewarm {c.rewarm_steps}{peak})"
    return f"at {c.at_step}: {c.total_steps}{' (extend)' if isinstance(c, Extend) else ''}"
