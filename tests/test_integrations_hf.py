"""budgetsched.integrations.hf against the real Hugging Face Trainer and transformers' own schedulers.

The truth each test compares with is independent of the code under test: the closed form of ``Schedule`` (and
``Schedule.with_budget`` for a resume with another budget), and ``transformers.get_scheduler``.
"""
from __future__ import annotations

import importlib
import logging

import pytest
import torch

from _examples import load_example
from budgetsched import Schedule, available
from budgetsched.integrations.hf import BudgetCallback, BudgetTrainer, get_scheduler
from budgetsched.torch import BudgetScheduler, PlateauScheduler

transformers = pytest.importorskip("transformers")  # part of the dev extra: installed by make test
from transformers import Trainer, TrainerCallback, TrainingArguments  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PEAK = 3e-2  # the example's AdamW learning rate


def _example():
    return load_example("hf_trainer.py")


EXAMPLE = _example()


def _expected(schedule: Schedule, steps: range) -> list[float]:
    return [schedule(t) for t in steps]


# ------------------------------------------------------------------------------------------------- resume
@pytest.mark.parametrize("profile,schedule_args,save_at", [
    ("rex", {}, 4),
    ("linear", {"warmup_steps": 2, "min_lr": 1e-3}, 4),
    ("cosine", {"warmup_fraction": 0.25}, 1),  # the checkpoint falls inside the warmup: its rest is re-mapped
])
def test_resume_with_a_larger_max_steps_continues_without_jump_or_zero_tail(tmp_path, profile, schedule_args,
                                                                              save_at):
    out = str(tmp_path)
    _, first, lrs = EXAMPLE.train(max_steps=8, output_dir=out, save_steps=save_at, profile=profile, **schedule_args)
    planned = Schedule(profile, 8, PEAK, **schedule_args)
    assert lrs == pytest.approx(_expected(planned, range(8)), rel=1e-12)

    _, resumed, more = EXAMPLE.train(max_steps=16, output_dir=out, resume_from_checkpoint=f"{out}/checkpoint-{save_at}",
                                     profile=profile, budget_callback=BudgetCallback(strategy="continue"),
                                     **schedule_args)
    # the closed form of the same run with its budget moved
    truth = planned.with_budget(16, at_step=save_at, strategy="continue")
    assert len(more) == 16 - save_at
    assert more == pytest.approx(_expected(truth, range(save_at, 16)), rel=1e-12)
    assert more[0] == pytest.approx(lrs[save_at], rel=1e-12)  # no jump at the resume step
    assert min(more) > 0  # no zero-LR tail: the floor comes only at step 16
    assert resumed.budget_changes == [(save_at, 16)] and resumed.total_steps == 16


def test_without_the_callback_the_resumed_run_trains_at_lr_zero(tmp_path):
    # The defect the callback fixes, shown on the same Trainer run: the checkpoint's budget (8) comes back.
    out = str(tmp_path)
    EXAMPLE.train(max_steps=8, output_dir=out, save_steps=4)
    _, _, more = EXAMPLE.train(max_steps=16, output_dir=out, resume_from_checkpoint=f"{out}/checkpoint-4",
                               budget_callback=TrainerCallback())
    assert more[4:] == [0.0] * 8


def test_a_smaller_max_steps_compresses_the_rest(tmp_path):
    out = str(tmp_path)
    EXAMPLE.train(max_steps=16, output_dir=out, save_steps=4)
    _, _, more = EXAMPLE.train(max_steps=10, output_dir=out, resume_from_checkpoint=f"{out}/checkpoint-4")
    truth = Schedule("rex", 16, PEAK).with_budget(10, at_step=4, strategy="continue")  # the default for a shrink
    assert more == pytest.approx(_expected(truth, range(4, 10)), rel=1e-12)


