"""Keras 3 adapter: :class:`BudgetSchedule`, a ``keras.optimizers.schedules.LearningRateSchedule``.

Works with every Keras backend (``keras.ops`` only): the LR of step t is the closed form of
:class:`budgetsched.Schedule`, one expression per phase of the run, from the same profile formula the numpy and
PyTorch paths use; no table, so memory does not grow with T. Steps >= T hold the end value. Serializable with
``get_config``/``from_config`` and ``keras.saving.serialize_keras_object``, budget changes included.

>>> import keras
>>> from budgetsched.keras import BudgetSchedule
>>> opt = keras.optimizers.SGD(learning_rate=BudgetSchedule("rex", total_steps=1000, peak_lr=0.1))

``plateau`` needs a metric: use ``keras.callbacks.ReduceLROnPlateau`` with a float learning rate instead.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from . import _require

_require("budgetsched.keras", "keras", "keras")  # one line naming the extra if Keras is missing

import keras  # noqa: E402
from keras import ops  # noqa: E402

from .profiles import Ops, canonical_name
from .sampling import Sampling, plain_spec
from .schedule import BudgetChange, Schedule

__all__ = ["BudgetSchedule", "KERAS_OPS"]

#: The profile operations in ``keras.ops`` (float32, any backend).
KERAS_OPS = Ops("keras", asarray=ops.convert_to_tensor, where=ops.where, cos=ops.cos, sin=ops.sin, exp=ops.exp, tan=ops.tan,
                sqrt=ops.sqrt, power=ops.power, minimum=ops.minimum, maximum=ops.maximum, floor=ops.floor,
                index=lambda x: ops.cast(x, "int32"), take=ops.take,
                searchsorted=lambda a, v: ops.searchsorted(a, v, side="right"),
                const=lambda a: ops.convert_to_tensor(np.asarray(a, dtype="float32")), eps=float(np.finfo(np.float32).eps))


def _plain(v: Any) -> Any:
    return v.tolist() if isinstance(v, np.ndarray) else list(v) if isinstance(v, tuple) else v


@keras.saving.register_keras_serializable(package="budgetsched")
class BudgetSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """A budget-aware LR schedule for Keras optimizers: ``lr(t) = min_lr + (peak_lr - min_lr) * m_S(z(t))``.

    Args:
        profile: a name from :func:`budgetsched.available` except ``plateau`` (e.g. ``"rex"``).
        total_steps: T, the optimizer steps (``optimizer.iterations``) of this run's budget.
        peak_lr: the initial (peak) learning rate.
        sampling: sampling rate (see :mod:`budgetsched.sampling`); default every step (``step``: its milestones).
        warmup_steps: W, linear warmup to peak_lr (exclusive with ``warmup_fraction``, W = ceil(f T)).
        warmup_start_lr: the LR of step 0 when warming up (default peak_lr / W).
        min_lr: the floor the profile decays to (exclusive with ``min_lr_ratio``, the floor as a fraction of peak).
        budget_changes: the budget history to start from (as :meth:`set_total_steps` records it in the config).
        **params: the profile's parameters (e.g. ``gamma=-3`` for ``exp``).
    """

    def __init__(
        self,
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
        budget_changes: Sequence[Sequence[Any]] | None = None,
        **params: Any,
    ) -> None:
        super().__init__()
        if isinstance(profile, str) and canonical_name(profile) == "plateau":
            raise ValueError("'plateau' decays on a validation metric, which a LearningRateSchedule never sees: "
                             "use keras.callbacks.ReduceLROnPlateau with a float learning rate")
        self.schedule = Schedule(profile, total_steps, peak_lr, sampling=sampling, warmup_steps=warmup_steps,
                                 warmup_fraction=warmup_fraction, warmup_start_lr=warmup_start_lr, min_lr=min_lr,
                                 min_lr_ratio=min_lr_ratio, **params).with_budget_history(budget_changes or ())
        self._profile = profile
        self._args = {"sampling": plain_spec(sampling), "warmup_steps": warmup_steps,
                      "warmup_fraction": warmup_fraction, "warmup_start_lr": warmup_start_lr, "min_lr": min_lr,
                      "min_lr_ratio": min_lr_ratio}
        self._params = dict(params)

    def __call__(self, step: Any) -> Any:
        """The LR at optimizer step ``step`` (a backend float32 tensor; steps are clamped to [0, total_steps])."""
        # Clamp in the step's own dtype before the cast, so a huge count cannot wrap around or lose precision.
        t = ops.cast(ops.clip(ops.convert_to_tensor(step), 0, self.schedule.total_steps), "float32")
        return self.schedule.evaluate(t, KERAS_OPS)

    def set_total_steps(self, total_steps: int, at_step: int, *, strategy: str | None = None,
                        rewarm_steps: int | None = None, rewarm_peak: float | None = None) -> None:
        """Change the budget at step ``at_step`` (e.g. ``int(optimizer.iterations)``), continued by ``strategy``
        ("auto", the default: "rewarm" when the budget grows after the decay has begun, else "continue" (no LR
        jump); or "continue", "rewarm", "extend"); the config records the strategy that ran.

        The rules of :meth:`budgetsched.Schedule.with_budget`; the change is kept in
        :meth:`get_config`, so a saved model resumes with its budget. With a compiled train step (jax or
        tensorflow backends) rebuild it afterwards, e.g. ``model.make_train_function(force=True)``.
        """
        self.schedule = self.schedule.with_budget(total_steps, at_step, strategy=strategy, rewarm_steps=rewarm_steps,
                                                  rewarm_peak=rewarm_peak)

    @property
    def budget_changes(self) -> list[tuple]:
        return self.schedule.budget_changes

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments as JSON-able values, the budget history included (a callable profile cannot be
        serialized)."""
        if callable(self._profile):
            raise ValueError(f"a BudgetSchedule with a callable profile ({self._profile!r}) cannot be serialized; "
                             "use a profile name")
        s = self.schedule
        config: dict[str, Any] = {"profile": self._profile, "total_steps": s.initial_total_steps,
                                  "peak_lr": s.peak_lr}
        config.update({k: v for k, v in self._args.items() if v is not None})
        config.update({k: _plain(v) for k, v in self._params.items()})
        if s.budget_changes:
            config["budget_changes"] = [list(c) if not isinstance(c, BudgetChange) else [c.at_step, c.total_steps]
                                        for c in s.budget_changes]
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "BudgetSchedule":
        config = dict(config)
        return cls(config.pop("profile"), config.pop("total_steps"), config.pop("peak_lr"), **config)
