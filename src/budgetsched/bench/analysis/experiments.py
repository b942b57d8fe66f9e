"""Report sections of the paper's other experiments, appended to ``budgetsched report --format md`` when a store
holds them:

* **Sampling rates (the paper's Table 2)** - profiles x sampling rates at one fixed LR (``--preset sampling``):
  mean test metric with its 95 % Student-t interval over seeds, per budget, best per rate and per profile marked;
  :func:`budgetsched.bench.rendering.plots.sampling_heatmap` draws it.
* **Budget changes** - runs planned for one budget that learn mid-run that they have another
  (``--preset budget-change``): per schedule and budget, each strategy (continue / restart / keep) against the run
  that knew its budget from the start, as paired per-seed differences with 95 % intervals.
* **Delayed decay (Figure 2)** needs no section of its own: its schedules are ordinary labels of the per-task
  tables; :func:`budgetsched.bench.rendering.plots.delay_figure` adds the paper's reference line (step at 100 %).

LRs are chosen on validation (mean over seeds), as everywhere in budgetsched; the test metric is reported.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

from budgetsched.bench.analysis.rows import metric_name, setting_key, trial_rows, trial_values
from budgetsched.bench.protocol.records import TrialRow
from budgetsched.bench.analysis.stats import mean_interval
from budgetsched.bench.protocol import selection
from budgetsched.bench.protocol.status import FINISHED

__all__ = ["sampling_cells", "sampling_markdown", "budget_change_cells", "budget_change_markdown",
           "markdown_sections", "profile_of"]

SAMPLING_ORDER = ("every-step", "1-100", "5-25", "10-10", "25-50-75", "33-66", "50-75")


def profile_of(row: TrialRow) -> str:
    """The profile of a sampling-study row as the paper names it: ``exp`` at the fitted gamma is the step
    schedule's exponential approximation."""
    p = {k: v for k, v in row.params.items() if k != "sampling"}
    if row.schedule == "exp" and p.get("gamma") is not None and abs(float(p["gamma"]) + 5.668) < 1e-3:
        return "step≈exp"
    return row.schedule + ("" if not p else "(" + ",".join(f"{k}={v}" for k, v in sorted(p.items())) + ")")


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


# ----------------------------------------------------------------------------------------------- budget changes
CHANGE_KEYS = ("planned_budget", "change_at", "on_change")


def budget_change_cells(rows: Iterable[TrialRow | Mapping[str, Any]]) -> list[dict[str, Any]]:
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
        out.append({"task": key[0], "optimizer": key[1], "budget": key[2], "schedule": r0.schedule,
                    "planned_budget": params["planned_budget"], "change_at": params["change_at"],
                    "on_change": params["on_change"],
                    "value": mean_interval(list(mine.values())) if len(mine) > 1 else None,
                    "from_start": mean_interval(list(base.values())) if len(base) > 1 else None,
                    "difference": mean_interval(diffs) if len(diffs) > 1 else None, "n": len(seeds)})
    return sorted(out, key=lambda e: (e["task"], e["optimizer"], e["budget"], e["schedule"], e["planned_budget"],
                                      e["change_at"], ("continue", "restart", "keep").index(e["on_change"])))


def budget_change_markdown(rows: Iterable[TrialRow | Mapping[str, Any]]) -> list[str]:
    cells = budget_change_cells(rows)
    if not cells:
        return []
    out = ["", "## Budget changes learned mid-run", "",
           "Runs planned for one budget that learn at `change_at` % of the 100 % run that their budget is the "
           "column's: **continue** with `Schedule.with_budget` (no LR jump), **restart** the schedule from its peak "
           "over the remaining steps, or **keep** the planned schedule and then its end value. *Δ* is the paired "
           "per-seed difference (strategy − the same schedule run with that budget from the start), mean [95 % "
           "interval]; negative is better. LRs chosen on validation for each.", "",
           "| task / optimizer | budget | schedule | plan | strategy | test metric | from the start | Δ |",
           "|---|---|---|---|---|---|---|---|"]
    for e in cells:
        out.append(f"| {e['task']} / {e['optimizer']} | {e['budget']:g} % | {e['schedule']} | "
                   f"{e['planned_budget']:g} %, told at {e['change_at']:g} % | {e['on_change']} | "
                   f"{_fmt(e['value'], e['n'])} | {_fmt(e['from_start'], e['n'])} | "
                   f"{_fmt(e['difference'], e['n'], signed=True)} |")
    return out


def markdown_sections(rows: Sequence[TrialRow | Mapping[str, Any]]) -> str:
    """Every experiment section the store has data for, as markdown (empty string when none)."""
    rows = trial_rows(rows)
    lines = [*sampling_markdown(rows), *budget_change_markdown(rows)]
    return "\n".join(lines) + "\n" if lines else ""
