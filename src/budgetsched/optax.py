"""optax adapter: budget-aware schedules as pure ``count -> value`` functions, usable inside ``jax.jit``.

A schedule here is a lookup into the precomputed table of :meth:`budgetsched.Schedule.values` (plus the end value
at index T), so it is exact (to the table's dtype: float32 unless ``jax_enable_x64``) and jit-able for every
profile and sampling rate. The count is clamped to [0, T]: steps >= T hold the end value, as in
:class:`budgetsched.Schedule`.

>>> import optax
>>> from budgetsched.optax import schedule
>>> lr = schedule("rex", total_steps=1000, peak_lr=0.1)
>>> round(float(lr(500)), 6)  # 0.1 * 2/3
0.066667
>>> opt = optax.sgd(learning_rate=lr)

``plateau`` needs a metric, which a ``count -> value`` function never sees: use ``optax.contrib.reduce_on_plateau``
(or :class:`budgetsched.Plateau` in your loop).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import jax.numpy as jnp
import numpy as np

from .profiles import canonical_name
from .sampling import Sampling
from .schedule import Schedule

__all__ = ["schedule", "momentum_schedule"]

ScheduleFn = Callable[[Any], Any]


def _build(profile: str, total_steps: int, peak_lr: float, sampling: Any, warmup_steps: int, min_lr: float,
           params: dict[str, Any]) -> Schedule:
    if isinstance(profile, str) and canonical_name(profile) == "plateau":
        raise ValueError("'plateau' decays on a validation metric, which an optax schedule (count -> value) never "
                         "sees: use optax.contrib.reduce_on_plateau, or budgetsched.Plateau in your training loop")
    return Schedule(profile, total_steps, peak_lr, sampling=sampling, warmup_steps=warmup_steps, min_lr=min_lr,
                    **params)


def _lookup(table: np.ndarray) -> ScheduleFn:
    values = jnp.asarray(table)
    last = table.size - 1

    def fn(count: Any) -> Any:
        # Clamp before the cast, so a huge int64 count (x64 mode) cannot wrap around.
        idx = jnp.clip(jnp.asarray(count), 0, last).astype(jnp.int32)
        return values[idx]

    return fn


def schedule(
    profile: str,
    total_steps: int,
    peak_lr: float,
    *,
    sampling: str | Sequence[float] | Sampling | None = None,
    warmup_steps: int = 0,
    min_lr: float = 0.0,
    **params: Any,
) -> ScheduleFn:
    """A pure ``count -> learning rate`` for optax: ``lr(t) = min_lr + (peak_lr - min_lr) * m_S(z(t))``.

    Args:
        profile: a name from :func:`budgetsched.available` except ``plateau`` (e.g. ``"rex"``), or a callable m(z).
        total_steps: T, the optimizer steps of this run's budget; counts >= T hold the end value.
        peak_lr: the initial (peak) learning rate.
        sampling: sampling rate (see :mod:`budgetsched.sampling`); default every step (``step``: its milestones).
        warmup_steps: W, linear warmup from peak_lr/W to peak_lr.
        min_lr: the floor the profile decays to.
        **params: the profile's parameters (e.g. ``gamma=-3`` for ``exp``).

    Returns:
        ``fn(count)``: a jnp scalar (or array, for an array of counts); works on traced counts under ``jax.jit``.

    >>> fn = schedule("linear", total_steps=10, peak_lr=1.0)
    >>> [round(float(fn(t)), 6) for t in (0, 5, 10, 99)]
    [1.0, 0.5, 0.0, 0.0]
    """
    s = _build(profile, total_steps, peak_lr, sampling, warmup_steps, min_lr, params)
    return _lookup(s.table())


def momentum_schedule(
    profile: str,
    total_steps: int,
    *,
    sampling: str | Sequence[float] | Sampling | None = None,
    warmup_steps: int = 0,
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
    s = _build(profile, total_steps, 1.0, sampling, warmup_steps, 0.0, params)
    mom = s.momentum_table()
    if mom is None:
        raise ValueError(f"only 'onecycle' has a momentum curve, got profile {profile!r}")
    return _lookup(mom)
