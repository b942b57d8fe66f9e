"""The store's on-disk layout: the schema, its version and identity, and the migrations from older layouts.

Identity and version. The file is marked with ``PRAGMA application_id`` (:data:`APPLICATION_ID`); its layout
version is ``PRAGMA user_version`` and nothing else. :func:`check_identity` refuses a foreign or damaged file and a
newer layout (naming both versions); :func:`init_schema` creates the schema in an empty database or migrates an
older one (:data:`MIGRATIONS`), inside the caller's one transaction, so racing creators all succeed and a failed
migration leaves the file as it was. Statuses are spelled by :class:`~budgetsched.bench.protocol.status.Status`.
"""
from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Callable

from budgetsched.bench.protocol.status import Status
from budgetsched.bench.storage.database import StoreError, io_error
from budgetsched.bench.storage.provenance import now, package_version

__all__ = ["SCHEMA_VERSION", "APPLICATION_ID", "SCHEMA_SQL", "MIGRATIONS", "COLUMNS", "V1_DEFAULTS", "ADDED_IN",
           "defaults_before", "JSON_COLUMNS", "EVALUATIONS_SQL", "check_identity", "check_layout", "init_schema"]

#: The on-disk layout version (``PRAGMA user_version``); older stores are migrated by :data:`MIGRATIONS`.
SCHEMA_VERSION = 4
#: ``PRAGMA application_id`` of a budgetsched store: the ASCII bytes "BSCH".
APPLICATION_ID = 0x42534348
_STATUS_VALUES = ", ".join(f"'{s.value}'" for s in Status)

#: v3: which chosen configuration each evaluation-seed trial evaluates. ``key`` is the evaluation trial's key (an
#: ordinary trial, with a seed the tuning grid did not use); ``label``/``lr``/``patience`` the schedule row and the
#: configuration chosen on validation that it retrains; ``choice`` (JSON) what the choice came from: the tuning
#: seeds, the row's candidate LRs and patiences, and a digest of the tuning trials' keys.
EVALUATIONS_SQL = """CREATE TABLE evaluations (
    key       TEXT PRIMARY KEY,
    task      TEXT NOT NULL,
    optimizer TEXT NOT NULL,
    budget    REAL NOT NULL,
    label     TEXT NOT NULL,
    lr        REAL NOT NULL,
    patience  INTEGER,
    seed      INTEGER NOT NULL,
    choice    TEXT NOT NULL
);"""

SCHEMA_SQL = f"""
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
    status          TEXT NOT NULL CHECK (status IN ({_STATUS_VALUES})),
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
    run_meta        TEXT NOT NULL DEFAULT '{{}}',
    config          TEXT NOT NULL,
    budget_unit     TEXT NOT NULL DEFAULT 'epochs',
    total_steps     INTEGER,
    stand_in        TEXT,
    scheduler_steps INTEGER
);
CREATE INDEX trials_by_setting ON trials (task, optimizer, budget);
CREATE TABLE claims (
    key       TEXT PRIMARY KEY,
    owner     TEXT NOT NULL,
    heartbeat REAL NOT NULL
);
{EVALUATIONS_SQL}
"""


def _migrate_1_to_2(c: sqlite3.Connection) -> None:
    """v2: budget unit (v1 rounded budgets up to whole epochs), planned steps, plateau stand-ins, claims; the
    version lives in ``user_version`` only."""
    c.execute("ALTER TABLE trials ADD COLUMN budget_unit TEXT NOT NULL DEFAULT 'epochs'")
    c.execute("ALTER TABLE trials ADD COLUMN total_steps INTEGER")
    c.execute("ALTER TABLE trials ADD COLUMN stand_in TEXT")
    c.execute("CREATE TABLE claims (key TEXT PRIMARY KEY, owner TEXT NOT NULL, heartbeat REAL NOT NULL)")
    c.execute("DELETE FROM meta WHERE key = 'schema_version'")


def _migrate_2_to_3(c: sqlite3.Connection) -> None:
    """v3: the evaluations table (evaluation-seed trials and the choice each evaluates); trials unchanged."""
    c.execute(EVALUATIONS_SQL)


def _migrate_3_to_4(c: sqlite3.Connection) -> None:
    """v4: ``trials.scheduler_steps``, the position a ``@trainable``'s scheduler reached when it differs from the
    plan (NULL: as planned, or not known; every older row is NULL)."""
    c.execute("ALTER TABLE trials ADD COLUMN scheduler_steps INTEGER")


#: ``from_version -> migration`` to ``from_version + 1``; each runs inside the opening transaction.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {1: _migrate_1_to_2, 2: _migrate_2_to_3,
                                                                3: _migrate_3_to_4}

