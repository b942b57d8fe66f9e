"""Evaluation seeds (issue 18, item 3): each configuration chosen on validation is retrained on fresh seeds, the
report scores the choice on those runs, stale runs are named, and evaluation runs never enter a choice."""
from __future__ import annotations

import json
import math
import statistics

import pytest

from budgetsched.bench.analysis.evaluation import evaluation_trials, tuning_rows
from budgetsched.bench.protocol.study import StudySpec
from budgetsched.bench.storage.store import Store
from budgetsched.cli import main
from budgetsched.errors import UsageError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BASE = ["--task", "digits-mlp", "--optimizers", "sgdm", "--schedules", "rex,linear", "--budgets", "10",
        "--seeds", "2", "--quiet"]


def _store(db):
    with Store(db, readonly=True) as s:
        return s.trial_rows(), s.evaluations()


def _report_json(db, capsys):
    capsys.readouterr()
    assert main(["report", str(db), "--format", "json", "--resamples", "200"]) == 0
    return json.loads(capsys.readouterr().out)


def _hand_choice(rows, label):
    """The LR with the lowest mean validation over the tuning seeds (ties to the smaller LR), computed here."""
    by_lr = {}
    for r in rows:
        if r.label == label:
            by_lr.setdefault(r.lr, []).append(math.inf if r.val_metric is None else r.val_metric)
    return min(sorted(by_lr), key=lambda lr: sum(by_lr[lr]) / len(by_lr[lr]))


def test_eval_seeds_run_resume_and_report(tmp_path, capsys):
    db = tmp_path / "e.db"
    args = ["run", *BASE, "--lrs", "0.03,0.3", "--eval-seeds", "3", "--store", str(db)]
    assert main(args) == 0
    rows, records = _store(db)
    tuning = [r for r in rows if r.seed in (0, 1)]
    evals = [r for r in rows if r.seed not in (0, 1)]
    assert len(tuning) == 2 * 2 * 2  # schedules x LRs x tuning seeds
    # one evaluation run per chosen configuration (one per schedule row) and new seed 2, 3, 4
    assert len(evals) == len(records) == 2 * 3
    assert {(r["label"], r["seed"]) for r in records} == {(x, s) for x in ("rex", "linear") for s in (2, 3, 4)}
    assert {r.key for r in evals} == {r["key"] for r in records}
    for label in ("rex", "linear"):
        lr = _hand_choice(tuning, label)
        assert {r.lr for r in evals if r.label == label} == {lr}
        assert {r["lr"] for r in records if r["label"] == label} == {lr}
        assert all(r["choice"]["tuning_seeds"] == [0, 1] for r in records)

    # rerun: nothing trained (every trial keeps its finish time)
    before = {r.key: r.provenance.finished for r in rows}
    assert main(args) == 0
    rows2, records2 = _store(db)
    assert {r.key: r.provenance.finished for r in rows2} == before and len(records2) == len(records)

    from budgetsched.cli._common import read_rows

    # figures and advice read the tuning trials only
    assert {r.key for r in read_rows(str(db), typed=True, tuning=True)} == {r.key for r in tuning}
    rep = _report_json(db, capsys)
    (setting,) = rep["settings"]
    fr = setting["table1_ranking"]
    assert fr["evaluation"] == "evaluation-seeds" and "evaluation_missing" not in fr
    assert "evaluation seeds" in rep["protocol"]["evaluation"]
    assert setting["n_seeds"] == 2  # the tuning seeds: evaluation runs never enter the selection
    for label in ("rex", "linear"):
        lr = _hand_choice(tuning, label)
        assert setting["schedules"][label]["lr"] == lr
        mine = [r.test_metric for r in evals if r.label == label]
        assert fr["rows"][label]["mean"] == pytest.approx(statistics.fmean(mine), rel=1e-12)


def test_an_added_lr_that_changes_the_choice_makes_evaluation_runs_stale(tmp_path, capsys):
    db = tmp_path / "s.db"
    # a tiny LR first (chosen for want of better), then a good one: the choice moves to it
    assert main(["run", *BASE, "--lrs", "0.0001", "--eval-seeds", "2", "--store", str(db)]) == 0
    assert _report_json(db, capsys)["settings"][0]["table1_ranking"]["evaluation"] == "evaluation-seeds"
    assert main(["run", *BASE, "--lrs", "0.0001,0.3", "--store", str(db)]) == 0
    rows, _ = _store(db)
    tuning = [r for r in rows if r.seed in (0, 1)]
    rep = _report_json(db, capsys)
    fr = rep["settings"][0]["table1_ranking"]
    assert fr["evaluation"] == "cross-fit"  # fell back
    changed = {x for x in ("rex", "linear") if _hand_choice(tuning, x) != 0.0001}
    assert changed  # the good LR won somewhere
    missing = {m["row"]: m for m in fr["evaluation_missing"]}
    assert set(missing) == changed
    for x in changed:
        assert missing[x]["stale"] and missing[x]["seeds"] == [2, 3] and missing[x]["lr"] == 0.3
    assert "stale" in rep["protocol"]["evaluation"]
    # a rerun with --eval-seeds trains the new choices' runs and the report uses them again
    assert main(["run", *BASE, "--lrs", "0.0001,0.3", "--eval-seeds", "2", "--store", str(db)]) == 0
    assert _report_json(db, capsys)["settings"][0]["table1_ranking"]["evaluation"] == "evaluation-seeds"


