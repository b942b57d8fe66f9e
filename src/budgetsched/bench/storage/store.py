"""Results store: one SQLite file (WAL mode), one row per trial keyed by ``TrialConfig.key``.

Why SQLite: a study is thousands of small trials that finish one by one and must survive a crash; SQLite gives
durable single-row transactions, needs no server and is readable by any tool. Each write is one transaction
(:meth:`Store._tx`) with ``synchronous=FULL``, so a trial whose ``put`` has returned survives even a SIGKILL.

Identity and version. The file is marked with ``PRAGMA application_id`` (:data:`APPLICATION_ID`); its layout
version is ``PRAGMA user_version`` and nothing else. Opening checks both, and the columns of the trials table: a
foreign or damaged file is refused, an older layout is migrated in one transaction (:data:`MIGRATIONS`), a newer
one is refused naming both versions. Creating a new store is one exclusive transaction, so processes racing to
create it all succeed.

Writers. ``Store(path)`` refuses a file, ``-wal``/``-shm`` file or directory it cannot write before SQLite creates
anything, and commits one small write when it opens, so a read-only store or a full disk fails before a run
trains anything. Writers checkpoint the write-ahead log when they close.

Readers. ``Store(path, readonly=True)`` (``report``, ``plot``) never writes to the store: where the directory is
writable it reads with ``mode=ro`` (sharing the WAL index with a live run); where it is not, nothing at all is
written: the main file is read ``immutable`` (exact once a run has closed), or, when a killed run left a
non-empty ``-wal``, a private copy of the store and its log is read; a ``-wal`` that cannot be read is skipped with
a :class:`StoreWarning`. A row that cannot be decoded is skipped with a warning naming its key.

Concurrent runs. Before training, a run *claims* its trials (:meth:`Store.claim`): a lease row naming the run
(:func:`claim_owner`), kept alive by :meth:`Store.heartbeat`; two runs on one store split the work. Claims not
renewed for ``lease_s`` (a crashed run elsewhere), or held by a run on this host whose process has ended, are
taken over. Writing a trial's result releases its claim in the same transaction. A store that a failed run
created and never wrote is removed by :meth:`Store.remove_if_empty`, which never removes one another writer has
open (every writer holds a shared ``flock`` on the store's directory).

Every row carries the full config (JSON), the package / torch / python versions, the host, the engine and the
device, so any number in a report can be traced to what produced it.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import importlib.metadata
import json
import math
import os
import platform
import socket
import sqlite3
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from budgetsched.bench.protocol.grid import TrialConfig
from budgetsched.bench.protocol.records import TrialRow
from budgetsched.bench.protocol.status import FINISHED, STATUSES, Status
from budgetsched.errors import EnvironmentFailure, UsageError

try:
    import fcntl as _fcntl
except ImportError:  # not POSIX: no directory lock (remove_if_empty then keeps the store)
    _fcntl = None  # type: ignore[assignment]

__all__ = ["Store", "StoreError", "StoreIOError", "StoreWarning", "STATUSES", "SCHEMA_VERSION", "APPLICATION_ID",
           "claim_owner", "owner_is_gone"]

#: The on-disk layout version (``PRAGMA user_version``); older stores are migrated by :data:`MIGRATIONS`.
SCHEMA_VERSION = 2
#: ``PRAGMA application_id`` of a budgetsched store: the ASCII bytes "BSCH".
APPLICATION_ID = 0x42534348
#: Result attributes a trial result must provide (``TrialResult`` in ``bench/protocol/records.py``).
RESULT_FIELDS = ("status", "val_loss", "val_metric", "test_loss", "test_metric", "curves", "steps", "wall_time", "error")
_METRICS = ("val_loss", "val_metric", "test_loss", "test_metric")
_SQLITE_MAGIC = b"SQLite format 3\x00"
_BUSY_TIMEOUT_MS = 30_000

_SCHEMA = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE trials (
    key             TEXT PRIMARY KEY,
    task            TEXT NOT NULL,
    schedule        TEXT NOT NULL,
    schedule_params TEXT NOT NULL,
    label           TEXT NOT NULL,
    optimizer       TEXT NOT NULL,
    budget          REAL NOT NULL,
    lr              REAL NOT NULL,
    seed            INTEGER NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('done', 'diverged', 'failed')),
    val_loss        REAL,
    val_metric      REAL,
    test_loss       REAL,
    test_metric     REAL,
    curves          TEXT NOT NULL,
    steps           INTEGER,
    wall_time       REAL,
    error           TEXT,
    started         TEXT,
    finished        TEXT NOT NULL,
    package_version TEXT,
    torch_version   TEXT,
    python_version  TEXT,
    hostname        TEXT,
    engine          TEXT,
    device          TEXT,
    run_meta        TEXT NOT NULL DEFAULT '{}',
    config          TEXT NOT NULL,
    budget_unit     TEXT NOT NULL DEFAULT 'epochs',
    total_steps     INTEGER,
    stand_in        TEXT
);
CREATE INDEX trials_by_setting ON trials (task, optimizer, budget);
CREATE TABLE claims (
    key       TEXT PRIMARY KEY,
    owner     TEXT NOT NULL,
    heartbeat REAL NOT NULL
);
"""


