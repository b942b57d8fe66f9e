"""The report's sections, decided once: :func:`sections` turns a :class:`Report` into a list of section objects
(what to show, with its text), and each renderer (:mod:`.markdown`, :mod:`.rich_text`) only lays them out.

Order: overview (and the LR grid read, when not every LR), how to read the report (a short plain paragraph), budgets
that are one run, Table 1 (and the ablation variants it leaves out), Top-1 finishes clear of noise, settings tied
within noise, the subject per budget; an ablation study's paired side tables; per task: the test metric, chosen LRs,
the ranking per setting, paired differences against the reference; how the numbers are computed (selection,
uncertainty, evaluation: the details, with docs/protocol.md); the legend; missing trials; trials whose scheduler did
not follow its plan (only when there are any).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from budgetsched.bench.analysis.ablations import Ablations, LrGridView
from budgetsched.bench.analysis.report_model import SPLITS, Comparison, Report, Setting
from budgetsched.bench.analysis.rows import schedule_order
from budgetsched.bench.rendering.ablations import ablation_tables, lr_grid_note, table1_note
from budgetsched.bench.rendering.headline import counted_text, headline_note, set_apart_table
from budgetsched.bench.rendering.text import (best_labels, big, budget_text, candidates_text, count, diff_text,
                                              edge, evaluation_text, method_text, optimizers, pct, pct_ci, prob,
                                              result_cell, seeds_text, step_label, step_name, unit_text)

__all__ = ["Overview", "Note", "Details", "SameRuns", "Table1Row", "Table1", "Table", "Cell", "GroupedRow", "Grouped",
           "Line", "Legend", "Missing", "OffPlanList", "OFF_PLAN", "Section", "sections", "table1_order", "how_to_read", "SELECTION"]


@dataclass(frozen=True)
class Overview:
    """The study in numbers: trials by status, settings by split, seeds, budget units."""

    done: int
    diverged: int
    failed: int
    n_settings: int
    n_low: int
    n_counted: int
    low_limit: float
    seeds: str
    units: str  # a sentence (leading space) or ""
    plateau_into_step: bool = True


@dataclass(frozen=True)
class Note:
    """A labelled paragraph, e.g. "Uncertainty: ..."."""

    label: str
    text: str


@dataclass(frozen=True)
class Details:
    """How the numbers are computed: labelled notes under one heading, for the reader who wants the method."""

    notes: tuple[Note, ...]


@dataclass(frozen=True)
class SameRuns:
    lines: tuple[str, ...]


@dataclass(frozen=True)
class Table1Row:
    label: str
    name: str  # "step (incl. plateau)" when plateau is merged into step
    shares: tuple[str, ...]  # per split: Top-1, Top-3
    intervals: tuple[str, ...]
    candidates: str = "—"  # the candidates the row chose among (median over settings)


@dataclass(frozen=True)
class Table1:
    rows: tuple[Table1Row, ...]
    plateau_into_step: bool = True
    note: str = ""  # what it counts: "N of M settings counted" (the headline rule, rendering/headline.py)


@dataclass(frozen=True)
class Table:
    """A plain table: ``title`` is the markdown heading (None: none) at ``level``, ``intro`` the markdown paragraph
    before it, ``caption`` the rich table's title."""

    caption: str
    head: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    title: str | None = None
    level: int = 3
    intro: str | None = None


@dataclass(frozen=True)
class Cell:
    text: str
    best: bool = False  # the lowest mean of its column (shown bold / highlighted)


@dataclass(frozen=True)
class GroupedRow:
    optimizer: str
    label: str
    cells: tuple[Cell, ...]


@dataclass(frozen=True)
class Grouped:
    """A per-task table with one column per budget and rows grouped by optimizer. ``marks``: per budget, the
    markdown header's note (e.g. " (= 10% run)")."""

    title: str
    caption: str
    level: int
    budgets: tuple[float, ...]
    rows: tuple[GroupedRow, ...]
    marks: tuple[str, ...] = ()


@dataclass(frozen=True)
class Line:
    text: str


@dataclass(frozen=True)
class Legend:
    lines: tuple[str, ...]


@dataclass(frozen=True)
class Missing:
    lines: tuple[str, ...]


#: The heading of the trials whose scheduler did not follow its plan.
OFF_PLAN = "Trials whose scheduler stepped another number of times than planned (kept in the tables)"


