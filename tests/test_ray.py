"""engine="ray": chunks as Ray tasks on a local instance, results written by the driver, interrupt and resume.

One local Ray instance (2 CPUs, no dashboard) serves the whole module, so its start-up is paid once; the runner
reuses a running instance and leaves it running.
"""
from __future__ import annotations

import pytest

ray = pytest.importorskip("ray", reason="the ray extra (pip install 'budgetsched[ray]') is not installed")

from budgetsched.bench.protocol.grid import expand  # noqa: E402
from budgetsched.bench.execution.runners import StudyInterrupted, run_study  # noqa: E402
from budgetsched.bench.storage.store import Store  # noqa: E402
from budgetsched.cli import main  # noqa: E402

GRID = expand(["digits-mlp"], ["rex", "linear"], ["sgdm"], [2.0, 4.0], [0.03, 0.1], [0, 1])  # 16 trials


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def test_ray_engine_writes_every_row_via_cli(tmp_path):
    db = tmp_path / "r.db"
    assert main(["run", "--task", "digits-mlp", "--schedules", "rex,linear", "--optimizers", "sgdm", "--budgets",
                 "2,4", "--lrs", "0.03,0.1", "--seeds", "2", "--engine", "ray", "--chunk-size", "4",
                 "--store", str(db), "--quiet"]) == 0
    with Store(db) as s:
        rows = s.rows()
    assert sorted(r["key"] for r in rows) == sorted(c.key for c in GRID)
    assert all(r["status"] == "done" and r["engine"] == "batched" and r["run_meta"]["executor"] == "ray" for r in rows)
    assert ray.is_initialized()  # a running instance is reused, not shut down


def test_ray_matches_in_process_results(tmp_path):
    """Same trials, same numbers: Ray only moves where the chunks run."""
    sub = GRID[:4]  # one group
    with Store(tmp_path / "a.db") as a, Store(tmp_path / "b.db") as b:
        run_study(sub, a, engine="ray", chunk_size=2, progress=False)
        run_study(sub, b, engine="batched", chunk_size=2, progress=False)
        ra = {r["key"]: (r["val_metric"], r["test_loss"]) for r in a.rows()}
        rb = {r["key"]: (r["val_metric"], r["test_loss"]) for r in b.rows()}
    assert ra.keys() == rb.keys() and len(ra) == 4
    for k in ra:
        assert ra[k] == pytest.approx(rb[k], rel=1e-5)


def test_interrupted_ray_run_resumes_without_rerunning(tmp_path, interrupting_store):
    with Store(tmp_path / "s.db") as store:
        with pytest.raises(StudyInterrupted) as info:
            run_study(GRID, interrupting_store(store, after=5), engine="ray", chunk_size=4, progress=False)
        assert info.value.summary.ran == 5
        before = {r["key"]: r["finished"] for r in store.rows()}
        assert len(before) == 5
        s = run_study(GRID, store, engine="ray", chunk_size=4, progress=False)
        rows = store.rows()
    assert (s.skipped, s.ran) == (5, 11)
    assert len(rows) == 16 and all(r["status"] == "done" for r in rows)
    assert {r["key"]: r["finished"] for r in rows if r["key"] in before} == before  # not rerun


def test_a_gpu_study_on_an_instance_without_gpu_is_refused_in_one_line(tmp_path):
    from budgetsched.errors import UsageError

    with Store(tmp_path / "g.db") as store:
        with pytest.raises(UsageError, match="has no GPU") as e:
            run_study(GRID[:2], store, engine="ray", device="cuda", progress=False)
        assert store.rows() == [] and "\n" not in str(e.value)


LOST_EVERY_TIME = '''
import os
import torch
from budgetsched.bench.tasks import Task, TaskData, cross_entropy, error_percent
from torch import nn

DRIVER = {pid}

def load(data_dir=None, cache_dir=None):
    if os.getpid() != DRIVER:
        os._exit(1)  # the worker process dies, as on a lost node
    x = torch.randn(40, 4, generator=torch.Generator().manual_seed(0))
    y = (x[:, 0] > 0).long()
    return TaskData(x[:20], y[:20], x[20:30], y[20:30], x[30:], y[30:])

def make_task():
    return Task(name="lost", max_epochs=1, batch_size=10, metric_name="error %", load=load,
                make_model=lambda: nn.Linear(4, 2), loss=cross_entropy, metric=error_percent, batchable=True)
'''


@pytest.mark.filterwarnings("ignore:Ray. A worker died:UserWarning")  # Ray's own notice of each death, said once
def test_a_chunk_lost_more_often_than_its_retries_is_stored_as_failed_with_its_cause(tmp_path):
    """Its worker dies on every attempt: 1 + RETRIES runs, then its trials are failed rows naming the loss."""
    import os

    from budgetsched.bench.execution.ray import RETRIES

    (tmp_path / "lost.py").write_text(LOST_EVERY_TIME.format(pid=os.getpid()))
    grid = expand([f"{tmp_path}/lost.py:make_task"], ["rex"], ["sgdm"], [100.0], [0.1], [0, 1])
    with Store(tmp_path / "l.db") as store, pytest.warns(UserWarning, match=f"lost {RETRIES + 1} times") as w:
        s = run_study(grid, store, engine="ray", chunk_size=2, progress=False)
        rows = store.rows()
    assert s.retried == RETRIES and s.counts["failed"] == 2 and len(rows) == 2
    assert all(r["status"] == "failed" and f"lost {RETRIES + 1} times" in r["error"] for r in rows)
    assert len([x for x in w if "lost" in str(x.message)]) == 1  # said once for the chunk, not per trial
