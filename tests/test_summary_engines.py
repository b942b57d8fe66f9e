"""The summary names the engines that trained the trials a run wrote, as the runner ran them
(StudySummary.engines / engine, bench/execution/run.py): no read of the store's rows after the run."""
from __future__ import annotations

import pytest

from budgetsched.bench.execution.run import StudySummary, engine_label, run_study
from budgetsched.bench.protocol.grid import TrialConfig
from budgetsched.bench.storage.store import Store
from budgetsched.bench.tasks.custom import trainable
from budgetsched.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class NoScan(Store):
    """A store whose rows cannot be read in full: the summary must not need them."""

    def trial_rows(self, *a, **k):
        raise AssertionError("the store was scanned")

    def rows(self, *a, **k):
        raise AssertionError("the store was scanned")


@trainable(max_steps=10)
def my_loop(trial):  # reads its schedule itself: the harness holds no scheduler to check
    s = trial.schedule()
    return {"val_metric": s(trial.total_steps // 2), "test_metric": 1.0}


def test_the_label_joins_the_engines_in_order_or_says_the_one_asked_for():
    assert engine_label(["@trainable"], "batched") == "@trainable"
    assert engine_label(["@trainable", "batched"], "batched") == "@trainable + batched"
    assert engine_label([], "batched") == "batched"
    assert engine_label(["batched", "schedule-free", "batched"], "ray") == "batched + schedule-free"


def test_the_summary_names_a_trainable_as_such(tmp_path, monkeypatch):
    from budgetsched.bench.tasks import registry

    monkeypatch.setitem(registry._TASKS, "my_loop", my_loop)
    grid = [TrialConfig("my_loop", "rex", "sgdm", 100.0, 0.1, 0), TrialConfig("digits-mlp", "rex", "sgdm", 2.0, 0.1, 0)]
    with NoScan(tmp_path / "s.db") as store:
        s = run_study(grid, store, progress=False)
    assert s.ran == 2 and s.engines == ("@trainable", "batched") and s.engine == "@trainable + batched"
    assert "(@trainable + batched, 1 worker, cpu" in s.line()
    with Store(tmp_path / "s.db") as store:  # the rows say which engine ran them: the user's loop ran one at a time
        assert {r.task: r.provenance.engine for r in store.trial_rows()} == {"my_loop": "sequential",
                                                                             "digits-mlp": "batched"}
        again = run_study(grid, store, progress=False)
    assert (again.ran, again.engines, again.engine) == (0, (), "batched")  # nothing trained: the engine asked for


def test_the_summary_names_every_engine_of_a_mixed_study(tmp_path):
    grid = [TrialConfig("digits-mlp", "rex", "sgdm", 2.0, 0.1, 0),
            TrialConfig("digits-mlp", "schedule-free", "sgdm", 2.0, 0.1, 0)]
    with NoScan(tmp_path / "s.db") as store:
        s = run_study(grid, store, engine="sequential", progress=False)
    # schedule-free runs are one chunk whatever the engine; the rest is the sequential engine's
    assert set(s.engines) == {"sequential", "schedule-free"} and s.engine == " + ".join(s.engines)
    with Store(tmp_path / "s.db") as store:
        assert {r.provenance.engine for r in store.trial_rows()} == set(s.engines)


def test_the_command_names_the_engines_without_reading_the_store(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(Store, "trial_rows", NoScan.trial_rows)
    monkeypatch.setattr(Store, "rows", NoScan.rows)
    args = ["run", "--task", "digits-mlp", "--schedules", "rex,schedule-free", "--optimizers", "sgdm", "--budgets",
            "2", "--lrs", "0.1", "--seeds", "1", "--store", str(tmp_path / "s.db"), "--quiet"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "2 trials run (2 done" in out and "(schedule-free + batched, 1 worker, cpu" in out


def test_the_phases_of_a_command_add_their_engines():
    grid = StudySummary(total=4, skipped=0, ran=4, engine="batched", engines=("batched",))
    more = StudySummary(total=6, skipped=4, ran=2, engine="schedule-free + batched",
                        engines=("schedule-free", "batched"))
    merged = grid.then(more)
    assert merged.engines == ("batched", "schedule-free") and merged.engine == "batched + schedule-free"
    idle = StudySummary(total=4, skipped=4, engine="sequential")
    assert idle.then(StudySummary(total=4, skipped=4, engine="sequential")).engine == "sequential"
