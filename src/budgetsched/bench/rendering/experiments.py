"""Sections of the paper's other experiments as markdown, appended to ``budgetsched report --format md`` when a
store holds them (the numbers: :mod:`budgetsched.bench.analysis.experiments`):

* **Sampling rates (the paper's Table 2)**: mean test metric with its 95 % Student-t interval over seeds per
  profile and sampling rate, best per rate in bold, best per profile in italics;
* **Budget changes**: per schedule and budget, each strategy (continue / rewarm / extend, and the baseline keep)
  against the run that knew its budget from the start, as paired per-seed differences with 95 % intervals.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

from budgetsched.bench.analysis.experiments import SAMPLING_ORDER, budget_change_cells, sampling_cells
from budgetsched.bench.analysis.rows import metric_name, trial_rows
from budgetsched.bench.protocol.records import TrialRow

__all__ = ["sampling_markdown", "budget_change_markdown", "markdown_sections"]


def _fmt(cell: tuple[float, float, float] | None, n: int, signed: bool = False) -> str:
    """``mean [lo, hi]`` with as many decimals as the interval's width needs (at least 2, at most 4); ``signed``
    for differences."""
    if cell is None:
        return "—" if n == 0 else f"n={n}"
    m, lo, hi = cell
    if not math.isfinite(m):
        return "diverged"
    width = hi - lo
    d = 2 if not (math.isfinite(width) and width > 0) else min(4, max(2, 1 - math.floor(math.log10(width))))
    sign = "+" if signed else ""
    return f"{m:{sign}.{d}f} [{lo:{sign}.{d}f}, {hi:{sign}.{d}f}]".replace("-", "−")


def sampling_markdown(rows: Iterable[TrialRow | Mapping[str, Any]]) -> list[str]:
    """The Table 2 section (empty when the store has no sampling study)."""
    cells = sampling_cells(rows)
    if not cells:
        return []
    out = ["", "## Sampling rates (the paper's Table 2)", "",
           "Test metric (mean [95 % Student-t interval] over seeds) of each profile read at each sampling rate, "
           "one fixed LR per study (the paper holds the LR constant); lower is better. **Bold**: best per rate; "
           "*italic*: best per profile. `step≈exp` is the 50-75 step schedule approximated by exp(gamma z), gamma "
           "fitted to its levels (docs/results.md)."]
    for (task, opt, budget), table in sorted(cells.items()):
        profiles = sorted({p for p, _ in table}, key=lambda p: (p != "step≈exp", p))
        rates = sorted({r for _, r in table}, key=lambda r: SAMPLING_ORDER.index(r) if r in SAMPLING_ORDER else 99)
        mean = {k: (v[0] if v is not None else math.inf) for k, v in table.items()}
        best_rate = {r: min((mean.get((p, r), math.inf) for p in profiles)) for r in rates}
        best_prof = {p: min((mean.get((p, r), math.inf) for r in rates)) for p in profiles}
        out += ["", f"### {task} / {opt} / {budget:g} % ({metric_name(task)})", "",
                "| sampling rate | " + " | ".join(profiles) + " |", "|---|" + "---|" * len(profiles)]
        for r in rates:
            row = []
            for p in profiles:
                v = table.get((p, r))
                text = _fmt(v, 0 if v is None else 1)
                m = mean.get((p, r), math.inf)
                if math.isfinite(m) and m == best_rate[r]:
                    text = f"**{text}**"
                if math.isfinite(m) and m == best_prof[p]:
                    text = f"*{text}*"
                row.append(text)
            out.append(f"| {r} | " + " | ".join(row) + " |")
    return out


def budget_change_markdown(rows: Iterable[TrialRow | Mapping[str, Any]]) -> list[str]:
    """The budget-change section (empty when the store has no budget-change study)."""
    cells = budget_change_cells(rows)
    if not cells:
        return []
    out = ["", "## Budget changes learned mid-run", "",
           "Runs planned for one budget that learn at `change_at` % of the 100 % run that their budget is the "
           "column's, and go on by a strategy of `Schedule.with_budget`: **continue** (no LR jump), **rewarm** (the "
           "schedule again from its peak over the remaining steps) or **extend** (the plan for the new budget from "
           "the start, its peak scaled by min(1, sqrt(T / T'))); or, as a baseline, **keep** the planned schedule "
           "and then its end value. *Δ* is the paired "
           "per-seed difference (strategy − the same schedule run with that budget from the start), mean [95 % "
           "interval]; negative is better. LRs chosen on validation for each.", "",
           "| task / optimizer | budget | schedule | plan | strategy | test metric | from the start | Δ |",
           "|---|---|---|---|---|---|---|---|"]
    for e in cells:
        out.append(f"| {e.task} / {e.optimizer} | {e.budget:g} % | {e.schedule} | "
                   f"{e.planned_budget:g} %, told at {e.change_at:g} % | {e.on_change} | "
                   f"{_fmt(e.value, e.n)} | {_fmt(e.from_start, e.n)} | {_fmt(e.difference, e.n, signed=True)} |")
    return out


def markdown_sections(rows: Sequence[TrialRow | Mapping[str, Any]]) -> str:
    """Every experiment section the store has data for, as markdown (empty string when none)."""
    rows = trial_rows(rows)
    lines = [*sampling_markdown(rows), *budget_change_markdown(rows)]
    return "\n".join(lines) + "\n" if lines else ""
