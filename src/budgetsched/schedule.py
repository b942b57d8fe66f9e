"""Schedule: a profile x a sampling rate x warmup x LR floor x budget, in closed form.

``lr(t) = min_lr + (peak_lr - min_lr) * m(hold_S(z(t)))`` for t >= W, where m is the profile
(:mod:`budgetsched.profiles`), hold_S the sampling rate's zero-order hold (:mod:`budgetsched.sampling`) and z(t)
the progress of step t. During warmup (t < W) the LR ramps linearly from ``warmup_start_lr`` (default peak_lr / W;
``warmup_start_ratio`` r gives r x peak_lr) at step 0 to peak_lr at step W - 1:
``lr(t) = start + (peak_lr - start) * t / (W - 1)``; with the default start this is ``peak_lr * (t + 1) / W``, so the
first step never runs at 0.

Progress. Without a budget change z(t) = (t - W) / (T - W). Steps t >= T hold the end value m_S(1).

Budget change (:meth:`Schedule.with_budget`). At step a the run continues with a new total T'. Rule: *re-map the
remaining progress*. With z_a = z(a) the progress reached at a, the new progress is

    z'(t) = z_a + (1 - z_a) * (t - a) / (T' - a)        for a <= t <= T'

and unchanged before a. So the LR is continuous at a (same z, same held sample point, same value), keeps
following the same profile and sampling rate from where it was, and reaches the end value at T'. Steps before a
are unchanged, so ``values()`` shows the run as it happened. A change during warmup keeps the warmup and simply
runs the profile over [W, T'); with a ``warmup_fraction`` f the rest of the warmup is re-mapped to end at
ceil(f T') instead (from the LR it had at a, so again no jump). Several changes chain (progress is a
piecewise-linear map of the step).

That is strategy "continue"; "rewarm" and "extend" are the other two, and the default ``"auto"`` picks "rewarm" for a
budget that grows after the decay began, else "continue" (:meth:`Schedule.default_strategy`; docs/schedules.md).

Continuing a finished run (a >= T) with "continue" keeps the end value (z_a = 1) and logs a warning; the default
re-warms: ``with_budget(T', at_step=a, strategy="rewarm", rewarm_steps=K, rewarm_peak=P)`` ramps from the LR at a up
to P over K steps (step a keeps its LR, a + K - 1 reaches P), then runs the profile from z = 0 with peak P to T'.

Internally a schedule is a short list of *phases* (a warmup or re-warm ramp, or a decay over part of the run),
each a closed form of the step; a budget change appends phases, so memory and time never depend on T. The phase
records and the rules that rewrite them on a budget change live in :mod:`budgetsched._phases`; this module evaluates
them.
"""
from __future__ import annotations

import bisect
from typing import Any, Callable, Sequence

import numpy as np

from ._checks import MAX_STEPS, _check_fraction, _check_int, _check_lr, _show, check_keywords
from ._phases import _Decay, _Ramp, pick_strategy, rebudget, warmup_from_fraction
from .changes import BudgetChange, Extend, Rewarm, replay, show_change
from .profiles import NP, PY, Ops, canonical_name, momentum_formula, profile_formula
from .sampling import Sampling, parse_sampling

_OWN = ("total_steps", "peak_lr", "sampling", "warmup_steps", "warmup_fraction", "warmup_start_lr",
        "warmup_start_ratio", "min_lr", "min_lr_ratio")

def default_sampling(profile: str, params: dict[str, Any]) -> Sampling:
    """Every step for every profile except ``step``, which samples at its own milestones ("50-75" by default)."""
    if canonical_name(profile) == "step":
        return parse_sampling(list(params.get("milestones", (0.5, 0.75))))
    return parse_sampling(None)


