"""The paper's other experiments through the command line: schedule-free in a study, --anytime, advise, refine."""
from __future__ import annotations

import re

import pytest

from budgetsched.bench.storage.store import Store
from budgetsched.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")

GRID = ["--task", "digits-mlp", "--optimizers", "sgdm", "--lrs", "0.1,0.3", "--seeds", "2", "--quiet"]


def _rows(db):
    with Store(db, readonly=True) as s:
        return s.rows()


def test_schedule_free_in_a_study_one_run_per_lr_and_seed(tmp_path, capsys):
    db = tmp_path / "sf.db"
    assert main(["run", *GRID, "--schedules", "rex,schedule-free", "--budgets", "5,20", "--store", str(db)]) == 0
    rows = _rows(db)
    sf = [r for r in rows if r["schedule"] == "schedule-free"]
    assert len(sf) == 2 * 2 * 2 and {r["engine"] for r in sf} == {"schedule-free"}
    assert {r["status"] for r in rows} == {"done"}
    assert main(["report", str(db), "--format", "md"]) == 0
    assert "schedule-free" in capsys.readouterr().out  # ranked beside rex in the SGDM settings


def test_anytime_study_equals_the_plain_study_and_resumes(tmp_path):
    args = [*GRID, "--schedules", "wsd:fraction=0.2:warmup_steps=5", "--budgets", "10,25,50"]
    plain, anytime = tmp_path / "p.db", tmp_path / "a.db"
    assert main(["run", *args, "--store", str(plain)]) == 0
    assert main(["run", *args, "--anytime", "--store", str(anytime)]) == 0
    a = {r["key"]: r for r in _rows(anytime)}
    p = {r["key"]: r for r in _rows(plain)}
    assert a.keys() == p.keys() and {r["engine"] for r in a.values()} == {"anytime"}
    for k in a:  # float32, stacked differently: equal up to rounding
        assert a[k]["test_metric"] == pytest.approx(p[k]["test_metric"], abs=0.5)
        assert a[k]["val_loss"] == pytest.approx(p[k]["val_loss"], rel=1e-3)
    assert (tmp_path / "a.db.anytime").is_dir()
    assert main(["run", *args, "--anytime", "--store", str(anytime)]) == 0  # nothing left to do
    assert {r["key"]: r["finished"] for r in _rows(anytime)} == {k: r["finished"] for k, r in a.items()}


def test_advise_and_refine_commands(tmp_path, capsys):
    db = tmp_path / "s.db"
    assert main(["run", *GRID, "--schedules", "rex,linear", "--budgets", "5,20,50", "--store", str(db)]) == 0
    capsys.readouterr()
    assert main(["advise", str(db), "--budget", "10%"]) == 0
    out = capsys.readouterr().out
    # the advice names the setting, the steps the budget means, then the pick (the evidence table follows)
    assert re.match(r"digits-mlp / sgdm at 10 % = ~\d+ steps of digits-mlp: ", out) and "initial LR" in out
    assert main(["advise", str(db), "--epochs", "60"]) == 0  # 60 epochs = 100 %: outside the study
    assert "outside the study's budgets" in capsys.readouterr().out
    assert main(["advise", str(db), "--budget", "lots"]) == 2
    assert "--budget 'lots' is not a percent" in capsys.readouterr().err
    assert main(["refine", str(db), "--from", "linear", "--quiet"]) == 0
    refined = [r for r in _rows(db) if r["schedule"] == "refined"]
    assert len(refined) == 3 * 2 * 2 and {r["label"] for r in refined} == {"refined"}
    assert main(["refine", str(db), "--from", "cosine"]) == 2
    assert "'cosine' is not a schedule of this study" in capsys.readouterr().err
