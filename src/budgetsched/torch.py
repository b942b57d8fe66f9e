"""PyTorch adapter: :class:`BudgetScheduler` (profiles) and :class:`PlateauScheduler` (decay on plateau).

:class:`BudgetScheduler` is a ``torch.optim.lr_scheduler.LRScheduler`` whose LR at step t is the closed form of
:class:`budgetsched.Schedule` (one per parameter group, sharing one budget history), computed at each step on
Python floats: no table of steps, so construction and budget changes cost the same at T = 1e4 and T = 1e8, and
resuming restores one counter and the budget history. Every LR it sets goes through one method (``_apply``).

:class:`PlateauScheduler` subclasses ``torch.optim.lr_scheduler.ReduceLROnPlateau`` (Hugging Face ``Trainer`` and
Lightning pass evaluation metrics only to such instances), with :class:`budgetsched.Plateau` semantics and the
same peak/floor vocabulary. ``BudgetScheduler(optimizer, "plateau", ...)`` builds one.

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

import bisect
import inspect
import logging
import numbers
import warnings
import weakref
from typing import Any, Callable, Sequence

import numpy as np

from . import _require

_require("budgetsched.torch", "torch", "torch")  # one line naming the extra if PyTorch is missing

import torch  # noqa: E402
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

from .plateau import Plateau
from .profiles import canonical_name
from .sampling import Sampling, plain_spec
from .schedule import Schedule, _check_fraction, _check_int, _check_lr, _show

__all__ = ["BudgetScheduler", "PlateauScheduler"]

logger = logging.getLogger("budgetsched")

_PLATEAU_PARAMS = tuple(p for p in inspect.signature(Plateau.__init__).parameters if p != "self")

# torch's own text for the deprecated step(epoch), with a fallback for releases that rename it
_EPOCH_DEPRECATION = getattr(torch.optim.lr_scheduler, "EPOCH_DEPRECATION_WARNING",
                             "The epoch parameter in `scheduler.step()` is deprecated; call `scheduler.step()`.")


def _plain(value: Any) -> Any:
    """Profile parameters as plain Python (numpy arrays and scalars become lists and floats)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    return value


def _per_group(name: str, value: Any, n: int) -> tuple[list[Any], list[str]]:
    """A scalar or a list with one entry per parameter group, as n values and their names for messages."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (numbers.Real, Sequence, np.ndarray, torch.Tensor)):
        raise ValueError(f"{name} must be a number or a list with one number per parameter group, got {_show(value)}")
    if isinstance(value, torch.Tensor) and value.ndim == 0:
        value = float(value)
    if isinstance(value, numbers.Real):
        return [value] * n, [name] * n
    values = list(value)
    if len(values) != n:
        raise ValueError(f"{name} has {len(values)} entries but the optimizer has {n} parameter groups: {values!r}")
    return values, [f"{name}[{i}]" for i in range(n)]


def _group_peak(group: dict[str, Any], i: int) -> float:
    return _check_lr(f"param_groups[{i}]['lr']", group["initial_lr"] if "initial_lr" in group else group["lr"])


def _peaks(groups: list[dict[str, Any]], peak_lr: Any, resuming: bool) -> list[float]:
    """Each group's peak: ``peak_lr`` (scalar or per group) if given, else its ``initial_lr``, else its ``lr``."""
    if peak_lr is not None:
        values, names = _per_group("peak_lr", peak_lr, len(groups))
        return [_check_lr(name, v) for name, v in zip(names, values)]
    if resuming:
        missing = [i for i, g in enumerate(groups) if "initial_lr" not in g]
        if missing:
            raise ValueError(f"last_epoch >= 0 resumes a run: parameter group {missing[0]} has no 'initial_lr' (its "
                             "peak); load the optimizer's state first, or pass peak_lr=")
    return [_group_peak(g, i) for i, g in enumerate(groups)]


def _floors(min_lr: Any, min_lr_ratio: Any, peaks: list[float]) -> list[float]:
    """Each group's floor: ``min_lr`` (scalar or per group) or ``min_lr_ratio`` x its peak; in [0, peak]."""
    if min_lr is not None and min_lr_ratio is not None:
        raise ValueError(f"give min_lr ({min_lr!r}) or min_lr_ratio ({min_lr_ratio!r}), not both")
    n = len(peaks)
    if min_lr_ratio is not None:
        values, names = _per_group("min_lr_ratio", min_lr_ratio, n)
        return [_check_fraction(name, v, hi_open=False) * p for name, v, p in zip(names, values, peaks)]
    return _lrs_below_peaks("min_lr", 0.0 if min_lr is None else min_lr, peaks)


