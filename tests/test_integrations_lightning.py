"""budgetsched.integrations.lightning against real Lightning runs: resume with a larger max_epochs is continuous.

The truth is the closed form: ``Schedule`` for a fresh run, ``Schedule.with_budget`` for a resumed one.
"""
from __future__ import annotations

import logging

import pytest
import torch

from _examples import load_example
from budgetsched import Schedule

L = pytest.importorskip("lightning.pytorch")  # part of the dev extra: installed by make test

from budgetsched.integrations.lightning import BudgetCallback, lr_scheduler_config  # noqa: E402
from budgetsched.torch import BudgetScheduler, PlateauScheduler  # noqa: E402

pytestmark = [pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.filterwarnings("ignore::UserWarning"),  # Lightning's notes on workers, logging, ...
              pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore:.*LeafSpec")]  # lightning's own use of a torch API it deprecated

STEPS = 5  # optimizer steps per epoch of the example (80 examples, batch 16)
PEAK = 0.03


def _example():
    return load_example("lightning_loop.py")


EXAMPLE = _example()


@pytest.mark.parametrize("profile,schedule_args,resume_epoch", [
    ("rex", {}, 1),
    ("linear", {"min_lr": 1e-3, "warmup_steps": 2}, 1),
    ("cosine", {"warmup_fraction": 0.6}, 1),  # the checkpoint (step 5) falls inside the warmup (6 steps)
    ("rex", {}, 2),  # resumed later in the run: 3 of 4 epochs done
])
def test_resume_with_a_larger_max_epochs_continues_without_jump_or_zero_tail(tmp_path, profile, schedule_args,
                                                                             resume_epoch):
    out = str(tmp_path)
    first_epochs = 2 if resume_epoch == 1 else 4
    _, lrs = EXAMPLE.train(first_epochs, out, profile=profile, **schedule_args)
    planned = Schedule(profile, first_epochs * STEPS, PEAK, **schedule_args)
    assert lrs == pytest.approx([planned(t) for t in range(first_epochs * STEPS)], rel=1e-12)

    at = resume_epoch * STEPS
    new_total = 2 * first_epochs * STEPS
    trainer, more = EXAMPLE.train(2 * first_epochs, out, ckpt_path=f"{out}/epoch={resume_epoch - 1}.ckpt",
                                  profile=profile, budget_callback=BudgetCallback(strategy="continue"),
                                  **schedule_args)
    truth = planned.with_budget(new_total, at_step=at, strategy="continue")
    assert len(more) == new_total - at
    assert more == pytest.approx([truth(t) for t in range(at, new_total)], rel=1e-12)
    assert more[0] == pytest.approx(lrs[at], rel=1e-12)  # no jump at the resume step
    assert min(more) > 0  # no zero-LR tail
    sched = trainer.lr_scheduler_configs[0].scheduler
    assert sched.budget_changes == [(at, new_total)]


def test_without_the_callback_the_resumed_run_trains_at_lr_zero(tmp_path):
    out = str(tmp_path)
    EXAMPLE.train(2, out)
    _, more = EXAMPLE.train(4, out, ckpt_path=f"{out}/epoch=0.ckpt", budget_callback=L.Callback())
    assert more[STEPS:] == [0.0] * 2 * STEPS  # the checkpoint's budget (10 steps) came back


def test_continuing_a_finished_run_warns_or_rewarms(tmp_path, caplog):
    out = str(tmp_path)
    EXAMPLE.train(2, out)
    with caplog.at_level(logging.WARNING, logger="budgetsched"):
        _, flat = EXAMPLE.train(3, out, ckpt_path=f"{out}/epoch=1.ckpt",
                                budget_callback=BudgetCallback(strategy="continue"))
    assert flat == [0.0] * STEPS
    warned = [r.getMessage() for r in caplog.records if r.name == "budgetsched" and r.levelno == logging.WARNING]
    assert len(warned) == 1 and "finished run (step 10 of 10)" in warned[0] and "rewarm_steps=K" in warned[0]

    _, rewarmed = EXAMPLE.train(4, out, ckpt_path=f"{out}/epoch=1.ckpt", budget_callback=BudgetCallback(rewarm_steps=4))
    truth = Schedule("rex", 10, PEAK).with_budget(20, at_step=10, rewarm_steps=4)
    assert rewarmed == pytest.approx([truth(t) for t in range(10, 20)], rel=1e-12)
    assert rewarmed[3] == pytest.approx(PEAK)


def test_by_default_a_resume_with_more_epochs_rewarms(tmp_path, caplog):
    # The default (docs/schedules.md): a budget that grows after the decay began re-warms to the peak over
    # max(warmup, 1) steps, then decays to the floor at the new end; the checkpoint records "rewarm".
    out = str(tmp_path)
    _, lrs = EXAMPLE.train(2, out)
    trainer, more = EXAMPLE.train(4, out, ckpt_path=f"{out}/epoch=0.ckpt")
    assert more[0] == pytest.approx(PEAK * 2 * 0.5 / 1.5, rel=1e-12) == pytest.approx(lrs[5], rel=1e-12)
    # rex from the peak at step 6 over [6, 20): PEAK * 2 (1 - z) / (2 - z), z = (t - 6) / 14
    assert more[1:] == pytest.approx([PEAK * 2 * (1 - (t - 6) / 14) / (2 - (t - 6) / 14) for t in range(6, 20)],
                                     rel=1e-12)
    assert trainer.lr_scheduler_configs[0].scheduler.budget_changes == [(5, 20, 1, None)] and min(more) > 0
    # a finished run continued with more epochs re-warms too: no zero-LR tail, no warning
    done = str(tmp_path / "finished")
    EXAMPLE.train(2, done)
    with caplog.at_level(logging.WARNING, logger="budgetsched"):
        _, tail = EXAMPLE.train(3, done, ckpt_path=f"{done}/epoch=1.ckpt")
    assert tail[0] == 0.0 and tail[1] == pytest.approx(PEAK) and min(tail[1:]) > 0
    assert not [r for r in caplog.records if r.name == "budgetsched" and r.levelno >= logging.WARNING]


def test_warmup_ratio_of_the_callback_on_a_fresh_run(tmp_path):
    _, lrs = EXAMPLE.train(4, str(tmp_path), budget_callback=BudgetCallback(warmup_ratio=0.25), profile="linear")
    truth = Schedule("linear", 20, PEAK, warmup_fraction=0.25)
    assert lrs == pytest.approx([truth(t) for t in range(20)], rel=1e-12)


class PerEpoch(EXAMPLE.Regressor):
    """A scheduler stepped once per epoch, its budget in epochs."""

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=0.1)
        scheduler = BudgetScheduler(optimizer, "rex", total_steps=self.trainer.max_epochs)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}


