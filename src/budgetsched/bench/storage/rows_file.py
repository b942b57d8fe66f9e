"""A store's trial rows in one compressed file: a study's results in a form small enough to commit.

``budgetsched export STORE --rows results/suite.jsonl.gz`` writes it (:func:`export_rows`); ``budgetsched report
results/suite.jsonl.gz`` (and ``plot``, ``advise``) read it as they read a store (:class:`RowsFile`), so the
published tables re-render from the committed file without retraining and without the SQLite store.

Format: gzip-compressed JSON Lines. Line 1 is a header ``{"format": "budgetsched-rows", "version": 1, "meta": ...,
"studies": ...}`` holding the store's metadata (:meth:`Store.meta`) and the study specs run into it
(:meth:`Store.studies`, so the report still knows the planned design and names missing trials); every further line
is one trial as :meth:`Store.rows` gives it, in the store's order, with its per-evaluation ``curves`` left out
(emptied): the curves are most of a store's bytes and no table reads them (plots of curves need the store). The
gzip header carries no time stamp, so exporting the same store twice gives the same bytes.
"""
from __future__ import annotations

import gzip
import io
import json
import os
import warnings
from pathlib import Path
from typing import Any, Iterator

from budgetsched.bench.protocol.grid import TrialConfig
from budgetsched.bench.protocol.records import TrialRow
from budgetsched.bench.protocol.status import STATUSES, Status
from budgetsched.bench.storage.database import StoreError, StoreWarning
from budgetsched.bench.storage.store import decode_rows

__all__ = ["FORMAT", "VERSION", "SUFFIX", "is_rows_file", "export_rows", "RowsFile"]

FORMAT = "budgetsched-rows"
VERSION = 1
#: The file name ending that marks an exported rows file (anything else is read as a SQLite store).
SUFFIX = ".jsonl.gz"


def is_rows_file(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` names an exported rows file (it ends in :data:`SUFFIX`)."""
    return str(path).endswith(SUFFIX)


def export_rows(store: Any, path: str | os.PathLike[str]) -> int:
    """Write every trial of ``store`` (a :class:`~budgetsched.bench.storage.store.Store`, or a :class:`RowsFile`)
    to ``path`` without curves; returns the number of trials. Written to a temporary file and renamed, so a
    failure leaves no half file."""
    path = Path(path)
    if not is_rows_file(path):
        raise StoreError(f"an exported rows file must end in {SUFFIX}, got {str(path)!r}")
    rows = store.rows()
    header = {"format": FORMAT, "version": VERSION, "meta": store.meta(), "studies": store.studies()}
    evaluations = store.evaluations() if hasattr(store, "evaluations") else []
    if evaluations:  # which trials are evaluation-seed runs (a file without them reads as before)
        header["evaluations"] = evaluations
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz, \
                io.TextIOWrapper(gz, encoding="utf-8", newline="\n") as f:
            f.write(json.dumps(header, sort_keys=True) + "\n")
            for row in rows:
                f.write(json.dumps({**row, "curves": {}}, sort_keys=True) + "\n")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return len(rows)


class RowsFile:
    """An exported rows file, read with the reading interface of a store (``rows``, ``trial_rows``, ``studies``,
    ``planned_configs``, ``evaluations``, ``counts``, ``meta``, ``close``); it is never written to.

    Raises:
        StoreError: no such file, not gzip, or not a budgetsched rows file of a version this package reads.
    """

    readonly = True

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise StoreError(f"no such results file {str(self.path)!r}")
        try:
            with gzip.open(self.path, "rt", encoding="utf-8") as f:
                header = json.loads(f.readline() or "null")
                lines = f.read().splitlines()
        except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise StoreError(f"{str(self.path)!r} is not a budgetsched rows file ({e})") from None
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise StoreError(f"{str(self.path)!r} is not a budgetsched rows file (no {FORMAT!r} header)")
        if header.get("version") != VERSION:
            raise StoreError(f"{str(self.path)!r} is a rows file of version {header.get('version')!r}; this "
                             f"package reads version {VERSION}")
        self._meta: dict[str, str] = dict(header.get("meta") or {})
        self._studies: list[dict[str, Any]] = list(header.get("studies") or [])
        self._evaluations: list[dict[str, Any]] = list(header.get("evaluations") or [])
        self._rows: list[dict[str, Any]] = []
        for i, line in enumerate(lines, start=2):
            try:
                row = json.loads(line)
                if not isinstance(row, dict):
                    raise ValueError(f"line holds {type(row).__name__}, not an object")
                Status.parse(row["status"])
            except (ValueError, KeyError, TypeError) as e:
                warnings.warn(f"{str(self.path)!r}: line {i} cannot be read ({e}); skipped", StoreWarning,
                              stacklevel=2)
                continue
            self._rows.append(row)

    def __enter__(self) -> "RowsFile":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to release (the file was read whole when opened)."""

    def rows(self, task: str | None = None) -> list[dict[str, Any]]:
        """All trials (or one task's) as :meth:`Store.rows` gave them when exported (curves empty)."""
        return [dict(r) for r in self._rows if task is None or r["task"] == task]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows())

    def trial_rows(self, task: str | None = None) -> list[TrialRow]:
        """The trials decoded into :class:`TrialRow` (one that cannot be is skipped with a warning)."""
        return decode_rows(self.rows(task), repr(str(self.path)), stacklevel=2)

    def counts(self) -> dict[str, int]:
        """Number of trials per status, every status present."""
        out = dict.fromkeys(STATUSES, 0)
        for r in self._rows:
            out[r["status"]] = out.get(r["status"], 0) + 1
        return out

    def meta(self) -> dict[str, str]:
        """The exported store's metadata."""
        return dict(self._meta)

    def studies(self) -> list[dict[str, Any]]:
        """The study specs run into the exported store, oldest first."""
        return [dict(s) for s in self._studies]

    def evaluations(self) -> list[dict[str, Any]]:
        """The evaluation records of the store it was exported from (:meth:`Store.evaluations`)."""
        return [dict(e) for e in self._evaluations]

    def planned_configs(self) -> list[TrialConfig]:
        """Every trial the recorded studies planned, expanded exactly as the store expands them
        (:meth:`budgetsched.bench.storage.store.Store.planned_configs`, which reads only ``studies`` and ``path``)."""
        from budgetsched.bench.storage.store import Store

        return Store.planned_configs(self)  # type: ignore[arg-type]

    def planned_keys(self) -> set[str]:
        """The keys of :meth:`planned_configs`."""
        return {c.key for c in self.planned_configs()}
