"""Figures: files exist and are real PNG / PDF; empty panels are skipped with a warning, not a crash."""
from __future__ import annotations

import math
import warnings
from dataclasses import replace

import numpy as np
import pytest

from budgetsched.bench.protocol.grid import TrialConfig
from budgetsched.bench.rendering.plots import (PlotSkipWarning, color_for, curves, draw_figure3, figure1, figure2,
                                               figure2_paired, figure3, figure3_budgets)
from budgetsched.errors import UsageError
from budgetsched.bench.analysis.report import build_report

from _rows import typed

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def check_files(files, stem):
    assert sorted(p.suffix for p in files) == [".pdf", ".png"]
    for p in files:
        assert p.stem == stem or p.stem.startswith(stem)
        data = p.read_bytes()
        assert len(data) > 1000
        assert data.startswith(PNG_MAGIC if p.suffix == ".png" else b"%PDF-")


def make_rows():
    """A small study: 2 optimizers x 3 budgets x 4 schedules (one delayed-linear, plateau) x 2 LRs x 2 seeds."""
    rows = []
    scheds = [("rex", ()), ("linear", ()), ("delayed-linear", (("delay", 0.5),)), ("plateau", (("patience", 5),))]
    for opt in ("sgdm", "adam"):
        for budget in (1.0, 5.0, 25.0):
            for i, (name, params) in enumerate(scheds):
                for lr in (0.01, 0.1):
                    for seed in (0, 1):
                        c = TrialConfig("toy", name, opt, budget, lr, seed, params)
                        err = 30.0 / math.sqrt(budget) + i + (lr == 0.1) * 2 + seed * 0.3
                        epochs = max(1, int(budget / 5) + 2)
                        diverged = name == "linear" and lr == 0.1 and budget == 25.0
                        rows.append({
                            **c.to_dict(), "key": c.key, "label": c.label,
                            "status": "diverged" if diverged else "done",
                            "val_metric": None if diverged else err, "test_metric": None if diverged else err + 0.1,
                            "val_loss": None, "test_loss": None, "error": None,
                            "curves": {"epoch": list(range(1, epochs + 1)),
                                       "lr": [lr * (1 - e / epochs) for e in range(epochs)],
                                       "train_loss": [2.0 / (e + 1) for e in range(epochs)],
                                       "val_metric": [err + 5.0 / (e + 1) for e in range(epochs)]},
                        })
    return typed(rows)  # as the store gives them


def test_colours_are_consistent():
    assert color_for("rex") == color_for("rex") != color_for("linear")
    assert color_for("delayed-linear(delay=0.5)") != color_for("delayed-linear(delay=0.9)")
    assert color_for("something-new") == color_for("something-new")


def test_figure1(tmp_path):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        files = figure1(tmp_path / "figs")
    check_files(files, "figure1")
    assert any("plateau" in str(x.message) for x in w if issubclass(x.category, PlotSkipWarning))


def test_figure2_3_and_curves(tmp_path):
    rows = make_rows()
    report = build_report(rows, metric_names={"toy": "error %"})
    check_files(figure2(report, tmp_path), "figure2")
    check_files(figure3(rows, tmp_path), "figure3")
    check_files(curves(rows, tmp_path, task="toy", optimizer="adam", budget=5.0, report=report), "curves_toy_adam_5")


def test_figure2_paired_against_the_reference(tmp_path):
    rows = make_rows()
    check_files(figure2_paired(build_report(rows, reference="rex"), tmp_path), "figure2_paired")
    without = build_report([r for r in rows if r.label != "linear"])  # the default reference is absent
    assert without.reference is None
    with pytest.warns(PlotSkipWarning, match="no reference schedule; nothing written"):
        assert figure2_paired(without, tmp_path / "none") == []
    assert not (tmp_path / "none" / "figure2_paired.png").exists()


def test_figure3_default_budgets_are_the_papers_or_every_budget_run():
    # the paper's 5 % and 25 % when both were run
    assert figure3_budgets([1.0, 5.0, 10.0, 25.0, 50.0, 100.0]) == ([5.0, 25.0], "")
    # otherwise every budget run (never a silent nearest budget, never without the 100 % panel), and it says so
    assert figure3_budgets([1.0, 10.0, 50.0, 100.0]) == (
        [1.0, 10.0, 50.0, 100.0], "the paper's 5 % and 25 % not run: every budget run is shown")
    assert figure3_budgets([5.0, 100.0]) == ([5.0, 100.0], "the paper's 25 % not run: every budget run is shown")
    assert figure3_budgets([100.0]) == ([100.0], "the paper's 5 % and 25 % not run: every budget run is shown")