def _fit_per_epoch(out, max_epochs, ckpt_path=None):
    rec = EXAMPLE.RecordLR()
    ckpt = L.callbacks.ModelCheckpoint(dirpath=out, filename="{epoch}", save_top_k=-1, every_n_epochs=1)
    trainer = L.Trainer(max_epochs=max_epochs, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[rec, ckpt, BudgetCallback()])
    trainer.fit(PerEpoch(), EXAMPLE.data(), ckpt_path=ckpt_path)
    return rec.lrs[::STEPS]  # one LR per epoch


def test_a_scheduler_stepped_per_epoch_gets_its_budget_in_epochs(tmp_path):
    out = str(tmp_path)
    assert _fit_per_epoch(out, 4) == pytest.approx([Schedule("rex", 4, 0.1)(e) for e in range(4)], rel=1e-12)
    more = _fit_per_epoch(out, 8, ckpt_path=f"{out}/epoch=1.ckpt")
    truth = Schedule("rex", 4, 0.1).with_budget(8, at_step=2)
    assert more == pytest.approx([truth(e) for e in range(2, 8)], rel=1e-12) and min(more) > 0


def test_lr_scheduler_config_and_its_errors():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    config = lr_scheduler_config(opt, "rex", total_steps=50, warmup_fraction=0.1)
    assert config["interval"] == "step" and config["frequency"] == 1
    assert isinstance(config["scheduler"], BudgetScheduler) and config["scheduler"].schedule.warmup_steps == 5
    plateau = lr_scheduler_config(opt, "plateau", monitor="val_loss", patience=3)
    assert isinstance(plateau["scheduler"], PlateauScheduler) and plateau["monitor"] == "val_loss"
    assert plateau["interval"] == "epoch"
    with pytest.raises(ValueError, match="give monitor="):
        lr_scheduler_config(opt, "plateau", patience=3)
    with pytest.raises(ValueError, match="monitor= is for plateau only"):
        lr_scheduler_config(opt, "rex", total_steps=5, monitor="val_loss")
    with pytest.raises(ValueError, match="give the trainer"):
        lr_scheduler_config(opt, "rex")
    with pytest.raises(ValueError, match="unknown schedule 'nope'"):
        lr_scheduler_config(opt, "nope", total_steps=5)


