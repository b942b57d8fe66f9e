"""Chunks as Ray tasks, on a local Ray instance or a cluster; the driver writes each chunk's results as they return.

* **Code.** The user's task code travels with the study in the job's runtime environment (:mod:`.shipping`).
* **Resources.** A CPU chunk asks Ray for its torch threads as CPUs; a ``cuda`` chunk for one GPU, or
  ``gpus_per_chunk`` of one (0.5: two chunks share a GPU). Ray sets ``CUDA_VISIBLE_DEVICES`` on the worker, so the
  chunk trains on ``cuda`` (the GPU Ray gave it).
* **Faults.** A chunk whose worker process or node is lost (its raylet killed, the machine gone) is submitted
  again, at most :data:`RETRIES` times, to the nodes left; its trials were not written (a chunk's results are
  written only when it returns whole), so nothing already in the store trains twice. A chunk that is lost more
  often, or that raises on the worker (a missing data file, the task's import failing), is written as failed
  with its cause, the exception's message without Ray's traceback, and a rerun retries it.
* **Interrupts.** Ctrl-C or SIGTERM on the driver cancels every task of the study still running or queued.
* **Errors** connecting name their cause in one line: an address that does not answer, a cluster that requires
  a token (Ray's token authentication, on by default for ``ray start --head`` since Ray 2.60).
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import signal
import socket
import sys
import tempfile
import threading
import warnings
from typing import Any, Iterator

from budgetsched.bench.execution.chunks import Chunk
from budgetsched.bench.execution.context import ExecutionContext
from budgetsched.bench.execution.local import Claim, Write
from budgetsched.bench.execution.progress import Progress
from budgetsched.bench.execution.shipping import code_to_ship, local_locations
from budgetsched.bench.execution.work import run_chunk
from budgetsched.bench.protocol.grid import TrialConfig
from budgetsched.errors import EnvironmentFailure, UsageError

__all__ = ["RayCluster", "RETRIES", "check_cluster", "check_reachable", "remote_cause"]

#: Times a chunk is submitted again after its worker process or node was lost (a bound: 1 + RETRIES runs at most).
RETRIES = 3
#: Seconds ``ray.wait`` blocks at a time, so that Ctrl-C and SIGTERM are handled within that time.
WAIT_S = 0.5
_AUTH_HELP = ("set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN=<the cluster's token> (or RAY_AUTH_TOKEN_PATH=<a file "
              "holding it>) in the driver's environment; `ray get-auth-token` on the head node prints it")


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UsageError("engine 'ray' needs Ray: pip install 'budgetsched[ray]'") from None
    return ray


def check_cluster(address: str | None) -> None:
    """Ray is installed and ``address`` (if given) answers."""
    _import_ray()
    if address is not None:
        check_reachable(address)


def check_reachable(address: str, timeout: float = 10.0) -> None:
    """Fail fast with one line if a Ray cluster address does not answer (ray.init would wait for minutes)."""
    if address in ("auto", "local"):
        return
    host_port = address.split("://", 1)[-1]
    host, _, port = host_port.rpartition(":")
    host = host.strip("[]")  # [::1]:6379
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"Ray address {address!r} is not host:port with a port in 1..65535 (or 'auto')")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except socket.timeout:
        raise EnvironmentFailure(f"cannot reach the Ray cluster at {address!r}: no answer within {timeout:g} s; "
                                 f"is it running?") from None
    except (OSError, UnicodeError) as e:
        raise EnvironmentFailure(f"cannot reach the Ray cluster at {address!r} "
                                 f"({getattr(e, 'strerror', None) or e}); is it running?") from None


def _chain(e: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__  # type: ignore[assignment]


def _first_line(text: str) -> str:
    return next((line.strip() for line in str(text).splitlines() if line.strip()), "")


def _connect_error(address: str, e: BaseException) -> EnvironmentFailure:
    """One line naming why ``ray.init(address=...)`` failed."""
    text = " ".join(f"{type(x).__name__}: {x}" for x in _chain(e))
    if "InvalidAuthToken" in text or "AuthenticationError" in text or "authentication token" in text.lower():
        if os.environ.get("RAY_AUTH_MODE", "").lower() == "token" and (
                os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")):
            return EnvironmentFailure(f"the Ray cluster at {address!r} refused this driver's token "
                                      "(RAY_AUTH_TOKEN / RAY_AUTH_TOKEN_PATH is not the cluster's token); "
                                      + _AUTH_HELP)
        return EnvironmentFailure(f"the Ray cluster at {address!r} requires an authentication token: " + _AUTH_HELP)
    return EnvironmentFailure(f"cannot connect to the Ray cluster at {address!r}: {type(e).__name__}: "
                              f"{_first_line(str(e))}")


def remote_cause(e: BaseException) -> str:
    """A worker-side exception as ``Type: message``, without Ray's traceback."""
    cause = getattr(e, "cause", None)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {_first_line(str(cause)) or type(cause).__name__}"
    return f"{type(e).__name__}: {_first_line(str(e))}"


