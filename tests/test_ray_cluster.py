"""A study on a real two-node Ray cluster (issue 20), started by the test on this machine: a head node and a
worker node, each its own ``ray start`` process with its own temp dir, on free loopback ports with a small object
store and explicit token authentication (tests/_ray_cluster.py); nodes are ended by process id, never ``ray stop``.

The drivers are ``budgetsched`` processes started from a directory of their own; the user's task file lives in
another directory, named relatively (``../tasks/usertask.py:make_task``), and a package of the user's that is not
installed sits in the driver's directory (``userpkg.tasks:make_task``). The task code logs every import and every
model it builds with the file it was imported from, so the test sees that the workers imported the copy Ray shipped
(under the node's ``runtime_resources``), not the driver's file.
"""
from __future__ import annotations

import collections
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="the ray extra (pip install 'budgetsched[ray]') is not installed")
if not Path("/proc/self/stat").exists():
    pytest.skip("the loopback cluster finds its processes through Linux /proc", allow_module_level=True)

sys.path.insert(0, str(Path(__file__).parent))
from _ray_cluster import LoopbackCluster  # noqa: E402

pytestmark = pytest.mark.slow

DRIVER_TIMEOUT = 120  # seconds: a hard limit on every driver process

#: The user's task: synthetic data, a small MLP; every import and every model built is logged with the file it came
#: from; ``augment`` paces training (20 ms a step) so that a chunk is still running when a node is killed.
TASK = textwrap.dedent('''
    import os, time
    import torch
    from torch import nn
    from budgetsched.bench.tasks import Task, TaskData, cross_entropy, error_percent
    {helper_import}

    LOG = {log!r}
    DATA = {data!r}  # a data file named relative to the working directory of the process that loads it

    def note(what):
        with open(LOG, "a") as f:
            f.write(f"{{what}} {{os.getpid()}} {{os.path.abspath(__file__)}}\\n")

    note("import")

    def load(data_dir=None, cache_dir=None):
        if DATA:
            with open(DATA) as f:
                f.read()
        g = torch.Generator().manual_seed(0)
        x = torch.randn(600, 8, generator=g)
        y = (x[:, 0] + x[:, 1] > 0).long()
        return TaskData(x[:400], y[:400], x[400:500], y[400:500], x[500:], y[500:])

    def model():
        note("model")
        return nn.Sequential(nn.Linear(8, helper.WIDTH), nn.ReLU(), nn.Linear(helper.WIDTH, 2))

    def pace(x, generator):
        time.sleep({pace})
        return x

    def make_task():
        return Task(name="usertask", max_epochs=10, batch_size=40, metric_name="error %", load=load,
                    make_model=model, loss=cross_entropy, metric=error_percent, batchable=True, augment=pace)
''')

#: A trainable that says which GPU Ray gave it (logical GPUs: the nodes have none).
GPU_TASK = textwrap.dedent('''
    import os
    from budgetsched.bench import trainable

    LOG = {log!r}

    @trainable(max_epochs=2, steps_per_epoch=2, metric_name="error %")
    def train(trial):
        import ray
        with open(LOG, "a") as f:
            f.write(f"gpu {{os.getpid()}} {{ray.get_runtime_context().get_node_id()}} "
                    f"{{os.environ.get('CUDA_VISIBLE_DEVICES')}} {{ray.get_gpu_ids()}}\\n")
        return {{"val_metric": 1.0, "test_metric": 1.0}}
''')


def grid(lrs: str = "0.03,0.1,0.3", seeds: str = "0,1") -> list[str]:
    return ["--schedules", "rex,linear", "--optimizers", "sgdm", "--budgets", "100", "--lrs", lrs, "--seeds", seeds,
            "--chunk-size", "2", "--quiet"]


