""":class:`BudgetScheduler`: a ``torch.optim.lr_scheduler.LRScheduler`` over a :class:`budgetsched.GroupSchedule`.

The LR of every parameter group at schedule position t is the closed form ``a_i * w0(t) + b_i * w1(t)``
(:meth:`budgetsched.GroupSchedule.lrs`); t counts optimizer steps, tokens or microseconds of training
(:mod:`budgetsched.budget`). Every LR (and onecycle's momentum) it sets goes through one method, ``_apply``.
"""
from __future__ import annotations

import logging
import math
import numbers
import warnings
from typing import Any, Callable, Sequence

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from .._checks import _check_int, _check_lr, _show, check_keywords
from ..budget import TimeMeter, TokenMeter, make_meter, meter_for
from ..groups import GroupSchedule
from ..profiles import canonical_name
from ..sampling import Sampling, plain_spec
from ..schedule import Schedule
from .common import (EPOCH_DEPRECATION, _floors, _group_peak, _new_group_floor, _peaks, _per_group, _plain,
                     _plain_change, _starts, _StepWatch, _write)
from .plateau import PlateauScheduler, plateau_from_budget_args

logger = logging.getLogger("budgetsched")

#: BudgetScheduler's own keyword arguments (a misspelling of one is an error with a did-you-mean).
OWN_KEYWORDS = ("total_steps", "warmup_steps", "min_lr", "sampling", "peak_lr", "warmup_fraction", "warmup_start_lr",
                "min_lr_ratio", "cycle_momentum", "last_epoch", "time_budget", "token_budget", "clock",
                "startup_steps", "measure_steps")


def _is_plateau(profile: Any) -> bool:
    return isinstance(profile, str) and canonical_name(profile) == "plateau"


def make_scheduler(optimizer: Optimizer, profile: str | Callable[[Any], Any] = "rex", *args: Any,
                   **kwargs: Any) -> "BudgetScheduler | PlateauScheduler":
    """The scheduler for ``profile`` with :class:`BudgetScheduler`'s arguments: a :class:`PlateauScheduler` for
    ``"plateau"`` (its arguments checked against BudgetScheduler's vocabulary: no warmup or sampling, ``patience``
    required), else a :class:`BudgetScheduler`. ``BudgetScheduler(optimizer, "plateau", ...)`` calls this."""
    if _is_plateau(profile):
        return plateau_from_budget_args(optimizer, *args, **kwargs)
    return BudgetScheduler(optimizer, profile, *args, **kwargs)


class _PlateauRoute:
    """``BudgetScheduler(optimizer, "plateau", ...)`` returns :func:`make_scheduler`'s plateau scheduler. (Kept on
    a base class so that the class's signature is its ``__init__``'s.)"""

    def __new__(cls, optimizer: Any = None, profile: Any = "rex", *args: Any, **kwargs: Any) -> Any:
        if cls is BudgetScheduler and _is_plateau(profile):
            return plateau_from_budget_args(optimizer, *args, **kwargs)
        return super().__new__(cls)


