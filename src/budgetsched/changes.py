"""Budget changes as plain records: how a run continues when its budget changes (``Schedule.with_budget``).

Three strategies (docs/schedules.md, "Changing the budget mid-run"): ``"continue"`` re-maps the remaining progress
(no LR jump), ``"rewarm"`` ramps back up to a peak and decays again, ``"extend"`` moves to the plan for the new
budget with the horizon-transfer peak. The default, ``"auto"`` (:data:`DEFAULT_STRATEGY`), is a rule that picks one
of them when the change is made (:meth:`Schedule.default_strategy`): "rewarm" for a budget that grows once the decay
has begun, "continue" otherwise (measured: docs/schedules.md, "Which strategy"). A history records the strategy
that ran, never "auto", so it replays the same whatever the default becomes.

Each record is a ``NamedTuple``, so it compares equal to the plain tuple a checkpoint stores; a plain
``(at_step, total_steps)`` pair, as every release wrote it, always means "continue".
"""
from __future__ import annotations

from typing import Any, NamedTuple, Sequence

from ._checks import _show

__all__ = ["BudgetChange", "Rewarm", "Extend", "STRATEGIES", "DEFAULT_STRATEGY", "strategy_of", "replay", "show_change"]


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

#: The default of ``strategy=``: resolved when the change is made to "rewarm" (the budget grows after the decay
#: began) or "continue" (anything else), and recorded as that (:meth:`Schedule.default_strategy`).
DEFAULT_STRATEGY = "auto"


def strategy_of(change: BudgetChange | Rewarm | Extend | tuple) -> str:
    """The strategy a recorded change ran with: a :class:`Rewarm` or :class:`Extend` record, or plain data as
    checkpoints store it (``(at, total)`` continue, ``(at, total, rewarm_steps, ...)`` rewarm, ``(..., "extend")``)."""
    if isinstance(change, Rewarm):
        return "rewarm"
    if isinstance(change, Extend) or any(isinstance(x, str) and x == "extend" for x in tuple(change)[2:]):
        return "extend"
    return "rewarm" if len(change) > 2 and change[2] is not None else "continue"


def replay(changes: Sequence[Sequence[Any]]) -> list[tuple[Any, Any, dict[str, Any]]]:
    """Stored changes as ``(at_step, new_total_steps, with_budget keywords)``, each with the strategy it records,
    never the default: ``(at, total)`` is "continue" (as every release wrote it), ``(at, total, rewarm_steps[,
    rewarm_peak])`` "rewarm", ``(at, total, "extend")`` "extend"."""
    out = []
    for i, change in enumerate(changes):
        if isinstance(change, (str, bytes)) or not hasattr(change, "__len__") or not 2 <= len(change) <= 4:
            raise ValueError(f"budget_changes[{i}] must be (at_step, new_total_steps[, rewarm_steps[, "
                             f"rewarm_peak]]) or (at_step, new_total_steps, 'extend'), got {_show(change)}")
        at, total, *rest = change
        if rest and isinstance(rest[0], str):
            if rest[0] not in STRATEGIES or len(rest) > 1:
                raise ValueError(f"budget_changes[{i}]: the strategy must be one of {', '.join(STRATEGIES)} "
                                 f"(alone, after the total), got {_show(change)}")
            out.append((at, total, {"strategy": rest[0]}))
            continue
        steps = rest[0] if rest else None
        peak = rest[1] if len(rest) > 1 else None
        out.append((at, total, {"strategy": "continue" if steps is None else "rewarm", "rewarm_steps": steps,
                                "rewarm_peak": peak}))
    return out


def show_change(c: BudgetChange | Rewarm | Extend) -> str:
    if isinstance(c, Rewarm):
        peak = "" if c.rewarm_peak is None else f", peak {c.rewarm_peak:g}"
        return f"at {c.at_step}: {c.total_steps} (rewarm {c.rewarm_steps}{peak})"
    return f"at {c.at_step}: {c.total_steps}{' (extend)' if isinstance(c, Extend) else ''}"