class Infinite(EXAMPLE.Regressor):
    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=0.1)
        return {"optimizer": optimizer, "lr_scheduler": lr_scheduler_config(optimizer, "rex", self.trainer)}


class NotOurs(EXAMPLE.Regressor):
    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=0.1)
        return {"optimizer": optimizer, "lr_scheduler": torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: 1.0)}


def _fit(module, **kw):
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False, callbacks=[BudgetCallback()], **kw)
    trainer.fit(module, EXAMPLE.data())


def test_user_errors_are_one_clear_message():
    with pytest.raises(ValueError, match="no finite length .* set max_epochs or max_steps"):
        _fit(Infinite(), max_epochs=-1)
    with pytest.raises(ValueError, match=r"found no budgetsched scheduler among the trainer's LR schedulers "
                                         r"\(LambdaLR\)"):
        _fit(NotOurs(), max_epochs=1)
    with pytest.raises(ValueError, match="rewarm_steps"):
        BudgetCallback(rewarm_steps=-2)


class _Tick(L.Callback):
    """Advances a fake clock by 0.1 s +-30 % each training batch."""

    def __init__(self, clock) -> None:
        import random

        self.clock, self.rng, self.dts = clock, random.Random(0), []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):  # noqa: ANN001
        dt = 0.1 * (1 + self.rng.uniform(-0.3, 0.3))
        self.clock[0] += dt
        self.dts.append(dt)


def test_time_budget_stops_lightning_at_a_fake_clock_deadline_with_the_lr_at_its_floor(tmp_path):
    clock = [0.0]
    tick = _Tick(clock)
    callback = BudgetCallback(time_budget=30, clock=lambda: clock[0])
    trainer, lrs = EXAMPLE.train(1000, str(tmp_path), budget_callback=callback, callbacks=[tick], min_lr=1e-3)
    sched = trainer.lr_scheduler_configs[0].scheduler
    assert sched.budget_unit == "seconds" and sched.done and trainer.global_step == len(lrs) < 5000
    counted = sum(tick.dts)  # counted from train start
    assert 30.0 <= counted < 30.0 + tick.dts[-1]  # stopped within one step of the deadline
    assert lrs[-1] - 1e-3 <= 0.01 * (PEAK - 1e-3)  # the last step within 1 % of the peak above the floor


def test_time_budget_follows_trainer_max_time(tmp_path):
    trainer, lrs = EXAMPLE.train(2, str(tmp_path), max_time={"hours": 1})
    sched = trainer.lr_scheduler_configs[0].scheduler
    assert sched.budget_unit == "seconds" and 3500 < sched.schedule.total_steps / 1e6 <= 3600
    assert lrs[0] == pytest.approx(PEAK, rel=1e-3) and not sched.done


def test_resume_with_the_rewarm_strategy_follows_its_closed_form(tmp_path):
    out = str(tmp_path)
    EXAMPLE.train(2, out)
    callback = BudgetCallback(strategy="rewarm", rewarm_steps=2)
    trainer, more = EXAMPLE.train(4, out, ckpt_path=str(tmp_path / "epoch=0.ckpt"), budget_callback=callback)
    truth = Schedule("rex", 2 * STEPS, PEAK).with_budget(4 * STEPS, at_step=STEPS, strategy="rewarm", rewarm_steps=2)
    assert more == pytest.approx([truth(t) for t in range(STEPS, 4 * STEPS)], rel=1e-12)