class BudgetScheduler(_PlateauRoute, LRScheduler):
    """A budget-aware LR scheduler for any ``torch.optim`` optimizer, in closed form.

    Each parameter group has its own peak: ``peak_lr`` if given (one value, or one per group), else the group's
    ``initial_lr`` if present, else its ``lr`` at construction. At construction the optimizer's LRs are set to the
    schedule's step-0 value (as every torch scheduler does), so the first ``optimizer.step()`` runs at ``lr(0)``
    (``peak / warmup_steps`` with warmup). Each ``step()`` moves to the next step; steps past the budget hold the
    end value (and stepping past it logs one warning, logger ``"budgetsched"``).

    The budget, exactly one of:
        total_steps: T, the number of ``step()`` calls (optimizer steps) of this run's budget.
        time_budget: seconds of training, a number or ``"2h"`` / ``"90m"`` / ``"45s"``; read from ``clock`` (a
            zero-argument callable returning seconds, default ``time.monotonic``) at each ``step()``. The clock
            starts at the first ``step()`` after ``startup_steps`` (default 0) steps; :meth:`pause` excludes time
            (evaluation, checkpoints) until :meth:`resume` or the next ``step()``. With ``measure_steps=k`` and
            ``total_steps`` as a first guess, the schedule counts steps instead and every k steps re-budgets from
            the measured throughput (strategy "continue": no LR jump; reproducible from :attr:`budget_changes`).
        token_budget: tokens (or samples) of training; ``step(tokens=n)`` counts the n tokens of each optimizer
            step (with gradient accumulation: of all its micro-batches).

    Args:
        optimizer: the optimizer whose parameter groups are driven.
        profile: a schedule name from :func:`budgetsched.available` (default ``"rex"``), or a callable m(z).
            ``"plateau"`` returns a :class:`PlateauScheduler` instead (:func:`make_scheduler`).
        warmup_steps: W, linear warmup over the first W steps (step budgets only; exclusive with ``warmup_fraction``).
        min_lr: the floor the profile decays to: one float for every group, or a list with one per group.
        sampling: sampling rate (see :mod:`budgetsched.sampling`); default every step (``step``: its milestones).
        peak_lr: the peak LR: one float for every group, or a list with one per group (default: as above).
        warmup_fraction: the warmup as a fraction f of the budget, in every unit: W = ceil(f T).
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
        time_budget: float | str | None = None,
        token_budget: int | None = None,
        clock: Callable[[], float] | None = None,
        startup_steps: int = 0,
        measure_steps: int | None = None,
        **params: Any,
    ) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(optimizer).__name__} is not a torch.optim.Optimizer")
        check_keywords("BudgetScheduler", OWN_KEYWORDS, profile, params)
        meter = meter_for(total_steps, time_budget, token_budget, clock, startup_steps, measure_steps,
                                warmup_steps)
        if meter is not None and measure_steps is None:
            total_steps = meter.total
        last_epoch = _check_int("last_epoch", last_epoch, -1)
        if meter is not None and last_epoch != -1 and measure_steps is None:
            raise ValueError(f"last_epoch ({last_epoch}) resumes a step budget; a {meter.unit} budget resumes with "
                             "load_state_dict (its used amount is in the checkpoint)")
        groups = optimizer.param_groups
        restored = all("initial_lr" in g for g in groups)  # an optimizer state loaded before this scheduler
        replaced = [float(g["lr"]) for g in groups]  # the LRs this constructor overwrites
        peaks = _peaks(groups, peak_lr, resuming=last_epoch >= 0)
        config = {"profile": profile if callable(profile) else canonical_name(profile), "params": dict(params),
                  "sampling": sampling, "warmup_steps": warmup_steps, "warmup_fraction": warmup_fraction,
                  "initial_total_steps": total_steps, "cycle_momentum": bool(cycle_momentum),
                  "min_lr": _plain(min_lr), "min_lr_ratio": _plain(min_lr_ratio),
                  "warmup_start_lr": _plain(warmup_start_lr), "measure_steps": measure_steps}
        floors = _floors(min_lr, min_lr_ratio, peaks)
        starts = _starts(warmup_start_lr, peaks)
        # Everything is validated and built before the optimizer is touched.
        built = self._build(config, peaks, floors, starts, [], groups)
        for group, peak in zip(groups, peaks):
            group.setdefault("initial_lr", peak)
        self._meter: TimeMeter | TokenMeter | None = meter
        self._clock = clock
        self._pos = 0
        self._measured = (0, 0.0)  # (step, seconds used) at the last throughput estimate
        self._warned_past = False
        self._was_done = False
        self._install(config, built)
        self._watch = _StepWatch(optimizer)
        super().__init__(optimizer, last_epoch)  # torch's bookkeeping, then the initial step through step()
        self.base_lrs = list(self._peaks)
        self._replaced = replaced if restored else None
        if last_epoch >= 0 and restored and not _close(replaced, self._last_lr):
            logger.warning(
                "budgetsched: BudgetScheduler(..., last_epoch=%d) resumes a run, but the optimizer's restored LRs %s "
                "are not this schedule's LRs at step %d (%s): the checkpoint's run had another budget or schedule, "
                "and the LR jumps here. For a continuous change resume with load_state_dict(saved scheduler state) "
                "and then set_total_steps(new_total)", last_epoch, _fmt(replaced), self.last_epoch, _fmt(self._last_lr))

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
               changes: Sequence[Sequence[Any]], groups: list[dict[str, Any]]) -> dict[str, Any]:
        """Validate a configuration and build the group schedule with the budget history (touches nothing)."""
        base = Schedule(config["profile"], config["initial_total_steps"], peaks[0], sampling=config["sampling"],
                        warmup_steps=config["warmup_steps"], warmup_fraction=config["warmup_fraction"],
                        warmup_start_lr=starts[0], min_lr=floors[0], **config["params"])
        group = GroupSchedule.build(base, peaks, floors, starts).with_history(changes)
        keys = None
        if group.has_momentum and config["cycle_momentum"]:
            keys = [BudgetScheduler._momentum_key(g, i) for i, g in enumerate(groups)]
        return {"group": group, "peaks": list(peaks), "floors": list(floors), "starts": list(starts),
                "momentum_keys": keys}

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
        self._group: GroupSchedule = built["group"]
        self._peaks: list[float] = built["peaks"]
        self.min_lrs: list[float] = built["floors"]
        self._start_lrs: list[float | None] = built["starts"]
        self._momentum_keys: list[str] | None = built["momentum_keys"]
        self.total_steps: int = self._group.total_steps

    def _adopt(self, groups: list[dict[str, Any]]) -> None:
        """Schedule parameter groups added after construction, each with its own LR as peak."""
        for i in range(len(self._peaks), len(groups)):
            g = groups[i]
            peak = _group_peak(g, i)
            floor = _new_group_floor(self._config, peak, i)
            start = self._config["warmup_start_lr"]
            start = float(start) if isinstance(start, numbers.Real) and float(start) <= peak else None
            key = self._momentum_key(g, i) if self._momentum_keys is not None else None
            self._group = self._group.with_group(peak, floor, start)
            g.setdefault("initial_lr", peak)
            self._peaks.append(peak)
            self.min_lrs.append(floor)
            self._start_lrs.append(start)
            self.base_lrs.append(peak)
            if key is not None and self._momentum_keys is not None:
                self._momentum_keys.append(key)
            logger.warning("budgetsched: parameter group %d was added after the scheduler was built; from step %d "
                           "it follows the schedule with its lr %g as peak and floor %g", i, self.last_epoch, peak, floor)

    # -- the torch contract ----------------------------------------------------------------------------------------
    def _position(self) -> int:
        """The schedule position of the current step: the step (step budgets), or the tokens / microseconds used."""
        if self._meter is None or self._config.get("measure_steps") is not None:
            return max(self.last_epoch, 0)
        return self._pos

    def get_lr(self) -> list[float]:
        """The LR of every parameter group at the current step (closed form; sets nothing)."""
        return self._group.lrs(self._position())

    _get_closed_form_lr = get_lr

    def _apply(self, t: int) -> None:
        """The one place that writes to the optimizer: every group's LR (and onecycle's momentum) at position t."""
        groups = self.optimizer.param_groups
        if len(groups) != len(self._peaks):
            self._adopt(groups)
        lrs = self._group.lrs(t)
        for group, lr in zip(groups, lrs):
            if type(group["lr"]) is float:
                group["lr"] = lr
            else:
                _write(group, "lr", lr)
        if self._momentum_keys is not None:
            m = self._group.momentum(t)
            for group, key in zip(groups, self._momentum_keys):
                if key == "betas":
                    group["betas"] = (m, *tuple(group["betas"])[1:])
                else:
                    _write(group, "momentum", m)
        self._last_lr = lrs

    def step(self, epoch: int | None = None, *, tokens: int | None = None) -> None:  # type: ignore[override]
        """Move to the next step and set every group's LR (and onecycle's momentum) from the closed form.

        ``tokens=n`` (keyword-only; token budgets): the tokens this optimizer step consumed. ``step(epoch)``
        (deprecated in torch, still used by ``SequentialLR`` before torch 2.9 at its milestones) jumps to step
        ``epoch``, as torch's closed-form schedulers do (step budgets only).
        """
        unit = self.budget_unit
        if epoch is not None:
            if isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral):
                raise ValueError(f"step() takes a metric only for the 'plateau' schedule, this one is "
                                 f"{self._profile_name()!r}; got metric={_show(epoch)} (step(epoch) takes an integer)")
            epoch = _check_int("epoch", epoch, 0)
            if unit in ("tokens", "seconds") and self._config.get("measure_steps") is None:
                raise ValueError(f"step(epoch) jumps to a step; this scheduler's budget is in {unit}")
            warnings.warn(EPOCH_DEPRECATION, UserWarning, stacklevel=2)
        initial = self._step_count == 0  # torch's constructor steps once: position 0, no clock, no tokens
        if not initial:
            if unit == "tokens" and tokens is None:
                raise ValueError("this scheduler's budget is in tokens: call step(tokens=n) with the tokens of the "
                                 "optimizer step just done")
            if unit != "tokens" and tokens is not None:
                raise ValueError(f"tokens= counts a token budget; this scheduler's budget is in {unit}")
            self._warn_past_budget()
        if self._step_count == 1 and not self._watch.stepped:
            warnings.warn("lr_scheduler.step() was called before optimizer.step(): the first LR of the schedule "
                          "was skipped. Call optimizer.step() before scheduler.step().", UserWarning, stacklevel=2)
        self._step_count += 1
        self._tokens = None if initial else tokens
        self._update_lr(epoch)

    def _update_lr(self, epoch: int | None = None) -> None:
        # torch >= 2.9's SequentialLR calls this directly (``_update_lr(0)``) at a milestone.
        t = self.last_epoch + 1 if epoch is None else int(epoch)
        self.last_epoch = t
        meter, tokens = self._meter, getattr(self, "_tokens", None)
        self._tokens = None
        if meter is not None and self._step_count > 1:
            if isinstance(meter, TokenMeter):
                self._pos = meter.add(tokens or 0)
            else:
                self._pos = meter.tick()
                if self._config.get("measure_steps") is not None:
                    self._measure_throughput(t)
            self._was_done = meter.done  # read now: the step about to run starts after the deadline
        self._apply(self._position())

    def _warn_past_budget(self) -> None:
        """One warning (logger "budgetsched") when the optimizer has run a step past the budget. A time budget's
        last step overshoots its deadline by design: only a step started after the deadline counts."""
        if self._warned_past or self.last_epoch < 0:
            return
        past = self._was_done if self._meter is not None else self.last_epoch >= self.total_steps
        if past:
            self._warned_past = True
            logger.warning("budgetsched: stepped past the budget (%s): the optimizer ran a step after the budget was "
                           "used up, at the end LR %g; stop at scheduler.done, or give a larger budget with %s "
                           "(under a Hugging Face or Lightning trainer, budgetsched.integrations' BudgetCallback sets "
                           "it from the trainer's length)",
                           self._budget_text(), self._last_lr[0] if self._last_lr else float("nan"),
                           "set_total_steps(...)" if self.budget_unit == "steps" else "set_budget(...)")

    def _budget_text(self) -> str:
        if self._meter is None:
            return f"total_steps={self.total_steps}"
        return f"{self.budget_unit} budget {self._meter.budget:g}"

    def _measure_throughput(self, t: int) -> None:
        """Every ``measure_steps`` steps: the steps the rest of the time budget allows at the measured speed, set
        with the continue rule (no LR jump)."""
        meter = self._meter
        assert isinstance(meter, TimeMeter)
        k = int(self._config["measure_steps"])
        if not meter.running and meter.used == 0.0:
            return
        step0, used0 = self._measured
        if t - step0 < k:
            return
        used = meter.used
        self._measured = (t, used)
        per_step = (used - used0) / (t - step0)
        left = meter.budget - used
        if per_step <= 0 or left <= 0 or t >= self.total_steps:
            return
        estimate = t + max(1, math.ceil(left / per_step))
        if estimate != self.total_steps:
            self._group = self._group.with_budget(estimate, t, strategy="continue", warn=False)
            self.total_steps = self._group.total_steps

    def _profile_name(self) -> str:
        p = self._config["profile"]
        return p if isinstance(p, str) else getattr(p, "__name__", "custom")

    # -- budgets ---------------------------------------------------------------------------------------------------
    @property
    def budget_unit(self) -> str:
        """``"steps"``, ``"tokens"`` or ``"seconds"`` (the unit of the budget; a ``measure_steps`` run schedules in
        steps but its budget is seconds)."""
        return "steps" if self._meter is None else self._meter.unit

    @property
    def fraction_used(self) -> float:
        """The share of the budget used so far, in [0, 1], warmup included: steps done / total_steps, tokens used /
        token_budget, or training seconds / time_budget (read from the clock now). Not :meth:`Schedule.progress`,
        which is the profile's z after warmup."""
        if self._meter is not None:
            return self._meter.fraction_used
        return min(max(self.last_epoch, 0) / self.total_steps, 1.0)

    @property
    def done(self) -> bool:
        """Whether the budget is used up (a training loop stops here; a time budget's last step overshoots)."""
        if self._meter is not None:
            return self._meter.done
        return self.last_epoch >= self.total_steps

    @property
    def used(self) -> float:
        """The amount of the budget used, in its unit: steps done, tokens, or training seconds."""
        if self._meter is not None:
            return float(self._meter.used)
        return float(max(self.last_epoch, 0))

    def use_time_budget(self, time_budget: float | str, *, clock: Callable[[], float] | None = None,
                        startup_steps: int = 0) -> None:
        """Count this run's budget in seconds of training (``"2h"``, ``"90m"``, or a number): before the first step
        a step budget becomes a time budget (a trainer callback that knows the deadline calls this); a time budget
        that differs is changed by :meth:`set_budget` (default strategy). The warmup must be a ``warmup_fraction``."""
        if isinstance(self._meter, TimeMeter):
            if clock is not None:
                self._meter.clock = clock
                self._clock = clock
            if TimeMeter(time_budget).budget != self._meter.budget:
                self.set_budget(time_budget)
            return
        if self._meter is not None or self.last_epoch > 0 or self.budget_changes:
            raise ValueError(f"use_time_budget({time_budget!r}): a time budget replaces a {self.budget_unit} budget "
                             f"only before the first step; this run is at step {self.last_epoch}")
        if self._config["warmup_steps"]:
            raise ValueError(f"this scheduler's warmup is {self._config['warmup_steps']} steps; a time budget's "
                             "warmup is a fraction of it: build the scheduler with warmup_fraction=")
        meter = TimeMeter(time_budget, clock, startup_steps)
        config = dict(self._config, initial_total_steps=meter.total, warmup_steps=None, measure_steps=None)
        built = self._build(config, list(self._peaks), list(self.min_lrs), list(self._start_lrs), [],
                            self.optimizer.param_groups[:len(self._peaks)])
        self._install(config, built)
        self._meter, self._clock, self._pos, self._was_done = meter, clock, 0, False
        self._apply(0)

    def pause(self) -> None:
        """Stop a time budget's clock (evaluation, checkpoints, anything that is not training) until :meth:`resume`
        or the next ``step()``. No-op for other units."""
        if isinstance(self._meter, TimeMeter):
            self._meter.pause()

    def resume(self) -> None:
        """Count a time budget's clock again from now (see :meth:`pause`); before the first step this starts it
        (a trainer whose own deadline counts from its start, as Lightning's ``max_time``)."""
        if isinstance(self._meter, TimeMeter):
            self._meter.resume()

    def set_total_steps(self, total_steps: int, *, strategy: str | None = None, rewarm_steps: int | None = None,
                        rewarm_peak: float | Sequence[float] | None = None) -> None:
        """Change a step budget to ``total_steps`` from the current step on, continued by ``strategy``.

        ``"auto"`` (default: :meth:`budgetsched.Schedule.default_strategy`), ``"continue"`` (no LR jump), ``"rewarm"``
        (also when ``rewarm_steps`` is given: up to ``rewarm_peak`` — one float, one per group, or each group's peak —
        over ``rewarm_steps``) or ``"extend"``: :meth:`budgetsched.Schedule.with_budget`'s rules; the strategy that ran
        is recorded (:attr:`budget_changes`). Valid after :meth:`load_state_dict` too, and then the new budget wins.
        The optimizer's LRs are set to the LR of the current step. A time or token budget changes with
        :meth:`set_budget`."""
        if self._meter is not None and self._config.get("measure_steps") is None:
            raise ValueError(f"set_total_steps changes a step budget; this scheduler's budget is in "
                             f"{self.budget_unit}: use set_budget(new_budget, strategy=...)")
        self._change_budget(total_steps, max(self.last_epoch, 0), strategy, rewarm_steps, rewarm_peak)

    def set_budget(self, budget: Any, *, strategy: str | None = None, rewarm: Any = None,
                   rewarm_peak: float | Sequence[float] | None = None) -> None:
        """Change the budget in its own unit: steps, tokens, or seconds (a number or ``"3h"``), from now on.

        The strategies of :meth:`set_total_steps`; ``rewarm`` is the re-warm's length in the budget's unit (steps,
        tokens, or a duration such as ``"10m"``).
        """
        meter = self._meter
        if meter is None:
            self.set_total_steps(budget, strategy=strategy, rewarm_steps=rewarm, rewarm_peak=rewarm_peak)
            return
        if self._config.get("measure_steps") is not None:
            meter.set_budget(budget)
            self._measured = (max(self.last_epoch, 0), meter.used)
            return
        old = meter.budget
        meter.set_budget(budget)
        try:
            ticks = meter.total
            k = None if rewarm is None else meter.parse(rewarm, "rewarm")
            self._change_budget(ticks, self._pos, strategy, k, rewarm_peak)
        except ValueError:
            meter.set_budget(old)
            raise
        self._warned_past = False

    def _change_budget(self, total: Any, at: int, strategy: str | None, rewarm_steps: Any, rewarm_peak: Any) -> None:
        peaks = None
        if rewarm_peak is not None:
            values, names = _per_group("rewarm_peak", rewarm_peak, len(self._peaks))
            peaks = [_check_lr(name, v) for name, v in zip(names, values)]
        self._group = self._group.with_budget(total, at, strategy=strategy, rewarm_steps=rewarm_steps,
                                              rewarm_peaks=peaks)
        self.total_steps = self._group.total_steps
        self._warned_past = False
        if self.last_epoch >= 0:  # not while waiting inside a SequentialLR (last_epoch -1 until its milestone)
            self._apply(self._position())

    @property
    def budget_changes(self) -> list[tuple[Any, ...]]:
        """Every budget change so far, oldest first, with the strategy that ran (a default ``"auto"`` is recorded as
        what it picked): ``(at, new_total)`` (continue), ``(at, new_total, rewarm_steps, rewarm_peaks)`` (rewarm) or
        ``(at, new_total, "extend")``, in the schedule's unit (steps, tokens, or microseconds of a time budget)."""
        return self._group.budget_changes

    @property
    def schedule(self) -> Schedule:
        """The :class:`budgetsched.Schedule` of the first parameter group (see :attr:`schedules`)."""
        return self._group.lead

    @property
    def schedules(self) -> list[Schedule]:
        """One :class:`budgetsched.Schedule` per parameter group, with the budget history."""
        return list(self._group.schedules)

    # -- checkpoints -----------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue identically, as plain Python (loads with ``weights_only=True``): the step
        counter, the budget history, the per-group peaks and floors, the configuration, and for a time or token
        budget the amount used (so a resumed run continues its clock)."""
        config = self._config
        profile = config["profile"]
        state = {
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
            "budget_changes": [_plain_change(c) for c in self.budget_changes],
            "cycle_momentum": config["cycle_momentum"],
            "min_lr": config["min_lr"],
            "min_lr_ratio": config["min_lr_ratio"],
            "warmup_start_lr": config["warmup_start_lr"],
        }
        if self._meter is not None:
            state.update(budget=self._meter.state_dict(), position=self._pos, measure_steps=config["measure_steps"],
                         measured=list(self._measured))
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`: the saved run (its budget history and used time or tokens included)
        continues identically; checkpoints of every earlier release load.

        As every torch scheduler, this restores the scheduler's own state and does not write to the optimizer (load
        the optimizer's state too, as Hugging Face and Lightning do), with one exception: when the optimizer held
        exactly the saved run's LRs before this scheduler was built (optimizer loaded first) and nothing moved them
        since, the constructor's step-0 LRs are replaced by the saved run's, through ``_apply``. The saved budget is restored; call
        :meth:`set_total_steps` (:meth:`set_budget`) afterwards to change it (that call wins). If this scheduler was
        built with another ``total_steps`` than the saved run's, a warning says so. A time budget's clock continues
        from its saved used time at the next ``step()``: the time between checkpoint and resume is not counted.
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
                  "min_lr_ratio": state.get("min_lr_ratio"), "warmup_start_lr": state.get("warmup_start_lr"),
                  "measure_steps": state.get("measure_steps")}
        if config["warmup_steps"] == 0 and config["warmup_fraction"] is None:
            config["warmup_steps"] = None
        peaks = [float(p) for p in state["peaks"]]
        starts = list(state.get("warmup_start_lrs", [None] * n))
        built = self._build(config, peaks, [float(f) for f in state["min_lrs"]], starts, state["budget_changes"],
                            self.optimizer.param_groups[:n])
        meter = None if state.get("budget") is None else make_meter(state["budget"], self._clock)
        mine = self.total_steps if self.budget_unit == (meter.unit if meter is not None else "steps") else None
        # Optimizer first, then this scheduler, then its state: the constructor overwrote the optimizer's restored
        # LRs with its step-0 LRs; put the restored run's back (through _apply) when nothing else has moved them.
        put_back = (self._step_count == 1 and getattr(self, "_replaced", None) is not None
                    and _close(self._replaced, state.get("_last_lr") or [])
                    and _close([float(g["lr"]) for g in self.optimizer.param_groups[:n]], self._last_lr))
        # Nothing above wrote to self: now install. The optimizer is not touched.
        self._install(config, built)
        self._meter = meter
        self._pos = int(state.get("position", 0))
        self._measured = tuple(state.get("measured", (0, 0.0)))  # type: ignore[assignment]
        self._warned_past = False
        self._was_done = meter is not None and meter.done
        self.base_lrs = [float(b) for b in state.get("base_lrs", peaks)]
        self.last_epoch = int(state["last_epoch"])
        self._step_count = int(state.get("_step_count", self.last_epoch + 1))
        self._last_lr = list(state.get("_last_lr", self.get_lr()))
        if put_back:
            self._apply(self._position())
        self._replaced = None
        if mine is not None and mine != self.total_steps:
            warnings.warn(f"load_state_dict restored the saved budget total_steps={self.total_steps} over this "
                          f"scheduler's total_steps={mine}; call set_total_steps({mine}) after loading to use it",
                          UserWarning, stacklevel=2)


def _close(a: Sequence[float], b: Sequence[float]) -> bool:
    return len(a) == len(b) > 0 and all(math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-15) for x, y in zip(a, b))


def _fmt(values: Sequence[float]) -> str:
    return "[" + ", ".join(f"{v:.6g}" for v in values) + "]"
