"""The checks of a profile's parameters (:mod:`budgetsched.profiles` registers them with each profile).

Each check takes the given value and returns None when it is valid, else the message naming the parameter, the
rule and the bad value (``"gamma must be in (-inf, 0], got 1"``); the registry raises it as one ValueError
prefixed with the profile's name.
"""
from __future__ import annotations

import math
from typing import Any, Sequence


def _short(value: Any) -> str:
    """repr(value), cut to 60 characters: a message names the bad value without printing a whole sequence."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _in(name: str, lo: float | None = None, hi: float | None = None, lo_open: bool = False, hi_open: bool = False):
    """A check that ``name`` is a finite number in [lo, hi] (an end is open with ``lo_open`` / ``hi_open``; None
    leaves it unbounded)."""
    def check(v: Any) -> str | None:
        if isinstance(v, (str, bytes, bool)):
            return f"{name} must be a number, got {v!r}"
        try:
            x = float(v)
        except (TypeError, ValueError):
            return f"{name} must be a number, got {_short(v)}"
        except OverflowError:
            return f"{name} must be a finite number, got an integer with {len(str(abs(int(v))))} digits"
        if not math.isfinite(x):
            return f"{name} must be finite, got {v!r}"
        low_ok = lo is None or (x > lo if lo_open else x >= lo)
        high_ok = hi is None or (x < hi if hi_open else x <= hi)
        if not (low_ok and high_ok):
            lb = "-inf" if lo is None else f"{lo:g}"
            ub = "inf" if hi is None else f"{hi:g}"
            return f"{name} must be in {'(' if lo_open or lo is None else '['}{lb}, {ub}{')' if hi_open or hi is None else ']'}, got {v!r}"
        return None
    return check


def _one_of(name: str, options: Sequence[str]):
    """A check that ``name`` is one of ``options``."""
    def check(v: Any) -> str | None:
        return None if v in options else f"{name} must be one of {', '.join(map(repr, options))}, got {v!r}"
    return check


def _milestones(v: Any) -> str | None:
    """``step``'s milestones: strictly increasing fractions 0 < m_1 < ... < m_k < 1."""
    try:
        ms = [float(x) for x in v]
    except (TypeError, ValueError, OverflowError):
        return f"milestones must be a sequence of fractions, got {_short(v)}"
    if not ms or any(not (0.0 < m < 1.0) for m in ms) or any(b <= a for a, b in zip(ms, ms[1:])):
        return f"milestones must be strictly increasing fractions in (0, 1), got {v!r}"
    return None
