"""Ablations as paired side tables (not ranked in Table 1) and the report's x3-grid view, on hand-made trials whose
differences are computed by hand.

Every setting here has three seeds; each side's LR is chosen on validation (cross-fitted: the choice for seed s on
seed s + 1's validation), and the difference variant − base is the mean of the per-seed differences with the paired
Student-t interval mean ± t(0.975, 2) · sd / √3, t(0.975, 2) = 4.302652729911275.
"""
from __future__ import annotations

import json
import math

import pytest
from rich.console import Console

from budgetsched.bench.analysis.ablations import ablations, lr_grid_rows, optimizer_pairs, schedule_variants
from budgetsched.bench.protocol import grid
from budgetsched.bench.report import build_report, to_csv, to_json, to_markdown, render_rich
from budgetsched.bench.storage.store import Store
from budgetsched.cli import main

from _rows import typed

T975_2 = 4.302652729911275  # scipy.stats.t.ppf(0.975, 2)
TASK = "digits-mlp"
WARM = {"warmup_fraction": 0.5}
FLAT = {"max_momentum": 0.9, "base_momentum": 0.9}


def row(schedule, lr, seed, val, test, params=None, optimizer="sgdm", budget=10.0, status="done"):
    return {"task": TASK, "schedule": schedule, "schedule_params": params or {}, "optimizer": optimizer,
            "budget": budget, "lr": lr, "seed": seed, "status": status, "val_metric": val, "test_metric": test,
            "val_loss": 1.0, "test_loss": 1.0, "steps": 3, "wall_time": 0.1}


def schedule_rows(schedule, params=None, shift=0.0, noise=(0.0, 0.0, 0.0), lrs=(0.1, 0.3), val_shift=0.0,
                  **kw):
    """Two LRs, three seeds: validation 10 + seed (+1 at the larger LR, so the smaller LR is chosen on every seed);
    test = validation + ``shift`` + ``noise[seed]``."""
    out = []
    for k, lr in enumerate(lrs):
        for seed in range(3):
            v = 10.0 + seed + k + val_shift
            out.append(row(schedule, lr, seed, v, v + shift + noise[seed], params, **kw))
    return out


def interval(diffs):
    m = sum(diffs) / len(diffs)
    sd = math.sqrt(sum((d - m) ** 2 for d in diffs) / (len(diffs) - 1))
    h = T975_2 * sd / math.sqrt(len(diffs))
    return m, m - h, m + h


@pytest.fixture(scope="module")
def study():
    """rex(warm-up) is rex + 1.0 (seed noise +0.1, -0.1, 0): a planted effect; linear(warm-up) is linear + noise
    summing to 0: a null pair; onecycle without its momentum cycle; schedule-free 0.5 better than linear."""
    rows = (schedule_rows("rex") + schedule_rows("rex", WARM, 1.0, (0.1, -0.1, 0.0))
            + schedule_rows("linear", val_shift=0.5) + schedule_rows("linear", WARM, 0.0, (-0.2, 0.1, 0.1), val_shift=0.5)
            + schedule_rows("onecycle", val_shift=2.0) + schedule_rows("onecycle", FLAT, 0.3, val_shift=2.0)
            + schedule_rows("schedule-free", shift=-0.5, val_shift=0.5))
    return typed(rows)


def pair(ab, name):
    found = [p for p in ab.pairs if p.name == name]
    assert len(found) == 1, [p.name for p in ab.pairs]
    return found[0]


def test_a_planted_effect_is_measured_with_an_interval_that_contains_it(study):
    d = pair(ablations(study), "rex(warmup_fraction=0.5) − rex").difference
    m, lo, hi = interval([1.1, 0.9, 1.0])  # by hand: 1.0 ± 4.3027 · 0.1 / √3
    assert (d.value, d.lo, d.hi) == pytest.approx((1.0, 0.7515863, 1.2484137), abs=1e-6)
    assert (d.value, d.lo, d.hi) == pytest.approx((m, lo, hi))
    assert d.lo <= 1.0 <= d.hi and d.clear == "worse" and d.n == 3
    assert d.relative == pytest.approx(1.0 / 11.0)  # the base's mean test over the seeds: (10 + 11 + 12) / 3


def test_a_null_pair_has_an_interval_containing_zero(study):
    d = pair(ablations(study), "linear(warmup_fraction=0.5) − linear").difference
    m, lo, hi = interval([-0.2, 0.1, 0.1])
    assert (d.value, d.lo, d.hi) == pytest.approx((m, lo, hi), abs=1e-9)
    assert d.value == pytest.approx(0.0, abs=1e-9) and d.lo < 0 < d.hi and d.clear is None


