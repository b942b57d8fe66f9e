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

* The function receives a :class:`~budgetsched.bench.engines.trainable.Trial` (``budgetsched.bench.Trial``): its config, its budget in steps (``total_steps``: the budget's fraction
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

from dataclasses import dataclass
from math import inf
from typing import Any, Callable, Mapping

#: What a training function receives: a ``budgetsched.bench.Trial``, built by the engine that runs it
#: (engines/trainable.py, a layer above this one, so it is named here, not imported).
Trial = Any

__all__ = ["trainable", "Trainable", "Diverged"]


class Diverged(Exception):
    """Raise it from a trainable to record the trial as diverged (e.g. the loss exploded)."""


@dataclass(frozen=True)
class Trainable:
    """A training function as a task of the harness (build it with :func:`trainable`)."""

    name: str
    fn: Callable[[Trial], Mapping[str, Any]]
    max_epochs: int
    steps_per_epoch: int
    metric_name: str = "metric"
    batchable: bool = False  # a user's loop is never stacked
    weight_decay: float = 0.0
    baseline: float | None = None  # a trivial predictor's test metric: the 0 of the report's normalised scores

    def __post_init__(self) -> None:
        if not callable(self.fn):
            raise ValueError(f"trainable {self.name!r}: fn must be callable, got {self.fn!r}")
        b = self.baseline
        if b is not None and (isinstance(b, bool) or not isinstance(b, (int, float)) or b != b or abs(b) == inf):
            raise ValueError(f"trainable {self.name!r}: baseline must be a finite number or None, got {b!r}")
        for f in ("max_epochs", "steps_per_epoch"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"trainable {self.name!r}: {f} must be an integer >= 1, got {v!r}")

    def __call__(self, trial: Trial) -> Mapping[str, Any]:
        return self.fn(trial)


def trainable(fn: Callable[[Trial], Mapping[str, Any]] | None = None, *, max_epochs: int | None = None,
              steps_per_epoch: int | None = None, max_steps: int | None = None, metric_name: str = "metric",
              name: str | None = None, baseline: float | None = None) -> Any:
    """Declare ``fn(trial) -> dict`` a trainable whose 100 % run is ``max_epochs`` x ``steps_per_epoch`` optimizer
    steps (or ``max_steps`` steps, one evaluation period). Use as ``@trainable(max_epochs=..., ...)``.

    ``baseline`` (optional): the test metric of a trivial predictor for your task (e.g. chance error); the report's
    normalised scores put it at 0 and the best schedule at 1. Without it, scores are normalised to the best.

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

    def wrap(f: Callable[[Trial], Mapping[str, Any]]) -> Trainable:
        return Trainable(name or getattr(f, "__name__", "trainable"), f, max_epochs, steps_per_epoch,  # type: ignore[arg-type]
                         metric_name, baseline=baseline)
    return wrap if fn is None else wrap(fn)