def _starts(warmup_start_lr: Any, peaks: list[float]) -> list[float | None]:
    """Each group's warmup start LR (scalar or per group), in [0, peak]; None for each when not given."""
    if warmup_start_lr is None:
        return [None] * len(peaks)
    return list(_lrs_below_peaks("warmup_start_lr", warmup_start_lr, peaks))


def _lrs_below_peaks(what: str, value: Any, peaks: list[float]) -> list[float]:
    """``value`` (scalar or one per group) checked as an LR and <= each group's peak."""
    values, names = _per_group(what, value, len(peaks))
    out = []
    for name, v, peak in zip(names, values, peaks):
        x = _check_lr(name, v)
        if x > peak:
            raise ValueError(f"{name} ({v!r}) must be <= the parameter group's peak lr ({peak!r})")
        out.append(x)
    return out


def _write(group: dict[str, Any], key: str, value: float) -> None:
    current = group[key]
    if isinstance(current, torch.Tensor):  # a tensor LR (compiled optimizer steps) is filled in place
        current.fill_(value)
    else:
        group[key] = value


def _new_group_floor(config: dict[str, Any], peak: float, i: int) -> float:
    """The floor of a parameter group added after construction (see the class docstring)."""
    if config["min_lr_ratio"] is not None and isinstance(config["min_lr_ratio"], numbers.Real):
        return float(config["min_lr_ratio"]) * peak
    spec = config["min_lr"]
    if spec is None or not isinstance(spec, numbers.Real):
        return 0.0
    if float(spec) > peak:
        raise ValueError(f"parameter group {i} was added with lr {peak!r}, below min_lr ({spec!r}); give it an lr "
                         ">= min_lr")
    return float(spec)


class _StepWatch:
    """Remembers whether the optimizer has stepped, through torch's public step hook (removed after it fires)."""

    def __init__(self, optimizer: Optimizer) -> None:
        self.stepped = False
        ref = weakref.ref(self)

        def hook(opt: Optimizer, args: Any, kwargs: Any) -> None:
            me = ref()
            if me is not None:
                me.stepped = True
                me.handle.remove()

        # A wrapper that is an Optimizer without one's state (accelerate's AcceleratedOptimizer, as Trainer's
        # create_scheduler receives it) steps the optimizer it wraps: watch that one.
        inner = optimizer
        while isinstance(getattr(inner, "optimizer", None), Optimizer):
            inner = inner.optimizer
        self.handle = inner.register_step_post_hook(hook)


