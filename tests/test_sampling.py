"""Sampling rates: number of levels, zero-order hold, and the paper's presets."""
import numpy as np
import pytest

from budgetsched import Schedule, parse_sampling

PRESET_LEVELS = {"50-75": 3, "33-66": 3, "25-50-75": 4, "10-10": 10, "5-25": 25, "1-100": 100}


@pytest.mark.parametrize("spec,levels", list(PRESET_LEVELS.items()))
def test_preset_levels_on_linear(spec, levels):
    T = 1000
    v = Schedule("linear", total_steps=T, peak_lr=1.0, sampling=spec).values()
    assert len(np.unique(v)) == levels
    pts = parse_sampling(spec).points
    assert pts[0] == 0.0 and len(pts) == levels
    # held value at step t is m(last sample point <= t/T)
    for t in range(0, T, 7):
        s = max(p for p in pts if p <= t / T)
        assert v[t] == pytest.approx(1 - s, abs=1e-12)


def test_hold_between_samples_and_switch_exactly_at_sample_point():
    T = 300
    v = Schedule("rex", total_steps=T, sampling="33-66").values()
    assert np.all(v[:100] == 1.0)
    assert np.all(v[100:200] == pytest.approx(2 * (2 / 3) / (2 - 1 / 3)))
    assert v[99] == 1.0 and v[100] < 1.0  # switches at t/T = 1/3 exactly
    assert np.all(v[200:] == v[200])


def test_every_step_is_default_except_step():
    assert Schedule("linear", total_steps=10).sampling.levels is None
    assert Schedule("step", total_steps=10).sampling.points.tolist() == [0.0, 0.5, 0.75]
    s = Schedule("step", total_steps=10, milestones=(0.3, 0.6, 0.9))
    assert s.sampling.points.tolist() == [0.0, 0.3, 0.6, 0.9]


def test_every_k_percent_and_custom_lists():
    assert parse_sampling("every-4%").points.tolist() == parse_sampling("5-25").points.tolist()
    assert parse_sampling("every-10%") == parse_sampling("10-10")
    assert parse_sampling("30-60-90").points.tolist() == [0.0, 0.3, 0.6, 0.9]
    assert parse_sampling([0.5, 0.25]).points.tolist() == [0.0, 0.25, 0.5]
    assert parse_sampling("every-step").points is None and parse_sampling(None).points is None


def test_any_profile_with_any_sampling():
    # Table 2 pairs step / linear / REX with every sampling rate
    for name in ("step", "linear", "rex", "cosine", "exp"):
        for spec in ["every-step", *PRESET_LEVELS]:
            v = Schedule(name, total_steps=400, sampling=spec).values()
            assert v[0] == 1.0 and np.all(np.diff(v) <= 1e-15)


@pytest.mark.parametrize("spec,match", [
    ("weekly", "unknown sampling rate 'weekly'"),
    ([0.5, 1.0], r"fractions in \[0, 1\), got 1.0"),
    ([-0.1], r"fractions in \[0, 1\), got -0.1"),
    ("every-7%", "does not divide"),
    ("75-50", "increase strictly"),
    (["a"], "must be numbers"),
])
def test_bad_sampling(spec, match):
    with pytest.raises(ValueError, match=match):
        parse_sampling(spec)
    with pytest.raises(ValueError, match=match):
        Schedule("linear", total_steps=100, sampling=spec)
