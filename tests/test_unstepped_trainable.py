"""A @trainable whose scheduler never steps is failed with a message naming the cause (every schedule would report
the same value); one that steps another number of times than planned is done, with the position it reached kept
for the store and the report (issue 22's decision)."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from budgetsched.bench.engines.trainable import run_trainable  # noqa: E402
from budgetsched.bench.protocol.grid import TrialConfig  # noqa: E402
from budgetsched.bench.protocol.status import Status  # noqa: E402
from budgetsched.bench.tasks.custom import trainable  # noqa: E402


def _loop(trial, steps, *, plateau_evals=0):
    p = torch.nn.Parameter(torch.ones(3))
    opt = trial.optimizer([p])
    sched = trial.scheduler(opt)
    for _ in range(steps):
        opt.zero_grad()
        (p ** 2).sum().backward()
        opt.step()
        if trial.schedule_name != "plateau":
            sched.step()
    for _ in range(plateau_evals if trial.schedule_name == "plateau" else 0):
        sched.step(1.0)
    return {"val_metric": float((p.detach() ** 2).sum()), "test_metric": 1.0}


@trainable(max_steps=20)
def forgets(trial):
    return _loop(trial, 0)


@trainable(max_steps=20)
def half(trial):
    return _loop(trial, trial.total_steps // 2)


@trainable(max_steps=20)
def full(trial):
    return _loop(trial, trial.total_steps, plateau_evals=2)


@trainable(max_steps=20)
def own_schedule(trial):  # reads trial.schedule() itself: the harness holds no scheduler, nothing to check
    s = trial.schedule()
    return {"val_metric": s(trial.total_steps // 2), "test_metric": 1.0}


@pytest.mark.parametrize("schedule, params, how", [
    ("rex", (), "call sched.step() after each optimizer.step()"),
    ("plateau", (("patience", 2),), "call sched.step(validation_loss) once per evaluation"),
])
def test_a_scheduler_never_stepped_fails_the_trial_naming_why(schedule, params, how):
    r = run_trainable(TrialConfig("forgets", schedule, "sgdm", 100.0, 0.1, 0, params), forgets)
    assert r.status is Status.FAILED and r.val_metric is None
    assert r.error == ("SchedulerNotStepped: the scheduler from trial.scheduler() was never stepped: every step ran "
                       f"at the initial LR 0.1, so every schedule would report the same result; {how}")


def test_a_scheduler_stepped_another_number_of_times_is_done_and_flagged():
    r = run_trainable(TrialConfig("half", "linear", "sgdm", 100.0, 0.1, 0), half)
    assert r.status is Status.DONE and r.scheduler_steps == 10  # half of the planned 20 steps
    ok = run_trainable(TrialConfig("full", "linear", "sgdm", 50.0, 0.1, 0), full)
    assert ok.status is Status.DONE and ok.scheduler_steps is None  # 10 of 10 planned: as planned
    plateau = run_trainable(TrialConfig("full", "plateau", "sgdm", 100.0, 0.1, 0, (("patience", 2),)), full)
    assert plateau.status is Status.DONE and plateau.scheduler_steps is None  # steps per evaluation: no plan
    own = run_trainable(TrialConfig("own", "rex", "sgdm", 100.0, 0.1, 0), own_schedule)
    assert own.status is Status.DONE and own.scheduler_steps is None


def test_the_report_lists_trials_whose_scheduler_did_not_follow_its_plan():
    from dataclasses import replace

    from rich.console import Console

    from budgetsched.bench.analysis.report import build_report
    from budgetsched.bench.rendering.csv_json import to_json
    from budgetsched.bench.rendering.markdown import to_markdown
    from budgetsched.bench.rendering.rich_text import render_rich

    from _rows import typed
    from test_report_uncertainty import seeds

    rows = typed(seeds("rex", [1.0, 1.1], total_steps=40) + seeds("linear", [2.0, 2.1], total_steps=40))
    clean = build_report(rows, resamples=200)
    assert clean.off_plan == [] and "off_plan" not in to_json(clean) and "planned" not in to_markdown(clean)
    rows[1] = replace(rows[1], scheduler_steps=20)  # rex, seed 1: the loop stepped half of its 40 steps
    rep = build_report(rows, resamples=200)
    assert [(o.schedule, o.seed, o.scheduler_steps, o.total_steps) for o in rep.off_plan] == [("rex", 1, 20, 40)]
    assert rep.settings[0].results["rex"].n == 2  # done: it stays in the tables
    line = "T / sgdm / 10% / rex / lr 0.1 / seed 1: the scheduler reached step 20 of the 40 planned"
    md = to_markdown(rep)
    assert "## Trials whose scheduler stepped another number of times than planned (kept in the tables)" in md
    assert f"- {line}" in md
    assert to_json(rep)["off_plan"] == [{"task": "T", "optimizer": "sgdm", "budget": 10.0, "schedule": "rex",
                                         "lr": 0.1, "seed": 1, "scheduler_steps": 20, "total_steps": 40}]
    console = Console(width=120, record=True, color_system=None)
    render_rich(rep, console)
    assert line in console.export_text()


def test_through_the_store_and_the_report(tmp_path, capsys):
    """End to end: `budgetsched run` on a @trainable file; the never-stepped trial is failed with its cause in the
    store, the half-stepped one is done with its position in the store's scheduler_steps column and listed by
    `budgetsched report`."""
    import json

    from budgetsched.bench.storage.store import Store
    from budgetsched.cli import main

    src = tmp_path / "loops.py"
    src.write_text(
        "import torch\n"
        "from budgetsched.bench.tasks.custom import trainable\n\n"
        "@trainable(max_steps=20)\n"
        "def loop(trial):\n"
        "    p = torch.nn.Parameter(torch.ones(3))\n"
        "    opt = trial.optimizer([p])\n"
        "    sched = trial.scheduler(opt)\n"
        "    steps = {0.1: trial.total_steps // 2, 0.3: 0}.get(trial.lr, trial.total_steps)\n"
        "    for _ in range(trial.total_steps):\n"
        "        opt.zero_grad(); (p ** 2).sum().backward(); opt.step()\n"
        "    for _ in range(steps):\n"
        "        sched.step()\n"
        "    return {'val_metric': float((p.detach() ** 2).sum()), 'test_metric': 1.0}\n")
    db = tmp_path / "s.db"
    assert main(["run", "--task", f"{src}:loop", "--schedules", "rex", "--optimizers", "sgdm", "--budgets", "100",
                 "--lrs", "0.03,0.1,0.3", "--seeds", "1", "--store", str(db), "--quiet"]) == 0
    with Store(db, readonly=True) as s:
        by_lr = {r.lr: r for r in s.trial_rows()}
    assert (by_lr[0.03].status, by_lr[0.03].scheduler_steps) == (Status.DONE, None)
    assert (by_lr[0.1].status, by_lr[0.1].scheduler_steps) == (Status.DONE, 10)
    assert by_lr[0.3].status is Status.FAILED and "was never stepped" in by_lr[0.3].error
    capsys.readouterr()
    assert main(["report", str(db), "--format", "json", "--resamples", "200"]) == 0
    off = json.loads(capsys.readouterr().out)["off_plan"]
    assert [(o["lr"], o["scheduler_steps"], o["total_steps"]) for o in off] == [(0.1, 10, 20)]