class Study:
    """A user's directories: ``tasks/`` (the task file and its helper) and ``driver/`` (where the study starts)."""

    def __init__(self, root: Path, cluster: LoopbackCluster, pace: float = 0.0, data: str | None = None) -> None:
        self.root, self.cluster = root, cluster
        self.log = root / "task.log"
        (root / "tasks").mkdir(parents=True)
        (root / "driver").mkdir()
        (root / "tasks" / "usertask.py").write_text(TASK.format(log=str(self.log), pace=pace, data=data,
                                                                helper_import="import helper  # a sibling module"))
        (root / "tasks" / "helper.py").write_text("WIDTH = 16\n")
        # a package of the user's, not installed: importable on the driver (its working directory), not elsewhere
        (root / "driver" / "userpkg").mkdir()
        (root / "driver" / "userpkg" / "__init__.py").write_text("")
        (root / "driver" / "userpkg" / "helper.py").write_text("WIDTH = 12\n")
        (root / "driver" / "userpkg" / "tasks.py").write_text(TASK.format(
            log=str(self.log), pace=pace, data=data, helper_import="from userpkg import helper"))
        (root / "tasks" / "gputask.py").write_text(GPU_TASK.format(log=str(self.log)))
        self.db = root / "driver" / "study.db"

    def run(self, *args: str, env: dict[str, str] | None = None, wait: bool = True) -> subprocess.Popen:
        argv = [sys.executable, "-m", "budgetsched.cli", "run", "--engine", "ray", "--ray-address",
                self.cluster.address, "--store", "study.db", *args]
        proc = subprocess.Popen(argv, cwd=self.root / "driver", env=env or self.cluster.env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if wait:
            try:
                proc.out, proc.err = proc.communicate(timeout=DRIVER_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                raise
        return proc

    def notes(self, what: str) -> list[list[str]]:
        if not self.log.exists():
            return []
        return [line.split()[1:] for line in self.log.read_text().splitlines() if line.startswith(what + " ")]

    def rows(self) -> list[dict]:
        with sqlite3.connect(self.db) as con:
            con.row_factory = sqlite3.Row
            return [dict(r) for r in con.execute("SELECT key, status, task, error, finished FROM trials")]


@pytest.fixture(scope="module")
def cluster():
    # head: 1 CPU and 1 logical GPU; worker node: 1 CPU
    with LoopbackCluster(cpus=(1, 1), gpus=(1, 0)) as c:
        yield c


def one_line(err: str, *needles: str) -> None:
    assert err.count("\n") == 1 and err.endswith("\n") and "Traceback" not in err, err
    for n in needles:
        assert n in err, err


def test_user_code_travels_to_both_nodes_and_every_trial_is_written_once(cluster, tmp_path):
    """A task file named relatively (its directory is the job's working_dir) and a module of an uninstalled
    package (shipped in py_modules), in one study."""
    study = Study(tmp_path, cluster)
    refs = ["../tasks/usertask.py:make_task", "userpkg.tasks:make_task"]
    t0 = time.monotonic()
    proc = study.run("--task", ",".join(refs), *grid())
    assert proc.returncode == 0, proc.err
    print(f"two-node study: {time.monotonic() - t0:.1f} s: {proc.out.strip()}")
    rows = study.rows()
    assert len(rows) == 24 and len({r["key"] for r in rows}) == 24
    assert {r["status"] for r in rows} == {"done"}
    assert {r["task"] for r in rows} == set(refs)  # the references as the user wrote them
    assert "on 2 nodes" in proc.out, proc.out
    # the workers imported the copies Ray shipped, never the driver's files
    here = {str(tmp_path / "tasks" / "usertask.py"), str(tmp_path / "driver" / "userpkg" / "tasks.py")}
    models = [(int(pid), f) for pid, f in study.notes("model") if int(pid) != proc.pid]
    files = {f for _, f in models}
    assert all("runtime_resources" in f and f not in here for f in files), files
    assert {Path(f).name for f in files} == {"usertask.py", "tasks.py"}
    assert len(models) == 24  # every trial's model built once


def test_errors_name_their_cause_in_one_line(cluster, tmp_path):
    study = Study(tmp_path, cluster)
    # no token: one line saying how to pass it
    env = {k: v for k, v in cluster.env.items() if not k.startswith("RAY_AUTH")}
    env["RAY_gcs_server_port_wait_time_s"] = "2"  # Ray's own connection retries, shortened
    proc = study.run("--task", "../tasks/usertask.py:make_task", *grid(), env=env)
    assert proc.returncode == 1
    one_line(proc.err, "requires an authentication token", "RAY_AUTH_TOKEN", cluster.address)
    assert not study.db.exists()
    # the task file is not where the driver looks: one line naming the path
    proc = study.run("--task", "../task/usertask.py:make_task", *grid())
    assert proc.returncode == 2
    one_line(proc.err, "no such file '../task/usertask.py'")
    # a data file the workers do not have: each chunk fails once, with the file's name, no Ray traceback
    study = Study(tmp_path / "data", cluster, data="points.txt")
    open(tmp_path / "data" / "driver" / "points.txt", "w").close()  # the driver has it (in its directory)
    proc = study.run("--task", "../tasks/usertask.py:make_task", *grid(lrs="0.1"))
    assert proc.returncode == 0, proc.err
    one_line(proc.err, "points.txt", "FileNotFoundError", "stored as failed")
    rows = study.rows()
    assert len(rows) == 4 and {r["status"] for r in rows} == {"failed"}
    assert all("FileNotFoundError" in r["error"] and "points.txt" in r["error"] and "\n" not in r["error"]
               for r in rows)
    assert "ray::" not in proc.err and "pid=" not in proc.err


def test_gpu_chunks_ask_ray_for_a_gpu(cluster, tmp_path):
    """Logical GPUs: only the head has one; half a GPU per chunk, so two chunks share it."""
    study = Study(tmp_path, cluster)
    code = textwrap.dedent(f"""
        import sys
        from budgetsched.bench.protocol.grid import expand
        from budgetsched.bench.execution.runners import run_study
        from budgetsched.bench.storage.store import Store
        with Store("study.db") as store:
            s = run_study(expand(["../tasks/gputask.py:train"], ["rex", "linear"], ["sgdm"], [100.0], [0.1],
                                 [0, 1]), store, engine="ray", ray_address={cluster.address!r}, device="cuda",
                          gpus_per_chunk=0.5, progress=False)
        print(s.line())
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path / "driver", env=cluster.env, text=True,
                          capture_output=True, timeout=DRIVER_TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    gpu = study.notes("gpu")
    assert len(gpu) == 4, gpu
    assert {g[2] for g in gpu} == {"0"}  # CUDA_VISIBLE_DEVICES: the head's GPU 0, given by Ray
    assert len({g[1] for g in gpu}) == 1  # one node: the only one with a GPU
    assert "on 1 node" in proc.stdout and "4 done" in proc.stdout, proc.stdout


def test_sigterm_cancels_the_study_on_the_cluster_and_a_rerun_resumes(cluster, tmp_path):
    study = Study(tmp_path, cluster, pace=0.02)
    proc = study.run("--task", "../tasks/usertask.py:make_task", *grid(lrs="0.1,0.3"), wait=False)
    try:
        deadline = time.monotonic() + DRIVER_TIMEOUT
        while not [pid for pid, _ in study.notes("model") if int(pid) != proc.pid]:  # a chunk is training
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no chunk started"
            time.sleep(0.05)
        proc.terminate()
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 143, err
    one_line(err, "terminated")
    training = {int(pid) for pid, _ in study.notes("model")} - {proc.pid}
    t0 = time.monotonic()
    while any(Path(f"/proc/{pid}").exists() for pid in training) and time.monotonic() - t0 < 15:
        time.sleep(0.1)
    assert not any(Path(f"/proc/{pid}").exists() for pid in training), "the study's Ray tasks are still running"
    before = {r["key"]: r["finished"] for r in study.rows()} if study.db.exists() else {}
    assert len(before) < 8
    again = study.run("--task", "../tasks/usertask.py:make_task", *grid(lrs="0.1,0.3"))
    assert again.returncode == 0, again.err
    rows = study.rows()
    assert len(rows) == 8 and {r["status"] for r in rows} == {"done"}
    assert {r["key"]: r["finished"] for r in rows if r["key"] in before} == before  # not trained again


def test_a_worker_node_lost_mid_study_loses_no_trial(cluster, tmp_path):
    """The worker node's raylet is killed while it trains a chunk: the chunk runs again on the head, every trial
    is written once. Runs last: the cluster has one node left afterwards."""
    study = Study(tmp_path, cluster, pace=0.02)
    worker = cluster.nodes[1]
    proc = study.run("--task", "../tasks/usertask.py:make_task", *grid(), wait=False)
    try:
        deadline = time.monotonic() + DRIVER_TIMEOUT
        # wait until the worker node builds a model (it is training a chunk), then kill its raylet
        while True:
            on_worker = {int(pid) for pid, _ in study.notes("model")} & set(worker.seen_now())
            if on_worker:
                break
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the worker node never trained"
            time.sleep(0.05)
        os.kill(worker.pid_of("raylet"), 9)
        killed_at = len(study.rows()) if study.db.exists() else 0
        out, err = proc.communicate(timeout=DRIVER_TIMEOUT)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, err
    rows = study.rows()
    assert len(rows) == 12 and len({r["key"] for r in rows}) == 12 and {r["status"] for r in rows} == {"done"}
    assert "retried" in out, out
    models = collections.Counter(int(pid) for pid, _ in study.notes("model"))
    retried = int(out.split(" chunk")[0].rsplit(", ", 1)[-1]) if "chunks retried" in out or "chunk retried" in out \
        else 0
    print(f"node loss: {killed_at} trials written when the raylet was killed; {retried} chunk(s) retried; "
          f"{sum(models.values())} models built for 12 trials: {out.strip()}")
    assert 12 < sum(models.values()) <= 12 + 2 * retried  # only the lost chunks (2 trials each) trained again
