"""Your own training loop, run under the paper's protocol: a *trainable* function in the style of Ray Tune's.

Write ``train(trial) -> dict`` and decorate it with :func:`trainable`, giving the length of your 100 % run. The
harness calls it once per trial of the grid (schedule x optimizer x budget x LR x seed), stores every result in the
study's store (resumable; divergence and failures recorded) and reports and plots it like a built-in task::

    from budgetsched.bench import trainable

    @trainable(max_epochs=10, steps_per_epoch=50, metric_name="error %")
    def train(trial):
        model = make_model()                          # torch is already seeded with trial.seed
        opt = trial.optimizer(model.parameters())     # SGD(momentum=0.9) or Adam at the trial's LR
        sched = trial.scheduler(opt)                  # the trial's schedule over trial.total_steps steps
        for step in range(trial.total_steps):
            ...; opt.step(); sched.step()
            if (step + 1) % trial.steps_per_epoch == 0:
                trial.report(epoch=..., train_loss=..., val_metric=...)   # curves (optional)
        return {"val_metric": ..., "test_metric": ...}

    # budgetsched run --task my_module:train --schedules rex,linear --lrs 0.01,0.1 --store study.db

The contract:

* The function receives a :class:`Trial`: its config, its budget in steps (``total_steps``: the budget's fraction
  of ``max_epochs x steps_per_epoch``, rounded up; ``--budget-unit epochs`` rounds to whole epochs), its
  :class:`budgetsched.Schedule` (``trial.schedule()``), and helpers that build the protocol's optimizer and a
  :class:`budgetsched.torch.BudgetScheduler` (or ``PlateauScheduler``) for it. Before the call, Python's, NumPy's
  and torch's random generators are seeded with ``trial.seed``, so the trials of one seed share initial weights and
  data order if your code draws them from those generators.
* It returns a mapping with at least ``val_metric`` and ``test_metric`` (lower is better, as for tasks; select on
  validation, report test) and optionally ``val_loss``, ``test_loss`` and ``steps`` (optimizer steps taken).
* Divergence: return a non-finite ``val_metric``, or raise :class:`Diverged`. The trial is stored as ``diverged``.
* Any other exception fails the trial (stored as ``failed`` with its message; a rerun retries it); the rest of the
  study continues.
"""
from __future__ import annotations

import math
import random
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from budgetsched.bench.grid import TrialConfig
from budgetsched.bench.status import Status

__all__ = ["trainable", "Trainable", "Trial", "Diverged", "run_trainable"]


class Diverged(Exception):
    """Raise it from a trainable to record the trial as diverged (e.g. the loss exploded)."""


@dataclass(frozen=True)
class Trainable:
    """A training function as a task of the harness (build it with :func:`trainable`)."""

    name: str
    fn: Callable[["Trial"], Mapping[str, Any]]
    max_epochs: int
    steps_per_epoch: int
    metric_name: str = "metric"
    batchable: bool = False  # a user's loop is never stacked
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        if not callable(self.fn):
            raise ValueError(f"trainable {self.name!r}: fn must be callable, got {self.fn!r}")
        for f in ("max_epochs", "steps_per_epoch"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"trainable {self.name!r}: {f} must be an integer >= 1, got {v!r}")

    def __call__(self, trial: "Trial") -> Mapping[str, Any]:
        return self.fn(trial)


def trainable(fn: Callable[["Trial"], Mapping[str, Any]] | None = None, *, max_epochs: int | None = None,
              steps_per_epoch: int | None = None, max_steps: int | None = None, metric_name: str = "metric",
              name: str | None = None) -> Any:
    """Declare ``fn(trial) -> dict`` a trainable whose 100 % run is ``max_epochs`` x ``steps_per_epoch`` optimizer
    steps (or ``max_steps`` steps, one evaluation period). Use as ``@trainable(max_epochs=..., ...)``.

    Raises:
        ValueError: neither or both of (max_epochs, steps_per_epoch) and max_steps, or a bad value.
    """
    if max_steps is not None:
        if max_epochs is not None or steps_per_epoch is not None:
            raise ValueError("give max_steps, or max_epochs and steps_per_epoch, not both")
        max_epochs, steps_per_epoch = 1, max_steps
    elif max_epochs is None or steps_per_epoch is None:
        raise ValueError("a trainable needs the length of its 100 % run: max_epochs and steps_per_epoch, "
                         "or max_steps")

    def wrap(f: Callable[["Trial"], Mapping[str, Any]]) -> Trainable:
        return Trainable(name or getattr(f, "__name__", "trainable"), f, max_epochs, steps_per_epoch,  # type: ignore[arg-type]
                         metric_name)
    return wrap if fn is None else wrap(fn)


@dataclass
class Trial:
    """One trial of the grid, as the trainable sees it."""

    config: TrialConfig
    total_steps: int
    steps_per_epoch: int
    curves: dict[str, list[float]] = field(default_factory=dict)

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
        """The protocol's optimizer at the trial's LR: ``torch.optim.SGD(momentum=0.9)`` or ``Adam``."""
        from budgetsched.bench.optim import get_optimizer

        return get_optimizer(self.config.optimizer).torch_optimizer(params, self.lr, weight_decay)

    def scheduler(self, optimizer: Any, **kwargs: Any) -> Any:
        """A :class:`budgetsched.torch.BudgetScheduler` running the trial's schedule over ``total_steps`` on
        ``optimizer`` (call ``step()`` after each ``optimizer.step()``), or for plateau trials a
        ``PlateauScheduler`` (call ``step(validation_loss)`` once per evaluation)."""
        from budgetsched.torch import BudgetScheduler, PlateauScheduler

        if self.config.schedule == "plateau":
            return PlateauScheduler(optimizer, peak_lr=self.lr, **{**self.config.params, **kwargs})
        return BudgetScheduler(optimizer, self.config.schedule, total_steps=self.total_steps, peak_lr=self.lr,
                               **{**self.config.params, **kwargs})

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


def run_trainable(config: TrialConfig, task: Trainable) -> Any:
    """Run one trial of a trainable and return its ``TrialResult`` (never raises for the trial's own failure)."""
    from budgetsched.bench.train import TrialResult, steps_per_epoch

    spe = steps_per_epoch(task, 0)
    trial = Trial(config, config.total_steps(task.max_epochs, spe), spe)
    t0 = time.perf_counter()

    def result(status: Status, metrics: tuple = (None,) * 4, error: str | None = None,
               steps: int | None = None) -> TrialResult:
        return TrialResult(status, *metrics, curves=trial.curves, steps=trial.total_steps if steps is None else steps,
                           wall_time=time.perf_counter() - t0, error=error)
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
        return result(Status.DONE, (val_loss, val_metric, test_loss, test_metric), steps=steps)
    except Diverged as e:
        return result(Status.DIVERGED, error=str(e) or None)
    except Exception as e:  # one failing trial never stops the study
        where = traceback.extract_tb(e.__traceback__)[-1]
        return result(Status.FAILED, error=f"{type(e).__name__}: {e} (at {where.filename}:{where.lineno})", steps=0)
