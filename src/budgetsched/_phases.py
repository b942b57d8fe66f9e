"""A schedule's phases, and how a budget change rewrites them (:meth:`budgetsched.Schedule.with_budget`).

A :class:`~budgetsched.Schedule` is a short list of *phases*, each a closed form of the step: a linear ramp
(:class:`_Ramp`: the warmup, or a re-warm) or a decay over part of the run (:class:`_Decay`). :func:`rebudget`
continues a run with a new total T' at step a by one of the strategies of :mod:`budgetsched.changes`: it keeps the
phases that started before a and appends new ones, so a schedule's size never depends on T. The rules (a the step of
the change, z_a = z(a) the progress reached there, W0 the initial warmup):

* "continue": z'(t) = z_a + (1 - z_a)(t - a) / (T' - a) for a <= t <= T' (no LR jump; a warmup given as a fraction f
  has its rest re-mapped to end at ceil(f T')).
* "rewarm": step a keeps its LR, a ramp up to the peak P reached at a + K - 1, then the profile from z = 0 to T'.
* "extend": step a keeps its LR, then the plan for T' from the start with the peak x min(1, sqrt(T / T')).
* "auto" (:func:`pick_strategy`): "rewarm" for T' > T once the decay has begun (z_a > 0) and T' > a + max(W0, 1),
  else "continue".

Schedule evaluates the phases; this module only plans them.
"""
from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from ._checks import _check_int, _check_lr, _show
from .changes import DEFAULT_STRATEGY, STRATEGIES, BudgetChange, Extend, Rewarm
from .profiles import NP

if TYPE_CHECKING:
    from .schedule import Schedule

logger = logging.getLogger("budgetsched")


def warmup_from_fraction(fraction: float, total_steps: int) -> int:
    """W = ceil(f T), as Hugging Face's ``warmup_ratio`` (rounded to 9 decimals first, so 0.07 x 100 gives 7, not 8)."""
    return math.ceil(round(fraction * total_steps, 9))


# -- phases: the closed form of one stretch of the run ---------------------------------------------------------------
# Both records say they live in budgetsched.schedule, where they were defined before this module existed: a pickled
# Schedule holds its phases, and pickle names a class by module and name, so pickles written by this version load in
# earlier ones and the reverse (budgetsched.schedule imports both names).

class _Ramp(NamedTuple):
    """Steps [start, end): lr = lo (1 - u) + hi u, u = (t - start) / (end - 1 - start) (u = 0 for a 1-step ramp)."""

    __module__ = "budgetsched.schedule"
    start: int
    end: int
    lo: float
    hi: float
    warmup: bool  # the run's initial warmup (re-mapped on a budget change when given as a fraction)


class _Decay(NamedTuple):
    """Steps [start, ...): lr = floor + (peak - floor) m_S(z), z = z0 + (1 - z0)(t - start)/(end - start), 1 past end."""

    __module__ = "budgetsched.schedule"
    start: int
    z0: float
    end: int
    peak: float
    floor: float


# -- budget changes ----------------------------------------------------------------------------------------------------

