"""The report on a terminal: each section of :func:`budgetsched.bench.rendering.sections.sections` as rich text and
tables (``budgetsched report --format rich``)."""
from __future__ import annotations

from typing import Any

from budgetsched.bench.analysis.report_model import SPLITS, Report
from budgetsched.bench.rendering.sections import (Grouped, Legend, Line, Missing, Note, Overview, SameRuns, Table,
                                                  Table1, sections)
from budgetsched.bench.rendering.text import budget_text

__all__ = ["render_rich"]


def render_rich(report: Report, console: Any) -> None:
    """Print the report to a ``rich.console.Console``: the sections of
    :func:`~budgetsched.bench.rendering.markdown.to_markdown` as rich tables."""
    from rich.table import Table as RichTable

    for section in sections(report):
        if isinstance(section, Overview):
            o = section
            console.print(f"[bold]Trials[/]: {o.done} done, {o.diverged} diverged, {o.failed} failed; "
                          f"{o.n_settings} settings ({o.n_low} low budget, {o.n_settings - o.n_low} high; "
                          f"{o.n_counted} counted in Table 1); seeds per setting: {o.seeds}.{o.units} LR chosen by "
                          "validation; test metric mean ± sample std.")
        elif isinstance(section, Note):
            console.print(f"{section.label}: {section.text}", markup=False)
        elif isinstance(section, SameRuns):
            for line in section.lines:
                console.print(f"[yellow]Same run:[/] {line}")
        elif isinstance(section, Table1):
            view = "plateau merged into step" if section.plateau_into_step else "plateau its own row"
            t1 = RichTable(title=f"Table 1: share of settings where each schedule is Top-1 / Top-3 ({view}), 95 % "
                                 "interval below each row")
            t1.add_column("Schedule")
            for sp in SPLITS:
                for k in ("Top-1", "Top-3"):
                    t1.add_column(f"{sp.capitalize()} {k}", justify="right")
            t1.add_column("Candidates", justify="right")
            for r in section.rows:
                t1.add_row(r.name, *r.shares, r.candidates, style="bold magenta" if r.label == "rex" else None)
                t1.add_row("  95 % interval", *r.intervals, "", style="dim")
            console.print(t1)
        elif isinstance(section, Table):
            t = RichTable(title=section.caption)
            for h in section.head:
                t.add_column(h)
            for r in section.rows:
                t.add_row(*r)
            console.print(t)
        elif isinstance(section, Grouped):
            t = RichTable(title=section.caption)
            t.add_column("Optimizer + schedule")
            for b in section.budgets:
                t.add_column(budget_text(b), justify="right")
            for r in section.rows:
                t.add_row(f"{r.optimizer} + {r.label}",
                          *[f"[bold green]{c.text}[/]" if c.best else c.text for c in r.cells],
                          style="bold magenta" if r.label == "rex" else None)
            console.print(t)
        elif isinstance(section, Line):
            console.print(section.text, markup=False)
        elif isinstance(section, Legend):
            for line in section.lines:
                console.print(line, markup=False)
        elif isinstance(section, Missing):
            if section.lines:
                console.print(f"[bold yellow]Missing trials ({len(section.lines)}):[/]")
                for x in section.lines:
                    console.print(f"  {x}", markup=False)
            else:
                console.print("No missing trials.")
