"""Results store: one SQLite file (WAL mode), one row per trial keyed by ``TrialConfig.key``.

Why SQLite: a study is thousands of small trials that finish one by one and must survive a crash; SQLite gives
durable single-row transactions, needs no server and is readable by any tool. Each ``put`` is one transaction
with ``synchronous=FULL``, so a trial whose ``put`` has returned survives even a SIGKILL of the writer.

The file is marked with ``PRAGMA application_id`` (:data:`APPLICATION_ID`) and ``PRAGMA user_version``
(:data:`SCHEMA_VERSION`), and keeps both in a ``meta`` table too, so that opening some other SQLite file, a text
file or random bytes fails at once with :class:`StoreError` instead of mixing results into it.

Every row carries the full config (JSON), the package / torch / python versions, the host, the engine and the
device, so any number in a report can be traced to what produced it.
"""
from __future__ import annotations

import datetime as _dt
import importlib.metadata
import json
import math
import os
import platform
import socket
import sqlite3
import sys
import threading
from pathlib import Path
from typing import Any, Mapping

from budgetsched.bench.grid import TrialConfig

__all__ = ["Store", "StoreError", "STATUSES", "SCHEMA_VERSION", "APPLICATION_ID"]

#: The on-disk layout version; bump (and migrate) when the tables change.
SCHEMA_VERSION = 1
#: ``PRAGMA application_id`` of a budgetsched store: the ASCII bytes "BSCH".
APPLICATION_ID = 0x42534348
#: Allowed trial statuses. ``failed`` trials are retried by the runner; the others are finished.
STATUSES = ("done", "diverged", "failed")
#: Result attributes a trial result must provide (``TrialResult`` in ``bench/train.py``).
RESULT_FIELDS = ("status", "val_loss", "val_metric", "test_loss", "test_metric", "curves", "steps", "wall_time", "error")
_METRICS = ("val_loss", "val_metric", "test_loss", "test_metric")
_SQLITE_MAGIC = b"SQLite format 3\x00"
_BUSY_TIMEOUT_MS = 5000

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
    config          TEXT NOT NULL
);
CREATE INDEX trials_by_setting ON trials (task, optimizer, budget);
"""

_COLUMNS = (
    "key", "task", "schedule", "schedule_params", "label", "optimizer", "budget", "lr", "seed", "status",
    "val_loss", "val_metric", "test_loss", "test_metric", "curves", "steps", "wall_time", "error",
    "started", "finished", "package_version", "torch_version", "python_version", "hostname", "engine", "device",
    "run_meta", "config",
)


class StoreError(ValueError):
    """The store file cannot be used: not a budgetsched store, corrupt, newer schema, or not writable."""


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
    except (TypeError, ValueError):
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
    if out["status"] not in STATUSES:
        raise ValueError(f"unknown trial status {out['status']!r}; choose from {', '.join(STATUSES)}")
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


class Store:
    """SQLite results store for one study.

    >>> import tempfile, os
    >>> with Store(os.path.join(tempfile.mkdtemp(), "study.db")) as s:
    ...     s.counts()
    {'done': 0, 'diverged': 0, 'failed': 0}

    ``Store(path)`` creates the file (and its directory) or opens an existing store after checking that it is
    one. Meant for one writing process at a time (the runner); readers may open it concurrently (WAL).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._check_file()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot create the directory of store {str(self.path)!r}: {e.strerror or e}") from None
        try:
            conn = sqlite3.connect(str(self.path), timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                                   check_same_thread=False)
        except sqlite3.Error as e:
            raise StoreError(f"cannot open store {str(self.path)!r}: {e}") from None
        try:
            self._conn = conn
            self._init_schema()
        except sqlite3.Error as e:
            conn.close()
            self._conn = None
            raise StoreError(f"cannot use store {str(self.path)!r}: {e}") from None
        except StoreError:
            conn.close()
            self._conn = None
            raise

    # -- opening -----------------------------------------------------------------------------------------------
    def _check_file(self) -> None:
        """Reject a non-SQLite file before SQLite touches it (SQLite would happily overwrite an empty one)."""
        p = self.path
        if p.is_dir():
            raise StoreError(f"store path {str(p)!r} is a directory; give a file path such as {str(p / 'study.db')!r}")
        if not p.exists():
            return
        try:
            with open(p, "rb") as f:
                head = f.read(len(_SQLITE_MAGIC))
        except OSError as e:
            raise StoreError(f"cannot read store {str(p)!r}: {e.strerror or e}") from None
        if head and head != _SQLITE_MAGIC:
            raise StoreError(f"{str(p)!r} is not a budgetsched results store (not an SQLite database)")

    def _init_schema(self) -> None:
        c = self._conn
        assert c is not None
        c.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        app_id = c.execute("PRAGMA application_id").fetchone()[0]
        version = c.execute("PRAGMA user_version").fetchone()[0]
        n_objects = c.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if app_id == 0 and version == 0 and n_objects == 0:
            self._create()
        elif app_id != APPLICATION_ID:
            raise StoreError(
                f"{str(self.path)!r} is an SQLite database but not a budgetsched results store "
                f"(application_id {app_id:#x}, expected {APPLICATION_ID:#x})"
            )
        elif version > SCHEMA_VERSION:
            raise StoreError(
                f"store {str(self.path)!r} has schema version {version}, newer than this budgetsched reads "
                f"({SCHEMA_VERSION}); upgrade budgetsched"
            )
        elif version < 1:
            raise StoreError(f"store {str(self.path)!r} has an unknown schema version {version}")
        else:
            tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not {"meta", "trials"} <= tables:
                raise StoreError(f"store {str(self.path)!r} is damaged: tables meta/trials are missing")
        mode = c.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"cannot switch store {str(self.path)!r} to WAL mode (got {mode!r})")
        # FULL: the WAL is fsynced at each commit, so a put that returned survives a crash or power loss.
        c.execute("PRAGMA synchronous = FULL")

    def _create(self) -> None:
        c = self._conn
        assert c is not None
        c.execute("BEGIN IMMEDIATE")
        try:
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    c.execute(stmt)
            meta = {
                "application": "budgetsched",
                "schema_version": str(SCHEMA_VERSION),
                "created": _now(),
                "created_by": _package_version(),
            }
            c.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", meta.items())
            c.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            c.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            c.execute("COMMIT")
        except BaseException:
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise

    # -- API -----------------------------------------------------------------------------------------------------
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"store {str(self.path)!r} is closed")
        return self._conn

    def finished_keys(self) -> set[str]:
        """Keys of trials that need no rerun: status ``done`` or ``diverged`` (``failed`` ones are retried)."""
        with self._lock:
            cur = self._db().execute("SELECT key FROM trials WHERE status IN ('done', 'diverged')")
            return {r[0] for r in cur}

    def put(self, config: TrialConfig, result: Any, meta: Mapping[str, Any] | None = None) -> None:
        """Record one trial in one durable transaction; re-putting the same config replaces its row.

        ``result`` is a ``TrialResult`` or any object / mapping with its fields (status, val_loss, val_metric,
        test_loss, test_metric, curves, steps, wall_time, error). ``meta`` may give ``engine``, ``device`` and
        ``started`` (ISO time; without it, finish time minus ``wall_time``); the whole ``meta`` (workers, git
        commit, ...) is also kept as JSON in ``run_meta``.
        """
        if not isinstance(config, TrialConfig):
            raise ValueError(f"config must be a TrialConfig, got {type(config).__name__}")
        r = _result_fields(result)
        meta = dict(meta or {})
        finished_dt = _dt.datetime.now(_dt.timezone.utc)
        started = meta.get("started")
        if started is None and r["wall_time"] is not None and math.isfinite(r["wall_time"]):
            started = (finished_dt - _dt.timedelta(seconds=r["wall_time"])).isoformat(timespec="milliseconds")
        row = {
            "key": config.key,
            "task": config.task,
            "schedule": config.schedule,
            "schedule_params": _dumps(config.params),
            "label": config.label,
            "optimizer": config.optimizer,
            "budget": config.budget,
            "lr": config.lr,
            "seed": config.seed,
            **{m: r[m] for m in _METRICS},
            "status": r["status"],
            "curves": _dumps(r["curves"]),
            "steps": r["steps"],
            "wall_time": r["wall_time"],
            "error": r["error"],
            "started": None if started is None else str(started),
            "finished": finished_dt.isoformat(timespec="milliseconds"),
            "package_version": _package_version(),
            "torch_version": _torch_version(),
            "python_version": platform.python_version(),
            "hostname": socket.gethostname(),
            "engine": None if meta.get("engine") is None else str(meta["engine"]),
            "device": None if meta.get("device") is None else str(meta["device"]),
            "run_meta": _dumps({k: v for k, v in meta.items() if k != "started"}),
            "config": _dumps(config.to_dict()),
        }
        sql = f"INSERT OR REPLACE INTO trials ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
        with self._lock:
            c = self._db()
            c.execute("BEGIN IMMEDIATE")
            try:
                c.execute(sql, [row[k] for k in _COLUMNS])
                c.execute("COMMIT")
            except BaseException:
                if c.in_transaction:
                    c.execute("ROLLBACK")
                raise

    def rows(self, task: str | None = None) -> list[dict[str, Any]]:
        """All trials (or one task's) as dicts: config fields, result fields, provenance; JSON columns decoded.

        ``schedule_params``, ``curves`` and ``config`` come back as dicts. Ordered by task, optimizer, budget,
        label, lr, seed.
        """
        sql = f"SELECT {', '.join(_COLUMNS)} FROM trials"
        args: tuple[Any, ...] = ()
        if task is not None:
            sql += " WHERE task = ?"
            args = (task,)
        sql += " ORDER BY task, optimizer, budget, label, lr, schedule_params, seed"
        with self._lock:
            fetched = self._db().execute(sql, args).fetchall()
        out = []
        for values in fetched:
            d = dict(zip(_COLUMNS, values))
            for k in ("schedule_params", "curves", "run_meta", "config"):
                d[k] = json.loads(d[k])
            out.append(d)
        return out

    def counts(self) -> dict[str, int]:
        """Number of trials per status (every status present, zeros included)."""
        with self._lock:
            got = dict(self._db().execute("SELECT status, count(*) FROM trials GROUP BY status").fetchall())
        return {s: int(got.get(s, 0)) for s in STATUSES}

    def meta(self) -> dict[str, str]:
        """The store's own metadata (application, schema version, creation time and package version)."""
        with self._lock:
            return dict(self._db().execute("SELECT key, value FROM meta").fetchall())

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"
