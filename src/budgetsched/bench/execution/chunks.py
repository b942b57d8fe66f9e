"""What a study trains and in which pieces: the plan (run lengths, same-run budgets, plateau stand-ins) and the
chunks (groups of trials one engine call trains)."""
from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Any, Iterable

from budgetsched.bench.execution.context import process_state
from budgetsched.bench.protocol.grid import CHANGE_PARAMS, SCHEDULE_FREE, TrialConfig, iter_groups

__all__ = ["StudyPlan", "plan_study", "BudgetCollapseWarning", "make_chunks", "KINDS", "Chunk"]

Chunk = list  # a list of TrialConfig of one group, trained by one engine call

#: What trains a chunk: the batched or sequential engine, one schedule-free run serving several budgets
#: (:mod:`budgetsched.bench.engines.schedulefree`), or anytime trunks and branches
#: (:mod:`budgetsched.bench.engines.anytime`).
KINDS = ("batched", "sequential", "schedule-free", "anytime")


class BudgetCollapseWarning(UserWarning):
    """Two budgets of a task are the same run (same number of steps); the larger one is dropped."""


@dataclass
class StudyPlan:
    """What a study trains and writes (see :func:`plan_study`)."""

    configs: list[TrialConfig]  # every config that gets a row, duplicates and dropped budgets removed
    steps: dict[TrialConfig, int]  # planned run length of each config (and of each stand-in target)
    stand_in: dict[TrialConfig, TrialConfig]  # plateau config -> the constant config whose result it reuses
    dropped: list[TrialConfig]  # configs of a budget that is the same run as a smaller budget of the task

    def trained(self, config: TrialConfig) -> TrialConfig:
        """The config actually trained for ``config``."""
        return self.stand_in.get(config, config)


def plan_study(configs: Iterable[TrialConfig], task_sizes: dict[str, tuple[Any, int]]) -> StudyPlan:
    """Resolve run lengths, drop budgets that collapse onto a smaller one, and find plateau stand-ins.

    ``task_sizes`` maps task name -> (task, number of training examples).
    """
    from budgetsched.bench.engines.train import plateau_is_constant, steps_per_epoch

    unique = list(dict.fromkeys(configs))

    def length(c: TrialConfig) -> int:
        task, n = task_sizes[c.task]
        return c.total_steps(task.max_epochs, steps_per_epoch(task, n))

    # budgets that are the same run: keep the smallest budget of each length, per task and budget unit
    first_budget: dict[tuple[str, str, int], float] = {}
    collapsed: dict[tuple[str, str, float], float] = {}
    for c in sorted(unique, key=lambda c: c.budget):
        k = (c.task, c.budget_unit, length(c))
        kept = first_budget.setdefault(k, c.budget)
        if kept != c.budget:
            collapsed[(c.task, c.budget_unit, c.budget)] = kept
    for (task, unit, budget), kept in sorted(collapsed.items()):
        steps = length(next(c for c in unique if (c.task, c.budget_unit, c.budget) == (task, unit, budget)))
        warnings.warn(f"{task}: budget {budget:g} % is {steps} steps, the same run as budget {kept:g} %; it is "
                      f"trained and counted once (as {kept:g} %)", BudgetCollapseWarning, stacklevel=3)
    dropped = [c for c in unique if (c.task, c.budget_unit, c.budget) in collapsed]
    kept_configs = [c for c in unique if (c.task, c.budget_unit, c.budget) not in collapsed]
    stand_in = {}
    for c in kept_configs:
        task, n = task_sizes[c.task]
        if plateau_is_constant(c, task, n):
            stand_in[c] = dataclasses.replace(c, schedule="constant", schedule_params=())
    steps = {c: length(c) for c in [*kept_configs, *stand_in.values()]}
    return StudyPlan(kept_configs, steps, stand_in, dropped)


def _batchable(task_name: str, engine: str) -> bool:
    if engine == "sequential":
        return False
    from budgetsched.bench.engines import batched

    cache = process_state().cache
    task, data = cache.loaded(task_name) or cache.load(task_name, None, None)
    return bool(batched.supports(task, data))


def make_chunks(configs: Iterable[TrialConfig], engine: str, chunk_size: int, anytime: bool = False
                ) -> list[tuple[str, Chunk]]:
    """Group configs by ``group_key`` (first-seen order) and cut each group into chunks.

    Returns ``(kind, chunk)`` pairs (:data:`KINDS`): a group of a batchable task (unless ``engine ==
    "sequential"``) gives chunks of up to ``chunk_size`` trials ordered by seed for the batched engine; any other
    group one-trial chunks for the sequential engine (small chunks keep the processes evenly loaded and lose little
    on an interrupt). Schedule-free trials that differ only in budget are one chunk (one run serves them); with
    ``anytime``, the closed-form trials of one task, optimizer and schedule whose budgets share a prefix
    (:func:`budgetsched.bench.engines.anytime.shares_prefix`) are one chunk of trunks and branches; the others train
    as usual.
    """
    from budgetsched.bench.engines.anytime import shares_prefix
    from budgetsched.bench.engines.batched import chunks_by_seed
    from budgetsched.bench.engines.schedulefree import run_key

    configs = list(configs)
    special: dict[tuple, list[TrialConfig]] = {}
    rest = []
    for c in configs:
        if c.schedule == SCHEDULE_FREE:
            special.setdefault(("schedule-free", *run_key(c)), []).append(c)
        elif (anytime and c.schedule != "plateau" and not any(k in c.params for k in CHANGE_PARAMS)
              and shares_prefix(c.schedule, c.schedule_params)):
            special.setdefault(("anytime", c.task, c.optimizer, c.budget_unit, c.schedule, c.schedule_params),
                               []).append(c)
        else:
            rest.append(c)
    out: list[tuple[str, Chunk]] = [(key[0], members) for key, members in special.items()]
    batchable: dict[str, bool] = {}
    for members in iter_groups(rest).values():
        task = members[0].task
        if task not in batchable:
            batchable[task] = _batchable(task, engine)
        if batchable[task]:
            out.extend(("batched", chunk) for chunk in chunks_by_seed(members, chunk_size))
        else:
            out.extend(("sequential", [c]) for c in members)
    return out