def test_pairs_are_detected_from_the_labels(study):
    ab = ablations(study)
    assert schedule_variants(study) == {"rex(warmup_fraction=0.5)": "rex", "linear(warmup_fraction=0.5)": "linear",
                                        "onecycle(base_momentum=0.9,max_momentum=0.9)": "onecycle"}
    assert sorted(p.name for p in ab.pairs) == sorted([
        "linear(warmup_fraction=0.5) − linear", "onecycle(base_momentum=0.9,max_momentum=0.9) − onecycle",
        "rex(warmup_fraction=0.5) − rex", "schedule-free − best tuned", "schedule-free − linear"])
    assert ab.variants == ("linear(warmup_fraction=0.5)", "onecycle(base_momentum=0.9,max_momentum=0.9)",
                           "rex(warmup_fraction=0.5)")
    assert ab.table1_labels == ("onecycle", "linear", "schedule-free", "rex")
    flat = pair(ab, "onecycle(base_momentum=0.9,max_momentum=0.9) − onecycle").difference
    assert (flat.value, flat.lo, flat.hi) == pytest.approx((0.3, 0.3, 0.3))  # no seed noise: a zero-width interval
    # schedule-free against the best tuned schedule (rex: the lowest validation) and against linear: 10.5 + seed - 0.5
    best = pair(ab, "schedule-free − best tuned")
    assert best.base_label == "rex" and best.difference.value == pytest.approx(0.0, abs=1e-12)
    assert pair(ab, "schedule-free − linear").difference.value == pytest.approx(-0.5)
    s = {x.name: x for x in ab.summary}["rex(warmup_fraction=0.5) − rex"]
    assert (s.n, s.mean, s.better, s.worse, s.within_noise, s.no_interval) == (1, pytest.approx(1.0), 0, 1, 0, 0)


def test_other_studies_parameters_are_not_variants():
    # a delayed decay (Figure 2), a sampling rate (Table 2) and a budget change are their own studies
    rows = typed(schedule_rows("linear") + schedule_rows("linear", {"delay": 0.5})
                 + schedule_rows("rex") + schedule_rows("rex", {"sampling": "50-75"}))
    assert schedule_variants(rows) == {} and ablations(rows) is None


def test_optimizer_pairs_and_the_x3_grid_choice(monkeypatch):
    if "adamw" not in grid.OPTIMIZERS:  # the optimizer may not be registered yet: the pair is found by its name
        monkeypatch.setattr(grid, "OPTIMIZERS", (*grid.OPTIMIZERS, "adamw"))
    assert optimizer_pairs(["sgdm", "adam", "adamw"]) == [("adamw", "adam")] and optimizer_pairs(["sgdm"]) == []
    # linear at 0.1 and 0.3 (the x3 grid) and 0.173 (a refinement point, the best on validation, test 0.4 lower)
    refined = [row("linear", 0.173, s, 9.5 + s, 9.5 + s - 0.4 + (0.1, -0.1, 0.0)[s], optimizer=o)
               for s in range(3) for o in ("adam", "adamw")]
    # schedule-free's Adam and AdamW trials are one run (AdamWScheduleFree for both): the same values, no pair
    same = schedule_rows("schedule-free", optimizer="adam") + schedule_rows("schedule-free", optimizer="adamw")
    rows = typed(schedule_rows("linear", optimizer="adam") + schedule_rows("linear", optimizer="adamw", shift=-0.2)
                 + refined + same)
    ab = ablations(rows)
    assert ab.table1_labels is None and ab.optimizer_pairs == (("adamw", "adam"),)
    assert [p.name for p in ab.pairs if p.kind == "optimizer"] == ["linear: adamw − adam"]
    opt = pair(ab, "linear: adamw − adam")
    assert (opt.optimizer, opt.base_optimizer) == ("adamw", "adam")
    assert opt.difference.value == pytest.approx(0.0, abs=1e-12)  # both choose 0.173, the same test values there
    for o in ("adam", "adamw"):
        x3 = [p for p in ab.pairs if p.kind == "lr-grid" and p.optimizer == o]
        assert len(x3) == 1 and (x3[0].variant_lr, x3[0].base_lr) == (0.1, 0.173)
        shift = -0.2 if o == "adamw" else 0.0  # x3 chooses 0.1: test 10 + s (+ shift); refined 0.173: 9.1 + s + noise
        m, lo, hi = interval([10 + s + shift - (9.1 + s + (0.1, -0.1, 0.0)[s]) for s in range(3)])
        d = x3[0].difference
        assert (d.value, d.lo, d.hi) == pytest.approx((m, lo, hi))


def test_x3_filter_keeps_exactly_the_grid_lrs():
    rows = typed([row("rex", lr, 0, 1.0, 1.0) for lr in (0.01, 0.03, 0.0577, 0.1, 0.173, 0.3, 1.0, 3.0, 0.5)])
    kept, view = lr_grid_rows(rows, "x3")
    assert sorted(r.lr for r in kept) == [0.01, 0.03, 0.1, 0.3, 1.0, 3.0]
    assert (view.grid, view.kept, view.left_out, view.left_out_lrs) == ("x3", 6, 3, (0.0577, 0.173, 0.5))
    assert lr_grid_rows(rows, "all")[0] == rows


