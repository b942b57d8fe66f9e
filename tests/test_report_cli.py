"""``budgetsched report`` / ``plot`` options for the uncertainty: reference, subject, resamples, seed, figures."""
from __future__ import annotations

import json

import pytest

from budgetsched.bench.protocol.grid import TrialConfig
from budgetsched.bench.storage.store import Store
from budgetsched.cli import main


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    """rex beats linear by 0.1 on every seed; cosine is 1 worse; two budgets, three seeds."""
    path = tmp_path_factory.mktemp("cli") / "study.db"
    with Store(path) as s:
        for budget in (5.0, 25.0):
            for name, extra in (("rex", 0.0), ("linear", 0.1), ("cosine", 1.0)):
                for seed in range(3):
                    v = 10.0 + 3 * seed + extra
                    s.put(TrialConfig("digits-mlp", name, "sgdm", budget, 0.1, seed),
                          dict(status="done", val_loss=1.0, val_metric=v, test_loss=1.0, test_metric=v, curves={},
                               steps=3, wall_time=0.1))
    return path


def test_report_options(db, capsys):
    assert main(["report", str(db), "--format", "json", "--reference", "cosine", "--subject", "linear",
                 "--resamples", "500", "--seed", "7"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert (rep["reference"], rep["subject"]) == ("cosine", "linear")
    assert rep["uncertainty"] == {"method": "t", "resamples": 500, "seed": 7, "confidence": 0.95,
                                  "seeds_per_setting": [3]}
    s = rep["settings"][0]
    assert s["vs_reference"]["rex"]["value"] == pytest.approx(-1.0) and s["vs_reference"]["rex"]["clear"] == "better"
    assert s["schedules"]["rex"]["p_top1"] == 1.0 and s["tied_within_noise"] is False


@pytest.mark.parametrize("args, needle", [
    (["--reference", "nope"], "reference schedule 'nope' is not in the study; choose from cosine, linear, rex"),
    (["--subject", "nope"], "subject schedule 'nope' is not ranked in Table 1; choose from cosine, linear, rex"),
    (["--resamples", "10"], "resamples must be an integer >= 200, got 10"),
    (["--seed", "-2"], "resampling seed must be an integer >= 0, got -2"),
])
def test_bad_report_options_are_one_line_errors(db, capsys, args, needle):
    assert main(["report", str(db), *args]) == 2
    err = capsys.readouterr().err
    assert err == f"budgetsched: error: {needle}\n"


def test_report_md_with_figures(db, tmp_path):
    out = tmp_path / "docs" / "results.md"
    out.parent.mkdir()
    figs = tmp_path / "docs" / "figures"
    assert main(["report", str(db), "--format", "md", "--output", str(out), "--figures", str(figs),
                 "--resamples", "500"]) == 0
    md = out.read_text()
    assert "![Figure 2: test metric vs budget (95 % intervals)](figures/figure2.png)" in md
    assert "![Figure 3: test metric vs initial LR (95 % intervals)](figures/figure3.png)" in md
    assert "![Figure 2 (paired): each schedule − linear vs budget (95 % intervals)](figures/figure2_paired.png)" in md
    for stem in ("figure2", "figure2_paired", "figure3"):
        assert (figs / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "## rex against linear and the best other schedule, per budget" in md


def test_plot_options(db, tmp_path, capsys):
    assert main(["plot", str(db), "--out", str(tmp_path), "--resamples", "300", "--seed", "1"]) == 0
    assert (tmp_path / "figure2.png").exists() and (tmp_path / "figure2_paired.png").exists()
    assert main(["plot", str(db), "--out", str(tmp_path), "--resamples", "3"]) == 2
    assert "resamples must be an integer >= 200, got 3" in capsys.readouterr().err


def test_report_lists_planned_trials_that_never_got_a_row(tmp_path, capsys):
    # the recorded design asks for rex, linear and cosine at two LRs and three seeds; only seeds 0 and 1 of rex and
    # linear ever ran. Neither seed 2 nor cosine left a row, so only the design can say they are missing.
    path = tmp_path / "partial.db"
    with Store(path) as s:
        s.record_study({"tasks": ["digits-mlp"], "schedules": ["rex", "linear", "cosine"], "optimizers": ["sgdm"],
                        "budgets": [5.0], "lrs": [0.1, 0.3], "seeds": 3})
        for name in ("rex", "linear"):
            for lr in (0.1, 0.3):
                for seed in (0, 1):
                    s.put(TrialConfig("digits-mlp", name, "sgdm", 5.0, lr, seed),
                          dict(status="done", val_loss=1.0, val_metric=10.0 + seed, test_loss=1.0,
                               test_metric=10.0 + seed, curves={}, steps=3, wall_time=0.1))
    assert main(["report", str(path), "--format", "json", "--resamples", "200"]) == 0
    missing = {(m["schedule"], m["lr"], m["seed"], m["reason"]) for m in json.loads(capsys.readouterr().out)["missing"]}
    assert missing == {("cosine", None, None, "schedule missing in this setting: not run"),
                       *((name, lr, 2, "not run") for name in ("rex", "linear") for lr in (0.1, 0.3))}
