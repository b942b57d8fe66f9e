"""Chunks as Ray tasks, on a local Ray instance or a cluster; the driver writes each chunk's results as they return."""
from __future__ import annotations

import socket
from typing import Any

from budgetsched.bench.execution.chunks import Chunk
from budgetsched.bench.execution.context import ExecutionContext
from budgetsched.bench.execution.local import Claim, Write
from budgetsched.bench.execution.progress import Progress
from budgetsched.bench.execution.work import run_chunk
from budgetsched.bench.protocol.grid import TrialConfig
from budgetsched.errors import EnvironmentFailure, UsageError

__all__ = ["RayCluster", "check_cluster", "check_reachable"]


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


def _ray_chunk(kind: str, chunk: Chunk, ctx: ExecutionContext) -> list[tuple[TrialConfig, Any]]:
    import torch

    torch.set_num_threads(ctx.threads)
    return run_chunk(kind, chunk, ctx)


class RayCluster:
    """Chunks as Ray tasks: joins the cluster at ``address`` (or the running instance, or starts a local one with
    ``workers`` CPUs) for the duration of the ``with`` block, and leaves an instance it did not start running."""

    name = "ray"

    def __init__(self, ctx: ExecutionContext, bar: Progress, workers: int, address: str | None) -> None:
        self.ctx, self.bar, self.workers, self.address = ctx, bar, workers, address
        self._started_here = False

    def __enter__(self) -> "RayCluster":
        ray = _import_ray()
        if not ray.is_initialized():
            if self.address is not None:
                check_reachable(self.address)
                ray.init(address=self.address, include_dashboard=False, log_to_driver=False)
            else:
                ray.init(num_cpus=self.workers if self.workers > 1 else None, include_dashboard=False,
                         log_to_driver=False)
            self._started_here = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._started_here:
            _import_ray().shutdown()

    def run(self, chunks: list[tuple[str, Chunk]], claim: Claim, write: Write, work: dict[TrialConfig, int]) -> None:
        ray = _import_ray()
        remote = ray.remote(num_cpus=1, max_retries=0)(_ray_chunk)
        # One torch thread per Ray task: Ray runs one task per CPU, so threads x tasks <= CPUs.
        pending = {}
        for kind, chunk in chunks:
            chunk = claim(chunk)
            if chunk:
                pending[remote.remote(kind, chunk, self.ctx.replace(threads=1))] = (kind, chunk)
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    kind, chunk = pending.pop(ref)
                    self.bar.group(chunk[0].config)
                    for config, result in ray.get(ref):
                        write(config, result, kind)
                    self.bar.work(sum(work[p.config] for p in chunk))
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)
