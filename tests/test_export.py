"""``budgetsched export STORE --tensorboard DIR``: read back with TensorBoard's own event reader, every curve point
at its optimizer step, one run per trial, hyperparameters and final results attached."""
from __future__ import annotations

import math

import pytest

from budgetsched.bench.protocol.grid import TrialConfig
from budgetsched.bench.storage.store import Store
from budgetsched.cli import export as export_mod
from budgetsched.cli import main

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
plugin_data_pb2 = pytest.importorskip("tensorboard.plugins.hparams.plugin_data_pb2")


def _curves(scale: float) -> dict:
    return {"epoch": [1, 2, 3], "step": [10, 20, 30], "train_loss": [2.0 * scale, 1.5 * scale, 1.0 * scale],
            "val_loss": [1.8, 1.4, 1.1], "val_metric": [40.0, 30.0, 25.0 + scale], "lr": [0.1, 0.05, 0.0],
            "grad_norm": [3.0, math.nan, 1.0]}


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "study.db"
    with Store(path) as s:
        s.put(TrialConfig("digits-mlp", "rex", "sgdm", 5.0, 0.1, 0),
              dict(status="done", val_loss=1.1, val_metric=26.0, test_loss=1.2, test_metric=27.5, curves=_curves(1),
                   steps=30, wall_time=0.1))
        s.put(TrialConfig("digits-mlp", "delayed-linear", "adam", 25.0, 0.003, 1, (("delay", 0.5),)),
              dict(status="done", val_loss=1.0, val_metric=25.0, test_loss=1.0, test_metric=24.0, curves=_curves(2),
                   steps=30, wall_time=0.1))
        s.put(TrialConfig("digits-mlp", "constant", "sgdm", 5.0, 1e3, 0),
              dict(status="diverged", val_loss=None, val_metric=None, test_loss=None, test_metric=None,
                   curves={"epoch": [1], "step": [10], "train_loss": [math.inf], "val_loss": [math.nan],
                           "val_metric": [math.nan], "lr": [1e3], "grad_norm": [math.nan]}, steps=10, wall_time=0.1))
        for patience in (5, 10):  # same name but for patience: told apart by the key
            s.put(TrialConfig("digits-mlp", "plateau", "sgdm", 5.0, 0.1, 0, (("patience", patience),)),
                  dict(status="done", val_loss=1.0, val_metric=30.0, test_loss=1.0, test_metric=31.0,
                       curves=_curves(3), steps=30, wall_time=0.1))
    return path


def _same(got, expected):
    """Scalar events (step, value) against expected points: steps exactly, values to float32."""
    expected = list(expected)
    assert [s for s, _ in got] == [s for s, _ in expected]
    assert [v for _, v in got] == pytest.approx([v for _, v in expected], rel=1e-6)


def _read(run_dir):
    acc = event_accumulator.EventAccumulator(str(run_dir))
    acc.Reload()
    scalars = {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    content = acc.PluginTagToContent("hparams")
    hp = {}
    for blob in content.values():
        data = plugin_data_pb2.HParamsPluginData.FromString(blob)
        if data.HasField("session_start_info"):
            for k, v in data.session_start_info.hparams.items():
                hp[k] = v.string_value or v.number_value or v.bool_value
    return scalars, hp


@pytest.mark.parametrize("backend", ["torch.utils.tensorboard", "tensorboardX"])
def test_export_reads_back_with_tensorboards_event_reader(store, tmp_path, capsys, monkeypatch, backend):
    if backend == "tensorboardX":
        tbx = pytest.importorskip("tensorboardX")
        from tensorboardX.summary import hparams

        monkeypatch.setattr(export_mod, "_writer_api", lambda: (tbx.SummaryWriter, hparams))
    out = tmp_path / "tb"
    assert main(["export", str(store), "--tensorboard", str(out)]) == 0
    assert capsys.readouterr().out.startswith(f"5 runs written to {out}; view them with: tensorboard --logdir")
    runs = sorted(str(p.parent.relative_to(out)) for p in out.rglob("events.out.tfevents.*"))
    assert len(set(runs)) == 5
    assert "digits-mlp/sgdm/rex/budget=5/lr=0.1/seed=0" in runs
    assert "digits-mlp/adam/delayed-linear(delay=0.5)/budget=25/lr=0.003/seed=1" in runs
    assert sum(r.startswith("digits-mlp/sgdm/plateau/budget=5/lr=0.1/seed=0/") for r in runs) == 2

    scalars, hp = _read(out / "digits-mlp/sgdm/rex/budget=5/lr=0.1/seed=0")
    curves = _curves(1)
    _same(scalars["train/loss"], list(zip(curves["step"], curves["train_loss"])))
    _same(scalars["val/metric"], list(zip(curves["step"], curves["val_metric"])))
    _same(scalars["lr"], list(zip(curves["step"], curves["lr"])))
    _same(scalars["train/grad_norm"], [(10, 3.0), (30, 1.0)])  # the NaN point left out
    _same(scalars["result/test_metric"], [(30, 27.5)])
    _same(scalars["result/val_metric"], [(30, 26.0)])
    assert hp["task"] == "digits-mlp" and hp["schedule"] == "rex" and hp["optimizer"] == "sgdm"
    assert hp["lr"] == pytest.approx(0.1) and hp["budget"] == pytest.approx(5.0) and hp["status"] == "done"

    scalars, hp = _read(out / "digits-mlp/adam/delayed-linear(delay=0.5)/budget=25/lr=0.003/seed=1")
    assert hp["schedule.delay"] == pytest.approx(0.5) and hp["seed"] == pytest.approx(1)

    scalars, hp = _read(out / "digits-mlp/sgdm/constant/budget=5/lr=1000/seed=0")
    assert hp["status"] == "diverged" and not any(t.startswith("result/") for t in scalars)
    assert scalars["lr"] == [(10, 1000.0)] and "train/loss" not in scalars  # only the finite points


def test_export_refuses_a_used_directory_and_leaves_none_on_failure(store, tmp_path, capsys):
    used = tmp_path / "used"
    used.mkdir()
    (used / "notes.txt").write_text("mine\n")
    assert main(["export", str(store), "--tensorboard", str(used)]) == 2
    assert "is not empty" in capsys.readouterr().err and sorted(p.name for p in used.iterdir()) == ["notes.txt"]
    assert main(["export", str(tmp_path / "missing.db"), "--tensorboard", str(tmp_path / "tb")]) == 2
    assert not (tmp_path / "tb").exists()
