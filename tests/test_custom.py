"""Your own model: a Task named by reference (module:factory or file.py:factory), and your own training loop as a
trainable; both through the same store, report and resume as built-in tasks."""
from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from budgetsched.bench.engines import batched
from budgetsched.bench.engines.trainable import Trial, run_trainable
from budgetsched.bench.tasks.custom import trainable
from budgetsched.bench.protocol.grid import TrialConfig
from budgetsched.bench.storage.store import Store
from budgetsched.bench.tasks import Task, get_task, register_task
from budgetsched.cli import main

FILE = Path(__file__).parent / "fixtures" / "user" / "my_tasks.py"
MODULE_DIR = FILE.parent

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _grid(task, *extra):
    return ["run", "--task", task, "--schedules", "rex,linear,plateau", "--plateau-patience", "1",
            "--optimizers", "sgdm", "--budgets", "20,100", "--lrs", "0.03,0.3", "--seeds", "2", "--quiet", *extra]


def _rows(db):
    with Store(db, readonly=True) as s:
        return s.rows()


@pytest.mark.parametrize("how", ["file", "module"])
def test_custom_task_by_reference_runs_end_to_end(tmp_path, monkeypatch, capsys, how):
    if how == "module":
        monkeypatch.syspath_prepend(str(MODULE_DIR))
        ref = "my_tasks:make_task"
    else:
        ref = f"{FILE}:make_task"
    db = tmp_path / "s.db"
    assert main([*_grid(ref), "--store", str(db)]) == 0
    rows = _rows(db)
    assert len(rows) == 2 * 2 * 2 * 2 + 2 * 2 * 2  # rex, linear + plateau (a stand-in at 20 %: 2 evaluations)
    assert {r["task"] for r in rows} == {ref} and {r["status"] for r in rows} == {"done"}
    assert {r["engine"] for r in rows} == {"batched"}  # a Sequential of Linear/Tanh stacks
    assert main(["report", str(db), "--format", "md"]) == 0
    assert "error %" in capsys.readouterr().out


def test_workers_re_resolve_the_reference(tmp_path):
    db = tmp_path / "w.db"
    assert main([*_grid(f"{FILE}:make_task"), "--workers", "2", "--store", str(db)]) == 0
    assert len(_rows(db)) == 24


def test_unstackable_custom_model_gets_the_sequential_engine(tmp_path):
    task = get_task(f"{FILE}:make_dropout_task")
    data = task.load(None, None)
    assert task.batchable is None and not batched.supports(task, data)
    assert batched.supports(get_task(f"{FILE}:make_task"), data)
    db = tmp_path / "d.db"
    assert main([*_grid(f"{FILE}:make_dropout_task"), "--store", str(db)]) == 0
    assert {r["engine"] for r in _rows(db)} == {"sequential"}


