"""BudgetScheduler / PlateauScheduler against the conventions of torch's schedulers, Hugging Face and Lightning
(issue 10, defects 1-6), the shared vocabulary (warmup_fraction, warmup_start_lr, min_lr_ratio, peak_lr) and
continuing a finished run (issue 12)."""
from __future__ import annotations

import io
import logging
import math
import warnings
from bisect import bisect_right

import pytest
import torch
from torch.optim import lr_scheduler as L

from _examples import load_example
from budgetsched import Plateau, Schedule
from budgetsched.torch import BudgetScheduler, PlateauScheduler

from _lr_trace import lr_trace

torch.set_num_threads(1)
T = 40


def _opt(lrs=(0.1,), kind="sgd"):
    groups = [{"params": [torch.zeros(2, requires_grad=True)], "lr": lr} for lr in lrs]
    return torch.optim.SGD(groups, momentum=0.9) if kind == "sgd" else torch.optim.AdamW(groups)


_run = lr_trace  # the LR of every group at each step


def _flat(rows):
    return [x for row in rows for x in row]


def _checkpoint(state):
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def _rex(total):
    return lambda t: 2 * (1 - min(t / total, 1)) / (2 - min(t / total, 1))


def _example():
    return load_example("hf_trainer.py")


# -- defect 1: HF Trainer / Lightning step a plateau scheduler only with the eval metric ----------------------------

def test_plateau_is_a_reduce_lr_on_plateau_so_trainers_route_the_metric_to_it():
    sched = BudgetScheduler(_opt(), "plateau", total_steps=10, patience=2)
    assert isinstance(sched, PlateauScheduler) and isinstance(sched, L.ReduceLROnPlateau)
    assert not isinstance(BudgetScheduler(_opt(), "rex", total_steps=10), L.ReduceLROnPlateau)