class Schedule:
    """A budget-aware learning-rate schedule, evaluated in closed form at any step.

    Args:
        profile: a profile name from :func:`budgetsched.available` (e.g. ``"rex"``), or a callable m(z) with m(0)=1.
        total_steps: T, the optimizer steps of this run's budget (an integer in [1, 2**53]).
        peak_lr: the initial (peak) learning rate, the only thing the REX paper tunes.
        sampling: sampling rate spec (see :mod:`budgetsched.sampling`); default every step (``step``: its milestones).
        warmup_steps: W, linear warmup to peak_lr; the profile then runs over the remaining T - W steps.
        warmup_fraction: the warmup as a fraction f in [0, 1) of the budget, W = ceil(f T) (exclusive with
            ``warmup_steps``). A budget change during the warmup re-maps its rest to end at ceil(f T').
        warmup_start_lr: the LR of step 0 when warming up (default peak_lr / W); the ramp reaches peak_lr at W - 1.
        warmup_start_ratio: that start as a fraction r in [0, 1] of peak_lr, r x peak_lr (exclusive with
            ``warmup_start_lr``; kept as a ratio by :meth:`with_peak`, as ``min_lr_ratio`` is).
        min_lr: the floor the profile decays to (default 0).
        min_lr_ratio: the floor as a fraction of peak_lr, in [0, 1] (exclusive with ``min_lr``).
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
        warmup_steps: int | None = None,
        warmup_fraction: float | None = None,
        warmup_start_lr: float | None = None,
        warmup_start_ratio: float | None = None,
        min_lr: float | None = None,
        min_lr_ratio: float | None = None,
        **profile_params: Any,
    ) -> None:
        self.total_steps = _check_int("total_steps", total_steps, 1)
        self.peak_lr = _check_lr("peak_lr", peak_lr)
        if warmup_steps is not None and warmup_fraction is not None:
            raise ValueError(f"give warmup_steps ({warmup_steps!r}) or warmup_fraction ({warmup_fraction!r}), not both")
        if warmup_fraction is not None:
            self.warmup_fraction: float | None = _check_fraction("warmup_fraction", warmup_fraction)
            w = warmup_from_fraction(self.warmup_fraction, self.total_steps)
            if w >= self.total_steps:
                raise ValueError(f"warmup_fraction {warmup_fraction!r} gives ceil({warmup_fraction!r} x "
                                 f"{self.total_steps}) = {w} warmup steps; they must be < total_steps ({self.total_steps})")
            self.warmup_steps = w
        else:
            self.warmup_fraction = None
            self.warmup_steps = _check_int("warmup_steps", 0 if warmup_steps is None else warmup_steps, 0)
            if self.warmup_steps >= self.total_steps:
                raise ValueError(f"warmup_steps must be < total_steps ({self.total_steps}), got {warmup_steps!r}")
        self._w0 = self.warmup_steps  # the warmup of the initial budget (warmup_steps is the current one)
        if min_lr is not None and min_lr_ratio is not None:
            raise ValueError(f"give min_lr ({min_lr!r}) or min_lr_ratio ({min_lr_ratio!r}), not both")
        self.min_lr_ratio = None if min_lr_ratio is None else _check_fraction("min_lr_ratio", min_lr_ratio, False)
        self.min_lr = (self.min_lr_ratio * self.peak_lr if self.min_lr_ratio is not None
                       else _check_lr("min_lr", 0.0 if min_lr is None else min_lr))
        if self.min_lr > self.peak_lr:
            raise ValueError(f"min_lr ({min_lr!r}) must be <= peak_lr ({peak_lr!r})")
        self.warmup_start_ratio = None
        if warmup_start_ratio is not None:  # the start as a fraction of the peak: r x peak_lr
            if warmup_start_lr is not None:
                raise ValueError(f"give warmup_start_lr ({warmup_start_lr!r}) or warmup_start_ratio "
                                 f"({warmup_start_ratio!r}), not both")
            self.warmup_start_ratio = _check_fraction("warmup_start_ratio", warmup_start_ratio, False)
            warmup_start_lr = self.warmup_start_ratio * self.peak_lr
        if warmup_start_lr is not None:
            if self.warmup_steps == 0:
                given = ("warmup_start_lr", warmup_start_lr) if self.warmup_start_ratio is None else (
                    "warmup_start_ratio", warmup_start_ratio)
                raise ValueError(f"{given[0]} ({given[1]!r}) needs a warmup: give warmup_steps >= 1 or "
                                 "warmup_fraction > 0")
            start = _check_lr("warmup_start_lr", warmup_start_lr)
            if start > self.peak_lr:
                raise ValueError(f"warmup_start_lr ({warmup_start_lr!r}) must be <= peak_lr ({peak_lr!r})")
        self._start_given = None if warmup_start_lr is None else start
        if callable(profile) and not isinstance(profile, str):
            if profile_params:
                raise ValueError(f"a callable profile takes no parameters here, got {sorted(profile_params)}")
            self.name = getattr(profile, "__name__", "custom")
            self._user: Callable[[Any], Any] | None = profile
        else:
            self.name = canonical_name(profile)
            self._user = None
            check_keywords("Schedule", _OWN, self.name, profile_params)
            profile_formula(self.name, **profile_params)  # checks the parameters (ValueError naming them)
        self.params = dict(profile_params)
        self._bind_formulas()
        self.sampling = (parse_sampling(sampling) if sampling is not None
                         else default_sampling(self.name, self.params) if not callable(profile) else parse_sampling(None))
        self.initial_total_steps = self.total_steps
        self._history: tuple[BudgetChange | Rewarm, ...] = ()
        self._set_phases(self._initial_phases(self.total_steps))

    def _bind_formulas(self) -> None:
        """The profile (and momentum) formulas as closures; rebuilt after unpickling, since closures do not pickle."""
        if self._user is not None:
            user = self._user
            self._m: Callable[..., Any] = lambda z, xp, r=None: (float(user(z)) if xp is PY else
                                                                  np.asarray(user(z), dtype=np.float64) if xp is NP
                                                                  else user(z))
            self._mom: Callable[..., Any] | None = None
        else:
            self._m = profile_formula(self.name, **self.params)
            self._mom = momentum_formula(self.name, **self.params)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        for key in ("_m", "_mom", "_evals"):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._bind_formulas()
        self._set_phases(self._phases)

    # -- phases ---------------------------------------------------------------------------------------------------
    @property
    def warmup_start_lr(self) -> float | None:
        """The LR of step 0 during warmup (None without warmup)."""
        if not self._w0:
            return None
        return self._start(self._w0)

    def _start(self, w: int) -> float:
        return self._start_given if self._start_given is not None else self.peak_lr / w

    def _initial_phases(self, total: int) -> list[_Ramp | _Decay]:
        w = self._w0
        decay = _Decay(w, 0.0, total, self.peak_lr, self.min_lr)
        if not w:
            return [decay]
        return [_Ramp(0, w, self._start(w), self.peak_lr, True), decay]

    def _set_phases(self, phases: Sequence[_Ramp | _Decay]) -> None:
        self._phases = tuple(phases)
        self._starts = [p.start for p in self._phases]
        self._evals = [self._scalar_eval(p) for p in self._phases]
        # lr = a * w0 + b * w1 with (w0, w1) = (1 - u, u) on a ramp and (1, m_S(z)) on a decay
        self._coefs = [(p.lo, p.hi) if isinstance(p, _Ramp) else (p.floor, p.peak - p.floor) for p in self._phases]

    def _scalar_eval(self, p: _Ramp | _Decay) -> Callable[[int], tuple[float, float]]:
        """(w0, w1) of phase p at one integer step, on Python floats (the adapters' per-step path)."""
        if isinstance(p, _Ramp):
            start, span = p.start, max(p.end - 1 - p.start, 1)

            def ramp(t: int) -> tuple[float, float]:
                u = (t - start) / span
                u = 0.0 if u < 0.0 else 1.0 if u > 1.0 else u
                return 1.0 - u, u

            return ramp
        start, z0, end = p.start, p.z0, p.end
        span, rest = end - start, 1.0 - z0
        hold, m = self.sampling, self._m
        every = hold.every_step

        def decay(t: int) -> tuple[float, float]:
            if t >= end:
                z = 1.0
            else:
                z = z0 + rest * (t - start) / span
                z = 0.0 if z < 0.0 else 1.0 if z > 1.0 else z
            r = 1.0 - z  # float64: as the numpy path, so budget changes stay bit-for-bit continuous
            if not every:
                z, r = hold.hold_py(z, r)
            return 1.0, m(z, PY, r)

        return decay

    def weights(self, t: int) -> tuple[int, float, float]:
        """``(k, w0, w1)`` of integer step t >= 0 (unchecked): the LR of step t is ``a * w0 + b * w1`` with
        ``(a, b) = coefficients[k]``. The weights depend only on the profile, sampling, warmup and budget history,
        so schedules that differ only in peak, floor and warmup start (:meth:`with_peak`: one per parameter group)
        share them: the adapters' per-step path, Python floats, O(1) in T."""
        starts = self._starts
        k = len(starts) - 1
        if t < starts[k]:
            k = bisect.bisect_right(starts, t) - 1
        w0, w1 = self._evals[k](t)
        return k, w0, w1

    _locate = weights

    @property
    def coefficients(self) -> list[tuple[float, float]]:
        """Per phase of the run, the ``(a, b)`` of ``lr = a * w0 + b * w1`` (see :meth:`weights`): (ramp start, ramp
        end) on a warmup or re-warm ramp, (floor, peak - floor) on a decay, where (w0, w1) = (1 - u, u) or (1, m_S(z))."""
        return list(self._coefs)

    @property
    def has_momentum(self) -> bool:
        """Whether the profile drives momentum / beta1 (``onecycle``): then :meth:`momentum` is not None."""
        return self._mom is not None

    def _phase_at(self, t: int) -> int:
        return bisect.bisect_right(self._starts, t) - 1

    # -- closed form ---------------------------------------------------------------------------------------------
    def evaluate(self, steps: Any, xp: Ops = NP) -> Any:
        """The LR at ``steps`` (an ``xp`` float array of steps >= 0), built from ``xp``'s operations only.

        This is the closed form the optax and Keras adapters trace (one ``where`` per phase, no table), and what
        :meth:`values` computes with numpy.
        """
        lr = None
        for p in self._phases:
            if isinstance(p, _Ramp):
                u = xp.clip((steps - p.start) / max(p.end - 1 - p.start, 1), 0.0, 1.0)
                val = p.lo * (1.0 - u) + p.hi * u
            else:
                z, r = self.sampling.hold_with(*self._zr(p, steps, xp), xp)
                val = p.floor + (p.peak - p.floor) * self._m(z, xp, r)
            lr = val if lr is None else xp.where(steps >= p.start, val, lr)
        return lr

    def evaluate_momentum(self, steps: Any, xp: Ops = NP) -> Any:
        """OneCycle's momentum / beta1 at ``steps`` (see :meth:`evaluate`); max momentum on ramps. None otherwise."""
        if self._mom is None:
            return None
        out = None
        for p in self._phases:
            if isinstance(p, _Ramp):
                val = self._mom(steps * 0.0, xp)
            else:
                z, r = self.sampling.hold_with(*self._zr(p, steps, xp), xp)
                val = self._mom(z, xp, r)
            out = val if out is None else xp.where(steps >= p.start, val, out)
        return out

    @staticmethod
    def _z(p: _Decay, steps: Any, xp: Ops) -> Any:
        z = xp.clip(p.z0 + (1.0 - p.z0) * (steps - p.start) / (p.end - p.start), 0.0, 1.0)
        return xp.where(steps >= p.end, 1.0, z)  # exactly 1 at and after the end, whatever the rounding

    @staticmethod
    def _zr(p: _Decay, steps: Any, xp: Ops) -> tuple[Any, Any]:
        """z and r = 1 - z of decay phase p. In float32 (``xp.low_precision``) r is computed from the steps left, so
        it keeps its relative precision near the end of the run (see ``profiles._rest``)."""
        z = Schedule._z(p, steps, xp)
        if not xp.low_precision:
            return z, 1.0 - z
        r = xp.clip((1.0 - p.z0) * ((p.end - steps) / (p.end - p.start)), 0.0, 1.0)
        return z, xp.where(steps >= p.end, 0.0, r)

    @staticmethod
    def _steps(step: Any) -> np.ndarray:
        """An array of steps as float64, checked: numbers (not NaN or inf), none negative."""
        t = np.asarray(step)
        numeric = np.issubdtype(t.dtype, np.integer) or np.issubdtype(t.dtype, np.floating)
        if not numeric or (np.issubdtype(t.dtype, np.floating) and not np.all(np.isfinite(t))):
            raise ValueError(f"step must be an integer >= 0, got {_show(step)}")
        if np.any(t < 0):
            raise ValueError(f"step must be >= 0, got {int(np.min(t))}")
        return t.astype(np.float64)

    def progress(self, step: Any) -> np.ndarray:
        """z(t) in [0, 1] after warmup (0 during a warmup or re-warm); steps past the end give 1."""
        t = self._steps(step)
        out = None
        for p in self._phases:
            val = t * 0.0 if isinstance(p, _Ramp) else self._z(p, t, NP)
            out = val if out is None else np.where(t >= p.start, val, out)
        return out

    def multiplier(self, step: Any) -> np.ndarray:
        """The sampled profile value m_S(z(t)) (warmup not applied)."""
        return np.asarray(self._m(self.sampling.hold(self.progress(step)), NP), dtype=np.float64)

    def _lr(self, step: Any) -> np.ndarray:
        return np.asarray(self.evaluate(self._steps(step), NP), dtype=np.float64)

    def __call__(self, step: int) -> float:
        """Learning rate at optimizer step ``step`` (an integer in [0, 2**53]; 0-based)."""
        t = _check_int("step", step, 0)
        k, w0, w1 = self._locate(t)
        a, b = self._coefs[k]
        return a * w0 + b * w1

    def values(self) -> np.ndarray:
        """The learning rate of every step 0..T-1 (float64 array of length ``total_steps``)."""
        return self._lr(np.arange(self.total_steps))

    def table(self) -> np.ndarray:
        """The LR of steps 0..T (T + 1 values): :meth:`values` plus the end value every later step holds."""
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
        return self._scalar_momentum(_check_int("step", step, 0))

    def _scalar_momentum(self, t: int) -> float:
        p = self._phases[self._phase_at(t)]
        if isinstance(p, _Ramp):
            return float(self._mom(0.0, PY))
        z = 1.0 if t >= p.end else min(max(p.z0 + (1.0 - p.z0) * (t - p.start) / (p.end - p.start), 0.0), 1.0)
        return float(self._mom(self.sampling.hold_py(z, 1.0 - z)[0], PY))

    def momentum_values(self) -> np.ndarray | None:
        """Momentum / beta1 of every step for ``onecycle``; None for other profiles."""
        if self._mom is None:
            return None
        return self._momentum(np.arange(self.total_steps))

    def _momentum(self, t: np.ndarray) -> np.ndarray:
        return np.asarray(self.evaluate_momentum(self._steps(t), NP), dtype=np.float64)

    # -- derived schedules ---------------------------------------------------------------------------------------
    def _copy(self) -> "Schedule":
        new = object.__new__(Schedule)
        new.__dict__.update(self.__dict__)
        return new

    def with_budget(self, new_total_steps: int, at_step: int, *, strategy: str | None = None,
                    rewarm_steps: int | None = None, rewarm_peak: float | None = None,
                    warn: bool = True) -> "Schedule":
        """The same run with its budget changed to ``new_total_steps`` at step ``at_step``, continued by ``strategy``.

        * ``"auto"`` (the default, also None): :meth:`default_strategy` picks "rewarm" or "continue" ("rewarm" when
          ``rewarm_steps`` is given); :attr:`budget_changes` records the one it picked.
        * ``"continue"`` (no LR jump): re-map the remaining progress (module docstring),
          z'(t) = z_a + (1 - z_a)(t - a)/(T' - a) for t >= a: unchanged for t <= a, the end value at T2. A finished
          run (``at_step >= total_steps``) stays at its end value and a warning is logged (``warn=False``: not).
        * ``"rewarm"``: step a keeps its LR, then a linear ramp up to
          ``rewarm_peak`` (default: this schedule's ``peak_lr``) reached at step a + K - 1, K = ``rewarm_steps``
          (default: the initial warmup's length, at least 1; K = 1 restarts at the peak at step a + 1), then the
          profile from z = 0 with that peak down to the floor at T2.
        * ``"extend"``: step a keeps its LR; from a + 1 on the schedule planned for T2 from the start (same warmup
          and floor), its peak scaled by min(1, sqrt(T / T2)), T the total before the change. A horizon-transfer
          rule: for a schedule of fixed shape the convex bound is minimised by a peak proportional to 1/sqrt(T)
          (Schaipp et al. 2025), so a longer run continues on the plan it would have had, at a lower peak; a
          shorter one keeps the peak (never above the tuned one). Its LR may jump at a + 1, on purpose.

        Every change is kept in :attr:`budget_changes` (plain data: :meth:`with_budget_history` replays it).
        """
        return rebudget(self, new_total_steps, at_step, rewarm_steps, rewarm_peak, warn=warn, strategy=strategy)

    def with_budget_history(self, changes: Sequence[Sequence[Any]]) -> "Schedule":
        """Apply budget changes in order, each ``(at_step, new_total_steps)`` (continue), ``(at_step,
        new_total_steps, rewarm_steps[, rewarm_peak])`` (rewarm) or ``(at_step, new_total_steps, "extend")``
        (plain data, as :attr:`budget_changes` lists and checkpoints store them). Each replays with the strategy it
        records, never the default: a pair is "continue", as every release wrote it.

        >>> s = Schedule("linear", total_steps=100).with_budget_history([(50, 150)])
        >>> s(50), s(100), s(150)
        (0.5, 0.25, 0.0)
        """
        new = self
        for at, total, how in replay(changes):
            new = new.with_budget(total, at_step=at, **how)
        return new

    def default_strategy(self, new_total_steps: int, at_step: int) -> str:
        """What the default ``strategy="auto"`` of :meth:`with_budget` picks: "rewarm" (a max(W0, 1)-step ramp to
        ``peak_lr``, W0 the initial warmup) when T2 > T after the decay began (z(a) > 0, or past the end) and
        T2 > a + max(W0, 1); else "continue". Measured (docs/schedules.md): with the budget doubled at 20 % or 80 %
        of the plan, re-warming matched the run that knew it from the start, continuing cost up to +2.5 points of
        test error. A shrink must decay sooner (continue, no jump); before the decay continue is the new plan.

        >>> s = Schedule("linear", total_steps=100)
        >>> s.default_strategy(200, 50), s.default_strategy(80, 50), s.default_strategy(200, 0)
        ('rewarm', 'continue', 'continue')
        """
        a = _check_int("at_step", at_step, 0)
        new_t = _check_int("new_total_steps", new_total_steps, 1)
        return pick_strategy(self, new_t, a)

    def with_peak(self, peak_lr: float, min_lr: float | None = None, *,
                  warmup_start_lr: float | None = None) -> "Schedule":
        """The same schedule (same budget history) for another peak LR and floor, e.g. another parameter group.

        ``min_lr`` None keeps the floor (``min_lr_ratio`` x the new peak if the schedule was given a ratio);
        ``warmup_start_lr`` None keeps a given start LR if it is <= the new peak, else the default new peak / W
        (``warmup_start_ratio`` x the new peak if the schedule was given a ratio).
        Re-warm peaks that were given explicitly scale with the peak.
        """
        peak = _check_lr("peak_lr", peak_lr)
        if min_lr is not None:
            floor = _check_lr("min_lr", min_lr)
        else:
            floor = self.min_lr_ratio * peak if self.min_lr_ratio is not None else self.min_lr
        if warmup_start_lr is not None:
            if not self._w0:
                raise ValueError(f"warmup_start_lr ({warmup_start_lr!r}) needs a warmup")
            start = _check_lr("warmup_start_lr", warmup_start_lr)
        start_ratio = getattr(self, "warmup_start_ratio", None) if warmup_start_lr is None else None
        if start_ratio is not None:
            start = start_ratio * peak
        elif warmup_start_lr is None:
            start = self._start_given if self._start_given is not None and self._start_given <= peak else None
        new = self._derive(peak, floor, start, ratio=self.min_lr_ratio if min_lr is None else None)
        new.warmup_start_ratio = start_ratio
        return new

    def _derive(self, peak: float, floor: float, start: float | None, ratio: float | None = None) -> "Schedule":
        """This schedule's profile, sampling, warmup and budget history with exactly this peak, floor and warmup
        start (None: peak / W). Checked values in; O(number of budget changes)."""
        if floor > peak:
            raise ValueError(f"min_lr ({floor!r}) must be <= peak_lr ({peak!r})")
        if start is not None and start > peak:
            raise ValueError(f"warmup_start_lr ({start!r}) must be <= peak_lr ({peak!r})")
        new = self._copy()
        new.peak_lr, new.min_lr, new.min_lr_ratio, new._start_given = peak, floor, ratio, start
        new.total_steps, new.warmup_steps = self.initial_total_steps, self._w0
        new._history = ()
        new._set_phases(new._initial_phases(self.initial_total_steps))
        scale = peak / self.peak_lr if self.peak_lr > 0 else 1.0
        for c in self._history:
            if isinstance(c, Rewarm):
                rewarm_peak = None if c.rewarm_peak is None else c.rewarm_peak * scale
                new = rebudget(new, c.total_steps, c.at_step, c.rewarm_steps, rewarm_peak, warn=False)
            else:
                new = rebudget(new, c.total_steps, c.at_step, None, None, warn=False,
                               strategy="extend" if isinstance(c, Extend) else "continue")
        return new

    @property
    def budget_changes(self) -> list[BudgetChange | Rewarm | Extend]:
        """Every budget change so far, oldest first, with the strategy that ran (never "auto"): :class:`BudgetChange`
        ``(at_step, new_total_steps)`` pairs (continue), :class:`Rewarm` and :class:`Extend` records."""
        return list(self._history)

    def __repr__(self) -> str:
        extra = "".join(f", {k}={v!r}" for k, v in self.params.items() if k != "grad_norms")
        changes = ""
        if self._history:
            changes = (f", initial_total_steps={self.initial_total_steps}, budget_changes="
                       f"[{', '.join(show_change(c) for c in self._history)}]")
        return (f"Schedule({self.name!r}, total_steps={self.total_steps}, peak_lr={self.peak_lr:g}, "
                f"sampling={self.sampling.name!r}, warmup_steps={self.warmup_steps}, min_lr={self.min_lr:g}{extra}"
                f"{changes})")

