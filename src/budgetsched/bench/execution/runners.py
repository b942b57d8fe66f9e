"""The runner's public names, from their homes in :mod:`budgetsched.bench.execution`.

``run_study`` and its summary live in :mod:`.run`; the plan and chunks in :mod:`.chunks`; the execution options in
:mod:`.options`; executors in :mod:`.local` (inline, processes) and :mod:`.ray`.
"""
from __future__ import annotations

from budgetsched.bench.execution.chunks import BudgetCollapseWarning, StudyPlan, make_chunks, plan_study
from budgetsched.bench.execution.options import ENGINES, RunOptions, check_device, check_options, usable_cpus
from budgetsched.bench.execution.run import LEASE_S, StudyInterrupted, StudySummary, run_study

__all__ = ["ENGINES", "RunOptions", "StudySummary", "StudyInterrupted", "BudgetCollapseWarning", "run_study",
           "make_chunks", "check_device", "check_options", "plan_study", "StudyPlan", "usable_cpus", "LEASE_S"]