def test_hf_trainer_steps_plateau_with_eval_loss_not_after_each_optimizer_step():
    # Convention (transformers Trainer): lr_scheduler.step() after every optimizer step unless the scheduler is a
    # ReduceLROnPlateau; then step(metrics[metric_for_best_model]) after each evaluation.
    pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    trainer, sched, lrs = _example().train(max_steps=30, profile="plateau", eval_steps=5, patience=0, factor=0.5)
    evals = [h["eval_loss"] for h in trainer.state.log_history if "eval_loss" in h]
    assert len(evals) == 6 and sched.last_epoch == 6  # one plateau step per evaluation, none per optimizer step
    ref = Plateau(0, factor=0.5)
    scales = [ref.update(e) for e in evals]
    assert lrs == pytest.approx([3e-2 * (1.0 if t < 5 else scales[t // 5 - 1]) for t in range(30)], rel=1e-12)


def test_lightning_steps_plateau_with_the_monitored_metric():
    pl = pytest.importorskip("lightning")

    class Tiny(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net, self.lrs = torch.nn.Linear(4, 1), []

        def training_step(self, batch, i):
            self.lrs.append(self.trainer.optimizers[0].param_groups[0]["lr"])
            x, y = batch
            return torch.nn.functional.mse_loss(self.net(x).squeeze(-1), y)

        def validation_step(self, batch, i):
            self.log("val_loss", torch.tensor(1.0))  # never improves after the first evaluation

        def configure_optimizers(self):
            opt = torch.optim.SGD(self.parameters(), lr=0.1)
            sched = BudgetScheduler(opt, "plateau", total_steps=4, patience=0, factor=0.5)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": "val_loss", "interval": "epoch"}}

    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 4, generator=g)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, x.sum(1)), batch_size=8)
    model = Tiny()
    trainer = pl.Trainer(max_epochs=4, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", num_sanity_val_steps=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, data, data)
    assert model.lrs == pytest.approx([0.1] * 4 + [0.05] * 2 + [0.025] * 2)


# -- defect 2: resuming a SequentialLR during its warmup -------------------------------------------------------------

def _sequential(kind):
    o = _opt((0.1, 0.02))
    warm = L.LinearLR(o, start_factor=0.25, total_iters=4)
    main = (BudgetScheduler(o, "rex", total_steps=20) if kind == "ours"
            else L.LambdaLR(o, _rex(20)))  # torch's own closed form of the same schedule
    return o, L.SequentialLR(o, [warm, main], milestones=[4])


@pytest.mark.parametrize("stop", [1, 2, 3, 4, 6])
def test_sequential_lr_resume_during_warmup_keeps_the_lr(stop):
    # Convention (torch, HF): load the optimizer, then the scheduler; a scheduler's load_state_dict restores its
    # own state and never writes to the optimizer (here the inactive BudgetScheduler must not set its peak).
    o_ref, s_ref = _sequential("torch")
    reference = _run(o_ref, s_ref, 16)
    o1, s1 = _sequential("ours")
    assert _flat(_run(o1, s1, stop)) == pytest.approx(_flat(reference[:stop]), rel=1e-12)
    opt_state, sched_state = _checkpoint(o1.state_dict()), _checkpoint(s1.state_dict())
    o2, s2 = _sequential("ours")
    o2.load_state_dict(opt_state)
    s2.load_state_dict(sched_state)
    assert _flat(_run(o2, s2, 16 - stop)) == pytest.approx(_flat(reference[stop:]), rel=1e-12)


def test_load_state_dict_never_writes_to_the_optimizer():
    o1 = _opt((0.1,), "adamw")
    s1 = BudgetScheduler(o1, "onecycle", total_steps=T)
    _run(o1, s1, 10)
    o2 = _opt((0.1,), "adamw")
    s2 = BudgetScheduler(o2, "onecycle", total_steps=T)
    before = [dict(g) for g in o2.param_groups]
    s2.load_state_dict(_checkpoint(s1.state_dict()))
    assert [dict(g) for g in o2.param_groups] == before
    assert s2.last_epoch == 10 and s2.get_last_lr() == s1.get_last_lr()


# -- defect 3: SequentialLR's milestone, old torch (step(0)) and torch >= 2.9 (_update_lr(0)) -----------------------

class _OldSequentialLR(L.SequentialLR):
    """SequentialLR.step as in torch 2.2-2.8: ``scheduler.step(0)`` at a milestone."""

    def step(self):
        self.last_epoch += 1
        idx = bisect_right(self._milestones, self.last_epoch)
        scheduler = self._schedulers[idx]
        if idx > 0 and self._milestones[idx - 1] == self.last_epoch:
            scheduler.step(0)
        else:
            scheduler.step()
        self._last_lr = scheduler.get_last_lr()


class _Spy(BudgetScheduler):
    def _update_lr(self, epoch=None):
        self.calls = [*getattr(self, "calls", []), epoch]
        super()._update_lr(epoch)


@pytest.mark.parametrize("sequential", [L.SequentialLR, _OldSequentialLR])
def test_sequential_lr_milestone_on_old_and_new_torch(sequential):
    o_ref = _opt((0.1,))
    reference = _run(o_ref, L.SequentialLR(o_ref, [L.ConstantLR(o_ref, factor=0.5, total_iters=5),
                                                   L.LambdaLR(o_ref, _rex(30))], milestones=[5]), 40)
    o = _opt((0.1,))
    main = _Spy(o, "rex", total_steps=30)
    seq = sequential(o, [L.ConstantLR(o, factor=0.5, total_iters=5), main], milestones=[5])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lrs = _run(o, seq, 40)
    assert _flat(lrs) == pytest.approx(_flat(reference), rel=1e-12)
    assert 0 in main.calls  # the milestone jumps to step 0 on both paths
    deprecations = [w for w in caught if "epoch parameter" in str(w.message)]
    assert len(deprecations) == (1 if sequential is _OldSequentialLR else 0)  # as torch's own schedulers warn


def test_step_epoch_jumps_like_torch_closed_form_schedulers():
    o1, o2 = _opt((0.1,)), _opt((0.1,))
    ours, theirs = BudgetScheduler(o1, "rex", total_steps=30), L.LambdaLR(o2, _rex(30))
    for epoch in (7, 3, 29, 45):
        with pytest.warns(UserWarning, match="epoch parameter"):
            ours.step(epoch)
        with pytest.warns(UserWarning, match="epoch parameter"):
            theirs.step(epoch)
        assert ours.last_epoch == theirs.last_epoch == epoch
        assert o1.param_groups[0]["lr"] == pytest.approx(o2.param_groups[0]["lr"], rel=1e-12, abs=1e-15)
    with pytest.raises(ValueError, match="epoch must be >= 0, got -3"):
        ours.step(-3)


# -- defect 4: a parameter group added after construction ------------------------------------------------------------

def test_added_param_group_is_scheduled_with_its_own_lr_as_peak(caplog):
    o = _opt((0.1,))
    s = BudgetScheduler(o, "rex", total_steps=T, min_lr_ratio=0.1)
    first = _run(o, s, 15)
    o.add_param_group({"params": [torch.zeros(2, requires_grad=True)], "lr": 0.02})  # progressive unfreezing
    with caplog.at_level(logging.WARNING, logger="budgetsched"):
        o.step()
        s.step()
    assert "parameter group 1 was added" in caplog.text
    assert len(s.get_last_lr()) == 2 and s.base_lrs == [0.1, 0.02] and o.param_groups[1]["initial_lr"] == 0.02
    rest = _run(o, s, T - 10)
    ref0, ref1 = Schedule("rex", T, 0.1, min_lr_ratio=0.1), Schedule("rex", T, 0.02, min_lr_ratio=0.1)
    assert [x[0] for x in first + rest] == pytest.approx([ref0(t) for t in range(15)] +
                                                         [ref0(t) for t in range(16, T + 6)], rel=1e-12)
    assert [x[1] for x in rest] == pytest.approx([ref1(t) for t in range(16, T + 6)], rel=1e-12)
    # its state travels with the checkpoint
    o2 = _opt((0.1,))
    o2.add_param_group({"params": [torch.zeros(2, requires_grad=True)], "lr": 0.02})
    s2 = BudgetScheduler(o2, "rex", total_steps=T, min_lr_ratio=0.1)
    s2.load_state_dict(_checkpoint(s.state_dict()))
    assert s2.min_lrs == pytest.approx([0.01, 0.002]) and s2.get_lr() == s.get_lr()
    # torch's own closed-form schedulers refuse instead (the friendlier choice is to schedule it)
    o3 = _opt((0.1,))
    lam = L.LambdaLR(o3, _rex(T))
    o3.add_param_group({"params": [torch.zeros(2, requires_grad=True)], "lr": 0.02})
    with pytest.raises(ValueError):
        lam.step()


def test_added_group_under_a_per_group_floor_list_gets_floor_zero_and_plateau_adopts_too():
    o = _opt((0.1, 0.05))
    s = BudgetScheduler(o, "linear", total_steps=10, min_lr=[0.01, 0.005])
    o.add_param_group({"params": [torch.zeros(1, requires_grad=True)], "lr": 0.3})
    _run(o, s, 12)
    assert s.min_lrs == [0.01, 0.005, 0.0] and o.param_groups[2]["lr"] == 0.0
    op = _opt((0.1,))
    p = PlateauScheduler(op, patience=0, min_lr=0.001)
    op.add_param_group({"params": [torch.zeros(1, requires_grad=True)], "lr": 0.3})
    p.step(1.0)
    p.step(2.0)
    assert [g["lr"] for g in op.param_groups] == pytest.approx([0.001 + 0.099 * 0.1, 0.001 + 0.299 * 0.1])


# -- defect 5: last_epoch= ------------------------------------------------------------------------------------------

def test_last_epoch_resumes_like_torch_schedulers():
    o1 = _opt((0.1, 0.03))
    s1 = BudgetScheduler(o1, "rex", total_steps=30)
    _run(o1, s1, 10)
    state = _checkpoint(o1.state_dict())  # carries each group's initial_lr
    o2, o3 = _opt((0.1, 0.03)), _opt((0.1, 0.03))
    o2.load_state_dict(state)
    o3.load_state_dict(state)
    ours = BudgetScheduler(o2, "rex", total_steps=30, last_epoch=9)  # torch: the last finished step was 9
    theirs = L.LambdaLR(o3, _rex(30), last_epoch=9)
    assert ours.last_epoch == theirs.last_epoch == 10
    assert _flat(_run(o2, ours, 25)) == pytest.approx(_flat(_run(o3, theirs, 25)), rel=1e-12)
    with pytest.raises(ValueError, match="parameter group 0 has no 'initial_lr'"):
        BudgetScheduler(_opt(), "rex", total_steps=30, last_epoch=9)
    s = BudgetScheduler(_opt(), "rex", total_steps=30, last_epoch=9, peak_lr=0.2)  # or say the peak
    assert s.get_last_lr() == [pytest.approx(0.2 * _rex(30)(10))]
    with pytest.raises(ValueError, match="last_epoch must be >= -1, got -2"):
        BudgetScheduler(_opt(), "rex", total_steps=30, last_epoch=-2)


# -- defect 6: peak_lr= ---------------------------------------------------------------------------------------------

def test_peak_lr_scalar_or_per_group():
    o1, o2 = _opt((0.7, 0.2)), _opt((0.5, 0.5))
    ours = _run(o1, BudgetScheduler(o1, "cosine", total_steps=T, peak_lr=0.5), T + 1)
    theirs = _run(o2, L.CosineAnnealingLR(o2, T_max=T), T + 1)  # periodic past T_max
    assert _flat(ours) == pytest.approx(_flat(theirs), rel=1e-9, abs=1e-12)
    o = _opt((1.0, 1.0))
    s = BudgetScheduler(o, "linear", total_steps=10, peak_lr=[0.4, 0.1], min_lr_ratio=0.5)
    assert s.base_lrs == [0.4, 0.1] and [g["initial_lr"] for g in o.param_groups] == [0.4, 0.1]
    lrs = _run(o, s, 11)
    assert [x[1] for x in lrs] == pytest.approx([0.05 + 0.05 * (1 - t / 10) for t in range(11)], rel=1e-12)
    for bad, match in (([0.1, 0.2, 0.3], r"peak_lr has 3 entries but the optimizer has 2 parameter groups"),
                       ([0.1, -1.0], r"peak_lr\[1\] must be a finite number >= 0, got -1.0"),
                       ("0.1", "peak_lr must be a number or a list")):
        with pytest.raises(ValueError, match=match):
            BudgetScheduler(_opt((0.1, 0.1)), "rex", total_steps=10, peak_lr=bad)


# -- the shared vocabulary, and the refined weighting ------------------------------------------------------------------

def test_warmup_fraction_start_lr_and_floor_ratio_match_the_closed_form():
    o = _opt((0.2, 0.05))
    s = BudgetScheduler(o, "rex", total_steps=T, warmup_fraction=0.25, warmup_start_lr=[0.0, 0.01],
                        min_lr_ratio=0.1)
    lrs = _run(o, s, T + 2)
    for g, (peak, start) in enumerate(((0.2, 0.0), (0.05, 0.01))):
        ref = Schedule("rex", T, peak, warmup_fraction=0.25, warmup_start_lr=start, min_lr_ratio=0.1)
        assert [x[g] for x in lrs] == pytest.approx([ref(t) for t in range(T + 2)], rel=1e-12, abs=1e-15)
    with pytest.raises(ValueError, match=r"warmup_start_lr\[1\] \(0.5\) must be <= the parameter group's peak"):
        BudgetScheduler(_opt((1.0, 0.1)), "rex", total_steps=T, warmup_steps=4, warmup_start_lr=[0.0, 0.5])
    with pytest.raises(ValueError, match=r"give min_lr \(0.0\) or min_lr_ratio \(0.1\), not both"):
        BudgetScheduler(_opt(), "rex", total_steps=T, min_lr=0.0, min_lr_ratio=0.1)
    with pytest.raises(ValueError, match=r"give warmup_steps \(3\) or warmup_fraction \(0.1\), not both"):
        BudgetScheduler(_opt(), "rex", total_steps=T, warmup_steps=3, warmup_fraction=0.1)


def test_refined_weighting_no_longer_collides_with_the_optimizer_argument():
    g = [1.0, 2.0, 1.5, 3.0, 2.0, 1.0]
    o = _opt((0.1,))
    s = BudgetScheduler(o, "refined", total_steps=T, grad_norms=g, weighting="adam")
    lrs = _run(o, s, T + 1)
    ref = Schedule("refined", T, 0.1, grad_norms=g, weighting="adam")
    assert [x[0] for x in lrs] == pytest.approx([ref(t) for t in range(T + 1)], rel=1e-12)


# -- continuing a finished run (issue 12) ------------------------------------------------------------------------------

def test_finished_run_warns_through_logging_and_rewarm_follows_the_closed_form(caplog):
    o = _opt((0.1, 0.02))
    s = BudgetScheduler(o, "linear", total_steps=10)
    _run(o, s, 10)
    with caplog.at_level(logging.WARNING, logger="budgetsched"):
        s.set_total_steps(20, strategy="continue")
    assert len(caplog.records) == 1 and "continuing a finished run" in caplog.text  # once, not once per group
    assert _flat(_run(o, s, 10)) == [0.0] * 20

    o = _opt((0.1, 0.02))
    s = BudgetScheduler(o, "linear", total_steps=10, min_lr_ratio=0.1)
    _run(o, s, 10)
    s.set_total_steps(30, rewarm_steps=5)  # back to each group's peak over 5 steps, then linear to the floor at 30
    lrs = _run(o, s, 22)
    for g, peak in enumerate((0.1, 0.02)):
        ref = Schedule("linear", 10, peak, min_lr_ratio=0.1).with_budget(30, at_step=10, rewarm_steps=5)
        assert [x[g] for x in lrs] == pytest.approx([ref(t) for t in range(10, 32)], rel=1e-12)
    assert lrs[0][0] == pytest.approx(0.01) and lrs[4][0] == pytest.approx(0.1) and lrs[-1][0] == pytest.approx(0.01)
    assert s.budget_changes == [(10, 30, 5, None)]
    # the history (re-warm included) travels with the checkpoint
    o2 = _opt((0.1, 0.02))
    s2 = BudgetScheduler(o2, "linear", total_steps=10, min_lr_ratio=0.1)
    s2.load_state_dict(_checkpoint(s.state_dict()))
    assert s2.get_lr() == s.get_lr() and s2.budget_changes == s.budget_changes


def test_set_total_steps_syncs_the_optimizer_but_not_while_waiting_in_sequential_lr():
    o = _opt((0.1,))
    warm = L.LinearLR(o, start_factor=0.25, total_iters=4)
    main = BudgetScheduler(o, "rex", total_steps=20)
    seq = L.SequentialLR(o, [warm, main], milestones=[4])
    _run(o, seq, 2)
    lr = o.param_groups[0]["lr"]
    main.set_total_steps(40)  # inactive (last_epoch -1 until the milestone): the warmup's LR is left alone
    assert o.param_groups[0]["lr"] == lr and main.total_steps == 40


# -- plateau with floors and peaks ----------------------------------------------------------------------------------

def test_plateau_floor_peak_and_state():
    metrics = [1.0, 1.0, 1.0, 0.5, 0.6, 0.6, 0.6]
    o = _opt((1.0, 1.0))
    p = PlateauScheduler(o, total_steps=7, patience=1, factor=0.5, peak_lr=[0.4, 0.2], min_lr_ratio=0.25)
    assert [g["lr"] for g in o.param_groups] == [0.4, 0.2]
    lrs = _run(o, p, 7, metrics)
    ref = Plateau(1, factor=0.5)
    scales = [1.0] + [ref.update(m) for m in metrics][:-1]
    assert [x[0] for x in lrs] == pytest.approx([0.1 + 0.3 * sc for sc in scales], rel=1e-12)
    assert [x[1] for x in lrs] == pytest.approx([0.05 + 0.15 * sc for sc in scales], rel=1e-12)
    p.set_total_steps(14)
    assert p.total_steps == 14 and p.budget_changes == [(7, 14)]
    o2 = _opt((1.0, 1.0))
    p2 = PlateauScheduler(o2, patience=1, factor=0.5, peak_lr=[0.4, 0.2], min_lr_ratio=0.25)
    p2.load_state_dict(_checkpoint(p.state_dict()))
    assert p2.scale == p.scale and p2.get_last_lr() == p.get_last_lr() and p2.total_steps == 14
    with pytest.raises(ValueError, match="metric must be a number, got None|got no metric"):
        p.step(None)
    with pytest.raises(ValueError, match="metric must be a number within float range|metric must be a number"):
        p.step(10**400)


def test_no_warning_and_no_private_torch_reads_in_the_normal_loop():
    import inspect

    import budgetsched.torch as adapter
    assert "_opt_called" not in inspect.getsource(adapter)
    o = _opt((0.1,))
    s = BudgetScheduler(o, "rex", total_steps=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _run(o, s, 5)
    assert math.isclose(o.param_groups[0]["lr"], 0.0, abs_tol=1e-15)


def test_doctests_of_the_adapter_run():
    import doctest

    import budgetsched.torch as module
    res = doctest.testmod(module)
    assert res.failed == 0 and res.attempted > 0


def test_scheduler_pickles_like_torch_schedulers():
    import pickle
    o = _opt((0.1, 0.02))
    s = BudgetScheduler(o, "onecycle", total_steps=T)
    _run(o, s, 3)
    copy = pickle.loads(pickle.dumps(s))
    assert _run(copy.optimizer, copy, 10) == _run(o, s, 10)


def test_scheduler_on_an_accelerate_wrapped_optimizer():
    """Trainer.create_scheduler receives accelerate's AcceleratedOptimizer: the step watch follows the wrapped one."""
    accelerate = pytest.importorskip("accelerate")
    from accelerate.optimizer import AcceleratedOptimizer

    accelerate.Accelerator(cpu=True)
    p = torch.nn.Parameter(torch.zeros(1))
    opt = AcceleratedOptimizer(torch.optim.SGD([p], lr=0.1))
    sched = BudgetScheduler(opt, "rex", total_steps=10)
    lrs = []
    for _ in range(4):
        lrs.append(opt.param_groups[0]["lr"])
        p.grad = torch.ones(1)
        opt.step()
        sched.step()
    assert lrs == pytest.approx([Schedule("rex", 10, peak_lr=0.1)(t) for t in range(4)])
