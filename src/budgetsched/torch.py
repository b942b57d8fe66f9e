"""PyTorch adapter: :class:`BudgetScheduler`, a ``torch.optim.lr_scheduler.LRScheduler`` driven by a closed form.

The LR of step t is read from a table of :meth:`budgetsched.Schedule.values` (one table per parameter group, built
once and rebuilt only when the budget changes), never by recursing on ``group["lr"]``. So resuming restores one
counter and the budget history, and a budget change is one call (:meth:`BudgetScheduler.set_total_steps`).

>>> import torch
>>> from budgetsched.torch import BudgetScheduler
>>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
>>> sched = BudgetScheduler(opt, "rex", total_steps=100)
>>> for _ in range(50):
...     opt.step()
...     sched.step()
>>> round(sched.get_last_lr()[0], 12) == round(0.1 * 2 / 3, 12)
True
"""
from __future__ import annotations

import inspect
import numbers
import warnings
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from .plateau import Plateau
from .profiles import canonical_name
from .sampling import Sampling, plain_spec
from .schedule import Schedule, _check_lr

__all__ = ["BudgetScheduler"]

_PLATEAU_PARAMS = tuple(p for p in inspect.signature(Plateau.__init__).parameters if p != "self")


def _plain(value: Any) -> Any:
    """Profile parameters as plain Python (numpy arrays and scalars become lists and floats)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    return value


class BudgetScheduler(LRScheduler):
    """A budget-aware LR scheduler for any ``torch.optim`` optimizer, in closed form.

    Each parameter group keeps its own peak: its ``initial_lr`` if present, else its ``lr`` at construction. At
    construction the optimizer's LRs are set to the schedule's step-0 value (as every torch scheduler does), so the
    first ``optimizer.step()`` runs at ``lr(0)`` (``peak / warmup_steps`` with warmup). Each ``step()`` moves to the
    next step; steps past ``total_steps`` hold the end value.

    Args:
        optimizer: the optimizer whose parameter groups are driven.
        profile: a schedule name from :func:`budgetsched.available` (default ``"rex"``), or a callable m(z).
        total_steps: T, the number of ``step()`` calls of this run's budget.
        warmup_steps: W, linear warmup from peak/W to peak over the first W steps.
        min_lr: the floor the profile decays to: one float for every group, or a list with one per group.
        sampling: sampling rate (see :mod:`budgetsched.sampling`); default every step (``step``: its milestones).
        cycle_momentum: for ``onecycle``, also drive SGD's ``momentum`` / Adam's ``betas[0]`` (default True).
        **params: the profile's parameters (e.g. ``gamma=-3`` for ``exp``); for ``plateau`` the arguments of
            :class:`budgetsched.Plateau` (``patience`` is required, ``factor``, ``threshold``, ``mode``, ``min_scale``).

    ``plateau`` decays on a metric: call ``step(metric)`` once per evaluation; its LR is
    ``min_lr + (peak - min_lr) * scale`` with ``scale`` from :class:`budgetsched.Plateau` (1, factor, factor**2, ...).
    """

    def __init__(
        self,
        optimizer: Optimizer,
        profile: str | Callable[[Any], Any] = "rex",
        total_steps: int | None = None,
        warmup_steps: int = 0,
        min_lr: float | Sequence[float] = 0.0,
        sampling: str | Sequence[float] | Sampling | None = None,
        *,
        cycle_momentum: bool = True,
        **params: Any,
    ) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(optimizer).__name__} is not a torch.optim.Optimizer")
        if total_steps is None:
            raise ValueError("total_steps is required (the number of step() calls of this run's budget)")
        groups = optimizer.param_groups
        peaks = [float(g["initial_lr"] if "initial_lr" in g else g["lr"]) for g in groups]
        config = {"profile": profile if callable(profile) else canonical_name(profile), "params": dict(params),
                  "sampling": sampling, "warmup_steps": warmup_steps, "initial_total_steps": total_steps,
                  "cycle_momentum": bool(cycle_momentum)}
        # Everything is validated and built before the optimizer is touched (the base class writes initial_lr).
        built = self._build(config, [], peaks, min_lr, groups)
        self._changes: list[tuple[int, int]] = []
        self._install(config, built, peaks)
        self._initializing = True
        super().__init__(optimizer)
        self._initializing = False

    # -- building the tables ---------------------------------------------------------------------------------------
    @staticmethod
    def _min_lrs(min_lr: float | Sequence[float], peaks: list[float]) -> list[float]:
        n = len(peaks)
        if isinstance(min_lr, (str, bytes)) or not isinstance(min_lr, (numbers.Real, Sequence, np.ndarray)):
            raise ValueError(f"min_lr must be a number or a list with one number per parameter group, got {min_lr!r}")
        if isinstance(min_lr, numbers.Real):
            floors = [min_lr] * n
            names = ["min_lr"] * n
        else:
            floors = list(min_lr)
            if len(floors) != n:
                raise ValueError(f"min_lr has {len(floors)} entries but the optimizer has {n} parameter groups: "
                                 f"{list(min_lr)!r}")
            names = [f"min_lr[{i}]" for i in range(n)]
        out = []
        for name, floor, peak in zip(names, floors, peaks):
            x = _check_lr(name, floor)
            if x > peak:
                raise ValueError(f"{name} ({floor!r}) must be <= the parameter group's peak lr ({peak!r})")
            out.append(x)
        return out

    @staticmethod
    def _build(config: dict[str, Any], changes: Sequence[tuple[int, int]], peaks: list[float],
               min_lr: float | Sequence[float], groups: list[dict[str, Any]]) -> dict[str, Any]:
        """Validate a configuration and build its schedule, tables and plateau (touches nothing)."""
        floors = BudgetScheduler._min_lrs(min_lr, peaks)
        profile, params = config["profile"], config["params"]
        built: dict[str, Any] = {"min_lrs": floors, "schedule": None, "plateau": None, "tables": None,
                                 "momentum": None, "momentum_keys": None}
        if profile == "plateau":
            # Validate total_steps the same way as every schedule (the plateau LR itself ignores the budget).
            Schedule("constant", config["initial_total_steps"])
            if config["warmup_steps"]:
                raise ValueError(f"warmup_steps is not supported with 'plateau' (its steps are evaluations), "
                                 f"got {config['warmup_steps']!r}")
            if config["sampling"] is not None:
                raise ValueError(f"sampling is not supported with 'plateau', got {config['sampling']!r}")
            unknown = sorted(set(params) - set(_PLATEAU_PARAMS))
            if unknown:
                raise ValueError(f"unknown parameter {unknown[0]!r} for 'plateau'; its parameters: "
                                 f"{', '.join(_PLATEAU_PARAMS)}")
            if "patience" not in params:
                raise ValueError("'plateau' needs the parameter 'patience' (evaluations without improvement)")
            built["plateau"] = Plateau(**params)
            built["total_steps"] = config["initial_total_steps"]
            for total in (t for _, t in changes):
                built["total_steps"] = Schedule("constant", total).total_steps
            return built
        base = Schedule(profile, config["initial_total_steps"], 1.0, sampling=config["sampling"],
                        warmup_steps=config["warmup_steps"], **params)
        for at_step, total in changes:
            base = base.with_budget(total, at_step=at_step)
        built["schedule"] = base
        built["total_steps"] = base.total_steps
        built["tables"] = BudgetScheduler._tables(base, peaks, floors)
        mom = base.momentum_table()
        if mom is not None and config["cycle_momentum"]:
            keys = []
            for i, g in enumerate(groups):
                if "betas" in g:
                    keys.append("betas")
                elif "momentum" in g:
                    keys.append("momentum")
                else:
                    raise ValueError(
                        f"'onecycle' drives momentum, but parameter group {i} of the optimizer has neither 'momentum' (SGD, RMSprop) nor 'betas' (Adam, AdamW); its keys: {sorted(g)}. "
                        "Pass cycle_momentum=False to leave momentum alone")
            built["momentum"] = mom.tolist()
            built["momentum_keys"] = keys
        return built

    @staticmethod
    def _tables(base: Schedule, peaks: list[float], floors: list[float]) -> list[list[float]]:
        """Per group: the LR of steps 0..T as Python floats (index T is the end value every later step holds)."""
        tables = []
        for peak, floor in zip(peaks, floors):
            s = base.with_peak(peak, floor)
            tables.append(s.table().tolist())
        return tables

    def _install(self, config: dict[str, Any], built: dict[str, Any], peaks: list[float]) -> None:
        self._config = config
        self._peaks = list(peaks)
        self.min_lrs: list[float] = built["min_lrs"]
        self._schedule: Schedule | None = built["schedule"]
        self._plateau: Plateau | None = built["plateau"]
        self._tables_: list[list[float]] | None = built["tables"]
        self._momentum: list[float] | None = built["momentum"]
        self._momentum_keys: list[str] | None = built["momentum_keys"]
        self.total_steps: int = built["total_steps"]
        self._end = self.total_steps

    # -- the torch contract ----------------------------------------------------------------------------------------
    def _lrs_at(self, t: int) -> list[float]:
        if self._plateau is not None:
            scale = self._plateau.scale
            return [f + (p - f) * scale for p, f in zip(self._peaks, self.min_lrs)]
        i = t if t < self._end else self._end
        return [table[i] for table in self._tables_]

    def get_lr(self) -> list[float]:
        """The LR of every parameter group at step ``last_epoch`` (closed form)."""
        return self._lrs_at(max(self.last_epoch, 0))

    _get_closed_form_lr = get_lr

    def step(self, metric: float | None = None) -> None:  # type: ignore[override]
        """Move to the next step and set every group's LR (and onecycle's momentum) from the closed form.

        Args:
            metric: only for ``plateau``: the validation metric of this evaluation (required there, an error
                elsewhere).
        """
        if self._plateau is not None:
            if not self._initializing:
                if metric is None:
                    raise ValueError("'plateau' decays on a metric: call step(metric) once per evaluation, got no metric")
                try:
                    value = float(metric)
                except (TypeError, ValueError):
                    raise ValueError(f"metric must be a number, got {metric!r}") from None
                self._plateau.update(value)
        elif metric is not None:
            raise ValueError(f"step() takes a metric only for the 'plateau' schedule, this one is "
                             f"{self._profile_name()!r}; got metric={metric!r}")
        if self._step_count == 1 and not getattr(self.optimizer, "_opt_called", False):
            warnings.warn("lr_scheduler.step() was called before optimizer.step(): the first LR of the schedule "
                          "was skipped. Call optimizer.step() before scheduler.step().", UserWarning, stacklevel=2)
        self._step_count += 1
        t = self.last_epoch + 1
        self.last_epoch = t
        if self._plateau is not None:
            lrs = self._lrs_at(t)
        else:
            i = t if t < self._end else self._end
            lrs = [table[i] for table in self._tables_]
        for group, lr in zip(self.optimizer.param_groups, lrs):
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(lr)
            else:
                group["lr"] = lr
        if self._momentum is not None:
            self._set_momentum(self._momentum[t if t < self._end else self._end])
        self._last_lr = lrs

    def _set_momentum(self, m: float) -> None:
        for group, key in zip(self.optimizer.param_groups, self._momentum_keys):
            if key == "betas":
                group["betas"] = (m, *tuple(group["betas"])[1:])
            else:
                group["momentum"] = m

    def _profile_name(self) -> str:
        p = self._config["profile"]
        return p if isinstance(p, str) else getattr(p, "__name__", "custom")

    # -- budget changes --------------------------------------------------------------------------------------------
    def set_total_steps(self, total_steps: int) -> None:
        """Change the budget to ``total_steps`` from the current step on, with no LR jump.

        Rule (:meth:`budgetsched.Schedule.with_budget`): re-map the remaining progress, so the LR is continuous at
        the current step and reaches the end value at the new total. Valid after :meth:`load_state_dict` too, and
        then the new budget wins. For ``plateau`` the budget is recorded but does not move the LR.
        """
        at = max(self.last_epoch, 0)
        changes = [*self._changes, (at, total_steps)]
        built = self._build(self._config, changes, self._peaks, self.min_lrs, self.optimizer.param_groups)
        self._install(self._config, built, self._peaks)
        self._changes = [(a, int(t)) for a, t in changes]

    @property
    def budget_changes(self) -> list[tuple[int, int]]:
        """(at_step, new_total_steps) of every budget change so far, oldest first."""
        return list(self._changes)

    @property
    def schedule(self) -> Schedule | None:
        """The underlying :class:`budgetsched.Schedule` with peak 1 (None for ``plateau``)."""
        return self._schedule

    # -- checkpoints -----------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue identically, as plain Python (loads with ``weights_only=True``):
        the step counter, the budget history, the per-group peaks and floors, the configuration and plateau state."""
        profile = self._config["profile"]
        return {
            "last_epoch": self.last_epoch,
            "_step_count": self._step_count,
            "_last_lr": list(self._last_lr),
            "base_lrs": [float(b) for b in self.base_lrs],
            "peaks": list(self._peaks),
            "min_lrs": list(self.min_lrs),
            "profile": profile if isinstance(profile, str) else None,
            "params": {k: _plain(v) for k, v in self._config["params"].items()},
            "sampling": plain_spec(self._config["sampling"]),  # plain, so torch.load(weights_only=True) reads it
            "warmup_steps": self._config["warmup_steps"],
            "initial_total_steps": self._config["initial_total_steps"],
            "total_steps": self.total_steps,
            "budget_changes": [list(c) for c in self._changes],
            "cycle_momentum": self._config["cycle_momentum"],
            "plateau": None if self._plateau is None else self._plateau.state_dict(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`: the saved run (its budget history included) continues identically.

        The saved budget is restored; call :meth:`set_total_steps` afterwards to change it (that call wins). If
        this scheduler was built with another ``total_steps`` than the saved run's, a warning says so.
        """
        state = state_dict
        required = ("last_epoch", "peaks", "min_lrs", "profile", "params", "sampling", "warmup_steps",
                    "initial_total_steps", "budget_changes", "plateau")
        missing = [k for k in required if k not in state]
        if missing:
            raise ValueError(f"not a BudgetScheduler state: missing {', '.join(missing)}")
        groups = self.optimizer.param_groups
        if len(state["peaks"]) != len(groups):
            raise ValueError(f"the state has {len(state['peaks'])} parameter groups, the optimizer has {len(groups)}")
        profile = state["profile"] if state["profile"] is not None else self._config["profile"]
        config = {"profile": profile, "params": dict(state["params"]), "sampling": state["sampling"],
                  "warmup_steps": state["warmup_steps"], "initial_total_steps": state["initial_total_steps"],
                  "cycle_momentum": state.get("cycle_momentum", True)}
        changes = [(int(a), int(t)) for a, t in state["budget_changes"]]
        peaks = [float(p) for p in state["peaks"]]
        built = self._build(config, changes, peaks, state["min_lrs"], groups)
        if state["plateau"] is not None:
            built["plateau"].load_state_dict(state["plateau"])
        mine = self.total_steps
        # Nothing above wrote to self: now install.
        self._changes = changes
        self._install(config, built, peaks)
        self.base_lrs = [float(b) for b in state.get("base_lrs", peaks)]
        self.last_epoch = int(state["last_epoch"])
        self._step_count = int(state.get("_step_count", self.last_epoch + 1))
        lrs = self._lrs_at(max(self.last_epoch, 0))
        for group, lr in zip(groups, lrs):
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(lr)
            else:
                group["lr"] = lr
        if self._momentum is not None:
            t = max(self.last_epoch, 0)
            self._set_momentum(self._momentum[t if t < self._end else self._end])
        self._last_lr = lrs
        if mine != self.total_steps:
            warnings.warn(f"load_state_dict restored the saved budget total_steps={self.total_steps} over this "
                          f"scheduler's total_steps={mine}; call set_total_steps({mine}) after loading to use it",
                          UserWarning, stacklevel=2)