@pytest.mark.parametrize("ref,needle", [
    ("nope:make", "cannot import module 'nope'"),
    ("budgetsched:nothing_here", "has no attribute 'nothing_here'"),
    (f"{FILE}:not_a_task", "gives a int, not a budgetsched Task"),
    (f"{FILE}:wrong_type", "gives a dict, not a budgetsched Task"),
    ("missing/file.py:make", "no such file 'missing/file.py'"),
    ("unknown-task", "unknown task 'unknown-task'"),
])
def test_bad_references_exit_2_with_one_line(tmp_path, capsys, ref, needle):
    assert main([*_grid(ref), "--store", str(tmp_path / "s.db")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("budgetsched: error: ") and needle in err and err.count("\n") == 1, err
    assert not (tmp_path / "s.db").exists()


def test_register_task_in_process(monkeypatch):
    from budgetsched.bench.tasks import registry as tasks

    monkeypatch.setattr(tasks, "_TASKS", dict(tasks._TASKS))  # leave the registry as it was
    t = get_task(f"{FILE}:make_task")
    mine = register_task(Task(**{**t.__dict__, "name": "my-blobs"}))
    assert get_task("my-blobs") is mine
    with pytest.raises(ValueError, match="already registered"):
        register_task(mine)
    with pytest.raises(ValueError, match="is a built-in task"):
        register_task(Task(**{**t.__dict__, "name": "digits-mlp"}))
    with pytest.raises(ValueError, match="max_epochs must be an integer >= 1"):
        Task(**{**t.__dict__, "max_epochs": 0})


# ------------------------------------------------------------------------------------------------ trainables
def test_trial_gives_budget_schedule_and_scheduler():
    task = get_task(f"{FILE}:loop")
    c = TrialConfig(task.name, "rex", "sgdm", 25.0, 0.1, 0)
    trial = Trial(c, c.total_steps(task.max_epochs, task.steps_per_epoch), task.steps_per_epoch)
    assert trial.total_steps == 10 and trial.epochs == 1  # 25 % of 4 x 10 steps
    s = trial.schedule()
    assert s(0) == pytest.approx(0.1) and s(5) == pytest.approx(0.1 * 2 / 3)  # REX: m(1/2) = 2/3
    import torch

    p = torch.nn.Parameter(torch.zeros(1))
    opt = trial.optimizer([p])
    assert isinstance(opt, torch.optim.SGD) and opt.param_groups[0]["momentum"] == 0.9
    sched = trial.scheduler(opt)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([s(t) for t in range(10)])
    with pytest.raises(ValueError, match="plateau"):
        Trial(TrialConfig(task.name, "plateau", "sgdm", 25.0, 0.1, 0, (("patience", 2),)), 10, 10).schedule()


def test_trainable_plain_loop_small_grid_and_resume(tmp_path):
    db = tmp_path / "t.db"
    argv = ["run", "--task", f"{FILE}:loop", "--schedules", "rex,linear,plateau", "--plateau-patience", "1",
            "--optimizers", "sgdm,adam", "--budgets", "50,100", "--lrs", "sgdm=0.1,0.3;adam=0.01,0.03", "--seeds", "2",
            "--store", str(db), "--quiet"]
    assert main(argv) == 0
    rows = _rows(db)
    assert len(rows) == 2 * 2 * 3 * 2 * 2 and {r["status"] for r in rows} == {"done"}
    rex = next(r for r in rows if r["schedule"] == "rex" and r["budget"] == 100.0)
    assert rex["total_steps"] == 40 and rex["curves"]["step"] == [10, 20, 30, 40]
    stand = [r for r in rows if r["stand_in"] == "constant"]  # 50 % = 2 evaluations: patience 1 cannot act
    assert len(stand) == 2 * 2 * 2
    finished = {r["key"]: r["finished"] for r in rows}
    assert main(argv) == 0  # resume: nothing retrained, nothing duplicated
    assert {r["key"]: r["finished"] for r in _rows(db)} == finished


def test_a_trainable_that_raises_is_failed_and_the_rest_continue(tmp_path):
    db = tmp_path / "b.db"
    argv = ["run", "--task", f"{FILE}:broken", "--schedules", "rex", "--optimizers", "sgdm", "--budgets", "100",
            "--lrs", "0.01,0.1", "--seeds", "1", "--store", str(db), "--quiet"]
    assert main(argv) == 0
    by_lr = {r["lr"]: r for r in _rows(db)}
    assert by_lr[0.01]["status"] == "done" and by_lr[0.01]["val_metric"] == 0.01
    assert by_lr[0.1]["status"] == "failed" and "RuntimeError: cannot train at lr 0.1" in by_lr[0.1]["error"]


def test_trainable_divergence_and_return_contract():
    @trainable(max_steps=4)
    def nan(trial):
        return {"val_metric": float("nan"), "test_metric": 1.0}

    @trainable(max_steps=4)
    def missing(trial):
        return {"val_metric": 1.0}

    c = TrialConfig("t", "rex", "sgdm", 100.0, 0.1, 3)
    assert run_trainable(c, nan).status == "diverged"
    r = run_trainable(c, missing)
    assert r.status == "failed" and "returned no 'test_metric'" in r.error
    with pytest.raises(ValueError, match="max_epochs and steps_per_epoch, or max_steps"):
        trainable(max_epochs=3)


def test_trainable_kill_and_resume_loses_and_duplicates_nothing(tmp_path):
    """SIGKILL mid-study, then rerun: every trial exactly once, finished rows untouched."""
    db = tmp_path / "k.db"
    argv = ["run", "--task", f"{FILE}:loop", "--schedules", "rex,linear,cosine,exp", "--optimizers", "sgdm",
            "--budgets", "100", "--lrs", "0.01,0.03,0.1,0.3", "--seeds", "2", "--store", str(db), "--quiet"]
    proc = subprocess.Popen([sys.executable, "-m", "budgetsched", *argv], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    import time

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
        try:
            with sqlite3.connect(db) as c:
                if c.execute("SELECT count(*) FROM trials").fetchone()[0] >= 3:
                    break
        except sqlite3.Error:
            pass
    proc.kill()
    proc.wait()
    before = {r["key"]: r["finished"] for r in _rows(db)}
    assert main(argv) == 0
    rows = _rows(db)
    assert len(rows) == 32 and len({r["key"] for r in rows}) == 32
    assert {r["key"]: r["finished"] for r in rows if r["key"] in before} == before


def test_a_trainable_receives_its_planned_run():
    """The Trial handle carries the planned length (protocol.plan), not one recomputed from the config."""
    from budgetsched.bench.protocol.plan import PlannedTrial, plan_trial

    seen = []

    @trainable(max_epochs=4, steps_per_epoch=10)
    def loop(trial):
        seen.append((trial.total_steps, trial.steps_per_epoch, trial.epochs))
        return {"val_metric": 1.0, "test_metric": 2.0}

    c = TrialConfig("loop", "rex", "sgdm", 25.0, 0.1, 0)
    assert plan_trial(c, loop, 0).total_steps == 10  # 25 % of 4 x 10 steps
    assert run_trainable(c, loop).steps == 10
    assert Trial.of(PlannedTrial(c, 7, 3)).epochs == 3
    r = run_trainable(PlannedTrial(c, 7, 3), loop)
    assert seen == [(10, 10, 1), (7, 3, 3)] and r.status == "done" and r.steps == 7