def test_empty_data_is_skipped_with_a_warning(tmp_path):
    assert not list(tmp_path.iterdir())
    with pytest.warns(PlotSkipWarning, match="no data"):
        assert figure2([], tmp_path) == []
    with pytest.warns(PlotSkipWarning, match="no data"):
        assert figure3([], tmp_path) == []
    # strip the curves: curves() has nothing to draw
    rows = [replace(r, curves={}) for r in make_rows() if r.budget == 25.0 and r.optimizer == "sgdm"]
    with pytest.warns(PlotSkipWarning) as rec:
        assert curves(rows, tmp_path) == []
    assert [str(x.message) for x in rec] == ["curves: no stored curves for toy / sgdm / 25%; trying the next setting",
                                             "curves: no setting has stored curves; nothing written"]
    with pytest.warns(PlotSkipWarning, match=r"no finished trial for toy / sgdm / 50%"):
        figure3(rows, tmp_path, budgets=[25.0, 50.0])
    with pytest.raises(ValueError, match="no setting matches task='nope'.*toy/sgdm/25%"):
        curves(rows, tmp_path, task="nope")
    with pytest.raises(ValueError, match="metric must be 'test' or 'val'"):
        figure3(rows, tmp_path, metric="train")


def test_a_point_outside_its_own_interval_is_drawn(tmp_path):
    # the selection redone in every draw can put the point estimate outside its interval; the bar ends at the point
    import matplotlib.pyplot as plt

    from budgetsched.bench.rendering import plots

    fig, ax = plt.subplots()
    plots._errorbars(ax, np.array([1.0, 5.0]), np.array([2.0, 3.0]), np.array([2.5, 1.0]), np.array([4.0, 2.5]), "rex")
    segments = ax.collections[0].get_segments()
    assert [tuple(s[:, 1]) for s in segments] == [(2.0, 4.0), (1.0, 3.0)]
    plt.close(fig)


def refined_rows(budgets=(10.0, 50.0, 100.0), unit="steps"):
    """rex and linear on a refined LR grid (0.003 ... 0.1 with x/÷ sqrt 3 points around 0.01 and 0.03, 7 LRs: the labels
    0.0057735, 0.0173205, 0.0519615 that ran together), 2 seeds, budgets in ``unit``."""
    base = [0.003, 0.01, 0.03, 0.1]
    lrs = sorted(set(base) | {x * 3 ** s for x in (0.01, 0.03) for s in (-0.5, 0.5)})
    rows = []
    for b in budgets:
        for name in ("rex", "linear"):
            for lr in lrs:
                for seed in (0, 1):
                    c = TrialConfig("toy", name, "adam", b, lr, seed, (), unit)
                    err = 5 + abs(math.log(lr / 0.02)) + 10 / b + 0.2 * seed + (name == "linear")
                    rows.append({**c.to_dict(), "key": c.key, "label": c.label, "status": "done", "val_metric": err,
                                 "test_metric": err + 0.1, "curves": {}, "total_steps": int(19.2 * b)})
    return typed(rows)


def tick_labels_clear(fig):
    """Every axis's visible x tick labels, and whether any two of them overlap once rendered."""
    renderer = fig.canvas.get_renderer()
    shown, overlaps = [], []
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        labels = [t for t in ax.xaxis.get_ticklabels(which="both") if t.get_visible() and t.get_text()]
        boxes = sorted(((b.x0, b.x1), text) for b, text in ((t.get_window_extent(renderer), t.get_text())
                                                               for t in labels))
        shown.append([text for _, text in boxes])
        overlaps += [(a, b) for (ea, a), (eb, b) in zip(boxes, boxes[1:]) if ea[1] > eb[0]]
    return shown, overlaps


def test_figure3_lr_ticks_of_a_refined_grid_do_not_overlap(tmp_path):
    import matplotlib.ticker

    fig = draw_figure3(refined_rows())
    shown, overlaps = tick_labels_clear(fig)
    assert overlaps == []
    for labels in shown:
        assert "0.01" in labels and "0.1" in labels  # round grid values keep their labels
        assert all(len(x.replace("0.", "").lstrip("0")) <= 2 for x in labels)  # two significant digits at most
        assert not any(x.startswith("0.0577") or x == "0.0173205" for x in labels)
    # every LR of the grid still has a tick (labelled or not)
    ax = fig.axes[0]
    ticks = sorted([*ax.get_xticks(), *ax.get_xticks(minor=True)])
    assert len(ticks) == 7 and isinstance(ax.xaxis.get_minor_formatter(), matplotlib.ticker.NullFormatter)
    # without the paper's 5 and 25 %: every budget run, the 100 % panel included, and the title says so
    assert [a.get_title() for a in fig.axes if a.get_visible()] == [
        "toy / adam / 10 % budget (192 steps)", "toy / adam / 50 % budget (960 steps)",
        "toy / adam / 100 % budget (1920 steps)"]
    title = fig._suptitle.get_text().replace("\n", " ")
    assert "the paper's 5 % and 25 % not run: every budget run is shown" in title
    assert "budgets in % of the 100 % run's steps" in title
    check_files(figure3(refined_rows(), tmp_path), "figure3")