def _migrate_1_to_2(c: sqlite3.Connection) -> None:
    """v2: budget unit (v1 rounded budgets up to whole epochs), planned steps, plateau stand-ins, claims; the
    version lives in ``user_version`` only."""
    c.execute("ALTER TABLE trials ADD COLUMN budget_unit TEXT NOT NULL DEFAULT 'epochs'")
    c.execute("ALTER TABLE trials ADD COLUMN total_steps INTEGER")
    c.execute("ALTER TABLE trials ADD COLUMN stand_in TEXT")
    c.execute("CREATE TABLE claims (key TEXT PRIMARY KEY, owner TEXT NOT NULL, heartbeat REAL NOT NULL)")
    c.execute("DELETE FROM meta WHERE key = 'schema_version'")


#: ``from_version -> migration`` to ``from_version + 1``; each runs inside the opening transaction.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {1: _migrate_1_to_2}

_COLUMNS = (
    "key", "task", "schedule", "schedule_params", "label", "optimizer", "budget", "lr", "seed", "status",
    "val_loss", "val_metric", "test_loss", "test_metric", "curves", "steps", "wall_time", "error",
    "started", "finished", "package_version", "torch_version", "python_version", "hostname", "engine", "device",
    "run_meta", "config", "budget_unit", "total_steps", "stand_in",
)
_V1_DEFAULTS = {"budget_unit": "epochs", "total_steps": None, "stand_in": None}
_JSON_COLUMNS = ("schedule_params", "curves", "run_meta", "config")


class StoreError(UsageError):
    """The file cannot be used as a store: not a budgetsched store, damaged, newer schema, closed."""


class StoreIOError(EnvironmentFailure):
    """The store cannot be read or written right now: disk full, I/O error, permissions, locked."""


class StoreWarning(UserWarning):
    """Something in the store was skipped or could not be read (the message says what)."""


def _package_version() -> str:
    mod = sys.modules.get("budgetsched")
    version = getattr(mod, "__version__", None)
    if version:
        return str(version)
    try:
        return importlib.metadata.version("budgetsched")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _torch_version() -> str | None:
    # Do not import torch just to read its version (it takes a second); use the loaded module or the metadata.
    mod = sys.modules.get("torch")
    if mod is not None and getattr(mod, "__version__", None):
        return str(mod.__version__)
    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return None


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


def _json_default(o: Any) -> Any:
    if isinstance(o, (tuple, set)):
        return list(o)
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"not JSON serialisable: {o!r}")


def _dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=_json_default)


def _opt_float(name: str, value: Any) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"result field {name} must be a number or None, got {value!r}") from None


def _result_fields(result: Any) -> dict[str, Any]:
    """Read the TrialResult fields from a TrialResult-like object or a mapping."""
    if isinstance(result, Mapping):
        missing = [f for f in RESULT_FIELDS if f not in result and f != "error"]
        get = lambda f: result.get(f)  # noqa: E731
    else:
        missing = [f for f in RESULT_FIELDS if not hasattr(result, f) and f != "error"]
        get = lambda f: getattr(result, f, None)  # noqa: E731
    if missing:
        raise ValueError(
            f"trial result lacks field(s) {', '.join(missing)}; a result needs {', '.join(RESULT_FIELDS)}"
        )
    out = {f: get(f) for f in RESULT_FIELDS}
    out["status"] = Status.parse(out["status"]).value
    for m in _METRICS:
        out[m] = _opt_float(m, out[m])
    out["wall_time"] = _opt_float("wall_time", out["wall_time"])
    if out["steps"] is not None:
        out["steps"] = int(out["steps"])
    curves = out["curves"] if out["curves"] is not None else {}
    if not isinstance(curves, Mapping):
        raise ValueError(f"result field curves must be a dict of lists, got {type(curves).__name__}")
    out["curves"] = {str(k): list(v) for k, v in curves.items()}
    if out["error"] is not None:
        out["error"] = str(out["error"])
    return out


