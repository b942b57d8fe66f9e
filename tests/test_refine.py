"""Refined schedules from a study's own linear runs: gradient norms recorded and round-tripped through the store,
the refined trials built per setting, a constant-norm run gives the linear profile."""
from __future__ import annotations

import numpy as np
import pytest

from budgetsched import Schedule
from budgetsched.bench.protocol.grid import TrialConfig
from budgetsched.bench.analysis.refine import refined_trials
from budgetsched.bench.execution.runners import run_study
from budgetsched.bench.storage.store import Store
from budgetsched.bench.protocol.study import StudySpec
from budgetsched.bench.protocol.status import Status
from budgetsched.errors import UsageError

from _rows import typed

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_refined_trials_from_a_real_study(tmp_path):
    spec = StudySpec.from_mapping(dict(tasks=["digits-mlp"], schedules=["linear", "rex"], optimizers=["sgdm", "adam"],
                                       budgets=[5.0, 20.0], lrs={"sgdm": [0.03, 0.3], "adam": [0.003, 0.03]},
                                       seeds=2))
    with Store(tmp_path / "s.db") as store:
        run_study(spec.configs(), store, progress=False)
        rows = store.trial_rows()
        linear = [r for r in rows if r.label == "linear"]
        assert all(len(r.curves["grad_norm"]) == len(r.curves["epoch"]) for r in linear)  # round trip
        assert all(v > 0 for r in linear for v in r.curves["grad_norm"])
        new = refined_trials(rows, source="linear")
        assert len(new) == 2 * 2 * 2 * 2  # settings x LRs x seeds
        # one schedule across both optimizers: each uses its optimizer's own weighting, which the label leaves out
        assert {c.label for c in new} == {"refined"}
        assert {(c.optimizer, c.params["weighting"]) for c in new} == {("sgdm", "sgd"), ("adam", "adam")}
        one = next(c for c in new if c.optimizer == "sgdm" and c.budget == 20.0)
        norms = one.params["grad_norms"]
        assert len(norms) == 12  # 20 % of 60 epochs: one mean norm per epoch
        run_study(new, store, progress=False)
        refined_rows = [r for r in store.trial_rows() if r.schedule == "refined"]
    assert len(refined_rows) == 16 and {r.status for r in refined_rows} == {Status.DONE}


def test_constant_norms_give_the_linear_profile():
    rows = [dict(key=str(i), task="t", optimizer="sgdm", budget=10.0, budget_unit="steps", label="linear",
                 schedule="linear", lr=0.1, seed=i, status="done", val_metric=1.0, config={},
                 curves={"grad_norm": [2.0, 2.0, 2.0]}) for i in range(2)]
    [a, b] = refined_trials(typed(rows), "linear")
    s = Schedule("refined", 100, peak_lr=0.1, **a.params)
    np.testing.assert_allclose(s.values(), Schedule("linear", 100, peak_lr=0.1).values(), atol=1e-12)
    rows[0]["curves"]["grad_norm"] = rows[1]["curves"]["grad_norm"] = [3.0]  # one epoch: repeated, still linear
    assert refined_trials(typed(rows), "linear")[0].params["grad_norms"] == (3.0, 3.0)


def test_refine_errors_name_the_problem():
    rows = [dict(key="a", task="t", optimizer="sgdm", budget=10.0, budget_unit="steps", label="linear",
                 schedule="linear", lr=0.1, seed=0, status="done", val_metric=1.0, config={}, curves={})]
    with pytest.raises(UsageError, match="'cosine' is not a schedule of this study; choose from linear"):
        refined_trials(typed(rows), "cosine")
    with pytest.raises(UsageError, match="recorded gradient norms"):
        refined_trials(typed(rows), "linear")