@dataclass(frozen=True)
class OffPlanList:
    """Finished trials whose scheduler reached another position than planned, one line each."""

    lines: tuple[str, ...]


Section = Union[Overview, Note, Details, SameRuns, Table1, Table, Grouped, Line, Legend, Missing, OffPlanList]

LEGEND = ("↑ / ↓: the chosen LR is the largest / smallest LR tried for that schedule in that setting (the best "
          "LR may lie outside the grid); \"only LR\": the schedule was run at one LR.",
          "† plateau's chosen patience never triggers within that budget: its result is the constant trial of the "
          "same LR and seed (a stand-in: constant's run under a second name, which earns no Table-1 finish).",
          "n=1: one seed, no spread, no interval and no probability.")


SELECTION = ("LR (and plateau patience) chosen per setting by mean validation metric over seeds; cells give the test "
             "metric of that choice as mean ± sample std (ddof=1) over seeds; lower is better. Ties share a rank "
             "(competition ranking 1, 1, 3).")
_MERGE = {True: " In Table 1 plateau is merged into step (whichever of the two has the better validation mean stands "
                "for step).",
          False: " In Table 1 plateau is a schedule of its own (not merged into step as in the paper's Table 1)."}


def how_to_read(report: Report) -> str:
    """The report in plain words, before any table: what a number is, what Table 1 counts, what an interval and
    "tied within noise" mean; the method is at the end of the report and in docs/protocol.md."""
    merged = ("plateau counts as step, as in the paper" if report.plateau_into_step
              else "plateau is a schedule of its own")
    return ("For each schedule the initial learning rate was picked on the validation data; every table gives the "
            "test result of that pick (lower is better), averaged over seeds. Table 1 says how often each schedule "
            f"came first (Top-1) or in the first three (Top-3) across the settings ({merged}); schedules tied for a "
            "place share it. A range such as 12–40% is a 95 % interval: where two schedules' ranges overlap, or a "
            "setting is \"tied within noise\", this study cannot tell them apart, and more seeds would. ↑ / ↓ marks "
            "an LR at the edge of those tried (the best LR may lie beyond). How each number is computed: the end of "
            "this report and docs/protocol.md.")


