"""Reliability (issue 11), tried as an operator would, with real processes where it matters: a killed study leaves
no process behind and resumes to exactly its grid; a full disk, a read-only store, a damaged or foreign store, an
unreachable Ray cluster or an absurd number end in one line and the right exit code, before anything is trained;
concurrent runs on one store train every trial once; stores are created atomically, migrated, and read without
changing a byte.

Training is counted by its starts, not by rows: the command runs through a small wrapper that appends every key
``run_members`` is given to a log file (worker processes import the wrapper too, so their starts are logged).
Studies use ``digits-mlp`` (20 steps per epoch, sub-second trials).
"""
from __future__ import annotations

import collections
import ctypes
import hashlib
import json
import math
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from budgetsched.bench.execution import run as run_mod
from budgetsched.bench.execution.context import DataCache
from budgetsched.bench.protocol.grid import TrialConfig, expand
from budgetsched.bench.storage.store import SCHEMA_VERSION, Store
from budgetsched.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ENV = {**os.environ, "KERAS_BACKEND": "torch", "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
FIXTURES = Path(__file__).parent / "fixtures"

#: The wrapper: ``python counting.py <budgetsched arguments>`` with every training start logged as "pid key".
COUNTING = textwrap.dedent("""
    import os, sys
    from budgetsched.bench.engines import batched, train

    _real = train.run_members

    def run_members(configs, *args, **kwargs):
        with open(os.environ["BUDGETSCHED_TRAIN_LOG"], "a") as f:
            f.write("".join(f"{os.getpid()} {c.key}\\n" for c in configs))
        return _real(configs, *args, **kwargs)

    train.run_members = batched.run_members = run_members
    if __name__ == "__main__":
        from budgetsched.cli import main
        sys.exit(main())
""")


def grid_args(schedules="rex,linear", budgets="2", lrs="0.03,0.1", seeds="0,"):
    return ["--task", "digits-mlp", "--schedules", schedules, "--optimizers", "sgdm", "--budgets", budgets,
            "--lrs", lrs, "--seeds", seeds, "--quiet"]


def grid_keys(schedules="rex,linear", budgets="2", lrs="0.03,0.1", seeds="0,"):
    return {c.key for c in expand(["digits-mlp"], schedules.split(","), ["sgdm"], [float(b) for b in budgets.split(",")],
                                  [float(x) for x in lrs.split(",")], [int(s) for s in seeds.split(",") if s])}


class Counting:
    """Runs ``budgetsched`` in a subprocess through the counting wrapper; ``starts()`` counts training starts."""

    def __init__(self, tmp_path: Path) -> None:
        self.script = tmp_path / "counting.py"
        self.script.write_text(COUNTING)
        self.log = tmp_path / "starts.log"
        self.env = {**ENV, "BUDGETSCHED_TRAIN_LOG": str(self.log)}

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, str(self.script), *args]

    def popen(self, *args: str, **kw) -> subprocess.Popen:
        return subprocess.Popen(self.argv(*args), env=self.env, text=True, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, **kw)

    def run(self, *args: str, shell_prefix: str | None = None, **kw) -> subprocess.CompletedProcess:
        argv = self.argv(*args)
        if shell_prefix is not None:  # e.g. "ulimit -f 8": a limit for this command only
            argv = ["bash", "-c", f"{shell_prefix}; exec \"$@\"", "bash", *argv]
        return subprocess.run(argv, env=self.env, text=True, capture_output=True, timeout=180, **kw)

    def starts(self) -> collections.Counter:
        if not self.log.exists():
            return collections.Counter()
        return collections.Counter(line.split()[1] for line in self.log.read_text().splitlines())

    def pids(self) -> set[int]:
        if not self.log.exists():
            return set()
        return {int(line.split()[0]) for line in self.log.read_text().splitlines()}


@pytest.fixture
def counting(tmp_path):
    return Counting(tmp_path)


def one_error_line(stderr: str, code_needles: tuple[str, ...] = ()) -> str:
    """The whole stderr is one ``budgetsched: error:`` line (no traceback); returns it."""
    assert stderr.startswith("budgetsched: error: ") and stderr.count("\n") == 1, stderr
    assert "Traceback" not in stderr
    for n in code_needles:
        assert n in stderr, stderr
    return stderr


