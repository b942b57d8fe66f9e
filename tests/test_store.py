"""Results store: round trip, resume, idempotence, replacement, rejection of foreign files, crash durability."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import pytest

from budgetsched.bench.grid import TrialConfig
from budgetsched.bench.store import APPLICATION_ID, SCHEMA_VERSION, Store, StoreError


def result(status="done", val=1.0, test=2.0, **kw):
    d = dict(status=status, val_loss=0.5, val_metric=val, test_loss=0.6, test_metric=test,
             curves={"epoch": [1, 2], "lr": [0.1, 0.01], "train_loss": [1.0, 0.5]}, steps=20, wall_time=1.25,
             error=None)
    d.update(kw)
    return d


def cfg(lr=0.1, seed=0, schedule="rex", **params):
    return TrialConfig("mnist1d", schedule, "sgdm", 10.0, lr, seed, tuple(params.items()))


def test_round_trip_every_field(tmp_path):
    c = cfg(schedule="delayed-linear", delay=0.5)
    obj = SimpleNamespace(**result(val=12.5, test=13.25))  # any object with the TrialResult attributes
    with Store(tmp_path / "s.db") as s:
        s.put(c, obj, meta={"engine": "batched", "device": "cpu", "workers": 2, "git_commit": "abc123"})
        (row,) = s.rows()
    assert row["key"] == c.key
    assert (row["task"], row["schedule"], row["optimizer"], row["budget"], row["lr"], row["seed"]) == (
        "mnist1d", "delayed-linear", "sgdm", 10.0, 0.1, 0)
    assert row["schedule_params"] == {"delay": 0.5}
    assert row["label"] == c.label == "delayed-linear(delay=0.5)"
    assert (row["val_loss"], row["val_metric"], row["test_loss"], row["test_metric"]) == (0.5, 12.5, 0.6, 13.25)
    assert row["curves"] == {"epoch": [1, 2], "lr": [0.1, 0.01], "train_loss": [1.0, 0.5]}
    assert (row["steps"], row["wall_time"], row["status"], row["error"]) == (20, 1.25, "done", None)
    assert (row["engine"], row["device"]) == ("batched", "cpu")
    assert row["run_meta"] == {"engine": "batched", "device": "cpu", "workers": 2, "git_commit": "abc123"}
    assert TrialConfig.from_dict(row["config"]) == c
    assert row["python_version"].count(".") == 2 and row["package_version"] and row["hostname"]
    assert row["started"] < row["finished"]  # started = finished - wall_time when meta gives none


def test_reopen_resume_and_rows_filter(tmp_path):
    path = tmp_path / "deep" / "dir" / "s.db"  # directories are created
    with Store(path) as s:
        s.put(cfg(lr=0.1), result())
        s.put(cfg(lr=0.3), result(status="diverged", val=None, test=None))
        s.put(cfg(lr=1.0), result(status="failed", val=None, test=None, error="RuntimeError: boom"))
        s.put(TrialConfig("digits", "rex", "adam", 5.0, 0.01, 0), result())
    with Store(path) as s:
        assert s.finished_keys() == {cfg(lr=0.1).key, cfg(lr=0.3).key, TrialConfig("digits", "rex", "adam", 5.0, 0.01, 0).key}
        assert s.counts() == {"done": 2, "diverged": 1, "failed": 1}
        assert {r["task"] for r in s.rows(task="digits")} == {"digits"}
        assert len(s.rows()) == 4
        assert [r["error"] for r in s.rows() if r["status"] == "failed"] == ["RuntimeError: boom"]


def test_put_is_idempotent_and_failed_is_replaced_by_done(tmp_path):
    with Store(tmp_path / "s.db") as s:
        s.put(cfg(), result(status="failed", val=None, test=None, error="OOM"))
        assert s.finished_keys() == set()
        for _ in range(3):
            s.put(cfg(), result(val=3.0, test=4.0))
        rows = s.rows()
    assert len(rows) == 1
    assert (rows[0]["status"], rows[0]["val_metric"], rows[0]["error"]) == ("done", 3.0, None)
    con = sqlite3.connect(tmp_path / "s.db")
    assert con.execute("SELECT count(*) FROM trials").fetchone()[0] == 1
    assert con.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()


def test_bad_results_raise_clear_errors_and_write_nothing(tmp_path):
    with Store(tmp_path / "s.db") as s:
        with pytest.raises(ValueError, match=r"unknown trial status 'ok'; choose from done, diverged, failed"):
            s.put(cfg(), result(status="ok"))
        with pytest.raises(ValueError, match="lacks field.*curves"):
            s.put(cfg(), {k: v for k, v in result().items() if k != "curves"})
        with pytest.raises(ValueError, match="config must be a TrialConfig"):
            s.put({"task": "x"}, result())
        assert s.rows() == []


def test_foreign_sqlite_file_is_rejected(tmp_path):
    path = tmp_path / "other.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match=f"{str(path)!r}.*not a budgetsched results store"):
        Store(path)
    con = sqlite3.connect(path)  # left untouched
    assert [r[0] for r in con.execute("SELECT name FROM sqlite_master")] == ["t"]
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    con.close()


@pytest.mark.parametrize("content", [b"task,lr\nrex,0.1\n", bytes(range(256)) * 8], ids=["text", "random-bytes"])
def test_non_sqlite_file_is_rejected(tmp_path, content):
    path = tmp_path / "study.db"
    path.write_bytes(content)
    with pytest.raises(StoreError, match=f"{str(path)!r}.*not an SQLite database") as ei:
        Store(path)
    assert "\n" not in str(ei.value)
    assert path.read_bytes() == content


def test_random_bytes_after_sqlite_header_are_rejected(tmp_path):
    # Passes the magic-header check, so SQLite itself must find it corrupt.
    path = tmp_path / "corrupt.db"
    path.write_bytes(b"SQLite format 3\x00" + os.urandom(4096))
    with pytest.raises(StoreError, match=f"{str(path)!r}"):
        Store(path)


def test_unwritable_path_is_rejected(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    path = blocker / "sub" / "study.db"  # a directory would have to be created under a regular file
    with pytest.raises(StoreError, match=f"{str(path)!r}"):
        Store(path)
    with pytest.raises(StoreError, match="is a directory"):
        Store(tmp_path)


def test_sigkill_after_puts_loses_nothing(tmp_path):
    path = tmp_path / "killed.db"
    n = 7
    script = textwrap.dedent(f"""
        import os, signal
        from budgetsched.bench.grid import TrialConfig
        from budgetsched.bench.store import Store
        s = Store({str(path)!r})
        for i in range({n}):
            c = TrialConfig("mnist1d", "rex", "sgdm", 10.0, 0.1, i)
            s.put(c, dict(status="done", val_loss=1.0, val_metric=float(i), test_loss=1.0, test_metric=float(i),
                          curves={{}}, steps=1, wall_time=0.1, error=None))
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    with Store(path) as s:
        rows = s.rows()
    assert sorted(r["seed"] for r in rows) == list(range(n))
    assert sorted(r["val_metric"] for r in rows) == [float(i) for i in range(n)]


def test_closed_store_raises(tmp_path):
    s = Store(tmp_path / "s.db")
    s.close()
    s.close()
    with pytest.raises(StoreError, match="closed"):
        s.rows()
