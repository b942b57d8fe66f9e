"""Keras 3 adapter: :class:`BudgetSchedule`, a ``keras.optimizers.schedules.LearningRateSchedule``.

Works with every Keras backend (backend ops only): the LR of step t is a lookup into the precomputed table of
:meth:`budgetsched.Schedule.values` (plus the end value at index T), so it is exact for every profile and sampling
rate; steps >= T hold the end value. Serializable with ``get_config``/``from_config`` and
``keras.saving.serialize_keras_object``.

>>> import keras
>>> from budgetsched.keras import BudgetSchedule
>>> opt = keras.optimizers.SGD(learning_rate=BudgetSchedule("rex", total_steps=1000, peak_lr=0.1))

``plateau`` needs a metric: use ``keras.callbacks.ReduceLROnPlateau`` with a float learning rate instead.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import keras
import numpy as np
from keras import ops

from .profiles import canonical_name
from .sampling import Sampling, plain_spec
from .schedule import Schedule

__all__ = ["BudgetSchedule"]


@keras.saving.register_keras_serializable(package="budgetsched")
class BudgetSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """A budget-aware LR schedule for Keras optimizers: ``lr(t) = min_lr + (peak_lr - min_lr) * m_S(z(t))``.

    Args:
        profile: a name from :func:`budgetsched.available` except ``plateau`` (e.g. ``"rex"``).
        total_steps: T, the optimizer steps (``optimizer.iterations``) of this run's budget.
        peak_lr: the initial (peak) learning rate.
        sampling: sampling rate (see :mod:`budgetsched.sampling`); default every step (``step``: its milestones).
        warmup_steps: W, linear warmup from peak_lr/W to peak_lr.
        min_lr: the floor the profile decays to.
        **params: the profile's parameters (e.g. ``gamma=-3`` for ``exp``).
    """

    def __init__(
        self,
        profile: str | Callable[[Any], Any],
        total_steps: int,
        peak_lr: float,
        *,
        sampling: str | Sequence[float] | Sampling | None = None,
        warmup_steps: int = 0,
        min_lr: float = 0.0,
        **params: Any,
    ) -> None:
        super().__init__()
        if isinstance(profile, str) and canonical_name(profile) == "plateau":
            raise ValueError("'plateau' decays on a validation metric, which a LearningRateSchedule never sees: "
                             "use keras.callbacks.ReduceLROnPlateau with a float learning rate")
        self.schedule = Schedule(profile, total_steps, peak_lr, sampling=sampling, warmup_steps=warmup_steps,
                                 min_lr=min_lr, **params)
        self._profile = profile
        self._sampling = sampling
        self._params = dict(params)
        self._table = self.schedule.table().astype(np.float32)
        self._tensor = None

    def __call__(self, step: Any) -> Any:
        """The LR at optimizer step ``step`` (a backend tensor; steps are clamped to [0, total_steps])."""
        if self._tensor is None:  # converted once, on first use, on the backend's device
            self._tensor = ops.convert_to_tensor(self._table)
        # Clamp in the step's own dtype before the cast, so a huge count cannot wrap around or lose precision.
        idx = ops.cast(ops.clip(ops.convert_to_tensor(step), 0, self._table.size - 1), "int32")
        return ops.take(self._tensor, idx)

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments as JSON-able values (a callable profile cannot be serialized)."""
        if callable(self._profile):
            raise ValueError(f"a BudgetSchedule with a callable profile ({self._profile!r}) cannot be serialized; "
                             "use a profile name")
        sampling = plain_spec(self._sampling)
        params = {k: (v.tolist() if isinstance(v, np.ndarray) else list(v) if isinstance(v, tuple) else v)
                  for k, v in self._params.items()}
        return {"profile": self._profile, "total_steps": self.schedule.total_steps, "peak_lr": self.schedule.peak_lr,
                "sampling": sampling, "warmup_steps": self.schedule.warmup_steps, "min_lr": self.schedule.min_lr,
                **params}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "BudgetSchedule":
        config = dict(config)
        return cls(config.pop("profile"), config.pop("total_steps"), config.pop("peak_lr"), **config)
