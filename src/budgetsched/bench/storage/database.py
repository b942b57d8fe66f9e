"""The SQLite layer under the store: its errors, the one transaction helper, and the directory lock.

Every write of the store is one :func:`transaction` (``BEGIN IMMEDIATE ... COMMIT``, rolled back on any error);
every SQLite failure becomes one clear error (:func:`io_error`): the environment's (:class:`StoreIOError`: locked,
read-only, disk full) or the file's (:class:`StoreError`: damaged, foreign, a layout this version cannot use).
"""
from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path
from typing import Iterator

from budgetsched.errors import EnvironmentFailure, UsageError

try:
    import fcntl as _fcntl
except ImportError:  # not POSIX: no directory lock (remove_if_empty then keeps the store)
    _fcntl = None  # type: ignore[assignment]

__all__ = ["StoreError", "StoreIOError", "StoreWarning", "io_error", "transaction", "DirLock"]


class StoreError(UsageError):
    """The file cannot be used as a store: not a budgetsched store, damaged, newer schema, closed."""


class StoreIOError(EnvironmentFailure):
    """The store cannot be read or written right now: disk full, I/O error, permissions, locked."""


class StoreWarning(UserWarning):
    """Something in the store was skipped or could not be read (the message says what)."""


def io_error(path: Path, e: sqlite3.Error, doing: str) -> Exception:
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



@contextlib.contextmanager
def transaction(c: sqlite3.Connection, path: Path, doing: str = "write to") -> Iterator[sqlite3.Connection]:
    """One ``BEGIN IMMEDIATE ... COMMIT`` on ``c`` (rolled back on any error); SQLite errors become one clear error
    naming the store at ``path`` and what was being done."""
    try:
        c.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as e:
        raise io_error(path, e, doing) from None
    try:
        yield c
        c.execute("COMMIT")
    except BaseException as e:
        if c.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                c.execute("ROLLBACK")
        if isinstance(e, sqlite3.Error):
            raise io_error(path, e, doing) from None
        raise


class DirLock:
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

    def __enter__(self) -> "DirLock":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