def _io_error(path: Path, e: sqlite3.Error, doing: str) -> Exception:
    """One clear error for an SQLite failure: the environment's (StoreIOError) or the file's (StoreError)."""
    msg = str(e).lower()
    where = f"store {str(path)!r}"
    if "locked" in msg or "busy" in msg:
        return StoreIOError(f"cannot {doing} {where}: it is locked by another process ({e}); try again")
    if "readonly" in msg or "read-only" in msg or "permission" in msg:
        return StoreIOError(f"cannot {doing} {where}: it is read-only here ({e}); check the file's permissions")
    if "disk is full" in msg or "disk i/o" in msg or "full" in msg:
        return StoreIOError(f"cannot {doing} {where}: the disk is full or failing ({e}); free space and rerun")
    if "unable to open" in msg:
        return StoreIOError(f"cannot {doing} {where}: the file or its directory cannot be opened ({e})")
    if "not a database" in msg or "malformed" in msg or "corrupt" in msg:
        return StoreError(f"{where} is damaged or not a budgetsched results store ({e})")
    if isinstance(e, sqlite3.IntegrityError) or "no such" in msg or "has no column" in msg:
        return StoreError(f"{where} has a layout this budgetsched cannot use ({e})")
    return StoreIOError(f"cannot {doing} {where}: {e}")