def test_figures_say_epochs_only_for_epoch_budgets(tmp_path):
    steps, epochs = build_report(refined_rows()), build_report(refined_rows(unit="epochs"))
    assert "of epochs" not in draw_figure3(refined_rows())._suptitle.get_text()
    assert "the 100 % run's epochs" in draw_figure3(refined_rows(unit="epochs"))._suptitle.get_text()
    from budgetsched.bench.rendering import plots

    labels = {}
    for name, rep in (("steps", steps), ("epochs", epochs)):
        fig, axes = plots._grid(1)
        plots._budget_axes(axes[0], [10.0, 100.0], "toy", "adam", "test", plots.unit_of(
            s.budget_unit for s in rep.settings))
        labels[name] = axes[0].get_xlabel()
    assert labels == {"steps": "budget (% of the 100 % run's steps, log scale)",
                      "epochs": "budget (% of the 100 % run's epochs, log scale)"}


def test_budgets_and_schedules_filters(tmp_path):
    rows = make_rows()
    report = build_report(rows)
    fig = draw_figure3(rows, budgets=[5.0], schedules=["rex", "plateau"])
    drawn = {t.get_text() for ax in fig.axes for t in ax.get_legend().get_texts()} if fig.axes else set()
    assert drawn == {"rex", "plateau"}
    assert sorted(a.get_title() for a in fig.axes if a.get_visible()) == ["toy / adam / 5 % budget",
                                                                          "toy / sgdm / 5 % budget"]
    check_files(figure2(report, tmp_path, budgets=[5.0, 25.0], schedules=["rex"]), "figure2")
    with pytest.raises(UsageError, match=r"schedule\(s\) not in the study: 'rexx' \(did you mean 'rex'\?\)"):
        figure2(report, tmp_path / "no", schedules=["rexx"])
    with pytest.raises(UsageError, match=r"'lienar' \(did you mean 'linear'\?\)"):
        figure3(rows, tmp_path / "no", schedules=["lienar"])
    assert not (tmp_path / "no").exists()  # refused before any directory is made
    from budgetsched.bench.rendering.figure_axes import check_selection

    with pytest.raises(UsageError, match=r"budget\(s\) not in the study: 30% \(did you mean 25%\?\); budgets run: "
                                         r"1%, 5%, 25%"):
        check_selection([30.0], None, [1.0, 5.0, 25.0], ["rex"])


def test_curves_for_a_budget_say_its_steps(tmp_path):
    rows = [replace(r, total_steps=int(19.2 * r.budget)) for r in make_rows()]
    files = curves(rows, tmp_path, task="toy", optimizer="adam", budget=25.0, schedules=["rex"])
    check_files(files, "curves_toy_adam_25")


def test_error_bars_stay_inside_the_metric_range(tmp_path):
    # two seeds far apart near 0 % error: the Student-t interval of their mean reaches below 0, the bar stops at 0
    import matplotlib.pyplot as plt

    from budgetsched.bench.analysis.rows import metric_bounds
    from budgetsched.bench.rendering import plots

    assert metric_bounds("error %") == (0.0, 100.0)
    assert metric_bounds("bits/char") == (0.0, math.inf) and metric_bounds("nll") == (0.0, math.inf)
    assert metric_bounds("reward (negated)") == (-math.inf, math.inf)  # a user's metric may be negative
    fig, ax = plt.subplots()
    plots._errorbars(ax, np.array([1.0, 5.0]), np.array([0.5, 99.0]), np.array([-12.2, 90.0]),
                     np.array([13.2, 108.0]), "rex", metric_bounds("error %"))
    segments = ax.collections[0].get_segments()
    assert [tuple(s[:, 1]) for s in segments] == [(0.0, 13.2), (90.0, 100.0)]
    plt.close(fig)



def test_value_figures_pass_the_metric_range_to_their_error_bars(tmp_path, monkeypatch):
    from budgetsched.bench.rendering import plots

    seen = []
    real = plots._errorbars
    monkeypatch.setattr(plots, "_errorbars", lambda *a, **k: (seen.append(a[6:] or tuple(k.values())), real(*a, **k)))
    report = build_report(make_rows())
    report = replace(report, metric_names={**report.metric_names, "toy": "error %"})
    figure2(report, tmp_path)
    assert seen and all(b == ((0.0, 100.0),) for b in seen)
