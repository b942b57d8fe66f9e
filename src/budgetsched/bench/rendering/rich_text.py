"""The report on a terminal: each section of :func:`budgetsched.bench.rendering.sections.sections` as rich text and
tables (``budgetsched report --format rich``).

Tables fit the console's width (:func:`_print_table`): a table wider than the terminal is printed as several
tables, each with the row names and as many of the other columns as fit ("columns 2-4 of 7" in the title), so no
cell is cut to "…" at 80 columns; a column too wide even alone wraps its cells at spaces (a long word folds).
"""
from __future__ import annotations

from typing import Any, Sequence

from budgetsched.bench.analysis.ablations import Ablations, LrGridView
from budgetsched.bench.analysis.report_model import SPLITS, Report
from budgetsched.bench.rendering.sections import (OFF_PLAN, Details, Grouped, Legend, Line, Missing, Note,
                                                  OffPlanList, Overview, SameRuns, Table, Table1, sections)
from budgetsched.bench.rendering.text import budget_text

__all__ = ["render_rich"]


#: Box borders and padding a rich table adds: a rule left of every column and one at the end; one space each side.
_PAD, _RULE = 2, 1


def _width(text: str) -> int:
    from rich.text import Text

    return Text.from_markup(text).cell_len


def _groups(widths: Sequence[int], first: int, room: int) -> list[list[int]]:
    """Column indices (after the first) split into groups that fit ``room`` cells beside the first column."""
    out: list[list[int]] = [[]]
    used = first + _PAD + 2 * _RULE
    for i, w in enumerate(widths):
        need = w + _PAD + _RULE
        if out[-1] and used + need > room:
            out.append([])
            used = first + _PAD + 2 * _RULE
        out[-1].append(i)
        used += need
    return out


def _print_table(console: Any, caption: str, head: Sequence[tuple[str, str]],
                 rows: Sequence[tuple[Sequence[str], str | None]]) -> None:
    """A table of ``head`` (header, justify) columns and ``rows`` (cells, style), split by columns so that every
    part fits ``console.width`` (the first column repeated in each); cells fold rather than end in "…"."""
    from rich.table import Table as RichTable

    # rich keeps a header on one line while it can, so a column needs its header's whole width
    widths = [max([_width(h)] + [_width(r[0][i]) for r in rows]) for i, (h, _) in enumerate(head)]
    groups = _groups(widths[1:], widths[0], console.width)
    for n, group in enumerate(groups):
        cols = [0, *(i + 1 for i in group)]
        span = (f"column {group[0] + 2}" if len(group) == 1 else f"columns {group[0] + 2}-{group[-1] + 2}") \
            + f" of {len(head)}"
        title = caption if len(groups) == 1 else (f"{caption} ({span})" if n == 0 else
                                                  f"{caption.split(':')[0]}, continued: {span}")
        t = RichTable(title=title)
        for i in cols:
            t.add_column(head[i][0], justify=head[i][1], overflow="fold")
        for cells, style in rows:
            t.add_row(*(cells[i] for i in cols), style=style)
        console.print(t)


def render_rich(report: Report, console: Any, *, ablations: Ablations | None = None,
                lr_grid: LrGridView | None = None) -> None:
    """Print the report to a ``rich.console.Console``: the sections of
    :func:`~budgetsched.bench.rendering.markdown.to_markdown` as rich tables (``ablations`` / ``lr_grid`` as there)."""
    for section in sections(report, ablations=ablations, lr_grid=lr_grid):
        if isinstance(section, Overview):
            o = section
            console.print(f"[bold]Trials[/]: {o.done} done, {o.diverged} diverged, {o.failed} failed; "
                          f"{o.n_settings} settings ({o.n_low} low budget, {o.n_settings - o.n_low} high; "
                          f"{o.n_counted} counted in Table 1); seeds per setting: {o.seeds}.{o.units}")
        elif isinstance(section, Note):
            console.print(f"{section.label}: {section.text}", markup=False)
        elif isinstance(section, Details):
            console.print("[bold]How the numbers are computed[/] (the whole protocol: docs/protocol.md)")
            for n in section.notes:
                console.print(f"{n.label}: {n.text}", markup=False)
        elif isinstance(section, SameRuns):
            for line in section.lines:
                console.print(f"[yellow]Same run:[/] {line}")
        elif isinstance(section, Table1):
            view = "plateau merged into step" if section.plateau_into_step else "plateau its own row"
            head = [("Schedule", "left"), *((f"{sp.capitalize()} {k}", "right") for sp in SPLITS
                                            for k in ("Top-1", "Top-3")), ("Candidates", "right")]
            rows: list[tuple[Sequence[str], str | None]] = []
            for r in section.rows:
                rows.append(((r.name, *r.shares, r.candidates), "bold magenta" if r.label == "rex" else None))
                rows.append((("  95 % interval", *r.intervals, ""), "dim"))
            _print_table(console, f"Table 1: share of settings where each schedule is Top-1 / Top-3 ({view}), 95 % "
                                  "interval below each row", head, rows)
            if section.note:  # what it counts (the headline rule)
                console.print(section.note, markup=False)
        elif isinstance(section, Table):
            _print_table(console, section.caption, [(h, "left") for h in section.head],
                         [(tuple(r), None) for r in section.rows])
        elif isinstance(section, Grouped):
            _print_table(console, section.caption,
                         [("Optimizer + schedule", "left"), *((budget_text(b), "right") for b in section.budgets)],
                         [((f"{r.optimizer} + {r.label}",
                            *(f"[bold green]{c.text}[/]" if c.best else c.text for c in r.cells)),
                           "bold magenta" if r.label == "rex" else None) for r in section.rows])
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
        elif isinstance(section, OffPlanList):
            console.print(f"[bold yellow]{OFF_PLAN} ({len(section.lines)}):[/]")
            for x in section.lines:
                console.print(f"  {x}", markup=False)
