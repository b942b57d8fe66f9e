"""run_study: grouping into chunks, resume from the store, interrupts, provenance, progress, argument checks."""
from __future__ import annotations

import multiprocessing
import time

import pytest

import budgetsched
from budgetsched.bench.execution import runners
from budgetsched.bench.protocol.grid import expand, group_key
from budgetsched.bench.execution.runners import StudyInterrupted, check_device, make_chunks, run_study
from budgetsched.bench.storage.store import Store
from budgetsched.bench.engines.train import TrialResult

GRID = expand(["digits-mlp"], ["rex", "linear", "cosine"], ["sgdm"], [2.0, 4.0], [0.03, 0.1], [0])  # 12 trials


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _sentinel(status: str = "done") -> TrialResult:
    """A result no training produces (negative loss), to tell a kept row from a rerun one."""
    return TrialResult(status, -1.0, -1.0, -1.0, -1.0, {"epoch": [1]}, 7, 0.5, None if status != "failed" else "x")


def test_chunks_partition_the_grid_by_group():
    for engine, size in (("batched", 4), ("batched", 100), ("sequential", 4)):
        chunks = make_chunks(GRID, engine, size)
        flat = [c for _, chunk in chunks for c in chunk]
        assert sorted(c.key for c in flat) == sorted(c.key for c in GRID)  # every trial exactly once
        for kind, chunk in chunks:
            assert len({group_key(c) for c in chunk}) == 1  # one group per chunk
            assert kind == engine  # digits-mlp is batchable
            assert 1 <= len(chunk) <= (size if kind == "batched" else 1)
    # 2 groups of 6: chunk size 4 -> two balanced chunks of 3 per group (seed order kept)
    assert [len(ch) for _, ch in make_chunks(GRID, "batched", 4)] == [3, 3, 3, 3]


def test_resume_skips_finished_and_retries_failed(tmp_path):
    with Store(tmp_path / "s.db") as store:
        store.put(GRID[0], _sentinel("done"))
        store.put(GRID[1], _sentinel("diverged"))
        store.put(GRID[2], _sentinel("failed"))
        s = run_study(GRID + GRID[:3], store, progress=False)  # duplicates run once
        rows = {r["key"]: r for r in store.rows()}
    assert (s.total, s.skipped, s.ran) == (12, 2, 10)
    assert s.counts == {"done": 10, "diverged": 0, "failed": 0}
    assert rows[GRID[0].key]["val_loss"] == -1.0 and rows[GRID[1].key]["status"] == "diverged"  # kept
    assert rows[GRID[2].key]["status"] == "done" and rows[GRID[2].key]["val_loss"] > 0  # failed one retried
    assert len(rows) == 12
    with Store(tmp_path / "s.db") as store:  # a rerun has nothing left to do
        again = run_study(GRID, store, progress=False)
    assert (again.ran, again.skipped) == (0, 12)


def test_rows_carry_provenance_and_summary_adds_up(tmp_path):
    with Store(tmp_path / "s.db") as store:
        s = run_study(GRID, store, engine="sequential", progress=False)
        rows = store.rows()
    assert {(r["engine"], r["device"], r["package_version"]) for r in rows} == {
        ("sequential", "cpu", budgetsched.__version__)}
    assert s.ran == sum(s.counts.values()) == len(rows) == 12
    assert s.train_time == pytest.approx(sum(r["wall_time"] for r in rows))
    assert 0 < s.store_time and 0 < s.plan_time and 0 < s.overhead_share < 1
    assert s.store_time + s.plan_time + s.train_time <= s.wall_time
    assert "12 trials run" in s.line()