class Store:
    """SQLite results store for one study.

    >>> import tempfile, os
    >>> with Store(os.path.join(tempfile.mkdtemp(), "study.db")) as s:
    ...     s.counts()
    {'done': 0, 'diverged': 0, 'failed': 0}

    ``Store(path)`` creates the file (and its directory) or opens an existing store after checking that it is
    one and that it can be written (nothing is trained into a store that cannot take the result).
    ``Store(path, readonly=True)`` opens an existing store for reading only and never writes to the file.

    Raises:
        StoreError: not a budgetsched store, damaged, a newer layout, or (read-only) no such file.
        StoreIOError: the file or its directory cannot be written (read-only, disk full, locked).
    """

    def __init__(self, path: str | os.PathLike[str], *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = bool(readonly)
        #: True when this instance created the store (its schema); see :meth:`remove_if_empty`.
        self.created = False
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._dir_lock: _DirLock | None = None
        self._snapshot: Path | None = None  # a private copy read instead of the file (see _open_snapshot)
        self.version = SCHEMA_VERSION
        self._check_file()
        self._conn = self._open_readonly() if self.readonly else self._open_writable()

    # -- opening -----------------------------------------------------------------------------------------------
    def _check_file(self) -> None:
        """Reject a non-SQLite file before SQLite touches it (SQLite would happily write into an empty one)."""
        p = self.path
        if p.is_dir():
            raise StoreError(f"store path {str(p)!r} is a directory; give a file path such as {str(p / 'study.db')!r}")
        if not p.exists():
            if self.readonly:
                raise StoreError(f"no results store at {str(p)!r}; create one with 'budgetsched run --store {p} ...'")
            return
        try:
            with open(p, "rb") as f:
                head = f.read(len(_SQLITE_MAGIC))
        except OSError as e:
            raise StoreIOError(f"cannot read store {str(p)!r}: {e.strerror or e}") from None
        if self.readonly and not head:
            raise StoreError(f"{str(p)!r} is an empty file, not a budgetsched results store")
        if head and head != _SQLITE_MAGIC:
            raise StoreError(f"{str(p)!r} is not a budgetsched results store (not an SQLite database)")

    def _connect(self, uri: str) -> sqlite3.Connection:
        conn = sqlite3.connect(uri, uri=True, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                               check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        return conn

    def _check_writable(self) -> None:
        """Refuse, before SQLite creates anything, a store this process cannot write: SQLite would otherwise open
        it read-only, leave read-only ``-wal``/``-shm`` files behind, and fail only at the first write."""
        p, d = self.path, self.path.parent
        if not os.access(d, os.W_OK | os.X_OK):
            raise StoreIOError(f"cannot write to store {str(p)!r}: its directory {str(d)!r} is not writable here "
                               f"(SQLite keeps its write-ahead log next to the store); check its permissions")
        for f in (p, Path(f"{p}-wal"), Path(f"{p}-shm")):
            if f.exists() and not os.access(f, os.R_OK | os.W_OK):
                raise StoreIOError(f"cannot write to store {str(p)!r}: {str(f)!r} is read-only here; "
                                   f"check the file's permissions")

    def _open_writable(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            kind = StoreError if e.errno in (errno.ENOTDIR, errno.EEXIST, errno.ENAMETOOLONG) else StoreIOError
            raise kind(f"cannot create the directory of store {str(self.path)!r}: {e.strerror or e}") from None
        self._check_writable()
        self._dir_lock = _DirLock(self.path.parent)
        try:
            self._dir_lock.shared()
            conn = self._connect(self.path.resolve().as_uri() + "?mode=rwc")
        except sqlite3.Error as e:
            self._release_dir_lock()
            raise _io_error(self.path, e, "open") from None
        except BaseException:
            self._release_dir_lock()
            raise
        self._conn = conn
        try:
            with self._tx():  # check, create or migrate in one exclusive transaction: racing creators all succeed
                self._init_schema(conn)
            self._wal_mode(conn)
            # FULL: the WAL is fsynced at each commit, so a put that returned survives a crash or power loss.
            conn.execute("PRAGMA synchronous = FULL")
            self._probe_write()
        except BaseException as e:
            conn.close()
            self._conn = None
            self._release_dir_lock()
            if isinstance(e, sqlite3.Error):
                raise _io_error(self.path, e, "open") from None
            raise
        return conn

    def _wal_mode(self, conn: sqlite3.Connection) -> None:
        """Switch to WAL (persistent; a no-op for an existing store). SQLite answers "database is locked" at once,
        without waiting, when another process holds the file while it switches, so retry for the busy timeout."""
        deadline = time.monotonic() + _BUSY_TIMEOUT_MS / 1000
        delay = 0.005
        while True:
            try:
                mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
                if str(mode).lower() != "wal":
                    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                break
            except sqlite3.OperationalError as e:
                if "locked" not in str(e).lower() or time.monotonic() > deadline:
                    raise _io_error(self.path, e, "open") from None
                time.sleep(delay)
                delay = min(0.2, delay * 2)
        if str(mode).lower() != "wal":
            raise StoreIOError(f"cannot switch store {str(self.path)!r} to WAL mode (got {mode!r})")

    def _open_readonly(self) -> sqlite3.Connection:
        """``mode=ro`` where the directory is writable (SQLite shares the WAL index with a live writer there);
        otherwise a private read that changes no byte of the store (see :meth:`_open_snapshot`)."""
        if os.access(self.path.parent, os.W_OK | os.X_OK):
            try:
                conn = self._connect(self.path.resolve().as_uri() + "?mode=ro")
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            except sqlite3.OperationalError as e:
                msg = str(e).lower()
                if "unable to open" not in msg and "readonly" not in msg:
                    raise _io_error(self.path, e, "read") from None
                conn = self._open_snapshot()  # e.g. a -shm file this user cannot write
            except sqlite3.Error as e:
                raise _io_error(self.path, e, "read") from None
        else:
            conn = self._open_snapshot()
        try:
            self._check_identity(conn, migrate=False)
            self._check_layout(conn, writing=False)
        except BaseException:
            conn.close()
            self._drop_snapshot()
            raise
        return conn

    def _open_snapshot(self) -> sqlite3.Connection:
        """Read a store whose directory this user cannot write, without changing a byte of it.

        No write-ahead log (or an empty one, the state a closed run leaves): the main file holds every row and is
        read as ``immutable``. A non-empty ``-wal`` (a run was killed): the store and its log are copied to a
        private temporary directory and the copy is read, so the rows in the log are in the report. A ``-wal``
        this user cannot read: its rows are missing, and a :class:`StoreWarning` says so.
        """
        uri = self.path.resolve().as_uri()
        wal = Path(f"{self.path}-wal")
        try:
            wal_size = wal.stat().st_size
        except OSError:
            wal_size = 0
        if wal_size and os.access(wal, os.R_OK):
            copy = self._copy_with_wal(wal)
            if copy is not None:
                try:
                    return self._connect(copy.resolve().as_uri() + "?mode=rw")
                except sqlite3.Error as e:
                    self._drop_snapshot()
                    raise _io_error(self.path, e, "read") from None
        if wal_size:
            warnings.warn(f"{str(wal)!r} holds results not yet merged into the store and cannot be read here; "
                          "rows in it are missing from this report. Open the store once with write access "
                          "(e.g. rerun the study) to merge them.", StoreWarning, stacklevel=4)
        try:
            conn = self._connect(uri + "?immutable=1")
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.Error as e:
            raise _io_error(self.path, e, "read") from None

    def _copy_with_wal(self, wal: Path) -> Path | None:
        """Copy the store and its ``-wal`` to a private directory (None if that fails); retried while a writer
        changes them under the copy."""
        import shutil
        import tempfile

        def state() -> tuple[tuple[int, int], ...]:
            return tuple((s.st_size, s.st_mtime_ns) for s in (self.path.stat(), wal.stat()))
        try:
            tmp = Path(tempfile.mkdtemp(prefix="budgetsched-read-"))
        except OSError:
            return None
        self._snapshot = tmp
        copy = tmp / self.path.name
        try:
            for _ in range(5):
                before = state()
                shutil.copyfile(wal, f"{copy}-wal")
                shutil.copyfile(self.path, copy)
                if state() == before:
                    return copy
                time.sleep(0.1)
        except OSError:
            pass
        self._drop_snapshot()
        return None

    def _drop_snapshot(self) -> None:
        if self._snapshot is not None:
            import shutil

            shutil.rmtree(self._snapshot, ignore_errors=True)
            self._snapshot = None

    def _release_dir_lock(self) -> None:
        if self._dir_lock is not None:
            self._dir_lock.release()
            self._dir_lock = None

    def _check_identity(self, c: sqlite3.Connection, migrate: bool) -> int:
        """Validate application id and version; returns the version found (0 for an empty database)."""
        try:
            app_id = c.execute("PRAGMA application_id").fetchone()[0]
            version = c.execute("PRAGMA user_version").fetchone()[0]
            n_objects = c.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        except sqlite3.Error as e:
            raise _io_error(self.path, e, "read") from None
        if app_id == 0 and version == 0 and n_objects == 0:
            if not migrate:
                raise StoreError(f"{str(self.path)!r} is an empty database, not a budgetsched results store")
            return 0
        if app_id != APPLICATION_ID:
            raise StoreError(f"{str(self.path)!r} is an SQLite database but not a budgetsched results store "
                             f"(application_id {app_id:#x}, expected {APPLICATION_ID:#x})")
        if version > SCHEMA_VERSION:
            raise StoreError(f"store {str(self.path)!r} has schema version {version}, newer than this budgetsched "
                             f"({_package_version()}) reads (version {SCHEMA_VERSION}); upgrade budgetsched")
        if version < 1:
            raise StoreError(f"store {str(self.path)!r} has an unknown schema version {version}")
        tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not {"meta", "trials"} <= tables:
            raise StoreError(f"store {str(self.path)!r} is damaged: tables meta/trials are missing")
        self.version = version
        return version

    def _check_layout(self, c: sqlite3.Connection, writing: bool) -> None:
        """The trials table has every column this version reads, and (to write) none it would not fill."""
        try:
            info = c.execute("PRAGMA table_info(trials)").fetchall()  # cid, name, type, notnull, default, pk
            tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.Error as e:
            raise _io_error(self.path, e, "read") from None
        names = {r[1] for r in info}
        missing = [k for k in _COLUMNS if k not in names and (self.version >= 2 or k not in _V1_DEFAULTS)]
        if missing:
            raise StoreError(f"store {str(self.path)!r} is damaged or was changed by hand: table trials lacks "
                             f"column(s) {', '.join(missing)}")
        if not writing:
            return
        unfilled = [r[1] for r in info if r[1] not in _COLUMNS and r[3] and r[4] is None and not r[5]]
        if unfilled:
            raise StoreError(f"store {str(self.path)!r} was changed by hand: column(s) {', '.join(unfilled)} of "
                             f"table trials must be filled (NOT NULL, no default) but budgetsched does not know "
                             f"them, so no trial could be written; drop the column(s) or use another store")
        if "claims" not in tables:
            raise StoreError(f"store {str(self.path)!r} is damaged or was changed by hand: table claims is missing")

    def _init_schema(self, c: sqlite3.Connection) -> None:
        version = self._check_identity(c, migrate=True)
        if version == 0:
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    c.execute(stmt)
            meta = {"application": "budgetsched", "created": _now(), "created_by": _package_version()}
            c.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", meta.items())
            c.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            self.created = True
        else:
            for v in range(version, SCHEMA_VERSION):
                MIGRATIONS[v](c)
                c.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                          (f"migrated_{v}_to_{v + 1}", f"{_now()} by {_package_version()}"))
        c.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        self.version = SCHEMA_VERSION
        self._check_layout(c, writing=True)

    def _probe_write(self) -> None:
        """Commit one small write now, so a read-only file or a full disk fails before anything is trained."""
        with self._tx("write to") as c:
            c.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('last_opened', ?)", (_now(),))

    # -- the one transaction helper ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def _tx(self, doing: str = "write to") -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE ... COMMIT`` (rolled back on any error); SQLite errors become one clear error."""
        c = self._db()
        try:
            c.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            raise _io_error(self.path, e, doing) from None
        try:
            yield c
            c.execute("COMMIT")
        except BaseException as e:
            if c.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    c.execute("ROLLBACK")
            if isinstance(e, sqlite3.Error):
                raise _io_error(self.path, e, doing) from None
            raise

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"store {str(self.path)!r} is closed")
        return self._conn

    def _writable(self) -> None:
        if self.readonly:
            raise StoreError(f"store {str(self.path)!r} was opened read-only")

    # -- reading -------------------------------------------------------------------------------------------------
    def _read(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._db().execute(sql, args).fetchall()
            except sqlite3.Error as e:
                raise _io_error(self.path, e, "read") from None

    def finished_keys(self) -> set[str]:
        """Keys of trials that need no rerun: status ``done`` or ``diverged`` (``failed`` ones are retried)."""
        return {r[0] for r in self._read("SELECT key FROM trials WHERE status IN (?, ?)",
                                         tuple(s.value for s in FINISHED))}

    def rows(self, task: str | None = None) -> list[dict[str, Any]]:
        """All trials (or one task's) as dicts: config fields, result fields, provenance; JSON columns decoded.

        ``schedule_params``, ``curves``, ``run_meta`` and ``config`` come back as dicts. Ordered by task,
        optimizer, budget, label, lr, seed. A row that cannot be decoded is skipped with a :class:`StoreWarning`
        naming its key.
        """
        if task is None:
            return self._rows_where("1", ())
        return self._rows_where("task = ?", (task,))

    def row(self, key: str) -> dict[str, Any] | None:
        """The trial stored under ``key`` (as in :meth:`rows`), or None (also when it cannot be decoded)."""
        return next(iter(self._rows_where("key = ?", (key,))), None)

    def _rows_where(self, where: str, args: tuple[Any, ...]) -> list[dict[str, Any]]:
        cols = [c for c in _COLUMNS if self.version >= 2 or c not in _V1_DEFAULTS]
        fetched = self._read(f"SELECT {', '.join(cols)} FROM trials WHERE {where} "
                             "ORDER BY task, optimizer, budget, label, lr, schedule_params, seed", args)
        out = []
        for values in fetched:
            d = {**_V1_DEFAULTS, **dict(zip(cols, values))}
            try:
                for k in _JSON_COLUMNS:
                    d[k] = json.loads(d[k])
                    if not isinstance(d[k], dict):
                        raise ValueError(f"column {k} holds {type(d[k]).__name__}, not an object")
                Status.parse(d["status"])
            except (TypeError, ValueError) as e:
                warnings.warn(f"store {str(self.path)!r}: trial {d.get('key')!r} cannot be read ({e}); skipped",
                              StoreWarning, stacklevel=3)
                continue
            out.append(d)
        return out

    def trial_rows(self, task: str | None = None) -> list[TrialRow]:
        """All trials (or one task's), each decoded once into a :class:`~budgetsched.bench.protocol.records.TrialRow`
        (config, result with its :class:`Status`, provenance, planned length, stand-in); ordered as :meth:`rows`.
        A row that cannot be decoded is skipped with a :class:`StoreWarning` naming its key."""
        return self._trial_rows(self.rows(task))

    def trial_row(self, key: str) -> TrialRow | None:
        """The trial stored under ``key`` as a :class:`TrialRow`, or None (also when it cannot be decoded)."""
        return next(iter(self._trial_rows(self._rows_where("key = ?", (key,)))), None)

    def _trial_rows(self, dicts: list[dict[str, Any]]) -> list[TrialRow]:
        out = []
        for d in dicts:
            try:
                out.append(TrialRow.from_stored(d))
            except (TypeError, ValueError, KeyError) as e:
                warnings.warn(f"store {str(self.path)!r}: trial {d.get('key')!r} cannot be read ({e}); skipped",
                              StoreWarning, stacklevel=3)
        return out

    def counts(self) -> dict[str, int]:
        """Number of trials per status (every status present, zeros included)."""
        got = dict(self._read("SELECT status, count(*) FROM trials GROUP BY status"))
        return {s: int(got.get(s, 0)) for s in STATUSES}

    def meta(self) -> dict[str, str]:
        """The store's own metadata (application, creation time and package version, migrations)."""
        return dict(self._read("SELECT key, value FROM meta"))

    def studies(self) -> list[dict[str, Any]]:
        """The study specs run into this store, oldest first (``{"time", "spec"}`` each; see :meth:`record_study`)."""
        raw = self.meta().get("studies")
        return [] if raw is None else json.loads(raw)

    # -- writing -------------------------------------------------------------------------------------------------
    def record_study(self, spec: Mapping[str, Any]) -> None:
        """Remember the study spec a run was started with (``StudySpec.to_dict()``), after the ones before it."""
        self._writable()
        with self._lock, self._tx() as c:
            row = c.execute("SELECT value FROM meta WHERE key = 'studies'").fetchone()
            history = [] if row is None else json.loads(row[0])
            history.append({"time": _now(), "spec": dict(spec)})
            c.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('studies', ?)", (_dumps(history),))

    def put(self, config: TrialConfig, result: Any, meta: Mapping[str, Any] | None = None, *,
            total_steps: int | None = None, stand_in: str | None = None) -> None:
        """Record one trial in one durable transaction (releasing its claim); re-putting a config replaces its row.

        ``result`` is a ``TrialResult`` or any object / mapping with its fields (status, val_loss, val_metric,
        test_loss, test_metric, curves, steps, wall_time, error). ``meta`` may give ``engine``, ``device`` and
        ``started`` (ISO time; without it, finish time minus ``wall_time``); the whole ``meta`` (workers, git
        commit, ...) is also kept as JSON in ``run_meta``. ``total_steps`` is the run's planned length;
        ``stand_in`` names the trial whose result this one reuses (``"constant"`` for a plateau that cannot
        trigger within its budget).
        """
        self._writable()
        if not isinstance(config, TrialConfig):
            raise ValueError(f"config must be a TrialConfig, got {type(config).__name__}")
        r = _result_fields(result)
        meta = dict(meta or {})
        finished_dt = _dt.datetime.now(_dt.timezone.utc)
        started = meta.get("started")
        if started is None and r["wall_time"] is not None and math.isfinite(r["wall_time"]):
            started = (finished_dt - _dt.timedelta(seconds=r["wall_time"])).isoformat(timespec="milliseconds")
        row = {
            "key": config.key, "task": config.task, "schedule": config.schedule,
            "schedule_params": _dumps(config.params), "label": config.label, "optimizer": config.optimizer,
            "budget": config.budget, "lr": config.lr, "seed": config.seed,
            **{m: r[m] for m in _METRICS},
            "status": r["status"], "curves": _dumps(r["curves"]), "steps": r["steps"], "wall_time": r["wall_time"],
            "error": r["error"], "started": None if started is None else str(started),
            "finished": finished_dt.isoformat(timespec="milliseconds"),
            "package_version": _package_version(), "torch_version": _torch_version(),
            "python_version": platform.python_version(), "hostname": socket.gethostname(),
            "engine": None if meta.get("engine") is None else str(meta["engine"]),
            "device": None if meta.get("device") is None else str(meta["device"]),
            "run_meta": _dumps({k: v for k, v in meta.items() if k != "started"}),
            "config": _dumps(config.to_dict()), "budget_unit": config.budget_unit,
            "total_steps": None if total_steps is None else int(total_steps), "stand_in": stand_in,
        }
        sql = f"INSERT OR REPLACE INTO trials ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
        with self._lock, self._tx() as c:
            c.execute(sql, [row[k] for k in _COLUMNS])
            c.execute("DELETE FROM claims WHERE key = ?", (config.key,))

    # -- claims (concurrent runs) --------------------------------------------------------------------------------
    def _drop_stale_claims(self, c: sqlite3.Connection, owner: str, lease_s: float, now: float) -> None:
        """Inside a transaction: drop claims not renewed for ``lease_s`` seconds and claims of runs on this host
        whose process is gone (a killed run: its trials are free at once, not after the lease)."""
        c.execute("DELETE FROM claims WHERE heartbeat < ?", (now - lease_s,))
        for (other,) in c.execute("SELECT DISTINCT owner FROM claims WHERE owner != ?", (owner,)).fetchall():
            if owner_is_gone(other):
                c.execute("DELETE FROM claims WHERE owner = ?", (other,))

    def claim(self, keys: list[str], owner: str, lease_s: float) -> list[str]:
        """Claim the unfinished, unclaimed ``keys`` for ``owner`` in one transaction; returns those claimed.

        ``owner`` names the run (:func:`claim_owner`). Claims whose last heartbeat is older than ``lease_s`` seconds
        (a crashed run elsewhere) and claims of a run on this host whose process has ended are taken over.
        """
        self._writable()
        now = time.time()
        got: list[str] = []
        with self._lock, self._tx() as c:
            self._drop_stale_claims(c, owner, lease_s, now)
            for i in range(0, len(keys), 500):
                part = keys[i:i + 500]
                marks = ",".join("?" * len(part))
                taken = {r[0] for r in c.execute(
                    f"SELECT key FROM trials WHERE key IN ({marks}) AND status IN ('done', 'diverged')", part)}
                taken |= {r[0] for r in c.execute(
                    f"SELECT key FROM claims WHERE key IN ({marks}) AND owner != ?", (*part, owner))}
                mine = [k for k in part if k not in taken]
                c.executemany("INSERT OR REPLACE INTO claims (key, owner, heartbeat) VALUES (?, ?, ?)",
                              [(k, owner, now) for k in mine])
                got += mine
        return got

    def claimed_by_others(self, keys: list[str], owner: str, lease_s: float) -> int:
        """How many of ``keys`` are held by another run's live claim."""
        now = time.time()
        held: dict[str, int] = {}
        for i in range(0, len(keys), 500):
            part = keys[i:i + 500]
            marks = ",".join("?" * len(part))
            for other, n in self._read(f"SELECT owner, count(*) FROM claims WHERE key IN ({marks}) AND owner != ? "
                                       "AND heartbeat >= ? GROUP BY owner", (*part, owner, now - lease_s)):
                held[other] = held.get(other, 0) + int(n)
        return sum(n for other, n in held.items() if not owner_is_gone(other))

    def heartbeat(self, owner: str) -> None:
        """Keep ``owner``'s claims alive."""
        with self._lock, self._tx() as c:
            c.execute("UPDATE claims SET heartbeat = ? WHERE owner = ?", (time.time(), owner))

    def release(self, owner: str) -> None:
        """Drop ``owner``'s remaining claims (its unfinished trials become free for other runs)."""
        with self._lock, self._tx() as c:
            c.execute("DELETE FROM claims WHERE owner = ?", (owner,))

    # -- closing -------------------------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the connection (idempotent). A writer first merges the write-ahead log into the file, so that
        readers without write access to the directory see every row."""
        with self._lock:
            if self._conn is not None:
                if not self.readonly:
                    with contextlib.suppress(sqlite3.Error):
                        self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                self._conn.close()
                self._conn = None
            self._release_dir_lock()
            self._drop_snapshot()

    def remove_if_empty(self) -> bool:
        """Close the store and, if this instance created it, delete its files when it holds no trial and no other
        process has a store of its directory open for writing: a run that fails before writing any result leaves
        nothing behind, and never removes a store it did not create or another run is using. Returns True if the
        files were removed."""
        self.close()
        if self.readonly or not self.created:
            return False
        with _DirLock(self.path.parent) as lock:
            if not lock.exclusive():  # another writer has a store of this directory open: keep it
                return False
            try:
                conn = sqlite3.connect(self.path.resolve().as_uri() + "?mode=ro", uri=True)
                try:
                    n = conn.execute("SELECT count(*) FROM trials").fetchone()[0]
                finally:
                    conn.close()
            except sqlite3.Error:
                return False
            if n:
                return False
            for suffix in ("", "-wal", "-shm"):
                Path(str(self.path) + suffix).unlink(missing_ok=True)
        return True

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r}{', readonly=True' if self.readonly else ''})"


# ----------------------------------------------------------------------------------------------- helpers
class _DirLock:
    """An advisory ``flock`` on the store's directory: every writer holds it shared while its store is open;
    :meth:`Store.remove_if_empty` deletes files only if it can take it exclusively, i.e. when no other writer
    (in any process) has a store of that directory open. A lock on the directory, not on the store file:
    closing a descriptor of the store file would drop SQLite's own POSIX locks held by this process."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._fd: int | None = None

    def _open(self) -> bool:
        if self._fd is None:
            try:
                self._fd = os.open(self.directory, os.O_RDONLY)
            except OSError:
                return False
        return True

    def shared(self) -> None:
        if _fcntl is not None and self._open():
            try:
                _fcntl.flock(self._fd, _fcntl.LOCK_SH)
            except OSError:  # a file system without flock: no lock, and remove_if_empty then keeps the store
                pass

    def exclusive(self) -> bool:
        """Take the lock exclusively without waiting; False if another holder has it (or locks do not work)."""
        if _fcntl is None or not self._open():
            return False
        try:
            _fcntl.flock(self._fd, _fcntl.LOCK_EX | _fcntl.LOCK_NB)
        except OSError:
            return False
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # drops the flock
            self._fd = None

    def __enter__(self) -> "_DirLock":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _process_start(pid: int) -> str | None:
    """The start time of process ``pid`` (clock ticks since boot, from /proc), "" if it is a zombie, None where
    /proc cannot tell (not Linux, or no such process)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return "" if fields[0] in ("Z", "X") else fields[19]


def claim_owner() -> str:
    """A name for this run's claims: ``host:pid:process-start:tag`` (the start time tells a reused pid apart)."""
    import uuid

    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_process_start(pid) or '-'}:{uuid.uuid4().hex[:8]}"


def owner_is_gone(owner: str) -> bool:
    """True if ``owner`` (:func:`claim_owner`) is a run on this host whose process has ended. Runs on other
    hosts are never judged here: their claims expire with their lease."""
    parts = owner.rsplit(":", 3)
    if len(parts) != 4 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return False
    pid, start = int(parts[1]), parts[2]
    if pid == os.getpid():
        return False
    now = _process_start(pid)
    if now is not None:
        return now == "" or (start != "-" and now != start)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False

