"""Batched engine: every member equals its sequential run, up to rounding, for every batchable task, with weight
decay and augmentation, shared and mixed seeds, divergence (non-finite and exploding losses) and any chunking.

Both engines run in float64 here (``torch.set_default_dtype``; the engines cast inputs to the model's dtype), so
the comparison is not at the mercy of float32 reduction order, which differs between one model's ``addmm`` and the
stacked ``bmm`` and can grow over hundreds of steps. Tolerance: 1e-7 relative on every curve and final metric.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from budgetsched.bench.engines.batched import chunks_by_seed, supports, train_group
from budgetsched.bench.protocol.grid import TrialConfig
from budgetsched.bench.tasks import available_tasks, get_task
from budgetsched.bench.engines.train import train_trial

RTOL = 1e-7


pytestmark = pytest.mark.usefixtures("one_torch_thread")


_DATA: dict[str, object] = {}


def load(name):
    task = get_task(name)
    if name not in _DATA:
        _DATA[name] = task.load(None, None)
    return task, _DATA[name]


def group(task, optimizer, budget, lr, seeds=(0, 1, 2), with_diverging=False):
    """Mixed schedules, LRs and seeds in one (task, optimizer, budget) group; seeds repeat across schedules."""
    c = lambda s, lr_, seed, **p: TrialConfig(task, s, optimizer, budget, lr_, seed, tuple(p.items()))  # noqa: E731
    out = [c("rex", lr, seeds[0]), c("step", 3 * lr, seeds[1 % len(seeds)]), c("onecycle", lr, seeds[2 % len(seeds)]),
           c("plateau", lr, seeds[0], patience=1), c("linear", lr / 3, seeds[1 % len(seeds)])]
    if with_diverging:
        out.append(c("rex", 1e100, seeds[0]))  # overflows float64 within two steps
    return out


def assert_same(seq, bat):
    assert bat.status == seq.status and bat.steps == seq.steps and bat.error is None, (seq, bat)
    assert bat.curves.keys() == seq.curves.keys()
    for k in seq.curves:
        np.testing.assert_allclose(bat.curves[k], seq.curves[k], rtol=RTOL, atol=1e-12, err_msg=k)
    for f in ("val_loss", "val_metric", "test_loss", "test_metric"):
        a, b = getattr(seq, f), getattr(bat, f)
        assert (a is None) == (b is None), f
        if a is not None:
            assert b == pytest.approx(a, rel=RTOL, abs=1e-12), f


def check_equal(task, data, configs, chunk_size=64, stacking="auto"):
    batched = dict(train_group(configs, task, data, chunk_size=chunk_size, stacking=stacking))
    assert set(batched) == set(configs)
    for c in configs:
        assert_same(train_trial(c, task, data), batched[c])
    return batched


def flip_and_jitter(x, generator):
    """A test augmentation using the generator (random sign flip and noise per example)."""
    sign = torch.where(torch.rand(x.shape[0], 1, generator=generator, device=generator.device) < 0.5, -1.0, 1.0)
    return x * sign.to(x) + 0.01 * torch.randn(x.shape, generator=generator, device=generator.device).to(x)


# task, budget (a few dozen to a few hundred steps), sgdm lr, adam lr
CASES = [("mnist1d-mlp", 3.0, 0.1, 0.003), ("digits-mlp", 10.0, 0.1, 0.003), ("mnist1d-cnn", 2.0, 0.1, 0.003),
         ("digits-vae", 4.0, 0.03, 0.003), ("shakespeare-char", 3.0, 0.3, 0.003)]
OFFLINE = {"mnist1d-mlp", "mnist1d-cnn", "digits-mlp", "digits-vae", "shakespeare-char"}


def test_cases_cover_every_batchable_offline_task():
    batchable = {t for t in available_tasks() if supports(get_task(t))}
    assert OFFLINE <= batchable and {c[0] for c in CASES} == OFFLINE


@pytest.mark.parametrize("name,budget,sgd_lr,adam_lr", CASES, ids=[c[0] for c in CASES])
def test_batched_equals_sequential(float64, name, budget, sgd_lr, adam_lr):
    task, data = load(name)
    slow = name in ("mnist1d-cnn", "shakespeare-char", "digits-vae")
    for optimizer, lr in (("sgdm", sgd_lr), ("adam", adam_lr)):
        configs = group(name, optimizer, budget, lr, with_diverging=optimizer == "sgdm")
        if slow:  # the slowest models: four members per group keep the test quick
            configs = configs[1:5] if optimizer == "sgdm" else configs[:4]
        batched = check_equal(task, data, configs)
        statuses = {c.schedule if c.lr < 1e5 else "diverging": batched[c].status for c in configs}
        assert statuses.pop("diverging", "diverged") == "diverged"
        assert set(statuses.values()) == {"done"}, statuses


@pytest.mark.parametrize("optimizer,lr", [("sgdm", 0.1), ("adam", 0.003)])
def test_weight_decay_and_augmentation(float64, optimizer, lr):
    task, data = load("mnist1d-mlp")
    task = dataclasses.replace(task, weight_decay=5e-3, augment=flip_and_jitter)
    check_equal(task, data, group("mnist1d-mlp", optimizer, 2.0, lr))


def test_weight_decay_and_augmentation_under_vmap(float64):
    task, data = load("mnist1d-cnn")
    task = dataclasses.replace(task, weight_decay=5e-3, augment=flip_and_jitter)
    check_equal(task, data, group("mnist1d-cnn", "adam", 1.0, 0.003)[:3], stacking="vmap")


def test_exploding_member_is_stopped_like_sequentially(float64):
    """A member whose loss explodes (finite, > 10x its first loss) diverges at the same step as sequentially."""
    task, data = load("digits-mlp")
    configs = [TrialConfig("digits-mlp", "constant", "sgdm", 6.0, lr, 0) for lr in (1e4, 0.1)]
    batched = check_equal(task, data, configs)
    assert batched[configs[0]].status == "diverged" and batched[configs[1]].status == "done"
    assert 0 < batched[configs[0]].steps < 60


def test_members_are_independent_of_chunking_and_neighbours(float64):
    """A member's result does not depend on which others share its chunk (incl. a diverging one)."""
    task, data = load("digits-mlp")
    configs = group("digits-mlp", "adam", 10.0, 0.003)
    boom = TrialConfig("digits-mlp", "rex", "adam", 10.0, 1e3, 7)
    whole = dict(train_group(configs, task, data, chunk_size=8))
    pieces = dict(train_group([configs[0], boom, *configs[1:]], task, data, chunk_size=2))
    assert pieces[boom].status == "diverged"
    for c in configs:
        assert_same(whole[c], pieces[c])
        assert whole[c].wall_time > 0


