"""The report reads as a user needs it: it opens with a short plain "how to read this" (the method's jargon at the
end, with docs/protocol.md), and the rich report fits the terminal: at 80 columns a wide table is split by columns
(the row names repeated), so no cell is cut to "…", no line is cropped, and every cell of every table is shown."""
from __future__ import annotations

import math
import re

from rich.console import Console

from budgetsched.bench.analysis.report import build_report
from budgetsched.bench.rendering.markdown import to_markdown
from budgetsched.bench.rendering.rich_text import render_rich
from budgetsched.bench.rendering.sections import Grouped, Table, Table1, sections

from _rows import typed
from test_report_uncertainty import row

BOX = "┏┃┡│└┗┣┠╭╰├"


def wide_study():
    """Five schedules x two optimizers x six budgets x three LRs x three seeds: wide per-task tables and Table 1."""
    rows = []
    for opt in ("sgdm", "adam"):
        for b in (1.0, 5.0, 10.0, 25.0, 50.0, 100.0):
            for i, name in enumerate(("rex", "linear", "cosine", "step", "onecycle")):
                for lr in (0.01, 0.0173205, 0.03):
                    for s in range(3):
                        v = 10 + 30 / b + 0.3 * i + abs(math.log(lr / 0.0173205)) + 0.4 * math.sin(3 * s + i + b)
                        rows.append(row(name, lr, s, v, v + 0.05, task="digits-mlp", opt=opt, budget=b))
    return build_report(typed(rows), resamples=300)


def test_rich_tables_fit_80_columns_without_cutting_a_cell():
    report = wide_study()
    console = Console(width=80, record=True, color_system=None)
    render_rich(report, console)
    text = console.export_text()
    lines = text.splitlines()
    assert "…" not in text
    assert max(len(x) for x in lines) <= 80
    # every line of a table's box is closed on the right: nothing cropped at the edge
    boxed = [x.rstrip() for x in lines if x[:1] in BOX]
    assert boxed and all(x[-1] in "┓┃┩│┘┛┫┨╮╯┤" for x in boxed)
    # every cell of every table is shown (a cell too wide for a line may wrap at a space: compare without spaces)
    flat = re.sub(r"[\s│┃]", "", text)
    cells = []
    for sec in sections(report):
        if isinstance(sec, Table1):
            cells += [c for r in sec.rows for c in (r.name, *r.shares, *r.intervals)]
        elif isinstance(sec, Table):
            cells += [c for r in sec.rows for c in r]
        elif isinstance(sec, Grouped):
            cells += [c.text for r in sec.rows for c in r.cells]
    assert cells and [c for c in cells if re.sub(r"\s", "", c) not in flat] == []
    assert "continued: columns" in text  # Table 1's eight columns do not fit 80: split, and said so


def test_a_wide_console_keeps_one_table():
    console = Console(width=250, record=True, color_system=None)
    render_rich(wide_study(), console)
    assert "continued" not in console.export_text()


def test_the_report_opens_with_how_to_read_it_and_ends_with_the_method():
    report = wide_study()
    md = to_markdown(report)
    opening, rest = md.split("## Table 1", 1)
    assert "How to read this: For each schedule the initial learning rate was picked on the validation data" in opening
    assert "docs/protocol.md" in opening
    jargon = ("ddof", "competition ranking", "t-calibrated", "cross-fitted", "Dirichlet", "draws per setting")
    assert [w for w in jargon if w in opening] == []
    method = rest.split("## How the numbers are computed", 1)[1]
    assert all(w in method for w in jargon if w != "Dirichlet")  # moved, not lost
    assert method.index("Selection: LR (and plateau patience) chosen") < method.index("Uncertainty: 300 draws")
    console = Console(width=80, record=True, color_system=None)
    render_rich(report, console)
    text = console.export_text()
    assert text.index("How to read this") < text.index("Table 1: share") < text.index("How the numbers are computed")