def test_continuing_a_finished_run_warns_or_rewarms(tmp_path, caplog):
    out = str(tmp_path)
    EXAMPLE.train(max_steps=8, output_dir=out, save_steps=8)
    with caplog.at_level(logging.WARNING, logger="budgetsched"):
        _, _, flat = EXAMPLE.train(max_steps=12, output_dir=out, resume_from_checkpoint=f"{out}/checkpoint-8",
                                   budget_callback=BudgetCallback(strategy="continue"))
    assert flat == [0.0] * 4  # the end value, as the rule says ...
    warned = [r.getMessage() for r in caplog.records if r.name == "budgetsched" and r.levelno == logging.WARNING]
    assert len(warned) == 1 and "finished run" in warned[0] and "BudgetCallback(rewarm_steps=K" in warned[0]

    _, sched, rewarmed = EXAMPLE.train(max_steps=16, output_dir=out, resume_from_checkpoint=f"{out}/checkpoint-8",
                                       budget_callback=BudgetCallback(rewarm_steps=3, rewarm_peak=0.01))
    truth = Schedule("rex", 8, PEAK).with_budget(16, at_step=8, rewarm_steps=3, rewarm_peak=0.01)
    assert rewarmed == pytest.approx(_expected(truth, range(8, 16)), rel=1e-12)
    assert rewarmed[2] == pytest.approx(0.01) and min(rewarmed[1:]) > 0


def test_by_default_a_resume_with_a_larger_max_steps_rewarms(tmp_path, caplog):
    # The default (measured, docs/schedules.md): a budget that grows after the decay began re-warms to the peak
    # over max(warmup, 1) steps, then decays to the floor at the new end; the checkpoint records "rewarm".
    out = str(tmp_path)
    _, _, lrs = EXAMPLE.train(max_steps=8, output_dir=out, save_steps=4)
    _, resumed, more = EXAMPLE.train(max_steps=16, output_dir=out, resume_from_checkpoint=f"{out}/checkpoint-4")
    lr4 = PEAK * 2 * 0.5 / 1.5  # rex at z = 4/8
    assert more[0] == pytest.approx(lr4, rel=1e-12) == pytest.approx(lrs[4], rel=1e-12)  # step 4 keeps its LR
    # then rex from the peak at step 5 over [5, 16): lr(t) = PEAK * 2 (1 - z) / (2 - z), z = (t - 5) / 11
    hand = [PEAK * 2 * (1 - (t - 5) / 11) / (2 - (t - 5) / 11) for t in range(5, 16)]
    assert more[1:] == pytest.approx(hand, rel=1e-12)
    assert more == pytest.approx(_expected(Schedule("rex", 8, PEAK).with_budget(16, at_step=4, strategy="rewarm"),
                                           range(4, 16)), rel=1e-12)
    assert resumed.budget_changes == [(4, 16, 1, None)] and min(more) > 0
    # a finished run resumed with more steps re-warms too: no zero-LR tail, and no warning
    done = str(tmp_path / "finished")
    EXAMPLE.train(max_steps=8, output_dir=done, save_steps=8)
    with caplog.at_level(logging.WARNING, logger="budgetsched"):
        _, again, tail = EXAMPLE.train(max_steps=12, output_dir=done, resume_from_checkpoint=f"{done}/checkpoint-8")
    assert tail[0] == 0.0 and tail[1] == pytest.approx(PEAK) and min(tail[1:]) > 0
    assert again.budget_changes == [(8, 12, 1, None)]
    assert not [r for r in caplog.records if r.name == "budgetsched" and r.levelno >= logging.WARNING]


# ------------------------------------------------------------------------------------------------ fresh runs
def _trainer(tmp_path, scheduler_builder, callbacks=(), trainer_cls=Trainer, trainer_kwargs=None, **args):
    torch.manual_seed(0)
    model = EXAMPLE.TinyRegressor()
    kwargs = dict(trainer_kwargs or {})
    if scheduler_builder is not None:
        optimizer = torch.optim.AdamW(model.parameters(), lr=PEAK)
        kwargs["optimizers"] = (optimizer, scheduler_builder(optimizer))
    targs = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=16, report_to=[], use_cpu=True,
                              disable_tqdm=True, logging_strategy="no", **{"save_strategy": "no", **args})
    trainer = trainer_cls(model=model, args=targs, train_dataset=EXAMPLE.Pairs(), callbacks=list(callbacks), **kwargs)
    recorder = RecordLR()
    trainer.add_callback(recorder)
    return trainer, recorder


class RecordLR(TrainerCallback):
    def __init__(self):
        self.lrs = []

    def on_step_begin(self, args, state, control, optimizer=None, **kwargs):
        self.lrs.append(optimizer.param_groups[0]["lr"])