def sections(report: Report, *, ablations: Ablations | None = None,
             lr_grid: LrGridView | None = None) -> list[Section]:
    """Every section of the report, in order (see the module docstring). ``ablations``: the paired side tables
    of an ablation study (:mod:`budgetsched.bench.analysis.ablations`), placed before the per-task tables, with a
    line under Table 1 naming the variants it leaves out; ``lr_grid``: which LR grid was read, said after the
    overview when it is not every LR tried. Neither changes a report without them."""
    out: list[Section] = [Overview(report.n_trials_done, report.n_trials_diverged, report.n_trials_failed,
                                   len(report.settings), sum(s.split == "low" for s in report.settings),
                                   len(report.table1_settings()), report.low_limit, seeds_text(report),
                                   unit_text(report), report.plateau_into_step)]
    grid = lr_grid_note(lr_grid)
    if grid:
        out.append(Note("LR grid", grid))
    out.append(Note("How to read this", how_to_read(report)))
    details = [Note("Selection", SELECTION + _MERGE[report.plateau_into_step])]
    if report.uncertainty:
        details.append(Note("Uncertainty", method_text(report)))
    evaluation = evaluation_text(report)
    if evaluation:
        details.append(Note("Evaluation", evaluation))
    dups = _duplicate_lines(report)
    if dups:
        out.append(SameRuns(tuple(dups)))
    order = table1_order(report)
    out.append(Table1(tuple(Table1Row(x, step_name(report, x),
                                      tuple(pct(report.table1[x][sp], k) for sp in SPLITS for k in ("top1", "top3")),
                                      tuple(pct_ci(report.table1[x][sp], k) for sp in SPLITS
                                            for k in ("top1", "top3")),
                                      candidates_text(report.table1[x]["overall"]))
                            for x in order), report.plateau_into_step, headline_note(report)))
    left_out = table1_note(ablations)
    if left_out:
        out.append(Line(left_out))
    out.append(Table("Top-1 finishes clear of noise, of all Top-1 finishes", ("Schedule", "Low", "High", "Overall"),
                     tuple((step_name(report, x), *(f"{count(report.table1[x][sp].n_clear_top1)} of "
                                                    f"{count(report.table1[x][sp].n_top1)}" for sp in SPLITS))
                           for x in order),
                     intro="Top-1 finishes clear of noise (the setting's runner-up − best interval excludes 0), of "
                           "all Top-1 finishes:"))
    out.append(Line(_tied_line(report)))
    if report.statistics.get("normalised"):
        head, rows = _statistics_rows(report, order)
        out.append(Table("Study-level statistics for these tasks (normalised scores: 1 = the setting's best, 0 = the "
                         "task's trivial baseline)", head, rows, title="Study-level statistics, for these tasks",
                         level=2, intro=_statistics_intro(report) + " " + counted_text(report)))
    if report.subject and report.by_budget:
        subj = report.subject
        ref = f"{report.reference} and " if report.reference and report.reference != subj else ""
        head, rows = _by_budget_rows(report)
        out.append(Table(f"{subj} against the reference and the best other schedule, per budget (relative "
                         "test-metric difference, negative = better)", head, rows,
                         title=f"{subj} against {ref}the best other schedule, per budget", level=2,
                         intro=f"Paired over seeds within each setting: ({subj} − other) / |other| of the test "
                               f"metric (negative = {subj} better), averaged over the task x optimizer settings of "
                               "the budget with a nested 95 % interval. \"best other\": the Table-1 schedule with the "
                               "lowest validation mean, chosen inside every draw. better / worse: settings by point "
                               "estimate; in brackets those whose own 95 % interval excludes 0. "
                               + counted_text(report)))
    apart = set_apart_table(report)  # the headline rule's set-apart settings, never dropped silently
    if apart:
        out.append(Table(**apart))
    if ablations is not None:
        out += [Table(**t) for t in ablation_tables(ablations, report.metric_names)]
    for task in sorted({s.task for s in report.settings}):
        out += _task_sections(report, task)
    out.append(Details(tuple(details)))
    out.append(Legend(LEGEND))
    out.append(Missing(tuple(_missing_lines(report))))
    if report.off_plan:
        out.append(OffPlanList(tuple(
            f"{o.task} / {o.optimizer} / {budget_text(o.budget)} / {o.schedule} / lr {o.lr:g} / seed {o.seed}: the "
            f"scheduler reached step {o.scheduler_steps}"
            + (f" of the {o.total_steps} planned" if o.total_steps else "") for o in report.off_plan)))
    return out


def table1_order(report: Report) -> list[str]:
    """Table 1's rows: by overall Top-1 share, then Top-3 share, then name."""
    return sorted(report.table1, key=lambda x: (-(report.table1[x]["overall"].top1 or 0),
                                                       -(report.table1[x]["overall"].top3 or 0), x))


def _task_sections(report: Report, task: str) -> list[Section]:
    ss = [s for s in report.settings if s.task == task]
    budgets = tuple(sorted({s.budget for s in ss}))
    by = {opt: {s.budget: s for s in ss if s.optimizer == opt} for opt in optimizers(ss)}
    metric = report.metric_names.get(task, "metric")
    same = {s.budget: s.same_run_as for s in ss if not s.counted}
    marks = tuple(f" (= {budget_text(same[b])} run)" if b in same else "" for b in budgets)
    out: list[Section] = [
        Grouped(f"{task}: test {metric} (best per column in bold)",
                f"{task}: test {metric} (lower is better; best per column highlighted)", 2, budgets,
                _grouped(by, budgets, lambda s: s.results, _result), marks),
        Grouped(f"{task}: chosen LR (↑/↓ at the grid's edge), P(Top-1) / P(Top-3)",
                f"{task}: chosen LR (↑/↓ at the grid's edge), P(Top-1) / P(Top-3)", 3, budgets,
                _grouped(by, budgets, lambda s: s.results, _choice)),
    ]
    head, rows = _ranking_rows(report, ss)
    out.append(Table(f"{task}: ranking per setting", head, rows, title=f"{task}: ranking per setting"))
    diffs = _grouped(by, budgets, lambda s: s.vs_reference, lambda s, label: _difference(report, s, label))
    if diffs:
        ref = report.reference
        out.append(Grouped(f"{task}: paired difference against {ref} (schedule − {ref}, test {metric}; negative = "
                           f"better than {ref}; 95 % interval)",
                           f"{task}: paired difference against {ref} (negative = better)", 3, budgets, diffs))
    return out


