"""The ``budgetsched`` command end to end: run -> store -> report / plot, resume after SIGKILL, divergence,
user errors (exit 2, one line), Ctrl-C (exit 130), and process-parallel determinism.

Studies use ``digits-mlp`` at budgets of 1-2 epochs, so each run takes seconds.
"""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from budgetsched.bench.tasks import registry as tasks_mod
from budgetsched.bench.protocol.grid import expand
from budgetsched.bench.storage.store import Store
from budgetsched.cli import main, parse_lrs, parse_schedules, parse_seeds

# One torch thread per process: the test machine's cores are shared, and tiny models gain nothing from more.
ENV = {**os.environ, "KERAS_BACKEND": "torch", "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
TINY = ["--task", "digits-mlp", "--schedules", "rex,linear", "--optimizers", "sgdm", "--budgets", "2,4",
        "--lrs", "0.03,0.1", "--seeds", "1", "--quiet"]
TINY_GRID = expand(["digits-mlp"], ["rex", "linear"], ["sgdm"], [2.0, 4.0], [0.03, 0.1], [0])


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "budgetsched.cli", *args], capture_output=True, text=True,
                          env=ENV, timeout=timeout)


def _rows(path: Path) -> list[dict]:
    with Store(path) as s:
        return s.rows()


# ------------------------------------------------------------------------------------------------ end to end
def test_tiny_study_run_report_plot(tmp_path, capsys):
    db = tmp_path / "study.db"
    assert main(["run", *TINY, "--store", str(db)]) == 0
    rows = _rows(db)
    assert sorted(r["key"] for r in rows) == sorted(c.key for c in TINY_GRID)  # one row per grid point
    assert all(r["status"] == "done" and r["engine"] == "batched" and r["device"] == "cpu" for r in rows)
    # Budget 2 % / 4 % of the 100 % run's steps (max_epochs x ceil(n_train / batch size)), rounded up.
    task = tasks_mod.get_task("digits-mlp")
    full = task.max_epochs * -(-len(task.load(None, None).train_y) // task.batch_size)
    assert {(r["budget"], r["steps"]) for r in rows} == {(2.0, -(-full * 2 // 100)), (4.0, -(-full * 4 // 100))}
    capsys.readouterr()

    assert main(["report", str(db), "--format", "json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    # one seed: no noise measured, so the headline rule (docs/tasks.md) is not applied and both settings count ...
    assert rep["headline_rule"]["counted"] == 2 and rep["headline_rule"]["set_apart"] == 0
    assert {(s["headline"]["n"], s["headline"]["rule_applied"]) for s in rep["settings"]} == {(1, False)}
    # ... as with --all-settings, the Table 1 checked below
    assert main(["report", str(db), "--format", "json", "--all-settings"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["n_trials_done"] == len(TINY_GRID)
    assert {(s["task"], s["optimizer"], s["budget"]) for s in rep["settings"]} == {
        ("digits-mlp", "sgdm", 2.0), ("digits-mlp", "sgdm", 4.0)}
    assert set(rep["table1"]) == {"rex", "linear"}
    for label, splits in rep["table1"].items():
        for split, cell in splits.items():
            for k in ("top1", "top3"):
                assert cell[k] is None or 0.0 <= cell[k] <= 1.0
        assert splits["overall"]["top3"] == 1.0  # only two schedules: both are always Top-3

    for fmt, check in (("md", lambda t: "Table 1" in t), ("csv", lambda t: "," in t.splitlines()[0]),
                       ("rich", lambda t: "Table 1" in t)):
        out = tmp_path / f"report.{fmt}"
        assert main(["report", str(db), "--format", fmt, "--output", str(out)]) == 0
        assert check(out.read_text())

    figs = tmp_path / "figs"
    assert main(["plot", str(db), "--out", str(figs)]) == 0
    pngs = sorted(figs.glob("*.png"))
    assert len(pngs) >= 3  # figure 2, figure 3, curves
    for p in pngs:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 1000


def test_schedules_prints_profiles_and_writes_figure1(tmp_path, capsys):
    assert main(["schedules", "--total-steps", "100", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    rex = next(line for line in out.splitlines() if line.startswith("rex "))
    # REX at z = 0, .25, .5, .75, .9, 1: 2(1-z)/(2-z).
    expected = [2 * (1 - z) / (2 - z) for z in (0, 0.25, 0.5, 0.75, 0.9, 1.0)]
    assert [float(v) for v in rex.split()[1:]] == pytest.approx(expected, abs=5e-5)
    assert (tmp_path / "figure1.png").stat().st_size > 1000


def test_preset_with_flag_override(tmp_path, capsys):
    """Flags override preset fields: smoke preset, one budget and one LR instead of two each."""
    db = tmp_path / "s.db"
    assert main(["run", "--preset", "smoke", "--budgets", "2", "--lrs", "0.1", "--store", str(db), "--quiet"]) == 0
    rows = _rows(db)
    assert {(r["budget"], r["lr"]) for r in rows} == {(2.0, 0.1)}
    assert sorted(r["schedule"] for r in rows) == ["linear", "rex"]


# ------------------------------------------------------------------------------------------- resume / divergence
#: 16 sequential trials of 3 epochs (60 steps) each: a few seconds in all, so there is time to interrupt.
KILL_GRID = ["--task", "digits-mlp", "--schedules", "rex,linear", "--optimizers", "sgdm", "--budgets", "6",
             "--lrs", "0.01,0.03,0.1,0.3", "--seeds", "0,1"]
N_KILL = 16

def test_sigkill_then_rerun_resumes_without_rerunning(tmp_path, capsys):
    db = tmp_path / "study.db"
    args = ["run", *KILL_GRID, "--engine", "sequential", "--store", str(db), "--quiet"]
    proc = subprocess.Popen([sys.executable, "-m", "budgetsched.cli", *args], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    done = 0
    deadline = time.monotonic() + 90
    try:
        while done < 1:
            assert proc.poll() is None, f"study ended before it could be killed: {proc.stderr.read()!r}"
            assert time.monotonic() < deadline, "no trial finished within 90 s"
            time.sleep(0.05)
            if db.exists():
                try:
                    with sqlite3.connect(db) as c:
                        done = c.execute("SELECT count(*) FROM trials WHERE status = 'done'").fetchone()[0]
                except sqlite3.OperationalError:  # tables not created yet
                    pass
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    before = {r["key"]: r["finished"] for r in _rows(db)}
    assert 1 <= len(before) < N_KILL

    capsys.readouterr()
    assert main(args) == 0  # the same command again (in this process: no second interpreter start-up)
    out = capsys.readouterr().out
    rows = _rows(db)
    assert len(rows) == N_KILL and len({x["key"] for x in rows}) == N_KILL
    assert all(x["status"] == "done" for x in rows)
    after = {x["key"]: x["finished"] for x in rows}
    assert {k: after[k] for k in before} == before  # finished before the kill: not rerun
    assert out.startswith(f"{N_KILL - len(before)} trials run") and f"{len(before)} already in the store" in out


@pytest.mark.parametrize("engine", ["batched", "sequential"])
def test_huge_lr_diverges_and_the_study_finishes(tmp_path, engine):
    db = tmp_path / "d.db"
    assert main(["run", "--task", "digits-mlp", "--schedules", "constant", "--optimizers", "sgdm", "--budgets", "4",
                 "--lrs", "0.03,1e12", "--seeds", "2", "--engine", engine, "--store", str(db), "--quiet"]) == 0
    status = {(r["lr"], r["seed"]): r["status"] for r in _rows(db)}
    assert status == {(0.03, 0): "done", (0.03, 1): "done", (1e12, 0): "diverged", (1e12, 1): "diverged"}


# --------------------------------------------------------------------------------------------------- bad input
def _needs_files_task(monkeypatch):
    """A registered task whose loader cannot find its files (as a data-dir task does when they are missing)."""
    from budgetsched.bench.tasks.data import DatasetNotFoundError

    def load(data_dir, cache_dir):
        raise DatasetNotFoundError(f"needs-files: {data_dir}/train.bin not found; put the data set there")

    monkeypatch.setitem(tasks_mod._TASKS, "needs-files",
                        dataclasses.replace(tasks_mod.get_task("digits-mlp"), name="needs-files", load=load))


BASE = dict(task="digits-mlp", schedules="rex", optimizers="sgdm", budgets="2", lrs="0.1", seeds="1")
BAD = {
    "unknown task": (dict(task="nosuch-task"), ["nosuch-task", "digits-mlp"]),
    "unknown preset": (dict(preset="nope"), ["nope", "demo"]),
    "unknown schedule": (dict(schedules="rex,rexx"), ["rexx", "cosine"]),
    "bad schedule param": (dict(schedules="delayed-linear:delay"), ["delay"]),
    "unknown optimizer": (dict(optimizers="sgdm,lion"), ["lion", "adam"]),
    "budget above 100": (dict(budgets="5,150"), ["150", "(0, 100]"]),
    "budget zero": (dict(budgets="0"), ["0", "(0, 100]"]),
    "non-numeric budget": (dict(budgets="ten"), ["ten"]),
    "non-numeric lr": (dict(lrs="0.1,abc"), ["abc"]),
    "negative lr": (dict(lrs="-0.1"), ["-0.1"]),
    "per-optimizer lr unknown": (dict(lrs="sgdm=0.1;nadam=0.01"), ["nadam"]),
    "per-optimizer lr missing": (dict(optimizers="sgdm,adam", lrs="sgdm=0.1"), ["adam"]),
    "empty schedules": (dict(schedules=","), ["schedules", "non-empty"]),
    "zero seeds": (dict(seeds="0"), ["0"]),
    "bad workers": (dict(workers="0"), ["0", "workers"]),
    "missing data dir": (dict(**{"data-dir": "/nonexistent/data"}), ["/nonexistent/data"]),
    "cuda unavailable": (dict(device="cuda"), ["cuda", "is_available"]),
    "unknown device": (dict(device="tpu"), ["tpu", "cpu"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_run_arguments_exit_2_with_one_line(case, tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    over, needles = BAD[case]
    opts = {**BASE, **over}
    argv = ["run", "--store", str(tmp_path / "s.db"), "--quiet"]
    for k, v in opts.items():
        argv += [f"--{k}", v]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("budgetsched: error: ") and err.count("\n") == 1, err
    for n in needles:
        assert n in err
    assert not (tmp_path / "s.db").exists() or not _rows(tmp_path / "s.db")  # nothing half-written


def test_missing_data_files_exit_2(tmp_path, capsys, monkeypatch):
    _needs_files_task(monkeypatch)
    assert main(["run", "--task", "needs-files", "--schedules", "rex", "--optimizers", "sgdm", "--budgets", "2",
                 "--lrs", "0.1", "--seeds", "1", "--data-dir", str(tmp_path), "--store", str(tmp_path / "s.db"),
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("budgetsched: error: ") and f"{tmp_path}/train.bin" in err and err.count("\n") == 1
    assert not (tmp_path / "s.db").exists()  # nothing half-written: the store this run created is removed


def test_unusable_stores_exit_2(tmp_path, capsys):
    foreign = tmp_path / "notes.txt"
    foreign.write_text("not a database\n")
    under_file = foreign / "study.db"  # its directory is a regular file: cannot be created
    for store, needle in ((foreign, "not a budgetsched results store"), (under_file, str(under_file.parent))):
        assert main(["run", *TINY, "--store", str(store)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("budgetsched: error: ") and needle in err and err.count("\n") == 1
    assert foreign.read_text() == "not a database\n"  # untouched
    assert main(["report", str(tmp_path / "missing.db")]) == 2
    assert "missing.db" in capsys.readouterr().err
    assert not (tmp_path / "missing.db").exists()


def test_bad_arguments_in_a_real_process_have_no_traceback(tmp_path):
    for args, needle in ((["run", *TINY[:-1], "--budgets", "101", "--store", str(tmp_path / "a.db")], "101"),
                         (["report", str(tmp_path / "none.db"), "--format", "xml"], "xml"),
                         (["run", "--lrs", "0.1"], "--store")):
        r = _cli(*args)
        assert r.returncode == 2, r
        assert r.stderr.startswith("budgetsched: error: ") and needle in r.stderr, r.stderr
        assert "Traceback" not in r.stderr and r.stderr.count("\n") == 1


def test_parsers():
    assert parse_seeds("3") == [0, 1, 2] and parse_seeds("4,7") == [4, 7] and parse_seeds("7,") == [7]
    assert parse_lrs("0.01, 0.03") == [0.01, 0.03]
    assert parse_lrs("sgdm=0.01,0.03;adam=0.001") == {"sgdm": [0.01, 0.03], "adam": [0.001]}
    assert parse_schedules("rex,delayed-linear:delay=0.5,plateau:patience=5") == [
        "rex", ("delayed-linear", {"delay": 0.5}), ("plateau", {"patience": 5})]


# ----------------------------------------------------------------------------------------------- Ctrl-C, workers
def test_ctrl_c_keeps_written_trials_exits_130_and_resumes(tmp_path):
    db = tmp_path / "i.db"
    args = ["run", *KILL_GRID, "--engine", "sequential", "--workers", "2", "--store", str(db), "--quiet"]
    # SIGINT is ignored in a background job's children; the user's Ctrl-C reaches a foreground process: restore it
    proc = subprocess.Popen([sys.executable, "-m", "budgetsched.cli", *args], env=ENV, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 90
    try:
        while True:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
            if db.exists():
                try:
                    with sqlite3.connect(db) as c:
                        if c.execute("SELECT count(*) FROM trials").fetchone()[0] >= 1:
                            break
                except sqlite3.OperationalError:
                    pass
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert err.startswith("budgetsched: interrupted: ") and err.count("\n") == 1 and "Traceback" not in err, err
    kept = {r["key"]: r["finished"] for r in _rows(db)}
    assert len(kept) >= 1
    resume = ["run", *KILL_GRID, "--engine", "sequential", "--store", str(db), "--quiet"]  # one worker: same keys
    assert main(resume) == 0
    rows = _rows(db)
    assert len(rows) == N_KILL and {k: r["finished"] for r in rows for k in [r["key"]] if k in kept} == kept


def test_two_workers_store_the_same_metrics_as_one(tmp_path):
    grid = ["--task", "digits-mlp", "--schedules", "rex,step,onecycle", "--optimizers", "sgdm,adam", "--budgets",
            "2,4", "--lrs", "sgdm=0.03,0.1;adam=0.003,0.01", "--seeds", "1", "--chunk-size", "4", "--quiet"]
    one, two = tmp_path / "one.db", tmp_path / "two.db"
    assert main(["run", *grid, "--store", str(one)]) == 0
    assert main(["run", *grid, "--workers", "2", "--store", str(two)]) == 0
    fields = ("status", "val_loss", "val_metric", "test_loss", "test_metric", "steps")
    a = {r["key"]: tuple(r[f] for f in fields) + (r["curves"],) for r in _rows(one)}
    b = {r["key"]: tuple(r[f] for f in fields) + (r["curves"],) for r in _rows(two)}
    assert len(a) == 24 and a.keys() == b.keys()
    for k in a:
        assert a[k][0] == b[k][0] and a[k][5] == b[k][5]
        assert a[k][1:5] == pytest.approx(b[k][1:5], rel=1e-5, abs=1e-6)