COLUMNS = (
    "key", "task", "schedule", "schedule_params", "label", "optimizer", "budget", "lr", "seed", "status",
    "val_loss", "val_metric", "test_loss", "test_metric", "curves", "steps", "wall_time", "error",
    "started", "finished", "package_version", "torch_version", "python_version", "hostname", "engine", "device",
    "run_meta", "config", "budget_unit", "total_steps", "stand_in", "scheduler_steps",
)
V1_DEFAULTS = {"budget_unit": "epochs", "total_steps": None, "stand_in": None}
#: The layout version that added a trials column; an older store read without migrating lacks it.
ADDED_IN = {**{k: 2 for k in V1_DEFAULTS}, "scheduler_steps": 4}
_DEFAULTS = {**V1_DEFAULTS, "scheduler_steps": None}


def defaults_before(version: int) -> dict[str, object]:
    """The trials columns a store of layout ``version`` lacks, with the value each stands for."""
    return {k: v for k, v in _DEFAULTS.items() if ADDED_IN[k] > version}
JSON_COLUMNS = ("schedule_params", "curves", "run_meta", "config")


def check_identity(c: sqlite3.Connection, path: Path, migrate: bool) -> int:
    """Validate application id and version; returns the version found (0 for an empty database)."""
    try:
        app_id = c.execute("PRAGMA application_id").fetchone()[0]
        version = c.execute("PRAGMA user_version").fetchone()[0]
        n_objects = c.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    except sqlite3.Error as e:
        raise io_error(path, e, "read") from None
    if app_id == 0 and version == 0 and n_objects == 0:
        if not migrate:
            raise StoreError(f"{str(path)!r} is an empty database, not a budgetsched results store")
        return 0
    if app_id != APPLICATION_ID:
        raise StoreError(f"{str(path)!r} is an SQLite database but not a budgetsched results store "
                         f"(application_id {app_id:#x}, expected {APPLICATION_ID:#x})")
    if version > SCHEMA_VERSION:
        raise StoreError(f"store {str(path)!r} has schema version {version}, newer than this budgetsched "
                         f"({package_version()}) reads (version {SCHEMA_VERSION}); upgrade budgetsched")
    if version < 1:
        raise StoreError(f"store {str(path)!r} has an unknown schema version {version}")
    tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not {"meta", "trials"} <= tables:
        raise StoreError(f"store {str(path)!r} is damaged: tables meta/trials are missing")
    return version


def check_layout(c: sqlite3.Connection, path: Path, version: int, writing: bool) -> None:
    """The trials table has every column this version reads, and (to write) none it would not fill."""
    try:
        info = c.execute("PRAGMA table_info(trials)").fetchall()  # cid, name, type, notnull, default, pk
        tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.Error as e:
        raise io_error(path, e, "read") from None
    names = {r[1] for r in info}
    missing = [k for k in COLUMNS if k not in names and ADDED_IN.get(k, 1) <= version]
    if missing:
        raise StoreError(f"store {str(path)!r} is damaged or was changed by hand: table trials lacks "
                         f"column(s) {', '.join(missing)}")
    if not writing:
        return
    unfilled = [r[1] for r in info if r[1] not in COLUMNS and r[3] and r[4] is None and not r[5]]
    if unfilled:
        raise StoreError(f"store {str(path)!r} was changed by hand: column(s) {', '.join(unfilled)} of "
                         f"table trials must be filled (NOT NULL, no default) but budgetsched does not know "
                         f"them, so no trial could be written; drop the column(s) or use another store")
    if "claims" not in tables:
        raise StoreError(f"store {str(path)!r} is damaged or was changed by hand: table claims is missing")


def init_schema(c: sqlite3.Connection, path: Path) -> bool:
    """Create the schema in an empty database or migrate an older one to :data:`SCHEMA_VERSION` (inside the
    caller's transaction); True if it was created."""
    version = check_identity(c, path, migrate=True)
    created = False
    if version == 0:
        for stmt in SCHEMA_SQL.split(";"):
            if stmt.strip():
                c.execute(stmt)
        meta = {"application": "budgetsched", "created": now(), "created_by": package_version()}
        c.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", meta.items())
        c.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        created = True
    else:
        for v in range(version, SCHEMA_VERSION):
            MIGRATIONS[v](c)
            c.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                      (f"migrated_{v}_to_{v + 1}", f"{now()} by {package_version()}"))
    c.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    check_layout(c, path, SCHEMA_VERSION, writing=True)
    return created
