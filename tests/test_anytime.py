"""Anytime branching: every branch equals a separately trained run of its budget (float64, bit for bit here),
the model-steps trained match the formula, and a study killed mid-trunk resumes from its snapshots."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from budgetsched.bench.engines.anytime import anytime_model_steps, branch_points, train_anytime, trunk_plan
from budgetsched.bench.engines.batched import train_group
from budgetsched.bench.protocol.grid import TrialConfig
from budgetsched.bench.tasks import get_task
from budgetsched.bench.engines.train import plan_trial, train_trial

pytestmark = pytest.mark.usefixtures("one_torch_thread")

WSD = (("fraction", 0.2), ("warmup_steps", 5))
BUDGETS = (10.0, 25.0, 50.0, 100.0)


@pytest.fixture(scope="module")
def small():
    task = dataclasses.replace(get_task("digits-mlp"), max_epochs=10, batch_size=45)  # 20 steps an epoch
    return task, task.load(None, None)


def grid(params=WSD, schedule="wsd", lrs=(0.1, 0.3), seeds=(0, 1), optimizer="sgdm"):
    return [TrialConfig("digits-mlp", schedule, optimizer, b, lr, s, params) for b in BUDGETS for lr in lrs
            for s in seeds]


def same(a, b, rel=0.0):
    """Equal results; bit for bit when both came from the same kind of model container (rel=0)."""
    assert (a.status, a.steps) == (b.status, b.steps)
    assert a.curves.keys() == b.curves.keys()
    for k in a.curves:
        assert a.curves[k] == pytest.approx(b.curves[k], rel=rel, abs=0), k
    assert [a.val_loss, a.val_metric, a.test_loss, a.test_metric] == pytest.approx(
        [b.val_loss, b.val_metric, b.test_loss, b.test_metric], rel=rel, abs=0)


@pytest.mark.parametrize("optimizer,cooldown", [("sgdm", "linear"), ("adam", "1-sqrt")])
def test_each_branch_equals_a_separate_run(float64, small, optimizer, cooldown):
    task, data = small
    cs = grid((("cooldown", cooldown), *WSD), optimizer=optimizer, lrs=(0.1, 0.3) if optimizer == "sgdm" else
              (0.003, 0.01))
    branched = dict(train_anytime(cs, task, data))
    for b in BUDGETS:
        separate = dict(train_group([c for c in cs if c.budget == b], task, data))
        for c in separate:
            same(branched[c], separate[c])


def test_augmented_and_sequential_branches(float64, small):
    """Augmentation streams are part of the snapshot; a task that cannot be stacked branches one model at a time."""
    task, data = small

    def jitter(x, g):
        return x + 0.05 * torch.randn(x.shape, generator=g, device=g.device).to(x)
    aug = dataclasses.replace(task, augment=jitter)
    cs = grid(lrs=(0.3,), seeds=(2,))
    branched = dict(train_anytime(cs, aug, data))
    for c in cs:
        same(branched[c], dict(train_group([c], aug, data))[c])  # stacked container: bit for bit
        same(branched[c], train_trial(c, aug, data), rel=1e-9)  # one model: rounding only
    seq = dataclasses.replace(aug, batchable=False)
    for c, r in train_anytime(cs, seq, data):
        same(r, train_trial(c, seq, data))


def test_model_steps_match_the_formula(small):
    task, data = small
    cs = grid()
    counter = [0]
    list(train_anytime(cs, task, data, counter=counter))
    plans = {c: plan_trial(c, task, len(data.train_y)) for c in cs if (c.lr, c.seed) == (0.1, 0)}
    longest = max(plans, key=lambda c: c.budget)
    points = branch_points(plans, trunk_plan(longest, plans[longest].total_steps))
    assert [points[c] for c in sorted(plans, key=lambda c: c.budget)] == [17, 41, 81, 161]  # cooldown starts
    with_branching, separate = anytime_model_steps([p.total_steps for p in plans.values()], list(points.values()))
    assert (with_branching, separate) == (161 + 3 + 9 + 19 + 39, 370)
    assert counter[0] == 4 * with_branching  # four trunks (2 LRs x 2 seeds)
    # the figure: 20 % cooldowns over the paper's six budgets cost 0.8 + 0.2 x 1.91 full runs
    totals = [round(1000 * b / 100) for b in (1, 5, 10, 25, 50, 100)]
    assert anytime_model_steps(totals, [round(0.8 * t) for t in totals])[0] == pytest.approx(1182, abs=2)


def test_kill_mid_trunk_then_resume_from_snapshots(small, tmp_path):
    task, data = small
    cs = grid()
    whole = dict(train_anytime(cs, task, data))

    class Killed(Exception):
        pass
    seen = [0]

    def kill_after(n):
        seen[0] += n
        if seen[0] > 4 * 100:  # past the 50 % branch point (81) of four trunks, before 161
            raise Killed
    with pytest.raises(Killed):
        list(train_anytime(cs, task, data, checkpoint_dir=tmp_path, on_epoch=kill_after))
    assert len(list(tmp_path.glob("*.pt"))) == 4 * 3  # snapshots at 17, 41 and 81 for each trunk
    counter = [0]
    resumed = dict(train_anytime(cs, task, data, checkpoint_dir=tmp_path, counter=counter))
    for c in cs:
        same(resumed[c], whole[c])
    assert counter[0] == 4 * ((161 - 81) + 3 + 9 + 19 + 39)  # the trunk resumed at its last snapshot


def test_closed_form_only(small):
    task, data = small
    with pytest.raises(ValueError, match="plateau cannot branch"):
        list(train_anytime([TrialConfig("digits-mlp", "plateau", "sgdm", 10.0, 0.1, 0, (("patience", 2),))],
                           task, data))


@pytest.mark.parametrize("schedule,params,shares", [
    ("wsd", (("fraction", 0.2),), True),
    ("wsd", (("fraction", 0.2), ("warmup_steps", 20)), True),
    ("step", (), True),            # constant until its first milestone
    ("constant", (), True),
    ("linear", (("delay", 0.5),), True),
    ("rex", (), False),            # decays from the first step: nothing to share
    ("linear", (), False),
    ("cosine", (), False),
    ("wsd", (("warmup_fraction", 0.1),), False),  # a warmup that scales with the budget
])
def test_which_schedules_share_a_prefix_across_budgets(schedule, params, shares):
    from budgetsched.bench.engines.anytime import shares_prefix

    assert shares_prefix(schedule, params) is shares


def test_anytime_studies_train_schedules_without_a_shared_prefix_as_usual():
    from budgetsched.bench.execution.runners import make_chunks

    configs = [TrialConfig("digits-mlp", s, "sgdm", b, 0.1, seed, schedule_params=p)
               for s, p in (("rex", ()), ("wsd", (("fraction", 0.2),))) for b in (25.0, 100.0) for seed in (0, 1)]
    kinds = {(kind, c.schedule) for kind, chunk in make_chunks(configs, "batched", 64, anytime=True) for c in chunk}
    assert kinds == {("batched", "rex"), ("anytime", "wsd")}