def _grouped(by: dict[str, dict[float, Setting]], budgets: tuple[float, ...], members, cell) -> tuple[GroupedRow, ...]:
    """Rows per optimizer x label (labels of ``members(setting)`` in display order), one ``cell(setting, label)``
    per budget (None setting: "—")."""
    rows = []
    for opt, by_budget in by.items():
        for label in schedule_order({k for s in by_budget.values() for k in members(s)}):
            rows.append(GroupedRow(opt, label, tuple(Cell("—") if by_budget.get(b) is None else
                                                     cell(by_budget[b], label) for b in budgets)))
    return tuple(rows)


def _result(s: Setting, label: str) -> Cell:
    """Test metric mean ± sd of the choice; best when its mean is the lowest of the setting (ties: all)."""
    c = s.results.get(label)
    text = result_cell(c)
    if c is not None and c.stand_in:
        text += " †"
    return Cell(text, c is not None and label in best_labels(s))


def _choice(s: Setting, label: str) -> Cell:
    """Chosen LR (edge-flagged), patience, stand-in, P(Top-1) / P(Top-3)."""
    c = s.results.get(label)
    if c is None:
        return Cell("—")
    text = f"{c.lr:g}{edge(c)}"
    if c.patience is not None:
        text += f" p{c.patience}"
    if c.stand_in:
        text += f" (= {c.stand_in})"
    if label == "plateau" and "plateau" not in s.ranking and "step" in s.ranking:  # merged into step
        text += " · in step" if s.ranking["step"].source == "plateau" else " · not used"
    elif c.rank is not None:
        via = " via plateau" if c.ranked_as == "plateau" else ""
        text += f" · {prob(c.p_top1)} / {prob(c.p_top3)}{via}"
    return Cell(text)


def _difference(report: Report, s: Setting, label: str) -> Cell:
    ref = s.results.get(report.reference)
    return Cell(diff_text(s.vs_reference.get(label), ref is not None and big(ref.mean)))


def _ranking_rows(report: Report, ss: list[Setting]) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]:
    """One row per setting of the task: n, best and runner-up (with P(Top-1)), their gap, verdict, subject rows."""
    head = ["Optimizer", "Budget", "n seeds", "Top-1 (P Top-1)", "Runner-up (P Top-1)", "runner-up − best [95 %]",
            "within noise?"]
    subj, ref = report.subject, report.reference
    if subj and ref and subj != ref:
        head.append(f"{subj} − {ref} [95 %]")
    if subj:
        head.append(f"{subj} − best other by val [95 %]")
    rows = []
    for s in ss:
        bud = budget_text(s.budget) + ("" if s.counted else f" (= {budget_text(s.same_run_as)} run)")
        bud += " (set apart: headline rule)" if s.set_apart else ""
        large = s.best is not None and big(s.ranking[s.best].mean)
        best = "—" if s.best is None else f"{step_label(s, s.best)} ({prob(s.ranking[s.best].p_top1)})"
        ru = "—" if s.runner_up is None else f"{step_label(s, s.runner_up)} ({prob(s.ranking[s.runner_up].p_top1)})"
        verdict = {True: "tied", False: "clear", None: "n=1" if s.n_seeds == 1 else "—"}[s.tied]
        row = [s.optimizer, bud, str(s.n_seeds), best, ru, diff_text(s.gap, large), verdict]
        if subj and ref and subj != ref:
            row.append(diff_text(s.vs_reference.get(subj), large, relative=True))
        if subj:
            d = s.vs_best_other
            row.append("—" if d is None else f"vs {d.against}: {diff_text(d, large, relative=True)}")
        rows.append(tuple(row))
    return tuple(head), tuple(rows)


def _comparison(c: Comparison | None) -> list[str]:
    if c is None or c.mean_relative is None:
        return ["—", "—"]
    ci = "" if c.ci is None else f" [{100 * c.ci[0]:+.1f}, {100 * c.ci[1]:+.1f}]%"
    extra = f", {c.not_comparable} diverged" if c.not_comparable else ""
    return [f"{100 * c.mean_relative:+.1f}%{ci}".replace("-", "−"),
            f"{c.better} / {c.worse} ({c.clear_better} / {c.clear_worse}){extra}"]


