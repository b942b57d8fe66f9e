"""The plan: how a budget becomes a run, computed once per trial (torch-free).

A trial's budget is a percent of its task's 100 % run. :func:`plan_trial` turns it into a :class:`PlannedTrial`:

* ``steps_per_epoch`` = ceil(n_train / batch_size), or what a trainable declares (:func:`steps_per_epoch`);
* ``total_steps`` = the budget's optimizer steps (:func:`budgetsched.bench.protocol.grid.total_steps`: ceil(b % of
  max_epochs x steps_per_epoch), or with ``budget_unit="epochs"`` ceil(b % of max_epochs) whole epochs);
* the evaluation points: the end of every epoch and the end of the run (the last epoch may be partial);
* for a budget change learned mid-run, the planned length and the step at which the change is learned;
* ``stand_in``: a plateau trial whose patience cannot trigger within its budget (:func:`plateau_is_constant`) is
  the constant schedule's run; it is not trained, it reuses the constant trial (``trained``).

:func:`plan_study` plans a whole grid and applies the **one rule for runs that collapse** (:func:`same_run_key`,
:func:`counted_budget`): budgets of one task, optimizer and budget unit whose runs have the same ``total_steps``
are one run, trained once and counted once, as the largest of those budgets (rounding is upward, so the largest
budget is the closest to the run's real length). The report applies the same rule to what it reads.

The engines receive planned trials and never recompute a run length.
"""
from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Collection, Iterable, Mapping

from budgetsched.bench.protocol.grid import CHANGE_PARAMS, TrialConfig, total_steps

__all__ = ["PlannedTrial", "plan_trial", "as_planned", "steps_per_epoch", "plateau_is_constant", "same_run_key", "counted_budget",
           "StudyPlan", "plan_study", "BudgetCollapseWarning"]


class BudgetCollapseWarning(UserWarning):
    """Budgets of a task are the same run (same number of steps): trained and counted once, as the largest."""


def steps_per_epoch(task: Any, n_train: int) -> int:
    """Optimizer steps per epoch: ceil(n_train / batch size), or what a trainable declares."""
    declared = getattr(task, "steps_per_epoch", None)
    if declared is not None:
        return int(declared)
    return math.ceil(n_train / task.batch_size)


