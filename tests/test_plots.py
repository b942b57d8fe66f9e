"""Figures: files exist and are real PNG / PDF; empty panels are skipped with a warning, not a crash."""
from __future__ import annotations

import math
import warnings
from dataclasses import replace

import numpy as np
import pytest

from budgetsched.bench.protocol.grid import TrialConfig
from budgetsched.bench.rendering.plots import (PlotSkipWarning, _closest, color_for, curves, figure1, figure2, figure2_paired,
                                     figure3)
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


def test_figure3_default_budgets_closest_to_5_and_25():
    assert _closest([1.0, 5.0, 10.0, 25.0, 50.0, 100.0], (5.0, 25.0)) == [5.0, 25.0]
    # |ln(10/5)| < |ln(1/5)|, then 50 is the closest left to 25 (ties on log distance go to the smaller budget)
    assert _closest([1.0, 10.0, 50.0, 100.0], (5.0, 25.0)) == [10.0, 50.0]
    assert _closest([100.0], (5.0, 25.0)) == [100.0]


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
