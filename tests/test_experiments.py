"""Report sections of the paper's other experiments on hand-made stores: Table 2 (sampling rates), budget
changes (paired differences against the run that knew its budget), and the figures."""
from __future__ import annotations

import pytest

from budgetsched.bench.analysis.experiments import budget_change_cells, sampling_cells
from budgetsched.bench.rendering.experiments import markdown_sections
from budgetsched.bench.rendering.plots import delay_figure, sampling_heatmap
from budgetsched.bench.analysis.report import build_report

from _rows import typed
from test_report_uncertainty import row


def sampled(profile, rate, vals, **params):
    out = []
    for seed, v in enumerate(vals):
        r = row(profile, 0.3, seed, v, v + 1.0)
        r["schedule_params"] = {**params, "sampling": rate}
        r["label"] = f"{profile}(sampling={rate})"
        r["key"] += rate
        out.append(r)
    return out


def test_table2_cells_and_markdown():
    rows = [*sampled("rex", "every-step", [10.0, 11.0, 12.0]), *sampled("rex", "50-75", [14.0, 15.0, 16.0]),
            *sampled("exp", "every-step", [13.0, 13.0, 13.0], gamma=-5.668),
            *sampled("exp", "50-75", [9.0, 9.5, 10.0], gamma=-5.668)]
    cells = sampling_cells(typed(rows))[("T", "sgdm", 10.0)]
    m, lo, hi = cells[("rex", "every-step")]
    assert m == pytest.approx(12.0) and lo < 12.0 < hi  # test = val + 1: 11, 12, 13; t interval
    assert cells[("step≈exp", "50-75")][0] == pytest.approx(10.5)
    md = markdown_sections(typed(rows))
    assert "## Sampling rates (the paper's Table 2)" in md and "| 50-75 |" in md
    assert "**12.00" in md  # best at every-step is rex
    assert markdown_sections(typed([row("rex", 0.1, 0, 1.0)])) == ""


def test_budget_change_cells_pair_seeds_against_the_run_from_the_start():
    rows = []
    for seed, base in enumerate([20.0, 22.0, 21.0]):
        rows.append(row("linear", 0.1, seed, base, base, budget=100.0))
        for how, delta in (("continue", -0.5), ("restart", 1.0), ("keep", 5.0)):
            r = row("linear", 0.1, seed, base + delta, base + delta, budget=100.0)
            r["schedule_params"] = {"planned_budget": 25, "change_at": 20, "on_change": how}
            r["label"] = f"linear(change_at=20,on_change={how},planned_budget=25)"
            r["key"] += how
            rows.append(r)
    cells = {c.on_change: c for c in budget_change_cells(typed(rows))}
    assert cells["continue"].difference == (pytest.approx(-0.5), pytest.approx(-0.5), pytest.approx(-0.5))
    assert cells["keep"].difference[0] == pytest.approx(5.0) and cells["keep"].n == 3
    assert "## Budget changes learned mid-run" in markdown_sections(typed(rows))


def test_experiment_figures(tmp_path):
    rows = [*sampled("rex", "every-step", [10.0, 11.0, 12.0]), *sampled("linear", "10-10", [14.0, 15.0, 16.0])]
    assert [p.name for p in sampling_heatmap(typed(rows), tmp_path)] == ["table2_sampling.png", "table2_sampling.pdf"]
    delay_rows = []
    for b in (10.0, 100.0):
        for seed in range(3):
            delay_rows += [row("rex", 0.1, seed, 10.0 + seed, budget=b), row("step", 0.1, seed, 9.0 + seed, budget=b)]
            r = row("linear", 0.1, seed, 11.0 + seed, budget=b)
            r["schedule_params"], r["label"], r["key"] = {"delay": 0.5}, "linear(delay=0.5)", r["key"] + "d"
            delay_rows.append(r)
    files = delay_figure(build_report(typed(delay_rows), resamples=200), tmp_path)
    assert [p.name for p in files] == ["figure2_delay.png", "figure2_delay.pdf"] and files[0].stat().st_size > 10_000
