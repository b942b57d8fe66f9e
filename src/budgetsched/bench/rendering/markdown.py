"""The report as markdown, in the structure of ``docs/results.md``: each section of
:func:`budgetsched.bench.rendering.sections.sections` laid out as markdown."""
from __future__ import annotations

from typing import Callable, Iterable, Mapping, Sequence

from budgetsched.bench.analysis.ablations import Ablations, LrGridView
from budgetsched.bench.analysis.report_model import Report
from budgetsched.bench.rendering.sections import (OFF_PLAN, Details, Grouped, Legend, Line, Missing, Note,
                                                  OffPlanList, Overview, SameRuns, Table, Table1, sections)
from budgetsched.bench.rendering.text import budget_text

__all__ = ["to_markdown"]

def to_markdown(report: Report, figures: Mapping[str, str] | None = None, *, ablations: Ablations | None = None,
                lr_grid: LrGridView | None = None) -> str:
    """Markdown in the structure of ``docs/results.md``.

    Sections: summary and method; Table 1 (shares with counts, each followed by its 95 % interval row) and the
    Top-1 finishes clear of noise; the subject against the reference and the best other schedule per budget; per
    task: test metric mean ± sd (best per column in bold), chosen LR with P(Top-1) / P(Top-3), the ranking per
    setting (n, best, runner-up, gap, tied within noise, subject differences), paired differences against the
    reference; figures (``figures`` maps a caption to an image path, e.g. Figure 2 and 3 written by
    :mod:`budgetsched.bench.rendering.plots`); missing trials. ``ablations`` / ``lr_grid``: an ablation study's
    paired side tables and the LR grid read (:func:`budgetsched.bench.rendering.sections.sections`).
    """
    out: list[str] = []
    for section in sections(report, ablations=ablations, lr_grid=lr_grid):
        if isinstance(section, Missing) and figures:
            out += _figures(figures)
        out += _RENDER[type(section)](section)
    return "\n".join(out) + "\n"


def _table(head: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def _overview(o: Overview) -> list[str]:
    return ["# Budgeted-training study report", "",
            f"Trials: {o.done} done, {o.diverged} diverged, {o.failed} failed. Settings (task x optimizer x budget): "
            f"{o.n_settings} ({o.n_low} low budget < {o.low_limit:g} %, {o.n_settings - o.n_low} high); "
            f"{o.n_counted} counted in Table 1. Seeds per setting: {o.seeds}.{o.units}", ""]


def _note(n: Note) -> list[str]:
    return [f"{n.label}: {n.text}", ""]


def _details(d: Details) -> list[str]:
    out = ["## How the numbers are computed", "",
           "The details behind the tables (the whole protocol, line by line against the paper: docs/protocol.md).", ""]
    for n in d.notes:
        out += _note(n)
    return out


def _same_runs(s: SameRuns) -> list[str]:
    return ["Budgets that are the same run:", ""] + [f"- {x}" for x in s.lines] + [""]


def _table1(t: Table1) -> list[str]:
    out = ["## Table 1: share of settings where each schedule is Top-1 / Top-3", ""]
    if t.note:  # what it counts (the headline rule)
        out += [t.note, ""]
    out += ["| Schedule | Low Top-1 | Low Top-3 | High Top-1 | High Top-3 | Overall Top-1 | Overall Top-3 | "
            "Candidates |",
            "|---|---|---|---|---|---|---|---|"]
    for r in t.rows:
        out.append(f"| {r.name} | " + " | ".join(r.shares) + f" | {r.candidates} |")
        out.append("| ↳ 95 % interval | " + " | ".join(r.intervals) + " | |")
    return out


def _plain(t: Table) -> list[str]:
    out = [""]
    if t.title is not None:
        out += ["#" * t.level + " " + t.title, ""]
    if t.intro is not None:
        out += [t.intro, ""]
    return out + _table(t.head, t.rows)


def _grouped(g: Grouped) -> list[str]:
    marks = g.marks or ("",) * len(g.budgets)
    out = ["", "#" * g.level + " " + g.title, "",
           "| | " + " | ".join(budget_text(b) + m for b, m in zip(g.budgets, marks)) + " |",
           "|---|" + "---|" * len(g.budgets)]
    last = None
    for r in g.rows:
        if r.optimizer != last:
            out.append(f"| **{r.optimizer.upper()}** |" + " |" * len(g.budgets))
            last = r.optimizer
        out.append(f"| + {r.label} | " + " | ".join(f"**{c.text}**" if c.best else c.text for c in r.cells) + " |")
    return out


def _line(x: Line) -> list[str]:
    return ["", x.text]


def _legend(x: Legend) -> list[str]:
    return ["", "Legend:", ""] + [f"- {t}" for t in x.lines]


def _figures(figures: Mapping[str, str]) -> list[str]:
    out = ["", "## Figures", ""]
    for caption, path in figures.items():
        out += [f"![{caption}]({path})", "", f"*{caption}*", ""]
    out.pop()
    return out


def _missing(m: Missing) -> list[str]:
    return ["", "## Missing trials", ""] + ([f"- {x}" for x in m.lines] if m.lines
                                           else ["None: every trial of the grid has a result."])


def _off_plan(o: OffPlanList) -> list[str]:
    return ["", f"## {OFF_PLAN}", ""] + [f"- {x}" for x in o.lines]


_RENDER: dict[type, Callable[..., list[str]]] = {
    Overview: _overview, Note: _note, Details: _details, OffPlanList: _off_plan, SameRuns: _same_runs,
    Table1: _table1, Table: _plain, Grouped: _grouped,
    Line: _line, Legend: _legend, Missing: _missing}
