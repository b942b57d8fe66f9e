"""The paper's other experiments, read from a store's trials (:mod:`budgetsched.bench.rendering.experiments`
writes them as the sections appended to ``budgetsched report --format md`` when a store holds them):

* **Sampling rates (the paper's Table 2)** - profiles x sampling rates at one fixed LR (``--preset sampling``):
  mean test metric with its 95 % Student-t interval over seeds, per budget, best per rate and per profile marked;
  :func:`budgetsched.bench.rendering.plots.sampling_heatmap` draws it.
* **Budget changes** - runs planned for one budget that learn mid-run that they have another
  (``--preset budget-change``): per schedule and budget, each strategy (continue / rewarm / extend, and the baseline
  keep) against the run that knew its budget from the start, as paired per-seed differences with 95 % intervals.
* **Delayed decay (Figure 2)** needs no section of its own: its schedules are ordinary labels of the per-task
  tables; :func:`budgetsched.bench.rendering.plots.delay_figure` adds the paper's reference line (step at 100 %).

LRs are chosen on validation (mean over seeds), as everywhere in budgetsched; the test metric is reported.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from budgetsched.bench.analysis.rows import setting_key, trial_rows, trial_values
from budgetsched.bench.analysis.stats import mean_interval
from budgetsched.bench.protocol.grid import ON_CHANGE
from budgetsched.bench.protocol.records import TrialRow
from budgetsched.bench.protocol import selection
from budgetsched.bench.protocol.status import FINISHED

__all__ = ["sampling_cells", "budget_change_cells", "BudgetChangeCell", "profile_of", "SAMPLING_ORDER"]

SAMPLING_ORDER = ("every-step", "1-100", "5-25", "10-10", "25-50-75", "33-66", "50-75")


def profile_of(row: TrialRow) -> str:
    """The profile of a sampling-study row as the paper names it: ``exp`` at the fitted gamma is the step
    schedule's exponential approximation."""
    p = {k: v for k, v in row.params.items() if k != "sampling"}
    if row.schedule == "exp" and p.get("gamma") is not None and abs(float(p["gamma"]) + 5.668) < 1e-3:
        return "step≈exp"
    return row.schedule + ("" if not p else "(" + ",".join(f"{k}={v}" for k, v in sorted(p.items())) + ")")


def _best_lr(rows: list[TrialRow]) -> list[TrialRow]:
    """The rows of the LR the protocol chooses (:func:`budgetsched.bench.protocol.selection.choose_lr`: the lowest
    mean validation metric over seeds, diverged = +inf, ties to the smaller LR)."""
    by_lr: dict[float, list[TrialRow]] = {}
    for r in rows:
        if r.status in FINISHED:
            by_lr.setdefault(float(r.lr), []).append(r)
    if not by_lr:
        return []
    lr, _ = selection.choose_lr({lr: [selection.score(r.status, r.val_metric) for r in rs]
                                 for lr, rs in by_lr.items()})
    return by_lr[lr]


def _test_values(rows: list[TrialRow]) -> dict[int, float]:
    return {r.seed: trial_values(r)[1] for r in rows}


# ---------------------------------------------------------------------------------------------- sampling rates
def sampling_cells(rows: Iterable[TrialRow | Mapping[str, Any]]) -> dict[tuple, dict[tuple[str, str], Any]]:
    """``{(task, optimizer, budget): {(profile, rate): (mean, lo, hi) | None}}`` for rows with a sampling rate."""
    groups: dict[tuple, dict[tuple[str, str], list[TrialRow]]] = {}
    for r in trial_rows(rows):
        rate = r.params.get("sampling")
        if rate is None:
            continue
        groups.setdefault(setting_key(r), {}).setdefault(
            (profile_of(r), str(rate)), []).append(r)
    out: dict[tuple, dict[tuple[str, str], Any]] = {}
    for key, cells in groups.items():
        out[key] = {}
        for cell, members in cells.items():
            chosen = _best_lr(members)
            vals = list(_test_values(chosen).values())
            out[key][cell] = (math.inf, math.inf, math.inf) if any(math.isinf(v) for v in vals) else \
                mean_interval(vals) if len(vals) > 1 else (None if not vals else (vals[0], vals[0], vals[0]))
    return out


# ----------------------------------------------------------------------------------------------- budget changes
CHANGE_KEYS = ("planned_budget", "change_at", "on_change")


@dataclass(frozen=True)
class BudgetChangeCell:
    """One schedule, plan and strategy of a budget-change study: its test metric, the same schedule's run that knew
    the budget from the start, and their paired per-seed difference, each ``(mean, lo, hi)`` (Student-t 95 %) or
    None with fewer than two seeds."""

    task: str
    optimizer: str
    budget: float
    schedule: str
    planned_budget: float
    change_at: float
    on_change: str  # continue / rewarm / extend / keep (grid.ON_CHANGE)
    value: tuple[float, float, float] | None
    from_start: tuple[float, float, float] | None
    difference: tuple[float, float, float] | None
    n: int  # seeds in both


def budget_change_cells(rows: Iterable[TrialRow | Mapping[str, Any]]) -> list[BudgetChangeCell]:
    """One entry per (task, optimizer, budget, schedule, plan, strategy): the strategy's test metric and its paired
    per-seed difference against the same schedule run with that budget from the start (LRs chosen on validation
    for each)."""
    rows = trial_rows(rows)
    changed = [r for r in rows if "on_change" in r.params]
    if not changed:
        return []
    by_label: dict[tuple, list[TrialRow]] = {}
    for r in rows:
        by_label.setdefault((*setting_key(r), r.label), []).append(r)
    out = []
    for r0 in {(*setting_key(r), r.label): r for r in changed}.values():
        key = setting_key(r0)
        params = r0.params
        plain = [r for r in by_label.get((*key, r0.schedule), [])]
        if not plain:
            continue
        mine = _test_values(_best_lr(by_label[(*key, r0.label)]))
        base = _test_values(_best_lr(plain))
        seeds = sorted(set(mine) & set(base))
        diffs = [mine[s] - base[s] for s in seeds]
        out.append(BudgetChangeCell(key[0], key[1], key[2], r0.schedule, params["planned_budget"], params["change_at"],
                                    params["on_change"],
                                    mean_interval(list(mine.values())) if len(mine) > 1 else None,
                                    mean_interval(list(base.values())) if len(base) > 1 else None,
                                    mean_interval(diffs) if len(diffs) > 1 else None, len(seeds)))
    return sorted(out, key=lambda e: (e.task, e.optimizer, e.budget, e.schedule, e.planned_budget, e.change_at,
                                      ON_CHANGE.index(e.on_change)))
