"""Suite v2: its tasks exercise every budget (run lengths, evaluations, plateau), their data and baselines, its
presets, and the smoke preset end to end through the command line."""
from __future__ import annotations

import collections
import json
import math

import numpy as np
import pytest
import torch

from budgetsched.bench.protocol.grid import PAPER_BUDGETS, TrialConfig
from budgetsched.bench.protocol.plan import plan_trial, plateau_is_constant
from budgetsched.bench.protocol.presets import ABLATION_TASKS, SUITE_V2_LRS, SUITE_V2_TASKS, get_preset
from budgetsched.bench.protocol.study import StudySpec, _on_grid
from budgetsched.bench.tasks import data as D
from budgetsched.bench.tasks import get_task
from budgetsched.bench.tasks.registry import task_baseline
from budgetsched.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: Training examples of each task (the loaders' split sizes; checked against the data below).
N_TRAIN = {"mnist1d-mlp-v2": 19_000, "mnist1d-cnn-v2": 19_000, "digits-mlp-v2": 898, "digits-vae-v2": 898,
           "shakespeare-mlp": D.CHAR_TRAIN_POSITIONS}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A fresh data cache shared by this module (MNIST-1D is generated into it once)."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def loaded(cache):
    """Each v2 task's data, loaded once."""
    return {name: get_task(name).load(None, cache) for name in SUITE_V2_TASKS}


@pytest.mark.parametrize("name", SUITE_V2_TASKS)
def test_every_budget_trains_and_evaluates_enough(name):
    """5 000 steps at 100 %, >= 50 at 1 %, an evaluation every 4 steps, and at 1 % enough evaluations that
    plateau with patience 10 (the grid's largest) can decay the LR: it is not the constant schedule's run."""
    task = get_task(name)
    plans = {b: plan_trial(TrialConfig(name, "plateau", "adam", b, 0.01, 0, (("patience", 10),)), task,
                           N_TRAIN[name]) for b in PAPER_BUDGETS}
    assert plans[100.0].total_steps == 5000 and plans[1.0].total_steps == 50
    assert min(p.total_steps for p in plans.values()) >= 50
    for b, p in plans.items():
        assert p.steps_per_epoch == 4
        steps = p.evaluation_steps
        assert steps[-1] == p.total_steps and all(s % 4 == 0 for s in steps[:-1])  # a fixed interval, then the end
        assert not plateau_is_constant(p), b
    assert plans[1.0].epochs == 13  # evaluations at 4, 8, ..., 48 and 50: a decay after the 12th still trains
    # an evaluation period draws distinct training examples: 4 batches fit in one pass
    assert task.steps_per_epoch * task.batch_size <= N_TRAIN[name]


def test_data_sizes_and_weight_of_one_example(loaded):
    for name, d in loaded.items():
        assert len(d.train_y) == N_TRAIN[name], name
    m = loaded["mnist1d-mlp-v2"]
    assert (len(m.val_y), len(m.test_y)) == (1000, 5000)  # one validation example = 0.1 point of error
    assert loaded["mnist1d-cnn-v2"] is not m and torch.equal(loaded["mnist1d-cnn-v2"].val_x, m.val_x)
    assert set(m.train_y.unique().tolist()) == set(range(10))
    assert abs(m.train_x.mean().item()) < 1e-5 and abs(m.train_x.std(unbiased=False).item() - 1) < 1e-4
    s = loaded["shakespeare-mlp"]
    assert len(s.val_y) > 1000 and len(s.test_y) > 10_000


def test_binarised_digits_are_the_digits_thresholded(loaded):
    from sklearn.datasets import load_digits

    d = loaded["digits-vae-v2"]
    plain = D.load_digits_data()
    for images, gray in ((d.train_y, plain.train_x), (d.val_y, plain.val_x), (d.test_y, plain.test_x)):
        assert set(images.unique().tolist()) == {0.0, 1.0}
        torch.testing.assert_close(images, (gray * 16 >= 8).to(torch.float32))  # pixel values are 0..16
    torch.testing.assert_close(d.val_x[:, :64], d.val_y)  # evaluation inputs: the image, then fixed noise
    assert d.val_x.shape == (539, 72) and d.test_x.shape == (360, 72)
    assert load_digits().data.max() == 16


def test_vae_baseline_is_the_mean_binary_image_likelihood(loaded):
    """The mean-image model's test NLL, counted pixel by pixel: sum over pixels of -log p(pixel value), with
    p(on) = (times on in training + 1/2) / (images + 1)."""
    d = loaded["digits-vae-v2"]
    on = d.train_y.numpy().sum(axis=0)
    p_on = (on + 0.5) / (len(d.train_y) + 1)
    test = d.test_y.numpy().astype(bool)
    nll = -np.where(test, np.log(p_on), np.log1p(-p_on)).sum(axis=1).mean()
    assert task_baseline(get_task("digits-vae-v2")) == pytest.approx(nll, rel=1e-9)
    assert 20 < nll < 30


def test_character_examples_read_the_text(loaded):
    d = loaded["shakespeare-mlp"]
    text = D.find_tinyshakespeare().read_bytes()
    vocab = D.shakespeare_vocab(text)
    ids = np.searchsorted(vocab, np.frombuffer(text, dtype=np.uint8))
    n = len(ids)
    rng = np.random.default_rng(0)
    for i in rng.integers(0, len(d.train_y), 20):  # example i: characters i .. i+7, then character i+8
        assert d.train_x[i].tolist() == ids[i:i + 8].tolist() and int(d.train_y[i]) == ids[i + 8]
    val_start = int(n * 0.9)
    for j in rng.integers(0, len(d.val_y), 20):  # every 50th position of the validation split, one-hot
        start = val_start + j * D.CHAR_VAL_STRIDE
        assert d.val_x[j].reshape(8, 65).argmax(1).tolist() == ids[start:start + 8].tolist()
        assert int(d.val_y[j]) == ids[start + 8]
    assert set(d.val_x.sum(1).tolist()) == {8.0}  # one character per slot
    task = get_task("shakespeare-mlp")
    torch.testing.assert_close(task.augment(d.train_x[:5], torch.Generator()), D.one_hot_context(d.train_x[:5]))
    # the unigram baseline, counted with the standard library
    counts = collections.Counter(d.train_y.tolist())
    total = len(d.train_y) + 65
    want = -np.mean([math.log2((counts[c] + 1) / total) for c in d.test_y.tolist()])
    assert task_baseline(task) == pytest.approx(want, rel=1e-9)
    assert 4.5 < want < 5.2


def test_next_char_bits_known_answer():
    t = get_task("shakespeare-mlp")
    assert t.metric(torch.zeros(2, 4), torch.tensor([0, 3])).tolist() == pytest.approx([2.0, 2.0])  # uniform of 4
    logits = torch.tensor([[0.0, -1e9], [math.log(3.0), 0.0]])
    assert t.metric(logits, torch.tensor([0, 1])).tolist() == pytest.approx([0.0, 2.0])  # p = 1, p = 1/4


def test_classification_baselines_are_chance(loaded):
    for name in ("mnist1d-mlp-v2", "digits-mlp-v2"):
        d = loaded[name]
        mode = collections.Counter(d.train_y.tolist()).most_common(1)[0][0]
        want = 100.0 * sum(int(y) != mode for y in d.test_y) / len(d.test_y)
        assert task_baseline(get_task(name)) == pytest.approx(want)
        assert 85 < want < 95


def test_suite_preset_is_v2_and_its_grids_are_multiples_of_3():
    spec = StudySpec.from_mapping(get_preset("suite"), "suite")
    assert tuple(spec.tasks) == SUITE_V2_TASKS and spec.optimizers == ["sgdm", "adam"]
    assert spec.budgets == list(PAPER_BUDGETS) and spec.seeds == [0, 1, 2] and spec.refine
    assert spec.eval_seeds == 10  # each chosen configuration retrained on 10 fresh seeds (the headline rule's noise)
    for task in SUITE_V2_TASKS:
        for opt in ("sgdm", "adam"):
            lrs = spec.lrs_for(opt, task)
            assert len(lrs) == 5 and all(_on_grid(lr) for lr in lrs), (task, opt)
            assert all(b / a == pytest.approx(3.0, rel=0.12) for a, b in zip(lrs, lrs[1:]))  # consecutive points
    assert len(spec.configs()) == 5 * 2 * 6 * 9 * 5 * 3
    old = StudySpec.from_mapping(get_preset("suite-v1"), "suite-v1")  # the earlier suite, as it was
    assert old.tasks == ["mnist1d-mlp", "mnist1d-cnn", "digits-mlp", "digits-vae", "shakespeare-char"]


def test_ablations_preset():
    spec = StudySpec.from_mapping(get_preset("ablations"), "ablations")
    assert tuple(spec.tasks) == ABLATION_TASKS and len(spec.tasks) <= 2
    assert ("onecycle", {"max_momentum": 0.9, "base_momentum": 0.9}) in spec.schedules
    assert ("rex", {"warmup_fraction": 0.5, "warmup_start_ratio": 0.1}) in spec.schedules  # OneCycle's rise
    assert "schedule-free" in spec.schedules and spec.optimizers == ["sgdm", "adam", "adamw"]
    assert {t: spec.lrs[t] for t in spec.tasks} == {t: {**SUITE_V2_LRS[t], "adamw": SUITE_V2_LRS[t]["adam"]}
                                                    for t in ABLATION_TASKS}
    # OneCycle without its cycle: momentum / beta1 held at the optimizers' 0.9 the whole run
    from budgetsched import Schedule

    flat = Schedule("onecycle", 100, peak_lr=0.1, max_momentum=0.9, base_momentum=0.9).momentum_values()
    assert np.allclose(flat, 0.9)


def test_suite_smoke_runs_end_to_end(tmp_path, cache):
    """``budgetsched run --preset suite-smoke`` into a new store, then its report: every trial done."""
    store = tmp_path / "smoke.db"
    assert main(["run", "--preset", "suite-smoke", "--store", str(store), "--cache-dir", str(cache),
                 "--quiet"]) == 0
    out = tmp_path / "report.json"
    assert main(["report", str(store), "--format", "json", "--output", str(out)]) == 0
    from budgetsched.bench.storage.store import Store

    with Store(store, readonly=True) as s:
        rows = s.rows()
    assert len(rows) == 30 and {r["status"] for r in rows} == {"done"}
    assert {r["task"] for r in rows} == set(SUITE_V2_TASKS)
    assert {r["total_steps"] for r in rows} == {50, 100}
    for r in rows:  # the engine evaluated every 4 steps and at the end: 13 evaluations at 1 %, 25 at 2 %
        want = [*range(4, r["total_steps"], 4), r["total_steps"]]
        assert r["curves"]["step"] == want and len(want) == {50: 13, 100: 25}[r["total_steps"]]
        assert r["steps"] == r["total_steps"]
    plateau = [r for r in rows if r["schedule"] == "plateau"]
    assert len(plateau) == 10 and not any(r["stand_in"] for r in plateau)  # trained as plateau, not constant
    report = json.loads(out.read_text())
    assert report  # rendered


def test_ablations_schedules_train(tmp_path):
    """Every ablation variant trains (warm-up fractions, a flat OneCycle momentum, schedule-free), one short budget."""
    store = tmp_path / "ablations.db"
    assert main(["run", "--preset", "ablations", "--task", "digits-mlp-v2", "--budgets", "1", "--seeds", "1",
                 "--lrs", "sgdm=0.1;adam=0.01;adamw=0.01", "--store", str(store), "--quiet"]) == 0
    from budgetsched.bench.storage.store import Store

    with Store(store, readonly=True) as s:
        rows = [r for r in s.rows() if (r["optimizer"], r["lr"]) in (("sgdm", 0.1), ("adam", 0.01))]  # not refinement's
    assert len(rows) == 7 * 2 and {r["status"] for r in rows} == {"done"}
    by = {(r["optimizer"], r["schedule"], json.dumps(r["schedule_params"], sort_keys=True)): r for r in rows}
    flat = by[("sgdm", "onecycle", '{"base_momentum": 0.9, "max_momentum": 0.9}')]
    cycled = by[("sgdm", "onecycle", "{}")]
    assert flat["test_metric"] != cycled["test_metric"]  # the momentum cycle changes the run