def rows(path: Path) -> list[dict]:
    with Store(path, readonly=True) as s:
        return s.rows()


def file_hashes(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


# ------------------------------------------------------------------------------------------------ processes
def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def children(pid: int) -> dict[int, tuple[str, str]]:
    """Child processes of ``pid``: pid -> (start time, command line)."""
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit() and (st := _stat(int(d))) is not None and int(st[1]) == pid:
            try:
                cmd = Path(f"/proc/{d}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            out[int(d)] = (st[19], cmd)
    return out


def alive(pid: int, start: str) -> bool:
    """The same process (same start time) still exists and is not a zombie."""
    st = _stat(pid)
    return st is not None and st[19] == start and st[0] not in ("Z", "X")


needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
needs_bash = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash for ulimit")

#: 16 trials of 30 epochs (600 steps), chunks of 2 over 2 workers: long enough (about a second of training in all) to
#: kill mid-study even when the workers start late on a loaded machine.
KILL_GRID = dict(schedules="rex,linear", budgets="60", lrs="0.01,0.03,0.1,0.3", seeds="0,1")


@needs_proc
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_killed_parent_leaves_no_process_and_resume_completes_the_grid(tmp_path, counting, sig, trained):
    db = tmp_path / "k.db"
    proc = counting.popen("run", *grid_args(**KILL_GRID), "--workers", "2", "--chunk-size", "2", "--store", str(db))
    deadline = time.monotonic() + 120
    try:
        # both workers training: two worker pids in the start log
        while len(counting.pids() - {proc.pid}) < 2:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the workers did not start training within 120 s"
            time.sleep(0.05)
        kids = children(proc.pid)
        assert sum("spawn_main" in cmd for _, cmd in kids.values()) == 2, kids
        assert any("resource_tracker" in cmd for _, cmd in kids.values()), kids
        proc.send_signal(sig)
        t0 = time.monotonic()
        while any(alive(pid, start) for pid, (start, _) in kids.items()) and time.monotonic() - t0 < 5:
            time.sleep(0.02)
        left = {pid: cmd for pid, (start, cmd) in kids.items() if alive(pid, start)}
        gone_after = time.monotonic() - t0
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert not left, f"{len(left)} processes still running 5 s after {sig.name}: {left}"
    print(f"{sig.name}: {len(kids)} child processes, all gone after {gone_after:.2f} s")
    if sig == signal.SIGTERM:
        assert proc.returncode == 143, err
        assert err.startswith("budgetsched: terminated: ") and err.count("\n") == 1 and "Traceback" not in err, err
    else:
        assert proc.returncode == -signal.SIGKILL
    kept = {r["key"]: r["finished"] for r in rows(db)}
    assert len(kept) < 16

    # resume (in this process, starts counted the same way): only the missing trials train, each once
    t0 = time.monotonic()
    assert main(["run", *grid_args(**KILL_GRID), "--store", str(db)]) == 0
    started = collections.Counter(c.key for c in trained)
    assert time.monotonic() - t0 < 60  # the killed run's claims do not hold the resume up for their lease
    final = rows(db)
    assert sorted(r["key"] for r in final) == sorted(grid_keys(**KILL_GRID))  # the grid, every trial once
    assert {r["key"]: r["finished"] for r in final if r["key"] in kept} == kept  # written before: untouched
    assert set(started) == grid_keys(**KILL_GRID) - set(kept) and set(started.values()) == {1}


def test_sigterm_before_the_study_starts_exits_143_and_leaves_no_store(tmp_path, capsys, monkeypatch):
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        pytest.skip("this process handles SIGTERM itself")
    real = DataCache.load

    def terminated_while_loading(*a, **k):
        os.kill(os.getpid(), signal.SIGTERM)
        return real(*a, **k)

    monkeypatch.setattr(DataCache, "load", terminated_while_loading)
    db = tmp_path / "t.db"
    assert main(["run", *grid_args(), "--store", str(db)]) == 143
    assert capsys.readouterr().err == "budgetsched: terminated\n"
    assert not db.exists()  # the store this command created, still empty, is removed
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored


# -------------------------------------------------------------------------------------- full disk, read-only
def _drop_file_override():
    """In the child: make root respect file permissions (drop CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH)."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    for cap in (1, 2):
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


@pytest.fixture
def unprivileged():
    """``preexec_fn`` for a child that file permissions apply to (root ignores them otherwise)."""
    if os.geteuid() != 0:
        return None
    try:
        subprocess.run([sys.executable, "-c", "pass"], preexec_fn=_drop_file_override, check=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        pytest.skip("running as root and cannot drop CAP_DAC_OVERRIDE: permissions cannot be tested")
    return _drop_file_override


def _new_store(path: Path) -> Path:
    Store(path).close()
    return path


@needs_bash
def test_full_disk_fails_in_one_line_before_training(tmp_path, counting):
    db = _new_store(tmp_path / "full.db")
    r = counting.run("run", *grid_args(), "--store", str(db), shell_prefix="ulimit -f 8")  # 8 KiB per file
    assert r.returncode == 1, r.stderr
    one_error_line(r.stderr, (str(db), "disk is full"))
    assert counting.starts() == {}  # nothing trained for nothing
    assert main(["run", *grid_args(), "--store", str(db)]) == 0  # with room again, the same store works
    assert {x["key"] for x in rows(db)} == grid_keys()


@needs_bash
def test_disk_filling_up_mid_study_ends_in_one_line_and_keeps_what_was_written(tmp_path, counting):
    db = _new_store(tmp_path / "filling.db")
    args = grid_args(lrs="0.01,0.03,0.1,0.3", budgets="2,4")
    # 64 KiB per file: the WAL index (32 KiB) and the first commits fit, a few results later the log does not
    r = counting.run("run", *args, "--chunk-size", "1", "--store", str(db), shell_prefix="ulimit -f 64")
    assert r.returncode == 1, r.stderr
    one_error_line(r.stderr, (str(db), "disk is full"))
    written = {x["key"]: x["finished"] for x in rows(db)}
    assert len(written) < 16
    assert main(["run", *args, "--store", str(db)]) == 0
    final = rows(db)
    assert len(final) == 16 and {x["key"]: x["finished"] for x in final if x["key"] in written} == written


def test_read_only_store_fails_in_one_line_before_training(tmp_path, counting, unprivileged):
    db = _new_store(tmp_path / "ro.db")
    db.chmod(0o444)
    r = counting.run("run", *grid_args(), "--store", str(db), preexec_fn=unprivileged)
    assert r.returncode == 1, r.stderr
    one_error_line(r.stderr, (str(db), "read-only"))
    assert counting.starts() == {}
    assert sorted(p.name for p in tmp_path.glob("ro.db*")) == ["ro.db"]  # no read-only -wal/-shm left behind
    db.chmod(0o644)  # permission fixed: the same command now works
    r = counting.run("run", *grid_args(), "--store", str(db), preexec_fn=unprivileged)
    assert r.returncode == 0, r.stderr
    assert set(counting.starts()) == grid_keys()


def test_store_in_a_read_only_directory_fails_in_one_line_before_training(tmp_path, counting, unprivileged):
    d = tmp_path / "locked"
    d.mkdir()
    db = _new_store(d / "s.db")
    d.chmod(0o555)
    try:
        for store in (db, d / "new.db"):
            r = counting.run("run", *grid_args(), "--store", str(store), preexec_fn=unprivileged)
            assert r.returncode == 1, r.stderr
            one_error_line(r.stderr, (str(store), "not writable"))
        assert counting.starts() == {}
        assert sorted(p.name for p in d.iterdir()) == ["s.db"]
    finally:
        d.chmod(0o755)


def test_locked_store_fails_in_one_line(tmp_path, capsys, monkeypatch):
    from budgetsched.bench.storage import store as store_mod

    db = _new_store(tmp_path / "locked.db")
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process in the middle of a long write
    monkeypatch.setattr(store_mod, "_BUSY_TIMEOUT_MS", 200)
    try:
        assert main(["run", *grid_args(), "--store", str(db)]) == 1
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    one_error_line(capsys.readouterr().err, (str(db), "locked by another process"))


# ---------------------------------------------------------------------------------------- concurrent runs
#: 12 trials in 2 groups, of 3 and 5 epochs: long enough that both runs get to claim a share
CONCURRENT = dict(schedules="rex,linear,cosine", budgets="6,10", lrs="0.03,0.1", seeds="0,")


def _summed_runs(outputs: list[str]) -> int:
    return sum(int(out.split(" trials run")[0]) for out in outputs)


def test_two_concurrent_runs_of_one_grid_train_every_trial_once(tmp_path, counting):
    db = tmp_path / "shared.db"  # not created yet: both runs race to create it, too
    argv = ["run", *grid_args(**CONCURRENT), "--chunk-size", "1", "--store", str(db)]
    procs = [counting.popen(*argv) for _ in range(2)]
    outs = [p.communicate(timeout=180) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    starts = counting.starts()
    assert set(starts) == grid_keys(**CONCURRENT) and set(starts.values()) == {1}, starts  # trained once each
    assert sorted(r["key"] for r in rows(db)) == sorted(grid_keys(**CONCURRENT))
    assert _summed_runs([o for o, _ in outs]) == 12  # the two summaries split the grid
    print("trials per run:", [o.split(" trials run")[0] for o, _ in outs])


def test_overlapping_grids_train_the_shared_trials_once(tmp_path, counting):
    db = _new_store(tmp_path / "overlap.db")
    a = dict(CONCURRENT, lrs="0.03,0.1")
    b = dict(CONCURRENT, lrs="0.1,0.3")
    procs = [counting.popen("run", *grid_args(**g), "--chunk-size", "1", "--store", str(db)) for g in (a, b)]
    for p in procs:
        _, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
    union = grid_keys(**a) | grid_keys(**b)
    starts = counting.starts()
    assert set(starts) == union and set(starts.values()) == {1}, starts
    assert sorted(r["key"] for r in rows(db)) == sorted(union)


CREATE = textwrap.dedent("""
    import json, os, sys, time
    from budgetsched.bench.storage.store import Store
    directory, attempts, start = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    out = []
    for i in range(attempts):
        while time.time() < start + 0.08 * i:  # every process creates store i at the same instant
            pass
        try:
            Store(os.path.join(directory, f"s{i}.db")).close()
            out.append("ok")
        except Exception as e:
            out.append(f"{type(e).__module__}.{type(e).__name__}: {e}")
    print(json.dumps(out))
""")


def test_concurrent_store_creation_never_crashes(tmp_path):
    n_procs, attempts = 8, 25
    script = tmp_path / "create.py"
    script.write_text(CREATE)
    start = time.time() + 4  # after every interpreter has started
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path), str(attempts), str(start)], env=ENV,
                              text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(n_procs)]
    outcomes = collections.Counter()
    for p in procs:
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
        outcomes.update(json.loads(out))
    print(f"{n_procs} processes x {attempts} stores: {dict(outcomes)}")
    assert outcomes == {"ok": n_procs * attempts}, outcomes
    for i in range(attempts):
        with Store(tmp_path / f"s{i}.db") as s:
            assert s.version == SCHEMA_VERSION and s.rows() == []


# ---------------------------------------------------------------------------------------- store safety
def _store_with_rows(path: Path, n: int = 2) -> list[TrialConfig]:
    configs = [TrialConfig("digits-mlp", "rex", "sgdm", 2.0, 0.1, seed) for seed in range(n)]
    with Store(path) as s:
        for c in configs:
            s.put(c, dict(status="done", val_loss=1.0, val_metric=10.0 + c.seed, test_loss=1.0,
                          test_metric=11.0 + c.seed, curves={}, steps=20, wall_time=0.1, error=None))
    return configs


KILLED_WRITER = textwrap.dedent("""
    import os, signal, sys
    from budgetsched.bench.protocol.grid import TrialConfig
    from budgetsched.bench.storage.store import Store
    s = Store(sys.argv[1])
    s.put(TrialConfig("digits-mlp", "linear", "sgdm", 2.0, 0.1, 0),
          dict(status="done", val_loss=1.0, val_metric=5.0, test_loss=1.0, test_metric=6.0, curves={}, steps=20,
               wall_time=0.1, error=None))
    os.kill(os.getpid(), signal.SIGKILL)  # killed: its row stays in the write-ahead log
""")


def _report(store: Path, preexec_fn) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "budgetsched.cli", "report", str(store), "--format", "json"],
                          env=ENV, text=True, capture_output=True, timeout=120, preexec_fn=preexec_fn)


def test_report_in_a_read_only_directory_reads_every_row_and_changes_no_byte(tmp_path, unprivileged):
    d = tmp_path / "shared"
    d.mkdir()
    db = d / "s.db"
    _store_with_rows(db)

    def check(expected_trials: int, warning: str | None) -> None:
        before = file_hashes(d)
        d.chmod(0o555)
        try:
            r = _report(db, unprivileged)
        finally:
            d.chmod(0o755)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["n_trials_done"] == expected_trials
        if warning is None:
            assert r.stderr == ""
        else:
            assert r.stderr.startswith("budgetsched: note: ") and warning in r.stderr and r.stderr.count("\n") == 1
        assert file_hashes(d) == before  # not a byte changed, no file created

    check(2, None)  # a closed store: everything is in the main file
    script = tmp_path / "killed.py"
    script.write_text(KILLED_WRITER)
    assert subprocess.run([sys.executable, str(script), str(db)], env=ENV, timeout=60).returncode == -signal.SIGKILL
    wal = Path(f"{db}-wal")
    assert wal.stat().st_size > 0
    check(3, None)  # a killed run's row, still in the -wal, is read too
    wal.chmod(0o000)  # a log this user cannot read: its rows are missing, and the note says so
    try:
        check(2, f"{str(wal)!r} holds results not yet merged")
    finally:
        wal.chmod(0o644)


def test_report_on_an_empty_file_exits_2_and_writes_nothing(tmp_path, capsys):
    empty = tmp_path / "empty.db"
    empty.touch()
    assert main(["report", str(empty)]) == 2
    one_error_line(capsys.readouterr().err, (str(empty), "empty file"))
    assert empty.read_bytes() == b"" and [p.name for p in tmp_path.iterdir()] == ["empty.db"]


def test_damaged_row_is_skipped_with_a_note_naming_its_key(tmp_path, capsys):
    db = tmp_path / "d.db"
    good, bad = _store_with_rows(db)
    with sqlite3.connect(db) as c:
        c.execute("UPDATE trials SET curves = '{not json' WHERE key = ?", (bad.key,))
    c.close()
    assert main(["report", str(db), "--format", "json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["n_trials_done"] == 1
    assert err.startswith("budgetsched: note: ") and bad.key in err and "skipped" in err and err.count("\n") == 1


def test_store_with_an_extra_required_column_fails_in_one_line_before_training(tmp_path, counting, capsys):
    db = tmp_path / "x.db"
    _store_with_rows(db, 1)
    with sqlite3.connect(db) as c:  # a column added by hand that budgetsched cannot fill
        sql = c.execute("SELECT sql FROM sqlite_master WHERE name = 'trials'").fetchone()[0]
        c.executescript(f"""
            ALTER TABLE trials RENAME TO old_trials;
            {sql[:sql.rindex(")")]}, reviewer TEXT NOT NULL);
            INSERT INTO trials SELECT *, 'me' FROM old_trials;
            DROP TABLE old_trials;
        """)
    c.close()
    r = counting.run("run", *grid_args(), "--store", str(db))
    assert r.returncode == 2, r.stderr
    one_error_line(r.stderr, (str(db), "reviewer"))
    assert counting.starts() == {}
    assert len(rows(db)) == 1  # still readable


def test_newer_store_is_refused_naming_both_versions(tmp_path, capsys):
    db = tmp_path / "newer.db"
    _store_with_rows(db, 1)
    with sqlite3.connect(db) as c:
        c.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    c.close()
    before = db.read_bytes()
    for argv in (["run", *grid_args(), "--store", str(db)], ["report", str(db)]):
        assert main(argv) == 2
        one_error_line(capsys.readouterr().err, (f"version {SCHEMA_VERSION + 1}", f"version {SCHEMA_VERSION})"))
    assert db.read_bytes() == before


# ------------------------------------------------------------------------------------------ bounded inputs
HUGE = "1180591620717411303424"  # 2**70


@pytest.mark.parametrize("flags, needle", [
    (["--seeds", HUGE], HUGE),
    (["--seeds", f"{HUGE},"], HUGE),
    (["--lrs", "1e400"], "inf"),
    (["--lrs", "nan"], "nan"),
    (["--lrs", "0.1,-inf"], "-inf"),
    (["--budgets", "nan"], "nan"),
    (["--budgets", "1e400"], "inf"),
    (["--diverge-factor", "nan"], "nan"),
    (["--diverge-factor", "1e400"], "inf"),
    (["--diverge-factor", "1"], "1"),
    (["--schedules", f"rex:warmup_steps={HUGE}"], "warmup_steps"),
    (["--ray-address", "127.0.0.1:99999", "--engine", "ray"], "99999"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_absurd_numbers_exit_2_with_one_line(tmp_path, capsys, flags, needle):
    if "ray" in flags:
        pytest.importorskip("ray")
    argv = ["run", *grid_args(), "--store", str(tmp_path / "s.db")]
    for i in range(0, len(flags), 2):  # replace the flag's default value
        if flags[i] in argv:
            argv[argv.index(flags[i]) + 1] = flags[i + 1]
        else:
            argv += flags[i:i + 2]
    assert main(argv) == 2
    one_error_line(capsys.readouterr().err, (needle,))
    assert not (tmp_path / "s.db").exists()


@pytest.mark.parametrize("argv, needle", [
    (["schedules", "--total-steps", HUGE], "2**53"),
    (["report", "{db}", "--resamples", HUGE], HUGE),
    (["plot", "{db}", "--out", "{db}/figures"], "--out"),
    (["report", "{db}", "--format", "md", "--output", "{tmp}/no/such/dir/r.md"], "--output"),
])
def test_other_commands_bound_their_numbers_and_paths(tmp_path, capsys, argv, needle):
    db = tmp_path / "s.db"
    _store_with_rows(db, 1)
    argv = [a.format(db=db, tmp=tmp_path) for a in argv]
    assert main(argv) == 2
    one_error_line(capsys.readouterr().err, (needle,))


@pytest.mark.parametrize("field, value", [("lr", math.nan), ("lr", 10 ** 400), ("lr", math.inf), ("lr", None),
                                          ("budget", math.nan), ("budget", 10 ** 400), ("budget", None),
                                          ("seed", 2 ** 70), ("seed", math.nan), ("seed", None),
                                          ("diverge_factor", math.nan), ("diverge_factor", 10 ** 400)])
def test_trial_config_rejects_nan_none_and_huge_values(field, value):
    kw = dict(task="digits-mlp", schedule="rex", optimizer="sgdm", budget=2.0, lr=0.1, seed=0)
    kw[field] = value
    with pytest.raises(ValueError, match=field):
        TrialConfig(**kw)


def test_huge_plateau_patience_reuses_the_constant_run_and_finishes(tmp_path):
    db = tmp_path / "p.db"
    assert main(["run", *grid_args(schedules="plateau", lrs="0.1"), "--plateau-patience", HUGE,
                 "--store", str(db)]) == 0
    (row,) = rows(db)
    assert row["stand_in"] == "constant" and row["status"] == "done"


def test_workers_are_capped_at_the_usable_cores_with_a_note(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(run_mod, "usable_cpus", lambda: 1)
    assert main(["run", *grid_args(), "--workers", "1000", "--store", str(tmp_path / "w.db")]) == 0
    out, err = capsys.readouterr()
    assert err == "budgetsched: note: workers capped at 1, the CPU cores this process may use (asked for 1000)\n"
    assert "(batched, 1 worker, cpu" in out


def test_unreachable_ray_cluster_fails_fast_in_one_line_and_leaves_no_store(tmp_path, capsys):
    pytest.importorskip("ray")
    db = tmp_path / "ray.db"
    t0 = time.monotonic()
    assert main(["run", *grid_args(), "--engine", "ray", "--ray-address", "127.0.0.1:1", "--store", str(db)]) == 1
    elapsed = time.monotonic() - t0
    one_error_line(capsys.readouterr().err, ("127.0.0.1:1", "cannot reach the Ray cluster"))
    assert elapsed < 30, elapsed
    assert not db.exists()
    print(f"unreachable Ray address: exit 1 after {elapsed:.1f} s")


def test_a_bug_keeps_its_traceback_and_leaves_no_store(tmp_path, monkeypatch):
    """A ValueError from inside budgetsched after the arguments were read is a bug, not a usage error (exit 2)."""
    def broken(*a, **k):
        raise ValueError("internal invariant broken")

    monkeypatch.setattr(run_mod, "plan_study", broken)
    db = tmp_path / "bug.db"
    with pytest.raises(ValueError, match="internal invariant broken"):
        main(["run", *grid_args(), "--store", str(db)])
    assert not db.exists()  # the store this run created, still empty, is removed (by the store module)
