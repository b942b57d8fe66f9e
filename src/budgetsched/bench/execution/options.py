"""The execution options of :func:`budgetsched.bench.execution.run.run_study`, checked in one place.

:class:`RunOptions` is engine, workers, chunk size, Ray address, device and GPU share, checked when it is made
(:func:`check_options` makes one): the command line builds it once, before it creates the store (so a typo leaves no
file behind), and hands it to ``run_study(options=...)``, which trusts it; ``run_study`` called with loose keyword
arguments builds (and so checks) one itself. The grid itself is validated by the study spec
(:mod:`budgetsched.bench.protocol.study`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from budgetsched.errors import UsageError

__all__ = ["ENGINES", "RunOptions", "check_options", "check_device", "usable_cpus"]

#: Engine names accepted by ``run_study``.
ENGINES = ("batched", "sequential", "ray")


def _is_device(dev: str) -> bool:
    return dev in ("cpu", "cuda") or (dev.startswith("cuda:") and dev[5:].isdigit())


def check_device(device: str) -> str:
    """``device`` if it is usable here: ``cpu``, or ``cuda``/``cuda:N`` when ``torch.cuda.is_available()``."""
    import torch

    dev = str(device)
    if dev == "cpu":
        return dev
    if _is_device(dev):
        if not torch.cuda.is_available():
            raise UsageError(f"device {dev!r} requested but torch.cuda.is_available() is False on this machine "
                             f"(torch {torch.__version__}); use --device cpu")
        index = int(dev[5:]) if ":" in dev else 0
        if index >= torch.cuda.device_count():
            raise UsageError(f"device {dev!r} does not exist; this machine has {torch.cuda.device_count()} GPU(s)")
        return dev
    raise UsageError(f"unknown device {dev!r}; choose from cpu, cuda, cuda:N")


def usable_cpus() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class RunOptions:
    """``run_study``'s execution options, checked when made (a :class:`UsageError` names the bad one).

    ``engine``: batched, sequential or ray; ``workers``: an integer >= 1 or ``"auto"``; ``chunk_size``: an
    integer >= 1; ``ray_address``: engine ray only, and it must answer; ``device``: ``cpu``, ``cuda`` or
    ``cuda:N`` (usable here, except on Ray, where a GPU is the cluster's business); ``gpus_per_chunk``: engine ray
    only, in (0, 1] (each chunk asks Ray for that share of a GPU; 0.5: two chunks per GPU; default 1).
    With ``engine="ray"`` making one also checks that Ray is installed and that ``ray_address`` answers
    (:class:`EnvironmentFailure` within seconds, where ``ray.init`` would wait for minutes).
    """

    engine: str = "batched"
    workers: int | str = 1
    chunk_size: int = 64
    ray_address: str | None = None
    device: str = "cpu"
    gpus_per_chunk: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "device", _checked_device(self.engine, self.workers, self.chunk_size,
                                                           self.ray_address, self.device, self.gpus_per_chunk))


def check_options(engine: str = "batched", workers: Any = 1, chunk_size: Any = 64, ray_address: str | None = None,
                  device: str = "cpu", gpus_per_chunk: Any = None) -> RunOptions:
    """``run_study``'s execution options, checked: a :class:`RunOptions` (UsageError naming the bad value)."""
    return RunOptions(engine, workers, chunk_size, ray_address, device, gpus_per_chunk)


def _checked_device(engine: str, workers: Any, chunk_size: Any, ray_address: str | None, device: str,
                    gpus_per_chunk: Any) -> str:
    """The one check of :class:`RunOptions`; returns the device.

    With ``engine="ray"`` the device is the workers' business: ``cuda`` is not required on the driver (a GPU chunk
    asks the cluster for a GPU, and a cluster without one is refused once connected).
    """
    if engine not in ENGINES:
        raise UsageError(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}")
    if workers != "auto" and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise UsageError(f"workers must be an integer >= 1 or 'auto', got {workers!r}")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise UsageError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")
    if ray_address is not None and engine != "ray":
        raise UsageError(f"ray_address {ray_address!r} is only used with engine 'ray', not {engine!r}")
    if gpus_per_chunk is not None:
        if engine != "ray":
            raise UsageError(f"gpus_per_chunk {gpus_per_chunk!r} is only used with engine 'ray', not {engine!r}")
        if isinstance(gpus_per_chunk, bool) or not isinstance(gpus_per_chunk, (int, float)) \
                or not 0 < gpus_per_chunk <= 1:
            raise UsageError(f"gpus_per_chunk must be a number in (0, 1] (a GPU shared by 1/x chunks), "
                             f"got {gpus_per_chunk!r}")
    if engine != "ray":
        return check_device(device)
    from budgetsched.bench.execution.ray import check_cluster

    if not _is_device(str(device)):
        check_device(device)  # raises, naming the device
    check_cluster(ray_address)
    return str(device)  # a GPU is the cluster's business: checked once connected (RayCluster)
