"""Claims: how several runs on one store split the work, behind a small interface.

Before training, a run *claims* its trials: a lease row per trial naming the run (:func:`claim_owner`), kept alive by
``heartbeat``; two runs on one store split the work. Claims not renewed for ``lease_s`` seconds (a crashed run
elsewhere), or held by a run on this host whose process has ended, are taken over. Writing a trial's result releases
its claim in the same transaction (:meth:`SqliteClaims.release_key`, called by ``Store.put``).

:class:`Claims` is the interface the runner uses; :class:`SqliteClaims` keeps the leases in the store's ``claims``
table; :class:`NullClaims` is the one to use where nothing is shared (every trial is this run's; nothing to renew).
"""
from __future__ import annotations

import os
import socket
import sqlite3
import time
from contextlib import AbstractContextManager
from typing import Any, Callable, Protocol, Sequence

from budgetsched.bench.protocol.status import FINISHED

__all__ = ["Claims", "SqliteClaims", "NullClaims", "claim_owner", "owner_is_gone"]

_FINISHED = tuple(sorted(s.value for s in FINISHED))  # as stored: Status.value


class Claims(Protocol):
    """Leases on trials, so concurrent runs on one store train each trial once."""

    def claim(self, keys: Sequence[str], owner: str, lease_s: float) -> list[str]:
        """Claim the unfinished, unclaimed ``keys`` for ``owner``; returns those claimed (taking over stale ones)."""

    def held_by_others(self, keys: Sequence[str], owner: str, lease_s: float) -> int:
        """How many of ``keys`` another live run holds."""

    def heartbeat(self, owner: str) -> None:
        """Keep ``owner``'s claims alive."""

    def release(self, owner: str) -> None:
        """Drop ``owner``'s remaining claims (its unfinished trials become free for other runs)."""


class NullClaims:
    """Claims where nothing is shared: every key is granted, nothing is held by others, nothing to renew."""

    def claim(self, keys: Sequence[str], owner: str, lease_s: float) -> list[str]:
        return list(keys)

    def held_by_others(self, keys: Sequence[str], owner: str, lease_s: float) -> int:
        return 0

    def heartbeat(self, owner: str) -> None:
        pass

    def release(self, owner: str) -> None:
        pass


class SqliteClaims:
    """Claims kept in the store's ``claims`` table (key, owner, heartbeat time).

    ``transaction()`` opens one write transaction of the store; ``read(sql, args)`` runs one query. Every change is
    one transaction, and a claim never goes to a trial whose row is finished (``done`` or ``diverged``).
    """

    def __init__(self, transaction: Callable[[], AbstractContextManager[sqlite3.Connection]],
                 read: Callable[[str, tuple[Any, ...]], list[tuple[Any, ...]]],
                 clock: Callable[[], float] = time.time) -> None:
        self._tx, self._read, self._clock = transaction, read, clock

    @staticmethod
    def _drop_stale(c: sqlite3.Connection, owner: str, lease_s: float, now: float) -> None:
        """Inside a transaction: drop claims not renewed for ``lease_s`` seconds and claims of runs on this host
        whose process is gone (a killed run: its trials are free at once, not after the lease)."""
        c.execute("DELETE FROM claims WHERE heartbeat < ?", (now - lease_s,))
        for (other,) in c.execute("SELECT DISTINCT owner FROM claims WHERE owner != ?", (owner,)).fetchall():
            if owner_is_gone(other):
                c.execute("DELETE FROM claims WHERE owner = ?", (other,))

    def claim(self, keys: Sequence[str], owner: str, lease_s: float) -> list[str]:
        keys = list(keys)
        now = self._clock()
        got: list[str] = []
        finished = ",".join("?" * len(_FINISHED))
        with self._tx() as c:
            self._drop_stale(c, owner, lease_s, now)
            for i in range(0, len(keys), 500):
                part = keys[i:i + 500]
                marks = ",".join("?" * len(part))
                taken = {r[0] for r in c.execute(
                    f"SELECT key FROM trials WHERE key IN ({marks}) AND status IN ({finished})", (*part, *_FINISHED))}
                taken |= {r[0] for r in c.execute(
                    f"SELECT key FROM claims WHERE key IN ({marks}) AND owner != ?", (*part, owner))}
                mine = [k for k in part if k not in taken]
                c.executemany("INSERT OR REPLACE INTO claims (key, owner, heartbeat) VALUES (?, ?, ?)",
                              [(k, owner, now) for k in mine])
                got += mine
        return got

    def held_by_others(self, keys: Sequence[str], owner: str, lease_s: float) -> int:
        keys = list(keys)
        now = self._clock()
        held: dict[str, int] = {}
        for i in range(0, len(keys), 500):
            part = keys[i:i + 500]
            marks = ",".join("?" * len(part))
            for other, n in self._read(f"SELECT owner, count(*) FROM claims WHERE key IN ({marks}) AND owner != ? "
                                       "AND heartbeat >= ? GROUP BY owner", (*part, owner, now - lease_s)):
                held[other] = held.get(other, 0) + int(n)
        return sum(n for other, n in held.items() if not owner_is_gone(other))

    def heartbeat(self, owner: str) -> None:
        with self._tx() as c:
            c.execute("UPDATE claims SET heartbeat = ? WHERE owner = ?", (self._clock(), owner))

    def release(self, owner: str) -> None:
        with self._tx() as c:
            c.execute("DELETE FROM claims WHERE owner = ?", (owner,))

    @staticmethod
    def release_key(c: sqlite3.Connection, key: str) -> None:
        """Inside the transaction that writes ``key``'s result: its claim ends with it."""
        c.execute("DELETE FROM claims WHERE key = ?", (key,))


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


