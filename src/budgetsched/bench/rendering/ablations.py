"""The ablations' side tables and the LR grid a report read, as text and JSON (the numbers:
:mod:`budgetsched.bench.analysis.ablations`).

:func:`ablation_tables` gives the tables of the section "Ablations (paired, not ranked)" as plain fields
(caption, head, rows, title, level, intro) that :func:`budgetsched.bench.rendering.sections.sections` places in the
report, so markdown and the terminal lay them out like every other table: a summary per pair and task, then per
task one table with a column per budget and a row per optimizer and pair (variant − base, 95 % interval).
"""
from __future__ import annotations

import math
from typing import Any, Mapping

from budgetsched.bench.analysis.ablations import KINDS, Ablations, LrGridView, Pair, PairSummary
from budgetsched.bench.protocol.grid import OPTIMIZERS
from budgetsched.bench.rendering.text import big, budget_text, diff_text, finite, num

__all__ = ["ABLATIONS_TITLE", "ablation_tables", "table1_note", "lr_grid_note", "ablations_json", "lr_grid_json"]

#: The section's heading.
ABLATIONS_TITLE = "Ablations (paired, not ranked)"

_INTRO = ("Each variant against its base in the same setting, never ranked in Table 1: a schedule with parameters "
          "against the same schedule without them (e.g. a warm-up added, the momentum cycle held), an optimizer "
          "against its decoupled-weight-decay twin (adamw − adam, same schedule), schedule-free against the best "
          "tuned schedule of its optimizer (chosen on validation) and against linear, and the LR chosen on the "
          "paper's x3 grid alone against the one chosen on the refined grid. Δ = variant − base of the test metric "
          "(negative: the variant is better). Each side's LR is chosen on validation and scored apart from the runs "
          "that chose it (cross-fitted over seeds: the choice for seed s made on seed s + 1's validation); the 95 % "
          "interval is the paired Student-t interval over seeds. Clearly better / worse: the interval excludes 0; "
          "within noise: it contains 0; no interval: one seed or a diverged side.")
_KIND_WORDS = {"schedule": "schedule variant", "optimizer": "optimizer", "schedule-free": "schedule-free",
               "lr-grid": "LR grid"}


def _mean(x: float | None, large: bool) -> str:
    return "—" if x is None else num(x, large, signed=True)


def _relative(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:+.1f}%".replace("-", "−")


def _cell(p: Pair | None) -> str:
    return "—" if p is None else diff_text(p.difference, big(p.base_mean))


