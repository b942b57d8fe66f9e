"""Errors by kind, so the command line can answer each with the right exit code and one line.

| kind | class | exit | examples |
|---|---|---|---|
| the user's input | :class:`UsageError` (a ``ValueError``) | 2 | unknown schedule, bad number, a file that is not a store, a store of a newer budgetsched |
| the environment | :class:`EnvironmentFailure` (an ``OSError``) | 1 | disk full, permission denied, store locked by another process, unreachable Ray cluster |
| a bug | anything else | 1, with its traceback | |

Library functions raise plain ``ValueError`` for bad arguments (the Python convention); the command line treats
those raised while it reads its arguments and builds the study as usage errors, and every other unexpected
exception as a bug, so a real bug never loses its traceback.
"""
from __future__ import annotations

__all__ = ["BudgetschedError", "UsageError", "EnvironmentFailure"]


class BudgetschedError(Exception):
    """Base of the errors the command line answers with one line and ``exit_code``."""

    exit_code = 1


class UsageError(BudgetschedError, ValueError):
    """The user's input cannot be used (exit 2)."""

    exit_code = 2


class EnvironmentFailure(BudgetschedError, OSError):
    """The machine got in the way: disk full, permissions, locks, an unreachable service (exit 1)."""

    exit_code = 1
