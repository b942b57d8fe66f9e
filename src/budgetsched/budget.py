"""Budgets as users have them: optimizer steps, tokens (or samples), or wall-clock seconds.

A schedule is a closed form of an integer position t in [0, T] (:class:`budgetsched.Schedule`). The budget's unit
only decides what t counts:

| unit | t is | T is | who advances t |
|---|---|---|---|
| steps | the optimizer steps done | ``total_steps`` | each ``step()`` |
| tokens | the tokens (or samples) consumed | ``token_budget`` | ``step(tokens=n)``: n per optimizer step |
| seconds | the training time used, in microseconds | ``time_budget`` x 10**6 | the clock, read at each ``step()`` |

so progress z = used / budget drives the same profiles, sampling rates, warmup, floor and budget changes in every
unit. :class:`TimeMeter` and :class:`TokenMeter` keep the used amount; both are plain data in a checkpoint, so a
resumed run continues where it stopped (for time: the time between a checkpoint and its resume is not counted).

Determinism: with a time budget the LR of step k depends on how long steps 0..k-1 took, i.e. on the machine. For a
run that is reproducible given its estimates, measure throughput and re-budget in steps instead
(``BudgetScheduler(..., time_budget=..., measure_steps=k, total_steps=guess)``: docs/schedules.md).
"""
from __future__ import annotations

import math
import numbers
import re
import time
from typing import Any, Callable

from ._checks import MAX_STEPS, _check_int, _show

__all__ = ["parse_duration", "TimeMeter", "TokenMeter", "TICKS_PER_SECOND", "UNITS"]

#: A time budget's schedule counts microseconds: T = seconds x 10**6 (2**53 us is 285 years).
TICKS_PER_SECOND = 1_000_000
#: The budget units, as ``BudgetScheduler.budget_unit`` names them.
UNITS = ("steps", "tokens", "seconds")

_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d*)?|\.\d+)\s*h)?\s*(?:(\d+(?:\.\d*)?|\.\d+)\s*m)?\s*"
                       r"(?:(\d+(?:\.\d*)?|\.\d+)\s*s)?\s*$", re.IGNORECASE)


def parse_duration(value: Any, name: str = "time_budget") -> float:
    """Seconds from a number of seconds or a text like ``"2h"``, ``"90m"``, ``"45s"``, ``"1h30m"``, ``"1.5h"``.

    >>> parse_duration("2h"), parse_duration("90m"), parse_duration("1h30m"), parse_duration(45)
    (7200.0, 5400.0, 5400.0, 45.0)
    """
    if isinstance(value, str):
        m = _DURATION.match(value)
        if not value.strip() or m is None or not any(m.groups()):
            raise ValueError(f"{name} must be seconds (a number > 0) or a duration like '2h', '90m', '45s', "
                             f"'1h30m', got {value!r}")
        h, mi, s = (float(g) if g else 0.0 for g in m.groups())
        seconds = 3600.0 * h + 60.0 * mi + s
    elif isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be seconds (a number > 0) or a duration like '2h', got {_show(value)}")
    else:
        seconds = float(value)
    if not math.isfinite(seconds) or seconds <= 0 or seconds * TICKS_PER_SECOND > MAX_STEPS:
        raise ValueError(f"{name} must be > 0 seconds and at most 2**53 microseconds (285 years), got {_show(value)}")
    return seconds


def check_clock(clock: Any) -> Any:
    """``clock=``: None (the default clock) or a zero-argument callable returning seconds (ValueError otherwise)."""
    if clock is not None and not callable(clock):
        raise ValueError(f"clock must be a zero-argument callable returning seconds, got {_show(clock)}")
    return clock


class _Meter:
    """What every meter says of its ``used`` against its ``budget`` (same unit)."""

    used: Any
    budget: Any

    @property
    def fraction_used(self) -> float:
        """used / budget, at most 1."""
        return min(self.used / self.budget, 1.0)

    @property
    def done(self) -> bool:
        """The budget is used up."""
        return self.used >= self.budget


