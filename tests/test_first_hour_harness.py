"""A user's first hour with the harness's read-side commands (issue 22): ``plot --budgets / --schedules`` checked
against the study (one usage error with did-you-mean, no directory left behind), ``plot --curves all``, and
``advise --format json`` with its evidence agreeing with ``report --format json`` at a budget the study ran."""
from __future__ import annotations

import json
import math

import pytest

from budgetsched.bench.protocol.grid import TrialConfig
from budgetsched.bench.storage.store import Store
from budgetsched.cli import main


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    """rex, linear and step on digits-mlp / adam at 10, 50 and 100 % (1740 steps at 100 %), LRs 0.01-0.1, 3 seeds;
    rex is best at LR 0.03 everywhere, by 0.3 on every seed."""
    path = tmp_path_factory.mktemp("first_hour") / "study.db"
    with Store(path) as s:
        for budget in (10.0, 50.0, 100.0):
            n = math.ceil(17.4 * budget)
            for name, extra in (("rex", 0.0), ("linear", 0.3), ("step", 0.6)):
                for lr in (0.01, 0.03, 0.1):
                    for seed in range(3):
                        v = 3.0 + 10 / budget + abs(math.log(lr / 0.03)) + extra + 0.2 * math.sin(seed + budget)
                        s.put(TrialConfig("digits-mlp", name, "adam", budget, lr, seed),
                              dict(status="done", val_loss=1.0, val_metric=v, test_loss=1.0, test_metric=v + 0.05,
                                   curves={"epoch": [1, 2], "lr": [lr, 0.0], "train_loss": [1.0, 0.5],
                                           "val_metric": [v + 1, v]}, steps=n, wall_time=0.1), total_steps=n)
    return path


def test_plot_refuses_budgets_and_schedules_the_study_lacks(db, tmp_path, capsys):
    out = tmp_path / "figs"
    assert main(["plot", str(db), "--out", str(out), "--budgets", "25,100", "--schedules", "rexx,linear"]) == 2
    err = capsys.readouterr().err
    assert ("budget(s) not in the study: 25% (did you mean 50%?); budgets run: 10%, 50%, 100%; schedule(s) not in "
            "the study: 'rexx' (did you mean 'rex'?); schedules run: linear, rex, step") in err
    assert err.count("\n") == 1 and not out.exists()
    assert main(["plot", str(db), "--out", str(out), "--budgets", "ten"]) == 2
    assert "--budgets: 'ten' is not a percent" in capsys.readouterr().err and not out.exists()


def test_plot_filters_and_curves_at_every_budget(db, tmp_path, capsys):
    out = tmp_path / "figs"
    assert main(["plot", str(db), "--out", str(out), "--budgets", "10,100%", "--schedules", "rex,linear",
                 "--curves", "all", "--resamples", "300"]) == 0
    written = sorted(p.name for p in out.iterdir() if p.suffix == ".png")
    assert written == ["curves_digits-mlp_adam_10.png", "curves_digits-mlp_adam_100.png", "figure2.png",
                       "figure2_paired.png", "figure3.png"]
    assert main(["plot", str(db), "--out", str(tmp_path / "default"), "--resamples", "300"]) == 0
    assert sorted(p.name for p in (tmp_path / "default").glob("curves_*.png")) == ["curves_digits-mlp_adam_100.png"]


def test_advise_json_carries_its_evidence_and_agrees_with_the_report(db, capsys):
    assert main(["report", str(db), "--format", "json", "--resamples", "500"]) == 0
    report = json.loads(capsys.readouterr().out)
    for budget in ("10", "50%", "100"):
        assert main(["advise", str(db), "--budget", budget, "--format", "json"]) == 0
        [a] = json.loads(capsys.readouterr().out)["advice"]
        [s] = [s for s in report["settings"] if s["budget"] == a["budget"]]
        best = s["table1_ranking"]["best"]
        assert (a["mode"], a["schedule"], a["lr"]) == ("run", best, s["schedules"][best]["lr"]) == ("run", "rex", 0.03)
        assert a["steps"] == s["total_steps"] and sum(a["probabilities"].values()) == pytest.approx(1.0)
        [ev] = a["evidence"]
        assert {p["lr"] for p in ev["validation"]["rex"]} == {0.01, 0.03, 0.1}
        assert [p["lr"] for p in ev["validation"]["rex"] if p["chosen"]] == [0.03]
    assert main(["advise", str(db), "--budget", "30", "--format", "json"]) == 0
    [a] = json.loads(capsys.readouterr().out)["advice"]
    assert a["mode"] == "interpolated" and a["neighbours"] == [10.0, 50.0] and a["steps"] == 522
    assert (a["schedule"], a["lr"], a["lr_tried"]) == ("rex", 0.03, True)
    assert [e["budget"] for e in a["evidence"]] == [10.0, 50.0]
    # the text form: the pick, then per run budget the table it was chosen on
    assert main(["advise", str(db), "--budget", "30"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("digits-mlp / adam at 30 % = 522 steps of digits-mlp: ")
    assert "interpolated between 10 % and 50 %, both run" in text and "at 50 % (870 steps): the report's choice rex" in text
