"""Sampling rates: how often the LR is re-read from the profile (REX paper, section 3, Figure 1, Table 2).

A sampling rate is a set of sample points S in [0, 1) with 0 in S. The profile is read at the last sample point
at or before z and held there (zero-order hold): ``m_S(z) = m(max{s in S : s <= z})``.

Presets (strings):

==============  =====================================  ========
spec            sample points                          levels
==============  =====================================  ========
``every-step``  every optimizer step (S = {t/T})       T
``50-75``       {0, 1/2, 3/4}                          3
``33-66``       {0, 1/3, 2/3}                          3
``25-50-75``    {0, 1/4, 1/2, 3/4}                     4
``10-10``       every 10 % of the run                  10
``5-25``        every 4 % of the run (see note)        25
``1-100``       every 1 % of the run                   100
==============  =====================================  ========

Note on ``5-25``: the paper's "5-25" is ambiguous (every 5 % would give 20 levels, not 25). We read the second
number as the number of levels, as in "10-10" and "1-100", so "5-25" samples every 4 % (25 levels).

Other forms: ``"every-k%"`` (e.g. ``"every-2.5%"``), any other hyphenated percent list such as ``"30-60-90"``
(points {0, .3, .6, .9}), or a sequence of fractions in [0, 1) (0 is added if missing).

Uniform rates (``every-k%``, ``10-10``, ``5-25``, ``1-100``) are held in closed form, ``hold(z) = i/n`` with
``i = max{i : i/n <= z}``, and never listed: any number of levels costs the same constant memory and time. A run
of T steps visits at most T of them (at most one level per step): with more levels than steps, each step simply
reads the level at or before its own progress.
"""
from __future__ import annotations

import bisect
import math
import re
from typing import Any, Sequence

import numpy as np

from .profiles import NP, PY, Ops

PRESETS = ("every-step", "50-75", "33-66", "25-50-75", "10-10", "5-25", "1-100")

#: The largest level count of a uniform rate: i/n stays exact in float64 up to here.
MAX_LEVELS = 2**53
#: The largest uniform rate :attr:`Sampling.points` will list (80 MB of float64); :meth:`Sampling.hold` has no limit.
MAX_LISTED_POINTS = 10**7


