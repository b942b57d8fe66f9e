"""Decay on plateau as a ``torch.optim.lr_scheduler.ReduceLROnPlateau`` (:class:`PlateauScheduler`), and the
one factory that builds it from ``BudgetScheduler``'s vocabulary (:func:`plateau_from_budget_args`)."""
from __future__ import annotations

import inspect
import logging
import warnings
from typing import Any, Sequence

from torch.optim import Optimizer
from torch.optim.lr_scheduler import ReduceLROnPlateau

from .._checks import _check_int, _show
from ..plateau import Plateau
from .common import EPOCH_DEPRECATION, _floors, _group_peak, _new_group_floor, _peaks, _plain, _write

logger = logging.getLogger("budgetsched")

_PLATEAU_PARAMS = tuple(p for p in inspect.signature(Plateau.__init__).parameters if p != "self")


class PlateauScheduler(ReduceLROnPlateau):
    """Decay on plateau as a ``torch.optim.lr_scheduler.ReduceLROnPlateau``: call ``step(metric)`` per evaluation.

    Being a ``ReduceLROnPlateau``, Hugging Face ``Trainer`` (with ``metric_for_best_model``) and Lightning (with a
    ``monitor``) step it with the evaluation metric and never call ``step()`` without one. The scale follows
    :class:`budgetsched.Plateau` (``ReduceLROnPlateau(mode, threshold_mode='rel', cooldown=0)`` semantics); each
    group's LR is ``min_lr + (peak - min_lr) * scale``, scale = 1, factor, factor**2, ...

    Args:
        optimizer: the optimizer whose parameter groups are driven.
        total_steps: the budget in evaluations (optional; recorded, it does not move the LR).
        patience: evaluations without improvement before a decay (the REX paper tunes it in multiples of 5).
        factor, threshold, mode, min_scale: as :class:`budgetsched.Plateau`.
        peak_lr: one float or one per group (default: each group's ``initial_lr``, else its ``lr``).
        min_lr: the floor, one float or one per group (default 0); ``min_lr_ratio``: the floor as a fraction of the
            peak (exclusive with ``min_lr``).

    A parameter group added after construction gets its own LR as peak, as in :class:`BudgetScheduler`.
    """

    def __init__(self, optimizer: Optimizer, total_steps: int | None = None, *, patience: int, factor: float = 0.1,
                 threshold: float = 1e-4, mode: str = "min", min_scale: float = 0.0,
                 peak_lr: float | Sequence[float] | None = None, min_lr: float | Sequence[float] | None = None,
                 min_lr_ratio: float | Sequence[float] | None = None) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(optimizer).__name__} is not a torch.optim.Optimizer")
        plateau = Plateau(patience, factor=factor, threshold=threshold, mode=mode, min_scale=min_scale)
        total = None if total_steps is None else _check_int("total_steps", total_steps, 1)
        peaks = _peaks(optimizer.param_groups, peak_lr, resuming=False)
        floors = _floors(min_lr, min_lr_ratio, peaks)
        super().__init__(optimizer, mode=mode, factor=plateau.factor, patience=patience, threshold=plateau.threshold,
                         threshold_mode="rel", cooldown=0, min_lr=list(floors), eps=0.0)
        for group, peak in zip(optimizer.param_groups, peaks):
            group.setdefault("initial_lr", peak)
        self._plateau = plateau
        self._peaks = list(peaks)
        self.min_lrs = list(floors)
        self.base_lrs = list(peaks)
        self._config = {"min_lr": _plain(min_lr), "min_lr_ratio": _plain(min_lr_ratio)}
        self.total_steps = total
        self._changes: list[tuple[int, int]] = []
        self._apply()  # as every torch scheduler: the LR of the first evaluation period (scale 1: the peak)

    def _apply(self) -> None:
        """The one place that writes to the optimizer."""
        groups = self.optimizer.param_groups
        for i in range(len(self._peaks), len(groups)):
            peak = _group_peak(groups[i], i)
            floor = _new_group_floor(self._config, peak, i)
            groups[i].setdefault("initial_lr", peak)
            self._peaks.append(peak)
            self.min_lrs.append(floor)
            self.base_lrs.append(peak)
            logger.warning("budgetsched: parameter group %d was added after the plateau scheduler was built; it "
                           "follows the plateau scale with its lr %g as peak and floor %g", i, peak, floor)
        scale = self._plateau.scale
        lrs = [f + (p - f) * scale for p, f in zip(self._peaks, self.min_lrs)]
        for group, lr in zip(groups, lrs):
            _write(group, "lr", lr)
        self._last_lr = lrs

    def step(self, metrics: Any = None, epoch: int | None = None) -> None:  # type: ignore[override]
        """Record one evaluation of the metric and set the LRs (``epoch`` is torch's deprecated argument)."""
        if metrics is None:
            raise ValueError("'plateau' decays on a metric: call step(metric) once per evaluation, got no metric")
        if isinstance(metrics, (str, bytes, bool)):
            raise ValueError(f"metric must be a number, got {metrics!r}")
        try:
            value = float(metrics)
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"metric must be a number, got {_show(metrics)}") from None
        if epoch is not None:
            warnings.warn(EPOCH_DEPRECATION, UserWarning, stacklevel=2)
            self.last_epoch = _check_int("epoch", epoch, 0)
        else:
            self.last_epoch += 1
        self._plateau.update(value)
        self.best, self.num_bad_epochs = self._plateau.best, self._plateau.num_bad  # torch's names, for readers
        self._apply()

    @property
    def scale(self) -> float:
        """The current LR scale (1, factor, factor**2, ...)."""
        return self._plateau.scale

    def set_total_steps(self, total_steps: int) -> None:
        """Record a new budget (in evaluations); the plateau LR does not depend on it."""
        total = _check_int("total_steps", total_steps, 1)
        self._changes.append((max(self.last_epoch, 0), total))
        self.total_steps = total

    @property
    def budget_changes(self) -> list[tuple[int, int]]:
        return list(self._changes)

    def state_dict(self) -> dict[str, Any]:
        """The plateau state, peaks, floors, step counter and budget, as plain Python."""
        return {"profile": "plateau", "plateau": self._plateau.state_dict(), "peaks": list(self._peaks),
                "min_lrs": list(self.min_lrs), "last_epoch": self.last_epoch, "total_steps": self.total_steps,
                "budget_changes": [list(c) for c in self._changes], "_last_lr": [float(x) for x in self._last_lr],
                "min_lr": self._config["min_lr"], "min_lr_ratio": self._config["min_lr_ratio"]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` (or a plateau ``BudgetScheduler`` state); never writes to the optimizer."""
        state = state_dict
        missing = [k for k in ("plateau", "peaks", "min_lrs", "last_epoch") if k not in state]
        if missing or state["plateau"] is None:
            raise ValueError(f"not a plateau scheduler state: missing {', '.join(missing) or 'plateau'}")
        n = len(state["peaks"])
        if n != len(self._peaks):
            raise ValueError(f"the state has {n} parameter groups, this scheduler has {len(self._peaks)}")
        plateau = Plateau(int(state["plateau"]["patience"]))
        plateau.load_state_dict(state["plateau"])
        self._plateau = plateau
        self._peaks = [float(p) for p in state["peaks"]]
        self.min_lrs = [float(f) for f in state["min_lrs"]]
        self.base_lrs = list(self._peaks)
        self.last_epoch = int(state["last_epoch"])
        self.total_steps = state.get("total_steps")
        self._changes = [(int(a), int(t)) for a, t in state.get("budget_changes", [])]
        self._config = {"min_lr": state.get("min_lr"), "min_lr_ratio": state.get("min_lr_ratio")}
        self.best, self.num_bad_epochs = plateau.best, plateau.num_bad
        self.factor, self.patience, self.threshold, self.mode = plateau.factor, plateau.patience, plateau.threshold, plateau.mode
        scale = plateau.scale
        self._last_lr = [f + (p - f) * scale for p, f in zip(self._peaks, self.min_lrs)]


def plateau_from_budget_args(optimizer: Any, total_steps: Any = None, warmup_steps: Any = None, min_lr: Any = None,
                       sampling: Any = None, *, peak_lr: Any = None, warmup_fraction: Any = None,
                       warmup_start_lr: Any = None, min_lr_ratio: Any = None, cycle_momentum: bool = True,
                       last_epoch: int = -1, **params: Any) -> PlateauScheduler:
    """``BudgetScheduler(optimizer, "plateau", ...)``: check the BudgetScheduler arguments, build a PlateauScheduler."""
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"{type(optimizer).__name__} is not a torch.optim.Optimizer")
    if total_steps is None:
        raise ValueError("total_steps is required (the number of step() calls of this run's budget)")
    for name, value in (("warmup_steps", warmup_steps), ("warmup_fraction", warmup_fraction),
                        ("warmup_start_lr", warmup_start_lr)):
        if value is not None and value != 0:
            raise ValueError(f"{name} is not supported with 'plateau' (its steps are evaluations), got {value!r}")
    if sampling is not None:
        raise ValueError(f"sampling is not supported with 'plateau', got {sampling!r}")
    if last_epoch != -1:
        raise ValueError(f"last_epoch is not supported with 'plateau' (resume with load_state_dict), got {last_epoch!r}")
    unknown = sorted(set(params) - set(_PLATEAU_PARAMS))
    if unknown:
        raise ValueError(f"unknown parameter {unknown[0]!r} for 'plateau'; its parameters: {', '.join(_PLATEAU_PARAMS)}")
    if "patience" not in params:
        raise ValueError("'plateau' needs the parameter 'patience' (evaluations without improvement)")
    return PlateauScheduler(optimizer, total_steps, peak_lr=peak_lr, min_lr=min_lr, min_lr_ratio=min_lr_ratio, **params)