def ablation_tables(ab: Ablations, metric_names: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """The section's tables as fields of :class:`budgetsched.bench.rendering.sections.Table`: the summary (the
    section's heading and intro), then one table per task."""
    names = dict(metric_names or {})
    if not ab.pairs:
        return [{"caption": ABLATIONS_TITLE, "head": ("Note",), "rows": (("no pair with both sides present",),),
                 "title": ABLATIONS_TITLE, "level": 2, "intro": _INTRO}]
    large = {p.task: big(p.base_mean) for p in ab.pairs if math.isfinite(p.base_mean)}
    rows = tuple((s.name, _KIND_WORDS[s.kind], s.task, str(s.n), _mean(s.mean, large.get(s.task, True)),
                  _relative(s.mean_relative), str(s.better), str(s.worse), str(s.within_noise), str(s.no_interval))
                 for s in ab.summary)
    out = [{"caption": f"{ABLATIONS_TITLE}: variant − base per task, over its settings",
            "head": ("Pair (variant − base)", "Kind", "Task", "Settings", "Mean Δ", "Mean Δ relative to base",
                     "Clearly better", "Clearly worse", "Within noise", "No interval"),
            "rows": rows, "title": ABLATIONS_TITLE, "level": 2, "intro": _INTRO}]
    for task in sorted({p.task for p in ab.pairs}):
        mine = [p for p in ab.pairs if p.task == task]
        budgets = sorted({p.budget for p in mine})
        cells: dict[tuple[str, str], dict[float, Pair]] = {}
        for p in mine:  # pairs arrive by kind, then setting: rows keep that order
            group = f"{p.optimizer} vs {p.base_optimizer}" if p.kind == "optimizer" else p.optimizer
            shown = p.name.split(": ", 1)[0] if p.kind == "optimizer" else p.name
            cells.setdefault((group, shown), {})[p.budget] = p
        metric = names.get(task, "metric")
        out.append({"caption": f"{task}: variant − base (test {metric}; negative = the variant is better; 95 % "
                               "interval)",
                    "head": ("Optimizer", "Pair (variant − base)", *(budget_text(b) for b in budgets)),
                    "rows": tuple((group, shown, *(_cell(by.get(b)) for b in budgets))
                                  for (group, shown), by in sorted(cells.items(), key=lambda kv: _row_order(kv))),
                    "title": f"Ablations, {task}: variant − base per setting (test {metric}, 95 % interval)",
                    "level": 3})
    return out


def _row_order(item: tuple[tuple[str, str], dict[float, Pair]]) -> tuple:
    """Rows per optimizer (the protocol's order; optimizer pairs last), then by kind, then by name."""
    (group, shown), by = item
    p = next(iter(by.values()))
    pos = {o: i for i, o in enumerate(OPTIMIZERS)}
    return p.kind == "optimizer", pos.get(p.optimizer, len(pos)), group, KINDS.index(p.kind), shown


def table1_note(ab: Ablations | None) -> str | None:
    """The line under Table 1 naming the variants it leaves out; None when it ranks every label."""
    if ab is None or ab.table1_labels is None or not ab.variants:
        return None
    return (f"Not ranked in Table 1 (ablation variants, each compared with its base in \"{ABLATIONS_TITLE}\"): "
            f"{', '.join(ab.variants)}.")


def lr_grid_note(view: LrGridView | None) -> str | None:
    """Which LR grid the report read, when it is not every LR tried."""
    if view is None or view.grid == "all":
        return None
    off = ", ".join(f"{x:g}" for x in view.left_out_lrs[:12]) + (" ..." if len(view.left_out_lrs) > 12 else "")
    return (f"the paper's x3 grid alone (LRs 1 or 3 times a power of ten): {view.kept} trials read, {view.left_out} "
            "left out" + (f" (LRs {off}, refinement points)" if off else "") + ".")


def _pair_json(p: Pair) -> dict[str, Any]:
    d = p.difference
    return {"kind": p.kind, "pair": p.name, "task": p.task, "optimizer": p.optimizer,
            "base_optimizer": p.base_optimizer, "budget": p.budget, "variant": p.variant, "base": p.base,
            "base_label": p.base_label, "variant_lr": p.variant_lr, "base_lr": p.base_lr,
            "difference": finite(d.value), "lo": finite(d.lo), "hi": finite(d.hi), "relative": finite(d.relative),
            "n": d.n, "clear": d.clear, "evaluation": p.mode,
            "diverged": None if math.isfinite(d.value) else ("both" if math.isnan(d.value) else
                                                             ("variant" if d.value > 0 else "base"))}


def _summary_json(s: PairSummary) -> dict[str, Any]:
    return {"kind": s.kind, "pair": s.name, "task": s.task, "n_settings": s.n, "mean_difference": finite(s.mean),
            "mean_relative": finite(s.mean_relative), "clearly_better": s.better, "clearly_worse": s.worse,
            "within_noise": s.within_noise, "no_interval": s.no_interval}


def ablations_json(ab: Ablations) -> dict[str, Any]:
    """The ablations as JSON-ready data (no NaN or inf: a diverged side has ``difference: null``)."""
    return {"not_ranked_in_table1": list(ab.variants),
            "table1_labels": None if ab.table1_labels is None else list(ab.table1_labels),
            "optimizer_pairs": [list(p) for p in ab.optimizer_pairs],
            "method": "variant − base of the test metric per setting, each side's LR chosen on validation and "
                      "cross-fitted over seeds (next-seed); 95 % paired Student-t interval over seeds",
            "summary": [_summary_json(s) for s in ab.summary], "pairs": [_pair_json(p) for p in ab.pairs]}


def lr_grid_json(view: LrGridView) -> dict[str, Any]:
    return {"grid": view.grid, "kept": view.kept, "left_out": view.left_out, "left_out_lrs": list(view.left_out_lrs)}
