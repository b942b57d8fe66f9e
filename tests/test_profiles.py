"""Profiles against the formulas of schedules.md, written out independently here, and their invariants."""
import math

import numpy as np
import pytest

import budgetsched
from budgetsched import profiles as P

RNG = np.random.default_rng(1234)
Z = np.concatenate([[0.0, 0.25, 0.5, 0.75, 1.0], RNG.uniform(0.0, 1.0, 200)])

# Independent scalar formulas, straight from schedules.md (math module, not numpy).
FORMULAS = {
    ("rex", ()): lambda z: (1 - z) / (0.5 + 0.5 * (1 - z)),
    ("linear", ()): lambda z: 1 - z,
    ("cosine", ()): lambda z: (1 + math.cos(math.pi * z)) / 2,
    ("exp", ()): lambda z: math.exp(-3 * z),
    ("exp", (("gamma", -1.5),)): lambda z: math.exp(-1.5 * z),
    ("step", ()): lambda z: 1.0 if z < 0.5 else (0.1 if z < 0.75 else 0.01),
    ("step", (("milestones", (0.3, 0.6, 0.9)),)): lambda z: 0.1 ** sum(z >= m for m in (0.3, 0.6, 0.9)),
    ("step", (("factor", 0.5),)): lambda z: 1.0 if z < 0.5 else (0.5 if z < 0.75 else 0.25),
    ("onecycle", ()): lambda z: 0.1 + 0.9 * (2 * z if z < 0.5 else 2 - 2 * z),
    ("constant", ()): lambda z: 1.0,
    ("delayed-linear", (("delay", 0.3),)): lambda z: 1.0 if z < 0.3 else (1 - z) / 0.7,
    ("rex-beta", (("beta", 0.1),)): lambda z: (1 - z) / (0.1 + 0.9 * (1 - z)),
    ("rex-beta", (("beta", 2.0),)): lambda z: (1 - z) / (1 + z),
    ("uba", (("phi", 5.0),)): lambda z: 0.0 if z == 1 else 1 / (1 + 2.5 * math.tan(math.pi * z / 2) ** 2),
    ("wsd", ()): lambda z: 1.0 if z <= 0.8 else 1 - (z - 0.8) / 0.2,
    ("wsd", (("cooldown", "1-sqrt"), ("fraction", 0.5))): lambda z: 1.0 if z <= 0.5 else 1 - math.sqrt((z - 0.5) / 0.5),
    ("polynomial", ()): lambda z: (1 - z) ** 2,
    ("polynomial", (("power", 0.5),)): lambda z: (1 - z) ** 0.5,
}


@pytest.mark.parametrize("key", list(FORMULAS), ids=lambda k: f"{k[0]}{dict(k[1]) or ''}")
def test_profile_matches_formula(key):
    name, params = key
    m = P.get_profile(name, **dict(params))
    got = m(Z)
    want = np.array([FORMULAS[key](float(z)) for z in Z])
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    # scalar input gives the same value as the vectorised call
    assert float(m(float(Z[7]))) == pytest.approx(want[7], rel=1e-12, abs=1e-15)


def test_rex_paper_values():
    assert float(P.rex(0.5)) == 2 / 3
    assert float(P.rex(0.9)) == pytest.approx(0.18181818181818, rel=1e-12)
    assert float(P.rex(0.0)) == 1.0 and float(P.rex(1.0)) == 0.0


def test_uba_phi2_is_cosine():
    np.testing.assert_allclose(P.uba(Z, phi=2.0), P.cosine(Z), atol=1e-12)


def test_rex_beta_family():
    np.testing.assert_allclose(P.rex_beta(Z, beta=0.5), P.rex(Z), atol=1e-15)
    np.testing.assert_allclose(P.rex_beta(Z, beta=1.0), P.linear(Z), atol=1e-15)
    np.testing.assert_allclose(P.rex_beta(Z, beta=0.0), np.ones_like(Z))


def test_refined_constant_norms_is_exactly_linear():
    for n in (2, 11, 100, 1001):
        for opt in ("sgd", "adam"):
            m = P.get_profile("refined", grad_norms=[3.7] * n, optimizer=opt)
            np.testing.assert_allclose(m(Z), 1 - Z, atol=1e-12)
            table = P.refined_table([3.7] * n, opt)
            np.testing.assert_allclose(table, 1 - np.arange(n) / (n - 1), atol=1e-12)