def test_fresh_run_gets_the_budget_and_warmup_ratio_of_the_training_arguments(tmp_path):
    # The scheduler was built with a guess (100 steps, no warmup); the run is 12 steps with a 25 % warmup.
    trainer, rec = _trainer(tmp_path, lambda opt: BudgetScheduler(opt, "rex", total_steps=100),
                            [BudgetCallback()], max_steps=12, warmup_steps=0.25)
    trainer.train()
    assert rec.lrs == pytest.approx(_expected(Schedule("rex", 12, PEAK, warmup_fraction=0.25), range(12)), rel=1e-12)


def test_the_callbacks_warmup_ratio_replaces_the_schedulers(tmp_path):
    trainer, rec = _trainer(tmp_path, lambda opt: BudgetScheduler(opt, "linear", total_steps=30, warmup_steps=5),
                            [BudgetCallback(warmup_ratio=0.5)], max_steps=10)
    trainer.train()
    assert rec.lrs == pytest.approx(_expected(Schedule("linear", 10, PEAK, warmup_fraction=0.5), range(10)), rel=1e-12)


def test_two_different_warmups_are_one_clear_error(tmp_path):
    trainer, _ = _trainer(tmp_path, lambda opt: BudgetScheduler(opt, "rex", total_steps=10, warmup_steps=3),
                          [BudgetCallback()], max_steps=10, warmup_steps=0.5)
    with pytest.raises(ValueError, match="built with 3 warmup steps but the training arguments ask for a warmup "
                                         "ratio of 0.5; give the warmup in one place"):
        trainer.train()


def test_a_scheduler_that_is_not_budgetsched_is_named(tmp_path):
    trainer, _ = _trainer(tmp_path, lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0),
                          [BudgetCallback()], max_steps=4)
    with pytest.raises(TypeError, match="torch.optim.lr_scheduler.LambdaLR"):
        trainer.train()


def test_callback_arguments_are_checked():
    with pytest.raises(ValueError, match="warmup_ratio"):
        BudgetCallback(warmup_ratio=1.5)
    with pytest.raises(ValueError, match="rewarm_peak .* needs rewarm_steps"):
        BudgetCallback(rewarm_peak=0.1)
    with pytest.raises(ValueError, match="rewarm_steps"):
        BudgetCallback(rewarm_steps=0)


# ---------------------------------------------------------------------------------------- Trainer builds it
def test_budget_trainer_builds_the_schedule_and_resumes_a_larger_budget(tmp_path):
    lr = 1e-2
    trainer, rec = _trainer(tmp_path, None, trainer_cls=BudgetTrainer, max_steps=8, warmup_steps=0.5,
                            learning_rate=lr, save_strategy="steps", save_steps=2)
    trainer.train()
    assert isinstance(trainer.lr_scheduler, BudgetScheduler)
    planned = Schedule("rex", 8, lr, warmup_fraction=0.5)
    assert rec.lrs == pytest.approx(_expected(planned, range(8)), rel=1e-12)

    # Resume from step 2, inside the warmup, with twice the steps: the warmup ratio stays a ratio (4 -> 8 steps).
    trainer, rec = _trainer(tmp_path, None, trainer_cls=BudgetTrainer, max_steps=16, warmup_steps=0.5,
                            learning_rate=lr)
    trainer.train(resume_from_checkpoint=str(tmp_path / "checkpoint-2"))
    truth = planned.with_budget(16, at_step=2)
    assert rec.lrs == pytest.approx(_expected(truth, range(2, 16)), rel=1e-12)
    ramp = rec.lrs[:6]  # steps 2..7: the warmup now ends at ceil(0.5 x 16) = 8, the peak at step 7
    assert all(a < b for a, b in zip(ramp, ramp[1:])) and ramp[-1] == pytest.approx(lr) and min(rec.lrs) > 0