@pytest.mark.parametrize("workers", [1, 2])
def test_interrupt_keeps_written_trials_and_stops_workers(tmp_path, workers, interrupting_store):
    with Store(tmp_path / "s.db") as store:
        with pytest.raises(StudyInterrupted) as info:
            run_study(GRID, interrupting_store(store, after=3), engine="sequential", workers=workers,
                      progress=False)
        assert isinstance(info.value, KeyboardInterrupt)
        assert info.value.summary.interrupted and info.value.summary.ran == 3
        written = {r["key"]: r["finished"] for r in store.rows()}
        assert len(written) == 3
        assert multiprocessing.active_children() == []  # worker processes stopped
        s = run_study(GRID, store, engine="sequential", progress=False)  # resume
        rows = store.rows()
    assert (s.skipped, s.ran) == (3, 9)
    assert len(rows) == 12 and {r["key"]: r["finished"] for r in rows if r["key"] in written} == written


def test_progress_counts_trials_including_resumed_ones(tmp_path, capsys):
    with Store(tmp_path / "s.db") as store:
        store.put(GRID[0], _sentinel())
        store.put(GRID[1], _sentinel())
        run_study(GRID, store, chunk_size=4, progress=True)
    err = capsys.readouterr().err
    assert "12/12 trials" in err and "digits-mlp sgdm" in err


def test_argument_errors_name_the_value(tmp_path, monkeypatch):
    import torch

    with Store(tmp_path / "s.db") as store:
        for kw, needle in ((dict(engine="turbo"), "turbo"), (dict(workers=0), "0"), (dict(chunk_size=0), "0"),
                           (dict(device="tpu"), "tpu"), (dict(ray_address="auto"), "auto")):
            with pytest.raises(ValueError, match=needle):
                run_study(GRID, store, progress=False, **kw)
        assert store.rows() == []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="is_available"):
        check_device("cuda")
    assert check_device("cpu") == "cpu"


def test_data_loads_once_per_process(tmp_path, monkeypatch):
    from budgetsched.bench.tasks import registry as tasks

    calls = []
    task = tasks.get_task("digits-mlp")
    real = task.load

    def counting(data_dir, cache_dir):
        calls.append(1)
        return real(data_dir, cache_dir)

    import dataclasses

    monkeypatch.setitem(tasks._TASKS, "digits-mlp", dataclasses.replace(task, load=counting))
    from budgetsched.bench.execution import context

    monkeypatch.setattr(context, "_STATE", context.ProcessState())  # this process has loaded nothing yet
    with Store(tmp_path / "s.db") as store:
        run_study(GRID, store, engine="sequential", progress=False)
    assert len(calls) == 1


def test_ctrl_c_during_a_store_write_is_held_until_the_write_ends(tmp_path, sigint_default):
    """SIGINT arriving inside ``put`` is raised after the row is committed: the row is kept, nothing is torn."""
    import os
    import signal

    class SignalInsidePut:
        def __init__(self, store):
            self.store = store

        def __getattr__(self, name):
            return getattr(self.store, name)

        def put(self, config, result, meta=None, **kw):
            os.kill(os.getpid(), signal.SIGINT)  # delivered while the write is in progress
            self.store.put(config, result, meta, **kw)

    with Store(tmp_path / "s.db") as store:
        with pytest.raises(StudyInterrupted) as info:
            run_study(GRID, SignalInsidePut(store), engine="sequential", progress=False)
        assert info.value.summary.ran == 1
        assert len(store.rows()) == 1 and store.rows()[0]["status"] == "done"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored


# ------------------------------------------------------------------------------------------ claims, retries
def test_a_failing_trial_is_written_once_and_the_study_ends(tmp_path, monkeypatch):
    """A failed trial is retried by the next run, not again and again by this one."""
    from budgetsched.bench.engines import batched, train

    calls = []

    def failing(configs, plans, *a, **k):
        calls.append(len(configs))
        return [TrialResult.failed("RuntimeError: boom") for _ in configs]

    monkeypatch.setattr(train, "run_members", failing)
    monkeypatch.setattr(batched, "run_members", failing)
    with Store(tmp_path / "s.db") as store:
        s = run_study(GRID[:3], store, progress=False)
        assert s.counts == {"done": 0, "diverged": 0, "failed": 3} and sum(calls) == 3
        assert store.counts()["failed"] == 3