class BudgetScheduler(LRScheduler):
    """A budget-aware LR scheduler for any ``torch.optim`` optimizer, in closed form.

    Each parameter group has its own peak: ``peak_lr`` if given (one value, or one per group), else the group's
    ``initial_lr`` if present, else its ``lr`` at construction. At construction the optimizer's LRs are set to the
    schedule's step-0 value (as every torch scheduler does), so the first ``optimizer.step()`` runs at ``lr(0)``
    (``peak / warmup_steps`` with warmup). Each ``step()`` moves to the next step; steps past ``total_steps`` hold
    the end value.

    Args:
        optimizer: the optimizer whose parameter groups are driven.
        profile: a schedule name from :func:`budgetsched.available` (default ``"rex"``), or a callable m(z).
            ``"plateau"`` returns a :class:`PlateauScheduler` instead (see there).
        total_steps: T, the number of ``step()`` calls of this run's budget.
        warmup_steps: W, linear warmup to the peak over the first W steps (exclusive with ``warmup_fraction``).
        min_lr: the floor the profile decays to: one float for every group, or a list with one per group.
        sampling: sampling rate (see :mod:`budgetsched.sampling`); default every step (``step``: its milestones).
        peak_lr: the peak LR: one float for every group, or a list with one per group (default: as above).
        warmup_fraction: the warmup as a fraction f of the budget, W = ceil(f T) (see :class:`budgetsched.Schedule`).
        warmup_start_lr: the LR of step 0 when warming up (one float, or one per group); default peak / W.
        min_lr_ratio: the floor as a fraction of each group's peak (exclusive with ``min_lr``).
        cycle_momentum: for ``onecycle``, also drive SGD's ``momentum`` / Adam's ``betas[0]`` (default True).
        last_epoch: torch's resume argument: -1 (default) starts a run; k >= 0 continues one whose last step was
            k (each group then needs its ``initial_lr``, restored with the optimizer's state, or ``peak_lr``).
        **params: the profile's parameters (e.g. ``gamma=-3`` for ``exp``, ``weighting="adam"`` for ``refined``).

    A parameter group added to the optimizer after construction (e.g. progressive unfreezing) is scheduled from
    the next ``step()`` on with its own LR (``initial_lr`` if set) as its peak, at the run's current progress; its
    floor is ``min_lr_ratio`` x that peak, or ``min_lr`` when that was one number, else 0. A warning is logged.
    """

    def __new__(cls, optimizer: Any = None, profile: Any = "rex", *args: Any, **kwargs: Any) -> Any:
        # The thin constructor for plateau: BudgetScheduler(optimizer, "plateau", ...) is a PlateauScheduler.
        if cls is BudgetScheduler and isinstance(profile, str) and canonical_name(profile) == "plateau":
            return _plateau_scheduler(optimizer, *args, **kwargs)
        return super().__new__(cls)

    def __init__(
        self,
        optimizer: Optimizer,
        profile: str | Callable[[Any], Any] = "rex",
        total_steps: int | None = None,
        warmup_steps: int | None = None,
        min_lr: float | Sequence[float] | None = None,
        sampling: str | Sequence[float] | Sampling | None = None,
        *,
        peak_lr: float | Sequence[float] | None = None,
        warmup_fraction: float | None = None,
        warmup_start_lr: float | Sequence[float] | None = None,
        min_lr_ratio: float | Sequence[float] | None = None,
        cycle_momentum: bool = True,
        last_epoch: int = -1,
        **params: Any,
    ) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(optimizer).__name__} is not a torch.optim.Optimizer")
        if total_steps is None:
            raise ValueError("total_steps is required (the number of step() calls of this run's budget)")
        last_epoch = _check_int("last_epoch", last_epoch, -1)
        groups = optimizer.param_groups
        peaks = _peaks(groups, peak_lr, resuming=last_epoch >= 0)
        config = {"profile": profile if callable(profile) else canonical_name(profile), "params": dict(params),
                  "sampling": sampling, "warmup_steps": warmup_steps, "warmup_fraction": warmup_fraction,
                  "initial_total_steps": total_steps, "cycle_momentum": bool(cycle_momentum),
                  "min_lr": _plain(min_lr), "min_lr_ratio": _plain(min_lr_ratio),
                  "warmup_start_lr": _plain(warmup_start_lr)}
        floors = _floors(min_lr, min_lr_ratio, peaks)
        starts = _starts(warmup_start_lr, peaks)
        # Everything is validated and built before the optimizer is touched.
        built = self._build(config, peaks, floors, starts, [], groups)
        for group, peak in zip(groups, peaks):
            group.setdefault("initial_lr", peak)
        self._changes: list[tuple[int, int, int | None, list[float] | None]] = []
        self._install(config, built)
        self._watch = _StepWatch(optimizer)
        super().__init__(optimizer, last_epoch)  # torch's bookkeeping, then the initial step through step()
        self.base_lrs = list(self._peaks)

    def __getstate__(self) -> dict[str, Any]:  # picklable like torch's own schedulers (the hook is re-registered)
        state = dict(self.__dict__)
        state["_watch"] = self._watch.stepped
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        stepped = state.pop("_watch")
        self.__dict__.update(state)
        self._watch = _StepWatch(self.optimizer)
        self._watch.stepped = stepped

    # -- building --------------------------------------------------------------------------------------------------
    @staticmethod
    def _build(config: dict[str, Any], peaks: list[float], floors: list[float], starts: list[float | None],
               changes: Sequence[tuple[int, int, int | None, list[float] | None]],
               groups: list[dict[str, Any]]) -> dict[str, Any]:
        """Validate a configuration and build one Schedule per group with the budget history (touches nothing)."""
        base = Schedule(config["profile"], config["initial_total_steps"], peaks[0], sampling=config["sampling"],
                        warmup_steps=config["warmup_steps"], warmup_fraction=config["warmup_fraction"],
                        warmup_start_lr=starts[0], min_lr=floors[0], **config["params"])
        schedules = [BudgetScheduler._group_schedule(base, i, peak, floor, start, changes)
                     for i, (peak, floor, start) in enumerate(zip(peaks, floors, starts))]
        keys = None
        if base._mom is not None and config["cycle_momentum"]:
            keys = [BudgetScheduler._momentum_key(g, i) for i, g in enumerate(groups)]
        return {"base": base, "schedules": schedules, "peaks": list(peaks), "floors": list(floors),
                "starts": list(starts), "momentum_keys": keys}

    @staticmethod
    def _group_schedule(base: Schedule, i: int, peak: float, floor: float, start: float | None,
                        changes: Sequence[tuple[int, int, int | None, list[float] | None]]) -> Schedule:
        s = base._derive(peak, floor, start) if i else base
        for n, (at, total, rewarm_steps, rewarm_peaks) in enumerate(changes):
            p = rewarm_peaks[i] if rewarm_peaks is not None and i < len(rewarm_peaks) else None
            s = s._rebudget(total, at, rewarm_steps, p, warn=False)
        return s

    @staticmethod
    def _momentum_key(group: dict[str, Any], i: int) -> str:
        if "betas" in group:
            return "betas"
        if "momentum" in group:
            return "momentum"
        raise ValueError(
            f"'onecycle' drives momentum, but parameter group {i} of the optimizer has neither 'momentum' (SGD, "
            f"RMSprop) nor 'betas' (Adam, AdamW); its keys: {sorted(group)}. Pass cycle_momentum=False to leave "
            "momentum alone")

    def _install(self, config: dict[str, Any], built: dict[str, Any]) -> None:
        self._config = config
        self._base: Schedule = built["base"]
        self._schedules: list[Schedule] = built["schedules"]
        self._peaks: list[float] = built["peaks"]
        self.min_lrs: list[float] = built["floors"]
        self._start_lrs: list[float | None] = built["starts"]
        self._momentum_keys: list[str] | None = built["momentum_keys"]
        self._lead = self._schedules[0]
        # per phase, per group: the (a, b) of lr = a * w0 + b * w1
        self._coefs = list(zip(*[s._coefs for s in self._schedules]))
        self.total_steps: int = self._lead.total_steps

    def _adopt(self, groups: list[dict[str, Any]]) -> None:
        """Schedule parameter groups added after construction, each with its own LR as peak."""
        for i in range(len(self._peaks), len(groups)):
            g = groups[i]
            peak = _group_peak(g, i)
            floor = _new_group_floor(self._config, peak, i)
            start = self._config["warmup_start_lr"]
            start = float(start) if isinstance(start, numbers.Real) and float(start) <= peak else None
            key = self._momentum_key(g, i) if self._momentum_keys is not None else None
            s = self._group_schedule(self._base, i, peak, floor, start, self._changes)
            g.setdefault("initial_lr", peak)
            self._schedules.append(s)
            self._peaks.append(peak)
            self.min_lrs.append(floor)
            self._start_lrs.append(start)
            self.base_lrs.append(peak)
            if key is not None:
                self._momentum_keys.append(key)
            logger.warning("budgetsched: parameter group %d was added after the scheduler was built; from step %d "
                           "it follows the schedule with its lr %g as peak and floor %g", i, self.last_epoch, peak, floor)
        self._coefs = list(zip(*[s._coefs for s in self._schedules]))

    # -- the torch contract ----------------------------------------------------------------------------------------
    def _lrs_at(self, t: int) -> list[float]:
        k, w0, w1 = self._lead._locate(t)
        return [a * w0 + b * w1 for a, b in self._coefs[k]]

    def get_lr(self) -> list[float]:
        """The LR of every parameter group at step ``last_epoch`` (closed form; sets nothing)."""
        return self._lrs_at(max(self.last_epoch, 0))

    _get_closed_form_lr = get_lr

    def _apply(self, t: int) -> None:
        """The one place that writes to the optimizer: every group's LR (and onecycle's momentum) at step t."""
        groups = self.optimizer.param_groups
        if len(groups) != len(self._peaks):
            self._adopt(groups)
        starts = self._lead._starts  # Schedule._locate, inlined: this runs once per optimizer step
        k = len(starts) - 1
        if t < starts[k]:
            k = bisect.bisect_right(starts, t) - 1
        w0, w1 = self._lead._evals[k](t)
        lrs = [a * w0 + b * w1 for a, b in self._coefs[k]]
        for group, lr in zip(groups, lrs):
            if type(group["lr"]) is float:
                group["lr"] = lr
            else:
                _write(group, "lr", lr)
        if self._momentum_keys is not None:
            m = self._lead._scalar_momentum(t)
            for group, key in zip(groups, self._momentum_keys):
                if key == "betas":
                    group["betas"] = (m, *tuple(group["betas"])[1:])
                else:
                    _write(group, "momentum", m)
        self._last_lr = lrs

    def step(self, epoch: int | None = None) -> None:  # type: ignore[override]
        """Move to the next step and set every group's LR (and onecycle's momentum) from the closed form.

        ``step(epoch)`` (deprecated in torch, still used by ``SequentialLR`` before torch 2.9 at its milestones)
        jumps to step ``epoch``, as torch's closed-form schedulers do.
        """
        if epoch is not None:
            if isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral):
                raise ValueError(f"step() takes a metric only for the 'plateau' schedule, this one is "
                                 f"{self._profile_name()!r}; got metric={_show(epoch)} (step(epoch) takes an integer)")
            epoch = _check_int("epoch", epoch, 0)
            warnings.warn(_EPOCH_DEPRECATION, UserWarning, stacklevel=2)
        if self._step_count == 1 and not self._watch.stepped:
            warnings.warn("lr_scheduler.step() was called before optimizer.step(): the first LR of the schedule "
                          "was skipped. Call optimizer.step() before scheduler.step().", UserWarning, stacklevel=2)
        self._step_count += 1
        self._update_lr(epoch)

    def _update_lr(self, epoch: int | None = None) -> None:
        # torch >= 2.9's SequentialLR calls this directly (``_update_lr(0)``) at a milestone.
        t = self.last_epoch + 1 if epoch is None else int(epoch)
        self.last_epoch = t
        self._apply(t)

    def _profile_name(self) -> str:
        p = self._config["profile"]
        return p if isinstance(p, str) else getattr(p, "__name__", "custom")

    # -- budget changes --------------------------------------------------------------------------------------------
    def set_total_steps(self, total_steps: int, *, rewarm_steps: int | None = None,
                        rewarm_peak: float | Sequence[float] | None = None) -> None:
        """Change the budget to ``total_steps`` from the current step on, with no LR jump.

        Rule (:meth:`budgetsched.Schedule.with_budget`): re-map the remaining progress, so the LR is continuous at
        the current step and reaches the end value at the new total. Valid after :meth:`load_state_dict` too, and
        then the new budget wins. The optimizer's LRs are set to the (unchanged) LR of the current step.

        Continuing a finished run keeps the end value (a warning is logged); ``rewarm_steps=K`` re-warms instead:
        from the current LR up to ``rewarm_peak`` (one float, one per group, or default each group's peak) over K
        steps, then the profile from its start down to the floor at ``total_steps``.
        """
        at = max(self.last_epoch, 0)
        peaks = None
        if rewarm_peak is not None:
            values, names = _per_group("rewarm_peak", rewarm_peak, len(self._peaks))
            peaks = [_check_lr(name, v) for name, v in zip(names, values)]
        new = [s._rebudget(total_steps, at, rewarm_steps, None if peaks is None else peaks[i], warn=i == 0)
               for i, s in enumerate(self._schedules)]
        self._changes.append((at, int(total_steps), None if rewarm_steps is None else int(rewarm_steps), peaks))
        self._schedules = new
        self._lead = new[0]
        self._coefs = list(zip(*[s._coefs for s in new]))
        self.total_steps = self._lead.total_steps
        if self.last_epoch >= 0:  # not while waiting inside a SequentialLR (last_epoch -1 until its milestone)
            self._apply(at)

    @property
    def budget_changes(self) -> list[tuple]:
        """Every budget change so far, oldest first: ``(at_step, new_total_steps)``, plus
        ``(rewarm_steps, rewarm_peaks)`` for a re-warm."""
        return [(a, t) if k is None else (a, t, k, p) for a, t, k, p in self._changes]

    @property
    def schedule(self) -> Schedule:
        """The :class:`budgetsched.Schedule` of the first parameter group (see :attr:`schedules`)."""
        return self._lead

    @property
    def schedules(self) -> list[Schedule]:
        """One :class:`budgetsched.Schedule` per parameter group, with the budget history."""
        return list(self._schedules)

    # -- checkpoints -----------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue identically, as plain Python (loads with ``weights_only=True``):
        the step counter, the budget history, the per-group peaks and floors and the configuration."""
        config = self._config
        profile = config["profile"]
        return {
            "last_epoch": self.last_epoch,
            "_step_count": self._step_count,
            "_last_lr": [float(x) for x in self._last_lr],
            "base_lrs": [float(b) for b in self.base_lrs],
            "peaks": list(self._peaks),
            "min_lrs": list(self.min_lrs),
            "warmup_start_lrs": list(self._start_lrs),
            "profile": profile if isinstance(profile, str) else None,
            "params": {k: _plain(v) for k, v in config["params"].items()},
            "sampling": plain_spec(config["sampling"]),  # plain, so torch.load(weights_only=True) reads it
            "warmup_steps": config["warmup_steps"],
            "warmup_fraction": config["warmup_fraction"],
            "initial_total_steps": config["initial_total_steps"],
            "total_steps": self.total_steps,
            "budget_changes": [[a, t, k, p] for a, t, k, p in self._changes],
            "cycle_momentum": config["cycle_momentum"],
            "min_lr": config["min_lr"],
            "min_lr_ratio": config["min_lr_ratio"],
            "warmup_start_lr": config["warmup_start_lr"],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`: the saved run (its budget history included) continues identically.

        As every torch scheduler, this restores the scheduler's own state and never writes to the optimizer (load
        the optimizer's state too, as Hugging Face and Lightning do). The saved budget is restored; call
        :meth:`set_total_steps` afterwards to change it (that call wins). If this scheduler was built with another
        ``total_steps`` than the saved run's, a warning says so.
        """
        state = state_dict
        required = ("last_epoch", "peaks", "min_lrs", "profile", "params", "sampling", "warmup_steps",
                    "initial_total_steps", "budget_changes")
        missing = [k for k in required if k not in state]
        if missing:
            raise ValueError(f"not a BudgetScheduler state: missing {', '.join(missing)}")
        if state.get("plateau") is not None or state["profile"] == "plateau":
            raise ValueError("this is a plateau scheduler's state: load it into a PlateauScheduler "
                             "(BudgetScheduler(optimizer, 'plateau', ...))")
        n = len(state["peaks"])
        if n != len(self._peaks):
            raise ValueError(f"the state has {n} parameter groups, this scheduler has {len(self._peaks)}")
        profile = state["profile"] if state["profile"] is not None else self._config["profile"]
        config = {"profile": profile, "params": dict(state["params"]), "sampling": state["sampling"],
                  "warmup_steps": state["warmup_steps"], "warmup_fraction": state.get("warmup_fraction"),
                  "initial_total_steps": state["initial_total_steps"],
                  "cycle_momentum": state.get("cycle_momentum", True), "min_lr": state.get("min_lr"),
                  "min_lr_ratio": state.get("min_lr_ratio"), "warmup_start_lr": state.get("warmup_start_lr")}
        if config["warmup_steps"] == 0 and config["warmup_fraction"] is None:
            config["warmup_steps"] = None
        changes = [(int(c[0]), int(c[1]), None if len(c) < 3 or c[2] is None else int(c[2]),
                    None if len(c) < 4 or c[3] is None else [float(p) for p in c[3]]) for c in state["budget_changes"]]
        peaks = [float(p) for p in state["peaks"]]
        starts = list(state.get("warmup_start_lrs", [None] * n))
        built = self._build(config, peaks, [float(f) for f in state["min_lrs"]], starts, changes,
                            self.optimizer.param_groups[:n])
        mine = self.total_steps
        # Nothing above wrote to self: now install. The optimizer is not touched.
        self._changes = changes
        self._install(config, built)
        self.base_lrs = [float(b) for b in state.get("base_lrs", peaks)]
        self.last_epoch = int(state["last_epoch"])
        self._step_count = int(state.get("_step_count", self.last_epoch + 1))
        self._last_lr = list(state.get("_last_lr", self._lrs_at(max(self.last_epoch, 0))))
        if mine != self.total_steps:
            warnings.warn(f"load_state_dict restored the saved budget total_steps={self.total_steps} over this "
                          f"scheduler's total_steps={mine}; call set_total_steps({mine}) after loading to use it",
                          UserWarning, stacklevel=2)


# Introspection (help(), the vocabulary test, IDEs) shows the constructor's arguments, not __new__'s pass-through.
_init_sig = inspect.signature(BudgetScheduler.__init__)
BudgetScheduler.__signature__ = _init_sig.replace(parameters=list(_init_sig.parameters.values())[1:])  # type: ignore[attr-defined]


# -- plateau ----------------------------------------------------------------------------------------------------------

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
            warnings.warn(_EPOCH_DEPRECATION, UserWarning, stacklevel=2)
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


def _plateau_scheduler(optimizer: Any, total_steps: Any = None, warmup_steps: Any = None, min_lr: Any = None,
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