def _r(lr, seed, val, test, label="rex"):
    from tests._rows import trial_row

    return trial_row({"task": "digits-mlp", "schedule": label, "optimizer": "sgdm", "budget": 10.0, "lr": lr,
                      "seed": seed, "status": "done", "val_metric": val, "test_metric": test})


def test_evaluation_rows_never_enter_the_choice():
    from budgetsched.bench.analysis.report import build_report

    tuning = [_r(0.1, s, 0.5, 0.5) for s in (0, 1)] + [_r(0.3, s, 0.4, 0.45) for s in (0, 1)] \
        + [_r(0.1, s, 0.6, 0.6, "linear") for s in (0, 1)]
    planned = evaluation_trials(tuning, 2)
    assert sorted((c.label, c.lr, c.seed) for c, _ in planned) == [("linear", 0.1, 2), ("linear", 0.1, 3),
                                                                   ("rex", 0.3, 2), ("rex", 0.3, 3)]
    records = [rec for _, rec in planned]
    evals = [_r(c.lr, c.seed, 0.45, t, c.label) for (c, _), t in zip(planned, (0.2, 0.3, 0.7, 0.9))]
    # an old evaluation run of rex at 0.1 with a splendid validation: recorded, so it is no tuning trial
    old = _r(0.1, 2, 0.0, 0.0)
    records.append({**records[0], "key": old.key, "label": "rex", "lr": 0.1})
    rows = tuning + evals + [old]
    keep, ev = tuning_rows(rows, records)
    assert {r.key for r in keep} == {r.key for r in tuning} and len(ev) == 5
    assert [(c.lr, c.seed) for c, _ in evaluation_trials(keep, 2) if c.label == "rex"] == [(0.3, 2), (0.3, 3)]
    rep = build_report(rows, evaluations=records, resamples=200)
    (s,) = rep.settings
    assert s.results["rex"].lr == 0.3 and s.n_seeds == 2 and s.fair.mode == "evaluation-seeds"
    assert dict(zip(s.fair.labels, s.fair.means.tolist())) == pytest.approx({"linear": 0.25, "rex": 0.8})
    # without the records the same rows would be one study of four seeds: the old run would win rex's choice
    assert build_report(rows, resamples=200).settings[0].results["rex"].lr == 0.1


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3", None])
def test_eval_seeds_key_is_validated(bad):
    d = {"tasks": ["digits-mlp"], "schedules": ["rex"], "lrs": [0.1], "eval_seeds": bad}
    with pytest.raises(UsageError, match=f"eval_seeds must be a count.*got {bad!r}"):
        StudySpec.from_mapping(d)


def test_eval_seeds_flag_is_validated(tmp_path, capsys):
    db = tmp_path / "x.db"
    for text, said in (("three", "--eval-seeds: give a count of seeds (an integer >= 0), got 'three'"),
                       ("-1", "eval_seeds must be a count of evaluation seeds in [0, 10000] (0: off), got -1")):
        assert main(["run", *BASE, "--lrs", "0.1", "--eval-seeds", text, "--store", str(db)]) == 2
        assert said in capsys.readouterr().err
    assert not db.exists()  # refused before a store was made
    assert StudySpec.from_mapping({"tasks": ["digits-mlp"], "schedules": ["rex"], "lrs": [0.1]}).eval_seeds == 0


def test_exported_rows_keep_the_evaluation_records(tmp_path, capsys):
    db, out = tmp_path / "e.db", tmp_path / "e.jsonl.gz"
    assert main(["run", *BASE, "--schedules", "rex", "--lrs", "0.3", "--eval-seeds", "2", "--store", str(db)]) == 0
    assert main(["export", str(db), "--rows", str(out)]) == 0
    a, b = _report_json(db, capsys), _report_json(out, capsys)
    assert b["settings"][0]["table1_ranking"]["evaluation"] == "evaluation-seeds"
    assert b["settings"] == a["settings"]
