"""Issue 22, library side: each silent or misleading case is now a clear message or the right behaviour."""
from __future__ import annotations

import logging
import types

import pytest
import torch

from budgetsched import Schedule
from budgetsched.torch import BudgetScheduler

from _lr_trace import lr_trace

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _opt(*lrs, kind="sgd"):
    groups = [{"params": [torch.zeros(2, requires_grad=True)], "lr": lr} for lr in lrs]
    return torch.optim.SGD(groups, momentum=0.9) if kind == "sgd" else torch.optim.AdamW(groups)


_steps = lr_trace  # the LR of every group at each step


@pytest.mark.parametrize("build,match", [
    (lambda: Schedule("rex", 100, warmup_step=5),
     r"unknown keyword 'warmup_step'.*Did you mean 'warmup_steps' \(an argument of Schedule\)\?.*profile 'rex': delay;"),
    (lambda: Schedule("exp", 100, gama=-3), r"Did you mean 'gamma' \(a parameter of profile 'exp'\)"),
    (lambda: BudgetScheduler(_opt(0.1), "rex", total_steps=10, min_lr_ration=0.1),
     r"Did you mean 'min_lr_ratio' \(an argument of BudgetScheduler\)"),
    (lambda: BudgetScheduler(_opt(0.1), "wsd", total_steps=10, fractoin=0.2),
     r"Did you mean 'fraction' \(a parameter of profile 'wsd'\)"),
])
def test_misspelled_keywords_get_a_did_you_mean_naming_whose_keyword_it_is(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_stepping_past_the_budget_warns_once_through_logging(caplog):
    opt = _opt(0.1)
    sched = BudgetScheduler(opt, "linear", total_steps=5)
    with caplog.at_level(logging.WARNING, logger="budgetsched"):
        _steps(opt, sched, 5)  # the budget: no warning
        assert not caplog.records and sched.done
        _steps(opt, sched, 4)  # four optimizer steps past it: one warning
    assert len(caplog.records) == 1 and "stepped past the budget (total_steps=5)" in caplog.text


@pytest.mark.parametrize("profile,kind", [("rex", "sgd"), ("onecycle", "adamw")])
def test_optimizer_first_resume_order_continues_at_the_uninterrupted_lr(profile, kind):
    opt = _opt(0.1, 0.02, kind=kind)
    sched = BudgetScheduler(opt, profile, total_steps=30, warmup_steps=3)
    _steps(opt, sched, 12)
    opt_state, sched_state = opt.state_dict(), sched.state_dict()
    reference = _steps(opt, sched, 10)
    key = "betas" if kind == "adamw" else "momentum"
    mom = opt.param_groups[0][key]

    opt2 = _opt(0.1, 0.02, kind=kind)
    opt2.load_state_dict(opt_state)  # the order many hand-written loops use: optimizer, new scheduler, its state
    sched2 = BudgetScheduler(opt2, profile, total_steps=30, warmup_steps=3)
    sched2.load_state_dict(sched_state)
    assert _steps(opt2, sched2, 10) == reference
    assert opt2.param_groups[0][key] == mom


def test_last_epoch_resume_with_another_budget_says_the_lr_jumps(caplog):
    opt = _opt(0.1)
    sched = BudgetScheduler(opt, "rex", total_steps=30)
    _steps(opt, sched, 10)
    state = opt.state_dict()
    same, other = _opt(0.1), _opt(0.1)
    same.load_state_dict(state)
    other.load_state_dict(state)
    with caplog.at_level(logging.WARNING, logger="budgetsched"):
        BudgetScheduler(same, "rex", total_steps=30, last_epoch=9)  # the run's own budget: continuous, silent
        assert not caplog.records
        BudgetScheduler(other, "rex", total_steps=60, last_epoch=9)
    assert len(caplog.records) == 1 and "another budget or schedule" in caplog.text and "set_total_steps" in caplog.text


def test_repr_of_a_rebudgeted_schedule_shows_the_changes():
    s = Schedule("linear", 100, 0.1)
    assert "budget_changes" not in repr(s)
    s2 = s.with_budget(200, at_step=40, strategy="continue").with_budget(300, at_step=150, strategy="rewarm",
                                                               rewarm_steps=5)
    text = repr(s2)
    assert "total_steps=300" in text and "initial_total_steps=100" in text
    assert "budget_changes=[at 40: 200, at 150: 300 (rewarm 5)]" in text


def test_polynomial_takes_transformers_parameter_names():
    transformers = pytest.importorskip("transformers")
    from budgetsched.integrations.hf import get_scheduler

    kwargs = {"lr_end": 1e-4, "power": 2.0}
    # transformers' polynomial reads the optimizer's default lr (optimizer.defaults["lr"]): give it one
    ours_opt, theirs_opt = (torch.optim.SGD([torch.zeros(2, requires_grad=True)], lr=0.1, momentum=0.9)
                            for _ in range(2))
    ours = get_scheduler("polynomial", ours_opt, num_warmup_steps=2, num_training_steps=20,
                         scheduler_specific_kwargs=kwargs)
    theirs = transformers.get_scheduler("polynomial", theirs_opt, num_warmup_steps=2, num_training_steps=20,
                                        scheduler_specific_kwargs=kwargs)
    a, b = _steps(ours_opt, ours, 25), _steps(theirs_opt, theirs, 25)
    assert [x[0] for x in a[2:]] == pytest.approx([x[0] for x in b[2:]], rel=1e-12)  # equal after the warmup
    with pytest.raises(ValueError, match="give the floor once"):
        get_scheduler("polynomial", _opt(0.1), num_training_steps=20, scheduler_specific_kwargs={"lr_end": 0.0,
                                                                                                 "min_lr": 0.0})


def test_budget_trainer_messages_name_its_own_option(caplog):
    pytest.importorskip("transformers")
    from transformers import TrainingArguments

    from _examples import load_example
    from budgetsched.integrations.hf import BudgetCallback, BudgetTrainer

    ex = load_example("hf_trainer.py")
    args = TrainingArguments(output_dir="unused", max_steps=8, report_to=[], use_cpu=True, save_strategy="no")
    trainer = BudgetTrainer(model=ex.TinyRegressor(), args=args, train_dataset=ex.Pairs(), schedule="rex",
                            strategy="continue")  # the default re-warms a finished run; continue warns
    callback = next(cb for cb in trainer.callback_handler.callbacks if isinstance(cb, BudgetCallback))
    opt = _opt(0.1)
    finished = BudgetScheduler(opt, "rex", total_steps=4)
    _steps(opt, finished, 4)
    state = types.SimpleNamespace(max_steps=8, global_step=4)
    with caplog.at_level(logging.WARNING, logger="budgetsched"):
        callback.on_train_begin(args, state, None, lr_scheduler=finished)
    assert "BudgetTrainer(rewarm_steps=K" in caplog.text and "BudgetCallback(" not in caplog.text


def test_a_resume_without_the_callback_that_trains_at_the_end_lr_is_reported(tmp_path, caplog):
    pytest.importorskip("transformers")
    from transformers import TrainerCallback

    from _examples import load_example

    ex = load_example("hf_trainer.py")
    out = str(tmp_path)
    ex.train(max_steps=8, output_dir=out, save_steps=4)
    with caplog.at_level(logging.WARNING, logger="budgetsched"):  # no BudgetCallback: the checkpoint's budget (8)
        _, _, lrs = ex.train(max_steps=16, output_dir=out, resume_from_checkpoint=f"{out}/checkpoint-4",
                             budget_callback=TrainerCallback())
    assert lrs[-1] == 0.0  # the new steps train at the end LR ...
    past = [r for r in caplog.records if "stepped past the budget (total_steps=8)" in r.getMessage()]
    assert len(past) == 1 and "BudgetCallback" in past[0].getMessage()  # ... and that is said once, loudly