@contextlib.contextmanager
def _core_output_held() -> Iterator[list[str]]:
    """Hold what Ray's C++ core writes to stderr while connecting (it prints every failed attempt, a line a second,
    and no Ray setting silences it): on success it is written out as it was; on failure the caller says the cause
    in one line instead. Yields a list that receives the held text."""
    held: list[str] = []
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to hold
        yield held
        return
    sys.stderr.flush()
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        ok = False
        try:
            yield held
            ok = True
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            held.append(tmp.read().decode(errors="replace"))
            if ok and held[0]:
                sys.stderr.write(held[0])


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_IDS = re.compile(r"\b[0-9a-f]{16,}\b")  # node, worker and lease ids: one notice per kind, not per id
#: The thread in which Ray's driver prints the cluster's error notices (a node marked dead, with its raylet's last
#: 20 log lines) to stdout.
_NOTICE_THREAD = "ray_listen_error_messages"


class _ClusterNotices(io.TextIOBase):
    """Stands for ``sys.stdout`` while the study runs on Ray: what Ray's notice thread prints (a lost node comes
    with dozens of raylet log lines) is kept, and said as one note per notice once the study ends; everything else
    passes through."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.text: list[str] = []
        self.all = False  # during ray.shutdown(), which prints the notices Ray held back to deduplicate them

    def write(self, s: str) -> int:
        if self.all or threading.current_thread().name == _NOTICE_THREAD:
            self.text.append(s)
            return len(s)
        return self.stream.write(s)

    def flush(self) -> None:
        self.stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)

    def notices(self) -> list[str]:
        """Each kind of notice Ray printed, once: its first sentence, with how often it came."""
        seen: dict[str, int] = {}
        for line in _ANSI.sub("", "".join(self.text)).splitlines():
            if line.startswith("(raylet) ") and line[9:].strip():
                text = _IDS.sub("…", line[9:].strip())
                first = text.split(". ", 1)[0].rstrip(".")
                seen[first] = seen.get(first, 0) + 1
        return [f"{text} ({n} times)" if n > 1 else text for text, n in seen.items()]


def _python_handlers() -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}


def _restore(handlers: dict[int, Any]) -> None:
    """Ray's core installs its own SIGTERM handler when it connects (it exits at once, status 1); the study's
    handlers go back, so that SIGTERM stops the study as Ctrl-C does: tasks cancelled, written trials kept."""
    for sig, handler in handlers.items():
        if handler is not None:
            signal.signal(sig, handler)


def _ray_chunk(kind: str, chunk: Chunk, ctx: ExecutionContext) -> tuple[str, int, list[tuple[TrialConfig, Any]]]:
    """A chunk on a Ray worker: the shipped code located, torch threads set; returns (node id, pid, results)."""
    import ray
    import torch

    from budgetsched.bench.tasks.registry import locate_task

    for ref, where in ctx.task_locations:
        locate_task(ref, os.path.abspath(where) if where.endswith(".py") else where)  # working dir = shipped copy
    torch.set_num_threads(ctx.threads)
    return ray.get_runtime_context().get_node_id(), os.getpid(), run_chunk(kind, chunk, ctx)


class RayCluster:
    """Chunks as Ray tasks: joins the cluster at ``address`` (or the running instance, or starts a local one with
    ``workers`` CPUs) for the duration of the ``with`` block, and leaves an instance it did not start running.

    After :meth:`run`: ``nodes`` and ``processes`` that ran a chunk, ``retried`` (chunks submitted again after a
    loss) and ``failed_chunks``.
    """

    name = "ray"

    def __init__(self, ctx: ExecutionContext, bar: Progress, workers: int, address: str | None,
                 task_names: list[str], gpus_per_chunk: float | None = None) -> None:
        self.ctx, self.bar, self.workers, self.address = ctx, bar, workers, address
        self.task_names, self.gpus_per_chunk = task_names, gpus_per_chunk
        self.nodes: set[str] = set()
        self.processes: set[tuple[str, int]] = set()
        self.retried = 0
        self.failed_chunks = 0
        self._started_here = False
        self._said: set[str] = set()
        self._stdout: _ClusterNotices | None = None

    # -- connection ------------------------------------------------------------------------------------------
    def __enter__(self) -> "RayCluster":
        ray = _import_ray()
        locations: dict[str, str] = {}
        handlers = _python_handlers()
        if not ray.is_initialized():
            if self.address is not None:  # it answered check_options' probe
                shipment = code_to_ship(self.task_names)  # the user's code goes with the job
                locations = shipment.locations
                if os.environ.get("BUDGETSCHED_DATA"):  # where the built-in tasks find their files, as here
                    shipment.runtime_env["env_vars"] = {
                        "BUDGETSCHED_DATA": os.path.abspath(os.environ["BUDGETSCHED_DATA"])}
                try:
                    with _core_output_held():
                        ray.init(address=self.address, runtime_env=shipment.runtime_env or None,
                                 include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
                except (ConnectionError, RuntimeError, OSError) as e:
                    raise _connect_error(self.address, e) from None
                except Exception as e:  # e.g. ray.exceptions.AuthenticationError, a refused runtime environment
                    if type(e).__module__.startswith("ray"):
                        raise _connect_error(self.address, e) from None
                    raise
            else:
                ray.init(num_cpus=self.workers if self.workers > 1 else None, include_dashboard=False,
                         log_to_driver=False, logging_level=logging.ERROR)
            self._started_here = True
            _restore(handlers)
        self._stdout = _ClusterNotices(sys.stdout)
        sys.stdout = self._stdout  # type: ignore[assignment]
        if not locations:  # a local instance, or one this process joined before: the nodes share this disk
            locations = local_locations(self.task_names)
        self.ctx = self.ctx.replace(task_locations=tuple(sorted(locations.items())))
        if self.ctx.device.startswith("cuda"):
            self.ctx = self.ctx.replace(device="cuda")  # the GPU Ray assigns is the worker's only visible one
            gpus = float(ray.cluster_resources().get("GPU", 0.0))
            if gpus <= 0:
                self.__exit__()
                where = f"the Ray cluster at {self.address!r}" if self.address else "the local Ray instance"
                raise UsageError(f"device {self.ctx.device!r}: {where} has no GPU; start its nodes with GPUs "
                                 "(ray start --num-gpus N) or use --device cpu")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._started_here:
            self._started_here = False
            if self._stdout is not None:
                self._stdout.all = True
            _import_ray().shutdown()
        if self._stdout is not None:
            if sys.stdout is self._stdout:
                sys.stdout = self._stdout.stream
            for notice in self._stdout.notices():
                warnings.warn(f"Ray: {notice[:300]}", UserWarning, stacklevel=2)
            self._stdout = None

    # -- chunks ----------------------------------------------------------------------------------------------
    def _remote(self) -> Any:
        ray = _import_ray()
        if self.ctx.device.startswith("cuda"):
            resources = dict(num_cpus=self.ctx.threads, num_gpus=self.gpus_per_chunk or 1)
        else:
            resources = dict(num_cpus=self.ctx.threads)
        # retries are the driver's (below): it knows which losses it retried and stores a chunk that runs out
        return ray.remote(_ray_chunk).options(max_retries=0, retry_exceptions=False, **resources)

    def run(self, chunks: list[tuple[str, Chunk]], claim: Claim, write: Write, work: dict[TrialConfig, int]) -> None:
        ray = _import_ray()
        from ray.exceptions import RayError, RayTaskError

        from budgetsched.bench.engines.train import TrialResult

        remote = self._remote()
        pending: dict[Any, tuple[str, Chunk, int]] = {}  # ref -> (kind, chunk, times lost so far)
        for kind, chunk in chunks:
            chunk = claim(chunk)
            if chunk:
                pending[remote.remote(kind, chunk, self.ctx)] = (kind, chunk, 0)

        def failed(kind: str, chunk: Chunk, cause: str) -> None:
            self.failed_chunks += 1
            if cause not in self._said:
                self._said.add(cause)
                warnings.warn(f"a chunk of {len(chunk)} trials failed on the Ray cluster and is stored as failed "
                              f"(a rerun retries it): {cause}", UserWarning, stacklevel=4)
            for p in chunk:
                write(p.config, TrialResult.failed(cause), kind)

        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=WAIT_S)
                for ref in ready:
                    kind, chunk, lost = pending.pop(ref)
                    self.bar.group(chunk[0].config)
                    try:
                        node, pid, results = ray.get(ref)
                    except RayTaskError as e:  # the chunk raised on the worker: retrying would raise again
                        failed(kind, chunk, remote_cause(e))
                    except RayError as e:  # its worker process or node was lost
                        if lost < RETRIES:
                            self.retried += 1
                            pending[remote.remote(kind, chunk, self.ctx)] = (kind, chunk, lost + 1)
                            continue
                        failed(kind, chunk, f"lost {lost + 1} times (worker or node gone), last: {remote_cause(e)}")
                    else:
                        self.nodes.add(node)
                        self.processes.add((node, pid))
                        for config, result in results:
                            write(config, result, kind)
                    self.bar.work(sum(work[p.config] for p in chunk))
        finally:
            for ref in pending:  # an interrupt or an error: stop what the study still has on the cluster
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
