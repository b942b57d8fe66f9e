"""The pieces a study trains: chunks, each a group of trials one engine call trains.

The plan itself (run lengths, budgets that are the same run, plateau stand-ins) is the protocol's:
:func:`budgetsched.bench.protocol.plan.plan_study` (re-exported here for the runner's old import path).
"""
from __future__ import annotations

from typing import Iterable

from budgetsched.bench.execution.context import process_state
from budgetsched.bench.protocol.grid import CHANGE_PARAMS, SCHEDULE_FREE, TrialConfig, iter_groups
from budgetsched.bench.protocol.plan import BudgetCollapseWarning, StudyPlan, plan_study

__all__ = ["StudyPlan", "plan_study", "BudgetCollapseWarning", "make_chunks", "KINDS", "Chunk"]

Chunk = list  # the planned trials (PlannedTrial) of one group, trained by one engine call

#: What trains a chunk: the batched or sequential engine, one schedule-free run serving several budgets
#: (:mod:`budgetsched.bench.engines.schedulefree`), or anytime trunks and branches
#: (:mod:`budgetsched.bench.engines.anytime`).
KINDS = ("batched", "sequential", "schedule-free", "anytime")


def _batchable(task_name: str, engine: str) -> bool:
    if engine == "sequential":
        return False
    from budgetsched.bench.engines import batched

    cache = process_state().cache
    task, data = cache.loaded(task_name) or cache.load(task_name, None, None)
    return bool(batched.supports(task, data))


def make_chunks(configs: Iterable[TrialConfig], engine: str, chunk_size: int, anytime: bool = False
                ) -> list[tuple[str, list[TrialConfig]]]:
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
    out: list[tuple[str, list[TrialConfig]]] = [(key[0], members) for key, members in special.items()]
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