@dataclass(frozen=True)
class PlannedTrial:
    """One trial's run, computed once from its config and its task (:func:`plan_trial`).

    ``config`` is the trial asked for; ``trained`` the config whose run gives its result (``config`` itself unless
    it stands in: ``stand_in`` names why, e.g. ``"constant"`` for a plateau trial whose patience cannot trigger).
    ``change`` is ``(planned_steps, change_at_step, on_change)`` for a budget learned mid-run, else None.
    """

    config: TrialConfig
    total_steps: int
    steps_per_epoch: int
    stand_in: str | None = None
    trained: TrialConfig = field(default=None)  # type: ignore[assignment]  # None -> config
    change: tuple[int, int, str] | None = None

    def __post_init__(self) -> None:
        if self.trained is None:
            object.__setattr__(self, "trained", self.config)
        if self.total_steps < 1 or self.steps_per_epoch < 1:
            raise ValueError(f"a run needs at least one step and one step per epoch, got total_steps="
                             f"{self.total_steps}, steps_per_epoch={self.steps_per_epoch}")

    @property
    def epochs(self) -> int:
        """Epochs started (the last may be partial); also the number of evaluations."""
        return -(-self.total_steps // self.steps_per_epoch)

    @property
    def evaluation_steps(self) -> tuple[int, ...]:
        """Steps after which the run is evaluated on the validation split: every epoch's end and the run's end."""
        return tuple(min((e + 1) * self.steps_per_epoch, self.total_steps) for e in range(self.epochs))

    def epoch_range(self, epoch: int) -> range:
        """Global indices of the steps of ``epoch``."""
        return range(epoch * self.steps_per_epoch, min((epoch + 1) * self.steps_per_epoch, self.total_steps))


def plan_trial(config: TrialConfig, task: Any, n_train: int) -> PlannedTrial:
    """The one place a budget becomes a run: ``config``'s run on ``task`` with ``n_train`` training examples.

    ``task`` needs ``max_epochs`` and ``batch_size`` (or a declared ``steps_per_epoch``, as trainables have).
    """
    spe = steps_per_epoch(task, n_train)
    length = config.total_steps(task.max_epochs, spe)
    change = None
    params = config.params
    if any(k in params for k in CHANGE_PARAMS):
        change = (total_steps(params["planned_budget"], config.budget_unit, task.max_epochs, spe),
                  total_steps(params["change_at"], config.budget_unit, task.max_epochs, spe),
                  str(params["on_change"]))
    planned = PlannedTrial(config, length, spe, change=change)
    if plateau_is_constant(planned):
        return dataclasses.replace(planned, stand_in="constant",
                                   trained=dataclasses.replace(config, schedule="constant", schedule_params=()))
    return planned


def plateau_is_constant(planned: PlannedTrial) -> bool:
    """True if ``planned`` is a plateau trial whose patience cannot trigger a decay that still affects training.

    With E evaluations, a decay needs more than ``patience`` evaluations without improvement after the first,
    so the earliest is at evaluation ``patience + 2``; it changes the run only if training follows, i.e. at an
    evaluation before the last. So the trial equals the constant schedule iff ``E <= patience + 2``.
    """
    c = planned.config
    return c.schedule == "plateau" and planned.epochs <= int(c.params["patience"]) + 2


# ---------------------------------------------------------------------------------------- runs that collapse
def same_run_key(task: str, optimizer: str, budget_unit: str | None, total_steps: int) -> tuple:
    """Budgets with equal keys are one run: one task, optimizer and budget unit, the same number of steps."""
    return (task, optimizer, budget_unit, int(total_steps))


def counted_budget(budgets: Iterable[float]) -> float:
    """The budget under which a run shared by ``budgets`` is trained and counted: the largest (budgets round up
    to steps, so the largest is the closest to the run's real length)."""
    return max(budgets)


# ---------------------------------------------------------------------------------------------- the study
@dataclass
class StudyPlan:
    """What a study trains and writes (:func:`plan_study`)."""

    planned: dict[TrialConfig, PlannedTrial]  # every config that gets a row, and every config trained for one
    configs: list[TrialConfig]  # configs that get a row, in grid order (duplicates and collapsed budgets removed)
    dropped: dict[TrialConfig, TrialConfig]  # config of a budget that is the same run as a larger one -> that one

    @property
    def steps(self) -> dict[TrialConfig, int]:
        """Planned run length of each config (and of each config trained for another)."""
        return {c: p.total_steps for c, p in self.planned.items()}

    @property
    def stand_in(self) -> dict[TrialConfig, TrialConfig]:
        """Config -> the config whose result it reuses (only configs that are not trained as themselves)."""
        return {c: p.trained for c, p in self.planned.items() if p.trained != c}

    def trained(self, config: TrialConfig) -> TrialConfig:
        """The config actually trained for ``config``."""
        return self.planned[config].trained


def plan_study(configs: Iterable[TrialConfig], task_sizes: Mapping[str, tuple[Any, int]],
               finished: Collection[str] = ()) -> StudyPlan:
    """Plan every config once, collapse budgets that are the same run, and find plateau stand-ins.

    ``task_sizes`` maps task name -> (task, number of training examples). Budgets that are one run
    (:func:`same_run_key`) are trained and counted once, as :func:`counted_budget` (the largest), with a
    :class:`BudgetCollapseWarning`. ``finished`` (keys already in the store) lets a store whose collapsed run was
    kept under another budget of the group (a store written before the rule was the report's) resume without
    training it again: the counted config reuses that row.
    """
    unique = list(dict.fromkeys(configs))
    planned = {c: plan_trial(c, *task_sizes[c.task]) for c in unique}
    groups: dict[tuple, list[TrialConfig]] = {}
    for c in unique:
        groups.setdefault(same_run_key(c.task, c.optimizer, c.budget_unit, planned[c].total_steps), []).append(c)
    counted: dict[tuple, float] = {}
    for key, members in groups.items():
        budgets = sorted({c.budget for c in members})
        if len(budgets) > 1:
            counted[key] = counted_budget(budgets)
    said = set()
    dropped: dict[TrialConfig, TrialConfig] = {}
    for c in unique:
        key = same_run_key(c.task, c.optimizer, c.budget_unit, planned[c].total_steps)
        if key not in counted or c.budget == counted[key]:
            continue
        kept = dataclasses.replace(c, budget=counted[key])
        if kept not in planned:  # not a product grid: no config of the counted budget to stand for this one
            continue
        dropped[c] = kept
        if (c.task, c.budget_unit, c.budget) not in said:
            said.add((c.task, c.budget_unit, c.budget))
            warnings.warn(f"{c.task}: budget {c.budget:g} % is {planned[c].total_steps} steps, the same run as "
                          f"budget {counted[key]:g} %; it is trained and counted once (as {counted[key]:g} %)",
                          BudgetCollapseWarning, stacklevel=3)
    kept_configs = [c for c in unique if c not in dropped]
    out = {c: planned[c] for c in kept_configs}
    if finished:  # a run kept under another budget of its group (the earlier rule): reuse it, never retrain
        for old, kept in dropped.items():
            if old.key in finished and kept in out and kept.key not in finished:
                out[kept] = dataclasses.replace(out[kept], trained=old)
    for c, p in list(out.items()):
        target = p.trained
        while target in out and out[target].trained != target:  # a plateau stand-in of a reused run
            target = out[target].trained
        if target != p.trained:
            out[c] = dataclasses.replace(p, trained=target)
        if target not in out:
            out[target] = plan_trial(target, *task_sizes[target.task])
    return StudyPlan(out, kept_configs, dropped)


def as_planned(trial: TrialConfig | PlannedTrial, task: Any, n_train: int) -> PlannedTrial:
    """``trial`` if it is already planned, else its plan (:func:`plan_trial`): what an engine entry point that
    also takes plain configs calls, so the run length is still computed in one place."""
    return trial if isinstance(trial, PlannedTrial) else plan_trial(trial, task, n_train)