def test_budget_trainer_takes_a_schedule_and_its_parameters(tmp_path):
    trainer, rec = _trainer(tmp_path, None, trainer_cls=BudgetTrainer, max_steps=10, learning_rate=0.1,
                            trainer_kwargs={"schedule": "exp", "schedule_kwargs": {"gamma": -2, "min_lr_ratio": 0.1}})
    trainer.train()
    assert rec.lrs == pytest.approx(_expected(Schedule("exp", 10, 0.1, gamma=-2, min_lr_ratio=0.1), range(10)),
                                    rel=1e-12)
    with pytest.raises(ValueError, match="unknown schedule 'nope'"):
        _trainer(tmp_path, None, trainer_cls=BudgetTrainer, max_steps=10, trainer_kwargs={"schedule": "nope"})


# ------------------------------------------------------------------------------------------- get_scheduler
def _opt(lr=0.1):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def _run(sched, n):
    opt = sched.optimizer
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


SAME_SHAPES = [("linear", None, None), ("cosine", None, None),
               ("polynomial", {"power": 1.0, "lr_end": 1e-3}, {"power": 1.0, "min_lr": 1e-3}),
               ("cosine_with_min_lr", {"min_lr_rate": 0.1}, {"min_lr_rate": 0.1})]


@pytest.mark.parametrize("name,kwargs,ours_kwargs,warmup", [
    *[(*case, w) for case in SAME_SHAPES for w in (0, 5)],
    ("constant_with_warmup", None, None, 5),  # transformers requires a warmup for it
])
def test_get_scheduler_equals_transformers_where_the_shapes_coincide(name, kwargs, ours_kwargs, warmup):
    total = 40
    hf = transformers.get_scheduler(name, _opt(), num_warmup_steps=warmup, num_training_steps=total,
                                    scheduler_specific_kwargs=kwargs)
    ours = get_scheduler(name, _opt(), num_warmup_steps=warmup, num_training_steps=total,
                         scheduler_specific_kwargs=ours_kwargs)
    theirs, mine = _run(hf, total + 1), _run(ours, total)
    # after the warmup the same values; during it, budgetsched's ramp never starts at 0: its step t is their t + 1
    assert mine[warmup:] == pytest.approx(theirs[warmup:total], rel=1e-12, abs=1e-15)
    assert mine[:warmup] == pytest.approx(theirs[1:warmup + 1], rel=1e-12)


def test_get_scheduler_builds_every_budgetsched_profile():
    needs = {"refined": {"grad_norms": [3.0, 2.0, 2.5, 1.0, 0.5] * 4}, "plateau": {"patience": 2}}
    for name in available():
        kwargs = needs.get(name, {})
        warmup = 0 if name == "plateau" else 3
        sched = get_scheduler(name, _opt(0.2), num_warmup_steps=warmup, num_training_steps=20,
                              scheduler_specific_kwargs=kwargs)
        if name == "plateau":
            assert isinstance(sched, PlateauScheduler) and sched.total_steps == 20
            continue
        truth = Schedule(name, 20, 0.2, warmup_steps=3, **kwargs)
        assert _run(sched, 20) == pytest.approx(list(truth.values()), rel=1e-12, abs=1e-15), name


def test_get_scheduler_names_ratios_and_enums():
    from transformers import SchedulerType

    s = get_scheduler(SchedulerType.COSINE, _opt(), num_warmup_steps=0.1, num_training_steps=100)
    assert s.schedule.name == "cosine" and s.schedule.warmup_steps == 10 and s.schedule.warmup_fraction == 0.1
    p = get_scheduler("reduce_lr_on_plateau", _opt())
    assert isinstance(p, PlateauScheduler) and p.patience == 10  # torch's default, as transformers'
    assert get_scheduler("rex_beta", _opt(), num_training_steps=10).schedule.name == "rex-beta"