def test_a_member_that_cannot_be_built_fails_alone(float64):
    task, data = load("digits-mlp")
    make = task.make_model

    def sometimes_broken():
        if torch.initial_seed() == 13:
            raise RuntimeError("no model for seed 13")
        return make()
    broken = dataclasses.replace(task, make_model=sometimes_broken)
    configs = group("digits-mlp", "sgdm", 4.0, 0.1)
    bad = TrialConfig("digits-mlp", "rex", "sgdm", 4.0, 0.1, 13)
    out = dict(train_group([*configs, bad], broken, data))
    assert out[bad].status == "failed" and "no model for seed 13" in out[bad].error
    for c in configs:
        assert_same(train_trial(c, task, data), out[c])


def test_chunks_keep_seeds_together():
    cs = [TrialConfig("t", "rex", "sgdm", 1, lr, seed) for seed in (2, 0, 1) for lr in (0.1, 0.3, 1.0)]
    chunks = chunks_by_seed(cs, 4)
    assert [len(c) for c in chunks] == [3, 3, 3]  # balanced: 3 chunks of at most 4, one seed each
    assert [{c.seed for c in ch} for ch in chunks] == [{0}, {1}, {2}]
    assert sum(chunks_by_seed(cs, 100), []) == sorted(cs, key=lambda c: c.seed)
    assert chunks_by_seed([], 4) == []


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
