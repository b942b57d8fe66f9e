"""A delay for every profile: m_d(z) = 1 for z < d, then the profile re-scaled over [d, 1] (REX paper, Figure 2)."""
from __future__ import annotations

import numpy as np
import pytest

from budgetsched import Schedule, available

CLOSED_FORM = [p for p in available() if p not in ("plateau", "refined", "delayed-linear", "step")]


@pytest.mark.parametrize("profile", CLOSED_FORM)
@pytest.mark.parametrize("d", [0.2, 0.5, 0.8])
def test_delay_holds_then_runs_the_profile_over_the_rest(profile, d):
    T = 1000
    delayed = Schedule(profile, T, peak_lr=1.0, delay=d).values()
    start = int(np.ceil(d * T))  # first step with z >= d
    assert np.all(delayed[:start] == 1.0)
    rest = T - start
    plain = Schedule(profile, T, peak_lr=1.0)
    z = (np.arange(start, T) / T - d) / (1 - d)
    expected = np.array([plain.multiplier(int(round(x * T))) if abs(x * T - round(x * T)) < 1e-9 else np.nan
                         for x in z])
    ok = ~np.isnan(expected)
    np.testing.assert_allclose(delayed[start:][ok], expected[ok], rtol=1e-9, atol=1e-12)
    assert rest > 0


@pytest.mark.parametrize("profile", ["rex", "linear", "cosine", "exp", "polynomial", "wsd"])
def test_delay_is_continuous_where_the_profile_starts_at_its_peak(profile):
    v = Schedule(profile, 10_000, peak_lr=1.0, delay=0.4).values()
    assert np.max(np.abs(np.diff(v))) < 0.01  # no jump at the onset


def test_delayed_linear_is_linear_with_a_delay():
    np.testing.assert_array_equal(Schedule("linear", 500, delay=0.3).values(),
                                  Schedule("delayed-linear", 500, delay=0.3).values())


@pytest.mark.parametrize("d", [-0.1, 1.0, 2, "half"])
def test_bad_delay_is_rejected(d):
    with pytest.raises(ValueError, match="delay"):
        Schedule("rex", 100, delay=d)
