"""The ablations preset answers the suite v2 issue's item 3 without confounds: its warm-up variants rise as the
suite's OneCycle rises (``Schedule(warmup_start_ratio=...)``, checked against the hand-written ramp), its OneCycle
without a momentum cycle holds 0.9, its optimizers include AdamW at Adam's grid, and its grid builds."""
from __future__ import annotations

import math

import numpy as np
import pytest

from budgetsched import Schedule
from budgetsched.bench.protocol.presets import ABLATION_TASKS, SUITE_V2_LRS, get_preset
from budgetsched.bench.protocol.study import StudySpec


# ------------------------------------------------------------------------------------- Schedule(warmup_start_ratio)
@pytest.mark.parametrize("T,f,r", [(50, 0.5, 0.1), (5000, 0.5, 0.1), (37, 0.3, 0.25), (10, 0.2, 0.0)])
def test_warmup_start_ratio_is_the_hand_written_ramp(T, f, r):
    """lr(t) = peak (r + (1 - r) t / (W - 1)) for t < W = ceil(f T); then REX, m(z) = (1 - z) / (1/2 + (1 - z)/2)
    with z = (t - W) / (T - W) (REX paper, eq. 1 with beta = 0.5)."""
    peak = 0.3
    s = Schedule("rex", T, peak_lr=peak, warmup_fraction=f, warmup_start_ratio=r)
    W = math.ceil(f * T)
    t = np.arange(T, dtype=np.float64)
    z = (t - W) / (T - W)
    want = np.where(t < W, peak * (r + (1 - r) * t / max(W - 1, 1)), peak * (1 - z) / (0.5 + 0.5 * (1 - z)))
    np.testing.assert_allclose(s.values(), want, rtol=1e-12, atol=1e-15)
    assert s.warmup_start_lr == pytest.approx(r * peak) and s.warmup_start_ratio == r


def test_warmup_start_ratio_scales_with_the_peak_and_rejects_bad_values():
    s = Schedule("linear", 100, peak_lr=0.2, warmup_steps=10, warmup_start_ratio=0.1)
    other = s.with_peak(1.0)  # another parameter group: the start stays a tenth of its peak
    assert other(0) == pytest.approx(0.1) and other.warmup_start_ratio == 0.1
    fixed = s.with_peak(1.0, warmup_start_lr=0.5)  # an explicit start LR replaces the ratio
    assert fixed(0) == pytest.approx(0.5) and fixed.warmup_start_ratio is None
    with pytest.raises(ValueError, match="warmup_start_ratio .*needs a warmup"):
        Schedule("rex", 100, warmup_start_ratio=0.1)
    with pytest.raises(ValueError, match=r"warmup_start_ratio must be in \[0, 1\], got 1.5"):
        Schedule("rex", 100, warmup_steps=5, warmup_start_ratio=1.5)
    with pytest.raises(ValueError, match="not both"):
        Schedule("rex", 100, warmup_steps=5, warmup_start_ratio=0.1, warmup_start_lr=0.01)
    # without the new parameter nothing changes: the default start is peak / W
    assert Schedule("rex", 100, peak_lr=1.0, warmup_steps=10)(0) == pytest.approx(0.1)


# --------------------------------------------------------------------------------------------------- the preset
@pytest.fixture(scope="module")
def spec():
    return StudySpec.from_mapping(get_preset("ablations"), "ablations")


def test_the_warm_up_variants_rise_as_the_suites_onecycle(spec):
    """OneCycle as the suite runs it (the triangle) rises linearly from peak/10 at step 0 to the peak at T/2; the
    variants' ramp starts at the same LR and reaches the peak within one step of it (W - 1 = ceil(T/2) - 1)."""
    warm = [p for name, p in (s for s in spec.schedules if isinstance(s, tuple)) if name in ("rex", "linear")]
    assert warm == [{"warmup_fraction": 0.5, "warmup_start_ratio": 0.1}] * 2
    for T in (50, 250, 5000):  # the tasks' 1 %, 5 % and 100 % runs
        one = Schedule("onecycle", T, peak_lr=1.0).values()
        rex = Schedule("rex", T, peak_lr=1.0, **warm[0]).values()
        assert one[0] == rex[0] == pytest.approx(0.1)
        assert np.argmax(one) == T // 2 and np.argmax(rex) == math.ceil(T / 2) - 1
        rise = slice(0, math.ceil(T / 2))
        assert np.max(np.abs(one[rise] - rex[rise])) <= 0.9 / (T / 2 - 1) + 1e-12  # at most one step's increment


def test_onecycle_without_its_momentum_cycle_holds_09(spec):
    assert ("onecycle", {"max_momentum": 0.9, "base_momentum": 0.9}) in spec.schedules and "onecycle" in spec.schedules
    flat = Schedule("onecycle", 100, peak_lr=0.1, max_momentum=0.9, base_momentum=0.9)
    assert np.allclose(flat.momentum_values(), 0.9)
    np.testing.assert_array_equal(flat.values(), Schedule("onecycle", 100, peak_lr=0.1).values())  # same LR curve


def test_the_grid_builds_with_three_optimizers(spec):
    assert spec.optimizers == ["sgdm", "adam", "adamw"] and spec.refine is True and spec.seeds == [0, 1, 2]
    assert tuple(spec.tasks) == ABLATION_TASKS
    for t in ABLATION_TASKS:  # AdamW is tuned on Adam's grid: the same LRs, the decay is the only difference
        assert spec.lrs[t] == {**SUITE_V2_LRS[t], "adamw": SUITE_V2_LRS[t]["adam"]}
    configs = spec.configs()
    assert len(configs) == 2 * 3 * 6 * 7 * 5 * 3  # tasks x optimizers x budgets x schedules x LRs x seeds
    assert {c.label for c in configs} == {
        "onecycle", "onecycle(base_momentum=0.9,max_momentum=0.9)", "rex", "linear", "schedule-free",
        "rex(warmup_fraction=0.5,warmup_start_ratio=0.1)", "linear(warmup_fraction=0.5,warmup_start_ratio=0.1)"}
    for label in ("onecycle(base_momentum=0.9,max_momentum=0.9)", "warmup_start_ratio=0.1", "AdamWScheduleFree",
                  "peak/10", "ceil(T/2)", "decoupled"):
        assert label in spec.description, label


def test_the_suite_presets_are_untouched():
    """The running suite's presets keep SGDM and Adam only."""
    for name in ("suite", "suite-smoke", "suite-pilot", "suite-v1"):
        assert "adamw" not in get_preset(name)["optimizers"], name
