"""The engine of ``@trainable`` tasks: one call of the user's training function per trial.

:class:`Trial` is the handle the function receives (its config, budget in steps, schedule, and the protocol's
optimizer and scheduler); :func:`run_trainable` seeds, calls, and turns what comes back (or what is raised) into a
``TrialResult``. The contract the user writes against is in :mod:`budgetsched.bench.tasks.custom`.

The harness holds the schedulers it hands out (:meth:`Trial.scheduler`), so a loop that forgets to step one is
seen, not reported as a result (issue 22's decision): a scheduler that never stepped fails the trial with a message
naming the cause (every step ran at the initial LR, so every schedule would report the same value); one that reached
another position than its plan (``total_steps`` optimizer steps, or the total after the loop's own budget changes)
is done, with the position reached in ``TrialResult.scheduler_steps`` for the store and the report to flag
(:func:`scheduler_check`).
"""
from __future__ import annotations

import math
import random
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Mapping

from budgetsched.bench.protocol.grid import TrialConfig
from budgetsched.bench.protocol.plan import PlannedTrial, as_planned
from budgetsched.bench.protocol.records import TrialResult
from budgetsched.bench.protocol.status import Status
from budgetsched.bench.tasks.custom import Diverged, Trainable

__all__ = ["Trial", "run_trainable"]


@dataclass
class Trial:
    """One trial of the grid, as the trainable sees it."""

    config: TrialConfig
    total_steps: int
    steps_per_epoch: int
    curves: dict[str, list[float]] = field(default_factory=dict)
    schedulers: list[Any] = field(default_factory=list, repr=False, compare=False)  # every scheduler handed out, to check after

    @classmethod
    def of(cls, planned: PlannedTrial) -> "Trial":
        """The handle of a planned trial (its run length as planned, never recomputed)."""
        return cls(planned.config, planned.total_steps, planned.steps_per_epoch)

    @property
    def lr(self) -> float:
        return self.config.lr

    @property
    def seed(self) -> int:
        return self.config.seed

    @property
    def budget(self) -> float:
        return self.config.budget

    @property
    def schedule_name(self) -> str:
        return self.config.schedule

    @property
    def optimizer_name(self) -> str:
        return self.config.optimizer

    @property
    def epochs(self) -> int:
        """Evaluation periods of this budget (the last may be partial)."""
        return -(-self.total_steps // self.steps_per_epoch)

    def schedule(self) -> Any:
        """The trial's :class:`budgetsched.Schedule` over ``total_steps`` (peak = the trial's LR)."""
        from budgetsched import Schedule

        if self.config.schedule == "plateau":
            raise ValueError("'plateau' decays on a metric: use trial.plateau() or trial.scheduler(optimizer)")
        return Schedule(self.config.schedule, self.total_steps, peak_lr=self.lr, **self.config.params)

    def plateau(self) -> Any:
        """The trial's :class:`budgetsched.Plateau` (plateau trials only; patience in evaluations)."""
        from budgetsched import Plateau

        if self.config.schedule != "plateau":
            raise ValueError(f"trial schedule is {self.config.schedule!r}, not 'plateau'")
        return Plateau(**self.config.params)

    def optimizer(self, params: Any, weight_decay: float = 0.0) -> Any:
        """The protocol's optimizer at the trial's LR: ``torch.optim.SGD(momentum=0.9)``, ``Adam`` or ``AdamW``."""
        from budgetsched.bench.engines.optim import get_optimizer

        return get_optimizer(self.config.optimizer).torch_optimizer(params, self.lr, weight_decay)

    def scheduler(self, optimizer: Any, **kwargs: Any) -> Any:
        """A :class:`budgetsched.torch.BudgetScheduler` running the trial's schedule over ``total_steps`` on
        ``optimizer`` (call ``step()`` after each ``optimizer.step()``), or for plateau trials a
        ``PlateauScheduler`` (call ``step(validation_loss)`` once per evaluation)."""
        from budgetsched.torch import BudgetScheduler, PlateauScheduler

        if self.config.schedule == "plateau":
            sched = PlateauScheduler(optimizer, peak_lr=self.lr, **{**self.config.params, **kwargs})
        else:
            sched = BudgetScheduler(optimizer, self.config.schedule, total_steps=self.total_steps, peak_lr=self.lr,
                                    **{**self.config.params, **kwargs})
        self.schedulers.append(sched)
        return sched

    def report(self, epoch: int | None = None, step: int | None = None, **metrics: float) -> None:
        """Record one point of the trial's curves (e.g. ``epoch=3, train_loss=0.4, val_metric=12.5, lr=0.01``)."""
        point = {**({"epoch": epoch} if epoch is not None else {}), **({"step": step} if step is not None else {}),
                 **metrics}
        for k, v in point.items():
            try:
                value = float(v)
            except (TypeError, ValueError):
                raise ValueError(f"trial.report: {k} must be a number, got {v!r}") from None
            self.curves.setdefault(str(k), []).append(value)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2 ** 32)
    except ImportError:
        pass
    import torch

    torch.manual_seed(seed)


