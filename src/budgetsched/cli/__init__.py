"""The ``budgetsched`` command: run a budgeted-training study, report it, plot it, show the schedules.

::

    budgetsched run --preset demo --store study.db
    budgetsched run --task digits-mlp --schedules rex,linear --optimizers sgdm --budgets 2,4 \\
        --lrs 0.03,0.1 --seeds 1 --store study.db
    budgetsched report study.db --format md --output report.md
    budgetsched plot study.db --out figures/
    budgetsched schedules --out figures/

One module per concern: the arguments (:mod:`._parser`), flags as a study (:mod:`._study`), ``run`` / ``refine``
(:mod:`.run`), ``report`` / ``plot`` / ``advise`` (:mod:`.report`), ``export`` (:mod:`.export`), ``schedules``
(:mod:`.schedules`). Arguments are parsed and the study validated before torch is imported, so a usage error is
answered at once.

Errors by kind (``budgetsched.errors``; docs/cli.md has the table): a mistake in what the user typed or gave
(unknown name, bad number, a file that is not a store, missing data files) ends with one line
``budgetsched: error: ...`` and exit code 2; a failure of the environment (disk full, permissions, a locked
store, an unreachable Ray cluster) with one line and exit code 1; anything else is a bug and keeps its traceback.
Ctrl-C during ``run`` keeps the finished trials and exits with 130, SIGTERM with 143 (rerun the same command to
resume).
"""
from __future__ import annotations

import importlib
import signal
import sys
import threading
import warnings
from typing import Any, Sequence

from budgetsched.cli._common import PROG
from budgetsched.cli._parser import build_parser
from budgetsched.cli._study import parse_lrs, parse_schedules, parse_seeds, study_spec
from budgetsched.errors import BudgetschedError

__all__ = ["main", "build_parser", "parse_schedules", "parse_lrs", "parse_seeds", "study_spec"]

#: command -> (module of this package, function); a command's module loads only when it runs.
COMMANDS = {"run": ("run", "cmd_run"), "refine": ("run", "cmd_refine"), "report": ("report", "cmd_report"),
            "plot": ("report", "cmd_plot"), "advise": ("report", "cmd_advise"),
            "export": ("export", "cmd_export"), "schedules": ("schedules", "cmd_schedules")}


class _Terminated(KeyboardInterrupt):
    """SIGTERM outside a study's own handling: stopped like Ctrl-C, reported as terminated (exit 143)."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise _Terminated()


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def _is_missing_data(e: BaseException) -> bool:
    """A task's data files are missing (the user's to provide). Only a loaded data module can have raised it, so
    asking never imports torch."""
    data = sys.modules.get("budgetsched.bench.tasks.data")
    return data is not None and isinstance(e, data.DatasetNotFoundError)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``budgetsched`` command; returns the exit code: 0; 2 for a usage error; 1 for an
    environment failure; 130 on Ctrl-C; 143 on SIGTERM (docs/cli.md has the table)."""
    args = build_parser().parse_args(argv)
    module, function = COMMANDS[args.command]
    command = getattr(importlib.import_module(f"budgetsched.cli.{module}"), function)
    previous = None
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)  # a clean stop, as for Ctrl-C
    try:
        with warnings.catch_warnings():
            # Library warnings (a duplicate budget, a figure panel skipped for lack of data) as one line each.
            warnings.showwarning = lambda message, *a, **k: sys.stderr.write(
                f"{PROG}: note: {' '.join(str(message).split())}\n")
            return int(command(args))
    except BudgetschedError as e:
        sys.stderr.write(f"{PROG}: error: {_one_line(e)}\n")
        return e.exit_code
    except OSError as e:  # data files the user has to provide (2), or the machine refused something (1)
        sys.stderr.write(f"{PROG}: error: {_one_line(e)}\n")
        return 2 if _is_missing_data(e) else 1
    except _Terminated:
        sys.stderr.write(f"{PROG}: terminated\n")
        return 143
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted\n")
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