def test_plateau_stand_in_whose_constant_trial_is_not_in_the_grid(tmp_path):
    """Only the plateau config is asked for: the constant run is trained for it, its row is not written."""
    from budgetsched.bench.protocol.grid import expand as ex

    grid = ex(["digits-mlp"], ["plateau"], ["sgdm"], [2.0], [0.1], [0], plateau_patience=[10 ** 21])
    with Store(tmp_path / "s.db") as store:
        s = run_study(grid, store, progress=False)
        (row,) = store.rows()
    assert (s.ran, s.stand_ins) == (1, 1) and row["stand_in"] == "constant" and row["schedule"] == "plateau"


def test_trials_held_by_another_live_run_are_waited_for_then_adopted(tmp_path, trained):
    """Another run holds 4 trials; it writes them while this run waits: they are counted, not trained."""
    import threading

    from budgetsched.bench.storage.store import claim_owner

    path = tmp_path / "s.db"
    other = claim_owner()
    held = GRID[:4]
    with Store(path) as store:
        assert store.claim([c.key for c in held], other, 60) == [c.key for c in held]

        def other_run_finishes():
            time.sleep(1.0)
            with Store(path) as theirs:
                for c in held:
                    theirs.put(c, _sentinel())

        t = threading.Thread(target=other_run_finishes)
        t.start()
        with pytest.warns(UserWarning, match="waiting for 4 trials claimed by another run"):
            s = run_study(GRID, store, progress=False, lease_s=60)
        t.join()
        rows = {r["key"]: r for r in store.rows()}
    assert sorted(c.key for c in trained) == sorted(c.key for c in GRID[4:])  # never trained what the other held
    assert (s.ran, s.by_others) == (8, 4) and "4 trained meanwhile by another run" in s.line()
    assert len(rows) == 12 and all(rows[c.key]["val_loss"] == -1.0 for c in held)


def test_claims_of_a_stalled_run_are_taken_over_after_the_lease(tmp_path):
    with Store(tmp_path / "s.db") as store:
        store.claim([c.key for c in GRID[:2]], "elsewhere.example:1:-:stalled0", 60)  # never renewed
        t0 = time.monotonic()
        with pytest.warns(UserWarning, match="waiting for 2 trials claimed by another run"):
            s = run_study(GRID, store, progress=False, lease_s=1.0)
        assert time.monotonic() - t0 < 30
        assert s.ran == 12 and len(store.rows()) == 12


def test_workers_auto_is_one_process_per_core(tmp_path):
    with Store(tmp_path / "s.db") as store:
        s = run_study(GRID, store, workers="auto", progress=False)
        assert s.workers == runners.usable_cpus() and s.ran == 12
        assert {r["run_meta"]["threads"] for r in store.rows()} == {1} or runners.usable_cpus() == 1


def test_checked_options_are_trusted_and_loose_ones_checked(tmp_path, monkeypatch):
    from budgetsched.bench.execution import options as run_options

    checks = []
    real = run_options._checked_device
    monkeypatch.setattr(run_options, "_checked_device", lambda *a: checks.append(a) or real(*a))
    options = runners.check_options("sequential", 1, 8)
    assert isinstance(options, runners.RunOptions) and len(checks) == 1
    with Store(tmp_path / "s.db") as store:
        s = run_study(GRID[:2], store, options=options, progress=False)
        assert (s.ran, s.engine) == (2, "sequential") and len(checks) == 1  # not checked again
        s = run_study(GRID[2:4], store, engine="sequential", progress=False)  # loose keywords: checked here
        assert s.ran == 2 and len(checks) == 2
        with pytest.raises(TypeError, match=r"\(chunk_size given with options=\)"):
            run_study(GRID, store, options=options, chunk_size=4, progress=False)
    with pytest.raises(ValueError, match="chunk_size must be an integer >= 1, got 0"):
        runners.RunOptions(chunk_size=0)  # made directly, still checked