class Sampling:
    """A sampling rate: every step, ``n`` uniform levels {i/n}, or explicit sorted sample points.

    Build one with :func:`parse_sampling`. ``points`` lists the sample points (None for every step).
    """

    __slots__ = ("name", "uniform", "_points", "_points_py", "_rests", "_rests_py")

    def __init__(self, name: str, points: np.ndarray | None = None, *, uniform: int | None = None) -> None:
        self.name = name
        self.uniform = uniform  # n for the uniform rate {i/n : 0 <= i < n}, else None
        self._points = None if points is None else np.asarray(points, dtype=np.float64)
        self._points_py = None if points is None else [float(p) for p in self._points]
        self._rests = None if points is None else 1.0 - self._points  # 1 - s, rounded once
        self._rests_py = None if points is None else [float(p) for p in self._rests]

    @property
    def every_step(self) -> bool:
        return self.uniform is None and self._points is None

    @property
    def levels(self) -> int | None:
        """Number of distinct sample points (None for every step)."""
        if self.uniform is not None:
            return self.uniform
        return None if self._points is None else int(self._points.size)

    @property
    def points(self) -> np.ndarray | None:
        """The sample points as a float64 array (None for every step); a uniform rate is listed on demand."""
        if self.uniform is not None:
            if self.uniform > MAX_LISTED_POINTS:
                raise ValueError(f"sampling {self.name!r} has {self.uniform} levels, too many to list (at most "
                                 f"{MAX_LISTED_POINTS}); hold(z) reads it in closed form")
            return np.arange(self.uniform, dtype=np.float64) / self.uniform  # i / n, correctly rounded
        return None if self._points is None else self._points.copy()

    def hold_with(self, z: Any, r: Any, xp: Ops) -> tuple[Any, Any]:
        """(s, 1 - s) for s the last sample point at or before z, with the array operations ``xp``.

        ``z`` and ``r`` (= 1 - z, computed by the caller without rounding z first) are ``xp`` values; 1 - s is
        computed from the level's own integers or stored points, so it keeps its relative precision near the end.
        """
        if self._points is None and self.uniform is None:
            return z, r
        if xp is PY:
            return self.hold_py(z, r)
        if not xp.low_precision:  # float64: 1 - s, bit-for-bit what every-step sampling gives at s
            s = self._hold_np(z)
            return s, 1.0 - s
        z = z * (1.0 + 4.0 * xp.epsilon())  # float32: a step exactly on a sample point must read its level
        if self.uniform is not None:
            n = float(self.uniform)
            i = xp.floor(z * n)
            i = xp.where((i + 1.0) / n <= z, i + 1.0, i)  # z * n may round across an integer: correct both ways
            i = xp.where(i / n > z, i - 1.0, i)
            i = xp.clip(i, 0.0, n - 1.0)
            return i / n, (n - i) / n  # only float32 gets here (low precision): 1 - s from the level's integers
        idx = xp.maximum(xp.searchsorted(xp.const(self._points), z) - 1, 0)
        return xp.take(xp.const(self._points), idx), xp.take(xp.const(self._rests), idx)

    def hold_py(self, z: float, r: float) -> tuple[float, float]:
        """:meth:`hold_with` for one Python float (the adapters' per-step path)."""
        n = self.uniform
        if n is not None:
            i = math.floor(z * n)
            if (i + 1) / n <= z:
                i += 1
            elif i / n > z:
                i -= 1
            i = 0 if i < 0 else n - 1 if i >= n else i
            s = i / n
            return s, 1.0 - s
        pts = self._points_py
        if pts is None:
            return z, r
        i = bisect.bisect_right(pts, z) - 1
        i = i if i > 0 else 0
        return pts[i], self._rests_py[i]

    def _hold_np(self, z: np.ndarray) -> np.ndarray:
        if self.uniform is not None:
            n = float(self.uniform)
            i = np.floor(z * n)
            i = np.where((i + 1.0) / n <= z, i + 1.0, i)
            i = np.where(i / n > z, i - 1.0, i)
            return np.clip(i, 0.0, n - 1.0) / n
        return self._points[np.maximum(np.searchsorted(self._points, z, side="right") - 1, 0)]

    def hold(self, z: Any) -> np.ndarray:
        """Map progress z (numpy) to the last sample point at or before it (zero-order hold)."""
        z = np.asarray(z, dtype=np.float64)
        return self.hold_with(z, 1.0 - z, NP)[0]

    def spec(self) -> str | list[float] | None:
        """The rate as plain Python that :func:`parse_sampling` turns back into it (None, a name or fractions)."""
        if self.every_step:
            return None
        if self.uniform is not None:
            return self.name
        return [float(p) for p in self._points]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sampling):
            return NotImplemented
        if self.every_step or other.every_step:
            return self.every_step and other.every_step
        if self.uniform is not None and other.uniform is not None:
            return self.uniform == other.uniform
        if self.levels != other.levels:
            return False
        return bool(np.array_equal(self.points, other.points))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Sampling({self.name!r})"


EVERY_STEP = Sampling("every-step")

_FIXED_POINTS = {
    "50-75": (0.0, 0.5, 0.75),
    "33-66": (0.0, 1 / 3, 2 / 3),
    "25-50-75": (0.0, 0.25, 0.5, 0.75),
}
_FIXED_UNIFORM = {"10-10": 10, "5-25": 25, "1-100": 100}


def plain_spec(spec: str | Sequence[float] | Sampling | None) -> str | list[float] | None:
    """A sampling spec as plain Python (None, a string or a list of floats), for checkpoints and configs."""
    if spec is None or isinstance(spec, str):
        return spec
    if isinstance(spec, Sampling):
        return spec.spec()
    return [float(p) for p in spec]


