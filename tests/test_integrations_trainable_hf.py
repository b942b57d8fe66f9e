"""The paper's protocol through a Hugging Face Trainer: examples/trainable_hf.py run by the study runner.

A small grid of the trainable (a tiny randomly initialised BERT on scikit-learn's digits, no download) goes through
``budgetsched.bench.execution.runners.run_study`` into a store, end to end; the LR each trial's Trainer ran at (reported with
its evaluations) is checked against the closed form of the trial's own schedule over its own budget.
"""
from __future__ import annotations

import math

import pytest

from _examples import EXAMPLES
from budgetsched import Schedule

pytest.importorskip("transformers")  # part of the dev extra: installed by make test

from budgetsched.bench.protocol.grid import expand  # noqa: E402
from budgetsched.bench.execution.runners import run_study  # noqa: E402
from budgetsched.bench.storage.store import Store  # noqa: E402
from budgetsched.bench.tasks import get_task  # noqa: E402
from budgetsched.cli import main  # noqa: E402

EXAMPLE = EXAMPLES / "trainable_hf.py"
REF = f"{EXAMPLE}:train"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_hf_trainable_grid_runs_end_to_end_through_run_study(tmp_path, capsys):
    task = get_task(REF)
    assert task.max_epochs == 8 and task.steps_per_epoch == 17
    grid = expand([REF], ["rex", "linear"], ["adam"], [25.0], [0.003, 0.01], [0])  # 4 trials of 34 steps
    db = tmp_path / "hf.db"
    with Store(db) as store:
        summary = run_study(grid, store, engine="sequential", progress=False)
        assert summary.ran == 4 and summary.counts["done"] == 4
        rows = store.rows()
    assert len(rows) == 4 and {r["status"] for r in rows} == {"done"}
    for r in rows:
        assert r["total_steps"] == 34 and r["steps"] == 34  # 25 % of 8 epochs x 17 steps, every step trained
        assert 0 <= r["val_metric"] <= 100 and 0 <= r["test_metric"] <= 100 and math.isfinite(r["val_loss"])
        curves = r["curves"]
        assert curves["step"] == [17, 34] and len(curves["val_metric"]) == 2  # one evaluation per epoch
        # the Trainer ran the trial's own schedule over the trial's own budget (LR after steps 17 and 34)
        truth = Schedule(r["schedule"], 34, r["lr"])
        assert curves["lr"] == pytest.approx([truth(17), truth(34)], rel=1e-12, abs=1e-15)

    with Store(db) as store:  # resume: everything is already there
        again = run_study(grid, store, engine="sequential", progress=False)
        assert again.skipped == 4 and again.ran == 0
    assert main(["report", str(db), "--format", "md"]) == 0
    assert "error %" in capsys.readouterr().out