@pytest.fixture(scope="module")
def store(tmp_path_factory, study):
    path = tmp_path_factory.mktemp("ablations") / "study.db"
    with Store(path) as s:
        for r in study + typed([row("rex", 0.173, seed, 12.0 + seed, 12.0 + seed) for seed in range(3)]):
            s.put(r.config, r.result())
    return path


def test_the_report_has_the_section_and_table1_ranks_the_bases(store, tmp_path, capsys):
    assert main(["report", str(store), "--format", "json", "--resamples", "200"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert sorted(rep["table1"]) == ["linear", "onecycle", "rex", "schedule-free"]
    ab = rep["ablations"]
    assert ab["not_ranked_in_table1"] == ["linear(warmup_fraction=0.5)", "onecycle(base_momentum=0.9,max_momentum=0.9)",
                                          "rex(warmup_fraction=0.5)"]
    warm = next(p for p in ab["pairs"] if p["pair"] == "rex(warmup_fraction=0.5) − rex")
    assert (warm["difference"], warm["clear"], warm["variant_lr"], warm["base_lr"]) == (pytest.approx(1.0), "worse",
                                                                                         0.1, 0.1)
    assert any(p["kind"] == "lr-grid" and p["pair"] == "rex: x3 grid − refined grid" for p in ab["pairs"])
    assert "lr_grid" not in rep
    out = tmp_path / "r.md"
    assert main(["report", str(store), "--format", "md", "--resamples", "200", "--output", str(out)]) == 0
    md = out.read_text()
    assert "## Ablations (paired, not ranked)" in md and "### Ablations, digits-mlp: variant − base" in md
    assert "Not ranked in Table 1 (ablation variants" in md and "| rex(warmup_fraction=0.5) − rex | schedule variant |" in md
    table1 = md.split("## Table 1")[1].split("Not ranked")[0]
    assert "warmup" not in table1 and "| rex |" in table1


def test_x3_report_says_which_grid_it_read(store, tmp_path, capsys):
    assert main(["report", str(store), "--format", "json", "--resamples", "200", "--lr-grid", "x3"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["lr_grid"] == {"grid": "x3", "kept": 42, "left_out": 3, "left_out_lrs": [0.173]}
    assert all(lr in (0.1, 0.3) for s in rep["settings"] for c in s["schedules"].values() for lr in c["lr_grid"])
    assert not any(p["kind"] == "lr-grid" for p in rep["ablations"]["pairs"])  # nothing refined left to compare
    out = tmp_path / "x3.md"
    assert main(["report", str(store), "--format", "md", "--resamples", "200", "--lr-grid", "x3",
                 "--output", str(out)]) == 0
    assert "LR grid: the paper's x3 grid alone (LRs 1 or 3 times a power of ten): 42 trials read, 3 left out " \
           "(LRs 0.173, refinement points)." in out.read_text()
    with pytest.raises(SystemExit) as e:
        main(["report", str(store), "--lr-grid", "x9"])
    assert e.value.code == 2 and "--lr-grid: invalid choice: 'x9'" in capsys.readouterr().err


def test_rich_renders_the_section(store, study):
    report = build_report(study, resamples=200, rank_labels=ablations(study).table1_labels)
    console = Console(record=True, width=160)
    render_rich(report, console, ablations=ablations(study))
    text = console.export_text()
    assert "Ablations (paired, not ranked)" in text and "Not ranked in Table 1" in text


def test_a_study_without_ablation_pairs_reports_byte_identically():
    rows = typed(schedule_rows("rex") + schedule_rows("linear", val_shift=0.5) + schedule_rows("linear", {"delay": 0.5}))
    assert ablations(rows) is None
    report = build_report(rows, resamples=200)
    kept, view = lr_grid_rows(rows, "all")
    assert to_markdown(report, ablations=None, lr_grid=view) == to_markdown(report)
    assert to_json(report, ablations=None, lr_grid=view) == to_json(report)
    assert to_csv(report) == to_csv(build_report(kept, resamples=200))


def test_x3_report_does_not_call_the_designs_off_grid_lrs_missing(tmp_path, capsys):
    # the design asks for LR 0.05 (off the 1-3 grid) and 0.1; read on the x3 grid, 0.05 is left out, not missing
    path = tmp_path / "design.db"
    with Store(path) as s:
        s.record_study({"tasks": [TASK], "schedules": ["rex", "linear"], "optimizers": ["sgdm"], "budgets": [10.0],
                        "lrs": [0.05, 0.1], "seeds": 2})
        for r in typed(row(name, lr, seed, 10.0 + seed, 10.0 + seed) for name in ("rex", "linear")
                       for lr in (0.05, 0.1) for seed in range(2)):
            s.put(r.config, r.result())
    assert main(["report", str(path), "--format", "json", "--resamples", "200", "--lr-grid", "x3"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["missing"] == [] and rep["lr_grid"] == {"grid": "x3", "kept": 4, "left_out": 4, "left_out_lrs": [0.05]}
    assert "ablations" not in rep  # no variant: no side tables
