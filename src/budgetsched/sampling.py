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
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

PRESETS = ("every-step", "50-75", "33-66", "25-50-75", "10-10", "5-25", "1-100")


def _every(levels: int) -> np.ndarray:
    # i / n (a correctly rounded division) so that a step t with t/T == i/n lands exactly on the sample point.
    return np.array([i / levels for i in range(levels)], dtype=np.float64)


@dataclass(frozen=True, eq=False)
class Sampling:
    """A sampling rate. ``points`` is None for every-step sampling, else the sorted sample points."""

    name: str
    points: np.ndarray | None

    @property
    def levels(self) -> int | None:
        """Number of distinct sample points (None for every step)."""
        return None if self.points is None else int(self.points.size)

    def hold(self, z: Any) -> np.ndarray:
        """Map progress z to the last sample point at or before it (zero-order hold)."""
        z = np.asarray(z, dtype=np.float64)
        if self.points is None:
            return z
        idx = np.searchsorted(self.points, z, side="right") - 1
        return self.points[np.clip(idx, 0, None)]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sampling):
            return NotImplemented
        if self.points is None or other.points is None:
            return self.points is None and other.points is None
        return bool(np.array_equal(self.points, other.points))

    def __repr__(self) -> str:
        return f"Sampling({self.name!r})"


EVERY_STEP = Sampling("every-step", None)

_FIXED = {
    "50-75": np.array([0.0, 0.5, 0.75]),
    "33-66": np.array([0.0, 1 / 3, 2 / 3]),
    "25-50-75": np.array([0.0, 0.25, 0.5, 0.75]),
    "10-10": _every(10),
    "5-25": _every(25),
    "1-100": _every(100),
}


def plain_spec(spec: str | Sequence[float] | Sampling | None) -> str | list[float] | None:
    """A sampling spec as plain Python (None, a string or a list of floats), for checkpoints and configs."""
    if spec is None or isinstance(spec, str):
        return spec
    if isinstance(spec, Sampling):
        return None if spec.points is None else [float(p) for p in spec.points]
    return [float(p) for p in spec]


def from_points(points: Sequence[float], name: str | None = None) -> Sampling:
    """Sampling at the given fractions of the run (0 is added if missing)."""
    try:
        pts = np.asarray(sorted({0.0, *(float(p) for p in points)}), dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"sampling points must be numbers in [0, 1), got {points!r}") from None
    bad = [float(p) for p in pts if not (0.0 <= p < 1.0)]
    if bad:
        raise ValueError(f"sampling points must be fractions in [0, 1), got {bad[0]!r} in {list(points)!r}")
    return Sampling(name or "-".join(f"{100 * p:g}" for p in pts[1:]) or "start-only", pts)


def parse_sampling(spec: str | Sequence[float] | Sampling | None) -> Sampling:
    """Turn a user spec into a :class:`Sampling`. ``None`` and ``"every-step"`` mean every step.

    >>> parse_sampling("10-10").levels
    10
    >>> parse_sampling("5-25").levels
    25
    >>> parse_sampling("33-66").points.tolist() == [0.0, 1 / 3, 2 / 3]
    True
    """
    if spec is None or isinstance(spec, Sampling):
        return spec or EVERY_STEP
    if isinstance(spec, str):
        s = spec.strip().lower()
        if s in ("every-step", "every-iteration", "step", "iteration"):
            return EVERY_STEP
        if s in _FIXED:
            return Sampling(s, _FIXED[s].copy())
        m = re.fullmatch(r"every-(\d+(?:\.\d+)?)%", s)
        if m:
            k = float(m.group(1))
            if not (0.0 < k <= 100.0):
                raise ValueError(f"sampling {spec!r}: the percent must be in (0, 100]")
            levels = int(round(100.0 / k))
            if abs(levels * k - 100.0) > 1e-9:
                raise ValueError(f"sampling {spec!r}: {k:g}% does not divide the run into whole levels")
            return Sampling(s, _every(levels))
        if re.fullmatch(r"\d+(?:\.\d+)?(?:-\d+(?:\.\d+)?)+", s):
            pcts = [float(x) for x in s.split("-")]
            if any(b <= a for a, b in zip(pcts, pcts[1:])) or not all(0 < p < 100 for p in pcts):
                raise ValueError(f"sampling {spec!r}: percent milestones must increase strictly within (0, 100)")
            return from_points([p / 100.0 for p in pcts], name=s)
        raise ValueError(
            f"unknown sampling rate {spec!r}; use one of {', '.join(PRESETS)}, 'every-k%', "
            "a percent list like '30-60-90', or a sequence of fractions in [0, 1)")
    return from_points(spec)
