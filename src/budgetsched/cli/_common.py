"""What every command shares: the one-line error format, paths the user names (created only as asked, removed
again when the command fails), and opening an existing store."""
from __future__ import annotations

import argparse
import contextlib
import errno
import os
import re
import sys
from pathlib import Path
from typing import Any, Iterator, NoReturn

from budgetsched.errors import EnvironmentFailure, UsageError

PROG = "budgetsched"

#: errno values that mean the machine refused (exit 1); any other error on a path the user gave is theirs (exit 2).
_ENVIRONMENT_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EFBIG,
                       errno.EBUSY, errno.ETXTBSY, errno.EMFILE, errno.ENFILE, errno.ENOMEM}


class Parser(argparse.ArgumentParser):
    """argparse with the one-line error format used by every budgetsched error."""

    def error(self, message: str) -> NoReturn:
        bad = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if bad:  # a misspelled command or choice: its likely meaning
            from budgetsched._checks import did_you_mean

            close = did_you_mean(bad.group(1), re.findall(r"'([^']*)'", bad.group(2)))
            message += f" (did you mean {close!r}?)" if close else ""
        sys.stderr.write(f"{PROG}: error: {message} (see '{self.prog} --help')\n")
        sys.exit(2)


def say(text: str) -> None:
    """One line on stderr, prefixed like every message of the command."""
    sys.stderr.write(f"{PROG}: {text}\n")


def path_error(e: OSError, doing: str, flag: str, path: str | os.PathLike[str]) -> Exception:
    """One line for a failure on a path the user named: the environment's (exit 1) or the user's (exit 2)."""
    kind = EnvironmentFailure if e.errno in _ENVIRONMENT_ERRNOS else UsageError
    return kind(f"cannot {doing} {flag} {str(path)!r}: {e.strerror or e}")


@contextlib.contextmanager
def output_dir(path: str | os.PathLike[str], flag: str) -> Iterator[Path]:
    """``path`` as a directory, created if needed; if the command fails inside the block, the directories this
    created are removed again when they are still empty (a failed ``plot`` leaves no empty ``figs/`` behind)."""
    p = Path(path)
    created = []
    for d in [p, *p.parents]:  # the missing ones, deepest first
        if d.exists():
            break
        created.append(d)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        _remove_empty(created)
        raise path_error(e, "create", flag, path) from None
    try:
        yield p
    except BaseException:
        _remove_empty(created)
        raise


def _remove_empty(dirs: list[Path]) -> None:
    for d in dirs:  # deepest first: a parent is empty once its child is gone
        with contextlib.suppress(OSError):
            d.rmdir()


@contextlib.contextmanager
def output_file(path: str | os.PathLike[str], flag: str = "--output") -> Iterator[Any]:
    """A text file to write the command's output to; removed again if writing it fails and it did not exist."""
    existed = os.path.lexists(path)
    try:
        f = open(path, "w", encoding="utf-8")
    except OSError as e:
        raise path_error(e, "write", flag, path) from None
    try:
        with f:
            yield f
    except BaseException as e:
        if not existed:
            with contextlib.suppress(OSError):
                os.unlink(path)
        if isinstance(e, OSError):
            raise path_error(e, "write", flag, path) from None
        raise


def check_resamples(n: int) -> None:
    """``--resamples`` within its bounds, before the store is read (the bounds' one home is
    :func:`budgetsched.bench.analysis.stats.check_resamples`)."""
    from budgetsched.bench.analysis import stats

    stats.check_resamples(n)


def open_existing_store(path: str) -> Any:
    """An existing store, opened read-only (``report``, ``plot``, ``advise`` and ``export`` never write to it); a
    path ending in ``.jsonl.gz`` is a store's exported rows (:class:`~budgetsched.bench.storage.rows_file.RowsFile`,
    written by ``export --rows``), read the same way."""
    from budgetsched.bench.storage.rows_file import RowsFile, is_rows_file

    if is_rows_file(path):
        return RowsFile(path)
    from budgetsched.bench.storage.store import Store

    return Store(path, readonly=True)


def read_rows(path: str, *, typed: bool = False, empty_ok: bool = False, tuning: bool = False) -> list[Any]:
    """Every trial of an existing store, decoded once by the store (``trial_rows()``): :class:`TrialRow` s with
    ``typed``, else each as its flat mapping (:meth:`TrialRow.as_dict`, for callers that still index by column
    name); a store with none is a usage error unless ``empty_ok``. ``tuning``: without the evaluation-seed trials
    (``run --eval-seeds``), which must never enter a choice (figures, advice)."""
    store = open_existing_store(path)
    try:
        rows = store.trial_rows()
        records = store.evaluations() if tuning and hasattr(store, "evaluations") else []
        if records:
            from budgetsched.bench.analysis.evaluation import tuning_rows

            rows, _ = tuning_rows(rows, records, store.planned_keys())
    finally:
        store.close()
    if not rows and not empty_ok:
        raise UsageError(f"store {path!r} holds no trials yet; run a study first")
    return rows if typed else [r.as_dict() for r in rows]
