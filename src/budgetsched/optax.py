"""optax adapter: budget-aware schedules as pure ``count -> value`` functions, usable inside ``jax.jit``.

A schedule here is the closed form of :class:`budgetsched.Schedule` written in ``jax.numpy``: one expression per
phase of the run (warmup, decay, and one more per budget change), with the profile and sampling rate traced from
the same formula the numpy and PyTorch paths use. There is no table: the compiled program has the same size for
T = 1e4 and T = 1e8. Values are float32 unless ``jax_enable_x64``. The count is clamped to [0, T] (in its integer
dtype, before the cast to float): steps >= T hold the end value, as in :class:`budgetsched.Schedule`.

>>> import optax
>>> from budgetsched.optax import schedule
>>> lr = schedule("rex", total_steps=1000, peak_lr=0.1)
>>> round(float(lr(500)), 6)  # 0.1 * 2/3
0.066667
>>> opt = optax.sgd(learning_rate=lr)

Budget changes, the optax way: a new pure function built from the budget history,
``schedule(..., budget_changes=[(at_step, new_total)])`` or :func:`from_schedule` of a
:meth:`budgetsched.Schedule.with_budget` result; keep the history in your checkpoint.

``plateau`` needs a metric, which a ``count -> value`` function never sees: use ``optax.contrib.reduce_on_plateau``
(or :class:`budgetsched.Plateau` in your loop).
"""
from __future__ import annotations

import numbers
from typing import Any, Callable, Sequence

import numpy as np

from . import _require

_require("budgetsched.optax", "jax", "jax")  # one line naming the extra if jax is missing

import jax.numpy as jnp  # noqa: E402

from .profiles import Ops, canonical_name
from .sampling import Sampling
from .schedule import MAX_STEPS, Schedule, _show

__all__ = ["schedule", "momentum_schedule", "from_schedule", "JNP"]

ScheduleFn = Callable[[Any], Any]

#: The profile operations in ``jax.numpy`` (traceable; constants stay Python floats, so float32 stays float32).
JNP = Ops("jax", asarray=jnp.asarray, where=jnp.where, cos=jnp.cos, sin=jnp.sin, exp=jnp.exp, tan=jnp.tan, sqrt=jnp.sqrt,
          power=jnp.power, minimum=jnp.minimum, maximum=jnp.maximum, floor=jnp.floor,
          index=lambda x: x.astype(jnp.int32), take=lambda a, i: jnp.take(a, i, mode="clip"),
          searchsorted=lambda a, v: jnp.searchsorted(a, v, side="right"), const=jnp.asarray,
          eps=lambda: float(jnp.finfo(jnp.result_type(float)).eps))


def _build(profile: Any, total_steps: Any, peak_lr: Any, params: dict[str, Any], **kw: Any) -> Schedule:
    if isinstance(profile, str) and canonical_name(profile) == "plateau":
        raise ValueError("'plateau' decays on a validation metric, which an optax schedule (count -> value) never "
                         "sees: use optax.contrib.reduce_on_plateau, or budgetsched.Plateau in your training loop")
    return Schedule(profile, total_steps, peak_lr, **kw, **params)


def _steps(s: Schedule, count: Any) -> Any:
    """The count clamped to [0, T] in its own dtype (so a huge int64 cannot wrap), then as a float array."""
    if isinstance(count, (numbers.Number, np.generic)) and not isinstance(count, bool):
        x = float(count) if not isinstance(count, numbers.Integral) else None
        if (x is not None and not np.isfinite(x)) or abs(int(count) if x is None else x) > MAX_STEPS:
            raise ValueError(f"count must be a step in [0, 2**53], got {_show(count)}")
        if x is None:  # a concrete integer: clamp here, it may not fit jax's int32
            count = min(max(int(count), 0), s.total_steps)
    count = jnp.asarray(count)
    hi = s.total_steps
    if jnp.issubdtype(count.dtype, jnp.integer):
        hi = min(hi, int(jnp.iinfo(count.dtype).max))
    t = jnp.clip(count, 0, hi)
    return t.astype(jnp.result_type(float))


def from_schedule(s: Schedule) -> ScheduleFn:
    """A pure, jit-able ``count -> lr`` of any :class:`budgetsched.Schedule`, its budget history included.

    >>> from budgetsched import Schedule
    >>> fn = from_schedule(Schedule("linear", 100, 1.0).with_budget(150, at_step=50, strategy="continue"))
    >>> [round(float(fn(t)), 6) for t in (0, 50, 100, 150)]
    [1.0, 0.5, 0.25, 0.0]
    """
    def fn(count: Any) -> Any:
        return s.evaluate(_steps(s, count), JNP)

    fn.schedule = s  # type: ignore[attr-defined]  # read-only: the budget history to keep in a checkpoint
    return fn