def _number(out: Mapping[str, Any], key: str, required: bool) -> float | None:
    if key not in out or out[key] is None:
        if required:
            raise ValueError(f"the trainable returned no {key!r} (it must return val_metric and test_metric)")
        return None
    try:
        return float(out[key])
    except (TypeError, ValueError):
        raise ValueError(f"the trainable returned {key}={out[key]!r}, not a number") from None


class SchedulerNotStepped(RuntimeError):
    """The trial's scheduler was never stepped: its result would be the same for every schedule."""


def scheduler_check(trial: Trial) -> int | None:
    """The position the trial's schedulers reached (the furthest, in scheduler steps), or None when the trainable
    built none with :meth:`Trial.scheduler` (it may use :meth:`Trial.schedule` itself: nothing to check).

    Raises :class:`SchedulerNotStepped` when no scheduler it built was ever stepped. A budget scheduler's position
    is its ``last_epoch`` (0 after construction; one per ``step()``), planned to reach ``total_steps``; a plateau
    scheduler steps once per evaluation (``step(val_loss)``)."""
    if not trial.schedulers:
        return None
    reached = max(max(int(s.last_epoch), 0) for s in trial.schedulers)
    if reached == 0:
        plateau = trial.config.schedule == "plateau"
        how = ("call sched.step(validation_loss) once per evaluation" if plateau else
               "call sched.step() after each optimizer.step()")
        raise SchedulerNotStepped(
            f"the scheduler from trial.scheduler() was never stepped: every step ran at the initial LR "
            f"{trial.lr:g}, so every schedule would report the same result; {how}")
    return reached


def planned_scheduler_steps(trial: Trial) -> int | None:
    """The position a budget scheduler is planned to reach: ``total_steps``, or its total after the loop's own
    budget changes (``set_total_steps``); None for plateau (it steps per evaluation, at the loop's cadence)."""
    if trial.config.schedule == "plateau" or not trial.schedulers:
        return None
    changed = [s for s in trial.schedulers if getattr(s, "budget_changes", None)]
    return int(changed[-1].total_steps) if changed else trial.total_steps


def run_trainable(trial: TrialConfig | PlannedTrial, task: Trainable) -> Any:
    """Run one planned trial (or a config, planned here) of a trainable and return its ``TrialResult`` (never
    raises for the trial's own failure)."""
    planned = as_planned(trial, task, 0)  # a trainable declares its steps per epoch; it loads its own data
    config = planned.config
    trial = Trial.of(planned)
    t0 = time.perf_counter()

    def result(status: Status, metrics: tuple = (None,) * 4, error: str | None = None,
               steps: int | None = None, scheduler_steps: int | None = None) -> TrialResult:
        return TrialResult(status, *metrics, curves=trial.curves, steps=trial.total_steps if steps is None else steps,
                           wall_time=time.perf_counter() - t0, error=error, scheduler_steps=scheduler_steps)
    try:
        _seed_everything(config.seed)
        out = task.fn(trial)
        if not isinstance(out, Mapping):
            raise ValueError(f"the trainable must return a dict with val_metric and test_metric, "
                             f"got {type(out).__name__}")
        val_metric, test_metric = _number(out, "val_metric", True), _number(out, "test_metric", True)
        val_loss, test_loss = _number(out, "val_loss", False), _number(out, "test_loss", False)
        steps = out.get("steps")
        steps = None if steps is None else int(steps)
        if not math.isfinite(val_metric):  # type: ignore[arg-type]
            return result(Status.DIVERGED, steps=steps)
        reached = scheduler_check(trial)  # raises when it never stepped: the trial fails, naming why
        planned = planned_scheduler_steps(trial)
        off = None if reached is None or planned is None or reached == planned else reached
        return result(Status.DONE, (val_loss, val_metric, test_loss, test_metric), steps=steps, scheduler_steps=off)
    except Diverged as e:
        return result(Status.DIVERGED, error=str(e) or None)
    except SchedulerNotStepped as e:  # the loop's mistake, not a line of it: no traceback position
        return result(Status.FAILED, error=f"{type(e).__name__}: {e}", steps=0)
    except Exception as e:  # one failing trial never stops the study
        where = traceback.extract_tb(e.__traceback__)[-1]
        return result(Status.FAILED, error=f"{type(e).__name__}: {e} (at {where.filename}:{where.lineno})", steps=0)
