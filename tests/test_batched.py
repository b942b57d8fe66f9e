"""Batched engine: every member equals its sequential run (``train_trial``, torch.optim) up to rounding.

Both engines run in float64 here (``torch.set_default_dtype``; the engines cast inputs to the model's dtype), so
the comparison is not at the mercy of float32 reduction order, which differs between one model's ``addmm`` and the
stacked ``bmm`` and can grow over hundreds of steps. Tolerance: 1e-7 relative on every curve and final metric.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from budgetsched.bench.batched import supports, train_group
from budgetsched.bench.grid import TrialConfig
from budgetsched.bench.tasks import get_task
from budgetsched.bench.train import train_trial

RTOL = 1e-7


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


_DATA: dict[str, object] = {}


def load(name):
    task = get_task(name)
    if name not in _DATA:
        _DATA[name] = task.load(None, None)
    return task, _DATA[name]


def group(task, optimizer, budget, lr, with_diverging=False):
    """Mixed schedules, LRs and seeds in one (task, optimizer, budget) group."""
    c = lambda s, lr_, seed, **p: TrialConfig(task, s, optimizer, budget, lr_, seed, tuple(p.items()))  # noqa: E731
    out = [c("rex", lr, 0), c("step", 3 * lr, 1), c("onecycle", lr, 2), c("plateau", lr, 0, patience=5)]
    if with_diverging:
        out.append(c("rex", 1e100, 3))  # overflows float64 within two steps
    return out


def assert_same(seq, bat):
    assert bat.status == seq.status and bat.steps == seq.steps and bat.error is None
    assert bat.curves.keys() == seq.curves.keys()
    for k in seq.curves:
        np.testing.assert_allclose(bat.curves[k], seq.curves[k], rtol=RTOL, atol=1e-12, err_msg=k)
    for f in ("val_loss", "val_metric", "test_loss", "test_metric"):
        a, b = getattr(seq, f), getattr(bat, f)
        assert (a is None) == (b is None), f
        if a is not None:
            assert b == pytest.approx(a, rel=RTOL, abs=1e-12), f


# task, budget (a few hundred steps, fewer for the slower CNN), sgdm lr, adam lr
CASES = [("mnist1d-mlp", 5.0, 0.1, 0.003), ("digits-mlp", 20.0, 0.1, 0.003), ("mnist1d-cnn", 2.0, 0.1, 0.003)]


@pytest.mark.parametrize("name,budget,sgd_lr,adam_lr", CASES, ids=[c[0] for c in CASES])
def test_batched_equals_sequential(float64, name, budget, sgd_lr, adam_lr):
    task, data = load(name)
    for optimizer, lr in (("sgdm", sgd_lr), ("adam", adam_lr)):
        configs = group(name, optimizer, budget, lr, with_diverging=optimizer == "sgdm")
        if name == "mnist1d-cnn":  # the slowest model: three members per group keep the test quick
            configs = configs[1:]
        batched = dict(train_group(configs, task, data))
        assert list(batched) == configs
        for c in configs:
            seq = train_trial(c, task, data)
            assert_same(seq, batched[c])
        statuses = {c.schedule if c.lr < 1e5 else "diverging": batched[c].status for c in configs}
        assert statuses.pop("diverging", "diverged") == "diverged"
        assert set(statuses.values()) == {"done"}, statuses


def test_members_are_independent_of_chunking_and_neighbours(float64):
    """A member's result does not depend on which others share its chunk (incl. a failing one)."""
    task, data = load("digits-mlp")
    configs = group("digits-mlp", "adam", 10.0, 0.003)
    bad = TrialConfig("digits-mlp", "no-such-schedule", "adam", 10.0, 0.003, 0)
    whole = dict(train_group(configs, task, data, chunk_size=8))
    pieces = dict(train_group([configs[0], bad, *configs[1:]], task, data, chunk_size=2))
    assert pieces[bad].status == "failed" and "no-such-schedule" in pieces[bad].error
    for c in configs:
        assert_same(whole[c], pieces[c])
        assert whole[c].wall_time > 0


def test_group_checks():
    task, data = load("digits-mlp")
    a = TrialConfig("digits-mlp", "rex", "sgdm", 10.0, 0.1, 0)
    with pytest.raises(ValueError, match="one .task, optimizer, budget. group"):
        train_group([a, dataclasses.replace(a, optimizer="adam")], task, data)
    with pytest.raises(ValueError, match="one .task, optimizer, budget. group"):
        train_group([a, dataclasses.replace(a, budget=20.0)], task, data)
    with pytest.raises(ValueError, match="chunk_size must be an integer >= 1, got 0"):
        train_group([a], task, data, chunk_size=0)
    with pytest.raises(ValueError, match="configs are for task .digits-mlp. but the task given is .mnist1d-mlp."):
        train_group([a], get_task("mnist1d-mlp"), data)
    with pytest.raises(ValueError, match="unknown stacking 'x'; choose from auto, bmm, vmap"):
        train_group([a], task, data, stacking="x")
    unstackable = dataclasses.replace(task, batchable=False)
    assert supports(task) and not supports(unstackable)
    with pytest.raises(ValueError, match="not batchable"):
        train_group([a], unstackable, data)
    assert list(train_group([], task, data)) == []


def test_bmm_and_vmap_forwards_agree(float64):
    task, data = load("digits-mlp")
    configs = group("digits-mlp", "sgdm", 4.0, 0.1)
    a = dict(train_group(configs, task, data, stacking="bmm"))
    b = dict(train_group(configs, task, data, stacking="vmap"))
    for c in configs:
        assert_same(a[c], b[c])
    cnn, cnn_data = load("mnist1d-cnn")
    [(_, r)] = train_group(group("mnist1d-cnn", "sgdm", 1.0, 0.1)[:1], cnn, cnn_data, stacking="bmm")
    assert r.status == "failed" and "stacking 'bmm' needs an MLP" in r.error