def rebudget(s: Schedule, new_total_steps: Any, at_step: Any, rewarm_steps: Any, rewarm_peak: Any, *,
             warn: bool, strategy: str | None = None) -> Schedule:
    """``s`` with its budget changed to ``new_total_steps`` at ``at_step`` by ``strategy`` (None or "auto": the
    default rule, :func:`pick_strategy`): checks every argument, then appends the phases of the strategy (module
    docstring) and records the change with the strategy that ran."""
    a = _check_int("at_step", at_step, 0)
    new_t = _check_int("new_total_steps", new_total_steps, 1)
    if strategy is None or (isinstance(strategy, str) and strategy == DEFAULT_STRATEGY):
        if rewarm_steps is None and rewarm_peak is not None:
            raise ValueError(f"rewarm_peak ({rewarm_peak!r}) needs rewarm_steps (the length of the re-warm ramp) "
                             "or strategy='rewarm'")
        strategy = "rewarm" if rewarm_steps is not None else s.default_strategy(new_t, a)
    if not isinstance(strategy, str) or strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(map(repr, STRATEGIES))}, got {_show(strategy)} "
                         f"(or {DEFAULT_STRATEGY!r}, the default, which picks one)")
    if new_t <= a:
        raise ValueError(f"new_total_steps ({new_total_steps!r}) must be > at_step ({at_step!r})")
    if strategy != "rewarm" and (rewarm_steps is not None or rewarm_peak is not None):
        raise ValueError(f"rewarm_steps / rewarm_peak belong to strategy='rewarm', got strategy={strategy!r}")
    k = s._phase_at(a)
    cur = s._phases[k]
    keep = [p for p in s._phases if p.start < a]
    change: BudgetChange | Rewarm | Extend
    if strategy == "rewarm":
        steps = max(s._w0, 1) if rewarm_steps is None else _check_int("rewarm_steps", rewarm_steps, 1)
        peak = s.peak_lr if rewarm_peak is None else _check_lr("rewarm_peak", rewarm_peak)
        if peak < s.min_lr:
            raise ValueError(f"rewarm_peak ({rewarm_peak!r}) must be >= min_lr ({s.min_lr!r})")
        if new_t <= a + steps:
            raise ValueError(f"new_total_steps ({new_total_steps!r}) must be > at_step + rewarm_steps "
                             f"({a} + {steps} = {a + steps}): the profile needs at least one step after the re-warm")
        phases = [*keep, _Ramp(a, a + steps, s(a), peak, False), _Decay(a + steps, 0.0, new_t, peak, s.min_lr)]
        change = Rewarm(a, new_t, steps, None if rewarm_peak is None else peak)
    elif strategy == "extend":
        phases = extend_phases(s, keep, cur, a, new_t)
        change = Extend(a, new_t)
    elif isinstance(cur, _Ramp):
        end, ramp = cur.end, cur
        if cur.warmup and s.warmup_fraction is not None:
            end = max(warmup_from_fraction(s.warmup_fraction, new_t), a + 1)
            if end != cur.end and a == 0:  # nothing has run yet: exactly the schedule built for the new budget
                ramp = _Ramp(0, end, s._start(end), cur.hi, True)
            elif end != cur.end:  # the rest of the warmup is re-mapped to end at ceil(f T'), from the LR at a
                ramp = _Ramp(a, end, s(a), cur.hi, True)
        if new_t <= end:
            what = f"warmup_steps ({end})" if cur.warmup else f"the end of the re-warm (step {end})"
            raise ValueError(f"new_total_steps ({new_total_steps!r}) must be > {what}")
        before = [p for p in s._phases if p.start < ramp.start]
        phases = [*before, ramp, _Decay(end, 0.0, new_t, cur.hi, s.min_lr)]
        change = BudgetChange(a, new_t)
    else:
        z_a = 1.0 if a >= cur.end else float(s._z(cur, np.float64(a), NP))
        if warn and z_a >= 1.0:
            logger.warning(
                "budgetsched: continuing a finished run: step %d is at or past the end of the budget "
                "(total_steps=%d) with strategy 'continue', so the learning rate stays at its end value %g until "
                "the new total %d. To train on, re-warm: leave strategy at its default, or with_budget(..., "
                "strategy='rewarm', rewarm_steps=K[, rewarm_peak=P]) (set_total_steps(..., rewarm_steps=K) in "
                "the adapters).", a, s.total_steps, s(a), new_t)
        phases = [*keep, _Decay(a, z_a, new_t, cur.peak, cur.floor)]
        change = BudgetChange(a, new_t)
    new = s._copy()
    new._set_phases(phases)
    new.total_steps = new_t
    new.warmup_steps = max((p.end for p in phases if isinstance(p, _Ramp) and p.warmup), default=0)  # the latest
    new._history = s._history + (change,)
    return new


def pick_strategy(s: Schedule, new_t: int, a: int) -> str:
    """The default rule (:meth:`Schedule.default_strategy`, checked arguments): "rewarm" when T' > T and
    T' > a + max(W0, 1) once the decay has begun (z(a) > 0, or past the end), else "continue"."""
    if new_t <= s.total_steps or new_t <= a + max(s._w0, 1):
        return "continue"
    cur = s._phases[s._phase_at(a)]
    if isinstance(cur, _Ramp):
        return "continue"
    z_a = 1.0 if a >= cur.end else float(s._z(cur, np.float64(a), NP))
    return "rewarm" if z_a > 0.0 else "continue"


def extend_phases(s: Schedule, keep: list[_Ramp | _Decay], cur: _Ramp | _Decay, a: int,
                  new_t: int) -> list[_Ramp | _Decay]:
    """Strategy "extend": step a as it was, then the plan for ``new_t`` with the peak x min(1, sqrt(T/new_t))."""
    old_peak = cur.hi if isinstance(cur, _Ramp) else cur.peak
    peak = max(old_peak * min(1.0, math.sqrt(s.total_steps / new_t)), s.min_lr)
    w = s._w0 if s.warmup_fraction is None else warmup_from_fraction(s.warmup_fraction, new_t)
    if new_t <= max(w, a + 1):
        raise ValueError(f"new_total_steps ({new_t}) must be > at_step + 1 ({a + 1}) and > the planned warmup "
                         f"({w}) for strategy='extend'")
    here = _Ramp(a, a + 1, s(a), s(a), False)  # step a keeps the LR it ran at
    if a + 1 < w:  # still warming up: the ramp goes on from the LR at a to the (scaled) peak at w - 1
        return [*keep, _Ramp(a, w, s(a), peak, True), _Decay(w, 0.0, new_t, peak, s.min_lr)]
    z1 = (a + 1 - w) / (new_t - w)
    return [*keep, here, _Decay(a + 1, z1, new_t, peak, s.min_lr)]
