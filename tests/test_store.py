"""Results store: round trip, resume, idempotence, replacement, rejection of foreign files, crash durability."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from types import SimpleNamespace

import pytest

from budgetsched.bench.protocol.grid import TrialConfig
from budgetsched.bench.storage.store import APPLICATION_ID, SCHEMA_VERSION, Store, StoreError


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
        from budgetsched.bench.protocol.grid import TrialConfig
        from budgetsched.bench.storage.store import Store
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


# ------------------------------------------------------------------------------------- versions and layout
FIXTURE_V1 = os.path.join(os.path.dirname(__file__), "fixtures", "store_v1.sql")


def _v1_store(path):
    con = sqlite3.connect(path)
    with open(FIXTURE_V1, encoding="utf-8") as f:
        con.executescript(f.read())
    con.close()
    return path


def test_v1_store_migrates_in_place_and_keeps_every_row(tmp_path):
    path = _v1_store(tmp_path / "v1.db")
    with Store(path) as s:
        assert s.version == SCHEMA_VERSION == 4  # v1 -> v2 -> v3 (evaluations) -> v4 (scheduler_steps) in one open
        all_rows = s.rows()
        meta = s.meta()
        assert s.finished_keys() == {r["key"] for r in all_rows if r["status"] in ("done", "diverged")}
    rows = {(r["schedule"], r["lr"]): r for r in all_rows}
    assert len(rows) == 5 and {r["budget_unit"] for r in all_rows} == {"epochs"}  # v1 budgets were epochs
    assert {r["total_steps"] for r in all_rows} == {None} and {r["stand_in"] for r in all_rows} == {None}
    assert rows["rex", 0.1]["val_metric"] == 30.0 and rows["rex", 0.1]["curves"]["lr"] == [0.1, 0.05]
    assert rows["rex", 1e6]["status"] == "diverged"
    assert rows["cosine", 0.1]["error"] == "RuntimeError: out of memory"
    assert TrialConfig.from_dict(rows["plateau", 0.1]["config"]).params == {"patience": 5}
    assert "schema_version" not in meta and meta["migrated_1_to_2"]  # the version lives in user_version only
    assert meta["migrated_2_to_3"] and meta["migrated_3_to_4"] and {r["scheduler_steps"] for r in all_rows} == {None}
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == 4
    assert {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")} == {
        "meta", "trials", "claims", "evaluations"}
    con.close()


def test_v1_store_is_read_without_migrating(tmp_path):
    path = _v1_store(tmp_path / "v1.db")
    before = path.read_bytes()
    with Store(path, readonly=True) as s:
        assert s.version == 1
        assert {r["budget_unit"] for r in s.rows()} == {"epochs"} and len(s.rows()) == 5
    assert path.read_bytes() == before


def test_failed_migration_leaves_the_v1_store_as_it_was(tmp_path, monkeypatch):
    from budgetsched.bench.storage import store as store_mod

    path = _v1_store(tmp_path / "v1.db")
    before = path.read_bytes()

    def broken(c):
        store_mod._migrate_1_to_2(c)
        raise sqlite3.OperationalError("disk I/O error")  # fails after the first statements

    monkeypatch.setitem(store_mod.MIGRATIONS, 1, broken)
    with pytest.raises(OSError, match="disk"):
        Store(path)
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == 1  # one transaction: nothing half-migrated
    assert "budget_unit" not in {r[1] for r in con.execute("PRAGMA table_info(trials)")}
    con.close()
    monkeypatch.undo()
    with Store(path) as s:
        assert s.version == 4 and len(s.rows()) == 5


@pytest.mark.parametrize("readonly", [False, True])
def test_newer_schema_is_refused_naming_both_versions(tmp_path, readonly):
    path = tmp_path / "s.db"
    Store(path).close()
    con = sqlite3.connect(path)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    con.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 5}.*version {SCHEMA_VERSION}"):
        Store(path, readonly=readonly)
    assert path.read_bytes() == before


def test_missing_column_is_refused_by_readers_and_writers(tmp_path):
    path = tmp_path / "s.db"
    Store(path).close()
    con = sqlite3.connect(path)
    con.execute("ALTER TABLE trials DROP COLUMN run_meta")
    con.close()
    for readonly in (False, True):
        with pytest.raises(StoreError, match="lacks column.*run_meta"):
            Store(path, readonly=readonly)


def test_damaged_row_is_skipped_with_a_warning_naming_its_key(tmp_path):
    from budgetsched.bench.storage.store import StoreWarning

    path = tmp_path / "s.db"
    with Store(path) as s:
        s.put(cfg(lr=0.1), result())
        s.put(cfg(lr=0.3), result())
    con = sqlite3.connect(path)
    con.execute("UPDATE trials SET run_meta = '[1, 2' WHERE key = ?", (cfg(lr=0.3).key,))
    con.commit()
    con.close()
    for readonly in (False, True):
        with Store(path, readonly=readonly) as s:
            with pytest.warns(StoreWarning, match=f"trial {cfg(lr=0.3).key!r} cannot be read.*skipped"):
                assert [r["lr"] for r in s.rows()] == [0.1]
            with pytest.warns(StoreWarning, match=cfg(lr=0.3).key):
                assert s.row(cfg(lr=0.3).key) is None
            assert s.row(cfg(lr=0.1).key)["lr"] == 0.1


def test_read_only_store_is_never_written(tmp_path):
    path = tmp_path / "s.db"
    with Store(path) as s:
        s.put(cfg(), result())
    before = path.read_bytes()
    with Store(path, readonly=True) as s:
        assert len(s.rows()) == 1
        with pytest.raises(StoreError, match="read-only"):
            s.put(cfg(lr=0.3), result())
        with pytest.raises(StoreError, match="read-only"):
            s.claim([cfg().key], "me", 60)
    assert path.read_bytes() == before


# ------------------------------------------------------------------------------------------------- claims
def test_claims_split_keys_between_owners_and_finished_trials_are_never_claimed(tmp_path):
    from budgetsched.bench.storage.store import claim_owner

    keys = [cfg(lr=lr).key for lr in (0.1, 0.2, 0.3, 0.4)]
    with Store(tmp_path / "s.db") as a, Store(tmp_path / "s.db") as b:
        me, other = claim_owner(), claim_owner()
        a.put(cfg(lr=0.4), result())
        assert a.claim(keys[:2], me, 60) == keys[:2]
        assert b.claim(keys, other, 60) == [keys[2]]  # 0.1/0.2 held by a, 0.4 finished
        assert a.claimed_by_others(keys, me, 60) == 1 and b.claimed_by_others(keys, other, 60) == 2
        a.put(cfg(lr=0.1), result())  # writing a result releases its claim
        assert b.claimed_by_others(keys, other, 60) == 1
        b.release(other)
        assert a.claim(keys, me, 60) == [keys[1], keys[2]]


def test_claims_of_an_ended_process_or_an_expired_lease_are_taken_over(tmp_path):
    from budgetsched.bench.storage.store import claim_owner, owner_is_gone

    proc = subprocess.run([sys.executable, "-c", "from budgetsched.bench.storage.store import claim_owner; print(claim_owner())"],
                          capture_output=True, text=True, timeout=60)
    dead = proc.stdout.strip()  # a run on this host whose process has ended (e.g. SIGKILLed)
    remote = "elsewhere.example:1:-:abcd1234"  # a run on another host: only its lease can expire
    assert owner_is_gone(dead) and not owner_is_gone(remote) and not owner_is_gone(claim_owner())
    with Store(tmp_path / "s.db") as s:
        s.claim([cfg(lr=0.1).key], dead, 60)
        s.claim([cfg(lr=0.2).key], remote, 60)
        me = claim_owner()
        assert s.claimed_by_others([cfg(lr=0.1).key, cfg(lr=0.2).key], me, 60) == 1
        assert s.claim([cfg(lr=0.1).key, cfg(lr=0.2).key], me, 60) == [cfg(lr=0.1).key]  # at once
        time.sleep(0.3)
        assert s.claim([cfg(lr=0.2).key], me, 0.2) == [cfg(lr=0.2).key]  # its lease expired


def test_remove_if_empty_never_removes_a_store_another_writer_has_open(tmp_path):
    path = tmp_path / "s.db"
    first = Store(path)
    assert first.created
    second = Store(path)  # e.g. a concurrent run of the same command
    assert not second.created
    assert first.remove_if_empty() is False and path.exists()
    second.put(cfg(), result())
    second.close()
    assert len(Store(path, readonly=True).rows()) == 1
    fresh = Store(tmp_path / "t.db")
    assert fresh.remove_if_empty() is True and list(tmp_path.glob("t.db*")) == []
    Store(tmp_path / "u.db").close()
    assert Store(tmp_path / "u.db").remove_if_empty() is False  # empty, but not created by this instance
    assert (tmp_path / "u.db").exists()


def test_concurrent_writers_in_threads_lose_nothing(tmp_path):
    import threading

    path = tmp_path / "s.db"
    Store(path).close()
    errors = []

    def writer(i):
        try:
            with Store(path) as s:
                for j in range(10):
                    s.put(cfg(lr=0.1, seed=i * 100 + j), result())
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(Store(path, readonly=True).rows()) == 40


# ------------------------------------------------------------------------------------------------ typed rows
def test_trial_rows_decode_every_field_once_into_typed_rows(tmp_path):
    from budgetsched.bench.protocol.records import Provenance, TrialRow
    from budgetsched.bench.protocol.status import Status

    c = cfg(schedule="delayed-linear", delay=0.5)
    with Store(tmp_path / "s.db") as s:
        s.put(c, result(val=12.5, test=13.25), meta={"engine": "batched", "device": "cpu", "workers": 2},
              total_steps=40, stand_in=None)
        s.put(cfg(lr=0.3), result(status="diverged", val=None, test=None), total_steps=40, stand_in="constant")
        rows = {r.lr: r for r in s.trial_rows()}
        assert s.trial_row(c.key) == rows[0.1] and s.trial_row("no-such-key") is None
        as_dicts = {r["lr"]: r for r in s.rows()}
    row = rows[0.1]
    assert isinstance(row, TrialRow) and isinstance(row.provenance, Provenance)
    assert row.key == c.key and row.config == c
    assert (row.task, row.schedule, row.label, row.optimizer, row.budget, row.lr, row.seed, row.budget_unit) == (
        "mnist1d", "delayed-linear", "delayed-linear(delay=0.5)", "sgdm", 10.0, 0.1, 0, "steps")
    assert row.params == {"delay": 0.5}
    assert row.status is Status.DONE and rows[0.3].status is Status.DIVERGED  # the enum, not a string
    assert (row.val_loss, row.val_metric, row.test_loss, row.test_metric) == (0.5, 12.5, 0.6, 13.25)
    assert row.curves == {"epoch": [1, 2], "lr": [0.1, 0.01], "train_loss": [1.0, 0.5]}
    assert (row.steps, row.wall_time, row.error, row.total_steps, row.stand_in) == (20, 1.25, None, 40, None)
    assert rows[0.3].stand_in == "constant" and rows[0.3].val_metric is None
    p = row.provenance
    assert (p.engine, p.device, p.run_meta) == ("batched", "cpu", {"engine": "batched", "device": "cpu", "workers": 2})
    assert p.python_version.count(".") == 2 and p.package_version and p.hostname and p.started < p.finished
    assert row.as_dict() == as_dicts[0.1]  # the flat form is exactly what rows() gives
    again = row.result()
    assert (again.status, again.val_metric, again.steps, again.curves) == (Status.DONE, 12.5, 20, row.curves)
    with pytest.raises(Exception):
        row.steps = 3  # frozen


def test_trial_rows_of_a_v1_store_keep_its_epoch_budgets_and_skip_damaged_rows(tmp_path):
    from budgetsched.bench.storage.store import StoreWarning

    path = _v1_store(tmp_path / "v1.db")
    with Store(path, readonly=True) as s:
        rows = s.trial_rows()
        assert len(rows) == 5 and {r.budget_unit for r in rows} == {"epochs"}  # from the column, not the default
        assert {r.key for r in rows} == {r["key"] for r in s.rows()}  # the stored key, whatever the config hashes to
        assert {r.total_steps for r in rows} == {None}
    path = tmp_path / "s.db"
    with Store(path) as s:
        s.put(cfg(lr=0.1), result())
        s.put(cfg(lr=0.3), result())
    con = sqlite3.connect(path)
    con.execute("UPDATE trials SET config = '{\"task\": 3}' WHERE key = ?", (cfg(lr=0.3).key,))
    con.commit()
    con.close()
    with Store(path, readonly=True) as s:
        with pytest.warns(StoreWarning, match=f"trial {cfg(lr=0.3).key!r} cannot be read.*skipped"):
            assert [r.lr for r in s.trial_rows()] == [0.1]


# ---------------------------------------------------------------------------------- claims as their own piece
def test_claims_are_an_interface_with_a_null_implementation(tmp_path):
    from budgetsched.bench.storage.claims import Claims, NullClaims, SqliteClaims

    null: Claims = NullClaims()
    assert null.claim(["a", "b"], "me", 60) == ["a", "b"]  # nothing shared: every key is this run's
    assert null.held_by_others(["a"], "me", 60) == 0
    assert null.heartbeat("me") is None and null.release("me") is None
    with Store(tmp_path / "s.db") as s:
        assert isinstance(s.claims, SqliteClaims)
        assert s.claims.claim(["k1", "k2"], "a:1:-:x", 60) == ["k1", "k2"]
        assert s.claims.held_by_others(["k1", "k2"], "b:1:-:y", 60) == 2
        s.claims.release("a:1:-:x")
        assert s.claims.held_by_others(["k1", "k2"], "b:1:-:y", 60) == 0


def test_a_claim_lease_follows_its_clock_and_finished_trials_are_spelled_by_the_enum(tmp_path):
    from budgetsched.bench.protocol.status import Status
    from budgetsched.bench.storage.claims import SqliteClaims

    t = [1000.0]
    with Store(tmp_path / "s.db") as s:
        s.put(cfg(lr=0.1), result(status=Status.DIVERGED, val=None, test=None))
        s.put(cfg(lr=0.2), result(status=Status.FAILED, val=None, test=None, error="x"))
        claims = SqliteClaims(s._locked_tx, s._read, clock=lambda: t[0])
        keys = [cfg(lr=lr).key for lr in (0.1, 0.2, 0.3)]
        assert claims.claim(keys, "far:1:-:a", 10) == keys[1:]  # diverged is finished; failed is retried
        t[0] += 5
        claims.heartbeat("far:1:-:a")
        t[0] += 9  # 9 s after the heartbeat: the lease (10 s) holds
        assert claims.claim(keys, "far:2:-:b", 10) == []
        t[0] += 2  # 11 s: expired, taken over
        assert claims.claim(keys, "far:2:-:b", 10) == keys[1:]
    con = sqlite3.connect(tmp_path / "s.db")
    assert dict(con.execute("SELECT lr, status FROM trials")) == {0.1: "diverged", 0.2: "failed"}
    (sql,) = con.execute("SELECT sql FROM sqlite_master WHERE name = 'trials'").fetchone()
    assert "CHECK (status IN ('done', 'diverged', 'failed'))" in sql
    con.close()


# -------------------------------------------------------------------------------------- the study's design
def test_the_recorded_study_gives_its_planned_trials_so_a_seed_that_never_ran_is_missing(tmp_path):
    from budgetsched.bench.protocol.study import StudySpec

    spec = StudySpec.from_mapping(dict(tasks=["digits-mlp"], schedules=["rex", "linear"], lrs=[0.03, 0.1],
                                       optimizers=["sgdm"], budgets=[2.0], seeds=2))
    with Store(tmp_path / "s.db") as s:
        assert s.planned_configs() == [] and s.planned_keys() == set()
        s.record_study(spec.to_dict())
        s.record_study(spec.to_dict())  # a rerun of the same study plans nothing new
        for c in spec.configs():
            if c.seed == 0:
                s.put(c, result())
        planned = s.planned_configs()
        assert planned == spec.configs() and len(planned) == 8
        missing = s.planned_keys() - {r.key for r in s.trial_rows()}
        assert missing == {c.key for c in spec.configs() if c.seed == 1}
        s.record_study({"tasks": ["no-such-task"], "schedules": ["rex"]})
    with Store(tmp_path / "s.db", readonly=True) as s:
        from budgetsched.bench.storage.store import StoreWarning

        with pytest.warns(StoreWarning, match="cannot be expanded here"):
            assert s.planned_configs() == spec.configs()