def test_refined_follows_the_formula_and_smoothing():
    g = np.linspace(1.0, 3.0, 50)  # growing norms: later steps weigh less
    table = P.refined_table(g, "sgd", smooth=0.0)
    w = 1 / g**2
    want = np.array([w[t] * w[t + 1:].sum() for t in range(50)])
    np.testing.assert_allclose(table, want / want.max(), rtol=1e-12)
    assert table[-1] == 0.0 and table.max() == 1.0
    # a single spike is removed by the running median (width 10 % of 50 = 5)
    spiky = np.ones(50)
    spiky[20] = 100.0
    np.testing.assert_allclose(P.refined_table(spiky, "sgd"), 1 - np.arange(50) / 49, atol=1e-12)
    # Adam uses 1/g, not 1/g^2
    table_adam = P.refined_table(g, "adam", smooth=0.0)
    w = 1 / g
    want = np.array([w[t] * w[t + 1:].sum() for t in range(50)])
    np.testing.assert_allclose(table_adam, want / want.max(), rtol=1e-12)


@pytest.mark.parametrize("name", [n for n in budgetsched.available() if n not in ("plateau", "refined")])
def test_start_value_and_range(name):
    m = P.get_profile(name)
    zs = np.linspace(0, 1, 2001)
    v = m(zs)
    assert np.all(np.isfinite(v)) and np.all(v >= 0) and np.all(v <= 1 + 1e-12)
    if name == "onecycle":
        assert float(m(0.0)) == pytest.approx(0.1) and float(m(0.5)) == 1.0
    else:
        assert float(m(0.0)) == 1.0


@pytest.mark.parametrize("name", ["rex", "linear", "cosine", "exp", "step", "delayed-linear", "rex-beta", "uba",
                                  "wsd", "polynomial"])
def test_decaying_profiles_are_monotone(name):
    v = P.get_profile(name)(np.linspace(0, 1, 5001))
    assert np.all(np.diff(v) <= 1e-15)


def test_onecycle_momentum_moves_opposite():
    zs = np.linspace(0, 1, 101)
    lr, mom = P.onecycle(zs), P.onecycle_momentum(zs)
    assert float(mom[0]) == 0.95 and float(mom[50]) == 0.85 and float(mom[-1]) == pytest.approx(0.95)
    dl, dm = np.diff(lr), np.diff(mom)
    assert np.all(dl * dm <= 1e-15)  # opposite directions at every step
    # the torch variant: start 1/25 of peak, peak at 30 %, end 1/(25e4)
    assert float(P.onecycle(0.0, variant="torch")) == pytest.approx(1 / 25)
    assert float(P.onecycle(0.3, variant="torch")) == pytest.approx(1.0)
    assert float(P.onecycle(1.0, variant="torch")) == pytest.approx(1 / 25e4)


def test_available_lists_everything():
    names = budgetsched.available()
    for n in ("rex", "linear", "cosine", "exp", "step", "plateau", "onecycle", "constant", "delayed-linear",
              "rex-beta", "uba", "wsd", "polynomial", "refined"):
        assert n in names


@pytest.mark.parametrize("name,params,match", [
    ("nope", {}, "unknown schedule 'nope'.*rex"),
    ("exp", {"gamma": 1.0}, r"gamma must be in .*got 1\.0"),
    ("exp", {"gamma": "x"}, "gamma must be a number, got 'x'"),
    ("exp", {"gama": -3}, "unknown parameter 'gama' for profile 'exp'; its parameters: gamma"),
    ("rex", {"beta": 0.5}, "unknown parameter 'beta' for profile 'rex'; its parameters: none"),
    ("delayed-linear", {"delay": 1.0}, r"delay must be in \[0, 1\), got 1.0"),
    ("rex-beta", {"beta": -0.5}, "beta must be in .*got -0.5"),
    ("uba", {"phi": 0.0}, r"phi must be in \(0, inf\), got 0.0"),
    ("wsd", {"fraction": 0.0}, "fraction must be in .*got 0.0"),
    ("wsd", {"cooldown": "cubic"}, "cooldown must be one of 'linear', '1-sqrt', got 'cubic'"),
    ("step", {"milestones": (0.75, 0.5)}, r"strictly increasing.*\(0.75, 0.5\)"),
    ("step", {"factor": 2.0}, r"factor must be in \(0, 1\], got 2.0"),
    ("onecycle", {"variant": "cos"}, "variant must be one of 'triangle', 'torch', got 'cos'"),
    ("polynomial", {"power": -1}, "power must be in .*got -1"),
    ("refined", {}, "needs parameter 'grad_norms'"),
    ("refined", {"grad_norms": [1.0, -2.0]}, "finite and > 0"),
    ("plateau", {}, "validation metric"),
])
def test_bad_profile_input(name, params, match):
    with pytest.raises(ValueError, match=match):
        P.get_profile(name, **params)