def schedule(
    profile: str | Callable[[Any], Any],
    total_steps: int,
    peak_lr: float,
    *,
    sampling: str | Sequence[float] | Sampling | None = None,
    warmup_steps: int | None = None,
    warmup_fraction: float | None = None,
    warmup_start_lr: float | None = None,
    min_lr: float | None = None,
    min_lr_ratio: float | None = None,
    budget_changes: Sequence[Sequence[Any]] = (),
    **params: Any,
) -> ScheduleFn:
    """A pure ``count -> learning rate`` for optax: ``lr(t) = min_lr + (peak_lr - min_lr) * m_S(z(t))``.

    Args:
        profile: a name from :func:`budgetsched.available` except ``plateau`` (e.g. ``"rex"``), or a callable m(z)
            written with ``jax.numpy``.
        total_steps: T, the optimizer steps of this run's budget; counts >= T hold the end value.
        peak_lr: the initial (peak) learning rate.
        sampling: sampling rate (see :mod:`budgetsched.sampling`); default every step (``step``: its milestones).
        warmup_steps: W, linear warmup to peak_lr (exclusive with ``warmup_fraction``, W = ceil(f T)).
        warmup_start_lr: the LR of step 0 when warming up (default peak_lr / W).
        min_lr: the floor the profile decays to (exclusive with ``min_lr_ratio``, the floor as a fraction of peak).
        budget_changes: the budget history, ``(at_step, new_total_steps)`` or ``(at_step, new_total_steps,
            rewarm_steps[, rewarm_peak])`` or ``(at_step, new_total_steps, "extend")`` each, applied in order by
            :meth:`budgetsched.Schedule.with_budget_history` (a pair is "continue", never the default "auto";
            keep :attr:`budgetsched.Schedule.budget_changes`, which records the strategy that ran).
        **params: the profile's parameters (e.g. ``gamma=-3`` for ``exp``).

    Returns:
        ``fn(count)``: a jnp scalar (or array, for an array of counts); works on traced counts under ``jax.jit``.
        ``fn.schedule`` is the :class:`budgetsched.Schedule` it computes.

    >>> fn = schedule("linear", total_steps=10, peak_lr=1.0)
    >>> [round(float(fn(t)), 6) for t in (0, 5, 10, 99)]
    [1.0, 0.5, 0.0, 0.0]
    >>> fn2 = schedule("linear", total_steps=10, peak_lr=1.0, budget_changes=[(5, 20)])  # a longer run from step 5
    >>> [round(float(fn2(t)), 6) for t in (5, 10, 20)]
    [0.5, 0.333333, 0.0]
    """
    s = _build(profile, total_steps, peak_lr, params, sampling=sampling, warmup_steps=warmup_steps,
               warmup_fraction=warmup_fraction, warmup_start_lr=warmup_start_lr, min_lr=min_lr,
               min_lr_ratio=min_lr_ratio)
    return from_schedule(s.with_budget_history(budget_changes))


def momentum_schedule(
    profile: str,
    total_steps: int,
    *,
    sampling: str | Sequence[float] | Sampling | None = None,
    warmup_steps: int | None = None,
    warmup_fraction: float | None = None,
    budget_changes: Sequence[Sequence[Any]] = (),
    **params: Any,
) -> ScheduleFn:
    """OneCycle's momentum (SGD) / beta1 (Adam) curve as a pure ``count -> value`` (0.95 -> 0.85 -> 0.95).

    Use it with ``optax.inject_hyperparams``, e.g.
    ``optax.inject_hyperparams(optax.sgd)(learning_rate=schedule("onecycle", T, 0.1),
    momentum=momentum_schedule("onecycle", T))``. Only ``onecycle`` has a momentum curve.

    >>> fn = momentum_schedule("onecycle", total_steps=100)
    >>> [round(float(fn(t)), 6) for t in (0, 50, 100)]
    [0.95, 0.85, 0.95]
    """
    s = _build(profile, total_steps, 1.0, params, sampling=sampling, warmup_steps=warmup_steps,
               warmup_fraction=warmup_fraction).with_budget_history(budget_changes)
    if not s.has_momentum:
        raise ValueError(f"only 'onecycle' has a momentum curve, got profile {profile!r}")

    def fn(count: Any) -> Any:
        return s.evaluate_momentum(_steps(s, count), JNP)

    fn.schedule = s  # type: ignore[attr-defined]
    return fn