class TokenMeter(_Meter):
    """Tokens (or samples) used of ``budget``: ``add(n)`` once per optimizer step with the tokens it consumed
    (with gradient accumulation: the tokens of every micro-batch of that step)."""

    unit = "tokens"

    def __init__(self, budget: Any) -> None:
        self.budget = _check_int("token_budget", budget, 1)
        self.used = 0

    @property
    def total(self) -> int:
        """T of the schedule: the budget in the schedule's integer unit (tokens)."""
        return self.budget

    def add(self, tokens: Any) -> int:
        """Count one optimizer step's tokens; return the schedule position (the tokens used so far)."""
        n = _check_int("tokens", tokens, 0)
        self.used = min(self.used + n, MAX_STEPS)
        return self.used

    def position(self) -> int:
        return self.used

    def set_budget(self, budget: Any) -> None:
        self.budget = _check_int("token_budget", budget, 1)

    def parse(self, amount: Any, name: str) -> int:
        """An amount in this unit (tokens) as schedule ticks."""
        return _check_int(name, amount, 1)

    def state_dict(self) -> dict[str, Any]:
        return {"unit": "tokens", "budget": self.budget, "used": self.used}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.budget, self.used = int(state["budget"]), int(state["used"])


class TimeMeter(_Meter):
    """Training time used of a budget of ``seconds``, read from ``clock`` (a zero-argument callable returning
    seconds; default ``time.monotonic``).

    The clock starts at the first :meth:`tick` after ``startup_steps`` ticks (one tick per ``step()``, that is per
    optimizer step), so building, loading and the first (compiling) steps are not counted. :meth:`pause` stops it
    until :meth:`resume` or the next :meth:`tick`; a meter restored from a checkpoint is paused until its first
    tick, so the time between a checkpoint and its resume is not counted; the one step run between the resume and
    that tick, which no clock timed, is counted at the mean step time so far.
    """

    unit = "seconds"

    def __init__(self, seconds: Any, clock: Callable[[], float] | None = None, startup_steps: Any = 0) -> None:
        self.budget = parse_duration(seconds)
        self.clock: Callable[[], float] = time.monotonic if check_clock(clock) is None else clock
        self.startup_left = _check_int("startup_steps", startup_steps, 0)
        self._used = 0.0  # seconds counted up to _since
        self._since: float | None = None  # the clock when counting (re)started; None while stopped
        self._started = False
        self._read = 0.0  # the used seconds as of the last tick / pause / resume
        self.steps = 0  # steps timed in full (the clock ran from one step() to the next)
        self._credit = False

    @property
    def total(self) -> int:
        """T of the schedule: the budget in microseconds."""
        return max(1, round(self.budget * TICKS_PER_SECOND))

    def _now(self) -> float:
        value = self.clock()
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise ValueError(f"clock() must return seconds (a finite number), got {_show(value)}")
        return float(value)

    @property
    def running(self) -> bool:
        return self._since is not None

    def elapsed(self) -> float:
        """Seconds of training counted until now (reads the clock)."""
        if self._since is None:
            return self._used
        return self._used + max(self._now() - self._since, 0.0)

    @property
    def used(self) -> float:
        """Seconds of training counted as of the last :meth:`tick`, :meth:`pause` or :meth:`resume` (reads no
        clock, so ``done``, ``fraction_used`` and checkpoints agree on every rank of a distributed run)."""
        return self._read

    def tick(self) -> int:
        """One optimizer step was done: start or resume the clock if needed; return the schedule position."""
        if self.startup_left > 0:
            self.startup_left -= 1
            return self.position()
        if self._since is None:
            self._since = self._now()
            self._started = True
            if self._credit and self.steps:  # the step run since the resume: credited at the mean step time
                self._used += self._used / self.steps
            self._credit = False
        else:
            self.steps += 1
        return self.position()

    def position(self) -> int:
        self._read = self.elapsed()
        return min(int(self._read * TICKS_PER_SECOND), MAX_STEPS)

    def pause(self) -> None:
        """Stop counting (evaluation, checkpointing, anything that is not training) until :meth:`resume` or the
        next step."""
        if self._since is not None:
            self._used += max(self._now() - self._since, 0.0)
            self._since = None
        self._read = self._used

    def resume(self) -> None:
        """Count again from now (no-op while counting or during the startup steps); starts the clock if it has not
        started."""
        if self._since is None and self.startup_left == 0:
            self._since = self._now()
            self._started = True
            self._credit = False  # timed from here on
            self._read = self._used

    def set_budget(self, seconds: Any) -> None:
        self.budget = parse_duration(seconds)

    def parse(self, amount: Any, name: str) -> int:
        """A duration (seconds or '10m') as schedule ticks (microseconds)."""
        return max(1, round(parse_duration(amount, name) * TICKS_PER_SECOND))

    def state_dict(self) -> dict[str, Any]:
        return {"unit": "seconds", "budget": self.budget, "used": self.used, "startup_left": self.startup_left,
                "steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.budget = float(state["budget"])
        self._used = float(state["used"])
        self.startup_left = int(state.get("startup_left", 0))
        self._since = None  # paused until the next step: the time between checkpoint and resume is not counted
        self._read = self._used
        self._started = self.startup_left == 0 and self._used > 0
        self.steps = int(state.get("steps", 0))
        self._credit = True


def meter_for(total_steps: Any, time_budget: Any, token_budget: Any, clock: Any, startup_steps: Any,
              measure_steps: Any, warmup_steps: Any) -> TimeMeter | TokenMeter | None:
    """The meter of exactly one of the budget arguments (None for a step budget), each misuse one ValueError."""
    given = [n for n, v in (("total_steps", total_steps), ("time_budget", time_budget),
                            ("token_budget", token_budget)) if v is not None]
    if measure_steps is not None:
        _check_int("measure_steps", measure_steps, 1)
        if time_budget is None or total_steps is None or token_budget is not None:
            raise ValueError(f"measure_steps ({measure_steps!r}) re-budgets a time_budget in steps: give "
                             "time_budget and total_steps (the first guess of the run's steps)")
    elif not given:
        raise ValueError("total_steps is required (the number of step() calls of this run's budget), or give "
                         "the budget as time_budget (seconds or '2h') or token_budget (tokens)")
    elif len(given) != 1:
        raise ValueError("give the budget as exactly one of total_steps (optimizer steps), time_budget (seconds "
                         f"or '2h') or token_budget (tokens); got {' and '.join(given)}")
    if time_budget is None and (clock is not None or startup_steps != 0):
        raise ValueError("clock and startup_steps belong to a time_budget")
    if time_budget is not None:
        if warmup_steps is not None and measure_steps is None:
            raise ValueError(f"warmup_steps ({warmup_steps!r}) counts steps; a time budget's warmup is "
                             "warmup_fraction (a fraction of the budget)")
        return TimeMeter(time_budget, clock, startup_steps)
    if token_budget is not None:
        if warmup_steps is not None:
            raise ValueError(f"warmup_steps ({warmup_steps!r}) counts steps; a token budget's warmup is "
                             "warmup_fraction (a fraction of the budget)")
        return TokenMeter(token_budget)
    return None


def make_meter(state: dict[str, Any], clock: Callable[[], float] | None) -> TimeMeter | TokenMeter:
    """A meter restored from its :meth:`state_dict` (the clock is the caller's: it is not in a checkpoint)."""
    if state.get("unit") == "tokens":
        meter: TimeMeter | TokenMeter = TokenMeter(int(state["budget"]))
    elif state.get("unit") == "seconds":
        meter = TimeMeter(float(state["budget"]), clock)
    else:
        raise ValueError(f"not a budget meter state (unit must be 'tokens' or 'seconds'): {_show(state)}")
    meter.load_state_dict(state)
    return meter
