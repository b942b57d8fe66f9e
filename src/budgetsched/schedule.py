"""Schedule: a profile x a sampling rate x warmup x LR floor x budget, in closed form.

``lr(t) = min_lr + (peak_lr - min_lr) * m(hold_S(z(t)))`` for t >= W, where m is the profile
(:mod:`budgetsched.profiles`), hold_S the sampling rate's zero-order hold (:mod:`budgetsched.sampling`) and z(t)
the progress of step t. During warmup (t < W) the LR ramps linearly: ``lr(t) = peak_lr * (t + 1) / W``, so the first
step never runs at 0.

Progress. Without a budget change z(t) = (t - W) / (T - W). Steps t >= T hold the end value m_S(1).

Budget change (:meth:`Schedule.with_budget`). At step a the run continues with a new total T'. Rule: *re-map the
remaining progress*. With z_a = z(a) the progress reached at a, the new progress is

    z'(t) = z_a + (1 - z_a) * (t - a) / (T' - a)        for a <= t <= T'

and unchanged before a. So the LR is continuous at a (same z, same held sample point, same value), keeps
following the same profile and sampling rate from where it was, and reaches the end value at T'. Steps before a
are unchanged, so ``values()`` shows the run as it happened. A change during warmup keeps the warmup and simply
runs the profile over [W, T'). Several changes chain (progress is a piecewise-linear map of the step).
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Sequence

import numpy as np

from .profiles import canonical_name, get_momentum, get_profile
from .sampling import Sampling, parse_sampling


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise ValueError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return value


def _check_lr(name: str, value: Any) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(x) or x < 0.0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return x


def default_sampling(profile: str, params: dict[str, Any]) -> Sampling:
    """Every step for every profile except ``step``, which samples at its own milestones ("50-75" by default)."""
    if canonical_name(profile) == "step":
        return parse_sampling(list(params.get("milestones", (0.5, 0.75))))
    return parse_sampling(None)


class Schedule:
    """A budget-aware learning-rate schedule, evaluated in closed form at any step.

    Args:
        profile: a profile name from :func:`budgetsched.available` (e.g. ``"rex"``), or a callable m(z) with m(0)=1.
        total_steps: T, the optimizer steps of this run's budget.
        peak_lr: the initial (peak) learning rate, the only thing the REX paper tunes.
        sampling: sampling rate spec (see :mod:`budgetsched.sampling`); default every step (``step``: its milestones).
        warmup_steps: W, linear warmup from peak_lr/W to peak_lr; the profile then runs over the remaining T - W steps.
        min_lr: the floor the profile decays to.
        **profile_params: the profile's parameters (e.g. ``gamma=-3`` for ``exp``, ``delay=0.5`` for delayed-linear).

    >>> s = Schedule("rex", total_steps=1000, peak_lr=0.1)
    >>> round(s(500), 12) == round(0.1 * 2 / 3, 12)
    True
    >>> s2 = s.with_budget(2000, at_step=400)
    >>> s2(400) == s(400), s2(2000)
    (True, 0.0)
    """

    def __init__(
        self,
        profile: str | Callable[[Any], Any],
        total_steps: int,
        peak_lr: float = 1.0,
        *,
        sampling: str | Sequence[float] | Sampling | None = None,
        warmup_steps: int = 0,
        min_lr: float = 0.0,
        **profile_params: Any,
    ) -> None:
        self.total_steps = _check_int("total_steps", total_steps, 1)
        self.warmup_steps = _check_int("warmup_steps", warmup_steps, 0)
        if self.warmup_steps >= self.total_steps:
            raise ValueError(f"warmup_steps must be < total_steps ({self.total_steps}), got {warmup_steps!r}")
        self.peak_lr = _check_lr("peak_lr", peak_lr)
        self.min_lr = _check_lr("min_lr", min_lr)
        if self.min_lr > self.peak_lr:
            raise ValueError(f"min_lr ({min_lr!r}) must be <= peak_lr ({peak_lr!r})")
        if callable(profile):
            if profile_params:
                raise ValueError(f"a callable profile takes no parameters here, got {sorted(profile_params)}")
            self.name = getattr(profile, "__name__", "custom")
            self._m = lambda z: np.asarray(profile(z), dtype=np.float64)
            self._mom = None
        else:
            self.name = canonical_name(profile)
            self._m = get_profile(self.name, **profile_params)
            self._mom = get_momentum(self.name, **profile_params)
        self.params = dict(profile_params)
        self.sampling = (parse_sampling(sampling) if sampling is not None
                         else default_sampling(self.name, self.params) if not callable(profile) else parse_sampling(None))
        # Progress is piecewise linear in the step. Segment i starts at step a_i with progress z_i and ends at
        # total T_i: z = z_i + (1 - z_i)(t - a_i)/(T_i - a_i). A budget change appends a segment; earlier steps keep
        # their own segment, so they are bit-for-bit unchanged.
        self._seg_start = np.array([float(self.warmup_steps)])
        self._seg_z = np.array([0.0])
        self._seg_end = np.array([float(self.total_steps)])
        self.initial_total_steps = self.total_steps
        self._history: tuple[tuple[int, int], ...] = ()

    # -- closed form ---------------------------------------------------------------------------------------------
    def progress(self, step: Any) -> np.ndarray:
        """z(t) in [0, 1] after warmup (0 during warmup); steps past the end give 1."""
        t = np.asarray(step, dtype=np.float64)
        i = np.clip(np.searchsorted(self._seg_start, t, side="right") - 1, 0, None)
        a, z0, end = self._seg_start[i], self._seg_z[i], self._seg_end[i]
        z = np.clip(z0 + (1.0 - z0) * (t - a) / (end - a), 0.0, 1.0)
        return np.where(t >= end, 1.0, z)  # exactly 1 at and after the end, whatever the rounding

    def multiplier(self, step: Any) -> np.ndarray:
        """The sampled profile value m_S(z(t)) (warmup not applied)."""
        return np.asarray(self._m(self.sampling.hold(self.progress(step))), dtype=np.float64)

    def _lr(self, step: Any) -> np.ndarray:
        t = np.asarray(step)
        if np.any(t < 0):
            raise ValueError(f"step must be >= 0, got {int(np.min(t))}")
        lr = self.min_lr + (self.peak_lr - self.min_lr) * self.multiplier(t)
        if self.warmup_steps:
            lr = np.where(t < self.warmup_steps, self.peak_lr * (t + 1.0) / self.warmup_steps, lr)
        return lr

    def __call__(self, step: int) -> float:
        """Learning rate at optimizer step ``step`` (0-based)."""
        return float(self._lr(step))

    def values(self) -> np.ndarray:
        """The learning rate of every step 0..T-1 (float64 array of length ``total_steps``)."""
        return self._lr(np.arange(self.total_steps))

    def table(self) -> np.ndarray:
        """The LR of steps 0..T (T + 1 values): :meth:`values` plus the end value every later step holds.

        This is what the framework adapters index: a step clamped to [0, T] reads its exact closed-form LR.
        """
        return self._lr(np.arange(self.total_steps + 1))

    def momentum_table(self) -> np.ndarray | None:
        """Momentum / beta1 of steps 0..T for ``onecycle`` (see :meth:`table`); None for other profiles."""
        if self._mom is None:
            return None
        return self._momentum(np.arange(self.total_steps + 1))

    def momentum(self, step: int) -> float | None:
        """OneCycle's momentum / Adam beta1 at ``step`` (max momentum during warmup); None for other profiles."""
        if self._mom is None:
            return None
        return float(self._momentum(np.asarray(step)))

    def momentum_values(self) -> np.ndarray | None:
        """Momentum / beta1 of every step for ``onecycle``; None for other profiles."""
        if self._mom is None:
            return None
        return self._momentum(np.arange(self.total_steps))

    def _momentum(self, t: np.ndarray) -> np.ndarray:
        mom = np.asarray(self._mom(self.sampling.hold(self.progress(t))), dtype=np.float64)
        if self.warmup_steps:
            mom = np.where(t < self.warmup_steps, self._mom(0.0), mom)
        return mom

    # -- derived schedules ---------------------------------------------------------------------------------------
    def _copy(self) -> "Schedule":
        new = object.__new__(Schedule)
        new.__dict__.update(self.__dict__)
        return new

    def with_budget(self, new_total_steps: int, at_step: int) -> "Schedule":
        """The same run with its budget changed to ``new_total_steps`` at step ``at_step``, with no LR jump.

        Re-maps the remaining progress (module docstring): z'(t) = z_a + (1 - z_a)(t - a)/(T' - a) for t >= a.
        ``s.with_budget(T2, a)(t) == s(t)`` for every t <= a, and the LR reaches the end value at T2.
        """
        a = _check_int("at_step", at_step, 0)
        new_t = _check_int("new_total_steps", new_total_steps, 1)
        if new_t <= a:
            raise ValueError(f"new_total_steps ({new_total_steps!r}) must be > at_step ({at_step!r})")
        if new_t <= self.warmup_steps:
            raise ValueError(f"new_total_steps ({new_total_steps!r}) must be > warmup_steps ({self.warmup_steps})")
        new = self._copy()
        if a <= self.warmup_steps:  # the profile has not started: it simply runs over [W, T')
            new._seg_start, new._seg_z = np.array([float(self.warmup_steps)]), np.array([0.0])
            new._seg_end = np.array([float(new_t)])
        else:
            z_a = float(self.progress(a))
            keep = self._seg_start < a
            new._seg_start = np.append(self._seg_start[keep], float(a))
            new._seg_z = np.append(self._seg_z[keep], z_a)
            new._seg_end = np.append(self._seg_end[keep], float(new_t))
        new.total_steps = new_t
        new._history = self._history + ((a, new_t),)
        return new

    def with_peak(self, peak_lr: float, min_lr: float | None = None) -> "Schedule":
        """The same schedule (same budget history) for another peak LR and floor, e.g. another parameter group."""
        new = self._copy()
        new.peak_lr = _check_lr("peak_lr", peak_lr)
        new.min_lr = self.min_lr if min_lr is None else _check_lr("min_lr", min_lr)
        if new.min_lr > new.peak_lr:
            raise ValueError(f"min_lr ({new.min_lr!r}) must be <= peak_lr ({peak_lr!r})")
        return new

    @property
    def budget_changes(self) -> list[tuple[int, int]]:
        """(at_step, new_total_steps) of every budget change so far, oldest first."""
        return list(self._history)

    def __repr__(self) -> str:
        extra = "".join(f", {k}={v!r}" for k, v in self.params.items() if k != "grad_norms")
        return (f"Schedule({self.name!r}, total_steps={self.total_steps}, peak_lr={self.peak_lr:g}, "
                f"sampling={self.sampling.name!r}, warmup_steps={self.warmup_steps}, min_lr={self.min_lr:g}{extra})")