@pytest.mark.parametrize("call,message", [
    (dict(name="inverse_sqrt", num_training_steps=10), "'inverse_sqrt' is a transformers schedule with no "
                                                      "budgetsched counterpart: use transformers.get_scheduler"),
    (dict(name="rex"), "'rex' requires num_training_steps"),
    (dict(name="rex", num_training_steps=10, scheduler_specific_kwargs={"total_steps": 5}),
     "give total_steps as get_scheduler's num_training_steps"),
    (dict(name="plateau", num_warmup_steps=2, scheduler_specific_kwargs={"patience": 1}),
     "num_warmup_steps .* does not apply to plateau"),
    (dict(name="rex", num_training_steps=10, num_warmup_steps=2.5), "a whole number of steps or a ratio"),
    (dict(name="rex", num_training_steps=10, num_warmup_steps=-1), "num_warmup_steps must be"),
    (dict(name="rex", num_training_steps=10, num_warmup_steps=float("inf")), "num_warmup_steps must be"),
    (dict(name="rex", num_training_steps=10, num_warmup_steps=10), "warmup_steps must be < total_steps"),
    (dict(name="nope", num_training_steps=10), "unknown schedule 'nope'"),
    (dict(name="exp", num_training_steps=10, scheduler_specific_kwargs={"gama": 1}), "gama"),
])
def test_get_scheduler_errors_are_one_clear_message(call, message):
    call = dict(call)
    with pytest.raises(ValueError, match=message):
        get_scheduler(call.pop("name"), _opt(), **call)


def test_hf_extra_hint_when_transformers_is_missing(monkeypatch):
    import sys

    from budgetsched import MissingExtraError

    monkeypatch.setitem(sys.modules, "transformers", None)
    monkeypatch.delitem(sys.modules, "budgetsched.integrations.hf")
    with pytest.raises(MissingExtraError, match=r"pip install 'budgetsched\[hf\]'") as e:
        importlib.import_module("budgetsched.integrations.hf")
    assert isinstance(e.value, ImportError) and e.value.extra == "hf"



# ------------------------------------------------------------------------------------------------- time budget
class _Tick(TrainerCallback):
    """Advances a fake clock by 0.1 s +-30 % each training step."""

    def __init__(self, clock) -> None:
        import random

        self.clock, self.rng, self.dts = clock, random.Random(0), []

    def on_step_begin(self, args, state, control, **kwargs):  # noqa: ANN001
        dt = 0.1 * (1 + self.rng.uniform(-0.3, 0.3))
        self.clock[0] += dt
        self.dts.append(dt)


def test_time_budget_stops_the_trainer_at_a_fake_clock_deadline_with_the_lr_at_its_floor():
    clock = [0.0]
    tick = _Tick(clock)
    callback = BudgetCallback(time_budget="10s", clock=lambda: clock[0])
    trainer, sched, lrs = EXAMPLE.train(max_steps=10_000, budget_callback=callback, callbacks=[tick],
                                        warmup_fraction=0.05)
    assert sched.budget_unit == "seconds" and sched.done
    assert trainer.state.global_step == len(lrs) < 10_000  # stopped by the deadline, not by max_steps
    counted = sum(tick.dts[1:])  # the clock starts at the first scheduler step
    assert 10.0 <= counted < 10.0 + tick.dts[-1]  # within one step of the deadline
    assert lrs[-1] <= 0.01 * PEAK  # the last step ran within 1 % of the peak above the floor (0)
    assert max(lrs) <= PEAK and lrs[0] < 0.01 * PEAK  # warmed up from (nearly) 0, as a fraction of the time


def test_time_budget_errors():
    with pytest.raises(ValueError, match="time_budget must be seconds"):
        BudgetCallback(time_budget="ten minutes")
    with pytest.raises(ValueError, match="clock must be a zero-argument callable"):
        BudgetCallback(time_budget=5, clock=3.0)


@pytest.mark.parametrize("strategy,kw", [("extend", {}), ("rewarm", {"rewarm_steps": 3})])
def test_resume_with_a_strategy_follows_its_closed_form(tmp_path, strategy, kw):
    out = str(tmp_path)
    EXAMPLE.train(max_steps=8, output_dir=out, save_steps=4)
    callback = BudgetCallback(strategy=strategy, **kw)
    _, resumed, more = EXAMPLE.train(max_steps=16, output_dir=out, resume_from_checkpoint=f"{out}/checkpoint-4",
                                     budget_callback=callback)
    truth = Schedule("rex", 8, PEAK).with_budget(16, at_step=4, strategy=strategy, **kw)
    assert more == pytest.approx(_expected(truth, range(4, 16)), rel=1e-12)
    assert resumed.budget_changes == truth.budget_changes
    with pytest.raises(ValueError, match="strategy must be one of 'continue', 'rewarm', 'extend' or None, got 'jump'"):
        BudgetCallback(strategy="jump")
