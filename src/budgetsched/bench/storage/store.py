"""Results store: one SQLite file (WAL mode), one row per trial keyed by ``TrialConfig.key``.

Why SQLite: a study is thousands of small trials that finish one by one and must survive a crash; SQLite gives
durable single-row transactions, needs no server and is readable by any tool. Each write is one transaction
(:func:`budgetsched.bench.storage.database.transaction`) with ``synchronous=FULL``, so a trial whose ``put`` has
returned survives even a SIGKILL.

Identity and version. The file is marked with ``PRAGMA application_id`` (:data:`APPLICATION_ID`); its layout
version is ``PRAGMA user_version`` and nothing else. Opening checks both, and the columns of the trials table: a
foreign or damaged file is refused, an older layout is migrated in one transaction (:data:`MIGRATIONS`), a newer
one is refused naming both versions (:mod:`budgetsched.bench.storage.schema`). Creating a new store is one
exclusive transaction, so processes racing to create it all succeed.

Writers. ``Store(path)`` refuses a file, ``-wal``/``-shm`` file or directory it cannot write before SQLite creates
anything, and commits one small write when it opens, so a read-only store or a full disk fails before a run
trains anything. Writers checkpoint the write-ahead log when they close.

Readers. ``Store(path, readonly=True)`` (``report``, ``plot``) never writes to the store: where the directory is
writable it reads with ``mode=ro`` (sharing the WAL index with a live run); where it is not, nothing at all is
written: the main file is read ``immutable`` (exact once a run has closed), or, when a killed run left a
non-empty ``-wal``, a private copy of the store and its log is read; a ``-wal`` that cannot be read is skipped with
a :class:`StoreWarning`. Rows are decoded once into typed :class:`~budgetsched.bench.protocol.records.TrialRow`
(:meth:`Store.trial_rows`); a row that cannot be decoded is skipped with a warning naming its key. The specs of the
studies run into the store are kept (:meth:`Store.record_study`) and expanded back into the trials they planned
(:meth:`Store.planned_configs`), so a trial that never got a row is known to be missing.

Concurrent runs (:mod:`budgetsched.bench.storage.claims`, ``Store.claims``). Before training, a run *claims* its
trials (:meth:`Store.claim`): a lease row naming the run
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
import errno
import json
import os
import sqlite3
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping

from budgetsched.bench.protocol.grid import TrialConfig
from budgetsched.bench.protocol.records import TrialRow
from budgetsched.bench.protocol.status import FINISHED, STATUSES, Status
from budgetsched.bench.storage.claims import Claims, NullClaims, SqliteClaims, claim_owner, owner_is_gone
from budgetsched.bench.storage.database import (DirLock, StoreError, StoreIOError, StoreWarning, io_error,
                                                transaction)
from budgetsched.bench.storage.provenance import RESULT_FIELDS, dumps, now, provenance, result_fields
from budgetsched.bench.storage.schema import (APPLICATION_ID, COLUMNS, JSON_COLUMNS, MIGRATIONS, SCHEMA_VERSION,
                                              V1_DEFAULTS, _migrate_1_to_2, check_identity, check_layout,  # noqa: F401
                                              defaults_before,
                                              init_schema)

__all__ = ["Store", "StoreError", "StoreIOError", "StoreWarning", "STATUSES", "SCHEMA_VERSION", "APPLICATION_ID",
           "MIGRATIONS", "RESULT_FIELDS", "Claims", "SqliteClaims", "NullClaims", "claim_owner", "owner_is_gone"]

_SQLITE_MAGIC = b"SQLite format 3\x00"
_BUSY_TIMEOUT_MS = 30_000  # read when a connection opens (tests shorten it)
_METRICS = ("val_loss", "val_metric", "test_loss", "test_metric")
_io_error = io_error  # the name older code used
_DirLock = DirLock


def _scheduler_steps(result: Any) -> int | None:
    """A result's ``scheduler_steps`` (a @trainable's scheduler position off its plan), None when absent."""
    v = result.get("scheduler_steps") if isinstance(result, Mapping) else getattr(result, "scheduler_steps", None)
    return None if v is None else int(v)



def decode_rows(dicts: list[dict[str, Any]], where: str, stacklevel: int = 2) -> list[TrialRow]:
    """Stored mappings decoded into :class:`TrialRow`; one that cannot be is skipped with a :class:`StoreWarning`
    naming ``where`` it came from and its key (used by the store and by exported rows files alike). ``stacklevel``
    is the caller's, as if it warned itself."""
    out = []
    for d in dicts:
        try:
            out.append(TrialRow.from_stored(d))
        except (TypeError, ValueError, KeyError) as e:
            warnings.warn(f"{where}: trial {d.get('key')!r} cannot be read ({e}); skipped", StoreWarning,
                          stacklevel=stacklevel + 1)
    return out

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
        self._dir_lock: DirLock | None = None
        self._snapshot: Path | None = None  # a private copy read instead of the file (see _open_snapshot)
        self.version = SCHEMA_VERSION
        self._check_file()
        self._conn = self._open_readonly() if self.readonly else self._open_writable()
        self._claims: Claims = SqliteClaims(self._locked_tx, self._read)

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
        self._dir_lock = DirLock(self.path.parent)
        try:
            self._dir_lock.shared()
            conn = self._connect(self.path.resolve().as_uri() + "?mode=rwc")
        except sqlite3.Error as e:
            self._release_dir_lock()
            raise io_error(self.path, e, "open") from None
        except BaseException:
            self._release_dir_lock()
            raise
        self._conn = conn
        try:
            with self._tx():  # check, create or migrate in one exclusive transaction: racing creators all succeed
                self.created = init_schema(conn, self.path)
            self.version = SCHEMA_VERSION
            self._wal_mode(conn)
            # FULL: the WAL is fsynced at each commit, so a put that returned survives a crash or power loss.
            conn.execute("PRAGMA synchronous = FULL")
            self._probe_write()
        except BaseException as e:
            conn.close()
            self._conn = None
            self._release_dir_lock()
            if isinstance(e, sqlite3.Error):
                raise io_error(self.path, e, "open") from None
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
                    raise io_error(self.path, e, "open") from None
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
                    raise io_error(self.path, e, "read") from None
                conn = self._open_snapshot()  # e.g. a -shm file this user cannot write
            except sqlite3.Error as e:
                raise io_error(self.path, e, "read") from None
        else:
            conn = self._open_snapshot()
        try:
            self.version = check_identity(conn, self.path, migrate=False)
            check_layout(conn, self.path, self.version, writing=False)
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
                    raise io_error(self.path, e, "read") from None
        if wal_size:
            warnings.warn(f"{str(wal)!r} holds results not yet merged into the store and cannot be read here; "
                          "rows in it are missing from this report. Open the store once with write access "
                          "(e.g. rerun the study) to merge them.", StoreWarning, stacklevel=4)
        try:
            conn = self._connect(uri + "?immutable=1")
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.Error as e:
            raise io_error(self.path, e, "read") from None

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

    def _probe_write(self) -> None:
        """Commit one small write now, so a read-only file or a full disk fails before anything is trained."""
        with self._tx("write to") as c:
            c.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('last_opened', ?)", (now(),))

    # -- the one transaction helper ----------------------------------------------------------------------------
    def _tx(self, doing: str = "write to") -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """One write transaction of this store (:func:`budgetsched.bench.storage.database.transaction`)."""
        return transaction(self._db(), self.path, doing)

    @contextlib.contextmanager
    def _locked_tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction under this instance's lock (the claims' transactions: threads share the store)."""
        self._writable()
        with self._lock, self._tx() as c:
            yield c

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
                raise io_error(self.path, e, "read") from None

    def finished_keys(self) -> set[str]:
        """Keys of trials that need no rerun: status ``done`` or ``diverged`` (``failed`` ones are retried)."""
        values = tuple(sorted(s.value for s in FINISHED))
        return {r[0] for r in self._read(f"SELECT key FROM trials WHERE status IN ({', '.join('?' * len(values))})",
                                         values)}

    def trial_rows(self, task: str | None = None) -> list[TrialRow]:
        """All trials (or one task's), each decoded once into a :class:`~budgetsched.bench.protocol.records.TrialRow`
        (config, result with its ``Status``, provenance, planned length, stand-in); ordered as :meth:`rows`.
        A row that cannot be decoded is skipped with a :class:`StoreWarning` naming its key."""
        return self._decoded(self.rows(task))

    def trial_row(self, key: str) -> TrialRow | None:
        """The trial stored under ``key`` as a :class:`TrialRow`, or None (also when it cannot be decoded)."""
        return next(iter(self._decoded(self._rows_where("key = ?", (key,)))), None)

    def rows(self, task: str | None = None) -> list[dict[str, Any]]:
        """The stored mapping form, for export; readers use :meth:`trial_rows`.

        All trials (or one task's) as the store's columns spell them (config fields, result fields, provenance;
        ``schedule_params``, ``curves``, ``run_meta`` and ``config`` JSON-decoded to dicts, the status as its
        string), ordered by task, optimizer, budget, label, lr, seed. A row that cannot be decoded is skipped with
        a :class:`StoreWarning` naming its key. :meth:`trial_rows` decodes these once into typed rows.
        """
        if task is None:
            return self._rows_where("1", ())
        return self._rows_where("task = ?", (task,))

    def row(self, key: str) -> dict[str, Any] | None:
        """The trial stored under ``key`` in the stored mapping form (as in :meth:`rows`; readers use
        :meth:`trial_row`), or None (also when it cannot be decoded)."""
        return next(iter(self._rows_where("key = ?", (key,))), None)

    def _rows_where(self, where: str, args: tuple[Any, ...]) -> list[dict[str, Any]]:
        absent = defaults_before(self.version)  # a store read without migrating lacks the newer columns
        cols = [c for c in COLUMNS if c not in absent]
        fetched = self._read(f"SELECT {', '.join(cols)} FROM trials WHERE {where} "
                             "ORDER BY task, optimizer, budget, label, lr, schedule_params, seed", args)
        out = []
        for values in fetched:
            d = {**absent, **dict(zip(cols, values))}
            try:
                for k in JSON_COLUMNS:
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

    def _decoded(self, dicts: list[dict[str, Any]]) -> list[TrialRow]:
        return decode_rows(dicts, f"store {str(self.path)!r}", stacklevel=3)

    def counts(self) -> dict[str, int]:
        """Number of trials per status (every status present, zeros included), keyed by ``Status.value``."""
        got = dict(self._read("SELECT status, count(*) FROM trials GROUP BY status"))
        return {s: int(got.get(s, 0)) for s in STATUSES}

    def meta(self) -> dict[str, str]:
        """The store's own metadata (application, creation time and package version, migrations)."""
        return dict(self._read("SELECT key, value FROM meta"))

    # -- the study's design -----------------------------------------------------------------------------------
    def studies(self) -> list[dict[str, Any]]:
        """The study specs run into this store, oldest first (``{"time", "spec"}`` each; see :meth:`record_study`)."""
        raw = self.meta().get("studies")
        return [] if raw is None else json.loads(raw)

    def planned_configs(self) -> list[TrialConfig]:
        """Every trial of every study recorded in this store (:meth:`record_study`), expanded by
        :meth:`budgetsched.bench.protocol.study.StudySpec.configs` (first-seen order, no duplicates): what the
        design asked for, so a trial that never got a row (a seed that never ran) can be reported missing.

        Budgets that are one run are expanded as asked; a reader counts them by the one collapse rule
        (:func:`budgetsched.bench.protocol.plan.same_run_key`, :func:`~budgetsched.bench.protocol.plan.counted_budget`)
        with the rows' ``total_steps``. A recorded spec that cannot be expanded here (e.g. a task this process does
        not know) is skipped with a :class:`StoreWarning`.
        """
        from budgetsched.bench.protocol.study import StudySpec

        out: dict[TrialConfig, None] = {}
        for entry in self.studies():
            try:
                configs = StudySpec.from_mapping(entry["spec"], source=f"store {str(self.path)!r}").configs()
            except Exception as e:  # a spec this version or process cannot expand: say so, keep the others
                warnings.warn(f"store {str(self.path)!r}: the study recorded at {entry.get('time')} cannot be "
                              f"expanded here ({e}); its planned trials are not compared", StoreWarning, stacklevel=2)
                continue
            out.update(dict.fromkeys(configs))
        return list(out)

    def planned_keys(self) -> set[str]:
        """The keys of :meth:`planned_configs`."""
        return {c.key for c in self.planned_configs()}

    # -- writing -------------------------------------------------------------------------------------------------
    def record_study(self, spec: Mapping[str, Any]) -> None:
        """Remember the study spec a run was started with (``StudySpec.to_dict()``), after the ones before it."""
        self._writable()
        with self._lock, self._tx() as c:
            row = c.execute("SELECT value FROM meta WHERE key = 'studies'").fetchone()
            history = [] if row is None else json.loads(row[0])
            history.append({"time": now(), "spec": dict(spec)})
            c.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('studies', ?)", (dumps(history),))

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
        r = result_fields(result)
        row = {
            "key": config.key, "task": config.task, "schedule": config.schedule,
            "schedule_params": dumps(config.params), "label": config.label, "optimizer": config.optimizer,
            "budget": config.budget, "lr": config.lr, "seed": config.seed,
            **{m: r[m] for m in _METRICS},
            "status": r["status"], "curves": dumps(r["curves"]), "steps": r["steps"], "wall_time": r["wall_time"],
            "error": r["error"], **provenance(dict(meta or {}), r["wall_time"]),
            "config": dumps(config.to_dict()), "budget_unit": config.budget_unit,
            "total_steps": None if total_steps is None else int(total_steps), "stand_in": stand_in,
            "scheduler_steps": _scheduler_steps(result),
        }
        sql = f"INSERT OR REPLACE INTO trials ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
        with self._lock, self._tx() as c:
            c.execute(sql, [row[k] for k in COLUMNS])
            SqliteClaims.release_key(c, config.key)

    # -- evaluation seeds ----------------------------------------------------------------------------------------
    def record_evaluations(self, records: list[Mapping[str, Any]]) -> None:
        """Remember which chosen configuration each evaluation-seed trial evaluates, in one transaction (a record
        under the same trial key is replaced). Each record: ``key`` (the evaluation trial's), ``task``,
        ``optimizer``, ``budget``, ``label``, ``lr``, ``patience`` (None but for plateau), ``seed`` and ``choice``
        (a mapping: what the choice was made on)."""
        self._writable()
        cols = ("key", "task", "optimizer", "budget", "label", "lr", "patience", "seed", "choice")
        values = [[dumps(dict(r["choice"])) if k == "choice" else r[k] for k in cols] for r in records]
        if not values:
            return
        with self._lock, self._tx() as c:
            c.executemany(f"INSERT OR REPLACE INTO evaluations ({', '.join(cols)}) VALUES "
                          f"({', '.join('?' * len(cols))})", values)

    def evaluations(self) -> list[dict[str, Any]]:
        """The evaluation records (:meth:`record_evaluations`, ``choice`` decoded), ordered by setting, label and
        seed; none in a store older than layout 3 (read without migrating)."""
        if self.version < 3:
            return []
        cols = ("key", "task", "optimizer", "budget", "label", "lr", "patience", "seed", "choice")
        out = []
        for values in self._read(f"SELECT {', '.join(cols)} FROM evaluations "
                                 "ORDER BY task, optimizer, budget, label, lr, patience, seed"):
            d = dict(zip(cols, values))
            d["choice"] = json.loads(d["choice"])
            out.append(d)
        return out

    # -- claims (concurrent runs; budgetsched.bench.storage.claims) ---------------------------------------------
    @property
    def claims(self) -> Claims:
        """This store's claims (:class:`SqliteClaims` on its ``claims`` table); every change is a write, so a
        read-only store refuses them."""
        return self._claims

    def claim(self, keys: list[str], owner: str, lease_s: float) -> list[str]:
        """Claim the unfinished, unclaimed ``keys`` for ``owner`` in one transaction; returns those claimed.

        ``owner`` names the run (:func:`claim_owner`). Claims whose last heartbeat is older than ``lease_s`` seconds
        (a crashed run elsewhere) and claims of a run on this host whose process has ended are taken over.
        """
        return self._claims.claim(keys, owner, lease_s)

    def claimed_by_others(self, keys: list[str], owner: str, lease_s: float) -> int:
        """How many of ``keys`` are held by another run's live claim."""
        return self._claims.held_by_others(keys, owner, lease_s)

    def heartbeat(self, owner: str) -> None:
        """Keep ``owner``'s claims alive."""
        self._claims.heartbeat(owner)

    def release(self, owner: str) -> None:
        """Drop ``owner``'s remaining claims (its unfinished trials become free for other runs)."""
        self._claims.release(owner)

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
        with DirLock(self.path.parent) as lock:
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