def from_points(points: Sequence[float], name: str | None = None) -> Sampling:
    """Sampling at the given fractions of the run (0 is added if missing)."""
    try:
        pts = np.asarray(sorted({0.0, *(float(p) for p in points)}), dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"sampling points must be numbers in [0, 1), got {points!r}") from None
    bad = [float(p) for p in pts if not (0.0 <= p < 1.0)]
    if bad:
        raise ValueError(f"sampling points must be fractions in [0, 1), got {bad[0]!r} in {list(points)!r}")
    return Sampling(name or "-".join(f"{100 * p:g}" for p in pts[1:]) or "start-only", pts)


def uniform(levels: int, name: str | None = None) -> Sampling:
    """The uniform rate {i/levels}: the profile re-read every 1/levels of the run, held in closed form."""
    if isinstance(levels, bool) or not isinstance(levels, int) or not 1 <= levels <= MAX_LEVELS:
        raise ValueError(f"sampling levels must be an integer in [1, 2**53], got {levels!r}")
    return Sampling(name or f"every-{100 / levels:g}%", uniform=levels)


def parse_sampling(spec: str | Sequence[float] | Sampling | None) -> Sampling:
    """Turn a user spec into a :class:`Sampling`. ``None`` and ``"every-step"`` mean every step.

    >>> parse_sampling("10-10").levels
    10
    >>> parse_sampling("5-25").levels
    25
    >>> parse_sampling("33-66").points.tolist() == [0.0, 1 / 3, 2 / 3]
    True
    >>> parse_sampling("every-0.0000001%").levels  # held in closed form: nothing is listed
    1000000000
    """
    if spec is None or isinstance(spec, Sampling):
        return spec or EVERY_STEP
    if isinstance(spec, str):
        s = spec.strip().lower()
        if s in ("every-step", "every-iteration", "step", "iteration"):
            return EVERY_STEP
        if s in _FIXED_POINTS:
            return Sampling(s, np.array(_FIXED_POINTS[s]))
        if s in _FIXED_UNIFORM:
            return Sampling(s, uniform=_FIXED_UNIFORM[s])
        m = re.fullmatch(r"every-(\d+(?:\.\d+)?)%", s)
        if m:
            k = float(m.group(1))
            if not (0.0 < k <= 100.0):
                raise ValueError(f"sampling {spec!r}: the percent must be in (0, 100], got {m.group(1)}")
            levels = 100.0 / k
            if not levels <= MAX_LEVELS:
                raise ValueError(f"sampling {spec!r}: {k:g}% gives {levels:.3g} levels, more than 2**53 (use "
                                 "'every-step' to re-read the profile at every step)")
            n = int(round(levels))
            if abs(n * k - 100.0) > 1e-9 * 100.0:
                raise ValueError(f"sampling {spec!r}: {k:g}% does not divide the run into whole levels")
            return Sampling(s, uniform=n)
        if re.fullmatch(r"\d+(?:\.\d+)?(?:-\d+(?:\.\d+)?)+", s):
            pcts = [float(x) for x in s.split("-")]
            if any(b <= a for a, b in zip(pcts, pcts[1:])) or not all(0 < p < 100 for p in pcts):
                raise ValueError(f"sampling {spec!r}: percent milestones must increase strictly within (0, 100)")
            return from_points([p / 100.0 for p in pcts], name=s)
        raise ValueError(
            f"unknown sampling rate {spec!r}; use one of {', '.join(PRESETS)}, 'every-k%', "
            "a percent list like '30-60-90', or a sequence of fractions in [0, 1)")
    if isinstance(spec, (bytes, bool)) or not hasattr(spec, "__iter__"):
        raise ValueError(f"sampling must be a name, a sequence of fractions in [0, 1) or None, got {spec!r}")
    return from_points(spec)