def _by_budget_rows(report: Report) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]:
    subj, ref = report.subject, report.reference
    with_ref = bool(ref and ref != subj)
    head = ["Budget", "settings"]
    if with_ref:
        head += [f"{subj} − {ref}, mean relative [95 %]", "better / worse (clear)"]
    head += [f"{subj} − best other, mean relative [95 %]", "better / worse (clear)", "best other (by val)"]
    rows = []
    for r in report.by_budget:
        row = [budget_text(r.budget), str(r.n_settings)]
        if with_ref:
            row += _comparison(r.vs_reference)
        row += _comparison(r.vs_best_other)
        c = r.vs_best_other
        row.append(", ".join(c.against) if c and c.against else "—")
        rows.append(tuple(row))
    return tuple(head), tuple(rows)


def _interval(cell: dict | None, digits: int = 3) -> str:
    if not cell or cell.get("value", cell.get("p")) is None:
        return "—"
    v = cell.get("value", cell.get("p"))
    if cell.get("lo") is None:
        return f"{v:.{digits}f}"
    return f"{v:.{digits}f} [{cell['lo']:.{digits}f}, {cell['hi']:.{digits}f}]"


def _statistics_rows(report: Report, order: list[str]) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]:
    """Per Table-1 row: normalised mean and IQM, and P(subject better than the row) per budget regime."""
    st = report.statistics
    p = (st.get("p_improvement") or {})
    subj, by_row = p.get("subject"), p.get("by_row") or {}
    head = ["Schedule", "normalised mean [95 %]", "IQM [95 %]"]
    if subj:
        head += [f"P({subj} better) low", "high", "all"]
    rows = []
    for x in order:
        n = st["normalised"].get(x, {})
        row = [step_name(report, x), _interval(n.get("mean")), _interval(n.get("iqm"))]
        if subj:
            row += ["—"] * 3 if x == subj else [_interval(by_row.get(x, {}).get(g), 2) for g in ("low", "high", "all")]
        rows.append(tuple(row))
    return tuple(head), tuple(rows)


def _statistics_intro(report: Report) -> str:
    st = report.statistics
    base = ", ".join(f"{t} {b:g}" for t, b in st.get("baselines", {}).items() if b is not None)
    text = ("Per setting, each schedule's per-seed Table-1 scores (cross-fitted) normalised as (baseline − score) / "
            "(baseline − best), the baseline being the task's trivial predictor (" + (base or "none declared")
            + "; a task without one: best / score), then the mean and the interquartile mean over settings and "
              "seeds; P(X better than Y): the Mann-Whitney probability over pairs of seeds, averaged over settings. "
              "Intervals: a bootstrap stratified by task (seeds within settings, settings within tasks, tasks fixed), "
              "so they hold for these tasks, not for other tasks.")
    if not st.get("fairness_claim"):
        text += " Some settings have one seed: no intervals and no fairness claim."
    return text


def _missing_lines(report: Report) -> list[str]:
    lines = []
    for m in report.missing:
        what = f"{m.task} / {m.optimizer} / {budget_text(m.budget)} / {m.schedule}"
        if m.lr is not None:
            what += f" / lr={m.lr:g}"
            if m.patience is not None:
                what += f" / patience={m.patience}"
            what += f" / seed={m.seed}"
        lines.append(f"{what}: {m.reason}")
    return lines


def _duplicate_lines(report: Report) -> list[str]:
    out = []
    for d in report.duplicates:
        real = "" if d.real_percent is None else f", {d.real_percent:.3g} % of the 100 % run"
        out.append(f"{d.task} / {d.optimizer}: budgets {', '.join(budget_text(b) for b in d.budgets)} are one "
                   f"run ({d.total_steps} steps{real}); Table 1 counts it once, as {budget_text(d.counted_as)}.")
    return out


def _tied_line(report: Report) -> str:
    counted = report.table1_settings()
    verdict = {id(s): s.fair.tied if s.fair is not None else s.tied for s in counted}  # Table 1's, when it has one
    tied = [s for s in counted if verdict[id(s)]]
    unknown = [s for s in counted if verdict[id(s)] is None]
    text = (f"Settings whose Top-1 is tied within noise (the 95 % interval of runner-up − best contains 0): "
            f"{len(tied)} of {len(counted)}")
    if unknown:
        text += f" ({len(unknown)} cannot tell: one seed or one schedule)"
    return text + "."
